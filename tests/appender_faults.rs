//! An `Appender` whose commit fails: the error reaches the caller's `flush`, the records
//! stay queued, the committer retries, and every record is stored once, in push order.
//! (Its own test binary: it arms the process-wide fault seam.)

mod common;

use std::time::Duration;

use common::*;
use tributary::{Appender, AppenderOptions, ErrorKind};

#[test]
fn a_failed_commit_is_reported_to_flush_retried_and_stores_every_record_once_in_order() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let path = spool.join("a.journal");
    // Never lingering out: only flushes make the committer commit.
    let a = Appender::open(&path, AppenderOptions::default().window(Duration::from_secs(7200))).unwrap();
    a.push(b"one").unwrap();
    a.push(b"two").unwrap();
    tributary::testing::fault::fail_nth(1); // the next commit of this process fails
    let e = a.flush().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.to_string().contains("injected fault"), "{e}");
    assert_eq!(a.pending(), 2, "the failed batch stays queued");
    a.push(b"three").unwrap(); // behind the failed batch
    a.flush().unwrap(); // the committer retried (the seam fails once)
    tributary::testing::fault::disarm();
    a.close().unwrap();
    compactor(&target).drain_paths(&[path]).unwrap();
    assert_eq!(lines_of(&target), [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
}
