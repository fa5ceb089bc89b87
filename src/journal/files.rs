//! A journal's files beside it: the `-wal`, the tombstone of a retirement, the folder
//! fsync, and the spool listing.
//!
//! Keeps: a retirement is crash-safe at every step (tombstone, then `-wal` and
//! `-shm`, then the tombstone, each made durable before the next), so no state leaves
//! a journal without its `-wal` or a `-wal` without a tombstone explaining it; and it
//! never deletes the files of a new journal made under the name; and an open's file,
//! `-wal` and `-shm` are one journal's (the spool folder's `flock`, [`lock_folder`],
//! serialises retirements against opens and against each other).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Free bytes a journal's disk keeps for recording drains (appends that would leave
/// less are refused), so a compactor can always delete drained rows (a delete writes
/// to the WAL too) and give the space back: a spool filled by its own journals would
/// otherwise never recover (issue 13 item 2). More on copy-on-write filesystems
/// ([`spool_reserve_bytes`]).
pub(super) const SPOOL_RESERVE_BYTES: u64 = 1 << 20;

/// `statfs` magic numbers of filesystems that never overwrite in place (btrfs,
/// bcachefs, ZFS): a checkpoint there takes new blocks whatever was reserved, and a
/// store into `SQLite`'s mapped `-shm` may need one — near full, a writer on btrfs was
/// killed by `SIGBUS` (an outside tester, 7 of 7 runs on a 64 MiB btrfs).
const COPY_ON_WRITE_MAGICS: &[i64] = &[0x9123_683E, 0xCA45_1A4E, 0x2FC1_2FC1];

/// The free space an append keeps on its journal's disk: [`SPOOL_RESERVE_BYTES`], or
/// on a copy-on-write filesystem a sixteenth of it, if more.
pub(super) fn spool_reserve_bytes(space: &crate::os::sys::Space) -> u64 {
    if COPY_ON_WRITE_MAGICS.contains(&space.magic) {
        (space.total / 16).max(SPOOL_RESERVE_BYTES)
    } else {
        SPOOL_RESERVE_BYTES
    }
}

/// Whether an `SQLite` error on `journal` is its disk being full: `SQLITE_FULL`, or an
/// I/O error (growing the `-shm` by a write is `IOERR_SHMSIZE`) while the disk has
/// less than [`SPOOL_RESERVE_BYTES`] free.
pub(super) fn is_disk_full(e: &rusqlite::Error, journal: &Path) -> bool {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => true,
        Some(rusqlite::ErrorCode::SystemIoFailure) => {
            crate::os::sys::free_bytes(&crate::os::fs::parent_dir(journal)).is_ok_and(|f| f < SPOOL_RESERVE_BYTES)
        }
        _ => false,
    }
}

/// The tombstone a retirement renames a journal to before deleting its log.
pub(super) fn retiring_path(journal: &Path) -> PathBuf {
    let mut p = journal.as_os_str().to_owned();
    p.push(".retiring");
    PathBuf::from(p)
}

/// The spool folder's `flock`, held while the returned file is open: by a retirement
/// from before its write lock to its end (rename, `-wal`, `-shm`, tombstone), and by
/// every open from before it looks at the name to its first read (which opens the
/// `-wal` and `-shm` by name), so an open's three files are one journal's; whoever
/// finishes a retirement, removes an orphaned empty log or creates a journal holds it.
/// Always taken before a journal's `SQLite` write lock, never after.
pub(super) fn lock_folder(journal: &Path) -> Result<std::fs::File> {
    let folder = crate::os::fs::parent_dir(journal);
    let spool = std::fs::File::open(&folder).map_err(|e| {
        let advice = if e.raw_os_error() == Some(libc::EMFILE) {
            ": this process is at its limit of open files: raise it (`ulimit -n`, LimitNOFILE=) or open fewer \
                 journals at once"
        } else {
            ""
        };
        Error::io(format!("opening the journal's folder {} to lock it{advice}", folder.display()), e)
    })?;
    match crate::os::sys::flock_exclusive(&spool) {
        Ok(()) => Ok(spool),
        // A filesystem that cannot flock a folder (NFS emulates flock with byte-range
        // locks, which a folder opened read-only cannot take; `--allow-network-fs`
        // spools): the races this lock closes are a retirement's against an open of
        // the same name, so go on unlocked rather than refuse every new journal.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EBADF | libc::ENOLCK | libc::EOPNOTSUPP | libc::EINVAL)) => {
            Ok(spool)
        }
        Err(e) => Err(Error::io(format!("locking the journal's folder {}", folder.display()), e)),
    }
}

