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
use tributary::{Durability, Journal, JournalOptions, Reader};

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

// ---------------------------------------------------------------------------------
// Statistics and formatting

/// One timed run: lines done, wall seconds, per-operation waits in microseconds.
#[derive(Default, Clone)]
struct Run {
    lines: u64,
    secs: f64,
    lat_us: Vec<u32>,
}

impl Run {
    fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.lines as f64 / self.secs
        } else {
            0.0
        }
    }

    fn p99_ms(&self) -> f64 {
        quantile_us(&self.lat_us, 0.99) / 1000.0
    }
}

fn quantile_us(v: &[u32], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[i] as f64
}

/// Median of the per-repetition ratios a[i] / b[i] (each pair ran back to back, so slow
/// drifts of the machine's load cancel out better than in a ratio of medians).
fn paired_ratio(a: &[f64], b: &[f64]) -> f64 {
    median(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>())
}

fn rates(runs: &[Run]) -> Vec<f64> {
    runs.iter().map(Run::rate).collect()
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Median throughput and median p99 of several runs.
#[derive(Clone, Copy)]
struct Fig {
    rate: f64,
    p99_ms: f64,
    /// Slowest and fastest repetition.
    lo: f64,
    hi: f64,
}

impl Fig {
    fn of(runs: &[Run]) -> Fig {
        Fig {
            rate: median(&runs.iter().map(Run::rate).collect::<Vec<_>>()),
            p99_ms: median(&runs.iter().map(Run::p99_ms).collect::<Vec<_>>()),
            lo: runs.iter().map(Run::rate).fold(f64::INFINITY, f64::min),
            hi: runs.iter().map(Run::rate).fold(0.0, f64::max),
        }
    }
}

fn fmt_rate(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v >= 1e6 {
        format!("{:.2} M {unit}/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k {unit}/s", v / 1e3)
    } else {
        format!("{v:.0} {unit}/s")
    }
}

/// A median rate with the range of the repetitions: "3.8 k rows/s (0.5–5.1 k)".
fn fig_rate(f: &Fig, unit: &str) -> String {
    let (scale, suffix) = if f.hi >= 1e6 {
        (1e6, " M")
    } else if f.hi >= 1e3 {
        (1e3, " k")
    } else {
        (1.0, "")
    };
    format!("{} ({:.1}–{:.1}{suffix})", fmt_rate(f.rate, unit), f.lo / scale, f.hi / scale)
}

fn fmt_mbs(bytes_per_s: f64) -> String {
    format!("{:.0} MB/s", bytes_per_s / 1e6)
}

fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        "–".into()
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn fmt_size(b: u64) -> String {
    if b >= GIB && b.is_multiple_of(GIB) {
        format!("{} GiB", b / GIB)
    } else if b >= MIB {
        format!("{:.0} MiB", b as f64 / MIB as f64)
    } else {
        format!("{b} B")
    }
}

// ---------------------------------------------------------------------------------
// The report

enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    fn check(&self, v: f64) -> Option<bool> {
        if !v.is_finite() {
            return None;
        }
        Some(match self {
            Goal::AtLeast(g) => v >= *g,
            Goal::AtMost(g) => v <= *g,
        })
    }
}

struct TargetRow {
    id: &'static str,
    what: String,
    tributary: String,
    baseline: String,
    ratio: String,
    target: String,
    pass: Option<bool>,
}

impl TargetRow {
    #[allow(clippy::too_many_arguments)]
    fn ratio(
        id: &'static str,
        what: &str,
        tributary: String,
        baseline: String,
        ratio: f64,
        goal: Goal,
        target: &str,
    ) -> TargetRow {
        TargetRow {
            id,
            what: what.into(),
            tributary,
            baseline,
            ratio: if ratio.is_finite() { format!("{ratio:.2}×") } else { "–".into() },
            target: target.into(),
            pass: goal.check(ratio),
        }
    }

    fn absolute(id: &'static str, what: &str, tributary: String, value: f64, goal: Goal, target: &str) -> TargetRow {
        TargetRow {
            id,
            what: what.into(),
            tributary,
            baseline: "(absolute)".into(),
            ratio: "–".into(),
            target: target.into(),
            pass: goal.check(value),
        }
    }

    fn error(id: &'static str, what: &str, err: &str) -> TargetRow {
        TargetRow {
            id,
            what: what.into(),
            tributary: format!("error: {}", err.replace('|', "/")),
            baseline: "–".into(),
            ratio: "–".into(),
            target: "–".into(),
            pass: None,
        }
    }
}

#[derive(Default)]
struct Report {
    targets: Vec<TargetRow>,
    /// (baseline, figure, p99 wait, how)
    baselines: Vec<[String; 4]>,
    /// writers, tributary fig, seed fig
    writers: Vec<(usize, Fig, Fig, f64)>,
    notes: Vec<String>,
    /// p99 of one durable single-row SQLite commit in this run (the disk's fsync floor).
    commit_p99_ms: Option<f64>,
}

impl Report {
    fn baseline(&mut self, name: &str, figure: String, p99: String, how: &str) {
        self.baselines.push([name.into(), figure, p99, how.into()]);
    }

    /// Say so when the ratio of the medians tells another story than the paired ratio.
    fn ratio_check(&mut self, id: &str, paired: f64, of_medians: f64) {
        let far = paired.is_finite() && of_medians.is_finite() && (of_medians / paired - 1.0).abs() > 0.25;
        if far {
            self.note(format!(
                "target {id}: the ratio of the two medians is {of_medians:.2}× while the median of the paired \
                 per-repetition ratios (the Ratio column) is {paired:.2}× — the machine's speed changed between \
                 repetitions; the per-repetition figures are in the bench's output"
            ));
        }
    }

    fn note(&mut self, s: String) {
        println!("  note: {s}");
        self.notes.push(s);
    }
}

fn md_table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            s += &format!(" {c}{} |", " ".repeat(pad));
        }
        s + "\n"
    };
    let mut out = line(&head.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    out += &line(&w.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>());
    for r in rows {
        out += &line(r);
    }
    out
}

// ---------------------------------------------------------------------------------
// Lines and files

fn make_line(tag: &str, i: u64) -> Vec<u8> {
    const PAD: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    let mut l = format!("{tag} {i:012} ").into_bytes();
    let mut k = 0;
    while l.len() < LINE_LEN {
        l.push(PAD[(i as usize + k) % PAD.len()]);
        k += 1;
    }
    l.truncate(LINE_LEN);
    l
}

fn make_lines(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n as u64).map(|i| make_line(tag, i)).collect()
}

fn sqlite_files(p: &Path) -> [PathBuf; 3] {
    let s = p.as_os_str().to_string_lossy();
    [p.to_path_buf(), PathBuf::from(format!("{s}-wal")), PathBuf::from(format!("{s}-shm"))]
}

