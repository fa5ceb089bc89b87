//! `run`: the whole benchmark in one go. First one round's fixed cost (on the fresh
//! volume); then for each N two phases, one after another on the same mounts: the
//! latency phase (tributary's writers open loop at `--latency-rate` lines/s per host,
//! the same at every N: issue 15's targets (a) and (b)), then the throughput phase
//! (every system's writers at full speed: target (c)) — tributary (and the second
//! binary, if given: the two swap places at every other N, so neither always runs on
//! the warmer volume), the seed design and concurrent-log-handler. `--rate R` runs one
//! phase instead, every system at R. Each result is appended to the results file as it
//! is measured; the report is rendered at the end (and again by `report`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Args;

use crate::fleet::{self, Fleet, System};
use crate::record::{read_all, Record};
use crate::report::{render, BACKGROUND, BASELINE, LATENCY, ONLY, TESTED, THROUGHPUT};
use crate::{roundcost, Ctx, R};

#[derive(Args)]
pub struct RunArgs {
    /// Host counts to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    hosts: Vec<usize>,
    /// Length of each timed run of the throughput phase (and of the latency phase,
    /// unless --latency-seconds says otherwise).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// The latency phase's offered lines/s per host (all its threads together, paced
    /// open loop), the same at every N.
    #[arg(long, default_value_t = 1000.0)]
    latency_rate: f64,
    /// Length of each timed run of the latency phase (default: --seconds).
    #[arg(long)]
    latency_seconds: Option<f64>,
    /// Only one phase, every system at this offered rate per host (0 = full speed),
    /// judging every target, instead of the latency and throughput phases.
    #[arg(long, conflicts_with_all = ["latency_rate", "latency_seconds"])]
    rate: Option<f64>,
    /// Writer threads per host.
    #[arg(long, default_value_t = 8)]
    threads: u32,
    /// `tributary compact --interval`, in milliseconds.
    #[arg(long, default_value_t = 50)]
    interval: u64,
    /// How often the reader that stamps commits polls the target when it has read everything, in ms.
    #[arg(long, default_value_t = 2)]
    poll_ms: u64,
    /// The mounts are BASE/node1 .. BASE/nodeN (scripts/glusterfs-up).
    #[arg(long)]
    mount_base: PathBuf,
    /// The mount of the reader that stamps commits (default: BASE/node<max N + 1>).
    #[arg(long)]
    reader_mount: Option<PathBuf>,
    /// The volume's brick folder on this machine (the baselines' lines are counted there).
    #[arg(long)]
    brick: Option<PathBuf>,
    /// The GlusterFS volume's name (its options go into the report).
    #[arg(long, default_value = "tribbench")]
    volume: String,
    /// The tributary binary to test.
    #[arg(long, default_value = "target/release/tributary")]
    tributary: PathBuf,
    /// A second tributary binary run side by side (e.g. main's).
    #[arg(long)]
    tributary_baseline: Option<PathBuf>,
    /// The durability window of the background-commit system (writers push to an
    /// `Appender`), in ms; 0 leaves that system out.
    #[arg(long, default_value_t = 10)]
    background_window_ms: u64,
    /// A Python with concurrent-log-handler installed; without it that baseline is skipped.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Systems, phases or steps to leave out: tributary, background, seed, clh, latency, throughput, cost.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Local folder for journals, ack files and logs.
    #[arg(long, default_value = "target/bench-multihost")]
    work: PathBuf,
    /// The results file (started afresh).
    #[arg(long)]
    results: Option<PathBuf>,
    /// The markdown report.
    #[arg(long, default_value = "docs/bench-multihost.md")]
    out: PathBuf,
    /// How the hosts' mounts cache, for the report.
    #[arg(long, default_value = "Gluster's defaults (GLUSTER_COHERENT=0)")]
    caches: String,
    /// The command as typed, for the report.
    #[arg(long, default_value = "tributary-bench-multihost run")]
    command: String,
    /// How long to wait for the last lines after the writers stop, in seconds.
    #[arg(long, default_value_t = 60)]
    drain_timeout: u64,
    /// Keep each run's folders (journals, logs, the target) for a post-mortem.
    #[arg(long)]
    keep: bool,
}

