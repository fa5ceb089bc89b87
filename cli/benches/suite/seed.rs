//! The seed's design, the baseline tributary replaces: N real processes (this binary
//! re-executed in child mode) each writing a line at a time under `flock` to one
//! O_APPEND file, with `fdatasync` when durable; and the non-durable baseline section.

use super::*;

/// The seed's design with `procs` real processes (this binary re-executed): per line
/// `flock(LOCK_EX)`, one `write` to an O_APPEND file, `fdatasync` if `durable`, unlock.
pub(crate) fn seed_procs(file: &Path, procs: usize, secs: f64, durable: bool) -> R<Run> {
    let _ = fs::remove_file(file);
    let exe = std::env::current_exe().ctx("current_exe")?;
    let mut kids = Vec::new();
    for _ in 0..procs {
        let child = Command::new(&exe)
            .arg(CHILD_FLAG)
            .arg("seed")
            .arg(file)
            .arg(secs.to_string())
            .arg(if durable { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .ctx("spawning a seed writer process")?;
        kids.push(child);
    }
    let mut outs = Vec::new();
    for k in &mut kids {
        let mut out = BufReader::new(k.stdout.take().expect("piped"));
        let mut s = String::new();
        out.read_line(&mut s).ctx("reading a child's ready line")?;
        if s.trim() != "ready" {
            return Err(format!("seed child said `{}` instead of ready", s.trim()));
        }
        outs.push(out);
    }
    for k in &mut kids {
        k.stdin.as_mut().expect("piped").write_all(b"go\n").ctx("starting a child")?;
    }
    let mut total = Run::default();
    for (k, mut out) in kids.iter_mut().zip(outs) {
        let mut text = String::new();
        out.read_to_string(&mut text).ctx("reading a child's result")?;
        let status = k.wait().ctx("waiting for a child")?;
        if !status.success() {
            return Err(format!("seed child failed: {status}"));
        }
        let mut it = text.lines();
        let done: Vec<u64> = it
            .next()
            .and_then(|l| l.strip_prefix("done "))
            .map(|l| l.split(' ').filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default();
        if done.len() != 2 {
            return Err(format!("bad seed child output: {text:?}"));
        }
        total.lines += done[0];
        total.secs = total.secs.max(done[1] as f64 / 1e9);
        if let Some(l) = it.next().and_then(|l| l.strip_prefix("lat")) {
            total.lat_us.extend(l.split(' ').filter_map(|x| x.parse::<u32>().ok()));
        }
    }
    let want = total.lines * (LINE_LEN as u64 + 1);
    let got = file_len(file);
    let _ = fs::remove_file(file);
    if got != want {
        return Err(format!("seed design wrote {got} bytes, expected {want}"));
    }
    Ok(total)
}

pub(crate) fn seed_child(file: &Path, secs: f64, durable: bool) -> R<()> {
    let f = OpenOptions::new().append(true).create(true).open(file).ctx("opening the seed file")?;
    let fd = f.as_raw_fd();
    let lines: Vec<Vec<u8>> = make_lines(&format!("seed{:07}", std::process::id()), 256)
        .into_iter()
        .map(|mut l| {
            l.push(b'\n');
            l
        })
        .collect();
    let mut stdout = std::io::stdout();
    stdout.write_all(b"ready\n").and_then(|_| stdout.flush()).ctx("writing ready")?;
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).ctx("waiting for go")?;
    let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut n = 0usize;
    while Instant::now() < deadline {
        let t = Instant::now();
        let line = &lines[n % lines.len()];
        // SAFETY: `fd` is an open descriptor owned by `f`, which outlives these calls;
        // `line` is a valid buffer of `line.len()` bytes.
        unsafe {
            if libc::flock(fd, libc::LOCK_EX) != 0 {
                return Err(format!("flock: {}", std::io::Error::last_os_error()));
            }
            let w = libc::write(fd, line.as_ptr().cast(), line.len());
            if w != line.len() as isize {
                return Err(format!("write: {}", std::io::Error::last_os_error()));
            }
            if durable && libc::fdatasync(fd) != 0 {
                return Err(format!("fdatasync: {}", std::io::Error::last_os_error()));
            }
            libc::flock(fd, libc::LOCK_UN);
        }
        if durable {
            lat.push(t.elapsed().as_micros() as u32);
        }
        n += 1;
    }
    let elapsed = start.elapsed().as_nanos();
    let mut out = format!("done {n} {elapsed}\nlat");
    for l in &lat {
        let _ = write!(out, " {l}");
    }
    out.push('\n');
    stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()).ctx("writing the result")
}

/// The seed's non-durable design, 1 and 4 processes (baselines only).
pub(crate) fn seed_non_durable(cfg: &Cfg, rep: &mut Report) -> R<()> {
    section("baseline: the seed's non-durable design (no fsync), 1 and 4 processes");
    let d = cfg.fresh_dir("seed")?;
    for n in [1usize, 4] {
        let mut runs = Vec::new();
        for r in 0..cfg.reps.min(3) {
            let run = seed_procs(&d.join("seed.log"), n, cfg.secs, false)?;
            println!("  rep {r} processes {n}: {}", fmt_rate(run.rate(), "lines"));
            runs.push(run);
        }
        let f = Fig::of(&runs);
        rep.baseline(
            &format!("seed design, NOT durable, {n} process{}", if n == 1 { "" } else { "es" }),
            fig_rate(&f, "lines"),
            "–".into(),
            "per line: flock, write to O_APPEND file, unlock (no fsync)",
        );
    }
    let _ = fs::remove_dir_all(d);
    Ok(())
}
