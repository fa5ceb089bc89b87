//! Thin, audited wrappers over the few Linux system calls the standard library does
//! not expose: open-file-description (OFD) record locks, `statfs`, `statx` with
//! `AT_STATX_FORCE_SYNC`, `posix_fadvise`, `getrandom`,
//! `sync_file_range`, futexes (one wake-up call for a whole commit group), signals,
//! a thread's scheduler slice (`sched_setattr`); and one `SQLite` file control (`SQLITE_FCNTL_PERSIST_WAL`).
//! This module and `ffi` are the only places with `unsafe` in the library.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::AtomicU32;

/// Fill `buf` with random bytes from the kernel.
///
/// # Errors
/// `getrandom`'s error (e.g. `ENOSYS` on a kernel before 3.17).
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes for the
        // duration of the call; getrandom writes at most that many bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        // negative: failed
        let Ok(n) = usize::try_from(n) else {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        };
        filled += n;
    }
    Ok(())
}

/// Ask the kernel to start writing back `len` bytes of `file` at `offset` now, without
/// waiting: a later fdatasync then waits for less, because the device was busy while
/// we produced the next bytes. Only a hint — durability still comes from fdatasync,
/// which reports any write-back error of these pages (this call does not consume it).
pub fn start_writeback(file: &impl AsRawFd, offset: u64, len: u64) {
    // (a range past i64::MAX is not in any file: no hint)
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: sync_file_range only reads its integer arguments; an invalid fd or range
    // makes it fail with an errno, which is ignored because the call is a hint.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Sleep while `word` still holds `expected`: returns at once if it does not, after a
/// [`futex_wake_all`] on it, or spuriously (callers re-check their condition).
pub fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a live, aligned u32 for the whole call (we hold a reference);
    // FUTEX_WAIT only reads it and sleeps; a null timeout means no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wake every thread sleeping in [`futex_wait`] on `word`, in one system call.
pub fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: as above; FUTEX_WAKE does not touch the word's memory beyond its address.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, i32::MAX);
    }
}

/// A random u64 (seeds, temp-file suffixes).
#[must_use]
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // getrandom on Linux >= 3.17 does not fail for 8 bytes; fall back to time+pid.
    if random_bytes(&mut b).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        // the nanoseconds since the epoch modulo 2^64, mixed with the pid
        let nanos = t.as_secs().wrapping_mul(1_000_000_000).wrapping_add(u64::from(t.subsec_nanos()));
        return nanos ^ (u64::from(std::process::id()) << 32);
    }
    u64::from_le_bytes(b)
}

/// Whether this process may open `path` for reading and writing, by its effective ids
/// (`faccessat(AT_EACCESS)`: no descriptor is opened).
///
/// # Errors
/// `faccessat`'s error (`PermissionDenied`, `EROFS` on a read-only mount, ...); `Other`
/// for a path containing a NUL byte.
pub fn may_read_and_write(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("path contains a NUL byte"))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call; nothing else is read.
    let rc = unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::R_OK | libc::W_OK, libc::AT_EACCESS) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The `f_type` magic number of the filesystem holding `path`.
///
/// # Errors
/// `statfs`'s error (e.g. `NotFound`); `Other` for a path containing a NUL byte.
pub fn statfs_magic(path: &Path) -> io::Result<i64> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("path contains a NUL byte"))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call; `st` is a valid,
    // writable `statfs` the kernel fills in.
    f_type_of(|st| unsafe { libc::statfs(c.as_ptr(), st) })
}

/// The `f_type` magic number of the filesystem holding an open file (`fstatfs`).
///
/// # Errors
/// `fstatfs`'s error.
pub fn fstatfs_magic(file: &impl AsRawFd) -> io::Result<i64> {
    // SAFETY: the fd is open for the lifetime of `file`; `st` is a valid, writable
    // `statfs` the kernel fills in.
    f_type_of(|st| unsafe { libc::fstatfs(file.as_raw_fd(), st) })
}

