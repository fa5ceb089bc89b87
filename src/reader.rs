//! Committed-only reading of a target (fan-out).
//!
//! A reader never shows a byte beyond the manifest's `committed_len`, so it never sees
//! a torn or uncommitted tail, even while a drain is writing or after one crashed.
//! Its cursor is a byte offset at a line boundary that the caller can keep and reopen
//! from. Reading takes no lock: committed bytes never change.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::manifest::{Manifest, Sidecar};

const READ_CHUNK: usize = 256 << 10;

/// Reads committed lines of one target from a byte offset.
#[derive(Debug)]
pub struct Reader {
    target: PathBuf,
    sidecar: Sidecar,
    file: Option<File>,
    /// Offset of the next line to return.
    offset: u64,
    /// Committed length as of the last manifest read.
    committed_len: u64,
    /// Bytes read ahead from `offset`.
    buf: Vec<u8>,
    buf_pos: usize,
}

impl Reader {
    /// Open a reader at `offset` (0, or just after a `\n` of the committed part).
    pub fn open(target: impl AsRef<Path>, offset: u64) -> Result<Reader> {
        let target = target.as_ref().to_path_buf();
        let mut r = Reader {
            sidecar: Sidecar::for_target(&target),
            target,
            file: None,
            offset,
            committed_len: 0,
            buf: Vec::new(),
            buf_pos: 0,
        };
        r.refresh()?;
        if offset > r.committed_len {
            return Err(Error::InvalidArgument(format!(
                "offset {offset} is beyond the committed length {} of {}",
                r.committed_len,
                r.target.display()
            )));
        }
        if offset > 0 {
            let mut b = [0u8; 1];
            r.file()?
                .read_exact_at(&mut b, offset - 1)
                .map_err(|e| Error::io(format!("reading {}", r.target.display()), e))?;
            if b[0] != b'\n' {
                return Err(Error::InvalidArgument(format!("offset {offset} is not at the start of a line")));
            }
        }
        Ok(r)
    }

    /// Byte offset of the next line (a cursor to reopen from).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Committed length as of the last manifest read.
    pub fn committed_len(&self) -> u64 {
        self.committed_len
    }

    /// Re-read the manifest; returns the committed length.
    pub fn refresh(&mut self) -> Result<u64> {
        if let Some(m) = Manifest::read(&self.sidecar.manifest)? {
            if m.committed_len < self.committed_len {
                return Err(Error::TargetTruncated {
                    target: self.target.clone(),
                    len: m.committed_len,
                    committed_len: self.committed_len,
                });
            }
            self.committed_len = m.committed_len;
        }
        Ok(self.committed_len)
    }

    fn file(&mut self) -> Result<&File> {
        if self.file.is_none() {
            let f = File::open(&self.target).map_err(|e| Error::io(format!("opening {}", self.target.display()), e))?;
            self.file = Some(f);
        }
        Ok(self.file.as_ref().expect("just opened"))
    }

    /// The next committed line (without `\n`), or `None` when the reader is at the
    /// committed end (call again later, or use [`Reader::next_line_wait`]).
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>> {
        if self.offset >= self.committed_len {
            self.refresh()?;
        }
        loop {
            if let Some(i) = self.buf[self.buf_pos..].iter().position(|&b| b == b'\n') {
                let line = self.buf[self.buf_pos..self.buf_pos + i].to_vec();
                self.buf_pos += i + 1;
                self.offset += i as u64 + 1;
                if self.buf_pos == self.buf.len() {
                    self.buf.clear();
                    self.buf_pos = 0;
                }
                return Ok(Some(line));
            }
            let have_to = self.offset + (self.buf.len() - self.buf_pos) as u64;
            if have_to >= self.committed_len {
                return Ok(None);
            }
            let want = ((self.committed_len - have_to) as usize).min(READ_CHUNK);
            self.buf.drain(..self.buf_pos);
            self.buf_pos = 0;
            let start = self.buf.len();
            self.buf.resize(start + want, 0);
            let target = self.target.clone();
            self.file()?;
            let file = self.file.as_ref().expect("opened above");
            let res = file.read_exact_at(&mut self.buf[start..], have_to);
            if let Err(e) = res {
                self.buf.truncate(start);
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    let len = self.file()?.metadata().map(|m| m.len()).unwrap_or(0);
                    return Err(Error::TargetTruncated { target, len, committed_len: self.committed_len });
                }
                return Err(Error::io(format!("reading {}", target.display()), e));
            }
        }
    }

    /// Like [`Reader::next_line`], but waits (polling the manifest every `poll`) up to
    /// `timeout` for a new committed line. `None` on timeout.
    pub fn next_line_wait(&mut self, poll: Duration, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.next_line()? {
                return Ok(Some(l));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(poll.min(deadline - now));
        }
    }
}

impl Iterator for Reader {
    type Item = Result<Vec<u8>>;

    /// Committed lines up to the committed end at the time of reading.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_line().transpose()
    }
}
