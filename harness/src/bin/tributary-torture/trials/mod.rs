//! Randomized crash trials. Each trial is a small, fresh scenario drawn from the seed:
//! 1–3 writer processes (keyed appends, acks), some killed by a timer or at a journal
//! failpoint and restarted; 1–4 drain actions on random "hosts" — a `drain` that dies
//! at a drain-protocol failpoint, a `drain` or `compact` SIGKILLed after a random
//! delay, two drains from two hosts racing with one of them dying, or a clean drain.
//! The target is created first with `tributary init` (drains never create one), in
//! some trials by an `init` killed at its slot commit and run again.
//! Then a clean recovery drain per host and the proof: every acknowledged line exactly
//! once, in per-writer order, nothing torn, `verify` clean with no uncommitted tail,
//! every journal emptied, and (on GlusterFS) the same bytes through every mount.
//!
//! This file: the arguments and [`run`] (many trials, the summary, the `RESULT` line);
//! one trial is in `trial`, its checks besides the checker's verdict in `check`.

mod check;
mod trial;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};

use tributary_harness::check::Verdict;
use tributary_harness::rng::{mix, random_seed};

use crate::common::tributary_exe;

use trial::run_trial;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fs {
    /// target on the local disk (two simulated hosts, each with its own spool)
    Local,
    /// target on a GlusterFS volume: one host per --mounts entry
    Gluster,
}

#[derive(Args, Debug)]
pub struct TrialsArgs {
    /// Number of trials.
    #[arg(long, default_value_t = 100)]
    pub trials: u64,
    #[arg(long, value_enum, default_value = "local")]
    pub fs: Fs,
    /// Gluster mounts of one volume, one per host (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub mounts: Vec<PathBuf>,
    /// Seed (default: $TRIB_SEED or random; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run only this trial of the seed (to re-run a failure).
    #[arg(long)]
    pub trial: Option<u64>,
    /// Local work folder for spools, acks and logs (default: a fresh one in $TMPDIR).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The tributary CLI (default: next to this executable).
    #[arg(long)]
    pub tributary: Option<PathBuf>,
    /// Keep the files of passing trials too.
    #[arg(long)]
    pub keep: bool,
    /// A line per trial.
    #[arg(long, short)]
    pub verbose: bool,
    /// (self-test) damage what the checker reads: drop | duplicate | tear a line; the
    /// trials must then fail, which shows the checker is wired in.
    #[arg(long, hide = true)]
    pub sabotage: Option<String>,
}
#[derive(Debug, Default)]
struct Outcome {
    check: Verdict,
    kills_writers: u64,
    kills_compactors: u64,
    kills_by_failpoint: u64,
    kills_by_timer: u64,
    fp_hit: BTreeMap<&'static str, u64>,
    fp_missed: BTreeMap<&'static str, u64>,
    errors: Vec<String>,
    problems: Vec<String>,
    plan: Vec<String>,
    /// Trials whose compactors committed manifest deltas, and of those, the ones whose
    /// lock file holds delta records at the end (the path was taken).
    delta_trials: u64,
    delta_trials_seen: u64,
    /// Trials whose compactors staged (docs/design.md "Staging"), and of those, the
    /// ones whose sidecar got a stage folder (a stager had lines to stage).
    staging_trials: u64,
    staging_trials_seen: u64,
}

impl Outcome {
    fn passed(&self) -> bool {
        self.check.exactly_once() && self.errors.is_empty() && self.problems.is_empty()
    }
}

struct Ctx {
    trib: PathBuf,
    me: PathBuf,
    work: PathBuf,
    fs: Fs,
    mounts: Vec<PathBuf>,
    run_dir: String,
    sabotage: Option<String>,
}

impl Ctx {
    fn hosts(&self) -> usize {
        match self.fs {
            Fs::Local => 2,
            Fs::Gluster => self.mounts.len(),
        }
    }

