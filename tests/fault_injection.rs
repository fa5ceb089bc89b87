//! Fault injection at every I/O step of the drain, through the `fault` seam (a
//! process-global countdown in the style of redb's `StorageBackend`): for N = 1, 2, ...
//! the Nth checked operation (target write, fdatasync, truncate, manifest slot write /
//! fdatasync, sidecar fsync, journal row delete) fails. The drain must report an
//! error (never a silent success), leave the committed part intact, and a later drain
//! must deliver every line exactly once. The loop ends at the first N that the drain
//! no longer reaches. Plus: an fsync failure is never treated as success on retry, and
//! a real ENOSPC from a size-limited tmpfs (root only).
//!
//! The seam is global to the process, so every test here holds `SEAM` while it runs.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use common::{is_root, Tmpfs};
use tributary::testing::fault;
use tributary::{verify, Compactor, CompactorOptions, Durability, Journal, JournalOptions, Manifest, Sidecar};

static SEAM: Mutex<()> = Mutex::new(());

fn seam() -> std::sync::MutexGuard<'static, ()> {
    let g = SEAM.lock().unwrap_or_else(|e| e.into_inner());
    fault::disarm();
    g
}

/// The bytes of journal `j`'s `i`th line (unique, varying length).
fn line(j: usize, i: usize) -> Vec<u8> {
    format!("j{j} line {i:05} {}", "abcdefghij".repeat((i * 7 + j) % 9)).into_bytes()
}

/// One scenario's files: journals, target, what was appended, what was there before.
struct Setup {
    _dir: tempfile::TempDir,
    target: PathBuf,
    journals: Vec<PathBuf>,
    appended: Vec<Vec<Vec<u8>>>,
    preexisting: Vec<Vec<u8>>,
    opts: CompactorOptions,
}

