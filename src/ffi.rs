//! The C ABI: every `trib_*` symbol of `libtributary.so` / `libtributary.a`.
//!
//! `include/tributary.h` is generated from this file alone by the pinned cbindgen
//! (`tests/header_drift.rs` fails when the checked-in header differs; see
//! `docs/c-abi.md`). Everything a C caller needs to know is in the doc comments here,
//! which cbindgen copies into the header.
//!
//! Rules every function follows:
//! - every body runs inside [`guard`] (`catch_unwind`): no panic crosses the boundary,
//!   a panic becomes `TRIB_E_PANIC`, and a handle whose call panicked is poisoned;
//! - a NULL where a value is required, a wrong handle, or an out-of-range option gives
//!   `TRIB_E_INVALID_ARG`, never a crash;
//! - outputs are written only on success; the error goes to the optional `err_out` in
//!   the same call (no thread-local "last error": a goroutine may change OS threads
//!   between two cgo calls);
//! - paths are NUL-terminated byte strings used as-is (`OsStr` from bytes): any
//!   encoding, invalid UTF-8 included.

#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::any::Any;
use std::ffi::{c_char, c_int, CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::{
    Backlog, Compactor, CompactorOptions, Cursor, Durability, Error, ErrorKind, Journal, JournalOptions, Reader,
    StatusReport, TargetId,
};

// ---------------------------------------------------------------------------------------------
// Versions and result codes
// ---------------------------------------------------------------------------------------------

/// Version of this C ABI (types, functions, semantics). It changes whenever the ABI
/// changes incompatibly; compare it with `trib_abi_version()` at start-up to detect a
/// header/library mismatch.
pub const TRIB_ABI_VERSION: u32 = 3;

/// Success.
pub const TRIB_OK: c_int = 0;
/// A line was refused (contains `\n`, or is longer than the maximum); nothing of the
/// call was stored. `trib_error_line_index` tells which line of a batch.
pub const TRIB_E_INVALID_LINE: c_int = 1;
/// An argument is unusable: a NULL pointer where a value is required, a handle of the
/// wrong type, an empty batch or key, an option out of range, a bad reader offset, a
/// target with no manifest (verify).
pub const TRIB_E_INVALID_ARG: c_int = 2;
/// The journal's backlog is at its configured maximum; nothing was stored. Drain it.
pub const TRIB_E_JOURNAL_FULL: c_int = 3;
/// The target's lock was not granted within the lock timeout.
pub const TRIB_E_LOCK_TIMEOUT: c_int = 4;
/// The lock was lost while held; nothing was committed by this round.
pub const TRIB_E_LOCK_LOST: c_int = 5;
/// The target's manifest exists but cannot be trusted (bad CRC or syntax).
pub const TRIB_E_CORRUPT_MANIFEST: c_int = 6;
/// A journal row's CRC does not match its bytes, or a row is missing.
pub const TRIB_E_CORRUPT_JOURNAL_ROW: c_int = 7;
/// The target is shorter than its committed length; nothing was touched.
pub const TRIB_E_TARGET_TRUNCATED: c_int = 8;
/// The target has bytes beyond its committed length that no drain round announced
/// (foreign bytes, or a manifest older than the target); nothing was touched.
pub const TRIB_E_UNEXPECTED_TAIL: c_int = 9;
/// The target does not end in `\n` where it must; nothing was touched.
pub const TRIB_E_TORN_TARGET: c_int = 10;
/// A journal was restored from an older copy or cloned.
pub const TRIB_E_JOURNAL_RESTORED: c_int = 11;
/// A journal was drained into another target (or the target was reset).
pub const TRIB_E_JOURNAL_FOREIGN: c_int = 12;
/// The path is on a filesystem where tributary is unsafe (a journal on a network
/// filesystem, a target on a mount with host-local locks, a world-writable sidecar).
pub const TRIB_E_UNSAFE_FILESYSTEM: c_int = 13;
/// The file is not a tributary journal (or has an unsupported format).
pub const TRIB_E_NOT_A_JOURNAL: c_int = 14;
/// An operating-system I/O error.
pub const TRIB_E_IO: c_int = 15;
/// An SQLite error from a journal.
pub const TRIB_E_SQLITE: c_int = 16;
/// The journal file (or its `-wal`) was removed, renamed or replaced while the handle
/// had it open; nothing of the call was stored. Close the handle and reopen the journal.
pub const TRIB_E_JOURNAL_GONE: c_int = 17;
/// There is no tributary target at this path (never created with `trib_init`, or its
/// shared filesystem is not mounted), or the file there is not the one its sidecar
/// committed to. Nothing was created or touched.
pub const TRIB_E_TARGET_MISSING: c_int = 18;
/// A bug: tributary panicked inside this call. The panic was caught at the boundary;
/// the handle the call used is poisoned (every later call on it fails with this code):
/// close it.
pub const TRIB_E_PANIC: c_int = 100;

/// `durability` of `trib_journal_options`: fsync before an append returns; survives a
/// power cut (the default).
pub const TRIB_DURABILITY_FULL: u32 = 0;
/// `durability` of `trib_journal_options`: survives a crash of the process, not of the
/// machine (SQLite `synchronous=NORMAL`).
pub const TRIB_DURABILITY_NORMAL: u32 = 1;

/// Size of the buffers that hold a journal or target id: 32 hex digits and a NUL.
pub const TRIB_ID_BUF_LEN: usize = 33;

/// Size of a buffer that holds any cursor's text (`trib_cursor_format`): a target id,
/// two 20-digit numbers, two colons and a NUL.
pub const TRIB_CURSOR_TEXT_LEN: usize = 75;

// The result codes ARE the Rust `ErrorKind` values: checked at compile time.
const _: () = {
    assert!(TRIB_E_INVALID_LINE == ErrorKind::InvalidLine as c_int);
    assert!(TRIB_E_INVALID_ARG == ErrorKind::InvalidArgument as c_int);
    assert!(TRIB_E_JOURNAL_FULL == ErrorKind::JournalFull as c_int);
    assert!(TRIB_E_LOCK_TIMEOUT == ErrorKind::LockTimeout as c_int);
    assert!(TRIB_E_LOCK_LOST == ErrorKind::LockLost as c_int);
    assert!(TRIB_E_CORRUPT_MANIFEST == ErrorKind::CorruptManifest as c_int);
    assert!(TRIB_E_CORRUPT_JOURNAL_ROW == ErrorKind::CorruptJournalRow as c_int);
    assert!(TRIB_E_TARGET_TRUNCATED == ErrorKind::TargetTruncated as c_int);
    assert!(TRIB_E_UNEXPECTED_TAIL == ErrorKind::UnexpectedTail as c_int);
    assert!(TRIB_E_TORN_TARGET == ErrorKind::TornTarget as c_int);
    assert!(TRIB_E_JOURNAL_RESTORED == ErrorKind::JournalRestored as c_int);
    assert!(TRIB_E_JOURNAL_FOREIGN == ErrorKind::JournalForeign as c_int);
    assert!(TRIB_E_UNSAFE_FILESYSTEM == ErrorKind::UnsafeFilesystem as c_int);
    assert!(TRIB_E_NOT_A_JOURNAL == ErrorKind::NotAJournal as c_int);
    assert!(TRIB_E_IO == ErrorKind::Io as c_int);
    assert!(TRIB_E_SQLITE == ErrorKind::Sqlite as c_int);
    assert!(TRIB_E_JOURNAL_GONE == ErrorKind::JournalGone as c_int);
    assert!(TRIB_E_TARGET_MISSING == ErrorKind::TargetMissing as c_int);
};

/// Stable snake_case name of a result code (`ErrorKind::name`), NUL-terminated.
fn code_name(code: c_int) -> &'static CStr {
    match code {
        TRIB_OK => c"ok",
        TRIB_E_PANIC => c"panic",
        _ => match kind_of_code(code) {
            Some(kind) => kind_cname(kind),
            None => c"unknown",
        },
    }
}

