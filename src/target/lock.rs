//! The target's exclusive lock: an OFD record lock on `<sidecar>/lock`.
//!
//! OFD locks are enforced across hosts by NFS (as POSIX locks) and `GlusterFS`, and are
//! tied to the open file description, so an unrelated `close()` elsewhere in the
//! process cannot drop them. The lock file is opened read-write (an exclusive record
//! lock needs it) and never through a symlink. Since manifest format 2 the lock file
//! also holds the manifest (`slots.rs`), read and written through the same descriptor.
//!
//! Keeps: handover is fair and a hung holder is a `LockTimeout`, never a hang. A
//! waiter does not poll (pollers race at every release, and an unlucky host can lose
//! many times in a row: the multi-host issue measured a 2.3 s p99 wait at 8 hosts);
//! it waits in the kernel (`F_OFD_SETLKW`), in the queue the lock's owner keeps in
//! arrival order, on a helper thread, while the caller waits for that thread with its
//! timeout. A caller that gives up leaves the waiter in its [`LockQueue`] (one per
//! compactor): the next attempt takes the same place in the queue instead of starting
//! another waiter, and a waiter granted the lock while nobody wants it releases it at
//! once, so a lock is never held by a caller that stopped waiting.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::os::sys;

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct TargetLock {
    file: File,
    path: PathBuf,
    /// The slots as this holder last read or wrote them (`None`: not known).
    seen: Mutex<Option<SlotsSeen>>,
    /// It was held by someone else when asked for: this holder queued for it.
    queued: bool,
}

/// What a holder knows of the lock file's slots: which one holds the current manifest,
/// its epoch, and both headers. While the other slot's header is unchanged nobody
/// committed (a commit writes the slot that is not current), so an epoch check is one
/// block read instead of reading and decoding both slots.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotsSeen {
    pub(crate) current: usize,
    pub(crate) epoch: u64,
    pub(crate) headers: [crate::target::slots::SlotHeader; 2],
    /// The current slot's chain of deltas (version 3): a commit by anyone else
    /// either changes the other slot's header or appends where it ends.
    pub(crate) chain: Option<crate::target::slots::Chain>,
}

/// Where a compactor keeps the waiter it left in the lock's queue when it gave up
/// (see the module docs). Cloning shares it.
#[derive(Debug, Default, Clone)]
pub(crate) struct LockQueue {
    kept: Arc<Mutex<Option<Waiter>>>,
    /// A caller is waiting for a grant right now (for tests: a condition to wait on).
    waiting: Arc<std::sync::atomic::AtomicBool>,
}

/// A thread blocked in `F_OFD_SETLKW` on a descriptor of the lock file.
#[derive(Debug)]
struct Waiter {
    file: File,
    path: PathBuf,
    /// The process that started it: a forked child has no such thread.
    pid: u32,
    shared: Arc<(Mutex<WaitState>, Condvar)>,
}

#[derive(Debug, Default)]
struct WaitState {
    /// Someone is waiting for this waiter's outcome; if not when the lock is granted,
    /// the thread releases it at once.
    wanted: bool,
    /// What the thread ended with: granted (and handed over), or an error. `Ok(false)`:
    /// granted while not wanted, so released again.
    outcome: Option<io::Result<bool>>,
}

impl Waiter {
    fn start(path: &Path, create: bool, direct: bool) -> Result<std::result::Result<TargetLock, Waiter>> {
        let file = crate::target::slots::open_with(path, true, create, direct)
            .map_err(|e| Error::io(format!("opening lock file {} read-write", path.display()), e))?;
        match sys::try_lock_exclusive(&file) {
            Ok(true) => {
                return Ok(Ok(TargetLock { file, path: path.to_path_buf(), seen: Mutex::default(), queued: false }))
            }
            Ok(false) => {}
            Err(e) => return Err(Error::io(format!("locking {}", path.display()), e)),
        }
        let fd =
            file.try_clone().map_err(|e| Error::io(format!("duplicating the descriptor of {}", path.display()), e))?;
        let shared = Arc::new((Mutex::new(WaitState { wanted: true, outcome: None }), Condvar::new()));
        let theirs = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("tributary-lock-wait".into())
            .spawn(move || {
                let r = sys::lock_exclusive_wait(&fd);
                let (state, cv) = &*theirs;
                let mut st = lock_state(state);
                st.outcome = Some(match r {
                    Ok(()) if st.wanted => Ok(true),
                    Ok(()) => {
                        let _ = sys::unlock(&fd);
                        Ok(false)
                    }
                    Err(e) => Err(e),
                });
                cv.notify_all();
            })
            .map_err(|e| Error::io("starting the lock waiter thread", e))?;
        Ok(Err(Waiter { file, path: path.to_path_buf(), pid: sys::current_pid(), shared }))
    }
}

