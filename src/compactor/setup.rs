//! Setting a target up and reading its manifest: the checks before the lock, the lock,
//! step 1's manifest (from the slots; or an upgrade of a version-1 target; or, with
//! `create`, a new target), and `init`.
//!
//! Keeps: a drain never creates a target (only `init`, or `create`); a missing
//! sidecar or lock file is `target_missing`, never a new empty target; an upgrade and
//! an init are resumable at every step (docs/design.md, "Upgrading a version-1
//! target"); the version-1 stub is in place before a round builds on a slot.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::round::CommitKind;
use super::{Compactor, InitReport, ManifestDeltas};
use crate::error::{Error, Result};
use crate::target::lock::{SlotsSeen, TargetLock};
use crate::target::manifest::{Intent, Manifest, ManifestFile, DELTA_FORMAT_VERSION, FORMAT_VERSION};
use crate::target::scan::scan;
use crate::target::slots::{self, LOCK_FILE_BYTES};
use crate::{failpoint, os::fscheck};

/// Where step 1's manifest came from.
pub(super) enum Origin {
    Existing,
    Upgraded,
    Created { adopted: u64 },
}

impl Compactor {
    /// Create this target — its sidecar, the lock file with the first manifest (format
    /// 3, manifest deltas: docs/design.md "Manifest deltas, format version 3"), and
    /// the target file (an existing file's whole lines are adopted as committed) — or,
    /// if it exists, check it: a version-1 target is upgraded; a target file whose
    /// inode is not the one recorded (restored or copied together with its sidecar) is
    /// accepted if its committed part (length, line count, CRC) matches, and refused
    /// otherwise. Drains never create a target unless [`CompactorOptions::create`](crate::CompactorOptions::create).
    ///
    /// # Errors
    /// - [`Error::TornTarget`]: an existing target file's last line is partial;
    /// - [`Error::CorruptManifest`]: the manifest's slots are damaged;
    /// - [`Error::TargetMissing`]: the target file does not match its sidecar's record
    ///   (another file, or a restored copy whose committed part differs);
    /// - otherwise the target-side errors of [`Compactor::drain`] (a lock timeout, an
    ///   unsafe mount or sidecar, a bad target name, I/O).
    pub fn init(&self) -> Result<InitReport> {
        self.init_in_format(None)
    }

