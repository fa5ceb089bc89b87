#!/usr/bin/env python3
"""Stress harness for tributary: writers + retirers + compact daemons (+ SIGKILLs).
At most --max-procs tributary processes at once (writers+retirers+daemons).
Checks at the end: every acknowledged line exactly once in T, no duplicates, verify OK."""
import argparse, collections, os, random, re, signal, subprocess, sys, threading, time, shutil

B = os.environ.get("TRIB", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "release", "tributary"))
ap = argparse.ArgumentParser()
ap.add_argument("--dir", required=True)
ap.add_argument("--secs", type=float, default=40)
ap.add_argument("--writers", type=int, default=2, help="short-lived (one process per batch) writers")
ap.add_argument("--long", type=int, default=0, help="long-lived writers (one process, slow stdin)")
ap.add_argument("--journals", default="a", help="comma list of journal base names writers pick from")
ap.add_argument("--retirers", type=int, default=1)
ap.add_argument("--retire-multi", type=int, default=1, help="journals per retire call")
ap.add_argument("--retire-sleep", type=float, default=0.0)
ap.add_argument("--daemons", type=int, default=1)
ap.add_argument("--interval", type=int, default=20)
ap.add_argument("--retire-idle", type=int, default=None)
ap.add_argument("--kill", default="", help="comma list of classes to SIGKILL randomly: writer,long,retirer,daemon")
ap.add_argument("--kill-rate", type=float, default=1.0, help="kills per second")
ap.add_argument("--batch", type=int, default=20)
ap.add_argument("--long-sleep", type=float, default=0.01)
ap.add_argument("--long-lines", type=int, default=500, help="lines per long-lived process before closing stdin")
ap.add_argument("--durability", default="full")
ap.add_argument("--seed", type=int, default=None)
ap.add_argument("--extra-daemon-args", default="")
args = ap.parse_args()
seed = args.seed if args.seed is not None else random.randrange(1 << 30)
random.seed(seed)
D = os.path.abspath(args.dir)
shutil.rmtree(D, ignore_errors=True)
S = os.path.join(D, "s"); os.makedirs(S)
T = os.path.join(D, "T")
subprocess.run([B, "init", "--target", T], check=True, stdout=subprocess.DEVNULL)
JN = [os.path.join(S, n + ".journal") for n in args.journals.split(",")]

lock = threading.Lock()
acked = collections.Counter()   # line -> 1
maybe = set()
sent_total = 0
errs = collections.Counter()
errs_example = {}
procs = {}  # pid -> (cls, Popen)
stop = threading.Event()
stats = collections.Counter()
info = {}
events = []
T0 = time.time()

def norm(msg):
    m = re.sub(r"/\S+", "<path>", msg)
    m = re.sub(r"\b[0-9a-f]{32}\b", "<id>", m)
    m = re.sub(r"\d+", "N", m)
    return m[:300]

def note_err(cls, text):
    for l in text.splitlines():
        if not l.strip():
            continue
        k = cls + ": " + norm(l)
        with lock:
            errs[k] += 1
            errs_example.setdefault(k, l)

def spawn(cls, argv, **kw):
    p = subprocess.Popen(argv, stderr=subprocess.PIPE, **kw)
    with lock:
        procs[p.pid] = (cls, p)
    return p

def reap(p):
    with lock:
        procs.pop(p.pid, None)

counter = [0]
def newlines(tag, n):
    with lock:
        base = counter[0]; counter[0] += n
    return ["%s-%d-%s" % (tag, base + i, "p" * random.randint(0, 40)) for i in range(n)]

