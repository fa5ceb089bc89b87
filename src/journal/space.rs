//! Giving a drained journal's space back to the disk, right after each record
//! (docs/design.md, "Giving space back"): free pages beyond a quarter of the live ones
//! are given back in small steps, and a `-wal` larger than the rule allows is cut when
//! nobody is using it.
//!
//! Keeps: at rest (no writer in a transaction) a journal's files hold at most
//! `1.5 × live + 4.3 MiB`, and under 1 MiB once drained empty; no step holds the write
//! lock for more than moving 1 MiB of pages, and the lock is released between steps;
//! nothing here changes a row or the drained record (each step is a transaction of
//! page moves only), so a kill anywhere in it loses nothing.

use std::time::Duration;

use rusqlite::Connection;

use super::files::wal_path;
use super::{open, Durability, Journal};
use crate::failpoint;

/// Free bytes a journal keeps without giving them back, beyond a quarter of its live
/// bytes (appends reuse free pages first).
const FREE_SLACK_BYTES: u64 = 256 << 10;

/// A journal whose live pages hold at most this many bytes is rebuilt (`VACUUM`: one
/// transaction that writes them all) instead of given back in steps.
const REBUILD_MAX_LIVE_BYTES: u64 = 256 << 10;

/// Bytes of pages one give-back step (one write transaction) moves at most.
const STEP_BYTES: u64 = 1 << 20;

/// How long the write lock is left free between two steps: a writer waiting on it
/// retries every millisecond (`open.rs`), so it commits in this gap.
const STEP_GAP: Duration = Duration::from_millis(2);

/// `-wal` bytes a drained-empty journal keeps without a truncating checkpoint, beyond
/// a quarter of its live bytes.
const WAL_SLACK_BYTES: u64 = 256 << 10;

/// `-wal` bytes a journal that still holds lines keeps, beyond a quarter of its live
/// bytes: what `SQLite` keeps by itself (a 2 MiB auto-checkpoint, and a `-wal` that a
/// reader's snapshot let grow past it is cut back to 4 MiB at its reset, `schema.rs`).
/// Cutting below it after every record made writers grow their `-wal` again and again,
/// each fsync then paying for the file's growth: at 2 MiB a busy `-wal` sat just above
/// the threshold and was cut at almost every record (a durable 1-process logger with a
/// 50 ms daemon: 3.1–4.3k appends/s, 5.0–6.5k at 4 MiB).
const BUSY_WAL_BYTES: u64 = super::schema::WAL_SIZE_LIMIT_BYTES;

/// `PRAGMA auto_vacuum` of a journal whose free pages can be given back in steps.
const AUTO_VACUUM_INCREMENTAL: i64 = 2;

/// A journal's pages, in bytes: one page, the pages holding data, the free pages.
#[derive(Debug, Clone, Copy)]
struct Pages {
    page: u64,
    live: u64,
    free: u64,
}

fn pages(conn: &Connection) -> rusqlite::Result<Pages> {
    // The plain pragmas, each cached: a round asks every journal it recorded (the
    // table-valued `pragma_*` functions cost more than the rest of its give-back).
    let get = |sql: &str| conn.prepare_cached(sql)?.query_row([], |r| r.get::<_, i64>(0));
    let (size, count, free) = (get("PRAGMA page_size")?, get("PRAGMA page_count")?, get("PRAGMA freelist_count")?);
    let n = |v: i64| u64::try_from(v).unwrap_or(0); // SQLite's counters are never negative
    Ok(Pages { page: n(size), live: n(count).saturating_sub(n(free)) * n(size), free: n(free) * n(size) })
}

