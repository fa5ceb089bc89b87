//! The compactor: drains journals into the target under the target's lock, following
//! DESIGN.md's 7-step protocol.
//!
//! Invariant: the target's first `committed_len` bytes (per the manifest) are exactly
//! the lines of every journal up to its watermark, each once, in per-journal seq order;
//! bytes beyond `committed_len` are an uncommitted tail that the next round truncates
//! (if it is no longer than one round can write) before writing anything. A journal's
//! rows are deleted only after the manifest that covers them was durably committed.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::journal::{Journal, JournalId, JournalOptions, Taken, DEFAULT_MAX_LINE_BYTES};
use crate::lock::TargetLock;
use crate::manifest::{generation_path, Intent, Manifest, ManifestFile, RotatedGeneration, Sidecar, Watermark};
use crate::slots::{self, LOCK_FILE_BYTES};
use crate::{failpoint, fault, fscheck, sys};

/// Bytes written between two epoch checks while writing a round's batch.
const WRITE_CHUNK_BYTES: usize = 8 << 20;
/// Slices at least this long are written directly instead of through the buffer.
const DIRECT_WRITE_BYTES: usize = 256 << 10;
/// Start the device writing every this many bytes, so the round's fdatasync overlaps
/// with reading the journals instead of following it.
const WRITEBACK_BYTES: u64 = 4 << 20;

/// Options for a [`Compactor`].
#[derive(Debug, Clone)]
pub struct CompactorOptions {
    /// Most bytes one round writes (default 64 MiB; a single longer line is still
    /// written alone). Also the longest uncommitted tail a round will truncate.
    pub max_round_bytes: u64,
    /// Stop reading new lines into a round after this long (default 2 s).
    pub max_round_time: Duration,
    /// How long to wait for the target's lock (default 30 s).
    pub lock_timeout: Duration,
    /// The longest line any writer may append (default 1 MiB); bounds a round too.
    pub max_line_bytes: usize,
    /// How journals are opened for draining (busy timeout, network-fs override).
    pub journal: JournalOptions,
    /// Managed rotation: start a new generation once the current one holds at least
    /// this many committed bytes (checked at the start of each round, so a generation
    /// can exceed it by one round). The old one becomes `<target>.<generation>`.
    pub rotate_bytes: Option<u64>,
    /// Managed rotation by committed line count (either limit triggers it).
    pub rotate_lines: Option<u64>,
    /// Keep at most this many rotated generations; older ones are deleted. `None`
    /// keeps them all.
    pub retain_generations: Option<u64>,
    /// Most journals a drain keeps open at once (each holds three file descriptors:
    /// the journal, its `-wal` and `-shm`). More journals are drained in batches.
    /// Default 128.
    pub max_open_journals: usize,
    /// Create the target and its sidecar if they do not exist (what `init` does).
    /// Default false: a drain into a target that was never initialised — or whose
    /// share is not mounted — is `target_missing`, creating nothing.
    pub create: bool,
}

impl Default for CompactorOptions {
    fn default() -> Self {
        CompactorOptions {
            max_round_bytes: 64 << 20,
            max_round_time: Duration::from_secs(2),
            lock_timeout: Duration::from_secs(30),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            journal: JournalOptions::default(),
            rotate_bytes: None,
            rotate_lines: None,
            retain_generations: None,
            max_open_journals: 128,
            create: false,
        }
    }
}

/// What [`Compactor::init`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// Which commit of a round (for the failpoints a test can kill it at).
#[derive(Clone, Copy)]
enum CommitKind {
    /// Step 5: the round's lines become committed.
    Final,
    /// The fence and intent before a round's first byte (steps 3 and 4).
    Intent,
    /// A new target's first manifest (`init`).
    First,
    /// A rotation's, an accepted inode.
    Other,
}

/// Where step 1's manifest came from.
enum Origin {
    Existing,
    Upgraded,
    Created { adopted: u64 },
}

/// What one journal contributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalDrain {
    pub path: PathBuf,
    pub journal_id: JournalId,
    pub lines: u64,
    pub bytes: u64,
    /// The journal's watermark in the target after the drain.
    pub last_seq: u64,
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Rounds that committed something.
    pub rounds: u64,
    pub lines: u64,
    pub bytes: u64,
    /// Bytes of an uncommitted tail (left by a crashed drain) that were truncated.
    pub repaired_tail_bytes: u64,
    /// Generations rotated out (managed rotation), including completed interrupted ones.
    pub rotations: u64,
    pub journals: Vec<JournalDrain>,
    /// The manifest epoch after the drain.
    pub epoch: u64,
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
pub struct RetireReport {
    /// The drain that committed the journals' last lines.
    pub drain: DrainReport,
    /// The journals whose files were deleted.
    pub retired: Vec<PathBuf>,
}

/// How many drain-then-delete attempts a retirement makes while writers keep appending.
const RETIRE_ATTEMPTS: usize = 20;

/// Drains journals into one target. Cheap to create; holds no lock between calls.
#[derive(Debug, Clone)]
pub struct Compactor {
    target: PathBuf,
    sidecar: Sidecar,
    opts: CompactorOptions,
    /// Set once the target's mount passed the lock-safety check (mount options do not
    /// change under a running compactor; a daemon need not re-parse mountinfo each round).
    mount_checked: std::sync::OnceLock<()>,
    /// The manifest epoch this compactor last committed and made durable itself (0:
    /// none); a catch-up on it needs no lock-file fdatasync first (O12).
    durable_epoch: Arc<AtomicU64>,
    /// Set once the version-1 stub was seen in place (an init or upgrade killed before
    /// writing it is finished by the next round).
    stub_checked: Arc<std::sync::OnceLock<()>>,
}

