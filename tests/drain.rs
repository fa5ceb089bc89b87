//! The drain protocol (DESIGN "Drain path") on real files: adoption, tail repair, and
//! every refusal that protects committed data. Each refusal must touch nothing. A
//! target is created once with `init` (drains never create one).

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use tributary::{Compactor, CompactorOptions, ErrorKind, Journal, ManifestDeltas, Reader, Sidecar, TargetLock};

/// A drain of `journal` into `target` in a child `tributary drain`, SIGKILLed at
/// `drain.after_write`: the round's bytes are in the target, announced by its intent,
/// not committed — the tail a crashed drain really leaves.
fn crash_a_drain_after_its_write(target: &Path, journal: &Path, extra: &[&str]) {
    let (t, j) = (s(target), s(journal));
    let mut args = vec!["drain", "--target", &t, "--journal", &j];
    args.extend_from_slice(extra);
    let out = cli_env(&args, &[("TRIBUTARY_FAILPOINTS", "drain.after_write=kill")]);
    assert_eq!(out.status.signal(), Some(9), "the drain should have been SIGKILLed: {out:?}");
}

#[test]
fn a_pre_existing_target_is_adopted_when_it_ends_with_a_newline() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    fs::write(&target, b"old 1\nold 2\n").unwrap();
    let j = journal(&spool.join("a.journal"));
    j.append(b"new").unwrap();
    let r = compactor(&target).init().unwrap();
    assert!(r.created && r.adopted_lines == 2, "{r:?}");
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    assert_exactly(&target, &[b"old 1".to_vec(), b"old 2".to_vec(), b"new".to_vec()]);
    assert_eq!(lines_of(&target)[2], b"new");
    let m = manifest_of(&target);
    assert_eq!((m.committed_lines, m.committed_len), (3, 16));
}

#[test]
fn a_pre_existing_target_with_a_partial_last_line_is_refused_untouched() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    fs::write(&target, b"old 1\npartial").unwrap();
    let j = journal(&spool.join("a.journal"));
    j.append(b"new").unwrap();
    let e = compactor(&target).init().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TornTarget, "{e}");
    // a drain allowed to create the target refuses it the same way
    let create = CompactorOptions::default().create(true);
    let e = Compactor::new(&target, create).unwrap().drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TornTarget, "{e}");
    assert_eq!(fs::read(&target).unwrap(), b"old 1\npartial");
    assert_eq!(j.backlog().unwrap().lines, 1, "nothing was drained");
    assert!(tributary::Manifest::load(&Sidecar::for_target(&target)).unwrap().is_none(), "no manifest committed");
}

#[test]
fn a_manifest_with_a_flipped_byte_is_an_error_never_replaced() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let j = journal(&spool.join("a.journal"));
    j.append_batch(&numbered("a", 0..3)).unwrap();
    init_format_2(&target); // (the slots are read here as version 2 writes them)
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    // A flipped byte in one slot falls back to the other (the previous commit); with
    // both slots damaged no manifest is left.
    let mpath = Sidecar::for_target(&target).lock;
    assert!(slots_of(&target).iter().all(|m| m.is_some()), "init and the drain wrote both slots");
    let mut bytes = fs::read(&mpath).unwrap();
    for slot in [0, SLOT_BYTES as usize] {
        bytes[slot + 30] ^= 0x04;
    }
    fs::write(&mpath, &bytes).unwrap();
    j.append(b"more").unwrap();
    let before = fs::read(&target).unwrap();
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CorruptManifest, "{e}");
    assert_eq!(fs::read(&mpath).unwrap(), bytes, "the corrupt slots are left as they are");
    assert_eq!(fs::read(&target).unwrap(), before);
    assert_eq!(j.backlog().unwrap().lines, 1);
    assert_eq!(tributary::verify(&target).unwrap_err().kind(), ErrorKind::CorruptManifest);
    assert_eq!(Reader::open(&target, 0).unwrap_err().kind(), ErrorKind::CorruptManifest);
    let out = cli(&["verify", "--target", &s(&target)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt manifest"));
}

#[test]
fn a_journal_row_with_a_wrong_crc_stops_the_drain_naming_journal_and_seq() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = spool.join("bad.journal");
    let j = journal(&jp);
    j.append_batch(&numbered("r", 0..4)).unwrap();
    let raw = rusqlite::Connection::open(&jp).unwrap();
    // One run holds seqs 1..4, 9 bytes each ("r-00000N\n"); flip a byte inside seq 3.
    raw.execute("UPDATE runs SET data = CAST(substr(data, 1, 20) || 'X' || substr(data, 22) AS BLOB)", []).unwrap();
    drop(raw);
    init(&target);
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CorruptJournalRow, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("bad.journal") && msg.contains("seq 3"), "{msg}");
    assert_eq!(fs::metadata(&target).unwrap().len(), 0, "nothing of that round was written");
    assert_eq!(j.backlog().unwrap().lines, 4, "nothing was skipped or deleted");
}

