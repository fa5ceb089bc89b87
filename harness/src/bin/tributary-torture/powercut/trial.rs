//! One power-cut trial: its processes and writers ([`Trial`]), the cut, the recovery
//! (maybe cut too) and the check ([`run_trial`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tributary_harness::ack;

use crate::common::path_str;

use super::check::{check, read_generations, Acked, Tally};
use super::disk::{shutdown_fs, sync_dir, Disk};
use super::phase::{failpoint_phase, random_phase};
use super::plan::{Durab, Kind, Plan, WriterMode};
use super::proc::{P, POLL, START_TIMEOUT};

/// Writer ids: main writers are 1..=3; these are per-journal helpers.
const PRIME_ID: u32 = 100; // + journal: 2 full lines that make each journal durable first
const FRESH_PRE_ID: u32 = 200; // + journal: full lines appended before a recovery that is cut
const FRESH_POST_ID: u32 = 300; // + journal: full lines appended after recovery
pub(super) const JOURNAL_FP_ID: u32 = 50; // the writer frozen at a journal.* failpoint (own journal)

/// Whether a cut at `point` freezes a writer (its own journal, [`JOURNAL_FP_ID`]) rather
/// than a drain: every `journal.*` point is on a writer's path except
/// `journal.give_back`, which the drain reaches after recording what it drained.
pub(super) fn frozen_in_writer(point: &str) -> bool {
    point.starts_with("journal.") && point != "journal.give_back"
}
pub(super) const MAIN_LINES: u64 = 10_000_000;
const FRESH_LINES: u64 = 5;

pub(super) struct Ctx {
    pub(super) trib: PathBuf,
    pub(super) torture: PathBuf,
}

/// A writer of the trial: its journal and ack file, and whether its acks are frozen.
pub(super) struct W {
    id: u32,
    full: bool,
    lines: u64,
    journal: PathBuf,
    ack: PathBuf,
    /// the acks that count (taken just before the cut that ended this writer's life);
    /// None: the ack file as it is at check time (the writer finished before any cut)
    snapshot: Option<Vec<(u64, u64)>>,
}

impl W {
    fn acked(&self) -> Acked {
        Acked {
            id: self.id,
            full: self.full,
            lines: self.lines,
            acked: self.snapshot.clone().unwrap_or_else(|| ack::read(&self.ack)),
        }
    }
}

pub(super) struct Trial<'a> {
    pub(super) ctx: &'a Ctx,
    plan: &'a Plan,
    mnt: PathBuf,
    pub(super) spool: PathBuf,
    pub(super) target: PathBuf,
    local: PathBuf,
    pub(super) writers: Vec<W>,
    pub(super) procs: Vec<P>,
    errors: Vec<String>,
    tally: Tally,
    n: usize,
}

impl<'a> Trial<'a> {
    pub(super) fn log(&mut self, what: &str) -> PathBuf {
        self.n += 1;
        self.local.join(format!("{:02}-{what}.log", self.n))
    }

    /// `mode`: how the writer appends ([`WriterMode`]).
    pub(super) fn writer_args(
        &self,
        w: &W,
        rate: u64,
        max_batch: u64,
        durability: Durab,
        mode: WriterMode,
    ) -> Vec<String> {
        let mut v = vec![
            "writer".to_string(),
            "--journal".into(),
            path_str(&w.journal),
            "--ack".into(),
            path_str(&w.ack),
            "--writer".into(),
            w.id.to_string(),
            "--lines".into(),
            w.lines.to_string(),
            "--run".into(),
            self.plan.run.to_string(),
            "--max-batch".into(),
            max_batch.to_string(),
        ];
        if rate > 0 {
            v.extend(["--rate".into(), rate.to_string()]);
        }
        if durability != Durab::Full {
            v.extend(["--durability".into(), durability.arg().into()]);
        }
        if let Some(flag) = mode.flag() {
            v.push(flag.into());
        }
        v
    }

    pub(super) fn new_writer(&mut self, id: u32, journal_of: u32, full: bool, lines: u64) -> W {
        W {
            id,
            full,
            lines,
            journal: self.spool.join(format!("j{journal_of}.journal")),
            ack: self.local.join(format!("w{id}.ack")),
            snapshot: None,
        }
    }