    fn target(&self, k: u64, host: usize) -> PathBuf {
        match self.fs {
            Fs::Local => self.work.join(format!("trial-{k}")).join("shared").join("out.log"),
            Fs::Gluster => self.mounts[host].join(&self.run_dir).join(format!("trial-{k}")).join("out.log"),
        }
    }
}

pub fn run(a: TrialsArgs) -> ExitCode {
    let seed = a.seed.or_else(|| std::env::var("TRIB_SEED").ok()?.parse().ok()).unwrap_or_else(random_seed);
    if a.fs == Fs::Gluster && a.mounts.is_empty() {
        eprintln!("tributary-torture: --fs gluster needs --mounts M1,M2,... (mounts of one GlusterFS volume)");
        return ExitCode::from(2);
    }
    let work = a.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("tributary-torture-{seed}")));
    if let Err(e) = fs::create_dir_all(&work) {
        eprintln!("tributary-torture: cannot create {}: {e}", work.display());
        return ExitCode::FAILURE;
    }
    let ctx = Ctx {
        trib: tributary_exe(a.tributary.as_deref()),
        me: std::env::current_exe().expect("current_exe"),
        work: work.clone(),
        fs: a.fs,
        mounts: a.mounts.clone(),
        run_dir: format!("torture-{seed}-{:06x}", tributary::testing::sys::random_u64() & 0xff_ffff),
        sabotage: a.sabotage.clone(),
    };
    let fs_name = format!("{:?}", a.fs).to_lowercase();
    let range: Vec<u64> = match a.trial {
        Some(k) => vec![k],
        None => (0..a.trials).collect(),
    };
    println!(
        "torture: fs={fs_name} trials={} seed={seed} work={} (re-run one trial: tributary-torture trials --fs {fs_name} \
         --seed {seed} --trial K{})",
        range.len(),
        work.display(),
        if a.fs == Fs::Gluster { " --mounts ..." } else { "" }
    );
    let started = Instant::now();
    let mut total = Outcome::default();
    let (mut passed, mut failed) = (0u64, Vec::new());
    for (n, &k) in range.iter().enumerate() {
        let t0 = Instant::now();
        let o = run_trial(&ctx, k, mix(seed, k));
        let ok = o.passed();
        if ok {
            passed += 1;
        } else {
            failed.push(k);
        }
        if a.verbose || !ok {
            println!(
                "trial {k}: {} in {:.2}s; plan: {}; {}; kills {}{}{}",
                if ok { "ok" } else { "FAILED" },
                t0.elapsed().as_secs_f64(),
                o.plan.join(", "),
                o.check.summary(),
                o.kills_writers + o.kills_compactors,
                if o.errors.is_empty() { String::new() } else { format!("; errors: {}", o.errors.join(" | ")) },
                if o.problems.is_empty() { String::new() } else { format!("; problems: {}", o.problems.join(" | ")) },
            );
        }
        if !ok {
            println!(
                "  files kept in {}; re-run: --seed {seed} --trial {k}",
                work.join(format!("trial-{k}")).display()
            );
        } else if !a.keep {
            let _ = fs::remove_dir_all(work.join(format!("trial-{k}")));
            if a.fs == Fs::Gluster {
                let _ = fs::remove_dir_all(ctx.target(k, 0).parent().expect("trial dir"));
            }
        }
        if !a.verbose && (n + 1) % 25 == 0 {
            println!(
                "  ... {} trials, {} failed, {} kills, {:.0}s",
                n + 1,
                failed.len(),
                total.kills_writers + total.kills_compactors + o.kills_writers + o.kills_compactors,
                started.elapsed().as_secs_f64()
            );
        }
        merge(&mut total, o);
    }
    if a.fs == Fs::Gluster && !a.keep && failed.is_empty() {
        let _ = fs::remove_dir_all(ctx.mounts[0].join(&ctx.run_dir));
    }
    if failed.is_empty() && !a.keep {
        let _ = fs::remove_dir(&work);
    }
    let c = &total.check;
    println!("torture summary (fs={fs_name}, seed={seed}, {:.1}s):", started.elapsed().as_secs_f64());
    println!("  trials:        {} ({passed} passed, {} failed{})", range.len(), failed.len(), fmt_list(&failed));
    println!(
        "  kills:         {} ({} writers, {} compactors/drains; {} at a failpoint, {} by timer)",
        total.kills_writers + total.kills_compactors,
        total.kills_writers,
        total.kills_compactors,
        total.kills_by_failpoint,
        total.kills_by_timer
    );
    println!("  failpoints:    {}", total.fp_hit.iter().map(|(p, n)| format!("{p}={n}")).collect::<Vec<_>>().join(" "));
    if !total.fp_missed.is_empty() {
        println!(
            "  not reached:   {} (the process finished before reaching the point)",
            total.fp_missed.iter().map(|(p, n)| format!("{p}={n}")).collect::<Vec<_>>().join(" ")
        );
    }
    println!("  lines:         {} acknowledged, {} in targets", c.acked, c.lines);
    println!("  lost:          {}", c.lost);
    println!("  held back:     {}", c.held);
    println!("  duplicated:    {}", c.duplicated);
    println!("  torn:          {}", c.torn);
    println!("  out of order:  {}", c.out_of_order);
    println!("  errors:        {}", total.errors.len());
    println!("  verify/other:  {}", total.problems.len());
    println!(
        "  deltas:        {} trials committed manifest deltas (format 3), {} with delta records left at the end",
        total.delta_trials, total.delta_trials_seen
    );
    println!(
        "  staging:       {} trials staged their lines, {} with a stage folder at the end",
        total.staging_trials, total.staging_trials_seen
    );
    println!(
        "RESULT fs={fs_name} seed={seed} trials={} failed={} kills={} lost={} duplicated={} torn={} out_of_order={} \
         held={} errors={} problems={} delta_trials={} delta_trials_seen={} staging_trials={} \
         staging_trials_seen={}",
        range.len(),
        failed.len(),
        total.kills_writers + total.kills_compactors,
        c.lost,
        c.duplicated,
        c.torn,
        c.out_of_order,
        c.held,
        total.errors.len(),
        total.problems.len(),
        total.delta_trials,
        total.delta_trials_seen,
        total.staging_trials,
        total.staging_trials_seen
    );
    // A run that meant to cover manifest deltas and took the path nowhere proves nothing.
    let deltas_missed = total.delta_trials >= 4 && total.delta_trials_seen == 0;
    if deltas_missed {
        println!("FAILED: {} trials had manifest deltas on, and no lock file holds a delta record", total.delta_trials);
    }
    let staging_missed = total.staging_trials >= 4 && total.staging_trials_seen == 0;
    if staging_missed {
        println!("FAILED: {} trials had staging on, and no sidecar holds a stage folder", total.staging_trials);
    }
    if failed.is_empty() && !deltas_missed && !staging_missed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn fmt_list(v: &[u64]) -> String {
    if v.is_empty() {
        String::new()
    } else {
        format!(": {}", v.iter().take(20).map(|k| k.to_string()).collect::<Vec<_>>().join(" "))
    }
}

fn merge(total: &mut Outcome, o: Outcome) {
    total.check.add(&o.check);
    total.kills_writers += o.kills_writers;
    total.kills_compactors += o.kills_compactors;
    total.kills_by_failpoint += o.kills_by_failpoint;
    total.kills_by_timer += o.kills_by_timer;
    for (p, n) in o.fp_hit {
        *total.fp_hit.entry(p).or_default() += n;
    }
    for (p, n) in o.fp_missed {
        *total.fp_missed.entry(p).or_default() += n;
    }
    total.errors.extend(o.errors);
    total.problems.extend(o.problems);
    total.delta_trials += o.delta_trials;
    total.delta_trials_seen += o.delta_trials_seen;
    total.staging_trials += o.staging_trials;
    total.staging_trials_seen += o.staging_trials_seen;
}
