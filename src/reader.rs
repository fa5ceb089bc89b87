//! Committed-only reading of a target (fan-out).
//!
//! A reader never shows a byte beyond what the manifest committed, so it never sees a
//! torn or uncommitted tail, even while a drain is writing or after one crashed. Its
//! cursor is `(generation, byte offset)` at a line boundary: the caller can keep it
//! (see [`CursorStore`]) and reopen from it, and it stays valid across managed
//! rotations — a reader finishes a rotated generation (`<target>.<generation>`) and
//! continues at the start of the next. Reading takes no lock: committed bytes never
//! change.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::manifest::{generation_path, Manifest, Sidecar};

const READ_CHUNK: usize = 256 << 10;

/// A reading position: a generation of the target and a byte offset in it, always at
/// the start of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub generation: u64,
    pub offset: u64,
}

impl Cursor {
    /// The very beginning: the oldest generation still kept (resolved at open).
    pub const START: Cursor = Cursor { generation: 0, offset: 0 };
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.generation, self.offset)
    }
}

/// Reads committed lines of one target from a cursor. Not `Sync`: one thread at a time.
#[derive(Debug)]
pub struct Reader {
    target: PathBuf,
    sidecar: Sidecar,
    /// The latest manifest read (`None` before the first drain).
    manifest: Option<Manifest>,
    /// Generation being read, its file, and how far it is committed.
    generation: u64,
    file: Option<File>,
    limit: u64,
    /// Offset of the next line to return.
    offset: u64,
    /// Bytes read ahead from `offset`.
    buf: Vec<u8>,
    buf_pos: usize,
}

impl Reader {
    /// Open a reader at `offset` in the target's current generation (0, or just after
    /// a `\n` of the committed part).
    pub fn open(target: impl AsRef<Path>, offset: u64) -> Result<Reader> {
        let target = target.as_ref();
        crate::fscheck::check_target_name(target)?;
        let generation = Manifest::read(&Sidecar::for_target(target).manifest)?.map_or(1, |m| m.generation);
        Self::open_at(target, Cursor { generation, offset })
    }

    /// Open a reader at a cursor kept from an earlier reader ([`Cursor::START`]: the
    /// oldest generation still kept).
    pub fn open_at(target: impl AsRef<Path>, cursor: Cursor) -> Result<Reader> {
        let target = target.as_ref().to_path_buf();
        crate::fscheck::check_target_name(&target)?;
        let sidecar = Sidecar::for_target(&target);
        let generation = if cursor == Cursor::START {
            Manifest::read(&sidecar.manifest)?.map_or(1, |m| m.rotated.keys().next().copied().unwrap_or(m.generation))
        } else {
            cursor.generation
        };
        let mut r = Reader {
            sidecar,
            target,
            manifest: None,
            generation,
            file: None,
            limit: 0,
            offset: cursor.offset,
            buf: Vec::new(),
            buf_pos: 0,
        };
        r.refresh()?;
        if r.offset == r.limit && r.offset > 0 {
            r.advance_past_finished_generation();
            r.refresh()?;
        }
        if r.offset > r.limit {
            return Err(Error::InvalidArgument(format!(
                "cursor {cursor} is beyond the committed length {} of generation {} of {}",
                r.limit,
                r.generation,
                r.target.display()
            )));
        }
        if r.offset > 0 {
            let mut b = [0u8; 1];
            let (target, at) = (r.target.clone(), r.offset - 1);
            r.file()?.read_exact_at(&mut b, at).map_err(|e| Error::io(format!("reading {}", target.display()), e))?;
            if b[0] != b'\n' {
                return Err(Error::InvalidArgument(format!("cursor {cursor} is not at the start of a line")));
            }
        }
        Ok(r)
    }

    /// Byte offset of the next line within [`Reader::generation`].
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The generation being read.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Where the next line starts: keep it to resume later.
    pub fn cursor(&self) -> Cursor {
        Cursor { generation: self.generation, offset: self.offset }
    }

