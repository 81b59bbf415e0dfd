//! Pipeline throughput: explored trials per second on the hunting scenario (three tiny receipts,
//! judged by the oracle), and events per second of a 1 000-receipt trial of the built profile (the
//! `scale` scenario, shortened). Both configurations are the scenario files, merged along their
//! `extends` chain as the binary merges them.
//!
//! Depends on `sim`, the `receipt_sim` library (its loader and allocator) and `criterion` only.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sim::explore;
use sim::pipeline::{TrialOptions, ValidatedConfig, run_trial};
use std::hint::black_box;

mod common;

use common::pipeline;

/// The allocator the binary uses, so that the figures are the binary's.
#[global_allocator]
static ALLOCATOR: receipt_sim::allocator::Allocator = receipt_sim::allocator::Allocator;

/// Explored trials per criterion iteration.
const EXPLORED_TRIALS: u64 = 200;

fn exploration(c: &mut Criterion) {
    let config = pipeline("hunt");
    let events = run_trial(&config, None, &TrialOptions::default())
        .report
        .events;
    let mut group = c.benchmark_group("explore");
    group.throughput(Throughput::Elements(EXPLORED_TRIALS));
    group.sample_size(20);
    group.bench_function("hunt_trials", |b| {
        let mut next: u64 = 0;
        // As a hunt's worker does: one explorer for trial after trial.
        let mut explorer = explore::Explorer::new(&config);
        b.iter(|| {
            for _ in 0..EXPLORED_TRIALS {
                let choices = explore::choices_for(config.seed, next, events);
                black_box(explorer.explore(&choices));
                next += 1;
            }
        })
    });
    group.finish();
}

fn built_trial(c: &mut Criterion) {
    let mut scale = pipeline("scale").into_inner();
    scale.workload.receipts = 1_000;
    let config = ValidatedConfig::new(scale).expect("a valid configuration");
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
