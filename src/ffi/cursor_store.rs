//! `trib_cursor_store`: named reader cursors kept durably in a local `SQLite` file
//! (`CursorStore`): open, get, commit, close.

use std::ffi::{c_char, c_int};
use std::sync::atomic::AtomicBool;

use super::boundary::{ffi_call, free_handle, into_handle, name_arg, need, path_arg, poisoning, put, HandleBox};
use super::error::trib_error;
use super::reader::trib_cursor;
use crate::CursorStore;

/// Named reader cursors kept durably in a local `SQLite` file (`synchronous=FULL`): a
/// reader's program commits the cursor of the last line it processed under a name and
/// reopens a reader there (`trib_reader_open_cursor`) after a restart. A stored cursor
/// keeps its target's id, so a reader of another target refuses it.
///
/// Thread-safety: NOT safe to use from several threads at once; it may be moved to
/// another thread between calls. Several handles (in several processes) may open the
/// same file.
///
/// Ownership: created by `trib_cursor_store_open`, released by
/// `trib_cursor_store_close`.
pub struct trib_cursor_store {
    _opaque: [u8; 0],
}

#[repr(C)]
struct CursorStoreBox {
    magic: u64,
    poisoned: AtomicBool,
    inner: CursorStore,
}

impl HandleBox for CursorStoreBox {
    const MAGIC: u64 = 0x7472_6962_5f63_7374; // "trib_cst"
    const NAME: &'static str = "trib_cursor_store";
    type Opaque = trib_cursor_store;
    fn poison(&self) -> Option<&AtomicBool> {
        Some(&self.poisoned)
    }
}

/// Open (creating if needed, mode 0600) the cursor store at `path`, on a local disk (a
/// network filesystem is `TRIB_E_UNSAFE_FILESYSTEM`; a file that is not a cursor store
/// `TRIB_E_NOT_A_JOURNAL`). A store made by an earlier version is upgraded once. On
/// success `*store_out` is a new handle for `trib_cursor_store_close`.
///
/// # Safety
/// `path` must be NULL or NUL-terminated; `store_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_cursor_store_open(
    path: *const c_char,
    store_out: *mut *mut trib_cursor_store,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, || {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let path = unsafe { path_arg(path, "path") }?;
        need(store_out, "store_out")?;
        let inner = CursorStore::open(path)?;
        let handle =
            into_handle(CursorStoreBox { magic: CursorStoreBox::MAGIC, poisoned: AtomicBool::new(false), inner });
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(store_out, handle) };
        Ok(())
    })
}

/// The cursor last committed under `name` (a non-empty NUL-terminated UTF-8 string):
/// `*found_out` says whether there is one; if so, `*cursor_out` is it (with its
/// target's id, or an empty `target_id` for a row stored before ids). Without one,
/// `*cursor_out` is not touched. Open a reader there with `trib_reader_open_cursor`.
///
/// # Safety
/// `store` must be NULL or an open store that no other thread is using; `name` NULL or
/// NUL-terminated; `cursor_out`, `found_out` and `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_cursor_store_get(
    store: *mut trib_cursor_store,
    name: *const c_char,
    cursor_out: *mut trib_cursor,
    found_out: *mut bool,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, store, |s: &mut CursorStoreBox| {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let name = unsafe { name_arg(name, "name") }?;
        need(cursor_out, "cursor_out")?;
        need(found_out, "found_out")?;
        let got = poisoning(&s.poisoned, || Ok(s.inner.get(name)?))?;
        if let Some(c) = &got {
            // SAFETY: not NULL, writable per the caller's contract.
            unsafe { put(cursor_out, trib_cursor::from_rust(c)) };
        }
        // SAFETY: not NULL, writable per the caller's contract.
        unsafe { put(found_out, got.is_some()) };
        Ok(())
    })
}

/// Durably record (fsync before returning) that `name` has processed everything before
/// `cursor` (from `trib_reader_position`), with the cursor's target id. Replaces the
/// cursor `name` held. A bad `target_id` in `cursor` is `TRIB_E_INVALID_ARG`; nothing is
/// recorded on an error.
///
/// # Safety
/// `store` must be NULL or an open store that no other thread is using; `name` NULL or
/// NUL-terminated; `cursor` NULL or readable; `err_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn trib_cursor_store_commit(
    store: *mut trib_cursor_store,
    name: *const c_char,
    cursor: *const trib_cursor,
    err_out: *mut *mut trib_error,
) -> c_int {
    ffi_call!(err_out, store, |s: &mut CursorStoreBox| {
        // SAFETY: NUL-terminated or NULL per the caller's contract.
        let name = unsafe { name_arg(name, "name") }?;
        need(cursor, "cursor")?;
        // SAFETY: not NULL (checked above) and readable per the caller's contract.
        let cursor = unsafe { cursor.read() }.to_rust()?;
        poisoning(&s.poisoned, || Ok(s.inner.commit(name, cursor)?))
    })
}

/// Close a cursor store (NULL is accepted and ignored). Every commit that returned
/// `TRIB_OK` is already durable.
///
/// # Safety
/// `store` must be NULL or an open store that no other thread is using, and it must not
/// be used again.
#[no_mangle]
pub unsafe extern "C" fn trib_cursor_store_close(store: *mut trib_cursor_store) {
    // SAFETY: NULL or a live handle no other thread uses, not used again (caller's contract).
    unsafe { free_handle::<CursorStoreBox>(store) }
}
