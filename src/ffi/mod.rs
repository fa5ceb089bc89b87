//! The C ABI: every `trib_*` symbol of `libtributary.so` / `libtributary.a`.
//!
//! `include/tributary.h` is generated from this file and the modules it declares by the
//! pinned cbindgen (`tests/header_drift.rs` fails when the checked-in header differs; see
//! `docs/c-abi.md`). Everything a C caller needs to know is in the doc comments, which
//! cbindgen copies into the header. The module is private to the crate: it is not part of
//! the Rust API, and its `#[no_mangle]` functions are exported from the cdylib and
//! staticlib all the same. It uses only the crate's public API (`crate::Journal`, ...).
//!
//! One module per object, declared in the header's order (cbindgen emits the items of
//! this file first, then each module's, in the order of the `mod` lines):
//! - this file: the ABI version, the result codes (`TRIB_E_*`, tied to `ErrorKind`) and
//!   the other constants;
//! - `boundary`: what every function is built from: the handles, `Failure`, `ErrOut`,
//!   `guard` (the panic boundary), `poisoning`, the argument helpers, and `ffi_call!`,
//!   the prologue of every fallible function;
//! - `error`: `trib_error` and its functions, `trib_result_name`, the versions,
//!   `trib_debug_panic`;
//! - `journal`: `trib_journal` and its options, appends, backlog, id;
//! - `compactor`: `trib_init`, `trib_drain`, `trib_retire` and their options;
//! - `inspect`: `trib_verify` and `trib_status` with their reports;
//! - `reader`: `trib_reader` and `trib_cursor`;
//! - `cursor_store`: `trib_cursor_store` (`CursorStore`);
//! - `appender`: `trib_appender` (background commit, `Appender`);
//! - `daemon`: `trib_compact` and `trib_compact_journals` (the daemon loop,
//!   `Compactor::run`) and `trib_stop`.
//!
//! Rules every function follows:
//! - the body of every fallible function (it returns a result code and takes `err_out`)
//!   is one `ffi_call!` (`boundary`): it looks up the handle the call is on, if any, and
//!   runs the body inside `guard` (`catch_unwind`): no panic crosses the boundary, a
//!   panic becomes `TRIB_E_PANIC`, and a journal or reader whose engine call panicked is
//!   poisoned (`poisoning`) and every later call on it refused (`refuse_poisoned`, in
//!   `ffi_call!`; closing it still works); the others (close and free, the error's getters, names and
//!   versions) catch panics themselves or cannot panic;
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

use std::ffi::{c_int, CStr, CString};
use std::sync::OnceLock;

use crate::ErrorKind;

// The modules, in the header's order: cbindgen emits their items in the order of these
// lines (kept apart so that rustfmt does not sort them).
mod boundary; // handles, `Failure`, `ErrOut`, the panic boundary, argument helpers

mod error; // `trib_error` and its functions, result names, versions

mod journal; // `trib_journal`

mod appender; // `trib_appender` (background commit)

mod compactor; // `trib_init`, `trib_drain`, `trib_retire`

mod inspect; // `trib_verify`, `trib_status`

mod reader; // `trib_reader`, `trib_cursor`

mod cursor_store; // `trib_cursor_store` (named cursors in a local SQLite file)

mod daemon; // `trib_compactor` (the daemon loop over journal sources), `trib_compact`, the stop token `trib_stop`

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
/// The file is not a tributary journal (or has an unsupported format), or, opened as a
/// cursor store, not a cursor store.
pub const TRIB_E_NOT_A_JOURNAL: c_int = 14;
/// An operating-system I/O error.
pub const TRIB_E_IO: c_int = 15;
/// An `SQLite` error from a journal.
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
/// machine (`SQLite` `synchronous=NORMAL`).
pub const TRIB_DURABILITY_NORMAL: u32 = 1;

/// Size of the buffers that hold a journal or target id: 32 hex digits and a NUL.
pub const TRIB_ID_BUF_LEN: usize = 33;

/// Size of a buffer that holds any cursor's text (`trib_cursor_format`): a target id,
/// two 20-digit numbers, two colons and a NUL.
pub const TRIB_CURSOR_TEXT_LEN: usize = 75;

