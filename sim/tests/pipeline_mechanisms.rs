//! Small hand-built trials of the pipeline whose outcome is known: the wait and its cap, convergence
//! of the described profile, the built profile's lost labels, FIFO order and dead letters, visibility
//! timeouts under running invocations, lock and pointer failures, concurrency limits, determinism and
//! common random numbers.

use sim::engine::TieBreak;
use sim::pipeline::config::FailureReporting;
use sim::pipeline::history::{Actor, HistoryEvent, HistoryRecord};
use sim::pipeline::{Flow, HistoryFilter, PipelineConfig, Trial, TrialOptions, run_trial};
use std::collections::{BTreeMap, BTreeSet};

mod common;

use common::{burst, events, run_with_history, secs, spaced, valid};

fn run(config: &PipelineConfig) -> Trial {
    run_trial(&valid(config), None, &TrialOptions::default())
}

/// A message token of a history detail: (receipt, record sequence, group, kind).
fn tokens(record: &HistoryRecord) -> Vec<(u32, u64, String, String)> {
    record
        .detail
        .split(' ')
        .skip(1)
        .map(|token| {
            let parts: Vec<&str> = token.split('/').collect();
            (
                parts[0].parse().unwrap(),
                parts[1].parse().unwrap(),
                parts[2].to_string(),
                parts[3].to_string(),
            )
        })
        .collect()
}

#[test]
fn built_old_flow_waits_the_full_cap_because_runs_are_never_marked() {
    let config = spaced(PipelineConfig::built(), 6, secs(1800));
    let report = run(&config).report;
    assert_eq!(report.stop, "empty");
    assert_eq!(report.counters.waits_capped, 6);
    let wait = &report.latency_ms.stages["wait"];
    assert_eq!(wait.count, 6);
    assert!((119_900.0..=120_200.0).contains(&wait.p50), "{wait:?}");
    assert!(wait.max <= 120_200.0, "{wait:?}");
    // Labels saved: OCR, embedding, the full wait and LangGraph at least.
    assert!(report.latency_ms.labels_saved.p50 > 120_000.0 + 3.0 * 15_000.0);
}

#[test]
fn described_old_flow_waits_for_the_marked_run_and_converges() {
    let config = spaced(PipelineConfig::default(), 6, secs(1800));
    let trial = run(&config);
    let report = &trial.report;
    assert_eq!(report.stop, "empty");
    assert_eq!(report.counters.waits_capped, 0, "{report:?}");
    assert!(report.latency_ms.stages["wait"].max < 120_000.0);
    assert_eq!(report.never_visible, 0, "{report:?}");
    assert_eq!(report.never_saved, 0);
    assert_eq!(report.latency_ms.labels_visible.count, 6);
    for latency in &trial.latencies {
        let saved = latency.labels_saved.unwrap();
        let visible = latency.labels_visible.unwrap();
        assert!(
            visible >= saved,
            "receipt {} visible before saved",
            latency.receipt
        );
    }
}

#[test]
fn built_profile_never_shows_labels_that_langgraph_did_not_change() {
    let config = spaced(PipelineConfig::built(), 4, secs(1800));
    let report = run(&config).report;
    assert_eq!(report.stop, "empty");
    assert!(report.counters.dropped_inserts > 0);
    assert!(
        report.counters.run_completed_failures == 0,
        "runs are never marked, so never completed"
    );
    assert_eq!(report.never_visible, 4, "{report:?}");
}

#[test]
fn same_seed_same_fingerprint_other_seed_other_fingerprint() {
    let mut config = spaced(PipelineConfig::default(), 5, secs(300));
    config.flow = Flow::New;
    let first = run(&config).report;
    let again = run(&config).report;
    assert_eq!(first.fingerprint, again.fingerprint);
    assert_eq!(first, again);
    // Keeping history changes nothing the trial does.
    assert_eq!(
        run_with_history(&config).report.fingerprint,
        first.fingerprint
    );
    config.seed += 1;
    assert_ne!(run(&config).report.fingerprint, first.fingerprint);
    // Another order of simultaneous events is replayable from its own seed too.
    let random = |seed| TrialOptions {
        tie_break: TieBreak::Random(sim::random::Streams::new(seed).stream("tie-break")),
        ..TrialOptions::default()
    };
    let a = run_trial(&valid(&config), None, &random(3)).report;
    assert_eq!(
        a.fingerprint,
        run_trial(&valid(&config), None, &random(3))
            .report
            .fingerprint
    );
    assert_eq!(a.stop, "empty");
}

