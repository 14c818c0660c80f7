//! A log-linear latency histogram: fixed memory, O(1) record, mergeable,
//! percentiles within 0.4 % of the true value.
//!
//! Values are nanoseconds. Below 2^8 every value has its own bucket; above,
//! each power of two `[2^e, 2^(e+1))` is cut into 128 equal buckets, so a
//! bucket is at most 1/128 of the values it holds wide, and its midpoint is
//! within 1/256 (0.39 %) of any of them. The top bucket ends at 2^36 ns
//! (about 68.7 s); larger values are counted in it (the exact maximum is
//! kept apart). Every histogram has the same bucket layout, so merging is a
//! bucket-wise sum.
//!
//! Invariant: `count` is the sum of all buckets; `min`/`max`/`sum` are exact
//! over the recorded values; a percentile is the representative of the
//! bucket holding the ranked value, clamped to `[min, max]`.

/// Values below `1 << LINEAR_BITS` get one bucket each.
const LINEAR_BITS: u32 = 8;
/// Buckets per power of two above the linear part (`2^(LINEAR_BITS - 1)`).
const SUB_BUCKETS: usize = 1 << (LINEAR_BITS - 1);
/// Values at or above `1 << MAX_BITS` ns land in the top bucket.
const MAX_BITS: u32 = 36;
/// Total buckets: the linear part plus one run of `SUB_BUCKETS` for each
/// exponent `LINEAR_BITS..MAX_BITS`.
const BUCKETS: usize = (1 << LINEAR_BITS) + (MAX_BITS - LINEAR_BITS) as usize * SUB_BUCKETS;

/// Largest value with its own bucket (larger ones saturate the top one).
pub const MAX_TRACKABLE_NS: u64 = (1 << MAX_BITS) - 1;

