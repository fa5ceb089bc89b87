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
//! up). `drain.lose_lock` is where a drain's lock can be made to vanish as a lease
//! expiry or a FUSE client restart would: configured with any action, the drain
//! releases its lock there, then acts. With the variable unset (production) a failpoint costs one
//! atomic load. Points are listed in [`POINTS`] so tests can iterate over every one of
//! them.

use std::sync::OnceLock;
use std::time::Duration;

/// Every failpoint in the code, in protocol order.
pub const POINTS: &[&str] = &[
    "drain.locked",
    "drain.before_intent",
    "drain.intent_unsynced",
    "drain.after_truncate",
    "drain.after_intent",
    "drain.mid_write",
    "drain.after_write",
    "drain.after_fsync",
    "drain.lose_lock",
    "drain.after_temp_manifest",
    "drain.after_rename",
    "drain.after_unlock",
    "drain.mid_record",
    "rotate.after_rename",
    "rotate.after_create",
    "rotate.after_commit",
    "journal.before_commit",
    "journal.after_commit",
    "init.slot_unsynced",
    "init.after_slot",
    "upgrade.after_file",
    "upgrade.after_slot",
];

/// The folder in which `=wait` failpoints create their `<point>.reached` file.
pub const DIR_VAR: &str = "TRIBUTARY_FAILPOINT_DIR";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Kill,
    Pause(u64),
    Panic,
    Wait,
    Hold,
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
                a => Action::Pause(a.strip_prefix("pause:")?.parse().ok()?),
            };
            Some((name.to_string(), action))
        })
        .collect()
}

fn config() -> &'static Vec<(String, Action)> {
    static CONFIG: OnceLock<Vec<(String, Action)>> = OnceLock::new();
    CONFIG.get_or_init(|| std::env::var("TRIBUTARY_FAILPOINTS").map(|s| parse(&s)).unwrap_or_default())
}

/// True when `name` is configured (lets the drain split a write to hit `mid_write`).
pub fn is_set(name: &str) -> bool {
    config().iter().any(|(n, _)| n == name)
}

/// Act on the failpoint `name` if it is configured.
pub fn hit(name: &str) {
    for (n, action) in config() {
        if n == name {
            match *action {
                Action::Kill => crate::sys::kill_self(),
                Action::Pause(ms) => std::thread::sleep(Duration::from_millis(ms)),
                Action::Panic => panic!("failpoint {name}"),
                Action::Wait => wait_forever(name),
                Action::Hold => hold(name),
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
                eprintln!("tributary: failpoint {name}: cannot create its .reached file in {}: {e}", dir.display())
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
}
