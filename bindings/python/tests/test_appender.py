"""tributary.Appender and JournalHandler(background=True): background commit
(trib_appender) — push returns before durability, flush waits for it, a crash loses
at most the unflushed tail, never a flushed record."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tributary
import tributary.logging
from conftest import HANG_GUARD, target_lines


def drained(target: Path, journal: Path) -> list:
    tributary.drain(target, journals=[journal])
    return target_lines(target)


def run_script_and_drain(target: Path, spool: Path, name: str, code: str, method: str) -> list:
    """Run ``code`` as script ``name`` with the journal path and ``method`` as its
    arguments (it must exit 0), then drain the spool: the target's lines."""
    script = spool.parent / name
    script.write_text(code)
    r = subprocess.run(
        [sys.executable, str(script), str(spool / "app.journal"), method],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )
    assert r.returncode == 0, r.stderr
    tributary.drain(target, spool=spool, create=True)
    return target_lines(target)


def test_push_then_flush_commits_in_order(target: Path, spool: Path) -> None:
    path = spool / "a.journal"
    with tributary.Appender(path, window=7200) as a:  # only flushes commit
        assert a.durable_wait() is None, "nothing committed yet"
        for i in range(1000):
            assert a.push(f"line {i}") is True
        a.flush()
        # the window as measured: every line waited (its commit has an fsync)
        assert 0 < a.durable_wait(0.5) <= a.durable_wait(0.99) <= a.durable_wait(1.0)
        with pytest.raises(tributary.InvalidArgumentError, match="fraction"):
            a.durable_wait(1.5)
        assert a.stats == tributary.AppenderStats(pushed=1000, committed=1000, dropped=0, commits=1, failed_commits=0)
    assert drained(target, path) == [f"line {i}".encode() for i in range(1000)]


def test_on_full_drop_counts_and_says_so(target: Path, spool: Path) -> None:
    path = spool / "a.journal"
    with tributary.Appender(path, window=7200, max_queue_bytes=15, on_full="drop") as a:
        assert a.push(b"0123456789") is True
        assert a.push(b"abcdefghij") is False
        assert a.dropped == 1
    assert drained(target, path) == [b"0123456789"]


def test_bad_input_is_refused_clearly(spool: Path) -> None:
    with tributary.Appender(spool / "a.journal", max_line=4) as a:
        with pytest.raises(tributary.InvalidLineError):
            a.push("a\nb")
        with pytest.raises(tributary.InvalidLineError):
            a.push("too long")
    for bad in (dict(on_full="sometimes"), dict(window=-1), dict(max_queue_bytes=0), dict(durability="maybe")):
        with pytest.raises(tributary.InvalidArgumentError):
            tributary.Appender(spool / "b.journal", **bad)
    a = tributary.Appender(spool / "c.journal")
    a.close()
    with pytest.raises(tributary.InvalidArgumentError, match="closed"):
        a.push("x")


def test_a_journal_removed_under_an_appender_is_opened_again_by_its_path(spool: Path, target: Path) -> None:
    # (a logging process kept failing every record after its journal was retired)
    path = spool / "a.journal"
    a = tributary.Appender(path, window=7200)
    a.push("gone with the files")
    a.flush()
    a.push("after")
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(f"{path}{suffix}")
        except FileNotFoundError:
            pass
    a.flush()  # committed into the journal made again at the path
    a.push("more")
    a.close()
    tributary.drain(target, journals=[path])
    assert target_lines(target) == [b"after", b"more"]


CHILD = """
import sys, tributary
a = tributary.Appender(sys.argv[1], window=0.001)
i = 0
while True:
    for _ in range(50):
        a.push(f"line {i}")
        i += 1
    a.flush()
    print(i, flush=True)  # every line before this one is durable
"""


