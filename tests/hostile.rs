//! The hostile-environment suite (issue 12): real operations people do to files that
//! tributary owns — a second name for the target, a journal removed or replaced under
//! a live writer, ... Each must give exactly-once or a clear, named error that touches
//! nothing; never a silent exit 0 with lines lost or duplicated.

mod common;

use std::os::unix::fs::symlink;

use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A target with committed lines, drained from one journal; returns (dir, spool, target, lines).
fn committed_target() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf, Vec<Vec<u8>>) {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let lines = numbered("a", 0..10);
    journal(&spool.join("a.journal")).append_batch(&lines).unwrap();
    init_cli(&target);
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
    assert!(out.status.success(), "{}", stderr(&out));
    (d, spool, target, lines)
}

/// Item 3: `current.log -> out.log` on one host, `out.log` on another gave one file two
/// sidecars, two locks, two manifests; one host truncated the other's committed lines.
/// A second name for the target (a symlink, a hard link) is refused, touching nothing.
#[test]
fn a_second_name_for_the_target_is_refused_and_nothing_is_touched() {
    for kind in ["symlink", "hard link"] {
        let (d, spool, target, lines) = committed_target();
        let other = d.path().join("shared").join("current.log");
        match kind {
            "symlink" => symlink(&target, &other).unwrap(),
            _ => std::fs::hard_link(&target, &other).unwrap(),
        }
        let more = numbered("b", 0..5);
        journal(&spool.join("b.journal")).append_batch(&more).unwrap();
        let before = std::fs::read(&target).unwrap();
        for name in [&other, &target] {
            if kind == "symlink" && name == &target {
                continue; // the real name of a symlinked file is fine
            }
            let out = cli(&["drain", "--target", &s(name), "--spool", &s(&spool)]);
            let err = stderr(&out);
            assert!(
                !out.status.success() && err.contains("[invalid_argument]") && err.contains(kind),
                "{kind}: a drain through {} must be refused, naming the {kind}: {err}",
                name.display()
            );
            for cmd in ["verify", "status"] {
                let out = cli(&[cmd, "--target", &s(name)]);
                assert!(!out.status.success(), "{kind}: {cmd} through {} must be refused", name.display());
            }
        }
        assert_eq!(std::fs::read(&target).unwrap(), before, "{kind}: the target was touched");
        assert!(!d.path().join("shared/current.log.tributary").exists(), "{kind}: a second sidecar was created");
        if kind == "hard link" {
            std::fs::remove_file(&other).unwrap();
        }
        // through its one real name, the target drains as before
        let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
        assert!(out.status.success(), "{kind}: {}", stderr(&out));
        let mut expected = lines.clone();
        expected.extend(more);
        assert_exactly(&target, &expected);
    }
}

/// Item 8: a journal removed, replaced or moved under a live writer: appends kept
/// returning seqs into an unlinked inode that no drain ever sees. The writer must
/// notice and fail clearly (`journal_gone`), and store nothing.
#[test]
fn a_journal_removed_replaced_or_moved_under_a_live_writer_fails_its_next_append() {
    type Act = fn(&std::path::Path, &std::path::Path);
    let cases: &[(&str, Act)] = &[
        ("rm of all three files", |_, j| {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", j.display()));
            }
        }),
        ("rm of the journal file only", |_, j| std::fs::remove_file(j).unwrap()),
        ("rm of the -wal only", |_, j| std::fs::remove_file(format!("{}-wal", j.display())).unwrap()),
        ("replaced by a new journal of the same name", |_, j| {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", j.display()));
            }
            let out = run_append(j, "someone else's line\n");
            assert!(out.status.success(), "{}", stderr(&out));
        }),
        ("spool folder moved away", |spool, _| {
            std::fs::rename(spool, spool.with_file_name("spool.moved")).unwrap();
        }),
    ];
    for (what, act) in cases {
        let d = tmp();
        let (spool, _) = paths(d.path());
        let path = spool.join("a.journal");
        let j = journal(&path);
        j.append(b"before").unwrap();
        act(&spool, &path);
        let r = j.append(b"after");
        match r {
            Err(e) => {
                assert_eq!(e.kind(), tributary::ErrorKind::JournalGone, "{what}: {e}");
                let msg = e.to_string();
                assert!(
                    msg.contains(&s(&path)) && msg.contains("reopen"),
                    "{what}: the message must say what to do: {msg}"
                );
            }
            Ok(seq) => panic!("{what}: append returned seq {seq} into a journal no drain will ever see"),
        }
        // a batch and a keyed append too
        assert!(j.append_batch(&[b"x".to_vec()]).is_err(), "{what}: append_batch");
        assert!(j.append_keyed(b"k", b"x").is_err(), "{what}: append_keyed");
    }
}

