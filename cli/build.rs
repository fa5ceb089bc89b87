//! Records the commit the `tributary` binary is built from, for `tributary --version`:
//! operators check a fleet's hosts against the compatibility rules (README
//! "Operations") by what each binary says, not by when it was built (every build
//! before 0.2.0 said only `tributary 0.1.0`, an outside tester). Without git (a
//! source tarball) the commit is "unknown"; uncommitted changes are not shown.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["log", "-1", "--format=%h of %cs"]).map_or_else(|| "unknown".into(), |c| format!("commit {c}"));
    println!("cargo:rustc-env=TRIB_BUILD_COMMIT={commit}");
    // Built again when HEAD moves: HEAD itself, the branch it names, packed refs.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            // (a path that does not exist would run this script at every build)
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
