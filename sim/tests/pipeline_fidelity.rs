//! Mechanisms of the real pipeline, each in a small hand-built trial with a known outcome, and
//! each citing what it follows: a message that reaches its queue's retention period is a cause;
//! what an absent embedding hides is counted apart; the queue mappings' pollers receive whatever
//! the function's concurrency, so a throttled batch costs a receive; a REMOVE of one label wipes
//! every label field of its word, so its order against a MODIFY of the word decides the snapshot;
//! a version id reused within its second lets a stale publish through the drift check's text
//! compare; an upload queue without a dead-letter queue keeps a failing message until its
//! retention; a re-embedded receipt's merge overwrites the labels its words carry, and that is
//! their cause.

use sim::entities::{ChromaId, Collection, EntryFields, LabelFields, ValidationStatus};
use sim::oracle::{self, Cause, Class};
use sim::pipeline::config::{
    DriftCheck, InBatchOrdering, MappingPollers, OtherInserts, OwnershipCheck,
};
use sim::pipeline::history::{HistoryEvent, HistoryRecord};
use sim::pipeline::{Flow, PipelineConfig};
use sim::pipeline::{HistoryFilter, TrialOptions, run_trial};
use sim::time::Duration;
use sim::workload::{LabelSpec, Receipt};
use std::collections::{BTreeMap, BTreeSet};

mod common;

use common::{burst, events, run_with_history, secs, valid};

fn judge(trial: &sim::pipeline::Trial) -> oracle::Report {
    oracle::check(&sim::explore::oracle_input(trial))
}

/// SQS deletes a message at the queue's retention period (`MessageRetentionPeriod`; the code at
/// 54acc5869 sets 345 600 s on both compaction queues in
/// infra/chromadb_compaction/components/sqs_queues.py, `ChromaDBQueues.__init__`). With one
/// compaction at a time and a retention shorter than the backlog, messages expire: each leaves a
/// history record, and every anomaly names a cause, none `unexplained`.
#[test]
fn retention_expiry_is_a_cause() {
    let mut config = burst(PipelineConfig::default(), 12);
    config.flow = Flow::New;
    config.compaction.reserved_concurrency = 1;
    config.queues.retention = secs(90);
    let trial = run_with_history(&config);
    assert_eq!(trial.report.stop, "empty");
    let expired = events(&trial, HistoryEvent::ExpiredByRetention).count();
    assert!(expired > 0, "nothing expired");
    assert_eq!(
        expired as u64,
        trial.report.expired_by_retention.lines + trial.report.expired_by_retention.words
    );
    let report = judge(&trial);
    let causes: Vec<Cause> = report.anomalies.iter().map(|a| a.cause).collect();
    assert!(causes.contains(&Cause::ExpiredByRetention), "{causes:?}");
    assert!(!causes.contains(&Cause::Unexplained), "{causes:?}");
    // The same trial with the real retention loses nothing to it.
    config.queues.retention = secs(345_600);
    let kept = run_with_history(&config);
    assert_eq!(events(&kept, HistoryEvent::ExpiredByRetention).count(), 0);
    assert!(
        judge(&kept)
            .anomalies
            .iter()
            .all(|a| a.cause != Cause::ExpiredByRetention)
    );
}

/// A receipt whose embeddings never reach the snapshot (every delta message expired) still owes
/// it labels: those L findings are counted apart as masked, not dropped.
#[test]
fn an_absent_embedding_reports_the_labels_it_hides() {
    let mut config = burst(PipelineConfig::default(), 24);
    config.flow = Flow::New;
    config.compaction.reserved_concurrency = 1;
    config.queues.retention = secs(30);
    let trial = run_with_history(&config);
    let report = judge(&trial);
    let absent = report.receipts_affected_by_class[&Class::E];
    assert!(absent > 0, "no embedding went missing");
    let masked = report.masked.ids_by_class[&Class::L];
    assert!(masked > 0, "{:?}", report.masked);
    assert!(report.masked.receipts_by_class[&Class::L] <= absent);
}

/// The messages a record names: `(collection, receipt/sequence/group/kind)` tokens.
fn message_tokens(record: &HistoryRecord) -> Vec<String> {
    let collection = record
        .detail
        .split(' ')
        .find(|word| *word == "lines" || *word == "words")
        .unwrap_or("-");
    record
        .detail
        .split(' ')
        .filter(|token| token.split('/').count() == 4)
        .map(|token| format!("{collection} {token}"))
        .collect()
}

