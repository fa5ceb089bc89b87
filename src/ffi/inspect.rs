//! `trib_verify` and `trib_status`: what a target and a spool hold, without a lock.

use std::ffi::{c_char, c_int, CString};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

use super::boundary::{c_path, ffi_call, free_handle, id_buf, into_handle, need, path_arg, put, Failure, HandleBox};
use super::error::trib_error;
use super::journal::trib_backlog;
use super::TRIB_ID_BUF_LEN;
use crate::StatusReport;

/// The outcome of `trib_verify`.
///
/// Ownership: `problems` is allocated by the library when not NULL; release it with
/// `trib_verify_report_clear` (which is also safe on a report that has none).
#[repr(C)]
#[derive(Debug)]
pub struct trib_verify_report {
    /// True when the target's committed part matches its manifest (length, line count,
    /// running CRC). An uncommitted tail does not make it inconsistent.
    pub consistent: bool,
    pub epoch: u64,
    pub committed_len: u64,
    pub committed_lines: u64,
    /// The target's length now.
    pub target_len: u64,
    /// Bytes beyond `committed_len` (left by a crashed or running drain): reported, not
    /// a failure; the next drain truncates them.
    pub uncommitted_tail_bytes: u64,
    /// How many problems `problems` lists.
    pub problem_count: usize,
    /// NULL when consistent; otherwise the problems, one per line (separated by `\n`),
    /// NUL-terminated UTF-8.
    pub problems: *mut c_char,
    /// The target's current generation (1 until a managed rotation).
    pub generation: u64,
    /// Rotated generations still kept, checked too.
    pub rotated_generations: u64,
}

/// Check `target` against its manifest: length, line count, running CRC. An
/// inconsistent target is reported in `*report_out` (`consistent` false), not as an
/// error; errors are for when the check cannot run (no manifest: `TRIB_E_INVALID_ARG`;
/// corrupt manifest: `TRIB_E_CORRUPT_MANIFEST`; I/O).
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `report_out` and `err_out` NULL or writable.
/// A report written here must be released with `trib_verify_report_clear`.
#[no_mangle]
pub unsafe extern "C" fn trib_verify(
    target: *const c_char,
    report_out: *mut trib_verify_report,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let target = unsafe { path_arg(target, "target") }?;
        need(report_out, "report_out")?;
        let r = crate::verify(target)?;
        let problems = if r.problems.is_empty() {
            ptr::null_mut()
        } else {
            CString::new(r.problems.join("\n").replace('\0', "\\0")).unwrap_or_default().into_raw()
        };
        let report = trib_verify_report {
            consistent: r.is_consistent(),
            epoch: r.epoch,
            committed_len: r.committed_len,
            committed_lines: r.committed_lines,
            target_len: r.target_len,
            uncommitted_tail_bytes: r.uncommitted_tail_bytes,
            problem_count: r.problems.len(),
            problems,
            generation: r.generation,
            rotated_generations: r.rotated_generations,
        };
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(report_out, report) };
        Ok(())
    })
}

/// Release the `problems` string of a verify report and set it to NULL (NULL `report`,
/// or a report without problems, is accepted). Safe to call twice.
///
/// # Safety
/// `report` must be NULL or a report filled by `trib_verify` (or zeroed).
#[no_mangle]
pub unsafe extern "C" fn trib_verify_report_clear(report: *mut trib_verify_report) {
    let _ = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: NULL or a valid report per the caller's contract.
        let Some(r) = (unsafe { report.as_mut() }) else { return };
        if !r.problems.is_null() {
            // SAFETY: allocated by `CString::into_raw` in `trib_verify`, freed once (set to
            // NULL right after).
            drop(unsafe { CString::from_raw(r.problems) });
            r.problems = ptr::null_mut();
        }
        r.problem_count = 0;
    }));
}

/// The committed state of a target and the backlog of each journal in a spool, as read
/// by `trib_status`.
///
/// Thread-safety: immutable; may be read from several threads at once.
///
/// Ownership: created by `trib_status`, released by `trib_status_report_free`; strings it
/// hands out (journal paths) live as long as the report.
pub struct trib_status_report {
    _opaque: [u8; 0],
}

#[repr(C)]
struct StatusBox {
    magic: u64,
    report: StatusReport,
    journal_paths: Vec<CString>,
    /// The manifest's watermarks in journal id order, indexed by
    /// `trib_status_report_watermark` (walking the map to the `index`th each call made
    /// reading them all quadratic: 0.4 s for 10,000).
    watermarks: Vec<crate::Watermark>,
}

impl HandleBox for StatusBox {
    const MAGIC: u64 = 0x7472_6962_5f73_7461; // "trib_sta"
    const NAME: &'static str = "trib_status_report";
    type Opaque = trib_status_report;
}

/// The summary of a status report.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct trib_status_summary {
    /// False before the first drain (no manifest yet): the manifest fields are 0.
    pub has_manifest: bool,
    /// The target's id (32 hex digits and a NUL; empty without a manifest).
    pub target_id: [c_char; TRIB_ID_BUF_LEN],
    pub epoch: u64,
    pub committed_len: u64,
    pub committed_lines: u64,
    /// CRC32 of the first `committed_len` bytes.
    pub committed_crc: u32,
    /// False when the target file does not exist (yet).
    pub target_exists: bool,
    pub target_len: u64,
    /// Journals that ever fed the target (`trib_status_report_watermark`).
    pub watermark_count: usize,
    /// Journals found in the spool (`trib_status_report_journal`).
    pub journal_count: usize,
    /// The target's current generation (1 until a managed rotation; 0 without a
    /// manifest). The committed length, lines and CRC above are this generation's.
    pub generation: u64,
    /// Rotated generations still kept (`<target>.<generation>`).
    pub rotated_generations: usize,
}

