//! The `tributary` command line: the surface in DESIGN.md "CLI". Each subcommand is a
//! thin shell over the library; errors go to stderr with what to do, exit code 1
//! (2 for usage errors, from clap).

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

mod demo;

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use tributary::{
    spool_journals, status, validate_line, verify, Compactor, CompactorOptions, Cursor, CursorStore, DaemonEvent,
    DaemonOptions, Durability, Error, Journal, JournalOptions, Reader,
};

#[derive(Parser)]
#[command(name = "tributary", version, about = "Exactly-once line appends from many hosts into one shared file")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Drain a spool into the target for as long as it runs (SIGTERM/SIGINT stop it).
    Compact(CompactArgs),
    /// Retire journals: drain them into the target until empty, then delete them.
    Retire(RetireArgs),
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

#[derive(Args)]
struct JournalFlags {
    /// `full` (fsync before acknowledging, the default) or `normal` (survives a crash
    /// of the process, not of the machine).
    #[arg(long, default_value = "full")]
    durability: String,
    /// Longest accepted line in bytes.
    #[arg(long, default_value_t = tributary::DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
    /// Refuse appends past this many undrained bytes ("journal full").
    #[arg(long)]
    max_backlog_bytes: Option<u64>,
    /// With --max-backlog-bytes: wait up to this long for room before failing.
    #[arg(long)]
    full_wait_ms: Option<u64>,
    /// Accept a journal on a network filesystem (only if it is really host-local).
    #[arg(long)]
    allow_network_fs: bool,
}

impl JournalFlags {
    fn options(&self) -> Result<JournalOptions, Error> {
        Ok(JournalOptions {
            durability: self.durability.parse::<Durability>()?,
            max_line_bytes: self.max_line_bytes,
            max_backlog_bytes: self.max_backlog_bytes,
            full_wait: self.full_wait_ms.map(Duration::from_millis),
            allow_network_fs: self.allow_network_fs,
            ..JournalOptions::default()
        })
    }
}

#[derive(Args)]
struct AppendArgs {
    /// The journal file (created if missing) on this host's local disk.
    #[arg(long)]
    journal: PathBuf,
    #[command(flatten)]
    flags: JournalFlags,
    /// Print each stored line's seq on stdout once it is durable.
    #[arg(long)]
    print_seqs: bool,
}

#[derive(Args)]
struct CompactorFlags {
    /// Most bytes one drain round writes.
    #[arg(long, default_value_t = 64 << 20)]
    max_round_bytes: u64,
    /// Stop adding lines to a round after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    max_round_ms: u64,
    /// How long to wait for the target's lock.
    #[arg(long, default_value_t = 30_000)]
    lock_timeout_ms: u64,
    /// Longest line any writer may append (bounds how long an uncommitted tail can be).
    #[arg(long, default_value_t = tributary::DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
    /// Accept journals on a network filesystem (only if it is really host-local).
    #[arg(long)]
    allow_network_fs: bool,
    /// Managed rotation: start a new generation of the target once it holds this many
    /// committed bytes; the old one is renamed to <target>.<generation>.
    #[arg(long)]
    rotate_bytes: Option<u64>,
    /// Managed rotation by committed line count.
    #[arg(long)]
    rotate_lines: Option<u64>,
    /// Keep only this many rotated generations (older ones are deleted).
    #[arg(long)]
    retain: Option<u64>,
    /// Create the target if it does not exist yet (as `init` does). Without it, a
    /// target that was never initialised — or whose share is not mounted — is refused.
    #[arg(long)]
    create: bool,
    /// Most journals open at once (3 file descriptors each); more are drained in turns.
    #[arg(long, default_value_t = 128)]
    max_open_journals: usize,
}

#[derive(Args)]
struct InitArgs {
    #[arg(long)]
    target: PathBuf,
    /// How long to wait for the target's lock, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    lock_timeout_ms: u64,
}

