//! Deadlines that cannot overflow.

use std::time::{Duration, Instant};

/// `now + d`, saturating far in the future instead of panicking on overflow.
pub(crate) fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_duration_is_far_away_not_a_panic() {
        assert!(deadline_after(Duration::MAX) > Instant::now() + Duration::from_secs(3600 * 24 * 365));
        assert!(deadline_after(Duration::ZERO) <= Instant::now());
    }
}
