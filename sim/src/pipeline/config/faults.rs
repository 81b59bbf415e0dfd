//! The faults part of a trial's configuration: what goes wrong on purpose (the `[faults]` table,
//! and the share of delta uploads that fail). Each share is drawn by the simulated driver from a
//! stream of its own, so turning one on shifts no other draw. Cold starts and duplicate
//! deliveries are not here: they are how the services work, so they are rates of the service
//! model.
//!
//! Built from a validated `PipelineConfig` by `Faults::of`, which copies the `[faults]` table whole.
//! Depends on the configuration's own types only.

use super::{FaultsConfig, PipelineConfig};

/// The injected faults, all off by default.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// The `[faults]` table as validated: stalls, kills after the pointer write, stream
    /// processor retries, throttled starts and Chroma errors.
    pub injected: FaultsConfig,
    /// Probability that one delta upload of the upload Lambda fails (`upload.delta_upload_error_share`).
    pub delta_upload_error_share: f64,
}

impl Faults {
    /// The faults of a configuration that passed validation.
    pub fn of(config: &PipelineConfig) -> Faults {
        Faults {
            injected: config.faults.clone(),
            delta_upload_error_share: config.upload.delta_upload_error_share,
        }
    }
}
