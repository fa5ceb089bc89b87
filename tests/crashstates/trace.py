"""Parse an `strace -f -y -xx` log into logical file-system operations.

Only operations on files under the traced root folder are kept (plus writes to the
workload's marker files, which become `mark` ops: acknowledgement points). Each op
keeps its trace line number and the raw syscall text, so a failure can name it.

Ops (dicts):
  creat  path ino            a new name for a new, empty file
  mkdir  path ino            a new folder
  link   path ino            a new name for an existing inode
  rename src dst ino
  unlink path ino dir?
  write  ino off data ext    `ext`: size before the write (to tell extending writes)
  trunc  ino size
  fsync  ino                 fsync/fdatasync of a file or a folder
  mark   text                a write to a marker file (outside the root)
SQLite's `-shm` files are transient (mmapped, rebuilt): ignored entirely.
"""

import os
import re

SYSCALLS = (
    "open,openat,creat,write,pwrite64,writev,pwritev,pwritev2,ftruncate,truncate,fsync,fdatasync,"
    "sync_file_range,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,rmdir,link,linkat,"
    "fallocate,dup,dup2,dup3,close"
)

_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^([a-z0-9_]+)\((.*)\)\s+=\s+(-?\d+|\?)(?:<([^>]*)>)?(.*)$", re.S)
_HEX = re.compile(r"\\x([0-9a-fA-F]{2})")


def unhex(s):
    """Bytes of an strace -xx string body (every byte is \\xNN; be lenient otherwise)."""
    out = bytearray()
    i = 0
    while i < len(s):
        if s.startswith("\\x", i) and i + 4 <= len(s):
            out.append(int(s[i + 2 : i + 4], 16))
            i += 4
        elif s[i] == "\\" and i + 1 < len(s):
            esc = {"n": 10, "t": 9, "r": 13, "\\": 92, '"': 34, "0": 0}.get(s[i + 1])
            out.append(esc if esc is not None else ord(s[i + 1]))
            i += 2
        else:
            out += s[i].encode()
            i += 1
    return bytes(out)


def split_args(s):
    """Split a syscall's argument text at top-level commas (strings, <>, [], {} nest)."""
    args, depth, cur, i, n = [], 0, [], 0, len(s)
    while i < n:
        c = s[i]
        if c == '"':
            j = i + 1
            while j < n and s[j] != '"':
                j += 2 if s[j] == "\\" else 1
            cur.append(s[i : j + 1])
            i = j + 1
            continue
        if c in "<[{(":
            depth += 1
        elif c in ">]})":
            depth -= 1
        if c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if cur or args:
        args.append("".join(cur).strip())
    return args


def fd_path(arg):
    """(fd, path) of an argument like `3<\\x2f\\x74...>` or `AT_FDCWD<...>`."""
    m = re.match(r"^(-?\d+|AT_FDCWD)<(.*)>$", arg, re.S)
    if not m:
        return arg, None
    p = unhex(m.group(2)).decode("utf-8", "surrogateescape")
    if p.endswith(" (deleted)"):
        p = p[: -len(" (deleted)")]
    return m.group(1), p


def string_arg(arg):
    m = re.match(r'^"(.*)"(\.\.\.)?$', arg, re.S)
    if not m:
        return None
    return unhex(m.group(1))


def join_lines(text):
    """Yield (line_no, pid, call text) with `<unfinished ...>`/`resumed>` pairs joined
    (the joined call takes the line number of its completion)."""
    pending = {}
    for no, raw in enumerate(text.splitlines(), 1):
        m = _LINE.match(raw)
        if not m:
            continue
        pid, rest = int(m.group(1)), m.group(2)
        if rest.startswith("---") or rest.startswith("+++"):
            continue
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
            continue
        m2 = re.match(r"^<\.\.\. ([a-z0-9_]+) resumed>(.*)$", rest, re.S)
        if m2:
            head = pending.pop(pid, None)
            if head is None:
                continue
            tail = m2.group(2)
            rest = head + tail if head.endswith("(") or tail.startswith(")") or tail.startswith(",") else head + tail
        yield no, pid, rest


