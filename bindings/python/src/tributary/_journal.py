"""The writer side: :class:`Journal` (a SQLite WAL file on this host's local disk; its
handle life cycle is ``_managed.Managed``'s), what it accepts as a line, and
:class:`Backlog`, what is waiting in it."""

from __future__ import annotations

import ctypes
import os
from ctypes import byref, c_bool, c_uint64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, List, NamedTuple, Optional, Tuple, Union

from . import _ffi
from ._ffi import call, fspath_bytes, lib
from ._managed import Managed
from ._util import PathLike, Seconds, _arg_error, _ms, _not_one_item, _positive_int
from .errors import InvalidLineError

if TYPE_CHECKING:
    from ._reader import Cursor

__all__ = ["DEFAULT_MAX_LINE_BYTES", "Backlog", "Journal", "KeyedAppend"]

#: Longest line a journal accepts by default (1 MiB, without the ``\n``).
DEFAULT_MAX_LINE_BYTES = 1 << 20

#: A line: bytes (any bytes but ``\n``) or str (encoded as UTF-8).
Line = Union[bytes, bytearray, memoryview, str]


def _line_bytes(line: Line, what: str = "line", index: int = 0) -> bytes:
    if isinstance(line, bytes):
        return line
    if isinstance(line, str):
        try:
            return line.encode("utf-8")
        except UnicodeEncodeError as e:
            # (a lone surrogate: what os.fsdecode or surrogateescape make of non-UTF-8 bytes)
            message = (
                f"{what} is a str UTF-8 cannot encode ({e.reason}: {line[e.start : e.end]!r} at character "
                f"{e.start}); nothing of this call was stored: pass bytes, e.g. "
                "s.encode('utf-8', 'surrogateescape') for text decoded from bytes"
            )
            if what == "key":
                raise _arg_error(message) from None
            raise InvalidLineError(message, code=InvalidLineError.code, line_index=index) from None
    if isinstance(line, (bytearray, memoryview)):
        return bytes(line)
    raise TypeError(f"{what} must be bytes or str, not {type(line).__name__}")


class KeyedAppend(NamedTuple):
    """What one keyed append did: the line's ``seq``, and whether this call ``stored``
    it (``False``: its key was already stored, by an earlier call or an earlier line of
    the same batch; nothing was stored and ``seq`` is the earlier line's)."""

    seq: int
    stored: bool


def _name_bytes(name: Any) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"a cursor's name must be a str, not {type(name).__name__}")
    if not name or "\0" in name:
        raise _arg_error(f"a cursor's name must be non-empty text without NUL bytes, not {name!r}")
    return name.encode("utf-8")


def _slices(data: List[bytes]) -> Any:
    arr = (_ffi.trib_slice * max(1, len(data)))()
    for i, d in enumerate(data):
        arr[i].ptr = d
        arr[i].len = len(d)
    return arr


@dataclass(frozen=True)
class Backlog:
    """What is waiting in a journal."""

    #: Lines appended and not yet drained, and their bytes (without ``\n``).
    lines: int
    bytes: int
    #: When the oldest waiting line was appended (ms since the Unix epoch), or None.
    oldest_append_ms: Optional[int]
    #: Highest seq ever assigned (0 for a journal never written to).
    last_seq: int
    #: Highest seq recorded as drained.
    drained_seq: int

    @classmethod
    def _from_c(cls, b: _ffi.trib_backlog) -> "Backlog":
        return cls(b.lines, b.bytes, b.oldest_append_ms or None, b.last_seq, b.drained_seq)


def _fill_journal_options(
    opts: "_ffi.trib_journal_options",
    durability: str,
    max_line: int,
    max_backlog_bytes: Optional[int],
    full_wait: Optional[Seconds],
    key_retention: Optional[Seconds],
    busy_timeout: Optional[Seconds],
    allow_network_fs: bool,
) -> None:
    """Check and set the journal options (``opts`` holds the defaults already); shared
    by :class:`Journal` and :class:`~tributary.Appender`."""
    if durability == "full":
        opts.durability = _ffi.TRIB_DURABILITY_FULL
    elif durability == "normal":
        opts.durability = _ffi.TRIB_DURABILITY_NORMAL
    else:
        raise _arg_error(f"durability must be 'full' or 'normal', not {durability!r}")
    opts.max_line_bytes = _positive_int(max_line, "max_line")
    if max_backlog_bytes is not None:
        opts.max_backlog_bytes = _positive_int(max_backlog_bytes, "max_backlog_bytes")
    for name, value in (("full_wait", full_wait), ("key_retention", key_retention), ("busy_timeout", busy_timeout)):
        ms = _ms(value, name)
        if ms is not None:
            setattr(opts, {"full_wait": "full_wait_ms"}.get(name, name + "_ms"), ms)
    opts.allow_network_fs = bool(allow_network_fs)


