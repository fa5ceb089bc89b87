//! Which journals this process has open, by inode, and which process opened them.
//!
//! `SQLite` keeps one record per open file per process (its locks, its `-shm` mapping)
//! and `fork()` copies it into the child, where those locks are not held. A child that
//! opened a journal its parent has open would reuse that record, take no real lock, and
//! lose its lines when the parent's last close checkpoints and deletes the `-wal`. So a
//! journal that a parent process has open is refused in the child (issue 12 item 1).

use std::collections::HashMap;
use std::path::Path;

use crate::sync::Mutex;

use crate::error::{Error, Result};

/// (device, inode) -> (the opening process, handles open in it).
type Registry = HashMap<(u64, u64), (u32, usize)>;
static OPEN: Mutex<Option<Registry>> = Mutex::new(None);

pub(super) fn check_not_inherited(path: &Path, inode: (u64, u64)) -> Result<()> {
    let me = std::process::id();
    match OPEN.lock().as_ref().and_then(|m| m.get(&inode).copied()) {
        Some((opener, _)) if opener != me => Err(Error::InvalidArgument(format!(
            "journal {} is open in process {opener}, which this process ({me}) was forked from: SQLite's \
             locks do not carry over fork(), so a handle on it here would hold none and its lines could be \
             lost. Give each process its own journal file (e.g. one per process in the spool), or open \
             journals after fork()",
            path.display()
        ))),
        _ => Ok(()),
    }
}

pub(super) fn opened(inode: (u64, u64)) {
    let me = std::process::id();
    let mut open = OPEN.lock();
    let entry = open.get_or_insert_with(HashMap::new).entry(inode).or_insert((me, 0));
    if entry.0 != me {
        *entry = (me, 0); // the parent's entry was for another file at this inode
    }
    entry.1 += 1;
}

pub(super) fn closed(inode: (u64, u64)) {
    let mut open = OPEN.lock();
    if let Some(m) = open.as_mut() {
        if let Some(e) = m.get_mut(&inode) {
            e.1 -= 1;
            if e.1 == 0 {
                m.remove(&inode);
            }
        }
    }
}
