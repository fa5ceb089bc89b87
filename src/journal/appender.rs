//! Background commit: an [`Appender`] owns a journal and a committer thread, so a
//! caller that logs hands a line over and goes on; the committer appends whatever is
//! queued as one batch (one transaction, one fsync). docs/design.md, "Background
//! commit", states the semantics.
//!
//! Keeps: records are committed in push order, each at most once; `flush` returns `Ok`
//! only once every record pushed before it is durable; no record leaves the queue
//! except by being committed, by `OnFull::Drop` at push (counted), or by `close`
//! giving up (counted in its error).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sync::{Condvar, Mutex};

use super::run::Lines;
use super::waits::WaitHistogram;
use super::{validate_line, Journal, JournalOptions};
use crate::error::{Error, ErrorKind, Result};

/// What [`Appender::push`] does when the queue is full: when it holds `max_queue_bytes`,
/// or when a record not yet durable has waited longer than `window` (the committer is
/// behind: one more record would break the window), however little it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFull {
    /// Wait until the committer makes room (back-pressure on the caller).
    #[default]
    Block,
    /// Drop the record and count it ([`AppenderStats::dropped`]); `push` says so.
    Drop,
}

crate::options::options! {
    /// Options for an [`Appender`].
    pub struct AppenderOptions {
        /// How the journal is opened (durability, line limit, back-pressure, ...).
        pub journal: JournalOptions = JournalOptions::default(),
        /// The durability window: the longest a pushed record waits to be durable
        /// (unless one commit alone takes longer: a slow disk). The committer commits
        /// at most half of it after the oldest queued record arrived (lingering for
        /// more until then), and `push` waits (or drops, with `OnFull::Drop`) while a
        /// record not yet durable has waited longer. A crash loses at most the records
        /// of the last window. Zero: no linger — the committer commits at once, and
        /// `push` waits (or drops) while a record pushed before it is not durable yet.
        pub window: Duration = Duration::from_millis(10),
        /// Most payload bytes queued and not yet committed.
        pub max_queue_bytes: usize = 8 << 20,
        /// What `push` does when the queue is full.
        pub on_full: OnFull = OnFull::Block,
    }
}

/// An appender's counters since it was opened ([`Appender::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppenderStats {
    /// Records queued by `push` (the `n`th pushed record is durable once `committed`
    /// reaches `n`: records are committed in push order).
    pub pushed: u64,
    /// Records committed (durable).
    pub committed: u64,
    /// Records dropped because the queue was full (`OnFull::Drop`).
    pub dropped: u64,
    /// Transactions the committer made (records per transaction: `committed / commits`).
    pub commits: u64,
    /// Commit attempts that failed (each retried).
    pub failed_commits: u64,
}

/// What became of the lines of one [`Appender::push_lines`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PushedLines {
    /// Lines queued (durable after the next commit).
    pub queued: usize,
    /// Lines dropped because the queue was full (`OnFull::Drop`).
    pub dropped: usize,
}

/// What became of a pushed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued: durable after the next commit ([`Appender::flush`] waits for it).
    Queued,
    /// Dropped because the queue was full (`OnFull::Drop`); counted in
    /// [`AppenderStats::dropped`].
    Dropped,
}

/// The committer thread's scheduler slice (`sys::request_short_slice`): a short slice
/// puts it on a busy CPU soon after it wakes (its linger's end, its fsync's return).
/// Measured with 4 logging processes on 2 cores (`scripts/bench-logging`, the same
/// build with and without it): p99 push -> durable 18.4-20.5 ms in 11 of 12 runs with
/// it (100 µs to 1 ms alike), 20.5-25.6 ms in 8 runs without (the default slice is
/// 1.4 ms there).
const COMMITTER_SLICE: Duration = Duration::from_micros(300);

/// How many times in a row a batch is sent to its journal opened again by path after
/// `journal_gone` (a name retired again and again as fast as it is made).
const REOPEN_ATTEMPTS: usize = 20;

/// The first retry pause after a failed commit, and the longest.
const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// A commit refused for its size — the journal's backlog limit, or the room its disk
/// keeps — which a smaller batch may pass.
fn refused_for_its_size(e: &Error) -> bool {
    match e {
        Error::JournalFull { .. } => true,
        Error::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
        _ => false,
    }
}

/// Queued records in one buffer, as a run stores them (each followed by `\n`), and
/// when each was pushed: a push is one copy into memory that is reused, not an
/// allocation, and a commit hands the buffer over whole.
#[derive(Default)]
struct Records {
    lines: Lines,
    pushed_at: Vec<Instant>,
}

impl Records {
    fn push(&mut self, line: &[u8], at: Instant) {
        self.lines.push(line);
        self.pushed_at.push(at);
    }

    /// Room for one more record of `len` bytes, or `Err` when the memory cannot be had.
    fn try_reserve(&mut self, len: usize) -> std::result::Result<(), std::collections::TryReserveError> {
        self.lines.try_reserve(len)?;
        self.pushed_at.try_reserve(1)
    }

