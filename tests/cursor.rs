//! A cursor names one position of one target (design rule 7, issue 12 item 12): a
//! line's identity (its start) is the same whether it is read before or after the
//! rotation of its generation, so results keyed by it do not duplicate at a generation
//! boundary; a cursor carries its target's id and a reader of another target refuses
//! it; the bare `generation:offset` text of earlier versions is still read.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use tributary::{Compactor, CompactorOptions, Cursor, CursorStore, ErrorKind, Journal, Reader};

/// Rotate the current generation at the start of every round that finds it non-empty.
fn rotating(target: &Path) -> Compactor {
    Compactor::new(target, CompactorOptions::default().rotate_bytes(Some(1))).unwrap()
}

/// Create a target (drains never create one).
fn init(target: &Path) {
    compactor(target).init().unwrap();
}

fn target_id(target: &Path) -> String {
    tributary::status(target, None).unwrap().manifest.unwrap().target_id
}

/// Every committed line from the start, each with where it starts.
fn lines_with_starts(target: &Path) -> Vec<(Vec<u8>, Cursor)> {
    let mut r = Reader::open_at(target, Cursor::START).unwrap();
    let mut out = Vec::new();
    while let Some(l) = r.next_line().unwrap() {
        out.push((l, r.line_start().unwrap()));
    }
    out
}

#[test]
fn a_line_has_the_same_start_whether_read_before_or_after_its_generation_rotates() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let j = journal(&spool.join("a.journal"));
    let lines = numbered("line", 0..6); // 12 bytes each with their `\n`
    j.append_batch(&lines[..3]).unwrap();
    init(&target);
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    // A reader reads the whole of generation 1 while it is the current one...
    let mut early = Reader::open_at(&target, Cursor::START).unwrap();
    let mut seen_early = Vec::new();
    while let Some(l) = early.next_line().unwrap() {
        seen_early.push((l, early.line_start().unwrap()));
    }
    assert_eq!(early.cursor().generation, 1, "generation 1 is still the current one");
    // ...then a drain rotates it (the next lines go into generation 2), and the same
    // reader goes on.
    j.append_batch(&lines[3..]).unwrap();
    assert_eq!(rotating(&target).drain(std::slice::from_ref(&j)).unwrap().rotations, 1);
    while let Some(l) = early.next_line().unwrap() {
        seen_early.push((l, early.line_start().unwrap()));
    }
    // A fresh reader after the rotation sees every line with the same start.
    let seen_late = lines_with_starts(&target);
    assert_eq!(seen_late.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>(), lines);
    assert_eq!(seen_early, seen_late, "a line's start differs between a reader before and one after the rotation");
    // The first line of generation 2 starts at 2:0, never at the end of generation 1,
    // and every start carries the target's id.
    let id = target_id(&target);
    assert_eq!(seen_late[3].1.to_string(), format!("{id}:2:0"));
    assert!(seen_late.iter().all(|(_, c)| c.target_id.map(|t| t.to_hex()) == Some(id.clone())));
    assert!(tributary::verify(&target).unwrap().is_consistent());
}

#[test]
fn a_reader_that_learns_of_a_rotation_by_refreshing_moves_its_cursor_to_the_next_generation() {
    let d = tmp();
    let (spool, target) = paths(d.path());
    let j = journal(&spool.join("a.journal"));
    j.append_batch(&numbered("line", 0..3)).unwrap();
    init(&target);
    compactor(&target).drain(std::slice::from_ref(&j)).unwrap();
    let mut r = Reader::open_at(&target, Cursor::START).unwrap();
    while r.next_line().unwrap().is_some() {}
    assert_eq!((r.cursor().generation, r.cursor().offset), (1, 36));
    j.append(b"into generation 2").unwrap();
    rotating(&target).drain(std::slice::from_ref(&j)).unwrap();
    // Generation 1 is rotated and the reader is at its end: once the reader has read
    // the manifest that says so, its cursor is the start of generation 2 (what a
    // reader opened after the rotation would say), not `1:36`.
    assert_eq!(r.refresh().unwrap(), 18, "the committed length of generation 2");
    assert_eq!((r.cursor().generation, r.cursor().offset), (2, 0));
    assert_eq!(r.next_line().unwrap().unwrap(), b"into generation 2");
}

