//! Staging, the compactor's side (docs/design.md "Staging: one round commits every
//! host's lines"), in the order it runs: the stager's pass before a round asks for the
//! lock (this host's new lines copied to its stage file on the share), step S of the
//! round (every stage file's batches that may follow the manifest), and the stage
//! file's resets.
//!
//! Keeps: a stager copies only rows it made durable in their journal first (O2, O3),
//! and only from journals that pass the round's journal check against the manifest it
//! read; the round takes a staged batch only when it follows the watermark as the
//! round has moved it so far (`round::Round::take_staged`); a stage file holds copies
//! (a reset or a deletion drops none of the journals' rows, which are deleted only by a
//! record made under the lock), and is deleted only by a holder that took that file's
//! own lock. A failed stager pass loses nothing: the journal keeps its rows, and the
//! host's own round drains them as without staging.

use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::time::Instant;

use super::Compactor;
use crate::error::{Error, Result};
use crate::journal::{Journal, JournalId};
use crate::os::clock::deadline_after;
use crate::target::manifest::Manifest;
use crate::target::slots;
use crate::target::stage::{self, Batch, StageFile};

/// Most bytes one stager pass copies (a round takes up to `max_round_bytes` from all
/// stage files together).
const STAGE_PASS_BYTES: u64 = 8 << 20;
/// A stage file that reached this length takes no more batches until it is reset.
const STAGE_FILE_MAX_BYTES: u64 = 64 << 20;

/// The test seam's variable for compactors in child processes: `on` stages.
#[doc(hidden)]
pub const STAGING_VAR: &str = "TRIBUTARY_STAGING";

/// Whether [`STAGING_VAR`] asks for staging.
pub(super) fn staging_from_env() -> bool {
    match std::env::var(STAGING_VAR).as_deref() {
        Err(_) | Ok("" | "off") => false,
        Ok("on") => true,
        Ok(other) => {
            // a misspelt value would make a test pass without taking the path
            eprintln!("tributary: {STAGING_VAR}=`{other}` is not on or off; staging stays off");
            false
        }
    }
}

/// This compactor's stage file and what the current generation of it holds.
#[derive(Debug)]
pub(super) struct Stager {
    /// Made by the first pass that stages a batch (generation 1).
    file: Option<StageFile>,
    /// Every batch of this generation, in the order staged.
    batches: Vec<StagedSpan>,
}

/// What a stager remembers of a batch it staged.
#[derive(Debug, Clone, Copy)]
struct StagedSpan {
    journal_id: JournalId,
    first_seq: u64,
    last_seq: u64,
    /// The journal's chain through `last_seq`.
    chain_after: u64,
    /// Its first line's stamp when it starts at seq 1.
    first_line_ms: Option<u64>,
}

impl StagedSpan {
    fn is_dead(&self, m: &Manifest) -> bool {
        is_dead(m, &self.journal_id, self.first_seq, self.last_seq, self.first_line_ms)
    }
}

/// What a stager pass did.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct StagePass {
    /// Every line the journals held past their watermarks is in the stage file (none
    /// left for lack of budget or time, no journal skipped by its check): the round
    /// may be left to whoever holds the lock.
    pub(super) complete: bool,
}

/// A batch read in step S, and the stage file it came from (for the report).
pub(super) struct StagedBatch {
    pub(super) from: PathBuf,
    pub(super) batch: Batch,
}

/// Whether `b` can never follow `m` (design, amendment 2 and 3): its journal retired,
/// its lines at or below the watermark, or a first batch below the horizon.
fn is_dead(m: &Manifest, id: &JournalId, first_seq: u64, last_seq: u64, first_line_ms: Option<u64>) -> bool {
    if m.retired.contains_key(id) {
        return true;
    }
    match m.watermarks.get(id) {
        Some(w) => last_seq <= w.last_seq,
        None => first_seq == 1 && m.horizon != 0 && first_line_ms.is_some_and(|ms| ms < m.horizon),
    }
}

