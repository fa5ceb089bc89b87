"""A cursor names one position of one target (design rule 7, issue 12 item 12).

A line's identity (``Reader.line_start``) is the same whether the line is read before
or after the rotation of its generation, so results keyed by it do not duplicate at a
generation boundary; a cursor carries its target's id and a reader of another target
refuses it; the bare ``generation:offset`` text of earlier versions is still read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Tuple

import pytest

import tributary

LINES = [f"line-{i:06d}" for i in range(6)]  # 12 bytes each with the "\n"


def new_target(tmp_path: Path, name: str, lines: List[str]) -> Path:
    """A target created with init and drained once with ``lines``."""
    target = tmp_path / name
    tributary.init(target)
    with tributary.Journal(tmp_path / f"{name}.journal") as j:
        j.append_many(lines)
        tributary.drain(target, journals=[j])
    return target


def read_with_starts(reader: tributary.Reader) -> List[Tuple[bytes, tributary.Cursor]]:
    out = []
    for line in reader:
        out.append((line, reader.line_start))
    return out


def test_a_line_has_the_same_start_whether_read_before_or_after_its_generation_rotates(tmp_path: Path):
    target = tmp_path / "a.log"
    tributary.init(target)
    with tributary.Journal(tmp_path / "a.journal") as j:
        j.append_many(LINES[:3])
        tributary.drain(target, journals=[j])
        early = tributary.Reader(target, cursor=tributary.Cursor(0, 0))
        assert early.line_start is None
        seen_early = read_with_starts(early)  # generation 1, while it is the current one
        assert early.cursor.generation == 1
        j.append_many(LINES[3:])
        assert tributary.drain(target, journals=[j], rotate_bytes=1).rotations == 1
        seen_early += read_with_starts(early)  # on into generation 2
        early.close()
    with tributary.Reader(target, cursor=tributary.Cursor(0, 0)) as late:
        seen_late = read_with_starts(late)
    assert [line for line, _ in seen_late] == [s.encode() for s in LINES]
    assert seen_early == seen_late
    tid = tributary.status(target).target_id
    assert seen_late[3][1] == tributary.Cursor(2, 0, tid)  # not the end of generation 1
    assert str(seen_late[3][1]) == f"{tid}:2:0"


def test_keyed_results_do_not_duplicate_across_a_rotation(tmp_path: Path):
    """The pattern of examples/pipeline.py: results keyed by their source line's start,
    the cursor saved after them; the processor reads the first lines after a rotation
    it has not seen yet, and is killed before saving its cursor."""
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    tributary.init(a)
    tributary.init(b)
    cursor_file = tmp_path / "processor.cursor"
    src = tributary.Journal(tmp_path / "events.journal")
    out = tributary.Journal(tmp_path / "results.journal")
    src.append_many(LINES[:3])
    tributary.drain(a, journals=[src])

    def load() -> tributary.Cursor:
        if cursor_file.exists():
            return tributary.Cursor.parse(json.loads(cursor_file.read_text())["cursor"])
        return tributary.Cursor(0, 0)

    def process(reader: tributary.Reader, save: bool) -> None:
        items = [(f"A:{reader.line_start}", f"processed {line.decode()}") for line in reader]
        for key, result in items:
            out.append_keyed(key, result)
        if save:
            cursor_file.write_text(json.dumps({"cursor": str(reader.cursor)}))

    run1 = tributary.Reader(a, cursor=load())
    process(run1, save=True)
    src.append_many(LINES[3:])
    assert tributary.drain(a, journals=[src], rotate_bytes=1).rotations == 1
    process(run1, save=False)  # killed before saving its cursor
    run1.close()
    with tributary.Reader(a, cursor=load()) as run2:  # restarted: replays lines 3..5
        process(run2, save=True)
    tributary.drain(b, journals=[out])
    with tributary.Reader(b) as r:
        results = r.lines()
    assert sorted(results) == sorted(f"processed {s}".encode() for s in LINES), "a result is missing or duplicated"
    src.close()
    out.close()


def test_a_cursor_kept_for_one_target_is_refused_by_a_reader_of_another(tmp_path: Path):
    a = new_target(tmp_path, "a.log", LINES[:5])
    b = new_target(tmp_path, "b.log", LINES[:5])  # same lines: A's offsets are line starts in B
    id_a, id_b = tributary.status(a).target_id, tributary.status(b).target_id
    with tributary.Reader(a) as r:
        r.read_line()
        r.read_line()
        kept = r.cursor
    assert (kept.generation, kept.offset) == (1, 24)
    for given in (kept, str(kept), tuple(kept)):
        with pytest.raises(tributary.InvalidArgumentError) as e:
            tributary.Reader(b, cursor=given)
        msg = str(e.value)
        assert f"belongs to target {id_a}" in msg and f"is target {id_b}" in msg, msg
        assert "cannot be used on another" in msg, msg
    assert kept == tributary.Cursor(1, 24, id_a)
    # Nothing of B was skipped; A's cursor still works on A.
    with tributary.Reader(b, cursor=tributary.Cursor(0, 0)) as r:
        assert r.lines() == [s.encode() for s in LINES[:5]]
    with tributary.Reader(a, cursor=kept) as r:
        assert r.read_line() == LINES[2].encode()


def test_a_reader_opened_before_the_target_exists_learns_its_id(tmp_path: Path):
    target = tmp_path / "later.log"
    with tributary.Reader(target, cursor=tributary.Cursor(0, 0)) as r:
        assert r.cursor == tributary.Cursor(1, 0) and r.cursor.target_id is None
        assert r.read_line() is None
        tributary.init(target)
        with tributary.Journal(tmp_path / "later.journal") as j:
            j.append("first")
            tributary.drain(target, journals=[j])
        assert r.read_line() == b"first"
        tid = tributary.status(target).target_id
        assert r.cursor == tributary.Cursor(1, 6, tid)
        assert r.line_start == tributary.Cursor(1, 0, tid)


def test_cursor_text_and_the_legacy_form(tmp_path: Path):
    tid = "0123456789abcdef0123456789abcdef"
    c = tributary.Cursor.parse(f"{tid}:3:1024")
    assert c == tributary.Cursor(3, 1024, tid) and str(c) == f"{tid}:3:1024"
    legacy = tributary.Cursor.parse("3:1024")
    assert legacy == tributary.Cursor(3, 1024) and legacy.target_id is None and str(legacy) == "3:1024"
    assert str(tributary.Cursor(0, 0)) == "0:0"
    for bad in ["", "3", "a:1", "1:2:3:4", "-1:0", "0:5", f"{tid}0:1:0", "zz:1:0"]:
        with pytest.raises(tributary.InvalidArgumentError):
            tributary.Cursor.parse(bad)
    with pytest.raises(TypeError):
        tributary.Cursor.parse(b"1:0")
    # A legacy cursor cannot be checked: it opens on any target, and comes back with
    # the id.
    a = new_target(tmp_path, "a.log", LINES[:5])
    with tributary.Reader(a, cursor="1:12") as r:
        assert r.read_line() == LINES[1].encode()
        assert r.cursor == tributary.Cursor(1, 24, tributary.status(a).target_id)
    with tributary.Reader(a, cursor=(1, 12)) as r:
        assert r.read_line() == LINES[1].encode()
    with pytest.raises(tributary.InvalidArgumentError):
        tributary.Reader(a, cursor=(1, 12, "not hex"))
    with pytest.raises(TypeError):
        tributary.Reader(a, cursor=(1, 12, b"bytes"))
    assert os.path.exists(a)
