"""tributary.Compactor: a target and its journal sources (trib_compactor_*), run until
empty, as a daemon, or in the background of the application."""

from __future__ import annotations

import sys
import textwrap
import threading
from pathlib import Path
from typing import List, Tuple

import pytest

import tributary
from conftest import HANG_GUARD, run_python, target_lines, wait_for


def test_drain_until_empty_over_several_sources(target: Path, spool: Path, tmp_path: Path) -> None:
    other, later = tmp_path / "other-spool", tmp_path / "later.journal"
    with tributary.Journal(spool / "a.journal") as a:
        a.append_many(["a1", "a2"])
    loose = tributary.Journal(tmp_path / "loose.journal")
    loose.append("loose")
    (spool / "junk.journal").write_bytes(b"not a journal")
    events: List[tributary.CompactEvent] = []
    with tributary.Compactor(target, spools=[spool, other], journals=[loose, spool / "a.journal", later]) as c:
        report = c.drain_until_empty(on_event=events.append)
        assert sorted(target_lines(target)) == [b"a1", b"a2", b"loose"]
        # the junk journal, the journal not there yet, the spool not there yet
        assert (report.lines, report.set_aside) == (3, 3), events
        told = {e.subject: e.type for e in events}
        assert told[f"spool {other}"] == "problem" and told[f"journal {later}"] == "set_aside", events
        # They appear: the next run drains them and nothing twice.
        other.mkdir()
        for p in (later, other / "o.journal"):
            with tributary.Journal(p) as j:
                j.append(p.name)
        report = c.drain_until_empty()
        assert (report.lines, report.set_aside) == (2, 1)
    assert sorted(target_lines(target)) == [b"a1", b"a2", b"later.journal", b"loose", b"o.journal"]
    loose.close()
    assert tributary.verify(target).consistent


def test_background_compactor_drains_while_the_application_runs_and_on_exit(target: Path, spool: Path) -> None:
    with tributary.Journal(spool / "app.journal") as j, tributary.Compactor(target, spools=[spool]) as c:
        j.append_many([f"early {i}" for i in range(10)])
        # A long interval: after draining the early lines it finds nothing and sleeps,
        # so only the last drain of stop() (leaving the block) can move the late ones.
        assert c.start(interval=3600) is c and c.running
        with pytest.raises(tributary.InvalidArgumentError, match="already running"):
            c.start()
        wait_for(lambda: len(target_lines(target)) == 10, what="the background compactor to drain 10 lines")
        j.append_many([f"late {i}" for i in range(5)])
    assert not c.running and c.closed
    lines = target_lines(target)
    assert sorted(lines) == sorted([f"early {i}".encode() for i in range(10)] + [f"late {i}".encode() for i in range(5)])
    assert tributary.verify(target).consistent


def test_stop_returns_the_report_and_a_new_start_works(target: Path, spool: Path) -> None:
    with tributary.Journal(spool / "app.journal") as j, tributary.Compactor(target, spools=[spool]) as c:
        c.start(interval=0.001)
        j.append("one")
        wait_for(lambda: target_lines(target) == [b"one"], what="one line drained")
        report = c.stop(drain=False)
        assert report.lines == 1 and not c.running
        j.append("two")
        assert target_lines(target) == [b"one"], "stopped: nothing drains"
        c.start(interval=0.001)
        report = c.stop()  # with the last drain
        assert report.lines == 1 and target_lines(target) == [b"one", b"two"]


def test_an_error_that_needs_a_human_stops_the_background_run_and_stop_raises_it(target: Path, spool: Path) -> None:
    seen = threading.Event()
    with tributary.Journal(spool / "app.journal") as j:
        j.append("one")
        c = tributary.Compactor(target, spools=[spool])
        c.start(interval=0.001, on_event=lambda e: seen.set())
        wait_for(seen.is_set, what="the first round")
        target.write_bytes(b"")  # committed bytes cut behind tributary's back
        j.append("two")
        wait_for(lambda: not c.running, what="the background run to stop on a truncated target")
        with pytest.raises(tributary.TargetTruncatedError):
            c.stop(drain=False)
        c.close()


def test_interpreter_exit_stops_a_background_compactor(target: Path, spool: Path) -> None:
    # Never stopped nor closed: the exit hook stops it after the round in flight, so a
    # callback never meets a finalizing interpreter (which would abort the process).
    code = textwrap.dedent(
        """
        import sys, threading, tributary
        committed = threading.Event()
        def write():
            with tributary.Journal(sys.argv[2] + "/w.journal") as j:
                while True:
                    j.append("line")
        threading.Thread(target=write, daemon=True).start()
        c = tributary.Compactor(sys.argv[1], spools=[sys.argv[2]])
        c.start(interval=0.001, on_event=lambda e: committed.set())
        committed.wait()
        print("exiting", flush=True)
        """
    )
    for _ in range(3):
        r = run_python(code, str(target), str(spool))
        assert (r.returncode, r.stdout) == (0, "exiting\n"), r.stderr
    assert tributary.verify(target).consistent


