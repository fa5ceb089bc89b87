//! An `Appender` whose commit fails: the error reaches the caller's `flush`, the records
//! stay queued, the committer retries, and every record is stored once, in push order.
//! (Its own test binary: it arms the process-wide fault seam; its tests take turns.)

mod common;

use std::time::Duration;

use common::*;
use tributary::{Appender, AppenderOptions, ErrorKind};

/// The fault seam is process-wide: one test at a time arms it.
static SEAM: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn seam() -> std::sync::MutexGuard<'static, ()> {
    SEAM.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn a_failed_commit_is_reported_to_flush_retried_and_stores_every_record_once_in_order() {
    let _seam = seam();
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let path = spool.join("a.journal");
    // Never lingering out: only flushes make the committer commit.
    let a = Appender::open(&path, AppenderOptions::default().window(Duration::from_secs(7200))).unwrap();
    a.push(b"one").unwrap();
    a.push(b"two").unwrap();
    tributary::testing::fault::fail_nth(1); // the next commit of this process fails
    let e = a.flush().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.to_string().contains("injected fault"), "{e}");
    assert_eq!(a.pending(), 2, "the failed batch stays queued");
    a.push(b"three").unwrap(); // behind the failed batch
    a.flush().unwrap(); // the committer retried (the seam fails once)
    tributary::testing::fault::disarm();
    a.close().unwrap();
    compactor(&target).drain_paths(&[path]).unwrap();
    assert_eq!(lines_of(&target), [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
}

/// A queue bigger than the journal takes at once (its backlog limit; a nearly full
/// disk) was retried whole for ever: every flush failed "journal full" while the
/// journal was empty, and close discarded every record (an outside tester: 0 of 2,048
/// stored). The committer now halves the batch after a failure (and grows it back
/// after a success), so what fits is stored and a compactor makes room for the rest.
#[test]
fn a_queue_bigger_than_the_journal_takes_is_committed_in_parts_that_fit() {
    let _seam = seam();
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let path = spool.join("a.journal");
    let mut opts = AppenderOptions::default().window(Duration::from_secs(7200));
    opts.journal.max_backlog_bytes = Some(64 << 10);
    let a = Appender::open(&path, opts).unwrap();
    let lines: Vec<Vec<u8>> = (0..256).map(|i| format!("{i:04} {}", "x".repeat(1000)).into_bytes()).collect();
    for l in &lines {
        a.push(l).unwrap();
    }
    // 256 KiB queued, 64 KiB allowed: each flush stores what fits, each drain makes room.
    let mut attempts = 0;
    while let Err(e) = a.flush() {
        assert_eq!(e.kind(), ErrorKind::JournalFull, "{e}");
        attempts += 1;
        assert!(attempts < 200, "flush still failing after {attempts} drains: {e}; {:?}", a.stats());
        compactor(&target).drain_paths(std::slice::from_ref(&path)).unwrap();
    }
    a.close().unwrap();
    compactor(&target).drain_paths(&[path]).unwrap();
    assert_eq!(lines_of(&target), lines, "every record once, in push order");
}

/// A call bigger than the journal's backlog limit can never fit, however long it waits:
/// with `full_wait` set it waited all of it (an hour here; "forever" in Go, where an
/// Appender's committer then never returned), now it is refused at once. A call that
/// fits the limit still waits for a drain to make room.
#[test]
fn a_batch_bigger_than_the_backlog_limit_is_refused_at_once_even_with_full_wait() {
    let _seam = seam(); // (another test's armed fault would hit this one's commits)
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let mut opts = tributary::JournalOptions::default();
    opts.max_backlog_bytes = Some(64 << 10);
    opts.full_wait = Some(Duration::from_secs(3600));
    let j = tributary::Journal::open(spool.join("a.journal"), opts).unwrap();
    let big: Vec<Vec<u8>> = (0..100).map(|_| vec![b'x'; 1000]).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(j.append_batch(&big).map(|_| ()));
    });
    // a hang guard, not a timing assertion: the call returns at once or after an hour
    let refused = rx.recv_timeout(Duration::from_secs(300)).expect("the oversized batch waited out full_wait");
    let e = refused.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JournalFull, "{e}");
}

