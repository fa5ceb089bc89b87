//! What the torture trials, the multi-host soak, the daemon soak and the power cuts
//! share beyond the harness library (the RNG, lines, ack files and the checker are in
//! `tributary_harness`): the writers of a run, the check of a target against their ack
//! files, child processes (start, timed kills, failpoints, exits), and small helpers.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tributary_harness::ack;
use tributary_harness::check::{self, Allow, Verdict};
use tributary_harness::line::Lines;

/// One writer of a run: its id, how many lines it appends, its journal and ack file.
#[derive(Debug, Clone)]
pub struct WriterSpec {
    pub id: u32,
    pub lines: u64,
    pub journal: PathBuf,
    pub ack: PathBuf,
}

/// Check a target's bytes against the writers' ack files with the one checker
/// ([`tributary_harness::check`], nothing allowed but exactly-once). `drained_seq(w)` is
/// the seq up to which writer `w`'s journal says it was drained (rows up to it are
/// deleted), which tells a lost line from one still held in its journal.
pub fn check_target(
    run: u64,
    target: &[u8],
    writers: &[WriterSpec],
    drained_seq: &dyn Fn(&WriterSpec) -> u64,
) -> Verdict {
    let ws: Vec<check::Writer> = writers
        .iter()
        .map(|w| check::Writer {
            id: w.id,
            lines: w.lines,
            acked: ack::read(&w.ack),
            drained_seq: drained_seq(w),
            full: true,
        })
        .collect();
    check::check(&Lines::any_bytes(run), &[target], &ws, &Allow::default())
}

/// The journal's record of how far it was drained (0 if it cannot be opened).
pub fn journal_drained_seq(journal: &Path) -> u64 {
    if !journal.exists() {
        return 0;
    }
    tributary::Journal::open(journal, tributary::JournalOptions::default())
        .and_then(|j| j.backlog())
        .map_or(0, |b| b.drained_seq)
}

/// How a child process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Ok,
    /// SIGKILL: ours, or a failpoint's.
    Killed,
    /// Any other end; the text is the error line from its log (or the status).
    Failed(String),
}

/// A child process (writer, drain, compactor) with what it takes to restart it.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub exe: PathBuf,
    pub args: Vec<String>,
    pub log: PathBuf,
    child: Option<Child>,
    /// `TRIBUTARY_FAILPOINTS` of the current life (one `point=kill`).
    pub failpoint: Option<String>,
    /// When to SIGKILL the current life.
    pub kill_at: Option<Instant>,
    pub started: Instant,
    pub lives: u32,
    /// The current (or last) life was ended by its timed kill.
    pub timer_fired: bool,
}

impl Proc {
    pub fn new(name: impl Into<String>, exe: &Path, args: Vec<String>, log: PathBuf) -> Proc {
        Proc {
            name: name.into(),
            exe: exe.to_path_buf(),
            args,
            log,
            child: None,
            failpoint: None,
            kill_at: None,
            started: Instant::now(),
            lives: 0,
            timer_fired: false,
        }
    }

    /// Start a life with an optional failpoint spec and an optional timed SIGKILL.
    /// Compactors commit in the current trial's manifest format
    /// ([`set_manifest_format`]).
    pub fn start(&mut self, failpoint: Option<String>, kill_after: Option<Duration>) -> std::io::Result<()> {
        let log = OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut header = log.try_clone()?;
        let _ = writeln!(
            header,
            "--- life {} of {}: failpoint {:?}, timed kill {:?}",
            self.lives + 1,
            self.name,
            failpoint,
            kill_after
        );
        let err = log.try_clone()?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args).stdin(Stdio::null()).stdout(log).stderr(err).env_remove("TRIBUTARY_FAILPOINTS");
        apply_trial_seams(&mut cmd);
        if let Some(fp) = &failpoint {
            cmd.env("TRIBUTARY_FAILPOINTS", fp);
        }
        self.child = Some(cmd.spawn()?);
        self.failpoint = failpoint;
        self.started = Instant::now();
        self.kill_at = kill_after.map(|d| self.started + d);
        self.timer_fired = false;
        self.lives += 1;
        Ok(())
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Non-blocking: `Some(exit)` once the current life ended (fires a due timed kill).
    pub fn poll(&mut self) -> Option<Exit> {
        let child = self.child.as_mut()?;
        if self.kill_at.is_some_and(|t| Instant::now() >= t) {
            self.kill_at = None;
            self.timer_fired = true;
            let _ = child.kill();
        }
        match child.try_wait() {
            Ok(Some(st)) => Some(self.ended(st)),
            Ok(None) => None,
            Err(e) => {
                self.child = None;
                Some(Exit::Failed(format!("waiting for {} failed: {e}", self.name)))
            }
        }
    }

