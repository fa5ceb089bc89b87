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

/// `tail --follow | head -n 2` on a quiet target: tail waited for ever for a line to
/// fail writing (an outside tester); it now ends when its reader is gone, committing
/// past what the reader took, as at a SIGTERM.
#[test]
fn a_follow_ends_when_its_reader_goes_away() {
    let (_d, target, store, lines) = setup(5);
    let mut child = Command::new(bin())
        .args(["tail", "--target", &s(&target), "--cursor-store", &s(&store), "--name", "c", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut two = vec![0u8; lines[0].len() + lines[1].len() + 2];
    out.read_exact(&mut two).unwrap();
    drop(out); // `head -n 2` has its lines and exits
               // no SIGTERM: it must end by itself (the CI's time limit is the hang guard)
    assert!(child.wait().unwrap().success());
    assert_eq!(tail_all(&target, &store, &[]), lines[2..].to_vec(), "the lines head took were not committed");
}

/// A start given on the command line wins over the stored cursor (the retention
/// error's advice, "reopen from the start cursor", could not be followed: `--cursor`,
/// `--all` and `--from` were accepted and silently ignored — an outside tester).
#[test]
fn a_start_given_on_the_command_line_moves_the_stored_cursor() {
    let (_d, target, store, lines) = setup(6);
    assert_eq!(tail_all(&target, &store, &["--max-lines", "4"]), lines[..4].to_vec());
    assert_eq!(tail_all(&target, &store, &["--all"]), lines.to_vec());
    assert_eq!(tail_all(&target, &store, &["--cursor", "0:0", "--max-lines", "1"]), lines[..1].to_vec());
    assert_eq!(tail_all(&target, &store, &[]), lines[1..].to_vec(), "the store did not move on from the given start");
}

/// Behind a Unix socket (systemd's `StandardOutput=socket`, socat) the cursor was
/// committed past lines still in the socket: a consumer that read 10 and died lost
/// the rest (an outside tester). Lines a consumer did not take are replayed.
#[test]
fn lines_left_in_a_unix_socket_by_a_consumer_that_went_away_are_not_skipped() {
    let (_d, target, store, lines) = setup(200);
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut child = Command::new(bin())
        .args(["tail", "--target", &s(&target), "--cursor-store", &s(&store), "--name", "c", "--follow"])
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = vec![0u8; lines[0].len() + 1];
    ours.read_exact(&mut first).unwrap();
    assert_eq!(&first[..lines[0].len()], &lines[0][..]);
    drop(ours); // the consumer goes away with the rest in the socket
                // (it ends by itself now; the SIGTERM is for builds that did not)
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
    let again = tail_all(&target, &store, &[]);
    assert_eq!(again.last(), lines.last(), "{} lines replayed", again.len());
    assert!(again.len() >= 199, "lines left in the socket were skipped: only {} replayed", again.len());
}

/// Behind a network socket nothing tells what the peer's program has read: a cursor
/// store is refused there, saying why, rather than committing past lines it may skip.
#[test]
fn a_cursor_store_behind_a_network_socket_is_refused() {
    let (_d, target, store, _lines) = setup(3);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_theirs, _) = listener.accept().unwrap();
    let out = Command::new(bin())
        .args(["tail", "--target", &s(&target), "--cursor-store", &s(&store), "--name", "c"])
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(ours)))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("network socket") && err.contains("--cursor-store"), "{err}");
}

