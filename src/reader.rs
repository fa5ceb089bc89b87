//! Committed-only reading of a target (fan-out).
//!
//! A reader never shows a byte beyond what the manifest committed, so it never sees a
//! torn or uncommitted tail, even while a drain is writing or after one crashed. Its
//! cursor is `(target id, generation, byte offset)` at a line boundary: the caller can
//! keep it (see [`CursorStore`]) and reopen from it, and it stays valid across managed
//! rotations — a reader finishes a rotated generation (`<target>.<generation>`) and
//! continues at the start of the next. A cursor names one position of ONE target: a
//! reader refuses a cursor kept for another target. Reading takes no lock: committed
//! bytes never change.
//!
//! A line's identity, for results keyed by their source line, is where the line
//! starts ([`Reader::line_start`]): the same whether the line is read before or after
//! a rotation of its generation. (The cursor *before* a line is not: read before a
//! rotation it can be the end of the finished generation, `g:len`, and read after it
//! `g+1:0`.)

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::manifest::{generation_path, Manifest, Sidecar};

const READ_CHUNK: usize = 256 << 10;

/// The committed state of a target, `None` before its first drain.
fn load_manifest(sidecar: &Sidecar) -> Result<Option<Manifest>> {
    Manifest::load(sidecar)
}

/// A target's identity: the `target_id` of its manifest, 16 random bytes made when the
/// target was first committed, written as 32 lower-case hex digits. A copy of the
/// target keeps it; another target (or one whose sidecar was recreated) has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetId(pub [u8; 16]);

impl TargetId {
    /// Parse 32 hex digits (either case); `None` otherwise.
    pub fn from_hex(s: &str) -> Option<TargetId> {
        if s.len() != 32 {
            return None;
        }
        Some(TargetId(crate::hex::decode(s)?.try_into().ok()?))
    }

    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    fn of(m: &Manifest, sidecar: &Sidecar) -> Result<TargetId> {
        TargetId::from_hex(&m.target_id).ok_or_else(|| Error::CorruptManifest {
            path: sidecar.lock.clone(),
            detail: format!("bad target_id `{}`", m.target_id),
        })
    }
}

impl std::fmt::Display for TargetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A reading position: a generation of a target and a byte offset in it, always at the
/// start of a line, and the id of the target it belongs to.
///
/// Text form (`Display`, `FromStr`): `<target_id>:<generation>:<offset>`, e.g.
/// `6f1c…e2:3:1024`. The bare `<generation>:<offset>` form of earlier versions is still
/// read, as a *legacy* cursor (`target_id: None`): nothing can check which target it
/// was kept for, so a reader accepts it on any target. A reader refuses a cursor whose
/// target id is another target's ([`ErrorKind::InvalidArgument`](crate::ErrorKind)),
/// reading nothing.
///
/// Ordering compares generation, then offset (then the id): meaningful between
/// cursors of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub generation: u64,
    pub offset: u64,
    /// The target this cursor belongs to; `None` for [`Cursor::START`], a legacy
    /// cursor, or one from a reader of a target that was never drained (no manifest,
    /// so no id yet: the reader learns it when the manifest appears).
    pub target_id: Option<TargetId>,
}

impl Cursor {
    /// The very beginning: the oldest generation still kept (resolved at open). Valid
    /// for any target.
    pub const START: Cursor = Cursor { generation: 0, offset: 0, target_id: None };

    /// A cursor with no target id (a legacy cursor: accepted by a reader of any
    /// target). Prefer keeping the cursors readers give, which carry the id.
    pub const fn at(generation: u64, offset: u64) -> Cursor {
        Cursor { generation, offset, target_id: None }
    }

    /// Generation 0, offset 0, whatever the id: the oldest generation still kept.
    pub fn is_start(&self) -> bool {
        self.generation == 0 && self.offset == 0
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(id) = &self.target_id {
            write!(f, "{id}:")?;
        }
        write!(f, "{}:{}", self.generation, self.offset)
    }
}

impl FromStr for Cursor {
    type Err = Error;