class Journal(Managed):
    """A journal: the writer side, a SQLite WAL file on this host's local disk.

    ``append`` returns a line's seq once the line is durable (``durability="full"``:
    fsynced; ``"normal"``: survives a crash of the process, not of the machine). A
    compactor (:func:`drain`, or the ``tributary compact`` CLI) later moves the lines
    into the shared target exactly once.

    A Journal may be shared by threads: concurrent appends share fsyncs (group commit).
    Several processes may open the same file. A Journal object must not be used in a
    child process after ``fork()`` (open a new one there; the check raises
    :class:`InvalidArgumentError`).

    Args:
        path: the journal file (created, mode 0600, if missing), on a local disk.
        durability: ``"full"`` (default) or ``"normal"``.
        max_line: longest accepted line in bytes (default 1 MiB).
        max_backlog_bytes: refuse appends (:class:`JournalFullError`) once this many
            undrained bytes are waiting; None (default): no limit.
        full_wait: with ``max_backlog_bytes``, wait up to this long (seconds) for a
            drain to make room before raising.
        key_retention: how long ``append_keyed`` remembers a key (default 7 days).
        busy_timeout: how long to wait for another process's write lock (default 30 s).
        allow_network_fs: accept a journal on a network filesystem (only if it really
            is host-local).
    """

    def __init__(
        self,
        path: PathLike,
        durability: str = "full",
        max_line: int = DEFAULT_MAX_LINE_BYTES,
        max_backlog_bytes: Optional[int] = None,
        *,
        full_wait: Optional[Seconds] = None,
        key_retention: Optional[Seconds] = None,
        busy_timeout: Optional[Seconds] = None,
        allow_network_fs: bool = False,
    ) -> None:
        super().__init__()
        self.path = os.fspath(path)
        path_b = fspath_bytes(path, "path")
        opts = _ffi.trib_journal_options()
        call(lib.trib_journal_options_default, byref(opts))
        _fill_journal_options(
            opts, durability, max_line, max_backlog_bytes, full_wait, key_retention, busy_timeout, allow_network_fs
        )
        #: The durability this journal was opened with.
        self.durability = durability
        #: Longest accepted line in bytes.
        self.max_line = max_line
        handle = _ffi.trib_journal_p()
        call(lib.trib_journal_open, path_b, byref(opts), byref(handle))
        self._set_handle(handle)

    # -- handle life cycle (Managed): close waits for calls in flight, later calls are refused --

    def _delete(self, handle: int) -> None:
        lib.trib_journal_close(handle)

    def _what(self) -> str:
        return f"journal {self.path!r}"

    def close(self) -> None:
        """Close the journal (idempotent). Waits for appends in flight on other threads.
        Every line whose append returned is already durable."""
        super().close()

    def __repr__(self) -> str:
        return f"<tributary.Journal {self.path!r}{' closed' if self.closed else ''}>"

    # -- appends --

    def append(self, line: Line) -> int:
        """Append one line (bytes without ``\\n``, or str encoded as UTF-8); return its
        seq once it is durable. Raises :class:`InvalidLineError` (nothing stored) for a
        line with ``\\n`` or longer than ``max_line``, :class:`JournalFullError` past
        ``max_backlog_bytes``."""
        data = _line_bytes(line)
        seq = c_uint64()
        self._call(lib.trib_journal_append, data, len(data), byref(seq))
        return seq.value

    def append_many(self, lines: Iterable[Line]) -> int:
        """Append lines all-or-nothing in one transaction; they get consecutive seqs.
        Returns the first. One bad line refuses the whole batch
        (:class:`InvalidLineError` with ``.line_index``); an empty batch is an
        :class:`InvalidArgumentError`."""
        _not_one_item(lines, "lines")
        data = [_line_bytes(x, "each line", i) for i, x in enumerate(lines)]
        if not data:
            raise _arg_error("append_many() got no lines: an empty batch has no first seq")
        arr = (_ffi.trib_slice * len(data))()
        for i, d in enumerate(data):
            arr[i].ptr = d
            arr[i].len = len(d)
        first = c_uint64()
        self._call(lib.trib_journal_append_batch, arr, len(data), byref(first))
        return first.value

    def append_keyed(self, key: Line, line: Line) -> int:
        """Append a line once per idempotency key (non-empty bytes or str): a retry with
        a key seen within the retention window stores nothing and returns the first
        call's seq."""
        k = _line_bytes(key, "key")
        data = _line_bytes(line)
        seq = c_uint64()
        self._call(lib.trib_journal_append_keyed, k, len(k), data, len(data), byref(seq))
        return seq.value

    def append_keyed_outcome(self, key: Line, line: Line) -> KeyedAppend:
        """:meth:`append_keyed`, saying whether this call stored the line
        (``KeyedAppend(seq, stored=True)``) or its key was already stored and the retry
        was absorbed (``stored=False``, the earlier seq). Exact with any number of
        writers: decided inside the append transaction."""
        k = _line_bytes(key, "key")
        data = _line_bytes(line)
        out = _ffi.trib_keyed_append()
        self._call(lib.trib_journal_append_keyed_outcome, k, len(k), data, len(data), byref(out))
        return KeyedAppend(out.seq, bool(out.stored))

    def append_keyed_many(self, items: Iterable[Tuple[Line, Line]]) -> List[KeyedAppend]:
        """Append ``(key, line)`` pairs all-or-nothing in one transaction (one fsync),
        each stored once per key; returns each line's :class:`KeyedAppend`. A key repeated
        in the batch is stored by its first line, the later ones absorbed. An empty batch
        does nothing."""
        pairs = [(_line_bytes(k, "key"), _line_bytes(x, "each line", i)) for i, (k, x) in enumerate(items)]
        if not pairs:
            return []
        keys = _slices([k for k, _ in pairs])
        lines = _slices([x for _, x in pairs])
        outs = (_ffi.trib_keyed_append * len(pairs))()
        self._call(lib.trib_journal_append_keyed_batch, keys, lines, len(pairs), outs)
        return [KeyedAppend(o.seq, bool(o.stored)) for o in outs]

    def append_many_with_cursor(self, lines: Iterable[Line], name: str, cursor: "Cursor") -> int:
        """Append ``lines`` (zero or more) AND record ``cursor`` under ``name`` in this
        journal's own file, in ONE transaction: both are durable or neither is. For a
        program that reads a target, appends what it derived from it here, and must
        remember how far it read atomically with those results (a crash never leaves
        results without their cursor, or a cursor without its results). Read it back with
        :meth:`cursor`. Returns the first line's seq, or 0 when ``lines`` is empty.

        ``cursor`` is a :class:`Cursor` (a reader's ``.cursor``), a tuple or its text.
        One name follows one target: a cursor of another target than the one ``name``
        holds, or one without a target id (a ``(generation, offset)`` tuple; ``(0, 0)``
        excepted, which resets the name), is an :class:`InvalidArgumentError`, as is
        one no reader opens at (generation 0 with an offset), and nothing is stored."""
        from ._reader import _cursor_to_c

        data = [_line_bytes(x, "each line", i) for i, x in enumerate(lines)]
        c = _cursor_to_c(cursor)
        first = c_uint64()
        self._call(
            lib.trib_journal_append_batch_with_cursor, _slices(data), len(data), _name_bytes(name), byref(c), byref(first)
        )
        return first.value

    def cursor(self, name: str) -> "Optional[Cursor]":
        """The cursor last recorded under ``name`` by :meth:`append_many_with_cursor`, or
        None: resume with ``Reader(target, cursor=journal.cursor(name))`` (a reader of
        another target refuses it)."""
        from ._reader import _cursor_from_c

        out = _ffi.trib_cursor()
        found = c_bool()
        self._call(lib.trib_journal_cursor, _name_bytes(name), byref(out), byref(found))
        return _cursor_from_c(out) if found.value else None

    # -- inspection --

    def backlog(self) -> Backlog:
        """What is waiting in this journal, and its seq counters."""
        b = _ffi.trib_backlog()
        self._call(lib.trib_journal_backlog, byref(b))
        return Backlog._from_c(b)

    @property
    def id(self) -> str:
        """The journal's random 128-bit id, 32 hex digits."""
        buf = ctypes.create_string_buffer(_ffi.TRIB_ID_BUF_LEN)
        self._call(lib.trib_journal_id, buf, len(buf))
        return buf.value.decode()