#[test]
fn a_wrong_line_table_crc_stops_the_drain_naming_the_line() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = spool.join("meta.journal");
    let j = journal(&jp);
    j.append_batch(&numbered("m", 0..4)).unwrap();
    let raw = rusqlite::Connection::open(&jp).unwrap();
    // line_meta is (len u32, crc u32) per line: change seq 2's stored CRC (bytes 12..16),
    // which the run CRC covers; the per-line check then names the line.
    raw.execute(
        "UPDATE runs SET line_meta = CAST(substr(line_meta, 1, 12) || X'00000000' || substr(line_meta, 17) AS BLOB)",
        [],
    )
    .unwrap();
    drop(raw);
    init(&target);
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CorruptJournalRow, "{e}");
    assert!(e.to_string().contains("seq 2"), "{e}");
    assert_eq!(fs::metadata(&target).unwrap().len(), 0);
}

#[test]
fn a_damaged_run_checksum_alone_falls_back_to_checking_each_line() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = spool.join("runcrc.journal");
    let j = journal(&jp);
    let lines = numbered("c", 0..50);
    j.append_batch(&lines).unwrap();
    rusqlite::Connection::open(&jp).unwrap().execute("UPDATE runs SET run_crc = run_crc + 1", []).unwrap();
    // Every line still matches its own CRC: nothing is lost, the target's CRC is right.
    init(&target);
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    assert_exactly(&target, &lines);
    tributary::verify(&target).unwrap();
}

#[test]
fn a_journal_from_before_run_checksums_is_upgraded_and_drains() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = spool.join("old.journal");
    let first = numbered("old", 0..20);
    {
        let j = journal(&jp);
        j.append_batch(&first).unwrap();
    }
    // Make it look like a journal written before the columns existed (run CRCs, then
    // the durable mark: an open adds each that is missing).
    let raw = rusqlite::Connection::open(&jp).unwrap();
    raw.execute_batch("ALTER TABLE runs DROP COLUMN run_crc; ALTER TABLE runs DROP COLUMN durable").unwrap();
    drop(raw);
    let j = journal(&jp);
    let second = numbered("new", 0..20);
    j.append_batch(&second).unwrap();
    let raw = rusqlite::Connection::open(&jp).unwrap();
    let (null, set): (i64, i64) = raw
        .query_row("SELECT count(*) - count(run_crc), count(run_crc) FROM runs", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((null, set), (1, 1), "the old run has no run CRC, the new one has");
    // each run's durable mark, in seq order
    let marks = |path: &std::path::Path| -> Vec<Option<i64>> {
        let raw = rusqlite::Connection::open(path).unwrap();
        let mut st = raw.prepare("SELECT durable FROM runs ORDER BY first_seq").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(marks(&jp), [None, Some(1)], "the old run has no durable mark, the new (full) one has");
    // A journal missing only the newest column gets it too.
    let only = spool.join("only-durable.journal");
    journal(&only).append(b"x").unwrap();
    rusqlite::Connection::open(&only).unwrap().execute_batch("ALTER TABLE runs DROP COLUMN durable").unwrap();
    journal(&only).append(b"y").unwrap();
    assert_eq!(marks(&only), [None, Some(1)]);
    init(&target);
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    assert_exactly(&target, &[first, second].concat());
    tributary::verify(&target).unwrap();
}

#[test]
fn a_missing_row_is_reported_not_skipped() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = spool.join("gap.journal");
    let j = journal(&jp);
    for l in numbered("g", 0..4) {
        j.append(&l).unwrap(); // one run per append
    }
    rusqlite::Connection::open(&jp).unwrap().execute("DELETE FROM runs WHERE first_seq = 2", []).unwrap();
    init(&target);
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CorruptJournalRow, "{e}");
    assert!(e.to_string().contains("seq 2"), "{e}");
}