impl Compactor {
    pub fn new(target: impl AsRef<Path>, opts: CompactorOptions) -> Result<Compactor> {
        let target = target.as_ref().to_path_buf();
        if opts.max_round_bytes == 0 {
            return Err(Error::InvalidArgument("max_round_bytes must be at least 1".into()));
        }
        if target.file_name().is_none() {
            return Err(Error::InvalidArgument(format!("target {} is not a file path", target.display())));
        }
        Ok(Compactor {
            sidecar: Sidecar::for_target(&target),
            target,
            opts,
            mount_checked: Default::default(),
            durable_epoch: Default::default(),
            stub_checked: Default::default(),
        })
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    pub fn options(&self) -> &CompactorOptions {
        &self.opts
    }

    /// The longest uncommitted tail one round can leave behind.
    fn max_tail(&self) -> u64 {
        self.opts.max_round_bytes.max(self.opts.max_line_bytes as u64 + 1)
    }

    /// Open journals by path with this compactor's journal options. A file whose
    /// writer has not finished creating its journal (empty: no lines yet) is left out,
    /// not an error: there is nothing in it to drain.
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
    /// started is committed (several bounded rounds, the lock released between them).
    pub fn drain_paths(&self, paths: &[PathBuf]) -> Result<DrainReport> {
        // At most max_open_journals open at once (issue 13 item 3: 400 journals under
        // `ulimit -n 1024` drained nothing).
        let mut report = DrainReport::default();
        for batch in paths.chunks(self.opts.max_open_journals.max(1)) {
            let journals = self.open_journals(batch)?;
            report.absorb(self.drain(&journals)?);
        }
        if paths.is_empty() {
            report = self.drain(&[])?;
        }
        Ok(report)
    }

    /// Drain every `*.journal` in `spool` (see [`Compactor::drain_paths`]); a file whose
    /// writer is still creating its journal is skipped (it is drained next time).
    pub fn drain_spool(&self, spool: &Path) -> Result<DrainReport> {
        self.drain_paths(&crate::journal::spool_journals(spool)?)
    }

    /// Create this target — its sidecar, the lock file with the first manifest, and
    /// the target file (an existing file's whole lines are adopted as committed) — or,
    /// if it exists, check it: a version-1 target is upgraded; a target file whose
    /// inode is not the one recorded (restored or copied together with its sidecar) is
    /// accepted if its committed part (length, line count, CRC) matches, and refused
    /// otherwise. Drains never create a target unless [`CompactorOptions::create`].
    pub fn init(&self) -> Result<InitReport> {
        let lock = self.lock(true)?;
        let (mut m, origin) = self.current_manifest(&lock, true)?;
        // A rotation killed after renaming the target is completed first, as a round
        // would: until then the file at the target's path is not the manifest's.
        if self.interrupted_rotation(&m) {
            m = self.complete_rotation(&lock, &m)?;
        }
        let mut report = InitReport {
            target_id: m.target_id.clone(),
            created: matches!(origin, Origin::Created { .. }),
            adopted_lines: match origin {
                Origin::Created { adopted } => adopted,
                _ => 0,
            },
            upgraded: matches!(origin, Origin::Upgraded),
            rebound: false,
        };
        let mut file = self.open_target(&m)?;
        let ino = file.metadata().map_err(|e| Error::io("fstat of the target", e))?.ino();
        if m.target_ino != ino {
            let (len, lines, crc) = scan(&mut file, m.committed_len)
                .map_err(|e| Error::io(format!("reading {} to check it", self.target.display()), e))?;
            if (len, lines, crc) != (m.committed_len, m.committed_lines, m.committed_crc) {
                return Err(self.missing(format!(
                    "the file there (inode {ino}) is not the target this sidecar committed to (inode {}), and its \
                     first {} bytes are not the committed ones ({len} bytes, {lines} lines, CRC {crc:08x}; committed: \
                     {} lines, CRC {:08x})",
                    m.target_ino, m.committed_len, m.committed_lines, m.committed_crc
                )));
            }
            let mut next = m.clone();
            next.epoch += 1;
            next.target_ino = ino;
            self.commit(&lock, &next, Some(m.epoch), CommitKind::Other)?;
            report.rebound = m.target_ino != 0;
        }
        Ok(report)
    }

    /// Retire journals, the supported way to remove one (issue 12 item 9): drain each
    /// into this target until empty, then delete its files while holding its SQLite
    /// write lock, once every line it ever held is committed here. A writer that still
    /// has it open gets `journal_gone` on its next append (nothing stored, nothing
    /// lost); a writer that opens the path later starts a new journal. A journal that
    /// keeps receiving lines is refused after a few attempts: stop its writers first.
    pub fn retire(&self, paths: &[PathBuf]) -> Result<RetireReport> {
        let mut pending = self.open_journals(paths)?;
        let mut report = RetireReport::default();
        for _ in 0..RETIRE_ATTEMPTS {
            report.drain.absorb(self.drain(&pending)?);
            let manifest = Manifest::load(&self.sidecar)?.ok_or_else(|| {
                Error::InvalidArgument(format!("target {} has no manifest after a drain", self.target.display()))
            })?;
            // O12: delete nothing on the word of a manifest a power cut could take back
            self.sync_manifest()?;
            let mut still = Vec::new();
            for j in pending {
                let watermark = manifest.watermarks.get(&j.id()).map_or(0, |w| w.last_seq);
                if j.delete_if_drained(watermark)? {
                    report.retired.push(j.path().to_path_buf());
                } else {
                    still.push(j);
                }
            }
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

    /// Drain until every line the journals held at the start is committed.
    pub fn drain(&self, journals: &[Journal]) -> Result<DrainReport> {
        let goals: Vec<u64> = journals.iter().map(|j| j.seq_ceiling()).collect::<Result<_>>()?;
        let mut report = DrainReport::default();
        let mut start = 0;
        loop {
            let (round, manifest) = self.round(journals, start)?;
            let moved = round.lines;
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
    pub fn drain_round(&self, journals: &[Journal], rotation: usize) -> Result<DrainReport> {
        self.round(journals, rotation).map(|(r, _)| r)
    }

    fn round(&self, journals: &[Journal], rotation: usize) -> Result<(DrainReport, Manifest)> {
        let mut seen = std::collections::HashMap::new();
        for j in journals {
            if let Some(other) = seen.insert(j.id(), (j.file_identity(), j.path())) {
                if other.0 == j.file_identity() {
                    return Err(Error::InvalidArgument(format!(
                        "the journal {} was given twice (also as {}): give each journal once",
                        j.path().display(),
                        other.1.display()
                    )));
                }
                return Err(Error::JournalRestored {
                    journal: j.path().to_path_buf(),
                    journal_id: j.id().to_hex(),
                    detail: "two journal files given to this drain have the same journal id (one is a copy)".into(),
                });
            }
        }
        let lock = self.lock(self.opts.create)?;
        failpoint::hit("drain.locked");

        // Step 1: the manifest, read from the lock file's slots now that the lock is
        // held (no rename to lose: a slot is durable when its commit returns).
        let (mut manifest, _) = self.current_manifest(&lock, self.opts.create)?;
        let mut report = DrainReport { epoch: manifest.epoch, ..DrainReport::default() };
        // A rotation killed after renaming the target is completed before anything else
        // (the renamed file is the one the manifest names; a `<target>.1` that some
        // other tool left is not).
        if self.interrupted_rotation(&manifest) {
            manifest = self.complete_rotation(&lock, &manifest)?;
            report.rotations += 1;
        }

        // Step 2: the target (the one the manifest names) and its tail.
        let mut file = self.open_target(&manifest)?;
        let mut ino = self.check_identity(&file, &manifest)?;
        let size = file.metadata().map_err(|e| self.lost_or_io("fstat of the target", e))?.len();
        if size < manifest.committed_len {
            return Err(Error::TargetTruncated {
                target: self.target.clone(),
                len: size,
                committed_len: manifest.committed_len,
            });
        }
        // Step 3's checks come first: each journal against its watermark (chained
        // hash), before anything is cut — a journal that recorded more than this
        // manifest holds proves the manifest stale, whatever its intent says.
        let mut pending = false;
        for j in journals {
            let wm = manifest.watermarks.get(&j.id());
            self.check_journal(j, wm, &manifest.target_id)?;
            pending |= j.seq_ceiling()? > wm.map_or(0, |w| w.last_seq);
        }
        let tail = size - manifest.committed_len;
        if tail > 0 {
            // Rule 4: only bytes a round announced are cut; anything else is someone
            // else's, or the manifest is older than the target.
            let covered = manifest.intent.filter(|i| i.start == manifest.committed_len).map_or(0, |i| i.max_len);
            if tail > covered {
                return Err(Error::UnexpectedTail {
                    target: self.target.clone(),
                    tail_bytes: tail,
                    max_round_bytes: covered,
                });
            }
            // Rule 3, the fence: move the epoch before touching the target, so a holder
            // that lost its lock with these bytes uncommitted fails its epoch check
            // instead of committing them after they are gone. The intent stays (it
            // covers the tail until it is cut, and this round's bytes).
            let fenced = self.with_intent(&manifest, ino, covered);
            self.commit(&lock, &fenced, Some(manifest.epoch), CommitKind::Intent)?;
            manifest = fenced;
            fault::check("target truncate").map_err(|e| self.lost_or_io("truncating the uncommitted tail", e))?;
            file.set_len(manifest.committed_len).map_err(|e| self.lost_or_io("truncating the uncommitted tail", e))?;
            file.sync_all().map_err(|e| self.lost_or_io("fsync after truncating", e))?;
            report.repaired_tail_bytes = tail;
            failpoint::hit("drain.after_truncate");
        }
        if self.rotation_due(&manifest) {
            drop(file);
            manifest = self.rotate(&lock, &manifest)?;
            report.rotations += 1;
            file = self.open_target(&manifest)?;
            ino = self.check_identity(&file, &manifest)?;
        }
        report.epoch = manifest.epoch;

        if !pending {
            drop(lock);
            self.catch_up_records(journals, &manifest)?;
            return Ok((report, manifest));
        }

        // Step 4: intent before bytes (unless the fence above already announced this
        // round), then the new lines of each journal, bounded, streamed to the target at
        // committed_len (explicit offsets) in chunks, then one fdatasync.
        if !manifest.intent.is_some_and(|i| i.start == manifest.committed_len && i.max_len >= self.max_tail()) {
            let announced = self.with_intent(&manifest, ino, 0);
            self.commit(&lock, &announced, Some(manifest.epoch), CommitKind::Intent)?;
            manifest = announced;
            report.epoch = manifest.epoch;
        } else if self.durable_epoch.load(Ordering::Relaxed) != manifest.epoch {
            // O12: an intent another holder wrote and died before syncing; nothing may
            // be written on the word of a slot a power cut could take back.
            fault::check("manifest slot fdatasync").map_err(|e| Error::io("fdatasync of the lock file", e))?;
            lock.file().sync_data().map_err(|e| Error::io(format!("fdatasync of {}", lock.path().display()), e))?;
            self.durable_epoch.store(manifest.epoch, Ordering::Relaxed);
        }
        failpoint::hit("drain.after_intent");
        let deadline = crate::journal::deadline_after(self.opts.max_round_time);
        let mut out = ChunkWriter::new(self, &lock, &file, &manifest);
        let mut taken: Vec<(usize, Taken)> = Vec::new();
        let n = journals.len();
        for k in 0..n {
            let budget = self.opts.max_round_bytes.saturating_sub(out.total());
            if budget == 0 || (Instant::now() >= deadline && out.total() > 0) {
                break;
            }
            let index = (rotation + k) % n.max(1);
            let j = &journals[index];
            let (after, chain) = manifest.watermarks.get(&j.id()).map_or((0, 0), |w| (w.last_seq, w.chain));
            let first_of_round = out.total() == 0;
            if let Some(t) =
                j.drain_after(after, chain, budget, first_of_round, deadline, &mut |bytes, crc| out.push(bytes, crc))?
            {
                taken.push((index, t));
            }
        }
        if taken.is_empty() {
            drop(lock);
            self.catch_up_records(journals, &manifest)?;
            return Ok((report, manifest));
        }
        let (batch_len, batch_crc, announced) = out.finish()?;
        manifest = announced;
        failpoint::hit("drain.after_write");
        // O3: the rows this round read are durable in their journals before the
        // manifest covers them (a `normal` writer's commit is visible before it is).
        for (index, _) in &taken {
            journals[*index].sync_for_drain()?;
        }
        fault::check("target fdatasync").map_err(|e| self.lost_or_io("fdatasync of the target", e))?;
        file.sync_data().map_err(|e| self.lost_or_io("fdatasync of the target", e))?;
        failpoint::hit("drain.after_fsync");
        if failpoint::is_set("drain.lose_lock") {
            lock.vanish();
            failpoint::hit("drain.lose_lock");
        }

        // Step 5: commit the new manifest (epoch checked just before the slot write);
        // the round's intent is fulfilled.
        let mut next = manifest.clone();
        next.epoch += 1;
        next.intent = None;
        next.committed_crc = batch_crc;
        next.committed_len += batch_len;
        for (index, t) in &taken {
            next.committed_lines += t.lines;
            let id = journals[*index].id();
            let anchor = manifest.watermarks.get(&id).map_or(0, |w| w.anchor);
            next.watermarks.insert(
                id,
                Watermark { journal_id: id, last_seq: t.last_seq, crc: t.last_crc, chain: t.chain, anchor },
            );
        }
        self.commit(&lock, &next, Some(manifest.epoch), CommitKind::Final)?;

        // Step 6: release the lock so other compactors get their turn.
        drop(file);
        drop(lock);
        failpoint::hit("drain.after_unlock");

        // Step 7: record in each journal how far it is drained, delete those rows.
        for (index, t) in &taken {
            journals[*index].record_drained(&next.target_id, t.last_seq, t.last_crc, t.chain)?;
        }
        self.catch_up_records(journals, &next)?;
        report.rounds = 1;
        report.epoch = next.epoch;
        for (index, t) in &taken {
            report.lines += t.lines;
            report.bytes += t.bytes;
            report.journals.push(JournalDrain {
                path: journals[*index].path().to_path_buf(),
                journal_id: journals[*index].id(),
                lines: t.lines,
                bytes: t.bytes,
                last_seq: t.last_seq,
            });
        }
        Ok((report, next))
    }

    /// The manifest with the epoch bumped and an intent at `committed_len` covering
    /// this round and `covered` bytes already there.
    fn with_intent(&self, m: &Manifest, ino: u64, covered: u64) -> Manifest {
        let mut next = m.clone();
        next.epoch += 1;
        next.target_ino = ino;
        next.intent = Some(Intent { start: m.committed_len, max_len: self.max_tail().max(covered) });
        next
    }

    /// The checks before the lock (the target's name, its sidecar, the mount), then the
    /// lock. Without `create`, a missing sidecar or lock file is `target_missing`.
    fn lock(&self, create: bool) -> Result<TargetLock> {
        fscheck::check_target_name(&self.target)?;
        if create {
            self.sidecar.create()?;
        } else if !self.sidecar.exists() {
            return Err(self.missing(format!(
                "it has no sidecar folder {}: it was never initialised, or the share it lives on is not mounted",
                self.sidecar.dir.display()
            )));
        }
        self.sidecar.check_safe()?;
        if self.mount_checked.get().is_none() {
            fscheck::check_target_mount(&self.target)?;
            let _ = self.mount_checked.set(());
        }
        match TargetLock::acquire(&self.sidecar.lock, self.opts.lock_timeout, create) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Err(self.missing(
                format!("its sidecar has no lock file {}: it was never initialised", self.sidecar.lock.display()),
            )),
            r => r,
        }
    }

    fn missing(&self, detail: String) -> Error {
        Error::TargetMissing { target: self.target.clone(), detail }
    }

    /// Step 1 under the lock: the current manifest from the slots; or finish an
    /// upgrade of a version-1 target; or, with `create`, initialise a new target.
    fn current_manifest(&self, lock: &TargetLock, create: bool) -> Result<(Manifest, Origin)> {
        let current = match slots::read(lock.file(), lock.path())?.into_current(lock.path()) {
            // No valid slot and no manifest file at all (not even the stub, written
            // after the first slot): an `init` whose first slot write was torn. It never
            // finished, so nothing was built on it: start it again.
            Err(Error::CorruptManifest { .. }) if self.sidecar.read_manifest_file().ok().flatten().is_none() => None,
            r => r?,
        };
        if let Some((_, m)) = current {
            if self.stub_checked.get().is_none() {
                if !self.sidecar.exists() {
                    return Err(
                        self.missing("its sidecar is gone from under this round: is the share being unmounted?".into())
                    );
                }
                // An init or upgrade killed before its last step left no stub.
                if self.sidecar.read_manifest_file().ok().flatten() != Some(ManifestFile::Stub) {
                    self.sidecar.remove_temp_files()?;
                    self.sidecar.write_stub()?;
                }
                let _ = self.stub_checked.set(());
            }
            return Ok((m, Origin::Existing));
        }
        match self.sidecar.read_manifest_file()? {
            Some(ManifestFile::V1(m)) => self.upgrade(lock, m, true).map(|m| (m, Origin::Upgraded)),
            Some(ManifestFile::V2(m)) => self.upgrade(lock, m, false).map(|m| (m, Origin::Upgraded)),
            Some(ManifestFile::Stub) => Err(Error::CorruptManifest {
                path: self.sidecar.lock.clone(),
                detail: "the manifest moved into this lock file's slots, but neither slot holds one (the lock file \
                         was truncated or replaced)"
                    .into(),
            }),
            None if create => self.initialize(lock).map(|(m, adopted)| (m, Origin::Created { adopted })),
            None => Err(self.missing(format!(
                "its sidecar {} holds no manifest: it was never initialised (or its `init` did not finish)",
                self.sidecar.dir.display()
            ))),
        }
    }

    /// Upgrade a version-1 target (docs/design.md "Upgrading a version-1 target"):
    /// the full version-2 text to `manifest` (version-1 binaries stop there), the
    /// first slot, then the stub. Every step can be redone after a crash.
    fn upgrade(&self, lock: &TargetLock, mut m: Manifest, from_v1: bool) -> Result<Manifest> {
        self.sidecar.remove_temp_files()?;
        if from_v1 {
            // Version 1 cut any tail up to one round: a version-1 drain killed mid-round
            // left one, with no intent to say so. The upgrade announces it once.
            m.intent = Some(Intent { start: m.committed_len, max_len: self.max_tail() });
            self.sidecar.write_manifest_file(&m.encode())?;
        }
        failpoint::hit("upgrade.after_file");
        m.target_ino = match fs::symlink_metadata(&self.target) {
            Ok(md) => md.ino(),
            Err(_) => 0,
        };
        m.epoch += 1;
        lock.file().set_len(LOCK_FILE_BYTES).map_err(|e| Error::io("sizing the lock file", e))?;
        slots::write(lock.file(), lock.path(), 0, &m, None)?;
        self.durable_epoch.store(m.epoch, Ordering::Relaxed);
        failpoint::hit("upgrade.after_slot");
        self.sidecar.write_stub()?;
        let _ = self.stub_checked.set(());
        Ok(m)
    }

    /// A new target (`init`): adopt a pre-existing target's bytes when it ends with
    /// `\n` (made durable first, with the target's name: orderings O4 and O5), size the
    /// lock file and make its name durable, commit the first slot, write the stub.
    fn initialize(&self, lock: &TargetLock) -> Result<(Manifest, u64)> {
        self.sidecar.remove_temp_files()?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.target)
            .map_err(|e| Error::io(format!("opening target {}", self.target.display()), e))?;
        let (len, lines, crc) =
            scan(&mut file, u64::MAX).map_err(|e| Error::io("reading the target to adopt it", e))?;
        if len > 0 {
            let mut last = [0u8; 1];
            file.read_exact_at(&mut last, len - 1).map_err(|e| Error::io("reading the target's last byte", e))?;
            if last[0] != b'\n' {
                return Err(Error::TornTarget {
                    target: self.target.clone(),
                    detail: format!(
                        "the pre-existing target ({len} bytes) does not end with a newline, so its last line is \
                         partial; tributary adopts only whole lines: finish or remove that line, then run init again"
                    ),
                });
            }
        }
        file.sync_all().map_err(|e| self.lost_or_io("fsync of the target before adopting it", e))?;
        let ino = file.metadata().map_err(|e| Error::io("fstat of the new target", e))?.ino();
        drop(file);
        crate::manifest::sync_dir(&fscheck::parent_dir(&self.target))?;
        lock.file().set_len(LOCK_FILE_BYTES).map_err(|e| Error::io("sizing the lock file", e))?;
        crate::manifest::sync_dir(&self.sidecar.dir)?;
        let m = Manifest::new_adopting(len, lines, crc, ino)?;
        self.commit(lock, &m, None, CommitKind::First)?;
        failpoint::hit("init.after_slot");
        self.sidecar.write_stub()?;
        let _ = self.stub_checked.set(());
        Ok((m, lines))
    }

    /// The target's inode, checked against the one the manifest committed to (0: not
    /// known yet, an upgraded target whose file did not exist).
    fn check_identity(&self, file: &File, m: &Manifest) -> Result<u64> {
        let ino = file.metadata().map_err(|e| self.lost_or_io("fstat of the target", e))?.ino();
        if m.target_ino != 0 && m.target_ino != ino {
            return Err(self.missing(format!(
                "the file there (inode {ino}) is not the target this sidecar committed to (inode {}): it was \
                 replaced (logrotate `create`? rotate a tributary target with managed rotation: compact \
                 --rotate-bytes), or the share is not mounted and another file sits at its path. If the target was \
                 restored or copied with its sidecar on purpose, `tributary init` checks its committed part and \
                 accepts it",
                m.target_ino
            )));
        }
        Ok(ino)
    }

    /// Step 3's consistency check between a journal and the target's watermark for it:
    /// the journal's own record, and the chained hash of its lines up to the watermark.
    fn check_journal(&self, j: &Journal, wm: Option<&Watermark>, target_id: &str) -> Result<()> {
        let restored = |detail: String| Error::JournalRestored {
            journal: j.path().to_path_buf(),
            journal_id: j.id().to_hex(),
            detail,
        };
        let foreign = |detail: String| Error::JournalForeign {
            journal: j.path().to_path_buf(),
            journal_id: j.id().to_hex(),
            detail,
        };
        let rec = j.drained_record()?;
        if let Some(rec) = &rec {
            if rec.target_id != target_id {
                return Err(foreign(format!(
                    "it records being drained up to seq {} into target {}, but this target is {target_id}",
                    rec.seq, rec.target_id
                )));
            }
            match wm {
                None => {
                    return Err(foreign(format!(
                        "it records being drained up to seq {} into this target, but the target has no \
                         watermark for it: the target's manifest was reset or restored",
                        rec.seq
                    )))
                }
                Some(w) if w.last_seq < rec.seq => {
                    return Err(foreign(format!(
                        "it records being drained up to seq {} but the target's watermark is {}: the target's \
                         manifest was reset or restored",
                        rec.seq, w.last_seq
                    )))
                }
                Some(w) if w.last_seq == rec.seq && w.crc != rec.crc => {
                    return Err(restored(format!(
                        "its drained line at seq {} has CRC {:08x}, the target's watermark says {:08x}",
                        rec.seq, rec.crc, w.crc
                    )))
                }
                Some(w) if w.last_seq == rec.seq && rec.chain.is_some_and(|c| c != w.chain) => {
                    return Err(restored(format!(
                        "its lines up to seq {} hash to {:016x}, the target's watermark says {:016x}: another copy \
                         of this journal was drained with different lines",
                        rec.seq,
                        rec.chain.unwrap_or(0),
                        w.chain
                    )))
                }
                _ => {}
            }
        }
        let Some(w) = wm else { return Ok(()) };
        let ceiling = j.seq_ceiling()?;
        if ceiling < w.last_seq {
            return Err(restored(format!(
                "its highest seq ever is {ceiling}, below the target's watermark {} for it",
                w.last_seq
            )));
        }
        // Where the chain can start on this journal's side: its record (when it carries
        // a chain of the same anchor), the anchor itself, or nowhere.
        let start = match &rec {
            Some(r) if r.seq == w.last_seq => None, // compared above
            Some(r) if r.seq >= w.anchor && r.chain.is_some() => Some((r.seq, r.chain.unwrap_or(0))),
            Some(r) if r.seq == w.anchor => Some((r.seq, 0)),
            Some(_) => None,
            None => Some((w.anchor, 0)),
        };
        if let Some((from, chain)) = start {
            if let Some(mine) = j.chain_through(from, chain, w.last_seq)? {
                if mine != w.chain {
                    return Err(restored(format!(
                        "its lines {}..={} hash to {mine:016x}, but the lines the target committed for this journal \
                         hash to {:016x}: it is a clone or an older copy whose lines differ",
                        from + 1,
                        w.last_seq,
                        w.chain
                    )));
                }
                return Ok(());
            }
        }
        // No chain to compare (rows already deleted, or a record from before chains):
        // the one line at the watermark, if still stored.
        if let Some(crc) = j.row_crc(w.last_seq)? {
            if crc != w.crc {
                return Err(restored(format!(
                    "its line at seq {} has CRC {crc:08x}, but the target committed a line with CRC {:08x} at that \
                     seq",
                    w.last_seq, w.crc
                )));
            }
        }
        Ok(())
    }

    /// Open the target read-write. It is never created here (only `init` and a
    /// rotation create one): missing with nothing committed is `target_missing`;
    /// missing with committed bytes is `target_truncated`.
    fn open_target(&self, m: &Manifest) -> Result<File> {
        match OpenOptions::new().read(true).write(true).open(&self.target) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && m.committed_len == 0 => {
                Err(self.missing("the target file is gone (its sidecar exists)".into()))
            }
            // Gone together with its sidecar: the share went away under this round (an
            // unmount, a client restart) — transient. Gone alone: someone removed it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.sidecar.exists() => Err(self.missing(
                "the target and its sidecar are gone from under this round: is the share being unmounted or \
                 remounted?"
                    .into(),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::TargetTruncated { target: self.target.clone(), len: 0, committed_len: m.committed_len })
            }
            Err(e) => Err(Error::io(format!("opening target {}", self.target.display()), e)),
        }
    }

