//! What the benchmarks share: an embedded scenario loaded exactly as `receipt-sim` loads it (the
//! binary's own loader, through its library), and the pipeline configuration it gives. Each
//! benchmark uses some of it.
//!
//! Depends on `sim` and the `receipt_sim` library only.
#![allow(dead_code)]

use receipt_sim::load::load;
use sim::pipeline::ValidatedConfig;

/// An embedded scenario (`scale`, `hunt`, ...) merged along its `extends` chain.
pub fn scenario(name: &str) -> toml::Table {
    match load(name, None, &[]) {
        Ok(loaded) => loaded.table,
        Err(failure) => panic!("scenario {name}: {failure}"),
    }
}

/// The validated pipeline configuration of an embedded scenario.
pub fn pipeline(name: &str) -> ValidatedConfig {
    match load(name, None, &[]).and_then(|loaded| receipt_sim::pipeline_scenario::load(&loaded)) {
        Ok(scenario) => scenario.config,
        Err(failure) => panic!("scenario {name}: {failure}"),
    }
}
