//! The driver's own invariants: slots and generations, stale events ignored, deadline kills that
//! end their invocation and give its concurrency back, and the event kinds.

use super::*;
use crate::engine::TieBreak;
use crate::pipeline::config::PipelineConfig;
use crate::pipeline::history::HistoryFilter;
use crate::workload::generate;

fn valid(config: PipelineConfig) -> ValidatedConfig {
    ValidatedConfig::new(config).expect("a valid configuration")
}

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
fn an_ended_invocations_box_is_the_next_ones_and_at_most_sixteen_are_kept() {
    let mut slots: Slots<u32> = Slots::new();
    let (slot, generation) = slots.insert(1);
    let ended = slots.take(slot, generation).expect("live");
    let address: *const u32 = &*ended;
    slots.release(slot);
    slots.recycle(ended);
    // The next insert moves into that box; until then its old content is the caller's to read.
    assert_eq!(slots.spare_mut().copied(), Some(1));
    let (slot, generation) = slots.insert(2);
    let again = slots.take(slot, generation).expect("live");
    assert_eq!(&*again as *const u32, address, "the ended invocation's box");
    assert_eq!(*again, 2);
    assert!(slots.spare_mut().is_none());
    slots.put_back(slot, again);
    // Twenty invocations end: sixteen boxes are kept, each taken by one insert.
    let started: Vec<(u32, u32)> = (0..20).map(|value| slots.insert(value)).collect();
    for (slot, generation) in started {
        let ended = slots.take(slot, generation).expect("live");
        slots.release(slot);
        slots.recycle(ended);
    }
    let mut reused = 0;
    while slots.spare_mut().is_some() {
        slots.insert(0);
        reused += 1;
    }
    assert_eq!(reused, 16);
    // Renewed slots hold no invocation and keep the boxes of the 17 still running, up to 16.
    assert_eq!(slots.live(), 17);
    let mut renewed = slots.renewed();
    assert_eq!(renewed.live(), 0);
    let mut kept = 0;
    while renewed.spare_mut().is_some() {
        renewed.insert(0);
        kept += 1;
    }
    assert_eq!(kept, 16);
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

fn simulate(config: &ValidatedConfig, receipts: &[Receipt]) -> (u64, EventCounts, TrialCounters) {
    let engine = Engine::new()
        .with_horizon(Instant::ZERO.add(config.horizon))
        .with_tie_break(TieBreak::Fifo);
    let history = History::new(HistoryFilter::Off);
    let mut simulation = Simulation::new(config, receipts, engine, history, ReportDetail::Brief);
    simulation.run();
    assert_every_invocation_ended_once(&simulation);
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
    let (events, kinds, counters) = simulate(&valid(config), &receipts);
    assert!(counters.kills.compaction > 1, "{counters:?}");
    assert_eq!(kinds.get(EventKind::Kill), counters.kills.compaction);
    let total: u64 = kinds.by_name().map(|(_, count)| count).sum();
    assert_eq!(total, events, "every event is counted under one kind");
}

/// Each function's invocations: every one started went into a slot, and every slot was released
/// exactly once (a return, a kill or a death after the pointer write), so none is left live and
/// every concurrency reservation came back.
fn assert_every_invocation_ended_once<P: Performer>(simulation: &Simulation<'_, P>) {
    let functions = [
        (
            "upload",
            simulation.uploads.tally(),
            &simulation.upload_lambda,
        ),
        (
            "stream processor",
            simulation.processors.tally(),
            &simulation.processor_lambda,
        ),
        (
            "compaction",
            simulation.compactions.tally(),
            &simulation.compaction_lambda,
        ),
    ];
    for (name, (inserted, released), lambda) in functions {
        assert_eq!(
            inserted,
            lambda.counters().invocations,
            "{name}: one slot a start"
        );
        assert_eq!(
            released, inserted,
            "{name}: each invocation ends exactly once"
        );
        assert_eq!(lambda.in_flight(), 0, "{name}: its concurrency came back");
    }
    assert_eq!(simulation.running(), (0, 0, 0), "no slot is live");
    assert!(
        simulation.in_flight.is_empty(),
        "no effect is left in flight"
    );
    let counters = &simulation.counters;
    let kills = [
        (
            simulation.upload_lambda.counters().kills,
            counters.kills.upload,
        ),
        (
            simulation.processor_lambda.counters().kills,
            counters.kills.stream_processor,
        ),
        (
            simulation.compaction_lambda.counters().kills,
            counters.kills.compaction,
        ),
    ];
    for (lambda_kills, driver_kills) in kills {
        assert_eq!(
            lambda_kills, driver_kills,
            "every kill reached the Lambda once"
        );
    }
}

fn run_to_end<'a>(config: &'a ValidatedConfig, receipts: &'a [Receipt]) -> Simulation<'a> {
    let engine = Engine::new()
        .with_horizon(Instant::ZERO.add(config.horizon))
        .with_tie_break(TieBreak::Fifo);
    let history = History::new(HistoryFilter::Off);
    let mut simulation = Simulation::new(config, receipts, engine, history, ReportDetail::Brief);
    simulation.run();
    assert_eq!(
        simulation.engine.pending(),
        0,
        "the trial ran to its end: {:?} at {:?}",
        simulation.engine.stop(),
        simulation.engine.now()
    );
    simulation
}

/// Every injected fault on, and deadlines short enough that each function is killed sometimes.
fn faulty_config() -> PipelineConfig {
    let mut config = PipelineConfig::default();
    config.workload.receipts = 24;
    config.faults.compaction_stall_share = 0.3;
    config.faults.kill_after_pointer_share = 0.2;
    config.faults.stream_retry_share = 0.2;
    config.faults.throttle_share = 0.2;
    config.compaction.timeout = Duration::from_secs(40);
    config
}

#[test]
fn every_invocation_started_ends_exactly_once_and_gives_its_concurrency_back() {
    for config in [PipelineConfig::default(), faulty_config()].map(valid) {
        let receipts = generate(config.seed, &config.workload);
        let simulation = run_to_end(&config, &receipts);
        assert!(simulation.compactions.tally().0 > 0, "compactions ran");
        assert_every_invocation_ended_once(&simulation);
    }
}

#[test]
fn faults_and_kills_strike_in_the_faulty_trial() {
    let config = valid(faulty_config());
    let receipts = generate(config.seed, &config.workload);
    let simulation = run_to_end(&config, &receipts);
    let counters = &simulation.counters;
    assert!(counters.kills.compaction > 0, "{counters:?}");
    assert!(counters.kills_after_pointer > 0, "{counters:?}");
    assert!(counters.stream_retries > 0, "{counters:?}");
    assert!(counters.stalls > 0, "{counters:?}");
}

/// A step, kill or heartbeat of an invocation that has ended (its generation no longer live in
/// its slot) is ignored: nothing is performed, counted, scheduled or released.
#[test]
fn a_late_event_of_an_ended_invocation_changes_nothing() {
    let config = valid(faulty_config());
    let receipts = generate(config.seed, &config.workload);
    let mut simulation = run_to_end(&config, &receipts);
    let counters = simulation.counters.clone();
    let tallies = (
        simulation.uploads.tally(),
        simulation.processors.tally(),
        simulation.compactions.tally(),
    );
    let now = simulation.engine.now();
    let upload: Vec<(u32, u32)> = simulation.uploads.generations().collect();
    let processor: Vec<(u32, u32)> = simulation.processors.generations().collect();
    let compaction: Vec<(u32, u32)> = simulation.compactions.generations().collect();
    assert!(!compaction.is_empty());
    for (slot, generation) in upload {
        simulation.step::<UploadSlot>(now, slot, generation);
        simulation.kill::<UploadSlot>(now, slot, generation);
    }
    for (slot, generation) in processor {
        simulation.step::<ProcessorSlot>(now, slot, generation);
        simulation.kill::<ProcessorSlot>(now, slot, generation);
    }
    for (slot, generation) in compaction {
        simulation.step::<CompactionSlot>(now, slot, generation);
        simulation.kill::<CompactionSlot>(now, slot, generation);
        simulation.heartbeat(now, slot, generation);
    }
    assert_eq!(simulation.counters, counters);
    assert_eq!(simulation.engine.pending(), 0, "nothing was scheduled");
    let after = (
        simulation.uploads.tally(),
        simulation.processors.tally(),
        simulation.compactions.tally(),
    );
    assert_eq!(after, tallies, "no slot was released again");
    assert_every_invocation_ended_once(&simulation);
}

fn next_event(simulation: &mut Simulation<'_>) -> (Instant, Event) {
    simulation.engine.next().expect("an event was scheduled")
}

/// An effect's completion is a step at its end when that lies within the deadline, else a kill
/// at the deadline (and never an event before the engine's present).
#[test]
fn an_effect_past_the_deadline_schedules_a_kill_at_the_deadline_instead_of_its_step() {
    let config = valid(PipelineConfig::default());
    let receipts = generate(config.seed, &config.workload);
    let engine = Engine::new().with_tie_break(TieBreak::Fifo);
    let history = History::new(HistoryFilter::Off);
    let mut simulation = Simulation::new(&config, &receipts, engine, history, ReportDetail::Brief);
    let deadline = Instant::ZERO.add(Duration::from_secs(10));
    let within = Instant::ZERO.add(Duration::from_secs(3));
    let past = Instant::ZERO.add(Duration::from_secs(11));
    let function = Function::Compaction;
    simulation.schedule_step(function, 2, 5, within, deadline);
    let (at, event) = next_event(&mut simulation);
    assert_eq!(at, within);
    let step = Event::Step {
        function,
        slot: 2,
        generation: 5,
    };
    assert_eq!(event, step);
    simulation.schedule_step(function, 2, 5, past, deadline);
    let (at, event) = next_event(&mut simulation);
    assert_eq!(at, deadline, "the kill comes at the deadline");
    let kill = Event::Kill {
        function,
        slot: 2,
        generation: 5,
    };
    assert_eq!(event, kill);
}

/// An effect of no duration asked for at the engine's present completes at once, except a stream
/// processor's, each of which takes a step; any other is deferred from the later of `now` and the
/// engine's present.
#[test]
fn only_an_effect_of_no_duration_at_the_present_completes_without_a_step() {
    let config = valid(PipelineConfig::default());
    let receipts = generate(config.seed, &config.workload);
    let engine = Engine::new().with_tie_break(TieBreak::Fifo);
    let history = History::new(HistoryFilter::Off);
    let mut simulation = Simulation::new(&config, &receipts, engine, history, ReportDetail::Brief);
    let now = simulation.engine.now();
    let deadline = Instant::MAX;
    let zero = Duration::ZERO;
    assert!(!simulation.defer::<UploadSlot>(0, 0, now, zero, deadline));
    assert!(!simulation.defer::<CompactionSlot>(0, 0, now, zero, deadline));
    assert_eq!(simulation.engine.pending(), 0);
    assert!(simulation.defer::<ProcessorSlot>(0, 0, now, zero, deadline));
    let (at, event) = next_event(&mut simulation);
    assert_eq!(at, now);
    assert_eq!(event.kind(), EventKind::StreamProcessorStep);
    let later = now.add(Duration::from_secs(1));
    assert!(simulation.defer::<UploadSlot>(1, 0, later, zero, deadline));
    let (at, event) = next_event(&mut simulation);
    assert_eq!(at, later, "an effect asked for later completes then");
    assert_eq!(event.kind(), EventKind::UploadStep);
    let second = Duration::from_secs(1);
    assert!(simulation.defer::<CompactionSlot>(0, 0, now, second, deadline));
    let (at, event) = next_event(&mut simulation);
    assert_eq!(
        at,
        later.add(second),
        "from the engine's present, not the past"
    );
    assert_eq!(event.kind(), EventKind::CompactionStep);
}
