"""Persistence models: which subsets of a trace's ops a power cut may leave on disk.

A crash state is (applied ops, zero-filled ops): the ops of the trace up to the crash
point that reached the disk, replayed in trace order on an empty root folder. A state
whose namespace ops do not replay (a rename whose source name is missing, an unlink of
a missing name, a create over an existing name) is impossible and skipped.

- posix (strict POSIX): a file's writes/truncates are durable once a later fsync or
  fdatasync of that file returned; a namespace op (create, mkdir, rename, unlink, link)
  once a later fsync of its folder (the destination's, for a rename) returned. Any
  other op may be lost or reordered; an extending write may persist as its size with
  zero fill.
- ext4 (ext4 data=ordered): namespace ops and truncates form one ordered log; any
  fsync/fdatasync commits every earlier one. A data write is durable once a later
  fsync/fdatasync of its file returned; an extending write's size never persists
  without its data.
"""

import hashlib
import os
import posixpath

MODELS = ("posix", "ext4")
NAMESPACE = ("creat", "mkdir", "rename", "unlink", "link")


def parent(path):
    return posixpath.dirname(path)


class Impossible(Exception):
    pass


def covered_posix(ops, k, names_dirs):
    """Indexes of ops <= k that strict POSIX makes durable."""
    durable = set()
    synced_after = {}  # ino -> latest fsync index <= k
    for op in ops[: k + 1]:
        if op["op"] == "fsync":
            synced_after[op["ino"]] = op["idx"]
    for op in ops[: k + 1]:
        kind = op["op"]
        if kind in ("write", "trunc"):
            if synced_after.get(op["ino"], -1) > op["idx"]:
                durable.add(op["idx"])
        elif kind in NAMESPACE:
            d = op["dir_ino"]
            if d is not None and synced_after.get(d, -1) > op["idx"]:
                durable.add(op["idx"])
        elif kind in ("fsync", "mark"):
            durable.add(op["idx"])
        if op.get("base"):
            durable.add(op["idx"])
    return durable


def covered_ext4(ops, k):
    last_sync = -1
    synced_after = {}
    for op in ops[: k + 1]:
        if op["op"] == "fsync":
            last_sync = op["idx"]
            synced_after[op["ino"]] = op["idx"]
    durable = set()
    for op in ops[: k + 1]:
        kind = op["op"]
        if kind in NAMESPACE or kind == "trunc":
            if last_sync > op["idx"]:
                durable.add(op["idx"])
        elif kind == "write":
            if synced_after.get(op["ino"], -1) > op["idx"]:
                durable.add(op["idx"])
        else:
            durable.add(op["idx"])
        if op.get("base"):
            durable.add(op["idx"])
    return durable


def annotate(ops):
    """Give every namespace op the inode of the folder that holds its (new) name, as the
    running system saw it (so "fsync of that folder" can be matched)."""
    names = {"": 0}
    for op in ops:
        kind = op["op"]
        if kind in ("creat", "mkdir", "link"):
            op["dir_ino"] = names.get(parent(op["path"]))
            names[op["path"]] = op["ino"]
        elif kind == "rename":
            op["dir_ino"] = names.get(parent(op["dst"]))
            names.pop(op["src"], None)
            names[op["dst"]] = op["ino"]
        elif kind == "unlink":
            op["dir_ino"] = names.get(parent(op["path"]))
            names.pop(op["path"], None)


