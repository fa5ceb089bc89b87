//! The checkpoints still owed in a journal's folder: how much they may grow the
//! journals' files (docs/design.md, step 7). An append keeps room for that growth, so
//! the checkpoint after a log that a reader's snapshot let grow cannot fill the disk
//! to its last byte — where no record, give-back or append could ever run again.
//!
//! Keeps: the figure for a journal is never below what its next checkpoint adds to
//! the disk, barring a writer committing while it is read: the database size after
//! the log's last commit minus the file's length, or the whole `-wal`'s length when
//! the log cannot be read. Only the `-wal` is opened here, never the journal file or
//! its `-shm`: `SQLite` holds POSIX locks on those, and closing any descriptor of a
//! file drops all of this process's locks on it.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The `-wal` header's size, and a frame header's (`SQLite`'s WAL file format).
const WAL_HEADER_LEN: usize = 32;
const FRAME_HEADER_LEN: usize = 24;
const WAL_HEADER_BYTES: u64 = WAL_HEADER_LEN as u64;
const FRAME_HEADER_BYTES: u64 = FRAME_HEADER_LEN as u64;

/// The WAL magic numbers (big- or little-endian checksums).
const WAL_MAGIC: u32 = 0x377f_0682;

/// Frames walked back from a log's last frame to find its last commit: a writer's
/// open transaction (a batch being written) is at most this long to be read exactly;
/// a longer one counts the whole `-wal`.
const MAX_OPEN_TRANSACTION_FRAMES: u64 = 4096;

/// Bytes the checkpoints still owed may add to the journal files of `folder`: the sum
/// over every `<journal>-wal` in it. A folder that cannot be listed owes nothing known.
pub(super) fn owed_growth_bytes(folder: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(folder) else { return 0 };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let journal = name.as_bytes().strip_suffix(b"-wal")?;
            Some(folder.join(std::ffi::OsStr::from_bytes(journal)))
        })
        .map(|journal| owed_growth_of(&journal))
        .fold(0u64, u64::saturating_add)
}

/// What the next checkpoint of `journal` may add to its file.
fn owed_growth_of(journal: &Path) -> u64 {
    let wal = super::files::wal_path(journal);
    let Ok(wal_len) = std::fs::metadata(&wal).map(|m| m.len()) else { return 0 };
    let file_len = std::fs::metadata(journal).map_or(0, |m| m.len());
    match database_bytes_after_log(&wal, wal_len) {
        Some(bytes) => bytes.saturating_sub(file_len),
        None => wal_len,
    }
}

fn be32(b: &[u8]) -> u64 {
    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The database's size once the log at `wal` is checkpointed: its last commit
/// frame's size in pages (frames of a transaction still being written are counted as
/// new pages). A log's current frames are a prefix of the file (each reset writes
/// from the first frame on, with new salts), so the last one is found by a binary
/// search on the salts. `None` when the log cannot be read as one.
fn database_bytes_after_log(wal: &Path, wal_len: u64) -> Option<u64> {
    let file = File::open(wal).ok()?;
    let mut header = [0u8; WAL_HEADER_LEN];
    if wal_len < WAL_HEADER_BYTES {
        return Some(0); // no frame: nothing owed
    }
    file.read_exact_at(&mut header, 0).ok()?;
    if be32(&header[0..4]) & !1 != u64::from(WAL_MAGIC) {
        return None;
    }
    let page = be32(&header[8..12]);
    if !(512..=65536).contains(&page) || !page.is_power_of_two() {
        return None;
    }
    let salts = &header[16..24];
    let frame_bytes = FRAME_HEADER_BYTES + page;
    let frames = (wal_len - WAL_HEADER_BYTES) / frame_bytes;
    let frame_header = |i: u64| -> Option<[u8; FRAME_HEADER_LEN]> {
        let mut h = [0u8; FRAME_HEADER_LEN];
        file.read_exact_at(&mut h, WAL_HEADER_BYTES + (i - 1) * frame_bytes).ok()?;
        Some(h)
    };
    let current = |i: u64| frame_header(i).is_some_and(|h| &h[8..16] == salts);
    // the last current frame: `lo` is current (0: none), `hi` is not
    let (mut lo, mut hi) = (0, frames + 1);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if current(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut open_frames = 0;
    let mut i = lo;
    while i > 0 && open_frames < MAX_OPEN_TRANSACTION_FRAMES {
        let pages_after_commit = be32(&frame_header(i)?[4..8]);
        if pages_after_commit != 0 {
            return Some((pages_after_commit + open_frames) * page);
        }
        open_frames += 1;
        i -= 1;
    }
    // no commit in the log: its frames (if any) may all be new pages
    (i == 0).then_some(open_frames * page)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each figure is checked against what a checkpoint then adds to the file.
    #[test]
    fn the_owed_growth_is_what_the_checkpoint_then_adds() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.journal");
        let writer = rusqlite::Connection::open(&p).unwrap();
        writer.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x)").unwrap();
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let row = "r".repeat(3000);
        for round in 0..4 {
            for _ in 0..50 {
                writer.execute("INSERT INTO t VALUES (?1)", [&row]).unwrap();
            }
            let owed = owed_growth_bytes(d.path());
            let before = size(&p);
            writer.execute_batch("PRAGMA wal_checkpoint(PASSIVE)").unwrap();
            let added = size(&p) - before;
            assert_eq!(owed, added, "round {round}: owed {owed}, the checkpoint added {added}");
            assert!(added > 100_000, "round {round}: {added}");
            // checkpointed: nothing owed, though the -wal keeps its length
            assert_eq!(owed_growth_bytes(d.path()), 0);
            assert!(size(&super::super::files::wal_path(&p)) > 100_000);
            if round % 2 == 1 {
                // the next commit starts the log again from its first frame (new
                // salts), old frames after it: only the new ones count
                writer.execute("INSERT INTO t VALUES (?1)", [&row]).unwrap();
                let owed = owed_growth_bytes(d.path());
                assert!(owed <= 8192, "after a reset {owed} bytes owed for one row");
            }
        }
    }

    /// A `-wal` that is not a log (garbage, another program's file named so) counts
    /// whole; one too short for a header owes nothing.
    #[test]
    fn a_log_that_cannot_be_read_counts_whole() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.journal-wal"), vec![7u8; 10_000]).unwrap();
        std::fs::write(d.path().join("y.journal-wal"), vec![7u8; 10]).unwrap();
        assert_eq!(owed_growth_bytes(d.path()), 10_000);
    }
}
