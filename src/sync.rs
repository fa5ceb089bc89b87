//! The locks the journal's threads share, chosen to survive `fork()`: std's `Mutex`
//! and `Condvar` are a futex word each, with no state outside the lock itself, so a
//! child forked while another thread was parking or waking inherits nothing broken.
//! (`parking_lot`, used before, keeps a process-global table of parked threads: a child
//! forked while a thread was updating it crashed in its own first park, found by an
//! outside tester.) Keeps `parking_lot`'s shape: `lock()` never fails — a panic while
//! holding a lock does not poison it, the data is as the panicking code left it, as
//! with `parking_lot`.

use std::sync::PoisonError;
use std::time::Instant;

pub(crate) use std::sync::MutexGuard;

/// A mutex whose `lock` ignores poisoning.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T: ?Sized>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) const fn new(value: T) -> Mutex<T> {
        Mutex(std::sync::Mutex::new(value))
    }
}

impl<T: ?Sized> Mutex<T> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A condition variable for a [`Mutex`]'s guard.
#[derive(Debug, Default)]
pub(crate) struct Condvar(std::sync::Condvar);

impl Condvar {
    pub(crate) const fn new() -> Condvar {
        Condvar(std::sync::Condvar::new())
    }

    /// Wait for a notification (or a spurious wake-up: callers loop on a condition).
    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait for a notification, or until `until`.
    pub(crate) fn wait_until<'a, T>(&self, guard: MutexGuard<'a, T>, until: Instant) -> MutexGuard<'a, T> {
        let timeout = until.saturating_duration_since(Instant::now());
        self.0.wait_timeout(guard, timeout).unwrap_or_else(PoisonError::into_inner).0
    }

    pub(crate) fn notify_one(&self) {
        self.0.notify_one();
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}
