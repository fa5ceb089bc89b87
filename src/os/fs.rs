//! Small filesystem helpers shared by the journal and the target side.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fault;

/// The folder that will hold `path` ("." for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsync a folder, so a rename or a new entry in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fault::check(fault::Step::SidecarFsync).map_err(|e| Error::io(format!("fsync of folder {}", dir.display()), e))?;
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| Error::io(format!("fsync of folder {}", dir.display()), e))
}
