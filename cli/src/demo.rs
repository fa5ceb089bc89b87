//! `tributary demo`: the main job, end to end, with a proof at the end.
//!
//! Several writer processes (each its own journal, keyed appends, an ack file of the
//! seqs they were told are durable) and two `compact` processes racing for the lock
//! are SIGKILLed at random moments and restarted. Then the target is checked: every
//! acknowledged line exactly once, nothing torn, per-writer order kept, `verify` clean.
//!
//! This file owns the demo's orchestration and its report; the writer loop, the ack
//! files, the RNG and the exactly-once checker are the torture harness's
//! (`tributary_harness`), so the demo proves what the harness proves, the same way.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use tributary::{verify, Compactor, CompactorOptions, Durability, Error, Manifest, Sidecar};
use tributary_harness::ack;
use tributary_harness::check::{self, Allow, Verdict};
use tributary_harness::line::Lines;
use tributary_harness::rng::Rng;
use tributary_harness::writer::Writer;

#[derive(Args)]
pub struct DemoArgs {
    /// Folder to set the demo up in (default: a fresh folder under the temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The shared target file (default: <dir>/shared/out.log). Point it at a real
    /// shared mount to run the demo across a network filesystem.
    #[arg(long)]
    target: Option<PathBuf>,
    /// Writer processes (each with its own journal).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    writers: u32,
    /// Lines each writer appends.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    lines: u64,
    /// Lines per second each writer appends at most (0 = as fast as it can).
    #[arg(long, default_value_t = 2500)]
    rate: u64,
    /// SIGKILLs to deliver (to writers and compactors, at random moments).
    #[arg(long, default_value_t = 10)]
    kills: u32,
    /// Seed for the random schedule and payloads (printed; re-run a failing seed).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Args)]
pub struct WriterArgs {
    #[arg(long)]
    journal: PathBuf,
    #[arg(long)]
    ack: PathBuf,
    #[arg(long)]
    writer: u32,
    #[arg(long)]
    lines: u64,
    #[arg(long)]
    seed: u64,
    /// Lines per second this writer appends at most (0 = unpaced).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

/// One writer process: keyed batches of 1–16 lines (a restarted writer re-sends its
/// unacknowledged lines; the keys make that exactly-once), each acknowledged in the ack
/// file. The demo's lines are readable ones (`tributary tail` shows them).
pub fn writer(a: WriterArgs) -> Result<ExitCode, Error> {
    Writer {
        journal: a.journal,
        ack: a.ack,
        writer: a.writer,
        lines: a.lines,
        set: Lines::letters(a.seed),
        rate: a.rate,
        max_batch: 16,
        durability: Durability::Full,
        reopen: false,
        appender: false,
    }
    .run()?;
    Ok(ExitCode::SUCCESS)
}

struct Proc {
    name: String,
    child: Child,
    args: Vec<String>,
    log: PathBuf,
    finished: bool,
}

fn spawn(exe: &Path, args: &[String], log: &Path) -> Result<Child, Error> {
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Error::io(format!("opening {}", log.display()), e))?;
    let err_file = log_file.try_clone().map_err(|e| Error::io("cloning a log handle", e))?;
    Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", exe.display()), e))
}

fn mkdirs(p: &Path) -> Result<(), Error> {
    fs::create_dir_all(p).map_err(|e| Error::io(format!("creating {}", p.display()), e))
}

fn committed_lines(target: &Path) -> u64 {
    Manifest::load(&Sidecar::for_target(target)).ok().flatten().map_or(0, |m| m.committed_lines)
}

pub fn run(a: DemoArgs) -> Result<ExitCode, Error> {
    let seed = a.seed.unwrap_or_else(tributary_harness::os::random_u64) % 1_000_000_007;
    let dir = match a.dir {
        Some(d) => {
            // a folder of an earlier run would mix its lines into this run's proof
            if fs::read_dir(&d).is_ok_and(|mut entries| entries.next().is_some()) {
                return Err(Error::InvalidArgument(format!(
                    "--dir {} is not empty (an earlier demo?): give a new folder, or remove this one",
                    d.display()
                )));
            }
            d
        }
        None => std::env::temp_dir().join(format!("tributary-demo-{:08x}", tributary_harness::os::random_u64() as u32)),
    };
    // a --target's folder must exist (a shared mount is not created by a demo)
    if let Some(t) = &a.target {
        let folder = match t.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !folder.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "--target {}: its folder {} does not exist (is the share mounted?); create it first",
                t.display(),
                folder.display()
            )));
        }
        if t.exists() {
            return Err(Error::InvalidArgument(format!(
                "--target {} exists already: the demo needs a new target to prove its count",
                t.display()
            )));
        }
    }
    let spool = dir.join("spool");
    let acks = dir.join("acks");
    let logs = dir.join("logs");
    for d in [&dir, &spool, &acks, &logs] {
        mkdirs(d)?;
    }
    let target = a.target.unwrap_or_else(|| dir.join("shared").join("out.log"));
    if let Some(p) = target.parent() {
        mkdirs(p)?;
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("finding the tributary executable", e))?;
    // The one explicit creation step; the compactors below never create a target.
    Compactor::new(&target, CompactorOptions::default())?.init()?;
    say!("tributary demo (seed {seed})");
    say!("  folder:  {}", dir.display());
    say!("  target:  {}", target.display());
    say!(
        "  {} writers x {} lines (keyed, durable), 2 compactors racing for the lock, {} SIGKILLs",
        a.writers,
        a.lines,
        a.kills
    );

    let t = target.display().to_string();
    let s = spool.display().to_string();
    let mut procs: Vec<Proc> = Vec::new();
    for c in 1..=2 {
        let args: Vec<String> =
            ["compact", "--target", &t, "--spool", &s, "--interval", "50", "--lock-timeout-ms", "5000"]
                .iter()
                .map(|x| x.to_string())
                .collect();
        let log = logs.join(format!("compactor-{c}.log"));
        procs.push(Proc {
            name: format!("compactor-{c}"),
            child: spawn(&exe, &args, &log)?,
            args,
            log,
            finished: false,
        });
    }
    for w in 1..=a.writers {
        let args: Vec<String> = vec![
            "demo-writer".into(),
            "--journal".into(),
            spool.join(format!("w{w}.journal")).display().to_string(),
            "--ack".into(),
            acks.join(format!("w{w}.ack")).display().to_string(),
            "--writer".into(),
            w.to_string(),
            "--lines".into(),
            a.lines.to_string(),
            "--seed".into(),
            seed.to_string(),
            "--rate".into(),
            a.rate.to_string(),
        ];
        let log = logs.join(format!("writer-{w}.log"));
        procs.push(Proc { name: format!("writer-{w}"), child: spawn(&exe, &args, &log)?, args, log, finished: false });
    }

    let mut rng = Rng::new(seed);
    let start = Instant::now();
    let mut next_kill = start + Duration::from_millis(300 + rng.below(500));
    let mut kills: HashMap<&'static str, u32> = HashMap::new();
    let mut killed = 0u32;
    let mut last_progress = Instant::now();
    loop {
        for p in procs.iter_mut().filter(|p| !p.finished) {
            if let Some(st) = p.child.try_wait().map_err(|e| Error::io("waiting for a child", e))? {
                if !st.success() {
                    let log = fs::read_to_string(&p.log).unwrap_or_default();
                    eprintln!("demo: {} failed ({st}); its log:\n{log}", p.name);
                    kill_all(&mut procs);
                    return Ok(ExitCode::FAILURE);
                }
                p.finished = true;
            }
        }
        let writers_done = procs.iter().filter(|p| p.name.starts_with("writer")).all(|p| p.finished);
        if killed < a.kills && Instant::now() >= next_kill {
            let live: Vec<usize> = (0..procs.len()).filter(|&i| !procs[i].finished).collect();
            let victim = live[rng.below(live.len() as u64) as usize];
            let p = &mut procs[victim];
            let _ = p.child.kill(); // SIGKILL
            let _ = p.child.wait();
            *kills.entry(if p.name.starts_with("writer") { "writer" } else { "compactor" }).or_default() += 1;
            killed += 1;
            say!("  [{:5.1}s] SIGKILL {} (pid {}); restarting it", start.elapsed().as_secs_f64(), p.name, p.child.id());
            p.child = spawn(&exe, &p.args, &p.log)?;
            next_kill = Instant::now() + Duration::from_millis(150 + rng.below(600));
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let acked: u64 = (1..=a.writers).map(|w| ack::last_index(&acks.join(format!("w{w}.ack")))).sum();
            say!(
                "  [{:5.1}s] acknowledged {acked:>7} | committed {:>7} | kills {killed}/{}",
                start.elapsed().as_secs_f64(),
                committed_lines(&target),
                a.kills
            );
        }
        if writers_done && killed >= a.kills {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the compactors finish the backlog, then stop them cleanly.
    let total = u64::from(a.writers) * a.lines;
    let wait_until = Instant::now() + Duration::from_secs(60);
    while committed_lines(&target) < total && Instant::now() < wait_until {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in procs.iter_mut().filter(|p| !p.finished) {
        let _ = tributary_harness::os::send_signal(p.child.id(), libc::SIGTERM);
        let _ = p.child.wait();
    }
    // A final drain of anything left (none, unless the compactors were too slow).
    let final_drain = Compactor::new(&target, CompactorOptions::default())?.drain_spool(&spool)?;
    let elapsed = start.elapsed().as_secs_f64();

    let check = check_target(&target, &acks, a.writers, a.lines, seed)?;
    let v = verify(&target)?;
    let lines_per_s = check.lines as f64 / elapsed;
    say!("\nresult:");
    say!("  lines in target:        {}", check.lines);
    say!("  acknowledged lines:     {}", check.acked);
    say!(
        "  throughput:             {lines_per_s:.0} lines/s end to end (writers paced at {}/s each; --rate 0 unpaces)",
        a.rate
    );
    say!(
        "  kills survived:         {killed} ({} writers, {} compactors)",
        kills.get("writer").copied().unwrap_or(0),
        kills.get("compactor").copied().unwrap_or(0)
    );
    say!("  lost:                   {}", check.lost);
    say!("  duplicated:             {}", check.duplicated);
    say!("  torn or foreign:        {}", check.torn);
    say!("  out of order:           {}", check.out_of_order);
    say!("  final drain moved:      {} lines", final_drain.lines);
    say!("  verify:                 {}", if v.is_consistent() { "ok".to_string() } else { v.problems.join("; ") });
    let ok = check.exactly_once() && v.is_consistent() && check.lines == total;
    if !ok {
        if check.lines != total {
            eprintln!("demo: FAILED: expected {total} lines, found {}", check.lines);
        }
        eprintln!("demo: FAILED (seed {seed}); files kept in {}", dir.display());
        return Ok(ExitCode::FAILURE);
    }
    say!("demo: PASSED: every acknowledged line exactly once, in order, nothing torn (seed {seed})");
    say!("  try: tributary tail --target {} | head", target.display());
    Ok(ExitCode::SUCCESS)
}

fn kill_all(procs: &mut [Proc]) {
    for p in procs.iter_mut().filter(|p| !p.finished) {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
}

/// The target against the writers' ack files, with the harness's checker: every
/// acknowledged line exactly once, in per-writer order, nothing torn, nothing a writer
/// did not attempt (an unacknowledged line, killed between its commit and its ack, may
/// be there once). Every acknowledged line missing counts as lost (`drained_seq` is
/// not consulted: the demo reports no "held" apart).
fn check_target(target: &Path, acks: &Path, writers: u32, lines: u64, seed: u64) -> Result<Verdict, Error> {
    let bytes = fs::read(target).map_err(|e| Error::io(format!("reading {}", target.display()), e))?;
    let ws: Vec<check::Writer> = (1..=writers)
        .map(|w| check::Writer {
            id: w,
            lines,
            acked: ack::read(&acks.join(format!("w{w}.ack"))),
            drained_seq: u64::MAX,
            full: true,
        })
        .collect();
    Ok(check::check(&Lines::letters(seed), &[&bytes], &ws, &Allow::default()))
}
