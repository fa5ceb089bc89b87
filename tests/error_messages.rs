//! Errors that say what happened and the one thing to do (issue 13 item 8): each case
//! used to give a misleading kind or message.

mod common;

use std::fs;

use common::*;
use tributary::{Compactor, ErrorKind, Journal, JournalOptions};

/// The same journal under two spellings was "journal_restored … keep only the live
/// copy": an invitation to delete a good journal.
#[test]
fn the_same_journal_given_twice_is_named_as_such() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let p = spool.join("a.journal");
    journal(&p).append(b"x").unwrap();
    let twice = [p.clone(), spool.join(".").join("a.journal")];
    let e = compactor(&target).drain_paths(&twice).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("given twice"), "{e}");
    assert!(!e.to_string().contains("copy"), "{e}");
    // a real copy still is what it is
    fs::copy(&p, spool.join("copy.journal")).unwrap();
    let e = compactor(&target).drain_paths(&[p, spool.join("copy.journal")]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JournalRestored, "{e}");
}

/// A symlinked `*.journal` in a spool was skipped without a word.
#[test]
fn a_symlinked_journal_in_a_spool_is_named_and_the_others_drain() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    journal(&spool.join("good.journal")).append(b"good").unwrap();
    let elsewhere = d.path().join("elsewhere.journal");
    journal(&elsewhere).append(b"linked").unwrap();
    std::os::unix::fs::symlink(&elsewhere, spool.join("linked.journal")).unwrap();
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("linked.journal") && err.contains("symlink"), "{err}");
    assert_exactly(&target, &[b"good".to_vec()]);
}

/// One file of a spool that cannot be drained — junk (found when opening it) or a
/// journal of another target (found by the round) — kept the library's spool drain
/// (Rust `drain_spool`, C `trib_drain`, Python `drain(spool=)`, Go `Drain`) from
/// draining anything, and the CLI's from draining past a refused journal. Now the
/// others are drained, then the first refused file's error is returned. Found by an
/// outside tester.
#[test]
fn a_spool_drain_drains_every_journal_it_can_before_naming_the_one_it_cannot() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let other = d.path().join("other.log");
    init(&target);
    init(&other);
    let foreign = journal(&spool.join("b-foreign.journal"));
    foreign.append(b"belongs elsewhere").unwrap();
    compactor(&other).drain(std::slice::from_ref(&foreign)).unwrap();
    foreign.append(b"also elsewhere").unwrap();
    fs::write(spool.join("a-junk.journal"), b"not sqlite").unwrap();
    journal(&spool.join("c-good.journal")).append(b"good").unwrap();
    let e = compactor(&target).drain_spool(&spool).unwrap_err();
    assert_eq!(e.journal_path(), Some(spool.join("a-junk.journal").as_path()), "the first refused: {e}");
    assert_exactly(&target, &[b"good".to_vec()]);
    journal(&spool.join("c-good.journal")).append(b"more").unwrap();
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("a-junk.journal") && err.contains("b-foreign.journal"), "both are named: {err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("drained 1 line(s)"), "{out:?}");
    assert_exactly(&target, &[b"good".to_vec(), b"more".to_vec()]);
}

/// A journal hard-linked into a second spool (`cp -al`): a compactor of the second
/// name read the file without the first name's log, drained nothing and said
/// nothing; its own writes there would have been a second log for the same file.
/// Both names are refused, naming the fix; with the extra name removed the lines
/// drain once. Found by an outside tester.
#[test]
fn a_hard_linked_journal_is_refused_by_either_name() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let a = spool.join("a.journal");
    journal(&a).append(b"one").unwrap();
    let other_spool = d.path().join("spool2");
    fs::create_dir(&other_spool).unwrap();
    let b = other_spool.join("a.journal");
    fs::hard_link(&a, &b).unwrap();
    for name in [&a, &b] {
        let e = Journal::open(name, JournalOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotAJournal, "{e}");
        assert!(e.to_string().contains("hard links"), "{e}");
        let e = compactor(&target).drain_paths(std::slice::from_ref(name)).unwrap_err();
        assert!(e.to_string().contains("hard links"), "{e}");
    }
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&other_spool)]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(lines_of(&target).is_empty());
    fs::remove_file(&b).unwrap();
    journal(&a).append(b"two").unwrap();
    compactor(&target).drain_paths(std::slice::from_ref(&a)).unwrap();
    assert_exactly(&target, &[b"one".to_vec(), b"two".to_vec()]);
}

