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
//! - failpoint trials: one deterministic cut at each failpoint of [`tributary::failpoint::POINTS`]
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

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use tributary::{Manifest, Sidecar};

use tributary_harness::ack;
use tributary_harness::check::{self, Allow};
use tributary_harness::line::Lines;
use tributary_harness::rng::{mix, random_seed, Rng};

use crate::common::{last_error_line, path_str};

/// `_IOR('X', 125, __u32)` = (2 << 30) | (4 << 16) | (0x58 << 8) | 125 = 0x8004587D
/// (the same number as XFS_IOC_GOINGDOWN and F2FS_IOC_SHUTDOWN; 125 is 0x7D, not 0x5D).
const FS_IOC_SHUTDOWN: u64 = 0x8004_587D;
/// Shut down without flushing the log: what a power cut does.
const FSOP_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

/// Generous upper bounds (loaded CI machines); passing one fails the trial loudly.
const START_TIMEOUT: Duration = Duration::from_secs(180);
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(3);

/// Writer ids: main writers are 1..=3; these are per-journal helpers.
const PRIME_ID: u32 = 100; // + journal: 2 full lines that make each journal durable first
const FRESH_PRE_ID: u32 = 200; // + journal: full lines appended before a recovery that is cut
const FRESH_POST_ID: u32 = 300; // + journal: full lines appended after recovery
const JOURNAL_FP_ID: u32 = 50; // the writer frozen at a journal.* failpoint (own journal)
const MAIN_LINES: u64 = 10_000_000;
const FRESH_LINES: u64 = 5;

/// Failpoints at which a recovery drain can be frozen (each is reached by a drain that
/// has lines to move, which the fresh lines appended before it guarantee).
const RECOVERY_POINTS: &[&str] = &[
    "drain.locked",
    "drain.after_intent",
    "drain.mid_write",
    "drain.after_write",
    "drain.after_fsync",
    "drain.after_temp_manifest",
    "drain.after_rename",
    "drain.after_unlock",
    "drain.mid_record",
];

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FsKind {
    Ext4,
    Xfs,
}

impl FsKind {
    fn name(self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Xfs => "xfs",
        }
    }
    fn mkfs(self) -> (&'static str, &'static [&'static str]) {
        match self {
            FsKind::Ext4 => ("mkfs.ext4", &["-q", "-F"]),
            FsKind::Xfs => ("mkfs.xfs", &["-q", "-f"]),
        }
    }
}

// ---------------------------------------------------------------------------------
// The plan of a trial (a pure function of the seed, the filesystem and the trial).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durab {
    Full,
    Normal,
}

impl Durab {
    fn arg(self) -> &'static str {
        match self {
            Durab::Full => "full",
            Durab::Normal => "normal",
        }
    }
}

#[derive(Debug, Clone)]
struct WriterPlan {
    id: u32,
    durability: Durab,
    /// lines per second at most
    rate: u64,
    max_batch: u64,
}

#[derive(Debug, Clone)]
enum Kind {
    /// One cut at this failpoint; `adopt`: a pre-existing target written (not synced)
    /// just before the command that creates the target (`init`, or `drain --create` for
    /// `drain.after_write`), which is the one frozen at the point.
    Failpoint {
        point: &'static str,
        adopt: bool,
    },
    Random(RandomPlan),
}

#[derive(Debug, Clone)]
struct RandomPlan {
    /// two `compact` daemons (else one daemon and back-to-back `drain`s)
    two_daemons: bool,
    interval_ms: u64,
    max_round_bytes: Option<u64>,
    /// e.g. `--rotate-lines 300`
    rotate: Option<(&'static str, u64)>,
    retain: Option<u64>,
    /// a pre-existing target written (not synced) before the compactors start
    header: bool,
    /// cut once this many lines were acknowledged (all writers) ...
    cut_acked: u64,
    /// ... and then, if set, at the next manifest commit
    cut_after_commit: bool,
}

#[derive(Debug, Clone)]
struct Plan {
    run: u64,
    writers: Vec<WriterPlan>,
    kind: Kind,
    /// freeze the first recovery drain at this failpoint and cut again
    recovery_cut: Option<&'static str>,
}

impl Plan {
    fn cuts(&self) -> u64 {
        1 + u64::from(self.recovery_cut.is_some())
    }

