//! Real power cuts. A filesystem (ext4 or xfs) in a sparse image on a loop device holds
//! the journals AND the target (a whole machine losing power). The cut is the ioctl
//! `FS_IOC_SHUTDOWN` with `FSOP_GOING_FLAGS_NOLOGFLUSH`: from that instant nothing more
//! reaches the device, so page cache and unjournalled metadata are lost, as in a power
//! failure. Then every process of the trial is SIGKILLed, the filesystem is unmounted
//! and mounted again (log replay), recovery runs (`tributary drain` of every journal,
//! `tributary verify`), fresh `full` lines are appended to every journal and drained,
//! and the target is checked:
//! - every line a `full` writer had acknowledged BEFORE the cut is there exactly once
//!   (acks live outside the cut filesystem and are read just before the ioctl: an ack
//!   written while the ioctl runs may cover data that is then lost);
//! - `normal` writers' lines may be missing (they may lose unsynced lines on a power
//!   cut) but are never duplicated and never cost a `full` line;
//! - no line twice, none torn or foreign, each writer's lines in order; recovery drain
//!   and verify exit 0; the fresh lines all arrive (a journal that re-issued seqs after
//!   the cut must not have new durable lines silently dropped).
//!
//! Two kinds of trials, drawn from the seed (the same seed replays the same plan):
//! - failpoint trials: one deterministic cut at each failpoint of [`tributary::testing::failpoint::POINTS`]
//!   (and `drain.after_intent`), reached with the `=wait` action (the process announces
//!   the point with a file and blocks there; no timing), plus cuts while `init` (or a
//!   `drain --create`) adopts a pre-existing target. The target of every other trial is
//!   created by `tributary init` before anything else runs (drains never create one);
//!   when the creating command itself was cut, recovery runs `init` again first, as an
//!   operator whose `init` never returned would;
//! - random trials: 1-3 writers of both durabilities, two racing compactors (two
//!   `compact` daemons, or a daemon and back-to-back `drain`s), managed rotation with
//!   retention in some; the cut comes when a seeded condition is met (acked lines past
//!   K, optionally the next manifest commit after that), never after a fixed sleep.
//!
//! Some trials cut the recovery itself (a recovery drain frozen at a failpoint), then
//! recover again. Needs root, loop devices, mkfs.ext4/mkfs.xfs; otherwise exits 77.
//!
//! This file: the arguments and [`run`] (the loop over filesystems and trials, the
//! summaries). The plan of a trial is in `plan`, the filesystem and the cut in `disk`,
//! child processes in `proc`, one trial in `trial` (and `phase`), the check in `check`.

mod check;
mod disk;
mod phase;
mod plan;
mod proc;
mod trial;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};

use tributary_harness::rng::random_seed;

use crate::common::path_str;

use check::Tally;
use disk::{shutdown_fs, unsupported, Disk};
use plan::{plan, FsKind, Kind};
use proc::cmd;
use trial::{run_trial, Ctx};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsChoice {
    Ext4,
    Xfs,
    All,
}

