//! Opening a journal must never drop the SQLite locks another connection of the same
//! process holds on it. POSIX record locks belong to the process and the file: closing
//! ANY descriptor of the file drops them all. An open that touched an existing journal
//! through its own descriptor (and closed it) let another process take SQLite's
//! exclusive lock at its close, believe it was the last user, and delete the `-wal`
//! under a live writer (found by the Go cross-language test under load).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn wal(p: &Path) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("{}-wal", p.display()))
}

#[test]
fn a_second_open_in_the_same_process_keeps_the_writer_s_locks() {
    if Command::new("python3").arg("-c").arg("import sqlite3").status().map_or(true, |s| !s.success()) {
        eprintln!("SKIPPED: python3 with sqlite3 is needed to play the other process");
        return;
    }
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let p = spool.join("w.journal");
    let writer = journal(&p);
    writer.append(b"one").unwrap();
    // a second handle in this process (what a drain in the writer's process does)
    let second = tributary::Journal::open_existing(&p, tributary::JournalOptions::default()).unwrap();
    drop(second);
    // another process opens and closes the database: it must see it is not alone
    let code = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute('select count(*) from runs').fetchall(); c.close()",
        p.display().to_string()
    );
    let st = Command::new("python3").arg("-c").arg(&code).status().unwrap();
    assert!(st.success());
    assert!(wal(&p).exists(), "the other process deleted the -wal under the live writer");
    writer.append(b"two").expect("the writer's journal was taken from under it");
    compactor(&target).drain(&[writer]).unwrap();
    assert_exactly(&target, &[b"one".to_vec(), b"two".to_vec()]);
}
