//! The compactor: drains journals into the target under the target's lock.
//!
//! | file | owns | keeps |
//! |---|---|---|
//! | `mod.rs` | [`Compactor`], its options and reports, draining until caught up, retirement | a drain ends when every line the journals held at its start is committed |
//! | `round.rs` | one round, the protocol steps in the order they run; "lock lost" | orderings O3–O12 of docs/design.md; every change to the target under the lock is fenced |
//! | `writer.rs` | streaming a round's bytes to the target | every byte written is under a committed intent |
//! | `setup.rs` | the lock, step 1's manifest, upgrade, `init` | a drain never creates a target; upgrade and init resumable |
//! | `staging.rs` | staging: the stager's pass, step S's candidates, a stage file's reset (docs/design.md "Staging") | a staged copy is of rows durable in their journal; a staged batch is taken only where it follows the round's running watermark |
//! | `rotation.rs` | managed rotation and retention | an interrupted rotation is completed by the next round |
//! | `daemon.rs` | the daemon loop every front end runs ([`Compactor::run`]) | stops only when asked or on an error that needs a human; each problem reported once |
//!
//! Invariant: the target's first `committed_len` bytes (per the manifest) are exactly
//! the lines of every journal up to its watermark, each once, in per-journal seq order.
//! Bytes beyond `committed_len` are cut only under an intent committed before a
//! round's first byte. A journal's rows are deleted only after the manifest that
//! covers them was durably committed.

mod daemon;
mod rotation;
mod round;
mod setup;
mod staging;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

pub use daemon::{DaemonEvent, DaemonOptions, DaemonSummary, JournalSources};
#[doc(hidden)]
pub use staging::STAGING_VAR;

use crate::error::{Error, ErrorKind, Result};
use crate::journal::{Journal, JournalId, JournalOptions};
use crate::target::manifest::{Manifest, Watermark};
use crate::target::sidecar::Sidecar;

crate::options::options! {
    /// Options for a [`Compactor`].
    pub struct CompactorOptions {
        /// Most bytes one round writes (a single longer line is still written alone;
        /// a round that queued for another compactor's lock at most 4 MiB). Also the
        /// longest uncommitted tail a round will truncate.
        pub max_round_bytes: u64 = 64 << 20,
        /// Stop reading new lines into a round after this long (a round that queued
        /// for another compactor's lock: at most 100 ms).
        pub max_round_time: Duration = Duration::from_secs(2),
        /// How long to wait for the target's lock.
        pub lock_timeout: Duration = Duration::from_secs(30),
        /// How journals are opened for draining (busy timeout, network-fs override).
        /// Its `max_line_bytes` is the longest line any writer may append: a round's
        /// intent covers at least one such line (a longer one widens it).
        pub journal: JournalOptions = JournalOptions::default(),
        /// Managed rotation: start a new generation once the current one holds at least
        /// this many committed bytes (checked at the start of each round, so a
        /// generation can exceed it by one round). The old one becomes
        /// `<target>.<generation>`. `None`: no rotation by size.
        pub rotate_bytes: Option<u64> = None,
        /// Managed rotation by committed line count (either limit triggers it).
        pub rotate_lines: Option<u64> = None,
        /// Keep at most this many rotated generations (at least 1); older ones are
        /// deleted. `None` keeps them all.
        pub retain_generations: Option<u64> = None,
        /// Most journals a drain keeps open at once (each holds three file
        /// descriptors: the journal, its `-wal` and `-shm`), and never more than a
        /// quarter of the process's open-file limit allows
        /// ([`Compactor::open_journal_limit`]). More journals are drained in batches.
        pub max_open_journals: usize = 128,
        /// How long a retired journal's entry stays in the manifest, counted from its
        /// first line (docs/design.md "Journal lifecycle and watermark expiry"): then it
        /// is dropped and the horizon moves past that line, and a journal never drained
        /// whose first line is older than the horizon is refused until admitted
        /// ([`Compactor::admit`]). Shorter keeps the manifest smaller; longer lets a
        /// journal wait undrained longer (a host down, a clock behind) before that.
        pub watermark_expiry: Duration = Duration::from_secs(7 * 24 * 3600),
        /// Create the target and its sidecar if they do not exist (what `init` does).
        /// False: a drain into a target that was never initialised — or whose share is
        /// not mounted — is `target_missing`, creating nothing.
        pub create: bool = false,
    }
}

/// What [`Compactor::init`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InitReport {
    /// The target's id (32 hex digits).
    pub target_id: String,
    /// True when this call created the target's sidecar and first manifest.
    pub created: bool,
    /// Lines of a pre-existing target adopted as committed (when `created`).
    pub adopted_lines: u64,
    /// True when a version-1 target was upgraded to the current manifest format.
    pub upgraded: bool,
    /// True when the target file's new inode was accepted (a restored or copied target
    /// whose committed part matched).
    pub rebound: bool,
    /// The target's manifest format after this call: 2, or 3 (manifest deltas;
    /// docs/design.md "Manifest deltas, format version 3").
    pub manifest_format: u32,
    /// The format before, when this call switched the target's manifest format
    /// ([`Compactor::init_in_format`]).
    pub switched_from: Option<u32>,
}