/// A push waiting for room that a failing committer cannot make (a full spool disk)
/// waited for ever, without a word: no error reached a logging handler's
/// `handleError`, the application just hung (an outside tester). It now returns the
/// failure it met while waiting, the record not queued; the queue is kept and retried.
#[test]
fn a_push_waiting_for_room_returns_the_commit_failure_it_met() {
    let _seam = seam();
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let path = spool.join("a.journal");
    let opts = AppenderOptions::default().window(Duration::from_secs(7200)).max_queue_bytes(15);
    let a = Appender::open(&path, opts).unwrap();
    a.push(b"0123456789").unwrap();
    tributary::testing::fault::fail_nth(1); // the next commit of this process fails
    let e = a.push(b"abcdefghij").unwrap_err(); // no room: waits, the commit fails
    tributary::testing::fault::disarm();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.to_string().contains("injected fault"), "{e}");
    assert_eq!(a.stats().pushed, 1, "the refused record was not queued");
    a.push(b"after").unwrap(); // the committer retried: room again
    a.close().unwrap();
    compactor(&target).drain_paths(&[path]).unwrap();
    assert_eq!(lines_of(&target), [b"0123456789".to_vec(), b"after".to_vec()]);
}

/// In a process forked from the one that opened it, an appender's counters are
/// behind locks the parent's committer may hold at the fork: `stats`, `pending` and
/// `durable_wait` read as empty there instead of waiting on them (reviewer's finding;
/// the Python binding refuses any use in a child by itself). Forks this test process:
/// the child only reads the counters and exits.
#[test]
fn an_inherited_appender_reads_as_empty_in_a_forked_child() {
    let _seam = seam();
    let d = tmp();
    let (spool, _target) = paths(d.path());
    let a = Appender::open(spool.join("a.journal"), AppenderOptions::default()).unwrap();
    a.push(b"from the parent").unwrap();
    a.flush().unwrap();
    assert_eq!(a.stats().committed, 1);
    // SAFETY: the child calls only the three readers below (no lock, no allocation
    // they need) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let empty =
            a.stats() == tributary::AppenderStats::default() && a.pending() == 0 && a.durable_wait(1.0).is_none();
        // SAFETY: _exit ends the child without running the parent's destructors.
        unsafe { libc::_exit(if empty { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    assert_eq!(unsafe { libc::waitpid(pid, &raw mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child read the parent's counters");
    assert_eq!(a.stats().committed, 1, "the parent's are untouched");
    a.close().unwrap();
}

/// A flush on a journal at its backlog limit with `full_wait` set: each halved retry of
/// the refused batch waited the whole `full_wait` again, so a flush of 100 records
/// took log2(100) + 1 times it (20 s for 2 s, an outside tester). The halved retries
/// now share one wait: the flush reports `journal_full` after about one `full_wait`
/// (bounded here by two: the old sequence took six, and restarting the wait after each
/// part that fitted took three or four).
#[test]
fn a_flush_on_a_full_journal_waits_one_full_wait_not_one_per_halving() {
    let _seam = seam(); // (another test's armed fault would hit this one's commits)
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let wait = Duration::from_secs(2);
    let mut journal = tributary::JournalOptions::default();
    journal.max_backlog_bytes = Some(4096);
    journal.full_wait = Some(wait);
    let mut opts = AppenderOptions::default().window(Duration::from_secs(7200));
    opts.journal = journal;
    let a = tributary::Appender::open(spool.join("a.journal"), opts).unwrap();
    // 200 records of 100 bytes: parts fit and are stored between refusals
    let record = |i: usize| format!("{i:0100}").into_bytes();
    for i in 0..200 {
        a.push(&record(i)).unwrap();
    }
    let started = std::time::Instant::now();
    let e = a.flush().unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.kind(), ErrorKind::JournalFull, "{e}");
    assert!(took < wait * 2, "the flush took {took:?} for a full_wait of {wait:?}");
    // nothing lost: what fits is stored, the rest stays queued for after a drain
    compactor(&target).drain_paths(&[spool.join("a.journal")]).unwrap();
    while let Err(e) = a.flush() {
        assert_eq!(e.kind(), ErrorKind::JournalFull, "{e}");
        compactor(&target).drain_paths(&[spool.join("a.journal")]).unwrap();
    }
    a.close().unwrap();
    compactor(&target).drain_paths(&[spool.join("a.journal")]).unwrap();
    let want: Vec<Vec<u8>> = (0..200).map(record).collect();
    assert_eq!(lines_of(&target), want, "every record once, in push order");
}
