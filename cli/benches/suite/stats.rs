//! Statistics and formatting: one timed run ([`Run`]), medians and paired ratios of
//! repetitions, the figure of several runs ([`Fig`]), and how rates, throughputs, times
//! and sizes are printed.

use super::*;

/// One timed run: lines done, wall seconds, per-operation waits in microseconds.
#[derive(Default, Clone)]
pub(crate) struct Run {
    pub(crate) lines: u64,
    pub(crate) secs: f64,
    pub(crate) lat_us: Vec<u32>,
}

impl Run {
    pub(crate) fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.lines as f64 / self.secs
        } else {
            0.0
        }
    }

    pub(crate) fn p99_ms(&self) -> f64 {
        quantile_us(&self.lat_us, 0.99) / 1000.0
    }
}

pub(crate) fn quantile_us(v: &[u32], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[i] as f64
}

/// Median of the per-repetition ratios a[i] / b[i] (each pair ran back to back, so slow
/// drifts of the machine's load cancel out better than in a ratio of medians).
pub(crate) fn paired_ratio(a: &[f64], b: &[f64]) -> f64 {
    median(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>())
}

pub(crate) fn rates(runs: &[Run]) -> Vec<f64> {
    runs.iter().map(Run::rate).collect()
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Median throughput and median p99 of several runs.
#[derive(Clone, Copy)]
pub(crate) struct Fig {
    pub(crate) rate: f64,
    pub(crate) p99_ms: f64,
    /// Slowest and fastest repetition.
    pub(crate) lo: f64,
    pub(crate) hi: f64,
}

impl Fig {
    pub(crate) fn of(runs: &[Run]) -> Fig {
        Fig {
            rate: median(&runs.iter().map(Run::rate).collect::<Vec<_>>()),
            p99_ms: median(&runs.iter().map(Run::p99_ms).collect::<Vec<_>>()),
            lo: runs.iter().map(Run::rate).fold(f64::INFINITY, f64::min),
            hi: runs.iter().map(Run::rate).fold(0.0, f64::max),
        }
    }
}

pub(crate) fn fmt_rate(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v >= 1e6 {
        format!("{:.2} M {unit}/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k {unit}/s", v / 1e3)
    } else {
        format!("{v:.0} {unit}/s")
    }
}

/// A median rate with the range of the repetitions: "3.8 k rows/s (0.5–5.1 k)".
pub(crate) fn fig_rate(f: &Fig, unit: &str) -> String {
    let (scale, suffix) = if f.hi >= 1e6 {
        (1e6, " M")
    } else if f.hi >= 1e3 {
        (1e3, " k")
    } else {
        (1.0, "")
    };
    format!("{} ({:.1}–{:.1}{suffix})", fmt_rate(f.rate, unit), f.lo / scale, f.hi / scale)
}

pub(crate) fn fmt_mbs(bytes_per_s: f64) -> String {
    format!("{:.0} MB/s", bytes_per_s / 1e6)
}

pub(crate) fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        "–".into()
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

pub(crate) fn fmt_size(b: u64) -> String {
    if b >= GIB && b.is_multiple_of(GIB) {
        format!("{} GiB", b / GIB)
    } else if b >= MIB {
        format!("{:.0} MiB", b as f64 / MIB as f64)
    } else {
        format!("{b} B")
    }
}
