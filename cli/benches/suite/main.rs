//! tributary's side-by-side benchmark suite (issue 6). See `docs/benchmarks.md`.
//!
//! `cargo bench --bench suite` measures, in ONE run, the baselines (raw rusqlite, the
//! seed's `flock` + append design with real processes, `cat` + `sync`) and tributary's
//! figures for targets 1–6, each as a ratio against a baseline measured in the same run
//! (interleaved repetitions, medians). It prints a table and writes `BENCHMARKS.md`,
//! `target/bench/writers.csv` and `docs/bench-writers.png` (via `scripts/plot-bench.py`).
//!
//! `cargo bench --bench suite -- --quick` (or `TRIB_BENCH_QUICK=1`) is a ~1 minute
//! smoke run; it writes its report under `target/bench/` and leaves BENCHMARKS.md alone.
//! `-- --only t1,t4` runs some sections (a partial report, also under target/bench/).
//!
//! Only tributary's public API and the `tributary` CLI are used, so the suite keeps
//! working while the internals change. Multi-process baselines re-exec this binary
//! with `--trib-bench-child`. Benchmarks only report: nothing here asserts on time.
//!
//! This file owns the configuration, the child modes, the order of the sections and
//! the run; the modules are split by what they measure (`append`, `seed`, `disk`,
//! `drain`, `e2e`) and what they share (`files`, `stats`, `report`).

mod append;
mod disk;
mod drain;
mod e2e;
mod files;
mod report;
mod seed;
mod stats;

use append::*;
use disk::*;
use drain::*;
use e2e::*;
use files::*;
use report::*;
use seed::*;
use stats::*;

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use tributary::{Compactor, CompactorOptions, Durability, Journal, JournalOptions, Reader};

const CHILD_FLAG: &str = "--trib-bench-child";
/// Payload bytes of every benchmark line (the `\n` comes on top).
const LINE_LEN: usize = 100;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TRIBUTARY_EXE: &str = env!("CARGO_BIN_EXE_tributary");
const SECTIONS: [&str; 7] = ["t1", "t2", "seed", "t3", "t6", "t4", "t5"];

type R<T> = std::result::Result<T, String>;

trait Ctx<T> {
    fn ctx(self, what: &str) -> R<T>;
}

impl<T, E: std::fmt::Display> Ctx<T> for std::result::Result<T, E> {
    fn ctx(self, what: &str) -> R<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

// ---------------------------------------------------------------------------------
// Configuration

struct Cfg {
    quick: bool,
    only: Option<Vec<String>>,
    /// Length of one timed throughput run.
    secs: f64,
    /// Repetitions of every interleaved pair.
    reps: usize,
    /// Repetitions for target 1, whose two sides are nearly the same physical operation
    /// (one SQLite WAL commit and its fsync each): a ratio near 1.0 needs more samples
    /// than the others for a stable verdict.
    reps_t1: usize,
    writer_counts: Vec<usize>,
    /// Payload bytes of the template spool that drain-vs-cat repetitions copy.
    drain_bytes: u64,
    /// Journals in a drained spool.
    drain_journals: usize,
    /// Largest backlog for the RSS figure (the 2 GB), and the time it may take.
    backlog_max: u64,
    backlog_budget_secs: f64,
    /// Payload bytes appended for the disk-size figure.
    disk_bytes: u64,
    e2e_secs: f64,
    e2e_warmup_secs: f64,
    e2e_rate: f64,
    /// Journals in the end-to-end spool, and writer threads per journal.
    e2e_journals: usize,
    e2e_threads_per_journal: usize,
    root: PathBuf,
    dir: PathBuf,
    md: PathBuf,
    png: PathBuf,
    csv: PathBuf,
    command: String,
}

impl Cfg {
    fn new(args: &[String]) -> R<Cfg> {
        let quick = args.iter().any(|a| a == "--quick") || env_flag("TRIB_BENCH_QUICK");
        let only: Option<Vec<String>> = args
            .iter()
            .position(|a| a == "--only")
            .map(|i| args.get(i + 1).map(|s| s.split(',').map(|x| x.trim().to_string()).collect()).unwrap_or_default());
        if let Some(o) = &only {
            for s in o {
                if !SECTIONS.contains(&s.as_str()) {
                    return Err(format!("--only: unknown section `{s}` (known: {})", SECTIONS.join(",")));
                }
            }
        }
        let root = repo_root();
        let dir = bench_dir();
        let partial = quick || only.is_some();
        let (md, png) = if partial {
            let tag = if quick { "quick" } else { "partial" };
            (dir.join(format!("BENCHMARKS.{tag}.md")), dir.join(format!("bench-writers.{tag}.png")))
        } else {
            (root.join("BENCHMARKS.md"), root.join("docs/bench-writers.png"))
        };
        let mut command = String::from("cargo bench --bench suite");
        let extra: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "--bench").collect();
        if !extra.is_empty() {
            command += &format!(" -- {}", extra.join(" "));
        }
        if env_flag("TRIB_BENCH_QUICK") {
            command = format!("TRIB_BENCH_QUICK=1 {command}");
        }
        let c = Cfg {
            quick,
            only,
            secs: if quick { 0.3 } else { 1.0 },
            reps: if quick { 2 } else { 7 },
            reps_t1: if quick { 2 } else { 21 },
            writer_counts: vec![1, 2, 4, 8, 16],
            drain_bytes: if quick { 32 * MIB } else { 256 * MIB },
            drain_journals: 4,
            backlog_max: if quick { 128 * MIB } else { 2 * GIB },
            backlog_budget_secs: if quick { 12.0 } else { 150.0 },
            disk_bytes: if quick { 10_000_000 } else { 100_000_000 },
            e2e_secs: if quick { 3.0 } else { 10.0 },
            e2e_warmup_secs: if quick { 0.5 } else { 1.0 },
            e2e_rate: 10_000.0,
            e2e_journals: 4,
            e2e_threads_per_journal: 4,
            csv: dir.join("writers.csv"),
            root,
            dir,
            md,
            png,
            command,
        };
        Ok(c)
    }