    fn len(&self) -> usize {
        self.lines.len()
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Payload bytes (without the `\n`s): what the queue's bound counts.
    fn payload_bytes(&self) -> usize {
        self.lines.data_len() - self.lines.len()
    }

    /// The first `n` records (all when there are fewer), taken out; the rest stay.
    fn take_front(&mut self, n: usize) -> Records {
        let rest = self.pushed_at.split_off(n.min(self.pushed_at.len()));
        Records { lines: self.lines.take_front(n), pushed_at: std::mem::replace(&mut self.pushed_at, rest) }
    }

    /// Put `front` before these records (a failed batch, back at the head).
    fn prepend(&mut self, mut front: Records) {
        front.pushed_at.extend_from_slice(&self.pushed_at);
        let lines = std::mem::take(&mut self.lines);
        self.lines = front.lines;
        self.lines.extend(&lines);
        self.pushed_at = front.pushed_at;
    }

    /// Empty, keeping the buffers' capacity for the next batch.
    fn clear(&mut self) {
        self.lines.clear();
        self.pushed_at.clear();
    }
}

/// What the caller's threads and the committer share.
struct State {
    /// Records pushed and not committed, oldest first (the batch being committed is
    /// taken out, and put back at the front if its commit fails).
    queue: Records,
    /// The last committed batch's buffers, emptied, for the next batch to reuse.
    spare: Records,
    /// Payload bytes of the queue and of the batch in flight (the bound).
    queued_bytes: usize,
    /// Someone waits (a flush, a pusher blocked on a full queue): commit without lingering.
    urgent: bool,
    /// When the oldest queued record arrived (the committer lingers from it).
    oldest: Option<Instant>,
    /// When the oldest record of the batch being committed arrived.
    in_flight_since: Option<Instant>,
    /// Records ever pushed (queued) and ever committed: a flush waits until
    /// `committed` reaches the `pushed` it saw.
    pushed: u64,
    committed: u64,
    dropped: u64,
    commits: u64,
    /// Failed commit attempts so far: a flush that saw `failures` change returns
    /// `last_error`.
    failures: u64,
    /// The error of the committer's last attempt while none succeeded since (it is
    /// retrying, with backoff, what it cannot store now: a full journal, a full disk).
    last_error: Option<(ErrorKind, String)>,
    /// An error retrying cannot fix: every later call returns it.
    sticky: Option<(ErrorKind, String)>,
    closing: bool,
}

struct Shared {
    /// The journal; replaced by a new one at the same path when it was retired or
    /// removed under this appender ([`Shared::append_reopening`]).
    journal: Mutex<Arc<Journal>>,
    /// How long committed records waited to be durable (the window as measured): its
    /// own lock, so counting a large batch never holds up `push`. A batch is counted
    /// before the state says it is committed.
    waits: Mutex<WaitHistogram>,
    /// The process that opened it: the committer thread does not exist in a forked child.
    pid: u32,
    /// When it was opened: no line handed over can have waited for it longer.
    opened: Instant,
    opts: AppenderOptions,
    state: Mutex<State>,
    /// Signalled when work arrives or the appender closes (the committer waits on it).
    work: Condvar,
    /// Signalled after each commit attempt (flushers and blocked pushers wait on it).
    progress: Condvar,
    /// Test seam: the committer thread's `/proc` task folder, and whether its short
    /// slice was asked for and granted.
    #[cfg(test)]
    committer_task: std::sync::OnceLock<(Option<std::path::PathBuf>, bool)>,
    /// Test seam: the pause after every failed commit, instead of the backoff.
    #[cfg(test)]
    retry_pause: std::sync::OnceLock<Duration>,
}

/// A journal with a background committer. `push` returns before the line is durable;
/// `flush` waits until it is. Dropping it is `close` without the report.
pub struct Appender {
    shared: Arc<Shared>,
    committer: Option<JoinHandle<()>>,
}

impl Appender {
    /// Open (or create) the journal at `path` and start its committer thread.
    ///
    /// # Errors
    /// As [`Journal::open`]; [`Error::Io`] if the thread cannot be started.
    pub fn open(path: impl AsRef<std::path::Path>, opts: AppenderOptions) -> Result<Appender> {
        let journal = Journal::open(path, opts.journal.clone())?;
        let shared = Arc::new(Shared {
            journal: Mutex::new(Arc::new(journal)),
            waits: Mutex::new(WaitHistogram::default()),
            pid: crate::os::sys::current_pid(),
            opened: Instant::now(),
            opts,
            state: Mutex::new(State {
                queue: Records::default(),
                spare: Records::default(),
                queued_bytes: 0,
                urgent: false,
                oldest: None,
                in_flight_since: None,
                pushed: 0,
                committed: 0,
                dropped: 0,
                commits: 0,
                failures: 0,
                last_error: None,
                sticky: None,
                closing: false,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            #[cfg(test)]
            committer_task: std::sync::OnceLock::new(),
            #[cfg(test)]
            retry_pause: std::sync::OnceLock::new(),
        });
        let for_thread = Arc::clone(&shared);
        let committer = std::thread::Builder::new()
            .name("tributary-appender".into())
            .spawn(move || for_thread.run())
            .map_err(|e| {
            Error::io(
                "starting the appender's committer thread (the process or its user is at its limit of threads \
                     or processes: `ulimit -u`, a container's pids.max — raise it, or use a Journal, which needs \
                     no thread)",
                e,
            )
        })?;
        Ok(Appender { shared, committer: Some(committer) })
    }

    /// The journal this appender writes.
    #[must_use]
    pub fn journal(&self) -> Arc<Journal> {
        Arc::clone(&self.shared.journal.lock())
    }

    /// Queue `line` (without its `\n`) for the next commit and return: it is not
    /// durable yet (see [`flush`](Self::flush)).
    ///
    /// # Errors
    /// [`Error::InvalidLine`] for a line the journal refuses (nothing is queued);
    /// the sticky error after a failure retrying cannot fix; the error of a commit
    /// attempt that failed while this push waited for room (nothing is queued; the
    /// queued records stay and are retried); [`Error::InvalidArgument`] after `close`.
    pub fn push(&self, line: &[u8]) -> Result<Pushed> {
        validate_line(0, line, self.shared.opts.journal.max_line_bytes)?;
        let s = &self.shared;
        s.check_process()?;
        let st = s.state.lock();
        let mut now = Instant::now();
        let failures = st.failures;
        s.queue_one(st, line, (now, None), &mut now, failures).map(|(_, pushed)| pushed)
    }

    /// Queue the lines of `lines` — each ended by `\n`; bytes after the last `\n` are
    /// one more line — in order, exactly as that many [`push`](Self::push)es would (a
    /// full queue waits or drops per record), under one lock and one clock reading.
    /// `held` is how long the caller already held them (the oldest's age): each counts
    /// as pushed that long ago, for the linger, the full-queue test and
    /// [`durable_wait`](Self::durable_wait). Returns how many were queued and dropped,
    /// with the error that stopped it part way, if one did (the lines before it stay
    /// queued).
    ///
    /// # Errors
    /// [`Error::InvalidLine`] (its index among the lines) for a line the journal
    /// refuses: then none is queued. [`Error::InvalidArgument`] for a `held` longer
    /// than the appender has been open (nothing queued), or after `close`. Otherwise as [`push`](Self::push).
    pub fn push_lines(&self, lines: &[u8], held: Duration) -> (PushedLines, Result<()>) {
        let mut done = PushedLines::default();
        let max = self.shared.opts.journal.max_line_bytes;
        // (split by memchr: a byte-by-byte split was most of the call's time)
        let split = || {
            let mut rest = lines;
            std::iter::from_fn(move || {
                if rest.is_empty() {
                    return None;
                }
                let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
                let line = &rest[..end];
                rest = rest.get(end + 1..).unwrap_or_default();
                Some(line)
            })
        };
        if let Some(e) = split().enumerate().find_map(|(i, line)| validate_line(i, line, max).err()) {
            return (done, Err(e));
        }
        let s = &self.shared;
        if let Err(e) = s.check_process() {
            return (done, Err(e));
        }
        let mut st = s.state.lock();
        let mut now = Instant::now();
        let Some(at) = now.checked_sub(held).filter(|&at| at >= s.opened) else {
            return (
                done,
                Err(Error::InvalidArgument(format!(
                    "held is {held:?}, but this appender was opened {:?} ago: give the age of the oldest line, \
                     which it cannot have held longer than that",
                    now.duration_since(s.opened)
                ))),
            );
        };
        let failures = st.failures;
        for line in split() {
            match s.queue_one(st, line, (at, Some(at)), &mut now, failures) {
                Ok((back, pushed)) => {
                    st = back;
                    match pushed {
                        Pushed::Queued => done.queued += 1,
                        Pushed::Dropped => done.dropped += 1,
                    }
                }
                Err(e) => return (done, Err(e)),
            }
        }
        (done, Ok(()))
    }

    /// Wait until every record pushed before this call is durable.
    ///
    /// # Errors
    /// The error of a commit attempt that failed while this call waited (the records
    /// stay queued and are retried), or the sticky error.
    pub fn flush(&self) -> Result<()> {
        let s = &self.shared;
        s.check_process()?;
        let mut st = s.state.lock();
        let (target, failures) = (st.pushed, st.failures);
        while st.committed < target {
            st.urgent = true; // no need to linger: someone is waiting
            s.work.notify_one();
            if let Some(e) = &st.sticky {
                return Err(replay(e));
            }
            if st.failures != failures {
                if let Some(e) = &st.last_error {
                    return Err(replay_retried(e));
                }
            }
            st = s.progress.wait(st);
        }
        Ok(())
    }

    /// The appender's counters (pushed, committed, dropped, transactions, failures).
    /// All zero in a process forked from the one that opened it (its committer, and
    /// the locks it may have held at the fork, are the parent's: waiting on them
    /// could hang the child).
    #[must_use]
    pub fn stats(&self) -> AppenderStats {
        if self.shared.check_process().is_err() {
            return AppenderStats::default();
        }
        let st = self.shared.state.lock();
        AppenderStats {
            pushed: st.pushed,
            committed: st.committed,
            dropped: st.dropped,
            commits: st.commits,
            failed_commits: st.failures,
        }
    }

    /// The durability window as measured: the wait (push → durable) that a fraction `q`
    /// (0 to 1) of the records committed so far did not exceed; `Some(longest)` for
    /// `q = 1`, `None` before the first commit. Each record counts with its own wait
    /// (its push → its batch's fsync returned), and a quantile is the upper edge of a
    /// bucket at most 6 % wide, so this never reads below the true wait. Compare it with the window set:
    /// above it, commits alone take longer than the window (a slow disk). `None` in a
    /// forked child (see [`Appender::stats`]).
    #[must_use]
    pub fn durable_wait(&self, q: f64) -> Option<Duration> {
        if self.shared.check_process().is_err() {
            return None;
        }
        self.shared.waits.lock().quantile(q)
    }

    /// Records pushed and not yet committed. 0 in a forked child (see
    /// [`Appender::stats`]).
    #[must_use]
    pub fn pending(&self) -> u64 {
        if self.shared.check_process().is_err() {
            return 0;
        }
        let st = self.shared.state.lock();
        st.pushed - st.committed
    }

    /// Flush, stop the committer and close the journal.
    ///
    /// # Errors
    /// The flush's error: then the records still queued are not stored, and the
    /// error says how many.
    pub fn close(mut self) -> Result<()> {
        // `close` owns the appender, so no push can race it: after a flush that
        // returned Ok nothing is left, and after an error `left` says what is lost —
        // nothing, when the committer's last attempts stored it all.
        let flushed = self.flush();
        let in_a_child = self.shared.check_process().is_err();
        let left = self.stop();
        match flushed {
            Ok(()) => Ok(()),
            Err(e) if left == 0 && in_a_child => Err(e),
            Err(_) if left == 0 => Ok(()),
            Err(e) => {
                // the committer's own words, not flush's "retried": nothing is, now
                let said = {
                    let st = self.shared.state.lock();
                    st.sticky.as_ref().or(st.last_error.as_ref()).map(|(_, m)| m.clone())
                };
                Err(Error::Background {
                    kind: e.kind(),
                    message: format!(
                        "{} ({left} queued record(s) were not stored: the appender closed)",
                        said.unwrap_or_else(|| e.to_string())
                    ),
                    records_not_stored: left as u64,
                })
            }
        }
    }

    /// Stop the committer; returns how many records were still queued.
    fn stop(&mut self) -> usize {
        if self.shared.check_process().is_err() {
            // a forked child: the committer is the parent's; leave it alone
            self.committer.take();
            return 0;
        }
        {
            let mut st = self.shared.state.lock();
            st.closing = true;
            self.shared.work.notify_one();
            self.shared.progress.notify_all();
        }
        if let Some(t) = self.committer.take() {
            let _ = t.join();
        }
        let st = self.shared.state.lock();
        usize::try_from(st.pushed - st.committed).unwrap_or(usize::MAX)
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        if self.committer.is_some() {
            let _ = self.flush();
            self.stop();
        }
    }
}

impl Shared {
    /// Queue one valid record pushed at `at` (`now` is the clock when the lock was
    /// taken, read again after each wait for room; `failures` the failure count when
    /// the push began), waiting for room or dropping it when the queue is full. `own`:
    /// the time a `push_lines` call gave its lines, which does not count as records
    /// waiting past the window for the rest of that call.
    fn queue_one<'a>(
        &'a self,
        mut st: crate::sync::MutexGuard<'a, State>,
        line: &[u8],
        (at, own): (Instant, Option<Instant>),
        now: &mut Instant,
        failures: u64,
    ) -> Result<(crate::sync::MutexGuard<'a, State>, Pushed)> {
        loop {
            if let Some(e) = &st.sticky {
                return Err(replay(e));
            }
            // Waiting for room the committer cannot make (a full disk, a failing
            // share): the failure it met while this push waited, not a silent wait for
            // ever. The record is not queued.
            if st.failures != failures {
                if let Some(e) = &st.last_error {
                    return Err(replay_retried(e));
                }
            }
            if st.closing {
                return Err(Error::InvalidArgument("this appender is closed".into()));
            }
            // Full: the bytes bound (a record larger than the whole queue is let in
            // alone, once the queue is empty), or a record has waited past the window.
            let fits = st.queued_bytes == 0 || st.queued_bytes + line.len() <= self.opts.max_queue_bytes;
            // (a push_lines call's own lines, held by its caller, do not make the rest
            // of the call overdue: each would wait for a commit of its own, or be
            // dropped — an outside tester saw 249 kept lines take 202 commits)
            let overdue = [st.in_flight_since, st.oldest]
                .into_iter()
                .flatten()
                .filter(|&t| Some(t) != own)
                .min()
                .is_some_and(|t| now.saturating_duration_since(t) >= self.opts.window);
            if fits && !overdue {
                break;
            }
            if self.opts.on_full == OnFull::Drop {
                st.dropped += 1;
                return Ok((st, Pushed::Dropped));
            }
            // No room, and the committer is retrying what it cannot store: fail now
            // with its error, as an append would, the record not queued. Waiting for its
            // next attempt made every logging call take up to a second (the backoff)
            // and fail all the same (an outside tester: 1,000 records in 143 s).
            if let Some(e) = &st.last_error {
                return Err(replay_retried(e));
            }
            st.urgent = true;
            self.work.notify_one();
            st = self.progress.wait(st);
            *now = Instant::now();
        }
        if let Err(e) = st.queue.try_reserve(line.len()) {
            // (it aborted the whole process, a Python application with it: an outside
            // tester, under an address-space limit)
            return Err(Error::io(
                format!(
                    "queueing a record of {} bytes: this process is out of memory ({e}); the record is not \
                     queued. Lower max_queue_bytes (a queue holds about that much, and a commit a few MiB more) \
                     or give the process more memory",
                    line.len()
                ),
                std::io::Error::from_raw_os_error(libc::ENOMEM),
            ));
        }
        st.queued_bytes += line.len();
        st.queue.push(line, at);
        st.pushed += 1;
        match st.oldest {
            // the first record since the last commit: wake the committer, which lingers
            None => {
                st.oldest = Some(at);
                self.work.notify_one();
            }
            // (a caller's held lines may be older than what is queued)
            Some(oldest) if at < oldest => st.oldest = Some(at),
            Some(_) => {}
        }
        Ok((st, Pushed::Queued))
    }

    /// The committer, with a panic turned into a sticky error (flushers must not wait
    /// for a thread that is gone).
    fn run(&self) {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit_loop())).is_err() {
            let mut st = self.state.lock();
            st.sticky =
                Some((ErrorKind::Io, "the appender's committer thread panicked (a bug, please report it)".into()));
            self.progress.notify_all();
        }
    }