fn tokens_of(trial: &sim::pipeline::Trial, event: HistoryEvent) -> BTreeSet<String> {
    events(trial, event).flat_map(message_tokens).collect()
}

/// One compaction at a time for two mappings whose pollers start 5 batches each: the batch the
/// function refuses is throttled, and with a receive limit of 1 that one receive was its last, so
/// it is dead-lettered without ever reaching an invocation ("a throttled batch returns to the
/// queue after the visibility timeout and counts toward the receive limit": AWS Lambda Developer
/// Guide, services-sqs-scaling.html and with-sqs.html). Pollers that wait for the function's room
/// never throttle.
#[test]
fn a_throttled_batch_costs_a_receive() {
    let mut config = burst(PipelineConfig::default(), 6);
    config.flow = Flow::New;
    config.compaction.reserved_concurrency = 1;
    config.queues.receive_limit = 1;
    config.queues.visibility_timeout = secs(120);
    let trial = run_with_history(&config);
    let throttled = tokens_of(&trial, HistoryEvent::Throttled);
    let received = tokens_of(&trial, HistoryEvent::BatchReceived);
    let dead = tokens_of(&trial, HistoryEvent::DeadLettered);
    assert!(!throttled.is_empty(), "no batch was throttled");
    assert!(trial.report.throttles.compaction > 0);
    let never_invoked: Vec<&String> = dead
        .iter()
        .filter(|token| throttled.contains(*token) && !received.contains(*token))
        .collect();
    assert!(
        !never_invoked.is_empty(),
        "a throttled message dead-lettered without an invocation: {dead:?}"
    );
    config.queues.mapping_pollers = MappingPollers::FunctionCapacity;
    let waiting = run_with_history(&config);
    assert_eq!(events(&waiting, HistoryEvent::Throttled).count(), 0);
    assert_eq!(waiting.report.throttles.compaction, 0);
}

/// Messages dead-lettered without ever reaching an invocation: every receive they had was
/// throttled.
fn dead_unprocessed(trial: &sim::pipeline::Trial) -> usize {
    let received = tokens_of(trial, HistoryEvent::BatchReceived);
    tokens_of(trial, HistoryEvent::DeadLettered)
        .iter()
        .filter(|token| !received.contains(*token))
        .count()
}

/// A reserved concurrency of 4 far below the batches the two mappings start (a FIFO mapping takes
/// one batch per ready message group, and every receipt has its groups): throttled receives
/// dead-letter messages that no invocation ever saw, as the real project later saw at a reserved
/// concurrency of 2 (about 12 000 messages). The documented remedy, each mapping's
/// `maximum_concurrency` set so that together they stay within the reserved concurrency
/// (AWS::Lambda::EventSourceMapping ScalingConfig, MaximumConcurrency 2..=1000), throttles
/// nothing, and no message dead-letters unprocessed.
#[test]
fn maximum_concurrency_within_the_reserved_concurrency_prevents_throttled_dead_letters() {
    let mut config = burst(PipelineConfig::default(), 40);
    config.flow = Flow::New;
    config.compaction.reserved_concurrency = 4;
    config.queues.visibility_timeout = secs(300);
    let unset = run_with_history(&config);
    config.queues.maximum_concurrency = 2;
    let capped = run_with_history(&config);
    assert!(
        unset.report.throttles.compaction > 20,
        "{:?}",
        unset.report.throttles
    );
    assert!(
        dead_unprocessed(&unset) > 10,
        "{}",
        dead_unprocessed(&unset)
    );
    assert_eq!(capped.report.throttles.compaction, 0);
    assert_eq!(dead_unprocessed(&capped), 0);
}

/// One receipt whose first word carries two labels: `first` (label 0) and `second` (label 1).
fn two_label_receipt(first: LabelSpec, second: LabelSpec) -> (PipelineConfig, Vec<Receipt>) {
    let config = burst(PipelineConfig::default(), 1);
    let mut receipts = sim::workload::generate(config.seed, &config.workload);
    let receipt = &mut receipts[0];
    let word = receipt.embedded_words().next().expect("an embedded word");
    receipt.merchant_correction = None;
    receipt.labels = [(0, first), (1, second)]
        .into_iter()
        .map(|(label, spec)| LabelSpec {
            line: word.line,
            word: word.word,
            label,
            ..spec
        })
        .collect();
    (config, receipts)
}

fn removed() -> LabelSpec {
    LabelSpec {
        line: 0,
        word: 0,
        label: 0,
        reasoning: 11,
        change: None,
        removed: true,
        older: false,
    }
}

