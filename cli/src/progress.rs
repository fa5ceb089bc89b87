//! Progress of long-running commands (`drain`, `compact`, `retire`, `verify`): one
//! status line on stderr, redrawn in place, only when stderr is a terminal. Piped or
//! redirected (a log, a supervisor, a script) nothing is drawn: the output stays what
//! it was.
//!
//! Keeps: the line is drawn at once the first time (so a short command shows it too)
//! and then at most every 250 ms; a message said while it shows (`note`) erases it
//! first; it is erased when the command ends (`clear`, or on drop).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shortest time between two redraws.
const EVERY: Duration = Duration::from_millis(250);

/// One status line on a terminal's stderr.
pub struct Progress {
    on: bool,
    shown: bool,
    last: Option<Instant>,
    started: Instant,
}

impl Progress {
    /// Drawn only when stderr is a terminal.
    pub fn new() -> Progress {
        Progress { on: std::io::stderr().is_terminal(), shown: false, last: None, started: Instant::now() }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Redraw the line with `text` (called only when it is drawn): at once the first
    /// time, then at most every 250 ms.
    pub fn update(&mut self, text: impl FnOnce(Duration) -> String) {
        if !self.on || self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        draw(&text(self.started.elapsed()));
        self.shown = true;
        self.last = Some(Instant::now());
    }

    /// Say `msg` on stderr (a line of its own, as without a terminal), erasing the
    /// status line first; it is drawn again at the next update.
    pub fn note(&mut self, msg: &str) {
        self.clear();
        say_err!("{msg}");
        self.last = None;
    }

    /// Erase the status line (before stdout output on the same terminal, and at the end).
    pub fn clear(&mut self) {
        if self.shown {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[K");
            let _ = e.flush();
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

fn draw(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "\r\x1b[K{text}");
    let _ = e.flush();
}

/// Bytes for people: `812 B`, `1.5 KiB`, `20.0 MiB`, `3.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `n` per second over `d` (0 for no time at all).
pub fn per_second(n: u64, d: Duration) -> u64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        (n as f64 / s) as u64
    } else {
        0
    }
}

/// A status line for work the library does in one call (`verify` reading a big
/// target): the bytes this process read so far (`rchar` in `/proc/self/io`) against
/// `total`, redrawn from a thread of its own until dropped. Off when stderr is not a
/// terminal.
pub struct ReadProgress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn bytes_read() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|l| l.strip_prefix("rchar:")).and_then(|v| v.trim().parse().ok())
}

impl ReadProgress {
    pub fn start(label: &'static str, total: u64) -> ReadProgress {
        let stop = Arc::new(AtomicBool::new(false));
        let mut p = Progress::new();
        let Some(base) = bytes_read().filter(|_| p.is_on()) else { return ReadProgress { stop, thread: None } };
        let line = move |p: &mut Progress| {
            let done = bytes_read().unwrap_or(base).saturating_sub(base).min(total);
            p.update(|t| {
                let pct = (done * 100).checked_div(total).unwrap_or(100);
                format!(
                    "{label}: {} of {} checked ({pct}%, {}/s)",
                    bytes(done),
                    bytes(total),
                    bytes(per_second(done, t))
                )
            });
        };
        line(&mut p); // at once, before the work starts
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    line(&mut p);
                }
            })
            .ok();
        ReadProgress { stop, thread }
    }
}

impl Drop for ReadProgress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join(); // its Progress erases the line as it is dropped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates_read_as_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(20 << 20), "20.0 MiB");
        assert_eq!(bytes(3 << 40), "3.0 TiB");
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000);
        assert_eq!(per_second(5, Duration::ZERO), 0);
    }
}
