//! The compactor daemon: drain journal [`JournalSources`] (spool folders, journal paths) into
//! the target until asked to stop, or until nothing is left to drain. One loop for
//! every front end (the CLI's `compact`, and through the C ABI the Python and Go
//! bindings and their compactor handles), so they behave alike.
//!
//! Keeps: the daemon stops only when its caller asks (`stop`) or on an error that
//! needs a human ([`Error::needs_a_human`]); transient trouble (a full disk, a
//! remounting share, a spool not there yet) is retried with backoff up to
//! [`DaemonOptions::max_backoff`]; a journal that cannot be drained is set aside and
//! retried when its files change (and at least every minute), while every healthy
//! journal keeps draining; each problem is reported once (and once more when it is
//! over), not once per round; at most `max_open_journals` journals are open at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Compactor, DrainReport};
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{spool_journals, Journal};

/// How long a set-aside journal whose files did not change waits to be tried again.
const RETRY_SET_ASIDE: Duration = Duration::from_secs(60);
/// The shortest pause after a transient error.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest sleep between two checks of the caller's `stop`.
const STOP_CHECK: Duration = Duration::from_millis(10);

crate::options::options! {
    /// Options for [`Compactor::run`].
    pub struct DaemonOptions {
        /// Pause after a pass that found nothing to drain.
        pub interval: Duration = Duration::from_millis(100),
        /// The longest pause between retries after a transient error (the pause
        /// doubles from `interval` each time).
        pub max_backoff: Duration = Duration::from_secs(30),
        /// Stop once a pass over every journal finds nothing to drain ("drain until
        /// empty": the end of a batch job, an application's shutdown), instead of
        /// waiting for more. Journals set aside stay as they are and are listed in
        /// [`DaemonSummary::set_aside`]; transient trouble is still retried.
        pub until_empty: bool = false,
        /// Retire journals automatically (docs/design.md "Journal lifecycle and
        /// watermark expiry", rule 5): after a pass that drained nothing, each open
        /// journal fully drained whose files were not modified for this long is
        /// retired (deleted; its watermark becomes a `retired` entry). `None` (the
        /// default): only explicit retirement — a process holding a retired journal
        /// open gets `journal_gone` on its next append, so turn this on only where
        /// writers close their journals (per-process, per-job journals).
        pub retire_idle_after: Option<Duration> = None,
    }
}

/// Where the daemon finds its journals, at each pass: every `*.journal` directly in
/// each spool folder (as the folder is then: journals that appear later are picked
/// up), and each journal path given, always (one that is missing is set aside and
/// picked up once it exists). A path found twice is drained once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalSources {
    spools: Vec<PathBuf>,
    journals: Vec<PathBuf>,
}

impl JournalSources {
    /// No sources yet: add spools and journals.
    #[must_use]
    pub fn new() -> JournalSources {
        JournalSources::default()
    }

    /// These sources and the spool folder `folder`.
    #[must_use]
    pub fn spool(mut self, folder: impl Into<PathBuf>) -> JournalSources {
        self.add_spool(folder);
        self
    }

    /// These sources and the journal at `path`.
    #[must_use]
    pub fn journal(mut self, path: impl Into<PathBuf>) -> JournalSources {
        self.add_journal(path);
        self
    }

    /// Add a spool folder (once: a folder added again is ignored).
    pub fn add_spool(&mut self, folder: impl Into<PathBuf>) {
        let folder = folder.into();
        if !self.spools.contains(&folder) {
            self.spools.push(folder);
        }
    }

    /// Add a journal path (once: a path added again is ignored).
    pub fn add_journal(&mut self, path: impl Into<PathBuf>) {
        let path = path.into();
        if !self.journals.contains(&path) {
            self.journals.push(path);
        }
    }

    /// The spool folders.
    #[must_use]
    pub fn spools(&self) -> &[PathBuf] {
        &self.spools
    }

    /// The journal paths given one by one.
    #[must_use]
    pub fn journals(&self) -> &[PathBuf] {
        &self.journals
    }
}

