#!/usr/bin/env python3
"""Plot durable-append throughput vs writer count from the benchmark suite's CSV.

Usage: scripts/plot-bench.py target/bench/writers.csv docs/bench-writers.png

The CSV is written by `cargo bench --bench suite` (cli/benches/suite/) with the columns
writers, tributary_lines_per_s, tributary_p99_ms, seed_lines_per_s, seed_p99_ms.
Needs matplotlib (the bench installs it with pip when it is missing).
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src, dst = argv[1], argv[2]
    with open(src, newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["writers"]))
    if not rows:
        print(f"plot-bench: {src} has no rows", file=sys.stderr)
        return 1
    writers = [int(r["writers"]) for r in rows]
    col = lambda name: [float(r[name]) for r in rows]  # noqa: E731
    trib, seed = col("tributary_lines_per_s"), col("seed_lines_per_s")
    trib_p99, seed_p99 = col("tributary_p99_ms"), col("seed_p99_ms")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=110)
    fig.suptitle("Durable single-line appends (100-byte lines, fsync before acknowledging)", fontsize=12)

    trib_label = "tributary: threads sharing one Journal handle"
    seed_label = "seed design: processes, flock + write + fdatasync per line"
    ax1.plot(writers, trib, "o-", color="tab:blue", lw=2, label=trib_label)
    ax1.plot(writers, seed, "s--", color="tab:orange", lw=2, label=seed_label)
    def label(v):
        return f"{v / 1e3:.1f}k" if v >= 1000 else f"{v:.0f}"

    for x, t, s in zip(writers, trib, seed):
        # the higher point gets its label above, the lower one below
        up, down = (7, -14) if t >= s else (-14, 7)
        ax1.annotate(label(t), (x, t), textcoords="offset points", xytext=(0, up), ha="center",
                     fontsize=8, color="tab:blue")
        ax1.annotate(label(s), (x, s), textcoords="offset points", xytext=(0, down), ha="center",
                     fontsize=8, color="tab:orange")
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xticks(writers)
    ax1.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(v)}"))
    ax1.set_ylim(bottom=min(trib + seed) / 2.5, top=max(trib + seed) * 4)
    ax1.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e3:g}k"))
    ax1.set_xlabel("writers")
    ax1.set_ylabel("lines/s, median (log)")
    ax1.set_title("Throughput")
    ax1.grid(True, alpha=0.3)
    ax1.legend(loc="upper left", fontsize=8)

    ax2.plot(writers, trib_p99, "o-", color="tab:blue", lw=2, label="tributary")
    ax2.plot(writers, seed_p99, "s--", color="tab:orange", lw=2, label="seed design")
    ax2.axhline(5.0, color="gray", lw=1, ls=":")
    ax2.annotate("target: 5 ms at 16 writers", (writers[-1], 5.0), textcoords="offset points", xytext=(0, 4),
                 ha="right", fontsize=8, color="gray")
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_ylim(bottom=min(trib_p99 + seed_p99 + [5.0]) / 1.6, top=max(trib_p99 + seed_p99 + [5.0]) * 1.6)
    ax2.set_xticks(writers)
    ax2.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(v)}"))
    ax2.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax2.set_xlabel("writers")
    ax2.set_ylabel("p99 wait per append, ms (log)")
    ax2.set_title("Tail latency")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(loc="upper left", fontsize=8)

    fig.tight_layout()
    fig.savefig(dst)
    print(f"plot-bench: wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