    /// Committed length of the generation being read, as of the last manifest read.
    pub fn committed_len(&self) -> u64 {
        self.limit
    }

    /// Re-read the manifest; returns the committed length of the generation being read.
    pub fn refresh(&mut self) -> Result<u64> {
        let Some(m) = Manifest::read(&self.sidecar.manifest)? else {
            self.limit = 0;
            return Ok(0);
        };
        let limit = if self.generation == m.generation {
            m.committed_len
        } else if let Some(r) = m.rotated.get(&self.generation) {
            r.len
        } else if self.generation > m.generation {
            return Err(Error::InvalidArgument(format!(
                "cursor generation {} does not exist yet in {} (current generation {})",
                self.generation,
                self.target.display(),
                m.generation
            )));
        } else {
            return Err(Error::InvalidArgument(format!(
                "generation {} of {} is no longer kept (retention removed it; oldest kept: {}): reopen from \
                 the start cursor (generation 0, offset 0) to continue with what is left",
                self.generation,
                self.target.display(),
                m.rotated.keys().next().copied().unwrap_or(m.generation)
            )));
        };
        if limit < self.limit {
            return Err(Error::TargetTruncated { target: self.target.clone(), len: limit, committed_len: self.limit });
        }
        self.limit = limit;
        self.manifest = Some(m);
        Ok(limit)
    }

    /// At the end of a rotated generation, move the cursor to the start of the next one
    /// at once: a cursor saved there stays valid after retention removes the finished
    /// generation (a cursor `(N, end of N)` would look like one into a removed file).
    fn advance_past_finished_generation(&mut self) {
        let current = self.manifest.as_ref().map_or(self.generation, |m| m.generation);
        if self.generation < current && self.offset == self.limit && self.buf_pos == self.buf.len() {
            self.generation += 1;
            self.offset = 0;
            self.limit = 0;
            self.file = None;
            self.buf.clear();
            self.buf_pos = 0;
        }
    }

    /// The file holding the generation being read. The current generation is the
    /// target itself, unless a rotation renamed it a moment ago (then the target is a
    /// new, shorter file and the generation lives at `<target>.<generation>`).
    fn file(&mut self) -> Result<&File> {
        if self.file.is_none() {
            let current = self.manifest.as_ref().map_or(self.generation, |m| m.generation);
            let rotated = generation_path(&self.target, self.generation);
            let open = |p: &Path| File::open(p).map_err(|e| Error::io(format!("opening {}", p.display()), e));
            let f = if self.generation < current {
                open(&rotated)?
            } else {
                match File::open(&self.target) {
                    Ok(f) if f.metadata().map(|m| m.len()).unwrap_or(0) >= self.limit => f,
                    Ok(_) | Err(_) if rotated.exists() => open(&rotated)?,
                    Ok(f) => f,
                    Err(e) => return Err(Error::io(format!("opening {}", self.target.display()), e)),
                }
            };
            self.file = Some(f);
        }
        Ok(self.file.as_ref().expect("just opened"))
    }

