//! The cost of one drain round over K journals that each got one new line: the
//! per-journal part of a round (issue 16's "round wall with 1 % of 10,000 journals
//! active"), without the daemon around it. docs/benchmarks.md, "A round's cost per
//! journal".
//!
//! `cargo run --release --example round_cost -- DIR K ROUNDS`, with `NORMAL=1` for
//! `normal` writers (their `-wal`s are synced by the round: O3) and `REOPEN=1` for
//! fresh compactor handles every round (as a daemon over many more journals than it
//! keeps open: every statement compiled anew). Prints the p50, min and max round wall.

use std::path::PathBuf;
use std::time::Instant;

use tributary::{Compactor, CompactorOptions, Durability, Journal, JournalOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, k, rounds] = &args[..] else {
        eprintln!("usage: round_cost DIR K ROUNDS");
        std::process::exit(2);
    };
    let _ = tributary::disable_sqlite_memory_statistics(); // as the `tributary` command does
    let dir = PathBuf::from(dir);
    let (k, rounds): (usize, usize) = (k.parse().expect("K"), rounds.parse().expect("ROUNDS"));
    let durability = if std::env::var_os("NORMAL").is_some() { Durability::Normal } else { Durability::Full };
    std::fs::create_dir_all(dir.join("spool")).expect("the spool folder");
    let writers: Vec<Journal> = (0..k)
        .map(|i| {
            let path = dir.join(format!("spool/j{i}.journal"));
            Journal::open(path, JournalOptions::default().durability(durability)).expect("a journal")
        })
        .collect();
    let c = Compactor::new(dir.join("target.log"), CompactorOptions::default().create(true)).expect("the compactor");
    for j in &writers {
        j.append(b"first").expect("an append");
    }
    c.drain(&writers).expect("the first drain");
    let paths: Vec<PathBuf> = writers.iter().map(|j| j.path().to_path_buf()).collect();
    let mut walls = Vec::with_capacity(rounds);
    for r in 0..rounds {
        for j in &writers {
            j.append(format!("line {r}").as_bytes()).expect("an append");
        }
        let fresh;
        let journals: &[Journal] = if std::env::var_os("REOPEN").is_some() {
            fresh = c.open_journals(&paths).expect("compactor handles");
            &fresh
        } else {
            &writers
        };
        let started = Instant::now();
        let report = c.drain_round(journals, r).expect("a round");
        walls.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(report.lines, k as u64, "one line from each journal");
    }
    walls.sort_by(f64::total_cmp);
    println!(
        "journals={k} rounds={rounds} round wall p50={:.2} ms min={:.2} max={:.2}",
        walls[walls.len() / 2],
        walls[0],
        walls[walls.len() - 1]
    );
}
