//! A configuration that passed validation, as a trial takes it: the four parts (behaviour,
//! deployment, service model, faults) built once, what is none of them (the seed, the horizon,
//! the workload), and the source `PipelineConfig` for reports. A trial never validates again, so
//! no value a user gave can reach an assertion of the model.
//!
//! Depends on the configuration's own modules only.

use super::{
    Behaviour, ConfigError, Deployment, Faults, Flow, PipelineConfig, ServiceModel, WorkloadConfig,
};
use crate::time::Duration;
use std::sync::Arc;

/// The four parts, shared between the copies `with_seed` makes (a hunt makes one per trial).
#[derive(Clone, Debug, PartialEq)]
struct Parts {
    behaviour: Behaviour,
    deployment: Deployment,
    model: ServiceModel,
    faults: Faults,
}

/// What a trial runs. The parts are read through their accessors; the source configuration
/// through `source` or `Deref` (reports, exports). Change it only through `PipelineConfig` and
/// validate again.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedConfig {
    source: PipelineConfig,
    parts: Arc<Parts>,
}

impl ValidatedConfig {
    /// Validates `config` and builds its parts.
    pub fn new(config: PipelineConfig) -> Result<ValidatedConfig, ConfigError> {
        config.validate()?;
        let parts = Parts {
            behaviour: Behaviour::of(&config),
            deployment: Deployment::of(&config),
            model: ServiceModel::of(&config),
            faults: Faults::of(&config),
        };
        Ok(ValidatedConfig {
            source: config,
            parts: Arc::new(parts),
        })
    }
    /// What the real code does.
    #[inline]
    pub fn behaviour(&self) -> &Behaviour {
        &self.parts.behaviour
    }
    /// Concurrency, batch sizes, timeouts.
    #[inline]
    pub fn deployment(&self) -> &Deployment {
        &self.parts.deployment
    }
    /// Distributions, bandwidths and the services' constants.
    #[inline]
    pub fn model(&self) -> &ServiceModel {
        &self.parts.model
    }
    /// Injected faults.
    #[inline]
    pub fn faults(&self) -> &Faults {
        &self.parts.faults
    }
    /// The trial's seed.
    #[inline]
    pub fn seed(&self) -> u64 {
        self.source.seed
    }
    /// The trial stops at this virtual time even if work remains.
    #[inline]
    pub fn horizon(&self) -> Duration {
        self.source.horizon
    }
    /// The receipts the trial generates and how they arrive.
    #[inline]
    pub fn workload(&self) -> &WorkloadConfig {
        &self.source.workload
    }
    /// The configuration as the user wrote it (validated).
    #[inline]
    pub fn source(&self) -> &PipelineConfig {
        &self.source
    }
    /// The configuration, to change and validate again.
    pub fn into_inner(self) -> PipelineConfig {
        self.source
    }
    /// The same configuration with another seed (every seed is valid; the parts are shared).
    pub fn with_seed(&self, seed: u64) -> ValidatedConfig {
        let mut source = self.source.clone();
        source.seed = seed;
        ValidatedConfig {
            source,
            parts: Arc::clone(&self.parts),
        }
    }
    /// Sets the seed (every seed is valid; the parts do not depend on it).
    pub fn set_seed(&mut self, seed: u64) {
        self.source.seed = seed;
    }
    /// The same configuration with another flow (both flows are valid).
    pub fn with_flow(&self, flow: Flow) -> ValidatedConfig {
        let mut source = self.source.clone();
        source.flow = flow;
        let mut parts = Arc::clone(&self.parts);
        Arc::make_mut(&mut parts).behaviour.upload.flow = flow;
        ValidatedConfig { source, parts }
    }
}

impl std::ops::Deref for ValidatedConfig {
    type Target = PipelineConfig;
    fn deref(&self) -> &PipelineConfig {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_builds_the_parts_and_refuses_an_invalid_configuration() {
        let mut config = PipelineConfig::built();
        config.upload.delta_upload_error_share = 0.25;
        let valid = ValidatedConfig::new(config.clone()).unwrap();
        assert_eq!(valid.source(), &config);
        assert_eq!(valid.behaviour().upload.flow, config.flow);
        assert_eq!(
            valid.deployment().upload.concurrency,
            config.upload.concurrency
        );
        assert_eq!(
            valid.model().store.bytes_per_entry,
            config.store.bytes_per_entry
        );
        assert_eq!(valid.faults().delta_upload_error_share, 0.25);
        let mut invalid = config;
        invalid.upload.concurrency = 0;
        let error = ValidatedConfig::new(invalid).unwrap_err();
        assert_eq!(error.field, "upload.concurrency");
    }

    #[test]
    fn with_seed_and_with_flow_change_both_copies() {
        let valid = ValidatedConfig::new(PipelineConfig::default()).unwrap();
        let seeded = valid.with_seed(42);
        assert_eq!((seeded.seed(), seeded.source().seed), (42, 42));
        assert!(Arc::ptr_eq(&valid.parts, &seeded.parts));
        let new = seeded.with_flow(Flow::New);
        assert_eq!(
            (new.behaviour().upload.flow, new.source().flow),
            (Flow::New, Flow::New)
        );
        assert_eq!(valid.behaviour().upload.flow, Flow::Old);
        let rebuilt = ValidatedConfig::new(new.source().clone()).unwrap();
        assert_eq!(new, rebuilt);
    }
}