#[test]
fn a_target_truncated_behind_our_back_is_refused_untouched() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let j = journal(&spool.join("a.journal"));
    j.append_batch(&numbered("t", 0..10)).unwrap();
    init(&target);
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&target).unwrap();
    f.set_len(20).unwrap();
    j.append(b"later").unwrap();
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TargetTruncated, "{e}");
    assert_eq!(fs::metadata(&target).unwrap().len(), 20, "touched nothing");
    assert_eq!(j.backlog().unwrap().lines, 1);
    let v = tributary::verify(&target).unwrap();
    assert!(!v.is_consistent());
}

/// Rule 4: bytes past the committed length that no round announced (here a torn line
/// appended by another program, as a crashed version-1 drain's tail looked) are not
/// tributary's to cut: refused, touching nothing, and `verify` says so.
#[test]
fn foreign_bytes_past_the_committed_length_are_refused_untouched_and_never_shown() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let j = journal(&spool.join("a.journal"));
    j.append_batch(&numbered("c", 0..3)).unwrap();
    init(&target);
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    let committed = fs::metadata(&target).unwrap().len();
    let mut bytes = fs::read(&target).unwrap();
    bytes.extend_from_slice(b"c-000003\nc-0000");
    fs::write(&target, &bytes).unwrap();
    let readers: Vec<Vec<u8>> = Reader::open(&target, 0).unwrap().map(|l| l.unwrap()).collect();
    assert_eq!(readers, numbered("c", 0..3), "readers see only committed lines");
    let v = tributary::verify(&target).unwrap();
    assert!(!v.is_consistent(), "bytes no round announced are a problem");
    assert_eq!(v.uncommitted_tail_bytes, 15);
    let out = cli(&["verify", "--target", &s(&target)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("INCONSISTENT"), "{out:?}");
    j.append(b"c-000003").unwrap();
    let lock_before = fs::read(Sidecar::for_target(&target).lock).unwrap();
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnexpectedTail, "{e}");
    assert!(e.to_string().contains("15 bytes"), "{e}");
    assert_eq!(fs::read(&target).unwrap(), bytes, "the target was touched");
    assert_eq!(fs::read(Sidecar::for_target(&target).lock).unwrap(), lock_before, "a manifest was committed");
    assert_eq!(j.backlog().unwrap().lines, 1, "nothing was drained");
    // What the message says to do — cut them off — lets the drains go on.
    fs::OpenOptions::new().write(true).open(&target).unwrap().set_len(committed).unwrap();
    let r = compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    assert_eq!(r.repaired_tail_bytes, 0);
    assert_exactly(&target, &numbered("c", 0..4));
}

/// What a drain killed between its write and its commit leaves — its bytes, announced
/// by its intent — is never shown to readers, and the next drain cuts it and writes
/// those lines again, once.
#[test]
fn a_crashed_rounds_tail_is_truncated_and_never_shown_to_readers() {
    // step 1 reads the target's size after the slots, or with them (network filesystems)
    for early in [false, true] {
        let d = tmp();
        let (spool, target) = paths(d.path());
        let jp = spool.join("a.journal");
        let j = journal(&jp);
        j.append_batch(&numbered("c", 0..3)).unwrap();
        init(&target);
        compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
        let committed = fs::metadata(&target).unwrap().len();
        j.append_batch(&numbered("c", 3..5)).unwrap();
        crash_a_drain_after_its_write(&target, &jp, &[]);
        let tail = fs::metadata(&target).unwrap().len() - committed;
        assert_eq!(tail, 18, "the crashed round wrote its two lines");
        let readers: Vec<Vec<u8>> = Reader::open(&target, 0).unwrap().map(|l| l.unwrap()).collect();
        assert_eq!(readers, numbered("c", 0..3), "readers see only committed lines");
        let v = tributary::verify(&target).unwrap();
        assert!(v.is_consistent(), "a crashed round's tail is reported, not a failure: {:?}", v.problems);
        assert_eq!(v.uncommitted_tail_bytes, tail);
        let r = compactor(&target).reading_the_target_early(early).drain(std::slice::from_ref(&j)).unwrap();
        assert_eq!(r.repaired_tail_bytes, tail, "early: {early}");
        assert_exactly(&target, &numbered("c", 0..5));
    }
}

