"""A :mod:`logging` handler that writes each record as one line of a tributary journal.

The Python logging cookbook says that logging to a single file from multiple processes
is not supported. With tributary it is: give every process (on every host) a
:class:`JournalHandler` on a journal on its local disk, and run one compactor per host
(``tributary compact --target /mnt/shared/app.log --spool /var/spool/app``, or
:func:`tributary.drain` in a loop). Every record that ``emit`` stored ends up in the
shared file exactly once, never torn or interleaved with another record, records of one
process in order.

Records with line breaks: a target line cannot contain ``\\n``, so the formatted record
is escaped: ``\\`` becomes ``\\\\``, a newline becomes ``\\n`` and a carriage return
``\\r`` (the two characters backslash and letter). Tracebacks therefore stay on the one
line of their record; :func:`unescape` restores the original text exactly.

Records that cannot be stored (longer than the journal's ``max_line`` after escaping,
journal full, I/O error) are never dropped silently: the handler calls
:meth:`logging.Handler.handleError` (which prints the error and the record to stderr
while ``logging.raiseExceptions`` is true, the default) and counts them in
:attr:`JournalHandler.failed_records`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from typing import Any, Dict, Optional, Union

from ._appender import Appender
from ._journal import DEFAULT_MAX_LINE_BYTES, Journal
from ._util import PathLike, Seconds
from .errors import JournalGoneError, NotDurableError, TributaryError

__all__ = ["JournalHandler", "escape", "unescape"]

# How many times in a row a record is sent to its journal opened again at the path
# after ``JournalGoneError`` (a name retired as fast as it is made), as the Rust Appender.
_REOPEN_ATTEMPTS = 20

# Options of an Appender that a Journal does not take.
_APPENDER_ONLY = ("window", "max_queue_bytes", "on_full")

# `\\`, `\n`, `\r`, and `\udcXX`: a lone surrogate, which UTF-8 cannot encode, is
# written by the handler as this escape (``backslashreplace``); a backslash in the text
# itself is doubled first, so the two never mix.
_UNESCAPE = re.compile(r"\\(u[dD][89a-fA-F][0-9a-fA-F]{2}|.)", re.DOTALL)
_UNESCAPES = {"\\": "\\", "n": "\n", "r": "\r"}


def escape(text: str) -> str:
    """Make ``text`` one line: ``\\`` -> ``\\\\``, newline -> ``\\n``, CR -> ``\\r``."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def unescape(line: str) -> str:
    """The inverse of :func:`escape`, and of the ``\\udcXX`` escapes the handler writes
    for lone surrogates: the exact text of the record."""

    def one(m: re.Match[str]) -> str:
        g = m.group(1)
        if len(g) == 5:  # uXXXX, a lone surrogate
            return chr(int(g[1:], 16))
        return _UNESCAPES.get(g, m.group(0))

    return _UNESCAPE.sub(one, line)


def _called_by_logging_shutdown() -> bool:
    """Whether :func:`logging.shutdown` is among the callers (a subclass's ``flush``
    calling ``super().flush()`` is one frame more: an outside tester)."""
    try:
        frame = sys._getframe(2)
    except (AttributeError, ValueError):  # no frames to look at: assume a user's call
        return False
    for _ in range(8):
        if frame is None:
            return False
        if frame.f_code is logging.shutdown.__code__:
            return True
        frame = frame.f_back
    return False


