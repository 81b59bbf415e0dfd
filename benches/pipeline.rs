//! Pipeline throughput: explored trials per second on the hunting scenario (three tiny receipts,
//! judged by the oracle), and events per second of a 1 000-receipt trial of the built profile (the
//! `scale` scenario, shortened). Both configurations are the scenario files, merged along their
//! `extends` chain as the binary merges them.
//!
//! Depends on `sim`, `toml`, `libmimalloc-sys` (through the binary's allocator) and `criterion`
//! only.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sim::explore;
use sim::pipeline::{PipelineConfig, TrialOptions, run_trial};
use std::hint::black_box;

#[path = "../src/allocator.rs"]
mod allocator;

/// The allocator the binary uses, so that the figures are the binary's.
#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

/// Explored trials per criterion iteration.
const EXPLORED_TRIALS: u64 = 200;

/// A scenario file with its `extends` chain, merged as `receipt-sim` merges it.
fn scenario(name: &str) -> PipelineConfig {
    let read = |name: &str| -> toml::Table {
        let path = format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
        toml::from_str(&std::fs::read_to_string(&path).expect("scenario file")).expect("valid TOML")
    };
    let mut chain = vec![read(name)];
    while let Some(toml::Value::String(base)) = chain.last().expect("not empty").get("extends") {
        let base = base.trim_start_matches("../").to_string();
        chain.push(read(&base));
        assert!(chain.len() < 8, "extends chain too long");
    }
    let mut merged = toml::Table::new();
    for table in chain.into_iter().rev() {
        sim::scenario::merge_tables(&mut merged, table);
    }
    let config: PipelineConfig = sim::scenario::deserialize(&merged).expect("a valid scenario");
    config.validate().expect("a valid configuration");
    config
}

fn exploration(c: &mut Criterion) {
    let config = scenario("hunt.toml");
    let events = run_trial(&config, None, &TrialOptions::default())
        .report
        .events;
    let mut group = c.benchmark_group("explore");
    group.throughput(Throughput::Elements(EXPLORED_TRIALS));
    group.sample_size(20);
    group.bench_function("hunt_trials", |b| {
        let mut next: u64 = 0;
        b.iter(|| {
            for _ in 0..EXPLORED_TRIALS {
                let choices = explore::choices_for(config.seed, next, events);
                black_box(explore::explore(&config, &choices));
                next += 1;
            }
        })
    });
    group.finish();
}

fn built_trial(c: &mut Criterion) {
    let mut config = scenario("scale.toml");
    config.workload.receipts = 1_000;
    let events = run_trial(&config, None, &TrialOptions::default())
        .report
        .events;
    let mut group = c.benchmark_group("trial");
    group.throughput(Throughput::Elements(events));
    group.sample_size(10);
    group.bench_function("built_1000_receipts", |b| {
        b.iter(|| {
            black_box(
                run_trial(&config, None, &TrialOptions::default())
                    .report
                    .events,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, exploration, built_trial);
criterion_main!(benches);
