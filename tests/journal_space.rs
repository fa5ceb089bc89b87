//! Journals give drained space back (docs/design.md, "Giving space back"): after a
//! drain, a journal's files (db + -wal + -shm) hold at most 1 MiB + 2 × its undrained
//! backlog; a writer appends while space is given back and loses nothing; a drain
//! killed while giving space back leaves a journal that opens and drains exactly once;
//! a journal made with auto_vacuum=NONE is upgraded by its first rebuild.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tributary::{CompactorOptions, Journal, JournalOptions};

const MIB: u64 = 1 << 20;

/// db + -wal + -shm of a journal.
fn journal_bytes(p: &Path) -> u64 {
    ["", "-wal", "-shm"].iter().map(|s| std::fs::metadata(format!("{}{s}", p.display())).map_or(0, |m| m.len())).sum()
}

/// The bound: at rest, a journal's files hold at most 1 MiB + 2 × its undrained bytes.
fn assert_bounded(path: &Path, j: &Journal, what: &str) -> u64 {
    let backlog = j.backlog().unwrap().bytes;
    let on_disk = journal_bytes(path);
    assert!(
        on_disk <= MIB + 2 * backlog,
        "{what}: the journal's files hold {on_disk} B for a backlog of {backlog} B (bound {} B)",
        MIB + 2 * backlog
    );
    backlog
}

/// `n` lines of 100 bytes, numbered from `from`, appended in batches of 1000.
fn fill(j: &Journal, prefix: &str, from: usize, n: usize) -> Vec<Vec<u8>> {
    let lines: Vec<Vec<u8>> = (from..from + n).map(|i| format!("{prefix}-{i:0>94}").into_bytes()).collect();
    for batch in lines.chunks(1000) {
        j.append_batch(batch).unwrap();
    }
    lines
}

fn wait_for(path: &Path, child: &mut std::process::Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if path.exists() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return path.exists();
        }
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn auto_vacuum(path: &Path) -> i64 {
    rusqlite::Connection::open(path).unwrap().query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap()
}

/// 1 M lines of 100 B (~107 MB of journal), drained in rounds of 30 MB by a compactor
/// while the writer keeps its handle open: after every round the files are within the
/// bound of the backlog left, and drained empty they are back to a few pages.
#[test]
fn draining_a_million_lines_gives_the_space_back_round_by_round() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let a = spool.join("a.journal");
    let w = journal(&a);
    let lines = fill(&w, "a", 0, 1_000_000);
    let full = journal_bytes(&a);
    let c = tributary::Compactor::new(&target, CompactorOptions::default().max_round_bytes(30_000_000)).unwrap();
    let j = journal(&a);
    let mut rounds = 0;
    loop {
        let moved = c.drain_round(std::slice::from_ref(&j), 0).unwrap().lines;
        rounds += 1;
        let left = assert_bounded(&a, &j, &format!("after round {rounds}"));
        println!("round {rounds}: {} B on disk for {left} B undrained (filled: {full} B)", journal_bytes(&a));
        if moved == 0 || left == 0 {
            break;
        }
    }
    assert!(rounds >= 4, "the backlog was drained in {rounds} rounds: no partly drained state was checked");
    assert_eq!(j.backlog().unwrap().bytes, 0);
    drop(j);
    assert_bounded(&a, &w, "drained, the compactor's handle closed");
    assert_exactly(&target, &lines);
}

/// A journal that still holds lines keeps `SQLite`'s own `-wal` cycle (a 2 MiB
/// auto-checkpoint, plus the commit that crossed it): a record that leaves lines behind
/// does not cut the `-wal`. Cutting it after every record of a journal being written
/// made its writer grow the file again and again, each of its fsyncs then paying for
/// the growth (a durable 1-process logger with a 50 ms daemon: 3.1–4.3k appends/s
/// instead of 5.0–6.5k). Drained empty, the `-wal` is cut (the bound).
#[test]
fn a_journal_that_still_holds_lines_keeps_its_wal_cycle_until_drained_empty() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let a = spool.join("a.journal");
    let wal = PathBuf::from(format!("{}-wal", a.display()));
    let wal_bytes = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let w = journal(&a);
    // One line per commit while a reader holds a snapshot (as a drain's read does), so
    // the auto-checkpoint cannot restart the -wal: it grows to 3 MiB, within the 4 MiB
    // SQLite itself cuts a reset -wal back to.
    let reader = rusqlite::Connection::open(&a).unwrap();
    reader.execute_batch("BEGIN; SELECT count(*) FROM runs;").unwrap();
    let mut lines = Vec::new();
    while wal_bytes() <= 3 * MIB {
        assert!(lines.len() < 100_000, "the -wal never passed 3 MiB ({} B)", wal_bytes());
        lines.push(format!("line {:0>95}", lines.len()).into_bytes());
        w.append(lines.last().unwrap()).unwrap();
    }
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    let cycle = wal_bytes();
    // a round that takes one line: the record leaves the rest behind
    let c = tributary::Compactor::new(&target, CompactorOptions::default().max_round_bytes(100)).unwrap();
    let j = journal(&a);
    assert_eq!(c.drain_round(std::slice::from_ref(&j), 0).unwrap().lines, 1);
    assert!(j.backlog().unwrap().lines > 0);
    assert!(
        wal_bytes() >= cycle,
        "the record cut the -wal of a journal still being written: {cycle} B -> {} B",
        wal_bytes()
    );
    // drained empty: cut, within the bound
    tributary::Compactor::new(&target, CompactorOptions::default()).unwrap().drain(std::slice::from_ref(&j)).unwrap();
    assert!(wal_bytes() <= MIB / 4, "drained empty, the -wal kept {} B", wal_bytes());
    assert_bounded(&a, &j, "drained empty");
    assert_exactly(&target, &lines);
}