impl Setup {
    fn new(n_journals: usize, opts: CompactorOptions) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("shared").join("out.log");
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        let journals = (0..n_journals).map(|j| dir.path().join(format!("j{j}.journal"))).collect();
        // These tests are about faults, not creation: the first drain creates the target.
        let opts = opts.create(true);
        Setup { _dir: dir, target, journals, appended: vec![Vec::new(); n_journals], preexisting: Vec::new(), opts }
    }

    fn open(&self) -> Vec<Journal> {
        self.journals.iter().map(|p| Journal::open(p, JournalOptions::default()).unwrap()).collect()
    }

    fn append(&mut self, j: usize, count: usize) {
        self.append_with(j, count, Durability::Full);
    }

    fn append_with(&mut self, j: usize, count: usize, durability: Durability) {
        let journal = Journal::open(&self.journals[j], JournalOptions::default().durability(durability)).unwrap();
        let start = self.appended[j].len();
        let lines: Vec<Vec<u8>> = (start..start + count).map(|i| line(j, i)).collect();
        journal.append_batch(&lines).unwrap();
        self.appended[j].extend(lines);
    }

    fn compactor(&self) -> Compactor {
        Compactor::new(&self.target, self.opts.clone()).unwrap()
    }

    fn drain_clean(&self) -> tributary::DrainReport {
        self.compactor().drain(&self.open()).expect("a drain without injected faults")
    }

    fn manifest(&self) -> Option<Manifest> {
        Manifest::load(&Sidecar::for_target(&self.target)).unwrap()
    }

    fn target_lines(&self, limit: u64) -> Vec<Vec<u8>> {
        let bytes = fs::read(&self.target).unwrap_or_default();
        let body = &bytes[..(limit as usize).min(bytes.len())];
        let mut v: Vec<Vec<u8>> = body.split(|&b| b == b'\n').map(|l| l.to_vec()).collect();
        assert_eq!(v.pop().as_deref(), Some(&b""[..]), "the committed part must end with a newline");
        v
    }

    /// The committed part holds each known line at most once, in per-journal order,
    /// nothing foreign, and `verify` agrees with the manifest.
    fn check_committed_part(&self, ctx: &str) -> usize {
        let Some(m) = self.manifest() else { return 0 };
        let v = verify(&self.target).unwrap();
        assert!(v.is_consistent(), "{ctx}: verify after the fault: {:?}", v.problems);
        let lines = if m.committed_len == 0 { Vec::new() } else { self.target_lines(m.committed_len) };
        let mut pos: HashMap<Vec<u8>, (usize, usize)> = HashMap::new();
        for (j, ls) in self.appended.iter().enumerate() {
            for (i, l) in ls.iter().enumerate() {
                pos.insert(l.clone(), (j, i));
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut last: HashMap<usize, usize> = HashMap::new();
        for l in &lines {
            if self.preexisting.contains(l) {
                continue;
            }
            let (j, i) = *pos.get(l).unwrap_or_else(|| panic!("{ctx}: foreign line {:?}", String::from_utf8_lossy(l)));
            assert!(seen.insert(l.clone()), "{ctx}: duplicated line {:?}", String::from_utf8_lossy(l));
            if let Some(prev) = last.insert(j, i) {
                assert!(i > prev, "{ctx}: journal {j} out of order ({prev} then {i})");
            }
        }
        lines.len()
    }

    /// After a successful drain: the target is exactly the pre-existing lines followed
    /// by every appended line once, per-journal order kept; verify clean, no tail, and
    /// every journal emptied.
    fn check_exactly_once(&self, ctx: &str) {
        let m = self.manifest().expect("a manifest after a successful drain");
        let len = fs::metadata(&self.target).unwrap().len();
        assert_eq!(len, m.committed_len, "{ctx}: uncommitted tail left after a successful drain");
        let lines = self.target_lines(len);
        assert_eq!(&lines[..self.preexisting.len()], &self.preexisting[..], "{ctx}: pre-existing lines changed");
        let got = &lines[self.preexisting.len()..];
        let want: usize = self.appended.iter().map(|a| a.len()).sum();
        assert_eq!(got.len(), want, "{ctx}: {} lines in the target, {want} appended", got.len());
        for (j, a) in self.appended.iter().enumerate() {
            let mine: Vec<&Vec<u8>> = got.iter().filter(|l| l.starts_with(format!("j{j} ").as_bytes())).collect();
            assert_eq!(mine.len(), a.len(), "{ctx}: journal {j}: lost or duplicated lines");
            assert!(mine.iter().zip(a).all(|(x, y)| *x == y), "{ctx}: journal {j}: lines differ or out of order");
        }
        let v = verify(&self.target).unwrap();
        assert!(v.is_consistent() && v.uncommitted_tail_bytes == 0, "{ctx}: verify: {v:?}");
        assert_eq!(v.committed_lines, lines.len() as u64, "{ctx}: committed line count");
        for j in self.open() {
            let b = j.backlog().unwrap();
            assert_eq!(b.lines, 0, "{ctx}: {} still holds {} lines", j.path().display(), b.lines);
        }
    }
}

type Make = fn() -> Setup;

fn scenarios() -> Vec<(&'static str, Make)> {
    vec![
        ("first drain (no manifest yet)", || {
            let mut s = Setup::new(2, CompactorOptions::default());
            s.append(0, 25);
            s.append(1, 25);
            s
        }),
        ("drain after earlier commits", || {
            let mut s = Setup::new(2, CompactorOptions::default());
            s.append(0, 10);
            s.append(1, 10);
            s.drain_clean();
            s.append(0, 15);
            s.append(1, 5);
            s
        }),
        ("uncommitted tail to repair first", || {
            // a real crashed round's tail: written under its intent, never committed
            let (mut s, _) = fail_at_with(committed_then_more, "target fdatasync", |_| true);
            s.append(1, 5);
            s
        }),
        ("many bounded rounds, three journals", || {
            let opts = CompactorOptions::default().max_round_bytes(150);
            let mut s = Setup::new(3, opts);
            s.append(0, 12);
            s.append(1, 8);
            s.append(2, 10);
            s
        }),
        ("adopting a pre-existing target", || {
            let mut s = Setup::new(1, CompactorOptions::default());
            s.preexisting = (0..3).map(|i| format!("pre-existing line {i}").into_bytes()).collect();
            let mut bytes = Vec::new();
            for l in &s.preexisting {
                bytes.extend_from_slice(l);
                bytes.push(b'\n');
            }
            fs::write(&s.target, bytes).unwrap();
            s.append(0, 20);
            s
        }),
        ("a normal writer's lines (the drain syncs their -wal)", || {
            let mut s = Setup::new(2, CompactorOptions::default());
            s.append_with(0, 12, Durability::Normal);
            s.append(1, 8);
            s
        }),
        ("journal records lagging (step 7 failed in an earlier round)", || {
            let (mut s, _) = fail_at(committed_then_more, "journal row delete");
            s.append(0, 5);
            s
        }),
    ]
}

fn injected_step(msg: &str) -> Option<&'static str> {
    fault::STEPS.iter().copied().find(|s| msg.contains(&format!("injected fault at {s}")))
}

