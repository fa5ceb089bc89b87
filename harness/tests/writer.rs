//! The `tributary-torture writer` child, run for real: what it acknowledges is in its
//! journal. (Having an integration test here also makes `cargo test --workspace` build
//! `tributary-torture` before any test runs; the repository's `tests/` runs it.)

use std::process::Command;

use tributary::{Journal, JournalOptions};

#[test]
fn a_writer_acknowledges_every_line_once_with_growing_seqs() {
    let d = tempfile::tempdir().unwrap();
    let (journal, ack) = (d.path().join("w1.journal"), d.path().join("w1.ack"));
    let out = Command::new(env!("CARGO_BIN_EXE_tributary-torture"))
        .args(["writer", "--writer", "1", "--lines", "50", "--run", "7", "--journal"])
        .arg(&journal)
        .arg("--ack")
        .arg(&ack)
        .output()
        .expect("run tributary-torture writer");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&ack).unwrap();
    let acks: Vec<(u64, u64)> = text
        .lines()
        .map(|l| {
            let (i, seq) = l.split_once(' ').expect("`index seq`");
            (i.parse().unwrap(), seq.parse().unwrap())
        })
        .collect();
    assert_eq!(acks.iter().map(|a| a.0).collect::<Vec<_>>(), (1..=50).collect::<Vec<_>>());
    assert!(acks.windows(2).all(|w| w[0].1 < w[1].1), "seqs must grow: {acks:?}");
    let backlog = Journal::open(&journal, JournalOptions::default()).unwrap().backlog().unwrap();
    assert_eq!((backlog.lines, backlog.last_seq), (50, acks[49].1));
}
