//! The markdown report (docs/bench-multihost.md) from a results file: the machine and
//! the volume, per phase a table per N with every system of that phase side by side,
//! per-host details of the tributary runs, the round's fixed cost, and issue 15's
//! targets as ratios with PASS/FAIL: (a) and (b) judged on the latency phase, (c) on
//! the throughput phase. Pure: records in, text out (tested on canned records below).

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use crate::record::{read_all, Record};
use crate::{Ctx, R};

#[derive(Args)]
pub struct ReportArgs {
    /// The results file a `run` wrote.
    #[arg(long)]
    results: PathBuf,
    /// Where to write the markdown.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: ReportArgs) -> R<()> {
    let text = std::fs::read_to_string(&a.results).ctx(&format!("reading {}", a.results.display()))?;
    let md = render(&read_all(&text)?);
    std::fs::write(&a.out, md).ctx(&format!("writing {}", a.out.display()))?;
    println!("wrote {}", a.out.display());
    Ok(())
}

/// The tested tributary's label in the records (`--tributary`); the second binary's
/// is [`BASELINE`].
pub const TESTED: &str = "tributary";
pub const BASELINE: &str = "tributary-baseline";
/// The tested binary with its writers on background commit (an `Appender`): a line is
/// acknowledged when queued, durable within the window — the logging path (issue 18).
pub const BACKGROUND: &str = "tributary-background";

/// The `phase` of a `run` record. A default run measures every N twice: LATENCY, the
/// writers open loop at a fixed offered load per host, the same at every N (targets (a)
/// and (b): how long a line takes to commit, not how long it queues), and THROUGHPUT,
/// the writers at full speed (target (c)). ONLY is a run of one phase (`--rate`), and
/// records from before phases existed: every target is judged on it.
pub const LATENCY: &str = "latency";
pub const THROUGHPUT: &str = "throughput";
pub const ONLY: &str = "only";

fn phase_of(r: &Record) -> &str {
    r.get("phase").unwrap_or(ONLY)
}

fn phase_runs<'a>(records: &'a [Record], phase: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
    records.iter().filter(move |r| r.kind == "run" && phase_of(r) == phase)
}

/// The phase that judges the targets of `own` (LATENCY or THROUGHPUT): `own` when it
/// was run, else the single phase of a `--rate` run; `None` when neither was run.
fn judged_on(records: &[Record], own: &'static str) -> Option<&'static str> {
    [own, ONLY].into_iter().find(|p| phase_runs(records, p).next().is_some())
}

fn phase_name(phase: &str) -> &'static str {
    match phase {
        LATENCY => "latency phase",
        THROUGHPUT => "throughput phase",
        _ => "the run's one phase",
    }
}

fn describe_load(rate: f64) -> String {
    if rate > 0.0 {
        format!("open loop, offered {} lines/s per host", thousands(rate))
    } else {
        "full speed, closed loop".into()
    }
}

/// A phase's offered lines/s per host (0: full speed) and timed seconds, from its runs.
fn phase_setting(records: &[Record], phase: &str) -> (f64, Option<f64>) {
    let r = phase_runs(records, phase).next();
    (r.and_then(|r| r.num("rate")).unwrap_or(0.0), r.and_then(|r| r.num("seconds")))
}

/// How a verdict names the phase it was judged on and that phase's load.
fn judged_at(records: &[Record], phase: &str) -> String {
    let load = describe_load(phase_setting(records, phase).0);
    match phase {
        ONLY => format!(" ({load})"),
        p => format!(", {} ({load})", phase_name(p)),
    }
}

/// When an open-loop run's writers appended under 95 % of the load offered, the phase
/// measured a lighter load than it says: said next to its figures.
fn shortfall(r: &Record) -> Option<String> {
    let (rate, hosts) = (r.num("rate")?, r.num("hosts")?);
    let appended = r.num("appended_per_s")?;
    let offered = rate * hosts;
    (rate > 0.0 && appended < 0.95 * offered).then(|| {
        format!(
            "the writers appended only {} of the {} lines/s offered at N = {hosts}: a lighter load than set",
            thousands(appended),
            thousands(offered)
        )
    })
}

/// Issue 15's targets.
const P99_LIMIT_MS: f64 = 250.0;
const P99_GROWTH_LIMIT: f64 = 2.0;
const THROUGHPUT_RATIO: f64 = 100.0;

/// Every `meta` field, later records overriding earlier ones.
fn meta(records: &[Record]) -> Record {
    let mut m = Record::new("meta");
    for r in records.iter().filter(|r| r.kind == "meta") {
        for (k, v) in &r.fields {
            m.set(k, v);
        }
    }
    m
}

fn describe(system: &str) -> String {
    match system {
        TESTED => "tributary (`--tributary`)".into(),
        BASELINE => "tributary (`--tributary-baseline`)".into(),
        BACKGROUND => "tributary, background commit (`--tributary`, writers on an `Appender`)".into(),
        "seed" => "seed design (OFD lock, fstat, pwrite, fsync, unlock)".into(),
        "clh" => "concurrent-log-handler (no fsync)".into(),
        other => other.into(),
    }
}

