//! Issue 17: the API pieces users wrote themselves, on real journals and targets.
//!
//! - a processed cursor committed in the journal with its results, in one transaction
//!   (docs/design.md, "Processed cursors in the journal"): a processor SIGKILLed before
//!   and after its commit, and at moments it does not choose, never leaves results
//!   without their cursor or a cursor without its results;
//! - keyed appends say whether they stored the line or absorbed a retry, also with two
//!   writers on one journal;
//! - a reader's lag, across rotated generations.
//!
//! The processor is this test binary re-run as a child process (as in key_clock.rs).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use tributary::{Compactor, CompactorOptions, Cursor, ErrorKind, Journal, JournalOptions, KeyedAppend, Reader};

const CHILD: &str = "TRIB_JOURNAL_CURSOR_CHILD";
const TEST: &str = "a_processor_killed_anywhere_keeps_results_and_cursor_together";
const NAME: &str = "A";
const A_LINES: usize = 300;

/// Target A (with `A_LINES` lines), the processor's journal and target B, in `dir`.
struct Pipeline {
    a: PathBuf,
    journal: PathBuf,
    b: PathBuf,
}

impl Pipeline {
    fn new(dir: &Path) -> Pipeline {
        let p = Pipeline { a: dir.join("a.log"), journal: dir.join("proc.journal"), b: dir.join("b.log") };
        init(&p.a);
        init(&p.b);
        let src = journal(&dir.join("src.journal"));
        let lines = numbered("a", 0..A_LINES);
        // small rotated generations, so that cursors cross rotations
        let rotating = Compactor::new(&p.a, CompactorOptions::default().rotate_bytes(Some(1500))).unwrap();
        for chunk in lines.chunks(40) {
            src.append_batch(chunk).unwrap();
            rotating.drain(std::slice::from_ref(&src)).unwrap();
        }
        p
    }

    /// The lines of A before `upto` (all of them when `None`... is not asked: a cursor
    /// or the start).
    fn a_before(&self, upto: Option<Cursor>) -> Vec<Vec<u8>> {
        let Some(upto) = upto else { return Vec::new() };
        let mut r = Reader::open_at(&self.a, Cursor::START).unwrap();
        let mut out = Vec::new();
        while r.cursor() != upto {
            let line = r.next_line().unwrap().unwrap_or_else(|| panic!("cursor {upto} is not a line start of A"));
            out.push(line);
        }
        out
    }

    /// Drain the processor's journal into B and check: B holds exactly the results of
    /// A's lines before the journal's cursor, each once. Returns how many.
    fn check(&self) -> usize {
        let cursor = {
            let j = journal(&self.journal);
            compactor(&self.b).drain(std::slice::from_ref(&j)).unwrap();
            j.cursor(NAME).unwrap()
        };
        let expected: Vec<Vec<u8>> = self.a_before(cursor).iter().map(|l| result_of(l)).collect();
        let got = lines_of(&self.b);
        assert_eq!(
            got.len(),
            expected.len(),
            "B has {} results but the cursor {cursor:?} covers {} lines of A: results without their cursor, or a \
             cursor without its results",
            got.len(),
            expected.len()
        );
        assert_exactly(&self.b, &expected);
        expected.len()
    }
}

fn result_of(line: &[u8]) -> Vec<u8> {
    [b"r:".as_slice(), line].concat()
}

/// The processor: resume A from the journal's cursor, and for each batch of 1–7 lines
/// append their results with the cursor after them, in one transaction. Stops after
/// `max_batches` batches (0: at A's end).
fn processor(dir: &Path, max_batches: usize) {
    let p = Pipeline { a: dir.join("a.log"), journal: dir.join("proc.journal"), b: dir.join("b.log") };
    let j = Journal::open(&p.journal, JournalOptions::default()).unwrap();
    let start = j.cursor(NAME).unwrap().unwrap_or(Cursor::START);
    let mut r = Reader::open_at(&p.a, start).unwrap();
    let mut batches = 0;
    let mut size = 1 + (start.offset as usize % 7);
    loop {
        let lines = r.next_batch(size).unwrap();
        if lines.is_empty() {
            return;
        }
        let results: Vec<Vec<u8>> = lines.iter().map(|l| result_of(l)).collect();
        j.append_batch_with_cursor(&results, NAME, r.cursor()).unwrap();
        batches += 1;
        if batches == max_batches {
            return;
        }
        size = size % 7 + 1;
    }
}

