//! The `compact` daemon keeps running (issue 13 item 1): a spool folder not there yet,
//! a target not created yet (a share mounted late), a junk `*.journal`, a journal its
//! writer is creating, a journal restored from an old copy — each is reported once, the
//! healthy journals keep draining, and the daemon exits 0 on SIGTERM. An error that
//! needs a human (bytes in the target that tributary did not write) stops it with exit
//! code 3, so a supervisor does not restart it in a loop.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// A running `tributary compact` whose stderr lines arrive on a channel.
struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    fn start(target: &Path, spool: &Path) -> Daemon {
        let mut child = Command::new(bin())
            .args(["compact", "--target", &s(target), "--spool", &s(spool), "--interval", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Daemon { child, lines, seen: Vec::new() }
    }

    /// Wait for a stderr line containing `text` (a condition; the deadline only turns
    /// a hang into a failure).
    fn wait_for_line(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(300);
        if self.seen.iter().any(|l| l.contains(text)) {
            return;
        }
        while Instant::now() < deadline {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_secs(1)) {
                let hit = l.contains(text);
                self.seen.push(l);
                if hit {
                    return;
                }
            }
            assert!(self.child.try_wait().unwrap().is_none(), "the daemon exited: {:#?}", self.seen);
        }
        panic!("no line with {text:?}: {:#?}", self.seen);
    }

    fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let st = self.child.wait().unwrap();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        (st, self.seen)
    }
}

/// Wait until the target holds `n` committed lines (a condition, polled).
fn wait_committed(target: &Path, n: u64, d: &mut Daemon) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let have = tributary::Manifest::load(&tributary::Sidecar::for_target(target))
            .ok()
            .flatten()
            .map_or(0, |m| m.committed_lines);
        if have >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {have} of {n} lines committed: {:#?}", d.seen);
        assert!(d.child.try_wait().unwrap().is_none(), "the daemon exited: {:#?}", d.seen);
        while let Ok(l) = d.lines.try_recv() {
            d.seen.push(l);
        }
        std::thread::yield_now();
    }
}

#[test]
fn the_daemon_waits_for_its_spool_and_target_sets_junk_aside_and_drains_the_rest() {
    let d = tmp();
    let spool = d.path().join("spool");
    let target = d.path().join("shared").join("out.log");
    std::fs::create_dir(d.path().join("shared")).unwrap();
    // neither the spool nor the target exist yet
    let mut daemon = Daemon::start(&target, &spool);
    daemon.wait_for_line("listing spool");
    std::fs::create_dir(&spool).unwrap();
    let good = journal(&spool.join("good.journal"));
    good.append_batch(&numbered("g", 0..5)).unwrap();
    daemon.wait_for_line("[target_missing]");
    // a junk file and an empty file (a writer creating its journal) named *.journal
    std::fs::write(spool.join("junk.journal"), b"this is not a database at all, just junk").unwrap();
    std::fs::write(spool.join("creating.journal"), b"").unwrap();
    init(&target);
    wait_committed(&target, 5, &mut daemon);
    daemon.wait_for_line("junk.journal set aside");
    // the half-created journal gets its writer: picked up once its file changes
    let late = journal(&spool.join("creating.journal"));
    late.append_batch(&numbered("late", 0..3)).unwrap();
    good.append_batch(&numbered("g", 5..8)).unwrap();
    wait_committed(&target, 11, &mut daemon);
    let (st, seen) = daemon.stop();
    assert!(st.success(), "SIGTERM: {st}; {seen:#?}");
    let mut want = numbered("g", 0..8);
    want.extend(numbered("late", 0..3));
    assert_exactly(&target, &want);
    assert!(
        !seen.iter().any(|l| l.contains("creating.journal")),
        "a journal being created is not a problem: {seen:#?}"
    );
    for what in ["junk.journal set aside", "[target_missing]", "listing spool"] {
        let n = seen.iter().filter(|l| l.contains(what)).count();
        assert_eq!(n, 1, "{what:?} reported {n} times, not once: {seen:#?}");
    }
}

/// In `dir`: an initialised target `out.log` and a spool holding journal `name` whose
/// writer appended `lines` and never closed (killed: the lines are in its `-wal` only),
/// its file then moved away (returned: the journal's path, and where its file is).
fn orphaned_log(dir: &Path, name: &str, lines: &[Vec<u8>]) -> (std::path::PathBuf, std::path::PathBuf) {
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    init(&dir.join("out.log"));
    let path = spool.join(name);
    let writer = journal(&path);
    writer.append_batch(lines).unwrap();
    std::mem::forget(writer);
    let kept = dir.join(format!("{name}.kept"));
    std::fs::rename(&path, &kept).unwrap();
    assert!(std::fs::metadata(spool.join(format!("{name}-wal"))).unwrap().len() > 0);
    (path, kept)
}

