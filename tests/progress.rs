//! Progress on a terminal (issue 17): `drain`, `retire` and `verify` draw a status line
//! on stderr when it is a terminal — here a pseudo-terminal from `script` (util-linux)
//! — and write nothing of it when stderr is piped. (`compact`'s status line is tested
//! from Python, bindings/python/tests/test_cli_metrics.py, with `pty`.)

mod common;

use std::process::{Command, Stdio};

use common::*;

/// A word for `sh -c`, quoted.
fn quote(w: &str) -> String {
    format!("'{}'", w.replace('\'', r"'\''"))
}

/// Run the CLI with stdin, stdout and stderr on a pseudo-terminal; whether it
/// succeeded, and everything it wrote there.
fn on_a_terminal(args: &[&str]) -> (bool, String) {
    let cmd = std::iter::once(bin()).chain(args.iter().copied()).map(quote).collect::<Vec<_>>().join(" ");
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux: apt-get install bsdutils) runs a command on a pseudo-terminal");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
}

/// A target and a spool whose two journals hold 2,000 lines.
fn backlog(d: &std::path::Path) -> (String, String, Vec<String>) {
    let (spool, target) = paths(d);
    init_cli(&target);
    let mut journals = Vec::new();
    for name in ["a", "b"] {
        let p = spool.join(format!("{name}.journal"));
        let j = journal(&p);
        let lines = numbered(name, 0..1000);
        j.append_batch(&lines.iter().map(Vec::as_slice).collect::<Vec<_>>()).unwrap();
        journals.push(s(&p));
    }
    (s(&spool), s(&target), journals)
}

/// What a status line looks like on the wire: erase the line, then draw.
const REDRAW: &str = "\r\x1b[K";

#[test]
fn drain_and_verify_show_progress_on_a_terminal() {
    let d = tmp();
    let (spool, target, _) = backlog(d.path());
    let (ok, out) = on_a_terminal(&["drain", "--target", &target, "--spool", &spool]);
    assert!(ok, "{out}");
    assert!(
        out.contains(REDRAW) && out.contains("drain: 2000 line(s), ") && out.contains(" of 2 journal(s)"),
        "{out:?}"
    );
    assert!(out.contains("drained 2000 line(s)"), "the summary is still there: {out:?}");
    let (ok, out) = on_a_terminal(&["verify", "--target", &target]);
    assert!(ok, "{out}");
    assert!(out.contains(REDRAW) && out.contains("verify: ") && out.contains(" checked ("), "{out:?}");
    assert!(out.contains("ok: "), "{out:?}");
}

#[test]
fn retire_shows_its_drain_on_a_terminal() {
    let d = tmp();
    let (_, target, journals) = backlog(d.path());
    let (ok, out) = on_a_terminal(&["retire", "--target", &target, "--journal", &journals[0]]);
    assert!(ok, "{out}");
    assert!(out.contains(REDRAW) && out.contains("retire: draining: 1000 line(s), "), "{out:?}");
    assert!(out.contains("drained 1000 line(s) into") && out.contains("retired 1 journal(s)"), "{out:?}");
    assert!(!std::path::Path::new(&journals[0]).exists());
    assert_eq!(lines_of(std::path::Path::new(&target)).len(), 1000);
}

#[test]
fn nothing_of_it_when_piped() {
    let d = tmp();
    let (spool, target, journals) = backlog(d.path());
    for args in [
        vec!["drain", "--target", &target, "--spool", &spool],
        vec!["verify", "--target", &target],
        vec!["retire", "--target", &target, "--journal", &journals[1]],
    ] {
        let out = cli(&args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.is_empty(), "{args:?} wrote to a piped stderr: {err:?}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains('\x1b'), "{args:?}: {out:?}");
    }
    assert_eq!(lines_of(std::path::Path::new(&target)).len(), 2000);
}
