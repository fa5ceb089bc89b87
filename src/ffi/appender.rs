//! `trib_appender`: a journal with a background committer (`Appender`): open, push,
//! flush, stats, close. For logging paths that cannot wait for an fsync per record.

use std::ffi::{c_char, c_int};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::boundary::{
    bytes_arg, ffi_call, free_handle, into_handle, need, path_arg, poisoning, put, Failure, FfiResult, HandleBox,
};
use super::error::trib_error;
use super::journal::trib_journal_options;
use crate::{Appender, AppenderOptions, AppenderStats, OnFull, Pushed, PushedLines};

/// A journal with a background committer: `trib_appender_push` queues a line and
/// returns before it is durable; a committer thread appends what is queued as one
/// transaction (one fsync), so that a line is durable within `window_us` of its push;
/// `trib_appender_flush` waits until every line pushed before it is durable.
///
/// Thread-safety: push, flush and dropped may be called from several threads at once.
///
/// Ownership: created by `trib_appender_open`, released by `trib_appender_close`,
/// which must not run while another thread is still using the handle.
pub struct trib_appender {
    _opaque: [u8; 0],
}

#[repr(C)]
struct AppenderBox {
    magic: u64,
    poisoned: AtomicBool,
    /// Taken only by `trib_appender_close`, which then frees the box.
    inner: Option<Appender>,
}

impl AppenderBox {
    fn appender(&self) -> &Appender {
        self.inner.as_ref().expect("only trib_appender_close takes the appender, and it frees the box")
    }
}

impl HandleBox for AppenderBox {
    const MAGIC: u64 = 0x7472_6962_5f61_7070; // "trib_app"
    const NAME: &'static str = "trib_appender";
    type Opaque = trib_appender;
    fn poison(&self) -> Option<&AtomicBool> {
        Some(&self.poisoned)
    }
}

/// `on_full` of `trib_appender_options`: a push into a full queue waits for room. The
/// queue is full when it holds `max_queue_bytes`, or when a line not yet durable has
/// waited longer than `window_us` (the committer is behind), however little it holds.
pub const TRIB_ON_FULL_BLOCK: u32 = 0;
/// `on_full` of `trib_appender_options`: a push into a full queue drops the line and
/// counts it (`trib_appender_read_stats`); the push says so.
pub const TRIB_ON_FULL_DROP: u32 = 1;

/// Options for `trib_appender_open`. Fill it with `trib_appender_options_default` and
/// change the fields you need (passing NULL options means the defaults).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct trib_appender_options {
    /// How the journal is opened.
    pub journal: trib_journal_options,
    /// The durability window in microseconds (default 10000): the longest a pushed
    /// line waits to be durable, unless one commit alone takes longer. The committer
    /// commits at most half of it after the oldest queued line arrived, and a push
    /// waits (or drops, `TRIB_ON_FULL_DROP`) while a line not yet durable has waited
    /// longer. A crash loses at most the lines of the last window. 0: no linger — the
    /// committer commits at once, and a push waits (or drops) while a line pushed
    /// before it is not durable yet.
    pub window_us: u64,
    /// Most bytes queued and not yet committed (default 8 MiB; at least 1).
    pub max_queue_bytes: u64,
    /// `TRIB_ON_FULL_BLOCK` (default) or `TRIB_ON_FULL_DROP`.
    pub on_full: u32,
}

impl From<&AppenderOptions> for trib_appender_options {
    fn from(o: &AppenderOptions) -> Self {
        trib_appender_options {
            journal: trib_journal_options::from(&o.journal),
            window_us: u64::try_from(o.window.as_micros()).unwrap_or(u64::MAX),
            max_queue_bytes: o.max_queue_bytes as u64,
            on_full: match o.on_full {
                OnFull::Block => TRIB_ON_FULL_BLOCK,
                OnFull::Drop => TRIB_ON_FULL_DROP,
            },
        }
    }
}

impl trib_appender_options {
    fn to_rust(self) -> FfiResult<AppenderOptions> {
        let on_full = match self.on_full {
            TRIB_ON_FULL_BLOCK => OnFull::Block,
            TRIB_ON_FULL_DROP => OnFull::Drop,
            other => {
                return Err(Failure::arg(format!(
                    "`on_full` is {other}; use TRIB_ON_FULL_BLOCK (0) or TRIB_ON_FULL_DROP (1)"
                )))
            }
        };
        let max_queue_bytes = usize::try_from(self.max_queue_bytes)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| Failure::arg(format!("`max_queue_bytes` is {}; give 1 or more", self.max_queue_bytes)))?;
        Ok(AppenderOptions::default()
            .journal(self.journal.to_rust()?)
            .window(Duration::from_micros(self.window_us))
            .max_queue_bytes(max_queue_bytes)
            .on_full(on_full))
    }
}

