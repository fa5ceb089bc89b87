//! `tributary-bench-multihost`: the N-host GlusterFS benchmark (issue 15), run by
//! `scripts/bench-multihost`, which brings the volume up, builds this binary and the
//! CLI, and installs concurrent-log-handler.
//!
//! ```text
//! tributary-bench-multihost run --mount-base /mnt/tribbench --reader-mount M --tributary T [--hosts 1,2,4,8] ...
//! tributary-bench-multihost report --results FILE --out FILE     (the markdown again, from saved results)
//! ```
//! One "host" is one FUSE mount of the volume. Per host and system: 8 writer threads in
//! one process (`writer`, `seed-writer` or the Python script `clh_writer.py`) and, for
//! tributary, one `tributary compact --interval 50` daemon draining that host's local
//! journal through that host's mount. A reader thread (the library's `Reader`) on a
//! mount of its own stamps when each line shows up committed. Each run's figures are one `Record` line
//! in the results file, from which `report` renders docs/bench-multihost.md.

mod fleet;
mod metrics;
mod record;
mod report;
mod roundcost;
mod run;
mod stats;
mod sys;
mod writers;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tributary-bench-multihost",
    about = "N-host GlusterFS benchmark: tributary vs the seed design vs concurrent-log-handler"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The whole benchmark: every N, every system, the round's cost, then the report.
    Run(Box<run::RunArgs>),
    /// Render the report again from a results file.
    Report(report::ReportArgs),
    /// (child) one host's tributary writers: threads appending durably to one journal.
    Writer(writers::WriterArgs),
    /// (child) one host's seed-design writers: per line lock, fstat, pwrite, fsync, unlock.
    SeedWriter(writers::SeedWriterArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Run(a) => run::run(*a),
        Cmd::Report(a) => report::run(a),
        Cmd::Writer(a) => writers::tributary_writer(a),
        Cmd::SeedWriter(a) => writers::seed_writer(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tributary-bench-multihost: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Errors here are messages for the person running the benchmark.
pub type R<T> = Result<T, String>;

/// Attach what was being done to an error.
pub trait Ctx<T> {
    fn ctx(self, what: &str) -> R<T>;
}

impl<T, E: std::fmt::Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> R<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}
