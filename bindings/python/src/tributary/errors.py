"""Exceptions: one class per error kind of the library (the C ABI's ``TRIB_E_*`` codes).

Every exception raised by a tributary call is a :class:`TributaryError`. Catch the base
class, a group (:class:`CorruptError`), or one kind::

    try:
        journal.append(line)
    except tributary.JournalFullError:
        ...  # back off: no compactor is draining this journal

Each instance has ``.kind`` (the stable snake_case name, as in the CLI and the Rust
``ErrorKind::name``), ``.code`` (the C result code) and ``.message`` (what happened and
what to do). :class:`InvalidLineError` also has ``.line_index``.

This module owns the exception classes and their kind names; the codes are the
header's ``TRIB_E_*`` constants (from the generated ``_ffi_gen.py``), and
``tests/test_ffi_gen.py`` checks that every ``TRIB_E_*`` of the header has exactly one
class here whose kind is the library's own name for the code.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

from . import _ffi_gen as _c

__all__ = [
    "TributaryError",
    "InvalidLineError",
    "InvalidArgumentError",
    "JournalFullError",
    "LockTimeoutError",
    "LockLostError",
    "CorruptError",
    "CorruptManifestError",
    "CorruptJournalRowError",
    "TargetTruncatedError",
    "UnexpectedTailError",
    "TornTargetError",
    "JournalRestoredError",
    "JournalForeignError",
    "UnsafeFilesystemError",
    "NotAJournalError",
    "JournalGoneError",
    "TargetMissingError",
    "IoError",
    "SqliteError",
    "PanicError",
    "NotDurableError",
    "LibraryNotFoundError",
    "error_class",
]


class TributaryError(Exception):
    """Base class of every error a tributary call raises."""

    #: The C result code (``TRIB_E_*``); -1 for errors raised by the Python layer itself.
    code: int = -1
    #: Stable snake_case name of the kind (``"journal_full"``, ...).
    kind: str = "unknown"

    def __init__(self, message: str, *, code: Optional[int] = None, line_index: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None and code != type(self).code:
            self.code = code
        #: For :class:`InvalidLineError`: index of the refused line within the call.
        self.line_index = line_index
        #: From :meth:`Appender.close`: the records it gave up on (queued, never
        #: stored); 0 for every other error.
        self.records_not_stored = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidLineError(TributaryError, ValueError):
    """A line contains ``\\n``, is longer than the journal's maximum, or is a str UTF-8
    cannot encode (a lone surrogate). Nothing of the call was stored; ``.line_index``
    says which line of a batch."""

    code, kind = _c.TRIB_E_INVALID_LINE, "invalid_line"


class InvalidArgumentError(TributaryError, ValueError):
    """An unusable argument: an empty batch or key, a bad option, a path with a NUL
    byte, a reader offset that is not a committed line start, a closed handle, a target
    that was never drained (``verify``)."""

    code, kind = _c.TRIB_E_INVALID_ARG, "invalid_argument"


class JournalFullError(TributaryError):
    """The journal's backlog reached ``max_backlog_bytes``; nothing was stored. Run a
    compactor, or raise the limit."""

    code, kind = _c.TRIB_E_JOURNAL_FULL, "journal_full"


class LockTimeoutError(TributaryError):
    """The target's lock was not granted within the lock timeout (another compactor
    holds it)."""

    code, kind = _c.TRIB_E_LOCK_TIMEOUT, "lock_timeout"


class LockLostError(TributaryError):
    """The target's lock was lost while held; this drain round committed nothing (the
    next one repairs the tail)."""

    code, kind = _c.TRIB_E_LOCK_LOST, "lock_lost"


class CorruptError(TributaryError):
    """Stored state cannot be trusted: a manifest or a journal row. Never repaired
    silently."""


class CorruptManifestError(CorruptError):
    """The target's manifest has a bad CRC or syntax."""

    code, kind = _c.TRIB_E_CORRUPT_MANIFEST, "corrupt_manifest"


class CorruptJournalRowError(CorruptError):
    """A journal row's bytes do not match its CRC, or a row is missing."""

    code, kind = _c.TRIB_E_CORRUPT_JOURNAL_ROW, "corrupt_journal_row"


class TargetTruncatedError(TributaryError):
    """The target is shorter than its committed length (truncated behind tributary's
    back); nothing was touched."""

    code, kind = _c.TRIB_E_TARGET_TRUNCATED, "target_truncated"


