//! Read-only inspection: `verify` (is the target what the manifest committed?) and
//! `status` (committed state, watermarks, journal backlogs). Neither takes the lock:
//! committed bytes never change, so a concurrent drain cannot make them lie.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::compactor::Compactor;
use crate::error::{Error, Result};
use crate::journal::{Backlog, Journal, JournalId, JournalOptions};
use crate::target::manifest::{generation_path, Manifest};
use crate::target::scan::scan;
use crate::target::sidecar::Sidecar;

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The target path checked.
    pub target: PathBuf,
    /// The manifest epoch the check is against.
    pub epoch: u64,
    /// The target's current generation.
    pub generation: u64,
    /// Rotated generations still kept that were checked too.
    pub rotated_generations: u64,
    /// Committed bytes of the current generation, per the manifest.
    pub committed_len: u64,
    /// Committed lines of the current generation, per the manifest.
    pub committed_lines: u64,
    /// The target's length now.
    pub target_len: u64,
    /// Bytes beyond `committed_len`. Under a round's intent (a crashed or running
    /// drain) they are reported, not a failure: the next drain round truncates them.
    /// Bytes no round announced are also listed in `problems` (foreign bytes).
    pub uncommitted_tail_bytes: u64,
    /// What is wrong; empty when the target is consistent with its manifest.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// True when no problem was found.
    #[must_use]
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Check the target against its manifest: length, line count, running CRC.
/// Every problem found is listed in the report, not returned as an error.
///
/// # Errors
/// Only when the check itself cannot run: [`Error::InvalidArgument`] when the target
/// was never initialised or its path is a symlink or a folder;
/// [`Error::CorruptManifest`] when its manifest cannot be read; [`Error::Io`] when a
/// file cannot be read.
pub fn verify(target: impl AsRef<Path>) -> Result<VerifyReport> {
    let target = target.as_ref();
    crate::os::fscheck::check_target_name(target)?;
    crate::os::fscheck::check_target_fuse(target)?;
    let sidecar = Sidecar::for_target(target);
    let load = || {
        Manifest::load(&sidecar)?.ok_or_else(|| {
            if let Some(e) = sidecar.emptied(target) {
                return e;
            }
            Error::InvalidArgument(format!(
                "{} has no manifest ({}): it was never created with `tributary init`",
                target.display(),
                sidecar.lock.display()
            ))
        })
    };
    // The file the manifest describes is the one with its inode: at the target's path
    // or, while a managed rotation is between its rename and its commit, at
    // `<target>.<generation>`. Bytes past committed_len are a round's only if an intent
    // covered them when they were seen: a round commits its intent before its first
    // byte. So: read the manifest, find its file, fstat it, read the manifest again; if
    // the epoch moved meanwhile (a round or a rotation committed), start over; if not,
    // what was seen is what this manifest describes. (A target never initialised:
    // load() says so, as documented, before any "no such file".)
    let mut m = load()?;
    let (mut file, mut target_len, mut replaced, mut foreign_tail) = (None::<File>, 0, false, 0);
    let mut names_refreshed = false;
    let mut found_at = target.to_path_buf();
    let started = std::time::Instant::now();
    // Names and small files' content may come from a client's cache (rule 6).
    let on_network = crate::os::fscheck::on_network_fs(target);
    for _ in 0..1000 {
        let candidates = [target.to_path_buf(), generation_path(target, m.generation)];
        let found = candidates.iter().find_map(|p| {
            use std::os::unix::fs::MetadataExt;
            let f = File::open(p).ok()?;
            // Another file at the name is left alone (an fsync of it would keep this
            // host's stale name for it alive: rule 6).
            if m.target_ino != 0 && f.metadata().ok()?.ino() != m.target_ino {
                return None;
            }
            // The size the server knows (rule 6): a client's cached one can be older
            // than the manifest just read.
            let (len, ino) = crate::os::fs::fresh_len_and_ino_for_reading(&f).ok()?;
            (m.target_ino == 0 || ino == m.target_ino).then_some((f, len, p.clone()))
        });
        if found.is_none() && !names_refreshed {
            // The names may still point at files another host renamed away (rule 6).
            names_refreshed = true;
            // (best effort: a folder that may not be listed is waited out below)
            let _ = crate::os::fs::refresh_names(target);
            continue;
        }
        if found.is_none() && on_network && started.elapsed() < crate::reader::CACHE_PATIENCE {
            // A name the listing could not cure (the server has none mid-rotation, or
            // the folder may not be listed) lets go within a second or so, untouched.
            std::thread::sleep(std::time::Duration::from_millis(100));
            m = load()?;
            continue;
        }
        let again = load()?;
        if again.epoch != m.epoch {
            m = again;
            continue;
        }
        match found {
            None => replaced = true,
            Some((f, len, at)) => {
                found_at = at;
                let covered = m.intent.filter(|i| i.start == m.committed_len).map_or(0, |i| i.max_len);
                let tail = len.saturating_sub(m.committed_len);
                foreign_tail = if tail > covered { tail } else { 0 };
                target_len = len;
                file = Some(f);
            }
        }
        break;
    }
    let mut report = VerifyReport {
        target: target.to_path_buf(),
        epoch: m.epoch,
        generation: m.generation,
        rotated_generations: m.rotated.len() as u64,
        committed_len: m.committed_len,
        committed_lines: m.committed_lines,
        target_len,
        uncommitted_tail_bytes: target_len.saturating_sub(m.committed_len),
        problems: Vec::new(),
    };
    let Some(file) = file.filter(|_| !replaced) else {
        // (no file at all is said as such: "another file sits there" misled an outside
        // tester, who had moved the target away)
        report.problems.push(if std::fs::symlink_metadata(target).is_err() {
            format!(
                "the target file {} is missing (removed or moved, or the share is not mounted); its manifest \
                 describes inode {} holding {} committed bytes",
                target.display(),
                m.target_ino,
                m.committed_len
            )
        } else {
            format!(
                "the file at {} is not the target this manifest describes (inode {}): it was replaced, or the share \
                 is not mounted and another file sits there",
                target.display(),
                m.target_ino
            )
        });
        return Ok(report);
    };
    if foreign_tail > 0 {
        report.problems.push(format!(
            "{foreign_tail} byte(s) after the committed part were not written by a drain round (no round announced \
             them): another program appended to the target, or the manifest is older than the target. The next drain \
             refuses to touch them (unexpected_tail); see README \"Operations\""
        ));
    }
    // A client cache (Gluster's quick-read: small files) can serve a file's older
    // content for a moment after its size was fresh (rule 6): mismatches are read again.
    let patient = on_network;
    for (g, r) in &m.rotated {
        let path = generation_path(target, *g);
        match File::open(&path) {
            Err(e) => {
                report.problems.push(format!("generation {g} ({}) is listed but cannot be read: {e}", path.display()));
            }
            Ok(f) => {
                let (len, lines, crc) = scan_patiently(&path, f, u64::MAX, (r.len, r.lines, r.crc), patient)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                if (len, lines, crc) != (r.len, r.lines, r.crc) {
                    report.problems.push(format!(
                        "generation {g} ({}) has {len} bytes, {lines} lines, CRC {crc:08x}; the manifest recorded \
                         {} bytes, {} lines, CRC {:08x}",
                        path.display(),
                        r.len,
                        r.lines,
                        r.crc
                    ));
                }
            }
        }
    }
    if target_len < m.committed_len {
        report.problems.push(format!(
            "the target is {target_len} bytes, shorter than the {} committed bytes: it was truncated behind \
             tributary's back",
            m.committed_len
        ));
        return Ok(report);
    }
    let expected = (m.committed_len, m.committed_lines, m.committed_crc);
    let (len, lines, crc) = scan_patiently(&found_at, file, m.committed_len, expected, patient)
        .map_err(|e| Error::io(format!("reading {}", target.display()), e))?;
    if len != m.committed_len {
        report.problems.push(format!("could read only {len} of {} committed bytes", m.committed_len));
    }
    if lines != m.committed_lines {
        report.problems.push(format!("the committed part has {lines} lines, the manifest says {}", m.committed_lines));
    }
    if crc != m.committed_crc {
        report.problems.push(format!(
            "the committed part's CRC is {crc:08x}, the manifest says {:08x}: committed bytes were changed",
            m.committed_crc
        ));
    }
    Ok(report)
}

