//! The one seeded random generator of the demo and the harness: xorshift64* seeded
//! through splitmix64, and [`mix`] to derive a sub-seed (trial k of a run, writer w of a
//! trial, line i of a writer). A seed replays the same plan and the same line bytes.
//! `tests/crashstates/workloads.py` mirrors it to recompute the keyed writer's lines.

/// splitmix64: turns any seed (0 included) into a well-mixed 64-bit value.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Derive a sub-seed (trial k of run s, writer w of trial t, ...).
pub fn mix(a: u64, b: u64) -> u64 {
    splitmix(a ^ splitmix(b))
}

/// xorshift64*: small, seedable, good enough for schedules and payloads.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(splitmix(seed) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A fresh random seed (printed by every harness so a failing run can be repeated).
pub fn random_seed() -> u64 {
    tributary::testing::sys::random_u64() % 1_000_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_and_seeds_differ() {
        let draw = |seed| {
            let mut r = Rng::new(seed);
            (0..8).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
        // seed 0 is a valid seed (splitmix, then | 1: the state is never 0)
        let mut z = Rng::new(0);
        assert_ne!(z.next_u64(), z.next_u64());
        assert_eq!(Rng::new(5).below(0), 0);
        assert!((0..1000).all(|_| z.below(7) < 7));
    }
}
