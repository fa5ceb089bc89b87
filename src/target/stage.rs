//! Stage files, `<sidecar>/stage/<stager id>` (docs/design.md "Staging: one round
//! commits every host's lines"): a compactor's copy of its journals' new lines on the
//! shared filesystem, written without the target's lock, for whichever host holds the
//! lock next to commit.
//!
//! Keeps: a batch certifies itself — its header names the journal, its first seq and
//! count, and the chained hash before and after its lines; one CRC covers header and
//! data — and [`read`] returns only batches that check out, so no state of a stage
//! file (torn, stale, being reset, restored, copied) yields a batch whose bytes are
//! not the lines its header names. A batch is durable before a header slot covers it
//! (O14); a header write goes to the slot that is not current. Read and written with
//! `O_DIRECT` in 4 KiB blocks and kept at least 2 MiB long (sparse), like the lock file,
//! so no client cache answers a read.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::manifest::chain_step;
use super::slots::{self, read_at, round_up, Aligned, BLOCK};
use crate::journal::JournalId;

/// The folder of stage files inside a target's sidecar.
pub(crate) const STAGE_DIR: &str = "stage";
/// A header slot's magic; the two slots are the file's first two blocks.
const HEADER_MAGIC: &[u8; 8] = b"TRIBSTGH";
/// A header slot: magic, generation, counter, staged length (u64 LE each), CRC32 of
/// the 32 bytes before it.
const HEADER_BYTES: usize = 36;
/// A batch's magic.
const BATCH_MAGIC: &[u8; 8] = b"TRIBSTAG";
/// A batch's header: magic, generation, journal id (16 bytes), first seq, count,
/// chain before, chain after, first line's stamp, data length (u64 LE each), CRC32 of
/// the 80 bytes before it followed by the data, 4 zero bytes.
const BATCH_HEADER_BYTES: usize = 88;
/// Where the first batch starts (after the two header blocks).
pub(crate) const FIRST_BATCH_AT: u64 = 2 * BLOCK as u64;
/// A stage file is kept at least this long (sparse): a `GlusterFS` client's quick-read
/// cache serves files up to 1000 KB even to `O_DIRECT` reads (docs/multihost.md).
const MIN_FILE_BYTES: u64 = 2 << 20;

/// A run of one journal's lines, as a stager copied them, and what they must follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    /// The stage file's generation when the batch was written.
    pub(crate) generation: u64,
    pub(crate) journal_id: JournalId,
    pub(crate) first_seq: u64,
    pub(crate) count: u64,
    /// The journal's chained hash through `first_seq - 1` (0 for `first_seq` 1).
    pub(crate) chain_before: u64,
    /// The chained hash through the batch's last line.
    pub(crate) chain_after: u64,
    /// The first line's stamp (ms, its host's clock) when `first_seq` is 1, else 0:
    /// the lifecycle's horizon check at commit time (design, amendment 2).
    pub(crate) first_line_ms: u64,
    /// The lines, each followed by `\n`.
    pub(crate) data: Vec<u8>,
    /// The CRC of the last line (without its `\n`): the watermark's `crc`. Computed,
    /// not stored.
    pub(crate) last_crc: u32,
}

impl Batch {
    /// A batch of `data` (whole lines, each ending in `\n`) following `chain_before`;
    /// its line count, last CRC and `chain_after` computed from the bytes.
    pub(crate) fn new(
        generation: u64,
        journal_id: JournalId,
        first_seq: u64,
        chain_before: u64,
        first_line_ms: u64,
        data: Vec<u8>,
    ) -> Option<Batch> {
        let (count, chain_after, last_crc) = chain_over(&data, first_seq, chain_before)?;
        Some(Batch {
            generation,
            journal_id,
            first_seq,
            count,
            chain_before,
            chain_after,
            first_line_ms,
            data,
            last_crc,
        })
    }

    /// The seq of the batch's last line.
    pub(crate) fn last_seq(&self) -> u64 {
        self.first_seq + self.count - 1
    }

