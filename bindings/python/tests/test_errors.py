"""Every exception class, raised by a real situation on real files."""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tributary
from tributary import _ffi
from conftest import HANG_GUARD, run_python, sidecar, target_lines, wait_for


def test_every_result_code_has_its_own_class():
    codes = list(range(1, 19)) + [100]
    classes = {tributary.errors.error_class(c) for c in codes}
    assert len(classes) == len(codes)
    for code in codes:
        cls = tributary.errors.error_class(code)
        assert issubclass(cls, tributary.TributaryError)
        assert cls.code == code
        # the class's kind is the library's own name for the code
        assert _ffi.lib.trib_result_name(code).decode() == cls.kind
    assert tributary.errors.error_class(12345) is tributary.TributaryError
    assert issubclass(tributary.CorruptManifestError, tributary.CorruptError)
    assert issubclass(tributary.CorruptJournalRowError, tributary.CorruptError)
    assert issubclass(tributary.InvalidLineError, ValueError)
    assert issubclass(tributary.InvalidArgumentError, ValueError)


def test_invalid_line_stores_nothing(tmp_path: Path):
    with tributary.Journal(tmp_path / "a.journal", max_line=10) as j:
        j.append("ok")
        with pytest.raises(tributary.InvalidLineError) as e:
            j.append("two\nlines")
        assert e.value.kind == "invalid_line" and e.value.code == 1 and e.value.line_index == 0
        assert "newline" in str(e.value) and "nothing of this call was stored" in e.value.message
        with pytest.raises(tributary.InvalidLineError, match="longer than the maximum of 10"):
            j.append(b"x" * 11)
        with pytest.raises(tributary.InvalidLineError) as e:
            j.append_many(["fine", "fine", "bad\n", "fine"])
        assert e.value.line_index == 2
        with pytest.raises(tributary.InvalidLineError):
            j.append_keyed("k", "bad\n")
        assert j.backlog().lines == 1 and j.backlog().last_seq == 1


def test_a_str_utf8_cannot_encode_is_an_invalid_line_and_stores_nothing(tmp_path: Path):
    lone = "caf\u00e9 \udcff"  # a lone surrogate: what os.fsdecode makes of a non-UTF-8 name
    with tributary.Journal(tmp_path / "a.journal") as j, tributary.Appender(tmp_path / "b.journal") as a:
        with pytest.raises(tributary.InvalidLineError, match="cannot encode") as e:
            j.append(lone)
        assert e.value.line_index == 0 and "surrogateescape" in str(e.value)
        with pytest.raises(tributary.InvalidLineError) as e:
            j.append_many(["fine", lone])
        assert e.value.line_index == 1
        with pytest.raises(tributary.InvalidLineError):
            a.push(lone)
        with pytest.raises(tributary.InvalidArgumentError, match="key"):
            j.append_keyed(lone, "fine")
        assert j.backlog().lines == 0 and a.flush() is None
        j.append(lone.encode("utf-8", "surrogateescape"))  # what the message says to do
        assert j.backlog().lines == 1


