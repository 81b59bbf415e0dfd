//! The faults part of a trial's configuration: what goes wrong on purpose (the `[faults]` table,
//! and the share of delta uploads that fail). Each share is drawn by the simulated driver from a
//! stream of its own, so turning one on shifts no other draw. Cold starts and duplicate
//! deliveries are not here: they are how the services work, so they are rates of the service
//! model.
//!
//! Built from a validated `PipelineConfig` by `Faults::of`. Depends on `distribution` and the
//! configuration's own enums only.

use super::{PipelineConfig, StallPoint};
use crate::distribution::DurationDist;

/// The injected faults, all off by default.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Share of compaction invocations that stall at `compaction_stall_point`.
    pub compaction_stall_share: f64,
    pub compaction_stall: DurationDist,
    pub compaction_stall_point: StallPoint,
    /// Share of pointer writes after which the compaction invocation dies at once.
    pub kill_after_pointer_share: f64,
    /// Share of stream processor invocations that fail after sending their messages.
    pub stream_retry_share: f64,
    /// Share of compaction invocation starts that are throttled.
    pub throttle_share: f64,
    /// Share of the compaction's Chroma operations that fail as unavailable.
    pub collection_error_share: f64,
    /// Probability that one delta upload of the upload Lambda fails (`upload.delta_upload_error_share`).
    pub delta_upload_error_share: f64,
}

impl Faults {
    /// The faults of a configuration that passed validation.
    pub fn of(config: &PipelineConfig) -> Faults {
        let faults = &config.faults;
        Faults {
            compaction_stall_share: faults.compaction_stall_share,
            compaction_stall: faults.compaction_stall.clone(),
            compaction_stall_point: faults.compaction_stall_point,
            kill_after_pointer_share: faults.kill_after_pointer_share,
            stream_retry_share: faults.stream_retry_share,
            throttle_share: faults.throttle_share,
            collection_error_share: faults.collection_error_share,
            delta_upload_error_share: config.upload.delta_upload_error_share,
        }
    }
}