/// Give free pages back: at most `limit` of them, each moved or cut in the one write
/// transaction the statement runs in; stepped to its end (a single step frees one
/// page). `false` when it failed (the pages stay free in the file).
pub(super) fn incremental_vacuum(conn: &Connection, limit: Option<u64>) -> bool {
    let sql = match limit {
        Some(n) => format!("PRAGMA incremental_vacuum({n})"),
        None => "PRAGMA incremental_vacuum".to_string(),
    };
    let Ok(mut st) = conn.prepare(&sql) else { return false };
    let Ok(mut rows) = st.query([]) else { return false };
    loop {
        match rows.next() {
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// A journal's connection with `synchronous=NORMAL` (no fsync per commit), restored
/// when dropped. For the compactor's own writes, which change no line a writer was
/// told is durable: a give-back step moves pages and changes no row (a power cut that
/// takes it back leaves those pages free), and a drained record only repeats what the
/// target's durable manifest already says (a power cut that takes it back leaves the
/// record behind the watermark, which the next round catches up: docs/design.md step
/// 7). `SQLite` syncs the WAL before a checkpoint copies such a commit into the
/// database file, and a later `FULL` commit's fsync covers the commits logged before it.
pub(super) struct Unsynced<'c> {
    conn: super::ConnGuard<'c>,
    durability: Durability,
    /// `synchronous=OFF` and auto-checkpoints off: [`Unsynced::begin_record`].
    off: std::cell::Cell<bool>,
}

impl<'c> Unsynced<'c> {
    pub(super) fn enter(conn: super::ConnGuard<'c>, durability: Durability) -> Unsynced<'c> {
        let _ = conn.prepare_cached("PRAGMA synchronous=NORMAL").and_then(|mut st| st.execute([]));
        Unsynced { conn, durability, off: std::cell::Cell::new(false) }
    }

    /// The drained record's write transaction (docs/design.md step 7). When the `-wal`
    /// at `wal` — the file `SQLite` has open — is empty once the write lock is held (no
    /// frame can be added then but this connection's), the transaction runs with its
    /// remaining fsyncs off too, until dropped: the header's and the folder's that
    /// `SQLite` makes for the first frame of an empty `-wal` (an empty file has no
    /// older frame a power cut could replay). Auto-checkpoints are off with them: a
    /// checkpoint under `synchronous=OFF` copies frames into the database file
    /// without an fsync. (`SQLite` refuses to change `synchronous` inside a
    /// transaction: set before `BEGIN`, on a look without the lock, and the
    /// transaction begun again under `NORMAL` if a frame came in between.)
    pub(super) fn begin_record(&self, wal: &std::path::Path) -> rusqlite::Result<super::WriteTx<'_>> {
        self.begin_record_with(wal, || {})
    }

    /// [`Unsynced::begin_record`], running `between` after the look without the lock
    /// and before `BEGIN` (a test's seam: another connection's commit there).
    fn begin_record_with(&self, wal: &std::path::Path, between: impl FnOnce()) -> rusqlite::Result<super::WriteTx<'_>> {
        let empty = || crate::os::sqlite_file::wal_len(&self.conn, wal) == Some(0);
        if empty() {
            self.set_off(true);
        }
        between();
        let tx = super::WriteTx::begin(&self.conn)?;
        if !self.off.get() || empty() {
            return Ok(tx);
        }
        drop(tx);
        self.set_off(false);
        super::WriteTx::begin(&self.conn)
    }

    /// Fsyncs and auto-checkpoints off (`true`) or back to this guard's `NORMAL`.
    /// Checkpoints go off first and come back last, so that nothing runs under `OFF`
    /// that could checkpoint even when a pragma fails.
    fn set_off(&self, off: bool) {
        let run = |sql: &str| self.conn.prepare_cached(sql).and_then(|mut st| st.query_row([], |_| Ok(()))).is_ok();
        let run_quiet = |sql: &str| self.conn.prepare_cached(sql).and_then(|mut st| st.execute([])).is_ok();
        if off {
            if !run("PRAGMA wal_autocheckpoint=0") {
                return;
            }
            if run_quiet("PRAGMA synchronous=OFF") {
                self.off.set(true);
            } else {
                super::schema::restore_autocheckpoint(&self.conn);
            }
        } else {
            self.off.set(false);
            let _ = run_quiet("PRAGMA synchronous=NORMAL");
            super::schema::restore_autocheckpoint(&self.conn);
        }
    }
}

impl std::ops::Deref for Unsynced<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Unsynced<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for Unsynced<'_> {
    fn drop(&mut self) {
        let sql = match self.durability {
            Durability::Full => "PRAGMA synchronous=FULL",
            Durability::Normal => "PRAGMA synchronous=NORMAL",
        };
        let _ = self.conn.prepare_cached(sql).and_then(|mut st| st.execute([]));
        if self.off.get() {
            super::schema::restore_autocheckpoint(&self.conn);
        }
    }
}

