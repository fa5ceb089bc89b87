//! The fixed cost of one drain round through a GlusterFS mount: a one-shot `tributary
//! drain` of a local journal holding nothing new (an idle round) and holding one line,
//! timed as a process (the median of several; `tributary --version` gives the process's
//! own start and exit), and once under `strace -f -y -T` to count its system calls, the
//! ones that touch the mount, and the time spent in those.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use tributary::{Journal, JournalOptions};

use crate::record::Record;
use crate::writers::make_line;
use crate::{Ctx, R};

const REPS: usize = 7;

/// What one strace'd process did.
#[derive(Debug, Default, PartialEq)]
pub struct Trace {
    pub syscalls: u64,
    pub on_mount: u64,
    /// Seconds inside the system calls that touch the mount.
    pub on_mount_secs: f64,
    /// The mount's system calls by name, most frequent first: `fcntl×4 pread64×2 …`.
    pub by_name: String,
}

/// Parse `strace -f -y -T` output; a call "touches the mount" when its line (or the
/// unfinished half of it) names a path under `mount`.
pub fn parse_strace(text: &str, mount: &str) -> Trace {
    let mut t = Trace::default();
    let mut pending: BTreeMap<&str, bool> = BTreeMap::new();
    let mut names: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines() {
        let (pid, rest) = match line.split_once(' ') {
            Some((p, r)) if p.chars().all(|c| c.is_ascii_digit()) => (p, r.trim_start()),
            _ => ("", line),
        };
        if rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        if rest.ends_with("<unfinished ...>") {
            pending.insert(pid, rest.contains(mount));
            continue;
        }
        let (name, touches) = match rest.strip_prefix("<... ") {
            Some(r) => {
                let name = r.split(' ').next().unwrap_or("?");
                (name.to_string(), pending.remove(pid).unwrap_or(false) || r.contains(mount))
            }
            None => (rest.split('(').next().unwrap_or("?").to_string(), rest.contains(mount)),
        };
        // execve names the mount in its arguments (--target): not a call on the mount
        if name.is_empty() || name == "execve" || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        t.syscalls += 1;
        if touches {
            t.on_mount += 1;
            *names.entry(name).or_default() += 1;
            if let Some(secs) = rest.rsplit_once('<').and_then(|(_, s)| s.strip_suffix('>')?.parse::<f64>().ok()) {
                t.on_mount_secs += secs;
            }
        }
    }
    let mut v: Vec<(String, u64)> = names.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    t.by_name = v.iter().map(|(n, c)| format!("{n}×{c}")).collect::<Vec<_>>().join(" ");
    t
}

fn timed(cmd: &mut Command) -> R<f64> {
    let started = Instant::now();
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output().ctx("running tributary")?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(secs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The `cost` records of `bin` (labelled `label`): idle and one-line rounds.
pub fn measure(bin: &Path, label: &str, mount: &Path, work: &Path) -> R<Vec<Record>> {
    let name = format!("rc-{label}-{}", std::process::id());
    let dir = mount.join(&name);
    let local = work.join(&name);
    let result = measure_in(bin, label, mount, &dir, &local);
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_dir_all(&local);
    result
}

fn measure_in(bin: &Path, label: &str, mount: &Path, dir: &Path, local: &Path) -> R<Vec<Record>> {
    fs::create_dir_all(dir).ctx("creating the folder on the volume")?;
    fs::create_dir_all(local).ctx("creating the local folder")?;
    let target = dir.join("out.log");
    let jpath = local.join("j.journal");
    let journal = Journal::open(&jpath, JournalOptions::default()).ctx("Journal::open")?;
    timed(Command::new(bin).arg("init").arg("--target").arg(&target))?;
    let drain = || {
        let mut c = Command::new(bin);
        c.arg("drain").arg("--target").arg(&target).arg("--journal").arg(&jpath);
        c
    };
    // a first round: the journal's watermark is recorded, caches are warm
    journal.append(&make_line(0, 0, 0)).ctx("append")?;
    timed(&mut drain())?;
    let startup = median((0..REPS).map(|_| timed(Command::new(bin).arg("--version"))).collect::<R<_>>()?);
    let mut out = Vec::new();
    let mut i = 1;
    for case in ["idle", "1 line"] {
        let mut walls = Vec::new();
        for _ in 0..REPS {
            if case != "idle" {
                journal.append(&make_line(0, 0, i)).ctx("append")?;
                i += 1;
            }
            walls.push(timed(&mut drain())?);
        }
        if case != "idle" {
            journal.append(&make_line(0, 0, i)).ctx("append")?;
            i += 1;
        }
        let trace_file = local.join("trace.txt");
        let mut st = Command::new("strace");
        st.args(["-f", "-y", "-T", "-qq", "-o"]).arg(&trace_file).arg(bin);
        st.arg("drain").arg("--target").arg(&target).arg("--journal").arg(&jpath);
        let traced = timed(&mut st).map_err(|e| format!("strace (is it installed?): {e}"))?;
        let text = fs::read_to_string(&trace_file).ctx("reading the strace output")?;
        let t = parse_strace(&text, &mount.display().to_string());
        let mut r = Record::new("cost");
        r.set("binary", label)
            .set("case", case)
            .set("wall_ms", format!("{:.1}", median(walls) * 1e3))
            .set("startup_ms", format!("{:.1}", startup * 1e3))
            .set("traced_ms", format!("{:.1}", traced * 1e3))
            .set("syscalls", t.syscalls)
            .set("mount_syscalls", t.on_mount)
            .set("mount_ms", format!("{:.1}", t.on_mount_secs * 1e3))
            .set("mount_by_name", t.by_name);
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_calls_that_touch_the_mount_and_their_time() {
        let text = "\
100 execve(\"/bin/tributary\", [\"tributary\", \"--target\", \"/mnt/v/node1/rc/out.log\"], 0x7ffd /* 3 vars */) = 0 <0.000300>
100 openat(AT_FDCWD</work>, \"/mnt/v/node1/rc/out.log.tributary/lock\", O_RDWR) = 3</mnt/v/node1/rc/out.log.tributary/lock> <0.002000>
100 fcntl(3</mnt/v/node1/rc/out.log.tributary/lock>, F_OFD_SETLKW, {l_type=F_WRLCK}) = 0 <0.001000>
101 pread64(3</mnt/v/node1/rc/out.log.tributary/lock>, \"\"..., 4096, 0 <unfinished ...>
100 read(4</work/j.journal>, \"\", 10) = 0 <0.000010>
101 <... pread64 resumed>) = 4096 <0.003000>
100 --- SIGCHLD {si_signo=SIGCHLD} ---
100 +++ exited with 0 +++
";
        let t = parse_strace(text, "/mnt/v");
        assert_eq!(t.syscalls, 4);
        assert_eq!(t.on_mount, 3);
        assert!((t.on_mount_secs - 0.006).abs() < 1e-9, "{}", t.on_mount_secs);
        assert_eq!(t.by_name, "fcntl×1 openat×1 pread64×1");
    }
}
