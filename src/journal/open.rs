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

use super::files::{file_id, finish_retirement, is_disk_full, retiring_path, shm_path, sync_folder, wal_path};
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

/// A journal `SQLite` could open but not write: the file, or its folder (where the
/// `-wal` and `-shm` go), is not writable by this process.
fn cannot_write(path: &Path, e: &dyn std::fmt::Display) -> Error {
    Error::io(
        format!(
            "opening journal {}: this process may not write it or create its -wal and -shm next to it ({e}); give \
             the user it runs as write permission on the journal file and its folder (or run it as the journal's \
             owner); the journal is untouched",
            path.display()
        ),
        io::Error::from_raw_os_error(libc::EACCES),
    )
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
    /// - [`Error::InvalidArgument`]: `max_line_bytes` is 0 or above `u32::MAX`, or a
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
        // The journal held nothing then: open it again, up to the busy timeout.
        let started = Instant::now();
        loop {
            let mut setting_up_new = false;
            let busy_timeout = opts.busy_timeout;
            let retry_with = opts.clone();
            match Self::open_once(path, opts, create, &mut setting_up_new) {
                Err(Error::Sqlite { .. }) if setting_up_new && started.elapsed() < busy_timeout => {
                    std::thread::sleep(Duration::from_millis(2));
                    opts = retry_with;
                }
                r => return r,
            }
        }
    }

    /// One attempt of [`Journal::open_impl`]; `setting_up_new` is true while it sets up
    /// a journal that held no table yet (another opener may be doing so too).
    fn open_once(path: &Path, opts: JournalOptions, create: bool, setting_up_new: &mut bool) -> Result<Journal> {
        let path = path.to_path_buf();
        if opts.max_line_bytes == 0 || u32::try_from(opts.max_line_bytes).is_err() {
            return Err(Error::InvalidArgument(format!(
                "max_line_bytes must be between 1 and {} (a line's length is stored in 32 bits), not {}",
                u32::MAX,
                opts.max_line_bytes
            )));
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
        // A -wal without its journal: the journal was removed (`rm x.journal`) but not
        // its log, which may hold undrained lines. SQLite would replay that log into a
        // new, empty journal of the same name: refuse, touching nothing.
        let wal = wal_path(&path);
        if retiring_path(&path).exists() {
            // a retirement cut short (its lines are committed), or a tombstone left
            // beside a journal made after it: `finish_retirement` tells them apart
            finish_retirement(&path)?;
        }
        let orphan_wal = if path.exists() { None } else { wal.metadata().ok() };
        if orphan_wal.as_ref().is_some_and(|m| m.len() == 0) {
            // An empty log (a compactor's handle keeps the -wal, emptied, when it closes
            // last): it holds no frame to replay; the journal was removed without it.
            let _ = std::fs::remove_file(&wal);
            let _ = std::fs::remove_file(shm_path(&path));
        } else if orphan_wal.is_some() {
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
                // SQLite keeps a database's log beside its name: two names (a hard link,
                // e.g. `cp -al` of a spool) are two logs for one file. A compactor of
                // the second name drained nothing, silently, and its writes there would
                // be checkpointed into the file over the other log's.
                if md.nlink() > 1 {
                    return Err(Error::NotAJournal {
                        path: path.clone(),
                        detail: format!(
                            "it has {} names (hard links): SQLite keeps a journal's log beside its name, so two \
                             names would be two logs for one file. Remove every other name (`find / -xdev -samefile \
                             {}`) and keep the one its writer uses; copy a journal only while nothing has it open",
                            md.nlink(),
                            path.display()
                        ),
                    });
                }
            }
            Err(e) => return Err(Error::io(format!("opening journal {}", path.display()), e)),
        }
        let inode = file_id(&path)?;
        // SQLite work (and the registry of open journals, a process-wide lock a child
        // must not inherit held) from here to the end: the fork gate (`os::fork`).
        let _inside = crate::os::fork::enter();
        forks::check_not_inherited(&path, inode)?;
        // Through `tributary-unix`: a full disk is an error, not a SIGBUS.
        let mut conn =
            crate::os::sqlite_vfs::open(&path).map_err(|e| Error::sqlite(format!("opening {}", path.display()), e))?;
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
        set_busy_limit(opts.busy_timeout);
        conn.busy_handler(Some(retry_when_busy)).map_err(|e| Error::sqlite("setting the busy handler", e))?;
        // Refuse someone else's database before changing anything in it (the WAL switch
        // below is permanent).
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| match e.sqlite_error_code() {
                // Opening the file, its -wal or -shm failed: most often the file limit.
                Some(rusqlite::ErrorCode::CannotOpen) => cannot_open(&path, &e),
                // A journal this process may not write (or whose folder it may not add
                // a -wal to) is a real journal: never advise moving it out of the spool.
                Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied) => cannot_write(&path, &e),
                _ if is_disk_full(&e, &path) => disk_full(&path),
                // An I/O error is never "not a journal" (that advice moves a good one away).
                Some(rusqlite::ErrorCode::SystemIoFailure) => {
                    Error::io(format!("opening journal {}", path.display()), io::Error::other(e.to_string()))
                }
                _ => not_journal(format!("not an SQLite database: {e}")),
            })?;
        if !tables.is_empty() && !tables.iter().any(|t| t == "meta") {
            return Err(not_journal("it is an SQLite database without tributary's tables".into()));
        }
        if tables.is_empty() && !create {
            return Err(not_journal(NOT_READY.into()));
        }
        *setting_up_new = tables.is_empty();
        schema::configure(&conn, &path, &opts, tables.is_empty())?;
        let id = schema::init(&mut conn, &path)?;
        *setting_up_new = false;
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
        let files = [inode, file_id(&wal_path(&path))?];
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
