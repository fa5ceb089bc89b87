//! Fan-out readers with cursors, and managed rotation: exactly-once across
//! generations, readers continuing across them, retention, crash safety of every
//! rotation step, and refusal of external rotation.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tributary::{generation_path, Compactor, CompactorOptions, Cursor, CursorStore, ErrorKind, ManifestDeltas, Reader};

fn rotating(target: &Path, rotate_bytes: u64, retain: Option<u64>) -> Compactor {
    let opts =
        CompactorOptions::default().max_round_bytes(300).rotate_bytes(Some(rotate_bytes)).retain_generations(retain);
    Compactor::new(target, opts).unwrap()
}

/// Every generation's lines, oldest first (what a reader from the start must see).
fn all_generations(target: &Path) -> Vec<Vec<u8>> {
    let m = tributary::status(target, None).unwrap().manifest.unwrap();
    let mut out = Vec::new();
    for g in m.rotated.keys() {
        out.extend(lines_of(&generation_path(target, *g)));
    }
    out.extend(lines_of(target));
    out
}

fn read_all(target: &Path, from: Cursor) -> (Vec<Vec<u8>>, Cursor) {
    let mut r = Reader::open_at(target, from).unwrap();
    let mut out = Vec::new();
    while let Some(l) = r.next_line().unwrap() {
        out.push(l);
    }
    (out, r.cursor())
}

/// A rotation run by another user than the target's owner (an operator's one-off
/// drain as root) gives the new generation the owner, group, mode and access ACL of
/// the one it follows (read and write only): it made the new target root's, and the
/// compactor's own user was refused it at every round after (an outside tester: a
/// daemon stalled for good); a reader given read by an ACL lost it at the first
/// rotation once the mode was carried without the ACL (another).
#[test]
fn a_new_generation_keeps_the_owner_and_mode_of_the_one_it_follows() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !is_root() {
        eprintln!("skipped: needs root to give the target away");
        return;
    }
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let (uid, gid) = (65534, 65533);
    std::os::unix::fs::chown(&target, Some(uid), Some(gid)).unwrap();
    // set-id and execute bits are not carried (a target is data)
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o6750)).unwrap();
    let j = journal(&spool.join("a.journal"));
    j.append_batch(&numbered("own", 0..100)).unwrap();
    // an access ACL giving a reader (uid 65532) read — and execute, which is not carried
    let entry =
        |tag: u16, perm: u16, id: u32| [&tag.to_le_bytes()[..], &perm.to_le_bytes(), &id.to_le_bytes()].concat();
    let any = u32::MAX;
    let acl: Vec<u8> = [
        2u32.to_le_bytes().to_vec(),
        entry(0x01, 6, any),   // owner rw-
        entry(0x02, 5, 65532), // the reader r-x
        entry(0x04, 4, any),   // group r--
        entry(0x10, 5, any),   // mask r-x
        entry(0x20, 0, any),   // others ---
    ]
    .concat();
    let xattr = |op: &str, path: &Path, value: &[u8]| {
        let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
        let code = "import os,sys; p=sys.argv[1]; n='system.posix_acl_access'; \
             os.setxattr(p, n, bytes.fromhex(sys.argv[2])) if sys.argv[3] == 'set' else print(os.getxattr(p, n).hex())";
        let out = std::process::Command::new("python3").args(["-c", code]).arg(path).arg(hex).arg(op).output().unwrap();
        assert!(out.status.success(), "python3 {op}xattr: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    xattr("set", &target, &acl);
    let r = rotating(&target, 500, None).drain(std::slice::from_ref(&j)).unwrap();
    assert!(r.rotations >= 1, "{r:?}");
    let md = std::fs::metadata(&target).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (uid, gid, 0o640), "the new generation's owner and mode");
    let carried: Vec<u8> = [
        2u32.to_le_bytes().to_vec(),
        entry(0x01, 6, any),
        entry(0x02, 4, 65532),
        entry(0x04, 4, any),
        entry(0x10, 4, any),
        entry(0x20, 0, any),
    ]
    .concat();
    let want: String = carried.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(xattr("get", &target, &[]), want, "the new generation's ACL: the reader keeps read, not execute");
}

