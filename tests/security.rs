//! Security basics: what tributary creates is not readable or writable by others where
//! it must not be, and a symlink planted where tributary creates or opens a file is
//! never followed (the classic /tmp attack: make a privileged compactor write through a
//! link into a file of the attacker's choosing).
//!
//! The umask is process-global, so tests that set it hold `UMASK`.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use tributary::{verify, Compactor, CompactorOptions, ErrorKind, Journal, JournalOptions, Reader, Sidecar};

static UMASK: Mutex<()> = Mutex::new(());

/// Every test holds this: files created while another test has the umask at 0 would
/// otherwise get surprising modes.
fn guard() -> std::sync::MutexGuard<'static, ()> {
    UMASK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `f` with the process umask set to `mask`, restoring it afterwards.
fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    let _g = guard();
    // SAFETY: umask has no preconditions; the lock keeps other tests of this binary out.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    let r = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    r
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

fn journal_with_a_line(dir: &Path) -> Journal {
    let j = Journal::open(dir.join("app.journal"), JournalOptions::default()).unwrap();
    j.append(b"secret payload").unwrap();
    j
}

fn drain(target: &Path, journals: &[Journal]) -> tributary::Result<tributary::DrainReport> {
    Compactor::new(target, CompactorOptions::default()).unwrap().drain(journals)
}

/// `init`: since drains never create a target, the step that creates the sidecar, the
/// lock file and the manifest stub.
fn init(target: &Path) -> tributary::Result<tributary::InitReport> {
    Compactor::new(target, CompactorOptions::default()).unwrap().init()
}

/// A file an attacker wants tributary to overwrite, and its original state.
struct Victim {
    path: PathBuf,
    content: Vec<u8>,
    mode: u32,
}

impl Victim {
    fn new(dir: &Path) -> Victim {
        let path = dir.join("victim");
        fs::write(&path, b"precious content, not tributary's\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        Victim { content: fs::read(&path).unwrap(), mode: mode(&path), path }
    }

    fn assert_untouched(&self, ctx: &str) {
        let md = fs::symlink_metadata(&self.path).unwrap();
        assert!(md.is_file(), "{ctx}: the victim is no longer a regular file");
        assert_eq!(fs::read(&self.path).unwrap(), self.content, "{ctx}: the victim's content changed");
        assert_eq!(mode(&self.path), self.mode, "{ctx}: the victim's mode changed");
    }
}

#[test]
fn journals_and_their_wal_and_shm_files_are_created_0600_whatever_the_umask() {
    for mask in [0o000, 0o022, 0o002] {
        with_umask(mask, || {
            let d = tempfile::tempdir().unwrap();
            let j = journal_with_a_line(d.path());
            // a second handle (another process would do the same) keeps -wal/-shm around
            let _j2 = Journal::open(j.path(), JournalOptions::default()).unwrap();
            for suffix in ["", "-wal", "-shm"] {
                let p = PathBuf::from(format!("{}{suffix}", j.path().display()));
                assert!(p.exists(), "umask {mask:03o}: {} was not created", p.display());
                assert_eq!(mode(&p) & 0o777, 0o600, "umask {mask:03o}: {} has mode {:o}", p.display(), mode(&p));
            }
        });
    }
}

#[test]
fn the_sidecar_lock_and_manifest_are_never_world_writable() {
    with_umask(0o000, || {
        let d = tempfile::tempdir().unwrap();
        let j = journal_with_a_line(d.path());
        let target = d.path().join("out.log");
        init(&target).unwrap();
        drain(&target, &[j]).unwrap();
        let sc = Sidecar::for_target(&target);
        assert_eq!(mode(&sc.dir) & 0o002, 0, "sidecar folder is world-writable: {:o}", mode(&sc.dir));
        assert_eq!(mode(&sc.dir) & 0o777, 0o755, "sidecar folder mode {:o}", mode(&sc.dir));
        assert_eq!(mode(&sc.lock) & 0o777, 0o600, "lock file mode {:o}", mode(&sc.lock));
        assert_eq!(mode(&sc.manifest) & 0o022, 0, "manifest writable by others: {:o}", mode(&sc.manifest));
    });
}

#[test]
fn a_world_writable_sidecar_is_refused_and_nothing_is_written_into_it() {
    let _g = guard();
    for perm in [0o777, 0o1777, 0o757] {
        let d = tempfile::tempdir().unwrap();
        let j = journal_with_a_line(d.path());
        let target = d.path().join("out.log");
        let sc = Sidecar::for_target(&target);
        fs::create_dir(&sc.dir).unwrap();
        fs::set_permissions(&sc.dir, fs::Permissions::from_mode(perm)).unwrap();
        let errs = [
            init(&target).expect_err("init must refuse a world-writable sidecar"),
            drain(&target, &[j]).expect_err("a world-writable sidecar must be refused"),
        ];
        for err in errs {
            assert_eq!(err.kind(), ErrorKind::UnsafeFilesystem, "mode {perm:o}: {err}");
            assert!(err.to_string().contains("world-writable"), "the message must say why: {err}");
        }
        assert_eq!(fs::read_dir(&sc.dir).unwrap().count(), 0, "mode {perm:o}: files were created in it");
        assert!(!target.exists() || fs::metadata(&target).unwrap().len() == 0, "the target was written");
    }
}

#[test]
fn a_symlink_planted_at_the_lock_path_is_not_followed() {
    let _g = guard();
    for dangling in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let j = journal_with_a_line(d.path());
        let target = d.path().join("out.log");
        let sc = Sidecar::for_target(&target);
        fs::create_dir(&sc.dir).unwrap();
        fs::set_permissions(&sc.dir, fs::Permissions::from_mode(0o755)).unwrap();
        let victim = Victim::new(d.path());
        let link_to = if dangling { d.path().join("would-be-created") } else { victim.path.clone() };
        symlink(&link_to, &sc.lock).unwrap();
        let errs = [
            init(&target).expect_err("init must not use a symlinked lock file"),
            drain(&target, &[j]).expect_err("a symlinked lock file must not be used"),
        ];
        for err in errs {
            assert!(err.to_string().contains("lock"), "the error should name the lock file: {err}");
        }
        victim.assert_untouched("lock symlink");
        assert!(!d.path().join("would-be-created").exists(), "the dangling lock symlink was followed (O_CREAT)");
        assert!(fs::symlink_metadata(&sc.lock).unwrap().file_type().is_symlink());
        assert!(!sc.manifest.exists(), "a manifest was committed without the real lock");
    }
}

