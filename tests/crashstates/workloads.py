"""The recorded workloads: small bash scripts driving the real `tributary` CLI (and the
torture harness's keyed `writer`), each with what its recovery needs.

Environment of a script: R (the traced folder, also the cwd at start), M (the marker
folder, outside R), BIN (folder of `tributary`), TORTURE (the `tributary-torture`
binary). Markers: `sub <durability> <lines...>` before an append starts, `ack ...`
once it returned 0 (each one write(2) to $M/ack, so its trace position is the
acknowledgement point). The keyed writer acks `<index> <seq>` lines in $M/ackw<id>.
"""

import copy

PRELUDE = r"""
set -euo pipefail
cd "$R"
trib() { "$BIN/tributary" "$@"; }
mark() { printf '%s\n' "$*" >> "$M/ack"; }
app() { local d=$1 j=$2; shift 2; mark sub "$d" "$@"; printf '%s\n' "$@" | trib append --journal "$j" --durability "$d"; mark ack "$d" "$@"; }
drain() { trib drain "$@" > /dev/null; }
init() { trib init "$@" > /dev/null; }
killed() {
  local fp=$1 rc=0; shift
  TRIBUTARY_FAILPOINTS="$fp=kill" "$BIN/tributary" drain "$@" > /dev/null 2>&1 || rc=$?
  [ "$rc" = 137 ] || { echo "expected the drain to be killed at $fp, got exit $rc" >&2; exit 1; }
}
"""


class Workload:
    def __init__(self, name, script, target, journals, post, cwd="", rel_target=False, spool=None,
                 extra=None, append_first=False, keyed=None, about="", dirs=(), base_tar=None, base_lines=None):
        self.name = name
        self.dirs = dirs  # folders made before recording (durable: not the code under test)
        # a tarball (relative to the repository) unpacked into R before recording, its
        # files and folders durable; base_lines: lines it holds, each exactly once after
        # recovery (target or journal rows)
        self.base_tar = base_tar
        self.base_lines = base_lines or []
        self.script = script
        self.target = target  # relative to R (or to cwd when rel_target)
        self.journals = journals  # relative to R
        self.post = post  # journal -> post-crash `full` lines
        self.cwd = cwd  # relative to R: where recovery commands run
        self.rel_target = rel_target
        self.spool = spool  # recovery drains with --spool R/<spool>
        self.extra = extra or {}  # line -> how many times it may appear (not tributary's)
        self.append_first = append_first  # recovery appends before its first drain
        self.keyed = keyed  # dict(writer, journal, ack, run, total)
        self.about = about


DRAIN_OUT = '--target "$R/out/out.log" --journal "$R/out/j.journal"'

# A `normal` writer kept open (its lines only in the -wal's page cache until a
# checkpoint): started, fed a1..a4 END, acknowledged; closed at the end.
OPEN_NORMAL_WRITER = r"""mark sub normal a1 a2 a3 a4 END
coproc W { exec "$BIN/tributary" append --journal "$R/out/j.journal" --durability normal --print-seqs; }
printf 'a1\na2\na3\na4\nEND\n' >&"${W[1]}"
for i in 1 2 3 4 5; do read -r seq <&"${W[0]}"; done
mark ack normal a1 a2 a3 a4 END
"""
CLOSE_NORMAL_WRITER = r"""pid=$W_PID
eval "exec ${W[1]}>&-"
wait "$pid"
"""

