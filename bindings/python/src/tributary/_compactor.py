"""The compactor side, as functions: :func:`init`, :func:`drain`, :func:`retire` (which
take the target's lock), :func:`verify` and :func:`status` (which do not), the options
they share, and the reports they return."""

from __future__ import annotations

import os
import threading
from ctypes import byref, c_char_p, c_size_t, c_uint32
from dataclasses import dataclass
from typing import Any, Callable, Iterable, List, Optional, Tuple, Union

from . import _ffi
from ._ffi import call, fspath_bytes, lib
from ._journal import Backlog, Journal
from ._managed import Managed
from ._util import PathLike, Seconds, _arg_error, _ms, _not_one_item, _positive_int
from .errors import TributaryError

__all__ = [
    "DrainReport",
    "InitReport",
    "JournalStatus",
    "StatusReport",
    "VerifyReport",
    "Watermark",
    "drain",
    "init",
    "retire",
    "status",
    "verify",
]

# ---- reports -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainReport:
    """What :func:`drain` did."""

    #: Rounds that committed something.
    rounds: int
    #: Lines and bytes (with their ``\n``) committed to the target.
    lines: int
    bytes: int
    #: Bytes of an uncommitted tail left by a crashed drain that were truncated first.
    repaired_tail_bytes: int
    #: The manifest's epoch afterwards.
    epoch: int
    #: How many journals contributed lines.
    journals: int
    #: Generations rotated out by managed rotation (``rotate_bytes``/``rotate_lines``).
    rotations: int = 0


