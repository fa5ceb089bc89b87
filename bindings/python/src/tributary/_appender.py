"""Background commit for Python: :class:`Appender`, a journal with a committer thread
(``trib_appender``; docs/design.md, "Background commit"). ``push`` returns before the
line is durable; ``flush`` waits until it is."""

from __future__ import annotations

import atexit
import os
import sys
import threading
import weakref
from ctypes import byref, c_double, c_int, c_uint64
from dataclasses import dataclass
from typing import Optional

from . import _ffi
from ._ffi import call, error_from, fspath_bytes, lib
from ._journal import DEFAULT_MAX_LINE_BYTES, Line, _fill_journal_options, _line_bytes
from ._managed import Managed, _frame
from ._util import PathLike, Seconds, _arg_error, _positive_int

__all__ = ["Appender", "AppenderStats"]

_push = lib.trib_appender_push


@dataclass(frozen=True)
class AppenderStats:
    """An appender's counters since it was opened (:attr:`Appender.stats`)."""

    #: Lines queued by ``push``: the ``n``-th pushed line is durable once ``committed``
    #: reaches ``n`` (lines are committed in push order).
    pushed: int
    #: Lines committed (durable).
    committed: int
    #: Lines dropped because the queue was full (``on_full="drop"``).
    dropped: int
    #: Transactions the committer made (lines per transaction: committed / commits).
    commits: int
    #: Commit attempts that failed (each retried).
    failed_commits: int

#: Appenders open in this process: flushed at exit, so that what was pushed before a
#: normal exit is durable (``logging.shutdown`` flushes handlers the same way).
_open: "weakref.WeakSet[Appender]" = weakref.WeakSet()


#: The process whose appenders make every push durable on return (see below).
_durable_on_push_in = 0


@atexit.register
def _flush_open_appenders(close: bool = True) -> None:
    global _durable_on_push_in
    if not close:
        # A multiprocessing child's exit (below): its non-daemon threads are joined after
        # this, then it ends with os._exit — a record they log must be durable when
        # logged, or it dies queued (an outside tester: 326-467 of 900 a fork child's
        # thread logged in bursts).
        _durable_on_push_in = os.getpid()
    for a in list(_open):
        try:
            if close:
                a.close()
            elif os.getpid() == a._pid and not a.closed:
                a.flush()
        except Exception as e:  # noqa: BLE001 - at exit: stderr is all there is
            lost = getattr(e, "records_not_stored", 0)
            what = f"{lost} line(s) pushed to {a.path!r} were not stored" if lost else (
                f"lines pushed to {a.path!r} may not be durable")
            sys.stderr.write(f"--- tributary: {what} at exit: {e}\n")


#: The process whose multiprocessing exit flushes its appenders (see below).
_flushed_by_multiprocessing_in = 0


class _AfterForkKey:
    """What multiprocessing's after-fork registry holds (weakly) for this module."""


_after_fork_key: Optional[_AfterForkKey] = None


def _finalize_again(_key: _AfterForkKey) -> None:
    """After multiprocessing cleared its exit finalizers in a new child process: ours
    again, for the appenders opened before that (see below)."""
    global _flushed_by_multiprocessing_in
    _flushed_by_multiprocessing_in = 0
    if _open:
        _flush_at_multiprocessing_exit()


def _flush_at_multiprocessing_exit() -> None:
    """A ``multiprocessing`` child (``fork``, ``forkserver``) ends with ``os._exit``:
    no ``atexit`` function runs, only multiprocessing's exit finalizers, so this
    process's appenders are flushed by one of those too (an outside tester lost the
    queued records of every fork child that returned normally). Flushed, not closed:
    the child's non-daemon threads are joined only after its finalizers ran, and a
    closed appender refused every record they logged meanwhile (an outside reviewer:
    199 of 200). What they log after this flush is durable within ``window``, as
    before.

    A ``spawn`` or ``forkserver`` child imports the main module — which may open an
    appender, registering this — *before* its process starts, and starting clears
    every exit finalizer registered so far: an after-fork hook (run right after that
    clearing) registers it again (an outside tester: a ``forkserver`` child that
    returned normally lost 25 to 309 of its 2,000 records)."""
    global _flushed_by_multiprocessing_in, _after_fork_key
    util = sys.modules.get("multiprocessing.util")
    if util is None or _flushed_by_multiprocessing_in == os.getpid():
        return
    _flushed_by_multiprocessing_in = os.getpid()
    util.Finalize(None, _flush_open_appenders, kwargs={"close": False}, exitpriority=0)
    if _after_fork_key is None:  # once: a forked child inherits the registration
        _after_fork_key = _AfterForkKey()
        util.register_after_fork(_after_fork_key, _finalize_again)