/// [`scan`] of a file's first `limit` bytes, read again — on a new descriptor of the
/// same file at `path` when there is one — while they do not match `expected`, for up
/// to the reader's patience, when `patient` (a network filesystem, whose client cache
/// may serve older content for a moment: rule 6).
fn scan_patiently(
    path: &Path,
    mut file: File,
    limit: u64,
    expected: (u64, u64, u32),
    patient: bool,
) -> std::io::Result<(u64, u64, u32)> {
    use std::os::unix::fs::MetadataExt;
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(2);
    loop {
        let got = scan(&mut file, limit)?;
        if got == expected || !patient || started.elapsed() >= crate::reader::CACHE_PATIENCE {
            return Ok(got);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(100));
        let ino = file.metadata()?.ino();
        if let Some(again) = File::open(path).ok().filter(|f| f.metadata().is_ok_and(|md| md.ino() == ino)) {
            file = again;
        }
    }
}

/// One journal in a [`StatusReport`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JournalStatus {
    /// The journal's path in the spool.
    pub path: PathBuf,
    /// The journal's id.
    pub journal_id: JournalId,
    /// What the journal holds, per its own counters.
    pub backlog: Backlog,
    /// The target's watermark for this journal (0 when it never fed the target).
    pub watermark: u64,
    /// Lines not committed to the target yet. Fewer than `backlog.lines` while rows
    /// already committed wait to be deleted (a drain that could not record them yet).
    pub uncommitted_lines: u64,
    /// The id of the target the journal records being drained into (`None`: never
    /// drained). Another id than the target's, or any id for a target without a
    /// manifest, means the journal cannot be drained here (`journal_foreign`).
    pub drained_into: Option<String>,
    /// What a drain into this target would refuse the journal with, in the drain's
    /// words (the same check: a restored copy or a clone, a copy of a retired journal,
    /// a journal of another target, a damaged row); `None` when a drain takes it, or
    /// when the target has no manifest.
    pub refused: Option<String>,
}

