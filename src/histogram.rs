//! Latency histograms that travel between machines: HDR histograms (3 significant digits, in
//! microseconds) written as their non-empty buckets, `[value, count]` pairs in value order.
//! Rebuilding a histogram from its buckets gives back the same histogram, so shards merge by adding
//! counts, never by averaging percentiles.
//!
//! Depends on `hdrhistogram` and `serde` only.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The largest latency held: 400 days in microseconds (larger values saturate).
const LATENCY_US_MAX: u64 = 400 * 86_400 * 1_000_000;
/// Significant decimal digits kept by every histogram.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A histogram of latencies in microseconds, as non-empty buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buckets {
    /// `[highest value of the bucket, count]`, ascending by value.
    pub us: Vec<[u64; 2]>,
}

/// Percentiles of a histogram in milliseconds: the core's summary of a trial's latencies.
pub use sim::metrics::LatencySummary as Percentiles;

fn empty() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGNIFICANT_DIGITS).expect("valid bounds")
}

impl Buckets {
    /// Buckets of the given latencies in microseconds.
    pub fn of(values_us: impl IntoIterator<Item = u64>) -> Buckets {
        let mut histogram = empty();
        for value in values_us {
            histogram.saturating_record(value.clamp(1, LATENCY_US_MAX));
        }
        Buckets::from_histogram(&histogram)
    }

    fn from_histogram(histogram: &Histogram<u64>) -> Buckets {
        let us: Vec<[u64; 2]> = histogram
            .iter_recorded()
            .map(|bucket| [bucket.value_iterated_to(), bucket.count_at_value()])
            .collect();
        assert!(us.windows(2).all(|pair| pair[0][0] < pair[1][0]));
        Buckets { us }
    }

    pub fn histogram(&self) -> Histogram<u64> {
        let mut histogram = empty();
        for [value, count] in &self.us {
            histogram.saturating_record_n(*value, *count);
        }
        histogram
    }

    /// The histogram of everything in `parts`: counts added bucket by bucket.
    pub fn merge<'a>(parts: impl IntoIterator<Item = &'a Buckets>) -> Buckets {
        let mut histogram = empty();
        for part in parts {
            histogram.add(part.histogram()).expect("same bounds");
        }
        Buckets::from_histogram(&histogram)
    }

    pub fn count(&self) -> u64 {
        self.us.iter().map(|[_, count]| count).sum()
    }

    pub fn percentiles(&self) -> Percentiles {
        Percentiles::of_histogram(&self.histogram())
    }

    /// The cumulative distribution: `(milliseconds, share at or below)` per bucket.
    pub fn cdf_ms(&self) -> Vec<(f64, f64)> {
        let total = self.count().max(1) as f64;
        let mut seen = 0;
        self.us
            .iter()
            .map(|[value, count]| {
                seen += count;
                (*value as f64 / 1_000.0, seen as f64 / total)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_buckets_equal_buckets_of_all_values() {
        let values: Vec<u64> = (1..5_000u64).map(|i| 1 + (i * 7919) % 3_000_000).collect();
        let (left, right) = values.split_at(1234);
        let merged = Buckets::merge([&Buckets::of(left.to_vec()), &Buckets::of(right.to_vec())]);
        assert_eq!(merged, Buckets::of(values.clone()));
        assert_eq!(merged.count(), values.len() as u64);
        assert_eq!(Buckets::of(values).histogram(), merged.histogram());
    }

    #[test]
    fn percentiles_keep_three_digits() {
        let buckets = Buckets::of((1..=1000u64).map(|ms| ms * 1000));
        let p = buckets.percentiles();
        assert!((p.p50 - 500.0).abs() <= 0.5, "{p:?}");
        assert!((p.p99 - 990.0).abs() <= 1.0, "{p:?}");
        assert_eq!(p.count, 1000);
    }
}