/// What one journal contributed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalDrain {
    /// The journal's path, as given to the drain.
    pub path: PathBuf,
    /// The journal's id.
    pub journal_id: JournalId,
    /// Lines of this journal committed to the target by the drain.
    pub lines: u64,
    /// Bytes of those lines in the target (each line with its `\n`).
    pub bytes: u64,
    /// The journal's watermark in the target after the drain.
    pub last_seq: u64,
}

/// Whether a compactor commits manifest deltas ([`Compactor::committing_manifest_deltas`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestDeltas {
    /// The target's format decides (the default): deltas by `Policy` on a target whose
    /// current base is version 3, version-2 snapshots on a version-2 target.
    FollowTarget,
    /// Every commit writes the whole manifest (format version 2).
    Off,
    /// A delta where it is fewer blocks than the manifest, and the chain is short.
    Policy,
    /// A delta wherever one fits in the slot.
    Always,
}

/// The test seam's variable for compactors in child processes (the torture and
/// power-cut harnesses run the CLI): `off`, `policy` or `always` (unset: the target's
/// format decides). Like `TRIBUTARY_FAILPOINTS`, for tributary's own tests, not a
/// setting: a target's format is switched by `init --manifest-format`.
#[doc(hidden)]
pub const MANIFEST_DELTAS_VAR: &str = "TRIBUTARY_MANIFEST_DELTAS";

impl ManifestDeltas {
    /// From [`MANIFEST_DELTAS_VAR`]; `FollowTarget` when it is not set.
    fn from_env() -> ManifestDeltas {
        match std::env::var(MANIFEST_DELTAS_VAR).as_deref() {
            Err(_) | Ok("") => ManifestDeltas::FollowTarget,
            Ok("off") => ManifestDeltas::Off,
            Ok("policy") => ManifestDeltas::Policy,
            Ok("always") => ManifestDeltas::Always,
            Ok(other) => {
                // a misspelt value would make a test pass without taking the path
                eprintln!(
                    "tributary: {MANIFEST_DELTAS_VAR}=`{other}` is not off, policy or always; the target's format decides"
                );
                ManifestDeltas::FollowTarget
            }
        }
    }
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Rounds that committed something.
    pub rounds: u64,
    /// Lines committed to the target, all journals together.
    pub lines: u64,
    /// Bytes committed to the target (each line with its `\n`).
    pub bytes: u64,
    /// Bytes of an uncommitted tail (left by a drain that crashed or failed) that were truncated.
    pub repaired_tail_bytes: u64,
    /// Generations rotated out (managed rotation), including completed interrupted ones.
    pub rotations: u64,
    /// Per journal that contributed lines, in the order they were first drained.
    pub journals: Vec<JournalDrain>,
    /// The manifest epoch after the drain.
    pub epoch: u64,
    /// Time spent waiting for the target's lock (all rounds together).
    pub lock_wait: Duration,
    /// Time the rounds took, from asking for the lock to recording what was drained
    /// (all rounds together).
    pub elapsed: Duration,
}

impl DrainReport {
    /// Add another drain's report to this one (several batches or rounds as one).
    pub fn absorb(&mut self, round: DrainReport) {
        self.rounds += round.rounds;
        self.lines += round.lines;
        self.bytes += round.bytes;
        self.repaired_tail_bytes += round.repaired_tail_bytes;
        self.rotations += round.rotations;
        self.epoch = self.epoch.max(round.epoch);
        self.lock_wait += round.lock_wait;
        self.elapsed += round.elapsed;
        for j in round.journals {
            match self.journals.iter_mut().find(|x| x.journal_id == j.journal_id) {
                Some(x) => {
                    x.lines += j.lines;
                    x.bytes += j.bytes;
                    x.last_seq = x.last_seq.max(j.last_seq);
                }
                None => self.journals.push(j),
            }
        }
    }
}

/// What [`Compactor::retire`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetireReport {
    /// The drain that committed the journals' last lines.
    pub drain: DrainReport,
    /// The journals whose files were deleted.
    pub retired: Vec<PathBuf>,
    /// Paths given that name no file: nothing there to retire (a journal retired
    /// before leaves none), or a wrong path. The others were retired all the same;
    /// [`RetireReport::missing_error`] is what to tell a user about these.
    pub missing: Vec<PathBuf>,
}

