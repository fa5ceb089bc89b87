//! The `tributary` command line: the surface in DESIGN.md "CLI". Each subcommand is a
//! thin shell over the library; errors go to stderr with what to do, exit code 1
//! (2 for usage errors, from clap).
//!
//! This file owns the subcommand table (`Cli`), `main`, and the plumbing every
//! subcommand shares: `say!` (stdout that survives a closed pipe), `CmdResult` and how
//! an error becomes a message and an exit code. The subcommands live in one module per
//! group: `write` (append), `compact` (init, drain, compact, retire, admit), `inspect` (status,
//! verify), `tail`, `demo`; the flags they share are in `args`; `compact`'s Prometheus
//! metrics in `metrics`; the status line long commands draw on a terminal in `progress`.

/// `println!` that never panics: once stdout is closed (`tributary status | head`,
/// `compact --verbose | head -1`), the rest of the output is dropped and the command
/// (or the daemon) carries on, instead of dying in a panic on EPIPE.
macro_rules! say {
    () => {
        $crate::say_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::say_line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics: a daemon whose stderr went away (a log shipper that
/// exited, `2>/dev/full`) goes on draining — an outside tester's `compact` died in a
/// panic at the first problem it reported, and nothing drained after.
macro_rules! say_err {
    ($($arg:tt)*) => {
        $crate::say_err_line(format_args!($($arg)*))
    };
}

mod args;
mod compact;
mod demo;
mod inspect;
mod metrics;
mod os;
mod progress;
mod tail;
mod write;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tributary::Error;

use crate::compact::{
    cmd_admit, cmd_compact, cmd_drain, cmd_init, cmd_retire, AdmitArgs, CompactArgs, DrainArgs, InitArgs, RetireArgs,
};
use crate::inspect::{cmd_status, cmd_verify, StatusArgs, TargetArg};
use crate::tail::{cmd_tail, TailArgs};
use crate::write::{cmd_append, cmd_dump, AppendArgs, DumpArgs};

#[derive(Parser)]
#[command(
    name = "tributary",
    version,
    long_version = long_version(),
    about = "Exactly-once line appends from many hosts into one shared file",
    after_help = "Exit codes: 0 success (`compact`: stopped by SIGTERM/SIGINT/SIGHUP); 1 an error (stderr says \
                  `tributary: error [kind]: ...` and what to do), or a problem found by `verify` or `status`; \
                  2 a usage error (bad or missing flags); 3 (`compact` only) an error that needs a human \
                  (a corrupt manifest, a truncated or torn target, bytes tributary did not write). \
                  Error kinds and what to do about each: docs/errors.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--version`: the version, the commit built from, and the formats this build reads
/// and writes — what the compatibility rules (README "Operations") are stated in.
fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let (v2, v3) = (tributary::FORMAT_VERSION, tributary::DELTA_FORMAT_VERSION);
        format!(
            "{} ({})\nmanifest formats: reads and writes {v2} and {v3} (new targets: {v3}), upgrades 1\njournal \
             format: {}",
            tributary::VERSION,
            env!("TRIB_BUILD_COMMIT"),
            tributary::JOURNAL_FORMAT_VERSION,
        )
    })
}