fn older_changed() -> LabelSpec {
    LabelSpec {
        line: 0,
        word: 0,
        label: 0,
        reasoning: 22,
        change: Some(ValidationStatus::Invalid),
        removed: false,
        older: true,
    }
}

/// The trial's final table labels and final snapshot entry of the receipt's first labelled word,
/// and the oracle's report.
fn final_word(
    config: &PipelineConfig,
    receipts: &[Receipt],
) -> (LabelFields, EntryFields, oracle::Report) {
    let options = TrialOptions {
        history: HistoryFilter::All,
        ..TrialOptions::default()
    };
    let trial = run_trial(&valid(config), Some(receipts), &options);
    assert_eq!(trial.report.stop, "empty");
    let label = receipts[0].labels[0];
    let id = ChromaId::word(0, u32::from(label.line), u32::from(label.word));
    let store = trial.store(Collection::Words);
    let publish = store.pointer_publish().expect("a published snapshot");
    let entry = store.get(publish, id).expect("the word is in the snapshot");
    (trial.table().derived_label_fields(id), entry, judge(&trial))
}

/// LangGraph removes one label of a word and changes another that existed before the run. The
/// compactor at 54acc5869 (`apply_label_updates_in_memory`,
/// infra/chromadb_compaction/lambdas/compaction/label_handler.py) sends a REMOVE to
/// `remove_word_labels` (infra/chromadb_compaction/lambdas/compaction/operations.py), which clears
/// every label field of the word, and a MODIFY to `update_word_labels`, which writes the word's
/// labels as the table has them. REMOVE then MODIFY ends with the table's labels; MODIFY then
/// REMOVE ends with none, and the oracle, comparing with the final table, reports that word.
#[test]
fn remove_then_modify_differs_from_modify_then_remove() {
    // Label 0 removed, label 1 changed: the REMOVE record comes first.
    let (config, remove_first) = two_label_receipt(removed(), older_changed());
    let (table, entry, report) = final_word(&config, &remove_first);
    assert!(!table.is_empty(), "the changed label remains in the table");
    assert_eq!(entry.labels, table, "REMOVE then MODIFY converges");
    assert_eq!(report.by_class[&Class::L], 0, "{:?}", report.anomalies);
    // Label 0 changed, label 1 removed: the MODIFY record comes first.
    let (config, modify_first) = two_label_receipt(older_changed(), removed());
    let (table, entry, report) = final_word(&config, &modify_first);
    assert!(!table.is_empty(), "the changed label remains in the table");
    assert_eq!(
        entry.labels,
        LabelFields::default(),
        "the REMOVE wiped the changed label"
    );
    assert_ne!(entry.labels, table);
    let label = modify_first[0].labels[0];
    let id = ChromaId::word(0, u32::from(label.line), u32::from(label.word));
    assert!(
        report.anomalies.iter().any(|a| a.class == Class::L
            && a.cause == Cause::RemoveClearedLabels
            && a.ids.contains(&id)),
        "{:?}",
        report.anomalies
    );
    // Applying a batch's removals first (a knob, not the code at 54acc5869) repairs the order.
    let mut removals_first = config.clone();
    removals_first.compaction.in_batch_ordering = InBatchOrdering::RemovalsFirst;
    let (table, entry, report) = final_word(&removals_first, &modify_first);
    assert_eq!(entry.labels, table);
    assert_eq!(report.by_class[&Class::L], 0, "{:?}", report.anomalies);
}

/// Drawn by the workload, a removal beside another label of its word clears that label in the
/// snapshot when no later MODIFY of the word writes it back (a label only proposed, or changed
/// before the REMOVE): the oracle reports L findings caused by the REMOVE; without removals the
/// same trial has none of that cause.
#[test]
fn drawn_removals_clear_the_remaining_labels_of_their_words() {
    let mut config = burst(PipelineConfig::default(), 20);
    config.workload.labels_per_word = sim::distribution::NumberDist::constant(2.0);
    config.workload.removed_label_share = sim::distribution::NumberDist::constant(0.3);
    config.workload.older_label_share = sim::distribution::NumberDist::constant(0.3);
    let cleared = |report: &oracle::Report| {
        report
            .anomalies
            .iter()
            .filter(|a| a.class == Class::L && a.cause == Cause::RemoveClearedLabels)
            .map(|a| a.id_count)
            .sum::<usize>()
    };
    let drawn = judge(&run_with_history(&config));
    assert!(cleared(&drawn) > 0, "{:?}", drawn.anomalies);
    config.workload.removed_label_share = sim::distribution::NumberDist::constant(0.0);
    let kept = judge(&run_with_history(&config));
    assert_eq!(cleared(&kept), 0, "{:?}", kept.anomalies);
}

