"""Explicit creation (docs/design.md, rule 5): ``tributary.init`` creates a target once;
a drain never creates one unless told to (``create=True``), so a target that was never
initialised, or whose share is not mounted, is ``TargetMissingError`` and nothing is
created or lost."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import tributary
from conftest import sidecar, target_lines


def test_a_drain_into_a_target_never_initialised_creates_nothing_and_keeps_the_lines(tmp_path: Path, spool: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    target = shared / "app.log"
    jp = spool / "a.journal"
    with tributary.Journal(jp) as j:
        j.append_many(["one", "two"])
        for what, refused in (
            ("drain of journals", lambda: tributary.drain(target, journals=[j])),
            ("drain of a spool", lambda: tributary.drain(target, spool=spool)),
            ("drain of nothing", lambda: tributary.drain(target)),
            ("retire", lambda: tributary.retire(target, [j])),
        ):
            with pytest.raises(tributary.TargetMissingError, match="tributary init") as e:
                refused()
            assert isinstance(e.value, tributary.TributaryError)
            assert (e.value.code, e.value.kind) == (18, "target_missing"), what
            assert "Nothing was created" in str(e.value), what
            # no target file, no <target>.tributary folder: nothing at all
            assert list(shared.iterdir()) == [], what
            assert not target.exists() and not sidecar(target).exists(), what
            b = j.backlog()
            assert (b.lines, b.last_seq, b.drained_seq) == (2, 2, 0), what
        assert jp.exists()  # retire deleted nothing
        st = tributary.status(target, spool=spool)
        assert not st.has_manifest and st.journals[0].backlog.lines == 2

        created = tributary.init(target)
        assert created.created and created.adopted_lines == 0
        rep = tributary.drain(target, journals=[j])
        assert (rep.lines, rep.rounds) == (2, 1)
        assert tributary.drain(target, spool=spool).lines == 0  # exactly once
        b = j.backlog()
        assert (b.lines, b.drained_seq) == (0, 2)
    assert target.read_bytes() == b"one\ntwo\n"
    assert target_lines(target) == [b"one", b"two"]
    v = tributary.verify(target)
    assert v.consistent and v.committed_lines == 2


def test_init_is_idempotent_and_adopts_an_existing_files_lines(tmp_path: Path):
    target = tmp_path / "app.log"
    before = b"written before tributary\nby a plain >>\n"
    target.write_bytes(before)
    first = tributary.init(target)
    assert first.created and first.adopted_lines == 2
    assert not first.upgraded and not first.rebound
    assert len(first.target_id) == 32
    assert target.read_bytes() == before  # adopted as it is
    st = tributary.status(target)
    assert (st.committed_lines, st.committed_len, st.target_id) == (2, len(before), first.target_id)

    second = tributary.init(target)
    assert not second.created and second.adopted_lines == 0
    assert not second.upgraded and not second.rebound
    assert second.target_id == first.target_id

    with tributary.Journal(tmp_path / "a.journal") as j:
        j.append("from a journal")
        assert tributary.drain(target, journals=[j]).lines == 1
    third = tributary.init(tmp_path / "." / "app.log")  # the same target by another path
    assert not third.created and third.target_id == first.target_id
    assert target_lines(target) == [b"written before tributary", b"by a plain >>", b"from a journal"]
    v = tributary.verify(target)
    assert v.consistent and v.committed_lines == 3


def test_a_drain_into_an_empty_mount_point_refuses(tmp_path: Path, spool: Path):
    """The share is not mounted: the target's folder is there (the mount point) but
    empty, without the target or its sidecar. A drain must refuse, not start a new empty
    target on the local disk that the real one would never see."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    target = mnt / "app.log"
    target_id = tributary.init(target).target_id
    with tributary.Journal(spool / "host1.journal") as j:
        j.append("before the unmount")
        assert tributary.drain(target, journals=[j]).lines == 1

        unmounted = tmp_path / "the-share-while-unmounted"
        mnt.rename(unmounted)
        mnt.mkdir()  # the empty mount point
        j.append("while unmounted")
        for refused in (
            lambda: tributary.drain(target, journals=[j]),
            lambda: tributary.drain(target, spool=spool),
            lambda: tributary.retire(target, [j]),
        ):
            with pytest.raises(tributary.TargetMissingError, match="not mounted"):
                refused()
            assert list(mnt.iterdir()) == []
        assert j.backlog().lines == 1 and (spool / "host1.journal").exists()
        with tributary.Reader(target) as r:  # a reader sees nothing and creates nothing
            assert r.lines() == []
        assert list(mnt.iterdir()) == []

        mnt.rmdir()
        unmounted.rename(mnt)  # mounted again
        assert tributary.drain(target, journals=[j]).lines == 1
        assert j.backlog().lines == 0
    assert tributary.status(target).target_id == target_id
    assert target_lines(target) == [b"before the unmount", b"while unmounted"]


