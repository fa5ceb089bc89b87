//! The plan of a power-cut trial: a pure function of the seed, the filesystem and the
//! trial number (the same seed replays the same plan), and the filesystems cut.

use tributary_harness::rng::{mix, Rng};

/// Failpoints at which a recovery drain can be frozen (each is reached by a drain that
/// has lines to move, which the fresh lines appended before it guarantee).
const RECOVERY_POINTS: &[&str] = &[
    "drain.locked",
    "drain.after_intent",
    "drain.mid_write",
    "drain.after_write",
    "drain.after_fsync",
    "drain.after_temp_manifest",
    "drain.after_rename",
    "drain.after_unlock",
    "drain.mid_record",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FsKind {
    Ext4,
    Xfs,
}

impl FsKind {
    pub(super) fn name(self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Xfs => "xfs",
        }
    }
    pub(super) fn mkfs(self) -> (&'static str, &'static [&'static str]) {
        match self {
            FsKind::Ext4 => ("mkfs.ext4", &["-q", "-F"]),
            FsKind::Xfs => ("mkfs.xfs", &["-q", "-f"]),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durab {
    Full,
    Normal,
}

impl Durab {
    pub(super) fn arg(self) -> &'static str {
        match self {
            Durab::Full => "full",
            Durab::Normal => "normal",
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct WriterPlan {
    pub(super) id: u32,
    pub(super) durability: Durab,
    /// lines per second at most
    pub(super) rate: u64,
    pub(super) max_batch: u64,
    pub(super) mode: WriterMode,
}

/// How a writer appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriterMode {
    /// One journal handle, keyed batches.
    Plain,
    /// Opens its journal for each batch and closes it after (`writer --reopen`).
    Reopen,
    /// Pushes to an `Appender` (background commit), acknowledges after `flush`
    /// (`writer --appender`).
    Appender,
}

impl WriterMode {
    /// The `writer` flag, and the tag in a plan's description.
    pub(super) fn flag(self) -> Option<&'static str> {
        match self {
            WriterMode::Plain => None,
            WriterMode::Reopen => Some("--reopen"),
            WriterMode::Appender => Some("--appender"),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    /// One cut at this failpoint; `adopt`: a pre-existing target written (not synced)
    /// just before the command that creates the target (`init`, or `drain --create` for
    /// `drain.after_write`), which is the one frozen at the point.
    Failpoint {
        point: &'static str,
        adopt: bool,
    },
    Random(RandomPlan),
}

#[derive(Debug, Clone)]
pub(super) struct RandomPlan {
    /// two `compact` daemons (else one daemon and back-to-back `drain`s)
    pub(super) two_daemons: bool,
    pub(super) interval_ms: u64,
    pub(super) max_round_bytes: Option<u64>,
    /// e.g. `--rotate-lines 300`
    pub(super) rotate: Option<(&'static str, u64)>,
    pub(super) retain: Option<u64>,
    /// a pre-existing target written (not synced) before the compactors start
    pub(super) header: bool,
    /// cut once this many lines were acknowledged (all writers) ...
    pub(super) cut_acked: u64,
    /// ... and then, if set, at the next manifest commit
    pub(super) cut_after_commit: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) run: u64,
    pub(super) writers: Vec<WriterPlan>,
    pub(super) kind: Kind,
    /// freeze the first recovery drain at this failpoint and cut again
    pub(super) recovery_cut: Option<&'static str>,
}

impl Plan {
    pub(super) fn cuts(&self) -> u64 {
        1 + u64::from(self.recovery_cut.is_some())
    }

    pub(super) fn retain(&self) -> Option<u64> {
        match &self.kind {
            Kind::Random(r) if r.rotate.is_some() => r.retain,
            Kind::Failpoint { point, .. } if point.starts_with("rotate.") => Some(1),
            _ => None,
        }
    }

    pub(super) fn describe(&self) -> String {
        let ws: Vec<String> = self
            .writers
            .iter()
            .map(|w| {
                format!(
                    "w{}:{}{}",
                    w.id,
                    w.durability.arg(),
                    w.mode.flag().map_or(String::new(), |f| f.replace("--", "+"))
                )
            })
            .collect();
        let mut s = match &self.kind {
            Kind::Failpoint { point, adopt } => {
                format!("cut at {point}=wait{}", if *adopt { " (adopting a pre-existing target)" } else { "" })
            }
            Kind::Random(r) => format!(
                "random cut after {} acks{}; {}{}{}{}",
                r.cut_acked,
                if r.cut_after_commit { " + next commit" } else { "" },
                if r.two_daemons { "2 compact daemons" } else { "compact daemon + drain loop" },
                r.rotate.map_or(String::new(), |(f, n)| format!(", {f} {n}")),
                r.retain.filter(|_| r.rotate.is_some()).map_or(String::new(), |n| format!(" --retain {n}")),
                if r.header { ", pre-existing target" } else { "" },
            ),
        };
        s.push_str(&format!("; writers {}", ws.join(",")));
        if let Some(p) = self.recovery_cut {
            s.push_str(&format!("; recovery cut at {p}"));
        }
        s
    }
}

/// The deterministic trials: a cut at every failpoint, then three creations adopting a
/// pre-existing target: `init` cut after its first slot is durable (`init.after_slot`)
/// and before (`init.slot_unsynced`: the slot written, not yet fdatasynced), and a
/// `drain --create` cut after its first round's write. `upgrade.*` points need a
/// version-1 target, which only a version-1 binary makes: not here; `retire.*` points
/// need a retirement, which this workload does not run (`tests/lifecycle.rs` holds one
/// there); `open.before_read` is a race with a retirement (`tests/lifecycle.rs` too);
/// `open.target_missing` and `open.target_short` are reached only with the target gone
/// or cut (`tests/hostile_targets.rs`).
fn failpoint_trials() -> Vec<(&'static str, bool)> {
    let mut v: Vec<(&'static str, bool)> = tributary::testing::failpoint::POINTS
        .iter()
        .filter(|p| ["init.", "upgrade.", "retire.", "open."].iter().all(|skip| !p.starts_with(skip)))
        .map(|p| (*p, false))
        .collect();
    if !v.contains(&("drain.after_intent", false)) {
        v.push(("drain.after_intent", false));
    }
    v.push(("init.after_slot", true));
    v.push(("init.slot_unsynced", true));
    v.push(("drain.after_write", true));
    v
}

pub(super) fn plan(seed: u64, fs: FsKind, k: u64) -> Plan {
    let run = mix(seed, k ^ ((fs as u64 + 1) << 40));
    let mut rng = Rng::new(run);
    let fps = failpoint_trials();
    // writer 1 of every third trial opens its journal for each batch: drains then
    // find its `-wal` empty (no fdatasync, a record without SQLite's header fsync); of
    // another third it pushes to an Appender, acknowledging after each flush (its
    // background commits cut like any other: an outside tester's 1,069 cuts of the
    // logging paths found nothing, and this keeps them in every run)
    let writer = |rng: &mut Rng, id: u32, durability: Durab| WriterPlan {
        id,
        durability,
        rate: 500 + rng.below(2500),
        max_batch: 1 + rng.below(16),
        mode: match (id, k % 3) {
            (1, 2) => WriterMode::Reopen,
            (1, 1) => WriterMode::Appender,
            _ => WriterMode::Plain,
        },
    };
    let (writers, kind) = if (k as usize) < fps.len() {
        let (point, adopt) = fps[k as usize];
        // a full and a normal writer, each on its own journal
        (vec![writer(&mut rng, 1, Durab::Full), writer(&mut rng, 2, Durab::Normal)], Kind::Failpoint { point, adopt })
    } else {
        let n = 1 + rng.below(3) as u32;
        let ws = (1..=n)
            .map(|id| {
                // writer 1 is always full, writer 2 always normal, writer 3 either
                let d = if id == 2 || (id == 3 && rng.chance(1, 2)) { Durab::Normal } else { Durab::Full };
                writer(&mut rng, id, d)
            })
            .collect();
        let rotate = match rng.below(3) {
            0 => Some(("--rotate-lines", 100 + rng.below(400))),
            1 if rng.chance(1, 2) => Some(("--rotate-bytes", 8192 + rng.below(32768))),
            _ => None,
        };
        let r = RandomPlan {
            two_daemons: rng.chance(1, 2),
            interval_ms: 5 + rng.below(60),
            max_round_bytes: if rng.chance(1, 2) { Some(4096 + rng.below(65536)) } else { None },
            rotate,
            retain: if rng.chance(2, 3) { Some(1 + rng.below(3)) } else { None },
            header: rng.chance(1, 4),
            cut_acked: 20 + rng.below(1500),
            cut_after_commit: rng.chance(1, 2),
        };
        (ws, Kind::Random(r))
    };
    let recovery_cut = if rng.chance(1, 4) { Some(*rng.pick(RECOVERY_POINTS)) } else { None };
    Plan { run, writers, kind, recovery_cut }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_replay_from_the_seed_and_cover_every_failpoint() {
        for k in 0..40 {
            assert_eq!(format!("{:?}", plan(7, FsKind::Ext4, k)), format!("{:?}", plan(7, FsKind::Ext4, k)));
        }
        let fps: Vec<&str> = (0..failpoint_trials().len() as u64)
            .filter_map(|k| match plan(7, FsKind::Xfs, k).kind {
                Kind::Failpoint { point, .. } => Some(point),
                Kind::Random(_) => None,
            })
            .collect();
        for p in tributary::testing::failpoint::POINTS.iter() {
            let elsewhere = ["upgrade.", "retire.", "open."].iter().any(|skip| p.starts_with(skip));
            assert!(fps.contains(p) || elsewhere, "{p} has no trial");
        }
        for k in 0..200 {
            let p = plan(7, FsKind::Ext4, k);
            assert!(p.writers.iter().any(|w| w.durability == Durab::Full));
        }
        let appending =
            (0..40).filter(|&k| plan(7, FsKind::Ext4, k).writers.iter().any(|w| w.mode == WriterMode::Appender));
        assert!(appending.count() >= 10, "too few trials with an Appender writer");
    }
}
