//! What every `trib_*` function is built from: the handles (type-tagged boxes), a
//! `Failure` on its way to C, the `err_out` parameter, the panic boundary (`guard`),
//! poisoning, the helpers that turn C arguments into Rust values, and [`ffi_call!`], the
//! one prologue of every fallible function.

use std::any::Any;
use std::ffi::{c_char, c_int, CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::error::{trib_error, ErrorBox};
use super::{TRIB_E_PANIC, TRIB_ID_BUF_LEN, TRIB_OK};
use crate::Error;

// Every handle handed to C points to a private `#[repr(C)]` box whose first field is a
// magic word naming its type; the public `trib_*` handle types are opaque markers that
// are never instantiated. Reading the first 8 bytes of any pointer this library handed
// out is in bounds, so a handle of the wrong type (or one already closed, as long as
// its memory was not reused) is refused with TRIB_E_INVALID_ARG instead of trusted.

/// A private box behind an opaque handle type `Opaque`.
pub(super) trait HandleBox: Sized {
    /// The magic word, the box's first field.
    const MAGIC: u64;
    /// The handle's C name, for messages.
    const NAME: &'static str;
    type Opaque;
    /// The poison flag of a handle whose engine calls can panic mid-update (journals,
    /// readers); `None` for the others.
    fn poison(&self) -> Option<&AtomicBool> {
        None
    }
}

/// Refuse a poisoned handle: every call through `ffi_call!` on a handle whose earlier
/// call panicked fails with `TRIB_E_PANIC` (getters included: they would read the
/// state the panic may have left half-updated). Closing it still works.
pub(super) fn refuse_poisoned<B: HandleBox>(b: &B) -> FfiResult<()> {
    match b.poison() {
        Some(p) if p.load(Ordering::Acquire) => Err(Failure {
            code: TRIB_E_PANIC,
            message: format!("this {} is poisoned: an earlier call on it panicked; close it", B::NAME),
            line_index: -1,
            records_not_stored: 0,
        }),
        _ => Ok(()),
    }
}

/// Box `b` and hand it out as an opaque handle.
pub(super) fn into_handle<B: HandleBox>(b: B) -> *mut B::Opaque {
    Box::into_raw(Box::new(b)).cast()
}

/// The box behind handle `p` (`what` names the parameter for messages).
///
/// # Safety
/// `p` must be NULL or a live handle from this library (of any type), not used mutably
/// by another thread during `'a`.
pub(super) unsafe fn handle_ref<'a, B: HandleBox>(p: *const B::Opaque, what: &str) -> FfiResult<&'a B> {
    need(p, what)?;
    // SAFETY: every handle this library hands out starts with an aligned u64 magic word
    // (`#[repr(C)]` boxes), so this read is in bounds for any live handle.
    let magic = unsafe { p.cast::<u64>().read() };
    if magic != B::MAGIC {
        // (a closed handle is freed memory: this check catches its use only while that
        // memory is not reused — say so, not that it is detected: an outside tester)
        return Err(Failure::arg(format!(
            "`{what}` is not a {}: a handle of another type, or one already closed (never use a handle after \
             closing it: that is undefined behaviour, caught here only by luck)",
            B::NAME
        )));
    }
    // SAFETY: the magic word says this is a live `B` made by `into_handle`.
    Ok(unsafe { &*p.cast::<B>() })
}

/// Like [`handle_ref`], mutable.
///
/// # Safety
/// As [`handle_ref`], and no other reference to the box may exist during `'a`.
pub(super) unsafe fn handle_mut<'a, B: HandleBox>(p: *mut B::Opaque, what: &str) -> FfiResult<&'a mut B> {
    // SAFETY: forwarded contract.
    unsafe { handle_ref::<B>(p, what) }?;
    // SAFETY: checked above to be a live `B`; exclusive per the caller's contract.
    Ok(unsafe { &mut *p.cast::<B>() })
}

/// Free the box behind handle `p`; NULL and handles of another type are ignored.
///
/// # Safety
/// `p` must be NULL or a live handle from this library, not used again afterwards.
pub(super) unsafe fn free_handle<B: HandleBox>(p: *mut B::Opaque) {
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

/// A failed call, before it is handed to C.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) code: c_int,
    message: String,
    line_index: i64,
    records_not_stored: u64,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let line_index = match &e {
            Error::InvalidLine { index, .. } => i64::try_from(*index).unwrap_or(i64::MAX),
            _ => -1,
        };
        Failure {
            code: e.kind() as c_int,
            message: e.to_string(),
            line_index,
            records_not_stored: e.records_not_stored(),
        }
    }
}

impl Failure {
    /// `TRIB_E_INVALID_ARG`, worded like the Rust `Error::InvalidArgument`.
    pub(super) fn arg(detail: impl Into<String>) -> Failure {
        Failure::from(Error::InvalidArgument(detail.into()))
    }