#[test]
fn a_symlink_planted_at_the_manifest_path_is_not_followed() {
    let _g = guard();
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("out.log");
    // a genuine manifest elsewhere, committed by a real drain of another target, in
    // the full text form that `init` would otherwise adopt (as when it upgrades)
    let other = d.path().join("other.log");
    init(&other).unwrap();
    drain(&other, &[journal_with_a_line(d.path())]).unwrap();
    let genuine = tributary::Manifest::load(&Sidecar::for_target(&other)).unwrap().unwrap();
    let real = d.path().join("genuine-manifest");
    fs::write(&real, genuine.encode()).unwrap();
    let j = Journal::open(d.path().join("b.journal"), JournalOptions::default()).unwrap();
    j.append(b"line").unwrap();
    let sc = Sidecar::for_target(&target);
    fs::create_dir(&sc.dir).unwrap();
    fs::set_permissions(&sc.dir, fs::Permissions::from_mode(0o755)).unwrap();
    let before = fs::read(&real).unwrap();
    symlink(&real, &sc.manifest).unwrap();
    assert!(init(&target).is_err(), "init must not read a symlinked manifest, nor replace it");
    assert!(drain(&target, &[j]).is_err(), "a symlinked manifest must not be read or replaced");
    assert!(verify(&target).is_err(), "verify must not read through a symlinked manifest");
    assert!(Reader::open(&target, 0).is_err(), "a reader must not read through a symlinked manifest");
    assert_eq!(fs::read(&real).unwrap(), before, "the link's target changed");
    assert!(fs::symlink_metadata(&sc.manifest).unwrap().file_type().is_symlink());
}

#[test]
fn a_symlink_planted_at_a_manifest_temp_name_is_not_followed() {
    let _g = guard();
    let d = tempfile::tempdir().unwrap();
    let j = journal_with_a_line(d.path());
    let target = d.path().join("out.log");
    let sc = Sidecar::for_target(&target);
    fs::create_dir(&sc.dir).unwrap();
    fs::set_permissions(&sc.dir, fs::Permissions::from_mode(0o755)).unwrap();
    let victim = Victim::new(d.path());
    // names a killed compactor could have used, among them this process's own pid
    let pid = std::process::id();
    for name in [format!("manifest.tmp.{pid}.0000000000000000"), "manifest.tmp.1.ffffffffffffffff".into()] {
        symlink(&victim.path, sc.dir.join(name)).unwrap();
    }
    init(&target).unwrap();
    drain(&target, &[j]).unwrap();
    victim.assert_untouched("manifest temp symlinks");
    let left: Vec<String> = fs::read_dir(&sc.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("manifest.tmp."))
        .collect();
    assert!(left.is_empty(), "planted temp names were not cleaned up: {left:?}");
    assert_eq!(fs::read(&target).unwrap(), b"secret payload\n");
}

