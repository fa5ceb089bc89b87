//! Environment-controlled failpoints for crash tests.
//!
//! `TRIBUTARY_FAILPOINTS="drain.after_write=kill,journal.after_commit=pause:500"` makes
//! the process SIGKILL itself, sleep, or panic (`=panic`, to test panic safety) when it
//! reaches the named point. `=wait` tells a harness the point was reached without any
//! timing: the process creates `<point>.reached` (holding its pid) in the folder named by
//! `TRIBUTARY_FAILPOINT_DIR` (if set), then blocks forever, so the harness can wait for
//! that file and then do what it wants to the frozen process (SIGKILL it, cut the power
//! of its filesystem, ...). `=hold` announces the point the same way, then waits until
//! the harness removes the `.reached` file and carries on (a holder that froze and woke
//! up); `=hold_once` holds only the first time the point is reached in the process (a
//! point in a retry loop). `drain.lose_lock` is where a drain's lock can be made to vanish as a lease
//! expiry or a FUSE client restart would: configured with any action, the drain
//! releases its lock there, then acts. With the variable unset (production) a failpoint costs one
//! atomic load. Points are listed in [`POINTS`] so tests can iterate over every one of
//! them.

use std::sync::OnceLock;
use std::time::Duration;

/// Declares [`Point`] and [`POINTS`] from one table, so a name is written once.
macro_rules! points {
    ($($variant:ident = $name:literal,)*) => {
        /// A failpoint: a named place in the protocol where a test can stop, kill or
        /// panic the process. Its name (`drain.locked`, ...) is what
        /// `TRIBUTARY_FAILPOINTS` uses.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Point {
            $(#[doc = concat!("`", $name, "`")] $variant,)*
        }

        impl Point {
            /// Every failpoint, in protocol order.
            #[cfg(any(test, feature = "testing"))]
            pub const ALL: &'static [Point] = &[$(Point::$variant,)*];

            /// The name `TRIBUTARY_FAILPOINTS` knows this point by.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(Point::$variant => $name,)*
                }
            }
        }

        /// Every failpoint's name, in protocol order (as [`Point::ALL`]).
        pub const POINTS: &[&str] = &[$($name,)*];
    };
}

points! {
    StageBeforeHeader = "stage.before_header",
    StageAfterHeader = "stage.after_header",
    DrainLocked = "drain.locked",
    DrainAfterStagedRead = "drain.after_staged_read",
    DrainBeforeIntent = "drain.before_intent",
    DrainIntentUnsynced = "drain.intent_unsynced",
    DrainAfterTruncate = "drain.after_truncate",
    DrainAfterIntent = "drain.after_intent",
    DrainMidWrite = "drain.mid_write",
    DrainAfterWrite = "drain.after_write",
    DrainAfterFsync = "drain.after_fsync",
    DrainLoseLock = "drain.lose_lock",
    DrainAfterTempManifest = "drain.after_temp_manifest",
    DrainAfterRename = "drain.after_rename",
    DrainAfterUnlock = "drain.after_unlock",
    DrainMidRecord = "drain.mid_record",
    JournalGiveBack = "journal.give_back",
    RotateAfterRename = "rotate.after_rename",
    RotateAfterCreate = "rotate.after_create",
    RotateAfterCommit = "rotate.after_commit",
    JournalBeforeCommit = "journal.before_commit",
    JournalAfterCommit = "journal.after_commit",
    RetireBeforeDelete = "retire.before_delete",
    RetireAfterRename = "retire.after_rename",
    OpenBeforeRead = "open.before_read",
    OpenTargetMissing = "open.target_missing",
    OpenTargetShort = "open.target_short",
    InitSlotUnsynced = "init.slot_unsynced",
    InitAfterSlot = "init.after_slot",
    UpgradeAfterFile = "upgrade.after_file",
    UpgradeAfterSlot = "upgrade.after_slot",
}

/// The folder in which `=wait` failpoints create their `<point>.reached` file.
pub const DIR_VAR: &str = "TRIBUTARY_FAILPOINT_DIR";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Kill,
    Pause(u64),
    Panic,
    Wait,
    Hold,
    /// `hold`, the first time the point is reached in this process only (a point
    /// inside a retry loop).
    HoldOnce,
}

