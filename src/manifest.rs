//! The manifest: the committed state of a target, kept in its sidecar folder.
//!
//! A small text file, one `key value` per line, ending with `crc <crc32 of every byte
//! before that line>`. It is only ever replaced whole (temp file, fsync, rename, folder
//! fsync), so a reader sees the old or the new manifest, never a mix. A manifest whose
//! CRC or syntax is wrong is an error; it is never silently replaced.
//!
//! ```text
//! tributary-manifest 1
//! target_id 6f1c...e2
//! epoch 42
//! generation 3
//! committed_len 123456
//! committed_lines 1000
//! committed_crc 1a2b3c4d
//! rotated <generation> <len> <lines> <crc>      (one per older generation kept)
//! watermark <journal_id> <last_seq> <crc of the line at last_seq>
//! crc 89abcdef
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::journal::JournalId;
use crate::{failpoint, fault, hex, sys};

const MAGIC: &str = "tributary-manifest";
const VERSION: u32 = 1;
/// A manifest larger than this is not one of ours (guards the parser and readers).
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// How far one journal has been drained into the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    pub journal_id: JournalId,
    /// Highest seq of this journal that is committed in the target.
    pub last_seq: u64,
    /// CRC32 of the line at `last_seq`.
    pub crc: u32,
}

/// The committed state of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Random id made when the manifest was first committed (hex, 32 digits).
    pub target_id: String,
    /// Bumped on every commit.
    pub epoch: u64,
    /// The target file's generation (1 for a target never rotated); managed rotation
    /// renames the target to `<target>.<generation>` and starts the next one.
    pub generation: u64,
    /// The length, line count and CRC of the target's current generation.
    pub committed_len: u64,
    pub committed_lines: u64,
    /// CRC32 of the first `committed_len` bytes of the target.
    pub committed_crc: u32,
    pub watermarks: BTreeMap<JournalId, Watermark>,
    /// Older generations still kept (`<target>.<generation>`), by generation.
    pub rotated: BTreeMap<u64, RotatedGeneration>,
}

/// What the manifest remembers of a rotated generation (for readers and `verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotatedGeneration {
    pub len: u64,
    pub lines: u64,
    pub crc: u32,
}

/// The paths of a target's sidecar folder (`<target>.tributary/`).
#[derive(Debug, Clone)]
pub struct Sidecar {
    pub dir: PathBuf,
    pub lock: PathBuf,
    pub manifest: PathBuf,
}

const TEMP_PREFIX: &str = "manifest.tmp.";