    /// The batch as written: header, data, zero padding to a block boundary.
    fn encode(&self) -> Aligned {
        let mut buf = Aligned::new(round_up(BATCH_HEADER_BYTES + self.data.len()));
        let b = buf.bytes_mut();
        b[..8].copy_from_slice(BATCH_MAGIC);
        b[8..16].copy_from_slice(&self.generation.to_le_bytes());
        b[16..32].copy_from_slice(&self.journal_id.0);
        for (k, v) in [
            self.first_seq,
            self.count,
            self.chain_before,
            self.chain_after,
            self.first_line_ms,
            self.data.len() as u64,
        ]
        .into_iter()
        .enumerate()
        {
            b[32 + 8 * k..40 + 8 * k].copy_from_slice(&v.to_le_bytes());
        }
        b[BATCH_HEADER_BYTES..BATCH_HEADER_BYTES + self.data.len()].copy_from_slice(&self.data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&b[..80]);
        crc.update(&self.data);
        b[80..84].copy_from_slice(&crc.finalize().to_le_bytes());
        buf
    }

    /// The batch at the start of `b`, and the bytes it takes; `None` when what is
    /// there is not a whole batch that checks out (its CRC, its line count, its chain).
    fn decode(b: &[u8]) -> Option<(Batch, usize)> {
        if b.len() < BATCH_HEADER_BYTES || &b[..8] != BATCH_MAGIC {
            return None;
        }
        let u = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let data_len = usize::try_from(u(72)).ok()?;
        let end = BATCH_HEADER_BYTES.checked_add(data_len)?;
        if end > b.len() {
            return None;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&b[..80]);
        crc.update(&b[BATCH_HEADER_BYTES..end]);
        if crc.finalize() != u32::from_le_bytes(b[80..84].try_into().expect("4 bytes")) {
            return None;
        }
        let journal_id = JournalId(b[16..32].try_into().expect("16 bytes"));
        let (first_seq, count, chain_before, chain_after) = (u(32), u(40), u(48), u(56));
        if first_seq == 0 {
            return None;
        }
        let batch = Batch::new(u(8), journal_id, first_seq, chain_before, u(64), b[BATCH_HEADER_BYTES..end].to_vec())?;
        (batch.count == count && batch.chain_after == chain_after).then_some((batch, round_up(end)))
    }
}

/// Lines in `data` (each must end in `\n`), the chain after them, the last one's CRC.
fn chain_over(data: &[u8], first_seq: u64, chain_before: u64) -> Option<(u64, u64, u32)> {
    if data.last() != Some(&b'\n') {
        return None;
    }
    let (mut count, mut chain, mut last_crc) = (0u64, chain_before, 0u32);
    for line in data[..data.len() - 1].split(|&c| c == b'\n') {
        let crc = crate::journal::line_crc(line);
        chain = chain_step(chain, first_seq + count, u32::try_from(line.len()).ok()?, crc);
        last_crc = crc;
        count += 1;
    }
    Some((count, chain, last_crc))
}

/// A header slot: which generation of batches the file holds and how far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Bumped by each reset; batches carry the generation they were written in.
    pub(crate) generation: u64,
    /// Bumped by each header write: of two valid slots the higher one is current.
    pub(crate) counter: u64,
    /// Where the batches end (from [`FIRST_BATCH_AT`] on).
    pub(crate) staged_len: u64,
}

