"""Many threads, many processes, a concurrent drainer, and SIGKILL mid-append.

The exactly-once checks read the target back and require every acknowledged record
exactly once, each writer's records in order, and `verify` consistent.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Dict, List

import tributary
from conftest import HANG_GUARD, target_lines, wait_for

PROCS = 8
RECORDS = 5000


# ---- threads sharing one Journal ---------------------------------------------------------------


def test_threads_share_one_journal(tmp_path: Path, target: Path):
    threads, per_thread = 8, 400
    j = tributary.Journal(tmp_path / "shared.journal")  # durability full: group commit
    seqs: Dict[int, List[int]] = {}
    errors: List[BaseException] = []

    def worker(t: int) -> None:
        try:
            mine = []
            for i in range(per_thread):
                if i % 10 == 9:
                    first = j.append_many([f"t{t} r{i} a", f"t{t} r{i} b"])
                    mine += [first, first + 1]
                else:
                    mine.append(j.append(f"t{t} r{i}"))
            seqs[t] = mine
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    elapsed = time.monotonic() - started
    assert not errors, errors
    total = threads * (per_thread + per_thread // 10)
    everything = sorted(s for v in seqs.values() for s in v)
    assert everything == list(range(1, total + 1))  # unique and dense
    for v in seqs.values():
        assert v == sorted(v)  # each thread's lines in its order
    j.close()
    tributary.drain(target, journals=[tmp_path / "shared.journal"])
    lines = [x.decode() for x in target_lines(target)]
    assert len(lines) == total == len(set(lines))
    last = collections.defaultdict(lambda: -1)
    for line in lines:
        m = re.fullmatch(r"t(\d+) r(\d+)( [ab])?", line)
        assert m, line
        t, i = int(m.group(1)), int(m.group(2))
        assert i >= last[t]
        last[t] = i
    print(f"{total} appends from {threads} threads in {elapsed:.2f} s")


def test_close_waits_for_appends_in_flight(tmp_path: Path):
    j = tributary.Journal(tmp_path / "a.journal")
    ok = [0] * 4
    closed = [False] * 4

    def writer(t: int) -> None:
        while True:  # until the journal is closed under it
            try:
                j.append("x")
                ok[t] += 1
            except tributary.InvalidArgumentError:
                closed[t] = True
                return

    pool = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(4)]
    for th in pool:
        th.start()
    # Close once every writer has appended (each goes on appending until the close).
    wait_for(lambda: all(ok) or not all(th.is_alive() for th in pool), what="every writer to append")
    j.close()  # must not free the handle under a running append
    for th in pool:
        th.join(timeout=HANG_GUARD)
    assert all(ok) and all(closed)
    with tributary.Journal(tmp_path / "a.journal") as again:
        assert again.backlog().lines == sum(ok)


# ---- 8 processes x 5000 records through JournalHandler, with a concurrent drainer ------------------


def _log_writer(spool: str, proc: int, records: int, rounds) -> None:
    import logging

    from tributary.logging import JournalHandler

    handler = JournalHandler(os.path.join(spool, f"writer-{proc}.journal"))
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    log = logging.getLogger(f"writer-{proc}")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    for i in range(records):
        if i == records // 2:
            # Halfway, wait until the drainer has committed a round: draining overlaps
            # writing however the processes are scheduled.
            deadline = time.monotonic() + HANG_GUARD
            while rounds.value == 0:
                assert time.monotonic() < deadline, "the drainer never committed a round"
                time.sleep(0.01)
        if i % 1000 == 999:
            log.info("proc=%d rec=%d multi\nline", proc, i)  # escaped to one line
        else:
            log.info("proc=%d rec=%d", proc, i)
    assert handler.failed_records == 0
    handler.close()


def _drainer(target: str, spool: str, ready, stop, rounds) -> None:
    while not stop.is_set():
        rounds.value += tributary.drain(target, spool=spool, lock_timeout=30).rounds
        ready.set()
        time.sleep(0.01)


def test_processes_log_through_journal_handlers_exactly_once(spool: Path, target: Path):
    ctx = multiprocessing.get_context("spawn")
    ready, stop, rounds = ctx.Event(), ctx.Event(), ctx.Value("q", 0)
    drainer = ctx.Process(target=_drainer, args=(str(target), str(spool), ready, stop, rounds))
    drainer.start()
    assert ready.wait(timeout=HANG_GUARD), "the drainer did not start"
    started = time.monotonic()
    writers = [ctx.Process(target=_log_writer, args=(str(spool), p, RECORDS, rounds)) for p in range(PROCS)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=2 * HANG_GUARD)
        assert w.exitcode == 0, f"writer exit code {w.exitcode}"
    elapsed = time.monotonic() - started
    stop.set()
    drainer.join(timeout=HANG_GUARD)
    assert drainer.exitcode == 0
    # (the writers waited halfway for it)
    assert rounds.value > 0, "the drainer committed nothing while the writers ran"
    tributary.drain(target, spool=spool)  # whatever the drainer had not taken yet

    seen: Dict[int, List[int]] = collections.defaultdict(list)
    pattern = re.compile(rb"writer-(\d+) INFO proc=(\d+) rec=(\d+)( multi\\nline)?")
    lines = target_lines(target)
    for line in lines:
        m = pattern.fullmatch(line)
        assert m, line
        proc, rec = int(m.group(2)), int(m.group(3))
        assert int(m.group(1)) == proc
        assert (m.group(4) is not None) == (rec % 1000 == 999)
        seen[proc].append(rec)
    assert len(lines) == PROCS * RECORDS
    for p in range(PROCS):
        assert seen[p] == list(range(RECORDS)), f"writer {p}: records missing, duplicated or out of order"
    v = tributary.verify(target)
    assert v.consistent and v.committed_lines == PROCS * RECORDS
    st = tributary.status(target, spool=spool)
    assert all(j.backlog.lines == 0 and j.watermark == RECORDS for j in st.journals)
    print(f"{PROCS * RECORDS} records from {PROCS} processes in {elapsed:.1f} s; {rounds.value} drain rounds ran")


# ---- SIGKILL mid-append ---------------------------------------------------------------------------

_KILLED_WRITER = """
import sys, tributary
j = tributary.Journal(sys.argv[1])
run = sys.argv[2]
out = sys.stdout
n = 0
while True:
    if n % 5 == 4:
        first = j.append_many([f"{run} batch {n} {k}" for k in range(10)])
        out.write(f"batch {n} {first}\\n")
    else:
        seq = j.append(f"{run} single {n}")
        out.write(f"single {n} {seq}\\n")
    out.flush()   # the acknowledgement leaves only after append returned
    n += 1
