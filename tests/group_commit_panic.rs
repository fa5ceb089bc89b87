//! A panic inside the shared append transaction (a bug) must not leave the other
//! callers of that group, or later callers, waiting forever for a leader that is gone.
//! (Its own test binary: the failpoint makes every append transaction panic.)

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use common::*;

#[test]
fn a_panicking_leader_fails_its_group_instead_of_hanging_it() {
    std::env::set_var("TRIBUTARY_FAILPOINTS", "journal.before_commit=panic");
    let d = tmp();
    let j = Arc::new(journal(&d.path().join("p.journal")));
    let (tx, rx) = mpsc::channel();
    for i in 0..6 {
        let (j, tx) = (Arc::clone(&j), tx.clone());
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| j.append(format!("l{i}").as_bytes())));
            tx.send(r.map(|r| r.map_err(|e| e.to_string()))).unwrap();
        });
    }
    for _ in 0..6 {
        // A hang is the bug: give up after a generous minute instead of blocking CI.
        let outcome = rx.recv_timeout(Duration::from_secs(60)).expect("an append hung after a panicking leader");
        match outcome {
            Err(_) => {}                                                           // the leader: re-raised panic
            Ok(Err(msg)) => assert!(msg.contains("panic in the leader"), "{msg}"), // its group
            Ok(Ok(seq)) => panic!("append {seq} claimed durability although every commit panics"),
        }
    }
    assert_eq!(j.backlog().unwrap().lines, 0);
}
