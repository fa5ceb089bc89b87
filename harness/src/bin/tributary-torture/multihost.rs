//! The multi-host soak: one "host" per mount of a shared filesystem (GlusterFS mounted
//! N times = N client processes). Each host has its own local spool of journals on
//! local disk, writer processes and one `tributary compact` daemon that reaches the one
//! shared target through its own mount. For many rounds a random writer or compactor
//! is SIGKILLed and restarted (a restarted compactor sometimes carries a drain
//! failpoint, so it also dies at a chosen step of the protocol). Then the daemons are
//! stopped, each host drains once more, and the proof is taken through every mount.
//!
//! With `--incoherent` (a mount with Gluster's default client caches) errors are the
//! expected, correct reaction: they are recorded, not fatal; the run fails only if
//! lines were lost, duplicated or torn and no tributary error reported any trouble.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use tributary::{Manifest, Sidecar};

use tributary_harness::ack;
use tributary_harness::rng::{random_seed, Rng};

use crate::common::{
    check_target, committed_view, drain_failpoints, error_kind, journal_drained_seq, path_str, strings, tributary_exe,
    Exit, Proc, WriterSpec,
};

#[derive(Args, Debug)]
pub struct MultihostArgs {
    /// Mounts of one shared volume, one per host (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub mounts: Vec<PathBuf>,
    #[arg(long, default_value_t = 2)]
    pub writers_per_host: u32,
    /// Lines per writer.
    #[arg(long, default_value_t = 2000)]
    pub lines: u64,
    /// Lines per second per writer at most (0 = unpaced).
    #[arg(long, default_value_t = 250)]
    pub rate: u64,
    /// SIGKILLs to deliver (random writer or compactor each time).
    #[arg(long, default_value_t = 30)]
    pub kills: u32,
    /// Percent of compactor restarts that carry a random drain failpoint (`point=kill`).
    #[arg(long, default_value_t = 30)]
    pub failpoint_percent: u64,
    /// Most bytes per drain round (small = many rounds, much lock contention).
    #[arg(long, default_value_t = 65536)]
    pub max_round_bytes: u64,
    /// Pass --max-line-bytes to the compactors (bounds the uncommitted tail a drain
    /// will truncate: max(max_round_bytes, max_line_bytes + 1)).
    #[arg(long)]
    pub max_line_bytes: Option<u64>,
    /// The mounts are incoherent (Gluster defaults): record errors, fail only on silent damage.
    #[arg(long)]
    pub incoherent: bool,
    /// The negative control: every tributary command runs with the hidden
    /// `--unsafe-trust-client-caches` (slots and the target's size read through the
    /// client's caches, the shape before issue 15). Implies `--incoherent`'s handling:
    /// errors are recorded, and the outcome says what the shape did.
    #[arg(long)]
    pub old_shape: bool,
    /// Seed (default: $TRIB_SEED or random; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Local work folder for spools, acks and logs.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub tributary: Option<PathBuf>,
    /// Seconds to wait for the compactors to drain the backlog at the end.
    #[arg(long, default_value_t = 90)]
    pub drain_out_secs: u64,
    /// Keep the files (also when the run passed).
    #[arg(long)]
    pub keep: bool,
}

struct Host {
    target: PathBuf,
    spool: PathBuf,
    compactor: Proc,
    errors_seen: u32,
    given_up: bool,
    /// After an error (incoherent mode): when to start the compactor again.
    restart_at: Option<Instant>,
}

struct W {
    spec: WriterSpec,
    proc: Proc,
    done: bool,
}

#[derive(Default)]
struct Tally {
    kills_writers: u64,
    kills_compactors: u64,
    kills_failpoint: u64,
    fp_hit: BTreeMap<String, u64>,
    errors: Vec<String>,
}

fn committed_lines(target: &Path) -> Option<u64> {
    Manifest::load(&Sidecar::for_target(target)).ok().flatten().map(|m| m.committed_lines)
}

