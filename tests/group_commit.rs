//! Group commit correctness: concurrent callers share one transaction; when that
//! transaction fails, every caller in it fails and none is told its line is durable.
//! (Its own test binary: it sets a process-wide failpoint and arms the fault seam.)

mod common;

use std::sync::{Arc, Barrier};

use common::*;

#[test]
fn a_failed_shared_transaction_fails_every_caller_in_it_and_stores_nothing() {
    // Every append transaction holds before committing until its `.reached` file is
    // removed: callers that arrive meanwhile queue up and are committed together by the
    // next leader. (No timing: the test waits for the conditions.)
    let d = tmp();
    let fp = d.path().join("fp");
    std::fs::create_dir(&fp).unwrap();
    std::env::set_var(tributary::testing::failpoint::DIR_VAR, &fp);
    std::env::set_var("TRIBUTARY_FAILPOINTS", "journal.before_commit=hold");
    let reached = fp.join("journal.before_commit.reached");
    let wait_reached = || {
        while !reached.exists() {
            std::thread::yield_now();
        }
    };
    let (spool, target) = paths(d.path());
    init(&target); // before the fault seam is armed: it counts only the journal's commits
    let j = Arc::new(journal(&spool.join("g.journal")));
    // Transaction 1 (the first leader alone) succeeds; transaction 2 (the group) fails.
    tributary::testing::fault::fail_nth(2);
    let first = {
        let j = Arc::clone(&j);
        std::thread::spawn(move || j.append(b"leader"))
    };
    wait_reached(); // the leader is inside its transaction
    let start = Arc::new(Barrier::new(8));
    let group: Vec<_> = (0..8)
        .map(|i| {
            let (j, start) = (Arc::clone(&j), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                j.append(format!("follower {i}").as_bytes())
            })
        })
        .collect();
    while j.queued_appends() < 8 {
        std::thread::yield_now();
    }
    std::fs::remove_file(&reached).unwrap(); // the leader commits; the group's leader follows
    wait_reached();
    std::fs::remove_file(&reached).unwrap();
    assert_eq!(first.join().unwrap().unwrap(), 1);
    let results: Vec<_> = group.into_iter().map(|t| t.join().unwrap()).collect();
    let checked = tributary::testing::fault::disarm();
    assert_eq!(checked, 2, "exactly two transactions: the leader's and the group's");
    for r in &results {
        let e = r.as_ref().expect_err("no caller of the failed transaction may be told it is durable");
        assert_eq!(e.kind(), tributary::ErrorKind::Io, "{e}");
        assert!(e.to_string().contains("injected fault"), "{e}");
    }
    let b = j.backlog().unwrap();
    assert_eq!((b.lines, b.last_seq), (1, 1), "the failed group stored nothing and used no seq");
    // The journal still works, and seqs continue without a gap (its commit holds too:
    // let it go once it is there).
    let after = {
        let j = Arc::clone(&j);
        std::thread::spawn(move || j.append(b"after"))
    };
    wait_reached();
    std::fs::remove_file(&reached).unwrap();
    assert_eq!(after.join().unwrap().unwrap(), 2);
    compactor(&target).drain(&[Arc::try_unwrap(j).unwrap()]).unwrap();
    assert_exactly(&target, &[b"leader".to_vec(), b"after".to_vec()]);
}
