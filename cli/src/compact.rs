//! The subcommands that change the target under its lock: `init` (create or check it),
//! `drain` (journals in until what they hold now is committed), `compact` (the daemon
//! loop, `Compactor::run`, its metrics and its exit codes) and `retire` (drain
//! journals, then delete them). On a terminal each shows its progress (`progress`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use tributary::{spool_journals, Compactor, CompactorOptions, DaemonEvent, DaemonOptions, DrainReport, Error, Journal};

use crate::args::CompactorFlags;
use crate::metrics::{MetricsFlags, Publisher};
use crate::progress::{self, Progress};
use crate::CmdResult;

#[derive(Args)]
pub struct InitArgs {
    /// The shared target file (on the shared filesystem; its sidecar is `<target>.tributary/`)
    #[arg(long)]
    target: PathBuf,
    /// How long to wait for the target's lock, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    lock_timeout_ms: u64,
    /// The target's manifest format (a new target is made in it, an existing one
    /// switched): 3 commits only what changed (every host that drains the target must
    /// run tributary 0.2.0 or later: `tributary --version`); 2 for a target that older
    /// builds drain too.
    /// Without it a new target is 3 and an existing one keeps its format.
    /// docs/design.md "Manifest deltas".
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=3))]
    manifest_format: Option<u32>,
}

