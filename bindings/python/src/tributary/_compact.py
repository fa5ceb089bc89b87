"""The compactor daemon for Python: :func:`compact`, the library's one daemon loop
(``trib_compact``, the same as ``tributary compact`` and Go's ``Compact``)."""

from __future__ import annotations

import atexit
import threading
from ctypes import byref, c_char_p
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from . import _ffi
from ._compactor import DrainReport, _compactor_options
from ._journal import Journal
from ._util import PathLike, Seconds, _arg_error, _ms
from ._ffi import error_from, fspath_bytes, lib
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
    """What :func:`compact` did before it returned."""

    #: Rounds that committed lines.
    rounds: int
    #: Lines committed to the target.
    lines: int


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

    The daemon runs in a helper thread; ``on_event`` is called on that thread (one
    call at a time). An exception raised by ``on_event`` stops the daemon and is
    raised again by :func:`compact`.

    Ctrl-C (:class:`KeyboardInterrupt` in the thread that called :func:`compact`) asks
    the daemon to stop, waits for the round in flight to end (nothing is left
    half-done), then raises :class:`KeyboardInterrupt` again.
    """
    target_b = fspath_bytes(target, "target")
    if (spool is None) == (journals is None):
        raise _arg_error("give either spool (a folder of journals) or journals (a list of paths), not both or neither")
    spool_b = fspath_bytes(spool, "spool") if spool is not None else None
    paths = [fspath_bytes(j.path if isinstance(j, Journal) else j, "journals[]") for j in journals or ()]
    path_array = (c_char_p * max(len(paths), 1))(*paths)
    interval_ms = _ms(interval, "interval")
    if not interval_ms:
        interval_ms = 1  # the shortest pause; 0 would mean the library's default
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
    token = _ffi.trib_stop_p()
    _ffi.call(lib.trib_stop_new, byref(token))
    raised: List[BaseException] = []

    def request_stop() -> None:
        lib.trib_stop_request(token)

    def tell(_ctx: Any, event: int, subject: bytes, kind: int, message: bytes, report: Any) -> None:
        # An exception must not be lost in ctypes' callback machinery: keep it, stop.
        if raised or on_event is None:
            return
        try:
            drain_report = None
            if report:
                r = report.contents
                drain_report = DrainReport(
                    r.rounds, r.lines, r.bytes, r.repaired_tail_bytes, r.epoch, r.journals, r.rotations
                )
            on_event(
                CompactEvent(
                    type=_EVENT_NAMES.get(event, str(event)),
                    subject=(subject or b"").decode("utf-8", errors="replace"),
                    kind=lib.trib_result_name(kind).decode() if kind else None,
                    message=(message or b"").decode("utf-8", errors="replace"),
                    report=drain_report,
                )
            )
        except BaseException as e:  # noqa: BLE001 - re-raised by compact()
            raised.append(e)
            request_stop()

    # No on_event: a NULL function pointer (ctypes' way is the type called with no argument).
    callback = _ffi.trib_event_fn(tell) if on_event is not None else _ffi.trib_event_fn()
    rep = _ffi.trib_compact_report()
    err = _ffi.trib_error_p()
    outcome: List[int] = []

    def run() -> None:
        try:
            if spool_b is not None:
                rc = lib.trib_compact(
                    target_b, spool_b, byref(opts), interval_ms, token, callback, None, byref(rep), byref(err)
                )
            else:
                rc = lib.trib_compact_journals(
                    target_b,
                    path_array,
                    len(paths),
                    byref(opts),
                    interval_ms,
                    token,
                    callback,
                    None,
                    byref(rep),
                    byref(err),
                )
            outcome.append(rc)
        except BaseException as e:  # noqa: BLE001 - re-raised by compact()
            raised.append(e)
        finally:
            finished.set()

    # Completion is our own event, not Thread.join/is_alive: on CPython 3.11 a
    # KeyboardInterrupt inside join() can mark a thread that is still running as
    # stopped (the bpo-45274 fix), and then compact() would return, and the process
    # might exit, while trib_compact still runs.
    finished = threading.Event()
    entry = (token, finished)
    daemon = threading.Thread(target=run, name="tributary-compact", daemon=True)
    try:
        with _running_lock:
            _running[id(entry)] = entry
        daemon.start()
        interrupted: Optional[BaseException] = None
        while not finished.is_set():
            try:
                if stop is not None and stop.is_set():
                    request_stop()
                finished.wait(_STOP_POLL)
            except KeyboardInterrupt as e:
                interrupted = e
                request_stop()
        failed = bool(outcome) and outcome[0] != _ffi.TRIB_OK
        if interrupted is not None or raised:
            if failed:
                lib.trib_error_free(err)
            raise interrupted if interrupted is not None else raised[0]
        report = CompactReport(rep.rounds, rep.lines)
        if failed:
            exc: TributaryError = error_from(outcome[0], err)
            exc.report = report  # type: ignore[attr-defined]
            raise exc
        return report
    finally:
        if finished.is_set() or not daemon.is_alive():
            with _running_lock:
                _running.pop(id(entry), None)
                lib.trib_stop_free(token)
