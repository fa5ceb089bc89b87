//! The CLI's few system calls the standard library does not expose: a stop flag set
//! by SIGTERM/SIGINT/SIGHUP (so `compact` and `tail --follow` end cleanly), SIGXFSZ ignored,
//! whether stdout is open, and the state of a pipe on stdout (so `tail` saves a cursor
//! only for what its reader consumed), or a regular file's unterminated last line.
//! The only `unsafe` in the CLI.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// Install SIGTERM/SIGINT handlers that only set a flag (async-signal-safe), and one
/// for SIGHUP unless it is ignored (`nohup`): a closed terminal stops a `compact` or
/// `tail --follow` as cleanly as SIGTERM — it killed them without their last words or
/// the final metrics write (an outside tester).
pub fn install_stop_handlers() {
    let handler = on_stop_signal as *const () as libc::sighandler_t;
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the
        // function pointer has the C signature `signal` expects.
        unsafe {
            libc::signal(sig, handler);
        }
    }
    // SAFETY: as above; SIG_IGN is a valid disposition, put back at once when it was
    // the one inherited.
    unsafe {
        if libc::signal(libc::SIGHUP, handler) == libc::SIG_IGN {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
        }
    }
}

/// Ignore SIGXFSZ: a file reaching `ulimit -f` (`RLIMIT_FSIZE`) is then an `EFBIG`
/// error that a command reports and the daemon retries, not a silent kill (an outside
/// tester: `compact` died with exit 153 in its first round under a limit below 4 MiB,
/// the lock file's length). What PostgreSQL and `CPython` do.
pub fn ignore_file_size_signal() {
    // SAFETY: SIG_IGN is a valid disposition for SIGXFSZ; no handler code runs.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Whether fd 1 was closed when the process started, recorded before the standard
/// library's start-up puts `/dev/null` there (it does for closed 0, 1 and 2).
static STDOUT_CLOSED_AT_START: AtomicBool = AtomicBool::new(false);

extern "C" fn record_stdout_at_start() {
    // SAFETY: F_GETFD only asks about descriptor 1; it reads and changes nothing.
    let closed = unsafe { libc::fcntl(1, libc::F_GETFD) } == -1;
    STDOUT_CLOSED_AT_START.store(closed, Ordering::SeqCst);
}

/// Runs before `main` and before the standard library's start-up (the loader calls
/// `.init_array` entries before the C `main` that calls Rust's).
#[used]
#[link_section = ".init_array"]
static RECORD_STDOUT_AT_START: extern "C" fn() = record_stdout_at_start;

/// Whether this process was started with stdout (fd 1) closed (`>&-`): the standard
/// library then gives it `/dev/null`, so lines would vanish while the command reports
/// success — and `tail --cursor-store` would store them as read (an outside tester).
/// Told from fd 1 as it was before that (a `/dev/null` a caller opened — `> /dev/null`,
/// Python's `subprocess.DEVNULL`, read-write — is a stdout that discards).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED_AT_START.load(Ordering::SeqCst)
}

/// True once SIGTERM, SIGINT or SIGHUP arrived after [`install_stop_handlers`].
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

/// Bytes written into the pipe `fd` that its reader has not read yet; `None` when `fd`
/// is not a pipe (a file or a terminal: what was written counts as read).
pub fn pipe_unread(fd: &impl AsRawFd) -> Option<u64> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat fills the valid, writable `st`; an invalid fd makes it fail.
    if unsafe { libc::fstat(fd.as_raw_fd(), &raw mut st) } != 0 {
        return None;
    }
    // A pipe: FIONREAD, the bytes buffered in it. A Unix socket: SIOCOUTQ (TIOCOUTQ),
    // the memory its sent data still holds until the reader takes it — a little more
    // than the bytes (it counts buffer overhead), so it never reads low: what it says
    // is read was read (systemd's StandardOutput=socket, socat: the cursor was
    // committed past 1,990 lines still in the socket — an outside tester).
    let request = match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => libc::FIONREAD,
        // a socket whose reader is gone dropped what it had not read: nothing known read
        libc::S_IFSOCK if socket_family(fd) == Some(libc::AF_UNIX) && pipe_reader_gone(fd) => return Some(u64::MAX),
        libc::S_IFSOCK if socket_family(fd) == Some(libc::AF_UNIX) => libc::TIOCOUTQ,
        _ => return None,
    };
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD and TIOCOUTQ write one c_int through the valid pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), request, &raw mut n) } != 0 {
        return None;
    }
    // neither reports a negative count
    Some(u64::try_from(n).unwrap_or(0))
}