/// A journal whose file was removed while its `-wal` still holds acknowledged lines (a
/// writer killed before any checkpoint, then `rm x.journal`): an outside tester saw
/// `status` say "0 journal(s)", `drain` drain nothing with exit 0 and `compact` say
/// nothing — lines in no listing. Every front end now names it (`journal_gone`), and
/// once the file is put back the daemon drains its lines, each once.
#[test]
fn a_journal_removed_without_its_log_is_named_by_every_front_end_and_drains_once_restored() {
    let d = tmp();
    let (spool, target) = (d.path().join("spool"), d.path().join("out.log"));
    let (gone, kept) = orphaned_log(d.path(), "gone.journal", &numbered("w", 0..3));
    let good = journal(&spool.join("good.journal"));
    good.append_batch(&numbered("g", 0..4)).unwrap();

    let status = cli(&["status", "--target", &s(&target), "--spool", &s(&spool)]);
    let err = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(1), "status: {err}");
    assert!(err.contains("gone.journal") && err.contains("gone.journal-wal holds data"), "status: {err}");
    let drain = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
    let err = String::from_utf8_lossy(&drain.stderr);
    assert_eq!(drain.status.code(), Some(1), "drain: {err}");
    assert!(err.contains("[journal_gone]") && err.contains("gone.journal"), "drain: {err}");
    // (retiring it said "nothing to retire there", as if its lines were safe)
    let retire = cli(&["retire", "--target", &s(&target), "--journal", &s(&gone)]);
    let err = String::from_utf8_lossy(&retire.stderr);
    assert!(retire.status.code() == Some(1) && err.contains("[journal_gone]"), "retire: {err}");
    assert_exactly(&target, &numbered("g", 0..4));

    let mut daemon = Daemon::start(&target, &spool);
    daemon.wait_for_line("gone.journal set aside: error [journal_gone]");
    good.append_batch(&numbered("g", 4..6)).unwrap();
    wait_committed(&target, 6, &mut daemon);
    // put back: its files changed, so the daemon tries it again
    std::fs::rename(&kept, &gone).unwrap();
    wait_committed(&target, 9, &mut daemon);
    let (st, seen) = daemon.stop();
    assert!(st.success(), "SIGTERM: {st}; {seen:#?}");
    let mut want = numbered("g", 0..6);
    want.extend(numbered("w", 0..3));
    assert_exactly(&target, &want);
    let n = seen.iter().filter(|l| l.contains("[journal_gone]")).count();
    assert_eq!(n, 1, "reported {n} times, not once: {seen:#?}");
}

#[test]
fn the_daemon_stops_with_exit_3_on_bytes_it_did_not_write() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let j = journal(&spool.join("a.journal"));
    j.append(b"a").unwrap();
    std::fs::write(&target, b"foreign\n").unwrap();
    let mut child = Command::new(bin())
        .args(["compact", "--target", &s(&target), "--spool", &s(&spool), "--interval", "20"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let st = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(st.code(), Some(3), "{err}");
    assert!(err.contains("[unexpected_tail]") && err.contains("needs a human"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"foreign\n");
}

/// A drain never initialises a journal: an empty `*.journal` (its writer is creating
/// it) is "not ready", left exactly as it is for the writer (racing the writer through
/// SQLite's first-time setup failed both with `disk I/O error`).
#[test]
fn a_drain_never_initialises_a_journal_its_writer_is_creating() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let p = spool.join("new.journal");
    std::fs::write(&p, b"").unwrap();
    // opened on its own it is "not ready"; a drain finds nothing in it to drain
    let e = tributary::Journal::open_existing(&p, tributary::JournalOptions::default()).unwrap_err();
    assert_eq!(e.kind(), tributary::ErrorKind::NotAJournal, "{e}");
    assert!(e.is_journal_not_ready() && e.to_string().contains("no writer has created a journal in it yet"), "{e}");
    let r = compactor(&target).drain_paths(std::slice::from_ref(&p)).unwrap();
    assert_eq!(r.lines, 0);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 0, "the drain wrote into the writer's new file");
    assert!(!Path::new(&format!("{}-wal", p.display())).exists(), "the drain switched it to WAL");
    // a spool drain skips it (not ready yet) and drains the others
    journal(&spool.join("other.journal")).append(b"other").unwrap();
    let r = compactor(&target).drain_spool(&spool).unwrap();
    assert_eq!(r.lines, 1);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 0, "the spool drain wrote into the writer's new file");
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j = journal(&p);
    j.append(b"first").unwrap();
    compactor(&target).drain(&[j]).unwrap();
    assert_exactly(&target, &[b"other".to_vec(), b"first".to_vec()]);
}

