//! The CLI surface that scripts rely on (DESIGN "CLI"): exit codes and messages.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn run_with_stdin(args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading stdin closes it: that is not the test's error.
    if let Err(e) = child.stdin.take().unwrap().write_all(input) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

#[test]
fn append_stores_stdin_lines_including_a_last_line_without_newline() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = s(&spool.join("a.journal"));
    let out = run_with_stdin(&["append", "--journal", &jp, "--print-seqs"], b"one\n\ntwo\nlast-without-newline");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n2\n3\n4\n");
    init_cli(&target);
    let out = cli(&["drain", "--target", &s(&target), "--journal", &jp]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("drained 4 line(s)"), "{out:?}");
    assert_exactly(&target, &[b"one".to_vec(), b"".to_vec(), b"two".to_vec(), b"last-without-newline".to_vec()]);
}

#[test]
fn append_stops_at_a_refused_line_and_says_what_was_stored() {
    let d = tmp();
    let (spool, _) = paths(d.path());
    let jp = s(&spool.join("a.journal"));
    let mut input = b"a\nb\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 100));
    input.extend(b"\nc\n");
    let out = run_with_stdin(&["append", "--journal", &jp, "--max-line-bytes", "50"], &input);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("input line 3"), "{err}");
    assert!(err.contains("2 line(s) before it were stored"), "{err}");
    assert_eq!(journal(&spool.join("a.journal")).backlog().unwrap().lines, 2, "c was not stored");
}

/// A target with 5 lines drained from `spool/a.journal`, which holds one more waiting.
fn five_drained_one_waiting() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = spool.join("a.journal");
    journal(&jp).append_batch(&numbered("s", 0..5)).unwrap();
    init_cli(&target);
    assert!(cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]).status.success());
    journal(&jp).append(b"waiting").unwrap();
    (d, spool, target)
}