fn child(dir: &Path, max_batches: usize, failpoint: Option<&str>) -> std::process::Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, max_batches.to_string())
        .env("TRIB_JOURNAL_CURSOR_DIR", dir)
        .env_remove("TRIBUTARY_FAILPOINTS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(fp) = failpoint {
        c.env("TRIBUTARY_FAILPOINTS", format!("{fp}=kill"));
    }
    c.spawn().unwrap()
}

fn run_child(dir: &Path, max_batches: usize, failpoint: Option<&str>) -> std::process::Output {
    child(dir, max_batches, failpoint).wait_with_output().unwrap()
}

#[test]
fn a_processor_killed_anywhere_keeps_results_and_cursor_together() {
    use std::os::unix::process::ExitStatusExt;
    if let Ok(max) = std::env::var(CHILD) {
        processor(Path::new(&std::env::var("TRIB_JOURNAL_CURSOR_DIR").unwrap()), max.parse().unwrap());
        return;
    }
    let d = tmp();
    let p = Pipeline::new(d.path());
    let mut done = 0;
    // Killed at the commit, on either side of it: before (nothing of the batch), after
    // (all of it, cursor included), several times each.
    for point in ["journal.before_commit", "journal.after_commit"].iter().cycle().take(6) {
        let out = run_child(d.path(), 3, None);
        assert!(out.status.success(), "processor: {}", String::from_utf8_lossy(&out.stderr));
        let out = run_child(d.path(), 0, Some(point));
        assert_eq!(out.status.signal(), Some(9), "{point}: not killed there: {}", String::from_utf8_lossy(&out.stderr));
        let now = p.check();
        assert!(now > done, "{point}: no progress ({now} results)");
        done = now;
    }
    // SIGKILLed from outside, at whatever moment it is in once its cursor moved on.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    for round in 0..8 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let before = journal(&p.journal).cursor(NAME).unwrap();
        let mut c = child(d.path(), 0, None);
        let watcher = journal(&p.journal);
        let wait_for = 1 + seed % 3; // cursor moves to see before the kill
        let mut seen = 0;
        let mut last = before;
        while seen < wait_for {
            if c.try_wait().unwrap().is_some() {
                break; // it reached A's end first
            }
            let now = watcher.cursor(NAME).unwrap();
            if now != last {
                seen += 1;
                last = now;
            } else {
                std::thread::yield_now();
            }
        }
        drop(watcher);
        let _ = c.kill();
        let status = c.wait().unwrap();
        let now = p.check();
        assert!(now >= done, "round {round}: results went backwards ({now} < {done}), {status:?}");
        done = now;
    }
    // And a last run to the end: every line of A has its result in B, once.
    let out = run_child(d.path(), 0, None);
    assert!(out.status.success(), "processor: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(p.check(), A_LINES);
    let end = journal(&p.journal).cursor(NAME).unwrap().unwrap();
    assert_eq!(Reader::open_at(&p.a, end).unwrap().next_line().unwrap(), None, "the cursor is at A's end");
}

/// Targets A (holding lines a-000000..a-000002) and B (empty, initialised) in `dir`.
fn two_targets(dir: &Path) -> (PathBuf, PathBuf) {
    let (a, b) = (dir.join("a.log"), dir.join("b.log"));
    init(&a);
    init(&b);
    let src = journal(&dir.join("src.journal"));
    src.append_batch(&numbered("a", 0..3)).unwrap();
    compactor(&a).drain(std::slice::from_ref(&src)).unwrap();
    (a, b)
}

