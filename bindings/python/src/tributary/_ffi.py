"""Loading ``libtributary`` and applying its C ABI (``include/tributary.h``) to it.

Private: use the classes and functions of the ``tributary`` package. This module owns
*finding and loading* the library (the search order below), the ABI and version
check, and the calling convention (:func:`call`, :func:`error_from`). It declares
nothing by hand: every constant, structure, opaque handle and prototype comes from
``_ffi_gen.py``, which ``bindings/python/gen_ffi.py`` generates from the header (and
re-exports them); :func:`_declare` applies the generated prototype table to the
loaded library.

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
from ctypes import byref
from pathlib import Path
from typing import Any, Callable, Iterable, List, Tuple

from ._ffi_gen import *  # noqa: F401,F403 - the header's declarations, re-exported for the API modules
from ._ffi_gen import FUNCTIONS, TRIB_ABI_VERSION, TRIB_OK, trib_error_p
from .errors import LibraryNotFoundError, TributaryError, error_class

#: The C ABI version this package speaks (``TRIB_ABI_VERSION`` of the header).
ABI_VERSION = TRIB_ABI_VERSION
#: The library version this package was written for; the library's must have the same
#: major version (and, while it is 0, the same minor version).
PACKAGE_VERSION = "0.2.0"

LIB_FILE = "libtributary.dylib" if sys.platform == "darwin" else "libtributary.so"


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


def _declare(lib: ctypes.CDLL, path: Path, names: Iterable[str] = FUNCTIONS) -> None:
    """Set ``restype``/``argtypes`` of the named functions (default: every function of
    the header) from the generated prototype table."""
    for name in names:
        restype, argtypes = FUNCTIONS[name]
        try:
            fn = getattr(lib, name)
        except AttributeError as e:
            raise LibraryNotFoundError(
                f"{path} has no function {name}: it is not a compatible libtributary "
                "(rebuild it with `cargo build --release`)"
            ) from e
        fn.restype = restype
        fn.argtypes = argtypes


def _check_version(lib: ctypes.CDLL, path: Path) -> str:
    if not all(hasattr(lib, name) for name in ("trib_abi_version", "trib_version")):
        raise LibraryNotFoundError(f"{path} is not libtributary (no trib_abi_version/trib_version)")
    _declare(lib, path, ("trib_abi_version", "trib_version"))
    abi = lib.trib_abi_version()
    version = lib.trib_version().decode()
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
_declare(lib, LIB_PATH)


# ---- calling -----------------------------------------------------------------------------------


def error_from(rc: int, err: trib_error_p) -> TributaryError:
    """Turn a failed call's code and ``trib_error`` into an exception (freeing the error)."""
    if err.value:
        try:
            code = lib.trib_error_kind(err)
            raw = lib.trib_error_message(err) or b""
            message = raw.decode("utf-8", errors="replace")
            index = lib.trib_error_line_index(err)
            not_stored = lib.trib_error_records_not_stored(err)
        finally:
            lib.trib_error_free(err)
    else:
        code, index, not_stored = rc, -1, 0
        message = f"tributary call failed with code {rc} ({(lib.trib_result_name(rc) or b'?').decode()})"
    e = error_class(code)(message, code=code, line_index=index if index >= 0 else None)
    e.records_not_stored = not_stored
    return e


def call(fn: Callable[..., int], *args: Any) -> None:
    """Call a fallible C function with ``args`` plus an ``err_out``; raise on failure.

    ctypes releases the GIL for the duration of the call, so other Python threads run
    (and share a journal's group commits) while this one waits for an fsync.
    """
    err = trib_error_p()
    rc = fn(*args, byref(err))
    if rc != TRIB_OK:
        raise error_from(rc, err)


def fspath_bytes(path: Any, what: str) -> bytes:
    """A path argument as the bytes the C ABI takes (any encoding, no NUL)."""
    from .errors import InvalidArgumentError

    if path is None:
        raise InvalidArgumentError(f"`{what}` is None", code=InvalidArgumentError.code)
    b = os.fsencode(os.fspath(path))
    if b"\0" in b:
        raise InvalidArgumentError(f"`{what}` contains a NUL byte: {path!r}", code=InvalidArgumentError.code)
    return b


def debug_panic() -> None:
    """Make the library panic inside its C boundary (for tests): raises PanicError."""
    call(lib.trib_debug_panic)