fn or_dash(v: Option<&str>) -> String {
    v.map_or_else(|| "–".into(), |s| s.to_string())
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let (neg, digits) = s.strip_prefix('-').map_or((false, s.as_str()), |d| (true, d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if neg {
        format!("-{out}")
    } else {
        out
    }
}

fn count(r: &Record, key: &str) -> String {
    r.num(key).map_or_else(|| "–".into(), thousands)
}

fn find<'a>(records: &'a [Record], system: &str, hosts: usize, phase: &str) -> Option<&'a Record> {
    records.iter().rev().find(|r| {
        r.kind == "run"
            && r.get("system") == Some(system)
            && r.num("hosts") == Some(hosts as f64)
            && phase_of(r) == phase
    })
}

/// A run's error, or lines it lost, duplicated or tore, said plainly.
fn damage(r: &Record) -> Option<String> {
    let n = |k| r.num(k).unwrap_or(0.0) as u64;
    let (lost, dup, torn) = (n("lost"), n("dup"), n("torn"));
    let t = |n: u64| thousands(n as f64);
    (lost + dup + torn > 0).then(|| format!("{} lost, {} duplicated, {} torn", t(lost), t(dup), t(torn)))
}

fn run_table(o: &mut String, records: &[Record], systems: &[String], hosts: usize, threads: &str, phase: &str) {
    let systems: Vec<&String> = systems.iter().filter(|s| find(records, s, hosts, phase).is_some()).collect();
    if systems.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\n### N = {}, {} ({threads} writer threads each)\n",
        n_hosts(hosts),
        if phase == ONLY { "the run's one phase" } else { phase_name(phase) }
    );
    let _ = writeln!(
        o,
        "| System | committed lines/s | appended lines/s | append→committed p50 / p99 / max (ms) | call p50 / p99 (ms) \
         | lost / dup / torn | lock wait p50 / p99 (ms) | rounds/s (fleet) | a host starved |"
    );
    let _ = writeln!(o, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for s in systems.iter().copied() {
        let Some(r) = find(records, s, hosts, phase) else { continue };
        if let Some(e) = r.get("error") {
            let _ = writeln!(o, "| {} | error: {} | | | | | | | |", describe(s), e.replace('|', "/"));
            continue;
        }
        let tributary = s.starts_with("tributary");
        let latency = if tributary {
            format!("{} / {} / {}", or_dash(r.get("p50_ms")), or_dash(r.get("p99_ms")), or_dash(r.get("max_ms")))
        } else {
            "on return".into()
        };
        let lock = if tributary {
            format!("{} / {}", or_dash(r.get("lock_p50_ms")), or_dash(r.get("lock_p99_ms")))
        } else {
            "per line".into()
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} / {} | {} / {} / {} | {} | {} | {} |",
            describe(s),
            thousands(r.num("throughput").unwrap_or(0.0)),
            thousands(r.num("appended_per_s").unwrap_or(0.0)),
            latency,
            or_dash(r.get("call_p50_ms")),
            or_dash(r.get("call_p99_ms")),
            count(r, "lost"),
            count(r, "dup"),
            count(r, "torn"),
            lock,
            if tributary { or_dash(r.get("rounds_per_s")) } else { "–".into() },
            if tributary { or_dash(r.get("starved")) } else { "–".into() },
        );
    }
    let mut notes = Vec::new();
    for s in systems.iter().copied() {
        let Some(r) = find(records, s, hosts, phase) else { continue };
        if let Some(d) = shortfall(r) {
            notes.push(format!("{}: {d}", describe(s)));
        }
        if let Some(d) = damage(r) {
            notes.push(format!(
                "**{}: {d}** (counted from the {})",
                describe(s),
                r.get("counted_from").unwrap_or("reader")
            ));
        }
        if let Some(v) = r.get("verify").filter(|v| *v != "ok") {
            notes.push(format!("{}: `tributary verify`: {v}", describe(s)));
        }
        if let Some(e) = r.get("reader_error") {
            notes.push(format!(
                "{}: the reader that stamps commits stopped on an error (lines after it count as lost): {e}",
                describe(s)
            ));
        }
        if let Some(e) = r.get("writer_errors") {
            notes.push(format!("{}: writers failed: {e}", describe(s)));
        }
        notes.extend(daemon_errors(r).into_iter().map(|e| format!("{}: {e}", describe(s))));
        if let Some(d) = r.get("drain_after_ms") {
            if s.starts_with("tributary") && d.parse::<f64>().unwrap_or(0.0) > 1000.0 {
                notes.push(format!("{}: the last lines were committed {d} ms after the writers stopped", describe(s)));
            }
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(o);
    }
    for n in notes {
        let _ = writeln!(o, "- {n}");
    }
}