#[derive(Args, Debug)]
pub struct PowercutArgs {
    /// Filesystem(s) to cut: ext4, xfs or all.
    #[arg(long, value_enum, default_value = "all")]
    pub fs: FsChoice,
    /// Power cuts per filesystem (at least; a trial may cut twice).
    #[arg(long, default_value_t = 40)]
    pub cuts: u64,
    /// Seed (default: $TRIB_SEED or random; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run only this trial of the seed (to replay a failure).
    #[arg(long)]
    pub trial: Option<u64>,
    /// Folder of the binaries under test: `tributary` and `tributary-torture` (for its
    /// `writer`). Default: the folder of this executable.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Work folder (images, mount points, acks, logs); default /dev/shm or $TMPDIR.
    /// Must not be on the filesystem that is cut (acks live here).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Size of the sparse filesystem image in MiB.
    #[arg(long, default_value_t = 512)]
    pub image_mib: u64,
    /// Keep the files of passing trials too.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(a: PowercutArgs) -> ExitCode {
    let seed = a.seed.or_else(|| std::env::var("TRIB_SEED").ok()?.parse().ok()).unwrap_or_else(random_seed);
    let kinds: Vec<FsKind> = match a.fs {
        FsChoice::Ext4 => vec![FsKind::Ext4],
        FsChoice::Xfs => vec![FsKind::Xfs],
        FsChoice::All => vec![FsKind::Ext4, FsKind::Xfs],
    };
    if let Some(why) = unsupported(&kinds) {
        println!("powercut: SKIPPED, cannot cut power here: {why}");
        return ExitCode::from(77);
    }
    let me = std::env::current_exe().expect("current_exe");
    let bin_dir = a.bin_dir.clone().unwrap_or_else(|| me.parent().expect("exe folder").to_path_buf());
    let ctx = Ctx { trib: bin_dir.join("tributary"), torture: bin_dir.join("tributary-torture") };
    for exe in [&ctx.trib, &ctx.torture] {
        if !exe.is_file() {
            eprintln!("powercut: {} does not exist (--bin-dir)", exe.display());
            return ExitCode::from(2);
        }
    }
    let shm = Path::new("/dev/shm");
    let work = a.dir.clone().unwrap_or_else(|| {
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        base.join(format!("tributary-powercut-{seed}"))
    });
    if let Err(e) = fs::create_dir_all(&work) {
        eprintln!("powercut: cannot create {}: {e}", work.display());
        return ExitCode::FAILURE;
    }
    println!(
        "powercut: fs={} cuts={} per fs, seed={seed}, binaries {}, work {} (replay: tributary-torture powercut \
         --fs FS --seed {seed} [--trial K] --bin-dir {})",
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
        a.cuts,
        bin_dir.display(),
        work.display(),
        bin_dir.display()
    );
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut summaries = Vec::new();
    for kind in kinds {
        let started = Instant::now();
        let mut disk = match Disk::create(kind, &work, a.image_mib) {
            Ok(d) => d,
            Err(e) => {
                println!("powercut {}: cannot set up the loop-device filesystem: {e}", kind.name());
                failed += 1;
                continue;
            }
        };
        // Probe: does this kernel's filesystem take FS_IOC_SHUTDOWN?
        if let Err(e) = shutdown_fs(&disk.mnt) {
            let code = e.raw_os_error();
            drop(disk);
            if matches!(code, Some(libc::ENOTTY) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)) {
                println!("powercut: SKIPPED, {} does not support FS_IOC_SHUTDOWN here: {e}", kind.name());
                return ExitCode::from(77);
            }
            println!("powercut {}: the probe cut failed: {e}", kind.name());
            failed += 1;
            continue;
        }
        if let Err(e) = disk.cycle() {
            println!("powercut {}: remount after the probe cut failed: {e}", kind.name());
            failed += 1;
            continue;
        }
        let trials: Vec<u64> = match a.trial {
            Some(k) => vec![k],
            None => {
                let (mut v, mut cuts, mut k) = (Vec::new(), 0, 0);
                while cuts < a.cuts {
                    cuts += plan(seed, kind, k).cuts();
                    v.push(k);
                    k += 1;
                }
                v
            }
        };
        let mut total = Tally::default();
        let (mut fs_failed, mut fp_trials, mut rec_cuts) = (0u64, 0u64, 0u64);
        for &k in &trials {
            let p = plan(seed, kind, k);
            let t0 = Instant::now();
            let (tally, errors) = run_trial(&ctx, &mut disk, &work, k, &p);
            let ok = errors.is_empty() && tally.clean();
            fp_trials += u64::from(matches!(p.kind, Kind::Failpoint { .. }));
            rec_cuts += u64::from(p.recovery_cut.is_some());
            total.add(&tally);
            println!(
                "{} trial {k}: {} in {:.1}s; {}; cuts {}; {}{}",
                kind.name(),
                if ok { "ok" } else { "FAILED" },
                t0.elapsed().as_secs_f64(),
                p.describe(),
                tally.cuts,
                tally.summary(),
                if errors.is_empty() { String::new() } else { format!("; errors: {}", errors.join(" | ")) }
            );
            let tdir = disk.mnt.join(format!("t{k}"));
            let local = work.join(kind.name()).join(format!("trial-{k}"));
            if ok {
                passed += 1;
                if !a.keep {
                    let _ = fs::remove_dir_all(&local);
                }
            } else {
                failed += 1;
                fs_failed += 1;
                // keep the trial's files: the image goes away at the end
                let _ = cmd("cp", &["-a", &path_str(&tdir), &path_str(&local.join("on-disk"))]);
                println!(
                    "  files kept in {}; replay: tributary-torture powercut --fs {} --seed {seed} --trial {k} --bin-dir {}",
                    local.display(),
                    kind.name(),
                    bin_dir.display()
                );
            }
            let _ = fs::remove_dir_all(&tdir);
        }
        let fsck = disk.fsck();
        drop(disk);
        let fsck_note = match fsck {
            Ok(None) => "fsck clean".to_string(),
            Ok(Some(r)) => format!("fsck reports damage of the filesystem itself (not tributary's): {r}"),
            Err(e) => format!("fsck not run: {e}"),
        };
        let s = format!(
            "powercut {}: {} cuts in {} trials ({} at failpoints, {} random, {} also cut during recovery); acked \
             lines checked {} (full {}, normal {}); lost {}, duplicated {}, torn {}, out_of_order {}; normal lines \
             missing (allowed) {}, rotated out {}; manifest deltas in {} trials ({} with delta records after \
             recovery); staging in {} trials ({} with a stage folder); {} trials failed; {:.0}s; {fsck_note}",
            kind.name(),
            total.cuts,
            trials.len(),
            fp_trials,
            trials.len() as u64 - fp_trials,
            rec_cuts,
            total.acked_full + total.acked_normal,
            total.acked_full,
            total.acked_normal,
            total.lost,
            total.duplicated,
            total.torn,
            total.out_of_order,
            total.normal_missing,
            total.rotated_out,
            total.delta_trials,
            total.delta_trials_seen,
            total.staging_trials,
            total.staging_trials_seen,
            fs_failed,
            started.elapsed().as_secs_f64()
        );
        println!("{s}");
        summaries.push(s);
        // A run that meant to cover manifest deltas and took the path nowhere proves nothing.
        if total.delta_trials >= 4 && total.delta_trials_seen == 0 {
            println!("powercut {}: FAILED, no trial with manifest deltas on left a delta record", kind.name());
            failed += 1;
        }
        if total.staging_trials >= 4 && total.staging_trials_seen == 0 {
            println!("powercut {}: FAILED, no trial with staging on made a stage folder", kind.name());
            failed += 1;
        }
    }
    if a.dir.is_none() && failed == 0 && !a.keep {
        let _ = fs::remove_dir_all(&work);
    }
    if summaries.len() > 1 {
        for s in &summaries {
            println!("{s}");
        }
    }
    println!("powercut: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
