//! Opening a journal: where it may live, what file it is, which process opened it,
//! and `SQLite`'s busy handling.
//!
//! Keeps: an open never creates a journal a compactor asked for (`open_existing`),
//! never follows a symlink, never opens an existing journal outside `SQLite` (that
//! would drop this process's POSIX locks on it), refuses a `-wal` without its journal
//! and finishes a retirement cut short; the journal's and its `-wal`'s names are
//! durable before the handle exists (ordering O2 of docs/design.md). After every
//! commit, [`Journal::check_in_place`] proves the path still names the files opened.

use std::cell::Cell;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sync::Mutex;

use super::files::{
    file_id, finish_retirement_locked, is_disk_full, lock_folder, retiring_path, shm_path, sync_folder, wal_path,
    SPOOL_RESERVE_BYTES,
};
use super::group_commit::GroupCommit;
use super::{forks, schema, Journal, JournalOptions, Maintenance};
use crate::error::{Error, Result};
use crate::{os::fscheck, os::sys};

thread_local! {
    /// How long [`retry_when_busy`] keeps retrying on this thread: set from the journal's
    /// `busy_timeout` each time its connection is taken (SQLite calls the handler on the
    /// thread that runs the statement; a plain fn pointer cannot carry it).
    static BUSY_LIMIT_MS: Cell<u64> = const { Cell::new(30_000) };
}

/// Prepared statements a journal's connection keeps. More than one drain round and
/// one append use together: rusqlite's default (16) is a least-recently-used cache
/// smaller than a round's cycle of statements, so every `prepare_cached` of a round
/// compiled its SQL again (a third of a round's CPU per journal).
const STATEMENT_CACHE_CAPACITY: usize = 48;

/// `SQLite`'s own busy timeout backs off to 100 ms sleeps, so a compactor's short write
/// (step 7) or a second process's append kept missing the gaps between a busy writer's
/// transactions (p99 latencies of half a second). Retry every millisecond instead.
fn retry_when_busy(attempt: i32) -> bool {
    // SQLite counts attempts from 0; it never passes a negative count
    if u64::try_from(attempt).unwrap_or(0) >= BUSY_LIMIT_MS.with(Cell::get) {
        return false;
    }
    std::thread::sleep(Duration::from_millis(1));
    true
}

pub(super) fn set_busy_limit(timeout: Duration) {
    BUSY_LIMIT_MS.with(|l| l.set(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)));
}

pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// `SQLite` could not open a journal (or its `-wal`/`-shm`): an I/O error, never "not a
/// journal" (which would invite deleting a good one); named EMFILE when this process
/// is at its file limit.
fn cannot_open(path: &Path, e: &rusqlite::Error) -> Error {
    if let Some(too_long) = crate::os::sqlite_vfs::path_too_long(path, "journal", true) {
        return too_long;
    }
    // A file this process may not read (mode 000, another user's): said as for one it
    // may only read, not as SQLite's bare "unable to open database file".
    if may_not_open(path) {
        return cannot_write(path, e);
    }
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
        _ => Error::io(
            format!("opening journal {} (or its -wal/-shm){}", path.display(), inodes_hint(path)),
            io::Error::other(e.to_string()),
        ),
    }
}

/// What to say when the journal's filesystem has no inodes left: files cannot be
/// created while blocks are free (an outside tester: "unable to open database file",
/// "No space left on device", with `df` showing room).
fn inodes_hint(path: &Path) -> &'static str {
    let folder = crate::os::fs::parent_dir(path);
    if sys::space(&folder).is_ok_and(|s| s.out_of_inodes()) {
        ": the filesystem has no free inodes left (`df -i`): remove files there, or put the spool on another"
    } else {
        ""
    }
}

