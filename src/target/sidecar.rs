//! A target's sidecar folder, `<target>.tributary/`: its paths, its safety, and the
//! version-1 manifest file in it (read once for an upgrade, then a stub).
//!
//! Keeps: the folder is never a symlink nor world-writable (anyone could then plant
//! a lock file); its name is durable once created (O6); `sidecar/manifest` is
//! replaced whole (temp file, fsync, rename, folder fsync) and, once the manifest
//! moved into the lock file's slots, holds the stub that stops version-1 binaries.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::manifest::{decode_file, with_crc, ManifestFile, STUB_BODY};
use crate::error::{Error, Result};
use crate::os::fs::{parent_dir, sync_dir};
use crate::os::sys;

/// A version-1 manifest file larger than this is not one of ours.
const MAX_MANIFEST_FILE_BYTES: u64 = 64 << 20;

/// The paths of a target's sidecar folder (`<target>.tributary/`).
#[derive(Debug, Clone)]
pub struct Sidecar {
    /// The folder, `<target>.tributary/` beside the target.
    pub dir: PathBuf,
    /// The lock file, `<dir>/lock`; since manifest format 2 it also holds the manifest.
    pub lock: PathBuf,
    /// The version-1 manifest file; in version 2 a stub that stops version-1 binaries.
    pub manifest: PathBuf,
}

const TEMP_PREFIX: &str = "manifest.tmp.";

impl Sidecar {
    /// The sidecar paths of `target` (nothing is touched).
    #[must_use]
    pub fn for_target(target: &Path) -> Sidecar {
        let mut name = target.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
        name.push(".tributary");
        let dir = parent_dir(target).join(name);
        Sidecar { lock: dir.join("lock"), manifest: dir.join("manifest"), dir }
    }