/// `f_type` of the `statfs` that `call` fills in (0: it did).
fn f_type_of(call: impl FnOnce(*mut libc::statfs) -> libc::c_int) -> io::Result<i64> {
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if call(&raw mut st) != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type is i64 on x86_64, other widths elsewhere
    Ok(st.f_type as i64)
}

/// Drop this host's clean cached pages of `file` (`posix_fadvise(POSIX_FADV_DONTNEED)`
/// over the whole file), so the next reads ask the filesystem. The whole file: the
/// kernel keeps a page, or a large folio, that begins before the range given.
///
/// # Errors
/// `posix_fadvise`'s error (e.g. `ESPIPE` for a pipe).
pub fn drop_cached_pages(file: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: posix_fadvise only reads its integer arguments; offset 0 and length 0
    // mean the whole file.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        // posix_fadvise returns the error number instead of setting errno
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// The size and inode of an open file, asked of the filesystem itself rather than of a
/// client's attribute cache: `statx(AT_EMPTY_PATH | AT_STATX_FORCE_SYNC)`. On a local
/// filesystem this is `fstat`; a network or FUSE client (NFS, `GlusterFS`, `CephFS`)
/// revalidates with its server, where a cached `fstat` can be seconds old.
///
/// # Errors
/// `statx`'s error (e.g. `EIO`, `ESTALE`).
pub fn fresh_len_and_ino(file: &impl AsRawFd) -> io::Result<(u64, u64)> {
    // SAFETY: an all-zero `statx` is a valid value of this plain C struct.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open for the lifetime of `file`; the path is a static empty C
    // string (AT_EMPTY_PATH: the fd itself); `st` is a valid, writable `statx`.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_FORCE_SYNC,
            libc::STATX_SIZE | libc::STATX_INO,
            &raw mut st,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.stx_size, st.stx_ino))
}

/// The start of the first hole at or after `from` (`lseek(SEEK_HOLE)`; the end of the
/// file counts as one, so `from` itself when it is at or past the end: `ENXIO`).
/// `None` when the filesystem cannot say (`EINVAL`, `ENOSYS`, `EOPNOTSUPP`: no
/// `SEEK_HOLE`).
///
/// # Errors
/// Any other error of `lseek`.
pub fn first_hole_from(file: &impl AsRawFd, from: u64) -> io::Result<Option<u64>> {
    let Ok(offset) = libc::off_t::try_from(from) else { return Ok(None) };
    // SAFETY: the fd is open for the lifetime of `file`; SEEK_HOLE only moves this
    // descriptor's offset (nobody reads or writes through it by offset-less calls).
    let at = unsafe { libc::lseek(file.as_raw_fd(), offset, libc::SEEK_HOLE) };
    if at < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENXIO) => Ok(Some(from)),
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(u64::try_from(at).ok())
}