def test_sigkill_loses_no_flushed_record_and_keeps_a_prefix(target: Path, spool: Path) -> None:
    # A real process pushing and flushing, killed with SIGKILL after its 20th flush:
    # every record before the last flush it reported survives, and what survives is a
    # prefix of what it pushed (push order, no gap, no duplicate).
    path = spool / "a.journal"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    flushed = 0
    for _ in range(20):
        flushed = int(child.stdout.readline())
    child.send_signal(signal.SIGKILL)
    child.wait(HANG_GUARD)
    got = drained(target, path)
    assert len(got) >= flushed, f"{flushed} records were flushed, {len(got)} survived"
    assert got == [f"line {i}".encode() for i in range(len(got))]


def test_journal_handler_in_background_is_durable_after_flush(target: Path, spool: Path) -> None:
    path = spool / "app.journal"
    handler = tributary.logging.JournalHandler(path, background=True, window=7200)
    log = logging.getLogger("test_background")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        for i in range(100):
            log.info("record %d\nsecond line", i)
        assert isinstance(handler.journal, tributary.Appender)
        handler.flush()
        assert drained(target, path) == [f"record {i}\\nsecond line".encode() for i in range(100)]
    finally:
        log.removeHandler(handler)
        handler.close()
    assert handler.failed_records == 0 and handler.dropped_records == 0


def test_exit_flushes_what_was_logged_in_the_background(target: Path, spool: Path) -> None:
    # No flush, no close: logging.shutdown (atexit) must make the records durable.
    code = """
        import logging, sys, tributary.logging
        logging.basicConfig(level=logging.INFO, handlers=[
            tributary.logging.JournalHandler(sys.argv[1], background=True, window=7200)])
        for i in range(500):
            logging.info("exit %d", i)
    """
    path = spool / "app.journal"
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert drained(target, path) == [f"INFO:root:exit {i}".encode() for i in range(500)]


def test_a_bare_appender_is_flushed_at_exit(target: Path, spool: Path) -> None:
    # No flush, no close, no logging: the interpreter's exit must still make every
    # pushed record durable (the committer would otherwise die with the process). The
    # leaked reference keeps the object from being collected at exit, so its __del__
    # (a backstop that cannot report errors) never runs: only the atexit flush can
    # save these records.
    code = """
        import ctypes, sys, tributary
        a = tributary.Appender(sys.argv[1], window=7200)
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(a))
        for i in range(500):
            a.push(f"bare {i}")
    """
    path = spool / "a.journal"
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert drained(target, path) == [f"bare {i}".encode() for i in range(500)]


def test_a_normal_exit_says_nothing_about_records_it_made_durable(target: Path, spool: Path) -> None:
    # The appenders' exit hook runs before logging.shutdown (atexit runs the last
    # registered first): it closed the handler's appender, and the handler's flush
    # then printed "could not make records durable: ... is closed" at every normal
    # exit, records all durable (an outside tester, 5 of 5 runs).
    code = """
        import logging, sys, tributary.logging
        logging.basicConfig(level=logging.INFO, handlers=[
            tributary.logging.JournalHandler(sys.argv[1], background=True)])
        for i in range(1000):
            logging.info("quiet %d", i)
    """
    path = spool / "app.journal"
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", f"a normal exit printed: {r.stderr}"
    assert drained(target, path) == [f"INFO:root:quiet {i}".encode() for i in range(1000)]


