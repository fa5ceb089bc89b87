"""The compactor daemon for Python: :class:`Compactor` (a target and its journal
sources, run as a daemon, until empty, or in the background of an application) and
:func:`compact`, both the library's one daemon loop (``trib_compactor_run``, the same
as ``tributary compact`` and Go's ``Compactor.Run``)."""

from __future__ import annotations

import atexit
import os
import threading
from ctypes import byref
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from . import _ffi
from ._compactor import DrainReport, _compactor_options
from ._journal import Journal
from ._managed import Managed
from ._util import PathLike, Seconds, _arg_error, _ms
from ._ffi import call, error_from, fspath_bytes, lib
from .errors import TributaryError

#: How often the thread that watches ``stop`` looks at it (seconds). A stop is noticed
#: within this plus the library's own 10 ms, or after the round in flight.
_STOP_POLL = 0.02

#: The daemons running in this process: their stop tokens and the events set when
#: their ``trib_compact`` returned. At exit they are stopped and waited for before
#: the interpreter finalizes: a daemon thread calling back into a finalizing
#: interpreter is ended by a forced unwind, which aborts the process when it meets the
#: library's panic boundary (the caller's thread may be a daemon thread that Python
#: does not wait for).
_running: Dict[int, Tuple[Any, threading.Event]] = {}
_running_lock = threading.Lock()


@atexit.register
def _stop_running_daemons() -> None:
    with _running_lock:  # a token is freed only under this lock: none is freed here
        running = list(_running.values())
        for token, _ in running:
            lib.trib_stop_request(token)
    for _, finished in running:
        finished.wait()


#: ``CompactEvent.type`` for each ``TRIB_EVENT_*``.
_EVENT_NAMES = {
    _ffi.TRIB_EVENT_COMMITTED: "committed",
    _ffi.TRIB_EVENT_CONTENDED: "contended",
    _ffi.TRIB_EVENT_PROBLEM: "problem",
    _ffi.TRIB_EVENT_SET_ASIDE: "set_aside",
    _ffi.TRIB_EVENT_RESOLVED: "resolved",
}


@dataclass(frozen=True)
class CompactReport:
    """What :func:`compact` (or a :class:`Compactor` run) did before it returned."""

    #: Rounds that committed lines.
    rounds: int
    #: Lines committed to the target.
    lines: int
    #: Journals set aside, and spool folders that could not be listed, when it
    #: returned (each was told to ``on_event``): with ``until_empty``, what "empty"
    #: did not include.
    set_aside: int = 0


@dataclass(frozen=True)
class CompactEvent:
    """One thing :func:`compact` tells its ``on_event``."""

    #: ``"committed"`` (a round committed lines: see ``report``), ``"contended"``
    #: (another host holds the target's lock, or ours was lost; retried after the
    #: interval), ``"problem"`` (transient trouble with the target or the spool,
    #: retried with backoff), ``"set_aside"`` (a journal that cannot be drained, retried
    #: when its files change while the others keep draining) or ``"resolved"`` (a
    #: problem reported before is over). A problem is reported once, not every pass.
    type: str
    #: The object: ``"target <path>"`` or ``"journal <path>"`` (empty for
    #: ``committed`` and ``contended``).
    subject: str
    #: The error's kind name (``"not_a_journal"``, ...; see
    #: :mod:`tributary.errors`), or None.
    kind: Optional[str]
    #: A human-readable sentence: the error's message, or what a round committed.
    message: str
    #: What the round did, for ``committed``; else None.
    report: Optional[DrainReport] = None


