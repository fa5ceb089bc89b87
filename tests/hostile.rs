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
    use std::io::Write;
    let mut child = std::process::Command::new(bin())
        .args(["append", "--journal", &s(journal)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}
