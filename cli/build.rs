//! Records the commit the `tributary` binary is built from, for `tributary --version`:
//! operators check a fleet's hosts against the compatibility rules (README
//! "Operations") by what each binary says, not by when it was built (every build
//! before 0.2.0 said only `tributary 0.1.0`, an outside tester). Without git, or
//! outside this project's own checkout (a source tarball unpacked inside another
//! repository), the commit is "unknown"; uncommitted changes are not shown.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

fn main() {
    // This checkout's own repository only: git walks up the folders, and would name
    // the commit of any repository the sources sit in.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().and_then(|p| p.canonicalize().ok());
    let top = git(&["rev-parse", "--show-toplevel"]).and_then(|t| Path::new(&t).canonicalize().ok());
    let ours = workspace.is_some() && workspace == top;
    let commit = ours
        .then(|| git(&["log", "-1", "--format=%h of %cs"]))
        .flatten()
        .map_or_else(|| "unknown".into(), |c| format!("commit {c}"));
    println!("cargo:rustc-env=TRIB_BUILD_COMMIT={commit}");
    if !ours {
        return;
    }
    // Built again when HEAD moves: HEAD, its log (appended at every commit, checkout
    // and reset), the branch it names — a loose ref, or one in packed-refs (after
    // `git gc`: the next commit writes a loose one into refs/heads, watched as a folder).
    let mut watched = vec!["HEAD".to_string(), "logs/HEAD".to_string(), "packed-refs".to_string()];
    watched.push("refs/heads".to_string());
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
