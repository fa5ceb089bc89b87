//! The orderings of docs/design.md ("Orderings and their fences") that a power cut
//! depends on, checked on the syscalls of the real CLI: each test runs `tributary`
//! under `strace -f -y` and asserts that the fsync keeping an ordering happens between
//! the two operations it orders. A SIGKILL keeps the page cache, so only an order of
//! fsyncs (not of writes) survives a power cut; these tests fail when such an fsync is
//! missing or misplaced. (scripts/crash-states and scripts/powercut prove the same
//! orderings by enumerating crash states and by real power cuts.)

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use tributary::{Compactor, CompactorOptions, Durability, Journal, JournalOptions};

fn init(target: &Path) {
    Compactor::new(target, CompactorOptions::default()).unwrap().init().unwrap();
}

/// One traced syscall, reduced to what the orderings talk about.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    /// A file or folder opened with `O_CREAT` (the path it got).
    Create(String),
    /// `fsync`/`fdatasync` of the file or folder at this path.
    Sync(String),
    /// A rename, with the destination path.
    Rename(String),
    /// A `pwrite64`/`write` to the file at this path.
    Write(String),
}

/// Run the CLI with `args` in `cwd` under strace; return its ops in order.
fn traced(cwd: &Path, args: &[&str], stdin: Option<&str>) -> Vec<Op> {
    traced_env(cwd, args, stdin, &[])
}

