//! `tributary-torture writer`, the writer child process of every harness run: its
//! arguments, then the one keyed writer loop ([`tributary_harness::writer`]), which
//! appends the run's lines in keyed batches and records each acknowledged batch in the
//! ack file. A restarted writer resumes after its last acknowledged line and re-sends
//! the rest under the same keys, so a batch that was committed but not acknowledged
//! (killed in between) is stored once.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tributary::Durability;
use tributary_harness::line::Lines;
use tributary_harness::writer::Writer;

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
    /// Open the journal for each batch and close it after it is acknowledged.
    #[arg(long)]
    pub reopen: bool,
    /// Push each line to an Appender (background commit) and acknowledge a batch once
    /// flush returned. Not restartable (no keys): for the power-cut harness only.
    #[arg(long, conflicts_with = "reopen")]
    pub appender: bool,
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
    Writer {
        journal: a.journal.clone(),
        ack: a.ack.clone(),
        writer: a.writer,
        lines: a.lines,
        set: Lines::any_bytes(a.run),
        rate: a.rate,
        max_batch: a.max_batch,
        durability: a.durability.parse::<Durability>()?,
        reopen: a.reopen,
        appender: a.appender,
    }
    .run()
}
