"""The reading side: :class:`Reader` (committed lines of a target, optionally following
it; its handle life cycle is ``_managed.Managed``'s) and :class:`Cursor` (a reading
position, kept and resumed from), with the conversions of a cursor to and from the C
ABI's ``trib_cursor``."""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import time
from ctypes import POINTER, byref, c_bool, c_size_t, c_ubyte, c_uint64
from typing import Any, Iterator, List, NamedTuple, Optional, Tuple, Union

from . import _ffi
from ._ffi import call, fspath_bytes, lib
from ._managed import Managed
from ._util import PathLike, Seconds, _arg_error, _ms, _u64

__all__ = ["Cursor", "Lag", "Reader"]


class Lag(NamedTuple):
    """How far a reader is behind the committed end (:meth:`Reader.lag`)."""

    #: Committed bytes after the reader's position (the rest of its generation, every
    #: later kept generation, the current one's committed part); 0: caught up.
    bytes: int
    #: Generations after the one the reader is in (0: it reads the current one).
    later_generations: int


class Cursor(NamedTuple):
    """A reading position in a target: a generation of it, the byte offset of a line's
    start in that generation, and the id of the target it belongs to (32 hex digits, as
    ``tributary.status(target).target_id`` reports it).

    ``Cursor(0, 0)`` is the very beginning: the oldest generation still kept, on any
    target. ``target_id`` is None there, in a *legacy* cursor (two numbers kept by an
    earlier version, or the text ``"generation:offset"``), and in the position of a
    reader of a target that does not exist yet (it learns the id when the target
    appears). A Reader refuses a cursor whose ``target_id`` is another target's
    (:class:`InvalidArgumentError`, reading nothing): a cursor kept for one target
    cannot be used on another. A cursor without an id cannot be checked.

    ``str(cursor)`` is its text, ``"<target_id>:<generation>:<offset>"`` (or
    ``"<generation>:<offset>"`` without an id); :meth:`Cursor.parse` reads both forms.
    """

    generation: int
    offset: int
    target_id: Optional[str] = None

    def __str__(self) -> str:
        prefix = f"{self.target_id}:" if self.target_id else ""
        return f"{prefix}{self.generation}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> "Cursor":
        """A cursor from its text: ``"<target_id>:<generation>:<offset>"``, or the legacy
        ``"<generation>:<offset>"`` (no id). Anything else is :class:`InvalidArgumentError`."""
        if not isinstance(text, str):
            raise TypeError(f"cursor text must be a str, not {type(text).__name__}")
        if "\0" in text:
            raise _arg_error(f"cursor text {text!r} contains a NUL byte")
        out = _ffi.trib_cursor()
        call(lib.trib_cursor_parse, text.encode("utf-8"), byref(out))
        return _cursor_from_c(out)


def _cursor_from_c(c: "_ffi.trib_cursor") -> Cursor:
    tid = c.target_id.decode("ascii")
    return Cursor(c.generation, c.offset, tid or None)


def _cursor_to_c(cursor: Any) -> "_ffi.trib_cursor":
    """A Cursor, a ``(generation, offset[, target_id])`` tuple or a cursor's text, as the
    C ABI's ``trib_cursor``."""
    if isinstance(cursor, str):
        cursor = Cursor.parse(cursor)
    if not isinstance(cursor, tuple) or len(cursor) not in (2, 3):
        raise TypeError(
            "cursor must be a Cursor, a (generation, offset[, target_id]) tuple or a cursor's text, "
            f"not {cursor!r}"
        )
    generation, offset = cursor[0], cursor[1]
    target_id = cursor[2] if len(cursor) == 3 else None
    for name, value in (("cursor.generation", generation), ("cursor.offset", offset)):
        _u64(value, name)
    if target_id is not None and not isinstance(target_id, str):
        raise TypeError(f"cursor.target_id must be a str or None, not {type(target_id).__name__}")
    tid = (target_id or "").encode("ascii", errors="replace")
    if len(tid) >= _ffi.TRIB_ID_BUF_LEN:
        raise _arg_error(f"cursor.target_id {target_id!r} is not 32 hex digits")
    return _ffi.trib_cursor(generation, offset, tid)