/// The exactly-once pipeline of `examples/pipeline`: a processor follows source A
/// from a durable cursor and appends one result per line to its own journal, keyed by
/// the line's start in A; a crash between the results and the cursor's commit replays
/// lines, and the keys make the replay store nothing. Here the processor reads the
/// first lines after a rotation it has not seen yet, and is killed before committing.
#[test]
fn results_keyed_by_line_start_do_not_duplicate_across_a_rotation() {
    let d = tmp();
    let (spool, a) = paths(d.path());
    let out_spool = d.path().join("spool-processor");
    std::fs::create_dir_all(&out_spool).unwrap();
    let b = d.path().join("shared").join("results.log");
    let store_path = d.path().join("processor.cursors");
    let src = journal(&spool.join("events.journal"));
    let events = numbered("event", 0..6);
    src.append_batch(&events[..3]).unwrap();
    init(&a);
    init(&b);
    compactor(&a).drain(std::slice::from_ref(&src)).unwrap();

    let results = journal(&out_spool.join("results.journal"));
    let store = CursorStore::open(&store_path).unwrap();
    // Process what is committed; `commit` false: killed before committing the cursor.
    let process = |reader: &mut Reader, commit: bool| {
        let mut items = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            let key = format!("A:{}", reader.line_start().unwrap());
            items.push((key, format!("processed {}", String::from_utf8_lossy(&line))));
        }
        if !items.is_empty() {
            results.append_batch_keyed(&items).unwrap();
        }
        if commit {
            store.commit("processor", reader.cursor()).unwrap();
        }
    };

    // Run 1 processes generation 1 and commits; then A's generation 1 is rotated and
    // more events arrive; run 1 processes them and is killed before its commit.
    let mut run1 = Reader::open_at(&a, store.get("processor").unwrap().unwrap_or(Cursor::START)).unwrap();
    process(&mut run1, true);
    src.append_batch(&events[3..]).unwrap();
    assert_eq!(rotating(&a).drain(std::slice::from_ref(&src)).unwrap().rotations, 1);
    process(&mut run1, false);
    drop(run1);
    // Run 2 restarts from the durable cursor and replays the uncommitted events.
    let mut run2 = Reader::open_at(&a, store.get("processor").unwrap().unwrap()).unwrap();
    process(&mut run2, true);

    compactor(&b).drain(std::slice::from_ref(&results)).unwrap();
    let expected: Vec<Vec<u8>> =
        events.iter().map(|e| format!("processed {}", String::from_utf8_lossy(e)).into_bytes()).collect();
    assert_exactly(&b, &expected);
}

/// Two targets, each drained with the same lines (so that an offset in one is a line
/// start in the other too: a wrong cursor would silently skip lines).
fn two_targets(d: &Path) -> (PathBuf, PathBuf, Vec<Vec<u8>>) {
    let (spool, a) = paths(d);
    let b = d.join("shared").join("other.log");
    let lines = numbered("line", 0..5);
    for (t, name) in [(&a, "a"), (&b, "b")] {
        let j = Journal::open(spool.join(format!("{name}.journal")), Default::default()).unwrap();
        j.append_batch(&lines).unwrap();
        init(t);
        compactor(t).drain(std::slice::from_ref(&j)).unwrap();
    }
    (a, b, lines)
}

#[test]
fn a_cursor_kept_for_one_target_is_refused_by_a_reader_of_another() {
    let d = tmp();
    let (a, b, lines) = two_targets(d.path());
    let (id_a, id_b) = (target_id(&a), target_id(&b));
    assert_ne!(id_a, id_b);
    let mut r = Reader::open_at(&a, Cursor::START).unwrap();
    r.next_line().unwrap().unwrap();
    r.next_line().unwrap().unwrap();
    let kept = r.cursor();
    assert!(kept.to_string().starts_with(&id_a), "{kept}");
    let e = Reader::open_at(&b, kept).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("belongs to target {id_a}")), "{msg}");
    assert!(msg.contains(&format!("{} is target {id_b}", b.display())), "{msg}");
    assert!(msg.contains("cannot be used on another"), "{msg}");
    // The same through its text and through a CursorStore.
    let e = Reader::open_at(&b, kept.to_string().parse().unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let store = CursorStore::open(d.path().join("cursors.db")).unwrap();
    store.commit("consumer", kept).unwrap();
    drop(store);
    let store = CursorStore::open(d.path().join("cursors.db")).unwrap();
    assert_eq!(store.get("consumer").unwrap(), Some(kept));
    let e = Reader::open_at(&b, store.get("consumer").unwrap().unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    // Nothing of B was skipped or consumed: B from its start has every line, and A's
    // cursor still works on A.
    let mut rb = Reader::open_at(&b, Cursor::START).unwrap();
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| rb.next_line().unwrap()).collect();
    assert_eq!(got, lines);
    let mut ra = Reader::open_at(&a, kept).unwrap();
    assert_eq!(ra.next_line().unwrap().unwrap(), lines[2]);
}