    /// A `full` writer that appends `lines` lines to journal `j` and exits (must exit 0).
    fn run_fresh(&mut self, id: u32, j: u32, lines: u64) -> Result<(), String> {
        let w = self.new_writer(id, j, true, lines);
        let args = self.writer_args(&w, 0, 2, Durab::Full, WriterMode::Plain);
        let log = self.log(&format!("writer{id}"));
        self.writers.push(w);
        P::run(&format!("writer {id}"), &self.ctx.torture, &args, &[], &log)
    }

    fn start_main_writers(&mut self) -> Result<(), String> {
        for wp in self.plan.writers.clone() {
            let w = self.new_writer(wp.id, wp.id, wp.durability == Durab::Full, MAIN_LINES);
            let args = self.writer_args(&w, wp.rate, wp.max_batch, wp.durability, wp.mode);
            let log = self.log(&format!("writer{}", wp.id));
            self.writers.push(w);
            let p = P::spawn(&format!("writer {}", wp.id), &self.ctx.torture, &args, &[], &log)?;
            self.procs.push(p);
        }
        Ok(())
    }

    pub(super) fn main_acked(&self) -> Vec<u64> {
        self.plan
            .writers
            .iter()
            .map(|wp| self.writers.iter().find(|w| w.id == wp.id).map_or(0, |w| ack::read(&w.ack).len() as u64))
            .collect()
    }

    /// Fail if any running process of the trial already ended badly (before a cut).
    pub(super) fn check_procs(&mut self) -> Result<(), String> {
        for p in &mut self.procs {
            if let Some(st) = p.poll() {
                if !st.success() {
                    return Err(format!("before the cut: {}", p.describe(st)));
                }
            }
        }
        Ok(())
    }