/// A tail longer than the intent announced (a crashed round's bytes and then someone
/// else's), or a manifest older than the target (a lock file restored from a copy): the
/// tail is not provably one round's, so nothing is cut.
#[test]
fn a_tail_past_the_intent_or_a_stale_manifest_is_refused_untouched() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = spool.join("a.journal");
    let j = journal(&jp);
    let mut opts = CompactorOptions::default().max_round_bytes(1000);
    opts.journal.max_line_bytes = 100;
    j.append(b"first").unwrap();
    init(&target);
    Compactor::new(&target, opts.clone()).unwrap().drain(std::slice::from_ref(&j)).unwrap();

    // a crashed round (intent: 1000 bytes), then 1500 bytes of someone else's
    j.append(b"second").unwrap();
    crash_a_drain_after_its_write(&target, &jp, &["--max-round-bytes", "1000", "--max-line-bytes", "100"]);
    assert_eq!(manifest_of(&target).intent.map(|i| i.max_len), Some(1000));
    let mut bytes = fs::read(&target).unwrap();
    assert!(bytes.ends_with(b"first\nsecond\n"), "the crashed round wrote its line");
    bytes.extend(std::iter::repeat_n(b'z', 1500));
    fs::write(&target, &bytes).unwrap();
    let e = Compactor::new(&target, opts.clone()).unwrap().drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnexpectedTail, "{e}");
    assert!(e.to_string().contains("1507 bytes") && e.to_string().contains("1000 bytes were announced"), "{e}");
    assert_eq!(fs::read(&target).unwrap(), bytes, "touched nothing");
    assert!(!tributary::verify(&target).unwrap().is_consistent());
    fs::OpenOptions::new().write(true).open(&target).unwrap().set_len(6 + 7).unwrap();
    Compactor::new(&target, opts.clone()).unwrap().drain(std::slice::from_ref(&j)).unwrap();
    assert_exactly(&target, &[b"first".to_vec(), b"second".to_vec()]);

    // the lock file restored from a copy taken before the last commit
    let lock = Sidecar::for_target(&target).lock;
    let old_lock = fs::read(&lock).unwrap();
    let k = journal(&spool.join("k.journal"));
    k.append(b"third").unwrap();
    Compactor::new(&target, opts.clone()).unwrap().drain(std::slice::from_ref(&k)).unwrap();
    fs::write(&lock, &old_lock).unwrap();
    let bytes = fs::read(&target).unwrap();
    // a journal that recorded that commit proves the manifest stale ...
    k.append(b"fourth").unwrap();
    let e = Compactor::new(&target, opts.clone()).unwrap().drain(std::slice::from_ref(&k)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JournalForeign, "{e}");
    // ... and without one, the tail no intent covers does
    let fresh = journal(&spool.join("fresh.journal"));
    fresh.append(b"fresh").unwrap();
    let e = Compactor::new(&target, opts).unwrap().drain(std::slice::from_ref(&fresh)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnexpectedTail, "{e}");
    assert!(e.to_string().contains("older than the target"), "{e}");
    assert_eq!(fs::read(&target).unwrap(), bytes, "touched nothing");
    assert_eq!(fs::read(&lock).unwrap(), old_lock, "committed nothing");
    assert_eq!((k.backlog().unwrap().lines, fresh.backlog().unwrap().lines), (1, 1), "drained nothing");
}