def variants(ops, k, model):
    """Yield (applied set, zero-filled set, label, blamed ops) for crash point k (after
    op k; k = -1 is before the first op)."""
    if k < 0:
        yield frozenset(op["idx"] for op in ops if op.get("base")), frozenset(), "empty", []
        return
    upto = [op for op in ops[: k + 1] if op["op"] not in ("mark", "fsync")]
    durable = covered_posix(ops, k, None) if model == "posix" else covered_ext4(ops, k)
    base = frozenset(op["idx"] for op in upto if op["idx"] in durable)
    pending = [op for op in upto if op["idx"] not in durable]
    everything = frozenset(op["idx"] for op in upto)
    yield everything, frozenset(), "all", []
    if not pending:
        return
    if model == "posix":
        for p in pending:
            yield everything - {p["idx"]}, frozenset(), "lost", [p]
        for p in pending:
            yield base | {p["idx"]}, frozenset(), "alone", [p]
        for p in pending:
            if p["op"] == "write" and p["off"] + len(p["data"]) > p["ext"]:
                yield everything, frozenset({p["idx"]}), "zero-fill", [p]
        yield base, frozenset(), "none", pending
    else:
        meta = [p for p in pending if p["op"] != "write"]
        data = [p for p in pending if p["op"] == "write"]
        # metadata is a log: any prefix of it persists; data writes independently
        for n in range(len(meta) + 1):
            kept = base | {p["idx"] for p in meta[:n]}
            lost_meta = meta[n:]
            blame = lost_meta[:1]
            yield kept | {p["idx"] for p in data}, frozenset(), f"meta-prefix {n}/{len(meta)}", blame
            if data:
                yield kept, frozenset(), f"meta-prefix {n}/{len(meta)}, no pending data", blame + data
        allmeta = base | {p["idx"] for p in meta}
        for p in data:
            yield everything - {p["idx"]}, frozenset(), "lost", [p]
            yield allmeta | {p["idx"]}, frozenset(), "alone", [p]


def replay(ops, applied, zero):
    """Replay `applied` ops in trace order: {path: ('d', None) | ('f', bytes)}."""
    names = {"": 0}
    data = {}
    dirs = {0}
    for op in ops:
        i = op["idx"]
        if i not in applied:
            continue
        kind = op["op"]
        if kind == "creat" or kind == "mkdir":
            if op["path"] in names or parent(op["path"]) not in names:
                raise Impossible(op)
            names[op["path"]] = op["ino"]
            if kind == "mkdir":
                dirs.add(op["ino"])
            else:
                data[op["ino"]] = bytearray()
        elif kind == "link":
            if op["path"] in names:
                raise Impossible(op)
            names[op["path"]] = op["ino"]
        elif kind == "rename":
            if names.get(op["src"]) != op["ino"] or parent(op["dst"]) not in names:
                raise Impossible(op)
            del names[op["src"]]
            names[op["dst"]] = op["ino"]
        elif kind == "unlink":
            if names.get(op["path"]) != op["ino"]:
                raise Impossible(op)
            del names[op["path"]]
        elif kind == "write":
            buf = data.setdefault(op["ino"], bytearray())
            off, d = op["off"], op["data"]
            end = off + len(d)
            if len(buf) < off:
                buf.extend(bytes(off - len(buf)))
            if i in zero:
                if len(buf) < end:
                    buf.extend(bytes(end - len(buf)))
            else:
                buf[off:end] = d
        elif kind == "trunc":
            buf = data.setdefault(op["ino"], bytearray())
            if len(buf) > op["size"]:
                del buf[op["size"] :]
            else:
                buf.extend(bytes(op["size"] - len(buf)))
    # a folder whose own entry was lost takes its names with it
    out = {}
    for path, ino in names.items():
        if path == "":
            continue
        p, ok = parent(path), True
        while p:
            if p not in names:
                ok = False
                break
            p = parent(p)
        if not ok:
            continue
        out[path] = ("d", None) if ino in dirs else ("f", bytes(data.get(ino, b"")))
    return out


def digest(state):
    h = hashlib.sha256()
    for path in sorted(state):
        kind, d = state[path]
        h.update(path.encode("utf-8", "surrogateescape") + b"\0" + kind.encode())
        if d is not None:
            h.update(hashlib.sha256(d).digest())
    return h.hexdigest()


def materialise(state, root):
    os.makedirs(root, exist_ok=True)
    for path in sorted(state):
        kind, d = state[path]
        full = os.path.join(root, path)
        if kind == "d":
            os.makedirs(full, exist_ok=True)
    for path in sorted(state):
        kind, d = state[path]
        if kind == "f":
            full = os.path.join(root, path)
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                write_sparse(f, d)


_ZERO = bytes(1 << 16)


def write_sparse(f, d):
    """Write `d`, leaving all-zero 64 KiB blocks as holes (a 4 MiB lock file holds two
    small manifest slots: thousands of states would otherwise write gigabytes)."""
    view = memoryview(d)
    for pos in range(0, len(d), len(_ZERO)):
        chunk = view[pos : pos + len(_ZERO)]
        if chunk != _ZERO[: len(chunk)]:
            f.seek(pos)
            f.write(chunk)
    f.truncate(len(d))