/// The address family of socket `fd` (`AF_UNIX`, `AF_INET`, ...); `None` when it is
/// not a socket.
pub fn socket_family(fd: &impl AsRawFd) -> Option<libc::c_int> {
    // SAFETY: an all-zero `sockaddr_storage` is a valid value of this plain C struct.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_storage>()).ok()?;
    // SAFETY: getsockname writes at most `len` bytes into the valid `addr` and updates
    // `len`; an fd that is not a socket makes it fail.
    if unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut addr).cast(), &raw mut len) } != 0 {
        return None;
    }
    Some(libc::c_int::from(addr.ss_family))
}

/// Why a cursor store cannot be kept behind this stdout, if it cannot: a network
/// socket, whose peer's unread bytes no call here can count (a cursor committed past
/// them would skip them if the reader died).
pub fn unread_unknowable(fd: &impl AsRawFd) -> Option<&'static str> {
    match socket_family(fd) {
        Some(libc::AF_UNIX) | None => None,
        Some(_) => Some("stdout is a network socket"),
    }
}

/// True when the reading end of the pipe `fd` has been closed (POLLERR on the write end).
pub fn pipe_reader_gone(fd: &impl AsRawFd) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: 0, revents: 0 };
    // SAFETY: poll reads and writes the one valid pollfd we pass; a zero timeout never blocks.
    let n = unsafe { libc::poll(&raw mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// When stdout is a regular file that ends with the start of `line` and no `\n` after
/// it — a `tail` killed while writing that line, which the resumed one writes again
/// whole first — cut that start off, so the two do not run together. Only bytes after
/// the file's last `\n` that are a prefix of `line` are cut; anything else (a file
/// other writers append to, one that ends without a newline of its own) is left as it
/// is. Returns how many bytes were cut (`None`: nothing to cut, or stdout is not a
/// regular file).
///
/// # Errors
/// Reading the end of the file, or cutting it.
pub fn cut_start_of_line(line: &[u8]) -> io::Result<Option<u64>> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::FileExt;
    // (a duplicate of fd 1: one open file, one offset)
    let mut out = std::fs::File::from(io::stdout().as_fd().try_clone_to_owned()?);
    let md = out.metadata()?;
    if !md.is_file() || md.len() == 0 {
        return Ok(None);
    }
    // The end of the file: the start of `line` and the `\n` before it, at most.
    let span = (line.len() as u64 + 1).min(md.len());
    let mut end = vec![0u8; usize::try_from(span).map_err(io::Error::other)?];
    let at = md.len() - span;
    // (stdout opened write-only, `>> out`: read it through its name in /proc)
    if let Err(e) = out.read_exact_at(&mut end, at) {
        if e.raw_os_error() != Some(libc::EBADF) {
            return Err(e);
        }
        std::fs::File::open("/proc/self/fd/1")?.read_exact_at(&mut end, at)?;
    }
    let unterminated = match end.iter().rposition(|&b| b == b'\n') {
        Some(i) => &end[i + 1..],
        None if at == 0 => &end[..], // the whole file is one unterminated line
        None => return Ok(None),     // longer than `line`: not its start
    };
    if unterminated.is_empty() || !line.starts_with(unterminated) {
        return Ok(None);
    }
    let keep = md.len() - unterminated.len() as u64;
    out.set_len(keep)?;
    // Without O_APPEND (`exec > out`), fd 1's offset is still at the old end: the next
    // write would leave zeros in the gap.
    out.seek(SeekFrom::Start(keep))?;
    Ok(Some(unterminated.len() as u64))
}