fn kind_cname(kind: ErrorKind) -> &'static CStr {
    // Exhaustive on purpose: a new ErrorKind must get a code and a name here.
    match kind {
        ErrorKind::InvalidLine => c"invalid_line",
        ErrorKind::InvalidArgument => c"invalid_argument",
        ErrorKind::JournalFull => c"journal_full",
        ErrorKind::LockTimeout => c"lock_timeout",
        ErrorKind::LockLost => c"lock_lost",
        ErrorKind::CorruptManifest => c"corrupt_manifest",
        ErrorKind::CorruptJournalRow => c"corrupt_journal_row",
        ErrorKind::TargetTruncated => c"target_truncated",
        ErrorKind::UnexpectedTail => c"unexpected_tail",
        ErrorKind::TornTarget => c"torn_target",
        ErrorKind::JournalRestored => c"journal_restored",
        ErrorKind::JournalForeign => c"journal_foreign",
        ErrorKind::UnsafeFilesystem => c"unsafe_filesystem",
        ErrorKind::NotAJournal => c"not_a_journal",
        ErrorKind::Io => c"io",
        ErrorKind::Sqlite => c"sqlite",
        ErrorKind::JournalGone => c"journal_gone",
        ErrorKind::TargetMissing => c"target_missing",
    }
}

fn kind_of_code(code: c_int) -> Option<ErrorKind> {
    ErrorKind::ALL.into_iter().find(|k| *k as c_int == code)
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

// Every handle handed to C points to a private `#[repr(C)]` box whose first field is a
// magic word naming its type; the public `trib_*` handle types are opaque markers that
// are never instantiated. Reading the first 8 bytes of any pointer this library handed
// out is in bounds, so a handle of the wrong type (or one already closed, as long as
// its memory was not reused) is refused with TRIB_E_INVALID_ARG instead of trusted.

/// A private box behind an opaque handle type `Opaque`.
trait HandleBox: Sized {
    /// The magic word, the box's first field.
    const MAGIC: u64;
    /// The handle's C name, for messages.
    const NAME: &'static str;
    type Opaque;
}

/// Box `b` and hand it out as an opaque handle.
fn into_handle<B: HandleBox>(b: B) -> *mut B::Opaque {
    Box::into_raw(Box::new(b)).cast()
}

/// The box behind handle `p` (`what` names the parameter for messages).
///
/// # Safety
/// `p` must be NULL or a live handle from this library (of any type), not used mutably
/// by another thread during `'a`.
unsafe fn handle_ref<'a, B: HandleBox>(p: *const B::Opaque, what: &str) -> FfiResult<&'a B> {
    need(p, what)?;
    // SAFETY: every handle this library hands out starts with an aligned u64 magic word
    // (`#[repr(C)]` boxes), so this read is in bounds for any live handle.
    let magic = unsafe { p.cast::<u64>().read() };
    if magic != B::MAGIC {
        return Err(Failure::arg(format!("`{what}` is not a {} (wrong type, or already closed)", B::NAME)));
    }
    // SAFETY: the magic word says this is a live `B` made by `into_handle`.
    Ok(unsafe { &*p.cast::<B>() })
}

/// Like [`handle_ref`], mutable.
///
/// # Safety
/// As [`handle_ref`], and no other reference to the box may exist during `'a`.
unsafe fn handle_mut<'a, B: HandleBox>(p: *mut B::Opaque, what: &str) -> FfiResult<&'a mut B> {
    // SAFETY: forwarded contract.
    unsafe { handle_ref::<B>(p, what) }?;
    // SAFETY: checked above to be a live `B`; exclusive per the caller's contract.
    Ok(unsafe { &mut *p.cast::<B>() })
}

/// Free the box behind handle `p`; NULL and handles of another type are ignored.
///
/// # Safety
/// `p` must be NULL or a live handle from this library, not used again afterwards.
unsafe fn free_handle<B: HandleBox>(p: *mut B::Opaque) {
    let _ = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: forwarded contract.
        if unsafe { handle_ref::<B>(p, B::NAME) }.is_err() {
            return;
        }
        let b = p.cast::<B>();
        // SAFETY: a live `B` (checked above) whose first field is the u64 magic word:
        // clear it, so a later use of this dangling handle is more likely refused.
        unsafe { b.cast::<u64>().write(0) };
        // SAFETY: made by `into_handle` (`Box::into_raw`) as a `B`, freed exactly once
        // (the caller's contract).
        drop(unsafe { Box::from_raw(b) });
    }));
}

/// An error: its result code, a human-readable message that says what to do, and (for
/// `TRIB_E_INVALID_LINE`) which line of the call was refused.
///
/// Ownership: created by the library in the `err_out` of a failed call; the caller owns
/// it and releases it with `trib_error_free`. Immutable: it may be read from any thread.
pub struct trib_error {
    _opaque: [u8; 0],
}

#[repr(C)]
struct ErrorBox {
    magic: u64,
    code: c_int,
    message: CString,
    line_index: i64,
}

impl HandleBox for ErrorBox {
    const MAGIC: u64 = 0x7472_6962_5f65_7272; // "trib_err"
    const NAME: &'static str = "trib_error";
    type Opaque = trib_error;
}

/// A failed call, before it is handed to C.
#[derive(Debug)]
struct Failure {
    code: c_int,
    message: String,
    line_index: i64,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let line_index = match &e {
            Error::InvalidLine { index, .. } => i64::try_from(*index).unwrap_or(i64::MAX),
            _ => -1,
        };
        Failure { code: e.kind() as c_int, message: e.to_string(), line_index }
    }
}

impl Failure {
    /// `TRIB_E_INVALID_ARG`, worded like the Rust `Error::InvalidArgument`.
    fn arg(detail: impl Into<String>) -> Failure {
        Failure::from(Error::InvalidArgument(detail.into()))
    }

    fn panic(payload: &(dyn Any + Send)) -> Failure {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        Failure {
            code: TRIB_E_PANIC,
            message: format!(
                "panic inside tributary (a bug, please report it): {what}; the handle used by this call is poisoned, \
                 close it"
            ),
            line_index: -1,
        }
    }
}

type FfiResult<T> = std::result::Result<T, Failure>;

/// The `err_out` parameter of a call: NULL, or writable storage for a `trib_error *`.
#[derive(Clone, Copy)]
struct ErrOut(*mut *mut trib_error);

impl ErrOut {
    /// # Safety
    /// `p` must be NULL or point to writable storage for a `trib_error *` for the rest of
    /// the call.
    unsafe fn new(p: *mut *mut trib_error) -> ErrOut {
        ErrOut(p)
    }
}