class Appender(Managed):
    """A journal with a background committer, for logging paths that cannot wait for
    an fsync per record.

    ``push(line)`` validates the line (a bad one raises :class:`InvalidLineError` at
    once), queues it and returns: the line is **not durable yet**. A committer thread
    appends everything queued as one transaction (one fsync), so that a line is
    durable within ``window`` seconds of its push (unless one commit alone takes
    longer); ``push`` waits (or drops, ``on_full="drop"``) while a line not yet
    durable has waited longer than that. ``flush()`` returns once every line
    pushed before it is durable, or raises the error of a commit attempt that failed
    meanwhile (the lines stay queued and are retried). ``close()`` (and ``with``, and
    interpreter exit) flushes first.

    What a crash can lose: lines pushed in the last ``window`` — never a line pushed
    before a ``flush()`` that returned. Lines are committed in push
    order.

    Args:
        path: the journal file (created if missing), on a local disk.
        window: the durability window in seconds (default 0.01); 0: no linger — the
            committer commits at once, and a push waits (or drops) while a line pushed
            before it is not durable yet.
        max_queue_bytes: most bytes queued and not committed (default 8 MiB).
        on_full: ``"block"`` (default: ``push`` waits for room) or ``"drop"`` (``push``
            drops the line, returns False and counts it in :attr:`dropped`).
        durability, max_line, max_backlog_bytes, full_wait, allow_network_fs: as for
            :class:`tributary.Journal`.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        window: Seconds = 0.01,
        max_queue_bytes: int = 8 << 20,
        on_full: str = "block",
        durability: str = "full",
        max_line: int = DEFAULT_MAX_LINE_BYTES,
        max_backlog_bytes: Optional[int] = None,
        full_wait: Optional[Seconds] = None,
        allow_network_fs: bool = False,
    ) -> None:
        super().__init__()
        self.path = os.fspath(path)
        # Set once a close has stored (or given up on) the queued lines; the thread
        # running that close.
        self._close_done = threading.Event()
        self._closing_thread: Optional[int] = None
        path_b = fspath_bytes(path, "path")
        opts = _ffi.trib_appender_options()
        call(lib.trib_appender_options_default, byref(opts))
        _fill_journal_options(opts.journal, durability, max_line, max_backlog_bytes, full_wait, None, None, allow_network_fs)
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 <= window <= 86400:
            raise _arg_error(f"window must be a number of seconds from 0 to 86400, not {window!r}")
        opts.window_us = int(window * 1_000_000)
        opts.max_queue_bytes = _positive_int(max_queue_bytes, "max_queue_bytes")
        if on_full == "block":
            opts.on_full = _ffi.TRIB_ON_FULL_BLOCK
        elif on_full == "drop":
            opts.on_full = _ffi.TRIB_ON_FULL_DROP
        else:
            raise _arg_error(f"on_full must be 'block' or 'drop', not {on_full!r}")
        #: The durability the journal was opened with.
        self.durability = durability
        handle = _ffi.trib_appender_p()
        call(lib.trib_appender_open, path_b, byref(opts), byref(handle))
        self._set_handle(handle)
        self._drops = on_full == "drop"
        #: Records pushed and never stored: set by a :meth:`close` that gave up on
        #: them (the error it raised says so too); 0 otherwise.
        self.records_not_stored = 0
        _open.add(self)
        _flush_at_multiprocessing_exit()

    # -- handle life cycle (Managed) --

    def _delete(self, handle: int) -> None:
        """Close the handle of an Appender garbage-collected without ``close()``: what
        it could not store is said on stderr, as the exit hook says it — nobody is left
        to raise it to (its loss went unseen: an outside tester)."""
        err = _ffi.trib_error_p()
        if lib.trib_appender_close(handle, byref(err)) != _ffi.TRIB_OK:
            e = error_from(_ffi.TRIB_E_IO, err)
            self.records_not_stored = e.records_not_stored
            sys.stderr.write(
                f"--- tributary: an Appender on {self.path!r} was garbage-collected without close(): "
                f"{e.records_not_stored} line(s) pushed to it were not stored: {e}\n"
            )

    def _what(self) -> str:
        return f"appender on journal {self.path!r}"

    def close(self) -> None:
        """Flush, stop the committer and close the journal (idempotent). Raises if lines
        could not be stored (the error says how many)."""
        if os.getpid() != self._pid:
            super().close()  # the parent's: forgotten, not flushed or freed here
            self._close_done.set()
            return
        with self._cond:
            handle, self._handle = self._handle, None
            if handle is not None:
                self._closing_thread = threading.get_ident()
            self._wait_for_calls(handle)
        _open.discard(self)
        if handle is not None:
            try:
                err = _ffi.trib_error_p()
                rc = lib.trib_appender_close(handle, byref(err))
                if rc != _ffi.TRIB_OK:
                    e = error_from(rc, err)
                    self.records_not_stored = e.records_not_stored
                    raise e
            finally:
                self._close_done.set()

    def wait_closed(self) -> None:
        """Wait until a ``close()`` that another thread began has stored the lines
        still queued (or given up on them): what this thread writes to the journal
        after that comes after them. Returns at once on the thread running that close
        (a signal handler inside it) and on an appender that is open."""
        if self.closed and self._closing_thread != threading.get_ident():
            self._close_done.wait()

    def __repr__(self) -> str:
        return f"<tributary.Appender {self.path!r}{' closed' if self.closed else ''}>"

    # -- the queue --

    def push(self, line: Line) -> bool:
        """Queue one line (bytes without ``\\n``, or str encoded as UTF-8) for the next
        commit; True when queued, False when dropped because the queue was full
        (``on_full="drop"``): it holds ``max_queue_bytes``, or a line not yet durable
        has waited longer than ``window`` (the committer is behind). Not durable until :meth:`flush` returns (or the
        committer's next commit, within ``window``). A push waiting for room raises
        the error of a commit attempt that failed meanwhile (e.g. a full disk), the
        line not queued."""
        # Once per log record: Managed._call's borrow and release, inlined; no result
        # storage unless the queue can drop (it is always queued otherwise).
        data = line if type(line) is bytes else _line_bytes(line)
        cond, calls, frame = self._cond, self._calls, _frame()
        with cond:
            calls[frame] = None  # before the handle is read (as Managed._borrow)
            try:
                handle = self._check()
            except BaseException:
                del calls[frame]
                raise
        try:
            err = _ffi.trib_error_p()
            if self._drops:
                queued = c_int()
                rc = _push(handle, data, len(data), byref(queued), byref(err))
            else:
                rc = _push(handle, data, len(data), None, byref(err))
        finally:
            with cond:
                calls.pop(frame, None)
                if not calls:
                    cond.notify_all()
        if rc:
            raise error_from(rc, err)
        if _durable_on_push_in == self._pid:
            self.flush()
        return not self._drops or bool(queued.value)

    def flush(self) -> None:
        """Wait until every line pushed before this call is durable."""
        self._call(lib.trib_appender_flush)

    @property
    def stats(self) -> AppenderStats:
        """The counters: pushed, committed, dropped, commits, failed_commits."""
        s = _ffi.trib_appender_stats()
        self._call(lib.trib_appender_read_stats, byref(s))
        return AppenderStats(s.pushed, s.committed, s.dropped, s.commits, s.failed_commits)

    def durable_wait(self, q: float = 0.99) -> Optional[float]:
        """The durability window as measured, in seconds: the wait (push -> durable)
        that a fraction ``q`` (0 to 1) of the lines committed so far did not exceed
        (``q=1``: the longest); None before the first commit. Each line counts with its
        own wait (its push -> its batch's fsync returned), rounded up to a bucket at
        most 6 % wide, so it never reads below the true wait. Above ``window``: commits alone take longer (a slow
        disk)."""
        us = c_uint64()
        self._call(lib.trib_appender_durable_wait, c_double(q), byref(us))
        return us.value / 1e6 if us.value else None

    @property
    def dropped(self) -> int:
        """Lines dropped so far because the queue was full (``on_full="drop"``)."""
        return self.stats.dropped
