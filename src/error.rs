//! The one error type of tributary.
//!
//! Every variant names a situation a caller can act on (fix the input, wait, stop and
//! repair, move the journal). `ErrorKind` is the stable, data-free classification that
//! the C ABI, Python and Go map their error codes and exception classes onto.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineProblem {
    /// The line contains a `\n` byte at this offset.
    ContainsNewline {
        /// Byte offset of the first `\n` in the line.
        at: usize,
    },
    /// The line is longer than the journal's `max_line_bytes`.
    TooLong {
        /// The line's length in bytes.
        len: usize,
        /// The limit it exceeds (`max_line_bytes`), in bytes.
        max: usize,
    },
}

/// Everything that can go wrong. `#[non_exhaustive]`: match on [`Error::kind`] for a
/// stable classification.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A line was refused; nothing of the call that carried it was stored.
    InvalidLine {
        /// Index of the offending line within the call (0 for `append`).
        index: usize,
        /// What is wrong with that line.
        problem: LineProblem,
    },
    /// An argument other than a line is unusable (bad offset, empty key, bad option).
    InvalidArgument(String),
    /// The journal's backlog is at its configured maximum; nothing was stored.
    JournalFull {
        /// Undrained payload bytes in the journal when the call was refused.
        backlog_bytes: u64,
        /// The journal's limit ([`JournalOptions::max_backlog_bytes`](crate::JournalOptions)).
        max_backlog_bytes: u64,
        /// Payload bytes the refused call would have added.
        needed_bytes: u64,
    },
    /// The target's lock was not granted within the timeout (another compactor holds
    /// it, or a hung holder was never released).
    LockTimeout {
        /// The lock file waited for (`<target>.tributary/lock`).
        lock_path: PathBuf,
        /// How long the call waited, in milliseconds.
        waited_ms: u64,
    },
    /// The lock was lost while held (EIO from the lock or the file after it was granted,
    /// or the manifest's epoch moved under us). Nothing was committed by this round.
    LockLost {
        /// The target whose lock was lost.
        target: PathBuf,
        /// What showed the loss (the failed call, or the epoch that moved).
        detail: String,
    },
    /// The manifest exists but cannot be trusted (bad CRC, bad syntax, unknown version).
    CorruptManifest {
        /// The file holding the manifest: the sidecar's lock file (its slots), or the
        /// version-1 `manifest` file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A journal row's stored CRC does not match its bytes, or a row is missing.
    CorruptJournalRow {
        /// The journal file.
        journal: PathBuf,
        /// The seq of the first bad or missing line (the drain stopped before it).
        seq: u64,
        /// What does not match.
        detail: String,
    },
    /// The target is shorter than the manifest's `committed_len`: someone truncated or
    /// replaced it behind tributary's back. Nothing was touched.
    TargetTruncated {
        /// The target file.
        target: PathBuf,
        /// Its length now, in bytes (0 when it is gone).
        len: u64,
        /// The bytes the manifest says are committed.
        committed_len: u64,
        /// No file at the target's path at all (removed or renamed away), not a short one.
        gone: bool,
    },
    /// The target has a hole (zeros never written) where a drain wrote lines: it was
    /// truncated behind tributary's back and written past since — by a round in
    /// progress (`round_end`: that round committed nothing), or before (its committed
    /// part is damaged). Kind `target_truncated` when the committed part is damaged;
    /// `io` (retried: the next round rewrites the bytes) when only the round's own
    /// bytes were cut.
    TargetHole {
        /// The target file.
        target: PathBuf,
        /// Where the hole starts, in bytes (where the filesystem reports one; else the
        /// last committed byte, which is not the `\n` it was).
        hole: u64,
        /// The bytes the manifest says are committed.
        committed_len: u64,
        /// The end of the round that found it, when a round's check did.
        round_end: Option<u64>,
    },
    /// The target has more bytes beyond `committed_len` than one bounded drain round can
    /// write: the manifest read is stale (incoherent client cache) or a foreign writer
    /// appended. Nothing was touched.
    UnexpectedTail {
        /// The target file.
        target: PathBuf,
        /// Bytes found beyond `committed_len`.
        tail_bytes: u64,
        /// Bytes beyond `committed_len` that a round's committed intent announced (0
        /// without an intent): the most a crashed round can have left there.
        max_round_bytes: u64,
    },
    /// The target does not end in `\n` where it must (adopting a pre-existing file, or
    /// a committed part that does not end a line). Nothing was touched.
    TornTarget {
        /// The target file (or the generation file being checked).
        target: PathBuf,
        /// Where the `\n` is missing.
        detail: String,
    },
    /// The journal does not match the target's watermark for its id: it was restored
    /// from an older copy, or cloned (copied to a new path and written to on both).
    JournalRestored {
        /// The journal file.
        journal: PathBuf,
        /// The journal's id (32 hex digits).
        journal_id: String,
        /// What does not match the target's watermark.
        detail: String,
    },
    /// The journal records that it was drained into another target (or the target was
    /// reset to an older state).
    JournalForeign {
        /// The journal file.
        journal: PathBuf,
        /// The journal's id (32 hex digits).
        journal_id: String,
        /// Which target the journal records, and which one this is.
        detail: String,
    },
    /// The path is on a filesystem where this part of tributary is unsafe (a journal on
    /// a network filesystem; a target on a mount whose locks are host-local).
    UnsafeFilesystem {
        /// The journal, target or sidecar path refused.
        path: PathBuf,
        /// Which filesystem or permission makes it unsafe.
        detail: String,
    },
    /// The journal file is not a tributary journal or has an unsupported format.
    NotAJournal {
        /// The file refused.
        path: PathBuf,
        /// What it is instead (empty, a symlink, another database, another format).
        detail: String,
    },
    /// The journal file (or its `-wal`) was removed, renamed or replaced while this
    /// handle had it open: lines appended now would go where no drain looks.
    JournalGone {
        /// The journal's path, as the handle opened it.
        path: PathBuf,
        /// Which file was removed, moved or replaced.
        detail: String,
    },
    /// There is no tributary target at this path (no sidecar: never created with
    /// `init`, or the shared filesystem is not mounted), or the file there is not the
    /// one the sidecar committed to. Nothing was created or touched.
    TargetMissing {
        /// The target path.
        target: PathBuf,
        /// What is missing, or which file does not match the sidecar's record.
        detail: String,
    },
    /// An operating-system I/O error, with what tributary was doing.
    Io {
        /// What tributary was doing, with the path concerned.
        context: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// An error an [`Appender`](crate::Appender)'s committer thread met, handed to a
    /// later `push`, `flush` or `close` (its kind is the original error's).
    Background {
        /// The original error's kind.
        kind: ErrorKind,
        /// The original error's message, with what became of the queued records.
        message: String,
        /// Records pushed and never stored: at `close`, the ones still queued when
        /// the appender stopped (lost); 0 for an error a later commit may still cure.
        records_not_stored: u64,
    },
    /// An `SQLite` error from a journal, with what tributary was doing.
    Sqlite {
        /// What tributary was doing, with the journal concerned.
        context: String,
        /// `SQLite`'s error.
        source: rusqlite::Error,
    },
}

/// Stable, data-free classification of [`Error`]; the C ABI's result codes are these
/// values (`TRIB_E_*`), and Python's/Go's error classes follow them one to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorKind {
    /// A line was refused: [`Error::InvalidLine`].
    InvalidLine = 1,
    /// An argument is unusable: [`Error::InvalidArgument`].
    InvalidArgument = 2,
    /// The journal's backlog is at its maximum: [`Error::JournalFull`].
    JournalFull = 3,
    /// The target's lock was not granted in time: [`Error::LockTimeout`].
    LockTimeout = 4,
    /// The lock was lost while held: [`Error::LockLost`].
    LockLost = 5,
    /// The manifest cannot be trusted: [`Error::CorruptManifest`].
    CorruptManifest = 6,
    /// A journal row is damaged or missing: [`Error::CorruptJournalRow`].
    CorruptJournalRow = 7,
    /// The target is shorter than committed: [`Error::TargetTruncated`]; or was cut and
    /// written past: [`Error::TargetHole`].
    TargetTruncated = 8,
    /// Bytes past the committed length no round wrote: [`Error::UnexpectedTail`].
    UnexpectedTail = 9,
    /// The target does not end a line where it must: [`Error::TornTarget`].
    TornTarget = 10,
    /// The journal is an older copy or a clone: [`Error::JournalRestored`].
    JournalRestored = 11,
    /// The journal was drained into another target: [`Error::JournalForeign`].
    JournalForeign = 12,
    /// A path on a filesystem where it is unsafe: [`Error::UnsafeFilesystem`].
    UnsafeFilesystem = 13,
    /// The file is not a tributary journal: [`Error::NotAJournal`].
    NotAJournal = 14,
    /// An operating-system I/O error: [`Error::Io`].
    Io = 15,
    /// An `SQLite` error from a journal: [`Error::Sqlite`].
    Sqlite = 16,
    /// The journal's files went away under an open handle: [`Error::JournalGone`].
    JournalGone = 17,
    /// No tributary target at the path: [`Error::TargetMissing`].
    TargetMissing = 18,
}

