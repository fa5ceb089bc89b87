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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod cursor;
mod cursor_store;

pub use cursor::{Cursor, TargetId};
pub(crate) use cursor_store::cursor_from_row;
pub use cursor_store::CursorStore;

use crate::error::{Error, Result};
use crate::target::manifest::{generation_path, Manifest};
use crate::target::sidecar::Sidecar;

const READ_CHUNK: usize = 256 << 10;
/// Generations up to this size are checked against the manifest's CRC before their
/// lines are returned: `GlusterFS`'s quick-read serves whole cached content of files up
/// to its `max-file-size` (64 KiB by default, 1000 KB at most) for up to 1 s.
const SMALL_GENERATION: u64 = 1 << 20;
/// How long a reader re-reads before it reports content that does not match the
/// manifest (a client cache turns over within seconds).
pub(crate) const CACHE_PATIENCE: Duration = Duration::from_secs(5);

/// Whether `e` may be a network filesystem client's stale view of a file another host
/// renamed or deleted (a generation rotation renamed, retention deleted): `ESTALE`
/// through a descriptor or a cached name, or `ENOENT` (`GlusterFS` answers it for a
/// descriptor of a deleted file, and for a name it cached as missing before a
/// rotation created it).
fn is_stale_view(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. }
        if source.raw_os_error() == Some(libc::ESTALE) || source.kind() == std::io::ErrorKind::NotFound)
}

/// The committed state of a target, `None` before its first drain.
fn load_manifest(sidecar: &Sidecar) -> Result<Option<Manifest>> {
    Manifest::load(sidecar)
}

/// How far a reader is behind the committed end ([`Reader::lag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// Committed bytes after the reader's position: the rest of the generation it
    /// reads, every later kept generation, the current generation's committed part.
    /// 0: caught up (as of the manifest read).
    pub bytes: u64,
    /// How many generations exist after the one the reader is in (0: it reads the
    /// current one).
    pub later_generations: u64,
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
    /// Opened at [`Cursor::START`] and no line returned yet: the generation was chosen
    /// as the oldest kept, and if retention removes it before a line of it was read,
    /// the oldest kept then is where the start is (a `tail --all`
    /// racing retention failed "no longer kept", 6 of 310 runs: an outside tester).
    at_start_of_oldest: bool,
    file: Option<File>,
    /// The open file's size as its server last told it (0: not asked yet). Bytes are
    /// read only below it: on a shared mount the client's cached size and pages can be
    /// older than the manifest (rule 6, "Never decide from a cache").
    fresh_len: u64,
    /// How much of a small generation was checked against the manifest's CRC.
    content_checked: u64,
    /// Whether the open file is on a network filesystem (asked once per file: an
    /// `fstatfs` there is a round trip to the server).
    shared: Option<bool>,
    /// On a network filesystem: the committed length when this host's cached pages of
    /// the open file were last dropped. Bytes below it read since are committed ones
    /// (they cannot go stale); a read past it drops the pages again first (rule 6).
    clean_below: u64,
    limit: u64,
    /// Offset of the next line to return.
    offset: u64,
    /// Where the line last returned starts.
    line_start: Option<Cursor>,
    /// Bytes read ahead from `offset`.
    buf: Vec<u8>,
    buf_pos: usize,
    /// (generation, file offset): the bytes from `offset` up to there, read ahead,
    /// hold no `\n`. A line longer than a chunk is read chunk by chunk; each chunk is
    /// searched once, not the whole line again (a 128 MiB line took 20 s).
    searched_to: (u64, u64),
    /// Bytes searched for a `\n` since the reader was opened (a test's measure).
    #[cfg(test)]
    searched_bytes: u64,
}

