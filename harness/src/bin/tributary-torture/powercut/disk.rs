//! The filesystem that is cut: a sparse image on a loop device, mounted; the cut
//! itself (`FS_IOC_SHUTDOWN`); and whether this machine can do any of it.

use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::path_str;

use super::plan::FsKind;
use super::proc::{cmd, in_path};

/// `_IOR('X', 125, __u32)` = (2 << 30) | (4 << 16) | (0x58 << 8) | 125 = 0x8004587D
/// (the same number as XFS_IOC_GOINGDOWN and F2FS_IOC_SHUTDOWN; 125 is 0x7D, not 0x5D).
const FS_IOC_SHUTDOWN: u64 = 0x8004_587D;
/// Shut down without flushing the log: what a power cut does.
const FSOP_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

/// The power cut: `FS_IOC_SHUTDOWN(NOLOGFLUSH)` on an fd of the mounted filesystem.
pub(super) fn shutdown_fs(mnt: &Path) -> std::io::Result<()> {
    let dir = File::open(mnt)?;
    let flags: u32 = FSOP_GOING_FLAGS_NOLOGFLUSH;
    // SAFETY: `dir` is an open descriptor for the whole call, and FS_IOC_SHUTDOWN reads
    // exactly one u32 through the pointer, which points to a live local of that type.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_SHUTDOWN as libc::Ioctl, &flags as *const u32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// fsync a folder (the harness's own folders on the cut filesystem must be durable,
/// or a cut could remove a journal for reasons that are not tributary's).
pub(super) fn sync_dir(p: &Path) -> Result<(), String> {
    File::open(p).and_then(|f| f.sync_all()).map_err(|e| format!("fsync of {}: {e}", p.display()))
}

/// A filesystem in a sparse image on a loop device, mounted on `mnt`. Dropping it
/// unmounts, detaches and removes the image (also after a failure or a panic).
pub(super) struct Disk {
    pub(super) kind: FsKind,
    image: PathBuf,
    dev: Option<String>,
    pub(super) mnt: PathBuf,
    mounted: bool,
}

impl Disk {
    pub(super) fn create(kind: FsKind, work: &Path, mib: u64) -> Result<Disk, String> {
        let image = work.join(format!("{}.img", kind.name()));
        let mnt = work.join(format!("{}.mnt", kind.name()));
        fs::create_dir_all(&mnt).map_err(|e| format!("creating {}: {e}", mnt.display()))?;
        let f = File::create(&image).map_err(|e| format!("creating {}: {e}", image.display()))?;
        f.set_len(mib << 20).map_err(|e| format!("sizing {}: {e}", image.display()))?;
        drop(f);
        let mut d = Disk { kind, image, dev: None, mnt, mounted: false };
        d.dev = Some(cmd("losetup", &["-f", "--show", &path_str(&d.image)])?);
        let (mkfs, opts) = kind.mkfs();
        let mut args: Vec<&str> = opts.to_vec();
        let dev = d.dev.clone().expect("dev");
        args.push(&dev);
        cmd(mkfs, &args)?;
        d.mount()?;
        Ok(d)
    }

    fn dev(&self) -> &str {
        self.dev.as_deref().expect("loop device")
    }

    fn mount(&mut self) -> Result<(), String> {
        cmd("mount", &["-t", self.kind.name(), self.dev(), &path_str(&self.mnt)])?;
        self.mounted = true;
        Ok(())
    }

    fn umount(&mut self) -> Result<(), String> {
        if !self.mounted {
            return Ok(());
        }
        // Every process of the trial was killed and reaped; a busy mount can only be
        // a straggler: retry, then fail loudly.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match cmd("umount", &[&path_str(&self.mnt)]) {
                Ok(_) => {
                    self.mounted = false;
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// After a cut: unmount, mount again (the filesystem replays its log).
    pub(super) fn cycle(&mut self) -> Result<(), String> {
        self.umount()?;
        self.mount()
    }

    /// Unmount and check the filesystem itself (read-only); Some(report) if it is damaged.
    pub(super) fn fsck(&mut self) -> Result<Option<String>, String> {
        self.umount()?;
        let r = match self.kind {
            FsKind::Ext4 => cmd("e2fsck", &["-f", "-n", self.dev()]),
            FsKind::Xfs => cmd("xfs_repair", &["-n", self.dev()]),
        };
        Ok(r.err())
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if self.mounted && self.umount().is_err() {
            let _ = cmd("umount", &["-l", &path_str(&self.mnt)]);
        }
        if let Some(dev) = self.dev.take() {
            let _ = cmd("losetup", &["-d", &dev]);
        }
        let _ = fs::remove_file(&self.image);
        let _ = fs::remove_dir(&self.mnt);
    }
}

/// Why this machine cannot run power cuts (the caller exits 77), if it cannot.
pub(super) fn unsupported(kinds: &[FsKind]) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: loop devices, mkfs and mount need root".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control: this kernel or container has no loop devices".into());
    }
    for p in ["losetup", "mount", "umount"] {
        if !in_path(p) {
            return Some(format!("`{p}` is not installed"));
        }
    }
    let known = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    for k in kinds {
        let (mkfs, _) = k.mkfs();
        if !in_path(mkfs) {
            return Some(format!(
                "`{mkfs}` is not installed ({})",
                if *k == FsKind::Xfs { "apt-get install xfsprogs" } else { "apt-get install e2fsprogs" }
            ));
        }
        if !known.split_whitespace().any(|w| w == k.name()) {
            return Some(format!("the kernel does not offer {} (/proc/filesystems)", k.name()));
        }
    }
    None
}
