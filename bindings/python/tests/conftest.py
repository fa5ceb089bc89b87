"""Shared fixtures and helpers for the tributary Python tests (real files in tmp_path)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import List

import pytest

import tributary


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    d = tmp_path / "spool"
    d.mkdir()
    return d


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """A target created once with ``tributary.init``, as an application's setup does
    (drains never create one)."""
    t = tmp_path / "out.log"
    assert tributary.init(t).created
    return t


@pytest.fixture
def new_target(tmp_path: Path) -> Path:
    """The path of a target that was never initialised (nothing exists there yet)."""
    return tmp_path / "new.log"


def sidecar(target) -> Path:
    """A target's sidecar folder, ``<target>.tributary``."""
    return Path(os.fsdecode(target) + ".tributary")


def target_lines(target: Path) -> List[bytes]:
    """Every committed line of the target, via a Reader."""
    with tributary.Reader(target) as r:
        return r.lines()


# Every wait in these tests is for a condition; HANG_GUARD (seconds) only bounds it so
# that a hang fails the test instead of blocking the run. Nothing is expected to be
# fast: CI machines are loaded.
HANG_GUARD = 300.0


def run_python(code: str, *args: str, env: dict = None, timeout: float = HANG_GUARD) -> subprocess.CompletedProcess:
    """Run a snippet in a fresh interpreter (same tributary install)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def sqlite_exec(db: Path, sql: str) -> None:
    """Run SQL on a journal with Python's own sqlite3, in another process: two SQLite
    libraries in one process do not see each other's POSIX locks."""
    code = """
        import sqlite3, sys
        c = sqlite3.connect(sys.argv[1], isolation_level=None)
        c.executescript(sys.argv[2])
        c.close()
    """
    r = run_python(code, str(db), sql)
    assert r.returncode == 0, r.stderr


def wait_for(predicate, timeout: float = HANG_GUARD, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; fail only if it still does not after
    ``timeout`` seconds (something hangs)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {timeout} s: something hangs")
        time.sleep(0.01)


def wait_until_inside(thread: threading.Thread, function: str) -> None:
    """Wait until ``thread`` runs ``function`` (a frame of its stack is that function's):
    a test knows that a call is under way, without sleeping and assuming it is "by now"."""

    def inside() -> bool:
        assert thread.is_alive(), f"{thread.name} ended before it was inside {function}"
        frame = sys._current_frames().get(thread.ident)
        while frame is not None:
            if frame.f_code.co_name == function:
                return True
            frame = frame.f_back
        return False

    wait_for(inside, what=f"{thread.name} to be inside {function}")
