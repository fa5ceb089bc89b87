//! `trib_init`, `trib_drain`, `trib_retire` (and `trib_retire_forgetting_keys`) and their options and reports.

use std::ffi::{c_char, c_int};
use std::path::PathBuf;

use super::boundary::{
    array_arg, busy_timeout_option, ffi_call, handle_ref, id_buf, millis, ms_option, need, path_arg, put, Failure,
    FfiResult,
};
use super::error::trib_error;
use super::TRIB_ID_BUF_LEN;
use crate::{Compactor, CompactorOptions};

/// Options for `trib_drain`. Fill it with `trib_compactor_options_default` and change
/// the fields you need (passing NULL options means the defaults).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct trib_compactor_options {
    /// Most bytes one round writes (default 64 MiB; at least 1; a round that queued
    /// for another compactor's lock at most 4 MiB). Also the longest uncommitted tail
    /// a round repairs.
    pub max_round_bytes: u64,
    /// Stop reading new lines into a round after this long (default 2000 ms; a round
    /// that queued for another compactor's lock at most 100 ms).
    pub max_round_time_ms: u64,
    /// How long to wait for the target's lock (default 30000 ms).
    pub lock_timeout_ms: u64,
    /// The longest line any writer may append (default 1 MiB); bounds a round too.
    pub max_line_bytes: usize,
    /// Busy timeout of the journals the drain opens (default 30000 ms).
    pub journal_busy_timeout_ms: u64,
    /// Accept journals on a network filesystem (default false).
    pub allow_network_fs: bool,
    /// Managed rotation: start a new generation once the current one holds at least this
    /// many committed bytes (checked at the start of each round); the old one becomes
    /// `<target>.<generation>`. 0 (default): no rotation by size.
    pub rotate_bytes: u64,
    /// Managed rotation by committed line count (either limit triggers it). 0 (default):
    /// no rotation by line count.
    pub rotate_lines: u64,
    /// Keep at most this many rotated generations, deleting older ones. 0 (default):
    /// keep them all.
    pub retain_generations: u64,
    /// Create the target if it does not exist yet (as `trib_init` does). Default
    /// false: a target never initialised, or on a share that is not mounted, is
    /// `TRIB_E_TARGET_MISSING`.
    pub create: bool,
}

impl From<&CompactorOptions> for trib_compactor_options {
    fn from(o: &CompactorOptions) -> Self {
        trib_compactor_options {
            max_round_bytes: o.max_round_bytes,
            max_round_time_ms: millis(o.max_round_time),
            lock_timeout_ms: millis(o.lock_timeout),
            max_line_bytes: o.journal.max_line_bytes,
            journal_busy_timeout_ms: millis(o.journal.busy_timeout),
            allow_network_fs: o.journal.allow_network_fs,
            rotate_bytes: o.rotate_bytes.unwrap_or(0),
            rotate_lines: o.rotate_lines.unwrap_or(0),
            retain_generations: o.retain_generations.unwrap_or(0),
            create: o.create,
        }
    }
}

impl trib_compactor_options {
    pub(super) fn to_rust(self) -> FfiResult<CompactorOptions> {
        if self.max_round_bytes == 0 {
            return Err(Failure::arg("`max_round_bytes` must be at least 1"));
        }
        if self.max_line_bytes == 0 {
            return Err(Failure::arg("`max_line_bytes` must be at least 1"));
        }
        let mut opts = CompactorOptions {
            max_round_bytes: self.max_round_bytes,
            max_round_time: ms_option(self.max_round_time_ms, "max_round_time_ms")?,
            lock_timeout: ms_option(self.lock_timeout_ms, "lock_timeout_ms")?,
            rotate_bytes: (self.rotate_bytes > 0).then_some(self.rotate_bytes),
            rotate_lines: (self.rotate_lines > 0).then_some(self.rotate_lines),
            retain_generations: (self.retain_generations > 0).then_some(self.retain_generations),
            create: self.create,
            ..CompactorOptions::default()
        };
        opts.journal.busy_timeout = busy_timeout_option(self.journal_busy_timeout_ms, "journal_busy_timeout_ms")?;
        opts.journal.allow_network_fs = self.allow_network_fs;
        opts.journal.max_line_bytes = self.max_line_bytes;
        Ok(opts)
    }
}

