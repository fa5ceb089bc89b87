//! The report: each target as a ratio against its baseline with its goal, the
//! baselines, notes and the writers figures ([`Report`]), rendered into BENCHMARKS.md
//! with the machine's description, the load and the writers plot
//! (`scripts/plot-bench.py`).

use super::*;

pub(crate) enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    pub(crate) fn check(&self, v: f64) -> Option<bool> {
        if !v.is_finite() {
            return None;
        }
        Some(match self {
            Goal::AtLeast(g) => v >= *g,
            Goal::AtMost(g) => v <= *g,
        })
    }
}

pub(crate) struct TargetRow {
    pub(crate) id: &'static str,
    pub(crate) what: String,
    pub(crate) tributary: String,
    pub(crate) baseline: String,
    pub(crate) ratio: String,
    pub(crate) target: String,
    pub(crate) pass: Option<bool>,
}

impl TargetRow {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn ratio(
        id: &'static str,
        what: &str,
        tributary: String,
        baseline: String,
        ratio: f64,
        goal: Goal,
        target: &str,
    ) -> TargetRow {
        TargetRow {
            id,
            what: what.into(),
            tributary,
            baseline,
            ratio: if ratio.is_finite() { format!("{ratio:.2}×") } else { "–".into() },
            target: target.into(),
            pass: goal.check(ratio),
        }
    }

    pub(crate) fn absolute(
        id: &'static str,
        what: &str,
        tributary: String,
        value: f64,
        goal: Goal,
        target: &str,
    ) -> TargetRow {
        TargetRow {
            id,
            what: what.into(),
            tributary,
            baseline: "(absolute)".into(),
            ratio: "–".into(),
            target: target.into(),
            pass: goal.check(value),
        }
    }

    pub(crate) fn error(id: &'static str, what: &str, err: &str) -> TargetRow {
        TargetRow {
            id,
            what: what.into(),
            tributary: format!("error: {}", err.replace('|', "/")),
            baseline: "–".into(),
            ratio: "–".into(),
            target: "–".into(),
            pass: None,
        }
    }
}

#[derive(Default)]
pub(crate) struct Report {
    pub(crate) targets: Vec<TargetRow>,
    /// (baseline, figure, p99 wait, how)
    pub(crate) baselines: Vec<[String; 4]>,
    /// writers, tributary fig, seed fig
    pub(crate) writers: Vec<(usize, Fig, Fig, f64)>,
    pub(crate) notes: Vec<String>,
    /// p99 of one durable single-row SQLite commit in this run (the disk's fsync floor).
    pub(crate) commit_p99_ms: Option<f64>,
}

impl Report {
    pub(crate) fn baseline(&mut self, name: &str, figure: String, p99: String, how: &str) {
        self.baselines.push([name.into(), figure, p99, how.into()]);
    }

    /// Say so when the ratio of the medians tells another story than the paired ratio.
    pub(crate) fn ratio_check(&mut self, id: &str, paired: f64, of_medians: f64) {
        let far = paired.is_finite() && of_medians.is_finite() && (of_medians / paired - 1.0).abs() > 0.25;
        if far {
            self.note(format!(
                "target {id}: the ratio of the two medians is {of_medians:.2}× while the median of the paired \
                 per-repetition ratios (the Ratio column) is {paired:.2}× — the machine's speed changed between \
                 repetitions; the per-repetition figures are in the bench's output"
            ));
        }
    }

    pub(crate) fn note(&mut self, s: String) {
        println!("  note: {s}");
        self.notes.push(s);
    }
}

pub(crate) fn md_table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            s += &format!(" {c}{} |", " ".repeat(pad));
        }
        s + "\n"
    };
    let mut out = line(&head.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    out += &line(&w.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>());
    for r in rows {
        out += &line(r);
    }
    out
}

pub(crate) fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

pub(crate) fn machine(cfg: &Cfg) -> Vec<(String, String)> {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "?".into());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string())))
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let dir = cfg.dir.to_string_lossy().to_string();
    let fs_type =
        sh("findmnt", &["-n", "-o", "FSTYPE,SOURCE", "-T", &dir]).split_whitespace().collect::<Vec<_>>().join(" on ");
    let root = cfg.root.to_string_lossy().to_string();
    let head = sh("git", &["-C", &root, "rev-parse", "--short", "HEAD"]);
    let dirty = sh("git", &["-C", &root, "status", "--porcelain", "--", "src", "Cargo.toml"]);
    vec![
        ("CPUs (`nproc`)".into(), sh("nproc", &[])),
        ("CPU model".into(), cpu),
        ("Memory".into(), mem),
        ("Bench folder filesystem".into(), format!("{fs_type} (`{}`)", rel(cfg, &cfg.dir))),
        ("Kernel".into(), sh("uname", &["-sr"])),
        (
            "tributary source".into(),
            format!(
                "git {head}{}",
                if dirty.is_empty() || dirty == "?" { "" } else { " + uncommitted changes in src/" }
            ),
        ),
    ]
}

