//! Pieces shared by the torture trials and the multi-host soak: a seeded RNG, the
//! exact bytes every writer appends (so the checker recomputes them and a torn or
//! altered line cannot pass), ack files, child processes, and the exactly-once check.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// splitmix64: turns any seed (0 included) into a well-mixed 64-bit value.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Derive a sub-seed (trial k of run s, writer w of trial t, ...).
pub fn mix(a: u64, b: u64) -> u64 {
    splitmix(a ^ splitmix(b))
}

/// xorshift64*: small, seedable, good enough for schedules and payloads.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(splitmix(seed) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A fresh random seed (printed by every harness so a failing run can be repeated).
pub fn random_seed() -> u64 {
    tributary::sys::random_u64() % 1_000_000_000_000
}

/// The exact bytes of writer `w`'s `i`th line (1-based) in the run seeded `run`:
/// an ASCII prefix `w<w> <i:08> ` the checker parses, then a payload of any bytes but
/// `\n` (NUL and invalid UTF-8 included), usually short, sometimes empty, sometimes
/// a few KiB.
pub fn expected_line(run: u64, w: u32, i: u64) -> Vec<u8> {
    let mut rng = Rng::new(mix(run, (u64::from(w) << 40) ^ i));
    let mut v = format!("w{w} {i:08} ").into_bytes();
    let len = match rng.below(24) {
        0 => 1000 + rng.below(4000),
        1 => 0,
        _ => rng.below(100),
    };
    let binary = rng.chance(1, 4);
    for _ in 0..len {
        let b = if binary { rng.next_u64() as u8 } else { b'a' + rng.below(26) as u8 };
        v.push(if b == b'\n' { b'~' } else { b });
    }
    v
}

/// `(line index, seq)` pairs of an ack file. Only records ending in `\n` count (each
/// batch's records are one write(2), but a torn record would simply not count).
pub fn read_acks(path: &Path) -> Vec<(u64, u64)> {
    let mut bytes = Vec::new();
    if File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).is_err() {
        return Vec::new();
    }
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(p) => &bytes[..=p],
        None => return Vec::new(),
    };
    complete
        .split(|&b| b == b'\n')
        .filter_map(|l| {
            let s = std::str::from_utf8(l).ok()?;
            let (i, seq) = s.split_once(' ')?;
            Some((i.parse().ok()?, seq.parse().ok()?))
        })
        .collect()
}

/// Highest acknowledged line index in an ack file (0 = none).
pub fn last_acked(path: &Path) -> u64 {
    read_acks(path).iter().map(|(i, _)| *i).max().unwrap_or(0)
}

/// One writer of a run: its id, how many lines it appends, its journal and ack file.
#[derive(Debug, Clone)]
pub struct WriterSpec {
    pub id: u32,
    pub lines: u64,
    pub journal: PathBuf,
    pub ack: PathBuf,
}

/// What the checker found. `lost` = acknowledged lines missing from the target whose
/// journal already deleted them (gone for good); `held` = acknowledged lines missing
/// from the target but still in their journal (a refused drain left them there).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Check {
    pub lines: u64,
    pub acked: u64,
    pub lost: u64,
    pub held: u64,
    pub duplicated: u64,
    pub torn: u64,
    pub out_of_order: u64,
    /// Lines present that were committed to a journal but whose ack the writer never
    /// wrote (killed in between): allowed, at most once.
    pub unacked_present: u64,
}

impl Check {
    /// Every acknowledged line exactly once, in order, nothing torn.
    pub fn exactly_once(&self) -> bool {
        self.lost == 0 && self.held == 0 && self.duplicated == 0 && self.torn == 0 && self.out_of_order == 0
    }

    pub fn add(&mut self, o: &Check) {
        self.lines += o.lines;
        self.acked += o.acked;
        self.lost += o.lost;
        self.held += o.held;
        self.duplicated += o.duplicated;
        self.torn += o.torn;
        self.out_of_order += o.out_of_order;
        self.unacked_present += o.unacked_present;
    }

    pub fn summary(&self) -> String {
        format!(
            "target_lines={} acked={} lost={} held={} duplicated={} torn={} out_of_order={} unacked_present={}",
            self.lines,
            self.acked,
            self.lost,
            self.held,
            self.duplicated,
            self.torn,
            self.out_of_order,
            self.unacked_present
        )
    }
}