#[test]
fn rotation_keeps_exactly_once_and_readers_continue_across_generations() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let j = journal(&spool.join("a.journal"));
    let lines = numbered("rot", 0..200); // 11 bytes each
    j.append_batch(&lines[..100]).unwrap();
    let c = rotating(&target, 500, None);
    let r = c.drain(std::slice::from_ref(&j)).unwrap();
    assert!(r.rotations >= 1, "{r:?}");
    // A reader that read the first part keeps its cursor...
    let (first, cursor) = read_all(&target, Cursor::START);
    assert_eq!(first, lines[..100].to_vec());
    j.append_batch(&lines[100..]).unwrap();
    let r = c.drain(std::slice::from_ref(&j)).unwrap();
    assert!(r.rotations >= 2, "{r:?}");
    // ...and continues after more rotations without losing or repeating a line.
    let (rest, _) = read_all(&target, cursor);
    assert_eq!(rest, lines[100..].to_vec());
    assert_eq!(all_generations(&target), lines);
    let v = tributary::verify(&target).unwrap();
    assert!(v.is_consistent(), "{:?}", v.problems);
    assert!(v.rotated_generations >= 3, "{v:?}");
    // A changed byte in a rotated generation is caught by verify.
    let g1 = generation_path(&target, 1);
    let mut b = std::fs::read(&g1).unwrap();
    b[0] = b'X';
    std::fs::write(&g1, b).unwrap();
    assert!(!tributary::verify(&target).unwrap().is_consistent());
}

#[test]
fn retention_removes_old_generations_and_stale_cursors_get_a_clear_error() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let j = journal(&spool.join("a.journal"));
    let c = rotating(&target, 200, Some(2));
    let mut all = Vec::new();
    for k in 0..8 {
        let batch = numbered(&format!("ret{k}"), 0..20);
        j.append_batch(&batch).unwrap();
        all.extend(batch);
        c.drain(std::slice::from_ref(&j)).unwrap();
    }
    let m = tributary::status(&target, None).unwrap().manifest.unwrap();
    assert_eq!(m.rotated.len(), 2, "{m:?}");
    let oldest = *m.rotated.keys().next().unwrap();
    for g in 1..oldest {
        assert!(!generation_path(&target, g).exists(), "generation {g} should have been removed");
    }
    // What is kept is the tail of everything, in order, each line once.
    let kept = all_generations(&target);
    assert_eq!(kept, all[all.len() - kept.len()..].to_vec());
    assert_eq!(read_all(&target, Cursor::START).0, kept);
    let e = Reader::open_at(&target, Cursor::at(1, 0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("no longer kept"), "{e}");
    assert!(tributary::verify(&target).unwrap().is_consistent());
}

#[test]
fn a_cursor_at_the_end_of_a_generation_survives_its_removal() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let j = journal(&spool.join("a.journal"));
    let c = rotating(&target, 100, Some(1));
    j.append_batch(&numbered("g1", 0..20)).unwrap(); // 9 bytes a line: 180 bytes
    c.drain(std::slice::from_ref(&j)).unwrap();
    j.append(b"into generation 2").unwrap();
    c.drain(std::slice::from_ref(&j)).unwrap(); // rotates generation 1 out first
                                                // A reader that finished generation 1 (and nothing more) keeps its cursor...
    let mut r = Reader::open_at(&target, Cursor::at(1, 0)).unwrap();
    for _ in 0..20 {
        r.next_line().unwrap().unwrap();
    }
    let saved = r.cursor();
    assert_eq!((saved.generation, saved.offset), (2, 0), "the cursor moves past a finished generation at once");
    // ...retention then removes generation 1 (a second rotation, keeping 1)...
    j.append(b"into generation 3").unwrap();
    let rep = Compactor::new(&target, CompactorOptions::default().rotate_bytes(Some(10)).retain_generations(Some(1)))
        .unwrap()
        .drain(std::slice::from_ref(&j))
        .unwrap();
    assert!(rep.rotations >= 1);
    assert!(!generation_path(&target, 1).exists());
    // ...and the saved cursor still opens and continues without loss.
    let (rest, _) = read_all(&target, saved);
    assert_eq!(rest, vec![b"into generation 2".to_vec(), b"into generation 3".to_vec()]);
    assert!(tributary::verify(&target).unwrap().is_consistent());
}