WORKLOADS = [
    Workload(
        "first-abs",
        """
app full "$R/spool/j1.journal" a1 a2 a3
init --target "$R/out/out.log"
drain --target "$R/out/out.log" --journal "$R/spool/j1.journal"
""",
        "out/out.log", ["spool/j1.journal"], {"spool/j1.journal": ["p1", "p2"]}, dirs=("out", "spool"),
        about="init and first round, absolute target, journal in another folder",
    ),
    Workload(
        "first-rel",
        """
cd d
app full j.journal a1 a2
init --target out.log
drain --target out.log --journal j.journal
""",
        "out.log", ["d/j.journal"], {"d/j.journal": ["p1", "p2"]}, cwd="d", rel_target=True, dirs=("d",),
        about="init and first round, bare relative target (cd dir && init --target out.log), journal beside it",
    ),
    Workload(
        "steady",
        f"""
app full out/j.journal a1 a2
init --target "$R/out/out.log"
drain {DRAIN_OUT}
app full out/j.journal a3 a4
drain {DRAIN_OUT}
""",
        "out/out.log", ["out/j.journal"], {"out/j.journal": ["p1", "p2"]}, dirs=("out",),
        about="a second round after a first, journal in the target's folder",
    ),
    Workload(
        "tail-repair",
        f"""
app full out/j.journal a1 a2
init --target "$R/out/out.log"
drain {DRAIN_OUT}
app full out/j.journal a3 a4
killed drain.after_write {DRAIN_OUT}
drain {DRAIN_OUT}
""",
        "out/out.log", ["out/j.journal"], {"out/j.journal": ["p1", "p2"]}, dirs=("out",),
        about="a drain killed after writing (uncommitted tail), then the repairing drain",
    ),
    Workload(
        "rotation",
        """
R3='--rotate-lines 3 --retain 1'
app full out/j.journal a1 a2 a3
init --target "$R/out/out.log"
drain $R3 --target "$R/out/out.log" --journal "$R/out/j.journal"
app full out/j.journal a4 a5 a6
drain $R3 --target "$R/out/out.log" --journal "$R/out/j.journal"
app full out/j.journal a7 a8 a9
drain $R3 --target "$R/out/out.log" --journal "$R/out/j.journal"
app full out/j.journal a10
drain $R3 --target "$R/out/out.log" --journal "$R/out/j.journal"
""",
        "out/out.log", ["out/j.journal"], {"out/j.journal": ["p1", "p2"]}, dirs=("out",),
        about="managed rotation (--rotate-lines 3 --retain 1) over four rounds",
    ),
    Workload(
        "adopt-empty",
        f"""
printf '' | trib append --journal out/j.journal
printf 'header\\n' > out/out.log
init --target "$R/out/out.log"
drain {DRAIN_OUT}
""",
        "out/out.log", ["out/j.journal"], {"out/j.journal": ["p1", "p2"]}, dirs=("out",), extra={"header": 1},
        about="adopting a pre-existing target (plain unsynced shell write) with an empty journal",
    ),
    Workload(
        "adopt-nonempty",
        f"""
app full out/j.journal a1 a2
printf 'header\\n' > out/out.log
init --target "$R/out/out.log"
drain {DRAIN_OUT}
""",
        "out/out.log", ["out/j.journal"], {"out/j.journal": ["p1", "p2"]}, dirs=("out",), extra={"header": 1},
        about="adopting a pre-existing target with a non-empty journal",
    ),
    Workload(
        "kill-after-rename",
        f"""
app full out/j.journal a1 a2
init --target "$R/out/out.log"
killed drain.after_rename {DRAIN_OUT}
drain {DRAIN_OUT}
""",
        "out/out.log", ["out/j.journal"], {"out/j.journal": ["p1", "p2"]}, dirs=("out",),
        about="a drain killed between steps 5 and 7 (its final slot written, not yet fdatasynced), then a catch-up drain",
    ),
    Workload(
        "kill-after-intent",
        f"""
app full out/j.journal a1 a2
init --target "$R/out/out.log"
killed drain.intent_unsynced {DRAIN_OUT}
drain {DRAIN_OUT}
""",
        "out/out.log", ["out/j.journal"], {"out/j.journal": ["p1", "p2"]}, dirs=("out",),
        about="a drain killed after writing its intent slot, before that slot's fdatasync, then the next drain",
    ),
    Workload(
        "kill-after-unlock",
        f"""
app full out/j.journal a1 a2
init --target "$R/out/out.log"
drain {DRAIN_OUT}
app full out/j.journal a3
killed drain.after_unlock {DRAIN_OUT}
drain {DRAIN_OUT}
""",
        "out/out.log", ["out/j.journal"], {"out/j.journal": ["p1", "p2"]}, dirs=("out",),
        about="a drain killed after unlocking (before recording in the journal), then a catch-up drain",
    ),
    Workload(
        "normal-open",
        f"""
app full out/j.journal s1
init --target "$R/out/out.log"
drain {DRAIN_OUT}
{OPEN_NORMAL_WRITER}drain {DRAIN_OUT}
app full out/j.journal x1 x2
drain {DRAIN_OUT}
{CLOSE_NORMAL_WRITER}""",
        "out/out.log", ["out/j.journal"], {"out/j.journal": ["b1", "b2", "b3", "b4", "END"]}, dirs=("out",),
        append_first=True,
        about="a `normal` writer kept open while a drain runs, then `full` appends and a drain; "
        "after the crash the writer appends b1..b4, END (same CRC at the watermark seq) before any drain",
    ),
    Workload(
        "normal-creates",
        f"""
mark sub normal n1
coproc W {{ exec "$BIN/tributary" append --journal "$R/out/j.journal" --durability normal --print-seqs; }}
printf 'n1\\n' >&"${{W[1]}}"
read -r seq <&"${{W[0]}}"
mark ack normal n1
app full out/j.journal f1 f2
{CLOSE_NORMAL_WRITER}init --target "$R/out/out.log"
drain {DRAIN_OUT}
""",
        "out/out.log", ["out/j.journal"], {"out/j.journal": ["p1"]}, dirs=("out",),
        about="a `normal` writer creates the journal (and its -wal) and stays open while a `full` writer appends",
    ),
    Workload(
        "keyed",
        """
"$TORTURE" writer --journal "$R/j/w1.journal" --ack "$M/ackw1" --writer 1 --lines 4 --run 7 --max-batch 2
init --target "$R/out.log"
drain --target "$R/out.log" --journal "$R/j/w1.journal"
"$TORTURE" writer --journal "$R/j/w1.journal" --ack "$M/ackw1" --writer 1 --lines 8 --run 7 --max-batch 3
drain --target "$R/out.log" --journal "$R/j/w1.journal"
""",
        "out.log", ["j/w1.journal"], {}, dirs=("j",), keyed={"writer": 1, "journal": "j/w1.journal", "ack": "ackw1", "run": 7,
                                                "total": 10},
        about="keyed appends (idempotency keys); after the crash the writer re-sends every unacknowledged key",
    ),
    Workload(
        "journal-create",
        """
app full spool/new.journal a1
init --target "$R/out.log"
drain --target "$R/out.log" --spool "$R/spool"
""",
        "out.log", ["spool/new.journal"], {"spool/new.journal": ["p1"]}, spool="spool", dirs=("spool",),
        about="a journal created in a fresh spool folder, drained with --spool",
    ),
    Workload(
        "upgrade",
        """
app full v1/spool/a.journal a8
drain --target "$R/v1/shared/out.log" --spool "$R/v1/spool"
""",
        "v1/shared/out.log", ["v1/spool/a.journal", "v1/spool/b.journal"], {"v1/spool/a.journal": ["p1"]},
        spool="v1/spool", base_tar="tests/fixtures/v1-target.tar.gz",
        base_lines=["a1", "a2", "a3", "a4", "a5", "a6", "a7", "b1", "b2", "b3", "b4"],
        about="the first drain of a version-1 target (made by the real version-1 binary, with a rotated "
        "generation, undrained lines and a version-1 drain's uncommitted tail): the upgrade to manifest format 2",
    ),
    Workload(
        "retire",
        f"""
app full out/j.journal a1 a2
init --target "$R/out/out.log"
drain {DRAIN_OUT}
app full out/j.journal a3
trib retire --target "$R/out/out.log" --journal "$R/out/j.journal" > /dev/null
app full out/j.journal a4
""",
        "out/out.log", ["out/j.journal"], {"out/j.journal": ["p1", "p2"]}, dirs=("out",),
        append_first=True,
        about="a journal retired (drained, then deleted: tombstone, -wal, -shm, tombstone), its name reused at once",
    ),
]