/// The daemon keeps at most --max-open-journals open, and still drains every journal.
#[test]
fn the_daemon_drains_more_journals_than_it_keeps_open() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let mut want = Vec::new();
    for i in 0..10 {
        let line = format!("j{i}").into_bytes();
        journal(&spool.join(format!("j{i}.journal"))).append(&line).unwrap();
        want.push(line);
    }
    let mut daemon = Command::new(bin())
        .args(["compact", "--target", &s(&target), "--spool", &s(&spool), "--interval", "10"])
        .args(["--max-open-journals", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while tributary::Manifest::load(&tributary::Sidecar::for_target(&target)).unwrap().unwrap().committed_lines < 10 {
        assert!(Instant::now() < deadline, "not every journal was drained");
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        std::thread::yield_now();
    }
    // The bound itself: the daemon holds at most 3 journals open (their files, -wal
    // and -shm), whichever window it is at — never all 10. Between two windows it may
    // hold none (the old window closed, the next not opened yet), so look until a
    // window is seen open (proof that these are the right descriptors), checking the
    // bound each time.
    let journals_open = || {
        std::fs::read_dir(format!("/proc/{}/fd", daemon.id()))
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|p| p.to_string_lossy().contains(".journal") && !p.to_string_lossy().ends_with("-wal"))
            .filter(|p| !p.to_string_lossy().ends_with("-shm"))
            .count()
    };
    loop {
        let open = journals_open();
        assert!(open <= 3, "the daemon has {open} journal files open, bound 3");
        if open > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon never had a journal open");
        std::thread::yield_now();
    }
    Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    assert!(daemon.wait().unwrap().success());
    let mut got = lines_of(&target);
    got.sort();
    assert_eq!(got, want);
}

/// SIGTERM while the daemon waits for a lock held elsewhere (another host's round, a
/// hung client) stopped it only when the lock came free or the lock timeout (30 s by
/// default; here an hour) passed: a supervisor's stop timed out and it was killed.
/// Nothing is held while waiting, so the stop ends the wait. Found by an outside
/// tester (Go `Compact(ctx)` did the same on a cancelled context).
#[test]
fn a_stop_ends_the_daemons_wait_for_a_lock_held_elsewhere() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    journal(&spool.join("a.journal")).append(b"waiting").unwrap();
    let lock_path = tributary::Sidecar::for_target(&target).lock;
    let held = tributary::TargetLock::acquire(&lock_path, Duration::from_secs(5), false).unwrap();
    let mut child = Command::new(bin())
        .args(["compact", "--target", &s(&target), "--spool", &s(&spool), "--lock-timeout-ms", "3600000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_blocked_lock_request(&lock_path);
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not end the daemon's wait for the lock");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(!err.contains("lock_timeout"), "a stop is not reported as contention: {err}");
    drop(held);
    assert_eq!(lines_of(&target).len(), 0, "nothing was committed while the lock was held elsewhere");
}

/// An empty file at the name of a journal removed without its log (`touch`, or the
/// first instant of a copy back): SQLite deleted the log of an empty database at the
/// first read — every open did so, `status` and `dump` included, and a writer then
/// started a fresh journal over it (an outside tester). Every open now refuses it,
/// touching nothing; the journal's own file moved back drains its lines.
#[test]
fn an_empty_file_at_an_orphaned_logs_name_never_loses_the_log() {
    let d = tmp();
    let (spool, target) = (d.path().join("spool"), d.path().join("out.log"));
    let (path, kept) = orphaned_log(d.path(), "b.journal", &numbered("b", 0..3));
    let wal = spool.join("b.journal-wal");
    std::fs::write(&path, b"").unwrap();
    let log_len = std::fs::metadata(&wal).unwrap().len();
    assert!(log_len > 0);
    let opts = tributary::JournalOptions::default;
    let Err(e) = tributary::Journal::open_existing(&path, opts()) else { panic!("opened") };
    assert_eq!(e.kind(), tributary::ErrorKind::JournalGone, "{e}");
    let Err(e) = tributary::Journal::open(&path, opts()) else { panic!("a writer opened it") };
    assert_eq!(e.kind(), tributary::ErrorKind::JournalGone, "{e}");
    for args in [
        vec!["status", "--target", &s(&target), "--spool", &s(&spool)],
        vec!["dump", "--journal", &s(&path)],
        vec!["drain", "--target", &s(&target), "--spool", &s(&spool)],
    ] {
        let out = cli(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), log_len, "the log is untouched");
    std::fs::rename(&kept, &path).unwrap();
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_exactly(&target, &numbered("b", 0..3));
}