#[test]
fn a_symlink_planted_at_the_journal_path_is_not_followed() {
    let _g = guard();
    let d = tempfile::tempdir().unwrap();
    let victim = Victim::new(d.path());
    let path = d.path().join("app.journal");
    symlink(&victim.path, &path).unwrap();
    let err = Journal::open(&path, JournalOptions::default()).expect_err("a symlinked journal must not be opened");
    assert!(err.to_string().contains("app.journal"), "{err}");
    victim.assert_untouched("journal symlink");
}

#[test]
fn a_symlinked_sidecar_folder_is_refused() {
    let _g = guard();
    let d = tempfile::tempdir().unwrap();
    let j = journal_with_a_line(d.path());
    let target = d.path().join("out.log");
    let elsewhere = d.path().join("attacker-dir");
    fs::create_dir(&elsewhere).unwrap();
    symlink(&elsewhere, Sidecar::for_target(&target).dir).unwrap();
    let err = init(&target).expect_err("init must refuse a symlinked sidecar");
    assert_eq!(err.kind(), ErrorKind::UnsafeFilesystem, "{err}");
    let err = drain(&target, &[j]).expect_err("a symlinked sidecar must be refused");
    assert_eq!(err.kind(), ErrorKind::UnsafeFilesystem, "{err}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0, "files were created through the symlink");
}

/// What `open(2)` flags the CLI really passes, seen with strace: manifest temp files
/// (`init` writes the manifest stub through one) are created O_CREAT|O_EXCL|O_NOFOLLOW;
/// the lock (which holds the manifest's slots) and the manifest stub are opened
/// O_NOFOLLOW, by `init` and by drains; the journal is created O_NOFOLLOW.
#[test]
fn open_flags_seen_by_strace() {
    let _g = guard();
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("SKIPPED open_flags_seen_by_strace: strace is not installed (apt-get install strace)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let trib = common::bin();
    let journal = d.path().join("a.journal");
    let target = d.path().join("out.log");
    let trace = d.path().join("trace");
    // The writer's append creates the journal (a drain never does): traced too.
    let append_trace = d.path().join("append-trace");
    let append = |input: &[u8]| -> String {
        use std::io::Write;
        let mut child = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
            .arg(&append_trace)
            .arg(trib)
            .args(["append", "--journal"])
            .arg(&journal)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        assert!(child.wait().unwrap().success());
        fs::read_to_string(&append_trace).unwrap()
    };
    // `init` creates the sidecar, the lock file and the stub; then two drains commit
    // into the lock file's slots
    let mut text = String::new();
    for round in 0..3 {
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"]).arg(&trace).arg(trib);
        if round == 0 {
            cmd.args(["init", "--target"]).arg(&target);
        } else {
            text.push_str(&append(format!("line {round}\n").as_bytes()));
            cmd.args(["drain", "--target"]).arg(&target).arg("--journal").arg(&journal);
        }
        let st = cmd.stdout(std::process::Stdio::null()).status().unwrap();
        assert!(st.success());
        let trace = fs::read_to_string(&trace).unwrap();
        if round > 0 {
            assert!(trace.contains(".tributary/lock\""), "drain {round} did not open the lock file:\n{trace}");
        }
        text.push_str(&trace);
    }
    let opens = |needle: &str| -> Vec<&str> { text.lines().filter(|l| l.contains(needle)).collect() };
    let temps = opens("manifest.tmp.");
    let creates: Vec<&&str> = temps.iter().filter(|l| l.contains("O_CREAT")).collect();
    assert!(!creates.is_empty(), "no manifest temp file creation seen:\n{text}");
    for l in creates {
        assert!(
            l.contains("O_EXCL") && l.contains("O_NOFOLLOW"),
            "manifest temp created without O_EXCL|O_NOFOLLOW: {l}"
        );
    }
    let lock = opens(".tributary/lock\"");
    assert!(!lock.is_empty(), "no lock open seen:\n{text}");
    for l in lock {
        assert!(l.contains("O_NOFOLLOW"), "lock opened without O_NOFOLLOW: {l}");
    }
    let created = opens("a.journal\"");
    let created: Vec<&&str> = created.iter().filter(|l| l.contains("O_CREAT") && l.contains("0600")).collect();
    assert!(!created.is_empty(), "the journal's own 0600 creation was not seen:\n{text}");
    for l in created {
        assert!(l.contains("O_NOFOLLOW"), "journal created without O_NOFOLLOW: {l}");
    }
    let manifest = opens(".tributary/manifest\"");
    assert!(!manifest.is_empty(), "no manifest open seen");
    for l in manifest {
        assert!(l.contains("O_NOFOLLOW"), "manifest opened without O_NOFOLLOW: {l}");
    }
}
