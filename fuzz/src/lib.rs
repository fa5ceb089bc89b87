//! The logic of tributary's fuzz targets, shared by the cargo-fuzz targets
//! (`fuzz_targets/*.rs`), the regression tests that replay committed reproducers and
//! seeds (`tests/regressions.rs`), and the fallback random driver for machines where
//! cargo-fuzz cannot run (`tests/random_inputs.rs`).
//!
//! One file (~1,200 lines) on purpose: `tests/torture_fuzz.rs` includes it by path
//! (`#[path]`), which a module tree would not survive; each target is one section.
//!
//! * [`manifest_decode`]: any bytes into `Manifest::decode`. Never a panic; an error is
//!   always `CorruptManifest`; an accepted manifest satisfies its invariants and
//!   re-encodes canonically. A first byte of `0xA5` means "the rest is a manifest body":
//!   its correct CRC line is appended, so the fuzzer gets past the checksum and
//!   explores the parser itself.
//! * [`api_ops`]: the bytes are a program of API operations (open journals at good and
//!   bad paths, append / batch / keyed with garbage lines and keys, drain with odd
//!   bounds, readers at odd offsets, verify, status, foreign bytes appended to the
//!   target, a corrupted manifest) run against a model. Every operation must either do what the model says
//!   or fail with the documented error kind; after every successful drain the target
//!   holds every appended line of the drained journals exactly once, in order.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use tributary::{
    status, verify, Compactor, CompactorOptions, Durability, ErrorKind, Journal, JournalOptions, Manifest, Reader,
    Sidecar,
};

/// First byte that marks "manifest body, append the right CRC".
pub const WITH_CRC: u8 = 0xA5;

pub fn manifest_decode(data: &[u8]) {
    let bytes: Vec<u8> = match data.split_first() {
        Some((&WITH_CRC, body)) => {
            let mut v = body.to_vec();
            v.extend_from_slice(format!("crc {:08x}\n", crc32fast::hash(body)).as_bytes());
            v
        }
        _ => data.to_vec(),
    };
    let path = Path::new("fuzz/out.log.tributary/manifest");
    match Manifest::decode(&bytes, path) {
        Ok(m) => {
            assert!(m.committed_lines <= m.committed_len, "accepted more lines than bytes: {m:?}");
            assert_eq!(m.target_id.len(), 32, "accepted a bad target_id: {m:?}");
            for (id, w) in &m.watermarks {
                assert_eq!(*id, w.journal_id, "watermark filed under another id: {m:?}");
            }
            let enc = m.encode();
            let again = Manifest::decode(&enc, path).unwrap_or_else(|e| panic!("re-encoded manifest refused: {e}"));
            assert_eq!(again, m, "round trip changed the manifest");
            assert_eq!(again.encode(), enc, "encoding is not canonical");
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::CorruptManifest, "wrong error kind: {e}");
            let msg = e.to_string();
            assert!(msg.contains("manifest"), "message does not say what is corrupt: {msg}");
        }
    }
}

/// Reads the fuzz input as a stream of small integers and byte strings; zeros once
/// exhausted.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0u64, |acc, _| (acc << 8) | u64::from(self.u8()))
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.u8() as usize) % (max + 1);
        let end = (self.pos + n).min(self.data.len());
        let v = self.data.get(self.pos..end).unwrap_or(&[]).to_vec();
        self.pos += n;
        v
    }
}

/// What the model knows about one journal file.
#[derive(Default, Clone)]
struct JournalModel {
    /// Every line stored, in seq order: (seq, bytes).
    lines: Vec<(u64, Vec<u8>)>,
    /// How many of them are committed in the target (a prefix).
    committed: usize,
    keys: HashMap<Vec<u8>, u64>,
    last_seq: u64,
}

struct Slot {
    journal: Journal,
    path_index: usize,
    max_line: usize,
}

const JOURNAL_PATHS: usize = 3;
const SLOTS: usize = 4;

struct World {
    dir: tempfile::TempDir,
    target: PathBuf,
    slots: Vec<Option<Slot>>,
    models: Vec<JournalModel>,
    /// Bytes appended behind tributary's back (foreign bytes: no round announced
    /// them, so every drain must refuse them until they are cut off).
    tail: u64,
    /// The manifest was corrupted: every later drain/verify/read must refuse.
    poisoned: bool,
    /// A file named *.journal that is not a journal sits in the spool.
    junk_in_spool: bool,
    stats: Stats,
}

/// What one `api_ops` program did (lets tests check that seeds reach deep).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub ops: u32,
    pub drains_ok: u32,
    pub drains_refused: u32,
    pub lines_committed: u64,
    pub poisoned: bool,
}

fn scratch_dir() -> tempfile::TempDir {
    // tmpfs when there is one: fsync is then nearly free and the fuzzer runs fast
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("trib-fuzz-").tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("temp dir")
}

impl World {
    fn new() -> World {
        let dir = scratch_dir();
        let target = dir.path().join("shared").join("out.log");
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        World {
            dir,
            target,
            slots: (0..SLOTS).map(|_| None).collect(),
            models: vec![JournalModel::default(); JOURNAL_PATHS],
            tail: 0,
            poisoned: false,
            junk_in_spool: false,
            stats: Stats::default(),
        }
    }

