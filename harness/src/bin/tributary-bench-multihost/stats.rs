//! Quantiles: exact ones over samples, and estimates from a cumulative histogram (the
//! compact daemon's lock-wait histogram, read from its metrics textfile).

/// The `q` quantile (0..=1, nearest rank) of `v`, which this sorts; `None` if empty.
pub fn quantile(v: &mut [u64], q: f64) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// The `q` quantile of a histogram given as (upper bound, cumulative count) pairs in
/// increasing order, the last one `+Inf`: linear within the bucket it falls in, as
/// Prometheus's `histogram_quantile` does. A quantile in the `+Inf` bucket is reported
/// as the highest finite bound (an underestimate, flagged by the second value).
pub fn histogram_quantile(buckets: &[(f64, u64)], q: f64) -> Option<(f64, bool)> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut lo, mut below) = (0.0, 0u64);
    for &(le, cum) in buckets {
        if cum as f64 >= rank && cum > below {
            if le.is_infinite() {
                return Some((lo, true));
            }
            let frac = (rank - below as f64) / (cum - below) as f64;
            return Some((lo + (le - lo) * frac.clamp(0.0, 1.0), false));
        }
        if le.is_finite() {
            lo = le;
        }
        below = cum;
    }
    Some((lo, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(quantile(&mut v, 0.5), Some(50));
        assert_eq!(quantile(&mut v, 0.99), Some(99));
        assert_eq!(quantile(&mut v, 1.0), Some(100));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn histogram_quantiles_interpolate_within_the_bucket() {
        // 10 samples <= 0.01, 10 more <= 0.05, none above
        let b = [(0.01, 10), (0.05, 20), (0.1, 20), (f64::INFINITY, 20)];
        let (p50, over) = histogram_quantile(&b, 0.5).unwrap();
        assert!((p50 - 0.01).abs() < 1e-9 && !over);
        let (p75, _) = histogram_quantile(&b, 0.75).unwrap();
        assert!((p75 - 0.03).abs() < 1e-9, "{p75}");
        // one sample above every finite bound: p99 is flagged as an underestimate
        let c = [(0.01, 99), (0.05, 99), (f64::INFINITY, 100)];
        assert_eq!(histogram_quantile(&c, 0.999), Some((0.05, true)));
        assert_eq!(histogram_quantile(&[(0.01, 0), (f64::INFINITY, 0)], 0.5), None);
    }
}
