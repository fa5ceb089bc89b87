//! Helpers shared by the integration tests: real files in temp dirs, the real CLI and
//! the torture harness (found at run time, see [`cargo_bin`]).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::SystemTime;

use tributary::{Compactor, CompactorOptions, Journal, JournalOptions, Manifest, Sidecar};

/// The `tributary` CLI (package `tributary-cli`, built from `src/`, `cli/src/` and the
/// harness library `harness/src/` but its `bin/`).
pub fn bin() -> &'static str {
    static EXE: OnceLock<String> = OnceLock::new();
    EXE.get_or_init(|| cargo_bin("tributary", &["src", "cli/src", "harness/src"], &["harness/src/bin"]))
}

/// The `tributary-torture` harness (package `tributary-harness`, built from `src/` and
/// `harness/src/`).
pub fn torture_bin() -> &'static str {
    static EXE: OnceLock<String> = OnceLock::new();
    EXE.get_or_init(|| cargo_bin("tributary-torture", &["src", "harness/src"], &[]))
}

/// The binary `name` that cargo built into the `target/<profile>/` this test runs from
/// (the test itself is `target/<profile>/deps/<test>-<hash>`).
///
/// The binaries belong to other packages of the workspace (`cli/`, `harness/`), so cargo
/// gives these tests no `CARGO_BIN_EXE_*` for them and does not build them for a test
/// of this package alone. `cargo test --workspace` (and `scripts/test.d/10-rust.sh`)
/// builds them before any test runs, because their packages have integration tests of
/// their own. A test run without them, or with one older than a source file it is built
/// from (`sources`, the `.rs` files under these folders of the repository but those
/// under `not_under`: what cargo would rebuild it for), fails here and names the
/// command that builds them, instead of testing an old binary.
pub fn cargo_bin(name: &str, sources: &[&str], not_under: &[&str]) -> String {
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe.parent().expect("the test executable's folder").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let profile = dir.file_name().map(|p| p.to_string_lossy().to_string()).unwrap_or_default();
    let flag = match profile.as_str() {
        "debug" => String::new(),
        "release" => " --release".to_string(),
        other => format!(" --profile {other}"),
    };
    let build =
        format!("cargo build{flag} --workspace --bins` (or `cargo test{flag} --workspace`, which builds them first)");
    let path = dir.join(name);
    let built = match std::fs::metadata(&path) {
        Ok(m) => m.modified().expect("mtime"),
        Err(e) => panic!(
            "{} is missing ({e}): this test runs the `{name}` binary of another package of the workspace, which cargo \
             does not build for one package's tests; build it with `{build}",
            path.display()
        ),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let skip: Vec<PathBuf> = not_under.iter().map(|d| root.join(d)).collect();
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for d in sources {
        newest_rs(&root.join(d), &skip, &mut newest);
    }
    if let Some((_, file)) = newest.filter(|(t, _)| *t > built) {
        panic!(
            "{} is older than {} (changed since the binary was built): rebuild it with `{build}",
            path.display(),
            file.display()
        );
    }
    path.display().to_string()
}

/// The most recently modified `.rs` file under `dir` (recursively), but under `skip`.
fn newest_rs(dir: &Path, skip: &[PathBuf], newest: &mut Option<(SystemTime, PathBuf)>) {
    if skip.iter().any(|s| s == dir) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            newest_rs(&p, skip, newest);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let t = m.modified().expect("mtime");
            if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                *newest = Some((t, p));
            }
        }
    }
}

pub fn cli(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run tributary")
}

pub fn cli_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run tributary")
}

pub fn s(p: &Path) -> String {
    p.display().to_string()
}

pub fn journal(path: &Path) -> Journal {
    Journal::open(path, JournalOptions::default()).expect("open journal")
}

pub fn compactor(target: &Path) -> Compactor {
    Compactor::new(target, CompactorOptions::default()).expect("compactor")
}

/// Create a new target once (`Compactor::init`), as a user does before its first drain:
/// drains never create one.
pub fn init(target: &Path) {
    compactor(target).init().expect("init");
}

