//! Engine throughput in events per second.
//!
//! The hold model keeps a fixed population of events, each rescheduling itself after an exponential
//! delay, so the queue holds exactly N entries throughout: it measures the event queue at that size.
//! The M/M/c model (M/M/4 at load 0.9) measures a whole trial: queue, streams, statistics and
//! fingerprint. Depends on `sim` and `criterion` only.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sim::engine::{Engine, Event};
use sim::mmc::{MmcConfig, exponential, run_replication};
use sim::random::{Stream, Streams};
use sim::time::{Duration, Instant};
use std::hint::black_box;

/// Events handed out per hold-model iteration.
const HOLD_EVENTS: u64 = 1_000_000;
/// The mean delay before a hold event reschedules itself.
const HOLD_DELAY_NANOS_MEAN: f64 = 1_000_000.0;

#[derive(Copy, Clone, Debug)]
struct Hold {
    holder: u32,
}

impl Event for Hold {
    fn digest(&self) -> u64 {
        u64::from(self.holder)
    }
}

fn hold_delay(stream: &mut Stream) -> Duration {
    exponential(stream, HOLD_DELAY_NANOS_MEAN)
}

/// Runs the hold model with `population` events for `HOLD_EVENTS` events; returns the fingerprint.
fn hold(population: u32) -> u64 {
    let mut stream = Streams::new(1).stream("bench.hold");
    let mut engine = Engine::new().with_event_limit(HOLD_EVENTS);
    for holder in 0..population {
        let delay = hold_delay(&mut stream);
        engine.schedule_at(Instant::ZERO.add(delay), Hold { holder });
    }
    while let Some((_, event)) = engine.next() {
        let delay = hold_delay(&mut stream);
        engine.schedule_in(delay, event);
    }
    assert_eq!(engine.events(), HOLD_EVENTS);
    assert_eq!(engine.pending(), population as usize);
    engine.fingerprint()
}

fn bench_hold(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("hold");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    group.measurement_time(std::time::Duration::from_secs(4));
    group.throughput(Throughput::Elements(HOLD_EVENTS));
    for population in [16u32, 1024] {
        group.bench_with_input(
            BenchmarkId::from_parameter(population),
            &population,
            |bencher, &population| bencher.iter(|| hold(black_box(population))),
        );
    }
    group.finish();
}

fn bench_mmc(criterion: &mut Criterion) {
    let config = MmcConfig {
        servers: 4,
        arrival_rate: 3.6,
        service_rate: 1.0,
        customers: 100_000,
        replications: 1,
        warmup_fraction: 0.1,
    };
    let events = run_replication(&config, 1, 0).events;
    let mut group = criterion.benchmark_group("mmc");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    group.measurement_time(std::time::Duration::from_secs(4));
    group.throughput(Throughput::Elements(events));
    group.bench_function("m_m_4_load_0.9", |bencher| {
        bencher.iter(|| run_replication(black_box(&config), 1, 0).fingerprint)
    });
    group.finish();
}

criterion_group!(benches, bench_hold, bench_mmc);
criterion_main!(benches);
