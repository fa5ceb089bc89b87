"""The handle life cycle shared by Journal, Reader and the status report
(``tributary._managed.Managed``): messages after close, the garbage-collection
backstop, and close() in a forked child."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import tributary
from tributary._managed import Managed
from conftest import HANG_GUARD, wait_until_inside


def _open_fds_on(path: Path) -> int:
    """How many of this process's file descriptors are open on ``path``."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                n += 1
        except OSError:  # the fd listdir itself used, closed by now
            pass
    return n


def test_every_handle_class_is_managed():
    assert issubclass(tributary.Journal, Managed)
    assert issubclass(tributary.Reader, Managed)
    assert issubclass(tributary._compactor._StatusReportHandle, Managed)


def test_a_closed_handle_says_what_is_closed(tmp_path: Path, target: Path):
    path = tmp_path / "a.journal"
    with tributary.Journal(path) as j:
        pass
    assert j.closed
    with pytest.raises(tributary.InvalidArgumentError, match=f"^the journal {str(path)!r} is closed$"):
        j.append("x")
    j.close()  # idempotent
    with tributary.Reader(target) as r:
        pass
    for use in (r.read_line, lambda: r.offset, lambda: r.cursor, lambda: r.line_start):
        with pytest.raises(tributary.InvalidArgumentError, match=f"^the reader of {str(target)!r} is closed$"):
            use()


def test_an_unclosed_journal_is_freed_when_collected(tmp_path: Path):
    path = tmp_path / "a.journal"
    j = tributary.Journal(path)
    j.append("x")
    assert _open_fds_on(path) >= 1
    del j
    gc.collect()
    assert _open_fds_on(path) == 0, "the journal's file is still open after its Journal was collected"


def test_close_in_a_child_forked_during_a_call_neither_waits_nor_frees(spool: Path, target: Path):
    """A child inherits the count of calls in flight, but not the threads making them:
    its close() must not wait for them (it would wait forever), nor free the parent's
    handle; using the object there is refused."""
    reader = tributary.Reader(target, poll_interval=HANG_GUARD)
    got = []
    t = threading.Thread(target=lambda: got.append(reader.read_line(timeout=None)), name="reader", daemon=True)
    t.start()
    wait_until_inside(t, "call")  # the reader has one call in flight, waiting for a line
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                reader.offset
            except tributary.InvalidArgumentError as e:
                refused = f"opened in process {os.getppid()}" in str(e) and "fork()" in str(e)
            else:
                refused = False
            reader.close()
            code = 0 if refused and reader.closed else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + HANG_GUARD
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child still runs after {HANG_GUARD} s: it hangs in the reader")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0, "the child could use the reader, or close() failed there"
    # The parent's reader is intact: its call in flight gets the next committed line.
    with tributary.Journal(spool / "a.journal") as j:
        j.append(b"after the fork")
    tributary.drain(target, spool=spool)
    t.join(HANG_GUARD)
    assert got == [b"after the fork"]
    reader.close()


def _close_in_a_thread(obj) -> threading.Thread:
    """close() on another thread; the caller joins it, bounded by HANG_GUARD."""
    t = threading.Thread(target=obj.close, name="closer", daemon=True)
    t.start()
    t.join(HANG_GUARD)
    return t


def test_a_call_left_by_an_exception_between_borrow_and_release_does_not_hang_close(spool: Path):
    """A Ctrl-C (any exception a signal handler raises) landing between a call's borrow
    of the handle and its release: an outside tester's logging loop caught the
    KeyboardInterrupts and went on, and close() — and interpreter exit — then waited
    for ever for calls that had ended."""
    j = tributary.Journal(spool / "a.journal")

    def interrupted() -> None:
        j._borrow()
        raise KeyboardInterrupt  # where a signal handler's exception can land

    for _ in range(3):
        with pytest.raises(KeyboardInterrupt):
            interrupted()
    j.append(b"still usable")
    t = _close_in_a_thread(j)
    assert not t.is_alive(), f"close() still waits after {HANG_GUARD} s for calls that ended"
    assert j.closed


def test_close_from_inside_a_call_on_the_same_thread_is_refused_not_a_deadlock(spool: Path):
    """A signal handler or a callback that closes the object while a call on it is in
    flight on the same thread: that call cannot end while close() waits for it (a
    deadlock), and freeing the handle under it would crash: refused, the object open."""
    j = tributary.Journal(spool / "a.journal")

    def inside_a_call() -> None:
        j._borrow()
        try:
            with pytest.raises(tributary.InvalidArgumentError, match="from inside a call on it"):
                j.close()
            assert not j.closed, "the refused close() closed it"
            j.append(b"still open")
        finally:
            j._release()

    inside_a_call()
    t = _close_in_a_thread(j)
    assert not t.is_alive() and j.closed


def test_close_in_a_signal_handler_between_a_call_s_check_and_its_library_call_is_refused(
    spool: Path, monkeypatch: pytest.MonkeyPatch
):
    """A signal handler runs after any C call — also inside the check a call makes
    before it uses the handle (``os.getpid``). Its close() freed the handle the call
    then used (an outside tester: calls into the library with a freed handle; a SIGHUP
    handler that closed and reopened a journal had 64 acknowledged lines stored in the
    new journal). The call is registered before that check: the close is refused."""
    import tributary._managed as managed

    j = tributary.Journal(spool / "a.journal")
    real_getpid = os.getpid
    handler_ran = []

    def getpid_then_a_signal_handler() -> int:
        pid = real_getpid()
        if not handler_ran:
            handler_ran.append(True)
            j.close()  # what the handler does; raises if a call is in flight here
        return pid

    monkeypatch.setattr(managed.os, "getpid", getpid_then_a_signal_handler)
    with pytest.raises(tributary.InvalidArgumentError, match="from inside a call on it"):
        j.append(b"interrupted")
    monkeypatch.setattr(managed.os, "getpid", real_getpid)
    assert handler_ran and not j.closed, "the handle was closed under the call"
    assert j.append(b"after") == 1, "the interrupted append stored something"
    j.close()