fn constant(text: &str) -> sim::distribution::DurationDist {
    sim::distribution::DurationDist::parse(text).expect("a duration")
}

/// Receipts of four words arriving at `arrivals_ms`, every duration constant, no label or
/// metadata message (new items dropped, as built): each receipt's run sends one delta message
/// per collection, merged by one compaction invocation. The lock's lease (500 ms, no
/// heartbeats) is shorter than a snapshot upload (2 s), so it expires under every holder while
/// it uploads and the next holder gets in; the ownership re-check is off, so the holder whose
/// lease expired still writes its pointer (with the re-check on it finds its lease gone and
/// abandons the pointer write, as `an_ownership_recheck_fails_the_publish_before_the_pointer_write`
/// in compaction.rs shows).
fn overlapping_holders(arrivals_ms: &[u64], drift_check: DriftCheck) -> PipelineConfig {
    let mut config = common::spaced(PipelineConfig::default(), arrivals_ms.len() as u64, secs(1));
    config.workload.trace = arrivals_ms
        .iter()
        .map(|ms| Duration::from_millis(*ms))
        .collect();
    config.flow = Flow::New;
    let workload = &mut config.workload;
    let zero = sim::distribution::NumberDist::constant(0.0);
    for share in [
        &mut workload.labels_per_word,
        &mut workload.changed_label_share,
        &mut workload.removed_label_share,
        &mut workload.older_label_share,
        &mut workload.merchant_correction_share,
        &mut workload.noise_word_share,
    ] {
        *share = zero.clone();
    }
    workload.lines_per_receipt = sim::distribution::NumberDist::constant(2.0);
    workload.words_per_line = sim::distribution::NumberDist::constant(2.0);
    let upload = &mut config.upload;
    (upload.ocr, upload.embedding, upload.langgraph) =
        (constant("10s"), constant("10s"), constant("10s"));
    upload.merchant_resolution = constant("1s");
    upload.delta_upload = constant("100ms");
    upload.table_operation = constant("10ms");
    (upload.cold_start_share, upload.cold_start) = (0.0, constant("0s"));
    let processor = &mut config.stream_processor;
    (processor.cold_start_share, processor.cold_start) = (0.0, constant("0s"));
    processor.record_handling = constant("1ms");
    processor.send_batch = constant("10ms");
    processor.other_inserts = OtherInserts::Drop;
    let compaction = &mut config.compaction;
    (compaction.cold_start_share, compaction.cold_start) = (0.0, constant("0s"));
    compaction.lock_operation = constant("100ms");
    compaction.copy = constant("1s");
    compaction.apply = constant("3s");
    compaction.delta_download = constant("200ms");
    compaction.write_back = constant("1s");
    compaction.heartbeat_enabled = false;
    compaction.lock_lease = Duration::from_millis(500);
    compaction.ownership_check = OwnershipCheck::Off;
    compaction.version_id_resolution = secs(1);
    compaction.drift_check = drift_check;
    let store = &mut config.store;
    store.download_fixed = constant("100ms");
    store.upload_fixed = constant("2s");
    store.pointer_operation = constant("20ms");
    config
}

