//! Instruction counts under valgrind's callgrind (gungraun): a small pipeline trial (the `quick`
//! scenario), a small hunt (50 explored trials of the `hunt` scenario) and one M/M/c replication
//! of 20 000 customers. Counts repeat exactly on a busy machine, where wall time drifts, so they
//! are what a change in speed is judged by.
//!
//! Run: `cargo bench --bench instructions` (needs valgrind and `gungraun-runner` 0.20.0). Compare
//! two commits: run it on the first with `-- --save-baseline=before`, check out the second, run it
//! with `-- --baseline=before`; gungraun prints each count beside the saved one.
//!
//! Depends on `sim`, the `receipt_sim` library (its loader) and `gungraun` only.

use gungraun::{library_benchmark, library_benchmark_group, main};
use sim::explore;
use sim::pipeline::{TrialOptions, ValidatedConfig, run_trial};
use std::hint::black_box;

mod common;

use common::{pipeline, scenario};

/// Explored trials in the small hunt.
const HUNT_TRIALS: u64 = 50;

fn mmc() -> sim::mmc::MmcScenario {
    let mut scenario: sim::mmc::MmcScenario =
        sim::scenario::deserialize(&scenario("mmc")).expect("a valid M/M/c scenario");
    scenario.mmc.customers = 20_000;
    scenario.mmc.validate().expect("a valid M/M/c model");
    scenario
}

#[library_benchmark]
#[bench::quick(pipeline("quick"))]
fn trial(config: ValidatedConfig) -> u64 {
    black_box(
        run_trial(&config, None, &TrialOptions::default())
            .report
            .events,
    )
}

#[library_benchmark]
#[bench::hunt(pipeline("hunt"))]
fn hunt(config: ValidatedConfig) -> usize {
    let events = run_trial(&config, None, &TrialOptions::default())
        .report
        .events;
    let mut affected = 0;
    // As a hunt's worker does: one explorer for trial after trial.
    let mut explorer = explore::Explorer::new(&config);
    for index in 0..HUNT_TRIALS {
        let choices = explore::choices_for(config.seed, index, events);
        affected += explorer.explore(&choices).affected.len();
    }
    black_box(affected)
}

#[library_benchmark]
#[bench::replication(mmc())]
fn mmc_replication(scenario: sim::mmc::MmcScenario) -> u64 {
    black_box(sim::mmc::run_replication(&scenario.mmc, scenario.seed, 0).events)
}

library_benchmark_group!(
    name = simulator,
    benchmarks = [trial, hunt, mmc_replication]
);
main!(library_benchmark_groups = simulator);
