//! One drain round, top to bottom in the order it runs (docs/design.md, "The drain
//! protocol"): lock and read the manifest, check the target and the journals, cut an
//! announced tail, announce, write, make durable, commit, unlock, record.
//!
//! Keeps: nothing is committed before what it describes is durable, and nothing is
//! built on a manifest that is not (orderings O3–O12); every change to the target
//! under the lock is fenced by an epoch bump; the first `committed_len` bytes are
//! exactly the journals' lines up to their watermarks, each once; rows are deleted
//! only after the covering manifest is durable. This file is also the one place that
//! decides "lock lost" ([`Compactor::check_epoch`], [`Compactor::lost_or_io`]).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::staging::StagedBatch;
use super::writer::ChunkWriter;
use super::{Compactor, DrainReport, JournalDrain, ManifestDeltas};
use crate::error::{Error, Result};
use crate::journal::{Journal, JournalId, Taken};
use crate::os::clock::deadline_after;
use crate::target::lock::{SlotsSeen, TargetLock};
use crate::target::manifest::{Intent, Manifest, Watermark};
use crate::target::manifest::{DELTA_FORMAT_VERSION, FORMAT_VERSION};
use crate::target::scan::committed_part_cut_at;
use crate::{failpoint, fault, target::slots};

/// Which commit of a round (for the failpoints a test can kill it at).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum CommitKind {
    /// Step 5: the round's lines become committed.
    Final,
    /// The fence and intent before a round's first byte (steps 3 and 4).
    Intent,
    /// A new target's first manifest (`init`).
    First,
    /// A rotation's, an accepted inode.
    Other,
}

/// What a round carries from one step to the next.
struct Round<'a> {
    compactor: &'a Compactor,
    journals: &'a [Journal],
    lock: TargetLock,
    /// The current manifest: read in step 1, then each one this round committed.
    manifest: Manifest,
    report: DrainReport,
    /// Journals (indexes) retired under this round's handles: their files are gone and
    /// the manifest lists them as retired. Never drained (a daemon drops the handle).
    retired_under_us: Vec<usize>,
    /// Step 2's reads of the target, made in step 1 concurrently with the slots.
    early: Option<EarlyTarget>,
    /// Step S: other stagers' batches that may follow the manifest (staging on).
    staged: Vec<StagedBatch>,
}

/// The target opened and its size and inode read from the server (`fsync`, `statx`),
/// under the lock, on a helper thread while step 1 reads the slots: on a network
/// filesystem both are server round trips, and neither depends on the other. A
/// failure is not reported from here: step 2 opens the target again and says why.
type EarlyTarget = std::io::Result<(File, u64, u64)>;

/// Where a round's lines of one journal came from.
enum Source {
    /// The round read them from its journal (an index into the round's journals).
    Local(usize),
    /// A stage file's batch (step S): the journal and the file.
    Staged(JournalId, std::path::PathBuf),
}

impl Source {
    /// The journal the lines are of.
    fn journal_id(&self, journals: &[Journal]) -> JournalId {
        match self {
            Source::Local(index) => journals[*index].id(),
            Source::Staged(id, _) => *id,
        }
    }
}

/// What step 4 wrote.
struct Written {
    /// Where each journal's lines came from, and what was taken.
    taken: Vec<(Source, Taken)>,
    len: u64,
    crc: u32,
}

impl Written {
    /// What the round read from its own journals (index, taken): a staged batch's rows
    /// are its stager's to make durable and to record.
    fn local(&self) -> Vec<(usize, &Taken)> {
        let mut local = Vec::new();
        for (source, t) in &self.taken {
            if let Source::Local(index) = source {
                local.push((*index, t));
            }
        }
        local
    }
}

impl Compactor {
    /// One bounded round. `rotation` picks which journal goes first, so none starves.
    /// With staging on, this host's new lines are staged first (without the lock), and
    /// its stage file is reset after the round.
    pub(super) fn round(&self, journals: &[Journal], rotation: usize) -> Result<(DrainReport, Arc<Manifest>)> {
        let ran = self.round_or_defer(journals, rotation, false, &|| self.stop_requested())?;
        Ok(ran.expect("a round that may not defer runs"))
    }

