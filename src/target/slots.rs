//! The manifest's home since format version 2: two slots inside the sidecar's lock
//! file (docs/design.md "The manifest, format version 2").
//!
//! Invariant: a commit overwrites only the slot that does not hold the current
//! manifest, and is durable (fdatasync) before it returns, so the valid slot with the
//! higher epoch is always the last commit that returned, or a later one. Slots are
//! read and written through one file descriptor opened with `O_DIRECT` where the
//! filesystem allows it (a FUSE client's cache must not answer), in 4 KiB-aligned
//! blocks.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::fault;
use crate::target::manifest::Manifest;

/// Bytes of one slot; the lock file is two of them (sparse).
const SLOT_LEN: usize = 2 << 20;
pub(crate) const SLOT_BYTES: u64 = SLOT_LEN as u64;
pub(crate) const LOCK_FILE_BYTES: u64 = 2 * SLOT_BYTES;
const HEADER_BYTES: usize = 16;
const MAGIC: &[u8; 8] = b"TRIBSLOT";
/// `O_DIRECT` alignment of buffers, offsets and lengths.
const BLOCK: usize = 4096;
/// The longest manifest text a slot holds.
pub(crate) const MAX_PAYLOAD_BYTES: usize = SLOT_LEN - HEADER_BYTES;

/// A slot's first 16 bytes (magic, payload length, payload CRC; zeros when never
/// written): any commit into the slot changes them, so comparing them tells whether
/// the slot was written since it was last seen, without decoding it.
pub(crate) type SlotHeader = [u8; HEADER_BYTES];

/// What one slot holds.
#[derive(Debug)]
pub(crate) enum Slot {
    /// Never written (zeros, or past the end of a version-1 lock file).
    Empty,
    /// Written but not valid: a torn write, or damage. Why, for messages.
    Bad(String),
    Valid(Manifest),
}

/// Both slots of a lock file.
#[derive(Debug)]
pub(crate) struct Slots(pub [Slot; 2]);

