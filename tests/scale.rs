//! Many journals (issue 16): a daemon pass drains only the journals that may have new
//! lines and takes no lock when none has (docs/design.md, "Which journals a daemon pass
//! drains"), and a compactor opens a bounded number of journals, whatever the spool
//! holds and under a low open-file limit.

mod common;

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use tributary::{
    Compactor, CompactorOptions, DaemonEvent, DaemonOptions, Journal, JournalOptions, JournalSources, Sidecar,
    TargetLock,
};

/// Set in the child process [`in_child_with_256_files`] starts: the spool and target.
const CHILD_VAR: &str = "TRIB_SCALE_CHILD";

/// A spool of 400 journals, one line each (opened and closed one by one).
fn spool_of_400(spool: &Path) -> Vec<Vec<u8>> {
    let mut expected = Vec::new();
    for i in 0..400 {
        let line = format!("journal-{i:03}").into_bytes();
        journal(&spool.join(format!("j{i:03}.journal"))).append(&line).unwrap();
        expected.push(line);
    }
    expected
}

/// Run this test binary's test `name` again in a child whose open-file limit is 256
/// (`ulimit -n` in a shell that then execs it), with `CHILD_VAR` set to `value`.
fn in_child_with_256_files(name: &str, value: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\"", &s(&exe), name, "--exact", "--nocapture"])
        .env(CHILD_VAR, value)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains("1 passed"), "the child failed:\n{said}");
}

/// `tributary drain --spool` of 400 journals under `ulimit -n 256` drains every one
/// (it opened 128 at once, 384 descriptors, and drained nothing: "too many open files").
#[test]
fn a_one_shot_drain_of_400_journals_fits_in_256_open_files() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let expected = spool_of_400(&spool);
    let out = Command::new("sh")
        .args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\"", bin(), "drain", "--target", &s(&target), "--spool"])
        .arg(&spool)
        .output()
        .unwrap();
    assert!(out.status.success(), "drain under ulimit -n 256: {}", String::from_utf8_lossy(&out.stderr));
    assert_exactly(&target, &expected);
}

/// The daemon over a spool of 400 journals, in a process limited to 256 open files,
/// drains every line and ends ("until empty") with nothing set aside.
#[test]
fn a_daemon_over_400_journals_fits_in_256_open_files() {
    if let Ok(dir) = std::env::var(CHILD_VAR) {
        let (spool, target) = paths(Path::new(&dir));
        let c = Compactor::new(&target, CompactorOptions::default()).unwrap();
        let opts = DaemonOptions::default().interval(Duration::from_millis(1)).until_empty(true);
        // (a bound on passes, so a daemon that never gets to "empty" fails, not hangs)
        let passes = Cell::new(0u32);
        let stop = || {
            passes.set(passes.get() + 1);
            passes.get() > 20_000
        };
        let summary = c.run_sources(&JournalSources::new().spool(&spool), &opts, &stop, &mut |_| {});
        assert!(summary.stopped_by.is_none(), "{:?}", summary.stopped_by);
        assert!(passes.get() <= 20_000, "not empty after 20,000 passes; set aside: {:?}", summary.set_aside);
        assert!(summary.set_aside.is_empty(), "set aside under the file limit: {:?}", summary.set_aside);
        return;
    }
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let expected = spool_of_400(&spool);
    in_child_with_256_files("a_daemon_over_400_journals_fits_in_256_open_files", &s(d.path()));
    assert_exactly(&target, &expected);
}

/// Steps of [`an_idle_daemon_takes_no_lock_and_drains_what_comes_after`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    FirstLine,
    LockHeld { idle: u32 },
    SecondLine,
    Done,
}

