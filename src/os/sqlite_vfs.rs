//! `tributary-unix`: `SQLite`'s `unix` VFS with one change, so a full disk under a
//! journal is an error, never a `SIGBUS` that kills the process.
//!
//! `SQLite` maps a journal's WAL index (`-shm`) into memory and grows it by writing the
//! last byte of each 4 KiB page, which gives the whole page a disk block only where
//! filesystem blocks are 4 KiB. Where they are smaller (ext4 formats filesystems under
//! 512 MiB with 1 KiB blocks) the rest of each page stays a hole, and with the disk
//! full `SQLite`'s first store into it cannot get a block: the kernel kills the process
//! with `SIGBUS` (a compactor draining a full 24 MiB spool died so, mid-commit).
//!
//! Keeps: every page of a WAL-index region `SQLite` maps is faulted in, writable, before
//! `SQLite` touches it (`MADV_POPULATE_WRITE`, Linux 5.14); a page that cannot get a
//! block is `SQLITE_FULL` from `xShmMap`, which `SQLite` returns from the statement.
//! Everything else is `unix`'s own code on `unix`'s own file objects: a file opened
//! through this VFS is a `unix` file whose method table is a copy of `unix`'s with
//! `xShmMap` replaced.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::{Mutex, OnceLock};

use rusqlite::ffi;

use crate::os::sys;

/// The longest full path of a file `SQLite`'s `unix` VFS opens: its path with
/// `-journal` added must fit in 512 bytes (`MAX_PATHNAME`); past it the open fails as
/// "unable to open database file", saying nothing of the length (an outside tester: a
/// journal path of 505 bytes, far below `PATH_MAX`).
pub(crate) const MAX_PATH_BYTES: usize = 512 - "-journal".len();

/// The error for a file whose full path is longer than [`MAX_PATH_BYTES`], or `None`.
/// `SQLite` refuses a path too long as written (a relative one joined to the working
/// folder: a long one with `..` fails even where it resolves short) or resolved (a
/// symlinked folder can make a short path long: an outside reviewer). As written is
/// asked before every open, which is not worth a `realpath` per journal (a compactor
/// opens every journal of its spool); `resolved` only once `SQLite` failed to open it.
pub(crate) fn path_too_long(path: &std::path::Path, what: &str, resolved: bool) -> Option<crate::error::Error> {
    use std::os::unix::ffi::OsStrExt;
    let mut full = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().ok()?.join(path) };
    if resolved {
        if let (Some(folder), Some(name)) = (full.parent(), full.file_name()) {
            full = std::fs::canonicalize(folder).ok()?.join(name);
        }
    }
    let len = full.as_os_str().as_bytes().len();
    (len > MAX_PATH_BYTES).then(|| {
        crate::error::Error::InvalidArgument(format!(
            "{what} {}: its full path is {len} bytes long{}, and SQLite opens a file only when its full path is \
             at most {MAX_PATH_BYTES} bytes: use a shorter folder (SQLite opened nothing)",
            path.display(),
            if resolved { " with its folder's symlinks resolved" } else { "" }
        ))
    })
}

/// The VFS's name, for `Connection::open_with_flags_and_vfs`.
pub(crate) const NAME: &CStr = c"tributary-unix";

/// A copy of one of `unix`'s method tables with `xShmMap` replaced; `unix` is the
/// table it copies (`SQLite` reads only the first field: this struct starts with it).
#[repr(C)]
struct Methods {
    methods: ffi::sqlite3_io_methods,
    unix: *const ffi::sqlite3_io_methods,
}

/// The copies made so far, one per `unix` table met (a handful: one per locking
/// style), leaked: `SQLite` may use a table for as long as the process lives.
struct Copies(Vec<&'static Methods>);

// SAFETY: the tables are immutable once made, and `SQLite`'s own tables are static.
unsafe impl Send for Copies {}

static COPIES: Mutex<Copies> = Mutex::new(Copies(Vec::new()));

/// Register the VFS once (not as the default). `false` when `SQLite` has no `unix`
/// VFS or refused the registration: callers then open with the default VFS.
pub(crate) fn registered() -> bool {
    static DONE: OnceLock<bool> = OnceLock::new();
    *DONE.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find is thread-safe and returns a pointer to a VFS that
        // lives as long as the process (or NULL); the copy is leaked for the same
        // reason, and sqlite3_vfs_register keeps a pointer to it.
        unsafe {
            let unix = ffi::sqlite3_vfs_find(c"unix".as_ptr());
            if unix.is_null() {
                return false;
            }
            let mut vfs: ffi::sqlite3_vfs = *unix;
            vfs.zName = NAME.as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.pAppData = unix.cast::<c_void>();
            vfs.xOpen = Some(open_file);
            vfs.xDelete = Some(delete);
            vfs.xAccess = Some(access);
            vfs.xFullPathname = Some(full_pathname);
            let vfs = Box::leak(Box::new(vfs));
            if let Some(set) = (*unix).xSetSystemCall {
                // `unix`'s own table of system calls (all its VFSes share it): a failure
                // leaves SQLite's fchown, which only costs the ctimes. SQLite keeps its
                // system calls as `void (*)(void)` and calls this one with fchown's
                // signature, which `fchown_if_needed` has (the documented way to
                // replace one: sqlite3_vfs.xSetSystemCall); the name is NUL-terminated.
                let fchown: unsafe extern "C" fn(c_int, libc::uid_t, libc::gid_t) -> c_int = fchown_if_needed;
                let as_syscall = std::mem::transmute::<
                    unsafe extern "C" fn(c_int, libc::uid_t, libc::gid_t) -> c_int,
                    unsafe extern "C" fn(),
                >(fchown);
                let _ = set(unix, c"fchown".as_ptr(), Some(as_syscall));
            }
            ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK
        }
    })
}

