//! The compactor daemon (`Compactor::run_sources`: the one daemon loop the CLI, Python
//! and Go all run): the `trib_compactor` handle (a target and its journal sources, run
//! until stopped or until empty), the one-call forms `trib_compact` and
//! `trib_compact_journals`, and the stop token `trib_stop`.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::boundary::{
    ffi_call, free_handle, handle_ref, into_handle, millis, ms_option, need, path_arg, put, Failure, FfiResult,
    HandleBox,
};
use super::compactor::{journal_paths_arg, trib_compactor_options, trib_drain_report};
use super::error::trib_error;
use crate::{Compactor, CompactorOptions, DaemonEvent, DaemonOptions, DaemonSummary, DrainReport, JournalSources};

/// `event` of a `trib_event_fn`: a round committed lines; `report` says what it did.
pub const TRIB_EVENT_COMMITTED: c_int = 1;
/// `event` of a `trib_event_fn`: another host holds the target's lock, or this one's
/// was lost mid-round (`kind` is `TRIB_E_LOCK_TIMEOUT` or `TRIB_E_LOCK_LOST`); the
/// round is retried after the interval.
pub const TRIB_EVENT_CONTENDED: c_int = 2;
/// `event` of a `trib_event_fn`: a problem with `subject` (`target <path>`), retried
/// with backoff. Said once until its kind changes or it is over (`RESOLVED`).
pub const TRIB_EVENT_PROBLEM: c_int = 3;
/// `event` of a `trib_event_fn`: a journal (`subject` is `journal <path>`) that cannot
/// be drained is set aside, and retried when its files change (and at least every
/// minute) while every other journal keeps draining. Said once.
pub const TRIB_EVENT_SET_ASIDE: c_int = 4;
/// `event` of a `trib_event_fn`: the problem reported before about `subject` is over.
pub const TRIB_EVENT_RESOLVED: c_int = 5;

/// A stop token for `trib_compact`: another thread asks the daemon to stop with
/// `trib_stop_request`.
///
/// Thread-safety: `trib_stop_request` may be called from any thread (a signal-handling
/// thread, say) while `trib_compact` runs with the token; a request cannot be taken
/// back (make a new token for the next run).
///
/// Ownership: created by `trib_stop_new`, released by `trib_stop_free`, which must not
/// run while a `trib_compact` or a `trib_stop_request` is still using it.
pub struct trib_stop {
    _opaque: [u8; 0],
}

#[repr(C)]
pub(super) struct StopBox {
    magic: u64,
    /// Shared with the compactor of a `trib_drain_stoppable` (`Compactor::stop_when`).
    pub(super) requested: Arc<AtomicBool>,
}

impl HandleBox for StopBox {
    const MAGIC: u64 = 0x7472_6962_5f73_7470; // "trib_stp"
    const NAME: &'static str = "trib_stop";
    type Opaque = trib_stop;
}

/// What `trib_compact` did before it returned.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct trib_compact_report {
    /// Rounds that committed lines.
    pub rounds: u64,
    /// Lines committed to the target.
    pub lines: u64,
}

/// What `trib_compact` calls for what a log should say:
/// `on_event(ctx, event, subject, kind, message, report)`.
/// - `ctx` is the `ctx` given to `trib_compact`;
/// - `event` is a `TRIB_EVENT_*`;
/// - `subject` names the object (`target <path>` or `journal <path>`), `""` for
///   `TRIB_EVENT_COMMITTED`;
/// - `kind` is the error's `TRIB_E_*` code (`CONTENDED`, `PROBLEM`, `SET_ASIDE`), else 0;
/// - `message` is a human-readable sentence (the error's message, or what a round
///   committed);
/// - `report` is what the round did for `TRIB_EVENT_COMMITTED`, else NULL.
///
/// The pointers are valid only during the call (copy what you keep). It runs on the
/// thread that called `trib_compact`, between rounds (no lock is held), so a slow
/// callback only delays the daemon. It must return normally: it must not unwind (no
/// C++ exception, no Rust panic) or `longjmp` out of the call.
pub type trib_event_fn = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        event: c_int,
        subject: *const c_char,
        kind: c_int,
        message: *const c_char,
        report: *const trib_drain_report,
    ),
>;

/// Make a stop token for `trib_compact`. On success `*stop_out` is a new handle for
/// `trib_stop_free`.
///
/// # Safety
/// `stop_out` and `err_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_stop_new(stop_out: *mut *mut trib_stop, err_out: *mut *mut trib_error) -> c_int {
    ffi_call!(err_out, || {
        need(stop_out, "stop_out")?;
        let handle = into_handle(StopBox { magic: StopBox::MAGIC, requested: Arc::new(AtomicBool::new(false)) });
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(stop_out, handle) };
        Ok(())
    })
}

