"""tributary.compact: the library's daemon loop (trib_compact) from Python."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import List

import pytest

import tributary
from conftest import HANG_GUARD, target_lines


def test_compact_drains_until_stop_is_set(target: Path, spool: Path) -> None:
    with tributary.Journal(spool / "good.journal") as j:
        j.append_many(["one", "two", "three"])
    (spool / "junk.journal").write_bytes(b"not an SQLite file, not even a little")
    stop = threading.Event()
    events: List[tributary.CompactEvent] = []
    committed = 0

    def on_event(e: tributary.CompactEvent) -> None:
        nonlocal committed
        events.append(e)
        if e.type == "committed":
            committed += e.report.lines
        # Stop once every line is committed and the junk was set aside: a condition.
        if committed == 3 and any(x.type == "set_aside" for x in events):
            stop.set()

    report = tributary.compact(target, spool, interval=0.001, stop=stop, on_event=on_event)
    assert report == tributary.CompactReport(rounds=report.rounds, lines=3, set_aside=1) and report.rounds >= 1
    assert target_lines(target) == [b"one", b"two", b"three"]
    aside = [e for e in events if e.type == "set_aside"]
    assert len(aside) == 1, events  # said once, not once per pass
    assert aside[0].kind == "not_a_journal" and aside[0].subject.endswith("junk.journal")


def test_compact_stopped_from_another_thread(target: Path, spool: Path) -> None:
    stop = threading.Event()
    result: List[tributary.CompactReport] = []
    t = threading.Thread(target=lambda: result.append(tributary.compact(target, spool, stop=stop)))
    t.start()
    with tributary.Journal(spool / "a.journal") as j:
        j.append("x")
    with tributary.Reader(target) as r:  # wait until the daemon committed the line
        assert r.read_line(timeout=HANG_GUARD) == b"x"
    stop.set()
    t.join(HANG_GUARD)
    assert not t.is_alive() and result[0].lines == 1


def test_a_stop_set_before_the_call_returns_at_once(target: Path, spool: Path) -> None:
    stop = threading.Event()
    stop.set()
    assert tributary.compact(target, spool, stop=stop) == tributary.CompactReport(0, 0)


def test_an_error_that_needs_a_human_raises(target: Path, spool: Path) -> None:
    with tributary.Journal(spool / "a.journal") as j:
        j.append("x")
        tributary.drain(target, spool=spool)
        target.write_bytes(b"")  # committed bytes cut behind tributary's back
        j.append("y")
    with pytest.raises(tributary.TargetTruncatedError) as info:
        tributary.compact(target, spool, interval=0.001)  # no stop: it must end by itself
    assert info.value.report == tributary.CompactReport(0, 0)


def test_an_exception_in_on_event_stops_the_daemon_and_is_raised(target: Path, spool: Path) -> None:
    with tributary.Journal(spool / "a.journal") as j:
        j.append("x")

    def boom(e: tributary.CompactEvent) -> None:
        raise RuntimeError(f"boom on {e.type}")

    with pytest.raises(RuntimeError, match="boom on committed"):
        tributary.compact(target, spool, interval=0.001, on_event=boom)
    assert target_lines(target) == [b"x"]  # the round itself was committed


def test_bad_arguments(target: Path, spool: Path) -> None:
    with pytest.raises(tributary.InvalidArgumentError):
        tributary.compact(target, spool, interval=-1)
    with pytest.raises(tributary.InvalidArgumentError):
        tributary.compact(target, None)
    with pytest.raises(tributary.InvalidArgumentError, match="not both"):
        tributary.compact(target, spool, journals=[spool / "a.journal"])


def test_compact_over_a_fixed_set_sets_a_missing_journal_aside_until_it_appears(
    target: Path, spool: Path, tmp_path: Path
) -> None:
    with tributary.Journal(spool / "present.journal") as j:
        j.append("first")
    later = tmp_path / "elsewhere" / "later.journal"
    later.parent.mkdir()
    stop = threading.Event()
    aside: List[tributary.CompactEvent] = []
    committed = 0

    def on_event(e: tributary.CompactEvent) -> None:
        nonlocal committed
        if e.type == "set_aside":
            aside.append(e)
            with tributary.Journal(later) as lj:  # reported: now it appears, with a line
                lj.append("second")
        if e.type == "committed":
            committed += e.report.lines
            if committed == 2:  # a condition, not a time
                stop.set()

    report = tributary.compact(
        target, journals=[spool / "present.journal", later], interval=0.001, stop=stop, on_event=on_event
    )
    assert report.lines == 2
    assert target_lines(target) == [b"first", b"second"]
    assert len(aside) == 1 and aside[0].kind == "not_a_journal" and aside[0].subject.endswith("later.journal")


def test_ctrl_c_stops_the_daemon_after_its_round_and_raises_keyboard_interrupt(target: Path, spool: Path) -> None:
    # A real SIGINT to a real process running compact() in its main thread, as a user's
    # Ctrl-C would be: the round in flight ends, then KeyboardInterrupt propagates.
    with tributary.Journal(spool / "a.journal") as j:
        j.append("x")
    code = textwrap.dedent(
        """
        import sys, tributary
        def on_event(e):
            if e.type == "committed":
                print("committed", e.report.lines, flush=True)
        try:
            tributary.compact(sys.argv[1], sys.argv[2], interval=0.001, on_event=on_event)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(42)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(target), str(spool)], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "committed 1\n"  # the daemon is running
        child.send_signal(signal.SIGINT)
        assert child.wait(HANG_GUARD) == 42, "compact() must raise KeyboardInterrupt on SIGINT"
        assert child.stdout.read() == "interrupted\n"
    finally:
        if child.poll() is None:
            child.kill()
    assert target_lines(target) == [b"x"]
    assert tributary.verify(target).consistent


def test_a_process_that_exits_while_compact_runs_in_a_daemon_thread_exits_cleanly(target: Path, spool: Path) -> None:
    # The daemon keeps calling back (a writer keeps it committing) when the main thread
    # returns. Without the atexit stop, its callback met a finalizing interpreter, whose
    # forced unwind through the library's panic boundary aborted the process.
    code = textwrap.dedent(
        """
        import sys, threading, tributary
        committed = threading.Event()
        def on_event(e):
            committed.set()
        def write():
            with tributary.Journal(sys.argv[2] + "/w.journal") as j:
                while True:
                    j.append("line")
        threading.Thread(target=write, daemon=True).start()
        threading.Thread(
            target=lambda: tributary.compact(sys.argv[1], sys.argv[2], interval=0.001, on_event=on_event),
            daemon=True,
        ).start()
        committed.wait()
        print("exiting", flush=True)
        """
    )
    for _ in range(5):
        r = subprocess.run(
            [sys.executable, "-c", code, str(target), str(spool)], capture_output=True, text=True, timeout=HANG_GUARD
        )
        assert (r.returncode, r.stdout) == (0, "exiting\n"), r.stderr
    assert tributary.verify(target).consistent


def test_a_spool_drain_refusing_one_file_says_what_it_drained(target: Path, spool: Path) -> None:
    with tributary.Journal(spool / "good.journal") as j:
        j.append_many(["one", "two"])
    (spool / "junk.journal").write_bytes(b"not an SQLite file, not even a little")
    with pytest.raises(tributary.NotAJournalError) as info:
        tributary.drain(target, spool=spool)
    assert "junk.journal" in str(info.value)
    assert info.value.report.lines == 2 and info.value.report.journals == 1, info.value.report
    assert target_lines(target) == [b"one", b"two"]