/// Run `body` behind the panic boundary and turn its outcome into a result code,
/// storing an error in `*err_out` (if `err_out` is not NULL) on failure.
fn guard(err_out: ErrOut, body: impl FnOnce() -> FfiResult<()>) -> c_int {
    let err_out = err_out.0;
    let failure = match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return TRIB_OK,
        Ok(Err(f)) => f,
        Err(payload) => Failure::panic(&*payload),
    };
    let code = failure.code;
    if !err_out.is_null() {
        // Building the error cannot panic (interior NULs are replaced, allocation failure
        // aborts), but stay behind the boundary anyway.
        let built = panic::catch_unwind(AssertUnwindSafe(|| {
            let message = CString::new(failure.message.replace('\0', "\\0")).unwrap_or_default();
            into_handle(ErrorBox { magic: ErrorBox::MAGIC, code, message, line_index: failure.line_index })
        }));
        if let Ok(err) = built {
            // SAFETY: not NULL, and writable: the invariant of `ErrOut` (see `ErrOut::new`).
            unsafe { err_out.write(err) };
        }
    }
    code
}

/// Write `value` to a required out-pointer (checked for NULL before any work).
///
/// # Safety
/// `out` must be NULL-checked already and point to writable memory for a `T`.
unsafe fn put<T>(out: *mut T, value: T) {
    // SAFETY: guaranteed by the caller (NULL-checked, writable, properly aligned).
    unsafe { out.write(value) }
}

fn need<T>(p: *const T, what: &str) -> FfiResult<()> {
    if p.is_null() {
        Err(Failure::arg(format!("`{what}` is NULL")))
    } else {
        Ok(())
    }
}

/// A path argument: a NUL-terminated byte string, any encoding.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that outlives `'a`.
unsafe fn path_arg<'a>(p: *const c_char, what: &str) -> FfiResult<&'a Path> {
    need(p, what)?;
    // SAFETY: not NULL (checked above); NUL-terminated and alive per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    if bytes.is_empty() {
        return Err(Failure::arg(format!("`{what}` is an empty path")));
    }
    Ok(Path::new(OsStr::from_bytes(bytes)))
}

/// A byte-slice argument `(ptr, len)`: `(NULL, 0)` is the empty slice.
///
/// # Safety
/// Unless `len` is 0, `ptr` must be NULL or point to `len` readable bytes that outlive `'a`.
unsafe fn bytes_arg<'a>(ptr: *const u8, len: usize, what: &str) -> FfiResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::arg(format!("`{what}` is NULL but its length is {len}")));
    }
    if len > isize::MAX as usize {
        return Err(Failure::arg(format!("`{what}` length {len} is larger than any object can be")));
    }
    // SAFETY: not NULL, `len` bytes readable and alive per the caller's contract, and
    // `len <= isize::MAX` as `from_raw_parts` requires.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// An array argument `(ptr, count)` of `T`: `(NULL, 0)` is the empty array.
///
/// # Safety
/// Unless `count` is 0, `ptr` must be NULL or point to `count` initialised `T`s that
/// outlive `'a`.
unsafe fn array_arg<'a, T>(ptr: *const T, count: usize, what: &str) -> FfiResult<&'a [T]> {
    if count == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::arg(format!("`{what}` is NULL but its count is {count}")));
    }
    if count.checked_mul(std::mem::size_of::<T>()).is_none_or(|b| b > isize::MAX as usize) {
        return Err(Failure::arg(format!("`{what}` count {count} is larger than any array can be")));
    }
    // SAFETY: not NULL, `count` elements readable per the caller's contract, total size
    // checked against isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
}

/// A NUL-terminated copy of a path for handing to C (paths never contain NUL on Unix).
fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// Copy a 32-hex-digit id into a `TRIB_ID_BUF_LEN` buffer, NUL-terminated.
fn id_buf(hex: &str) -> [c_char; TRIB_ID_BUF_LEN] {
    let mut out = [0 as c_char; TRIB_ID_BUF_LEN];
    for (o, b) in out.iter_mut().zip(hex.as_bytes().iter().take(TRIB_ID_BUF_LEN - 1)) {
        *o = *b as c_char;
    }
    out
}

/// The longest duration any `*_ms` option accepts (1000 years): larger values would
/// overflow the engine's clock arithmetic.
const MAX_OPTION_MS: u64 = 1000 * 365 * 24 * 3600 * 1000;

fn ms_option(value: u64, what: &str) -> FfiResult<Duration> {
    if value > MAX_OPTION_MS {
        return Err(Failure::arg(format!("`{what}` is {value} ms, more than the maximum {MAX_OPTION_MS} ms")));
    }
    Ok(Duration::from_millis(value))
}

/// SQLite keeps its busy timeout in an `int` of milliseconds.
fn busy_timeout_option(value: u64, what: &str) -> FfiResult<Duration> {
    if value > i32::MAX as u64 {
        return Err(Failure::arg(format!("`{what}` is {value} ms, more than the maximum {} ms", i32::MAX)));
    }
    Ok(Duration::from_millis(value))
}

/// Run `body` on a handle; a panic inside it poisons the handle (so nothing uses its
/// possibly half-updated state again) and then goes on to [`guard`].
fn poisoning<T>(poisoned: &AtomicBool, what: &str, body: impl FnOnce() -> FfiResult<T>) -> FfiResult<T> {
    if poisoned.load(Ordering::Acquire) {
        return Err(Failure {
            code: TRIB_E_PANIC,
            message: format!("this {what} is poisoned: an earlier call on it panicked; close it"),
            line_index: -1,
        });
    }
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            poisoned.store(true, Ordering::Release);
            panic::resume_unwind(payload)
        }
    }
}

/// Release an error returned through an `err_out` (NULL is accepted and ignored). The
/// message pointer obtained from `trib_error_message` becomes invalid.
///
/// # Safety
/// `err` must be NULL or an error returned through an `err_out` and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn trib_error_free(err: *mut trib_error) {
    // SAFETY: NULL or a live error, not used again (caller's contract).
    unsafe { free_handle::<ErrorBox>(err) }
}

/// The result code of `err` (the same code the failing call returned), or
/// `TRIB_E_INVALID_ARG` if `err` is NULL.
///
/// # Safety
/// `err` must be NULL or a live error from this library.
#[no_mangle]
pub unsafe extern "C" fn trib_error_kind(err: *const trib_error) -> c_int {
    // SAFETY: NULL or a live error (caller's contract).
    match unsafe { handle_ref::<ErrorBox>(err, "err") } {
        Ok(e) => e.code,
        Err(_) => TRIB_E_INVALID_ARG,
    }
}

/// The error's message: NUL-terminated UTF-8 that says what happened and what to do.
/// The string is owned by `err` and valid until `trib_error_free(err)`. Never NULL: for
/// a NULL `err` it is a static string saying so.
///
/// # Safety
/// `err` must be NULL or a live error from this library.
#[no_mangle]
pub unsafe extern "C" fn trib_error_message(err: *const trib_error) -> *const c_char {
    // SAFETY: NULL or a live error (caller's contract).
    match unsafe { handle_ref::<ErrorBox>(err, "err") } {
        Ok(e) => e.message.as_ptr(),
        Err(_) => c"(no error: the trib_error pointer is NULL or not a trib_error)".as_ptr(),
    }
}

/// For `TRIB_E_INVALID_LINE`: the 0-based index of the refused line within the call
/// (always 0 for single-line appends). -1 for every other kind and for NULL.
///
/// # Safety
/// `err` must be NULL or a live error from this library.
#[no_mangle]
pub unsafe extern "C" fn trib_error_line_index(err: *const trib_error) -> i64 {
    // SAFETY: NULL or a live error (caller's contract).
    match unsafe { handle_ref::<ErrorBox>(err, "err") } {
        Ok(e) => e.line_index,
        Err(_) => -1,
    }
}