    fn rotation_due(&self, m: &Manifest) -> bool {
        m.committed_len > 0
            && (self.opts.rotate_bytes.is_some_and(|b| m.committed_len >= b)
                || self.opts.rotate_lines.is_some_and(|l| m.committed_lines >= l))
    }

    /// Managed rotation, under the lock, after the tail repair (so the target holds
    /// exactly the committed bytes): rename the target to `<target>.<generation>`, then
    /// [`Compactor::complete_rotation`]. A crash after the rename is completed by the
    /// next round (step 1 finds `<target>.<generation>`); before it, nothing happened.
    fn rotate(&self, lock: &TargetLock, m: &Manifest) -> Result<Manifest> {
        let rotated = generation_path(&self.target, m.generation);
        if fs::symlink_metadata(&rotated).is_ok() {
            return Err(Error::InvalidArgument(format!(
                "managed rotation of {} needs the name {}, but a file that is not one of its generations is there \
                 (left by logrotate or by hand?): move it away; nothing was rotated",
                self.target.display(),
                rotated.display()
            )));
        }
        fs::rename(&self.target, &rotated)
            .map_err(|e| Error::io(format!("renaming {} to {}", self.target.display(), rotated.display()), e))?;
        failpoint::hit("rotate.after_rename");
        self.complete_rotation(lock, m)
    }