    fn panic(payload: &(dyn Any + Send)) -> Failure {
        let what = payload
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        Failure {
            code: TRIB_E_PANIC,
            message: format!(
                "panic inside tributary (a bug, please report it): {what}; the handle used by this call is poisoned, \
                 close it"
            ),
            line_index: -1,
            records_not_stored: 0,
        }
    }
}

pub(super) type FfiResult<T> = std::result::Result<T, Failure>;

/// The `err_out` parameter of a call: NULL, or writable storage for a `trib_error *`.
#[derive(Clone, Copy)]
pub(super) struct ErrOut(*mut *mut trib_error);

impl ErrOut {
    /// # Safety
    /// `p` must be NULL or point to writable storage for a `trib_error *` for the rest of
    /// the call.
    pub(super) unsafe fn new(p: *mut *mut trib_error) -> ErrOut {
        ErrOut(p)
    }
}

/// What the C library sets for its process before its first call uses `SQLite`
/// (`ffi_call!` runs it at every entry point; only the first does anything): its
/// `SQLite` is its own (the library exports no `sqlite3_*` symbol), so turning off the
/// memory statistics, process-wide, concerns nobody else
/// ([`crate::disable_sqlite_memory_statistics`]). Every later call waits until it is done.
pub(super) fn process_setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = crate::disable_sqlite_memory_statistics();
    });
}

/// Run `body` behind the panic boundary and turn its outcome into a result code,
/// storing an error in `*err_out` (if `err_out` is not NULL) on failure.
pub(super) fn guard(err_out: ErrOut, body: impl FnOnce() -> FfiResult<()>) -> c_int {
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
            into_handle(ErrorBox {
                magic: ErrorBox::MAGIC,
                code,
                message,
                line_index: failure.line_index,
                records_not_stored: failure.records_not_stored,
            })
        }));
        if let Ok(err) = built {
            // SAFETY: not NULL, and writable: the invariant of `ErrOut` (see `ErrOut::new`).
            unsafe { err_out.write(err) };
        }
    }
    code
}

/// The whole body of every fallible `trib_*` function (one that returns a result code
/// and takes `err_out`): the boundary prologue, written once.
///
/// - `ffi_call!(err_out, || body)`: a call on no handle.
/// - `ffi_call!(err_out, journal, |j: &JournalBox| body)`: a call on the handle passed
///   as the parameter `journal`. It is looked up first: NULL, a handle of another type or
///   a closed one is `TRIB_E_INVALID_ARG` ("`journal` is NULL", named after the
///   parameter); `j` is its box. `|r: &mut ReaderBox|` looks up a handle that one
///   thread at a time uses.
///
/// `body` returns `FfiResult<()>` and writes the outputs itself, only on success. It runs
/// inside [`guard`]: a failure becomes its result code and a new error in `*err_out`
/// (when `err_out` is not NULL), a panic becomes `TRIB_E_PANIC`. A body that runs the
/// engine on a handle that can be poisoned wraps that part in [`poisoning`], after its
/// arguments are checked.
///
/// It wraps the body, not the whole function (as `ffi_fn!` does in regex's C API),
/// because cbindgen reads the functions' signatures without expanding macros.
/// `tests/header_drift.rs` checks that every fallible function's body is one `ffi_call!`
/// and that its `# Safety` section covers what the SAFETY comments below rely on.
macro_rules! ffi_call {
    ($err_out:ident, || $body:expr) => {{
        // SAFETY: `$err_out` is the `err_out` parameter of the `extern "C"` function this is
        // the body of; its `# Safety` section requires it to be NULL or writable storage
        // for a `trib_error *` for the whole call, which is `ErrOut::new`'s contract.
        let err_out = unsafe { $crate::ffi::boundary::ErrOut::new($err_out) };
        $crate::ffi::boundary::process_setup();
        $crate::ffi::boundary::guard(err_out, || $body)
    }};
    // Before the `&` arm: a `ty` fragment that fails to parse (`mut ...`) is an error, not
    // a mismatch.
    ($err_out:ident, $handle:ident, |$h:ident: &mut $Box:ty| $body:expr) => {
        $crate::ffi::boundary::ffi_call!($err_out, || {
            // SAFETY: `$handle` is a parameter of the function this is the body of; its
            // `# Safety` section requires it to be NULL or an open handle from this library
            // that no other thread uses during the call, which is `handle_mut`'s contract.
            let $h: &mut $Box = unsafe { $crate::ffi::boundary::handle_mut::<$Box>($handle, stringify!($handle)) }?;
            $crate::ffi::boundary::refuse_poisoned::<$Box>($h)?;
            $body
        })
    };
    ($err_out:ident, $handle:ident, |$h:ident: &$Box:ty| $body:expr) => {
        $crate::ffi::boundary::ffi_call!($err_out, || {
            // SAFETY: `$handle` is a parameter of the function this is the body of; its
            // `# Safety` section requires it to be NULL or an open handle from this library,
            // which is `handle_ref`'s contract (no thread mutates a box behind `&`: the
            // handles used so are shareable, or used by one thread at a time).
            let $h: &$Box = unsafe { $crate::ffi::boundary::handle_ref::<$Box>($handle, stringify!($handle)) }?;
            $crate::ffi::boundary::refuse_poisoned::<$Box>($h)?;
            $body
        })
    };
}
pub(super) use ffi_call;

