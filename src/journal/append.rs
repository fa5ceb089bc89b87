//! The append path: validation, the transaction a group's lines go into, back-pressure
//! (`max_backlog_bytes`, `full_wait`) and the spool reserve.
//!
//! Keeps: an append returns only after its transaction committed under the
//! configured durability (`Full`: the WAL was fsynced), and only if the journal's
//! path still names the file and `-wal` it went to (`journal_gone` otherwise); a
//! failed commit is an error, never a seq; seqs come from the seq rule of
//! `schema.rs` and nowhere else.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use super::group_commit::{Outcome, Request};
use super::run::{validate_line, RunBuf, RUN_MAX_BYTES};
use super::schema::{self, get_u64, next_seq_sql, to_sql, total_bytes_sql};
use super::{now_ms, Journal};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::os::clock::deadline_after;
use crate::os::sys;

/// Free space kept on a journal's disk for recording drains: appends are refused
/// below it, so a compactor can always delete drained rows (a delete writes to the
/// WAL too) and give the space back — a spool filled by its own journals would
/// otherwise never recover (issue 13 item 2).
const SPOOL_RESERVE_BYTES: u64 = 1 << 20;

/// One caller's lines, optionally with one idempotency key per line.
pub(super) struct Lines {
    lines: Vec<Vec<u8>>,
    keys: Option<Vec<Vec<u8>>>,
}

/// A write transaction (`BEGIN IMMEDIATE` … `COMMIT`) run through cached statements:
/// rusqlite's `Transaction` parses both on every call, which was a measurable share of
/// a one-line append's CPU. Rolls back when dropped uncommitted (or when COMMIT failed).
struct WriteTx<'c> {
    conn: &'c Connection,
    committed: bool,
}

impl<'c> WriteTx<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<WriteTx<'c>> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(WriteTx { conn, committed: false })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.committed = true;
        Ok(())
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        // A failed COMMIT may have rolled back already (autocommit is then on again).
        if !self.committed && !self.conn.is_autocommit() {
            let _ = self.conn.prepare_cached("ROLLBACK").and_then(|mut st| st.execute([]));
        }
    }
}

/// Store one run (its counters checked into INTEGER columns, [`to_sql`]).
fn insert_run(insert: &mut rusqlite::CachedStatement<'_>, r: &RunBuf, now: i64) -> rusqlite::Result<usize> {
    insert.execute(params![
        to_sql(r.first_seq)?,
        to_sql(r.count)?,
        to_sql(r.end_bytes)?,
        now,
        r.meta,
        r.data,
        r.run_crc()
    ])
}

impl Journal {
    /// Append one line; returns its seq once durable.
    ///
    /// # Errors
    /// Nothing of the call is stored on any error:
    /// - [`Error::InvalidLine`]: the line contains `\n` or is longer than
    ///   `max_line_bytes`;
    /// - [`Error::JournalFull`]: the backlog would pass `max_backlog_bytes` (after
    ///   waiting up to `full_wait`);
    /// - [`Error::JournalGone`]: the journal's file or `-wal` was removed, moved or
    ///   replaced under this handle;
    /// - [`Error::Io`]: the journal's disk has less than 1 MiB free, or another I/O error;
    /// - [`Error::Sqlite`]: the transaction failed (e.g. another process held the write
    ///   lock past `busy_timeout`);
    /// - [`Error::InvalidArgument`]: the handle is used in a process forked from the
    ///   one that opened it.
    pub fn append(&self, line: &[u8]) -> Result<u64> {
        validate_line(0, line, self.opts.max_line_bytes)?;
        let seqs = self.submit(Lines { lines: vec![line.to_vec()], keys: None })?;
        Ok(seqs[0])
    }

    /// Append lines all-or-nothing in one transaction; returns the first of their
    /// consecutive seqs. An empty batch is [`Error::InvalidArgument`] (it has no first
    /// seq), as in the C, Python and Go APIs.
    ///
    /// # Errors
    /// As [`Journal::append`], for the whole batch: one refused line
    /// ([`Error::InvalidLine`] names its index) or one failure stores none of them;
    /// [`Error::InvalidArgument`] for an empty batch.
    pub fn append_batch<L: AsRef<[u8]>>(&self, lines: &[L]) -> Result<u64> {
        if lines.is_empty() {
            return Err(Error::InvalidArgument("append_batch got no lines: an empty batch has no first seq".into()));
        }
        for (i, l) in lines.iter().enumerate() {
            validate_line(i, l.as_ref(), self.opts.max_line_bytes)?;
        }
        let seqs = self.submit(Lines { lines: lines.iter().map(|l| l.as_ref().to_vec()).collect(), keys: None })?;
        Ok(seqs[0])
    }

