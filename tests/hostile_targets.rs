//! The target side of a hostile world (issue 12 items 4, 5, 6, 7): restored manifests,
//! unmounted shares, replaced targets, foreign bytes, cloned journals. Each case must
//! give exactly-once or a clear, named error that touches nothing — the target's
//! bytes, its manifest and every journal row stay as they were.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use tributary::{verify, Compactor, CompactorOptions, ErrorKind, Journal, Manifest, Sidecar};

/// Everything a refusal must leave alone: the target's bytes, the lock file's bytes
/// (the manifest), each journal's backlog.
struct Snapshot {
    target: Vec<u8>,
    lock: Vec<u8>,
    backlogs: Vec<u64>,
}

fn snapshot(target: &Path, journals: &[&Journal]) -> Snapshot {
    Snapshot {
        target: fs::read(target).unwrap_or_default(),
        lock: fs::read(Sidecar::for_target(target).lock).unwrap_or_default(),
        backlogs: journals.iter().map(|j| j.backlog().unwrap().lines).collect(),
    }
}

fn assert_untouched(before: &Snapshot, target: &Path, journals: &[&Journal], what: &str) {
    let now = snapshot(target, journals);
    assert!(now.target == before.target, "{what}: the target's bytes changed");
    assert!(now.lock == before.lock, "{what}: the manifest changed");
    assert_eq!(now.backlogs, before.backlogs, "{what}: journal rows changed");
}

fn append_all(j: &Journal, lines: &[Vec<u8>]) {
    j.append_batch(lines).unwrap();
}

/// A target made (`init`) and a journal `a.journal` in `spool` whose `lines` are
/// drained into it: the start of most tests here.
fn drained_into(spool: &Path, target: &Path, lines: &[Vec<u8>]) -> Journal {
    init(target);
    let j = journal(&spool.join("a.journal"));
    append_all(&j, lines);
    compactor(target).drain(std::slice::from_ref(&j)).unwrap();
    j
}

/// Item 6: `echo … >> events.log` by an old writer during a migration. Before: `verify`
/// said ok and the next drain truncated the bytes as "left by a crashed drain".
#[test]
fn foreign_bytes_in_the_target_are_reported_and_refused_touching_nothing() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let first = numbered("a", 0..5);
    let j = drained_into(&spool, &target, &first);
    let later = numbered("b", 0..3);
    append_all(&j, &later);
    fs::OpenOptions::new().append(true).open(&target).unwrap().write_all(b"an old writer's line\n").unwrap();

    let v = verify(&target).unwrap();
    assert!(!v.is_consistent(), "verify called foreign bytes fine: {v:?}");
    assert!(v.problems.iter().any(|p| p.contains("not written by a drain round")), "{:?}", v.problems);
    let out = cli(&["verify", "--target", &s(&target)]);
    assert!(!out.status.success(), "`tributary verify` exited 0 on foreign bytes");

    let before = snapshot(&target, &[&j]);
    for attempt in 0..2 {
        let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedTail, "{e}");
        assert!(e.to_string().contains("no drain round"), "the message does not say what happened: {e}");
        assert_untouched(&before, &target, &[&j], &format!("refusal {attempt}"));
    }
    // the advice checks the committed part first: here it is intact
    assert!(v.problems.iter().all(|p| !p.contains("committed bytes were changed")), "{:?}", v.problems);
    // the documented remedy: save the bytes, cut them off, append them through a journal
    let committed = manifest_of(&target).committed_len;
    fs::OpenOptions::new().write(true).open(&target).unwrap().set_len(committed).unwrap();
    let j2 = journal(&spool.join("migrated.journal"));
    j2.append(b"an old writer's line").unwrap();
    compactor(&target).drain(&[j, j2]).unwrap();
    let mut all = first;
    all.extend(later);
    all.push(b"an old writer's line".to_vec());
    assert_exactly(&target, &all);
}

/// Item 4: restoring an older manifest (an old copy of the lock file, as a backup tool
/// would put back). Before: the next drain truncated every line committed after the
/// backup (up to one round), silently from a host without the affected journal.
#[test]
fn a_restored_older_manifest_cuts_nothing_even_from_a_host_without_the_journal() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let a = drained_into(&spool, &target, &numbered("a", 0..3));
    let lock = Sidecar::for_target(&target).lock;
    let backup = fs::read(&lock).unwrap();
    // later rounds commit more lines of `a` (its rows are deleted once committed)
    append_all(&a, &numbered("a", 3..8));
    compactor(&target).drain(std::slice::from_ref(&a)).unwrap();
    let after = fs::read(&target).unwrap();
    fs::write(&lock, &backup).unwrap();

    // another host, with only its own journal `b`
    let other = d.path().join("other-host");
    fs::create_dir(&other).unwrap();
    let b = journal(&other.join("b.journal"));
    append_all(&b, &numbered("b", 0..2));
    let before = snapshot(&target, &[&b]);
    let e = compactor(&target).drain(std::slice::from_ref(&b)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnexpectedTail, "{e}");
    assert_untouched(&before, &target, &[&b], "drain on a restored manifest");
    assert_eq!(fs::read(&target).unwrap(), after, "committed lines were cut");
    // the host that has `a` is refused as well, by `a`'s own record
    let e = compactor(&target).drain(&[a]).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::JournalForeign | ErrorKind::UnexpectedTail), "{e}");
    assert!(!verify(&target).unwrap().is_consistent(), "verify passed a manifest older than the target");
}

