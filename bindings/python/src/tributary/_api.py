"""The Python API over the C ABI: Journal, Reader, drain, verify, status (the handle
life cycle of Journal, Reader and the status report is `_managed.Managed`'s)."""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import threading
import time
from ctypes import POINTER, byref, c_bool, c_char_p, c_size_t, c_ubyte, c_uint64
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, List, NamedTuple, Optional, Tuple, Union

from . import _ffi
from ._ffi import call, fspath_bytes, lib
from ._managed import Managed
from .errors import InvalidArgumentError

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "Backlog",
    "Cursor",
    "DrainReport",
    "InitReport",
    "Journal",
    "JournalStatus",
    "Reader",
    "StatusReport",
    "VerifyReport",
    "Watermark",
    "drain",
    "init",
    "status",
    "verify",
]

#: Longest line a journal accepts by default (1 MiB, without the ``\n``).
DEFAULT_MAX_LINE_BYTES = 1 << 20

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
#: A line: bytes (any bytes but ``\n``) or str (encoded as UTF-8).
Line = Union[bytes, bytearray, memoryview, str]
#: A duration: seconds (int or float) or a ``datetime.timedelta``.
Seconds = Union[int, float, datetime.timedelta]


def _arg_error(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(message, code=InvalidArgumentError.code)


def _line_bytes(line: Line, what: str = "line") -> bytes:
    if isinstance(line, bytes):
        return line
    if isinstance(line, str):
        return line.encode("utf-8")
    if isinstance(line, (bytearray, memoryview)):
        return bytes(line)
    raise TypeError(f"{what} must be bytes or str, not {type(line).__name__}")


def _ms(value: Optional[Seconds], what: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or a timedelta, not {type(value).__name__}")
    if value < 0 or value != value:
        raise _arg_error(f"`{what}` must be a non-negative number of seconds, not {value}")
    return int(round(value * 1000))


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 1:
        raise _arg_error(f"`{what}` must be at least 1, not {value}")
    return value


# ---- reports -------------------------------------------------------------------------------------


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


# ---- journal -------------------------------------------------------------------------------------


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
        data = [_line_bytes(x, "each line") for x in lines]
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
    target. Takes the target's lock (waiting up to ``lock_timeout`` seconds, default
    30) for each bounded round.

    The target must exist (:func:`init`, or ``tributary init``): a target that was
    never created — or whose shared filesystem is not mounted — raises
    :class:`TargetMissingError` and nothing is created, unless ``create=True``.

    Managed rotation: with ``rotate_bytes`` and/or ``rotate_lines``, a round first
    renames a current generation that reached either limit to ``<target>.<generation>``
    and starts a new one (readers follow across); ``retain_generations`` keeps at most
    that many rotated generations (default: all). Never rotate a target with logrotate.

    Raises :class:`LockTimeoutError`, :class:`CorruptManifestError`,
    :class:`TargetTruncatedError`, :class:`JournalRestoredError`, ... (see
    :mod:`tributary.errors`); a failed drain never loses or duplicates a line, the next
    one carries on.
    """
    if journals is not None and spool is not None:
        raise _arg_error("give either journals or spool, not both")
    target_b = fspath_bytes(target, "target")
    paths: List[bytes] = []
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
    call(lib.trib_drain, target_b, arr, len(paths), spool_b, byref(opts), byref(rep))
    return DrainReport(
        rep.rounds, rep.lines, rep.bytes, rep.repaired_tail_bytes, rep.epoch, rep.journals, rep.rotations
    )


def init(target: PathLike, *, lock_timeout: Optional[Seconds] = None) -> InitReport:
    """Create ``target`` once — its sidecar and first manifest, and the file itself (an
    existing file's whole lines are adopted as committed) — or, if it exists, check it
    (and upgrade an older manifest format). Drains never create a target unless told
    to (``create=True``), so an unmounted share is an error, not a new empty target.
    """
    target_b = fspath_bytes(target, "target")
    opts = _compactor_options(None, None, lock_timeout, None, None, False, None, None, None)
    rep = _ffi.trib_init_report()
    call(lib.trib_init, target_b, byref(opts), byref(rep))
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
) -> int:
    """Retire journals, the supported way to remove one: drain each into ``target``
    until it is empty, then delete its files (the journal, ``-wal``, ``-shm``) while
    holding its write lock, once every line it ever held is committed. Returns how many
    were retired. A :class:`Journal` that still has one open raises
    :class:`JournalGoneError` on its next append (nothing stored); stop writers first.
    """
    target_b = fspath_bytes(target, "target")
    paths = [fspath_bytes(j.path if isinstance(j, Journal) else j, "journals[]") for j in journals]
    if not paths:
        raise _arg_error("give at least one journal to retire")
    opts = _compactor_options(
        max_round_bytes, max_round_time, lock_timeout, max_line, busy_timeout, allow_network_fs, None, None, None
    )
    arr = (c_char_p * len(paths))(*paths)
    retired = c_size_t(0)
    call(lib.trib_retire, target_b, arr, len(paths), byref(opts), byref(retired))
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
    )


# ---- reader ----------------------------------------------------------------------------------------


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
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if value < 0:
            raise _arg_error(f"{name} must be >= 0, not {value}")
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
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, not {type(offset).__name__}")
        if offset < 0:
            raise _arg_error(f"offset must be >= 0, not {offset}")
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

    def __repr__(self) -> str:
        return f"<tributary.Reader {self.target!r}{' closed' if self.closed else ''}>"
