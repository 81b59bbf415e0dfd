//! What a trial measures: latency histograms ("labels saved", "labels visible", and per stage) and
//! bounded series of queue depth and oldest-message age over time. Function utilisation comes from
//! the Lambda model; counters live with the driver.
//!
//! Latencies go into HDR histograms (3 significant digits, recorded in microseconds, reported in
//! milliseconds). Samples over time are bounded: when the buffer is full every other sample is
//! dropped and the interval doubles. Depends on `time` and `hdrhistogram`; knows no services.

use crate::time::{Duration, Instant};
use hdrhistogram::Histogram;
use serde::Serialize;
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

/// A latency histogram in microseconds.
#[derive(Clone, Debug)]
pub struct Latency {
    histogram: Histogram<u64>,
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
    pub count: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        let histogram =
            Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds");
        Latency { histogram }
    }
    pub fn record(&mut self, latency: Duration) {
        let micros = (latency.as_nanos() / 1_000).clamp(1, LATENCY_US_MAX);
        self.histogram.record(micros).expect("value within bounds");
    }
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }
    pub fn summary(&self) -> LatencySummary {
        let ms = |micros: u64| micros as f64 / 1_000.0;
        if self.histogram.is_empty() {
            return LatencySummary {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0,
                mean: 0.0,
                count: 0,
            };
        }
        LatencySummary {
            p50: ms(self.histogram.value_at_quantile(0.50)),
            p90: ms(self.histogram.value_at_quantile(0.90)),
            p99: ms(self.histogram.value_at_quantile(0.99)),
            max: ms(self.histogram.max()),
            mean: self.histogram.mean() / 1_000.0,
            count: self.histogram.len(),
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
            samples: Vec::with_capacity(SAMPLES_MAX),
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
    histograms: Vec<Latency>,
}

impl Stages {
    pub fn new() -> Stages {
        Stages {
            histograms: Stage::ALL.iter().map(|_| Latency::new()).collect(),
        }
    }
    pub fn record(&mut self, stage: Stage, latency: Duration) {
        self.histograms[stage as usize].record(latency);
    }
    pub fn get(&self, stage: Stage) -> &Latency {
        &self.histograms[stage as usize]
    }
    pub fn summaries(&self) -> BTreeMap<String, LatencySummary> {
        Stage::ALL
            .iter()
            .map(|stage| (stage.name().to_string(), self.get(*stage).summary()))
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
}