fn sh(cmd: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(cmd).args(args).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn version(bin: &Path) -> String {
    sh(&bin.display().to_string(), &["--version"]).unwrap_or_else(|| "?".into())
}

fn meta_start(a: &RunArgs, reader: &Path) -> Record {
    let mut m = Record::new("meta");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|c| c.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0)))
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1048576.0))
        .unwrap_or_default();
    let dirty = sh("git", &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let commit = sh("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "?".into());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let options_of = |p: &Path| {
        let p = p.display().to_string();
        mounts.lines().find(|l| l.split(' ').nth(1) == Some(&p)).map_or("?", |l| l.split(' ').nth(3).unwrap_or("?"))
    };
    // the client's own options (attribute-timeout, xlator-option …) are on its command line
    let client_args = |p: &Path| {
        let want = format!(" {}", p.display());
        std::fs::read_dir("/proc").ok().and_then(|d| {
            d.flatten().find_map(|e| {
                let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                (cmd.starts_with("/usr/sbin/glusterfs ") && cmd.trim_end().ends_with(&want)).then(|| {
                    cmd.split(' ')
                        .filter(|a| a.starts_with("--") && !a.starts_with("--log-file") && *a != "--process-name")
                        .collect::<Vec<_>>()
                        .join(" ")
                })
            })
        })
    };
    let node1 = a.mount_base.join("node1");
    let mount_options =
        format!("{}; client: {}", options_of(&node1), client_args(&node1).unwrap_or_else(|| "?".into()));
    let reader_options =
        format!("{}; client: {}", options_of(reader), client_args(reader).unwrap_or_else(|| "?".into()));
    let volume_options = sh("gluster", &["--mode=script", "volume", "info", &a.volume])
        .map(|t| t.lines().filter(|l| l.contains(": ") && !l.starts_with("Volume ID")).collect::<Vec<_>>().join("\n"));
    m.set("command", &a.command)
        .set("date", sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default())
        .set("commit", format!("{commit}{}", if dirty { " + uncommitted changes" } else { "" }))
        .set("nproc", std::thread::available_parallelism().map_or(0, |n| n.get()))
        .set("cpu", cpu)
        .set("memory", mem)
        .set("kernel", std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim())
        .set("load_start", load())
        .set("tributary", a.tributary.display())
        .set("tributary_version", version(&a.tributary))
        .set("threads", a.threads)
        .opt("rate", a.rate)
        .set("latency_rate", a.latency_rate)
        .set("latency_seconds", a.latency_seconds.unwrap_or(a.seconds))
        .set("interval", a.interval)
        .set("background_window_ms", a.background_window_ms)
        .set("seconds", a.seconds)
        .set("hosts", a.hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(","))
        .set("volume", &a.volume)
        .set(
            "gluster_version",
            sh("glusterfs", &["--version"]).and_then(|v| v.lines().next().map(String::from)).unwrap_or_default(),
        )
        .set("mount_options", mount_options)
        .set("reader_mount", reader.display())
        .set("reader_mount_options", reader_options)
        .set("caches", &a.caches)
        .set(
            "journal_fs",
            sh("df", &["--output=fstype", &a.work.display().to_string()])
                .and_then(|t| t.lines().last().map(|l| l.trim().to_string()))
                .unwrap_or_default(),
        )
        .opt("volume_options", volume_options);
    if let Some(b) = &a.tributary_baseline {
        m.set("tributary_baseline", b.display()).set("tributary_baseline_version", version(b));
    }
    if let Some(py) = &a.python {
        let v = sh(
            &py.display().to_string(),
            &["-c", "import importlib.metadata as m; print(m.version('concurrent-log-handler'))"],
        );
        m.set(
            "clh_version",
            v.map_or_else(|| "not installed".into(), |v| format!("concurrent-log-handler {v} (PyPI)")),
        );
    } else {
        m.set("clh_version", "skipped (no --python)");
    }
    m
}

