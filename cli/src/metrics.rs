//! `compact`'s Prometheus metrics (issue 17): the counters and gauges the daemon's
//! events feed (`Metrics`), rendered in the Prometheus text format (`render`), written
//! to a node_exporter textfile (`--metrics-textfile`: a temporary file beside it, then
//! a rename, so the collector never reads half a file) and/or served at `GET /metrics`
//! by a tiny HTTP responder on its own thread (`--metrics-listen`, loopback only unless
//! `--metrics-listen-remote`).
//!
//! Keeps: everything runs on the daemon's own thread, ticked by its events (a problem or
//! its end refreshes at once; committed rounds, `Idle` and `Contended` at most every
//! `--metrics-interval-ms`): no timer thread. The HTTP thread only serves the last
//! rendered page, it never touches a journal or the target. The backlog gauges need a
//! read of every journal in the spool (open, one head row, one indexed row): done at
//! most every `--metrics-backlog-ms`, never per round. A metrics file that cannot be
//! written is reported once (and once more when it works again); draining goes on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use tributary::{DaemonEvent, DrainReport, Error, ErrorKind, Journal, JournalOptions};

#[derive(Args)]
pub struct MetricsFlags {
    /// Write Prometheus metrics to this file, in node_exporter's textfile-collector
    /// format (put it in the collector's --collector.textfile.directory and name it
    /// `*.prom`). Written to `.<name>.tmp` beside it, then renamed. Refreshed every
    /// --metrics-interval-ms, and at once when a problem starts or ends. A file that
    /// cannot be written is reported once; the daemon keeps draining.
    #[arg(long, value_name = "PATH")]
    pub metrics_textfile: Option<PathBuf>,
    /// Serve the same metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks
    /// a free one, printed at start). Loopback addresses only, unless
    /// --metrics-listen-remote.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Allow --metrics-listen on an address other networks reach: the endpoint has no
    /// authentication and its metrics name the target and every journal's path.
    #[arg(long, requires = "metrics_listen")]
    pub metrics_listen_remote: bool,
    /// How often the metrics are refreshed, in milliseconds (a problem is published at
    /// once).
    #[arg(long, default_value_t = 5_000)]
    pub metrics_interval_ms: u64,
    /// Read the spool's backlog (per journal: lines, bytes, age of the oldest line) at
    /// most this often, in milliseconds; each read opens every journal in the spool
    /// (a few milliseconds each on a loaded machine) on the daemon's thread. 0: no backlog metrics.
    #[arg(long, default_value_t = 30_000)]
    pub metrics_backlog_ms: u64,
}

/// Upper bounds of the lock-wait histogram's buckets, in seconds.
const LOCK_WAIT_BUCKETS: [f64; 11] = [0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0];
/// Upper bounds of the round-duration histogram's buckets, in seconds.
const ROUND_BUCKETS: [f64; 11] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A Prometheus histogram: cumulative on output, one count per bucket here.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    pub fn observe(&mut self, d: Duration) {
        let v = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }
}

/// One journal's backlog, as the last backlog read saw it.
#[derive(Debug, Clone)]
pub struct JournalBacklog {
    pub path: String,
    /// Lines not committed to the target yet.
    pub lines: u64,
    /// Payload bytes the journal still holds (lines not recorded as drained).
    pub bytes: u64,
    /// Age of the oldest line not committed yet, in seconds (0 when none waits).
    pub oldest_age: f64,
}

