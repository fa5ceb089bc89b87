//! The writer side: a journal is a SQLite database in WAL mode on the writer host's
//! local disk, holding lines that are accepted but not yet drained into the target.
//!
//! Storage: one row of `runs` holds a run of consecutive lines (first seq, count, one
//! blob of the lines each followed by `\n`, and a `(len, crc32)` pair per line), so a
//! batch of a thousand lines is one row, and a drain copies whole blobs.
//!
//! Invariants this module keeps:
//! - the next seq is one past the newest run, or `drained_seq + 1` when every run was
//!   drained and deleted (runs are only ever deleted up to `drained_seq`, which only
//!   grows), so a seq is never reused — the guarantee DESIGN.md asks of
//!   `AUTOINCREMENT`, kept without a counter row that every append would rewrite (an
//!   append writes one page: the newest leaf of `runs`); runs holding seqs above
//!   `drained_seq` are all present and contiguous.
//! - each run records `end_bytes`, the journal's cumulative payload bytes through it,
//!   so the backlog is `newest end_bytes - drained_bytes` in O(1).
//! - an append returns only after its transaction committed under the configured
//!   durability (`Full`: the WAL was fsynced); the journal's and its `-wal`'s names
//!   are durable before that (the folder is fsynced when a handle is opened: ordering
//!   O2 of docs/design.md).
//! - rows a drain read are made durable before the drain commits them
//!   ([`Journal::sync_for_drain`], ordering O3): a `Normal` commit is visible to other
//!   connections before it is durable.
//! - `drained_seq` only moves forward, and rows are deleted only up to it.
//! - concurrent `append`s on one handle share transactions (group commit): one leader
//!   commits everything that was queued, every caller gets its own result.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::{Error, LineProblem, Result};
use crate::manifest::chain_step;
use crate::{failpoint, fscheck, sys};

/// Default maximum line length: 1 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
const FORMAT_VERSION: i64 = 1;
/// Checkpoint the WAL after this many drained runs were deleted since the last one.
const CHECKPOINT_EVERY_DELETED_RUNS: u64 = 1_000;

/// How durable an acknowledged append is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync before returning: survives a power cut (default).
    #[default]
    Full,
    /// survives a process crash, not a power cut (SQLite `synchronous=NORMAL`).
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

/// Options for [`Journal::open`].
#[derive(Debug, Clone)]
pub struct JournalOptions {
    pub durability: Durability,
    /// Longest accepted line in bytes (without the `\n`). Default 1 MiB.
    pub max_line_bytes: usize,
    /// Refuse appends once the undrained backlog would exceed this many bytes.
    pub max_backlog_bytes: Option<u64>,
    /// When the backlog is full, wait up to this long for a compactor to make room
    /// before failing with `JournalFull`. `None`: fail at once.
    pub full_wait: Option<Duration>,
    /// How long an idempotency key is remembered, measured in time the host was up
    /// (a wall-clock step does not expire keys; see docs/design.md). Default 7 days.
    pub key_retention: Duration,
    /// How often a keyed commit purges expired keys. Default 60 s.
    pub key_purge_interval: Duration,
    /// How long to wait for another process's SQLite write lock on this journal
    /// (retrying every millisecond; process-wide, the longest one asked for wins).
    pub busy_timeout: Duration,
    /// Accept a journal on a network filesystem (only for filesystems that really are
    /// host-local despite their type, e.g. a private FUSE mount).
    pub allow_network_fs: bool,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            durability: Durability::Full,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_backlog_bytes: None,
            full_wait: None,
            key_retention: Duration::from_secs(7 * 24 * 3600),
            key_purge_interval: Duration::from_secs(60),
            busy_timeout: Duration::from_secs(30),
            allow_network_fs: false,
        }
    }
}

/// The random 128-bit identity of a journal, made when its file was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JournalId(pub [u8; 16]);

impl JournalId {
    pub fn random() -> Result<JournalId> {
        let mut b = [0u8; 16];
        sys::random_bytes(&mut b).map_err(|e| Error::io("reading random bytes for a journal id", e))?;
        Ok(JournalId(b))
    }

    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

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

/// CRC32 of a line's bytes (without the `\n`), as stored per row and in watermarks.
pub fn line_crc(line: &[u8]) -> u32 {
    crc32fast::hash(line)
}

/// Check a line against the rules: no `\n`, at most `max` bytes.
pub fn validate_line(index: usize, line: &[u8], max: usize) -> Result<()> {
    if line.len() > max {
        return Err(Error::InvalidLine { index, problem: LineProblem::TooLong { len: line.len(), max } });
    }
    if let Some(at) = line.iter().position(|&b| b == b'\n') {
        return Err(Error::InvalidLine { index, problem: LineProblem::ContainsNewline { at } });
    }
    Ok(())
}

/// What is waiting in a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub lines: u64,
    pub bytes: u64,
    /// When the oldest waiting line was appended (ms since the Unix epoch).
    pub oldest_append_ms: Option<i64>,
    /// Highest seq ever assigned (0 for a journal never written to).
    pub last_seq: u64,
    /// Highest seq recorded as drained.
    pub drained_seq: u64,
}

/// The journal's own record of how far it was drained, and into which target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainedRecord {
    pub target_id: String,
    pub seq: u64,
    pub crc: u32,
    /// The watermark's chained hash at `seq` (`None`: recorded before chains existed).
    pub chain: Option<u64>,
}

/// One queued append: a run of lines, optionally with one idempotency key per line,
/// and the slot its caller waits on.
struct Request {
    lines: Vec<Vec<u8>>,
    keys: Option<Vec<Vec<u8>>>,
    slot: Slot,
}

impl Request {
    fn new(lines: Vec<Vec<u8>>, keys: Option<Vec<Vec<u8>>>) -> Request {
        Request { lines, keys, slot: Slot::default() }
    }
}

/// A queued caller's outcome, set by the leader that served it. Callers sleep on the
/// journal's `group_epoch` futex, so a leader wakes its whole group with one system
/// call (waking each caller in turn took ~4 µs apiece, 60 µs for a group of 16).
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Waiting,
    /// The previous leader handed leadership to this caller.
    Lead,
    Done(Result<Vec<u64>>),
}

impl Slot {
    fn set(&self, to: SlotState) {
        *self.state.lock() = to;
    }

    /// The result (`Some(Ok|Err)`), or `None` when this caller must lead; `Waiting`
    /// leaves the slot as it is.
    fn take(&self) -> Option<Option<Result<Vec<u64>>>> {
        let mut st = self.state.lock();
        match std::mem::take(&mut *st) {
            SlotState::Done(r) => Some(Some(r)),
            SlotState::Lead => Some(None),
            SlotState::Waiting => None,
        }
    }
}

/// What a caller of [`Journal::group_commit`] does next.
enum Role {
    /// Wait for a leader to fill this caller's slot (or hand it the leadership).
    Follow,
    /// Lead: wait briefly for the group to fill up.
    Gather,
    /// Lead: commit the queued group now.
    Commit,
}

#[derive(Default)]
struct GroupState {
    queue: Vec<Arc<Request>>,
    /// A leader is gathering or committing (or was just handed leadership).
    leader_active: bool,
    /// The leader is waiting for callers to complete its group...
    gathering: bool,
    /// ...the gather numbered this (so a taken-over gatherer that wakes up late does
    /// not mistake a later leader's gather for its own).
    gather_id: u64,
    /// Size of the largest recent group; decays by one whenever a leader's wait for
    /// that many callers times out.
    peak_group: usize,
}

/// A handle on one journal file. `Send + Sync`: share it between threads (an `Arc`),
/// and concurrent appends are group-committed. Several processes may open the same
/// journal; SQLite serialises their transactions.
pub struct Journal {
    path: PathBuf,
    id: JournalId,
    opts: JournalOptions,
    /// `None` only while dropping. In a forked child the connection is leaked, never
    /// closed: closing it there would checkpoint and delete the parent's live `-wal`.
    conn: Option<Mutex<Connection>>,
    group: Mutex<GroupState>,
    /// Bumped (and futex-woken) whenever a leader has filled its callers' slots.
    group_epoch: AtomicU32,
    maintenance: Mutex<Maintenance>,
    /// The (device, inode) of the journal file and of its `-wal` when the handle was
    /// opened; a commit first checks its path still names them ([`Journal::check_in_place`]).
    files: [(u64, u64); 2],
    /// Events in the journal's folder since the last in-place check, set up by the
    /// first commit (a compactor's handles never append, so they hold no inotify
    /// instance: those are limited per user). Inner `None`: the watch could not be set
    /// up; then every commit checks by `lstat`.
    folder_watch: std::sync::OnceLock<Option<sys::FolderWatch>>,
    /// The last in-place check failed.
    gone: std::sync::atomic::AtomicBool,
    /// The process that opened this handle (a handle does not survive `fork()`).
    pid: u32,
}

struct Maintenance {
    last_key_purge: Instant,
    deleted_since_checkpoint: u64,
}

thread_local! {
    /// How long [`retry_when_busy`] keeps retrying on this thread: set from the journal's
    /// `busy_timeout` each time its connection is taken (SQLite calls the handler on the
    /// thread that runs the statement; a plain fn pointer cannot carry it).
    static BUSY_LIMIT_MS: Cell<u64> = const { Cell::new(30_000) };
}