/// A `*.journal` file of the spool that [`status_all`] could not read, and why.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UnreadableJournal {
    /// The file.
    pub path: PathBuf,
    /// The kind of error opening or reading it failed with.
    pub kind: crate::ErrorKind,
    /// That error's message (what it is, and what to do).
    pub message: String,
}

/// The outcome of [`status`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StatusReport {
    /// The target path.
    pub target: PathBuf,
    /// The committed state; `None` for a target never initialised.
    pub manifest: Option<Manifest>,
    /// The manifest's format version: 3 (deltas, the default for new targets), 2 (what
    /// builds before 2026-12-04 read: `init --manifest-format 2`), 1 (a target not
    /// upgraded yet); `None` with no manifest.
    pub manifest_format: Option<u32>,
    /// The target file's length in bytes now; `None` when there is no file.
    pub target_len: Option<u64>,
    /// One per journal in the spool, in path order (none without a spool).
    pub journals: Vec<JournalStatus>,
    /// The spool's files that could not be read ([`status_all`] only: [`status`]
    /// returns the first one's error).
    pub unreadable: Vec<UnreadableJournal>,
    /// With no manifest: the sidecar folder is there but holds none while the target
    /// holds bytes — its files were deleted (a lost sidecar) or an `init` stopped before
    /// its first manifest. What a drain refuses with (`corrupt_manifest`), for a monitor
    /// to raise; `None` otherwise.
    pub lost_sidecar: Option<String>,
    /// The committed part no longer ends a line: the target was cut inside it and
    /// written past again (a `truncate` whose later writes covered the cut with
    /// zeros), so its length alone looks healthy. What drains refuse with
    /// (`target_truncated`), for a monitor to raise; `None` otherwise, and for a
    /// target on a network filesystem (read through the client's cache, the check
    /// could be stale: `verify` reads it all).
    pub committed_part_cut: Option<String>,
    /// The manifest did not change while status read it with the target's length and
    /// the cut check. False after 100 views that each saw a commit (a busy compactor
    /// on a slow filesystem): the length may then include bytes a round was writing
    /// under an intent newer than `manifest`, and `committed_part_cut` is not judged.
    pub settled: bool,
}

/// Views [`status`] takes before it settles for one that commits kept changing.
const STATUS_READ_ATTEMPTS: usize = 100;

/// What status sees of the target: the manifest, the length of the file holding its
/// current generation, and whether that file's committed part was cut
/// ([`StatusReport::committed_part_cut`]), taken so that they belong together.
struct View {
    manifest: Option<Manifest>,
    format: Option<u32>,
    len: Option<u64>,
    cut: Option<String>,
    /// No commit came between the first read of the manifest and the last.
    settled: bool,
}

