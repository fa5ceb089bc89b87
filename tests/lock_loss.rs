//! Rule 3 of docs/design.md: every change to the target under the lock is fenced. A
//! compactor that lost its lock between its fdatasync and its commit (an NFS lease that
//! expired during a freeze, a GlusterFS client that died and was remounted) must not be
//! able to commit after another holder changed the target — even when that holder only
//! truncated the first one's bytes as an uncommitted tail and had nothing to commit.
//!
//! The lock loss is made real with the `drain.lose_lock` failpoint: the first drain
//! releases its OFD lock there and holds (`=hold`) until the test lets it go on.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn wait_for(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_holder_that_lost_its_lock_cannot_commit_after_a_takeover_truncated_its_bytes() {
    // with and without lines for the second holder to commit
    for second_has_lines in [false, true] {
        let d = tmp();
        let (spool, target) = paths(d.path());
        let fp = d.path().join("fp");
        std::fs::create_dir(&fp).unwrap();
        let a = spool.join("a.journal");
        let a_lines = numbered("a", 0..5);
        journal(&a).append_batch(&a_lines).unwrap();
        // a first committed round, so the target exists with a manifest
        let first = numbered("first", 0..2);
        journal(&a).append_batch(&first).unwrap();
        init(&target);
        compactor(&target).drain_paths(std::slice::from_ref(&a)).unwrap();
        let more = numbered("more", 0..3);
        journal(&a).append_batch(&more).unwrap();

        // host A: writes `more`, fdatasyncs, loses its lock, freezes
        let host_a = Command::new(bin())
            .args(["drain", "--target", &s(&target), "--journal", &s(&a)])
            .env("TRIBUTARY_FAILPOINTS", "drain.lose_lock=hold")
            .env("TRIBUTARY_FAILPOINT_DIR", &fp)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let reached = fp.join("drain.lose_lock.reached");
        wait_for(&reached);

        // host B takes the lock: A's bytes are an uncommitted tail to it
        let b_spool = d.path().join("b-spool");
        std::fs::create_dir(&b_spool).unwrap();
        let b_lines = numbered("b", 0..(if second_has_lines { 4 } else { 0 }));
        if second_has_lines {
            journal(&b_spool.join("b.journal")).append_batch(&b_lines).unwrap();
        }
        let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&b_spool)]);
        assert!(out.status.success(), "host B's drain: {}", String::from_utf8_lossy(&out.stderr));

        // A wakes up and tries to commit
        std::fs::remove_file(&reached).unwrap();
        let out = host_a.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("[lock_lost]"),
            "second_has_lines={second_has_lines}: the holder that lost its lock committed anyway \
             (exit {:?}): {stderr}",
            out.status.code()
        );

        // A's lines are still in its journal: the next drain commits them, once
        let journals: Vec<_> = [a.clone(), b_spool.join("b.journal")].into_iter().filter(|p| p.exists()).collect();
        compactor(&target).drain_paths(&journals).unwrap();
        let mut expected = a_lines.clone();
        expected.extend(first.clone());
        expected.extend(more.clone());
        expected.extend(b_lines.clone());
        assert_exactly(&target, &expected);
    }
}