    /// True when `<target>.<generation>` is the current generation's file, renamed by a
    /// rotation that did not commit (its inode is the manifest's; a manifest that does
    /// not know the inode yet falls back to the name).
    fn interrupted_rotation(&self, m: &Manifest) -> bool {
        let renamed = generation_path(&self.target, m.generation);
        match fs::symlink_metadata(&renamed) {
            Ok(md) if m.target_ino == 0 || md.ino() == m.target_ino => true,
            // Another inode (the files were restored from a copy, which renumbers them):
            // still ours if the target's path no longer holds the manifest's file and
            // this one holds exactly the committed bytes.
            Ok(md) if md.is_file() && md.len() == m.committed_len => {
                let target_is_current = fs::symlink_metadata(&self.target).is_ok_and(|t| t.ino() == m.target_ino);
                !target_is_current
                    && File::open(&renamed).and_then(|mut f| scan(&mut f, u64::MAX)).is_ok_and(|(len, lines, crc)| {
                        (len, lines, crc) == (m.committed_len, m.committed_lines, m.committed_crc)
                    })
            }
            _ => false,
        }
    }

    /// The rest of a rotation whose rename is done: create the new empty target,
    /// commit a manifest for the next generation (watermarks carry over, so
    /// exactly-once holds across the rotation; the new file's inode recorded), then
    /// apply the retention setting. Idempotent: every step can be redone after a crash.
    fn complete_rotation(&self, lock: &TargetLock, m: &Manifest) -> Result<Manifest> {
        let g = m.generation;
        let rotated = generation_path(&self.target, g);
        let len = fs::metadata(&rotated).map_err(|e| Error::io(format!("inspecting {}", rotated.display()), e))?.len();
        if len != m.committed_len {
            return Err(Error::TornTarget {
                target: rotated,
                detail: format!(
                    "a rotation of generation {g} was interrupted, but the renamed file has {len} bytes where \
                     {} were committed",
                    m.committed_len
                ),
            });
        }
        let ino = match OpenOptions::new().write(true).create_new(true).mode(0o644).open(&self.target) {
            Ok(f) => f.metadata().map_err(|e| Error::io("fstat of the new target", e))?.ino(),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let md = fs::metadata(&self.target)
                    .map_err(|e| Error::io(format!("inspecting {}", self.target.display()), e))?;
                if md.len() != 0 {
                    return Err(Error::UnexpectedTail {
                        target: self.target.clone(),
                        tail_bytes: md.len(),
                        max_round_bytes: 0,
                    });
                }
                md.ino()
            }
            Err(e) => return Err(Error::io(format!("creating the new target {}", self.target.display()), e)),
        };
        crate::manifest::sync_dir(&fscheck::parent_dir(&self.target))?;
        failpoint::hit("rotate.after_create");
        let mut next = m.clone();
        next.epoch += 1;
        next.generation = g + 1;
        next.target_ino = ino;
        next.intent = None;
        next.rotated
            .insert(g, RotatedGeneration { len: m.committed_len, lines: m.committed_lines, crc: m.committed_crc });
        next.committed_len = 0;
        next.committed_lines = 0;
        next.committed_crc = 0;
        if let Some(keep) = self.opts.retain_generations {
            while next.rotated.len() as u64 > keep {
                next.rotated.pop_first();
            }
        }
        self.commit(lock, &next, Some(m.epoch), CommitKind::Other)?;
        failpoint::hit("rotate.after_commit");
        // Delete generations no longer kept (also ones a crash left behind before).
        let oldest_kept = next.rotated.keys().next().copied().unwrap_or(next.generation);
        for old in 1..oldest_kept {
            match fs::remove_file(generation_path(&self.target, old)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing generation {old} (retention)"), e)),
            }
        }
        Ok(next)
    }

    /// Step 7 for journals whose record lags the committed watermark (a compactor died
    /// or failed between steps 5 and 7): safe to redo at any time. Rows are deleted on
    /// the strength of the manifest just read, whose slot write may not be durable yet
    /// (its writer can have died before its fdatasync), so fdatasync the lock file first.
    fn catch_up_records(&self, journals: &[Journal], manifest: &Manifest) -> Result<()> {
        let mut lagging = Vec::new();
        for j in journals {
            if let Some(w) = manifest.watermarks.get(&j.id()) {
                if j.drained_record()?.map_or(0, |r| r.seq) < w.last_seq {
                    lagging.push((j, *w));
                }
            }
        }
        if lagging.is_empty() {
            return Ok(());
        }
        if self.durable_epoch.load(Ordering::Relaxed) != manifest.epoch {
            self.sync_manifest()?;
        }
        for (j, w) in lagging {
            j.record_drained(&manifest.target_id, w.last_seq, w.crc, w.chain)?;
        }
        Ok(())
    }

    /// Make the manifest this compactor read durable, whoever wrote it (O9, O12): an
    /// fdatasync of the lock file, unless this compactor wrote and synced that epoch.
    fn sync_manifest(&self) -> Result<()> {
        let f = slots::open(&self.sidecar.lock, false, false)
            .map_err(|e| Error::io(format!("opening lock file {}", self.sidecar.lock.display()), e))?;
        fault::check("manifest slot fdatasync").map_err(|e| Error::io("fdatasync of the lock file", e))?;
        f.sync_data().map_err(|e| Error::io(format!("fdatasync of {}", self.sidecar.lock.display()), e))
    }

    /// Every commit (step 5, the fence and intent of steps 2 and 4, a rotation's, the
    /// first manifest): the slots must still hold `expected_epoch` as the current
    /// manifest (else `lock_lost`), then `m` goes to the other slot, durable when this
    /// returns.
    fn commit(&self, lock: &TargetLock, m: &Manifest, expected_epoch: Option<u64>, kind: CommitKind) -> Result<()> {
        let (before, unsynced) = match kind {
            CommitKind::Final => (Some("drain.after_temp_manifest"), Some("drain.after_rename")),
            CommitKind::Intent => (Some("drain.before_intent"), Some("drain.intent_unsynced")),
            CommitKind::First => (None, Some("init.slot_unsynced")),
            CommitKind::Other => (None, None),
        };
        if let Some(p) = before {
            failpoint::hit(p);
        }
        let current = match slots::read(lock.file(), lock.path())?.into_current(lock.path()) {
            // the first manifest over a torn first attempt (see current_manifest)
            Err(Error::CorruptManifest { .. }) if expected_epoch.is_none() => None,
            r => r?,
        };
        let on_disk = current.as_ref().map(|(_, c)| c.epoch);
        if on_disk != expected_epoch {
            return Err(Error::LockLost {
                target: self.target.clone(),
                detail: format!(
                    "the manifest's epoch changed from {expected_epoch:?} to {on_disk:?} during this round: \
                     another compactor committed, so this one no longer held the lock"
                ),
            });
        }
        let index = current.map_or(0, |(i, _)| 1 - i);
        slots::write(lock.file(), lock.path(), index, m, unsynced)?;
        self.durable_epoch.store(m.epoch, Ordering::Relaxed);
        Ok(())
    }

    /// EIO after the lock was granted means the lock may be lost (Linux does not recover
    /// lost NFS locks): report it as such.
    fn lost_or_io(&self, what: &str, e: std::io::Error) -> Error {
        if e.raw_os_error() == Some(libc::EIO) {
            Error::LockLost { target: self.target.clone(), detail: format!("EIO while {what}") }
        } else {
            Error::io(format!("{what} ({})", self.target.display()), e)
        }
    }
}