/// The stable snake_case name of a result code (`"ok"`, `"journal_full"`, `"panic"`,
/// ...; `"unknown"` for a code this library does not define). Static storage: never
/// free it.
#[no_mangle]
pub extern "C" fn trib_result_name(code: c_int) -> *const c_char {
    code_name(code).as_ptr()
}

/// The library's version (`"0.1.0"`), NUL-terminated, static storage.
#[no_mangle]
pub extern "C" fn trib_version() -> *const c_char {
    const V: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("the crate version contains a NUL byte"),
    };
    V.as_ptr()
}

/// The ABI version the library was built with; equal to `TRIB_ABI_VERSION` of the
/// header it was built with.
#[no_mangle]
pub extern "C" fn trib_abi_version() -> u32 {
    TRIB_ABI_VERSION
}

/// For tests of bindings: panics inside the library on purpose and so always returns
/// `TRIB_E_PANIC` (with an error in `*err_out` if `err_out` is not NULL), proving that
/// the panic boundary holds. Harmless; never needed in production.
///
/// # Safety
/// `err_out` must be NULL or point to writable storage for a `trib_error *`.
#[no_mangle]
pub unsafe extern "C" fn trib_debug_panic(err_out: *mut *mut trib_error) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || panic!("trib_debug_panic was called"))
}

// ---------------------------------------------------------------------------------------------
// Journal
// ---------------------------------------------------------------------------------------------

/// An open journal (the writer side: a SQLite WAL file on the writer host's local disk).
///
/// Thread-safety: may be used from several threads at once (it is `Send + Sync`):
/// concurrent appends on one handle share fsyncs (group commit), each returning when
/// its own lines are durable. Several handles, in one or several processes, may open
/// the same journal file.
///
/// Ownership: created by `trib_journal_open`, released by `trib_journal_close`, which
/// must not run while another thread is still using the handle.
pub struct trib_journal {
    _opaque: [u8; 0],
}

#[repr(C)]
struct JournalBox {
    magic: u64,
    poisoned: AtomicBool,
    inner: Journal,
}

impl HandleBox for JournalBox {
    const MAGIC: u64 = 0x7472_6962_5f6a_726e; // "trib_jrn"
    const NAME: &'static str = "trib_journal";
    type Opaque = trib_journal;
}

/// Options for `trib_journal_open`. Fill it with `trib_journal_options_default` and
/// change the fields you need (passing NULL options means the defaults).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct trib_journal_options {
    /// `TRIB_DURABILITY_FULL` (default) or `TRIB_DURABILITY_NORMAL`.
    pub durability: u32,
    /// Longest accepted line in bytes, without the `\n` (default 1 MiB; at least 1).
    pub max_line_bytes: usize,
    /// Refuse appends once the undrained backlog would exceed this many bytes
    /// (`TRIB_E_JOURNAL_FULL`). 0 (default): no limit.
    pub max_backlog_bytes: u64,
    /// With `max_backlog_bytes`: wait up to this long for a drain to make room before
    /// failing with `TRIB_E_JOURNAL_FULL`. 0 (default): fail at once.
    pub full_wait_ms: u64,
    /// How long an idempotency key of `trib_journal_append_keyed` is remembered
    /// (default 7 days).
    pub key_retention_ms: u64,
    /// How long to wait for another process's SQLite write lock on this journal
    /// (default 30 s; at most 2147483647).
    pub busy_timeout_ms: u64,
    /// Accept a journal on a network filesystem (only if it really is host-local).
    /// Default false.
    pub allow_network_fs: bool,
}

impl From<&JournalOptions> for trib_journal_options {
    fn from(o: &JournalOptions) -> Self {
        trib_journal_options {
            durability: match o.durability {
                Durability::Full => TRIB_DURABILITY_FULL,
                Durability::Normal => TRIB_DURABILITY_NORMAL,
            },
            max_line_bytes: o.max_line_bytes,
            max_backlog_bytes: o.max_backlog_bytes.unwrap_or(0),
            full_wait_ms: o.full_wait.map_or(0, |d| d.as_millis() as u64),
            key_retention_ms: o.key_retention.as_millis() as u64,
            busy_timeout_ms: o.busy_timeout.as_millis() as u64,
            allow_network_fs: o.allow_network_fs,
        }
    }
}

impl trib_journal_options {
    fn to_rust(self) -> FfiResult<JournalOptions> {
        let durability = match self.durability {
            TRIB_DURABILITY_FULL => Durability::Full,
            TRIB_DURABILITY_NORMAL => Durability::Normal,
            other => {
                return Err(Failure::arg(format!(
                    "`durability` is {other}; use TRIB_DURABILITY_FULL (0) or TRIB_DURABILITY_NORMAL (1)"
                )))
            }
        };
        if self.max_line_bytes == 0 {
            return Err(Failure::arg("`max_line_bytes` must be at least 1"));
        }
        Ok(JournalOptions {
            durability,
            max_line_bytes: self.max_line_bytes,
            max_backlog_bytes: (self.max_backlog_bytes > 0).then_some(self.max_backlog_bytes),
            full_wait: match self.full_wait_ms {
                0 => None,
                ms => Some(ms_option(ms, "full_wait_ms")?),
            },
            key_retention: ms_option(self.key_retention_ms, "key_retention_ms")?,
            busy_timeout: busy_timeout_option(self.busy_timeout_ms, "busy_timeout_ms")?,
            allow_network_fs: self.allow_network_fs,
            ..JournalOptions::default()
        })
    }
}

/// What is waiting in a journal (`trib_journal_backlog`, `trib_status_report_journal`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct trib_backlog {
    /// Lines appended and not yet drained.
    pub lines: u64,
    /// Their bytes (without `\n`s).
    pub bytes: u64,
    /// When the oldest waiting line was appended, in ms since the Unix epoch; 0 when no
    /// line is waiting.
    pub oldest_append_ms: i64,
    /// Highest seq ever assigned (0 for a journal never written to).
    pub last_seq: u64,
    /// Highest seq recorded as drained.
    pub drained_seq: u64,
}

impl From<&Backlog> for trib_backlog {
    fn from(b: &Backlog) -> Self {
        trib_backlog {
            lines: b.lines,
            bytes: b.bytes,
            oldest_append_ms: b.oldest_append_ms.unwrap_or(0),
            last_seq: b.last_seq,
            drained_seq: b.drained_seq,
        }
    }
}

/// A byte string `(ptr, len)`, e.g. one line of a batch. `(NULL, 0)` is the empty string.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct trib_slice {
    pub ptr: *const u8,
    pub len: usize,
}

/// # Safety
/// `j` must be NULL or a handle from this library that is not closed.
unsafe fn journal_ref<'a>(j: *const trib_journal) -> FfiResult<&'a JournalBox> {
    // SAFETY: forwarded contract.
    unsafe { handle_ref::<JournalBox>(j, "journal") }
}

/// Fill `*options_out` with the defaults (durability full, 1 MiB lines, no backlog
/// limit, fail at once when full, keys kept 7 days, 30 s busy timeout, local disks only).
///
/// # Safety
/// `options_out` must be NULL or writable; `err_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_options_default(
    options_out: *mut trib_journal_options,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        need(options_out, "options_out")?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(options_out, trib_journal_options::from(&JournalOptions::default())) };
        Ok(())
    })
}

