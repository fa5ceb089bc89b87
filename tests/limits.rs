//! Different limits on different hosts (issue 13 item 4): how long an uncommitted tail
//! may be is what the target's own record (the round's intent) says, never this
//! compactor's local options. Real processes killed mid-round by a failpoint.

mod common;

use common::*;
use tributary::{Journal, JournalOptions};

fn killed_drain(target: &std::path::Path, journal: &std::path::Path, flags: &[&str]) {
    let (t, j) = (s(target), s(journal));
    let mut args = vec!["drain", "--target", t.as_str(), "--journal", j.as_str()];
    args.extend_from_slice(flags);
    let out = cli_env(&args, &[("TRIBUTARY_FAILPOINTS", "drain.after_write=kill")]);
    assert!(!out.status.success(), "the failpoint did not kill the drain");
    let len = std::fs::metadata(target).unwrap().len();
    assert!(len > manifest_of(target).committed_len, "the killed round left no tail to repair");
}

fn drain_ok(target: &std::path::Path, journal: &std::path::Path, flags: &[&str]) {
    let (t, j) = (s(target), s(journal));
    let mut args = vec!["drain", "--target", t.as_str(), "--journal", j.as_str()];
    args.extend_from_slice(flags);
    let out = cli(&args);
    assert!(out.status.success(), "the repairing drain failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A writer allowed longer lines than a compactor's limit: the round that writes such
/// a line announces it first, so another compactor repairs its tail after a crash.
#[test]
fn a_line_longer_than_a_compactor_s_limits_is_repaired_after_a_crash() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let path = spool.join("big.journal");
    let big = vec![b'x'; 3 << 20];
    {
        let opts = JournalOptions::default().max_line_bytes(4 << 20);
        let j = Journal::open(&path, opts).unwrap();
        j.append(&big).unwrap(); // first of its round: written alone, past every bound
        j.append(b"small").unwrap();
    }
    killed_drain(&target, &path, &["--max-round-bytes", "1000", "--max-line-bytes", "1000"]);
    drain_ok(&target, &path, &["--max-round-bytes", "1000", "--max-line-bytes", "1000"]);
    assert_exactly(&target, &[big, b"small".to_vec()]);
}

/// Compactors with different `--max-round-bytes` on different hosts: a big round killed
/// on one host is repaired by a compactor whose own rounds are tiny.
#[test]
fn a_big_round_killed_on_one_host_is_repaired_by_a_compactor_with_tiny_rounds() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let path = spool.join("a.journal");
    let lines = numbered(&"y".repeat(200), 0..10_000); // a 2 MB round, past the tiny compactor's bound
    journal(&path).append_batch(&lines).unwrap();
    killed_drain(&target, &path, &[]);
    drain_ok(&target, &path, &["--max-round-bytes", "100000", "--max-line-bytes", "1000"]);
    assert_exactly(&target, &lines);
}

/// Open-file limits (issue 13 item 3, issue 16): 400 journals under `ulimit -n 1024`
/// drained nothing (all opened at once, 3 descriptors each) and the error said
/// `not_a_journal`; now the handles are bounded by the open-file limit itself.
#[test]
fn four_hundred_journals_drain_under_a_1024_file_limit_whatever_is_asked() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let mut want = Vec::new();
    for i in 0..400 {
        let line = format!("journal {i:03}").into_bytes();
        journal(&spool.join(format!("j{i:03}.journal"))).append(&line).unwrap();
        want.push(line);
    }
    let run = |extra: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n 1024 && exec \"$0\" drain --target \"$1\" --spool \"$2\" {extra}"))
            .arg(bin())
            .arg(&target)
            .arg(&spool)
            .output()
            .unwrap()
    };
    // asked to keep them all open: the open-file limit bounds the handles anyway
    // (Compactor::open_journal_limit: a quarter of RLIMIT_NOFILE, 3 per journal)
    let out = run("--max-open-journals 1000");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // the default bound: everything drains (again: nothing new)
    let out = run("");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut got = lines_of(&target);
    got.sort();
    assert_eq!(got, want);
    assert!(tributary::verify(&target).unwrap().is_consistent());
}