/// The ABA the real drift check cannot see. The publish compares the pointer's text, the version
/// id, with the one it read before the heavy work (enhanced_compaction_handler.py at 54acc5869:
/// `expected_pointer = dl.get("version_id")`, line 538, then under the lock `if expected_pointer
/// and current_pointer != expected_pointer:`, line 645), and version ids have a resolution of a
/// second. Receipts 0 and 1 are merged by overlapping holders, the second let in when the
/// first's lease expired while it uploaded: both uploads fall in the second of version 30, so the
/// second reuses the first's version id and replaces its content (P), and both write the pointer
/// `30`. Receipt 2's invocation reads the pointer between the two writes and copies receipt 0's
/// snapshot; when it publishes, the pointer still reads `30` although its content is receipt 1's,
/// so the text compare lets it publish on its stale base and receipt 1's embeddings are lost (U,
/// stale base). The same trial comparing the etag sees the second write and fails the batch,
/// which comes back and publishes on receipt 1's snapshot: the reuse stays, the stale publish
/// does not happen.
#[test]
fn a_reused_version_id_lets_a_stale_publish_through_the_text_compare_and_not_the_etag() {
    let arrivals_ms = [200, 800, 7100];
    let kinds = |trial: &sim::pipeline::Trial| -> BTreeSet<(Class, Cause, Option<u32>)> {
        judge(trial)
            .anomalies
            .iter()
            .map(|a| (a.class, a.cause, a.receipt))
            .collect()
    };
    let text = run_with_history(&overlapping_holders(&arrivals_ms, DriftCheck::VersionId));
    assert_eq!(text.report.stop, "empty");
    assert!(text.report.lock_failures.expired_under_running_holder > 0);
    for collection in Collection::ALL {
        let log = text.history.publishes(collection);
        let versions: Vec<u64> = log.iter().map(|publish| publish.version).collect();
        assert_eq!(
            versions[0], versions[1],
            "{collection:?}: one version id, two publishes"
        );
        assert_ne!(log[0].invocation, log[1].invocation);
        // Receipt 2's publish is built on the first of them, the one the second replaced.
        assert_eq!(
            (log[2].base, log[2].publish),
            (log[0].publish, log[0].publish + 2)
        );
        assert!(log[2].promoted_at > log[1].promoted_at);
    }
    let found = kinds(&text);
    assert!(
        found.contains(&(Class::P, Cause::VersionIdReused, Some(0))),
        "{found:?}"
    );
    assert!(
        found.contains(&(Class::U, Cause::StaleBase, Some(1))),
        "{found:?}"
    );

    let etag = run_with_history(&overlapping_holders(&arrivals_ms, DriftCheck::Etag));
    assert_eq!(etag.report.stop, "empty");
    assert!(
        etag.report.counters.pointer_moved_at_publish
            > text.report.counters.pointer_moved_at_publish
    );
    let found = kinds(&etag);
    assert!(
        found.contains(&(Class::P, Cause::VersionIdReused, Some(0))),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .all(|(class, cause, _)| (*class, *cause) != (Class::U, Cause::StaleBase)),
        "{found:?}"
    );
    for collection in Collection::ALL {
        let log = etag.history.publishes(collection);
        assert_eq!(
            log[2].base, log[1].publish,
            "{collection:?}: built on what readers saw"
        );
    }
}

/// Constant step durations for the upload Lambda, so a hand-built batch times out at a known
/// receipt: each receipt takes 10 s of OCR, 1 s of merchant resolution, 10 s of embeddings and
/// `langgraph` of LangGraph (table writes 10 ms, delta uploads 100 ms, no cold start).
fn timed_upload(receipts: u64, langgraph: &str, timeout_s: u64) -> PipelineConfig {
    let mut config = burst(PipelineConfig::default(), receipts);
    config.flow = Flow::New;
    let constant = |text: &str| sim::distribution::DurationDist::parse(text).expect("a duration");
    let upload = &mut config.upload;
    upload.ocr = constant("10s");
    upload.merchant_resolution = constant("1s");
    upload.embedding = constant("10s");
    upload.langgraph = constant(langgraph);
    upload.delta_upload = constant("100ms");
    upload.table_operation = constant("10ms");
    upload.cold_start = constant("0s");
    upload.cold_start_share = 0.0;
    upload.timeout = secs(timeout_s);
    upload.queue_visibility_timeout = secs(timeout_s + 20);
    let workload = &mut config.workload;
    workload.changed_label_share = sim::distribution::NumberDist::constant(0.0);
    workload.removed_label_share = sim::distribution::NumberDist::constant(0.0);
    workload.older_label_share = sim::distribution::NumberDist::constant(0.0);
    workload.merchant_correction_share = sim::distribution::NumberDist::constant(0.0);
    config
}

/// How often each receipt's upload started and finished, by receipt.
fn upload_counts(trial: &sim::pipeline::Trial, event: HistoryEvent, receipts: u32) -> Vec<usize> {
    (0..receipts)
        .map(|receipt| {
            events(trial, event)
                .filter(|record| record.receipt == Some(receipt))
                .count()
        })
        .collect()
}