impl ErrorKind {
    /// Every kind, in code order: the one source of the C codes, the bindings' classes
    /// and docs/errors.md (generated from [`ErrorKind::meaning`] and
    /// [`ErrorKind::what_to_do`]; `tests/error_table_drift.rs` keeps it in step).
    pub const ALL: [ErrorKind; 18] = [
        ErrorKind::InvalidLine,
        ErrorKind::InvalidArgument,
        ErrorKind::JournalFull,
        ErrorKind::LockTimeout,
        ErrorKind::LockLost,
        ErrorKind::CorruptManifest,
        ErrorKind::CorruptJournalRow,
        ErrorKind::TargetTruncated,
        ErrorKind::UnexpectedTail,
        ErrorKind::TornTarget,
        ErrorKind::JournalRestored,
        ErrorKind::JournalForeign,
        ErrorKind::UnsafeFilesystem,
        ErrorKind::NotAJournal,
        ErrorKind::Io,
        ErrorKind::Sqlite,
        ErrorKind::JournalGone,
        ErrorKind::TargetMissing,
    ];

    /// What happened, in one sentence.
    #[must_use]
    pub fn meaning(self) -> &'static str {
        match self {
            ErrorKind::InvalidLine => "A line contains `\\n` or is longer than the limit; nothing of the call was stored.",
            ErrorKind::InvalidArgument => "An argument other than a line is unusable (a bad option, offset, cursor, path, a journal given twice, a closed handle).",
            ErrorKind::JournalFull => "The journal's undrained backlog is at its configured maximum, or one call's lines alone are more than that maximum; nothing of the call was stored.",
            ErrorKind::LockTimeout => "The target's lock was not granted in time: another compactor holds it, or a hung process does.",
            ErrorKind::LockLost => "The lock was lost while held (lease expiry, FUSE client restart, another holder committed); this round committed nothing.",
            ErrorKind::CorruptManifest => "Both manifest slots are damaged, or the lock file that held them is gone, or the manifest is of a newer format than this build reads (\"manifest version N\"); nothing was touched.",
            ErrorKind::CorruptJournalRow => "A journal row does not match its CRC, or a row is missing, or SQLite finds the journal's file damaged (cut short, overwritten); the drain stopped before it and skipped nothing.",
            ErrorKind::TargetTruncated => "The target is shorter than its committed length (truncated, or removed), or its committed part was cut and written past since (zeros where committed lines were); nothing was committed over it.",
            ErrorKind::UnexpectedTail => "The target has bytes past its committed length that no drain round announced (another program appended, or the manifest is older than the target); nothing was touched.",
            ErrorKind::TornTarget => "The target does not end with `\\n` where it must (an adopted file's last line is partial, an interrupted rotation left a wrong length); nothing was touched.",
            ErrorKind::JournalRestored => "The journal does not match what the target committed for it: restored from an older copy, or a clone (copied and written to on both copies).",
            ErrorKind::JournalForeign => "The journal was drained into another target before (or this target's manifest was reset).",
            ErrorKind::UnsafeFilesystem => "A journal on a network filesystem, a target on a mount whose locks are host-local (NFS `nolock`; sshfs, bindfs and other FUSE filesystems that keep locks per mount), or a sidecar folder anyone can write to.",
            ErrorKind::NotAJournal => "The file is not a tributary journal, or (opened as one) not a cursor store: junk, another database, a journal given as a store, a symlink, an unsupported format.",
            ErrorKind::Io => "An operating-system I/O error (the message says what tributary was doing): a full disk, a share that went away, too many open files.",
            ErrorKind::Sqlite => "An SQLite error from a journal (e.g. `database is locked` past the busy timeout).",
            ErrorKind::JournalGone => "The journal (or its `-wal`) was removed, moved or replaced under an open handle, or its file was removed and its `-wal` (which may hold undrained lines) left; nothing of the call was stored.",
            ErrorKind::TargetMissing => "No tributary target at this path (never created with `init`, or its share is not mounted), or the file there is not the one its sidecar committed to; nothing was created or touched.",
        }
    }

    /// The one thing to do about it.
    #[must_use]
    pub fn what_to_do(self) -> &'static str {
        match self {
            ErrorKind::InvalidLine => "Fix or split the line, or raise `max_line_bytes` (`--max-line-bytes`) on the writers (a compactor drains longer lines all the same: its own setting only sizes a round's intent).",
            ErrorKind::InvalidArgument => "Fix the argument the message names.",
            ErrorKind::JournalFull => "Run (or speed up) a compactor, raise `max_backlog_bytes`, or set `full_wait` to wait for room; a call larger than the maximum: split it (`tributary append` does).",
            ErrorKind::LockTimeout => "Retry later (a daemon does by itself); if it persists, find the holder on each host with `grep -ls \"OFDLCK.*:$(stat -c %i LOCKFILE) \" /proc/[0-9]*/fdinfo/*` (it prints /proc/<pid>/fdinfo/<fd>; `lslocks` shows this kind of lock without its pid).",
            ErrorKind::LockLost => "Nothing: the next round repairs the tail and carries on.",
            ErrorKind::CorruptManifest => "Stop the compactors and keep the sidecar folder as it is; do not restore an older copy of it (it would be older than the target). A newer format: upgrade this binary (older builds advise a restore here: do not follow it).",
            ErrorKind::CorruptJournalRow => "Check the disk holding the journal; keep the journal file for inspection.",
            ErrorKind::TargetTruncated => "Restore the target's file; rotate a tributary target only with managed rotation (`--rotate-bytes`).",
            ErrorKind::UnexpectedTail => "First `tributary verify`: if it says the committed bytes were changed, the file was overwritten — restore it from a copy, do not cut it (cutting makes the overwrite final). If they are intact: with the compactors stopped, save the extra bytes (`tail -c N`), cut them off (`truncate -s -N`), and append them through a journal.",
            ErrorKind::TornTarget => "Finish or remove the partial last line (or move the wrong generation file away), then run `init` or the drain again.",
            ErrorKind::JournalRestored => "Keep only the live copy of the journal and give a cloned host a new journal file; a copy that took appends of its own (a cloned VM, containers from one image) holds lines in no target: salvage them with `tributary dump` before removing it (README \"Operations\").",
            ErrorKind::JournalForeign => "Drain the journal into the target it was drained into before; a copy of a journal retired from this target is removed (its lines are in the target).",
            ErrorKind::UnsafeFilesystem => "Put journals on the writer host's local disk; mount the target with working cross-host locks; `chmod o-w` the sidecar folder.",
            ErrorKind::NotAJournal => "Move the file out of the spool, or give the journal's (or cursor store's) real path.",
            ErrorKind::Io => "Fix the cause the message names (free space, remount the share, raise `ulimit -n`); a daemon retries by itself.",
            ErrorKind::Sqlite => {
                "Retry through the same handle; if it persists, check the journal's disk and which process holds its \
                 write lock, and if it still fails once the disk is fine (a handle whose log lost writes, as after \
                 a failing disk), close the handle and open the journal again (the lines of the calls that failed \
                 so may be stored: resend them with idempotency keys). When the message says SQLite's \
                 recovery may still store the lines (the journal's disk failed mid-commit; `may_have_stored`), \
                 resend them from another process or handle only with idempotency keys, or after a drain shows \
                 they are not in the target."
            }
            ErrorKind::JournalGone => "Close the handle and reopen the journal by its path (to remove a journal, retire it). A `-wal` left alone: put the journal file back (its lines then drain), or remove the `-wal` and `-shm` if nothing in them is needed.",
            ErrorKind::TargetMissing => "Mount the share; for a new target run `tributary init` once; for a target restored with its sidecar, `init` checks it and accepts it.",
        }
    }

    /// True for the kinds after which retrying cannot help: the target is damaged,
    /// holds bytes tributary did not write, or the configuration is wrong. The `compact`
    /// daemon stops on them (exit 3); it retries every other kind.
    #[must_use]
    pub fn needs_a_human(self) -> bool {
        matches!(
            self,
            ErrorKind::CorruptManifest
                | ErrorKind::TargetTruncated
                | ErrorKind::UnexpectedTail
                | ErrorKind::TornTarget
                | ErrorKind::InvalidArgument
        )
    }

    /// Short `snake_case` name, stable across versions (used by the CLI and bindings).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidLine => "invalid_line",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::JournalFull => "journal_full",
            ErrorKind::LockTimeout => "lock_timeout",
            ErrorKind::LockLost => "lock_lost",
            ErrorKind::CorruptManifest => "corrupt_manifest",
            ErrorKind::CorruptJournalRow => "corrupt_journal_row",
            ErrorKind::TargetTruncated => "target_truncated",
            ErrorKind::UnexpectedTail => "unexpected_tail",
            ErrorKind::TornTarget => "torn_target",
            ErrorKind::JournalRestored => "journal_restored",
            ErrorKind::JournalForeign => "journal_foreign",
            ErrorKind::UnsafeFilesystem => "unsafe_filesystem",
            ErrorKind::NotAJournal => "not_a_journal",
            ErrorKind::Io => "io",
            ErrorKind::Sqlite => "sqlite",
            ErrorKind::JournalGone => "journal_gone",
            ErrorKind::TargetMissing => "target_missing",
        }
    }
}