/// What `trib_init` found or did.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct trib_init_report {
    /// The target's id: 32 hex digits and a NUL.
    pub target_id: [c_char; TRIB_ID_BUF_LEN],
    /// True when this call created the target (its sidecar and first manifest).
    pub created: bool,
    /// Lines of a pre-existing target file adopted as committed (when `created`).
    pub adopted_lines: u64,
    /// True when a target of an older manifest format was upgraded.
    pub upgraded: bool,
    /// True when a replaced target file (restored or copied with its sidecar) was
    /// accepted because its committed part matched.
    pub rebound: bool,
}

/// Create `target` once — its sidecar, lock file and first manifest, and the target
/// file (an existing file's whole lines are adopted as committed) — or, if it exists,
/// check it (and upgrade an older manifest format). Drains never create a target
/// unless `create` is set in their options. `options` may be NULL for the defaults
/// (only `lock_timeout_ms` matters here).
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `options` NULL or readable; `report_out`
/// and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_init(
    target: *const c_char,
    options: *const trib_compactor_options,
    report_out: *mut trib_init_report,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: the caller's contract, as `init_into` needs it.
        unsafe { init_into(target, options, None, report_out) }
    })
}

/// `trib_init`, then, with `manifest_format` 2 or 3, switch the target's manifest to
/// that format (a new target is made in it; docs/design.md "Manifest deltas": 3, the
/// default, is read only by builds from 2026-12-04 on; 2 for a target that older
/// builds drain too). 0: as `trib_init` (a new target in 3, an existing one keeps
/// its format). Another value is `TRIB_E_INVALID_ARG`, nothing done.
/// `trib_status_report_manifest_format` tells the format a target has.
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `options` NULL or readable; `report_out`
/// and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_init_in_format(
    target: *const c_char,
    options: *const trib_compactor_options,
    manifest_format: u32,
    report_out: *mut trib_init_report,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: the caller's contract, as `init_into` needs it.
        unsafe { init_into(target, options, Some(manifest_format).filter(|&f| f != 0), report_out) }
    })
}

/// The body of `trib_init` and `trib_init_in_format`.
///
/// # Safety
/// `target` NULL or NUL-terminated; `options` NULL or readable; `report_out` NULL or
/// writable.
unsafe fn init_into(
    target: *const c_char,
    options: *const trib_compactor_options,
    format: Option<u32>,
    report_out: *mut trib_init_report,
) -> super::boundary::FfiResult<()> {
    // SAFETY: NUL-terminated or NULL per the caller's contract.
    let target = unsafe { path_arg(target, "target") }?;
    need(report_out, "report_out")?;
    // SAFETY: NULL or a readable options struct per the caller's contract.
    let opts = match unsafe { options.as_ref() } {
        Some(o) => o.to_rust()?,
        None => CompactorOptions::default(),
    };
    let r = Compactor::new(target, opts)?.init_in_format(format)?;
    let report = trib_init_report {
        target_id: id_buf(&r.target_id),
        created: r.created,
        adopted_lines: r.adopted_lines,
        upgraded: r.upgraded,
        rebound: r.rebound,
    };
    // SAFETY: not NULL, writable per the caller's contract.
    unsafe { put(report_out, report) };
    Ok(())
}

/// What `trib_drain` did.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct trib_drain_report {
    /// Rounds that committed something.
    pub rounds: u64,
    /// Lines and bytes (with their `\n`s) committed to the target.
    pub lines: u64,
    pub bytes: u64,
    /// Bytes of an uncommitted tail (left by a drain that crashed or failed) that were truncated.
    pub repaired_tail_bytes: u64,
    /// The manifest epoch after the drain.
    pub epoch: u64,
    /// How many journals contributed lines.
    pub journals: usize,
    /// Generations rotated out by managed rotation (including interrupted rotations
    /// this drain completed).
    pub rotations: u64,
}

