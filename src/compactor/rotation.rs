//! Managed rotation (optional, at a round's start): rename the target to
//! `<target>.<generation>`, create a new empty target, commit the next generation
//! (watermarks carry over, so exactly-once holds across it), apply retention.
//!
//! Keeps: a rotation interrupted at any step is completed by the next round or
//! `init`; a `<target>.<n>` that is not one of this target's generations (a logrotate
//! leftover) is never taken for one.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use super::round::CommitKind;
use super::Compactor;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::target::lock::TargetLock;
use crate::target::manifest::{generation_path, Manifest, RotatedGeneration};
use crate::target::scan::scan;

/// How long a rotation waits for this host's client to let go of the target's stale
/// name ([`Compactor::create_once_the_name_is_let_go`]), holding the lock.
const STALE_NAME_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15);

impl Compactor {
    /// A rotation is configured and the current generation reached it.
    pub(super) fn rotation_due(&self, m: &Manifest) -> bool {
        self.rotation_due_at(m.committed_len, m.committed_lines)
    }

    /// [`rotation_due`](Self::rotation_due) for a target that holds `committed_len`
    /// committed bytes in `committed_lines` lines.
    pub(super) fn rotation_due_at(&self, committed_len: u64, committed_lines: u64) -> bool {
        committed_len > 0
            && (self.opts.rotate_bytes.is_some_and(|b| committed_len >= b)
                || self.opts.rotate_lines.is_some_and(|l| committed_lines >= l))
    }

