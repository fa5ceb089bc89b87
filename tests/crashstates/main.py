"""Record workloads under strace, enumerate crash states, recover and check each one.

Usage: scripts/crash-states [--bin-dir DIR] [--workload NAME ...] [--model posix|ext4|all]
                            [--keep-failures DIR] [--jobs N] [--work-dir DIR] [--min-states N]
                            [--list] [--dump-ops] [--torture BIN]
Exit: 0 all states passed, 1 some failed (or a workload could not be recorded),
77 cannot run here (no strace, or ptrace not permitted) -- never a silent pass.
"""

import argparse
import collections
import concurrent.futures
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

from . import models, trace, workloads

STRACE_STRING = 1 << 20


class RecordError(Exception):
    pass


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- recording
def record(wl, bin_dir, torture, work):
    w = tempfile.mkdtemp(prefix=f"rec-{wl.name}-", dir=work)
    root, marks = os.path.join(w, "fs"), os.path.join(w, "marks")
    os.makedirs(root)
    os.makedirs(marks)
    for d in wl.dirs:
        os.makedirs(os.path.join(root, d))
    base_dirs, base_files = list(wl.dirs), {}
    if wl.base_tar:
        repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
        subprocess.run(["tar", "-C", root, "-xzf", os.path.join(repo, wl.base_tar)], check=True)
        for folder, subdirs, files in os.walk(root):
            rel = os.path.relpath(folder, root)
            for d in sorted(subdirs):
                base_dirs.append(os.path.normpath(os.path.join(rel, d)))
            for f in sorted(files):
                if not f.endswith("-shm"):
                    with open(os.path.join(folder, f), "rb") as fh:
                        base_files[os.path.normpath(os.path.join(rel, f))] = fh.read()
    tr = os.path.join(w, "trace")
    env = dict(os.environ, R=root, M=marks, BIN=bin_dir, TORTURE=torture)
    env.pop("TRIBUTARY_FAILPOINTS", None)
    cmd = ["strace", "-f", "-qq", "-y", "-xx", "-s", str(STRACE_STRING), "-o", tr, "-e",
           "trace=" + trace.SYSCALLS, "bash", "-c", workloads.PRELUDE + wl.script]
    p = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
    if p.returncode != 0:
        raise RecordError(f"workload {wl.name} exited {p.returncode}: {p.stderr.decode(errors='replace')[-2000:]}")
    with open(tr, encoding="latin-1") as f:
        text = f.read()
    ops, _ = trace.parse(text, root, marks, base_dirs, base_files)
    models.annotate(ops)
    if not any(op["op"] == "write" for op in ops) or not any(op["op"] == "fsync" for op in ops):
        raise RecordError(f"workload {wl.name}: the trace shows no writes or no fsyncs under {root} (parser?)")
    shutil.rmtree(w, ignore_errors=True)
    return ops, len(text.splitlines())


# ---------------------------------------------------------------- expectations
class Expect:
    """What a crash at one point requires of the recovered target."""

    def __init__(self):
        self.required = collections.Counter()  # line -> at least this many
        self.upper = collections.Counter()  # line -> at most this many
        self.acks = b""  # keyed writer's ack file content at the crash