fn lock_state(m: &Mutex<WaitState>) -> MutexGuard<'_, WaitState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LockQueue {
    /// Wait up to `timeout` for the exclusive lock on `path`, in the lock's queue (see
    /// the module docs). `direct: false` opens the lock file without `O_DIRECT` (the
    /// multi-host tests' negative control only). `give_up()`, asked every
    /// [`GIVE_UP_CHECK`], ends the wait early as a timeout would (a daemon asked to
    /// stop: nothing is held or changed while waiting).
    pub(crate) fn acquire(
        &self,
        path: &Path,
        timeout: Duration,
        create: bool,
        direct: bool,
        give_up: &dyn Fn() -> bool,
    ) -> Result<TargetLock> {
        if under_valgrind() {
            return poll(path, timeout, create, direct, give_up);
        }
        let started = Instant::now();
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            let waiter = match kept.take().filter(|w| w.path == path && w.pid == sys::current_pid()) {
                Some(w) => w,
                None => match Waiter::start(path, create, direct)? {
                    Ok(held) => return Ok(held),
                    Err(w) => w,
                },
            };
            let left = timeout.saturating_sub(started.elapsed());
            let (state, cv) = &*waiter.shared;
            let mut st = lock_state(state);
            st.wanted = true;
            self.waiting.store(true, std::sync::atomic::Ordering::SeqCst);
            // In slices, to ask give_up() between them: a grant still wakes the wait at once.
            let wait_until = crate::os::clock::deadline_after(left);
            loop {
                let slice = wait_until.saturating_duration_since(Instant::now()).min(GIVE_UP_CHECK);
                (st, _) = cv
                    .wait_timeout_while(st, slice, |s| s.outcome.is_none())
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if st.outcome.is_some() || Instant::now() >= wait_until || give_up() {
                    break;
                }
            }
            self.waiting.store(false, std::sync::atomic::Ordering::SeqCst);
            match st.outcome.take() {
                Some(Ok(true)) => {
                    drop(st);
                    return Ok(TargetLock {
                        file: waiter.file,
                        path: path.to_path_buf(),
                        seen: Mutex::default(),
                        queued: true,
                    });
                }
                // Granted while a previous caller had given up, and released: queue anew.
                Some(Ok(false)) => {}
                Some(Err(e)) => return Err(Error::io(format!("locking {}", path.display()), e)),
                None => {
                    st.wanted = false;
                    drop(st);
                    *kept = Some(waiter);
                    let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    return Err(Error::LockTimeout { lock_path: path.to_path_buf(), waited_ms });
                }
            }
            if started.elapsed() >= timeout {
                let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                return Err(Error::LockTimeout { lock_path: path.to_path_buf(), waited_ms });
            }
        }
    }
}

/// How often a waiter asks its caller whether to give up (a daemon's stop).
const GIVE_UP_CHECK: Duration = Duration::from_millis(10);

/// Valgrind (3.19) does not know that `F_OFD_SETLKW` can block: a thread waiting in
/// it keeps valgrind's scheduler lock, and the whole process stops (seen in the C ABI
/// test under memcheck). Under valgrind the lock is polled instead (not fair).
fn under_valgrind() -> bool {
    static UNDER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *UNDER.get_or_init(|| std::env::var_os("LD_PRELOAD").is_some_and(|p| p.to_string_lossy().contains("vgpreload")))
}

