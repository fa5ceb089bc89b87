//! Drains: a spool filled once and copied for every repetition, the whole-process
//! `tributary drain` timed with its peak RSS (through the `rss` child wrapper), and
//! `cat` + `sync` of the same bytes; target 4 (drain vs cat + sync, and the peak RSS
//! on a large backlog).

use super::*;

/// Fill `journals` journals in `spool` (one thread each, durability `normal`, batches of
/// 10k lines) with `payload` bytes in total. Returns the wall time.
pub(crate) fn fill_spool(spool: &Path, journals: usize, payload: u64) -> R<Duration> {
    let per_journal_lines = payload / LINE_LEN as u64 / journals as u64;
    let start = Instant::now();
    let handles: Vec<_> = (0..journals)
        .map(|k| {
            let path = spool.join(format!("w{k:02}.journal"));
            std::thread::spawn(move || -> R<()> {
                let opts = JournalOptions::default().durability(Durability::Normal);
                let j = Journal::open(&path, opts).ctx("Journal::open (fill)")?;
                let batch = make_lines(&format!("fill{k:02}"), 10_000);
                let mut done = 0u64;
                while done < per_journal_lines {
                    let n = (per_journal_lines - done).min(batch.len() as u64) as usize;
                    j.append_batch(&batch[..n]).ctx("append_batch (fill)")?;
                    done += n as u64;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "a fill thread panicked".to_string())??;
    }
    Ok(start.elapsed())
}

/// Child mode `rss POLL LOG CMD ARGS...`: run CMD (stderr to LOG), time it, and report
/// its peak RSS: VmHWM from /proc/<pid>/status (sampled every 2 ms with POLL=1) and
/// wait4's ru_maxrss. This small, freshly exec'd wrapper spawns CMD, not the big bench
/// process: a vfork'd child's ru_maxrss starts at its parent's high-water mark.
pub(crate) fn rss_child(poll: bool, log: &Path, cmd: &[String]) -> R<()> {
    let err = File::create(log).ctx("creating a log file")?;
    let self_hwm = vmhwm_kib(std::process::id()).unwrap_or(0);
    let start = Instant::now();
    let child = Command::new(&cmd[0]).args(&cmd[1..]).stdout(Stdio::null()).stderr(err).spawn().ctx("spawning")?;
    let pid = child.id();
    let mut hwm = 0u64;
    // SAFETY: all-zero is a valid `rusage`.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0i32;
    loop {
        let flags = if poll { libc::WNOHANG } else { 0 };
        // SAFETY: `pid` is our own child, not yet reaped (std's Child is never waited
        // on); `status` and `ru` are valid, writable out-parameters.
        let r = unsafe { libc::wait4(pid as i32, &mut status, flags, &mut ru) };
        if r == pid as i32 {
            break;
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("wait4: {e}"));
        }
        if let Some(v) = vmhwm_kib(pid) {
            hwm = hwm.max(v);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let ns = start.elapsed().as_nanos();
    drop(child);
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    println!("rss {ns} {hwm} {} {self_hwm} {code}", ru.ru_maxrss);
    Ok(())
}

/// Result of one whole-process run.
pub(crate) struct ProcRun {
    secs: f64,
    /// Peak RSS: max of the sampled VmHWM and ru_maxrss, KiB.
    peak_kib: u64,
    vmhwm_kib: u64,
    maxrss_kib: u64,
    /// The wrapper's own high-water mark (a floor under ru_maxrss).
    wrapper_kib: u64,
}

pub(crate) fn vmhwm_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Run `cmd` to completion through the `rss` wrapper child: wall time and peak RSS.
pub(crate) fn run_timed(cmd: &[&std::ffi::OsStr], poll_rss: bool, log: &Path) -> R<ProcRun> {
    let exe = std::env::current_exe().ctx("current_exe")?;
    let out = Command::new(exe)
        .arg(CHILD_FLAG)
        .arg("rss")
        .arg(if poll_rss { "1" } else { "0" })
        .arg(log)
        .args(cmd)
        .stderr(Stdio::inherit())
        .output()
        .ctx("running the rss wrapper")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .trim()
        .strip_prefix("rss ")
        .map(|l| l.split(' ').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    if !out.status.success() || v.len() != 5 {
        return Err(format!("rss wrapper failed ({}): {}", out.status, text.trim()));
    }
    if v[4] != 0 {
        let msg = fs::read_to_string(log).unwrap_or_default();
        return Err(format!("{cmd:?} exited with {}: {}", v[4], msg.trim()));
    }
    Ok(ProcRun {
        secs: v[0] as f64 / 1e9,
        peak_kib: v[1].max(v[2]),
        vmhwm_kib: v[1],
        maxrss_kib: v[2],
        wrapper_kib: v[3],
    })
}

/// Create a new, empty target (untimed), as a user does once before the first drain:
/// drains never create one.
pub(crate) fn init_target(target: &Path) -> R<()> {
    Compactor::new(target, CompactorOptions::default()).and_then(|c| c.init()).map(drop).ctx("initialising the target")
}

pub(crate) fn cli_drain(target: &Path, spool: &Path, poll_rss: bool, log: &Path) -> R<ProcRun> {
    sync_all_filesystems();
    let cmd = [TRIBUTARY_EXE.as_ref(), "drain".as_ref(), "--target".as_ref(), target.as_os_str(), "--spool".as_ref()];
    run_timed(&[&cmd[..], &[spool.as_os_str()]].concat(), poll_rss, log)
}

/// `cat SRC > DST` (a real `cat` process) then `sync DST` (fsync), timed together.
pub(crate) fn cat_sync(src: &Path, dst: &Path, log: &Path) -> R<f64> {
    let _ = fs::remove_file(dst);
    sync_all_filesystems();
    let start = Instant::now();
    let out = File::create(dst).ctx("creating the cat destination")?;
    let mut cat = Command::new("cat");
    cat.arg(src).stdout(out).stderr(Stdio::inherit());
    let st = cat.status().ctx("running cat")?;
    if !st.success() {
        return Err(format!("cat failed: {st}"));
    }
    let st = Command::new("sync").arg(dst).stderr(File::create(log).ctx("log")?).status().ctx("running sync")?;
    if !st.success() {
        return Err(format!("sync {} failed: {st}", dst.display()));
    }
    Ok(start.elapsed().as_secs_f64())
}

pub(crate) fn copy_spool(from: &Path, to: &Path) -> R<()> {
    fs::create_dir_all(to).ctx("creating a spool")?;
    for e in fs::read_dir(from).ctx("listing the template spool")? {
        let p = e.ctx("listing")?.path();
        if let Some(name) = p.file_name() {
            fs::copy(&p, to.join(name)).ctx("copying a journal")?;
        }
    }
    Ok(())
}

pub(crate) fn remove_target(target: &Path) {
    let _ = fs::remove_file(target);
    let side = PathBuf::from(format!("{}.tributary", target.display()));
    let _ = fs::remove_dir_all(side);
}

pub(crate) fn free_bytes(dir: &Path) -> u64 {
    let c = std::ffi::CString::new(dir.as_os_str().to_string_lossy().as_bytes()).expect("no NUL");
    // SAFETY: all-zero is a valid `statvfs`; `c` is NUL-terminated and outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `st` is a valid, writable out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    st.f_bavail as u64 * st.f_frsize as u64
}

/// Target 4: `tributary drain` (whole process) vs `cat` + `sync` of the same bytes, and
/// the compactor's peak RSS while draining a large backlog.
pub(crate) fn t4(cfg: &Cfg, rep: &mut Report) -> R<()> {
    section("target 4: drain (tributary drain CLI) vs cat + sync of the same bytes; peak RSS on a big backlog");
    let d = cfg.fresh_dir("t4")?;
    let tmpl = d.join("template");
    fs::create_dir_all(&tmpl).ctx("creating the template spool")?;
    let fill = fill_spool(&tmpl, cfg.drain_journals, cfg.drain_bytes)?.as_secs_f64();
    let fill_rate = cfg.drain_bytes as f64 / fill;
    println!("  template spool: {} in {fill:.1}s ({})", fmt_size(cfg.drain_bytes), fmt_mbs(fill_rate));
    let cat_src = d.join("cat-src.log");
    let log = d.join("child.log");
    let (mut drain_s, mut cat_s) = (Vec::new(), Vec::new());
    let mut bytes = 0u64;
    let mut drain_rss = 0u64;
    for r in 0..cfg.reps {
        let spool = d.join(format!("spool{r}"));
        let target = d.join(format!("out{r}.log"));
        copy_spool(&tmpl, &spool)?;
        init_target(&target)?;
        let mut one_drain = || -> R<f64> {
            let p = cli_drain(&target, &spool, false, &log)?;
            drain_rss = drain_rss.max(p.maxrss_kib);
            Ok(p.secs)
        };
        let cat_first = r % 2 == 1 && cat_src.exists();
        if cat_first {
            cat_s.push(cat_sync(&cat_src, &d.join("cat-dst.log"), &log)?);
            drain_s.push(one_drain()?);
        } else {
            drain_s.push(one_drain()?);
        }
        let len = file_len(&target);
        if bytes == 0 {
            bytes = len;
        } else if len != bytes {
            return Err(format!("drain rep {r} wrote {len} bytes, rep 0 wrote {bytes}"));
        }
        if !cat_src.exists() {
            fs::rename(&target, &cat_src).ctx("keeping the cat source")?;
        }
        if !cat_first {
            cat_s.push(cat_sync(&cat_src, &d.join("cat-dst.log"), &log)?);
        }
        println!(
            "  rep {r}: drain {:.3}s ({})  cat+sync {:.3}s ({})",
            drain_s[r],
            fmt_mbs(bytes as f64 / drain_s[r]),
            cat_s[r],
            fmt_mbs(bytes as f64 / cat_s[r])
        );
        remove_target(&target);
        let _ = fs::remove_dir_all(&spool);
        let _ = fs::remove_file(d.join("cat-dst.log"));
    }
    let expect = cfg.drain_bytes / LINE_LEN as u64 / cfg.drain_journals as u64
        * cfg.drain_journals as u64
        * (LINE_LEN as u64 + 1);
    if bytes != expect {
        return Err(format!("the drained target has {bytes} bytes, expected {expect}"));
    }
    let (dm, cm) = (median(&drain_s), median(&cat_s));
    let (drain_bps, cat_bps) = (bytes as f64 / dm, bytes as f64 / cm);
    rep.ratio_check("4a", paired_ratio(&cat_s, &drain_s), drain_bps / cat_bps);
    rep.baseline(
        &format!("`cat` of {} into a new file + `sync FILE`", fmt_size(bytes)),
        format!(
            "{} ({:.0}–{:.0})",
            fmt_mbs(cat_bps),
            bytes as f64 / cat_s.iter().fold(0.0, |a: f64, b| a.max(*b)) / 1e6,
            bytes as f64 / cat_s.iter().fold(f64::INFINITY, |a: f64, b| a.min(*b)) / 1e6
        ),
        "–".into(),
        "real cat and sync processes, same filesystem, page cache warm",
    );
    rep.targets.push(TargetRow::ratio(
        "4a",
        &format!("`tributary drain` of a {}-journal spool, whole process", cfg.drain_journals),
        format!("{} ({} in {dm:.2}s)", fmt_mbs(drain_bps), fmt_size(bytes)),
        format!("cat + sync: {}", fmt_mbs(cat_bps)),
        paired_ratio(&cat_s, &drain_s),
        Goal::AtLeast(0.8),
        "≥ 0.8×",
    ));
    let _ = fs::remove_dir_all(&tmpl);
    let _ = fs::remove_file(&cat_src);

    // The RSS figure: the largest backlog (up to 2 GiB) that fits the time budget.
    let drain_rate = cfg.drain_bytes as f64 / dm;
    let estimate = |b: u64| b as f64 / fill_rate + b as f64 / drain_rate * 1.3;
    let free = free_bytes(&d);
    let mut size = cfg.backlog_max;
    while size > cfg.drain_bytes && (estimate(size) > cfg.backlog_budget_secs || size.saturating_mul(4) > free) {
        size /= 2;
    }
    if size < cfg.backlog_max {
        rep.note(format!(
            "peak RSS measured on a {} backlog, not {}: {} would take about {:.0}s to fill and drain at this \
             run's rates (budget {:.0}s){}",
            fmt_size(size),
            fmt_size(cfg.backlog_max),
            fmt_size(cfg.backlog_max),
            estimate(cfg.backlog_max),
            cfg.backlog_budget_secs,
            if cfg.backlog_max.saturating_mul(4) > free { "; or the disk is too full" } else { "" }
        ));
    }
    let big = d.join("big");
    fs::create_dir_all(&big).ctx("creating the big spool")?;
    println!("  filling a {} backlog (estimate {:.0}s)…", fmt_size(size), estimate(size));
    let fill = fill_spool(&big, cfg.drain_journals, size)?.as_secs_f64();
    let journal_disk: u64 =
        fs::read_dir(&big).ctx("listing")?.filter_map(|e| e.ok()).map(|e| file_len(&e.path())).sum();
    let target = d.join("big.log");
    init_target(&target)?;
    let p = cli_drain(&target, &big, true, &log)?;
    let moved = file_len(&target);
    println!(
        "  backlog {} (journals {:.0} MB on disk) filled in {fill:.1}s; drained {} MB in {:.1}s ({}); \
         VmHWM {} KiB, ru_maxrss {} KiB (wrapper floor {} KiB)",
        fmt_size(size),
        journal_disk as f64 / 1e6,
        moved / 1_000_000,
        p.secs,
        fmt_mbs(moved as f64 / p.secs),
        p.vmhwm_kib,
        p.maxrss_kib,
        p.wrapper_kib
    );
    let peak_mib = p.peak_kib as f64 / 1024.0;
    rep.targets.push(TargetRow::absolute(
        "4b",
        &format!("compactor peak RSS draining a {} backlog (`tributary drain`)", fmt_size(size)),
        format!("{peak_mib:.1} MiB ({} in {:.1}s, {})", fmt_size(size), p.secs, fmt_mbs(moved as f64 / p.secs)),
        peak_mib,
        Goal::AtMost(64.0),
        "≤ 64 MiB",
    ));
    rep.note(format!(
        "peak RSS of `tributary drain` during the {}-rep throughput runs ({}): {:.1} MiB",
        cfg.reps,
        fmt_size(bytes),
        drain_rss as f64 / 1024.0
    ));
    remove_target(&target);
    let _ = fs::remove_dir_all(d);
    Ok(())
}
