//! What a trial does before its first cut: freeze a process at a failpoint, or run a
//! random workload until the seeded cut condition is met.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::time::Instant;

use crate::common::path_str;

use super::check::manifest_epoch;
use super::plan::{Durab, RandomPlan, WriterMode};
use super::proc::{P, POLL, RUN_TIMEOUT, START_TIMEOUT};
use super::trial::{frozen_in_writer, Trial, JOURNAL_FP_ID, MAIN_LINES};

pub(super) fn failpoint_phase(t: &mut Trial, point: &'static str, adopt: bool, header: &[u8]) -> Result<(), String> {
    t.wait_new_acks(20)?;
    let trib = t.ctx.trib.clone();
    if adopt {
        // A pre-existing target, written (not synced) just before the command that
        // creates the target and adopts it: `init`, frozen at its first slot commit;
        // or a `drain --create`, frozen after its first round's write.
        let mut h = header.to_vec();
        h.push(b'\n');
        fs::write(&t.target, h).map_err(|e| format!("writing the pre-existing target: {e}"))?;
        if point.starts_with("drain.") {
            let args = t.drain_args(&["--create".to_string()]);
            return t.freeze_at("drain --create", trib, args, point);
        }
        let args = t.init_args();
        return t.freeze_at("init", trib, args, point);
    }
    // History first: a committed round (its lines get old, the manifest exists).
    let args = t.drain_args(&[]);
    let log = t.log("drain");
    P::run("first drain", &trib, &args, &[], &log)?;
    if point == "drain.after_truncate" {
        // an uncommitted tail for the frozen drain to truncate
        t.wait_new_acks(10)?;
        let args = t.drain_args(&[]);
        let log = t.log("drain-killed");
        let mut p = P::spawn(
            "drain killed after write",
            &trib,
            &args,
            &[("TRIBUTARY_FAILPOINTS", "drain.after_write=kill".into())],
            &log,
        )?;
        let st = p.wait(RUN_TIMEOUT)?;
        if st.signal() != Some(libc::SIGKILL) {
            return Err(format!("the drain meant to die at drain.after_write did not: {}", p.describe(st)));
        }
    }
    // New lines of both durabilities, read by the frozen drain.
    t.wait_new_acks(20)?;
    if frozen_in_writer(point) {
        let w = t.new_writer(JOURNAL_FP_ID, JOURNAL_FP_ID, true, MAIN_LINES);
        let args = t.writer_args(&w, 0, 4, Durab::Full, WriterMode::Plain);
        t.writers.push(w);
        let me = t.ctx.torture.clone();
        return t.freeze_at("writer 50", me, args, point);
    }
    let extra: Vec<String> = if point.starts_with("rotate.") {
        ["--rotate-lines", "1", "--retain", "1"].iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    if point == "journal.give_back" {
        // A drain gives space back only from a journal whose file and -wal hold more
        // than 256 KiB (`journal/space.rs`, too_small_to_give_back): a trial whose
        // writers had written less (an Appender's few large commits) ended "without
        // reaching failpoint journal.give_back" (1 of 4 CI runs).
        t.wait_journal_past(320 << 10)?;
    }
    let args = t.drain_args(&extra);
    t.freeze_at("drain", trib, args, point)
}

pub(super) fn random_phase(t: &mut Trial, r: &RandomPlan, header: &[u8]) -> Result<(), String> {
    if r.header {
        // written, not synced: `init` adopts it (and makes it durable first, O4)
        let mut h = header.to_vec();
        h.push(b'\n');
        fs::write(&t.target, h).map_err(|e| format!("writing the pre-existing target: {e}"))?;
        t.init("init (adopting)")?;
    }
    let mut flags: Vec<String> = vec!["--lock-timeout-ms".into(), "120000".into()];
    if let Some(b) = r.max_round_bytes {
        flags.extend(["--max-round-bytes".into(), b.to_string()]);
    }
    if let Some((f, n)) = r.rotate {
        flags.extend([f.to_string(), n.to_string()]);
        if let Some(k) = r.retain {
            flags.extend(["--retain".into(), k.to_string()]);
        }
    }
    let compact: Vec<String> = [
        "compact".to_string(),
        "--target".into(),
        path_str(&t.target),
        "--spool".into(),
        path_str(&t.spool),
        "--interval".into(),
        r.interval_ms.to_string(),
    ]
    .into_iter()
    .chain(flags.iter().cloned())
    .collect();
    let drain: Vec<String> =
        ["drain".to_string(), "--target".into(), path_str(&t.target), "--spool".into(), path_str(&t.spool)]
            .into_iter()
            .chain(flags.iter().cloned())
            .collect();
    let trib = t.ctx.trib.clone();
    let log = t.log("compact-a");
    t.procs.push(P::spawn("compact a", &trib, &compact, &[], &log)?);
    let log_b = t.log("compactor-b");
    if r.two_daemons {
        t.procs.push(P::spawn("compact b", &trib, &compact, &[], &log_b)?);
    }
    // The drain loop (when not a second daemon) is kept going inside the condition wait.
    let mut drain_proc: Option<P> = None;
    let mut loop_drain = || -> Result<(), String> {
        if r.two_daemons {
            return Ok(());
        }
        if let Some(p) = drain_proc.as_mut() {
            match p.poll() {
                None => return Ok(()),
                Some(st) if !st.success() => return Err(format!("before the cut: {}", p.describe(st))),
                Some(_) => {}
            }
        }
        drain_proc = Some(P::spawn("drain loop", &trib, &drain, &[], &log_b)?);
        Ok(())
    };
    let deadline = Instant::now() + START_TIMEOUT;
    let mut epoch_at_k: Option<u64> = None;
    loop {
        loop_drain()?;
        t.check_procs()?;
        let acked: u64 = t.main_acked().iter().sum();
        if acked >= r.cut_acked {
            if !r.cut_after_commit {
                break;
            }
            let e = manifest_epoch(&t.target);
            match epoch_at_k {
                None => epoch_at_k = Some(e),
                Some(e0) if e > e0 => break,
                Some(_) => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "cut condition ({} acks{}) not reached within {}s (acked {acked})",
                r.cut_acked,
                if r.cut_after_commit { " + a commit" } else { "" },
                START_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    }
    if let Some(p) = drain_proc.take() {
        t.procs.push(p);
    }
    Ok(())
}