#[derive(Subcommand)]
enum Command {
    /// Create a target once (its sidecar and first manifest; an existing file's lines
    /// are adopted), or check and upgrade an existing one. Drains never create one.
    Init(InitArgs),
    /// Append stdin's lines to a journal; exits 0 once all are durable.
    Append(AppendArgs),
    /// Drain journals into the target until the lines they hold now are committed.
    Drain(DrainArgs),
    /// Drain a spool into the target for as long as it runs (SIGTERM/SIGINT/SIGHUP stop it);
    /// --metrics-textfile / --metrics-listen export Prometheus metrics (README "Operations").
    Compact(CompactArgs),
    /// Retire journals: drain them into the target until empty, then delete them.
    Retire(RetireArgs),
    /// Admit journals a drain refused as older than the target's horizon, once you know
    /// they are new (not copies of retired journals).
    Admit(AdmitArgs),
    /// Print the lines a journal still stores (drained or not), changing none: to
    /// salvage a copy drains refuse (README "Operations", a cloned journal). Needs
    /// write access to the journal and its folder (SQLite's -shm); copy a read-only one
    /// elsewhere first.
    Dump(DumpArgs),
    /// Committed length/lines, watermarks, journal backlogs and their age.
    Status(StatusArgs),
    /// Check the target against its manifest (length, line count, running CRC).
    Verify(TargetArg),
    /// Print committed lines only, optionally following the target as it grows.
    Tail(TailArgs),
    /// The main job: writers and two compactors under random SIGKILLs, then a proof.
    Demo(demo::DemoArgs),
    /// (internal) one demo writer process.
    #[command(hide = true)]
    DemoWriter(demo::WriterArgs),
}

fn main() -> ExitCode {
    // before any thread uses SQLite (a process-wide setting: this program's own)
    let _ = tributary::disable_sqlite_memory_statistics();
    let cli = Cli::parse();
    // A daemon's stdout is a log (losing it must not stop or fail it), `tail` handles
    // its own (a reader gone is how `tail | head` ends); for the others what they print
    // is their answer.
    let answer_on_stdout = !matches!(cli.command, Command::Compact(_) | Command::Tail(_) | Command::Demo(_));
    os::ignore_file_size_signal();
    // (`append` prints only with --print-seqs)
    let prints = match &cli.command {
        Command::Append(a) => a.print_seqs,
        Command::Tail(_) => true,
        _ => answer_on_stdout,
    };
    if prints && os::stdout_closed() {
        say_err!(
            "tributary: error [invalid_argument]: stdout is closed: what this command prints would go nowhere (and \
             `tail --cursor-store` would store its lines as read); give it a stdout (`> /dev/null` to discard)"
        );
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Init(a) => cmd_init(a),
        Command::Append(a) => cmd_append(a),
        Command::Drain(a) => cmd_drain(a),
        Command::Compact(a) => cmd_compact(a),
        Command::Retire(a) => cmd_retire(a),
        Command::Admit(a) => cmd_admit(a),
        Command::Dump(a) => cmd_dump(a),
        Command::Status(a) => cmd_status(a),
        Command::Verify(a) => cmd_verify(a),
        Command::Tail(a) => cmd_tail(a),
        Command::Demo(a) => demo::run(a),
        Command::DemoWriter(a) => demo::writer(a),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            say_err!("tributary: error [{}]: {e}", e.kind().name());
            ExitCode::FAILURE
        }
    };
    // What a command printed is its answer (`status --json > file` for a monitor): a
    // stdout that could not take it is a failure, not exit 0 with nothing written (an
    // outside tester, with stdout on a full disk).
    match STDOUT_ERROR.load(std::sync::atomic::Ordering::Relaxed) {
        0 => code,
        _ if !answer_on_stdout => code,
        errno => {
            if code == ExitCode::SUCCESS {
                say_err!(
                    "tributary: error [io]: writing to stdout: {} (the command's output is incomplete)",
                    io::Error::from_raw_os_error(errno)
                );
            }
            ExitCode::FAILURE
        }
    }
}

/// The error (errno) of the first write to stdout that failed, 0 while none did:
/// nothing more is said there, and the command exits 1.
static STDOUT_ERROR: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

fn say_line(args: std::fmt::Arguments) {
    use std::sync::atomic::Ordering::Relaxed;
    if STDOUT_ERROR.load(Relaxed) != 0 {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}").and_then(|()| out.flush()) {
        STDOUT_ERROR.store(e.raw_os_error().unwrap_or(libc::EIO), Relaxed);
    }
}

fn say_err_line(args: std::fmt::Arguments) {
    let _ = writeln!(io::stderr().lock(), "{args}");
}

type CmdResult = Result<ExitCode, Error>;

fn stdout_err(e: io::Error) -> Error {
    Error::Io { context: "writing to stdout".into(), source: e }
}