/// The daemon's metrics: what its events said, and the last backlog read.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub target: String,
    pub up: bool,
    pub start_time: f64,
    pub rounds: u64,
    pub lines: u64,
    pub bytes: u64,
    pub rotations: u64,
    pub repaired_tail_bytes: u64,
    pub contended: u64,
    pub lock_wait: Histogram,
    pub round_duration: Histogram,
    /// Problems reported, by error kind (every kind is listed, from 0).
    pub problems: BTreeMap<&'static str, u64>,
    /// Journals set aside now.
    pub set_aside: BTreeSet<PathBuf>,
    pub last_commit: Option<f64>,
    /// The last backlog read: when (Unix seconds), how long it took, what it saw.
    pub backlog: Option<(f64, f64, Vec<JournalBacklog>)>,
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    pub fn new(target: &Path) -> Metrics {
        Metrics {
            target: target.display().to_string(),
            up: true,
            start_time: unix_now(),
            rounds: 0,
            lines: 0,
            bytes: 0,
            rotations: 0,
            repaired_tail_bytes: 0,
            contended: 0,
            lock_wait: Histogram::new(&LOCK_WAIT_BUCKETS),
            round_duration: Histogram::new(&ROUND_BUCKETS),
            problems: ErrorKind::ALL.iter().map(|k| (k.name(), 0)).collect(),
            set_aside: BTreeSet::new(),
            last_commit: None,
            backlog: None,
        }
    }

    /// Count what the daemon said.
    pub fn count(&mut self, event: &DaemonEvent<'_>) {
        match event {
            DaemonEvent::Committed(r) => self.committed(r),
            DaemonEvent::Contended(_) => self.contended += 1,
            DaemonEvent::Problem { subject, error, set_aside } => {
                self.problem(error);
                if let (true, Some(p)) = (*set_aside, subject.strip_prefix("journal ")) {
                    self.set_aside.insert(PathBuf::from(p));
                }
            }
            DaemonEvent::Resolved { subject } => {
                if let Some(p) = subject.strip_prefix("journal ") {
                    self.set_aside.remove(Path::new(p));
                }
            }
            _ => {}
        }
    }

    fn committed(&mut self, r: &DrainReport) {
        self.rounds += r.rounds.max(1);
        self.lines += r.lines;
        self.bytes += r.bytes;
        self.rotations += r.rotations;
        self.repaired_tail_bytes += r.repaired_tail_bytes;
        self.lock_wait.observe(r.lock_wait);
        self.round_duration.observe(r.elapsed);
        self.last_commit = Some(unix_now());
    }

    pub fn problem(&mut self, e: &Error) {
        *self.problems.entry(e.kind().name()).or_default() += 1;
    }

    /// Read every journal's backlog in `spool` (journals that cannot be opened, such
    /// as junk a problem reported, are left out). Costs one open and two small
    /// queries per journal.
    pub fn read_backlog(&mut self, target: &Path, spool: &Path, opts: &JournalOptions) {
        let started = Instant::now();
        let now_ms = unix_now() * 1000.0;
        let watermarks = tributary::status_with(target, None, opts).ok().and_then(|s| s.manifest).map(|m| m.watermarks);
        let mut journals = Vec::new();
        for p in tributary::spool_journals(spool).unwrap_or_default() {
            let Ok(j) = Journal::open_existing(&p, opts.clone()) else { continue };
            let Ok(b) = j.backlog() else { continue };
            let watermark = watermarks.as_ref().and_then(|w| w.get(&j.id())).map_or(0, |w| w.last_seq);
            let lines = b.last_seq.saturating_sub(watermark.max(b.drained_seq));
            let oldest_age = match (lines, b.oldest_append_ms) {
                (1.., Some(ms)) => ((now_ms - ms as f64) / 1000.0).max(0.0),
                _ => 0.0,
            };
            journals.push(JournalBacklog { path: p.display().to_string(), lines, bytes: b.bytes, oldest_age });
        }
        // A journal removed from the spool while set aside is never "resolved" (one
        // removed without its log stays set aside: its `-wal` may hold lines).
        self.set_aside.retain(|p| {
            let mut wal = p.as_os_str().to_owned();
            wal.push("-wal");
            p.symlink_metadata().is_ok() || Path::new(&wal).symlink_metadata().is_ok()
        });
        self.backlog = Some((unix_now(), started.elapsed().as_secs_f64(), journals));
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut o = String::new();
        let t = format!("target=\"{}\"", escape_label(&self.target));
        one(
            &mut o,
            &t,
            "tributary_daemon_up",
            "gauge",
            "1 while tributary compact runs; 0 once it stopped.",
            f64::from(u8::from(self.up)),
        );
        one(
            &mut o,
            &t,
            "tributary_daemon_start_time_seconds",
            "gauge",
            "When the daemon started (Unix time).",
            self.start_time,
        );
        one(
            &mut o,
            &t,
            "tributary_rounds_committed_total",
            "counter",
            "Drain rounds that committed lines.",
            self.rounds as f64,
        );
        one(
            &mut o,
            &t,
            "tributary_lines_committed_total",
            "counter",
            "Lines committed to the target by this daemon.",
            self.lines as f64,
        );
        one(
            &mut o,
            &t,
            "tributary_bytes_committed_total",
            "counter",
            "Bytes committed to the target by this daemon (each line with its newline).",
            self.bytes as f64,
        );
        one(
            &mut o,
            &t,
            "tributary_rotations_total",
            "counter",
            "Generations rotated out of the target (managed rotation).",
            self.rotations as f64,
        );
        one(
            &mut o,
            &t,
            "tributary_repaired_tail_bytes_total",
            "counter",
            "Uncommitted bytes a crashed drain left after the committed part, truncated by this daemon.",
            self.repaired_tail_bytes as f64,
        );
        one(
            &mut o,
            &t,
            "tributary_rounds_contended_total",
            "counter",
            "Rounds that could not run: another compactor held the lock (lock_timeout) or it was lost mid-round (lock_lost).",
            self.contended as f64,
        );
        histogram(
            &mut o,
            &t,
            "tributary_lock_wait_seconds",
            "Time a committing round waited for the target's lock.",
            &self.lock_wait,
        );
        histogram(
            &mut o,
            &t,
            "tributary_round_duration_seconds",
            "Duration of a committing round, from asking for the lock to recording what was drained.",
            &self.round_duration,
        );
        family(
            &mut o,
            "tributary_problems_total",
            "counter",
            "Problems the daemon reported, by error kind (each once, and again when its message changes; docs/errors.md).",
        );
        for (kind, n) in &self.problems {
            let _ = writeln!(o, "tributary_problems_total{{{t},kind=\"{}\"}} {n}", escape_label(kind));
        }
        one(
            &mut o,
            &t,
            "tributary_journals_set_aside",
            "gauge",
            "Journals set aside because they cannot be drained (retried when their files change).",
            self.set_aside.len() as f64,
        );
        if let Some(ts) = self.last_commit {
            one(
                &mut o,
                &t,
                "tributary_last_commit_timestamp_seconds",
                "gauge",
                "When this daemon last committed a round (Unix time).",
                ts,
            );
        }
        if let Some((at, took, journals)) = &self.backlog {
            one(
                &mut o,
                &t,
                "tributary_backlog_read_timestamp_seconds",
                "gauge",
                "When the backlog gauges were read (Unix time).",
                *at,
            );
            one(
                &mut o,
                &t,
                "tributary_backlog_read_duration_seconds",
                "gauge",
                "How long the last backlog read took (it opens every journal).",
                *took,
            );
            let per_journal = [
                ("tributary_backlog_lines", "Lines of a journal not committed to the target yet."),
                (
                    "tributary_backlog_bytes",
                    "Bytes a journal still holds (lines not recorded as drained, without newlines).",
                ),
                (
                    "tributary_backlog_oldest_age_seconds",
                    "Age of a journal's oldest line not committed yet (0: none waits).",
                ),
            ];
            for (i, (name, help)) in per_journal.iter().enumerate() {
                family(&mut o, name, "gauge", help);
                for j in journals {
                    let v = [j.lines as f64, j.bytes as f64, j.oldest_age][i];
                    let _ = writeln!(o, "{name}{{{t},journal=\"{}\"}} {v}", escape_label(&j.path));
                }
            }
        }
        o
    }
}

fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

/// A family of one sample, labelled with the target only.
fn one(o: &mut String, t: &str, name: &str, kind: &str, help: &str, value: f64) {
    family(o, name, kind, help);
    let _ = writeln!(o, "{name}{{{t}}} {value}");
}

fn histogram(o: &mut String, t: &str, name: &str, help: &str, h: &Histogram) {
    family(o, name, "histogram", help);
    let mut cumulative = 0;
    for (b, n) in h.bounds.iter().zip(&h.counts) {
        cumulative += n;
        let _ = writeln!(o, "{name}_bucket{{{t},le=\"{b}\"}} {cumulative}");
    }
    let _ = writeln!(o, "{name}_bucket{{{t},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(o, "{name}_sum{{{t}}} {}", h.sum);
    let _ = writeln!(o, "{name}_count{{{t}}} {}", h.count);
}

/// A label value in the text format: `\`, `"` and newline escaped.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A HELP text: `\` and newline escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The node_exporter textfile: written beside itself, then renamed into place.
struct Textfile {
    path: PathBuf,
    tmp: PathBuf,
    /// What was said about the last failure (said once, until it changes or is over).
    failing: Option<String>,
}

impl Textfile {
    fn new(path: &Path) -> Textfile {
        let name = path.file_name().map_or_else(|| "metrics".into(), |n| n.to_string_lossy().to_string());
        // a hidden name not ending in .prom: the collector reads only *.prom
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        Textfile { path: path.to_path_buf(), tmp, failing: None }
    }

    fn write(&mut self, text: &str, log: &mut dyn FnMut(&str)) {
        let result = std::fs::write(&self.tmp, text)
            .map_err(|e| format!("writing {}: {e}", self.tmp.display()))
            .and_then(|()| {
                std::fs::rename(&self.tmp, &self.path)
                    .map_err(|e| format!("renaming {} to {}: {e}", self.tmp.display(), self.path.display()))
            });
        match result {
            Ok(()) => {
                if self.failing.take().is_some() {
                    log(&format!("tributary compact: metrics file {}: written again", self.path.display()));
                }
            }
            Err(e) if self.failing.as_ref() != Some(&e) => {
                let _ = std::fs::remove_file(&self.tmp);
                log(&format!(
                    "tributary compact: cannot write the metrics file {}: {e}: make its folder exist and writable \
                     by this user (node_exporter reads *.prom files from its --collector.textfile.directory); \
                     draining goes on, the metrics are retried",
                    self.path.display()
                ));
                self.failing = Some(e);
            }
            Err(_) => {}
        }
    }
}

/// The metrics of a running `compact`, and where they go.
pub struct Publisher {
    pub metrics: Metrics,
    textfile: Option<Textfile>,
    page: Option<Arc<Mutex<String>>>,
    interval: Duration,
    last_publish: Option<Instant>,
    backlog: Option<(Duration, PathBuf, JournalOptions)>,
    last_backlog: Option<Instant>,
}

impl Publisher {
    /// Start publishing as the flags say; `None` when they ask for no metrics. Errors
    /// only for a listen address that is refused or cannot be bound.
    pub fn start(
        flags: &MetricsFlags,
        target: &Path,
        spool: &Path,
        journal_opts: &JournalOptions,
        log: &mut dyn FnMut(&str),
    ) -> Result<Option<Publisher>, Error> {
        if flags.metrics_textfile.is_none() && flags.metrics_listen.is_none() {
            return Ok(None);
        }
        let page = match &flags.metrics_listen {
            Some(addr) => {
                let page = Arc::new(Mutex::new(String::new()));
                let bound = serve(addr, flags.metrics_listen_remote, Arc::clone(&page))?;
                log(&format!("tributary compact: serving metrics at http://{bound}/metrics"));
                Some(page)
            }
            None => None,
        };
        let textfile = flags.metrics_textfile.as_deref().map(|p| {
            if p.extension().is_none_or(|e| e != "prom") {
                log(&format!(
                    "tributary compact: note: node_exporter's textfile collector reads only *.prom files, and {} is \
                     not one",
                    p.display()
                ));
            }
            Textfile::new(p)
        });
        let backlog = (flags.metrics_backlog_ms > 0)
            .then(|| (Duration::from_millis(flags.metrics_backlog_ms), spool.to_path_buf(), journal_opts.clone()));
        let mut p = Publisher {
            metrics: Metrics::new(target),
            textfile,
            page,
            interval: Duration::from_millis(flags.metrics_interval_ms),
            last_publish: None,
            backlog,
            last_backlog: None,
        };
        p.tick(true, log);
        Ok(Some(p))
    }

    /// Count an event and refresh: at once for a problem or its end (rare), otherwise
    /// at most every interval — committed rounds too, which can follow each other
    /// back to back: a write and a rename per round would sit on the drain's path.
    pub fn on_event(&mut self, event: &DaemonEvent<'_>, log: &mut dyn FnMut(&str)) {
        self.metrics.count(event);
        let now = matches!(event, DaemonEvent::Problem { .. } | DaemonEvent::Resolved { .. });
        self.tick(now, log);
    }

    /// The daemon stopped (`error`: because of an error that needs a human).
    pub fn stopped(&mut self, error: Option<&Error>, log: &mut dyn FnMut(&str)) {
        if let Some(e) = error {
            self.metrics.problem(e);
        }
        self.metrics.up = false;
        self.tick(true, log);
    }

    fn tick(&mut self, now: bool, log: &mut dyn FnMut(&str)) {
        if !now && self.last_publish.is_some_and(|t| t.elapsed() < self.interval) {
            return;
        }
        if let Some((every, spool, opts)) = &self.backlog {
            if self.last_backlog.is_none_or(|t| t.elapsed() >= *every) {
                let target = PathBuf::from(&self.metrics.target);
                self.metrics.read_backlog(&target, spool, opts);
                self.last_backlog = Some(Instant::now());
            }
        }
        let text = self.metrics.render();
        if let Some(f) = &mut self.textfile {
            f.write(&text, log);
        }
        if let Some(page) = &self.page {
            *page.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = text;
        }
        self.last_publish = Some(Instant::now());
    }
}

/// Serve `page` at `GET /metrics` on `addr` from a thread of its own; returns the
/// address bound (port 0 picks one).
///
/// # Errors
/// [`Error::InvalidArgument`] for an address that is not a loopback address (unless
/// `remote`); [`Error::Io`] for one that does not resolve or cannot be bound (a name
/// or an address not there yet at boot, a port the previous instance still holds:
/// `compact` exits 1 for these, and a supervisor tries again).
pub fn serve(addr: &str, remote: bool, page: Arc<Mutex<String>>) -> Result<SocketAddr, Error> {
    let bad = |what: String| Error::InvalidArgument(format!("--metrics-listen {addr}: {what}"));
    let io =
        |what: &str, e: std::io::Error| Error::Io { context: format!("--metrics-listen {addr}: {what}"), source: e };
    let addrs: Vec<SocketAddr> =
        addr.to_socket_addrs().map_err(|e| io("resolving it (give host:port, e.g. 127.0.0.1:9464)", e))?.collect();
    if !remote && addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(bad(
            "not a loopback address: the endpoint has no authentication and its metrics name the target and every \
             journal; listen on 127.0.0.1 (scrape it locally, or through a proxy), or pass --metrics-listen-remote \
             to serve every network that reaches this address"
                .into(),
        ));
    }
    let listener = TcpListener::bind(&addrs[..]).map_err(|e| io("listening there (is the port in use?)", e))?;
    let bound = listener.local_addr().map_err(|e| bad(format!("{e}")))?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(conn) => {
                        let _ = respond(conn, &page);
                    }
                    // (out of file descriptors, say): not a busy loop
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })
        .map_err(|e| Error::io("starting the metrics HTTP thread", e))?;
    Ok(bound)
}