/// Open (creating if needed, mode 0600) the journal at `path`; `options` may be NULL for
/// the defaults. On success `*journal_out` is a new handle for `trib_journal_close`.
///
/// # Safety
/// `path` must be NULL or NUL-terminated; `options` NULL or readable; `journal_out` and
/// `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_open(
    path: *const c_char,
    options: *const trib_journal_options,
    journal_out: *mut *mut trib_journal,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let path = unsafe { path_arg(path, "path") }?;
        need(journal_out, "journal_out")?;
        // SAFETY: NULL or a readable options struct per the caller's contract.
        let opts = match unsafe { options.as_ref() } {
            Some(o) => o.to_rust()?,
            None => JournalOptions::default(),
        };
        let inner = Journal::open(path, opts)?;
        let handle = into_handle(JournalBox { magic: JournalBox::MAGIC, poisoned: AtomicBool::new(false), inner });
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(journal_out, handle) };
        Ok(())
    })
}

/// Close a journal handle (NULL is accepted and ignored). Every line whose append
/// returned `TRIB_OK` is already durable; closing adds nothing to that.
///
/// # Safety
/// `journal` must be NULL or an open handle that no other thread is using, and it must
/// not be used again.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_close(journal: *mut trib_journal) {
    // SAFETY: NULL or a live handle no other thread uses, not used again (caller's contract).
    unsafe { free_handle::<JournalBox>(journal) }
}

/// Append one line (`len` bytes at `line`, without `\n`; `(NULL, 0)` is the empty line).
/// Returns once it is durable; `*seq_out` (if not NULL) gets its seq. A line with `\n`
/// or longer than `max_line_bytes` gives `TRIB_E_INVALID_LINE` and stores nothing.
///
/// # Safety
/// `journal` must be NULL or an open handle; `line` NULL or `len` readable bytes;
/// `seq_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_append(
    journal: *const trib_journal,
    line: *const u8,
    len: usize,
    seq_out: *mut u64,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NULL or a live handle per the caller's contract.
        let j = unsafe { journal_ref(journal) }?;
        // SAFETY: NULL or `len` readable bytes per the caller's contract.
        let line = unsafe { bytes_arg(line, len, "line") }?;
        let seq = poisoning(&j.poisoned, "journal", || Ok(j.inner.append(line)?))?;
        if !seq_out.is_null() {
            // SAFETY: not NULL, writable per the caller's contract.
            unsafe { put(seq_out, seq) };
        }
        Ok(())
    })
}

/// Append `count` lines all-or-nothing in one transaction; they get consecutive seqs,
/// the first of which goes to `*first_seq_out` (if not NULL). One bad line refuses the
/// whole batch (`TRIB_E_INVALID_LINE`, `trib_error_line_index` tells which). An empty
/// batch (`count` 0) is `TRIB_E_INVALID_ARG`: it has no first seq.
///
/// # Safety
/// `journal` must be NULL or an open handle; `lines` NULL or `count` readable slices,
/// each NULL or pointing to `len` readable bytes; `first_seq_out` and `err_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_append_batch(
    journal: *const trib_journal,
    lines: *const trib_slice,
    count: usize,
    first_seq_out: *mut u64,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NULL or a live handle per the caller's contract.
        let j = unsafe { journal_ref(journal) }?;
        if count == 0 {
            return Err(Failure::arg("the batch is empty (`count` is 0): it has no first seq"));
        }
        // SAFETY: NULL or `count` readable slices per the caller's contract.
        let slices = unsafe { array_arg(lines, count, "lines") }?;
        let mut batch: Vec<&[u8]> = Vec::with_capacity(slices.len());
        for (i, s) in slices.iter().enumerate() {
            // SAFETY: each slice is NULL or `len` readable bytes per the caller's contract.
            batch.push(unsafe { bytes_arg(s.ptr, s.len, &format!("lines[{i}].ptr")) }?);
        }
        let first = poisoning(&j.poisoned, "journal", || Ok(j.inner.append_batch(&batch)?))?;
        if !first_seq_out.is_null() {
            // SAFETY: not NULL, writable per the caller's contract.
            unsafe { put(first_seq_out, first) };
        }
        Ok(())
    })
}

/// Append a line once per idempotency key: a retry with a key seen within the key
/// retention window stores nothing and gives the first call's seq. The key is any
/// non-empty byte string (an empty key is `TRIB_E_INVALID_ARG`).
///
/// # Safety
/// `journal` must be NULL or an open handle; `key` NULL or `key_len` readable bytes;
/// `line` NULL or `line_len` readable bytes; `seq_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_append_keyed(
    journal: *const trib_journal,
    key: *const u8,
    key_len: usize,
    line: *const u8,
    line_len: usize,
    seq_out: *mut u64,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NULL or a live handle per the caller's contract.
        let j = unsafe { journal_ref(journal) }?;
        // SAFETY: NULL or `key_len` readable bytes per the caller's contract.
        let key = unsafe { bytes_arg(key, key_len, "key") }?;
        // SAFETY: NULL or `line_len` readable bytes per the caller's contract.
        let line = unsafe { bytes_arg(line, line_len, "line") }?;
        let seq = poisoning(&j.poisoned, "journal", || Ok(j.inner.append_keyed(key, line)?))?;
        if !seq_out.is_null() {
            // SAFETY: not NULL, writable per the caller's contract.
            unsafe { put(seq_out, seq) };
        }
        Ok(())
    })
}

/// What is waiting in this journal, and its seq counters.
///
/// # Safety
/// `journal` must be NULL or an open handle; `backlog_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_backlog(
    journal: *const trib_journal,
    backlog_out: *mut trib_backlog,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NULL or a live handle per the caller's contract.
        let j = unsafe { journal_ref(journal) }?;
        need(backlog_out, "backlog_out")?;
        let b = poisoning(&j.poisoned, "journal", || Ok(j.inner.backlog()?))?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(backlog_out, trib_backlog::from(&b)) };
        Ok(())
    })
}

/// The journal's random 128-bit id as 32 lowercase hex digits and a NUL, written to
/// `buf`, which must hold at least `TRIB_ID_BUF_LEN` (33) bytes.
///
/// # Safety
/// `journal` must be NULL or an open handle; `buf` NULL or `buf_len` writable bytes;
/// `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_journal_id(
    journal: *const trib_journal,
    buf: *mut c_char,
    buf_len: usize,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NULL or a live handle per the caller's contract.
        let j = unsafe { journal_ref(journal) }?;
        need(buf, "buf")?;
        if buf_len < TRIB_ID_BUF_LEN {
            return Err(Failure::arg(format!("`buf_len` is {buf_len}, at least {TRIB_ID_BUF_LEN} is needed")));
        }
        let id = id_buf(&j.inner.id().to_hex());
        // SAFETY: `buf` is not NULL and has at least TRIB_ID_BUF_LEN writable bytes
        // (checked above, caller's contract); `id` does not overlap it.
        unsafe { ptr::copy_nonoverlapping(id.as_ptr(), buf, TRIB_ID_BUF_LEN) };
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Drain
// ---------------------------------------------------------------------------------------------

