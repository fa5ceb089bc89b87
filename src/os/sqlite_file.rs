//! Disk space for a journal file's future checkpoints, reserved through `SQLite`'s own
//! file controls (`SQLITE_FCNTL_CHUNK_SIZE`, `SQLITE_FCNTL_SIZE_HINT`) on the
//! descriptor it already has open — never by opening the file again: `SQLite` holds
//! POSIX locks on it, and closing any other descriptor of that file would drop them.
//!
//! Keeps: once [`reserve_main_file`] returned, the journal file holds disk blocks up to
//! the given size (rounded up to the chunk), so a checkpoint copying the log into it
//! writes into blocks it already has (on filesystems that overwrite in place: not
//! btrfs or ZFS, whose every write takes new blocks).

use std::ffi::{c_int, c_void};

use rusqlite::{ffi, Connection};

fn file_control(conn: &Connection, op: c_int, arg: *mut c_void) -> rusqlite::Result<()> {
    // SAFETY: the handle is this open connection's (valid while `conn` is borrowed, and
    // used by this thread only: rusqlite connections are not Sync); "main" is a
    // NUL-terminated string; both ops read one integer of the type given from `arg`,
    // which the callers pass as a pointer to a live local of that type.
    let rc = unsafe { ffi::sqlite3_file_control(conn.handle(), c"main".as_ptr(), op, arg) };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None))
    }
}

/// The main database file grows (and is cut back) in steps of `bytes`.
pub(crate) fn set_chunk_size(conn: &Connection, bytes: i32) -> rusqlite::Result<()> {
    let mut chunk: c_int = bytes;
    file_control(conn, ffi::SQLITE_FCNTL_CHUNK_SIZE, (&raw mut chunk).cast())
}

/// Give the main database file disk blocks up to `bytes` (rounded up to the chunk
/// size; nothing when it is that long already). `SQLite` writes one byte into each
/// new block (this build has no `posix_fallocate`), which lengthens the file: a
/// database file longer than its pages is what a chunk size makes, and `SQLite` reads
/// the database's size from its header and log, not from the file's length.
pub(crate) fn reserve_main_file(conn: &Connection, bytes: i64) -> rusqlite::Result<()> {
    let mut size: i64 = bytes;
    file_control(conn, ffi::SQLITE_FCNTL_SIZE_HINT, (&raw mut size).cast())
}