    /// Append a line once per idempotency key: a retry with a key seen within the
    /// retention window returns the first call's seq and stores nothing.
    ///
    /// # Errors
    /// As [`Journal::append`]; also [`Error::InvalidArgument`] for an empty key.
    pub fn append_keyed(&self, key: &[u8], line: &[u8]) -> Result<u64> {
        Ok(self.append_batch_keyed(&[(key, line)])?[0])
    }

    /// Keyed batch, all-or-nothing: returns each line's seq (the earlier seq for a key
    /// already stored).
    ///
    /// # Errors
    /// As [`Journal::append_keyed`], for the whole batch.
    pub fn append_batch_keyed<K: AsRef<[u8]>, L: AsRef<[u8]>>(&self, items: &[(K, L)]) -> Result<Vec<u64>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        for (i, (k, l)) in items.iter().enumerate() {
            if k.as_ref().is_empty() {
                return Err(Error::InvalidArgument(format!("idempotency key {i} is empty")));
            }
            validate_line(i, l.as_ref(), self.opts.max_line_bytes)?;
        }
        self.submit(Lines {
            lines: items.iter().map(|(_, l)| l.as_ref().to_vec()).collect(),
            keys: Some(items.iter().map(|(k, _)| k.as_ref().to_vec()).collect()),
        })
    }

    /// Queue a request and wait for it, retrying a full journal for up to `full_wait`.
    fn submit(&self, lines: Lines) -> Outcome {
        self.check_process()?;
        let deadline = self.opts.full_wait.map(deadline_after);
        let lines = Arc::new(lines);
        let mut pause = Duration::from_millis(2);
        loop {
            match self.group.submit(Arc::clone(&lines), |batch| self.commit_requests(batch)) {
                Err(Error::JournalFull { .. }) if deadline.is_some_and(|d| Instant::now() < d) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// Refuse an append when the journal's disk has less than [`SPOOL_RESERVE_BYTES`]
    /// free (one `statvfs`, ~1 µs).
    fn check_spool_space(&self) -> Result<()> {
        let folder = crate::os::fs::parent_dir(&self.path);
        match sys::free_bytes(&folder) {
            Ok(free) if free < SPOOL_RESERVE_BYTES => Err(Error::io(
                format!(
                    "appending to {}: its disk has {free} bytes free, less than the {} MiB kept for recording \
                     drains; nothing of this call was stored. Drain the journal (its space is given back) or free \
                     space on that disk, then retry",
                    self.path.display(),
                    SPOOL_RESERVE_BYTES >> 20
                ),
                io::Error::from_raw_os_error(libc::ENOSPC),
            )),
            _ => Ok(()),
        }
    }

    /// One transaction for many requests, stored as one run (or a few, for large
    /// batches). The outer error fails every request (nothing was committed); an inner
    /// error (journal full) fails only its own request.
    ///
    /// After the commit and before any caller is told, the journal's path must still
    /// name this handle's file and `-wal` ([`Journal::check_in_place`]): lines committed
    /// into a journal that was removed, replaced or retired meanwhile are not
    /// acknowledged. (A retirement deletes the files while holding the write lock, so a
    /// commit either precedes it — and is seen, and drained, by it — or fails here.)
    fn commit_requests(&self, batch: &[Arc<Request<Arc<Lines>>>]) -> Result<Vec<Outcome>> {
        self.check_spool_space()?;
        let results = self.commit_requests_unchecked(batch)?;
        // Cheap when nothing in the folder changed (one read of an inotify fd); the
        // event of a retirement's rename is queued before it releases the write lock
        // this commit waited for, so it is seen here.
        // A failed check is sticky until a full check passes again (the events that
        // showed the change are consumed).
        let mut first = false;
        let watch = self.folder_watch.get_or_init(|| {
            first = true; // changes before the watch existed: the full check below sees them
            sys::FolderWatch::new(&crate::os::fs::parent_dir(&self.path)).ok()
        });
        if first || self.gone.load(Ordering::Relaxed) || watch.as_ref().is_none_or(sys::FolderWatch::changed) {
            let checked = self.check_in_place();
            self.gone.store(checked.is_err(), Ordering::Relaxed);
            checked?;
        }
        Ok(results)
    }

    fn commit_requests_unchecked(&self, batch: &[Arc<Request<Arc<Lines>>>]) -> Result<Vec<Outcome>> {
        let bytes: usize = batch.iter().flat_map(|r| &r.payload.lines).map(|l| l.len() + 1).sum();
        if batch.iter().all(|r| r.payload.keys.is_none())
            && self.opts.max_backlog_bytes.is_none()
            && bytes <= RUN_MAX_BYTES
            && !self.key_purge_due()
        {
            return self.commit_one_run(batch);
        }
        let conn = self.lock_conn()?;
        let tx = WriteTx::begin(&conn)
            .map_err(|e| Error::sqlite(format!("starting an append transaction on {}", self.path.display()), e))?;
        let ctx = |what: &str| format!("{what} in {}", self.path.display());
        let head = schema::head(&tx).map_err(|e| Error::sqlite(ctx("reading the journal state"), e))?;
        let mut next_seq = head.next_seq;
        let mut total_bytes = head.total_bytes;
        let mut backlog_bytes = head.total_bytes.saturating_sub(head.drained_bytes);
        let now = now_ms();
        let key_now = if batch.iter().any(|r| r.payload.keys.is_some()) { Self::key_clock(&tx)? } else { 0 };
        let mut results = Vec::with_capacity(batch.len());
        let mut runs: Vec<RunBuf> = Vec::new();
        let mut new_keys: Vec<(&[u8], u64)> = Vec::new();
        {
            let mut find_key = tx
                .prepare_cached("SELECT seq FROM idempotency WHERE key = ?1")
                .map_err(|e| Error::sqlite(ctx("preparing key lookup"), e))?;
            for req in batch {
                // Which lines are new (a keyed line may already be stored).
                let mut known: Vec<Option<u64>> = vec![None; req.payload.lines.len()];
                if let Some(keys) = &req.payload.keys {
                    for (i, k) in keys.iter().enumerate() {
                        known[i] = match new_keys.iter().find(|(nk, _)| *nk == k.as_slice()) {
                            Some((_, seq)) => Some(*seq), // stored earlier in this transaction
                            None => find_key
                                .query_row(params![k], |r| get_u64(r, 0))
                                .optional()
                                .map_err(|e| Error::sqlite(ctx("looking up a key"), e))?,
                        };
                        if known[i].is_none() && keys[..i].contains(k) {
                            known[i] = Some(u64::MAX); // resolved below to the first line's seq
                        }
                    }
                }
                let needed: u64 = req
                    .payload
                    .lines
                    .iter()
                    .zip(&known)
                    .filter(|(_, k)| k.is_none())
                    .map(|(l, _)| l.len() as u64)
                    .sum();
                if let Some(max) = self.opts.max_backlog_bytes {
                    if needed > 0 && backlog_bytes.saturating_add(needed) > max {
                        results.push(Err(Error::JournalFull {
                            backlog_bytes,
                            max_backlog_bytes: max,
                            needed_bytes: needed,
                        }));
                        continue;
                    }
                }
                let mut seqs = Vec::with_capacity(req.payload.lines.len());
                for (i, line) in req.payload.lines.iter().enumerate() {
                    match known[i] {
                        Some(u64::MAX) => {
                            let keys = req.payload.keys.as_ref().expect("keyed");
                            let j = keys[..i].iter().position(|k| k == &keys[i]).expect("earlier key");
                            seqs.push(seqs[j]);
                        }
                        Some(seq) => seqs.push(seq),
                        None => {
                            let full = runs.last().is_none_or(|r| r.data.len() + line.len() + 1 > RUN_MAX_BYTES);
                            if full {
                                runs.push(RunBuf { first_seq: next_seq, ..RunBuf::default() });
                            }
                            total_bytes += line.len() as u64;
                            let run = runs.last_mut().expect("a run");
                            run.push(line);
                            run.end_bytes = total_bytes;
                            if let Some(keys) = &req.payload.keys {
                                new_keys.push((&keys[i], next_seq));
                            }
                            seqs.push(next_seq);
                            next_seq += 1;
                            backlog_bytes += line.len() as u64;
                        }
                    }
                }
                results.push(Ok(seqs));
            }
        }
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO runs(first_seq, count, end_bytes, appended_ms, line_meta, data, run_crc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(|e| Error::sqlite(ctx("preparing insert"), e))?;
            for r in runs.iter().filter(|r| r.count > 0) {
                insert_run(&mut insert, r, now).map_err(|e| Error::sqlite(ctx("inserting lines"), e))?;
            }
            let mut insert_key = tx
                .prepare_cached("INSERT INTO idempotency(key, seq, added_ms) VALUES (?1, ?2, ?3)")
                .map_err(|e| Error::sqlite(ctx("preparing key insert"), e))?;
            for (k, seq) in &new_keys {
                to_sql(*seq)
                    .and_then(|seq| insert_key.execute(params![k, seq, key_now]))
                    .map_err(|e| Error::sqlite(ctx("recording a key"), e))?;
            }
        }
        self.maybe_purge_keys(&tx)?;
        failpoint::hit(failpoint::Point::JournalBeforeCommit);
        crate::fault::check(crate::fault::Step::JournalCommit)
            .map_err(|e| Error::io(ctx("committing appended lines"), e))?;
        tx.commit().map_err(|e| Error::sqlite(ctx("committing appended lines"), e))?;
        failpoint::hit(failpoint::Point::JournalAfterCommit);
        Ok(results)
    }

    /// The common case — no keys, no backlog limit, the group's lines fit one run — as
    /// ONE autocommit INSERT that derives the run's first seq and byte mark inside
    /// `SQLite` by the seq rule of `schema.rs` (under the write lock, so from the same
    /// snapshot [`schema::head`] reads):
    /// as many statements as a bare INSERT, where BEGIN, a head SELECT and COMMIT cost a
    /// one-line append about 4% of its time. `first_seq` is the rowid, so `SQLite` hands
    /// it back without a RETURNING table. Each request gets its lines' consecutive seqs.
    fn commit_one_run(&self, batch: &[Arc<Request<Arc<Lines>>>]) -> Result<Vec<Outcome>> {
        let mut run = RunBuf::default();
        for line in batch.iter().flat_map(|r| &r.payload.lines) {
            run.push(line);
        }
        let payload = i64::try_from(run.payload_bytes()).expect("a run is at most a few MiB");
        let conn = self.lock_conn()?;
        let ctx = |what: &str| format!("{what} in {}", self.path.display());
        let mut insert = conn
            .prepare_cached(concat!(
                "INSERT INTO runs(first_seq, count, end_bytes, appended_ms, line_meta, data, run_crc) VALUES (",
                next_seq_sql!(),
                ", ?1, ",
                total_bytes_sql!(),
                " + ?2, ?3, ?4, ?5, ?6)"
            ))
            .map_err(|e| Error::sqlite(ctx("preparing insert"), e))?;
        failpoint::hit(failpoint::Point::JournalBeforeCommit);
        crate::fault::check(crate::fault::Step::JournalCommit)
            .map_err(|e| Error::io(ctx("committing appended lines"), e))?;
        // execute() steps to the end, where the autocommit COMMIT (and its fsync) runs:
        // a failed commit is an error here, never a seq.
        to_sql(run.count)
            .and_then(|count| insert.execute(params![count, payload, now_ms(), run.meta, run.data, run.run_crc()]))
            .map_err(|e| Error::sqlite(ctx("committing appended lines"), e))?;
        // The run's first seq (its rowid), one past the newest stored seq: negative
        // only in a journal whose rows are damaged; then the lines are stored but this
        // call cannot say under which seqs, so it fails.
        let rowid = conn.last_insert_rowid();
        let mut next = u64::try_from(rowid).map_err(|_| {
            Error::sqlite(ctx("reading the seq of appended lines"), rusqlite::Error::IntegralValueOutOfRange(0, rowid))
        })?;
        failpoint::hit(failpoint::Point::JournalAfterCommit);
        Ok(batch
            .iter()
            .map(|r| {
                let seqs = (next..next + r.payload.lines.len() as u64).collect();
                next += r.payload.lines.len() as u64;
                Ok(seqs)
            })
            .collect())
    }
}