    fn retain(&self) -> Option<u64> {
        match &self.kind {
            Kind::Random(r) if r.rotate.is_some() => r.retain,
            Kind::Failpoint { point, .. } if point.starts_with("rotate.") => Some(1),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        let ws: Vec<String> = self.writers.iter().map(|w| format!("w{}:{}", w.id, w.durability.arg())).collect();
        let mut s = match &self.kind {
            Kind::Failpoint { point, adopt } => {
                format!("cut at {point}=wait{}", if *adopt { " (adopting a pre-existing target)" } else { "" })
            }
            Kind::Random(r) => format!(
                "random cut after {} acks{}; {}{}{}{}",
                r.cut_acked,
                if r.cut_after_commit { " + next commit" } else { "" },
                if r.two_daemons { "2 compact daemons" } else { "compact daemon + drain loop" },
                r.rotate.map_or(String::new(), |(f, n)| format!(", {f} {n}")),
                r.retain.filter(|_| r.rotate.is_some()).map_or(String::new(), |n| format!(" --retain {n}")),
                if r.header { ", pre-existing target" } else { "" },
            ),
        };
        s.push_str(&format!("; writers {}", ws.join(",")));
        if let Some(p) = self.recovery_cut {
            s.push_str(&format!("; recovery cut at {p}"));
        }
        s
    }
}

/// The deterministic trials: a cut at every failpoint, then three creations adopting a
/// pre-existing target: `init` cut after its first slot is durable (`init.after_slot`)
/// and before (`init.slot_unsynced`: the slot written, not yet fdatasynced), and a
/// `drain --create` cut after its first round's write. `upgrade.*` points need a
/// version-1 target, which only a version-1 binary makes: not here.
fn failpoint_trials() -> Vec<(&'static str, bool)> {
    let mut v: Vec<(&'static str, bool)> = tributary::failpoint::POINTS
        .iter()
        .filter(|p| !p.starts_with("init.") && !p.starts_with("upgrade."))
        .map(|p| (*p, false))
        .collect();
    if !v.contains(&("drain.after_intent", false)) {
        v.push(("drain.after_intent", false));
    }
    v.push(("init.after_slot", true));
    v.push(("init.slot_unsynced", true));
    v.push(("drain.after_write", true));
    v
}

fn plan(seed: u64, fs: FsKind, k: u64) -> Plan {
    let run = mix(seed, k ^ ((fs as u64 + 1) << 40));
    let mut rng = Rng::new(run);
    let fps = failpoint_trials();
    let writer = |rng: &mut Rng, id: u32, durability: Durab| WriterPlan {
        id,
        durability,
        rate: 500 + rng.below(2500),
        max_batch: 1 + rng.below(16),
    };
    let (writers, kind) = if (k as usize) < fps.len() {
        let (point, adopt) = fps[k as usize];
        // a full and a normal writer, each on its own journal
        (vec![writer(&mut rng, 1, Durab::Full), writer(&mut rng, 2, Durab::Normal)], Kind::Failpoint { point, adopt })
    } else {
        let n = 1 + rng.below(3) as u32;
        let ws = (1..=n)
            .map(|id| {
                // writer 1 is always full, writer 2 always normal, writer 3 either
                let d = if id == 2 || (id == 3 && rng.chance(1, 2)) { Durab::Normal } else { Durab::Full };
                writer(&mut rng, id, d)
            })
            .collect();
        let rotate = match rng.below(3) {
            0 => Some(("--rotate-lines", 100 + rng.below(400))),
            1 if rng.chance(1, 2) => Some(("--rotate-bytes", 8192 + rng.below(32768))),
            _ => None,
        };
        let r = RandomPlan {
            two_daemons: rng.chance(1, 2),
            interval_ms: 5 + rng.below(60),
            max_round_bytes: if rng.chance(1, 2) { Some(4096 + rng.below(65536)) } else { None },
            rotate,
            retain: if rng.chance(2, 3) { Some(1 + rng.below(3)) } else { None },
            header: rng.chance(1, 4),
            cut_acked: 20 + rng.below(1500),
            cut_after_commit: rng.chance(1, 2),
        };
        (ws, Kind::Random(r))
    };
    let recovery_cut = if rng.chance(1, 4) { Some(*rng.pick(RECOVERY_POINTS)) } else { None };
    Plan { run, writers, kind, recovery_cut }
}

// ---------------------------------------------------------------------------------
// System pieces: commands, the loop-device filesystem, the cut.

fn cmd(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .chain([PathBuf::from("/sbin"), PathBuf::from("/usr/sbin")])
                .any(|d| d.join(program).is_file())
        })
        .unwrap_or(false)
}

/// The power cut: `FS_IOC_SHUTDOWN(NOLOGFLUSH)` on an fd of the mounted filesystem.
fn shutdown_fs(mnt: &Path) -> std::io::Result<()> {
    let dir = File::open(mnt)?;
    let flags: u32 = FSOP_GOING_FLAGS_NOLOGFLUSH;
    // SAFETY: `dir` is an open descriptor for the whole call, and FS_IOC_SHUTDOWN reads
    // exactly one u32 through the pointer, which points to a live local of that type.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_SHUTDOWN as libc::Ioctl, &flags as *const u32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// fsync a folder (the harness's own folders on the cut filesystem must be durable,
/// or a cut could remove a journal for reasons that are not tributary's).
fn sync_dir(p: &Path) -> Result<(), String> {
    File::open(p).and_then(|f| f.sync_all()).map_err(|e| format!("fsync of {}: {e}", p.display()))
}

/// A filesystem in a sparse image on a loop device, mounted on `mnt`. Dropping it
/// unmounts, detaches and removes the image (also after a failure or a panic).
struct Disk {
    kind: FsKind,
    image: PathBuf,
    dev: Option<String>,
    mnt: PathBuf,
    mounted: bool,
}

impl Disk {
    fn create(kind: FsKind, work: &Path, mib: u64) -> Result<Disk, String> {
        let image = work.join(format!("{}.img", kind.name()));
        let mnt = work.join(format!("{}.mnt", kind.name()));
        fs::create_dir_all(&mnt).map_err(|e| format!("creating {}: {e}", mnt.display()))?;
        let f = File::create(&image).map_err(|e| format!("creating {}: {e}", image.display()))?;
        f.set_len(mib << 20).map_err(|e| format!("sizing {}: {e}", image.display()))?;
        drop(f);
        let mut d = Disk { kind, image, dev: None, mnt, mounted: false };
        d.dev = Some(cmd("losetup", &["-f", "--show", &path_str(&d.image)])?);
        let (mkfs, opts) = kind.mkfs();
        let mut args: Vec<&str> = opts.to_vec();
        let dev = d.dev.clone().expect("dev");
        args.push(&dev);
        cmd(mkfs, &args)?;
        d.mount()?;
        Ok(d)
    }

    fn dev(&self) -> &str {
        self.dev.as_deref().expect("loop device")
    }

    fn mount(&mut self) -> Result<(), String> {
        cmd("mount", &["-t", self.kind.name(), self.dev(), &path_str(&self.mnt)])?;
        self.mounted = true;
        Ok(())
    }

    fn umount(&mut self) -> Result<(), String> {
        if !self.mounted {
            return Ok(());
        }
        // Every process of the trial was killed and reaped; a busy mount can only be
        // a straggler: retry, then fail loudly.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match cmd("umount", &[&path_str(&self.mnt)]) {
                Ok(_) => {
                    self.mounted = false;
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// After a cut: unmount, mount again (the filesystem replays its log).
    fn cycle(&mut self) -> Result<(), String> {
        self.umount()?;
        self.mount()
    }

    /// Unmount and check the filesystem itself (read-only); Some(report) if it is damaged.
    fn fsck(&mut self) -> Result<Option<String>, String> {
        self.umount()?;
        let r = match self.kind {
            FsKind::Ext4 => cmd("e2fsck", &["-f", "-n", self.dev()]),
            FsKind::Xfs => cmd("xfs_repair", &["-n", self.dev()]),
        };
        Ok(r.err())
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if self.mounted && self.umount().is_err() {
            let _ = cmd("umount", &["-l", &path_str(&self.mnt)]);
        }
        if let Some(dev) = self.dev.take() {
            let _ = cmd("losetup", &["-d", &dev]);
        }
        let _ = fs::remove_file(&self.image);
        let _ = fs::remove_dir(&self.mnt);
    }
}

/// Why this machine cannot run power cuts (the caller exits 77), if it cannot.
fn unsupported(kinds: &[FsKind]) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: loop devices, mkfs and mount need root".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control: this kernel or container has no loop devices".into());
    }
    for p in ["losetup", "mount", "umount"] {
        if !in_path(p) {
            return Some(format!("`{p}` is not installed"));
        }
    }
    let known = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    for k in kinds {
        let (mkfs, _) = k.mkfs();
        if !in_path(mkfs) {
            return Some(format!(
                "`{mkfs}` is not installed ({})",
                if *k == FsKind::Xfs { "apt-get install xfsprogs" } else { "apt-get install e2fsprogs" }
            ));
        }
        if !known.split_whitespace().any(|w| w == k.name()) {
            return Some(format!("the kernel does not offer {} (/proc/filesystems)", k.name()));
        }
    }
    None
}

// ---------------------------------------------------------------------------------
// Child processes of a trial.

struct P {
    name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    log: PathBuf,
}

impl P {
    fn spawn(name: &str, exe: &Path, args: &[String], env: &[(&str, String)], log: &Path) -> Result<P, String> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("opening log {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("log: {e}"))?;
        let mut c = Command::new(exe);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env_remove("TRIBUTARY_FAILPOINTS")
            .env_remove(tributary::failpoint::DIR_VAR);
        for (k, v) in env {
            c.env(k, v);
        }
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // prctl(2), which is async-signal-safe; it touches no memory of the parent.
        // Children die with the harness, so a killed harness leaves no writer or
        // compactor holding the filesystem (the wrapper's trap then unmounts it).
        unsafe {
            c.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = c.spawn().map_err(|e| format!("starting {name} ({}): {e}", exe.display()))?;
        Ok(P { name: name.to_string(), child: Some(child), status: None, log: log.to_path_buf() })
    }

    /// Non-blocking: the exit status once it ended.
    fn poll(&mut self) -> Option<ExitStatus> {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                self.status = Some(st);
                self.child = None;
            }
        }
        self.status
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            if let Ok(st) = c.wait() {
                self.status = Some(st);
            }
        }
    }

    /// Wait for the end (up to `timeout`, then SIGKILL and an error).
    fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.poll() {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("{} did not end within {}s (killed)", self.name, timeout.as_secs()));
            }
            std::thread::sleep(POLL);
        }
    }

    fn describe(&self, st: ExitStatus) -> String {
        match st.signal() {
            Some(sig) => format!("{} killed by signal {sig}", self.name),
            None => format!(
                "{} exited {}: {}",
                self.name,
                st.code().unwrap_or(-1),
                last_error_line(&self.log).unwrap_or_else(|| "(no error line in its log)".into())
            ),
        }
    }

    /// Run to completion; Err unless it exits 0.
    fn run(name: &str, exe: &Path, args: &[String], env: &[(&str, String)], log: &Path) -> Result<(), String> {
        let mut p = P::spawn(name, exe, args, env, log)?;
        let st = p.wait(RUN_TIMEOUT)?;
        if st.success() {
            Ok(())
        } else {
            Err(p.describe(st))
        }
    }
}