    /// The next committed line (without `\n`), or `None` at the committed end (call
    /// again later, or use [`Reader::next_line_wait`]).
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.buf[self.buf_pos..].iter().position(|&b| b == b'\n') {
                let line = self.buf[self.buf_pos..self.buf_pos + i].to_vec();
                self.buf_pos += i + 1;
                self.offset += i as u64 + 1;
                if self.buf_pos == self.buf.len() {
                    self.buf.clear();
                    self.buf_pos = 0;
                }
                self.advance_past_finished_generation();
                return Ok(Some(line));
            }
            let have_to = self.offset + (self.buf.len() - self.buf_pos) as u64;
            if have_to >= self.limit {
                self.refresh()?;
                if have_to >= self.limit {
                    // The end of a rotated generation: continue with the next one.
                    let current = self.manifest.as_ref().map_or(self.generation, |m| m.generation);
                    if self.generation < current && self.buf_pos == self.buf.len() {
                        self.generation += 1;
                        self.offset = 0;
                        self.limit = 0;
                        self.file = None;
                        self.refresh()?;
                        continue;
                    }
                    return Ok(None);
                }
            }
            let want = ((self.limit - have_to) as usize).min(READ_CHUNK);
            self.buf.drain(..self.buf_pos);
            self.buf_pos = 0;
            let start = self.buf.len();
            self.buf.resize(start + want, 0);
            self.file()?;
            let file = self.file.as_ref().expect("opened above");
            if let Err(e) = file.read_exact_at(&mut self.buf[start..], have_to) {
                self.buf.truncate(start);
                let target = self.target.clone();
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                    return Err(Error::TargetTruncated { target, len, committed_len: self.limit });
                }
                return Err(Error::io(format!("reading {}", target.display()), e));
            }
        }
    }

    /// Like [`Reader::next_line`], but waits (polling the manifest every `poll`: inotify
    /// is not reliable on NFS) up to `timeout` for a new committed line. `None` on
    /// timeout.
    pub fn next_line_wait(&mut self, poll: Duration, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = crate::journal::deadline_after(timeout);
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

    /// Follow mode: wait for the next committed line until `stop` is set (checked at
    /// every poll). `None` once stopped.
    pub fn next_line_until(&mut self, poll: Duration, stop: &AtomicBool) -> Result<Option<Vec<u8>>> {
        while !stop.load(Ordering::Relaxed) {
            if let Some(l) = self.next_line_wait(poll, poll)? {
                return Ok(Some(l));
            }
        }
        Ok(None)
    }

    /// Up to `max` committed lines (fewer at the committed end; none if there is
    /// nothing new).
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.next_line()? {
                Some(l) => out.push(l),
                None => break,
            }
        }
        Ok(out)
    }
}

impl Iterator for Reader {
    type Item = Result<Vec<u8>>;

    /// Committed lines up to the committed end at the time of reading.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_line().transpose()
    }
}

/// Named reader cursors kept durably in a local SQLite file, committed by the caller
/// after it processed the lines (at-least-once processing; see the README for the
/// exactly-once pattern with idempotency keys).
#[derive(Debug)]
pub struct CursorStore {
    conn: Connection,
    path: PathBuf,
}

impl CursorStore {
    /// Open (creating if needed, mode 0600) a cursor store.
    pub fn open(path: impl AsRef<Path>) -> Result<CursorStore> {
        let path = path.as_ref().to_path_buf();
        crate::fscheck::check_journal_location(&path)?;
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| Error::io(format!("opening cursor store {}", path.display()), e))?;
        }
        let ctx = |what: &str| format!("{what} {}", path.display());
        let conn = Connection::open(&path).map_err(|e| Error::sqlite(ctx("opening cursor store"), e))?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(|e| Error::sqlite(ctx("configuring"), e))?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).map_err(|e| Error::sqlite(ctx("configuring"), e))?;
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS cursors (
                 name TEXT PRIMARY KEY, generation INTEGER NOT NULL, offset INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL)",
        )
        .map_err(|e| Error::NotAJournal { path: path.clone(), detail: format!("not a cursor store: {e}") })?;
        Ok(CursorStore { conn, path })
    }

    /// The committed cursor of `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<Cursor>> {
        self.conn
            .query_row("SELECT generation, offset FROM cursors WHERE name = ?1", params![name], |r| {
                Ok(Cursor { generation: r.get::<_, i64>(0)? as u64, offset: r.get::<_, i64>(1)? as u64 })
            })
            .optional()
            .map_err(|e| Error::sqlite(format!("reading cursor {name} in {}", self.path.display()), e))
    }

    /// Durably record that `name` has processed everything before `cursor`.
    pub fn commit(&self, name: &str, cursor: Cursor) -> Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        self.conn
            .execute(
                "INSERT INTO cursors(name, generation, offset, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET generation = ?2, offset = ?3, updated_ms = ?4",
                params![name, cursor.generation as i64, cursor.offset as i64, now as i64],
            )
            .map(|_| ())
            .map_err(|e| Error::sqlite(format!("committing cursor {name} in {}", self.path.display()), e))
    }
}
