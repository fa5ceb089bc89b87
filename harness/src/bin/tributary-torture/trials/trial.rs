//! One crash trial. Its plan (writers, drain actions, kills) is drawn from the seed as it
//! runs, so drawing and running stay one procedure here; then recovery and the proof.

use std::fs;
use std::time::{Duration, Instant};

use tributary_harness::rng::{mix, Rng};

use crate::common::{
    check_target, committed_view, drain_failpoints, journal_drained_seq, path_str, strings, Exit, Proc, WriterSpec,
};

use super::check::{check_consistency, sabotage};
use super::{Ctx, Fs, Outcome};

#[derive(Debug, Clone)]
enum Action {
    /// `drain` with `point=kill`
    DrainFp(&'static str),
    /// `drain` SIGKILLed after this many ms (if still running)
    DrainTimed(u64),
    /// `compact` SIGKILLed after this many ms, maybe dying at a failpoint first
    CompactTimed(u64, Option<&'static str>),
    /// two drains from two hosts at once, the first dying at the failpoint
    Pair(&'static str, usize),
    Clean,
}

struct WriterState {
    spec: WriterSpec,
    proc: Proc,
    done: bool,
}

fn any_point(rng: &mut Rng, points: &[&'static str]) -> &'static str {
    points[rng.below(points.len() as u64) as usize]
}

fn point_of(fp: &Option<String>) -> Option<&'static str> {
    let name = fp.as_deref()?.split('=').next()?;
    tributary::testing::failpoint::POINTS.iter().copied().chain(drain_failpoints()).find(|p| *p == name)
}

/// Account for a life that ended: count kills (by failpoint or timer), record failures.
fn account(p: &Proc, exit: &Exit, writer: bool, o: &mut Outcome) {
    let point = point_of(&p.failpoint);
    match exit {
        Exit::Killed => {
            if writer {
                o.kills_writers += 1;
            } else {
                o.kills_compactors += 1;
            }
            if p.timer_fired {
                o.kills_by_timer += 1;
            } else if let Some(pt) = point {
                o.kills_by_failpoint += 1;
                *o.fp_hit.entry(pt).or_default() += 1;
            } else {
                o.errors.push(format!("{} died of SIGKILL that nobody sent (OOM?)", p.name));
            }
        }
        Exit::Ok => {
            if let Some(pt) = point {
                *o.fp_missed.entry(pt).or_default() += 1;
            }
        }
        Exit::Failed(e) => o.errors.push(format!("{} (life {}): {e}", p.name, p.lives)),
    }
}

fn poll_writers(ws: &mut [WriterState], o: &mut Outcome) {
    for w in ws.iter_mut().filter(|w| !w.done) {
        if let Some(exit) = w.proc.poll() {
            account(&w.proc, &exit, true, o);
            match exit {
                Exit::Ok => w.done = true,
                Exit::Killed => {
                    if let Err(e) = w.proc.start(None, None) {
                        o.errors.push(format!("restarting {}: {e}", w.proc.name));
                        w.done = true;
                    }
                }
                Exit::Failed(_) => w.done = true,
            }
        }
    }
}

/// `tributary init` of trial `k`'s target, once, before any drain; in one trial of four
/// a first `init` is SIGKILLed at its slot commit (before or after its fdatasync) and
/// `init` is run again, as its operator would. Then wait until every host sees it.
fn create_target(ctx: &Ctx, k: u64, tseed: u64, o: &mut Outcome) -> Result<(), String> {
    let target = ctx.target(k, 0);
    let init = |failpoint: Option<&str>| {
        let mut c = std::process::Command::new(&ctx.trib);
        c.args(["init", "--target"]).arg(&target).env_remove("TRIBUTARY_FAILPOINTS");
        if let Some(fp) = failpoint {
            c.env("TRIBUTARY_FAILPOINTS", format!("{fp}=kill"));
        }
        c.output().map_err(|e| format!("running tributary init: {e}"))
    };
    let mut rng = Rng::new(mix(tseed, 0x1417));
    if rng.chance(1, 4) {
        let point = *rng.pick(&["init.after_slot", "init.slot_unsynced"]);
        o.plan.push(format!("init killed at {point}"));
        let out = init(Some(point))?;
        if out.status.code().is_some() {
            return Err(format!(
                "the init meant to die at {point} exited: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        o.kills_compactors += 1;
        o.kills_by_failpoint += 1;
        *o.fp_hit.entry(point).or_default() += 1;
    }
    let out = init(None)?;
    if !out.status.success() {
        return Err(format!("tributary init: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let until = Instant::now() + Duration::from_secs(20);
    while !(0..ctx.hosts()).all(|h| tributary::Sidecar::for_target(&ctx.target(k, h)).lock.exists()) {
        if Instant::now() > until {
            return Err("the initialised target is not visible through every mount after 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

pub(super) fn run_trial(ctx: &Ctx, k: u64, tseed: u64) -> Outcome {
    let mut o = Outcome::default();
    // the manifest formats in turn: the default (3), deltas everywhere, format 2
    let format = crate::common::TrialFormat::of_trial(k);
    crate::common::set_manifest_format(format);
    o.plan.extend(format.plan_note().map(String::from));
    if format == crate::common::TrialFormat::Deltas {
        o.delta_trials = 1;
    }
    // trials 2 and 3 of every 4 stage their lines: each format with and without
    let staging = k % 4 >= 2;
    crate::common::set_staging(staging);
    if staging {
        o.plan.push("staging".into());
        o.staging_trials = 1;
    }
    let mut rng = Rng::new(tseed);
    let hosts = ctx.hosts();
    let tdir = ctx.work.join(format!("trial-{k}"));
    let logs = tdir.join("logs");
    let acks = tdir.join("acks");
    let spool = |h: usize| tdir.join(format!("host{h}")).join("spool");
    let mut dirs = vec![logs.clone(), acks.clone()];
    dirs.extend((0..hosts).map(spool));
    dirs.push(ctx.target(k, 0).parent().expect("target dir").to_path_buf());
    for d in &dirs {
        if let Err(e) = fs::create_dir_all(d) {
            o.errors.push(format!("creating {}: {e}", d.display()));
            return o;
        }
    }
    if let Err(e) = create_target(ctx, k, tseed, &mut o) {
        o.errors.push(e);
        return o;
    }
    let points = drain_failpoints();

    // writers
    let nw = 1 + rng.below(3) as u32;
    let first_host = rng.below(hosts as u64) as usize;
    let mut ws: Vec<WriterState> = Vec::new();
    let mut writer_hosts: Vec<usize> = Vec::new();
    for w in 1..=nw {
        // spread over the hosts (two writers may share a host, and so a journal folder)
        let host = if rng.chance(1, 4) { rng.below(hosts as u64) as usize } else { (first_host + w as usize) % hosts };
        writer_hosts.push(host);
        let rate = if rng.chance(1, 3) { 0 } else { 300 + rng.below(2700) };
        let spec = WriterSpec {
            id: w,
            lines: 5 + rng.below(150),
            journal: spool(host).join(format!("w{w}.journal")),
            ack: acks.join(format!("w{w}.ack")),
        };
        let args = strings([
            "writer".to_string(),
            "--journal".into(),
            path_str(&spec.journal),
            "--ack".into(),
            path_str(&spec.ack),
            "--writer".into(),
            w.to_string(),
            "--lines".into(),
            spec.lines.to_string(),
            "--run".into(),
            tseed.to_string(),
            "--max-batch".into(),
            (1 + rng.below(24)).to_string(),
            "--rate".into(),
            rate.to_string(),
        ]);
        let mut proc = Proc::new(format!("writer-{w}@host{host}"), &ctx.me, args, logs.join(format!("writer-{w}.log")));
        let (fp, timer) = match rng.below(8) {
            0 => (Some("journal.before_commit=kill".to_string()), None),
            1 => (Some("journal.after_commit=kill".to_string()), None),
            2..=4 => (None, Some(Duration::from_millis(rng.below(100)))),
            _ => (None, None),
        };
        o.plan.push(format!(
            "w{w}@h{host}x{}{}{}",
            spec.lines,
            fp.as_deref().map(|f| format!(" fp {f}")).unwrap_or_default(),
            timer.map(|t| format!(" kill@{}ms", t.as_millis())).unwrap_or_default()
        ));
        if let Err(e) = proc.start(fp, timer) {
            o.errors.push(format!("starting {}: {e}", proc.name));
            return o;
        }
        ws.push(WriterState { spec, proc, done: false });
    }

    // drain actions
    let n_actions = 2 + rng.below(4);
    let mut actions = Vec::new();
    // a drain that died between writing and committing leaves a tail; the next drain
    // then truncates it, so aim at drain.after_truncate more often right after one
    // (drain.lose_lock comes after the fdatasync)
    let leaves_tail = ["drain.mid_write", "drain.after_write", "drain.after_fsync", "drain.lose_lock"];
    let mut tail_likely = false;
    for _ in 0..n_actions {
        // mostly a host that has writers (a drain of an empty spool still takes the lock)
        let host = if rng.chance(4, 5) { *rng.pick(&writer_hosts) } else { rng.below(hosts as u64) as usize };
        let action = match rng.below(20) {
            0..=7 if tail_likely && rng.chance(1, 2) => Action::DrainFp("drain.after_truncate"),
            0..=7 => Action::DrainFp(any_point(&mut rng, &points)),
            8..=11 => Action::DrainTimed(rng.below(40)),
            12..=14 => Action::CompactTimed(
                20 + rng.below(200),
                if rng.chance(1, 2) { Some(any_point(&mut rng, &points)) } else { None },
            ),
            15..=17 => {
                Action::Pair(any_point(&mut rng, &points), (host + 1 + rng.below(hosts as u64 - 1) as usize) % hosts)
            }
            _ => Action::Clean,
        };
        // small rounds sometimes, so one drain makes several rounds a kill can fall between
        let round_bytes = match rng.below(3) {
            0 => Some(64 + rng.below(2048)),
            _ => None,
        };
        tail_likely = matches!(&action, Action::DrainFp(p) | Action::Pair(p, _) if leaves_tail.contains(p));
        actions.push((host, action, round_bytes));
    }
    std::thread::sleep(Duration::from_millis(rng.below(40)));

    let compactor_args = |cmd: &str, host: usize, round_bytes: Option<u64>| -> Vec<String> {
        let mut v = strings([
            cmd.to_string(),
            "--target".into(),
            path_str(&ctx.target(k, host)),
            "--spool".into(),
            path_str(&spool(host)),
            "--lock-timeout-ms".into(),
            "30000".into(),
        ]);
        if cmd == "compact" {
            v.extend(strings(["--interval", "10"]));
        }
        if let Some(b) = round_bytes {
            v.extend(strings(["--max-round-bytes".to_string(), b.to_string()]));
        }
        v
    };
    for (n, (host, action, round_bytes)) in actions.iter().enumerate() {
        let mut procs: Vec<Proc> = Vec::new();
        let mk = |cmd: &str, h: usize, tag: &str| {
            Proc::new(
                format!("{cmd}-{n}{tag}@host{h}"),
                &ctx.trib,
                compactor_args(cmd, h, *round_bytes),
                logs.join(format!("action-{n}{tag}.log")),
            )
        };
        let started = match action {
            Action::DrainFp(p) => {
                let mut d = mk("drain", *host, "");
                let r = d.start(Some(format!("{p}=kill")), None);
                procs.push(d);
                r
            }
            Action::DrainTimed(ms) => {
                let mut d = mk("drain", *host, "");
                let r = d.start(None, Some(Duration::from_millis(*ms)));
                procs.push(d);
                r
            }
            Action::CompactTimed(ms, p) => {
                let mut d = mk("compact", *host, "");
                let r = d.start(p.map(|p| format!("{p}=kill")), Some(Duration::from_millis(*ms)));
                procs.push(d);
                r
            }
            Action::Pair(p, other) => {
                let mut d1 = mk("drain", *host, "a");
                let mut d2 = mk("drain", *other, "b");
                let r = d1.start(Some(format!("{p}=kill")), None).and_then(|_| d2.start(None, None));
                procs.push(d1);
                procs.push(d2);
                r
            }
            Action::Clean => {
                let mut d = mk("drain", *host, "");
                let r = d.start(None, None);
                procs.push(d);
                r
            }
        };
        o.plan.push(format!("{action:?}@h{host}{}", round_bytes.map(|b| format!(" rounds<={b}B")).unwrap_or_default()));
        if let Err(e) = started {
            o.errors.push(format!("starting action {n}: {e}"));
            return o;
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut live = procs.len();
        while live > 0 {
            poll_writers(&mut ws, &mut o);
            for p in procs.iter_mut().filter(|p| p.running()) {
                if let Some(exit) = p.poll() {
                    account(p, &exit, false, &mut o);
                    live -= 1;
                }
            }
            if Instant::now() >= deadline {
                for p in procs.iter_mut().filter(|p| p.running()) {
                    p.kill();
                    o.errors.push(format!("{} hung for 90 s (killed)", p.name));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    // let the writers finish (restarting killed ones)
    let deadline = Instant::now() + Duration::from_secs(120);
    while ws.iter().any(|w| !w.done) {
        poll_writers(&mut ws, &mut o);
        if Instant::now() >= deadline {
            o.errors.push("writers did not finish within 120 s".into());
            return o;
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    // recovery: one clean drain per host
    for h in 0..hosts {
        let mut d = Proc::new(
            format!("recovery-drain@host{h}"),
            &ctx.trib,
            compactor_args("drain", h, None),
            logs.join(format!("recovery-{h}.log")),
        );
        if let Err(e) = d.start(None, None) {
            o.errors.push(format!("starting the recovery drain: {e}"));
            return o;
        }
        match d.wait_timeout(Duration::from_secs(120)) {
            Some((Exit::Ok, false)) => {}
            Some((exit, hung)) => o
                .errors
                .push(format!("recovery drain on host {h}: {exit:?}{}", if hung { " (hung 120 s)" } else { "" })),
            None => o.errors.push(format!("recovery drain on host {h} vanished")),
        }
    }

    // the proof
    let specs: Vec<WriterSpec> = ws.iter().map(|w| w.spec.clone()).collect();
    let target = ctx.target(k, 0);
    let bytes = match tributary::testing::fs::read_fresh(&target) {
        Ok(b) => b,
        Err(e) => {
            o.problems.push(format!("reading {}: {e}", target.display()));
            return o;
        }
    };
    let checked = match ctx.sabotage.as_deref() {
        Some(how) => sabotage(&bytes, how),
        None => bytes.clone(),
    };
    o.check = check_target(tseed, &checked, &specs, &|w| journal_drained_seq(&w.journal));
    check_consistency(&target, &specs, &mut o);
    if format == crate::common::TrialFormat::Deltas && crate::common::delta_records(&target) > 0 {
        o.delta_trials_seen = 1;
    }
    if staging && crate::common::staged(&target) {
        o.staging_trials_seen = 1;
    }
    if ctx.fs == Fs::Gluster {
        for h in 0..hosts {
            match committed_view(&ctx.target(k, h)) {
                Ok(v) if v == bytes => {}
                Ok(v) => o.problems.push(format!(
                    "a Reader through {} shows {} committed bytes, the file has {}",
                    ctx.mounts[h].display(),
                    v.len(),
                    bytes.len()
                )),
                Err(e) => o.problems.push(format!("a Reader through {}: {e}", ctx.mounts[h].display())),
            }
        }
        for h in 1..hosts {
            match tributary::testing::fs::read_fresh(&ctx.target(k, h)) {
                Ok(b) if b == bytes => {}
                Ok(b) => o.problems.push(format!(
                    "mount {} shows {} bytes, mount {} shows {}",
                    ctx.mounts[h].display(),
                    b.len(),
                    ctx.mounts[0].display(),
                    bytes.len()
                )),
                Err(e) => o.problems.push(format!("reading via {}: {e}", ctx.mounts[h].display())),
            }
        }
    }
    o
}