#[test]
fn a_compactor_killed_at_every_rotation_step_recovers_exactly_once() {
    for point in ["rotate.after_rename", "rotate.after_create", "rotate.after_commit"] {
        let d = tmp();
        let (spool, target) = paths(d.path());
        init(&target);
        let jp = spool.join("a.journal");
        let lines = numbered("k", 0..100);
        journal(&jp).append_batch(&lines[..50]).unwrap();
        let args = ["drain", "--target", &s(&target), "--journal", &s(&jp), "--rotate-bytes", "300"];
        let args_small_rounds = [&args[..], &["--max-round-bytes", "200"]].concat();
        assert!(cli(&args).status.success());
        journal(&jp).append_batch(&lines[50..]).unwrap();
        // A reader mid-way, to check it survives the crash and the recovery.
        let (seen, cursor) = read_all(&target, Cursor::START);
        let out = cli_env(&args_small_rounds, &[("TRIBUTARY_FAILPOINTS", &format!("{point}=kill"))]);
        assert_eq!(out.status.signal(), Some(9), "{point}: {out:?}");
        // Readers and verify during the broken state see only committed lines.
        let (mid, _) = read_all(&target, cursor);
        assert!(mid.iter().all(|l| lines.contains(l)), "{point}");
        let out = cli(&args_small_rounds);
        assert!(out.status.success(), "{point}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(all_generations(&target), lines, "{point}");
        let (rest, _) = read_all(&target, cursor);
        assert_eq!([seen, rest].concat(), lines, "{point}: the reader lost or repeated lines");
        let v = tributary::verify(&target).unwrap();
        assert!(v.is_consistent(), "{point}: {:?}", v.problems);
    }
}

#[test]
fn external_rotation_is_detected_and_refused() {
    // step 1 reads the target's size after the slots, or with them (network filesystems)
    for early in [false, true] {
        let d = tmp();
        let (spool, target) = paths(d.path());
        init(&target);
        let j = journal(&spool.join("a.journal"));
        j.append_batch(&numbered("x", 0..10)).unwrap();
        compactor(&target).reading_the_target_early(early).drain(std::slice::from_ref(&j)).unwrap();
        j.append(b"more").unwrap();
        // logrotate `create`: rename the target away, create an empty one. The file there
        // is not the one the manifest committed to (another inode): refused, and `init`
        // does not accept it either (its committed part is not there).
        std::fs::rename(&target, d.path().join("shared").join("out.log-20261122")).unwrap();
        std::fs::write(&target, b"").unwrap();
        let e = compactor(&target).reading_the_target_early(early).drain(std::slice::from_ref(&j)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TargetMissing, "{e}");
        assert!(e.to_string().contains("not the target this sidecar committed to"), "{e}");
        assert_eq!(compactor(&target).init().unwrap_err().kind(), ErrorKind::TargetMissing);
        assert_eq!(std::fs::metadata(&target).unwrap().len(), 0, "the new file was touched");
        // logrotate `copytruncate`: truncate in place.
        std::fs::rename(d.path().join("shared").join("out.log-20261122"), &target).unwrap();
        std::fs::OpenOptions::new().write(true).open(&target).unwrap().set_len(0).unwrap();
        let e = compactor(&target).reading_the_target_early(early).drain(std::slice::from_ref(&j)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TargetTruncated, "{e}");
        assert!(e.to_string().contains("managed rotation"), "{e}");
        assert_eq!(j.backlog().unwrap().lines, 1, "nothing was drained or lost");
    }
}

/// A rotation killed after its rename (and after creating the new file) is completed by
/// the next round, whichever order step 1 reads the slots and the target in: with the
/// target read early, a file at the target's path that is not the manifest's must
/// still send it looking for the renamed one.
#[test]
fn an_interrupted_rotation_is_completed_whichever_order_step_1_reads_in() {
    for early in [false, true] {
        for created in [false, true] {
            let d = tmp();
            let (spool, target) = paths(d.path());
            init(&target);
            let j = journal(&spool.join("a.journal"));
            let lines = numbered("k", 0..20);
            j.append_batch(&lines[..10]).unwrap();
            compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
            std::fs::rename(&target, generation_path(&target, 1)).unwrap();
            if created {
                std::fs::write(&target, b"").unwrap();
            }
            j.append_batch(&lines[10..]).unwrap();
            let r = compactor(&target).reading_the_target_early(early).drain(std::slice::from_ref(&j)).unwrap();
            assert_eq!(r.rotations, 1, "early {early}, created {created}");
            assert_eq!(lines_of(&generation_path(&target, 1)), lines[..10], "early {early}, created {created}");
            assert_eq!(all_generations(&target), lines, "early {early}, created {created}");
            let v = tributary::verify(&target).unwrap();
            assert!(v.is_consistent(), "early {early}, created {created}: {:?}", v.problems);
        }
    }
}

#[test]
fn readers_running_during_drains_and_rotations_get_every_line_once() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let jp = spool.join("a.journal");
    let lines = numbered("live", 0..3000);
    // Three independent readers follow the target from the start while it is written.
    // `stop` only turns a hang into a failure (a watchdog sets it after 5 minutes);
    // a reader stops when it has read as many lines as were written.
    let stop = Arc::new(AtomicBool::new(false));
    let n = lines.len();
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (target, stop) = (target.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut r = loop {
                    match Reader::open_at(&target, Cursor::START) {
                        Ok(r) => break r,
                        Err(_) => std::thread::sleep(Duration::from_millis(5)), // not drained yet
                    }
                };
                let mut got = Vec::new();
                while got.len() < n {
                    match r.next_line_until(Duration::from_millis(5), &stop).unwrap() {
                        Some(l) => got.push(l),
                        None => break,
                    }
                }
                got
            })
        })
        .collect();
    let j = journal(&jp);
    let c = rotating(&target, 4000, None);
    for chunk in lines.chunks(100) {
        j.append_batch(chunk).unwrap();
        c.drain(std::slice::from_ref(&j)).unwrap();
    }
    let watchdog = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(300);
            while std::time::Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let results: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    watchdog.join().unwrap();
    for r in results {
        assert_eq!(r, lines, "a reader lost, repeated or tore a line");
    }
    assert!(tributary::status(&target, None).unwrap().manifest.unwrap().generation > 5);
}