/// The journal's name, before `SQLite` opens it: a retirement cut short is finished, an
/// orphaned log refused (or removed when empty), a new journal's file created (by a
/// writer's open only, and only on a disk with room), an existing file checked.
///
/// Everyone who finishes a retirement, removes an orphaned empty log or creates a
/// journal does so under the spool folder's `flock`, re-checking the name inside it:
/// without it, a writer that found a 0-byte `-wal` without its journal removed it (and
/// the `-shm`) just as another writer had created the journal and opened that log —
/// "disk I/O error" for the other (an outside tester, retiring beside writers).
fn claim_name(path: &Path, create: bool, attempt: &mut Attempt, folder: &std::fs::File) -> Result<()> {
    let missing = |p: &Path| std::fs::symlink_metadata(p).is_err_and(|e| e.kind() == io::ErrorKind::NotFound);
    if missing(path) || !missing(&retiring_path(path)) {
        // a retirement cut short (its lines are committed), or a tombstone left beside
        // a journal made after it: `finish_retirement_locked` tells them apart
        finish_retirement_locked(path, folder)?;
        if missing(path) {
            return create_journal_file(path, create);
        }
    }
    // Never opened outside SQLite (see `create_journal_file`): inspected by name.
    let md = std::fs::symlink_metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => replaced_while_opening(path, attempt), // retired just now
        _ => Error::io(format!("inspecting journal {}", path.display()), e),
    })?;
    if !md.is_file() {
        let detail = if md.is_dir() {
            "it is a folder, not a journal file (a spool? give it as the spool, or a file inside it)"
        } else if md.file_type().is_symlink() {
            "it is a symlink; tributary opens journals by their real path only (give that path)"
        } else {
            "it is not a regular file (a device, pipe or socket)"
        };
        return Err(Error::NotAJournal { path: path.to_path_buf(), detail: detail.into() });
    }
    // SQLite keeps a database's log beside its name: two names (a hard link, e.g.
    // `cp -al` of a spool) are two logs for one file. A compactor of the second name
    // drained nothing, silently, and its writes there would be checkpointed into the
    // file over the other log's.
    if md.nlink() > 1 {
        return Err(Error::NotAJournal {
            path: path.to_path_buf(),
            detail: format!(
                "it has {} names (hard links): SQLite keeps a journal's log beside its name, so two names would be \
                 two logs for one file. Remove every other name (`find / -xdev -samefile {}`) and keep the one its \
                 writer uses; copy a journal only while nothing has it open",
                md.nlink(),
                path.display()
            ),
        });
    }
    Ok(())
}

/// The name is free (the spool folder's lock held): refuse an orphaned log, then
/// create the journal's file — a writer's open only.
fn create_journal_file(path: &Path, create: bool) -> Result<()> {
    // A -wal without its journal: the journal was removed (`rm x.journal`) but not its
    // log, which may hold undrained lines. SQLite would replay that log into a new,
    // empty journal of the same name: refuse, touching nothing.
    let wal = wal_path(path);
    match wal.metadata() {
        Ok(m) if m.len() == 0 => {
            // An empty log (a compactor's handle keeps the -wal, emptied, when it
            // closes last; an open that lost its file to a retirement made one): it
            // holds no frame to replay; the journal was removed without it.
            let _ = std::fs::remove_file(&wal);
            let _ = std::fs::remove_file(shm_path(path));
        }
        Ok(_) => return Err(orphaned_log(path)),
        Err(_) => {}
    }
    if !create {
        // Retired or removed since `open_existing` looked (or a previous attempt): a
        // compactor's open never creates the file.
        return Err(Error::NotAJournal {
            path: path.to_path_buf(),
            detail: "no such file (it was retired or removed as it was being opened)".into(),
        });
    }
    // A new journal on a full disk would stop at its first page, leaving an empty
    // file (an outside tester): refuse before creating anything.
    let folder = crate::os::fs::parent_dir(path);
    if let Some(free) = sys::free_bytes(&folder).ok().filter(|&f| f < SPOOL_RESERVE_BYTES) {
        return Err(Error::io(
            format!(
                "creating journal {}: its disk has {free} bytes free, less than the {} MiB a journal keeps for \
                 recording drains; free space on that disk (or put the spool on another); nothing was created",
                path.display(),
                SPOOL_RESERVE_BYTES >> 20
            ),
            io::Error::from_raw_os_error(libc::ENOSPC),
        ));
    }
    // Created here so it is 0600 and never follows a planted symlink (SQLite gives its
    // -wal and -shm files the same mode). An existing journal is never opened outside
    // SQLite: closing any descriptor of a file drops all of this process's POSIX locks
    // on it, including the ones another connection of this process holds — another
    // process could then take SQLite's exclusive lock, think it is the last user and
    // delete the -wal under a live writer.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map(drop)
        .map_err(|e| {
            // No inodes left while blocks are (an outside tester: "No space left on
            // device" with `df` showing room).
            Error::io(format!("creating journal {}{}", path.display(), inodes_hint(path)), e)
        })
}