#[test]
fn old_and_new_flow_draw_the_same_stage_durations_per_receipt() {
    let old = spaced(PipelineConfig::default(), 5, secs(600));
    let mut new = old.clone();
    new.flow = Flow::New;
    let old = run(&old).report;
    let new = run(&new).report;
    for stage in ["ocr", "embedding", "langgraph", "delta_upload"] {
        assert_eq!(
            old.latency_ms.stages[stage], new.latency_ms.stages[stage],
            "{stage}"
        );
    }
    assert!(new.latency_ms.labels_saved.mean < old.latency_ms.labels_saved.mean);
}

#[test]
fn reserved_concurrency_is_never_exceeded_under_a_burst() {
    let mut config = burst(PipelineConfig::default(), 60);
    config.flow = Flow::New;
    config.upload.concurrency = 20;
    config.compaction.reserved_concurrency = 4;
    let report = run(&config).report;
    assert_eq!(report.concurrency_max.upload, 20);
    assert_eq!(report.concurrency_max.compaction, 4);
    assert_eq!(report.concurrency_max.stream_processor, 1);
    assert_eq!(
        report.throttles.upload, 0,
        "the upload poller waits for room"
    );
    // The compaction mappings' pollers receive whatever the function's room: the reserved
    // concurrency refuses the batches beyond it (throttles) and is never exceeded.
    assert!(report.throttles.compaction > 0);
    config.queues.mapping_pollers = sim::pipeline::config::MappingPollers::FunctionCapacity;
    let waiting = run(&config).report;
    assert_eq!(waiting.concurrency_max.compaction, 4);
    assert_eq!(
        waiting.throttles.compaction, 0,
        "pollers that wait for room never ask beyond capacity"
    );
}

/// Every invocation that met `event` failed every message it held and deleted none.
fn assert_batches_failed_whole(trial: &Trial, event: HistoryEvent) -> usize {
    let mut checked = 0;
    for record in events(trial, event) {
        let actor = record.actor;
        let of_actor = |event: HistoryEvent| {
            trial
                .history
                .records
                .iter()
                .filter(move |r| r.actor == actor && r.event == event)
        };
        let received: usize = of_actor(HistoryEvent::BatchReceived)
            .map(|r| tokens(r).len())
            .sum();
        let failed: usize = of_actor(HistoryEvent::MessagesFailed)
            .map(|r| r.detail.parse::<usize>().unwrap())
            .sum();
        assert_eq!(
            of_actor(HistoryEvent::MessagesDeleted).count(),
            0,
            "{actor:?} deleted after {event:?}"
        );
        assert_eq!(
            failed, received,
            "{actor:?}: {event:?} must fail the whole batch"
        );
        checked += 1;
    }
    checked
}

#[test]
fn a_busy_lock_or_a_moved_pointer_fails_the_whole_batch() {
    let mut config = burst(PipelineConfig::default(), 12);
    config.flow = Flow::New;
    config.compaction.failure_reporting = FailureReporting::PerItem;
    let trial = run_with_history(&config);
    let busy = assert_batches_failed_whole(&trial, HistoryEvent::BusyAtQuickCheck)
        + assert_batches_failed_whole(&trial, HistoryEvent::BusyAtPublish);
    let moved = assert_batches_failed_whole(&trial, HistoryEvent::PointerMoved);
    assert!(busy > 0, "the burst makes invocations meet a busy lock");
    assert!(
        moved > 0,
        "the burst makes invocations find the pointer moved"
    );
    assert_eq!(
        busy as u64,
        trial.report.lock_failures.busy_at_quick_check + trial.report.lock_failures.busy_at_publish
    );
}

