"""One host's concurrent-log-handler writer for tributary-bench-multihost (written into
the run's folder and run with the benchmark's venv): THREADS threads log lines through
one ConcurrentRotatingFileHandler (its defaults: no rotation, no fsync, a lock file
beside the log taken per record) to FILE on this host's mount. Same line format and
ack file as the Rust writers (writers.rs): `h<host> t<thread> i<index> ` padded with
dots to 100 bytes; per thread `T <thread> <count>`, then `<send_ns> <ack_ns>` lines.

usage: clh_writer.py FILE HOST THREADS START_AT_NS SECONDS RATE ACKS
"""

import logging
import sys
import threading
import time

from concurrent_log_handler import ConcurrentRotatingFileHandler

LINE_LEN = 100


def main():
    path, host, threads, start_ns, seconds, rate, acks = sys.argv[1:8]
    host, threads, start_ns = int(host), int(threads), int(start_ns)
    seconds, rate = float(seconds), float(rate)
    end_ns = start_ns + int(seconds * 1e9)
    handler = ConcurrentRotatingFileHandler(path, "a")
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("bench")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    times = [[] for _ in range(threads)]
    errors = []

    def writer(t):
        delay = (start_ns - time.time_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)
        i = 0
        mine = times[t]
        while True:
            if rate > 0:
                due = start_ns + int((i * threads + t) / rate * 1e9)
                if due >= end_ns:
                    break
                delay = (due - time.time_ns()) / 1e9
                if delay > 0:
                    time.sleep(delay)
            sent = time.time_ns()
            if sent >= end_ns:
                break
            line = f"h{host} t{t} i{i} "
            line += "." * (LINE_LEN - len(line))
            try:
                log.info(line)
            except Exception as e:  # noqa: BLE001 -- reported, the run goes on
                errors.append(f"thread {t}, line {i}: {e}")
                break
            mine.append((sent, time.time_ns()))
            i += 1

    print("ready", flush=True)
    ts = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    handler.close()
    with open(acks, "w") as f:
        for t, mine in enumerate(times):
            f.write(f"T {t} {len(mine)}\n")
            f.writelines(f"{s} {a}\n" for s, a in mine)
    if errors:
        print(errors[0], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
