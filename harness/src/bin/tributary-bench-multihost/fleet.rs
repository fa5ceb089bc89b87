//! One system at N hosts: start every host's writer process (and, for tributary, its
//! compact daemon and a reader thread that stamps commits), let them run for the timed window, collect the
//! ack files, wait for every acknowledged line, and condense it all into one `run`
//! record: fleet throughput, append→committed latency, lost/duplicated/torn lines, and
//! for tributary each daemon's rounds and lock wait, and whether a host starved.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tributary::testing::sys::send_signal;
use tributary::{Cursor, Reader};

use crate::metrics::{self, Snapshot};
use crate::record::Record;
use crate::stats::{histogram_quantile, quantile};
use crate::writers::{now_ns, parse_line, read_acks, sleep_until_ns};
use crate::{Ctx, R};

/// What runs on every host.
#[derive(Clone)]
pub enum System {
    /// `tributary compact` from this binary, writers on the library this bench links:
    /// durable on return (`Journal::append`, `full`) when `background_ms` is 0, else
    /// through an `Appender` with that durability window (background commit).
    Tributary { bin: PathBuf, label: String, background_ms: u64 },
    /// Per line: OFD lock, fstat, pwrite at the size, fsync, unlock.
    Seed,
    /// concurrent-log-handler, one Python process per host.
    Clh { python: PathBuf },
}

impl System {
    pub fn label(&self) -> String {
        match self {
            System::Tributary { label, .. } => label.clone(),
            System::Seed => "seed".into(),
            System::Clh { .. } => "clh".into(),
        }
    }
}

/// The settings every run shares.
#[derive(Clone)]
pub struct Fleet {
    /// BASE/node1 .. BASE/nodeN: host k uses mount k.
    pub mounts: Vec<PathBuf>,
    /// A mount of its own for the reader that stamps commits.
    pub reader_mount: PathBuf,
    /// The volume's brick folder (the ground truth for counting the baselines' lines),
    /// if it is on this machine.
    pub brick: Option<PathBuf>,
    /// Local disk: journals, ack files, logs.
    pub work: PathBuf,
    pub seconds: f64,
    /// Offered lines/s per host, 0 = full speed.
    pub rate: f64,
    pub threads: u32,
    pub interval_ms: u64,
    pub poll_ms: u64,
    /// How long to wait for the last acknowledged lines after the writers stop.
    pub drain_timeout: Duration,
    pub keep: bool,
}

/// Children killed (SIGKILL) and reaped when dropped, so a failed run leaves nothing behind.
#[derive(Default)]
struct Children(Vec<(String, Child)>);

impl Children {
    fn push(&mut self, name: String, c: Child) {
        self.0.push((name, c));
    }