/// SQLite's own busy timeout backs off to 100 ms sleeps, so a compactor's short write
/// (step 7) or a second process's append kept missing the gaps between a busy writer's
/// transactions (p99 latencies of half a second). Retry every millisecond instead.
fn retry_when_busy(attempt: i32) -> bool {
    if attempt as u64 >= BUSY_LIMIT_MS.with(Cell::get) {
        return false;
    }
    std::thread::sleep(Duration::from_millis(1));
    true
}

fn set_busy_limit(timeout: Duration) {
    BUSY_LIMIT_MS.with(|l| l.set(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)));
}

/// `now + d`, saturating far in the future instead of panicking on overflow.
pub(crate) fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked))
}

/// SQLite could not open a journal (or its `-wal`/`-shm`): an I/O error, never "not a
/// journal" (which would invite deleting a good one); named EMFILE when this process
/// is at its file limit.
fn cannot_open(path: &Path, e: rusqlite::Error) -> Error {
    match sys::fd_usage() {
        Some((open, limit)) if open + 8 >= limit => Error::io(
            format!(
                "opening journal {}: too many open files ({open} of this process's limit of {limit}); raise the \
                 limit (`ulimit -n`, LimitNOFILE=) or lower the number of journals opened at once \
                 (CompactorOptions::max_open_journals, --max-open-journals)",
                path.display()
            ),
            io::Error::from_raw_os_error(libc::EMFILE),
        ),
        _ => {
            Error::io(format!("opening journal {} (or its -wal/-shm)", path.display()), io::Error::other(e.to_string()))
        }
    }
}

/// What a compactor's open says of a `*.journal` whose writer has not created the
/// journal in it yet ([`Error::is_journal_not_ready`]).
pub(crate) const NOT_READY: &str = "it is empty: no writer has created a journal in it yet (or one is doing so \
                                     right now; a drain never creates a journal, and picks it up once its writer has)";

/// Give free pages back to the disk. The statement frees one page per step: it must
/// be stepped to its end (a single step, as `execute` does, frees one page). `limit`:
/// at most that many pages. Best effort: on failure the pages stay free in the file.
fn incremental_vacuum(conn: &Connection, limit: Option<u32>) {
    let sql = match limit {
        Some(n) => format!("PRAGMA incremental_vacuum({n})"),
        None => "PRAGMA incremental_vacuum".to_string(),
    };
    if let Ok(mut st) = conn.prepare(&sql) {
        if let Ok(mut rows) = st.query([]) {
            while let Ok(Some(_)) = rows.next() {}
        }
    }
}

/// After a record: a journal with nothing left is rebuilt (`VACUUM` of an empty
/// database writes a few pages); one still holding lines gives back a bounded number
/// of pages per record (moving many pages costs as much as the drain itself: measured
/// 0.34x drain throughput when every free page was given back at once).
fn give_space_back(conn: &Connection) {
    let empty = conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM runs)", [], |r| r.get::<_, bool>(0)).unwrap_or(false);
    if empty && conn.execute_batch("VACUUM").is_ok() {
        return;
    }
    incremental_vacuum(conn, Some(VACUUM_FREE_PAGES as u32));
}

fn is_disk_full(e: &Error) -> bool {
    match e {
        Error::Sqlite { source, .. } => source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
        _ => false,
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    first_seq INTEGER PRIMARY KEY,
    count INTEGER NOT NULL,
    end_bytes INTEGER NOT NULL,
    appended_ms INTEGER NOT NULL,
    line_meta BLOB NOT NULL,
    data BLOB NOT NULL,
    run_crc INTEGER
);
CREATE TABLE IF NOT EXISTS idempotency (
    key BLOB PRIMARY KEY,
    seq INTEGER NOT NULL,
    added_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency(added_ms);
CREATE TABLE IF NOT EXISTS state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    drained_bytes INTEGER NOT NULL,
    drained_target TEXT,
    drained_seq INTEGER NOT NULL,
    drained_crc INTEGER NOT NULL,
    drained_chain INTEGER
);
";

/// How long a group-commit leader waits for the recent peak number of callers.
const GROUP_WAIT: Duration = Duration::from_micros(100);

/// Checkpoint the WAL once it holds this many pages (2 MiB of 4 KiB pages).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 512;

/// The size a `-wal` is cut back to when it is reset.
const WAL_SIZE_LIMIT_BYTES: u64 = 4 << 20;

/// Free pages (4 KiB) in a journal before a record gives them back to the disk.
const VACUUM_FREE_PAGES: i64 = 256;

/// Free space kept on a journal's disk for recording drains: appends are refused
/// below it, so a compactor can always delete drained rows (a delete writes to the
/// WAL too) and give the space back — a spool filled by its own journals would
/// otherwise never recover (issue 13 item 2).
const SPOOL_RESERVE_BYTES: u64 = 1 << 20;

/// Runs deleted per transaction when the journal's disk is full.
const FULL_DISK_DELETE_RUNS: i64 = 32;

/// SQLite page size of new journals.
const JOURNAL_PAGE_SIZE: u32 = 4 << 10;

/// Split a request's lines into runs of at most this much data (a single longer line
/// is a run of its own): bounds the memory a drain needs per row.
const RUN_MAX_BYTES: usize = 1 << 20;
/// Bytes of `line_meta` per line: little-endian u32 length, then u32 CRC32.
const LINE_META_BYTES: usize = 8;

/// A run being built: lines each followed by `\n`, and their (len, crc) pairs.
#[derive(Default)]
struct RunBuf {
    first_seq: u64,
    count: u64,
    end_bytes: u64,
    meta: Vec<u8>,
    data: Vec<u8>,
}

impl RunBuf {
    /// CRC32 of `line_meta` followed by `data`: lets a drain check a whole run with one
    /// pass over its bytes instead of a CRC call per (short) line.
    fn run_crc(&self) -> i64 {
        let mut h = crc32fast::Hasher::new();
        h.update(&self.meta);
        h.update(&self.data);
        h.finalize() as i64
    }

    fn push(&mut self, line: &[u8]) {
        self.meta.extend_from_slice(&(line.len() as u32).to_le_bytes());
        self.meta.extend_from_slice(&line_crc(line).to_le_bytes());
        self.data.extend_from_slice(line);
        self.data.push(b'\n');
        self.count += 1;
    }
}

/// A write transaction (`BEGIN IMMEDIATE` … `COMMIT`) run through cached statements:
/// rusqlite's `Transaction` parses both on every call, which was a measurable share of
/// a one-line append's CPU. Rolls back when dropped uncommitted (or when COMMIT failed).
struct WriteTx<'c> {
    conn: &'c Connection,
    committed: bool,
}

impl<'c> WriteTx<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<WriteTx<'c>> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(WriteTx { conn, committed: false })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.committed = true;
        Ok(())
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

/// Where [`Journal::drain_after`] sends whole lines: the bytes, and their CRC when it
/// was already computed (a whole run's data).
pub(crate) type DrainSink<'a> = dyn FnMut(&[u8], Option<&crc32fast::Hasher>) -> Result<()> + 'a;

/// Counters derived by [`Journal::head`].
struct Head {
    next_seq: u64,
    /// Cumulative payload bytes ever appended.
    total_bytes: u64,
    drained_seq: u64,
    /// Cumulative payload bytes of the runs deleted so far.
    drained_bytes: u64,
}

/// What a drain took from one journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    pub lines: u64,
    pub bytes: u64,
    pub last_seq: u64,
    pub last_crc: u32,
    /// The watermark's chained hash after `last_seq`.
    pub chain: u64,
}

impl Journal {
    /// Open an existing journal, never creating one (what a compactor does: a mistyped
    /// path must be an error, not a new empty journal).
    pub fn open_existing(path: impl AsRef<Path>, opts: JournalOptions) -> Result<Journal> {
        let path = path.as_ref();
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => Self::open_impl(path, opts, false),
            Ok(m) if m.file_type().is_symlink() => Err(Error::NotAJournal {
                path: path.to_path_buf(),
                detail: "it is a symlink; tributary opens journals by their real path only (give that path, or \
                         move the journal itself into the spool)"
                    .into(),
            }),
            Ok(_) => Err(Error::NotAJournal { path: path.to_path_buf(), detail: "not a regular file".into() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotAJournal {
                path: path.to_path_buf(),
                detail: "no such file (a journal is created by its writer's first open; check the path)".into(),
            }),
            Err(e) => Err(Error::io(format!("inspecting journal {}", path.display()), e)),
        }
    }

    /// Open (creating if needed, mode 0600) the journal at `path`.
    pub fn open(path: impl AsRef<Path>, opts: JournalOptions) -> Result<Journal> {
        Self::open_impl(path.as_ref(), opts, true)
    }