    /// Wait for records, linger, commit them all as one batch; retry a failed batch
    /// with backoff; stop when closing (after one last attempt).
    fn commit_loop(&self) {
        // Best effort: without it the committer still works, only later on a busy CPU.
        let asked = crate::os::sys::request_short_slice(COMMITTER_SLICE);
        #[cfg(test)]
        let _ = self.committer_task.set((std::fs::read_link("/proc/thread-self").ok(), matches!(asked, Ok(true))));
        let _ = asked;
        let mut backoff = RETRY_MIN;
        // Records per commit: all that are queued, until a commit fails. A batch the
        // journal can never take whole (its backlog limit, a nearly full disk) was
        // retried whole for ever and discarded at close (an outside tester): after a
        // failure the next batch is half as long, after a success twice.
        let mut most = usize::MAX;
        // When the batch now being halved was first refused for its size: the halved
        // retries share what is left of the journal's `full_wait` (each waited it
        // whole, and a flush took log2(records) + 1 times it — an outside tester).
        let mut halving_since: Option<Instant> = None;
        let mut st = self.state.lock();
        loop {
            if st.queue.is_empty() {
                if st.closing {
                    return;
                }
                st = self.work.wait(st);
                continue;
            }
            // Linger for more (half the window), unless someone waits or the appender closes.
            let until = st.oldest.unwrap_or_else(Instant::now) + self.opts.window / 2;
            while !st.urgent && !st.closing && Instant::now() < until {
                st = self.work.wait_until(st, until);
            }
            st.urgent = false;
            st.in_flight_since = st.oldest.take();
            let batch = if st.queue.len() <= most {
                let spare = std::mem::take(&mut st.spare);
                std::mem::replace(&mut st.queue, spare)
            } else {
                let batch = st.queue.take_front(most);
                st.oldest = st.queue.pushed_at.first().copied();
                batch
            };
            let closing = st.closing;
            drop(st);
            let full_wait = self.opts.journal.full_wait.map(|w| match halving_since {
                Some(since) => w.saturating_sub(since.elapsed()),
                None => w,
            });
            let started = Instant::now();
            let mut batch = batch;
            let result = self.append_reopening(&mut batch, full_wait);
            // durable from here (the transaction's fsync returned), however long the
            // queue's lock takes to get on a busy machine
            let durable_at = Instant::now();
            if result.is_ok() {
                let mut waits = self.waits.lock();
                for &pushed in &batch.pushed_at {
                    waits.record(durable_at.saturating_duration_since(pushed));
                }
            }
            st = self.state.lock();
            match result {
                Ok(_) => {
                    st.queued_bytes -= batch.payload_bytes();
                    st.committed += batch.len() as u64;
                    st.commits += 1;
                    st.in_flight_since = None;
                    st.last_error = None;
                    batch.clear();
                    st.spare = batch;
                    backoff = RETRY_MIN;
                    most = most.saturating_mul(2);
                    if st.queue.is_empty() {
                        // (a part stored while the rest is still refused keeps the one
                        // wait going: each part restarting it made a flush take 3-4
                        // times full_wait, an outside tester)
                        halving_since = None;
                    }
                    self.progress.notify_all();
                }
                Err(e) => {
                    let tried = batch.len();
                    let halved = tried > 1;
                    most = (batch.len() / 2).max(1);
                    // Back at the front, in order, before what was pushed meanwhile.
                    st.queue.prepend(batch);
                    st.oldest = st.in_flight_since.take();
                    if halved && refused_for_its_size(&e) {
                        halving_since.get_or_insert(started);
                        // A smaller batch may fit: try it at once (closing or not), telling
                        // no one yet (a flush reported "journal full" while records were
                        // being stored).
                        st.urgent = true; // at once: not after another linger
                        continue;
                    }
                    st.failures += 1;
                    halving_since = None; // (the next attempt, after a backoff, waits again)
                    let seen = (e.kind(), as_the_committers(&e, tried));
                    if retrying_cannot_fix(e.kind()) {
                        let (kind, message) = seen;
                        st.sticky = Some((
                            kind,
                            format!(
                                "{message}; the appender cannot go on: records queued and not yet committed will \
                                 not be stored"
                            ),
                        ));
                    } else {
                        st.last_error = Some(seen);
                    }
                    self.progress.notify_all();
                    if st.sticky.is_some() || closing {
                        return;
                    }
                    #[cfg(test)]
                    let pause = self.retry_pause.get().copied().unwrap_or(backoff);
                    #[cfg(not(test))]
                    let pause = backoff;
                    let until = Instant::now() + pause;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    while !st.closing && Instant::now() < until {
                        st = self.work.wait_until(st, until);
                    }
                }
            }
        }
    }

