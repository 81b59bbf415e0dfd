//! What a trial measures: latency histograms ("labels saved", "labels visible", and per stage) and
//! bounded series of queue depth and oldest-message age over time. Function utilisation comes from
//! the Lambda model; counters live with the driver.
//!
//! Latencies go into HDR histograms (3 significant digits, recorded in microseconds, reported in
//! milliseconds). Samples over time are bounded: when the buffer is full every other sample is
//! dropped and the interval doubles. Depends on `time` and `hdrhistogram`; knows no services.

use crate::time::{Duration, Instant};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The largest latency a histogram holds: 400 days in microseconds (larger values saturate).
const LATENCY_US_MAX: u64 = 400 * 86_400 * 1_000_000;
/// The most samples kept of each sampled series.
pub const SAMPLES_MAX: usize = 2048;

/// The stages of a receipt's way through the pipeline (SEMANTICS.md section 3).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Arrival at the upload queue to the start of the receipt's upload work.
    UploadQueueWait,
    Ocr,
    Embedding,
    DeltaUpload,
    /// Old flow: polling the CompactionRun.
    Wait,
    Langgraph,
    /// A table write to the stream processor's handling of its record.
    StreamLag,
    /// A message's send to the start of the compaction invocation that receives it.
    QueueWait,
    /// One collection's work in one compaction invocation, from its start to its end.
    CompactionWork,
    /// Waiting for (and taking) the lock at publish.
    LockWait,
    /// Snapshot upload and pointer promotion.
    Publish,
}

impl Stage {
    pub const ALL: [Stage; 11] = [
        Stage::UploadQueueWait,
        Stage::Ocr,
        Stage::Embedding,
        Stage::DeltaUpload,
        Stage::Wait,
        Stage::Langgraph,
        Stage::StreamLag,
        Stage::QueueWait,
        Stage::CompactionWork,
        Stage::LockWait,
        Stage::Publish,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Stage::UploadQueueWait => "upload_queue_wait",
            Stage::Ocr => "ocr",
            Stage::Embedding => "embedding",
            Stage::DeltaUpload => "delta_upload",
            Stage::Wait => "wait",
            Stage::Langgraph => "langgraph",
            Stage::StreamLag => "stream_lag",
            Stage::QueueWait => "queue_wait",
            Stage::CompactionWork => "compaction_work",
            Stage::LockWait => "lock_wait",
            Stage::Publish => "publish",
        }
    }
}

/// The most values a `Latency` keeps exactly before it moves them into an HDR histogram.
pub const EXACT_VALUES_MAX: usize = 1024;
/// The room a `Latency` makes for exact values at its first one.
const EXACT_VALUES_FIRST_CAPACITY: usize = 32;

/// A latency histogram in microseconds. A few values are kept exactly (a full HDR histogram costs
/// a large zeroed allocation, which would dominate small trials); past `EXACT_VALUES_MAX` they move
/// into an HDR histogram with 3 significant digits.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    exact: Vec<u64>,
    histogram: Option<Histogram<u64>>,
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
    pub count: u64,
}

impl LatencySummary {
    /// The summary of an HDR histogram of microseconds (all zero when it is empty).
    pub fn of_histogram(histogram: &Histogram<u64>) -> LatencySummary {
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        let ms = |micros: u64| micros as f64 / 1_000.0;
        LatencySummary {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1_000.0,
            count: histogram.len(),
        }
    }
}

impl Latency {
    pub fn new() -> Latency {
        Latency::default()
    }
    pub fn record(&mut self, latency: Duration) {
        let micros = (latency.as_nanos() / 1_000).clamp(1, LATENCY_US_MAX);
        match &mut self.histogram {
            Some(histogram) => histogram.record(micros).expect("value within bounds"),
            None => {
                if self.exact.capacity() == 0 {
                    // Most trials record a few dozen values: one allocation instead of four.
                    self.exact.reserve_exact(EXACT_VALUES_FIRST_CAPACITY);
                }
                self.exact.push(micros);
                if self.exact.len() > EXACT_VALUES_MAX {
                    let mut histogram = Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                        .expect("valid histogram bounds");
                    for value in self.exact.drain(..) {
                        histogram.record(value).expect("value within bounds");
                    }
                    self.histogram = Some(histogram);
                }
            }
        }
    }
    pub fn count(&self) -> u64 {
        match &self.histogram {
            Some(histogram) => histogram.len(),
            None => self.exact.len() as u64,
        }
    }
    pub fn summary(&self) -> LatencySummary {
        let ms = |micros: u64| micros as f64 / 1_000.0;
        if let Some(histogram) = &self.histogram {
            return LatencySummary::of_histogram(histogram);
        }
        if self.exact.is_empty() {
            return LatencySummary::default();
        }
        let mut sorted = self.exact.clone();
        sorted.sort_unstable();
        // The value at rank ceil(q * n), as an HDR histogram reports it (without its rounding).
        let quantile = |q: f64| {
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[rank - 1]
        };
        let sum: u128 = sorted.iter().map(|v| u128::from(*v)).sum();
        LatencySummary {
            p50: ms(quantile(0.50)),
            p90: ms(quantile(0.90)),
            p99: ms(quantile(0.99)),
            max: ms(*sorted.last().expect("not empty")),
            mean: sum as f64 / sorted.len() as f64 / 1_000.0,
            count: sorted.len() as u64,
        }
    }
}

