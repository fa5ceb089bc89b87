"""tributary.compact: the library's daemon loop (trib_compact) from Python."""

from __future__ import annotations

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
    assert report == tributary.CompactReport(rounds=report.rounds, lines=3) and report.rounds >= 1
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
        tributary.compact(target, None)  # type: ignore[arg-type]