impl Drop for P {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------
// The check.

/// Everything a writer had acknowledged (at the moment that counts).
#[derive(Debug, Clone)]
struct Acked {
    id: u32,
    full: bool,
    /// highest index it may ever append (a larger one is foreign)
    lines: u64,
    /// `(index, seq)` records of its ack file
    acked: Vec<(u64, u64)>,
}

#[derive(Debug, Default, Clone)]
struct Tally {
    cuts: u64,
    acked_full: u64,
    acked_normal: u64,
    lost: u64,
    duplicated: u64,
    torn: u64,
    out_of_order: u64,
    /// normal-durability acked lines missing after a cut (allowed)
    normal_missing: u64,
    /// acked lines in generations deleted by retention (allowed)
    rotated_out: u64,
    unacked_present: u64,
}

impl Tally {
    fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.torn == 0 && self.out_of_order == 0
    }
    fn add(&mut self, o: &Tally) {
        self.cuts += o.cuts;
        self.acked_full += o.acked_full;
        self.acked_normal += o.acked_normal;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.torn += o.torn;
        self.out_of_order += o.out_of_order;
        self.normal_missing += o.normal_missing;
        self.rotated_out += o.rotated_out;
        self.unacked_present += o.unacked_present;
    }
    fn summary(&self) -> String {
        format!(
            "acked full={} normal={}; lost={} duplicated={} torn={} out_of_order={}; normal_missing={} \
             rotated_out={} unacked_present={}",
            self.acked_full,
            self.acked_normal,
            self.lost,
            self.duplicated,
            self.torn,
            self.out_of_order,
            self.normal_missing,
            self.rotated_out,
            self.unacked_present
        )
    }
}