/// Ask the `trib_compact` running with `stop` (or the next one) to stop: it returns
/// `TRIB_OK` within about 10 ms when it is waiting, or after the round it is in. Any
/// thread may call it, any number of times (an atomic store; it never blocks). NULL or
/// a handle of another type is ignored.
///
/// # Safety
/// `stop` must be NULL or a live `trib_stop` (not freed before this call returns).
#[no_mangle]
pub unsafe extern "C" fn trib_stop_request(stop: *const trib_stop) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: NULL or a live handle (caller's contract); `StopBox` is only read
        // (its flag is atomic), so sharing it between threads is sound.
        if let Ok(s) = unsafe { handle_ref::<StopBox>(stop, "stop") } {
            s.requested.store(true, Ordering::Release);
        }
    });
}

/// Release a stop token (NULL is accepted and ignored).
///
/// # Safety
/// `stop` must be NULL or a live `trib_stop` that no `trib_compact` or
/// `trib_stop_request` is using, and it must not be used again.
#[no_mangle]
pub unsafe extern "C" fn trib_stop_free(stop: *mut trib_stop) {
    // SAFETY: NULL or a live handle no other thread uses, not used again (caller's contract).
    unsafe { free_handle::<StopBox>(stop) }
}

/// The compactor daemon (as `tributary compact`): drain every `*.journal` in the
/// folder `spool` (journals that appear later are picked up) into `target` until
/// `trib_stop_request(stop)`, then return `TRIB_OK`. It pauses `interval_ms` (0: the
/// default, 100 ms) after a pass that found nothing to drain. It stops on its own only
/// on an error that needs a human (a corrupt manifest, a truncated, torn or foreign-
/// tailed target, an unsafe filesystem under the target, an invalid argument): then it
/// returns that error's code, with the error in `*err_out`. Everything else is retried
/// and reported once through `on_event`: a busy lock (`TRIB_EVENT_CONTENDED`),
/// transient trouble with the target or the spool, such as a full disk or a share not
/// mounted yet (`TRIB_EVENT_PROBLEM`, retried with backoff up to 30 s), a journal that
/// cannot be drained (`TRIB_EVENT_SET_ASIDE`: the others keep draining). `options`
/// may be NULL for the defaults (then the target must exist: `trib_init`).
///
/// Unlike other functions, `*report_out` (if not NULL) is written whatever the result:
/// the rounds and lines committed before it returned. `on_event` (may be NULL) runs on
/// the calling thread with `ctx`; see `trib_event_fn`. A stop already requested
/// before the call returns `TRIB_OK` at once.
///
/// # Safety
/// `target` and `spool` must be NULL or NUL-terminated; `options` NULL or readable;
/// `stop` a live `trib_stop`, not freed during the call (required: it is how the call
/// ends; NULL is refused, `TRIB_E_INVALID_ARGUMENT`); `on_event` NULL or a
/// function that can be called with `ctx` until the call returns; `report_out` and
/// `err_out` NULL or writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn trib_compact(
    target: *const c_char,
    spool: *const c_char,
    options: *const trib_compactor_options,
    interval_ms: u64,
    stop: *const trib_stop,
    on_event: trib_event_fn,
    ctx: *mut c_void,
    report_out: *mut trib_compact_report,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, stop, |s: &StopBox| {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let spool = unsafe { path_arg(spool, "spool") }?;
        let sources = JournalSources::new().spool(spool);
        // SAFETY: the caller's contract covers every argument `daemon` reads.
        unsafe { daemon(target, options, &sources, interval_ms, s, on_event, ctx, report_out) }
    })
}

/// `trib_compact` over a fixed set of journals instead of a spool: the same daemon,
/// retries and events. A journal that is missing or cannot be drained is set aside
/// (`TRIB_EVENT_SET_ASIDE`, once) and tried again when its files change, while the
/// others keep draining. `journal_count` may be 0 (the daemon then only keeps the
/// target repaired).
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `journal_paths` NULL (only with
/// `journal_count` 0) or `journal_count` pointers, each NULL or NUL-terminated;
/// `options` NULL or readable; `stop` a live `trib_stop`, not freed during the call
/// (required, as for `trib_compact`); `on_event` NULL or a function that can be called
/// with `ctx` until the call returns; `report_out` and `err_out` NULL or writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn trib_compact_journals(
    target: *const c_char,
    journal_paths: *const *const c_char,
    journal_count: usize,
    options: *const trib_compactor_options,
    interval_ms: u64,
    stop: *const trib_stop,
    on_event: trib_event_fn,
    ctx: *mut c_void,
    report_out: *mut trib_compact_report,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, stop, |s: &StopBox| {
        // SAFETY: NULL (with a count of 0) or `journal_count` NUL-terminated strings per
        // the caller's contract.
        let paths = unsafe { journal_paths_arg(journal_paths, journal_count) }?;
        let mut sources = JournalSources::new();
        for p in paths {
            sources.add_journal(p);
        }
        // SAFETY: the caller's contract covers every argument `daemon` reads.
        unsafe { daemon(target, options, &sources, interval_ms, s, on_event, ctx, report_out) }
    })
}

