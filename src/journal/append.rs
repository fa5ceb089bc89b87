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

use crate::sync::Mutex;
use rusqlite::{params, Connection, OptionalExtension};

use super::group_commit::{Outcome, Request};
use super::run::{validate_line, Lines, RunBuf, RUN_MAX_BYTES};
use super::schema::{self, get_u64, next_seq_sql, to_sql, total_bytes_sql};
use super::{now_ms, Journal, WriteTx};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::os::clock::deadline_after;
use crate::os::sys;
use crate::reader::Cursor;

/// How far beyond the database's size a reservation gives the journal file blocks;
/// a commit after which the file holds less than half of that beyond it reserves
/// again (so reservations come every ~16 KiB of growth, not at every commit).
const RESERVE_AHEAD_BYTES: u64 = 32 << 10;
/// How far below the blocks a file holds a reservation starts (`st_blocks` may count
/// a few blocks of metadata): overlapping what is allocated costs nothing.
const RESERVE_OVERLAP_BYTES: u64 = 64 << 10;
/// A line's bookkeeping in the database beyond its bytes (its entry in the run's
/// line index, with room to spare).
const LINE_BOOKKEEPING_BYTES: u64 = 16;
/// A key's row and index entry beyond six times its bytes (seq, time, row and cell
/// headers, twice).
const KEY_BOOKKEEPING_BYTES: u64 = 64;

/// One caller's lines, optionally with one idempotency key per line, and optionally a
/// processed cursor committed in the same transaction.
pub(super) struct Appending {
    lines: Lines,
    keys: Option<Vec<Vec<u8>>>,
    /// `(name, cursor)`: the row of the `cursors` table this request writes with its
    /// lines (docs/design.md, "Processed cursors in the journal").
    cursor: Option<(String, Cursor)>,
    /// For keyed lines: whether each was stored by this request (false: its key was
    /// already stored, the line absorbed). Written by the leader before it delivers the
    /// request's outcome.
    stored: Mutex<Vec<bool>>,
}

impl Appending {
    /// What storing this request may add to the database, over-estimated: the lines'
    /// bytes, each line's bookkeeping, and each key's row and index entry (a key is
    /// stored twice, in pages random inserts leave part empty: 1,000-byte keys took
    /// 5.7 KB each, measured by an outside reviewer). Counting the lines alone let
    /// keyed appends of short lines take the disk's last byte (an outside tester,
    /// 1,000 × 200-byte keys per call: 2 of 2 stuck).
    fn stored_bytes(&self) -> u64 {
        let lines = self.lines.data_len() as u64 + LINE_BOOKKEEPING_BYTES * self.lines.len() as u64;
        let keys: u64 = self.keys.iter().flatten().map(|k| 6 * k.len() as u64 + KEY_BOOKKEEPING_BYTES).sum();
        lines.saturating_add(keys)
    }

    fn plain(lines: Lines) -> Appending {
        Appending { lines, keys: None, cursor: None, stored: Mutex::new(Vec::new()) }
    }
}

/// What one keyed append did ([`Journal::append_keyed_outcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyedAppend {
    /// The line's seq: the new one when `stored`, else the seq stored earlier under the
    /// same key.
    pub seq: u64,
    /// `true`: this call stored the line. `false`: the key was already stored (by an
    /// earlier call, or an earlier line of the same batch) and nothing was stored: a
    /// retry was absorbed.
    pub stored: bool,
}

/// The `cursors` table (docs/design.md, "Processed cursors in the journal"): created by
/// the first commit with a cursor, inside that commit's transaction.
const CURSORS_TABLE: &str = "CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY, generation INTEGER NOT NULL, offset INTEGER NOT NULL,
    target_id TEXT, updated_ms INTEGER NOT NULL)";

/// Store one run (its counters checked into INTEGER columns, [`to_sql`]).
fn insert_run(
    insert: &mut rusqlite::CachedStatement<'_>,
    r: &RunBuf,
    now: i64,
    durable: bool,
) -> rusqlite::Result<usize> {
    insert.execute(params![
        to_sql(r.first_seq)?,
        to_sql(r.count)?,
        to_sql(r.end_bytes)?,
        now,
        r.meta,
        r.data,
        r.run_crc(),
        durable
    ])
}

