//! `verify` and managed rotation (issue 13 item 5): no false alarm while a rotation is
//! between its steps, and a leftover `<target>.1` that tributary did not make (logrotate,
//! by hand) is neither mistaken for an interrupted rotation nor overwritten.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;
use tributary::verify;

/// A `tributary drain` that rotates, frozen at `point` (the `hold` failpoint) until the
/// returned guard's `.reached` file is removed.
struct Frozen {
    child: Child,
    reached: std::path::PathBuf,
}

impl Frozen {
    fn at(point: &str, target: &Path, spool: &Path, fp_dir: &Path) -> Frozen {
        let child = Command::new(bin())
            .args(["drain", "--target", &s(target), "--spool", &s(spool), "--rotate-lines", "3"])
            .env("TRIBUTARY_FAILPOINTS", format!("{point}=hold"))
            .env(tributary::testing::failpoint::DIR_VAR, fp_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reached = fp_dir.join(format!("{point}.reached"));
        let mut f = Frozen { child, reached };
        // wait for the condition (the point announced), not for a time
        while !f.reached.exists() {
            if let Some(st) = f.child.try_wait().unwrap() {
                panic!("the drain exited ({st}) before reaching {point}");
            }
            std::thread::yield_now();
        }
        f
    }

    fn release(mut self) {
        std::fs::remove_file(&self.reached).unwrap();
        let st = self.child.wait().unwrap();
        assert!(st.success(), "the released drain failed: {st}");
    }
}

#[test]
fn verify_is_consistent_at_every_step_of_a_rotation() {
    for point in ["rotate.after_rename", "rotate.after_create", "rotate.after_commit"] {
        let d = tmp();
        let (spool, target) = paths(d.path());
        init(&target);
        let j = journal(&spool.join("a.journal"));
        let first = numbered("a", 0..3);
        j.append_batch(&first).unwrap();
        compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
        let more = numbered("b", 0..2);
        j.append_batch(&more).unwrap();
        drop(j);
        let fp = d.path().join("fp");
        std::fs::create_dir(&fp).unwrap();
        let frozen = Frozen::at(point, &target, &spool, &fp);
        let v = verify(&target).unwrap();
        assert!(v.is_consistent(), "{point}: verify raised a false alarm mid-rotation: {:?}", v.problems);
        let out = cli(&["verify", "--target", &s(&target)]);
        assert!(out.status.success(), "{point}: {}", String::from_utf8_lossy(&out.stdout));
        frozen.release();
        let v = verify(&target).unwrap();
        assert!(v.is_consistent(), "{point}, after: {:?}", v.problems);
        let mut all = lines_of(&tributary::generation_path(&target, 1));
        all.extend(lines_of(&target));
        let mut want = first.clone();
        want.extend(more);
        assert_eq!(all, want, "{point}");
    }
}

#[test]
fn a_leftover_generation_file_is_not_an_interrupted_rotation_nor_overwritten() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let leftover = tributary::generation_path(&target, 1);
    std::fs::write(&leftover, b"logrotate's old file\n").unwrap();
    let j = journal(&spool.join("a.journal"));
    let lines = numbered("a", 0..4);
    j.append_batch(&lines).unwrap();
    // no rotation configured: drains as usual
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    assert_exactly(&target, &lines);
    // rotation configured: refused with what to do, the leftover kept, nothing lost
    j.append_batch(&numbered("b", 0..1)).unwrap();
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool), "--rotate-lines", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("move it away") && err.contains("[invalid_argument]"), "{err}");
    assert_eq!(std::fs::read(&leftover).unwrap(), b"logrotate's old file\n", "the leftover was overwritten");
    std::fs::rename(&leftover, d.path().join("moved-away")).unwrap();
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool), "--rotate-lines", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut all = lines_of(&leftover);
    all.extend(lines_of(&target));
    let mut want = lines;
    want.extend(numbered("b", 0..1));
    assert_eq!(all, want);
    assert!(verify(&target).unwrap().is_consistent());
}

/// A reader that learned of generation 1 before a rotation, opening its file after it,
/// must read generation 1 (now `<target>.1`), not the new generation that sits at the
/// target's path and is already longer than generation 1 was (found by the Go rotation
/// test under load: it read the wrong file, then failed with target_truncated).
#[test]
fn a_reader_opening_its_generation_after_a_rotation_reads_that_generation() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let j = journal(&spool.join("a.journal"));
    let first = numbered("g1", 0..3);
    j.append_batch(&first).unwrap();
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    // the reader knows generation 1 (its manifest) but has not opened its file yet
    let mut r = tributary::Reader::open_at(&target, tributary::Cursor::START).unwrap();
    // rotate, then commit a generation 2 longer than generation 1
    let second = numbered(&"long".repeat(20), 0..5);
    j.append_batch(&second).unwrap();
    let opts = tributary::CompactorOptions::default().rotate_lines(Some(3));
    tributary::Compactor::new(&target, opts).unwrap().drain(std::slice::from_ref(&j)).unwrap();
    assert!(
        std::fs::metadata(&target).unwrap().len()
            > std::fs::metadata(tributary::generation_path(&target, 1)).unwrap().len()
    );
    let mut got = Vec::new();
    while let Some(l) = r.next_line().unwrap() {
        got.push(l);
    }
    let mut want = first;
    want.extend(second);
    assert_eq!(got, want);
}

/// A rotation killed after its rename, then `init` (an operator's setup step runs it
/// after a crash): it completes the rotation as a round would, instead of calling the
/// target truncated (found by the crash states).
#[test]
fn init_completes_a_rotation_killed_after_its_rename() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let jp = spool.join("a.journal");
    let j = journal(&jp);
    let first = numbered("a", 0..3);
    j.append_batch(&first).unwrap();
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    let more = numbered("b", 0..2);
    j.append_batch(&more).unwrap();
    let out = cli_env(
        &["drain", "--target", &s(&target), "--journal", &s(&jp), "--rotate-lines", "3"],
        &[("TRIBUTARY_FAILPOINTS", "rotate.after_rename=kill")],
    );
    assert!(!out.status.success(), "the failpoint did not kill the drain");
    assert!(!target.exists(), "the kill came after the new target was created");
    let r = compactor(&target).init().unwrap();
    assert!(!r.created, "{r:?}");
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    let mut all = lines_of(&tributary::generation_path(&target, 1));
    all.extend(lines_of(&target));
    let mut want = first;
    want.extend(more);
    assert_eq!(all, want);
    assert!(verify(&target).unwrap().is_consistent());
}
