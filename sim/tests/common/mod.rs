//! What the pipeline's trial tests share: workload shapes, trials with history, history queries.
//! Each test file uses some of it.
#![allow(dead_code)]

use sim::pipeline::config::{ArrivalProcess, Burst};
use sim::pipeline::history::{HistoryEvent, HistoryRecord};
use sim::pipeline::{
    HistoryFilter, PipelineConfig, Trial, TrialOptions, ValidatedConfig, run_trial,
};
use sim::time::Duration;

/// A configuration of a test, validated (a test's configuration is a literal: invalid is a bug).
pub fn valid(config: &PipelineConfig) -> ValidatedConfig {
    ValidatedConfig::new(config.clone()).expect("a valid configuration")
}

pub fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// `receipts` receipts, one every `gap`, one receipt per image.
pub fn spaced(mut config: PipelineConfig, receipts: u64, gap: Duration) -> PipelineConfig {
    config.workload.receipts = receipts;
    config.workload.arrival = ArrivalProcess::Trace;
    config.workload.trace = (0..receipts).map(|i| Duration(gap.0 * i)).collect();
    config.workload.receipts_per_image = sim::distribution::NumberDist::constant(1.0);
    config
}

/// `receipts` receipts uploaded at once.
pub fn burst(mut config: PipelineConfig, receipts: u64) -> PipelineConfig {
    config.workload.receipts = receipts;
    config.workload.arrival = ArrivalProcess::Bursts;
    config.workload.bursts = vec![Burst {
        at: Duration::ZERO,
        receipts,
    }];
    config
}

pub fn run_with_history(config: &PipelineConfig) -> Trial {
    let options = TrialOptions {
        history: HistoryFilter::All,
        ..TrialOptions::default()
    };
    run_trial(&valid(config), None, &options)
}

/// The trial's history records of one event, in order.
pub fn events(trial: &Trial, event: HistoryEvent) -> impl Iterator<Item = &HistoryRecord> {
    trial
        .history
        .records
        .iter()
        .filter(move |record| record.event == event)
}