/// Item 5: the share is not mounted (boot order, automount) and the target sits at the
/// mount root. Before: a host whose journals were all new "drained" into the empty
/// mount point, exited 0 and deleted the rows; the lines were hidden once mounted.
#[test]
fn an_unmounted_share_is_refused_and_nothing_is_created() {
    let d = tmp();
    let spool = d.path().join("spool");
    fs::create_dir(&spool).unwrap();
    let share = d.path().join("share"); // where the share is mounted
    fs::create_dir(&share).unwrap();
    let target = share.join("events.log");
    init(&target);
    let j = journal(&spool.join("new.journal"));
    let lines = numbered("n", 0..4);
    append_all(&j, &lines);
    // "unmount": the real share moves away, an empty mount-point folder is left
    let mounted = d.path().join("share.mounted");
    fs::rename(&share, &mounted).unwrap();
    fs::create_dir(&share).unwrap();

    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TargetMissing, "{e}");
    assert!(e.to_string().contains("mounted"), "the message does not mention the mount: {e}");
    assert_eq!(fs::read_dir(&share).unwrap().count(), 0, "something was created in the empty mount point");
    assert_eq!(j.backlog().unwrap().lines, 4, "journal rows were touched");
    // the command line and the daemon refuse the same way
    let out = cli(&["drain", "--target", &s(&target), "--spool", &s(&spool)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[target_missing]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the daemon waits for the share (a boot-order race), creating nothing, and says so once
    let mut daemon = std::process::Command::new(bin())
        .args(["compact", "--target", &s(&target), "--spool", &s(&spool), "--interval", "10"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(daemon.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut err, &mut first).unwrap();
    assert!(first.contains("[target_missing]"), "{first}");
    assert_eq!(fs::read_dir(&share).unwrap().count(), 0, "compact created something in the empty mount point");
    assert_eq!(j.backlog().unwrap().lines, 4);
    std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    let st = daemon.wait().unwrap();
    assert!(st.success(), "compact did not stop cleanly on SIGTERM: {st}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(!rest.contains("[target_missing]"), "the same problem was reported again: {rest}");
    assert_eq!(fs::read_dir(&share).unwrap().count(), 0, "compact created something in the empty mount point");
    // someone runs `init` there by mistake: the journal that drained into the real
    // target before refuses the new one
    fs::remove_dir(&share).unwrap();
    fs::rename(&mounted, &share).unwrap();
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    assert_exactly(&target, &lines);
    fs::rename(&share, &mounted).unwrap();
    fs::create_dir(&share).unwrap();
    init(&target);
    append_all(&j, &numbered("m", 0..1));
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JournalForeign, "{e}");
    assert_eq!(j.backlog().unwrap().lines, 1);
}

/// A file put in the target's place (`mv other.log events.log`, or another file at the
/// path of an unmounted share whose sidecar is still visible) is not the target: the
/// sidecar records the target's inode.
#[test]
fn a_replaced_target_file_is_refused_and_a_restored_copy_is_accepted_by_init() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let lines = numbered("a", 0..3);
    let j = drained_into(&spool, &target, &lines);
    let original = fs::read(&target).unwrap();
    // another file with the same content at the path: still not this target
    let stranger = d.path().join("stranger.log");
    fs::write(&stranger, &original).unwrap();
    let kept = d.path().join("kept.log");
    fs::rename(&target, &kept).unwrap();
    fs::rename(&stranger, &target).unwrap();
    append_all(&j, &numbered("b", 0..1));
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TargetMissing, "{e}");
    assert_eq!(j.backlog().unwrap().lines, 1);
    // a copy with the committed content is accepted by an explicit `init` (restored
    // from a backup together with its sidecar); one with other content is not
    fs::write(&target, b"something else\n").unwrap();
    let e = compactor(&target).init().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TargetMissing, "{e}");
    fs::write(&target, &original).unwrap();
    let r = compactor(&target).init().unwrap();
    assert!(r.rebound && !r.created, "{r:?}");
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    let mut all = lines;
    all.extend(numbered("b", 0..1));
    assert_exactly(&target, &all);
}