impl Journal {
    /// After a record (its transaction committed): give free pages and `-wal` space back
    /// as docs/design.md, "Giving space back", says. Takes the handle's connection for
    /// each step only, so appends on this same handle go in between too. Best effort:
    /// what fails stays in the file, for the next record. Returns whether it
    /// checkpointed the WAL.
    pub(super) fn give_space_back(&self) -> bool {
        if self.too_small_to_give_back() {
            return false;
        }
        let Some(before) = self.lock_conn().ok().and_then(|c| pages(&c).ok()) else { return false };
        let mut announced = false;
        let mut gave = false;
        let mut announce = || {
            if !std::mem::replace(&mut announced, true) {
                failpoint::hit(failpoint::Point::JournalGiveBack);
            }
        };
        if before.free > before.live / 4 + FREE_SLACK_BYTES {
            if before.live <= REBUILD_MAX_LIVE_BYTES {
                // Also the upgrade of a journal made with auto_vacuum=NONE: the VACUUM
                // that rebuilds it applies the new setting.
                gave = self.give_back_step(|c| c.execute_batch("PRAGMA auto_vacuum=INCREMENTAL; VACUUM").is_ok());
                announce();
            } else if self.auto_vacuum() == Some(AUTO_VACUUM_INCREMENTAL) {
                let goal = before.live / 8;
                let step_pages = (STEP_BYTES / before.page.max(1)).max(1);
                let mut free = before.free;
                while self.give_back_step(|c| incremental_vacuum(c, Some(step_pages))) {
                    gave = true;
                    announce();
                    let now = self.lock_conn().ok().and_then(|c| pages(&c).ok()).map_or(free, |p| p.free);
                    if now <= goal || now >= free {
                        break; // done, or another process is filling the pages as fast
                    }
                    free = now;
                    std::thread::sleep(STEP_GAP);
                }
            }
        }
        announce();
        let Ok(conn) = self.lock_conn() else { return gave };
        let live = if gave { pages(&conn).map_or(before.live, |p| p.live) } else { before.live };
        let wal = std::fs::metadata(wal_path(&self.path)).map_or(0, |m| m.len());
        let empty = conn
            .prepare_cached("SELECT NOT EXISTS (SELECT 1 FROM runs)")
            .and_then(|mut st| st.query_row([], |r| r.get::<_, bool>(0)))
            .unwrap_or(false);
        let cut_wal = wal > live / 4 + if empty { WAL_SLACK_BYTES } else { BUSY_WAL_BYTES };
        if !gave && !cut_wal {
            return false;
        }
        // PASSIVE never blocks anyone; it also cuts the database file to the size the
        // give-back left (a WAL database shrinks only when checkpointed).
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if cut_wal {
            // Only if nobody holds the write lock or a snapshot right now (the busy
            // handler off): it copies the few frames the passive one left and cuts the
            // -wal to zero.
            open::set_busy_limit(Duration::ZERO);
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            open::set_busy_limit(self.opts.busy_timeout);
        }
        true
    }

    /// One give-back transaction, on the connection taken for it alone, without an
    /// fsync of its own ([`Unsynced`]). `false` when it failed.
    fn give_back_step(&self, step: impl FnOnce(&Connection) -> bool) -> bool {
        let Ok(conn) = self.lock_conn() else { return false };
        let conn = Unsynced::enter(conn, self.opts.durability);
        step(&conn)
    }

