//! The write path (DESIGN "Write path" 1–6) against real SQLite journal files.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tributary::{Error, ErrorKind, Journal, JournalOptions, LineProblem};

#[test]
fn seq_continues_after_everything_was_drained() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let jp = spool.join("a.journal");
    let j = journal(&jp);
    assert_eq!(j.append_batch(&numbered("x", 0..5)).unwrap(), 1);
    let r = compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    assert_eq!(r.lines, 5);
    assert_eq!(j.backlog().unwrap().lines, 0, "drained rows are deleted");
    drop(j);
    // Reopen (a new process would): the seq must continue, not restart at 1.
    let j = journal(&jp);
    assert_eq!(j.append(b"after").unwrap(), 6);
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    let mut expected = numbered("x", 0..5);
    expected.push(b"after".to_vec());
    assert_exactly(&target, &expected);
}

#[test]
fn invalid_lines_are_refused_and_nothing_of_the_call_is_stored() {
    let d = tmp();
    let j = Journal::open(d.path().join("j.journal"), JournalOptions::default().max_line_bytes(10)).unwrap();
    let e = j.append(b"a\nb").unwrap_err();
    assert!(matches!(e, Error::InvalidLine { index: 0, problem: LineProblem::ContainsNewline { at: 1 } }), "{e}");
    let e = j.append(&[b'x'; 11]).unwrap_err();
    assert!(matches!(e, Error::InvalidLine { problem: LineProblem::TooLong { len: 11, max: 10 }, .. }), "{e}");
    let batch: Vec<&[u8]> = vec![b"ok1", b"ok2", b"bad\n", b"ok3"];
    let e = j.append_batch(&batch).unwrap_err();
    assert!(matches!(e, Error::InvalidLine { index: 2, .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::InvalidLine);
    assert_eq!(j.backlog().unwrap().lines, 0, "a refused batch stores nothing");
    // Empty lines and arbitrary bytes (invalid UTF-8, \r, NUL) are lines.
    assert_eq!(j.append(b"").unwrap(), 1);
    assert_eq!(j.append(&[0xff, 0x00, b'\r']).unwrap(), 2);
    assert_eq!(j.append(&[b'y'; 10]).unwrap(), 3);
}

/// A journal or cursor store whose full path is longer than `SQLite` opens (512 bytes
/// with `-journal`) is refused saying so: it was "unable to open database file" and
/// nothing more (an outside tester: 505 bytes, far below `PATH_MAX`).
#[test]
fn a_path_too_long_for_sqlite_says_so() {
    let d = tmp();
    let mut folder = d.path().to_path_buf();
    while folder.as_os_str().len() < 520 {
        folder.push("a-folder-name-of-forty-bytes-or-so-xxxxx");
    }
    std::fs::create_dir_all(&folder).unwrap();
    let e = Journal::open(folder.join("j.journal"), JournalOptions::default()).map(drop).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("at most 504 bytes"), "{e}");
    let left: Vec<_> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "the refused open left {left:?}");
    let e = tributary::CursorStore::open(folder.join("c.store")).map(drop).unwrap_err();
    assert!(e.to_string().contains("at most 504 bytes"), "{e}");
    assert!(std::fs::read_dir(&folder).unwrap().next().is_none(), "the refused cursor store left a file");
    // as written and resolved, as SQLite measures: a short path through a symlinked
    // folder is too long, and so is a long one with `..` (SQLite refuses it too)
    let short = d.path().join("short");
    std::os::unix::fs::symlink(&folder, &short).unwrap();
    let e = Journal::open(short.join("j.journal"), JournalOptions::default()).map(drop).unwrap_err();
    assert!(e.to_string().contains("at most 504 bytes"), "{e}");
    let mut back = folder.clone();
    for _ in 0..folder.strip_prefix(d.path()).unwrap().components().count() {
        back.push("..");
    }
    let e = Journal::open(back.join("j.journal"), JournalOptions::default()).map(drop).unwrap_err();
    assert!(e.to_string().contains("at most 504 bytes"), "{e}");
    // a path that fits opens
    let j = Journal::open(d.path().join("j.journal"), JournalOptions::default()).unwrap();
    assert_eq!(j.append(b"x").unwrap(), 1);
}