/// Item 7: cloned VMs. Two copies of a journal go on writing different lines that
/// happen to end with the same batch trailer. Before: clone detection compared one
/// line's CRC at the watermark, so the clone's lines were silently dropped.
#[test]
fn a_cloned_journal_that_diverged_anywhere_is_refused_even_with_the_same_last_line() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let path = spool.join("vm.journal");
    {
        let j = journal(&path);
        append_all(&j, &numbered("before-clone", 0..3));
        compactor(&target).drain(&[j]).unwrap();
    }
    let clone_dir = d.path().join("clone");
    fs::create_dir(&clone_dir).unwrap();
    let clone_path = clone_dir.join("vm.journal");
    for suffix in ["", "-wal"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        if from.exists() {
            fs::copy(&from, format!("{}{suffix}", clone_path.display())).unwrap();
        }
    }
    let original = journal(&path);
    let clone = journal(&clone_path);
    append_all(&original, &[b"job 1 result x".to_vec(), b"END".to_vec()]);
    append_all(&clone, &[b"job 2 result y".to_vec(), b"END".to_vec()]);
    compactor(&target).drain(std::slice::from_ref(&original)).unwrap();
    let before = snapshot(&target, &[&clone]);
    let e = compactor(&target).drain(std::slice::from_ref(&clone)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JournalRestored, "{e}");
    assert!(e.to_string().contains("clone"), "the message does not say what happened: {e}");
    assert_untouched(&before, &target, &[&clone], "drain of a clone");
    // a clone that has not diverged (identical lines) is indistinguishable, as documented
    let twin_dir = d.path().join("twin");
    fs::create_dir(&twin_dir).unwrap();
    drop(original);
    let twin_path = twin_dir.join("vm.journal");
    fs::copy(&path, &twin_path).unwrap();
    let twin = journal(&twin_path);
    compactor(&target).drain(&[twin]).unwrap();
}

/// Both manifest slots damaged: an error, never a fresh manifest or an older state.
#[test]
fn damaged_manifest_slots_are_an_error_and_nothing_is_recreated() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let j = drained_into(&spool, &target, &numbered("a", 0..2));
    let lock = Sidecar::for_target(&target).lock;
    let mut bytes = fs::read(&lock).unwrap();
    for slot in [0usize, SLOT_BYTES as usize] {
        bytes[slot + 20] ^= 0x40;
    }
    fs::write(&lock, &bytes).unwrap();
    append_all(&j, &numbered("b", 0..1));
    let before = snapshot(&target, &[&j]);
    for e in [
        compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err(),
        Compactor::new(&target, CompactorOptions::default().create(true))
            .unwrap()
            .drain(std::slice::from_ref(&j))
            .unwrap_err(),
        compactor(&target).init().unwrap_err(),
        verify(&target).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::CorruptManifest, "{e}");
        assert!(e.to_string().contains("Do not restore"), "the advice is missing: {e}");
    }
    assert_untouched(&before, &target, &[&j], "damaged slots");
    assert!(Manifest::load(&Sidecar::for_target(&target)).is_err());
}

/// An `init` whose first slot write was torn (a power cut mid-write: no valid slot, no
/// stub yet) never finished: a drain says so (`target_missing`), and `init` starts it
/// again — not `corrupt_manifest` for good.
#[test]
fn an_init_torn_at_its_first_slot_can_be_run_again() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let sidecar = Sidecar::for_target(&target);
    let mut bytes = fs::read(&sidecar.lock).unwrap();
    bytes[24] ^= 0x01; // slot A's payload: its CRC no longer matches
    fs::write(&sidecar.lock, &bytes).unwrap();
    fs::remove_file(&sidecar.manifest).unwrap(); // the stub comes after the first slot
    let j = journal(&spool.join("a.journal"));
    j.append(b"x").unwrap();
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TargetMissing, "{e}");
    assert!(e.to_string().contains("did not finish"), "{e}");
    let r = compactor(&target).init().unwrap();
    assert!(r.created, "{r:?}");
    compactor(&target).drain(&[j]).unwrap();
    assert_exactly(&target, &[b"x".to_vec()]);
}

/// The share goes away in the middle of a round (an unmount, a FUSE client restart,
/// after the round took its lock): `target_missing`, which a daemon retries — not
/// `target_truncated`, which stops it for a human (found by the daemon soak on
/// GlusterFS: a client restart made the daemon exit).
#[test]
fn a_share_unmounted_during_a_round_is_target_missing_not_truncated() {
    let d = tmp();
    let spool = d.path().join("spool");
    fs::create_dir(&spool).unwrap();
    let share = d.path().join("share");
    fs::create_dir(&share).unwrap();
    let target = share.join("events.log");
    init(&target);
    let j = journal(&spool.join("a.journal"));
    j.append(b"committed").unwrap();
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    j.append(b"pending").unwrap();
    let fp = d.path().join("fp");
    fs::create_dir(&fp).unwrap();
    let child = std::process::Command::new(bin())
        .args(["drain", "--target", &s(&target), "--journal", &s(&spool.join("a.journal"))])
        .env("TRIBUTARY_FAILPOINTS", "drain.locked=hold")
        .env(tributary::testing::failpoint::DIR_VAR, &fp)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reached = fp.join("drain.locked.reached");
    while !reached.exists() {
        std::thread::yield_now();
    }
    // "unmount": the share's content goes away, an empty mount point stays
    let away = d.path().join("share.away");
    fs::rename(&share, &away).unwrap();
    fs::create_dir(&share).unwrap();
    fs::remove_file(&reached).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("[target_missing]") && !err.contains("target_truncated"), "{err}");
    // back: the next drain goes on
    fs::remove_dir(&share).unwrap();
    fs::rename(&away, &share).unwrap();
    compactor(&target).drain(&[j]).unwrap();
    assert_exactly(&target, &[b"committed".to_vec(), b"pending".to_vec()]);
}

