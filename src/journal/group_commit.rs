//! Group commit: concurrent callers share one transaction (one fsync).
//!
//! Owns the leader/follower protocol and nothing of `SQLite`: the caller hands in the
//! function that commits a group, so this file is unit-tested with a plain closure.
//!
//! Keeps: every caller gets exactly its own outcome, once; a group is committed by
//! exactly one thread; a commit that fails or panics fails every caller of its group
//! (nobody is left waiting for a leader that is gone); leadership passes on to a
//! queued caller, so a queue never waits without a leader.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::sync::Mutex;

use crate::error::{Error, Result};
use crate::os::sys;

/// What one caller gets: the seq of each of its lines.
pub(super) type Outcome = Result<Vec<u64>>;

/// How long a leader waits for the recent peak number of callers.
const GROUP_WAIT: Duration = Duration::from_micros(100);

/// One queued caller: its payload and the slot it waits on.
pub(super) struct Request<P> {
    pub(super) payload: P,
    slot: Slot,
}

/// A queued caller's outcome, set by the leader that served it. Callers sleep on the
/// group's `epoch` futex, so a leader wakes its whole group with one system call
/// (waking each caller in turn took ~4 µs apiece, 60 µs for a group of 16).
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Waiting,
    /// The previous leader handed leadership to this caller.
    Lead,
    Done(Outcome),
}

impl Slot {
    fn set(&self, to: SlotState) {
        *self.state.lock() = to;
    }

    /// What the slot holds, leaving it `Waiting` (as it was, if it was).
    fn take(&self) -> SlotState {
        std::mem::take(&mut *self.state.lock())
    }
}

/// What a caller of [`GroupCommit::submit`] does next.
enum Role {
    /// Wait for a leader to fill this caller's slot (or hand it the leadership).
    Follow,
    /// Lead: wait briefly for the group to fill up.
    Gather,
    /// Lead: commit the queued group now.
    Commit,
}

struct GroupState<P> {
    queue: Vec<Arc<Request<P>>>,
    /// A leader is gathering or committing (or was just handed leadership).
    leader_active: bool,
    /// The leader is waiting for callers to complete its group...
    gathering: bool,
    /// ...the gather numbered this (so a taken-over gatherer that wakes up late does
    /// not mistake a later leader's gather for its own).
    gather_id: u64,
    /// Size of the largest recent group; decays by one whenever a leader's wait for
    /// that many callers times out.
    peak_group: usize,
}

/// The queue of callers and the futex they sleep on.
pub(super) struct GroupCommit<P> {
    state: Mutex<GroupState<P>>,
    /// Bumped (and futex-woken) whenever a leader has filled its callers' slots.
    epoch: AtomicU32,
}

impl<P> Default for GroupCommit<P> {
    fn default() -> Self {
        GroupCommit {
            state: Mutex::new(GroupState {
                queue: Vec::new(),
                leader_active: false,
                gathering: false,
                gather_id: 0,
                peak_group: 0,
            }),
            epoch: AtomicU32::new(0),
        }
    }
}