def expectations(wl, ops):
    """Expect for each crash point: index k -> Expect (k = -1: before any op)."""
    sub, full, gone = collections.Counter(), collections.Counter(), collections.Counter()
    acks = bytearray()
    gen = re.compile(re.escape(os.path.basename(wl.target)) + r"\.\d+$")
    gen_dir = os.path.dirname(os.path.join(wl.cwd, wl.target))
    out, pending_marks = {}, []
    points = [-1] + [op["idx"] for op in ops if op["op"] != "mark" and not op.get("base")]

    def snapshot():
        e = Expect()
        keyed = wl.keyed
        for line, n in sub.items():
            e.upper[line] += n
        for line, n in full.items():
            e.required[line] += max(0, n - gone[line])
        for line, n in wl.extra.items():
            e.upper[line.encode()] += n
        for line in wl.base_lines:
            e.required[line.encode()] += 1
            e.upper[line.encode()] += 1
        for j, lines in wl.post.items():
            for line in lines:
                e.required[line.encode()] += 1
                e.upper[line.encode()] += 1
        if keyed:
            for i in range(1, keyed["total"] + 1):
                line = workloads.expected_line(keyed["run"], keyed["writer"], i)
                e.required[line] = 1
                e.upper[line] = 1
            e.acks = bytes(acks)
        return e

    # exempt lines: content of rotated generations unlinked (retention) in the trace
    pos = 0
    for k in points:
        # ops up to and including k, plus the marks that follow k (before the next op)
        while pos < len(ops) and (pos <= k or ops[pos]["op"] == "mark"):
            op = ops[pos]
            if op["op"] == "mark":
                if op["file"] == "ack":
                    for ln in op["text"].decode("utf-8", "replace").splitlines():
                        parts = ln.split()
                        if len(parts) >= 2 and parts[0] == "sub":
                            sub.update(x.encode() for x in parts[2:])
                        elif len(parts) >= 2 and parts[0] == "ack" and parts[1] == "full":
                            full.update(x.encode() for x in parts[2:])
                elif wl.keyed and op["file"] == wl.keyed["ack"]:
                    acks.extend(op["text"])
            elif op["op"] == "unlink" and gen.search(op["path"]) and os.path.dirname(op["path"]) == gen_dir:
                content = models.replay(ops, {o["idx"] for o in ops[:pos]}, set()).get(op["path"])
                if content and content[1]:
                    gone.update(content[1].split(b"\n")[:-1])
            pos += 1
            if pos > k and pos < len(ops) and ops[pos]["op"] != "mark":
                break
        out[k] = snapshot()
    return out


# ---------------------------------------------------------------- enumeration
class State:
    def __init__(self, applied, zero):
        self.applied, self.zero = applied, zero
        self.origins = []  # (model, k, label, blamed ops)
        self.models = set()
        self.expect = None

    def merge(self, e):
        if self.expect is None:
            self.expect = Expect()
            self.expect.required = collections.Counter(e.required)
            self.expect.upper = collections.Counter(e.upper)
            self.expect.acks = e.acks
            return
        for line, n in e.required.items():
            self.expect.required[line] = max(self.expect.required[line], n)
        for line in list(self.expect.upper):
            self.expect.upper[line] = min(self.expect.upper[line], e.upper.get(line, 0))
        if len(e.acks) > len(self.expect.acks):
            self.expect.acks = e.acks


def enumerate_states(wl, ops, model_names):
    exp = expectations(wl, ops)
    states, per_model, impossible = {}, collections.Counter(), collections.Counter()
    seen_model = collections.defaultdict(set)
    for model in model_names:
        for k in exp:
            if k >= 0 and (ops[k]["op"] == "mark" or ops[k].get("base")):
                continue
            for applied, zero, label, blamed in models.variants(ops, k, model):
                try:
                    content = models.replay(ops, applied, zero)
                except models.Impossible:
                    impossible[model] += 1
                    continue
                d = models.digest(content)
                st = states.get(d)
                if st is None:
                    st = states[d] = State(applied, zero)
                if d not in seen_model[model]:
                    seen_model[model].add(d)
                    per_model[model] += 1
                if len(st.origins) < 12:
                    st.origins.append((model, k, label, blamed))
                st.models.add(model)
                st.merge(exp[k])
    return states, per_model, impossible


# ---------------------------------------------------------------- recovery + check
def run(cmd, cwd, stdin=b""):
    env = dict(os.environ)
    env.pop("TRIBUTARY_FAILPOINTS", None)
    p = subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, env=env, timeout=300)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace").strip()


def read_target(path):
    """Lines of the target and its rotated generations; (lines, problems)."""
    lines, problems = collections.Counter(), []
    folder, base = os.path.split(path)
    names = [base] + sorted(n for n in os.listdir(folder) if re.fullmatch(re.escape(base) + r"\.\d+", n))
    for n in names:
        p = os.path.join(folder, n)
        if not os.path.isfile(p):
            continue
        with open(p, "rb") as f:
            data = f.read()
        parts = data.split(b"\n")
        if parts[-1] != b"":
            problems.append(f"{n} ends with a torn line {parts[-1][:40]!r}")
        lines.update(parts[:-1])
    return lines, problems


