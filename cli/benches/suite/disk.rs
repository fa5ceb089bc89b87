//! Target 6: a journal's size on disk (database + -wal) for the payload it holds,
//! after appending and after a checkpoint; then (6b, 6c) after draining half of it and
//! all of it, against `1 MiB + 2 ×` the backlog left (issue 16).

use super::*;

/// Target 6: journal size on disk (db + -wal) after appending and a checkpoint.
pub(crate) fn t6(cfg: &Cfg, rep: &mut Report) -> R<()> {
    section("target 6: journal size on disk / payload at rest");
    let d = cfg.fresh_dir("t6")?;
    let path = d.join("disk.journal");
    let j = Journal::open(&path, JournalOptions::default()).ctx("Journal::open")?;
    let lines = (cfg.disk_bytes / LINE_LEN as u64) as usize;
    let batch = make_lines("disk", 1000);
    let start = Instant::now();
    let mut done = 0;
    while done < lines {
        let n = (lines - done).min(batch.len());
        j.append_batch(&batch[..n]).ctx("append_batch")?;
        done += n;
    }
    let fill = start.elapsed().as_secs_f64();
    j.checkpoint().ctx("Journal::checkpoint")?;
    let [db, wal, shm] = sqlite_files(&path);
    let (db_len, wal_len) = (file_len(&db), file_len(&wal));
    drop(j);
    let closed = file_len(&db) + file_len(&wal);
    let j = Journal::open(&path, JournalOptions::default()).ctx("Journal::open")?;
    let drained = drained_sizes(&d, &j, [&db, &wal, &shm], (lines * LINE_LEN) as u64)?;
    drop(j);
    let payload = (lines * LINE_LEN) as u64;
    let ratio = (db_len + wal_len) as f64 / payload as f64;
    println!(
        "  {} lines in {fill:.1}s; db {} B + wal {} B = {ratio:.3}x payload; after close {} B",
        lines, db_len, wal_len, closed
    );
    rep.targets.push(TargetRow::ratio(
        "6",
        &format!("journal on disk (db + -wal) ÷ payload, {} MB of 100 B lines + checkpoint", payload / 1_000_000),
        format!("{:.1} MB", (db_len + wal_len) as f64 / 1e6),
        format!("payload {:.1} MB", payload as f64 / 1e6),
        ratio,
        Goal::AtMost(1.3),
        "≤ 1.3×",
    ));
    for (id, what, on_disk, backlog) in drained {
        let bound = (MIB + 2 * backlog) as f64;
        rep.targets.push(TargetRow::ratio(
            id,
            &format!("journal files (db + -wal + -shm) {what} ÷ (1 MiB + 2 × backlog left)"),
            format!("{:.2} MB", on_disk as f64 / 1e6),
            format!("backlog {:.1} MB", backlog as f64 / 1e6),
            on_disk as f64 / bound,
            Goal::AtMost(1.0),
            "≤ 1.0×",
        ));
    }
    let _ = fs::remove_dir_all(d);
    Ok(())
}

/// Issue 16: drain the journal (its handle open) half, then whole, and measure
/// its files against `1 MiB + 2 × backlog` each time: `(row, what, bytes, backlog)`.
fn drained_sizes(d: &Path, j: &Journal, files: [&Path; 3], payload: u64) -> R<Vec<(&'static str, String, u64, u64)>> {
    let target = d.join("disk-target.log");
    init_target(&target)?;
    let on_disk = || files.iter().map(|f| file_len(f)).sum::<u64>();
    let mut rows = Vec::new();
    let half =
        Compactor::new(&target, CompactorOptions::default().max_round_bytes(payload / 2)).ctx("Compactor::new")?;
    let start = Instant::now();
    half.drain_round(std::slice::from_ref(j), 0).ctx("draining half")?;
    let half_secs = start.elapsed().as_secs_f64();
    let backlog = j.backlog().ctx("Journal::backlog")?.bytes;
    rows.push(("6b", format!("after draining half of {} MB", payload / 1_000_000), on_disk(), backlog));
    let start = Instant::now();
    half.drain(std::slice::from_ref(j)).ctx("draining the rest")?;
    let rest_secs = start.elapsed().as_secs_f64();
    let backlog = j.backlog().ctx("Journal::backlog")?.bytes;
    rows.push(("6c", format!("after draining all {} MB", payload / 1_000_000), on_disk(), backlog));
    println!(
        "  drained half in {half_secs:.2}s: {} B on disk; the rest in {rest_secs:.2}s: {} B on disk",
        rows[0].2, rows[1].2
    );
    Ok(rows)
}