/// What the daemon tells its caller while it runs.
#[derive(Debug)]
#[non_exhaustive]
pub enum DaemonEvent<'a> {
    /// A round committed lines.
    Committed(&'a DrainReport),
    /// Another host holds the target's lock, or this one's was lost mid-round: the
    /// round is retried after the interval.
    Contended(&'a Error),
    /// A problem, said once until its message changes or it is over. `subject` names
    /// the object (`target <path>` or `journal <path>`).
    Problem {
        /// What the problem is about.
        subject: &'a str,
        /// The error behind it.
        error: &'a Error,
        /// True when the object is set aside (a journal) rather than retried with
        /// backoff (the target).
        set_aside: bool,
    },
    /// A journal was retired automatically ([`DaemonOptions::retire_idle_after`]).
    Retired {
        /// The journal's path (its files are deleted).
        journal: &'a Path,
    },
    /// A problem reported before is over.
    Resolved {
        /// What the problem was about.
        subject: &'a str,
    },
    /// A pass found nothing to drain: every open journal is caught up, and the daemon
    /// pauses for the interval. Said after every such pass: for metrics and progress,
    /// not for logs.
    Idle,
}

/// How the daemon ended.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct DaemonSummary {
    /// Rounds that committed lines.
    pub rounds: u64,
    /// Lines committed.
    pub lines: u64,
    /// The error that stopped it, when one needed a human; `None` when `stop` asked
    /// (or, with [`DaemonOptions::until_empty`], when nothing was left to drain).
    pub stopped_by: Option<Error>,
    /// The journals set aside when it stopped, and the spool folders the last pass
    /// could not list (each was reported as a [`DaemonEvent::Problem`]): with
    /// `until_empty`, what "empty" did not include.
    pub set_aside: Vec<PathBuf>,
}

/// A journal set aside: retried when its files change, and at least every minute.
struct SetAside {
    since: Instant,
    stamp: Stamp,
}

/// Size and change time of a journal and its `-wal` (a writer's commits land there).
type Stamp = [Option<(u64, i64, i64)>; 2];

fn file_stamp(p: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let of = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.len(), m.ctime(), m.ctime_nsec()));
    let mut wal = p.as_os_str().to_owned();
    wal.push("-wal");
    [of(p), of(Path::new(&wal))]
}

/// What has been reported about each subject, so each problem is said once.
#[derive(Default)]
struct Reported(BTreeMap<String, String>);

/// The daemon's state between passes.
struct Daemon<'a> {
    compactor: &'a Compactor,
    sources: &'a JournalSources,
    journals: Vec<Journal>,
    aside: BTreeMap<PathBuf, SetAside>,
    /// Spool folders the last pass could not list.
    unlisted: Vec<PathBuf>,
    reported: Reported,
    rotation: usize,
}