def with_manifest_deltas(w):
    """`w` with every commit its compactors make after the first a manifest delta
    (format version 3, a test seam: docs/design.md "Manifest deltas"); recovery runs
    without the seam, as a user's compactor does: it follows the format of the target
    the crash left (3 once a delta or a version-3 base was written)."""
    d = copy.copy(w)
    d.name = w.name + "-deltas"
    d.script = "\nexport TRIBUTARY_MANIFEST_DELTAS=always" + w.script
    d.about = w.about + "; committed as manifest deltas"
    return d


def with_manifest_format_2(w):
    """`w` with every commit a version-2 snapshot (the seam's `off`: a target made for
    hosts on builds older than format 3; a new target is format 3 otherwise); recovery
    runs without the seam and follows the format the crash left (2)."""
    d = copy.copy(w)
    d.name = w.name + "-format2"
    d.script = "\nexport TRIBUTARY_MANIFEST_DELTAS=off" + w.script
    d.about = w.about + "; committed in manifest format 2"
    return d


WORKLOADS += [with_manifest_deltas(w) for w in WORKLOADS if w.name in ("steady", "tail-repair")]
WORKLOADS += [with_manifest_format_2(w) for w in WORKLOADS if w.name in ("steady", "tail-repair")]

WORKLOADS.append(
    Workload(
        "staged",
        f"""
export TRIBUTARY_STAGING=on
app full out/j.journal s1
init --target "$R/out/out.log"
drain {DRAIN_OUT}
{OPEN_NORMAL_WRITER}killed drain.locked {DRAIN_OUT}
drain --target "$R/out/out.log" --spool "$R/other"
app full out/j.journal x1 x2
drain {DRAIN_OUT}
{CLOSE_NORMAL_WRITER}""",
        "out/out.log", ["out/j.journal"], {"out/j.journal": ["b1", "b2", "b3", "b4", "END"]}, dirs=("out", "other"),
        append_first=True,
        about="staging (docs/design.md \"Staging\"): a `normal` writer kept open while a drain stages its lines "
        "(O3 at the stager: they are only in the -wal's page cache) and is killed before its round; a host with no "
        "journals commits them from the stage file; `full` appends and the journal's own drain follow; after the "
        "crash the writer appends b1..b4, END before any drain (recovery without staging)",
    )
)