/// [`init`] of a target in manifest format 2 (a new one is 3): for tests that read or
/// write its slots as version 2 does ([`slots_of`], [`commit_behind_the_back`]).
pub fn init_format_2(target: &Path) {
    compactor(target).init_in_format(Some(2)).expect("init in format 2");
}

/// `tributary init --target T`: the command line's way of [`init`].
pub fn init_cli(target: &Path) {
    let out = cli(&["init", "--target", &s(target)]);
    assert!(out.status.success(), "tributary init: {}", String::from_utf8_lossy(&out.stderr));
}

/// The target's lines (without `\n`); panics if the file does not end with `\n`.
pub fn lines_of(target: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(target).unwrap_or_default();
    if bytes.is_empty() {
        return Vec::new();
    }
    assert_eq!(bytes.last(), Some(&b'\n'), "target does not end with a newline");
    bytes[..bytes.len() - 1].split(|&b| b == b'\n').map(|l| l.to_vec()).collect()
}

/// How often each line occurs.
pub fn counts(lines: &[Vec<u8>]) -> HashMap<Vec<u8>, usize> {
    let mut m = HashMap::new();
    for l in lines {
        *m.entry(l.clone()).or_insert(0) += 1;
    }
    m
}

/// Assert each of `expected` occurs exactly once and nothing else is in the target.
pub fn assert_exactly(target: &Path, expected: &[Vec<u8>]) {
    let got = lines_of(target);
    let c = counts(&got);
    for e in expected {
        assert_eq!(c.get(e).copied().unwrap_or(0), 1, "line {:?} not exactly once", String::from_utf8_lossy(e));
    }
    assert_eq!(got.len(), expected.len(), "target has extra lines");
    let v = tributary::verify(target).expect("verify runs");
    assert!(v.is_consistent(), "verify: {:?}", v.problems);
}

pub fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range.map(|i| format!("{prefix}-{i:06}").into_bytes()).collect()
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::create_dir_all(dir.join("shared")).unwrap();
    (spool, dir.join("shared").join("out.log"))
}

/// The committed manifest of `target` (from its lock file's slots); panics if none.
pub fn manifest_of(target: &Path) -> Manifest {
    Manifest::load(&Sidecar::for_target(target)).expect("load manifest").expect("a manifest")
}

/// Bytes of one manifest slot in the lock file (docs/design.md "The manifest, format
/// version 2": slot A at 0, slot B at 2 MiB).
pub const SLOT_BYTES: u64 = 2 << 20;

