//! One host's writer process, for tributary (`writer`: threads sharing one journal
//! handle, durable `full` appends) and for the seed design (`seed-writer`: per line
//! lock, fstat, pwrite at the size, fsync, unlock). concurrent-log-handler's writer is
//! the Python script beside this file, with the same arguments and ack file.
//!
//! Keeps: the line format (`h<host> t<thread> i<index> ` padded with dots to
//! [`LINE_LEN`] bytes, so every line names itself and a torn one shows) and the ack
//! file (per thread, each line's send and return time in Unix nanoseconds: the same
//! machine clock the orchestrator stamps arrivals with).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use tributary::{Appender, AppenderOptions, Journal, JournalOptions};

use crate::{sys, Ctx, R};

/// Bytes per line, without the newline (as in the benchmark suite).
pub const LINE_LEN: usize = 100;

/// Unix time in nanoseconds: every process of the run reads the same clock.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Sleep until the Unix time `at_ns` (no-op if it has passed).
pub fn sleep_until_ns(at_ns: u64) {
    let now = now_ns();
    if at_ns > now {
        std::thread::sleep(Duration::from_nanos(at_ns - now));
    }
}

/// Line `i` of thread `t` on host `h`.
pub fn make_line(h: u32, t: u32, i: u64) -> Vec<u8> {
    let mut line = format!("h{h} t{t} i{i} ").into_bytes();
    line.resize(LINE_LEN, b'.');
    line
}

/// (host, thread, index) of a line [`make_line`] made; `None` for anything else (a torn
/// or foreign line).
pub fn parse_line(line: &[u8]) -> Option<(u32, u32, u64)> {
    if line.len() != LINE_LEN {
        return None;
    }
    let s = std::str::from_utf8(line).ok()?;
    let mut it = s.splitn(4, ' ');
    let h = it.next()?.strip_prefix('h')?.parse().ok()?;
    let t = it.next()?.strip_prefix('t')?.parse().ok()?;
    let i = it.next()?.strip_prefix('i')?.parse().ok()?;
    let rest = it.next()?;
    rest.bytes().all(|b| b == b'.').then_some((h, t, i))
}

/// What every writer process is told.
#[derive(Args, Clone)]
pub struct Common {
    /// This host's number (1..N).
    #[arg(long)]
    pub host: u32,
    #[arg(long, default_value_t = 8)]
    pub threads: u32,
    /// Start at this Unix time (ns), so that every host starts together.
    #[arg(long)]
    pub start_at_ns: u64,
    #[arg(long)]
    pub seconds: f64,
    /// Offered rate, lines/s for this host (all threads together); 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Where to write each line's send and return times.
    #[arg(long)]
    pub acks: PathBuf,
}

#[derive(Args)]
pub struct WriterArgs {
    #[command(flatten)]
    pub common: Common,
    /// The host's journal (local disk).
    #[arg(long)]
    pub journal: PathBuf,
    /// Background commit with this durability window (an `Appender`: a line is
    /// acknowledged when queued, durable within the window; the writer flushes before
    /// it exits). 0: durable on return (`Journal::append`, `full`).
    #[arg(long, default_value_t = 0)]
    pub background_window_ms: u64,
}

#[derive(Args)]
pub struct SeedWriterArgs {
    #[command(flatten)]
    pub common: Common,
    /// The shared file, through this host's mount.
    #[arg(long)]
    pub file: PathBuf,
    /// The lock file beside it.
    #[arg(long)]
    pub lock: PathBuf,
}

/// One thread's (send, return) times, in line order.
type Times = Vec<(u64, u64)>;