/// What `trib_compact` and `trib_compact_journals` share: the arguments turned into a
/// compactor, sources and daemon options, then [`run`].
///
/// # Safety
/// `target` NULL or NUL-terminated; `options` NULL or readable; `on_event` NULL or
/// callable with `ctx` until this returns; `report_out` NULL or writable.
#[allow(clippy::too_many_arguments)]
unsafe fn daemon(
    target: *const c_char,
    options: *const trib_compactor_options,
    sources: &JournalSources,
    interval_ms: u64,
    s: &StopBox,
    on_event: trib_event_fn,
    ctx: *mut c_void,
    report_out: *mut trib_compact_report,
) -> FfiResult<()> {
    // SAFETY: NULL or readable per the caller's contract.
    let compactor = unsafe { new_compactor(target, options) }?;
    let mut daemon = DaemonOptions::default();
    if interval_ms > 0 {
        daemon.interval = ms_option(interval_ms, "interval_ms")?;
    }
    // SAFETY: forwarded contract (`on_event` callable with `ctx` during the call).
    let summary = unsafe { run(&compactor, sources, &daemon, s, on_event, ctx) };
    if !report_out.is_null() {
        let report = trib_compact_report { rounds: summary.rounds, lines: summary.lines };
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(report_out, report) };
    }
    match summary.stopped_by {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// A compactor for `target` with `options` (NULL: the defaults).
///
/// # Safety
/// `target` NULL or NUL-terminated; `options` NULL or readable.
unsafe fn new_compactor(target: *const c_char, options: *const trib_compactor_options) -> FfiResult<Compactor> {
    // SAFETY: NUL-terminated or NULL per the caller's contract.
    let target = unsafe { path_arg(target, "target") }?;
    // SAFETY: NULL or a readable options struct per the caller's contract.
    let opts = match unsafe { options.as_ref() } {
        Some(o) => o.to_rust()?,
        None => CompactorOptions::default(),
    };
    Ok(Compactor::new(target, opts)?)
}

/// Run the daemon loop with the stop token and the C event callback.
///
/// # Safety
/// `on_event` NULL or callable with `ctx` until this returns.
unsafe fn run(
    compactor: &Compactor,
    sources: &JournalSources,
    opts: &DaemonOptions,
    s: &StopBox,
    on_event: trib_event_fn,
    ctx: *mut c_void,
) -> DaemonSummary {
    let stop = || s.requested.load(Ordering::Acquire);
    compactor.run_sources(sources, opts, &stop, &mut |e| {
        if let Some(f) = on_event {
            // SAFETY: `f` may be called with `ctx` during the call (caller's contract).
            unsafe { tell(f, ctx, &e) }
        }
    })
}

/// A compactor: a target, its options and its journal sources (spool folders and
/// journal paths, added with `trib_compactor_add_spool` / `trib_compactor_add_journal`),
/// run with `trib_compactor_run` as a daemon (until `trib_stop_request`) or until
/// nothing is left to drain (`until_empty`), as many times as needed.
///
/// Thread-safety: every function may be called from several threads at once; a source
/// added while a run is in progress is picked up by the next run. Runs on one handle
/// from several threads are allowed (each round takes the target's lock, as runs in
/// other processes do).
///
/// Ownership: created by `trib_compactor_new`, released by `trib_compactor_free`, which
/// must not run while another thread is still using the handle.
pub struct trib_compactor {
    _opaque: [u8; 0],
}

#[repr(C)]
struct CompactorBox {
    magic: u64,
    compactor: Compactor,
    sources: Mutex<JournalSources>,
}

impl HandleBox for CompactorBox {
    const MAGIC: u64 = 0x7472_6962_5f63_6d70; // "trib_cmp"
    const NAME: &'static str = "trib_compactor";
    type Opaque = trib_compactor;
}

impl CompactorBox {
    fn sources(&self) -> std::sync::MutexGuard<'_, JournalSources> {
        // A panic while the lock was held left nothing half-updated (adds are one push).
        self.sources.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Options for `trib_compactor_run`. Fill it with `trib_run_options_default` and change
/// the fields you need (passing NULL options means the defaults).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct trib_run_options {
    /// Pause after a pass that found nothing to drain (default 100 ms; at least 1).
    pub interval_ms: u64,
    /// The longest pause between retries after transient trouble (default 30000 ms;
    /// the pause doubles from `interval_ms`).
    pub max_backoff_ms: u64,
    /// Return once a pass over every journal finds nothing to drain ("drain until
    /// empty"), instead of waiting for more until `trib_stop_request`. Default false.
    pub until_empty: bool,
}

impl From<&DaemonOptions> for trib_run_options {
    fn from(o: &DaemonOptions) -> Self {
        trib_run_options {
            interval_ms: millis(o.interval),
            max_backoff_ms: millis(o.max_backoff),
            until_empty: o.until_empty,
        }
    }
}

impl trib_run_options {
    fn to_rust(self) -> FfiResult<DaemonOptions> {
        if self.interval_ms == 0 {
            return Err(Failure::arg("`interval_ms` must be at least 1"));
        }
        Ok(DaemonOptions::default()
            .interval(ms_option(self.interval_ms, "interval_ms")?)
            .max_backoff(ms_option(self.max_backoff_ms, "max_backoff_ms")?)
            .until_empty(self.until_empty))
    }
}

/// What `trib_compactor_run` did before it returned.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct trib_run_report {
    /// Rounds that committed lines.
    pub rounds: u64,
    /// Lines committed to the target.
    pub lines: u64,
    /// Journals set aside (and spool folders that could not be listed) when it
    /// returned, each reported through `on_event`; with `until_empty`, what "empty"
    /// did not include.
    pub set_aside: u64,
}