impl Sidecar {
    pub fn for_target(target: &Path) -> Sidecar {
        let mut name = target.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".tributary");
        let dir = crate::fscheck::parent_dir(target).join(name);
        Sidecar { lock: dir.join("lock"), manifest: dir.join("manifest"), dir }
    }

    /// Create the folder (0755) if needed; refuse a symlink or a world-writable folder
    /// (anyone could then plant a manifest or a lock file).
    pub fn ensure(&self) -> Result<()> {
        match fs::create_dir(&self.dir) {
            Ok(()) => {
                fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755))
                    .map_err(|e| Error::io(format!("setting the mode of {}", self.dir.display()), e))?;
                if let Some(parent) = self.dir.parent() {
                    sync_dir(parent)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = self.dir.parent().unwrap_or(Path::new("."));
                return Err(Error::io(
                    format!(
                        "creating sidecar folder {}: the target's folder {} does not exist (is the shared \
                         filesystem mounted?)",
                        self.dir.display(),
                        parent.display()
                    ),
                    e,
                ));
            }
            Err(e) => return Err(Error::io(format!("creating sidecar folder {}", self.dir.display()), e)),
        }
        self.check_safe()
    }

    fn check_safe(&self) -> Result<()> {
        let md = fs::symlink_metadata(&self.dir)
            .map_err(|e| Error::io(format!("inspecting sidecar folder {}", self.dir.display()), e))?;
        if !md.is_dir() {
            return Err(Error::UnsafeFilesystem {
                path: self.dir.clone(),
                detail: "the sidecar path is not a folder (a symlink or a file was planted there)".into(),
            });
        }
        if md.permissions().mode() & 0o002 != 0 {
            return Err(Error::UnsafeFilesystem {
                path: self.dir.clone(),
                detail: "the sidecar folder is world-writable; run `chmod o-w` on it".into(),
            });
        }
        Ok(())
    }

    /// Remove manifest temp files a killed lock holder left behind (call under the lock).
    pub fn remove_temp_files(&self) -> Result<usize> {
        let mut removed = 0;
        let rd = fs::read_dir(&self.dir).map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
        for entry in rd.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                fs::remove_file(entry.path())
                    .map_err(|e| Error::io(format!("removing stale temp file {}", entry.path().display()), e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The file a rotated generation of `target` lives in: `<target>.<generation>`.
pub fn generation_path(target: &Path, generation: u64) -> PathBuf {
    let mut name = target.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{generation}"));
    target.with_file_name(name)
}

/// fsync a folder, so a rename or a new entry in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fault::check("sidecar fsync").map_err(|e| Error::io(format!("fsync of folder {}", dir.display()), e))?;
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| Error::io(format!("fsync of folder {}", dir.display()), e))
}

impl Manifest {
    /// A fresh manifest for a target whose first `len` bytes (`lines` lines, CRC `crc`)
    /// are adopted as committed.
    pub fn new_adopting(len: u64, lines: u64, crc: u32) -> Result<Manifest> {
        Ok(Manifest {
            target_id: JournalId::random()?.to_hex(),
            epoch: 1,
            generation: 1,
            committed_len: len,
            committed_lines: lines,
            committed_crc: crc,
            watermarks: BTreeMap::new(),
            rotated: BTreeMap::new(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!(
            "{MAGIC} {VERSION}\ntarget_id {}\nepoch {}\ngeneration {}\ncommitted_len {}\ncommitted_lines {}\n\
             committed_crc {:08x}\n",
            self.target_id, self.epoch, self.generation, self.committed_len, self.committed_lines, self.committed_crc
        );
        for (g, r) in &self.rotated {
            s.push_str(&format!("rotated {g} {} {} {:08x}\n", r.len, r.lines, r.crc));
        }
        for w in self.watermarks.values() {
            s.push_str(&format!("watermark {} {} {:08x}\n", w.journal_id, w.last_seq, w.crc));
        }
        let crc = crc32fast::hash(s.as_bytes());
        s.push_str(&format!("crc {crc:08x}\n"));
        s.into_bytes()
    }

    /// Parse and CRC-check manifest bytes; `path` is for messages.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let bad = |detail: String| Error::CorruptManifest { path: path.to_path_buf(), detail };
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
        if !text.ends_with('\n') {
            return Err(bad("does not end with a newline (truncated?)".into()));
        }
        let body_end = text[..text.len() - 1].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let (body, crc_line) = text.split_at(body_end);
        let stored = crc_line
            .strip_prefix("crc ")
            .map(|c| c.trim_end_matches('\n'))
            .filter(|c| c.len() == 8)
            .and_then(|c| u32::from_str_radix(c, 16).ok())
            .ok_or_else(|| bad("the last line is not `crc <8 hex digits>`".into()))?;
        let actual = crc32fast::hash(body.as_bytes());
        if stored != actual {
            return Err(bad(format!("CRC mismatch: stored {stored:08x}, computed {actual:08x}")));
        }
        let mut lines = body.lines();
        match lines.next().map(|l| l.split_once(' ')) {
            Some(Some((MAGIC, v))) if v == VERSION.to_string() => {}
            Some(Some((MAGIC, v))) => return Err(bad(format!("manifest version {v}, this build reads {VERSION}"))),
            _ => return Err(bad(format!("does not start with `{MAGIC} {VERSION}`"))),
        }
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        let mut watermarks = BTreeMap::new();
        let mut rotated = BTreeMap::new();
        for line in lines {
            let (key, value) = line.split_once(' ').ok_or_else(|| bad(format!("malformed line `{line}`")))?;
            if key == "rotated" {
                let parts: Vec<&str> = value.split(' ').collect();
                let (g, r) = match parts.as_slice() {
                    [g, len, lines, crc] => (
                        g.parse::<u64>().map_err(|_| bad(format!("bad generation in `{line}`")))?,
                        RotatedGeneration {
                            len: len.parse().map_err(|_| bad(format!("bad length in `{line}`")))?,
                            lines: lines.parse().map_err(|_| bad(format!("bad line count in `{line}`")))?,
                            crc: parse_crc(crc).ok_or_else(|| bad(format!("bad crc in `{line}`")))?,
                        },
                    ),
                    _ => return Err(bad(format!("malformed rotated generation `{line}`"))),
                };
                if rotated.insert(g, r).is_some() {
                    return Err(bad(format!("generation {g} listed twice")));
                }
            } else if key == "watermark" {
                let parts: Vec<&str> = value.split(' ').collect();
                let w = match parts.as_slice() {
                    [id, seq, crc] => Watermark {
                        journal_id: JournalId::from_hex(id)
                            .ok_or_else(|| bad(format!("bad journal id in `{line}`")))?,
                        last_seq: seq.parse().map_err(|_| bad(format!("bad seq in `{line}`")))?,
                        crc: parse_crc(crc).ok_or_else(|| bad(format!("bad crc in `{line}`")))?,
                    },
                    _ => return Err(bad(format!("malformed watermark `{line}`"))),
                };
                if watermarks.insert(w.journal_id, w).is_some() {
                    return Err(bad(format!("two watermarks for journal {}", w.journal_id)));
                }
            } else if fields.insert(key, value).is_some() {
                return Err(bad(format!("field `{key}` appears twice")));
            }
        }
        let mut take = |k: &str| fields.remove(k).ok_or_else(|| bad(format!("missing field `{k}`")));
        let target_id = take("target_id")?.to_string();
        if hex::decode(&target_id).is_none_or(|b| b.len() != 16) {
            return Err(bad(format!("bad target_id `{target_id}`")));
        }
        let num = |k: &str, v: &str| v.parse::<u64>().map_err(|_| bad(format!("field `{k}` is not a number")));
        let epoch = num("epoch", take("epoch")?)?;
        let generation = num("generation", take("generation")?)?;
        let committed_len = num("committed_len", take("committed_len")?)?;
        let committed_lines = num("committed_lines", take("committed_lines")?)?;
        let committed_crc = parse_crc(take("committed_crc")?).ok_or_else(|| bad("bad committed_crc".into()))?;
        if let Some(k) = fields.keys().next() {
            return Err(bad(format!("unknown field `{k}`")));
        }
        if committed_lines > committed_len {
            return Err(bad("more committed lines than committed bytes".into()));
        }
        if generation == 0 || rotated.keys().any(|g| *g >= generation) {
            return Err(bad(format!("generation {generation} does not follow the rotated generations")));
        }
        Ok(Manifest {
            target_id,
            epoch,
            generation,
            committed_len,
            committed_lines,
            committed_crc,
            watermarks,
            rotated,
        })
    }

    /// Read the manifest at `path` with a fresh open (NFS close-to-open); `None` if
    /// there is none yet.
    pub fn read(path: &Path) -> Result<Option<Manifest>> {
        let mut f = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("opening manifest {}", path.display()), e)),
        };
        let mut bytes = Vec::new();
        (&mut f)
            .take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("reading manifest {}", path.display()), e))?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(Error::CorruptManifest { path: path.to_path_buf(), detail: "larger than 64 MiB".into() });
        }
        Manifest::decode(&bytes, path).map(Some)
    }

    /// Durably replace the sidecar's manifest with `self` (drain step 5): fresh temp
    /// file (O_EXCL|O_NOFOLLOW), fsync, check that the manifest on disk still has
    /// `expected_epoch` (`None`: that there is still none), rename, fsync the folder.
    pub fn commit(&self, sidecar: &Sidecar, expected_epoch: Option<u64>, target: &Path) -> Result<()> {
        let tmp = sidecar.dir.join(format!("{TEMP_PREFIX}{}.{:016x}", std::process::id(), sys::random_u64()));
        let ctx = |what: &str| format!("{what} {}", tmp.display());
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)
                .map_err(|e| Error::io(ctx("creating manifest temp file"), e))?;
            fault::check("manifest temp write").map_err(|e| Error::io(ctx("writing"), e))?;
            f.write_all(&self.encode()).map_err(|e| Error::io(ctx("writing"), e))?;
            fault::check("manifest temp fsync").map_err(|e| Error::io(ctx("fsync of"), e))?;
            f.sync_all().map_err(|e| Error::io(ctx("fsync of"), e))?;
            drop(f);
            failpoint::hit("drain.after_temp_manifest");
            let on_disk = Manifest::read(&sidecar.manifest)?.map(|m| m.epoch);
            if on_disk != expected_epoch {
                return Err(Error::LockLost {
                    target: target.to_path_buf(),
                    detail: format!(
                        "the manifest's epoch changed from {expected_epoch:?} to {on_disk:?} during this round: \
                         another compactor committed, so this one no longer held the lock"
                    ),
                });
            }
            fault::check("manifest rename").map_err(|e| Error::io(ctx("renaming"), e))?;
            fs::rename(&tmp, &sidecar.manifest).map_err(|e| Error::io(ctx("renaming"), e))?;
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        failpoint::hit("drain.after_rename");
        sync_dir(&sidecar.dir)
    }
}

fn parse_crc(s: &str) -> Option<u32> {
    if s.len() == 8 && s.bytes().all(|c| c.is_ascii_hexdigit()) {
        u32::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest::new_adopting(10, 2, 0xdead_beef).unwrap();
        let id = JournalId([7; 16]);
        m.watermarks.insert(id, Watermark { journal_id: id, last_seq: 5, crc: 0x0102_0304 });
        m.generation = 4;
        m.rotated.insert(2, RotatedGeneration { len: 100, lines: 3, crc: 0xabcd_ef01 });
        m.rotated.insert(3, RotatedGeneration { len: 7, lines: 1, crc: 0x1 });
        m
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert_eq!(Manifest::decode(&m.encode(), Path::new("m")).unwrap(), m);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let r = Manifest::decode(&b, Path::new("m"));
            assert!(matches!(r, Err(Error::CorruptManifest { .. })), "flip at {i} not detected: {r:?}");
        }
    }

    #[test]
    fn truncation_is_detected() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..n], Path::new("m")).is_err(), "truncation to {n} accepted");
        }
    }
}