/// Options for `trib_drain`. Fill it with `trib_compactor_options_default` and change
/// the fields you need (passing NULL options means the defaults).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct trib_compactor_options {
    /// Most bytes one round writes (default 64 MiB; at least 1). Also the longest
    /// uncommitted tail a round repairs.
    pub max_round_bytes: u64,
    /// Stop reading new lines into a round after this long (default 2000 ms).
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
            max_round_time_ms: o.max_round_time.as_millis() as u64,
            lock_timeout_ms: o.lock_timeout.as_millis() as u64,
            max_line_bytes: o.max_line_bytes,
            journal_busy_timeout_ms: o.journal.busy_timeout.as_millis() as u64,
            allow_network_fs: o.journal.allow_network_fs,
            rotate_bytes: o.rotate_bytes.unwrap_or(0),
            rotate_lines: o.rotate_lines.unwrap_or(0),
            retain_generations: o.retain_generations.unwrap_or(0),
            create: o.create,
        }
    }
}

impl trib_compactor_options {
    fn to_rust(self) -> FfiResult<CompactorOptions> {
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
            max_line_bytes: self.max_line_bytes,
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
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let target = unsafe { path_arg(target, "target") }?;
        need(report_out, "report_out")?;
        // SAFETY: NULL or a readable options struct per the caller's contract.
        let opts = match unsafe { options.as_ref() } {
            Some(o) => o.to_rust()?,
            None => CompactorOptions::default(),
        };
        let r = Compactor::new(target, opts)?.init()?;
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
    })
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
    /// Bytes of an uncommitted tail (left by a crashed drain) that were truncated.
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
/// not exist is `TRIB_E_NOT_A_JOURNAL` (a drain never creates journals).
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
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
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
        let compactor = Compactor::new(target, opts)?;
        let r = match spool {
            Some(s) => compactor.drain_spool(s)?,
            None => compactor.drain_paths(&paths)?,
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
        Ok(())
    })
}

/// Retire journals — the supported way to remove one: drain each into `target` until
/// it is empty, then delete its files (the journal, `-wal`, `-shm`) while holding its
/// write lock, once every line it ever held is committed. A writer that still has one
/// open gets `TRIB_E_JOURNAL_GONE` on its next append (nothing stored). On success
/// `*retired_out` is `journal_count`. `options` may be NULL for the defaults.
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
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
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
        let r = Compactor::new(target, opts)?.retire(&paths)?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(retired_out, r.retired.len()) };
        Ok(())
    })
}

/// The `journal_paths` array of `trib_drain` and `trib_retire`, as paths.
///
/// # Safety
/// `journal_paths` must be NULL or point to `journal_count` pointers, each NULL or
/// NUL-terminated.
unsafe fn journal_paths_arg(journal_paths: *const *const c_char, journal_count: usize) -> FfiResult<Vec<PathBuf>> {
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
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        need(options_out, "options_out")?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(options_out, trib_compactor_options::from(&CompactorOptions::default())) };
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Verify
// ---------------------------------------------------------------------------------------------

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
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
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

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

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

/// # Safety
/// `r` must be NULL or a live report.
unsafe fn status_ref<'a>(r: *const trib_status_report) -> FfiResult<&'a StatusBox> {
    // SAFETY: forwarded contract.
    unsafe { handle_ref::<StatusBox>(r, "report") }
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
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
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
        let handle = into_handle(StatusBox { magic: StatusBox::MAGIC, report, journal_paths });
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
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NULL or a live report per the caller's contract.
        let r = unsafe { status_ref(report) }?;
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
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NULL or a live report per the caller's contract.
        let r = unsafe { status_ref(report) }?;
        need(watermark_out, "watermark_out")?;
        let count = r.report.manifest.as_ref().map_or(0, |m| m.watermarks.len());
        let w = r
            .report
            .manifest
            .as_ref()
            .and_then(|m| m.watermarks.values().nth(index))
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
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NULL or a live report per the caller's contract.
        let r = unsafe { status_ref(report) }?;
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

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

/// A reading position in a target: a generation of it, the byte offset of a line's
/// start in that generation, and the id of the target it belongs to.
///
/// `target_id` is the target's id (32 hex digits and a NUL, as `trib_status` reports
/// it), or the empty string for a cursor that names no target: the very beginning (all
/// zero: `trib_cursor c = {0};` is the oldest generation still kept, on any target), a
/// legacy cursor (two numbers kept by an earlier version, or the text
/// `generation:offset`), or the position of a reader of a target that was never drained
/// (it learns the id when the manifest appears). A reader refuses a cursor whose
/// `target_id` is another target's (`TRIB_E_INVALID_ARG`, reading nothing); a cursor
/// without one cannot be checked.
///
/// Text form (`trib_cursor_format`, `trib_cursor_parse`):
/// `<target_id>:<generation>:<offset>`, or `<generation>:<offset>` without an id.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct trib_cursor {
    /// The generation: 1 until the first managed rotation, one more per rotation; 0
    /// only at the very beginning (with offset 0).
    pub generation: u64,
    /// Byte offset of a line's start within that generation.
    pub offset: u64,
    /// The target's id (32 hex digits) and a NUL, or "" (see above).
    pub target_id: [c_char; TRIB_ID_BUF_LEN],
}

impl trib_cursor {
    fn from_rust(c: &Cursor) -> trib_cursor {
        trib_cursor {
            generation: c.generation,
            offset: c.offset,
            target_id: id_buf(&c.target_id.map(|id| id.to_hex()).unwrap_or_default()),
        }
    }

    fn to_rust(self) -> FfiResult<Cursor> {
        let bytes: Vec<u8> = self.target_id.iter().map(|&c| c as u8).take_while(|&b| b != 0).collect();
        if bytes.len() == TRIB_ID_BUF_LEN {
            return Err(Failure::arg("the cursor's `target_id` is not NUL-terminated"));
        }
        let target_id = if bytes.is_empty() {
            None
        } else {
            let text = String::from_utf8_lossy(&bytes);
            Some(TargetId::from_hex(&text).ok_or_else(|| {
                Failure::arg(format!("the cursor's `target_id` `{text}` is not 32 hex digits (nor empty)"))
            })?)
        };
        Ok(Cursor { generation: self.generation, offset: self.offset, target_id })
    }
}

/// A reader of a target's committed lines, from a cursor: a generation of the target
/// and a byte offset in it. It never shows a byte beyond what the manifest committed,
/// so never a torn or uncommitted tail, and it goes on from a rotated generation
/// (`<target>.<generation>`) into the next one.
///
/// Thread-safety: NOT safe to use from several threads at once; it may be moved to
/// another thread between calls (use one reader per thread; many readers may read the
/// same target).
///
/// Ownership: created by `trib_reader_open`, released by `trib_reader_close`. The line
/// memory handed out by `trib_reader_next` belongs to the reader.
pub struct trib_reader {
    _opaque: [u8; 0],
}

#[repr(C)]
struct ReaderBox {
    magic: u64,
    poisoned: AtomicBool,
    inner: Reader,
    /// The last line returned, followed by a NUL byte.
    line: Vec<u8>,
}

impl HandleBox for ReaderBox {
    const MAGIC: u64 = 0x7472_6962_5f72_6472; // "trib_rdr"
    const NAME: &'static str = "trib_reader";
    type Opaque = trib_reader;
}