impl RetireReport {
    /// The error to report for [`missing`](Self::missing) paths, if any: kind
    /// `not_a_journal`, naming them, saying that the other journals were retired.
    #[must_use]
    pub fn missing_error(&self) -> Option<Error> {
        let first = self.missing.first()?;
        let more = match self.missing.len() {
            1 => String::new(),
            n => format!(
                " (and {} more: {})",
                n - 1,
                self.missing[1..].iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        };
        Some(Error::NotAJournal {
            path: first.clone(),
            detail: format!(
                "no such file{more}, so there was nothing to retire there: a journal retired before (by `retire` or \
                 `compact --retire-idle`) leaves no file behind; if you meant another path, check it{}",
                match self.retired.len() {
                    0 => String::new(),
                    n => format!(". The other {n} journal(s) given were retired"),
                }
            ),
        })
    }
}

/// How many drain-then-delete attempts a retirement makes while writers keep appending.
const RETIRE_ATTEMPTS: usize = 20;

/// The most a contended round (it queued for the lock) takes, in bytes and in time
/// (or the options' bounds, if smaller): 8 hosts at full speed on `GlusterFS` drained
/// ~0.55 s per round under the 64 MiB / 2 s bounds, each host committing once every
/// 4–9 s (docs/design.md, "Drain protocol").
const CONTENDED_ROUND_BYTES: u64 = 4 << 20;
const CONTENDED_ROUND_TIME: Duration = Duration::from_millis(100);

/// The slots as last read or written, and the manifest in the current one.
type KeptManifest = (crate::target::lock::SlotsSeen, Arc<Manifest>);

/// Drains journals into one target. Cheap to create; holds no lock between calls.
#[derive(Debug, Clone)]
pub struct Compactor {
    target: PathBuf,
    sidecar: Sidecar,
    opts: CompactorOptions,
    /// Set once the target's mount passed the lock-safety check (mount options do not
    /// change under a running compactor; a daemon need not re-parse mountinfo each round),
    /// to whether the target's folder is on a network filesystem.
    target_on_network: std::sync::OnceLock<bool>,
    /// Step 1 reads the target's size on a helper thread while it reads the slots
    /// (`round::Compactor::lock_and_read`): `None` decides by the filesystem (on a
    /// network one, where each is a server round trip); tests force either way.
    read_target_early: Option<bool>,
    /// Commits as deltas (docs/design.md "Manifest deltas, format version 3"): as the
    /// target's format says unless a test overrides it; `Always` takes the delta path
    /// even for a one-block manifest.
    manifest_deltas: ManifestDeltas,
    /// The manifest epoch this compactor last committed and made durable itself (0:
    /// none); a catch-up on it needs no lock-file fdatasync first (O12).
    durable_epoch: Arc<AtomicU64>,
    /// Set once the version-1 stub was seen in place (an init or upgrade killed before
    /// writing it is finished by the next round).
    stub_checked: Arc<std::sync::OnceLock<()>>,
    /// The negative control of the multi-host tests (docs/multihost.md): read the
    /// slots through the client's cache and take the target's size from `fstat`, as
    /// tributary did before it was made safe on default mount caches. Never set
    /// otherwise.
    trust_client_caches: bool,
    /// Where this compactor keeps its place in the target lock's queue between
    /// attempts (fair handover, `target::lock`).
    lock_queue: crate::target::lock::LockQueue,
    /// The slots as this compactor last read or wrote them, with the manifest in the
    /// current one: while both slots' headers are still these, step 1 reuses it
    /// instead of reading and decoding up to 2 MiB (10,000 watermarks: most of a
    /// round's CPU). Any commit by anyone writes a slot, changing its header.
    /// The manifest is shared: a round's commit keeps it here without a copy, and the
    /// next round takes it back without one.
    manifest_seen: Arc<std::sync::Mutex<Option<KeptManifest>>>,
    /// Stage this host's lines before each round and commit every host's staged lines
    /// in it (docs/design.md "Staging"): off unless a test switches it on.
    staging: bool,
    /// This compactor's stage file, once its first pass made it.
    stager: Arc<std::sync::Mutex<Option<staging::Stager>>>,
    /// Step S's descriptors of stage files and where each is read from, kept between
    /// rounds.
    stage_fds: Arc<std::sync::Mutex<std::collections::HashMap<PathBuf, staging::KeptStageFile>>>,
    /// Set by another thread to end this compactor's waits for the lock and stop its
    /// one-shot drains between rounds ([`Compactor::stop_when`]).
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Compactor {
    /// A compactor for the target file at `target`; touches nothing (the first drain
    /// or [`Compactor::init`] does).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `max_round_bytes`, `rotate_bytes`,
    /// `rotate_lines` or `retain_generations` is 0, or `target` has no file name.
    pub fn new(target: impl AsRef<Path>, opts: CompactorOptions) -> Result<Compactor> {
        let target = target.as_ref().to_path_buf();
        if opts.max_round_bytes == 0 {
            return Err(Error::InvalidArgument("max_round_bytes must be at least 1".into()));
        }
        // 0 would rotate at every round that committed anything: a generation per round.
        if opts.rotate_bytes == Some(0) || opts.rotate_lines == Some(0) {
            return Err(Error::InvalidArgument(
                "rotate_bytes and rotate_lines must be at least 1 (0 would start a new generation at every round); \
                 leave them unset for no rotation"
                    .into(),
            ));
        }
        // 0 meant "keep none" here and in the CLI's --retain, and "keep them all" in
        // the C ABI and Go (an outside tester lost every rotated generation to
        // `--retain 0`): one meaning everywhere, unset.
        if opts.retain_generations == Some(0) {
            return Err(Error::InvalidArgument(
                "retain_generations (--retain) must be at least 1: 0 would delete every rotated generation as \
                 soon as it is rotated, before readers behind finish it; leave it unset to keep them all"
                    .into(),
            ));
        }
        if target.file_name().is_none() {
            return Err(Error::InvalidArgument(format!("target {} is not a file path", target.display())));
        }
        Ok(Compactor {
            sidecar: Sidecar::for_target(&target),
            target,
            opts,
            target_on_network: std::sync::OnceLock::new(),
            read_target_early: None,
            manifest_deltas: ManifestDeltas::from_env(),
            durable_epoch: Arc::default(),
            stub_checked: Arc::default(),
            trust_client_caches: false,
            lock_queue: crate::target::lock::LockQueue::default(),
            manifest_seen: Arc::default(),
            staging: staging::staging_from_env(),
            stager: Arc::default(),
            stage_fds: Arc::default(),
            stop: None,
        })
    }

    /// A compactor whose drains (and the drains of `retire`) stop waiting for the
    /// target's lock once another thread sets `flag`: the wait ends within ~10 ms with
    /// [`Error::LockTimeout`], as if the lock timeout had passed. What earlier rounds
    /// committed stays; a round in progress finishes (rounds are bounded:
    /// `max_round_ms`). For a caller that cancels (Go's `context`,
    /// `trib_drain_stoppable`); the daemon has its own stop. The commits that record a
    /// retirement after its files are deleted still wait (stopping there would leave
    /// the deleted journal's watermark in the manifest for good).
    #[must_use]
    pub fn stop_when(mut self, flag: Arc<std::sync::atomic::AtomicBool>) -> Compactor {
        self.stop = Some(flag);
        self
    }

    /// Whether [`stop_when`](Self::stop_when)'s flag is set.
    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|f| f.load(std::sync::atomic::Ordering::Acquire))
    }