pub(crate) fn rel(cfg: &Cfg, p: &Path) -> String {
    p.strip_prefix(&cfg.root).unwrap_or(p).to_string_lossy().to_string()
}

pub(crate) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg").map(|s| s.split(' ').take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

pub(crate) fn utc_now() -> String {
    let out = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    if out != "?" {
        return out;
    }
    let s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{s} (Unix time)")
}

/// Run scripts/plot-bench.py; install matplotlib with pip if it is missing.
pub(crate) fn plot(cfg: &Cfg) -> R<()> {
    let has_mpl = || {
        Command::new("python3")
            .args(["-c", "import matplotlib"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_mpl() {
        println!("  matplotlib missing: python3 -m pip install --quiet matplotlib");
        let _ = Command::new("python3").args(["-m", "pip", "install", "--quiet", "matplotlib"]).status();
        if !has_mpl() {
            return Err("matplotlib is not installed and `python3 -m pip install matplotlib` failed".into());
        }
    }
    if let Some(p) = cfg.png.parent() {
        fs::create_dir_all(p).ctx("creating the plot folder")?;
    }
    let st = Command::new("python3")
        .arg(cfg.root.join("scripts/plot-bench.py"))
        .arg(&cfg.csv)
        .arg(&cfg.png)
        .status()
        .ctx("running scripts/plot-bench.py")?;
    if !st.success() {
        return Err(format!("scripts/plot-bench.py failed: {st}"));
    }
    Ok(())
}

pub(crate) fn render(cfg: &Cfg, rep: &Report, started: &str, secs: f64, load: (&str, &str), plot: &R<()>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `{}` on {started} in {:.1} min — a generated file: rerun the command to refresh it, do not \
         edit. What each row means and how it is measured: [docs/benchmarks.md](docs/benchmarks.md).{}\n",
        cfg.command,
        secs / 60.0,
        if cfg.quick { " QUICK smoke run: short runs, small sizes, 2 repetitions — not representative." } else { "" }
    );
    let _ = writeln!(md, "## Machine\n");
    for (k, v) in machine(cfg) {
        let _ = writeln!(md, "- {k}: {v}");
    }
    let _ = writeln!(
        md,
        "- Load average (1, 5, 15 min) at start: {} — at end: {} (other builds and tests share this machine, so \
         every figure is a ratio against a baseline measured in the same run, interleaved).",
        load.0, load.1
    );
    let _ = writeln!(
        md,
        "- Each timed run lasts {:.1} s; figures are medians of {} interleaved repetitions ({} for target 1) \
         (p99: median of the per-repetition p99s). Lines are {LINE_LEN} bytes + `\\n`.\n",
        cfg.secs, cfg.reps, cfg.reps_t1
    );
    let _ = writeln!(md, "## Targets (issue 6)\n");
    let rows: Vec<Vec<String>> = rep
        .targets
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.what.clone(),
                t.tributary.clone(),
                t.baseline.clone(),
                t.ratio.clone(),
                t.target.clone(),
                match t.pass {
                    Some(true) => "PASS".into(),
                    Some(false) => "FAIL".into(),
                    None => "n/a".into(),
                },
            ]
        })
        .collect();
    md += &md_table(&["#", "Measure", "tributary", "Baseline (same run)", "Ratio", "Target", "Result"], &rows);
    let pass = rep.targets.iter().filter(|t| t.pass == Some(true)).count();
    let _ = writeln!(md, "\n{pass} of {} targets pass.\n", rep.targets.len());
    let _ = writeln!(md, "## Baselines\n");
    let rows: Vec<Vec<String>> = rep.baselines.iter().map(|b| b.to_vec()).collect();
    md += &md_table(&["Baseline", "Median (slowest–fastest repetition)", "p99 wait", "How"], &rows);
    if !rep.writers.is_empty() {
        let _ = writeln!(md, "\n## Throughput vs writers (durable single-line appends)\n");
        let rows: Vec<Vec<String>> = rep
            .writers
            .iter()
            .map(|(n, t, s, ratio)| {
                vec![
                    n.to_string(),
                    fmt_rate(t.rate, "lines"),
                    fmt_ms(t.p99_ms),
                    fmt_rate(s.rate, "lines"),
                    fmt_ms(s.p99_ms),
                    format!("{ratio:.2}×"),
                ]
            })
            .collect();
        md += &md_table(
            &[
                "Writers",
                "tributary: threads on one handle",
                "p99 wait",
                "seed durable: processes",
                "p99 wait",
                "Ratio",
            ],
            &rows,
        );
        match plot {
            Ok(()) => {
                let png = rel(cfg, &cfg.png);
                let _ = writeln!(md, "\n![throughput vs writers]({png})");
            }
            Err(e) => {
                let _ = writeln!(md, "\nPlot skipped: {e}.");
            }
        }
        let _ = writeln!(md, "\nData: `{}`.", rel(cfg, &cfg.csv));
    }
    if !rep.notes.is_empty() {
        let _ = writeln!(md, "\n## Notes\n");
        for n in &rep.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}