/// Write `value` to a required out-pointer (checked for NULL before any work).
///
/// # Safety
/// `out` must be NULL-checked already and point to writable memory for a `T`.
pub(super) unsafe fn put<T>(out: *mut T, value: T) {
    // SAFETY: guaranteed by the caller (NULL-checked, writable, properly aligned).
    unsafe { out.write(value) }
}

pub(super) fn need<T>(p: *const T, what: &str) -> FfiResult<()> {
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
pub(super) unsafe fn path_arg<'a>(p: *const c_char, what: &str) -> FfiResult<&'a Path> {
    need(p, what)?;
    // SAFETY: not NULL (checked above); NUL-terminated and alive per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    if bytes.is_empty() {
        return Err(Failure::arg(format!("`{what}` is an empty path")));
    }
    Ok(Path::new(OsStr::from_bytes(bytes)))
}

/// A name argument (a cursor's name): a NUL-terminated, non-empty UTF-8 string.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that outlives `'a`.
pub(super) unsafe fn name_arg<'a>(p: *const c_char, what: &str) -> FfiResult<&'a str> {
    need(p, what)?;
    // SAFETY: not NULL (checked above); NUL-terminated and alive per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    if bytes.is_empty() {
        return Err(Failure::arg(format!("`{what}` is empty")));
    }
    std::str::from_utf8(bytes).map_err(|_| Failure::arg(format!("`{what}` is not UTF-8 (a cursor's name is text)")))
}

/// A byte-slice argument `(ptr, len)`: `(NULL, 0)` is the empty slice.
///
/// # Safety
/// Unless `len` is 0, `ptr` must be NULL or point to `len` readable bytes that outlive `'a`.
pub(super) unsafe fn bytes_arg<'a>(ptr: *const u8, len: usize, what: &str) -> FfiResult<&'a [u8]> {
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
pub(super) unsafe fn array_arg<'a, T>(ptr: *const T, count: usize, what: &str) -> FfiResult<&'a [T]> {
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
pub(super) fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// Copy a 32-hex-digit id into a `TRIB_ID_BUF_LEN` buffer, NUL-terminated.
pub(super) fn id_buf(hex: &str) -> [c_char; TRIB_ID_BUF_LEN] {
    let mut out = [0 as c_char; TRIB_ID_BUF_LEN];
    for (o, b) in out.iter_mut().zip(hex.as_bytes().iter().take(TRIB_ID_BUF_LEN - 1)) {
        *o = c_char::from_ne_bytes([*b]);
    }
    out
}

/// The longest duration any `*_ms` option accepts (1000 years): larger values would
/// overflow the engine's clock arithmetic.
const MAX_OPTION_MS: u64 = 1000 * 365 * 24 * 3600 * 1000;

pub(super) fn ms_option(value: u64, what: &str) -> FfiResult<Duration> {
    if value > MAX_OPTION_MS {
        return Err(Failure::arg(format!("`{what}` is {value} ms, more than the maximum {MAX_OPTION_MS} ms")));
    }
    Ok(Duration::from_millis(value))
}

/// A duration in whole milliseconds for a C options struct (saturating: no duration
/// the Rust side accepts is longer than `u64::MAX` ms, but a cast would wrap if one were).
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `SQLite` keeps its busy timeout in an `int` of milliseconds.
pub(super) fn busy_timeout_option(value: u64, what: &str) -> FfiResult<Duration> {
    if value > i32::MAX as u64 {
        return Err(Failure::arg(format!("`{what}` is {value} ms, more than the maximum {} ms", i32::MAX)));
    }
    Ok(Duration::from_millis(value))
}

/// Run `body` on a handle; a panic inside it poisons the handle (so nothing uses its
/// possibly half-updated state again: `ffi_call!` refuses it, see [`refuse_poisoned`])
/// and then goes on to [`guard`].
pub(super) fn poisoning<T>(poisoned: &AtomicBool, body: impl FnOnce() -> FfiResult<T>) -> FfiResult<T> {
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            poisoned.store(true, Ordering::Release);
            panic::resume_unwind(payload)
        }
    }
}