/// What the daemons said before they stopped, one note per error kind: which hosts,
/// and the first host's message (shortened).
fn daemon_errors(r: &Record) -> Vec<String> {
    let mut kinds: Vec<(String, Vec<String>, String)> = Vec::new();
    for (k, v) in r.fields.iter().filter(|(k, _)| k.starts_with("compact") && k.ends_with("_said")) {
        let host = k.trim_start_matches("compact").trim_end_matches("_said").to_string();
        let kind = v.split_once("error [").and_then(|(_, rest)| rest.split_once(']')).map_or("?", |(kind, _)| kind);
        match kinds.iter_mut().find(|(kd, _, _)| kd == kind) {
            Some((_, hosts, _)) => hosts.push(host),
            None => kinds.push((kind.to_string(), vec![host], v.clone())),
        }
    }
    kinds
        .into_iter()
        .map(|(kind, hosts, first)| {
            let msg: String = first.chars().take(240).collect();
            let more = if first.chars().count() > 240 { "…" } else { "" };
            format!(
                "the compact daemon{} of host{} {} said error [{kind}]: \"{msg}{more}\"",
                if hosts.len() == 1 { "" } else { "s" },
                if hosts.len() == 1 { "" } else { "s" },
                hosts.join(", ")
            )
        })
        .collect()
}

fn per_host_table(o: &mut String, r: &Record) {
    let Some(per) = r.get("per_host") else { return };
    let phase = match phase_of(r) {
        ONLY => String::new(),
        p => format!(", {}", phase_name(p)),
    };
    let _ = writeln!(
        o,
        "\n{} at N = {}{phase}:\n\n| host | committed lines/s | p50 (ms) | p99 (ms) | rounds/s | lock wait p50 / p99 (ms) | longest gap between commits (ms) |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        describe(r.get("system").unwrap_or("?")),
        r.get("hosts").unwrap_or("?"),
    );
    for h in per.split(' ') {
        let f: Vec<&str> = h.split(':').collect();
        if f.len() == 8 {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} / {} | {} |",
                f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]
            );
        }
    }
}

fn n_hosts(n: usize) -> String {
    if n == 1 {
        "1 host".into()
    } else {
        format!("{n} hosts")
    }
}

struct Verdict {
    line: String,
}

fn verdict(name: &str, pass: Option<bool>, detail: String) -> Verdict {
    let mark = match pass {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "n/a",
    };
    Verdict { line: format!("- {mark}: {name} — {detail}") }
}

/// Issue 15's targets for `system`, at the largest N run (8 when it was run): (a) and
/// (b) on the latency phase, (c) on the throughput phase (each on the single phase of a
/// `--rate` run), exactly once on every phase.
fn targets(records: &[Record], system: &str, all_hosts: &[usize]) -> Vec<Verdict> {
    let mut out = Vec::new();
    let Some(&big) = all_hosts.iter().filter(|&&h| h <= 8).max() else { return out };
    let at = if big == 8 { String::new() } else { format!(" (N = 8 not run: at N = {big})") };
    let ok = |r: &&Record| r.get("error").is_none();
    let lat = judged_on(records, LATENCY);
    let lat_at = lat.map_or_else(String::new, |p| judged_at(records, p));
    let rb = lat.and_then(|p| find(records, system, big, p)).filter(ok);
    let r1 = lat.and_then(|p| find(records, system, 1, p)).filter(ok);
    let p99 = |r: Option<&Record>| r.and_then(|r| r.num("p99_ms"));
    // a line never committed has no latency: a p99 over the others would flatter the run
    let never = |r: Option<&Record>| r.map_or(0, |r| r.num("lost").unwrap_or(0.0) as u64);
    let (never_big, never_1) = (never(rb), never(r1));
    let lighter = |rs: &[Option<&Record>]| -> String {
        let said: Vec<String> = rs.iter().flatten().filter_map(|r| shortfall(r)).collect();
        if said.is_empty() {
            String::new()
        } else {
            format!(" ({})", said.join("; "))
        }
    };
    // (a)
    let name_a = format!("(a) {}: p99 append→committed ≤ {P99_LIMIT_MS} ms at --interval 50{lat_at}{at}", n_hosts(big));
    out.push(match p99(rb) {
        Some(v) if never_big > 0 => verdict(
            &name_a,
            Some(false),
            format!("{never_big} acknowledged lines were never committed (p99 of the others: {v:.1} ms)"),
        ),
        Some(v) => verdict(
            &name_a,
            Some(v <= P99_LIMIT_MS),
            format!("{v:.1} ms ({:.2}× the limit){}", v / P99_LIMIT_MS, lighter(&[rb])),
        ),
        None => verdict("(a) p99 append→committed ≤ 250 ms", None, "not measured".into()),
    });
    // (b)
    let name_b = format!("(b) p99 at {} ≤ {P99_GROWTH_LIMIT}× p99 at 1 host{lat_at}{at}", n_hosts(big));
    out.push(match (p99(rb), p99(r1)) {
        (Some(_), Some(_)) if never_big + never_1 > 0 => verdict(
            &name_b,
            Some(false),
            format!("acknowledged lines never committed: {never_big} at N = {big}, {never_1} at N = 1"),
        ),
        (Some(b), Some(one)) if one > 0.0 => verdict(
            &name_b,
            Some(b <= P99_GROWTH_LIMIT * one),
            format!("{b:.1} ms / {one:.1} ms = {:.2}×{}", b / one, lighter(&[rb, r1])),
        ),
        _ => verdict("(b) p99 at 8 hosts ≤ 2× p99 at 1 host", None, "not measured".into()),
    });
    // (c)
    let thr_phase = judged_on(records, THROUGHPUT);
    let thr_at = thr_phase.map_or_else(String::new, |p| judged_at(records, p));
    let thr = |s: &str| thr_phase.and_then(|p| find(records, s, big, p)).filter(ok).and_then(|r| r.num("throughput"));
    for (base, what) in [("clh", "concurrent-log-handler"), ("seed", "the seed design")] {
        out.push(match (thr(system), thr(base)) {
            (Some(t), Some(b)) if b > 0.0 => verdict(
                &format!("(c) {}: fleet throughput ≥ {THROUGHPUT_RATIO}× {what}{thr_at}{at}", n_hosts(big)),
                Some(t >= THROUGHPUT_RATIO * b),
                format!("{} / {} lines/s = {:.1}×", thousands(t), thousands(b), t / b),
            ),
            _ => verdict(&format!("(c) fleet throughput ≥ 100× {what}"), None, "not measured".into()),
        });
    }
    // exactly once, every N of every phase
    let mut damaged = Vec::new();
    for phase in [LATENCY, THROUGHPUT, ONLY] {
        for &h in all_hosts {
            if let Some(d) = find(records, system, h, phase).and_then(damage) {
                let which = if phase == ONLY { String::new() } else { format!(", {}", phase_name(phase)) };
                damaged.push(format!("N = {h}{which}: {d}"));
            }
        }
    }
    out.push(verdict(
        "exactly once: every acknowledged line committed once, nothing torn",
        Some(damaged.is_empty()),
        if damaged.is_empty() {
            "0 lost, 0 duplicated, 0 torn at every N of every phase".into()
        } else {
            damaged.join("; ")
        },
    ));
    out
}

