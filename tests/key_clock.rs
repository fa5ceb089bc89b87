//! Issue 12 item 11: idempotency keys must not expire because the wall clock jumps. A
//! host that booted with a 2020 clock stores keyed lines; NTP then steps the clock to
//! today; a retry seconds later must find its keys and store nothing. Keys age on the
//! journal's clock (time the host was up), see docs/design.md.
//!
//! The clock step is real for the processes involved: the first writer runs under
//! libfaketime with its wall clock at 2020 (monotonic clocks untouched, as NTP leaves
//! them), the retry runs on the real clock, in the same boot. Both are this test binary,
//! re-run as a child process.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use tributary::{Journal, JournalOptions};

const CHILD: &str = "TRIB_KEY_CLOCK_CHILD";
const TEST: &str = "keys_survive_a_wall_clock_step_forward";

fn faketime_lib() -> &'static str {
    ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("this test needs libfaketime (`apt-get install faketime`; scripts/test.d/10-rust.sh installs it)")
        })
}

/// Journal options whose every keyed commit purges expired keys (normally once a minute).
fn opts() -> JournalOptions {
    JournalOptions::default().key_purge_interval(Duration::ZERO)
}

fn keyed(i: u32) -> (Vec<u8>, Vec<u8>) {
    (format!("key-{i}").into_bytes(), format!("line-{i}").into_bytes())
}

/// The child's part: `store` appends five keyed lines and writes their seqs; `retry`
/// (after the clock step) runs a purge, re-sends the same keys and checks it got the
/// first seqs back with nothing stored.
fn child(mode: &str, dir: &Path) {
    let j = Journal::open(dir.join("k.journal"), opts()).unwrap();
    let items: Vec<_> = (0..5).map(keyed).collect();
    match mode {
        "store" => {
            let year = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
                / (365 * 24 * 3600)
                + 1970;
            assert_eq!(year, 2020, "libfaketime did not set the wall clock");
            let seqs = j.append_batch_keyed(&items).unwrap();
            std::fs::write(dir.join("seqs"), format!("{seqs:?}")).unwrap();
        }
        "retry" => {
            j.append_batch_keyed(&[(b"other".to_vec(), b"other".to_vec())]).unwrap(); // runs the purge
            let seqs = j.append_batch_keyed(&items).unwrap();
            let first = std::fs::read_to_string(dir.join("seqs")).unwrap();
            assert_eq!(format!("{seqs:?}"), first, "the keys expired: the retry stored its lines again");
            assert_eq!(j.backlog().unwrap().lines, 6, "lines stored twice");
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn keys_survive_a_wall_clock_step_forward() {
    if let Ok(mode) = std::env::var(CHILD) {
        child(&mode, Path::new(&std::env::var("TRIB_KEY_CLOCK_DIR").unwrap()));
        return;
    }
    let lib = faketime_lib();
    let d = tmp();
    let run = |mode: &str, faked: bool| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, mode)
            .env("TRIB_KEY_CLOCK_DIR", d.path());
        if faked {
            c.env("LD_PRELOAD", lib).env("FAKETIME", "@2020-06-01 12:00:00").env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "child `{mode}` failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run("store", true);
    run("retry", false);
    // and the lines reach the target once
    let target = d.path().join("out.log");
    init(&target);
    compactor(&target).drain_paths(&[d.path().join("k.journal")]).unwrap();
    let mut expected: Vec<Vec<u8>> = (0..5).map(|i| keyed(i).1).collect();
    expected.push(b"other".to_vec());
    assert_exactly(&target, &expected);
}