fn remove_db(p: &Path) {
    for f in sqlite_files(p) {
        let _ = fs::remove_file(f);
    }
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn sync_all_filesystems() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

// ---------------------------------------------------------------------------------
// Baselines and tributary runs

/// Raw rusqlite: WAL, synchronous=FULL, a prepared INSERT; `per_tx` rows per transaction.
fn sqlite_rows(path: &Path, secs: f64, per_tx: usize) -> R<Run> {
    remove_db(path);
    let conn = Connection::open(path).ctx("opening the rusqlite baseline")?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).ctx("journal_mode=WAL")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("rusqlite baseline: WAL refused ({mode})"));
    }
    conn.execute_batch("PRAGMA synchronous=FULL; CREATE TABLE lines(seq INTEGER PRIMARY KEY, line BLOB NOT NULL);")
        .ctx("creating the baseline table")?;
    let lines = make_lines("sqlite", 1000);
    let mut stmt = conn.prepare("INSERT INTO lines(line) VALUES (?1)").ctx("preparing")?;
    let mut run = Run::default();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut i = 0usize;
    while Instant::now() < deadline {
        let t = Instant::now();
        if per_tx == 1 {
            stmt.execute([&lines[i % lines.len()]]).ctx("insert")?;
            i += 1;
        } else {
            conn.execute_batch("BEGIN").ctx("begin")?;
            for _ in 0..per_tx {
                stmt.execute([&lines[i % lines.len()]]).ctx("insert")?;
                i += 1;
            }
            conn.execute_batch("COMMIT").ctx("commit")?;
        }
        run.lat_us.push(t.elapsed().as_micros() as u32);
        run.lines += per_tx as u64;
    }
    run.secs = start.elapsed().as_secs_f64();
    drop(stmt);
    drop(conn);
    remove_db(path);
    Ok(run)
}

/// `threads` threads share ONE durable Journal handle, each appending single lines.
fn journal_threads(path: &Path, threads: usize, secs: f64) -> R<Run> {
    remove_db(path);
    let j = Arc::new(Journal::open(path, JournalOptions::default()).ctx("Journal::open")?);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|k| {
            let (j, barrier) = (Arc::clone(&j), Arc::clone(&barrier));
            std::thread::spawn(move || -> R<Run> {
                let lines = make_lines(&format!("thread{k:02}"), 256);
                let mut run = Run { lat_us: Vec::with_capacity(16_384), ..Run::default() };
                barrier.wait();
                let start = Instant::now();
                let deadline = start + Duration::from_secs_f64(secs);
                let mut i = 0usize;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    j.append(&lines[i % lines.len()]).ctx("Journal::append")?;
                    run.lat_us.push(t.elapsed().as_micros() as u32);
                    i += 1;
                }
                run.lines = i as u64;
                run.secs = start.elapsed().as_secs_f64();
                Ok(run)
            })
        })
        .collect();
    let mut total = Run::default();
    let mut err = None;
    for h in handles {
        match h.join().map_err(|_| "a writer thread panicked".to_string()).and_then(|r| r) {
            Ok(r) => {
                total.lines += r.lines;
                total.secs = total.secs.max(r.secs);
                total.lat_us.extend(r.lat_us);
            }
            Err(e) => err = Some(e),
        }
    }
    drop(j);
    remove_db(path);
    match err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// `append_batch` of `batch` lines per call, for `secs`.
fn journal_batches(path: &Path, secs: f64, batch: usize) -> R<Run> {
    remove_db(path);
    let j = Journal::open(path, JournalOptions::default()).ctx("Journal::open")?;
    let lines = make_lines("batch", batch);
    let mut run = Run::default();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        let t = Instant::now();
        j.append_batch(&lines).ctx("Journal::append_batch")?;
        run.lat_us.push(t.elapsed().as_micros() as u32);
        run.lines += batch as u64;
    }
    run.secs = start.elapsed().as_secs_f64();
    drop(j);
    remove_db(path);
    Ok(run)
}

