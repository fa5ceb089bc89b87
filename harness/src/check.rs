//! The exactly-once checker: a target's bytes (its generations, oldest first) against
//! what each writer was told is durable (its ack file). The demo, the torture trials,
//! the multi-host soak, the daemon soak and the power cuts all judge with it.
//!
//! What it demands ([`Verdict::exactly_once`] is true only if every count here is 0):
//! - every acknowledged line is in the target exactly once: not missing (`lost`: its
//!   journal already deleted it, gone for good; `held`: still in its journal, a drain
//!   left it behind), not twice (`duplicated`, each extra copy);
//! - each writer's lines in index order (`out_of_order`: a line not after every earlier
//!   line of its writer — a duplicate is one too);
//! - nothing torn or foreign (`torn`): every line is byte for byte the line its
//!   `w<w> <i:08> ` prefix names in this run, of a writer the run has, with an index that
//!   writer attempted (`1..=lines`); bytes after the last `\n` are a torn line.
//!
//! A line a writer attempted but was never told is durable (killed between its append's
//! commit and its ack) may be missing, or present once — in order, untorn, never twice:
//! `unacked_present` counts those, and is not a failure.
//!
//! What a run may declare in [`Allow`], and nothing else, loosens this: a pre-existing
//! first line (`header`), acknowledged lines of `normal`-durability writers lost to a
//! power cut (`normal_missing`), and lines in generations that retention deleted
//! (`rotated_out`).

use std::collections::{BTreeMap, HashMap};

use crate::line::{parse_prefix, Lines};

/// One writer of a run, as the checker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    pub id: u32,
    /// It appends (attempts) line indexes `1..=lines`, no other.
    pub lines: u64,
    /// Its acknowledged `(index, seq)` records ([`crate::ack::read`]).
    pub acked: Vec<(u64, u64)>,
    /// The seq up to which its journal says it was drained (rows up to it deleted): a
    /// missing acknowledged line at or below it is `lost`, above it `held`.
    /// `u64::MAX` when not known (every missing line is `lost`).
    pub drained_seq: u64,
    /// Its appends were `full` durability (`normal` ones may be lost to a power cut,
    /// and only to one: [`Allow::power_cut`]).
    pub full: bool,
}

/// What a run may show besides exactly-once, declared by the run. The default allows
/// nothing.
#[derive(Debug, Clone, Default)]
pub struct Allow<'a> {
    /// A line the target held before any writer (adopted by `init`): allowed once, as
    /// the very first line; anywhere else it is foreign.
    pub header: Option<&'a [u8]>,
    /// The machine lost power: acknowledged lines of `normal`-durability writers may be
    /// missing (`normal_missing`). Never a `full` one's.
    pub power_cut: bool,
    /// Retention deleted old generations: a writer's acknowledged lines below the first
    /// of its lines still present may be gone with them (`rotated_out`).
    pub retention_gap: bool,
}

/// What the checker found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Lines in the target (every `\n`-terminated one, a header included).
    pub lines: u64,
    /// Acknowledged lines (distinct indexes of every ack file).
    pub acked: u64,
    /// Of those, acknowledged to `normal`-durability writers.
    pub acked_normal: u64,
    pub lost: u64,
    pub held: u64,
    pub duplicated: u64,
    pub torn: u64,
    pub out_of_order: u64,
    /// Attempted, unacknowledged lines present (once each): allowed.
    pub unacked_present: u64,
    /// Allowed by [`Allow::power_cut`].
    pub normal_missing: u64,
    /// Allowed by [`Allow::retention_gap`].
    pub rotated_out: u64,
}

impl Verdict {
    /// Every acknowledged line exactly once, in order, nothing torn or foreign (with what
    /// the run's [`Allow`] declared).
    pub fn exactly_once(&self) -> bool {
        self.lost == 0 && self.held == 0 && self.duplicated == 0 && self.torn == 0 && self.out_of_order == 0
    }

    pub fn add(&mut self, o: &Verdict) {
        self.lines += o.lines;
        self.acked += o.acked;
        self.acked_normal += o.acked_normal;
        self.lost += o.lost;
        self.held += o.held;
        self.duplicated += o.duplicated;
        self.torn += o.torn;
        self.out_of_order += o.out_of_order;
        self.unacked_present += o.unacked_present;
        self.normal_missing += o.normal_missing;
        self.rotated_out += o.rotated_out;
    }