impl Header {
    fn encode(&self) -> Aligned {
        let mut buf = Aligned::new(BLOCK);
        let b = buf.bytes_mut();
        b[..8].copy_from_slice(HEADER_MAGIC);
        b[8..16].copy_from_slice(&self.generation.to_le_bytes());
        b[16..24].copy_from_slice(&self.counter.to_le_bytes());
        b[24..32].copy_from_slice(&self.staged_len.to_le_bytes());
        let crc = crc32fast::hash(&b[..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        buf
    }

    fn decode(b: &[u8]) -> Option<Header> {
        if b.len() < HEADER_BYTES || &b[..8] != HEADER_MAGIC {
            return None;
        }
        if crc32fast::hash(&b[..32]) != u32::from_le_bytes(b[32..36].try_into().expect("4 bytes")) {
            return None;
        }
        let u = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let h = Header { generation: u(8), counter: u(16), staged_len: u(24) };
        (h.staged_len >= FIRST_BATCH_AT).then_some(h)
    }
}

/// The current header of the slots in `two_blocks` (the file's first 8 KiB): the valid
/// slot with the higher counter, and its index.
fn current_header(two_blocks: &[u8]) -> Option<(usize, Header)> {
    let slot = |i: usize| two_blocks.get(i * BLOCK..(i + 1) * BLOCK).and_then(Header::decode);
    match (slot(0), slot(1)) {
        (Some(a), Some(b)) if b.counter > a.counter => Some((1, b)),
        (Some(a), _) => Some((0, a)),
        (None, Some(b)) => Some((1, b)),
        (None, None) => None,
    }
}

/// What a stage file holds, as read from some offset: its current header (none: no
/// valid slot) and the batches from there up to the header's staged length, in file
/// order, each with its offset, up to the first that does not check out, at most
/// `max_bytes` of them.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    pub(crate) header: Option<Header>,
    pub(crate) batches: Vec<(u64, Batch)>,
    /// Where the read stopped: the offset after the last batch returned.
    pub(crate) end: u64,
    /// The read reached the header's staged length (nothing left unread or unreadable).
    pub(crate) complete: bool,
}

/// Read the stage file open as `file` from `from` (a batch's offset; a generation that
/// is not `generation` is read from its first batch instead). See [`Staged`].
///
/// # Errors
/// A read's error.
pub(crate) fn read(file: &File, from: Option<(u64, u64)>, max_bytes: u64) -> io::Result<Staged> {
    let mut head = Aligned::new(2 * BLOCK);
    let n = read_at(file, head.bytes_mut(), 0)?;
    let Some((_, header)) = current_header(&head.bytes()[..n]) else { return Ok(Staged::default()) };
    let start = match from {
        Some((generation, at)) if generation == header.generation && at <= header.staged_len => at,
        _ => FIRST_BATCH_AT,
    };
    let len = (header.staged_len - start).min(max_bytes);
    let mut area = Aligned::new(round_up(usize::try_from(len).unwrap_or(usize::MAX / 2)));
    let n = read_at(file, area.bytes_mut(), start)?;
    let bytes = &area.bytes()[..n.min(usize::try_from(len).unwrap_or(n))];
    let mut batches = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let Some((batch, took)) = Batch::decode(&bytes[pos..]) else { break };
        batches.push((start + pos as u64, batch));
        pos += took;
    }
    let end = start + pos as u64;
    Ok(Staged { header: Some(header), batches, end, complete: end >= header.staged_len })
}

/// Open a stage file to read it (`O_DIRECT` where the filesystem allows).
///
/// # Errors
/// `open`'s error.
pub(crate) fn open_to_read(path: &Path) -> io::Result<File> {
    slots::open(path, false, false)
}

/// Open a stage file read-write (to take its lock before deleting it).
///
/// # Errors
/// `open`'s error.
pub(crate) fn open_to_write(path: &Path) -> io::Result<File> {
    slots::open(path, true, false)
}

/// The stage files in `sidecar_dir/stage/` (none when the folder does not exist), and
/// the leftovers of creations that never finished (`<id>.new`).
///
/// # Errors
/// Listing the folder failed other than by its absence.
pub(crate) fn list(sidecar_dir: &Path) -> io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let dir = sidecar_dir.join(STAGE_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e),
    };
    let is_id = |n: &str| n.len() == 32 && n.bytes().all(|c| c.is_ascii_hexdigit());
    let (mut files, mut leftovers) = (Vec::new(), Vec::new());
    for e in entries {
        let e = e?;
        let name = e.file_name();
        // a stager id: 32 hex digits; anything else is not ours to read
        match name.to_str() {
            Some(n) if is_id(n) => files.push(e.path()),
            Some(n) if n.strip_suffix(NEW_SUFFIX).is_some_and(is_id) => leftovers.push(e.path()),
            _ => {}
        }
    }
    files.sort();
    Ok((files, leftovers))
}

/// A stage file being created carries this suffix until its header is durable: a
/// file under its final name always has a valid header.
const NEW_SUFFIX: &str = ".new";

/// A stage file this process writes: created with a new random id, locked (OFD,
/// exclusive) for as long as it is open, so exactly one stager appends to it.
#[derive(Debug)]
pub(crate) struct StageFile {
    file: File,
    path: PathBuf,
    ino: u64,
    current: usize,
    header: Header,
}

