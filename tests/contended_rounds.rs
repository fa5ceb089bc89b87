//! A round that queued for the target's lock (another compactor held it when it
//! asked) keeps its share short — at most 4 MiB and 100 ms — so hosts that take turns
//! each get one soon; a round that found the lock free takes its full bounds
//! (docs/design.md, "Drain protocol").

mod common;

use std::time::Duration;

use common::*;
use tributary::{Compactor, CompactorOptions, Journal, TargetLock};

/// 6 MiB of lines (6,144 of 1 KiB) in a journal, a target initialised, and a
/// compactor whose own bounds are larger than all of it (64 MiB, an hour).
fn backlog(dir: &std::path::Path) -> (std::path::PathBuf, Journal, Compactor) {
    let (spool, target) = paths(dir);
    init(&target);
    let j = journal(&spool.join("a.journal"));
    let line = vec![b'x'; 1023];
    for _ in 0..6 {
        j.append_batch(&vec![line.as_slice(); 1024]).unwrap();
    }
    let opts = CompactorOptions::default().max_round_time(Duration::from_secs(3600));
    let c = Compactor::new(&target, opts).unwrap();
    (target, j, c)
}

#[test]
fn a_round_that_found_the_lock_free_takes_its_full_bounds() {
    let d = tmp();
    let (target, j, c) = backlog(d.path());
    let r = c.drain_round(std::slice::from_ref(&j), 0).unwrap();
    assert_eq!((r.lines, r.bytes), (6 * 1024, 6 << 20), "one round takes the whole 6 MiB");
    assert_eq!(lines_of(&target).len(), 6 * 1024);
}

#[test]
fn a_round_that_queued_for_the_lock_takes_at_most_4_mib() {
    let d = tmp();
    let (target, j, c) = backlog(d.path());
    let lock_path = tributary::Sidecar::for_target(&target).lock;
    let held = TargetLock::acquire(&lock_path, Duration::from_secs(5), false).unwrap();
    let round = std::thread::spawn(move || {
        let r = c.drain_round(std::slice::from_ref(&j), 0);
        (r, c, j)
    });
    wait_for_blocked_lock_request(&lock_path); // it queued behind the holder
    drop(held);
    let (r, c, j) = round.join().unwrap();
    let r = r.unwrap();
    assert!(r.lines > 0 && r.bytes <= 4 << 20, "a contended round took {} bytes ({} lines)", r.bytes, r.lines);
    // the next round finds the lock free: it takes the rest at once
    let rest = c.drain_round(std::slice::from_ref(&j), 0).unwrap();
    assert_eq!(r.lines + rest.lines, 6 * 1024);
    assert_eq!(lines_of(&target).len(), 6 * 1024);
}