def writer(i):
    global sent_total
    while not stop.is_set():
        j = random.choice(JN)
        lines = newlines("w%d" % i, random.randint(1, args.batch))
        t0 = time.time()
        p = spawn("writer", [B, "append", "--journal", j, "--durability", args.durability],
                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        try:
            _, err = p.communicate(("\n".join(lines) + "\n").encode(), timeout=60)
        except subprocess.TimeoutExpired:
            p.kill(); _, err = p.communicate(); stats["writer_timeout"] += 1
        reap(p)
        err = err.decode(errors="replace")
        with lock:
            info[lines[0]] = (os.path.basename(j), t0 - T0, time.time() - T0, len(lines), p.returncode)
            sent_total += len(lines)
            if p.returncode == 0:
                for l in lines: acked[l] += 1
                stats["batch_ok"] += 1
            else:
                k = 0
                m = re.search(r"input lines 1-(\d+)\) were stored", err)
                if m: k = int(m.group(1))
                for l in lines[:k]: acked[l] += 1
                for l in lines[k:]: maybe.add(l)
                stats["batch_fail_rc%d" % p.returncode] += 1
        if p.returncode != 0 and p.returncode != -9:
            note_err("writer", err)

def long_writer(i):
    global sent_total
    while not stop.is_set():
        j = random.choice(JN)
        p = spawn("long", [B, "append", "--journal", j, "--print-seqs", "--durability", args.durability],
                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        sent = []
        nack = [0]
        def rd():
            for _ in p.stdout:
                nack[0] += 1
        th = threading.Thread(target=rd); th.start()
        try:
            for _ in range(args.long_lines):
                if stop.is_set(): break
                l = newlines("L%d" % i, 1)[0]
                sent.append(l)
                p.stdin.write((l + "\n").encode()); p.stdin.flush()
                time.sleep(random.random() * args.long_sleep * 2)
        except (BrokenPipeError, OSError):
            pass
        try: p.stdin.close()
        except OSError: pass
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill(); p.wait(); stats["long_timeout"] += 1
        th.join()
        err = p.stderr.read().decode(errors="replace")
        reap(p)
        with lock:
            sent_total += len(sent)
            n = nack[0]
            if n > len(sent):
                stats["long_MORE_ACKS_THAN_SENT"] += 1; n = len(sent)
            for l in sent[:n]: acked[l] += 1
            for l in sent[n:]: maybe.add(l)
            stats["long_rc%d" % p.returncode] += 1
            if p.returncode == 0 and n != len(sent):
                stats["long_rc0_but_missing_acks"] += 1
        if p.returncode not in (0, -9):
            note_err("long", err)

def retirer(i):
    while not stop.is_set():
        js = random.sample(JN, min(args.retire_multi, len(JN)))
        argv = [B, "retire", "--target", T]
        for j in js: argv += ["--journal", j]
        t0 = time.time()
        p = spawn("retirer", argv, stdout=subprocess.DEVNULL)
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill(); _, err = p.communicate(); stats["retire_timeout"] += 1
        reap(p)
        stats["retire_rc%d" % p.returncode] += 1
        with lock: events.append((t0 - T0, time.time() - T0, "retire", [os.path.basename(x) for x in js], p.returncode, err.decode(errors="replace")[:200]))
        if p.returncode not in (0, -9):
            note_err("retirer", err.decode(errors="replace"))
        if args.retire_sleep: time.sleep(random.random() * args.retire_sleep)

def daemon(i):
    while not stop.is_set():
        argv = [B, "compact", "--target", T, "--spool", S, "--interval", str(args.interval)]
        if args.retire_idle is not None: argv += ["--retire-idle", str(args.retire_idle)]
        argv += args.extra_daemon_args.split()
        p = spawn("daemon", argv, stdout=subprocess.DEVNULL)
        errbuf = []
        def rd():
            for l in p.stderr:
                errbuf.append(l.decode(errors="replace"))
                with lock: events.append((time.time() - T0, time.time() - T0, "daemon%d" % i, l.decode(errors="replace").strip()[:200]))
        th = threading.Thread(target=rd); th.start()
        while p.poll() is None and not stop.is_set():
            time.sleep(0.05)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try: p.wait(timeout=30)
            except subprocess.TimeoutExpired: p.kill(); p.wait(); stats["daemon_term_timeout"] += 1
        th.join(); reap(p)
        stats["daemon_rc%d" % p.returncode] += 1
        note_err("daemon", "".join(errbuf))

def killer():
    classes = [c for c in args.kill.split(",") if c]
    if not classes: return
    while not stop.is_set():
        time.sleep(random.expovariate(args.kill_rate))
        with lock:
            cands = [(c, p) for c, p in procs.values() if c in classes and p.poll() is None]
        if cands:
            c, p = random.choice(cands)
            time.sleep(random.random() * 0.05)
            try:
                os.kill(p.pid, signal.SIGKILL); stats["killed_" + c] += 1
            except ProcessLookupError:
                pass

ths = [threading.Thread(target=writer, args=(i,)) for i in range(args.writers)]
ths += [threading.Thread(target=long_writer, args=(i,)) for i in range(args.long)]
ths += [threading.Thread(target=retirer, args=(i,)) for i in range(args.retirers)]
ths += [threading.Thread(target=daemon, args=(i,)) for i in range(args.daemons)]
kt = threading.Thread(target=killer)
for t in ths: t.start()
kt.start()
time.sleep(args.secs)
stop.set()
for t in ths: t.join()
kt.join()
# final drain
r = subprocess.run([B, "drain", "--target", T, "--spool", S], capture_output=True, text=True)
final_drain = (r.returncode, r.stderr.strip()[-2000:])
r2 = subprocess.run([B, "drain", "--target", T, "--spool", S], capture_output=True, text=True)
v = subprocess.run([B, "verify", "--target", T], capture_output=True, text=True)
with open(T, "rb") as f:
    data = f.read()
tl = data.decode(errors="replace").split("\n")
if tl and tl[-1] == "": tl.pop()
cnt = collections.Counter(tl)
dups = {l: c for l, c in cnt.items() if c > 1}
missing = [l for l in acked if cnt[l] == 0]
unknown = [l for l in cnt if l not in acked and l not in maybe]
maybe_landed = sum(1 for l in maybe if cnt[l] == 1)
print("seed=%d dir=%s" % (seed, D))
print("sent=%d acked=%d maybe=%d (landed %d) target_lines=%d" % (sent_total, len(acked), len(maybe), maybe_landed, len(tl)))
print("stats:", dict(sorted(stats.items())))
print("final drain rc=%d %s" % final_drain)
print("second drain rc=%d %s" % (r2.returncode, r2.stderr.strip()[-500:]))
print("verify rc=%d %s" % (v.returncode, (v.stdout + v.stderr).strip()[:300]))
print("leftover spool files:", sorted(os.listdir(S))[:20])
print("errors (normalized, count):")
for k, c in errs.most_common(40):
    print("  %5d %s" % (c, k))
    print("        e.g. %s" % errs_example[k][:400])
bad = bool(dups or missing or unknown or v.returncode != 0 or final_drain[0] != 0)
print("MISSING=%d DUPS=%d UNKNOWN=%d" % (len(missing), len(dups), len(unknown)))
if missing:
    print(" missing e.g.", missing[:5])
    import pickle
    firsts = [k for k in info if any(m.startswith(k.rsplit("-",1)[0]) for m in [])]
    # find batches containing missing lines
    num = lambda l: (l.split("-")[0], int(l.split("-")[1]))
    bl = sorted(((num(k), v) for k, v in info.items()))
    shown = set()
    for m in missing:
        w, n = num(m)
        cand = [b for b in bl if b[0][0] == w and b[0][1] <= n]
        if cand:
            b = cand[-1]
            if b[0] in shown: continue
            shown.add(b[0]); print(" batch of missing line:", b)
            t0, t1 = b[1][1], b[1][2]
            for e in events:
                if e[1] >= t0 - 0.05 and e[0] <= t1 + 0.05: print("    ev", e)

if dups: print(" dups e.g.", list(dups.items())[:5])
if unknown: print(" unknown e.g.", unknown[:5])
print("RESULT:", "FAIL" if bad else "PASS")
sys.exit(1 if bad else 0)