class Reader(Managed):
    """Committed lines of a target, from a cursor: iterate to get each line as bytes
    without its ``\\n``. Never shows an uncommitted or torn tail; goes on from a rotated
    generation into the next one.

    ``Reader(target, offset)`` starts at byte ``offset`` of the current generation;
    ``Reader(target, cursor=c)`` resumes at a :class:`Cursor` kept from an earlier
    reader's ``.cursor`` (valid across managed rotations; refused on another target),
    or at its text (``str(c)``); ``cursor=Cursor(0, 0)`` starts at the oldest
    generation still kept.

    ``.line_start`` is where the line just returned starts: its identity for results
    keyed by their source line (the same whether the line is read before or after a
    rotation of its generation, unlike ``.cursor`` taken before reading it).

    Without ``follow``, iteration stops at the committed end; with ``follow=True`` it
    waits for drains to commit more, forever (stop with ``break``, ``close()`` from
    the same thread, or Ctrl-C: the wait is sliced into ``poll_interval`` pieces).

    A Reader is safe to share between threads (calls are serialised), though one
    reader per consumer is the natural use.
    """

    def __init__(
        self,
        target: PathLike,
        offset: int = 0,
        *,
        cursor: Union[Cursor, Tuple[int, int], Tuple[int, int, Optional[str]], str, None] = None,
        follow: bool = False,
        poll_interval: Seconds = 0.2,
    ) -> None:
        super().__init__()
        self._lock = threading.RLock()  # a trib_reader is single-threaded: one call at a time
        self.target = os.fspath(target)
        self.follow = follow
        poll_ms = _ms(poll_interval, "poll_interval")
        self._poll_ms = max(1, poll_ms if poll_ms is not None else 200)
        _u64(offset, "offset")
        c_cursor = _cursor_to_c(cursor) if cursor is not None else None
        target_b = fspath_bytes(target, "target")
        handle = _ffi.trib_reader_p()
        if c_cursor is not None:
            if offset:
                raise _arg_error("give either offset or cursor, not both")
            call(lib.trib_reader_open_cursor, target_b, byref(c_cursor), byref(handle))
        else:
            call(lib.trib_reader_open, target_b, offset, byref(handle))
        self._set_handle(handle)
        self._returned_a_line = False
        self._has = c_bool()
        self._line = POINTER(c_ubyte)()
        self._len = c_size_t()

    def _delete(self, handle: int) -> None:
        lib.trib_reader_close(handle)

    def _what(self) -> str:
        return f"reader of {self.target!r}"

    @contextlib.contextmanager
    def _serialised(self) -> Iterator[None]:
        """One call at a time on this reader. Closed or forked is refused first, not
        after waiting for another thread's call (in a forked child, for a thread that
        does not exist there)."""
        self._check()
        with self._lock:
            yield

    def _next(self, wait_ms: int) -> Optional[bytes]:
        with self._serialised():
            # Borrowed until the line is copied: it is the reader's memory, which a
            # close() on another thread would free.
            handle = self._borrow()
            try:
                call(lib.trib_reader_next, handle, wait_ms, byref(self._has), byref(self._line), byref(self._len))
                if not self._has.value:
                    return None
                self._returned_a_line = True
                return ctypes.string_at(self._line, self._len.value)
            finally:
                self._release()

    def read_line(self, timeout: Optional[Seconds] = 0) -> Optional[bytes]:
        """The next committed line, or None if there is none within ``timeout`` seconds
        (0: do not wait; None: wait until there is one)."""
        if timeout is None:
            while True:
                line = self._next(self._poll_ms)
                if line is not None:
                    return line
        ms = _ms(timeout, "timeout") or 0
        deadline = time.monotonic() + ms / 1000
        while True:
            left = max(0, int((deadline - time.monotonic()) * 1000))
            line = self._next(min(left, self._poll_ms))
            if line is not None or left == 0:
                return line

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.read_line(None if self.follow else 0)
        if line is None:
            raise StopIteration
        return line

    def lines(self) -> List[bytes]:
        """Every committed line from the current offset to the committed end."""
        out = []
        while True:
            line = self.read_line(0)
            if line is None:
                return out
            out.append(line)

    @property
    def offset(self) -> int:
        """Byte offset of the next line within the generation being read."""
        off = c_uint64()
        with self._serialised():
            self._call(lib.trib_reader_offset, byref(off))
        return off.value

    @property
    def cursor(self) -> Cursor:
        """Where the next line starts, with the target's id: keep it (or ``str()`` of
        it) to resume later with ``Reader(target, cursor=...)``, across managed
        rotations too. At the end of a generation the reader knows was rotated, it is
        the start of the next one."""
        out = _ffi.trib_cursor()
        with self._serialised():
            self._call(lib.trib_reader_position, byref(out))
        return _cursor_from_c(out)

    @property
    def line_start(self) -> Optional[Cursor]:
        """Where the line last returned starts (its generation, the offset of its first
        byte, the target's id), or None before the first line. This is the line's
        identity for results keyed by their source line (the exactly-once pipeline
        pattern): the same whether the line was read before or after a rotation of its
        generation."""
        out = _ffi.trib_cursor()
        with self._serialised():  # closed, or forked: raise even before the first line
            if not self._returned_a_line:
                return None
            self._call(lib.trib_reader_line_start, byref(out))
        return _cursor_from_c(out)

    def lag(self) -> Lag:
        """How far this reader is behind the committed end, as of a fresh read of the
        manifest (cheap: two 4 KiB reads of the target's lock file, nothing of the
        target; lines are not counted, that would need a scan). ``lag().bytes == 0``:
        caught up. It does not move the reader."""
        out = _ffi.trib_lag()
        with self._serialised():
            self._call(lib.trib_reader_lag, byref(out))
        return Lag(out.bytes, out.later_generations)

    def __repr__(self) -> str:
        return f"<tributary.Reader {self.target!r}{' closed' if self.closed else ''}>"