    /// UNSAFE on shared mounts — the multi-host tests' negative control only: this
    /// compactor reads the manifest's slots through the client's cache and takes the
    /// target's size from `fstat` (the shape tributary had before it was safe on
    /// default NFS/GlusterFS caches), so that a test can show the damage that shape
    /// does under the same conditions. Lines can be lost or duplicated with it.
    #[doc(hidden)]
    #[must_use]
    pub fn trusting_client_caches_unsafely(mut self) -> Compactor {
        self.trust_client_caches = true;
        self
    }

    /// Tests only: read the target's size concurrently with the slots in step 1 (`true`)
    /// or after them (`false`) whatever the filesystem, so that both orders run on a
    /// local disk too. Either is correct; the concurrent one saves a network round trip.
    #[doc(hidden)]
    #[must_use]
    pub fn reading_the_target_early(mut self, early: bool) -> Compactor {
        self.read_target_early = Some(early);
        self
    }

    /// Test seam: override the target's manifest format for this compactor's commits
    /// (docs/design.md "Manifest deltas") — `Off` version-2 snapshots, `Policy` deltas
    /// where they save writes, `Always` wherever one fits. Users switch a target's
    /// format with [`Compactor::init_in_format`] instead.
    #[doc(hidden)]
    #[must_use]
    pub fn committing_manifest_deltas(mut self, deltas: ManifestDeltas) -> Compactor {
        self.manifest_deltas = deltas;
        self
    }

    /// Test seam, not yet a setting: stage this host's new lines on the share before
    /// each round, and commit every host's staged lines in it (docs/design.md
    /// "Staging: one round commits every host's lines").
    #[doc(hidden)]
    #[must_use]
    pub fn staging(mut self, on: bool) -> Compactor {
        self.staging = on;
        self
    }

    /// The target path this compactor drains into.
    #[must_use]
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The options this compactor was made with.
    #[must_use]
    pub fn options(&self) -> &CompactorOptions {
        &self.opts
    }

    /// Most journals this compactor opens at once: [`CompactorOptions::max_open_journals`],
    /// and at most a quarter of this process's open-file limit (`RLIMIT_NOFILE`, read
    /// now) at three descriptors per journal; at least 1.
    #[must_use]
    pub fn open_journal_limit(&self) -> usize {
        let by_fds =
            crate::os::sys::nofile_limit().map_or(usize::MAX, |n| usize::try_from(n / 4 / 3).unwrap_or(usize::MAX));
        self.opts.max_open_journals.min(by_fds).max(1)
    }