fn ofd_lock_op(file: &impl AsRawFd, lock_type: libc::c_int, cmd: libc::c_int) -> io::Result<()> {
    // `flock` keeps these two in a short (F_WRLCK, F_UNLCK and SEEK_SET are 0..=2)
    let (Ok(l_type), Ok(l_whence)) = (libc::c_short::try_from(lock_type), libc::c_short::try_from(libc::SEEK_SET))
    else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type;
    fl.l_whence = l_whence;
    fl.l_start = 0;
    // the whole file
    fl.l_len = 0;
    // required to be 0 for OFD locks
    fl.l_pid = 0;
    // SAFETY: the fd is open for the lifetime of `file`; `fl` is a valid `flock` that
    // the kernel only reads (F_OFD_SETLK does not write back).
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &raw mut fl) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Try to take an exclusive OFD write lock on the whole file without waiting.
/// `Ok(false)` when another open file description (any process, any host sharing the
/// filesystem's lock manager) holds a conflicting lock.
///
/// # Errors
/// `fcntl`'s error other than "held by someone else" (e.g. `ENOLCK`, or `EIO` from a
/// lost NFS lock).
///
/// OFD locks belong to the open file description, not to the process: an unrelated
/// `close()` of another descriptor of the same file does not drop them (the classic
/// POSIX record-lock trap), and on NFS/GlusterFS they are forwarded to the server.
pub fn try_lock_exclusive(file: &impl AsRawFd) -> io::Result<bool> {
    match ofd_lock_op(file, libc::F_WRLCK, libc::F_OFD_SETLK) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Wait in the kernel for an exclusive OFD write lock on the whole file
/// (`F_OFD_SETLKW`). Waiters are queued by the lock's owner — the kernel, or the
/// server on `GlusterFS` and NFS — and, as measured on `GlusterFS`, granted in arrival
/// order: a waiter cannot be overtaken by pollers. Retried on `EINTR`.
///
/// # Errors
/// `fcntl`'s error (e.g. `ENOLCK`, or `EIO` from a lost NFS lock).
pub fn lock_exclusive_wait(file: &impl AsRawFd) -> io::Result<()> {
    loop {
        match ofd_lock_op(file, libc::F_WRLCK, libc::F_OFD_SETLKW) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// Release an OFD lock taken with [`try_lock_exclusive`].
///
/// # Errors
/// `fcntl`'s error (e.g. `EIO` from a lost NFS lock).
pub fn unlock(file: &impl AsRawFd) -> io::Result<()> {
    ofd_lock_op(file, libc::F_UNLCK, libc::F_OFD_SETLK)
}

/// Wait for an exclusive `flock` on `file` (a folder may be locked so too). It is
/// released when the last descriptor of this open file description closes; it never
/// interacts with `SQLite`'s POSIX record locks.
///
/// # Errors
/// `flock`'s error.
pub fn flock_exclusive(file: &impl AsRawFd) -> io::Result<()> {
    loop {
        // SAFETY: flock only reads the descriptor number, valid for this call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// This process's id, without a system call per ask: cached, and refreshed in a
/// forked child by a `pthread_atfork` handler (registered on first use). Handles check
/// it on every append and push to refuse use in a forked child; `getpid` there cost
/// ~185 ns a call here, half of a background push.
#[must_use]
pub fn current_pid() -> u32 {
    static PID: AtomicU32 = AtomicU32::new(0);
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    extern "C" fn in_child() {
        // getpid is async-signal-safe, as an atfork child handler must be.
        PID.store(std::process::id(), std::sync::atomic::Ordering::Relaxed);
    }
    REGISTERED.call_once(|| {
        PID.store(std::process::id(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: registers a plain `extern "C"` function with no arguments, as
        // pthread_atfork expects; NULL for the prepare and parent handlers is allowed.
        unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        }
    });
    PID.load(std::sync::atomic::Ordering::Relaxed)
}

/// Register `pthread_atfork` handlers: `prepare` runs in the parent before a fork,
/// `parent` and `child` after it in each process (`os::fork`).
pub(crate) fn at_fork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) {
    // SAFETY: registers plain `extern "C"` functions with no arguments, as
    // pthread_atfork expects; it has no other preconditions.
    unsafe {
        libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
    }
}

/// Die at once, as `kill -9` would (used by failpoints to simulate a crash).
pub fn kill_self() -> ! {
    // SAFETY: kill(2) with our own pid and SIGKILL has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL cannot be caught; this is only reached if kill failed.
    std::process::abort()
}

/// Send a signal to another process (the demo and tests kill writers/compactors;
/// through `tributary::testing`).
#[cfg(any(test, feature = "testing"))]
///
/// # Errors
/// `kill`'s error: `ESRCH` (no such process), `EPERM`, or `EINVAL` for a bad signal
/// or a `pid` above `i32::MAX` (which must not wrap to a negative pid: that would
/// signal a whole process group, or with -1 every process we may signal).
pub fn send_signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Milliseconds of `CLOCK_BOOTTIME`: time since boot, suspend included, never stepped
/// (an NTP correction of the wall clock does not move it). 0 if the clock cannot be
/// read.
#[must_use]
pub fn boottime_ms() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

/// This boot's random id (`/proc/sys/kernel/random/boot_id`); "" if it cannot be read,
/// which makes every process look like a new boot (keys then live longer, not shorter).
#[must_use]
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// An inotify watch on a folder: tells whether any entry of it (or the folder itself)
/// was created, removed or renamed since the last look, without touching the files
/// (a `stat` of a journal right after its fsync slowed durable appends by ~25%).
#[derive(Debug)]
pub struct FolderWatch {
    fd: std::os::fd::OwnedFd,
}

impl FolderWatch {
    /// Watch the folder `dir` for entries created, removed or renamed, and for the
    /// folder itself being removed or moved.
    ///
    /// # Errors
    /// `inotify_init1`'s or `inotify_add_watch`'s error (e.g. the per-user limit of
    /// inotify instances or watches, `ENOTDIR`); `InvalidInput` for a NUL in the path.
    pub fn new(dir: &Path) -> io::Result<FolderWatch> {
        let c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: inotify_init1 takes only flags and returns a new fd or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        let mask = libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF
            | libc::IN_ONLYDIR;
        // SAFETY: `fd` is an inotify fd and `c` a NUL-terminated path, both alive across the call.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FolderWatch { fd })
    }

    /// Whether anything happened in the folder since the last call (true on any error:
    /// the caller then checks the slow way). Consumes the queued events.
    #[must_use]
    pub fn changed(&self) -> bool {
        let mut buf = [0u8; 4096];
        let mut any = false;
        loop {
            // SAFETY: `buf` is valid and writable for its length during the call.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                any = true;
                continue;
            }
            if n == 0 {
                return true;
            }
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => any,
                io::ErrorKind::Interrupted => continue,
                _ => true,
            };
        }
    }
}

/// What [`FolderEvents::drain`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Bytes written to the entry (`IN_MODIFY`).
    Written,
    /// The entry was created (`IN_CREATE`).
    Created,
    /// The entry was moved in (`IN_MOVED_TO`).
    MovedIn,
    /// The entry was removed or moved away (`IN_DELETE`, `IN_MOVED_FROM`).
    Left,
}

/// One inotify instance watching several folders for entries written, created,
/// removed or renamed, naming each entry (a compactor's change test: see
/// docs/design.md, "Which journals a daemon pass drains").
#[derive(Debug)]
pub struct FolderEvents {
    fd: std::os::fd::OwnedFd,
    /// Watch descriptor -> the folder it watches.
    folders: std::collections::HashMap<i32, std::path::PathBuf>,
}

impl FolderEvents {
    /// A new instance watching nothing yet.
    ///
    /// # Errors
    /// `inotify_init1`'s error (e.g. the per-user limit of inotify instances).
    pub fn new() -> io::Result<FolderEvents> {
        // SAFETY: inotify_init1 takes only flags and returns a new fd or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        Ok(FolderEvents { fd, folders: std::collections::HashMap::new() })
    }

    /// Whether `dir` is watched (its watch was added and not lost since).
    #[must_use]
    pub fn watches(&self, dir: &Path) -> bool {
        self.folders.values().any(|f| f == dir)
    }

    /// Watch `dir` (again: adding a folder watched already is harmless).
    ///
    /// # Errors
    /// `inotify_add_watch`'s error (`ENOENT`, `ENOTDIR`, the per-user watch limit);
    /// `InvalidInput` for a NUL in the path.
    pub fn watch(&mut self, dir: &Path) -> io::Result<()> {
        let c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mask = libc::IN_MODIFY
            | libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF
            | libc::IN_ONLYDIR;
        // SAFETY: `fd` is an inotify fd and `c` a NUL-terminated path, both alive across the call.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        self.folders.insert(wd, dir.to_path_buf());
        Ok(())
    }

    /// Read every queued event, calling `on_entry` with each entry's full path and
    /// what happened to it. Returns false when events may have been lost, so the
    /// caller must treat everything as changed: the queue overflowed, reading failed,
    /// or a folder's watch ended (removed, moved, unmounted: [`watches`](Self::watches)
    /// says false for it until it is watched again).
    pub fn drain(&mut self, on_entry: &mut dyn FnMut(std::path::PathBuf, EventKind)) -> bool {
        // aligned for inotify_event's u32 fields; large enough for one event of any name
        let mut buf = vec![0u32; 16 * 1024];
        let mut complete = true;
        loop {
            let len = std::mem::size_of_val(buf.as_slice());
            // SAFETY: `buf` is valid and writable for `len` bytes during the call.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), len) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => return complete,
                    io::ErrorKind::Interrupted => continue,
                    _ => return false,
                }
            }
            if n == 0 {
                return false;
            }
            let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).take(n.unsigned_abs()).collect();
            complete &= self.parse(&bytes, on_entry);
        }
    }

    /// The events in one read's bytes (`struct inotify_event`: wd, mask, cookie, len,
    /// then `len` bytes of NUL-padded name).
    fn parse(&mut self, mut bytes: &[u8], on_entry: &mut dyn FnMut(std::path::PathBuf, EventKind)) -> bool {
        let word = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut complete = true;
        while bytes.len() >= 16 {
            let wd = i32::from_ne_bytes(word(bytes, 0).to_ne_bytes());
            let (mask, name_len) = (word(bytes, 4), word(bytes, 12) as usize);
            let Some(name) = bytes.get(16..16 + name_len) else { return false };
            bytes = &bytes[16 + name_len..];
            if mask & libc::IN_Q_OVERFLOW != 0 {
                complete = false;
                continue;
            }
            if mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_UNMOUNT) != 0 {
                self.folders.remove(&wd);
                complete = false;
                continue;
            }
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            let Some(folder) = self.folders.get(&wd) else { continue };
            if name.is_empty() {
                continue;
            }
            let kind = if mask & libc::IN_MODIFY != 0 {
                EventKind::Written
            } else if mask & libc::IN_CREATE != 0 {
                EventKind::Created
            } else if mask & libc::IN_MOVED_TO != 0 {
                EventKind::MovedIn
            } else {
                EventKind::Left
            };
            on_entry(folder.join(std::ffi::OsStr::from_bytes(name)), kind);
        }
        complete
    }
}