/// A journal in a folder that does not exist said "I/O error while statfs of …".
#[test]
fn a_journal_in_a_missing_folder_says_the_folder_is_missing() {
    let d = tmp();
    let p = d.path().join("no-such-folder").join("a.journal");
    let e = Journal::open(&p, JournalOptions::default()).expect_err("opened a journal in a missing folder");
    assert!(e.to_string().contains("does not exist (create it first)"), "{e}");
    assert!(!e.to_string().contains("statfs"), "{e}");
}

/// A line over the limit did not say which setting limits it.
#[test]
fn a_line_over_the_limit_names_the_setting() {
    let d = tmp();
    let j = journal(&d.path().join("a.journal"));
    let e = j.append(&vec![b'x'; 2 << 20]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidLine, "{e}");
    assert!(e.to_string().contains("--max-line-bytes"), "{e}");
    let out = std::process::Command::new(bin())
        .args(["append", "--journal", &s(&d.path().join("b.journal"))])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            feed(&mut c, &vec![b'y'; 2 << 20]);
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--max-line-bytes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A target with a journal `a.journal` in its spool, one line ("x") drained.
fn drained_once(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Journal) {
    let (spool, target) = paths(dir);
    init(&target);
    let j = journal(&spool.join("a.journal"));
    j.append(b"x").unwrap();
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    (spool, target, j)
}

/// A removed sidecar folder said "journal_foreign … another target".
#[test]
fn a_removed_sidecar_is_target_missing_not_a_foreign_journal() {
    let d = tmp();
    let (_spool, target, j) = drained_once(d.path());
    fs::remove_dir_all(tributary::Sidecar::for_target(&target).dir).unwrap();
    j.append(b"y").unwrap();
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TargetMissing, "{e}");
    assert!(e.to_string().contains("tributary init"), "{e}");
}

/// Whether the CLI can be run as `nobody` here (root and `setpriv`); says so if not.
fn can_run_as_nobody() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let setpriv = std::process::Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    if !root || !setpriv {
        eprintln!("skipped: needs root and setpriv to run the CLI as another user");
    }
    root && setpriv
}

/// The CLI run as `nobody` (see [`can_run_as_nobody`]).
fn cli_as_nobody() -> std::process::Command {
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(bin());
    c
}