def test_a_replaced_target_file_is_refused_until_init_accepts_it(tmp_path: Path, target: Path):
    """A drain that finds another file (another inode) at the target's path refuses it:
    the share may be unmounted with a local file in its place. ``init`` accepts a file
    restored or copied on purpose if its committed part is the committed one."""
    with tributary.Journal(tmp_path / "a.journal") as j:
        j.append_many(["one", "two"])
        tributary.drain(target, journals=[j])
        copy = tmp_path / "copy.log"
        shutil.copy(target, copy)
        os.replace(copy, target)  # the same bytes, another file
        j.append("three")
        with pytest.raises(tributary.TargetMissingError, match="not the target this sidecar committed to"):
            tributary.drain(target, journals=[j])
        assert target.read_bytes() == b"one\ntwo\n" and j.backlog().lines == 1

        rep = tributary.init(target)
        assert rep.rebound and not rep.created
        assert tributary.drain(target, journals=[j]).lines == 1

        # A file whose committed part differs is refused by init too.
        other = tmp_path / "other.log"
        other.write_bytes(b"one\nTWO\nthree\n")
        os.replace(other, target)
        with pytest.raises(tributary.TargetMissingError, match="not the committed ones"):
            tributary.init(target)
        with pytest.raises(tributary.TargetMissingError):
            tributary.drain(target, journals=[j])
        assert target.read_bytes() == b"one\nTWO\nthree\n"


def test_drain_with_create_creates_once_then_drains_like_any_drain(tmp_path: Path, new_target: Path):
    target = new_target
    with tributary.Journal(tmp_path / "a.journal") as j:
        j.append("first")
        rep = tributary.drain(target, journals=[j], create=True)
        assert rep.lines == 1
        target_id = tributary.status(target).target_id
        assert target_id and len(target_id) == 32
        j.append("second")
        assert tributary.drain(target, journals=[j], create=True).lines == 1  # exists: no-op create
        j.append("third")
        assert tributary.drain(target, journals=[j]).lines == 1  # created: no flag needed
        again = tributary.init(target)
        assert not again.created and again.target_id == target_id
    assert tributary.status(target).target_id == target_id
    assert target_lines(target) == [b"first", b"second", b"third"]


def test_init_makes_or_switches_a_target_in_the_manifest_format_asked(tmp_path: Path, spool: Path):
    # The CLI's `init --manifest-format 2` (a target older builds drain too) had no
    # binding: a Python-only fleet could not make one.
    target = tmp_path / "out.log"
    assert tributary.init(target, manifest_format=2).created
    assert tributary.status(target).manifest_format == 2
    j = tributary.Journal(spool / "a.journal")
    j.append(b"one")
    tributary.drain(target, journals=[j])
    assert tributary.status(target).manifest_format == 2, "a drain keeps the target's format"
    assert not tributary.init(target, manifest_format=3).created
    assert tributary.status(target).manifest_format == 3
    tributary.init(target)  # None: keeps it
    assert tributary.status(target).manifest_format == 3
    for bad in (1, 4, True, "2"):
        with pytest.raises(tributary.InvalidArgumentError):
            tributary.init(target, manifest_format=bad)
    assert target_lines(target) == [b"one"]
    j.close()