class Recorder:
    """Turns joined syscall lines into ops while tracking the running system's view:
    names -> inodes, inode sizes, per-fd file positions, per-pid current folder."""

    def __init__(self, root, marker_dir):
        self.root = os.path.realpath(root)
        self.marker_dir = os.path.realpath(marker_dir)
        self.names = {"": 0}  # relative path -> ino ("" = the root folder)
        self.dirs = {0}
        self.size = {0: 0}
        self.last_ino = {}  # relative path -> last inode it named (for "(deleted)" fds)
        self.next_ino = 1
        self.pos = {}  # (pid, fd) -> [offset, append?]
        self.cwd = {}
        self.last_cwd = None
        self.ops = []

    # ---- paths ----
    def rel(self, path):
        """Path relative to the root, or None if outside it (or a -shm file)."""
        if path is None:
            return None
        p = os.path.normpath(path)
        if p == self.root:
            return ""
        if not p.startswith(self.root + "/"):
            return None
        r = p[len(self.root) + 1 :]
        if r.endswith("-shm"):
            return None
        return r

    def resolve(self, pid, dirarg, name):
        """Absolute path of `name` relative to a dirfd argument (or the pid's cwd)."""
        name = name.decode("utf-8", "surrogateescape")
        if name.startswith("/"):
            return os.path.normpath(name)
        base = None
        if dirarg is not None:
            _, base = fd_path(dirarg)
        if base is None:
            base = self.cwd.get(pid, self.last_cwd)
        if base is None:
            return None
        return os.path.normpath(os.path.join(base, name))

    def note_cwd(self, pid, args):
        for a in args:
            if a.startswith("AT_FDCWD<"):
                _, p = fd_path(a)
                self.cwd[pid] = p
                self.last_cwd = p

    def ino_of(self, rel):
        if rel in self.names:
            return self.names[rel]
        return self.last_ino.get(rel)

    def emit(self, op, no, raw):
        op["line"] = no
        op["raw"] = raw if len(raw) < 300 else raw[:300] + "..."
        op["idx"] = len(self.ops)
        self.ops.append(op)

    # ---- namespace ----
    def _unlink_name(self, rel):
        ino = self.names.pop(rel)
        self.last_ino[rel] = ino
        return ino

    def do_creat(self, rel, no, raw, is_dir=False):
        ino = self.next_ino
        self.next_ino += 1
        self.names[rel] = ino
        self.last_ino[rel] = ino
        self.size[ino] = 0
        if is_dir:
            self.dirs.add(ino)
        self.emit({"op": "mkdir" if is_dir else "creat", "path": rel, "ino": ino}, no, raw)
        return ino

    # ---- the parser ----
    def feed(self, no, pid, text):
        m = _CALL.match(text)
        if not m:
            return
        sc, argtext, ret = m.group(1), m.group(2), m.group(3)
        if ret == "?" or ret.startswith("-"):
            return  # failed or never returned: no effect
        ret = int(ret)
        args = split_args(argtext)
        self.note_cwd(pid, args)
        handler = getattr(self, "sc_" + sc, None)
        if handler:
            handler(no, pid, sc, args, ret, m.group(4), text)

    def _open(self, no, pid, path, flags, ret, retpath, raw):
        if retpath is not None:
            path = unhex(retpath).decode("utf-8", "surrogateescape")
        rel = self.rel(path)
        key = (pid, ret)
        self.pos[key] = [0, "O_APPEND" in flags]
        if rel is None:
            return
        if rel not in self.names:
            if "O_CREAT" in flags:
                self.do_creat(rel, no, raw)
            return
        ino = self.names[rel]
        if "O_TRUNC" in flags and ino not in self.dirs and self.size.get(ino, 0) > 0:
            self.size[ino] = 0
            self.emit({"op": "trunc", "ino": ino, "size": 0, "path": rel}, no, raw)

    def sc_openat(self, no, pid, sc, args, ret, retpath, raw):
        name = string_arg(args[1])
        path = self.resolve(pid, args[0], name) if name is not None else None
        self._open(no, pid, path, args[2], ret, retpath, raw)

    def sc_open(self, no, pid, sc, args, ret, retpath, raw):
        name = string_arg(args[0])
        path = self.resolve(pid, None, name) if name is not None else None
        self._open(no, pid, path, args[1], ret, retpath, raw)

    def sc_creat(self, no, pid, sc, args, ret, retpath, raw):
        name = string_arg(args[0])
        self._open(no, pid, self.resolve(pid, None, name), "O_CREAT|O_TRUNC", ret, retpath, raw)

    def _dup(self, pid, old, new):
        if (pid, old) in self.pos:
            self.pos[(pid, new)] = self.pos[(pid, old)]

    def sc_dup(self, no, pid, sc, args, ret, retpath, raw):
        self._dup(pid, fd_path(args[0])[0], ret)

    sc_dup2 = sc_dup3 = sc_dup

    def _fd_target(self, arg):
        fd, path = fd_path(arg)
        rel = self.rel(path)
        if rel is None:
            return fd, path, None, None
        return fd, path, rel, self.ino_of(rel)

    def _write(self, no, pid, arg0, data, off, raw):
        fd, path, rel, ino = self._fd_target(arg0)
        if rel is None:
            if path is not None and os.path.dirname(os.path.normpath(path)) == self.marker_dir:
                self.emit({"op": "mark", "file": os.path.basename(path), "text": data}, no, raw)
            return
        if ino is None or ino in self.dirs:
            return
        if off is None:
            st = self.pos.get((pid, int(fd)) if fd.lstrip("-").isdigit() else None)
            if st is None or st[1]:
                off = self.size[ino]
            else:
                off = st[0]
            if st is not None:
                st[0] = off + len(data)
        before = self.size[ino]
        self.size[ino] = max(before, off + len(data))
        self.emit({"op": "write", "ino": ino, "off": off, "data": data, "ext": before, "path": rel}, no, raw)

    def sc_write(self, no, pid, sc, args, ret, retpath, raw):
        data = string_arg(args[1]) or b""
        self._write(no, pid, args[0], data[:ret], None, raw)

    def sc_pwrite64(self, no, pid, sc, args, ret, retpath, raw):
        data = string_arg(args[1]) or b""
        self._write(no, pid, args[0], data[:ret], int(args[3]), raw)

    def _iov(self, arg, ret):
        data = b"".join(unhex(m) for m in re.findall(r'iov_base="((?:[^"\\]|\\.)*)"', arg))
        return data[:ret]

    def sc_writev(self, no, pid, sc, args, ret, retpath, raw):
        self._write(no, pid, args[0], self._iov(args[1], ret), None, raw)

    def sc_pwritev(self, no, pid, sc, args, ret, retpath, raw):
        self._write(no, pid, args[0], self._iov(args[1], ret), int(args[3]), raw)

    sc_pwritev2 = sc_pwritev

    def _trunc(self, no, rel, ino, size, raw):
        if ino is None or ino in self.dirs:
            return
        self.size[ino] = size
        self.emit({"op": "trunc", "ino": ino, "size": size, "path": rel}, no, raw)

    def sc_ftruncate(self, no, pid, sc, args, ret, retpath, raw):
        fd, path, rel, ino = self._fd_target(args[0])
        if rel is not None:
            self._trunc(no, rel, ino, int(args[1]), raw)

    def sc_truncate(self, no, pid, sc, args, ret, retpath, raw):
        rel = self.rel(self.resolve(pid, None, string_arg(args[0])))
        if rel is not None:
            self._trunc(no, rel, self.ino_of(rel), int(args[1]), raw)

    def sc_fallocate(self, no, pid, sc, args, ret, retpath, raw):
        fd, path, rel, ino = self._fd_target(args[0])
        if rel is None or ino is None or "KEEP_SIZE" in args[1] or "PUNCH" in args[1]:
            return
        off, ln = int(args[2]), int(args[3])
        if off + ln > self.size[ino]:
            before = self.size[ino]
            self.size[ino] = off + ln
            self.emit({"op": "write", "ino": ino, "off": before, "data": bytes(off + ln - before), "ext": before,
                       "path": rel}, no, raw)

    def sc_fsync(self, no, pid, sc, args, ret, retpath, raw):
        fd, path, rel, ino = self._fd_target(args[0])
        if rel is not None and ino is not None:
            self.emit({"op": "fsync", "ino": ino, "path": rel, "dir": ino in self.dirs}, no, raw)

    sc_fdatasync = sc_fsync

    def _rename(self, no, src, dst, raw):
        rs, rd = self.rel(src), self.rel(dst)
        if rs is None and rd is None:
            return
        if rs is None or rd is None:
            raise ValueError(f"trace line {no}: a rename across the traced folder's border: {raw}")
        if rs not in self.names:
            return
        if rd in self.names and rd != rs:
            self._unlink_name(rd)
        ino = self._unlink_name(rs)
        self.names[rd] = ino
        self.last_ino[rd] = ino
        self.emit({"op": "rename", "src": rs, "dst": rd, "ino": ino, "path": rs}, no, raw)

    def sc_rename(self, no, pid, sc, args, ret, retpath, raw):
        self._rename(no, self.resolve(pid, None, string_arg(args[0])), self.resolve(pid, None, string_arg(args[1])),
                     raw)

    def sc_renameat(self, no, pid, sc, args, ret, retpath, raw):
        self._rename(no, self.resolve(pid, args[0], string_arg(args[1])),
                     self.resolve(pid, args[2], string_arg(args[3])), raw)

    sc_renameat2 = sc_renameat

    def _unlink(self, no, path, raw):
        rel = self.rel(path)
        if rel is None or rel not in self.names:
            return
        ino = self._unlink_name(rel)
        self.emit({"op": "unlink", "path": rel, "ino": ino, "dir": ino in self.dirs}, no, raw)

    def sc_unlink(self, no, pid, sc, args, ret, retpath, raw):
        self._unlink(no, self.resolve(pid, None, string_arg(args[0])), raw)

    sc_rmdir = sc_unlink

    def sc_unlinkat(self, no, pid, sc, args, ret, retpath, raw):
        self._unlink(no, self.resolve(pid, args[0], string_arg(args[1])), raw)

    def sc_mkdir(self, no, pid, sc, args, ret, retpath, raw):
        rel = self.rel(self.resolve(pid, None, string_arg(args[0])))
        if rel is not None and rel not in self.names:
            self.do_creat(rel, no, raw, is_dir=True)

    def sc_mkdirat(self, no, pid, sc, args, ret, retpath, raw):
        rel = self.rel(self.resolve(pid, args[0], string_arg(args[1])))
        if rel is not None and rel not in self.names:
            self.do_creat(rel, no, raw, is_dir=True)

    def _link(self, no, src, dst, raw):
        rs, rd = self.rel(src), self.rel(dst)
        if rd is None or rs is None or rs not in self.names:
            return
        ino = self.names[rs]
        self.names[rd] = ino
        self.last_ino[rd] = ino
        self.emit({"op": "link", "path": rd, "ino": ino}, no, raw)

    def sc_link(self, no, pid, sc, args, ret, retpath, raw):
        self._link(no, self.resolve(pid, None, string_arg(args[0])), self.resolve(pid, None, string_arg(args[1])), raw)

    def sc_linkat(self, no, pid, sc, args, ret, retpath, raw):
        self._link(no, self.resolve(pid, args[0], string_arg(args[1])),
                   self.resolve(pid, args[2], string_arg(args[3])), raw)