/// The throughput phase's latency, for reference next to the verdicts that do not
/// judge it: it includes the wait in the backlog that full-speed writers build.
fn full_speed_latency(records: &[Record], system: &str, all_hosts: &[usize]) -> Option<String> {
    judged_on(records, LATENCY).filter(|p| *p == LATENCY)?;
    let &big = all_hosts.iter().filter(|&&h| h <= 8).max()?;
    let p99 = |h| find(records, system, h, THROUGHPUT).filter(|r| r.get("error").is_none())?.num("p99_ms");
    let (b, one) = (p99(big)?, p99(1).filter(|_| big != 1));
    let one = one.map_or_else(String::new, |v| format!(" ({v:.1} ms at 1 host)"));
    Some(format!(
        "- not judged: p99 append→committed in the throughput phase ({}) at {}: {b:.1} ms{one}. \
         There the writers outrun the drain, so it includes the time a line waits in the backlog they build; \
         (a) and (b) are judged on the latency phase, at the same offered load per host at every N.",
        describe_load(phase_setting(records, THROUGHPUT).0),
        n_hosts(big)
    ))
}

pub fn render(records: &[Record]) -> String {
    let m = meta(records);
    let mut hosts: Vec<usize> =
        records.iter().filter(|r| r.kind == "run").filter_map(|r| r.num("hosts")).map(|h| h as usize).collect();
    hosts.sort_unstable();
    hosts.dedup();
    let mut systems: Vec<String> = Vec::new();
    for s in [TESTED, BASELINE, BACKGROUND, "seed", "clh"] {
        if records.iter().any(|r| r.kind == "run" && r.get("system") == Some(s)) {
            systems.push(s.into());
        }
    }
    let g = |k: &str| or_dash(m.get(k));
    let mut o = String::new();
    let _ = writeln!(o, "# Multi-host benchmark on GlusterFS (issue 15)\n");
    let _ = writeln!(
        o,
        "Generated by `{}` — do not edit; rerun it. What each figure means: [docs/benchmarks.md](benchmarks.md#multi-host-on-glusterfs-issue-15-scriptsbench-multihost).\n",
        g("command")
    );
    let _ = writeln!(o, "- Date: {} · commit `{}`", g("date"), g("commit"));
    let _ =
        writeln!(o, "- Machine: {} cores, {}, {} memory, kernel {}", g("nproc"), g("cpu"), g("memory"), g("kernel"));
    let _ = writeln!(o, "- Load average (1, 5, 15 min): at start {}, at end {}", g("load_start"), g("load_end"));
    let _ = writeln!(o, "- tributary under test: `{}` ({})", g("tributary"), g("tributary_version"));
    if m.get("tributary_baseline").is_some() {
        let _ = writeln!(o, "- second tributary: `{}` ({})", g("tributary_baseline"), g("tributary_baseline_version"));
    }
    if systems.iter().any(|s| s == BACKGROUND) {
        let _ = writeln!(
            o,
            "- {}: the same binary and mounts, each host's writer threads pushing to one `Appender` (window {} ms) \
             instead of appending durably; each writer flushes before it exits, and a line counts as lost if it was \
             acknowledged (queued) and never committed",
            describe(BACKGROUND),
            g("background_window_ms")
        );
    }
    let _ = writeln!(
        o,
        "- Per host: {} writer threads on one journal; `tributary compact --interval {}`; journals on {} (local disk)",
        g("threads"),
        g("interval"),
        g("journal_fs"),
    );
    let phases: Vec<&str> =
        [LATENCY, THROUGHPUT, ONLY].into_iter().filter(|p| phase_runs(records, p).next().is_some()).collect();
    for &p in &phases {
        let (rate, secs) = phase_setting(records, p);
        let secs = secs.map_or_else(|| "?".into(), |s| format!("{s}"));
        let what = match p {
            LATENCY => format!(
                "- Latency phase: {}, the same at every N; {secs} s timed per run; tributary only; judges (a) and (b)",
                describe_load(rate)
            ),
            THROUGHPUT => {
                format!("- Throughput phase: {}; {secs} s timed per run; every system; judges (c)", describe_load(rate))
            }
            _ => {
                format!("- One phase (`--rate`): {}; {secs} s timed per run; judges every target", describe_load(rate))
            }
        };
        let _ = writeln!(o, "{what}");
    }
    let _ = writeln!(o, "- concurrent-log-handler: {}", g("clh_version"));
    let _ = writeln!(
        o,
        "- GlusterFS {} volume `{}`, one brick on local disk, mounted once per host; client caches: {}; mount: `{}`",
        g("gluster_version"),
        g("volume"),
        g("caches"),
        g("mount_options")
    );
    let _ = writeln!(
        o,
        "- The reader that stamps commits (a thread of the bench: the library's `Reader`, polling when at the committed end): its own mount `{}` with attribute and metadata caches off: `{}`",
        g("reader_mount"),
        g("reader_mount_options")
    );
    if let Some(opts) = m.get("volume_options") {
        let _ = writeln!(o, "\n<details><summary>volume options</summary>\n\n```\n{opts}\n```\n</details>");
    }

    let _ = writeln!(o, "\n## Targets (issue 15)\n");
    for s in [TESTED, BASELINE, BACKGROUND] {
        if !systems.iter().any(|x| x == s) {
            continue;
        }
        let more = systems.iter().any(|x| x == BASELINE || x == BACKGROUND);
        if s == TESTED && more {
            let _ = writeln!(o, "The binary under test (`--tributary`), writers durable on return (`full`):\n");
        }
        if s == BASELINE {
            let _ = writeln!(o, "\nThe second binary (`--tributary-baseline`), for comparison:\n");
        }
        if s == BACKGROUND {
            let _ = writeln!(
                o,
                "\nThe binary under test with its writers on background commit (an `Appender`, window {} ms: a line is \
                 acknowledged when queued and durable within the window, as a logging handler uses it; the \
                 baselines' lines are not durable at all with concurrent-log-handler, durable per line with the \
                 seed design):\n",
                g("background_window_ms")
            );
        }
        for v in targets(records, s, &hosts) {
            let _ = writeln!(o, "{}", v.line);
        }
        if let Some(l) = full_speed_latency(records, s, &hosts) {
            let _ = writeln!(o, "{l}");
        }
    }
    if let (Some(t), Some(b)) = (hosts.iter().filter(|&&h| h <= 8).max(), systems.iter().find(|s| *s == BASELINE)) {
        let (thr_phase, lat_phase) = (judged_on(records, THROUGHPUT), judged_on(records, LATENCY));
        let thr = |s: &str| find(records, s, *t, thr_phase?).and_then(|r| r.num("throughput"));
        let p99 = |s: &str| find(records, s, *t, lat_phase?).and_then(|r| r.num("p99_ms"));
        if let (Some(a), Some(c), Some(pa), Some(pc)) = (thr(TESTED), thr(b), p99(TESTED), p99(b)) {
            let _ = writeln!(
                o,
                "\nTested vs second binary at N = {t}: throughput {:.2}× ({}), p99 append→committed {:.2}× ({}; below 1 is faster).",
                a / c.max(1.0),
                thr_phase.map_or("?", phase_name),
                pa / pc.max(0.001),
                lat_phase.map_or("?", phase_name),
            );
        }
    }

    for &p in &phases {
        let (rate, _) = phase_setting(records, p);
        let intro = match p {
            LATENCY => format!(
                "Each host's writers together offer {} lines/s, paced open loop (every line is due at a fixed time, \
                 whatever happened to the ones before it), the same load at every N: append→committed is the time \
                 the commit path takes at that load, not a backlog's. Targets (a) and (b) are judged here. Only \
                 tributary runs this phase: the baselines write the shared file inside the call (a line is committed \
                 when the call returns), so they run in the throughput phase only.",
                thousands(rate)
            ),
            THROUGHPUT if phases.contains(&LATENCY) => {
                "Every writer appends as fast as it can. **committed lines/s** is the fleet's throughput (target (c)). \
                 tributary's writers outrun its drain, so a backlog grows in the journals during the window, and \
                 **append→committed here includes each line's wait in that backlog** (it grows with the window's \
                 length): shown for completeness, not judged — (a) and (b) are judged on the latency phase."
                    .to_string()
            }
            THROUGHPUT => {
                "Every writer appends as fast as it can. **committed lines/s** is the fleet's throughput (target (c)). \
                 append→committed includes each line's wait in the backlog full-speed writers build; \
                 the latency phase was not run, so (a) and (b) are not judged."
                    .to_string()
            }
            _ => format!("One phase for every target (`--rate`): {}.", describe_load(rate)),
        };
        let title = match p {
            LATENCY | THROUGHPUT => format!("{} ({})", phase_name(p), describe_load(rate)),
            _ => describe_load(rate),
        };
        let _ = writeln!(o, "\n## Results: {title}\n\n{intro}");
        for &h in &hosts {
            run_table(&mut o, records, &systems, h, &g("threads"), p);
        }
    }
    let _ = writeln!(o, "\n## Per host (tributary)");
    for &p in &phases {
        for &h in &hosts {
            for s in systems.iter().filter(|s| s.starts_with("tributary")) {
                if let Some(r) = find(records, s, h, p).filter(|r| r.get("error").is_none()) {
                    per_host_table(&mut o, r);
                }
            }
        }
    }
    let costs: Vec<&Record> = records.iter().filter(|r| r.kind == "cost").collect();
    if !costs.is_empty() {
        let _ = writeln!(
            o,
            "\n## A round's fixed cost on GlusterFS\n\nOne `tributary drain --journal J` process through a mount (J local). Wall time is the median of 7 runs and includes the process's start and exit (`tributary --version`: the next column). The syscall columns come from one run under `strace -f -y -T` (which slows every call): all calls, those that name a path or fd on the mount, and the time spent inside those.\n\n| binary | case | wall (ms) | of it start+exit (ms) | syscalls | on the mount | time in them (ms) | on the mount, by name |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
        );
        for c in costs {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                or_dash(c.get("binary")),
                or_dash(c.get("case")),
                or_dash(c.get("wall_ms")),
                or_dash(c.get("startup_ms")),
                or_dash(c.get("syscalls")),
                or_dash(c.get("mount_syscalls")),
                or_dash(c.get("mount_ms")),
                or_dash(c.get("mount_by_name")),
            );
        }
    }
    for e in records.iter().filter(|r| r.kind == "cost-error") {
        let _ = writeln!(o, "\n- round cost of {}: error: {}", or_dash(e.get("binary")), or_dash(e.get("error")));
    }
    let _ = writeln!(
        o,
        "\n## How to read it\n\n\
- **phases**: at every N the latency phase runs first (tributary's writers open loop at a fixed offered load per host, the same at every N), then the throughput phase (every system's writers at full speed), each on a fresh target. Full-speed writers append faster than the fleet commits, so in the throughput phase a line's append→committed includes its wait in the growing backlog; the latency phase measures the commit path at a load the fleet is meant to keep up with (committed ≈ offered lines/s; if not, latency grows there too), and judges (a) and (b). **appended lines/s** below the offered load means the writers could not offer it (a note says so).\n\
- **committed lines/s**: lines that became visible in the target's committed part during the timed window (tributary: seen by the bench's reader thread, the library's `Reader`, on a mount of its own; the baselines: lines acknowledged in the window — a line is in the file when the call returns), divided by its length. **appended**: calls that returned.\n\
- **append→committed**: per line, the reader's arrival time minus the time `append` returned in the writer (the same machine clock); the first second is warm-up. The baselines write the shared file inside the call, so it is 0 for them; their **call** time is the whole lock + write (+ fsync) cycle.\n\
- **lost / dup / torn**: acknowledged lines never seen (after waiting up to 60 s for the drain to finish), seen twice, and lines that do not parse. For tributary a line not committed is still in its host's journal (a daemon that stopped leaves it there); for the baselines it is gone. The baselines are counted from the brick's copy of the file after all writers stopped.\n\
- **lock wait / rounds/s**: from each daemon's `--metrics-textfile` (its lock-wait histogram, buckets 0.1, 1, 5, 10, 50, 100, 500 ms…, so quantiles are interpolated within a bucket; `>x` means above the last finite bucket), read at the start and end of the window. Rounds/s counts rounds that committed.\n\
- **a host starved**: a daemon that committed fewer than a quarter of the median host's rounds in the window, or a host whose lines went more than max(2 s, 20 intervals) without a commit."
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run record; `phase` None is a record from before phases (or of `--rate`).
    fn run(system: &str, hosts: usize, phase: Option<&str>, thr: f64, p99: Option<f64>) -> Record {
        let mut r = Record::new("run");
        r.set("system", system).set("hosts", hosts).set("throughput", thr).set("appended_per_s", thr);
        r.set("seconds", 10).set("rate", if phase == Some(LATENCY) { 1000 } else { 0 });
        r.set("lost", 0).set("dup", 0).set("torn", 0);
        r.opt("p99_ms", p99).opt("p50_ms", p99.map(|p| p / 2.0));
        if system.starts_with("tributary") {
            r.set("per_host", "1:1000:10.00:20.00:15.0:1.0:>500.0:120.00").set("starved", "no");
        }
        r.opt("phase", phase);
        r
    }

    /// Both phases: at 1,000 lines/s per host p99 is 100 ms at 1 host, 180 at 8; at
    /// full speed the backlog makes it 400 and 1,100 ms, and the fleet commits 30,000
    /// lines/s at 8 hosts against the baselines' 250 and 400.
    fn canned() -> Vec<Record> {
        let mut meta = Record::new("meta");
        meta.set("command", "scripts/bench-multihost --quick").set("load_start", "0.5 0.4 0.3");
        let mut end = Record::new("meta");
        end.set("load_end", "1.5 1.0 0.8");
        let mut cost = Record::new("cost");
        cost.set("binary", TESTED).set("case", "idle").set("mount_syscalls", 14).set("mount_by_name", "fcntl×4");
        let (lat, thr) = (Some(LATENCY), Some(THROUGHPUT));
        vec![
            meta,
            run(TESTED, 1, lat, 1_000.0, Some(100.0)),
            run(TESTED, 1, thr, 20_000.0, Some(400.0)),
            run("seed", 1, thr, 300.0, None),
            run("clh", 1, thr, 200.0, None),
            run(TESTED, 8, lat, 8_000.0, Some(180.0)),
            run(TESTED, 8, thr, 30_000.0, Some(1100.0)),
            run("seed", 8, thr, 400.0, None),
            run("clh", 8, thr, 250.0, None),
            cost,
            end,
        ]
    }

    fn line_with<'a>(md: &'a str, needle: &str) -> &'a str {
        md.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?} in:\n{md}"))
    }

    #[test]
    fn targets_are_judged_from_the_runs_at_8_hosts_against_1_host() {
        let md = render(&canned());
        assert!(line_with(&md, "(a) 8 hosts").starts_with("- PASS"), "{md}");
        assert!(line_with(&md, "180.0 ms (0.72× the limit)").starts_with("- PASS"));
        // 180 / 100 = 1.8× ≤ 2×
        assert!(line_with(&md, "(b) p99 at 8 hosts").contains("= 1.80×"));
        assert!(line_with(&md, "(b) p99 at 8 hosts").starts_with("- PASS"));
        // 30,000 / 250 = 120× ≥ 100×; 30,000 / 400 = 75× < 100×
        assert!(line_with(&md, "× concurrent-log-handler").starts_with("- PASS"));
        assert!(line_with(&md, "120.0×").contains("30,000 / 250"));
        assert!(line_with(&md, "× the seed design").starts_with("- FAIL"));
        assert!(line_with(&md, "75.0×").starts_with("- FAIL"));
        assert!(line_with(&md, "exactly once").starts_with("- PASS"));
        assert!(md.contains("at start 0.5 0.4 0.3, at end 1.5 1.0 0.8"));
        assert!(md.contains("### N = 8 hosts, throughput phase"));
        assert!(md.contains("| 1 | 1000 | 10.00 | 20.00 | 15.0 | 1.0 / >500.0 | 120.00 |"));
        assert!(md.contains("| tributary | idle |"));
    }

    /// The background-commit system gets its own block of verdicts, after the durable
    /// one's and named as such, and its own rows: its (c) never stands in for theirs.
    #[test]
    fn the_background_system_is_judged_apart_from_the_durable_one() {
        let mut records = canned();
        let mut meta = Record::new("meta");
        meta.set("background_window_ms", 10);
        records.insert(1, meta);
        let (lat, thr) = (Some(LATENCY), Some(THROUGHPUT));
        records.push(run(BACKGROUND, 1, lat, 1_000.0, Some(110.0)));
        records.push(run(BACKGROUND, 8, lat, 8_000.0, Some(190.0)));
        records.push(run(BACKGROUND, 8, thr, 90_000.0, Some(900.0)));
        let md = render(&records);
        let targets = &md[md.find("## Targets").unwrap()..md.find("## Results").unwrap()];
        let (durable, background) =
            targets.split_at(targets.find("background commit (an `Appender`, window 10 ms").unwrap());
        // durable on return: 30,000 / 400 = 75× the seed design (FAIL), as before
        assert!(line_with(durable, "× the seed design").contains("30,000 / 400"), "{targets}");
        assert!(line_with(durable, "× the seed design").starts_with("- FAIL"), "{targets}");
        // background: 90,000 / 400 = 225×, 90,000 / 250 = 360×
        assert!(line_with(background, "× the seed design").contains("90,000 / 400 lines/s = 225.0×"), "{targets}");
        assert!(line_with(background, "× the seed design").starts_with("- PASS"), "{targets}");
        assert!(line_with(background, "× concurrent-log-handler").contains("360.0×"), "{targets}");
        assert!(
            md.contains("| tributary, background commit (`--tributary`, writers on an `Appender`) | 90,000 |"),
            "{md}"
        );
    }

    #[test]
    fn latency_targets_are_judged_on_the_latency_phase_and_throughput_on_the_throughput_phase() {
        let md = render(&canned());
        // (a), (b): at the same offered load per host at every N, not at full speed
        // (there 1,100 ms would fail (a) and 1,100 / 400 = 2.75× would fail (b))
        let a = line_with(&md, "(a) 8 hosts");
        assert!(a.contains("latency phase (open loop, offered 1,000 lines/s per host)"), "{a}");
        assert!(a.contains("180.0 ms"), "{a}");
        assert!(line_with(&md, "(b) p99 at 8 hosts").contains("180.0 ms / 100.0 ms"));
        // (c): at full speed (the latency phase's 8,000 lines/s would be 32× clh)
        let c = line_with(&md, "× concurrent-log-handler");
        assert!(c.contains("throughput phase (full speed, closed loop)"), "{c}");
        // the full-speed latency stays visible, labelled as not judged and why
        let not_judged = line_with(&md, "- not judged: p99 append→committed in the throughput phase");
        assert!(not_judged.contains("at 8 hosts: 1100.0 ms (400.0 ms at 1 host)"), "{not_judged}");
        assert!(not_judged.contains("backlog"), "{not_judged}");
        // each phase's load is said, and each has its tables (baselines only at full speed)
        assert!(md.contains("- Latency phase: open loop, offered 1,000 lines/s per host, the same at every N; 10 s"));
        assert!(md.contains("- Throughput phase: full speed, closed loop; 10 s timed per run; every system"));
        assert!(md.contains("## Results: latency phase (open loop, offered 1,000 lines/s per host)"));
        assert!(md.contains("## Results: throughput phase (full speed, closed loop)"));
        let latency_tables =
            &md[md.find("## Results: latency phase").unwrap()..md.find("## Results: throughput").unwrap()];
        assert!(latency_tables.contains("| 90 / 180 / – |"), "{latency_tables}");
        assert!(!latency_tables.contains("seed design"), "{latency_tables}");
        assert!(md[md.find("## Results: throughput").unwrap()..].contains("| 550 / 1100 / – |"), "{md}");
        assert!(md.contains("tributary (`--tributary`) at N = 8, latency phase:"));
    }

    #[test]
    fn a_latency_phase_whose_writers_fell_short_of_the_load_says_so() {
        let mut recs = canned();
        for r in recs.iter_mut().filter(|r| phase_of(r) == LATENCY && r.get("hosts") == Some("8")) {
            r.set("appended_per_s", 6_000);
        }
        let md = render(&recs);
        let said = "the writers appended only 6,000 of the 8,000 lines/s offered at N = 8: a lighter load than set";
        assert!(line_with(&md, "(a) 8 hosts").contains(said), "{md}");
        assert!(line_with(&md, &format!("- tributary (`--tributary`): {said}")).starts_with("- tributary"));
    }

    #[test]
    fn one_phase_runs_judge_every_target_on_that_phase() {
        // records of a `--rate 0` run, or from before phases: no `phase` field
        let recs: Vec<Record> = canned()
            .into_iter()
            .filter(|r| r.get("phase") != Some(LATENCY))
            .map(|mut r| {
                r.fields.retain(|(k, _)| k != "phase");
                r
            })
            .collect();
        let md = render(&recs);
        let a = line_with(&md, "(a) 8 hosts");
        assert!(a.starts_with("- FAIL") && a.contains("(full speed, closed loop)") && a.contains("1100.0 ms"), "{md}");
        assert!(line_with(&md, "(b) p99 at 8 hosts").contains("= 2.75×"));
        assert!(line_with(&md, "× concurrent-log-handler").starts_with("- PASS"));
        assert!(!md.contains("- not judged"), "{md}");
        assert!(md.contains("## Results: full speed, closed loop"));
    }

    #[test]
    fn damage_and_missing_runs_are_said_not_passed() {
        let mut recs = canned();
        // the 8-host tributary run of the latency phase lost lines and 1-host p99 is missing
        for r in recs.iter_mut().filter(|r| phase_of(r) == LATENCY) {
            if r.get("system") == Some(TESTED) && r.get("hosts") == Some("8") {
                r.set("lost", 3);
            }
            if r.get("system") == Some(TESTED) && r.get("hosts") == Some("1") {
                r.set("error", "writers not ready");
            }
        }
        for r in recs.iter_mut().filter(|r| r.get("system") == Some(TESTED) && r.get("hosts") == Some("8")) {
            r.set("compact2_said", "tributary: error [target_truncated]: target truncated: x is 0 bytes / stopped");
            r.set("compact5_said", "tributary: error [target_truncated]: target truncated: y is 9 bytes / stopped");
        }
        let md = render(&recs);
        assert!(
            line_with(&md, "daemons of hosts 2, 5 said error [target_truncated]")
                .contains("\"tributary: error [target_truncated]: target truncated: x is 0 bytes / stopped\""),
            "{md}"
        );
        assert!(line_with(&md, "exactly once").starts_with("- FAIL"), "{md}");
        assert!(line_with(&md, "exactly once").contains("N = 8, latency phase: 3 lost"));
        assert!(line_with(&md, "(a) 8 hosts").starts_with("- FAIL"));
        assert!(line_with(&md, "(a) 8 hosts").contains("3 acknowledged lines were never committed"));
        assert!(line_with(&md, "(b) p99").starts_with("- n/a"));
        assert!(md.contains("error: writers not ready"));
    }

    #[test]
    fn a_reader_that_stopped_is_said() {
        let mut recs = canned();
        for r in recs.iter_mut().filter(|r| phase_of(r) == THROUGHPUT && r.get("system") == Some(TESTED)) {
            r.set("reader_error", "target truncated: out.log is 0 bytes");
        }
        let md = render(&recs);
        let note = "- tributary (`--tributary`): the reader that stamps commits stopped on an error";
        assert!(line_with(&md, note).ends_with(": target truncated: out.log is 0 bytes"), "{md}");
    }

    #[test]
    fn without_8_hosts_the_largest_n_is_judged_and_said() {
        let recs: Vec<Record> = canned().into_iter().filter(|r| r.get("hosts") != Some("8")).collect();
        let md = render(&recs);
        assert!(line_with(&md, "(a) 1 host:").contains("N = 8 not run: at N = 1"), "{md}");
    }
}