impl CompactorFlags {
    fn compactor(&self, target: &Path) -> Result<Compactor, Error> {
        Compactor::new(
            target,
            CompactorOptions {
                max_round_bytes: self.max_round_bytes,
                max_round_time: Duration::from_millis(self.max_round_ms),
                lock_timeout: Duration::from_millis(self.lock_timeout_ms),
                max_line_bytes: self.max_line_bytes,
                journal: JournalOptions { allow_network_fs: self.allow_network_fs, ..JournalOptions::default() },
                rotate_bytes: self.rotate_bytes,
                rotate_lines: self.rotate_lines,
                retain_generations: self.retain,
                max_open_journals: self.max_open_journals.max(1),
                create: self.create,
            },
        )
    }
}

#[derive(Args)]
struct RetireArgs {
    #[arg(long)]
    target: PathBuf,
    /// A journal to retire (repeatable). Its writers should have stopped: one that
    /// still has it open gets `journal_gone` on its next append, storing nothing.
    #[arg(long, required = true)]
    journal: Vec<PathBuf>,
    #[command(flatten)]
    flags: CompactorFlags,
}

#[derive(Args)]
struct DrainArgs {
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

#[derive(Args)]
struct CompactArgs {
    #[arg(long)]
    target: PathBuf,
    #[arg(long)]
    spool: PathBuf,
    /// Pause between rounds that found nothing more to do, in milliseconds.
    #[arg(long, default_value_t = 100)]
    interval: u64,
    /// Print a line per committed round.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    flags: CompactorFlags,
}

#[derive(Args)]
struct StatusArgs {
    #[arg(long)]
    target: PathBuf,
    #[arg(long)]
    spool: Option<PathBuf>,
}

#[derive(Args)]
struct TargetArg {
    #[arg(long)]
    target: PathBuf,
}

#[derive(Args)]
struct TailArgs {
    #[arg(long)]
    target: PathBuf,
    /// Byte offset in the current generation to start from (0, or the start of a line).
    #[arg(long, default_value_t = 0, conflicts_with_all = ["cursor", "all"])]
    from: u64,
    /// A cursor TARGET_ID:GENERATION:OFFSET kept from an earlier read (survives
    /// rotations; refused on another target). The bare GENERATION:OFFSET of earlier
    /// versions is still accepted, unchecked.
    #[arg(long, value_parser = parse_cursor, conflicts_with = "all")]
    cursor: Option<Cursor>,
    /// Start at the oldest generation still kept (managed rotation), not the current one.
    #[arg(long)]
    all: bool,
    /// Keep a durable cursor in this local SQLite file (with --name): start where the
    /// last run committed, and commit after printed lines are flushed (at-least-once).
    #[arg(long, requires = "name")]
    cursor_store: Option<PathBuf>,
    /// The cursor's name in --cursor-store.
    #[arg(long, requires = "cursor_store")]
    name: Option<String>,
    /// Keep waiting for newly committed lines until SIGINT/SIGTERM.
    #[arg(long)]
    follow: bool,
    /// Stop after printing this many lines (and commit the cursor right after them):
    /// use it instead of `| head -N`, which reads more than it prints, so a cursor
    /// committed behind it would skip the lines head read and dropped.
    #[arg(long)]
    max_lines: Option<u64>,
    /// How often --follow polls the manifest, in milliseconds.
    #[arg(long, default_value_t = 200)]
    poll_ms: u64,
}

fn parse_cursor(s: &str) -> Result<Cursor, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(a) => cmd_init(a),
        Command::Append(a) => cmd_append(a),
        Command::Drain(a) => cmd_drain(a),
        Command::Compact(a) => cmd_compact(a),
        Command::Retire(a) => cmd_retire(a),
        Command::Status(a) => cmd_status(a),
        Command::Verify(a) => cmd_verify(a),
        Command::Tail(a) => cmd_tail(a),
        Command::Demo(a) => demo::run(a),
        Command::DemoWriter(a) => demo::writer(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tributary: error [{}]: {e}", e.kind().name());
            ExitCode::FAILURE
        }
    }
}