/// A target with "committed" drained and "pending" in its journal: then a drain in a
/// child process held at `point`, `meanwhile` run there, and the drain let go; it must
/// succeed with both lines in the target once. Returns the target and the journal.
fn a_drain_held_at(
    d: &tempfile::TempDir,
    before: impl FnOnce(&Path),
    point: &str,
    meanwhile: impl FnOnce(&Path),
) -> (PathBuf, Journal) {
    let (spool, target) = paths(d.path());
    init(&target);
    let j = journal(&spool.join("a.journal"));
    j.append(b"committed").unwrap();
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    j.append(b"pending").unwrap();
    before(&target);
    let fp = d.path().join("fp");
    fs::create_dir(&fp).unwrap();
    let child = spawn_with_failpoint(
        &["drain", "--target", &s(&target), "--journal", &s(&spool.join("a.journal"))],
        &format!("{point}=hold"),
        &fp,
    );
    let reached = wait_reached(&fp, point);
    meanwhile(&target);
    fs::remove_file(&reached).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_exactly(&target, &[b"committed".to_vec(), b"pending".to_vec()]);
    (target, j)
}

/// The target missing at the round's open while its sidecar is there — a share that
/// came back between the open and the round's look at the sidecar (a FUSE client
/// restarted): the target is opened once more, and here it is back by then, so the
/// round goes on. It was `target_truncated`, a daemon stopped for a human (CI's soak on
/// GlusterFS, 2 of its runs: "0 bytes but 362092 bytes were committed", the file whole).
#[test]
fn a_share_back_between_the_open_and_the_sidecar_look_is_not_truncated() {
    let d = tmp();
    let away = d.path().join("events.away");
    let (target, j) = a_drain_held_at(
        &d,
        |target| fs::rename(target, &away).unwrap(), // away when the round opens it
        "open.target_missing",
        |target| fs::rename(&away, target).unwrap(), // back before the round looks at the sidecar
    );
    // and a target that stays gone with its sidecar here is still `target_truncated`
    fs::rename(&target, &away).unwrap();
    j.append(b"more").unwrap();
    let err = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TargetTruncated, "{err}");
}

/// A GlusterFS client restarted under a round showed the whole target as 0 bytes for
/// a moment (CI's soak: the daemon stopped on `target_truncated`, nothing was wrong).
/// A target read shorter than committed is read once more, opened again by name,
/// before it is called truncated: here its bytes come back in between.
#[test]
fn a_target_read_short_for_a_moment_is_not_truncated() {
    let d = tmp();
    let whole = std::cell::RefCell::new(Vec::new());
    let cut_to =
        |target: &Path, len: u64| fs::OpenOptions::new().write(true).open(target).unwrap().set_len(len).unwrap();
    // the same file (same inode), read as 0 bytes when the round reads its size
    let (target, j) = a_drain_held_at(
        &d,
        |target| {
            *whole.borrow_mut() = fs::read(target).unwrap();
            cut_to(target, 0);
        },
        "open.target_short",
        |target| fs::OpenOptions::new().write(true).open(target).unwrap().write_all(&whole.borrow()).unwrap(),
    );
    // and a target that stays short is still `target_truncated`, nothing touched
    cut_to(&target, 3);
    j.append(b"more").unwrap();
    let err = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TargetTruncated, "{err}");
    assert_eq!(fs::metadata(&target).unwrap().len(), 3);
}

/// Rule 6 (docs/design.md): a client cache (GlusterFS's quick-read serves a small
/// file's whole content for up to 1 s) can hand a reader on another host bytes other
/// than the committed ones — after a crashed round's tail was cut and rewritten. Here
/// the committed bytes are overwritten in place (same length) to stand for such
/// content. Before: the reader returned the wrong lines; now it refuses them (after
/// re-reading for a while, as a cache would turn over) and returns nothing.
#[test]
fn a_reader_never_returns_bytes_that_do_not_match_the_committed_crc() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    drained_into(&spool, &target, &numbered("a", 0..5));
    let good = fs::read(&target).unwrap();
    let mut bad = good.clone();
    bad[0] ^= 0x20; // same length, other content
    fs::write(&target, &bad).unwrap();

    let mut r = tributary::Reader::open(&target, 0).unwrap();
    let err = r.next_line().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TornTarget, "{err}");
    assert!(err.to_string().contains("did not match what the manifest committed"), "{err}");

    // The right bytes back: read as committed.
    fs::write(&target, &good).unwrap();
    let mut r = tributary::Reader::open(&target, 0).unwrap();
    let first = r.next_line().unwrap().unwrap();
    assert_eq!(
        format!("{}\n", String::from_utf8(first).unwrap()).as_bytes(),
        &good[..good.iter().position(|&b| b == b'\n').unwrap() + 1]
    );
}