    /// SIGKILL the current life now and reap it.
    pub fn kill(&mut self) -> Option<Exit> {
        let child = self.child.as_mut()?;
        let _ = child.kill();
        let st = child.wait().ok()?;
        Some(self.ended(st))
    }

    /// Send a signal without reaping (SIGTERM, SIGSTOP, SIGCONT).
    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            let _ = tributary::testing::sys::send_signal(pid, sig);
        }
    }

    /// Wait (up to `timeout`) until the current life has a handler for `sig`, read from
    /// /proc/<pid>/status: a SIGTERM sent to a compactor still starting up (before
    /// `compact` installs its handler) kills it by default action instead of stopping
    /// it cleanly, which a run would then report as an error.
    pub fn wait_until_catching(&self, sig: i32, timeout: Duration) {
        let Some(pid) = self.pid() else { return };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return };
            let caught = status
                .lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
                .is_some_and(|mask| mask & (1 << (sig - 1)) != 0);
            if caught {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Wait for the current life to end, up to `timeout` (then SIGKILL it).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<(Exit, bool)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.poll() {
                return Some((e, false));
            }
            self.child.as_ref()?;
            if Instant::now() >= deadline {
                return self.kill().map(|e| (e, true));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn ended(&mut self, st: ExitStatus) -> Exit {
        self.child = None;
        self.kill_at = None;
        if st.success() {
            Exit::Ok
        } else if st.signal() == Some(libc::SIGKILL) {
            Exit::Killed
        } else {
            Exit::Failed(last_error_line(&self.log).unwrap_or_else(|| format!("{} ended with {st}", self.name)))
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = tributary::testing::sys::send_signal(c.id(), libc::SIGCONT);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The last `error [...]` line of a log (what the CLI prints on failure).
pub fn last_error_line(log: &Path) -> Option<String> {
    let text = fs::read(log).ok()?;
    let text = String::from_utf8_lossy(&text);
    text.lines().rev().find(|l| l.contains("error [")).map(|l| l.trim().to_string())
}

/// The `error [kind]` of a CLI error line, e.g. `unexpected_tail`.
pub fn error_kind(line: &str) -> String {
    line.split_once("error [")
        .and_then(|(_, r)| r.split_once(']'))
        .map_or_else(|| "unknown".to_string(), |(k, _)| k.to_string())
}

/// The `tributary` CLI next to this executable (or `$TRIBUTARY_BIN`).
/// The manifest format the compactors of a trial commit in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum TrialFormat {
    /// As a user's compactor: the target's own (a new target's: 3, one-block
    /// manifests as snapshots).
    Default,
    /// Format 3 with a delta wherever one fits (`always`), one-block manifests too.
    Deltas,
    /// Every commit a version-2 snapshot (`off`), as a target made for older builds.
    Format2,
}

impl TrialFormat {
    /// Each, in the order trials take them (the index is its `repr`).
    const ALL: [TrialFormat; 3] = [TrialFormat::Default, TrialFormat::Deltas, TrialFormat::Format2];

    /// Trial `k`'s: the three in turn, so every run covers each (and, with staging on
    /// in trials 2 and 3 of every 4, each with and without staging).
    pub fn of_trial(k: u64) -> TrialFormat {
        TrialFormat::ALL[(k % 3) as usize]
    }

    /// How a trial's plan says it (nothing for the default).
    pub fn plan_note(self) -> Option<&'static str> {
        match self {
            TrialFormat::Default => None,
            TrialFormat::Deltas => Some("manifest deltas"),
            TrialFormat::Format2 => Some("manifest format 2"),
        }
    }
}

/// The manifest format of the current trial's children. Trials run one after another.
static MANIFEST_FORMAT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(TrialFormat::Default as u8);

pub fn set_manifest_format(f: TrialFormat) {
    MANIFEST_FORMAT.store(f as u8, std::sync::atomic::Ordering::Relaxed);
}

pub fn manifest_format() -> TrialFormat {
    TrialFormat::ALL[usize::from(MANIFEST_FORMAT.load(std::sync::atomic::Ordering::Relaxed))]
}

/// Whether the compactors of the current trial stage their lines (docs/design.md
/// "Staging"): half the trials, independently of the manifest format.
static STAGING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_staging(on: bool) {
    STAGING.store(on, std::sync::atomic::Ordering::Relaxed);
}

pub fn staging() -> bool {
    STAGING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set (or clear) the manifest-delta and staging variables of a child's command for
/// the current trial.
pub fn apply_trial_seams(cmd: &mut Command) {
    match manifest_format() {
        TrialFormat::Deltas => cmd.env(tributary::MANIFEST_DELTAS_VAR, "always"),
        TrialFormat::Format2 => cmd.env(tributary::MANIFEST_DELTAS_VAR, "off"),
        TrialFormat::Default => cmd.env_remove(tributary::MANIFEST_DELTAS_VAR),
    };
    if staging() {
        cmd.env(tributary::STAGING_VAR, "on");
    } else {
        cmd.env_remove(tributary::STAGING_VAR);
    }
}

/// Whether a target's sidecar holds a stage folder: made by the first stager that had
/// lines to stage, never removed, so a trial with staging on shows the path was taken.
pub fn staged(target: &Path) -> bool {
    tributary::Sidecar::for_target(target).dir.join("stage").is_dir()
}

/// Delta records (`TRIBDLTA`) in a target's lock file now: a trial with deltas on
/// shows that its compactors took the path.
pub fn delta_records(target: &Path) -> usize {
    let lock = tributary::Sidecar::for_target(target).lock;
    std::fs::read(lock).map_or(0, |b| b.windows(8).filter(|w| w == b"TRIBDLTA").count())
}

pub fn tributary_exe(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("TRIBUTARY_BIN") {
        return PathBuf::from(p);
    }
    let me = std::env::current_exe().expect("current_exe");
    me.with_file_name("tributary")
}

pub fn strings<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> Vec<String> {
    items.into_iter().map(|s| s.as_ref().to_string()).collect()
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// The drain-protocol failpoints (`drain.*`, and the stager's `stage.*` when the trial
/// stages) in protocol order (with the format-2 intent commit, `drain.after_intent`,
/// while [`tributary::testing::failpoint::POINTS`] lacks it).
pub fn drain_failpoints() -> Vec<&'static str> {
    let stages = staging();
    let mut v: Vec<&'static str> = tributary::testing::failpoint::POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("drain.") || (stages && p.starts_with("stage.")))
        .collect();
    if !v.contains(&"drain.after_intent") {
        v.insert(v.iter().position(|p| *p == "drain.mid_write").unwrap_or(v.len()), "drain.after_intent");
    }
    v
}

/// What tributary's own `Reader` shows of the target's current generation through this
/// path (a mount of the share): every committed line, `\n`-terminated. The multi-host
/// checks compare it with the file's bytes through every mount: a reader on any host
/// must see exactly the committed bytes, default client caches or not.
pub fn committed_view(target: &Path) -> Result<Vec<u8>, String> {
    let mut r = tributary::Reader::open(target, 0).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(line) = r.next_line().map_err(|e| e.to_string())? {
        out.extend_from_slice(&line);
        out.push(b'\n');
    }
    Ok(out)
}