#[test]
fn fifo_groups_keep_send_order_and_messages_dead_letter_after_the_receive_limit() {
    let mut config = spaced(PipelineConfig::default(), 3, secs(120));
    config.flow = Flow::New;
    // Every compaction outlives its timeout: no message is ever deleted.
    config.compaction.timeout = secs(1);
    config.queues.visibility_timeout = secs(30);
    config.queues.receive_limit = 2;
    let trial = run_with_history(&config);
    let report = &trial.report;
    let mut sent_order: BTreeMap<String, Vec<(u32, u64, String)>> = BTreeMap::new();
    let mut sent = 0u64;
    for record in events(&trial, HistoryEvent::MessagesSent) {
        for (receipt, sequence, group, kind) in tokens(record) {
            sent_order
                .entry(group)
                .or_default()
                .push((receipt, sequence, kind));
            sent += 1;
        }
    }
    assert!(sent > 0);
    assert_eq!(
        report.dead_lettered.lines + report.dead_lettered.words,
        sent,
        "{report:?}"
    );
    assert_eq!(
        events(&trial, HistoryEvent::DeadLettered).count() as u64,
        sent
    );
    assert!(report.kills.compaction > 0);
    assert_eq!(report.latency_ms.labels_visible.count, 0);
    // Within a group, messages are first received in the order they were sent.
    let mut first_received: BTreeMap<String, Vec<(u32, u64, String)>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for record in events(&trial, HistoryEvent::BatchReceived) {
        for (receipt, sequence, group, kind) in tokens(record) {
            if seen.insert((receipt, sequence, kind.clone(), group.clone())) {
                first_received
                    .entry(group)
                    .or_default()
                    .push((receipt, sequence, kind));
            }
        }
    }
    assert_eq!(first_received, sent_order);
}

#[test]
fn a_visibility_timeout_shorter_than_the_work_hands_a_batch_out_twice() {
    let mut config = spaced(PipelineConfig::default(), 2, secs(600));
    config.flow = Flow::New;
    config.queues.visibility_timeout = secs(2);
    config.queues.receive_limit = 50;
    let trial = run_with_history(&config);
    // Some message was received by a second invocation while the first still ran.
    let mut holders: BTreeMap<(u32, u64, String, String), Actor> = BTreeMap::new();
    let mut overlaps = 0;
    let finished: BTreeSet<(Actor, u64)> = trial
        .history
        .records
        .iter()
        .filter(|r| {
            matches!(
                r.event,
                HistoryEvent::MessagesDeleted | HistoryEvent::MessagesFailed
            )
        })
        .map(|r| (r.actor, r.at.0))
        .collect();
    for record in events(&trial, HistoryEvent::BatchReceived) {
        for (receipt, sequence, group, kind) in tokens(record) {
            if let Some(previous) = holders.insert((receipt, sequence, group, kind), record.actor) {
                let previous_done_before = finished
                    .iter()
                    .any(|(actor, at)| *actor == previous && *at <= record.at.0);
                overlaps += usize::from(!previous_done_before);
            }
        }
    }
    assert!(overlaps > 0, "no batch was handed out twice concurrently");
    assert!(
        trial.report.counters.stale_deletes > 0,
        "the first holder's delete must fail (FIFO, stale handle)"
    );
}

#[test]
fn per_item_order_survives_a_parallelised_stream() {
    let mut config = burst(PipelineConfig::default(), 8);
    config.flow = Flow::New;
    config.stream.shards = 1;
    config.stream.parallelization_factor = 5;
    config.stream_processor.reserved_concurrency = 5;
    let trial = run_with_history(&config);
    let mut last: BTreeMap<(u32, String), u64> = BTreeMap::new();
    let mut labels = 0;
    for record in events(&trial, HistoryEvent::MessagesSent) {
        for (receipt, sequence, _, kind) in tokens(record) {
            if !kind.starts_with("label") {
                continue;
            }
            labels += 1;
            if let Some(previous) = last.insert((receipt, kind.clone()), sequence) {
                assert!(
                    previous < sequence,
                    "receipt {receipt} {kind}: record {sequence} sent after {previous}"
                );
            }
        }
    }
    assert!(labels > 100);
    assert!(
        trial.report.concurrency_max.stream_processor > 1,
        "the stream was read in parallel"
    );
}

#[test]
fn overload_stops_at_the_horizon_and_reports_backlog() {
    let mut config = burst(PipelineConfig::built(), 40);
    config.horizon = secs(200);
    let report = run(&config).report;
    assert_eq!(report.stop, "horizon");
    assert!(report.in_flight.receipts > 0);
    let options = TrialOptions {
        event_limit: 500,
        tie_break: TieBreak::Fifo,
        history: HistoryFilter::Off,
        report: sim::pipeline::ReportDetail::Full,
        observer: None,
    };
    let limited = run_trial(&valid(&config), None, &options).report;
    assert_eq!(limited.stop, "event_limit");
    assert_eq!(limited.events, 500);
}