/// The [`View`], taken so that its parts belong together: the manifest is read again
/// after the length and the cut check, and the view counts only if no commit came
/// between (else a round's intent and bytes, or a rotation, fell between the two
/// reads, and `status` reported bytes nobody announced, or a target shorter than
/// committed, on a healthy target — found by an outside tester; or a cut in a file a
/// rotation had just made, whose inode ext4 had given the generation retention
/// deleted — another). A rotation between its rename and its commit leaves the
/// manifest's generation at its rotated name: its length is taken there (by inode).
/// After [`STATUS_READ_ATTEMPTS`] views that all changed, the last one, unsettled.
fn view(target: &Path, sidecar: &Sidecar) -> Result<View> {
    let opened = |p: &Path| {
        let f = File::open(p).ok()?;
        let (len, ino) = crate::os::fs::fresh_len_and_ino_for_reading(&f).ok()?;
        Some((f, len, ino))
    };
    let on_network = crate::os::fscheck::on_network_fs(target);
    let mut view = View { manifest: None, format: None, len: None, cut: None, settled: false };
    let mut names_refreshed = false;
    for _ in 0..STATUS_READ_ATTEMPTS {
        let (m, format) = Manifest::load_with_format(sidecar)?.map_or((None, None), |(m, f)| (Some(m), Some(f)));
        let here = opened(target);
        let file = match &m {
            Some(m) if m.target_ino != 0 && here.as_ref().is_none_or(|(_, _, ino)| *ino != m.target_ino) => {
                opened(&generation_path(target, m.generation)).filter(|(_, _, ino)| *ino == m.target_ino).or(here)
            }
            _ => here,
        };
        let known = m.as_ref().map_or(0, |m| m.target_ino);
        if !names_refreshed && known != 0 && file.as_ref().is_none_or(|(_, _, ino)| *ino != known) {
            // The names may still point at files another host renamed away (rule 6).
            names_refreshed = true;
            let _ = crate::os::fs::refresh_names(target); // (best effort)
            continue;
        }
        let cut = match (&m, &file) {
            (Some(m), Some((f, len, ino)))
                if !on_network && *len >= m.committed_len && (m.target_ino == 0 || *ino == m.target_ino) =>
            {
                committed_part_cut(target, f, m)
            }
            _ => None,
        };
        let epoch = |m: &Option<Manifest>| m.as_ref().map(|m| m.epoch);
        let settled = epoch(&Manifest::load(sidecar)?) == epoch(&m);
        view = View { len: file.map(|(_, len, _)| len), manifest: m, format, cut, settled };
        if settled {
            break;
        }
    }
    Ok(view)
}

/// Committed state of a target and, if given, the backlog of each journal in `spool`
/// (journals whose writer is still creating them are left out).
///
/// # Errors
/// [`Error::InvalidArgument`] when the target path is a symlink or a folder;
/// [`Error::CorruptManifest`] when the manifest cannot be read; [`Error::Io`] when the
/// spool cannot be listed; any error of [`Journal::open_existing`] or
/// [`Journal::backlog`] on a journal in it.
pub fn status(target: impl AsRef<Path>, spool: Option<&Path>) -> Result<StatusReport> {
    status_with(target, spool, &JournalOptions::default())
}

/// [`status`], opening the spool's journals with `opts` (e.g. `allow_network_fs`).
///
/// # Errors
/// As [`status`].
pub fn status_with(target: impl AsRef<Path>, spool: Option<&Path>, opts: &JournalOptions) -> Result<StatusReport> {
    status_of(target.as_ref(), spool, opts, false)
}

/// [`status_with`], but a journal of the spool that cannot be read (a junk file, a
/// corrupt or unwritable journal) is listed in [`StatusReport::unreadable`] and the
/// others are still reported: what a monitor wants (a daemon sets such files aside
/// and keeps draining the others).
///
/// # Errors
/// [`Error::InvalidArgument`] when the target path is a symlink or a folder;
/// [`Error::CorruptManifest`] when the manifest cannot be read; [`Error::Io`] when the
/// spool cannot be listed.
pub fn status_all(target: impl AsRef<Path>, spool: Option<&Path>, opts: &JournalOptions) -> Result<StatusReport> {
    status_of(target.as_ref(), spool, opts, true)
}