pub fn run(a: RunArgs) -> R<()> {
    let max = a.hosts.iter().copied().max().ok_or("--hosts is empty")?;
    if a.hosts.contains(&0) {
        return Err("--hosts: a host count must be at least 1".into());
    }
    let mounts: Vec<PathBuf> = (1..=max).map(|k| a.mount_base.join(format!("node{k}"))).collect();
    let reader = a.reader_mount.clone().unwrap_or_else(|| a.mount_base.join(format!("node{}", max + 1)));
    for m in mounts.iter().chain([&reader]) {
        if !m.is_dir() {
            return Err(format!(
                "{} is not mounted: bring up {} mounts first (scripts/bench-multihost does: scripts/glusterfs-up {} {})",
                m.display(),
                max + 1,
                max + 1,
                a.mount_base.display()
            ));
        }
    }
    if !a.tributary.is_file() {
        return Err(format!(
            "--tributary {}: no such binary (cargo build --release -p tributary-cli)",
            a.tributary.display()
        ));
    }
    std::fs::create_dir_all(&a.work).ctx("creating the work folder")?;
    let work = std::fs::canonicalize(&a.work).ctx("work folder")?;
    let results = a.results.clone().unwrap_or_else(|| work.join("results.tsv"));
    let _ = std::fs::remove_file(&results);
    meta_start(&a, &reader).append_to(&results)?;

    let skip = |s: &str| a.skip.iter().any(|x| x == s);
    let phases = phases(&a, &skip)?;
    let mut systems = Vec::new();
    if !skip("tributary") {
        systems.push(System::Tributary { bin: a.tributary.clone(), label: TESTED.into(), background_ms: 0 });
        if let Some(b) = &a.tributary_baseline {
            systems.push(System::Tributary { bin: b.clone(), label: BASELINE.into(), background_ms: 0 });
        }
    }
    if a.background_window_ms > 0 && !skip("background") {
        let background_ms = a.background_window_ms;
        systems.push(System::Tributary { bin: a.tributary.clone(), label: BACKGROUND.into(), background_ms });
    }
    if !skip("seed") {
        systems.push(System::Seed);
    }
    match (&a.python, skip("clh")) {
        (Some(py), false) => systems.push(System::Clh { python: py.clone() }),
        (None, false) => eprintln!("no --python: the concurrent-log-handler baseline is skipped"),
        _ => {}
    }
    let f = Fleet {
        mounts,
        reader_mount: reader,
        brick: a.brick.clone(),
        work: work.clone(),
        seconds: a.seconds,
        rate: 0.0,
        threads: a.threads,
        interval_ms: a.interval,
        poll_ms: a.poll_ms,
        drain_timeout: Duration::from_secs(a.drain_timeout),
        keep: a.keep,
    };
    // first, on a fresh volume and quiet mounts: a round's fixed cost
    if !skip("cost") {
        let mut bins = vec![(a.tributary.clone(), TESTED)];
        if let Some(b) = &a.tributary_baseline {
            bins.push((b.clone(), BASELINE));
        }
        for (bin, label) in bins {
            eprintln!("--- a round's fixed cost: {label}");
            match roundcost::measure(&bin, label, &f.mounts[0], &work) {
                Ok(recs) => {
                    for r in recs {
                        eprintln!("    {}", r.to_line().replace('\t', " "));
                        r.append_to(&results)?;
                    }
                }
                Err(e) => {
                    eprintln!("    error: {e}");
                    let mut r = Record::new("cost-error");
                    r.set("binary", label).set("error", e);
                    r.append_to(&results)?;
                }
            }
        }
    }
    for (round, &n) in a.hosts.iter().enumerate() {
        let mut order = systems.clone();
        if round % 2 == 1 && a.tributary_baseline.is_some() && !skip("tributary") {
            order.swap(0, 1);
        }
        for p in &phases {
            let fp = Fleet { seconds: p.seconds, rate: p.rate, ..f.clone() };
            for s in order.iter().filter(|s| p.baselines || matches!(s, System::Tributary { .. })) {
                eprintln!("--- N = {n}, {} phase: {} ({} s, {})", p.name, s.label(), p.seconds, load_words(p.rate));
                let mut r = fleet::run(&fp, s, n);
                r.set("phase", p.name);
                eprintln!("    {}", summary(&r));
                r.append_to(&results)?;
            }
        }
    }
    let mut end = Record::new("meta");
    end.set("load_end", load());
    end.append_to(&results)?;
    let text = std::fs::read_to_string(&results).ctx("reading the results back")?;
    let md = render(&read_all(&text)?);
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).ctx("creating the report's folder")?;
    }
    std::fs::write(&a.out, &md).ctx(&format!("writing {}", a.out.display()))?;
    let targets: Vec<&str> =
        md.lines().skip_while(|l| !l.starts_with("## Targets")).take_while(|l| !l.starts_with("## Results")).collect();
    println!("{}", targets.join("\n").trim_end());
    println!("wrote {} (results: {})", a.out.display(), results.display());
    Ok(())
}