    /// [`Compactor::init`], then, with `Some(format)`, switch the target's manifest to
    /// that format (2, or 3: manifest deltas) with one commit under the same lock, if
    /// it is not in it already (a target this call creates in format 2 reports no
    /// switch). Every compactor follows the format of the target it drains
    /// (docs/design.md "Manifest deltas, format version 3": 3 only once every host
    /// that drains the target runs a build that reads it, from 2026-12-04 on; 2 for a
    /// target that older builds drain too).
    ///
    /// # Errors
    /// Those of [`Compactor::init`]; [`Error::InvalidArgument`] for a format other
    /// than 2 or 3 (nothing is done).
    pub fn init_in_format(&self, format: Option<u32>) -> Result<InitReport> {
        if let Some(f) = format.filter(|f| ![FORMAT_VERSION, DELTA_FORMAT_VERSION].contains(f)) {
            return Err(Error::InvalidArgument(format!(
                "manifest format {f} does not exist: the formats a target can be switched to are \
                 {FORMAT_VERSION} and {DELTA_FORMAT_VERSION}"
            )));
        }
        let lock = self.lock(true)?;
        let (mut m, origin) = self.current_manifest(&lock, true)?;
        if lock.seen().is_none() {
            // A first manifest's commit leaves the slots unread: read them, for the
            // format this target has (`format_now`).
            self.check_epoch(&lock, Some(m.epoch), "as init read it")?;
        }
        // A rotation killed after renaming the target is completed first, as a round
        // would: until then the file at the target's path is not the manifest's.
        if self.interrupted_rotation(&m) {
            m = self.complete_rotation(&lock, &m)?;
        }
        let mut report = InitReport {
            target_id: m.target_id.clone(),
            created: matches!(origin, Origin::Created { .. }),
            adopted_lines: match origin {
                Origin::Created { adopted } => adopted,
                _ => 0,
            },
            upgraded: matches!(origin, Origin::Upgraded),
            rebound: false,
            manifest_format: FORMAT_VERSION,
            switched_from: None,
        };
        let file = self.open_target(&m)?;
        let (len, ino) = self.target_len_and_ino(&file)?;
        let (mut file, len, ino) = self.read_again_if_changed(&m, (file, len, ino))?;
        if m.target_ino == ino && len < m.committed_len {
            // The target's own file, cut short: as a drain says it (`init` said "nothing
            // to do" here, exit 0: an outside tester).
            return Err(Error::TargetTruncated {
                target: self.target.clone(),
                len,
                committed_len: m.committed_len,
                gone: false,
            });
        }
        if m.target_ino != ino {
            let (len, lines, crc) = scan(&mut file, m.committed_len)
                .map_err(|e| Error::io(format!("reading {} to check it", self.target.display()), e))?;
            if (len, lines, crc) != (m.committed_len, m.committed_lines, m.committed_crc) {
                // What to do instead of `init`, which refuses this file every time (an
                // outside tester ran it again as the generic advice says, in a loop).
                return Err(self.missing(format!(
                    "the file there (inode {ino}) is not the target this sidecar committed to (inode {}), and its \
                     first {} bytes are not the committed ones ({len} bytes, {lines} lines, CRC {crc:08x}; committed: \
                     {} lines, CRC {:08x}). `init` refuses this file every time: put the target's own file back at \
                     this path (a backup or copy holding the committed lines is accepted); or, to start a new target \
                     here, move this file and the sidecar folder {} aside first (journals drained into the old \
                     target are then refused as journal_foreign)",
                    m.target_ino,
                    m.committed_len,
                    m.committed_lines,
                    m.committed_crc,
                    self.sidecar.dir.display()
                )));
            }
            let mut next = m.clone();
            next.epoch += 1;
            next.target_ino = ino;
            self.commit(&lock, &next, Some(&m), CommitKind::Other)?;
            report.rebound = m.target_ino != 0;
            m = next;
        }
        // The target's format is its current base's: a version-3 base has a chain.
        let format_now = |lock: &TargetLock| {
            if lock.seen().is_some_and(|s| s.chain.is_some()) {
                DELTA_FORMAT_VERSION
            } else {
                FORMAT_VERSION
            }
        };
        let before = format_now(&lock);
        if let Some(want) = format.filter(|&f| f != before) {
            let mut next = m.clone();
            next.epoch += 1;
            // Policy on a version-2 base snapshots a version-3 base; Off snapshots version 2.
            let deltas = if want == DELTA_FORMAT_VERSION { ManifestDeltas::Policy } else { ManifestDeltas::Off };
            self.commit_in(&lock, &next, Some(&m), CommitKind::Other, deltas, Some(Arc::new(next.clone())))?;
            // (a new target is made in the default format first: it was not switched)
            report.switched_from = Some(before).filter(|_| !report.created);
        }
        report.manifest_format = format_now(&lock);
        Ok(report)
    }

    /// The checks before the lock (the target's name, its sidecar, the mount), then the
    /// lock. Without `create`, a missing sidecar or lock file is `target_missing`.
    pub(super) fn lock(&self, create: bool) -> Result<TargetLock> {
        self.check_before_lock(create)?;
        self.queue_for_lock(create, &|| false)
    }

    /// The lock, waited for in its queue ([`check_before_lock`](Self::check_before_lock)
    /// done) until it is granted, the lock timeout passes, or `give_up()` is true.
    pub(super) fn queue_for_lock(&self, create: bool, give_up: &dyn Fn() -> bool) -> Result<TargetLock> {
        self.no_lock_file_is_missing(self.lock_queue.acquire(
            &self.sidecar.lock,
            self.opts.lock_timeout,
            create,
            !self.trust_client_caches,
            give_up,
        ))
    }