/// Fill `*options_out` with the defaults (the journal's defaults, a 10 ms window, 8 MiB
/// queue, block when full).
///
/// # Safety
/// `options_out` and `err_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_appender_options_default(
    options_out: *mut trib_appender_options,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        need(options_out, "options_out")?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(options_out, trib_appender_options::from(&AppenderOptions::default())) };
        Ok(())
    })
}

/// Open (creating if needed) the journal at `path` and start its committer thread;
/// `options` may be NULL for the defaults. On success `*appender_out` is a new handle
/// for `trib_appender_close`.
///
/// # Safety
/// `path` must be NULL or NUL-terminated; `options` NULL or readable; `appender_out`
/// and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_appender_open(
    path: *const c_char,
    options: *const trib_appender_options,
    appender_out: *mut *mut trib_appender,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let path = unsafe { path_arg(path, "path") }?;
        need(appender_out, "appender_out")?;
        // SAFETY: NULL or a readable options struct per the caller's contract.
        let opts = match unsafe { options.as_ref() } {
            Some(o) => o.to_rust()?,
            None => AppenderOptions::default(),
        };
        let inner = Appender::open(path, opts)?;
        let handle = into_handle(AppenderBox {
            magic: AppenderBox::MAGIC,
            poisoned: AtomicBool::new(false),
            inner: Some(inner),
        });
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(appender_out, handle) };
        Ok(())
    })
}

/// Queue one line (`len` bytes at `line`, without `\n`) for the next commit and return:
/// it is NOT durable yet (`trib_appender_flush`). `*queued_out` (if not NULL) is 1 when
/// queued, 0 when dropped because the queue was full (`TRIB_ON_FULL_DROP`, counted by
/// `trib_appender_read_stats`). A bad line
/// is `TRIB_E_INVALID_LINE` at once; after a failure retrying cannot fix (the journal
/// gone), every push returns that error. A push waiting for room returns the error of a
/// commit attempt that failed meanwhile (e.g. a full disk), the line not queued.
///
/// # Safety
/// `appender` must be NULL or an open handle; `line` NULL or `len` readable bytes;
/// `queued_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_appender_push(
    appender: *const trib_appender,
    line: *const u8,
    len: usize,
    queued_out: *mut c_int,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, appender, |a: &AppenderBox| {
        // SAFETY: NULL or `len` readable bytes per the caller's contract.
        let line = unsafe { bytes_arg(line, len, "line") }?;
        let pushed = poisoning(&a.poisoned, || Ok(a.appender().push(line)?))?;
        if !queued_out.is_null() {
            // SAFETY: not NULL, writable per the caller's contract.
            unsafe { put(queued_out, c_int::from(pushed == Pushed::Queued)) };
        }
        Ok(())
    })
}

/// Queue many lines in one call: the `len` bytes at `lines` hold lines each ended by
/// `\n` (bytes after the last `\n` are one more line), queued in order exactly as that
/// many `trib_appender_push` calls would (a full queue waits or drops per line), under
/// one lock — for a caller that gathers records itself (Go's `slog` handler does).
/// `held_us` is how long the caller already held them (the oldest's age, 0 if not
/// known; at most as long as the appender has been open, else `TRIB_E_INVALID_ARG`):
/// each counts as pushed that long ago, for the window and `trib_appender_durable_wait`. `*queued_out` and `*dropped_out` (each if not NULL)
/// say how many were queued and dropped, whatever the outcome (for a valid
/// `appender`) — also when an error stopped the call part way (the lines before it
/// stay queued). A bad line is `TRIB_E_INVALID_LINE` at once
/// (`trib_error_line_index`: its index among the lines) and none is queued.
///
/// # Safety
/// `appender` must be NULL or an open handle; `lines` NULL or `len` readable bytes;
/// `queued_out`, `dropped_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_appender_push_lines(
    appender: *const trib_appender,
    lines: *const u8,
    len: usize,
    held_us: u64,
    queued_out: *mut usize,
    dropped_out: *mut usize,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, appender, |a: &AppenderBox| {
        // SAFETY: NULL or `len` readable bytes per the caller's contract.
        let (done, result) = match unsafe { bytes_arg(lines, len, "lines") } {
            Ok(lines) => {
                let (done, r) =
                    poisoning(&a.poisoned, || Ok(a.appender().push_lines(lines, Duration::from_micros(held_us))))?;
                (done, r.map_err(Into::into))
            }
            // (the counts are written on every outcome: nothing was queued)
            Err(e) => (PushedLines::default(), Err(e)),
        };
        if !queued_out.is_null() {
            // SAFETY: not NULL, writable per the caller's contract.
            unsafe { put(queued_out, done.queued) };
        }
        if !dropped_out.is_null() {
            // SAFETY: not NULL, writable per the caller's contract.
            unsafe { put(dropped_out, done.dropped) };
        }
        result
    })
}