/// Readers read the manifest without the lock while commits rewrite its slots: a read
/// that raced two commits (slot A read before one, slot B torn by the next) once gave
/// an older manifest than the reader had already seen — "cursor generation N does not
/// exist yet", `target_truncated` — or none at all (`corrupt_manifest`, both slots
/// torn); and `status` measured the file of another manifest than the one it read
/// (false "truncated" and "foreign bytes" alarms). Found by an outside tester with a
/// target rotating every few lines.
#[test]
fn lock_free_manifest_reads_never_go_back_or_fail_while_commits_race_them() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let j = journal(&spool.join("a.journal"));
    j.append_batch(&numbered("first", 0..1)).unwrap();
    let c = rotating(&target, 1, None); // every round rotates: the generation moves each time
    c.drain(std::slice::from_ref(&j)).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|k| {
            let (target, done) = (target.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut r = Reader::open_at(&target, Cursor::START).unwrap();
                let (mut reads, mut last_epoch, mut last_generation) = (0u64, 0, 0);
                while !done.load(Ordering::Relaxed) {
                    reads += 1;
                    if k == 0 {
                        // a follower: every line, across every rotation
                        while let Some(_line) = r.next_line().unwrap_or_else(|e| panic!("read {reads}: {e}")) {}
                    } else {
                        let st = tributary::status(&target, None).unwrap_or_else(|e| panic!("read {reads}: {e}"));
                        let m = st.manifest.expect("a manifest");
                        // what `status` judges (a monitor's alarm): the file it measured
                        // belongs to that manifest — never shorter than committed, and
                        // nothing past it that no round announced
                        let len = st.target_len.unwrap_or_else(|| panic!("read {reads}: target missing"));
                        assert!(len >= m.committed_len, "read {reads}: {len} bytes < {} committed", m.committed_len);
                        let announced = m.intent.filter(|i| i.start == m.committed_len).map_or(0, |i| i.max_len);
                        assert!(len - m.committed_len <= announced, "read {reads}: foreign bytes at {len}");
                        assert!(m.epoch >= last_epoch, "read {reads}: epoch {} after {last_epoch}", m.epoch);
                        assert!(m.generation >= last_generation, "read {reads}: generation went back");
                        (last_epoch, last_generation) = (m.epoch, m.generation);
                    }
                }
                reads
            })
        })
        .collect();
    // format 2, then deltas onto a format-3 base (a chain the readers read as well)
    let with_deltas = rotating(&target, 1, None).committing_manifest_deltas(ManifestDeltas::Always);
    for round in 0..400 {
        j.append_batch(&numbered(&format!("r{round}"), 0..1)).unwrap();
        if round < 200 { &c } else { &with_deltas }.drain(std::slice::from_ref(&j)).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        let reads = r.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        assert!(reads > 0);
    }
}

