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