/// Answer one HTTP/1.x request and close the connection.
fn respond(mut s: TcpStream, page: &Mutex<String>) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, extra, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            ("200 OK", "", page.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
        }
        (_, "/metrics") => ("405 Method Not Allowed", "Allow: GET, HEAD\r\n", "only GET /metrics\n".to_string()),
        _ => ("404 Not Found", "", "tributary compact serves GET /metrics only\n".to_string()),
    };
    let ctype = if status.starts_with("200") { "text/plain; version=0.0.4; charset=utf-8" } else { "text/plain" };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    s.write_all(&out)?;
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, line_start: &str) -> Option<&'a str> {
        text.lines().find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_label("plain/path.journal"), "plain/path.journal");
        let mut m = Metrics::new(Path::new("/t/out\"1\".log"));
        m.backlog = Some((
            1.0,
            0.5,
            vec![JournalBacklog { path: "/s/we\"ird\\na\nme.journal".into(), lines: 3, bytes: 9, oldest_age: 2.5 }],
        ));
        let text = m.render();
        let t = r#"target="/t/out\"1\".log""#;
        assert_eq!(
            sample(&text, &format!(r#"tributary_backlog_lines{{{t},journal="/s/we\"ird\\na\nme.journal"}}"#)),
            Some("3")
        );
        assert!(text.lines().all(|l| !l.is_empty()), "a raw newline split a sample:\n{text}");
    }

    #[test]
    fn counters_histograms_and_families_render_as_prometheus_expects() {
        let mut m = Metrics::new(Path::new("/t/out.log"));
        let r = DrainReport {
            rounds: 1,
            lines: 5,
            bytes: 50,
            lock_wait: Duration::from_micros(2_000),
            elapsed: Duration::from_millis(300),
            ..DrainReport::default()
        };
        m.count(&DaemonEvent::Committed(&r));
        m.count(&DaemonEvent::Committed(&r));
        let junk = Error::InvalidArgument("x".into());
        m.count(&DaemonEvent::Problem { subject: "journal /s/j.journal", error: &junk, set_aside: true });
        let text = m.render();
        let t = r#"{target="/t/out.log"}"#;
        assert_eq!(sample(&text, &format!("tributary_lines_committed_total{t}")), Some("10"));
        assert_eq!(sample(&text, &format!("tributary_bytes_committed_total{t}")), Some("100"));
        assert_eq!(sample(&text, &format!("tributary_rounds_committed_total{t}")), Some("2"));
        assert_eq!(sample(&text, &format!("tributary_journals_set_aside{t}")), Some("1"));
        assert_eq!(
            sample(&text, r#"tributary_problems_total{target="/t/out.log",kind="invalid_argument"}"#),
            Some("1")
        );
        assert_eq!(sample(&text, r#"tributary_problems_total{target="/t/out.log",kind="io"}"#), Some("0"));
        // cumulative buckets: 2 ms is above 1 ms and within 5 ms
        let b = |le: &str| {
            sample(&text, &format!(r#"tributary_lock_wait_seconds_bucket{{target="/t/out.log",le="{le}"}}"#))
        };
        assert_eq!((b("0.001"), b("0.005"), b("30"), b("+Inf")), (Some("0"), Some("2"), Some("2"), Some("2")));
        assert_eq!(sample(&text, &format!("tributary_round_duration_seconds_count{t}")), Some("2"));
        assert_eq!(sample(&text, &format!("tributary_round_duration_seconds_sum{t}")), Some("0.6"));
        assert!(sample(&text, &format!("tributary_last_commit_timestamp_seconds{t}")).is_some());
        // every sample's family is declared, once, before it
        let mut declared = BTreeSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                assert!(declared.insert(rest.split(' ').next().unwrap().to_string()), "declared twice: {l}");
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
                assert!(declared.contains(name) || declared.contains(base), "undeclared: {l}");
            }
        }
        m.count(&DaemonEvent::Resolved { subject: "journal /s/j.journal" });
        assert_eq!(sample(&m.render(), &format!("tributary_journals_set_aside{t}")), Some("0"));
    }

    /// A journal set aside for having been removed without its log stays counted while
    /// its `-wal` is there (it may hold lines); one whose files are all gone does not.
    #[test]
    fn a_journal_removed_without_its_log_stays_set_aside() {
        let d = tempfile::tempdir().unwrap();
        let spool = d.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        std::fs::write(spool.join("orphan.journal-wal"), b"frames").unwrap();
        let mut m = Metrics::new(&d.path().join("out.log"));
        let gone = Error::InvalidArgument("x".into());
        for name in ["orphan.journal", "vanished.journal"] {
            let subject = format!("journal {}", spool.join(name).display());
            m.count(&DaemonEvent::Problem { subject: &subject, error: &gone, set_aside: true });
        }
        m.read_backlog(&d.path().join("out.log"), &spool, &JournalOptions::default());
        let t = format!(r#"{{target="{}"}}"#, d.path().join("out.log").display());
        assert_eq!(sample(&m.render(), &format!("tributary_journals_set_aside{t}")), Some("1"));
    }

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn http_serves_the_page_at_get_metrics_over_a_real_connection() {
        let page = Arc::new(Mutex::new("tributary_daemon_up{target=\"t\"} 1\n".to_string()));
        let addr = serve("127.0.0.1:0", false, Arc::clone(&page)).unwrap();
        let r = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        assert!(r.ends_with("\r\n\r\ntributary_daemon_up{target=\"t\"} 1\n"), "{r}");
        *page.lock().unwrap() = "new\n".into();
        assert!(get(addr, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").ends_with("\r\n\r\nnew\n"));
        assert!(get(addr, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        let head = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"), "{head}");
    }

    #[test]
    fn http_refuses_a_non_loopback_address_unless_told() {
        let page = Arc::new(Mutex::new(String::new()));
        let e = serve("0.0.0.0:0", false, Arc::clone(&page)).unwrap_err().to_string();
        assert!(e.contains("not a loopback address") && e.contains("--metrics-listen-remote"), "{e}");
        assert!(serve("0.0.0.0:0", true, Arc::clone(&page)).is_ok());
        let e = serve("nonsense", false, page).unwrap_err().to_string();
        assert!(e.contains("--metrics-listen nonsense") && e.contains("127.0.0.1:9464"), "{e}");
    }

    /// Back-to-back committed rounds do not each rewrite the textfile (a write and a
    /// rename on the daemon's thread per round): they wait for the interval, while a
    /// problem is published at once.
    #[test]
    fn committed_rounds_refresh_at_most_every_interval_and_problems_at_once() {
        let d = tempfile::tempdir().unwrap();
        let prom = d.path().join("t.prom");
        let mut p = Publisher {
            metrics: Metrics::new(Path::new("/t/out.log")),
            textfile: Some(Textfile::new(&prom)),
            page: None,
            interval: Duration::from_secs(3600),
            last_publish: None,
            backlog: None,
            last_backlog: None,
        };
        let mut log = |m: &str| panic!("unexpected report: {m}");
        p.tick(true, &mut log);
        std::fs::remove_file(&prom).unwrap();
        let r = DrainReport { rounds: 1, lines: 5, ..DrainReport::default() };
        for _ in 0..3 {
            p.on_event(&DaemonEvent::Committed(&r), &mut log);
        }
        assert!(!prom.exists(), "a committed round rewrote the textfile before the interval");
        let junk = Error::InvalidArgument("x".into());
        p.on_event(&DaemonEvent::Problem { subject: "journal /s/j.journal", error: &junk, set_aside: true }, &mut log);
        let text = std::fs::read_to_string(&prom).unwrap();
        assert_eq!(sample(&text, r#"tributary_lines_committed_total{target="/t/out.log"}"#), Some("15"));
    }

    #[test]
    fn an_unwritable_textfile_is_reported_once_and_again_when_it_works() {
        let d = tempfile::tempdir().unwrap();
        let mut f = Textfile::new(&d.path().join("missing").join("t.prom"));
        let mut said = Vec::new();
        f.write("a 1\n", &mut |m| said.push(m.to_string()));
        f.write("a 1\n", &mut |m| said.push(m.to_string()));
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("missing/t.prom") && said[0].contains("draining goes on"), "{said:?}");
        std::fs::create_dir(d.path().join("missing")).unwrap();
        f.write("a 1\n", &mut |m| said.push(m.to_string()));
        assert!(said.len() == 2 && said[1].contains("written again"), "{said:?}");
        assert_eq!(std::fs::read_to_string(d.path().join("missing/t.prom")).unwrap(), "a 1\n");
        assert!(!d.path().join("missing/.t.prom.tmp").exists());
    }
}