#[test]
fn every_io_step_of_the_drain_fails_cleanly_and_recovers_exactly_once() {
    let _g = seam();
    let mut by_step: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut total = 0u64;
    for (name, make) in scenarios() {
        let mut n = 1u64;
        loop {
            let mut s = make();
            let journals = s.open();
            let before = s.manifest();
            fault::fail_nth(n);
            let r = s.compactor().drain(&journals);
            let seen = fault::disarm();
            if seen < n {
                let r = r.unwrap_or_else(|e| panic!("{name}: no fault was hit (only {seen} steps) yet: {e}"));
                assert!(r.lines > 0 || s.appended.iter().all(|a| a.is_empty()), "{name}: drained nothing");
                s.check_exactly_once(&format!("{name}, no fault"));
                println!("{name}: a full drain has {seen} injectable I/O steps; all {} failed one by one", n - 1);
                break;
            }
            let ctx = format!("{name}, fault at step {n}");
            let err = match r {
                Ok(rep) => panic!("{ctx}: fault injected but the drain reported success: {rep:?}"),
                Err(e) => e,
            };
            let step = injected_step(&err.to_string())
                .unwrap_or_else(|| panic!("{ctx}: the error does not carry the injected fault: {err}"));
            *by_step.entry(step).or_default() += 1;
            total += 1;
            let ctx = format!("{ctx} ({step}: {err})");
            // the committed part is intact whatever failed
            s.check_committed_part(&ctx);
            if let Some(b) = &before {
                let now = s.manifest().expect("the manifest cannot disappear");
                assert!(now.epoch >= b.epoch && now.committed_len >= b.committed_len, "{ctx}: manifest went back");
            }
            drop(journals);
            // writers keep appending while the compactor is failing
            if n.is_multiple_of(2) {
                s.append(0, 3);
            }
            // recovery with fresh handles, as a restarted compactor would
            let rep = s.drain_clean();
            assert!(rep.epoch >= before.as_ref().map_or(1, |m| m.epoch), "{ctx}: {rep:?}");
            s.check_exactly_once(&format!("{ctx}, after recovery"));
            n += 1;
            assert!(n < 400, "{name}: the drain never stopped hitting faults");
        }
    }
    println!("faults injected: {total}; by step: {by_step:?}");
    for step in fault::STEPS {
        assert!(by_step.contains_key(step), "no scenario reached the step `{step}`: {by_step:?}");
    }
}

/// Find the smallest N whose injected fault hits `step` in a fresh setup.
fn fail_at(make: Make, step: &str) -> (Setup, tributary::Error) {
    fail_at_with(make, step, |_| true)
}

/// Like [`fail_at`], for the first failure at `step` after which `when` holds.
fn fail_at_with(make: Make, step: &str, when: impl Fn(&Setup) -> bool) -> (Setup, tributary::Error) {
    for n in 1..200 {
        let s = make();
        let journals = s.open();
        fault::fail_nth(n);
        let r = s.compactor().drain(&journals);
        let seen = fault::disarm();
        if seen < n {
            break;
        }
        let e = r.expect_err("an injected fault must fail the drain");
        if injected_step(&e.to_string()) == Some(step) && when(&s) {
            return (s, e);
        }
    }
    panic!("the drain never reached `{step}`");
}

/// Bytes past the manifest's committed length (a failed round's batch).
fn tail_len(s: &Setup) -> u64 {
    fs::metadata(&s.target).unwrap().len() - s.manifest().unwrap().committed_len
}

fn committed_then_more() -> Setup {
    let mut s = Setup::new(2, CompactorOptions::default());
    s.append(0, 10);
    s.append(1, 10);
    s.drain_clean();
    s.append(0, 10);
    s.append(1, 10);
    s
}

#[test]
fn a_failed_fsync_is_never_treated_as_success_on_retry() {
    let _g = seam();
    // (a failed slot write at the round's intent, before its batch, writes nothing)
    for step in ["target fdatasync", "manifest slot write"] {
        let (s, err) = fail_at_with(committed_then_more, step, |s| tail_len(s) > 0);
        let m = s.manifest().unwrap();
        // nothing was committed by the failed round
        assert_eq!(m.committed_lines, 20, "{step}: the failed round committed: {m:?} ({err})");
        let sidecar = Sidecar::for_target(&s.target);
        let temps: Vec<_> = fs::read_dir(&sidecar.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
            .collect();
        assert!(temps.is_empty(), "{step}: temp files left behind: {temps:?}");
        let len = fs::metadata(&s.target).unwrap().len();
        let tail = len - m.committed_len;
        assert!(tail > 0, "{step}: the failed round should have written its batch before failing");
        // The kernel may drop pages whose writeback failed: model the worst case by
        // destroying the unsynced bytes. A retry that trusted them would commit garbage.
        let mut f = OpenOptions::new().write(true).open(&s.target).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&vec![b'#'; tail as usize], m.committed_len).unwrap();
        f.flush().unwrap();
        let rep = s.drain_clean();
        assert_eq!(rep.repaired_tail_bytes, tail, "{step}: the retry must truncate and rewrite, not trust the tail");
        s.check_exactly_once(&format!("retry after a failed {step}"));
    }
}

