//! The compactor-facing side of a journal: what a drain reads (rows after a
//! watermark, checked), what it records (how far it was drained, into which target),
//! and giving drained space back to the disk.
//!
//! Keeps: rows a drain read are made durable before the drain commits them
//! ([`Journal::sync_for_drain`], ordering O3 of docs/design.md: a `Normal` commit is
//! visible to other connections before it is durable); every line handed to a drain
//! is checked (length, CRC, contiguous seqs); `drained_seq` only moves forward, and
//! rows are deleted only up to it; a journal whose disk is full can still record.

use std::io;
use std::time::Instant;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::files::{retiring_path, sync_folder, wal_path};
use super::run::{checked_data_hash, line_crc, LineTable};
use super::schema::{self, sql_bound, to_sql};
use super::space::{incremental_vacuum, Unsynced};
use super::Journal;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::target::manifest::chain_step;

/// Checkpoint the WAL after this many drained runs were deleted since the last one.
const CHECKPOINT_EVERY_DELETED_RUNS: u64 = 1_000;

/// Runs deleted per transaction when the journal's disk is full.
const FULL_DISK_DELETE_RUNS: i64 = 32;

/// The journal's own record of how far it was drained, and into which target.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainedRecord {
    /// The id of the target the journal was drained into (32 hex digits).
    pub target_id: String,
    /// The highest seq recorded as committed in that target.
    pub seq: u64,
    /// CRC32 of the line at `seq`.
    pub crc: u32,
    /// The watermark's chained hash at `seq` (`None`: recorded before chains existed).
    pub chain: Option<u64>,
}

/// Where [`Journal::drain_after`] sends whole lines: the bytes, and their CRC when it
/// was already computed (a whole run's data).
pub(crate) type DrainSink<'a> = dyn FnMut(&[u8], Option<&crc32fast::Hasher>) -> Result<()> + 'a;

/// What a drain took from one journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    pub lines: u64,
    pub bytes: u64,
    pub last_seq: u64,
    pub last_crc: u32,
    /// The watermark's chained hash after `last_seq`.
    pub chain: u64,
    /// The run holding `last_seq` is marked `durable`: every line taken is durable in
    /// the journal already, no fdatasync needed (docs/design.md O3).
    pub durable: bool,
}

/// [`files::is_disk_full`](super::files::is_disk_full) for an [`Error`].
fn is_disk_full(e: &Error, journal: &std::path::Path) -> bool {
    matches!(e, Error::Sqlite { source, .. } if super::files::is_disk_full(source, journal))
}

impl Journal {
    /// Highest seq this journal ever assigned.
    pub(crate) fn seq_ceiling(&self) -> Result<u64> {
        let h = schema::head(&*self.lock_conn()?).map_err(|e| Error::sqlite("reading the seq counter", e))?;
        Ok(h.next_seq - 1)
    }

