//! Small trials with injected faults (`[faults]`) and the sync-on-merge fix, each with a known
//! outcome: a stall under the lock without heartbeats lets a second holder in; a stall past the
//! visibility timeout hands a batch out twice at once; a death right after the pointer write leaves
//! messages that come back and are applied again; stream retries re-send messages; throttles are
//! counted and their batches come back after the visibility timeout; syncing from the table on
//! merge keeps labels written before the merge; failing Chroma operations lose what the real code
//! loses, each loss explained. Also: faults left off change nothing, and the
//! history names the ids its records touch.

use sim::entities::{ChromaId, Collection};
use sim::oracle::{Cause, Class};
use sim::pipeline::config::StallPoint;
use sim::pipeline::history::{Actor, HistoryEvent, HistoryRecord};
use sim::pipeline::{Flow, PipelineConfig, Trial, TrialOptions, run_trial};
use sim::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

mod common;

use common::{events, run_with_history, secs, valid};

/// The described profile, new flow: `receipts` receipts, one every `gap`, one receipt per image.
fn spaced(receipts: u64, gap: Duration) -> PipelineConfig {
    common::spaced(new_flow(), receipts, gap)
}

/// The described profile, new flow: `receipts` receipts uploaded at once.
fn burst(receipts: u64) -> PipelineConfig {
    common::burst(new_flow(), receipts)
}

fn new_flow() -> PipelineConfig {
    PipelineConfig {
        flow: Flow::New,
        ..PipelineConfig::default()
    }
}

/// A message of a history detail: (collection, receipt, record sequence, kind).
type Token = (String, u32, u64, String);

/// The messages a record's detail lists (after any `prefix: ` of a fault record).
fn tokens(record: &HistoryRecord) -> Vec<Token> {
    let messages = record
        .detail
        .split_once(": ")
        .map_or(record.detail.as_str(), |(_, messages)| messages);
    let mut words = messages.split(' ');
    let collection = words.next().expect("a collection").to_string();
    words
        .map(|token| {
            let parts: Vec<&str> = token.split('/').collect();
            assert_eq!(parts.len(), 4, "token `{token}` of `{}`", record.detail);
            (
                collection.clone(),
                parts[0].parse().unwrap(),
                parts[1].parse().unwrap(),
                parts[3].to_string(),
            )
        })
        .collect()
}

/// When each compaction invocation ended (deleted or failed its messages, or died).
fn invocation_ends(trial: &Trial) -> BTreeMap<Actor, u64> {
    let mut ends = BTreeMap::new();
    for record in &trial.history.records {
        if matches!(
            record.event,
            HistoryEvent::MessagesDeleted
                | HistoryEvent::MessagesFailed
                | HistoryEvent::CompactionKilled
                | HistoryEvent::KilledAfterPointer
        ) {
            ends.insert(record.actor, record.at.0);
        }
    }
    ends
}

/// Messages received by a second invocation while the first that received them still ran.
fn concurrent_receives(trial: &Trial) -> usize {
    let ends = invocation_ends(trial);
    let mut holders: BTreeMap<Token, Actor> = BTreeMap::new();
    let mut overlaps = 0;
    for record in events(trial, HistoryEvent::BatchReceived) {
        for token in tokens(record) {
            if let Some(previous) = holders.insert(token, record.actor) {
                let previous_ended = ends.get(&previous).is_some_and(|at| *at <= record.at.0);
                overlaps += usize::from(!previous_ended);
            }
        }
    }
    overlaps
}

#[test]
fn a_stall_holding_the_lock_without_heartbeats_lets_a_second_holder_in() {
    let mut config = spaced(12, secs(15));
    config.compaction.heartbeat_enabled = false;
    config.compaction.timeout = secs(900);
    config.faults.compaction_stall_share = 1.0;
    config.faults.compaction_stall = "200s".parse().unwrap();
    config.faults.compaction_stall_point = StallPoint::HoldingLock;
    let trial = run_with_history(&config);
    let report = &trial.report;
    assert!(report.counters.stalls > 0);
    assert!(
        report.lock_failures.expired_under_running_holder > 0,
        "{:?}",
        report.lock_failures
    );
    let stalled = events(&trial, HistoryEvent::Stalled)
        .next()
        .expect("a stall");
    assert!(stalled.detail.starts_with("holding_lock for 200s: "));
    assert!(stalled.receipt.is_some());
    // With heartbeats the lease outlives the stall: nobody gets in under a running holder.
    config.compaction.heartbeat_enabled = true;
    let heartbeats = run_with_history(&config).report;
    assert!(heartbeats.counters.stalls > 0);
    assert_eq!(heartbeats.lock_failures.expired_under_running_holder, 0);
}

