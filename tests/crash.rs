//! Crash tests with real processes and SIGKILL: a compactor killed at every failpoint
//! of the drain protocol, writers killed mid-append, two compactors racing, and
//! readers during a drain. After recovery every acknowledged line is in the target
//! exactly once and `verify` is clean.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tributary::testing::failpoint::POINTS;

/// Simple seeded generator for kill timings (the seed is printed on failure).
fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn compactor_killed_at_every_drain_failpoint_recovers_exactly_once() {
    // (the stager's points, and step S's, are reached only with staging on: those
    // drains stage, the recovery does not)
    let staged = |p: &str| p.starts_with("stage.") || p == "drain.after_staged_read";
    let mut drain_points: Vec<&str> =
        POINTS.iter().copied().filter(|p| p.starts_with("drain.") || p.starts_with("stage.")).collect();
    if !drain_points.contains(&"drain.after_intent") {
        drain_points.insert(1, "drain.after_intent"); // (format 2: the intent commit before the bytes)
    }
    assert!(drain_points.len() >= 9, "{drain_points:?}");
    for point in drain_points {
        let d = tmp();
        let (spool, target) = paths(d.path());
        let a = spool.join("a.journal");
        let b = spool.join("b.journal");
        // A first committed round, so the kill hits a target with history.
        journal(&a).append_batch(&numbered("a", 0..50)).unwrap();
        init_cli(&target);
        compactor(&target).drain_paths(std::slice::from_ref(&a)).unwrap();
        journal(&a).append_batch(&numbered("a", 50..300)).unwrap();
        journal(&b).append_batch(&numbered("b", 0..300)).unwrap();
        // An earlier drain killed after writing leaves an uncommitted tail (announced by
        // its intent): that makes drain.after_truncate reachable.
        let committed = std::fs::metadata(&target).unwrap().len();
        let out = cli_env(
            &["drain", "--target", &s(&target), "--spool", &s(&spool), "--max-round-bytes", "2000"],
            &[("TRIBUTARY_FAILPOINTS", "drain.after_write=kill")],
        );
        assert_eq!(out.status.signal(), Some(9), "{point}: the earlier drain should have been SIGKILLed: {out:?}");
        assert!(std::fs::metadata(&target).unwrap().len() > committed, "{point}: the earlier drain left no tail");

        let fp = format!("{point}=kill");
        let mut env = vec![("TRIBUTARY_FAILPOINTS", fp.as_str())];
        if staged(point) {
            env.push((tributary::STAGING_VAR, "on"));
        }
        let out =
            cli_env(&["drain", "--target", &s(&target), "--spool", &s(&spool), "--max-round-bytes", "2000"], &env);
        assert_eq!(out.status.signal(), Some(9), "{point}: the drain should have been SIGKILLed there: {out:?}");
        // Between the kill and recovery, readers and verify see only committed lines.
        let v = tributary::verify(&target).unwrap();
        assert!(v.is_consistent(), "{point}: {:?}", v.problems);
        let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
        assert!(out.status.success(), "{point}: recovery failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut expected = numbered("a", 0..300);
        expected.extend(numbered("b", 0..300));
        assert_exactly(&target, &expected);
        for jp in [&a, &b] {
            assert_eq!(journal(jp).backlog().unwrap().lines, 0, "{point}: drained rows deleted");
        }
    }
}

#[test]
fn compactor_killed_at_random_moments_many_times_loses_and_duplicates_nothing() {
    let mut seed = std::env::var("TRIB_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234_u64);
    println!("seed {seed}");
    let d = tmp();
    let (spool, target) = paths(d.path());
    init_cli(&target);
    let mut expected = Vec::new();
    for k in 0..3 {
        let lines = numbered(&format!("j{k}"), 0..10_000);
        journal(&spool.join(format!("j{k}.journal"))).append_batch(&lines).unwrap();
        expected.extend(lines);
    }
    let mut kills = 0;
    for _ in 0..15 {
        let mut child = Command::new(bin())
            .args(["drain", "--target", &s(&target), "--spool", &s(&spool), "--max-round-bytes", "1500"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng(&mut seed) % 40_000));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        let v = tributary::verify(&target).unwrap();
        assert!(v.is_consistent(), "{:?}", v.problems);
    }
    assert!(kills >= 5, "only {kills} kills landed while draining");
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_exactly(&target, &expected);
}

/// Feed numbered lines to `tributary append --print-seqs`, SIGKILL it at a random
/// moment, and return (lines fed, seqs acknowledged before the kill).
fn writer_killed_mid_append(journal: &std::path::Path, prefix: &str, kill_after: Duration) -> (Vec<Vec<u8>>, usize) {
    let mut child = Command::new(bin())
        .args(["append", "--journal", &s(journal), "--print-seqs"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = numbered(prefix, 0..1_000_000);
    let feeder_lines = lines.clone();
    let feeder = std::thread::spawn(move || {
        for l in feeder_lines {
            if stdin.write_all(&l).and_then(|_| stdin.write_all(b"\n")).is_err() {
                return; // the writer was killed
            }
        }
    });
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).count());
    std::thread::sleep(kill_after);
    child.kill().unwrap();
    child.wait().unwrap();
    feeder.join().unwrap();
    let acked = reader.join().unwrap();
    (lines, acked)
}

#[test]
fn writers_killed_mid_append_keep_every_acknowledged_line_exactly_once() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init_cli(&target);
    let mut seed = 0xfeed_u64;
    let mut total_acked = 0;
    for round in 0..5 {
        let jp = spool.join(format!("w{round}.journal"));
        let prefix = format!("w{round}");
        let (fed, acked) = writer_killed_mid_append(&jp, &prefix, Duration::from_millis(50 + rng(&mut seed) % 250));
        total_acked += acked;
        let out = cli(&["drain", "--target", &s(&target), "--journal", &s(&jp)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let c = counts(&lines_of(&target));
        for l in &fed[..acked] {
            assert_eq!(c.get(l), Some(&1), "acknowledged line {} not exactly once", String::from_utf8_lossy(l));
        }
        // Unacknowledged lines may be there (committed, killed before the ack) at most
        // once, and only as a contiguous continuation of the acknowledged ones.
        let stored = fed.iter().take_while(|l| c.contains_key(*l)).count();
        assert!(stored >= acked);
        for l in &fed[stored..] {
            assert!(!c.contains_key(l), "line {} stored after a gap", String::from_utf8_lossy(l));
        }
    }
    assert!(total_acked > 0, "the writers acknowledged nothing before being killed");
    let v = tributary::verify(&target).unwrap();
    assert!(v.is_consistent(), "{:?}", v.problems);
}

#[test]
fn writer_killed_after_commit_before_ack_stores_the_line_at_most_once() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = spool.join("a.journal");
    let mut child = Command::new(bin())
        .args(["append", "--journal", &s(&jp), "--print-seqs"])
        .env("TRIBUTARY_FAILPOINTS", "journal.after_commit=kill")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"unacknowledged\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(9));
    assert!(out.stdout.is_empty(), "no seq was acknowledged");
    init_cli(&target);
    let out = cli(&["drain", "--target", &s(&target), "--journal", &s(&jp)]);
    assert!(out.status.success());
    assert_exactly(&target, &[b"unacknowledged".to_vec()]);
}

#[test]
fn two_compactor_processes_race_for_the_lock_exactly_once_no_interleaving() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init_cli(&target);
    let compactors: Vec<_> = (0..2)
        .map(|_| {
            Command::new(bin())
                .args(["compact", "--target", &s(&target), "--spool", &s(&spool), "--interval", "5"])
                .args(["--max-round-bytes", "4096"])
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Writers append while both compactors drain in small rounds.
    let mut expected = Vec::new();
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let jp = spool.join(format!("w{w}.journal"));
            let lines = numbered(&format!("writer{w}-with-a-longer-payload-to-tear"), 0..3000);
            expected.extend(lines.clone());
            std::thread::spawn(move || {
                let j = journal(&jp);
                for chunk in lines.chunks(7) {
                    j.append_batch(chunk).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    // Wait for the committed count, not the raw file: a compactor may be mid-write,
    // and the raw file then ends in part of a line (an uncommitted tail).
    let committed = || tributary::status(&target, None).unwrap().manifest.map_or(0, |m| m.committed_lines);
    let deadline = Instant::now() + Duration::from_secs(300);
    while committed() < expected.len() as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let epoch = tributary::status(&target, None).unwrap().manifest.unwrap().epoch;
    for mut c in compactors {
        tributary::testing::sys::send_signal(c.id(), libc::SIGTERM).unwrap();
        assert!(c.wait().unwrap().success(), "compact exits 0 on SIGTERM");
    }
    assert!(epoch > 20, "expected many small rounds, got epoch {epoch}");
    assert_exactly(&target, &expected);
    // Per-writer order: each writer's lines appear in its append order.
    let got = lines_of(&target);
    for w in 0..3 {
        let p = format!("writer{w}-");
        let mine: Vec<_> = got.iter().filter(|l| l.starts_with(p.as_bytes())).cloned().collect();
        assert_eq!(mine, numbered(&format!("writer{w}-with-a-longer-payload-to-tear"), 0..3000));
    }
}

#[test]
fn tail_shows_only_committed_lines_while_a_drain_is_in_progress() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let jp = spool.join("a.journal");
    journal(&jp).append_batch(&numbered("first", 0..10)).unwrap();
    init_cli(&target);
    let out = cli(&["drain", "--target", &s(&target), "--journal", &s(&jp)]);
    assert!(out.status.success());
    journal(&jp).append_batch(&numbered("second", 0..10)).unwrap();
    let committed = std::fs::metadata(&target).unwrap().len();
    // The drain holds after its fdatasync, before its commit, until we let it go: no
    // timing involved (a pause of 1.5 s failed on a loaded machine).
    let fp = d.path().join("fp");
    std::fs::create_dir(&fp).unwrap();
    let child = Command::new(bin())
        .args(["drain", "--target", &s(&target), "--journal", &s(&jp)])
        .env("TRIBUTARY_FAILPOINTS", "drain.after_fsync=hold")
        .env(tributary::testing::failpoint::DIR_VAR, &fp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reached = fp.join("drain.after_fsync.reached");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !reached.exists() {
        assert!(Instant::now() < deadline, "the drain never reached drain.after_fsync");
        std::thread::yield_now();
    }
    assert!(std::fs::metadata(&target).unwrap().len() > committed, "the held drain wrote nothing");
    // The second batch is written (and fsynced) but not committed: invisible.
    assert!(lines_of(&target).len() > 10);
    let out = cli(&["tail", "--target", &s(&target)]);
    let shown: Vec<&[u8]> = out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(shown.len(), 10, "tail showed uncommitted lines");
    assert!(shown.iter().all(|l| l.starts_with(b"first")));
    std::fs::remove_file(&reached).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let out = cli(&["tail", "--target", &s(&target)]);
    assert_eq!(out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count(), 20);
    // --from continues at a cursor; a cursor inside a line is refused.
    let from = (committed).to_string();
    let out = cli(&["tail", "--target", &s(&target), "--from", &from]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("second-000000\n"));
    let out = cli(&["tail", "--target", &s(&target), "--from", "3"]);
    assert!(!out.status.success());
}