#[test]
fn a_cursor_commits_with_its_lines_or_not_at_all_and_survives_drains() {
    let d = tmp();
    let (a, b) = two_targets(d.path());
    // a journal that never committed a cursor (as one made before them): no table yet
    let jp = d.path().join("p.journal");
    let j = journal(&jp);
    j.append(b"before").unwrap();
    assert_eq!(j.cursor(NAME).unwrap(), None);
    let mut r = Reader::open_at(&a, Cursor::START).unwrap();
    r.next_line().unwrap().unwrap();
    let c1 = r.cursor();
    assert_eq!(j.append_batch_with_cursor(&[b"r0"], NAME, c1).unwrap(), 2);
    assert_eq!(j.cursor(NAME).unwrap(), Some(c1));
    // no result for a line (a filter): only the cursor moves
    r.next_line().unwrap().unwrap();
    let c2 = r.cursor();
    assert_eq!(j.append_batch_with_cursor::<&[u8]>(&[], NAME, c2).unwrap(), 0);
    assert_eq!(j.cursor(NAME).unwrap(), Some(c2));
    // a refused line refuses the cursor too
    let e = j.append_batch_with_cursor(&[b"ok".as_slice(), b"bad\n"], NAME, Cursor::START).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidLine, "{e}");
    assert_eq!(j.cursor(NAME).unwrap(), Some(c2), "a failed commit moved the cursor");
    // another target's cursor under the same name: refused, nothing stored
    let mut rb = Reader::open(&b, 0).unwrap();
    let _ = rb.refresh().unwrap();
    let other = rb.cursor();
    assert!(other.target_id.is_some() && other.target_id != c2.target_id);
    let lines_before = j.backlog().unwrap().last_seq;
    let e = j.append_batch_with_cursor(&[b"x"], NAME, other).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("one cursor name follows one target"), "{e}");
    assert_eq!(j.backlog().unwrap().last_seq, lines_before, "the refused commit stored lines");
    // ... and a reader of B refuses A's stored cursor
    let e = Reader::open_at(&b, j.cursor(NAME).unwrap().unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    // a reader of A resumes at it
    let mut resumed = Reader::open_at(&a, j.cursor(NAME).unwrap().unwrap()).unwrap();
    assert_eq!(resumed.next_line().unwrap().as_deref(), Some(b"a-000002".as_slice()));
    // drains (down to an empty, rebuilt journal) keep the cursor; reopening too
    compactor(&b).drain(std::slice::from_ref(&j)).unwrap();
    assert_eq!(j.backlog().unwrap().lines, 0);
    drop(j);
    let j = journal(&jp);
    assert_eq!(j.cursor(NAME).unwrap(), Some(c2));
    assert_eq!(j.cursor("other").unwrap(), None);
    assert_exactly(&b, &[b"before".to_vec(), b"r0".to_vec()]);
}

#[test]
fn keyed_appends_say_whether_they_stored_or_absorbed() {
    let d = tmp();
    let jp = d.path().join("k.journal");
    let j = journal(&jp);
    let first = j.append_keyed_outcome(b"k1", b"one").unwrap();
    assert_eq!(first, KeyedAppend { seq: 1, stored: true });
    assert_eq!(j.append_keyed_outcome(b"k1", b"one again").unwrap(), KeyedAppend { seq: 1, stored: false });
    let batch = j
        .append_batch_keyed_outcome(&[(b"k2".as_slice(), b"two".as_slice()), (b"k1", b"dup"), (b"k2", b"dup in batch")])
        .unwrap();
    assert_eq!(
        batch,
        vec![
            KeyedAppend { seq: 2, stored: true },
            KeyedAppend { seq: 1, stored: false },
            KeyedAppend { seq: 2, stored: false }
        ]
    );
    // Two handles (as two processes would) retrying the same keys at once: for each
    // key exactly one call stored it, and both got its seq.
    let other = journal(&jp);
    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("key-{i}").into_bytes()).collect();
    let run = |j: &Journal| -> Vec<KeyedAppend> {
        keys.iter().map(|k| j.append_keyed_outcome(k, b"line").unwrap()).collect()
    };
    let (x, y) = std::thread::scope(|s| {
        let t = s.spawn(|| run(&other));
        (run(&j), t.join().unwrap())
    });
    for (i, (a, b)) in x.iter().zip(&y).enumerate() {
        assert_eq!(a.seq, b.seq, "key {i}: two seqs");
        assert!(a.stored != b.stored, "key {i}: stored by {} calls", u8::from(a.stored) + u8::from(b.stored));
    }
    assert_eq!(j.backlog().unwrap().lines, 2 + 200);
}

#[test]
fn a_readers_lag_counts_what_is_committed_after_it_across_generations() {
    let d = tmp();
    let target = d.path().join("t.log");
    init(&target);
    let mut r = Reader::open_at(&target, Cursor::START).unwrap();
    assert_eq!(r.lag().unwrap(), tributary::Lag::default(), "nothing committed yet");
    let j = journal(&d.path().join("w.journal"));
    let rotating = Compactor::new(&target, CompactorOptions::default().rotate_bytes(Some(100))).unwrap();
    let lines = numbered("l", 0..30); // 9 bytes per line with its \n
    let mut total = 0u64;
    for chunk in lines.chunks(15) {
        j.append_batch(chunk).unwrap();
        rotating.drain(std::slice::from_ref(&j)).unwrap();
        total += chunk.iter().map(|l| l.len() as u64 + 1).sum::<u64>();
    }
    let lag = r.lag().unwrap();
    assert_eq!(lag.bytes, total);
    assert!(lag.later_generations >= 1, "{lag:?}");
    assert_eq!(r.cursor().offset, 0, "lag moved the reader");
    let mut left = total;
    while let Some(l) = r.next_line().unwrap() {
        left -= l.len() as u64 + 1;
        assert_eq!(r.lag().unwrap().bytes, left);
    }
    assert_eq!(r.lag().unwrap(), tributary::Lag { bytes: 0, later_generations: 0 });
    j.append(b"one more").unwrap();
    rotating.drain(std::slice::from_ref(&j)).unwrap();
    let lag = r.lag().unwrap();
    assert_eq!(lag.bytes, 9);
    assert_eq!(r.next_line().unwrap().as_deref(), Some(b"one more".as_slice()));
    assert_eq!(r.lag().unwrap().bytes, 0);
}