#[test]
fn a_stall_longer_than_the_visibility_timeout_hands_the_batch_out_twice_concurrently() {
    let mut config = spaced(2, secs(900));
    config.compaction.timeout = secs(900);
    config.queues.visibility_timeout = secs(60);
    config.faults.compaction_stall_share = 1.0;
    config.faults.compaction_stall = "120s".parse().unwrap();
    config.faults.compaction_stall_point = StallPoint::BeforePublish;
    let trial = run_with_history(&config);
    assert!(trial.report.counters.stalls > 0);
    assert!(
        concurrent_receives(&trial) > 0,
        "no batch was received twice at once"
    );
    assert!(
        trial.report.counters.stale_deletes > 0,
        "the stalled holder's deletes use stale handles"
    );
    // Without the stall the same visibility timeout is long enough.
    config.faults.compaction_stall_share = 0.0;
    let calm = run_with_history(&config);
    assert_eq!(calm.report.counters.stalls, 0);
    assert_eq!(concurrent_receives(&calm), 0);
}

#[test]
fn a_kill_after_the_pointer_write_keeps_the_lock_until_its_lease_expires() {
    let mut config = spaced(1, secs(60));
    config.faults.kill_after_pointer_share = 1.0;
    let trial = run_with_history(&config);
    assert!(trial.report.counters.kills_after_pointer > 0);
    let lease = config.compaction.lock_lease;
    let kills: Vec<&HistoryRecord> = events(&trial, HistoryEvent::KilledAfterPointer).collect();
    let busy_under_a_dead_holder = events(&trial, HistoryEvent::BusyAtQuickCheck).any(|busy| {
        kills.iter().any(|kill| {
            let same_collection = matches!(
                (kill.actor, busy.actor),
                (Actor::Compaction { collection: a, .. }, Actor::Compaction { collection: b, .. })
                    if a == b
            );
            same_collection && busy.at > kill.at && busy.at.since(kill.at) < lease
        })
    });
    assert!(
        busy_under_a_dead_holder,
        "the dead holder's lock turned others away"
    );
}

