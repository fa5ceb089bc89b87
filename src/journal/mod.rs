//! The writer side: a journal is a `SQLite` database in WAL mode on the writer host's
//! local disk, holding lines that are accepted but not yet drained into the target.
//!
//! One type, [`Journal`], whose `impl` is spread over one file per concern (as
//! rusqlite does), each keeping its own invariant:
//!
//! | file | owns | keeps |
//! |---|---|---|
//! | `mod.rs` | the handle, its options, its id, its backlog, the cached write transaction | a handle never works in a forked child |
//! | `open.rs` | opening, busy handling, the in-place check | no journal created by a compactor; names durable before use (O2); appends acknowledged only while the path names the files |
//! | `schema.rs` | tables, settings, migrations, the seq rule | a seq is never reused |
//! | `run.rs` | the run row format, and `Lines` (a batch in one buffer, as a run stores it) | what is written is read back exactly |
//! | `group_commit.rs` | leader/follower group commit (no `SQLite`) | each caller gets its own outcome, once |
//! | `appender.rs` | background commit: a queue and a committer thread ([`Appender`]) | records committed in push order, at most once; `flush` returns only once earlier records are durable; none leaves the queue silently |
//! | `appender_writer.rs` | `AppenderWriter`, an `io::Write` over an appender | lines in the order written, split only at `\n` |
//! | `waits.rs` | the durability window as measured (each record's own wait, push → its commit's fsync returned) | a quantile read there is never below the true wait |
//! | `append.rs` | the append transaction, back-pressure, the spool reserve, keyed outcomes, processed cursors (`cursors` table) | an append returns only once durable under the configured durability; a cursor commits in the transaction of its lines |
//! | `keys.rs` | idempotency keys and their boot-anchored clock | a key ages only while the host is up, never by a wall-clock step |
//! | `probe.rs` | a compactor's change test | no commit written before the probe is missed |
//! | `source.rs` | what a compactor reads and records | rows a drain read are durable before it commits them (O3: synced, or the newest in a `durable` run); `drained_seq` only grows, rows deleted only up to it |
//! | `space.rs` | giving drained space back after a record (free pages, the `-wal`) | at rest the files hold at most 1.5 × the live pages + 4.3 MiB (under 1 MiB drained empty); the write lock is released between steps; no row changes |
//! | `files.rs` | the journal's files: `-wal`, tombstone, spool listing | a retirement is crash-safe at every step |
//! | `forks.rs` | the per-process registry of open journals | a journal a parent has open is refused in a forked child |
//!
//! Storage: one row of `runs` holds a run of consecutive lines (first seq, count, one
//! blob of the lines each followed by `\n`, and a `(len, crc32)` pair per line), so a
//! batch of a thousand lines is one row, and a drain copies whole blobs. Each run
//! records `end_bytes`, the journal's cumulative payload bytes through it, so the
//! backlog is `newest end_bytes - drained_bytes` in O(1).

mod append;
mod appender;
mod appender_writer;
mod files;
mod forks;
mod group_commit;
mod keys;
mod open;
mod probe;
mod run;
mod schema;
mod source;
mod space;
mod waits;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sync::Mutex;
use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::os::sys;

pub use append::KeyedAppend;
pub use appender::{Appender, AppenderOptions, AppenderStats, OnFull, Pushed, PushedLines};
pub use appender_writer::AppenderWriter;
pub use files::spool_journals;
pub(crate) use files::{is_orphaned_log, left_the_spool};
pub(crate) use open::NOT_READY;
pub(crate) use open::{orphaned_log, ORPHANED_LOG};
pub(crate) use probe::Probe;
pub use run::{line_crc, validate_line, DEFAULT_MAX_LINE_BYTES, MAX_LINE_BYTES_LIMIT};
pub(crate) use schema::{is_journal, table_names, FORMAT_VERSION as JOURNAL_FORMAT_VERSION};
pub use source::DrainedRecord;
pub(crate) use source::Taken;

/// How durable an acknowledged append is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync before returning: survives a power cut (default).
    #[default]
    Full,
    /// survives a process crash, not a power cut (`SQLite` `synchronous=NORMAL`).
    Normal,
}

impl std::str::FromStr for Durability {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "full" => Ok(Durability::Full),
            "normal" => Ok(Durability::Normal),
            other => Err(Error::InvalidArgument(format!("durability must be `full` or `normal`, not `{other}`"))),
        }
    }
}