/// Check the target's generations (oldest first) against what was acknowledged, with
/// the one checker ([`tributary_harness::check`]): a power cut excuses missing lines of
/// `normal` writers (never of `full` ones). `header`: a pre-existing first line that
/// may be there once, first. `retention_gap`: older generations were deleted by
/// retention, so a writer's acked lines below the first one still present may be gone
/// with them.
fn check(run: u64, files: &[Vec<u8>], header: Option<&[u8]>, writers: &[Acked], retention_gap: bool) -> Tally {
    let generations: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
    let ws: Vec<check::Writer> = writers
        .iter()
        .map(|a| check::Writer {
            id: a.id,
            lines: a.lines,
            acked: a.acked.clone(),
            // after a power cut, an acked line missing is lost whatever its journal says
            drained_seq: u64::MAX,
            full: a.full,
        })
        .collect();
    let allow = Allow { header, power_cut: true, retention_gap };
    let v = check::check(&Lines::any_bytes(run), &generations, &ws, &allow);
    Tally {
        cuts: 0,
        acked_full: v.acked - v.acked_normal,
        acked_normal: v.acked_normal,
        lost: v.lost + v.held,
        duplicated: v.duplicated,
        torn: v.torn,
        out_of_order: v.out_of_order,
        normal_missing: v.normal_missing,
        rotated_out: v.rotated_out,
        unacked_present: v.unacked_present,
    }
}