class _Run:
    """One ``trib_compactor_run`` in a helper thread: its stop token, its completion
    event (registered for the exit hook), its outcome."""

    def __init__(self, compactor: "Compactor", opts: Any, on_event: Optional[Callable[[CompactEvent], Any]]) -> None:
        self.token = _ffi.trib_stop_p()
        _ffi.call(lib.trib_stop_new, byref(self.token))
        self.raised: List[BaseException] = []
        self.outcome: List[int] = []
        self.rep = _ffi.trib_run_report()
        self.err = _ffi.trib_error_p()
        # Completion is our own event, not Thread.join/is_alive: on CPython 3.11 a
        # KeyboardInterrupt inside join() can mark a thread that is still running as
        # stopped (the bpo-45274 fix), and then the caller would go on, and the process
        # might exit, while trib_compactor_run still runs.
        self.finished = threading.Event()
        self._entry = (self.token, self.finished)
        self._on_event = on_event
        # No on_event: a NULL function pointer (ctypes' way is the type called with no argument).
        self._callback = _ffi.trib_event_fn(self._tell) if on_event is not None else _ffi.trib_event_fn()
        self._compactor = compactor
        self._opts = opts
        self._thread = threading.Thread(target=self._run, name="tributary-compact", daemon=True)

    def start(self) -> None:
        with _running_lock:
            _running[id(self._entry)] = self._entry
        try:
            self._thread.start()
        except BaseException:
            self._forget()
            raise

    def request_stop(self) -> None:
        lib.trib_stop_request(self.token)

    def _tell(self, _ctx: Any, event: int, subject: bytes, kind: int, message: bytes, report: Any) -> None:
        # An exception must not be lost in ctypes' callback machinery: keep it, stop.
        if self.raised or self._on_event is None:
            return
        try:
            drain_report = None
            if report:
                r = report.contents
                drain_report = DrainReport(
                    r.rounds, r.lines, r.bytes, r.repaired_tail_bytes, r.epoch, r.journals, r.rotations
                )
            self._on_event(
                CompactEvent(
                    type=_EVENT_NAMES.get(event, str(event)),
                    subject=(subject or b"").decode("utf-8", errors="replace"),
                    kind=lib.trib_result_name(kind).decode() if kind else None,
                    message=(message or b"").decode("utf-8", errors="replace"),
                    report=drain_report,
                )
            )
        except BaseException as e:  # noqa: BLE001 - raised again by result()
            self.raised.append(e)
            self.request_stop()

    def _run(self) -> None:
        try:
            handle = self._compactor._borrow()
            try:
                rc = lib.trib_compactor_run(
                    handle, byref(self._opts), self.token, self._callback, None, byref(self.rep), byref(self.err)
                )
            finally:
                self._compactor._release()
            self.outcome.append(rc)
        except BaseException as e:  # noqa: BLE001 - raised again by result()
            self.raised.append(e)
        finally:
            self.finished.set()

    def result(self, interrupted: Optional[BaseException] = None) -> CompactReport:
        """Once finished: the report, or raise what stopped the run."""
        try:
            failed = bool(self.outcome) and self.outcome[0] != _ffi.TRIB_OK
            if interrupted is not None or self.raised:
                if failed:
                    lib.trib_error_free(self.err)
                raise interrupted if interrupted is not None else self.raised[0]
            report = CompactReport(self.rep.rounds, self.rep.lines, self.rep.set_aside)
            if failed:
                exc: TributaryError = error_from(self.outcome[0], self.err)
                exc.report = report  # type: ignore[attr-defined]
                raise exc
            return report
        finally:
            self._forget()

    def _forget(self) -> None:
        if self.finished.is_set() or not self._thread.is_alive():
            with _running_lock:  # the exit hook reads tokens under this lock
                if _running.pop(id(self._entry), None) is not None:
                    lib.trib_stop_free(self.token)