/// Give `to` the POSIX access ACL of `from` (`system.posix_acl_access`), without its
/// execute permissions; nothing when `from` has none or its filesystem keeps none.
///
/// # Errors
/// `fgetxattr`'s or `fsetxattr`'s other errors.
pub fn copy_access_acl_without_execute(from: &impl AsRawFd, to: &impl AsRawFd) -> io::Result<()> {
    const NAME: &std::ffi::CStr = c"system.posix_acl_access";
    let none = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::ENODATA | libc::EOPNOTSUPP));
    // SAFETY: a NULL buffer of size 0 asks only for the value's size; the name is a
    // static C string.
    let size = unsafe { libc::fgetxattr(from.as_raw_fd(), NAME.as_ptr(), std::ptr::null_mut(), 0) };
    let Ok(size) = usize::try_from(size) else {
        let e = io::Error::last_os_error();
        return if none(&e) { Ok(()) } else { Err(e) };
    };
    let mut acl = vec![0u8; size];
    // SAFETY: `acl` is a writable buffer of `acl.len()` bytes for the call.
    let got = unsafe { libc::fgetxattr(from.as_raw_fd(), NAME.as_ptr(), acl.as_mut_ptr().cast(), acl.len()) };
    let Ok(got) = usize::try_from(got) else { return Err(io::Error::last_os_error()) };
    acl.truncate(got);
    // After its 4-byte version, 8-byte entries: tag (u16), permissions (u16: r 4, w 2,
    // x 1), id (u32), little-endian.
    for entry in acl.get_mut(4..).unwrap_or_default().chunks_exact_mut(8) {
        entry[2] &= !1;
    }
    // SAFETY: `acl` is a readable buffer of `acl.len()` bytes for the call.
    if unsafe { libc::fsetxattr(to.as_raw_fd(), NAME.as_ptr(), acl.as_ptr().cast(), acl.len(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This process's limit on open files (`RLIMIT_NOFILE`, soft); `None` if unknown.
#[must_use]
pub fn nofile_limit() -> Option<u64> {
    soft_limit(libc::RLIMIT_NOFILE)
}

/// This process's limit on the size of a file it writes (`RLIMIT_FSIZE`, soft, bytes;
/// `ulimit -f` says it in KiB); `None` if unknown or unlimited.
#[must_use]
pub fn file_size_limit() -> Option<u64> {
    soft_limit(libc::RLIMIT_FSIZE).filter(|&l| l != libc::RLIM_INFINITY)
}

fn soft_limit(resource: libc::__rlimit_resource_t) -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct through the valid pointer we pass.
    if unsafe { libc::getrlimit(resource, &raw mut lim) } != 0 {
        return None;
    }
    Some(lim.rlim_cur)
}

/// How many file descriptors this process has open, and its limit (`RLIMIT_NOFILE`
/// soft), for an error message that names "too many open files" for what it is.
#[must_use]
pub fn fd_usage() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct through the valid pointer we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } != 0 {
        return None;
    }
    match std::fs::read_dir("/proc/self/fd") {
        Ok(rd) => Some((rd.count() as u64, lim.rlim_cur)),
        // listing needs a descriptor too: at the limit, that fails the same way
        Err(e) if e.raw_os_error() == Some(libc::EMFILE) => Some((lim.rlim_cur, lim.rlim_cur)),
        Err(_) => None,
    }
}

