//! The in-place check's inotify watch (issue 12 item 8) is set up by a handle's first
//! append only. Its own test binary: it counts this process's inotify fds, which tests
//! running in parallel threads would change.

mod common;

use common::*;

fn inotify_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("inotify")))
        .count()
}

/// The in-place check's inotify watch is set up by a handle's first append only:
/// inotify instances are limited per user (128 by default), and a compactor holding
/// hundreds of journals open must not take them from the writers.
#[test]
fn only_appending_handles_hold_an_inotify_watch() {
    let d = tmp();
    let (spool, _) = paths(d.path());
    let before = inotify_fds();
    let handles: Vec<_> = (0..5).map(|i| journal(&spool.join(format!("j{i}.journal")))).collect();
    assert_eq!(inotify_fds(), before, "opening journals took inotify instances");
    handles[0].append(b"x").unwrap();
    assert_eq!(inotify_fds(), before + 1, "the appending handle watches its folder");
    handles[0].append(b"y").unwrap();
    assert_eq!(inotify_fds(), before + 1, "one watch per handle");
}