class Compactor(Managed):
    """A target, its drain options and its journal sources — spool folders (every
    ``*.journal`` directly in one, as the folder is at each pass) and journal paths —
    to run as the compactor daemon (:meth:`run`), until nothing is left to drain
    (:meth:`drain_until_empty`), or in the background of this application
    (:meth:`start` / :meth:`stop`).

    A spool that does not exist yet, or a journal that is missing or cannot be
    drained, never stops it: each is told once to ``on_event`` and looked at again
    while the others drain. Only an error that needs a human stops a run and is
    raised (see :func:`compact`).

    In the background (one host, one application)::

        with tributary.Compactor(target, spools=[spool]) as c:
            c.start()
            ...                      # the application appends to journals in spool
        # leaving the block stops it, after a last drain until empty

    Prefer the ``tributary compact`` daemon (under systemd) when several processes
    or hosts write, when the application restarts often, or when the target is on a
    share: it keeps draining while the application is down. The background compactor
    stops with the application (interpreter exit stops it too, after the round in
    flight).

    Args:
        target: the target file.
        spools: spool folders (more with :meth:`add_spool`).
        journals: journal paths or :class:`Journal` objects (more with
            :meth:`add_journal`).
        The other options are those of :func:`tributary.drain`.
    """

    def __init__(
        self,
        target: PathLike,
        *,
        spools: Iterable[PathLike] = (),
        journals: Iterable[Union[PathLike, Journal]] = (),
        max_round_bytes: Optional[int] = None,
        max_round_time: Optional[Seconds] = None,
        lock_timeout: Optional[Seconds] = None,
        max_line: Optional[int] = None,
        busy_timeout: Optional[Seconds] = None,
        allow_network_fs: bool = False,
        rotate_bytes: Optional[int] = None,
        rotate_lines: Optional[int] = None,
        retain_generations: Optional[int] = None,
        create: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(spools, (str, bytes)) or hasattr(spools, "__fspath__"):
            raise _arg_error("spools is a list of folders: write spools=[folder]")
        if isinstance(journals, (str, bytes)) or hasattr(journals, "__fspath__"):
            raise _arg_error("journals is a list of paths: write journals=[path]")
        #: The target's path.
        self.target = os.fspath(target)
        target_b = fspath_bytes(target, "target")
        opts = _compactor_options(
            max_round_bytes,
            max_round_time,
            lock_timeout,
            max_line,
            busy_timeout,
            allow_network_fs,
            rotate_bytes,
            rotate_lines,
            retain_generations,
            create,
        )
        spool_list = [fspath_bytes(s, "spools[]") for s in spools]
        journal_list = [fspath_bytes(j.path if isinstance(j, Journal) else j, "journals[]") for j in journals]
        handle = _ffi.trib_compactor_p()
        call(lib.trib_compactor_new, target_b, byref(opts), byref(handle))
        self._set_handle(handle)
        self._background: Optional[_Run] = None
        self._background_lock = threading.Lock()
        for s in spool_list:
            self._call(lib.trib_compactor_add_spool, s)
        for j in journal_list:
            self._call(lib.trib_compactor_add_journal, j)

    # -- handle life cycle (Managed) --

    def _delete(self, handle: int) -> None:
        lib.trib_compactor_free(handle)

    def _what(self) -> str:
        return f"compactor of {self.target!r}"

    def __repr__(self) -> str:
        state = " closed" if self.closed else " running" if self.running else ""
        return f"<tributary.Compactor {self.target!r}{state}>"

    # -- sources --

    def add_spool(self, folder: PathLike) -> None:
        """Add a spool folder (once: a folder added again is ignored); one that does
        not exist yet is told to ``on_event`` once and looked at again each pass."""
        self._call(lib.trib_compactor_add_spool, fspath_bytes(folder, "folder"))

    def add_journal(self, journal: Union[PathLike, Journal]) -> None:
        """Add a journal (a path or a :class:`Journal`; once). One that does not exist
        yet is set aside (told once) and drained once it exists."""
        path = journal.path if isinstance(journal, Journal) else journal
        self._call(lib.trib_compactor_add_journal, fspath_bytes(path, "journal"))

    # -- running --

    def _run_options(self, interval: Seconds, max_backoff: Optional[Seconds], until_empty: bool) -> Any:
        opts = _ffi.trib_run_options()
        call(lib.trib_run_options_default, byref(opts))
        ms = _ms(interval, "interval")
        opts.interval_ms = max(ms or 0, 1)  # the shortest pause is 1 ms
        backoff = _ms(max_backoff, "max_backoff")
        if backoff is not None:
            opts.max_backoff_ms = backoff
        opts.until_empty = bool(until_empty)
        return opts

    def run(
        self,
        *,
        interval: Seconds = 0.1,
        max_backoff: Optional[Seconds] = None,
        until_empty: bool = False,
        stop: Optional[threading.Event] = None,
        on_event: Optional[Callable[[CompactEvent], Any]] = None,
    ) -> CompactReport:
        """Run the compactor daemon over the sources until ``stop`` is set (or, with
        ``until_empty``, until a pass over every journal finds nothing more to
        drain), then return what it did. It pauses ``interval`` seconds after a pass
        that found nothing to drain; transient trouble is retried with backoff up to
        ``max_backoff`` seconds (default 30). See :func:`compact` for what stops it,
        ``on_event``, ``stop`` and Ctrl-C."""
        opts = self._run_options(interval, max_backoff, until_empty)
        run = _Run(self, opts, on_event)
        run.start()
        interrupted: Optional[BaseException] = None
        while not run.finished.is_set():
            try:
                if stop is not None and stop.is_set():
                    run.request_stop()
                run.finished.wait(_STOP_POLL)
            # Any exception a signal handler raises (Ctrl-C, SystemExit from a SIGTERM
            # handler, a timeout) stops the run, which returns before it is raised:
            # the daemon must not go on alone (as _compactor._interruptible).
            except BaseException as e:  # noqa: BLE001 - raised again by result()
                interrupted = interrupted or e
                run.request_stop()
        return run.result(interrupted)

    def drain_until_empty(
        self,
        *,
        interval: Seconds = 0.01,
        stop: Optional[threading.Event] = None,
        on_event: Optional[Callable[[CompactEvent], Any]] = None,
    ) -> CompactReport:
        """:meth:`run` with ``until_empty``: drain every source until a pass over every
        journal finds nothing more, then return (the end of a batch job, an
        application's shutdown). Transient trouble is still retried: bound it with
        ``stop``. Journals set aside are counted in the report's ``set_aside``."""
        return self.run(interval=interval, until_empty=True, stop=stop, on_event=on_event)

    @property
    def running(self) -> bool:
        """True while a background run (:meth:`start`) has not finished."""
        bg = self._background
        return bg is not None and not bg.finished.is_set()

    def start(
        self,
        *,
        interval: Seconds = 0.1,
        max_backoff: Optional[Seconds] = None,
        on_event: Optional[Callable[[CompactEvent], Any]] = None,
    ) -> "Compactor":
        """Run the daemon in a background thread of this process and return at once
        (``on_event`` is called on that thread). :meth:`stop` (or ``close()``, or
        leaving a ``with`` block, or interpreter exit) stops it. An error that needs
        a human stops it on its own: :meth:`stop` raises it then (and
        :attr:`running` turns False)."""
        with self._background_lock:
            if self.running:
                raise _arg_error("this compactor is already running in the background: stop() it first")
            self._check()
            run = _Run(self, self._run_options(interval, max_backoff, False), on_event)
            run.start()
            self._background = run
        return self

    def stop(self, *, drain: bool = True, timeout: Optional[Seconds] = None) -> CompactReport:
        """Stop the background run (after the round in flight) and return what it did,
        or raise the error that stopped it. With ``drain`` (the default), then drain
        every source until empty, so that what was appended before the call is in
        the target when it returns (the report adds both). ``timeout``: the most
        seconds to wait for the background run to end (default: as long as it
        takes); on timeout, :class:`TimeoutError` and it keeps stopping."""
        with self._background_lock:
            run, self._background = self._background, None
        report = CompactReport(0, 0)
        if run is not None:
            run.request_stop()
            if not run.finished.wait(timeout):
                with self._background_lock:
                    self._background = run
                raise TimeoutError(f"the background compactor of {self.target!r} did not stop within {timeout} s")
            report = run.result()
        if drain and not self.closed:
            last = self.drain_until_empty()
            report = CompactReport(report.rounds + last.rounds, report.lines + last.lines, last.set_aside)
        return report

    def close(self) -> None:
        """Stop a background run (without a last drain; see :meth:`stop`) and release
        the handle (idempotent). Waits for a :meth:`run` in progress on another thread:
        set its ``stop`` first."""
        if os.getpid() == self._pid:
            with self._background_lock:
                run, self._background = self._background, None
            if run is not None:
                run.request_stop()
                run.finished.wait()
                try:
                    run.result()
                except TributaryError:
                    pass  # what stopped it was told to on_event; close() does not raise it
        super().close()

    def __exit__(self, *exc: Any) -> None:
        # Leaving a `with` block normally: stop and drain what is left; on an
        # exception, just stop (do not hide it behind a drain's error).
        try:
            if exc[0] is None and self.running:
                self.stop()
        finally:
            self.close()


def compact(
    target: PathLike,
    spool: Optional[PathLike] = None,
    *,
    journals: Optional[Iterable[Union[PathLike, Journal]]] = None,
    interval: Seconds = 0.1,
    max_round_bytes: Optional[int] = None,
    max_round_time: Optional[Seconds] = None,
    lock_timeout: Optional[Seconds] = None,
    max_line: Optional[int] = None,
    busy_timeout: Optional[Seconds] = None,
    allow_network_fs: bool = False,
    rotate_bytes: Optional[int] = None,
    rotate_lines: Optional[int] = None,
    retain_generations: Optional[int] = None,
    create: bool = False,
    stop: Optional[threading.Event] = None,
    on_event: Optional[Callable[[CompactEvent], Any]] = None,
) -> CompactReport:
    """Run the compactor daemon: drain every ``*.journal`` in the folder ``spool``
    into ``target`` (journals that appear later are picked up) until ``stop`` is set,
    then return what it did. It pauses ``interval`` seconds (default 0.1) after a pass
    that found nothing to drain. The options are those of :func:`drain`.

    With ``journals`` (paths, or :class:`Journal` objects whose paths are used) instead
    of ``spool``, the same daemon drains that fixed set: a journal that is missing or
    cannot be drained is set aside (reported once) and tried again when its files
    change. Give exactly one of ``spool`` and ``journals``.

    Only an error that needs a human stops it on its own, and is raised (with the
    :class:`CompactReport` so far as its ``report`` attribute):
    :class:`CorruptManifestError`, :class:`TargetTruncatedError`,
    :class:`UnexpectedTailError`, :class:`TornTargetError`,
    :class:`UnsafeFilesystemError` (the target's), :class:`InvalidArgumentError`.
    Everything else is retried and told once to ``on_event`` (a
    :class:`CompactEvent`): a busy lock, transient trouble such as a full disk, a
    share not mounted yet or a target not created yet (retried with backoff up to
    30 s), and a journal that cannot be drained (set aside; the others keep draining).

    ``stop``: a :class:`threading.Event`; set it from any thread to stop the daemon. It
    is noticed within a few tens of milliseconds while the daemon waits, or after the
    round in flight (a round is never interrupted). Without one, the daemon runs until
    an error that needs a human, or Ctrl-C.

    For several spools, until-empty runs and a compactor in the background of the
    application, use :class:`Compactor` (this function is a :class:`Compactor` run).

    The daemon runs in a helper thread; ``on_event`` is called on that thread (one
    call at a time). An exception raised by ``on_event`` stops the daemon and is
    raised again by :func:`compact`.

    Ctrl-C (:class:`KeyboardInterrupt` in the thread that called :func:`compact`, or any
    other exception a signal handler raises there) asks the daemon to stop, waits for
    the round in flight to end (nothing is left half-done), then raises it again.
    """
    if (spool is None) == (journals is None):
        raise _arg_error("give either spool (a folder of journals) or journals (a list of paths), not both or neither")
    with Compactor(
        target,
        spools=[spool] if spool is not None else [],
        journals=journals or (),
        max_round_bytes=max_round_bytes,
        max_round_time=max_round_time,
        lock_timeout=lock_timeout,
        max_line=max_line,
        busy_timeout=busy_timeout,
        allow_network_fs=allow_network_fs,
        rotate_bytes=rotate_bytes,
        rotate_lines=rotate_lines,
        retain_generations=retain_generations,
        create=create,
    ) as c:
        return c.run(interval=interval, stop=stop, on_event=on_event)
