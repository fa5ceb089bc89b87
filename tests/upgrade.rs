//! Upgrading a target made by a version-1 build (manifest in its own file) to manifest
//! format 2 (slots in the lock file), on its first drain: docs/design.md "Upgrading a
//! version-1 target". The fixture `tests/fixtures/v1-target.tar.gz` was made by the
//! real version-1 binary (`tests/fixtures/make-v1-target.sh`): a rotated generation,
//! committed lines of two journals, lines still undrained in both, and the
//! uncommitted tail of a version-1 drain killed after writing.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use tributary::{verify, Compactor, CompactorOptions, ErrorKind, Manifest, Sidecar};

struct V1 {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl V1 {
    fn unpack() -> V1 {
        let dir = tmp();
        let tarball = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-target.tar.gz");
        let ok = Command::new("tar").arg("-C").arg(dir.path()).arg("-xzf").arg(&tarball).status().unwrap();
        assert!(ok.success(), "unpacking {}", tarball.display());
        let root = dir.path().join("v1");
        V1 { _dir: dir, root }
    }
    fn target(&self) -> PathBuf {
        self.root.join("shared/out.log")
    }
    fn spool(&self) -> PathBuf {
        self.root.join("spool")
    }
    fn manifest_file(&self) -> String {
        std::fs::read_to_string(Sidecar::for_target(&self.target()).manifest).unwrap()
    }
    /// Every line appended in the fixture, each exactly once across both generations.
    fn assert_exactly_once(&self) {
        let mut have: HashMap<Vec<u8>, usize> = HashMap::new();
        for f in [self.root.join("shared/out.log.1"), self.target()] {
            for l in lines_of(&f) {
                *have.entry(l).or_default() += 1;
            }
        }
        let want = std::fs::read_to_string(self.root.join("all-lines")).unwrap();
        for l in want.lines() {
            assert_eq!(have.remove(l.as_bytes()), Some(1), "line {l} not exactly once");
        }
        assert!(have.is_empty(), "lines that were never appended: {have:?}");
        let v = verify(self.target()).unwrap();
        assert!(v.is_consistent(), "{:?}", v.problems);
        assert_eq!(v.uncommitted_tail_bytes, 0);
    }
}

#[test]
fn a_version_1_target_is_upgraded_on_its_first_drain_and_loses_nothing() {
    let v1 = V1::unpack();
    assert!(v1.manifest_file().starts_with("tributary-manifest 1\n"), "the fixture is not a version-1 target");
    // a version-2 reader reads the version-1 manifest before the upgrade
    let before = Manifest::load(&Sidecar::for_target(&v1.target())).unwrap().expect("v1 manifest");
    assert_eq!((before.generation, before.committed_lines, before.intent), (2, 2, None));
    let rep = compactor(&v1.target()).drain_spool(&v1.spool()).unwrap();
    // the version-1 drain's uncommitted tail was announced by the upgrade and repaired
    assert_eq!(rep.repaired_tail_bytes, 9, "{rep:?}");
    assert_eq!(rep.lines, 4, "{rep:?}");
    v1.assert_exactly_once();
    let after = Manifest::load(&Sidecar::for_target(&v1.target())).unwrap().unwrap();
    assert_eq!(after.target_id, before.target_id, "the upgrade changed the target's identity");
    assert_eq!(after.rotated, before.rotated, "the upgrade lost a rotated generation");
    assert!(after.target_ino != 0, "the upgrade did not record the target's inode");
    assert!(after.intent.is_none());
    // the manifest file is now the stub a version-1 build refuses ("version 2")
    assert!(v1.manifest_file().starts_with("tributary-manifest 2\nmoved lock\n"), "{}", v1.manifest_file());
    // and later drains go on from the slots
    let rep = compactor(&v1.target()).drain_spool(&v1.spool()).unwrap();
    assert_eq!(rep.lines, 0);
    v1.assert_exactly_once();
}

/// `tributary init` on a version-1 target upgrades it too (and says so).
#[test]
fn init_upgrades_a_version_1_target() {
    let v1 = V1::unpack();
    let out = cli(&["init", "--target", &s(&v1.target())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("upgraded"), "{}", String::from_utf8_lossy(&out.stdout));
    let r = Compactor::new(v1.target(), CompactorOptions::default()).unwrap().init().unwrap();
    assert!(!r.created && !r.upgraded, "{r:?}");
    compactor(&v1.target()).drain_spool(&v1.spool()).unwrap();
    v1.assert_exactly_once();
}

/// A process killed at each step of the upgrade: the next drain finishes it, exactly once.
#[test]
fn an_upgrade_killed_at_each_step_is_finished_by_the_next_drain() {
    for point in ["upgrade.after_file", "upgrade.after_slot", "drain.after_intent", "drain.after_write"] {
        let v1 = V1::unpack();
        let out = cli_env(
            &["drain", "--target", &s(&v1.target()), "--spool", &s(&v1.spool())],
            &[("TRIBUTARY_FAILPOINTS", &format!("{point}=kill"))],
        );
        assert!(!out.status.success(), "{point}: the failpoint did not kill the drain");
        let out = cli(&["drain", "--target", &s(&v1.target()), "--spool", &s(&v1.spool())]);
        assert!(out.status.success(), "{point}: {}", String::from_utf8_lossy(&out.stderr));
        v1.assert_exactly_once();
        assert!(v1.manifest_file().starts_with("tributary-manifest 2\nmoved lock\n"), "{point}");
    }
}

/// A version-1 manifest file restored over the stub after the upgrade is ignored: the
/// slots are the manifest (a restore of the file cannot take the target back).
#[test]
fn a_version_1_manifest_restored_after_the_upgrade_is_not_used() {
    let v1 = V1::unpack();
    let old = v1.manifest_file();
    compactor(&v1.target()).drain_spool(&v1.spool()).unwrap();
    std::fs::write(Sidecar::for_target(&v1.target()).manifest, old).unwrap();
    let m = Manifest::load(&Sidecar::for_target(&v1.target())).unwrap().unwrap();
    assert!(m.committed_lines > 2, "the restored version-1 file was read: {m:?}");
    let rep = compactor(&v1.target()).drain_spool(&v1.spool()).unwrap();
    assert_eq!((rep.lines, rep.repaired_tail_bytes), (0, 0), "{rep:?}");
    v1.assert_exactly_once();
    // the lock file gone as well (slots destroyed) with only the stub: refused, not recreated
    let v1 = V1::unpack();
    compactor(&v1.target()).drain_spool(&v1.spool()).unwrap();
    std::fs::write(Sidecar::for_target(&v1.target()).lock, b"").unwrap();
    let e = compactor(&v1.target()).drain_spool(&v1.spool()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CorruptManifest, "{e}");
}

/// A version-1 binary that committed after the upgrade (its advice to move the stub
/// aside followed — an outside tester): the drain stops with `corrupt_manifest` and
/// leaves its manifest as it is (replacing it by the stub destroyed the old build's
/// record), and the README's way on keeps every line exactly once. The fixture
/// (`tests/fixtures/make-v1-after-upgrade.sh`, the real version-1 binary): a1..a100
/// committed by version 1, b1..b50 by the upgrading drain, d1..d10 by version 1 after
/// it (of another journal, adopting the target afresh), c1..c30 not drained yet.
#[test]
fn a_version_1_commit_after_the_upgrade_is_refused_and_its_manifest_kept() {
    let dir = tmp();
    let tarball = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-after-upgrade.tar.gz");
    let ok = Command::new("tar").arg("-C").arg(dir.path()).arg("-xzf").arg(&tarball).status().unwrap();
    assert!(ok.success(), "unpacking {}", tarball.display());
    let root = dir.path().join("v1up");
    let (target, spool) = (root.join("shared/t.log"), root.join("spool"));
    let file = Sidecar::for_target(&target).manifest;
    let old = std::fs::read(&file).unwrap();
    assert!(old.starts_with(b"tributary-manifest 1\n"), "the fixture has no version-1 manifest");

    let e = compactor(&target).drain_spool(&spool).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CorruptManifest, "{e}");
    let said = e.to_string();
    for words in ["version-1 manifest of another target identity", "first-release build", "583 bytes committed"] {
        assert!(said.contains(words), "{said}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), old, "the old build's manifest was replaced");
    assert_eq!(std::fs::metadata(&target).unwrap().len(), 614, "the target was touched");

    // The README's way on: the file moved out, the drain reports the old build's lines
    // as an unexpected tail, whose advice keeps them.
    std::fs::rename(&file, root.join("kept-v1-manifest")).unwrap();
    // (unpacking gave the target a new inode: accepted, as for a copied target)
    let out = cli(&["init", "--target", &s(&target)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let e = compactor(&target).drain_spool(&spool).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnexpectedTail, "{e}");
    let bytes = std::fs::read(&target).unwrap();
    let (committed, tail) = bytes.split_at(583);
    std::fs::write(&target, committed).unwrap();
    let rescued = root.join("spool3");
    std::fs::create_dir(&rescued).unwrap();
    let j = tributary::Journal::open(rescued.join("r.journal"), tributary::JournalOptions::default()).unwrap();
    for l in tail.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        j.append(l).unwrap();
    }
    drop(j);
    compactor(&target).drain_spool(&spool).unwrap();
    compactor(&target).drain_spool(&rescued).unwrap();
    let old_journal =
        tributary::Journal::open(root.join("spool2/d.journal"), tributary::JournalOptions::default()).unwrap();
    let e = compactor(&target).drain(&[old_journal]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JournalForeign, "the old build's journal: {e}");

    let mut have = lines_of(&target);
    let mut want: Vec<Vec<u8>> =
        std::fs::read_to_string(root.join("all-lines")).unwrap().lines().map(|l| l.as_bytes().to_vec()).collect();
    have.sort();
    want.sort();
    assert_eq!(have, want, "not every line exactly once");
    assert!(verify(&target).unwrap().is_consistent());
}