/// A latency histogram (see the module documentation).
#[derive(Clone)]
pub struct Histogram {
    buckets: Box<[u64; BUCKETS]>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Bucket index of `v` (values above the range fall in the last bucket).
#[inline]
fn index_of(v: u64) -> usize {
    let v = v.min(MAX_TRACKABLE_NS);
    if v < 1 << LINEAR_BITS {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // LINEAR_BITS..MAX_BITS
    let shift = e - (LINEAR_BITS - 1);
    let mantissa = (v >> shift) as usize - SUB_BUCKETS; // 0..SUB_BUCKETS
    (1 << LINEAR_BITS) + (shift as usize - 1) * SUB_BUCKETS + mantissa
}

/// Lowest value and width of bucket `i`.
fn bucket_range(i: usize) -> (u64, u64) {
    if i < 1 << LINEAR_BITS {
        return (i as u64, 1);
    }
    let j = i - (1 << LINEAR_BITS);
    let shift = (j / SUB_BUCKETS) as u32 + 1;
    let mantissa = (j % SUB_BUCKETS + SUB_BUCKETS) as u64;
    (mantissa << shift, 1 << shift)
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            buckets: Box::new([0; BUCKETS]),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one value (nanoseconds).
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.buckets[index_of(ns)] += 1;
        self.count += 1;
        self.sum += u128::from(ns);
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Smallest value, `None` when empty.
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }
    /// Largest value, `None` when empty.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }
    /// Exact mean, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The value at percentile `p` (0..=100): the smallest recorded value
    /// such that at least `p` % of values are at or below it, to within the
    /// bucket resolution. `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let p = if p.is_nan() {
            100.0
        } else {
            p.clamp(0.0, 100.0)
        };
        let rank = ((p / 100.0) * self.count as f64).ceil() as u64;
        let rank = rank.clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, width) = bucket_range(i);
                let mid = low + (width - 1) / 2;
                return Some(mid.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(got: u64, want: u64, rel: f64) {
        let err = (got as f64 - want as f64).abs() / want.max(1) as f64;
        assert!(err <= rel, "got {got}, want {want} (relative error {err})");
    }

    #[test]
    fn buckets_tile_the_range_without_gaps() {
        let mut expect_low = 0u64;
        for i in 0..BUCKETS {
            let (low, width) = bucket_range(i);
            assert_eq!(low, expect_low, "bucket {i}");
            assert_eq!(index_of(low), i);
            assert_eq!(index_of(low + width - 1), i);
            // Width at most 1/128 of the bucket's lowest value (above 256).
            if low >= 1 << LINEAR_BITS {
                assert!(width * SUB_BUCKETS as u64 <= low, "bucket {i}");
            }
            expect_low = low + width;
        }
        assert_eq!(expect_low, MAX_TRACKABLE_NS + 1);
        assert_eq!(index_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn empty_has_no_statistics() {
        let h = Histogram::new();
        assert!(h.is_empty());
        assert_eq!(h.percentile(50.0), None);
        assert_eq!(h.min(), None);
        assert_eq!(h.mean(), None);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), Some(50));
        assert_eq!(h.percentile(90.0), Some(90));
        assert_eq!(h.percentile(99.0), Some(99));
        assert_eq!(h.percentile(100.0), Some(100));
        assert_eq!(h.percentile(0.0), Some(1));
        assert_eq!(h.mean(), Some(50.5));
    }

    #[test]
    fn a_constant_is_reported_exactly() {
        let mut h = Histogram::new();
        for _ in 0..1000 {
            h.record(21_337);
        }
        for p in [0.0, 50.0, 99.9, 100.0] {
            assert_eq!(h.percentile(p), Some(21_337));
        }
    }

    #[test]
    fn uniform_distribution_percentiles_within_half_a_percent() {
        let mut h = Histogram::new();
        for v in 1..=1_000_000u64 {
            h.record(v * 10); // 10 ns .. 10 ms
        }
        for (p, want) in [
            (50.0, 5_000_000),
            (90.0, 9_000_000),
            (99.0, 9_900_000),
            (99.9, 9_990_000),
        ] {
            assert_close(h.percentile(p).unwrap(), want, 0.005);
        }
        assert_eq!(h.min(), Some(10));
        assert_eq!(h.max(), Some(10_000_000));
        assert_close(h.mean().unwrap() as u64, 5_000_005, 1e-9);
    }

    #[test]
    fn exponential_distribution_percentiles() {
        // Quantiles of an exponential with mean 50 µs: -ln(1 - p) * mean,
        // sampled deterministically at the midpoints of n equal strata.
        let n = 200_000u64;
        let mean = 50_000.0f64;
        let mut h = Histogram::new();
        for i in 0..n {
            let u = (i as f64 + 0.5) / n as f64;
            h.record((-(1.0 - u).ln() * mean) as u64);
        }
        for p in [50.0f64, 90.0, 99.0, 99.9] {
            let want = -(1.0 - p / 100.0).ln() * mean;
            assert_close(h.percentile(p).unwrap(), want as u64, 0.005);
        }
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        let mut all = Histogram::new();
        let mut x = 0x1234_5678_9abc_def1u64;
        for i in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = x % 5_000_000;
            if i % 3 == 0 { &mut a } else { &mut b }.record(v);
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a.count(), all.count());
        assert_eq!(a.min(), all.min());
        assert_eq!(a.max(), all.max());
        assert_eq!(a.mean(), all.mean());
        for p in [1.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
            assert_eq!(a.percentile(p), all.percentile(p));
        }
    }

    #[test]
    fn huge_values_saturate_but_max_stays_exact() {
        let mut h = Histogram::new();
        h.record(100);
        h.record(3_600_000_000_000); // an hour
        assert_eq!(h.max(), Some(3_600_000_000_000));
        assert!(h.percentile(100.0).unwrap() >= MAX_TRACKABLE_NS / 2);
        assert_eq!(h.percentile(50.0), Some(100));
    }
}