impl Compactor {
    /// The stager's pass, without the target's lock: for each journal with rows past
    /// both its watermark (in a lock-free read of the manifest) and what this stage
    /// file already holds, read them, make them durable in the journal (O2, O3), and
    /// append them as one batch; one fdatasync, then the header (O14). First, a file
    /// whose batches the manifest read leaves none able to follow is reset: a wrong
    /// reset (a lock-free read can show a slot a fence later undoes) only delays lines
    /// until this host's own round, since a stage file holds copies and the journal
    /// keeps its rows until a record made under the lock (amendment 4 is about
    /// records).
    pub(super) fn stage(&self, journals: &[Journal]) -> Result<StagePass> {
        let Some(m) = slots::read_unlocked(&self.sidecar.lock)? else { return Ok(StagePass::default()) };
        self.reset_stage_if_covered(&m);
        if journals.is_empty() {
            return Ok(StagePass { complete: true });
        }
        let mut guard = self.stager.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.as_ref().and_then(|s| s.file.as_ref()).is_some_and(|f| !f.still_named()) {
            *guard = None; // deleted under us (amendment 7): a new file
        }
        if guard.as_ref().and_then(|s| s.file.as_ref()).is_some_and(|f| f.header().staged_len >= STAGE_FILE_MAX_BYTES) {
            return Ok(StagePass::default());
        }
        let empty = Stager { file: None, batches: Vec::new() };
        let stager = guard.get_or_insert(empty);
        let generation = stager.file.as_ref().map_or(1, |f| f.header().generation);
        let deadline = deadline_after(self.opts.max_round_time);
        let mut budget = STAGE_PASS_BYTES;
        let mut batches = Vec::new();
        let mut complete = true;
        for j in journals {
            if budget == 0 || Instant::now() >= deadline {
                complete = false;
                break;
            }
            let id = j.id();
            if m.retired.contains_key(&id) {
                complete = false; // the round finds out why (retired under this handle, or a copy)
                continue;
            }
            // Judged as a round judges it, against the manifest read here: a clone or a
            // restored copy is not staged (the round under the lock reports it); an
            // older manifest than the journal's record only means "not now".
            if Self::check_journal(j, &m).is_err() {
                complete = false;
                continue;
            }
            let wm = m.watermarks.get(&id).map_or((0, 0), |w| (w.last_seq, w.chain));
            // Past what this file holds — only if this journal's own lines lead there:
            // a journal restored from a copy since then would otherwise have its new
            // lines staged as the continuation of lines it no longer has.
            let last_staged = stager.batches.iter().rev().find(|b| b.journal_id == id);
            let from = match last_staged.map(|b| (b.last_seq, b.chain_after)) {
                Some(s) if s.0 > wm.0 && j.chain_through(wm.0, wm.1, s.0)? == Some(s.1) => s,
                _ => wm,
            };
            let mut data = Vec::new();
            let taken = j.drain_after(from.0, from.1, budget, true, deadline, &mut |bytes, _| {
                data.extend_from_slice(bytes);
                Ok(())
            })?;
            let Some(t) = taken else { continue };
            // O2, then O3: the rows read are durable in the journal before their copy
            // can be committed (a `normal` commit after this fdatasync is not in `data`).
            j.ensure_names_durable()?;
            if !j.durable_without_sync(&t) {
                j.sync_for_drain()?;
            }
            let first_line_ms = if from.0 == 0 { j.first_line_ms()?.unwrap_or(0) } else { 0 };
            // count, chain and last CRC as the drain read them (the holder recomputes
            // them from the bytes it reads back)
            let batch = Batch {
                generation,
                journal_id: id,
                first_seq: from.0 + 1,
                count: t.lines,
                chain_before: from.1,
                chain_after: t.chain,
                first_line_ms,
                data,
                last_crc: t.last_crc,
            };
            budget = budget.saturating_sub(t.bytes);
            // the read stopped at the budget or the clock, not at the journal's end
            // (lines appended since are staged by the next pass, as they would be read
            // by the next round)
            complete &= budget > 0 && Instant::now() < deadline;
            batches.push(batch);
        }
        if batches.is_empty() {
            return Ok(StagePass { complete });
        }
        if stager.file.is_none() {
            // made on the first pass with lines to stage, so a host with none makes none
            let created = StageFile::create(&self.sidecar.dir)
                .map_err(|e| Error::io(format!("creating a stage file in {}", self.sidecar.dir.display()), e))?;
            stager.file = Some(created);
        }
        let file = stager.file.as_mut().expect("made above");
        if let Err(e) = file.append(&batches) {
            let path = file.path().display().to_string();
            *guard = None; // what the file holds past its header is unknown: a new file next time
            return Err(Error::io(format!("writing stage file {path}"), e));
        }
        stager.batches.extend(batches.iter().map(|b| StagedSpan {
            journal_id: b.journal_id,
            first_seq: b.first_seq,
            last_seq: b.last_seq(),
            chain_after: b.chain_after,
            first_line_ms: (b.first_seq == 1).then_some(b.first_line_ms),
        }));
        Ok(StagePass { complete })
    }

