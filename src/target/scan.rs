//! Reading a target file the way the manifest describes it: length, `\n` count and
//! the CRC32 of its bytes (what `init`, an interrupted rotation and a rebound inode
//! compare with the manifest's `committed_*`).

use std::fs::File;
use std::io::Read;

/// Length, `\n` count and CRC32 of the first `limit` bytes of a file.
pub(crate) fn scan(file: &mut File, limit: u64) -> std::io::Result<(u64, u64, u32)> {
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