/// The fdatasync after the commit's slot write fails: the new manifest is in the slot
/// (every later read sees it) but may not be durable. The next round must not delete
/// the journal rows it covers before the lock file was fdatasynced successfully;
/// otherwise a power cut after that round can bring the old manifest back while the
/// lines are gone from the journal.
#[test]
fn rows_are_not_deleted_on_a_slot_whose_fdatasync_failed() {
    let _g = seam();
    let (s, _) =
        fail_at_with(committed_then_more, "manifest slot fdatasync", |s| s.manifest().unwrap().committed_lines == 40);
    // learn which injectable step the next (nothing-new) round performs first
    let journals = s.open();
    fault::fail_nth(1);
    let r = s.compactor().drain(&journals);
    fault::disarm();
    let first = r.err().and_then(|e| injected_step(&e.to_string()));
    assert_eq!(
        first,
        Some("manifest slot fdatasync"),
        "the round after a failed slot fdatasync did `{first:?}` before fdatasyncing the lock file"
    );
    let rep = s.drain_clean();
    assert_eq!(rep.lines, 0, "the committed round was drained again: {rep:?}");
    s.check_exactly_once("after the failed slot fdatasync");
}

/// O3 without an fsync (docs/design.md): a round fdatasyncs the `-wal` of exactly the
/// journals whose newest line it took was not committed under `synchronous=FULL` — a
/// `full` commit's own fsync, before it was visible, covered every earlier frame —
/// once its handle has synced the `-wal` since it opened it (a commit `SQLite`
/// recovered at an open was never synced): the first round on fresh handles syncs
/// every journal, a later one only those. A journal whose rows carry no mark (`NULL`,
/// as a writer from before the column leaves them) is synced. Which `-wal`s a round
/// syncs is learnt by failing its Nth injectable step, N = 1, 2, ...: each failed
/// fdatasync names its file. A `-wal` that is empty is not synced at all (nothing is
/// in it: the rows came from the journal file, which `SQLite` fsynced before it cut
/// the `-wal`).
#[test]
fn a_round_syncs_the_wal_of_exactly_the_journals_whose_newest_line_was_not_durable() {
    let _g = seam();
    // Which journals' -wal a drain fdatasyncs: for N = 1, 2, ... a fresh `make()`
    // (files and handles), then its drain with the Nth injectable step failing.
    let synced_by = |make: &dyn Fn() -> (Setup, Vec<Journal>)| {
        let mut synced = Vec::new();
        for n in 1..200 {
            let (s, journals) = make();
            fault::fail_nth(n);
            let r = s.compactor().drain(&journals);
            if fault::disarm() < n {
                r.expect("a drain without a fault");
                s.check_exactly_once("the drain that hit no fault");
                break;
            }
            let e = r.expect_err("an injected fault fails the drain");
            if injected_step(&e.to_string()) == Some("journal wal fdatasync") {
                let wal = s.journals.iter().position(|p| e.to_string().contains(&format!("{}-wal", p.display())));
                synced.push(wal.unwrap_or_else(|| panic!("the failed fdatasync names no journal's -wal: {e}")));
            }
        }
        synced.sort_unstable();
        synced
    };
    // The drain's handles open first, so the writers' frames stay in each -wal.
    let fresh = || {
        let mut s = Setup::new(5, CompactorOptions::default());
        let journals = s.open();
        for j in 0..5 {
            s.append_with(j, 2, Durability::Full);
        }
        (s, journals)
    };
    assert_eq!(synced_by(&fresh), vec![0, 1, 2, 3, 4], "a round on fresh handles syncs every -wal, marks or not");
    // Each writer closed its journal alone: SQLite checkpointed its frames into the
    // journal file, fsynced it and removed the -wal; the drain's handles find it empty
    // (docs/design.md step 4: nothing in it to sync), `normal` writers too.
    let writers_closed = || {
        let mut s = Setup::new(3, CompactorOptions::default());
        s.append_with(0, 2, Durability::Full);
        s.append_with(1, 2, Durability::Normal);
        s.append_with(2, 2, Durability::Normal);
        s.append_with(2, 2, Durability::Full);
        let journals = s.open();
        (s, journals)
    };
    assert_eq!(synced_by(&writers_closed), Vec::<usize>::new(), "an empty -wal is not synced");
    let drained_once = || {
        let (mut s, journals) = fresh();
        s.compactor().drain(&journals).unwrap(); // these handles have synced each -wal since they opened it
        s.append_with(0, 5, Durability::Full);
        s.append_with(1, 5, Durability::Normal);
        s.append_with(2, 5, Durability::Normal); // normal, then full: the full commit's fsync covers both
        s.append_with(2, 5, Durability::Full);
        s.append_with(3, 5, Durability::Full); // full, then normal: the newest is not durable
        s.append_with(3, 5, Durability::Normal);
        s.append_with(4, 5, Durability::Full);
        let old_writer = rusqlite::Connection::open(&s.journals[4]).unwrap();
        old_writer.execute("UPDATE runs SET durable = NULL", []).unwrap(); // as a writer from before the mark
        drop(old_writer);
        (s, journals)
    };
    assert_eq!(synced_by(&drained_once), vec![1, 3, 4], "what a later round fdatasyncs (0 and 2 end in full commits)");
}

