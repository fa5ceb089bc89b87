//! The target's exclusive lock: an OFD record lock on `<sidecar>/lock`.
//!
//! OFD locks are enforced across hosts by NFS (as POSIX locks) and `GlusterFS`, and are
//! tied to the open file description, so an unrelated `close()` elsewhere in the
//! process cannot drop them. The lock file is opened read-write (an exclusive record
//! lock needs it) and never through a symlink. A waiter polls with backoff until its
//! timeout, so a hung holder turns into `LockTimeout`, never a hang. Since manifest
//! format 2 the lock file also holds the manifest (`slots.rs`), read and written
//! through the same descriptor.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::os::sys;

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct TargetLock {
    file: File,
    path: PathBuf,
}

impl TargetLock {
    /// Wait up to `timeout` for the exclusive lock on `path`, created 0600 if missing
    /// and `create` (only `init` creates one: a missing lock file is a target that does
    /// not exist, an `Io` error of kind `NotFound` here).
    ///
    /// # Errors
    /// [`Error::LockTimeout`] when another holder kept it for `timeout`; [`Error::Io`]
    /// when the lock file cannot be opened (kind `NotFound` when missing and not
    /// `create`) or locked.
    pub fn acquire(path: &Path, timeout: Duration, create: bool) -> Result<TargetLock> {
        Self::acquire_with(path, timeout, create, true)
    }

    /// [`acquire`](Self::acquire); `direct: false` opens the lock file without
    /// `O_DIRECT` (the multi-host tests' negative control only).
    pub(crate) fn acquire_with(path: &Path, timeout: Duration, create: bool, direct: bool) -> Result<TargetLock> {
        let file = crate::target::slots::open_with(path, true, create, direct)
            .map_err(|e| Error::io(format!("opening lock file {} read-write", path.display()), e))?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match sys::try_lock_exclusive(&file) {
                Ok(true) => return Ok(TargetLock { file, path: path.to_path_buf() }),
                Ok(false) => {}
                Err(e) => return Err(Error::io(format!("locking {}", path.display()), e)),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                let waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
                return Err(Error::LockTimeout { lock_path: path.to_path_buf(), waited_ms });
            }
            std::thread::sleep(pause.min(timeout.saturating_sub(waited)));
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }

    /// The lock file held.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The locked file: the manifest's slots are read and written through it.
    pub(crate) fn file(&self) -> &File {
        &self.file
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
}