    /// `create`: make a new journal in an empty file (a writer's open). A compactor's
    /// open never does: a file its writer is creating at that moment is "not ready",
    /// and racing the writer through SQLite's first-time setup broke both.
    fn open_impl(path: &Path, opts: JournalOptions, create: bool) -> Result<Journal> {
        let path = path.to_path_buf();
        if opts.max_line_bytes == 0 {
            return Err(Error::InvalidArgument("max_line_bytes must be at least 1".into()));
        }
        if !opts.allow_network_fs {
            fscheck::check_journal_location(&path)?;
        }
        // A -wal without its journal: the journal was removed (`rm x.journal`) but not
        // its log, which may hold undrained lines. SQLite would replay that log into a
        // new, empty journal of the same name: refuse, touching nothing.
        let wal = wal_path(&path);
        if retiring_path(&path).exists() {
            if path.exists() {
                // a tombstone left beside a journal made after that retirement
                let _ = std::fs::remove_file(retiring_path(&path));
            } else {
                finish_retirement(&path)?; // a retirement cut short: its lines are committed
            }
        }
        if !path.exists() && wal.exists() {
            return Err(Error::JournalGone {
                path: path.clone(),
                detail: format!(
                    "it does not exist, but its write-ahead log {} does (the journal was removed without its -wal \
                     and -shm, which may hold undrained lines). Restore the journal file; or, if nothing in them \
                     is needed, remove {} and its -shm. To retire a journal, use `tributary retire`",
                    wal.display(),
                    wal.display()
                ),
            });
        }
        // Create a new file ourselves so it is 0600 and never follows a planted symlink
        // (SQLite gives its -wal and -shm files the same mode). An existing journal is
        // never opened outside SQLite: closing any descriptor of a file drops all of
        // this process's POSIX locks on it, including the ones another connection of
        // this process holds — another process could then take SQLite's exclusive lock,
        // think it is the last user and delete the -wal under a live writer.
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(_) => {} // a brand-new file: nobody holds locks on it yet
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let md = std::fs::symlink_metadata(&path)
                    .map_err(|e| Error::io(format!("inspecting journal {}", path.display()), e))?;
                if !md.is_file() {
                    return Err(Error::NotAJournal {
                        path: path.clone(),
                        detail: "it is not a regular file (a symlink? journals are opened by their real path only)"
                            .into(),
                    });
                }
            }
            Err(e) => return Err(Error::io(format!("opening journal {}", path.display()), e)),
        }
        let inode = file_id(&path)?;
        forks::check_not_inherited(&path, inode)?;
        let mut conn = Connection::open(&path).map_err(|e| Error::sqlite(format!("opening {}", path.display()), e))?;
        let not_journal = |detail: String| Error::NotAJournal { path: path.clone(), detail };
        set_busy_limit(opts.busy_timeout);
        conn.busy_handler(Some(retry_when_busy)).map_err(|e| Error::sqlite("setting the busy handler", e))?;
        // Refuse someone else's database before changing anything in it (the WAL switch
        // below is permanent).
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| match e.sqlite_error_code() {
                // Opening the file, its -wal or -shm failed: most often the file limit.
                Some(rusqlite::ErrorCode::CannotOpen) => cannot_open(&path, e),
                _ => not_journal(format!("not an SQLite database: {e}")),
            })?;
        if !tables.is_empty() && !tables.iter().any(|t| t == "meta") {
            return Err(not_journal("it is an SQLite database without tributary's tables".into()));
        }
        if tables.is_empty() && !create {
            return Err(not_journal(NOT_READY.into()));
        }
        // For a new journal only (an existing one keeps its settings; and setting
        // auto_vacuum runs a write transaction, which must not make opening a journal
        // that another process is writing wait for its lock):
        // - auto_vacuum=INCREMENTAL, never vacuumed: its pointer map lets DELETE free a
        //   drained run's overflow chain without reading every page of it (that second
        //   read of every byte was a fifth of a drain's time);
        // - 4 KiB pages: a one-line commit writes one 4 KiB WAL frame instead of 16 KiB
        //   (single appends 0.92x -> ~1.0x raw SQLite). 16 KiB pages had been chosen to
        //   cut that DELETE walk, which the pointer map now skips: a drain costs ~5%
        //   more with 4 KiB pages, and its page cache is smaller.
        if tables.is_empty() {
            conn.execute_batch(&format!("PRAGMA page_size = {JOURNAL_PAGE_SIZE}; PRAGMA auto_vacuum = INCREMENTAL;"))
                .map_err(|e| Error::sqlite("setting a new journal's page size and auto_vacuum", e))?;
        }
        // Switching a new file to WAL takes an exclusive lock and does not consult the
        // busy handler: processes creating the same journal at once must retry here.
        let started = Instant::now();
        let mode: String = loop {
            match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)) {
                Ok(m) => break m,
                Err(e) if is_busy(&e) && started.elapsed() < opts.busy_timeout => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(e) => return Err(not_journal(format!("cannot switch to WAL mode: {e}"))),
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(not_journal(format!("SQLite refused WAL mode (got {mode})")));
        }
        let sync = match opts.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        // A 2 MiB WAL (SQLite's default is 4 MiB): commits that overwrite WAL space are
        // cheaper than ones that grow the file, and every fresh journal or reopened one
        // (SQLite deletes the WAL on close) starts by growing it; the earlier reset
        // halves that phase. Measured: equal in steady state; in a journal's first
        // second, single appends +5-20%, 1000-line batches -3%.
        // journal_size_limit: a WAL that grew past it (a burst, a slow drain) is cut back
        // to it when SQLite next resets it, so drained space goes back to the disk.
        conn.execute_batch(&format!(
            "PRAGMA synchronous={sync}; PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}; \
             PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES};"
        ))
        .map_err(|e| Error::sqlite("setting synchronous", e))?;
        let mut conn = conn;
        let id = Self::init_schema(&mut conn, &path)?;
        Self::add_column(&mut conn, "runs", "run_crc")?;
        Self::add_column(&mut conn, "state", "drained_chain")?;
        // O2: the journal file and the `-wal` SQLite just created (it makes a new one
        // whenever the last connection closed) must be durable as names before any
        // line in them is acknowledged; SQLite fsyncs the files, never their folder.
        sync_folder(&path)?;
        // The -wal exists from the schema read on: SQLite deletes it only when the last
        // connection closes, and this one stays open as long as the handle.
        let files = [inode, file_id(&wal_path(&path))?];
        forks::opened(inode);
        Ok(Journal {
            path,
            id,
            opts,
            conn: Some(Mutex::new(conn)),
            group: Mutex::new(GroupState::default()),
            group_epoch: AtomicU32::new(0),
            maintenance: Mutex::new(Maintenance { last_key_purge: Instant::now(), deleted_since_checkpoint: 0 }),
            files,
            folder_watch: Default::default(),
            gone: Default::default(),
            pid: std::process::id(),
        })
    }

    /// After a commit: the journal's path must still name the file (and `-wal`) this
    /// handle opened. (Appends run it only after an inotify event in the journal's
    /// folder — or always, without a watch; a rename of a folder above the spool is
    /// not seen.) A journal removed (`rm`), replaced (a new journal of the same
    /// name), or whose spool was moved, would take this handle's appends into an
    /// unlinked inode that no drain ever sees (issue 12 item 8). Two `lstat`s per
    /// group commit.
    /// Whether this handle's path still names the journal it opened (see
    /// [`Journal::check_in_place`]); a daemon reopens a journal by path when not.
    pub fn is_in_place(&self) -> bool {
        self.check_in_place().is_ok()
    }

    pub(crate) fn check_in_place(&self) -> Result<()> {
        let gone = |detail: String| Error::JournalGone { path: self.path.clone(), detail };
        for (path, opened) in [(self.path.clone(), self.files[0]), (wal_path(&self.path), self.files[1])] {
            match std::fs::symlink_metadata(&path) {
                Ok(md) if (md.dev(), md.ino()) == opened => {}
                Ok(_) => return Err(gone(format!("{} was replaced by another file", path.display()))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(gone(format!("{} was removed or moved", path.display())))
                }
                Err(e) => return Err(Error::io(format!("inspecting {}", path.display()), e)),
            }
        }
        Ok(())
    }

    /// The id of an already initialised journal, read without taking SQLite's write
    /// lock (a busy writer would starve an IMMEDIATE transaction here).
    fn existing_id(conn: &Connection) -> Option<(String, String)> {
        let get = |k: &str| conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0)).ok();
        let has_state: bool = conn.query_row("SELECT count(*) FROM state", [], |r| r.get::<_, i64>(0)).ok()? == 1;
        if has_state {
            Some((get("format")?, get("journal_id")?))
        } else {
            None
        }
    }

    fn parse_meta(path: &Path, format: &str, id_hex: &str) -> Result<JournalId> {
        let not_journal = |detail: String| Error::NotAJournal { path: path.to_path_buf(), detail };
        if format != FORMAT_VERSION.to_string() {
            return Err(not_journal(format!("journal format {format}, this build reads {FORMAT_VERSION}")));
        }
        JournalId::from_hex(id_hex).ok_or_else(|| not_journal(format!("bad journal_id `{id_hex}`")))
    }

    fn init_schema(conn: &mut Connection, path: &Path) -> Result<JournalId> {
        if let Some((format, id_hex)) = Self::existing_id(conn) {
            return Self::parse_meta(path, &format, &id_hex);
        }
        let not_journal = |detail: String| Error::NotAJournal { path: path.to_path_buf(), detail };
        // IMMEDIATE: two processes creating the same journal at once agree on one id.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| not_journal(format!("cannot start a transaction: {e}")))?;
        // (open() already refused a database without tributary's tables.)
        let conn_tx = &tx;
        conn_tx.execute_batch(SCHEMA).map_err(|e| Error::sqlite("creating the journal schema", e))?;
        let fresh_id = JournalId::random()?;
        conn_tx
            .execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('format', ?1), ('journal_id', ?2)",
                params![FORMAT_VERSION.to_string(), fresh_id.to_hex()],
            )
            .map_err(|e| Error::sqlite("writing journal metadata", e))?;
        conn_tx
            .execute(
                "INSERT OR IGNORE INTO state(id, drained_bytes, drained_target, drained_seq, drained_crc)
                 VALUES (1, 0, NULL, 0, 0)",
                [],
            )
            .map_err(|e| Error::sqlite("writing journal state", e))?;
        let (format, id_hex) =
            Self::existing_id(conn_tx).ok_or_else(|| not_journal("journal metadata missing after creation".into()))?;
        let id = Self::parse_meta(path, &format, &id_hex)?;
        tx.commit().map_err(|e| Error::sqlite("committing journal creation", e))?;
        Ok(id)
    }

    /// Journals made before a column existed get it (nullable, INTEGER): `runs.run_crc`
    /// (their existing rows keep per-line checks), `state.drained_chain` (a record
    /// from before chained watermarks is compared by CRC).
    fn add_column(conn: &mut Connection, table: &str, column: &str) -> Result<()> {
        let has = |c: &Connection| -> Result<bool> {
            c.query_row("SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2", params![table, column], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n > 0)
            .map_err(|e| Error::sqlite(format!("reading the {table} table's columns"), e))
        };
        if has(conn)? {
            return Ok(());
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| Error::sqlite(format!("starting the {table}.{column} upgrade"), e))?;
        if !has(&tx)? {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} INTEGER"))
                .map_err(|e| Error::sqlite(format!("adding the {table}.{column} column"), e))?;
        }
        tx.commit().map_err(|e| Error::sqlite(format!("committing the {table}.{column} upgrade"), e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, with this journal's busy timeout in force on this thread; an
    /// error in a forked child (checked before taking any lock: another thread of the
    /// parent may have held it at the fork).
    fn lock_conn(&self) -> Result<parking_lot::MutexGuard<'_, Connection>> {
        self.check_process()?;
        let conn = self.conn.as_ref().expect("a journal's connection lives until it is dropped").lock();
        set_busy_limit(self.opts.busy_timeout);
        Ok(conn)
    }

    /// A handle used in a process forked from the one that opened it: refuse. SQLite's
    /// locks belong to the parent, so the child would write without any.
    fn check_process(&self) -> Result<()> {
        let me = std::process::id();
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
    pub fn queued_appends(&self) -> usize {
        self.group.lock().queue.len()
    }

    pub fn id(&self) -> JournalId {
        self.id
    }

    pub fn options(&self) -> &JournalOptions {
        &self.opts
    }

    /// Append one line; returns its seq once durable.
    pub fn append(&self, line: &[u8]) -> Result<u64> {
        validate_line(0, line, self.opts.max_line_bytes)?;
        let seqs = self.submit(Request::new(vec![line.to_vec()], None))?;
        Ok(seqs[0])
    }

    /// Append lines all-or-nothing in one transaction; returns the first of their
    /// consecutive seqs (for an empty batch, the seq the next line will get is not
    /// reserved: `Ok(0)` is returned and nothing is written).
    pub fn append_batch<L: AsRef<[u8]>>(&self, lines: &[L]) -> Result<u64> {
        if lines.is_empty() {
            return Ok(0);
        }
        for (i, l) in lines.iter().enumerate() {
            validate_line(i, l.as_ref(), self.opts.max_line_bytes)?;
        }
        let seqs = self.submit(Request::new(lines.iter().map(|l| l.as_ref().to_vec()).collect(), None))?;
        Ok(seqs[0])
    }

    /// Append a line once per idempotency key: a retry with a key seen within the
    /// retention window returns the first call's seq and stores nothing.
    pub fn append_keyed(&self, key: &[u8], line: &[u8]) -> Result<u64> {
        Ok(self.append_batch_keyed(&[(key, line)])?[0])
    }

    /// Keyed batch, all-or-nothing: returns each line's seq (the earlier seq for a key
    /// already stored).
    pub fn append_batch_keyed<K: AsRef<[u8]>, L: AsRef<[u8]>>(&self, items: &[(K, L)]) -> Result<Vec<u64>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        for (i, (k, l)) in items.iter().enumerate() {
            if k.as_ref().is_empty() {
                return Err(Error::InvalidArgument(format!("idempotency key {i} is empty")));
            }
            validate_line(i, l.as_ref(), self.opts.max_line_bytes)?;
        }
        self.submit(Request::new(
            items.iter().map(|(_, l)| l.as_ref().to_vec()).collect(),
            Some(items.iter().map(|(k, _)| k.as_ref().to_vec()).collect()),
        ))
    }

    /// Queue a request and wait for it, retrying a full journal for up to `full_wait`.
    fn submit(&self, req: Request) -> Result<Vec<u64>> {
        self.check_process()?;
        let deadline = self.opts.full_wait.map(deadline_after);
        let req = Arc::new(req);
        let mut pause = Duration::from_millis(2);
        loop {
            match self.group_commit(Arc::clone(&req)) {
                Err(Error::JournalFull { .. }) if deadline.is_some_and(|d| Instant::now() < d) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// Leader/follower group commit: the first caller to find no leader commits every
    /// queued request in one transaction; the others wait on their own slot for their
    /// result, or to be handed the leadership of the next group.
    fn group_commit(&self, req: Arc<Request>) -> Result<Vec<u64>> {
        let mut g = self.group.lock();
        g.queue.push(Arc::clone(&req));
        let mut role = if !g.leader_active {
            g.leader_active = true;
            Role::Gather
        } else if g.gathering && g.queue.len() >= g.peak_group {
            // This caller completes the group a leader is gathering: commit it from
            // this running thread rather than wake the gatherer, which on a busy
            // machine waits for a core; the gatherer finds its request taken.
            g.gathering = false;
            Role::Commit
        } else {
            Role::Follow
        };
        loop {
            role = match role {
                Role::Commit => break,
                Role::Follow => {
                    drop(g);
                    if let Some(result) = self.await_slot(&req) {
                        return result;
                    }
                    g = self.group.lock(); // handed the leadership
                    Role::Gather
                }
                Role::Gather => {
                    // Callers come in two cohorts: those that queued during the last
                    // commit, and those that just got their result and append again.
                    // Waiting briefly for the recent peak merges them (half as many
                    // fsyncs); a lone writer has a peak of 1 and never waits. Nobody wakes
                    // a gatherer: the caller that completes its group takes it over.
                    if g.queue.len() >= g.peak_group {
                        Role::Commit
                    } else {
                        g.gathering = true;
                        g.gather_id += 1;
                        let mine = g.gather_id;
                        parking_lot::MutexGuard::unlocked(&mut g, || std::thread::sleep(GROUP_WAIT));
                        // Still this gather (a later leader's gather has another id)? If
                        // not, it was taken over and this request is in the taker's group.
                        if g.gathering && g.gather_id == mine {
                            if g.queue.len() < g.peak_group {
                                g.peak_group -= 1;
                            }
                            g.gathering = false;
                            Role::Commit
                        } else {
                            Role::Follow
                        }
                    }
                }
            };
        }
        let batch = std::mem::take(&mut g.queue);
        g.peak_group = g.peak_group.max(batch.len());
        drop(g);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit_requests(&batch)));
        // Hand the leadership on (woken with this group below), so the next group
        // gathers while these callers wake up and append again.
        let handed_on = {
            let mut g = self.group.lock();
            match g.queue.first() {
                Some(next) => {
                    next.slot.set(SlotState::Lead);
                    true
                }
                None => {
                    g.leader_active = false;
                    false
                }
            }
        };
        let wake = |epoch: &AtomicU32| {
            if handed_on || batch.len() > 1 {
                epoch.fetch_add(1, Ordering::Release);
                sys::futex_wake_all(epoch);
            }
        };
        let mut own = None;
        let mut deliver = |r: &Arc<Request>, result: Result<Vec<u64>>| {
            if Arc::ptr_eq(r, &req) {
                own = Some(result);
            } else {
                r.slot.set(SlotState::Done(result));
            }
        };
        match outcome {
            Ok(Ok(per_request)) => batch.iter().zip(per_request).for_each(|(r, result)| deliver(r, result)),
            Ok(Err(e)) => batch.iter().for_each(|r| deliver(r, Err(e.duplicate()))),
            Err(panic) => {
                // A bug: fail every caller of this group instead of leaving them
                // waiting for a leader that is gone, then let the panic continue.
                batch
                    .iter()
                    .for_each(|r| deliver(r, Err(Error::io("appending", io::Error::other("panic in the leader")))));
                wake(&self.group_epoch);
                std::panic::resume_unwind(panic);
            }
        }
        wake(&self.group_epoch);
        own.expect("the leader's own request is in its group")
    }

    /// Sleep until a leader filled `req`'s slot: `Some(result)`, or `None` when this
    /// caller was handed the leadership.
    fn await_slot(&self, req: &Request) -> Option<Result<Vec<u64>>> {
        loop {
            let epoch = self.group_epoch.load(Ordering::Acquire);
            match req.slot.take() {
                Some(outcome) => return outcome,
                None => sys::futex_wait(&self.group_epoch, epoch),
            }
        }
    }

    /// Refuse an append when the journal's disk has less than [`SPOOL_RESERVE_BYTES`]
    /// free (one `statvfs`, ~1 µs).
    fn check_spool_space(&self) -> Result<()> {
        let folder = fscheck::parent_dir(&self.path);
        match sys::free_bytes(&folder) {
            Ok(free) if free < SPOOL_RESERVE_BYTES => Err(Error::io(
                format!(
                    "appending to {}: its disk has {free} bytes free, less than the {} MiB kept for recording \
                     drains; nothing of this call was stored. Drain the journal (its space is given back) or free \
                     space on that disk, then retry",
                    self.path.display(),
                    SPOOL_RESERVE_BYTES >> 20
                ),
                io::Error::from_raw_os_error(libc::ENOSPC),
            )),
            _ => Ok(()),
        }
    }

    /// One transaction for many requests, stored as one run (or a few, for large
    /// batches). The outer error fails every request (nothing was committed); an inner
    /// error (journal full) fails only its own request.
    ///
    /// After the commit and before any caller is told, the journal's path must still
    /// name this handle's file and `-wal` ([`Journal::check_in_place`]): lines committed
    /// into a journal that was removed, replaced or retired meanwhile are not
    /// acknowledged. (A retirement deletes the files while holding the write lock, so a
    /// commit either precedes it — and is seen, and drained, by it — or fails here.)
    fn commit_requests(&self, batch: &[Arc<Request>]) -> Result<Vec<Result<Vec<u64>>>> {
        self.check_spool_space()?;
        let results = self.commit_requests_unchecked(batch)?;
        // Cheap when nothing in the folder changed (one read of an inotify fd); the
        // event of a retirement's rename is queued before it releases the write lock
        // this commit waited for, so it is seen here.
        // A failed check is sticky until a full check passes again (the events that
        // showed the change are consumed).
        let mut first = false;
        let watch = self.folder_watch.get_or_init(|| {
            first = true; // changes before the watch existed: the full check below sees them
            sys::FolderWatch::new(&fscheck::parent_dir(&self.path)).ok()
        });
        if first || self.gone.load(Ordering::Relaxed) || watch.as_ref().is_none_or(|w| w.changed()) {
            let checked = self.check_in_place();
            self.gone.store(checked.is_err(), Ordering::Relaxed);
            checked?;
        }
        Ok(results)
    }

    fn commit_requests_unchecked(&self, batch: &[Arc<Request>]) -> Result<Vec<Result<Vec<u64>>>> {
        let bytes: usize = batch.iter().flat_map(|r| &r.lines).map(|l| l.len() + 1).sum();
        if batch.iter().all(|r| r.keys.is_none())
            && self.opts.max_backlog_bytes.is_none()
            && bytes <= RUN_MAX_BYTES
            && !self.key_purge_due()
        {
            return self.commit_one_run(batch);
        }
        let conn = self.lock_conn()?;
        let tx = WriteTx::begin(&conn)
            .map_err(|e| Error::sqlite(format!("starting an append transaction on {}", self.path.display()), e))?;
        let ctx = |what: &str| format!("{what} in {}", self.path.display());
        let head = Self::head(&tx).map_err(|e| Error::sqlite(ctx("reading the journal state"), e))?;
        let mut next_seq = head.next_seq;
        let mut total_bytes = head.total_bytes;
        let mut backlog_bytes = (head.total_bytes - head.drained_bytes) as i64;
        let now = now_ms();
        let key_now = if batch.iter().any(|r| r.keys.is_some()) { Self::key_clock(&tx)? } else { 0 };
        let mut results = Vec::with_capacity(batch.len());
        let mut runs: Vec<RunBuf> = Vec::new();
        let mut new_keys: Vec<(&[u8], u64)> = Vec::new();
        {
            let mut find_key = tx
                .prepare_cached("SELECT seq FROM idempotency WHERE key = ?1")
                .map_err(|e| Error::sqlite(ctx("preparing key lookup"), e))?;
            for req in batch {
                // Which lines are new (a keyed line may already be stored).
                let mut known: Vec<Option<u64>> = vec![None; req.lines.len()];
                if let Some(keys) = &req.keys {
                    for (i, k) in keys.iter().enumerate() {
                        known[i] = match new_keys.iter().find(|(nk, _)| *nk == k.as_slice()) {
                            Some((_, seq)) => Some(*seq), // stored earlier in this transaction
                            None => find_key
                                .query_row(params![k], |r| r.get::<_, i64>(0))
                                .optional()
                                .map_err(|e| Error::sqlite(ctx("looking up a key"), e))?
                                .map(|s| s as u64),
                        };
                        if known[i].is_none() && keys[..i].contains(k) {
                            known[i] = Some(u64::MAX); // resolved below to the first line's seq
                        }
                    }
                }
                let needed: u64 =
                    req.lines.iter().zip(&known).filter(|(_, k)| k.is_none()).map(|(l, _)| l.len() as u64).sum();
                if let Some(max) = self.opts.max_backlog_bytes {
                    if needed > 0 && backlog_bytes as u64 + needed > max {
                        results.push(Err(Error::JournalFull {
                            backlog_bytes: backlog_bytes as u64,
                            max_backlog_bytes: max,
                            needed_bytes: needed,
                        }));
                        continue;
                    }
                }
                let mut seqs = Vec::with_capacity(req.lines.len());
                for (i, line) in req.lines.iter().enumerate() {
                    match known[i] {
                        Some(u64::MAX) => {
                            let keys = req.keys.as_ref().expect("keyed");
                            let j = keys[..i].iter().position(|k| k == &keys[i]).expect("earlier key");
                            seqs.push(seqs[j]);
                        }
                        Some(seq) => seqs.push(seq),
                        None => {
                            let full = runs.last().is_none_or(|r| r.data.len() + line.len() + 1 > RUN_MAX_BYTES);
                            if full {
                                runs.push(RunBuf { first_seq: next_seq, ..RunBuf::default() });
                            }
                            total_bytes += line.len() as u64;
                            let run = runs.last_mut().expect("a run");
                            run.push(line);
                            run.end_bytes = total_bytes;
                            if let Some(keys) = &req.keys {
                                new_keys.push((&keys[i], next_seq));
                            }
                            seqs.push(next_seq);
                            next_seq += 1;
                            backlog_bytes += line.len() as i64;
                        }
                    }
                }
                results.push(Ok(seqs));
            }
        }
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO runs(first_seq, count, end_bytes, appended_ms, line_meta, data, run_crc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(|e| Error::sqlite(ctx("preparing insert"), e))?;
            for r in runs.iter().filter(|r| r.count > 0) {
                insert
                    .execute(params![
                        r.first_seq as i64,
                        r.count as i64,
                        r.end_bytes as i64,
                        now,
                        r.meta,
                        r.data,
                        r.run_crc()
                    ])
                    .map_err(|e| Error::sqlite(ctx("inserting lines"), e))?;
            }
            let mut insert_key = tx
                .prepare_cached("INSERT INTO idempotency(key, seq, added_ms) VALUES (?1, ?2, ?3)")
                .map_err(|e| Error::sqlite(ctx("preparing key insert"), e))?;
            for (k, seq) in &new_keys {
                insert_key
                    .execute(params![k, *seq as i64, key_now])
                    .map_err(|e| Error::sqlite(ctx("recording a key"), e))?;
            }
        }
        self.maybe_purge_keys(&tx)?;
        failpoint::hit("journal.before_commit");
        crate::fault::check("journal commit").map_err(|e| Error::io(ctx("committing appended lines"), e))?;
        tx.commit().map_err(|e| Error::sqlite(ctx("committing appended lines"), e))?;
        failpoint::hit("journal.after_commit");
        Ok(results)
    }

    /// The common case — no keys, no backlog limit, the group's lines fit one run — as
    /// ONE autocommit INSERT that derives the run's first seq and byte mark inside
    /// SQLite (under the write lock, so from the same snapshot [`Journal::head`] reads):
    /// as many statements as a bare INSERT, where BEGIN, a head SELECT and COMMIT cost a
    /// one-line append about 4% of its time. `first_seq` is the rowid, so SQLite hands
    /// it back without a RETURNING table. Each request gets its lines' consecutive seqs.
    fn commit_one_run(&self, batch: &[Arc<Request>]) -> Result<Vec<Result<Vec<u64>>>> {
        let mut run = RunBuf::default();
        for line in batch.iter().flat_map(|r| &r.lines) {
            run.push(line);
        }
        let payload = (run.data.len() as u64 - run.count) as i64;
        let conn = self.lock_conn()?;
        let ctx = |what: &str| format!("{what} in {}", self.path.display());
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO runs(first_seq, count, end_bytes, appended_ms, line_meta, data, run_crc) VALUES (
                    coalesce((SELECT first_seq + count FROM runs ORDER BY first_seq DESC LIMIT 1),
                             (SELECT drained_seq + 1 FROM state WHERE id = 1)),
                    ?1,
                    coalesce((SELECT end_bytes FROM runs ORDER BY first_seq DESC LIMIT 1),
                             (SELECT drained_bytes FROM state WHERE id = 1)) + ?2,
                    ?3, ?4, ?5, ?6)",
            )
            .map_err(|e| Error::sqlite(ctx("preparing insert"), e))?;
        failpoint::hit("journal.before_commit");
        crate::fault::check("journal commit").map_err(|e| Error::io(ctx("committing appended lines"), e))?;
        // execute() steps to the end, where the autocommit COMMIT (and its fsync) runs:
        // a failed commit is an error here, never a seq.
        insert
            .execute(params![run.count as i64, payload, now_ms(), run.meta, run.data, run.run_crc()])
            .map_err(|e| Error::sqlite(ctx("committing appended lines"), e))?;
        let mut next = conn.last_insert_rowid() as u64;
        failpoint::hit("journal.after_commit");
        Ok(batch
            .iter()
            .map(|r| {
                let seqs = (next..next + r.lines.len() as u64).collect();
                next += r.lines.len() as u64;
                Ok(seqs)
            })
            .collect())
    }

    fn key_purge_due(&self) -> bool {
        self.maintenance.lock().last_key_purge.elapsed() >= self.opts.key_purge_interval
    }

    fn maybe_purge_keys(&self, tx: &Connection) -> Result<()> {
        let mut m = self.maintenance.lock();
        if m.last_key_purge.elapsed() < self.opts.key_purge_interval {
            return Ok(());
        }
        m.last_key_purge = Instant::now();
        let retention = i64::try_from(self.opts.key_retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = Self::key_clock(tx)?.saturating_sub(retention);
        tx.execute("DELETE FROM idempotency WHERE added_ms < ?1", params![cutoff])
            .map_err(|e| Error::sqlite("purging expired idempotency keys", e))?;
        Ok(())
    }

    /// The journal's clock for idempotency keys, in ms (docs/design.md, "Idempotency
    /// keys and the journal's clock"): `CLOCK_BOOTTIME` anchored per boot in `meta`, so
    /// a wall-clock step never ages a key. Call inside a write transaction: it
    /// refreshes the anchor to this moment (so the next boot resumes from here).
    fn key_clock(tx: &Connection) -> Result<i64> {
        let (boot, uptime) = (sys::boot_id(), sys::boottime_ms());
        let stored: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'key_clock'", [], |r| r.get(0))
            .optional()
            .map_err(|e| Error::sqlite("reading the key clock", e))?;
        let parsed = stored.as_deref().and_then(|v| {
            let mut it = v.split(' ');
            let (b, up, clock) = (it.next()?, it.next()?.parse::<i64>().ok()?, it.next()?.parse::<i64>().ok()?);
            Some((b.to_string(), up, clock))
        });
        let now = match parsed {
            // this boot: the time up since the anchor (never negative)
            Some((b, up, clock)) if !boot.is_empty() && b == boot => clock + (uptime - up).max(0),
            // a new boot: resume where the last one left off (downtime not counted)
            Some((_, _, clock)) => clock,
            // a journal whose keys were stamped with wall time: continue from it
            None => now_ms(),
        };
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('key_clock', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![format!("{boot} {uptime} {now}")],
        )
        .map_err(|e| Error::sqlite("recording the key clock", e))?;
        Ok(now)
    }

    /// The seq and byte counters, derived from the newest run and the drained record
    /// (`commit_one_run`'s INSERT derives the same two in SQL: keep them in step).
    /// One statement, so one snapshot: read in two, a drain's step 7 committing in
    /// between (runs deleted, drained_seq moved) made the seq ceiling look lower than
    /// the target's watermark — a false "journal restored" in the demo.
    fn head(conn: &Connection) -> rusqlite::Result<Head> {
        let (drained_seq, drained_bytes, newest_next, newest_end): (i64, i64, Option<i64>, Option<i64>) = conn
            .prepare_cached(
                "SELECT drained_seq, drained_bytes,
                        (SELECT first_seq + count FROM runs ORDER BY first_seq DESC LIMIT 1),
                        (SELECT end_bytes FROM runs ORDER BY first_seq DESC LIMIT 1)
                 FROM state WHERE id = 1",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        let (next_seq, total_bytes) = match (newest_next, newest_end) {
            (Some(n), Some(e)) => (n, e),
            _ => (drained_seq + 1, drained_bytes),
        };
        Ok(Head {
            next_seq: next_seq as u64,
            total_bytes: total_bytes as u64,
            drained_seq: drained_seq as u64,
            drained_bytes: drained_bytes as u64,
        })
    }

    /// Lines waiting to be drained, and the seq counters.
    pub fn backlog(&self) -> Result<Backlog> {
        let conn = self.lock_conn()?;
        let ctx = |what: &str| format!("{what} in {}", self.path.display());
        let h = Self::head(&conn).map_err(|e| Error::sqlite(ctx("reading the backlog"), e))?;
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

    /// Highest seq this journal ever assigned.
    pub(crate) fn seq_ceiling(&self) -> Result<u64> {
        let h = Self::head(&*self.lock_conn()?).map_err(|e| Error::sqlite("reading the seq counter", e))?;
        Ok(h.next_seq - 1)
    }

    /// The stored CRC of the line `seq`, if its run is still present.
    pub(crate) fn row_crc(&self, seq: u64) -> Result<Option<u32>> {
        let conn = self.lock_conn()?;
        let run: Option<(i64, i64, Vec<u8>)> = conn
            .query_row(
                "SELECT first_seq, count, line_meta FROM runs WHERE first_seq <= ?1 ORDER BY first_seq DESC LIMIT 1",
                params![seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| Error::sqlite("reading a line's CRC", e))?;
        let Some((first, count, meta)) = run else { return Ok(None) };
        let k = seq - first as u64;
        if k >= count as u64 {
            return Ok(None);
        }
        let at = k as usize * LINE_META_BYTES + 4;
        match meta.get(at..at + 4) {
            Some(b) => Ok(Some(u32::from_le_bytes(b.try_into().expect("4 bytes")))),
            None => Err(self.corrupt(seq, "its run's line table is too short".into())),
        }
    }

    /// The chained hash at `to_seq` computed over this journal's own rows after
    /// `from_seq` (where it is `from_chain`); `None` when a row in that range is no
    /// longer stored (nothing to compare).
    pub(crate) fn chain_through(&self, from_seq: u64, from_chain: u64, to_seq: u64) -> Result<Option<u64>> {
        let conn = self.lock_conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT first_seq, count, line_meta FROM runs
                 WHERE first_seq >= (SELECT coalesce(max(first_seq), 0) FROM runs WHERE first_seq <= ?1)
                   AND first_seq <= ?2 ORDER BY first_seq",
            )
            .map_err(|e| Error::sqlite("preparing the chain read", e))?;
        let mut rows = stmt
            .query(params![(from_seq + 1) as i64, to_seq as i64])
            .map_err(|e| Error::sqlite("reading runs for the chain", e))?;
        let (mut chain, mut next) = (from_chain, from_seq + 1);
        while let Some(r) = rows.next().map_err(|e| Error::sqlite("reading runs for the chain", e))? {
            let first = r.get::<_, i64>(0).map_err(|e| Error::sqlite("reading a run", e))? as u64;
            let count = r.get::<_, i64>(1).map_err(|e| Error::sqlite("reading a run", e))? as u64;
            let meta: Vec<u8> = r.get(2).map_err(|e| Error::sqlite("reading a run", e))?;
            if meta.len() as u64 != count * LINE_META_BYTES as u64 {
                return Err(self.corrupt(first, "its run's line table does not match its line count".into()));
            }
            for k in 0..count {
                let seq = first + k;
                if seq < next {
                    continue;
                }
                if seq != next || seq > to_seq {
                    break;
                }
                let m = &meta[k as usize * LINE_META_BYTES..][..LINE_META_BYTES];
                let len = u32::from_le_bytes(m[..4].try_into().expect("4 bytes"));
                let crc = u32::from_le_bytes(m[4..].try_into().expect("4 bytes"));
                chain = chain_step(chain, seq, len, crc);
                next = seq + 1;
            }
        }
        Ok((next == to_seq + 1).then_some(chain))
    }

    fn corrupt(&self, seq: u64, detail: String) -> Error {
        Error::CorruptJournalRow { journal: self.path.clone(), seq, detail }
    }

    /// The journal's own record of how far it was drained.
    pub fn drained_record(&self) -> Result<Option<DrainedRecord>> {
        let conn = self.lock_conn()?;
        let (target, seq, crc, chain): (Option<String>, i64, i64, Option<i64>) = conn
            .query_row(
                "SELECT drained_target, drained_seq, drained_crc, drained_chain FROM state WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(|e| Error::sqlite("reading the drained record", e))?;
        Ok(target.filter(|_| seq > 0).map(|target_id| DrainedRecord {
            target_id,
            seq: seq as u64,
            crc: crc as u32,
            chain: chain.map(|c| c as u64),
        }))
    }

    /// Stream the lines after `after_seq`, in seq order, into `sink` as byte slices of
    /// whole lines (each with its `\n`), checking every line's length, CRC and that the
    /// seqs are contiguous, until `max_bytes` or `deadline`. With `first_of_round`, one
    /// line is taken even if it alone is longer than `max_bytes` (so a round always
    /// progresses); otherwise nothing beyond `max_bytes` is: a round never writes more
    /// than `max(max_round_bytes, longest line + 1)`, the tail the next round may
    /// truncate. `None` when nothing was taken.
    pub(crate) fn drain_after(
        &self,
        after_seq: u64,
        chain_before: u64,
        max_bytes: u64,
        first_of_round: bool,
        deadline: Instant,
        sink: &mut DrainSink<'_>,
    ) -> Result<Option<Taken>> {
        let mut conn = self.lock_conn()?;
        let tx = conn.transaction().map_err(|e| Error::sqlite("starting a read", e))?;
        let mut stmt = tx
            .prepare_cached(
                "SELECT first_seq, count, line_meta, data, run_crc FROM runs
                 WHERE first_seq >= (SELECT coalesce(max(first_seq), 0) FROM runs WHERE first_seq <= ?1)
                 ORDER BY first_seq",
            )
            .map_err(|e| Error::sqlite("preparing the drain read", e))?;
        let mut rows = stmt.query(params![(after_seq + 1) as i64]).map_err(|e| Error::sqlite("reading runs", e))?;
        let mut taken: Option<Taken> = None;
        let mut expect = after_seq + 1;
        'runs: while let Some(r) = rows.next().map_err(|e| Error::sqlite("reading runs", e))? {
            let first = r.get::<_, i64>(0).map_err(|e| Error::sqlite("reading a run", e))? as u64;
            let count = r.get::<_, i64>(1).map_err(|e| Error::sqlite("reading a run", e))? as u64;
            if first + count <= expect {
                continue; // drained, not yet deleted
            }
            if first > expect {
                return Err(
                    self.corrupt(expect, format!("the line is missing (the next stored run starts at {first})"))
                );
            }
            let (Ok(meta), Ok(data)) = (
                r.get_ref(2).map_err(|_| ()).and_then(|v| v.as_blob().map_err(|_| ())),
                r.get_ref(3).map_err(|_| ()).and_then(|v| v.as_blob().map_err(|_| ())),
            ) else {
                return Err(self.corrupt(first, "its run is not made of blobs".into()));
            };
            if meta.len() as u64 != count * LINE_META_BYTES as u64 {
                return Err(self.corrupt(first, "its run's line table does not match its line count".into()));
            }
            // One CRC pass over the run checks its line table and every line in it (a
            // CRC call per ~100-byte line was a tenth of a drain's time), and its data
            // CRC feeds the target's running CRC. Without a run CRC (rows written before
            // it existed) or when it does not match, each line taken is checked alone,
            // which also names the bad line.
            let run_hash = match r.get::<_, Option<i64>>(4) {
                Ok(Some(stored)) => {
                    let mut whole = crc32fast::Hasher::new();
                    whole.update(meta);
                    let mut data_hash = crc32fast::Hasher::new();
                    data_hash.update(data);
                    whole.combine(&data_hash);
                    (i64::from(whole.finalize()) == stored).then_some(data_hash)
                }
                _ => None,
            };
            let (mut pos, mut slice_start) = (0usize, None::<usize>);
            for k in 0..count {
                let seq = first + k;
                let m = &meta[k as usize * LINE_META_BYTES..][..LINE_META_BYTES];
                let len = u32::from_le_bytes(m[..4].try_into().expect("4 bytes")) as usize;
                let crc = u32::from_le_bytes(m[4..].try_into().expect("4 bytes"));
                let end = pos + len;
                if data.get(end) != Some(&b'\n') {
                    return Err(self.corrupt(seq, "its length does not match the stored bytes".into()));
                }
                if seq >= expect {
                    let t = taken.get_or_insert(Taken {
                        lines: 0,
                        bytes: 0,
                        last_seq: 0,
                        last_crc: 0,
                        chain: chain_before,
                    });
                    let would = t.bytes + (end + 1 - slice_start.unwrap_or(pos)) as u64;
                    if (t.lines > 0 || !first_of_round) && would > max_bytes {
                        if let Some(s) = slice_start {
                            sink(&data[s..pos], None)?;
                            t.bytes += (pos - s) as u64;
                        }
                        break 'runs;
                    }
                    if run_hash.is_none() && line_crc(&data[pos..end]) != crc {
                        return Err(self.corrupt(seq, "its bytes do not match the stored CRC".into()));
                    }
                    slice_start.get_or_insert(pos);
                    t.lines += 1;
                    t.last_seq = seq;
                    t.last_crc = crc;
                    t.chain = chain_step(t.chain, seq, len as u32, crc);
                    expect = seq + 1;
                }
                pos = end + 1;
            }
            if pos != data.len() {
                return Err(self.corrupt(first, "its data is longer than its lines".into()));
            }
            if let (Some(s), Some(t)) = (slice_start, taken.as_mut()) {
                sink(&data[s..], if s == 0 { run_hash.as_ref() } else { None })?;
                t.bytes += (data.len() - s) as u64;
            }
            if taken.is_some_and(|t| t.bytes >= max_bytes) || Instant::now() >= deadline {
                break;
            }
        }
        Ok(taken.filter(|t| t.lines > 0))
    }

    /// Step 7 of the drain: record (forward only) that lines up to `seq` are committed
    /// in `target_id`, and delete the runs that are wholly drained. Idempotent; an
    /// older record never wins.
    pub(crate) fn record_drained(&self, target_id: &str, seq: u64, crc: u32, chain: u64) -> Result<()> {
        match self.record_drained_tx(target_id, seq, crc, chain) {
            Err(e) if is_disk_full(&e) => {
                // The journal's disk is full (issue 13 item 2: lines committed but never
                // recorded kept writers refused for good). Deleting needs WAL space too:
                // empty the WAL, then delete in small transactions, each emptied again.
                let conn = self.lock_conn()?;
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                loop {
                    let n = conn
                        .execute(
                            "DELETE FROM runs WHERE first_seq IN (SELECT first_seq FROM runs
                             WHERE first_seq + count - 1 <= ?1 ORDER BY first_seq LIMIT ?2)",
                            params![seq as i64, FULL_DISK_DELETE_RUNS],
                        )
                        .map_err(|e| Error::sqlite(format!("deleting drained runs in {}", self.path.display()), e))?;
                    incremental_vacuum(&conn, None);
                    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                    if n == 0 {
                        break;
                    }
                }
                drop(conn);
                self.record_drained_tx(target_id, seq, crc, chain)
            }
            r => r,
        }
    }

    /// [`Journal::record_drained`] in one transaction, then give free pages back.
    fn record_drained_tx(&self, target_id: &str, seq: u64, crc: u32, chain: u64) -> Result<()> {
        let mut conn = self.lock_conn()?;
        let ctx = |what: &str| format!("{what} in {}", self.path.display());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| Error::sqlite(ctx("starting the drained record"), e))?;
        let current: i64 = tx
            .query_row("SELECT drained_seq FROM state WHERE id = 1", [], |r| r.get(0))
            .map_err(|e| Error::sqlite(ctx("reading the drained record"), e))?;
        if (seq as i64) <= current {
            return Ok(()); // a later round already recorded more
        }
        // Runs wholly drained; their newest end_bytes becomes the drained byte mark.
        let (freed_runs, freed_through): (i64, Option<i64>) = tx
            .query_row(
                "SELECT count(*), max(end_bytes) FROM runs WHERE first_seq + count - 1 <= ?1",
                params![seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| Error::sqlite(ctx("measuring drained runs"), e))?;
        crate::fault::check("journal row delete").map_err(|e| Error::io(ctx("deleting drained runs"), e))?;
        tx.execute("DELETE FROM runs WHERE first_seq + count - 1 <= ?1", params![seq as i64])
            .map_err(|e| Error::sqlite(ctx("deleting drained runs"), e))?;
        failpoint::hit("drain.mid_record");
        tx.execute(
            "UPDATE state SET drained_target = ?1, drained_seq = ?2, drained_crc = ?3, drained_chain = ?5,
                 drained_bytes = max(drained_bytes, coalesce(?4, drained_bytes)) WHERE id = 1",
            params![target_id, seq as i64, crc as i64, freed_through, chain as i64],
        )
        .map_err(|e| Error::sqlite(ctx("recording the drained seq"), e))?;
        tx.commit().map_err(|e| Error::sqlite(ctx("committing the drained record"), e))?;
        // Give drained space back to the disk (auto_vacuum=INCREMENTAL frees nothing by
        // itself): once enough pages are free, move them to the end and cut the file;
        // the checkpoint that follows makes the main file shorter.
        let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0)).unwrap_or(0);
        let mut m = self.maintenance.lock();
        m.deleted_since_checkpoint += freed_runs as u64;
        if free >= VACUUM_FREE_PAGES {
            give_space_back(&conn);
            m.deleted_since_checkpoint = CHECKPOINT_EVERY_DELETED_RUNS;
        }
        if m.deleted_since_checkpoint >= CHECKPOINT_EVERY_DELETED_RUNS {
            m.deleted_since_checkpoint = 0;
            // PASSIVE: never blocks writers; a busy reader only delays the reset.
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
        Ok(())
    }

    /// Make every row a drain read from this journal durable (ordering O3 of
    /// docs/design.md): a `Normal` writer's commits are visible to the drain while they
    /// are still only in the page cache, and a manifest must not cover rows that a
    /// power cut could take back (the journal would hand their seqs out again). Rows
    /// are either in the `-wal` (fdatasync it) or were checkpointed into the main file,
    /// which SQLite fsyncs before it resets or deletes the `-wal`.
    pub(crate) fn sync_for_drain(&self) -> Result<()> {
        let wal = wal_path(&self.path);
        let ctx = || format!("fdatasync of the journal's WAL {}", wal.display());
        crate::fault::check("journal wal fdatasync").map_err(|e| Error::io(ctx(), e))?;
        match std::fs::File::open(&wal) {
            Ok(f) => f.sync_data().map_err(|e| Error::io(ctx(), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(ctx(), e)),
        }
    }

    /// Retirement's last step: delete this journal's files if every line it ever held
    /// is at or below `watermark` (committed in the target) — decided and done while
    /// holding its SQLite write lock, so no writer commits in between (a writer that
    /// commits after it finds the files gone and is not acknowledged). `Ok(false)`,
    /// touching nothing, when a writer appended since the drain. The handle is dead
    /// after `Ok(true)`.
    pub(crate) fn delete_if_drained(&self, watermark: u64) -> Result<bool> {
        let ctx = |what: &str| format!("{what} {}", self.path.display());
        let mut conn = self.lock_conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| Error::sqlite(ctx("taking the write lock of"), e))?;
        let ceiling = Self::head(&tx).map_err(|e| Error::sqlite(ctx("reading the seq counter of"), e))?.next_seq - 1;
        if ceiling > watermark {
            return Ok(false);
        }
        // the files checked are the files deleted
        self.check_in_place()?;
        // Crash-safe at every step (a power cut may keep any prefix of these, each made
        // durable by a folder fsync before the next): first the journal's name becomes
        // a tombstone, so no state leaves a journal without its -wal (stale rows) or a
        // -wal without a tombstone explaining it; then the log; then the tombstone.
        // Journal::open finishes a retirement it finds cut short.
        let tombstone = retiring_path(&self.path);
        std::fs::rename(&self.path, &tombstone)
            .map_err(|e| Error::io(format!("renaming {} to {}", self.path.display(), tombstone.display()), e))?;
        sync_folder(&self.path)?;
        drop(tx);
        finish_retirement(&self.path)?;
        Ok(true)
    }

    /// Run a WAL checkpoint now (TRUNCATE when nobody is reading).
    pub fn checkpoint(&self) -> Result<()> {
        self.lock_conn()?
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| Error::sqlite("checkpointing the WAL", e))
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let conn = self.conn.take();
        if std::process::id() == self.pid {
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

/// Which journals this process has open, by inode, and which process opened them.
///
/// SQLite keeps one record per open file per process (its locks, its `-shm` mapping)
/// and `fork()` copies it into the child, where those locks are not held. A child that
/// opened a journal its parent has open would reuse that record, take no real lock, and
/// lose its lines when the parent's last close checkpoints and deletes the `-wal`. So a
/// journal that a parent process has open is refused in the child (issue 12 item 1).
mod forks {
    use std::collections::HashMap;
    use std::path::Path;

    use parking_lot::Mutex;

    use crate::error::{Error, Result};

    /// (device, inode) -> (the opening process, handles open in it).
    type Registry = HashMap<(u64, u64), (u32, usize)>;
    static OPEN: Mutex<Option<Registry>> = Mutex::new(None);

    pub(super) fn check_not_inherited(path: &Path, inode: (u64, u64)) -> Result<()> {
        let me = std::process::id();
        match OPEN.lock().as_ref().and_then(|m| m.get(&inode).copied()) {
            Some((opener, _)) if opener != me => Err(Error::InvalidArgument(format!(
                "journal {} is open in process {opener}, which this process ({me}) was forked from: SQLite's \
                 locks do not carry over fork(), so a handle on it here would hold none and its lines could be \
                 lost. Give each process its own journal file (e.g. one per process in the spool), or open \
                 journals after fork()",
                path.display()
            ))),
            _ => Ok(()),
        }
    }

    pub(super) fn opened(inode: (u64, u64)) {
        let me = std::process::id();
        let mut open = OPEN.lock();
        let entry = open.get_or_insert_with(HashMap::new).entry(inode).or_insert((me, 0));
        if entry.0 != me {
            *entry = (me, 0); // the parent's entry was for another file at this inode
        }
        entry.1 += 1;
    }

    pub(super) fn closed(inode: (u64, u64)) {
        let mut open = OPEN.lock();
        if let Some(m) = open.as_mut() {
            if let Some(e) = m.get_mut(&inode) {
                e.1 -= 1;
                if e.1 == 0 {
                    m.remove(&inode);
                }
            }
        }
    }
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).field("id", &self.id).finish()
    }
}