impl<P> GroupCommit<P> {
    /// Callers queued, waiting for a leader's commit (a test seam: lets a test know a
    /// group has formed without waiting for a time).
    pub(super) fn queued(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Queue `payload` and return its outcome. The first caller to find no leader
    /// commits every queued request with one call of `commit` (which returns one
    /// outcome per request, in order, or an error that fails them all); the others
    /// wait on their own slot for their outcome, or to be handed the leadership of the
    /// next group (then their own `commit` is the one called).
    pub(super) fn submit(
        &self,
        payload: P,
        commit: impl FnOnce(&[Arc<Request<P>>]) -> Result<Vec<Outcome>>,
    ) -> Outcome {
        let req = Arc::new(Request { payload, slot: Slot::default() });
        let mut g = self.state.lock();
        g.queue.push(Arc::clone(&req));
        let mut role = if !g.leader_active {
            g.leader_active = true;
            Role::Gather
        } else if g.gathering && g.queue.len() >= g.peak_group {
            // This caller completes the group a leader is gathering: commit it from
            // this running thread rather than wake the gatherer, which on a busy
            // machine waits for a core; the gatherer finds its request taken.
            g.gathering = false;
            Role::Commit
        } else {
            Role::Follow
        };
        loop {
            role = match role {
                Role::Commit => break,
                Role::Follow => {
                    drop(g);
                    if let Some(result) = self.await_slot(&req) {
                        return result;
                    }
                    g = self.state.lock(); // handed the leadership
                    Role::Gather
                }
                Role::Gather => {
                    // Callers come in two cohorts: those that queued during the last
                    // commit, and those that just got their result and append again.
                    // Waiting briefly for the recent peak merges them (half as many
                    // fsyncs); a lone writer has a peak of 1 and never waits. Nobody wakes
                    // a gatherer: the caller that completes its group takes it over.
                    if g.queue.len() >= g.peak_group {
                        Role::Commit
                    } else {
                        g.gathering = true;
                        g.gather_id += 1;
                        let mine = g.gather_id;
                        drop(g);
                        std::thread::sleep(GROUP_WAIT);
                        g = self.state.lock();
                        // Still this gather (a later leader's gather has another id)? If
                        // not, it was taken over and this request is in the taker's group.
                        if g.gathering && g.gather_id == mine {
                            if g.queue.len() < g.peak_group {
                                g.peak_group -= 1;
                            }
                            g.gathering = false;
                            Role::Commit
                        } else {
                            Role::Follow
                        }
                    }
                }
            };
        }
        let batch = std::mem::take(&mut g.queue);
        g.peak_group = g.peak_group.max(batch.len());
        drop(g);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(&batch)));
        // Hand the leadership on (woken with this group below), so the next group
        // gathers while these callers wake up and append again.
        let handed_on = {
            let mut g = self.state.lock();
            if let Some(next) = g.queue.first() {
                next.slot.set(SlotState::Lead);
                true
            } else {
                g.leader_active = false;
                false
            }
        };
        let wake = |epoch: &AtomicU32| {
            if handed_on || batch.len() > 1 {
                epoch.fetch_add(1, Ordering::Release);
                sys::futex_wake_all(epoch);
            }
        };
        let mut own = None;
        let mut deliver = |r: &Arc<Request<P>>, result: Outcome| {
            if Arc::ptr_eq(r, &req) {
                own = Some(result);
            } else {
                r.slot.set(SlotState::Done(result));
            }
        };
        match outcome {
            Ok(Ok(per_request)) if per_request.len() == batch.len() => {
                for (r, result) in batch.iter().zip(per_request) {
                    deliver(r, result);
                }
            }
            Ok(Ok(per_request)) => {
                let e = format!("a group commit returned {} outcomes for {} requests", per_request.len(), batch.len());
                for r in &batch {
                    deliver(r, Err(Error::io("appending", io::Error::other(e.clone()))));
                }
            }
            Ok(Err(e)) => batch.iter().for_each(|r| deliver(r, Err(e.duplicate()))),
            Err(panic) => {
                // A bug: fail every caller of this group instead of leaving them
                // waiting for a leader that is gone, then let the panic continue.
                for r in &batch {
                    deliver(r, Err(Error::io("appending", io::Error::other("panic in the leader"))));
                }
                wake(&self.epoch);
                std::panic::resume_unwind(panic);
            }
        }
        wake(&self.epoch);
        own.expect("the leader's own request is in its group")
    }

    /// Sleep until a leader filled `req`'s slot: `Some(result)`, or `None` when this
    /// caller was handed the leadership.
    fn await_slot(&self, req: &Request<P>) -> Option<Outcome> {
        loop {
            let epoch = self.epoch.load(Ordering::Acquire);
            match req.slot.take() {
                SlotState::Done(outcome) => return Some(outcome),
                SlotState::Lead => return None,
                SlotState::Waiting => sys::futex_wait(&self.epoch, epoch),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A committer that hands out consecutive "seqs", one per unit of payload.
    #[allow(clippy::unnecessary_wraps)] // the signature GroupCommit::submit takes
    fn seqs(next: &AtomicUsize, batch: &[Arc<Request<usize>>]) -> Result<Vec<Outcome>> {
        Ok(batch
            .iter()
            .map(|r| {
                let first = next.fetch_add(r.payload, Ordering::SeqCst) as u64;
                Ok((first..first + r.payload as u64).collect())
            })
            .collect())
    }

    /// A caller that leads the first group (seq 1) and commits it only once `waiting`
    /// callers queued behind it; returns once it is committing (a condition, not a time).
    fn leader_waiting_for(g: &Arc<GroupCommit<usize>>, waiting: usize) -> std::thread::JoinHandle<Outcome> {
        let leader = {
            let g = Arc::clone(g);
            std::thread::spawn(move || {
                g.submit(1, |_| {
                    while g.queued() < waiting {
                        std::thread::yield_now();
                    }
                    Ok(vec![Ok(vec![1])])
                })
            })
        };
        while g.queued() != 0 || !g.state.lock().leader_active {
            std::thread::yield_now();
        }
        leader
    }

    #[test]
    fn a_lone_caller_commits_its_own_request() {
        let g = GroupCommit::default();
        let next = AtomicUsize::new(1);
        let mut calls = 0;
        let out = g
            .submit(3, |b| {
                calls += 1;
                seqs(&next, b)
            })
            .unwrap();
        assert_eq!(out, vec![1, 2, 3]);
        assert_eq!(calls, 1);
        assert_eq!(g.queued(), 0);
    }

    /// While a leader commits, the callers that queue meanwhile form the next group:
    /// one commit serves all of them, and each gets its own seqs.
    #[test]
    fn callers_queued_during_a_commit_share_the_next_one() {
        const FOLLOWERS: usize = 7;
        let g = Arc::new(GroupCommit::default());
        let next = Arc::new(AtomicUsize::new(1));
        let commits = Arc::new(Mutex::new(Vec::<usize>::new()));
        // The leader's commit waits (for a condition, not a time) until every follower
        // is queued behind it.
        let leader = {
            let (g, next, commits) = (Arc::clone(&g), Arc::clone(&next), Arc::clone(&commits));
            std::thread::spawn(move || {
                g.submit(1, |b| {
                    while g.queued() < FOLLOWERS {
                        std::thread::yield_now();
                    }
                    commits.lock().push(b.len());
                    seqs(&next, b)
                })
            })
        };
        while g.queued() != 0 || !g.state.lock().leader_active {
            std::thread::yield_now(); // the leader took its request off the queue
        }
        let followers: Vec<_> = (0..FOLLOWERS)
            .map(|_| {
                let (g, next, commits) = (Arc::clone(&g), Arc::clone(&next), Arc::clone(&commits));
                std::thread::spawn(move || {
                    g.submit(2, |b| {
                        commits.lock().push(b.len());
                        seqs(&next, b)
                    })
                })
            })
            .collect();
        assert_eq!(leader.join().unwrap().unwrap(), vec![1]);
        let mut all: Vec<u64> = followers.into_iter().flat_map(|t| t.join().unwrap().unwrap()).collect();
        all.sort_unstable();
        assert_eq!(all, (2..2 + 2 * FOLLOWERS as u64).collect::<Vec<_>>(), "each caller got its own seqs");
        assert_eq!(*commits.lock(), vec![1, FOLLOWERS], "the followers were not committed as one group");
    }

    #[test]
    fn a_failed_commit_fails_every_caller_of_its_group() {
        let g = Arc::new(GroupCommit::<usize>::default());
        let leader = leader_waiting_for(&g, 2);
        let failing: Vec<_> = (0..2)
            .map(|_| {
                let g = Arc::clone(&g);
                std::thread::spawn(move || g.submit(1, |_| Err(Error::InvalidArgument("the disk said no".into()))))
            })
            .collect();
        assert!(leader.join().unwrap().is_ok());
        for t in failing {
            let e = t.join().unwrap().unwrap_err();
            assert!(e.to_string().contains("the disk said no"), "{e}");
        }
        assert!(!g.state.lock().leader_active, "no leader may stay behind");
    }

    #[test]
    fn a_commit_with_the_wrong_number_of_outcomes_is_an_error_not_a_hang() {
        let g = GroupCommit::<usize>::default();
        let e = g.submit(1, |_| Ok(vec![])).unwrap_err();
        assert!(e.to_string().contains("0 outcomes for 1 requests"), "{e}");
    }

    /// A panicking commit (a bug) must not leave the rest of its group waiting
    /// forever: they get an error, the panic continues in the leader's thread, and the
    /// next caller still commits.
    #[test]
    fn a_panicking_commit_fails_its_group_and_the_queue_goes_on() {
        let g = Arc::new(GroupCommit::<usize>::default());
        let first = leader_waiting_for(&g, 2);
        // queued first, so handed the leadership of the second group: its commit panics
        let panicking = {
            let g = Arc::clone(&g);
            std::thread::spawn(move || g.submit(1, |_| panic!("a bug in the committer")))
        };
        while g.queued() < 1 {
            std::thread::yield_now();
        }
        let follower = {
            let g = Arc::clone(&g);
            std::thread::spawn(move || g.submit(1, |_| Ok(vec![Ok(vec![9])])))
        };
        assert_eq!(first.join().unwrap().unwrap(), vec![1]);
        assert!(panicking.join().is_err(), "the leader's panic was swallowed");
        let e = follower.join().unwrap().unwrap_err();
        assert!(e.to_string().contains("panic in the leader"), "{e}");
        assert_eq!(g.submit(1, |_| Ok(vec![Ok(vec![10])])).unwrap(), vec![10]);
    }
}