/// An idle daemon does not take the target's lock: while another holder keeps it, its
/// passes say `Idle` and never `Contended` (a pass that asked for the lock would wait
/// `lock_timeout` and say `Contended`) — and a line appended after such a pass is
/// drained by the next ones once the lock is free.
#[test]
fn an_idle_daemon_takes_no_lock_and_drains_what_comes_after() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let j = journal(&spool.join("a.journal"));
    j.append(b"first").unwrap();
    let c = Compactor::new(&target, CompactorOptions::default().lock_timeout(Duration::from_millis(50))).unwrap();
    let step = Cell::new(Step::FirstLine);
    let held: RefCell<Option<TargetLock>> = RefCell::new(None);
    let contended = Cell::new(0u32);
    let opts = DaemonOptions::default().interval(Duration::from_millis(1));
    let summary = c.run(&spool, &opts, &|| step.get() == Step::Done, &mut |e| match (e, step.get()) {
        (DaemonEvent::Committed(_), Step::FirstLine) => {
            let lock = TargetLock::acquire(&Sidecar::for_target(&target).lock, Duration::from_secs(60), false);
            *held.borrow_mut() = Some(lock.unwrap());
            step.set(Step::LockHeld { idle: 0 });
        }
        (DaemonEvent::Idle, Step::LockHeld { idle }) if idle < 20 => step.set(Step::LockHeld { idle: idle + 1 }),
        (DaemonEvent::Idle, Step::LockHeld { .. }) => {
            held.borrow_mut().take();
            j.append(b"second").unwrap();
            step.set(Step::SecondLine);
        }
        (DaemonEvent::Committed(r), Step::SecondLine) => {
            assert_eq!(r.lines, 1);
            step.set(Step::Done);
        }
        (DaemonEvent::Contended(_), Step::LockHeld { .. }) => {
            contended.set(contended.get() + 1);
            held.borrow_mut().take(); // (lets a failing run end)
            step.set(Step::Done);
        }
        (DaemonEvent::Problem { error, .. }, _) => panic!("{error}"),
        _ => {}
    });
    assert!(summary.stopped_by.is_none(), "{:?}", summary.stopped_by);
    assert_eq!(contended.get(), 0, "an idle pass asked for the lock another holder kept");
    assert_exactly(&target, &[b"first".to_vec(), b"second".to_vec()]);
}

/// What [`the_change_test_sees_every_way_a_journal_gets_lines`] does next, once the
/// daemon committed what the previous step added.
fn next_change(spool: &Path, k: usize) -> Option<Vec<u8>> {
    let line = format!("change-{k}").into_bytes();
    let a = spool.join("a.journal");
    match k {
        // a plain commit into a WAL the compactor's record just wrote to
        0 => {
            journal(&a).append(&line).unwrap();
        }
        // after a checkpoint that resets the WAL: the next commit rewrites it from the
        // start at the same size
        1 => {
            let wal = spool.join("a.journal-wal");
            let before = std::fs::metadata(&wal).unwrap().len();
            let raw = rusqlite::Connection::open(&a).unwrap();
            raw.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0)).unwrap();
            drop(raw);
            journal(&a).append(&line).unwrap();
            assert_eq!(std::fs::metadata(&wal).unwrap().len(), before, "the WAL was not rewritten in place");
        }
        // a `normal` writer (no fsync)
        2 => {
            let normal = JournalOptions::default().durability(tributary::Durability::Normal);
            Journal::open(&a, normal).unwrap().append(&line).unwrap();
        }
        // a journal retired, then a new one created under the same name
        3 => {
            Compactor::new(spool.parent().unwrap().join("shared/out.log"), CompactorOptions::default())
                .unwrap()
                .retire(std::slice::from_ref(&a))
                .unwrap();
            journal(&a).append(&line).unwrap();
        }
        // a journal made elsewhere and moved into the spool
        4 => {
            let outside = spool.parent().unwrap().join("b.journal");
            journal(&outside).append(&line).unwrap();
            std::fs::rename(&outside, spool.join("b.journal")).unwrap();
        }
        _ => return None,
    }
    Some(line)
}

