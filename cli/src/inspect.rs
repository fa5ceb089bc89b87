//! The read-only subcommands, which take no lock: `status` (committed state, watermarks,
//! the backlog of a spool's journals and its age) and `verify` (the target against its
//! manifest).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::json;
use tributary::{status_all, verify, Error, JournalOptions, StatusReport};

use crate::args::existing_target;
use crate::progress::ReadProgress;
use crate::CmdResult;

#[derive(Args)]
pub struct StatusArgs {
    /// The shared target file (on the shared filesystem; its sidecar is `<target>.tributary/`)
    #[arg(long)]
    target: PathBuf,
    /// A spool (a folder of journals, every `*.journal` in it) whose backlog to show
    #[arg(long)]
    spool: Option<PathBuf>,
    /// Print one JSON object instead of text (for monitoring); same exit codes
    #[arg(long)]
    json: bool,
    /// Read the spool's journals on a network filesystem (only if it is really
    /// host-local), as `append`, `drain` and `compact` do with this flag
    #[arg(long)]
    allow_network_fs: bool,
}

fn age(ms: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    format!("{:.1}s", (now - ms).max(0) as f64 / 1000.0)
}

/// What a manifest format means for the hosts that drain the target (status says it:
/// a host on an older build stops at a format-3 target with `corrupt_manifest`).
/// Said by version, which `tributary --version` shows (README "Operations").
fn format_note(format: u32) -> &'static str {
    match format {
        3 => " (deltas; every host that drains it needs tributary 0.2.0 or later — `init --manifest-format 2` for older hosts)",
        2 => " (every commit rewrites every watermark; `init --manifest-format 3` switches once every host runs tributary 0.2.0 or later)",
        1 => " (not upgraded yet: the next drain upgrades it)",
        _ => "",
    }
}

/// The bytes after the committed part, and whether a drain round announced them (its
/// intent covers them) or they are foreign.
fn uncommitted_tail(m: &tributary::Manifest, len: u64) -> (u64, bool) {
    let tail = len.saturating_sub(m.committed_len);
    let covered = m.intent.filter(|i| i.start == m.committed_len).map_or(0, |i| i.max_len);
    (tail, tail > covered)
}

/// What is wrong with a target per its status: a truncated file (shorter than its
/// committed part), or bytes after it that no drain round announced.
fn status_problems(s: &StatusReport) -> Vec<String> {
    let mut problems = spool_problems(s);
    if let Some(lost) = &s.lost_sidecar {
        problems.push(lost.clone());
    }
    if let Some(cut) = &s.committed_part_cut {
        problems.push(cut.clone());
    }
    let Some(m) = &s.manifest else { return problems };
    if let Some(ahead) = m.horizon_ahead_of_clock() {
        problems.push(format!(
            "the target's horizon ({} ms, Unix time) is {} h ahead of this host's clock: a compactor whose clock ran \
             ahead expired journals retired from a host whose clock ran ahead too, and every journal whose first \
             line is older than the horizon is refused as a possible copy (journal_restored) until the clocks pass \
             it. Admit the new ones (`tributary admit`) and fix those hosts' clocks (docs/design.md, \"Journal \
             lifecycle and watermark expiry\")",
            m.horizon,
            ahead.as_secs().div_ceil(3600)
        ));
    }
    match s.target_len {
        None => problems.push(format!(
            "the target file is missing but {} bytes are committed: moved, deleted, or its share is not mounted",
            m.committed_len
        )),
        Some(len) if len < m.committed_len => problems.push(format!(
            "the target is {len} bytes, shorter than its {} committed bytes: truncated behind tributary's back \
             (logrotate copytruncate?); drains refuse it, see README \"Operations\"",
            m.committed_len
        )),
        // (on a view a commit kept changing, the length may hold a newer intent's bytes)
        Some(len) if s.settled => {
            let (tail, foreign) = uncommitted_tail(m, len);
            if foreign {
                problems.push(format!(
                    "{tail} bytes after the committed part were not written by a drain round (foreign bytes): drains \
                     refuse them, see README \"Operations\""
                ));
            }
        }
        Some(_) => {}
    }
    problems
}

