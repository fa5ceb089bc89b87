//! `trib_error` and its functions, the names of result codes, the versions, and
//! `trib_debug_panic`.

use std::ffi::{c_char, c_int, CStr, CString};

use super::boundary::{ffi_call, free_handle, handle_ref, HandleBox};
use super::{code_name, TRIB_ABI_VERSION, TRIB_E_INVALID_ARG};

/// An error: its result code, a human-readable message that says what to do, and (for
/// `TRIB_E_INVALID_LINE`) which line of the call was refused.
///
/// Ownership: created by the library in the `err_out` of a failed call; the caller owns
/// it and releases it with `trib_error_free`. Immutable: it may be read from any thread.
pub struct trib_error {
    _opaque: [u8; 0],
}

#[repr(C)]
pub(super) struct ErrorBox {
    pub(super) magic: u64,
    pub(super) code: c_int,
    pub(super) message: CString,
    pub(super) line_index: i64,
    pub(super) records_not_stored: u64,
}

impl HandleBox for ErrorBox {
    const MAGIC: u64 = 0x7472_6962_5f65_7272; // "trib_err"
    const NAME: &'static str = "trib_error";
    type Opaque = trib_error;
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

/// How many records handed to an appender this error says were never stored: from
/// `trib_appender_close`, the records still queued when it gave up on them (lost). 0
/// for every other error (a failed flush's records stay queued and are retried) and
/// for NULL.
///
/// # Safety
/// `err` must be NULL or a live error from this library.
#[no_mangle]
pub unsafe extern "C" fn trib_error_records_not_stored(err: *const trib_error) -> u64 {
    // SAFETY: NULL or a live error (caller's contract).
    match unsafe { handle_ref::<ErrorBox>(err, "err") } {
        Ok(e) => e.records_not_stored,
        Err(_) => 0,
    }
}

/// The stable `snake_case` name of a result code (`"ok"`, `"journal_full"`, `"panic"`,
/// ...; `"unknown"` for a code this library does not define). Static storage: never
/// free it.
#[no_mangle]
pub extern "C" fn trib_result_name(code: c_int) -> *const c_char {
    code_name(code).as_ptr()
}

/// The library's version (e.g. `"0.2.0"`), NUL-terminated, static storage.
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
    ffi_call!(err_out, || panic!("trib_debug_panic was called"))
}

#[cfg(test)]
mod tests {
    use std::ptr;

    use super::*;
    use crate::ffi::TRIB_E_PANIC;

    #[test]
    fn panics_are_caught() {
        let mut err: *mut trib_error = ptr::null_mut();
        // SAFETY: `err` is a local.
        let rc = unsafe { trib_debug_panic(&raw mut err) };
        assert_eq!(rc, TRIB_E_PANIC);
        // SAFETY: `err` was just returned by the library.
        unsafe {
            assert_eq!(trib_error_kind(err), TRIB_E_PANIC);
            trib_error_free(err);
        }
    }
}