    /// Whether the journal's files are so small that no rule below can apply, told by
    /// their sizes alone (a round records every journal it drained; asking `SQLite` was
    /// most of a small journal's record). Every page of the newest snapshot is in the
    /// main file or has a frame in the `-wal`, so its free pages are at most the two
    /// files' bytes; a `-wal` that small is under every cut threshold too.
    fn too_small_to_give_back(&self) -> bool {
        let len = |p: &std::path::Path| match std::fs::metadata(p) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(_) => u64::MAX,
        };
        let (main, wal) = (len(&self.path), len(&wal_path(&self.path)));
        main.saturating_add(wal) <= FREE_SLACK_BYTES.min(WAL_SLACK_BYTES)
    }

    fn auto_vacuum(&self) -> Option<i64> {
        self.lock_conn().ok()?.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalOptions;

    fn pragma(conn: &Connection, name: &str) -> i64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0)).unwrap()
    }

    /// A journal whose `-wal` is empty: lines appended by a handle closed since (its
    /// close checkpointed and removed the `-wal`), then this handle's first read.
    fn journal_with_an_empty_wal(dir: &std::path::Path) -> (Journal, std::path::PathBuf) {
        let path = dir.join("a.journal");
        let writer = Journal::open(&path, JournalOptions::default()).unwrap();
        writer.append(b"one line").unwrap();
        drop(writer);
        let j = Journal::open(&path, JournalOptions::default()).unwrap();
        j.drained_record().unwrap();
        let wal = wal_path(&path);
        assert_eq!(crate::os::sqlite_file::wal_len(&j.lock_conn().unwrap(), &wal), Some(0), "the -wal must be empty");
        (j, wal)
    }

    /// The drained record's transaction runs with fsyncs and auto-checkpoints off
    /// exactly when the `-wal` is empty (docs/design.md step 7), and the handle has
    /// its own settings back after it.
    #[test]
    fn a_record_turns_fsyncs_off_only_on_an_empty_wal_and_gives_the_settings_back() {
        let d = tempfile::tempdir().unwrap();
        let (j, wal) = journal_with_an_empty_wal(d.path());
        let record = |expect_sync: i64, expect_checkpoint: i64| {
            let conn = Unsynced::enter(j.lock_conn().unwrap(), Durability::Full);
            let tx = conn.begin_record(&wal).unwrap();
            assert_eq!(pragma(&tx, "synchronous"), expect_sync);
            assert_eq!(pragma(&tx, "wal_autocheckpoint"), expect_checkpoint);
            // (a real change: SQLite writes no page for a row rewritten as it was)
            tx.execute("UPDATE state SET drained_seq = drained_seq + 1 WHERE id = 1", []).unwrap();
            tx.commit().unwrap();
            drop(conn);
            let conn = j.lock_conn().unwrap();
            assert_eq!(pragma(&conn, "synchronous"), 2, "FULL again after the record");
            assert_eq!(pragma(&conn, "wal_autocheckpoint"), 512, "auto-checkpoints on again after the record");
        };
        record(0, 0);
        // The record's frames are in the -wal now: the next one keeps SQLite's fsyncs.
        record(1, 512);
    }

    /// A frame committed by another connection between the look without the lock and
    /// `BEGIN`: the record must not run with fsyncs off over it.
    #[test]
    fn a_frame_that_comes_in_before_the_write_lock_keeps_the_fsyncs_on() {
        let d = tempfile::tempdir().unwrap();
        let (j, wal) = journal_with_an_empty_wal(d.path());
        let other = Journal::open(j.path(), JournalOptions::default()).unwrap();
        let conn = Unsynced::enter(j.lock_conn().unwrap(), Durability::Full);
        let tx = conn.begin_record_with(&wal, || other.append(b"in between").map(|_| ()).unwrap()).unwrap();
        assert_eq!(pragma(&tx, "synchronous"), 1, "NORMAL: the -wal is no longer empty");
        assert_eq!(pragma(&tx, "wal_autocheckpoint"), 512);
        drop(tx);
        drop(conn);
        assert_eq!(pragma(&j.lock_conn().unwrap(), "synchronous"), 2);
    }
}