/// What the spool says is wrong: files a drain cannot read (a daemon sets them aside),
/// and journals drained into another target, or into this one while it has no
/// manifest (a lost sidecar: `init` would strand their lines).
fn spool_problems(s: &StatusReport) -> Vec<String> {
    let mut problems: Vec<String> = s
        .unreadable
        .iter()
        .map(|u| {
            format!("{} cannot be read (a drain sets it aside and drains the others): {}", u.path.display(), u.message)
        })
        .collect();
    for j in &s.journals {
        // what a drain would refuse it with (a copy, a clone, another target's journal)
        if let Some(refused) = &j.refused {
            problems.push(format!("a drain refuses {}: {refused}", j.path.display()));
            continue;
        }
        // (with a manifest, the drain's own check above judged it)
        if let (Some(into), None) = (&j.drained_into, &s.manifest) {
            problems.push(format!(
                "journal {} records being drained into target {into}, but this target has no manifest: its \
                 sidecar ({}) was lost, or its share is not mounted (or the journal belongs to another target). \
                 If it was this one, do not run `tributary init` (it would make this file a new target, and this \
                 journal's {} undrained line(s) would be refused as foreign): README \"Operations\", a lost \
                 sidecar",
                j.path.display(),
                tributary::Sidecar::for_target(&s.target).dir.display(),
                j.uncommitted_lines
            ));
        }
    }
    problems
}