#[test]
fn a_reader_opened_before_the_target_exists_learns_the_id_and_then_checks_it() {
    let d = tmp();
    let (a, _, _) = two_targets(d.path());
    let (spool, _) = paths(d.path());
    let fresh = d.path().join("shared").join("fresh.log");
    // A reader of a target with no manifest yet (not initialised, never drained) has
    // no id to give...
    let mut r = Reader::open_at(&fresh, Cursor::START).unwrap();
    assert_eq!(r.cursor().target_id, None);
    assert!(r.next_line().unwrap().is_none());
    // ...and one opened there at another target's cursor cannot be checked yet.
    let foreign = Reader::open_at(&a, Cursor::START).unwrap().cursor();
    assert_eq!((foreign.generation, foreign.offset), (1, 0));
    let mut wrong = Reader::open_at(&fresh, foreign).unwrap();
    let j = journal(&spool.join("fresh.journal"));
    j.append(b"first").unwrap();
    init(&fresh);
    compactor(&fresh).drain(std::slice::from_ref(&j)).unwrap();
    // Once the target exists, the first reader learns its id...
    assert_eq!(r.next_line().unwrap().unwrap(), b"first");
    let id = target_id(&fresh);
    assert_eq!(r.cursor().to_string(), format!("{id}:1:6"));
    assert_eq!(r.line_start().unwrap().to_string(), format!("{id}:1:0"));
    // ...and the other finds that its cursor was another target's.
    let e = wrong.next_line().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("belongs to target"), "{e}");
}

#[test]
fn cursor_text_carries_the_target_id_and_the_legacy_form_still_parses() {
    let id = "0123456789abcdef0123456789abcdef";
    let c: Cursor = format!("{id}:3:1024").parse().unwrap();
    assert_eq!((c.generation, c.offset, c.target_id.unwrap().to_hex()), (3, 1024, id.to_string()));
    assert_eq!(c.to_string(), format!("{id}:3:1024"));
    let upper: Cursor = format!("{}:3:1024", id.to_uppercase()).parse().unwrap();
    assert_eq!(upper, c);
    // Legacy: no id (cannot be checked), prints as it was.
    let legacy: Cursor = "3:1024".parse().unwrap();
    assert_eq!(legacy, Cursor::at(3, 1024));
    assert_eq!(legacy.target_id, None);
    assert_eq!(legacy.to_string(), "3:1024");
    assert_eq!("0:0".parse::<Cursor>().unwrap(), Cursor::START);
    assert_eq!(Cursor::START.to_string(), "0:0");
    for bad in [
        "",
        "3",
        "3:",
        ":3",
        "a:1",
        "1:2:3:4",
        "+1:2",
        "-1:0",
        "1:18446744073709551616",
        "0:5",
        "0123456789abcdef0123456789abcde:1:0",
        "0123456789abcdef0123456789abcdeg:1:0",
        "0123456789abcdef0123456789abcdef0:1:0",
    ] {
        let e = bad.parse::<Cursor>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}: {e}");
    }
}

#[test]
fn a_legacy_cursor_is_accepted_on_any_target_and_comes_back_with_the_id() {
    let d = tmp();
    let (a, _, lines) = two_targets(d.path());
    let mut r = Reader::open_at(&a, "1:12".parse().unwrap()).unwrap();
    assert_eq!(r.next_line().unwrap().unwrap(), lines[1]);
    assert_eq!(r.cursor().to_string(), format!("{}:1:24", target_id(&a)));
    // The CLI reads both forms too.
    let out = cli(&["tail", "--target", &s(&a), "--cursor", "1:48"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, [lines[4].clone(), b"\n".to_vec()].concat());
    let kept = format!("{}:1:48", target_id(&a));
    let out = cli(&["tail", "--target", &s(&a), "--cursor", &kept]);
    assert_eq!(out.stdout, [lines[4].clone(), b"\n".to_vec()].concat());
    let other = d.path().join("shared").join("other.log");
    let out = cli(&["tail", "--target", &s(&other), "--cursor", &kept]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to target"), "{out:?}");
}

#[test]
fn a_cursor_store_made_before_target_ids_is_upgraded_and_its_rows_load_as_legacy() {
    let d = tmp();
    let (a, b, _) = two_targets(d.path());
    let path = d.path().join("old.cursors");
    {
        // The schema and a row as an earlier version wrote them.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE cursors (name TEXT PRIMARY KEY, generation INTEGER NOT NULL, offset INTEGER NOT NULL,
                                   updated_ms INTEGER NOT NULL);
             INSERT INTO cursors VALUES ('old', 1, 24, 0);",
        )
        .unwrap();
    }
    let store = CursorStore::open(&path).unwrap();
    assert_eq!(store.get("old").unwrap(), Some(Cursor::at(1, 24)));
    // A legacy cursor opens on any target; committed again, it carries the id.
    let r = Reader::open_at(&a, store.get("old").unwrap().unwrap()).unwrap();
    store.commit("old", r.cursor()).unwrap();
    drop(store);
    let store = CursorStore::open(&path).unwrap(); // a second open finds the column there
    let kept = store.get("old").unwrap().unwrap();
    assert_eq!(kept.to_string(), format!("{}:1:24", target_id(&a)));
    assert_eq!(Reader::open_at(&b, kept).unwrap_err().kind(), ErrorKind::InvalidArgument);
}
