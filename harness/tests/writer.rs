//! The `tributary-torture writer` child, run for real, against the harness library: what
//! it acknowledges is in its ack file in the one format, and after a drain the one
//! checker finds every acknowledged line in the target exactly once. (Having an
//! integration test here also makes `cargo test --workspace` build `tributary-torture`
//! before any test runs; the repository's `tests/` runs it.)

use std::path::Path;
use std::process::Command;

use tributary::{Compactor, CompactorOptions, Journal, JournalOptions};
use tributary_harness::ack;
use tributary_harness::check::{check, Allow, Writer};
use tributary_harness::line::Lines;

fn writer(journal: &Path, ack: &Path, lines: u64, run: u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary-torture"))
        .args(["writer", "--writer", "1", "--lines", &lines.to_string(), "--run", &run.to_string(), "--journal"])
        .arg(journal)
        .arg("--ack")
        .arg(ack)
        .output()
        .expect("run tributary-torture writer");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_writer_acknowledges_every_line_once_and_the_checker_finds_them_drained() {
    let d = tempfile::tempdir().unwrap();
    let (journal, ackf, target) = (d.path().join("w1.journal"), d.path().join("w1.ack"), d.path().join("out.log"));
    writer(&journal, &ackf, 50, 7);
    let acks = ack::read(&ackf);
    assert_eq!(acks.iter().map(|a| a.0).collect::<Vec<_>>(), (1..=50).collect::<Vec<_>>());
    assert!(acks.windows(2).all(|w| w[0].1 < w[1].1), "seqs must grow: {acks:?}");
    let j = Journal::open(&journal, JournalOptions::default()).unwrap();
    assert_eq!((j.backlog().unwrap().lines, j.backlog().unwrap().last_seq), (50, acks[49].1));

    // a second life has nothing left to send: it appends nothing and acknowledges nothing
    writer(&journal, &ackf, 50, 7);
    assert_eq!(ack::read(&ackf), acks);

    let c = Compactor::new(&target, CompactorOptions::default()).unwrap();
    c.init().unwrap();
    let checked = |drained_seq| {
        let w = Writer { id: 1, lines: 50, acked: ack::read(&ackf), drained_seq, full: true };
        check(&Lines::any_bytes(7), &[&std::fs::read(&target).unwrap()], &[w], &Allow::default())
    };
    // not drained yet: every line is held in the journal, and that is a failure
    let v = checked(j.backlog().unwrap().drained_seq);
    assert_eq!((v.held, v.lost, v.exactly_once()), (50, 0, false), "{v:?}");
    c.drain(&[j]).unwrap();
    let v = checked(u64::MAX);
    assert!(v.exactly_once(), "{v:?}");
    assert_eq!((v.lines, v.acked), (50, 50));
    // and lines of another run are not these lines (but those with an empty payload,
    // which are only their `w1 <index> ` prefix in every run)
    let w = Writer { id: 1, lines: 50, acked: acks, drained_seq: u64::MAX, full: true };
    let v = check(&Lines::any_bytes(8), &[&std::fs::read(&target).unwrap()], &[w], &Allow::default());
    let differ = (1..=50).filter(|&i| Lines::any_bytes(7).line(1, i) != Lines::any_bytes(8).line(1, i)).count() as u64;
    assert!(differ > 40, "{differ}");
    assert_eq!((v.torn, v.lost), (differ, differ), "{v:?}");
}