impl StageFile {
    /// Create a new stage file in `sidecar_dir/stage/` (the folder too, made durable),
    /// locked, 2 MiB long, with an empty generation-1 header, durable before this
    /// returns.
    ///
    /// # Errors
    /// A system call's error.
    pub(crate) fn create(sidecar_dir: &Path) -> io::Result<StageFile> {
        let dir = sidecar_dir.join(STAGE_DIR);
        match std::fs::create_dir(&dir) {
            Ok(()) => crate::os::fs::sync_dir(sidecar_dir).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let id = JournalId::random().map_err(io::Error::other)?.to_hex();
        let (path, new) = (dir.join(&id), dir.join(format!("{id}{NEW_SUFFIX}")));
        let file = slots::create_new(&new)?;
        // Under its temporary name until its header is durable, then renamed: a file
        // under a stager id always has a valid header, and a failed creation leaves
        // only a `.new` file (removed now, or by a holder once its lock is free).
        let made = (|| {
            if !crate::os::sys::try_lock_exclusive(&file)? {
                return Err(io::Error::other(format!("{} is locked by another process", new.display())));
            }
            file.set_len(MIN_FILE_BYTES)?;
            let ino = file.metadata()?.ino();
            let header = Header { generation: 1, counter: 0, staged_len: 0 };
            let mut stage = StageFile { file, path: path.clone(), ino, current: 1, header };
            stage.write_header(1, FIRST_BATCH_AT)?;
            std::fs::rename(&new, &path)?;
            crate::os::fs::sync_dir(&dir).map_err(io::Error::other)?;
            Ok(stage)
        })();
        if made.is_err() {
            let _ = std::fs::remove_file(&new);
        }
        made
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The current header.
    pub(crate) fn header(&self) -> Header {
        self.header
    }

    /// Append `batches` (written in this file's generation) after the staged ones:
    /// each at its block-aligned offset, one fdatasync, then the other header slot
    /// covering them, fdatasync (O14).
    ///
    /// # Errors
    /// A system call's error; the header then still covers only what it did, and the
    /// bytes past it are ignored by readers.
    pub(crate) fn append(&mut self, batches: &[Batch]) -> io::Result<()> {
        let mut at = self.header.staged_len;
        for b in batches {
            debug_assert_eq!(b.generation, self.header.generation);
            let buf = b.encode();
            self.file.write_all_at(buf.bytes(), at)?;
            at += buf.bytes().len() as u64;
        }
        self.file.sync_data()?;
        crate::failpoint::hit(crate::failpoint::Point::StageBeforeHeader);
        self.write_header(self.header.generation, at)?;
        crate::failpoint::hit(crate::failpoint::Point::StageAfterHeader);
        Ok(())
    }

    /// Start a new generation with nothing staged (every batch was committed or can
    /// never be): readers that read the old header and find new batches see their
    /// generation change, and each batch still certifies itself.
    ///
    /// # Errors
    /// A system call's error.
    pub(crate) fn reset(&mut self) -> io::Result<()> {
        self.write_header(self.header.generation + 1, FIRST_BATCH_AT)
    }

    /// Whether the file's name still names this file (design, amendment 7: a holder
    /// that took its lock — possible only if this process lost it — may delete it).
    pub(crate) fn still_named(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino)
    }

    fn write_header(&mut self, generation: u64, staged_len: u64) -> io::Result<()> {
        let next = Header { generation, counter: self.header.counter + 1, staged_len };
        let index = 1 - self.current;
        self.file.write_all_at(next.encode().bytes(), (index * BLOCK) as u64)?;
        self.file.sync_data()?;
        self.current = index;
        self.header = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first_seq: u64, chain_before: u64, lines: &[&str]) -> Batch {
        let data: Vec<u8> = lines.iter().flat_map(|l| l.bytes().chain(std::iter::once(b'\n'))).collect();
        Batch::new(1, JournalId([7; 16]), first_seq, chain_before, 0, data).expect("whole lines")
    }

    #[test]
    fn a_batch_reads_back_as_written_and_its_chain_is_the_journal_s() {
        let b = batch(5, 42, &["a", "bc", ""]);
        assert_eq!(b.count, 3);
        let mut chain = 42;
        for (k, line) in ["a", "bc", ""].iter().enumerate() {
            let len = u32::try_from(line.len()).unwrap();
            chain = chain_step(chain, 5 + k as u64, len, crate::journal::line_crc(line.as_bytes()));
        }
        assert_eq!(b.chain_after, chain);
        assert_eq!(b.last_seq(), 7);
        let enc = b.encode();
        let (back, took) = Batch::decode(enc.bytes()).expect("decodes");
        assert_eq!(back, b);
        assert_eq!(took, BLOCK);
    }

    #[test]
    fn a_batch_with_any_byte_changed_is_not_read() {
        let b = batch(1, 0, &["hello", "world"]);
        let enc = b.encode();
        let used = BATCH_HEADER_BYTES + b.data.len();
        for k in 0..used {
            if (84..88).contains(&k) {
                continue; // the padding after the CRC
            }
            let mut bytes = enc.bytes().to_vec();
            bytes[k] ^= 0x01;
            assert!(Batch::decode(&bytes).is_none(), "byte {k} changed, still read");
        }
        // cut short: not a batch
        assert!(Batch::decode(&enc.bytes()[..used - 1]).is_none());
    }

    #[test]
    fn data_without_a_final_newline_is_not_a_batch() {
        assert!(Batch::new(1, JournalId([1; 16]), 1, 0, 0, b"a\nb".to_vec()).is_none());
        assert!(Batch::new(1, JournalId([1; 16]), 1, 0, 0, Vec::new()).is_none());
    }

    #[test]
    fn the_valid_header_with_the_higher_counter_is_current() {
        let a = Header { generation: 3, counter: 7, staged_len: FIRST_BATCH_AT + 4096 };
        let b = Header { generation: 4, counter: 8, staged_len: FIRST_BATCH_AT };
        let mut two = vec![0u8; 2 * BLOCK];
        two[..BLOCK].copy_from_slice(a.encode().bytes());
        two[BLOCK..].copy_from_slice(b.encode().bytes());
        assert_eq!(current_header(&two), Some((1, b)));
        two[BLOCK + 20] ^= 1; // the newer one torn
        assert_eq!(current_header(&two), Some((0, a)));
        two[3] ^= 1;
        assert_eq!(current_header(&two), None);
    }

    #[test]
    fn a_file_reads_back_its_batches_up_to_the_header_and_none_after_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StageFile::create(dir.path()).unwrap();
        let (b1, b2) = (batch(1, 0, &["x"]), batch(2, 0, &["y", "z"]));
        f.append(&[b1.clone(), b2.clone()]).unwrap();
        let read_back = read(&open_to_read(f.path()).unwrap(), None, u64::MAX).unwrap();
        let batches: Vec<Batch> = read_back.batches.iter().map(|(_, b)| b.clone()).collect();
        assert_eq!(batches, vec![b1, b2.clone()]);
        assert!(read_back.complete);
        // from the second batch's offset, only it; a budget short of the first, nothing
        let second = read_back.batches[1].0;
        let from = read(&open_to_read(f.path()).unwrap(), Some((1, second)), u64::MAX).unwrap();
        assert_eq!(from.batches.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(), vec![b2]);
        let short = read(&open_to_read(f.path()).unwrap(), None, 50).unwrap();
        assert!(short.batches.is_empty() && !short.complete);
        // bytes past the header are not read
        let b3 = batch(4, 0, &["w"]);
        f.file.write_all_at(b3.encode().bytes(), f.header.staged_len).unwrap();
        assert_eq!(read(&open_to_read(f.path()).unwrap(), None, u64::MAX).unwrap().batches.len(), 2);
        f.reset().unwrap();
        // an offset of the old generation reads the new one from its start
        let after = read(&open_to_read(f.path()).unwrap(), Some((1, second)), u64::MAX).unwrap();
        assert!(after.batches.is_empty() && after.complete);
        assert_eq!(after.header.map(|h| h.generation), Some(2));
        // a second stager cannot take the file
        let other = open_to_write(f.path()).unwrap();
        assert!(!crate::os::sys::try_lock_exclusive(&other).unwrap());
        assert!(f.still_named());
        assert_eq!(list(dir.path()).unwrap(), (vec![f.path().to_path_buf()], Vec::new()));
    }
}
