"""Self-test of the parser and the persistence models on a synthetic strace log
(run by scripts/crash-states --self-test, and by CI stage 72 before the enumeration)."""

from . import models, trace

X = "".join(f"\\x{b:02x}" for b in b"/r")


def h(s):
    return "".join(f"\\x{b:02x}" for b in s.encode())


TRACE = f"""100 mkdir("{h('/r/d')}", 0755) = 0
100 openat(AT_FDCWD<{h('/r')}>, "{h('d/a')}", O_RDWR|O_CREAT, 0644) = 3<{h('/r/d/a')}>
101 pwrite64(3<{h('/r/d/a')}>, "{h('hi')}", 2, 0 <unfinished ...>
100 fsync(3<{h('/r/d/a')}> <unfinished ...>
101 <... pwrite64 resumed>) = 2
100 <... fsync resumed>) = 0
100 openat(AT_FDCWD<{h('/r')}>, "{h('d/a-shm')}", O_RDWR|O_CREAT, 0644) = 5<{h('/r/d/a-shm')}>
100 pwrite64(5<{h('/r/d/a-shm')}>, "{h('x')}", 1, 0) = 1
100 rename("{h('d/a')}", "{h('d/b')}") = 0
100 writev(3<{h('/r/d/b')}>, [{{iov_base="{h('x')}", iov_len=1}}, {{iov_base="{h('yz')}", iov_len=2}}], 2) = 3
100 write(7<{h('/m/ack')}>, "{h('ack full a1')}\\x0a", 12) = 12
100 openat(AT_FDCWD<{h('/r')}>, "{h('d')}", O_RDONLY|O_CLOEXEC) = 4<{h('/r/d')}>
100 fsync(4<{h('/r/d')}>) = 0
100 unlinkat(AT_FDCWD<{h('/r')}>, "{h('d/b')}", 0) = 0
100 write(3<{h('/r/d/b (deleted)')}>, "{h('q')}", 1) = 1
100 openat(AT_FDCWD<{h('/r')}>, "{h('nope')}", O_RDONLY) = -1 ENOENT (No such file or directory)
100 --- SIGCHLD {{si_signo=SIGCHLD}} ---
100 +++ exited with 0 +++
"""


def run():
    ops, _ = trace.parse(TRACE, "/r", "/m")
    models.annotate(ops)
    kinds = [op["op"] for op in ops]
    assert kinds == ["mkdir", "creat", "write", "fsync", "rename", "write", "mark", "fsync", "unlink", "write"], kinds
    assert ops[2]["data"] == b"hi" and ops[2]["off"] == 0
    # writev at the fd's position: pwrite64 does not move it
    assert ops[5]["data"] == b"xyz" and ops[5]["off"] == 0 and ops[5]["path"] == "d/b"
    assert ops[6]["text"] == b"ack full a1\n"
    assert ops[9]["ino"] == ops[1]["ino"]
    # after the folder fsync (op 7): mkdir? no (its folder, the root, was never synced);
    # creat and rename yes; the write "hi" yes (file fsync); "xyz" not.
    d = models.covered_posix(ops, 7, None)
    assert {1, 2, 4} <= d and 0 not in d and 5 not in d, d
    states = {}
    for applied, zero, label, _ in models.variants(ops, 7, "posix"):
        try:
            states[label, tuple(sorted(applied)), tuple(zero)] = models.replay(ops, applied, zero)
        except models.Impossible:
            pass
    contents = {s.get("d/b", (None, None))[1] for s in states.values()}
    assert b"xyz" in contents and b"hi" in contents and b"hi\0" in contents, contents
    e = models.covered_ext4(ops, 7)
    assert {0, 1, 2, 4} <= e and 5 not in e, e
    print("crash-states self-test: ok")
    return 0
