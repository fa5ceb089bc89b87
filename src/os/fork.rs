//! `fork()` while tributary works: a `pthread_atfork` prepare handler makes `fork()`
//! wait until no thread is inside `SQLite` through tributary (a journal's connection in
//! use, a journal being opened or closed, a cursor store), and holds them out until
//! the fork is done. Without it a child inherited `SQLite`'s process-global mutexes
//! (its allocator's, its VFS's list of open files, its PRNG) locked by a parent thread
//! that does not exist in the child, and hung forever in its first open of its own
//! journal (found by an outside tester: a logging thread in the parent, workers
//! forked from it, as `docs/python.md` prescribes for forked workers).
//!
//! Keeps: at the instant of a fork, no thread of this process is between
//! [`enter`] and the drop of what it returned. The gate is held only around `SQLite`
//! calls, never while waiting for another thread (a group commit's followers wait
//! outside it), so the prepare handler waits for the calls in flight (a commit's
//! fsync, a busy timeout at worst; in a process running a compactor, a round's read
//! of a journal, which writes the target as it reads: docs/design.md "`fork()`").

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Read-held by threads inside `SQLite`; write-held by a fork in progress.
static GATE: RwLock<()> = RwLock::new(());

thread_local! {
    /// The prepare handler's write guard, released by the parent and child handlers
    /// (all three run on the forking thread; in the child it is the only one).
    static HELD: RefCell<Option<RwLockWriteGuard<'static, ()>>> = const { RefCell::new(None) };
    /// How many [`Inside`]s this thread holds: only the outermost takes the gate (a
    /// second read while a fork waits would block behind it, with the first held).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Proof that this thread is inside the gate; drop it when done with `SQLite`.
#[must_use]
pub(crate) struct Inside {
    _gate: Option<RwLockReadGuard<'static, ()>>,
}

impl std::fmt::Debug for Inside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fork::Inside")
    }
}

/// Enter the gate (waiting while a fork is in progress).
pub(crate) fn enter() -> Inside {
    register();
    let depth = DEPTH.get();
    DEPTH.set(depth + 1);
    Inside { _gate: (depth == 0).then(|| GATE.read().unwrap_or_else(PoisonError::into_inner)) }
}

impl Drop for Inside {
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get().saturating_sub(1));
    }
}

extern "C" fn before_fork() {
    if DEPTH.get() > 0 {
        return; // a fork from inside the gate (not through tributary's API): do not wait on ourselves
    }
    let gate = GATE.write().unwrap_or_else(PoisonError::into_inner);
    HELD.with_borrow_mut(|held| *held = Some(gate));
}

extern "C" fn after_fork() {
    drop(HELD.with_borrow_mut(Option::take));
}

/// Register the handlers once per process. Not with a `Once`: a fork while another
/// thread ran its closure left the child's `Once` running for ever, and the child's
/// first `enter` waited on it for ever (a reviewer's finding). A flag cannot be left
/// half-set; a child forked just before the registration only goes unprotected in
/// its own forks, as before the first `enter`.
fn register() {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if !REGISTERED.load(Ordering::Acquire) && !REGISTERED.swap(true, Ordering::AcqRel) {
        super::sys::at_fork(before_fork, after_fork, after_fork);
    }
}
