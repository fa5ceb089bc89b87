//! A journal's `SQLite` schema, its settings, its migrations, and the seq rule.
//!
//! Keeps: a seq is never reused. The next seq is one past the newest run, or
//! `drained_seq + 1` when every run was drained and deleted (runs are only ever
//! deleted up to `drained_seq`, which only grows) — the guarantee DESIGN.md asks of
//! `AUTOINCREMENT`, kept without a counter row that every append would rewrite (an
//! append writes one page: the newest leaf of `runs`). The rule is written once, as
//! SQL ([`next_seq_sql!`], [`total_bytes_sql!`]); [`head`] and the one-statement
//! append both use it.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, TransactionBehavior};

use super::{Durability, JournalId, JournalOptions};
use crate::error::{Error, Result};

/// The journal file format this build reads and writes (`meta.format`).
pub(crate) const FORMAT_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    first_seq INTEGER PRIMARY KEY,
    count INTEGER NOT NULL,
    end_bytes INTEGER NOT NULL,
    appended_ms INTEGER NOT NULL,
    line_meta BLOB NOT NULL,
    data BLOB NOT NULL,
    run_crc INTEGER,
    durable INTEGER
);
CREATE TABLE IF NOT EXISTS idempotency (
    key BLOB PRIMARY KEY,
    seq INTEGER NOT NULL,
    added_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency(added_ms);
CREATE TABLE IF NOT EXISTS state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    drained_bytes INTEGER NOT NULL,
    drained_target TEXT,
    drained_seq INTEGER NOT NULL,
    drained_crc INTEGER NOT NULL,
    drained_chain INTEGER
);
";

/// The seq the next line gets: one past the newest run, else `drained_seq + 1`.
macro_rules! next_seq_sql {
    () => {
        "coalesce((SELECT first_seq + count FROM runs ORDER BY first_seq DESC LIMIT 1),
                  (SELECT drained_seq + 1 FROM state WHERE id = 1))"
    };
}
/// Cumulative payload bytes ever appended: the newest run's mark, else the drained one.
macro_rules! total_bytes_sql {
    () => {
        "coalesce((SELECT end_bytes FROM runs ORDER BY first_seq DESC LIMIT 1),
                  (SELECT drained_bytes FROM state WHERE id = 1))"
    };
}
pub(super) use {next_seq_sql, total_bytes_sql};

/// Checkpoint the WAL once it holds this many pages (2 MiB of 4 KiB pages).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 512;

/// The size a `-wal` is cut back to when it is reset (`SQLite`'s own cycle stays below
/// it: `space.rs` leaves a journal that holds lines alone up to here).
pub(super) const WAL_SIZE_LIMIT_BYTES: u64 = 4 << 20;

/// `SQLite` page size of new journals.
const JOURNAL_PAGE_SIZE: u32 = 4 << 10;

