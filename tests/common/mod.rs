//! Helpers shared by the integration tests: real files in temp dirs, the real CLI.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tributary::{Compactor, CompactorOptions, Journal, JournalOptions};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tributary")
}

pub fn cli(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run tributary")
}

pub fn cli_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run tributary")
}

pub fn s(p: &Path) -> String {
    p.display().to_string()
}

pub fn journal(path: &Path) -> Journal {
    Journal::open(path, JournalOptions::default()).expect("open journal")
}

pub fn compactor(target: &Path) -> Compactor {
    Compactor::new(target, CompactorOptions::default()).expect("compactor")
}

/// The target's lines (without `\n`); panics if the file does not end with `\n`.
pub fn lines_of(target: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(target).unwrap_or_default();
    if bytes.is_empty() {
        return Vec::new();
    }
    assert_eq!(bytes.last(), Some(&b'\n'), "target does not end with a newline");
    bytes[..bytes.len() - 1].split(|&b| b == b'\n').map(|l| l.to_vec()).collect()
}

/// How often each line occurs.
pub fn counts(lines: &[Vec<u8>]) -> HashMap<Vec<u8>, usize> {
    let mut m = HashMap::new();
    for l in lines {
        *m.entry(l.clone()).or_insert(0) += 1;
    }
    m
}

/// Assert each of `expected` occurs exactly once and nothing else is in the target.
pub fn assert_exactly(target: &Path, expected: &[Vec<u8>]) {
    let got = lines_of(target);
    let c = counts(&got);
    for e in expected {
        assert_eq!(c.get(e).copied().unwrap_or(0), 1, "line {:?} not exactly once", String::from_utf8_lossy(e));
    }
    assert_eq!(got.len(), expected.len(), "target has extra lines");
    let v = tributary::verify(target).expect("verify runs");
    assert!(v.is_consistent(), "verify: {:?}", v.problems);
}

pub fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range.map(|i| format!("{prefix}-{i:06}").into_bytes()).collect()
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::create_dir_all(dir.join("shared")).unwrap();
    (spool, dir.join("shared").join("out.log"))
}
