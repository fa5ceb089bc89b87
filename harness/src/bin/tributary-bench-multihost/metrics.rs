//! What a `tributary compact --metrics-textfile` file says that the benchmark reports:
//! committed rounds, contended rounds and the lock-wait histogram, read at the start
//! and the end of the timed window and subtracted.

use std::path::Path;

/// One read of a daemon's textfile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub rounds: u64,
    pub lines: u64,
    pub contended: u64,
    /// `tributary_lock_wait_seconds`: (upper bound, cumulative count), `+Inf` last.
    pub lock_wait: Vec<(f64, u64)>,
    pub lock_wait_sum: f64,
}

/// The value of a sample line `name{labels} value` or `name value`.
fn sample<'a>(line: &'a str, name: &str) -> Option<(&'a str, f64)> {
    let rest = line.strip_prefix(name)?;
    let (labels, value) = match rest.strip_prefix('{') {
        Some(r) => {
            let end = r.rfind('}')?;
            (&r[..end], r[end + 1..].trim())
        }
        None if rest.starts_with(' ') => ("", rest.trim()),
        None => return None,
    };
    Some((labels, value.parse().ok()?))
}

/// The `le` label of a bucket sample.
fn le(labels: &str) -> Option<f64> {
    let v = labels.split("le=\"").nth(1)?.split('"').next()?;
    if v == "+Inf" {
        Some(f64::INFINITY)
    } else {
        v.parse().ok()
    }
}

pub fn parse(text: &str) -> Snapshot {
    let mut s = Snapshot::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((_, v)) = sample(line, "tributary_rounds_committed_total") {
            s.rounds = v as u64;
        } else if let Some((_, v)) = sample(line, "tributary_lines_committed_total") {
            s.lines = v as u64;
        } else if let Some((_, v)) = sample(line, "tributary_rounds_contended_total") {
            s.contended = v as u64;
        } else if let Some((labels, v)) = sample(line, "tributary_lock_wait_seconds_bucket") {
            if let Some(b) = le(labels) {
                s.lock_wait.push((b, v as u64));
            }
        } else if let Some((_, v)) = sample(line, "tributary_lock_wait_seconds_sum") {
            s.lock_wait_sum = v;
        }
    }
    s
}

/// The file as it is now; an empty snapshot if the daemon has not written it yet.
pub fn read(path: &Path) -> Snapshot {
    std::fs::read_to_string(path).map(|t| parse(&t)).unwrap_or_default()
}

impl Snapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let lock_wait = self
            .lock_wait
            .iter()
            .map(|&(b, n)| {
                let before = earlier.lock_wait.iter().find(|(eb, _)| *eb == b).map_or(0, |x| x.1);
                (b, n.saturating_sub(before))
            })
            .collect();
        Snapshot {
            rounds: self.rounds.saturating_sub(earlier.rounds),
            lines: self.lines.saturating_sub(earlier.lines),
            contended: self.contended.saturating_sub(earlier.contended),
            lock_wait,
            lock_wait_sum: (self.lock_wait_sum - earlier.lock_wait_sum).max(0.0),
        }
    }

    /// Several daemons' histograms as one (the same buckets).
    pub fn merged_lock_wait(all: &[Snapshot]) -> Vec<(f64, u64)> {
        let mut out: Vec<(f64, u64)> = Vec::new();
        for s in all {
            for &(b, n) in &s.lock_wait {
                match out.iter_mut().find(|(ob, _)| *ob == b) {
                    Some(o) => o.1 += n,
                    None => out.push((b, n)),
                }
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP tributary_rounds_committed_total Drain rounds that committed lines.
# TYPE tributary_rounds_committed_total counter
tributary_rounds_committed_total{target="/mnt/x/out.log"} 42
tributary_lines_committed_total{target="/mnt/x/out.log"} 4200
tributary_rounds_contended_total{target="/mnt/x/out.log"} 3
tributary_lock_wait_seconds_bucket{target="/mnt/x/out.log",le="0.001"} 10
tributary_lock_wait_seconds_bucket{target="/mnt/x/out.log",le="0.01"} 40
tributary_lock_wait_seconds_bucket{target="/mnt/x/out.log",le="+Inf"} 42
tributary_lock_wait_seconds_sum{target="/mnt/x/out.log"} 0.5
tributary_lock_wait_seconds_count{target="/mnt/x/out.log"} 42
"#;

    #[test]
    fn parses_the_textfile_and_subtracts_snapshots() {
        let s = parse(TEXT);
        assert_eq!((s.rounds, s.lines, s.contended), (42, 4200, 3));
        assert_eq!(s.lock_wait, vec![(0.001, 10), (0.01, 40), (f64::INFINITY, 42)]);
        let earlier = Snapshot { rounds: 2, lock_wait: vec![(0.001, 5), (0.01, 5), (f64::INFINITY, 5)], ..s.clone() };
        let d = s.since(&earlier);
        assert_eq!(d.rounds, 40);
        assert_eq!(d.lock_wait, vec![(0.001, 5), (0.01, 35), (f64::INFINITY, 37)]);
        let m = Snapshot::merged_lock_wait(&[d.clone(), d]);
        assert_eq!(m[2], (f64::INFINITY, 74));
    }
}