def test_bad_arguments(target: Path, spool: Path) -> None:
    with pytest.raises(tributary.InvalidArgumentError, match=r"spools=\[folder\]"):
        tributary.Compactor(target, spools=str(spool))  # type: ignore[arg-type]
    with pytest.raises(tributary.InvalidArgumentError, match=r"journals=\[path\]"):
        tributary.Compactor(target, journals=spool / "a.journal")  # type: ignore[arg-type]
    with pytest.raises(tributary.InvalidArgumentError):
        tributary.Compactor(target, spools=["a\0b"])
    c = tributary.Compactor(target)
    with pytest.raises(tributary.InvalidArgumentError):
        c.run(interval=-1)
    c.close()
    c.close()
    with pytest.raises(tributary.InvalidArgumentError, match="closed"):
        c.add_spool(spool)
    with pytest.raises(tributary.InvalidArgumentError, match="closed"):
        c.drain_until_empty()
    assert c.stop() == tributary.CompactReport(0, 0)


def _wait_for_lock_waiter(lock: Path) -> None:
    """Until some process is blocked on ``lock`` (a ``->`` line of /proc/locks)."""
    suffix = f":{lock.stat().st_ino} "

    def waiting() -> bool:
        with open("/proc/locks") as f:
            return any("->" in line and suffix in line for line in f)

    wait_for(waiting, what=f"a process blocked on {lock}")


def _signalled_while_waiting_for_the_lock(target: Path, spool: Path, code: str, signum: int) -> Tuple[int, str, str]:
    """Run ``code`` (argv: target, its one journal holding a line, the spool) in a child
    Python while this process holds the target's lock; once the child is blocked on
    it, send it ``signum``. Its exit status, stdout and stderr."""
    import fcntl
    import subprocess

    journal = spool / "a.journal"
    with tributary.Journal(journal) as j:
        j.append(b"waiting")
    lock = Path(f"{target}.tributary/lock")
    with open(lock, "r+") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)  # a POSIX lock conflicts with the library's OFD lock
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(target), str(journal), str(spool)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for_lock_waiter(lock)
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=HANG_GUARD)
        finally:
            proc.kill()
    return proc.returncode, out, err


@pytest.mark.parametrize("call", ["drain", "retire"])
def test_ctrl_c_ends_a_wait_for_the_lock(target: Path, spool: Path, call: str) -> None:
    # An outside tester's drain and retire sat out the whole lock timeout (30 s)
    # after a Ctrl-C: the blocking ctypes call keeps Python from running its signal
    # handler. Here the timeout is an hour: only the interrupt can end the wait.
    import signal

    code = f"""
        import sys, tributary
        try:
            tributary.{call}(sys.argv[1], [sys.argv[2]], lock_timeout=3600)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(0)
        print("returned", flush=True)
        sys.exit(1)
        """
    rc, out, err = _signalled_while_waiting_for_the_lock(target, spool, code, signal.SIGINT)
    assert (rc, out) == (0, "interrupted\n"), err
    journal = spool / "a.journal"
    assert journal.exists(), "an interrupted retire deleted the journal"
    assert target_lines(target) == []
    report = tributary.drain(target, [journal])
    assert report.lines == 1 and target_lines(target) == [b"waiting"]


@pytest.mark.parametrize(
    "call, thread",
    [
        ("retire(sys.argv[1], [sys.argv[2]], lock_timeout=3600)", "tributary-call"),
        ("compact(sys.argv[1], sys.argv[3], lock_timeout=3600)", "tributary-compact"),
    ],
    ids=["retire", "compact"],
)
def test_any_exception_a_signal_handler_raises_ends_the_wait_and_the_call_with_it(
    target: Path, spool: Path, call: str, thread: str
) -> None:
    # Only KeyboardInterrupt stopped the call: another exception from a signal handler
    # (a timeout, SystemExit from a SIGTERM handler) left it running on its thread, and
    # an outside reviewer's retire deleted the journal 3 s after its caller had given up
    # (compact's daemon went on the same way).
    import signal

    code = f"""
        import signal, sys, threading, tributary

        class Timeout(Exception):
            pass

        def timeout(*_):
            raise Timeout()

        signal.signal(signal.SIGUSR1, timeout)
        try:
            tributary.{call}
        except Timeout:
            running = [t for t in threading.enumerate() if t.name == "{thread}"]
            print("timed out", len(running), flush=True)
            sys.exit(0)
        print("returned", flush=True)
        sys.exit(1)
        """
    rc, out, err = _signalled_while_waiting_for_the_lock(target, spool, code, signal.SIGUSR1)
    assert (rc, out) == (0, "timed out 0\n"), err
    assert (spool / "a.journal").exists()
