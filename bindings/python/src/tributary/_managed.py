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
import threading
from typing import Any, Callable, Optional, TypeVar

from ._ffi import call
from .errors import InvalidArgumentError

_M = TypeVar("_M", bound="Managed")


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
        self._busy = 0  # calls in flight (guarded by _cond)

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
        """The handle for one call into the library; ``close()`` waits until the
        matching :meth:`_release`."""
        with self._cond:
            handle = self._check()
            self._busy += 1
            return handle

    def _release(self) -> None:
        with self._cond:
            self._busy -= 1
            if self._busy == 0:
                self._cond.notify_all()

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
            while self._busy:
                self._cond.wait()
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
