//! The ack file: a writer's record of the lines it was told are durable.
//!
//! One record per acknowledged line, `<index> <seq>\n` (the line's index in its writer,
//! 1-based, and the seq the journal returned), ASCII decimal. A writer appends the
//! records of a batch with one `write(2)` once the batch's append returned, so a SIGKILL
//! leaves whole batches; a reader counts only records that end in `\n` (a torn last
//! record is not an acknowledgement) and skips any that do not parse.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

/// `(line index, seq)` records of the ack file at `path` (none if it cannot be read).
pub fn read(path: &Path) -> Vec<(u64, u64)> {
    let mut bytes = Vec::new();
    if File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).is_err() {
        return Vec::new();
    }
    parse(&bytes)
}

/// The complete records of an ack file's bytes.
pub fn parse(bytes: &[u8]) -> Vec<(u64, u64)> {
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(p) => &bytes[..=p],
        None => return Vec::new(),
    };
    complete
        .split(|&b| b == b'\n')
        .filter_map(|l| {
            let s = std::str::from_utf8(l).ok()?;
            let (i, seq) = s.split_once(' ')?;
            Some((i.parse().ok()?, seq.parse().ok()?))
        })
        .collect()
}

/// Highest acknowledged line index in the ack file at `path` (0 = none).
pub fn last_index(path: &Path) -> u64 {
    read(path).iter().map(|(i, _)| *i).max().unwrap_or(0)
}

/// Highest acknowledged seq in the ack file at `path` (0 = none).
pub fn last_seq(path: &Path) -> u64 {
    read(path).iter().map(|(_, s)| *s).max().unwrap_or(0)
}

/// An ack file open for appending.
pub struct AckFile(File);

impl AckFile {
    /// Open (create) the ack file at `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<AckFile> {
        OpenOptions::new().create(true).append(true).open(path).map(AckFile)
    }

    /// Record one acknowledged batch: its `(index, seq)` pairs, in one `write(2)`.
    pub fn record(&mut self, acked: &[(u64, u64)]) -> std::io::Result<()> {
        let mut rec = String::new();
        for (i, seq) in acked {
            rec.push_str(&format!("{i} {seq}\n"));
        }
        self.0.write_all(rec.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_record_is_not_an_acknowledgement() {
        assert_eq!(parse(b"1 1\n2 2\n3 "), vec![(1, 1), (2, 2)]);
        // `3 17\n` cut after `3 1` would name the wrong seq: it does not count either
        assert_eq!(parse(b"1 1\n2 2\n3 1"), vec![(1, 1), (2, 2)]);
        assert_eq!(parse(b"7 9"), vec![]);
        assert_eq!(parse(b""), vec![]);
    }

    #[test]
    fn records_that_do_not_parse_are_skipped() {
        assert_eq!(parse(b"1 1\nx y\n\n2 5\n3\n"), vec![(1, 1), (2, 5)]);
    }

    #[test]
    fn recorded_batches_read_back_and_give_the_last_index_and_seq() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("w1.ack");
        assert_eq!((read(&p), last_index(&p), last_seq(&p)), (vec![], 0, 0));
        let mut a = AckFile::open(&p).unwrap();
        a.record(&[(1, 4), (2, 5)]).unwrap();
        a.record(&[(3, 9)]).unwrap();
        drop(a);
        let mut a = AckFile::open(&p).unwrap(); // appends, never truncates
        a.record(&[(4, 10)]).unwrap();
        assert_eq!(read(&p), vec![(1, 4), (2, 5), (3, 9), (4, 10)]);
        assert_eq!((last_index(&p), last_seq(&p)), (4, 10));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "1 4\n2 5\n3 9\n4 10\n");
    }
}