/// Drain journals into `target` until every line they held when the call started is
/// committed (bounded rounds; the target's lock is released between rounds). The
/// journals are either the `journal_count` paths in `journal_paths`, or every
/// `*.journal` file directly in the folder `spool` (not both: give `journal_count` 0
/// when `spool` is not NULL). With neither, the call only repairs the target (and
/// creates it, with `create`). The target must exist (`trib_init`) unless the
/// options' `create` is set: otherwise `TRIB_E_TARGET_MISSING`. `options` may be NULL for the defaults. A journal path that does
/// not exist is `TRIB_E_NOT_A_JOURNAL` (a drain never creates journals). In a spool,
/// a file that cannot be drained (junk, a foreign or restored journal) does not keep
/// the others from draining: they are drained, then that file's error is returned
/// (the first such file's; its message names it), with `*report_out` saying what was
/// drained. `*report_out` is written on success and with such a refused file's error;
/// after any other error it is left as it was (what earlier rounds committed stays
/// committed).
///
/// # Safety
/// `target` and `spool` must be NULL or NUL-terminated; `journal_paths` NULL or
/// `journal_count` NUL-terminated strings; `options` NULL or readable; `report_out`
/// and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_drain(
    target: *const c_char,
    journal_paths: *const *const c_char,
    journal_count: usize,
    spool: *const c_char,
    options: *const trib_compactor_options,
    report_out: *mut trib_drain_report,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: the caller's contract covers every argument `drain` reads; no stop token.
        unsafe { drain(target, journal_paths, journal_count, spool, options, std::ptr::null(), report_out) }
    })
}

/// `trib_drain` that another thread can cut short with `trib_stop_request(stop)`: a
/// wait for the target's lock ends within about 10 ms with `TRIB_E_LOCK_TIMEOUT`, as if
/// the lock timeout had passed (what earlier rounds committed stays; a round in
/// progress finishes: rounds are bounded by `max_round_ms`). For a caller that cancels
/// (Go's `Drain(ctx)`). `stop` may be NULL (then it is `trib_drain`); a request made
/// before the call makes any wait end at once.
///
/// # Safety
/// `target` and `spool` must be NULL or NUL-terminated; `journal_paths` NULL or
/// `journal_count` NUL-terminated strings; `options` NULL or readable; `stop` NULL or a
/// live `trib_stop`, not freed during the call; `report_out` and `err_out` NULL or
/// writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn trib_drain_stoppable(
    target: *const c_char,
    journal_paths: *const *const c_char,
    journal_count: usize,
    spool: *const c_char,
    options: *const trib_compactor_options,
    stop: *const super::daemon::trib_stop,
    report_out: *mut trib_drain_report,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: the caller's contract covers every argument `drain` reads.
        unsafe { drain(target, journal_paths, journal_count, spool, options, stop, report_out) }
    })
}

/// What `trib_drain` and `trib_drain_stoppable` share.
///
/// # Safety
/// As `trib_drain_stoppable` (without `err_out`).
unsafe fn drain(
    target: *const c_char,
    journal_paths: *const *const c_char,
    journal_count: usize,
    spool: *const c_char,
    options: *const trib_compactor_options,
    stop: *const super::daemon::trib_stop,
    report_out: *mut trib_drain_report,
) -> FfiResult<()> {
    {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let target = unsafe { path_arg(target, "target") }?;
        need(report_out, "report_out")?;
        // SAFETY: NULL or `journal_count` NUL-terminated strings per the caller's contract.
        let paths = unsafe { journal_paths_arg(journal_paths, journal_count) }?;
        let spool = if spool.is_null() {
            None
        } else {
            // SAFETY: not NULL, NUL-terminated per the caller's contract.
            Some(unsafe { path_arg(spool, "spool") }?)
        };
        if spool.is_some() && !paths.is_empty() {
            return Err(Failure::arg("give either `journal_paths` or `spool`, not both"));
        }
        // SAFETY: NULL or a readable options struct per the caller's contract.
        let opts = match unsafe { options.as_ref() } {
            Some(o) => o.to_rust()?,
            None => CompactorOptions::default(),
        };
        // SAFETY: NULL or a live `trib_stop` per the caller's contract.
        let compactor = unsafe { stopped_by(Compactor::new(target, opts)?, stop) }?;
        let (r, refused) = match spool {
            Some(s) => {
                let mut first_refused = None;
                let r = compactor.drain_spool_observed(s, &mut |_| {}, &mut |e| {
                    first_refused.get_or_insert(e);
                })?;
                (r, first_refused)
            }
            None => (compactor.drain_paths(&paths)?, None),
        };
        let report = trib_drain_report {
            rounds: r.rounds,
            lines: r.lines,
            bytes: r.bytes,
            repaired_tail_bytes: r.repaired_tail_bytes,
            epoch: r.epoch,
            journals: r.journals.len(),
            rotations: r.rotations,
        };
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(report_out, report) };
        refused.map_or(Ok(()), |e| Err(e.into()))
    }
}