fn traced_env(cwd: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Vec<Op> {
    let log = cwd.join(format!("strace.{}.log", std::process::id()));
    let mut cmd = Command::new("strace");
    cmd.current_dir(cwd)
        .args(["-f", "-qq", "-y", "-s", "256", "-o"])
        .arg(&log)
        .args(["-e", "trace=open,openat,creat,fsync,fdatasync,rename,renameat,renameat2,write,pwrite64", bin()])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdin(std::process::Stdio::piped())
        .envs(env.iter().copied());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!(
            "these tests need strace (`apt-get install strace`); it could not be started: {e}. \
             scripts/test.d/10-rust.sh installs it"
        ),
    };
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tributary {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_file(&log).unwrap();
    parse(&text)
}

/// The path strace -y prints in `<...>` after the first fd argument or the result.
fn angle_path(s: &str) -> Option<String> {
    let start = s.find('<')? + 1;
    let end = start + s[start..].find('>')?;
    Some(s[start..end].to_string())
}

fn parse(text: &str) -> Vec<Op> {
    let mut ops = Vec::new();
    for line in text.lines() {
        // "<pid> <syscall>(<args>) = <result>"; skip failed calls and partial lines
        let Some((_, call)) = line.split_once(' ') else { continue };
        let call = call.trim_start();
        let Some((name, rest)) = call.split_once('(') else { continue };
        // strace pads before the result: `fsync(6</dir>)            = 0`
        let Some((args, result)) = rest.rsplit_once(" = ") else { continue };
        let Some(args) = args.trim_end().strip_suffix(')') else { continue };
        if result.starts_with('-') || result.starts_with('?') {
            continue;
        }
        match name {
            "open" | "openat" | "creat" if args.contains("O_CREAT") || name == "creat" => {
                if let Some(p) = angle_path(result) {
                    ops.push(Op::Create(p));
                }
            }
            "write" | "pwrite64" => {
                if let Some(p) = angle_path(args) {
                    ops.push(Op::Write(p));
                }
            }
            "fsync" | "fdatasync" => {
                if let Some(p) = angle_path(args) {
                    ops.push(Op::Sync(p));
                }
            }
            "rename" | "renameat" | "renameat2" => {
                // the destination is the last quoted string
                let quoted: Vec<&str> = args.split('"').collect();
                if quoted.len() >= 4 {
                    let dest = quoted[quoted.len() - 2];
                    // renameat with a dirfd prints `AT_FDCWD</dir>, "name"`: relative names
                    // are relative to the dirfd's path
                    let dest = if dest.starts_with('/') {
                        dest.to_string()
                    } else {
                        let before_dest = &args[..args.rfind(&format!("\"{dest}\"")).unwrap_or(0)];
                        let dir = before_dest.rsplit_once('<').and_then(|(_, d)| d.split_once('>')).map(|(d, _)| d);
                        match dir {
                            Some(d) => format!("{d}/{dest}"),
                            None => dest.to_string(),
                        }
                    };
                    ops.push(Op::Rename(dest));
                }
            }
            _ => {}
        }
    }
    ops
}

fn position(ops: &[Op], what: &str, f: impl Fn(&Op) -> bool) -> usize {
    ops.iter().position(f).unwrap_or_else(|| panic!("the trace has no {what}: {ops:#?}"))
}

/// Positions of the manifest commits: a write to the sidecar's lock file (a slot)
/// followed by its fdatasync — the op index of that sync.
fn manifest_commits(ops: &[Op]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut written = false;
    for (i, o) in ops.iter().enumerate() {
        match o {
            Op::Write(p) if p.ends_with(".tributary/lock") => written = true,
            Op::Sync(p) if p.ends_with(".tributary/lock") && written => {
                out.push(i);
                written = false;
            }
            _ => {}
        }
    }
    out
}

fn first_manifest_commit(ops: &[Op]) -> usize {
    *manifest_commits(ops).first().unwrap_or_else(|| panic!("the trace has no manifest slot commit: {ops:#?}"))
}

fn last_manifest_commit(ops: &[Op]) -> usize {
    *manifest_commits(ops).last().unwrap_or_else(|| panic!("the trace has no manifest slot commit: {ops:#?}"))
}

/// The first write to a manifest slot (the start of the first commit).
fn first_slot_write(ops: &[Op]) -> usize {
    position(ops, "write to a manifest slot", |o| matches!(o, Op::Write(p) if p.ends_with(".tributary/lock")))
}

fn canonical(p: &Path) -> String {
    p.canonicalize().unwrap().display().to_string()
}

/// O3: a `normal` writer's rows are visible to the compactor before they are durable;
/// the round fsyncs the journal's `-wal` before the manifest that covers them.
#[test]
fn a_drain_makes_the_journal_rows_it_read_durable_before_committing_them() {
    let dir = tmp();
    let (spool, target) = paths(dir.path());
    let path = spool.join("normal.journal");
    let writer = Journal::open(&path, JournalOptions::default().durability(Durability::Normal)).unwrap();
    let lines = numbered("normal", 0..20);
    for l in &lines {
        writer.append(l).unwrap();
    }
    // the writer stays open: its NORMAL commits sit unsynced in the -wal
    init(&target);
    let ops = traced(dir.path(), &["drain", "--target", &s(&target), "--journal", &s(&path)], None);
    let wal = format!("{}-wal", canonical(&path));
    // the first commit is the round's intent; the last one covers the rows
    let (first, last) = (first_manifest_commit(&ops), last_manifest_commit(&ops));
    let synced = ops[first..last].iter().any(|o| *o == Op::Sync(wal.clone()));
    assert!(synced, "no fsync of {wal} in the round, before the manifest commit that covers its rows: {ops:#?}");
    drop(writer);
    assert_exactly(&target, &lines);
}

/// O3 for rows marked `durable` (a `full` commit's) that no commit fsync covered: a
/// `full` writer killed between writing its commit's frames and their fsync leaves
/// valid frames in the `-wal`, which `SQLite` adopts, unsynced, when the next
/// connection opens the journal with nobody else attached (a recovery). A drain that
/// trusted the mark committed such a line, a power cut took it back from the journal,
/// and the journal handed its seq out again (an outside reviewer's real power cut,
/// `scripts/powercut`'s method). A handle trusts the mark only once it has synced the
/// `-wal` since it opened it.
#[test]
fn a_commit_recovered_from_a_killed_full_writer_is_synced_before_it_is_committed() {
    let dir = tmp();
    let (spool, target) = paths(dir.path());
    init(&target);
    let path = spool.join("a.journal");
    let wal = format!("{}-wal", path.display());
    let append = |line: &str, strace_args: &[&str]| {
        let mut cmd = Command::new("strace");
        cmd.args(["-qq", "-o", "/dev/null"]).args(strace_args).arg(bin()).args(["append", "--journal", &s(&path)]);
        cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("strace (scripts/test.d/10-rust.sh installs it)");
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(format!("{line}\n").as_bytes()).unwrap();
        }
        child.wait().unwrap()
    };
    assert!(append("acked", &[]).success());
    // the second append's writer is killed at its second fsync of the -wal: its new
    // log's header sync, then the commit's (after the commit's frames are written)
    let killed = append(
        "never acknowledged",
        &["-P", &wal, "-e", "trace=fsync,fdatasync", "-e", "inject=fsync,fdatasync:signal=KILL:when=2"],
    );
    assert!(!killed.success(), "the writer was not killed in its commit fsync");
    let ops = traced(dir.path(), &["drain", "--target", &s(&target), "--journal", &s(&path)], None);
    let wal = format!("{}-wal", canonical(&path));
    let (first, last) = (first_manifest_commit(&ops), last_manifest_commit(&ops));
    let synced = ops[first..last].iter().any(|o| *o == Op::Sync(wal.clone()));
    assert!(synced, "no fsync of {wal} before the manifest commit covering a recovered, unsynced commit: {ops:#?}");
    // (the recovered commit is a line, committed: the writer died after writing it)
    assert_exactly(&target, &[b"acked".to_vec(), b"never acknowledged".to_vec()]);
}