    /// The lock if nobody holds it now, `None` when someone does
    /// ([`check_before_lock`](Self::check_before_lock) done).
    pub(super) fn try_lock(&self, create: bool) -> Result<Option<TargetLock>> {
        self.no_lock_file_is_missing(TargetLock::try_acquire(&self.sidecar.lock, create, !self.trust_client_caches))
    }

    /// A lock file that does not exist is a target never initialised, unless the
    /// sidecar says the manifest moved into it: then the manifest was lost.
    fn no_lock_file_is_missing<T>(&self, r: Result<T>) -> Result<T> {
        match r {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                self.lock_file_not_lost()?;
                if let Some(e) = self.sidecar.emptied(&self.target) {
                    return Err(e);
                }
                Err(self.missing(format!(
                    "its sidecar has no lock file {}: it was never initialised",
                    self.sidecar.lock.display()
                )))
            }
            r => r,
        }
    }

    /// [`Sidecar::lost_lock_file`] when the lock file is missing beside the stub.
    fn lock_file_not_lost(&self) -> Result<()> {
        if self.sidecar.lock_file_missing() && matches!(self.sidecar.read_manifest_file(), Ok(Some(ManifestFile::Stub)))
        {
            return Err(self.sidecar.lost_lock_file());
        }
        Ok(())
    }

    /// The checks before the lock: the target's name, its sidecar, the mount.
    pub(super) fn check_before_lock(&self, create: bool) -> Result<()> {
        fscheck::check_target_name(&self.target)?;
        // Once per compactor, and before a sidecar is created (a refused `init` on
        // FUSE left an empty one behind).
        if self.target_on_network.get().is_none() {
            fscheck::check_target_mount(&self.target)?;
            let _ = self.target_on_network.set(fscheck::on_network_fs(&self.target));
        }
        if create {
            if !self.sidecar.exists() {
                self.refuse_a_partial_file_before_making_a_sidecar()?;
            }
            // (checked by `create`, which looks again at a folder a network client misses)
            self.sidecar.create()?;
            self.lock_file_not_lost()?;
        } else if !self.sidecar.exists() {
            return Err(self.missing(format!(
                "it has no sidecar folder {}: it was never initialised, or the share it lives on is not mounted",
                self.sidecar.dir.display()
            )));
        } else {
            self.sidecar.check_safe()?;
        }
        Ok(())
    }

    /// Step 1 under the lock: the current manifest from the slots; or finish an
    /// upgrade of a version-1 target; or, with `create`, initialise a new target.
    pub(super) fn current_manifest(&self, lock: &TargetLock, create: bool) -> Result<(Manifest, Origin)> {
        // Fast path: both slots' headers are what this compactor last read or wrote
        // (two block reads), so nobody committed since and the manifest is the one it
        // kept. Taken out of the cache: a round that fails reads in full next time.
        let kept = self.manifest_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some((seen, m)) = kept.filter(|_| self.stub_checked.get().is_some()) {
            let headers =
                [slots::read_header(lock.file(), lock.path(), 0)?, slots::read_header(lock.file(), lock.path(), 1)?];
            let untouched = |c: &slots::Chain| slots::chain_end_untouched(lock.file(), lock.path(), seen.current, c);
            if headers == seen.headers && seen.chain.as_ref().map_or(Ok(true), untouched)? {
                lock.remember(Some(seen));
                // (no copy when nobody else holds it: a round's manifest is dropped by
                // the time the next round reads)
                return Ok((Arc::unwrap_or_clone(m), Origin::Existing));
            }
        }
        let (slots, headers) = slots::read_with_headers(lock.file(), lock.path())?;
        let current = match slots.into_current_with_chain(lock.path()) {
            // No valid slot and no manifest file at all (not even the stub, written
            // after the first slot): an `init` whose first slot write was torn. It never
            // finished, so nothing was built on it: start it again.
            Err(Error::CorruptManifest { .. }) if self.sidecar.read_manifest_file().ok().flatten().is_none() => None,
            r => r?,
        };
        let seen =
            current.as_ref().map(|(i, m, chain)| SlotsSeen { current: *i, epoch: m.epoch, headers, chain: *chain });
        self.remember_slots(lock, seen, current.as_ref().map(|(_, m, _)| Arc::new(m.clone())));
        if let Some((_, m, _)) = current {
            if self.stub_checked.get().is_none() {
                if !self.sidecar.exists() {
                    return Err(
                        self.missing("its sidecar is gone from under this round: is the share being unmounted?".into())
                    );
                }
                match self.sidecar.read_manifest_file().ok().flatten() {
                    Some(ManifestFile::Stub) => {}
                    // Never written since the upgrade: a version-1 binary's commit, unless
                    // it is an older copy (a backup restored over the stub).
                    Some(ManifestFile::V1(old)) if !is_an_older_copy(&old, &m) => {
                        return Err(self.version_1_after_upgrade(&m, &old));
                    }
                    // An init or upgrade killed before its last step left no stub.
                    _ => {
                        self.sidecar.remove_temp_files()?;
                        self.sidecar.write_stub()?;
                    }
                }
                let _ = self.stub_checked.set(());
            }
            return Ok((m, Origin::Existing));
        }
        match self.sidecar.read_manifest_file()? {
            Some(ManifestFile::V1(m)) => self.upgrade(lock, m, true).map(|m| (m, Origin::Upgraded)),
            Some(ManifestFile::V2(m)) => self.upgrade(lock, m, false).map(|m| (m, Origin::Upgraded)),
            Some(ManifestFile::Stub) => Err(Error::CorruptManifest {
                path: self.sidecar.lock.clone(),
                detail: "the manifest moved into this lock file's slots, but neither slot holds one (the lock file \
                         was truncated or replaced)"
                    .into(),
            }),
            None if create => self.initialize(lock).map(|(m, adopted)| (m, Origin::Created { adopted })),
            None => Err(self.sidecar.emptied(&self.target).unwrap_or_else(|| {
                self.missing(format!(
                    "its sidecar {} holds no manifest: it was never initialised (or its `init` did not finish)",
                    self.sidecar.dir.display()
                ))
            })),
        }
    }

    /// A version-1 manifest file beside valid slots that is not an older copy of them
    /// (docs/design.md "Upgrading a version-1 target"): left as it is, and said what to do.
    fn version_1_after_upgrade(&self, slots: &Manifest, old: &Manifest) -> Error {
        Error::CorruptManifest {
            path: self.sidecar.manifest.clone(),
            detail: format!(
                "this target was upgraded (its manifest is in the lock file's slots: epoch {}, generation {}, {} \
                 bytes committed), but this file holds a version-1 manifest{} (generation {}, {} bytes \
                 committed), not an older copy of the slots' (it names another target, or commits more: a \
                 later generation, more bytes, or a journal further): a first-release build (tributary 0.1.0 \
                 of 2026-11-22) committed to the target after the upgrade, once the stub that stops such builds \
                 was moved aside or an old manifest restored over it. Stop that build on every host (upgrade \
                 it); README \"Operations\" (upgrading from a version-1 build) says how to keep the lines it \
                 appended",
                slots.epoch,
                slots.generation,
                slots.committed_len,
                if old.target_id == slots.target_id { "" } else { " of another target identity" },
                old.generation,
                old.committed_len,
            ),
        }
    }

    /// The slots as just read or written under `lock` (its epoch checks) and, with the
    /// manifest in the current one, for this compactor's next step 1 (`manifest_seen`);
    /// `None`: forget them.
    pub(super) fn remember_slots(&self, lock: &TargetLock, seen: Option<SlotsSeen>, m: Option<Arc<Manifest>>) {
        lock.remember(seen);
        *self.manifest_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = seen.zip(m);
    }

    /// Upgrade a version-1 target (docs/design.md "Upgrading a version-1 target"):
    /// the full version-2 text to `manifest` (version-1 binaries stop there), the
    /// first slot, then the stub. Every step can be redone after a crash.
    fn upgrade(&self, lock: &TargetLock, mut m: Manifest, from_v1: bool) -> Result<Manifest> {
        self.sidecar.remove_temp_files()?;
        if from_v1 {
            // Version 1 cut any tail up to one round: a version-1 drain killed mid-round
            // left one, with no intent to say so. The upgrade announces it once.
            m.intent = Some(Intent { start: m.committed_len, max_len: self.max_tail() });
            self.sidecar.write_manifest_file(&m.encode())?;
        }
        failpoint::hit(failpoint::Point::UpgradeAfterFile);
        m.target_ino = match fs::symlink_metadata(&self.target) {
            Ok(md) => md.ino(),
            Err(_) => 0,
        };
        m.epoch += 1;
        lock.file().set_len(LOCK_FILE_BYTES).map_err(|e| Error::io("sizing the lock file", e))?;
        slots::write(lock.file(), lock.path(), 0, &m, None)?;
        self.durable_epoch.store(m.epoch, Ordering::Relaxed);
        failpoint::hit(failpoint::Point::UpgradeAfterSlot);
        self.sidecar.write_stub()?;
        let _ = self.stub_checked.set(());
        Ok(m)
    }

    /// Before `init` (or `drain --create`) makes a sidecar for a file that has none (its
    /// name checked): a journal named by mistake, or a pre-existing file whose last
    /// line is partial, is refused with nothing made. (`initialize` checks the last line
    /// again under the lock; the sidecar a refused `init` left beside a journal made
    /// every writer and drain refuse that journal as "a tributary target": an outside
    /// tester.) Only on a local disk, where "no sidecar" cannot be a client cache's old
    /// answer (on a network mount it could be, and a live target's round in progress
    /// would be refused); and only for a regular file, opened without blocking (a FIFO
    /// held `init` for ever: an outside reviewer). Errors reading it are left to the
    /// checks under the lock.
    fn refuse_a_partial_file_before_making_a_sidecar(&self) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if self.target_on_network.get().copied().unwrap_or(true) {
            return Ok(());
        }
        let opened = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW).open(&self.target);
        let Ok(file) = opened else { return Ok(()) };
        let Ok(len) = file.metadata().map(|md| if md.is_file() { md.len() } else { 0 }) else { return Ok(()) };
        let mut head = [0u8; 16];
        if file.read_exact_at(&mut head, 0).is_ok() && &head == b"SQLite format 3\0" {
            return Err(Error::InvalidArgument(format!(
                "{} is an SQLite database (a journal?), not a file of lines: `init --target` names the shared file \
                 that journals are drained into; a journal needs no init (`append --journal` makes it). Nothing \
                 was made",
                self.target.display()
            )));
        }
        let mut last = [0u8; 1];
        if len == 0 || file.read_exact_at(&mut last, len - 1).is_err() || last[0] == b'\n' {
            return Ok(());
        }
        Err(self.partial_last_line(len))
    }

    /// `init`'s refusal of a pre-existing file of `len` bytes whose last byte is not
    /// `\n`.
    fn partial_last_line(&self, len: u64) -> Error {
        Error::TornTarget {
            target: self.target.clone(),
            detail: format!(
                "the pre-existing target ({len} bytes) does not end with a newline, so its last line is partial; \
                 tributary adopts only whole lines: finish or remove that line, then run init again"
            ),
        }
    }

    /// A new target (`init`): adopt a pre-existing target's bytes when it ends with
    /// `\n` (made durable first, with the target's name: orderings O4 and O5), size the
    /// lock file and make its name durable, commit the first slot, write the stub.
    fn initialize(&self, lock: &TargetLock) -> Result<(Manifest, u64)> {
        self.sidecar.remove_temp_files()?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.target)
            .map_err(|e| Error::io(format!("opening target {}", self.target.display()), e))?;
        // The scan reads to the end: the end the server knows, not a client's cache.
        self.target_len_and_ino(&file)?;
        let (len, lines, crc) =
            scan(&mut file, u64::MAX).map_err(|e| Error::io("reading the target to adopt it", e))?;
        if len > 0 {
            let mut last = [0u8; 1];
            // (read by the scan just now, after it dropped this host's cached pages)
            file.read_exact_at(&mut last, len - 1).map_err(|e| Error::io("reading the target's last byte", e))?;
            if last[0] != b'\n' {
                return Err(self.partial_last_line(len));
            }
        }
        file.sync_all().map_err(|e| self.lost_or_io("fsync of the target before adopting it", e))?;
        let ino = file.metadata().map_err(|e| Error::io("fstat of the new target", e))?.ino();
        drop(file);
        crate::os::fs::sync_dir(&crate::os::fs::parent_dir(&self.target))?;
        lock.file().set_len(LOCK_FILE_BYTES).map_err(|e| Error::io("sizing the lock file", e))?;
        crate::os::fs::sync_dir(&self.sidecar.dir)?;
        let m = Manifest::new_adopting(len, lines, crc, ino)?;
        self.commit(lock, &m, None, CommitKind::First)?;
        failpoint::hit(failpoint::Point::InitAfterSlot);
        self.sidecar.write_stub()?;
        let _ = self.stub_checked.set(());
        Ok((m, lines))
    }
}