    /// SIGTERM every child named with `prefix`, wait up to 10 s, then SIGKILL.
    fn stop(&mut self, prefix: &str) {
        for (n, c) in &self.0 {
            if n.starts_with(prefix) {
                let _ = send_signal(c.id(), libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (n, c) in &mut self.0 {
            if !n.starts_with(prefix) {
                continue;
            }
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Whether a child named with `prefix` has exited.
    fn any_exited(&mut self, prefix: &str) -> bool {
        self.0.iter_mut().any(|(n, c)| n.starts_with(prefix) && c.try_wait().ok().flatten().is_some())
    }

    /// Wait for every child named with `prefix` to exit on its own (up to `limit`);
    /// the names of those that failed.
    fn wait(&mut self, prefix: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut failed = Vec::new();
        for (n, c) in &mut self.0 {
            if !n.starts_with(prefix) {
                continue;
            }
            loop {
                match c.try_wait() {
                    Ok(Some(st)) if st.success() => break,
                    Ok(Some(st)) => {
                        failed.push(format!("{n} ({st})"));
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        failed.push(format!("{n} (did not exit in time)"));
                        break;
                    }
                }
            }
        }
        failed
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Wait until every writer says "ready" (its journal or files are open), or fail.
fn wait_ready(outs: Vec<(String, ChildStdout)>, limit: Duration) -> R<()> {
    let (tx, rx) = mpsc::channel();
    let n = outs.len();
    for (name, out) in outs {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let ok = BufReader::new(out).read_line(&mut line).is_ok() && line.trim() == "ready";
            let _ = tx.send((name, ok));
        });
    }
    let deadline = Instant::now() + limit;
    for _ in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, true)) => {}
            Ok((name, false)) => return Err(format!("{name} exited before it was ready (see its log)")),
            Err(_) => return Err(format!("writers not ready within {limit:?}")),
        }
    }
    Ok(())
}

fn log_file(p: &Path) -> R<File> {
    File::create(p).ctx(&format!("creating {}", p.display()))
}

fn tail_of(p: &Path) -> String {
    let t = fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = t.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
}

/// Lines the reader saw: per (host, thread), each index's arrival (0 = not yet).
#[derive(Default)]
struct Seen {
    arrivals: HashMap<(u32, u32), Vec<u64>>,
    dup: u64,
    torn: u64,
}

/// A name unique to this run, used for its folder on the volume and on local disk.
fn run_name(system: &System, hosts: usize) -> String {
    format!("{}-n{hosts}-{}-{}", system.label(), std::process::id(), now_ns() / 1_000_000)
}

/// Run `system` on the first `hosts` mounts and return its `run` record (a failure is
/// recorded as the record's `error`, so the other runs go on).
pub fn run(f: &Fleet, system: &System, hosts: usize) -> Record {
    let mut rec = Record::new("run");
    rec.set("system", system.label()).set("hosts", hosts).set("seconds", f.seconds).set("rate", f.rate);
    let name = run_name(system, hosts);
    let local = f.work.join(&name);
    let result = (|| -> R<()> {
        fs::create_dir_all(&local).ctx("creating the run's local folder")?;
        fs::create_dir(f.mounts[0].join(&name)).ctx("creating the run's folder on the volume")?;
        match system {
            System::Tributary { bin, background_ms, .. } => {
                run_tributary(f, bin, *background_ms, hosts, &name, &local, &mut rec)
            }
            System::Seed | System::Clh { .. } => run_baseline(f, system, hosts, &name, &local, &mut rec),
        }
    })();
    if let Err(e) = result {
        rec.set("error", e);
    }
    if !f.keep {
        let _ = fs::remove_dir_all(f.mounts[0].join(&name));
        let _ = fs::remove_dir_all(&local);
    }
    rec
}

/// When writers start: late enough for every process to be up.
fn start_time(hosts: usize) -> u64 {
    now_ns() + 2_000_000_000 + 150_000_000 * hosts as u64
}

fn writer_common(f: &Fleet, host: usize, start_at: u64, acks: &Path) -> Vec<String> {
    vec![
        "--host".into(),
        host.to_string(),
        "--threads".into(),
        f.threads.to_string(),
        "--start-at-ns".into(),
        start_at.to_string(),
        "--seconds".into(),
        f.seconds.to_string(),
        "--rate".into(),
        f.rate.to_string(),
        "--acks".into(),
        acks.display().to_string(),
    ]
}

fn run_tributary(
    f: &Fleet,
    bin: &Path,
    background_ms: u64,
    hosts: usize,
    name: &str,
    local: &Path,
    rec: &mut Record,
) -> R<()> {
    let target = |mount: &Path| mount.join(name).join("out.log");
    let st = Command::new(bin).arg("init").arg("--target").arg(target(&f.mounts[0])).output().ctx("tributary init")?;
    if !st.status.success() {
        return Err(format!("tributary init: {}", String::from_utf8_lossy(&st.stderr).trim()));
    }
    let me = std::env::current_exe().ctx("current_exe")?;
    let mut kids = Children::default();
    let start_at = start_time(hosts);
    let mut outs = Vec::new();
    for h in 1..=hosts {
        let hd = local.join(format!("host{h}"));
        fs::create_dir_all(hd.join("spool")).ctx("creating the spool")?;
        let mut c = Command::new(&me)
            .arg("writer")
            .args(writer_common(f, h, start_at, &hd.join("acks")))
            .arg("--journal")
            .arg(hd.join("spool").join("w.journal"))
            .arg("--background-window-ms")
            .arg(background_ms.to_string())
            .stdout(Stdio::piped())
            .stderr(log_file(&hd.join("writer.log"))?)
            .spawn()
            .ctx("spawning a writer")?;
        outs.push((format!("writer {h}"), c.stdout.take().ok_or("no stdout")?));
        kids.push(format!("writer {h}"), c);
    }
    wait_ready(outs, Duration::from_nanos(start_at.saturating_sub(now_ns())))?;
    for h in 1..=hosts {
        let hd = local.join(format!("host{h}"));
        let c = Command::new(bin)
            .arg("compact")
            .arg("--interval")
            .arg(f.interval_ms.to_string())
            .arg("--target")
            .arg(target(&f.mounts[h - 1]))
            .arg("--spool")
            .arg(hd.join("spool"))
            .arg("--metrics-textfile")
            .arg(hd.join("metrics.prom"))
            .args(["--metrics-interval-ms", "100", "--metrics-backlog-ms", "0"])
            .stdout(log_file(&hd.join("compact.log"))?)
            .stderr(log_file(&hd.join("compact.err"))?)
            .spawn()
            .ctx("spawning tributary compact")?;
        kids.push(format!("compact {h}"), c);
    }
    // The instrument: a reader thread in this process (the library's `Reader`, from
    // the target's start), stamping each line the moment it reads it. Not `tributary
    // tail --follow` through a pipe: its stdout buffer holds lines until 8 KiB (80
    // lines) are written or no line came for 500 ms, which at 1,000 lines/s added up to
    // 80 ms to what it measured.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let count = Arc::new(AtomicU64::new(0));
    let stop_reading = Arc::new(AtomicBool::new(false));
    let reader = {
        let (seen, count, stop) = (Arc::clone(&seen), Arc::clone(&count), Arc::clone(&stop_reading));
        let (at_target, poll) = (target(&f.reader_mount), Duration::from_millis(f.poll_ms.max(1)));
        std::thread::spawn(move || -> Option<String> {
            let mut r = match Reader::open_at(&at_target, Cursor::START) {
                Ok(r) => r,
                Err(e) => return Some(format!("opening {}: {e}", at_target.display())),
            };
            loop {
                let line = match r.next_line() {
                    Ok(Some(l)) => l,
                    // at the committed end: stop once told to (everything is read), else poll
                    Ok(None) if stop.load(Ordering::Relaxed) => return None,
                    Ok(None) => {
                        std::thread::sleep(poll);
                        continue;
                    }
                    Err(e) => return Some(e.to_string()),
                };
                let at = now_ns();
                let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                match parse_line(&line) {
                    Some((h, t, i)) => {
                        let v = s.arrivals.entry((h, t)).or_default();
                        let i = i as usize;
                        if v.len() <= i {
                            v.resize(i + 1, 0);
                        }
                        if v[i] != 0 {
                            s.dup += 1;
                        } else {
                            v[i] = at;
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => s.torn += 1,
                }
            }
        })
    };

    // The timed window, and each daemon's metrics at its start and end.
    let end_at = start_at + (f.seconds * 1e9) as u64;
    let prom = |h: usize| local.join(format!("host{h}")).join("metrics.prom");
    sleep_until_ns(start_at);
    let before: Vec<Snapshot> = (1..=hosts).map(|h| metrics::read(&prom(h))).collect();
    sleep_until_ns(end_at);
    let after: Vec<Snapshot> = (1..=hosts).map(|h| metrics::read(&prom(h))).collect();
    let failed = kids.wait("writer", Duration::from_secs(60));
    let mut acks = Vec::new();
    for h in 1..=hosts {
        let hd = local.join(format!("host{h}"));
        acks.push(read_acks(&hd.join("acks")).map_err(|e| format!("{e} ({})", tail_of(&hd.join("writer.log"))))?);
    }
    if !failed.is_empty() {
        let logs: Vec<String> =
            (1..=hosts).map(|h| tail_of(&local.join(format!("host{h}")).join("writer.log"))).collect();
        return Err(format!("writers failed: {} — {}", failed.join(", "), logs.join("; ")));
    }
    let total: u64 = acks.iter().flatten().map(|t| t.len() as u64).sum();
    let deadline = Instant::now() + f.drain_timeout;
    // (a daemon that exited, e.g. on an error that needs a human, will not commit the
    // rest; a reader that stopped on an error will not see it)
    while count.load(Ordering::Relaxed) < total
        && Instant::now() < deadline
        && !kids.any_exited("compact")
        && !reader.is_finished()
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let drained_in = Duration::from_nanos(now_ns().saturating_sub(end_at));
    kids.stop("compact");
    stop_reading.store(true, Ordering::Relaxed);
    match reader.join() {
        Ok(None) => {}
        Ok(Some(e)) => {
            rec.set("reader_error", e);
        }
        Err(_) => {
            rec.set("reader_error", "the reader thread panicked");
        }
    }
    let verify = Command::new(bin).arg("verify").arg("--target").arg(target(&f.mounts[0])).output();
    match verify {
        Ok(o) if o.status.success() => rec.set("verify", "ok"),
        Ok(o) => rec.set("verify", format!("FAILED: {}", String::from_utf8_lossy(&o.stdout).trim())),
        Err(e) => rec.set("verify", format!("could not run: {e}")),
    };
    for h in 1..=hosts {
        let err = tail_of(&local.join(format!("host{h}")).join("compact.err"));
        if err.contains("error") {
            rec.set(&format!("compact{h}_said"), err);
        }
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
    let deltas: Vec<Snapshot> = after.iter().zip(&before).map(|(a, b)| a.since(b)).collect();
    summarize(f, rec, start_at, end_at, &acks, &seen, &deltas);
    rec.set("drain_after_ms", drained_in.as_millis());
    Ok(())
}

/// Milliseconds from nanoseconds, for the record.
fn ms(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1e6)
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    f: &Fleet,
    rec: &mut Record,
    start_at: u64,
    end_at: u64,
    acks: &[Vec<Vec<(u64, u64)>>],
    seen: &Seen,
    deltas: &[Snapshot],
) {
    let warm = if f.seconds >= 4.0 { 1_000_000_000 } else { 0 };
    let (mut lat, mut call, mut missing, mut in_window, mut appended) = (Vec::new(), Vec::new(), 0u64, 0u64, 0u64);
    let mut per_host = Vec::new();
    for (h0, threads) in acks.iter().enumerate() {
        let (mut hl, mut arrivals, mut h_in) = (Vec::new(), Vec::new(), 0u64);
        for (t, times) in threads.iter().enumerate() {
            let got = seen.arrivals.get(&((h0 + 1) as u32, t as u32));
            for (i, &(sent, ack)) in times.iter().enumerate() {
                appended += 1;
                call.push(ack.saturating_sub(sent));
                let at = got.and_then(|v| v.get(i)).copied().unwrap_or(0);
                if at == 0 {
                    missing += 1;
                    continue;
                }
                if at <= end_at {
                    in_window += 1;
                    h_in += 1;
                    arrivals.push(at);
                }
                if sent >= start_at + warm {
                    hl.push(at.saturating_sub(ack));
                }
            }
        }
        lat.extend_from_slice(&hl);
        // the longest this host's lines went without a commit during the window
        arrivals.push(start_at);
        arrivals.push(end_at);
        arrivals.sort_unstable();
        arrivals.dedup();
        let gap = arrivals.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        per_host.push((h_in, quantile(&mut hl.clone(), 0.5), quantile(&mut hl, 0.99), gap));
    }
    // lines seen that no writer acknowledged (only a bug would make these)
    let acked: u64 = appended;
    let seen_total: u64 = seen.arrivals.values().map(|v| v.iter().filter(|&&a| a != 0).count() as u64).sum();
    let unacked = seen_total.saturating_sub(acked - missing);
    rec.set("appended", appended)
        .set("appended_per_s", format!("{:.0}", appended as f64 / f.seconds))
        .set("committed", in_window)
        .set("throughput", format!("{:.0}", in_window as f64 / f.seconds))
        .set("lost", missing)
        .set("dup", seen.dup)
        .set("torn", seen.torn)
        .set("unacked_seen", unacked)
        .opt("p50_ms", quantile(&mut lat, 0.5).map(ms))
        .opt("p99_ms", quantile(&mut lat, 0.99).map(ms))
        .opt("max_ms", quantile(&mut lat, 1.0).map(ms))
        .opt("call_p50_ms", quantile(&mut call, 0.5).map(ms))
        .opt("call_p99_ms", quantile(&mut call, 0.99).map(ms));
    let secs = f.seconds;
    let lock = Snapshot::merged_lock_wait(deltas);
    let fmt_q = |q: Option<(f64, bool)>| q.map(|(v, over)| format!("{}{:.1}", if over { ">" } else { "" }, v * 1e3));
    rec.opt("lock_p50_ms", fmt_q(histogram_quantile(&lock, 0.5)));
    rec.opt("lock_p99_ms", fmt_q(histogram_quantile(&lock, 0.99)));
    let rounds: Vec<u64> = deltas.iter().map(|d| d.rounds).collect();
    rec.set("rounds_per_s", format!("{:.1}", rounds.iter().sum::<u64>() as f64 / secs));
    rec.set("contended", deltas.iter().map(|d| d.contended).sum::<u64>());
    let mut per = Vec::new();
    for (k, (d, (h_in, p50, p99, gap))) in deltas.iter().zip(&per_host).enumerate() {
        per.push(format!(
            "{}:{:.0}:{}:{}:{:.1}:{}:{}:{}",
            k + 1,
            *h_in as f64 / secs,
            p50.map_or("-".into(), ms),
            p99.map_or("-".into(), ms),
            d.rounds as f64 / secs,
            fmt_q(histogram_quantile(&d.lock_wait, 0.5)).unwrap_or("-".into()),
            fmt_q(histogram_quantile(&d.lock_wait, 0.99)).unwrap_or("-".into()),
            ms(*gap),
        ));
    }
    // per host: host:lines/s:p50:p99:rounds/s:lock p50:lock p99:longest gap (ms)
    rec.set("per_host", per.join(" "));
    rec.set("starved", starved(f.interval_ms, &rounds, &per_host.iter().map(|p| p.3).collect::<Vec<_>>()));
}

/// "no", or which hosts starved: a daemon that committed fewer than a quarter of the
/// median host's rounds in the window, or a host whose lines went more than
/// max(2 s, 20 intervals) without a commit.
fn starved(interval_ms: u64, rounds: &[u64], gaps_ns: &[u64]) -> String {
    let mut sorted = rounds.to_vec();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    let gap_limit = (2_000_000_000u64).max(20 * interval_ms * 1_000_000);
    let starving: Vec<usize> =
        (0..rounds.len()).filter(|&k| (rounds[k] as f64) < median as f64 / 4.0 || gaps_ns[k] > gap_limit).collect();
    if starving.is_empty() {
        return "no".into();
    }
    let theirs: Vec<u64> = starving.iter().map(|&k| rounds[k]).collect();
    let (lo, hi) = (theirs.iter().min().copied().unwrap_or(0), theirs.iter().max().copied().unwrap_or(0));
    let gap = starving.iter().map(|&k| gaps_ns[k]).max().unwrap_or(0);
    format!(
        "{} {} of {} ({} rounds, longest gap {:.1} s)",
        if starving.len() == 1 { "host" } else { "hosts" },
        starving.iter().map(|k| (k + 1).to_string()).collect::<Vec<_>>().join(", "),
        rounds.len(),
        if lo == hi { lo.to_string() } else { format!("{lo}–{hi}") },
        gap as f64 / 1e9
    )
}

fn run_baseline(f: &Fleet, system: &System, hosts: usize, name: &str, local: &Path, rec: &mut Record) -> R<()> {
    let me = std::env::current_exe().ctx("current_exe")?;
    let file_name = match system {
        System::Seed => "seed.log",
        _ => "clh.log",
    };
    let script = local.join("clh_writer.py");
    if let System::Clh { .. } = system {
        fs::write(&script, include_str!("clh_writer.py")).ctx("writing the Python writer")?;
    }
    let mut kids = Children::default();
    let start_at = start_time(hosts);
    let mut outs = Vec::new();
    for h in 1..=hosts {
        let hd = local.join(format!("host{h}"));
        fs::create_dir_all(&hd).ctx("creating a host folder")?;
        let file = f.mounts[h - 1].join(name).join(file_name);
        let acks = hd.join("acks");
        let mut cmd = match system {
            System::Seed => {
                let mut c = Command::new(&me);
                c.arg("seed-writer").args(writer_common(f, h, start_at, &acks)).arg("--file").arg(&file);
                c.arg("--lock").arg(file.with_extension("log.lock"));
                c
            }
            System::Clh { python, .. } => {
                let mut c = Command::new(python);
                c.arg(&script).arg(&file).arg(h.to_string()).arg(f.threads.to_string());
                c.arg(start_at.to_string()).arg(f.seconds.to_string()).arg(f.rate.to_string()).arg(&acks);
                c
            }
            System::Tributary { .. } => unreachable!("run_tributary runs tributary"),
        };
        let mut c =
            cmd.stdout(Stdio::piped()).stderr(log_file(&hd.join("writer.log"))?).spawn().ctx("spawning a writer")?;
        outs.push((format!("writer {h}"), c.stdout.take().ok_or("no stdout")?));
        kids.push(format!("writer {h}"), c);
    }
    wait_ready(outs, Duration::from_nanos(start_at.saturating_sub(now_ns())).max(Duration::from_secs(10)))?;
    let end_at = start_at + (f.seconds * 1e9) as u64;
    sleep_until_ns(end_at);
    let failed = kids.wait("writer", Duration::from_secs(120));
    let mut acks = Vec::new();
    for h in 1..=hosts {
        let hd = local.join(format!("host{h}"));
        match read_acks(&hd.join("acks")) {
            Ok(a) => acks.push(a),
            Err(e) => return Err(format!("{e} ({})", tail_of(&hd.join("writer.log")))),
        }
    }
    if !failed.is_empty() {
        let logs: Vec<String> =
            (1..=hosts).map(|h| tail_of(&local.join(format!("host{h}")).join("writer.log"))).collect();
        rec.set("writer_errors", format!("{} — {}", failed.join(", "), logs.join("; ")));
    }
    // The file as stored: the brick's copy when the brick is here (no client cache in
    // the way), else through the first mount.
    let on_brick = f.brick.as_ref().map(|b| b.join(name).join(file_name));
    let path = match on_brick {
        Some(p) if p.exists() => {
            rec.set("counted_from", "brick");
            p
        }
        _ => {
            rec.set("counted_from", "mount");
            f.mounts[0].join(name).join(file_name)
        }
    };
    let bytes = fs::read(&path).ctx(&format!("reading {}", path.display()))?;
    let mut seen = Seen::default();
    let mut count: HashMap<(u32, u32, u64), u32> = HashMap::new();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match parse_line(line) {
            Some(k) => *count.entry(k).or_default() += 1,
            None => seen.torn += 1,
        }
    }
    let (mut lost, mut appended, mut in_window) = (0u64, 0u64, 0u64);
    let mut call = Vec::new();
    for (h0, threads) in acks.iter().enumerate() {
        for (t, times) in threads.iter().enumerate() {
            for (i, &(sent, ack)) in times.iter().enumerate() {
                appended += 1;
                if ack <= end_at {
                    in_window += 1;
                }
                call.push(ack.saturating_sub(sent));
                match count.get(&((h0 + 1) as u32, t as u32, i as u64)) {
                    None => lost += 1,
                    Some(&n) => seen.dup += u64::from(n - 1),
                }
            }
        }
    }
    let stored: u64 = count.values().map(|&n| u64::from(n)).sum();
    rec.set("appended", appended)
        .set("appended_per_s", format!("{:.0}", appended as f64 / f.seconds))
        .set("committed", in_window)
        .set("throughput", format!("{:.0}", in_window as f64 / f.seconds))
        .set("lost", lost)
        .set("dup", seen.dup)
        .set("torn", seen.torn)
        .set("unacked_seen", stored.saturating_sub(appended - lost + seen.dup))
        .opt("call_p50_ms", quantile(&mut call, 0.5).map(ms))
        .opt("call_p99_ms", quantile(&mut call, 0.99).map(ms));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_starves_on_few_rounds_or_a_long_gap() {
        let s = 1_000_000_000;
        assert_eq!(starved(50, &[10, 9, 12], &[s / 10, s / 5, s / 10]), "no");
        assert_eq!(starved(50, &[10, 0, 12], &[s / 10, 10 * s, s / 10]), "host 2 of 3 (0 rounds, longest gap 10.0 s)");
        // enough rounds, but one wait of 3 s (> max(2 s, 20 × 50 ms))
        assert_eq!(starved(50, &[10, 9, 12], &[s / 10, 3 * s, s / 10]), "host 2 of 3 (9 rounds, longest gap 3.0 s)");
        assert_eq!(
            starved(50, &[0, 1, 12, 12], &[10 * s, 9 * s, s, s]),
            "hosts 1, 2 of 4 (0–1 rounds, longest gap 10.0 s)"
        );
    }
}