    fn journal_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("j{i}.journal"))
    }

    /// Prefix making every line attributable to its journal: `<path index>:`.
    fn line(path_index: usize, payload: &[u8]) -> Vec<u8> {
        let mut l = format!("{path_index}:").into_bytes();
        l.extend_from_slice(payload);
        l
    }

    fn open(&mut self, inp: &mut Input) {
        let slot = inp.u8() as usize % SLOTS;
        let sel = inp.u8() % 10;
        let max_line = match inp.u8() % 4 {
            0 => 0,
            1 => 4 + inp.u8() as usize % 60,
            _ => tributary::DEFAULT_MAX_LINE_BYTES,
        };
        let durability = if inp.u8().is_multiple_of(8) { Durability::Full } else { Durability::Normal };
        let opts = JournalOptions::default().durability(durability).max_line_bytes(max_line);
        let (path, path_index) = match sel {
            0..=5 => (self.journal_path(sel as usize % JOURNAL_PATHS), Some(sel as usize % JOURNAL_PATHS)),
            6 => (self.dir.path().to_path_buf(), None), // a folder
            7 => {
                let p = self.dir.path().join("junk.journal"); // not a database
                fs::write(&p, b"this is not an SQLite database, just text\n").unwrap();
                self.junk_in_spool = true;
                (p, None)
            }
            8 => (self.dir.path().join("no-such-folder").join("x.journal"), None),
            _ => (self.dir.path().join("bad\0name.journal"), None),
        };
        let r = Journal::open(&path, opts);
        match (path_index, max_line, r) {
            (_, 0, Err(e)) => assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}"),
            (_, 0, Ok(_)) => panic!("max_line_bytes 0 accepted"),
            (Some(i), _, Ok(j)) => self.slots[slot] = Some(Slot { journal: j, path_index: i, max_line }),
            (Some(i), _, Err(e)) => panic!("opening journal {i} failed: {e}"),
            (None, _, Ok(_)) => panic!("opened a journal at a bad path {}", path.display()),
            (None, _, Err(e)) => {
                let k = e.kind();
                assert!(
                    matches!(
                        k,
                        ErrorKind::Io | ErrorKind::NotAJournal | ErrorKind::Sqlite | ErrorKind::InvalidArgument
                    ),
                    "bad path {} gave {k:?}: {e}",
                    path.display()
                );
            }
        }
    }

    fn valid(line: &[u8], max: usize) -> bool {
        line.len() <= max && !line.contains(&b'\n')
    }

    fn append(&mut self, inp: &mut Input) {
        let Some(s) = self.slots[inp.u8() as usize % SLOTS].as_ref() else { return };
        let line = Self::line(s.path_index, &inp.bytes(72));
        let m = &mut self.models[s.path_index];
        match s.journal.append(&line) {
            Ok(seq) => {
                assert!(Self::valid(&line, s.max_line), "invalid line accepted: {line:?}");
                assert_eq!(seq, m.last_seq + 1, "seq not the next one");
                m.last_seq = seq;
                m.lines.push((seq, line));
            }
            Err(e) => {
                assert!(!Self::valid(&line, s.max_line), "valid line refused: {e}");
                assert_eq!(e.kind(), ErrorKind::InvalidLine, "{e}");
            }
        }
    }

    fn batch(&mut self, inp: &mut Input) {
        let Some(s) = self.slots[inp.u8() as usize % SLOTS].as_ref() else { return };
        let n = inp.u8() as usize % 6;
        let lines: Vec<Vec<u8>> = (0..n).map(|_| Self::line(s.path_index, &inp.bytes(40))).collect();
        let m = &mut self.models[s.path_index];
        let first_bad = lines.iter().position(|l| !Self::valid(l, s.max_line));
        match s.journal.append_batch(&lines) {
            Ok(_) if lines.is_empty() => panic!("an empty batch was accepted (it has no first seq)"),
            Err(e) if lines.is_empty() => assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}"),
            Ok(first) => {
                assert!(first_bad.is_none(), "a batch with an invalid line was accepted");
                assert_eq!(first, m.last_seq + 1);
                for (k, l) in lines.into_iter().enumerate() {
                    m.lines.push((first + k as u64, l));
                }
                m.last_seq = first + n as u64 - 1;
            }
            Err(e) => match e {
                tributary::Error::InvalidLine { index, .. } => {
                    assert_eq!(Some(index), first_bad, "wrong index in {e}")
                }
                other => panic!("batch failed: {other}"),
            },
        }
    }

    fn keyed(&mut self, inp: &mut Input) {
        let Some(s) = self.slots[inp.u8() as usize % SLOTS].as_ref() else { return };
        let key = inp.bytes(3);
        let line = Self::line(s.path_index, &inp.bytes(30));
        let m = &mut self.models[s.path_index];
        match s.journal.append_keyed(&key, &line) {
            Ok(seq) => {
                assert!(!key.is_empty() && Self::valid(&line, s.max_line));
                match m.keys.get(&key) {
                    Some(&first) => assert_eq!(seq, first, "a repeated key stored again"),
                    None => {
                        assert_eq!(seq, m.last_seq + 1);
                        m.last_seq = seq;
                        m.lines.push((seq, line));
                        m.keys.insert(key, seq);
                    }
                }
            }
            Err(e) if key.is_empty() => assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}"),
            Err(e) => {
                assert!(!Self::valid(&line, s.max_line), "valid keyed line refused: {e}");
                assert_eq!(e.kind(), ErrorKind::InvalidLine, "{e}");
            }
        }
    }

    fn drain(&mut self, inp: &mut Input) {
        let mask = inp.u8();
        let max_round_bytes = match inp.u8() % 4 {
            0 => 0,
            1 => 1 + inp.u8() as u64,
            2 => 1 + u64::from(inp.u8()) * 16,
            _ => 64 << 20,
        };
        let opts = CompactorOptions::default().max_round_bytes(max_round_bytes).create(true);
        let compactor = match Compactor::new(&self.target, opts) {
            Ok(c) => c,
            Err(e) => {
                assert_eq!(max_round_bytes, 0, "{e}");
                assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
                return;
            }
        };
        assert_ne!(max_round_bytes, 0, "max_round_bytes 0 accepted");
        let chosen: Vec<usize> = (0..SLOTS).filter(|i| mask & (1 << i) != 0 && self.slots[*i].is_some()).collect();
        let journals: Vec<Journal> = chosen
            .iter()
            .map(|&i| {
                let s = self.slots[i].as_ref().unwrap();
                Journal::open(s.journal.path(), JournalOptions::default()).unwrap()
            })
            .collect();
        let indexes: Vec<usize> = chosen.iter().map(|&i| self.slots[i].as_ref().unwrap().path_index).collect();
        let mut dedup = indexes.clone();
        dedup.sort_unstable();
        dedup.dedup();
        let twice = dedup.len() != indexes.len();
        match compactor.drain(&journals) {
            Ok(rep) => {
                assert!(!self.poisoned, "drained on a corrupted manifest");
                assert!(!twice, "one journal given twice was drained");
                assert_eq!(self.tail, 0, "drained over {} foreign bytes", self.tail);
                assert_eq!(rep.repaired_tail_bytes, 0, "cut bytes no round announced");
                for &i in &dedup {
                    self.models[i].committed = self.models[i].lines.len();
                }
                self.stats.drains_ok += 1;
                self.stats.lines_committed = self.models.iter().map(|m| m.committed as u64).sum();
                self.check_target();
                for j in &journals {
                    assert_eq!(j.backlog().unwrap().lines, 0, "drained journal still has lines");
                }
            }
            Err(e) if twice => {
                // the same journal file given twice (a copy would be journal_restored)
                assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
                self.stats.drains_refused += 1;
            }
            Err(e) if self.poisoned => {
                assert_eq!(e.kind(), ErrorKind::CorruptManifest, "{e}");
                self.stats.drains_refused += 1;
            }
            Err(e) if self.tail > 0 => {
                // Foreign bytes: refused, touching nothing; the operator cuts them off.
                assert_eq!(e.kind(), ErrorKind::UnexpectedTail, "{e}");
                let len = fs::metadata(&self.target).unwrap().len();
                let f = fs::OpenOptions::new().write(true).open(&self.target).unwrap();
                f.set_len(len - self.tail).unwrap();
                self.tail = 0;
                self.stats.drains_refused += 1;
            }
            Err(e) => panic!("drain failed: {e}"),
        }
    }

    /// The committed lines, grouped by journal, are exactly each model's committed
    /// prefix, in order; `verify` is clean.
    fn check_target(&self) {
        let mut reader = Reader::open(&self.target, 0).expect("reader at 0");
        let mut by_journal: Vec<Vec<Vec<u8>>> = vec![Vec::new(); JOURNAL_PATHS];
        while let Some(l) = reader.next_line().expect("reading committed lines") {
            let i = (l.first().copied().unwrap_or(b'?').wrapping_sub(b'0')) as usize;
            assert!(i < JOURNAL_PATHS && l.get(1) == Some(&b':'), "foreign line in the target: {l:?}");
            by_journal[i].push(l);
        }
        for (i, m) in self.models.iter().enumerate() {
            let want: Vec<&Vec<u8>> = m.lines[..m.committed].iter().map(|(_, l)| l).collect();
            let got: Vec<&Vec<u8>> = by_journal[i].iter().collect();
            assert_eq!(got, want, "journal {i}: target lines differ from what was appended (lost/duplicated)");
        }
        let v = verify(&self.target).expect("verify");
        assert!(v.is_consistent(), "verify: {:?}", v.problems);
    }

    fn committed_lines(&self) -> Vec<Vec<u8>> {
        Reader::open(&self.target, 0).map(|r| r.map(|l| l.unwrap()).collect()).unwrap_or_default()
    }

    fn read(&mut self, inp: &mut Input) {
        let m = Manifest::load(&Sidecar::for_target(&self.target));
        let committed_len = m.as_ref().ok().and_then(|m| m.as_ref()).map_or(0, |m| m.committed_len);
        let offset = match inp.u8() % 4 {
            0 => 0,
            1 => committed_len,
            2 => inp.u64(),
            _ => u64::from(inp.u8()) % (committed_len + 1),
        };
        let all = if self.poisoned { Vec::new() } else { self.committed_lines() };
        match Reader::open(&self.target, offset) {
            Ok(mut r) => {
                assert!(!self.poisoned, "a reader opened on a corrupted manifest");
                assert!(offset <= committed_len, "reader opened beyond the committed length");
                let skip = line_index_at(&all, offset).expect("reader accepted an offset inside a line");
                let n = inp.u8() as usize % 8;
                for k in 0..n {
                    match r.next_line().expect("next_line") {
                        Some(l) => assert_eq!(Some(&l), all.get(skip + k), "reader returned the wrong line"),
                        None => {
                            assert_eq!(skip + k, all.len(), "reader stopped early");
                            break;
                        }
                    }
                }
            }
            Err(e) if self.poisoned => assert_eq!(e.kind(), ErrorKind::CorruptManifest, "{e}"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
                assert!(offset > committed_len || line_index_at(&all, offset).is_none(), "good offset refused: {e}");
            }
        }
    }

    fn verify(&self) {
        let has_manifest = Sidecar::for_target(&self.target).manifest.exists();
        match verify(&self.target) {
            Ok(v) => {
                assert!(has_manifest && !self.poisoned);
                assert_eq!(v.is_consistent(), self.tail == 0, "{:?}", v.problems);
                assert_eq!(v.uncommitted_tail_bytes, self.tail);
            }
            Err(e) if self.poisoned => assert_eq!(e.kind(), ErrorKind::CorruptManifest, "{e}"),
            Err(e) => {
                assert!(!has_manifest, "verify failed: {e}");
                assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
            }
        }
    }

    fn status(&self) {
        match status(&self.target, Some(self.dir.path())) {
            Ok(s) => {
                assert!(!self.junk_in_spool && !self.poisoned, "status read a junk journal or corrupt manifest");
                for j in &s.journals {
                    let name = j.path.file_name().unwrap().to_string_lossy().into_owned();
                    let i: usize = name[1..name.len() - ".journal".len()].parse().unwrap();
                    let m = &self.models[i];
                    let undrained = m.lines.len() - m.committed;
                    assert_eq!(j.backlog.lines, undrained as u64, "backlog of {name}");
                    assert_eq!(j.backlog.last_seq, m.last_seq);
                }
            }
            Err(e) => {
                let k = e.kind();
                assert!(
                    (self.junk_in_spool && matches!(k, ErrorKind::NotAJournal | ErrorKind::Sqlite))
                        || (self.poisoned && k == ErrorKind::CorruptManifest),
                    "status failed: {e}"
                );
            }
        }
    }

    /// Foreign bytes beyond the committed length (`echo >> target`).
    fn tail(&mut self, inp: &mut Input) {
        if self.poisoned || !Sidecar::for_target(&self.target).manifest.exists() {
            return;
        }
        let junk = inp.bytes(64);
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(&self.target).unwrap();
        f.write_all(&junk).unwrap();
        self.tail += junk.len() as u64;
    }

    /// Damage both manifest slots in the lock file (one damaged slot is a torn write:
    /// the other is used, by design).
    fn corrupt_manifest(&mut self, inp: &mut Input) {
        let p = Sidecar::for_target(&self.target).lock;
        if self.poisoned {
            return; // a second flip could undo the first
        }
        let Ok(mut b) = fs::read(&p) else { return };
        let at = inp.u8() as usize;
        let bit = 1 << (inp.u8() % 8);
        let mut flipped = false;
        for slot in 0..2 {
            let base = slot * SLOT_BYTES;
            let Some(head) = b.get(base..base + 16) else { continue };
            if &head[..8] != b"TRIBSLOT" {
                continue;
            }
            let len = u32::from_le_bytes(head[8..12].try_into().unwrap()) as usize;
            b[base + 16 + at % len.max(1)] ^= bit;
            flipped = true;
        }
        if !flipped {
            return;
        }
        fs::write(&p, b).unwrap();
        match Manifest::load(&Sidecar::for_target(&self.target)) {
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::CorruptManifest, "{e}");
                self.poisoned = true;
            }
            // CRC32 catches every single-bit flip: no damaged slot may be accepted.
            Ok(m) => panic!("both slots damaged, yet a manifest was read: {m:?}"),
        }
    }
}