/// The lock by polling with backoff (1 to 25 ms) until `timeout` or `give_up()`: only
/// under valgrind.
fn poll(path: &Path, timeout: Duration, create: bool, direct: bool, give_up: &dyn Fn() -> bool) -> Result<TargetLock> {
    let file = crate::target::slots::open_with(path, true, create, direct)
        .map_err(|e| Error::io(format!("opening lock file {} read-write", path.display()), e))?;
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    let mut queued = false;
    loop {
        match sys::try_lock_exclusive(&file) {
            Ok(true) => return Ok(TargetLock { file, path: path.to_path_buf(), seen: Mutex::default(), queued }),
            Ok(false) => queued = true,
            Err(e) => return Err(Error::io(format!("locking {}", path.display()), e)),
        }
        let waited = start.elapsed();
        if waited >= timeout || give_up() {
            let waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
            return Err(Error::LockTimeout { lock_path: path.to_path_buf(), waited_ms });
        }
        std::thread::sleep(pause.min(timeout.saturating_sub(waited)));
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

impl TargetLock {
    /// Wait up to `timeout` for the exclusive lock on `path`, created 0600 if missing
    /// and `create` (only `init` creates one: a missing lock file is a target that does
    /// not exist, an `Io` error of kind `NotFound` here). Waits in the lock's queue
    /// (fair handover; see the module docs).
    ///
    /// # Errors
    /// [`Error::LockTimeout`] when another holder kept it for `timeout`; [`Error::Io`]
    /// when the lock file cannot be opened (kind `NotFound` when missing and not
    /// `create`) or locked.
    pub fn acquire(path: &Path, timeout: Duration, create: bool) -> Result<TargetLock> {
        LockQueue::default().acquire(path, timeout, create, true, &|| false)
    }

    /// The exclusive lock on `path` (created 0600 if missing and `create`) if nobody
    /// holds it now, without queueing (`Ok(None)` otherwise): a stager whose lines the
    /// holder will commit does not wait (docs/design.md "Staging").
    pub(crate) fn try_acquire(path: &Path, create: bool, direct: bool) -> Result<Option<TargetLock>> {
        let file = crate::target::slots::open_with(path, true, create, direct)
            .map_err(|e| Error::io(format!("opening lock file {} read-write", path.display()), e))?;
        match sys::try_lock_exclusive(&file) {
            Ok(true) => Ok(Some(TargetLock { file, path: path.to_path_buf(), seen: Mutex::default(), queued: false })),
            Ok(false) => Ok(None),
            Err(e) => Err(Error::io(format!("locking {}", path.display()), e)),
        }
    }

    /// The lock file held.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Someone else held the lock when this holder asked for it, so it queued: its
    /// round is contended and keeps its share short (docs/design.md, "Drain protocol").
    pub(crate) fn was_queued(&self) -> bool {
        self.queued
    }

    /// The locked file: the manifest's slots are read and written through it.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// The slots as last read or written under this lock.
    pub(crate) fn seen(&self) -> Option<SlotsSeen> {
        *self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remember the slots as just read or written (`None`: forget, read in full next).
    pub(crate) fn remember(&self, seen: Option<SlotsSeen>) {
        *self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = seen;
    }

    /// Test seam (the `drain.lose_lock` failpoint): give the lock up while this holder
    /// goes on as if it still held it, as an expired NFS lease or a restarted FUSE
    /// client would make it.
    pub(crate) fn vanish(&self) {
        let _ = sys::unlock(&self.file);
    }
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        // Closing the file would release the lock too; unlocking first makes the hand-over
        // explicit. An error here (lost NFS lock) leaves nothing to undo.
        let _ = sys::unlock(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_times_out_then_gets_it_after_release() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let first = TargetLock::acquire(&p, Duration::from_secs(1), true).unwrap();
        // OFD locks conflict between two open file descriptions even in one process.
        let err = TargetLock::acquire(&p, Duration::from_millis(30), true).unwrap_err();
        assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
        drop(first);
        TargetLock::acquire(&p, Duration::from_millis(100), true).unwrap();
    }

    /// A caller that gave up keeps its place: the next attempt of the same queue gets
    /// the lock when it is released, through the waiter it left — and a waiter granted
    /// while nobody waits releases the lock at once.
    #[test]
    fn a_kept_waiter_is_reused_and_never_sits_on_the_lock() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let queue = LockQueue::default();
        let first = TargetLock::acquire(&p, Duration::from_secs(1), true).unwrap();
        assert!(matches!(
            queue.acquire(&p, Duration::from_millis(30), true, true, &|| false),
            Err(Error::LockTimeout { .. })
        ));
        assert!(queue.kept.lock().unwrap().is_some(), "the waiter was not kept");
        drop(first);
        // Nobody wants the kept waiter's grant: it must release it, so a third party gets
        // the lock (waiting for that is a condition, not a time).
        let third = TargetLock::acquire(&p, Duration::from_secs(30), true).unwrap();
        drop(third);
        // The queue then starts a new waiter (or takes the lock at once).
        let again = queue.acquire(&p, Duration::from_secs(30), true, true, &|| false).unwrap();
        drop(again);
    }

    /// Wait until `/proc/locks` lists `n` requests blocked on the file at `path`.
    fn wait_for_blocked_waiters(path: &Path, n: usize) {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(path).unwrap().ino();
        let suffix = format!(":{ino} ");
        loop {
            let locks = std::fs::read_to_string("/proc/locks").unwrap();
            let blocked = locks.lines().filter(|l| l.contains("->") && l.contains(&suffix)).count();
            if blocked >= n {
                return;
            }
            std::thread::yield_now();
        }
    }

    /// Fair handover: waiters are granted in arrival order (the kernel's queue), never
    /// overtaken by a later arrival — each waiter is started only once the previous one
    /// is seen blocked (its thread exists and it timed out once).
    #[test]
    fn waiters_are_granted_in_arrival_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let holder = TargetLock::acquire(&p, Duration::from_secs(1), true).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        let mut queues = Vec::new();
        for i in 0..4 {
            let queue = LockQueue::default();
            queues.push(queue.clone());
            // Enqueue in the kernel now (this times out, leaving the waiter queued), and
            // go on once the kernel lists it as blocked on the lock.
            assert!(queue.acquire(&p, Duration::from_millis(1), true, true, &|| false).is_err());
            wait_for_blocked_waiters(&p, i + 1);
            let (p, order) = (p.clone(), Arc::clone(&order));
            threads.push(std::thread::spawn(move || {
                let held = queue.acquire(&p, Duration::from_secs(60), true, true, &|| false).unwrap();
                order.lock().unwrap().push(i);
                drop(held);
            }));
        }
        // Every caller is waiting (wants its grant) before the holder lets go: a grant
        // nobody waits for is released, and that waiter queues anew at the end.
        for q in &queues {
            while !q.waiting.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::yield_now();
            }
        }
        drop(holder);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    }
}
