//! The manifest's home since format version 2: two slots inside the sidecar's lock
//! file (docs/design.md "The manifest, format version 2").
//!
//! Invariant: a commit overwrites only the slot that does not hold the current
//! manifest — or, as a delta (format version 3, docs/design.md "Manifest deltas"),
//! only blocks past the current slot's chain — and is durable (fdatasync) before it
//! returns, so the valid slot with the higher epoch (its base with its chain applied)
//! is always the last commit that returned, or a later one. Slots are
//! read and written through one file descriptor opened with `O_DIRECT` where the
//! filesystem allows it (a FUSE client's cache must not answer), in 4 KiB-aligned
//! blocks.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::fault;
use crate::target::manifest::{Manifest, DELTA_FORMAT_VERSION, FORMAT_VERSION};

/// Bytes of one slot; the lock file is two of them (sparse).
const SLOT_LEN: usize = 2 << 20;
pub(crate) const SLOT_BYTES: u64 = SLOT_LEN as u64;
pub(crate) const LOCK_FILE_BYTES: u64 = 2 * SLOT_BYTES;
const HEADER_BYTES: usize = 16;
const MAGIC: &[u8; 8] = b"TRIBSLOT";
/// `O_DIRECT` alignment of buffers, offsets and lengths.
pub(crate) const BLOCK: usize = 4096;
/// The longest manifest text a slot holds.
pub(crate) const MAX_PAYLOAD_BYTES: usize = SLOT_LEN - HEADER_BYTES;

/// A delta record's magic (docs/design.md "Manifest deltas, format version 3").
const DELTA_MAGIC: &[u8; 8] = b"TRIBDLTA";
/// A delta record's header: magic, body length, body CRC, `prev`, 4 zero bytes.
const DELTA_HEADER_BYTES: usize = 24;
/// The most delta records a chain holds before a commit snapshots.
pub(crate) const MAX_CHAIN_RECORDS: u32 = 64;
/// Bytes of the chain read at a time.
const CHAIN_READ_BYTES: usize = 64 << 10;

/// Where a version-3 slot's chain of deltas ends, and what the next record must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chain {
    /// Offset in the slot where the next record goes (a block boundary).
    pub(crate) end: u64,
    /// The CRC the next record's `prev` must hold: the last record's body CRC, or the
    /// base's payload CRC.
    pub(crate) last_crc: u32,
    /// Records in the chain, and the blocks they take, in bytes.
    pub(crate) records: u32,
    pub(crate) bytes: u64,
    /// The blocks the base takes (header included), in bytes.
    pub(crate) base_bytes: u64,
}

impl Chain {
    /// Whether a record of `body_len` bytes may be appended: it fits before the slot's
    /// end and under the chain's record bound; unless `always`, also under the
    /// base's size (a full read costs at most twice the base) and in fewer blocks
    /// than a new base would take.
    pub(crate) fn takes(&self, body_len: usize, always: bool) -> bool {
        let len = round_up(DELTA_HEADER_BYTES + body_len) as u64;
        let room = self.end + len <= SLOT_BYTES && self.records < MAX_CHAIN_RECORDS;
        room && (always || (self.bytes + len <= self.base_bytes && len < self.base_bytes))
    }
}

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
    /// The manifest, and for a version-3 slot where its chain of deltas ends.
    Valid(Manifest, Option<Chain>),
}

/// Both slots of a lock file.
#[derive(Debug)]
pub(crate) struct Slots(pub [Slot; 2]);