#[test]
fn a_reader_process_killed_at_random_resumes_from_its_durable_cursor() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let lines = numbered("consumed", 0..60_000);
    journal(&spool.join("a.journal")).append_batch(&lines).unwrap();
    rotating(&target, 200_000, None).drain_spool(&spool).unwrap();
    assert!(tributary::status(&target, None).unwrap().manifest.unwrap().generation > 3);
    let store = d.path().join("cursors.db");
    let args = ["tail", "--target", &s(&target), "--cursor-store", &s(&store), "--name", "consumer"];
    // A consumer process (`tail` with a durable cursor), SIGKILLed at random points of
    // its output and restarted; what it printed before each kill counts as processed.
    // The kill point is a number of bytes the consumer has read (a condition, not a
    // time: on a loaded machine a process may print nothing in a fixed 15 ms), between
    // one line and three of `tail`'s 1000-line checkpoints, so most runs commit a cursor
    // and each run makes progress. After KILLS kills, one run goes to the end.
    const KILLS: usize = 25;
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let (mut seed, mut kills) = (0x9e37_79b9_u64, 0);
    for run in 0..=KILLS {
        let mut child =
            std::process::Command::new(bin()).args(args).stdout(std::process::Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let collector = {
            let read = Arc::clone(&read);
            std::thread::spawn(move || {
                use std::io::Read;
                let (mut b, mut chunk, mut stdout) = (Vec::new(), [0u8; 4096], stdout);
                while let Ok(n) = stdout.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    b.extend_from_slice(&chunk[..n]);
                    read.store(b.len(), Ordering::Release);
                }
                b
            })
        };
        if run < KILLS {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let kill_at = 1 + (seed % 48_000) as usize;
            while read.load(Ordering::Acquire) < kill_at && child.try_wait().unwrap().is_none() {
                std::thread::yield_now();
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
        }
        let status = child.wait().unwrap();
        let out = collector.join().unwrap();
        // A kill can cut the last printed line: only whole lines were "processed".
        let whole = &out[..out.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)];
        seen.extend(whole.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| l.to_vec()));
        if run == KILLS {
            assert!(status.success(), "the last consumer failed: {status:?}");
        }
    }
    assert!(kills >= 3, "only {kills} kills landed");
    // At-least-once: every line processed, in order; repeats only from replays.
    let c = counts(&seen);
    for l in &lines {
        assert!(c.contains_key(l), "line {} never processed", String::from_utf8_lossy(l));
    }
    let mut first_seen = Vec::new();
    let mut set = std::collections::HashSet::new();
    for l in seen {
        if set.insert(l.clone()) {
            first_seen.push(l);
        }
    }
    assert_eq!(first_seen, lines, "order across resumptions");
    // A finished consumer has committed the end: a new run prints nothing.
    let out = cli(&args);
    assert!(out.status.success() && out.stdout.is_empty());
}

#[test]
fn cursor_store_keeps_named_cursors_durably() {
    let d = tmp();
    let p = d.path().join("cursors.db");
    let st = CursorStore::open(&p).unwrap();
    assert_eq!(st.get("a").unwrap(), None);
    st.commit("a", Cursor::at(3, 120)).unwrap();
    st.commit("b", Cursor::at(1, 0)).unwrap();
    st.commit("a", Cursor::at(4, 10)).unwrap();
    drop(st);
    let st = CursorStore::open(&p).unwrap();
    assert_eq!(st.get("a").unwrap(), Some(Cursor::at(4, 10)));
    assert_eq!(st.get("b").unwrap(), Some(Cursor::at(1, 0)));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
}

