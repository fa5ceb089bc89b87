//! The crash-torture harness, in small: a few randomized trials must pass with every
//! count at zero, the harness must fail when its checker is fed damage (so a green run
//! means something), and crash-recovery regressions found while torturing.
//! The big runs are `scripts/torture` and the CI stage 70 (hundreds of trials).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

/// The `key=value` fields of the harness's `RESULT` line.
fn result_fields(out: &Output) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{text}\n{}", String::from_utf8_lossy(&out.stderr)));
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(f: &HashMap<String, String>, k: &str) -> u64 {
    f.get(k).unwrap_or_else(|| panic!("no {k} in {f:?}")).parse().unwrap()
}

fn trials(extra: &[&str]) -> Output {
    Command::new(common::torture_bin())
        .args(["trials", "--fs", "local", "--tributary", common::bin()])
        .args(extra)
        .output()
        .expect("run tributary-torture")
}

#[test]
fn a_few_random_crash_trials_pass_with_zero_lost_duplicated_torn() {
    let seed = std::env::var("TRIB_SEED").unwrap_or_else(|_| "20261122".into());
    let out = trials(&["--trials", "12", "--seed", &seed]);
    let f = result_fields(&out);
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "trials failed:\n{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(num(&f, "trials"), 12);
    for k in ["failed", "lost", "duplicated", "torn", "out_of_order", "held", "errors", "problems"] {
        assert_eq!(num(&f, k), 0, "{k} in {f:?}");
    }
    assert!(num(&f, "kills") > 0, "12 trials without a single kill: the harness is not killing anything");
    // every third trial's compactors commit a manifest delta wherever one fits, and take
    // that path (the others: the default format, 3, and format 2)
    assert_eq!(num(&f, "delta_trials"), 4, "{f:?}");
    assert!(num(&f, "delta_trials_seen") >= 2, "manifest deltas were not committed: {f:?}");
    // trials 2 and 3 of every 4 stage their lines (docs/design.md "Staging")
    assert_eq!(num(&f, "staging_trials"), 6, "{f:?}");
    assert!(num(&f, "staging_trials_seen") >= 3, "no trial staged a line: {f:?}");
}

#[test]
fn the_harness_fails_when_its_checker_sees_damage() {
    for (how, field) in [("drop", "lost"), ("duplicate", "duplicated"), ("tear", "torn")] {
        let out = trials(&["--trials", "2", "--seed", "7", "--sabotage", how]);
        let f = result_fields(&out);
        assert!(!out.status.success(), "{how}: the harness passed on damaged data: {f:?}");
        assert_eq!(num(&f, "failed"), 2, "{how}: {f:?}");
        assert!(num(&f, field) > 0 || num(&f, "problems") > 0, "{how}: damage not counted: {f:?}");
    }
}

fn cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(common::bin());
    cmd.args(args).env_remove("TRIBUTARY_FAILPOINTS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// Regression: a round used to take at least one line from every journal, so with two
/// journals the second one's first line was taken even when longer than what was left of
/// the budget, and a round could write max_round_bytes + one line — more than the
/// truncation guard allows (max(max_round_bytes, max_line_bytes + 1)). A compactor killed
/// after such a round left a tail the next drain refused (UnexpectedTail). Now only a
/// round's first line may exceed the budget.
#[test]
fn crash_after_a_round_that_overran_its_byte_budget_is_recoverable() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n).display().to_string();
    let (a, b, target) = (p("a.journal"), p("b.journal"), p("out.log"));
    // journal a: one 98-byte line (99 with its newline) leaves 1 byte of a 100-byte budget;
    // journal b: one 1000-byte line, taken anyway as the first line of its journal
    assert!(cli(&["append", "--journal", &a], &[], Some(&[b'a'; 98])).status.success());
    assert!(cli(&["append", "--journal", &b], &[], Some(&[b'b'; 1000])).status.success());
    let init = cli(&["init", "--target", &target], &[], None);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let drain = ["drain", "--target", &target, "--journal", &a, "--journal", &b];
    let bounds = ["--max-round-bytes", "100", "--max-line-bytes", "1000"];
    let args: Vec<&str> = drain.iter().chain(&bounds).copied().collect();
    let crashed = cli(&args, &[("TRIBUTARY_FAILPOINTS", "drain.after_write=kill")], None);
    assert!(!crashed.status.success(), "the failpoint must kill the first drain");
    // Only a round's first line may exceed the budget, so the crashed round wrote what
    // the next round may truncate: at most max(max_round_bytes, max_line_bytes + 1).
    let tail = std::fs::metadata(Path::new(&target)).unwrap().len();
    assert!(tail <= 1001, "the crashed round wrote {tail} bytes, more than one round may");
    let retry = cli(&args, &[], None);
    assert!(
        retry.status.success(),
        "the drain after the crash failed: {}",
        String::from_utf8_lossy(&retry.stderr).trim()
    );
    let text = std::fs::read(&target).unwrap();
    assert_eq!(text.len(), 99 + 1001, "each line once");
    let v = cli(&["verify", "--target", &target], &[], None);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}