/// Check a target's bytes against the writers' ack files. `drained_seq(w)` is the
/// seq up to which writer `w`'s journal says it was drained (rows up to it are
/// deleted), used to tell a lost line from one still held in its journal.
pub fn check_target(
    run: u64,
    target: &[u8],
    writers: &[WriterSpec],
    drained_seq: &dyn Fn(&WriterSpec) -> u64,
) -> Check {
    let mut c = Check::default();
    let by_id: HashMap<u32, &WriterSpec> = writers.iter().map(|w| (w.id, w)).collect();
    let mut count: HashMap<(u32, u64), u32> = HashMap::new();
    let mut last_index: HashMap<u32, u64> = HashMap::new();
    let (body, tail) = match target.iter().rposition(|&b| b == b'\n') {
        Some(p) => (&target[..=p], &target[p + 1..]),
        None => (&target[..0], target),
    };
    if !tail.is_empty() {
        c.torn += 1; // bytes after the last newline: a torn line
    }
    let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    lines.pop(); // the empty piece after the final '\n'
    for line in lines {
        c.lines += 1;
        let seen = tally_line(line, run, |w| by_id.get(&w).map(|s| s.lines), &mut count, &mut last_index);
        c.duplicated += u64::from(seen.duplicated);
        c.out_of_order += u64::from(seen.out_of_order);
        c.torn += u64::from(seen.torn);
    }
    for w in writers {
        let acks = read_acks(&w.ack);
        let acked: HashMap<u64, u64> = acks.iter().copied().collect();
        let drained = drained_seq(w);
        for (i, seq) in &acked {
            c.acked += 1;
            if !count.contains_key(&(w.id, *i)) {
                if *seq <= drained {
                    c.lost += 1;
                } else {
                    c.held += 1;
                }
            }
        }
        c.unacked_present += count.keys().filter(|(id, i)| *id == w.id && !acked.contains_key(i)).count() as u64;
    }
    c
}