/// Bytes of one manifest slot in the lock file (docs/design.md, format version 2).
const SLOT_BYTES: usize = 2 << 20;

/// Index of the line that starts at byte `offset` of the committed lines (`None` if
/// the offset is inside a line).
fn line_index_at(lines: &[Vec<u8>], offset: u64) -> Option<usize> {
    let mut at = 0u64;
    for (i, l) in lines.iter().enumerate() {
        if at == offset {
            return Some(i);
        }
        at += l.len() as u64 + 1;
    }
    (at == offset).then_some(lines.len())
}

pub fn api_ops(data: &[u8]) -> Stats {
    let mut inp = Input { data, pos: 0 };
    let mut w = World::new();
    let mut ops = 0;
    let trace = std::env::var_os("TRIB_FUZZ_TRACE").is_some();
    while !inp.done() && ops < 48 {
        ops += 1;
        let op = inp.u8() % 13;
        if trace {
            eprintln!("op {ops}: {op} at byte {} (poisoned {}, tail {})", inp.pos, w.poisoned, w.tail);
        }
        match op {
            0 | 1 => w.open(&mut inp),
            2 | 3 => w.append(&mut inp),
            4 => w.batch(&mut inp),
            5 => w.keyed(&mut inp),
            6 | 7 => w.drain(&mut inp),
            8 => w.read(&mut inp),
            9 => w.verify(),
            10 => w.status(),
            11 => w.tail(&mut inp),
            _ => {
                if inp.u8().is_multiple_of(4) {
                    w.corrupt_manifest(&mut inp)
                } else {
                    let slot = inp.u8() as usize % SLOTS;
                    w.slots[slot] = None; // close
                }
            }
        }
    }
    w.stats.ops = ops;
    w.stats.poisoned = w.poisoned;
    w.stats
}

