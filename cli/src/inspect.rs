//! The read-only subcommands, which take no lock: `status` (committed state, watermarks,
//! the backlog of a spool's journals and its age) and `verify` (the target against its
//! manifest).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use tributary::{status, verify};

use crate::args::existing_target;
use crate::CmdResult;

#[derive(Args)]
pub struct StatusArgs {
    #[arg(long)]
    target: PathBuf,
    #[arg(long)]
    spool: Option<PathBuf>,
}

fn age(ms: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    format!("{:.1}s", (now - ms).max(0) as f64 / 1000.0)
}

pub fn cmd_status(a: StatusArgs) -> CmdResult {
    existing_target(&a.target)?;
    let s = status(&a.target, a.spool.as_deref())?;
    say!("target: {}", s.target.display());
    match &s.manifest {
        None => say!("  not initialised (no manifest): run `tributary init --target {}`", s.target.display()),
        Some(m) => {
            let len = s.target_len.unwrap_or(0);
            say!("  target_id: {}", m.target_id);
            say!("  epoch: {}", m.epoch);
            say!("  generation: {}", m.generation);
            for (g, r) in &m.rotated {
                say!(
                    "    rotated generation {g}: {} ({} bytes, {} lines)",
                    tributary::generation_path(&s.target, *g).display(),
                    r.len,
                    r.lines
                );
            }
            say!("  committed: {} bytes, {} lines, crc {:08x}", m.committed_len, m.committed_lines, m.committed_crc);
            let tail = len.saturating_sub(m.committed_len);
            let covered = m.intent.filter(|i| i.start == m.committed_len).map_or(0, |i| i.max_len);
            let whose = match (tail, covered) {
                (0, _) => "",
                (t, c) if t <= c => ", written by a round in flight or crashed: the next drain removes it",
                _ => ", NOT written by a drain round (foreign bytes): drains refuse them, see README \"Operations\"",
            };
            say!("  file length: {len} bytes (uncommitted tail: {tail} bytes{whose})");
            if let Some(i) = m.intent {
                say!("  intent: a round may be writing {} bytes at offset {}", i.max_len, i.start);
            }
            say!("  watermarks: {}", m.watermarks.len());
            for w in m.watermarks.values() {
                say!("    journal {} up to seq {}", w.journal_id, w.last_seq);
            }
        }
    }
    if let Some(spool) = &a.spool {
        say!("spool: {} ({} journal(s))", spool.display(), s.journals.len());
        for j in &s.journals {
            let waiting = j.backlog.lines.saturating_sub(j.uncommitted_lines);
            say!(
                "  {} id {}: backlog {} line(s), {} byte(s), oldest {}; last seq {}, target has up to {}{}",
                j.path.display(),
                j.journal_id,
                j.uncommitted_lines,
                j.backlog.bytes,
                j.backlog.oldest_append_ms.map_or("-".to_string(), age),
                j.backlog.last_seq,
                j.watermark,
                if waiting > 0 {
                    format!(" ({waiting} more line(s) committed, their rows not deleted from the journal yet)")
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct TargetArg {
    #[arg(long)]
    target: PathBuf,
}

pub fn cmd_verify(a: TargetArg) -> CmdResult {
    let r = verify(&a.target)?;
    if !r.is_consistent() {
        for p in &r.problems {
            eprintln!("tributary verify: INCONSISTENT: {}: {p}", a.target.display());
        }
        return Ok(ExitCode::FAILURE);
    }
    say!(
        "ok: {} matches its manifest (epoch {}, generation {}): {} committed bytes, {} lines, CRC matches{}",
        a.target.display(),
        r.epoch,
        r.generation,
        r.committed_len,
        r.committed_lines,
        if r.rotated_generations > 0 {
            format!("; {} rotated generation(s) match too", r.rotated_generations)
        } else {
            String::new()
        }
    );
    if r.uncommitted_tail_bytes > 0 {
        say!(
            "note: {} uncommitted byte(s) after the committed part (a crashed or running drain); the next drain \
             round truncates them, readers never see them",
            r.uncommitted_tail_bytes
        );
    }
    Ok(ExitCode::SUCCESS)
}