#[test]
fn a_kill_after_the_pointer_write_leaves_messages_that_are_redelivered_and_applied_again() {
    let mut config = spaced(1, secs(60));
    // A short lease, so the dead holder's lock is gone before the run's messages arrive.
    config.compaction.lock_lease = secs(5);
    config.faults.kill_after_pointer_share = 1.0;
    let trial = run_with_history(&config);
    let report = &trial.report;
    let limit = u64::from(config.queues.receive_limit);
    assert!(
        report.counters.kills_after_pointer >= 2 * limit,
        "{report:?}"
    );
    assert_eq!(report.kills.compaction, 0, "no timeout kills");
    assert!(report.dead_lettered.lines + report.dead_lettered.words > 0);
    let merges: Vec<&HistoryRecord> = events(&trial, HistoryEvent::DeltaMerged)
        .filter(|record| {
            matches!(
                record.actor,
                Actor::Compaction {
                    collection: Collection::Words,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(
        merges.len() as u64,
        limit,
        "the words delta is merged once per receive"
    );
    assert_eq!(merges[0].ids, merges[1].ids);
    assert_ne!(merges[0].actor, merges[1].actor);
    // The second receive of the run's message waits for the visibility timeout of the first.
    let receives: Vec<&HistoryRecord> = events(&trial, HistoryEvent::BatchReceived)
        .filter(|record| [merges[0].actor, merges[1].actor].contains(&record.actor))
        .collect();
    assert_eq!(receives.len(), 2);
    assert_eq!(tokens(receives[0]), tokens(receives[1]));
    let gap = receives[1].at.since(receives[0].at);
    assert!(gap >= config.queues.visibility_timeout, "{gap}");
    for collection in Collection::ALL {
        let promoted = trial
            .history
            .publishes(collection)
            .iter()
            .filter(|publish| publish.promoted_at.is_some())
            .count() as u64;
        assert!(promoted >= limit, "{collection:?}: {promoted}");
    }
    let killed = events(&trial, HistoryEvent::KilledAfterPointer)
        .next()
        .expect("a kill record");
    assert_eq!(killed.receipt, Some(0));
}

/// Messages sent in all, and distinct messages (receipt, record, kind).
fn sends(trial: &Trial) -> (usize, usize) {
    let sent: Vec<Token> = events(trial, HistoryEvent::MessagesSent)
        .flat_map(tokens)
        .collect();
    let distinct: BTreeSet<&Token> = sent.iter().collect();
    (sent.len(), distinct.len())
}

#[test]
fn stream_retries_send_messages_again_with_a_new_send_time() {
    let mut config = spaced(3, secs(120));
    let (sent, distinct) = sends(&run_with_history(&config));
    assert_eq!(sent, distinct, "without retries every message is sent once");
    config.faults.stream_retry_share = 0.5;
    let trial = run_with_history(&config);
    assert!(trial.report.counters.stream_retries > 0);
    assert!(events(&trial, HistoryEvent::StreamRetried).next().is_some());
    let (sent, distinct) = sends(&trial);
    assert!(sent > distinct, "{sent} sends of {distinct} messages");
    // FIFO content deduplication does not catch a re-send: a message is received again.
    let mut received: BTreeMap<Token, BTreeSet<Actor>> = BTreeMap::new();
    for record in events(&trial, HistoryEvent::BatchReceived) {
        for token in tokens(record) {
            received.entry(token).or_default().insert(record.actor);
        }
    }
    assert!(received.values().any(|actors| actors.len() > 1));
}

#[test]
fn throttles_are_counted_and_their_batches_come_back_after_the_visibility_timeout() {
    let mut config = spaced(3, secs(120));
    config.queues.visibility_timeout = secs(60);
    config.queues.receive_limit = 20;
    config.faults.throttle_share = 0.5;
    let trial = run_with_history(&config);
    let report = &trial.report;
    assert!(report.counters.throttles_injected > 0);
    assert_eq!(
        report.throttles.compaction, report.counters.throttles_injected,
        "the reserved concurrency itself is never exceeded here"
    );
    let throttled: Vec<&HistoryRecord> = events(&trial, HistoryEvent::Throttled).collect();
    assert!(!throttled.is_empty());
    for record in &throttled {
        assert!(matches!(record.actor, Actor::Queue { .. }));
        for token in tokens(record) {
            let again = events(&trial, HistoryEvent::BatchReceived)
                .find(|received| received.at > record.at && tokens(received).contains(&token))
                .expect("a throttled message is received again");
            assert!(again.at.since(record.at) >= config.queues.visibility_timeout);
        }
    }
}

#[test]
fn syncing_from_the_table_on_merge_keeps_labels_written_before_the_merge() {
    let config = burst(3);
    let judged = sim::explore::judge(&valid(&config), None, &TrialOptions::default());
    let kinds = judged.oracle.kinds();
    assert!(
        kinds.contains(&(Class::L, Cause::LabelBeforeEmbedding)),
        "{kinds:?}"
    );
    assert!(judged.trial.report.never_visible > 0);
    let mut fixed = config.clone();
    fixed.compaction.sync_from_table_on_merge = true;
    let judged = sim::explore::judge(&valid(&fixed), None, &TrialOptions::default());
    assert!(judged.oracle.is_clean(), "{:?}", judged.oracle.kinds());
    assert_eq!(judged.trial.report.never_visible, 0);
    assert_eq!(judged.trial.report.latency_ms.labels_visible.count, 3);
}

/// Failing Chroma operations (`faults.collection_error_share`): the trial runs to its end, every
/// finding they cause is explained by them (a lost delta or a logged update failure), and retrying
/// the failed updates (`missing_id = "retry"`) leaves no update failure unrepaired.
#[test]
fn failing_chroma_operations_lose_only_what_the_real_code_loses_and_each_loss_is_explained() {
    let mut config = burst(6);
    config.faults.collection_error_share = 0.2;
    let judged = sim::explore::judge(&valid(&config), None, &TrialOptions::default());
    let kinds = judged.oracle.kinds();
    assert!(
        kinds.contains(&(Class::L, Cause::UpdateFailed)),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().all(|(_, cause)| *cause != Cause::Unexplained),
        "{kinds:?}"
    );
    let mut retried = config.clone();
    retried.compaction.missing_id = sim::pipeline::config::MissingId::Retry;
    let judged = sim::explore::judge(&valid(&retried), None, &TrialOptions::default());
    let kinds = judged.oracle.kinds();
    assert!(
        kinds.iter().all(|(_, cause)| *cause != Cause::UpdateFailed),
        "{kinds:?}"
    );
}

#[test]
fn faults_left_off_draw_nothing_and_history_never_changes_the_trial() {
    let config = burst(4);
    let plain = run_trial(&valid(&config), None, &TrialOptions::default()).report;
    let mut off = config.clone();
    off.faults.compaction_stall = "10m".parse().unwrap();
    off.faults.compaction_stall_point = StallPoint::HoldingLock;
    let same = run_trial(&valid(&off), None, &TrialOptions::default()).report;
    assert_eq!(plain.fingerprint, same.fingerprint);
    let mut faulty = config;
    faulty.faults.compaction_stall_share = 0.3;
    faulty.faults.kill_after_pointer_share = 0.3;
    faulty.faults.stream_retry_share = 0.3;
    faulty.faults.throttle_share = 0.3;
    faulty.compaction.sync_from_table_on_merge = true;
    faulty.compaction.timeout = secs(900);
    let without = run_trial(&valid(&faulty), None, &TrialOptions::default()).report;
    let with = run_with_history(&faulty).report;
    assert_eq!(without.fingerprint, with.fingerprint);
    assert_ne!(without.fingerprint, plain.fingerprint);
}

#[test]
fn history_records_name_the_ids_they_touch() {
    let mut config = burst(4);
    config.workload.merchant_correction_share = sim::distribution::NumberDist::constant(1.0);
    config.queues.receive_limit = 1;
    config.faults.throttle_share = 0.3;
    let trial = run_with_history(&config);
    // A merchant update names exactly the ids it updated, all of its receipt.
    let updates: Vec<&HistoryRecord> = events(&trial, HistoryEvent::MerchantUpdated).collect();
    assert!(updates.iter().any(|record| !record.ids.is_empty()));
    for record in &updates {
        let receipt = record
            .receipt
            .expect("a merchant update is about a receipt");
        assert!(record.ids.iter().all(|id| id.receipt() == receipt));
        let touched = record.detail.rsplit_once(" on ").unwrap().1;
        assert_eq!(touched, format!("{} ids", record.ids.len()));
    }
    // Dead letters name their ids: the word of a label, the receipt's ids of a run's collection.
    let dead: Vec<&HistoryRecord> = events(&trial, HistoryEvent::DeadLettered)
        .filter(|record| matches!(record.actor, Actor::Queue { .. }))
        .collect();
    assert!(
        !dead.is_empty(),
        "receive limit 1 and throttles dead-letter messages"
    );
    for record in &dead {
        let (_, _, _, kind) = tokens(record).pop().expect("one message");
        let Actor::Queue { collection } = record.actor else {
            unreachable!()
        };
        if kind.starts_with("label") {
            assert_eq!(record.ids.len(), 1);
            assert!(record.ids[0].is_word());
        } else if kind == "run" {
            let receipt = record.receipt.unwrap();
            let expected = trial
                .table()
                .shape(receipt)
                .unwrap()
                .collection_ids(receipt, collection);
            assert_eq!(record.ids, expected);
        }
    }
    // Sends name the receipt, and label sends their words.
    for record in events(&trial, HistoryEvent::MessagesSent) {
        let receipt = record.receipt.expect("a send names its receipt");
        let labels = tokens(record)
            .iter()
            .filter(|(_, _, _, kind)| kind.starts_with("label"))
            .count();
        assert_eq!(labels, record.ids.len());
        assert!(
            record
                .ids
                .iter()
                .all(|id: &ChromaId| id.receipt() == receipt)
        );
    }
}
