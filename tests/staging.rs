//! Staging (docs/design.md "Staging: one round commits every host's lines"), on real
//! files and real processes: a compactor killed after staging and before it got the
//! lock has its lines committed by another host's round; a batch staged twice (two
//! stage files) is committed once; a damaged stage file commits nothing of itself; a
//! stage file whose compactor stopped and whose batches are all committed is deleted.
//! Two "hosts" are two spools and two compactors over one target.

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use common::*;
use tributary::{Compactor, CompactorOptions, Sidecar, STAGING_VAR};

fn staging(target: &Path) -> Compactor {
    Compactor::new(target, CompactorOptions::default()).unwrap().staging(true)
}

/// `tributary drain` of `journal` with staging on, SIGKILLed when it has the lock: it
/// staged the journal's new lines and committed nothing.
fn stage_and_die(target: &Path, journal: &Path) {
    let out = cli_env(
        &["drain", "--target", &s(target), "--journal", &s(journal)],
        &[(STAGING_VAR, "on"), ("TRIBUTARY_FAILPOINTS", "drain.locked=kill")],
    );
    assert_eq!(out.status.signal(), Some(9), "the drain should have been SIGKILLed: {out:?}");
}

fn stage_files(target: &Path) -> Vec<PathBuf> {
    let dir = Sidecar::for_target(target).dir.join("stage");
    let mut v: Vec<PathBuf> = fs::read_dir(&dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    v.sort();
    v
}

#[test]
fn another_host_s_round_commits_what_a_killed_compactor_staged() {
    let d = tmp();
    let (spool_a, target) = paths(d.path());
    let spool_b = d.path().join("spool-b");
    fs::create_dir_all(&spool_b).unwrap();
    init(&target);
    let a = journal(&spool_a.join("a.journal"));
    let lines_a = numbered("a", 0..50);
    a.append_batch(&lines_a).unwrap();
    stage_and_die(&target, a.path());
    assert_eq!(stage_files(&target).len(), 1, "the killed drain staged its lines");
    assert!(lines_of(&target).is_empty(), "nothing committed yet");
    // Host B, with a journal of its own, drains: its round commits A's staged lines.
    let b = journal(&spool_b.join("b.journal"));
    let lines_b = numbered("b", 0..10);
    b.append_batch(&lines_b).unwrap();
    let report = staging(&target).drain(std::slice::from_ref(&b)).unwrap();
    assert_eq!(report.lines, 60, "{report:?}");
    let mut all = lines_a.clone();
    all.extend(lines_b.iter().cloned());
    assert_exactly(&target, &all);
    let m = manifest_of(&target);
    assert_eq!(m.watermarks.get(&a.id()).map(|w| w.last_seq), Some(50));
    // A's journal still holds its rows (no record yet); its next drain records them,
    // commits nothing twice, and its own new lines go in once.
    let more = numbered("a", 50..60);
    a.append_batch(&more).unwrap();
    staging(&target).drain(std::slice::from_ref(&a)).unwrap();
    all.extend(more.iter().cloned());
    assert_exactly(&target, &all);
    assert_eq!(a.drained_record().unwrap().map(|r| r.seq), Some(60));
    // Every stage file's compactor has stopped (the killed one, and each one-shot
    // drain's) and all their batches are committed: a round deletes them all.
    assert!(!stage_files(&target).is_empty());
    staging(&target).drain(&[]).unwrap();
    assert!(stage_files(&target).is_empty(), "dead stage files left: {:?}", stage_files(&target));
}

#[test]
fn a_batch_staged_twice_is_committed_once() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let a = journal(&spool.join("a.journal"));
    let lines = numbered("a", 0..30);
    a.append_batch(&lines).unwrap();
    // Two compactors (a daemon and a one-shot drain, say) staged the same lines.
    stage_and_die(&target, a.path());
    stage_and_die(&target, a.path());
    assert_eq!(stage_files(&target).len(), 2);
    // A host with no journals of its own commits both files' batches: once.
    let report = staging(&target).drain(&[]).unwrap();
    assert_eq!(report.lines, 30, "{report:?}");
    assert_exactly(&target, &lines);
}

#[test]
fn a_damaged_stage_file_commits_nothing_of_itself_and_the_journal_still_drains() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let a = journal(&spool.join("a.journal"));
    let lines = numbered("a", 0..20);
    a.append_batch(&lines).unwrap();
    stage_and_die(&target, a.path());
    let file = stage_files(&target).pop().unwrap();
    // One byte of the batch's data changed (the first batch starts at 8 KiB, its data
    // after an 88-byte header).
    let mut bytes = fs::read(&file).unwrap();
    bytes[8192 + 88 + 3] ^= 0x20;
    fs::write(&file, &bytes).unwrap();
    assert_eq!(staging(&target).drain(&[]).unwrap().lines, 0, "the damaged batch is not taken");
    assert!(lines_of(&target).is_empty());
    staging(&target).drain(std::slice::from_ref(&a)).unwrap();
    assert_exactly(&target, &lines);
}

#[test]
fn a_stage_file_restored_from_an_older_copy_commits_each_line_once() {
    // A stage file restored from an older copy holds batches the watermark has passed:
    // they are skipped, and the lines after them follow.
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let a = journal(&spool.join("a.journal"));
    let first = numbered("a", 0..10);
    a.append_batch(&first).unwrap();
    stage_and_die(&target, a.path());
    let file = stage_files(&target).pop().unwrap();
    let old_copy = fs::read(&file).unwrap();
    staging(&target).drain(&[]).unwrap();
    assert_exactly(&target, &first);
    let second = numbered("a", 10..20);
    a.append_batch(&second).unwrap();
    fs::write(&file, &old_copy).unwrap(); // the old batch is back
    stage_and_die(&target, a.path()); // and a new file holds 11..20
    staging(&target).drain(&[]).unwrap();
    let mut all = first.clone();
    all.extend(second.iter().cloned());
    assert_exactly(&target, &all);
}
