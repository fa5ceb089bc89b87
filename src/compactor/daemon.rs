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
//! over), not once per round; at most [`Compactor::open_journal_limit`] journals are
//! open at once; a pass probes only journals that may have new lines and takes no
//! lock when none has (docs/design.md, "Which journals a daemon pass drains").

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound::{Excluded, Unbounded};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Compactor, DrainReport};
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{spool_journals, Journal, Probe};
use crate::os::sys::{EventKind, FolderEvents};
use crate::target::manifest::Manifest;

/// How long a set-aside journal whose files did not change waits to be tried again.
const RETRY_SET_ASIDE: Duration = Duration::from_secs(60);
/// The shortest pause after a transient error.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest sleep between two checks of the caller's `stop`.
const STOP_CHECK: Duration = Duration::from_millis(10);
/// The backstop: every known journal is probed at least this often, whatever the
/// change events said (docs/design.md, "Which journals a daemon pass drains").
const SWEEP_PERIOD: Duration = Duration::from_secs(600);
/// How often each spool is listed again although its watch reported nothing.
const RELIST_EVERY: Duration = Duration::from_secs(60);
/// A journal handle no pass used for this long is closed.
const IDLE_CLOSE: Duration = Duration::from_secs(30);

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
    /// A problem, said once until its kind changes or it is over. `subject` names
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
    /// A pass found nothing to drain: no journal had lines past its drained record
    /// (such a pass takes no lock), or its round committed nothing; the daemon pauses
    /// for the interval. Said after every such pass: for metrics and progress,
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

/// Inode, size and change time of a journal and its `-wal` (a writer's commits land
/// there).
type Stamp = [Option<(u64, u64, i64, i64)>; 2];

fn file_stamp(p: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let of = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.ino(), m.len(), m.ctime(), m.ctime_nsec()));
    let mut wal = p.as_os_str().to_owned();
    wal.push("-wal");
    [of(p), of(Path::new(&wal))]
}

/// The kind of problem reported about each subject, so each problem is said once: a
/// retried problem whose words change but not its kind (a target's sidecar folder
/// made, its lock file not yet, while `init` runs) is the same problem.
#[derive(Default)]
struct Reported(BTreeMap<String, crate::ErrorKind>);

/// A journal handle the daemon keeps open, and when a pass last used it.
struct Handle {
    journal: Journal,
    used: Instant,
}

/// Where the backstop sweep is: it marks every known journal again once per
/// [`SWEEP_PERIOD`], a slice per pass.
struct Sweep {
    at: Instant,
    /// Journals owed to the sweep, times nanoseconds (the remainder of the last slice).
    credit: u128,
    /// The last journal the sweep marked.
    cursor: Option<PathBuf>,
    /// Per journal, its files' stamp taken before the last probe that found it
    /// drained: the sweep does not mark a journal not open whose files still have
    /// that stamp (opening one costs ~1 ms; 10,000 journals swept every 10 minutes
    /// were most of an idle daemon's CPU).
    quiet: HashMap<PathBuf, Stamp>,
}

