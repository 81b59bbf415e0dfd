//! Distributions of durations and of plain numbers, written in scenario files in a readable form.
//!
//! Forms (durations carry units, numbers do not):
//! `20s` (constant), `uniform(15s, 30s)`, `exponential(2s)` (mean), `normal(25s, 3s)` (mean, standard
//! deviation, truncated at zero), `lognormal(median=20s, p99=42.3s)`, `empirical(1s, 2s, 5s)`,
//! `mixture(0.99 * uniform(20s, 30s), 0.01 * 42.3s)`.
//! Depends on `time` and `random`; samples with `rand_distr`.

use crate::random::Stream;
use crate::time::Duration;

/// A distribution of non-negative durations.
#[derive(Clone, Debug, PartialEq)]
pub struct DurationDist(Distribution);

/// A distribution of plain numbers (counts, shares, rates).
#[derive(Clone, Debug, PartialEq)]
pub struct NumberDist(Distribution);

/// The shape shared by both; values are nanoseconds for durations, plain numbers otherwise.
#[derive(Clone, Debug, PartialEq)]
pub enum Distribution {
    Constant(f64),
    Uniform { low: f64, high: f64 },
    Exponential { mean: f64 },
    Normal { mean: f64, sd: f64 },
    LogNormal { median: f64, p99: f64 },
    Empirical(Vec<f64>),
    Mixture(Vec<(f64, Distribution)>),
}

impl DurationDist {
    pub fn constant(value: Duration) -> DurationDist {
        DurationDist(Distribution::Constant(value.as_nanos() as f64))
    }
    pub fn uniform(low: Duration, high: Duration) -> DurationDist {
        DurationDist(Distribution::Uniform { low: low.as_nanos() as f64, high: high.as_nanos() as f64 })
    }
    pub fn parse(_text: &str) -> Result<DurationDist, String> {
        todo!()
    }
    pub fn sample(&self, _stream: &mut Stream) -> Duration {
        todo!()
    }
    pub fn mean(&self) -> Duration {
        todo!()
    }
}

impl NumberDist {
    pub fn constant(value: f64) -> NumberDist {
        NumberDist(Distribution::Constant(value))
    }
    pub fn uniform(low: f64, high: f64) -> NumberDist {
        NumberDist(Distribution::Uniform { low, high })
    }
    pub fn parse(_text: &str) -> Result<NumberDist, String> {
        todo!()
    }
    pub fn sample(&self, _stream: &mut Stream) -> f64 {
        todo!()
    }
    /// A sample rounded to the nearest whole number, at least zero.
    pub fn sample_count(&self, _stream: &mut Stream) -> u64 {
        todo!()
    }
    pub fn mean(&self) -> f64 {
        todo!()
    }
}