/// Every `TRIB_E_*` with its `ErrorKind`, in the order of `ErrorKind::ALL` (the one list
/// of kinds, whose `name()`s `trib_result_name` gives). The constants are literals
/// because cbindgen copies literals into the header; this ties them to the kinds at
/// compile time: each is its kind's value, and the array is exactly as long as
/// `ErrorKind::ALL`, so a kind added there does not compile until it has its code here.
const CODES: [(ErrorKind, c_int); ErrorKind::ALL.len()] = [
    (ErrorKind::InvalidLine, TRIB_E_INVALID_LINE),
    (ErrorKind::InvalidArgument, TRIB_E_INVALID_ARG),
    (ErrorKind::JournalFull, TRIB_E_JOURNAL_FULL),
    (ErrorKind::LockTimeout, TRIB_E_LOCK_TIMEOUT),
    (ErrorKind::LockLost, TRIB_E_LOCK_LOST),
    (ErrorKind::CorruptManifest, TRIB_E_CORRUPT_MANIFEST),
    (ErrorKind::CorruptJournalRow, TRIB_E_CORRUPT_JOURNAL_ROW),
    (ErrorKind::TargetTruncated, TRIB_E_TARGET_TRUNCATED),
    (ErrorKind::UnexpectedTail, TRIB_E_UNEXPECTED_TAIL),
    (ErrorKind::TornTarget, TRIB_E_TORN_TARGET),
    (ErrorKind::JournalRestored, TRIB_E_JOURNAL_RESTORED),
    (ErrorKind::JournalForeign, TRIB_E_JOURNAL_FOREIGN),
    (ErrorKind::UnsafeFilesystem, TRIB_E_UNSAFE_FILESYSTEM),
    (ErrorKind::NotAJournal, TRIB_E_NOT_A_JOURNAL),
    (ErrorKind::Io, TRIB_E_IO),
    (ErrorKind::Sqlite, TRIB_E_SQLITE),
    (ErrorKind::JournalGone, TRIB_E_JOURNAL_GONE),
    (ErrorKind::TargetMissing, TRIB_E_TARGET_MISSING),
];

const _: () = {
    let mut i = 0;
    while i < CODES.len() {
        let (kind, code) = CODES[i];
        assert!(code == kind as c_int, "a TRIB_E_* constant is not the value of its ErrorKind");
        assert!(kind as c_int == ErrorKind::ALL[i] as c_int, "CODES is not in the order of ErrorKind::ALL");
        assert!(code != TRIB_OK && code != TRIB_E_PANIC, "a TRIB_E_* constant is taken");
        i += 1;
    }
};

/// The kind whose result code `code` is (not for `TRIB_OK` or `TRIB_E_PANIC`).
fn kind_of_code(code: c_int) -> Option<ErrorKind> {
    ErrorKind::ALL.into_iter().find(|k| *k as c_int == code)
}

/// `kind.name()`, NUL-terminated. The C strings are made once from `ErrorKind::ALL` and
/// `ErrorKind::name` and never freed: `trib_result_name` hands out pointers into them.
fn kind_cname(kind: ErrorKind) -> &'static CStr {
    static NAMES: OnceLock<[CString; ErrorKind::ALL.len()]> = OnceLock::new();
    // A name has no NUL byte (`unwrap_or_default` only keeps this free of panics: the
    // unit test compares every name).
    let names = NAMES.get_or_init(|| ErrorKind::ALL.map(|k| CString::new(k.name()).unwrap_or_default()));
    ErrorKind::ALL.iter().position(|k| *k == kind).map_or(c"unknown", |i| names[i].as_c_str())
}

/// Stable `snake_case` name of a result code (`ErrorKind::name`, `"ok"`, `"panic"`, or
/// `"unknown"`), NUL-terminated, valid forever.
fn code_name(code: c_int) -> &'static CStr {
    match code {
        TRIB_OK => c"ok",
        TRIB_E_PANIC => c"panic",
        _ => kind_of_code(code).map_or(c"unknown", kind_cname),
    }
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
        assert!(kind_of_code(TRIB_OK).is_none());
    }

    #[test]
    fn result_names_are_made_once() {
        // `trib_result_name` promises static storage: the same pointer every time.
        for (kind, code) in CODES {
            assert_eq!(code_name(code).as_ptr(), code_name(code).as_ptr());
            assert_eq!(code_name(code).as_ptr(), kind_cname(kind).as_ptr());
        }
    }
}