    fn runs(&self, section: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.iter().any(|s| s == section))
    }

    /// A fresh, empty folder under target/bench/.
    fn fresh_dir(&self, name: &str) -> R<PathBuf> {
        let d = self.dir.join(name);
        if d.exists() {
            fs::remove_dir_all(&d).ctx(&format!("removing {}", d.display()))?;
        }
        fs::create_dir_all(&d).ctx(&format!("creating {}", d.display()))?;
        Ok(d)
    }
}

/// The repository (the workspace root: this suite is in its `cli/` package), where
/// BENCHMARKS.md, docs/ and scripts/ are.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ is inside the repository").to_path_buf()
}

/// `target/bench/` of the target folder this binary was built in (local disk).
fn bench_dir() -> PathBuf {
    let root = repo_root();
    std::env::current_exe()
        .ok()
        .and_then(|e| e.ancestors().nth(3).map(Path::to_path_buf))
        .filter(|t| t.join("CACHEDIR.TAG").exists())
        .unwrap_or_else(|| root.join("target"))
        .join("bench")
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Child mode: `--trib-bench-child seed FILE SECS DURABLE`.
fn child_main(args: &[String]) -> i32 {
    let r = match args {
        [kind, file, secs, durable] if kind == "seed" => match secs.parse::<f64>() {
            Ok(secs) => seed_child(Path::new(file), secs, durable == "1"),
            Err(e) => Err(format!("bad SECS: {e}")),
        },
        [kind, poll, log, cmd @ ..] if kind == "rss" && !cmd.is_empty() => rss_child(poll == "1", Path::new(log), cmd),
        [kind, what, rest @ ..] if kind == "profile" => profile_child(what, rest),
        _ => Err(format!("unknown child mode {args:?}")),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("suite child: {e}");
            1
        }
    }
}

