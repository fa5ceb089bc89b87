"""Python logging throughput, side by side in one run: tributary's JournalHandler
(durable on return, full and normal; background commit) against the non-durable tools
it replaces (concurrent-log-handler, a QueueHandler feeding a FileHandler, the seed
design's flock + write) and the seed design made durable (flock + write + fsync).

N processes (1, 4, 8 by default) each log 100-byte records through ``logging`` for a
fixed time; a ``tributary compact`` daemon drains the spool while the tributary rows
run. A background-commit row counts only records that are durable at the end (its
timed window ends with ``handler.flush()``), and reports the durability window as
its appender measured it (``Appender.durable_wait``: per commit, its oldest record's
wait from push to durable, counted for every record of the batch — never below the
true wait; a sampling thread in Python would read it late, behind the GIL). Rows alternate within each repetition and every figure
is the median of the repetitions, so a loaded machine slows the rows alike: read the
ratios.

Usage: scripts/bench-logging [--seconds S] [--procs 1,4,8] [--reps R] [--out FILE]
(this file is run by that script, inside target/python-venv).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import logging.handlers
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

PAYLOAD = "x" * 80  # with the logger's "%(process)d %(message)s" format: ~100 bytes

VARIANTS = [
    # (name, durable?, description)
    ("tributary full", True, "JournalHandler, durability full (the default): emit returns once fsynced"),
    ("tributary normal", False, "JournalHandler, durability normal: survives a process crash, not a power cut"),
    ("tributary background", True, "JournalHandler(background=True), full: durable within the window below"),
    ("concurrent-log-handler", False, "ConcurrentRotatingFileHandler on one shared file (not durable)"),
    ("QueueHandler -> FileHandler", False, "stdlib: a QueueHandler, a QueueListener thread, a FileHandler on one shared file (not durable)"),
    ("seed: flock + write", False, "per record: flock, write to the shared file (O_APPEND), unlock (not durable)"),
    ("seed: flock + write + fsync", True, "the same with fdatasync before the unlock"),
]


class SeedHandler(logging.Handler):
    """The seed design: one shared file, a lock per record."""

    def __init__(self, path: str, fsync: bool) -> None:
        super().__init__()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.fsync = fsync

    def emit(self, record: logging.LogRecord) -> None:
        data = (self.format(record) + "\n").encode()
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            os.write(self.fd, data)
            if self.fsync:
                os.fdatasync(self.fd)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)
        super().close()


def make_handler(variant: str, work: Path) -> logging.Handler:
    spool = work / "spool"
    shared = str(work / "shared.log")
    pid = os.getpid()
    if variant.startswith("tributary"):
        from tributary.logging import JournalHandler

        path = spool / f"p{pid}.journal"
        if variant == "tributary full":
            return JournalHandler(path)
        if variant == "tributary normal":
            return JournalHandler(path, durability="normal")
        return JournalHandler(path, background=True)
    if variant == "concurrent-log-handler":
        from concurrent_log_handler import ConcurrentRotatingFileHandler

        return ConcurrentRotatingFileHandler(shared, "a", maxBytes=0, backupCount=0)
    if variant == "QueueHandler -> FileHandler":
        q: "queue.Queue[logging.LogRecord]" = queue.Queue(-1)
        fh = logging.FileHandler(shared)
        listener = logging.handlers.QueueListener(q, fh)
        listener.start()
        h = logging.handlers.QueueHandler(q)
        h._listener = listener  # type: ignore[attr-defined]  # stopped by the child
        return h
    if variant == "seed: flock + write":
        return SeedHandler(shared, fsync=False)
    if variant == "seed: flock + write + fsync":
        return SeedHandler(shared, fsync=True)
    raise SystemExit(f"unknown variant {variant!r}")


def child(variant: str, work: Path, seconds: float) -> None:
    """One logging process: ready, wait for go, log for `seconds`, report."""
    handler = make_handler(variant, work)
    handler.setFormatter(logging.Formatter("%(process)d %(message)s"))
    log = logging.getLogger("bench")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    for _ in range(10):  # warm up (opens files, first commit)
        log.info(PAYLOAD)
    if hasattr(handler, "flush"):
        handler.flush()
    appender = getattr(handler, "journal", None) if variant == "tributary background" else None
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()  # go
    lat: List[int] = []
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    clock = time.perf_counter_ns
    while True:
        t0 = clock()
        log.info(PAYLOAD)
        t1 = clock()
        lat.append(t1 - t0)
        n += 1
        if n % 64 == 0 and time.perf_counter() >= deadline:
            break
    handler.flush()  # the background row counts only what is durable by now
    elapsed = time.perf_counter() - start
    listener = getattr(handler, "_listener", None)
    if listener is not None:
        listener.stop()  # after the timed window: what is still queued is not counted as written
    lat.sort()
    out = {
        "records": n,
        "elapsed": elapsed,
        "p99_us": lat[int(len(lat) * 0.99)] / 1000,
        "p50_us": lat[len(lat) // 2] / 1000,
        # the appender's own measure (None: no appender, or nothing committed)
        "window_p50_ms": (appender.durable_wait(0.5) or 0) * 1000 if appender else None,
        "window_p99_ms": (appender.durable_wait(0.99) or 0) * 1000 if appender else None,
    }
    handler.close()
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def run_row(variant: str, procs: int, seconds: float, tributary_bin: str) -> Dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="trib-logbench-", dir=os.environ.get("TRIB_BENCH_DIR")))
    (work / "spool").mkdir()
    daemon: Optional[subprocess.Popen] = None
    try:
        if variant.startswith("tributary"):
            target = work / "out.log"
            subprocess.run([tributary_bin, "init", "--target", str(target)], check=True, capture_output=True)
            daemon = subprocess.Popen(
                [tributary_bin, "compact", "--target", str(target), "--spool", str(work / "spool"), "--interval", "50"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        kids = [
            subprocess.Popen(
                [sys.executable, __file__, "--child", variant, str(work), str(seconds)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(procs)
        ]
        for k in kids:
            assert k.stdout is not None and k.stdout.readline().strip() == "ready", f"{variant}: a child failed"
        for k in kids:
            assert k.stdin is not None
            k.stdin.write("go\n")
            k.stdin.flush()
        results = []
        for k in kids:
            assert k.stdout is not None
            line = k.stdout.readline()
            if k.wait() != 0 or not line:
                raise SystemExit(f"{variant}: a child failed (exit {k.returncode})")
            results.append(json.loads(line))
        p50s = [r["window_p50_ms"] for r in results if r["window_p50_ms"] is not None]
        p99s = [r["window_p99_ms"] for r in results if r["window_p99_ms"] is not None]
        return {
            "rate": sum(r["records"] for r in results) / max(r["elapsed"] for r in results),
            "p99_us": statistics.median(r["p99_us"] for r in results),
            "p50_us": statistics.median(r["p50_us"] for r in results),
            # per process, then the median p50 and the worst p99 (a target must hold in each)
            "window_p50_ms": statistics.median(p50s) if p50s else float("nan"),
            "window_p99_ms": max(p99s) if p99s else float("nan"),
        }
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), float(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--procs", default="1,4,8")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tributary", default="target/release/tributary")
    ap.add_argument("--out", default="target/bench/LOGGING.md")
    ap.add_argument("--only", default="", help="comma-separated variant name prefixes")
    a = ap.parse_args()
    procs = [int(p) for p in a.procs.split(",")]
    variants = [v for v in VARIANTS if not a.only or any(v[0].startswith(p) for p in a.only.split(","))]
    try:
        import concurrent_log_handler  # noqa: F401
    except ImportError:
        print("concurrent-log-handler is not installed: its row is skipped (pip install concurrent-log-handler)")
        variants = [v for v in variants if v[0] != "concurrent-log-handler"]
    load_start = os.getloadavg()[0]
    rows: Dict[tuple, List[Dict[str, float]]] = {}
    for rep in range(a.reps):
        order = variants if rep % 2 == 0 else list(reversed(variants))  # A B, B A, ...
        for n in procs:
            for name, _, _ in order:
                r = run_row(name, n, a.seconds, a.tributary)
                rows.setdefault((name, n), []).append(r)
                print(f"rep {rep + 1}/{a.reps}  {n} proc  {name:30s} {r['rate']:>10,.0f} rec/s  p99 emit {r['p99_us']:>8.0f} us", flush=True)
    load_end = os.getloadavg()[0]

    def med(name: str, n: int, key: str) -> float:
        return statistics.median(r[key] for r in rows[(name, n)])

    lines = [
        "# Python logging: records per second, side by side",
        "",
        f"Generated by `scripts/bench-logging` ({a.reps} repetitions x {a.seconds:g} s per row, rows alternating; "
        f"medians). {os.cpu_count()} CPUs; load average {load_start:.1f} at start, {load_end:.1f} at end. "
        "100-byte records through `logging`; a `tributary compact --interval 50` daemon drains while tributary rows run.",
        "",
        "Cells: records/s, emit latency p50 / p99, and for tributary rows the p99 time from `emit` to the record "
        "being durable (durable-on-return rows: the emit itself; the background row: its appender's own measure, `durable_wait`).",
        "",
        "| variant | durable | " + " | ".join(f"{n} proc" for n in procs) + " |",
        "|---|---|" + "---|" * len(procs),
    ]

    def to_durable_ms(name: str, n: int) -> float:
        if name == "tributary background":
            return med(name, n, "window_p99_ms")
        return med(name, n, "p99_us") / 1000

    for name, durable, _ in variants:
        cells = []
        for n in procs:
            cell = f"{med(name, n, 'rate'):,.0f}/s, emit {med(name, n, 'p50_us') / 1000:.2f} / {med(name, n, 'p99_us') / 1000:.2f} ms"
            if name.startswith("tributary"):
                cell += f", to durable p99 {to_durable_ms(name, n):.1f} ms"
            cells.append(cell)
        lines.append(f"| {name} | {'yes' if durable else 'no'} | " + " | ".join(cells) + " |")
    lines += ["", "Ratios (median rates) of the background row:", ""]
    base = "tributary background"
    if any(v[0] == base for v in variants):
        for other, _, _ in variants:
            if other == base:
                continue
            ratios = ", ".join(f"{n} proc {med(base, n, 'rate') / med(other, n, 'rate'):.2f}x" for n in procs)
            lines.append(f"- vs {other}: {ratios}")
        lines += [
            "",
            "Durability window of the background row (push -> durable, as its appender measured it; p99: the worst process): "
            + ", ".join(f"{n} proc p50 {med(base, n, 'window_p50_ms'):.1f} ms / p99 {med(base, n, 'window_p99_ms'):.1f} ms" for n in procs),
        ]
    names = {v[0] for v in variants}
    lines += ["", "## Targets (issue 18)", ""]

    def target(desc: str, ok: bool, detail: str) -> None:
        lines.append(f"- {'PASS' if ok else 'FAIL'}: {desc} — {detail}")

    if {"tributary background", "concurrent-log-handler"} <= names:
        for n in procs:
            ratio = med("tributary background", n, "rate") / med("concurrent-log-handler", n, "rate")
            window = to_durable_ms("tributary background", n)
            target(
                f"background mode >= 1.0x concurrent-log-handler with p99 emit->durable <= 20 ms, {n} proc",
                ratio >= 1.0 and window <= 20,
                f"{ratio:.2f}x, p99 {window:.1f} ms",
            )
    if {"tributary full", "seed: flock + write + fsync"} <= names:
        for n in procs:
            ratio = med("tributary full", n, "rate") / med("seed: flock + write + fsync", n, "rate")
            target(f"durable-on-return >= 3x the seed design + fsync, {n} proc", ratio >= 3.0, f"{ratio:.2f}x")
    lines += ["", "Variants:", ""] + [f"- **{n}**: {d}" for n, _, d in variants]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
