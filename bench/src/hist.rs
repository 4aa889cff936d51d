//! The latency histogram of the suite's load generators (`echo_load`,
//! `resp_load`): fixed log-linear buckets in nanoseconds, no allocation per
//! sample.

use std::time::Duration;

/// A latency histogram with fixed log-linear buckets, in nanoseconds:
/// values below 128 have a bucket each, larger ones 64 buckets per power
/// of two (relative width at most 1/64).
#[derive(Debug)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
}

/// Values below this have one bucket each.
const LINEAR: u64 = 128;
/// log2 of the buckets per power of two above `LINEAR`.
const SUB_BITS: u32 = 6;
/// 128 exact buckets, then 64 for each power of two from 2^7 to 2^63.
const BUCKETS: usize = LINEAR as usize + (64 - 7) * (1 << SUB_BITS);

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
        }
    }

    /// Forgets every sample.
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.total = 0;
    }

    /// The number of samples recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    fn index(v: u64) -> usize {
        if v < LINEAR {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= 7
        let sub = (v >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
        LINEAR as usize + ((exp - 7) as usize) * (1 << SUB_BITS) + sub as usize
    }

    /// The smallest value of bucket `i` and its width.
    fn bucket(i: usize) -> (u64, u64) {
        if i < LINEAR as usize {
            return (i as u64, 1);
        }
        let k = i - LINEAR as usize;
        let exp = (k >> SUB_BITS) as u32 + 7;
        let sub = (k & ((1 << SUB_BITS) - 1)) as u64;
        let shift = exp - SUB_BITS;
        (((1 << SUB_BITS) + sub) << shift, 1 << shift)
    }

    /// Records one sample.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[Self::index(ns)] += 1;
        self.total += 1;
    }

    /// The value (in ns, the middle of its bucket) below which a fraction
    /// `q` of the samples lie; 0 without samples.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, width) = Self::bucket(i);
                return low as f64 + (width - 1) as f64 / 2.0;
            }
        }
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_a_bucket() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), 0.0);
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.count(), 1000);
        for (q, want) in [(0.5, 500e3), (0.99, 990e3), (0.999, 999e3)] {
            let got = h.quantile(q);
            assert!((got - want).abs() <= want / 64.0, "q {q}: {got} vs {want}");
        }
        // Exact below 128 ns.
        h.clear();
        h.record(Duration::from_nanos(100));
        assert_eq!(h.quantile(0.5), 100.0);
        assert_eq!(h.count(), 1);
    }

    #[test]
    fn buckets_cover_their_values() {
        for v in [0u64, 127, 128, 129, 1000, 123_456_789, u64::MAX] {
            let (low, width) = Histogram::bucket(Histogram::index(v));
            assert!(low <= v && v - low < width, "{v}: [{low}, +{width})");
        }
    }
}