/// Whether this connection's commits are durable before they are visible
/// (`synchronous` FULL or EXTRA), as the connection is set right now: the mark a run
/// carries for the drain (`runs.durable`, docs/design.md O3). Read from the
/// connection, not the handle's options: a compactor's record switches a handle to
/// NORMAL for a moment.
fn commits_durably(conn: &rusqlite::Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached("PRAGMA synchronous")?.query_row([], |r| r.get::<_, i64>(0)).map(|level| level >= 2)
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
    /// - [`Error::Io`]: the journal's disk would keep less than 1 MiB free once the
    ///   line is written twice (log, journal file), or another I/O error;
    /// - [`Error::Sqlite`]: the transaction failed (e.g. another process held the write
    ///   lock past `busy_timeout`);
    /// - [`Error::InvalidArgument`]: the handle is used in a process forked from the
    ///   one that opened it.
    pub fn append(&self, line: &[u8]) -> Result<u64> {
        validate_line(0, line, self.opts.max_line_bytes)?;
        let seqs = self.submit(Appending::plain(Lines::of(&[line])))?.0;
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
        let seqs = self.submit(Appending::plain(Lines::of(lines)))?.0;
        Ok(seqs[0])
    }

    /// [`Journal::append_batch`] of lines already validated against this journal's
    /// rules (an [`Appender`](super::Appender) checks each at `push`), already in one
    /// buffer: one copy of it, no check of each line again.
    /// Validated lines, taken and given back (an appender's queue buffer: reused after
    /// a commit, put back at the queue's head after a failure) — no copy of the batch:
    /// its clone doubled an appender's memory at each commit. Waits at most `full_wait`
    /// for room in a full journal.
    pub(super) fn append_owned(&self, lines: Lines, full_wait: Option<Duration>) -> (Result<u64>, Lines) {
        if lines.is_empty() {
            let e = Error::InvalidArgument("append_batch got no lines: an empty batch has no first seq".into());
            return (Err(e), lines);
        }
        let request = Arc::new(Appending::plain(lines));
        let result = self.submit_shared(&request, full_wait).map(|seqs| seqs[0]);
        // (another thread leading the group commit may still hold the request a moment)
        let lines = Arc::try_unwrap(request).map_or_else(|shared| shared.lines.clone(), |a| a.lines);
        (result, lines)
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
        Ok(self.append_batch_keyed_outcome(items)?.into_iter().map(|o| o.seq).collect())
    }

    /// [`Journal::append_keyed`], saying whether this call stored the line or its key
    /// was already stored (a retry absorbed: nothing stored, the earlier seq). Exact with
    /// any number of writers: decided inside the append transaction.
    ///
    /// # Errors
    /// As [`Journal::append_keyed`].
    pub fn append_keyed_outcome(&self, key: &[u8], line: &[u8]) -> Result<KeyedAppend> {
        Ok(self.append_batch_keyed_outcome(&[(key, line)])?[0])
    }

    /// [`Journal::append_batch_keyed`], with each line's [`KeyedAppend`]: all-or-nothing,
    /// one transaction (one fsync). A key repeated within the batch is stored once, by
    /// its first line; the later ones are absorbed (`stored: false`, the first's seq).
    ///
    /// # Errors
    /// As [`Journal::append_keyed`], for the whole batch.
    pub fn append_batch_keyed_outcome<K: AsRef<[u8]>, L: AsRef<[u8]>>(
        &self,
        items: &[(K, L)],
    ) -> Result<Vec<KeyedAppend>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        for (i, (k, l)) in items.iter().enumerate() {
            if k.as_ref().is_empty() {
                return Err(Error::InvalidArgument(format!("idempotency key {i} is empty")));
            }
            validate_line(i, l.as_ref(), self.opts.max_line_bytes)?;
        }
        let (seqs, lines) = self.submit(Appending {
            lines: items.iter().map(|(_, l)| l.as_ref()).collect(),
            keys: Some(items.iter().map(|(k, _)| k.as_ref().to_vec()).collect()),
            cursor: None,
            stored: Mutex::new(Vec::new()),
        })?;
        let stored = std::mem::take(&mut *lines.stored.lock());
        if stored.len() != seqs.len() {
            return Err(Error::io(
                format!("appending to {}", self.path.display()),
                io::Error::other("a keyed commit did not say which lines it stored"),
            ));
        }
        Ok(seqs.into_iter().zip(stored).map(|(seq, stored)| KeyedAppend { seq, stored }).collect())
    }

    /// Append `lines` (zero or more) and record `name → cursor` in the journal's own
    /// file, in ONE transaction: both are durable or neither is (docs/design.md,
    /// "Processed cursors in the journal"). For a program that reads a target, appends
    /// what it derived from it here, and must remember how far it read atomically with
    /// those results. Read the cursor back with [`Journal::cursor`]. Returns the first
    /// line's seq, or 0 when `lines` is empty (only the cursor is recorded).
    ///
    /// # Errors
    /// As [`Journal::append_batch`] (nothing stored, cursor included); also
    /// [`Error::InvalidArgument`] for an empty `name`, a cursor beyond `i64::MAX` or at
    /// generation 0 with an offset, or a cursor whose target id differs from the one
    /// `name` already holds, or that has none (one name follows one target; the start
    /// cursor may reset any name).
    pub fn append_batch_with_cursor<L: AsRef<[u8]>>(&self, lines: &[L], name: &str, cursor: Cursor) -> Result<u64> {
        if name.is_empty() {
            return Err(Error::InvalidArgument("the cursor's name is empty".into()));
        }
        cursor.storable()?;
        for (i, l) in lines.iter().enumerate() {
            validate_line(i, l.as_ref(), self.opts.max_line_bytes)?;
        }
        let (seqs, _) = self.submit(Appending {
            lines: Lines::of(lines),
            keys: None,
            cursor: Some((name.to_string(), cursor)),
            stored: Mutex::new(Vec::new()),
        })?;
        Ok(seqs.first().copied().unwrap_or(0))
    }

    /// The cursor last committed under `name` by [`Journal::append_batch_with_cursor`]
    /// (with its target's id), or `None`.
    ///
    /// # Errors
    /// [`Error::Sqlite`] when the journal cannot be read; [`Error::NotAJournal`] when
    /// the stored row is damaged; [`Error::InvalidArgument`] in a forked child.
    pub fn cursor(&self, name: &str) -> Result<Option<Cursor>> {
        let conn = self.lock_conn()?;
        let ctx = |what: &str| format!("{what} {name} in {}", self.path.display());
        let has_table: bool = conn
            .prepare_cached("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'cursors'")
            .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)))
            .map(|n| n > 0)
            .map_err(|e| Error::sqlite(ctx("looking for cursor"), e))?;
        if !has_table {
            return Ok(None); // a journal that never committed a cursor (or made before them)
        }
        let row = conn
            .prepare_cached("SELECT generation, offset, target_id FROM cursors WHERE name = ?1")
            .and_then(|mut st| {
                st.query_row(params![name], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<String>>(2)?))
                })
                .optional()
            })
            .map_err(|e| Error::sqlite(ctx("reading cursor"), e))?;
        row.map(|(g, o, id)| crate::reader::cursor_from_row(&self.path, name, g, o, id.as_deref())).transpose()
    }

    /// Queue a request and wait for it, retrying a full journal for up to `full_wait`.
    fn submit(&self, lines: Appending) -> Result<(Vec<u64>, Arc<Appending>)> {
        self.submit_waiting(lines, self.opts.full_wait)
    }

    /// [`submit`](Self::submit), waiting at most `full_wait` for room in a full journal
    /// (an appender's halved retries share one wait: [`super::appender`]).
    fn submit_waiting(&self, lines: Appending, full_wait: Option<Duration>) -> Result<(Vec<u64>, Arc<Appending>)> {
        let lines = Arc::new(lines);
        self.submit_shared(&lines, full_wait).map(|seqs| (seqs, lines))
    }

    /// [`submit_waiting`](Self::submit_waiting) of a request the caller keeps.
    fn submit_shared(&self, lines: &Arc<Appending>, full_wait: Option<Duration>) -> Result<Vec<u64>> {
        self.check_process()?;
        let deadline = full_wait.map(deadline_after);
        let mut pause = Duration::from_millis(2);
        loop {
            match self.group.submit(Arc::clone(lines), |batch| self.commit_requests(batch)) {
                // (a call bigger than the limit never fits, however long it waits)
                Err(Error::JournalFull { needed_bytes, max_backlog_bytes, .. })
                    if needed_bytes <= max_backlog_bytes && deadline.is_some_and(|d| Instant::now() < d) =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// Ordering O2 for a handle opened by `open_existing` (a compactor's): before its
    /// first commit of lines, make the journal's and `-wal`'s names durable.
    pub(crate) fn ensure_names_durable(&self) -> Result<()> {
        if !self.names_durable.load(Ordering::Acquire) {
            super::files::sync_folder(&self.path)?;
            self.names_durable.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Refuse an append when the journal's disk would keep less than
    /// `files::SPOOL_RESERVE_BYTES` free once `bytes` more are written twice (into the
    /// `-wal`, then by a checkpoint into the journal file) — more on copy-on-write
    /// filesystems (`files::spool_reserve_bytes`): the room a drain needs to
    /// record and give space back. Counting the batch matters where batches are large
    /// next to the disk: an outside tester's 1–4 MB batches on a 16 MiB spool left the
    /// journal itself filling its disk, and no record could be written again. One
    /// `statfs`, ~1 µs.
    fn check_spool_space(&self, bytes: u64) -> Result<()> {
        let folder = crate::os::fs::parent_dir(&self.path);
        let Ok(space) = sys::space(&folder) else { return Ok(()) };
        let reserve = super::files::spool_reserve_bytes(&space);
        let needed = reserve.saturating_add(bytes.saturating_mul(2));
        let free = space.available();
        if free >= needed {
            return Ok(());
        }
        // Whether a drain could make the room: it gives back at most what the
        // journal's own files hold (helper-29: "drain the journal" was the
        // advice on a disk other files had filled).
        let len = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let wal = len(&super::files::wal_path(&self.path));
        let own = len(&self.path) + wal;
        let advice = if self.log_held_by_a_reader() {
            // (an outside tester's full spool: "drain the journal" could not help then)
            format!(
                "Its log holds {wal} bytes that cannot be checkpointed while a process keeps a read transaction \
                 open on this journal (a long query, an open sqlite3 shell, a reader that does not finish): end \
                 it, then drain the journal (a drain gives its space back), or free space on that disk, then retry"
            )
        } else if own >= needed - free {
            "Drain the journal (a drain gives its space back), free space on that disk, or append smaller \
             batches, then retry"
                .to_string()
        } else {
            format!(
                "Draining this journal would not make the room (its files hold {own} bytes): free space on \
                 that disk (other files fill it), or append smaller batches, then retry"
            )
        };
        Err(Error::io(
            format!(
                "appending to {}: its disk has {free} bytes free; the batch (up to {bytes} bytes stored, \
                 lines, keys and their bookkeeping), written twice (log, then journal file), would leave \
                 less than the {} MiB kept for recording drains; nothing of this call was stored. {advice}",
                self.path.display(),
                reserve >> 20
            ),
            io::Error::from_raw_os_error(libc::ENOSPC),
        ))
    }

    /// Whether a reader's snapshot keeps the journal's log from being checkpointed: a
    /// passive checkpoint (what `SQLite` runs after commits anyway) leaves frames that a
    /// read transaction still needs. Asked only when an append is refused for space.
    fn log_held_by_a_reader(&self) -> bool {
        let Ok(conn) = self.lock_conn() else { return false };
        let counts = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        matches!(counts, Ok((0, log, done)) if done < log)
    }

    /// COMMIT an append's transaction, then give the journal file the disk blocks a
    /// checkpoint of what is committed will write, and [`RESERVE_AHEAD_BYTES`] more
    /// (docs/design.md, step 7), still holding the connection. Its log may not be
    /// checkpointed for a while (a reader's snapshot holds it back), and the
    /// checkpoint after that must not be what takes the disk's last byte — then no record, give-back or append could run again (an outside
    /// tester: 3 journals on an 18 MiB ext4, stuck for good after a SIGKILL or a
    /// power cut). Taken now, the blocks count in the free space every later
    /// append's check sees. Decided at every commit from the file and the database as
    /// they are (one `fstat`; the database's size read inside the transaction, where
    /// it takes no lock), whoever committed before: a
    /// per-handle count of growth let 100 handles on one journal each stay under its
    /// threshold while together they outgrew the reservation by 1.4 MB (an outside
    /// tester: the disk at 0 bytes, 4 of 4). Only the COMMIT's error is returned: the
    /// reservation is best effort (the lines are committed either way, and a disk too
    /// full for it refuses the next append).
    fn commit_keeping_room(&self, conn: &rusqlite::Connection, tx: WriteTx<'_>) -> rusqlite::Result<()> {
        let database = tx.commit_counting_bytes()?;
        let file = self.files[0];
        let Some((len, blocks)) = crate::os::sqlite_file::length_and_blocks(conn, file) else { return Ok(()) };
        if blocks >= database.saturating_add(RESERVE_AHEAD_BYTES / 2) {
            return Ok(());
        }
        let to = database.saturating_add(RESERVE_AHEAD_BYTES);
        // From what surely holds blocks: the file's written length, or a little below
        // the blocks it holds (XFS refuses a range larger than the free space even
        // where most of it is allocated already).
        let from = blocks.saturating_sub(RESERVE_OVERLAP_BYTES).max(len).min(to);
        let _ = crate::os::sqlite_file::reserve_blocks(conn, file, from, to);
        Ok(())
    }

    /// One transaction for many requests, stored as one run (or a few, for large
    /// batches). The outer error fails every request (nothing was committed); an inner
    /// error (journal full) fails only its own request.
    ///
    /// The journal's path must still name this handle's file and `-wal`
    /// ([`Journal::still_in_place`]) twice:
    /// - inside the commit's write transaction, once it holds the write lock and before
    ///   its COMMIT: a retirement renames the journal while holding that lock, so a
    ///   commit either precedes it (and is drained by it) or fails here, rolled back,
    ///   nothing stored — `journal_gone`'s "nothing stored" is then exact;
    /// - after the COMMIT, for what takes no lock (`rm`, `mv`, a new file put under the
    ///   name) between the two: lines committed into a file no drain will see are not
    ///   acknowledged (`journal_gone`) — unless the journal's own drained record covers
    ///   them, i.e. a retirement drained them and then removed the journal (those are
    ///   committed in the target, and acknowledged), or the journal was moved, not
    ///   removed ([`Journal::still_linked`]: its spool folder renamed; the lines are in
    ///   it, drained from where it is now, and acknowledged; the next append fails
    ///   before storing anything).
    ///
    /// (Until 2026-12-04 only the second check ran, without the drained-record rule: a
    /// retirement between the COMMIT and the check made a drained line `journal_gone`,
    /// "nothing stored", and a writer's resend duplicated it.)
    fn commit_requests(&self, batch: &[Arc<Request<Arc<Appending>>>]) -> Result<Vec<Outcome>> {
        let bytes = batch.iter().map(|r| r.payload.stored_bytes()).fold(0u64, u64::saturating_add);
        self.check_spool_space(bytes)?;
        self.ensure_names_durable()?;
        let results = self.commit_requests_unchecked(batch)?;
        if let Err(gone) = self.still_in_place() {
            let last = results.iter().filter_map(|r| r.as_ref().ok()?.last().copied()).max();
            let drained = self.drained_record().ok().flatten().map_or(0, |r| r.seq);
            if last.is_some_and(|last| last > drained) && !self.still_linked() {
                return Err(gone);
            }
        }
        Ok(results)
    }

    /// Whether the journal's file and `-wal` this handle writes are both still linked
    /// somewhere (moved, not removed): then lines committed into them are in a journal
    /// that is drained from where it is now. Looked up through this process's own
    /// descriptors (`SQLite` keeps both open), only when a commit found its path gone.
    /// `false` when that cannot be told (no `/proc`).
    fn still_linked(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return false };
        let mut linked = [false; 2];
        for fd in fds.flatten() {
            // a descriptor's link resolves to its file even when it is unlinked
            let Ok(md) = std::fs::metadata(fd.path()) else { continue };
            for (i, opened) in self.files.iter().enumerate() {
                if (md.dev(), md.ino()) == *opened && md.nlink() > 0 {
                    linked[i] = true;
                }
            }
        }
        linked == [true, true]
    }

    /// [`Journal::check_in_place`], cheap when nothing in the folder changed (one read
    /// of an inotify fd). Called under the write lock: the event of a retirement's
    /// rename is queued before it releases the write lock, so it is seen here. A failed
    /// check is sticky until a full check passes again (the events that showed the
    /// change are consumed).
    fn still_in_place(&self) -> Result<()> {
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
        Ok(())
    }

    fn commit_requests_unchecked(&self, batch: &[Arc<Request<Arc<Appending>>>]) -> Result<Vec<Outcome>> {
        let bytes: usize = batch.iter().map(|r| r.payload.lines.data_len()).sum();
        if batch.iter().all(|r| r.payload.keys.is_none() && r.payload.cursor.is_none())
            && self.opts.max_backlog_bytes.is_none()
            && bytes <= RUN_MAX_BYTES
            && !self.key_purge_due()
        {
            return self.commit_one_run(batch);
        }
        let conn = self.lock_conn()?;
        let tx = WriteTx::begin(&conn)
            .map_err(|e| Error::sqlite(format!("starting an append transaction on {}", self.path.display()), e))?;
        self.still_in_place()?;
        let ctx = |what: &str| format!("{what} in {}", self.path.display());
        let head = schema::head(&tx).map_err(|e| Error::sqlite(ctx("reading the journal state"), e))?;
        let mut next_seq = head.next_seq;
        let mut total_bytes = head.total_bytes;
        let mut backlog_bytes = head.total_bytes.saturating_sub(head.drained_bytes);
        let now = now_ms();
        let key_now = if batch.iter().any(|r| r.payload.keys.is_some()) {
            self.record_key_retention(&tx)?;
            Self::key_clock(&tx)?
        } else {
            0
        };
        let mut results = Vec::with_capacity(batch.len());
        let mut runs: Vec<RunBuf> = Vec::new();
        let mut new_keys: Vec<(&[u8], u64)> = Vec::new();
        // The processed cursors this transaction records, in queue order (a later
        // request's row for the same name replaces an earlier one's).
        let mut cursor_rows: Vec<(&str, Cursor)> = Vec::new();
        if batch.iter().any(|r| r.payload.cursor.is_some()) {
            // The upgrade of a journal made before cursors: in this commit's own
            // transaction (docs/design.md, "Processed cursors in the journal").
            tx.execute_batch(CURSORS_TABLE).map_err(|e| Error::sqlite(ctx("creating the cursors table"), e))?;
        }
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
                if let Some((name, cursor)) = &req.payload.cursor {
                    if let Some(refused) = self.cursor_conflict(&tx, &cursor_rows, name, cursor)? {
                        results.push(Err(refused));
                        continue;
                    }
                }
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
                                let mut run = RunBuf { first_seq: next_seq, ..RunBuf::default() };
                                run.try_reserve(bytes.min(RUN_MAX_BYTES).max(line.len() + 1), 0)?;
                                runs.push(run);
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
                if req.payload.keys.is_some() {
                    *req.payload.stored.lock() = known.iter().map(Option::is_none).collect();
                }
                if let Some((name, cursor)) = &req.payload.cursor {
                    cursor_rows.retain(|(n, _)| n != name);
                    cursor_rows.push((name, *cursor));
                }
                results.push(Ok(seqs));
            }
        }
        {
            let durable = commits_durably(&tx).map_err(|e| Error::sqlite(ctx("reading synchronous"), e))?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO runs(first_seq, count, end_bytes, appended_ms, line_meta, data, run_crc, durable)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|e| Error::sqlite(ctx("preparing insert"), e))?;
            for r in runs.iter().filter(|r| r.count > 0) {
                insert_run(&mut insert, r, now, durable).map_err(|e| Error::sqlite(ctx("inserting lines"), e))?;
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
        if !cursor_rows.is_empty() {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO cursors(name, generation, offset, target_id, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(name) DO UPDATE SET generation = ?2, offset = ?3, target_id = ?4, updated_ms = ?5",
                )
                .map_err(|e| Error::sqlite(ctx("preparing cursor update"), e))?;
            for (name, c) in &cursor_rows {
                to_sql(c.generation)
                    .and_then(|g| Ok((g, to_sql(c.offset)?)))
                    .and_then(|(g, o)| upsert.execute(params![name, g, o, c.target_id.map(|id| id.to_hex()), now]))
                    .map_err(|e| Error::sqlite(ctx("recording a processed cursor"), e))?;
            }
        }
        self.maybe_purge_keys(&tx)?;
        failpoint::hit(failpoint::Point::JournalBeforeCommit);
        crate::fault::check(crate::fault::Step::JournalCommit)
            .map_err(|e| Error::io(ctx("committing appended lines"), e))?;
        if let Err(e) = self.commit_keeping_room(&conn, tx) {
            return Err(Self::failed_commit(&conn, &ctx("committing appended lines"), e));
        }
        failpoint::hit(failpoint::Point::JournalAfterCommit);
        Ok(results)
    }

    /// A COMMIT that failed on a full disk may have written its frames, commit mark
    /// and all, to the `-wal` before the WAL index could grow to list them
    /// (`os::sqlite_vfs`): `SQLite`'s recovery after a crash before the next commit
    /// would replay them. A TRUNCATE checkpoint empties the log, so that "nothing of
    /// the call is stored" stays exact; when it cannot, the error says so.
    fn failed_commit(conn: &rusqlite::Connection, ctx: &str, e: rusqlite::Error) -> Error {
        let ctx = format!("{ctx}{}", crate::os::sqlite_file::system_error_note(conn, &e));
        let full =
            matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure));
        if !full {
            return Error::sqlite(ctx, e);
        }
        // (busy, frames in the log, frames checkpointed): (0, 0, 0) once emptied.
        let emptied = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .is_ok_and(|(busy, log)| busy == 0 && log == 0);
        if emptied {
            Error::sqlite(ctx, e)
        } else {
            Error::sqlite(
                format!(
                    "{ctx} (writing the journal's files failed — a full disk, a file size limit (`ulimit -f`), a \
                     filesystem gone read-only, an I/O error: `dmesg` tells — and the journal's log could not be \
                     emptied after the failed commit: if this process stops before its next append to the journal, \
                     {} at the journal's next open; a retry through this handle is safe, a resend from another \
                     process or handle only with idempotency keys)",
                    crate::error::MAY_STILL_BE_STORED
                ),
                e,
            )
        }
    }

    /// A cursor for `name` whose target id is not the one `name` holds (in the journal,
    /// or earlier in this transaction): the refusal, or `None`.
    fn cursor_conflict(
        &self,
        tx: &Connection,
        pending: &[(&str, Cursor)],
        name: &str,
        cursor: &Cursor,
    ) -> Result<Option<Error>> {
        let held = match pending.iter().find(|(n, _)| *n == name) {
            Some((_, c)) => c.target_id.map(|id| id.to_hex()),
            None => tx
                .prepare_cached("SELECT target_id FROM cursors WHERE name = ?1")
                .and_then(|mut st| st.query_row(params![name], |r| r.get::<_, Option<String>>(0)).optional())
                .map_err(|e| Error::sqlite(format!("reading cursor {name} in {}", self.path.display()), e))?
                .flatten(),
        };
        let Some(held) = held else { return Ok(None) };
        let Some(mine) = cursor.target_id else {
            // A cursor without an id (a legacy `(generation, offset)`) would erase the
            // name's target and with it this check: any target's cursor was accepted
            // after it (an outside tester). The start cursor is a reset, and allowed.
            return Ok((!cursor.is_start()).then(|| {
                Error::InvalidArgument(format!(
                    "cursor {name} in journal {} follows target {held}, and this cursor {cursor} carries no target \
                     id (a legacy cursor): commit the cursor the reader gave, which carries it (nothing was stored)",
                    self.path.display()
                ))
            }));
        };
        Ok((!held.eq_ignore_ascii_case(&mine.to_hex())).then(|| {
            Error::InvalidArgument(format!(
                "cursor {name} in journal {} follows target {held}, and this cursor {cursor} belongs to target {mine}: \
                 one cursor name follows one target (nothing was stored; use another name for the other target)",
                self.path.display()
            ))
        }))
    }

    /// The common case — no keys, no backlog limit, the group's lines fit one run — as
    /// ONE autocommit INSERT that derives the run's first seq and byte mark inside
    /// `SQLite` by the seq rule of `schema.rs` (under the write lock, so from the same
    /// snapshot [`schema::head`] reads):
    /// as many statements as a bare INSERT, where BEGIN, a head SELECT and COMMIT cost a
    /// one-line append about 4% of its time. `first_seq` is the rowid, so `SQLite` hands
    /// it back without a RETURNING table. Each request gets its lines' consecutive seqs.
    fn commit_one_run(&self, batch: &[Arc<Request<Arc<Appending>>>]) -> Result<Vec<Outcome>> {
        let mut run = RunBuf::default();
        let (bytes, lines) =
            batch.iter().fold((0, 0), |(b, n), r| (b + r.payload.lines.data_len(), n + r.payload.lines.len()));
        run.try_reserve(bytes, lines)?;
        for r in batch {
            run.push_lines(&r.payload.lines);
        }
        let payload = i64::try_from(run.payload_bytes()).expect("a run is at most a few MiB");
        let conn = self.lock_conn()?;
        let ctx = |what: &str| format!("{what} in {}", self.path.display());
        let mut insert = conn
            .prepare_cached(concat!(
                "INSERT INTO runs(first_seq, count, end_bytes, appended_ms, line_meta, data, run_crc, durable) VALUES (",
                next_seq_sql!(),
                ", ?1, ",
                total_bytes_sql!(),
                " + ?2, ?3, ?4, ?5, ?6, ?7)"
            ))
            .map_err(|e| Error::sqlite(ctx("preparing insert"), e))?;
        failpoint::hit(failpoint::Point::JournalBeforeCommit);
        crate::fault::check(crate::fault::Step::JournalCommit)
            .map_err(|e| Error::io(ctx("committing appended lines"), e))?;
        // The write lock, then the check that the journal is still in place, then the
        // run and its COMMIT (and fsync): a failed commit is an error here, never a seq.
        let tx = WriteTx::begin(&conn).map_err(|e| Error::sqlite(ctx("starting an append transaction"), e))?;
        self.still_in_place()?;
        if let Err(e) = to_sql(run.count)
            .and_then(|count| Ok((count, commits_durably(&tx)?)))
            .and_then(|(count, durable)| {
                insert.execute(params![count, payload, now_ms(), run.meta, run.data, run.run_crc(), durable])
            })
            .and_then(|_| self.commit_keeping_room(&conn, tx))
        {
            return Err(Self::failed_commit(&conn, &ctx("committing appended lines"), e));
        }
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
