//! The run row format: how a journal stores consecutive lines in one row of `runs`,
//! written ([`RunBuf`]) and read ([`LineTable`], [`checked_data_hash`]) in one place.
//!
//! A run is `data` (the lines, each followed by `\n`), `line_meta` (per line a
//! little-endian u32 length then u32 CRC32 of the line without its `\n`) and
//! `run_crc` (CRC32 of `line_meta` followed by `data`, so a drain checks a whole run
//! in one pass). Keeps: what [`RunBuf`] writes, [`LineTable`] and
//! [`checked_data_hash`] read back exactly (tested below).

use crate::error::{Error, LineProblem, Result};

/// Default maximum line length: 1 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// The highest line limit a journal accepts: `SQLite` stores at most 10^9 bytes in a
/// row (`SQLITE_MAX_LENGTH`), and a line longer than a run is a row of its own with
/// its `\n` and line table (a limit up to `u32::MAX` was accepted, and a line of 10^9
/// bytes then failed as an `sqlite` "string or blob too big": an outside tester).
pub const MAX_LINE_BYTES_LIMIT: usize = 999_999_000;

/// Split a request's lines into runs of at most this much data (a single longer line
/// is a run of its own): bounds the memory a drain needs per row.
pub(super) const RUN_MAX_BYTES: usize = 1 << 20;
/// Bytes of `line_meta` per line: little-endian u32 length, then u32 CRC32.
const LINE_META_BYTES: usize = 8;

/// CRC32 of a line's bytes (without the `\n`), as stored per row and in watermarks.
#[must_use]
pub fn line_crc(line: &[u8]) -> u32 {
    crc32fast::hash(line)
}

/// Check a line against the rules: no `\n`, at most `max` bytes.
///
/// # Errors
/// [`Error::InvalidLine`] naming `index` and the problem.
pub fn validate_line(index: usize, line: &[u8], max: usize) -> Result<()> {
    if line.len() > max {
        return Err(Error::InvalidLine { index, problem: LineProblem::TooLong { len: line.len(), max } });
    }
    if let Some(at) = memchr::memchr(b'\n', line) {
        return Err(Error::InvalidLine { index, problem: LineProblem::ContainsNewline { at } });
    }
    Ok(())
}

/// Lines in one buffer, each followed by `\n` (a run's `data` as it is stored), with
/// each line's end: a batch of many short lines is one allocation and, into a run, one
/// copy.
#[derive(Default, Clone)]
pub(super) struct Lines {
    data: Vec<u8>,
    /// Each line's end in `data` (its `\n` is there).
    ends: Vec<usize>,
}

impl Lines {
    /// The lines given, copied into one buffer.
    pub(super) fn of<L: AsRef<[u8]>>(lines: &[L]) -> Lines {
        lines.iter().map(AsRef::as_ref).collect()
    }

    /// Add a line (validated: no `\n` in it).
    pub(super) fn push(&mut self, line: &[u8]) {
        self.data.extend_from_slice(line);
        self.ends.push(self.data.len());
        self.data.push(b'\n');
    }

    /// Room for one more line of `len` bytes, or `Err` when the memory cannot be had
    /// (the buffer's doubling first, then just what the line needs).
    pub(super) fn try_reserve(&mut self, len: usize) -> Result<(), std::collections::TryReserveError> {
        let bytes = len.saturating_add(1);
        self.data.try_reserve(bytes).or_else(|_| self.data.try_reserve_exact(bytes))?;
        self.ends.try_reserve(1)
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of the lines with their `\n`s (a run's `data` size).
    pub(super) fn data_len(&self) -> usize {
        self.data.len()
    }

    /// Each line, without its `\n`, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let line = &self.data[start..end];
            start = end + 1;
            line
        })
    }

    /// The first `n` lines (all when there are fewer), taken out; the rest stay.
    pub(super) fn take_front(&mut self, n: usize) -> Lines {
        if n >= self.len() {
            return std::mem::take(self);
        }
        let cut = n.checked_sub(1).map_or(0, |last| self.ends[last] + 1);
        let rest = Lines { data: self.data.split_off(cut), ends: self.ends[n..].iter().map(|e| e - cut).collect() };
        self.ends.truncate(n);
        std::mem::replace(self, rest)
    }

    /// Add `later`'s lines after these.
    pub(super) fn extend(&mut self, later: &Lines) {
        let shift = self.data.len();
        self.data.extend_from_slice(&later.data);
        self.ends.extend(later.ends.iter().map(|e| e + shift));
    }

    /// Empty, keeping the buffers' capacity.
    pub(super) fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }
}