"""


def test_sigkill_mid_append_loses_no_acknowledged_line(tmp_path: Path, target: Path):
    jp = tmp_path / "killed.journal"
    for round_no in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), str(jp), f"run{round_no}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        acked = []
        want = 200 + 150 * round_no
        while len(acked) < want:
            line = child.stdout.readline()
            assert line, "writer died early"
            acked.append(line.split())
        os.kill(child.pid, signal.SIGKILL)  # mid-append: it never stops appending
        rest, _ = child.communicate(timeout=HANG_GUARD)
        acked += [x.split() for x in rest.splitlines() if x.strip()]
        assert child.returncode == -signal.SIGKILL

        # Drain whatever the journal holds (acked lines and maybe one unacked batch)
        # and check every acknowledged line is in the target exactly once.
        tributary.drain(target, journals=[jp])
        text = [x.decode() for x in target_lines(target)]
        counts = collections.Counter(text)
        assert all(c == 1 for c in counts.values()), "a line was duplicated"
        run = f"run{round_no}"
        for ack in acked:
            if ack[0] == "single":
                assert counts[f"{run} single {ack[1]}"] == 1, ack
            else:
                for k in range(10):
                    assert counts[f"{run} batch {ack[1]} {k}"] == 1, ack
        # a batch is all or nothing, even when the kill landed inside it
        batches = collections.Counter(x.rsplit(" ", 1)[0] for x in text if " batch " in x)
        assert all(c == 10 for c in batches.values())
    assert tributary.verify(target).consistent