/// [`Space::available`] on the filesystem holding `path`.
///
/// # Errors
/// `statfs`'s error (e.g. `NotFound`); `Other` for a path containing a NUL byte.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    space(path).map(|s| s.available())
}

/// The filesystem holding a path: its kind and its room.
#[derive(Debug, Clone, Copy)]
pub struct Space {
    /// Bytes an unprivileged process can still write.
    pub free: u64,
    /// The filesystem's size in bytes.
    pub total: u64,
    /// `statfs`'s `f_type`.
    pub magic: i64,
    /// Inodes the filesystem has, and those free (0 and 0 where it does not count them).
    pub inodes: u64,
    pub free_inodes: u64,
}

impl Space {
    /// Bytes an unprivileged process can still write: `free`, or `u64::MAX` where the
    /// filesystem counts no blocks (ramfs: 0 total, 0 free — not full; an outside
    /// tester's journal there was refused as "0 bytes free").
    #[must_use]
    pub fn available(&self) -> u64 {
        if self.total == 0 {
            u64::MAX
        } else {
            self.free
        }
    }

    /// Files cannot be created for want of inodes while blocks are free.
    #[must_use]
    pub fn out_of_inodes(&self) -> bool {
        self.inodes > 0 && self.free_inodes == 0
    }
}