def journal_lines(path, scratch):
    """Lines still held in a journal (read with sqlite3 on a copy of it and its WAL)."""
    out = collections.Counter()
    if not os.path.exists(path):
        return out
    d = tempfile.mkdtemp(dir=scratch)
    try:
        for suffix in ("", "-wal"):
            if os.path.exists(path + suffix):
                shutil.copyfile(path + suffix, os.path.join(d, "j" + suffix))
        con = sqlite3.connect(os.path.join(d, "j"))
        try:
            for (data,) in con.execute("SELECT data FROM runs"):
                out.update(bytes(data).split(b"\n"))
        finally:
            con.close()
    except sqlite3.Error:
        pass
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return out


def check_state(wl, ops, st, bin_dir, torture, work, keep=None):
    """Recover a materialised state and check it; returns (ok, diagnosis)."""
    x = tempfile.mkdtemp(prefix=f"st-{wl.name}-", dir=work)
    try:
        root = os.path.join(x, "fs")
        models.materialise(models.replay(ops, st.applied, st.zero), root)
        os.makedirs(root, exist_ok=True)
        if keep:
            shutil.copytree(root, keep, symlinks=True)
        return _recover(wl, st, root, x, bin_dir, torture)
    finally:
        shutil.rmtree(x, ignore_errors=True)


def _recover(wl, st, root, x, bin_dir, torture):
    trib = os.path.join(bin_dir, "tributary")
    cwd = os.path.join(root, wl.cwd)
    os.makedirs(cwd, exist_ok=True)
    target = wl.target if wl.rel_target else os.path.join(root, wl.target)
    target_abs = os.path.join(cwd, wl.target) if wl.rel_target else target
    e = st.expect

    def drain_cmd(journals):
        if wl.spool:
            return [trib, "drain", "--target", target, "--spool", os.path.join(root, wl.spool)]
        return [trib, "drain", "--target", target] + [a for j in journals for a in ("--journal", os.path.join(root, j))]

    def lost_report(step, msg):
        held = collections.Counter()
        if os.path.isfile(target_abs):
            held, _ = read_target(target_abs)
        for j in wl.journals:
            held.update(journal_lines(os.path.join(root, j), x))
        # only lines acknowledged before the crash (post-crash ones may not be appended yet)
        post = collections.Counter(line.encode() for ls in wl.post.values() for line in ls)
        lost = [line for line, n in e.required.items() if n - post[line] > 0 and held[line] < n - post[line]
                and not wl.keyed]
        if wl.keyed:
            acked = {int(r.split()[0]) for r in e.acks.decode().splitlines() if r.strip()}
            lost = [workloads.expected_line(wl.keyed["run"], wl.keyed["writer"], i) for i in sorted(acked)
                    if held[workloads.expected_line(wl.keyed["run"], wl.keyed["writer"], i)] < 1]
        extra = (f"; ACKED LINES LOST from both target and journals: {[short(v) for v in lost[:6]]}" if lost
                 else "; no acknowledged line is missing from both target and journals")
        return False, f"{step} failed: {first_line(msg)}{extra}"

    def post_appends():
        for j, lines in wl.post.items():
            rc, out = run([trib, "append", "--journal", os.path.join(root, j)], cwd,
                          ("".join(line + "\n" for line in lines)).encode())
            if rc != 0:
                return rc, out
        if wl.keyed:
            k = wl.keyed
            ackf = os.path.join(x, k["ack"])
            with open(ackf, "wb") as f:
                f.write(e.acks)
            rc, out = run([torture, "writer", "--journal", os.path.join(root, k["journal"]), "--ack", ackf,
                           "--writer", str(k["writer"]), "--lines", str(k["total"]), "--run", str(k["run"]),
                           "--max-batch", "3"], cwd)
            if rc != 0:
                return rc, out
        return 0, ""

    existing = [j for j in wl.journals if os.path.isfile(os.path.join(root, j))]
    # What an operator's setup step does after a crash: `init` is idempotent, and the
    # one step that may create (or adopt) the target; drains never create.
    rc, out = run([trib, "init", "--target", target], cwd)
    if rc != 0 and own_torn_bytes(wl, target_abs, out):
        return True, "refused"
    if rc != 0:
        return lost_report("recovery init", out)
    if wl.append_first:
        rc, out = post_appends()
        if rc != 0:
            return lost_report("post-crash append", out)
    if existing or (wl.spool and os.path.isdir(os.path.join(root, wl.spool))):
        rc, out = run(drain_cmd(existing), cwd)
        if rc != 0 and own_torn_bytes(wl, target_abs, out):
            return True, "refused"
        if rc != 0:
            return lost_report("first recovery drain", out)
    if not wl.append_first:
        rc, out = post_appends()
        if rc != 0:
            return lost_report("post-crash append", out)
    if wl.spool:
        os.makedirs(os.path.join(root, wl.spool), exist_ok=True)
    rc, out = run(drain_cmd(wl.journals), cwd)
    if rc != 0:
        return lost_report("second recovery drain", out)
    rc, out = run([trib, "verify", "--target", target], cwd)
    if rc != 0:
        return False, f"verify failed: {first_line(out)}"
    have, problems = read_target(target_abs)
    if problems:
        return False, "; ".join(problems)
    bad = []
    for line, n in e.required.items():
        if have[line] < n:
            bad.append(f"acked line {short(line)} present {have[line]}x, want >= {n}")
    for line, n in have.items():
        if n > e.upper.get(line, 0):
            if e.upper.get(line, 0) == 0:
                bad.append(f"unknown or torn line {short(line)} ({n}x)")
            else:
                bad.append(f"line {short(line)} present {n}x, submitted only {e.upper[line]}x (duplicated)")
    if bad:
        return False, "; ".join(bad[:4]) + (f" (+{len(bad) - 4} more)" if len(bad) > 4 else "")
    return True, ""