impl<'a> FromIterator<&'a [u8]> for Lines {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(lines: I) -> Lines {
        let mut all = Lines::default();
        for line in lines {
            all.push(line);
        }
        all
    }
}

/// A run being built: lines each followed by `\n`, and their (len, crc) pairs.
#[derive(Default)]
pub(super) struct RunBuf {
    pub(super) first_seq: u64,
    pub(super) count: u64,
    pub(super) end_bytes: u64,
    pub(super) meta: Vec<u8>,
    pub(super) data: Vec<u8>,
}

impl RunBuf {
    /// CRC32 of `line_meta` followed by `data`: lets a drain check a whole run with one
    /// pass over its bytes instead of a CRC call per (short) line.
    pub(super) fn run_crc(&self) -> i64 {
        let mut h = crc32fast::Hasher::new();
        h.update(&self.meta);
        h.update(&self.data);
        i64::from(h.finalize())
    }

    /// Append one line (its length was validated against the line limit, which is
    /// far below `u32::MAX`).
    pub(super) fn push(&mut self, line: &[u8]) {
        self.push_meta(line);
        self.data.extend_from_slice(line);
        self.data.push(b'\n');
        self.count += 1;
    }

    /// Room for `bytes` of lines (each `\n` counted) and `lines` line-table entries, or
    /// an `io` error (ENOMEM) when the memory cannot be had: a commit that fails, is
    /// retried and reported, where the allocation aborted the process (an outside
    /// tester: a flush under an address-space limit).
    pub(super) fn try_reserve(&mut self, bytes: usize, lines: usize) -> crate::error::Result<()> {
        let out_of_memory = |e: std::collections::TryReserveError| {
            crate::error::Error::io(
                format!("building a run of {bytes} bytes to commit: this process is out of memory ({e})"),
                std::io::Error::from_raw_os_error(libc::ENOMEM),
            )
        };
        self.data.try_reserve_exact(bytes).map_err(out_of_memory)?;
        self.meta.try_reserve_exact(lines.saturating_mul(LINE_META_BYTES)).map_err(out_of_memory)
    }

    /// Append every line of `lines` (validated): their bytes in one copy.
    pub(super) fn push_lines(&mut self, lines: &Lines) {
        self.meta.reserve(lines.len() * LINE_META_BYTES);
        for line in lines.iter() {
            self.push_meta(line);
        }
        self.data.extend_from_slice(&lines.data);
        self.count += lines.len() as u64;
    }

    /// A line's `(len, crc)` pair in `line_meta`.
    fn push_meta(&mut self, line: &[u8]) {
        let len = u32::try_from(line.len()).expect("a validated line is shorter than 4 GiB");
        self.meta.extend_from_slice(&len.to_le_bytes());
        self.meta.extend_from_slice(&line_crc(line).to_le_bytes());
    }

    /// Payload bytes (without the `\n`s).
    pub(super) fn payload_bytes(&self) -> u64 {
        self.data.len() as u64 - self.count
    }
}

/// A stored run's `line_meta`, checked against its line count.
#[derive(Clone, Copy)]
pub(super) struct LineTable<'a>(&'a [u8]);