/// The valid manifest in each slot (A, B) of a format-2 `target`'s lock file
/// ([`init_format_2`]), read the way the design lays them out: `TRIBSLOT`, payload length (u32 LE), CRC32 (u32 LE), payload.
pub fn slots_of(target: &Path) -> [Option<Manifest>; 2] {
    use std::os::unix::fs::FileExt;
    let lock = std::fs::File::open(Sidecar::for_target(target).lock).expect("open lock file");
    let read = |index: u64| {
        let mut head = [0u8; 16];
        lock.read_exact_at(&mut head, index * SLOT_BYTES).ok()?;
        if &head[..8] != b"TRIBSLOT" {
            return None;
        }
        let len = u32::from_le_bytes(head[8..12].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(head[12..16].try_into().unwrap());
        let mut payload = vec![0u8; len];
        lock.read_exact_at(&mut payload, index * SLOT_BYTES + 16).ok()?;
        assert!(
            !payload.starts_with(b"tributary-manifest 3"),
            "slots_of reads version-2 slots; this target is format 3: make it with init_format_2"
        );
        (crc32fast::hash(&payload) == crc).then(|| Manifest::decode(&payload, Path::new("slot")).ok()).flatten()
    };
    [read(0), read(1)]
}

/// Commit `m` into `target`'s lock file the way another holder would: into the slot
/// that does not hold the current manifest (the lock is not taken: this is what a
/// holder that kept or regained it does behind a frozen one's back).
pub fn commit_behind_the_back(target: &Path, m: &Manifest) {
    use std::os::unix::fs::FileExt;
    let [a, b] = slots_of(target);
    let current = match (a, b) {
        (Some(a), Some(b)) => usize::from(b.epoch > a.epoch),
        (None, Some(_)) => 1,
        _ => 0,
    };
    let payload = m.encode();
    let mut bytes = b"TRIBSLOT".to_vec();
    bytes.extend((payload.len() as u32).to_le_bytes());
    bytes.extend(crc32fast::hash(&payload).to_le_bytes());
    bytes.extend(&payload);
    let lock = std::fs::OpenOptions::new().write(true).open(Sidecar::for_target(target).lock).expect("open lock");
    lock.write_all_at(&bytes, (1 - current) as u64 * SLOT_BYTES).expect("write slot");
    lock.sync_all().expect("fsync lock file");
}

/// A size-limited tmpfs mounted on a temp folder (root only), unmounted on drop: real
/// ENOSPC for the full-disk tests.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    /// ramfs instead: no size limit and no block accounting (`statfs` counts 0 blocks).
    #[allow(dead_code)]
    pub fn mount_ramfs() -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok =
            Command::new("mount").args(["-t", "ramfs", "ramfs"]).arg(dir.path()).status().is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn resize(&self, size: &str) {
        let st = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(self.path()).status().unwrap();
        assert!(st.success(), "remount with size={size} failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A bindfs view of `real` (a FUSE filesystem that leaves record locks to the kernel,
/// which keeps them per mount: like sshfs, rclone and most FUSE filesystems), mounted
/// on a temp folder (root only: `None` otherwise), unmounted on drop.
#[allow(dead_code)]
pub struct Bindfs {
    pub dir: tempfile::TempDir,
}

#[allow(dead_code)]
impl Bindfs {
    pub fn mount(real: &Path) -> Option<Bindfs> {
        if !is_root() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("bindfs").arg(real).arg(dir.path()).status();
        assert!(
            st.as_ref().is_ok_and(|s| s.success()),
            "bindfs {} failed ({st:?}): install it (Debian package bindfs; scripts/test.d/10-rust.sh does)",
            real.display()
        );
        Some(Bindfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Bindfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A small ext4 filesystem with 1 KiB blocks (what `mkfs.ext4` makes below 512 MiB) —
/// or another filesystem (`mount_xfs_largeio`) — in an image on a loop device,
/// mounted on a temp folder (root only), unmounted on drop.
pub struct Ext4Image {
    pub dir: tempfile::TempDir,
    _image: tempfile::NamedTempFile,
}

impl Ext4Image {
    pub fn mount(mib: u64) -> Option<Ext4Image> {
        // -m 0: no blocks reserved for root, so the free space an append's check sees
        // (`f_bavail`) is all the test, as root, can write (an outside reviewer: with
        // the default 5 %, a test could pass on broken code)
        Self::mount_made_by("mkfs.ext4", &["-q", "-F", "-b", "1024", "-m", "0"], "loop", mib)
    }

    /// XFS with a stripe (64 KiB × 2) mounted `largeio`: files report an `st_blksize`
    /// of 128 KiB (from 320 MiB: XFS's smallest, with two allocation groups and a
    /// 64 MiB log, which a stripe needs).
    pub fn mount_xfs_largeio(mib: u64) -> Option<Ext4Image> {
        let args = ["-q", "-f", "-d", "agcount=2,su=64k,sw=2", "-l", "size=64m"];
        Self::mount_made_by("mkfs.xfs", &args, "loop,largeio", mib)
    }

    /// ext4 with only `inodes` inodes (files run out while blocks are free).
    #[allow(dead_code)]
    pub fn mount_with_inodes(mib: u64, inodes: u32) -> Option<Ext4Image> {
        let n = inodes.to_string();
        Self::mount_made_by("mkfs.ext4", &["-q", "-F", "-b", "1024", "-m", "0", "-N", &n], "loop", mib)
    }

    /// ext4 that the kernel makes read-only at its first error (`errors=remount-ro`):
    /// [`Ext4Image::fail`] makes one.
    #[allow(dead_code)]
    pub fn mount_read_only_on_error(mib: u64) -> Option<Ext4Image> {
        Self::mount_made_by("mkfs.ext4", &["-q", "-F", "-b", "1024", "-m", "0"], "loop,errors=remount-ro", mib)
    }

    /// An error in this ext4, as ext4 reports one it finds on disk (its sysfs
    /// `trigger_fs_error`): mounted `errors=remount-ro`, it then refuses every write
    /// ("emergency_ro") while `access(2)` and `statvfs` still say it is writable.
    #[allow(dead_code)]
    pub fn fail(&self) {
        let out = Command::new("findmnt").args(["-n", "-o", "SOURCE"]).arg(self.dir.path()).output().unwrap();
        let source = String::from_utf8(out.stdout).unwrap();
        let device = Path::new(source.trim()).file_name().expect("a loop device").to_owned();
        let trigger = Path::new("/sys/fs/ext4").join(device).join("trigger_fs_error");
        std::fs::write(&trigger, "test error\n").unwrap_or_else(|e| panic!("{}: {e}", trigger.display()));
    }

    /// btrfs (copy-on-write), data and metadata mixed (what small filesystems use).
    pub fn mount_btrfs(mib: u64) -> Option<Ext4Image> {
        Self::mount_made_by("mkfs.btrfs", &["-q", "-f", "--mixed"], "loop", mib)
    }

    fn mount_made_by(mkfs: &str, args: &[&str], options: &str, mib: u64) -> Option<Ext4Image> {
        let image = tempfile::NamedTempFile::new().unwrap();
        image.as_file().set_len(mib << 20).unwrap();
        let made = Command::new(mkfs)
            .args(args)
            .arg(image.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let dir = tempfile::tempdir().unwrap();
        let mounted = made
            && Command::new("mount")
                .args(["-o", options])
                .arg(image.path())
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
        mounted.then_some(Ext4Image { dir, _image: image })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Ext4Image {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Whether someone holds the `flock` of folder `dir` (a try that would block).
#[allow(dead_code)]
pub fn folder_locked(dir: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir).expect("open the folder");
    // SAFETY: flock only reads the descriptor number, valid while `f` lives; a lock
    // taken here is released when `f` closes at the end of this function.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
}

/// `tributary <args>` with failpoints `spec` (`<point>=hold`, ...) announcing in `fp`;
/// stdin, stdout and stderr piped.
#[allow(dead_code)]
pub fn spawn_with_failpoint(args: &[&str], spec: &str, fp: &Path) -> std::process::Child {
    Command::new(bin())
        .args(args)
        .env("TRIBUTARY_FAILPOINTS", spec)
        .env(tributary::testing::failpoint::DIR_VAR, fp)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tributary")
}

/// Wait until a process run with `TRIBUTARY_FAILPOINTS=<point>=hold` (and the
/// failpoint folder `fp`) holds at `point`; returns the `.reached` file, whose removal
/// lets it go on.
#[allow(dead_code)]
pub fn wait_reached(fp: &Path, point: &str) -> PathBuf {
    let reached = fp.join(format!("{point}.reached"));
    while !reached.exists() {
        std::thread::yield_now();
    }
    reached
}

/// Write `input` to a child's stdin and close it. A child that refuses (and exits)
/// before reading all of it closes the pipe: that `BrokenPipe` is the child's answer,
/// which its exit status and output report, not the test's error.
#[allow(dead_code)]
pub fn feed(child: &mut std::process::Child, input: &[u8]) {
    use std::io::Write;
    let mut stdin = child.stdin.take().expect("the child's stdin is piped");
    if let Err(e) = stdin.write_all(input) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "writing to the child's stdin: {e}");
    }
}

/// Whether this test runs as root (CI does).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Wait until `/proc/locks` lists a request blocked on the file at `path` (a
/// condition; the deadline only turns a hang into a failure).
pub fn wait_for_blocked_lock_request(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let suffix = format!(":{} ", std::fs::metadata(path).unwrap().ino());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !std::fs::read_to_string("/proc/locks").unwrap().lines().any(|l| l.contains("->") && l.contains(&suffix)) {
        assert!(std::time::Instant::now() < deadline, "no request ever blocked on {}", path.display());
        std::thread::yield_now();
    }
}