/// Copy a closed journal file (SQLite folds the WAL into the file on last close).
fn copy_journal(from: &Path, to: &Path) {
    fs::copy(from, to).unwrap();
}

#[test]
fn a_cloned_journal_is_detected_and_nothing_is_skipped() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let a = spool.join("a.journal");
    let b = d.path().join("clone.journal");
    {
        let j = journal(&a);
        j.append_batch(&numbered("base", 0..3)).unwrap();
        init(&target);
        compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    }
    copy_journal(&a, &b);
    let (ja, jb) = (journal(&a), journal(&b));
    assert_eq!(ja.id(), jb.id());
    ja.append(b"from original").unwrap();
    jb.append(b"from clone").unwrap();
    // Both in one drain: refused at once.
    let e = compactor(&target).drain_paths(&[a.clone(), b.clone()]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JournalRestored, "{e}");
    // One after the other: the second is caught by the watermark's CRC.
    compactor(&target).drain(std::slice::from_ref(&ja)).unwrap();
    let e = compactor(&target).drain(std::slice::from_ref(&jb)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JournalRestored, "{e}");
    assert_eq!(jb.backlog().unwrap().lines, 1, "the clone's line was not skipped or deleted");
    let mut expected = numbered("base", 0..3);
    expected.push(b"from original".to_vec());
    assert_exactly(&target, &expected);
}

#[test]
fn a_journal_restored_from_an_older_copy_is_detected() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let a = spool.join("a.journal");
    let backup = d.path().join("backup.journal");
    {
        let j = journal(&a);
        j.append_batch(&numbered("v", 0..3)).unwrap();
    }
    copy_journal(&a, &backup);
    {
        let j = journal(&a);
        j.append_batch(&numbered("v", 3..6)).unwrap();
        init(&target);
        compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    }
    copy_journal(&backup, &a); // restore the old copy over the live journal
    let j = journal(&a);
    j.append(b"after restore").unwrap(); // gets seq 4: looks already drained
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JournalRestored, "{e}");
    drop(j);

    // Restored further back, below the watermark with no row to compare: seq ceiling.
    copy_journal(&backup, &a);
    let e = compactor(&target).drain_paths(&[a]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JournalRestored, "{e}");
    assert!(e.to_string().contains("highest seq"), "{e}");
    assert_exactly(&target, &numbered("v", 0..6));
}

#[test]
fn a_journal_drained_into_another_target_is_refused() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let other = d.path().join("shared").join("other.log");
    let j = journal(&spool.join("a.journal"));
    j.append(b"one").unwrap();
    init(&target);
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    j.append(b"two").unwrap();
    init(&other);
    let e = compactor(&other).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JournalForeign, "{e}");
    assert_eq!(j.backlog().unwrap().lines, 1);
}

#[test]
fn a_held_lock_gives_a_lock_timeout() {
    let d = tmp();
    // (a quote in the path: the advised command quotes it for the shell)
    let (spool, target) = paths(&d.path().join("it's here"));
    let j = journal(&spool.join("a.journal"));
    j.append(b"x").unwrap();
    Compactor::new(&target, CompactorOptions::default()).unwrap().init().unwrap();
    let sidecar = Sidecar::for_target(&target);
    let held = TargetLock::acquire(&sidecar.lock, Duration::from_secs(1), true).unwrap();
    let opts = CompactorOptions::default().lock_timeout(Duration::from_millis(100));
    let e = Compactor::new(&target, opts).unwrap().drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LockTimeout, "{e}");
    // The message's command names the holder (this process): `lslocks`, which it
    // advised before, shows an OFD lock without a pid (an outside tester).
    let msg = e.to_string();
    let advised = msg.split('`').find(|part| part.starts_with("grep -l")).unwrap_or_else(|| panic!("{msg}"));
    let out = std::process::Command::new("sh").arg("-c").arg(advised).output().unwrap();
    let holders = String::from_utf8_lossy(&out.stdout);
    assert!(holders.contains(&format!("/proc/{}/fdinfo/", std::process::id())), "{advised}: {holders:?}");
    drop(held);
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    assert_exactly(&target, &[b"x".to_vec()]);
}