impl<'a> LineTable<'a> {
    /// `None` when the table's size does not match `count` lines (a damaged row).
    pub(super) fn new(meta: &'a [u8], count: u64) -> Option<LineTable<'a>> {
        (meta.len() as u64 == count.checked_mul(LINE_META_BYTES as u64)?).then_some(LineTable(meta))
    }

    /// The (length, CRC32) of the run's `k`-th line (`k < count`).
    pub(super) fn get(&self, k: u64) -> (u32, u32) {
        let at = usize::try_from(k).expect("k < count, and the table is in memory") * LINE_META_BYTES;
        let m = &self.0[at..at + LINE_META_BYTES];
        let word = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
        (word(&m[..4]), word(&m[4..]))
    }
}

/// One CRC pass over a run checks its line table and every line in it (a CRC call per
/// ~100-byte line was a tenth of a drain's time): when `stored` matches, the CRC of
/// `data` alone is returned, to feed the target's running CRC. `None` (no run CRC —
/// a row from before it existed — or a mismatch): the caller checks each line alone,
/// which also names the bad one.
pub(super) fn checked_data_hash(meta: &[u8], data: &[u8], stored: Option<i64>) -> Option<crc32fast::Hasher> {
    let stored = stored?;
    let mut whole = crc32fast::Hasher::new();
    whole.update(meta);
    let mut data_hash = crc32fast::Hasher::new();
    data_hash.update(data);
    whole.combine(&data_hash);
    (i64::from(whole.finalize()) == stored).then_some(data_hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_front_splits_lines_in_order_and_keeps_the_rest_usable() {
        let words: [&[u8]; 4] = [b"a", b"", b"ccc", b"dd"];
        for n in 0..=5 {
            let mut rest = Lines::of(&words);
            let front = rest.take_front(n);
            let k = n.min(words.len());
            assert_eq!(front.iter().collect::<Vec<_>>(), words[..k], "front of {n}");
            assert_eq!(rest.iter().collect::<Vec<_>>(), words[k..], "rest after {n}");
            assert_eq!(front.data_len() + rest.data_len(), Lines::of(&words).data_len());
            rest.push(b"e");
            assert_eq!(rest.iter().last(), Some(&b"e"[..]));
        }
    }

    fn run_of(lines: &[&[u8]]) -> RunBuf {
        let mut run = RunBuf::default();
        for l in lines {
            run.push(l);
        }
        run
    }

    /// A batch handed over in one buffer becomes the same run as its lines pushed one
    /// by one (what the drain reads back), and `extend` keeps the order.
    #[test]
    fn lines_in_one_buffer_make_the_same_run_as_lines_pushed_one_by_one() {
        let first: [&[u8]; 3] = [b"alpha", b"", b"gamma gamma"];
        let mut lines = Lines::of(&first);
        lines.extend(&Lines::of(&[b"delta".as_slice()]));
        let all: Vec<&[u8]> = lines.iter().collect();
        assert_eq!(all, [b"alpha".as_slice(), b"", b"gamma gamma", b"delta"]);
        assert_eq!((lines.len(), lines.data_len()), (4, 5 + 11 + 5 + 4));
        let mut whole = RunBuf::default();
        whole.push_lines(&lines);
        let one_by_one = run_of(&all);
        assert_eq!(whole.data, one_by_one.data);
        assert_eq!(whole.meta, one_by_one.meta);
        assert_eq!(whole.count, 4);
        assert_eq!(whole.run_crc(), one_by_one.run_crc());
        lines.clear();
        assert!(lines.is_empty() && lines.iter().next().is_none());
    }

    #[test]
    fn what_a_run_writes_its_reader_reads_back() {
        let lines: [&[u8]; 3] = [b"one", b"", b"three \xff"];
        let run = run_of(&lines);
        assert_eq!(run.data, b"one\n\nthree \xff\n");
        assert_eq!(run.payload_bytes(), 3 + 7);
        let table = LineTable::new(&run.meta, run.count).expect("a table of 3 lines");
        for (k, line) in lines.iter().enumerate() {
            assert_eq!(table.get(k as u64), (u32::try_from(line.len()).unwrap(), line_crc(line)));
        }
        let hash = checked_data_hash(&run.meta, &run.data, Some(run.run_crc())).expect("the run CRC matches");
        assert_eq!(hash.finalize(), crc32fast::hash(&run.data));
    }

    #[test]
    fn a_damaged_run_is_never_read_as_good() {
        let run = run_of(&[b"a", b"b"]);
        assert!(LineTable::new(&run.meta, 3).is_none(), "a table too short for its count");
        assert!(LineTable::new(&run.meta[..15], 2).is_none(), "a truncated table");
        let mut data = run.data.clone();
        data[0] = b'x';
        assert!(checked_data_hash(&run.meta, &data, Some(run.run_crc())).is_none(), "changed data");
        assert!(checked_data_hash(&run.meta, &run.data, None).is_none(), "no stored CRC: check each line");
    }

    #[test]
    fn lines_are_checked_for_newlines_and_length() {
        assert!(validate_line(0, b"fine", 4).is_ok());
        assert!(matches!(
            validate_line(2, b"12345", 4),
            Err(Error::InvalidLine { index: 2, problem: LineProblem::TooLong { len: 5, max: 4 } })
        ));
        assert!(matches!(
            validate_line(1, b"a\nb", 10),
            Err(Error::InvalidLine { index: 1, problem: LineProblem::ContainsNewline { at: 1 } })
        ));
    }
}