/// Streams a round's bytes to the target at `committed_len` in bounded chunks (so a
/// round needs little memory whatever its size), keeping the running CRC, and
/// re-checking the manifest epoch between chunks: a holder that lost its lease stops
/// as soon as it can tell.
struct ChunkWriter<'a> {
    compactor: &'a Compactor,
    lock: &'a TargetLock,
    file: &'a File,
    offset: u64,
    /// The manifest this round committed last (its intent covers what is written).
    announced: Manifest,
    epoch: u64,
    buf: Vec<u8>,
    chunk: usize,
    written: u64,
    /// Written-bytes mark at which the next write first re-checks the epoch.
    next_epoch_check: u64,
    /// Written bytes before this mark were handed to the kernel's write-back already.
    writeback_from: u64,
    crc: crc32fast::Hasher,
}

impl<'a> ChunkWriter<'a> {
    fn new(compactor: &'a Compactor, lock: &'a TargetLock, file: &'a File, m: &Manifest) -> ChunkWriter<'a> {
        // With the mid_write failpoint armed, write tiny chunks so it falls between two.
        let chunk = if failpoint::is_set("drain.mid_write") { 16 } else { WRITE_CHUNK_BYTES };
        ChunkWriter {
            compactor,
            lock,
            file,
            offset: m.committed_len,
            announced: m.clone(),
            epoch: m.epoch,
            buf: Vec::new(),
            chunk,
            written: 0,
            next_epoch_check: chunk as u64,
            writeback_from: 0,
            crc: crc32fast::Hasher::new_with_initial_len(m.committed_crc, m.committed_len),
        }
    }

    /// Bytes accepted so far (written or buffered).
    fn total(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    /// Accept `bytes`; `crc`, when given, is their CRC already computed (a whole run's
    /// data), combined into the running CRC instead of a second pass over them.
    fn push(&mut self, bytes: &[u8], crc: Option<&crc32fast::Hasher>) -> Result<()> {
        match crc {
            Some(h) => self.crc.combine(h),
            None => self.crc.update(bytes),
        }
        if bytes.len() >= DIRECT_WRITE_BYTES && self.chunk == WRITE_CHUNK_BYTES {
            // A whole run: write it straight from SQLite's buffer, no extra copy.
            self.flush()?;
            return self.write(bytes);
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= self.chunk {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let r = self.write(&buf);
        self.buf = buf;
        self.buf.clear();
        r
    }

    /// Write at the next offset; every `chunk` bytes, first check the epoch.
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let c = self.compactor;
        if self.written > 0 && self.written >= self.next_epoch_check {
            failpoint::hit("drain.mid_write");
            let now =
                slots::read(self.lock.file(), self.lock.path())?.into_current(self.lock.path())?.map(|(_, m)| m.epoch);
            if now != Some(self.epoch) {
                return Err(Error::LockLost {
                    target: c.target.clone(),
                    detail: format!("the manifest epoch moved from {} to {now:?} while writing", self.epoch),
                });
            }
            self.next_epoch_check = self.written + self.chunk as u64;
        }
        // Rule 4: every byte is under an intent. A line longer than the intent's bound
        // (a writer allowed longer lines than this compactor) extends it first.
        let end = self.written + bytes.len() as u64;
        let covered = self.announced.intent.map_or(0, |i| i.max_len);
        if end > covered {
            let mut wider = self.announced.clone();
            wider.epoch += 1;
            wider.intent = Some(Intent { start: self.offset, max_len: end.max(c.max_tail()) });
            c.commit(self.lock, &wider, Some(self.announced.epoch), CommitKind::Intent)?;
            self.epoch = wider.epoch;
            self.announced = wider;
        }
        fault::check("target write").map_err(|e| c.lost_or_io("writing to the target", e))?;
        self.file
            .write_all_at(bytes, self.offset + self.written)
            .map_err(|e| c.lost_or_io("writing to the target", e))?;
        self.written += bytes.len() as u64;
        if self.written - self.writeback_from >= WRITEBACK_BYTES {
            sys::start_writeback(self.file, self.offset + self.writeback_from, self.written - self.writeback_from);
            self.writeback_from = self.written;
        }
        Ok(())
    }

    /// Write what is buffered; returns (bytes written, running CRC after them, the
    /// manifest this round committed last).
    fn finish(mut self) -> Result<(u64, u32, Manifest)> {
        self.flush()?;
        Ok((self.written, self.crc.finalize(), self.announced))
    }
}

/// Length, `\n` count and CRC32 of the first `limit` bytes of a file.
pub(crate) fn scan(file: &mut File, limit: u64) -> std::io::Result<(u64, u64, u32)> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut len, mut lines) = (0u64, 0u64);
    let mut reader = Read::take(&mut *file, limit);
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok((len, lines, hasher.finalize()));
        }
        hasher.update(&buf[..n]);
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        len += n as u64;
    }
}
