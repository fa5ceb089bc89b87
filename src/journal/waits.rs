//! How long an [`Appender`](super::Appender)'s records waited to be durable: the
//! durability window as measured, not as set (docs/design.md, "Background commit").
//!
//! Keeps: every committed record is counted once, in the bucket of its own wait (its
//! push → its batch's fsync returned), so a quantile read here is never below the true
//! one; a quantile is its bucket's upper edge (16 buckets per doubling: at most 1/16 of
//! a doubling ≈ 6 % wide, from 1 µs to over an hour).

use std::time::Duration;

/// Sub-buckets per doubling: 16, so a bucket's upper edge is at most 1/16 (6.25 %) above
/// the smallest wait in it (a 20 ms limit is told from 21.3 ms).
const SUB_BITS: u32 = 4;
/// Doublings covered from 1 µs: 2^32 µs is over an hour; longer waits share the last.
const OCTAVES: u32 = 32;
const BUCKETS: usize = (OCTAVES << SUB_BITS) as usize;

/// Records by how long they waited to be durable.
pub(super) struct WaitHistogram {
    counts: [u64; BUCKETS],
    records: u64,
    longest_us: u64,
}

impl Default for WaitHistogram {
    fn default() -> Self {
        WaitHistogram { counts: [0; BUCKETS], records: 0, longest_us: 0 }
    }
}

impl WaitHistogram {
    /// A record became durable after waiting `wait` (push → its batch's fsync returned).
    pub(super) fn record(&mut self, wait: Duration) {
        // whole microseconds, rounded up: a quantile never reads below a wait
        let us = u64::try_from(wait.as_nanos().div_ceil(1000)).unwrap_or(u64::MAX);
        self.counts[bucket_of(us)] += 1;
        self.records += 1;
        self.longest_us = self.longest_us.max(us);
    }

    /// The wait that a fraction `q` (0 to 1) of the counted records did not exceed:
    /// the upper edge of the bucket that reaches it (never above the longest wait seen).
    /// `None` before the first commit.
    #[allow(clippy::cast_precision_loss)] // record counts stay far below 2^52: exact in f64
    pub(super) fn quantile(&self, q: f64) -> Option<Duration> {
        if self.records == 0 {
            return None;
        }
        // the rank of the record the quantile names, in records (at least the first)
        let rank = q.clamp(0.0, 1.0) * self.records as f64;
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen > 0 && seen as f64 >= rank {
                return Some(Duration::from_micros(upper_edge(i).min(self.longest_us)));
            }
        }
        Some(Duration::from_micros(self.longest_us))
    }
}

/// `SUB_BITS` low bits.
const SUB_MASK: u64 = (1 << SUB_BITS) - 1;

/// The bucket of a wait of `us` microseconds: 0 for under 1 µs, then 16 per doubling.
fn bucket_of(us: u64) -> usize {
    if us == 0 {
        return 0;
    }
    let octave = us.ilog2(); // us in [2^octave, 2^(octave+1))
    let sub = if octave >= SUB_BITS {
        (us >> (octave - SUB_BITS)) & SUB_MASK
    } else {
        (us << (SUB_BITS - octave)) & SUB_MASK
    };
    let i = (u64::from(octave) << SUB_BITS) + sub;
    usize::try_from(i).map_or(BUCKETS - 1, |i| i.min(BUCKETS - 1))
}

/// The largest wait, in µs, that falls in bucket `i`.
fn upper_edge(i: usize) -> u64 {
    if i >= BUCKETS - 1 {
        return u64::MAX;
    }
    let i = i as u64;
    let (octave, sub) = (i >> SUB_BITS, i & SUB_MASK);
    // bucket i holds [2^octave * (16 + sub) / 16, 2^octave * (17 + sub) / 16): its last
    // whole microsecond is one below that end, rounded up
    let steps = 1u64 << SUB_BITS;
    ((1u64 << octave) * (steps + 1 + sub)).div_ceil(steps).saturating_sub(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wait_lands_in_a_bucket_whose_upper_edge_is_at_least_it_and_at_most_a_sixteenth_above() {
        let mut us = 1u64;
        while us < 1 << 40 {
            for w in [us, us + us / 3, us + us / 17, us * 2 - 1] {
                let edge = upper_edge(bucket_of(w));
                assert!(edge >= w, "{w} µs: edge {edge}");
                if (16..1 << 31).contains(&w) {
                    // a bucket is a sixteenth of its octave wide: at most 1/16 above its start
                    assert!(edge * 16 <= w * 17 + 16, "{w} µs: edge {edge} is too far above");
                }
            }
            us *= 2;
        }
        assert_eq!(bucket_of(0), 0);
    }

    #[test]
    fn a_quantile_counts_records_and_never_reads_low() {
        let mut h = WaitHistogram::default();
        assert_eq!(h.quantile(0.99), None);
        // 98 records that waited 2 ms, then 2 that waited 40 ms
        for _ in 0..98 {
            h.record(Duration::from_millis(2));
        }
        h.record(Duration::from_millis(40));
        h.record(Duration::from_millis(40));
        let p50 = h.quantile(0.5).unwrap();
        assert!(p50 >= Duration::from_millis(2) && p50 <= Duration::from_micros(2130), "{p50:?}");
        // the 99th record of 100 is one of the two that waited 40 ms
        let p99 = h.quantile(0.99).unwrap();
        assert!(p99 >= Duration::from_millis(40) && p99 <= Duration::from_micros(42_500), "{p99:?}");
        // the top quantile is the longest wait, not a bucket edge above it
        assert_eq!(h.quantile(1.0), Some(Duration::from_millis(40)));
        assert_eq!(h.quantile(0.0), h.quantile(0.01));
    }

    #[test]
    fn a_wait_between_two_microseconds_never_reads_as_the_lower_one() {
        let mut h = WaitHistogram::default();
        let wait = Duration::from_nanos(1_500);
        h.record(wait);
        for q in [0.5, 0.99, 1.0] {
            assert!(h.quantile(q).unwrap() >= wait, "q {q}: {:?} < {wait:?}", h.quantile(q));
        }
    }
}