/// Retire journals — the supported way to remove one: drain each into `target` until
/// it is empty, then delete its files (the journal, `-wal`, `-shm`) while holding its
/// write lock, once every line it ever held is committed. A writer that still has one
/// open gets `TRIB_E_JOURNAL_GONE` on its next append (nothing stored). On success
/// `*retired_out` is `journal_count`. A path that names no file (a journal retired
/// before leaves none) is `TRIB_E_NOT_A_JOURNAL` naming it, after the other journals
/// were retired: `*retired_out` says how many. A journal holding idempotency keys
/// within their retention or processed cursors is refused (`TRIB_E_INVALID_ARGUMENT`,
/// nothing retired): a keyed resend or a processor resuming from its cursor would store
/// lines twice once they are gone (`trib_retire_forgetting_keys` retires it anyway).
/// `options` may be NULL for the defaults.
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `journal_paths` NULL or `journal_count`
/// NUL-terminated strings; `options` NULL or readable; `retired_out` and `err_out`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_retire(
    target: *const c_char,
    journal_paths: *const *const c_char,
    journal_count: usize,
    options: *const trib_compactor_options,
    retired_out: *mut usize,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: the caller's contract is this function's, which `retire_impl` takes.
        unsafe { retire_impl(target, journal_paths, journal_count, options, retired_out, false, std::ptr::null()) }
    })
}

/// As `trib_retire`, and it retires a journal even while it holds idempotency keys within
/// their retention or processed cursors: they are deleted with it, so a keyed resend
/// of its lines, or a processor resuming from its cursor, would store lines twice.
/// Only once its writers can no longer resend and its processor has finished (as
/// `tributary retire --forget-keys`).
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `journal_paths` NULL or `journal_count`
/// NUL-terminated strings; `options` NULL or readable; `retired_out` and `err_out`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_retire_forgetting_keys(
    target: *const c_char,
    journal_paths: *const *const c_char,
    journal_count: usize,
    options: *const trib_compactor_options,
    retired_out: *mut usize,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: the caller's contract is this function's, which `retire_impl` takes.
        unsafe { retire_impl(target, journal_paths, journal_count, options, retired_out, true, std::ptr::null()) }
    })
}

/// `trib_retire` (`forget_keys` false) or `trib_retire_forgetting_keys` (true) that
/// another thread can cut short with `trib_stop_request(stop)` while it waits for the
/// target's lock to drain the journals: the wait ends within about 10 ms with
/// `TRIB_E_LOCK_TIMEOUT`, as if the lock timeout had passed, and the journals that
/// drain was for are not deleted (what was drained stays committed; a journal of an
/// earlier attempt, deleted already, stays retired). A drain in progress finishes
/// (rounds are bounded), and the commit that records a deleted journal as retired
/// still waits for the lock (stopping there would keep its watermark in the manifest
/// for good), bounded by the lock timeout. For a caller that cancels (Go's
/// `Retire(ctx)`, Python's Ctrl-C). `stop` may be NULL.
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `journal_paths` NULL or `journal_count`
/// NUL-terminated strings; `options` NULL or readable; `stop` NULL or a live
/// `trib_stop`, not freed during the call; `retired_out` and `err_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn trib_retire_stoppable(
    target: *const c_char,
    journal_paths: *const *const c_char,
    journal_count: usize,
    options: *const trib_compactor_options,
    forget_keys: bool,
    stop: *const super::daemon::trib_stop,
    retired_out: *mut usize,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: the caller's contract is this function's, which `retire_impl` takes.
        unsafe { retire_impl(target, journal_paths, journal_count, options, retired_out, forget_keys, stop) }
    })
}