pub fn cmd_init(a: InitArgs) -> CmdResult {
    let opts = CompactorOptions::default().lock_timeout(Duration::from_millis(a.lock_timeout_ms));
    let r = Compactor::new(&a.target, opts)?.init_in_format(a.manifest_format)?;
    let t = a.target.display();
    if let Some(from) = r.switched_from {
        say!("switched target {t} (id {}) from manifest format {from} to {}", r.target_id, r.manifest_format);
    } else if r.created {
        say!(
            "created target {t} (id {}) in manifest format {}, adopting {} existing line(s)",
            r.target_id,
            r.manifest_format,
            r.adopted_lines
        );
    } else if r.upgraded {
        say!("upgraded target {t} (id {}) to manifest format {}", r.target_id, tributary::FORMAT_VERSION);
    } else if r.rebound {
        say!("target {t} (id {}): its file was replaced by one with the same committed part; accepted", r.target_id);
    } else {
        say!("target {t} (id {}) exists (manifest format {}); nothing to do", r.target_id, r.manifest_format);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct DrainArgs {
    /// The shared target file (on the shared filesystem; its sidecar is `<target>.tributary/`)
    #[arg(long)]
    target: PathBuf,
    /// A journal to drain (repeatable).
    #[arg(long, required_unless_present = "spool", conflicts_with = "spool")]
    journal: Vec<PathBuf>,
    /// A folder whose `*.journal` files are drained.
    #[arg(long)]
    spool: Option<PathBuf>,
    #[command(flatten)]
    flags: CompactorFlags,
}

fn journal_paths(journals: Vec<PathBuf>, spool: Option<&Path>) -> Result<Vec<PathBuf>, Error> {
    match spool {
        Some(s) => spool_journals(s),
        None => Ok(journals),
    }
}

pub fn cmd_drain(a: DrainArgs) -> CmdResult {
    let compactor = a.flags.compactor(&a.target)?;
    // Journals named one by one must all be usable; in a spool, one bad file (junk, a
    // symlink, a foreign or restored journal) must not keep the others from draining:
    // it is named, and the exit code says something was left.
    // At most --max-open-journals are open at once: the rest wait for their batch.
    let mut refused = 0;
    let mut r = DrainReport::default();
    let mut progress = Progress::new();
    if let Some(spool) = a.spool.as_deref() {
        let journals_in_all = spool_journals(spool)?.len();
        let mut left_alone = Vec::new();
        compactor.drain_spool_observed(
            spool,
            &mut |round| show_round(&mut r, &mut progress, round, "drain", journals_in_all),
            &mut |e| left_alone.push(e),
        )?;
        for e in &left_alone {
            progress.note(&format!("tributary: error [{}]: {e}; this journal was left alone", e.kind().name()));
        }
        refused = left_alone.len();
    } else {
        let paths = journal_paths(a.journal, None)?;
        for batch in paths.chunks(compactor.open_journal_limit()) {
            let journals = compactor.open_journals(batch)?;
            drain_showing(&compactor, &journals, &mut r, &mut progress, "drain", paths.len())?;
        }
        if paths.is_empty() {
            r = compactor.drain(&[])?;
        }
    }
    progress.clear();
    if r.rotations > 0 {
        say!("rotated {} generation(s) out of {}", r.rotations, a.target.display());
    }
    say!(
        "drained {} line(s), {} byte(s) from {} journal(s) into {} in {} round(s); epoch {}{}",
        r.lines,
        r.bytes,
        r.journals.len(),
        a.target.display(),
        r.rounds,
        r.epoch,
        if r.repaired_tail_bytes > 0 {
            format!(
                "; truncated an uncommitted tail of {} byte(s) left by a drain that crashed or failed",
                r.repaired_tail_bytes
            )
        } else {
            String::new()
        }
    );
    for j in &r.journals {
        say!("  {} ({}): {} line(s), now at seq {}", j.path.display(), j.journal_id, j.lines, j.last_seq);
    }
    if refused > 0 {
        say_err!("tributary: {refused} journal(s) of the spool could not be drained (see above)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// [`Compactor::drain`] with its rounds shown on a terminal as they end (`total` adds
/// up every batch; `journals_in_all` is how many the command drains).
fn drain_showing(
    compactor: &Compactor,
    journals: &[Journal],
    total: &mut DrainReport,
    progress: &mut Progress,
    what: &str,
    journals_in_all: usize,
) -> Result<(), Error> {
    compactor.drain_observed(journals, &mut |round| show_round(total, progress, round, what, journals_in_all))?;
    Ok(())
}

/// Add a round to `total` and show the sum on a terminal.
fn show_round(
    total: &mut DrainReport,
    progress: &mut Progress,
    round: &DrainReport,
    what: &str,
    journals_in_all: usize,
) {
    total.absorb(round.clone());
    progress.update(|t| {
        format!(
            "{what}: {} line(s), {} committed in {} round(s) ({} lines/s, {}/s); {} of {journals_in_all} \
             journal(s) had lines",
            total.lines,
            progress::bytes(total.bytes),
            total.rounds,
            progress::per_second(total.lines, t),
            progress::bytes(progress::per_second(total.bytes, t)),
            total.journals.len(),
        )
    });
}

#[derive(Args)]
pub struct CompactArgs {
    /// The shared target file (on the shared filesystem; its sidecar is `<target>.tributary/`)
    #[arg(long)]
    target: PathBuf,
    /// The spool: a folder of journals (every `*.journal` directly in it)
    #[arg(long)]
    spool: PathBuf,
    /// Pause between rounds that found nothing more to do, in milliseconds (at least
    /// 1: 0 would spin a core while there is nothing to do; at most 1,000 years, as the
    /// C library's `interval_ms`).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=31_536_000_000_000))]
    interval: u64,
    /// Print a line per committed round.
    #[arg(long)]
    verbose: bool,
    /// Retire (delete) each journal that is fully drained and whose files were not
    /// modified for this many seconds. Off by default: a process that still holds such
    /// a journal open gets `journal_gone` on its next append; use it for journals whose
    /// writers exit (per process, per job).
    #[arg(long, value_name = "SECS")]
    retire_idle: Option<u64>,
    #[command(flatten)]
    flags: CompactorFlags,
    #[command(flatten)]
    metrics: MetricsFlags,
}

/// Exit code of `compact` for an error that needs a human (the target is damaged,
/// holds bytes tributary did not write, or belongs to something else): a supervisor
/// should not restart it (systemd: `RestartPreventExitStatus=3`).
const EXIT_NEEDS_A_HUMAN: u8 = 3;

pub fn cmd_compact(a: CompactArgs) -> CmdResult {
    crate::os::install_stop_handlers();
    // A flag no start can satisfy (`--rotate-bytes 0`, a metrics address other
    // networks reach without --metrics-listen-remote) needs a human as a damaged
    // target does: exit 3, or a supervisor restarts the daemon for ever (an outside
    // tester: exit 1, every 5 s).
    let misconfigured = |e: tributary::Error| {
        say_err!("tributary: error [{}]: {e}", e.kind().name());
        say_err!("tributary compact: not started: fix the flags (exit {EXIT_NEEDS_A_HUMAN})");
        ExitCode::from(EXIT_NEEDS_A_HUMAN)
    };
    let compactor = match a.flags.compactor(&a.target) {
        Ok(c) => c,
        Err(e) => return Ok(misconfigured(e)),
    };
    let mut opts = DaemonOptions::default();
    opts.interval = Duration::from_millis(a.interval);
    opts.retire_idle_after = a.retire_idle.map(Duration::from_secs);
    let mut status = Progress::new();
    let started = Publisher::start(&a.metrics, &a.target, &a.spool, &compactor.options().journal, &mut |m| {
        status.note(m);
    });
    // (an address in use, not assigned yet, or a name not resolvable yet can pass —
    // the previous instance still finishing its round, DHCP or DNS at boot: exit 1,
    // so a supervisor tries again; an outside reviewer)
    let mut metrics = match started {
        Ok(m) => m,
        Err(e) if e.kind() == tributary::ErrorKind::InvalidArgument => return Ok(misconfigured(e)),
        Err(e) => return Err(e),
    };
    let mut tally = Tally::default();
    // The library's daemon loop (Compactor::run): the same one the bindings run.
    let summary = compactor.run(&a.spool, &opts, &crate::os::stop_requested, &mut |event| {
        if let Some(m) = &mut metrics {
            m.on_event(&event, &mut |msg| status.note(msg));
        }
        tally.count(&event);
        let say = match event {
            DaemonEvent::Committed(r) if a.verbose => {
                status.clear();
                say!(
                    "committed {} line(s), {} byte(s) in {:.1} ms ({:.1} ms of it waiting for the lock); epoch {}",
                    r.lines,
                    r.bytes,
                    r.elapsed.as_secs_f64() * 1000.0,
                    r.lock_wait.as_secs_f64() * 1000.0,
                    r.epoch
                );
                None
            }
            // Another host holds the lock, or ours was lost mid-round: tried again later.
            DaemonEvent::Contended(e) => Some(format!("tributary compact: {e}; retrying")),
            DaemonEvent::Problem { subject, error, set_aside: true } => {
                Some(format!("tributary compact: {subject} set aside: error [{}]: {error}", error.kind().name()))
            }
            DaemonEvent::Problem { error, .. } => {
                Some(format!("tributary compact: error [{}]: {error}; retrying with backoff", error.kind().name()))
            }
            DaemonEvent::Resolved { subject } if subject.starts_with("journal ") => {
                Some(format!("tributary compact: {subject}: opened; draining it"))
            }
            DaemonEvent::Resolved { subject } => Some(format!("tributary compact: {subject}: draining again")),
            DaemonEvent::Retired { journal } => {
                Some(format!("tributary compact: journal {} retired (drained and idle; deleted)", journal.display()))
            }
            _ => None,
        };
        if let Some(msg) = say {
            status.note(&msg);
        }
        status.update(|t| tally.line(t));
    });
    if let Some(m) = &mut metrics {
        m.stopped(summary.stopped_by.as_ref(), &mut |msg| status.note(msg));
    }
    status.clear();
    let (rounds, lines) = (summary.rounds, summary.lines);
    if let Some(e) = summary.stopped_by {
        say_err!("tributary: error [{}]: {e}", e.kind().name());
        say_err!(
            "tributary compact: stopped after {rounds} committing round(s), {lines} line(s): this needs a human \
             (exit {EXIT_NEEDS_A_HUMAN})"
        );
        return Ok(ExitCode::from(EXIT_NEEDS_A_HUMAN));
    }
    say_err!("tributary compact: stopped after {rounds} committing round(s), {lines} line(s)");
    Ok(ExitCode::SUCCESS)
}

/// What `compact`'s status line shows.
#[derive(Default)]
struct Tally {
    rounds: u64,
    lines: u64,
    bytes: u64,
    last_commit: Option<Instant>,
    /// What the last event said about now: idle, contended, in trouble.
    state: &'static str,
}

impl Tally {
    fn count(&mut self, event: &DaemonEvent<'_>) {
        self.state = match event {
            DaemonEvent::Committed(r) => {
                self.rounds += 1;
                self.lines += r.lines;
                self.bytes += r.bytes;
                self.last_commit = Some(Instant::now());
                "draining"
            }
            DaemonEvent::Contended(_) => "lock contended",
            DaemonEvent::Problem { set_aside: false, .. } => "retrying with backoff",
            DaemonEvent::Idle => "idle",
            _ => self.state,
        };
    }

    fn line(&self, t: Duration) -> String {
        format!(
            "compact: {} line(s), {} in {} round(s) ({} lines/s); last commit {}; {}",
            self.lines,
            progress::bytes(self.bytes),
            self.rounds,
            progress::per_second(self.lines, t),
            self.last_commit.map_or("none yet".into(), |c| format!("{}s ago", c.elapsed().as_secs())),
            self.state
        )
    }
}

#[derive(Args)]
pub struct RetireArgs {
    /// The shared target file (on the shared filesystem; its sidecar is `<target>.tributary/`)
    #[arg(long)]
    target: PathBuf,
    /// A journal to retire (repeatable). Its writers should have stopped: one that
    /// still has it open gets `journal_gone` on its next append, storing nothing.
    #[arg(long, required = true)]
    journal: Vec<PathBuf>,
    /// Retire journals that hold idempotency keys within their retention or processed
    /// cursors, forgetting them (by default such a journal is refused: a writer
    /// resending with a key, or a processor resuming from its cursor, would store its
    /// lines twice)
    #[arg(long)]
    forget_keys: bool,
    #[command(flatten)]
    flags: CompactorFlags,
}

pub fn cmd_retire(a: RetireArgs) -> CmdResult {
    let compactor = a.flags.compactor(&a.target)?;
    // On a terminal, the long part (draining) first, round by round so it shows; then
    // retire has only what arrived meanwhile to drain. (The journals are closed before
    // retire opens them again: it deletes them while holding their write lock.)
    let mut drained = DrainReport::default();
    let mut progress = Progress::new();
    if progress.is_on() {
        let journals = compactor.open_journals(&a.journal)?;
        drain_showing(&compactor, &journals, &mut drained, &mut progress, "retire: draining", journals.len())?;
    }
    progress.clear();
    let r = if a.forget_keys { compactor.retire_forgetting_keys(&a.journal)? } else { compactor.retire(&a.journal)? };
    drained.absorb(r.drain.clone());
    let colon = if r.retired.is_empty() { "" } else { ":" };
    say!(
        "drained {} line(s) into {}, then retired {} journal(s){colon}",
        drained.lines,
        a.target.display(),
        r.retired.len()
    );
    for p in &r.retired {
        say!("  {} (deleted; every line it held is committed)", p.display());
    }
    match r.missing_error() {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

#[derive(Args)]
pub struct AdmitArgs {
    /// The shared target file (on the shared filesystem; its sidecar is `<target>.tributary/`)
    #[arg(long)]
    target: PathBuf,
    /// A journal to admit (repeatable): one a drain refused as older than the target's
    /// horizon that you know is new (its lines are not in the target). Never admit a
    /// journal restored from a backup or a snapshot: its lines would be drained twice.
    #[arg(long, required = true)]
    journal: Vec<PathBuf>,
    #[command(flatten)]
    flags: CompactorFlags,
}

pub fn cmd_admit(a: AdmitArgs) -> CmdResult {
    let n = a.flags.compactor(&a.target)?.admit(&a.journal)?;
    say!("admitted {n} journal(s) into {} (the others were known already); drain them now", a.target.display());
    Ok(ExitCode::SUCCESS)
}