def own_torn_bytes(wl, target, out):
    """True when the drain refused a pre-existing target that holds only the workload's
    own unsynced bytes, torn by the power cut before tributary committed anything (no
    manifest): the documented refusal ("adopts only whole lines"), not a protocol bug."""
    if "[torn_target]" not in out or not wl.extra:
        return False
    folder, base = os.path.split(target)
    if has_manifest_slot(os.path.join(folder, base + ".tributary", "lock")):
        return False
    own = b"".join(line.encode() + b"\n" for line in wl.extra)
    try:
        with open(target, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return len(data) <= len(own) and all(b in (0, own[i]) for i, b in enumerate(data))


def has_manifest_slot(lock):
    """True when the lock file holds a written manifest slot (format 2: slot A at 0,
    slot B at 2 MiB, each starting with `TRIBSLOT`)."""
    try:
        with open(lock, "rb") as f:
            a = f.read(8)
            f.seek(2 << 20)
            b = f.read(8)
    except OSError:
        return False
    return b"TRIBSLOT" in (a, b)


def short(line):
    return repr(line[:24] + (b"..." if len(line) > 24 else b""))[1:]


def first_line(msg):
    for ln in msg.splitlines():
        if "error" in ln or "INCONSISTENT" in ln:
            return ln.strip()[:400]
    return (msg.splitlines() or ["(no output)"])[-1][:400]


def hint(wl, origin, diag):
    """A one-line guess at what the failing state means for the protocol."""
    model, k, label, blamed = origin
    if not blamed:
        return "the state with every op persisted fails: a logic bug, not an ordering one"
    op = blamed[0]
    path = op.get("dst") or op.get("path") or ""
    target = os.path.normpath(os.path.join(wl.cwd, wl.target))
    if path.endswith("-wal") or path.endswith(".journal"):
        return ("a manifest watermark covers journal rows that were not durable yet: the journal must be "
                "fsynced before the manifest commit that counts its rows")
    if op["op"] == "rename" and "manifest" in path:
        return ("an upgrade or init relied on a manifest file whose rename was not durable yet (no folder fsync); "
                "after the power cut that file is gone")
    if op["op"] == "write" and path.endswith(".tributary/lock"):
        return ("a drain acted on (wrote under, or deleted rows on the word of) a manifest slot that was not "
                "fdatasynced yet (its committer died before the fdatasync); after the power cut that slot is gone")
    if path == target and op["op"] == "creat":
        return "the target's directory entry is not durable before the manifest that counts its bytes"
    if path == target and op["op"] in ("write", "trunc"):
        return "the manifest counts target bytes that were not fsynced before its commit"
    if op["op"] in models.NAMESPACE:
        return f"the {op['op']} of {path} was not made durable (no fsync of its folder) before something relied on it"
    return f"the protocol relied on {path} being durable without an fsync"


def blame_text(ops, origin):
    model, k, label, blamed = origin
    where = "before the first op" if k < 0 else f"after op {k} (trace line {ops[k]['line']}: {trace.describe(ops[k])})"
    if not blamed:
        op_txt = "none (every op up to the crash point persisted)"
    elif label.startswith("zero-fill"):
        op_txt = "zero-fill of " + trace.describe(blamed[0])
    elif label == "alone":
        op_txt = "every other pending op lost, kept only " + trace.describe(blamed[0])
    elif len(blamed) == 1:
        op_txt = "loss of " + trace.describe(blamed[0])
    else:
        op_txt = f"loss of {len(blamed)} pending ops, first {trace.describe(blamed[0])}"
    return model, where, label, op_txt


# ---------------------------------------------------------------- main
def can_run():
    if shutil.which("strace") is None:
        return "strace is not installed (apt-get install strace)"
    p = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "true"], capture_output=True)
    if p.returncode != 0:
        return f"strace cannot trace here: {p.stderr.decode(errors='replace').strip()}"
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="crash-states", description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", default=None, help="folder of the tributary binary (default target/release)")
    ap.add_argument("--torture", default=None,
                    help="tributary-torture binary for the keyed writer (default: in --bin-dir)")
    ap.add_argument("--workload", action="append", help="run only this workload (repeatable)")
    ap.add_argument("--model", default="all", choices=["posix", "ext4", "all"])
    ap.add_argument("--keep-failures", default=None, help="copy each failing state (before recovery) here")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--work-dir", default=None, help="scratch folder (default: /dev/shm if usable, else $TMPDIR)")
    ap.add_argument("--list", action="store_true", help="list the workloads and exit")
    ap.add_argument("--self-test", action="store_true", help="test the trace parser and the models, then exit")
    ap.add_argument("--dump-ops", action="store_true", help="print each workload's parsed ops, do not check")
    ap.add_argument("--min-states", type=int, default=0,
                    help="fail unless at least this many distinct states were explored (CI: 1000)")
    ap.add_argument("--show", type=int, default=3, help="failing states printed in full per workload and model")
    a = ap.parse_args(argv)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if a.self_test:
        from . import selftest

        return selftest.run()
    if a.list:
        for w in workloads.WORKLOADS:
            print(f"{w.name:20} {w.about}")
        return 0
    why = can_run()
    if why:
        print(f"crash-states: SKIPPED: {why}")
        return 77
    bin_dir = os.path.abspath(a.bin_dir or os.path.join(repo, "target", "release"))
    torture = os.path.abspath(a.torture or os.path.join(bin_dir, "tributary-torture"))
    for b in (os.path.join(bin_dir, "tributary"), torture):
        if not os.access(b, os.X_OK):
            print(f"crash-states: SKIPPED: {b} is not built (cargo build --release --workspace --bins)")
            return 77
    model_names = models.MODELS if a.model == "all" else (a.model,)
    known = workloads.by_name()
    chosen = [known[n] for n in a.workload] if a.workload else workloads.WORKLOADS
    if a.workload and any(n not in known for n in a.workload):
        print(f"unknown workload; known: {', '.join(known)}", file=sys.stderr)
        return 2
    base = a.work_dir
    if base is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    work = tempfile.mkdtemp(prefix="crash-states-", dir=base)
    started = time.monotonic()
    total_pass = total_fail = 0
    record_errors = []
    summary = []
    blamed_ops = collections.Counter()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            for wl in chosen:
                t0 = time.monotonic()
                try:
                    ops, nlines = record(wl, bin_dir, torture, work)
                except (RecordError, ValueError, subprocess.TimeoutExpired) as err:
                    log(f"workload {wl.name}: RECORDING FAILED: {err}")
                    record_errors.append(wl.name)
                    continue
                if a.dump_ops:
                    for op in ops:
                        extra = op["text"].decode(errors="replace").strip() if op["op"] == "mark" else ""
                        log(f"{wl.name} op {op['idx']:4} {op['op']:6} {trace.describe(op) if op['op'] != 'mark' else ''}"
                            f"{extra}")
                    continue
                states, per_model, impossible = enumerate_states(wl, ops, model_names)
                futs = {}
                for n, (d, st) in enumerate(states.items()):
                    futs[pool.submit(check_state, wl, ops, st, bin_dir, torture, work)] = (d, st)
                fails = collections.defaultdict(list)
                passed = refused = 0
                for fut in concurrent.futures.as_completed(futs):
                    d, st = futs[fut]
                    ok, diag = fut.result()
                    if ok:
                        passed += 1
                        refused += diag == "refused"
                    else:
                        for m in st.models:
                            fails[m].append((st, diag))
                failed_states = len(states) - passed
                total_pass += passed
                total_fail += failed_states
                nops = sum(1 for op in ops if op["op"] != "mark")
                per = ", ".join(f"{m} {per_model[m]} states ({len(fails[m])} failed, {impossible[m]} impossible "
                                f"skipped)" for m in model_names)
                log(f"workload {wl.name}: {nops} ops from {nlines} trace lines; {per}; {len(states)} distinct: "
                    f"{passed} passed, {failed_states} failed ({time.monotonic() - t0:.1f} s)")
                if refused:
                    log(f"  ({refused} of the passed states: the drain refused, as documented, a pre-existing target "
                        f"holding only the workload's own unsynced bytes torn by the power cut before any manifest)")
                summary.append((wl.name, per_model, {m: len(fails[m]) for m in model_names}, len(states), passed))
                kept = 0
                # ops whose single loss breaks the protocol, per (model, crash point): a state
                # that lost several ops is blamed on one of these when it lost one
                culprits = collections.defaultdict(set)
                for m in model_names:
                    for st, _ in fails[m]:
                        for o in st.origins:
                            if o[0] == m and o[2] in ("lost", "zero-fill"):
                                culprits[(m, o[1])].add(o[3][0]["idx"])
                for m in model_names:
                    ordered = sorted(fails[m], key=lambda f: min((o[1] for o in f[0].origins if o[0] == m), default=-1))
                    for i, (st, diag) in enumerate(ordered):
                        mine = [o for o in st.origins if o[0] == m] or st.origins
                        origin = next((o for o in mine if o[2] in ("lost", "zero-fill")), mine[0])
                        if origin[2] not in ("lost", "zero-fill"):
                            lost = [op for op in ops[: origin[1] + 1]
                                    if op["op"] not in ("mark", "fsync") and op["idx"] not in st.applied]
                            hit = [op for op in lost if op["idx"] in culprits[(m, origin[1])]]
                            if hit:
                                origin = (m, origin[1], f"lost (with {len(lost) - 1} other pending ops lost; "
                                                        f"was {origin[2]})", [hit[0]])
                        model, where, label, op_txt = blame_text(ops, origin)
                        blamed_ops[(wl.name, model, op_txt.split(" (trace line")[0])] += 1
                        if i < a.show:
                            log(f"  FAIL workload={wl.name} model={model} crash point {where}\n"
                                f"       variant {label}: {op_txt}\n"
                                f"       diagnosis: {hint(wl, origin, diag)}\n"
                            f"       recovery: {diag}")
                        if a.keep_failures and kept < 50:
                            dest = os.path.join(a.keep_failures, f"{wl.name}-{model}-{i}")
                            if not os.path.exists(dest):
                                check_state(wl, ops, st, bin_dir, torture, work, keep=os.path.join(dest, "fs"))
                                with open(os.path.join(dest, "WHY"), "w") as f:
                                    f.write(f"{wl.name} {model} {where}\n{label}: {op_txt}\n{diag}\n")
                                kept += 1
                    if len(ordered) > a.show:
                        log(f"  ... {len(ordered) - a.show} more failing {m} states of {wl.name}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if blamed_ops:
        log("failing states by the op they blame (workload, model, op):")
        for (w, m, op), n in sorted(blamed_ops.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[1])):
            log(f"  {n:5} {w} {m}: {op}")
    tot = collections.Counter()
    for _, per_model, _, _, _ in summary:
        tot.update(per_model)
    log("states per model: " + ", ".join(f"{m} {tot[m]}" for m in model_names) +
        f"; distinct across models: {total_pass + total_fail}; {time.monotonic() - started:.0f} s")
    if record_errors:
        log(f"workloads that could not be recorded: {', '.join(record_errors)}")
    short_of = total_pass + total_fail < a.min_states
    if short_of:
        log(f"only {total_pass + total_fail} distinct states explored, fewer than --min-states {a.min_states}")
    log(f"crash-states: {total_pass} passed, {total_fail + len(record_errors) + short_of} failed")
    return 0 if total_fail == 0 and not record_errors and not short_of else 1
