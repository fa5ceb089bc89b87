//! What a trial checks besides the checker's verdict (`verify`, emptied journals), and
//! the `--sabotage` self-test of the checker.

use std::path::Path;

use crate::common::WriterSpec;

use super::Outcome;

/// `verify` clean with no tail left, committed line count = lines found, journals empty.
pub(super) fn check_consistency(target: &Path, writers: &[WriterSpec], o: &mut Outcome) {
    match tributary::verify(target) {
        Ok(v) => {
            o.problems.extend(v.problems.iter().map(|p| format!("verify: {p}")));
            if v.uncommitted_tail_bytes != 0 {
                o.problems.push(format!("{} uncommitted bytes left after a clean drain", v.uncommitted_tail_bytes));
            }
            if v.committed_lines != o.check.lines {
                o.problems.push(format!(
                    "manifest says {} committed lines, the target has {}",
                    v.committed_lines, o.check.lines
                ));
            }
        }
        Err(e) => o.problems.push(format!("verify failed to run: {e}")),
    }
    for w in writers {
        if !w.journal.exists() {
            continue;
        }
        match tributary::Journal::open(&w.journal, tributary::JournalOptions::default()).and_then(|j| j.backlog()) {
            Ok(b) if b.lines == 0 && b.drained_seq == b.last_seq => {}
            Ok(b) => o.problems.push(format!(
                "journal {} still holds {} line(s) (drained to {}, last seq {}) after the final drain",
                w.journal.display(),
                b.lines,
                b.drained_seq,
                b.last_seq
            )),
            Err(e) => o.problems.push(format!("opening {}: {e}", w.journal.display())),
        }
    }
}

/// Damage a copy of the target's bytes (self-test of the checker, `--sabotage`).
pub(super) fn sabotage(bytes: &[u8], how: &str) -> Vec<u8> {
    let first_end = bytes.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
    match how {
        "drop" => bytes[first_end..].to_vec(),
        "duplicate" => [bytes, &bytes[..first_end]].concat(),
        "tear" => [&bytes[..first_end.saturating_sub(3)], b"\n", &bytes[first_end..]].concat(),
        other => panic!("unknown --sabotage {other} (drop | duplicate | tear)"),
    }
}