/// [`Space`] of the filesystem holding `path` (one `statfs`).
///
/// # Errors
/// `statfs`'s error (e.g. `NotFound`); `Other` for a path containing a NUL byte.
pub fn space(path: &Path) -> io::Result<Space> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("path contains a NUL byte"))?;
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path that outlives the call; `st` is a valid,
    // writable `statfs` the kernel fills in.
    if unsafe { libc::statfs(c.as_ptr(), &raw mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // (f_frsize is the unit of the block counts; statvfs reads it from here too)
    let unit = u64::try_from(if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize }).unwrap_or(0);
    #[allow(clippy::unnecessary_cast)] // the field widths differ between targets
    Ok(Space {
        free: (st.f_bavail as u64).saturating_mul(unit),
        total: (st.f_blocks as u64).saturating_mul(unit),
        magic: st.f_type as i64,
        inodes: st.f_files as u64,
        free_inodes: st.f_ffree as u64,
    })
}

/// An open descriptor's `(st_dev, st_ino)`, length, and bytes of disk blocks
/// (`st_blocks` × 512): one `fstat`.
///
/// # Errors
/// `fstat`'s error (`EBADF` for a descriptor that is not open).
pub fn fd_identity_length_blocks(fd: RawFd) -> io::Result<((u64, u64), u64, u64)> {
    let st = fstat(fd)?;
    #[allow(clippy::unnecessary_cast)] // the field widths differ between targets
    let id = (st.st_dev as u64, st.st_ino as u64);
    Ok((id, u64::try_from(st.st_size).unwrap_or(0), u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512)))
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat reads the descriptor number only (an fd that is not open is
    // EBADF) and fills in `st`, a valid, writable `stat`.
    if unsafe { libc::fstat(fd, &raw mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// Give the open file disk blocks for its bytes `offset..offset + len` without
/// changing its length or any of its bytes (`fallocate(FALLOC_FL_KEEP_SIZE)`). `Ok(false)` where
/// the filesystem cannot allocate ahead (`EOPNOTSUPP`, e.g. NFS before 4.2): nothing
/// is emulated (writing bytes could race another writer of the file).
///
/// # Errors
/// `fallocate`'s other errors (`ENOSPC`).
pub fn allocate_keeping_size(fd: RawFd, offset: u64, len: u64) -> io::Result<bool> {
    let offset = libc::off_t::try_from(offset).unwrap_or(libc::off_t::MAX);
    let len = libc::off_t::try_from(len).unwrap_or(libc::off_t::MAX);
    // SAFETY: fallocate reads the descriptor number and two integers; with
    // FALLOC_FL_KEEP_SIZE it changes neither the file's length nor its data.
    if unsafe { libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, offset, len) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP | libc::ENOSYS) => Ok(false),
        _ => Err(e),
    }
}

/// Fault the pages of a shared file mapping in, writable (`MADV_POPULATE_WRITE`), so
/// each has its disk block now: where one cannot get a block (a full disk) this is
/// `EFAULT` instead of a `SIGBUS` at the first store (`os::sqlite_vfs`). `EINVAL` on
/// kernels before 5.14.
///
/// # Errors
/// `madvise`'s error.
pub fn populate_writable(addr: *mut libc::c_void, len: usize) -> io::Result<()> {
    // madvise wants a page-aligned start: widen the range down to its page.
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf only reads a system constant.
    let page = *PAGE.get_or_init(|| usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096));
    let start = (addr as usize) & !(page - 1);
    let len = len + (addr as usize - start);
    // SAFETY: madvise only changes how the kernel backs the pages of this process's
    // own mapping (the caller's, which covers `addr..addr+len`); it never writes
    // through it, and a range it cannot populate is an error, not a signal.
    if unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Keep a journal's `-wal` and `-shm` files when this connection, the last one open,
/// closes (`SQLITE_FCNTL_PERSIST_WAL`): `SQLite` then checkpoints and empties the log
/// instead of deleting both files, so the next open does not create them again. A
/// compactor opening and closing thousands of idle journals spent most of its time
/// in the filesystem creating and deleting those two files per journal.
///
/// # Errors
/// `SQLite`'s result code when the file control is refused.
pub fn sqlite_persist_wal(conn: &rusqlite::Connection) -> Result<(), i32> {
    let mut on: libc::c_int = 1;
    // SAFETY: `handle` is the live connection `conn` owns, used only for this call while
    // `conn` is borrowed; "main" is a NUL-terminated name; SQLITE_FCNTL_PERSIST_WAL
    // reads and writes one `int` through the pointer, which outlives the call.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut on).cast(),
        )
    };
    if rc == rusqlite::ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rc)
    }
}