    /// Step S, under the lock: the batches of every stage file that may follow `m`
    /// (not dead by [`is_dead`]); the round tests each against its running watermark.
    /// Each file is read from its first batch that was not dead the last time (a
    /// cursor per file and generation), up to its share of `max_round_bytes` (at least
    /// 1 MiB; its later batches are read once the earlier ones are committed), the files
    /// concurrently (on a network filesystem each read is a server round trip) and from
    /// `rotation` on. A file that cannot be read is skipped (its lines are still in
    /// their journals). A file read to its end whose batches are all dead, and whose
    /// own lock is free (its compactor stopped), is deleted; so is a creation's
    /// leftover. Descriptors are kept between rounds (an open is a round trip too);
    /// `O_DIRECT` reads through them are never served from a cache.
    pub(super) fn staged_candidates(&self, m: &Manifest, rotation: usize) -> Vec<StagedBatch> {
        let Ok((mut files, leftovers)) = stage::list(&self.sidecar.dir) else { return Vec::new() };
        for path in leftovers {
            delete_if_abandoned(&path);
        }
        if !files.is_empty() {
            let n = files.len();
            files.rotate_left(rotation % n);
        }
        let share = (self.opts.max_round_bytes / (files.len().max(1) as u64)).max(1 << 20);
        let mut kept = self.stage_fds.lock().unwrap_or_else(PoisonError::into_inner);
        kept.retain(|path, _| files.contains(path)); // deleted files are not read again
        let mut fresh = Vec::new(); // opened for this round only, past the bound on kept ones
        for path in &files {
            if kept.contains_key(path) {
                continue;
            }
            let Ok(file) = stage::open_to_read(path) else { continue };
            let reading = KeptStageFile { file, cursor: None };
            if kept.len() < KEPT_STAGE_FILES {
                kept.insert(path.clone(), reading);
            } else {
                fresh.push((path.clone(), reading));
            }
        }
        let mut reads: Vec<(&PathBuf, &mut KeptStageFile)> = kept.iter_mut().collect();
        reads.extend(fresh.iter_mut().map(|(p, k)| (&*p, k)));
        reads.sort_by_key(|(p, _)| files.iter().position(|f| f == *p));
        let results = super::round::map_on_threads(&reads, STAGE_READ_THREADS, |(_, k)| scan(k, m, share));
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut abandoned = Vec::new();
        for ((path, reading), scan) in reads.into_iter().zip(results) {
            let Ok(scan) = scan else { continue };
            reading.cursor = scan.cursor;
            if scan.live.is_empty() && scan.complete {
                abandoned.push(path.clone());
            }
            for batch in scan.live {
                if bytes < self.opts.max_round_bytes {
                    bytes += batch.data.len() as u64;
                    out.push(StagedBatch { from: path.clone(), batch });
                }
            }
        }
        for path in abandoned {
            if delete_if_abandoned(&path) {
                kept.remove(&path);
            }
        }
        crate::failpoint::hit(crate::failpoint::Point::DrainAfterStagedRead);
        out
    }

    /// Reset this compactor's stage file when `m` leaves none of its batches able to
    /// follow (`m` read without the lock, before a stager pass). A failed reset drops
    /// the file (a new one is made by the next pass; the old one is deleted once dead).
    pub(super) fn reset_stage_if_covered(&self, m: &Manifest) {
        self.reset_stage(|batches| batches.iter().all(|b| b.is_dead(m)));
    }

    /// After this compactor's own round (it held the lock and read its journals
    /// itself): reset its stage file whatever it holds. A stage file holds copies;
    /// what the round did not commit is still in the journals and is staged again by
    /// the next pass (so a batch that can never follow — of a journal set aside, or
    /// admitted — does not keep the file from resetting for ever).
    pub(super) fn reset_stage_after_round(&self) {
        self.reset_stage(|_| true);
    }

    fn reset_stage(&self, when: impl FnOnce(&[StagedSpan]) -> bool) {
        let mut guard = self.stager.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(s) = guard.as_mut() else { return };
        if s.batches.is_empty() || !when(&s.batches) {
            return;
        }
        if s.file.as_mut().is_some_and(|f| f.still_named() && f.reset().is_ok()) {
            s.batches.clear();
        } else {
            *guard = None;
        }
    }
}

/// Stage files whose descriptors a compactor keeps between rounds, at most; more are
/// opened for the round and closed.
const KEPT_STAGE_FILES: usize = 64;
/// Threads step S reads stage files on, at most.
const STAGE_READ_THREADS: usize = 8;