/// The tombstone a retirement renames a journal to before deleting its log.
fn retiring_path(journal: &Path) -> PathBuf {
    let mut p = journal.as_os_str().to_owned();
    p.push(".retiring");
    PathBuf::from(p)
}

/// The rest of a retirement whose tombstone exists: delete the `-wal` and `-shm`, then
/// the tombstone, each made durable before the next. Idempotent.
fn finish_retirement(journal: &Path) -> Result<()> {
    let mut shm = journal.as_os_str().to_owned();
    shm.push("-shm");
    for p in [wal_path(journal), PathBuf::from(shm), retiring_path(journal)] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", p.display()), e)),
        }
        sync_folder(journal)?;
    }
    Ok(())
}

/// fsync the folder holding `path`.
fn sync_folder(path: &Path) -> Result<()> {
    let folder = fscheck::parent_dir(path);
    std::fs::File::open(&folder)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("fsync of the journal's folder {}", folder.display()), e))
}

/// The path of a journal's write-ahead log (`<journal>-wal`).
fn wal_path(journal: &Path) -> PathBuf {
    let mut wal = journal.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// (device, inode) of the file at `path` (not following a symlink).
fn file_id(path: &Path) -> Result<(u64, u64)> {
    let md = std::fs::symlink_metadata(path).map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?;
    Ok((md.dev(), md.ino()))
}

/// The `*.journal` files directly in `spool` (not recursive), sorted.
pub fn spool_journals(spool: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(spool).map_err(|e| Error::io(format!("listing spool {}", spool.display()), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(format!("listing spool {}", spool.display()), e))?;
        let p = entry.path();
        // Symlinks are listed too, so the drain names them (refused: not a journal's
        // real path) instead of skipping them without a word.
        let kind = entry.file_type().ok();
        if p.extension().is_some_and(|e| e == "journal") && kind.is_some_and(|t| t.is_file() || t.is_symlink()) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_key_retention_keeps_keys_instead_of_wrapping_around() {
        let d = tempfile::tempdir().unwrap();
        let opts = JournalOptions { key_retention: Duration::MAX, ..Default::default() };
        let j = Journal::open(d.path().join("k.journal"), opts).unwrap();
        let first = j.append_keyed(b"key", b"once").unwrap();
        // Make the next append run the (normally once a minute) key purge.
        j.maintenance.lock().last_key_purge = Instant::now().checked_sub(Duration::from_secs(120)).unwrap();
        j.append(b"other").unwrap();
        assert_eq!(j.append_keyed(b"key", b"again").unwrap(), first, "the key was purged");
        assert_eq!(j.backlog().unwrap().lines, 2);
    }

    /// The drain's one-pass check: a whole run reaches the sink with its data CRC (which
    /// the target's running CRC combines instead of hashing the bytes again), and that
    /// CRC is the bytes' own.
    #[test]
    fn a_whole_run_is_drained_with_its_checked_crc() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path().join("r.journal"), JournalOptions::default()).unwrap();
        let lines: Vec<Vec<u8>> = (0..100).map(|i| format!("line {i}").into_bytes()).collect();
        j.append_batch(&lines).unwrap();
        let mut handed: Vec<(Vec<u8>, Option<u32>)> = Vec::new();
        let far = Instant::now() + Duration::from_secs(60);
        let taken = j
            .drain_after(0, 0, u64::MAX, true, far, &mut |bytes, crc| {
                handed.push((bytes.to_vec(), crc.map(|h| h.clone().finalize())));
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(taken.lines, 100);
        assert_eq!(handed.len(), 1, "one run, one slice");
        let (bytes, crc) = &handed[0];
        assert_eq!(bytes.len(), lines.iter().map(|l| l.len() + 1).sum::<usize>());
        assert_eq!(*crc, Some(crc32fast::hash(bytes)), "the run's data CRC was not handed over");
    }
}
