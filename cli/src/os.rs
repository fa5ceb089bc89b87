//! The CLI's few system calls the standard library does not expose: a stop flag set
//! by SIGTERM/SIGINT (so `compact` and `tail --follow` end cleanly), and the state of
//! a pipe on stdout (so `tail` saves a cursor only for what its reader consumed). The
//! only `unsafe` in the CLI.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// Install SIGTERM/SIGINT handlers that only set a flag (async-signal-safe).
pub fn install_stop_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the
        // function pointer has the C signature `signal` expects.
        unsafe {
            libc::signal(sig, on_stop_signal as *const () as libc::sighandler_t);
        }
    }
}

/// True once SIGTERM or SIGINT arrived after [`install_stop_handlers`].
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

/// Bytes written into the pipe `fd` that its reader has not read yet; `None` when `fd`
/// is not a pipe (a file or a terminal: what was written counts as read).
pub fn pipe_unread(fd: &impl AsRawFd) -> Option<u64> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat fills the valid, writable `st`; an invalid fd makes it fail.
    if unsafe { libc::fstat(fd.as_raw_fd(), &raw mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return None;
    }
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the valid pointer; on a pipe (either
    // end) Linux reports the bytes buffered in it.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &raw mut n) } != 0 {
        return None;
    }
    // FIONREAD never reports a negative count
    Some(u64::try_from(n).unwrap_or(0))
}

/// True when the reading end of the pipe `fd` has been closed (POLLERR on the write end).
pub fn pipe_reader_gone(fd: &impl AsRawFd) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: 0, revents: 0 };
    // SAFETY: poll reads and writes the one valid pollfd we pass; a zero timeout never blocks.
    let n = unsafe { libc::poll(&raw mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}