/// A drain held at failpoint `point` (`drain.mid_write`: after its round's first 16
/// bytes; `drain.after_write`: after all of them, before the fsync and the commit)
/// while `tamper` does something to the target; returns the drain's stderr (it must
/// have failed).
fn drain_while_tampered(d: &Path, target: &Path, journal: &Path, point: &str, tamper: impl FnOnce()) -> String {
    let fp = d.join("fp");
    let _ = fs::create_dir(&fp);
    let child = spawn_with_failpoint(
        &["drain", "--target", &s(target), "--journal", &s(journal)],
        &format!("{point}=hold_once"),
        &fp,
    );
    let mut child = child;
    let reached = fp.join(format!("{point}.reached"));
    while !reached.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the drain ended ({status}) before reaching {point}");
        }
        std::thread::yield_now();
    }
    tamper();
    fs::remove_file(&reached).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the round committed over a tampered target: {err}");
    err
}

fn cut(target: &Path, len: u64) {
    fs::OpenOptions::new().write(true).open(target).unwrap().set_len(len).unwrap();
}

/// An outside tester: `truncate -s 0` (logrotate `copytruncate`) while a 64 MiB round
/// wrote let the round's later `pwrite`s make the file long again over zeros; the round
/// committed, the journal rows were deleted, `drain` exited 0 — lines lost, and only
/// `verify` noticed. Now a round checks the target's size before each write and,
/// before its commit, its size and holes: cut inside its own bytes (the committed part
/// intact), it commits nothing, and the next drain cuts the bytes and writes them
/// again; cut into the committed part, every drain refuses.
#[test]
fn a_target_cut_while_a_round_writes_is_never_committed_over() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let jp = spool.join("a.journal");
    let j = journal(&jp);
    let mut all = numbered("first", 0..50);
    append_all(&j, &all);
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    let mut round = |name: &str, n: usize, point: &str, tamper: &dyn Fn(u64), want: &str| {
        let lines = numbered(name, 0..n);
        // several runs: a round then writes them one after the other (drain.mid_write
        // falls between two)
        for part in lines.chunks(n.div_ceil(5)) {
            append_all(&j, part);
        }
        let committed = fs::metadata(&target).unwrap().len();
        let err = drain_while_tampered(d.path(), &target, &jp, point, || tamper(committed));
        // retried (`io`): only the round's own bytes were cut; the next round rewrites them
        assert!(err.contains("[io]") && err.contains(want), "{name}: {err}");
        assert_eq!(j.backlog().unwrap().lines, n as u64, "{name}: the round's lines left their journal");
        compactor(&target).drain(std::slice::from_ref(&j)).expect("the next round cuts the bytes, writes them again");
        all.extend(lines);
        assert_exactly(&target, &all);
        verify(&target).unwrap();
    };
    // cut to its committed length while the round writes: its next write sees it
    round("second", 50, "drain.mid_write", &|committed| cut(&target, committed), "during this round");
    // cut after the round's last write: shorter than the round's end
    round("third", 50, "drain.after_write", &|committed| cut(&target, committed + 10), "during this round");
    // cut, then written past at the round's end (a later write, racing the check):
    // a hole of whole blocks in the round's bytes
    let written_past = |committed: u64| {
        let len = fs::metadata(&target).unwrap().len();
        cut(&target, committed);
        let f = fs::OpenOptions::new().write(true).open(&target).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"\n", len - 1).unwrap();
    };
    round("fourth", 3000, "drain.after_write", &written_past, "over zeros");

    // cut to 0 while a round writes: the committed part is gone; this round and every
    // later one refuse, touching nothing
    for part in numbered("fifth", 0..50).chunks(10) {
        append_all(&j, part);
    }
    let err = drain_while_tampered(d.path(), &target, &jp, "drain.mid_write", || cut(&target, 0));
    assert!(err.contains("[target_truncated]"), "{err}");
    assert_eq!(j.backlog().unwrap().lines, 50);
    let before = snapshot(&target, &[&j]);
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TargetTruncated, "{e}");
    assert_untouched(&before, &target, &[&j], "a drain after the committed part was cut");
}

/// Cut below its committed length and written past since (an old round's bytes, a
/// foreign writer): the file is long enough again, but its committed part ends in
/// zeros. Every drain refuses it, naming where the zeros start.
#[test]
fn a_committed_part_cut_and_written_past_is_refused() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let j = drained_into(&spool, &target, &numbered("first", 0..3000));
    assert_eq!(tributary::status(&target, None).unwrap().committed_part_cut, None, "a healthy target");
    let len = fs::metadata(&target).unwrap().len();
    cut(&target, 0);
    let f = fs::OpenOptions::new().write(true).open(&target).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"\n", len + 100).unwrap();
    append_all(&j, &numbered("second", 0..5));
    let before = snapshot(&target, &[&j]);
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TargetTruncated, "{e}");
    assert!(e.to_string().contains("committed lines from byte 0 on are gone"), "{e}");
    assert_untouched(&before, &target, &[&j], "a drain over a committed part cut and written past");
    // `status` says so too (its length alone looks healthy): in the report, and as a
    // problem of `tributary status` (exit 1)
    let cut_seen = tributary::status(&target, None).unwrap().committed_part_cut;
    assert!(cut_seen.as_deref().is_some_and(|c| c.contains("committed lines from byte 0 on are gone")), "{cut_seen:?}");
    let out = cli(&["status", "--json", "--target", target.to_str().unwrap()]);
    let json = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert!(json.contains("\"ok\":false") && json.contains("from byte 0 on are gone"), "{json}");
}