/// The upload Lambda at 54acc5869 takes up to 10 records a batch (infra/upload_images/infra.py,
/// the `ocr-results-mapping`: batch_size=10), handles them in sequence
/// (container_ocr/handler/handler.py, `lambda_handler`: `for record in event.get("Records", [])`)
/// within its 600 s timeout (infra.py: "timeout": 600). Two receipts of about 31 s each in one
/// batch under a 45 s timeout: the first finishes, the second is killed mid-way. Deleting each
/// record's message once handled, the timeout sends back only the unfinished one, received again
/// when its visibility timeout has run out, and each receipt finishes once. As the mapping does
/// (it deletes a batch only when the function returns: AWS Lambda Developer Guide, with-sqs.html),
/// the whole batch comes back each time, finished receipts included (the queue's order is best
/// effort, so either may come first), until the receive limit dead-letters both (given a
/// dead-letter queue, `upload.dead_letter_queue`).
#[test]
fn an_upload_batch_timing_out_sends_its_unfinished_records_back() {
    use sim::pipeline::config::UploadBatchDeletion;
    let mut config = timed_upload(2, "10s", 45);
    config.upload.batch_deletion = UploadBatchDeletion::PerRecord;
    let per_record = run_with_history(&config);
    assert_eq!(per_record.report.stop, "empty");
    let invocations: BTreeSet<String> = events(&per_record, HistoryEvent::UploadStarted)
        .filter(|record| record.at.as_secs_f64() < 45.0)
        .map(|record| format!("{:?}", record.actor))
        .collect();
    assert_eq!(invocations.len(), 1, "one batch holds both receipts");
    assert_eq!(per_record.report.kills.upload, 1);
    assert_eq!(per_record.report.dead_lettered.upload, 0);
    let finished = upload_counts(&per_record, HistoryEvent::UploadFinished, 2);
    assert_eq!(finished, vec![1, 1], "each receipt is handled once");
    let started = upload_counts(&per_record, HistoryEvent::UploadStarted, 2);
    assert_eq!(started, vec![1, 2], "only the unfinished receipt came back");
    let restart = events(&per_record, HistoryEvent::UploadStarted)
        .filter(|record| record.receipt == Some(1))
        .map(|record| record.at.as_secs_f64())
        .fold(0.0, f64::max);
    assert!(restart >= 65.0, "received again after 65 s: {restart}");

    config.upload.batch_deletion = UploadBatchDeletion::WhenFunctionReturns;
    config.upload.dead_letter_queue = true;
    let whole = run_with_history(&config);
    assert_eq!(whole.report.kills.upload, 3);
    assert_eq!(whole.report.dead_lettered.upload, 2);
    let finished = upload_counts(&whole, HistoryEvent::UploadFinished, 2);
    assert_eq!(
        finished.iter().sum::<usize>(),
        3,
        "one receipt finished per batch"
    );
    assert!(
        finished.iter().any(|count| *count > 1),
        "a finished receipt is embedded again: {finished:?}"
    );
}

/// The upload queue at 54acc5869 has no redrive policy (infra/upload_images/infra.py line 142,
/// the ocr-results queue: `redrive_policy=None,  # No DLQ for now`), so a receipt whose upload
/// always times out (60 s of OCR under a 45 s timeout) is received again every 65 s (the
/// visibility timeout) with no receive limit, until the queue's retention (345 600 s, line 140)
/// deletes it, which leaves a history record. Given a dead-letter queue, its third receive is its
/// last and the message is dead-lettered instead.
#[test]
fn without_a_dead_letter_queue_an_upload_comes_back_until_retention_deletes_it() {
    let mut config = timed_upload(1, "10s", 45);
    config.upload.ocr = sim::distribution::DurationDist::parse("60s").expect("a duration");
    assert!(!config.upload.dead_letter_queue, "the default has none");
    let kept = run_with_history(&config);
    let report = &kept.report;
    assert_eq!(report.stop, "empty");
    assert_eq!(report.dead_lettered.upload, 0);
    assert_eq!(report.expired_by_retention.upload, 1);
    let receives_max = 345_600 / 65 + 1;
    assert!(
        (receives_max - 2..=receives_max).contains(&report.kills.upload),
        "one kill per receive for four days: {}",
        report.kills.upload
    );
    let expired: Vec<&HistoryRecord> = events(&kept, HistoryEvent::ExpiredByRetention).collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].receipt, expired[0].detail.as_str()),
        (Some(0), "upload")
    );
    assert_eq!(expired[0].at.as_secs_f64(), 345_600.0);
    assert_eq!(events(&kept, HistoryEvent::DeadLettered).count(), 0);

    config.upload.dead_letter_queue = true;
    let dead = run_with_history(&config);
    let report = &dead.report;
    assert_eq!(report.stop, "empty");
    assert_eq!(
        report.kills.upload,
        u64::from(config.upload.queue_receive_limit)
    );
    assert_eq!(report.dead_lettered.upload, 1);
    assert_eq!(report.expired_by_retention.upload, 0);
    assert_eq!(events(&dead, HistoryEvent::DeadLettered).count(), 1);
}

