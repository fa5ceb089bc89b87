//! Filesystem safety checks: a journal must live on a local filesystem (`SQLite` WAL
//! needs shared memory that only one host sees), and a target must live on a mount
//! whose record locks are enforced across hosts.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::os::fs::parent_dir;
use crate::os::sys;

/// `statfs` magic numbers of network / cluster filesystems (linux/magic.h and the
/// filesystems' own headers). FUSE is included: `GlusterFS`, sshfs, s3fs, CephFS-fuse and
/// most other FUSE filesystems are remote.
const NETWORK_FS_MAGICS: &[(i64, &str)] = &[
    (0x6969, "NFS"),
    (0x517B, "SMB"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x00C3_6400, "CephFS"),
    (FUSE_MAGIC, "FUSE (GlusterFS, sshfs, ceph-fuse, ...)"),
    (0x5346_414F, "AFS"),
    (0x6B41_4653, "kAFS"),
    (0x7375_7245, "Coda"),
    (0x564C, "NCP"),
    (0x0102_1997, "9P"),
    (0x7461_636F, "OCFS2"),
    (0x0116_1970, "GFS2"),
    (0x0BD0_0BD0, "Lustre"),
    (0x1373, "devfs"),
];

/// Name of the network filesystem with this magic, if it is one.
pub fn network_fs_name(magic: i64) -> Option<&'static str> {
    NETWORK_FS_MAGICS.iter().find(|(m, _)| *m == magic).map(|(_, n)| *n)
}

/// True when the folder of `path` is on a network filesystem (false when that cannot be
/// told: only a cost decision rests on it, never safety).
pub fn on_network_fs(path: &Path) -> bool {
    sys::statfs_magic(&parent_dir(path)).is_ok_and(|magic| network_fs_name(magic).is_some())
}

/// Refuse a journal whose folder is on a network filesystem.
pub fn check_journal_location(journal: &Path) -> Result<()> {
    let dir = parent_dir(journal);
    let magic = sys::statfs_magic(&dir).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "opening journal {}: its folder {} does not exist (create it first)",
                journal.display(),
                dir.display()
            )
        } else {
            format!("inspecting the filesystem of the journal's folder {}", dir.display())
        };
        Error::io(what, e)
    })?;
    if let Some(name) = network_fs_name(magic) {
        return Err(Error::UnsafeFilesystem {
            path: journal.to_path_buf(),
            detail: format!(
                "the journal's folder is on {name} (statfs magic {magic:#x}); SQLite WAL needs a local disk. \
                 Put journals on the writer host's local disk (the target may be shared), or pass \
                 allow_network_fs / --allow-network-fs if this filesystem really is host-local"
            ),
        });
    }
    Ok(())
}

/// Refuse a target reached by a second name (rule 5 of docs/design.md). A target's lock
/// and manifest live beside the name it is given, so a symlink to it, or a hard link,
/// would give one file two locks and two manifests, and two hosts draining through the
/// two names would truncate each other's committed lines. A target that does not
/// exist yet is fine.
pub fn check_target_name(target: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = match std::fs::symlink_metadata(target) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("inspecting target {}", target.display()), e)),
    };
    let why = "tributary keeps a target's lock and manifest beside the name it is given, so every host and \
               every reader must use the file's one real name";
    if md.file_type().is_symlink() {
        let real =
            std::fs::canonicalize(target).map_or_else(|_| "(it points nowhere)".into(), |p| p.display().to_string());
        return Err(Error::InvalidArgument(format!(
            "target {} is a symlink to {real}: give the real path instead ({why})",
            target.display()
        )));
    }
    if md.is_dir() {
        return Err(Error::InvalidArgument(format!("target {} is a folder, not a file", target.display())));
    }
    if !md.is_file() {
        // a FIFO, a device, a socket: `init` made a sidecar beside /dev/null, `status`
        // blocked for ever opening a FIFO (an outside tester)
        return Err(Error::InvalidArgument(format!(
            "target {} is not a regular file (a FIFO, a device or a socket): a target is a plain file on a shared \
             filesystem; nothing was touched",
            target.display()
        )));
    }
    if md.nlink() > 1 {
        return Err(Error::InvalidArgument(format!(
            "target {} has {} names (a hard link was made to it): remove the other names, keep one ({why})",
            target.display(),
            md.nlink()
        )));
    }
    Ok(())
}

