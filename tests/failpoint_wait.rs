//! The `=wait` failpoint action: a process reaching the point announces it with a
//! `<point>.reached` file in `$TRIBUTARY_FAILPOINT_DIR` and then blocks forever, so a
//! harness (the power-cut harness, `tributary-torture powercut`) can act at that exact
//! protocol step without guessing a delay. No timing is assumed: the test waits for the
//! file (generous bound), and a blocked process cannot have moved past the point.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn wait_for(path: &std::path::Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what}: {} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn wait_announces_the_point_blocks_there_and_recovery_after_a_kill_is_exactly_once() {
    for point in ["drain.after_fsync", "drain.after_rename"] {
        let d = tmp();
        let (spool, target) = paths(d.path());
        let fp_dir = d.path().join("fp");
        std::fs::create_dir(&fp_dir).unwrap();
        let a = spool.join("a.journal");
        journal(&a).append_batch(&numbered("a", 0..100)).unwrap();
        init_cli(&target);

        let mut child = Command::new(bin())
            .args(["drain", "--target", &s(&target), "--spool", &s(&spool)])
            .env("TRIBUTARY_FAILPOINTS", format!("{point}=wait"))
            .env("TRIBUTARY_FAILPOINT_DIR", &fp_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let reached = fp_dir.join(format!("{point}.reached"));
        wait_for(&reached, point);
        let pid: u32 = std::fs::read_to_string(&reached).unwrap().trim().parse().unwrap();
        assert_eq!(pid, child.id(), "{point}: the .reached file names the waiting process");
        // It blocks at the point: still running, and it never got to record the drain
        // in the journal (step 7), which comes after both points.
        assert!(child.try_wait().unwrap().is_none(), "{point}: the drain went past a wait point");
        assert_eq!(journal(&a).backlog().unwrap().drained_seq, 0, "{point}: step 7 ran");
        child.kill().unwrap();
        child.wait().unwrap();

        let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
        assert!(out.status.success(), "{point}: recovery failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_exactly(&target, &numbered("a", 0..100));
        assert!(tributary::verify(&target).unwrap().is_consistent());
    }
}

#[test]
fn wait_without_a_folder_still_blocks_and_says_where() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    journal(&spool.join("a.journal")).append_batch(&numbered("a", 0..3)).unwrap();
    init_cli(&target);
    let mut child = Command::new(bin())
        .args(["drain", "--target", &s(&target), "--spool", &s(&spool)])
        .env("TRIBUTARY_FAILPOINTS", "drain.locked=wait")
        .env_remove("TRIBUTARY_FAILPOINT_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its stderr says it reached the point; read up to that line (blocking read, no timing).
    let mut err = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("failpoint drain.locked reached") {
        let n = std::io::Read::read(&mut err, &mut buf).unwrap();
        assert!(n > 0, "the drain ended without reaching drain.locked: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(child.try_wait().unwrap().is_none(), "the drain went past drain.locked");
    child.kill().unwrap();
    child.wait().unwrap();
}
