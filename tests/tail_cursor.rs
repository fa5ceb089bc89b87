//! `tail --cursor-store` commits its cursor only past lines its consumer has taken
//! (issue 13 item 8: `tail --cursor-store … | head -3` saved the cursor past lines head
//! never read).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::*;

fn setup(n: usize) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf, Vec<Vec<u8>>) {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let lines = numbered("line", 0..n);
    let j = journal(&spool.join("a.journal"));
    j.append_batch(&lines).unwrap();
    compactor(&target).drain(&[j]).unwrap();
    let store = d.path().join("cursors.db");
    (d, target, store, lines)
}

fn tail_all(target: &std::path::Path, store: &std::path::Path, extra: &[&str]) -> Vec<Vec<u8>> {
    let mut args = vec!["tail".to_string(), "--target".into(), s(target), "--cursor-store".into(), s(store)];
    args.extend(["--name".to_string(), "c".to_string()]);
    args.extend(extra.iter().map(|x| x.to_string()));
    let out = Command::new(bin()).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| l.to_vec()).collect()
}

#[test]
fn max_lines_commits_right_after_the_lines_it_printed() {
    let (_d, target, store, lines) = setup(10);
    assert_eq!(tail_all(&target, &store, &["--max-lines", "3"]), lines[..3].to_vec());
    assert_eq!(tail_all(&target, &store, &["--max-lines", "4"]), lines[3..7].to_vec());
    assert_eq!(tail_all(&target, &store, &[]), lines[7..].to_vec());
}

/// A consumer that takes one line out of the pipe and goes away: the next run starts
/// at the second line, however many lines were still sitting in the pipe.
#[test]
fn lines_left_in_the_pipe_by_a_consumer_that_went_away_are_not_skipped() {
    let (_d, target, store, lines) = setup(200);
    // --follow: tail runs until SIGTERM, so nothing depends on how fast this test reads
    let mut child = Command::new(bin())
        .args(["tail", "--target", &s(&target), "--cursor-store", &s(&store), "--name", "c", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = vec![0u8; lines[0].len() + 1];
    out.read_exact(&mut first).unwrap();
    assert_eq!(&first[..lines[0].len()], &lines[0][..]);
    drop(out); // the consumer goes away with 199 lines left in the pipe
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(tail_all(&target, &store, &[]), lines[1..].to_vec(), "lines left in the pipe were skipped");
}