/// Parse a `TRIBUTARY_FAILPOINTS` value; items that do not parse are ignored.
fn parse(spec: &str) -> Vec<(String, Action)> {
    spec.split(',')
        .filter_map(|item| {
            let (name, action) = item.trim().split_once('=')?;
            let action = match action {
                "kill" => Action::Kill,
                "panic" => Action::Panic,
                "wait" => Action::Wait,
                "hold" => Action::Hold,
                "hold_once" => Action::HoldOnce,
                a => Action::Pause(a.strip_prefix("pause:")?.parse().ok()?),
            };
            Some((name.to_string(), action))
        })
        .collect()
}

fn config() -> &'static Vec<(String, Action)> {
    static CONFIG: OnceLock<Vec<(String, Action)>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let config = std::env::var("TRIBUTARY_FAILPOINTS").map(|s| parse(&s)).unwrap_or_default();
        // A misspelt point would make a crash test pass without crashing anything.
        for (name, _) in &config {
            if !POINTS.contains(&name.as_str()) {
                eprintln!(
                    "tributary: TRIBUTARY_FAILPOINTS names `{name}`, which is not a failpoint; known: {POINTS:?}"
                );
            }
        }
        config
    })
}

/// True when `point` is configured (lets the drain split a write to hit `mid_write`).
pub(crate) fn is_set(point: Point) -> bool {
    config().iter().any(|(n, _)| n == point.name())
}

/// Act on `point` if it is configured.
pub(crate) fn hit(point: Point) {
    let name = point.name();
    for (n, action) in config() {
        if n == name {
            match *action {
                Action::Kill => crate::os::sys::kill_self(),
                Action::Pause(ms) => std::thread::sleep(Duration::from_millis(ms)),
                Action::Panic => panic!("failpoint {name}"),
                Action::Wait => wait_forever(name),
                Action::Hold => hold(name),
                Action::HoldOnce => {
                    static HELD: crate::sync::Mutex<Vec<&'static str>> = crate::sync::Mutex::new(Vec::new());
                    let first = {
                        let mut held = HELD.lock();
                        let first = !held.contains(&name);
                        held.push(name);
                        first
                    };
                    if first {
                        hold(name);
                    }
                }
            }
        }
    }
}

/// The `=wait` action: announce the point, then never return.
fn wait_forever(name: &str) -> ! {
    eprintln!("tributary: failpoint {name} reached (pid {}); waiting forever", std::process::id());
    announce(name);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The `=hold` action: announce the point, wait until the harness removes the
/// `.reached` file, then return.
fn hold(name: &str) {
    eprintln!(
        "tributary: failpoint {name} reached (pid {}); holding until its .reached file is removed",
        std::process::id()
    );
    let Some(reached) = announce(name) else { return };
    while reached.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Create `<name>.reached` (holding the pid) in `$TRIBUTARY_FAILPOINT_DIR`, if set.
fn announce(name: &str) -> Option<std::path::PathBuf> {
    let pid = std::process::id();
    if let Some(dir) = std::env::var_os(DIR_VAR) {
        // Written under a temporary name and renamed, so a harness that sees the file
        // also sees its whole content.
        let dir = std::path::Path::new(&dir);
        let tmp = dir.join(format!(".{name}.reached.{pid}"));
        let done = std::fs::write(&tmp, format!("{pid}\n"))
            .and_then(|()| std::fs::rename(&tmp, dir.join(format!("{name}.reached"))));
        match done {
            Ok(()) => return Some(dir.join(format!("{name}.reached"))),
            Err(e) => {
                eprintln!("tributary: failpoint {name}: cannot create its .reached file in {}: {e}", dir.display());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_action_and_ignores_garbage() {
        let got = parse("a=kill, b=pause:25,c=panic,d=wait,e=bogus,f,g=pause:x,h=hold");
        assert_eq!(
            got,
            vec![
                ("a".to_string(), Action::Kill),
                ("b".to_string(), Action::Pause(25)),
                ("c".to_string(), Action::Panic),
                ("d".to_string(), Action::Wait),
                ("h".to_string(), Action::Hold),
            ]
        );
        assert!(parse("").is_empty());
    }

    #[test]
    fn every_point_has_a_distinct_name() {
        assert_eq!(Point::ALL.len(), POINTS.len());
        for (p, name) in Point::ALL.iter().zip(POINTS) {
            assert_eq!(p.name(), *name);
            assert_eq!(POINTS.iter().filter(|n| *n == name).count(), 1, "{name} twice");
        }
    }
}