/// # Safety
/// `r` must be NULL or a live reader that no other thread is mutating.
unsafe fn reader_ref<'a>(r: *const trib_reader) -> FfiResult<&'a ReaderBox> {
    // SAFETY: forwarded contract.
    unsafe { handle_ref::<ReaderBox>(r, "reader") }
}

/// # Safety
/// `r` must be NULL or a live reader that no other thread is using.
unsafe fn reader_mut<'a>(r: *mut trib_reader) -> FfiResult<&'a mut ReaderBox> {
    // SAFETY: forwarded contract.
    unsafe { handle_mut::<ReaderBox>(r, "reader") }
}

/// Open a reader of `target` at byte `offset` of its current generation (0, or the start
/// of a committed line). An offset beyond the committed length or not at a line start is
/// `TRIB_E_INVALID_ARG`. A target that was never drained has no committed lines yet
/// (the reader waits for them). To resume where an earlier reader stopped, across
/// managed rotations too, use `trib_reader_open_at` with its `trib_reader_cursor`.
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `reader_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_open(
    target: *const c_char,
    offset: u64,
    reader_out: *mut *mut trib_reader,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let target = unsafe { path_arg(target, "target") }?;
        need(reader_out, "reader_out")?;
        let inner = Reader::open(target, offset)?;
        let handle =
            into_handle(ReaderBox { magic: ReaderBox::MAGIC, poisoned: AtomicBool::new(false), inner, line: vec![] });
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(reader_out, handle) };
        Ok(())
    })
}

/// Open a reader of `target` at a cursor `(generation, offset)` kept from
/// `trib_reader_cursor`. `(0, 0)` is the very beginning: the oldest generation still
/// kept. A generation that is no longer kept, or an offset that is not the start of a
/// committed line of it, is an error.
///
/// Legacy: two numbers do not say which target they were kept for, so nothing stops a
/// cursor of another target from being used here (and skipping lines). Keep a
/// `trib_cursor` (`trib_reader_position`) and use `trib_reader_open_cursor` instead.
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `reader_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_open_at(
    target: *const c_char,
    generation: u64,
    offset: u64,
    reader_out: *mut *mut trib_reader,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let target = unsafe { path_arg(target, "target") }?;
        need(reader_out, "reader_out")?;
        if generation == 0 && offset != 0 {
            return Err(Failure::arg(format!(
                "cursor (0, {offset}): generation 0 means the oldest kept generation and needs offset 0"
            )));
        }
        let inner = Reader::open_at(target, Cursor::at(generation, offset))?;
        let handle =
            into_handle(ReaderBox { magic: ReaderBox::MAGIC, poisoned: AtomicBool::new(false), inner, line: vec![] });
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(reader_out, handle) };
        Ok(())
    })
}

/// Open a reader of `target` at `cursor`, kept from `trib_reader_position` (or
/// `trib_reader_line_start`, or `trib_cursor_parse` of a kept text). An all-zero cursor
/// is the very beginning: the oldest generation still kept.
///
/// A cursor whose `target_id` is another target's is `TRIB_E_INVALID_ARG` ("cursor ...
/// belongs to target ..., but ... is target ...") and nothing is read: a cursor kept
/// for one target cannot be used on another. A cursor with an empty `target_id` is not
/// checked (legacy). A generation that is no longer kept, or an offset that is not the
/// start of a committed line of it, is `TRIB_E_INVALID_ARG` too.
///
/// # Safety
/// `target` must be NULL or NUL-terminated; `cursor` NULL or readable; `reader_out` and
/// `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_open_cursor(
    target: *const c_char,
    cursor: *const trib_cursor,
    reader_out: *mut *mut trib_reader,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let target = unsafe { path_arg(target, "target") }?;
        need(cursor, "cursor")?;
        need(reader_out, "reader_out")?;
        // SAFETY: not NULL (checked above) and readable per the caller's contract.
        let cursor = unsafe { cursor.read() }.to_rust()?;
        let inner = Reader::open_at(target, cursor)?;
        let handle =
            into_handle(ReaderBox { magic: ReaderBox::MAGIC, poisoned: AtomicBool::new(false), inner, line: vec![] });
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(reader_out, handle) };
        Ok(())
    })
}

/// Poll interval while `trib_reader_next` waits for new committed lines.
const READER_POLL: Duration = Duration::from_millis(50);

/// The next committed line. On success `*has_line_out` says whether there was one; if
/// so, `*line_out`/`*len_out` are its bytes without the `\n` (never NULL, even for an
/// empty line; followed by a NUL byte not counted in `len`, for convenience: the line
/// itself may contain NULs). That memory belongs to the reader and stays valid until the
/// next call on this reader or `trib_reader_close`; copy what you keep. Without a line,
/// `*line_out` is NULL and `*len_out` 0.
///
/// At the committed end, the call waits up to `wait_ms` for a drain to commit more
/// (re-reading the manifest every 50 ms); 0 returns at once. A long wait cannot be
/// interrupted: follow a target by calling again with a short wait.
///
/// # Safety
/// `reader` must be NULL or an open reader that no other thread is using;
/// `has_line_out`, `line_out`, `len_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_next(
    reader: *mut trib_reader,
    wait_ms: u64,
    has_line_out: *mut bool,
    line_out: *mut *const u8,
    len_out: *mut usize,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NULL or a live reader used by this thread only, per the caller's contract.
        let r = unsafe { reader_mut(reader) }?;
        need(has_line_out, "has_line_out")?;
        need(line_out, "line_out")?;
        need(len_out, "len_out")?;
        let wait = ms_option(wait_ms, "wait_ms")?;
        let ReaderBox { poisoned, inner, line, .. } = r;
        let next = poisoning(poisoned, "reader", || {
            let deadline = Instant::now().checked_add(wait);
            loop {
                if let Some(l) = inner.next_line()? {
                    return Ok(Some(l));
                }
                let now = Instant::now();
                let left = match deadline {
                    Some(d) if now >= d => return Ok(None),
                    Some(d) => d - now,
                    None => READER_POLL,
                };
                std::thread::sleep(READER_POLL.min(left));
            }
        })?;
        let (has, p, n) = match next {
            Some(mut l) => {
                let n = l.len();
                l.push(0);
                *line = l;
                (true, line.as_ptr(), n)
            }
            None => (false, ptr::null(), 0),
        };
        // SAFETY: the three pointers are not NULL (checked above) and writable per the
        // caller's contract.
        unsafe {
            put(has_line_out, has);
            put(line_out, p);
            put(len_out, n);
        }
        Ok(())
    })
}

/// The byte offset of the next line within the generation being read (see
/// `trib_reader_cursor` for a position that survives managed rotations).
///
/// # Safety
/// `reader` must be NULL or an open reader; `offset_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_offset(
    reader: *const trib_reader,
    offset_out: *mut u64,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NULL or a live reader per the caller's contract.
        let r = unsafe { reader_ref(reader) }?;
        need(offset_out, "offset_out")?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(offset_out, r.inner.offset()) };
        Ok(())
    })
}

/// Where the next line starts: the generation being read and the byte offset in it
/// (without the target's id: see `trib_reader_position`, which gives a cursor that a
/// reader of another target refuses).
///
/// # Safety
/// `reader` must be NULL or an open reader; `generation_out`, `offset_out` and `err_out`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_cursor(
    reader: *const trib_reader,
    generation_out: *mut u64,
    offset_out: *mut u64,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NULL or a live reader per the caller's contract.
        let r = unsafe { reader_ref(reader) }?;
        need(generation_out, "generation_out")?;
        need(offset_out, "offset_out")?;
        let c = r.inner.cursor();
        // SAFETY: both not NULL, writable per the caller's contract.
        unsafe {
            put(generation_out, c.generation);
            put(offset_out, c.offset);
        }
        Ok(())
    })
}