/// Cursors no reader can resume from, or that would lift the one-target check, are
/// refused at commit (outside tester): `0:5` was committed, then refused at every
/// resume; a cursor without a target id (a legacy `(generation, offset)`) erased the
/// name's target, and any target's cursor was accepted after it. The start cursor
/// still resets a name.
#[test]
fn cursors_no_reader_resumes_from_or_that_drop_the_target_are_refused_at_commit() {
    let d = tmp();
    let (a, b) = two_targets(d.path());
    let j = journal(&d.path().join("p.journal"));
    let mut r = Reader::open_at(&a, Cursor::START).unwrap();
    r.next_line().unwrap().unwrap();
    let at_a = r.cursor();
    j.append_batch_with_cursor(&[b"r0"], NAME, at_a).unwrap();
    let last_seq = j.backlog().unwrap().last_seq;
    for (bad, why) in [(Cursor::at(0, 5), "needs offset 0"), (Cursor::at(1, 9), "carries no target id")] {
        let e = j.append_batch_with_cursor(&[b"x"], NAME, bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}: {e}");
        assert!(e.to_string().contains(why), "{bad}: {e}");
    }
    assert_eq!(j.backlog().unwrap().last_seq, last_seq, "a refused commit stored lines");
    assert_eq!(j.cursor(NAME).unwrap(), Some(at_a));
    let mut rb = Reader::open(&b, 0).unwrap();
    let _ = rb.refresh().unwrap();
    let e = j.append_batch_with_cursor::<&[u8]>(&[], NAME, rb.cursor()).unwrap_err();
    assert!(e.to_string().contains("one cursor name follows one target"), "{e}");
    // the start cursor resets the name (and another target may follow it then)
    j.append_batch_with_cursor::<&[u8]>(&[], NAME, Cursor::START).unwrap();
    assert_eq!(j.cursor(NAME).unwrap(), Some(Cursor::START));
    j.append_batch_with_cursor::<&[u8]>(&[], NAME, rb.cursor()).unwrap();
    // a cursor store refuses 0:5 too
    let store = tributary::CursorStore::open(d.path().join("cursors.db")).unwrap();
    let e = store.commit("x", Cursor::at(0, 5)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(store.get("x").unwrap(), None);
}

/// A cursor store opened on a journal got a `cursors` table of the store's shape in
/// the journal's schema; a text file or a damaged store said `sqlite` (a kind daemons
/// retry): all are `not_a_journal`, and the journal is left as it was (outside tester).
#[test]
fn a_cursor_store_opened_on_a_journal_or_junk_is_refused_and_changes_nothing() {
    let d = tmp();
    let jp = d.path().join("p.journal");
    journal(&jp).append(b"a line").unwrap();
    let e = tributary::CursorStore::open(&jp).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotAJournal, "{e}");
    assert!(e.to_string().contains("journal, not a cursor store"), "{e}");
    let tables: Vec<String> = rusqlite::Connection::open(&jp)
        .unwrap()
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'cursors'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(tables.is_empty(), "the journal got a cursors table");
    let text = d.path().join("t.log");
    std::fs::write(&text, "a target's line\n".repeat(300)).unwrap();
    let e = tributary::CursorStore::open(&text).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotAJournal, "{e}");
    let store = d.path().join("cursors.db");
    tributary::CursorStore::open(&store).unwrap().commit("x", Cursor::at(1, 0)).unwrap();
    let mut bytes = std::fs::read(&store).unwrap();
    bytes[..16].copy_from_slice(b"not SQLite here!");
    std::fs::write(&store, &bytes).unwrap();
    let e = tributary::CursorStore::open(&store).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotAJournal, "{e}");
}