/// Each way a journal can get lines marks it for the next pass: a commit, a commit
/// after a WAL reset (same size, rewritten), a `normal` writer, a journal recreated
/// under a retired one's name, one moved in. Only the change test can find them: the
/// backstop sweep comes round once in 10 minutes (this run's passes take a few ms).
#[test]
fn the_change_test_sees_every_way_a_journal_gets_lines() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    journal(&spool.join("a.journal")).append(b"start").unwrap();
    // idle journals beside it, never touched again
    for i in 0..50 {
        journal(&spool.join(format!("idle-{i:02}.journal"))).append(format!("idle-{i}").as_bytes()).unwrap();
    }
    let mut expected: Vec<Vec<u8>> = (0..50).map(|i| format!("idle-{i}").into_bytes()).collect();
    expected.push(b"start".to_vec());
    let c = compactor(&target);
    let (k, settled_passes, idle_passes, done) =
        (Cell::new(0usize), Cell::new(0u32), Cell::new(0u32), Cell::new(false));
    let added = RefCell::new(Vec::new());
    let opts = DaemonOptions::default().interval(Duration::from_millis(1));
    let summary = c.run(&spool, &opts, &|| done.get() || idle_passes.get() > 3000, &mut |e| match e {
        DaemonEvent::Committed(_) => settled_passes.set(0),
        DaemonEvent::Idle => {
            idle_passes.set(idle_passes.get() + 1);
            if lines_of(&target).len() < expected.len() + added.borrow().len() {
                return;
            }
            // The next change once everything so far is committed and two idle passes
            // followed (the journals a round drained are probed once more after it, so
            // by now their marks are cleared: only the change test can mark them again).
            settled_passes.set(settled_passes.get() + 1);
            if settled_passes.get() < 2 {
                return;
            }
            settled_passes.set(0);
            idle_passes.set(0);
            match next_change(&spool, k.get()) {
                Some(line) => {
                    added.borrow_mut().push(line);
                    k.set(k.get() + 1);
                }
                None => done.set(true),
            }
        }
        DaemonEvent::Problem { error, .. } => panic!("{error}"),
        _ => {}
    });
    assert!(summary.stopped_by.is_none(), "{:?}", summary.stopped_by);
    assert!(
        done.get(),
        "change {} ({:?}) was not drained in 3000 passes",
        k.get() - 1,
        added.borrow().last().map(|l| String::from_utf8_lossy(l).to_string())
    );
    expected.extend(added.into_inner());
    assert_exactly(&target, &expected);
}

/// A compactor's handle keeps a journal's `-wal` and `-shm` when it is the last to
/// close (the next open need not create them again: with thousands of journals that
/// was most of a pass), a writer that comes back appends and is drained exactly once,
/// and retirement still deletes every file of the journal.
#[test]
fn a_compactors_close_keeps_the_wal_and_retirement_still_removes_every_file() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let path = spool.join("a.journal");
    let wal = spool.join("a.journal-wal");
    let shm = spool.join("a.journal-shm");
    journal(&path).append(b"one").unwrap();
    assert!(!wal.exists() && !shm.exists(), "a writer, last to close, deletes them (SQLite's default)");
    compactor(&target).drain_paths(std::slice::from_ref(&path)).unwrap();
    assert!(wal.exists() && shm.exists(), "the compactor's handle, last to close, deleted the -wal or -shm");
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0, "the -wal it kept is not empty");
    journal(&path).append(b"two").unwrap();
    let c = compactor(&target);
    c.drain_paths(std::slice::from_ref(&path)).unwrap();
    assert_exactly(&target, &[b"one".to_vec(), b"two".to_vec()]);
    let report = c.retire(std::slice::from_ref(&path)).unwrap();
    assert_eq!(report.retired.len(), 1, "{report:?}");
    let left: Vec<_> = std::fs::read_dir(&spool).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "retirement left {left:?}");
    assert_exactly(&target, &[b"one".to_vec(), b"two".to_vec()]);
}

/// A journal removed with `rm` (not retired) after a compactor closed it leaves the
/// emptied `-wal` and `-shm` the compactor kept: a writer that opens the name again
/// gets a new journal (an empty log holds nothing to replay), while a `-wal` that
/// still holds frames keeps the journal refused (`journal_gone`).
#[test]
fn an_empty_kept_wal_does_not_block_a_new_journal_but_a_full_one_does() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let path = spool.join("a.journal");
    journal(&path).append(b"one").unwrap();
    compactor(&target).drain_paths(std::slice::from_ref(&path)).unwrap();
    std::fs::remove_file(&path).unwrap();
    let j = journal(&path);
    j.append(b"two").unwrap();
    drop(j);
    compactor(&target).drain_paths(std::slice::from_ref(&path)).unwrap();
    assert_exactly(&target, &[b"one".to_vec(), b"two".to_vec()]);
    // a -wal with frames in it, its journal removed: refused, nothing touched
    let held = journal(&path);
    held.append(b"three").unwrap();
    let wal = spool.join("a.journal-wal");
    let frames = std::fs::read(&wal).unwrap();
    assert!(!frames.is_empty());
    drop(held);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&wal, &frames).unwrap();
    let e = Journal::open(&path, JournalOptions::default()).unwrap_err();
    assert!(e.to_string().contains("write-ahead log"), "{e}");
    assert_eq!(std::fs::read(&wal).unwrap(), frames, "the -wal was touched");
}
