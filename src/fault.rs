//! Fault-injection seam for the drain's I/O steps (in the style of redb's
//! `StorageBackend` countdown): every target write, journal WAL and target fdatasync,
//! truncate, manifest slot write and fdatasync, folder fsync, journal row delete and
//! journal append commit first calls `check`,
//! which fails the Nth such operation with `EIO` once armed. Disarmed (the default)
//! it costs one atomic load.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// 0 = disarmed; otherwise the number of operations left before the failing one.
static COUNTDOWN: AtomicU64 = AtomicU64::new(0);
/// Operations seen while armed (lets a test find how many steps a round has).
static SEEN: AtomicU64 = AtomicU64::new(0);

/// Declares [`Step`], [`STEPS`] and [`APPEND_STEPS`] from one table.
macro_rules! steps {
    (drain { $($variant:ident = $name:literal,)* } append { $($avariant:ident = $aname:literal,)* }) => {
        /// An injectable I/O step; its name appears in the injected error's message.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Step {
            $(#[doc = $name] $variant,)*
            $(#[doc = $aname] $avariant,)*
        }

        impl Step {
            /// The step's name, as in "injected fault at <name>".
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(Step::$variant => $name,)*
                    $(Step::$avariant => $aname,)*
                }
            }
        }

        /// Names of the injectable steps of the drain, in protocol order.
        #[cfg(any(test, feature = "testing"))]
        pub const STEPS: &[&str] = &[$($name,)*];

        /// Injectable steps on the write path (an append's shared transaction).
        #[cfg(any(test, feature = "testing"))]
        pub const APPEND_STEPS: &[&str] = &[$($aname,)*];
    };
}

steps! {
    drain {
    TargetWrite = "target write",
    JournalWalFdatasync = "journal wal fdatasync",
    TargetFdatasync = "target fdatasync",
    TargetTruncate = "target truncate",
    ManifestSlotWrite = "manifest slot write",
    ManifestSlotFdatasync = "manifest slot fdatasync",
    SidecarFsync = "sidecar fsync",
    JournalRowDelete = "journal row delete",
    }
    append {
    JournalCommit = "journal commit",
    }
}

/// Arm the seam: the `n`th checked operation from now (1-based) fails with EIO, once.
#[cfg(any(test, feature = "testing"))]
pub fn fail_nth(n: u64) {
    SEEN.store(0, Ordering::SeqCst);
    COUNTDOWN.store(n, Ordering::SeqCst);
}

/// Disarm the seam and return how many operations were checked while armed.
#[cfg(any(test, feature = "testing"))]
pub fn disarm() -> u64 {
    COUNTDOWN.store(0, Ordering::SeqCst);
    SEEN.swap(0, Ordering::SeqCst)
}

/// Called before each injectable I/O step.
pub(crate) fn check(step: Step) -> io::Result<()> {
    if COUNTDOWN.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    SEEN.fetch_add(1, Ordering::SeqCst);
    match COUNTDOWN.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| if c == 0 { None } else { Some(c - 1) }) {
        Ok(1) => Err(io::Error::other(format!("injected fault at {}", step.name()))),
        _ => Ok(()),
    }
}