def parse(trace_text, root, marker_dir, base_dirs=(), base_files=None):
    """Ops of a trace; `base_dirs` and `base_files` (rel path -> bytes: made before
    recording) come first as durable ops marked `base`."""
    rec = Recorder(root, marker_dir)
    for d in base_dirs:
        rec.do_creat(d, 0, f"mkdir({d}) before recording", is_dir=True)
        rec.ops[-1]["base"] = True
    for f, data in sorted((base_files or {}).items()):
        ino = rec.do_creat(f, 0, f"creat({f}) before recording")
        rec.ops[-1]["base"] = True
        if data:
            rec.size[ino] = len(data)
            rec.emit({"op": "write", "ino": ino, "off": 0, "data": data, "ext": 0, "path": f}, 0,
                     f"write({f}) before recording")
            rec.ops[-1]["base"] = True
    for no, pid, text in join_lines(trace_text):
        rec.feed(no, pid, text)
    return rec.ops, rec.dirs


def describe(op):
    """`syscall path offset len` (plus the trace line) of an op, for failure reports."""
    sc = op["raw"].split("(", 1)[0]
    if op["op"] == "write":
        return f"{sc} {op['path']} {op['off']} {len(op['data'])} (trace line {op['line']})"
    if op["op"] == "trunc":
        return f"{sc} {op['path']} {op['size']} 0 (trace line {op['line']})"
    if op["op"] == "rename":
        return f"{sc} {op['src']} -> {op['dst']} (trace line {op['line']})"
    return f"{sc} {op.get('path', '')} (trace line {op['line']})"