/// The line limit goes up to what `SQLite` can store in a row: a journal opened with a
/// limit above it (up to `u32::MAX` was accepted) took a line of 10^9 bytes as valid
/// and then failed it as an `sqlite` "string or blob too big" (an outside tester).
#[test]
fn a_line_limit_sqlite_cannot_store_is_refused_at_open() {
    let d = tmp();
    let path = d.path().join("j.journal");
    for limit in [tributary::MAX_LINE_BYTES_LIMIT + 1, 1_000_000_000, u32::MAX as usize] {
        let e = Journal::open(&path, JournalOptions::default().max_line_bytes(limit)).expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("999999000"), "the message names the highest limit: {e}");
    }
    let j = Journal::open(&path, JournalOptions::default().max_line_bytes(tributary::MAX_LINE_BYTES_LIMIT)).unwrap();
    assert_eq!(j.append(b"fits").unwrap(), 1);
    // a compactor's setting only sizes its rounds: one set above the limit still opens
    // existing journals and drains them (the first version of this refused every
    // journal for such a daemon: an outside reviewer)
    let target = d.path().join("t.log");
    init(&target);
    let mut opts = tributary::CompactorOptions::default();
    opts.journal.max_line_bytes = 1 << 30;
    let c = tributary::Compactor::new(&target, opts).unwrap();
    let existing = Journal::open_existing(&path, JournalOptions::default().max_line_bytes(1 << 30)).unwrap();
    c.drain(std::slice::from_ref(&existing)).unwrap();
    assert_exactly(&target, &[b"fits".to_vec()]);
}

/// An empty batch has no first seq: an error in every API (it was `Ok(0)` in Rust
/// only, and 0 is not a seq), storing nothing.
#[test]
fn an_empty_batch_is_refused_as_in_every_binding() {
    let d = tmp();
    let j = Journal::open(d.path().join("e.journal"), JournalOptions::default()).unwrap();
    let e = j.append_batch::<&[u8]>(&[]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("empty batch"), "{e}");
    assert_eq!(
        j.append_batch_keyed::<&[u8], &[u8]>(&[]).unwrap(),
        Vec::<u64>::new(),
        "a keyed batch returns a seq per line"
    );
    assert_eq!(j.backlog().unwrap().last_seq, 0);
}

#[test]
fn keyed_append_stores_once_per_key() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let j = journal(&spool.join("k.journal"));
    let s1 = j.append_keyed(b"order-1", b"first").unwrap();
    let s2 = j.append_keyed(b"order-1", b"retry with other bytes").unwrap();
    assert_eq!(s1, s2, "a retry returns the first seq");
    let seqs = j.append_batch_keyed(&[("order-2", "two"), ("order-1", "again"), ("order-2", "dup in batch")]).unwrap();
    assert_eq!(seqs, vec![s1 + 1, s1, s1 + 1]);
    assert!(matches!(j.append_keyed(b"", b"x"), Err(Error::InvalidArgument(_))));
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    // Still idempotent after the line was drained and its row deleted.
    assert_eq!(j.append_keyed(b"order-1", b"late retry").unwrap(), s1);
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    assert_exactly(&target, &[b"first".to_vec(), b"two".to_vec()]);
}

#[test]
fn backlog_limit_refuses_then_accepts_after_a_drain_and_can_wait() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let jp = spool.join("f.journal");
    let opts = JournalOptions::default().max_backlog_bytes(Some(100));
    let j = Journal::open(&jp, opts.clone()).unwrap();
    j.append(&[b'a'; 60]).unwrap();
    let e = j.append(&[b'b'; 60]).unwrap_err();
    assert!(matches!(e, Error::JournalFull { backlog_bytes: 60, max_backlog_bytes: 100, needed_bytes: 60 }), "{e}");
    assert_eq!(j.backlog().unwrap().lines, 1, "the refused line was not stored");
    compactor(&target).drain_paths(std::slice::from_ref(&jp)).unwrap();
    j.append(&[b'b'; 60]).unwrap();

    // With full_wait, an append waits for a concurrent drain to make room.
    let waiting = Journal::open(&jp, opts.full_wait(Some(Duration::from_secs(20)))).unwrap();
    let target2 = target.clone();
    let jp2 = jp.clone();
    let drainer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        compactor(&target2).drain_paths(&[jp2]).unwrap()
    });
    waiting.append(&[b'c'; 60]).unwrap();
    // The room came from the drain (no timed assertion: the drain deleted the rows
    // before the append could store its line).
    assert!(waiting.backlog().unwrap().drained_seq >= 2, "the append was stored without room being made");
    drainer.join().unwrap();
    compactor(&target).drain_paths(&[jp]).unwrap();
    assert_exactly(&target, &[vec![b'a'; 60], vec![b'b'; 60], vec![b'c'; 60]]);
}