    /// The stored CRC of the line `seq`, if its run is still present.
    pub(crate) fn row_crc(&self, seq: u64) -> Result<Option<u32>> {
        let conn = self.lock_conn()?;
        let run: Option<(i64, i64, Vec<u8>)> = conn
            .prepare_cached(
                "SELECT first_seq, count, line_meta FROM runs WHERE first_seq <= ?1 ORDER BY first_seq DESC LIMIT 1",
            )
            .and_then(|mut st| {
                st.query_row(params![sql_bound(seq)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()
            })
            .map_err(|e| Error::sqlite("reading a line's CRC", e))?;
        let Some((first, count, meta)) = run else { return Ok(None) };
        let (first, count) = self.run_span(first, count, seq)?;
        let k = seq - first;
        if k >= count {
            return Ok(None);
        }
        match LineTable::new(&meta, count) {
            Some(table) => Ok(Some(table.get(k).1)),
            None => Err(self.corrupt(seq, "its run's line table does not match its line count".into())),
        }
    }

    /// The chained hash at `to_seq` computed over this journal's own rows after
    /// `from_seq` (where it is `from_chain`); `None` when a row in that range is no
    /// longer stored (nothing to compare).
    pub(crate) fn chain_through(&self, from_seq: u64, from_chain: u64, to_seq: u64) -> Result<Option<u64>> {
        let conn = self.lock_conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT first_seq, count, line_meta FROM runs
                 WHERE first_seq >= (SELECT coalesce(max(first_seq), 0) FROM runs WHERE first_seq <= ?1)
                   AND first_seq <= ?2 ORDER BY first_seq",
            )
            .map_err(|e| Error::sqlite("preparing the chain read", e))?;
        let mut rows = stmt
            .query(params![sql_bound(from_seq + 1), sql_bound(to_seq)])
            .map_err(|e| Error::sqlite("reading runs for the chain", e))?;
        let (mut chain, mut next) = (from_chain, from_seq + 1);
        while let Some(r) = rows.next().map_err(|e| Error::sqlite("reading runs for the chain", e))? {
            let first = r.get::<_, i64>(0).map_err(|e| Error::sqlite("reading a run", e))?;
            let count = r.get::<_, i64>(1).map_err(|e| Error::sqlite("reading a run", e))?;
            let (first, count) = self.run_span(first, count, next)?;
            let meta: Vec<u8> = r.get(2).map_err(|e| Error::sqlite("reading a run", e))?;
            let Some(table) = LineTable::new(&meta, count) else {
                return Err(self.corrupt(first, "its run's line table does not match its line count".into()));
            };
            for k in 0..count {
                let seq = first + k;
                if seq < next {
                    continue;
                }
                if seq != next || seq > to_seq {
                    break;
                }
                let (len, crc) = table.get(k);
                chain = chain_step(chain, seq, len, crc);
                next = seq + 1;
            }
        }
        Ok((next == to_seq + 1).then_some(chain))
    }

    fn corrupt(&self, seq: u64, detail: String) -> Error {
        Error::CorruptJournalRow { journal: self.path.clone(), seq, detail }
    }

    /// A run row's `line_meta` (column 2) and `data` (column 3) blobs, and its line
    /// table checked against `count`.
    fn run_blobs<'r>(
        &self,
        r: &'r rusqlite::Row<'_>,
        first: u64,
        count: u64,
    ) -> Result<(&'r [u8], &'r [u8], LineTable<'r>)> {
        let (Ok(meta), Ok(data)) = (
            r.get_ref(2).map_err(|_| ()).and_then(|v| v.as_blob().map_err(|_| ())),
            r.get_ref(3).map_err(|_| ()).and_then(|v| v.as_blob().map_err(|_| ())),
        ) else {
            return Err(self.corrupt(first, "its run is not made of blobs".into()));
        };
        let Some(table) = LineTable::new(meta, count) else {
            return Err(self.corrupt(first, "its run's line table does not match its line count".into()));
        };
        Ok((meta, data, table))
    }

    /// A run's `first_seq` and `count` as stored (`SQLite` INTEGERs): negative only in a
    /// damaged row, reported at `at`, the seq being looked for.
    fn run_span(&self, first: i64, count: i64, at: u64) -> Result<(u64, u64)> {
        match (u64::try_from(first), u64::try_from(count)) {
            (Ok(first), Ok(count)) => Ok((first, count)),
            _ => Err(self.corrupt(at, format!("its run has first seq {first} and count {count}"))),
        }
    }