/// Fill `*options_out` with the defaults of `trib_compactor_run`.
///
/// # Safety
/// `options_out` and `err_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_run_options_default(
    options_out: *mut trib_run_options,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        need(options_out, "options_out")?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(options_out, trib_run_options::from(&DaemonOptions::default())) };
        Ok(())
    })
}

/// Make a compactor for `target` with `options` (NULL: the defaults; then the target
/// must exist: `trib_init`), with no journal sources yet. On success `*compactor_out`
/// is a new handle for `trib_compactor_free`.
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `options` NULL or readable;
/// `compactor_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_compactor_new(
    target: *const c_char,
    options: *const trib_compactor_options,
    compactor_out: *mut *mut trib_compactor,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        need(compactor_out, "compactor_out")?;
        // SAFETY: NULL or NUL-terminated / readable per the caller's contract.
        let compactor = unsafe { new_compactor(target, options) }?;
        let b = CompactorBox { magic: CompactorBox::MAGIC, compactor, sources: Mutex::default() };
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(compactor_out, into_handle(b)) };
        Ok(())
    })
}

/// Add the spool folder `folder`: every `*.journal` directly in it is drained, as the
/// folder is at each pass (journals that appear later are picked up). A folder that
/// does not exist yet is reported (`TRIB_EVENT_PROBLEM`, once) and looked at again at
/// each pass. Adding a folder twice adds it once.
///
/// # Safety
/// `compactor` must be NULL or a live `trib_compactor`; `folder` NULL or
/// NUL-terminated; `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_compactor_add_spool(
    compactor: *const trib_compactor,
    folder: *const c_char,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, compactor, |c: &CompactorBox| {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let folder = unsafe { path_arg(folder, "folder") }?;
        c.sources().add_spool(folder);
        Ok(())
    })
}

/// Add the journal at `path`. One that does not exist yet (or cannot be drained) is
/// set aside (`TRIB_EVENT_SET_ASIDE`, once) and tried again when its files change,
/// while the others keep draining. Adding a path twice adds it once.
///
/// # Safety
/// `compactor` must be NULL or a live `trib_compactor`; `path` NULL or
/// NUL-terminated; `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_compactor_add_journal(
    compactor: *const trib_compactor,
    path: *const c_char,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, compactor, |c: &CompactorBox| {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let path = unsafe { path_arg(path, "path") }?;
        c.sources().add_journal(path);
        Ok(())
    })
}