def test_invalid_argument(tmp_path: Path, target: Path):
    with tributary.Journal(tmp_path / "a.journal") as j:
        with pytest.raises(tributary.InvalidArgumentError, match="empty batch"):
            j.append_many([])
        with pytest.raises(tributary.InvalidArgumentError, match="key"):
            j.append_keyed(b"", "line")
    with pytest.raises(tributary.InvalidArgumentError, match="durability"):
        tributary.Journal(tmp_path / "b.journal", durability="sometimes")
    with pytest.raises(tributary.InvalidArgumentError, match="max_line"):
        tributary.Journal(tmp_path / "b.journal", max_line=0)
    with pytest.raises(tributary.InvalidArgumentError, match="max_backlog_bytes"):
        tributary.Journal(tmp_path / "b.journal", max_backlog_bytes=0)
    with pytest.raises(tributary.InvalidArgumentError, match="busy_timeout"):
        tributary.Journal(tmp_path / "b.journal", busy_timeout=-1)
    with pytest.raises(tributary.InvalidArgumentError, match="busy_timeout_ms"):
        tributary.Journal(tmp_path / "b.journal", busy_timeout=10**9)  # beyond SQLite's int
    with pytest.raises(tributary.InvalidArgumentError, match="NUL"):
        tributary.Journal(str(tmp_path / "nul\0.journal"))
    with pytest.raises(tributary.InvalidArgumentError, match="empty path"):
        tributary.Journal("")
    with pytest.raises(tributary.InvalidArgumentError, match="not both"):
        tributary.drain(target, journals=[tmp_path / "a.journal"], spool=tmp_path)
    with pytest.raises(tributary.InvalidArgumentError, match="never created with `tributary init`"):
        tributary.verify(tmp_path / "never-initialised.log")
    plain = tmp_path / "plain.log"  # a file, but not a tributary target
    plain.write_bytes(b"a line\n")
    with pytest.raises(tributary.InvalidArgumentError, match="never created with `tributary init`"):
        tributary.verify(plain)
    with tributary.Journal(tmp_path / "a.journal") as j:
        j.append("abc")
        tributary.drain(target, journals=[j])
    with pytest.raises(tributary.InvalidArgumentError, match="not at the start of a line"):
        tributary.Reader(target, offset=1)
    with pytest.raises(tributary.InvalidArgumentError, match="beyond the committed length"):
        tributary.Reader(target, offset=100)
    with pytest.raises(tributary.InvalidArgumentError):
        tributary.Reader(target, offset=-1)
    with pytest.raises(tributary.InvalidArgumentError, match="max_round_bytes"):
        tributary.drain(target, max_round_bytes=0)


def test_journal_full_then_room_after_a_drain(tmp_path: Path, target: Path):
    with tributary.Journal(tmp_path / "a.journal", max_backlog_bytes=10) as j:
        j.append(b"12345678")
        with pytest.raises(tributary.JournalFullError) as e:
            j.append(b"12345678")
        assert e.value.kind == "journal_full" and "nothing of this call was stored" in str(e.value)
        with pytest.raises(tributary.JournalFullError):
            j.append_many([b"a", b"bc"])
        tributary.drain(target, journals=[j])
        assert j.append(b"12345678") == 2
    with tributary.Journal(tmp_path / "a.journal", max_backlog_bytes=10, full_wait=0.1) as j:
        with pytest.raises(tributary.JournalFullError):
            j.append(b"12345678")
    assert target_lines(target) == [b"12345678"]


def test_lock_timeout(target: Path):
    lock = Path(str(target) + ".tributary") / "lock"
    fd = os.open(lock, os.O_RDWR)
    try:
        # a POSIX record lock conflicts with the OFD lock tributary takes
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(tributary.LockTimeoutError, match="not granted within"):
            tributary.drain(target, lock_timeout=0.1)
    finally:
        os.close(fd)
    tributary.drain(target, lock_timeout=1)