/// A stage file step S reads: its descriptor, and the first batch (generation,
/// offset) that was not dead when last read.
#[derive(Debug)]
pub(super) struct KeptStageFile {
    file: std::fs::File,
    cursor: Option<(u64, u64)>,
}

/// What step S found in one stage file.
struct Scan {
    /// Its batches that may follow the manifest, in file order.
    live: Vec<Batch>,
    /// Where to read it from next round: its first live batch, or past what was read.
    cursor: Option<(u64, u64)>,
    /// It was read to the end of its header's staged length (and has a valid header).
    complete: bool,
}

/// Read one stage file from its cursor, past batches that are dead by `m`, until a read
/// finds a live one or reaches the file's end (a round's share at a time).
fn scan(k: &KeptStageFile, m: &Manifest, share: u64) -> std::io::Result<Scan> {
    let mut cursor = k.cursor;
    loop {
        let staged = stage::read(&k.file, cursor, share)?;
        let Some(header) = staged.header else { return Ok(Scan { live: Vec::new(), cursor: None, complete: false }) };
        let mut first_live = None;
        let mut live = Vec::new();
        for (at, batch) in staged.batches {
            let stamp = (batch.first_seq == 1).then_some(batch.first_line_ms);
            if !is_dead(m, &batch.journal_id, batch.first_seq, batch.last_seq(), stamp) {
                first_live.get_or_insert(at);
                live.push(batch);
            }
        }
        let next = Some((header.generation, first_live.unwrap_or(staged.end)));
        // a read that stopped at a batch that does not check out makes no progress
        let stuck = next == cursor || staged.end == cursor.map_or(stage::FIRST_BATCH_AT, |c| c.1);
        if !live.is_empty() || staged.complete || stuck {
            return Ok(Scan { live, cursor: next, complete: staged.complete });
        }
        cursor = next;
    }
}