/// Run the compactor daemon over the sources added so far: as `trib_compact` (the same
/// retries, set-asides and events), until `trib_stop_request(stop)` — or, with
/// `until_empty` in `options`, until a pass over every journal finds nothing more to
/// drain. Returns `TRIB_OK` then; an error that needs a human stops it with that
/// error's code. `options` may be NULL for the defaults; `stop` may be NULL (then it
/// runs until empty, or until such an error).
///
/// Unlike other functions, `*report_out` (if not NULL) is written whatever the result.
/// `on_event` (may be NULL) runs on the calling thread with `ctx`; see
/// `trib_event_fn`.
///
/// # Safety
/// `compactor` must be NULL or a live `trib_compactor`; `options` NULL or readable;
/// `stop` NULL or a live `trib_stop`, not freed during the call; `on_event` NULL or a
/// function that can be called with `ctx` until the call returns; `report_out` and
/// `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_compactor_run(
    compactor: *const trib_compactor,
    options: *const trib_run_options,
    stop: *const trib_stop,
    on_event: trib_event_fn,
    ctx: *mut c_void,
    report_out: *mut trib_run_report,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, compactor, |c: &CompactorBox| {
        // SAFETY: NULL or readable per the caller's contract.
        let opts = match unsafe { options.as_ref() } {
            Some(o) => o.to_rust()?,
            None => DaemonOptions::default(),
        };
        let never = StopBox { magic: StopBox::MAGIC, requested: Arc::new(AtomicBool::new(false)) };
        let s = if stop.is_null() {
            &never
        } else {
            // SAFETY: a live `trib_stop` per the caller's contract (only read: atomic).
            unsafe { handle_ref::<StopBox>(stop, "stop") }?
        };
        let sources = c.sources().clone();
        // SAFETY: `on_event` callable with `ctx` during the call (caller's contract).
        let summary = unsafe { run(&c.compactor, &sources, &opts, s, on_event, ctx) };
        if !report_out.is_null() {
            let report = trib_run_report {
                rounds: summary.rounds,
                lines: summary.lines,
                set_aside: summary.set_aside.len() as u64,
            };
            // SAFETY: not NULL, writable per the caller's contract.
            unsafe { put(report_out, report) };
        }
        match summary.stopped_by {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    })
}

/// Release a compactor (NULL is accepted and ignored).
///
/// # Safety
/// `compactor` must be NULL or a live `trib_compactor` that no other thread is using,
/// and it must not be used again.
#[no_mangle]
pub unsafe extern "C" fn trib_compactor_free(compactor: *mut trib_compactor) {
    // SAFETY: NULL or a live handle no other thread uses, not used again (caller's contract).
    unsafe { free_handle::<CompactorBox>(compactor) }
}

type EventFn = unsafe extern "C" fn(*mut c_void, c_int, *const c_char, c_int, *const c_char, *const trib_drain_report);

/// Hand one daemon event to C, its strings NUL-terminated for the call only.
///
/// # Safety
/// `f` must be callable with `ctx`.
unsafe fn tell(f: EventFn, ctx: *mut c_void, e: &DaemonEvent<'_>) {
    let text = |s: &str| CString::new(s.replace('\0', "\\0")).unwrap_or_default();
    let (event, subject, error, report) = match e {
        // Idle: for metrics in-process; C callers are told what a log should say.
        // Retired: automatic retirement is not among the C daemon's options (yet).
        DaemonEvent::Idle | DaemonEvent::Retired { .. } => return,
        DaemonEvent::Committed(r) => (TRIB_EVENT_COMMITTED, String::new(), None, Some(c_report(r))),
        DaemonEvent::Contended(err) => (TRIB_EVENT_CONTENDED, String::new(), Some(*err), None),
        DaemonEvent::Problem { subject, error, set_aside } => {
            let event = if *set_aside { TRIB_EVENT_SET_ASIDE } else { TRIB_EVENT_PROBLEM };
            (event, subject.to_string(), Some(*error), None)
        }
        DaemonEvent::Resolved { subject } => (TRIB_EVENT_RESOLVED, subject.to_string(), None, None),
    };
    let (kind, message) = match (error, &report) {
        (Some(err), _) => (err.kind() as c_int, err.to_string()),
        (None, Some(r)) => (0, format!("committed {} line(s), {} byte(s); epoch {}", r.lines, r.bytes, r.epoch)),
        (None, None) => (0, format!("{subject}: over")),
    };
    let (subject, message) = (text(&subject), text(&message));
    let report_ptr = report.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: callable with `ctx` (caller's contract); the strings and the report live
    // until after it returns; declared `extern "C"`, it does not unwind (its contract).
    unsafe { f(ctx, event, subject.as_ptr(), kind, message.as_ptr(), report_ptr) }
}

fn c_report(r: &DrainReport) -> trib_drain_report {
    trib_drain_report {
        rounds: r.rounds,
        lines: r.lines,
        bytes: r.bytes,
        repaired_tail_bytes: r.repaired_tail_bytes,
        epoch: r.epoch,
        journals: r.journals.len(),
        rotations: r.rotations,
    }
}
