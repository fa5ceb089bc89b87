"""tributary.logging.JournalHandler: one line per record, escaping, no silent drops."""

from __future__ import annotations

import logging
import multiprocessing
import os
from pathlib import Path

import pytest

import tributary
from tributary.logging import JournalHandler, escape, unescape
from conftest import HANG_GUARD, target_lines


@pytest.fixture
def logger():
    log = logging.getLogger(f"test-{os.getpid()}-{id(object())}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


def test_each_record_is_one_line(tmp_path: Path, target: Path, logger):
    h = JournalHandler(tmp_path / "app.journal")
    h.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(h)
    logger.info("hello %s", "world")
    logger.warning("two\nlines and a back\\slash\r")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")
    logger.debug("caf\u00e9 \udcff")  # a lone surrogate (from a surrogateescape'd name) is kept, escaped
    tributary.drain(target, journals=[h.journal])
    lines = [x.decode() for x in target_lines(target)]
    assert len(lines) == 4
    assert lines[0] == "INFO hello world"
    assert lines[1] == "WARNING two\\nlines and a back\\\\slash\\r"
    assert unescape(lines[1]) == "WARNING two\nlines and a back\\slash\r"
    assert lines[2].startswith("ERROR it failed\\nTraceback (most recent call last):\\n")
    assert "ValueError: boom" in unescape(lines[2]).splitlines()[-1]
    assert lines[3] == "DEBUG caf\u00e9 \\udcff"
    # restored exactly (it came back as the six characters `\udcff`: an outside tester),
    # and a literal backslash-u in a message stays literal
    assert unescape(lines[3]) == "DEBUG caf\u00e9 \udcff"
    assert unescape(escape("\\udcff \udcff")) == "\\udcff \udcff"
    assert h.failed_records == 0
    assert "app.journal" in repr(h)


@pytest.mark.parametrize(
    "text", ["", "plain", "a\nb", "\\n is not a newline", "\\\\\n\r\\", "end\\", "\n\n", "tab\tand\\t"]
)
def test_escape_round_trips(text):
    line = escape(text)
    assert "\n" not in line and "\r" not in line
    assert unescape(line) == text


def test_a_record_that_cannot_be_stored_is_reported_not_dropped(tmp_path: Path, logger, capsys):
    h = JournalHandler(tmp_path / "app.journal", max_line=20)
    logger.addHandler(h)
    logger.info("short")
    logger.info("this record is far too long for a 20-byte line limit")
    assert h.failed_records == 1
    err = capsys.readouterr().err
    assert "InvalidLineError" in err and "longer than the maximum" in err
    with tributary.Journal(tmp_path / "app.journal") as j:
        assert j.backlog().lines == 1


def test_a_bad_path_fails_at_configuration_time(tmp_path: Path):
    with pytest.raises(tributary.IoError):
        JournalHandler(tmp_path / "no-such-folder" / "app.journal")


def _log_in_forked_child(handler: JournalHandler) -> None:
    log = logging.getLogger("forked-child")
    log.propagate = False
    log.addHandler(handler)
    log.warning("from the child %d", os.getpid())
    handler.close()


def test_a_handler_configured_before_fork_works_in_the_child(tmp_path: Path, target: Path, logger):
    h = JournalHandler(tmp_path / "app.journal")
    logger.addHandler(h)
    logger.warning("from the parent")
    child = multiprocessing.get_context("fork").Process(target=_log_in_forked_child, args=(h,))
    child.start()
    child.join(timeout=HANG_GUARD)
    assert child.exitcode == 0
    logger.warning("from the parent again")
    tributary.drain(target, spool=tmp_path)  # the child logged to a journal of its own
    lines = target_lines(target)
    # two journals: the parent's lines keep their order; the child's interleave anywhere
    parent = [x for x in lines if x.startswith(b"from the parent")]
    assert parent == [b"from the parent", b"from the parent again"]
    assert len(lines) == 3 and sum(x.startswith(b"from the child ") for x in lines) == 1


@pytest.mark.parametrize("background", [False, True])
def test_a_handler_logs_on_after_its_journal_is_retired(tmp_path: Path, target: Path, logger, background: bool):
    # A journal retired (`--retire-idle`, `tributary retire`) under a logging process:
    # every later record failed for good, lost (an outside tester). The handler opens
    # the path again and logs on; nothing is counted as failed or dropped.
    path = tmp_path / "app.journal"
    h = JournalHandler(path, background=background)
    logger.addHandler(h)
    for i in range(3):
        logger.info("before %d", i)
    h.flush()
    tributary.drain(target, journals=[path])
    assert tributary.retire(target, [path]) == 1
    for i in range(3):
        logger.info("after %d", i)
    h.flush()
    assert h.failed_records == 0 and h.dropped_records == 0
    tributary.drain(target, journals=[path])
    assert target_lines(target) == [b"before %d" % i for i in range(3)] + [b"after %d" % i for i in range(3)]


def test_records_daemon_threads_log_during_interpreter_exit_are_stored_not_errors(tmp_path: Path, target: Path):
    """With ``background=True`` the exit hook closes the appender, then
    ``logging.shutdown`` closes the handler, while daemon threads still log: each later
    record was a "--- Logging error ... appender is closed" traceback on stderr, then
    (once the handler was closed) went to a new Appender nobody flushed — ~1,100 records
    lost in 3 runs of 5 (outside testers). Records emitted after the close are appended
    durably now: every record a thread saw logged is stored, once, in order — after
    the close stored what was still queued (a thread's record 500, appended while the
    close was storing 0-499, came first in 1 run of 3)."""
    from conftest import run_python

    spool = tmp_path / "spool"
    spool.mkdir()
    acks = tmp_path / "acks"
    out = run_python(
        """
        import logging, sys, threading
        from tributary.logging import JournalHandler
        log = logging.getLogger("exit")
        log.addHandler(JournalHandler(sys.argv[1], background=True, durability="normal", window=0.05))
        log.setLevel(logging.INFO)
        acks = open(sys.argv[2], "a", buffering=1)
        started = threading.Barrier(4)

        def keep_logging(k):
            i = 0
            while True:
                log.info("t%d-%d", k, i)
                acks.write(f"t{k}-{i}\\n")
                i += 1
                if i == 500:
                    started.wait()

        for k in range(3):
            threading.Thread(target=keep_logging, args=(k,), daemon=True).start()
        started.wait()
        """,
        str(spool / "app.journal"),
        str(acks),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Logging error" not in out.stderr and "closed" not in out.stderr, out.stderr[-2000:]
    tributary.drain(target, spool=spool)
    got = [line.decode() for line in target_lines(target)]
    assert len(got) == len(set(got)), "a record is in the target twice"
    missing = set(acks.read_text().split()) - set(got)
    assert not missing, f"{len(missing)} records a thread saw logged are not stored"
    for k in range(3):
        mine = [line for line in got if line.startswith(f"t{k}-")]
        assert mine == [f"t{k}-{i}" for i in range(len(mine))], f"thread {k}: a gap or a reorder"