def by_name():
    return {w.name: w for w in WORKLOADS}


# --- the keyed writer's exact line bytes (harness/src/line.rs, Payload::AnyBytes; its
# test the_harness_lines_are_the_ones_the_crash_state_checker_recomputes pins a few) ---
M64 = (1 << 64) - 1


def splitmix(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def mix(a, b):
    return splitmix(a ^ splitmix(b))


class Rng:
    def __init__(self, seed):
        self.s = splitmix(seed) | 1

    def next(self):
        s = self.s
        s ^= s >> 12
        s ^= (s << 25) & M64
        s ^= s >> 27
        self.s = s
        return (s * 0x2545F4914F6CDD1D) & M64

    def below(self, n):
        return 0 if n == 0 else self.next() % n

    def chance(self, num, den):
        return self.below(den) < num


def expected_line(run, w, i):
    rng = Rng(mix(run, (w << 40) ^ i))
    v = bytearray(f"w{w} {i:08} ".encode())
    r = rng.below(24)
    n = 1000 + rng.below(4000) if r == 0 else (0 if r == 1 else rng.below(100))
    binary = rng.chance(1, 4)
    for _ in range(n):
        b = (rng.next() & 0xFF) if binary else ord("a") + rng.below(26)
        v.append(ord("~") if b == 10 else b)
    return bytes(v)
