//! The benchmark lines (100 bytes, recognisable by tag and number) and small file
//! helpers: a SQLite database's three files, lengths, `sync`.

use super::*;

pub(crate) fn make_line(tag: &str, i: u64) -> Vec<u8> {
    const PAD: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    let mut l = format!("{tag} {i:012} ").into_bytes();
    let mut k = 0;
    while l.len() < LINE_LEN {
        l.push(PAD[(i as usize + k) % PAD.len()]);
        k += 1;
    }
    l.truncate(LINE_LEN);
    l
}

pub(crate) fn make_lines(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n as u64).map(|i| make_line(tag, i)).collect()
}

pub(crate) fn sqlite_files(p: &Path) -> [PathBuf; 3] {
    let s = p.as_os_str().to_string_lossy();
    [p.to_path_buf(), PathBuf::from(format!("{s}-wal")), PathBuf::from(format!("{s}-shm"))]
}

pub(crate) fn remove_db(p: &Path) {
    for f in sqlite_files(p) {
        let _ = fs::remove_file(f);
    }
}

pub(crate) fn file_len(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

pub(crate) fn sync_all_filesystems() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}