impl Reader {
    /// Open a reader at `offset` in the target's current generation (0, or just after
    /// a `\n` of the committed part).
    ///
    /// # Errors
    /// As [`Reader::open_at`].
    pub fn open(target: impl AsRef<Path>, offset: u64) -> Result<Reader> {
        let target = target.as_ref();
        crate::os::fscheck::check_target_name(target)?;
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
    ///
    /// # Errors
    /// - [`Error::InvalidArgument`]: the cursor belongs to another target, is beyond the
    ///   committed length, is not at the start of a line, or names a generation that
    ///   does not exist yet or is no longer kept; or the target path is a symlink or a
    ///   folder;
    /// - [`Error::CorruptManifest`]: the manifest cannot be trusted;
    /// - [`Error::Io`]: the manifest or the file cannot be read.
    pub fn open_at(target: impl AsRef<Path>, cursor: Cursor) -> Result<Reader> {
        let target = target.as_ref().to_path_buf();
        crate::os::fscheck::check_target_name(&target)?;
        crate::os::fscheck::check_target_fuse(&target)?;
        if cursor.generation == 0 && cursor.offset != 0 {
            return Err(Error::InvalidArgument(format!(
                "cursor {cursor}: generation 0 means the oldest generation kept and needs offset 0"
            )));
        }
        let sidecar = Sidecar::for_target(&target);
        // A target never initialised is waited for (a reader may start first); one whose
        // sidecar was emptied never gets a manifest again: say so (it printed nothing).
        let manifest = load_manifest(&sidecar)?;
        if manifest.is_none() {
            if let Some(e) = sidecar.emptied(&target) {
                return Err(e);
            }
        }
        let generation = if cursor.is_start() {
            manifest.map_or(1, |m| m.rotated.keys().next().copied().unwrap_or(m.generation))
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
            at_start_of_oldest: cursor.is_start(),
            file: None,
            fresh_len: 0,
            content_checked: 0,
            shared: None,
            clean_below: 0,
            limit: 0,
            offset: cursor.offset,
            line_start: None,
            buf: Vec::new(),
            buf_pos: 0,
            searched_to: (0, 0),
            #[cfg(test)]
            searched_bytes: 0,
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
            // The byte before the cursor, read as lines are (a client cache answering
            // with older, shorter content is read again, a small generation checked).
            r.read_chunk(r.offset - 1, 1)?;
            let before = r.buf.first().copied();
            r.buf.clear();
            r.buf_pos = 0;
            if before != Some(b'\n') {
                return Err(Error::InvalidArgument(format!("cursor {cursor} is not at the start of a line")));
            }
        }
        Ok(r)
    }

    /// Byte offset of the next line within [`Reader::generation`].
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The generation being read.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The target's id, once known (from the cursor the reader was opened at, or the
    /// target's manifest; `None` before the target's first drain).
    #[must_use]
    pub fn target_id(&self) -> Option<TargetId> {
        self.target_id
    }

    /// Where the next line starts: keep it to resume later. It carries the target's id
    /// (once the reader has seen the manifest). At the end of a generation the reader
    /// knows was rotated, it is the start of the next generation (`<g+1>:0`), never the
    /// end of the finished one.
    #[must_use]
    pub fn cursor(&self) -> Cursor {
        Cursor { generation: self.generation, offset: self.offset, target_id: self.target_id }
    }

    /// Where the line last returned by [`Reader::next_line`] (or its variants) starts:
    /// its generation and the offset of its first byte. This is the line's identity for
    /// results keyed by their source line (the exactly-once pipeline pattern): unlike
    /// the cursor taken before reading it, it is the same whether the line is read
    /// before or after a rotation of its generation. `None` before the first line.
    #[must_use]
    pub fn line_start(&self) -> Option<Cursor> {
        self.line_start
    }

    /// Committed length of the generation being read, as of the last manifest read.
    #[must_use]
    pub fn committed_len(&self) -> u64 {
        self.limit
    }

    /// How far this reader is behind the committed end, as of a fresh read of the
    /// manifest (two 4 KiB reads of the lock file; nothing of the target is read).
    /// Lines behind are not counted: that would cost a scan of the bytes behind.
    ///
    /// It does not move the reader (it refreshes the committed length, as a read does;
    /// at the end of a rotated generation the cursor becomes the next one's start,
    /// as [`Reader::refresh`] does). Before the target's first drain: zero.
    ///
    /// # Errors
    /// As [`Reader::refresh`] (e.g. the generation being read is no longer kept).
    pub fn lag(&mut self) -> Result<Lag> {
        self.refresh()?;
        let Some(m) = &self.manifest else { return Ok(Lag::default()) };
        let rest = self.limit.saturating_sub(self.offset);
        if self.generation >= m.generation {
            return Ok(Lag { bytes: rest, later_generations: 0 });
        }
        let later: u64 = m.rotated.range(self.generation + 1..).map(|(_, r)| r.len).sum();
        Ok(Lag { bytes: rest + later + m.committed_len, later_generations: m.generation - self.generation })
    }

    /// Re-read the manifest; returns the committed length of the generation being read.
    /// At the end of a generation that was rotated meanwhile, the reader moves on to the
    /// start of the next one (and returns that one's committed length).
    ///
    /// # Errors
    /// [`Error::CorruptManifest`] when the manifest cannot be trusted;
    /// [`Error::InvalidArgument`] when the target now has another id (replaced) or the
    /// generation being read is no longer kept; [`Error::TargetTruncated`] when the
    /// committed length went down; [`Error::Io`] when the manifest cannot be read.
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
        } else if self.at_start_of_oldest && self.offset == 0 && self.generation < m.generation {
            // (the next file opened resets what was known of the old one)
            self.generation = m.rotated.keys().next().copied().unwrap_or(m.generation);
            self.file = None;
            self.limit = 0;
            self.buf.clear();
            self.buf_pos = 0;
            m.rotated.get(&self.generation).map_or(m.committed_len, |r| r.len)
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
            return Err(Error::TargetTruncated {
                target: self.target.clone(),
                len: limit,
                committed_len: self.limit,
                gone: false,
            });
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

    /// The kept file, or a newly opened one (nothing known about it from the server yet).
    ///
    /// When the file the manifest names is at neither of its paths, the manifest this
    /// reader holds may be older than the files: rotations, and retention, came since it
    /// was read (a reader opened at a generation's start opens its file only at its
    /// first read). Opening by name then returned the current generation's bytes, an
    /// uncommitted tail with them, as a deleted generation's (an outside tester). So it
    /// reads the manifest again first, and opens what that one names — or says the
    /// generation is no longer kept. Only a manifest read just now that still names an
    /// inode found at neither path lets it open by name (a copy of the target with its
    /// sidecar, new inodes: a backup read in place), as before.
    ///
    /// `None`: the file at the target's name is one of its older generations — a
    /// name this host's client still maps to the file a rotation renamed away, which
    /// listing the folder did not cure (a folder this reader may not list): read again
    /// later, never that file's bytes as this generation's.
    fn kept_or_opened(&mut self) -> Result<Option<File>> {
        if let Some(f) = self.file.take() {
            return Ok(Some(f));
        }
        self.fresh_len = 0;
        self.content_checked = 0;
        self.shared = None;
        self.clean_below = 0;
        if let Some(f) = self.open_named()? {
            return Ok(Some(f));
        }
        // (a generation gone from the manifest is an error here)
        self.refresh_limit()?;
        if let Some(f) = self.open_named()? {
            return Ok(Some(f));
        }
        // An older generation's file at the target's name is left alone, not even
        // fsynced (that kept this host's stale name for it alive: an outside tester).
        if File::open(&self.target).is_ok_and(|f| self.is_an_older_generations(&f)) {
            return Ok(None);
        }
        self.open_by_name().map(Some)
    }

    /// Whether `f` is the file of a generation before the one being read, as their
    /// names in the manifest just read tell (only the fallback of
    /// [`kept_or_opened`](Self::kept_or_opened) asks).
    fn is_an_older_generations(&self, f: &File) -> bool {
        use std::os::unix::fs::MetadataExt;
        let (Ok(ino), Some(m)) = (f.metadata().map(|md| md.ino()), self.manifest.as_ref()) else { return false };
        m.rotated
            .keys()
            .filter(|&&g| g < self.generation)
            .any(|&g| std::fs::metadata(generation_path(&self.target, g)).is_ok_and(|md| md.ino() == ino))
    }

    /// Open the file the manifest held names for the generation being read: the current
    /// generation's by its inode, at the target's path or at `<target>.<generation>`
    /// (a rotation renamed it a moment ago); a rotated generation at its path. `Ok(None)`
    /// when that inode is at neither path, or the rotated file is gone: this manifest
    /// may be older than the files ([`kept_or_opened`](Self::kept_or_opened)). A
    /// manifest without inodes (from before they were recorded) opens by name.
    fn open_named(&self) -> Result<Option<File>> {
        let rotated = generation_path(&self.target, self.generation);
        let want = self
            .manifest
            .as_ref()
            .filter(|m| m.generation == self.generation && m.target_ino != 0)
            .map(|m| m.target_ino);
        if let Some(ino) = want {
            let with_ino = |p: &Path| {
                use std::os::unix::fs::MetadataExt;
                File::open(p).ok().filter(|f| f.metadata().is_ok_and(|m| m.ino() == ino))
            };
            let find = || with_ino(&self.target).or_else(|| with_ino(&rotated));
            if let Some(f) = find() {
                return Ok(Some(f));
            }
            // The names may still point at files another host renamed away (rule 6):
            // ask again after listing the folder (a reader that may not list it asks
            // once).
            let _ = crate::os::fs::refresh_names(&self.target);
            return Ok(find());
        }
        let current = self.manifest.as_ref().map_or(self.generation, |m| m.generation);
        if self.generation < current && !rotated.exists() {
            return Ok(None);
        }
        self.open_by_name().map(Some)
    }

    /// Open the generation being read by name: a rotated one at `<target>.<generation>`;
    /// the current one at the target's path, or at `<target>.<generation>` when the file
    /// at the path is shorter than the committed length (a rotation a moment ago). For a
    /// manifest without inodes, and for one read just now whose inode is at neither
    /// path (a copy of the target with its sidecar: a backup read in place).
    fn open_by_name(&self) -> Result<File> {
        let current = self.manifest.as_ref().map_or(self.generation, |m| m.generation);
        let rotated = generation_path(&self.target, self.generation);
        let open = |p: &Path| File::open(p).map_err(|e| Error::io(format!("opening {}", p.display()), e));
        if self.generation < current {
            return open(&rotated);
        }
        match File::open(&self.target) {
            Ok(f) if crate::os::fs::fresh_len_and_ino_for_reading(&f).map_or(0, |(len, _)| len) >= self.limit => Ok(f),
            Ok(_) | Err(_) if rotated.exists() => open(&rotated),
            Ok(f) => Ok(f),
            Err(e) => Err(Error::io(format!("opening {}", self.target.display()), e)),
        }
    }

    /// The next committed line (without `\n`), or `None` at the committed end (call
    /// again later, or use [`Reader::next_line_wait`]).
    ///
    /// # Errors
    /// As [`Reader::refresh`]; also [`Error::TargetTruncated`] when the file is shorter
    /// than its committed part, and [`Error::Io`] when it cannot be opened or read.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            let unread = &self.buf[self.buf_pos..];
            let (searched_generation, searched_to) = self.searched_to;
            let skip = if searched_generation == self.generation && searched_to > self.offset {
                usize::try_from(searched_to - self.offset).map_or(unread.len(), |n| n.min(unread.len()))
            } else {
                0
            };
            #[cfg(test)]
            {
                self.searched_bytes += (unread.len() - skip) as u64;
            }
            let found = memchr::memchr(b'\n', &unread[skip..]).map(|i| skip + i);
            if found.is_none() {
                self.searched_to = (self.generation, self.offset + unread.len() as u64);
            }
            if let Some(i) = found {
                // `offset` is inside the generation's committed part (the line's `\n` is
                // too): never the end of a finished generation.
                self.line_start = Some(self.cursor());
                let line = self.buf[self.buf_pos..self.buf_pos + i].to_vec();
                self.buf_pos += i + 1;
                self.offset += i as u64 + 1;
                self.at_start_of_oldest = false;
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
            let want = usize::try_from(self.limit - have_to).map_or(READ_CHUNK, |n| n.min(READ_CHUNK));
            self.read_chunk(have_to, want)?;
        }
    }

