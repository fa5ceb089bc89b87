//! Reading a target file the way the manifest describes it: length, `\n` count and
//! the CRC32 of its bytes (what `init`, an interrupted rotation and a rebound inode
//! compare with the manifest's `committed_*`), and whether its committed part still
//! ends a line (what every round and `status` check).

use std::fs::File;
use std::io::Read;

/// Length, `\n` count and CRC32 of the first `limit` bytes of a file (read from its
/// start, never from pages another host's commits made stale: design rule 6).
pub(crate) fn scan(file: &mut File, limit: u64) -> std::io::Result<(u64, u64, u32)> {
    use std::io::{Seek, SeekFrom};
    crate::os::fs::uncache_if_shared(file)?;
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut len, mut lines) = (0u64, 0u64);
    let mut reader = Read::take(&mut *file, limit);
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok((len, lines, hasher.finalize()));
        }
        hasher.update(&buf[..n]);
        // (the bytecount crate would be a dependency for a loop LLVM vectorises anyway)
        #[allow(clippy::naive_bytecount)]
        let newlines = buf[..n].iter().filter(|&&b| b == b'\n').count();
        lines += newlines as u64;
        len += n as u64;
    }
}

/// Where a committed part of `committed_len` bytes was cut, if it was: its last byte is
/// not the `\n` every committed part ends with (a truncation that later writes went
/// past left zeros there). The offset is where the zeros start when the filesystem
/// can say (`SEEK_HOLE`), else the last committed byte. `None`: intact, or empty.
pub(crate) fn committed_part_cut_at(file: &File, committed_len: u64) -> std::io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    if committed_len == 0 {
        return Ok(None);
    }
    let mut last = [0u8; 1];
    // (local filesystems only: every caller skips network ones, whose pages may be stale)
    file.read_exact_at(&mut last, committed_len - 1)?;
    if last[0] == b'\n' {
        return Ok(None);
    }
    Ok(Some(match crate::os::sys::first_hole_from(file, 0) {
        Ok(Some(h)) if h < committed_len => h,
        _ => committed_len - 1,
    }))
}
