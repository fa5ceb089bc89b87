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
