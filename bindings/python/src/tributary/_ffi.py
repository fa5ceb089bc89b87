"""Loading ``libtributary`` and declaring its C ABI (``include/tributary.h``) for ctypes.

Private: use the classes and functions of the ``tributary`` package. Every function of
the header has its ``argtypes``/``restype`` declared here, and the structures mirror the
header's field by field.

Where the library is looked for, first found wins:

1. ``$TRIBUTARY_LIB`` (a file path; if set, nothing else is tried);
2. the copy shipped inside this package (``tributary/_lib/``, put there by
   ``pip install ./bindings/python`` after ``cargo build --release``);
3. ``target/release/`` of the tributary repository this package comes from (a source
   checkout or an editable install, or the repository recorded at install time).
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import (
    POINTER,
    Structure,
    byref,
    c_bool,
    c_char,
    c_char_p,
    c_int,
    c_int64,
    c_size_t,
    c_ubyte,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any, Callable, List, Tuple

from .errors import LibraryNotFoundError, TributaryError, error_class

#: The C ABI version this package speaks (``TRIB_ABI_VERSION`` of the header).
ABI_VERSION = 3
#: The library version this package was written for; the library's must have the same
#: major version (and, while it is 0, the same minor version).
PACKAGE_VERSION = "0.1.0"

LIB_FILE = "libtributary.dylib" if sys.platform == "darwin" else "libtributary.so"
ID_BUF_LEN = 33
CURSOR_TEXT_LEN = 75

TRIB_OK = 0
DURABILITY_FULL = 0
DURABILITY_NORMAL = 1


# ---- structures (field for field as in include/tributary.h) -------------------------------


class JournalOptions(Structure):
    _fields_ = [
        ("durability", c_uint32),
        ("max_line_bytes", c_size_t),
        ("max_backlog_bytes", c_uint64),
        ("full_wait_ms", c_uint64),
        ("key_retention_ms", c_uint64),
        ("busy_timeout_ms", c_uint64),
        ("allow_network_fs", c_bool),
    ]


class Slice(Structure):
    _fields_ = [("ptr", c_char_p), ("len", c_size_t)]


class Backlog(Structure):
    _fields_ = [
        ("lines", c_uint64),
        ("bytes", c_uint64),
        ("oldest_append_ms", c_int64),
        ("last_seq", c_uint64),
        ("drained_seq", c_uint64),
    ]


class CompactorOptions(Structure):
    _fields_ = [
        ("max_round_bytes", c_uint64),
        ("max_round_time_ms", c_uint64),
        ("lock_timeout_ms", c_uint64),
        ("max_line_bytes", c_size_t),
        ("journal_busy_timeout_ms", c_uint64),
        ("allow_network_fs", c_bool),
        ("rotate_bytes", c_uint64),
        ("rotate_lines", c_uint64),
        ("retain_generations", c_uint64),
        ("create", c_bool),
    ]


class InitReport(Structure):
    _fields_ = [
        ("target_id", c_char * ID_BUF_LEN),
        ("created", c_bool),
        ("adopted_lines", c_uint64),
        ("upgraded", c_bool),
        ("rebound", c_bool),
    ]


class DrainReport(Structure):
    _fields_ = [
        ("rounds", c_uint64),
        ("lines", c_uint64),
        ("bytes", c_uint64),
        ("repaired_tail_bytes", c_uint64),
        ("epoch", c_uint64),
        ("journals", c_size_t),
        ("rotations", c_uint64),
    ]


class VerifyReport(Structure):
    _fields_ = [
        ("consistent", c_bool),
        ("epoch", c_uint64),
        ("committed_len", c_uint64),
        ("committed_lines", c_uint64),
        ("target_len", c_uint64),
        ("uncommitted_tail_bytes", c_uint64),
        ("problem_count", c_size_t),
        # char *: owned by the library, released by trib_verify_report_clear
        ("problems", c_void_p),
        ("generation", c_uint64),
        ("rotated_generations", c_uint64),
    ]


class StatusSummary(Structure):
    _fields_ = [
        ("has_manifest", c_bool),
        ("target_id", c_char * ID_BUF_LEN),
        ("epoch", c_uint64),
        ("committed_len", c_uint64),
        ("committed_lines", c_uint64),
        ("committed_crc", c_uint32),
        ("target_exists", c_bool),
        ("target_len", c_uint64),
        ("watermark_count", c_size_t),
        ("journal_count", c_size_t),
        ("generation", c_uint64),
        ("rotated_generations", c_size_t),
    ]


class Cursor(Structure):
    _fields_ = [("generation", c_uint64), ("offset", c_uint64), ("target_id", c_char * ID_BUF_LEN)]


class Watermark(Structure):
    _fields_ = [("journal_id", c_char * ID_BUF_LEN), ("last_seq", c_uint64), ("crc", c_uint32)]


class JournalStatus(Structure):
    _fields_ = [
        ("path", c_char_p),  # borrowed from the report
        ("journal_id", c_char * ID_BUF_LEN),
        ("backlog", Backlog),
        ("watermark", c_uint64),
    ]


# ---- finding and loading the library -------------------------------------------------------


def _candidates() -> List[Tuple[str, Path]]:
    env = os.environ.get("TRIBUTARY_LIB")
    if env:
        return [("$TRIBUTARY_LIB", Path(env))]
    here = Path(__file__).resolve().parent
    found: List[Tuple[str, Path]] = [("the copy shipped in the package", here / "_lib" / LIB_FILE)]
    for parent in here.parents:
        if (parent / "Cargo.toml").is_file() and (parent / "bindings" / "python").is_dir():
            found.append(("the repository's target/release", parent / "target" / "release" / LIB_FILE))
            break
    try:
        from ._build_info import REPO_ROOT  # written by setup.py at install time
    except ImportError:  # a source checkout or an editable install
        REPO_ROOT = None
    if REPO_ROOT:
        p = Path(REPO_ROOT) / "target" / "release" / LIB_FILE
        if all(p != q for _, q in found):
            found.append(("the repository recorded at install time", p))
    return found


def _load() -> Tuple[ctypes.CDLL, Path]:
    tried = []
    for where, path in _candidates():
        if path.is_file():
            try:
                return ctypes.CDLL(str(path)), path
            except OSError as e:
                raise LibraryNotFoundError(f"cannot load {path} ({where}): {e}") from e
        tried.append(f"{path} ({where})")
    if os.environ.get("TRIBUTARY_LIB"):
        raise LibraryNotFoundError(
            f"TRIBUTARY_LIB={os.environ['TRIBUTARY_LIB']} does not exist; point it at libtributary.so "
            "(built by `cargo build --release` in the tributary repository: target/release/libtributary.so), "
            "or unset it"
        )
    raise LibraryNotFoundError(
        "cannot find the tributary shared library; looked for:\n  "
        + "\n  ".join(tried)
        + "\nBuild it in the tributary repository with `cargo build --release`, then reinstall this package "
        "(`pip install ./bindings/python`, which ships the library inside it), or set TRIBUTARY_LIB to the path "
        "of libtributary.so."
    )


def _declare(lib: ctypes.CDLL) -> None:
    err_pp = POINTER(c_void_p)  # trib_error **err_out
    p = c_void_p  # an opaque handle
    u64p = POINTER(c_uint64)
    protos: List[Tuple[str, Any, List[Any]]] = [
        ("trib_error_free", None, [p]),
        ("trib_error_kind", c_int, [p]),
        ("trib_error_message", c_char_p, [p]),
        ("trib_error_line_index", c_int64, [p]),
        ("trib_result_name", c_char_p, [c_int]),
        ("trib_version", c_char_p, []),
        ("trib_abi_version", c_uint32, []),
        ("trib_debug_panic", c_int, [err_pp]),
        ("trib_journal_options_default", c_int, [POINTER(JournalOptions), err_pp]),
        ("trib_journal_open", c_int, [c_char_p, POINTER(JournalOptions), POINTER(p), err_pp]),
        ("trib_journal_close", None, [p]),
        ("trib_journal_append", c_int, [p, c_char_p, c_size_t, u64p, err_pp]),
        ("trib_journal_append_batch", c_int, [p, POINTER(Slice), c_size_t, u64p, err_pp]),
        ("trib_journal_append_keyed", c_int, [p, c_char_p, c_size_t, c_char_p, c_size_t, u64p, err_pp]),
        ("trib_journal_backlog", c_int, [p, POINTER(Backlog), err_pp]),
        ("trib_journal_id", c_int, [p, c_char_p, c_size_t, err_pp]),
        (
            "trib_drain",
            c_int,
            [c_char_p, POINTER(c_char_p), c_size_t, c_char_p, POINTER(CompactorOptions), POINTER(DrainReport), err_pp],
        ),
        ("trib_compactor_options_default", c_int, [POINTER(CompactorOptions), err_pp]),
        ("trib_init", c_int, [c_char_p, POINTER(CompactorOptions), POINTER(InitReport), err_pp]),
        (
            "trib_retire",
            c_int,
            [c_char_p, POINTER(c_char_p), c_size_t, POINTER(CompactorOptions), POINTER(c_size_t), err_pp],
        ),
        ("trib_verify", c_int, [c_char_p, POINTER(VerifyReport), err_pp]),
        ("trib_verify_report_clear", None, [POINTER(VerifyReport)]),
        ("trib_status", c_int, [c_char_p, c_char_p, POINTER(p), err_pp]),
        ("trib_status_report_summary", c_int, [p, POINTER(StatusSummary), err_pp]),
        ("trib_status_report_watermark", c_int, [p, c_size_t, POINTER(Watermark), err_pp]),
        ("trib_status_report_journal", c_int, [p, c_size_t, POINTER(JournalStatus), err_pp]),
        ("trib_status_report_free", None, [p]),
        ("trib_reader_open", c_int, [c_char_p, c_uint64, POINTER(p), err_pp]),
        ("trib_reader_open_at", c_int, [c_char_p, c_uint64, c_uint64, POINTER(p), err_pp]),
        (
            "trib_reader_next",
            c_int,
            [p, c_uint64, POINTER(c_bool), POINTER(POINTER(c_ubyte)), POINTER(c_size_t), err_pp],
        ),
        ("trib_reader_offset", c_int, [p, u64p, err_pp]),
        ("trib_reader_cursor", c_int, [p, u64p, u64p, err_pp]),
        ("trib_reader_open_cursor", c_int, [c_char_p, POINTER(Cursor), POINTER(p), err_pp]),
        ("trib_reader_position", c_int, [p, POINTER(Cursor), err_pp]),
        ("trib_reader_line_start", c_int, [p, POINTER(Cursor), err_pp]),
        ("trib_cursor_parse", c_int, [c_char_p, POINTER(Cursor), err_pp]),
        ("trib_cursor_format", c_int, [POINTER(Cursor), c_char_p, c_size_t, err_pp]),
        ("trib_reader_close", None, [p]),
    ]
    for name, restype, argtypes in protos:
        try:
            fn = getattr(lib, name)
        except AttributeError as e:
            raise LibraryNotFoundError(
                f"{LIB_PATH} has no function {name}: it is not a compatible libtributary "
                "(rebuild it with `cargo build --release`)"
            ) from e
        fn.restype = restype
        fn.argtypes = argtypes


def _check_version(lib: ctypes.CDLL, path: Path) -> str:
    try:
        lib.trib_abi_version.restype = c_uint32
        lib.trib_abi_version.argtypes = []
        lib.trib_version.restype = c_char_p
        lib.trib_version.argtypes = []
        abi = lib.trib_abi_version()
        version = lib.trib_version().decode()
    except AttributeError as e:
        raise LibraryNotFoundError(f"{path} is not libtributary (no trib_abi_version/trib_version)") from e
    if abi != ABI_VERSION:
        raise LibraryNotFoundError(
            f"{path} speaks C ABI version {abi} (library {version}), this package speaks version {ABI_VERSION} "
            f"(package {PACKAGE_VERSION}): rebuild the library from the same checkout as the package "
            "(`cargo build --release`), then reinstall the package"
        )
    want = PACKAGE_VERSION.split(".")
    have = version.split(".")
    compatible = have[:1] == want[:1] and (want[0] != "0" or have[:2] == want[:2])
    if not compatible:
        raise LibraryNotFoundError(
            f"{path} is libtributary {version}, not compatible with this package ({PACKAGE_VERSION}): rebuild the "
            "library from the same checkout as the package"
        )
    return version


lib, LIB_PATH = _load()
LIB_VERSION = _check_version(lib, LIB_PATH)
_declare(lib)


# ---- calling -----------------------------------------------------------------------------------


def error_from(rc: int, err: c_void_p) -> TributaryError:
    """Turn a failed call's code and ``trib_error`` into an exception (freeing the error)."""
    if err.value:
        try:
            code = lib.trib_error_kind(err)
            raw = lib.trib_error_message(err) or b""
            message = raw.decode("utf-8", errors="replace")
            index = lib.trib_error_line_index(err)
        finally:
            lib.trib_error_free(err)
    else:
        code, index = rc, -1
        message = f"tributary call failed with code {rc} ({(lib.trib_result_name(rc) or b'?').decode()})"
    return error_class(code)(message, code=code, line_index=index if index >= 0 else None)


def call(fn: Callable[..., int], *args: Any) -> None:
    """Call a fallible C function with ``args`` plus an ``err_out``; raise on failure.

    ctypes releases the GIL for the duration of the call, so other Python threads run
    (and share a journal's group commits) while this one waits for an fsync.
    """
    err = c_void_p()
    rc = fn(*args, byref(err))
    if rc != TRIB_OK:
        raise error_from(rc, err)


def fspath_bytes(path: Any, what: str) -> bytes:
    """A path argument as the bytes the C ABI takes (any encoding, no NUL)."""
    from .errors import InvalidArgumentError

    if path is None:
        raise InvalidArgumentError(f"`{what}` is None", code=2)
    b = os.fsencode(os.fspath(path))
    if b"\0" in b:
        raise InvalidArgumentError(f"`{what}` contains a NUL byte: {path!r}", code=2)
    return b


def debug_panic() -> None:
    """Make the library panic inside its C boundary (for tests): raises PanicError."""
    call(lib.trib_debug_panic)