/// The target's generation files, oldest first, and whether a generation is missing.
fn read_generations(target: &Path) -> Result<(Vec<Vec<u8>>, bool), String> {
    let dir = target.parent().expect("target folder");
    let name = target.file_name().expect("target name").to_string_lossy().to_string();
    let mut gens = BTreeMap::new();
    for e in fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))?.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if let Some(g) = n.strip_prefix(&format!("{name}.")).and_then(|g| g.parse::<u64>().ok()) {
            gens.insert(g, e.path());
        }
    }
    let generation = Manifest::load(&Sidecar::for_target(target)).ok().flatten().map_or(1, |m| m.generation);
    let gap = (1..generation).any(|g| !gens.contains_key(&g));
    let mut files = Vec::new();
    for p in gens.values() {
        files.push(fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?);
    }
    match fs::read(target) {
        Ok(b) => files.push(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading {}: {e}", target.display())),
    }
    Ok((files, gap))
}

fn manifest_epoch(target: &Path) -> u64 {
    Manifest::load(&Sidecar::for_target(target)).ok().flatten().map_or(0, |m| m.epoch)
}

// ---------------------------------------------------------------------------------
// One trial.

struct Ctx {
    trib: PathBuf,
    torture: PathBuf,
}

/// A writer of the trial: its journal and ack file, and whether its acks are frozen.
struct W {
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

struct Trial<'a> {
    ctx: &'a Ctx,
    plan: &'a Plan,
    mnt: PathBuf,
    spool: PathBuf,
    target: PathBuf,
    local: PathBuf,
    writers: Vec<W>,
    procs: Vec<P>,
    errors: Vec<String>,
    tally: Tally,
    n: usize,
}

impl<'a> Trial<'a> {
    fn log(&mut self, what: &str) -> PathBuf {
        self.n += 1;
        self.local.join(format!("{:02}-{what}.log", self.n))
    }

    fn writer_args(&self, w: &W, rate: u64, max_batch: u64, durability: Durab) -> Vec<String> {
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
        v
    }

    fn new_writer(&mut self, id: u32, journal_of: u32, full: bool, lines: u64) -> W {
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
        let args = self.writer_args(&w, 0, 2, Durab::Full);
        let log = self.log(&format!("writer{id}"));
        self.writers.push(w);
        P::run(&format!("writer {id}"), &self.ctx.torture, &args, &[], &log)
    }