#[test]
fn an_upload_batch_that_outlives_its_timeout_is_killed_and_retried() {
    // Ten receipts handled in sequence take far longer than the 600 s timeout.
    let mut config = burst(PipelineConfig::built(), 20);
    config.upload.concurrency = 1;
    config.upload.batch_size = 10;
    let trial = run_with_history(&config);
    let report = &trial.report;
    assert_eq!(report.stop, "empty");
    assert!(report.kills.upload > 0);
    let killed: BTreeSet<u32> = events(&trial, HistoryEvent::UploadKilled)
        .filter_map(|r| r.receipt)
        .collect();
    let started_twice = killed.iter().any(|receipt| {
        events(&trial, HistoryEvent::UploadStarted)
            .filter(|r| r.receipt == Some(*receipt))
            .count()
            > 1
    });
    assert!(
        started_twice,
        "a receipt cut off by a kill is handled again"
    );
    let unsaved = trial
        .latencies
        .iter()
        .filter(|latency| latency.labels_saved.is_none())
        .count() as u64;
    assert_eq!(unsaved, report.never_saved);
    assert!(
        unsaved <= report.dead_lettered.upload,
        "an unsaved receipt must have been dead-lettered"
    );
}

#[test]
fn standard_queues_take_large_batches_within_the_batching_window() {
    let mut config = burst(PipelineConfig::default(), 12);
    config.flow = Flow::New;
    config.queues.kind = sim::pipeline::config::QueueKind::Standard;
    config.queues.batch_size = 1000;
    config.queues.batching_window = secs(5);
    config.queues.receive_limit = 10;
    config.queues.duplicate_share = 0.05;
    let trial = run_with_history(&config);
    assert_eq!(trial.report.stop, "empty");
    let largest = events(&trial, HistoryEvent::BatchReceived)
        .map(|r| tokens(r).len())
        .max()
        .unwrap();
    assert!(
        largest > 10,
        "a standard queue batch may exceed 10 messages, largest {largest}"
    );
}

#[test]
fn history_names_the_words_written_and_the_words_sent() {
    let config = spaced(PipelineConfig::built(), 3, secs(1800));
    let trial = run_with_history(&config);
    let written: BTreeSet<sim::entities::ChromaId> = events(&trial, HistoryEvent::TableWrite)
        .flat_map(|r| r.ids.iter().copied())
        .collect();
    let sent: BTreeSet<sim::entities::ChromaId> = events(&trial, HistoryEvent::MessagesSent)
        .flat_map(|r| r.ids.iter().copied())
        .collect();
    assert!(!sent.is_empty());
    assert!(sent.is_subset(&written));
    // Built: only changed labels are sent, so most written words are never sent.
    assert!(sent.len() < written.len());
    let publishes = trial.history.publishes(sim::entities::Collection::Words);
    assert_eq!(
        publishes.len() as u64,
        trial.report.publishes.words + trial.report.pointer_conflicts
    );
    assert!(
        publishes
            .iter()
            .all(|p| p.ids.iter().all(|id| id.is_word()))
    );
}

#[test]
fn an_observer_sees_the_progress_and_changes_nothing() {
    use sim::pipeline::{Observer, TrialProgress};
    use std::sync::{Arc, Mutex};
    let config = burst(PipelineConfig::built(), 40);
    let plain = run(&config);
    let seen: Arc<Mutex<Vec<TrialProgress>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let options = TrialOptions {
        observer: Some(Observer {
            every_events: 100,
            call: Arc::new(move |progress| sink.lock().unwrap().push(*progress)),
        }),
        ..TrialOptions::default()
    };
    let observed = run_trial(&valid(&config), None, &options);
    assert_eq!(observed.report, plain.report);
    assert_eq!(observed.latencies, plain.latencies);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len() as u64, plain.report.events / 100);
    for (k, pair) in seen.windows(2).enumerate() {
        assert_eq!(pair[1].events, 100 * (k as u64 + 2));
        assert!(pair[0].now <= pair[1].now);
        assert!(pair[0].receipts_saved <= pair[1].receipts_saved);
    }
    let last = seen.last().unwrap();
    assert_eq!(last.receipts, 40);
    assert!(last.receipts_saved > 0 && last.receipts_saved <= 40);
}

