"""Named reader cursors kept durably in a local SQLite file: :class:`CursorStore` (the
C ABI's ``trib_cursor_store``; its handle life cycle is ``_managed.Managed``'s)."""

from __future__ import annotations

import os
import threading
from ctypes import byref, c_bool
from typing import Any, Optional, Tuple, Union

from . import _ffi
from ._ffi import call, fspath_bytes, lib
from ._journal import _name_bytes
from ._managed import Managed
from ._reader import Cursor, _cursor_from_c, _cursor_to_c
from ._util import PathLike

__all__ = ["CursorStore"]


class CursorStore(Managed):
    """Named reader cursors in a local SQLite file (created, mode 0600, if missing; on a
    local disk: a network filesystem is :class:`UnsafeFilesystemError`).

    ``commit(name, cursor)`` records durably (fsync) that ``name`` processed everything
    before ``cursor``; ``get(name)`` gives it back (None if never committed), to resume
    with ``Reader(target, cursor=store.get(name))``. A stored cursor keeps its target's
    id, so a reader of another target refuses it. For results appended to a journal,
    prefer :meth:`Journal.append_many_with_cursor`, which commits the cursor with the
    results in one transaction. A context manager; safe to share between threads (calls
    are serialised)."""

    def __init__(self, path: PathLike) -> None:
        super().__init__()
        self._lock = threading.Lock()  # a trib_cursor_store is single-threaded
        self.path = os.fspath(path)
        handle = _ffi.trib_cursor_store_p()
        call(lib.trib_cursor_store_open, fspath_bytes(path, "path"), byref(handle))
        self._set_handle(handle)

    def _delete(self, handle: int) -> None:
        lib.trib_cursor_store_close(handle)

    def _what(self) -> str:
        return f"cursor store {self.path!r}"

    def get(self, name: str) -> Optional[Cursor]:
        """The cursor last committed under ``name``, or None."""
        out = _ffi.trib_cursor()
        found = c_bool()
        n = _name_bytes(name)
        self._check()
        with self._lock:
            self._call(lib.trib_cursor_store_get, n, byref(out), byref(found))
        return _cursor_from_c(out) if found.value else None

    def commit(self, name: str, cursor: Union[Cursor, Tuple[Any, ...], str]) -> None:
        """Durably record ``cursor`` (a :class:`Cursor`, a tuple or its text) under
        ``name``, replacing what it held."""
        n = _name_bytes(name)
        c = _cursor_to_c(cursor)
        self._check()
        with self._lock:
            self._call(lib.trib_cursor_store_commit, n, byref(c))

    def __repr__(self) -> str:
        return f"<tributary.CursorStore {self.path!r}{' closed' if self.closed else ''}>"
