//! Target 5, end to end: paced writer threads on journals that a `tributary compact`
//! daemon drains; the latency from an append's return to its line committed in the
//! target.

use super::*;

pub(crate) fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// Target 5: append → committed-in-target latency with a `tributary compact` daemon.
pub(crate) fn t5(cfg: &Cfg, rep: &mut Report) -> R<()> {
    section("target 5: end to end, `tributary compact --interval 100` + paced writers at 10k lines/s");
    let d = cfg.fresh_dir("t5")?;
    let spool = d.join("spool");
    fs::create_dir_all(&spool).ctx("creating the spool")?;
    let target = d.join("out.log");
    let (nj, tpj) = (cfg.e2e_journals, cfg.e2e_threads_per_journal);
    let w = nj * tpj;
    let per_writer = (cfg.e2e_rate * cfg.e2e_secs / w as f64).ceil() as usize;
    let journals: Vec<Arc<Journal>> = (0..nj)
        .map(|k| Journal::open(spool.join(format!("w{k}.journal")), JournalOptions::default()).map(Arc::new))
        .collect::<Result<_, _>>()
        .ctx("Journal::open")?;
    // Writer thread k appends to journal k % nj (tpj threads share each handle).
    let journals: Vec<Arc<Journal>> = (0..w).map(|k| Arc::clone(&journals[k % nj])).collect();
    init_target(&target)?;
    let log = d.join("compact.log");
    let log_file = File::create(&log).ctx("log")?;
    let daemon = Command::new(TRIBUTARY_EXE)
        .args(["compact", "--verbose", "--interval", "100", "--target"])
        .arg(&target)
        .arg("--spool")
        .arg(&spool)
        .stdout(log_file.try_clone().ctx("log")?)
        .stderr(log_file)
        .spawn()
        .ctx("spawning tributary compact")?;
    let pid = daemon.id() as i32;
    let result = e2e_measure(cfg, journals, &target, per_writer);
    // SAFETY: `pid` is our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut daemon = daemon;
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = daemon.kill();
            let _ = daemon.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let m = match result {
        Ok(m) => m,
        Err(e) => {
            let l = fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("{e}; compact log: {}", l.trim()));
        }
    };
    println!(
        "  sent {} lines at {:.0} lines/s; committed-latency p50 {} p99 {} max {}; append p99 {}; missing {}",
        m.sent,
        m.achieved_rate,
        fmt_ms(m.p50_ms),
        fmt_ms(m.p99_ms),
        fmt_ms(m.max_ms),
        fmt_ms(m.append_p99_ms),
        m.missing
    );
    println!(
        "  the reader saw {} commits; gap between commits p50 {} max {}",
        m.commits,
        fmt_ms(m.gap_p50_ms),
        fmt_ms(m.gap_max_ms)
    );
    let what = format!(
        "append return → committed in target, p99 ({nj} journals × {tpj} writer threads, {:.1}k lines/s sent, {:.0}s)",
        m.achieved_rate / 1e3,
        cfg.e2e_secs
    );
    if m.missing > 0 {
        rep.targets.push(TargetRow::error("5", &what, &format!("{} lines never became visible", m.missing)));
    } else {
        rep.targets.push(TargetRow::absolute(
            "5",
            &what,
            format!("{} (p50 {}, max {})", fmt_ms(m.p99_ms), fmt_ms(m.p50_ms), fmt_ms(m.max_ms)),
            m.p99_ms,
            Goal::AtMost(150.0),
            "≤ 150 ms",
        ));
    }
    if m.achieved_rate < cfg.e2e_rate * 0.95 {
        rep.note(format!(
            "end to end: writers fell behind the 10k lines/s schedule ({:.0} lines/s achieved)",
            m.achieved_rate
        ));
    }
    rep.note(format!(
        "end to end: durable append wait p99 {} while the daemon drained; the reader saw {} commits, gap between \
         commits p50 {} max {}",
        fmt_ms(m.append_p99_ms),
        m.commits,
        fmt_ms(m.gap_p50_ms),
        fmt_ms(m.gap_max_ms)
    ));
    if !env_flag("TRIB_BENCH_KEEP") {
        let _ = fs::remove_dir_all(d);
    }
    Ok(())
}

pub(crate) struct E2e {
    sent: u64,
    achieved_rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    append_p99_ms: f64,
    missing: usize,
    /// Commits the reader saw, and the gaps between them.
    commits: usize,
    gap_p50_ms: f64,
    gap_max_ms: f64,
}