/// A journal its writer may not write (file mode, or a folder where its -wal cannot be
/// made) was `not_a_journal` — "move the file out of the spool", which takes a real
/// journal with undrained lines away from its compactor. Found by an outside tester.
/// Runs the CLI as `nobody` (needs root and `setpriv`; says so and checks nothing
/// otherwise).
#[test]
fn a_journal_this_process_may_not_write_is_a_permission_error_not_a_foreign_file() {
    use std::os::unix::fs::PermissionsExt;
    if !can_run_as_nobody() {
        return;
    }
    let d = tmp();
    let spool = d.path().join("spool");
    fs::create_dir(&spool).unwrap();
    let p = spool.join("r.journal");
    journal(&p).append(b"first").unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |mode_file: u32, mode_folder: u32| {
        fs::set_permissions(&p, fs::Permissions::from_mode(mode_file)).unwrap();
        fs::set_permissions(&spool, fs::Permissions::from_mode(mode_folder)).unwrap();
        let mut child = cli_as_nobody()
            .args(["append", "--journal"])
            .arg(&p)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        // (it refuses before reading stdin, and may be gone before this write)
        if let Err(e) = child.stdin.take().unwrap().write_all(b"second\n") {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // (mode 000 said SQLite's bare "unable to open database file": an outside tester)
    for (file, folder, what) in [
        (0o644, 0o777, "file not writable"),
        (0o666, 0o755, "folder not writable"),
        (0o000, 0o777, "file not readable"),
    ] {
        let err = as_nobody(file, folder);
        assert!(err.contains("[io]") && err.contains("write permission"), "{what}: {err}");
        assert!(!err.contains("not_a_journal") && !err.contains("out of the spool"), "{what}: {err}");
    }
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(journal(&p).backlog().unwrap().last_seq, 1, "the journal is untouched");
}

/// A folder given as a journal (a spool's path where a journal's belongs) was "not a
/// regular file (a symlink? ...)" (an outside tester): it says it is a folder.
#[test]
fn a_folder_given_as_a_journal_is_named_a_folder() {
    let d = tmp();
    let e = Journal::open(d.path(), JournalOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotAJournal, "{e}");
    assert!(e.to_string().contains("it is a folder"), "{e}");
}

/// A target given where a journal belongs (a swapped argument) became an SQLite
/// database when empty — a fresh or just-rotated target — and every compactor then
/// stopped at bytes no round wrote (`unexpected_tail`). Found by an outside tester.
#[test]
fn a_target_given_as_a_journal_is_refused_and_left_untouched() {
    let d = tmp();
    let (_spool, target) = paths(d.path());
    init(&target);
    let e = Journal::open(&target, JournalOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("is a tributary target"), "{e}");
    let mut child = std::process::Command::new(bin())
        .args(["append", "--journal", &s(&target)])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    feed(&mut child, b"hello\n");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a journal"));
    assert_eq!(fs::metadata(&target).unwrap().len(), 0, "the target is untouched");
    assert!(tributary::verify(&target).unwrap().is_consistent());
}

/// A FIFO or a device given as the target: `init` made a sidecar beside it (even
/// `/dev/null.tributary`) and failed with an `fsync` error; `status` blocked for ever
/// opening the FIFO. Found by an outside tester.
#[test]
fn a_target_that_is_not_a_regular_file_is_refused_before_anything_is_made() {
    let d = tmp();
    let fifo = d.path().join("events.log");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for e in [
        Compactor::new(&fifo, tributary::CompactorOptions::default()).unwrap().init().unwrap_err(),
        tributary::status(&fifo, None).unwrap_err(),
        tributary::verify(&fifo).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
    assert!(!d.path().join("events.log.tributary").exists(), "no sidecar was made");
}

/// The lock file holds the manifest (its watermarks). Deleted (a cleanup job), drains
/// said "never initialised, run init", a daemon retried for ever, and `init` made an
/// empty lock file, so the target could never be told apart from a new one again.
/// Now every command says the manifest is lost, creates nothing, and a daemon stops
/// (exit 3). Found by an outside tester.
#[test]
fn a_deleted_lock_file_is_a_lost_manifest_and_nothing_recreates_it() {
    let d = tmp();
    let (spool, target, j) = drained_once(d.path());
    let lock = tributary::Sidecar::for_target(&target).lock;
    fs::remove_file(&lock).unwrap();
    j.append(b"y").unwrap();
    for e in [
        compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err(),
        compactor(&target).init().unwrap_err(),
        Compactor::new(&target, tributary::CompactorOptions::default().create(true))
            .unwrap()
            .drain(std::slice::from_ref(&j))
            .unwrap_err(),
        tributary::status(&target, None).unwrap_err(),
        tributary::verify(&target).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::CorruptManifest, "{e}");
        assert!(e.to_string().contains("is gone"), "{e}");
    }
    assert!(!lock.exists(), "nothing made a new (empty) lock file");
    let mut daemon = std::process::Command::new(bin())
        .args(["compact", "--target", &s(&target), "--spool", &s(&spool), "--interval", "10"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang guard only: the daemon must stop by itself at its first round.
    let mut waited = 0;
    let status = loop {
        if let Some(st) = daemon.try_wait().unwrap() {
            break st;
        }
        waited += 1;
        if waited > 600 {
            daemon.kill().unwrap();
            panic!("compact kept retrying a lost manifest");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(3), "a lost manifest needs a human");
    assert!(!lock.exists());
}

/// The neighbour: every file of the sidecar deleted (`rm <target>.tributary/*`), the
/// folder kept. Drains advised `init` (which starts a new target: every journal
/// foreign), `verify` said "never created", `tail` printed nothing and exited 0 (an
/// outside tester). Each says the manifest is lost, and what to do either way; an
/// emptied folder beside an empty target is still an `init` that did not finish.
#[test]
fn an_emptied_sidecar_folder_beside_a_drained_target_is_a_lost_manifest() {
    let d = tmp();
    let (_spool, target, j) = drained_once(d.path());
    let sidecar = tributary::Sidecar::for_target(&target);
    for f in fs::read_dir(&sidecar.dir).unwrap() {
        fs::remove_file(f.unwrap().path()).unwrap();
    }
    j.append(b"y").unwrap();
    for e in [
        compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err(),
        tributary::verify(&target).unwrap_err(),
        tributary::Reader::open(&target, 0).map(|_| ()).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::CorruptManifest, "{e}");
        assert!(e.to_string().contains("a lost sidecar") && e.to_string().contains("do not run"), "{e}");
    }
    let out = cli(&["tail", "--target", &s(&target)]);
    assert!(!out.status.success(), "tail of a target whose manifest is lost exited 0");
    // `status` (a monitor's view) raises it too: exit 1, "ok": false, the same words
    // (it exited 0 and printed "not initialised: run init" — helper-29)
    let lost = tributary::status(&target, None).unwrap().lost_sidecar.expect("status says the sidecar is lost");
    assert!(lost.contains("a lost sidecar"), "{lost}");
    let out = cli(&["status", "--json", "--target", &s(&target)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false, "{json}");
    assert!(json["problems"][0].as_str().unwrap().contains("do not run `tributary init`"), "{json}");
    assert_eq!(fs::read_dir(&sidecar.dir).unwrap().count(), 0, "nothing was created in the sidecar");
    // An `init` cut short before its first manifest, on an empty file: init is right.
    fs::write(&target, b"").unwrap();
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TargetMissing, "{e}");
    assert!(tributary::status(&target, None).unwrap().lost_sidecar.is_none());
}

/// `status --spool` (text and `--json`) with one junk `*.journal` printed nothing but
/// the junk's error: a monitor on `status --json` went blind while the daemon drained
/// the others. And a target whose sidecar was lost read as healthy and "not
/// initialised: run init" — advice that strands every journal's undrained lines.
/// Found by outside testers.
#[test]
fn status_reports_the_healthy_journals_beside_a_junk_one_and_flags_a_lost_sidecar() {
    let d = tmp();
    let (spool, target, j) = drained_once(d.path());
    j.append(b"y").unwrap();
    fs::write(spool.join("junk.journal"), b"not sqlite").unwrap();
    let out = cli(&["status", "--json", "--target", &s(&target), "--spool", &s(&spool)]);
    assert_eq!(out.status.code(), Some(1), "a junk journal is a problem");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(v["journals"][0]["uncommitted_lines"], 1, "{v}");
    assert_eq!(v["unreadable_journals"][0]["kind"], "not_a_journal", "{v}");
    assert_eq!(v["ok"], false);
    // The library: status() still fails on it, status_all() lists it.
    assert!(tributary::status(&target, Some(&spool)).is_err());
    let all = tributary::status_all(&target, Some(&spool), &JournalOptions::default()).unwrap();
    assert_eq!((all.journals.len(), all.unreadable.len()), (1, 1));
    fs::remove_file(spool.join("junk.journal")).unwrap();
    assert_eq!(cli(&["status", "--target", &s(&target), "--spool", &s(&spool)]).status.code(), Some(0));

    fs::remove_dir_all(tributary::Sidecar::for_target(&target).dir).unwrap();
    let out = cli(&["status", "--json", "--target", &s(&target), "--spool", &s(&spool)]);
    assert_eq!(out.status.code(), Some(1), "a lost sidecar is a problem when a journal was drained into it");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = v["problems"].to_string();
    assert!(problems.contains("was lost") && problems.contains("do not run"), "{problems}");
}

/// `tail`, `verify` and `status` run as another user than the compactors failed
/// with a bare "Permission denied" on the lock file (0600 on purpose: whoever may
/// open it can hold a lock on it and stall every compactor). The error now says why
/// and what to do. Found by an outside tester. Runs the CLI as `nobody` (needs root
/// and `setpriv`; says so and checks nothing otherwise).
#[test]
fn a_reader_of_another_user_is_told_why_the_manifest_is_closed_to_it() {
    use std::os::unix::fs::PermissionsExt;
    if !can_run_as_nobody() {
        return;
    }
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    journal(&spool.join("a.journal")).append(b"hello").unwrap();
    compactor(&target).drain_paths(&[spool.join("a.journal")]).unwrap();
    for p in [d.path(), target.parent().unwrap()] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    for cmd in ["tail", "verify", "status"] {
        let out = cli_as_nobody().args([cmd, "--target", &s(&target)]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert!(err.contains("readable only by the compactors' user") && err.contains("setfacl"), "{cmd}: {err}");
    }
}

/// `--rotate-bytes 0` (or `rotate_lines(Some(0))`) was accepted and started a new
/// generation at every round that committed anything. Found by an outside tester.
#[test]
fn a_rotation_limit_of_zero_is_refused() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    for opts in [
        tributary::CompactorOptions::default().rotate_bytes(Some(0)),
        tributary::CompactorOptions::default().rotate_lines(Some(0)),
    ] {
        let Err(e) = Compactor::new(&target, opts) else { panic!("a rotation limit of 0 was accepted") };
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }
    journal(&spool.join("a.journal")).append(b"x").unwrap();
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool), "--rotate-bytes", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1"));
    assert!(lines_of(&target).is_empty(), "nothing was drained");
}

/// `append --journal x.txt` stored lines that no spool drain (`compact`) ever sees,
/// silently: it now says so (and still stores them). Found by an outside tester.
#[test]
fn appending_to_a_name_a_spool_drain_skips_says_so() {
    let d = tmp();
    let (spool, _target) = paths(d.path());
    for (name, noted) in [("x.txt", true), ("x.journal", false)] {
        let mut child = std::process::Command::new(bin())
            .args(["append", "--journal", &s(&spool.join(name))])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        feed(&mut child, b"line\n");
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stderr).contains("does not end in .journal"), noted, "{name}");
    }
}

/// A drain whose record waits past the busy timeout for a journal's write lock (another
/// process stalled mid-commit) fails after committing the lines: its error says so (an
/// outside tester read "exit 1, database is locked" as a failed drain).
#[test]
fn a_drain_failing_at_its_record_says_the_lines_are_committed() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let path = spool.join("a.journal");
    let j = journal(&path);
    j.append_batch(&numbered("a", 0..3)).unwrap();
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let opts = tributary::CompactorOptions::default()
        .journal(tributary::JournalOptions::default().busy_timeout(std::time::Duration::from_millis(100)));
    let e = Compactor::new(&target, opts).unwrap().drain_paths(std::slice::from_ref(&path)).unwrap_err();
    assert!(e.to_string().contains("are committed in the target: nothing is lost or drained twice"), "{e}");
    assert_exactly(&target, &numbered("a", 0..3));
    blocker.execute_batch("ROLLBACK").unwrap();
    compactor(&target).drain_paths(std::slice::from_ref(&path)).unwrap();
    assert_exactly(&target, &numbered("a", 0..3));
}