/// A seq, count or byte mark for an INTEGER column. `SQLite` integers are i64; these
/// u64 counters stay far below 2^63 in a journal tributary wrote, and a value past it
/// fails as rusqlite's own (`fallible_uint`) `u64` conversion does, never wrapping
/// to a negative number.
pub(super) fn to_sql(v: u64) -> rusqlite::Result<i64> {
    i64::try_from(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// `v` as a bound an INTEGER column is compared with: no stored seq is above
/// `i64::MAX`, so a larger bound clamped there selects the same rows.
pub(super) fn sql_bound(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Column `idx` of `row` as a u64 counter: a negative value (a damaged row) fails as
/// rusqlite's own `u64` conversion does ([`rusqlite::Error::IntegralValueOutOfRange`]).
pub(super) fn get_u64(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v))
}

/// The seq and byte counters ([`head`]).
pub(super) struct Head {
    pub(super) next_seq: u64,
    /// Cumulative payload bytes ever appended.
    pub(super) total_bytes: u64,
    pub(super) drained_seq: u64,
    /// Cumulative payload bytes of the runs deleted so far.
    pub(super) drained_bytes: u64,
}

/// The seq and byte counters, by the seq rule. One statement, so one snapshot: read in
/// two, a drain's step 7 committing in between (runs deleted, `drained_seq` moved) made
/// the seq ceiling look lower than the target's watermark — a false "journal
/// restored" in the demo.
pub(super) fn head(conn: &Connection) -> rusqlite::Result<Head> {
    let (next_seq, total_bytes, drained_seq, drained_bytes): (i64, i64, i64, i64) = conn
        .prepare_cached(concat!(
            "SELECT ",
            next_seq_sql!(),
            ", ",
            total_bytes_sql!(),
            ", drained_seq, drained_bytes FROM state WHERE id = 1"
        ))?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let count = |v: i64| u64::try_from(v).unwrap_or(0); // never negative in a journal we wrote
    Ok(Head {
        next_seq: count(next_seq),
        total_bytes: count(total_bytes),
        drained_seq: count(drained_seq),
        drained_bytes: count(drained_bytes),
    })
}

/// Settings of a connection just opened on a journal file (`new`: the file has no
/// tables yet). Returns nothing but errors; the caller goes on to [`init`].
pub(super) fn configure(conn: &Connection, path: &Path, opts: &JournalOptions, new: bool) -> Result<()> {
    let not_journal = |detail: String| Error::NotAJournal { path: path.to_path_buf(), detail };
    // For a new journal only (an existing one keeps its settings; and setting
    // auto_vacuum runs a write transaction, which must not make opening a journal
    // that another process is writing wait for its lock):
    // - auto_vacuum=INCREMENTAL, never vacuumed: its pointer map lets DELETE free a
    //   drained run's overflow chain without reading every page of it (that second
    //   read of every byte was a fifth of a drain's time);
    // - 4 KiB pages: a one-line commit writes one 4 KiB WAL frame instead of 16 KiB
    //   (single appends 0.92x -> ~1.0x raw SQLite). 16 KiB pages had been chosen to
    //   cut that DELETE walk, which the pointer map now skips: a drain costs ~5%
    //   more with 4 KiB pages, and its page cache is smaller.
    if new {
        conn.execute_batch(&format!("PRAGMA page_size = {JOURNAL_PAGE_SIZE}; PRAGMA auto_vacuum = INCREMENTAL;"))
            .map_err(|e| {
                let note = crate::os::sqlite_file::system_error_note(conn, &e);
                Error::sqlite(format!("setting a new journal's page size and auto_vacuum{note}"), e)
            })?;
    }
    // Switching a new file to WAL takes an exclusive lock and does not consult the
    // busy handler: processes creating the same journal at once must retry here.
    let started = Instant::now();
    let mode: String = loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)) {
            Ok(m) => break m,
            Err(e) if super::open::is_busy(&e) && started.elapsed() < opts.busy_timeout => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(not_journal(format!("cannot switch to WAL mode: {e}"))),
        }
    };
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(not_journal(format!("SQLite refused WAL mode (got {mode})")));
    }
    let sync = match opts.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    // A 2 MiB WAL (SQLite's default is 4 MiB): commits that overwrite WAL space are
    // cheaper than ones that grow the file, and every fresh journal or reopened one
    // (SQLite deletes the WAL on close) starts by growing it; the earlier reset
    // halves that phase. Measured: equal in steady state; in a journal's first
    // second, single appends +5-20%, 1000-line batches -3%.
    // journal_size_limit: a WAL that grew past it (a burst, a slow drain) is cut back
    // to it when SQLite next resets it, so drained space goes back to the disk.
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}; \
         PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES};"
    ))
    .map_err(|e| {
        Error::sqlite(format!("setting synchronous{}", crate::os::sqlite_file::system_error_note(conn, &e)), e)
    })
}

/// Auto-checkpoints back on, at the size every journal handle is opened with (after
/// a record that ran without them: `space.rs`, `Unsynced`). Best effort: a handle
/// left without them still checkpoints after each record (`space.rs`).
pub(super) fn restore_autocheckpoint(conn: &Connection) {
    let _ = conn.execute_batch(&format!("PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES};"));
}

/// The journal's id: read from an initialised journal, or the schema created (by
/// exactly one of several processes creating it at once), then migrations applied.
pub(super) fn init(conn: &mut Connection, path: &Path) -> Result<JournalId> {
    let id = init_schema(conn, path)?;
    // Every later column there, told by compiling one statement that names them all
    // (the common case, and every open pays it); else each added where missing.
    if conn.prepare("SELECT r.run_crc, r.durable, s.drained_chain FROM runs AS r, state AS s LIMIT 0").is_err() {
        add_column(conn, "runs", "run_crc")?;
        add_column(conn, "state", "drained_chain")?;
        add_column(conn, "runs", "durable")?;
    }
    Ok(id)
}