impl Compactor {
    /// Drain every `*.journal` in `spool` into this target until `stop()` returns true
    /// (checked at least every 10 ms while waiting), calling `on_event` for what a log
    /// should say. Returns when stopped, or on an error that needs a human
    /// ([`DaemonSummary::stopped_by`]); every other error is retried or set aside.
    pub fn run(
        &self,
        spool: &Path,
        opts: &DaemonOptions,
        stop: &dyn Fn() -> bool,
        on_event: &mut dyn FnMut(DaemonEvent<'_>),
    ) -> DaemonSummary {
        self.run_sources(&JournalSources::new().spool(spool), opts, stop, on_event)
    }

    /// [`run`](Self::run) over a fixed set of journals instead of a spool: the same
    /// loop, retries and reports. A journal that is missing or cannot be drained is set
    /// aside (reported once) and tried again when its files change, as in a spool.
    pub fn run_journals(
        &self,
        journals: &[PathBuf],
        opts: &DaemonOptions,
        stop: &dyn Fn() -> bool,
        on_event: &mut dyn FnMut(DaemonEvent<'_>),
    ) -> DaemonSummary {
        let mut sources = JournalSources::new();
        for j in journals {
            sources.add_journal(j);
        }
        self.run_sources(&sources, opts, stop, on_event)
    }

    /// [`run`](Self::run) over any mix of spools and journal paths ([`JournalSources`]): the
    /// same loop, retries and reports. A spool that cannot be listed (not there yet,
    /// an unmounted share) is reported once and listed again at each pass while the
    /// others keep draining.
    pub fn run_sources(
        &self,
        sources: &JournalSources,
        opts: &DaemonOptions,
        stop: &dyn Fn() -> bool,
        on_event: &mut dyn FnMut(DaemonEvent<'_>),
    ) -> DaemonSummary {
        let mut daemon = Daemon {
            compactor: self,
            sources,
            journals: Vec::new(),
            aside: BTreeMap::new(),
            unlisted: Vec::new(),
            reported: Reported::default(),
            rotation: 0,
        };
        let mut summary = DaemonSummary::default();
        let interval = opts.interval;
        let mut backoff = interval;
        let target_subject = format!("target {}", self.target.display());
        // Passes in a row that found nothing to drain: with more journals than may be
        // open at once, a pass sees one window of them, so "empty" takes a whole cycle.
        let mut empty_passes = 0usize;
        while !stop() {
            let mut pause = interval;
            match daemon.pass(on_event) {
                Ok((r, windows)) => {
                    daemon.reported.resolved(&target_subject, on_event);
                    backoff = interval;
                    if r.lines > 0 {
                        empty_passes = 0;
                        summary.rounds += 1;
                        summary.lines += r.lines;
                        pause = Duration::ZERO;
                        on_event(DaemonEvent::Committed(&r));
                    } else {
                        empty_passes += 1;
                        if let Some(after) = opts.retire_idle_after {
                            daemon.retire_idle(after, on_event);
                        }
                        on_event(DaemonEvent::Idle);
                        if opts.until_empty && empty_passes >= windows {
                            break;
                        }
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::LockTimeout | ErrorKind::LockLost) => {
                    on_event(DaemonEvent::Contended(&e));
                }
                Err(e) if needs_a_human(&e) => {
                    summary.stopped_by = Some(e);
                    break;
                }
                Err(e) => {
                    daemon.reported.problem(&target_subject, &e, false, on_event);
                    pause = backoff;
                    // Doubling from the interval (at least MIN_BACKOFF, so a zero interval
                    // still backs off), never past the ceiling; no panic whatever the options.
                    let ceiling = opts.max_backoff.max(interval);
                    backoff = backoff.saturating_mul(2).max(MIN_BACKOFF.min(ceiling)).min(ceiling);
                }
            }
            let until = crate::os::clock::deadline_after(pause);
            while Instant::now() < until && !stop() {
                std::thread::sleep(STOP_CHECK.min(pause));
            }
        }
        summary.set_aside = daemon.aside.into_keys().chain(daemon.unlisted).collect();
        summary
    }
}

/// Errors after which the daemon stops: retrying cannot help and would hide them. An
/// unsafe filesystem is one when it is the target's (a journal's is set aside).
fn needs_a_human(e: &Error) -> bool {
    e.kind().needs_a_human() || (e.kind() == ErrorKind::UnsafeFilesystem && e.journal_path().is_none())
}

impl Daemon<'_> {
    /// One pass: pick up the journals (setting aside the ones that cannot be
    /// opened), then one round over the healthy ones; a journal the round refuses is
    /// set aside and the round retried without it. Returns the round's report and the
    /// number of passes a cycle over every journal takes (their windows).
    fn pass(&mut self, on_event: &mut dyn FnMut(DaemonEvent<'_>)) -> Result<(DrainReport, usize)> {
        // Pick up new journals, forget removed ones and ones whose path now names
        // another file (retired and the name reused): reopened below by path.
        let mut paths = self.list(on_event);
        self.aside.retain(|p, _| paths.contains(p));
        // At most max_open_journals open: a window over the spool that moves each pass.
        let max_open = self.compactor.options().max_open_journals.max(1);
        let windows = paths.len().div_ceil(max_open).max(1);
        if paths.len() > max_open {
            let start = (self.rotation * max_open) % paths.len();
            paths.rotate_left(start);
            paths.truncate(max_open);
        }
        self.journals.retain(|j| paths.iter().any(|p| p == j.path()) && j.is_in_place());
        for p in paths {
            if self.journals.iter().any(|j| j.path() == p) {
                continue;
            }
            if let Some(s) = self.aside.get(&p) {
                if file_stamp(&p) == s.stamp && s.since.elapsed() < RETRY_SET_ASIDE {
                    continue;
                }
            }
            let subject = format!("journal {}", p.display());
            // The files' stamp before trying: a change after it (even one made while the
            // problem is being reported) makes the next pass try again.
            let stamp = file_stamp(&p);
            match self.compactor.open_journals(std::slice::from_ref(&p)) {
                Ok(mut j) => {
                    self.aside.remove(&p);
                    self.reported.resolved(&subject, on_event);
                    self.journals.append(&mut j);
                }
                Err(e) => {
                    self.aside.insert(p.clone(), SetAside { since: Instant::now(), stamp });
                    self.reported.problem(&subject, &e, true, on_event);
                }
            }
        }
        loop {
            if self.journals.is_empty() {
                self.rotation = self.rotation.wrapping_add(1);
                return Ok((DrainReport::default(), windows));
            }
            match self.compactor.drain_round(&self.journals, self.rotation) {
                Ok(r) => {
                    self.rotation = self.rotation.wrapping_add(1);
                    return Ok((r, windows));
                }
                Err(e) => {
                    let Some(bad) = e.journal_path().map(Path::to_path_buf) else { return Err(e) };
                    let Some(i) = self.journals.iter().position(|j| j.path() == bad) else { return Err(e) };
                    self.journals.remove(i);
                    self.aside.insert(bad.clone(), SetAside { since: Instant::now(), stamp: file_stamp(&bad) });
                    self.reported.problem(&format!("journal {}", bad.display()), &e, true, on_event);
                }
            }
        }
    }
}

impl Daemon<'_> {
    /// Automatic retirement of the open journals that are drained and idle; a failure
    /// is reported as the target's problem and tried again after the next idle pass.
    fn retire_idle(&mut self, after: Duration, on_event: &mut dyn FnMut(DaemonEvent<'_>)) {
        match self.compactor.retire_idle(&self.journals, after) {
            Ok(retired) => {
                self.journals.retain(|j| !retired.iter().any(|p| p == j.path()));
                for journal in &retired {
                    on_event(DaemonEvent::Retired { journal });
                }
            }
            Err(e) => {
                self.reported.problem(&format!("target {}", self.compactor.target.display()), &e, false, on_event);
            }
        }
    }

    /// Every journal path of the sources as they are now, each once: a spool that
    /// cannot be listed is reported (once) and left out of this pass.
    fn list(&mut self, on_event: &mut dyn FnMut(DaemonEvent<'_>)) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        self.unlisted.clear();
        for spool in self.sources.spools() {
            let subject = format!("spool {}", spool.display());
            match spool_journals(spool) {
                Ok(found) => {
                    self.reported.resolved(&subject, on_event);
                    paths.extend(found);
                }
                Err(e) => {
                    self.reported.problem(&subject, &e, false, on_event);
                    self.unlisted.push(spool.clone());
                }
            }
        }
        paths.extend(self.sources.journals().iter().cloned());
        let mut seen = std::collections::BTreeSet::new();
        paths.retain(|p| seen.insert(p.clone()));
        paths
    }
}

impl Reported {
    /// Report `error` about `subject` unless it is what was last said about it.
    fn problem(&mut self, subject: &str, error: &Error, set_aside: bool, on_event: &mut dyn FnMut(DaemonEvent<'_>)) {
        let message = error.to_string();
        if self.0.get(subject) != Some(&message) {
            on_event(DaemonEvent::Problem { subject, error, set_aside });
            self.0.insert(subject.to_string(), message);
        }
    }

    /// Say that the problem about `subject` is over, if one was reported.
    fn resolved(&mut self, subject: &str, on_event: &mut dyn FnMut(DaemonEvent<'_>)) {
        if self.0.remove(subject).is_some() {
            on_event(DaemonEvent::Resolved { subject });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CompactorOptions, JournalOptions};
    use std::cell::Cell;

    /// A temporary folder with an initialised target `out.log` and its compactor, and
    /// the path of a spool beside it (created when `create_spool`).
    fn fixture(create_spool: bool) -> (tempfile::TempDir, PathBuf, PathBuf, Compactor) {
        let d = tempfile::tempdir().unwrap();
        let spool = d.path().join("spool");
        if create_spool {
            std::fs::create_dir(&spool).unwrap();
        }
        let target = d.path().join("out.log");
        let c = Compactor::new(&target, CompactorOptions::default()).unwrap();
        c.init().unwrap();
        (d, spool, target, c)
    }

    /// The daemon drains what is there, sets a junk journal aside (reported once, not
    /// once per pass), keeps draining the good one, and stops when asked.
    #[test]
    fn drains_sets_junk_aside_once_and_stops_when_asked() {
        let (_d, spool, target, c) = fixture(true);
        let good = Journal::open(spool.join("good.journal"), JournalOptions::default()).unwrap();
        good.append_batch(&[b"one".as_slice(), b"two"]).unwrap();
        std::fs::write(spool.join("junk.journal"), b"this is not an SQLite file, not even a little").unwrap();
        let passes = Cell::new(0u32);
        let committed = Cell::new(0u64);
        let mut problems = Vec::new();
        // Stop once both lines are committed and a few more passes saw the junk again.
        let stop = || {
            passes.set(passes.get() + 1);
            committed.get() >= 2 && passes.get() > 20
        };
        let opts = DaemonOptions { interval: Duration::from_millis(1), ..DaemonOptions::default() };
        let mut idle_after_commit = 0;
        let summary = c.run(&spool, &opts, &stop, &mut |e| match e {
            DaemonEvent::Committed(r) => committed.set(committed.get() + r.lines),
            DaemonEvent::Problem { subject, error, set_aside } => {
                problems.push((subject.to_string(), error.kind(), set_aside));
            }
            DaemonEvent::Idle if committed.get() >= 2 => idle_after_commit += 1,
            _ => {}
        });
        assert!(summary.stopped_by.is_none(), "{:?}", summary.stopped_by);
        assert_eq!((summary.lines, committed.get()), (2, 2));
        assert!(idle_after_commit > 0, "passes with nothing left to drain must say Idle");
        assert_eq!(std::fs::read(&target).unwrap(), b"one\ntwo\n");
        assert_eq!(problems.len(), 1, "the junk journal must be reported once: {problems:?}");
        assert!(problems[0].0.ends_with("junk.journal") && problems[0].2, "{problems:?}");
        assert_eq!(problems[0].1, ErrorKind::NotAJournal);
    }

    /// A transient problem retried every pass (a spool folder not there yet) is
    /// reported once, not once per pass, and its end once.
    #[test]
    fn a_retried_problem_is_reported_once_and_its_end_once() {
        let (_d, spool, _target, c) = fixture(false);
        let calls = Cell::new(0u32);
        let stop = || {
            calls.set(calls.get() + 1);
            if calls.get() == 40 {
                std::fs::create_dir(&spool).unwrap();
            }
            calls.get() > 80
        };
        let (mut problems, mut resolved) = (0, 0);
        let opts = DaemonOptions::default().interval(Duration::from_millis(1)).max_backoff(Duration::from_millis(1));
        let summary = c.run(&spool, &opts, &stop, &mut |e| match e {
            DaemonEvent::Problem { set_aside, .. } => {
                assert!(!set_aside);
                problems += 1;
            }
            DaemonEvent::Resolved { .. } => resolved += 1,
            _ => {}
        });
        assert!(summary.stopped_by.is_none(), "{:?}", summary.stopped_by);
        assert_eq!((problems, resolved), (1, 1));
    }

    /// Over a fixed set of journals: a missing one is set aside and reported once while
    /// the other drains, and is drained at the next pass once it appears — even when it
    /// appears while its problem is being reported (the stamp is taken before the try).
    #[test]
    fn a_fixed_set_drains_what_exists_and_picks_up_a_journal_that_appears_later() {
        let (d, spool, target, c) = fixture(true);
        let (present, later) = (d.path().join("present.journal"), spool.join("later.journal"));
        Journal::open(&present, JournalOptions::default()).unwrap().append(b"first").unwrap();
        let committed = Cell::new(0u64);
        let passes = Cell::new(0u32);
        // Passes, not time: a set-aside journal whose files changed is retried at the
        // next pass; unchanged, only after a minute (thousands of passes).
        let stop = || {
            passes.set(passes.get() + 1);
            committed.get() >= 2 || passes.get() > 200
        };
        let mut problems = Vec::new();
        let opts = DaemonOptions::default().interval(Duration::from_millis(1));
        let summary = c.run_journals(&[present.clone(), later.clone()], &opts, &stop, &mut |e| match e {
            DaemonEvent::Committed(r) => committed.set(committed.get() + r.lines),
            DaemonEvent::Problem { subject, error, set_aside } => {
                problems.push((subject.to_string(), error.kind(), set_aside));
                Journal::open(&later, JournalOptions::default()).unwrap().append(b"second").unwrap();
            }
            _ => {}
        });
        assert!(summary.stopped_by.is_none(), "{:?}", summary.stopped_by);
        assert_eq!(std::fs::read(&target).unwrap(), b"first\nsecond\n", "after {} passes", passes.get());
        assert_eq!(problems.len(), 1, "the missing journal must be reported once: {problems:?}");
        assert!(problems[0].0.ends_with("later.journal") && problems[0].2, "{problems:?}");
        assert_eq!(problems[0].1, ErrorKind::NotAJournal);
    }

    /// Drain until empty over several sources: two spools (one of them missing), a
    /// journal given by path (and the same journal again through its spool), more
    /// journals than may be open at once (so "empty" takes a whole cycle of windows)
    /// and a junk journal: every line lands once, the run stops by itself, and the
    /// summary lists what it could not drain.
    #[test]
    fn until_empty_drains_every_source_once_then_stops() {
        let d = tempfile::tempdir().unwrap();
        let (spool_a, spool_b, missing) = (d.path().join("a"), d.path().join("b"), d.path().join("not-yet"));
        std::fs::create_dir(&spool_a).unwrap();
        std::fs::create_dir(&spool_b).unwrap();
        let target = d.path().join("out.log");
        let c = Compactor::new(&target, CompactorOptions::default().max_open_journals(2)).unwrap();
        c.init().unwrap();
        let mut expected = Vec::new();
        for (spool, n) in [(&spool_a, 3), (&spool_b, 3)] {
            for i in 0..n {
                let name = format!("{}-{i}", spool.file_name().unwrap().to_string_lossy());
                let j = Journal::open(spool.join(format!("{name}.journal")), JournalOptions::default()).unwrap();
                j.append(name.as_bytes()).unwrap();
                expected.push(name);
            }
        }
        // caught-up journals first in the listing: the first window has nothing to drain
        for name in ["0-idle", "1-idle"] {
            Journal::open(spool_a.join(format!("{name}.journal")), JournalOptions::default()).unwrap();
        }
        let loose = d.path().join("loose.journal");
        Journal::open(&loose, JournalOptions::default()).unwrap().append(b"loose").unwrap();
        expected.push("loose".into());
        std::fs::write(spool_b.join("junk.journal"), b"not a journal").unwrap();
        let sources = JournalSources::new()
            .spool(&spool_a)
            .spool(&spool_b)
            .spool(&missing)
            .journal(&loose)
            .journal(spool_a.join("a-0.journal"));
        let opts = DaemonOptions::default().interval(Duration::from_millis(1)).until_empty(true);
        let summary = c.run_sources(&sources, &opts, &|| false, &mut |_| {});
        assert!(summary.stopped_by.is_none(), "{:?}", summary.stopped_by);
        let mut got: Vec<String> = std::fs::read_to_string(&target).unwrap().lines().map(str::to_string).collect();
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "every line of every source, once");
        assert_eq!(summary.lines, 7);
        assert_eq!(summary.set_aside, vec![spool_b.join("junk.journal"), missing]);
    }

    /// An error that needs a human stops the daemon with that error.
    #[test]
    fn an_error_that_needs_a_human_stops_it() {
        let (_d, spool, target, c) = fixture(true);
        let j = Journal::open(spool.join("a.journal"), JournalOptions::default()).unwrap();
        j.append(b"x").unwrap();
        // Committed bytes cut behind tributary's back: target_truncated needs a human.
        c.drain(&[j]).unwrap();
        std::fs::write(&target, b"").unwrap();
        let summary = c.run(&spool, &DaemonOptions::default(), &|| false, &mut |_| {});
        let e = summary.stopped_by.expect("the daemon must stop on a truncated target");
        assert_eq!(e.kind(), ErrorKind::TargetTruncated, "{e}");
    }
}