/// The daemon's state between passes (docs/design.md, "Which journals a daemon pass
/// drains").
struct Daemon<'a> {
    compactor: &'a Compactor,
    sources: &'a JournalSources,
    /// The caller's stop: also ends a wait for the target's lock (nothing is held or
    /// changed while waiting), so a stop is not delayed by a lock held elsewhere.
    stop: &'a dyn Fn() -> bool,
    /// Every journal path of the sources, as last listed (and told by events since).
    known: BTreeSet<PathBuf>,
    /// Journals that may hold lines past their own drained record: only a probe that
    /// found none clears the mark.
    dirty: BTreeSet<PathBuf>,
    /// The last journal a pass probed (the next starts after it, so none starves
    /// when more are dirty than may be open at once).
    probed_last: Option<PathBuf>,
    /// Open journals, at most [`Compactor::open_journal_limit`].
    open: BTreeMap<PathBuf, Handle>,
    /// The folders' change events; `None`: no change test, every journal is probed at
    /// every pass.
    events: Option<FolderEvents>,
    /// When the spools were last listed (`None`: list at the next pass).
    listed_at: Option<Instant>,
    sweep: Sweep,
    /// The target's id, once known (from a round, or the manifest read unlocked).
    target_id: Option<String>,
    /// The last round's committed length and lines (rotation), `None` before one ran.
    /// Not the manifest: the compactor keeps that for its next round, which takes
    /// it without a copy only when nobody else holds it.
    last_committed: Option<(u64, u64)>,
    aside: BTreeMap<PathBuf, SetAside>,
    /// Spool folders the last listing could not list.
    unlisted: Vec<PathBuf>,
    reported: Reported,
    rotation: usize,
    /// Passes in a row that left their round to the lock's holder (staging on): at
    /// [`DEFERRED_PASSES`] the next pass queues for the lock itself, so its records
    /// (and its stage file's reset) do not wait forever.
    deferred: u32,
    /// When automatic retirement last looked (`DaemonOptions::retire_idle_after`).
    retire_checked_at: Option<Instant>,
    /// Each journal's files as automatic retirement last looked at them, and since when
    /// (this daemon's monotonic clock) they have looked so: idle must hold on this
    /// clock too, not only by the files' modification times on the wall clock, which a
    /// step forward ages at once (docs/design.md lifecycle rule 5).
    unchanged_since: HashMap<PathBuf, (Stamp, Instant)>,
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
        // No change test when journals may be on a network filesystem: another host's
        // writes raise no event here.
        let events = if self.opts.journal.allow_network_fs { None } else { FolderEvents::new().ok() };
        let mut daemon = Daemon::new(self, sources, events, stop);
        let mut summary = DaemonSummary::default();
        let interval = opts.interval;
        let mut backoff = interval;
        let target_subject = format!("target {}", self.target.display());
        while !stop() {
            let mut pause = interval;
            match daemon.pass(on_event) {
                Ok(Pass { report: r, settled, unprobed }) => {
                    daemon.reported.resolved(&target_subject, on_event);
                    backoff = interval;
                    if r.lines > 0 {
                        summary.rounds += 1;
                        summary.lines += r.lines;
                        pause = Duration::ZERO;
                        on_event(DaemonEvent::Committed(&r));
                    } else {
                        if let Some(after) = opts.retire_idle_after {
                            daemon.retire_idle(after, on_event);
                        }
                        on_event(DaemonEvent::Idle);
                        if opts.until_empty && settled && !unprobed {
                            break;
                        }
                        if unprobed {
                            pause = Duration::ZERO; // more journals to probe than one pass opens
                        }
                    }
                }
                // A stop that ended the wait for the lock is not contention (any other
                // error is handled as always, one that needs a human too).
                Err(e) if stop() && e.kind() == ErrorKind::LockTimeout => {}
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

/// What one pass did.
struct Pass {
    report: DrainReport,
    /// Every journal probed this pass was drained (or a writer was mid-commit in it):
    /// nothing left to drain as of now.
    settled: bool,
    /// Journals left to probe because no more may be open at once: pass again at once.
    unprobed: bool,
}

/// The journal a changed entry belongs to: `x.journal` itself (written, created,
/// replaced, removed, renamed), or the `x.journal-wal` written or moved in. Other
/// entries carry no line: `-shm`, a tombstone, and a `-wal` created (empty; every open
/// of a journal without one creates it, the daemon's own included: marking those made
/// each probe of a closed journal mark it again).
fn journal_of(entry: &Path, kind: EventKind) -> Option<PathBuf> {
    let name = entry.file_name()?.as_encoded_bytes();
    if name.ends_with(b".journal") {
        return Some(entry.to_path_buf());
    }
    if name.ends_with(b".journal-wal") && matches!(kind, EventKind::Written | EventKind::MovedIn) {
        return Some(entry.with_file_name(std::ffi::OsStr::from_bytes(&name[..name.len() - 4])));
    }
    None
}

impl<'a> Daemon<'a> {
    fn new(
        compactor: &'a Compactor,
        sources: &'a JournalSources,
        events: Option<FolderEvents>,
        stop: &'a dyn Fn() -> bool,
    ) -> Daemon<'a> {
        Daemon {
            compactor,
            sources,
            stop,
            known: BTreeSet::new(),
            dirty: BTreeSet::new(),
            probed_last: None,
            open: BTreeMap::new(),
            events,
            listed_at: None,
            sweep: Sweep { at: Instant::now(), credit: 0, cursor: None, quiet: HashMap::new() },
            target_id: None,
            last_committed: None,
            aside: BTreeMap::new(),
            unlisted: Vec::new(),
            reported: Reported::default(),
            rotation: 0,
            deferred: 0,
            retire_checked_at: None,
            unchanged_since: HashMap::new(),
        }
    }
}

/// Most passes in a row a daemon leaves its round to whoever holds the lock, its lines
/// staged (docs/design.md "Staging"); then it queues for the lock.
const DEFERRED_PASSES: u32 = 4;

impl Daemon<'_> {
    /// One pass (docs/design.md, "Which journals a daemon pass drains"): read the
    /// change events, list the spools when due, probe the journals marked, then one
    /// round over the candidates — or none, without the lock, when there are none and
    /// no rotation is due. A journal that cannot be opened or that the round refuses is
    /// set aside (the round is retried without it).
    fn pass(&mut self, on_event: &mut dyn FnMut(DaemonEvent<'_>)) -> Result<Pass> {
        self.take_events();
        let relist = self.events.is_none()
            || !self.unlisted.is_empty()
            || self.listed_at.is_none_or(|t| t.elapsed() >= RELIST_EVERY);
        if relist {
            self.relist(on_event);
        }
        if self.events.is_none() {
            self.dirty.clone_from(&self.known);
        }
        self.sweep_slice();
        self.retry_set_aside();
        if self.target_id.is_none() {
            // Which target a drained record must name; unknown until the target exists.
            if let Ok(Some(m)) = Manifest::load(&self.compactor.sidecar) {
                self.target_id = Some(m.target_id);
            }
        }
        let (candidates, settled, unprobed) = self.probe_dirty(on_event);
        let rotation_due = self.last_committed.is_some_and(|(len, lines)| self.compactor.rotation_due_at(len, lines));
        // The first pass that knows a journal takes the lock whatever it found: the
        // target is checked (and a crashed round's tail repaired) at start.
        let first = self.last_committed.is_none() && !self.known.is_empty();
        let report = if candidates.is_empty() && !rotation_due && !first {
            DrainReport::default() // nothing to drain: no lock
        } else {
            self.round(&candidates, on_event)?
        };
        self.close_idle();
        Ok(Pass { settled: settled && report.lines == 0, unprobed, report })
    }

    /// Mark the journals the queued events name; every journal when events may have
    /// been lost (and list the spools again, which watches lost folders again).
    fn take_events(&mut self) {
        let Some(events) = self.events.as_mut() else { return };
        let mut entries = Vec::new();
        let complete = events.drain(&mut |entry, kind| entries.push((entry, kind)));
        for (entry, kind) in entries {
            let Some(j) = journal_of(&entry, kind) else { continue };
            let in_spool = j.parent().is_some_and(|f| self.sources.spools().iter().any(|s| s == f));
            // a journal given by path, as given (`x.journal` is `./x.journal` here)
            let given = self.sources.journals().iter().find(|g| {
                g.file_name() == j.file_name() && j.parent().is_some_and(|f| crate::os::fs::parent_dir(g) == f)
            });
            if let Some(j) = given.cloned().or(in_spool.then_some(j)) {
                self.known.insert(j.clone());
                self.dirty.insert(j);
            }
        }
        if !complete {
            self.dirty.extend(self.known.iter().cloned());
            self.listed_at = None;
        }
    }

    /// List the sources again (watching each folder first, so a journal created in
    /// between is in the listing or raises an event): journals not known before are
    /// marked, journals gone are forgotten.
    fn relist(&mut self, on_event: &mut dyn FnMut(DaemonEvent<'_>)) {
        if let Some(events) = self.events.as_mut() {
            let folders = self
                .sources
                .spools()
                .iter()
                .cloned()
                .chain(self.sources.journals().iter().map(|j| crate::os::fs::parent_dir(j)));
            for folder in folders {
                if events.watches(&folder) {
                    continue;
                }
                match events.watch(&folder) {
                    Ok(()) => {}
                    // not there yet: listing it fails too, and it is tried again each pass
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    // (the per-user watch limit): no change test at all, probe everything
                    Err(_) => {
                        self.events = None;
                        break;
                    }
                }
            }
        }
        let listed: BTreeSet<PathBuf> = self.list(on_event).into_iter().collect();
        for p in listed.difference(&self.known) {
            self.dirty.insert(p.clone());
        }
        // A spool that could not be listed keeps its journals known (a share remounting).
        let unlisted = &self.unlisted;
        self.known.retain(|p| listed.contains(p) || p.parent().is_some_and(|f| unlisted.iter().any(|u| u == f)));
        self.known.extend(listed);
        let known = &self.known;
        self.dirty.retain(|p| known.contains(p));
        self.open.retain(|p, _| known.contains(p));
        self.aside.retain(|p, _| known.contains(p));
        self.sweep.quiet.retain(|p, _| known.contains(p));
        self.listed_at = Some(Instant::now());
    }

    /// The backstop: mark the next slice of known journals, so every one is probed at
    /// least once per [`SWEEP_PERIOD`] whatever the events said.
    fn sweep_slice(&mut self) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.sweep.at).as_nanos();
        self.sweep.at = now;
        let period = SWEEP_PERIOD.as_nanos();
        self.sweep.credit = self.sweep.credit.saturating_add(elapsed.saturating_mul(self.known.len() as u128));
        let owed = usize::try_from(self.sweep.credit / period).unwrap_or(usize::MAX).min(self.known.len());
        self.sweep.credit %= period;
        if owed == 0 {
            return;
        }
        let slice: Vec<PathBuf> = match &self.sweep.cursor {
            Some(c) => self.known.range::<PathBuf, _>((Excluded(c), Unbounded)).chain(self.known.iter()),
            None => self.known.range::<PathBuf, _>(..).chain(self.known.iter()),
        }
        .take(owed)
        .cloned()
        .collect();
        self.sweep.cursor = slice.last().cloned();
        for p in slice {
            let unchanged =
                !self.open.contains_key(&p) && self.sweep.quiet.get(&p).is_some_and(|s| *s == file_stamp(&p));
            if !unchanged {
                self.dirty.insert(p);
            }
        }
    }

    /// Set-aside journals whose files changed, or that waited long enough, are marked
    /// to be tried again.
    fn retry_set_aside(&mut self) {
        let again: Vec<PathBuf> = self
            .aside
            .iter()
            .filter(|(p, s)| s.since.elapsed() >= RETRY_SET_ASIDE || file_stamp(p) != s.stamp)
            .map(|(p, _)| p.clone())
            .collect();
        for p in again {
            self.aside.remove(&p);
            self.dirty.insert(p);
        }
    }

    /// Probe the marked journals, starting after the one the last pass probed last,
    /// until as many candidates as may be open at once. Returns the candidates
    /// (their handles open), whether every probe found nothing to drain, and whether
    /// some marked journals were left for the next pass.
    fn probe_dirty(&mut self, on_event: &mut dyn FnMut(DaemonEvent<'_>)) -> (Vec<PathBuf>, bool, bool) {
        let limit = self.compactor.open_journal_limit();
        let order: Vec<PathBuf> = match &self.probed_last {
            Some(c) => self
                .dirty
                .range::<PathBuf, _>((Excluded(c), Unbounded))
                .chain(self.dirty.range(..=c.clone()))
                .cloned()
                .collect(),
            None => self.dirty.iter().cloned().collect(),
        };
        let mut candidates = Vec::new();
        let mut settled = true;
        for (probed, p) in order.into_iter().enumerate() {
            if candidates.len() >= limit {
                return (candidates, false, true);
            }
            // Read the queue while probing many: each open and close of a journal queues
            // events of its own (-wal and -shm created, removed), and a queue that
            // overflowed marks every journal again (with 10,000 journals, every pass).
            if probed % 256 == 255 {
                self.take_events();
            }
            self.probed_last = Some(p.clone());
            if self.aside.contains_key(&p) {
                self.dirty.remove(&p);
                continue;
            }
            self.sweep.quiet.remove(&p);
            match self.probe(&p, &candidates, on_event) {
                Some((Probe::Drained { target_id }, stamp)) => {
                    let foreign = target_id.is_some() && self.target_id.is_some() && target_id != self.target_id;
                    if foreign {
                        settled = false;
                        candidates.push(p); // the round says what is wrong with it
                    } else {
                        self.dirty.remove(&p);
                        self.sweep.quiet.insert(p, stamp);
                    }
                }
                Some((Probe::Undrained, _)) => {
                    settled = false;
                    candidates.push(p);
                }
                Some((Probe::Busy, _)) => candidates.push(p),
                None => {}
            }
        }
        (candidates, settled, false)
    }

    /// Probe one marked journal, opening it if needed (closing the least recently used
    /// handle that is not a candidate to make room). `None`, its mark cleared: it is
    /// gone from its spool, not ready (its writer is creating it: events mark it
    /// again), set aside, or no handle could be made room for (mark kept).
    /// With the probe, the journal's files' stamp taken after opening it and before
    /// probing (a commit after it changes the stamp; the open itself may create the
    /// `-wal`).
    fn probe(
        &mut self,
        p: &Path,
        candidates: &[PathBuf],
        on_event: &mut dyn FnMut(DaemonEvent<'_>),
    ) -> Option<(Probe, Stamp)> {
        if self.open.get(p).is_some_and(|h| !h.journal.is_in_place()) {
            self.open.remove(p); // its path names another file now: reopen by path
        }
        if !self.open.contains_key(p) {
            if self.gone_from_spool(p) {
                self.forget(p); // retired or removed
                return None;
            }
            while self.open.len() >= self.compactor.open_journal_limit() {
                let idle = self.open.iter().filter(|(q, _)| !candidates.contains(q)).min_by_key(|(_, h)| h.used);
                let q = idle.map(|(q, _)| q.clone())?;
                self.open.remove(&q);
            }
            let subject = format!("journal {}", p.display());
            // The files' stamp before trying: a change after it (even one made while the
            // problem is being reported) makes the next pass try again.
            let stamp = file_stamp(p);
            match self.compactor.open_journals(&[p.to_path_buf()]) {
                Ok(mut opened) => {
                    self.reported.resolved(&subject, on_event);
                    let Some(journal) = opened.pop() else {
                        self.dirty.remove(p); // not ready: its writer's first writes mark it
                        return None;
                    };
                    self.open.insert(p.to_path_buf(), Handle { journal, used: Instant::now() });
                }
                Err(e) => {
                    self.set_aside_or_forget(p, stamp, &e, on_event);
                    return None;
                }
            }
        }
        let stamp = file_stamp(p);
        let handle = self.open.get_mut(p)?;
        handle.used = Instant::now();
        match handle.journal.probe() {
            Ok(probe) => Some((probe, stamp)),
            Err(e) => {
                self.set_aside_or_forget(p, stamp, &e, on_event);
                None
            }
        }
    }

    /// [`set_aside`](Self::set_aside), unless the journal's name names no file now, or
    /// another file: retired (by `retire` or another daemon's `--retire-idle`) or
    /// replaced as this daemon looked at it, an ordinary event, not a problem. Gone: it
    /// is forgotten; replaced: its handle closed and the name marked, so the next pass
    /// opens the new journal by name.
    fn set_aside_or_forget(&mut self, p: &Path, stamp: Stamp, e: &Error, on_event: &mut dyn FnMut(DaemonEvent<'_>)) {
        if self.gone_from_spool(p) {
            self.forget(p);
        } else if e.kind() == ErrorKind::JournalGone && !crate::journal::is_orphaned_log(p) {
            self.open.remove(p);
            self.dirty.insert(p.to_path_buf());
        } else {
            self.set_aside(p, stamp, e, on_event);
        }
    }

    /// A spool's journal whose name names no file now (retired or removed); a journal
    /// given by path is never forgotten (its absence is reported), nor is one removed
    /// without its log (`journal_gone`, set aside and reported: the log may hold lines).
    fn gone_from_spool(&self, p: &Path) -> bool {
        let given = self.sources.journals().iter().any(|j| j == p);
        !given && crate::journal::left_the_spool(p)
    }

    /// Set a journal aside (closed, unmarked), reporting why once.
    fn set_aside(&mut self, p: &Path, stamp: Stamp, e: &Error, on_event: &mut dyn FnMut(DaemonEvent<'_>)) {
        self.open.remove(p);
        self.dirty.remove(p);
        self.aside.insert(p.to_path_buf(), SetAside { since: Instant::now(), stamp });
        self.reported.problem(&format!("journal {}", p.display()), e, true, on_event);
    }

    /// A journal gone from its spool.
    fn forget(&mut self, p: &Path) {
        self.unchanged_since.remove(p);
        self.sweep.quiet.remove(p);
        self.known.remove(p);
        self.dirty.remove(p);
        self.open.remove(p);
        self.aside.remove(p);
    }

    /// One round over the candidates (their handles are open); a journal the round
    /// refuses is set aside and the round retried without it. Every journal read frees
    /// its page cache afterwards.
    fn round(&mut self, candidates: &[PathBuf], on_event: &mut dyn FnMut(DaemonEvent<'_>)) -> Result<DrainReport> {
        let mut journals: Vec<Journal> =
            candidates.iter().filter_map(|p| self.open.remove(p)).map(|h| h.journal).collect();
        let may_defer = self.deferred < DEFERRED_PASSES;
        let outcome = loop {
            match self.compactor.round_or_defer(&journals, self.rotation, may_defer, self.stop) {
                Ok(None) => {
                    // staged; the lock's holder commits them (docs/design.md "Staging")
                    self.deferred += 1;
                    break Ok(DrainReport::default());
                }
                Ok(Some((r, manifest))) => {
                    self.deferred = 0;
                    self.rotation = self.rotation.wrapping_add(1);
                    self.target_id = Some(manifest.target_id.clone());
                    self.last_committed = Some((manifest.committed_len, manifest.committed_lines));
                    break Ok(r);
                }
                Err(e) => {
                    let Some(bad) = e.journal_path().map(Path::to_path_buf) else { break Err(e) };
                    let Some(i) = journals.iter().position(|j| j.path() == bad) else { break Err(e) };
                    journals.remove(i);
                    let stamp = file_stamp(&bad);
                    self.set_aside_or_forget(&bad, stamp, &e, on_event);
                }
            }
        };
        let now = Instant::now();
        for journal in journals {
            journal.release_memory();
            self.open.insert(journal.path().to_path_buf(), Handle { journal, used: now });
        }
        outcome
    }

    /// Close the handles no pass used for [`IDLE_CLOSE`].
    fn close_idle(&mut self) {
        self.open.retain(|_, h| h.used.elapsed() < IDLE_CLOSE);
    }
}

impl Daemon<'_> {
    /// Automatic retirement of the open journals that are drained and idle; a failure
    /// is reported as the target's problem and tried again after the next idle pass.
    fn retire_idle(&mut self, after: Duration, on_event: &mut dyn FnMut(DaemonEvent<'_>)) {
        // Not every empty pass: a look at every known journal costs opening it.
        let every = after.min(Duration::from_secs(60));
        if self.retire_checked_at.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.retire_checked_at = Some(Instant::now());
        // Journals not open are opened for the look, a batch at a time, within the
        // handle bound, and closed again.
        let paths: Vec<PathBuf> = self.known.iter().filter(|p| !self.aside.contains_key(*p)).cloned().collect();
        let batch = self.compactor.open_journal_limit().saturating_sub(self.open.len()).max(1);
        for chunk in paths.chunks(batch) {
            let mut journals = Vec::new();
            for p in chunk {
                if let Some(h) = self.open.remove(p) {
                    journals.push(h.journal);
                } else if let Ok(mut opened) = self.compactor.open_journals(std::slice::from_ref(p)) {
                    journals.extend(opened.pop());
                }
            }
            // A handle whose name was retired (another daemon's --retire-idle, a
            // `retire`) or replaced meanwhile is not this look's to retire: the next
            // pass opens the name again, or forgets it. Nor is one this daemon has
            // not yet watched unchanged for the idle time.
            let now = Instant::now();
            journals.retain(|j| {
                if !j.is_in_place() {
                    self.dirty.insert(j.path().to_path_buf());
                    return false;
                }
                let stamp = file_stamp(j.path());
                let seen = self.unchanged_since.entry(j.path().to_path_buf()).or_insert((stamp, now));
                if seen.0 != stamp {
                    *seen = (stamp, now);
                }
                now.duration_since(seen.1) >= after
            });
            match self.compactor.retire_idle(&journals, after) {
                Ok(retired) => {
                    drop(journals);
                    for journal in &retired {
                        self.forget(journal);
                        on_event(DaemonEvent::Retired { journal });
                    }
                }
                Err(e) => {
                    self.reported.problem(&format!("target {}", self.compactor.target.display()), &e, false, on_event);
                    return;
                }
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
    /// Report `error` about `subject` unless a problem of its kind is what was last
    /// said about it.
    fn problem(&mut self, subject: &str, error: &Error, set_aside: bool, on_event: &mut dyn FnMut(DaemonEvent<'_>)) {
        if self.0.get(subject) != Some(&error.kind()) {
            on_event(DaemonEvent::Problem { subject, error, set_aside });
            self.0.insert(subject.to_string(), error.kind());
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

    /// The backstop sweep marks a journal that is not open only if its files changed
    /// since the probe that found it drained: both quiet journals are left alone, the
    /// one a writer appended to (its event not read: what the sweep is for) is marked.
    #[test]
    fn the_sweep_passes_over_quiet_closed_journals_and_marks_a_changed_one() {
        let (_d, spool, _target, c) = fixture(true);
        let (a, b) = (spool.join("a.journal"), spool.join("b.journal"));
        for p in [&a, &b] {
            Journal::open(p, JournalOptions::default()).unwrap().append(b"line").unwrap();
        }
        c.drain_paths(&[a.clone(), b.clone()]).unwrap();
        let sources = JournalSources::new().spool(&spool);
        let mut daemon = Daemon::new(&c, &sources, None, &|| false);
        daemon.relist(&mut |_| {});
        let (candidates, settled, _) = daemon.probe_dirty(&mut |_| {});
        assert!(candidates.is_empty() && settled, "both were drained: {candidates:?}");
        daemon.open.clear(); // closed, as idle handles are
        let sweep_all = |daemon: &mut Daemon<'_>| {
            daemon.sweep.credit = SWEEP_PERIOD.as_nanos() * 2;
            daemon.sweep.cursor = None;
            daemon.sweep_slice();
            std::mem::take(&mut daemon.dirty)
        };
        assert!(sweep_all(&mut daemon).is_empty(), "the sweep marked journals whose files did not change");
        Journal::open(&b, JournalOptions::default()).unwrap().append(b"more").unwrap();
        assert_eq!(sweep_all(&mut daemon), BTreeSet::from([b.clone()]));
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

    /// A retried problem whose words change but not its kind is said once: `init`
    /// makes a target's sidecar folder, then its lock file, and a daemon retrying in
    /// between read "no sidecar folder", then "no lock file" — reported twice, a flaky
    /// `tests/daemon.rs` on a loaded machine. Another kind is said, and the end once.
    #[test]
    fn a_problem_whose_words_change_is_said_once_and_a_new_kind_again() {
        let mut reported = Reported::default();
        let (mut problems, mut resolved) = (0, 0);
        let mut count = |e: DaemonEvent<'_>| match e {
            DaemonEvent::Problem { .. } => problems += 1,
            DaemonEvent::Resolved { .. } => resolved += 1,
            _ => {}
        };
        let missing = |detail: &str| Error::TargetMissing { target: PathBuf::from("t"), detail: detail.into() };
        reported.problem("target t", &missing("it has no sidecar folder"), false, &mut count);
        reported.problem("target t", &missing("its sidecar has no lock file"), false, &mut count);
        reported.problem("target t", &Error::InvalidArgument("another kind".into()), false, &mut count);
        reported.resolved("target t", &mut count);
        reported.resolved("target t", &mut count);
        assert_eq!((problems, resolved), (2, 1));
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
        // Also when a stop is asked while the pass that meets it runs: the error is
        // not taken for a stop that ended a wait for the lock, and lost.
        let asked = std::cell::Cell::new(0);
        let stop = || {
            asked.set(asked.get() + 1);
            asked.get() > 1 // false for the loop's first check, true from the pass on
        };
        let summary = c.run(&spool, &DaemonOptions::default(), &stop, &mut |_| {});
        let e = summary.stopped_by.expect("an error that needs a human is returned, stop or not");
        assert_eq!(e.kind(), ErrorKind::TargetTruncated, "{e}");
    }
}
