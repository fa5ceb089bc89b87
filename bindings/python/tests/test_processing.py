"""A processor's pieces in Python: CursorStore, a cursor committed in the journal with its results
(also across a SIGKILL), keyed outcomes, a reader's lag."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import tributary
from conftest import run_python


def _target_with(tmp_path: Path, name: str, lines) -> Path:
    t = tmp_path / name
    tributary.init(t)
    with tributary.Journal(tmp_path / f"{name}.journal") as j:
        j.append_many(lines)
        tributary.drain(t, journals=[j])
    return t


def test_cursor_store_round_trip_and_resume(tmp_path: Path):
    a = _target_with(tmp_path, "a.log", [b"one", b"two", b"three"])
    store_path = tmp_path / "r.cursors"
    with tributary.CursorStore(store_path) as store:
        assert store.get("r1") is None
        with tributary.Reader(a) as r:
            assert r.read_line() == b"one"
            store.commit("r1", r.cursor)
            kept = r.cursor
        assert store.get("r1") == kept and kept.target_id
        with pytest.raises(tributary.InvalidArgumentError):
            store.get("")
        with pytest.raises(TypeError):
            store.get(None)
    assert store.closed
    with pytest.raises(tributary.InvalidArgumentError, match="closed"):
        store.get("r1")
    with tributary.CursorStore(store_path) as store:  # durable across handles
        c = store.get("r1")
    with tributary.Reader(a, cursor=c) as r:
        assert r.lines() == [b"two", b"three"]
    b = _target_with(tmp_path, "b.log", [b"x"])
    with pytest.raises(tributary.InvalidArgumentError, match="belongs to target"):
        tributary.Reader(b, cursor=c)
    (tmp_path / "junk").write_bytes(b"not a cursor store, just bytes" * 10)
    with pytest.raises(tributary.TributaryError):
        tributary.CursorStore(tmp_path / "junk")


def test_keyed_outcomes_say_stored_or_absorbed(tmp_path: Path):
    with tributary.Journal(tmp_path / "k.journal") as j:
        assert j.append_keyed_outcome("k1", "one") == tributary.KeyedAppend(1, True)
        assert j.append_keyed_outcome("k1", "one") == tributary.KeyedAppend(1, False)
        out = j.append_keyed_many([("k2", "two"), ("k1", "again"), ("k2", "dup")])
        assert out == [(2, True), (1, False), (2, False)]
        assert out[0].stored and not out[1].stored
        assert j.append_keyed_many([]) == []
        with pytest.raises(tributary.InvalidLineError):
            j.append_keyed_many([("k3", "ok"), ("k4", "bad\n")])
        assert j.backlog().last_seq == 2
        # a second handle (as another process would) retrying: absorbed
        with tributary.Journal(tmp_path / "k.journal") as other:
            assert other.append_keyed_outcome("k2", "two") == (2, False)


def test_results_and_cursor_commit_together(tmp_path: Path):
    a = _target_with(tmp_path, "a.log", [b"one", b"two", b"three"])
    b = _target_with(tmp_path, "b.log", [b"x"])
    with tributary.Journal(tmp_path / "p.journal") as j:
        assert j.cursor("A") is None
        with tributary.Reader(a) as r:
            line = r.read_line()
            assert j.append_many_with_cursor([b"r:" + line], "A", r.cursor) == 1
            c = r.cursor
        assert j.cursor("A") == c
        assert j.append_many_with_cursor([], "A", c) == 0  # no result: only the cursor
        with pytest.raises(tributary.InvalidLineError):
            j.append_many_with_cursor([b"ok", b"bad\n"], "A", tributary.Cursor(0, 0))
        assert j.cursor("A") == c
        with tributary.Reader(b) as rb:
            with pytest.raises(tributary.InvalidArgumentError, match="one cursor name follows one target"):
                j.append_many_with_cursor([b"r:x"], "A", rb.cursor)
        assert j.backlog().last_seq == 1
        with pytest.raises(tributary.InvalidArgumentError):
            j.cursor("")
        with tributary.Reader(a, cursor=j.cursor("A")) as r:
            assert r.lines() == [b"two", b"three"]


_PROCESSOR = """
import os, signal, sys, tributary
a, jp, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
with tributary.Journal(jp) as j:
    start = j.cursor("A") or tributary.Cursor(0, 0)
    with tributary.Reader(a, cursor=start) as r:
        n = 0
        while True:
            line = r.read_line()
            if line is None:
                break
            n += 1
            if n == kill_after:
                # the results are computed, the commit never happens
                os.kill(os.getpid(), signal.SIGKILL)
            j.append_many_with_cursor([b"r:" + line, b"r2:" + line], "A", r.cursor)
"""


def test_a_processor_killed_between_processing_and_commit_replays_exactly(tmp_path: Path):
    lines = [f"a-{i:03}".encode() for i in range(40)]
    a = _target_with(tmp_path, "a.log", lines)
    b = tmp_path / "b.log"
    tributary.init(b)
    jp = tmp_path / "p.journal"
    # killed by itself between processing and commit, and by the library's failpoints
    # just before and just after its commit's transaction
    runs = [(5, None), (1, None), (0, "journal.before_commit"), (9, None), (0, "journal.after_commit"), (3, None)]
    for kill_after, failpoint in runs:
        env = {"TRIBUTARY_FAILPOINTS": f"{failpoint}=kill"} if failpoint else None
        r = run_python(_PROCESSOR, str(a), str(jp), str(kill_after), env=env)
        assert r.returncode == -signal.SIGKILL, (failpoint, r.stderr)
        with tributary.Journal(jp) as j:
            c = j.cursor("A")
            tributary.drain(b, journals=[j])
        with tributary.Reader(a) as ra:
            done = []
            while ra.cursor != c:
                done.append(ra.read_line())
        want = [x for line in done for x in (b"r:" + line, b"r2:" + line)]
        with tributary.Reader(b) as rb:
            assert rb.lines() == want
    r = run_python(_PROCESSOR, str(a), str(jp), "0")
    assert r.returncode == 0, r.stderr
    with tributary.Journal(jp) as j:
        tributary.drain(b, journals=[j])
    with tributary.Reader(b) as rb:
        assert rb.lines() == [x for line in lines for x in (b"r:" + line, b"r2:" + line)]


def test_reader_lag(tmp_path: Path):
    t = tmp_path / "t.log"
    tributary.init(t)
    with tributary.Reader(t) as r:
        assert r.lag() == tributary.Lag(0, 0)
        with tributary.Journal(tmp_path / "w.journal") as j:
            j.append_many([b"12345", b"6789"])
            tributary.drain(t, journals=[j], rotate_bytes=5)
            j.append(b"abc")
            tributary.drain(t, journals=[j], rotate_bytes=5)
        lag = r.lag()
        assert lag.bytes == 6 + 5 + 4 and lag.later_generations >= 1
        assert r.read_line() == b"12345"
        assert r.lag().bytes == 5 + 4
        r.lines()
        assert r.lag() == (0, 0)
    assert r.closed
    with pytest.raises(tributary.InvalidArgumentError, match="closed"):
        r.lag()