    fn start_main_writers(&mut self) -> Result<(), String> {
        for wp in self.plan.writers.clone() {
            let w = self.new_writer(wp.id, wp.id, wp.durability == Durab::Full, MAIN_LINES);
            let args = self.writer_args(&w, wp.rate, wp.max_batch, wp.durability);
            let log = self.log(&format!("writer{}", wp.id));
            self.writers.push(w);
            let p = P::spawn(&format!("writer {}", wp.id), &self.ctx.torture, &args, &[], &log)?;
            self.procs.push(p);
        }
        Ok(())
    }

    fn main_acked(&self) -> Vec<u64> {
        self.plan
            .writers
            .iter()
            .map(|wp| self.writers.iter().find(|w| w.id == wp.id).map_or(0, |w| ack::read(&w.ack).len() as u64))
            .collect()
    }

    /// Fail if any running process of the trial already ended badly (before a cut).
    fn check_procs(&mut self) -> Result<(), String> {
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

    fn wait_new_acks(&mut self, at_least: u64) -> Result<(), String> {
        let base = self.main_acked();
        self.wait_until(&format!("{at_least} more acked lines per writer"), |t| {
            t.main_acked().iter().zip(&base).all(|(now, b)| *now >= b + at_least)
        })
    }

    fn drain_args(&self, extra: &[String]) -> Vec<String> {
        let mut v = vec![
            "drain".to_string(),
            "--target".into(),
            path_str(&self.target),
            "--spool".into(),
            path_str(&self.spool),
            "--lock-timeout-ms".into(),
            "120000".into(),
        ];
        v.extend(extra.iter().cloned());
        v
    }

    fn init_args(&self) -> Vec<String> {
        vec!["init".to_string(), "--target".into(), path_str(&self.target), "--lock-timeout-ms".into(), "120000".into()]
    }

    /// `tributary init`, run to completion (must exit 0).
    fn init(&mut self, what: &str) -> Result<(), String> {
        let args = self.init_args();
        let log = self.log("init");
        P::run(what, &self.ctx.trib, &args, &[], &log)
    }

    /// Start a process frozen at `point` (`=wait`) and wait until it announces it.
    fn freeze_at(&mut self, name: &str, exe: PathBuf, args: Vec<String>, point: &str) -> Result<(), String> {
        let fp = self.local.join(format!("fp{}", self.n));
        fs::create_dir_all(&fp).map_err(|e| format!("{}: {e}", fp.display()))?;
        let log = self.log(name);
        let env = [("TRIBUTARY_FAILPOINTS", format!("{point}=wait")), (tributary::failpoint::DIR_VAR, path_str(&fp))];
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

fn run_trial(ctx: &Ctx, disk: &mut Disk, work: &Path, k: u64, plan: &Plan) -> (Tally, Vec<String>) {
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
        if matches!(plan.kind, Kind::Failpoint { point, .. } if point.starts_with("journal.")) {
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
    (t.tally, t.errors)
}

fn plan_has_header(plan: &Plan) -> bool {
    match &plan.kind {
        Kind::Failpoint { adopt, .. } => *adopt,
        Kind::Random(r) => r.header,
    }
}

fn failpoint_phase(t: &mut Trial, point: &'static str, adopt: bool, header: &[u8]) -> Result<(), String> {
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
    if point.starts_with("journal.") {
        let w = t.new_writer(JOURNAL_FP_ID, JOURNAL_FP_ID, true, MAIN_LINES);
        let args = t.writer_args(&w, 0, 4, Durab::Full);
        t.writers.push(w);
        let me = t.ctx.torture.clone();
        return t.freeze_at("writer 50", me, args, point);
    }
    let extra: Vec<String> = if point.starts_with("rotate.") {
        ["--rotate-lines", "1", "--retain", "1"].iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let args = t.drain_args(&extra);
    t.freeze_at("drain", trib, args, point)
}

fn random_phase(t: &mut Trial, r: &RandomPlan, header: &[u8]) -> Result<(), String> {
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

// ---------------------------------------------------------------------------------

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
             missing (allowed) {}, rotated out {}; {} trials failed; {:.0}s; {fsck_note}",
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
            fs_failed,
            started.elapsed().as_secs_f64()
        );
        println!("{s}");
        summaries.push(s);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(run: u64, ls: &[(u32, u64)]) -> Vec<u8> {
        let mut v = Vec::new();
        for (w, i) in ls {
            v.extend_from_slice(&Lines::any_bytes(run).line(*w, *i));
            v.push(b'\n');
        }
        v
    }

    fn acked(id: u32, full: bool, acked: &[u64]) -> Acked {
        Acked { id, full, lines: 100, acked: acked.iter().map(|&i| (i, i)).collect() }
    }

    #[test]
    fn the_checker_tells_allowed_losses_from_damage() {
        let run = 9;
        let ws = [acked(1, true, &[1, 2, 3]), acked(2, false, &[1, 2])];
        let good = vec![lines(run, &[(1, 1), (2, 1), (1, 2)]), lines(run, &[(1, 3), (1, 4)])];
        let c = check(run, &good, None, &ws, false);
        assert!(c.clean(), "{c:?}");
        assert_eq!((c.normal_missing, c.unacked_present, c.acked_full), (1, 1, 3));

        let lost = vec![lines(run, &[(1, 1), (2, 1), (2, 2), (1, 3)])];
        assert_eq!(check(run, &lost, None, &ws, false).lost, 1);
        let dup = vec![lines(run, &[(1, 1), (1, 2)]), lines(run, &[(2, 2), (1, 2), (1, 3)])];
        let c = check(run, &dup, None, &ws, false);
        assert_eq!((c.duplicated, c.out_of_order), (1, 1), "{c:?}");
        let dup_normal = vec![lines(run, &[(1, 1), (2, 1), (1, 2), (2, 1), (1, 3)])];
        assert_eq!(check(run, &dup_normal, None, &ws, false).duplicated, 1);
        let mut torn = lines(run, &[(1, 1), (1, 2), (1, 3)]);
        torn.extend_from_slice(b"w1 00000004 cut sh");
        assert_eq!(check(run, &[torn], None, &ws, false).torn, 1);
        let foreign = vec![lines(run + 1, &[(1, 1)]), lines(run, &[(1, 1), (1, 2), (1, 3)])];
        assert_eq!(check(run, &foreign, None, &ws, false).torn, 1);

        // a header is allowed once, first, and nowhere else
        let mut h = b"head\n".to_vec();
        h.extend(lines(run, &[(1, 1), (1, 2), (1, 3)]));
        assert!(check(run, &[h.clone()], Some(b"head"), &ws, false).clean());
        assert_eq!(check(run, &[h], None, &ws, false).torn, 1);
        let mut late = lines(run, &[(1, 1), (1, 2), (1, 3)]);
        late.extend_from_slice(b"head\n");
        assert_eq!(check(run, &[late], Some(b"head"), &ws, false).torn, 1);

        // retention: lines below the first still present may be gone with old generations
        let kept = vec![lines(run, &[(1, 3)])];
        let c = check(run, &kept, None, &ws, true);
        assert_eq!((c.lost, c.rotated_out), (0, 4), "{c:?}"); // w1: 1, 2; w2 (none left): 1, 2
        let gap = vec![lines(run, &[(1, 1), (1, 3)])];
        assert_eq!(check(run, &gap, None, &ws, true).lost, 1);
    }

    #[test]
    fn plans_replay_from_the_seed_and_cover_every_failpoint() {
        for k in 0..40 {
            assert_eq!(format!("{:?}", plan(7, FsKind::Ext4, k)), format!("{:?}", plan(7, FsKind::Ext4, k)));
        }
        let fps: Vec<&str> = (0..failpoint_trials().len() as u64)
            .filter_map(|k| match plan(7, FsKind::Xfs, k).kind {
                Kind::Failpoint { point, .. } => Some(point),
                Kind::Random(_) => None,
            })
            .collect();
        for p in tributary::failpoint::POINTS.iter() {
            assert!(fps.contains(p) || p.starts_with("upgrade."), "{p} has no trial");
        }
        for k in 0..200 {
            let p = plan(7, FsKind::Ext4, k);
            assert!(p.writers.iter().any(|w| w.durability == Durab::Full));
        }
    }
}