    /// Wait until `cond` holds, failing loudly after START_TIMEOUT or if a process dies.
    fn wait_until(&mut self, what: &str, mut cond: impl FnMut(&mut Self) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while !cond(self) {
            self.check_procs()?;
            if Instant::now() >= deadline {
                return Err(format!("{what}: not reached within {}s", START_TIMEOUT.as_secs()));
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// Wait until some writer's journal (its file and `-wal`) holds more than `bytes`.
    pub(super) fn wait_journal_past(&mut self, bytes: u64) -> Result<(), String> {
        let size = |p: &Path| fs::metadata(p).map_or(0, |m| m.len());
        self.wait_until(&format!("a journal past {bytes} bytes"), |t| {
            t.writers.iter().any(|w| {
                let mut wal = w.journal.clone().into_os_string();
                wal.push("-wal");
                size(&w.journal) + size(Path::new(&wal)) > bytes
            })
        })
    }

    pub(super) fn wait_new_acks(&mut self, at_least: u64) -> Result<(), String> {
        let base = self.main_acked();
        self.wait_until(&format!("{at_least} more acked lines per writer"), |t| {
            t.main_acked().iter().zip(&base).all(|(now, b)| *now >= b + at_least)
        })
    }

    pub(super) fn drain_args(&self, extra: &[String]) -> Vec<String> {
        self.drain_args_of(&self.spool, extra)
    }

    /// [`drain_args`](Self::drain_args) of another spool (a host with other journals).
    fn drain_args_of(&self, spool: &Path, extra: &[String]) -> Vec<String> {
        let mut v = vec![
            "drain".to_string(),
            "--target".into(),
            path_str(&self.target),
            "--spool".into(),
            path_str(spool),
            "--lock-timeout-ms".into(),
            "120000".into(),
        ];
        v.extend(extra.iter().cloned());
        v
    }

    pub(super) fn init_args(&self) -> Vec<String> {
        vec!["init".to_string(), "--target".into(), path_str(&self.target), "--lock-timeout-ms".into(), "120000".into()]
    }

    /// `tributary init`, run to completion (must exit 0).
    pub(super) fn init(&mut self, what: &str) -> Result<(), String> {
        let args = self.init_args();
        let log = self.log("init");
        P::run(what, &self.ctx.trib, &args, &[], &log)
    }

    /// Start a process frozen at `point` (`=wait`) and wait until it announces it.
    pub(super) fn freeze_at(&mut self, name: &str, exe: PathBuf, args: Vec<String>, point: &str) -> Result<(), String> {
        let fp = self.local.join(format!("fp{}", self.n));
        fs::create_dir_all(&fp).map_err(|e| format!("{}: {e}", fp.display()))?;
        let log = self.log(name);
        let env = [
            ("TRIBUTARY_FAILPOINTS", format!("{point}=wait")),
            (tributary::testing::failpoint::DIR_VAR, path_str(&fp)),
        ];
        let mut p = P::spawn(name, &exe, &args, &env, &log)?;
        let reached = fp.join(format!("{point}.reached"));
        let deadline = Instant::now() + START_TIMEOUT;
        while !reached.exists() {
            if let Some(st) = p.poll() {
                return Err(if st.success() {
                    format!("{name} ended without reaching failpoint {point}")
                } else {
                    format!("{name} ended before failpoint {point}: {}", p.describe(st))
                });
            }
            self.check_procs()?;
            if Instant::now() >= deadline {
                return Err(format!("{name}: failpoint {point} not reached within {}s", START_TIMEOUT.as_secs()));
            }
            std::thread::sleep(POLL);
        }
        self.procs.push(p);
        Ok(())
    }

    /// THE CUT: freeze the acks (read just before the ioctl), shut the filesystem
    /// down, SIGKILL every process of the trial, unmount, mount (log replay).
    fn cut(&mut self, disk: &mut Disk) -> Result<(), String> {
        for w in &mut self.writers {
            if w.snapshot.is_none() {
                w.snapshot = Some(ack::read(&w.ack));
            }
        }
        let r = shutdown_fs(&self.mnt).map_err(|e| format!("FS_IOC_SHUTDOWN on {}: {e}", self.mnt.display()));
        for p in &mut self.procs {
            p.kill();
        }
        self.procs.clear();
        r?;
        self.tally.cuts += 1;
        disk.cycle()
    }
}

pub(super) fn run_trial(ctx: &Ctx, disk: &mut Disk, work: &Path, k: u64, plan: &Plan) -> (Tally, Vec<String>) {
    // the manifest formats in turn: the default (3), deltas everywhere, format 2
    let format = crate::common::TrialFormat::of_trial(k);
    crate::common::set_manifest_format(format);
    let deltas = format == crate::common::TrialFormat::Deltas;
    // trials 2 and 3 of every 4 stage their lines (docs/design.md "Staging"), and every
    // trial cut at a point only a stager or step S reaches
    let staging_point = |p: &str| p.starts_with("stage.") || p == "drain.after_staged_read";
    let staging = k % 4 >= 2 || matches!(&plan.kind, Kind::Failpoint { point, .. } if staging_point(point));
    crate::common::set_staging(staging);
    let tdir = disk.mnt.join(format!("t{k}"));
    let local = work.join(disk.kind.name()).join(format!("trial-{k}"));
    let _ = fs::remove_dir_all(&local);
    let _ = fs::remove_dir_all(&tdir);
    let mut t = Trial {
        ctx,
        plan,
        mnt: disk.mnt.clone(),
        spool: tdir.join("spool"),
        target: tdir.join("shared").join("out.log"),
        local,
        writers: Vec::new(),
        procs: Vec::new(),
        errors: Vec::new(),
        tally: Tally::default(),
        n: 0,
    };
    let header = format!("pre-existing header of run {}", plan.run).into_bytes();
    let r = (|| -> Result<(), String> {
        fs::create_dir_all(&t.local).map_err(|e| format!("{}: {e}", t.local.display()))?;
        for d in [t.spool.clone(), tdir.join("shared")] {
            fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        for d in [t.spool.clone(), tdir.join("shared"), tdir.clone(), disk.mnt.clone()] {
            sync_dir(&d)?;
        }
        // The target is created once, before anything drains (a trial with a
        // pre-existing target creates it, adopting that, in its phase below).
        if !plan_has_header(plan) {
            t.init("init")?;
        }
        // Each journal first gets 2 full lines, so the journal itself is durable.
        for wp in plan.writers.clone() {
            t.run_fresh(PRIME_ID + wp.id, wp.id, 2)?;
        }
        t.start_main_writers()?;
        match &plan.kind {
            Kind::Failpoint { point, adopt } => failpoint_phase(&mut t, point, *adopt, &header)?,
            Kind::Random(r) => random_phase(&mut t, r, &header)?,
        }
        t.cut(disk)?;
        Ok(())
    })();
    if let Err(e) = r {
        t.errors.push(e);
        for p in &mut t.procs {
            p.kill();
        }
        t.procs.clear();
        return (t.tally, t.errors);
    }

    // Recovery (first cut, maybe, during it).
    let journals: Vec<u32> = {
        let mut v: Vec<u32> = plan.writers.iter().map(|w| w.id).collect();
        if matches!(plan.kind, Kind::Failpoint { point, .. } if frozen_in_writer(point)) {
            v.push(JOURNAL_FP_ID);
        }
        v
    };
    // The command that created the target was cut before it returned: its operator
    // runs it again (`init` finishes or redoes an interrupted creation).
    if matches!(plan.kind, Kind::Failpoint { adopt: true, .. }) {
        if let Err(e) = t.init("init again (the creating command was cut)") {
            t.errors.push(e);
        }
    }
    if let Some(point) = plan.recovery_cut {
        let r = (|| -> Result<(), String> {
            for j in &journals {
                t.run_fresh(FRESH_PRE_ID + j, *j, FRESH_LINES)?;
            }
            let args = t.drain_args(&[]);
            t.freeze_at("recovery drain (to be cut)", ctx.trib.clone(), args, point)?;
            t.cut(disk)
        })();
        if let Err(e) = r {
            t.errors.push(format!("recovery cut: {e}"));
        }
    }
    let r = (|| -> Result<(), String> {
        if staging {
            // Another host, with no journals, drains first: it commits what the cut
            // left staged, on the word of the stage file alone (O3 and O14 at the
            // stager: the staged rows must have survived the cut in their journals).
            let empty = t.local.join("holder-spool");
            fs::create_dir_all(&empty).map_err(|e| format!("{}: {e}", empty.display()))?;
            let args = t.drain_args_of(&empty, &[]);
            let log = t.log("holder-drain");
            P::run("holder drain (no journals of its own)", &ctx.trib, &args, &[], &log)?;
        }
        let args = t.drain_args(&[]);
        let log = t.log("recovery-drain");
        P::run("recovery drain", &ctx.trib, &args, &[], &log)?;
        let log = t.log("verify");
        P::run("verify", &ctx.trib, &["verify".into(), "--target".into(), path_str(&t.target)], &[], &log)?;
        // Fresh durable lines on every journal must arrive (bug class: a journal that
        // re-issued seqs below the target's watermark would have them dropped).
        for j in &journals {
            t.run_fresh(FRESH_POST_ID + j, *j, FRESH_LINES)?;
        }
        let args = t.drain_args(&[]);
        let log = t.log("final-drain");
        P::run("final drain", &ctx.trib, &args, &[], &log)?;
        let log = t.log("verify");
        P::run("final verify", &ctx.trib, &["verify".into(), "--target".into(), path_str(&t.target)], &[], &log)
    })();
    if let Err(e) = r {
        t.errors.push(e);
    }
    match read_generations(&t.target) {
        Ok((files, gap)) => {
            let acked: Vec<Acked> = t.writers.iter().map(W::acked).collect();
            let header = if plan_has_header(plan) { Some(header.as_slice()) } else { None };
            let gap_allowed = gap && plan.retain().is_some();
            if gap && !gap_allowed {
                t.errors.push("a generation of the target is missing, and no retention was configured".into());
            }
            let c = check(plan.run, &files, header, &acked, gap_allowed);
            let cuts = t.tally.cuts;
            t.tally = c;
            t.tally.cuts = cuts;
        }
        Err(e) => t.errors.push(e),
    }
    if deltas {
        t.tally.delta_trials = 1;
        t.tally.delta_trials_seen = u64::from(crate::common::delta_records(&t.target) > 0);
    }
    if staging {
        t.tally.staging_trials = 1;
        t.tally.staging_trials_seen = u64::from(crate::common::staged(&t.target));
    }
    (t.tally, t.errors)
}

fn plan_has_header(plan: &Plan) -> bool {
    match &plan.kind {
        Kind::Failpoint { adopt, .. } => *adopt,
        Kind::Random(r) => r.header,
    }
}