/// The rest of a retirement whose tombstone exists: delete the `-wal` and `-shm`, then
/// the tombstone, each made durable before the next. Idempotent.
///
/// Under the spool folder's `flock`, and only while the tombstone is still there and
/// no journal has the name again: the retirer and every opener that finds the
/// tombstone run this, and without the lock one of them deleted the `-wal` and `-shm`
/// of a new journal another had just created under the name after finishing first
/// (found by an outside tester as "disk I/O error" opening a just-retired name; a
/// `-shm` deleted under a live journal gives two WAL indexes for one log). A
/// tombstone beside a journal made after that retirement is only removed.
///
/// The caller holds the folder's lock (`_held`, from [`lock_folder`]).
pub(super) fn finish_retirement_locked(journal: &Path, _held: &std::fs::File) -> Result<()> {
    let tombstone = retiring_path(journal);
    if std::fs::symlink_metadata(&tombstone).is_err() {
        return Ok(()); // finished by someone else
    }
    let files = if std::fs::symlink_metadata(journal).is_ok() {
        vec![tombstone] // its -wal and -shm are the new journal's
    } else {
        vec![wal_path(journal), shm_path(journal), tombstone]
    };
    for p in files {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", p.display()), e)),
        }
        sync_folder(journal)?;
    }
    Ok(())
}

/// fsync the folder holding `path`.
pub(super) fn sync_folder(path: &Path) -> Result<()> {
    let folder = crate::os::fs::parent_dir(path);
    std::fs::File::open(&folder)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("fsync of the journal's folder {}", folder.display()), e))
}

/// The path of a journal's shared-memory index (`<journal>-shm`).
pub(super) fn shm_path(journal: &Path) -> PathBuf {
    let mut shm = journal.as_os_str().to_owned();
    shm.push("-shm");
    PathBuf::from(shm)
}

/// The path of a journal's write-ahead log (`<journal>-wal`).
pub(super) fn wal_path(journal: &Path) -> PathBuf {
    let mut wal = journal.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// (device, inode) of the file at `path` (not following a symlink).
pub(super) fn file_id(path: &Path) -> Result<(u64, u64)> {
    let md = std::fs::symlink_metadata(path).map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?;
    Ok((md.dev(), md.ino()))
}

/// The `*.journal` files directly in `spool` (not recursive), sorted; symlinks named
/// `*.journal` are listed too (opening one is refused, so a drain names it), and so is
/// the name of a journal removed without its log (a non-empty `X.journal-wal` with no
/// `X.journal` and no retirement under way: [`is_orphaned_log`]) — opening that name is
/// refused with `journal_gone`, so a drain, a daemon and `status` name the lines it may
/// hold instead of listing nothing.
///
/// # Errors
/// [`Error::Io`] when the folder cannot be listed.
pub fn spool_journals(spool: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(spool).map_err(|e| Error::io(format!("listing spool {}", spool.display()), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(format!("listing spool {}", spool.display()), e))?;
        let p = entry.path();
        // Symlinks are listed too, so the drain names them (refused: not a journal's
        // real path) instead of skipping them without a word.
        let kind = entry.file_type().ok();
        if p.extension().is_some_and(|e| e == "journal") && kind.is_some_and(|t| t.is_file() || t.is_symlink()) {
            out.push(p);
        } else if let Some(journal) = p
            .as_os_str()
            .as_bytes()
            .strip_suffix(b"-wal")
            .filter(|j| j.ends_with(b".journal"))
            .map(|j| PathBuf::from(OsStr::from_bytes(j)))
        {
            if kind.is_some_and(|t| t.is_file()) && is_orphaned_log(&journal) {
                out.push(journal);
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The length of `SQLite`'s database header: a journal file shorter than this was never
/// written by `SQLite` (its first page is written before its log's first frame).
const SQLITE_HEADER_BYTES: u64 = 100;

/// Whether `journal` is missing (or a file shorter than `SQLite`'s header: `touch`ed, or
/// being copied back in place) while its `-wal` holds something and no retirement of it
/// is under way (a retirement renames the journal to its tombstone first, then removes
/// the log: that state is the retirement's to finish, not an orphan).
pub(crate) fn is_orphaned_log(journal: &Path) -> bool {
    let missing_or_empty = match std::fs::symlink_metadata(journal) {
        Ok(m) => m.is_file() && m.len() < SQLITE_HEADER_BYTES,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    };
    missing_or_empty
        && std::fs::symlink_metadata(retiring_path(journal)).is_err()
        && wal_path(journal).symlink_metadata().is_ok_and(|m| m.is_file() && m.len() > 0)
}

/// A journal listed in a spool whose name names nothing now: retired or removed since
/// the listing, not a problem of the spool — unless it was removed without its log
/// ([`is_orphaned_log`]), which may hold lines.
pub(crate) fn left_the_spool(journal: &Path) -> bool {
    std::fs::symlink_metadata(journal).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) && !is_orphaned_log(journal)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spool listing names a journal removed without its non-empty log, and only
    /// that: not a retirement under way (its tombstone), not an emptied log, not a log
    /// whose journal is there, not a `-wal` of a file that is not `*.journal`.
    #[test]
    fn the_listing_names_a_journal_removed_without_its_log_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let put = |name: &str, bytes: &[u8]| std::fs::write(d.path().join(name), bytes).unwrap();
        put("live.journal", b"x");
        put("live.journal-wal", b"frames");
        put("orphan.journal-wal", b"frames");
        put("retiring.journal-wal", b"frames");
        put("retiring.journal.retiring", b"x");
        put("emptied.journal-wal", b"");
        put("other.db-wal", b"frames");
        let names: Vec<String> = spool_journals(d.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["live.journal", "orphan.journal"]);
    }
}