/// Delete the stage file at `path` if its lock is free (its compactor stopped; a
/// running one holds it), holding that lock until the name is gone (amendment 7).
/// True when it was deleted.
fn delete_if_abandoned(path: &Path) -> bool {
    let Ok(f) = stage::open_to_write(path) else { return false };
    crate::os::sys::try_lock_exclusive(&f).unwrap_or(false) && std::fs::remove_file(path).is_ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::error::ErrorKind;
    use crate::journal::JournalOptions;
    use crate::target::lock::TargetLock;
    use crate::CompactorOptions;

    #[test]
    fn a_round_that_may_defer_stages_and_leaves_the_commit_to_the_lock_s_holder() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.log");
        let opts = CompactorOptions::default().lock_timeout(Duration::from_millis(300));
        let c = Compactor::new(&target, opts).unwrap().staging(true);
        c.init().unwrap();
        let j = Journal::open(d.path().join("a.journal"), JournalOptions::default()).unwrap();
        for k in 0..5 {
            j.append(format!("line {k}").as_bytes()).unwrap();
        }
        let held = TargetLock::acquire(&c.sidecar.lock, Duration::from_secs(5), false).unwrap();
        // Without leave to defer, the round waits for the lock (and times out here).
        let e = c.round_or_defer(std::slice::from_ref(&j), 0, false, &|| false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LockTimeout, "{e}");
        // With it, the lines are staged and the round returns at once, lock untaken.
        assert!(c.round_or_defer(std::slice::from_ref(&j), 0, true, &|| false).unwrap().is_none());
        let (files, _) = stage::list(&c.sidecar.dir).unwrap();
        assert_eq!(files.len(), 1);
        let staged = stage::read(&stage::open_to_read(&files[0]).unwrap(), None, u64::MAX).unwrap();
        assert_eq!(staged.batches.iter().map(|(_, b)| b.count).sum::<u64>(), 5);
        // Whoever holds the lock next commits them: here a compactor without journals.
        drop(held);
        let holder = Compactor::new(&target, CompactorOptions::default()).unwrap().staging(true);
        assert_eq!(holder.drain(&[]).unwrap().lines, 5);
        let committed = std::fs::read_to_string(&target).unwrap();
        let lines: Vec<String> = (0..5).map(|k| format!("line {k}")).collect();
        assert_eq!(committed, lines.join("\n") + "\n");
        // The stager's own next round, the lock free, records them and stages nothing.
        let (report, _) =
            c.round_or_defer(std::slice::from_ref(&j), 1, true, &|| false).unwrap().expect("the lock was free");
        assert_eq!(report.lines, 0);
        assert_eq!(j.drained_record().unwrap().map(|r| r.seq), Some(5));
    }

    fn lines_of(target: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(target).unwrap().lines().map(str::to_string).collect()
    }

    #[test]
    fn an_abandoned_file_longer_than_a_round_is_committed_whole_before_it_is_deleted() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.log");
        let opts = CompactorOptions::default().max_round_bytes(1 << 20);
        let c = Compactor::new(&target, opts.clone()).unwrap().staging(true);
        c.init().unwrap();
        let j = Journal::open(d.path().join("a.journal"), JournalOptions::default()).unwrap();
        let mut expected = Vec::new();
        for b in 0..5 {
            for k in 0..300 {
                let line = format!("{b}-{k:03}-{}", "x".repeat(990));
                j.append(line.as_bytes()).unwrap();
                expected.push(line);
            }
            assert!(c.stage(std::slice::from_ref(&j)).unwrap().complete);
        }
        drop(c); // its compactor stops: the file's lock is free, 5 batches of ~300 KB staged
        let holder = Compactor::new(&target, opts).unwrap().staging(true);
        let mut rounds = 0;
        while holder.drain(&[]).unwrap().lines > 0 {
            rounds += 1;
            assert!(rounds < 20, "step S makes no progress");
        }
        assert!(rounds >= 2, "1.5 MB staged, 1 MiB rounds: {rounds} round(s)");
        assert_eq!(lines_of(&target), expected, "every staged line, once, in order");
        assert!(stage::list(&holder.sidecar.dir).unwrap().0.is_empty(), "the file is deleted once all is committed");
    }

    #[test]
    fn a_journal_restored_after_staging_is_not_staged_as_the_continuation_of_lines_it_lost() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.log");
        let c = Compactor::new(&target, CompactorOptions::default()).unwrap().staging(true);
        c.init().unwrap();
        let path = d.path().join("a.journal");
        let copy_files = |from: &std::path::Path, to: &std::path::Path| {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(to.join(format!("a.journal{suffix}")));
                let f = from.join(format!("a.journal{suffix}"));
                if f.exists() {
                    std::fs::copy(&f, to.join(format!("a.journal{suffix}"))).unwrap();
                }
            }
        };
        let j = Journal::open(&path, JournalOptions::default()).unwrap();
        for k in 1..=10 {
            j.append(format!("orig {k}").as_bytes()).unwrap();
        }
        c.drain(std::slice::from_ref(&j)).unwrap();
        for k in 11..=15 {
            j.append(format!("orig {k}").as_bytes()).unwrap();
        }
        drop(j);
        let backup = d.path().join("backup");
        std::fs::create_dir(&backup).unwrap();
        copy_files(d.path(), &backup); // a backup holding lines 1..15
        let j = Journal::open(&path, JournalOptions::default()).unwrap();
        for k in 16..=20 {
            j.append(format!("orig {k}").as_bytes()).unwrap();
        }
        assert!(c.stage(std::slice::from_ref(&j)).unwrap().complete); // 11..20 staged, not committed
        drop(j);
        copy_files(&backup, d.path()); // restored: 16..20 are gone from the journal
        let restored = Journal::open(&path, JournalOptions::default()).unwrap();
        for k in 16..=25 {
            restored.append(format!("copy {k}").as_bytes()).unwrap();
        }
        c.stage(std::slice::from_ref(&restored)).unwrap();
        let holder = Compactor::new(&target, CompactorOptions::default()).unwrap().staging(true);
        holder.drain(&[]).unwrap();
        // The lines staged before the restore are the journal's acknowledged lines; the
        // copy's are never joined onto them (its own round refuses it).
        let expected: Vec<String> = (1..=20).map(|k| format!("orig {k}")).collect();
        assert_eq!(lines_of(&target), expected);
        let e = c.drain(std::slice::from_ref(&restored)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::JournalRestored, "{e}");
        assert_eq!(lines_of(&target), expected);
    }

    #[test]
    fn a_deferring_round_allowed_to_create_the_target_creates_it() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.log");
        let c = Compactor::new(&target, CompactorOptions::default().create(true)).unwrap().staging(true);
        let j = Journal::open(d.path().join("a.journal"), JournalOptions::default()).unwrap();
        j.append(b"first").unwrap();
        let (report, _) =
            c.round_or_defer(std::slice::from_ref(&j), 0, true, &|| false).unwrap().expect("nobody holds the lock");
        assert_eq!(report.lines, 1);
        assert_eq!(lines_of(&target), vec!["first".to_string()]);
    }
}