/// `tail --cursor-store ... >> out` killed while writing a line left it cut short in the
/// file; the resumed tail wrote it again whole, and the two ran together as one line
/// neither committed line (an outside tester: 2 of 51 kills, 100–250 KB lines). The
/// resumed tail cuts that start of the line off first: the file holds whole committed
/// lines only — with `>>`, and with one descriptor kept across runs without O_APPEND
/// (`exec > out`: the cut must move its offset back, or the gap reads as zeros, a
/// reviewer). Bytes that are not the start of that line are left alone. (The state
/// after such a kill, made without one: the cursor committed before the line, a
/// prefix of it at the end of the file.)
#[test]
fn a_line_cut_by_a_kill_in_the_output_file_is_cut_off_before_it_is_written_again() {
    for (case, append) in [(">> out", true), ("exec > out", false)] {
        let d = tmp();
        let (spool, target) = paths(d.path());
        init(&target);
        let big = vec![b'x'; 300_000];
        let lines = vec![b"first".to_vec(), b"second".to_vec(), big.clone(), b"after".to_vec()];
        let j = journal(&spool.join("a.journal"));
        j.append_batch(&lines).unwrap();
        compactor(&target).drain(&[j]).unwrap();
        let store = d.path().join("cursors.db");
        let out_path = d.path().join("out");
        let mut shared = std::fs::OpenOptions::new().create(true).write(true).append(append).open(&out_path).unwrap();
        let run = |out: &std::fs::File, extra: &[&str]| {
            let mut args: Vec<String> = ["tail", "--target", &s(&target), "--cursor-store", &s(&store), "--name", "c"]
                .iter()
                .map(|a| a.to_string())
                .collect();
            args.extend(extra.iter().map(|x| x.to_string()));
            let o = Command::new(bin()).args(&args).stdout(out.try_clone().unwrap()).output().unwrap();
            assert!(o.status.success(), "{case}: {}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stderr).into_owned()
        };
        run(&shared, &["--max-lines", "2"]);
        // killed 120,000 bytes into the big line
        std::io::Write::write_all(&mut shared, &big[..120_000]).unwrap();
        let said = run(&shared, &[]);
        assert!(said.contains("cut them off"), "{case}: stderr: {said}");
        let written = std::fs::read(&out_path).unwrap();
        let got: Vec<&[u8]> = written.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        let want: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        assert!(got == want, "{case}: not the committed lines, whole ({} bytes)", written.len());
        // a file that ends with its newline is left alone
        let said = run(&shared, &[]);
        assert!(!said.contains("cut"), "{case}: stderr: {said}");
        assert_eq!(std::fs::read(&out_path).unwrap(), written, "{case}");
    }
}

/// What follows the file's last newline and is not the start of the line the resumed
/// tail writes first (another writer's bytes, a file that ends without a newline of its
/// own) is left as it is.
#[test]
fn bytes_that_are_not_the_start_of_the_resumed_line_are_left_alone() {
    let (d, target, store, lines) = setup(4);
    let out_path = d.path().join("out");
    let run = || {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&out_path).unwrap();
        Command::new(bin())
            .args(["tail", "--target", &s(&target), "--cursor-store", &s(&store), "--name", "c", "--max-lines", "2"])
            .stdout(out)
            .output()
            .unwrap()
    };
    assert!(run().status.success());
    let mut f = std::fs::OpenOptions::new().append(true).open(&out_path).unwrap();
    std::io::Write::write_all(&mut f, b"someone else's").unwrap();
    let before = std::fs::read(&out_path).unwrap();
    let o = run();
    assert!(o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("cut"), "{o:?}");
    let after = std::fs::read(&out_path).unwrap();
    assert!(after.starts_with(&before), "bytes tail did not write were cut");
    assert!(after.ends_with(&[&lines[3][..], b"\n"].concat()));
}

/// A first `tail --cursor-store` run on a target with no lines yet stored nothing: the
/// next run started at the oldest generation still kept, past lines retention had
/// removed meanwhile, without a word (an outside tester: 2,260 lines). The empty run
/// stores its position: the next run says the lines are gone.
#[test]
fn a_run_that_printed_nothing_still_stores_where_it_stands() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let store = d.path().join("cursors.db");
    let tail = || {
        Command::new(bin())
            .args(["tail", "--target", &s(&target), "--cursor-store", &s(&store), "--name", "c"])
            .output()
            .unwrap()
    };
    let first = tail();
    assert!(first.status.success() && first.stdout.is_empty(), "{first:?}");
    // three generations of lines, only the last one kept
    let rotating = tributary::Compactor::new(
        &target,
        tributary::CompactorOptions::default().rotate_bytes(Some(1)).retain_generations(Some(1)),
    )
    .unwrap();
    let j = journal(&spool.join("a.journal"));
    for round in 0..3 {
        j.append_batch(&numbered(&format!("round {round}"), 0..3)).unwrap();
        rotating.drain(std::slice::from_ref(&j)).unwrap();
    }
    let next = tail();
    let said = String::from_utf8_lossy(&next.stderr);
    assert!(
        !next.status.success() && said.contains("no longer kept"),
        "lines removed by retention went unsaid: {said}"
    );
}
