//! Small filesystem helpers shared by the journal and the target side.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fault;

/// The folder that will hold `path` ("." for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsync a folder, so a rename or a new entry in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fault::check(fault::Step::SidecarFsync).map_err(|e| Error::io(format!("fsync of folder {}", dir.display()), e))?;
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| Error::io(format!("fsync of folder {}", dir.display()), e))
}

/// Before reading a target's bytes: on a network filesystem, drop this host's cached
/// pages of the file (design rule 6), so the reads ask the server. A FUSE client keeps
/// the pages a process on this host wrote — a compactor killed after writing its
/// round's bytes — after another host cut that uncommitted tail and committed other
/// bytes of the same length; [`fresh_len_and_ino`] then finds the size this host knew
/// and drops nothing (on `GlusterFS` with default caches: 30 of 30 such reads returned
/// the dead compactor's bytes, 0 of 30 after this). A local filesystem's page cache is
/// the file: nothing to do there. For one-off reads (a scan); a reader that reads on
/// decides [`is_shared`] once and drops only when it reads past what it read since.
///
/// # Errors
/// `fstatfs`'s or `posix_fadvise`'s error.
pub fn uncache_if_shared(file: &File) -> io::Result<()> {
    if is_shared(file)? {
        crate::os::sys::drop_cached_pages(file)?;
    }
    Ok(())
}

/// Whether `file` is on a network filesystem (`fstatfs`: on NFS and FUSE a round trip
/// to the server, so asked once per open file).
///
/// # Errors
/// `fstatfs`'s error.
pub fn is_shared(file: &File) -> io::Result<bool> {
    Ok(crate::os::fscheck::network_fs_name(crate::os::sys::fstatfs_magic(file)?).is_some())
}

/// Make this host look the names beside `path` (in its folder) up again before a name's
/// answer is taken as a fact (design rule 6): on a network filesystem, list the folder (`readdir`: a FUSE
/// client replaces its cached names with the server's, an NFS client revalidates the
/// folder). A FUSE client keeps a name pointing at a file another host renamed away
/// for as long as something on this host keeps touching that file (`GlusterFS`, default
/// caches: 5 of 5 lookups 1.5 s after the rename gave the old inode, 0 of 5 after a
/// listing). Nothing on a local filesystem.
///
/// # Errors
/// Opening or reading the folder.
pub fn refresh_names(path: &Path) -> io::Result<()> {
    list_on_network(&parent_dir(path), None).map(|_| ())
}

/// [`refresh_names`] of `path`'s folder, saying whether the listing (the server's)
/// holds `path`'s name: `None` on a local filesystem, where names are not cached apart
/// from the files. The listing refreshes the other names' files in the client's
/// caches; a name it does not hold stays in them until nothing touches its file for
/// about a second (`GlusterFS`): a caller waiting for it to go touches nothing.
///
/// # Errors
/// Opening or reading the folder.
pub fn listed_on_server(path: &Path) -> io::Result<Option<bool>> {
    list_on_network(&parent_dir(path), path.file_name())
}

/// List `dir` when it is on a network filesystem; whether `name` was among its entries.
fn list_on_network(dir: &Path, name: Option<&std::ffi::OsStr>) -> io::Result<Option<bool>> {
    let magic = crate::os::sys::statfs_magic(dir)?;
    if crate::os::fscheck::network_fs_name(magic).is_none() {
        return Ok(None);
    }
    let mut found = false;
    for entry in std::fs::read_dir(dir)? {
        found |= Some(entry?.file_name().as_os_str()) == name;
    }
    Ok(Some(found))
}

/// A file's size and inode as its filesystem's server knows them, never from a client's
/// cache (design rule 6, "Never decide from a cache"): `fsync` — a FUSE or NFS client
/// flushes what it holds for the file — then `statx` with `AT_STATX_FORCE_SYNC`. The
/// refreshed size also makes the kernel drop cached pages of a file whose size is not
/// the one this host knew (not of one whose bytes alone changed: [`uncache_if_shared`]).
/// Measured on `GlusterFS` with default caches (docs/multihost.md): `fstat`, `stat` and
/// `lseek(SEEK_END)` were stale 235 times in 239; this was fresh 1,737 times in 1,737;
/// reads after it returned the server's bytes 200 of 200 times across truncations,
/// plain reads on a kept descriptor were short 192 times and stale 8.
///
/// # Errors
/// `fsync`'s or `statx`'s error.
pub fn fresh_len_and_ino(file: &File) -> io::Result<(u64, u64)> {
    file.sync_all()?;
    crate::os::sys::fresh_len_and_ino(file)
}

/// [`fresh_len_and_ino`] for a reader, which writes nothing: a failed `fsync` is not
/// its own — another process's failed writeback, which Linux reports once to every
/// descriptor of the file, or a filesystem that refuses writes after an I/O error —
/// and the size is still asked of the server. (A follower died of a compactor's
/// transient EIO; `verify`, `status` and `tail` called a healthy target on an ext4 the
/// kernel had made read-only "replaced", "missing" and unreadable: an outside tester.)
///
/// # Errors
/// `statx`'s error; `fsync`'s other errors (`ESTALE`: the file is gone).
pub fn fresh_len_and_ino_for_reading(file: &File) -> io::Result<(u64, u64)> {
    match file.sync_all() {
        Err(e) if !matches!(e.raw_os_error(), Some(libc::EIO | libc::ENOSPC | libc::EDQUOT | libc::EROFS)) => {
            return Err(e)
        }
        _ => {}
    }
    crate::os::sys::fresh_len_and_ino(file)
}

/// Whether the filesystem holding `folder` refuses writes as read-only (`EROFS`),
/// asked by making an unnamed file there (`O_TMPFILE`: it has no name and is gone at
/// close): after an I/O error ext4 refuses every write while `access(2)` and
/// `statvfs` still say it is writable (kernel 6.18: an outside tester was told to
/// `chmod` as root). `false` where it cannot tell (no `O_TMPFILE`: NFS, FUSE).
pub(crate) fn refuses_writes(folder: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(folder)
        .is_err_and(|e| e.raw_os_error() == Some(libc::EROFS))
}

/// The whole file at `path` as its server has it (see [`fresh_len_and_ino`]), for
/// checks that compare what several mounts of one share show. A read that comes up
/// short of the server's size (a client cache still serving older content: Gluster's
/// quick-read keeps small files for up to 1 s) is retried on a new descriptor, for
/// up to 10 s.
///
/// # Errors
/// Opening, syncing or reading the file; a read still short after 10 s.
#[cfg(feature = "testing")]
pub fn read_fresh(path: &Path) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let started = std::time::Instant::now();
    loop {
        let f = File::open(path)?;
        let (len, _) = fresh_len_and_ino(&f)?;
        uncache_if_shared(&f)?;
        let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
        match f.read_exact_at(&mut buf, 0) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && started.elapsed().as_secs() < 10 => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r.map(|()| buf),
        }
    }
}