/// One phase of every N: its name in the records, its load and length, and whether
/// the baselines run in it.
struct Phase {
    name: &'static str,
    /// Offered lines/s per host, 0 = full speed.
    rate: f64,
    seconds: f64,
    baselines: bool,
}

/// The phases to run, in order: `--rate R` alone, else the latency phase (open loop
/// at `--latency-rate`, tributary only: the baselines commit inside the call) then the
/// throughput phase (full speed, every system), less those `--skip` names.
fn phases(a: &RunArgs, skip: &dyn Fn(&str) -> bool) -> R<Vec<Phase>> {
    if let Some(rate) = a.rate {
        if !(rate >= 0.0 && rate.is_finite()) {
            return Err(format!("--rate {rate}: want lines/s per host, 0 for full speed"));
        }
        return Ok(vec![Phase { name: ONLY, rate, seconds: a.seconds, baselines: true }]);
    }
    if !(a.latency_rate > 0.0 && a.latency_rate.is_finite()) {
        return Err(format!(
            "--latency-rate {}: want lines/s per host above 0 (to leave the latency phase out: --skip latency)",
            a.latency_rate
        ));
    }
    let mut out = Vec::new();
    if !skip(LATENCY) {
        let seconds = a.latency_seconds.unwrap_or(a.seconds);
        out.push(Phase { name: LATENCY, rate: a.latency_rate, seconds, baselines: false });
    }
    if !skip(THROUGHPUT) {
        out.push(Phase { name: THROUGHPUT, rate: 0.0, seconds: a.seconds, baselines: true });
    }
    if out.is_empty() {
        return Err("--skip latency,throughput leaves nothing to run".into());
    }
    Ok(out)
}

fn load_words(rate: f64) -> String {
    if rate > 0.0 {
        format!("{rate} lines/s per host")
    } else {
        "full speed".into()
    }
}

/// One line for the terminal as each run ends.
fn summary(r: &Record) -> String {
    if let Some(e) = r.get("error") {
        return format!("error: {e}");
    }
    let g = |k: &str| r.get(k).unwrap_or("–").to_string();
    format!(
        "committed {} lines/s (appended {}/s); p50/p99 {}/{} ms; call p99 {} ms; lost {} dup {} torn {}; lock p99 {} ms; rounds/s {}; starved {}",
        g("throughput"),
        g("appended_per_s"),
        g("p50_ms"),
        g("p99_ms"),
        g("call_p99_ms"),
        g("lost"),
        g("dup"),
        g("torn"),
        g("lock_p99_ms"),
        g("rounds_per_s"),
        g("starved")
    )
}