/// Set once stdout could not be written: say nothing more.
static STDOUT_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn say_line(args: std::fmt::Arguments) {
    use std::sync::atomic::Ordering::Relaxed;
    if STDOUT_GONE.load(Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    if writeln!(out, "{args}").and_then(|()| out.flush()).is_err() {
        STDOUT_GONE.store(true, Relaxed);
    }
}

type CmdResult = Result<ExitCode, Error>;

fn stdout_err(e: io::Error) -> Error {
    Error::Io { context: "writing to stdout".into(), source: e }
}

fn cmd_append(a: AppendArgs) -> CmdResult {
    let opts = a.flags.options()?;
    let max = opts.max_line_bytes;
    let journal = Journal::open(&a.journal, opts)?;
    let mut input = BufReader::with_capacity(1 << 20, io::stdin().lock());
    let mut out = BufWriter::new(io::stdout().lock());
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut stored = 0u64;
    let mut line_no = 0u64;
    let flush = |pending: &mut Vec<Vec<u8>>, stored: &mut u64, out: &mut BufWriter<_>| -> Result<(), Error> {
        if pending.is_empty() {
            return Ok(());
        }
        let first = journal.append_batch(pending)?;
        if a.print_seqs {
            for i in 0..pending.len() as u64 {
                writeln!(out, "{}", first + i).map_err(stdout_err)?;
            }
            out.flush().map_err(stdout_err)?;
        }
        *stored += pending.len() as u64;
        pending.clear();
        Ok(())
    };
    loop {
        let mut line = Vec::new();
        let n = input.read_until(b'\n', &mut line).map_err(|e| Error::io("reading stdin", e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if let Err(e) = validate_line(0, &line, max) {
            let before = flush(&mut pending, &mut stored, &mut out);
            let problem = match &e {
                Error::InvalidLine { problem, .. } => problem.to_string(),
                other => other.to_string(),
            };
            before?;
            eprintln!(
                "tributary: error [invalid_line]: input line {line_no} {problem}; it was refused and appending \
                 stopped. {stored} line(s) before it were stored durably; nothing after it was read"
            );
            return Ok(ExitCode::FAILURE);
        }
        pending_bytes += line.len();
        pending.push(line);
        // Flush when nothing more is buffered (interactive input is acknowledged at
        // once) or the batch is large; one transaction per batch.
        if input.buffer().is_empty() || pending.len() >= 8192 || pending_bytes >= 8 << 20 {
            if let Err(e) = flush(&mut pending, &mut stored, &mut out) {
                return Ok(stopped_mid_stream(&e, stored));
            }
            pending_bytes = 0;
        }
    }
    if let Err(e) = flush(&mut pending, &mut stored, &mut out) {
        return Ok(stopped_mid_stream(&e, stored));
    }
    Ok(ExitCode::SUCCESS)
}

/// An append stream stopped by an error after `stored` lines were stored: say exactly
/// which input lines are durable, so a retry resends only the rest (the error's own
/// "nothing of this call was stored" is about the failed batch, not the stream).
fn stopped_mid_stream(e: &Error, stored: u64) -> ExitCode {
    eprintln!("tributary: error [{}]: {e}", e.kind().name());
    if stored == 0 {
        eprintln!("tributary: appending stopped: no input line was stored; resend from input line 1");
    } else {
        eprintln!(
            "tributary: appending stopped: {stored} line(s) (input lines 1-{stored}) were stored durably; input line \
             {} and the ones after it were not: resend from input line {}",
            stored + 1,
            stored + 1
        );
    }
    ExitCode::FAILURE
}

fn journal_paths(journals: Vec<PathBuf>, spool: Option<&Path>) -> Result<Vec<PathBuf>, Error> {
    match spool {
        Some(s) => spool_journals(s),
        None => Ok(journals),
    }
}

fn cmd_drain(a: DrainArgs) -> CmdResult {
    let compactor = a.flags.compactor(&a.target)?;
    let from_spool = a.spool.is_some();
    let paths = journal_paths(a.journal, a.spool.as_deref())?;
    // Journals named one by one must all be usable; in a spool, one bad file (junk, a
    // symlink, a journal being created) must not keep the others from draining: it is
    // named, and the exit code says something was left.
    // At most --max-open-journals are open at once: the rest wait for their batch.
    let mut refused = 0;
    let mut r = tributary::DrainReport::default();
    for batch in paths.chunks(compactor.options().max_open_journals.max(1)) {
        let mut journals = Vec::new();
        for p in batch {
            match compactor.open_journals(std::slice::from_ref(p)) {
                Ok(mut j) => journals.append(&mut j),
                Err(e) if from_spool && e.journal_path().is_some() => {
                    eprintln!("tributary: error [{}]: {e}; this journal was left alone", e.kind().name());
                    refused += 1;
                }
                Err(e) => return Err(e),
            }
        }
        r.absorb(compactor.drain(&journals)?);
    }
    if paths.is_empty() {
        r = compactor.drain(&[])?;
    }
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
            format!("; truncated an uncommitted tail of {} byte(s) left by a crashed drain", r.repaired_tail_bytes)
        } else {
            String::new()
        }
    );
    for j in &r.journals {
        say!("  {} ({}): {} line(s), now at seq {}", j.path.display(), j.journal_id, j.lines, j.last_seq);
    }
    if refused > 0 {
        eprintln!("tributary: {refused} journal(s) of the spool could not be drained (see above)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_init(a: InitArgs) -> CmdResult {
    let opts =
        CompactorOptions { lock_timeout: Duration::from_millis(a.lock_timeout_ms), ..CompactorOptions::default() };
    let r = Compactor::new(&a.target, opts)?.init()?;
    let t = a.target.display();
    if r.created {
        say!("created target {t} (id {}), adopting {} existing line(s)", r.target_id, r.adopted_lines);
    } else if r.upgraded {
        say!("upgraded target {t} (id {}) to manifest format {}", r.target_id, tributary::FORMAT_VERSION);
    } else if r.rebound {
        say!("target {t} (id {}): its file was replaced by one with the same committed part; accepted", r.target_id);
    } else {
        say!("target {t} (id {}) exists; nothing to do", r.target_id);
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_retire(a: RetireArgs) -> CmdResult {
    let compactor = a.flags.compactor(&a.target)?;
    let r = compactor.retire(&a.journal)?;
    say!("drained {} line(s) into {}, then retired {} journal(s):", r.drain.lines, a.target.display(), r.retired.len());
    for p in &r.retired {
        say!("  {} (deleted; every line it held is committed)", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit code of `compact` for an error that needs a human (the target is damaged,
/// holds bytes tributary did not write, or belongs to something else): a supervisor
/// should not restart it (systemd: `RestartPreventExitStatus=3`).
const EXIT_NEEDS_A_HUMAN: u8 = 3;

fn cmd_compact(a: CompactArgs) -> CmdResult {
    tributary::sys::install_stop_handlers();
    let compactor = a.flags.compactor(&a.target)?;
    let mut opts = DaemonOptions::default();
    opts.interval = Duration::from_millis(a.interval);
    // The library's daemon loop (Compactor::run): the same one the bindings run.
    let summary = compactor.run(&a.spool, &opts, &tributary::sys::stop_requested, &mut |event| match event {
        DaemonEvent::Committed(r) if a.verbose => {
            say!("committed {} line(s), {} byte(s); epoch {}", r.lines, r.bytes, r.epoch);
        }
        // Another host holds the lock, or ours was lost mid-round: tried again later.
        DaemonEvent::Contended(e) => eprintln!("tributary compact: {e}; retrying"),
        DaemonEvent::Problem { subject, error, set_aside: true } => {
            eprintln!("tributary compact: {subject} set aside: error [{}]: {error}", error.kind().name());
        }
        DaemonEvent::Problem { error, .. } => {
            eprintln!("tributary compact: error [{}]: {error}; retrying with backoff", error.kind().name());
        }
        DaemonEvent::Resolved { subject } if subject.starts_with("journal ") => {
            eprintln!("tributary compact: {subject}: opened; draining it");
        }
        DaemonEvent::Resolved { subject } => eprintln!("tributary compact: {subject}: draining again"),
        _ => {}
    });
    let (rounds, lines) = (summary.rounds, summary.lines);
    if let Some(e) = summary.stopped_by {
        eprintln!("tributary: error [{}]: {e}", e.kind().name());
        eprintln!(
            "tributary compact: stopped after {rounds} committing round(s), {lines} line(s): this needs a human \
             (exit {EXIT_NEEDS_A_HUMAN})"
        );
        return Ok(ExitCode::from(EXIT_NEEDS_A_HUMAN));
    }
    eprintln!("tributary compact: stopped after {rounds} committing round(s), {lines} line(s)");
    Ok(ExitCode::SUCCESS)
}

fn age(ms: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    format!("{:.1}s", (now - ms).max(0) as f64 / 1000.0)
}

/// `tail` and `status` on a target that does not exist and was never drained printed
/// nothing and exited 0 (`tail --follow` waited forever): a typo, or an unmounted share.
fn existing_target(t: &Path) -> Result<(), Error> {
    if !t.exists() && !tributary::Sidecar::for_target(t).manifest.exists() {
        return Err(Error::InvalidArgument(format!(
            "target {} does not exist and was never drained: check the path (is the share mounted?)",
            t.display()
        )));
    }
    Ok(())
}

fn cmd_status(a: StatusArgs) -> CmdResult {
    existing_target(&a.target)?;
    let s = status(&a.target, a.spool.as_deref())?;
    say!("target: {}", s.target.display());
    match &s.manifest {
        None => say!("  not initialised (no manifest): run `tributary init --target {}`", s.target.display()),
        Some(m) => {
            let len = s.target_len.unwrap_or(0);
            say!("  target_id: {}", m.target_id);
            say!("  epoch: {}", m.epoch);
            say!("  generation: {}", m.generation);
            for (g, r) in &m.rotated {
                say!(
                    "    rotated generation {g}: {} ({} bytes, {} lines)",
                    tributary::generation_path(&s.target, *g).display(),
                    r.len,
                    r.lines
                );
            }
            say!("  committed: {} bytes, {} lines, crc {:08x}", m.committed_len, m.committed_lines, m.committed_crc);
            let tail = len.saturating_sub(m.committed_len);
            let covered = m.intent.filter(|i| i.start == m.committed_len).map_or(0, |i| i.max_len);
            let whose = match (tail, covered) {
                (0, _) => "",
                (t, c) if t <= c => ", written by a round in flight or crashed: the next drain removes it",
                _ => ", NOT written by a drain round (foreign bytes): drains refuse them, see README \"Operations\"",
            };
            say!("  file length: {len} bytes (uncommitted tail: {tail} bytes{whose})");
            if let Some(i) = m.intent {
                say!("  intent: a round may be writing {} bytes at offset {}", i.max_len, i.start);
            }
            say!("  watermarks: {}", m.watermarks.len());
            for w in m.watermarks.values() {
                say!("    journal {} up to seq {}", w.journal_id, w.last_seq);
            }
        }
    }
    if let Some(spool) = &a.spool {
        say!("spool: {} ({} journal(s))", spool.display(), s.journals.len());
        for j in &s.journals {
            let waiting = j.backlog.lines.saturating_sub(j.uncommitted_lines);
            say!(
                "  {} id {}: backlog {} line(s), {} byte(s), oldest {}; last seq {}, target has up to {}{}",
                j.path.display(),
                j.journal_id,
                j.uncommitted_lines,
                j.backlog.bytes,
                j.backlog.oldest_append_ms.map_or("-".to_string(), age),
                j.backlog.last_seq,
                j.watermark,
                if waiting > 0 {
                    format!(" ({waiting} more line(s) committed, their rows not deleted from the journal yet)")
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_verify(a: TargetArg) -> CmdResult {
    let r = verify(&a.target)?;
    if !r.is_consistent() {
        for p in &r.problems {
            eprintln!("tributary verify: INCONSISTENT: {}: {p}", a.target.display());
        }
        return Ok(ExitCode::FAILURE);
    }
    say!(
        "ok: {} matches its manifest (epoch {}, generation {}): {} committed bytes, {} lines, CRC matches{}",
        a.target.display(),
        r.epoch,
        r.generation,
        r.committed_len,
        r.committed_lines,
        if r.rotated_generations > 0 {
            format!("; {} rotated generation(s) match too", r.rotated_generations)
        } else {
            String::new()
        }
    );
    if r.uncommitted_tail_bytes > 0 {
        say!(
            "note: {} uncommitted byte(s) after the committed part (a crashed or running drain); the next drain \
             round truncates them, readers never see them",
            r.uncommitted_tail_bytes
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_tail(a: TailArgs) -> CmdResult {
    tributary::sys::install_stop_handlers();
    existing_target(&a.target)?;
    let store = match (&a.cursor_store, &a.name) {
        (Some(p), Some(n)) => Some((CursorStore::open(p)?, n.clone())),
        _ => None,
    };
    let stored = match &store {
        Some((st, name)) => st.get(name)?,
        None => None,
    };
    let mut reader = match (stored, a.cursor, a.all) {
        (Some(c), _, _) => Reader::open_at(&a.target, c)?,
        (None, Some(c), _) => Reader::open_at(&a.target, c)?,
        (None, None, true) => Reader::open_at(&a.target, Cursor::START)?,
        (None, None, false) if store.is_some() => Reader::open_at(&a.target, Cursor::START)?,
        (None, None, false) => Reader::open(&a.target, a.from)?,
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let poll = Duration::from_millis(a.poll_ms.max(1));
    let mut unflushed = 0usize;
    // The cursor is committed only past lines the consumer has read: flushed to stdout,
    // and — when stdout is a pipe — taken out of the pipe by its reader (`| head -3`
    // must not commit the lines left in the pipe when head exits). A crash in between
    // replays lines (at-least-once), never skips them.
    let mut written = 0u64;
    let mut sent: std::collections::VecDeque<(u64, Cursor)> = Default::default();
    let checkpoint = |out: &mut BufWriter<_>,
                      sent: &mut std::collections::VecDeque<(u64, Cursor)>,
                      written: u64,
                      last: bool|
     -> Result<bool, Error> {
        match out.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(false),
            Err(e) => return Err(stdout_err(e)),
            Ok(()) => {}
        }
        let stdout = io::stdout();
        let mut unread = tributary::sys::pipe_unread(&stdout).unwrap_or(0);
        // At the end, give the consumer a few seconds to read what is in the pipe.
        let until = Instant::now() + Duration::from_secs(5);
        while last && unread > 0 && !tributary::sys::pipe_reader_gone(&stdout) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
            unread = tributary::sys::pipe_unread(&stdout).unwrap_or(0);
        }
        let consumed = written.saturating_sub(unread);
        let mut commit = None;
        while sent.front().is_some_and(|(end, _)| *end <= consumed) {
            commit = sent.pop_front().map(|(_, c)| c);
        }
        if let (Some((st, name)), Some(c)) = (&store, commit) {
            st.commit(name, c)?;
        }
        Ok(true)
    };
    let mut printed = 0u64;
    loop {
        if a.follow && tributary::sys::stop_requested() {
            break;
        }
        if a.max_lines.is_some_and(|m| printed >= m) {
            break;
        }
        let line =
            if a.follow { reader.next_line_wait(poll, Duration::from_millis(500))? } else { reader.next_line()? };
        match &line {
            Some(l) => {
                let res = out.write_all(l).and_then(|_| out.write_all(b"\n"));
                match res {
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
                    Err(e) => return Err(stdout_err(e)),
                    Ok(()) => {}
                }
                written += l.len() as u64 + 1;
                printed += 1;
                sent.push_back((written, reader.cursor()));
                unflushed += 1;
                if unflushed >= 1000 {
                    unflushed = 0;
                    if !checkpoint(&mut out, &mut sent, written, false)? {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
            None => {
                unflushed = 0;
                if !checkpoint(&mut out, &mut sent, written, false)? {
                    return Ok(ExitCode::SUCCESS);
                }
                if !a.follow || tributary::sys::stop_requested() {
                    break;
                }
            }
        }
    }
    checkpoint(&mut out, &mut sent, written, true)?;
    Ok(ExitCode::SUCCESS)
}
