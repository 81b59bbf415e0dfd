//! The driver's own invariants: slots and generations, stale events ignored, deadline kills that
//! end their invocation and give its concurrency back, and the event kinds.

use super::*;
use crate::engine::TieBreak;
use crate::pipeline::history::HistoryFilter;
use crate::workload::generate;

#[test]
fn a_reused_slot_has_a_new_generation_and_a_stale_take_finds_nothing() {
    let mut slots: Slots<u32> = Slots::new();
    let (slot, generation) = slots.insert(7);
    assert_eq!(slots.live(), 1);
    let value = slots.take(slot, generation).expect("live");
    assert_eq!(*value, 7);
    assert!(slots.take(slot, generation).is_none(), "taken already");
    slots.put_back(slot, value);
    assert_eq!(slots.get(slot, generation), Some(&7));
    let _ = slots.take(slot, generation).expect("live");
    slots.release(slot);
    assert_eq!(slots.live(), 0);
    let (reused, next) = slots.insert(8);
    assert_eq!(reused, slot, "a freed slot is reused");
    assert_eq!(next, generation + 1);
    assert!(
        slots.take(slot, generation).is_none(),
        "a stale step is ignored"
    );
    assert!(slots.get(slot, generation).is_none());
    assert_eq!(slots.get(slot, next), Some(&8));
    assert!(slots.take(99, 0).is_none(), "an unknown slot is ignored");
}

#[test]
fn event_kinds_are_listed_in_order_and_named_once() {
    for (index, kind) in EventKind::ALL.iter().enumerate() {
        assert_eq!(*kind as usize, index);
    }
    let mut names: Vec<&str> = EventKind::ALL.iter().map(|kind| kind.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), EventKind::ALL.len());
    let step = Event::Step {
        function: Function::Compaction,
        slot: 0,
        generation: 0,
    };
    assert_eq!(step.kind(), EventKind::CompactionStep);
}

fn simulate(config: &PipelineConfig, receipts: &[Receipt]) -> (u64, EventCounts, TrialCounters) {
    let engine = Engine::new()
        .with_horizon(Instant::ZERO.add(config.horizon))
        .with_tie_break(TieBreak::Fifo);
    let history = History::new(HistoryFilter::Off);
    let mut simulation = Simulation::new(config, receipts, engine, history, ReportDetail::Brief);
    simulation.run();
    assert_eq!(simulation.running(), (0, 0, 0), "every invocation ended");
    assert_eq!(simulation.compaction_lambda.in_flight(), 0);
    assert_eq!(simulation.upload_lambda.in_flight(), 0);
    (
        simulation.engine.events(),
        simulation.events_by_kind.clone(),
        simulation.counters.clone(),
    )
}

/// A compaction whose every run outlasts its timeout is killed at the deadline: the kill ends it
/// (its slot and concurrency come back, so later batches start), and the steps it had scheduled
/// past the deadline never fire.
#[test]
fn a_kill_at_the_deadline_ends_the_invocation_and_frees_its_concurrency() {
    let mut config = PipelineConfig::default();
    config.workload.receipts = 6;
    config.compaction.reserved_concurrency = 1;
    config.compaction.timeout = Duration::from_millis(1);
    config.horizon = Duration::from_secs(4 * 3600);
    let receipts = generate(config.seed, &config.workload);
    let (events, kinds, counters) = simulate(&config, &receipts);
    assert!(counters.kills.compaction > 1, "{counters:?}");
    assert_eq!(kinds.get(EventKind::Kill), counters.kills.compaction);
    let total: u64 = kinds.by_name().map(|(_, count)| count).sum();
    assert_eq!(total, events, "every event is counted under one kind");
}