pub(crate) fn e2e_measure(cfg: &Cfg, journals: Vec<Arc<Journal>>, target: &Path, per_writer: usize) -> R<E2e> {
    let w = journals.len();
    let base = Instant::now();
    let mk = || -> Arc<Vec<Vec<AtomicU64>>> {
        Arc::new((0..w).map(|_| (0..per_writer).map(|_| AtomicU64::new(0)).collect()).collect())
    };
    let (acks, seen, sent_at) = (mk(), mk(), mk());
    let stop = Arc::new(AtomicBool::new(false));
    let total = (w * per_writer) as u64;

    // The reader: polls the target's committed part, stamps when each line shows up.
    let reader = {
        let (seen, stop, target) = (Arc::clone(&seen), Arc::clone(&stop), target.to_path_buf());
        std::thread::spawn(move || -> R<(u64, Vec<u64>)> {
            let mut r = loop {
                match Reader::open(&target, 0) {
                    Ok(r) => break r,
                    Err(_) if !stop.load(Ordering::Relaxed) => std::thread::sleep(Duration::from_millis(5)),
                    Err(e) => return Err(format!("Reader::open: {e}")),
                }
            };
            let mut count = 0u64;
            let mut last_len = 0u64;
            let mut commits = Vec::new();
            while count < total {
                if r.committed_len() != last_len {
                    last_len = r.committed_len();
                    commits.push(now_ns(base));
                }
                match r.next_line().ctx("Reader::next_line")? {
                    Some(line) => {
                        let now = now_ns(base);
                        let s = String::from_utf8_lossy(&line);
                        let mut it = s.split(' ').skip(1);
                        let (Some(wk), Some(i)) = (it.next(), it.next()) else { continue };
                        let (Ok(wk), Ok(i)) = (wk.parse::<usize>(), i.parse::<usize>()) else { continue };
                        if wk < seen.len() && i < seen[wk].len() {
                            seen[wk][i].store(now, Ordering::Relaxed);
                            count += 1;
                        }
                    }
                    None => {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            Ok((count, commits))
        })
    };

    // Paced writers: line i of writer k is due at t0 + (i*w + k) / rate.
    let t0 = Instant::now() + Duration::from_millis(200);
    let writers: Vec<_> = journals
        .into_iter()
        .enumerate()
        .map(|(k, j)| {
            let (acks, sent_at) = (Arc::clone(&acks), Arc::clone(&sent_at));
            let rate = cfg.e2e_rate;
            std::thread::spawn(move || -> R<()> {
                for i in 0..per_writer {
                    let due = t0 + Duration::from_secs_f64((i * w + k) as f64 / rate);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let sent = now_ns(base);
                    let mut line = format!("e2e {k} {i} {sent:015} ").into_bytes();
                    line.resize(LINE_LEN, b'.');
                    j.append(&line).ctx("Journal::append")?;
                    acks[k][i].store(now_ns(base), Ordering::Relaxed);
                    sent_at[k][i].store(sent, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    let mut werr = None;
    for h in writers {
        if let Err(e) = h.join().map_err(|_| "a writer panicked".to_string()).and_then(|r| r) {
            werr = Some(e);
        }
    }
    let send_secs = t0.elapsed().as_secs_f64();
    // Give the daemon time to commit the last lines, then stop the reader.
    let wait_until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < wait_until && !reader.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let (_, commits) = reader.join().map_err(|_| "the reader panicked".to_string())??;
    if let Some(e) = werr {
        return Err(e);
    }
    let warm_ns = (cfg.e2e_warmup_secs * 1e9) as u64 + t0.duration_since(base).as_nanos() as u64;
    let (mut lat, mut app) = (Vec::new(), Vec::new());
    let mut missing = 0;
    for k in 0..w {
        for i in 0..per_writer {
            let sent = sent_at[k][i].load(Ordering::Relaxed);
            let (ack, s) = (acks[k][i].load(Ordering::Relaxed), seen[k][i].load(Ordering::Relaxed));
            if s == 0 {
                missing += 1;
                continue;
            }
            if sent < warm_ns {
                continue;
            }
            lat.push((s.saturating_sub(ack) / 1000).min(u32::MAX as u64) as u32);
            app.push(((ack - sent) / 1000).min(u32::MAX as u64) as u32);
        }
    }
    let gaps: Vec<u32> = commits.windows(2).map(|w| ((w[1] - w[0]) / 1000) as u32).collect();
    Ok(E2e {
        sent: total,
        achieved_rate: total as f64 / send_secs,
        p50_ms: quantile_us(&lat, 0.5) / 1000.0,
        p99_ms: quantile_us(&lat, 0.99) / 1000.0,
        max_ms: quantile_us(&lat, 1.0) / 1000.0,
        append_p99_ms: quantile_us(&app, 0.99) / 1000.0,
        missing,
        commits: commits.len(),
        gap_p50_ms: quantile_us(&gaps, 0.5) / 1000.0,
        gap_max_ms: quantile_us(&gaps, 1.0) / 1000.0,
    })
}
