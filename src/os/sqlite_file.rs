//! Disk blocks for a journal file's future checkpoints, taken with
//! `fallocate(FALLOC_FL_KEEP_SIZE)` on the descriptor `SQLite` already holds for it —
//! never by opening the file again: `SQLite` holds POSIX locks on it, and closing any
//! other descriptor of that file would drop them.
//!
//! Keeps: a reservation never writes a byte of the file and never changes its length
//! (`KEEP_SIZE` only gives the range blocks, the file's own data untouched), so it
//! cannot race a checkpoint another connection is writing; the descriptor used is
//! the one whose device and inode are the journal file's, checked by `fstat` each
//! time, or none. (`SQLITE_FCNTL_SIZE_HINT` was tried first: without a real
//! `posix_fallocate` `SQLite` writes a zero byte into each new block from the size it
//! read, which zeroed the last bytes of pages a concurrent checkpoint had just
//! written — an outside reviewer, reproduced against this `SQLite`.)
//!
//! Also, from the same connection handle: the operating system's errno behind
//! `SQLite`'s last "disk I/O error" (`system_error_note`), for messages.

use std::ffi::c_void;
use std::io;
use std::os::fd::RawFd;

use rusqlite::{ffi, Connection};

/// The head of `SQLite`'s `unixFile` (`sqlite3.c`, `struct unixFile`, unchanged since
/// 2010): what a connection opened through the `unix` VFS — or `tributary-unix`, which
/// opens `unix`'s own file objects — points at for its main database file. Only `h`
/// is read, and only after `fstat` said it is the expected file.
#[repr(C)]
struct UnixFileHead {
    methods: *const ffi::sqlite3_io_methods,
    vfs: *mut ffi::sqlite3_vfs,
    inode: *mut c_void,
    h: libc::c_int,
}

/// The descriptor `SQLite` holds for `conn`'s main database file, with its length and
/// the bytes of blocks it holds, if it is the file with `(dev, ino)` (`None`: not
/// open, or not recognisably so). One `fstat`.
fn main_file(conn: &Connection, dev_ino: (u64, u64)) -> Option<(RawFd, u64, u64)> {
    open_file(conn, ffi::SQLITE_FCNTL_FILE_POINTER, dev_ino)
}

/// [`main_file`] for the file object `op` names: `SQLITE_FCNTL_FILE_POINTER` (the
/// database file) or `SQLITE_FCNTL_JOURNAL_POINTER` (in WAL mode, the `-wal`).
fn open_file(conn: &Connection, op: libc::c_int, dev_ino: (u64, u64)) -> Option<(RawFd, u64, u64)> {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: the handle is this open connection's, used by this thread only (the
    // journal's connection mutex is held by the caller; rusqlite connections are not
    // Sync); "main" is NUL-terminated; both file-pointer controls write one
    // `sqlite3_file*` into the pointer given, a live local.
    let rc =
        unsafe { ffi::sqlite3_file_control(conn.handle(), c"main".as_ptr(), op, (&raw mut file).cast::<c_void>()) };
    if rc != ffi::SQLITE_OK || file.is_null() {
        return None;
    }
    // SAFETY: `file` is one of the connection's file objects, alive while the
    // connection is. One not open (a `-wal` before the first read) has null methods
    // and is not read further. An open `unix` file begins with `UnixFileHead`'s fields
    // (the struct is at least that long: `szOsFile`), and a `c_int` read from it is a
    // plain integer whatever it holds — it is used only once `fstat` confirms it
    // names the file.
    let fd = unsafe {
        let head = file.cast::<UnixFileHead>();
        if (*head).methods.is_null() {
            return None;
        }
        (*head).h
    };
    if fd < 0 {
        return None;
    }
    let (id, len, blocks) = crate::os::sys::fd_identity_length_blocks(fd).ok()?;
    (id == dev_ino).then_some((fd, len, blocks))
}

/// The length of the `-wal` `conn` has open, read on `SQLite`'s own descriptor for it,
/// if that is the file at `wal` (`None`: no `-wal` open, another file at that path, or
/// none). The drained record's "empty `-wal`" (`journal/space.rs`).
pub(crate) fn wal_len(conn: &Connection, wal: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(wal).ok()?;
    open_file(conn, ffi::SQLITE_FCNTL_JOURNAL_POINTER, (md.dev(), md.ino())).map(|(_, len, _)| len)
}

