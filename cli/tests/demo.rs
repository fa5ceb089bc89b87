//! `tributary demo`, small: it passes, its report counts what is in the target, and
//! its target holds the readable lines of its seed, each acknowledged line exactly once
//! by the harness's checker (the one the demo itself uses). The README's full-size demo
//! runs in scripts/test.d/20-demo.sh.

use std::process::Command;

use tributary_harness::ack;
use tributary_harness::check::{check, Allow, Writer};
use tributary_harness::line::Lines;

#[test]
fn a_small_demo_passes_and_its_target_holds_every_acknowledged_line_once() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["demo", "--writers", "2", "--lines", "300", "--kills", "2", "--rate", "0", "--seed", "7", "--dir"])
        .arg(&dir)
        .output()
        .expect("run tributary demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "tributary demo (seed 7)",
        "  lines in target:        600",
        "  acknowledged lines:     600",
        "  kills survived:         2 (",
        "  lost:                   0",
        "  duplicated:             0",
        "  torn or foreign:        0",
        "  out of order:           0",
        "  verify:                 ok",
        "demo: PASSED",
    ] {
        assert!(text.lines().any(|l| l.starts_with(want)), "no line starting {want:?} in:\n{text}");
    }

    let target = std::fs::read(dir.join("shared/out.log")).unwrap();
    assert_eq!(target.iter().filter(|&&b| b == b'\n').count(), 600);
    assert!(target.iter().all(|&b| b == b'\n' || b.is_ascii_graphic() || b == b' '), "the demo's lines are readable");
    let writers: Vec<Writer> = (1..=2)
        .map(|w| Writer {
            id: w,
            lines: 300,
            acked: ack::read(&dir.join(format!("acks/w{w}.ack"))),
            drained_seq: u64::MAX,
            full: true,
        })
        .collect();
    let v = check(&Lines::letters(7), &[&target], &writers, &Allow::default());
    assert!(v.exactly_once(), "{v:?}");
    assert_eq!((v.lines, v.acked), (600, 600));
}