    /// [`round`](Self::round); with staging on and `may_defer`, a round at once if the
    /// lock is free, else none (`Ok(None)`) when every new line of `journals` was
    /// staged and someone else still holds the lock: the holder's next round commits
    /// them (docs/design.md "Staging", deferring). `give_up` ends a wait for the
    /// lock early (`lock_timeout`; nothing was held or changed).
    pub(super) fn round_or_defer(
        &self,
        journals: &[Journal],
        rotation: usize,
        may_defer: bool,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Option<(DrainReport, Arc<Manifest>)>> {
        let started = Instant::now();
        check_given_once(journals)?;
        let create = self.opts.create;
        self.check_before_lock(create)?;
        let (lock, lock_wait) = if self.staging && may_defer {
            // The lock free: a round as without staging (its step S still commits what
            // others staged). Held: stage, and leave the round to the holder if every
            // new line is staged and the lock is still held.
            if let Some(lock) = self.try_lock(create)? {
                (lock, started.elapsed())
            } else {
                // A failed stager pass loses nothing (the round drains the journals
                // itself); it only delays this host's lines until its own round.
                let all_staged = self.stage(journals).is_ok_and(|staged| staged.complete);
                let asked = Instant::now();
                let lock = match self.try_lock(create)? {
                    Some(lock) => lock,
                    None if all_staged => return Ok(None),
                    None => self.queue_for_lock(create, give_up)?,
                };
                (lock, asked.elapsed())
            }
        } else {
            if self.staging {
                // A one-shot drain (it never defers) stages too, while staging is a
                // seam: its failpoints and the tests that kill it after staging.
                let _ = self.stage(journals);
            }
            let asked = Instant::now();
            (self.queue_for_lock(create, give_up)?, asked.elapsed())
        };
        let (mut report, manifest) = self.round_steps(journals, rotation, lock)?;
        if self.staging {
            self.reset_stage_after_round();
        }
        report.lock_wait = lock_wait;
        report.elapsed = started.elapsed();
        Ok(Some((report, manifest)))
    }

    /// [`round`](Self::round) from the lock on, without its clock.
    fn round_steps(
        &self,
        journals: &[Journal],
        rotation: usize,
        lock: TargetLock,
    ) -> Result<(DrainReport, Arc<Manifest>)> {
        // Step 1: the lock (taken), then the manifest.
        let mut r = self.lock_and_read(journals, lock)?;
        // Step 2: the target the manifest names.
        let (mut file, mut ino, size) = r.open_target()?;
        // Step 3: each journal against its watermark, then the tail.
        let pending = r.check_journals()?;
        r.cut_announced_tail(&file, ino, size)?;
        if self.rotation_due(&r.manifest) {
            drop(file);
            r.manifest = self.rotate(&r.lock, &r.manifest)?;
            r.report.rotations += 1;
            (file, ino, _) = r.open_target()?;
        }
        r.report.epoch = r.manifest.epoch;
        // Step S: every stage file's batches that may follow the manifest.
        if self.staging {
            r.staged = self.staged_candidates(&r.manifest, rotation);
        }
        if !pending && r.staged.is_empty() {
            return r.idle();
        }
        // Step 4: intent before bytes, then the lines, then durability.
        r.announce(ino)?;
        let written = r.write_new_lines(&file, rotation)?;
        if written.taken.is_empty() {
            return r.idle();
        }
        r.make_durable(&file, &written)?;
        r.check_target_whole(&file, ino, &written)?;
        // Step 5: commit.
        let committed = r.commit_lines(&written)?;
        // Step 6: unlock, so other compactors get their turn; then close the target
        // (on a FUSE mount a close is a round trip of its own: not under the lock).
        let Round { journals, lock, mut report, .. } = r;
        drop(lock);
        drop(file);
        failpoint::hit(failpoint::Point::DrainAfterUnlock);
        // Step 7: record in each journal how far it is drained; delete those rows.
        let local = written.local();
        for_each_journal(&local, |(index, t)| {
            journals[*index].record_drained(&committed.target_id, t.last_seq, t.last_crc, t.chain)
        })?;
        // (a journal just recorded is at its watermark: not read again)
        let mut recorded = vec![false; journals.len()];
        for (index, _) in &local {
            recorded[*index] = true;
        }
        self.catch_up_records(journals, &committed, &recorded)?;
        report.rounds = 1;
        report.epoch = committed.epoch;
        for (source, t) in &written.taken {
            report.lines += t.lines;
            report.bytes += t.bytes;
            let path = match source {
                Source::Local(index) => journals[*index].path().to_path_buf(),
                // lines another host staged: named by the stage file they came from
                Source::Staged(_, file) => file.clone(),
            };
            report.journals.push(JournalDrain {
                path,
                journal_id: source.journal_id(journals),
                lines: t.lines,
                bytes: t.bytes,
                last_seq: t.last_seq,
            });
        }
        Ok((report, committed))
    }

    /// Step 1: the lock, then the manifest, read from the lock file's slots now that
    /// the lock is held (no rename to lose: a slot is durable when its commit returns).
    /// A rotation killed after renaming the target is completed before anything else
    /// (the renamed file is the one the manifest names; a `<target>.1` that some other
    /// tool left is not).
    fn lock_and_read<'a>(&'a self, journals: &'a [Journal], lock: TargetLock) -> Result<Round<'a>> {
        failpoint::hit(failpoint::Point::DrainLocked);
        let (read, mut early) = if self.reads_target_early() {
            std::thread::scope(|s| {
                let helper = std::thread::Builder::new().spawn_scoped(s, || self.read_target());
                let read = self.current_manifest(&lock, self.opts.create);
                // no helper thread (or it panicked): step 2 reads the target itself
                (read, helper.ok().and_then(|h| h.join().ok()))
            })
        } else {
            (self.current_manifest(&lock, self.opts.create), None)
        };
        let (mut manifest, _) = read?;
        let mut report = DrainReport { epoch: manifest.epoch, ..DrainReport::default() };
        // The file at the target's path is the manifest's: its rename never happened,
        // nothing to look up. Otherwise look for the renamed file.
        let in_place =
            matches!(&early, Some(Ok((_, _, ino))) if manifest.target_ino != 0 && *ino == manifest.target_ino);
        if !in_place && self.interrupted_rotation(&manifest) {
            manifest = self.complete_rotation(&lock, &manifest)?;
            report.rotations += 1;
            early = None; // read before the rotation: the old generation's file
        }
        Ok(Round {
            compactor: self,
            journals,
            lock,
            manifest,
            report,
            retired_under_us: Vec::new(),
            early,
            staged: Vec::new(),
        })
    }

    /// Whether step 1 reads the target concurrently with the slots (on a network
    /// filesystem, unless a test decided; never for the negative control, which keeps
    /// the old shape whole).
    fn reads_target_early(&self) -> bool {
        !self.trust_client_caches
            && self.read_target_early.unwrap_or_else(|| self.target_on_network.get().copied().unwrap_or(false))
    }

    /// [`EarlyTarget`]: open the target, its size and inode from the server.
    fn read_target(&self) -> EarlyTarget {
        let file = self.open_target_file()?;
        let (len, ino) = crate::os::fs::fresh_len_and_ino(&file)?;
        Ok((file, len, ino))
    }

    /// The target's size and inode as its filesystem's server knows them, never from a
    /// client's attribute cache (`os::fs::fresh_len_and_ino`; rule 6 in
    /// docs/design.md) — unless this compactor is the negative control.
    pub(super) fn target_len_and_ino(&self, file: &File) -> Result<(u64, u64)> {
        if self.trust_client_caches {
            let md = file.metadata().map_err(|e| self.lost_or_io("fstat of the target", e))?;
            return Ok((md.len(), md.ino()));
        }
        crate::os::fs::fresh_len_and_ino(file)
            .map_err(|e| self.lost_or_io("reading the target's size (fsync, statx)", e))
    }

    /// The committed part still ends in its last line's `\n`: a target cut below its
    /// committed length and written past since (long enough again, by a round's later
    /// writes or anyone's) has zeros there. `round_end`: the round that checks.
    pub(super) fn check_committed_end(&self, file: &File, committed_len: u64, round_end: Option<u64>) -> Result<()> {
        // On a network filesystem a read may be answered from the client's page cache
        // (rule 6: content is read there only with O_DIRECT); skipped there.
        if self.target_on_network.get().copied().unwrap_or(false) {
            return Ok(());
        }
        match committed_part_cut_at(file, committed_len).map_err(|e| self.lost_or_io("reading the target", e))? {
            None => Ok(()),
            Some(hole) => Err(Error::TargetHole { target: self.target.clone(), hole, committed_len, round_end }),
        }
    }

    /// The target's inode, checked against the one the manifest committed to (0: not
    /// known yet, an upgraded target whose file did not exist).
    pub(super) fn check_identity(&self, ino: u64, m: &Manifest) -> Result<u64> {
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

    /// The target's file opened again after listing its folder, for a file at the
    /// target's path that is not the one the manifest names: this host's client may
    /// still map the name to a file another host renamed away (rule 6). Returns the file,
    /// its size and inode, as [`open_target`](Self::open_target) and
    /// [`target_len_and_ino`](Self::target_len_and_ino) do.
    pub(super) fn open_target_again(&self, m: &Manifest) -> Result<(File, u64, u64)> {
        if !self.trust_client_caches {
            crate::os::fs::refresh_names(&self.target)
                .map_err(|e| self.lost_or_io("listing the target's folder", e))?;
        }
        let file = self.open_target(m)?;
        let (size, ino) = self.target_len_and_ino(&file)?;
        Ok((file, size, ino))
    }

    /// The target as read (`read`: its file, size and inode), or — when it is another
    /// inode than `m` names, or shorter than committed — opened again by name and read
    /// once more, before anyone calls it replaced or truncated: a name cached from
    /// before a rotation, and a `GlusterFS` client restarted under a round, which showed
    /// a whole target as 0 bytes for a moment (CI's soak: a daemon stopped on a false
    /// `target_truncated`). docs/design.md step 3; `init` reads it so too.
    pub(super) fn read_again_if_changed(&self, m: &Manifest, read: (File, u64, u64)) -> Result<(File, u64, u64)> {
        let (_, size, ino) = read;
        if (m.target_ino != 0 && ino != m.target_ino) || size < m.committed_len {
            failpoint::hit(failpoint::Point::OpenTargetShort); // (a test restores the bytes here)
            return self.open_target_again(m);
        }
        Ok(read)
    }

    /// The target's file, read-write, never created (errors as they come).
    fn open_target_file(&self) -> std::io::Result<File> {
        OpenOptions::new().read(true).write(true).open(&self.target)
    }

    /// Open the target read-write. It is never created here (only `init` and a
    /// rotation create one): missing with nothing committed is `target_missing`;
    /// missing with committed bytes is `target_truncated`.
    pub(super) fn open_target(&self, m: &Manifest) -> Result<File> {
        let not_found =
            |opened: &std::io::Result<File>| opened.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
        let mut opened = self.open_target_file();
        // A name this host's client remembers as missing (NFS `lookupcache`): ask again
        // after listing the folder before calling the target gone (rule 6).
        if not_found(&opened) && !self.trust_client_caches && crate::os::fs::refresh_names(&self.target).is_ok() {
            opened = self.open_target_file();
        }
        // Missing with its sidecar here: the share may have come back between the open
        // and that look (a client restarted under this round: CI's soak saw a daemon
        // stop on a false `target_truncated`, the file whole) — open once more; it is
        // gone only if still missing with its sidecar present (docs/design.md step 3).
        if not_found(&opened) && m.committed_len > 0 && self.sidecar.exists() {
            failpoint::hit(failpoint::Point::OpenTargetMissing); // (a test brings the target back here)
            opened = self.open_target_file();
        }
        match opened {
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::TargetTruncated {
                target: self.target.clone(),
                len: 0,
                committed_len: m.committed_len,
                gone: true,
            }),
            Err(e) => Err(Error::io(format!("opening target {}", self.target.display()), e)),
        }
    }

    /// Step 3's consistency check between a journal and the target's watermark for it:
    /// the journal's own record, and the chained hash of its lines up to the watermark;
    /// for a journal without one, the lifecycle's rule 2 (docs/design.md "Journal
    /// lifecycle and watermark expiry"): retired, or unknown and older than the horizon.
    /// Returns the journal's highest seq ever (read once, before the checks that use it).
    pub(crate) fn check_journal(j: &Journal, m: &Manifest) -> Result<u64> {
        let wm = m.watermarks.get(&j.id());
        let target_id = m.target_id.as_str();
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
        if wm.is_none() {
            Self::check_unknown(j, m)?;
        }
        let rec = j.drained_record()?;
        if let Some(rec) = &rec {
            if rec.target_id != target_id {
                return Err(foreign(format!(
                    "it belongs to another target: it records being drained up to seq {} into target {}, but this \
                     target is {target_id}. Drain it into the target it was drained into before (if that was this \
                     file and its sidecar was lost, README \"Operations\", a lost sidecar)",
                    rec.seq, rec.target_id
                )));
            }
            match wm {
                None => {
                    return Err(foreign(format!(
                        "it records being drained up to seq {} into this target, but the target has no \
                         watermark for it: it is a copy of a journal retired from this target (its watermark \
                         expired), whose lines are in the target: remove this copy. (Or the target's manifest was \
                         reset or restored: do not restore a sidecar folder)",
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
        let ceiling = j.seq_ceiling()?;
        let Some(w) = wm else { return Ok(ceiling) };
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
                return Ok(ceiling);
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
        Ok(ceiling)
    }

    /// Rule 2(a) and 2(c) of the lifecycle, for a journal the target holds no
    /// watermark for: refused when it was retired from this target, or when it was
    /// never drained and its first line is older than the horizon (a copy of a retired
    /// journal whose entry expired cannot be told apart from it).
    fn check_unknown(j: &Journal, m: &Manifest) -> Result<()> {
        let restored = |detail: String| Error::JournalRestored {
            journal: j.path().to_path_buf(),
            journal_id: j.id().to_hex(),
            detail,
        };
        if m.retired.contains_key(&j.id()) {
            return Err(restored(
                "it was retired from this target, so this file is a copy (restored from a backup or a snapshot, or \
                 a retirement's rename undone): every line it held at its retirement is in the target, and it is \
                 never drained again. Delete it with its -wal and -shm; lines appended to the copy after its restore \
                 are not drained (move them to a new journal)"
                    .into(),
            ));
        }
        if m.horizon == 0 || j.drained_record()?.is_some() || j.seq_ceiling()? == 0 {
            return Ok(()); // a record is judged by step 3's record check; no line, nothing to judge
        }
        let stamp = j.first_line_ms()?.unwrap_or(0);
        if stamp < m.horizon {
            return Err(restored(format!(
                "it was never drained into this target, and its first line was appended at {stamp} ms (Unix time, \
                 its host's clock), before this target's horizon {} ms: journals retired from this target that old \
                 are forgotten, so a restored copy of one cannot be told apart from it. If it is such a copy \
                 (from a backup or a snapshot), delete it. If it is new and its lines are not in the target (it \
                 waited undrained longer than the watermark expiry, or its host's clock was behind), admit it: \
                 `tributary admit --target T --journal {}` (Compactor::admit), then drain{}",
                m.horizon,
                j.path().display(),
                m.horizon_ahead_of_clock().map_or(String::new(), |ahead| format!(
                    ". This horizon is {} h ahead of this host's clock: a compactor whose clock ran ahead expired \
                     journals retired from a host whose clock ran ahead too, so every new journal is refused so \
                     until the clocks pass it — admit them, and fix those hosts' clocks",
                    ahead.as_secs().div_ceil(3600)
                ))
            )));
        }
        Ok(())
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

    /// Step 7 for journals whose record lags the committed watermark (a compactor died
    /// or failed between steps 5 and 7): safe to redo at any time. Rows are deleted on
    /// the strength of the manifest just read, whose slot write may not be durable yet
    /// (its writer can have died before its fdatasync), so fdatasync the lock file first.
    /// `recorded[i]`: journal `i` was recorded at this manifest by the caller (skipped).
    pub(super) fn catch_up_records(&self, journals: &[Journal], manifest: &Manifest, recorded: &[bool]) -> Result<()> {
        let mut lagging = Vec::new();
        for (i, j) in journals.iter().enumerate() {
            if recorded.get(i) == Some(&true) {
                continue;
            }
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
    pub(super) fn sync_manifest(&self) -> Result<()> {
        let f = slots::open(&self.sidecar.lock, false, false)
            .map_err(|e| Error::io(format!("opening lock file {}", self.sidecar.lock.display()), e))?;
        fault::check(fault::Step::ManifestSlotFdatasync).map_err(|e| Error::io("fdatasync of the lock file", e))?;
        f.sync_data().map_err(|e| Error::io(format!("fdatasync of {}", self.sidecar.lock.display()), e))
    }

    /// Every commit (step 5, the fence and intent of steps 3 and 4, a rotation's, the
    /// first manifest): the slots must still hold `prev` (its epoch) as the current
    /// manifest (else `lock_lost`), then `m` goes to the other slot — or, with manifest
    /// deltas on, as a delta from `prev` after the current slot's chain — durable when
    /// this returns.
    /// The manifest is kept for the next step 1 (a copy), except an intent's: the
    /// round's own commit follows it (kept then), and a round that stops after its
    /// intent leaves the next one to read the slots.
    pub(super) fn commit(
        &self,
        lock: &TargetLock,
        m: &Manifest,
        prev: Option<&Manifest>,
        kind: CommitKind,
    ) -> Result<()> {
        let keep = (kind != CommitKind::Intent).then(|| Arc::new(m.clone()));
        self.commit_in(lock, m, prev, kind, self.manifest_deltas, keep)
    }

    /// [`commit`](Self::commit) of a manifest the caller shares: kept without a copy
    /// (10,000 watermarks: 0.1–0.2 ms a copy).
    pub(super) fn commit_shared(
        &self,
        lock: &TargetLock,
        m: &Arc<Manifest>,
        prev: Option<&Manifest>,
        kind: CommitKind,
    ) -> Result<()> {
        self.commit_in(lock, m, prev, kind, self.manifest_deltas, Some(Arc::clone(m)))
    }

    /// [`commit`](Self::commit) in the format `deltas` says (`init --manifest-format`
    /// switches a target's format with `Policy` or `Off`); `keep`: `m` itself, kept
    /// for the next step 1 (`None`: only the slots are).
    pub(super) fn commit_in(
        &self,
        lock: &TargetLock,
        m: &Manifest,
        prev: Option<&Manifest>,
        kind: CommitKind,
        deltas: ManifestDeltas,
        keep: Option<Arc<Manifest>>,
    ) -> Result<()> {
        let (before, unsynced) = match kind {
            CommitKind::Final => {
                (Some(failpoint::Point::DrainAfterTempManifest), Some(failpoint::Point::DrainAfterRename))
            }
            CommitKind::Intent => {
                (Some(failpoint::Point::DrainBeforeIntent), Some(failpoint::Point::DrainIntentUnsynced))
            }
            CommitKind::First => (None, Some(failpoint::Point::InitSlotUnsynced)),
            CommitKind::Other => (None, None),
        };
        if let Some(p) = before {
            failpoint::hit(p);
        }
        let current = self.check_epoch(lock, prev.map(|p| p.epoch), "during this round")?;
        // The slots as check_epoch left them (none before a first manifest). A delta goes
        // onto the current slot's chain (docs/design.md "Manifest deltas, format version
        // 3") where deltas are on and the chain takes it.
        let seen = lock.seen().filter(|_| current.is_some());
        // The target's format is its current base's: a version-3 base has a chain. A
        // new target's is 3 (docs/design.md "Manifest deltas, format version 3").
        let deltas = match deltas {
            ManifestDeltas::FollowTarget if seen.is_some_and(|s| s.chain.is_some()) => ManifestDeltas::Policy,
            ManifestDeltas::FollowTarget if kind == CommitKind::First => ManifestDeltas::Policy,
            ManifestDeltas::FollowTarget => ManifestDeltas::Off,
            other => other,
        };
        let delta = match (prev, seen) {
            (Some(prev), Some(seen)) if deltas != ManifestDeltas::Off => seen.chain.and_then(|chain| {
                let body = m.encode_delta(prev);
                chain.takes(body.len(), deltas == ManifestDeltas::Always).then_some((seen, chain, body))
            }),
            _ => None,
        };
        let seen = if let Some((seen, chain, body)) = delta {
            let chain = slots::append_delta(lock.file(), lock.path(), seen.current, &chain, &body, unsynced)?;
            Some(SlotsSeen { epoch: m.epoch, chain: Some(chain), ..seen })
        } else {
            // A snapshot into the other slot (a version-3 base when deltas are on).
            let index = current.map_or(0, |i| 1 - i);
            let version = if deltas == ManifestDeltas::Off { FORMAT_VERSION } else { DELTA_FORMAT_VERSION };
            let (written, chain) = slots::write_as(lock.file(), lock.path(), index, m, version, unsynced)?;
            seen.map(|mut seen| {
                seen.headers[index] = written;
                SlotsSeen { current: index, epoch: m.epoch, chain, ..seen }
            })
        };
        self.durable_epoch.store(m.epoch, Ordering::Relaxed);
        self.remember_slots(lock, seen, keep);
        Ok(())
    }

    /// Lock lost, decided by the manifest: the slots must still hold `expected` as the
    /// current manifest's epoch (`None`: no manifest yet — a first manifest may go over
    /// a torn first attempt, see `current_manifest`). Returns the current slot.
    pub(super) fn check_epoch(&self, lock: &TargetLock, expected: Option<u64>, when: &str) -> Result<Option<usize>> {
        // Fast path: the slot a commit by anyone else would have written is unchanged.
        if let Some(seen) = lock.seen().filter(|s| Some(s.epoch) == expected) {
            let other = 1 - seen.current;
            if slots::read_header(lock.file(), lock.path(), other)? == seen.headers[other]
                && seen
                    .chain
                    .map_or(Ok(true), |c| slots::chain_end_untouched(lock.file(), lock.path(), seen.current, &c))?
            {
                return Ok(Some(seen.current));
            }
        }
        let (slots, headers) = slots::read_with_headers(lock.file(), lock.path())?;
        let current = match slots.into_current_with_chain(lock.path()) {
            Err(Error::CorruptManifest { .. }) if expected.is_none() => None,
            r => r?,
        };
        let on_disk = current.as_ref().map(|(_, c, _)| c.epoch);
        if on_disk != expected {
            self.remember_slots(lock, None, None);
            return Err(Error::LockLost {
                target: self.target.clone(),
                detail: format!(
                    "the manifest's epoch changed from {expected:?} to {on_disk:?} {when}: another compactor \
                     committed, so this one no longer held the lock"
                ),
            });
        }
        let seen =
            current.as_ref().map(|(i, c, chain)| SlotsSeen { current: *i, epoch: c.epoch, headers, chain: *chain });
        self.remember_slots(lock, seen, current.map(|(_, c, _)| Arc::new(c)));
        Ok(seen.map(|s| s.current))
    }

    /// Lock lost, decided by an I/O error: EIO after the lock was granted means the lock
    /// may be lost (Linux does not recover lost NFS locks).
    pub(super) fn lost_or_io(&self, what: &str, e: std::io::Error) -> Error {
        if e.raw_os_error() == Some(libc::EIO) {
            Error::LockLost { target: self.target.clone(), detail: format!("EIO while {what}") }
        } else {
            Error::io(format!("{what} ({})", self.target.display()), e)
        }
    }
}

impl Round<'_> {
    /// Step 2: open the target the manifest names, check it is that file and not
    /// shorter than what was committed. Returns the file, its inode and its size.
    fn open_target(&mut self) -> Result<(File, u64, u64)> {
        let c = self.compactor;
        let (mut file, mut size, mut ino) = if let Some(Ok(read_in_step_1)) = self.early.take() {
            read_in_step_1
        } else {
            let file = c.open_target(&self.manifest)?;
            let (size, ino) = c.target_len_and_ino(&file)?;
            (file, size, ino)
        };
        (file, size, ino) = c.read_again_if_changed(&self.manifest, (file, size, ino))?;
        let committed_len = self.manifest.committed_len;
        let ino = c.check_identity(ino, &self.manifest)?;
        if size < committed_len {
            return Err(Error::TargetTruncated { target: c.target.clone(), len: size, committed_len, gone: false });
        }
        c.check_committed_end(&file, committed_len, None)?;
        Ok((file, ino, size))
    }

    /// Step 3's checks come before anything is cut: each journal against its watermark
    /// (chained hash) — a journal that recorded more than this manifest holds proves
    /// the manifest stale, whatever its intent says. True when any has lines to drain.
    fn check_journals(&mut self) -> Result<bool> {
        let m = &self.manifest;
        let mut checked = Vec::with_capacity(self.journals.len());
        for (index, j) in self.journals.iter().enumerate() {
            if m.retired.contains_key(&j.id()) && !j.is_in_place() {
                // Retired (by another process) since this handle was opened: not a copy.
                self.retired_under_us.push(index);
                continue;
            }
            checked.push(j);
        }
        // Each journal's check reads only that journal: with many, on a few threads.
        let ceilings = map_each_journal(&checked, |j| Compactor::check_journal(j, m));
        let mut pending = false;
        for (j, ceiling) in checked.iter().zip(ceilings) {
            pending |= ceiling? > m.watermarks.get(&j.id()).map_or(0, |w| w.last_seq);
        }
        Ok(pending)
    }

    /// Step 3, the tail: bytes past `committed_len` are cut only under an intent that
    /// announced them (rule 4); anything else is someone else's, or the manifest is
    /// older than the target. The fence (rule 3) comes first: the epoch moves before
    /// the target is touched, so a holder that lost its lock with these bytes
    /// uncommitted fails its epoch check instead of committing them after they are
    /// gone. The intent stays (it covers the tail until it is cut, and this round).
    fn cut_announced_tail(&mut self, file: &File, ino: u64, size: u64) -> Result<()> {
        let c = self.compactor;
        let tail = size - self.manifest.committed_len;
        if tail == 0 {
            return Ok(());
        }
        let m = &self.manifest;
        let covered = m.intent.filter(|i| i.start == m.committed_len).map_or(0, |i| i.max_len);
        if tail > covered {
            return Err(Error::UnexpectedTail { target: c.target.clone(), tail_bytes: tail, max_round_bytes: covered });
        }
        let fenced = c.with_intent(m, ino, covered);
        c.commit(&self.lock, &fenced, Some(m), CommitKind::Intent)?;
        self.manifest = fenced;
        fault::check(fault::Step::TargetTruncate).map_err(|e| c.lost_or_io("truncating the uncommitted tail", e))?;
        file.set_len(self.manifest.committed_len).map_err(|e| c.lost_or_io("truncating the uncommitted tail", e))?;
        file.sync_all().map_err(|e| c.lost_or_io("fsync after truncating", e))?;
        self.report.repaired_tail_bytes = tail;
        failpoint::hit(failpoint::Point::DrainAfterTruncate);
        Ok(())
    }

    /// Nothing to write: keep the manifest for the next step 1 (it is the one the
    /// slots hold), unlock, and catch up records that lag the manifest.
    fn idle(self) -> Result<(DrainReport, Arc<Manifest>)> {
        let Round { compactor, journals, lock, manifest, report, .. } = self;
        let manifest = Arc::new(manifest);
        if let Some(seen) = lock.seen().filter(|s| s.epoch == manifest.epoch) {
            compactor.remember_slots(&lock, Some(seen), Some(Arc::clone(&manifest)));
        }
        drop(lock);
        compactor.catch_up_records(journals, &manifest, &[])?;
        Ok((report, manifest))
    }

    /// Step 4, first: the intent, committed before the round's first byte (unless the
    /// fence already announced this round). O12: an intent another holder wrote and
    /// died before syncing is made durable first — nothing may be written on the word
    /// of a slot a power cut could take back.
    fn announce(&mut self, ino: u64) -> Result<()> {
        let c = self.compactor;
        let m = &self.manifest;
        if !m.intent.is_some_and(|i| i.start == m.committed_len && i.max_len >= c.max_tail()) {
            let announced = c.with_intent(m, ino, 0);
            c.commit(&self.lock, &announced, Some(m), CommitKind::Intent)?;
            self.manifest = announced;
            self.report.epoch = self.manifest.epoch;
        } else if c.durable_epoch.load(Ordering::Relaxed) != m.epoch {
            fault::check(fault::Step::ManifestSlotFdatasync).map_err(|e| Error::io("fdatasync of the lock file", e))?;
            let lock = &self.lock;
            lock.file().sync_data().map_err(|e| Error::io(format!("fdatasync of {}", lock.path().display()), e))?;
            c.durable_epoch.store(m.epoch, Ordering::Relaxed);
        }
        failpoint::hit(failpoint::Point::DrainAfterIntent);
        Ok(())
    }

    /// Step 4, then: the new lines of each journal, bounded by `max_round_bytes` and
    /// `max_round_time`, streamed to the target at `committed_len` (explicit offsets).
    /// `self.manifest` becomes the last intent the writer committed.
    fn write_new_lines(&mut self, file: &File, rotation: usize) -> Result<Written> {
        let c = self.compactor;
        let (max_bytes, max_time) = c.round_bounds(self.lock.was_queued());
        let deadline = deadline_after(max_time);
        let staged = std::mem::take(&mut self.staged);
        let mut out = ChunkWriter::new(c, &self.lock, file, &self.manifest);
        let mut taken = Vec::new();
        let n = self.journals.len();
        for k in 0..n {
            let budget = max_bytes.saturating_sub(out.total());
            if budget == 0 || (Instant::now() >= deadline && out.total() > 0) {
                break;
            }
            let index = (rotation + k) % n.max(1);
            if self.retired_under_us.contains(&index) {
                continue;
            }
            let j = &self.journals[index];
            let (after, chain) = self.manifest.watermarks.get(&j.id()).map_or((0, 0), |w| (w.last_seq, w.chain));
            let first_of_round = out.total() == 0;
            if let Some(t) =
                j.drain_after(after, chain, budget, first_of_round, deadline, &mut |bytes, crc| out.push(bytes, crc))?
            {
                taken.push((Source::Local(index), t));
            }
        }
        self.take_staged(staged, (max_bytes, deadline), &mut out, &mut taken)?;
        if taken.is_empty() {
            return Ok(Written { taken, len: 0, crc: 0 });
        }
        let (len, crc, announced) = out.finish()?;
        self.manifest = announced;
        failpoint::hit(failpoint::Point::DrainAfterWrite);
        Ok(Written { taken, len, crc })
    }

    /// Step 4, after this host's journals: the staged batches (step S) that follow the
    /// watermark as this round has moved it so far — one journal's batches in seq
    /// order, at most one per `(journal, first_seq)` (design, amendment 1) — while the
    /// round's budget lasts. A journal without a watermark takes only a first batch
    /// (seq 1, chain 0) and only if it is not retired and not below the horizon (rule
    /// 2 at commit time, amendment 2).
    fn take_staged(
        &self,
        mut staged: Vec<StagedBatch>,
        (max_bytes, deadline): (u64, Instant),
        out: &mut ChunkWriter<'_>,
        taken: &mut Vec<(Source, Taken)>,
    ) -> Result<()> {
        if staged.is_empty() {
            return Ok(());
        }
        let m = &self.manifest;
        let mut running: std::collections::HashMap<JournalId, (u64, u64)> =
            m.watermarks.iter().map(|(id, w)| (*id, (w.last_seq, w.chain))).collect();
        for (source, t) in taken.iter() {
            running.insert(source.journal_id(self.journals), (t.last_seq, t.chain));
        }
        staged.sort_by_key(|s| (s.batch.journal_id, s.batch.first_seq));
        for StagedBatch { from, batch: b } in staged {
            if m.retired.contains_key(&b.journal_id) {
                continue;
            }
            let at = running.get(&b.journal_id).copied().unwrap_or((0, 0));
            if (b.first_seq - 1, b.chain_before) != at {
                continue;
            }
            // rule 2(c) for a journal the target holds no watermark for (an admitted one
            // has a watermark, even at seq 0)
            if !m.watermarks.contains_key(&b.journal_id) && m.horizon != 0 && b.first_line_ms < m.horizon {
                continue;
            }
            let len = b.data.len() as u64;
            if out.total() > 0 && (out.total() + len > max_bytes || Instant::now() >= deadline) {
                continue;
            }
            out.push(&b.data, None)?;
            running.insert(b.journal_id, (b.last_seq(), b.chain_after));
            taken.push((
                Source::Staged(b.journal_id, from),
                Taken {
                    lines: b.count,
                    bytes: len,
                    last_seq: b.last_seq(),
                    last_crc: b.last_crc,
                    chain: b.chain_after,
                    // made durable by its stager before it was staged (O14)
                    durable: true,
                },
            ));
        }
        Ok(())
    }

    /// Step 4, last: O3 — the rows this round read are durable in their journals
    /// before the manifest covers them (a `normal` writer's commit is visible before
    /// it is; a journal whose newest row taken is marked `durable` is already: its
    /// `full` commit was fsynced before it was visible, covering every earlier frame)
    /// — then one fdatasync of the target.
    fn make_durable(&self, file: &File, written: &Written) -> Result<()> {
        let c = self.compactor;
        // (a staged batch's rows were made durable by its stager, before it staged them)
        let unsynced: Vec<_> =
            written.local().into_iter().filter(|(i, t)| !self.journals[*i].durable_without_sync(t)).collect();
        for_each_journal(&unsynced, |(index, _)| self.journals[*index].sync_for_drain())?;
        fault::check(fault::Step::TargetFdatasync).map_err(|e| c.lost_or_io("fdatasync of the target", e))?;
        file.sync_data().map_err(|e| c.lost_or_io("fdatasync of the target", e))?;
        failpoint::hit(failpoint::Point::DrainAfterFsync);
        if failpoint::is_set(failpoint::Point::DrainLoseLock) {
            self.lock.vanish();
            failpoint::hit(failpoint::Point::DrainLoseLock);
        }
        Ok(())
    }

    /// Step 4, after the fsyncs: the target is still the file this round wrote, whole
    /// (docs/design.md step 4) — its path names that inode, its size reaches the
    /// round's end, and no hole lies between its last committed byte and that end. A
    /// `truncate` during the round (logrotate `copytruncate`) left zeros under the
    /// round's later writes, and a replacement left them in an unlinked file; both
    /// were committed, and the journals' rows deleted (an outside tester). Nothing is
    /// committed then: the bytes stay an announced tail, the lines in their journals.
    fn check_target_whole(&self, file: &File, ino: u64, written: &Written) -> Result<()> {
        let c = self.compactor;
        self.target_whole(file, ino, written).or_else(|e| {
            // A holder that lost its lock sees the new holder's cut of its bytes as a
            // truncation: that is `lock_lost` (retried), not a target to stop for.
            c.check_epoch(&self.lock, Some(self.manifest.epoch), "before this round's commit")?;
            Err(e)
        })
    }

    /// [`check_target_whole`](Self::check_target_whole)'s checks.
    fn target_whole(&self, file: &File, ino: u64, written: &Written) -> Result<()> {
        let c = self.compactor;
        let committed_len = self.manifest.committed_len;
        let end = committed_len + written.len;
        // By name: on a network filesystem a lookup may be answered from the client's
        // cache (an older inode after another host's rotation), so there only the
        // descriptor's own size and holes are checked.
        if !c.target_on_network.get().copied().unwrap_or(false) {
            match std::fs::symlink_metadata(&c.target) {
                Ok(md) if md.ino() == ino => {}
                Ok(md) => {
                    return Err(c.missing(format!(
                        "the file at its path (inode {}) is not the one this round wrote (inode {ino}): the target \
                         was replaced during the round (a copy moved over it? logrotate `create`?). Nothing of this \
                         round was committed; its lines stay in their journals. Put the target's file back (rotate a \
                         tributary target with managed rotation: compact --rotate-bytes)",
                        md.ino()
                    )))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::TargetTruncated { target: c.target.clone(), len: 0, committed_len, gone: true })
                }
                Err(e) => return Err(c.lost_or_io("looking up the target before the commit", e)),
            }
        }
        let (len, _) =
            crate::os::sys::fresh_len_and_ino(file).map_err(|e| c.lost_or_io("reading the target's size", e))?;
        if len < end {
            return Err(Error::cut_during_round(&c.target, len, committed_len, end));
        }
        c.check_committed_end(file, committed_len, Some(end))?;
        // No hole in what the round wrote: a truncation its later writes covered (a
        // hole of whole blocks; a smaller one is caught by the size check before each
        // write, `writer.rs`).
        let from = committed_len.saturating_sub(1);
        match crate::os::sys::first_hole_from(file, from) {
            // A filesystem may keep zeros as a hole (ZFS with compression; a line may
            // hold NUL bytes): only bytes that are not what the round wrote are a cut.
            Ok(Some(hole)) if hole < end && !self.reads_back_as_written(file, written)? => {
                Err(Error::TargetHole { target: c.target.clone(), hole, committed_len, round_end: Some(end) })
            }
            Ok(_) => Ok(()),
            Err(e) => Err(c.lost_or_io("looking for holes in the target (lseek SEEK_HOLE)", e)),
        }
    }

    /// Whether the round's bytes read back from the target carry the CRC the round
    /// computed as it wrote them (only when a hole was reported among them).
    fn reads_back_as_written(&self, file: &File, written: &Written) -> Result<bool> {
        use std::os::unix::fs::FileExt;
        let c = self.compactor;
        let start = self.manifest.committed_len;
        let mut crc = crc32fast::Hasher::new_with_initial_len(self.manifest.committed_crc, start);
        let mut buf = vec![0u8; 8 << 20];
        let mut at = start;
        crate::os::fs::uncache_if_shared(file).map_err(|e| c.lost_or_io("reading back the round's bytes", e))?;
        while at < start + written.len {
            let n = usize::try_from((start + written.len - at).min(buf.len() as u64)).unwrap_or(buf.len());
            file.read_exact_at(&mut buf[..n], at).map_err(|e| c.lost_or_io("reading back the round's bytes", e))?;
            crc.update(&buf[..n]);
            at += n as u64;
        }
        Ok(crc.finalize() == written.crc)
    }

    /// Step 5: the new manifest, epoch checked just before the slot write; the round's
    /// intent is fulfilled.
    fn commit_lines(&self, written: &Written) -> Result<Arc<Manifest>> {
        let m = &self.manifest;
        let mut next = m.clone();
        next.epoch += 1;
        next.intent = None;
        next.committed_crc = written.crc;
        next.committed_len += written.len;
        for (source, t) in &written.taken {
            next.committed_lines += t.lines;
            let id = source.journal_id(self.journals);
            let anchor = m.watermarks.get(&id).map_or(0, |w| w.anchor);
            next.watermarks.insert(
                id,
                Watermark { journal_id: id, last_seq: t.last_seq, crc: t.last_crc, chain: t.chain, anchor },
            );
        }
        self.compactor.expire(&mut next);
        let next = Arc::new(next);
        self.compactor.commit_shared(&self.lock, &next, Some(m), CommitKind::Final)?;
        Ok(next)
    }
}

/// Journals a round works on one after the other; more are shared among a few threads.
const SEQUENTIAL_JOURNALS: usize = 16;
/// Threads a round's per-journal work is shared among, at most.
const JOURNAL_THREADS: usize = 4;

/// Run `work` for each item; returns the first error (in items' order; on threads,
/// every item still runs: each is idempotent). Each item is one journal's
/// independent work (its `-wal` fdatasync, its drained record): with many, a few
/// threads overlap their waits for the disk (100 journals' records, each a WAL header
/// and folder fsync by `SQLite`, were most of a round's wall).
fn for_each_journal<T: Sync>(items: &[T], work: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    if items.len() < SEQUENTIAL_JOURNALS {
        return items.iter().try_for_each(&work);
    }
    map_each_journal(items, work).into_iter().collect()
}

/// `work` on each journal's item, on a few threads when there are many (as
/// [`for_each_journal`]); every result, in the items' order.
fn map_each_journal<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = if items.len() < SEQUENTIAL_JOURNALS {
        1
    } else {
        JOURNAL_THREADS.min(items.len() / (SEQUENTIAL_JOURNALS / 2))
    };
    map_on_threads(items, threads, work)
}

/// `work` on each item, the items shared in order among up to `threads` scoped threads
/// (on the calling thread for a part whose thread cannot be started); the results in
/// the items' order. A panic in one item's work is re-raised here, as it would be
/// inline.
pub(super) fn map_on_threads<T: Sync, R: Send>(items: &[T], threads: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if threads <= 1 || items.len() < 2 {
        return items.iter().map(&work).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let work = &work;
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(per_thread)
            .map(|part| {
                let spawned =
                    std::thread::Builder::new().spawn_scoped(scope, move || part.iter().map(work).collect::<Vec<_>>());
                (part, spawned)
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|(part, spawned)| match spawned {
                Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Err(_) => part.iter().map(work).collect(),
            })
            .collect()
    })
}

/// Each journal once: the same file twice is a caller's mistake; two files with one
/// journal id are a copy (restored or cloned).
fn check_given_once(journals: &[Journal]) -> Result<()> {
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
    Ok(())
}
