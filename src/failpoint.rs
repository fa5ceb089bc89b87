//! Environment-controlled failpoints for crash tests.
//!
//! `TRIBUTARY_FAILPOINTS="drain.after_write=kill,journal.after_commit=pause:500"` makes
//! the process SIGKILL itself, sleep, or panic (`=panic`, to test panic safety) when it
//! reaches the named point. With the
//! variable unset (production) a failpoint costs one atomic load. Points are listed in
//! [`POINTS`] so tests can iterate over every one of them.

use std::sync::OnceLock;
use std::time::Duration;

/// Every failpoint in the code, in protocol order.
pub const POINTS: &[&str] = &[
    "drain.locked",
    "drain.after_truncate",
    "drain.mid_write",
    "drain.after_write",
    "drain.after_fsync",
    "drain.after_temp_manifest",
    "drain.after_rename",
    "drain.after_unlock",
    "drain.mid_record",
    "rotate.after_rename",
    "rotate.after_create",
    "rotate.after_commit",
    "journal.before_commit",
    "journal.after_commit",
];

#[derive(Debug, Clone, Copy)]
enum Action {
    Kill,
    Pause(u64),
    Panic,
}

fn config() -> &'static Vec<(String, Action)> {
    static CONFIG: OnceLock<Vec<(String, Action)>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let Ok(spec) = std::env::var("TRIBUTARY_FAILPOINTS") else { return Vec::new() };
        spec.split(',')
            .filter_map(|item| {
                let (name, action) = item.trim().split_once('=')?;
                let action = match action {
                    "kill" => Action::Kill,
                    "panic" => Action::Panic,
                    a => Action::Pause(a.strip_prefix("pause:")?.parse().ok()?),
                };
                Some((name.to_string(), action))
            })
            .collect()
    })
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
            }
        }
    }
}