@pytest.mark.parametrize(
    "method, configured", [("fork", "in __main__"), ("fork", "at import"), ("spawn", "at import"), ("forkserver", "at import")]
)
def test_multiprocessing_children_that_return_normally_keep_their_background_records(
    target: Path, spool: Path, method: str, configured: str
) -> None:
    # A multiprocessing child ends with os._exit: no atexit function runs, so the
    # records its appender still queued died with it, silently (an outside tester:
    # records missing in 8 of 8 runs, often all of a child's). Its exit finalizers
    # now flush its appenders. Logging configured when the main module is imported
    # (the usual pattern): a spawn or forkserver child opens its appender while
    # importing it, before its process starts — and starting clears every exit
    # finalizer registered so far (an outside tester's forkserver children lost 25 to
    # 309 of 2,000 records each). A window far longer than the test: nothing is
    # durable unless the child's exit made it so.
    setup = "logging.basicConfig(level=logging.INFO, handlers=[" + (
        "tributary.logging.JournalHandler(sys.argv[1], background=True, window=7200)])"
    )
    code = f"""
import logging, multiprocessing, sys, tributary.logging
{setup if configured == "at import" else ""}

def child(n):
    for i in range(200):
        logging.info("child %d record %d", n, i)

if __name__ == "__main__":
    {setup if configured == "in __main__" else "pass"}
    ctx = multiprocessing.get_context(sys.argv[2])
    procs = [ctx.Process(target=child, args=(n,)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    sys.exit(max(p.exitcode for p in procs))
"""
    lines = run_script_and_drain(target, spool, "mp_children.py", code, method)
    expected = [f"INFO:root:child {n} record {i}".encode() for n in range(3) for i in range(200)]
    missing = sorted(set(expected) - set(lines))
    assert not missing, f"{method}, configured {configured}: {len(missing)} records lost, e.g. {missing[:3]}"
    assert sorted(lines) == sorted(expected)