    /// Append `want` bytes at `at` to the buffer, as the target's server has them (or
    /// nothing, when the reader moved to another generation meanwhile). On a
    /// shared mount a client's cache can still answer with an older, shorter file, or
    /// (`GlusterFS` quick-read, small files) older content: sizes come from the server
    /// (`fresh_len_and_ino`), a small generation is checked against the manifest's
    /// CRC before anything of it is returned, and a short or mismatching read is
    /// retried on a new descriptor for a while before it is reported.
    fn read_chunk(&mut self, at: u64, want: usize) -> Result<()> {
        let mut pause = Duration::from_millis(2);
        let started = Instant::now();
        // (an error looked past, named if the bytes then never match)
        let mut looked_past: Option<String> = None;
        loop {
            let outcome = self.try_read_chunk(at, want);
            let again = match &outcome {
                Ok(true) => return Ok(()),
                Ok(false) => true,
                // On a network filesystem (asked only here, on this rare path), a file
                // another host renamed or deleted (rotation, retention), through the
                // descriptor held or a name this client cached: look again — the
                // manifest, then the file it names (docs/design.md "Cursors": a stale
                // handle).
                Err(e) => is_stale_view(e) && crate::os::fscheck::on_network_fs(&self.target),
            };
            if again && started.elapsed() < CACHE_PATIENCE {
                if let Err(e) = &outcome {
                    looked_past = Some(e.to_string());
                    // (best effort: the names this client cached, listed afresh)
                    let _ = crate::os::fs::refresh_names(&self.target);
                }
                self.file = None;
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
                continue;
            }
            return match outcome {
                Err(e) => Err(e),
                Ok(_) => Err(Error::TornTarget {
                    target: self.target.clone(),
                    detail: format!(
                        "for {} s the file's bytes did not match what the manifest committed (generation {}, {} \
                         bytes): it was changed behind tributary's back, or a client cache keeps serving old \
                         content; run `tributary verify`{}",
                        CACHE_PATIENCE.as_secs(),
                        self.generation,
                        self.limit,
                        looked_past.map_or(String::new(), |e| format!(" (earlier attempts met: {e})"))
                    ),
                }),
            };
        }
    }