    /// Managed rotation, under the lock, after the tail repair (so the target holds
    /// exactly the committed bytes): rename the target to `<target>.<generation>`, then
    /// [`Compactor::complete_rotation`]. A crash after the rename is completed by the
    /// next round (step 1 finds `<target>.<generation>`); before it, nothing happened.
    pub(super) fn rotate(&self, lock: &TargetLock, m: &Manifest) -> Result<Manifest> {
        let rotated = generation_path(&self.target, m.generation);
        if fs::symlink_metadata(&rotated).is_ok() {
            // This host's client may have mapped the target's name to the manifest's
            // file after another host's rotation renamed it there and was interrupted
            // (rule 6): ask the names again.
            crate::os::fs::refresh_names(&self.target)
                .map_err(|e| Error::io(format!("listing the folder of {}", self.target.display()), e))?;
            match fs::symlink_metadata(&rotated) {
                Ok(md) if m.target_ino != 0 && md.ino() == m.target_ino => return self.complete_rotation(lock, m),
                Ok(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "managed rotation of {} needs the name {}, but a file that is not one of its generations \
                         is there (left by logrotate or by hand?): move it away; nothing was rotated",
                        self.target.display(),
                        rotated.display()
                    )))
                }
                Err(_) => {} // the name was free: this host's answer was stale
            }
        }
        fs::rename(&self.target, &rotated)
            .map_err(|e| Error::io(format!("renaming {} to {}", self.target.display(), rotated.display()), e))?;
        failpoint::hit(failpoint::Point::RotateAfterRename);
        self.complete_rotation(lock, m)
    }

    /// Create the new target when the server has no file at its name but this host's
    /// client still maps the name to the file a rotation renamed away (rule 6): it lets
    /// go once nothing touched that file for about a second (`GlusterFS` with default
    /// caches: 1 s measured; 4–8 s while a reader here read the renamed file). So wait,
    /// touching nothing, up to [`STALE_NAME_PATIENCE`]; then a transient error (the next
    /// round tries again), never "someone else's bytes are at the name".
    fn create_once_the_name_is_let_go(
        &self,
        create: impl Fn() -> std::io::Result<File>,
    ) -> Result<std::io::Result<File>> {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(50);
        while started.elapsed() < STALE_NAME_PATIENCE {
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(500));
            match create() {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                created => return Ok(created),
            }
        }
        Err(Error::io(
            format!(
                "completing a rotation of {}: the server has no file at its name, but this host's filesystem \
                 client has gone on showing the file the rotation renamed away for {} s (a stale name cache, \
                 kept alive while something on this host reads that file); nothing was changed, the next round \
                 tries again",
                self.target.display(),
                STALE_NAME_PATIENCE.as_secs()
            ),
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ))
    }

    /// True when `<target>.<generation>` is the current generation's file, renamed by a
    /// rotation that did not commit (its inode is the manifest's; a manifest that does
    /// not know the inode yet falls back to the name).
    pub(super) fn interrupted_rotation(&self, m: &Manifest) -> bool {
        let renamed = generation_path(&self.target, m.generation);
        match fs::symlink_metadata(&renamed) {
            Ok(md) if m.target_ino == 0 || md.ino() == m.target_ino => true,
            // Another inode (the files were restored from a copy, which renumbers them):
            // still ours if the target's path no longer holds the manifest's file and
            // this one holds exactly the committed bytes.
            Ok(md) if md.is_file() && md.len() == m.committed_len => {
                let target_is_current = fs::symlink_metadata(&self.target).is_ok_and(|t| t.ino() == m.target_ino);
                !target_is_current
                    && File::open(&renamed).and_then(|mut f| scan(&mut f, u64::MAX)).is_ok_and(|(len, lines, crc)| {
                        (len, lines, crc) == (m.committed_len, m.committed_lines, m.committed_crc)
                    })
            }
            _ => false,
        }
    }

    /// The rest of a rotation whose rename is done: create the new empty target,
    /// commit a manifest for the next generation (watermarks carry over, so
    /// exactly-once holds across the rotation; the new file's inode recorded), then
    /// apply the retention setting. Idempotent: every step can be redone after a crash.
    pub(super) fn complete_rotation(&self, lock: &TargetLock, m: &Manifest) -> Result<Manifest> {
        let g = m.generation;
        let rotated = generation_path(&self.target, g);
        // (never through a symlink: its owner and mode are the new generation's)
        let old = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&rotated)
            .map_err(|e| Error::io(format!("opening {}", rotated.display()), e))?;
        let (len, _) = self.target_len_and_ino(&old)?;
        if len != m.committed_len {
            return Err(Error::TornTarget {
                target: rotated,
                detail: format!(
                    "a rotation of generation {g} was interrupted, but the renamed file has {len} bytes where \
                     {} were committed",
                    m.committed_len
                ),
            });
        }
        let create = || OpenOptions::new().write(true).create_new(true).mode(0o644).open(&self.target);
        let exists =
            |r: &std::io::Result<File>| r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists);
        let mut created = create();
        if exists(&created) {
            // This host's client may still map the name to the file just renamed
            // (rule 6): ask the server's listing before taking what is there for the new
            // target.
            let listed = crate::os::fs::listed_on_server(&self.target)
                .map_err(|e| Error::io(format!("listing the folder of {}", self.target.display()), e))?;
            created = create();
            if exists(&created) && listed == Some(false) {
                created = self.create_once_the_name_is_let_go(create)?;
            }
        }
        let ino = match created {
            Ok(f) => {
                carry_owner_and_access(&old, &f);
                f.metadata().map_err(|e| Error::io("fstat of the new target", e))?.ino()
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Made by the interrupted rotation; its size from the server, not a cache.
                let made =
                    File::open(&self.target).map_err(|e| Error::io(format!("opening {}", self.target.display()), e))?;
                let (len, ino) = self.target_len_and_ino(&made)?;
                if len != 0 {
                    return Err(Error::UnexpectedTail {
                        target: self.target.clone(),
                        tail_bytes: len,
                        max_round_bytes: 0,
                    });
                }
                // (the interrupted rotation may have died before it carried them)
                carry_owner_and_access(&old, &made);
                ino
            }
            Err(e) => {
                return Err(Error::io(
                    format!(
                        "creating the new target {} of a managed rotation (generation {} is safe at {}; once the \
                         cause is fixed, e.g. space freed, the next drain finishes the rotation)",
                        self.target.display(),
                        g,
                        rotated.display()
                    ),
                    e,
                ))
            }
        };
        crate::os::fs::sync_dir(&crate::os::fs::parent_dir(&self.target))?;
        failpoint::hit(failpoint::Point::RotateAfterCreate);
        let mut next = m.clone();
        next.epoch += 1;
        next.generation = g + 1;
        next.target_ino = ino;
        next.intent = None;
        next.rotated
            .insert(g, RotatedGeneration { len: m.committed_len, lines: m.committed_lines, crc: m.committed_crc });
        next.committed_len = 0;
        next.committed_lines = 0;
        next.committed_crc = 0;
        if let Some(keep) = self.opts.retain_generations {
            while next.rotated.len() as u64 > keep {
                next.rotated.pop_first();
            }
        }
        self.commit(lock, &next, Some(m), CommitKind::Other)?;
        failpoint::hit(failpoint::Point::RotateAfterCommit);
        // Delete generations no longer kept (also ones a crash left behind before).
        let oldest_kept = next.rotated.keys().next().copied().unwrap_or(next.generation);
        for old in 1..oldest_kept {
            match fs::remove_file(generation_path(&self.target, old)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing generation {old} (retention)"), e)),
            }
        }
        Ok(next)
    }
}

/// The new generation continues the file it follows (`old`, opened without following a
/// symlink): its owner, group, read/write mode and access ACL, as far as this process
/// may set them (best effort). One drain run as root made the new target root's, and
/// every later round of the compactor's own user was refused it — a daemon stalled for
/// good (an outside tester); a reader given access by an ACL lost it at the first
/// rotation once the mode was carried without it (another). Never the set-id, sticky
/// or execute bits (an outside reviewer: a target is data, and set-id bits would
/// survive root's writes).
fn carry_owner_and_access(old: &File, new: &File) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(md) = old.metadata() else { return };
    // (a process that may not give the file away may still give it the group)
    if std::os::unix::fs::fchown(new, Some(md.uid()), Some(md.gid())).is_err() {
        let _ = std::os::unix::fs::fchown(new, None, Some(md.gid()));
    }
    let _ = new.set_permissions(fs::Permissions::from_mode(md.mode() & 0o666));
    let _ = crate::os::sys::copy_access_acl_without_execute(old, new);
}