@dataclass(frozen=True)
class InitReport:
    """What :func:`init` found or did."""

    #: The target's id, 32 hex digits.
    target_id: str
    #: True when this call created the target (its sidecar and first manifest).
    created: bool
    #: Lines of a pre-existing target file adopted as committed (when ``created``).
    adopted_lines: int
    #: True when a target of an older manifest format was upgraded.
    upgraded: bool
    #: True when a replaced target file (restored or copied with its sidecar) was
    #: accepted because its committed part matched.
    rebound: bool


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found. ``consistent`` is false when the committed part of the
    target no longer matches its manifest; ``problems`` then says how."""

    consistent: bool
    epoch: int
    committed_len: int
    committed_lines: int
    #: The target's length now.
    target_len: int
    #: Bytes beyond the committed length (a crashed or running drain): reported, not a
    #: failure; the next drain truncates them.
    uncommitted_tail_bytes: int
    problems: Tuple[str, ...]
    #: The target's current generation (1 until a managed rotation); the committed
    #: length and lines above are this generation's.
    generation: int = 1
    #: Rotated generations still kept (``<target>.<generation>``), checked too.
    rotated_generations: int = 0


@dataclass(frozen=True)
class Watermark:
    """How far one journal has been drained into the target."""

    journal_id: str
    last_seq: int
    #: CRC32 of the line at ``last_seq``.
    crc: int


@dataclass(frozen=True)
class JournalStatus:
    """One journal of the spool given to :func:`status`."""

    path: str
    journal_id: str
    backlog: Backlog
    #: The target's watermark for this journal (0 if it never fed the target).
    watermark: int


@dataclass(frozen=True)
class StatusReport:
    """The committed state of a target and the backlog of each journal of a spool."""

    #: False before the first drain; the manifest fields are then None.
    has_manifest: bool
    target_id: Optional[str]
    epoch: Optional[int]
    committed_len: Optional[int]
    committed_lines: Optional[int]
    committed_crc: Optional[int]
    #: The target's size now, or None if it does not exist.
    target_len: Optional[int]
    watermarks: Tuple[Watermark, ...]
    journals: Tuple[JournalStatus, ...]
    #: The target's current generation (None before the first drain); the committed
    #: fields above are this generation's.
    generation: Optional[int] = None
    #: Rotated generations still kept.
    rotated_generations: int = 0
    #: The manifest's format version (None without a manifest): 3 (deltas, the default
    #: for new targets; drained by tributary 0.2.0 and later only), 2 (``init(manifest_format=2)``,
    #: ``tributary init --manifest-format 2``: what older builds read), 1 (not upgraded
    #: yet).
    manifest_format: Optional[int] = None


# ---- drain / verify / status -----------------------------------------------------------------------


def _compactor_options(
    max_round_bytes: Optional[int],
    max_round_time: Optional[Seconds],
    lock_timeout: Optional[Seconds],
    max_line: Optional[int],
    busy_timeout: Optional[Seconds],
    allow_network_fs: bool,
    rotate_bytes: Optional[int],
    rotate_lines: Optional[int],
    retain_generations: Optional[int],
    create: bool = False,
) -> "_ffi.trib_compactor_options":
    opts = _ffi.trib_compactor_options()
    call(lib.trib_compactor_options_default, byref(opts))
    if max_round_bytes is not None:
        opts.max_round_bytes = _positive_int(max_round_bytes, "max_round_bytes")
    if max_line is not None:
        opts.max_line_bytes = _positive_int(max_line, "max_line")
    for name, field, value in (
        ("max_round_time", "max_round_time_ms", max_round_time),
        ("lock_timeout", "lock_timeout_ms", lock_timeout),
        ("busy_timeout", "journal_busy_timeout_ms", busy_timeout),
    ):
        ms = _ms(value, name)
        if ms is not None:
            setattr(opts, field, ms)
    opts.allow_network_fs = bool(allow_network_fs)
    opts.create = bool(create)
    for field, value in (
        ("rotate_bytes", rotate_bytes),
        ("rotate_lines", rotate_lines),
        ("retain_generations", retain_generations),
    ):
        if value is not None:
            setattr(opts, field, _positive_int(value, field))
    return opts


#: How often the calling thread looks whether a blocking call has returned (seconds):
#: a Ctrl-C is acted on within this plus the library's own 10 ms.
_INTERRUPT_POLL = 0.02


def _interruptible(blocking: Callable[[Any], None]) -> None:
    """Run ``blocking(stop)`` — a library call that waits for the target's lock, given a
    stop token — so that Ctrl-C ends that wait: on the main thread (the only one
    Python delivers signals to, and only between bytecodes, never inside a ctypes
    call) it runs on a helper thread while this one waits, and a
    ``KeyboardInterrupt`` (or any exception a signal handler raises) requests the
    stop, waits for the call to return (a round in progress finishes; nothing is left
    half-done) and is raised again. Elsewhere it runs here, with no token. An outside
    tester's ``drain`` and ``retire`` sat out the 30 s lock timeout after a Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        blocking(None)
        return
    token = _ffi.trib_stop_p()
    call(lib.trib_stop_new, byref(token))
    finished = threading.Event()
    outcome: List[BaseException] = []

    def run() -> None:
        try:
            blocking(token)
        except BaseException as e:  # noqa: BLE001 - raised again on the calling thread
            outcome.append(e)
        finally:
            finished.set()

    try:
        threading.Thread(target=run, name="tributary-call", daemon=True).start()
    except RuntimeError:
        # No thread to be had (CPython 3.12.0-1 refuse one at interpreter shutdown,
        # where an atexit function may drain): here, uninterruptible, as before.
        lib.trib_stop_free(token)
        blocking(None)
        return
    interrupted: Optional[BaseException] = None
    # Our own event, not Thread.join: see _compact._Run (bpo-45274). Any exception a
    # signal handler raises here (KeyboardInterrupt, SystemExit from a SIGTERM
    # handler, a timeout) stops the wait the same way: the call must not go on alone
    # (an outside reviewer's retire deleted the journal 3 s after its caller had given
    # up on it).
    while not finished.is_set():
        try:
            finished.wait(_INTERRUPT_POLL)
        except BaseException as e:  # noqa: BLE001 - raised again once the call returned
            if interrupted is None:
                interrupted = e
            lib.trib_stop_request(token)
    lib.trib_stop_free(token)
    if interrupted is not None:
        raise interrupted
    if outcome:
        raise outcome[0]


