//! tributary inside a Rust program that uses `SQLite` itself: both share one `SQLite`
//! (one `libsqlite3-sys` per build), so tributary changes no process-wide `SQLite`
//! setting on its own. An outside reviewer found the first journal opened had turned
//! off `SQLite`'s memory statistics for the whole process: the program's hard heap
//! limit was silently not enforced and `sqlite3_memory_used()` read 0. Turning them
//! off is the program's choice (`tributary::disable_sqlite_memory_statistics`).
//! Its own test binary: the setting is the process's.

use tributary::{Journal, JournalOptions};

#[test]
fn a_programs_sqlite_heap_limit_holds_after_tributary_opened_a_journal() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path().join("a.journal"), JournalOptions::default()).unwrap();
    j.append(b"one").unwrap();
    // The program's own use of SQLite, in the same process.
    // SAFETY: sqlite3_hard_heap_limit64 takes any value and is thread-safe.
    unsafe { rusqlite::ffi::sqlite3_hard_heap_limit64(1 << 20) };
    let c = rusqlite::Connection::open_in_memory().unwrap();
    let r = c.execute_batch(
        "CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<2000)
         INSERT INTO t SELECT randomblob(4000) FROM n;",
    );
    // SAFETY: sqlite3_memory_used has no preconditions.
    let used = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    // SAFETY: as above; the limit back off for whatever runs after.
    unsafe { rusqlite::ffi::sqlite3_hard_heap_limit64(0) };
    assert!(r.is_err(), "~8 MB inserted under a 1 MiB hard heap limit (sqlite3_memory_used() = {used})");
    assert!(used > 0, "SQLite's memory statistics are off");
}