impl Slots {
    /// The current manifest (the valid slot with the higher epoch) and its slot index.
    pub(crate) fn current(&self) -> Option<(usize, &Manifest)> {
        let valid = |i: usize| match &self.0[i] {
            Slot::Valid(m) => Some((i, m)),
            _ => None,
        };
        match (valid(0), valid(1)) {
            (Some(a), Some(b)) => Some(if b.1.epoch > a.1.epoch { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// `Ok(None)` when both slots are empty (never written); an error when something
    /// was written but nothing valid is left.
    pub(crate) fn into_current(self, path: &Path) -> Result<Option<(usize, Manifest)>> {
        let index = self.current().map(|(i, _)| i);
        if let Some(i) = index {
            let [a, b] = self.0;
            let slot = if i == 0 { a } else { b };
            let Slot::Valid(m) = slot else { unreachable!("current() returned a valid slot") };
            return Ok(Some((i, m)));
        }
        let why: Vec<String> = self
            .0
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Bad(why) => Some(format!("slot {}: {why}", ["A", "B"][i])),
                _ => None,
            })
            .collect();
        if why.is_empty() {
            Ok(None)
        } else {
            Err(Error::CorruptManifest {
                path: path.to_path_buf(),
                detail: format!("no valid slot ({})", why.join("; ")),
            })
        }
    }
}

/// Open a lock file for slot I/O (`O_DIRECT` unless the filesystem refuses it, as
/// tmpfs does), never through a symlink.
pub(crate) fn open(path: &Path, write: bool, create: bool) -> io::Result<File> {
    open_with(path, write, create, true)
}

/// [`open`], or without `O_DIRECT` when `direct` is false: only the negative control
/// of the multi-host tests does that (slots served from a client's cache).
pub(crate) fn open_with(path: &Path, write: bool, create: bool, direct: bool) -> io::Result<File> {
    let open = |direct: bool| {
        let mut o = OpenOptions::new();
        o.read(true).write(write).create(create).truncate(false).mode(0o600);
        let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC | if direct { libc::O_DIRECT } else { 0 };
        o.custom_flags(flags).open(path)
    };
    match open(direct) {
        Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => open(false),
        r => r,
    }
}

/// A zeroed, `BLOCK`-aligned buffer of `len` bytes (a multiple of `BLOCK`), carved
/// out of a slightly larger vector: no allocator tricks, no unsafe.
struct Aligned {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        debug_assert!(len.is_multiple_of(BLOCK));
        let raw = vec![0u8; len + BLOCK];
        let start = raw.as_ptr().align_offset(BLOCK);
        Aligned { raw, start, len }
    }
    fn bytes(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

fn round_up(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

/// Read up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The header of slot `index`: one aligned block read.
pub(crate) fn read_header(file: &File, path: &Path, index: usize) -> Result<SlotHeader> {
    let mut first = Aligned::new(BLOCK);
    let n = read_at(file, first.bytes_mut(), index as u64 * SLOT_BYTES)
        .map_err(|e| Error::io(format!("reading manifest slot {} of {}", ["A", "B"][index], path.display()), e))?;
    let mut h = [0u8; HEADER_BYTES];
    let have = n.min(HEADER_BYTES);
    h[..have].copy_from_slice(&first.bytes()[..have]);
    Ok(h)
}

fn read_slot(file: &File, path: &Path, index: usize) -> Result<(Slot, SlotHeader)> {
    let at = index as u64 * SLOT_BYTES;
    let ctx = || format!("reading manifest slot {} of {}", ["A", "B"][index], path.display());
    let mut first = Aligned::new(BLOCK);
    let n = read_at(file, first.bytes_mut(), at).map_err(|e| Error::io(ctx(), e))?;
    let head = &first.bytes()[..n.min(HEADER_BYTES)];
    let mut header = [0u8; HEADER_BYTES];
    header[..head.len()].copy_from_slice(head);
    Ok((read_slot_body(file, n, first, at, path, &ctx)?, header))
}

/// The rest of [`read_slot`]: `first` holds the slot's first block (`n` bytes read).
fn read_slot_body(
    file: &File,
    n: usize,
    first: Aligned,
    at: u64,
    path: &Path,
    ctx: &dyn Fn() -> String,
) -> Result<Slot> {
    let head = &first.bytes()[..n.min(HEADER_BYTES)];
    if head.len() < HEADER_BYTES || head.iter().all(|&b| b == 0) {
        return Ok(Slot::Empty);
    }
    if &head[..8] != MAGIC {
        return Ok(Slot::Bad("no slot header".into()));
    }
    let len = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes"));
    if len > MAX_PAYLOAD_BYTES {
        return Ok(Slot::Bad(format!("payload length {len} is larger than a slot")));
    }
    let total = round_up(HEADER_BYTES + len);
    let whole = if total <= BLOCK {
        first
    } else {
        let mut whole = Aligned::new(total);
        read_at(file, whole.bytes_mut(), at).map_err(|e| Error::io(ctx(), e))?;
        whole
    };
    let payload = &whole.bytes()[HEADER_BYTES..HEADER_BYTES + len];
    if crc32fast::hash(payload) != crc {
        return Ok(Slot::Bad("CRC mismatch (a torn or damaged write)".into()));
    }
    match Manifest::decode(payload, path) {
        Ok(m) => Ok(Slot::Valid(m)),
        Err(e) => Ok(Slot::Bad(e.to_string())),
    }
}

/// Read both slots through `file`.
pub(crate) fn read(file: &File, path: &Path) -> Result<Slots> {
    Ok(read_with_headers(file, path)?.0)
}

/// [`read`], with each slot's header.
pub(crate) fn read_with_headers(file: &File, path: &Path) -> Result<(Slots, [SlotHeader; 2])> {
    let (a, ha) = read_slot(file, path, 0)?;
    let (b, hb) = read_slot(file, path, 1)?;
    Ok((Slots([a, b]), [ha, hb]))
}

/// The current manifest of the lock file at `path`, read without the lock (readers,
/// `verify`, `status`): `None` if the file or a valid slot does not exist.
pub(crate) fn read_unlocked(path: &Path) -> Result<Option<Manifest>> {
    let file = match open(path, false, false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening lock file {}", path.display()), e)),
    };
    Ok(read(&file, path)?.into_current(path)?.map(|(_, m)| m))
}

/// Write `m` into slot `index` and make it durable. The caller holds the lock and has
/// checked that `index` is not the current slot. `unsynced`: a failpoint between the
/// write and its fdatasync. Returns the header written.
pub(crate) fn write(
    file: &File,
    path: &Path,
    index: usize,
    m: &Manifest,
    unsynced: Option<crate::failpoint::Point>,
) -> Result<SlotHeader> {
    let payload = m.encode();
    // the header stores the length in 32 bits; a slot holds far less anyway
    let len = u32::try_from(payload.len()).ok().filter(|_| payload.len() <= MAX_PAYLOAD_BYTES);
    let Some(len) = len else {
        return Err(Error::InvalidArgument(format!(
            "the manifest of {} would be {} bytes, more than its slot holds ({MAX_PAYLOAD_BYTES}): retire journals \
             that are no longer used (`tributary retire`)",
            path.display(),
            payload.len()
        )));
    };
    let mut buf = Aligned::new(round_up(HEADER_BYTES + payload.len()));
    let b = buf.bytes_mut();
    b[..8].copy_from_slice(MAGIC);
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b[12..16].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    b[HEADER_BYTES..HEADER_BYTES + payload.len()].copy_from_slice(&payload);
    let ctx = |what: &str| format!("{what} manifest slot {} of {}", ["A", "B"][index], path.display());
    fault::check(fault::Step::ManifestSlotWrite).map_err(|e| Error::io(ctx("writing"), e))?;
    file.write_all_at(buf.bytes(), index as u64 * SLOT_BYTES).map_err(|e| Error::io(ctx("writing"), e))?;
    if let Some(point) = unsynced {
        crate::failpoint::hit(point);
    }
    fault::check(fault::Step::ManifestSlotFdatasync).map_err(|e| Error::io(ctx("fdatasync after writing"), e))?;
    file.sync_data().map_err(|e| Error::io(ctx("fdatasync after writing"), e))?;
    let mut header = [0u8; HEADER_BYTES];
    header.copy_from_slice(&buf.bytes()[..HEADER_BYTES]);
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_newer_slot_falls_back_to_the_older_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let f = open(&p, true, true).unwrap();
        f.set_len(LOCK_FILE_BYTES).unwrap();
        assert!(read(&f, &p).unwrap().into_current(&p).unwrap().is_none(), "a fresh file has no manifest");
        let mut m = Manifest::new_adopting(0, 0, 0, 1).unwrap();
        write(&f, &p, 0, &m, None).unwrap();
        m.epoch = 2;
        write(&f, &p, 1, &m, None).unwrap();
        assert_eq!(read(&f, &p).unwrap().current().unwrap().1.epoch, 2);
        // Tear slot B's payload (through a buffered descriptor: O_DIRECT needs whole
        // blocks): slot A (epoch 1) is the manifest again.
        let damage = OpenOptions::new().write(true).open(&p).unwrap();
        damage.write_all_at(b"X", SLOT_BYTES + HEADER_BYTES as u64 + 3).unwrap();
        damage.sync_all().unwrap();
        let slots = read(&f, &p).unwrap();
        assert!(matches!(slots.0[1], Slot::Bad(_)), "{:?}", slots.0[1]);
        assert_eq!(slots.current().unwrap(), (0, &Manifest { epoch: 1, ..m.clone() }));
        // Both damaged: an error, never "no manifest".
        damage.write_all_at(b"X", HEADER_BYTES as u64 + 3).unwrap();
        damage.sync_all().unwrap();
        let err = read(&f, &p).unwrap().into_current(&p).unwrap_err();
        assert!(matches!(err, Error::CorruptManifest { .. }), "{err}");
    }

    #[test]
    fn a_long_manifest_spans_several_blocks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let f = open(&p, true, true).unwrap();
        let mut m = Manifest::new_adopting(0, 0, 0, 1).unwrap();
        for i in 0..10_000u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_le_bytes());
            let id = crate::journal::JournalId(id);
            m.watermarks.insert(
                id,
                crate::target::manifest::Watermark {
                    journal_id: id,
                    last_seq: u64::from(i) * 1_000_003,
                    crc: i,
                    chain: 1,
                    anchor: 0,
                },
            );
        }
        write(&f, &p, 1, &m, None).unwrap();
        assert_eq!(read(&f, &p).unwrap().current().unwrap(), (1, &m), "10,000 watermarks fit one slot");
    }
}