pub fn cmd_status(a: StatusArgs) -> CmdResult {
    let s = existing_target(&a.target).and_then(|()| {
        status_all(&a.target, a.spool.as_deref(), &JournalOptions::default().allow_network_fs(a.allow_network_fs))
    });
    let s = s.inspect_err(|e| json_error(a.json, &a.target, e))?;
    let problems = status_problems(&s);
    if a.json {
        say!("{}", status_json(&s, &problems));
    } else {
        status_text(&s, a.spool.as_deref(), &problems);
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// With `--json`, an error that stopped `status` or `verify` is one JSON object on
/// stdout too (`ok` false, `error` {kind, message}, the message in `problems`), before
/// the usual message on stderr: a monitor parsing stdout got nothing when the lock
/// file was gone or the path did not exist (an outside tester).
fn json_error(json: bool, target: &Path, e: &Error) {
    if json {
        say!(
            "{}",
            json!({
                "target": target.display().to_string(),
                "ok": false,
                "consistent": false,
                "error": {"kind": e.kind().name(), "message": e.to_string()},
                "problems": [e.to_string()],
            })
        );
    }
}

fn status_json(s: &StatusReport, problems: &[String]) -> serde_json::Value {
    let journals: Vec<_> = s
        .journals
        .iter()
        .map(|j| {
            json!({
                "path": j.path.display().to_string(),
                "journal_id": j.journal_id.to_hex(),
                "uncommitted_lines": j.uncommitted_lines,
                "backlog_lines": j.backlog.lines,
                "backlog_bytes": j.backlog.bytes,
                "oldest_append_ms": j.backlog.oldest_append_ms,
                "last_seq": j.backlog.last_seq,
                "drained_seq": j.backlog.drained_seq,
                "watermark": j.watermark,
                "drained_into": j.drained_into,
                "refused": j.refused,
            })
        })
        .collect();
    let manifest = s.manifest.as_ref().map(|m| {
        json!({
            "target_id": m.target_id,
            "manifest_format": s.manifest_format,
            "epoch": m.epoch,
            "generation": m.generation,
            "committed_len": m.committed_len,
            "committed_lines": m.committed_lines,
            "committed_crc": format!("{:08x}", m.committed_crc),
            "intent": m.intent.map(|i| json!({"start": i.start, "max_len": i.max_len})),
            "rotated": m.rotated.iter().map(|(g, r)| json!({
                "generation": g,
                "path": tributary::generation_path(&s.target, *g).display().to_string(),
                "len": r.len,
                "lines": r.lines,
            })).collect::<Vec<_>>(),
            "watermarks": m.watermarks.values().map(|w| json!({
                "journal_id": w.journal_id.to_string(),
                "last_seq": w.last_seq,
            })).collect::<Vec<_>>(),
        })
    });
    json!({
        "target": s.target.display().to_string(),
        "initialised": s.manifest.is_some(),
        "target_len": s.target_len,
        "manifest": manifest,
        "journals": journals,
        "unreadable_journals": s.unreadable.iter().map(|u| json!({
            "path": u.path.display().to_string(),
            "kind": u.kind.name(),
            "message": u.message,
        })).collect::<Vec<_>>(),
        "problems": problems,
        "ok": problems.is_empty(),
        "settled": s.settled,
    })
}

fn status_text(s: &StatusReport, spool: Option<&std::path::Path>, problems: &[String]) {
    say!("target: {}", s.target.display());
    if !s.settled {
        say!(
            "  (a commit came during each of status's reads: the bytes past the committed part and the committed \
             part's end were not judged; run it again)"
        );
    }
    match &s.manifest {
        None if s.lost_sidecar.is_some() => {
            say!("  no manifest, yet the file holds bytes and its sidecar folder is there: see PROBLEM below");
        }
        None => {
            say!("  not initialised (no manifest): run `tributary init --target {}`", s.target.display());
            if let Some(len) = s.target_len.filter(|&l| l > 0) {
                say!(
                    "  the file has {len} bytes: init adopts its whole lines as committed. If tributary drained into \
                     it before, its sidecar was lost: do not run init, see README \"Operations\" (a lost sidecar)"
                );
            }
        }
        Some(m) => {
            let len = s.target_len.unwrap_or(0);
            say!("  target_id: {}", m.target_id);
            if let Some(format) = s.manifest_format {
                say!("  manifest format: {format}{}", format_note(format));
            }
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
            let (tail, foreign) = uncommitted_tail(m, len);
            let whose = match (tail, foreign) {
                (0, _) => "",
                (_, false) => ", written by a round in flight or crashed: the next drain removes it",
                (_, true) => {
                    ", NOT written by a drain round (foreign bytes): drains refuse them, see README \"Operations\""
                }
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
    if let Some(spool) = spool {
        // (a journal that could not be read is a PROBLEM below, not one of these: "0
        // journal(s)" beside it read as an empty spool: an outside tester)
        let unreadable =
            if s.unreadable.is_empty() { String::new() } else { format!(", {} unreadable", s.unreadable.len()) };
        say!("spool: {} ({} journal(s) read{unreadable})", spool.display(), s.journals.len());
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
                if j.refused.is_some() {
                    " — refused by drains: the target's watermark does not speak for its lines (see PROBLEM below)"
                        .to_string()
                } else if waiting > 0 {
                    format!(" ({waiting} more line(s) committed, their rows not deleted from the journal yet)")
                } else {
                    String::new()
                }
            );
        }
    }
    for p in problems {
        say_err!("tributary status: PROBLEM: {}: {p}", s.target.display());
    }
}

#[derive(Args)]
pub struct TargetArg {
    /// The shared target file (on the shared filesystem; its sidecar is `<target>.tributary/`)
    #[arg(long)]
    target: PathBuf,
    /// Print one JSON object instead of text (for monitoring); same exit codes
    #[arg(long)]
    json: bool,
}

pub fn cmd_verify(a: TargetArg) -> CmdResult {
    // On a terminal: bytes read so far of every committed byte (each generation kept)
    let progress = std::io::stderr().is_terminal().then(|| {
        let m = tributary::status(&a.target, None).ok().and_then(|s| s.manifest);
        let total = m.map_or(0, |m| m.committed_len + m.rotated.values().map(|r| r.len).sum::<u64>());
        ReadProgress::start("verify", total)
    });
    let r = verify(&a.target);
    drop(progress);
    let r = r.inspect_err(|e| json_error(a.json, &a.target, e))?;
    if a.json {
        say!(
            "{}",
            json!({
                "target": a.target.display().to_string(),
                "consistent": r.is_consistent(),
                "epoch": r.epoch,
                "generation": r.generation,
                "rotated_generations": r.rotated_generations,
                "committed_len": r.committed_len,
                "committed_lines": r.committed_lines,
                "target_len": r.target_len,
                "uncommitted_tail_bytes": r.uncommitted_tail_bytes,
                "problems": r.problems,
            })
        );
        return Ok(if r.is_consistent() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    if !r.is_consistent() {
        for p in &r.problems {
            say_err!("tributary verify: INCONSISTENT: {}: {p}", a.target.display());
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
