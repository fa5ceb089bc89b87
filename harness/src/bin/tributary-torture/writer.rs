//! The writer child process: appends its lines to its journal in keyed batches and
//! records each acknowledged batch in its ack file. A restarted writer resumes after
//! its last acknowledged line and re-sends the rest under the same keys, so a batch
//! that was committed but not acknowledged (killed in between) is stored once.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use tributary::{Durability, Journal, JournalOptions};

use crate::common::{expected_line, last_acked, mix, Rng};

#[derive(Args, Debug)]
pub struct WriterArgs {
    #[arg(long)]
    pub journal: PathBuf,
    #[arg(long)]
    pub ack: PathBuf,
    #[arg(long)]
    pub writer: u32,
    /// Lines to append in all (line indexes 1..=lines).
    #[arg(long)]
    pub lines: u64,
    /// Seed of the run: fixes every line's bytes.
    #[arg(long)]
    pub run: u64,
    /// Lines per second at most (0 = as fast as it can).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Largest batch (one transaction, one ack write).
    #[arg(long, default_value_t = 16)]
    pub max_batch: u64,
    /// `full` (fsync before the ack, the default) or `normal` (survives a crash of the
    /// process, not a power cut: the power-cut harness checks those lines are never
    /// duplicated and never cost a `full` line).
    #[arg(long, default_value = "full")]
    pub durability: String,
}

pub fn run(a: WriterArgs) -> ExitCode {
    match write(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tributary-torture writer {}: error [{}]: {e}", a.writer, e.kind().name());
            ExitCode::FAILURE
        }
    }
}

fn write(a: &WriterArgs) -> tributary::Result<()> {
    let opts = JournalOptions { durability: a.durability.parse::<Durability>()?, ..JournalOptions::default() };
    let journal = Journal::open(&a.journal, opts)?;
    let mut ack = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.ack)
        .map_err(|e| tributary::Error::io(format!("opening {}", a.ack.display()), e))?;
    let mut rng = Rng::new(mix(a.run, u64::from(a.writer) ^ tributary::sys::random_u64()));
    let mut i = last_acked(&a.ack) + 1;
    let (started, first) = (Instant::now(), i);
    let mut last_seq = 0u64;
    while i <= a.lines {
        if a.rate > 0 {
            let due = Duration::from_secs_f64((i - first) as f64 / a.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let n = (1 + rng.below(a.max_batch.max(1))).min(a.lines - i + 1);
        let items: Vec<(Vec<u8>, Vec<u8>)> = (i..i + n)
            .map(|k| (format!("w{}-{k}", a.writer).into_bytes(), expected_line(a.run, a.writer, k)))
            .collect();
        let seqs = journal.append_batch_keyed(&items)?;
        let mut rec = String::new();
        for (k, seq) in (i..i + n).zip(&seqs) {
            // seqs of one writer's lines only ever grow (a re-sent key keeps its first seq)
            if *seq <= last_seq {
                return Err(tributary::Error::InvalidArgument(format!(
                    "journal returned seq {seq} for line {k}, not above the previous {last_seq}"
                )));
            }
            last_seq = *seq;
            rec.push_str(&format!("{k} {seq}\n"));
        }
        // one write(2) per batch: a SIGKILL cannot tear it
        ack.write_all(rec.as_bytes()).map_err(|e| tributary::Error::io("writing the ack file", e))?;
        i += n;
    }
    Ok(())
}