/// Seed inputs for `manifest_decode`: real manifests made through the public API
/// (fresh, with watermarks), raw and as `WITH_CRC` bodies, plus broken variants.
pub fn manifest_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut m = Manifest::new_adopting(1234, 56, 0xdead_beef, 42).expect("manifest");
    out.push(m.encode());
    for k in 1..4u8 {
        let id = tributary::JournalId([k; 16]);
        m.watermarks.insert(
            id,
            tributary::Watermark {
                journal_id: id,
                last_seq: u64::from(k) * 1000,
                crc: 7,
                chain: u64::from(k),
                anchor: 0,
            },
        );
    }
    let full = m.encode();
    out.push(full.clone());
    // the body with the CRC line cut off, marked so the harness appends a correct one
    let body_end = full[..full.len() - 1].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let mut body = vec![WITH_CRC];
    body.extend_from_slice(&full[..body_end]);
    out.push(body);
    out.push(full[..full.len() / 2].to_vec());
    out
}

/// Seed programs for `api_ops` (see `api_ops` for the encoding).
pub fn api_ops_seeds() -> Vec<Vec<u8>> {
    let mut p = Vec::new();
    // open slot 0 on journal 0 and slot 1 on journal 1 (default line limit, normal durability)
    p.extend_from_slice(&[0, 0, 0, 2, 1, 0, 1, 1, 2, 1]);
    // append "hello" to slot 0, "world" to slot 1, a batch of 2 to slot 0
    p.extend_from_slice(&[2, 0, 5]);
    p.extend_from_slice(b"hello");
    p.extend_from_slice(&[2, 1, 5]);
    p.extend_from_slice(b"world");
    p.extend_from_slice(&[4, 0, 2, 3]);
    p.extend_from_slice(b"abc");
    p.extend_from_slice(&[3]);
    p.extend_from_slice(b"d\ne"); // a newline: the whole batch is refused
                                  // keyed twice with the same key on slot 1
    p.extend_from_slice(&[5, 1, 1, b'k', 1, b'x', 5, 1, 1, b'k', 1, b'y']);
    // drain both, default rounds; read all; verify; status
    p.extend_from_slice(&[6, 3, 3, 8, 0, 7, 9, 10]);
    // foreign bytes (`echo >> target`), a drain of slot 0 alone in tiny rounds that is
    // refused (the bytes are then cut off), the same drain again, read, verify
    p.extend_from_slice(&[11, 4]);
    p.extend_from_slice(b"torn");
    p.extend_from_slice(&[2, 0, 3]);
    p.extend_from_slice(b"xyz");
    p.extend_from_slice(&[6, 1, 1, 3, 6, 1, 1, 3, 8, 1, 3, 9]);
    let mut q = p.clone();
    // the same journal in two slots given to one drain, then a corrupted manifest
    q.extend_from_slice(&[0, 2, 0, 2, 1, 6, 5, 3, 12, 0, 5, 3, 6, 1, 3, 9, 8, 0, 2]);
    vec![p, q]
}