crate::options::options! {
    /// Options for [`Journal::open`].
    pub struct JournalOptions {
        /// When an append counts as durable.
        pub durability: Durability = Durability::Full,
        /// Longest accepted line in bytes (without the `\n`): 1 to
        /// [`MAX_LINE_BYTES_LIMIT`].
        pub max_line_bytes: usize = DEFAULT_MAX_LINE_BYTES,
        /// Refuse appends once the undrained backlog would exceed this many payload
        /// bytes ([`Error::JournalFull`]). `None`: no limit.
        pub max_backlog_bytes: Option<u64> = None,
        /// When the backlog is full, wait up to this long for a compactor to make room
        /// before failing with `JournalFull`. `None`: fail at once.
        pub full_wait: Option<Duration> = None,
        /// How long an idempotency key is remembered, measured in time the host was up
        /// (a wall-clock step does not expire keys; see docs/design.md).
        pub key_retention: Duration = Duration::from_secs(7 * 24 * 3600),
        /// How often a keyed commit purges expired keys.
        pub key_purge_interval: Duration = Duration::from_secs(60),
        /// How long to wait for another process's `SQLite` write lock on this journal
        /// (retrying every millisecond; process-wide, the longest one asked for wins).
        pub busy_timeout: Duration = Duration::from_secs(30),
        /// Accept a journal on a network filesystem (only for filesystems that really
        /// are host-local despite their type, e.g. a private FUSE mount).
        pub allow_network_fs: bool = false,
    }
}

/// The random 128-bit identity of a journal, made when its file was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JournalId(pub [u8; 16]);

impl JournalId {
    /// A new random id from the kernel's random source.
    ///
    /// # Errors
    /// [`Error::Io`] when the kernel gives no random bytes.
    pub fn random() -> Result<JournalId> {
        let mut b = [0u8; 16];
        sys::random_bytes(&mut b).map_err(|e| Error::io("reading random bytes for a journal id", e))?;
        Ok(JournalId(b))
    }

    /// The id as 32 lower-case hex digits (as in the manifest and messages).
    #[must_use]
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    /// Parse 32 hex digits (either case); `None` otherwise.
    #[must_use]
    pub fn from_hex(s: &str) -> Option<JournalId> {
        let v = crate::hex::decode(s)?;
        Some(JournalId(v.try_into().ok()?))
    }
}

impl fmt::Display for JournalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What is waiting in a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Lines appended but not yet recorded as drained.
    pub lines: u64,
    /// Payload bytes of those lines (without their `\n`s).
    pub bytes: u64,
    /// When the oldest waiting line was appended (ms since the Unix epoch).
    pub oldest_append_ms: Option<i64>,
    /// Highest seq ever assigned (0 for a journal never written to).
    pub last_seq: u64,
    /// Highest seq recorded as drained.
    pub drained_seq: u64,
}

/// A handle on one journal file. `Send + Sync`: share it between threads (an `Arc`),
/// and concurrent appends are group-committed. Several processes may open the same
/// journal; `SQLite` serialises their transactions.
pub struct Journal {
    path: PathBuf,
    id: JournalId,
    opts: JournalOptions,
    /// `None` only while dropping. In a forked child the connection is leaked, never
    /// closed: closing it there would checkpoint and delete the parent's live `-wal`.
    conn: Option<Mutex<Connection>>,
    /// Appends waiting for, or in, a group's transaction.
    group: group_commit::GroupCommit<std::sync::Arc<append::Appending>>,
    maintenance: Mutex<Maintenance>,
    /// The (device, inode) of the journal file and of its `-wal` when the handle was
    /// opened; a commit first checks its path still names them ([`Journal::check_in_place`]).
    files: [(u64, u64); 2],
    /// Events in the journal's folder since the last in-place check, set up by the
    /// first commit (a compactor's handles never append, so they hold no inotify
    /// instance: those are limited per user). Inner `None`: the watch could not be set
    /// up; then every commit checks by `lstat`.
    folder_watch: OnceLock<Option<sys::FolderWatch>>,
    /// The last in-place check failed.
    gone: AtomicBool,
    /// The journal's and its `-wal`'s names are durable (ordering O2): a writer's open
    /// makes them so; a compactor's open (`open_existing`) does not pay a folder fsync
    /// it never needs (it acknowledges no line), and its first commit of lines, if it
    /// ever makes one, syncs the folder first.
    names_durable: AtomicBool,
    /// This handle has fdatasynced the journal's `-wal` since it opened it: from then
    /// on a row marked `durable` was made durable by its own commit (O3). Before it,
    /// a row may have become visible through `SQLite`'s recovery of the `-wal` at an
    /// open (a `full` writer killed between writing its commit and its fsync), never
    /// synced by anyone.
    wal_synced_since_open: AtomicBool,
    /// The process that opened this handle (a handle does not survive `fork()`).
    pid: u32,
}

/// When key purges and WAL checkpoints last ran.
struct Maintenance {
    last_key_purge: Instant,
    deleted_since_checkpoint: u64,
}

/// Wall-clock ms since the Unix epoch (for `appended_ms`, shown by `status`).
fn now_ms() -> i64 {
    i64::try_from(crate::os::clock::wall_ms()).unwrap_or(i64::MAX)
}