/// A journal drained while its writer appends: the drain is held inside a give-back
/// (failpoint `journal.give_back=hold`, after its first step) and the writer appends
/// there, with a busy timeout far below "forever" — a give-back that kept the write
/// lock would make those appends fail. Another thread appends throughout. Every
/// acknowledged line is drained exactly once.
#[test]
fn a_writer_appends_while_space_is_given_back_and_loses_nothing() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init_cli(&target);
    let a = spool.join("a.journal");
    let opts = JournalOptions::default().busy_timeout(Duration::from_secs(20));
    let w = Arc::new(Journal::open(&a, opts).unwrap());
    let acked = Arc::new(Mutex::new(fill(&w, "old", 0, 300_000)));
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (w, acked, stop) = (Arc::clone(&w), Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Vec<u8>> = (i..i + 10).map(|k| format!("bg-{k}").into_bytes()).collect();
                w.append_batch(&batch).expect("a background append failed during the drain");
                acked.lock().unwrap().extend(batch);
                i += 10;
            }
        })
    };
    let fp = d.path().join("fp");
    std::fs::create_dir(&fp).unwrap();
    let mut child = Command::new(bin())
        .args(["drain", "--target", &s(&target), "--spool", &s(&spool), "--max-round-bytes", "8000000"])
        .env("TRIBUTARY_FAILPOINTS", "journal.give_back=hold")
        .env(tributary::testing::failpoint::DIR_VAR, &fp)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reached = fp.join("journal.give_back.reached");
    let (mut held, mut during) = (0, 0);
    while wait_for(&reached, &mut child) {
        held += 1;
        // Inside the give-back: the writer's own appends go through.
        let lines: Vec<Vec<u8>> = (0..100).map(|k| format!("held-{held}-{k}").into_bytes()).collect();
        for l in &lines {
            w.append(l).expect("an append waited on a give-back");
        }
        acked.lock().unwrap().extend(lines);
        during += 100;
        std::fs::remove_file(&reached).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "drain: {}", String::from_utf8_lossy(&out.stderr));
    assert!(held >= 2, "the drain gave space back {held} times: nothing was appended inside a give-back");
    stop.store(true, Ordering::Relaxed);
    background.join().unwrap();
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
    assert!(out.status.success(), "final drain: {}", String::from_utf8_lossy(&out.stderr));
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 300_000 + during, "the background writer appended nothing");
    assert_exactly(&target, &acked);
    assert_bounded(&a, &w, "drained after the concurrent give-backs");
}

/// A drain SIGKILLed inside a give-back (after its first step): the journal opens,
/// nothing it held is lost or drained twice, and the next drain gives the rest back.
#[test]
fn a_drain_killed_while_giving_space_back_leaves_a_journal_that_drains_exactly_once() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init_cli(&target);
    let a = spool.join("a.journal");
    let lines = fill(&journal(&a), "a", 0, 200_000);
    let out = cli_env(
        &["drain", "--target", &s(&target), "--spool", &s(&spool), "--max-round-bytes", "8000000"],
        &[("TRIBUTARY_FAILPOINTS", "journal.give_back=kill")],
    );
    assert_eq!(out.status.signal(), Some(9), "the drain should have been SIGKILLed in a give-back: {out:?}");
    let j = journal(&a);
    let b = j.backlog().unwrap();
    assert!(b.drained_seq > 0 && b.lines > 0, "the kill came after the first record: {b:?}");
    let ok: String =
        rusqlite::Connection::open(&a).unwrap().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
    assert!(out.status.success(), "recovery: {}", String::from_utf8_lossy(&out.stderr));
    assert_exactly(&target, &lines);
    assert_bounded(&a, &j, "drained after the kill");
}

/// A journal made before auto_vacuum=INCREMENTAL (auto_vacuum=NONE) cannot give pages
/// back in steps; the rebuild of its first record that leaves it nearly empty upgrades
/// it, and from then on a partly drained backlog is within the bound too.
#[test]
fn a_journal_made_without_incremental_vacuum_is_upgraded_by_its_rebuild() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let a: PathBuf = spool.join("a.journal");
    let mut lines = fill(&journal(&a), "a", 0, 100_000);
    {
        let old = rusqlite::Connection::open(&a).unwrap();
        old.execute_batch("PRAGMA auto_vacuum=NONE; VACUUM").unwrap();
    }
    assert_eq!(auto_vacuum(&a), 0, "the journal was made as an old one");
    let c = compactor(&target);
    c.drain_paths(std::slice::from_ref(&a)).unwrap();
    assert_eq!(auto_vacuum(&a), 2, "drained empty, the journal was rebuilt with auto_vacuum=INCREMENTAL");
    let w = journal(&a);
    assert_bounded(&a, &w, "the upgraded journal, drained");
    lines.extend(fill(&w, "b", 0, 100_000));
    let half = tributary::Compactor::new(&target, CompactorOptions::default().max_round_bytes(5_000_000)).unwrap();
    let j = journal(&a);
    half.drain_round(std::slice::from_ref(&j), 0).unwrap();
    assert!(j.backlog().unwrap().bytes > 0);
    assert_bounded(&a, &j, "the upgraded journal, partly drained");
    c.drain(std::slice::from_ref(&j)).unwrap();
    assert_exactly(&target, &lines);
}