/// The id of an already initialised journal, read without taking `SQLite`'s write
/// lock (a busy writer would starve an IMMEDIATE transaction here).
fn existing_id(conn: &Connection) -> Option<(String, String)> {
    // One statement (every open of a journal runs it; a daemon over many journals opens
    // a hundred a pass): a missing table fails it, which is "not initialised" too.
    let (states, format, id): (i64, Option<String>, Option<String>) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM state), (SELECT value FROM meta WHERE key = 'format'),
                    (SELECT value FROM meta WHERE key = 'journal_id')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok()?;
    if states == 1 {
        Some((format?, id?))
    } else {
        None
    }
}

fn parse_meta(path: &Path, format: &str, id_hex: &str) -> Result<JournalId> {
    let not_journal = |detail: String| Error::NotAJournal { path: path.to_path_buf(), detail };
    if format != FORMAT_VERSION.to_string() {
        return Err(not_journal(format!("journal format {format}, this build reads {FORMAT_VERSION}")));
    }
    JournalId::from_hex(id_hex).ok_or_else(|| not_journal(format!("bad journal_id `{id_hex}`")))
}

fn init_schema(conn: &mut Connection, path: &Path) -> Result<JournalId> {
    if let Some((format, id_hex)) = existing_id(conn) {
        return parse_meta(path, &format, &id_hex);
    }
    let not_journal = |detail: String| Error::NotAJournal { path: path.to_path_buf(), detail };
    // IMMEDIATE: two processes creating the same journal at once agree on one id.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| Error::sqlite("starting the transaction that creates the journal's tables", e))?;
    // (open() already refused a database without tributary's tables.)
    tx.execute_batch(SCHEMA).map_err(|e| Error::sqlite("creating the journal schema", e))?;
    let fresh_id = JournalId::random()?;
    tx.execute(
        "INSERT OR IGNORE INTO meta(key, value) VALUES ('format', ?1), ('journal_id', ?2)",
        params![FORMAT_VERSION.to_string(), fresh_id.to_hex()],
    )
    .map_err(|e| Error::sqlite("writing journal metadata", e))?;
    tx.execute(
        "INSERT OR IGNORE INTO state(id, drained_bytes, drained_target, drained_seq, drained_crc)
         VALUES (1, 0, NULL, 0, 0)",
        [],
    )
    .map_err(|e| Error::sqlite("writing journal state", e))?;
    let (format, id_hex) =
        existing_id(&tx).ok_or_else(|| not_journal("journal metadata missing after creation".into()))?;
    let id = parse_meta(path, &format, &id_hex)?;
    tx.commit().map_err(|e| Error::sqlite("committing journal creation", e))?;
    Ok(id)
}

/// Journals made before a column existed get it (nullable, INTEGER): `runs.run_crc`
/// (their existing rows keep per-line checks), `state.drained_chain` (a record
/// from before chained watermarks is compared by CRC), `runs.durable` (their rows,
/// and rows an older writer adds, are synced by the drain: O3).
fn add_column(conn: &mut Connection, table: &str, column: &str) -> Result<()> {
    let has = |c: &Connection| -> Result<bool> {
        c.query_row("SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2", params![table, column], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n > 0)
        .map_err(|e| Error::sqlite(format!("reading the {table} table's columns"), e))
    };
    if has(conn)? {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| Error::sqlite(format!("starting the {table}.{column} upgrade"), e))?;
    if !has(&tx)? {
        tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} INTEGER"))
            .map_err(|e| Error::sqlite(format!("adding the {table}.{column} column"), e))?;
    }
    tx.commit().map_err(|e| Error::sqlite(format!("committing the {table}.{column} upgrade"), e))
}

/// The names of a database's tables: the first read of a file opened as a journal (or
/// a cursor store), before anything is written to it.
pub(crate) fn table_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
}

/// Whether tables of these names are a tributary journal's (its `meta` table).
pub(crate) fn is_journal(tables: &[String]) -> bool {
    tables.iter().any(|t| t == "meta")
}