/// How [`orphaned_log`]'s detail begins (its message is worded for it: no handle).
pub(crate) const ORPHANED_LOG: &str = "it does not exist (or is empty)";

/// `path` does not exist (or is shorter than `SQLite`'s header) but its `-wal` holds
/// data: the journal was removed without its log, which may hold undrained (acknowledged) lines. Every open says so — a
/// writer's, and a compactor's (`drain`, `compact`, `status` list such a log as the
/// journal it was: [`super::spool_journals`]) — instead of "no such file", which left
/// those lines in no listing at all (an outside tester: `status` said "0 journal(s)").
pub(crate) fn orphaned_log(path: &Path) -> Error {
    let wal = wal_path(path);
    Error::JournalGone {
        path: path.to_path_buf(),
        detail: format!(
            "{ORPHANED_LOG}, but its write-ahead log {} holds data (the journal was removed \
             without its -wal and -shm, which may hold undrained lines; nothing was touched). Put the journal's \
             own file back in one step — copy it beside the spool under a name not ending in .journal, then `mv` \
             it to {} (a copy written in place, or an empty file, is opened as it stands and its log lost) — and \
             its lines drain; or, if nothing in them is needed, remove {} and its -shm. To retire a journal, use \
             `tributary retire`",
            wal.display(),
            path.display(),
            wal.display()
        ),
    }
}

/// The journal at `path` was retired or replaced while this attempt opened it.
fn replaced_while_opening(path: &Path, attempt: &mut Attempt) -> Error {
    attempt.replaced = true;
    Error::JournalGone {
        path: path.to_path_buf(),
        detail: format!(
            "it was retired or replaced {REPLACED_WHILE_OPENING_RETRIES} times in a row while being opened (something \
             keeps retiring it: stop that, then open it again); nothing was written"
        ),
    }
}

/// A journal `SQLite` could open but not write: the file, or its folder (where the
/// `-wal` and `-shm` go), is not writable by this process.
fn cannot_write(path: &Path, e: &dyn std::fmt::Display) -> Error {
    // A read-only filesystem is not a permission problem (an outside tester, as root,
    // was sent to chmod after a `remount,ro` and after ext4's emergency read-only).
    let folder = crate::os::fs::parent_dir(path);
    let read_only = [path, folder.as_path()]
        .iter()
        .any(|p| sys::may_read_and_write(p).is_err_and(|e| e.raw_os_error() == Some(libc::EROFS)))
        || crate::os::fs::refuses_writes(&folder);
    if read_only {
        return Error::io(
            format!(
                "opening journal {}: its filesystem is mounted read-only ({e}) — a filesystem remounts itself \
                 read-only after an I/O error (see `dmesg`): nothing can be appended or drained until it is \
                 writable again; the journal is untouched",
                path.display()
            ),
            io::Error::from_raw_os_error(libc::EROFS),
        );
    }
    Error::io(
        format!(
            "opening journal {}: this process may not read and write it or create its -wal and -shm next to it \
             ({e}); give the user it runs as read and write permission on the journal file and its folder (or run \
             it as the journal's owner); the journal is untouched",
            path.display()
        ),
        io::Error::from_raw_os_error(libc::EACCES),
    )
}