impl Error {
    /// How many records handed to an [`Appender`](crate::Appender) this error says
    /// were never stored (its `close` gave up on them); 0 for every other error.
    #[must_use]
    pub fn records_not_stored(&self) -> u64 {
        match self {
            Error::Background { records_not_stored, .. } => *records_not_stored,
            _ => 0,
        }
    }

    /// The stable classification of this error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidLine { .. } => ErrorKind::InvalidLine,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::JournalFull { .. } => ErrorKind::JournalFull,
            Error::LockTimeout { .. } => ErrorKind::LockTimeout,
            Error::LockLost { .. } => ErrorKind::LockLost,
            Error::CorruptManifest { .. } => ErrorKind::CorruptManifest,
            Error::CorruptJournalRow { .. } => ErrorKind::CorruptJournalRow,
            // Cut inside the bytes of the round that found it (the committed part intact):
            // the next round cuts them and writes them again — retried, as an I/O
            // trouble whose cause the message names, not a target to stop for.
            Error::TargetHole { hole, committed_len, round_end: Some(_), .. } if hole >= committed_len => ErrorKind::Io,
            Error::TargetTruncated { .. } | Error::TargetHole { .. } => ErrorKind::TargetTruncated,
            Error::UnexpectedTail { .. } => ErrorKind::UnexpectedTail,
            Error::TornTarget { .. } => ErrorKind::TornTarget,
            Error::JournalRestored { .. } => ErrorKind::JournalRestored,
            Error::JournalForeign { .. } => ErrorKind::JournalForeign,
            Error::UnsafeFilesystem { .. } => ErrorKind::UnsafeFilesystem,
            Error::NotAJournal { .. } => ErrorKind::NotAJournal,
            Error::Io { .. } => ErrorKind::Io,
            // a file SQLite finds damaged is not a transient trouble to retry
            Error::Sqlite { source, .. } if is_damaged(source) => ErrorKind::CorruptJournalRow,
            Error::Sqlite { .. } => ErrorKind::Sqlite,
            Error::Background { kind, .. } => *kind,
            Error::JournalGone { .. } => ErrorKind::JournalGone,
            Error::TargetMissing { .. } => ErrorKind::TargetMissing,
        }
    }

    /// A copy of this error for every caller of a shared (group-committed) transaction.
    /// Only I/O and `SQLite` errors fail a shared transaction; their sources are not
    /// `Clone`, so the copy keeps the kind, the `SQLite` code and the text.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { context, source } => {
                Error::Io { context: context.clone(), source: io::Error::new(source.kind(), source.to_string()) }
            }
            Error::Sqlite { context, source } => {
                let code = source
                    .sqlite_error()
                    .copied()
                    .unwrap_or_else(|| rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR));
                Error::Sqlite {
                    context: context.clone(),
                    source: rusqlite::Error::SqliteFailure(code, Some(source.to_string())),
                }
            }
            Error::JournalGone { path, detail } => Error::JournalGone { path: path.clone(), detail: detail.clone() },
            Error::Background { kind, message, records_not_stored } => {
                Error::Background { kind: *kind, message: message.clone(), records_not_stored: *records_not_stored }
            }
            other => Error::Io {
                context: "running a shared (group-committed) transaction".into(),
                source: io::Error::other(other.to_string()),
            },
        }
    }

    /// The journal this error is about, when it concerns one journal only (the others
    /// given to the same drain are fine): a daemon sets that journal aside and goes on.
    #[must_use]
    pub fn journal_path(&self) -> Option<&std::path::Path> {
        match self {
            Error::CorruptJournalRow { journal, .. }
            | Error::JournalRestored { journal, .. }
            | Error::JournalForeign { journal, .. } => Some(journal),
            Error::NotAJournal { path, .. } | Error::JournalGone { path, .. } => Some(path),
            _ => None,
        }
    }

    /// True for a `*.journal` file whose writer has not finished creating the journal
    /// in it (an empty file): not an error in a spool, just not ready yet — spool drains
    /// skip it and pick it up later.
    #[must_use]
    pub fn is_journal_not_ready(&self) -> bool {
        matches!(self, Error::NotAJournal { detail, .. } if detail == crate::journal::NOT_READY)
    }

    /// A round found the target `len` bytes long before its end `round_end`: shorter
    /// than committed ([`Error::TargetTruncated`]), or cut inside the round's own bytes
    /// ([`Error::TargetHole`], retried).
    pub(crate) fn cut_during_round(target: &std::path::Path, len: u64, committed_len: u64, round_end: u64) -> Error {
        if len < committed_len {
            Error::TargetTruncated { target: target.to_path_buf(), len, committed_len, gone: false }
        } else {
            Error::TargetHole { target: target.to_path_buf(), hole: len, committed_len, round_end: Some(round_end) }
        }
    }

    /// An `Io` error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }

    pub(crate) fn sqlite(context: impl Into<String>, source: rusqlite::Error) -> Error {
        Error::Sqlite { context: context.into(), source }
    }

    /// Whether the lines of the failed call may still be stored: its commit failed on
    /// the journal's disk (an I/O error, a full disk, a file size limit, a filesystem
    /// gone read-only) possibly after writing its frames, and the journal's log could
    /// not be emptied after it, so `SQLite`'s recovery at the journal's next open may
    /// replay them. A retry through the same handle is safe (its commit takes the
    /// failed one's place in the log); resending from another process or handle —
    /// `append` run again — can store them twice: use idempotency keys, or drain and
    /// look for them first (an outside tester duplicated a 50-line batch in 2 of 4
    /// trials by following the CLI's "resend from input line N").
    #[must_use]
    pub fn may_have_stored(&self) -> bool {
        match self {
            Error::Sqlite { context, .. } => context.contains(MAY_STILL_BE_STORED),
            // an Appender's committer hands its error on as a message
            Error::Background { kind: ErrorKind::Sqlite, message, .. } => message.contains(MAY_STILL_BE_STORED),
            _ => false,
        }
    }
}