/// Wait until every line pushed before this call is durable. An error when a commit
/// attempt failed while it waited (the lines stay queued and are retried: call it
/// again), or the error retrying cannot fix.
///
/// # Safety
/// `appender` must be NULL or an open handle; `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_appender_flush(appender: *const trib_appender, err_out: *mut *mut trib_error) -> c_int {
    ffi_call!(err_out, appender, |a: &AppenderBox| poisoning(&a.poisoned, || Ok(a.appender().flush()?)))
}

/// An appender's counters (`trib_appender_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct trib_appender_stats {
    /// Lines queued by `trib_appender_push` (the `n`th pushed line is durable once
    /// `committed` reaches `n`: lines are committed in push order).
    pub pushed: u64,
    /// Lines committed (durable).
    pub committed: u64,
    /// Lines dropped because the queue was full (`TRIB_ON_FULL_DROP`).
    pub dropped: u64,
    /// Transactions the committer made.
    pub commits: u64,
    /// Commit attempts that failed (each retried).
    pub failed_commits: u64,
}

impl From<AppenderStats> for trib_appender_stats {
    fn from(s: AppenderStats) -> Self {
        trib_appender_stats {
            pushed: s.pushed,
            committed: s.committed,
            dropped: s.dropped,
            commits: s.commits,
            failed_commits: s.failed_commits,
        }
    }
}

/// The appender's counters since it was opened, into `*stats_out`.
///
/// # Safety
/// `appender` must be NULL or an open handle; `stats_out` and `err_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn trib_appender_read_stats(
    appender: *const trib_appender,
    stats_out: *mut trib_appender_stats,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, appender, |a: &AppenderBox| {
        need(stats_out, "stats_out")?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(stats_out, trib_appender_stats::from(a.appender().stats())) };
        Ok(())
    })
}

/// The durability window as measured, into `*wait_us_out`: the wait (push → durable,
/// in microseconds) that a fraction `q` (0 to 1) of the lines committed so far did not
/// exceed (`q` = 1: the longest), or 0 before the first commit (a commit includes an
/// fsync: it never takes 0 µs). Each line counts with its own wait (its push → its
/// batch's fsync returned), rounded up to a bucket at most 6 % wide: never below the
/// true wait. `q` outside 0 to
/// 1 is `TRIB_E_INVALID_ARGUMENT`.
///
/// # Safety
/// `appender` must be NULL or an open handle; `wait_us_out` and `err_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn trib_appender_durable_wait(
    appender: *const trib_appender,
    q: f64,
    wait_us_out: *mut u64,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, appender, |a: &AppenderBox| {
        need(wait_us_out, "wait_us_out")?;
        if !(0.0..=1.0).contains(&q) {
            return Err(Failure::arg(format!("q is {q}; give a fraction from 0 to 1 (0.99 for p99)")));
        }
        let us = a.appender().durable_wait(q).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(wait_us_out, us) };
        Ok(())
    })
}

/// Flush, stop the committer, close the journal and release the handle (NULL is
/// accepted: `TRIB_OK`). The handle is released whatever the result; an error means
/// lines still queued were not stored, and says how many.
///
/// # Safety
/// `appender` must be NULL or an open handle that no other thread is using, and it
/// must not be used again; `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_appender_close(appender: *mut trib_appender, err_out: *mut *mut trib_error) -> c_int {
    ffi_call!(err_out, || {
        if appender.is_null() {
            return Ok(());
        }
        // SAFETY: an open handle no other thread uses (caller's contract); taken out of
        // its box here, the box freed below.
        let b = unsafe { super::boundary::handle_mut::<AppenderBox>(appender, "appender") }?;
        let inner = b.inner.take();
        // SAFETY: live, used by no other thread, not used again (caller's contract).
        unsafe { free_handle::<AppenderBox>(appender) };
        match inner {
            Some(a) => Ok(a.close()?),
            None => Ok(()),
        }
    })
}