/// The neighbour: the target replaced during a round (`cp` + `mv`, logrotate `create`)
/// let the round commit into the unlinked old file — its lines in no file once the
/// drain exited. Now the round sees its path name another file and commits nothing.
#[test]
fn a_target_replaced_while_a_round_writes_is_never_committed_into() {
    let d = tmp();
    let target = paths(d.path()).1;
    let copy = d.path().join("out.log.copy");
    let err = second_round_while_tampered(d.path(), || {
        fs::copy(&target, &copy).unwrap();
        fs::rename(&copy, &target).unwrap();
    });
    assert!(err.contains("[target_missing]") && err.contains("replaced during the round"), "{err}");
}

/// Removed during a round: the same (the round wrote into an unlinked file).
#[test]
fn a_target_removed_while_a_round_writes_is_never_committed_into() {
    let d = tmp();
    let target = paths(d.path()).1;
    let err = second_round_while_tampered(d.path(), || fs::remove_file(&target).unwrap());
    assert!(err.contains("[target_truncated]"), "{err}");
}

/// A target in `d` with 20 lines committed, and a second round of 20 held after its
/// writes while `tamper` runs; it must fail, and its lines stay in their journal.
/// Returns its stderr.
fn second_round_while_tampered(d: &Path, tamper: impl FnOnce()) -> String {
    let (spool, target) = paths(d);
    init(&target);
    let jp = spool.join("a.journal");
    let j = journal(&jp);
    append_all(&j, &numbered("first", 0..20));
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    append_all(&j, &numbered("second", 0..20));
    let err = drain_while_tampered(d, &target, &jp, "drain.after_write", tamper);
    assert_eq!(j.backlog().unwrap().lines, 20, "the round's lines left their journal");
    err
}

/// A filesystem may keep zeros as a hole (ZFS with compression; a line may hold NUL
/// bytes): a hole among a round's bytes that read back as written is not a cut, and the
/// round commits. Here a hole is punched (`fallocate -p`) into a run of NUL bytes the
/// round wrote, while it holds before its commit.
#[test]
fn a_hole_that_reads_back_as_written_is_not_a_cut() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let jp = spool.join("a.journal");
    let j = journal(&jp);
    append_all(&j, &numbered("first", 0..3));
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    let committed = fs::metadata(&target).unwrap().len();
    let zeros = vec![0u8; 64 << 10];
    append_all(&j, &[zeros.clone(), b"after".to_vec()]);
    let fp = d.path().join("fp");
    fs::create_dir(&fp).unwrap();
    let child = spawn_with_failpoint(
        &["drain", "--target", &s(&target), "--journal", &s(&jp)],
        "drain.after_write=hold_once",
        &fp,
    );
    let reached = wait_reached(&fp, "drain.after_write");
    let start = committed.div_ceil(4096) * 4096;
    let len = (committed + zeros.len() as u64) / 4096 * 4096 - start;
    let punched = std::process::Command::new("fallocate")
        .args(["-p", "-o", &start.to_string(), "-l", &len.to_string(), &s(&target)])
        .status()
        .unwrap();
    assert!(punched.success());
    // the hole is there (SEEK_HOLE finds it among the round's bytes)
    let f = fs::File::open(&target).unwrap();
    // SAFETY: lseek on a descriptor this test owns, open for the call.
    let hole =
        unsafe { libc::lseek(std::os::fd::AsRawFd::as_raw_fd(&f), i64::try_from(committed).unwrap(), libc::SEEK_HOLE) };
    assert!(u64::try_from(hole).unwrap() < committed + zeros.len() as u64, "no hole was punched");
    fs::remove_file(&reached).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "a hole of the very bytes written was taken for a cut: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exactly(&target, &[numbered("first", 0..3), vec![zeros, b"after".to_vec()]].concat());
}