/// The body of [`trib_retire`], [`trib_retire_forgetting_keys`] and
/// [`trib_retire_stoppable`].
///
/// # Safety
/// As [`trib_retire_stoppable`].
unsafe fn retire_impl(
    target: *const c_char,
    journal_paths: *const *const c_char,
    journal_count: usize,
    options: *const trib_compactor_options,
    retired_out: *mut usize,
    forget_keys: bool,
    stop: *const super::daemon::trib_stop,
) -> FfiResult<()> {
    // SAFETY: NUL-terminated or NULL per the caller's contract.
    let target = unsafe { path_arg(target, "target") }?;
    need(retired_out, "retired_out")?;
    // SAFETY: NULL or `journal_count` NUL-terminated strings per the caller's contract.
    let paths = unsafe { journal_paths_arg(journal_paths, journal_count) }?;
    // SAFETY: NULL or a readable options struct per the caller's contract.
    let opts = match unsafe { options.as_ref() } {
        Some(o) => o.to_rust()?,
        None => CompactorOptions::default(),
    };
    let r = {
        // SAFETY: NULL or a live `trib_stop` per the caller's contract.
        let c = unsafe { stopped_by(Compactor::new(target, opts)?, stop) }?;
        if forget_keys {
            c.retire_forgetting_keys(&paths)?
        } else {
            c.retire(&paths)?
        }
    };
    // SAFETY: not NULL, writable per the caller's contract.
    unsafe { put(retired_out, r.retired.len()) };
    match r.missing_error() {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// `compactor`, its waits for the lock cut short by `trib_stop_request(stop)` (none
/// for a NULL `stop`): `trib_drain_stoppable`, `trib_retire_stoppable`.
///
/// # Safety
/// `stop` must be NULL or a live `trib_stop`.
unsafe fn stopped_by(compactor: Compactor, stop: *const super::daemon::trib_stop) -> FfiResult<Compactor> {
    if stop.is_null() {
        return Ok(compactor);
    }
    // SAFETY: a live `trib_stop` per this function's contract (its flag is atomic).
    let s = unsafe { handle_ref::<super::daemon::StopBox>(stop, "stop") }?;
    Ok(compactor.stop_when(std::sync::Arc::clone(&s.requested)))
}

/// The `journal_paths` array of `trib_drain` and `trib_retire`, as paths.
///
/// # Safety
/// `journal_paths` must be NULL or point to `journal_count` pointers, each NULL or
/// NUL-terminated.
pub(super) unsafe fn journal_paths_arg(
    journal_paths: *const *const c_char,
    journal_count: usize,
) -> FfiResult<Vec<PathBuf>> {
    // SAFETY: per this function's contract.
    let raw = unsafe { array_arg(journal_paths, journal_count, "journal_paths") }?;
    let mut paths = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        // SAFETY: each entry is NULL or NUL-terminated per this function's contract.
        paths.push(unsafe { path_arg(*p, &format!("journal_paths[{i}]")) }?.to_path_buf());
    }
    Ok(paths)
}

/// Fill `*options_out` with the compactor defaults.
///
/// # Safety
/// `options_out` and `err_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_compactor_options_default(
    options_out: *mut trib_compactor_options,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        need(options_out, "options_out")?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(options_out, trib_compactor_options::from(&CompactorOptions::default())) };
        Ok(())
    })
}