    /// `<target_id>:<generation>:<offset>`, or the legacy `<generation>:<offset>`.
    fn from_str(s: &str) -> Result<Cursor> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "cursor `{s}`: {why}; a cursor is TARGET_ID:GENERATION:OFFSET (32 hex digits and two \
                 non-negative integers, as a reader gives it) or the legacy GENERATION:OFFSET"
            ))
        };
        let number = |what: &str, t: &str| -> Result<u64> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(&format!("bad {what} `{t}`")));
            }
            t.parse().map_err(|_| bad(&format!("{what} `{t}` is too large")))
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (target_id, g, o) = match parts[..] {
            [g, o] => (None, g, o),
            [id, g, o] => (Some(TargetId::from_hex(id).ok_or_else(|| bad(&format!("bad target id `{id}`")))?), g, o),
            _ => return Err(bad("not two or three fields separated by `:`")),
        };
        let c = Cursor { generation: number("generation", g)?, offset: number("offset", o)?, target_id };
        if c.generation == 0 && c.offset != 0 {
            return Err(bad("generation 0 means the oldest generation kept and needs offset 0"));
        }
        Ok(c)
    }
}

/// Reads committed lines of one target from a cursor. Not `Sync`: one thread at a time.
#[derive(Debug)]
pub struct Reader {
    target: PathBuf,
    sidecar: Sidecar,
    /// The latest manifest read (`None` before the first drain).
    manifest: Option<Manifest>,
    /// The target's id: from the first manifest read, or the cursor the reader was
    /// opened at (then every manifest read must name it).
    target_id: Option<TargetId>,
    /// Whether `target_id` came from that cursor (for the refusal's message).
    id_from_cursor: bool,
    /// Generation being read, its file, and how far it is committed.
    generation: u64,
    file: Option<File>,
    limit: u64,
    /// Offset of the next line to return.
    offset: u64,
    /// Where the line last returned starts.
    line_start: Option<Cursor>,
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
        let generation = load_manifest(&Sidecar::for_target(target))?.map_or(1, |m| m.generation);
        Self::open_at(target, Cursor::at(generation, offset))
    }

    /// Open a reader at a cursor kept from an earlier reader ([`Cursor::START`]: the
    /// oldest generation still kept).
    ///
    /// A cursor that carries another target's id is refused
    /// ([`ErrorKind::InvalidArgument`](crate::ErrorKind)) before anything is read: a
    /// cursor kept for one target cannot be used on another. A cursor without an id
    /// (legacy text form, [`Cursor::at`]) cannot be checked and is accepted. On a
    /// target that was never drained, the id is checked when the first manifest
    /// appears.
    pub fn open_at(target: impl AsRef<Path>, cursor: Cursor) -> Result<Reader> {
        let target = target.as_ref().to_path_buf();
        crate::fscheck::check_target_name(&target)?;
        if cursor.generation == 0 && cursor.offset != 0 {
            return Err(Error::InvalidArgument(format!(
                "cursor {cursor}: generation 0 means the oldest generation kept and needs offset 0"
            )));
        }
        let sidecar = Sidecar::for_target(&target);
        let generation = if cursor.is_start() {
            load_manifest(&sidecar)?.map_or(1, |m| m.rotated.keys().next().copied().unwrap_or(m.generation))
        } else {
            cursor.generation
        };
        let mut r = Reader {
            sidecar,
            target,
            manifest: None,
            target_id: cursor.target_id,
            id_from_cursor: cursor.target_id.is_some(),
            generation,
            file: None,
            limit: 0,
            offset: cursor.offset,
            line_start: None,
            buf: Vec::new(),
            buf_pos: 0,
        };
        r.refresh()?;
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

    /// The target's id, once known (from the cursor the reader was opened at, or the
    /// target's manifest; `None` before the target's first drain).
    pub fn target_id(&self) -> Option<TargetId> {
        self.target_id
    }

    /// Where the next line starts: keep it to resume later. It carries the target's id
    /// (once the reader has seen the manifest). At the end of a generation the reader
    /// knows was rotated, it is the start of the next generation (`<g+1>:0`), never the
    /// end of the finished one.
    pub fn cursor(&self) -> Cursor {
        Cursor { generation: self.generation, offset: self.offset, target_id: self.target_id }
    }

    /// Where the line last returned by [`Reader::next_line`] (or its variants) starts:
    /// its generation and the offset of its first byte. This is the line's identity for
    /// results keyed by their source line (the exactly-once pipeline pattern): unlike
    /// the cursor taken before reading it, it is the same whether the line is read
    /// before or after a rotation of its generation. `None` before the first line.
    pub fn line_start(&self) -> Option<Cursor> {
        self.line_start
    }

    /// Committed length of the generation being read, as of the last manifest read.
    pub fn committed_len(&self) -> u64 {
        self.limit
    }

    /// Re-read the manifest; returns the committed length of the generation being read.
    /// At the end of a generation that was rotated meanwhile, the reader moves on to the
    /// start of the next one (and returns that one's committed length).
    pub fn refresh(&mut self) -> Result<u64> {
        self.refresh_limit()?;
        if self.advance_past_finished_generation() {
            self.refresh_limit()?;
        }
        Ok(self.limit)
    }

    /// Re-read the manifest and the committed length of the generation being read.
    fn refresh_limit(&mut self) -> Result<u64> {
        let Some(m) = load_manifest(&self.sidecar)? else {
            self.limit = 0;
            return Ok(0);
        };
        self.check_target_id(&m)?;
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

    /// The manifest must name the target this reader's position belongs to.
    fn check_target_id(&mut self, m: &Manifest) -> Result<()> {
        let id = TargetId::of(m, &self.sidecar)?;
        match self.target_id {
            None => self.target_id = Some(id),
            Some(mine) if mine == id => {}
            Some(mine) if self.id_from_cursor => {
                return Err(Error::InvalidArgument(format!(
                    "cursor {} belongs to target {mine}, but {} is target {id}: a cursor kept for one target \
                     cannot be used on another (nothing was read; use the cursor with the target it was kept \
                     for, or read this target from the start cursor, generation 0 offset 0)",
                    Cursor { generation: self.generation, offset: self.offset, target_id: Some(mine) },
                    self.target.display()
                )));
            }
            Some(mine) => {
                return Err(Error::InvalidArgument(format!(
                    "{} is now target {id}, not target {mine} that this reader was reading: the target was \
                     replaced (its sidecar recreated?); open a new reader to read the new target",
                    self.target.display()
                )));
            }
        }
        Ok(())
    }

    /// At the end of a rotated generation, move the cursor to the start of the next one
    /// at once: a cursor saved there stays valid after retention removes the finished
    /// generation (a cursor `(N, end of N)` would look like one into a removed file).
    /// Returns whether it moved.
    fn advance_past_finished_generation(&mut self) -> bool {
        let current = self.manifest.as_ref().map_or(self.generation, |m| m.generation);
        if self.generation < current && self.offset == self.limit && self.buf_pos == self.buf.len() {
            self.generation += 1;
            self.offset = 0;
            self.limit = 0;
            self.file = None;
            self.buf.clear();
            self.buf_pos = 0;
            return true;
        }
        false
    }

    /// The file holding the generation being read. The current generation is the
    /// target itself, unless a rotation renamed it a moment ago (then the target is a
    /// new, shorter file and the generation lives at `<target>.<generation>`).
    fn file(&mut self) -> Result<&File> {
        if self.file.is_none() {
            let current = self.manifest.as_ref().map_or(self.generation, |m| m.generation);
            let rotated = generation_path(&self.target, self.generation);
            let open = |p: &Path| File::open(p).map_err(|e| Error::io(format!("opening {}", p.display()), e));
            // The manifest names its generation's file by inode: a file that was just
            // rotated in at the target's path (a newer generation) is not it.
            let want = self
                .manifest
                .as_ref()
                .filter(|m| m.generation == self.generation && m.target_ino != 0)
                .map(|m| m.target_ino);
            let with_ino = |p: &Path, ino: u64| {
                use std::os::unix::fs::MetadataExt;
                File::open(p).ok().filter(|f| f.metadata().is_ok_and(|m| m.ino() == ino))
            };
            let by_ino = want.and_then(|ino| with_ino(&self.target, ino).or_else(|| with_ino(&rotated, ino)));
            let f = if let Some(f) = by_ino {
                f
            } else if self.generation < current {
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
                // `offset` is inside the generation's committed part (the line's `\n` is
                // too): never the end of a finished generation.
                self.line_start = Some(self.cursor());
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
                self.refresh_limit()?;
                if have_to >= self.limit {
                    // The end of a rotated generation: continue with the next one.
                    let current = self.manifest.as_ref().map_or(self.generation, |m| m.generation);
                    if self.generation < current && self.buf_pos == self.buf.len() {
                        self.generation += 1;
                        self.offset = 0;
                        self.limit = 0;
                        self.file = None;
                        self.refresh_limit()?;
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
///
/// A stored cursor keeps its target's id: a reader refuses it on another target
/// ([`Reader::open_at`]). Rows stored by versions before target ids load as legacy
/// cursors (no id), and get one at their next commit.
#[derive(Debug)]
pub struct CursorStore {
    conn: Connection,
    path: PathBuf,
}

impl CursorStore {
    /// Open (creating if needed, mode 0600) a cursor store; a store made by an earlier
    /// version gets the `target_id` column.
    pub fn open(path: impl AsRef<Path>) -> Result<CursorStore> {
        let path = path.as_ref().to_path_buf();
        match crate::fscheck::check_journal_location(&path) {
            // the journal's advice (allow_network_fs) does not apply to a cursor store
            Err(Error::UnsafeFilesystem { path, detail }) if detail.contains("statfs magic") => {
                let fs = detail
                    .split(" (statfs")
                    .next()
                    .unwrap_or(&detail)
                    .trim_start_matches("the journal's folder is on ");
                return Err(Error::UnsafeFilesystem {
                    path,
                    detail: format!(
                        "the cursor store's folder is on {fs}; a cursor store is an SQLite file in WAL mode and \
                         needs the reader host's local disk: give --cursor-store a path there"
                    ),
                });
            }
            r => r?,
        }
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
        let not_a_store =
            |e: rusqlite::Error| Error::NotAJournal { path: path.clone(), detail: format!("not a cursor store: {e}") };
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS cursors (
                 name TEXT PRIMARY KEY, generation INTEGER NOT NULL, offset INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL, target_id TEXT)",
        )
        .map_err(not_a_store)?;
        // Upgrade a store made before cursors carried their target's id: its rows keep
        // a NULL id (legacy cursors). In one write transaction, so that two processes
        // opening the same old store do not both add the column.
        let upgrade = || -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let result = (|| {
                let has: bool = conn.query_row(
                    "SELECT COUNT(*) FROM pragma_table_info('cursors') WHERE name = 'target_id'",
                    [],
                    |r| r.get::<_, i64>(0).map(|n| n > 0),
                )?;
                if !has {
                    conn.execute_batch("ALTER TABLE cursors ADD COLUMN target_id TEXT")?;
                }
                Ok(())
            })();
            conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
            result
        };
        upgrade().map_err(|e| Error::sqlite(ctx("adding the target_id column to cursor store"), e))?;
        Ok(CursorStore { conn, path })
    }

    /// The committed cursor of `name`, if any (with its target's id, or none for a
    /// cursor stored by an earlier version).
    pub fn get(&self, name: &str) -> Result<Option<Cursor>> {
        let row = self
            .conn
            .query_row("SELECT generation, offset, target_id FROM cursors WHERE name = ?1", params![name], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, Option<String>>(2)?))
            })
            .optional()
            .map_err(|e| Error::sqlite(format!("reading cursor {name} in {}", self.path.display()), e))?;
        let Some((generation, offset, id)) = row else { return Ok(None) };
        let target_id = match id {
            None => None,
            Some(hex) => Some(TargetId::from_hex(&hex).ok_or_else(|| Error::NotAJournal {
                path: self.path.clone(),
                detail: format!("cursor {name} has a bad target id `{hex}`"),
            })?),
        };
        Ok(Some(Cursor { generation, offset, target_id }))
    }

    /// Durably record that `name` has processed everything before `cursor` (and which
    /// target it belongs to).
    pub fn commit(&self, name: &str, cursor: Cursor) -> Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        self.conn
            .execute(
                "INSERT INTO cursors(name, generation, offset, updated_ms, target_id) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(name) DO UPDATE SET generation = ?2, offset = ?3, updated_ms = ?4, target_id = ?5",
                params![
                    name,
                    cursor.generation as i64,
                    cursor.offset as i64,
                    now as i64,
                    cursor.target_id.map(|id| id.to_hex())
                ],
            )
            .map(|_| ())
            .map_err(|e| Error::sqlite(format!("committing cursor {name} in {}", self.path.display()), e))
    }
}