#[test]
fn enospc_on_a_full_tmpfs_fails_clearly_loses_nothing_and_recovers() {
    let _g = seam();
    if !is_root() {
        eprintln!("SKIPPED enospc_on_a_full_tmpfs...: needs root to mount a size-limited tmpfs");
        return;
    }
    let Some(_probe) = Tmpfs::mount("64k") else {
        eprintln!("SKIPPED enospc_on_a_full_tmpfs...: `mount -t tmpfs` failed (no CAP_SYS_ADMIN in this container?)");
        return;
    };
    drop(_probe);
    // (tmpfs size, filler bytes, round bytes): space comes back by growing the tmpfs,
    // or (with a filler) by deleting the filler
    for (size, filler_bytes, round_bytes) in
        [("256k", 0usize, 64u64 << 20), ("256k", 0, 16 << 10), ("1m", 800 << 10, 16 << 10)]
    {
        let fsmnt = Tmpfs::mount(size).expect("mount tmpfs");
        let local = tempfile::tempdir().unwrap();
        let mut s = Setup::new(2, CompactorOptions::default().max_round_bytes(round_bytes));
        s.target = fsmnt.path().join("out.log");
        s.journals = vec![local.path().join("a.journal"), local.path().join("b.journal")];
        let filler = fsmnt.path().join("filler");
        if filler_bytes > 0 {
            fs::write(&filler, vec![0u8; filler_bytes]).unwrap();
        }
        // ~440 KB of lines: more than the tmpfs has room for
        s.append(0, 4000);
        s.append(1, 4000);
        let total_bytes: usize = s.appended.iter().flatten().map(|l| l.len() + 1).sum();
        assert!(total_bytes > 300 << 10, "the test needs more data than the tmpfs holds ({total_bytes})");
        let ctx = format!("ENOSPC (tmpfs {size}, filler {filler_bytes} B, rounds of {round_bytes} B)");
        let err = s.compactor().drain(&s.open()).expect_err("draining more than the tmpfs holds must fail");
        let msg = err.to_string();
        assert!(
            msg.contains("No space left on device") || msg.contains("os error 28"),
            "{ctx}: the error must say ENOSPC: {msg}"
        );
        println!("{ctx}: drain failed as it should: [{}] {msg}", err.kind().name());
        // nothing lost: what is committed is intact, the rest is still in the journals
        let committed = s.check_committed_part(&ctx);
        let backlog: u64 = s.open().iter().map(|j| j.backlog().unwrap().lines).sum();
        assert_eq!(committed as u64 + backlog, 8000, "{ctx}: committed {committed} + backlog {backlog} != 8000");
        // a retry while still full fails the same way and changes nothing committed
        assert!(s.compactor().drain(&s.open()).is_err(), "{ctx}: a retry with the disk still full succeeded");
        assert_eq!(s.check_committed_part(&ctx), committed, "{ctx}: the failed retry changed the committed part");
        if filler_bytes > 0 {
            fs::remove_file(&filler).unwrap();
        } else {
            fsmnt.resize("2m");
        }
        let rep = s.drain_clean();
        assert!(rep.lines > 0, "{ctx}: {rep:?}");
        s.check_exactly_once(&format!("{ctx}, after space came back"));
    }
}