/// Child mode `profile WHAT [N] SECS`: one workload alone, for `perf`/`strace`:
/// `append` (1 thread), `threads N`, `batch` (append_batch of 1000), `sqlite N` (raw
/// rusqlite, N rows per transaction), `seed N` (seed durable design, N processes);
/// `fill MIB DIR` leaves a spool of 4 journals in DIR (then profile `tributary drain`).
fn profile_child(what: &str, rest: &[String]) -> R<()> {
    let num = |i: usize| -> R<f64> {
        rest.get(i).ok_or_else(|| format!("profile {what}: missing argument {i}"))?.parse::<f64>().ctx("a number")
    };
    if what == "fill" {
        // `profile fill MIB DIR`: leave a 4-journal spool in DIR, to profile a drain of it.
        let spool = PathBuf::from(rest.get(1).ok_or("profile fill MIB DIR: missing DIR")?);
        fs::create_dir_all(&spool).ctx("creating the spool")?;
        let t = fill_spool(&spool, 4, num(0)? as u64 * MIB)?;
        println!("filled {} with {} MiB in {:.2}s", spool.display(), num(0)?, t.as_secs_f64());
        return Ok(());
    }
    let dir = bench_dir().join(format!("profile-{}", std::process::id()));
    fs::create_dir_all(&dir).ctx("creating the profile folder")?;
    let run = match what {
        "append" => journal_threads(&dir.join("p.journal"), 1, num(0)?),
        "threads" => journal_threads(&dir.join("p.journal"), num(0)? as usize, num(1)?),
        "batch" => journal_batches(&dir.join("p.journal"), num(0)?, 1000),
        "sqlite" => sqlite_rows(&dir.join("p.db"), num(1)?, num(0)? as usize),
        "seed" => seed_procs(&dir.join("seed.log"), num(0)? as usize, num(1)?, true),
        _ => Err(format!("unknown profile workload `{what}` (append, threads, batch, sqlite, seed)")),
    };
    let _ = fs::remove_dir_all(&dir);
    let run = run?;
    println!(
        "{what}: {} lines in {:.2}s = {}, p99 {}",
        run.lines,
        run.secs,
        fmt_rate(run.rate(), "lines"),
        fmt_ms(run.p99_ms())
    );
    Ok(())
}

fn section(name: &str) {
    println!("\n== {name}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD_FLAG) {
        std::process::exit(child_main(&args[1..]));
    }
    let benching = args.iter().any(|a| a == "--bench");
    if !benching && !args.iter().any(|a| a == "--quick") && !env_flag("TRIB_BENCH_QUICK") {
        println!("suite: skipped (run `cargo bench --bench suite`, or set TRIB_BENCH_QUICK=1 for a smoke run)");
        return;
    }
    let cfg = match Cfg::new(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("suite: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = fs::create_dir_all(&cfg.dir) {
        eprintln!("suite: creating {}: {e}", cfg.dir.display());
        std::process::exit(1);
    }
    let started = utc_now();
    let load0 = loadavg();
    let t0 = Instant::now();
    println!(
        "tributary benchmark suite ({}) — bench folder {}",
        if cfg.quick { "quick" } else { "full" },
        cfg.dir.display()
    );
    let mut rep = Report::default();
    type Section = fn(&Cfg, &mut Report) -> R<()>;
    let sections: [(&str, &str, Section); 7] = [
        ("t1", "1", t1),
        ("t2", "2", t2),
        ("seed", "seed", seed_non_durable),
        ("t3", "3", t3),
        ("t6", "6", t6),
        ("t4", "4", t4),
        ("t5", "5", t5),
    ];
    for (name, id, f) in sections {
        if !cfg.runs(name) {
            continue;
        }
        let s = Instant::now();
        if let Err(e) = f(&cfg, &mut rep) {
            eprintln!("  section {name} failed: {e}");
            let id: &'static str = id;
            rep.targets.push(TargetRow::error(id, &format!("section {name}"), &e));
        }
        println!("  ({name}: {:.1}s)", s.elapsed().as_secs_f64());
    }
    let plotted = if rep.writers.is_empty() {
        Err("no writer-scaling figures in this run".to_string())
    } else {
        section("plot");
        plot(&cfg)
    };
    if let Err(e) = &plotted {
        println!("  plot skipped: {e}");
    }
    for name in ["t1", "t2", "seed", "t3", "t4", "t5", "t6"] {
        if !(name == "t5" && env_flag("TRIB_BENCH_KEEP")) {
            let _ = fs::remove_dir_all(cfg.dir.join(name));
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let md = render(&cfg, &rep, &started, secs, (&load0, &loadavg()), &plotted);
    println!("\n{md}");
    match fs::write(&cfg.md, &md) {
        Ok(()) => println!("wrote {} ({:.1} min)", cfg.md.display(), secs / 60.0),
        Err(e) => {
            eprintln!("suite: writing {}: {e}", cfg.md.display());
            std::process::exit(1);
        }
    }
}
