//! tributary: many writers on many hosts append lines to ONE file on a shared
//! filesystem, exactly once, surviving `kill -9` of anything at any moment.
//!
//! Writers append to a [`Journal`] (`SQLite` WAL on their local disk). A [`Compactor`]
//! holding the target's lock drains journals into the target idempotently, keyed by
//! per-journal watermarks in a checksummed manifest beside the target. A [`Reader`]
//! reads the committed part only. See `ARCHITECTURE.md` and `../shared/DESIGN.md`.
//!
//! ```no_run
//! use tributary::{Compactor, CompactorOptions, Journal, JournalOptions};
//! let journal = Journal::open("/var/spool/app/host1.journal", JournalOptions::default())?;
//! let seq = journal.append(b"hello")?; // durable when it returns
//! let report = Compactor::new("/mnt/shared/out.log", CompactorOptions::default())?
//!     .drain(&[journal])?;
//! assert!(report.lines >= 1 && seq >= 1);
//! # Ok::<(), tributary::Error>(())
//! ```
//!
//! For a logging path that cannot wait for an fsync per line, an [`Appender`] commits
//! in the background: `push` returns at once, each line is durable within the
//! appender's window (10 ms by default), `flush` waits for it, and
//! [`Appender::writer`] is an `io::Write` (one line per `\n`) for loggers.
//!
//! Options ([`JournalOptions`], [`CompactorOptions`], [`DaemonOptions`]) start from
//! `default()` and change what they need with setters; each lists its defaults in a
//! table. They are `#[non_exhaustive]` (a new option is not a breaking change), so a
//! struct literal does not compile outside this crate:
//!
//! ```compile_fail
//! let o = tributary::JournalOptions { max_line_bytes: 4 << 20, ..Default::default() };
//! ```
//! ```
//! let o = tributary::JournalOptions::default().max_line_bytes(4 << 20);
//! assert_eq!((o.max_line_bytes, o.max_backlog_bytes), (4 << 20, None));
//! ```

// The lint policy (issue 14). CI runs clippy with `-D warnings`, so every warning here
// fails it: fix the code, or allow one lint on one item and say why there.
#![warn(missing_docs, clippy::pedantic, clippy::undocumented_unsafe_blocks)]
#![allow(
    // verify, the append transaction and the manifest parser read best as one function, top to bottom
    clippy::too_many_lines,
)]

mod compactor;
mod error;
mod failpoint;
mod fault;
// The C ABI (`include/tributary.h`): `trib_*` functions over the same engine, used by C
// and by the Python (ctypes) and Go (cgo) bindings; see `docs/c-abi.md`. Private: it is
// not part of the Rust API (Rust callers use the types above). Its `#[no_mangle]
// extern "C"` functions are exported from the cdylib and staticlib all the same.
mod ffi;
mod hex;
mod inspect;
mod journal;
mod options;
mod os;
mod reader;
mod sync;
mod target;

pub use compactor::{
    Compactor, CompactorOptions, DaemonEvent, DaemonOptions, DaemonSummary, DrainReport, InitReport, JournalDrain,
    JournalSources, ManifestDeltas, RetireReport, MANIFEST_DELTAS_VAR, STAGING_VAR,
};
pub use error::{Error, ErrorKind, LineProblem, Result};
pub use inspect::{
    status, status_all, status_with, verify, JournalStatus, StatusReport, UnreadableJournal, VerifyReport,
};
pub use journal::{
    line_crc, spool_journals, validate_line, Appender, AppenderOptions, AppenderStats, AppenderWriter, Backlog,
    DrainedRecord, Durability, Journal, JournalId, JournalOptions, KeyedAppend, OnFull, Pushed, PushedLines,
    DEFAULT_MAX_LINE_BYTES, MAX_LINE_BYTES_LIMIT,
};
pub use reader::{Cursor, CursorStore, Lag, Reader, TargetId};
pub use target::lock::TargetLock;
pub use target::manifest::{
    chain_step, generation_path, Intent, Manifest, RotatedGeneration, Watermark, Watermarks, DELTA_FORMAT_VERSION,
    FORMAT_VERSION,
};
pub use target::sidecar::Sidecar;

/// Turn off `SQLite`'s memory statistics for this whole process, if `SQLite` is not
/// initialised in it yet; returns whether it took effect. With them on, every
/// allocation `SQLite` makes takes one process-wide mutex: a drain round's threads
/// recording 100 journals spent a tenth of their time waiting on it.
///
/// Process-wide, which is why a Rust program opts in: the `SQLite` tributary links
/// is the one every rusqlite user in the program shares, and without the statistics
/// `sqlite3_memory_used` reads 0 and `sqlite3_soft_heap_limit64` /
/// `sqlite3_hard_heap_limit64` are not enforced. Call it first thing in `main`,
/// before any thread uses `SQLite` (`sqlite3_config` is not thread-safe against a
/// concurrent `sqlite3_initialize`). The `tributary` command and the C library (hence
/// the Python and Go bindings, whose `SQLite` is the library's own) turn it off
/// themselves.
#[must_use = "false: SQLite was initialised already, nothing changed"]
pub fn disable_sqlite_memory_statistics() -> bool {
    os::sqlite_vfs::disable_memory_statistics()
}

#[cfg(test)]
mod test_rng;

/// Test seams, for tributary's own tests and its harness (cargo feature
/// `testing`; not part of the API users build on).
#[cfg(feature = "testing")]
pub mod testing {
    /// Failpoints: named places in the protocol where `TRIBUTARY_FAILPOINTS` stops,
    /// kills or panics the process.
    pub mod failpoint {
        pub use crate::failpoint::{Point, DIR_VAR, POINTS};
    }
    /// The fault-injection countdown: fail the Nth I/O step of this process with `EIO`.
    pub mod fault {
        pub use crate::fault::{disarm, fail_nth, Step, APPEND_STEPS, STEPS};
    }
    /// The syscall wrappers the tests use (signals, randomness).
    pub mod sys {
        pub use crate::os::sys::{random_u64, send_signal};
    }
    /// Reading a shared file as its server has it (the multi-host checks).
    pub mod fs {
        pub use crate::os::fs::{fresh_len_and_ino, read_fresh};
    }
}

/// The crate version, also reported through the C ABI.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The journal file format this build reads and writes (a journal's `meta.format`).
pub const JOURNAL_FORMAT_VERSION: i64 = journal::JOURNAL_FORMAT_VERSION;