/// O4: adopting a pre-existing target (`init`) counts its bytes as committed; they
/// must be durable first (written moments before by a setup script, say).
#[test]
fn adopting_a_pre_existing_target_fsyncs_it_before_the_first_manifest() {
    for with_lines in [false, true] {
        let dir = tmp();
        let (spool, target) = paths(dir.path());
        std::fs::write(&target, b"header\n").unwrap(); // not synced, as `echo header > out.log`
        let path = spool.join("a.journal");
        let j = journal(&path);
        let lines = numbered("a", 0..(if with_lines { 5 } else { 0 }));
        if with_lines {
            j.append_batch(&lines).unwrap();
        }
        drop(j);
        let ops = traced(dir.path(), &["init", "--target", &s(&target)], None);
        let commit = first_slot_write(&ops);
        let t = canonical(&target);
        assert!(
            ops[..commit].iter().any(|o| *o == Op::Sync(t.clone())),
            "with_lines={with_lines}: the adopted target {t} is not fsynced before the first manifest: {ops:#?}"
        );
        assert!(cli(&["drain", "--target", &s(&target), "--journal", &s(&path)]).status.success());
        let mut expected = vec![b"header".to_vec()];
        expected.extend(lines);
        assert_exactly(&target, &expected);
    }
}

/// O5: a target created by `init` is durable as a name before any manifest, also when
/// it is given as a bare relative name (its folder is then "."); O6: so is the
/// sidecar folder, and the lock file that holds the manifest.
#[test]
fn a_new_target_s_folder_is_fsynced_after_creating_it_also_for_a_bare_relative_name() {
    for relative in [true, false] {
        let dir = tmp();
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let path = spool.join("a.journal");
        let j = journal(&path);
        let lines = numbered("r", 0..3);
        j.append_batch(&lines).unwrap();
        drop(j);
        let target_arg = if relative { "out.log".to_string() } else { s(&dir.path().join("out.log")) };
        let ops = traced(dir.path(), &["init", "--target", &target_arg], None);
        let folder = canonical(dir.path());
        let created = position(&ops, "creation of the target", |o| *o == Op::Create(format!("{folder}/out.log")));
        let commit = first_slot_write(&ops);
        assert!(
            ops[created..commit].iter().any(|o| *o == Op::Sync(folder.clone())),
            "relative={relative}: the target's folder {folder} is not fsynced between creating the target \
             (op {created}) and the first manifest (op {commit}): {ops:#?}"
        );
        let sidecar = format!("{folder}/out.log.tributary");
        let mkdir = position(&ops, "creation of the lock file", |o| *o == Op::Create(format!("{sidecar}/lock")));
        assert!(
            ops[mkdir..commit].iter().any(|o| *o == Op::Sync(sidecar.clone())),
            "relative={relative}: the sidecar folder is not fsynced between creating the lock file (op {mkdir}) \
             and writing the first manifest into it (op {commit}): {ops:#?}"
        );
        let out = Command::new(bin())
            .current_dir(dir.path())
            .args(["drain", "--target", &target_arg, "--journal", &s(&path)])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_exactly(&dir.path().join("out.log"), &lines);
    }
}

