//! The syscalls the seed design's baseline needs that std does not offer: a blocking
//! OFD write lock on a whole file (`fcntl(F_OFD_SETLKW)`) and its release, and a plain
//! `fstat` (std's `metadata()` goes through `statx`; the seed design took the size from
//! `fstat`, and that is what is measured).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

fn ofd_lock_op(file: &File, lock_type: libc::c_int, cmd: libc::c_int) -> io::Result<()> {
    let (Ok(l_type), Ok(l_whence)) = (libc::c_short::try_from(lock_type), libc::c_short::try_from(libc::SEEK_SET))
    else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type;
    fl.l_whence = l_whence;
    // l_start = l_len = 0: the whole file; l_pid must be 0 for OFD locks
    loop {
        // SAFETY: the fd is open for the lifetime of `file`; `fl` is a valid `flock`
        // that the kernel only reads.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &raw mut fl) };
        if rc != -1 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Wait for an exclusive OFD write lock on the whole file.
pub fn lock_exclusive(file: &File) -> io::Result<()> {
    ofd_lock_op(file, libc::F_WRLCK, libc::F_OFD_SETLKW)
}

/// Release the lock [`lock_exclusive`] took.
pub fn unlock(file: &File) -> io::Result<()> {
    ofd_lock_op(file, libc::F_UNLCK, libc::F_OFD_SETLK)
}

/// The file's size as `fstat(2)` reports it (from the client's attribute cache, on a
/// network filesystem that has one).
pub fn fstat_size(file: &File) -> io::Result<u64> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open for the lifetime of `file`; `st` is a valid, writable
    // out-parameter.
    if unsafe { libc::fstat(file.as_raw_fd(), &raw mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    u64::try_from(st.st_size).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))
}