/// A target reached through a FUSE filesystem that keeps record locks per mount (an
/// outside tester: through two sshfs mounts, 1,162 acknowledged lines lost and 1,162
/// duplicated; a bindfs view beside the real folder rolled a watermark back). bindfs
/// stands in for them: its lock and the real folder's are two locks — shown first, so
/// this test can tell — and every front end refuses the target through it, touching
/// nothing, unless the operator names the type in `TRIBUTARY_FUSE_SHARED_LOCKS`.
#[test]
fn a_target_through_a_fuse_mount_whose_locks_stay_in_that_mount_is_refused_by_every_front_end() {
    use std::os::fd::AsRawFd;
    let d = tmp();
    let real = d.path().join("share");
    fs::create_dir(&real).unwrap();
    let Some(view) = Bindfs::mount(&real) else {
        eprintln!("skipped: needs root (CI runs it)");
        return;
    };
    // Two "hosts" both get the lock of one file: the reason for the refusal.
    let ofd_lock = |p: &Path| {
        let f = fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(p).unwrap();
        // SAFETY: flock is a plain C struct of integers: all zeros is a valid value.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as i16;
        fl.l_whence = libc::SEEK_SET as i16;
        // SAFETY: F_OFD_SETLK reads the flock struct, valid for the call, on a descriptor `f` owns.
        let granted = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) } == 0;
        (f, granted)
    };
    let (_held, first) = ofd_lock(&real.join("probe.lock"));
    let (_also, second) = ofd_lock(&view.path().join("probe.lock"));
    assert!(first && second, "the lock through bindfs excluded the real folder's: this test cannot tell");

    let target = real.join("events.log");
    init(&target);
    let spool = d.path().join("spool");
    fs::create_dir(&spool).unwrap();
    let j = journal(&spool.join("a.journal"));
    append_all(&j, &numbered("a", 0..3));
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    append_all(&j, &numbered("b", 0..2));
    let before = snapshot(&target, &[&j]);

    let through = view.path().join("events.log");
    let refused = |what: &str, e: tributary::Error| {
        assert_eq!(e.kind(), ErrorKind::UnsafeFilesystem, "{what}: {e}");
        assert!(e.to_string().contains("TRIBUTARY_FUSE_SHARED_LOCKS=fuse"), "{what} does not say the way out: {e}");
    };
    let c = Compactor::new(&through, CompactorOptions::default()).unwrap();
    refused("a drain", c.drain(std::slice::from_ref(&j)).unwrap_err());
    refused("a reader", tributary::Reader::open(&through, 0).unwrap_err());
    refused("verify", verify(&through).unwrap_err());
    let created = view.path().join("new.log");
    let e = Compactor::new(&created, CompactorOptions::default().create(true)).and_then(|c| c.drain(&[]));
    refused("init", e.unwrap_err());
    assert!(!real.join("new.log").exists(), "init created a target through the FUSE view");
    assert!(!real.join("new.log.tributary").exists(), "the refused init left a sidecar folder");
    for args in [vec!["status", "--target"], vec!["drain", "--spool", &s(&spool), "--target"]] {
        let out = cli(&[&args[..], &[&s(&through)]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("[unsafe_filesystem]"), "{args:?}: {err}");
    }
    assert_untouched(&before, &target, &[&j], "the refusals");

    // The operator vouches for the type: accepted (a check of the same bytes).
    let out = cli_env(&["verify", "--target", &s(&through)], &[("TRIBUTARY_FUSE_SHARED_LOCKS", "fuse.x, fuse")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The real path drains as before.
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    assert_eq!(
        fs::read(&target).unwrap(),
        [numbered("a", 0..3), numbered("b", 0..2)]
            .concat()
            .join(&b"\n"[..])
            .into_iter()
            .chain(*b"\n")
            .collect::<Vec<u8>>()
    );
}

/// Containers started from one image that ships a spool, or cloned VMs: both copies of
/// a journal take appends, drains take one copy and refuse the other for good
/// (`journal_restored`) — and the lines acknowledged on the refused copy are in no
/// target (an outside tester: "keep only the live copy" would delete them, and
/// `status` said "backlog 0"). `status` now counts them as waiting, and the documented
/// salvage — `dump` the copy, leave out lines the target has, `append` the rest to a
/// new journal — commits each acknowledged line exactly once.
#[test]
fn the_lines_of_a_refused_clone_are_counted_and_salvaged_exactly_once() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let path = spool.join("vm.journal");
    append_all(&journal(&path), &numbered("image", 0..3)); // shipped undrained
    let clone_spool = d.path().join("clone");
    fs::create_dir(&clone_spool).unwrap();
    let clone_path = clone_spool.join("vm.journal");
    for suffix in ["", "-wal"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        if from.exists() {
            fs::copy(&from, format!("{}{suffix}", clone_path.display())).unwrap();
        }
    }
    let (a, b) = (journal(&path), journal(&clone_path));
    append_all(&a, &numbered("container-a", 0..5));
    // one of the clone's lines is not UTF-8 (grep without -a skipped it: an outside tester)
    append_all(&b, &[numbered("container-b", 0..4), vec![b"container-b-\xff".to_vec()]].concat());
    compactor(&target).drain(std::slice::from_ref(&a)).unwrap();
    // a rotation since: the lines the clone shares are in generation 1 now (the recipe
    // without `tail --all` appended them again: an outside tester)
    append_all(&a, &[b"container-a-late".to_vec()]);
    let mut rotating = CompactorOptions::default();
    rotating.rotate_lines = Some(4);
    Compactor::new(&target, rotating).unwrap().drain(std::slice::from_ref(&a)).unwrap();
    assert!(PathBuf::from(format!("{}.1", target.display())).exists(), "no rotation happened");
    let e = compactor(&target).drain(std::slice::from_ref(&b)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JournalRestored, "{e}");
    assert!(e.to_string().contains("tributary dump"), "the advice does not say how to salvage: {e}");
    // status: the clone's lines wait (8 stored: the image's 3 and its own 5)
    let report = tributary::status(&target, Some(&clone_spool)).unwrap();
    assert!(report.journals[0].refused.is_some());
    assert_eq!(report.journals[0].uncommitted_lines, 8, "status called the refused clone's lines committed");
    drop(b);
    // the salvage, as README "Operations" says
    let salvage = spool.join("vm-salvaged.journal");
    let script = format!(
        "{bin} dump --journal {clone} | LC_ALL=C grep -aFxv -f <({bin} tail --all --target {target}) \
         | {bin} append --journal {new}",
        bin = bin(),
        clone = s(&clone_path),
        target = s(&target),
        new = s(&salvage)
    );
    let out = std::process::Command::new("bash").args(["-o", "pipefail", "-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    compactor(&target).drain(&[journal(&salvage)]).unwrap();
    let mut want = [
        numbered("image", 0..3),
        numbered("container-a", 0..5),
        vec![b"container-a-late".to_vec()],
        numbered("container-b", 0..4),
        vec![b"container-b-\xff".to_vec()],
    ]
    .concat();
    let generations = [fs::read(format!("{}.1", target.display())).unwrap(), fs::read(&target).unwrap()].concat();
    let mut got: Vec<Vec<u8>> = generations.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    got.pop(); // after the last \n
    got.sort();
    want.sort();
    assert_eq!(got, want, "every acknowledged line exactly once");
    // `dump --after` and `--seqs`
    let out = cli(&["dump", "--journal", &s(&clone_path), "--after", "6", "--seqs"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"7\tcontainer-b-000003\n8\tcontainer-b-\xff\n");
}

/// The committed lines overwritten in place by longer, other content (same inode):
/// the drain refuses the tail it sees past the committed length — and its advice, to
/// cut that tail off, would make the overwrite final (an outside tester did, and the
/// next drain exited 0 with the committed lines gone). The message sends the operator
/// to `verify` first, which tells the overwrite.
#[test]
fn an_overwritten_target_s_unexpected_tail_sends_the_operator_to_verify_first() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let j = drained_into(&spool, &target, &numbered("a", 0..5));
    let committed = manifest_of(&target).committed_len;
    // other lines, one of them ending where the committed part ends (the one byte a
    // round checks there is a `\n`), then more
    let mut other = vec![b'x'; usize::try_from(committed).unwrap() - 1];
    other.extend_from_slice(b"\nother content\nand more\n");
    fs::write(&target, &other).unwrap(); // in place: same inode
    let e = compactor(&target).drain(std::slice::from_ref(&j)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnexpectedTail, "{e}");
    assert!(e.to_string().contains("First check the committed part: `tributary verify"), "{e}");
    assert!(e.to_string().contains("restore it from a copy, do not cut it"), "{e}");
    let v = verify(&target).unwrap();
    assert!(v.problems.iter().any(|p| p.contains("committed bytes were changed")), "verify: {:?}", v.problems);
}

/// `init` named at a journal by mistake (or at any file whose last line is partial)
/// refuses, says what the file is, and makes nothing: the sidecar folder a refused
/// `init` left beside a journal made every later append and drain refuse that journal
/// as "a tributary target" (an outside tester: 50 of 50 appends refused, its 100
/// acknowledged lines held back until someone deleted the folder by hand).
#[test]
fn a_refused_init_makes_nothing_beside_the_file() {
    let dir = tmp();
    let (spool, target) = paths(dir.path());
    init(&target);
    let path = spool.join("w.journal");
    let lines = numbered("w", 0..100);
    append_all(&journal(&path), &lines);

    for (what, err) in [
        ("library", compactor(&path).init().unwrap_err().to_string()),
        ("CLI", {
            let out = cli(&["init", "--target", &s(&path)]);
            assert_eq!(out.status.code(), Some(1), "init of a journal must fail");
            String::from_utf8_lossy(&out.stderr).into_owned()
        }),
    ] {
        assert!(err.contains("invalid_argument") || err.contains("invalid argument"), "{what}: {err}");
        assert!(err.contains("is an SQLite database (a journal?)"), "{what}: not named a journal: {err}");
        let sidecar = Sidecar::for_target(&path).dir;
        assert!(!sidecar.exists(), "{what}: a refused init left {}", sidecar.display());
    }
    // the journal goes on as before: appends and drains take it
    let more = numbered("w", 100..110);
    append_all(&journal(&path), &more);
    compactor(&target).drain(&[journal(&path)]).unwrap();
    assert_exactly(&target, &[lines, more].concat());

    // a plain file with a partial last line: refused, nothing made; once the line is
    // finished, init adopts it
    let plain = dir.path().join("shared").join("plain.txt");
    fs::write(&plain, b"one\ntwo").unwrap();
    assert_eq!(compactor(&plain).init().unwrap_err().kind(), ErrorKind::TornTarget);
    assert!(!Sidecar::for_target(&plain).dir.exists(), "a refused init left a sidecar");
    fs::OpenOptions::new().append(true).open(&plain).unwrap().write_all(b"\n").unwrap();
    assert_eq!(compactor(&plain).init().unwrap().adopted_lines, 2);

    // a FIFO named as the target is refused, not opened (that open blocks for ever
    // with no writer: the first version of this check did so — an outside reviewer)
    let fifo = dir.path().join("shared").join("fifo.log");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let e = compactor(&fifo).init().unwrap_err();
    assert!(!Sidecar::for_target(&fifo).dir.exists(), "a refused init left a sidecar: {e}");
}