/// What one `ffi_ops` program did (for the seed test).
#[derive(Debug, Default)]
pub struct FfiStats {
    pub calls: u64,
    pub ok: u64,
    pub errors: u64,
}

/// The part of include/tributary.h that `ffi_ops` calls, declared as any foreign caller
/// declares it. The C ABI is not part of tributary's Rust API: its `#[no_mangle]`
/// functions are linked from the tributary library like C symbols. Transcribed from the
/// header of ABI version [`c_abi::TRIB_ABI_VERSION`]; `ffi_ops` first checks that the
/// library has that version (the structs' layouts and the functions' signatures belong
/// to it), so an incompatible ABI change fails here until this is updated from the header.
#[allow(non_camel_case_types, dead_code)] // C names; structs transcribed whole, some fields unread
mod c_abi {
    use std::ffi::{c_char, c_int};

    pub const TRIB_ABI_VERSION: u32 = 3;
    pub const TRIB_OK: c_int = 0;
    pub const TRIB_E_INVALID_LINE: c_int = 1;
    pub const TRIB_E_TARGET_MISSING: c_int = 18;
    pub const TRIB_E_PANIC: c_int = 100;
    pub const TRIB_ID_BUF_LEN: usize = 33;

    /// Opaque handles (never instantiated on this side).
    #[repr(C)]
    pub struct trib_error {
        _opaque: [u8; 0],
    }
    #[repr(C)]
    pub struct trib_journal {
        _opaque: [u8; 0],
    }
    #[repr(C)]
    pub struct trib_reader {
        _opaque: [u8; 0],
    }
    #[repr(C)]
    pub struct trib_status_report {
        _opaque: [u8; 0],
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct trib_journal_options {
        pub durability: u32,
        pub max_line_bytes: usize,
        pub max_backlog_bytes: u64,
        pub full_wait_ms: u64,
        pub key_retention_ms: u64,
        pub busy_timeout_ms: u64,
        pub allow_network_fs: bool,
    }

    #[repr(C)]
    pub struct trib_slice {
        pub ptr: *const u8,
        pub len: usize,
    }

    #[repr(C)]
    pub struct trib_backlog {
        pub lines: u64,
        pub bytes: u64,
        pub oldest_append_ms: i64,
        pub last_seq: u64,
        pub drained_seq: u64,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct trib_compactor_options {
        pub max_round_bytes: u64,
        pub max_round_time_ms: u64,
        pub lock_timeout_ms: u64,
        pub max_line_bytes: usize,
        pub journal_busy_timeout_ms: u64,
        pub allow_network_fs: bool,
        pub rotate_bytes: u64,
        pub rotate_lines: u64,
        pub retain_generations: u64,
        pub create: bool,
    }

    #[repr(C)]
    pub struct trib_drain_report {
        pub rounds: u64,
        pub lines: u64,
        pub bytes: u64,
        pub repaired_tail_bytes: u64,
        pub epoch: u64,
        pub journals: usize,
        pub rotations: u64,
    }

    #[repr(C)]
    pub struct trib_verify_report {
        pub consistent: bool,
        pub epoch: u64,
        pub committed_len: u64,
        pub committed_lines: u64,
        pub target_len: u64,
        pub uncommitted_tail_bytes: u64,
        pub problem_count: usize,
        pub problems: *mut c_char,
        pub generation: u64,
        pub rotated_generations: u64,
    }

    #[repr(C)]
    pub struct trib_watermark {
        pub journal_id: [c_char; TRIB_ID_BUF_LEN],
        pub last_seq: u64,
        pub crc: u32,
    }

    #[repr(C)]
    pub struct trib_journal_status {
        pub path: *const c_char,
        pub journal_id: [c_char; TRIB_ID_BUF_LEN],
        pub backlog: trib_backlog,
        pub watermark: u64,
    }