/// Give `conn`'s main database file — the journal file with `(dev, ino)` — disk
/// blocks for its bytes `from..to` (the caller knows the blocks below `from` are
/// there: XFS refuses a `fallocate` whose whole range exceeds the free space, even
/// where most of it is allocated already). `Ok(false)`: nothing was done (the
/// descriptor was not found, or the filesystem cannot allocate ahead: no
/// reservation there).
///
/// # Errors
/// `fallocate`'s error (`ENOSPC`: the disk is too full for it).
pub(crate) fn reserve_blocks(conn: &Connection, dev_ino: (u64, u64), from: u64, to: u64) -> io::Result<bool> {
    let Some((fd, _, _)) = main_file(conn, dev_ino) else { return Ok(false) };
    if to <= from {
        return Ok(true);
    }
    crate::os::sys::allocate_keeping_size(fd, from, to - from)
}

/// The length of `conn`'s main database file and the bytes of disk blocks it holds
/// (`st_size`, `st_blocks` × 512).
pub(crate) fn length_and_blocks(conn: &Connection, dev_ino: (u64, u64)) -> Option<(u64, u64)> {
    main_file(conn, dev_ino).map(|(_, len, blocks)| (len, blocks))
}

/// The operating system's error behind `SQLite`'s failed call `e` on `conn` (its
/// `SQLITE_IOERR` or `SQLITE_CANTOPEN` says only "disk I/O error"), as
/// `" (the system said: File too large (os error 27))"`, or `""` when there is none.
/// An outside tester saw only "disk I/O error" under `ulimit -f`.
pub(crate) fn system_error_note(conn: &Connection, e: &rusqlite::Error) -> String {
    // SQLite saves an errno only for an I/O error or a failed open, and then the
    // thread's errno as it finds it, not the failed call's: a full disk quoted the EIO
    // of an earlier failure, a short read (no errno of its own) "Resource temporarily
    // unavailable" from a lock attempt (an outside tester). Quote it only where it can
    // be the cause.
    let Some(code) = e.sqlite_error().map(|e| e.extended_code) else { return String::new() };
    if ![ffi::SQLITE_IOERR, ffi::SQLITE_CANTOPEN].contains(&(code & 0xff)) || code == ffi::SQLITE_IOERR_SHORT_READ {
        return String::new();
    }
    // SAFETY: `handle` is the live `sqlite3 *` of `conn`, borrowed for this call only;
    // `sqlite3_system_errno` only reads the connection's saved errno.
    let errno = unsafe { ffi::sqlite3_system_errno(conn.handle()) };
    if [0, libc::EAGAIN, libc::EINTR, libc::EBUSY].contains(&errno) {
        return String::new();
    }
    // (a writer under `ulimit -f` said only "File too large": an outside tester)
    let hint = if errno == libc::EFBIG { crate::error::file_too_large_hint() } else { String::new() };
    format!(" (the system said: {}{hint})", io::Error::from_raw_os_error(errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The errno `SQLite` saved for an earlier error is not quoted as the cause of a
    /// later one it did not save an errno for (a full disk that quoted an earlier EIO).
    #[test]
    fn an_errno_is_quoted_only_for_the_error_it_belongs_to() {
        let d = tempfile::tempdir().unwrap();
        let conn = crate::os::sqlite_vfs::open(&d.path().join("x.db")).unwrap();
        let missing = d.path().join("no-such-folder").join("y.db");
        let e = conn.execute(&format!("ATTACH DATABASE '{}' AS other", missing.display()), []).unwrap_err();
        let note = system_error_note(&conn, &e);
        assert!(note.contains("No such file or directory"), "a failed open says why: {note:?}");
        conn.execute_batch("PRAGMA page_size=4096; CREATE TABLE t(x); PRAGMA max_page_count=2").unwrap();
        let e = conn.execute("INSERT INTO t VALUES (zeroblob(100000))", []).unwrap_err();
        assert_eq!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull), "{e}");
        assert_eq!(system_error_note(&conn, &e), "", "the full database quoted the earlier failure's errno");
    }

    /// The descriptor read from `SQLite`'s file object is the database file's: if a
    /// future `SQLite` moved `h`, this fails (and at run time the `fstat` check makes
    /// the reservation a no-op instead of touching another file).
    #[test]
    fn the_descriptor_read_from_sqlite_is_the_database_files() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.db");
        let conn = crate::os::sqlite_vfs::open(&p).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x)").unwrap();
        let md = std::fs::metadata(&p).unwrap();
        let id = (md.dev(), md.ino());
        assert!(main_file(&conn, id).is_some());
        assert!(main_file(&conn, (id.0, id.1 + 1)).is_none(), "another inode must not match");
        let (len, before) = length_and_blocks(&conn, id).unwrap();
        assert!(reserve_blocks(&conn, id, len, 1 << 20).unwrap(), "tmp's filesystem cannot fallocate?");
        assert!(length_and_blocks(&conn, id).unwrap().1 >= (1 << 20).max(before));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), md.len(), "the length must not change");
        conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let n: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
    }
}