/// Where the next line starts, as a `trib_cursor` with the target's id (empty until the
/// target's first drain): keep it to resume later with `trib_reader_open_cursor`. At
/// the end of a generation the reader knows was rotated, it is the start of the next
/// generation (`generation + 1`, offset 0).
///
/// # Safety
/// `reader` must be NULL or an open reader; `cursor_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_position(
    reader: *const trib_reader,
    cursor_out: *mut trib_cursor,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NULL or a live reader per the caller's contract.
        let r = unsafe { reader_ref(reader) }?;
        need(cursor_out, "cursor_out")?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(cursor_out, trib_cursor::from_rust(&r.inner.cursor())) };
        Ok(())
    })
}

/// Where the line last returned by `trib_reader_next` starts: its generation, the
/// offset of its first byte, and the target's id. This is the line's identity for
/// results keyed by their source line (the exactly-once pipeline pattern): the same
/// whether the line was read before or after a rotation of its generation (a cursor
/// taken before reading the line is not). `TRIB_E_INVALID_ARG` if the reader has
/// returned no line yet.
///
/// # Safety
/// `reader` must be NULL or an open reader; `cursor_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_line_start(
    reader: *const trib_reader,
    cursor_out: *mut trib_cursor,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        // SAFETY: NULL or a live reader per the caller's contract.
        let r = unsafe { reader_ref(reader) }?;
        need(cursor_out, "cursor_out")?;
        let start = r.inner.line_start().ok_or_else(|| Failure::arg("the reader has returned no line yet"))?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(cursor_out, trib_cursor::from_rust(&start)) };
        Ok(())
    })
}

/// Parse a cursor's text: `<target_id>:<generation>:<offset>`, or the legacy
/// `<generation>:<offset>` (then `target_id` is empty). Anything else is
/// `TRIB_E_INVALID_ARG`, and `*cursor_out` is not touched.
///
/// # Safety
/// `text` must be NULL or NUL-terminated; `cursor_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_cursor_parse(
    text: *const c_char,
    cursor_out: *mut trib_cursor,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        need(text, "text")?;
        need(cursor_out, "cursor_out")?;
        // SAFETY: not NULL (checked above); NUL-terminated per the caller's contract.
        let bytes = unsafe { CStr::from_ptr(text) }.to_bytes();
        let text =
            std::str::from_utf8(bytes).map_err(|_| Failure::arg("the cursor text is not UTF-8 (a cursor is ASCII)"))?;
        let c: Cursor = text.parse()?;
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(cursor_out, trib_cursor::from_rust(&c)) };
        Ok(())
    })
}

/// Write `cursor`'s text (`<target_id>:<generation>:<offset>`, or
/// `<generation>:<offset>` when its `target_id` is empty) and a NUL to `buf`, which must
/// hold at least `TRIB_CURSOR_TEXT_LEN` (75) bytes (`buf_len`).
///
/// # Safety
/// `cursor` must be NULL or readable; `buf` NULL or `buf_len` writable bytes; `err_out`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_cursor_format(
    cursor: *const trib_cursor,
    buf: *mut c_char,
    buf_len: usize,
    err_out: *mut *mut trib_error,
) -> c_int {
    // SAFETY: `err_out` is NULL or writable, per this function's contract.
    let err_out = unsafe { ErrOut::new(err_out) };
    guard(err_out, || {
        need(cursor, "cursor")?;
        need(buf, "buf")?;
        if buf_len < TRIB_CURSOR_TEXT_LEN {
            return Err(Failure::arg(format!("`buf_len` is {buf_len}, at least {TRIB_CURSOR_TEXT_LEN} is needed")));
        }
        // SAFETY: not NULL (checked above) and readable per the caller's contract.
        let c = unsafe { cursor.read() }.to_rust()?;
        let mut text = c.to_string().into_bytes();
        debug_assert!(text.len() < TRIB_CURSOR_TEXT_LEN);
        text.push(0);
        // SAFETY: `buf` is not NULL and has at least TRIB_CURSOR_TEXT_LEN writable bytes
        // (checked above, caller's contract), more than `text`; they do not overlap.
        unsafe { ptr::copy_nonoverlapping(text.as_ptr().cast::<c_char>(), buf, text.len()) };
        Ok(())
    })
}

/// Close a reader (NULL is accepted and ignored); a line it handed out becomes invalid.
///
/// # Safety
/// `reader` must be NULL or an open reader, not used again.
#[no_mangle]
pub unsafe extern "C" fn trib_reader_close(reader: *mut trib_reader) {
    // SAFETY: NULL or a live reader, not used again (caller's contract).
    unsafe { free_handle::<ReaderBox>(reader) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_match_error_kinds() {
        for kind in ErrorKind::ALL {
            let code = kind as c_int;
            assert_eq!(kind_of_code(code), Some(kind));
            assert_eq!(code_name(code).to_str().unwrap(), kind.name());
        }
        assert_eq!(code_name(TRIB_OK), c"ok");
        assert_eq!(code_name(TRIB_E_PANIC), c"panic");
        assert_eq!(code_name(12345), c"unknown");
        assert!(kind_of_code(TRIB_E_PANIC).is_none());
    }

    #[test]
    fn null_arguments_are_invalid_arg_with_an_error() {
        let mut err: *mut trib_error = ptr::null_mut();
        // SAFETY: every pointer is NULL or points to a local.
        let rc = unsafe { trib_journal_append(ptr::null(), ptr::null(), 0, ptr::null_mut(), &mut err) };
        assert_eq!(rc, TRIB_E_INVALID_ARG);
        assert!(!err.is_null());
        // SAFETY: `err` was just returned by the library.
        unsafe {
            assert_eq!(trib_error_kind(err), TRIB_E_INVALID_ARG);
            let msg = CStr::from_ptr(trib_error_message(err)).to_str().unwrap();
            assert!(msg.contains("`journal` is NULL"), "{msg}");
            trib_error_free(err);
        }
    }

    #[test]
    fn panics_are_caught() {
        let mut err: *mut trib_error = ptr::null_mut();
        // SAFETY: `err` is a local.
        let rc = unsafe { trib_debug_panic(&mut err) };
        assert_eq!(rc, TRIB_E_PANIC);
        // SAFETY: `err` was just returned by the library.
        unsafe {
            assert_eq!(trib_error_kind(err), TRIB_E_PANIC);
            trib_error_free(err);
        }
    }

    #[test]
    fn huge_timeouts_are_refused_not_panics() {
        let mut o = trib_journal_options::from(&JournalOptions::default());
        o.busy_timeout_ms = u64::MAX;
        assert_eq!(o.to_rust().err().map(|f| f.code), Some(TRIB_E_INVALID_ARG));
        let mut o = trib_journal_options::from(&JournalOptions::default());
        o.key_retention_ms = u64::MAX;
        assert_eq!(o.to_rust().err().map(|f| f.code), Some(TRIB_E_INVALID_ARG));
        let round_trip = trib_journal_options::from(&JournalOptions::default()).to_rust().unwrap();
        assert_eq!(round_trip.busy_timeout, JournalOptions::default().busy_timeout);
    }
}