fn run_append(journal: &std::path::Path, input: &str) -> std::process::Output {
    let mut child = std::process::Command::new(bin())
        .args(["append", "--journal", &s(journal)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    feed(&mut child, input.as_bytes());
    child.wait_with_output().unwrap()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn committed_lines(target: &std::path::Path) -> usize {
    tributary::Manifest::load(&tributary::Sidecar::for_target(target))
        .ok()
        .flatten()
        .map_or(0, |m| m.committed_lines as usize)
}

/// Item 9: the supported way to retire a journal — drain it, then delete it — with a
/// writer that still has it open: every line it held is committed once, the writer's
/// next append fails (`journal_gone`, nothing stored), and the name starts a new journal.
#[test]
fn retiring_a_journal_with_a_live_writer_loses_nothing_and_stops_the_writer() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let path = spool.join("job.journal");
    let writer = journal(&path);
    let lines = numbered("job", 0..20);
    writer.append_batch(&lines).unwrap();
    init_cli(&target);
    let out = cli(&["retire", "--target", &s(&target), "--journal", &s(&path)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("retired 1 journal(s)"), "{out:?}");
    for suffix in ["", "-wal", "-shm"] {
        assert!(!std::path::Path::new(&format!("{}{suffix}", path.display())).exists(), "{suffix} left behind");
    }
    let err = writer.append(b"too late").expect_err("a retired journal must not acknowledge lines");
    assert_eq!(err.kind(), tributary::ErrorKind::JournalGone, "{err}");
    drop(writer);
    // the name is free for a new journal
    let fresh = numbered("fresh", 0..3);
    journal(&path).append_batch(&fresh).unwrap();
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut expected = lines;
    expected.extend(fresh);
    assert_exactly(&target, &expected);
    // a missing journal is an error that names it
    let out = cli(&["retire", "--target", &s(&target), "--journal", &s(&spool.join("nope.journal"))]);
    assert!(!out.status.success() && stderr(&out).contains("nope.journal"), "{}", stderr(&out));
}

/// Item 9, as operators do it under a running `compact`: all three files removed, the
/// name reused at once. The daemon kept draining its handle on the removed file and
/// never drained the new journal; it now reopens the journal by path and keeps running.
#[test]
fn a_compact_daemon_drains_a_journal_whose_name_was_reused_and_keeps_running() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init_cli(&target);
    let mut daemon = std::process::Command::new(bin())
        .args(["compact", "--target", &s(&target), "--spool", &s(&spool), "--interval", "10"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let path = spool.join("job.journal");
    let first = numbered("first", 0..5);
    let out = run_append(&path, &first.iter().map(|l| format!("{}\n", String::from_utf8_lossy(l))).collect::<String>());
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("the first lines to be committed", || committed_lines(&target) == 5);
    // the new journal is made beside and renamed over the old name after its -wal and
    // -shm are removed: the daemon never sees the name missing (as with a quick reuse)
    let second = numbered("second", 0..5);
    let staging = d.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let staged = staging.join("job.journal");
    let out =
        run_append(&staged, &second.iter().map(|l| format!("{}\n", String::from_utf8_lossy(l))).collect::<String>());
    assert!(out.status.success(), "{}", stderr(&out));
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    std::fs::rename(&staged, &path).unwrap();
    wait_until("the new journal's lines to be committed", || {
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        committed_lines(&target) == 10
    });
    tributary::testing::sys::send_signal(daemon.id(), libc::SIGTERM).unwrap();
    let status = daemon.wait().unwrap();
    assert!(status.success(), "the daemon did not stop cleanly: {status:?}");
    let mut expected = first;
    expected.extend(second);
    assert_exactly(&target, &expected);
}

/// Item 9 / 8: `rm x.journal` alone leaves its -wal (maybe with undrained lines); a
/// writer opening the name must not get SQLite replaying that log into a new journal
/// ("disk I/O error", or lines nowhere): a clear error, touching nothing.
#[test]
fn a_journal_removed_without_its_wal_is_not_recreated_over_the_stale_log() {
    let d = tmp();
    let (spool, _) = paths(d.path());
    let path = spool.join("job.journal");
    let keep = journal(&path); // keeps the -wal alive, as a running compactor would
    keep.append(b"undrained").unwrap();
    std::fs::remove_file(&path).unwrap();
    let out = run_append(&path, "new line\n");
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("[journal_gone]") && err.contains("-wal"), "{err}");
    assert!(!path.exists(), "a new journal was created over the stale log");
    drop(keep);
}

/// Item 8's neighbour: after a journal was removed and a new one made under the same
/// name, closing the stale handle must not delete the new journal's -wal and -shm (SQLite
/// deletes them by name when its last connection to a file closes — unless the file has
/// moved, which it checks: this guards that protection against a change of ours or
/// SQLite's).
#[test]
fn closing_a_handle_on_a_removed_journal_leaves_its_successor_alone() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let path = spool.join("job.journal");
    let stale = journal(&path);
    stale.append(b"into the removed journal").unwrap();
    for suffix in ["", "-wal", "-shm"] {
        std::fs::remove_file(format!("{}{suffix}", path.display())).unwrap();
    }
    let successor = journal(&path);
    let lines = numbered("new", 0..6);
    successor.append_batch(&lines[..5]).unwrap();
    assert_eq!(stale.append(b"x").unwrap_err().kind(), tributary::ErrorKind::JournalGone);
    drop(stale);
    successor.append(&lines[5]).expect("the successor's -wal was deleted by the stale handle's close");
    drop(successor);
    init(&target);
    compactor(&target).drain_paths(std::slice::from_ref(&path)).unwrap();
    assert_exactly(&target, &lines);
}
