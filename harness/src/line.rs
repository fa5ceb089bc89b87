//! The exact bytes of every line a test writer appends. Line `i` (1-based) of writer `w`
//! in a run is `w<w> <i:08> ` followed by a payload drawn from the run's seed, `w` and
//! `i` alone: the checker recomputes it, so a torn, altered or foreign line cannot pass.

use crate::rng::{mix, Rng};

/// What a line's payload is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// 0–95 lowercase letters: the demo's lines, readable with `tributary tail`.
    Letters,
    /// Any bytes but `\n` (NUL and invalid UTF-8 included), usually short, sometimes
    /// empty, sometimes a few KiB: the torture harness's lines.
    /// (`tests/crashstates/workloads.py` recomputes these bytes.)
    AnyBytes,
}

/// The lines of one run: its seed and payload kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lines {
    pub run: u64,
    pub payload: Payload,
}

impl Lines {
    /// The torture harness's lines of run `run`.
    pub fn any_bytes(run: u64) -> Lines {
        Lines { run, payload: Payload::AnyBytes }
    }

    /// The demo's lines of run `run`.
    pub fn letters(run: u64) -> Lines {
        Lines { run, payload: Payload::Letters }
    }

    /// The exact bytes of writer `w`'s `i`th line (without its `\n`).
    pub fn line(&self, w: u32, i: u64) -> Vec<u8> {
        let mut rng = Rng::new(mix(self.run, (u64::from(w) << 40) ^ i));
        let mut v = format!("w{w} {i:08} ").into_bytes();
        match self.payload {
            Payload::Letters => {
                let len = rng.below(96);
                v.extend((0..len).map(|_| b'a' + rng.below(26) as u8));
            }
            Payload::AnyBytes => {
                let len = match rng.below(24) {
                    0 => 1000 + rng.below(4000),
                    1 => 0,
                    _ => rng.below(100),
                };
                let binary = rng.chance(1, 4);
                for _ in 0..len {
                    let b = if binary { rng.next_u64() as u8 } else { b'a' + rng.below(26) as u8 };
                    v.push(if b == b'\n' { b'~' } else { b });
                }
            }
        }
        v
    }
}

/// The `(writer, index)` a line claims to be, from its `w<w> <i:08> ` prefix (None: not
/// of that shape). Whether the rest is right is [`Lines::line`]'s to say.
pub fn parse_prefix(line: &[u8]) -> Option<(u32, u64)> {
    let mut it = line.splitn(3, |&b| b == b' ');
    let w = std::str::from_utf8(it.next()?).ok()?.strip_prefix('w')?.parse().ok()?;
    let i_bytes = it.next()?;
    if i_bytes.len() != 8 {
        return None;
    }
    let i = std::str::from_utf8(i_bytes).ok()?.parse().ok()?;
    it.next()?; // the separator after the index must be there
    Some((w, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_deterministic_newline_free_and_parse_back() {
        for lines in [Lines::any_bytes(7), Lines::letters(7)] {
            for i in 1..2000 {
                let l = lines.line(3, i);
                assert_eq!(l, lines.line(3, i));
                assert!(!l.contains(&b'\n'));
                assert_eq!(parse_prefix(&l), Some((3, i)));
            }
        }
        assert_ne!(Lines::any_bytes(7).line(3, 1), Lines::any_bytes(8).line(3, 1));
        assert_ne!(Lines::any_bytes(7).line(3, 1), Lines::any_bytes(7).line(4, 1));
        assert!((1..500).all(|i| Lines::letters(7).line(1, i)[12..].iter().all(u8::is_ascii_lowercase)));
        // the harness's lines reach every kind of payload: empty, long, not UTF-8
        let any: Vec<Vec<u8>> = (1..2000).map(|i| Lines::any_bytes(7).line(1, i)).collect();
        assert!(any.iter().any(|l| l.len() == 12) && any.iter().any(|l| l.len() > 1000));
        assert!(any.iter().any(|l| std::str::from_utf8(l).is_err()));
    }

    /// The bytes `tests/crashstates/workloads.py` recomputes (the pinned lengths and
    /// CRC-32s are what its `expected_line` gives): a change here must be made there too.
    #[test]
    fn the_harness_lines_are_the_ones_the_crash_state_checker_recomputes() {
        for (run, w, i, len, crc) in
            [(1, 1, 1, 111, 0x53df_72b5), (7, 3, 2, 24, 0xc2c4_a3f9), (20261122, 2, 40, 52, 0x270e_dcb6)]
        {
            let l = Lines::any_bytes(run).line(w, i);
            assert_eq!((l.len(), crc32fast::hash(&l)), (len, crc), "run {run} writer {w} line {i}");
        }
    }

    #[test]
    fn prefixes_of_another_shape_are_refused() {
        for bad in [&b"w1 1 x"[..], b"w1 0000001x y", b"x1 00000001 y", b"w1 00000001", b"", b"w 00000001 y"] {
            assert_eq!(parse_prefix(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