/// "Labels saved" measured from the start of embedding, the window of the note's "35–60 s" (new
/// flow: embedding 15–30 s and LangGraph 20–30 s) and "35–120 s" (old flow: the wait between
/// them), beside the same figure measured from the receipt's arrival, which adds the queue wait
/// and OCR.
#[test]
fn labels_saved_from_embedding_is_the_notes_window() {
    let mut config = spaced(PipelineConfig::default(), 8, secs(1800));
    config.flow = Flow::New;
    let report = run(&config).report;
    let window = &report.latency_ms.labels_saved_from_embedding;
    let saved = &report.latency_ms.labels_saved;
    assert_eq!(window.count, 8);
    assert!(
        (35_000.0..=65_000.0).contains(&window.p50),
        "new flow {window:?}"
    );
    // Arrival adds OCR (15–30 s) and the metadata writes in front of the embedding.
    assert!(saved.p50 >= window.p50 + 15_000.0, "{saved:?} {window:?}");
    config.flow = Flow::Old;
    let old = run(&config).report;
    let old_window = &old.latency_ms.labels_saved_from_embedding;
    assert_eq!(old_window.count, 8);
    assert!(old_window.p50 > window.p50, "{old_window:?} {window:?}");
    assert!(old_window.max < 120_000.0 + 60_000.0, "{old_window:?}");
}

/// The configurations a scratch is reused across: both profiles and flows, a burst under every
/// injected fault on standard queues with duplicates, and a larger burst between smaller ones, so
/// storage grown by one trial is handed to a smaller one and back.
fn scratch_configurations() -> Vec<PipelineConfig> {
    let mut faulty = burst(PipelineConfig::built(), 3);
    faulty.compaction.cold_start_share = 0.2;
    faulty.faults.compaction_stall_share = 0.2;
    faulty.faults.kill_after_pointer_share = 0.2;
    faulty.faults.stream_retry_share = 0.2;
    faulty.faults.throttle_share = 0.2;
    faulty.faults.collection_error_share = 0.2;
    faulty.queues.kind = sim::pipeline::config::QueueKind::Standard;
    faulty.queues.duplicate_share = 0.3;
    let mut old_flow = spaced(PipelineConfig::described(), 4, secs(20));
    old_flow.flow = Flow::Old;
    vec![
        burst(PipelineConfig::built(), 10),
        faulty,
        old_flow,
        spaced(PipelineConfig::built(), 6, secs(5)),
        burst(PipelineConfig::described(), 12),
    ]
}

#[test]
fn a_trial_in_a_reused_scratch_is_the_trial_a_fresh_one_runs() {
    use sim::pipeline::{ReportDetail, Scratch, run_trial_in};
    let mut scratch = Scratch::new();
    let mut trials = 0;
    for (index, config) in scratch_configurations().into_iter().enumerate() {
        for seed in 0..3u64 {
            let mut config = config.clone();
            config.seed = 40 + seed;
            let options = TrialOptions {
                tie_break: match seed {
                    0 => TieBreak::Fifo,
                    _ => TieBreak::Random(sim::random::Streams::new(seed).stream("tie-break")),
                },
                history: [
                    HistoryFilter::All,
                    HistoryFilter::Evidence,
                    HistoryFilter::Off,
                ][seed as usize]
                    .clone(),
                report: [ReportDetail::Full, ReportDetail::Brief][index % 2],
                ..TrialOptions::default()
            };
            let config = valid(&config);
            let fresh = run_trial(&config, None, &options);
            let reused = run_trial_in(&mut scratch, &config, None, &options);
            let trial = format!("configuration {index}, seed {seed}");
            assert_eq!(
                reused.report.fingerprint, fresh.report.fingerprint,
                "{trial}"
            );
            assert_eq!(reused.report, fresh.report, "{trial}");
            assert_eq!(reused.latencies, fresh.latencies);
            assert_eq!(reused.history.records, fresh.history.records);
            assert_eq!(reused.history.publishes, fresh.history.publishes);
            let judged = |trial: &Trial| format!("{:?}", sim::explore::check(trial));
            assert_eq!(judged(&reused), judged(&fresh));
            scratch.reclaim(reused);
            trials += 1;
        }
    }
    assert_eq!(trials, 15);
}