    extern "C" {
        pub fn trib_abi_version() -> u32;
        pub fn trib_error_free(err: *mut trib_error);
        pub fn trib_error_kind(err: *const trib_error) -> c_int;
        pub fn trib_error_message(err: *const trib_error) -> *const c_char;
        pub fn trib_journal_options_default(
            options_out: *mut trib_journal_options,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_journal_open(
            path: *const c_char,
            options: *const trib_journal_options,
            journal_out: *mut *mut trib_journal,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_journal_close(journal: *mut trib_journal);
        pub fn trib_journal_append(
            journal: *const trib_journal,
            line: *const u8,
            len: usize,
            seq_out: *mut u64,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_journal_append_batch(
            journal: *const trib_journal,
            lines: *const trib_slice,
            count: usize,
            first_seq_out: *mut u64,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_journal_append_keyed(
            journal: *const trib_journal,
            key: *const u8,
            key_len: usize,
            line: *const u8,
            line_len: usize,
            seq_out: *mut u64,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_journal_backlog(
            journal: *const trib_journal,
            backlog_out: *mut trib_backlog,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_journal_id(
            journal: *const trib_journal,
            buf: *mut c_char,
            buf_len: usize,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_drain(
            target: *const c_char,
            journal_paths: *const *const c_char,
            journal_count: usize,
            spool: *const c_char,
            options: *const trib_compactor_options,
            report_out: *mut trib_drain_report,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_compactor_options_default(
            options_out: *mut trib_compactor_options,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_verify(
            target: *const c_char,
            report_out: *mut trib_verify_report,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_verify_report_clear(report: *mut trib_verify_report);
        pub fn trib_status(
            target: *const c_char,
            spool: *const c_char,
            report_out: *mut *mut trib_status_report,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_status_report_watermark(
            report: *const trib_status_report,
            index: usize,
            watermark_out: *mut trib_watermark,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_status_report_journal(
            report: *const trib_status_report,
            index: usize,
            journal_out: *mut trib_journal_status,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_status_report_free(report: *mut trib_status_report);
        pub fn trib_reader_open(
            target: *const c_char,
            offset: u64,
            reader_out: *mut *mut trib_reader,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_reader_open_at(
            target: *const c_char,
            generation: u64,
            offset: u64,
            reader_out: *mut *mut trib_reader,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_reader_next(
            reader: *mut trib_reader,
            wait_ms: u64,
            has_line_out: *mut bool,
            line_out: *mut *const u8,
            len_out: *mut usize,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_reader_cursor(
            reader: *const trib_reader,
            generation_out: *mut u64,
            offset_out: *mut u64,
            err_out: *mut *mut trib_error,
        ) -> c_int;
        pub fn trib_reader_close(reader: *mut trib_reader);
    }
}

/// `ffi_ops`: the bytes are a program of C-ABI calls (the functions of
/// include/tributary.h, declared in [`c_abi`]) with NULL, valid and wrong-type handles,
/// garbage options, lengths and bytes. The contract checked on every call: never
/// `TRIB_E_PANIC`; a known result code; `*err_out` set exactly when the call failed,
/// with the same kind and a message; outputs untouched on failure.
pub fn ffi_ops(data: &[u8]) -> FfiStats {
    use c_abi::*;
    use std::ffi::{c_char, c_int, CStr, CString};
    use std::os::unix::ffi::OsStrExt;
    use std::ptr;

    // SAFETY: takes no argument and returns a number.
    let abi = unsafe { trib_abi_version() };
    assert_eq!(
        abi, TRIB_ABI_VERSION,
        "the library's C ABI is version {abi}, but c_abi in fuzz/src/lib.rs was transcribed from version \
         {TRIB_ABI_VERSION}: update it from include/tributary.h"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    fs::create_dir(&spool).expect("spool");
    let cpath = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("no NUL in a temp path");
    let target = cpath(&dir.path().join("out.log"));
    let spool_c = cpath(&spool);
    let journal_paths = [cpath(&spool.join("j0.journal")), cpath(&spool.join("j1.journal"))];
    let mut inp = Input { data, pos: 0 };
    let mut stats = FfiStats::default();
    let mut journals: Vec<*mut trib_journal> = Vec::new();
    let mut readers: Vec<*mut trib_reader> = Vec::new();

    // The contract every fallible call keeps.
    let trace = std::env::var_os("TRIB_FUZZ_TRACE").is_some();
    let mut check = |rc: c_int, err: *mut trib_error, what: &str| {
        stats.calls += 1;
        if trace {
            eprintln!("{what}: rc {rc}");
        }
        assert_ne!(rc, TRIB_E_PANIC, "{what}: a panic reached the C boundary");
        if rc == TRIB_OK {
            assert!(err.is_null(), "{what}: succeeded but set *err_out");
            stats.ok += 1;
            return true;
        }
        assert!((TRIB_E_INVALID_LINE..=TRIB_E_TARGET_MISSING).contains(&rc), "{what}: unknown result code {rc}");
        assert!(!err.is_null(), "{what}: failed with {rc} but left *err_out NULL");
        // SAFETY: a live error from this library, freed once below.
        unsafe {
            assert_eq!(trib_error_kind(err), rc, "{what}: error kind differs from the result code");
            let msg = CStr::from_ptr(trib_error_message(err));
            assert!(!msg.to_bytes().is_empty(), "{what}: empty error message");
            trib_error_free(err);
        }
        stats.errors += 1;
        false
    };
    let mut steps = 0;
    while !inp.done() && steps < 64 {
        steps += 1;
        let mut err: *mut trib_error = ptr::null_mut();
        // A journal handle: a live one, NULL, or a reader passed as one (wrong type).
        let pick_journal =
            |inp: &mut Input, journals: &[*mut trib_journal], readers: &[*mut trib_reader]| match inp.u8() % 8 {
                0 => ptr::null(),
                1 if !readers.is_empty() => readers[0] as *const trib_journal,
                n if !journals.is_empty() => journals[n as usize % journals.len()] as *const trib_journal,
                _ => ptr::null(),
            };
        match inp.u8() % 12 {
            0 if journals.len() < 3 => {
                let path = match inp.u8() % 4 {
                    0 => ptr::null(),
                    1 => c"/nonexistent-tributary-dir/x.journal".as_ptr(),
                    n => journal_paths[n as usize % 2].as_ptr(),
                };
                let mut opts = std::mem::MaybeUninit::<trib_journal_options>::uninit();
                // SAFETY: a writable options struct.
                let rc = unsafe { trib_journal_options_default(opts.as_mut_ptr(), &mut err) };
                assert!(check(rc, err, "options_default"));
                // SAFETY: initialised by the successful call above.
                let mut opts = unsafe { opts.assume_init() };
                opts.durability = u32::from(inp.u8() % 3); // 2 is invalid
                if inp.u8().is_multiple_of(2) {
                    opts.max_line_bytes = (inp.u64() % 2000) as usize; // 0 is invalid
                    opts.max_backlog_bytes = inp.u64() % 5000;
                }
                let use_opts = !inp.u8().is_multiple_of(3);
                let mut out: *mut trib_journal = ptr::null_mut();
                err = ptr::null_mut();
                // SAFETY: path NULL or NUL-terminated; options NULL or valid; out writable.
                let rc =
                    unsafe { trib_journal_open(path, if use_opts { &opts } else { ptr::null() }, &mut out, &mut err) };
                if check(rc, err, "journal_open") {
                    assert!(!out.is_null());
                    journals.push(out);
                } else {
                    assert!(out.is_null(), "journal_open wrote its output on failure");
                }
            }
            1 => {
                let j = pick_journal(&mut inp, &journals, &readers);
                let line = inp.bytes(40);
                let null_ptr = inp.u8().is_multiple_of(8);
                let (p, len) = if null_ptr { (ptr::null(), line.len()) } else { (line.as_ptr(), line.len()) };
                let mut seq = u64::MAX;
                // SAFETY: j NULL, live or another live handle; p NULL or len readable bytes.
                let rc = unsafe { trib_journal_append(j, p, len, &mut seq, &mut err) };
                if check(rc, err, "append") {
                    assert!(seq >= 1 && seq != u64::MAX);
                } else {
                    assert_eq!(seq, u64::MAX, "append wrote its output on failure");
                }
            }
            2 => {
                let j = pick_journal(&mut inp, &journals, &readers);
                let lines: Vec<Vec<u8>> = (0..inp.u8() % 4).map(|_| inp.bytes(20)).collect();
                let mut slices: Vec<trib_slice> =
                    lines.iter().map(|l| trib_slice { ptr: l.as_ptr(), len: l.len() }).collect();
                if let Some(s) = slices.first_mut() {
                    if inp.u8().is_multiple_of(6) {
                        s.ptr = ptr::null(); // NULL with a length: must be refused
                        s.len += 1;
                    }
                }
                let mut first = u64::MAX;
                let arr = if inp.u8().is_multiple_of(8) { ptr::null() } else { slices.as_ptr() };
                // SAFETY: arr NULL or slices.len() slices, each NULL or pointing to len bytes.
                let rc = unsafe { trib_journal_append_batch(j, arr, slices.len(), &mut first, &mut err) };
                if !check(rc, err, "append_batch") {
                    assert_eq!(first, u64::MAX, "append_batch wrote its output on failure");
                }
            }
            3 => {
                let j = pick_journal(&mut inp, &journals, &readers);
                let (key, line) = (inp.bytes(6), inp.bytes(20));
                let mut seq = u64::MAX;
                // SAFETY: pointers to key.len() / line.len() readable bytes.
                let rc = unsafe {
                    trib_journal_append_keyed(j, key.as_ptr(), key.len(), line.as_ptr(), line.len(), &mut seq, &mut err)
                };
                if !check(rc, err, "append_keyed") {
                    assert_eq!(seq, u64::MAX, "append_keyed wrote its output on failure");
                }
            }
            4 => {
                let mode = inp.u8() % 4;
                let list: Vec<*const c_char> = journal_paths.iter().map(|p| p.as_ptr()).collect();
                let (paths, count, sp) = match mode {
                    0 => (list.as_ptr(), (inp.u8() % 3) as usize, ptr::null()),
                    1 => (ptr::null(), 0, spool_c.as_ptr()),
                    2 => (list.as_ptr(), 1, spool_c.as_ptr()), // both: invalid
                    _ => (ptr::null(), 2, ptr::null()),        // NULL list with a count: invalid
                };
                let mut opts = std::mem::MaybeUninit::<trib_compactor_options>::uninit();
                // SAFETY: writable.
                assert!(check(unsafe { trib_compactor_options_default(opts.as_mut_ptr(), &mut err) }, err, "copt"));
                // SAFETY: initialised above.
                let mut opts = unsafe { opts.assume_init() };
                opts.max_round_bytes = inp.u64() % 300; // 0 is invalid
                opts.lock_timeout_ms = 1000;
                opts.rotate_bytes = if inp.u8().is_multiple_of(3) { 50 } else { 0 };
                opts.create = inp.u8().is_multiple_of(2);
                let mut report = std::mem::MaybeUninit::<trib_drain_report>::zeroed();
                err = ptr::null_mut();
                // SAFETY: all pointers NULL or valid as built above.
                let rc = unsafe { trib_drain(target.as_ptr(), paths, count, sp, &opts, report.as_mut_ptr(), &mut err) };
                check(rc, err, "drain");
            }
            5 => {
                let mut report = std::mem::MaybeUninit::<trib_verify_report>::zeroed();
                let t = if inp.u8().is_multiple_of(5) { ptr::null() } else { target.as_ptr() };
                // SAFETY: t NULL or NUL-terminated; report writable.
                let rc = unsafe { trib_verify(t, report.as_mut_ptr(), &mut err) };
                if check(rc, err, "verify") {
                    // SAFETY: filled by the successful call; cleared once.
                    unsafe { trib_verify_report_clear(report.as_mut_ptr()) };
                }
            }
            6 => {
                let mut rep: *mut trib_status_report = ptr::null_mut();
                let sp = if inp.u8().is_multiple_of(2) { spool_c.as_ptr() } else { ptr::null() };
                // SAFETY: valid strings; rep writable.
                let rc = unsafe { trib_status(target.as_ptr(), sp, &mut rep, &mut err) };
                if check(rc, err, "status") {
                    let index = (inp.u8() % 4) as usize;
                    let mut w = std::mem::MaybeUninit::<trib_watermark>::zeroed();
                    let mut js = std::mem::MaybeUninit::<trib_journal_status>::zeroed();
                    let mut e2: *mut trib_error = ptr::null_mut();
                    // SAFETY: rep is live; outputs writable.
                    let rc = unsafe { trib_status_report_watermark(rep, index, w.as_mut_ptr(), &mut e2) };
                    check(rc, e2, "status_watermark");
                    e2 = ptr::null_mut();
                    // SAFETY: as above.
                    let rc = unsafe { trib_status_report_journal(rep, index, js.as_mut_ptr(), &mut e2) };
                    check(rc, e2, "status_journal");
                    // SAFETY: live, freed once.
                    unsafe { trib_status_report_free(rep) };
                } else {
                    assert!(rep.is_null(), "status wrote its output on failure");
                }
            }
            7 if readers.len() < 3 => {
                let mut r: *mut trib_reader = ptr::null_mut();
                let (g, off) = (inp.u64() % 4, inp.u64() % 64);
                // SAFETY: target NUL-terminated; r writable.
                let rc = unsafe {
                    if inp.u8().is_multiple_of(2) {
                        trib_reader_open(target.as_ptr(), off, &mut r, &mut err)
                    } else {
                        trib_reader_open_at(target.as_ptr(), g, off, &mut r, &mut err)
                    }
                };
                if check(rc, err, "reader_open") {
                    readers.push(r);
                } else {
                    assert!(r.is_null(), "reader_open wrote its output on failure");
                }
            }
            8 => {
                let r = match inp.u8() % 6 {
                    0 => ptr::null_mut(),
                    1 if !journals.is_empty() => journals[0] as *mut trib_reader, // wrong type
                    n if !readers.is_empty() => readers[n as usize % readers.len()],
                    _ => ptr::null_mut(),
                };
                let (mut has, mut line, mut len) = (false, ptr::null::<u8>(), usize::MAX);
                // SAFETY: r NULL or a live handle; outputs writable.
                let rc = unsafe { trib_reader_next(r, 0, &mut has, &mut line, &mut len, &mut err) };
                if check(rc, err, "reader_next") && has {
                    assert!(!line.is_null() && len != usize::MAX);
                    // SAFETY: the reader's line memory, len readable bytes until the next call.
                    let l = unsafe { std::slice::from_raw_parts(line, len) };
                    assert!(!l.contains(&b'\n'), "a line with a newline came out");
                } else if rc != TRIB_OK {
                    assert_eq!(len, usize::MAX, "reader_next wrote its output on failure");
                }
                if !r.is_null() && rc == TRIB_OK {
                    let (mut g, mut o) = (u64::MAX, u64::MAX);
                    err = ptr::null_mut();
                    // SAFETY: live reader; outputs writable.
                    let rc = unsafe { trib_reader_cursor(r, &mut g, &mut o, &mut err) };
                    assert!(check(rc, err, "reader_cursor") && g != u64::MAX && o != u64::MAX);
                }
            }
            9 => {
                let j = pick_journal(&mut inp, &journals, &readers);
                let cap = (inp.u8() % 40) as usize;
                let mut buf = vec![b'#' as c_char; cap.max(1)];
                // SAFETY: buf has at least cap writable bytes.
                let rc = unsafe { trib_journal_id(j, buf.as_mut_ptr(), cap, &mut err) };
                if check(rc, err, "journal_id") {
                    // SAFETY: NUL-terminated within cap bytes on success.
                    let id = unsafe { CStr::from_ptr(buf.as_ptr()) };
                    assert_eq!(id.to_bytes().len(), 32);
                } else {
                    assert!(buf.iter().all(|&c| c == b'#' as c_char), "journal_id wrote its output on failure");
                }
                let mut b = std::mem::MaybeUninit::<trib_backlog>::zeroed();
                err = ptr::null_mut();
                // SAFETY: as above.
                let rc = unsafe { trib_journal_backlog(j, b.as_mut_ptr(), &mut err) };
                check(rc, err, "journal_backlog");
            }
            10 => {
                // Close one handle (or NULL, which is allowed).
                // SAFETY: each handle is closed once and dropped from its list.
                unsafe {
                    match inp.u8() % 3 {
                        0 if !journals.is_empty() => trib_journal_close(journals.remove(0)),
                        1 if !readers.is_empty() => trib_reader_close(readers.remove(0)),
                        _ => {
                            trib_journal_close(ptr::null_mut());
                            trib_reader_close(ptr::null_mut());
                        }
                    }
                }
            }
            _ => {
                // Damage the target (foreign bytes appended, a flipped byte in a manifest slot).
                let t = dir.path().join("out.log");
                if inp.u8().is_multiple_of(2) {
                    if let Ok(mut f) = fs::OpenOptions::new().append(true).open(&t) {
                        use std::io::Write;
                        let _ = f.write_all(&inp.bytes(8));
                    }
                } else {
                    let m = Sidecar::for_target(&t).lock;
                    if let Ok(mut b) = fs::read(&m) {
                        let i = (inp.u8() as usize % 64) + (inp.u8() as usize % 2) * SLOT_BYTES;
                        if let Some(x) = b.get_mut(i) {
                            *x ^= 0x10;
                        }
                        let _ = fs::write(&m, b);
                    }
                }
            }
        }
    }
    // SAFETY: every remaining handle is live and closed exactly once.
    unsafe {
        journals.drain(..).for_each(|j| trib_journal_close(j));
        readers.drain(..).for_each(|r| trib_reader_close(r));
    }
    stats
}

/// Seed programs for `ffi_ops`: open, append, batch with a bad line, keyed, drain
/// (creating the target), read, verify, status, wrong-type handles, then foreign bytes,
/// a drain they stop, a damaged slot, and closes. Each op is encoded byte for byte as
/// `ffi_ops` reads it.
pub fn ffi_ops_seeds() -> Vec<Vec<u8>> {
    // open j0: path 2 (j0), durability 1 (normal), no limits (odd), with the options
    let mut p = vec![0, 2, 1, 1, 1];
    // append "hello" and "ab" to journal 0 (pick 2), pointers not NULL
    p.extend_from_slice(&[1, 2, 5]);
    p.extend_from_slice(b"hello");
    p.extend_from_slice(&[1, 1, 2, 2]);
    p.extend_from_slice(b"ab");
    p.push(1);
    // a batch of 2 whose first line has a newline: refused whole
    p.extend_from_slice(&[2, 2, 2, 3]);
    p.extend_from_slice(b"x\ny");
    p.extend_from_slice(&[1, b'z', 1, 1]);
    // keyed "k" -> "v"
    p.extend_from_slice(&[3, 2, 1, b'k', 1, b'v']);
    // drain the spool in rounds of 200 bytes, no rotation, creating the target
    p.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0, 0, 0, 200, 1, 0]);
    // a reader at 0; three lines and cursors
    p.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    p.extend_from_slice(&[8, 2, 8, 2, 8, 2]);
    // verify; status with the spool (watermark 0, journal 0); journal id and backlog,
    // then with a reader passed as a journal (wrong type); verify
    p.extend_from_slice(&[5, 1, 6, 0, 0, 9, 2, 33, 9, 1, 33, 5, 1]);
    let mut q = p.clone();
    // foreign bytes appended to the target; a drain (no create) refuses them; a byte
    // of slot A's header flipped; verify; close a journal, a reader, NULLs
    q.extend_from_slice(&[11, 0, 4]);
    q.extend_from_slice(b"junk");
    q.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0, 0, 0, 200, 1, 1]);
    q.extend_from_slice(&[11, 1, 5, 0, 5, 1, 10, 0, 10, 1, 10, 2]);
    vec![p, q]
}