    /// The journal's first-line stamp: the wall-clock ms (its writer's host) at which
    /// its line at seq 1 was appended — kept in `meta` by its first drained record, or
    /// read from that run while it is still stored. `None`: no line yet, or the stamp
    /// is lost (first drained by an older build).
    pub(crate) fn first_line_ms(&self) -> Result<Option<u64>> {
        let conn = self.lock_conn()?;
        let ms: Option<i64> = conn
            .prepare_cached(
                "SELECT coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'first_line_ms'),
                                 (SELECT appended_ms FROM runs WHERE first_seq = 1))",
            )
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(|e| Error::sqlite(format!("reading the first line's stamp in {}", self.path.display()), e))?;
        Ok(ms.and_then(|v| u64::try_from(v).ok()))
    }

    /// The journal's own record of how far it was drained; `None` before its first
    /// recorded drain.
    ///
    /// # Errors
    /// [`Error::Sqlite`] when the record cannot be read; [`Error::CorruptJournalRow`]
    /// when it holds a negative seq or a CRC out of range; [`Error::InvalidArgument`]
    /// in a process forked from the one that opened the handle.
    pub fn drained_record(&self) -> Result<Option<DrainedRecord>> {
        let conn = self.lock_conn()?;
        let (target, seq, crc, chain): (Option<String>, i64, i64, Option<i64>) = conn
            .prepare_cached("SELECT drained_target, drained_seq, drained_crc, drained_chain FROM state WHERE id = 1")
            .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))))
            .map_err(|e| Error::sqlite("reading the drained record", e))?;
        // (seq 0: never drained; a negative one is damage, reported below)
        let Some(target_id) = target.filter(|_| seq != 0) else { return Ok(None) };
        let (Ok(seq), Ok(crc)) = (u64::try_from(seq), u32::try_from(crc)) else {
            return Err(self.corrupt(0, format!("its drained record holds seq {seq} and CRC {crc}")));
        };
        // The chain is a u64 hash stored bit for bit in an INTEGER (see record_drained_tx).
        Ok(Some(DrainedRecord { target_id, seq, crc, chain: chain.map(i64::cast_unsigned) }))
    }

    /// Every line this journal still stores after `after_seq` (drained or not), in seq
    /// order, each handed to `line` with its seq and without its `\n`; each checked
    /// against its stored length and CRC. Reads one snapshot; changes nothing. For
    /// salvaging a copy a drain refuses (`tributary dump`): a clone's lines appended
    /// after it was copied are in no target. Returns how many lines it handed over.
    ///
    /// # Errors
    /// [`Error::CorruptJournalRow`] for a damaged row; [`Error::Sqlite`] when the rows
    /// cannot be read; the first error `line` returns.
    pub fn stored_lines_after(&self, after_seq: u64, line: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<u64> {
        let conn = self.lock_conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT first_seq, count, line_meta, data FROM runs
                 WHERE first_seq >= (SELECT coalesce(max(first_seq), 0) FROM runs WHERE first_seq <= ?1)
                 ORDER BY first_seq",
            )
            .map_err(|e| Error::sqlite("preparing the read of stored lines", e))?;
        let mut rows = stmt.query(params![sql_bound(after_seq + 1)]).map_err(|e| Error::sqlite("reading runs", e))?;
        let mut handed = 0;
        while let Some(r) = rows.next().map_err(|e| Error::sqlite("reading runs", e))? {
            let first = r.get::<_, i64>(0).map_err(|e| Error::sqlite("reading a run", e))?;
            let count = r.get::<_, i64>(1).map_err(|e| Error::sqlite("reading a run", e))?;
            let (first, count) = self.run_span(first, count, after_seq + 1)?;
            let (_, data, table) = self.run_blobs(r, first, count)?;
            let mut pos = 0usize;
            for k in 0..count {
                let seq = first + k;
                let (len, crc) = table.get(k);
                let end = pos + len as usize;
                if data.get(end) != Some(&b'\n') {
                    return Err(self.corrupt(seq, "its length does not match the stored bytes".into()));
                }
                if seq > after_seq {
                    if line_crc(&data[pos..end]) != crc {
                        return Err(self.corrupt(seq, "its bytes do not match the stored CRC".into()));
                    }
                    line(seq, &data[pos..end])?;
                    handed += 1;
                }
                pos = end + 1;
            }
        }
        Ok(handed)
    }

    /// Stream the lines after `after_seq`, in seq order, into `sink` as byte slices of
    /// whole lines (each with its `\n`), checking every line's length, CRC and that the
    /// seqs are contiguous, until `max_bytes` or `deadline`. With `first_of_round`, one
    /// line is taken even if it alone is longer than `max_bytes` (so a round always
    /// progresses); otherwise nothing beyond `max_bytes` is: a round never writes more
    /// than `max(max_round_bytes, longest line + 1)`, the tail the next round may
    /// truncate. `None` when nothing was taken.
    pub(crate) fn drain_after(
        &self,
        after_seq: u64,
        chain_before: u64,
        max_bytes: u64,
        first_of_round: bool,
        deadline: Instant,
        sink: &mut DrainSink<'_>,
    ) -> Result<Option<Taken>> {
        // One statement: it reads one snapshot from its first row to its last.
        let conn = self.lock_conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT first_seq, count, line_meta, data, run_crc, durable FROM runs
                 WHERE first_seq >= (SELECT coalesce(max(first_seq), 0) FROM runs WHERE first_seq <= ?1)
                 ORDER BY first_seq",
            )
            .map_err(|e| Error::sqlite("preparing the drain read", e))?;
        let mut rows = stmt.query(params![sql_bound(after_seq + 1)]).map_err(|e| Error::sqlite("reading runs", e))?;
        let mut taken: Option<Taken> = None;
        let mut expect = after_seq + 1;
        'runs: while let Some(r) = rows.next().map_err(|e| Error::sqlite("reading runs", e))? {
            let first = r.get::<_, i64>(0).map_err(|e| Error::sqlite("reading a run", e))?;
            let count = r.get::<_, i64>(1).map_err(|e| Error::sqlite("reading a run", e))?;
            let (first, count) = self.run_span(first, count, expect)?;
            if first + count <= expect {
                continue; // drained, not yet deleted
            }
            if first > expect {
                return Err(
                    self.corrupt(expect, format!("the line is missing (the next stored run starts at {first})"))
                );
            }
            let (meta, data, table) = self.run_blobs(r, first, count)?;
            // The run's data CRC feeds the target's running CRC; without it, each line
            // taken is checked alone (which also names the bad line).
            let run_hash = checked_data_hash(meta, data, r.get::<_, Option<i64>>(4).ok().flatten());
            // (anything but 1 — NULL from an older writer, or damage — is "not durable")
            let run_durable = matches!(r.get::<_, Option<i64>>(5), Ok(Some(1)));
            let (mut pos, mut slice_start) = (0usize, None::<usize>);
            for k in 0..count {
                let seq = first + k;
                let (line_len, crc) = table.get(k);
                let end = pos + line_len as usize;
                if data.get(end) != Some(&b'\n') {
                    return Err(self.corrupt(seq, "its length does not match the stored bytes".into()));
                }
                if seq >= expect {
                    let t = taken.get_or_insert(Taken {
                        lines: 0,
                        bytes: 0,
                        last_seq: 0,
                        last_crc: 0,
                        chain: chain_before,
                        durable: false,
                    });
                    let would = t.bytes + (end + 1 - slice_start.unwrap_or(pos)) as u64;
                    if (t.lines > 0 || !first_of_round) && would > max_bytes {
                        if let Some(s) = slice_start {
                            sink(&data[s..pos], None)?;
                            t.bytes += (pos - s) as u64;
                        }
                        break 'runs;
                    }
                    if run_hash.is_none() && line_crc(&data[pos..end]) != crc {
                        return Err(self.corrupt(seq, "its bytes do not match the stored CRC".into()));
                    }
                    slice_start.get_or_insert(pos);
                    t.lines += 1;
                    t.last_seq = seq;
                    t.last_crc = crc;
                    t.durable = run_durable;
                    t.chain = chain_step(t.chain, seq, line_len, crc);
                    expect = seq + 1;
                }
                pos = end + 1;
            }
            if pos != data.len() {
                return Err(self.corrupt(first, "its data is longer than its lines".into()));
            }
            if let (Some(s), Some(t)) = (slice_start, taken.as_mut()) {
                sink(&data[s..], if s == 0 { run_hash.as_ref() } else { None })?;
                t.bytes += (data.len() - s) as u64;
            }
            if taken.is_some_and(|t| t.bytes >= max_bytes) || Instant::now() >= deadline {
                break;
            }
        }
        Ok(taken.filter(|t| t.lines > 0))
    }

    /// Step 7 of the drain: record (forward only) that lines up to `seq` are committed
    /// in `target_id`, and delete the runs that are wholly drained. Idempotent; an
    /// older record never wins.
    pub(crate) fn record_drained(&self, target_id: &str, seq: u64, crc: u32, chain: u64) -> Result<()> {
        match self.record_drained_tx(target_id, seq, crc, chain) {
            Err(e) if is_disk_full(&e, &self.path) => {
                self.record_drained_on_a_full_disk(target_id, seq, crc, chain).map_err(|e| {
                    if !is_disk_full(&e, &self.path) {
                        return e;
                    }
                    // Kind `io` (a full disk, what docs/errors.md says), saying that the
                    // lines are safe: a drain failing here has committed them.
                    Error::io(
                        format!(
                            "recording in journal {} that its lines up to seq {seq} are committed to the target: its \
                             disk is full. The lines are committed (nothing is lost); free space on that disk and \
                             drain again: the record is caught up then, their space given back, and nothing is \
                             drained twice",
                            self.path.display()
                        ),
                        io::Error::from_raw_os_error(libc::ENOSPC),
                    )
                })
            }
            r => r,
        }
    }

    /// The journal's disk is full (issue 13 item 2: lines committed but never recorded
    /// kept writers refused for good). Deleting needs WAL space too: empty the WAL,
    /// record the drained seq alone (a small transaction), then delete the runs it
    /// covers in small transactions, each emptied again. Never a run before the record
    /// that covers it: a journal whose runs were gone but whose record was not moved
    /// counted its seqs from the old record again (its writer would have reused seqs
    /// the target already holds, and every drain refused it as restored).
    fn record_drained_on_a_full_disk(&self, target_id: &str, seq: u64, crc: u32, chain: u64) -> Result<()> {
        let _ = self.lock_conn()?.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        self.record_drained_tx_with(target_id, seq, crc, chain, false)?;
        let conn = self.lock_conn()?;
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        loop {
            let n = conn
                .execute(
                    "DELETE FROM runs WHERE first_seq IN (SELECT first_seq FROM runs
                     WHERE first_seq + count - 1 <= ?1 ORDER BY first_seq LIMIT ?2)",
                    params![sql_bound(seq), FULL_DISK_DELETE_RUNS],
                )
                .map_err(|e| {
                    // The record is written: only the space waits (the journal's next
                    // record deletes what is left).
                    Error::io(
                        format!(
                            "giving back the space of lines up to seq {seq} drained from journal {}: its disk is \
                             full ({e}). The lines are committed and recorded (nothing is lost); their space is \
                             given back at the journal's next drain once the disk has room: free space on it",
                            self.path.display()
                        ),
                        io::Error::from_raw_os_error(libc::ENOSPC),
                    )
                })?;
            let _ = incremental_vacuum(&conn, None);
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    /// [`Journal::record_drained`] in one transaction, then give free pages back.
    fn record_drained_tx(&self, target_id: &str, seq: u64, crc: u32, chain: u64) -> Result<()> {
        self.record_drained_tx_with(target_id, seq, crc, chain, true)
    }

    /// [`Journal::record_drained_tx`]; with `delete_runs` false only the record moves
    /// (the runs it covers stay for a later delete).
    fn record_drained_tx_with(&self, target_id: &str, seq: u64, crc: u32, chain: u64, delete_runs: bool) -> Result<()> {
        // No fsync of its own (`Unsynced`): a record lost to a power cut is one behind
        // the manifest, caught up by the next round (with 100 journals in a round, their
        // fsyncs were most of its wall).
        let conn = Unsynced::enter(self.lock_conn()?, self.opts.durability);
        // Said with every failure here: a drain that fails at its record has committed
        // the lines (an outside tester read "exit 1, database is locked" as a failed
        // drain, another process holding the journal's write lock past the timeout).
        let ctx = |what: &str| {
            format!(
                "{what} in {} (its lines up to seq {seq} are committed in the target: nothing is lost or drained \
                 twice; this record only lets the journal give their space back, and a later drain makes it)",
                self.path.display()
            )
        };
        let tx = conn
            .begin_record(&wal_path(&self.path))
            .map_err(|e| Error::sqlite(ctx("starting the drained record"), e))?;
        let seq = to_sql(seq).map_err(|e| Error::sqlite(ctx("recording the drained seq"), e))?;
        // The record as it is, and the runs wholly drained by `seq` (their newest
        // end_bytes becomes the drained byte mark): one statement (a round records
        // every journal it drained, often on a handle opened for it, where each
        // statement is compiled anew). `first_seq <= seq` makes both a rowid range.
        let (current, freed_runs, freed_through): (i64, i64, Option<i64>) = tx
            .prepare_cached(
                "SELECT drained_seq,
                        (SELECT count(*) FROM runs WHERE first_seq <= ?1 AND first_seq + count - 1 <= ?1),
                        (SELECT max(end_bytes) FROM runs WHERE first_seq <= ?1 AND first_seq + count - 1 <= ?1)
                 FROM state WHERE id = 1",
            )
            .and_then(|mut st| st.query_row(params![seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
            .map_err(|e| Error::sqlite(ctx("reading the drained record"), e))?;
        if seq <= current {
            // A later round already recorded more. Runs it covers may be left (a
            // full-disk record moved first, then could not delete them): delete them
            // now (a rowid range: nothing to scan when none is left).
            if delete_runs {
                let left = tx
                    .prepare_cached("DELETE FROM runs WHERE first_seq <= ?1 AND first_seq + count - 1 <= ?1")
                    .and_then(|mut st| st.execute(params![current]))
                    .map_err(|e| Error::sqlite(ctx("deleting drained runs"), e))?;
                if left > 0 {
                    tx.commit().map_err(|e| Error::sqlite(ctx("committing the deletion of drained runs"), e))?;
                }
            }
            return Ok(());
        }
        if current == 0 {
            // The first record: keep the first-line stamp before its run goes (retirement
            // reads it; docs/design.md "Journal lifecycle and watermark expiry").
            tx.execute(
                "INSERT OR IGNORE INTO meta(key, value)
                 SELECT 'first_line_ms', CAST(appended_ms AS TEXT) FROM runs WHERE first_seq = 1",
                [],
            )
            .map_err(|e| Error::sqlite(ctx("keeping the first line's stamp"), e))?;
        }
        if delete_runs {
            crate::fault::check(crate::fault::Step::JournalRowDelete)
                .map_err(|e| Error::io(ctx("deleting drained runs"), e))?;
            tx.prepare_cached("DELETE FROM runs WHERE first_seq <= ?1 AND first_seq + count - 1 <= ?1")
                .and_then(|mut st| st.execute(params![seq]))
                .map_err(|e| Error::sqlite(ctx("deleting drained runs"), e))?;
        }
        failpoint::hit(failpoint::Point::DrainMidRecord);
        tx.prepare_cached(
            "UPDATE state SET drained_target = ?1, drained_seq = ?2, drained_crc = ?3, drained_chain = ?5,
                 drained_bytes = max(drained_bytes, coalesce(?4, drained_bytes)) WHERE id = 1",
        )
        // the chain is a u64 hash, stored bit for bit (drained_record reads it back)
        .and_then(|mut st| st.execute(params![target_id, seq, i64::from(crc), freed_through, chain.cast_signed()]))
        .map_err(|e| Error::sqlite(ctx("recording the drained seq"), e))?;
        tx.commit().map_err(|e| Error::sqlite(ctx("committing the drained record"), e))?;
        drop(conn);
        // Give drained space back to the disk (docs/design.md, "Giving space back"):
        // auto_vacuum=INCREMENTAL frees nothing by itself.
        let checkpointed = self.give_space_back();
        // `maintenance` is released before the connection is taken: an append takes
        // them the other way round (its key purge), and one handle may be appended to
        // and drained in one process (a reviewer's finding: a deadlock).
        let checkpoint_due = {
            let mut m = self.maintenance.lock();
            // count(*) is never negative
            if delete_runs {
                m.deleted_since_checkpoint += u64::try_from(freed_runs).unwrap_or(0);
            }
            if checkpointed {
                m.deleted_since_checkpoint = 0;
            }
            let due = m.deleted_since_checkpoint >= CHECKPOINT_EVERY_DELETED_RUNS;
            if due {
                m.deleted_since_checkpoint = 0;
            }
            due
        };
        if checkpoint_due {
            // PASSIVE: never blocks writers; a busy reader only delays the reset.
            let _ = self.lock_conn()?.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
        Ok(())
    }

    /// Make every row a drain read from this journal durable (ordering O3 of
    /// docs/design.md): a `Normal` writer's commits are visible to the drain while they
    /// are still only in the page cache, and a manifest must not cover rows that a
    /// power cut could take back (the journal would hand their seqs out again). Rows
    /// are either in the `-wal` (fdatasync it) or were checkpointed into the main file,
    /// which `SQLite` fsyncs before it resets or deletes the `-wal`.
    pub(crate) fn sync_for_drain(&self) -> Result<()> {
        let wal = wal_path(&self.path);
        let ctx = || format!("fdatasync of the journal's WAL {}", wal.display());
        match std::fs::File::open(&wal) {
            // Empty: every row read came from the database file, fsynced before its
            // `-wal` was cut (docs/design.md step 4). Nothing synced either, so the
            // handle does not count as synced since its open.
            Ok(f) if f.metadata().map_err(|e| Error::io(ctx(), e))?.len() == 0 => return Ok(()),
            Ok(f) => {
                crate::fault::check(crate::fault::Step::JournalWalFdatasync).map_err(|e| Error::io(ctx(), e))?;
                f.sync_data().map_err(|e| Error::io(ctx(), e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(ctx(), e)),
        }
        self.wal_synced_since_open.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Whether the rows of `taken` are durable without an fdatasync (O3 without an
    /// fsync, docs/design.md): its newest row is marked `durable`, and this handle has
    /// synced the `-wal` once since it opened it. While a connection holds the
    /// journal's WAL index no other can recover the `-wal` (`SQLite` recovers it only
    /// at an open with nobody attached, or from a torn index header, written only
    /// after a commit's fsync); an fdatasync after this handle's open covers whatever
    /// a recovery before it made visible (a `full` writer killed between writing its
    /// commit and its fsync: its frames are valid and were adopted unsynced; an outside
    /// reviewer's power cut lost such a row and handed its seq out again).
    pub(crate) fn durable_without_sync(&self, taken: &Taken) -> bool {
        taken.durable && self.wal_synced_since_open.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Retirement's last step: delete this journal's files if every line it ever held
    /// is at or below `watermark` (committed in the target) — decided and done while
    /// holding its `SQLite` write lock, so no writer commits in between (a writer that
    /// commits after it finds the files gone and is not acknowledged). `Ok(false)`,
    /// touching nothing, when a writer appended since the drain. The handle is dead
    /// after `Ok(true)`.
    pub(crate) fn delete_if_drained(&self, watermark: u64, keep_keys: Option<std::time::Duration>) -> Result<bool> {
        let ctx = |what: &str| format!("{what} {}", self.path.display());
        // The spool folder's lock first (an open holds it from SQLite's open of a
        // journal to its first read, which opens the -wal and -shm: `Journal::open`),
        // then the write lock, in that order everywhere.
        let folder = super::files::lock_folder(&self.path)?;
        let mut conn = self.lock_conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| Error::sqlite(ctx("taking the write lock of"), e))?;
        let ceiling = schema::head(&tx).map_err(|e| Error::sqlite(ctx("reading the seq counter of"), e))?.next_seq - 1;
        if ceiling > watermark {
            return Ok(false);
        }
        // Rule 6 again, under the write lock, right before the deletion: a keyed
        // append or a cursor commit since the retirement first looked (a cursor-only
        // commit adds no seq) must not go with the journal.
        if let Some(retention) = keep_keys {
            if let Some(held) = self.would_forget_on(&tx, retention)? {
                return Err(self.retirement_refused(&held));
            }
        }
        // the files checked are the files deleted
        self.check_in_place()?;
        // Crash-safe at every step (a power cut may keep any prefix of these, each made
        // durable by a folder fsync before the next): first the journal's name becomes
        // a tombstone, so no state leaves a journal without its -wal (stale rows) or a
        // -wal without a tombstone explaining it; then the log; then the tombstone.
        // Journal::open finishes a retirement it finds cut short.
        let tombstone = retiring_path(&self.path);
        std::fs::rename(&self.path, &tombstone)
            .map_err(|e| Error::io(format!("renaming {} to {}", self.path.display(), tombstone.display()), e))?;
        sync_folder(&self.path)?;
        drop(tx);
        failpoint::hit(failpoint::Point::RetireAfterRename);
        super::files::finish_retirement_locked(&self.path, &folder)?;
        Ok(true)
    }

    /// Run a WAL checkpoint now (TRUNCATE when nobody is reading).
    ///
    /// # Errors
    /// [`Error::Sqlite`] when the checkpoint fails; [`Error::InvalidArgument`] in a
    /// process forked from the one that opened the handle.
    pub fn checkpoint(&self) -> Result<()> {
        self.lock_conn()?
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| Error::sqlite("checkpointing the WAL", e))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::error::Error;
    use crate::journal::{Journal, JournalOptions};

    /// A damaged journal's negative seq, count or CRC is a corrupt row: never read as
    /// a huge u64 (or a wrapped u32) that the drain would build on.
    #[test]
    fn negative_counters_in_a_damaged_journal_are_corrupt_rows() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("n.journal");
        let j = Journal::open(&path, JournalOptions::default()).unwrap();
        j.append_batch(&[b"a", b"b"]).unwrap();
        j.record_drained("000102030405060708090a0b0c0d0e0f", 1, 7, 9).unwrap();
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute("UPDATE runs SET count = -2", []).unwrap();
        raw.execute("UPDATE state SET drained_crc = -1", []).unwrap();
        drop(raw);
        let far = Instant::now() + Duration::from_secs(60);
        let e = j.drain_after(1, 0, u64::MAX, true, far, &mut |_, _| Ok(())).unwrap_err();
        assert!(matches!(e, Error::CorruptJournalRow { seq: 2, .. }), "{e}");
        let e = j.row_crc(2).unwrap_err();
        assert!(matches!(e, Error::CorruptJournalRow { seq: 2, .. }), "{e}");
        let e = j.drained_record().unwrap_err();
        assert!(matches!(e, Error::CorruptJournalRow { .. }), "{e}");
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute("UPDATE state SET drained_crc = 7, drained_seq = -1", []).unwrap();
        drop(raw);
        let e = j.drained_record().unwrap_err();
        assert!(matches!(e, Error::CorruptJournalRow { .. }), "a negative drained seq is not 'never drained': {e}");
    }

    /// The drain's one-pass check: a whole run reaches the sink with its data CRC (which
    /// the target's running CRC combines instead of hashing the bytes again), and that
    /// CRC is the bytes' own.
    #[test]
    fn a_whole_run_is_drained_with_its_checked_crc() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path().join("r.journal"), JournalOptions::default()).unwrap();
        let lines: Vec<Vec<u8>> = (0..100).map(|i| format!("line {i}").into_bytes()).collect();
        j.append_batch(&lines).unwrap();
        let mut handed: Vec<(Vec<u8>, Option<u32>)> = Vec::new();
        let far = Instant::now() + Duration::from_secs(60);
        let taken = j
            .drain_after(0, 0, u64::MAX, true, far, &mut |bytes, crc| {
                handed.push((bytes.to_vec(), crc.map(|h| h.clone().finalize())));
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(taken.lines, 100);
        assert_eq!(handed.len(), 1, "one run, one slice");
        let (bytes, crc) = &handed[0];
        assert_eq!(bytes.len(), lines.iter().map(|l| l.len() + 1).sum::<usize>());
        assert_eq!(*crc, Some(crc32fast::hash(bytes)), "the run's data CRC was not handed over");
    }
}