/// `status --json` and `verify --json` for monitoring, and a truncated target flagged
/// by `status` (text and JSON), with exit code 1, as `verify` does.
#[test]
fn status_and_verify_speak_json_and_status_flags_a_truncated_target() {
    let (_d, spool, target) = five_drained_one_waiting();
    let json = |args: &[&str]| -> (Option<i32>, serde_json::Value) {
        let out = cli(args);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out:?}"));
        (out.status.code(), v)
    };
    let (code, v) = json(&["status", "--target", &s(&target), "--spool", &s(&spool), "--json"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!((v["ok"].as_bool(), v["initialised"].as_bool()), (Some(true), Some(true)), "{v}");
    assert_eq!(v["manifest"]["committed_lines"], 5, "{v}");
    assert_eq!(v["manifest"]["committed_len"], 45, "{v}");
    assert_eq!(v["journals"][0]["uncommitted_lines"], 1, "{v}");
    assert_eq!(v["journals"][0]["watermark"], 5, "{v}");
    let (code, v) = json(&["verify", "--target", &s(&target), "--json"]);
    assert_eq!((code, v["consistent"].as_bool(), v["committed_lines"].as_u64()), (Some(0), Some(true), Some(5)));

    // Truncated behind tributary's back (logrotate copytruncate): flagged, exit 1.
    let f = std::fs::OpenOptions::new().write(true).open(&target).unwrap();
    f.set_len(10).unwrap();
    let out = cli(&["status", "--target", &s(&target)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PROBLEM") && err.contains("truncated"), "{err}");
    let (code, v) = json(&["status", "--target", &s(&target), "--json"]);
    assert_eq!((code, v["ok"].as_bool()), (Some(1), Some(false)), "{v}");
    assert!(v["problems"][0].as_str().unwrap().contains("truncated"), "{v}");
    let (code, v) = json(&["verify", "--target", &s(&target), "--json"]);
    assert_eq!((code, v["consistent"].as_bool()), (Some(1), Some(false)), "{v}");
}

/// `--help` says what the flags are and what the exit codes mean.
#[test]
fn help_documents_flags_and_exit_codes() {
    let top = String::from_utf8_lossy(&cli(&["--help"]).stdout).into_owned();
    assert!(top.contains("Exit codes: 0 success") && top.contains("3 (`compact` only)"), "{top}");
    for cmd in ["init", "drain", "compact", "retire", "status", "verify", "tail"] {
        let help = String::from_utf8_lossy(&cli(&[cmd, "--help"]).stdout).into_owned();
        assert!(help.contains("The shared target file"), "{cmd} --help: --target has no help text: {help}");
    }
    let help = String::from_utf8_lossy(&cli(&["compact", "--help"]).stdout).into_owned();
    assert!(help.contains("The spool: a folder of journals"), "{help}");
}

#[test]
fn status_and_verify_report_the_committed_state() {
    let (_d, spool, target) = five_drained_one_waiting();
    let out = cli(&["status", "--target", &s(&target), "--spool", &s(&spool)]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("committed: 45 bytes, 5 lines"), "{text}");
    assert!(text.contains("backlog 1 line(s), 7 byte(s)"), "{text}");
    assert!(text.contains("target has up to 5"), "{text}");
    let out = cli(&["verify", "--target", &s(&target)]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok:"));
    // Change a committed byte: verify must fail and say so.
    let mut bytes = std::fs::read(&target).unwrap();
    bytes[3] = b'X';
    std::fs::write(&target, bytes).unwrap();
    let out = cli(&["verify", "--target", &s(&target)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("INCONSISTENT"), "{out:?}");
}

#[test]
fn tail_follow_prints_lines_as_they_are_committed_and_stops_on_sigterm() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = spool.join("a.journal");
    journal(&jp).append(b"before").unwrap();
    init_cli(&target);
    assert!(cli(&["drain", "--target", &s(&target), "--journal", &s(&jp)]).status.success());
    let mut tail = Command::new(bin())
        .args(["tail", "--target", &s(&target), "--follow", "--poll-ms", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "before");
    journal(&jp).append_batch(&numbered("later", 0..3)).unwrap();
    assert!(cli(&["drain", "--target", &s(&target), "--journal", &s(&jp)]).status.success());
    let t = Instant::now();
    for expected in numbered("later", 0..3) {
        assert_eq!(lines.next().unwrap().unwrap().as_bytes(), expected);
    }
    assert!(t.elapsed() < Duration::from_secs(30));
    tributary::testing::sys::send_signal(tail.id(), libc::SIGTERM).unwrap();
    assert!(tail.wait().unwrap().success());
}

/// `tail --follow` into a pipe: each committed line goes out when the reader reaches
/// the committed end, not when 1000 lines or a 500 ms lull have passed (found by the
/// multi-host benchmark: lines reached a pipe up to 80 ms late at 1,000 lines/s, and
/// never while commits kept coming faster than 500 ms). Lines are committed one by one
/// until the first one is read from the pipe; before the fix that took 1000 commits.
#[test]
fn tail_follow_flushes_each_line_while_commits_keep_coming() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = spool.join("a.journal");
    init_cli(&target);
    let mut tail = Command::new(bin())
        .args(["tail", "--target", &s(&target), "--follow", "--poll-ms", "5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let j = journal(&jp);
    let c = compactor(&target);
    let mut commits = 0;
    let first = loop {
        j.append(format!("stream-{commits}").as_bytes()).unwrap();
        c.drain(std::slice::from_ref(&j)).unwrap();
        commits += 1;
        if let Ok(l) = rx.try_recv() {
            break l;
        }
        assert!(commits < 1000, "tail printed nothing to its pipe after {commits} commits");
    };
    assert_eq!(first, "stream-0");
    assert!(commits < 200, "the first line reached the pipe only after {commits} commits");
    tributary::testing::sys::send_signal(tail.id(), libc::SIGTERM).unwrap();
    assert!(tail.wait().unwrap().success());
}

#[test]
fn usage_errors_and_unsafe_input_fail_clearly() {
    let out = cli(&["drain", "--target", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(2), "missing --journal/--spool is a usage error");
    let d = tmp();
    let out =
        run_with_stdin(&["append", "--journal", &s(&d.path().join("j.journal")), "--durability", "sometimes"], b"x\n");
    // a bad flag value is a usage error, as README says (it was exit 1: an outside tester)
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: full, normal"));
    let out = cli(&["verify", "--target", &s(&d.path().join("never-drained.log"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no manifest"));
    let target = s(&d.path().join("t.log"));
    let out = cli(&["init", "--target", &target, "--manifest-format", "4"]);
    assert_eq!(out.status.code(), Some(2), "a format that does not exist is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("2..=3"));
    assert!(!d.path().join("t.log.tributary").exists(), "and nothing was created");
    // `--interval 0` spun a core while the spool was idle (an outside tester: 3 s of CPU
    // in 5 s); the C library refuses 0 and more than 1,000 years, and so does the CLI
    let spool = s(d.path());
    for interval in ["0", "31536000000001"] {
        let out = cli(&["compact", "--target", &target, "--spool", &spool, "--interval", interval]);
        assert_eq!(out.status.code(), Some(2), "--interval {interval} must be a usage error");
        assert!(String::from_utf8_lossy(&out.stderr).contains("1..=31536000000000"), "--interval {interval}");
    }
}

#[test]
fn init_switches_a_target_s_manifest_format_and_says_which_it_has() {
    let d = tmp();
    let target = s(&d.path().join("t.log"));
    let say = |args: &[&str]| {
        let out = cli(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(say(&["init", "--target", &target]).contains("in manifest format 3"), "a new target's format");
    let older = s(&d.path().join("for-older-builds.log"));
    assert!(say(&["init", "--target", &older, "--manifest-format", "2"]).contains("created target"));
    assert!(say(&["init", "--target", &older]).contains("(manifest format 2); nothing to do"));
    assert!(
        say(&["init", "--target", &target, "--manifest-format", "3"]).contains("(manifest format 3); nothing to do")
    );
    assert!(say(&["init", "--target", &target]).contains("(manifest format 3); nothing to do"));
    assert!(say(&["init", "--target", &target, "--manifest-format", "2"]).contains("from manifest format 3 to 2"));
    assert!(say(&["init", "--target", &target]).contains("(manifest format 2)"));
    // status says the format too (tester H: a host on an older build stops at a format-3
    // target, and nothing showed which format a target had), in text and JSON
    let format_in_json = |t: &str| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&say(&["status", "--target", t, "--json"])).unwrap();
        v["manifest"]["manifest_format"].clone()
    };
    assert!(say(&["status", "--target", &target]).contains("manifest format: 2 ("));
    assert_eq!(format_in_json(&target), 2);
    assert!(say(&["init", "--target", &target, "--manifest-format", "3"]).contains("from manifest format 2 to 3"));
    assert!(say(&["status", "--target", &target]).contains("manifest format: 3 ("));
    assert_eq!(format_in_json(&target), 3);
    assert_eq!(format_in_json(&older), 2);
}

/// Issue 12 item 10: an error in the middle of a stream (here `journal_full` after the
/// first 8,192-line batch) must say exactly how many lines were stored, or a retry of
/// the whole input duplicates them.
#[test]
fn append_failing_mid_stream_says_exactly_how_many_lines_were_stored() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = s(&spool.join("a.journal"));
    let input: Vec<u8> = (0..30_000).flat_map(|i| format!("line-{i:06}\n").into_bytes()).collect();
    let out = run_with_stdin(&["append", "--journal", &jp, "--max-backlog-bytes", "150000"], &input);
    assert_eq!(out.status.code(), Some(1), "the journal filled up, so append must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    init_cli(&target);
    let out = cli(&["drain", "--target", &s(&target), "--journal", &jp]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored = lines_of(&target).len();
    assert!(stored > 0, "the first batch was stored: {err}");
    assert!(
        err.contains(&format!("{stored} line(s) (input lines 1-{stored}) were stored durably"))
            && err.contains(&format!("resend from input line {}", stored + 1))
            && !err.contains("nothing was stored"),
        "the message must say that {stored} lines were stored: {err}"
    );
}

/// Input larger than `--max-backlog-bytes`, with a compactor draining: stored whole,
/// batch by batch as drains make room. The CLI's batches were up to 8 MiB, so one
/// batch alone was over the limit and refused at once, every time, advising to run
/// the compactor that was running (an outside tester). A single line over the limit
/// is refused saying that no drain can make room for it.
#[test]
fn append_stores_input_larger_than_the_maximum_backlog_while_a_compactor_drains() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = s(&spool.join("a.journal"));
    init_cli(&target);
    let mut daemon = Command::new(bin())
        .args(["compact", "--target", &s(&target), "--spool", &s(&spool), "--interval", "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let want = numbered("line", 0..300);
    let input: Vec<u8> = want.iter().flat_map(|l| [l.as_slice(), b"\n"].concat()).collect();
    assert!(input.len() > 2_000);
    let args = ["append", "--journal", &jp, "--max-backlog-bytes", "1000", "--full-wait-ms", "600000"];
    let out = run_with_stdin(&args, &input);
    let append_err = String::from_utf8_lossy(&out.stderr).into_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while committed_lines(&target) < 300 && out.status.success() {
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        assert!(std::time::Instant::now() < deadline, "not drained within 300 s");
        std::thread::yield_now();
    }
    Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    let st = daemon.wait().unwrap();
    assert!(out.status.success(), "append: {append_err}");
    assert!(st.success(), "the daemon: {st}");
    assert_exactly(&target, &want);

    let out = run_with_stdin(&["append", "--journal", &jp, "--max-backlog-bytes", "10"], b"a line of 24 bytes, long\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("more than the journal's maximum backlog (10 bytes) by themselves"), "{err}");
}

fn committed_lines(target: &std::path::Path) -> u64 {
    tributary::Manifest::load(&tributary::Sidecar::for_target(target)).ok().flatten().map_or(0, |m| m.committed_lines)
}

/// `compact --verbose --interval 10` on `spool`, and the first line it printed (its
/// first round's: by then its signal handlers are in place).
fn verbose_daemon(target: &std::path::Path, spool: &std::path::Path) -> (std::process::Child, String) {
    let mut daemon = Command::new(bin())
        .args(["compact", "--target", &s(target), "--spool", &s(spool), "--interval", "10", "--verbose"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut first).unwrap();
    (daemon, first)
}

/// SIGHUP (the terminal closed) stops `compact` as cleanly as SIGTERM: it killed the
/// daemon without its "stopped after" line or its final metrics (an outside tester).
#[test]
fn a_hangup_stops_the_daemon_cleanly() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    journal(&spool.join("a.journal")).append(b"one").unwrap();
    init_cli(&target);
    let (daemon, first) = verbose_daemon(&target, &spool);
    assert!(first.contains("committed 1 line(s)"), "{first}");
    tributary::testing::sys::send_signal(daemon.id(), libc::SIGHUP).unwrap();
    let out = daemon.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(err.contains("stopped after"), "{err}");
}

/// Issue 13 item 6: `compact --verbose | head -1` exited 101 with a panic at its next
/// line; `drain | head`, `status | head` too. A closed stdout silences the output; the
/// daemon keeps draining and still stops cleanly on SIGTERM.
#[test]
fn a_closed_stdout_neither_panics_a_command_nor_stops_the_daemon() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let j = journal(&spool.join("a.journal"));
    j.append_batch(&numbered("first", 0..3)).unwrap();
    init_cli(&target);
    let (mut daemon, first) = verbose_daemon(&target, &spool); // `| head -1`, then gone
    assert!(first.contains("committed 3 line(s)"), "{first}");
    for round in 0..3 {
        j.append_batch(&numbered(&format!("more{round}"), 0..2)).unwrap();
        let want = 3 + 2 * (round + 1);
        let deadline = Instant::now() + Duration::from_secs(120);
        while committed_lines(&target) < want {
            assert!(daemon.try_wait().unwrap().is_none(), "the daemon died when its stdout closed");
            assert!(Instant::now() < deadline, "the daemon stopped draining");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    tributary::testing::sys::send_signal(daemon.id(), libc::SIGTERM).unwrap();
    let out = daemon.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{:?}: {err}", out.status);

    // one-shot commands whose stdout is already closed when they print: they do their
    // work, do not panic, and exit 1 saying their answer was not written (they exited
    // 0: a monitor's `status --json > file` on a full disk got an empty file and 0)
    j.append_batch(&numbered("last", 0..2)).unwrap();
    for args in [
        vec!["drain", "--target", &s(&target), "--spool", &s(&spool)],
        vec!["status", "--target", &s(&target), "--spool", &s(&spool)],
    ] {
        let mut c = Command::new(bin()).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(c.stdout.take()); // the reader is gone before the first line
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("error [io]: writing to stdout"), "{args:?}: {err}");
    }
    assert_eq!(committed_lines(&target), 11, "the drain with a closed stdout still drained");
    // a full disk under stdout: the same
    for args in [vec!["status", "--json", "--target", &s(&target)], vec!["verify", "--target", &s(&target)]] {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let out = Command::new(bin()).args(&args).stdout(full).stderr(Stdio::piped()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("No space left on device"), "{args:?}: {err}");
    }
}

/// `append --print-seqs` with a stdout that fails after a batch was stored: it said
/// "no input line was stored; resend from input line 1", and the resend duplicated the
/// batch (an outside tester). The stored count now includes that batch.
#[test]
fn append_print_seqs_to_a_failing_stdout_counts_what_it_stored() {
    let d = tmp();
    let jp = s(&d.path().join("a.journal"));
    let mut c = Command::new(bin())
        .args(["append", "--journal", &jp, "--print-seqs"])
        .stdin(Stdio::piped())
        .stdout(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"1\n2\n3\n").unwrap();
    let out = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("3 line(s) (input lines 1-3) were stored durably") && err.contains("resend from input line 4"),
        "{err}"
    );
    assert_eq!(journal(&d.path().join("a.journal")).backlog().unwrap().lines, 3);
}

/// Input without a newline (`cat /dev/zero | tributary append`) was read whole into
/// memory before the line limit refused it: the process aborted when an allocation
/// failed (an outside tester, under `ulimit -v`). It now reads at most the limit + 1
/// bytes of a line and refuses it, under a 300 MB address-space limit here.
#[test]
fn append_refuses_an_endless_line_without_reading_it_all() {
    let d = tmp();
    let jp = s(&d.path().join("a.journal"));
    let out = Command::new("bash")
        .args(["-c", &format!("ulimit -v 300000; exec {} append --journal {jp} < /dev/zero", bin())])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("[invalid_line]") && err.contains("longer than the maximum of 1048576 bytes"), "{err}");
}

/// Issue 13 item 7: typos that passed silently. Each is now a clear error that touches
/// nothing.
#[test]
fn typos_are_errors_not_silent_successes() {
    let d = tmp();
    let missing = d.path().join("no-such.log");
    for args in [vec!["tail", "--target", &s(&missing)], vec!["status", "--target", &s(&missing)]] {
        let out = cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(1) && err.contains("does not exist") && out.stdout.is_empty(),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
    // (tail --follow on it must not wait forever: it fails at once too)
    let out = cli(&["tail", "--target", &s(&missing), "--follow"]);
    assert_eq!(out.status.code(), Some(1));

    let out = cli(&["demo", "--writers", "0", "--dir", &s(&d.path().join("demo0"))]);
    assert_eq!(out.status.code(), Some(2), "--writers 0 is a usage error");
    assert!(!d.path().join("demo0").exists());

    let nowhere = d.path().join("not-mounted/sub/out.log");
    let out = cli(&["demo", "--target", &s(&nowhere), "--dir", &s(&d.path().join("demo1"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && err.contains("does not exist"), "{err}");
    assert!(!d.path().join("not-mounted").exists(), "the demo created the missing share's folders");

    let used = d.path().join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("leftover"), b"x").unwrap();
    let out = cli(&["demo", "--dir", &s(&used)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && err.contains("not empty"), "{err}");

    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-all"))
        .env("TRIB_TEST_STAGES", "99")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.code() == Some(2) && said.contains("matches no stage") && !said.contains("all stages passed"),
        "{said}"
    );
}

/// `--retain 0` deleted every rotated generation at once, while 0 in the C ABI and Go
/// keeps them all (an outside tester lost a processor's input to it): refused, saying
/// why, before anything is touched; the C/Go 0 keeps its meaning (unset).
#[test]
fn retain_zero_is_refused_and_deletes_nothing() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let j = journal(&spool.join("a.journal"));
    for i in 0..3 {
        j.append(format!("line {i} of a generation").as_bytes()).unwrap();
        let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool), "--rotate-bytes", "10"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let generation_2 = tributary::generation_path(&target, 2);
    assert!(generation_2.exists());
    j.append(b"one more").unwrap();
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool), "--rotate-bytes", "10", "--retain", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("[invalid_argument]") && err.contains("at least 1") && err.contains("keep them all"), "{err}");
    assert!(generation_2.exists(), "a rotated generation was deleted");
}

/// `compact` with a flag no start can satisfy exited 1, and a supervisor
/// (`Restart=on-failure`, `RestartPreventExitStatus=3`) restarted it every 5 s for
/// ever (an outside tester): such a flag needs a human, exit 3, nothing touched. A
/// metrics address in use is not such a flag (exit 1: retried).
#[test]
fn compact_with_flags_it_can_never_start_with_exits_3() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let base = ["compact", "--target", &s(&target), "--spool", &s(&spool)];
    for (flags, what) in [
        (vec!["--rotate-bytes", "0"], "rotate_bytes"),
        (vec!["--max-round-bytes", "0"], "max_round_bytes"),
        (vec!["--retain", "0"], "retain_generations"),
        (vec!["--metrics-listen", "0.0.0.0:9"], "--metrics-listen-remote"),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(flags.iter().copied()).collect();
        let out = cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{flags:?}: {err}");
        assert!(err.contains("not started: fix the flags") && err.contains(what), "{flags:?}: {err}");
    }
    // an address in use can pass (the previous instance finishing its round): exit 1,
    // which a supervisor retries
    let args: Vec<&str> = base.iter().copied().chain(["--metrics-listen", addr.as_str()]).collect();
    let out = cli(&args);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    drop(taken);
}

/// Started with stdout closed (`>&-`), the standard library gives the process
/// `/dev/null` instead: `tail --cursor-store` printed nothing, exited 0 and stored its
/// cursor past 10 lines the consumer never got (an outside tester). Refused now,
/// storing nothing; `> /dev/null`, an explicit discard, still works.
#[test]
fn a_command_started_with_stdout_closed_is_refused_and_stores_no_cursor() {
    let (d, spool, target) = five_drained_one_waiting();
    let store = s(&d.path().join("cursors.db"));
    let tail = format!("{} tail --target {} --cursor-store {store} --name x --max-lines 3", bin(), s(&target));
    let status = format!("{} status --target {} --spool {}", bin(), s(&target), s(&spool));
    for cmd in [&tail, &status] {
        let out = Command::new("bash").args(["-c", &format!("exec {cmd} >&-")]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert!(err.contains("stdout is closed"), "{cmd}: {err}");
    }
    // the cursor was not stored: a tail that can print starts at the first line
    let out = Command::new("bash").args(["-c", &tail]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("s-000000\n"), "{}", String::from_utf8_lossy(&out.stdout));
    // a stdout that discards, however it was opened: `> /dev/null`, and read-write as
    // Python's `subprocess.DEVNULL` opens it (refused before, an outside tester)
    for redirect in ["> /dev/null", "1<>/dev/null"] {
        let discard = Command::new("bash").args(["-c", &format!("exec {status} {redirect}")]).output().unwrap();
        assert!(discard.status.success(), "{redirect}: {}", String::from_utf8_lossy(&discard.stderr));
    }
    // `append` prints nothing without --print-seqs: a closed stdout is no problem there
    let journal_path = s(&d.path().join("quiet.journal"));
    let quiet = format!("printf 'x\\n' | {} append --journal {journal_path} >&-", bin());
    let out = Command::new("bash").args(["-c", &quiet]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The daemon's stderr is a log it must survive losing (a log shipper that exited,
/// `2>/dev/full`): the first problem it reported — a junk file in the spool — panicked
/// it (exit 101) and nothing drained after (an outside tester). And a file reaching
/// `ulimit -f` killed it with SIGXFSZ (exit 153, nothing said): now an `EFBIG` it
/// reports and retries, and the lines drain once the limit is lifted.
#[test]
fn the_daemon_survives_a_stderr_that_fails_and_a_file_size_limit() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    std::fs::write(spool.join("junk.journal"), b"not a journal").unwrap();
    let j = journal(&spool.join("a.journal"));
    j.append_batch(&numbered("first", 0..3)).unwrap();
    init_cli(&target);
    let compact = format!("{} compact --target {} --spool {} --interval 10", bin(), s(&target), s(&spool));
    let mut daemon = Command::new("bash").args(["-c", &format!("exec {compact} 2>/dev/full")]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed_lines(&target) < 3 {
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon died when it could not write to stderr");
        assert!(Instant::now() < deadline, "the daemon stopped draining");
        std::thread::sleep(Duration::from_millis(10));
    }
    tributary::testing::sys::send_signal(daemon.id(), libc::SIGTERM).unwrap();
    assert!(daemon.wait().unwrap().success());

    // 64 KiB at most per file: the next round's bytes cross it
    let big = vec![b'x'; 1000];
    j.append_batch(&vec![big.clone(); 100]).unwrap();
    let mut daemon = Command::new("bash")
        .args(["-c", &format!("ulimit -f 64; exec {compact}")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(daemon.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("File too large") {
        said.clear();
        assert!(err.read_line(&mut said).unwrap() > 0, "the daemon ended without saying why: {:?}", daemon.wait());
    }
    assert!(said.contains("retrying"), "{said}");
    // "File too large" alone did not say which limit (an outside tester)
    assert!(said.contains("`ulimit -f`, RLIMIT_FSIZE: 65536 bytes"), "{said}");
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon died at the file size limit");
    tributary::testing::sys::send_signal(daemon.id(), libc::SIGTERM).unwrap();
    assert!(daemon.wait().unwrap().success());
    // the limit lifted, every line once
    tributary::Compactor::new(&target, tributary::CompactorOptions::default())
        .unwrap()
        .drain(std::slice::from_ref(&j))
        .unwrap();
    let text = std::fs::read(&target).unwrap();
    assert_eq!(text.len(), 3 * "first-000000\n".len() + 100 * 1001, "each line once");
}

/// A journal reaching `ulimit -f`: `append` said only "disk I/O error" (an outside
/// tester). The operating system's error is named, and the resend point stays exact.
#[test]
fn append_past_the_file_size_limit_names_the_limit() {
    let d = tmp();
    let jp = s(&d.path().join("a.journal"));
    let script = format!("ulimit -f 256; seq 1 200000 | {} append --journal {jp}", bin());
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("File too large"), "{err}");
    assert!(err.contains("`ulimit -f`, RLIMIT_FSIZE: 262144 bytes"), "the limit is named: {err}");
    let stored = journal(&d.path().join("a.journal")).backlog().unwrap().lines;
    assert!(err.contains(&format!("resend from input line {}", stored + 1)), "{stored} stored: {err}");
}

/// A target in `dir` (`paths`), initialised, with two lines drained into it; and its
/// path as a string.
fn drained_target(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let (spool, target) = paths(dir);
    journal(&spool.join("a.journal")).append_batch(&numbered("a", 0..2)).unwrap();
    init_cli(&target);
    let t = s(&target);
    assert!(cli(&["drain", "--target", &t, "--spool", &s(&spool)]).status.success());
    (target, t)
}

/// `status --json` and `verify --json` print one JSON object on stdout whatever
/// happens: an error that stops them (the lock file gone, a path that does not exist)
/// printed nothing there, so a monitor parsing stdout saw no problem (an outside
/// tester). A target file that is missing is called missing, not "another file".
#[test]
fn status_and_verify_json_print_one_object_even_when_they_stop_on_an_error() {
    let d = tmp();
    let (target, t) = drained_target(d.path());
    let json_of = |args: &[&str]| {
        let out = cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON object ({e}): {:?}", out.stdout));
        v
    };
    let lock = tributary::Sidecar::for_target(&target).lock;
    let kept = d.path().join("lock.kept");
    std::fs::rename(&lock, &kept).unwrap();
    for cmd in ["status", "verify"] {
        let v = json_of(&[cmd, "--target", &t, "--json"]);
        assert_eq!(v["error"]["kind"], "corrupt_manifest", "{cmd}: {v}");
        assert_eq!(v["ok"], false, "{cmd}: {v}");
        assert!(v["problems"][0].as_str().unwrap().contains("is gone"), "{cmd}: {v}");
    }
    std::fs::rename(&kept, &lock).unwrap();
    let nowhere = s(&d.path().join("no-such-folder").join("out.log"));
    let v = json_of(&["status", "--target", &nowhere, "--json"]);
    assert_eq!(v["error"]["kind"], "invalid_argument", "{v}");
    let moved = d.path().join("moved.log");
    std::fs::rename(&target, &moved).unwrap();
    let v = json_of(&["verify", "--target", &t, "--json"]);
    assert!(v["problems"][0].as_str().unwrap().contains("is missing"), "{v}");
}

/// `init` on the target's own file cut short (same inode: `truncate`, or `rm` + create
/// when the filesystem reuses the inode number) refuses it as a drain does: it said
/// "exists; nothing to do", exit 0 (an outside tester). A target that is gone is
/// called gone, not "0 bytes".
#[test]
fn init_on_a_truncated_target_refuses_it_as_a_drain_does() {
    let d = tmp();
    let (target, t) = drained_target(d.path());
    let spool = s(&paths(d.path()).0);
    let committed = std::fs::metadata(&target).unwrap().len();
    for cut in [0, committed - 1] {
        std::fs::OpenOptions::new().write(true).open(&target).unwrap().set_len(cut).unwrap();
        for args in [&["init", "--target", &t][..], &["drain", "--target", &t, "--spool", &spool]] {
            let (cmd, out) = (args[0], cli(args));
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{cmd} on a target cut to {cut}: {err}");
            assert!(
                err.contains("[target_truncated]") && err.contains(&format!("is {cut} bytes but {committed} bytes")),
                "{cmd}: {err}"
            );
        }
    }
    std::fs::remove_file(&target).unwrap();
    let out = cli(&["drain", "--target", &t, "--spool", &spool]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[target_truncated]") && err.contains("is gone (no file at that path)"), "{err}");
}

/// `init` on a target whose file was replaced by other content says what to do
/// instead of running `init` again, which refuses it every time (an outside tester
/// followed the old advice in a loop); then moving the file and sidecar aside, as it
/// says, gives a new target.
#[test]
fn init_on_a_replaced_target_says_what_to_do_instead_of_init() {
    let d = tmp();
    let (target, t) = drained_target(d.path());
    std::fs::write(d.path().join("other"), b"zz\nyy\n").unwrap();
    std::fs::rename(d.path().join("other"), &target).unwrap();
    for _ in 0..2 {
        let out = cli(&["init", "--target", &t]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let sidecar = tributary::Sidecar::for_target(&target).dir;
        assert!(
            err.contains("[target_missing]")
                && err.contains("`init` refuses this file every time")
                && err.contains(&format!("sidecar folder {} aside", sidecar.display())),
            "{err}"
        );
    }
    let aside = d.path().join("aside");
    std::fs::create_dir(&aside).unwrap();
    std::fs::rename(&target, aside.join("out.log")).unwrap();
    std::fs::rename(tributary::Sidecar::for_target(&target).dir, aside.join("out.log.tributary")).unwrap();
    assert!(cli(&["init", "--target", &t]).status.success());
}

/// `status --allow-network-fs` reads a spool on a host-local FUSE mount, as `append`,
/// `drain` and `compact` do with the flag: without it a monitor could not see such a
/// spool's backlog at all, and "(0 journal(s))" beside the journal's PROBLEM read as
/// an empty spool (an outside tester). Without the flag the journal is counted as
/// unreadable.
#[test]
fn status_reads_a_spool_on_fuse_with_allow_network_fs() {
    let d = tmp();
    let real = d.path().join("spool");
    std::fs::create_dir(&real).unwrap();
    let Some(fuse) = Bindfs::mount(&real) else {
        eprintln!("skipped: needs root to mount bindfs");
        return;
    };
    let target = d.path().join("t.log");
    init(&target);
    let opts = tributary::JournalOptions::default().allow_network_fs(true);
    tributary::Journal::open(fuse.path().join("a.journal"), opts).unwrap().append_batch(&[b"one", b"two"]).unwrap();
    let (t, spool) = (s(&target), s(fuse.path()));
    let status = |extra: &[&str]| {
        let mut args = vec!["status", "--target", &t, "--spool", &spool];
        args.extend_from_slice(extra);
        let out = cli(&args);
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, said) = status(&[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("(0 journal(s) read, 1 unreadable)"), "{said}");
    let (code, said) = status(&["--allow-network-fs"]);
    assert!(said.contains("(1 journal(s) read)") && said.contains("backlog 2 line(s)"), "{said}");
    assert_eq!(code, Some(0), "{said}");
}