impl Journal {
    /// The path this handle opened.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, with this journal's busy timeout in force on this thread; an
    /// error in a forked child (checked before taking any lock: another thread of the
    /// parent may have held it at the fork).
    fn lock_conn(&self) -> Result<ConnGuard<'_>> {
        self.check_process()?;
        // The fork gate before the connection's lock, always in this order.
        let inside = crate::os::fork::enter();
        let conn = self.conn.as_ref().expect("a journal's connection lives until it is dropped").lock();
        open::set_busy_limit(self.opts.busy_timeout);
        Ok(ConnGuard { conn, _inside: inside })
    }

    /// A handle used in a process forked from the one that opened it: refuse. `SQLite`'s
    /// locks belong to the parent, so the child would write without any.
    fn check_process(&self) -> Result<()> {
        let me = crate::os::sys::current_pid();
        if me == self.pid {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "this handle on journal {} was opened in process {} and this is process {me}, forked from it: a \
             journal handle does not survive fork(). Give the child its own journal file (e.g. one per process \
             in the spool), opened in the child",
            self.path.display(),
            self.pid
        )))
    }

    /// (device, inode) of the journal file this handle opened.
    pub(crate) fn file_identity(&self) -> (u64, u64) {
        self.files[0]
    }

    /// Test seam: appends queued on this handle, waiting for a leader's transaction
    /// (lets a test know a group has formed without waiting for a time).
    #[doc(hidden)]
    #[must_use]
    pub fn queued_appends(&self) -> usize {
        self.group.queued()
    }

    /// The journal's identity, made when its file was created.
    #[must_use]
    pub fn id(&self) -> JournalId {
        self.id
    }

    /// The options this handle was opened with.
    #[must_use]
    pub fn options(&self) -> &JournalOptions {
        &self.opts
    }

    /// Lines waiting to be drained, and the seq counters.
    ///
    /// # Errors
    /// [`Error::Sqlite`] when the journal cannot be read; [`Error::InvalidArgument`] in
    /// a process forked from the one that opened the handle.
    pub fn backlog(&self) -> Result<Backlog> {
        let conn = self.lock_conn()?;
        let ctx = |what: &str| format!("{what} in {}", self.path.display());
        let h = schema::head(&conn).map_err(|e| Error::sqlite(ctx("reading the backlog"), e))?;
        let oldest: Option<i64> = conn
            .query_row("SELECT appended_ms FROM runs ORDER BY first_seq LIMIT 1", [], |r| r.get(0))
            .optional()
            .map_err(|e| Error::sqlite(ctx("reading the oldest line"), e))?;
        let last_seq = h.next_seq - 1;
        Ok(Backlog {
            lines: last_seq.saturating_sub(h.drained_seq),
            bytes: h.total_bytes - h.drained_bytes,
            oldest_append_ms: oldest,
            last_seq,
            drained_seq: h.drained_seq,
        })
    }
}

/// A journal's connection, locked, with the fork gate held (`os::fork`): no fork
/// happens while a thread uses it. Fields drop in order: the connection's lock first.
pub(crate) struct ConnGuard<'a> {
    conn: crate::sync::MutexGuard<'a, Connection>,
    _inside: crate::os::fork::Inside,
}

impl std::ops::Deref for ConnGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for ConnGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// A write transaction (`BEGIN IMMEDIATE` … `COMMIT`) run through cached statements:
/// rusqlite's `Transaction` parses both on every call, which was a measurable share of
/// a one-line append's CPU, and of a drained record's. Rolls back when dropped
/// uncommitted (or when COMMIT failed).
pub(super) struct WriteTx<'c> {
    conn: &'c Connection,
    committed: bool,
}

impl<'c> WriteTx<'c> {
    pub(super) fn begin(conn: &'c Connection) -> rusqlite::Result<WriteTx<'c>> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(WriteTx { conn, committed: false })
    }

    pub(super) fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.committed = true;
        Ok(())
    }

    /// COMMIT, returning the database's size in bytes as committed (read inside the
    /// transaction, where it costs no lock: an append's checkpoint reservation needs
    /// it, `append.rs`).
    pub(super) fn commit_counting_bytes(self) -> rusqlite::Result<u64> {
        let pragma = |p: &str| self.conn.prepare_cached(p)?.query_row([], |r| schema::get_u64(r, 0));
        let bytes = pragma("PRAGMA page_count")?.saturating_mul(pragma("PRAGMA page_size")?);
        self.commit()?;
        Ok(bytes)
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        // A failed COMMIT may have rolled back already (autocommit is then on again).
        if !self.committed && !self.conn.is_autocommit() {
            let _ = self.conn.prepare_cached("ROLLBACK").and_then(|mut st| st.execute([]));
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let conn = self.conn.take();
        if crate::os::sys::current_pid() == self.pid {
            let _inside = crate::os::fork::enter(); // closing is SQLite work too
                                                    // (A journal retired, removed or replaced meanwhile is safe to close: SQLite
                                                    // checks SQLITE_FCNTL_HAS_MOVED and then neither checkpoints nor deletes
                                                    // the -wal and -shm by name, which may be a new journal's; see
                                                    // tests/hostile.rs.)
            drop(conn);
            forks::closed(self.files[0]);
        } else {
            // A forked child: closing SQLite's inherited connection would checkpoint and
            // delete the -wal the parent still writes to. Leak it; the registry entry
            // stays, so this process keeps refusing to open the journal again.
            std::mem::forget(conn);
        }
    }
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).field("id", &self.id).finish_non_exhaustive()
    }
}
