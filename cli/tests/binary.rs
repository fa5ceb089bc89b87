//! The `tributary` binary this package builds. (The CLI's behaviour is tested in the
//! repository's `tests/`, which runs this binary; having an integration test here also
//! makes `cargo test --workspace` build the binary before any test runs.)

use std::process::Command;

#[test]
fn it_reports_the_library_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary")).arg("--version").output().expect("run tributary");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("tributary {}", tributary::VERSION));
}