/// A holder that lost its lock (another host committed meanwhile: the epoch moved)
/// must not commit; the next round repairs the tail it wrote.
#[test]
fn a_moved_epoch_before_commit_means_lock_lost_and_nothing_is_committed() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = spool.join("a.journal");
    {
        let j = journal(&jp);
        j.append(b"committed").unwrap();
        init_format_2(&target); // (the commit behind its back is a version-2 slot write)
        compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
        j.append(b"pending").unwrap();
    }
    // The drain holds after its fdatasync (its batch written) until we let it go: no
    // timing involved.
    let fp = d.path().join("fp");
    fs::create_dir(&fp).unwrap();
    let committed_len = manifest_of(&target).committed_len;
    let child = std::process::Command::new(bin())
        .args(["drain", "--target", &s(&target), "--journal", &s(&jp)])
        .env("TRIBUTARY_FAILPOINTS", "drain.after_fsync=hold")
        .env(tributary::testing::failpoint::DIR_VAR, &fp)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reached = fp.join("drain.after_fsync.reached");
    while !reached.exists() {
        std::thread::yield_now();
    }
    assert!(fs::metadata(&target).unwrap().len() > committed_len, "the held drain wrote nothing");
    // Commit a newer epoch behind its back, then let it go on.
    let mut m = manifest_of(&target);
    assert!(m.intent.is_some(), "the round announced its bytes before writing them");
    m.epoch += 1;
    commit_behind_the_back(&target, &m);
    fs::remove_file(&reached).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lock_lost"), "{err}");
    assert_eq!(manifest_of(&target).committed_len, committed_len, "nothing committed");
    let out = cli(&["drain", "--target", &s(&target), "--journal", &s(&jp)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("truncated an uncommitted tail"));
    assert_exactly(&target, &[b"committed".to_vec(), b"pending".to_vec()]);
}

#[test]
fn bounded_rounds_rotate_between_journals_and_release_the_lock() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let ja = journal(&spool.join("a.journal"));
    let jb = journal(&spool.join("b.journal"));
    ja.append_batch(&numbered("a", 0..200)).unwrap();
    jb.append_batch(&numbered("b", 0..200)).unwrap();
    let opts = CompactorOptions::default().max_round_bytes(500);
    init(&target);
    let r = Compactor::new(&target, opts).unwrap().drain(&[ja, jb]).unwrap();
    assert!(r.rounds >= 8, "400 lines of 9 bytes in rounds of 500 bytes: {} rounds", r.rounds);
    let mut expected = numbered("a", 0..200);
    expected.extend(numbered("b", 0..200));
    assert_exactly(&target, &expected);
    // Per-journal order is kept.
    let got = lines_of(&target);
    let a_order: Vec<_> = got.iter().filter(|l| l.starts_with(b"a-")).cloned().collect();
    assert_eq!(a_order, numbered("a", 0..200));
}

/// A compactor reuses the manifest of its last round only while both slots are as it
/// left them: one commit by anyone else (into the other slot, as every commit goes) and
/// the next round reads the slots again and builds on that epoch, instead of
/// committing from its own stale copy (which the epoch check would call `lock_lost`).
#[test]
fn a_kept_manifest_is_read_again_after_anyone_else_commits() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init_format_2(&target); // (the commits behind its back are version-2 slot writes)
    let j = journal(&spool.join("a.journal"));
    let c = compactor(&target);
    for round in 0..3 {
        j.append(format!("before-{round}").as_bytes()).unwrap();
        c.drain(std::slice::from_ref(&j)).unwrap();
    }
    // One commit behind its back: the same manifest, a newer epoch.
    let mut m = manifest_of(&target);
    m.epoch += 1;
    commit_behind_the_back(&target, &m);
    j.append(b"after-one").unwrap();
    let r = c.drain(std::slice::from_ref(&j)).unwrap();
    assert!(r.epoch > m.epoch, "round built on epoch {}, the slots held {}", r.epoch, m.epoch);
    // Two (a whole round of another compactor: its intent, then its lines).
    let other = journal(&spool.join("b.journal"));
    other.append(b"other").unwrap();
    compactor(&target).drain(std::slice::from_ref(&other)).unwrap();
    j.append(b"after-two").unwrap();
    c.drain(std::slice::from_ref(&j)).unwrap();
    let expected: Vec<Vec<u8>> = ["before-0", "before-1", "before-2", "after-one", "other", "after-two"]
        .iter()
        .map(|l| l.as_bytes().to_vec())
        .collect();
    assert_exactly(&target, &expected);
    assert_eq!(manifest_of(&target).watermarks.len(), 2);
}