    /// Append a batch. A journal retired or removed under this appender
    /// (`journal_gone`: nothing of the batch was stored) is opened again by its path —
    /// a new journal there, which drains like any — and the batch sent to it: a
    /// logger outlives its journal's retirement (`--retire-idle`, `retire`). It made
    /// every later record fail for good, lost (an outside tester).
    fn append_reopening(&self, batch: &mut Records, full_wait: Option<Duration>) -> Result<u64> {
        let mut reopened = 0;
        loop {
            let journal = Arc::clone(&self.journal.lock());
            let (result, lines) = journal.append_owned(std::mem::take(&mut batch.lines), full_wait);
            batch.lines = lines;
            match result {
                Err(e) if e.kind() == ErrorKind::JournalGone && reopened < REOPEN_ATTEMPTS => {
                    reopened += 1;
                    let again = Journal::open(journal.path(), self.opts.journal.clone())?;
                    *self.journal.lock() = Arc::new(again);
                }
                r => return r,
            }
        }
    }

    /// The committer thread is the opening process's: refuse in a forked child.
    fn check_process(&self) -> Result<()> {
        let me = crate::os::sys::current_pid();
        if me == self.pid {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "this appender on journal {} was opened in process {} and this is process {me}, forked from it: its \
             committer thread does not exist here. Open an appender (on its own journal file) in the child",
            self.journal.lock().path().display(),
            self.pid
        )))
    }
}