def drain(
    target: PathLike,
    journals: Optional[Iterable[Union[PathLike, Journal]]] = None,
    spool: Optional[PathLike] = None,
    *,
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
) -> DrainReport:
    """Drain journals into ``target`` until every line they hold now is committed.

    Give either ``journals`` (paths, or :class:`Journal` objects whose paths are used)
    or ``spool`` (a folder: its ``*.journal`` files). With neither, only repair the
    target. In a spool, a file that cannot be drained (junk, a foreign or restored
    journal) does not keep the others from draining: they are drained, then that
    file's error is raised (the first such file's; its message names it), its
    ``.report`` the :class:`DrainReport` of what was drained. Takes the
    target's lock (waiting up to ``lock_timeout`` seconds, default
    30) for each bounded round.

    The target must exist (:func:`init`, or ``tributary init``): a target that was
    never created — or whose shared filesystem is not mounted — raises
    :class:`TargetMissingError` and nothing is created, unless ``create=True``.

    Managed rotation: with ``rotate_bytes`` and/or ``rotate_lines``, a round first
    renames a current generation that reached either limit to ``<target>.<generation>``
    and starts a new one (readers follow across); ``retain_generations`` keeps at most
    that many rotated generations (default: all). Never rotate a target with logrotate.

    Ctrl-C (on the main thread) ends a wait for the lock: a round in progress
    finishes, then ``KeyboardInterrupt`` is raised.

    Raises :class:`LockTimeoutError`, :class:`CorruptManifestError`,
    :class:`TargetTruncatedError`, :class:`JournalRestoredError`, ... (see
    :mod:`tributary.errors`); a failed drain never loses or duplicates a line, the next
    one carries on.
    """
    if journals is not None and spool is not None:
        raise _arg_error("give either journals or spool, not both")
    target_b = fspath_bytes(target, "target")
    paths: List[bytes] = []
    if journals is not None:
        _not_one_item(journals, "journals")
    for j in journals or ():
        paths.append(fspath_bytes(j.path if isinstance(j, Journal) else j, "journals[]"))
    spool_b = fspath_bytes(spool, "spool") if spool is not None else None
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
    arr = (c_char_p * max(len(paths), 1))(*paths)
    rep = _ffi.trib_drain_report()

    def report() -> DrainReport:
        return DrainReport(
            rep.rounds, rep.lines, rep.bytes, rep.repaired_tail_bytes, rep.epoch, rep.journals, rep.rotations
        )

    try:
        _interruptible(
            lambda stop: call(lib.trib_drain_stoppable, target_b, arr, len(paths), spool_b, byref(opts), stop, byref(rep))
        )
    except TributaryError as exc:
        # what was drained before the error (a spool's unusable file: all the others)
        exc.report = report()  # type: ignore[attr-defined]
        raise
    return report()


def init(
    target: PathLike, *, lock_timeout: Optional[Seconds] = None, manifest_format: Optional[int] = None
) -> InitReport:
    """Create ``target`` once — its sidecar and first manifest, and the file itself (an
    existing file's whole lines are adopted as committed) — or, if it exists, check it
    (and upgrade an older manifest format). Drains never create a target unless told
    to (``create=True``), so an unmounted share is an error, not a new empty target.

    ``manifest_format``: 2 or 3 makes a new target in that format and switches an
    existing one to it (3, the default for new targets, commits only what changed and
    is read by tributary 0.2.0 and later; 2 for a target that older builds drain too:
    docs/design.md "Manifest deltas"). None: a new target in 3, an existing one keeps
    its format (:func:`status` tells it).
    """
    target_b = fspath_bytes(target, "target")
    if manifest_format is not None and (isinstance(manifest_format, bool) or manifest_format not in (2, 3)):
        raise _arg_error(f"manifest_format must be 2 or 3 (or None), not {manifest_format!r}")
    opts = _compactor_options(None, None, lock_timeout, None, None, False, None, None, None)
    rep = _ffi.trib_init_report()
    call(lib.trib_init_in_format, target_b, byref(opts), manifest_format or 0, byref(rep))
    return InitReport(rep.target_id.decode(), rep.created, rep.adopted_lines, rep.upgraded, rep.rebound)


def retire(
    target: PathLike,
    journals: Iterable[Union[PathLike, Journal]],
    *,
    max_round_bytes: Optional[int] = None,
    max_round_time: Optional[Seconds] = None,
    lock_timeout: Optional[Seconds] = None,
    max_line: Optional[int] = None,
    busy_timeout: Optional[Seconds] = None,
    allow_network_fs: bool = False,
    forget_keys: bool = False,
) -> int:
    """Retire journals, the supported way to remove one: drain each into ``target``
    until it is empty, then delete its files (the journal, ``-wal``, ``-shm``) while
    holding its write lock, once every line it ever held is committed. Returns how many
    were retired. A :class:`Journal` that still has one open raises
    :class:`JournalGoneError` on its next append (nothing stored); stop writers first.
    A path that names no file (a journal retired before leaves none, or a wrong path)
    raises :class:`NotAJournalError` naming it, after the others were retired. A
    journal holding idempotency keys within their retention or processed cursors is
    refused (:class:`InvalidArgumentError`, nothing retired): they would go with it, and
    a keyed resend or a processor resuming from its cursor would store lines twice.
    ``forget_keys=True`` retires such a journal anyway, its keys and cursors with it
    (as ``tributary retire --forget-keys``): only once its writers can no longer resend
    and its processor has finished. Ctrl-C while it waits for the lock to drain them
    raises ``KeyboardInterrupt`` and deletes none of them.
    """
    target_b = fspath_bytes(target, "target")
    _not_one_item(journals, "journals")
    paths = [fspath_bytes(j.path if isinstance(j, Journal) else j, "journals[]") for j in journals]
    if not paths:
        raise _arg_error("give at least one journal to retire")
    if not isinstance(forget_keys, bool):
        # forgetting keys costs duplicates: only an explicit True does it
        raise _arg_error(f"forget_keys must be True or False, not {forget_keys!r}")
    opts = _compactor_options(
        max_round_bytes, max_round_time, lock_timeout, max_line, busy_timeout, allow_network_fs, None, None, None
    )
    arr = (c_char_p * len(paths))(*paths)
    retired = c_size_t(0)
    _interruptible(
        lambda stop: call(lib.trib_retire_stoppable, target_b, arr, len(paths), byref(opts), forget_keys, stop,
                          byref(retired))
    )
    return retired.value