/// Manifest deltas (format version 3, docs/design.md; behind a test seam until the
/// crash runs cover them): two compactors taking turns — each must see the deltas
/// the other appended to the current slot, whose header does not change — commit
/// every line once; readers and `verify` read the base with its chain; a compactor
/// without deltas carries on from it.
#[test]
fn compactors_taking_turns_with_manifest_deltas_commit_every_line_once() {
    // Policy takes a delta only where it saves blocks: a manifest of 80 watermarks
    // (two blocks) makes it do so.
    for (mode, journals) in [(ManifestDeltas::Always, 3), (ManifestDeltas::Policy, 80)] {
        let d = tmp();
        let (spool, target) = paths(d.path());
        let js: Vec<Journal> = (0..journals).map(|k| journal(&spool.join(format!("j{k}.journal")))).collect();
        init(&target);
        let mut expected = Vec::new();
        for (k, j) in js.iter().enumerate() {
            let lines = numbered(&format!("setup{k}"), 0..1);
            j.append_batch(&lines).unwrap();
            expected.extend(lines);
        }
        compactor(&target).drain(&js).unwrap();
        let a = compactor(&target).committing_manifest_deltas(mode);
        let b = compactor(&target).committing_manifest_deltas(mode);
        for round in 0..40 {
            let j = &js[round % 3];
            let lines = numbered(&format!("r{round}"), 0..2);
            j.append_batch(&lines).unwrap();
            expected.extend(lines);
            // turns of one, two and three rounds: a cached manifest is reused, or stale
            let c = if (round / 3 + round / 7) % 2 == 0 { &a } else { &b };
            let r = c.drain(std::slice::from_ref(j)).unwrap();
            assert_eq!(r.lines, 2, "{mode:?} round {round}");
        }
        let lock = fs::read(Sidecar::for_target(&target).lock).unwrap();
        let deltas = lock.windows(8).filter(|w| w == b"TRIBDLTA").count();
        // Records in the file now (a snapshot's base overwrites older ones): Always
        // chains up to 64 per slot; Policy's chain stays within its base's two blocks.
        let least = if mode == ManifestDeltas::Always { 40 } else { 2 };
        assert!(deltas >= least, "{mode:?}: {deltas} delta records in the lock file");
        assert_exactly(&target, &expected);
        assert_eq!(lines_of(&target).len(), expected.len());
        let read: Vec<Vec<u8>> = Reader::open(&target, 0).unwrap().map(|l| l.unwrap()).collect();
        assert_eq!(read.len(), expected.len(), "readers see every committed line");
        assert!(tributary::verify(&target).unwrap().is_consistent());
        let more = numbered("after", 0..2);
        js[1].append_batch(&more).unwrap();
        expected.extend(more);
        compactor(&target).drain(&js).unwrap();
        assert_exactly(&target, &expected);
        assert_eq!(lines_of(&target).len(), expected.len());
    }
}