    /// One attempt of [`read_chunk`](Self::read_chunk): `Ok(false)` when a cache may
    /// have answered (a short read although the server's size covers it, or a small
    /// generation whose content does not match its CRC).
    fn try_read_chunk(&mut self, at: u64, want: usize) -> Result<bool> {
        // The file first: an open that fails must leave no zeros in the buffer, which
        // the next call would take for the file's bytes. (It may read the manifest
        // again: the CRC expected is that manifest's, for the length it gives.)
        let generation = self.generation;
        let Some(file) = self.kept_or_opened()? else { return Ok(false) };
        if self.generation != generation {
            // A start reader moved to the oldest generation kept (`at_start_of_oldest`):
            // `at` and `want` were the removed generation's; the caller asks again
            // from the new position (an outside reviewer: a shorter generation there
            // was reported "truncated").
            self.file = Some(file);
            return Ok(true);
        }
        let expected_crc = self.committed_crc();
        let file = &*self.file.insert(file);
        let end = at + want as u64;
        if end > self.fresh_len {
            let fresh = crate::os::fs::fresh_len_and_ino_for_reading(file)
                .map_err(|e| Error::io(format!("reading the size of {}", self.target.display()), e))?;
            self.fresh_len = fresh.0;
        }
        if end > self.fresh_len {
            return Err(Error::TargetTruncated {
                target: self.target.clone(),
                len: self.fresh_len,
                committed_len: self.limit,
                gone: false,
            });
        }
        let unchecked_small = self.limit <= SMALL_GENERATION && self.content_checked < self.limit;
        let check = expected_crc.filter(|_| unchecked_small);
        // Rule 6: pages this host cached before may hold bytes that were not committed
        // then (a compactor here killed mid-round); drop them before reading past what
        // was committed at the last drop — once per growth, not per chunk, so the
        // kernel's read-ahead of committed bytes is kept.
        let shared = match self.shared {
            Some(shared) => shared,
            None => *self.shared.insert(
                crate::os::fs::is_shared(file)
                    .map_err(|e| Error::io(format!("inspecting the filesystem of {}", self.target.display()), e))?,
            ),
        };
        let reads_to = if check.is_some() { self.limit } else { end };
        if shared && reads_to > self.clean_below {
            crate::os::sys::drop_cached_pages(file)
                .map_err(|e| Error::io(format!("dropping cached pages of {}", self.target.display()), e))?;
            self.clean_below = self.limit;
        }
        self.buf.drain(..self.buf_pos);
        self.buf_pos = 0;
        if let Some(expected) = check {
            let mut all = vec![0u8; usize::try_from(self.limit).unwrap_or(0)];
            if file.read_exact_at(&mut all, 0).is_err() || crc32fast::hash(&all) != expected {
                return Ok(false);
            }
            self.content_checked = self.limit;
            // the chunk from the bytes just checked, not read a second time
            let from = usize::try_from(at).unwrap_or(usize::MAX);
            if let Some(chunk) = from.checked_add(want).and_then(|to| all.get(from..to)) {
                self.buf.extend_from_slice(chunk);
                return Ok(true);
            }
        }
        let start = self.buf.len();
        self.buf.resize(start + want, 0);
        match file.read_exact_at(&mut self.buf[start..], at) {
            Ok(()) => Ok(true),
            Err(e) => {
                self.buf.truncate(start);
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    return Ok(false);
                }
                Err(Error::io(format!("reading {}", self.target.display()), e))
            }
        }
    }

    /// The CRC the manifest records for the committed part of the generation being
    /// read, when `limit` is all of it.
    fn committed_crc(&self) -> Option<u32> {
        let m = self.manifest.as_ref()?;
        if m.generation == self.generation {
            (m.committed_len == self.limit).then_some(m.committed_crc)
        } else {
            m.rotated.get(&self.generation).filter(|r| r.len == self.limit).map(|r| r.crc)
        }
    }

    /// Like [`Reader::next_line`], but waits (polling the manifest every `poll`: inotify
    /// is not reliable on NFS) up to `timeout` for a new committed line. `None` on
    /// timeout.
    ///
    /// # Errors
    /// As [`Reader::next_line`].
    pub fn next_line_wait(&mut self, poll: Duration, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = crate::os::clock::deadline_after(timeout);
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
    ///
    /// # Errors
    /// As [`Reader::next_line`].
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
    ///
    /// # Errors
    /// As [`Reader::next_line`]; the lines read before the error are not returned, but
    /// the reader has moved past them.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Compactor, CompactorOptions, Journal, JournalOptions};

    /// A read whose file cannot be opened (moved away for a moment, out of file
    /// descriptors) fails and leaves the reader where it was: once the file is back,
    /// the next line is the file's, not the buffer's zeros.
    #[test]
    fn a_failed_open_leaves_nothing_behind_in_the_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t.log");
        let compactor = Compactor::new(&target, CompactorOptions { create: true, ..Default::default() }).unwrap();
        compactor.init().unwrap();
        let journal = Journal::open(dir.path().join("a.journal"), JournalOptions::default()).unwrap();
        journal.append_batch(&[b"one", b"two"]).unwrap();
        compactor.drain(std::slice::from_ref(&journal)).unwrap();
        let mut reader = Reader::open(&target, 0).unwrap();
        let away = dir.path().join("t.log.away");
        std::fs::rename(&target, &away).unwrap();
        let err = reader.next_line().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Io, "{err}");
        std::fs::rename(&away, &target).unwrap();
        assert_eq!(reader.next_line().unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(reader.next_line().unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(reader.next_line().unwrap(), None);
    }

    /// A line many chunks long is searched for its `\n` once, chunk by chunk: the
    /// whole line searched again after each chunk made reading it quadratic (an outside
    /// tester: 128 MiB in 20 s, 1 GB not read in 11 minutes).
    #[test]
    fn a_long_line_is_searched_once() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t.log");
        let long = vec![b'x'; 40 * READ_CHUNK + 123];
        let mut content = b"short\n".to_vec();
        content.extend_from_slice(&long);
        content.extend_from_slice(b"\nafter\n");
        std::fs::write(&target, &content).unwrap();
        let compactor = Compactor::new(&target, CompactorOptions { create: true, ..Default::default() }).unwrap();
        compactor.init().unwrap();
        let mut reader = Reader::open(&target, 0).unwrap();
        assert_eq!(reader.next_line().unwrap().as_deref(), Some(&b"short"[..]));
        assert_eq!(reader.next_line().unwrap().as_deref(), Some(&long[..]));
        assert_eq!(reader.next_line().unwrap().as_deref(), Some(&b"after"[..]));
        assert_eq!(reader.next_line().unwrap(), None);
        let searched = reader.searched_bytes;
        assert!(
            searched <= 2 * content.len() as u64,
            "{searched} bytes searched to read {} bytes of lines",
            content.len()
        );
    }
}