/// One sample of a queue: its depth (visible plus in flight) and the age of its oldest message.
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub struct QueueSample {
    pub at_s: f64,
    pub depth: u64,
    pub oldest_age_s: f64,
}

/// A bounded series of samples: when full, every other sample goes and the interval doubles.
#[derive(Clone, Debug)]
pub struct Series {
    interval: Duration,
    next_at: Instant,
    samples: Vec<QueueSample>,
}

impl Series {
    pub fn new(interval: Duration) -> Series {
        assert!(interval > Duration::ZERO);
        Series {
            interval,
            next_at: Instant::ZERO,
            samples: Vec::new(),
        }
    }
    /// Whether a sample is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_at
    }
    pub fn next_at(&self) -> Instant {
        self.next_at
    }
    pub fn record(&mut self, now: Instant, depth: u64, oldest_age: Duration) {
        if self.samples.len() == SAMPLES_MAX {
            let kept: Vec<QueueSample> = self.samples.iter().step_by(2).copied().collect();
            self.samples = kept;
            self.interval = self.interval.saturating_mul(2);
        }
        self.samples.push(QueueSample {
            at_s: now.as_secs_f64(),
            depth,
            oldest_age_s: oldest_age.as_secs_f64(),
        });
        self.next_at = now.add(self.interval);
        assert!(self.samples.len() <= SAMPLES_MAX);
    }
    pub fn samples(&self) -> &[QueueSample] {
        &self.samples
    }
    pub fn depth_max(&self) -> u64 {
        self.samples
            .iter()
            .map(|sample| sample.depth)
            .max()
            .unwrap_or(0)
    }
    pub fn oldest_age_s_max(&self) -> f64 {
        self.samples
            .iter()
            .map(|sample| sample.oldest_age_s)
            .fold(0.0, f64::max)
    }
}

/// Every stage's histogram.
#[derive(Clone, Debug, Default)]
pub struct Stages {
    /// One per stage, or none when the stages are not recorded.
    histograms: Vec<Latency>,
}

impl Stages {
    pub fn new() -> Stages {
        Stages {
            histograms: Stage::ALL.iter().map(|_| Latency::new()).collect(),
        }
    }
    /// Stages that record nothing: every histogram stays empty.
    pub fn off() -> Stages {
        Stages {
            histograms: Vec::new(),
        }
    }
    pub fn record(&mut self, stage: Stage, latency: Duration) {
        if let Some(histogram) = self.histograms.get_mut(stage as usize) {
            histogram.record(latency);
        }
    }
    /// One summary per stage; none when the stages are off.
    pub fn summaries(&self) -> BTreeMap<String, LatencySummary> {
        Stage::ALL
            .iter()
            .zip(&self.histograms)
            .map(|(stage, histogram)| (stage.name().to_string(), histogram.summary()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_have_three_digits() {
        let mut latency = Latency::new();
        for ms in 1..=1000u64 {
            latency.record(Duration::from_millis(ms));
        }
        let summary = latency.summary();
        assert_eq!(summary.count, 1000);
        assert!((summary.p50 - 500.0).abs() <= 0.5, "{summary:?}");
        assert!((summary.p99 - 990.0).abs() <= 1.0, "{summary:?}");
        assert!((summary.max - 1000.0).abs() <= 1.0, "{summary:?}");
        assert!((summary.mean - 500.5).abs() <= 0.5, "{summary:?}");
    }

    #[test]
    fn series_stays_bounded() {
        let mut series = Series::new(Duration::from_secs(1));
        let mut now = Instant::ZERO;
        for step in 0..10 * SAMPLES_MAX as u64 {
            if series.due(now) {
                series.record(now, step, Duration::ZERO);
            }
            now = now.add(Duration::from_secs(1));
        }
        assert!(series.samples().len() <= SAMPLES_MAX);
        assert!(series.samples().len() > SAMPLES_MAX / 4);
        assert!(
            series
                .samples()
                .windows(2)
                .all(|pair| pair[0].at_s < pair[1].at_s)
        );
    }

    #[test]
    fn exact_and_hdr_summaries_agree_to_three_digits() {
        let values: Vec<Duration> = (1..=EXACT_VALUES_MAX as u64)
            .map(|i| Duration::from_micros(1 + (i * 7919) % 5_000_000))
            .collect();
        let mut exact = Latency::new();
        let mut reference = Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3).unwrap();
        for value in &values {
            exact.record(*value);
            reference.record(value.as_nanos() / 1_000).unwrap();
        }
        assert!(exact.histogram.is_none());
        let hdr = Latency {
            exact: Vec::new(),
            histogram: Some(reference),
        };
        let (a, b) = (exact.summary(), hdr.summary());
        assert_eq!(a.count, b.count);
        for (x, y) in [
            (a.p50, b.p50),
            (a.p90, b.p90),
            (a.p99, b.p99),
            (a.max, b.max),
            (a.mean, b.mean),
        ] {
            assert!((x - y).abs() <= y * 1e-3 + 1e-3, "exact {x} vs hdr {y}");
        }
    }

    #[test]
    fn switches_to_hdr_past_the_exact_bound() {
        let mut latency = Latency::new();
        for i in 0..(EXACT_VALUES_MAX as u64 + 10) {
            latency.record(Duration::from_millis(i + 1));
        }
        assert!(latency.histogram.is_some());
        assert!(latency.exact.is_empty());
        assert_eq!(latency.count(), EXACT_VALUES_MAX as u64 + 10);
    }
}