/// A new target is format 3, or 2 when `init` is asked for 2; a target's format is
/// switched by `init` (docs/design.md "Manifest deltas, format version 3"), and every
/// compactor with no test seam follows it: deltas on a version-3 target, version-2
/// snapshots once switched back.
#[test]
fn compactors_follow_the_manifest_format_init_switches_the_target_to() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    // 80 watermarks make a two-block manifest: the policy takes deltas only then.
    let js: Vec<Journal> = (0..80).map(|k| journal(&spool.join(format!("j{k}.journal")))).collect();
    let c = || Compactor::new(&target, CompactorOptions::default()).unwrap();
    let created = c().init().unwrap();
    assert_eq!((created.manifest_format, created.switched_from), (3, None), "a new target is format 3");
    let other = d.path().join("other.log");
    let made_in_2 = Compactor::new(&other, CompactorOptions::default()).unwrap().init_in_format(Some(2)).unwrap();
    assert_eq!((made_in_2.created, made_in_2.manifest_format, made_in_2.switched_from), (true, 2, None));
    let to_2 = c().init_in_format(Some(2)).unwrap();
    assert_eq!((to_2.manifest_format, to_2.switched_from), (2, Some(3)));
    let e = c().init_in_format(Some(4)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("2 and 3"), "{e}");
    let mut expected = Vec::new();
    let rounds = |expected: &mut Vec<Vec<u8>>, tag: &str| {
        for (k, j) in js.iter().enumerate() {
            let lines = numbered(&format!("{tag}-setup{k}"), 0..1);
            j.append_batch(&lines).unwrap();
            expected.extend(lines);
        }
        c().drain(&js).unwrap();
        for round in 0..12 {
            let j = &js[round % 5];
            let lines = numbered(&format!("{tag}-r{round}"), 0..2);
            j.append_batch(&lines).unwrap();
            expected.extend(lines);
            // a new compactor each round (as separate processes are), and one kept
            assert_eq!(c().drain(std::slice::from_ref(j)).unwrap().lines, 2, "{tag} round {round}");
        }
    };
    let deltas_in_lock_file = || {
        let lock = fs::read(Sidecar::for_target(&target).lock).unwrap();
        lock.windows(8).filter(|w| w == b"TRIBDLTA").count()
    };
    rounds(&mut expected, "v2");
    assert_eq!(deltas_in_lock_file(), 0, "a format-2 target gets no deltas");
    assert_eq!(c().init().unwrap().manifest_format, 2);

    let switched = c().init_in_format(Some(3)).unwrap();
    assert_eq!((switched.manifest_format, switched.switched_from), (3, Some(2)));
    assert_eq!(c().init_in_format(Some(3)).unwrap().switched_from, None, "switched once");
    rounds(&mut expected, "v3");
    let deltas = deltas_in_lock_file();
    assert!(deltas >= 2, "compactors following a format-3 target committed {deltas} delta records");
    assert_eq!(c().init().unwrap().manifest_format, 3, "its snapshots stay format 3");
    assert_exactly(&target, &expected);
    assert!(tributary::verify(&target).unwrap().is_consistent());

    let back = c().init_in_format(Some(2)).unwrap();
    assert_eq!((back.manifest_format, back.switched_from), (2, Some(3)));
    rounds(&mut expected, "back");
    assert_eq!(c().init().unwrap().manifest_format, 2, "switched back, it stays format 2");
    assert_exactly(&target, &expected);
    assert_eq!(lines_of(&target).len(), expected.len());
    assert!(tributary::verify(&target).unwrap().is_consistent());
}

/// A writer allowed longer lines than a compactor's own `max_line_bytes`: the
/// compactor drains them all the same (docs/errors.md says to raise the limit on the
/// writers only), and a round killed after writing such a line leaves a tail its
/// widened intent covers, which the next drain cuts and writes again.
#[test]
fn a_compactor_drains_lines_longer_than_its_own_max_line_bytes() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = spool.join("a.journal");
    let j = Journal::open(&jp, tributary::JournalOptions::default().max_line_bytes(4096)).unwrap();
    init(&target);
    let long = vec![b'L'; 3000];
    j.append(&long).unwrap();
    let small = ["--max-round-bytes", "1000", "--max-line-bytes", "100"];
    crash_a_drain_after_its_write(&target, &jp, &small);
    assert!(manifest_of(&target).intent.is_some_and(|i| i.max_len >= 3001), "the intent covers the long line");
    let mut opts = CompactorOptions::default().max_round_bytes(1000);
    opts.journal.max_line_bytes = 100;
    j.append(b"after").unwrap();
    let r = Compactor::new(&target, opts).unwrap().drain(std::slice::from_ref(&j)).unwrap();
    assert_eq!(r.repaired_tail_bytes, 3001, "the killed round's line was cut");
    assert_exactly(&target, &[long, b"after".to_vec()]);
}
