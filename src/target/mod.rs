//! The target side: everything beside the shared file that says what in it is
//! committed, and who may change it.
//!
//! | file | owns | keeps |
//! |---|---|---|
//! | `manifest.rs` | the manifest's text encoding (format 2; format 1 read for the upgrade), the chained hash | a manifest ends with a CRC of itself; an unknown version or a bad CRC is an error, never overwritten |
//! | `watermarks.rs` | the manifest's watermark map, shared between a round's copies of the manifest | every change goes through it and is recorded, so a delta from the map a copy came from compares only the changed keys; a map another copy is based on is never changed in place |
//! | `slots.rs` | the manifest's two slots in the lock file (`O_DIRECT`, 4 KiB-aligned) | a commit writes only the slot that is not current (or, as a version-3 delta, only past the current slot's chain) and is durable before it returns; a torn slot or delta is never read as a manifest |
//! | `sidecar.rs` | the `<target>.tributary/` folder and its version-1 manifest file / stub | never a symlink nor world-writable; the stub stops version-1 binaries |
//! | `lock.rs` | the target's lock | an OFD lock (not dropped by an unrelated `close()`), opened read-write, never via a symlink; waiting is bounded |
//! | `stage.rs` | stage files: a compactor's staged copies of its journals' lines, for any lock holder to commit | a batch certifies itself (journal, seqs, chain before and after, one CRC); a batch is durable before a header covers it |
//! | `scan.rs` | reading a file's length, line count and CRC | what `verify`, `init` and rotation compare with the manifest |

pub(crate) mod lock;
pub(crate) mod manifest;
pub(crate) mod scan;
pub(crate) mod sidecar;
pub(crate) mod slots;
pub(crate) mod stage;
pub(crate) mod watermarks;