#[test]
fn threads_sharing_one_handle_get_distinct_consecutive_seqs() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let j = Arc::new(journal(&spool.join("t.journal")));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let j = Arc::clone(&j);
            std::thread::spawn(move || {
                (0..300)
                    .map(|i| {
                        let line = format!("t{t}-{i}");
                        (j.append(line.as_bytes()).unwrap(), line)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<(u64, String)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort();
    let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=2400).collect::<Vec<u64>>(), "every caller got its own seq, none reused or skipped");
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    let expected: Vec<Vec<u8>> = all.iter().map(|(_, l)| l.clone().into_bytes()).collect();
    assert_exactly(&target, &expected);
    // The target's order is seq order: per-thread order is kept.
    let got = lines_of(&target);
    assert_eq!(got, expected);
}

#[test]
fn several_processes_share_one_journal() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let jp = spool.join("shared.journal");
    let children: Vec<_> = (0..3)
        .map(|p| {
            let mut c = std::process::Command::new(bin())
                .args(["append", "--journal", &s(&jp)])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = c.stdin.take().unwrap();
            let h = std::thread::spawn(move || {
                use std::io::Write;
                for i in 0..2000 {
                    writeln!(stdin, "p{p}-{i}").unwrap();
                }
            });
            (c, h)
        })
        .collect();
    for (mut c, h) in children {
        h.join().unwrap();
        assert!(c.wait().unwrap().success());
    }
    compactor(&target).drain_paths(&[jp]).unwrap();
    let expected: Vec<Vec<u8>> =
        (0..3).flat_map(|p| (0..2000).map(move |i| format!("p{p}-{i}").into_bytes())).collect();
    assert_exactly(&target, &expected);
}

#[test]
fn a_file_that_is_not_a_journal_is_refused() {
    let d = tmp();
    let junk = d.path().join("junk.journal");
    std::fs::write(&junk, b"this is not sqlite at all, just text that happens to be long enough").unwrap();
    let e = Journal::open(&junk, JournalOptions::default()).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::NotAJournal | ErrorKind::Sqlite), "{e}");
    let other = d.path().join("other.db");
    rusqlite_free_db(&other);
    let e = Journal::open(&other, JournalOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotAJournal, "{e}");
    // ... and it was not changed: still in its own journal mode, its rows intact.
    let conn = rusqlite::Connection::open(&other).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "delete", "refusing must not switch someone else's database to WAL");
    let n: i64 = conn.query_row("SELECT count(*) FROM customers", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1);
}

#[test]
fn a_compactor_never_creates_a_journal_at_a_mistyped_path() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let missing = spool.join("typo.journal");
    let e = compactor(&target).drain_paths(std::slice::from_ref(&missing)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotAJournal, "{e}");
    assert!(e.to_string().contains("no such file"), "{e}");
    assert!(!missing.exists(), "the drain created a journal file");
}

#[test]
fn each_journal_keeps_its_own_busy_timeout() {
    let d = tmp();
    // A patient journal opened first in this process must not lend its 30 s timeout.
    let _patient = journal(&d.path().join("patient.journal"));
    let jp = d.path().join("impatient.journal");
    let j = Journal::open(&jp, JournalOptions::default().busy_timeout(Duration::from_millis(50))).unwrap();
    let blocker = rusqlite::Connection::open(&jp).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let t = Instant::now();
    let e = j.append(b"x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Sqlite, "{e}");
    // Liveness, not speed: with the bug this waited the other journal's 30 s.
    assert!(t.elapsed() < Duration::from_secs(10), "waited {:?}", t.elapsed());
    blocker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(j.append(b"x").unwrap(), 1);
}

#[test]
fn an_existing_journal_opens_while_another_process_holds_its_write_lock() {
    let d = tmp();
    let jp = d.path().join("busy.journal");
    journal(&jp).append(b"before").unwrap();
    let blocker = rusqlite::Connection::open(&jp).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // Opening must not need the write lock (only appending does).
    let j = Journal::open(&jp, JournalOptions::default().busy_timeout(Duration::from_millis(50)))
        .expect("opening an existing journal took the write lock");
    assert_eq!(j.append(b"while locked").unwrap_err().kind(), ErrorKind::Sqlite);
    blocker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(j.append(b"after").unwrap(), 2);
}

#[test]
fn huge_durations_do_not_panic() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let j = Journal::open(
        spool.join("h.journal"),
        JournalOptions::default().key_retention(Duration::MAX).full_wait(Some(Duration::MAX)),
    )
    .unwrap();
    j.append_keyed(b"k", b"line").unwrap();
    let opts = tributary::CompactorOptions::default().max_round_time(Duration::MAX).lock_timeout(Duration::MAX);
    let r = tributary::Compactor::new(&target, opts).unwrap().drain(std::slice::from_ref(&j)).unwrap();
    assert_eq!(r.lines, 1);
    let mut reader = tributary::Reader::open(&target, 0).unwrap();
    assert_eq!(reader.next_line_wait(Duration::from_millis(1), Duration::MAX).unwrap().unwrap(), b"line");
}