    /// `key=value` fields of the counts that decide (and `unacked_present`).
    pub fn summary(&self) -> String {
        format!(
            "target_lines={} acked={} lost={} held={} duplicated={} torn={} out_of_order={} unacked_present={}",
            self.lines,
            self.acked,
            self.lost,
            self.held,
            self.duplicated,
            self.torn,
            self.out_of_order,
            self.unacked_present
        )
    }
}

/// Check `generations` (the target's files, oldest first; one for an unrotated target)
/// of a run whose lines are `set` against its `writers`.
pub fn check(set: &Lines, generations: &[&[u8]], writers: &[Writer], allow: &Allow) -> Verdict {
    let mut v = Verdict::default();
    let by_id: HashMap<u32, &Writer> = writers.iter().map(|w| (w.id, w)).collect();
    // (writer, index) -> copies present; writer -> highest index seen so far
    let mut count: HashMap<(u32, u64), u32> = HashMap::new();
    let mut last: HashMap<u32, u64> = HashMap::new();
    let mut first_line = true;
    for bytes in generations {
        let (body, tail) = match bytes.iter().rposition(|&b| b == b'\n') {
            Some(p) => (&bytes[..=p], &bytes[p + 1..]),
            None => (&bytes[..0], *bytes),
        };
        if !tail.is_empty() {
            v.torn += 1; // bytes after the last newline: a torn line, whatever they are
        }
        let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
        lines.pop(); // the empty piece after the final '\n'
        for line in lines {
            v.lines += 1;
            if std::mem::replace(&mut first_line, false) && allow.header == Some(line) {
                continue;
            }
            let known = parse_prefix(line).filter(|(w, i)| by_id.get(w).is_some_and(|s| (1..=s.lines).contains(i)));
            match known {
                Some((w, i)) if line == set.line(w, i).as_slice() => {
                    let n = count.entry((w, i)).or_default();
                    *n += 1;
                    if *n > 1 {
                        v.duplicated += 1;
                    }
                    let l = last.entry(w).or_default();
                    if i <= *l {
                        v.out_of_order += 1;
                    }
                    *l = (*l).max(i);
                }
                _ => v.torn += 1,
            }
        }
    }
    for w in writers {
        // one ack per index (the first, should a file name one twice)
        let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
        for &(i, seq) in &w.acked {
            acked.entry(i).or_insert(seq);
        }
        let first_present = count.keys().filter(|(id, _)| *id == w.id).map(|(_, i)| *i).min();
        for (&i, &seq) in &acked {
            v.acked += 1;
            if !w.full {
                v.acked_normal += 1;
            }
            if count.contains_key(&(w.id, i)) {
                continue;
            }
            if allow.retention_gap && first_present.is_none_or(|f| i < f) {
                v.rotated_out += 1;
            } else if allow.power_cut && !w.full {
                v.normal_missing += 1;
            } else if seq <= w.drained_seq {
                v.lost += 1;
            } else {
                v.held += 1;
            }
        }
        v.unacked_present += count.keys().filter(|(id, i)| *id == w.id && !acked.contains_key(i)).count() as u64;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: u64 = 42;

    fn set() -> Lines {
        Lines::any_bytes(RUN)
    }

    /// Writer `id` attempting `lines` lines, acknowledged `acked` (index = seq),
    /// durable, its journal drained past all of them.
    fn w(id: u32, lines: u64, acked: &[u64]) -> Writer {
        Writer { id, lines, acked: acked.iter().map(|&i| (i, i)).collect(), drained_seq: u64::MAX, full: true }
    }

    fn target(lines: &[(u32, u64)]) -> Vec<u8> {
        let mut t = Vec::new();
        for &(w, i) in lines {
            t.extend(set().line(w, i));
            t.push(b'\n');
        }
        t
    }

    fn run(t: &[u8], ws: &[Writer]) -> Verdict {
        check(&set(), &[t], ws, &Allow::default())
    }

    fn two() -> Vec<Writer> {
        vec![w(1, 3, &[1, 2, 3]), w(2, 2, &[1, 2])]
    }

    const GOOD: &[(u32, u64)] = &[(1, 1), (2, 1), (1, 2), (2, 2), (1, 3)];

    #[test]
    fn every_acknowledged_line_once_in_order_passes() {
        let v = run(&target(GOOD), &two());
        assert!(v.exactly_once(), "{v:?}");
        assert_eq!(v, Verdict { lines: 5, acked: 5, ..Verdict::default() });
        // nothing written, nothing acknowledged: passes too
        assert!(run(b"", &[w(1, 3, &[])]).exactly_once());
    }

    #[test]
    fn a_missing_line_whose_journal_deleted_it_is_lost() {
        let v = run(&target(&[(1, 1), (2, 1), (2, 2), (1, 3)]), &two());
        assert_eq!((v.lost, v.held), (1, 0), "{v:?}");
        assert!(!v.exactly_once());
        // nothing in the target at all
        let v = run(b"", &two());
        assert_eq!(v.lost, 5);
        assert!(!v.exactly_once());
    }

    #[test]
    fn a_missing_line_still_in_its_journal_is_held_and_fails_too() {
        let mut ws = two();
        ws[0].drained_seq = 1; // writer 1's line 2 (seq 2) was never drained
        let v = run(&target(&[(1, 1), (2, 1), (2, 2), (1, 3)]), &ws);
        assert_eq!((v.lost, v.held), (0, 1), "{v:?}");
        assert!(!v.exactly_once());
    }

    #[test]
    fn a_second_copy_is_duplicated_and_out_of_order() {
        let mut t = target(GOOD);
        t.extend(target(&[(2, 2)]));
        let v = run(&t, &two());
        assert_eq!((v.duplicated, v.out_of_order, v.lost), (1, 1, 0), "{v:?}");
        assert!(!v.exactly_once());
    }

    #[test]
    fn lines_of_a_writer_out_of_index_order_fail() {
        let v = run(&target(&[(1, 2), (1, 1), (2, 1), (2, 2), (1, 3)]), &two());
        assert_eq!((v.out_of_order, v.duplicated, v.lost), (1, 0, 0), "{v:?}");
        assert!(!v.exactly_once());
        // every line behind a later one counts, not only the first step back
        let ws = [w(1, 5, &[1, 2, 3, 4, 5])];
        let v = run(&target(&[(1, 1), (1, 5), (1, 2), (1, 3), (1, 4)]), &ws);
        assert_eq!(v.out_of_order, 3, "{v:?}");
    }

    #[test]
    fn a_cut_or_altered_line_is_torn() {
        let good = target(GOOD);
        let mut cut = good.clone();
        cut.remove(set().line(1, 1).len() - 1); // the first line loses its last byte
        let v = run(&cut, &two());
        assert_eq!(v.torn, 1, "{v:?}");
        assert!(!v.exactly_once());
        let mut altered = good.clone();
        altered[14] ^= 0x01; // a payload byte, the prefix intact
        let v = run(&altered, &two());
        assert!(v.torn >= 1 && !v.exactly_once(), "{v:?}");
        let v = run(&[&good[..], b"garbage\n"].concat(), &two());
        assert_eq!(v.torn, 1);
    }

    #[test]
    fn bytes_after_the_last_newline_are_torn_even_a_whole_line() {
        let mut t = target(GOOD);
        t.extend_from_slice(b"w1 00000004 partial");
        assert_eq!(run(&t, &[w(1, 4, &[1, 2, 3]), w(2, 2, &[1, 2])]).torn, 1);
        // the last line complete but for its '\n' is not a line of the target
        let mut t = target(GOOD);
        t.pop();
        let v = run(&t, &two());
        assert_eq!((v.torn, v.lines), (1, 4), "{v:?}");
        assert!(!v.exactly_once());
    }

    #[test]
    fn lines_nobody_attempted_are_foreign() {
        let ws = two();
        // another run's lines
        let other = Lines::any_bytes(RUN + 1);
        let mut t = target(GOOD);
        t.extend(other.line(1, 1));
        t.push(b'\n');
        assert_eq!(run(&t, &ws).torn, 1);
        // a writer the run does not have, though its line is the run's line
        let v = run(&[target(GOOD), target(&[(3, 1)])].concat(), &ws);
        assert_eq!(v.torn, 1, "{v:?}");
        // an index beyond what the writer ever appends, or 0
        assert_eq!(run(&[target(GOOD), target(&[(1, 4)])].concat(), &ws).torn, 1);
        assert_eq!(run(&[target(GOOD), target(&[(1, 0)])].concat(), &ws).torn, 1);
    }

    #[test]
    fn attempted_unacknowledged_lines_may_be_present_once_or_missing() {
        let ws = [w(1, 3, &[1])];
        let v = run(&target(&[(1, 1), (1, 2)]), &ws);
        assert!(v.exactly_once(), "{v:?}");
        assert_eq!(v.unacked_present, 1);
        assert!(run(&target(&[(1, 1)]), &ws).exactly_once());
        // but never twice, nor out of order
        let v = run(&target(&[(1, 1), (1, 2), (1, 2)]), &ws);
        assert_eq!(v.duplicated, 1);
        assert!(!v.exactly_once());
        assert!(!run(&target(&[(1, 2), (1, 1)]), &ws).exactly_once());
    }

    #[test]
    fn a_header_is_allowed_once_first_and_only_when_declared() {
        let ws = [w(1, 3, &[1, 2, 3])];
        let body = target(&[(1, 1), (1, 2), (1, 3)]);
        let with = [b"head\n".to_vec(), body.clone()].concat();
        let allow = Allow { header: Some(b"head"), ..Allow::default() };
        let v = check(&set(), &[&with], &ws, &allow);
        assert!(v.exactly_once(), "{v:?}");
        assert_eq!(v.lines, 4);
        assert_eq!(run(&with, &ws).torn, 1, "an undeclared header is foreign");
        let late = [body, b"head\n".to_vec()].concat();
        assert_eq!(check(&set(), &[&late], &ws, &allow).torn, 1, "a header is first or foreign");
    }

    #[test]
    fn only_a_power_cut_excuses_missing_normal_lines_and_never_full_ones() {
        let mut ws = two();
        ws[1].full = false;
        let t = target(&[(1, 1), (2, 1), (1, 2), (1, 3)]); // writer 2's line 2 missing
        let cut = Allow { power_cut: true, ..Allow::default() };
        let v = check(&set(), &[&t], &ws, &cut);
        assert!(v.exactly_once(), "{v:?}");
        assert_eq!((v.normal_missing, v.acked_normal), (1, 2));
        assert_eq!(run(&t, &ws).lost, 1, "without a power cut a normal line must not go missing");
        let t = target(&[(1, 1), (2, 1), (2, 2), (1, 3)]); // writer 1's (full) line 2 missing
        assert_eq!(check(&set(), &[&t], &ws, &cut).lost, 1);
        // and a power cut never excuses a duplicate
        let t = target(&[(1, 1), (2, 1), (1, 2), (2, 1), (1, 3)]);
        assert_eq!(check(&set(), &[&t], &ws, &cut).duplicated, 1);
    }

    #[test]
    fn retention_excuses_only_lines_below_the_first_one_left() {
        let ws = two();
        let keep = Allow { retention_gap: true, ..Allow::default() };
        let v = check(&set(), &[&target(&[(1, 3)])], &ws, &keep);
        assert!(v.exactly_once(), "{v:?}");
        assert_eq!((v.lost, v.rotated_out), (0, 4)); // w1: 1, 2; w2 (none left): 1, 2
        let v = check(&set(), &[&target(&[(1, 1), (1, 3)])], &ws, &keep);
        assert_eq!(v.lost, 1, "{v:?}"); // w1's line 2 is above its first line left
        assert_eq!(run(&target(&[(1, 3)]), &ws).lost, 4, "no retention declared: all lost");
    }

    #[test]
    fn generations_are_one_sequence() {
        let ws = two();
        let (a, b) = (target(&[(1, 1), (2, 1), (1, 2)]), target(&[(2, 2), (1, 3)]));
        let v = check(&set(), &[&a, &b], &ws, &Allow::default());
        assert!(v.exactly_once(), "{v:?}");
        // the same line in two generations is a duplicate; order runs across them
        let (a, b) = (target(&[(1, 1), (2, 1), (1, 2)]), target(&[(1, 2), (2, 2), (1, 3)]));
        assert_eq!(check(&set(), &[&a, &b], &ws, &Allow::default()).duplicated, 1);
        // a torn tail counts in every generation, not only the last
        let mut a = target(&[(1, 1)]);
        a.extend_from_slice(b"w2 0000");
        assert_eq!(check(&set(), &[&a, &target(&[(2, 1), (1, 2), (2, 2), (1, 3)])], &ws, &Allow::default()).torn, 1);
    }
}
