//! Target 6: a journal's size on disk (database + -wal) for the payload it holds,
//! after appending and after a checkpoint.

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
    let [db, wal, _] = sqlite_files(&path);
    let (db_len, wal_len) = (file_len(&db), file_len(&wal));
    drop(j);
    let closed = file_len(&db) + file_len(&wal);
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
    let _ = fs::remove_dir_all(d);
    Ok(())
}
