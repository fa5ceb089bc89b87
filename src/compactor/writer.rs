//! Writing a round's bytes: streamed to the target at `committed_len` in bounded
//! chunks (so a round needs little memory whatever its size), keeping the running CRC.
//!
//! Keeps rule 4 of docs/design.md: every byte written is under a committed intent (a
//! line longer than the intent's bound widens it first); and re-checks the manifest
//! epoch between chunks, so a holder that lost its lease stops as soon as it can tell.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::round::CommitKind;
use super::Compactor;
use crate::error::Result;
use crate::target::lock::TargetLock;
use crate::target::manifest::{Intent, Manifest};
use crate::{failpoint, fault, os::sys};

/// Bytes written between two epoch checks while writing a round's batch.
const WRITE_CHUNK_BYTES: usize = 8 << 20;
/// Slices at least this long are written directly instead of through the buffer.
const DIRECT_WRITE_BYTES: usize = 256 << 10;
/// Start the device writing every this many bytes, so the round's fdatasync overlaps
/// with reading the journals instead of following it.
const WRITEBACK_BYTES: u64 = 4 << 20;

/// Streams a round's bytes to the target at `committed_len` in bounded chunks (so a
/// round needs little memory whatever its size), keeping the running CRC, and
/// re-checking the manifest epoch between chunks: a holder that lost its lease stops
/// as soon as it can tell.
pub(super) struct ChunkWriter<'a> {
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
    pub(super) fn new(compactor: &'a Compactor, lock: &'a TargetLock, file: &'a File, m: &Manifest) -> ChunkWriter<'a> {
        // With the mid_write failpoint armed, write tiny chunks so it falls between two.
        let chunk = if failpoint::is_set(failpoint::Point::DrainMidWrite) { 16 } else { WRITE_CHUNK_BYTES };
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
    pub(super) fn total(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    /// Accept `bytes`; `crc`, when given, is their CRC already computed (a whole run's
    /// data), combined into the running CRC instead of a second pass over them.
    pub(super) fn push(&mut self, bytes: &[u8], crc: Option<&crc32fast::Hasher>) -> Result<()> {
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
            failpoint::hit(failpoint::Point::DrainMidWrite);
            c.check_epoch(self.lock, Some(self.epoch), "while this round was writing")?;
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
            c.commit(self.lock, &wider, Some(&self.announced), CommitKind::Intent)?;
            self.epoch = wider.epoch;
            self.announced = wider;
        }
        if self.written > 0 && !c.target_on_network.get().copied().unwrap_or(false) {
            // Cut since this round's last write (logrotate `copytruncate`)? This write
            // would make it long again over zeros (docs/design.md step 4). Not on a
            // network filesystem, where an fstat is a server round trip per write (the
            // checks before the commit still run there).
            let len = self.file.metadata().map_err(|e| c.lost_or_io("fstat of the target", e))?.len();
            if len < self.offset + self.written {
                // a new holder's cut of a lost holder's bytes: `lock_lost`, retried
                c.check_epoch(self.lock, Some(self.epoch), "while this round was writing")?;
                return Err(crate::error::Error::cut_during_round(
                    &c.target,
                    len,
                    self.offset,
                    self.offset + self.written,
                ));
            }
        }
        fault::check(fault::Step::TargetWrite).map_err(|e| c.lost_or_io("writing to the target", e))?;
        self.file.write_all_at(bytes, self.offset + self.written).map_err(|e| {
            if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
                self.target_full(e)
            } else {
                c.lost_or_io("writing to the target", e)
            }
        })?;
        self.written += bytes.len() as u64;
        if self.written - self.writeback_from >= WRITEBACK_BYTES {
            sys::start_writeback(self.file, self.offset + self.writeback_from, self.written - self.writeback_from);
            self.writeback_from = self.written;
        }
        Ok(())
    }

    /// The target's disk (or quota) is full: a round writes all its lines before it
    /// commits them, so one bigger than the room left never commits, however often it
    /// is retried (an outside tester: `compact` made no progress on a target disk with
    /// less room than a 64 MiB round). Say so, and how to commit what fits.
    fn target_full(&self, e: std::io::Error) -> crate::error::Error {
        let c = self.compactor;
        // What fitted: the file's length past the committed part (a write cut short
        // by the full disk counts too; `written` counts only whole writes).
        let fitted =
            self.file.metadata().map_or(self.written, |m| m.len().saturating_sub(self.offset)).max(self.written);
        // Half of that, in whole 4 KiB: the next round's bytes must fit beside nothing
        // else (its tail is cut first), and what is left on the disk shrinks meanwhile.
        let smaller = (fitted / 2) & !4095;
        // EDQUOT: the quota of the target's owner, not the disk (an outside tester).
        let (full, room) = if e.raw_os_error() == Some(libc::EDQUOT) {
            ("its owner's disk quota is used up", "Raise the quota or free space under it (`quota`, `repquota`)")
        } else {
            ("its disk is full", "Free space on the target's disk")
        };
        let advice = if smaller == 0 {
            format!("{room}: not even 8 KiB fitted")
        } else {
            format!(
                "{room}, or drain in rounds that fit what is left (--max-round-bytes {smaller}, \
                 CompactorOptions::max_round_bytes)"
            )
        };
        crate::error::Error::io(
            format!(
                "writing to the target ({}): {full} after {fitted} byte(s) of this round (a round writes \
                 up to {} bytes before committing any: nothing of this one was committed, and the next drain removes \
                 its bytes first). {advice}",
                c.target.display(),
                c.opts.max_round_bytes
            ),
            e,
        )
    }

    /// Write what is buffered; returns (bytes written, running CRC after them, the
    /// manifest this round committed last).
    pub(super) fn finish(mut self) -> Result<(u64, u32, Manifest)> {
        self.flush()?;
        Ok((self.written, self.crc.finalize(), self.announced))
    }
}