/// A reader whose generation's file is not open yet (opened at a generation's start)
/// and that sleeps through two rotations — the second with retention deleting its
/// generation — held a manifest older than the files: it opened the target by name,
/// and returned the current generation's lines, and an uncommitted tail behind them,
/// as the deleted generation's (an outside tester: 1,292 lines labelled `1:…`, 1,092 of
/// them uncommitted). A small generation (CRC-checked) stalled 5 s and said
/// "torn_target". Both now say the generation is no longer kept, before reading.
/// A reader opened at the start cursor that has returned nothing yet starts at the
/// oldest generation kept then (`tail --all` racing retention failed "no longer
/// kept": an outside tester), and reads exactly the kept generations' lines.
#[test]
fn a_reader_that_slept_through_retention_of_its_generation_reads_nothing_of_another() {
    for (line_len, rotate_bytes) in [(1_000usize, 1_200_000u64), (40, 2_000)] {
        let d = tmp();
        let (spool, target) = paths(d.path());
        init(&target);
        let j = journal(&spool.join("a.journal"));
        let c = Compactor::new(
            &target,
            CompactorOptions::default().rotate_bytes(Some(rotate_bytes)).retain_generations(Some(1)),
        )
        .unwrap();
        // generation 2 just over the rotation size, generation 1 three times longer: a
        // start reader moving to generation 2 read it with generation 1's chunk size
        // and reported "truncated" (an outside reviewer)
        let per_generation = usize::try_from(rotate_bytes).unwrap() / line_len + 5;
        let fill = |tag: &str, n: usize| {
            let lines: Vec<Vec<u8>> =
                (0..n).map(|i| format!("{tag}-{i:06}-{}", "y".repeat(line_len - 15)).into_bytes()).collect();
            j.append_batch(&lines).unwrap();
            c.drain(std::slice::from_ref(&j)).unwrap();
        };
        fill("gen1", 3 * per_generation);
        let mut r = Reader::open_at(&target, Cursor::at(1, 0)).unwrap();
        let mut from_start = Reader::open_at(&target, Cursor::START).unwrap();
        assert_eq!((r.generation(), from_start.generation()), (1, 1));
        fill("gen2", per_generation); // generation 1 becomes target.1
        fill("gen3", 200); // generation 2 becomes target.2; retention deletes target.1
        let m = tributary::status(&target, None).unwrap().manifest.unwrap();
        assert_eq!((m.generation, m.rotated.keys().copied().collect::<Vec<_>>()), (3, vec![2]), "{line_len}");
        // an uncommitted tail, as a crashed round leaves one
        let mut f = std::fs::OpenOptions::new().append(true).open(&target).unwrap();
        std::io::Write::write_all(&mut f, "uncommitted\n".repeat(100_000).as_bytes()).unwrap();
        let e = match r.next_line() {
            Ok(line) => panic!(
                "{:?} was returned as a line of generation 1",
                line.map(|l| String::from_utf8_lossy(&l[..l.len().min(20)]).into_owned())
            ),
            Err(e) => e,
        };
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{line_len}: {e}");
        assert!(e.to_string().contains("generation 1") && e.to_string().contains("no longer kept"), "{e}");
        let mut read = Vec::new();
        while let Some(line) = from_start.next_line().unwrap() {
            read.push((from_start.line_start().unwrap().generation, String::from_utf8(line).unwrap()));
        }
        let want: Vec<(u64, String)> = [(2, per_generation, "gen2"), (3, 200, "gen3")]
            .iter()
            .flat_map(|&(g, n, tag)| (0..n).map(move |i| (g, format!("{tag}-{i:06}-{}", "y".repeat(line_len - 15)))))
            .collect();
        assert!(read == want, "{line_len}: read {} lines, not generations 2 and 3's {}", read.len(), want.len());
    }
}

/// A copy of a target with its sidecar (a backup read in place: new inodes) was read
/// before today's inode check, which made it wait 5 s and say `target_missing` (an
/// outside reviewer): a manifest read just now that names an inode found at neither
/// path lets the reader open by name, as before.
#[test]
fn a_reader_reads_a_copy_of_a_target_with_its_sidecar() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    init(&target);
    let j = journal(&spool.join("a.journal"));
    j.append_batch(&numbered("copy", 0..50)).unwrap();
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    let copy_dir = d.path().join("backup");
    std::fs::create_dir(&copy_dir).unwrap();
    let ok = std::process::Command::new("cp")
        .args(["-a", &s(&target), &format!("{}.tributary", s(&target))])
        .arg(&copy_dir)
        .status()
        .unwrap();
    assert!(ok.success());
    let copy = copy_dir.join(target.file_name().unwrap());
    let (lines, _) = read_all(&copy, Cursor::START);
    assert_eq!(lines, numbered("copy", 0..50));
}
