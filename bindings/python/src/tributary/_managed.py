"""The life cycle of a handle of the C library, in one place.

:class:`Managed` owns one opaque handle (a ``trib_journal *``, ``trib_reader *``, ...):
it frees the handle exactly once, refuses calls after ``close()`` with a clear
:class:`InvalidArgumentError`, waits in ``close()`` for calls in flight on other threads
(the library must never free a handle another thread is using), and knows about
``fork()``: a child process cannot use a handle its parent opened, and never frees it.
Journal (``_journal.py``), Reader (``_reader.py``) and the status report
(``_compactor.py``) subclass it and say only how to free their handle and how to name
themselves in messages.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from typing import Any, Callable, Dict, Optional, Set, TypeVar

from ._ffi import call
from .errors import InvalidArgumentError

_M = TypeVar("_M", bound="Managed")

_frame = sys._getframe


def _running_frames() -> Set[Any]:
    """Every frame some thread is executing now (each thread's stack)."""
    running: Set[Any] = set()
    for top in sys._current_frames().values():
        f: Any = top
        while f is not None:
            running.add(f)
            f = f.f_back
    return running


class Managed:
    """Base class of the objects that own a handle of the library.

    A subclass calls ``super().__init__()`` first, opens its handle and gives it to
    :meth:`_set_handle`; it implements :meth:`_delete` (free the handle) and
    :meth:`_what` (how messages name the object); its methods call the library
    through :meth:`_call` (or :meth:`_borrow`/:meth:`_release`), never with a handle
    kept elsewhere.

    * ``close()`` is idempotent; it waits for calls in flight on other threads, and
      later calls raise :class:`InvalidArgumentError` ("the ... is closed").
    * ``with obj:`` closes on exit; an object garbage-collected unclosed is freed
      then (a backstop, not a way to close).
    * After ``fork()``, the child cannot use the object (:class:`InvalidArgumentError`
      naming both processes); ``close()`` there only forgets the handle, without
      freeing the parent's resources or waiting on state copied from the parent (a
      call counted by a thread that does not exist in the child).
    """

    # Class-level defaults: __del__ and `closed` work even when __init__ failed early.
    _handle: Optional[int] = None
    _pid: int = -1

    def __init__(self) -> None:
        self._handle = None
        self._pid = os.getpid()
        self._cond = threading.Condition()
        # The frame of each call in flight (guarded by _cond). Frames, not a count: an
        # exception raised by a signal handler (Ctrl-C) between a borrow and its
        # release leaves an entry whose frame no longer runs, which close() drops — a
        # count stayed raised and close() (and interpreter exit) waited for ever.
        self._calls: Dict[Any, None] = {}

    # -- for subclasses --

    def _delete(self, handle: int) -> None:
        """Free the handle (``trib_*_close`` / ``trib_*_free``)."""
        raise NotImplementedError

    def _what(self) -> str:
        """The object in messages: ``"journal '/var/spool/a.journal'"``."""
        raise NotImplementedError

    def _set_handle(self, handle: "ctypes.c_void_p") -> None:
        """Take ownership of a handle just opened (the ``c_void_p`` the library filled)."""
        assert self._handle is None and handle.value, "a Managed object owns one non-NULL handle"
        self._handle = handle.value

    def _check(self) -> int:
        """The handle, or raise if this object is closed or was opened by another
        process (before a fork)."""
        handle = self._handle
        if handle is None:
            raise InvalidArgumentError(f"the {self._what()} is closed", code=InvalidArgumentError.code)
        pid = os.getpid()
        if pid != self._pid:
            name = type(self).__name__
            raise InvalidArgumentError(
                f"this {name} ({self._what()}) was opened in process {self._pid} and cannot be used after "
                f"fork() (this is process {pid}): open a new {name} in the child",
                code=InvalidArgumentError.code,
            )
        return handle

    def _borrow(self) -> int:
        """The handle for one call into the library by the calling function;
        ``close()`` waits until its matching :meth:`_release` (or until that function
        no longer runs)."""
        frame = _frame(1)
        with self._cond:
            # Registered before the handle is read: `_check` makes C calls, after which
            # a signal handler may run; its close() must see this call (an outside
            # tester: a handler's close() freed the handle a call then used).
            self._calls[frame] = None
            try:
                return self._check()
            except BaseException:
                del self._calls[frame]
                raise

    def _release(self) -> None:
        frame = _frame(1)
        with self._cond:
            self._calls.pop(frame, None)
            if not self._calls:
                self._cond.notify_all()

    def _wait_for_calls(self, handle: Optional[int]) -> None:
        """With ``_cond`` held and the handle taken out: wait until no call on it is in
        flight. A call whose function no longer runs was left by an exception between
        its borrow and its release: forgotten. A call running on this thread (a signal
        handler or a callback inside it called ``close()``) cannot end while this
        waits: refused, the object left open."""
        while self._calls:
            running = _running_frames()
            for f in [f for f in self._calls if f not in running]:
                del self._calls[f]
            if not self._calls:
                return
            mine: Set[Any] = set()
            f: Any = _frame(1)
            while f is not None:
                mine.add(f)
                f = f.f_back
            if any(f in mine for f in self._calls):
                self._handle = handle
                raise InvalidArgumentError(
                    f"close() of the {self._what()} was called from inside a call on it on the same thread (a "
                    "signal handler or a callback): close it after that call returns",
                    code=InvalidArgumentError.code,
                )
            # Woken by the last release; the timeout re-checks for a call left by an
            # exception inside its release.
            self._cond.wait(0.1)

    def _call(self, fn: Callable[..., int], *args: Any) -> None:
        """``_ffi.call(fn, handle, *args)``: a fallible call on this object's handle."""
        handle = self._borrow()
        try:
            call(fn, handle, *args)
        finally:
            self._release()

    # -- public life cycle --

    def close(self) -> None:
        """Release the handle (idempotent). Waits for calls in flight on other threads."""
        if os.getpid() != self._pid:
            self._handle = None  # the parent's handle: neither freed nor waited for here
            return
        with self._cond:
            handle, self._handle = self._handle, None
            self._wait_for_calls(handle)
        if handle is not None:
            self._delete(handle)

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __enter__(self: _M) -> _M:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # No call can be in flight: a running method holds a reference to the object.
        handle = self._handle
        if handle is None or os.getpid() != self._pid:
            return
        self._handle = None
        try:
            self._delete(handle)
        except Exception:  # noqa: BLE001 - at interpreter exit the library may be gone
            pass
