//! The operating-system layer: raw syscalls, filesystem safety checks, small file and
//! clock helpers.
//!
//! | file | owns | keeps |
//! |---|---|---|
//! | `sys.rs` | the few raw syscalls (OFD `fcntl`, `statfs`/`statvfs`, `getrandom`, futexes, signals, `CLOCK_BOOTTIME`, `FIONREAD`, inotify, file limits) | with `sqlite_vfs.rs` and `sqlite_file.rs`, the only `unsafe` outside the C ABI, each block with a `SAFETY` comment |
//! | `fscheck.rs` | filesystem checks | journals on local disks only; targets only on mounts whose locks are cluster-wide, and only by their one real name |
//! | `fs.rs` | folder paths and folder fsync | a new name is durable once `sync_dir` returns |
//! | `clock.rs` | deadlines | a deadline never overflows |
//! | `fork.rs` | the fork gate (`pthread_atfork`) | no thread is inside `SQLite` through tributary at the instant of a fork |
//! | `sqlite_file.rs` | disk blocks for a journal file's future checkpoints: `fallocate(KEEP_SIZE)` on the descriptor `SQLite` holds | a reservation never writes a byte or changes the length, and touches only the descriptor whose inode is the journal's |
//! | `sqlite_vfs.rs` | `tributary-unix`, `SQLite`'s `unix` VFS with its WAL-index mapping faulted in up front | a full disk under a journal is `SQLITE_FULL`, never a `SIGBUS` |

pub(crate) mod clock;
pub(crate) mod fork;
pub(crate) mod fs;
pub(crate) mod fscheck;
pub(crate) mod sqlite_file;
pub(crate) mod sqlite_vfs;
pub mod sys;