def test_a_multiprocessing_childs_threads_log_on_after_its_exit_flush(target: Path, spool: Path) -> None:
    # A child's non-daemon threads are joined after its exit finalizers ran: the exit
    # flush closed the appender, and every record those threads logged afterwards was
    # refused (an outside reviewer: 199 of 200 lost). The thread here starts logging
    # only once a finalizer that runs after tributary's has run.
    code = """
        import logging, multiprocessing, multiprocessing.util, sys, threading, tributary.logging

        def late_logger(after_flush):
            after_flush.wait()
            for i in range(100):
                logging.info("late %d", i)
            logging.getLogger().handlers[0].flush()

        def child():
            logging.info("early")
            after_flush = threading.Event()
            multiprocessing.util.Finalize(None, after_flush.set, exitpriority=-1)
            threading.Thread(target=late_logger, args=(after_flush,)).start()

        if __name__ == "__main__":
            logging.basicConfig(level=logging.INFO, handlers=[
                tributary.logging.JournalHandler(sys.argv[1], background=True, window=7200)])
            p = multiprocessing.get_context("fork").Process(target=child)
            p.start()
            p.join()
            sys.exit(p.exitcode)
    """
    script = spool.parent / "mp_late.py"
    script.write_text(textwrap.dedent(code))
    r = subprocess.run([sys.executable, str(script), str(spool / "app.journal")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "closed" not in r.stderr, r.stderr
    tributary.drain(target, spool=spool, create=True)
    expected = [b"INFO:root:early"] + [f"INFO:root:late {i}".encode() for i in range(100)]
    assert sorted(target_lines(target)) == sorted(expected)


def test_a_storm_of_ctrl_c_while_pushing_leaves_close_working_and_loses_nothing(spool: Path, target: Path) -> None:
    """SIGINTs at arbitrary bytecodes of push/flush/append, caught by the program, which
    goes on; then close() must return (an outside tester: it waited for ever, 3 runs of
    3) and every push or append that returned is in the target exactly once."""
    child = textwrap.dedent(
        """
        import os, signal, sys, tributary
        spool, acks = sys.argv[1], open(sys.argv[2], "w")
        a = tributary.Appender(os.path.join(spool, "a.journal"), durability="normal")
        j = tributary.Journal(os.path.join(spool, "j.journal"), durability="normal")
        i = 0
        stop = os.path.join(spool, "stop")
        # A KeyboardInterrupt only inside the try below (anywhere in push, append,
        # flush and between them): raised elsewhere — an except clause, a loop's jump —
        # it would end the program, which is not what is tested.
        armed = False

        def on_sigint(signum, frame):
            if armed:
                raise KeyboardInterrupt

        signal.signal(signal.SIGINT, on_sigint)
        print("ready", flush=True)
        while not os.path.exists(stop):
            try:
                armed = True
                i += 1
                a.push(f"a{i}"); acks.write(f"a{i}\\n")
                j.append(f"j{i}"); acks.write(f"j{i}\\n")
                if i % 50 == 0:
                    a.flush()
                armed = False
            except KeyboardInterrupt:
                armed = False
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        acks.close()
        a.close(); j.close()
        print("closed", flush=True)
        """
    )
    acks = spool.parent / "acks"
    p = subprocess.Popen(
        [sys.executable, "-c", child, str(spool), str(acks)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout.readline().strip() == "ready"
        for _ in range(20000):  # SIGINTs while it logs
            p.send_signal(signal.SIGINT)
            os.sched_yield()
        (spool / "stop").touch()
        out, _ = p.communicate(timeout=HANG_GUARD)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "closed" in out, f"close() did not return (exit {p.returncode}): {out}"
    (spool / "stop").unlink()
    tributary.drain(target, spool=spool)
    got = target_lines(target)
    acked = [line.encode() for line in acks.read_text().split()]
    assert len(got) == len(set(got)), "a line is in the target twice"
    missing = set(acked) - set(got)
    assert not missing, f"{len(missing)} acknowledged lines are missing"


def test_a_queue_that_outgrows_the_memory_refuses_the_push_instead_of_aborting(spool: Path) -> None:
    """Under an address-space limit, a queue allowed to grow past the memory there is:
    the allocation failed and aborted the whole Python process (SIGABRT, an outside
    tester). Now that push raises, the record not queued; what was queued is kept and
    committed."""
    from conftest import run_python

    out = run_python(
        """
        import os, resource, sys, tributary
        vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20), resource.RLIM_INFINITY))
        a = tributary.Appender(sys.argv[1], window=3600, max_queue_bytes=4 << 30)
        line = b"x" * (1 << 20)
        pushed = 0
        try:
            while pushed < 4000:
                a.push(line)
                pushed += 1
        except tributary.TributaryError as e:
            print(type(e).__name__, pushed, e)
        try:  # a commit under the limit: an error, the records kept (it aborted too)
            a.flush()
        except tributary.TributaryError as e:
            pass
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        a.flush()
        print("flushed", a.stats.committed)
        a.close()
        """,
        str(spool / "a.journal"),
    )
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"
    first, second = out.stdout.splitlines()[:2]
    kind, pushed, message = first.split(" ", 2)
    assert kind == "IoError" and "out of memory" in message, first
    assert 0 < int(pushed) < 4000, first
    assert second == f"flushed {pushed}", out.stdout


def failing_handler(spool: Path) -> tributary.logging.JournalHandler:
    """A background handler whose journal takes about 2,000 bytes and never waits for
    room (no compactor drains it): records past that can never be stored."""
    h = tributary.logging.JournalHandler(
        spool / "app.journal", background=True, window=7200, max_backlog_bytes=2000, full_wait=0
    )
    h.setFormatter(logging.Formatter("%(message)s"))
    return h


def log_100(h: logging.Handler, name: str) -> None:
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(h)
    try:
        for i in range(100):
            log.info("r-%03d-%s", i, "x" * 40)
    finally:
        log.removeHandler(h)


def test_a_background_handler_that_cannot_store_records_says_so_and_counts_them(
    target: Path, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With raiseExceptions off (what the logging docs suggest for production), flush()
    # returned quietly and close() too: 57 of 100 records vanished, counted nowhere
    # (an outside tester). A flush that returns promises durability: it raises now;
    # close counts what it gives up on, and says how many.
    monkeypatch.setattr(logging, "raiseExceptions", False)
    h = failing_handler(spool)
    log_100(h, "cannot-store")
    with pytest.raises(tributary.NotDurableError) as flushed:
        h.flush()
    assert isinstance(flushed.value, OSError) and flushed.value.kind == "journal_full"
    assert flushed.value.records_not_stored == 0, "a failed flush's records stay queued"
    with pytest.raises(tributary.NotDurableError) as closed:
        h.close()
    lost = closed.value.records_not_stored
    assert lost > 0 and f"{lost} queued record(s) were not stored" in str(closed.value)
    tributary.drain(target, spool=spool)
    stored = len(target_lines(target))
    # every record is stored, or counted: refused at emit, or given up at close
    assert stored + h.failed_records == 100, (stored, h.failed_records, lost)
    assert h.failed_records >= lost and 0 < stored < 100


class FlushingSubclass(tributary.logging.JournalHandler):
    def flush(self) -> None:  # one frame more between shutdown and the handler's flush
        super().flush()


@pytest.mark.parametrize("subclass", [False, True])
def test_logging_shutdown_closes_a_background_handler_that_cannot_store_records(
    target: Path, spool: Path, monkeypatch: pytest.MonkeyPatch, subclass: bool
) -> None:
    # logging.shutdown (dictConfig runs it too) skips a handler's close after its
    # flush raised: the flush leaves the saying to close, which counts the loss; and
    # what close raises is an OSError, which shutdown expects, so the other handlers
    # are flushed and closed as well.
    import weakref

    class Other(logging.Handler):
        closed = False

        def emit(self, record: logging.LogRecord) -> None:
            pass

        def close(self) -> None:
            self.closed = True
            super().close()

    monkeypatch.setattr(logging, "raiseExceptions", True)
    h = failing_handler(spool)
    if subclass:
        h.__class__ = FlushingSubclass
    log_100(h, "shutdown")
    other = Other()
    logging.shutdown([weakref.ref(other), weakref.ref(h)])  # h first: reversed
    assert other.closed, "shutdown went on to the next handler"
    assert h._closed, "shutdown closed the handler"
    tributary.drain(target, spool=spool)
    stored = len(target_lines(target))
    assert stored + h.failed_records == 100 and stored < 100, (stored, h.failed_records)


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_a_multiprocessing_childs_threads_records_after_its_exit_flush_survive_its_exit(
    target: Path, spool: Path, method: str
) -> None:
    # After the child's exit flush its non-daemon threads are joined, then it ends with
    # os._exit: what they logged without a flush of their own died queued (an outside
    # tester: 326-467 of 900). From that flush on, every push is durable on return.
    code = """
        import logging, multiprocessing, multiprocessing.util, sys, threading, tributary.logging

        def late_logger(after_flush):
            after_flush.wait()
            for i in range(100):
                logging.info("late %d", i)

        def child():
            logging.basicConfig(level=logging.INFO, force=True, handlers=[
                tributary.logging.JournalHandler(sys.argv[1], background=True, window=7200)])
            logging.info("early")
            after_flush = threading.Event()
            multiprocessing.util.Finalize(None, after_flush.set, exitpriority=-1)
            threading.Thread(target=late_logger, args=(after_flush,)).start()

        if __name__ == "__main__":
            p = multiprocessing.get_context(sys.argv[2]).Process(target=child)
            p.start()
            p.join()
            sys.exit(p.exitcode)
    """
    lines = run_script_and_drain(target, spool, "mp_late_no_flush.py", textwrap.dedent(code), method)
    expected = [b"INFO:root:early"] + [f"INFO:root:late {i}".encode() for i in range(100)]
    assert sorted(lines) == sorted(expected)


def test_an_appender_garbage_collected_without_close_says_what_it_lost(spool: Path) -> None:
    # Its close's error had nobody to go to, and was dropped: 46 of 120 records gone
    # without a trace (an outside tester). It is said on stderr, as at exit.
    code = """
        import gc, sys, tributary
        a = tributary.Appender(sys.argv[1], window=7200, max_backlog_bytes=25)
        for i in range(5):
            a.push(b"line-%05d" % i)
        del a
        gc.collect()
        print("collected", flush=True)
    """
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(spool / "gc.journal")],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )
    assert r.returncode == 0 and "collected" in r.stdout, r.stderr
    assert "garbage-collected without close(): 3 line(s) pushed to it were not stored" in r.stderr, r.stderr