class JournalHandler(logging.Handler):
    """Write each formatted record as one line of the journal at ``path``.

    ``emit`` returns once the record is durable (``durability="full"``: fsynced). Calls
    from several threads share fsyncs (group commit): unlike most handlers this one does
    not serialise ``emit`` behind the handler's lock, since the journal is thread-safe.

    With ``background=True`` (background commit, :class:`tributary.Appender`), ``emit``
    queues the record and returns at once; a committer thread makes what is queued
    durable in one transaction, each record within ``window`` seconds (default 0.01)
    of its ``emit``. :meth:`flush` (which ``logging.shutdown`` calls at exit) waits
    until every record emitted before it is durable, or raises
    :class:`~tributary.NotDurableError`. A crash loses at most the records
    of that window, never one emitted before a ``flush()`` that returned. When
    ``max_queue_bytes`` are queued, ``emit`` waits (``on_full="block"``, the default)
    or drops the record and counts it in :attr:`dropped_records` (``on_full="drop"``).

    Safe across ``fork()``: a forked child logs to a journal file of its own,
    ``<name>.<pid>.journal`` beside ``path`` (for ``app.journal``: ``app.1234.journal``),
    opened the first time it logs. Drain the folder (``spool=``), not the one file. A
    child cannot share its parent's journal: SQLite's locks do not carry over
    ``fork()``, and its lines could be lost.

    Args:
        path: the journal file, on this host's local disk (created if missing).
        level: the handler's level.
        durability, max_line, max_backlog_bytes, full_wait, allow_network_fs: as for
            :class:`tributary.Journal`.
        background, window, max_queue_bytes, on_full: background commit (above).
    """

    def __init__(
        self,
        path: PathLike,
        level: int = logging.NOTSET,
        *,
        durability: str = "full",
        max_line: int = DEFAULT_MAX_LINE_BYTES,
        max_backlog_bytes: Optional[int] = None,
        full_wait: Optional[Seconds] = None,
        allow_network_fs: bool = False,
        background: bool = False,
        window: Seconds = 0.01,
        max_queue_bytes: int = 8 << 20,
        on_full: str = "block",
    ) -> None:
        super().__init__(level)
        self.path = os.fspath(path)
        self._options: Dict[str, Any] = dict(
            durability=durability,
            max_line=max_line,
            max_backlog_bytes=max_backlog_bytes,
            full_wait=full_wait,
            allow_network_fs=allow_network_fs,
        )
        #: True when records are committed in the background (see above).
        self.background = bool(background)
        if self.background:
            self._options.update(window=window, max_queue_bytes=max_queue_bytes, on_full=on_full)
        self._creator_pid = os.getpid()
        self._closed = False  # close() ran: later records go through a Journal
        self._journals: Dict[int, Union[Journal, Appender]] = {}
        self._open_lock = threading.Lock()
        self._count_lock = threading.Lock()
        #: Records that could not be stored (each also went to :meth:`handleError`).
        self.failed_records = 0
        #: Records dropped because the background queue was full (``on_full="drop"``).
        self.dropped_records = 0
        self.journal  # open now: a bad path or option fails at configuration time

    @property
    def journal(self) -> Union[Journal, Appender]:
        """This process's journal — an :class:`~tributary.Appender` with
        ``background=True`` (in a forked child, its own file, opened on first use)."""
        pid = os.getpid()
        j = self._journals.get(pid)
        if j is None:
            with self._open_lock:
                j = self._journals.get(pid)
                if j is None:
                    if self.background and not self._closed:
                        j = Appender(self.path_for(pid), **self._options)
                    else:
                        # (closed — by `logging.shutdown` at exit while daemon threads
                        # still log — records are appended durably: a new Appender
                        # would never be flushed, an outside tester lost ~1,100)
                        j = Journal(self.path_for(pid), **self._journal_options())
                    self._journals[pid] = j
        return j

    def _reopen(self, gone: Union[Journal, Appender]) -> Union[Journal, Appender]:
        """This process's journal opened again at its path, in place of ``gone`` (once,
        for every thread that met it gone; ``gone`` is left to the garbage collector,
        since other threads may still be in a call on it)."""
        pid = os.getpid()
        with self._open_lock:
            j = self._journals.get(pid)
            if j is gone or j is None:
                j = Journal(self.path_for(pid), **self._journal_options())
                self._journals[pid] = j
        return j

    def _journal_options(self) -> Dict[str, Any]:
        """The options a Journal takes (a background handler's are an Appender's)."""
        return {k: v for k, v in self._options.items() if k not in _APPENDER_ONLY}

    def path_for(self, pid: int) -> str:
        """The journal file process ``pid`` logs to: ``path`` in the process that made
        the handler, ``<name>.<pid>.journal`` beside it in a forked child."""
        if pid == self._creator_pid:
            return self.path
        stem, ext = os.path.splitext(self.path)
        return f"{stem}.{pid}{ext or '.journal'}"

    def handle(self, record: logging.LogRecord) -> Any:  # type: ignore[override]
        """Filter and emit without taking the handler's lock (the journal is
        thread-safe; concurrent records share fsyncs)."""
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):  # Python 3.12+: a filter may return a record
            record = rv
        if rv:
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Append the formatted, escaped record; on failure count it and call
        :meth:`handleError` (never a silent drop)."""
        try:
            line = escape(self.format(record)).encode("utf-8", "backslashreplace")
            j = self._journals.get(os.getpid()) or self.journal
            if isinstance(j, Appender) and j.closed:
                # Closed by the exit hook while threads still log (daemon threads during
                # interpreter shutdown): durable appends from here on, not a "Logging
                # error" per record (an outside tester) — once the close has stored
                # the records still queued, this thread's earlier ones among them (an
                # append before that put a thread's record 500 before its 0-499).
                j.wait_closed()
                j = self._reopen(j)
            if isinstance(j, Appender):
                if not j.push(line):
                    with self._count_lock:
                        self.dropped_records += 1
            else:
                for attempt in range(_REOPEN_ATTEMPTS + 1):
                    try:
                        j.append(line)  # type: ignore[union-attr]
                        break
                    except JournalGoneError:
                        # Retired or removed under this process (``--retire-idle``,
                        # ``tributary retire``): nothing of the record was stored; log
                        # on into a journal opened again at the path (every later
                        # record failed for good: an outside tester).
                        if attempt == _REOPEN_ATTEMPTS:
                            raise
                        j = self._reopen(j)
        except RecursionError:
            raise
        except Exception:
            with self._count_lock:
                self.failed_records += 1
            self.handleError(record)

    def flush(self) -> None:
        """With ``background=True``, wait until every record emitted before this call is
        durable, or raise :class:`~tributary.NotDurableError` (an ``OSError``, as a
        stream handler's failed flush: ``logging.shutdown`` carries on) with the failure
        of a commit attempt meanwhile; the records stay queued and are retried. Without,
        every emitted record is already durable."""
        j = self._journals.get(os.getpid())
        # (closed by the exit hook, which flushed it and said if that failed:
        # ``logging.shutdown`` runs after it)
        if isinstance(j, Appender) and not j.closed:
            try:
                j.flush()
            except TributaryError as e:
                # ``logging.shutdown`` (also run by ``dictConfig``) skips ``close`` after a
                # flush that raised, and close is what counts and reports records lost:
                # there, close says it.
                if _called_by_logging_shutdown():
                    return
                # Raised, whatever ``logging.raiseExceptions`` says: a flush that
                # returned promises the records are durable (an outside tester's flush
                # returned quietly, and a SIGKILL then lost 57 of 100 records).
                raise NotDurableError.of("records emitted before this flush are not durable", e) from e

    def close(self) -> None:
        """Close this process's journal handle; with ``background=True`` after making
        every emitted record durable. Records it must give up on (their commits kept
        failing) are counted in :attr:`failed_records`, and it raises
        :class:`~tributary.NotDurableError` saying how many
        (``records_not_stored``)."""
        with self._open_lock:
            self._closed = True
            j = self._journals.pop(os.getpid(), None)
        failure: Optional[TributaryError] = None
        try:
            if j is not None:
                try:
                    j.close()
                except TributaryError as e:
                    failure = e
                # (an appender the exit hook closed first said so on stderr; its loss
                # is counted here all the same)
                lost = j.records_not_stored if isinstance(j, Appender) else 0
                if lost:
                    with self._count_lock:
                        self.failed_records += lost
        finally:
            super().close()
        if failure is not None:
            if logging.raiseExceptions:
                sys.stderr.write(f"--- tributary.JournalHandler could not make records durable: {failure}\n")
            raise NotDurableError.of("closing the handler", failure) from failure

    def __repr__(self) -> str:
        return f"<JournalHandler {self.path!r} ({logging.getLevelName(self.level)})>"