/// An SQLite database that has someone else's tables and not tributary's.
fn rusqlite_free_db(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE customers(id INTEGER); INSERT INTO customers VALUES (1);").unwrap();
}

/// Regression: the seq counters are derived from two tables; read outside one snapshot,
/// a drain deleting runs in between made the highest seq look lower than before (and a
/// compactor call the journal "restored"). Hammer that window from another handle.
#[test]
fn the_seq_ceiling_never_goes_backwards_while_drains_delete_runs() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let jp = spool.join("race.journal");
    let writer = journal(&jp);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let observer = {
        let (jp, stop) = (jp.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let j = journal(&jp);
            let (mut last, mut reads) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let b = j.backlog().unwrap();
                assert!(b.last_seq >= last, "highest seq went back from {last} to {}", b.last_seq);
                assert!(b.last_seq >= b.drained_seq, "{b:?}");
                last = b.last_seq;
                reads += 1;
            }
            reads
        })
    };
    let c = compactor(&target);
    for i in 0..300 {
        writer.append_batch(&numbered(&format!("r{i}"), 0..3)).unwrap();
        c.drain(std::slice::from_ref(&writer)).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(observer.join().unwrap() > 100, "the observer barely ran");
}

/// Group commit under churn: 16 threads mixing single, batch and keyed appends, with
/// random pauses so groups form, complete, time out, are taken over by the caller that
/// completes them and are handed on. Every caller must get the seqs of its own lines,
/// no seq twice or skipped, and a keyed retry its first seq.
#[test]
fn mixed_concurrent_appends_each_get_their_own_seqs() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let j = Arc::new(journal(&spool.join("mix.journal")));
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let j = Arc::clone(&j);
            std::thread::spawn(move || {
                let mut rng = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut next = || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut mine: Vec<(u64, Vec<u8>)> = Vec::new();
                for i in 0..120 {
                    match next() % 4 {
                        0 => {
                            let lines: Vec<Vec<u8>> =
                                (0..1 + next() % 5).map(|k| format!("t{t}-{i}-b{k}").into_bytes()).collect();
                            let first = j.append_batch(&lines).unwrap();
                            mine.extend(lines.into_iter().enumerate().map(|(k, l)| (first + k as u64, l)));
                        }
                        1 => {
                            let (key, line) = (format!("k{t}-{i}"), format!("t{t}-{i}-k").into_bytes());
                            let seq = j.append_keyed(key.as_bytes(), &line).unwrap();
                            assert_eq!(j.append_keyed(key.as_bytes(), b"retry").unwrap(), seq, "a retry got a new seq");
                            mine.push((seq, line));
                        }
                        _ => {
                            let line = format!("t{t}-{i}").into_bytes();
                            mine.push((j.append(&line).unwrap(), line));
                        }
                    }
                    match next() % 8 {
                        0 => std::thread::sleep(Duration::from_micros(next() % 300)),
                        1 => std::thread::yield_now(),
                        _ => {}
                    }
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<(u64, Vec<u8>)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort();
    let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<u64>>(), "a seq was reused or skipped");
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    // The target holds the lines in seq order: line k is the line whose caller got seq k.
    assert_eq!(lines_of(&target), all.into_iter().map(|(_, l)| l).collect::<Vec<_>>());
}

/// A journal cut short (`truncate`, a bad restore) said `sqlite` — "database disk
/// image is malformed", a kind whose advice is to retry — to its writer and drains
/// (an outside tester). SQLite finding the file damaged is `corrupt_journal_row` now,
/// saying retrying will not help.
#[test]
fn a_journal_cut_short_is_a_damaged_journal_not_a_retryable_sqlite_error() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let p = spool.join("cut.journal");
    {
        let j = journal(&p);
        for i in 0..200 {
            j.append(format!("line {i} {}", "x".repeat(200)).as_bytes()).unwrap();
        }
    }
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    assert!(f.metadata().unwrap().len() > 8192);
    f.set_len(8192).unwrap();
    drop(f);
    let writer = Journal::open(&p, JournalOptions::default()).and_then(|j| j.append(b"after the cut"));
    let drain = compactor(&target).drain_paths(std::slice::from_ref(&p));
    for (who, e) in [("writer", writer.unwrap_err()), ("drain", drain.unwrap_err())] {
        assert_eq!(e.kind(), ErrorKind::CorruptJournalRow, "{who}: {e}");
        assert!(e.to_string().contains("retrying will not help"), "{who}: {e}");
    }
}