/// O2: a journal's names (the file and its `-wal`) are durable before a line in it is
/// acknowledged. SQLite fsyncs the folder only after the first fsync of a file it
/// created itself; a `full` writer that opens a journal (and `-wal`) that a `normal`
/// writer created never gets that, so opening a handle fsyncs the folder.
#[test]
fn a_journal_s_folder_is_fsynced_before_its_first_line_is_acknowledged() {
    for created_by_a_normal_writer in [true, false] {
        let dir = tmp();
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let path = spool.join("new.journal");
        let normal = created_by_a_normal_writer.then(|| {
            let opts = JournalOptions::default().durability(Durability::Normal);
            let j = Journal::open(&path, opts).unwrap();
            j.append(b"zero").unwrap();
            j // stays open, so its unsynced -wal stays
        });
        let ops = traced(dir.path(), &["append", "--journal", &s(&path)], Some("one\ntwo\n"));
        let folder = canonical(&spool);
        // the acknowledgement is the append's exit; its lines are durable at the last -wal fsync
        let wal = format!("{folder}/new.journal-wal");
        let acked = ops.iter().rposition(|o| *o == Op::Sync(wal.clone())).expect("the -wal is fsynced");
        assert!(
            ops[..acked].iter().any(|o| *o == Op::Sync(folder.clone())),
            "created_by_a_normal_writer={created_by_a_normal_writer}: the spool folder {folder} is not fsynced \
             before the -wal fsync that acknowledges the lines (op {acked}): {ops:#?}"
        );
        drop(normal);
    }
}

/// O12: the manifest a round starts from is durable before the round writes anything.
/// A holder killed between its slot write and that write's fdatasync leaves a
/// manifest that the next holder reads (from the page cache, or from a device cache);
/// if that holder wrote and then lost power before its own commit, the slot could
/// vanish while the bytes stayed. The next holder's intent commit fdatasyncs the lock
/// file before its first byte.
#[test]
fn a_round_makes_the_manifest_it_read_durable_before_writing_to_the_target() {
    let dir = tmp();
    let (spool, target) = paths(dir.path());
    let path = spool.join("a.journal");
    let lines = numbered("a", 0..4);
    journal(&path).append_batch(&lines).unwrap();
    init(&target);
    // the first drain writes its intent into a slot and is killed before the
    // fdatasync that makes it durable
    let out = cli_env(
        &["drain", "--target", &s(&target), "--journal", &s(&path)],
        &[("TRIBUTARY_FAILPOINTS", "drain.intent_unsynced=kill")],
    );
    assert!(!out.status.success(), "the failpoint did not kill the first drain");
    let ops = traced(dir.path(), &["drain", "--target", &s(&target), "--journal", &s(&path)], None);
    let t = canonical(&target);
    let lock = format!("{t}.tributary/lock");
    let first_write = position(&ops, "write to the target", |o| *o == Op::Write(t.clone()));
    assert!(
        ops[..first_write].iter().any(|o| *o == Op::Sync(lock.clone())),
        "the lock file {lock} (the manifest's slots) is not fdatasynced before the round's first write to the \
         target (op {first_write}): {ops:#?}"
    );
    assert_exactly(&target, &lines);
}
