//! Errors that say what happened and the one thing to do (issue 13 item 8): each case
//! used to give a misleading kind or message.

mod common;

use std::fs;

use common::*;
use tributary::{ErrorKind, Journal, JournalOptions};

/// The same journal under two spellings was "journal_restored … keep only the live
/// copy": an invitation to delete a good journal.
#[test]
fn the_same_journal_given_twice_is_named_as_such() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let p = spool.join("a.journal");
    journal(&p).append(b"x").unwrap();
    let twice = [p.clone(), spool.join(".").join("a.journal")];
    let e = compactor(&target).drain_paths(&twice).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("given twice"), "{e}");
    assert!(!e.to_string().contains("copy"), "{e}");
    // a real copy still is what it is
    fs::copy(&p, spool.join("copy.journal")).unwrap();
    let e = compactor(&target).drain_paths(&[p, spool.join("copy.journal")]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JournalRestored, "{e}");
}

/// A symlinked `*.journal` in a spool was skipped without a word.
#[test]
fn a_symlinked_journal_in_a_spool_is_named_and_the_others_drain() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    journal(&spool.join("good.journal")).append(b"good").unwrap();
    let elsewhere = d.path().join("elsewhere.journal");
    journal(&elsewhere).append(b"linked").unwrap();
    std::os::unix::fs::symlink(&elsewhere, spool.join("linked.journal")).unwrap();
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("linked.journal") && err.contains("symlink"), "{err}");
    assert_exactly(&target, &[b"good".to_vec()]);
}

/// A journal in a folder that does not exist said "I/O error while statfs of …".
#[test]
fn a_journal_in_a_missing_folder_says_the_folder_is_missing() {
    let d = tmp();
    let p = d.path().join("no-such-folder").join("a.journal");
    let e = Journal::open(&p, JournalOptions::default()).expect_err("opened a journal in a missing folder");
    assert!(e.to_string().contains("does not exist (create it first)"), "{e}");
    assert!(!e.to_string().contains("statfs"), "{e}");
}

/// A line over the limit did not say which setting limits it.
#[test]
fn a_line_over_the_limit_names_the_setting() {
    let d = tmp();
    let j = journal(&d.path().join("a.journal"));
    let e = j.append(&vec![b'x'; 2 << 20]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidLine, "{e}");
    assert!(e.to_string().contains("--max-line-bytes"), "{e}");
    let out = std::process::Command::new(bin())
        .args(["append", "--journal", &s(&d.path().join("b.journal"))])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            feed(&mut c, &vec![b'y'; 2 << 20]);
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--max-line-bytes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A removed sidecar folder said "journal_foreign … another target".
#[test]
fn a_removed_sidecar_is_target_missing_not_a_foreign_journal() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let j = journal(&spool.join("a.journal"));
    j.append(b"x").unwrap();
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    fs::remove_dir_all(tributary::Sidecar::for_target(&target).dir).unwrap();
    j.append(b"y").unwrap();
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TargetMissing, "{e}");
    assert!(e.to_string().contains("tributary init"), "{e}");
}