/// Run `threads` threads calling `append(t, line)` until the time is up (paced when a
/// rate is set); write the ack file; the first error stops its thread and is returned.
fn drive<S: Send + 'static>(
    c: &Common,
    per_thread: impl Fn(u32) -> R<S>,
    append: impl Fn(&mut S, &[u8]) -> R<()> + Send + Sync + 'static,
) -> R<()> {
    let append = Arc::new(append);
    let mut states = Vec::new();
    for t in 0..c.threads {
        states.push(per_thread(t)?);
    }
    println!("ready");
    std::io::stdout().flush().ctx("stdout")?;
    let end_ns = c.start_at_ns + (c.seconds * 1e9) as u64;
    let handles: Vec<_> = states
        .into_iter()
        .enumerate()
        .map(|(t, mut st)| {
            let (append, host, threads, rate, start) = (Arc::clone(&append), c.host, c.threads, c.rate, c.start_at_ns);
            std::thread::spawn(move || -> (Times, Option<String>) {
                let mut times = Times::new();
                sleep_until_ns(start);
                for i in 0u64.. {
                    if rate > 0.0 {
                        let due = start + ((i * u64::from(threads) + t as u64) as f64 / rate * 1e9) as u64;
                        if due >= end_ns {
                            break;
                        }
                        sleep_until_ns(due);
                    }
                    let sent = now_ns();
                    if sent >= end_ns {
                        break;
                    }
                    let line = make_line(host, t as u32, i);
                    if let Err(e) = append(&mut st, &line) {
                        return (times, Some(format!("thread {t}, line {i}: {e}")));
                    }
                    times.push((sent, now_ns()));
                }
                (times, None)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut first_err = None;
    for h in handles {
        let (times, err) = h.join().map_err(|_| "a writer thread panicked".to_string())?;
        all.push(times);
        if first_err.is_none() {
            first_err = err;
        }
    }
    write_acks(&c.acks, &all)?;
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `T <thread> <count>` then one `<send_ns> <ack_ns>` line per acknowledged line.
fn write_acks(path: &Path, all: &[Times]) -> R<()> {
    let mut w = BufWriter::new(File::create(path).ctx("creating the ack file")?);
    for (t, times) in all.iter().enumerate() {
        writeln!(w, "T {t} {}", times.len()).ctx("ack file")?;
        for (s, a) in times {
            writeln!(w, "{s} {a}").ctx("ack file")?;
        }
    }
    w.flush().ctx("ack file")
}

/// An ack file: per thread, (send, return) of each acknowledged line, in order.
pub fn read_acks(path: &Path) -> R<Vec<Times>> {
    let f = File::open(path).ctx(&format!("opening {}", path.display()))?;
    let mut out: Vec<Times> = Vec::new();
    for line in BufReader::new(f).lines() {
        let line = line.ctx("reading the ack file")?;
        let mut it = line.split(' ');
        match (it.next(), it.next(), it.next()) {
            (Some("T"), Some(_), Some(_)) => out.push(Vec::new()),
            (Some(s), Some(a), None) => {
                let cur = out.last_mut().ok_or("ack file: a time before any thread header")?;
                cur.push((s.parse().ctx("ack file")?, a.parse().ctx("ack file")?));
            }
            _ => return Err(format!("ack file {}: bad line {line:?}", path.display())),
        }
    }
    Ok(out)
}

pub fn tributary_writer(a: WriterArgs) -> R<()> {
    if a.background_window_ms > 0 {
        let opts = AppenderOptions::default().window(Duration::from_millis(a.background_window_ms));
        let appender = Arc::new(Appender::open(&a.journal, opts).ctx("Appender::open")?);
        drive(
            &a.common,
            |_| Ok(Arc::clone(&appender)),
            |ap, line| ap.push(line).map(|_| ()).map_err(|e| format!("Appender::push: {e}")),
        )?;
        // every acknowledged line durable before the process reports done
        return appender.flush().map_err(|e| format!("Appender::flush: {e}"));
    }
    let journal = Arc::new(Journal::open(&a.journal, JournalOptions::default()).ctx("Journal::open")?);
    drive(
        &a.common,
        |_| Ok(Arc::clone(&journal)),
        |j, line| j.append(line).map(|_| ()).map_err(|e| format!("Journal::append: {e}")),
    )
}

/// One seed-design thread's own descriptors (an OFD lock belongs to its open file
/// description, so threads of one process exclude each other as other hosts do).
struct SeedFds {
    file: File,
    lock: File,
}

pub fn seed_writer(a: SeedWriterArgs) -> R<()> {
    let open = |p: &Path| OpenOptions::new().read(true).write(true).create(true).truncate(false).open(p);
    drive(
        &a.common,
        |_| Ok(SeedFds { file: open(&a.file).ctx("opening the file")?, lock: open(&a.lock).ctx("opening the lock")? }),
        |fds, line| {
            let mut buf = line.to_vec();
            buf.push(b'\n');
            sys::lock_exclusive(&fds.lock).ctx("fcntl(F_OFD_SETLKW)")?;
            let r = (|| -> R<()> {
                let size = sys::fstat_size(&fds.file).ctx("fstat")?;
                fds.file.write_all_at(&buf, size).ctx("pwrite")?;
                fds.file.sync_all().ctx("fsync")
            })();
            sys::unlock(&fds.lock).ctx("fcntl(F_UNLCK)")?;
            r
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_themselves_and_torn_ones_do_not_parse() {
        let l = make_line(3, 7, 123_456);
        assert_eq!(l.len(), LINE_LEN);
        assert_eq!(parse_line(&l), Some((3, 7, 123_456)));
        assert_eq!(parse_line(&l[..60]), None);
        let mut torn = l.clone();
        torn[90] = b'h';
        assert_eq!(parse_line(&torn), None);
    }
}