/// One line of /proc/self/mountinfo that matters to us.
#[derive(Debug, Clone)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub options: Vec<String>,
}

/// The mount that holds `path` (longest mount-point prefix of its canonical form).
pub fn mount_of(path: &Path) -> Option<MountEntry> {
    let canon = path.canonicalize().ok()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<MountEntry> = None;
    for line in text.lines() {
        let Some(entry) = parse_mountinfo_line(line) else { continue };
        if canon.starts_with(&entry.mount_point)
            && best.as_ref().is_none_or(|b| entry.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len())
        {
            best = Some(entry);
        }
    }
    best
}

fn unescape_mount_path(s: &str) -> PathBuf {
    // mountinfo escapes space, tab, newline and backslash as \ooo
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    // id parent major:minor root mount_point mount_opts [optional...] - fstype source super_opts
    let (left, right) = line.split_once(" - ")?;
    let lf: Vec<&str> = left.split(' ').collect();
    let rf: Vec<&str> = right.split(' ').collect();
    if lf.len() < 6 || rf.len() < 3 {
        return None;
    }
    let mut options: Vec<String> = lf[5].split(',').map(str::to_string).collect();
    options.extend(rf[2].split(',').map(str::to_string));
    Some(MountEntry { mount_point: unescape_mount_path(lf[4]), fs_type: rf[0].to_string(), options })
}

/// FUSE filesystems whose record locks are their servers' — one lock for every client
/// mount — and whose sizes `fsync` + `statx(AT_STATX_FORCE_SYNC)` fetch fresh
/// (`/proc/self/mountinfo` types; `fuseblk` is a local block device's, one mount).
const FUSE_SHARED_LOCKS: &[&str] = &["fuse.glusterfs", "fuse.ceph-fuse", "fuseblk"];

/// Further FUSE types an operator vouches for, comma-separated (docs/multihost.md).
pub const FUSE_SHARED_LOCKS_VAR: &str = "TRIBUTARY_FUSE_SHARED_LOCKS";

/// Refuse a target on a FUSE filesystem not known to share its locks across mounts
/// (rule 6 of docs/design.md): sshfs, bindfs, s3fs, rclone and most FUSE filesystems
/// leave record locks to the kernel, which keeps them per mount, so two compactors
/// through two mounts both "hold" the lock (an outside tester: 1,162 lines lost and
/// 1,162 duplicated through two sshfs mounts; bindfs beside the real folder rolled a
/// watermark back), and their attribute caches are not bypassed (a reader on another
/// sshfs mount saw the target "truncated"). For every front end that touches a target:
/// drains, `init`, readers, `verify`, `status`. One `statfs`, and `/proc/self/mountinfo`
/// only on FUSE.
pub fn check_target_fuse(target: &Path) -> Result<()> {
    let dir = parent_dir(target);
    if !sys::statfs_magic(&dir).is_ok_and(|magic| magic == FUSE_MAGIC) {
        return Ok(());
    }
    let Some(m) = mount_of(&dir) else { return Ok(()) };
    let vouched = std::env::var(FUSE_SHARED_LOCKS_VAR).unwrap_or_default();
    if !fuse_locks_unshared(&m.fs_type, &vouched) {
        return Ok(());
    }
    Err(Error::UnsafeFilesystem {
        path: target.to_path_buf(),
        detail: format!(
            "the target's mount {} is `{}`, a FUSE filesystem whose locks are not known to be shared by its \
             mounts: sshfs, bindfs and most FUSE filesystems keep a lock inside one mount, so two compactors \
             reaching the target through two mounts would both hold it and lose lines. Put the target on \
             GlusterFS, CephFS, NFS with locking, or a local disk; if this filesystem's server does enforce \
             POSIX locks for every client mount, name its type in the environment: {FUSE_SHARED_LOCKS_VAR}={}",
            m.mount_point.display(),
            m.fs_type,
            m.fs_type
        ),
    })
}