/// Whether a version-1 manifest found beside valid slots claims nothing they do not
/// (a backup of the target from before its upgrade, restored over the stub): the same
/// target, no later generation nor more bytes of the same, and no journal further
/// than the slots have it (or retired it). A version-1 build that drained after the
/// upgrade moved at least one of them.
fn is_an_older_copy(old: &Manifest, slots: &Manifest) -> bool {
    old.target_id == slots.target_id
        && (old.generation, old.committed_len) <= (slots.generation, slots.committed_len)
        && old.watermarks.iter().all(|(id, w)| {
            slots.watermarks.get(id).is_some_and(|s| w.last_seq <= s.last_seq) || slots.retired.contains_key(id)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalId;
    use crate::target::manifest::Watermark;

    fn at(m: &mut Manifest, id: JournalId, last_seq: u64) {
        m.watermarks.insert(id, Watermark { journal_id: id, last_seq, crc: 0, chain: 0, anchor: 0 });
    }

    /// A restored backup is an older copy; a version-1 drain after the upgrade is not,
    /// however little it moved (a reviewer: a restore followed by such a drain kept the
    /// same id and a shorter length, and was replaced by the stub).
    #[test]
    fn an_older_copy_claims_nothing_the_slots_do_not() {
        let (a, b) = (JournalId::random().unwrap(), JournalId::random().unwrap());
        let mut slots = Manifest::new_adopting(1000, 10, 0, 1).unwrap();
        at(&mut slots, a, 50);
        let mut old = slots.clone();
        old.committed_len = 600;
        at(&mut old, a, 30);
        assert!(is_an_older_copy(&old, &slots), "a backup from before the upgrade");
        let mut further = old.clone();
        at(&mut further, a, 51);
        assert!(!is_an_older_copy(&further, &slots), "a journal drained further");
        let mut unknown = old.clone();
        at(&mut unknown, b, 1);
        assert!(!is_an_older_copy(&unknown, &slots), "a journal the slots never drained");
        slots.retired.insert(b, 0);
        assert!(is_an_older_copy(&unknown, &slots), "a journal retired since: drained whole");
        let mut longer = old.clone();
        longer.committed_len = 1001;
        assert!(!is_an_older_copy(&longer, &slots), "more bytes");
        let mut other = old.clone();
        other.target_id = Manifest::new_adopting(0, 0, 0, 1).unwrap().target_id;
        assert!(!is_an_older_copy(&other, &slots), "another target");
    }
}