def verify(target: PathLike) -> VerifyReport:
    """Check ``target`` against its manifest (length, line count, running CRC).

    An inconsistent target is reported (``consistent`` false, ``problems``), not
    raised; errors are for when the check cannot run: :class:`InvalidArgumentError`
    for a target that was never drained, :class:`CorruptManifestError`,
    :class:`IoError`.
    """
    target_b = fspath_bytes(target, "target")
    rep = _ffi.trib_verify_report()
    call(lib.trib_verify, target_b, byref(rep))
    try:
        text = rep.problems.decode("utf-8", errors="replace") if rep.problems else ""
    finally:
        lib.trib_verify_report_clear(byref(rep))
    return VerifyReport(
        consistent=bool(rep.consistent),
        epoch=rep.epoch,
        committed_len=rep.committed_len,
        committed_lines=rep.committed_lines,
        target_len=rep.target_len,
        uncommitted_tail_bytes=rep.uncommitted_tail_bytes,
        problems=tuple(text.split("\n")) if text else (),
        generation=rep.generation,
        rotated_generations=rep.rotated_generations,
    )


class _StatusReportHandle(Managed):
    """A ``trib_status_report`` while :func:`status` copies it out (then closed)."""

    def __init__(self, target: PathLike, spool: Optional[PathLike]) -> None:
        super().__init__()
        self.target = os.fspath(target)
        target_b = fspath_bytes(target, "target")
        spool_b = fspath_bytes(spool, "spool") if spool is not None else None
        handle = _ffi.trib_status_report_p()
        call(lib.trib_status, target_b, spool_b, byref(handle))
        self._set_handle(handle)

    def _delete(self, handle: int) -> None:
        lib.trib_status_report_free(handle)

    def _what(self) -> str:
        return f"status report of {self.target!r}"


def status(target: PathLike, spool: Optional[PathLike] = None) -> StatusReport:
    """The committed state of ``target`` and, with ``spool``, the backlog of each of its
    ``*.journal`` files. Takes no lock."""
    with _StatusReportHandle(target, spool) as report:
        s = _ffi.trib_status_summary()
        report._call(lib.trib_status_report_summary, byref(s))
        watermarks = []
        for i in range(s.watermark_count):
            w = _ffi.trib_watermark()
            report._call(lib.trib_status_report_watermark, i, byref(w))
            watermarks.append(Watermark(w.journal_id.decode(), w.last_seq, w.crc))
        journals = []
        for i in range(s.journal_count):
            j = _ffi.trib_journal_status()
            report._call(lib.trib_status_report_journal, i, byref(j))
            journals.append(
                JournalStatus(os.fsdecode(j.path), j.journal_id.decode(), Backlog._from_c(j.backlog), j.watermark)
            )
        fmt = c_uint32()
        report._call(lib.trib_status_report_manifest_format, byref(fmt))
    m = bool(s.has_manifest)
    return StatusReport(
        has_manifest=m,
        target_id=s.target_id.decode() if m else None,
        epoch=s.epoch if m else None,
        committed_len=s.committed_len if m else None,
        committed_lines=s.committed_lines if m else None,
        committed_crc=s.committed_crc if m else None,
        target_len=s.target_len if s.target_exists else None,
        watermarks=tuple(watermarks),
        journals=tuple(journals),
        generation=s.generation if m else None,
        rotated_generations=s.rotated_generations,
        manifest_format=fmt.value if m else None,
    )