class UnexpectedTailError(TributaryError):
    """The target has more uncommitted bytes than one drain round can write (a stale
    manifest, or a foreign writer); nothing was touched."""

    code, kind = _c.TRIB_E_UNEXPECTED_TAIL, "unexpected_tail"


class TornTargetError(TributaryError):
    """The target does not end in ``\\n`` where it must; nothing was touched."""

    code, kind = _c.TRIB_E_TORN_TARGET, "torn_target"


class JournalRestoredError(TributaryError):
    """A journal was restored from an older copy or cloned; the drain stopped and
    skipped nothing."""

    code, kind = _c.TRIB_E_JOURNAL_RESTORED, "journal_restored"


class JournalForeignError(TributaryError):
    """A journal was drained into another target (or the target was reset)."""

    code, kind = _c.TRIB_E_JOURNAL_FOREIGN, "journal_foreign"


class UnsafeFilesystemError(TributaryError):
    """A journal on a network filesystem, a target on a mount whose locks are
    host-local, or a world-writable sidecar folder."""

    code, kind = _c.TRIB_E_UNSAFE_FILESYSTEM, "unsafe_filesystem"


class NotAJournalError(TributaryError):
    """The file is not a tributary journal (or has an unsupported format), or, opened as
    a cursor store, not a cursor store."""

    code, kind = _c.TRIB_E_NOT_A_JOURNAL, "not_a_journal"


class JournalGoneError(TributaryError):
    """The journal file (or its ``-wal``) was removed, renamed or replaced while this
    handle had it open; nothing of the call was stored. Close the handle and reopen the
    journal by its path."""

    code, kind = _c.TRIB_E_JOURNAL_GONE, "journal_gone"


class TargetMissingError(TributaryError):
    """There is no tributary target at this path (never created with
    :func:`tributary.init`, or its shared filesystem is not mounted), or the file
    there is not the one its sidecar committed to. Nothing was created or touched."""

    code, kind = _c.TRIB_E_TARGET_MISSING, "target_missing"


class IoError(TributaryError):
    """An operating-system I/O error (the message says what tributary was doing)."""

    code, kind = _c.TRIB_E_IO, "io"


class SqliteError(TributaryError):
    """An SQLite error from a journal (e.g. ``database is locked`` past the busy
    timeout)."""

    code, kind = _c.TRIB_E_SQLITE, "sqlite"


class PanicError(TributaryError):
    """A bug inside the library, caught at the C boundary. The handle used by the call
    is poisoned: close it."""

    code, kind = _c.TRIB_E_PANIC, "panic"


class NotDurableError(TributaryError, OSError):
    """A background :class:`~tributary.logging.JournalHandler`'s ``flush()`` or
    ``close()`` could not make the records emitted before it durable. The library's
    error is ``__cause__`` (same ``code`` and ``kind``). An :class:`OSError` too, like a
    stream handler's failed flush, so ``logging.shutdown`` and ``dictConfig`` carry on
    with the other handlers. ``records_not_stored``: from ``close()``, the records lost
    (also counted in the handler's ``failed_records``); from ``flush()``, 0 — they stay
    queued and are retried."""

    @classmethod
    def of(cls, what: str, cause: TributaryError) -> "NotDurableError":
        e = cls(f"{what}: {cause.message}", code=cause.code)
        e.kind = cause.kind
        e.records_not_stored = cause.records_not_stored
        return e


class LibraryNotFoundError(ImportError):
    """The shared library ``libtributary`` could not be found or loaded, or has an
    incompatible version. The message says how to build or point to it."""


_BY_CODE: Dict[int, Type[TributaryError]] = {
    cls.code: cls
    for cls in (
        InvalidLineError,
        InvalidArgumentError,
        JournalFullError,
        LockTimeoutError,
        LockLostError,
        CorruptManifestError,
        CorruptJournalRowError,
        TargetTruncatedError,
        UnexpectedTailError,
        TornTargetError,
        JournalRestoredError,
        JournalForeignError,
        UnsafeFilesystemError,
        NotAJournalError,
        IoError,
        SqliteError,
        JournalGoneError,
        TargetMissingError,
        PanicError,
    )
}


def error_class(code: int) -> Type[TributaryError]:
    """The exception class for a C result code (:class:`TributaryError` if unknown)."""
    return _BY_CODE.get(code, TributaryError)
