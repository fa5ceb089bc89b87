"""Fan-in -> process -> fan-out with no broker: the Python twin of
``cargo run --release --example pipeline`` and ``go run ./examples/pipeline``.

    python3 bindings/python/examples/pipeline.py

- 3 producer processes ("hosts", each with its own spool) append events to journals;
- one compactor process per host drains its spool into target A (fan-in), rotating
  it every 32 KiB (a.log.1, a.log.2, ...);
- a processor process follows A, transforms each event and appends each batch of
  results TOGETHER WITH its cursor in A, in one journal transaction
  (``Journal.append_many_with_cursor``); it is SIGKILLed once mid-stream and
  restarted from the cursor its journal holds (``Journal.cursor``): results and
  cursor always agree, so nothing is processed twice or skipped (exactly-once);
- a compactor drains the processor's journal into target B;
- 3 consumer processes follow B from the start; each checks it got every result once.
"""

import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time

import tributary

HOSTS = 3
EVENTS_PER_HOST = 1500
CONSUMERS = 3
TOTAL = HOSTS * EVENTS_PER_HOST
ROTATE_A_BYTES = 32 << 10


def producer(work: str, host: int) -> None:
    with tributary.Journal(os.path.join(work, f"spool-host{host}", "events.journal")) as j:
        for i in range(EVENTS_PER_HOST):
            j.append_keyed(f"h{host}-{i}", f"host{host} event {i} amount={i % 97}")
            if i % 100 == 99:
                time.sleep(0.01)  # a steady stream, not one burst


def compactor(target: str, spool: str, stop, rotate_bytes=None) -> None:
    while not stop.is_set():
        try:
            report = tributary.drain(target, spool=spool, lock_timeout=5.0, rotate_bytes=rotate_bytes)
        except tributary.LockTimeoutError:
            continue  # another host's compactor holds the target: take turns
        if report.lines == 0:
            time.sleep(0.05)
    tributary.drain(target, spool=spool, lock_timeout=30.0, rotate_bytes=rotate_bytes)  # the rest, once stopped


#: The name of the processor's cursor in A, kept in its own journal with its results.
CURSOR = "A"


def results_journal(work: str) -> str:
    return os.path.join(work, "spool-processor", "results.journal")


def lines_before(target: str, cursor) -> int:
    """How many lines of ``target`` (all generations kept) precede ``cursor`` (None: all)."""
    n = 0
    with tributary.Reader(target, cursor=tributary.Cursor(0, 0)) as r:
        while (cursor is None or r.cursor[:2] < cursor[:2]) and r.read_line(0) is not None:
            n += 1
    return n


def processor(work: str, committed_once) -> None:
    a = os.path.join(work, "shared", "a.log")
    out = tributary.Journal(results_journal(work))
    # Where the last batch of results committed left off (None: the oldest generation kept)
    start = out.cursor(CURSOR) or tributary.Cursor(0, 0)
    while True:  # target A may not have been drained yet
        try:
            reader = tributary.Reader(a, cursor=start)
            break
        except tributary.TributaryError:
            time.sleep(0.02)
    done = lines_before(a, reader.cursor)  # events processed before a restart
    while done < TOTAL:
        batch = []
        while len(batch) < 100:
            line = reader.read_line(timeout=0.05)
            if line is None:
                break
            event = line.decode()
            amount = int(event.rsplit("=", 1)[1])
            batch.append(f"processed [{event}] doubled={amount * 2}")
        # The results and the cursor after them, in one transaction: a crash keeps both
        # or neither, so a restart resumes exactly after the last results stored.
        out.append_many_with_cursor(batch, CURSOR, reader.cursor)
        committed_once.set()
        done += len(batch)


def consumer(work: str, cid: int, results) -> None:
    b = os.path.join(work, "shared", "b.log")
    while True:
        try:
            reader = tributary.Reader(b, cursor=tributary.Cursor(0, 0))
            break
        except tributary.TributaryError:
            time.sleep(0.02)
    seen = {}
    deadline = time.monotonic() + 120
    while len(seen) < TOTAL and time.monotonic() < deadline:
        line = reader.read_line(timeout=0.1)
        if line is not None:
            seen[line] = seen.get(line, 0) + 1
    dups = sum(1 for n in seen.values() if n > 1)
    results.put((cid, len(seen), dups))


def main() -> int:
    work = tempfile.mkdtemp(prefix="tributary-pipeline-py-")
    for d in ["shared", "spool-processor"] + [f"spool-host{h}" for h in range(1, HOSTS + 1)]:
        os.makedirs(os.path.join(work, d))
    a = os.path.join(work, "shared", "a.log")
    b = os.path.join(work, "shared", "b.log")
    for target in (a, b):
        tributary.init(target)  # once, at setup: drains never create a target
    print(f"pipeline in {work}: {HOSTS} producers -> A -> processor -> B -> {CONSUMERS} consumers")
    ctx = mp.get_context("fork")
    start = time.monotonic()
    stop = ctx.Event()
    results = ctx.Queue()
    daemons = [ctx.Process(target=compactor, args=(a, os.path.join(work, f"spool-host{h}"), stop, ROTATE_A_BYTES))
               for h in range(1, HOSTS + 1)]
    daemons.append(ctx.Process(target=compactor, args=(b, os.path.join(work, "spool-processor"), stop)))
    producers = [ctx.Process(target=producer, args=(work, h)) for h in range(1, HOSTS + 1)]
    consumers = [ctx.Process(target=consumer, args=(work, c, results)) for c in range(1, CONSUMERS + 1)]
    for p in daemons + producers + consumers:
        p.start()
    committed_once = ctx.Event()
    proc = ctx.Process(target=processor, args=(work, committed_once))
    proc.start()
    # SIGKILL the processor once it has committed results and cursor at least once
    # (mid-stream).
    while proc.is_alive() and not committed_once.wait(0.005):
        pass
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        print(f"processor SIGKILLed after {time.monotonic() - start:.1f}s; restarting it from its durable cursor")
        proc = ctx.Process(target=processor, args=(work, committed_once))
        proc.start()
    for p in producers:
        p.join()
    print(f"producers done: {TOTAL} events appended")
    proc.join()
    ok = proc.exitcode == 0
    got = sorted(results.get(timeout=180) for _ in consumers)
    for p in consumers:
        p.join()
    for cid, distinct, dups in got:
        print(f"consumer {cid}: received {distinct} distinct results, {dups} duplicated")
        ok &= distinct == TOTAL and dups == 0
    stop.set()
    for p in daemons:
        p.join()
    va, vb = tributary.verify(a), tributary.verify(b)
    lines_a, lines_b = lines_before(a, None), lines_before(b, None)
    print(f"A: {lines_a} lines in {va.rotated_generations + 1} generations, B: {lines_b} lines, verify A "
          f"{va.consistent} / B {vb.consistent}; {time.monotonic() - start:.1f}s")
    ok &= lines_a == TOTAL and lines_b == TOTAL and va.consistent and vb.consistent
    if not ok:
        print("pipeline check FAILED", file=sys.stderr)
        return 1
    print("pipeline: PASSED: every event processed once, every consumer got every result once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