/// The seed's design with `procs` real processes (this binary re-executed): per line
/// `flock(LOCK_EX)`, one `write` to an O_APPEND file, `fdatasync` if `durable`, unlock.
fn seed_procs(file: &Path, procs: usize, secs: f64, durable: bool) -> R<Run> {
    let _ = fs::remove_file(file);
    let exe = std::env::current_exe().ctx("current_exe")?;
    let mut kids = Vec::new();
    for _ in 0..procs {
        let child = Command::new(&exe)
            .arg(CHILD_FLAG)
            .arg("seed")
            .arg(file)
            .arg(secs.to_string())
            .arg(if durable { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .ctx("spawning a seed writer process")?;
        kids.push(child);
    }
    let mut outs = Vec::new();
    for k in &mut kids {
        let mut out = BufReader::new(k.stdout.take().expect("piped"));
        let mut s = String::new();
        out.read_line(&mut s).ctx("reading a child's ready line")?;
        if s.trim() != "ready" {
            return Err(format!("seed child said `{}` instead of ready", s.trim()));
        }
        outs.push(out);
    }
    for k in &mut kids {
        k.stdin.as_mut().expect("piped").write_all(b"go\n").ctx("starting a child")?;
    }
    let mut total = Run::default();
    for (k, mut out) in kids.iter_mut().zip(outs) {
        let mut text = String::new();
        out.read_to_string(&mut text).ctx("reading a child's result")?;
        let status = k.wait().ctx("waiting for a child")?;
        if !status.success() {
            return Err(format!("seed child failed: {status}"));
        }
        let mut it = text.lines();
        let done: Vec<u64> = it
            .next()
            .and_then(|l| l.strip_prefix("done "))
            .map(|l| l.split(' ').filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default();
        if done.len() != 2 {
            return Err(format!("bad seed child output: {text:?}"));
        }
        total.lines += done[0];
        total.secs = total.secs.max(done[1] as f64 / 1e9);
        if let Some(l) = it.next().and_then(|l| l.strip_prefix("lat")) {
            total.lat_us.extend(l.split(' ').filter_map(|x| x.parse::<u32>().ok()));
        }
    }
    let want = total.lines * (LINE_LEN as u64 + 1);
    let got = file_len(file);
    let _ = fs::remove_file(file);
    if got != want {
        return Err(format!("seed design wrote {got} bytes, expected {want}"));
    }
    Ok(total)
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

fn seed_child(file: &Path, secs: f64, durable: bool) -> R<()> {
    let f = OpenOptions::new().append(true).create(true).open(file).ctx("opening the seed file")?;
    let fd = f.as_raw_fd();
    let lines: Vec<Vec<u8>> = make_lines(&format!("seed{:07}", std::process::id()), 256)
        .into_iter()
        .map(|mut l| {
            l.push(b'\n');
            l
        })
        .collect();
    let mut stdout = std::io::stdout();
    stdout.write_all(b"ready\n").and_then(|_| stdout.flush()).ctx("writing ready")?;
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).ctx("waiting for go")?;
    let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut n = 0usize;
    while Instant::now() < deadline {
        let t = Instant::now();
        let line = &lines[n % lines.len()];
        // SAFETY: `fd` is an open descriptor owned by `f`, which outlives these calls;
        // `line` is a valid buffer of `line.len()` bytes.
        unsafe {
            if libc::flock(fd, libc::LOCK_EX) != 0 {
                return Err(format!("flock: {}", std::io::Error::last_os_error()));
            }
            let w = libc::write(fd, line.as_ptr().cast(), line.len());
            if w != line.len() as isize {
                return Err(format!("write: {}", std::io::Error::last_os_error()));
            }
            if durable && libc::fdatasync(fd) != 0 {
                return Err(format!("fdatasync: {}", std::io::Error::last_os_error()));
            }
            libc::flock(fd, libc::LOCK_UN);
        }
        if durable {
            lat.push(t.elapsed().as_micros() as u32);
        }
        n += 1;
    }
    let elapsed = start.elapsed().as_nanos();
    let mut out = format!("done {n} {elapsed}\nlat");
    for l in &lat {
        let _ = write!(out, " {l}");
    }
    out.push('\n');
    stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()).ctx("writing the result")
}

/// Fill `journals` journals in `spool` (one thread each, durability `normal`, batches of
/// 10k lines) with `payload` bytes in total. Returns the wall time.
fn fill_spool(spool: &Path, journals: usize, payload: u64) -> R<Duration> {
    let per_journal_lines = payload / LINE_LEN as u64 / journals as u64;
    let start = Instant::now();
    let handles: Vec<_> = (0..journals)
        .map(|k| {
            let path = spool.join(format!("w{k:02}.journal"));
            std::thread::spawn(move || -> R<()> {
                let opts = JournalOptions { durability: Durability::Normal, ..JournalOptions::default() };
                let j = Journal::open(&path, opts).ctx("Journal::open (fill)")?;
                let batch = make_lines(&format!("fill{k:02}"), 10_000);
                let mut done = 0u64;
                while done < per_journal_lines {
                    let n = (per_journal_lines - done).min(batch.len() as u64) as usize;
                    j.append_batch(&batch[..n]).ctx("append_batch (fill)")?;
                    done += n as u64;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "a fill thread panicked".to_string())??;
    }
    Ok(start.elapsed())
}

/// Child mode `rss POLL LOG CMD ARGS...`: run CMD (stderr to LOG), time it, and report
/// its peak RSS: VmHWM from /proc/<pid>/status (sampled every 2 ms with POLL=1) and
/// wait4's ru_maxrss. This small, freshly exec'd wrapper spawns CMD, not the big bench
/// process: a vfork'd child's ru_maxrss starts at its parent's high-water mark.
fn rss_child(poll: bool, log: &Path, cmd: &[String]) -> R<()> {
    let err = File::create(log).ctx("creating a log file")?;
    let self_hwm = vmhwm_kib(std::process::id()).unwrap_or(0);
    let start = Instant::now();
    let child = Command::new(&cmd[0]).args(&cmd[1..]).stdout(Stdio::null()).stderr(err).spawn().ctx("spawning")?;
    let pid = child.id();
    let mut hwm = 0u64;
    // SAFETY: all-zero is a valid `rusage`.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0i32;
    loop {
        let flags = if poll { libc::WNOHANG } else { 0 };
        // SAFETY: `pid` is our own child, not yet reaped (std's Child is never waited
        // on); `status` and `ru` are valid, writable out-parameters.
        let r = unsafe { libc::wait4(pid as i32, &mut status, flags, &mut ru) };
        if r == pid as i32 {
            break;
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("wait4: {e}"));
        }
        if let Some(v) = vmhwm_kib(pid) {
            hwm = hwm.max(v);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let ns = start.elapsed().as_nanos();
    drop(child);
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    println!("rss {ns} {hwm} {} {self_hwm} {code}", ru.ru_maxrss);
    Ok(())
}

/// Result of one whole-process run.
struct ProcRun {
    secs: f64,
    /// Peak RSS: max of the sampled VmHWM and ru_maxrss, KiB.
    peak_kib: u64,
    vmhwm_kib: u64,
    maxrss_kib: u64,
    /// The wrapper's own high-water mark (a floor under ru_maxrss).
    wrapper_kib: u64,
}

fn vmhwm_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Run `cmd` to completion through the `rss` wrapper child: wall time and peak RSS.
fn run_timed(cmd: &[&std::ffi::OsStr], poll_rss: bool, log: &Path) -> R<ProcRun> {
    let exe = std::env::current_exe().ctx("current_exe")?;
    let out = Command::new(exe)
        .arg(CHILD_FLAG)
        .arg("rss")
        .arg(if poll_rss { "1" } else { "0" })
        .arg(log)
        .args(cmd)
        .stderr(Stdio::inherit())
        .output()
        .ctx("running the rss wrapper")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .trim()
        .strip_prefix("rss ")
        .map(|l| l.split(' ').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    if !out.status.success() || v.len() != 5 {
        return Err(format!("rss wrapper failed ({}): {}", out.status, text.trim()));
    }
    if v[4] != 0 {
        let msg = fs::read_to_string(log).unwrap_or_default();
        return Err(format!("{cmd:?} exited with {}: {}", v[4], msg.trim()));
    }
    Ok(ProcRun {
        secs: v[0] as f64 / 1e9,
        peak_kib: v[1].max(v[2]),
        vmhwm_kib: v[1],
        maxrss_kib: v[2],
        wrapper_kib: v[3],
    })
}

fn cli_drain(target: &Path, spool: &Path, poll_rss: bool, log: &Path) -> R<ProcRun> {
    sync_all_filesystems();
    let cmd = [TRIBUTARY_EXE.as_ref(), "drain".as_ref(), "--target".as_ref(), target.as_os_str(), "--spool".as_ref()];
    run_timed(&[&cmd[..], &[spool.as_os_str()]].concat(), poll_rss, log)
}

/// `cat SRC > DST` (a real `cat` process) then `sync DST` (fsync), timed together.
fn cat_sync(src: &Path, dst: &Path, log: &Path) -> R<f64> {
    let _ = fs::remove_file(dst);
    sync_all_filesystems();
    let start = Instant::now();
    let out = File::create(dst).ctx("creating the cat destination")?;
    let mut cat = Command::new("cat");
    cat.arg(src).stdout(out).stderr(Stdio::inherit());
    let st = cat.status().ctx("running cat")?;
    if !st.success() {
        return Err(format!("cat failed: {st}"));
    }
    let st = Command::new("sync").arg(dst).stderr(File::create(log).ctx("log")?).status().ctx("running sync")?;
    if !st.success() {
        return Err(format!("sync {} failed: {st}", dst.display()));
    }
    Ok(start.elapsed().as_secs_f64())
}

fn copy_spool(from: &Path, to: &Path) -> R<()> {
    fs::create_dir_all(to).ctx("creating a spool")?;
    for e in fs::read_dir(from).ctx("listing the template spool")? {
        let p = e.ctx("listing")?.path();
        if let Some(name) = p.file_name() {
            fs::copy(&p, to.join(name)).ctx("copying a journal")?;
        }
    }
    Ok(())
}

fn remove_target(target: &Path) {
    let _ = fs::remove_file(target);
    let side = PathBuf::from(format!("{}.tributary", target.display()));
    let _ = fs::remove_dir_all(side);
}

fn free_bytes(dir: &Path) -> u64 {
    let c = std::ffi::CString::new(dir.as_os_str().to_string_lossy().as_bytes()).expect("no NUL");
    // SAFETY: all-zero is a valid `statvfs`; `c` is NUL-terminated and outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `st` is a valid, writable out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    st.f_bavail as u64 * st.f_frsize as u64
}

// ---------------------------------------------------------------------------------
// Sections

fn section(name: &str) {
    println!("\n== {name}");
}

/// Target 1: durable single-thread append vs raw rusqlite one row per transaction.
fn t1(cfg: &Cfg, rep: &mut Report) -> R<()> {
    section("target 1: durable single-thread append vs rusqlite 1 row/tx (FULL, WAL)");
    let d = cfg.fresh_dir("t1")?;
    let (mut base, mut trib) = (Vec::new(), Vec::new());
    for r in 0..cfg.reps_t1 {
        let one_base = || sqlite_rows(&d.join("raw.db"), cfg.secs, 1);
        let one_trib = || journal_threads(&d.join("t1.journal"), 1, cfg.secs);
        if r % 2 == 0 {
            base.push(one_base()?);
            trib.push(one_trib()?);
        } else {
            trib.push(one_trib()?);
            base.push(one_base()?);
        }
        println!(
            "  rep {r}: rusqlite {}  tributary {}",
            fmt_rate(base[r].rate(), "rows"),
            fmt_rate(trib[r].rate(), "lines")
        );
    }
    let (b, t) = (Fig::of(&base), Fig::of(&trib));
    let mut per_rep: Vec<f64> = trib.iter().zip(&base).map(|(t, b)| t.rate() / b.rate()).collect();
    per_rep.sort_by(f64::total_cmp);
    rep.note(format!(
        "target 1 ran {} repetitions (not {}): both sides are one SQLite WAL commit and its fsync, so the ratio sits near \
         1.0 and needs more samples; per-repetition ratios: min {:.2}, quartiles {:.2} / {:.2} / {:.2}, max {:.2}",
        cfg.reps_t1,
        cfg.reps,
        per_rep[0],
        per_rep[per_rep.len() / 4],
        per_rep[per_rep.len() / 2],
        per_rep[per_rep.len() * 3 / 4],
        per_rep[per_rep.len() - 1]
    ));
    rep.commit_p99_ms = Some(b.p99_ms);
    rep.ratio_check("1", paired_ratio(&rates(&trib), &rates(&base)), t.rate / b.rate);
    rep.baseline(
        "raw rusqlite, 1 row per transaction, synchronous=FULL, WAL",
        fig_rate(&b, "rows"),
        fmt_ms(b.p99_ms),
        "prepared INSERT of a 100-byte blob, autocommit; 1 thread",
    );
    rep.targets.push(TargetRow::ratio(
        "1",
        "durable single-thread `Journal::append` (100 B lines)",
        format!("{} (p99 {})", fmt_rate(t.rate, "lines"), fmt_ms(t.p99_ms)),
        format!("rusqlite 1 row/tx FULL: {}", fmt_rate(b.rate, "rows")),
        paired_ratio(&rates(&trib), &rates(&base)),
        Goal::AtLeast(1.0),
        "≥ 1.0×",
    ));
    let _ = fs::remove_dir_all(d);
    Ok(())
}

/// Target 2 and the writers plot: threads on one handle vs seed durable processes.
fn t2(cfg: &Cfg, rep: &mut Report) -> R<()> {
    section("target 2: N threads on one Journal handle vs the seed durable design with N processes");
    let d = cfg.fresh_dir("t2")?;
    let counts = &cfg.writer_counts;
    let mut trib: Vec<Vec<Run>> = vec![Vec::new(); counts.len()];
    let mut seed: Vec<Vec<Run>> = vec![Vec::new(); counts.len()];
    for r in 0..cfg.reps {
        for (ci, &n) in counts.iter().enumerate() {
            let one_seed = || seed_procs(&d.join("seed.log"), n, cfg.secs, true);
            let one_trib = || journal_threads(&d.join("t2.journal"), n, cfg.secs);
            let (s, t) = if (r + ci) % 2 == 0 {
                let s = one_seed()?;
                (s, one_trib()?)
            } else {
                let t = one_trib()?;
                (one_seed()?, t)
            };
            println!(
                "  rep {r} writers {n:2}: seed {} (p99 {})  tributary {} (p99 {})",
                fmt_rate(s.rate(), "lines"),
                fmt_ms(s.p99_ms()),
                fmt_rate(t.rate(), "lines"),
                fmt_ms(t.p99_ms())
            );
            seed[ci].push(s);
            trib[ci].push(t);
        }
    }
    for (ci, &n) in counts.iter().enumerate() {
        let ratio = paired_ratio(&rates(&trib[ci]), &rates(&seed[ci]));
        rep.writers.push((n, Fig::of(&trib[ci]), Fig::of(&seed[ci]), ratio));
    }
    let mut csv = String::from("writers,tributary_lines_per_s,tributary_p99_ms,seed_lines_per_s,seed_p99_ms\n");
    for (n, t, s, _) in &rep.writers {
        let _ = writeln!(csv, "{n},{:.1},{:.3},{:.1},{:.3}", t.rate, t.p99_ms, s.rate, s.p99_ms);
    }
    fs::write(&cfg.csv, csv).ctx("writing writers.csv")?;
    let s1 = rep.writers.iter().find(|w| w.0 == 1).map(|w| w.2);
    let last = rep.writers.iter().find(|w| w.0 == 16).copied();
    if let Some(s1) = s1 {
        rep.baseline(
            "seed design made durable, 1 process",
            fig_rate(&s1, "lines"),
            fmt_ms(s1.p99_ms),
            "per line: flock(LOCK_EX), write to O_APPEND file, fdatasync, unlock",
        );
    }
    if let Some((_, t, s, ratio)) = last {
        rep.ratio_check("2a", ratio, t.rate / s.rate);
        rep.baseline(
            "seed design made durable, 16 processes",
            fig_rate(&s, "lines"),
            fmt_ms(s.p99_ms),
            "as above, 16 real processes on one file",
        );
        rep.targets.push(TargetRow::ratio(
            "2a",
            "16 threads on ONE `Journal` handle, single durable appends",
            fmt_rate(t.rate, "lines"),
            format!("seed durable, 16 processes: {}", fmt_rate(s.rate, "lines")),
            ratio,
            Goal::AtLeast(10.0),
            "≥ 10×",
        ));
        rep.targets.push(TargetRow::absolute(
            "2b",
            "p99 wait per append, 16 threads on one handle",
            fmt_ms(t.p99_ms),
            t.p99_ms,
            Goal::AtMost(5.0),
            "≤ 5 ms",
        ));
        if let Some(c) = rep.commit_p99_ms {
            rep.note(format!(
                "2b is an absolute latency: in this run one durable single-row commit of raw rusqlite had p99 {} \
                 (section 1); a group-commit caller waits for the commit in flight and then its own, so ≤ 5 ms \
                 needs a disk whose commit p99 is about 2.5 ms or less",
                fmt_ms(c)
            ));
        }
    }
    let _ = fs::remove_dir_all(d);
    Ok(())
}

/// The seed's non-durable design, 1 and 4 processes (baselines only).
fn seed_non_durable(cfg: &Cfg, rep: &mut Report) -> R<()> {
    section("baseline: the seed's non-durable design (no fsync), 1 and 4 processes");
    let d = cfg.fresh_dir("seed")?;
    for n in [1usize, 4] {
        let mut runs = Vec::new();
        for r in 0..cfg.reps.min(3) {
            let run = seed_procs(&d.join("seed.log"), n, cfg.secs, false)?;
            println!("  rep {r} processes {n}: {}", fmt_rate(run.rate(), "lines"));
            runs.push(run);
        }
        let f = Fig::of(&runs);
        rep.baseline(
            &format!("seed design, NOT durable, {n} process{}", if n == 1 { "" } else { "es" }),
            fig_rate(&f, "lines"),
            "–".into(),
            "per line: flock, write to O_APPEND file, unlock (no fsync)",
        );
    }
    let _ = fs::remove_dir_all(d);
    Ok(())
}

/// Target 3: append_batch of 1000 × 100 B lines, FULL.
fn t3(cfg: &Cfg, rep: &mut Report) -> R<()> {
    section("target 3: append_batch of 1000 x 100-byte lines (FULL) vs rusqlite 1000 rows/tx");
    let d = cfg.fresh_dir("t3")?;
    let (mut base, mut trib) = (Vec::new(), Vec::new());
    for r in 0..cfg.reps {
        let one_base = || sqlite_rows(&d.join("raw.db"), cfg.secs, 1000);
        let one_trib = || journal_batches(&d.join("t3.journal"), cfg.secs, 1000);
        if r % 2 == 0 {
            base.push(one_base()?);
            trib.push(one_trib()?);
        } else {
            trib.push(one_trib()?);
            base.push(one_base()?);
        }
        println!(
            "  rep {r}: rusqlite {}  tributary {}",
            fmt_rate(base[r].rate(), "rows"),
            fmt_rate(trib[r].rate(), "lines")
        );
    }
    let (b, t) = (Fig::of(&base), Fig::of(&trib));
    rep.baseline(
        "raw rusqlite, 1000 rows per transaction, FULL, WAL",
        fig_rate(&b, "rows"),
        format!("{} per tx", fmt_ms(b.p99_ms)),
        "prepared INSERT, BEGIN … COMMIT around 1000 rows",
    );
    let trib_s = format!("{} (p99 {} per batch)", fmt_rate(t.rate, "lines"), fmt_ms(t.p99_ms));
    rep.ratio_check("3b", paired_ratio(&rates(&trib), &rates(&base)), t.rate / b.rate);
    rep.note(format!(
        "3a is absolute: in this run one 1000-row FULL transaction of raw rusqlite took {} at the median ({} p99); \
         1.0 M lines/s needs a 1000-line durable batch every 1 ms",
        fmt_ms(1000.0 / b.rate * 1000.0),
        fmt_ms(b.p99_ms)
    ));
    rep.targets.push(TargetRow::absolute(
        "3a",
        "`append_batch` of 1000 × 100 B lines, FULL",
        trib_s.clone(),
        t.rate,
        Goal::AtLeast(1e6),
        "≥ 1.0 M lines/s",
    ));
    rep.targets.push(TargetRow::ratio(
        "3b",
        "same, vs one SQLite row per line",
        fmt_rate(t.rate, "lines"),
        format!("rusqlite 1000 rows/tx: {}", fmt_rate(b.rate, "rows")),
        paired_ratio(&rates(&trib), &rates(&base)),
        Goal::AtLeast(1.0),
        "≥ 1.0×",
    ));
    let _ = fs::remove_dir_all(d);
    Ok(())
}

/// Target 6: journal size on disk (db + -wal) after appending and a checkpoint.
fn t6(cfg: &Cfg, rep: &mut Report) -> R<()> {
    section("target 6: journal size on disk / payload at rest");
    let d = cfg.fresh_dir("t6")?;
    let path = d.join("disk.journal");
    let j = Journal::open(&path, JournalOptions::default()).ctx("Journal::open")?;
    let lines = (cfg.disk_bytes / LINE_LEN as u64) as usize;
    let batch = make_lines("disk", 1000);
    let start = Instant::now();
    let mut done = 0;
    while done < lines {
        let n = (lines - done).min(batch.len());
        j.append_batch(&batch[..n]).ctx("append_batch")?;
        done += n;
    }
    let fill = start.elapsed().as_secs_f64();
    j.checkpoint().ctx("Journal::checkpoint")?;
    let [db, wal, _] = sqlite_files(&path);
    let (db_len, wal_len) = (file_len(&db), file_len(&wal));
    drop(j);
    let closed = file_len(&db) + file_len(&wal);
    let payload = (lines * LINE_LEN) as u64;
    let ratio = (db_len + wal_len) as f64 / payload as f64;
    println!(
        "  {} lines in {fill:.1}s; db {} B + wal {} B = {ratio:.3}x payload; after close {} B",
        lines, db_len, wal_len, closed
    );
    rep.targets.push(TargetRow::ratio(
        "6",
        &format!("journal on disk (db + -wal) ÷ payload, {} MB of 100 B lines + checkpoint", payload / 1_000_000),
        format!("{:.1} MB", (db_len + wal_len) as f64 / 1e6),
        format!("payload {:.1} MB", payload as f64 / 1e6),
        ratio,
        Goal::AtMost(1.3),
        "≤ 1.3×",
    ));
    let _ = fs::remove_dir_all(d);
    Ok(())
}

/// Target 4: `tributary drain` (whole process) vs `cat` + `sync` of the same bytes, and
/// the compactor's peak RSS while draining a large backlog.
fn t4(cfg: &Cfg, rep: &mut Report) -> R<()> {
    section("target 4: drain (tributary drain CLI) vs cat + sync of the same bytes; peak RSS on a big backlog");
    let d = cfg.fresh_dir("t4")?;
    let tmpl = d.join("template");
    fs::create_dir_all(&tmpl).ctx("creating the template spool")?;
    let fill = fill_spool(&tmpl, cfg.drain_journals, cfg.drain_bytes)?.as_secs_f64();
    let fill_rate = cfg.drain_bytes as f64 / fill;
    println!("  template spool: {} in {fill:.1}s ({})", fmt_size(cfg.drain_bytes), fmt_mbs(fill_rate));
    let cat_src = d.join("cat-src.log");
    let log = d.join("child.log");
    let (mut drain_s, mut cat_s) = (Vec::new(), Vec::new());
    let mut bytes = 0u64;
    let mut drain_rss = 0u64;
    for r in 0..cfg.reps {
        let spool = d.join(format!("spool{r}"));
        let target = d.join(format!("out{r}.log"));
        copy_spool(&tmpl, &spool)?;
        let mut one_drain = || -> R<f64> {
            let p = cli_drain(&target, &spool, false, &log)?;
            drain_rss = drain_rss.max(p.maxrss_kib);
            Ok(p.secs)
        };
        let cat_first = r % 2 == 1 && cat_src.exists();
        if cat_first {
            cat_s.push(cat_sync(&cat_src, &d.join("cat-dst.log"), &log)?);
            drain_s.push(one_drain()?);
        } else {
            drain_s.push(one_drain()?);
        }
        let len = file_len(&target);
        if bytes == 0 {
            bytes = len;
        } else if len != bytes {
            return Err(format!("drain rep {r} wrote {len} bytes, rep 0 wrote {bytes}"));
        }
        if !cat_src.exists() {
            fs::rename(&target, &cat_src).ctx("keeping the cat source")?;
        }
        if !cat_first {
            cat_s.push(cat_sync(&cat_src, &d.join("cat-dst.log"), &log)?);
        }
        println!(
            "  rep {r}: drain {:.3}s ({})  cat+sync {:.3}s ({})",
            drain_s[r],
            fmt_mbs(bytes as f64 / drain_s[r]),
            cat_s[r],
            fmt_mbs(bytes as f64 / cat_s[r])
        );
        remove_target(&target);
        let _ = fs::remove_dir_all(&spool);
        let _ = fs::remove_file(d.join("cat-dst.log"));
    }
    let expect = cfg.drain_bytes / LINE_LEN as u64 / cfg.drain_journals as u64
        * cfg.drain_journals as u64
        * (LINE_LEN as u64 + 1);
    if bytes != expect {
        return Err(format!("the drained target has {bytes} bytes, expected {expect}"));
    }
    let (dm, cm) = (median(&drain_s), median(&cat_s));
    let (drain_bps, cat_bps) = (bytes as f64 / dm, bytes as f64 / cm);
    rep.ratio_check("4a", paired_ratio(&cat_s, &drain_s), drain_bps / cat_bps);
    rep.baseline(
        &format!("`cat` of {} into a new file + `sync FILE`", fmt_size(bytes)),
        format!(
            "{} ({:.0}–{:.0})",
            fmt_mbs(cat_bps),
            bytes as f64 / cat_s.iter().fold(0.0, |a: f64, b| a.max(*b)) / 1e6,
            bytes as f64 / cat_s.iter().fold(f64::INFINITY, |a: f64, b| a.min(*b)) / 1e6
        ),
        "–".into(),
        "real cat and sync processes, same filesystem, page cache warm",
    );
    rep.targets.push(TargetRow::ratio(
        "4a",
        &format!("`tributary drain` of a {}-journal spool, whole process", cfg.drain_journals),
        format!("{} ({} in {dm:.2}s)", fmt_mbs(drain_bps), fmt_size(bytes)),
        format!("cat + sync: {}", fmt_mbs(cat_bps)),
        paired_ratio(&cat_s, &drain_s),
        Goal::AtLeast(0.8),
        "≥ 0.8×",
    ));
    let _ = fs::remove_dir_all(&tmpl);
    let _ = fs::remove_file(&cat_src);

    // The RSS figure: the largest backlog (up to 2 GiB) that fits the time budget.
    let drain_rate = cfg.drain_bytes as f64 / dm;
    let estimate = |b: u64| b as f64 / fill_rate + b as f64 / drain_rate * 1.3;
    let free = free_bytes(&d);
    let mut size = cfg.backlog_max;
    while size > cfg.drain_bytes && (estimate(size) > cfg.backlog_budget_secs || size.saturating_mul(4) > free) {
        size /= 2;
    }
    if size < cfg.backlog_max {
        rep.note(format!(
            "peak RSS measured on a {} backlog, not {}: {} would take about {:.0}s to fill and drain at this \
             run's rates (budget {:.0}s){}",
            fmt_size(size),
            fmt_size(cfg.backlog_max),
            fmt_size(cfg.backlog_max),
            estimate(cfg.backlog_max),
            cfg.backlog_budget_secs,
            if cfg.backlog_max.saturating_mul(4) > free { "; or the disk is too full" } else { "" }
        ));
    }
    let big = d.join("big");
    fs::create_dir_all(&big).ctx("creating the big spool")?;
    println!("  filling a {} backlog (estimate {:.0}s)…", fmt_size(size), estimate(size));
    let fill = fill_spool(&big, cfg.drain_journals, size)?.as_secs_f64();
    let journal_disk: u64 =
        fs::read_dir(&big).ctx("listing")?.filter_map(|e| e.ok()).map(|e| file_len(&e.path())).sum();
    let target = d.join("big.log");
    let p = cli_drain(&target, &big, true, &log)?;
    let moved = file_len(&target);
    println!(
        "  backlog {} (journals {:.0} MB on disk) filled in {fill:.1}s; drained {} MB in {:.1}s ({}); \
         VmHWM {} KiB, ru_maxrss {} KiB (wrapper floor {} KiB)",
        fmt_size(size),
        journal_disk as f64 / 1e6,
        moved / 1_000_000,
        p.secs,
        fmt_mbs(moved as f64 / p.secs),
        p.vmhwm_kib,
        p.maxrss_kib,
        p.wrapper_kib
    );
    let peak_mib = p.peak_kib as f64 / 1024.0;
    rep.targets.push(TargetRow::absolute(
        "4b",
        &format!("compactor peak RSS draining a {} backlog (`tributary drain`)", fmt_size(size)),
        format!("{peak_mib:.1} MiB ({} in {:.1}s, {})", fmt_size(size), p.secs, fmt_mbs(moved as f64 / p.secs)),
        peak_mib,
        Goal::AtMost(64.0),
        "≤ 64 MiB",
    ));
    rep.note(format!(
        "peak RSS of `tributary drain` during the {}-rep throughput runs ({}): {:.1} MiB",
        cfg.reps,
        fmt_size(bytes),
        drain_rss as f64 / 1024.0
    ));
    remove_target(&target);
    let _ = fs::remove_dir_all(d);
    Ok(())
}

/// Target 5: append → committed-in-target latency with a `tributary compact` daemon.
fn t5(cfg: &Cfg, rep: &mut Report) -> R<()> {
    section("target 5: end to end, `tributary compact --interval 100` + paced writers at 10k lines/s");
    let d = cfg.fresh_dir("t5")?;
    let spool = d.join("spool");
    fs::create_dir_all(&spool).ctx("creating the spool")?;
    let target = d.join("out.log");
    let (nj, tpj) = (cfg.e2e_journals, cfg.e2e_threads_per_journal);
    let w = nj * tpj;
    let per_writer = (cfg.e2e_rate * cfg.e2e_secs / w as f64).ceil() as usize;
    let journals: Vec<Arc<Journal>> = (0..nj)
        .map(|k| Journal::open(spool.join(format!("w{k}.journal")), JournalOptions::default()).map(Arc::new))
        .collect::<Result<_, _>>()
        .ctx("Journal::open")?;
    // Writer thread k appends to journal k % nj (tpj threads share each handle).
    let journals: Vec<Arc<Journal>> = (0..w).map(|k| Arc::clone(&journals[k % nj])).collect();
    let log = d.join("compact.log");
    let log_file = File::create(&log).ctx("log")?;
    let daemon = Command::new(TRIBUTARY_EXE)
        .args(["compact", "--verbose", "--interval", "100", "--target"])
        .arg(&target)
        .arg("--spool")
        .arg(&spool)
        .stdout(log_file.try_clone().ctx("log")?)
        .stderr(log_file)
        .spawn()
        .ctx("spawning tributary compact")?;
    let pid = daemon.id() as i32;
    let result = e2e_measure(cfg, journals, &target, per_writer);
    // SAFETY: `pid` is our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut daemon = daemon;
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = daemon.kill();
            let _ = daemon.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let m = match result {
        Ok(m) => m,
        Err(e) => {
            let l = fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("{e}; compact log: {}", l.trim()));
        }
    };
    println!(
        "  sent {} lines at {:.0} lines/s; committed-latency p50 {} p99 {} max {}; append p99 {}; missing {}",
        m.sent,
        m.achieved_rate,
        fmt_ms(m.p50_ms),
        fmt_ms(m.p99_ms),
        fmt_ms(m.max_ms),
        fmt_ms(m.append_p99_ms),
        m.missing
    );
    println!(
        "  the reader saw {} commits; gap between commits p50 {} max {}",
        m.commits,
        fmt_ms(m.gap_p50_ms),
        fmt_ms(m.gap_max_ms)
    );
    let what = format!(
        "append return → committed in target, p99 ({nj} journals × {tpj} writer threads, {:.1}k lines/s sent, {:.0}s)",
        m.achieved_rate / 1e3,
        cfg.e2e_secs
    );
    if m.missing > 0 {
        rep.targets.push(TargetRow::error("5", &what, &format!("{} lines never became visible", m.missing)));
    } else {
        rep.targets.push(TargetRow::absolute(
            "5",
            &what,
            format!("{} (p50 {}, max {})", fmt_ms(m.p99_ms), fmt_ms(m.p50_ms), fmt_ms(m.max_ms)),
            m.p99_ms,
            Goal::AtMost(150.0),
            "≤ 150 ms",
        ));
    }
    if m.achieved_rate < cfg.e2e_rate * 0.95 {
        rep.note(format!(
            "end to end: writers fell behind the 10k lines/s schedule ({:.0} lines/s achieved)",
            m.achieved_rate
        ));
    }
    rep.note(format!(
        "end to end: durable append wait p99 {} while the daemon drained; the reader saw {} commits, gap between \
         commits p50 {} max {}",
        fmt_ms(m.append_p99_ms),
        m.commits,
        fmt_ms(m.gap_p50_ms),
        fmt_ms(m.gap_max_ms)
    ));
    if !env_flag("TRIB_BENCH_KEEP") {
        let _ = fs::remove_dir_all(d);
    }
    Ok(())
}

struct E2e {
    sent: u64,
    achieved_rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    append_p99_ms: f64,
    missing: usize,
    /// Commits the reader saw, and the gaps between them.
    commits: usize,
    gap_p50_ms: f64,
    gap_max_ms: f64,
}

fn e2e_measure(cfg: &Cfg, journals: Vec<Arc<Journal>>, target: &Path, per_writer: usize) -> R<E2e> {
    let w = journals.len();
    let base = Instant::now();
    let mk = || -> Arc<Vec<Vec<AtomicU64>>> {
        Arc::new((0..w).map(|_| (0..per_writer).map(|_| AtomicU64::new(0)).collect()).collect())
    };
    let (acks, seen, sent_at) = (mk(), mk(), mk());
    let stop = Arc::new(AtomicBool::new(false));
    let total = (w * per_writer) as u64;

    // The reader: polls the target's committed part, stamps when each line shows up.
    let reader = {
        let (seen, stop, target) = (Arc::clone(&seen), Arc::clone(&stop), target.to_path_buf());
        std::thread::spawn(move || -> R<(u64, Vec<u64>)> {
            let mut r = loop {
                match Reader::open(&target, 0) {
                    Ok(r) => break r,
                    Err(_) if !stop.load(Ordering::Relaxed) => std::thread::sleep(Duration::from_millis(5)),
                    Err(e) => return Err(format!("Reader::open: {e}")),
                }
            };
            let mut count = 0u64;
            let mut last_len = 0u64;
            let mut commits = Vec::new();
            while count < total {
                if r.committed_len() != last_len {
                    last_len = r.committed_len();
                    commits.push(now_ns(base));
                }
                match r.next_line().ctx("Reader::next_line")? {
                    Some(line) => {
                        let now = now_ns(base);
                        let s = String::from_utf8_lossy(&line);
                        let mut it = s.split(' ').skip(1);
                        let (Some(wk), Some(i)) = (it.next(), it.next()) else { continue };
                        let (Ok(wk), Ok(i)) = (wk.parse::<usize>(), i.parse::<usize>()) else { continue };
                        if wk < seen.len() && i < seen[wk].len() {
                            seen[wk][i].store(now, Ordering::Relaxed);
                            count += 1;
                        }
                    }
                    None => {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            Ok((count, commits))
        })
    };

    // Paced writers: line i of writer k is due at t0 + (i*w + k) / rate.
    let t0 = Instant::now() + Duration::from_millis(200);
    let writers: Vec<_> = journals
        .into_iter()
        .enumerate()
        .map(|(k, j)| {
            let (acks, sent_at) = (Arc::clone(&acks), Arc::clone(&sent_at));
            let rate = cfg.e2e_rate;
            std::thread::spawn(move || -> R<()> {
                for i in 0..per_writer {
                    let due = t0 + Duration::from_secs_f64((i * w + k) as f64 / rate);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let sent = now_ns(base);
                    let mut line = format!("e2e {k} {i} {sent:015} ").into_bytes();
                    line.resize(LINE_LEN, b'.');
                    j.append(&line).ctx("Journal::append")?;
                    acks[k][i].store(now_ns(base), Ordering::Relaxed);
                    sent_at[k][i].store(sent, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    let mut werr = None;
    for h in writers {
        if let Err(e) = h.join().map_err(|_| "a writer panicked".to_string()).and_then(|r| r) {
            werr = Some(e);
        }
    }
    let send_secs = t0.elapsed().as_secs_f64();
    // Give the daemon time to commit the last lines, then stop the reader.
    let wait_until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < wait_until && !reader.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let (_, commits) = reader.join().map_err(|_| "the reader panicked".to_string())??;
    if let Some(e) = werr {
        return Err(e);
    }
    let warm_ns = (cfg.e2e_warmup_secs * 1e9) as u64 + t0.duration_since(base).as_nanos() as u64;
    let (mut lat, mut app) = (Vec::new(), Vec::new());
    let mut missing = 0;
    for k in 0..w {
        for i in 0..per_writer {
            let sent = sent_at[k][i].load(Ordering::Relaxed);
            let (ack, s) = (acks[k][i].load(Ordering::Relaxed), seen[k][i].load(Ordering::Relaxed));
            if s == 0 {
                missing += 1;
                continue;
            }
            if sent < warm_ns {
                continue;
            }
            lat.push((s.saturating_sub(ack) / 1000).min(u32::MAX as u64) as u32);
            app.push(((ack - sent) / 1000).min(u32::MAX as u64) as u32);
        }
    }
    let gaps: Vec<u32> = commits.windows(2).map(|w| ((w[1] - w[0]) / 1000) as u32).collect();
    Ok(E2e {
        sent: total,
        achieved_rate: total as f64 / send_secs,
        p50_ms: quantile_us(&lat, 0.5) / 1000.0,
        p99_ms: quantile_us(&lat, 0.99) / 1000.0,
        max_ms: quantile_us(&lat, 1.0) / 1000.0,
        append_p99_ms: quantile_us(&app, 0.99) / 1000.0,
        missing,
        commits: commits.len(),
        gap_p50_ms: quantile_us(&gaps, 0.5) / 1000.0,
        gap_max_ms: quantile_us(&gaps, 1.0) / 1000.0,
    })
}

// ---------------------------------------------------------------------------------
// Machine description, report, plot

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn machine(cfg: &Cfg) -> Vec<(String, String)> {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "?".into());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string())))
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let dir = cfg.dir.to_string_lossy().to_string();
    let fs_type =
        sh("findmnt", &["-n", "-o", "FSTYPE,SOURCE", "-T", &dir]).split_whitespace().collect::<Vec<_>>().join(" on ");
    let root = cfg.root.to_string_lossy().to_string();
    let head = sh("git", &["-C", &root, "rev-parse", "--short", "HEAD"]);
    let dirty = sh("git", &["-C", &root, "status", "--porcelain", "--", "src", "Cargo.toml"]);
    vec![
        ("CPUs (`nproc`)".into(), sh("nproc", &[])),
        ("CPU model".into(), cpu),
        ("Memory".into(), mem),
        ("Bench folder filesystem".into(), format!("{fs_type} (`{}`)", rel(cfg, &cfg.dir))),
        ("Kernel".into(), sh("uname", &["-sr"])),
        (
            "tributary source".into(),
            format!(
                "git {head}{}",
                if dirty.is_empty() || dirty == "?" { "" } else { " + uncommitted changes in src/" }
            ),
        ),
    ]
}

fn rel(cfg: &Cfg, p: &Path) -> String {
    p.strip_prefix(&cfg.root).unwrap_or(p).to_string_lossy().to_string()
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg").map(|s| s.split(' ').take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn utc_now() -> String {
    let out = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    if out != "?" {
        return out;
    }
    let s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{s} (Unix time)")
}

/// Run scripts/plot-bench.py; install matplotlib with pip if it is missing.
fn plot(cfg: &Cfg) -> R<()> {
    let has_mpl = || {
        Command::new("python3")
            .args(["-c", "import matplotlib"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_mpl() {
        println!("  matplotlib missing: python3 -m pip install --quiet matplotlib");
        let _ = Command::new("python3").args(["-m", "pip", "install", "--quiet", "matplotlib"]).status();
        if !has_mpl() {
            return Err("matplotlib is not installed and `python3 -m pip install matplotlib` failed".into());
        }
    }
    if let Some(p) = cfg.png.parent() {
        fs::create_dir_all(p).ctx("creating the plot folder")?;
    }
    let st = Command::new("python3")
        .arg(cfg.root.join("scripts/plot-bench.py"))
        .arg(&cfg.csv)
        .arg(&cfg.png)
        .status()
        .ctx("running scripts/plot-bench.py")?;
    if !st.success() {
        return Err(format!("scripts/plot-bench.py failed: {st}"));
    }
    Ok(())
}

fn render(cfg: &Cfg, rep: &Report, started: &str, secs: f64, load: (&str, &str), plot: &R<()>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `{}` on {started} in {:.1} min — a generated file: rerun the command to refresh it, do not \
         edit. What each row means and how it is measured: [docs/benchmarks.md](docs/benchmarks.md).{}\n",
        cfg.command,
        secs / 60.0,
        if cfg.quick { " QUICK smoke run: short runs, small sizes, 2 repetitions — not representative." } else { "" }
    );
    let _ = writeln!(md, "## Machine\n");
    for (k, v) in machine(cfg) {
        let _ = writeln!(md, "- {k}: {v}");
    }
    let _ = writeln!(
        md,
        "- Load average (1, 5, 15 min) at start: {} — at end: {} (other builds and tests share this machine, so \
         every figure is a ratio against a baseline measured in the same run, interleaved).",
        load.0, load.1
    );
    let _ = writeln!(
        md,
        "- Each timed run lasts {:.1} s; figures are medians of {} interleaved repetitions ({} for target 1) \
         (p99: median of the per-repetition p99s). Lines are {LINE_LEN} bytes + `\\n`.\n",
        cfg.secs, cfg.reps, cfg.reps_t1
    );
    let _ = writeln!(md, "## Targets (issue 6)\n");
    let rows: Vec<Vec<String>> = rep
        .targets
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.what.clone(),
                t.tributary.clone(),
                t.baseline.clone(),
                t.ratio.clone(),
                t.target.clone(),
                match t.pass {
                    Some(true) => "PASS".into(),
                    Some(false) => "FAIL".into(),
                    None => "n/a".into(),
                },
            ]
        })
        .collect();
    md += &md_table(&["#", "Measure", "tributary", "Baseline (same run)", "Ratio", "Target", "Result"], &rows);
    let pass = rep.targets.iter().filter(|t| t.pass == Some(true)).count();
    let _ = writeln!(md, "\n{pass} of {} targets pass.\n", rep.targets.len());
    let _ = writeln!(md, "## Baselines\n");
    let rows: Vec<Vec<String>> = rep.baselines.iter().map(|b| b.to_vec()).collect();
    md += &md_table(&["Baseline", "Median (slowest–fastest repetition)", "p99 wait", "How"], &rows);
    if !rep.writers.is_empty() {
        let _ = writeln!(md, "\n## Throughput vs writers (durable single-line appends)\n");
        let rows: Vec<Vec<String>> = rep
            .writers
            .iter()
            .map(|(n, t, s, ratio)| {
                vec![
                    n.to_string(),
                    fmt_rate(t.rate, "lines"),
                    fmt_ms(t.p99_ms),
                    fmt_rate(s.rate, "lines"),
                    fmt_ms(s.p99_ms),
                    format!("{ratio:.2}×"),
                ]
            })
            .collect();
        md += &md_table(
            &[
                "Writers",
                "tributary: threads on one handle",
                "p99 wait",
                "seed durable: processes",
                "p99 wait",
                "Ratio",
            ],
            &rows,
        );
        match plot {
            Ok(()) => {
                let png = rel(cfg, &cfg.png);
                let _ = writeln!(md, "\n![throughput vs writers]({png})");
            }
            Err(e) => {
                let _ = writeln!(md, "\nPlot skipped: {e}.");
            }
        }
        let _ = writeln!(md, "\nData: `{}`.", rel(cfg, &cfg.csv));
    }
    if !rep.notes.is_empty() {
        let _ = writeln!(md, "\n## Notes\n");
        for n in &rep.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
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
