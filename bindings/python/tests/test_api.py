"""The Python API: journals, drains, verify, status, readers, library loading."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import tributary
from conftest import HANG_GUARD, run_python, sidecar, target_lines, wait_for, wait_until_inside


def test_library_version_matches_package():
    assert tributary.ABI_VERSION == 3
    assert tributary.LIB_VERSION == tributary.__version__
    assert Path(tributary.LIB_PATH).is_file()


def test_append_returns_seqs_once_durable(tmp_path: Path):
    with tributary.Journal(tmp_path / "a.journal") as j:
        assert j.append(b"bytes") == 1
        assert j.append("str, UTF-8: \u00e9\u2603") == 2
        assert j.append(bytearray(b"bytearray")) == 3
        assert j.append(memoryview(b"memoryview")) == 4
        assert j.append(b"") == 5  # an empty line is a line
        with pytest.raises(TypeError):
            j.append(42)  # type: ignore[arg-type]
        b = j.backlog()
        assert (b.lines, b.last_seq, b.drained_seq) == (5, 5, 0)
        assert b.bytes == len(b"bytes") + len("str, UTF-8: \u00e9\u2603".encode()) + 9 + 10
        assert b.oldest_append_ms is not None and b.oldest_append_ms > 1_600_000_000_000


def test_lines_are_bytes_any_byte_but_newline(tmp_path: Path, target: Path):
    odd = [b"\x00nul", b"\xff\xfe invalid utf-8", b"cr\r", b"tab\t", b"", "\u00e9".encode()]
    with tributary.Journal(tmp_path / "a.journal") as j:
        for line in odd:
            j.append(line)
        tributary.drain(target, journals=[j])
    assert target_lines(target) == odd
    assert target.read_bytes() == b"".join(x + b"\n" for x in odd)


def test_append_many_is_one_batch_of_consecutive_seqs(tmp_path: Path):
    with tributary.Journal(tmp_path / "a.journal") as j:
        j.append("first")
        assert j.append_many([b"a", "b", b""]) == 2
        assert j.append_many(x for x in ["gen-1", "gen-2"]) == 5
        assert j.backlog().last_seq == 6


def test_append_keyed_stores_once_per_key(tmp_path: Path, target: Path):
    with tributary.Journal(tmp_path / "a.journal") as j:
        s1 = j.append_keyed("order-17", "charged 17")
        s2 = j.append_keyed(b"order-17", "charged 17 (retry)")
        s3 = j.append_keyed("order-18", "charged 18")
        assert s1 == s2 and s3 == s1 + 1
        tributary.drain(target, journals=[j])
    assert target_lines(target) == [b"charged 17", b"charged 18"]


def test_journal_options(tmp_path: Path):
    with tributary.Journal(
        tmp_path / "a.journal",
        durability="normal",
        max_line=8,
        max_backlog_bytes=100,
        full_wait=datetime.timedelta(milliseconds=10),
        key_retention=3600,
        busy_timeout=1.5,
    ) as j:
        assert j.durability == "normal" and j.max_line == 8
        assert j.append(b"12345678") == 1
        with pytest.raises(tributary.InvalidLineError):
            j.append(b"123456789")


def test_close_is_idempotent_and_a_closed_journal_refuses(tmp_path: Path):
    j = tributary.Journal(tmp_path / "a.journal")
    assert not j.closed and "a.journal" in repr(j)
    j.append("x")
    j.close()
    j.close()
    assert j.closed and "closed" in repr(j)
    with pytest.raises(tributary.InvalidArgumentError, match="closed"):
        j.append("y")
    with pytest.raises(tributary.InvalidArgumentError):
        j.backlog()


def test_journal_id_is_stable_across_reopen(tmp_path: Path):
    p = tmp_path / "a.journal"
    with tributary.Journal(p) as j:
        jid = j.id
        j.append("one")
    assert len(jid) == 32 and int(jid, 16) >= 0
    with tributary.Journal(str(p)) as j:
        assert j.id == jid
        assert j.append("two") == 2  # seqs continue
    assert oct(os.stat(p).st_mode & 0o777) == "0o600"


def test_paths_may_be_bytes_str_pathlike_and_invalid_utf8(tmp_path: Path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9-\xff"
    os.mkdir(raw)
    jp = raw + b"/a.journal"
    target = raw + b"/out.log"
    with tributary.Journal(jp) as j:
        j.append("from a latin-1 folder")
    assert tributary.init(target).created
    rep = tributary.drain(target, spool=raw)
    assert rep.lines == 1
    assert tributary.verify(target).consistent
    st = tributary.status(target, spool=raw)
    assert os.fsencode(st.journals[0].path) == jp
    assert target_lines(target) == [b"from a latin-1 folder"]


def test_drain_by_journal_paths_objects_and_spool(spool: Path, target: Path):
    a = tributary.Journal(spool / "a.journal")
    b = tributary.Journal(spool / "b.journal")
    a.append("a1")
    a.append("a2")
    b.append("b1")
    rep = tributary.drain(target, journals=[a, str(spool / "b.journal")])
    assert isinstance(rep, tributary.DrainReport)
    assert (rep.rounds, rep.lines, rep.bytes, rep.journals, rep.repaired_tail_bytes) == (1, 3, 9, 2, 0)
    assert rep.epoch == 3  # 1: init's first manifest, 2: this round's intent, 3: its commit
    assert tributary.drain(target, spool=spool).lines == 0
    b.append("b2")
    assert tributary.drain(target, spool=spool, lock_timeout=5, max_round_bytes=1 << 20).lines == 1
    assert sorted(target_lines(target)) == [b"a1", b"a2", b"b1", b"b2"]
    assert a.backlog().lines == 0 and a.backlog().drained_seq == 2
    a.close()
    b.close()


def test_init_creates_an_empty_target(new_target: Path):
    rep = tributary.init(new_target)
    assert isinstance(rep, tributary.InitReport)
    assert rep.created and rep.adopted_lines == 0 and not rep.upgraded and not rep.rebound
    assert len(rep.target_id) == 32 and int(rep.target_id, 16) >= 0
    assert new_target.exists() and new_target.stat().st_size == 0
    st = tributary.status(new_target)
    assert st.has_manifest and st.target_id == rep.target_id and st.committed_lines == 0
    assert tributary.drain(new_target).lines == 0


def test_drain_with_create_and_no_journals_creates_the_target(new_target: Path):
    rep = tributary.drain(new_target, create=True)
    assert rep.lines == 0 and rep.rounds == 0
    assert new_target.exists() and new_target.stat().st_size == 0
    assert tributary.status(new_target).has_manifest


def test_drain_rounds_are_bounded(tmp_path: Path, target: Path):
    with tributary.Journal(tmp_path / "a.journal") as j:
        j.append_many([b"x" * 99] * 50)  # 5000 bytes with newlines
        rep = tributary.drain(target, journals=[j], max_round_bytes=1000, max_line=100)
    assert rep.lines == 50 and rep.rounds == 5


def test_verify_reports_consistency_tail_and_damage(tmp_path: Path, target: Path):
    jp = tmp_path / "a.journal"
    with tributary.Journal(jp) as j:
        j.append_many(["one", "two"])
        tributary.drain(target, journals=[j])
        v = tributary.verify(target)
        assert v.consistent and v.problems == ()
        assert (v.committed_len, v.committed_lines, v.target_len, v.uncommitted_tail_bytes) == (8, 2, 8, 0)
        # A drain killed after writing its round, before committing it: the round
        # announced those bytes (its intent), so they are a crashed round's tail, not
        # damage, and the next drain cuts them and writes the line again, once.
        j.append("three")
        r = run_python(
            """
            import sys, tributary
            tributary.drain(sys.argv[1], journals=[sys.argv[2]])
            """,
            str(target),
            str(jp),
            env={"TRIBUTARY_FAILPOINTS": "drain.after_write=kill"},
        )
        assert r.returncode == -signal.SIGKILL, r.stderr
        v = tributary.verify(target)
        assert v.consistent and v.problems == ()
        assert (v.committed_len, v.target_len, v.uncommitted_tail_bytes) == (8, 14, 6)
        rep = tributary.drain(target, journals=[j])
        assert (rep.lines, rep.repaired_tail_bytes) == (1, 6)
    assert target_lines(target) == [b"one", b"two", b"three"]
    # Bytes that no drain announced (another program appended): inconsistent.
    with open(target, "ab") as f:
        f.write(b"foreign line\n")
    v = tributary.verify(target)
    assert not v.consistent and v.uncommitted_tail_bytes == 13 and v.target_len == 27
    assert len(v.problems) == 1 and "not written by a drain round" in v.problems[0]
    os.truncate(target, 14)
    with open(target, "r+b") as f:
        f.write(b"X")
    v = tributary.verify(target)
    assert not v.consistent
    assert len(v.problems) == 1 and "CRC" in v.problems[0]


def test_status_before_and_after_drains(spool: Path, new_target: Path):
    target = new_target
    st = tributary.status(target)
    assert not st.has_manifest and st.target_len is None and st.epoch is None and st.manifest_format is None
    assert st.watermarks == () and st.journals == ()
    assert not target.exists() and not sidecar(target).exists()  # status created nothing
    created = tributary.init(target)
    st = tributary.status(target)
    assert st.has_manifest and st.target_id == created.target_id and st.epoch == 1
    assert st.manifest_format == 3, "a new target's manifest is made in format 3 (deltas)"
    assert (st.committed_lines, st.committed_len, st.target_len) == (0, 0, 0)
    with tributary.Journal(spool / "a.journal") as a, tributary.Journal(spool / "b.journal") as b:
        a.append("a1")
        tributary.drain(target, spool=spool)
        b.append("b1")
        b.append("b2")
        st = tributary.status(target, spool=spool)
        assert st.has_manifest and st.committed_lines == 1 and st.committed_len == 3 and st.target_len == 3
        assert len(st.target_id or "") == 32 and st.epoch == 3 and isinstance(st.committed_crc, int)
        assert [(w.journal_id, w.last_seq) for w in st.watermarks] == [(a.id, 1)]
        by_path = {Path(js.path).name: js for js in st.journals}
        assert by_path["a.journal"].watermark == 1 and by_path["a.journal"].backlog.lines == 0
        assert by_path["b.journal"].watermark == 0 and by_path["b.journal"].backlog.lines == 2
        assert by_path["b.journal"].journal_id == b.id
        assert by_path["b.journal"].backlog.oldest_append_ms is not None


def test_status_reports_a_format_2_target_as_such(new_target: Path):
    # made by the CLI (the bindings' init makes the default format): what hosts on
    # builds older than 0.2.0 can drain
    cli = os.environ.get("TRIBUTARY_CLI") or str(Path(__file__).resolve().parents[3] / "target" / "release" / "tributary")
    subprocess.run([cli, "init", "--target", str(new_target), "--manifest-format", "2"], check=True, capture_output=True)
    assert tributary.status(new_target).manifest_format == 2


def test_reader_reads_committed_lines_from_a_cursor(tmp_path: Path, target: Path):
    with tributary.Journal(tmp_path / "a.journal") as j:
        j.append_many(["l1", "l2", "l3"])
        tributary.drain(target, journals=[j])
    with tributary.Reader(target) as r:
        assert r.offset == 0
        assert next(r) == b"l1"
        cursor = r.offset
        assert cursor == 3
        assert list(r) == [b"l2", b"l3"]
        assert r.offset == 9
        with open(target, "ab") as f:
            f.write(b"uncommitted\n")  # a crashed drain's tail: never shown
        assert r.read_line() is None
        # A timeout is waited out, not cut short: a lower bound only, which a loaded
        # machine cannot break (it makes the wait longer, never shorter). The margin
        # is for read_line's waits, counted in whole milliseconds.
        t0 = time.monotonic()
        assert r.read_line(timeout=0.15) is None
        assert time.monotonic() - t0 >= 0.14
    with tributary.Reader(target, offset=cursor) as r:
        assert r.lines() == [b"l2", b"l3"]
    assert r.closed and "closed" in repr(r)
    with pytest.raises(tributary.InvalidArgumentError):
        r.read_line()


def test_reader_of_a_target_never_drained_is_empty(target: Path, new_target: Path):
    with tributary.Reader(target) as r:
        assert list(r) == []
    with tributary.Reader(new_target) as r:  # not even initialised: nothing yet
        assert list(r) == []
    assert not new_target.exists() and not sidecar(new_target).exists()  # a reader creates nothing


def test_reader_follow_sees_lines_committed_later(tmp_path: Path, target: Path):
    j = tributary.Journal(tmp_path / "a.journal")
    got = []

    def follow():
        with tributary.Reader(target, follow=True, poll_interval=0.02) as r:
            for line in r:
                got.append(line)
                if line == b"stop":
                    return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    for i in range(5):
        j.append(f"line {i}")
        tributary.drain(target, journals=[j])
        # the follower has this line before the next one is even appended
        wait_for(lambda: len(got) == i + 1, what=f"the follower to see line {i}")
    j.append("stop")
    tributary.drain(target, journals=[j])
    t.join(timeout=HANG_GUARD)
    assert not t.is_alive()
    assert got == [f"line {i}".encode() for i in range(5)] + [b"stop"]
    j.close()


def test_read_line_waits_for_a_drain(tmp_path: Path, target: Path):
    j = tributary.Journal(tmp_path / "a.journal")
    got = []
    with tributary.Reader(target) as r:
        # read_line waits in its thread (HANG_GUARD only ends a hang); once it is
        # waiting, a line is appended and drained, and read_line returns it.
        t = threading.Thread(target=lambda: got.append(r.read_line(timeout=HANG_GUARD)), daemon=True)
        t.start()
        wait_until_inside(t, "read_line")
        j.append("late")
        tributary.drain(target, journals=[j])
        t.join(timeout=HANG_GUARD)
        assert got == [b"late"]
    j.close()


def test_managed_rotation_and_cursors_across_it(tmp_path: Path, target: Path):
    with tributary.Journal(tmp_path / "a.journal") as j:
        j.append_many(["g1-a", "g1-b"])
        rep = tributary.drain(target, journals=[j], rotate_lines=2)
        assert rep.rotations == 0
        reader = tributary.Reader(target)
        assert next(reader) == b"g1-a"
        kept = reader.cursor
        tid = tributary.status(target).target_id
        assert kept == tributary.Cursor(1, 5, tid) and kept.generation == 1
        j.append("g2-a")
        rep = tributary.drain(target, journals=[j], rotate_lines=2)
        assert rep.rotations == 1 and rep.lines == 1
        assert Path(f"{target}.1").read_bytes() == b"g1-a\ng1-b\n"
        assert target.read_bytes() == b"g2-a\n"
        assert reader.lines() == [b"g1-b", b"g2-a"]  # on from generation 1 into 2
        assert reader.cursor == (2, 5, tid) and reader.offset == 5
        reader.close()
        with tributary.Reader(target, cursor=kept) as r:
            assert r.lines() == [b"g1-b", b"g2-a"]
        with tributary.Reader(target, cursor=tributary.Cursor(0, 0)) as r:
            assert r.lines() == [b"g1-a", b"g1-b", b"g2-a"]
        with tributary.Reader(target) as r:  # offset 0 of the current generation
            assert r.lines() == [b"g2-a"]
        with pytest.raises(tributary.InvalidArgumentError):
            tributary.Reader(target, cursor=(0, 3))
        with pytest.raises(tributary.InvalidArgumentError):
            tributary.Reader(target, 5, cursor=(1, 5))
        st = tributary.status(target)
        assert (st.generation, st.rotated_generations, st.committed_lines) == (2, 1, 1)
        v = tributary.verify(target)
        assert v.consistent and (v.generation, v.rotated_generations) == (2, 1)
        j.append("g2-b")
        tributary.drain(target, journals=[j], rotate_lines=2, retain_generations=1)
        j.append("g3-a")
        rep = tributary.drain(target, journals=[j], rotate_lines=2, retain_generations=1)
        assert rep.rotations == 1
        assert not Path(f"{target}.1").exists() and Path(f"{target}.2").exists()
        with pytest.raises(tributary.TributaryError):
            tributary.Reader(target, cursor=kept)  # generation 1 is no longer kept
    assert tributary.status(target).generation == 3


def test_library_search_reports_how_to_build_it():
    r = run_python(
        """
        import tributary
        """,
        env={"TRIBUTARY_LIB": "/nonexistent/libtributary.so"},
    )
    assert r.returncode != 0
    assert "LibraryNotFoundError" in r.stderr and "cargo build --release" in r.stderr


def test_tributary_lib_env_var_selects_the_library():
    r = run_python(
        """
        import tributary, sys
        print(tributary.LIB_PATH)
        """,
        env={"TRIBUTARY_LIB": str(tributary.LIB_PATH)},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tributary.LIB_PATH)


def test_every_header_function_has_a_ctypes_prototype():
    """Each function of include/tributary.h has argtypes/restype declared (when the
    tests run from the repository, where the header is)."""
    import re

    from tributary import _ffi

    header = Path(__file__).resolve().parents[3] / "include" / "tributary.h"
    if not header.is_file():
        import pytest

        pytest.skip("include/tributary.h not found next to these tests")
    names = set(re.findall(r"^[a-z][\w ]*?\**\b(trib_\w+)\(", header.read_text(), re.M))
    assert len(names) >= 25
    for name in sorted(names):
        fn = getattr(_ffi.lib, name)
        assert fn.argtypes is not None, f"{name} has no argtypes"


def test_retire_drains_then_deletes_and_a_live_writer_is_told(spool: Path, target: Path):
    path = spool / "job.journal"
    writer = tributary.Journal(path)
    writer.append_many([b"one", b"two"])
    assert tributary.retire(target, [path]) == 1
    assert not any(spool.iterdir()), list(spool.iterdir())
    with pytest.raises(tributary.JournalGoneError) as e:
        writer.append(b"too late")
    assert "reopen" in str(e.value)
    writer.close()
    assert target_lines(target) == [b"one", b"two"]
    # retired before: named, and the other journal given is retired all the same
    other = spool / "other.journal"
    with tributary.Journal(other) as j:
        j.append(b"three")
    with pytest.raises(tributary.NotAJournalError) as e:
        tributary.retire(target, [path, other])
    assert "job.journal" in str(e.value) and "retired before" in str(e.value)
    assert not other.exists()
    assert target_lines(target) == [b"one", b"two", b"three"]
    with pytest.raises(tributary.InvalidArgumentError):
        tributary.retire(target, [])


def test_a_journal_holding_keys_is_retired_only_when_told_to_forget_them(spool: Path, target: Path):
    path = spool / "keyed.journal"
    with tributary.Journal(path) as j:
        j.append_keyed(b"order-1", b"one")
    with pytest.raises(tributary.InvalidArgumentError) as e:
        tributary.retire(target, [path])
    # the advice names this binding's way to do it
    assert "idempotency key" in str(e.value) and "forget_keys=True" in str(e.value)
    assert path.exists()
    with pytest.raises(tributary.InvalidArgumentError):
        tributary.retire(target, [path], forget_keys="no")  # truthy, but not a yes
    assert path.exists()
    assert tributary.retire(target, [path], forget_keys=True) == 1
    assert not path.exists()
    assert target_lines(target) == [b"one"]
