//! [`CursorStore`]: named reader cursors kept durably in a local `SQLite` file.
//!
//! Keeps: a committed cursor survives a crash (`synchronous=FULL`); a stored cursor
//! keeps its target's id, so a reader refuses it on another target; a store made by
//! an earlier version is upgraded once, in one write transaction.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Cursor, TargetId};
use crate::error::{Error, Result};

/// Named reader cursors kept durably in a local `SQLite` file, committed by the caller
/// after it processed the lines (at-least-once processing; see the README for the
/// exactly-once pattern with idempotency keys).
///
/// A stored cursor keeps its target's id: a reader refuses it on another target
/// ([`Reader::open_at`](super::Reader::open_at)). Rows stored by versions before target ids load as legacy
/// cursors (no id), and get one at their next commit.
#[derive(Debug)]
pub struct CursorStore {
    /// `None` only while it is dropped (closed inside the fork gate, `os::fork`).
    conn: Option<Connection>,
    path: PathBuf,
}

impl CursorStore {
    /// Open (creating if needed, mode 0600) a cursor store; a store made by an earlier
    /// version gets the `target_id` column.
    ///
    /// # Errors
    /// [`Error::UnsafeFilesystem`] when the folder is on a network filesystem;
    /// [`Error::NotAJournal`] when the file is not a cursor store; [`Error::Io`] or
    /// [`Error::Sqlite`] when it cannot be created, opened or upgraded.
    pub fn open(path: impl AsRef<Path>) -> Result<CursorStore> {
        let path = path.as_ref().to_path_buf();
        if let Some(too_long) = crate::os::sqlite_vfs::path_too_long(&path, "cursor store", false) {
            return Err(too_long);
        }
        match crate::os::fscheck::check_journal_location(&path) {
            // the journal's advice (allow_network_fs) does not apply to a cursor store
            Err(Error::UnsafeFilesystem { path, detail }) if detail.contains("statfs magic") => {
                let fs = detail
                    .split(" (statfs")
                    .next()
                    .unwrap_or(&detail)
                    .trim_start_matches("the journal's folder is on ");
                return Err(Error::UnsafeFilesystem {
                    path,
                    detail: format!(
                        "the cursor store's folder is on {fs}; a cursor store is an SQLite file in WAL mode and \
                         needs the reader host's local disk: give --cursor-store a path there"
                    ),
                });
            }
            r => r?,
        }
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| Error::io(format!("opening cursor store {}", path.display()), e))?;
        }
        let ctx = |what: &str| format!("{what} {}", path.display());
        let _inside = crate::os::fork::enter();
        // Through `tributary-unix`: a full disk is an error, not a SIGBUS.
        let conn = crate::os::sqlite_vfs::open(&path).map_err(|e| {
            crate::os::sqlite_vfs::path_too_long(&path, "cursor store", true)
                .unwrap_or_else(|| Error::sqlite(ctx("opening cursor store"), e))
        })?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(|e| Error::sqlite(ctx("configuring"), e))?;
        let not_a_store =
            |e: rusqlite::Error| Error::NotAJournal { path: path.clone(), detail: format!("not a cursor store: {e}") };
        // Before anything is written: a file that is no database, or a damaged one, is
        // not a store (it said `sqlite`, a kind that is retried); a journal is not one
        // either (its schema got a `cursors` table: an outside tester).
        let tables = crate::journal::table_names(&conn).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => not_a_store(e),
            _ => Error::sqlite(ctx("reading cursor store"), e),
        })?;
        if crate::journal::is_journal(&tables) {
            return Err(Error::NotAJournal {
                path: path.clone(),
                detail: "it is a tributary journal, not a cursor store (a journal keeps its own processed cursors: \
                         Journal::append_batch_with_cursor); give the store a file of its own"
                    .into(),
            });
        }
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).map_err(|e| Error::sqlite(ctx("configuring"), e))?;
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS cursors (
                 name TEXT PRIMARY KEY, generation INTEGER NOT NULL, offset INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL, target_id TEXT)",
        )
        .map_err(not_a_store)?;
        // Upgrade a store made before cursors carried their target's id: its rows keep
        // a NULL id (legacy cursors). In one write transaction, so that two processes
        // opening the same old store do not both add the column.
        let upgrade = || -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let result = (|| {
                let has: bool = conn.query_row(
                    "SELECT COUNT(*) FROM pragma_table_info('cursors') WHERE name = 'target_id'",
                    [],
                    |r| r.get::<_, i64>(0).map(|n| n > 0),
                )?;
                if !has {
                    conn.execute_batch("ALTER TABLE cursors ADD COLUMN target_id TEXT")?;
                }
                Ok(())
            })();
            conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
            result
        };
        upgrade().map_err(|e| Error::sqlite(ctx("adding the target_id column to cursor store"), e))?;
        Ok(CursorStore { conn: Some(conn), path })
    }

    /// The connection, with the fork gate held while it is used.
    fn conn(&self) -> (crate::os::fork::Inside, &Connection) {
        (crate::os::fork::enter(), self.conn.as_ref().expect("a cursor store's connection lives until it is dropped"))
    }

    /// The committed cursor of `name`, if any (with its target's id, or none for a
    /// cursor stored by an earlier version).
    ///
    /// # Errors
    /// [`Error::Sqlite`] when the store cannot be read; [`Error::NotAJournal`] when the
    /// stored cursor is damaged (a bad target id, a negative position).
    pub fn get(&self, name: &str) -> Result<Option<Cursor>> {
        let (_inside, conn) = self.conn();
        let row = conn
            .query_row("SELECT generation, offset, target_id FROM cursors WHERE name = ?1", params![name], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<String>>(2)?))
            })
            .optional()
            .map_err(|e| Error::sqlite(format!("reading cursor {name} in {}", self.path.display()), e))?;
        let Some((generation, offset, id)) = row else { return Ok(None) };
        cursor_from_row(&self.path, name, generation, offset, id.as_deref()).map(Some)
    }

    /// Durably record that `name` has processed everything before `cursor` (and which
    /// target it belongs to).
    ///
    /// # Errors
    /// [`Error::Sqlite`] when the write fails; [`Error::InvalidArgument`] for a cursor
    /// whose generation or offset is above `i64::MAX` (no target has one; `SQLite` could
    /// not store it), or at generation 0 with an offset (no reader opens there).
    /// Nothing is recorded on an error.
    pub fn commit(&self, name: &str, cursor: Cursor) -> Result<()> {
        let (generation, offset) = cursor.storable()?;
        let now = i64::try_from(crate::os::clock::wall_ms()).unwrap_or(i64::MAX);
        let (_inside, conn) = self.conn();
        conn.execute(
            "INSERT INTO cursors(name, generation, offset, updated_ms, target_id) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(name) DO UPDATE SET generation = ?2, offset = ?3, updated_ms = ?4, target_id = ?5",
            params![name, generation, offset, now, cursor.target_id.map(|id| id.to_hex())],
        )
        .map(|_| ())
        .map_err(|e| Error::sqlite(format!("committing cursor {name} in {}", self.path.display()), e))
    }
}

