"""tributary: many writers on many hosts append lines to ONE file on a shared
filesystem, exactly once.

Writers append to a :class:`Journal` on their local disk; :func:`drain` (or the
``tributary compact`` daemon) moves the lines into the shared target file under a lock,
exactly once, surviving ``kill -9`` of anything at any moment; :class:`Reader` reads the
committed lines. :class:`tributary.logging.JournalHandler` plugs this into
:mod:`logging`::

    import tributary

    tributary.init("/mnt/shared/app.log")    # once: drains never create a target
    with tributary.Journal("/var/spool/app/host1.journal") as j:
        seq = j.append("hello")               # durable when it returns
    report = tributary.drain("/mnt/shared/app.log", spool="/var/spool/app")
    for line in tributary.Reader("/mnt/shared/app.log"):
        print(line.decode())

This package is a ctypes binding of the C ABI of ``libtributary`` (see
``docs/python.md``); the library is found via ``$TRIBUTARY_LIB``, a copy shipped in the
package, or the repository's ``target/release``.
"""

from ._compactor import (
    DrainReport,
    InitReport,
    JournalStatus,
    StatusReport,
    VerifyReport,
    Watermark,
    drain,
    init,
    retire,
    status,
    verify,
)
from ._appender import Appender, AppenderStats
from ._compact import CompactEvent, Compactor, CompactReport, compact
from ._ffi import ABI_VERSION, LIB_PATH, LIB_VERSION
from ._journal import DEFAULT_MAX_LINE_BYTES, Backlog, Journal, KeyedAppend
from ._reader import Cursor, Lag, Reader
from ._cursor_store import CursorStore
from .errors import (
    CorruptError,
    CorruptJournalRowError,
    CorruptManifestError,
    InvalidArgumentError,
    InvalidLineError,
    IoError,
    JournalForeignError,
    JournalFullError,
    JournalGoneError,
    TargetMissingError,
    JournalRestoredError,
    LibraryNotFoundError,
    LockLostError,
    LockTimeoutError,
    NotAJournalError,
    NotDurableError,
    PanicError,
    SqliteError,
    TargetTruncatedError,
    TornTargetError,
    TributaryError,
    UnexpectedTailError,
    UnsafeFilesystemError,
)

__version__ = "0.2.0"

__all__ = [
    "ABI_VERSION",
    "DEFAULT_MAX_LINE_BYTES",
    "LIB_PATH",
    "LIB_VERSION",
    "Appender",
    "AppenderStats",
    "Backlog",
    "CompactEvent",
    "CompactReport",
    "Compactor",
    "CorruptError",
    "Cursor",
    "CursorStore",
    "CorruptJournalRowError",
    "CorruptManifestError",
    "DrainReport",
    "InitReport",
    "InvalidArgumentError",
    "InvalidLineError",
    "IoError",
    "Journal",
    "JournalForeignError",
    "JournalFullError",
    "JournalGoneError",
    "TargetMissingError",
    "JournalRestoredError",
    "JournalStatus",
    "KeyedAppend",
    "Lag",
    "LibraryNotFoundError",
    "LockLostError",
    "LockTimeoutError",
    "NotAJournalError",
    "NotDurableError",
    "PanicError",
    "Reader",
    "SqliteError",
    "StatusReport",
    "TargetTruncatedError",
    "TornTargetError",
    "TributaryError",
    "UnexpectedTailError",
    "UnsafeFilesystemError",
    "VerifyReport",
    "Watermark",
    "compact",
    "drain",
    "init",
    "retire",
    "status",
    "verify",
]

from . import logging  # noqa: E402  (tributary.logging.JournalHandler)