/// A receipt embedded again writes a new run (container_ocr/handler/embedding_processor.py:
/// `run_id = str(uuid.uuid4())`), whose delta the compaction upserts over ids that already carry
/// the labels of the first pass (compaction/compaction_run.py: `target.upsert_vectors`). Two
/// receipts in a batch that times out during the second: the first, labelled and finished, comes
/// back with the batch. LangGraph writes the same labels again, which changes no item and sends
/// no message, so nothing applies them after the second merge. Under `replace` (the Python-era
/// store) the merge wipes the labels and the oracle finds every word it came after; under `merge`
/// (the 1.x server) the labels stay; deleting each record once handled, nothing is embedded twice.
#[test]
fn a_re_embedded_receipt_loses_its_labels_under_replace_and_keeps_them_under_merge() {
    use sim::pipeline::config::{UploadBatchDeletion, UpsertMode};
    let mut config = timed_upload(2, "60s", 100);
    config.workload.labels_per_word = sim::distribution::NumberDist::constant(1.0);
    config.workload.lines_per_receipt = sim::distribution::NumberDist::constant(2.0);
    config.workload.words_per_line = sim::distribution::NumberDist::constant(2.0);
    // A batch the busy lock fails comes back soon, so every merge precedes the labels.
    config.queues.visibility_timeout = secs(20);
    config.queues.receive_limit = 10;
    // With a dead-letter queue the batch that keeps timing out is dead-lettered after three
    // receives: the receipts' labels are lost to the merge all the same, and that is their cause.
    config.upload.dead_letter_queue = true;
    config.upload.queue_receive_limit = 3;
    // Per trial: the most runs one receipt inserted, the labelled words whose last delta merge
    // came after their last label update, and the words the oracle finds with unconverged labels.
    let overwritten = |config: &PipelineConfig| {
        let trial = run_with_history(config);
        assert_eq!(trial.report.stop, "empty");
        let runs = (0..2)
            .map(|receipt| {
                events(&trial, HistoryEvent::TableWrite)
                    .filter(|record| {
                        record.receipt == Some(receipt) && record.detail.contains("RunInsert")
                    })
                    .count()
            })
            .max()
            .unwrap_or(0);
        let last = |event: HistoryEvent, id: ChromaId| {
            trial.history.records.iter().rposition(|record| {
                record.event == event
                    && (record.ids.contains(&id)
                        || (event == HistoryEvent::DeltaMerged
                            && record.receipt == Some(id.receipt())))
            })
        };
        let labelled: BTreeSet<ChromaId> = events(&trial, HistoryEvent::LabelsUpdated)
            .flat_map(|record| record.ids.iter().copied())
            .collect();
        let merged_after = labelled
            .iter()
            .filter(|id| {
                last(HistoryEvent::DeltaMerged, **id) > last(HistoryEvent::LabelsUpdated, **id)
            })
            .count();
        let report = judge(&trial);
        let wiped: usize = report
            .anomalies
            .iter()
            .filter(|a| a.class == Class::L)
            .map(|a| a.id_count)
            .sum();
        // Every L anomaly's cause, and whether its receipt's upload message was dead-lettered.
        let causes: Vec<(Cause, bool)> = report
            .anomalies
            .iter()
            .filter(|a| a.class == Class::L)
            .map(|a| {
                let dead = events(&trial, HistoryEvent::DeadLettered)
                    .any(|record| record.receipt == a.receipt && record.ids.is_empty());
                (a.cause, dead)
            })
            .collect();
        (runs, merged_after, wiped, causes)
    };
    config.compaction.upsert = UpsertMode::Replace;
    let (runs, merged_after, wiped, causes) = overwritten(&config);
    assert!(runs >= 2, "a finished receipt is embedded again");
    assert!(merged_after > 0, "a merge came after the labels");
    assert_eq!(
        wiped, merged_after,
        "the merge wiped every label it came after"
    );
    assert!(
        causes.iter().any(|(_, dead)| *dead),
        "a receipt whose labels were wiped also had its upload dead-lettered: {causes:?}"
    );
    assert!(
        causes
            .iter()
            .all(|(cause, _)| *cause == Cause::MergeOverwroteLabels),
        "{causes:?}"
    );
    config.compaction.upsert = UpsertMode::Merge;
    let (runs, merged_after, wiped, _) = overwritten(&config);
    assert!(runs >= 2 && merged_after > 0);
    assert_eq!(wiped, 0, "the merge keeps the labels");
    config.compaction.upsert = UpsertMode::Replace;
    config.upload.batch_deletion = UploadBatchDeletion::PerRecord;
    let (runs, merged_after, wiped, _) = overwritten(&config);
    assert_eq!(runs, 1, "a receipt handled once is merged once");
    assert_eq!((merged_after, wiped), (0, 0));
}