def test_lock_lost_commits_nothing(tmp_path: Path, target: Path):
    """A drain loses its lock after writing and fsyncing its round, before committing
    it (failpoint drain.lose_lock, held until this test lets it go on), as an expired
    lease or a remounted share would make it; meanwhile another drain takes the lock,
    cuts the first one's bytes and commits. The first must notice and commit nothing;
    nothing is lost or duplicated afterwards."""
    fp = tmp_path / "failpoints"
    fp.mkdir()
    j1 = tributary.Journal(tmp_path / "one.journal")
    j2 = tributary.Journal(tmp_path / "two.journal")
    j1.append("from the drain that lost its lock")
    j2.append("from the other drain")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, tributary
                try:
                    tributary.drain(sys.argv[1], journals=[sys.argv[2]])
                    print("committed")
                except tributary.LockLostError as e:
                    print("lock_lost", e.code)
                """
            ),
            str(target),
            j1.path,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TRIBUTARY_FAILPOINTS": "drain.lose_lock=hold", "TRIBUTARY_FAILPOINT_DIR": str(fp)},
    )
    reached = fp / "drain.lose_lock.reached"
    try:
        wait_for(reached.exists, what="the first drain to lose its lock")
        assert tributary.drain(target, journals=[j2]).lines == 1  # the lock is free: the child lost it
    finally:
        reached.unlink(missing_ok=True)  # let the first drain go on (and fail)
    out, _ = child.communicate(timeout=HANG_GUARD)
    assert out.split() == ["lock_lost", "5"]
    assert tributary.drain(target, journals=[j1, j2]).lines == 1
    assert target_lines(target) == [b"from the other drain", b"from the drain that lost its lock"]
    assert tributary.verify(target).consistent
    j1.close()
    j2.close()


def test_corrupt_manifest(tmp_path: Path, target: Path):
    with tributary.Journal(tmp_path / "a.journal") as j:
        j.append("x")
        tributary.drain(target, journals=[j])
    # The manifest lives in two CRC-checked slots of the lock file (A at 0, B at 2 MiB,
    # each a 16-byte header then the text): a damaged slot falls back to the other one,
    # so damage both, as a failing disk or a bad copy of the lock file would.
    lock = sidecar(target) / "lock"
    with open(lock, "r+b") as f:
        for slot in (0, 2 << 20):
            f.seek(slot + 16 + 20)
            byte = f.read(1)
            f.seek(slot + 16 + 20)
            f.write(bytes([byte[0] ^ 1]))
    for action in (
        lambda: tributary.verify(target),
        lambda: tributary.drain(target),
        lambda: tributary.status(target),
        lambda: tributary.Reader(target),
    ):
        with pytest.raises(tributary.CorruptManifestError, match="will not replace it") as e:
            action()
        assert isinstance(e.value, tributary.CorruptError) and e.value.kind == "corrupt_manifest"


def test_corrupt_journal_row(tmp_path: Path, target: Path):
    jp = tmp_path / "a.journal"
    with tributary.Journal(jp) as j:
        j.append_many(["good", "about to rot", "after"])
    # Flip a byte of the stored line in the file itself, as a failing disk would (the
    # last close checkpointed the WAL into the main file); its CRC no longer matches.
    data = jp.read_bytes()
    assert data.count(b"about to rot") >= 1
    jp.write_bytes(data.replace(b"about to rot", b"about to r0t"))
    with pytest.raises(tributary.CorruptJournalRowError, match="seq 2") as e:
        tributary.drain(target, journals=[jp])
    assert isinstance(e.value, tributary.CorruptError)
    assert target_lines(target) == []  # stopped before it: nothing of that round committed


def test_target_truncated(tmp_path: Path, target: Path):
    with tributary.Journal(tmp_path / "a.journal") as j:
        j.append_many(["one", "two"])
        tributary.drain(target, journals=[j])
        reader = tributary.Reader(target)
        os.truncate(target, 3)
        j.append("three")
        with pytest.raises(tributary.TargetTruncatedError, match="behind tributary's back"):
            tributary.drain(target, journals=[j])
        with pytest.raises(tributary.TargetTruncatedError):
            reader.lines()
        reader.close()
    assert target.stat().st_size == 3  # nothing was touched


def test_unexpected_tail(tmp_path: Path, target: Path):
    """Bytes after the committed part that no drain round announced (another program's
    ``>>``, or a manifest older than the target) are refused, even one whole line."""
    with tributary.Journal(tmp_path / "a.journal") as j:
        j.append("committed")
        tributary.drain(target, journals=[j])
        with open(target, "ab") as f:
            f.write(b"a foreign line\n")
        j.append("waiting")
        with pytest.raises(tributary.UnexpectedTailError, match="no drain round") as e:
            tributary.drain(target, journals=[j])
        assert e.value.code == 9 and "Nothing was touched" in str(e.value)
        assert target.read_bytes() == b"committed\na foreign line\n"
        assert j.backlog().lines == 1  # the waiting line stays in its journal


def test_torn_target(new_target: Path):
    target = new_target
    target.write_bytes(b"a whole line\nand a partial one")
    with pytest.raises(tributary.TornTargetError, match="partial"):
        tributary.init(target)
    with pytest.raises(tributary.TornTargetError, match="partial"):
        tributary.drain(target, create=True)
    target.write_bytes(b"a whole line\n")
    assert tributary.init(target).adopted_lines == 1
    assert tributary.verify(target).committed_lines == 1


def test_journal_restored_or_cloned(tmp_path: Path, target: Path):
    jp = tmp_path / "a.journal"
    with tributary.Journal(jp) as j:
        j.append("one")
    shutil.copy(jp, tmp_path / "old.journal")  # a backup
    shutil.copy(jp, tmp_path / "clone.journal")
    with tributary.Journal(jp) as j:
        j.append("two")
    with pytest.raises(tributary.JournalRestoredError, match="same journal id"):
        tributary.drain(target, journals=[jp, tmp_path / "clone.journal"])
    tributary.drain(target, journals=[jp])
    shutil.copy(tmp_path / "old.journal", jp)  # restore the backup over the live journal
    with pytest.raises(tributary.JournalRestoredError, match="restored from an older copy"):
        tributary.drain(target, journals=[jp])
    assert target_lines(target) == [b"one", b"two"]


def test_journal_foreign(tmp_path: Path):
    tributary.init(tmp_path / "first.log")
    tributary.init(tmp_path / "second.log")
    with tributary.Journal(tmp_path / "a.journal") as j:
        j.append("one")
        tributary.drain(tmp_path / "first.log", journals=[j])
        j.append("two")
        with pytest.raises(tributary.JournalForeignError, match="another target"):
            tributary.drain(tmp_path / "second.log", journals=[j])


def test_unsafe_filesystem(target: Path):
    folder = sidecar(target)
    os.chmod(folder, 0o777)
    try:
        with pytest.raises(tributary.UnsafeFilesystemError, match="world-writable"):
            tributary.drain(target)
    finally:
        os.chmod(folder, 0o755)


def test_not_a_journal(tmp_path: Path):
    junk = tmp_path / "junk.journal"
    junk.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(tributary.NotAJournalError):
        tributary.Journal(junk)
    other = tmp_path / "other.journal"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE unrelated (x)")
    con.commit()
    con.close()
    with pytest.raises(tributary.NotAJournalError, match="without tributary's tables"):
        tributary.Journal(other)


def test_io_error(tmp_path: Path, target: Path):
    with pytest.raises(tributary.IoError, match="No such file or directory"):
        tributary.Journal(tmp_path / "missing-folder" / "a.journal")
    with pytest.raises(tributary.IoError):
        tributary.drain(target, spool=tmp_path / "missing-spool")


def test_sqlite_error_when_the_journal_stays_locked(tmp_path: Path):
    """Another process holds the journal's SQLite write lock past the busy timeout.

    The holder keeps the lock until this test kills it (not for some seconds it
    assumes are enough). The append runs in a fresh interpreter, which opens no
    journal with the default busy timeout of 30 s.
    """
    jp = tmp_path / "a.journal"
    with tributary.Journal(jp) as j:
        j.append("before")
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    """
                    import sqlite3, sys
                    c = sqlite3.connect(sys.argv[1], isolation_level=None)
                    c.execute("BEGIN EXCLUSIVE")
                    print("locked", flush=True)
                    sys.stdin.read()  # holds the lock until killed
                    """
                ),
                str(jp),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout.readline().strip() == "locked"
            r = run_python(
                """
                import sys, time, tributary
                j = tributary.Journal(sys.argv[1], busy_timeout=0.2)
                t = time.monotonic()
                try:
                    j.append("while locked")
                    print("appended")
                except tributary.SqliteError as e:
                    print("sqlite", e.kind, e.code, round(time.monotonic() - t, 1), "locked" in str(e))
                """,
                str(jp),
            )
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.communicate()  # reaps it and closes its pipes
        assert r.returncode == 0, r.stderr
        word, kind, code, waited, says_locked = r.stdout.split()
        assert (word, kind, code, says_locked) == ("sqlite", "sqlite", "16", "True")
        # It gave up after its own busy timeout (0.2 s), not the 30 s default: that
        # one cannot end in under 30 s, however idle or loaded the machine.
        assert float(waited) < 30
        assert j.append("after") == 2
        assert j.backlog().lines == 2


def test_panic_is_caught_at_the_boundary(capfd):
    with pytest.raises(tributary.PanicError, match="trib_debug_panic was called") as e:
        _ffi.debug_panic()
    assert e.value.code == 100 and e.value.kind == "panic"
    capfd.readouterr()  # the Rust panic hook's message on stderr


def test_a_failed_call_leaves_outputs_alone(tmp_path: Path):
    """At the C level: on failure the out-parameters are not written."""
    seq = ctypes.c_uint64(777)
    err = ctypes.c_void_p()
    rc = _ffi.lib.trib_journal_append(None, b"x", 1, ctypes.byref(seq), ctypes.byref(err))
    assert rc == tributary.InvalidArgumentError.code and seq.value == 777
    assert _ffi.lib.trib_error_kind(err) == rc
    assert b"`journal` is NULL" in _ffi.lib.trib_error_message(err)
    _ffi.lib.trib_error_free(err)


def test_ints_past_64_bits_are_refused_not_wrapped(tmp_path: Path, target: Path):
    """ctypes wrapped them silently: a cursor of generation 2**64 read from the start,
    `max_line=2**64 + 3` refused a 10-byte line as "longer than 3", an infinite wait
    raised a bare OverflowError (found by outside testers)."""
    with pytest.raises(tributary.InvalidArgumentError, match="at most"):
        tributary.Journal(tmp_path / "a.journal", max_line=2**64 + 3)
    with pytest.raises(tributary.InvalidArgumentError, match="at most"):
        tributary.Reader(target, 2**64 + 5)
    with pytest.raises(tributary.InvalidArgumentError, match="at most"):
        tributary.Reader(target, cursor=tributary.Cursor(2**64, 0))
    with pytest.raises(tributary.InvalidArgumentError, match="at most"):
        tributary.Journal(tmp_path / "b.journal", full_wait=float("inf"))
    assert not (tmp_path / "a.journal").exists() and not (tmp_path / "b.journal").exists()


def test_one_str_where_a_collection_belongs_is_a_type_error(tmp_path: Path, target: Path):
    """`append_many("hello")` stored five one-letter lines; `drain(journals="a.journal")`
    tried to drain "/", "t", "m", ... (found by an outside tester)."""
    j = tributary.Journal(tmp_path / "a.journal")
    with pytest.raises(TypeError, match="collection"):
        j.append_many("hello")
    with pytest.raises(TypeError, match="collection"):
        tributary.drain(target, journals=str(tmp_path / "a.journal"))
    assert j.backlog().last_seq == 0, "nothing was stored"
    j.close()


def test_a_junk_file_in_the_spool_does_not_keep_the_others_from_draining(tmp_path: Path, target: Path):
    # Found by an outside tester: drain(spool=) drained nothing at all.
    spool = tmp_path / "spool"
    spool.mkdir()
    with tributary.Journal(spool / "b-good.journal") as j:
        j.append_many(["one", "two"])
    (spool / "a-junk.journal").write_bytes(b"not sqlite")
    with pytest.raises(tributary.NotAJournalError) as e:
        tributary.drain(target, spool=spool)
    assert "a-junk.journal" in str(e.value)
    assert target_lines(target) == [b"one", b"two"]