    /// A round's bounds (bytes, time): the options', or, for a round that queued for
    /// the lock (another compactor held it), at most [`CONTENDED_ROUND_BYTES`] and
    /// [`CONTENDED_ROUND_TIME`], so that every host waiting gets its turn soon
    /// (docs/design.md, "Drain protocol").
    pub(super) fn round_bounds(&self, contended: bool) -> (u64, Duration) {
        let (bytes, time) = (self.opts.max_round_bytes, self.opts.max_round_time);
        if contended {
            (bytes.min(CONTENDED_ROUND_BYTES), time.min(CONTENDED_ROUND_TIME))
        } else {
            (bytes, time)
        }
    }

    /// The longest uncommitted tail one round can leave behind.
    fn max_tail(&self) -> u64 {
        self.opts.max_round_bytes.max(self.opts.journal.max_line_bytes as u64 + 1)
    }

    /// Open journals by path with this compactor's journal options. A file whose
    /// writer has not finished creating its journal (empty: no lines yet) is left out,
    /// not an error: there is nothing in it to drain.
    ///
    /// # Errors
    /// The first error of [`Journal::open_existing`] on any of them (no journals are
    /// returned then).
    pub fn open_journals(&self, paths: &[PathBuf]) -> Result<Vec<Journal>> {
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            match Journal::open_existing(p, self.opts.journal.clone()) {
                Ok(j) => out.push(j),
                Err(e) if e.is_journal_not_ready() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Drain the given journals by path until every line they held when the call
    /// started is committed (several bounded rounds, the lock released between them),
    /// at most [`Compactor::open_journal_limit`] open at once.
    ///
    /// # Errors
    /// As [`Compactor::open_journals`] and [`Compactor::drain`]; batches drained before
    /// the error stay committed.
    pub fn drain_paths(&self, paths: &[PathBuf]) -> Result<DrainReport> {
        // At most open_journal_limit open at once (issue 13 item 3: 400 journals under
        // `ulimit -n 1024` drained nothing; issue 16: nor under `ulimit -n 256`).
        let mut report = DrainReport::default();
        for batch in paths.chunks(self.open_journal_limit()) {
            let journals = self.open_journals(batch)?;
            report.absorb(self.drain(&journals)?);
        }
        if paths.is_empty() {
            report = self.drain(&[])?;
        }
        Ok(report)
    }

    /// Drain every `*.journal` in `spool` (see [`Compactor::drain_paths`]); a file whose
    /// writer is still creating its journal is skipped (it is drained next time). A
    /// file that cannot be drained (junk, a foreign or restored journal, one this
    /// process may not write) does not keep the others from draining: they are
    /// drained first, then the first such file's error is returned.
    ///
    /// # Errors
    /// [`Error::Io`] when the spool cannot be listed; the first error about one file
    /// of the spool (its message names it) once every other journal was drained;
    /// otherwise as [`Compactor::drain_paths`] (an error about the target stops at
    /// once).
    pub fn drain_spool(&self, spool: &Path) -> Result<DrainReport> {
        let mut first_refused = None;
        let report = self.drain_spool_observed(spool, &mut |_| {}, &mut |e| {
            first_refused.get_or_insert(e);
        })?;
        first_refused.map_or(Ok(report), Err)
    }

    /// [`drain_spool`](Self::drain_spool), telling `on_round` what each round did and
    /// `on_refused` each journal left alone (with why) instead of returning its error.
    ///
    /// # Errors
    /// [`Error::Io`] when the spool cannot be listed; an error that is not about one
    /// journal of the spool (the target's, the lock's), at once.
    pub fn drain_spool_observed(
        &self,
        spool: &Path,
        on_round: &mut dyn FnMut(&DrainReport),
        on_refused: &mut dyn FnMut(Error),
    ) -> Result<DrainReport> {
        let paths = crate::journal::spool_journals(spool)?;
        // Every round counts, those before a refusal too.
        let mut report = DrainReport::default();
        let mut on_round = |r: &DrainReport| {
            report.absorb(r.clone());
            on_round(r);
        };
        for batch in paths.chunks(self.open_journal_limit()) {
            let mut journals = Vec::with_capacity(batch.len());
            for p in batch {
                // Every error opening one file is about that file (junk, a journal this
                // process may not write, a full disk under it, the file limit): its
                // message names it.
                match Journal::open_existing(p, self.opts.journal.clone()) {
                    Ok(j) => journals.push(j),
                    Err(e) if e.is_journal_not_ready() => {}
                    // retired (or removed) since the spool was listed: not in it now (an
                    // outside tester's drain beside `retire` exited 1 for it); one removed
                    // without its log is a problem, named
                    Err(_) if crate::journal::left_the_spool(p) => {}
                    Err(e) => on_refused(e),
                }
            }
            // A round refusing one journal commits nothing: leave that one out and
            // drain the rest again (what earlier rounds committed stays).
            loop {
                match self.drain_observed(&journals, &mut on_round) {
                    Ok(_) => break,
                    Err(e) => {
                        let Some(at) = e.journal_path().and_then(|p| journals.iter().position(|j| j.path() == p))
                        else {
                            return Err(e);
                        };
                        journals.remove(at);
                        on_refused(e);
                    }
                }
            }
        }
        if paths.is_empty() {
            self.drain_observed(&[], &mut on_round)?;
        }
        Ok(report)
    }

    /// Retire journals, the supported way to remove one (issue 12 item 9): drain each
    /// into this target until empty, then delete its files while holding its `SQLite`
    /// write lock, once every line it ever held is committed here. A writer that still
    /// has it open gets `journal_gone` on its next append (nothing stored, nothing
    /// lost); a writer that opens the path later starts a new journal. A journal that
    /// keeps receiving lines is refused after a few attempts: stop its writers first.
    ///
    /// A path that names no file is not an error here: it is listed in
    /// [`RetireReport::missing`] and the others are retired (a journal retired before
    /// leaves no file; the CLI and the C ABI report such paths as `not_a_journal` after
    /// retiring the rest).
    ///
    /// # Errors
    /// As [`Compactor::drain_paths`]; [`Error::InvalidArgument`] when a journal kept
    /// receiving lines through every attempt (what was drained stays committed; that
    /// journal is not deleted); [`Error::Io`] or [`Error::Sqlite`] when deleting a
    /// journal's files fails, [`Error::JournalGone`] when they were replaced meanwhile.
    pub fn retire(&self, paths: &[PathBuf]) -> Result<RetireReport> {
        self.retire_with(paths, false)
    }

    /// [`retire`](Self::retire), forgetting the idempotency keys and processed cursors
    /// the journals hold (`tributary retire --forget-keys`): for when no writer will
    /// resend with those keys and no processor resume from those cursors.
    ///
    /// # Errors
    /// As [`retire`](Self::retire), without the refusal of journals holding keys or
    /// cursors.
    pub fn retire_forgetting_keys(&self, paths: &[PathBuf]) -> Result<RetireReport> {
        self.retire_with(paths, true)
    }

    fn retire_with(&self, paths: &[PathBuf], forget_keys: bool) -> Result<RetireReport> {
        // A journal removed without its log is not "nothing to retire" (that said its
        // lines were safe; an outside tester): refused as every open refuses it.
        if let Some(orphan) = paths.iter().find(|p| crate::journal::is_orphaned_log(p)) {
            return Err(crate::journal::orphaned_log(orphan));
        }
        let mut report = RetireReport::default();
        let (missing, present): (Vec<PathBuf>, Vec<PathBuf>) = paths
            .iter()
            .cloned()
            .partition(|p| matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound));
        report.missing = missing;
        if present.is_empty() {
            return Ok(report);
        }
        let mut pending = self.open_journals(&present)?;
        if !forget_keys {
            for j in &pending {
                // before the drain too: refused at once, not after draining it
                if let Some(held) = j.retirement_would_forget(self.opts.journal.key_retention)? {
                    return Err(j.retirement_refused(&held));
                }
            }
        }
        for _ in 0..RETIRE_ATTEMPTS {
            report.drain.absorb(self.drain(&pending)?);
            let manifest = self.load_manifest()?;
            let mut still = Vec::new();
            let keep_keys = (!forget_keys).then_some(self.opts.journal.key_retention);
            let deleted = Self::delete_drained(pending, &manifest, keep_keys, &mut still)?;
            report.retired.extend(deleted.iter().map(|(path, _, _)| path.clone()));
            self.mark_retired(&deleted)?;
            pending = still;
            if pending.is_empty() {
                return Ok(report);
            }
        }
        Err(Error::InvalidArgument(format!(
            "journal {} kept receiving lines during {RETIRE_ATTEMPTS} drain-and-retire attempts: stop its writers, \
             then retire it (every line it held so far is committed)",
            pending[0].path().display()
        )))
    }

    /// The automatic half of retirement (docs/design.md "Journal lifecycle and watermark
    /// expiry", rule 5): retire each of `journals` that the target knows, that is
    /// drained to its last line, whose file and `-wal` were not modified for
    /// `idle_after` (so idleness counts from its last drain), and that holds no
    /// idempotency key within its retention and no processed cursor (rule 6). Returns the paths
    /// retired; their handles are dead.
    ///
    /// # Errors
    /// As [`Compactor::retire`]'s deletion and commit.
    pub fn retire_idle(&self, journals: &[Journal], idle_after: Duration) -> Result<Vec<PathBuf>> {
        let Some(manifest) = Manifest::load(&self.sidecar)? else { return Ok(Vec::new()) };
        let now = std::time::SystemTime::now();
        let idle = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age >= idle_after))
        };
        let mut candidates = Vec::new();
        for j in journals {
            let Some(w) = manifest.watermarks.get(&j.id()) else { continue };
            let mut wal = j.path().as_os_str().to_owned();
            wal.push("-wal");
            // (keys and cursors: checked at the deletion, under the write lock)
            if j.seq_ceiling()? == w.last_seq && idle(j.path()) && idle(Path::new(&wal)) {
                candidates.push(j);
            }
        }
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        // O12, as for an explicit retirement: nothing is deleted on the word of a
        // manifest a power cut could take back (another holder's slot write, not yet
        // made durable).
        self.sync_manifest()?;
        let mut still = Vec::new();
        let keep_keys = Some(self.opts.journal.key_retention);
        let deleted = Self::delete_drained_skipping_gone(candidates, &manifest, keep_keys, &mut still)?;
        self.mark_retired(&deleted)?;
        Ok(deleted.into_iter().map(|(path, _, _)| path).collect())
    }

    /// Admit journals that rule 2(c) of the lifecycle refused but that an operator
    /// knows are new (their lines are not in the target): each gets a watermark at seq
    /// 0, so it is known and drained as any journal. Journals already known are left
    /// as they are. Returns how many were admitted.
    ///
    /// # Errors
    /// [`Error::JournalRestored`] for a journal retired from this target and
    /// [`Error::JournalForeign`] for one that records a drain into this target it does
    /// not know (both are copies for certain; nothing is admitted); otherwise as a
    /// round's lock and commit.
    pub fn admit(&self, paths: &[PathBuf]) -> Result<usize> {
        let journals = self.open_journals(paths)?;
        let lock = self.lock(false)?;
        let (m, _) = self.current_manifest(&lock, false)?;
        let mut next = m.clone();
        for j in &journals {
            let id = j.id();
            if m.watermarks.contains_key(&id) {
                continue;
            }
            if m.retired.contains_key(&id) {
                return Err(Error::JournalRestored {
                    journal: j.path().to_path_buf(),
                    journal_id: id.to_hex(),
                    detail: "it was retired from this target: this file is a copy, and is not admitted".into(),
                });
            }
            if let Some(rec) = j.drained_record()? {
                let detail = if rec.target_id == m.target_id {
                    format!(
                        "it records being drained up to seq {} into this target, which does not know it: it is a \
                         copy of a journal whose watermark is gone (its lines are in the target: remove this \
                         copy), and is not admitted",
                        rec.seq
                    )
                } else {
                    // Admitting it would only leave a watermark no drain can use.
                    format!(
                        "it belongs to another target: it records being drained up to seq {} into target {}, \
                         but this target is {}, and is not admitted. Drain it into that target",
                        rec.seq, rec.target_id, m.target_id
                    )
                };
                return Err(Error::JournalForeign { journal: j.path().to_path_buf(), journal_id: id.to_hex(), detail });
            }
            next.watermarks.insert(id, Watermark { journal_id: id, last_seq: 0, crc: 0, chain: 0, anchor: 0 });
        }
        let admitted = next.watermarks.len() - m.watermarks.len();
        if admitted > 0 {
            next.epoch += 1;
            self.commit(&lock, &next, Some(&m), round::CommitKind::Other)?;
        }
        Ok(admitted)
    }

    /// The manifest as committed now, lock-free, made durable (O12: nothing is deleted
    /// on the word of a manifest a power cut could take back).
    fn load_manifest(&self) -> Result<Manifest> {
        let manifest = Manifest::load(&self.sidecar)?.ok_or_else(|| {
            Error::InvalidArgument(format!("target {} has no manifest after a drain", self.target.display()))
        })?;
        self.sync_manifest()?;
        Ok(manifest)
    }

    /// Delete each journal drained to its watermark in `manifest` (under its write
    /// lock); the others go to `still`. Returns each deleted journal's path, id and
    /// first-line stamp (read before the deletion).
    fn delete_drained<'a, J: std::borrow::Borrow<Journal> + 'a>(
        journals: Vec<J>,
        manifest: &Manifest,
        keep_keys: Option<Duration>,
        still: &mut Vec<J>,
    ) -> Result<Vec<(PathBuf, JournalId, Option<u64>)>> {
        let mut deleted = Vec::new();
        for j in journals {
            let journal = j.borrow();
            let watermark = manifest.watermarks.get(&journal.id()).map_or(0, |w| w.last_seq);
            let stamp = journal.first_line_ms()?;
            let (path, id) = (journal.path().to_path_buf(), journal.id());
            crate::failpoint::hit(crate::failpoint::Point::RetireBeforeDelete);
            if journal.delete_if_drained(watermark, keep_keys)? {
                deleted.push((path, id, stamp));
            } else {
                still.push(j);
            }
        }
        Ok(deleted)
    }

    /// [`delete_drained`](Self::delete_drained), one journal at a time, for automatic
    /// retirement: a journal whose name was retired or replaced by another process
    /// since it was looked at (`journal_gone`: two daemons with `--retire-idle` on one
    /// spool) is left out, not an error; its name is looked at again next time.
    /// A journal that took keys or cursors since it was looked at (the check under its
    /// write lock, `invalid_argument`) is left out the same way.
    fn delete_drained_skipping_gone<'a>(
        journals: Vec<&'a Journal>,
        manifest: &Manifest,
        keep_keys: Option<Duration>,
        still: &mut Vec<&'a Journal>,
    ) -> Result<Vec<(PathBuf, JournalId, Option<u64>)>> {
        let mut deleted = Vec::new();
        for j in journals {
            match Self::delete_drained(vec![j], manifest, keep_keys, still) {
                Ok(d) => deleted.extend(d),
                Err(e) if matches!(e.kind(), ErrorKind::JournalGone | ErrorKind::InvalidArgument) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    /// Rule 1 of the lifecycle, after the files are gone: one commit turning each
    /// deleted journal's watermark into a `retired` entry (and expiring what is due).
    fn mark_retired(&self, deleted: &[(PathBuf, JournalId, Option<u64>)]) -> Result<()> {
        if deleted.is_empty() {
            return Ok(());
        }
        let lock = self.lock(false)?;
        let (m, _) = self.current_manifest(&lock, false)?;
        let mut next = m.clone();
        for (_, id, stamp) in deleted {
            next.retire(*id, *stamp);
        }
        self.expire(&mut next);
        if next != m {
            next.epoch += 1;
            self.commit(&lock, &next, Some(&m), round::CommitKind::Other)?;
        }
        Ok(())
    }

    /// Rule 3 of the lifecycle on a manifest about to be committed.
    fn expire(&self, m: &mut Manifest) {
        let expiry_ms = u64::try_from(self.opts.watermark_expiry.as_millis()).unwrap_or(u64::MAX);
        m.expire_retired(crate::os::clock::wall_ms(), expiry_ms);
    }

    /// Drain until every line the journals held at the start is committed.
    ///
    /// # Errors
    /// Rounds committed before an error stay committed; a failing round commits
    /// nothing. The one error of a round:
    /// - [`Error::TargetMissing`]: no target at the path (never initialised, share not
    ///   mounted) and [`CompactorOptions::create`] is off;
    /// - [`Error::LockTimeout`]: another compactor held the lock past `lock_timeout`;
    /// - [`Error::LockLost`]: the lock was lost during the round;
    /// - [`Error::CorruptManifest`], [`Error::TargetTruncated`],
    ///   [`Error::UnexpectedTail`], [`Error::TornTarget`]: the target or its manifest is
    ///   not as committed (see [`ErrorKind::needs_a_human`](crate::ErrorKind));
    /// - [`Error::JournalRestored`], [`Error::JournalForeign`],
    ///   [`Error::CorruptJournalRow`]: one journal cannot be drained
    ///   ([`Error::journal_path`] names it);
    /// - [`Error::UnsafeFilesystem`]: the target's mount has host-local locks, or its
    ///   sidecar folder is a symlink or world-writable;
    /// - [`Error::InvalidArgument`]: a journal was given twice or is used in a process
    ///   forked from the one that opened it, the target path is a symlink or a folder,
    ///   or a rotation's file name is taken;
    /// - [`Error::Io`], [`Error::Sqlite`]: reading, writing or syncing failed.
    pub fn drain(&self, journals: &[Journal]) -> Result<DrainReport> {
        self.drain_observed(journals, &mut |_| {})
    }

    /// [`drain`](Self::drain), telling `on_round` what each round did as it ends (for
    /// progress on a terminal): the same rounds, the same stopping rule.
    ///
    /// # Errors
    /// As [`Compactor::drain`].
    pub fn drain_observed(&self, journals: &[Journal], on_round: &mut dyn FnMut(&DrainReport)) -> Result<DrainReport> {
        let goals: Vec<u64> = journals.iter().map(Journal::seq_ceiling).collect::<Result<_>>()?;
        let mut report = DrainReport::default();
        let mut start = 0;
        loop {
            let (round, manifest) = self.round(journals, start)?;
            let moved = round.lines;
            on_round(&round);
            report.absorb(round);
            start += 1;
            let done = journals
                .iter()
                .zip(&goals)
                .all(|(j, goal)| manifest.watermarks.get(&j.id()).map_or(0, |w| w.last_seq) >= *goal);
            if done || moved == 0 {
                return Ok(report);
            }
        }
    }

    /// One bounded round: lock, repair, read, write, fsync, commit, unlock, record.
    /// `rotation` picks which journal goes first, so no journal starves.
    ///
    /// # Errors
    /// As [`Compactor::drain`]; a failing round commits nothing.
    pub fn drain_round(&self, journals: &[Journal], rotation: usize) -> Result<DrainReport> {
        self.round(journals, rotation).map(|(r, _)| r)
    }

    /// The error for a target that is not there to drain into.
    fn missing(&self, detail: String) -> Error {
        Error::TargetMissing { target: self.target.clone(), detail }
    }
}