/// The FUSE `statfs` magic.
const FUSE_MAGIC: i64 = 0x6573_5546;

/// Whether a FUSE mount of `fs_type` keeps its locks per mount: not a known type with
/// shared locks, nor one named in `vouched` (comma-separated) — exactly: `fuse` vouched
/// for (bindfs shows no subtype) must not take `fuse.sshfs` in (an outside tester).
fn fuse_locks_unshared(fs_type: &str, vouched: &str) -> bool {
    !FUSE_SHARED_LOCKS.contains(&fs_type) && !vouched.split(',').map(str::trim).any(|t| t == fs_type)
}

/// Refuse a target on a mount whose locks are host-local (NFS `nolock`,
/// `local_lock=all|posix`, a FUSE filesystem that keeps locks per mount: [`check_target_fuse`]):
/// two hosts would both "hold" the lock. tributary takes OFD
/// locks, which the NFS client handles as POSIX locks, so `local_lock=flock` is fine.
pub fn check_target_mount(target: &Path) -> Result<()> {
    check_target_fuse(target)?;
    let dir = parent_dir(target);
    let Some(m) = mount_of(&dir) else { return Ok(()) };
    if let Some(reason) = host_local_lock_reason(&m) {
        return Err(Error::UnsafeFilesystem {
            path: target.to_path_buf(),
            detail: format!(
                "the target's mount {} ({}) has `{reason}`: its locks are local to this host, so two \
                 compactors on different hosts would both hold the lock. Remount without it",
                m.mount_point.display(),
                m.fs_type
            ),
        });
    }
    Ok(())
}

fn host_local_lock_reason(m: &MountEntry) -> Option<String> {
    if !m.fs_type.starts_with("nfs") {
        return None;
    }
    m.options.iter().find(|o| matches!(o.as_str(), "nolock" | "local_lock=all" | "local_lock=posix")).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_network_magics() {
        assert_eq!(network_fs_name(0x6969), Some("NFS"));
        assert!(network_fs_name(0x6573_5546).unwrap().starts_with("FUSE"));
        assert_eq!(network_fs_name(0xEF53), None); // ext4
        assert_eq!(network_fs_name(0x0102_1994), None); // tmpfs
    }

    #[test]
    fn parses_mountinfo_and_flags_host_local_nfs_locks() {
        let l = "36 35 0:40 / /mnt/a\\040b rw,relatime shared:1 - nfs4 srv:/x rw,vers=4.2,local_lock=posix";
        let m = parse_mountinfo_line(l).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/mnt/a b"));
        assert_eq!(host_local_lock_reason(&m).as_deref(), Some("local_lock=posix"));
        let ok = parse_mountinfo_line("36 35 0:40 / /mnt/c rw - nfs srv:/x rw,local_lock=flock").unwrap();
        assert_eq!(host_local_lock_reason(&ok), None);
        let ext = parse_mountinfo_line("1 0 8:1 / / rw - ext4 /dev/sda1 rw,nolock").unwrap();
        assert_eq!(host_local_lock_reason(&ext), None);
    }

    #[test]
    fn only_fuse_types_known_or_vouched_for_share_their_locks() {
        for shared in ["fuse.glusterfs", "fuse.ceph-fuse", "fuseblk"] {
            assert!(!fuse_locks_unshared(shared, ""), "{shared}");
        }
        for alone in ["fuse.sshfs", "fuse", "fuse.bindfs", "fuse.rclone", "fuse.glusterfsx"] {
            assert!(fuse_locks_unshared(alone, ""), "{alone}");
        }
        assert!(!fuse_locks_unshared("fuse.juicefs", "fuse.mfs, fuse.juicefs"));
        assert!(fuse_locks_unshared("fuse.sshfs", " ,fuse.juicefs"));
        assert!(!fuse_locks_unshared("fuse", "fuse"));
        assert!(fuse_locks_unshared("fuse.sshfs", "fuse"), "a plain `fuse` vouched for took sshfs in");
    }

    #[test]
    fn local_tmp_dir_is_accepted_for_journals() {
        let d = tempfile::tempdir().unwrap();
        check_journal_location(&d.path().join("j.journal")).unwrap();
    }
}