/// One file system (EFS) caches the snapshot versions of every compaction container, and each
/// invocation's write-back prunes it (efs_snapshot_manager.py, `cleanup_old_snapshots`, called at
/// enhanced_compaction_handler.py line 701 after the write-back's `shutil.copytree`), while
/// another invocation may still copy an older version out of it (line 499,
/// `shutil.copytree(efs_snapshot_path, local_snapshot_path)`): that copy reads a version no
/// longer there, and its `except` ("Failed during EFS setup") fails every message of the
/// collection. With a copy of 60 s and the cache pruned to one version, concurrent compactions of
/// a burst lose their copy to a neighbour's write-back; per-container caches never do.
#[test]
fn a_prune_while_copying_fails_the_copy() {
    use sim::pipeline::config::FileCacheSharing;
    let mut config = burst(PipelineConfig::default(), 12);
    config.flow = Flow::New;
    config.compaction.copy = sim::distribution::DurationDist::parse("60s").expect("a duration");
    config.compaction.cache_versions = 1;
    config.queues.visibility_timeout = secs(300);
    config.queues.receive_limit = 10;
    assert_eq!(config.compaction.file_cache, FileCacheSharing::Shared);
    let shared = run_with_history(&config);
    assert_eq!(shared.report.stop, "empty");
    assert!(
        shared.report.counters.snapshot_missing > 0,
        "no copy lost its version"
    );
    config.compaction.file_cache = FileCacheSharing::PerContainer;
    let own = run_with_history(&config);
    assert_eq!(own.report.stop, "empty");
    assert_eq!(own.report.counters.snapshot_missing, 0);
}

/// Per (collection, message group): the receive time of each batch holding the group and the
/// time its invocation last did anything, in receive order.
fn group_batches(trial: &sim::pipeline::Trial) -> BTreeMap<(String, String), Vec<(f64, f64)>> {
    let mut last_at: BTreeMap<String, f64> = BTreeMap::new();
    for record in &trial.history.records {
        if matches!(
            record.actor,
            sim::pipeline::history::Actor::Compaction { .. }
        ) {
            last_at.insert(format!("{:?}", record.actor), record.at.as_secs_f64());
        }
    }
    let mut batches: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for record in events(trial, HistoryEvent::BatchReceived) {
        let actor = format!("{:?}", record.actor);
        let groups: BTreeSet<(String, String)> = message_tokens(record)
            .iter()
            .filter_map(|token| {
                let (collection, message) = token.split_once(' ')?;
                let group = message.split('/').nth(2)?;
                Some((collection.to_string(), group.to_string()))
            })
            .collect();
        for group in groups {
            let at = record.at.as_secs_f64();
            batches
                .entry(group)
                .or_default()
                .push((at, last_at[&actor]));
        }
    }
    batches
}

/// Batches of one message group that were in flight at once.
fn overlapping_group_batches(trial: &sim::pipeline::Trial) -> usize {
    group_batches(trial)
        .values()
        .map(|batches| {
            batches
                .windows(2)
                .filter(|pair| pair[1].0 < pair[0].1)
                .count()
        })
        .sum()
}

/// A FIFO queue's mapping has at most one batch of a message group in flight ("For FIFO queues,
/// Lambda ... processes messages in order within a message group": AWS Lambda Developer Guide,
/// services-sqs-scaling.html and with-sqs.html); the group keys are the code's
/// (`{entity_type}:{run_id, else receipt_id, else image_id}:{collection}`, PIPELINE.md section 3).
/// A burst of receipts on FIFO queues never starts a batch of a group while another batch of it
/// still runs; the same burst on standard queues, which have no groups, does.
#[test]
fn a_fifo_mapping_has_one_batch_in_flight_per_message_group() {
    use sim::pipeline::config::QueueKind;
    let mut config = burst(PipelineConfig::default(), 12);
    config.flow = Flow::New;
    assert_eq!(config.queues.kind, QueueKind::Fifo);
    let fifo = run_with_history(&config);
    assert_eq!(fifo.report.stop, "empty");
    let repeated = group_batches(&fifo)
        .values()
        .filter(|batches| batches.len() > 1)
        .count();
    assert!(repeated > 0, "no group came in more than one batch");
    assert_eq!(overlapping_group_batches(&fifo), 0);
    config.queues.kind = QueueKind::Standard;
    let standard = run_with_history(&config);
    assert!(overlapping_group_batches(&standard) > 0);
}