/// Whether this process is refused opening the journal's file for reading and writing
/// (its mode, its owner, a read-only mount).
/// Asked with `access(2)`, never by opening it: closing any descriptor of a file drops
/// every POSIX lock this process holds on it, `SQLite`'s included (an outside
/// reviewer; see `create_journal_file`).
fn may_not_open(path: &Path) -> bool {
    sys::may_read_and_write(path)
        .is_err_and(|e| e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EROFS))
}

/// A journal `SQLite` could not set up on a full disk (its `-wal`, or the blocks of its
/// `-shm`'s pages: `os::sqlite_vfs`): an I/O error saying so, never "not a journal".
fn disk_full(path: &Path) -> Error {
    Error::io(
        format!(
            "opening journal {}: its disk is full (SQLite cannot set up the journal's -wal and -shm); free space on \
             that disk; the journal is untouched",
            path.display()
        ),
        io::Error::from_raw_os_error(libc::ENOSPC),
    )
}

/// What a compactor's open says of a `*.journal` whose writer has not created the
/// journal in it yet ([`Error::is_journal_not_ready`]).
pub(crate) const NOT_READY: &str = "it is empty: no writer has created a journal in it yet (or one is doing so \
                                     right now; a drain never creates a journal, and picks it up once its writer has)";

/// How many times an open starts again on a journal retired or replaced while it was
/// being opened (each time, the name named another file: a retirement and a new
/// journal per attempt) before it reports `journal_gone`.
const REPLACED_WHILE_OPENING_RETRIES: u32 = 50;

/// Why one attempt at opening a journal failed in a way another attempt may not.
#[derive(Default)]
struct Attempt {
    /// It was setting up a journal that held no table yet (another opener may be
    /// doing so too).
    setting_up_new: bool,
    /// The journal's name stopped naming the file this attempt opened (a retirement,
    /// a new journal made under the name): nothing was written through it.
    replaced: bool,
    /// Its first read failed in a way a read a moment later may not (a short read).
    transient: bool,
}

