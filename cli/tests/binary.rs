//! The `tributary` binary this package builds. (The CLI's behaviour is tested in the
//! repository's `tests/`, which runs this binary; having an integration test here also
//! makes `cargo test --workspace` build the binary before any test runs.)

use std::process::Command;

fn tributary(arg: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary")).arg(arg).output().expect("run tributary");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn it_reports_the_library_version() {
    assert_eq!(tributary("-V"), format!("tributary {}", tributary::VERSION));
}

/// `--version` says what an operator checks a host against (README "Operations"):
/// the commit it was built from and the formats it reads and writes — every build
/// before said only `tributary 0.1.0` (an outside tester could not tell them apart).
#[test]
fn its_long_version_names_the_commit_and_the_formats() {
    let text = tributary("--version");
    let first = text.lines().next().unwrap_or_default();
    let commit = Command::new("git")
        .args(["log", "-1", "--format=%h of %cs"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let expected = match commit {
        Some(c) => format!("tributary {} (commit {c})", tributary::VERSION),
        None => format!("tributary {} (unknown)", tributary::VERSION), // (no git: a source tarball)
    };
    assert_eq!(first, expected, "{text}");
    let formats = format!("reads and writes {} and {}", tributary::FORMAT_VERSION, tributary::DELTA_FORMAT_VERSION);
    assert!(text.contains(&formats), "{text}");
    assert!(text.contains(&format!("journal format: {}", tributary::JOURNAL_FORMAT_VERSION)), "{text}");
}
