//! Deadlines that cannot overflow, and this host's wall clock in Unix ms.

use std::time::{Duration, Instant};

/// `now + d`, saturating far in the future instead of panicking on overflow.
pub(crate) fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// This host's wall clock, in ms since the Unix epoch (0 before it): what the
/// lifecycle's expiry and horizon compare first-line stamps with.
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