/// What "File too large" (`EFBIG`) means here: a compactor under `ulimit -f` said only
/// that (an outside tester); without such a limit, the filesystem's own largest file
/// (an outside reviewer).
pub(crate) fn file_too_large_hint() -> String {
    match crate::os::sys::file_size_limit() {
        Some(limit) => format!(
            " — past this process's file size limit (`ulimit -f`, RLIMIT_FSIZE: {limit} bytes): raise it (a \
             target's lock file alone is 4 MiB, sparse)"
        ),
        None => " — past the largest file this filesystem holds (e.g. 16 GiB on ext4 with 1 KiB blocks, 4 GiB on \
                 FAT): rotate the target (--rotate-bytes) or move it"
            .to_string(),
    }
}

/// The words of a failed commit's error whose lines `SQLite`'s recovery may still
/// store ([`Error::may_have_stored`]).
pub(crate) const MAY_STILL_BE_STORED: &str = "SQLite's recovery may still store these lines";

/// Whether `SQLite` found the file damaged (`SQLITE_CORRUPT`, `SQLITE_NOTADB`): a journal
/// cut short said `sqlite`, a kind whose advice is to retry (an outside tester).
fn is_damaged(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase))
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineProblem::ContainsNewline { at } => write!(f, "contains a newline byte at offset {at}"),
            LineProblem::TooLong { len, max } => write!(
                f,
                "is {len} bytes, longer than the maximum of {max} (the journal's max_line_bytes, \
                 --max-line-bytes; raise it on the writers — compactors drain longer lines all the same)"
            ),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidLine { index, problem } => {
                write!(f, "invalid line (index {index}): the line {problem}; nothing of this call was stored")
            }
            Error::InvalidArgument(s) => write!(f, "invalid argument: {s}"),
            // A call larger than the maximum itself never fits: waiting for a drain
            // cannot help (an outside tester followed "run a compactor" in vain).
            Error::JournalFull { max_backlog_bytes, needed_bytes, .. } if needed_bytes > max_backlog_bytes => write!(
                f,
                "journal full: this call's lines are {needed_bytes} bytes, more than the journal's maximum backlog \
                 ({max_backlog_bytes} bytes) by themselves, so no drain can make room for them; nothing of this \
                 call was stored. Append them in smaller calls (a single line that large needs a higher \
                 limit), or raise the limit (max_backlog_bytes, --max-backlog-bytes)"
            ),
            Error::JournalFull { backlog_bytes, max_backlog_bytes, needed_bytes } => write!(
                f,
                "journal full: backlog is {backlog_bytes} bytes, maximum {max_backlog_bytes}, this call needs \
                 {needed_bytes} more; nothing of this call was stored. Run a compactor (tributary drain/compact) or raise the limit"
            ),
            Error::LockTimeout { lock_path, waited_ms } => write!(
                f,
                "lock timeout: {} was not granted within {waited_ms} ms; another compactor holds it \
                 (or a hung process does: on each host that mounts it, `grep -ls \"OFDLCK.*:$(stat -c %i '{}') \" \
                 /proc/[0-9]*/fdinfo/*` prints the holder as /proc/<pid>/fdinfo/<fd>; `lslocks` shows this kind \
                 of lock without its pid)",
                lock_path.display(),
                // (quoted for the shell: a `'` in the path ends the quotes otherwise)
                lock_path.display().to_string().replace('\'', "'\\''")
            ),
            Error::LockLost { target, detail } => write!(
                f,
                "lock lost on {}: {detail}; nothing was committed by this round, the next round repairs the tail",
                target.display()
            ),
            Error::CorruptManifest { path, detail } => write!(
                f,
                "corrupt manifest {}: {detail}. tributary will not replace it and touched nothing. Do not restore \
                 an older copy of it (a manifest older than the target would cut committed lines): stop the \
                 compactors, keep the sidecar folder as it is, and see README \"Operations\"",
                path.display()
            ),
            Error::CorruptJournalRow { journal, seq, detail } => write!(
                f,
                "corrupt journal row: {} seq {seq}: {detail}; the drain stopped before it and skipped nothing. \
                 The local disk holding the journal may be failing",
                journal.display()
            ),
            Error::TargetTruncated { target, len, committed_len, gone } => write!(
                f,
                "target truncated: {} {} but {committed_len} bytes were committed; someone truncated, \
                 removed or replaced it behind tributary's back (logrotate copytruncate or create?). Nothing was \
                 touched: restore the file. To rotate a tributary target, use managed rotation instead \
                 (compact --rotate-bytes / CompactorOptions::rotate_bytes)",
                target.display(),
                // (a file moved away for 20 ms read "is 0 bytes": an outside tester)
                if *gone { "is gone (no file at that path)".to_string() } else { format!("is {len} bytes") }
            ),
            Error::TargetHole { target, hole, committed_len, round_end: Some(end) } if hole >= committed_len => write!(
                f,
                "target truncated during this round: {} was cut to {hole} bytes while this round wrote bytes \
                 {committed_len}..{end}, and the round's later writes made it long again over zeros. Nothing of this \
                 round was committed: its lines stay in their journals, and the next round cuts these bytes and \
                 writes them again. Stop whatever truncates the file (logrotate copytruncate?): rotate a tributary \
                 target with managed rotation (compact --rotate-bytes / CompactorOptions::rotate_bytes)",
                target.display()
            ),
            Error::TargetHole { target, hole, committed_len, round_end } => write!(
                f,
                "target truncated: {} does not hold its {committed_len} committed bytes any more — they no longer end \
                 a line, and from byte {hole} on they are zeros or other bytes: it was truncated behind tributary's \
                 back (logrotate copytruncate?) and written past since, so the committed lines from byte {hole} on \
                 are gone from it.{} Nothing more was touched: restore the file. \
                 To rotate a tributary target, use managed rotation instead (compact --rotate-bytes / \
                 CompactorOptions::rotate_bytes)",
                target.display(),
                if round_end.is_some() { " This round committed nothing." } else { "" }
            ),
            Error::UnexpectedTail { target, tail_bytes, max_round_bytes } => write!(
                f,
                "unexpected tail: {} has {tail_bytes} bytes beyond the committed length that no drain round of \
                 tributary was writing ({max_round_bytes} bytes were announced by an intent): another program \
                 appended to the target, or the manifest is older than the target (a restored sidecar, or an \
                 incoherent client cache: see README). Nothing was touched. First check the committed part: \
                 `tributary verify --target TARGET` — if it says the committed bytes were changed, the file was \
                 overwritten: restore it from a copy, do not cut it. If they are intact: save those bytes (`tail \
                 -c {tail_bytes} TARGET`), cut them off (`truncate -s -{tail_bytes} TARGET`) with the compactors \
                 stopped, and append them through a journal",
                target.display()
            ),
            Error::TornTarget { target, detail } => {
                write!(f, "torn target {}: {detail}. Nothing was touched", target.display())
            }
            Error::JournalRestored { journal, journal_id, detail } => write!(
                f,
                "journal {} (id {journal_id}) was restored from an older copy or cloned: {detail}. The drain \
                 stopped and skipped nothing; keep only the live copy of this journal — but if both copies took \
                 appends (a cloned VM, containers started from one image), this one holds lines that are in no \
                 target: salvage them first (`tributary dump --journal` it, leave out the lines the target has, \
                 append the rest to a new journal: README \"Operations\")",
                journal.display()
            ),
            Error::JournalForeign { journal, journal_id, detail } => write!(
                f,
                "journal {} (id {journal_id}) cannot be drained into this target: {detail}. Nothing was drained \
                 from it",
                journal.display()
            ),
            Error::UnsafeFilesystem { path, detail } => {
                write!(f, "unsafe filesystem for {}: {detail}", path.display())
            }
            Error::NotAJournal { path, detail } => {
                write!(f, "{} is not a usable tributary journal: {detail}", path.display())
            }
            // A journal removed without its log, met by a listing or an open: there is
            // no handle and no call to speak of (an outside tester).
            Error::JournalGone { path, detail } if detail.starts_with(crate::journal::ORPHANED_LOG) => {
                write!(f, "journal {} was removed without its log: {detail}", path.display())
            }
            Error::JournalGone { path, detail } => write!(
                f,
                "journal {} is gone from under this handle: {detail}; nothing of this call was stored. Lines \
                 appended through this handle now would be lost: close it and reopen the journal by its path \
                 (to retire a journal, drain it first)",
                path.display()
            ),
            Error::TargetMissing { target, detail } => write!(
                f,
                "target missing: {}: {detail}. Nothing was created or touched. If no target was ever created \
                 here, create it once with `tributary init --target {}`; if it exists, check that its shared \
                 filesystem is mounted",
                target.display(),
                target.display()
            ),
            Error::Io { context, source } => {
                write!(f, "I/O error while {context}: {source}")?;
                if source.raw_os_error() == Some(libc::EFBIG) {
                    f.write_str(&file_too_large_hint())?;
                }
                Ok(())
            }
            Error::Sqlite { context, source } if is_damaged(source) => write!(
                f,
                "SQLite error while {context}: {source}: the file is damaged (cut short, or overwritten); retrying \
                 will not help: stop its writers, keep the file for inspection, check its disk (`tributary status \
                 --spool` lists a spool's unreadable journals)"
            ),
            Error::Sqlite { context, source } => write!(f, "SQLite error while {context}: {source}"),
            Error::Background { message, .. } => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Sqlite { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `EFBIG` names the file size limit (`ulimit -f`): "File too large" alone sent an
    /// outside tester looking at the target.
    #[test]
    fn a_file_past_the_size_limit_names_it() {
        let e = Error::io("writing to the target", io::Error::from_raw_os_error(libc::EFBIG));
        let said = if crate::os::sys::file_size_limit().is_some() { "`ulimit -f`" } else { "largest file" };
        assert!(e.to_string().contains(said), "{e}");
        let e = Error::io("writing to the target", io::Error::from_raw_os_error(libc::EIO));
        assert!(!e.to_string().contains("ulimit"), "{e}");
    }

    /// An Appender hands its committer's error on as a message: a commit `SQLite`'s
    /// recovery may still store says so there too (an outside reviewer: it did not).
    #[test]
    fn may_have_stored_reads_an_appenders_error_too() {
        let message = format!("committing: {MAY_STILL_BE_STORED} at the journal's next open");
        let e = Error::Background { kind: ErrorKind::Sqlite, message: message.clone(), records_not_stored: 0 };
        assert!(e.may_have_stored());
        let e = Error::Background { kind: ErrorKind::Io, message, records_not_stored: 0 };
        assert!(!e.may_have_stored(), "only an SQLite error's words count");
    }
}