impl Slots {
    /// The current manifest (the valid slot with the higher epoch) and its slot index.
    pub(crate) fn current(&self) -> Option<(usize, &Manifest)> {
        let valid = |i: usize| match &self.0[i] {
            Slot::Valid(m, _) => Some((i, m)),
            _ => None,
        };
        match (valid(0), valid(1)) {
            (Some(a), Some(b)) => Some(if b.1.epoch > a.1.epoch { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// The current slot's manifest and where its chain of deltas ends (a version-3 base);
    /// `Ok(None)` when both slots are empty (never written); an error when something
    /// was written but nothing valid is left.
    pub(crate) fn into_current_with_chain(self, path: &Path) -> Result<Option<(usize, Manifest, Option<Chain>)>> {
        let index = self.current().map(|(i, _)| i);
        if let Some(i) = index {
            let [a, b] = self.0;
            let slot = if i == 0 { a } else { b };
            let Slot::Valid(m, chain) = slot else { unreachable!("current() returned a valid slot") };
            return Ok(Some((i, m, chain)));
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
    open_as(path, OpenOptions::new().read(true).write(write).create(create).truncate(false), direct)
}

/// A new file at `path` (never one that exists: `O_EXCL`), read-write, 0600, opened as
/// [`open`] opens a lock file (stage files, `target::stage`).
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    // Created without O_DIRECT, then opened with it: a filesystem that refuses
    // O_DIRECT may do so only after creating the file, and O_EXCL would then refuse
    // the retry.
    drop(open_as(path, OpenOptions::new().read(true).write(true).create_new(true), false)?);
    open_with(path, true, false, true)
}

/// `options` (mode 0600, never through a symlink) with `O_DIRECT` unless `direct` is
/// false or the filesystem refuses it.
fn open_as(path: &Path, options: &mut OpenOptions, direct: bool) -> io::Result<File> {
    options.mode(0o600);
    let open = |direct: bool| {
        let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC | if direct { libc::O_DIRECT } else { 0 };
        options.clone().custom_flags(flags).open(path)
    };
    match open(direct) {
        Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => open(false),
        r => r,
    }
}

/// A zeroed, `BLOCK`-aligned buffer of `len` bytes (a multiple of `BLOCK`), carved
/// out of a slightly larger vector: no allocator tricks, no unsafe.
pub(crate) struct Aligned {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    pub(crate) fn new(len: usize) -> Aligned {
        debug_assert!(len.is_multiple_of(BLOCK));
        let raw = vec![0u8; len + BLOCK];
        let start = raw.as_ptr().align_offset(BLOCK);
        Aligned { raw, start, len }
    }
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

pub(crate) fn round_up(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

/// Read up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
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
    match Manifest::decode_slot(payload, path) {
        Ok((2, m)) => Ok(Slot::Valid(m, None)),
        Ok((_, m)) => {
            let chain = Chain { end: total as u64, last_crc: crc, records: 0, bytes: 0, base_bytes: total as u64 };
            let (m, chain) = read_chain(file, at, m, chain, path).map_err(|e| Error::io(ctx(), e))?;
            Ok(Slot::Valid(m, Some(chain)))
        }
        Err(e) => Ok(Slot::Bad(e.to_string())),
    }
}

/// Apply the chain of delta records that follows a version-3 base (the slot starts at
/// `at`), in order, up to the first record that is not the chain's next one.
fn read_chain(file: &File, at: u64, mut m: Manifest, mut chain: Chain, path: &Path) -> io::Result<(Manifest, Chain)> {
    // Offsets inside the slot (2 MiB): `pos` is where the next record would start;
    // `buf` holds the slot's bytes from `buf_at` on (`buf_len` of them).
    let mut pos = usize::try_from(chain.end).unwrap_or(SLOT_LEN);
    let mut buf = Aligned::new(BLOCK);
    let (mut buf_at, mut buf_len) = (0usize, 0usize);
    let read_from = |from: usize, need: usize, buf: &mut Aligned| -> io::Result<usize> {
        *buf = Aligned::new(round_up(need.min(SLOT_LEN - from)));
        read_at(file, buf.bytes_mut(), at + from as u64)
    };
    while pos + BLOCK <= SLOT_LEN {
        if pos < buf_at || pos + DELTA_HEADER_BYTES > buf_at + buf_len {
            buf_len = read_from(pos, CHAIN_READ_BYTES, &mut buf)?;
            buf_at = pos;
        }
        let Some((len, crc, prev)) = delta_header(&buf.bytes()[pos - buf_at..buf_len.max(pos - buf_at)]) else {
            break;
        };
        let total = round_up(DELTA_HEADER_BYTES + len);
        if prev != chain.last_crc || pos + total > SLOT_LEN {
            break;
        }
        if pos + DELTA_HEADER_BYTES + len > buf_at + buf_len {
            buf_len = read_from(pos, total.max(CHAIN_READ_BYTES), &mut buf)?;
            buf_at = pos;
            if DELTA_HEADER_BYTES + len > buf_len {
                break; // the file ends inside the record
            }
        }
        let body = &buf.bytes()[pos - buf_at + DELTA_HEADER_BYTES..pos - buf_at + DELTA_HEADER_BYTES + len];
        if crc32fast::hash(body) != crc {
            break; // torn
        }
        let Ok(next) = m.apply_delta(body, path) else { break };
        m = next;
        pos += total;
        chain.end = pos as u64;
        chain.last_crc = crc;
        chain.records += 1;
        chain.bytes += total as u64;
    }
    Ok((m, chain))
}

/// Whether the block where `chain` would continue in slot `index` does not hold the
/// chain's next record: nobody appended a delta since `chain` was seen.
pub(crate) fn chain_end_untouched(file: &File, path: &Path, index: usize, chain: &Chain) -> Result<bool> {
    if chain.end + BLOCK as u64 > SLOT_BYTES {
        return Ok(true);
    }
    let mut block = Aligned::new(BLOCK);
    let n = read_at(file, block.bytes_mut(), index as u64 * SLOT_BYTES + chain.end)
        .map_err(|e| Error::io(format!("reading manifest slot {} of {}", ["A", "B"][index], path.display()), e))?;
    let appended = delta_header(&block.bytes()[..n]).is_some_and(|(_, _, prev)| prev == chain.last_crc);
    Ok(!appended)
}

/// A delta record's header at the start of `head`: (body length, body CRC, `prev`);
/// `None` when `head` does not start with one.
fn delta_header(head: &[u8]) -> Option<(usize, u32, u32)> {
    if head.len() < DELTA_HEADER_BYTES || &head[..8] != DELTA_MAGIC {
        return None;
    }
    let word = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
    Some((word(8) as usize, word(12), word(16)))
}

/// Append the delta record `body` at the end of `chain` in slot `index` and make it
/// durable. The caller holds the lock, has checked that `index` is the current slot
/// and that `chain` is its chain as it stands, and that the chain takes the record.
/// Returns the chain with it.
pub(crate) fn append_delta(
    file: &File,
    path: &Path,
    index: usize,
    chain: &Chain,
    body: &[u8],
    unsynced: Option<crate::failpoint::Point>,
) -> Result<Chain> {
    let len = u32::try_from(body.len()).map_err(|_| Error::InvalidArgument("a manifest delta over 4 GiB".into()))?;
    let total = round_up(DELTA_HEADER_BYTES + body.len());
    let mut buf = Aligned::new(total);
    let crc = crc32fast::hash(body);
    let b = buf.bytes_mut();
    b[..8].copy_from_slice(DELTA_MAGIC);
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b[16..20].copy_from_slice(&chain.last_crc.to_le_bytes());
    b[DELTA_HEADER_BYTES..DELTA_HEADER_BYTES + body.len()].copy_from_slice(body);
    let what = format!("a delta in manifest slot {} of {}", ["A", "B"][index], path.display());
    write_durably(file, &buf, index as u64 * SLOT_BYTES + chain.end, &what, unsynced)?;
    Ok(Chain {
        end: chain.end + total as u64,
        last_crc: crc,
        records: chain.records + 1,
        bytes: chain.bytes + total as u64,
        base_bytes: chain.base_bytes,
    })
}

/// Read both slots through `file` (once: without the lock, [`read_unlocked`]).
#[cfg(test)]
pub(crate) fn read(file: &File, path: &Path) -> Result<Slots> {
    Ok(read_with_headers(file, path)?.0)
}

/// [`read`], with each slot's header.
pub(crate) fn read_with_headers(file: &File, path: &Path) -> Result<(Slots, [SlotHeader; 2])> {
    let (a, ha) = read_slot(file, path, 0)?;
    let (b, hb) = read_slot(file, path, 1)?;
    Ok((Slots([a, b]), [ha, hb]))
}

/// Reads of the slots a lock-free reader makes before it gives up on one that commits
/// keep changing under (each commit is at least a write and an fdatasync, far slower
/// than the few block reads of one attempt: this is never reached in practice).
const UNLOCKED_READ_ATTEMPTS: usize = 1000;

/// The current manifest of the lock file at `path`, read without the lock (readers,
/// `verify`, `status`, a stager): `None` if the file or a valid slot does not exist.
///
/// Commits write the slots meanwhile, so a read counts only if both slots' headers are
/// unchanged after it: slot A unchanged from its read to its re-read and slot B
/// likewise, both were as read at one moment (B's read happens inside A's interval).
/// So the manifest returned is one that was current at that moment — never older
/// than one an earlier call returned. Without it, A read before one commit and B torn
/// by the next gave the older A (a reader then saw its generation or committed length
/// go back), and A and B both torn gave `corrupt_manifest`.
pub(crate) fn read_unlocked(path: &Path) -> Result<Option<Manifest>> {
    Ok(read_unlocked_with_format(path)?.map(|(m, _)| m))
}

/// [`read_unlocked`], with the manifest's format: 3 when the current slot is a
/// version-3 base (it has a chain of deltas), else 2.
pub(crate) fn read_unlocked_with_format(path: &Path) -> Result<Option<(Manifest, u32)>> {
    let file = match open(path, false, false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // A reader, `verify` or `status` run as another user than the compactors
        // (found by an outside tester: a bare "Permission denied").
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(Error::io(
                format!(
                    "opening lock file {} (it holds the target's manifest, which readers, `tail`, `verify` and \
                     `status` read): it is readable only by the compactors' user (mode 0600: a user who may open \
                     it can hold a lock on it and stall every compactor). Run this as that user, or grant read \
                     access deliberately (`setfacl -m u:USER:r`, or a group with `chmod g+r`) to users you trust \
                     that much",
                    path.display()
                ),
                e,
            ))
        }
        Err(e) => return Err(Error::io(format!("opening lock file {}", path.display()), e)),
    };
    for attempt in 0..UNLOCKED_READ_ATTEMPTS {
        // After a few torn reads in a row, back off (up to 10 ms): a large manifest
        // read over a slow share must not be retried in a tight loop.
        if attempt >= 4 {
            let pause = 1u64 << (attempt - 4).min(13);
            std::thread::sleep(std::time::Duration::from_micros(pause.min(10_000)));
        }
        let (slots, headers) = read_with_headers(&file, path)?;
        if [read_header(&file, path, 0)?, read_header(&file, path, 1)?] == headers {
            let format = |chain: &Option<Chain>| if chain.is_some() { DELTA_FORMAT_VERSION } else { FORMAT_VERSION };
            return Ok(slots.into_current_with_chain(path)?.map(|(_, m, chain)| (m, format(&chain))));
        }
    }
    Err(Error::io(
        format!("reading the manifest in {} without its lock", path.display()),
        io::Error::new(
            io::ErrorKind::Interrupted,
            format!("its slots changed during each of {UNLOCKED_READ_ATTEMPTS} reads in a row; try again"),
        ),
    ))
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
    Ok(write_as(file, path, index, m, crate::target::manifest::FORMAT_VERSION, unsynced)?.0)
}

/// [`write`] as a base of `version` 2 or 3; for version 3 also the (empty) chain that
/// may follow it.
pub(crate) fn write_as(
    file: &File,
    path: &Path,
    index: usize,
    m: &Manifest,
    version: u32,
    unsynced: Option<crate::failpoint::Point>,
) -> Result<(SlotHeader, Option<Chain>)> {
    let payload = m.encode_as(version);
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
    let crc = crc32fast::hash(&payload);
    let mut buf = Aligned::new(round_up(HEADER_BYTES + payload.len()));
    let b = buf.bytes_mut();
    b[..8].copy_from_slice(MAGIC);
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b[HEADER_BYTES..HEADER_BYTES + payload.len()].copy_from_slice(&payload);
    let what = format!("manifest slot {} of {}", ["A", "B"][index], path.display());
    write_durably(file, &buf, index as u64 * SLOT_BYTES, &what, unsynced)?;
    let mut header = [0u8; HEADER_BYTES];
    header.copy_from_slice(&buf.bytes()[..HEADER_BYTES]);
    let total = buf.bytes().len() as u64;
    let chain = (version >= crate::target::manifest::DELTA_FORMAT_VERSION).then_some(Chain {
        end: total,
        last_crc: crc,
        records: 0,
        bytes: 0,
        base_bytes: total,
    });
    Ok((header, chain))
}

/// The one way a commit reaches the lock file: `buf` written at `offset`, then
/// fdatasync (`unsynced`: a failpoint between the two); `what` names it in errors.
fn write_durably(
    file: &File,
    buf: &Aligned,
    offset: u64,
    what: &str,
    unsynced: Option<crate::failpoint::Point>,
) -> Result<()> {
    // The lock file is sparse (2 MiB, written in place): a full disk can refuse a slot
    // write's blocks. Say so, and that nothing was committed (an outside tester got a
    // bare "No space left on device").
    let failed = |e: std::io::Error| {
        let full = matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT));
        let context = if full {
            format!(
                "writing {what}: the target's disk is full, so this commit did not happen (the manifest before it, \
                 if any, stands; nothing is lost). Free space on that disk, then run the command again (a daemon \
                 carries on by itself)"
            )
        } else {
            format!("writing {what}")
        };
        Error::io(context, e)
    };
    fault::check(fault::Step::ManifestSlotWrite).map_err(failed)?;
    file.write_all_at(buf.bytes(), offset).map_err(failed)?;
    if let Some(point) = unsynced {
        crate::failpoint::hit(point);
    }
    let synced = |e| Error::io(format!("fdatasync after writing {what}"), e);
    fault::check(fault::Step::ManifestSlotFdatasync).map_err(synced)?;
    file.sync_data().map_err(synced)
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
        assert!(read(&f, &p).unwrap().into_current_with_chain(&p).unwrap().is_none(), "a fresh file has no manifest");
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
        let err = read(&f, &p).unwrap().into_current_with_chain(&p).unwrap_err();
        assert!(matches!(err, Error::CorruptManifest { .. }), "{err}");
    }

    /// A version-3 base with `n` delta records after it, each moving the epoch and a
    /// watermark on; returns the manifests after each commit.
    fn chain_of(f: &File, p: &Path, records: u64, step: u64) -> (Vec<Manifest>, Chain) {
        let mut last = Manifest::new_adopting(0, 0, 0, 1).unwrap();
        let (_, chain) = write_as(f, p, 0, &last, crate::target::manifest::DELTA_FORMAT_VERSION, None).unwrap();
        let mut chain = chain.expect("a version-3 base has a chain");
        let mut all = vec![last.clone()];
        for k in 0..records {
            let mut next = last.clone();
            next.epoch += 1;
            next.committed_len += step;
            let id = crate::journal::JournalId([(k % 3) as u8; 16]);
            let w = crate::target::manifest::Watermark { journal_id: id, last_seq: k + 1, crc: 7, chain: k, anchor: 0 };
            next.watermarks.insert(id, w);
            if k == 2 {
                next.watermarks.remove(&crate::journal::JournalId([0; 16]));
            }
            assert!(chain.takes(next.encode_delta(&last).len(), true));
            chain = append_delta(f, p, 0, &chain, &next.encode_delta(&last), None).unwrap();
            all.push(next.clone());
            last = next;
        }
        (all, chain)
    }

    #[test]
    fn a_chain_of_deltas_is_applied_in_order_and_ends_at_the_first_record_that_does_not_follow() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let f = open(&p, true, true).unwrap();
        f.set_len(LOCK_FILE_BYTES).unwrap();
        let (all, chain) = chain_of(&f, &p, 5, 10);
        assert_eq!(chain.records, 5);
        let slots = read(&f, &p).unwrap();
        assert!(matches!(&slots.0[0], Slot::Valid(_, Some(c)) if *c == chain), "{:?}", slots.0[0]);
        assert_eq!(slots.current().unwrap().1, &all[5], "the base with every delta applied");
        assert!(chain_end_untouched(&f, &p, 0, &chain).unwrap());

        // The fourth record torn: the chain ends after the third.
        let block = |k: u64| chain.base_bytes + k * BLOCK as u64;
        let damage = OpenOptions::new().write(true).open(&p).unwrap();
        damage.write_all_at(b"X", block(3) + DELTA_HEADER_BYTES as u64 + 2).unwrap();
        damage.sync_all().unwrap();
        assert_eq!(read(&f, &p).unwrap().current().unwrap().1, &all[3]);
        // Records left from an earlier chain (their `prev` does not follow) where the
        // next one would go are not part of this one.
        let (again, shorter) = chain_of(&f, &p, 2, 20);
        assert_eq!(read(&f, &p).unwrap().current().unwrap().1, &again[2]);
        assert!(chain_end_untouched(&f, &p, 0, &shorter).unwrap(), "a stale record is not a continuation");
        // A new base in the other slot with a higher epoch wins over the chain.
        let mut later = all[5].clone();
        later.epoch = 100;
        write(&f, &p, 1, &later, None).unwrap();
        assert_eq!(read(&f, &p).unwrap().current().unwrap(), (1, &later));
    }

    #[test]
    fn a_chain_takes_a_record_only_while_it_is_short_and_smaller_than_a_new_base() {
        let c = Chain { end: 4096, last_crc: 0, records: 0, bytes: 0, base_bytes: 4096 };
        assert!(!c.takes(10, false), "a one-block base: a delta saves nothing");
        assert!(c.takes(10, true));
        let big = Chain { base_bytes: 40 * 4096, end: 40 * 4096, ..c };
        assert!(big.takes(5000, false));
        assert!(!Chain { bytes: 39 * 4096, ..big }.takes(5000, false), "the chain may not outgrow its base");
        assert!(!Chain { records: MAX_CHAIN_RECORDS, ..big }.takes(10, true));
        assert!(!Chain { end: SLOT_BYTES - 4096, ..big }.takes(5000, true), "past the slot's end");
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