/// [`status_all`] when `lenient`, else [`status_with`].
fn status_of(target: &Path, spool: Option<&Path>, opts: &JournalOptions, lenient: bool) -> Result<StatusReport> {
    crate::os::fscheck::check_target_name(target)?;
    crate::os::fscheck::check_target_fuse(target)?;
    let sidecar = Sidecar::for_target(target);
    let View { manifest, format: manifest_format, len: target_len, cut, settled } = view(target, &sidecar)?;
    let lost_sidecar = if manifest.is_none() { sidecar.emptied(target).map(|e| e.to_string()) } else { None };
    let mut journals = Vec::new();
    let mut unreadable = Vec::new();
    if let Some(spool) = spool {
        for p in crate::journal::spool_journals(spool)? {
            let read = Journal::open_existing(&p, opts.clone()).and_then(|j| {
                let backlog = j.backlog()?;
                let drained_into = j.drained_record()?.map(|r| r.target_id);
                let refused = manifest.as_ref().and_then(|m| refused_by_drains(&j, m, &sidecar));
                Ok((j.id(), backlog, drained_into, refused))
            });
            let (journal_id, backlog, drained_into, refused) = match read {
                Ok(read) => read,
                Err(e) if e.is_journal_not_ready() => continue, // its writer is creating it
                // retired (or removed) since the spool was listed: not in the spool now
                // (a journal removed without its log is listed as a problem: its log may
                // hold lines)
                Err(_) if crate::journal::left_the_spool(&p) => continue,
                Err(e) if lenient => {
                    unreadable.push(UnreadableJournal { path: p, kind: e.kind(), message: e.to_string() });
                    continue;
                }
                Err(e) => return Err(e),
            };
            let watermark = manifest.as_ref().and_then(|m| m.watermarks.get(&journal_id)).map_or(0, |w| w.last_seq);
            // A journal a drain refuses (a clone, a restored copy) has seqs the target's
            // watermark does not speak for: every line it holds waits (an outside
            // tester's container clone showed "backlog 0", 50 lines in no target).
            let uncommitted_lines = if refused.is_some() {
                backlog.lines
            } else {
                backlog.last_seq.saturating_sub(watermark.max(backlog.drained_seq))
            };
            journals.push(JournalStatus {
                backlog,
                journal_id,
                path: p,
                watermark,
                uncommitted_lines,
                drained_into,
                refused,
            });
        }
    }
    Ok(StatusReport {
        target: target.to_path_buf(),
        manifest,
        manifest_format,
        target_len,
        journals,
        unreadable,
        lost_sidecar,
        // (judged only on a settled view: a rotation may have moved the file meanwhile)
        committed_part_cut: cut.filter(|_| settled),
        settled,
    })
}

/// [`JournalStatus::refused`]: the drain's own step-3 check, against `m` — or, where
/// it fails, against the manifest now, when a commit came since `m` was read. Status
/// reads the manifest first and the journals after, without the lock: a round that
/// committed and recorded in between leaves a journal recording more than `m` holds,
/// which the check calls a reset manifest (records follow the commits that cover
/// them, so the manifest read after the journal covers its record).
fn refused_by_drains(j: &Journal, m: &Manifest, sidecar: &Sidecar) -> Option<String> {
    let mut m = std::borrow::Cow::Borrowed(m);
    let mut attempts = 0;
    loop {
        let Err(e) = Compactor::check_journal(j, &m) else { return None };
        attempts += 1;
        match Manifest::load(sidecar) {
            Ok(Some(now)) if now.epoch != m.epoch && attempts < STATUS_READ_ATTEMPTS => {
                m = std::borrow::Cow::Owned(now);
            }
            _ => return Some(e.to_string()),
        }
    }
}

/// [`StatusReport::committed_part_cut`]: the check every round makes before it
/// writes (`Compactor::check_committed_end`), said in its words, on `file`: the
/// manifest's generation, at least `committed_len` long (a shorter one is reported as
/// truncated already).
fn committed_part_cut(target: &Path, file: &File, m: &Manifest) -> Option<String> {
    let hole = crate::target::scan::committed_part_cut_at(file, m.committed_len).ok()??;
    Some(
        Error::TargetHole { target: target.to_path_buf(), hole, committed_len: m.committed_len, round_end: None }
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CompactorOptions, JournalOptions};

    /// Status reads the manifest, then the journals: a round committing and recording
    /// in between leaves a journal recording more than the manifest status holds,
    /// which the drain's check alone calls a reset manifest. Status judges it against
    /// the manifest read after it instead: not refused.
    #[test]
    fn a_journal_recorded_after_status_read_the_manifest_is_not_refused() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.log");
        let c = Compactor::new(&target, CompactorOptions::default().create(true)).unwrap();
        let j = Journal::open(d.path().join("a.journal"), JournalOptions::default()).unwrap();
        j.append(b"one").unwrap();
        c.drain(std::slice::from_ref(&j)).unwrap();
        let sidecar = Sidecar::for_target(&target);
        let read_by_status = Manifest::load(&sidecar).unwrap().unwrap();
        j.append(b"two").unwrap();
        c.drain(std::slice::from_ref(&j)).unwrap(); // committed and recorded since
        assert!(Compactor::check_journal(&j, &read_by_status).is_err(), "the check alone calls it a reset manifest");
        assert_eq!(refused_by_drains(&j, &read_by_status, &sidecar), None);
    }
}