/// `SQLite`'s `fchown` of a `-wal` (and rollback journal) it opens, as root, to give it
/// the database file's owner — at every open, and a chown changes the file's ctime even
/// when the owner is already that one. A daemon's retirement of idle journals (`compact
/// --retire-idle`) watches the ctimes, and the open it makes to look was a change: run
/// as root, it never retired anything (an outside tester). Owners that already match are
/// left alone, so nothing changes.
unsafe extern "C" fn fchown_if_needed(fd: c_int, uid: libc::uid_t, gid: libc::gid_t) -> c_int {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is the descriptor SQLite passes (open for the call); `st` is a
    // valid, writable `stat` the kernel fills in.
    if unsafe { libc::fstat(fd, &raw mut st) } == 0 && st.st_uid == uid && st.st_gid == gid {
        return 0;
    }
    // SAFETY: as SQLite's own call, with its arguments.
    unsafe { libc::fchown(fd, uid, gid) }
}

/// [`crate::disable_sqlite_memory_statistics`]: whether `SQLite` took the setting.
pub(crate) fn disable_memory_statistics() -> bool {
    // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int. sqlite3_config only returns
    // SQLITE_MISUSE, changing nothing, once SQLite is initialised; it must not race
    // another thread's sqlite3_initialize, which the public function's contract leaves
    // to its caller (the C library calls it under a `Once` every entry point passes).
    unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, c_int::from(false)) == ffi::SQLITE_OK }
}

/// Open (creating if needed) the `SQLite` database at `path` through this VFS (through
/// the default one if it could not be registered).
pub(crate) fn open(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    if registered() {
        rusqlite::Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), NAME)
    } else {
        rusqlite::Connection::open(path)
    }
}

/// The `unix` VFS this one wraps.
///
/// # Safety
/// `vfs` is this VFS (its `pAppData` is `unix`).
unsafe fn unix_of(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: per the contract, `vfs` is the struct `registered` made.
    unsafe { (*vfs).pAppData.cast::<ffi::sqlite3_vfs>() }
}

unsafe extern "C" fn open_file(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite calls this with this VFS and a `file` of `szOsFile` bytes (unix's
    // size: copied); unix's xOpen fills it in as a unix file. Its method table is then
    // swapped for a copy whose xShmMap is `shm_map`: SQLite calls every method through
    // the table, and unix's methods never compare it.
    unsafe {
        let unix = unix_of(vfs);
        let Some(unix_open) = (*unix).xOpen else { return ffi::SQLITE_ERROR };
        let rc = unix_open(unix, name, file, flags, out_flags);
        let methods = (*file).pMethods;
        if !methods.is_null() && (*methods).iVersion >= 2 && (*methods).xShmMap.is_some() {
            (*file).pMethods = copy_of(methods);
        }
        rc
    }
}

/// The copy of `unix`'s table `methods` with `shm_map` as its `xShmMap`.
fn copy_of(methods: *const ffi::sqlite3_io_methods) -> *const ffi::sqlite3_io_methods {
    let mut copies = COPIES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(m) = copies.0.iter().find(|m| std::ptr::eq(m.unix, methods)) {
        return &raw const m.methods;
    }
    // SAFETY: `methods` is one of unix's static tables (see `open_file`).
    let mut copy = unsafe { *methods };
    copy.xShmMap = Some(shm_map);
    let made: &'static Methods = Box::leak(Box::new(Methods { methods: copy, unix: methods }));
    copies.0.push(made);
    &raw const made.methods
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    region_size: c_int,
    extend: c_int,
    pp: *mut *mut c_void,
) -> c_int {
    // SAFETY: `file` was opened by `open_file`, so its table is the `methods` field of a
    // `Methods` (first field, `repr(C)`) whose `unix` table has an xShmMap; `pp` is
    // SQLite's out-pointer, set by unix's xShmMap to NULL or to a mapping of at least
    // `region_size` bytes.
    unsafe {
        let ours = (*file).pMethods.cast::<Methods>();
        let Some(unix_map) = (*(*ours).unix).xShmMap else { return ffi::SQLITE_IOERR_SHMMAP };
        let rc = unix_map(file, region, region_size, extend, pp);
        let mapped = *pp;
        if rc != ffi::SQLITE_OK || mapped.is_null() {
            return rc;
        }
        let len = usize::try_from(region_size).unwrap_or(0);
        match sys::populate_writable(mapped, len) {
            Err(e) if e.raw_os_error() == Some(libc::EFAULT) => {
                // SQLite keeps a pointer it is given even with an error, and would
                // store through it later: it gets none.
                *pp = std::ptr::null_mut();
                ffi::SQLITE_FULL
            }
            // Older kernels (EINVAL) and anything else: as unix alone would have been.
            _ => rc,
        }
    }
}

unsafe extern "C" fn delete(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, sync_dir: c_int) -> c_int {
    // SAFETY: forwarded unchanged to unix, with unix as its VFS.
    unsafe {
        let unix = unix_of(vfs);
        (*unix).xDelete.map_or(ffi::SQLITE_ERROR, |f| f(unix, name, sync_dir))
    }
}

unsafe extern "C" fn access(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, flags: c_int, out: *mut c_int) -> c_int {
    // SAFETY: forwarded unchanged to unix, with unix as its VFS.
    unsafe {
        let unix = unix_of(vfs);
        (*unix).xAccess.map_or(ffi::SQLITE_ERROR, |f| f(unix, name, flags, out))
    }
}

unsafe extern "C" fn full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: forwarded unchanged to unix, with unix as its VFS.
    unsafe {
        let unix = unix_of(vfs);
        (*unix).xFullPathname.map_or(ffi::SQLITE_ERROR, |f| f(unix, name, n, out))
    }
}