    /// Create the folder (0755) if needed, its name made durable (O6); refuse a symlink
    /// or a world-writable folder (anyone could then plant a lock file). Only `init`
    /// creates a sidecar.
    pub(crate) fn create(&self) -> Result<()> {
        let started = std::time::Instant::now();
        loop {
            self.make_folder()?;
            // The folder is there (made now, or found): a look that misses it is, on a
            // network filesystem, this client's or the server's passing state —
            // GlusterFS with default caches, after a busy run of renames and unlinks,
            // answered `mkdir` "exists" and `lstat` "no such file" for a name nobody
            // had made (an `init` failed "inspecting sidecar folder: No such file").
            // Make it again, look again, a while.
            match self.check_safe() {
                Err(Error::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound
                        && started.elapsed() < crate::reader::CACHE_PATIENCE
                        && crate::os::fscheck::on_network_fs(&self.dir) =>
                {
                    let _ = crate::os::fs::refresh_names(&self.dir);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }

    /// `mkdir` of the folder (0755), its name made durable (O6); one that exists is fine.
    fn make_folder(&self) -> Result<()> {
        match fs::create_dir(&self.dir) {
            Ok(()) => {
                fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755))
                    .map_err(|e| Error::io(format!("setting the mode of {}", self.dir.display()), e))?;
                if let Some(parent) = self.dir.parent() {
                    sync_dir(parent)?;
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = self.dir.parent().unwrap_or(Path::new("."));
                Err(Error::io(
                    format!(
                        "creating sidecar folder {}: the target's folder {} does not exist (is the shared \
                         filesystem mounted?)",
                        self.dir.display(),
                        parent.display()
                    ),
                    e,
                ))
            }
            Err(e) => Err(Error::io(format!("creating sidecar folder {}", self.dir.display()), e)),
        }
    }

    /// Whether the lock file is missing (a lookup that finds nothing; any other
    /// answer, an error included, is not "missing").
    pub(crate) fn lock_file_missing(&self) -> bool {
        matches!(fs::symlink_metadata(&self.lock), Err(e) if e.kind() == io::ErrorKind::NotFound)
    }

    /// The error for a lock file that is gone although the stub says the manifest
    /// moved into it (deleted by a cleanup job, say): the watermarks are lost, so no
    /// drain may write and no `init` may start afresh (an empty manifest would drain
    /// every journal again from its first line).
    pub(crate) fn lost_lock_file(&self) -> Error {
        Error::CorruptManifest {
            path: self.lock.clone(),
            detail: "this lock file, which holds the target's manifest (its watermarks), is gone although the \
                     sidecar says the manifest moved into it: it was deleted or moved. Nothing was created. If it \
                     was moved, put that same file back; without it the target cannot be drained into again \
                     (README \"Operations\", a lost sidecar)"
                .into(),
        }
    }

    /// A sidecar folder that holds no manifest beside a target file that holds bytes:
    /// its files were deleted (`rm <target>.tributary/*`), or an `init` adopting that
    /// file stopped before writing any. Which one only a human knows: drains, `verify`
    /// and `tail` said "never initialised", advice that — if tributary ever drained
    /// into the file — starts a new target whose journals are all foreign (an outside
    /// tester). `None` when the folder is missing, the target empty or absent.
    pub(crate) fn emptied(&self, target: &Path) -> Option<Error> {
        let len = fs::metadata(target).ok()?.len();
        if len == 0 || !self.exists() {
            return None;
        }
        Some(Error::CorruptManifest {
            path: self.lock.clone(),
            detail: format!(
                "the sidecar folder {} holds no manifest, yet the target holds {len} bytes: if tributary drained into \
                 it, the sidecar's files were deleted and its watermarks are lost — do not run `tributary init` (README \
                 \"Operations\", a lost sidecar); if no drain ever wrote into it (an `init` that stopped before its \
                 first manifest), `tributary init --target {}` adopts its whole lines",
                self.dir.display(),
                target.display()
            ),
        })
    }

    /// Whether the sidecar folder exists (as anything: [`Sidecar::check_safe`] judges it).
    pub(crate) fn exists(&self) -> bool {
        fs::symlink_metadata(&self.dir).is_ok()
    }

    pub(crate) fn check_safe(&self) -> Result<()> {
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

    /// Remove manifest temp files a killed upgrade left behind (call under the lock);
    /// returns how many were removed.
    ///
    /// # Errors
    /// [`Error::Io`] when the folder cannot be listed or a temp file cannot be removed.
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

    /// Read `sidecar/manifest`; `None` if there is none.
    pub(crate) fn read_manifest_file(&self) -> Result<Option<ManifestFile>> {
        let path = &self.manifest;
        let mut f = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("opening manifest {}", path.display()), e)),
        };
        let mut bytes = Vec::new();
        (&mut f)
            .take(MAX_MANIFEST_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("reading manifest {}", path.display()), e))?;
        if bytes.len() as u64 > MAX_MANIFEST_FILE_BYTES {
            return Err(Error::CorruptManifest { path: path.clone(), detail: "larger than 64 MiB".into() });
        }
        decode_file(&bytes, path).map(Some)
    }

    /// Durably replace `sidecar/manifest` with `bytes` (temp file, fsync, rename,
    /// folder fsync): the version-1 way, used only by the upgrade and for the stub.
    pub(crate) fn write_manifest_file(&self, bytes: &[u8]) -> Result<()> {
        let tmp = self.dir.join(format!("{TEMP_PREFIX}{}.{:016x}", std::process::id(), sys::random_u64()));
        let ctx = |what: &str| format!("{what} {}", tmp.display());
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)
                .map_err(|e| Error::io(ctx("creating manifest temp file"), e))?;
            f.write_all(bytes).map_err(|e| Error::io(ctx("writing"), e))?;
            f.sync_all().map_err(|e| Error::io(ctx("fsync of"), e))?;
            fs::rename(&tmp, &self.manifest).map_err(|e| Error::io(ctx("renaming"), e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        sync_dir(&self.dir)
    }

    /// Write the stub that stops version-1 binaries.
    pub(crate) fn write_stub(&self) -> Result<()> {
        self.write_manifest_file(&with_crc(STUB_BODY.to_string()))
    }
}