/// Ask the scheduler for a short time slice for the calling thread: Linux 6.12+'s
/// EEVDF scheduler takes a fair thread's `sched_runtime` (`sched_setattr`) as its
/// slice, and a thread with a short slice gets an early deadline when it wakes, so it
/// runs sooner on a busy CPU — lower wake-up latency, not a larger share of the CPU,
/// and no privilege needed. The thread's policy and nice value are kept; kernels
/// before 6.12 ignore the slice (before 5.3 they refuse the call: `EINVAL`).
///
/// Not asked at all (`Ok(false)`) when the process runs under a seccomp filter: a
/// filter may kill the process for a call it does not allow (systemd's
/// `SystemCallFilter=~@resources` does, with `SIGSYS`), and there is no asking it first.
///
/// # Errors
/// `sched_setattr`'s error (`EINVAL` for a real-time thread, `EPERM`, ...).
pub fn request_short_slice(slice: std::time::Duration) -> io::Result<bool> {
    /// `struct sched_attr` as of `SCHED_ATTR_SIZE_VER0` (48 bytes).
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    const SCHED_FLAG_KEEP_POLICY: u64 = 0x08;
    if under_seccomp_filter() {
        return Ok(false);
    }
    // getpriority returns -1 both for nice -1 and for an error: clear errno first.
    // SAFETY: errno is this thread's; getpriority takes no pointers.
    let nice = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    };
    let err = io::Error::last_os_error();
    if nice == -1 && err.raw_os_error().unwrap_or(0) != 0 {
        return Err(err);
    }
    let attr = SchedAttr {
        size: 48,
        policy: 0,
        flags: SCHED_FLAG_KEEP_POLICY,
        nice,
        priority: 0,
        runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
        deadline: 0,
        period: 0,
    };
    // SAFETY: `attr` is a valid `struct sched_attr` (VER0 layout, its size field set)
    // that lives across the call; pid 0 is the calling thread; flags 0.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attr, 0) };
    if r == 0 {
        Ok(true)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the calling thread runs under seccomp (`Seccomp:` 1 or 2 in
/// `/proc/thread-self/status`: filters are per thread, inherited by the threads it
/// starts); `true` when that cannot be read (the cautious answer).
pub(crate) fn under_seccomp_filter() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/thread-self/status") else { return true };
    status.lines().find_map(|l| l.strip_prefix("Seccomp:")).is_none_or(|mode| mode.trim() != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid past `i32::MAX` is refused: as a negative `pid_t` it would name a process
    /// group (-1: every process this one may signal). Signal 0 only checks, so this
    /// test harms nothing even if the refusal regressed.
    /// The cached pid follows a fork: a handle's "opened in another process" check
    /// relies on it.
    #[test]
    fn a_short_slice_is_not_asked_for_under_a_seccomp_filter() {
        // On a thread of its own (a filter binds the thread that installs it and the
        // threads it starts): a filter that fails sched_setattr with EPERM. A filter
        // may as well kill the process (systemd's SystemCallFilter does): the call
        // must not be made at all.
        let asked = std::thread::spawn(|| {
            assert!(!under_seccomp_filter(), "this test runs under seccomp already");
            let mut filter = [
                // load the syscall number (`seccomp_data.nr`, offset 0)
                libc::sock_filter { code: 0x20, jt: 0, jf: 0, k: 0 },
                // sched_setattr? next instruction, else skip it
                libc::sock_filter { code: 0x15, jt: 0, jf: 1, k: u32::try_from(libc::SYS_sched_setattr).unwrap() },
                libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: libc::SECCOMP_RET_ERRNO | 1 },
                libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
            ];
            let prog = libc::sock_fprog { len: 4, filter: filter.as_mut_ptr() };
            // SAFETY: prctl with integer arguments; then a valid filter program that
            // lives across the call (the kernel copies it).
            unsafe {
                assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
                assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &raw const prog), 0);
            }
            assert!(under_seccomp_filter());
            request_short_slice(std::time::Duration::from_micros(300)).map_err(|e| e.to_string())
        })
        .join()
        .unwrap();
        assert_eq!(asked, Ok(false), "sched_setattr was called under a seccomp filter");
    }

    #[test]
    fn current_pid_is_the_child_s_own_after_fork() {
        assert_eq!(current_pid(), std::process::id());
        // SAFETY: the child only reads an atomic, calls getpid and _exit, all
        // async-signal-safe, so forking this multi-threaded test process is sound.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let ok = current_pid() == std::process::id() && current_pid() != 0;
            // SAFETY: _exit in the forked child, without running the parent's atexit state.
            unsafe { libc::_exit(i32::from(!ok)) };
        }
        assert!(child > 0, "fork failed");
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid, writable int.
        assert_eq!(unsafe { libc::waitpid(child, &raw mut status, 0) }, child);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child saw its parent's pid");
        assert_eq!(current_pid(), std::process::id());
    }

    #[test]
    fn a_pid_that_does_not_fit_pid_t_is_refused_not_wrapped() {
        let e = send_signal(u32::MAX, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        send_signal(std::process::id(), 0).unwrap();
    }
}