/// Errors after which committing to this journal cannot succeed by trying again.
fn retrying_cannot_fix(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::JournalGone | ErrorKind::InvalidArgument | ErrorKind::InvalidLine | ErrorKind::CorruptJournalRow
    )
}

/// The committer's error as the callers it is handed to read it: its own words speak of
/// "this call" — the commit — and the push, flush or close that reports it made
/// another call (an outside tester read "nothing of this call was stored" from a
/// `push_lines` whose lines had been queued, and were stored later).
fn as_the_committers(e: &Error, records: usize) -> String {
    format!("{e} (met by the appender's background commit of {records} queued record(s): the call meant above)")
}

/// The committer's last error, handed to a push or flush: its records are retried.
/// (`close` hands it over as it is, with what became of them.)
fn replay_retried((kind, message): &(ErrorKind, String)) -> Error {
    Error::Background {
        kind: *kind,
        message: format!("{message}; its records stay queued and are retried"),
        records_not_stored: 0,
    }
}

/// A recorded error, handed to another caller.
fn replay((kind, message): &(ErrorKind, String)) -> Error {
    Error::Background { kind: *kind, message: message.clone(), records_not_stored: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Compactor, CompactorOptions};

    /// A journal in a fresh folder, an appender on it with `opts`, and a target there.
    fn setup(opts: AppenderOptions) -> (tempfile::TempDir, Appender) {
        let d = tempfile::tempdir().unwrap();
        let a = Appender::open(d.path().join("a.journal"), opts).unwrap();
        (d, a)
    }

    /// Transactions the journal holds (one row of `runs` per committed batch).
    fn batches(d: &tempfile::TempDir) -> i64 {
        let c = rusqlite::Connection::open(d.path().join("a.journal")).unwrap();
        c.query_row("SELECT count(*) FROM runs", [], |r| r.get(0)).unwrap()
    }

    /// The target's lines after draining the journal.
    fn drained(d: &tempfile::TempDir) -> Vec<String> {
        let target = d.path().join("out.log");
        let c = Compactor::new(&target, CompactorOptions::default().create(true)).unwrap();
        c.drain_paths(&[d.path().join("a.journal")]).unwrap();
        std::fs::read_to_string(&target).unwrap().lines().map(str::to_string).collect()
    }

    /// Never lingering out: only a flush (or a full queue) makes the committer commit.
    fn lingering_forever() -> AppenderOptions {
        AppenderOptions::default().window(Duration::from_secs(7200))
    }

    #[test]
    fn pushed_records_are_committed_in_order_as_one_batch_when_flushed() {
        let (d, a) = setup(lingering_forever());
        for i in 0..100 {
            assert_eq!(a.push(format!("line {i}").as_bytes()).unwrap(), Pushed::Queued);
        }
        assert_eq!(a.pending(), 100);
        a.flush().unwrap();
        assert_eq!(a.pending(), 0);
        let s = a.stats();
        assert_eq!((s.pushed, s.committed, s.commits, s.dropped, s.failed_commits), (100, 100, 1, 0, 0));
        a.close().unwrap();
        assert_eq!(batches(&d), 1, "100 pushes then a flush: one transaction");
        assert_eq!(drained(&d), (0..100).map(|i| format!("line {i}")).collect::<Vec<_>>());
    }

    #[test]
    fn push_lines_queues_each_line_of_the_buffer_in_order_with_the_pushes_around_it() {
        let (d, a) = setup(lingering_forever());
        a.push(b"first").unwrap();
        let (done, r) = a.push_lines(b"a\nb\n\nc", Duration::ZERO); // no final '\n': "c" is a line
        r.unwrap();
        assert_eq!(done, PushedLines { queued: 4, dropped: 0 });
        assert_eq!(a.push_lines(b"", Duration::ZERO).0.queued, 0, "no bytes, no line");
        assert_eq!(a.push_lines(b"\n", Duration::ZERO).0.queued, 1, "one empty line");
        assert_eq!(a.push_lines(b"d\ne\n", Duration::ZERO).0.queued, 2, "the final '\\n' ends the last line");
        a.push(b"last").unwrap();
        a.flush().unwrap();
        assert_eq!(a.stats().commits, 1, "lingering: only the flush committed");
        a.close().unwrap();
        assert_eq!(drained(&d), ["first", "a", "b", "", "c", "", "d", "e", "last"]);
    }

    #[test]
    fn push_lines_with_a_bad_line_queues_none_of_them() {
        let (_d, a) = setup(lingering_forever().journal(JournalOptions::default().max_line_bytes(8)));
        let (done, r) = a.push_lines(b"ok\nfine\nmuch too long\nok", Duration::ZERO);
        match r {
            Err(Error::InvalidLine { index, .. }) => assert_eq!(index, 2),
            other => panic!("expected the third line refused, got {other:?}"),
        }
        assert_eq!(done, PushedLines::default());
        assert_eq!(a.pending(), 0);
        let (done, r) = a.push_lines(b"a\nb", Duration::from_secs(3600));
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
        assert_eq!((done, a.pending()), (PushedLines::default(), 0));
    }

    #[test]
    fn push_lines_drops_per_line_when_the_queue_is_full() {
        let (d, a) = setup(lingering_forever().max_queue_bytes(10).on_full(OnFull::Drop));
        let (done, r) = a.push_lines(b"aaaa\nbbbb\ncccc\n", Duration::ZERO);
        r.unwrap();
        assert_eq!(done, PushedLines { queued: 2, dropped: 1 });
        assert_eq!(a.stats().dropped, 1);
        a.close().unwrap();
        assert_eq!(drained(&d), ["aaaa", "bbbb"]);
    }

    #[test]
    fn lines_held_past_the_window_do_not_make_the_rest_of_their_call_overdue() {
        // Held longer than the window before the call: the queue is not "behind"
        // because of them, so none of them is dropped (nor, when blocking, waits for
        // a commit of its own).
        let window = Duration::from_millis(20);
        let (_d, a) = setup(AppenderOptions::default().window(window).on_full(OnFull::Drop));
        std::thread::sleep(window * 3); // (a line cannot be held longer than the appender is open)
        let (done, r) = a.push_lines(b"a\nb\nc\nd", window * 2);
        r.unwrap();
        assert_eq!(done, PushedLines { queued: 4, dropped: 0 });
        a.close().unwrap();
    }

    #[test]
    fn lines_held_by_the_caller_count_as_waiting_since_they_were_held() {
        let (_d, a) = setup(lingering_forever());
        let held = Duration::from_millis(50);
        std::thread::sleep(held); // (a line cannot have been held longer than the appender is open)
        a.push_lines(b"held\nfor a while", held).1.unwrap();
        a.flush().unwrap();
        let longest = a.durable_wait(1.0).unwrap();
        assert!(longest >= held, "durable_wait {longest:?} leaves out the {held:?} the caller held them");
    }

    #[test]
    fn the_committer_commits_by_itself_within_the_window() {
        let (d, a) = setup(AppenderOptions::default().window(Duration::ZERO));
        a.push(b"alone").unwrap();
        // no flush: wait for the condition (committed), not for a time
        while a.pending() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(batches(&d), 1);
        a.close().unwrap();
        assert_eq!(drained(&d), ["alone"]);
    }

    /// A push that needs room while the committer retries what it cannot store fails
    /// at once with its error, the record not queued: it waited for the committer's
    /// next attempt, and every logging call took up to a second (the backoff) to fail
    /// all the same (an outside tester). Here the next attempt is an hour away.
    #[test]
    fn a_push_that_needs_room_while_commits_fail_fails_at_once() {
        let opts =
            lingering_forever().max_queue_bytes(25).journal(JournalOptions::default().max_backlog_bytes(Some(25)));
        let (_d, a) = setup(opts);
        a.shared.retry_pause.set(Duration::from_secs(3600)).unwrap();
        for line in [b"line-00001", b"line-00002", b"line-00003"] {
            a.push(line).unwrap(); // the third waits for the first two to be stored
        }
        let e = a.flush().unwrap_err(); // the third does not fit the journal
        assert_eq!(e.kind(), ErrorKind::JournalFull, "{e}");
        assert!(e.to_string().contains("its records stay queued and are retried"), "{e}");
        assert_eq!(a.push(b"line-00004").unwrap(), Pushed::Queued, "room in the queue: queued");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| tx.send(a.push(b"line-00005")).unwrap());
            // (a hang guard, not a timing: the old push waited the whole hour)
            let pushed = rx.recv_timeout(Duration::from_secs(300));
            if pushed.is_err() {
                a.shared.state.lock().closing = true; // let it go, for the scope to end
                a.shared.progress.notify_all();
            }
            let pushed = pushed.expect("the push waited for the committer's next attempt");
            assert_eq!(pushed.unwrap_err().kind(), ErrorKind::JournalFull);
        });
        let st = a.stats();
        assert_eq!((st.pushed, st.committed, st.failed_commits), (4, 2, 1), "{st:?}");
        // Stopped, not closed: a close would wait an hour for the committer's retry.
        a.shared.state.lock().closing = true;
        a.shared.work.notify_one();
        let mut a = a;
        a.committer.take().expect("the committer runs").join().unwrap();
    }

    #[test]
    fn a_full_queue_drops_and_counts_with_on_full_drop() {
        let (d, a) = setup(lingering_forever().max_queue_bytes(15).on_full(OnFull::Drop));
        assert_eq!(a.push(b"0123456789").unwrap(), Pushed::Queued);
        assert_eq!(a.push(b"abcdefghij").unwrap(), Pushed::Dropped);
        assert_eq!(a.stats().dropped, 1);
        a.flush().unwrap();
        assert_eq!(a.push(b"abcdefghij").unwrap(), Pushed::Queued, "room again after the commit");
        a.close().unwrap();
        assert_eq!(drained(&d), ["0123456789", "abcdefghij"]);
    }

    #[test]
    fn a_full_queue_blocks_until_the_committer_makes_room_with_on_full_block() {
        let (d, a) = setup(lingering_forever().max_queue_bytes(15));
        a.push(b"0123456789").unwrap();
        // Full: this push waits, and its waiting makes the committer commit at once
        // (without it the committer would linger for an hour).
        assert_eq!(a.push(b"abcdefghij").unwrap(), Pushed::Queued);
        a.close().unwrap();
        assert_eq!(batches(&d), 2);
        assert_eq!(drained(&d), ["0123456789", "abcdefghij"]);
    }

    #[test]
    fn a_record_past_the_window_holds_back_pushes() {
        // Window 0: while any record is not yet durable, the queue counts as full. The
        // commit is held up, deterministically, by another connection's write lock.
        let (d, a) = setup(AppenderOptions::default().window(Duration::ZERO).on_full(OnFull::Drop));
        let blocker = rusqlite::Connection::open(d.path().join("a.journal")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert_eq!(a.push(b"first").unwrap(), Pushed::Queued);
        assert_eq!(a.push(b"second").unwrap(), Pushed::Dropped, "first is not durable yet");
        blocker.execute_batch("ROLLBACK").unwrap();
        a.flush().unwrap();
        assert_eq!(a.push(b"third").unwrap(), Pushed::Queued, "nothing pending any more");
        assert_eq!(a.stats().dropped, 1);
        a.close().unwrap();
        assert_eq!(drained(&d), ["first", "third"]);
    }

    #[test]
    fn the_measured_window_covers_a_commit_held_up_past_the_window_set() {
        // Window 0, and the commit held up by another connection's write lock until 50 ms
        // after the push returned: the record waited at least that long to be durable,
        // and at most until its flush returned.
        let (d, a) = setup(AppenderOptions::default().window(Duration::ZERO));
        assert_eq!(a.durable_wait(0.99), None, "nothing committed yet");
        let blocker = rusqlite::Connection::open(d.path().join("a.journal")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let before_push = Instant::now();
        a.push(b"held").unwrap();
        let after_push = Instant::now();
        while after_push.elapsed() < Duration::from_millis(50) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let held = after_push.elapsed();
        blocker.execute_batch("ROLLBACK").unwrap();
        a.flush().unwrap();
        let at_most = before_push.elapsed();
        let longest = a.durable_wait(1.0).unwrap();
        // whole microseconds: the measured wait is truncated to one
        assert!(longest + Duration::from_micros(1) >= held, "measured {longest:?}, held {held:?}");
        assert!(longest <= at_most, "measured {longest:?}, at most {at_most:?}");
        assert_eq!(a.durable_wait(0.5), Some(longest), "one record: every quantile is its wait");
        a.close().unwrap();
        assert_eq!(drained(&d), ["held"]);
    }

    #[test]
    fn each_record_is_measured_by_its_own_wait_not_its_batch_s_oldest() {
        // Two records 50 ms apart, committed as one batch by the flush: the first
        // waited at least 50 ms, the second at most from just before its push to the
        // flush's return (a bucket's upper edge, at most 6 % above).
        let (d, a) = setup(lingering_forever());
        a.push(b"early").unwrap();
        let early_pushed = Instant::now();
        while early_pushed.elapsed() < Duration::from_millis(50) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let before_late = Instant::now();
        a.push(b"late").unwrap();
        a.flush().unwrap();
        let late_at_most = before_late.elapsed();
        assert_eq!(a.stats().commits, 1, "one batch");
        let longest = a.durable_wait(1.0).unwrap();
        assert!(longest >= Duration::from_millis(50), "the early record waited {longest:?}");
        let p50 = a.durable_wait(0.5).unwrap();
        assert!(
            p50 <= late_at_most + late_at_most / 15 + Duration::from_micros(1),
            "the late record's wait read {p50:?}, it was at most {late_at_most:?}"
        );
        a.close().unwrap();
        assert_eq!(drained(&d), ["early", "late"]);
    }

    /// The committer asks for a short scheduler slice, and gets it (where the kernel
    /// shows it: `se.slice` in `/proc/.../sched`, Linux 6.12+ with scheduler debugging;
    /// never under a seccomp filter, which could kill the process for the call).
    #[test]
    fn the_committer_thread_runs_with_a_short_slice() {
        let (_d, a) = setup(lingering_forever());
        a.push(b"x").unwrap();
        a.flush().unwrap(); // the committer has run past its start
        let (task, granted) = a.shared.committer_task.get().cloned().expect("the committer has started");
        let sched =
            task.and_then(|t| std::fs::read_to_string(std::path::Path::new("/proc").join(t).join("sched")).ok());
        let slice = sched.as_deref().and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("se.slice"))?;
            line.split(':').nth(1)?.trim().parse::<u64>().ok()
        });
        match slice {
            None => eprintln!("this kernel does not show a thread's slice: nothing to check"),
            Some(_) if crate::os::sys::under_seccomp_filter() => {
                eprintln!("under a seccomp filter: the slice is not asked for");
            }
            Some(ns) => {
                assert!(granted, "the kernel shows a slice but refused the call");
                assert_eq!(ns, u64::try_from(COMMITTER_SLICE.as_nanos()).unwrap());
            }
        }
        a.close().unwrap();
    }

    /// A failed batch goes back before what was pushed meanwhile, each record with its
    /// own push time.
    #[test]
    fn a_failed_batch_goes_back_at_the_head_in_order() {
        let t0 = Instant::now();
        let later = |ms| t0 + Duration::from_millis(ms);
        let mut failed = Records::default();
        failed.push(b"a", t0);
        failed.push(b"b", later(1));
        let mut queue = Records::default();
        queue.push(b"c", later(2));
        queue.prepend(failed);
        assert_eq!(queue.lines.iter().collect::<Vec<_>>(), [b"a".as_slice(), b"b", b"c"]);
        assert_eq!(queue.pushed_at, [t0, later(1), later(2)]);
        assert_eq!((queue.len(), queue.payload_bytes()), (3, 3));
    }

    #[test]
    fn a_bad_line_is_refused_at_push_and_nothing_is_queued() {
        let (d, a) = setup(lingering_forever().journal(JournalOptions::default().max_line_bytes(4)));
        assert_eq!(a.push(b"a\nb").unwrap_err().kind(), ErrorKind::InvalidLine);
        assert_eq!(a.push(b"too long").unwrap_err().kind(), ErrorKind::InvalidLine);
        assert_eq!(a.pending(), 0);
        a.push(b"ok").unwrap();
        a.close().unwrap();
        assert_eq!(drained(&d), ["ok"]);
    }

    /// A journal removed (or retired) under an appender: its next commit is refused
    /// (`journal_gone`, nothing stored), and the appender opens the name again and
    /// commits there — never into the unlinked file, and not lost for good either (a
    /// logging process kept failing every record after a retirement: an outside
    /// tester).
    #[test]
    fn a_journal_removed_under_it_is_opened_again_by_its_path() {
        let (d, a) = setup(lingering_forever());
        a.push(b"before").unwrap();
        a.flush().unwrap();
        a.push(b"after").unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(d.path().join(format!("a.journal{suffix}")));
        }
        a.flush().expect("committed into the journal opened again");
        a.push(b"more").unwrap();
        a.close().unwrap();
        // "before" went with the removed files; the rest is in the new journal
        assert_eq!(drained(&d), ["after", "more"]);
    }
}