/// How far one journal has been drained into the target.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct trib_watermark {
    /// 32 hex digits and a NUL.
    pub journal_id: [c_char; TRIB_ID_BUF_LEN],
    /// Highest seq of this journal committed in the target.
    pub last_seq: u64,
    /// CRC32 of the line at `last_seq`.
    pub crc: u32,
}

/// One journal of the spool given to `trib_status`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct trib_journal_status {
    /// The journal's path, NUL-terminated; owned by the report (valid until
    /// `trib_status_report_free`).
    pub path: *const c_char,
    /// 32 hex digits and a NUL.
    pub journal_id: [c_char; TRIB_ID_BUF_LEN],
    pub backlog: trib_backlog,
    /// The target's watermark for this journal (0 when it never fed the target).
    pub watermark: u64,
}

/// Read the committed state of `target` (its manifest and size) and, if `spool` is not
/// NULL, the backlog of every `*.journal` in that folder. Takes no lock. On success
/// `*report_out` is a new report for `trib_status_report_free`.
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `spool` NULL or NUL-terminated;
/// `report_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_status(
    target: *const c_char,
    spool: *const c_char,
    report_out: *mut *mut trib_status_report,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let target = unsafe { path_arg(target, "target") }?;
        need(report_out, "report_out")?;
        let spool = if spool.is_null() {
            None
        } else {
            // SAFETY: not NULL, NUL-terminated per the caller's contract.
            Some(unsafe { path_arg(spool, "spool") }?)
        };
        let report = crate::status(target, spool)?;
        let journal_paths = report.journals.iter().map(|j| c_path(&j.path)).collect();
        let watermarks = report.manifest.as_ref().map(|m| m.watermarks.values().copied().collect()).unwrap_or_default();
        let handle = into_handle(StatusBox { magic: StatusBox::MAGIC, report, journal_paths, watermarks });
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(report_out, handle) };
        Ok(())
    })
}

/// The summary of a status report.
///
/// # Safety
/// `report` must be NULL or a live report; `summary_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_status_report_summary(
    report: *const trib_status_report,
    summary_out: *mut trib_status_summary,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, report, |r: &StatusBox| {
        need(summary_out, "summary_out")?;
        let m = r.report.manifest.as_ref();
        let summary = trib_status_summary {
            has_manifest: m.is_some(),
            target_id: id_buf(m.map_or("", |m| m.target_id.as_str())),
            epoch: m.map_or(0, |m| m.epoch),
            committed_len: m.map_or(0, |m| m.committed_len),
            committed_lines: m.map_or(0, |m| m.committed_lines),
            committed_crc: m.map_or(0, |m| m.committed_crc),
            target_exists: r.report.target_len.is_some(),
            target_len: r.report.target_len.unwrap_or(0),
            watermark_count: m.map_or(0, |m| m.watermarks.len()),
            journal_count: r.report.journals.len(),
            generation: m.map_or(0, |m| m.generation),
            rotated_generations: m.map_or(0, |m| m.rotated.len()),
        };
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(summary_out, summary) };
        Ok(())
    })
}

/// The format version of the report's manifest: 3 (deltas, the default for new
/// targets), 2 (what builds before 2026-12-04 read), 1 (a target not upgraded yet);
/// 0 when the target has no manifest. (Not a field of `trib_status_summary`: that
/// struct is the caller's, and its size is part of the ABI.)
///
/// # Safety
/// `report` must be NULL or a live report; `format_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_status_report_manifest_format(
    report: *const trib_status_report,
    format_out: *mut u32,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, report, |r: &StatusBox| {
        need(format_out, "format_out")?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(format_out, r.report.manifest_format.unwrap_or(0)) };
        Ok(())
    })
}

/// Watermark `index` (0-based, below `watermark_count`, ordered by journal id) of the
/// target's manifest.
///
/// # Safety
/// `report` must be NULL or a live report; `watermark_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_status_report_watermark(
    report: *const trib_status_report,
    index: usize,
    watermark_out: *mut trib_watermark,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, report, |r: &StatusBox| {
        need(watermark_out, "watermark_out")?;
        let count = r.watermarks.len();
        let w = r
            .watermarks
            .get(index)
            .ok_or_else(|| Failure::arg(format!("watermark index {index} is out of range (count {count})")))?;
        let out = trib_watermark { journal_id: id_buf(&w.journal_id.to_hex()), last_seq: w.last_seq, crc: w.crc };
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(watermark_out, out) };
        Ok(())
    })
}

/// Journal `index` (0-based, below `journal_count`, ordered by path) of the spool.
///
/// # Safety
/// `report` must be NULL or a live report; `journal_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_status_report_journal(
    report: *const trib_status_report,
    index: usize,
    journal_out: *mut trib_journal_status,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, report, |r: &StatusBox| {
        need(journal_out, "journal_out")?;
        let count = r.report.journals.len();
        let (j, path) = r
            .report
            .journals
            .get(index)
            .zip(r.journal_paths.get(index))
            .ok_or_else(|| Failure::arg(format!("journal index {index} is out of range (count {count})")))?;
        let out = trib_journal_status {
            path: path.as_ptr(),
            journal_id: id_buf(&j.journal_id.to_hex()),
            backlog: trib_backlog::from(&j.backlog),
            watermark: j.watermark,
        };
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(journal_out, out) };
        Ok(())
    })
}

/// Release a status report (NULL is accepted and ignored). Paths obtained from it
/// become invalid.
///
/// # Safety
/// `report` must be NULL or a live report, not used again.
#[no_mangle]
pub unsafe extern "C" fn trib_status_report_free(report: *mut trib_status_report) {
    // SAFETY: NULL or a live report, not used again (caller's contract).
    unsafe { free_handle::<StatusBox>(report) }
}
