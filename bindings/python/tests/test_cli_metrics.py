"""`tributary compact --metrics-textfile / --metrics-listen` (issue 17): the real CLI
binary over a real spool, its metrics parsed with prometheus_client's own parser; and
`compact`'s status line on a pseudo-terminal (not when piped).

The CLI is target/release/tributary (scripts/test.d/40-python.sh builds it), or
$TRIBUTARY_CLI. Every wait is for a condition, bounded by HANG_GUARD."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

import tributary
from conftest import HANG_GUARD, target_lines

REPO = Path(__file__).resolve().parents[3]


def cli() -> str:
    exe = os.environ.get("TRIBUTARY_CLI") or str(REPO / "target" / "release" / "tributary")
    if not os.access(exe, os.X_OK):
        pytest.fail(f"{exe} is missing: build it with `cargo build --release -p tributary-cli` (or set TRIBUTARY_CLI)")
    return exe


Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample, by (name, sorted labels); the parser raises on malformed text."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> Optional[float]:
    return samples.get((name, tuple(sorted(labels.items()))))


def wait_for(what: str, probe: Callable[[], Optional[Samples]], ok: Callable[[Samples], bool]) -> Samples:
    """Poll until `ok` holds on what `probe` read; fail with the last reading."""
    deadline = time.monotonic() + HANG_GUARD
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last is not None and ok(last):
            return last
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}; last metrics: {last}")


def read_textfile(path: Path) -> Optional[Samples]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return parse(text)  # a half-written file would not parse: it is renamed into place


def stop(proc: subprocess.Popen) -> Tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=HANG_GUARD)
    return proc.returncode, err


def test_textfile_and_http_metrics_of_a_real_daemon(target: Path, spool: Path, tmp_path: Path) -> None:
    odd = spool / 'odd "name" \\ with\nnewline.journal'
    with tributary.Journal(spool / "a.journal") as a, tributary.Journal(odd) as b:
        a.append_many([f"a{i}" for i in range(100)])
        b.append_many([f"b{i}" for i in range(7)])
    (tmp_path / "metrics").mkdir()
    prom = tmp_path / "metrics" / "tributary.prom"
    proc = subprocess.Popen(
        [cli(), "compact", "--target", str(target), "--spool", str(spool), "--interval", "10",
         "--metrics-textfile", str(prom), "--metrics-interval-ms", "50", "--metrics-backlog-ms", "50",
         "--metrics-listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stderr.readline()  # said before the daemon starts
        assert "serving metrics at http://" in first, first
        url = first.split("serving metrics at ")[1].strip()
        t = str(target)
        def drained(s: Samples) -> bool:
            return (value(s, "tributary_lines_committed_total", target=t) == 107
                    and value(s, "tributary_backlog_lines", target=t, journal=str(odd)) == 0
                    and value(s, "tributary_backlog_lines", target=t, journal=str(spool / "a.journal")) == 0)
        s = wait_for("every line committed and the backlog at 0", lambda: read_textfile(prom), drained)
        assert value(s, "tributary_daemon_up", target=t) == 1
        assert value(s, "tributary_bytes_committed_total", target=t) == sum(
            len(f"a{i}\n") for i in range(100)) + sum(len(f"b{i}\n") for i in range(7))
        # the odd name came back intact through the escaping: quotes, backslash, newline
        assert value(s, "tributary_backlog_bytes", target=t, journal=str(odd)) == 0
        assert value(s, "tributary_backlog_oldest_age_seconds", target=t, journal=str(odd)) == 0
        rounds = value(s, "tributary_rounds_committed_total", target=t)
        assert rounds >= 1
        assert value(s, "tributary_lock_wait_seconds_count", target=t) == rounds
        assert value(s, "tributary_round_duration_seconds_bucket", target=t, le="+Inf") == rounds
        assert value(s, "tributary_problems_total", target=t, kind="not_a_journal") == 0
        assert value(s, "tributary_journals_set_aside", target=t) == 0
        assert sorted(target_lines(target)) == sorted([f"a{i}".encode() for i in range(100)]
                                                      + [f"b{i}".encode() for i in range(7)])

        # A junk file dropped into the spool: counted by kind, and set aside.
        (spool / "junk.journal").write_bytes(b"this is not an SQLite file, not even a little")
        s = wait_for("the junk journal counted", lambda: read_textfile(prom),
                     lambda s: value(s, "tributary_problems_total", target=t, kind="not_a_journal") == 1
                     and value(s, "tributary_journals_set_aside", target=t) == 1)

        # The same page over HTTP, parsed the same way.
        with urllib.request.urlopen(url, timeout=HANG_GUARD) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            http = parse(r.read().decode())
        assert value(http, "tributary_lines_committed_total", target=t) == 107
        assert value(http, "tributary_problems_total", target=t, kind="not_a_journal") == 1
    finally:
        rc, err = stop(proc)
    assert rc == 0, err
    s = read_textfile(prom)
    assert value(s, "tributary_daemon_up", target=str(target)) == 0, "a stopped daemon says so in its last file"
    assert not (tmp_path / "metrics" / ".tributary.prom.tmp").exists()


def test_an_unwritable_metrics_folder_is_reported_once_and_draining_goes_on(target: Path, spool: Path,
                                                                            tmp_path: Path) -> None:
    prom = tmp_path / "no-such-folder" / "tributary.prom"
    proc = subprocess.Popen(
        [cli(), "compact", "--target", str(target), "--spool", str(spool), "--interval", "10",
         "--metrics-textfile", str(prom), "--metrics-interval-ms", "10"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        with tributary.Journal(spool / "a.journal") as j:
            j.append("still drained")
        with tributary.Reader(target) as r:
            assert r.read_line(timeout=HANG_GUARD) == b"still drained"
        with tributary.Journal(spool / "a.journal") as j:
            j.append("and again")  # more refreshes that fail, after the first report
        with tributary.Reader(target) as r:
            r.read_line(timeout=HANG_GUARD)
            assert r.read_line(timeout=HANG_GUARD) == b"and again"
    finally:
        rc, err = stop(proc)
    assert rc == 0, err
    said = [l for l in err.splitlines() if "cannot write the metrics file" in l]
    assert len(said) == 1, err  # once, not once per refresh
    assert str(prom) in said[0] and "make its folder exist" in said[0] and "draining goes on" in said[0], said


def test_compact_draws_a_status_line_on_a_terminal_only(target: Path, spool: Path) -> None:
    with tributary.Journal(spool / "a.journal") as j:
        j.append_many(["x", "y"])
    args = [cli(), "compact", "--target", str(target), "--spool", str(spool), "--interval", "10"]
    # on a terminal: the status line, redrawn in place
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + HANG_GUARD
    try:
        while b"compact: 2 line(s)" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=HANG_GUARD)
        os.close(master)
    assert b"compact: 2 line(s)" in seen and b"\r\x1b[K" in seen, seen
    # piped: as quiet as before, only the log lines
    with tributary.Journal(spool / "a.journal") as j:
        j.append("z")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + HANG_GUARD
        while target_lines(target) != [b"x", b"y", b"z"] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=HANG_GUARD)
    assert target_lines(target) == [b"x", b"y", b"z"]
    assert proc.returncode == 0, err
    assert err.startswith(b"tributary compact: stopped after 1 committing round(s), 1 line(s)"), err
    assert b"\x1b[K" not in err, err