pub fn run(mut a: MultihostArgs) -> ExitCode {
    a.incoherent |= a.old_shape;
    let seed = a.seed.or_else(|| std::env::var("TRIB_SEED").ok()?.parse().ok()).unwrap_or_else(random_seed);
    let trib = tributary_exe(a.tributary.as_deref());
    let me = std::env::current_exe().expect("current_exe");
    let n_hosts = a.mounts.len();
    let work = a.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("tributary-multihost-{seed}")));
    let run_dir = format!("multihost-{seed}-{:06x}", tributary::testing::sys::random_u64() & 0xff_ffff);
    println!(
        "multihost: seed={seed} hosts={n_hosts} writers/host={} lines/writer={} rate={}/s kills={} failpoint%={} \
         max_round_bytes={}{} (re-run: TRIB_SEED={seed})",
        a.writers_per_host,
        a.lines,
        a.rate,
        a.kills,
        a.failpoint_percent,
        a.max_round_bytes,
        match (a.old_shape, a.incoherent) {
            (true, _) => " OLD SHAPE (client caches trusted)",
            (false, true) => " INCOHERENT mounts",
            _ => "",
        }
    );
    println!("  mounts: {}", a.mounts.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(" "));
    println!("  local work folder: {}; shared folder: <mount>/{run_dir}", work.display());

    let logs = work.join("logs");
    let acks = work.join("acks");
    let shared0 = a.mounts[0].join(&run_dir);
    for d in [&logs, &acks, &shared0] {
        if let Err(e) = fs::create_dir_all(d) {
            eprintln!("multihost: creating {}: {e}", d.display());
            return ExitCode::FAILURE;
        }
    }
    // the new folder must be visible through every mount before the hosts start
    let until = Instant::now() + Duration::from_secs(20);
    while !a.mounts.iter().all(|m| m.join(&run_dir).is_dir()) {
        if Instant::now() > until {
            eprintln!("multihost: {run_dir} is not visible through every mount after 20 s");
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The target is created once, through one mount (drains never create one); every
    // host must see it before its compactor starts.
    let target0 = shared0.join("out.log");
    match std::process::Command::new(&trib).args(["init", "--target"]).arg(&target0).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!("multihost: tributary init: {}", String::from_utf8_lossy(&out.stderr).trim());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("multihost: running tributary init: {e}");
            return ExitCode::FAILURE;
        }
    }
    let until = Instant::now() + Duration::from_secs(20);
    while !a.mounts.iter().all(|m| Sidecar::for_target(&m.join(&run_dir).join("out.log")).lock.exists()) {
        if Instant::now() > until {
            eprintln!("multihost: the initialised target is not visible through every mount after 20 s");
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut rng = Rng::new(seed);
    let points = drain_failpoints();
    let mut hosts: Vec<Host> = Vec::new();
    let mut writers: Vec<W> = Vec::new();
    let mut tally = Tally::default();
    for (h, mount) in a.mounts.iter().enumerate() {
        let spool = work.join(format!("host{}", h + 1)).join("spool");
        if let Err(e) = fs::create_dir_all(&spool) {
            eprintln!("multihost: creating {}: {e}", spool.display());
            return ExitCode::FAILURE;
        }
        let target = mount.join(&run_dir).join("out.log");
        let args = strings([
            "compact".to_string(),
            "--target".into(),
            path_str(&target),
            "--spool".into(),
            path_str(&spool),
            "--interval".into(),
            "20".into(),
            "--lock-timeout-ms".into(),
            "10000".into(),
            "--max-round-bytes".into(),
            a.max_round_bytes.to_string(),
            "--verbose".into(),
        ]);
        let mut args = args;
        if a.old_shape {
            args.push("--unsafe-trust-client-caches".into());
        }
        if let Some(m) = a.max_line_bytes {
            args.extend(strings(["--max-line-bytes".to_string(), m.to_string()]));
        }
        let mut compactor =
            Proc::new(format!("compactor@host{}", h + 1), &trib, args, logs.join(format!("compactor-{}.log", h + 1)));
        if let Err(e) = compactor.start(None, None) {
            eprintln!("multihost: starting {}: {e}", compactor.name);
            return ExitCode::FAILURE;
        }
        hosts.push(Host { target, spool: spool.clone(), compactor, errors_seen: 0, given_up: false, restart_at: None });
        for k in 0..a.writers_per_host {
            let id = (h as u32) * a.writers_per_host + k + 1;
            let spec = WriterSpec {
                id,
                lines: a.lines,
                journal: spool.join(format!("w{id}.journal")),
                ack: acks.join(format!("w{id}.ack")),
            };
            let args = strings([
                "writer".to_string(),
                "--journal".into(),
                path_str(&spec.journal),
                "--ack".into(),
                path_str(&spec.ack),
                "--writer".into(),
                id.to_string(),
                "--lines".into(),
                a.lines.to_string(),
                "--run".into(),
                seed.to_string(),
                "--rate".into(),
                a.rate.to_string(),
            ]);
            let mut proc =
                Proc::new(format!("writer-{id}@host{}", h + 1), &me, args, logs.join(format!("writer-{id}.log")));
            if let Err(e) = proc.start(None, None) {
                eprintln!("multihost: starting {}: {e}", proc.name);
                return ExitCode::FAILURE;
            }
            writers.push(W { spec, proc, done: false });
        }
    }

    let start = Instant::now();
    let mut kills = 0u32;
    let mut next_kill = start + Duration::from_millis(300 + rng.below(400));
    let mut last_progress = Instant::now();
    let hard_deadline = start + Duration::from_secs(900);
    let mut aborted = false;
    let restart_compactor = |host: &mut Host, rng: &mut Rng, tally: &mut Tally, pct: u64| {
        let fp = if rng.chance(pct, 100) { Some(format!("{}=kill", rng.pick(&points))) } else { None };
        if let Err(e) = host.compactor.start(fp, None) {
            tally.errors.push(format!("restarting {}: {e}", host.compactor.name));
        }
    };
    loop {
        for w in writers.iter_mut().filter(|w| !w.done) {
            match w.proc.poll() {
                Some(Exit::Ok) => w.done = true,
                Some(Exit::Killed) => {
                    tally.errors.push(format!("{} died of a SIGKILL nobody sent", w.proc.name));
                    w.done = true;
                }
                Some(Exit::Failed(e)) => {
                    tally.errors.push(format!("{}: {e}", w.proc.name));
                    w.done = true;
                }
                None => {}
            }
        }
        for host in hosts.iter_mut().filter(|h| !h.given_up) {
            match host.compactor.poll() {
                Some(Exit::Killed) => {
                    // it died at its failpoint
                    tally.kills_compactors += 1;
                    tally.kills_failpoint += 1;
                    let p = host.compactor.failpoint.clone().unwrap_or_default();
                    *tally.fp_hit.entry(p.trim_end_matches("=kill").to_string()).or_default() += 1;
                    restart_compactor(host, &mut rng, &mut tally, 0);
                }
                Some(exit) => {
                    let e = match exit {
                        Exit::Failed(e) => e,
                        _ => "exited 0 without being asked to stop".to_string(),
                    };
                    tally.errors.push(format!("{} (life {}): {e}", host.compactor.name, host.compactor.lives));
                    host.errors_seen += 1;
                    if !a.incoherent {
                        aborted = true;
                    } else if host.errors_seen >= 5 {
                        host.given_up = true;
                        println!("  [{:5.1}s] {} failed 5 times; leaving it down", secs(start), host.compactor.name);
                    } else {
                        // give the caches time to turn over before the next attempt
                        host.restart_at = Some(Instant::now() + Duration::from_millis(1500));
                    }
                }
                None => {}
            }
            if host.restart_at.is_some_and(|t| Instant::now() >= t) {
                host.restart_at = None;
                restart_compactor(host, &mut rng, &mut tally, 0);
            }
        }
        if aborted {
            println!("  a compactor failed on a coherent mount: stopping the run");
            break;
        }
        let writers_done = writers.iter().all(|w| w.done);
        if kills < a.kills && Instant::now() >= next_kill {
            // victims: running writers and compactors
            let mut victims: Vec<(bool, usize)> = Vec::new();
            victims.extend(writers.iter().enumerate().filter(|(_, w)| w.proc.running()).map(|(i, _)| (true, i)));
            victims.extend(hosts.iter().enumerate().filter(|(_, h)| h.compactor.running()).map(|(i, _)| (false, i)));
            if !victims.is_empty() {
                let (is_writer, i) = *rng.pick(&victims);
                kills += 1;
                if is_writer {
                    let w = &mut writers[i];
                    w.proc.kill();
                    tally.kills_writers += 1;
                    if let Err(e) = w.proc.start(None, None) {
                        tally.errors.push(format!("restarting {}: {e}", w.proc.name));
                        w.done = true;
                    }
                } else {
                    let host = &mut hosts[i];
                    host.compactor.kill();
                    tally.kills_compactors += 1;
                    restart_compactor(host, &mut rng, &mut tally, a.failpoint_percent);
                }
            }
            next_kill = Instant::now() + Duration::from_millis(100 + rng.below(500));
        }
        if last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = Instant::now();
            let acked: u64 = writers.iter().map(|w| ack::last_index(&w.spec.ack)).sum();
            println!(
                "  [{:5.1}s] acknowledged {acked:>7} | committed {:>7} | kills {kills}/{} | errors {}",
                secs(start),
                committed_lines(&hosts[0].target).unwrap_or(0),
                a.kills,
                tally.errors.len()
            );
        }
        if writers_done && kills >= a.kills {
            break;
        }
        if Instant::now() >= hard_deadline {
            tally.errors.push("the run did not finish within 900 s".into());
            aborted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    // drain-out: let the daemons catch up (restarting any that die at a failpoint)
    let acked_total: u64 = writers.iter().map(|w| ack::read(&w.spec.ack).len() as u64).sum();
    let until = Instant::now() + Duration::from_secs(a.drain_out_secs);
    let (mut last_committed, mut last_change) = (0u64, Instant::now());
    while !aborted && Instant::now() < until {
        let committed = committed_lines(&hosts[0].target).unwrap_or(0);
        if committed >= acked_total {
            break;
        }
        if committed != last_committed {
            (last_committed, last_change) = (committed, Instant::now());
        } else if last_change.elapsed() > Duration::from_secs(15) {
            println!("  [{:5.1}s] no progress for 15 s ({committed} of {acked_total} committed)", secs(start));
            break;
        }
        for host in hosts.iter_mut().filter(|h| !h.given_up) {
            match host.compactor.poll() {
                Some(Exit::Killed) => {
                    tally.kills_compactors += 1;
                    tally.kills_failpoint += 1;
                    restart_compactor(host, &mut rng, &mut tally, 0);
                }
                Some(Exit::Failed(e)) => {
                    tally.errors.push(format!("{} while draining out: {e}", host.compactor.name));
                    host.given_up = true;
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("  [{:5.1}s] stopping the compactors (SIGTERM)", secs(start));
    for host in hosts.iter_mut() {
        if host.compactor.running() {
            host.compactor.wait_until_catching(libc::SIGTERM, Duration::from_secs(10));
            host.compactor.signal(libc::SIGTERM);
            match host.compactor.wait_timeout(Duration::from_secs(30)) {
                Some((Exit::Ok, false)) | None => {}
                Some((_, true)) => tally.errors.push(format!("{} ignored SIGTERM for 30 s", host.compactor.name)),
                Some((Exit::Killed, _)) => {} // died at its failpoint just then
                Some((Exit::Failed(e), _)) => tally.errors.push(format!("{} at stop: {e}", host.compactor.name)),
            }
        }
    }
    for w in writers.iter_mut().filter(|w| w.proc.running()) {
        w.proc.kill();
        tally.errors.push(format!("{} was still running at the end", w.proc.name));
    }

    // a last clean drain on every host
    for (h, host) in hosts.iter().enumerate() {
        let args = strings([
            "drain".to_string(),
            "--target".into(),
            path_str(&host.target),
            "--spool".into(),
            path_str(&host.spool),
            "--lock-timeout-ms".into(),
            "30000".into(),
        ]);
        let mut args = args;
        if a.old_shape {
            args.push("--unsafe-trust-client-caches".into());
        }
        let mut d =
            Proc::new(format!("final-drain@host{}", h + 1), &trib, args, logs.join(format!("final-{}.log", h + 1)));
        if let Err(e) = d.start(None, None) {
            tally.errors.push(format!("starting {}: {e}", d.name));
            continue;
        }
        match d.wait_timeout(Duration::from_secs(120)) {
            Some((Exit::Ok, false)) => {}
            Some((exit, hung)) => {
                tally.errors.push(format!("{}: {exit:?}{}", d.name, if hung { " (hung 120 s)" } else { "" }))
            }
            None => tally.errors.push(format!("{} vanished", d.name)),
        }
    }
    let elapsed = secs(start);

    // the proof, through every mount
    let specs: Vec<WriterSpec> = writers.iter().map(|w| w.spec.clone()).collect();
    let mut problems: Vec<String> = Vec::new();
    let views: Vec<Option<Vec<u8>>> =
        hosts.iter().map(|h| tributary::testing::fs::read_fresh(&h.target).ok()).collect();
    let Some(bytes) = views[0].clone() else {
        println!("multihost: FAILED: cannot read {}", hosts[0].target.display());
        return ExitCode::FAILURE;
    };
    let readers: Vec<Result<Vec<u8>, String>> = hosts.iter().map(|h| committed_view(&h.target)).collect();
    let views_identical = views.iter().all(|v| v.as_deref() == Some(bytes.as_slice()))
        && readers.iter().all(|r| r.as_deref() == Ok(bytes.as_slice()));
    if !views_identical {
        problems.push(format!(
            "the mounts show different bytes: files {}; Readers {}",
            views
                .iter()
                .map(|v| v.as_ref().map_or("unreadable".into(), |b| b.len().to_string()))
                .collect::<Vec<_>>()
                .join(" vs "),
            readers
                .iter()
                .map(|r| r.as_ref().map_or_else(|e| format!("error ({e})"), |b| b.len().to_string()))
                .collect::<Vec<_>>()
                .join(" vs ")
        ));
    }
    let check = check_target(seed, &bytes, &specs, &|w| journal_drained_seq(&w.journal));
    let mut verify_ok = true;
    for host in &hosts {
        match tributary::verify(&host.target) {
            Ok(v) => {
                if !v.is_consistent() {
                    verify_ok = false;
                    problems.extend(v.problems.iter().map(|p| format!("verify via {}: {p}", host.target.display())));
                } else if v.committed_lines != check.lines || v.uncommitted_tail_bytes != 0 {
                    problems.push(format!(
                        "via {}: manifest has {} committed lines (+{} uncommitted bytes), the target {} lines",
                        host.target.display(),
                        v.committed_lines,
                        v.uncommitted_tail_bytes,
                        check.lines
                    ));
                }
            }
            Err(e) => {
                verify_ok = false;
                problems.push(format!("verify via {}: {e}", host.target.display()));
            }
        }
    }
    for w in &specs {
        match tributary::Journal::open(&w.journal, tributary::JournalOptions::default()).and_then(|j| j.backlog()) {
            Ok(b) if b.lines == 0 => {}
            Ok(b) => problems.push(format!("journal {} still holds {} line(s)", w.journal.display(), b.lines)),
            Err(e) => problems.push(format!("opening {}: {e}", w.journal.display())),
        }
    }
    // what the daemons reported while retrying
    let (mut lock_lost, mut lock_timeout) = (0u64, 0u64);
    for host in &hosts {
        let text = fs::read(&host.compactor.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        lock_lost += text.lines().filter(|l| l.contains("retrying") && l.contains("lock lost")).count() as u64;
        lock_timeout += text.lines().filter(|l| l.contains("retrying") && l.contains("lock timeout")).count() as u64;
    }
    let mut kinds: Vec<String> = tally.errors.iter().map(|e| error_kind(e)).collect();
    kinds.sort();
    kinds.dedup();

    let exact = check.exactly_once() && tally.errors.is_empty() && problems.is_empty() && !aborted;
    let detected = !tally.errors.is_empty() || !verify_ok || lock_lost > 0;
    let damage = check.lost > 0 || check.duplicated > 0 || check.torn > 0 || check.out_of_order > 0;
    let outcome = if exact {
        "exactly-once"
    } else if detected && !damage {
        "refused-nothing-lost"
    } else if detected {
        "detected-with-damage"
    } else {
        "SILENT-DAMAGE"
    };
    println!("\nmultihost result (seed {seed}, {elapsed:.1}s):");
    println!("  hosts/mounts:        {n_hosts}");
    println!("  writers:             {}", specs.len());
    println!("  acknowledged lines:  {}", check.acked);
    println!("  lines in target:     {}", check.lines);
    println!(
        "  kills:               {} ({} writers, {} compactors, {} of them at a failpoint: {})",
        tally.kills_writers + tally.kills_compactors,
        tally.kills_writers,
        tally.kills_compactors,
        tally.kills_failpoint,
        tally.fp_hit.iter().map(|(p, n)| format!("{p}={n}")).collect::<Vec<_>>().join(" ")
    );
    println!("  lost:                {}", check.lost);
    println!("  held in journals:    {}", check.held);
    println!("  duplicated:          {}", check.duplicated);
    println!("  torn:                {}", check.torn);
    println!("  out of order:        {}", check.out_of_order);
    println!("  verify:              {}", if verify_ok { "ok on every mount" } else { "INCONSISTENT" });
    println!("  mount views:         {}", if views_identical { "identical" } else { "DIFFER" });
    println!("  lock-lost retries:   {lock_lost}; lock-timeout retries: {lock_timeout}");
    println!("  errors:              {}", tally.errors.len());
    for e in tally.errors.iter().take(12) {
        println!("    {e}");
    }
    for p in problems.iter().take(12) {
        println!("  problem: {p}");
    }
    println!("  outcome:             {outcome}");
    println!(
        "RESULT hosts={n_hosts} seed={seed} acked={} target_lines={} lost={} held={} duplicated={} torn={} \
         out_of_order={} kills={} kills_writers={} kills_compactors={} kills_failpoint={} errors={} error_kinds={} \
         lock_lost_retries={lock_lost} verify={} views={} outcome={outcome} seconds={elapsed:.1}",
        check.acked,
        check.lines,
        check.lost,
        check.held,
        check.duplicated,
        check.torn,
        check.out_of_order,
        tally.kills_writers + tally.kills_compactors,
        tally.kills_writers,
        tally.kills_compactors,
        tally.kills_failpoint,
        tally.errors.len(),
        if kinds.is_empty() { "-".to_string() } else { kinds.join(",") },
        if verify_ok { "ok" } else { "inconsistent" },
        if views_identical { "identical" } else { "differ" },
    );
    let pass = if a.incoherent { outcome != "SILENT-DAMAGE" } else { exact };
    if pass && !a.keep {
        let _ = fs::remove_dir_all(&shared0);
        let _ = fs::remove_dir_all(&work);
    } else {
        println!("  files kept: {} and {}", work.display(), shared0.display());
    }
    if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}