impl Drop for CursorStore {
    fn drop(&mut self) {
        let _inside = crate::os::fork::enter();
        drop(self.conn.take());
    }
}

/// A stored cursor row (of a cursor store, or of a journal's `cursors` table) as a
/// [`Cursor`]; a negative position or a bad id is a damaged file
/// ([`Error::NotAJournal`] naming `path`).
pub(crate) fn cursor_from_row(
    path: &Path,
    name: &str,
    generation: i64,
    offset: i64,
    id: Option<&str>,
) -> Result<Cursor> {
    let (Ok(g), Ok(o)) = (u64::try_from(generation), u64::try_from(offset)) else {
        return Err(Error::NotAJournal {
            path: path.to_path_buf(),
            detail: format!("cursor {name} has a negative position ({generation}:{offset})"),
        });
    };
    let target_id = match id {
        None => None,
        Some(hex) => Some(TargetId::from_hex(hex).ok_or_else(|| Error::NotAJournal {
            path: path.to_path_buf(),
            detail: format!("cursor {name} has a bad target id `{hex}`"),
        })?),
    };
    Ok(Cursor { generation: g, offset: o, target_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A position `SQLite` cannot hold is refused, not wrapped to a negative number; a
    /// negative stored one is a damaged store, not a huge position.
    #[test]
    fn positions_out_of_sqlite_range_are_refused_both_ways() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("c.cursors");
        let store = CursorStore::open(&path).unwrap();
        let e = store.commit("far", Cursor::at(u64::MAX, 0)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        assert_eq!(store.get("far").unwrap(), None, "nothing was recorded");
        store.commit("r", Cursor::at(1, 10)).unwrap();
        assert_eq!(store.get("r").unwrap(), Some(Cursor::at(1, 10)));
        store.conn().1.execute("UPDATE cursors SET offset = -10 WHERE name = 'r'", []).unwrap();
        let e = store.get("r").unwrap_err();
        assert!(matches!(e, Error::NotAJournal { .. }), "{e}");
    }
}