fn parse_prefix(line: &[u8]) -> Option<(u32, u64)> {
    let mut it = line.splitn(3, |&b| b == b' ');
    let w = std::str::from_utf8(it.next()?).ok()?.strip_prefix('w')?.parse().ok()?;
    let i_bytes = it.next()?;
    if i_bytes.len() != 8 {
        return None;
    }
    let i = std::str::from_utf8(i_bytes).ok()?.parse().ok()?;
    it.next()?; // the separator after the index must be there
    Some((w, i))
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
            let _ = tributary::sys::send_signal(pid, sig);
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
            let _ = tributary::sys::send_signal(c.id(), libc::SIGCONT);
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

/// The drain-protocol failpoints (`drain.*`) in protocol order (with the format-2
/// intent commit, `drain.after_intent`, while [`tributary::failpoint::POINTS`] lacks it).
pub fn drain_failpoints() -> Vec<&'static str> {
    let mut v: Vec<&'static str> =
        tributary::failpoint::POINTS.iter().copied().filter(|p| p.starts_with("drain.")).collect();
    if !v.contains(&"drain.after_intent") {
        v.insert(v.iter().position(|p| *p == "drain.mid_write").unwrap_or(v.len()), "drain.after_intent");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &Path, id: u32, lines: u64, acked: &[(u64, u64)]) -> WriterSpec {
        let ack = dir.join(format!("w{id}.ack"));
        let mut s = String::new();
        for (i, seq) in acked {
            s.push_str(&format!("{i} {seq}\n"));
        }
        fs::write(&ack, s).unwrap();
        WriterSpec { id, lines, journal: dir.join(format!("w{id}.journal")), ack }
    }

    fn target_of(run: u64, lines: &[(u32, u64)]) -> Vec<u8> {
        let mut t = Vec::new();
        for (w, i) in lines {
            t.extend_from_slice(&expected_line(run, *w, *i));
            t.push(b'\n');
        }
        t
    }

    #[test]
    fn expected_lines_are_deterministic_and_newline_free() {
        for i in 1..2000 {
            let l = expected_line(7, 3, i);
            assert_eq!(l, expected_line(7, 3, i));
            assert!(!l.contains(&b'\n'));
            assert_eq!(parse_prefix(&l), Some((3, i)));
        }
        assert_ne!(expected_line(7, 3, 1), expected_line(8, 3, 1));
    }

    #[test]
    fn checker_accepts_exactly_once_and_catches_each_kind_of_damage() {
        let d = tempfile::tempdir().unwrap();
        let run = 42;
        let ws = vec![writer(d.path(), 1, 3, &[(1, 1), (2, 2), (3, 3)]), writer(d.path(), 2, 2, &[(1, 1), (2, 2)])];
        let none = |_: &WriterSpec| 0u64;
        let all = |_: &WriterSpec| 100u64;
        let good = target_of(run, &[(1, 1), (2, 1), (1, 2), (2, 2), (1, 3)]);
        let c = check_target(run, &good, &ws, &all);
        assert!(c.exactly_once(), "{c:?}");
        assert_eq!((c.lines, c.acked), (5, 5));

        // a missing line: lost when its journal deleted it, held when it still has it
        let missing = target_of(run, &[(1, 1), (2, 1), (2, 2), (1, 3)]);
        let c = check_target(run, &missing, &ws, &all);
        assert_eq!((c.lost, c.held), (1, 0), "{c:?}");
        let c = check_target(run, &missing, &ws, &none);
        assert_eq!((c.lost, c.held), (0, 1), "{c:?}");
        assert!(!c.exactly_once());

        let dup = target_of(run, &[(1, 1), (2, 1), (1, 2), (2, 2), (1, 3), (2, 2)]);
        let c = check_target(run, &dup, &ws, &all);
        assert_eq!(c.duplicated, 1, "{c:?}");
        assert_eq!(c.out_of_order, 1, "{c:?}");

        let swapped = target_of(run, &[(1, 2), (1, 1), (2, 1), (2, 2), (1, 3)]);
        let c = check_target(run, &swapped, &ws, &all);
        assert_eq!((c.out_of_order, c.duplicated, c.lost), (1, 0, 0), "{c:?}");

        // a torn line (cut short), an altered byte, a line of another run, a bare tail
        let mut torn = good.clone();
        let cut = expected_line(run, 1, 1).len() - 1;
        torn.remove(cut);
        let c = check_target(run, &torn, &ws, &all);
        assert_eq!(c.torn, 1, "{c:?}");
        let mut altered = good.clone();
        altered[3] ^= 0x20;
        assert!(!check_target(run, &altered, &ws, &all).exactly_once());
        let foreign = target_of(run + 1, &[(1, 1), (2, 1), (1, 2), (2, 2), (1, 3)]);
        let c = check_target(run, &foreign, &ws, &all);
        assert!(c.torn >= 4, "{c:?}");
        let mut tail = good.clone();
        tail.extend_from_slice(b"w1 00000004 partial");
        assert_eq!(check_target(run, &tail, &ws, &all).torn, 1);
        // an index beyond what the writer ever appends is foreign too
        let beyond = target_of(run, &[(1, 1), (2, 1), (1, 2), (2, 2), (1, 3), (1, 4)]);
        assert_eq!(check_target(run, &beyond, &ws, &all).torn, 1);
    }

    #[test]
    fn unacked_lines_may_appear_once() {
        let d = tempfile::tempdir().unwrap();
        let ws = vec![writer(d.path(), 1, 3, &[(1, 1)])];
        let t = target_of(5, &[(1, 1), (1, 2)]);
        let c = check_target(5, &t, &ws, &|_| 10);
        assert!(c.exactly_once(), "{c:?}");
        assert_eq!(c.unacked_present, 1);
    }

    #[test]
    fn ack_reader_ignores_a_torn_last_record() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a");
        fs::write(&p, "1 1\n2 2\n3 ").unwrap();
        assert_eq!(read_acks(&p), vec![(1, 1), (2, 2)]);
        assert_eq!(last_acked(&p), 2);
    }
}

/// What one line of a target is to a checker.
#[derive(Debug, Default, Clone, Copy)]
pub struct LineTally {
    /// The line was seen before.
    pub duplicated: bool,
    /// Not after its writer's previous line.
    pub out_of_order: bool,
    /// Not a line any writer wrote (torn, foreign or garbage).
    pub torn: bool,
}

/// Classify one target line of run `run`: `lines_of(w)` is how many lines writer `w`
/// has (None: no such writer); `count` and `last` carry the tally across lines.
pub fn tally_line(
    line: &[u8],
    run: u64,
    lines_of: impl Fn(u32) -> Option<u64>,
    count: &mut HashMap<(u32, u64), u32>,
    last: &mut HashMap<u32, u64>,
) -> LineTally {
    let mut t = LineTally::default();
    match parse_prefix(line).filter(|(w, i)| lines_of(*w).is_some_and(|n| *i >= 1 && *i <= n)) {
        Some((w, i)) if line == expected_line(run, w, i).as_slice() => {
            let n = count.entry((w, i)).or_default();
            *n += 1;
            t.duplicated = *n > 1;
            let l = last.entry(w).or_default();
            t.out_of_order = i <= *l;
            *l = (*l).max(i);
        }
        _ => t.torn = true,
    }
    t
}