impl Journal {
    /// Open an existing journal, never creating one (what a compactor does: a mistyped
    /// path must be an error, not a new empty journal).
    ///
    /// # Errors
    /// As [`Journal::open`]; also [`Error::NotAJournal`] when no file is there, or the
    /// file is empty because its writer has not created the journal in it yet
    /// ([`Error::is_journal_not_ready`]).
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
            Err(_) if super::files::is_orphaned_log(path) => Err(orphaned_log(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotAJournal {
                path: path.to_path_buf(),
                detail: "no such file (a journal is created by its writer's first open; check the path)".into(),
            }),
            Err(e) => Err(Error::io(format!("inspecting journal {}", path.display()), e)),
        }
    }

    /// Open (creating if needed, mode 0600) the journal at `path`.
    ///
    /// # Errors
    /// - [`Error::InvalidArgument`]: `max_line_bytes` is 0 or above [`MAX_LINE_BYTES_LIMIT`](super::MAX_LINE_BYTES_LIMIT)
    ///   (`open_existing`: above `u32::MAX`, and held to that limit for appends), or a
    ///   process this one was forked from has the journal open;
    /// - [`Error::UnsafeFilesystem`]: the journal's folder is on a network filesystem
    ///   (unless `allow_network_fs`);
    /// - [`Error::NotAJournal`]: the path is a symlink or not a regular file, or the
    ///   file is another `SQLite` database, not a database, or of an unsupported format;
    /// - [`Error::JournalGone`]: the journal is missing but its `-wal` is there (it
    ///   may hold undrained lines; nothing is created);
    /// - [`Error::Io`], [`Error::Sqlite`]: creating, opening or setting up the files
    ///   failed (too many open files is named as such).
    pub fn open(path: impl AsRef<Path>, opts: JournalOptions) -> Result<Journal> {
        Self::open_impl(path.as_ref(), opts, true)
    }

    /// `create`: make a new journal in an empty file (a writer's open). A compactor's
    /// open never does: a file its writer is creating at that moment is "not ready",
    /// and racing the writer through `SQLite`'s first-time setup broke both.
    fn open_impl(path: &Path, mut opts: JournalOptions, create: bool) -> Result<Journal> {
        // Threads or processes creating the same journal at once race through
        // SQLite's first-time setup (page size, WAL switch, schema): the loser can get
        // a transient SQLite error, "disk I/O error" among them (found by an outside
        // tester: 1 open in 450, three threads opening a just-retired journal's name).
        // The journal held nothing then: open it again, up to the busy timeout. A
        // journal retired or replaced while it was being opened is opened again by
        // its name too (`Attempt::replaced`), a bounded number of times.
        let started = Instant::now();
        let mut replaced = 0;
        loop {
            let mut attempt = Attempt::default();
            let busy_timeout = opts.busy_timeout;
            let retry_with = opts.clone();
            match Self::open_once(path, opts, create, &mut attempt) {
                Err(Error::Sqlite { .. }) if attempt.setting_up_new && started.elapsed() < busy_timeout => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) if attempt.transient && started.elapsed() < busy_timeout => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) if attempt.replaced && replaced < REPLACED_WHILE_OPENING_RETRIES => replaced += 1,
                r => return r,
            }
            opts = retry_with;
        }
    }

    /// One attempt of [`Journal::open_impl`], saying in `attempt` why it may be worth
    /// another.
    fn open_once(path: &Path, mut opts: JournalOptions, create: bool, attempt: &mut Attempt) -> Result<Journal> {
        let path = path.to_path_buf();
        // A writer's open is held to what SQLite can store; a compactor's (an existing
        // journal) keeps accepting what it did — its setting only sizes a round, and
        // a daemon set to 1 GiB drained nothing once refused (an outside reviewer) —
        // and its handle appends no line longer than SQLite stores either.
        let most = if create { super::MAX_LINE_BYTES_LIMIT } else { u32::MAX as usize };
        if opts.max_line_bytes == 0 || opts.max_line_bytes > most {
            return Err(Error::InvalidArgument(format!(
                "max_line_bytes must be between 1 and {most} (SQLite stores at most 10^9 bytes in a row), not {}",
                opts.max_line_bytes
            )));
        }
        opts.max_line_bytes = opts.max_line_bytes.min(super::MAX_LINE_BYTES_LIMIT);
        if let Some(too_long) = crate::os::sqlite_vfs::path_too_long(&path, "journal", false) {
            return Err(too_long);
        }
        if !opts.allow_network_fs {
            fscheck::check_journal_location(&path)?;
        }
        // A target given as a journal (a swapped argument): SQLite would turn an empty
        // target into a database, and every compactor of it would stop at bytes no
        // round wrote. A target has a sidecar folder beside it.
        let sidecar = crate::target::sidecar::Sidecar::for_target(&path);
        if sidecar.dir.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{} is a tributary target (its sidecar {} is beside it), not a journal: a writer appends to a \
                 journal of its own on its local disk (e.g. spool/app.journal), which compactors drain into the \
                 target; nothing was touched",
                path.display(),
                sidecar.dir.display()
            )));
        }
        // The spool folder's lock, held until SQLite has opened the journal's file and,
        // at the first read, its -wal and -shm: a retirement renames a journal and
        // removes its log under the same lock, so the three files opened are one
        // journal's. Without it, an open racing a retirement and a new journal got the
        // old file with the new journal's -shm (or log), and SQLite's recovery of a
        // fresh index rebuilt the new journal's index from the old log: acknowledged
        // lines lost (an outside tester, beside `retire` and a `compact` daemon).
        let folder = lock_folder(&path)?;
        claim_name(&path, create, attempt, &folder)?;
        // Gone already (retired since `claim_name`): start again by name.
        let inode =
            file_id(&path).map_err(|e| if path.exists() { e } else { replaced_while_opening(&path, attempt) })?;
        // A journal file without even SQLite's header beside a log that holds frames:
        // SQLite deletes the log of an empty database at its first read — acknowledged
        // lines gone. Never a journal's own state (its first page is written before its
        // log's first frame); it is a removed journal's log beside a file `touch`ed or
        // being copied back in place (an outside tester lost the lines both ways).
        // Refused before SQLite reads anything (a daemon tries again when the files
        // change: a copy finished in place, or the file moved back).
        if super::files::is_orphaned_log(&path) {
            return Err(orphaned_log(&path));
        }
        // SQLite work (and the registry of open journals, a process-wide lock a child
        // must not inherit held) from here to the end: the fork gate (`os::fork`).
        let _inside = crate::os::fork::enter();
        forks::check_not_inherited(&path, inode)?;
        // Through `tributary-unix`: a full disk is an error, not a SIGBUS.
        let mut conn = crate::os::sqlite_vfs::open(&path).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::CannotOpen) => cannot_open(&path, &e),
            _ => Error::sqlite(format!("opening {}", path.display()), e),
        })?;
        if !create {
            // A compactor's handle: its close keeps the -wal and -shm for the next open,
            // instead of deleting what that open would create again. The -wal is cut to
            // 0 bytes then (SQLite does so for a kept log when a journal_size_limit is
            // set, `schema::configure`): nothing a later open could replay.
            let _ = crate::os::sys::sqlite_persist_wal(&conn);
        }
        // SQLite opens a file it may not write read-only, and fails only at the first
        // commit: say so now, before anything is appended or read for a drain.
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(cannot_write(&path, &"SQLite could open it only read-only"));
        }
        let not_journal = |detail: String| Error::NotAJournal { path: path.clone(), detail };
        crate::failpoint::hit(crate::failpoint::Point::OpenBeforeRead);
        set_busy_limit(opts.busy_timeout);
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        conn.busy_handler(Some(retry_when_busy)).map_err(|e| Error::sqlite("setting the busy handler", e))?;
        // Refuse someone else's database before changing anything in it (the WAL switch
        // below is permanent).
        let tables = schema::table_names(&conn).map_err(|e| match e.sqlite_error_code() {
            // The files went while they were being opened (a retirement): not an
            // I/O error of this journal (an outside tester got "disk I/O error").
            _ if file_id(&path).ok() != Some(inode) => replaced_while_opening(&path, attempt),
            // Opening the file, its -wal or -shm failed: most often the file limit.
            Some(rusqlite::ErrorCode::CannotOpen) => cannot_open(&path, &e),
            // A journal this process may not write (or whose folder it may not add
            // a -wal to) is a real journal: never advise moving it out of the spool.
            Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied) => cannot_write(&path, &e),
            _ if is_disk_full(&e, &path) => disk_full(&path),
            // An SQLite file whose pages are damaged (cut short, overwritten): most
            // likely a journal, never to be moved away as a stranger's file.
            Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
                Error::sqlite(format!("reading the tables of journal {}", path.display()), e)
            }
            // An I/O error is never "not a journal" (that advice moves a good one away).
            Some(rusqlite::ErrorCode::SystemIoFailure) => {
                let code = match &e {
                    rusqlite::Error::SqliteFailure(f, _) => f.extended_code,
                    _ => 0,
                };
                // A log shorter than its index said, or a stale log another opener
                // deleted first, met as a journal is retired or set up beside this
                // open (an outside tester's "disk I/O error"): read again; a journal
                // really cut short fails every time.
                attempt.transient =
                    [rusqlite::ffi::SQLITE_IOERR_SHORT_READ, rusqlite::ffi::SQLITE_IOERR_DELETE_NOENT].contains(&code);
                Error::io(
                    format!("opening journal {}", path.display()),
                    io::Error::other(format!(
                        "{e} (SQLite code {code}){}",
                        crate::os::sqlite_file::system_error_note(&conn, &e)
                    )),
                )
            }
            _ => not_journal(format!("not an SQLite database: {e}")),
        })?;
        // SQLite opened the journal's file by its name, then, at this first read, its
        // -wal and -shm by their names. Had the journal been retired and a new one
        // made under the name in between, this connection would read the old file
        // through the new journal's log, and a checkpoint through it (a drain gives
        // space back) would move the new journal's lines into the old, unlinked file:
        // an outside tester lost 121–466 acknowledged lines in 45 s of `retire` beside
        // a `compact` daemon and writers. The name still naming the file opened proves
        // the log is that file's (a journal's log is only ever removed after its name
        // is: retirement's order). Checked before anything is written or trusted.
        if file_id(&path).ok() != Some(inode) {
            return Err(replaced_while_opening(&path, attempt));
        }
        drop(folder);
        if !tables.is_empty() && !schema::is_journal(&tables) {
            return Err(not_journal("it is an SQLite database without tributary's tables".into()));
        }
        if tables.is_empty() && !create {
            return Err(not_journal(NOT_READY.into()));
        }
        attempt.setting_up_new = tables.is_empty();
        let full = |e: Error| match e {
            Error::Sqlite { ref source, .. } if is_disk_full(source, &path) => disk_full(&path),
            e => e,
        };
        schema::configure(&conn, &path, &opts, tables.is_empty()).map_err(full)?;
        let id = schema::init(&mut conn, &path).map_err(full)?;
        attempt.setting_up_new = false;
        // O2: the journal file and the `-wal` SQLite just created (it makes a new one
        // whenever the last connection closed) must be durable as names before any
        // line in them is acknowledged; SQLite fsyncs the files, never their folder.
        // A writer's open does it now; a compactor's open only reads and records (a
        // record lost with its name is redone), so it is left to the first commit of
        // lines through this handle, if any (`Journal::ensure_names_durable`): with
        // 10,000 journals the compactor opened a hundred per pass, each a folder fsync.
        if create {
            sync_folder(&path)?;
        }
        // The -wal exists from the schema read on: SQLite deletes it only when the last
        // connection closes, and this one stays open as long as the handle.
        let wal_file = file_id(&wal_path(&path));
        if file_id(&path).ok() != Some(inode) {
            // retired (its -wal removed) since the check above
            return Err(replaced_while_opening(&path, attempt));
        }
        let files = [inode, wal_file?];
        forks::opened(inode);
        Ok(Journal {
            path,
            id,
            opts,
            conn: Some(Mutex::new(conn)),
            group: GroupCommit::default(),
            maintenance: Mutex::new(Maintenance { last_key_purge: Instant::now(), deleted_since_checkpoint: 0 }),
            files,
            folder_watch: OnceLock::new(),
            gone: AtomicBool::new(false),
            names_durable: AtomicBool::new(create),
            wal_synced_since_open: AtomicBool::new(false),
            pid: crate::os::sys::current_pid(),
        })
    }

    /// Whether this handle's path still names the journal (file and `-wal`) it opened;
    /// a daemon reopens a journal by path when not.
    #[must_use]
    pub fn is_in_place(&self) -> bool {
        self.check_in_place().is_ok()
    }

    /// Before a commit's COMMIT and after it (`Journal::commit_requests`): the
    /// journal's path must still name the file (and `-wal`) this handle opened. (Appends run it only after an inotify event in the journal's
    /// folder — or always, without a watch; a rename of a folder above the spool is
    /// not seen.) A journal removed (`rm`), replaced (a new journal of the same
    /// name), or whose spool was moved, would take this handle's appends into an
    /// unlinked inode that no drain ever sees (issue 12 item 8). Two `lstat`s per
    /// group commit.
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
}
