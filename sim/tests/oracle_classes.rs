//! The oracle against injected anomalies, one class at a time: a table and two buckets built with
//! the service models' own operations (checkout, upsert, publish, pointer writes) and a publish log
//! written as the pipeline writes it. Every case holds a clean receipt next to the damaged one, so
//! the oracle must also say *where* the anomaly is. A real trial of a converging configuration,
//! judged end to end, closes the file.

use sim::entities::{ChromaId, Collection, EntryFields, LabelFields, LabelItem, ValidationStatus};
use sim::explore;
use sim::oracle::{self, Anomaly, Cause, Class};
use sim::pipeline::config::{MessageGroupKey, MissingId};
use sim::pipeline::history::{
    Actor, CompactIds, History, HistoryEvent, HistoryFilter, HistoryRecord, PointerOutcome,
    PublishRecord,
};
use sim::pipeline::{Flow, PipelineConfig, TrialOptions, ValidatedConfig};
use sim::services::collection::{EntryPatch, UpsertMode};
use sim::services::object_store::{PublishId, SnapshotParams, SnapshotStore, VersionId};
use sim::services::table::{CompactionRun, ReceiptShape, Table};
use sim::time::{Duration, Instant};

/// A test's configuration, validated (a literal: invalid is a bug of the test).
fn valid(config: &PipelineConfig) -> ValidatedConfig {
    ValidatedConfig::new(config.clone()).expect("a valid configuration")
}

/// Receipt 0 is the one each case damages; receipt 1 stays correct; receipt 2 was OCR'd but its
/// run was never inserted, so nothing is owed for it.
const DAMAGED: u32 = 0;
const CLEAN: u32 = 1;
const RECEIPTS: u32 = 3;
const MERCHANT_DAMAGED: u32 = 7;
const MERCHANT_CLEAN: u32 = 9;

fn at(seconds: u64) -> Instant {
    Instant::ZERO.add(Duration::from_secs(seconds))
}

fn word(line: u32, number: u32) -> ChromaId {
    ChromaId::word(DAMAGED, line, number)
}

fn line(number: u32) -> ChromaId {
    ChromaId::line(DAMAGED, number)
}

fn label_item(label: u8, validation_status: ValidationStatus) -> LabelItem {
    LabelItem {
        label,
        validation_status,
        reasoning: 11,
        proposed_by: 2,
        consolidated_from: 0,
    }
}

struct Case {
    table: Table,
    stores: [SnapshotStore; 2],
    history: History,
    quiescent: bool,
}

impl Case {
    /// Receipt 0: lines of 2 and 1 words, merchant 7, a VALID label 0 on word (1, 1) and an INVALID
    /// label 3 on word (2, 1). Receipt 1: one line of one word, merchant 9, no labels. Receipt 2:
    /// OCR only. Both buckets hold only the empty snapshot (publish 0, version 0).
    fn new() -> Case {
        let mut table = Table::new();
        table.put_ocr(at(1), DAMAGED, ReceiptShape::new(&[2, 1], &[false; 3]));
        table.put_metadata(at(1), DAMAGED, MERCHANT_DAMAGED);
        table.put_run(at(1), CompactionRun::pending(0, DAMAGED));
        table.put_label(at(2), word(1, 1), label_item(0, ValidationStatus::Valid));
        table.put_label(at(2), word(2, 1), label_item(3, ValidationStatus::Invalid));
        table.put_ocr(at(1), CLEAN, ReceiptShape::new(&[1], &[false]));
        table.put_metadata(at(1), CLEAN, MERCHANT_CLEAN);
        table.put_run(at(1), CompactionRun::pending(0, CLEAN));
        table.put_ocr(at(1), 2, ReceiptShape::new(&[3], &[false; 3]));
        table.put_metadata(at(1), 2, 4);
        let params = SnapshotParams {
            version_resolution: Duration::from_secs(1),
            keep_versions: 8,
            deltas_window: 64,
            deltas_max: 256,
        };
        Case {
            table,
            stores: [
                SnapshotStore::new(Collection::Lines, params.clone()),
                SnapshotStore::new(Collection::Words, params),
            ],
            history: History::new(HistoryFilter::All),
            quiescent: true,
        }
    }

    /// What a correct compaction holds for `id`.
    fn truth(&self, id: ChromaId) -> EntryFields {
        let labels = if id.is_word() {
            LabelFields::derive(&self.table.label_items(id))
        } else {
            LabelFields::default()
        };
        EntryFields {
            merchant: self.table.metadata(id.receipt()).expect("metadata written"),
            labels,
        }
    }

    /// Every id of the receipts with a run, with its correct fields, changed by `tamper` (`None`
    /// leaves the id out).
    fn entries(
        &self,
        collection: Collection,
        tamper: &dyn Fn(ChromaId, EntryFields) -> Option<EntryFields>,
    ) -> Vec<(ChromaId, EntryFields)> {
        [DAMAGED, CLEAN]
            .into_iter()
            .flat_map(|receipt| {
                let shape = self.table.shape(receipt).expect("OCR'd");
                shape.collection_ids(receipt, collection)
            })
            .filter_map(|id| tamper(id, self.truth(id)).map(|fields| (id, fields)))
            .collect()
    }

    /// Checks out `base`, upserts `entries`, uploads the copy at `seconds` and logs the publish as
    /// not yet promoted. Returns the publish and its version id.
    fn upload(
        &mut self,
        collection: Collection,
        seconds: u64,
        base: PublishId,
        entries: &[(ChromaId, EntryFields)],
    ) -> (PublishId, VersionId) {
        let store = &mut self.stores[collection.index()];
        let mut copy = store.checkout(base);
        for (id, fields) in entries {
            let patch = EntryPatch {
                merchant: Some(fields.merchant),
                labels: Some(fields.labels),
            };
            copy.upsert(store, *id, patch, UpsertMode::Replace);
        }
        let outcome = store.publish(at(seconds), copy);
        let mut ids: Vec<ChromaId> = entries.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        self.history.publishes[collection.index()].push(PublishRecord {
            collection,
            publish: u64::from(outcome.publish.0),
            base: u64::from(base.0),
            version: outcome.version.0,
            at: at(seconds),
            invocation: seconds,
            ids: CompactIds::from_sorted(&ids),
            pointer: PointerOutcome::NotWritten,
            promoted_at: None,
        });
        (outcome.publish, outcome.version)
    }

    /// Writes the pointer blindly to `publish`'s version at `seconds` and logs the promotion.
    fn promote(&mut self, collection: Collection, seconds: u64, publish: PublishId) {
        let store = &mut self.stores[collection.index()];
        let version = store.publish_info(publish).version;
        store.write_pointer(at(seconds), version);
        self.log_promotion(collection, seconds, publish);
    }

    fn log_promotion(&mut self, collection: Collection, seconds: u64, publish: PublishId) {
        let record = self.history.publishes[collection.index()]
            .iter_mut()
            .find(|record| record.publish == u64::from(publish.0))
            .expect("the publish was logged");
        record.pointer = PointerOutcome::Promoted;
        record.promoted_at = Some(at(seconds));
    }

    /// One compaction per collection at `seconds`, on the pointer's publish, promoted by
    /// compare-and-swap against the etag read at checkout.
    fn compact(
        &mut self,
        seconds: u64,
        tamper: &dyn Fn(ChromaId, EntryFields) -> Option<EntryFields>,
    ) {
        for collection in Collection::ALL {
            let entries = self.entries(collection, tamper);
            let store = &self.stores[collection.index()];
            let etag = store.read_pointer().etag;
            let base = store
                .pointer_publish()
                .expect("the pointer names a version");
            let (publish, version) = self.upload(collection, seconds, base, &entries);
            let store = &mut self.stores[collection.index()];
            let write = store
                .write_pointer_if_match(at(seconds), version, etag)
                .expect("nobody else wrote the pointer");
            assert_eq!(write.pointer.version, version);
            self.log_promotion(collection, seconds, publish);
        }
    }

    fn record(&mut self, seconds: u64, event: HistoryEvent, ids: &[ChromaId]) {
        self.history.records.push(HistoryRecord {
            at: at(seconds),
            actor: Actor::Workload,
            event,
            receipt: Some(DAMAGED),
            ids: ids.to_vec(),
            detail: String::new(),
        });
    }

    fn judge(&self) -> oracle::Report {
        oracle::check(&oracle::Input {
            table: &self.table,
            stores: [&self.stores[0], &self.stores[1]],
            history: &self.history,
            receipts: RECEIPTS,
            quiescent: self.quiescent,
        })
    }
}

fn correct(_: ChromaId, fields: EntryFields) -> Option<EntryFields> {
    Some(fields)
}

fn of_class(report: &oracle::Report, class: Class) -> Vec<&Anomaly> {
    report
        .anomalies
        .iter()
        .filter(|anomaly| anomaly.class == class)
        .collect()
}

/// Only the damaged receipt is named, and the summary agrees with the list.
fn assert_only_damaged(report: &oracle::Report) {
    assert_eq!(report.receipts_checked, u64::from(RECEIPTS));
    assert_eq!(
        report.affected_receipts(),
        vec![DAMAGED],
        "{:#?}",
        report.anomalies
    );
    assert_eq!(report.receipts_affected, 1);
    let listed: u64 = report.by_class.values().sum();
    assert_eq!(listed, report.anomalies.len() as u64);
}

/// The single anomaly of a report whose only findings are per-id ones.
fn single(report: &oracle::Report) -> &Anomaly {
    assert_eq!(report.anomalies.len(), 1, "{:#?}", report.anomalies);
    assert_only_damaged(report);
    &report.anomalies[0]
}

fn strip_labels_of(target: ChromaId) -> impl Fn(ChromaId, EntryFields) -> Option<EntryFields> {
    move |id, fields| {
        Some(if id == target {
            EntryFields {
                labels: LabelFields::default(),
                ..fields
            }
        } else {
            fields
        })
    }
}

#[test]
fn everything_converged_is_clean() {
    let mut case = Case::new();
    case.compact(10, &correct);
    // A second, idempotent compaction on top changes nothing either.
    case.compact(20, &correct);
    let report = case.judge();
    assert!(report.is_clean(), "{:#?}", report.anomalies);
    assert_eq!(report.receipts_checked, u64::from(RECEIPTS));
    assert_eq!(report.receipts_affected, 0);
    assert!(report.by_class.values().all(|count| *count == 0));
    assert!(report.kinds().is_empty());
}

#[test]
fn nothing_published_is_class_e_only_for_receipts_with_a_run() {
    let case = Case::new();
    let report = case.judge();
    // Receipts 0 and 1 have runs and nothing in either bucket; receipt 2 has no run and is owed
    // nothing.
    assert_eq!(report.affected_receipts(), vec![DAMAGED, CLEAN]);
    assert!(report.anomalies.iter().all(|a| a.class == Class::E));
    let damaged_ids: usize = report
        .anomalies
        .iter()
        .filter(|a| a.receipt == Some(DAMAGED))
        .map(|a| a.id_count)
        .sum();
    assert_eq!(damaged_ids, 2 + 3, "two lines and three words");
}

#[test]
fn a_word_missing_from_the_snapshot_is_class_e() {
    let missing = word(1, 2);
    let drop_word = move |id: ChromaId, fields| (id != missing).then_some(fields);
    let mut case = Case::new();
    case.compact(10, &drop_word);
    let report = case.judge();
    let anomaly = single(&report);
    assert_eq!(anomaly.class, Class::E);
    assert_eq!(anomaly.collection, Some(Collection::Words));
    assert_eq!((anomaly.id_count, anomaly.ids.clone()), (1, vec![missing]));
    assert_eq!(
        (anomaly.expected.as_str(), anomaly.found.as_str()),
        ("present", "absent")
    );
    assert_eq!(anomaly.cause, Cause::Unexplained, "no history explains it");
    assert_eq!(report.receipts_affected_by_class[&Class::E], 1);

    // A failed delta upload recorded for the receipt explains it.
    let mut case = Case::new();
    case.record(5, HistoryEvent::DeltaLost, &[]);
    case.compact(10, &drop_word);
    let report = case.judge();
    assert_eq!(single(&report).cause, Cause::DeltaLost);
    assert_eq!(single(&report).excerpt.len(), 1);

    // A trial cut at its horizon may still have had the merge coming.
    let mut case = Case::new();
    case.quiescent = false;
    case.compact(10, &drop_word);
    assert_eq!(single(&case.judge()).cause, Cause::InFlightAtHorizon);
}

#[test]
fn label_fields_unlike_the_table_are_class_l() {
    let target = word(1, 1);
    let mut case = Case::new();
    case.compact(10, &strip_labels_of(target));
    let report = case.judge();
    let anomaly = single(&report);
    assert_eq!(anomaly.class, Class::L);
    assert_eq!(anomaly.collection, Some(Collection::Words));
    assert_eq!(anomaly.ids, vec![target]);
    let expected = LabelFields::derive(&case.table.label_items(target));
    assert!(!expected.is_empty());
    assert_eq!(anomaly.expected, expected.to_string());
    assert_eq!(anomaly.found, LabelFields::default().to_string());

    // Wrong fields rather than none: the label's status flipped in the snapshot.
    let flipped = move |id: ChromaId, fields: EntryFields| {
        Some(if id == word(2, 1) {
            EntryFields {
                labels: LabelFields::derive(&[label_item(3, ValidationStatus::Valid)]),
                ..fields
            }
        } else {
            fields
        })
    };
    let mut case = Case::new();
    case.compact(10, &flipped);
    let report = case.judge();
    assert_eq!(single(&report).class, Class::L);
    assert_eq!(single(&report).ids, vec![word(2, 1)]);
}

#[test]
fn the_history_of_a_label_names_its_cause() {
    let target = word(1, 1);
    let judge = |events: &[HistoryEvent], quiescent: bool| -> (Cause, usize) {
        let mut case = Case::new();
        case.quiescent = quiescent;
        for (offset, event) in (0..).zip(events) {
            case.record(3 + offset, *event, &[target]);
        }
        case.compact(10, &strip_labels_of(target));
        let report = case.judge();
        let anomaly = single(&report);
        assert_eq!(anomaly.class, Class::L);
        (anomaly.cause, anomaly.excerpt.len())
    };
    // Written to DynamoDB, never sent on: the stream processor dropped the INSERT.
    assert_eq!(
        judge(&[HistoryEvent::TableWrite], true),
        (Cause::LabelInsertNotForwarded, 1)
    );
    // Sent, but the compaction found no embedding for the word and dropped the update.
    assert_eq!(
        judge(
            &[
                HistoryEvent::TableWrite,
                HistoryEvent::MessagesSent,
                HistoryEvent::EmbeddingNotFound
            ],
            true
        ),
        (Cause::LabelBeforeEmbedding, 3)
    );
    assert_eq!(
        judge(&[HistoryEvent::EmbeddingNotFound], true).0,
        Cause::LabelBeforeEmbedding
    );
    // Written and sent, nothing else known: no rule may claim it.
    assert_eq!(
        judge(
            &[HistoryEvent::TableWrite, HistoryEvent::MessagesSent],
            true
        )
        .0,
        Cause::Unexplained
    );
    // Not sent yet when the trial was cut at its horizon: the message may still have come.
    assert_eq!(
        judge(&[HistoryEvent::TableWrite], false).0,
        Cause::InFlightAtHorizon
    );
    // The message went to the dead-letter queue.
    assert_eq!(
        judge(
            &[
                HistoryEvent::TableWrite,
                HistoryEvent::MessagesSent,
                HistoryEvent::DeadLettered
            ],
            true
        )
        .0,
        Cause::DeadLettered
    );
    // Applied, then a later merge replaced the word's metadata without them.
    let overwritten = [
        HistoryEvent::LabelsUpdated,
        HistoryEvent::DeltaMerged,
        HistoryEvent::MergeReplacedLabels,
    ];
    assert_eq!(judge(&overwritten, true).0, Cause::MergeOverwroteLabels);
    // A merge that kept the labels (an upsert that merges keys) is not what lost them.
    assert_eq!(
        judge(
            &[HistoryEvent::LabelsUpdated, HistoryEvent::DeltaMerged],
            true
        )
        .0,
        Cause::Unexplained
    );
    // Labels applied again after the overwrite: the overwrite no longer explains them.
    let reapplied = [&overwritten[..], &[HistoryEvent::LabelsUpdated]].concat();
    assert_ne!(judge(&reapplied, true).0, Cause::MergeOverwroteLabels);
}

/// A receipt's upload message dead-lettered (a record about the receipt naming no id) says
/// nothing about a word whose applied labels a later merge overwrote: the overwrite is the cause.
#[test]
fn an_overwrite_of_applied_labels_is_the_cause_beside_a_dead_letter_of_the_receipt() {
    let target = word(1, 1);
    let mut case = Case::new();
    case.record(3, HistoryEvent::LabelsUpdated, &[target]);
    case.record(4, HistoryEvent::DeadLettered, &[]);
    case.record(5, HistoryEvent::DeltaMerged, &[target]);
    case.record(5, HistoryEvent::MergeReplacedLabels, &[target]);
    case.compact(10, &strip_labels_of(target));
    assert_eq!(single(&case.judge()).cause, Cause::MergeOverwroteLabels);
    // Without the overwrite the dead letter is all the history says.
    let mut case = Case::new();
    case.record(3, HistoryEvent::LabelsUpdated, &[target]);
    case.record(4, HistoryEvent::DeadLettered, &[]);
    case.record(5, HistoryEvent::DeltaMerged, &[target]);
    case.compact(10, &strip_labels_of(target));
    assert_eq!(single(&case.judge()).cause, Cause::DeadLettered);
}

#[test]
fn a_merchant_unlike_the_metadata_is_class_m_in_each_collection() {
    let stale = |_: ChromaId, fields: EntryFields| {
        Some(if fields.merchant == MERCHANT_DAMAGED {
            EntryFields {
                merchant: 5,
                ..fields
            }
        } else {
            fields
        })
    };
    let mut case = Case::new();
    case.compact(10, &stale);
    let report = case.judge();
    assert_only_damaged(&report);
    let merchant = of_class(&report, Class::M);
    assert_eq!(merchant.len(), 2, "{:#?}", report.anomalies);
    assert_eq!(report.anomalies.len(), 2, "labels are right, so only M");
    let lines = merchant
        .iter()
        .find(|a| a.collection == Some(Collection::Lines))
        .expect("lines named");
    assert_eq!(lines.ids, vec![line(1), line(2)]);
    let words = merchant
        .iter()
        .find(|a| a.collection == Some(Collection::Words))
        .expect("words named");
    assert_eq!(words.id_count, 3);
    assert_eq!(lines.expected, "merchant 7");
    assert_eq!(lines.found, "merchant 5");
    assert!(
        merchant
            .iter()
            .all(|a| a.cause == Cause::MetadataNotForwarded)
    );
    assert_eq!(report.receipts_affected_by_class[&Class::M], 1);

    // A merchant update that reached the compaction naming none of these ids: it came before the
    // embeddings were merged.
    let mut case = Case::new();
    case.record(4, HistoryEvent::MerchantUpdated, &[]);
    case.compact(10, &stale);
    let report = case.judge();
    assert!(
        of_class(&report, Class::M)
            .iter()
            .all(|a| a.cause == Cause::MetadataBeforeEmbedding),
        "{:#?}",
        report.anomalies
    );
}

/// Two compactions check out the same version; the first promotes, the second promotes after it
/// with a blind write, and readers lose what only the first wrote.
#[test]
fn a_second_publish_from_the_same_base_loses_the_first_class_u() {
    let mut case = Case::new();
    case.compact(10, &correct);
    let collection = Collection::Words;
    let base = case.stores[1].pointer_publish().unwrap();
    let etag_at_checkout = case.stores[1].read_pointer().etag;
    let relabelled = LabelFields::derive(&[
        label_item(0, ValidationStatus::Valid),
        label_item(1, ValidationStatus::Valid),
    ]);
    // The first writes a new label on word (1, 1) (which the table then holds); the second, built
    // on the same base, writes only the clean receipt's word.
    case.table
        .put_label(at(15), word(1, 1), label_item(1, ValidationStatus::Valid));
    assert_eq!(case.truth(word(1, 1)).labels, relabelled);
    let first_fields = case.truth(word(1, 1));
    let clean_word = ChromaId::word(CLEAN, 1, 1);
    let clean_fields = case.truth(clean_word);
    let (first, first_version) = case.upload(collection, 20, base, &[(word(1, 1), first_fields)]);
    let (second, second_version) = case.upload(collection, 25, base, &[(clean_word, clean_fields)]);
    assert!(first_version < second_version);
    case.stores[1]
        .write_pointer_if_match(at(21), first_version, etag_at_checkout)
        .expect("the first promotion finds the etag it read");
    case.log_promotion(collection, 21, first);
    // A compare-and-swap would refuse the second promotion ...
    let refused = case.stores[1]
        .write_pointer_if_match(at(26), second_version, etag_at_checkout)
        .expect_err("the pointer moved since the checkout");
    assert_eq!(refused.current.version, first_version);
    // ... a blind overwrite goes through.
    case.promote(collection, 26, second);

    let report = case.judge();
    assert_only_damaged(&report);
    let lost = of_class(&report, Class::U);
    assert_eq!(lost.len(), 1, "{:#?}", report.anomalies);
    assert_eq!(lost[0].cause, Cause::StaleBase);
    assert_eq!(lost[0].collection, Some(collection));
    assert_eq!(lost[0].ids, vec![word(1, 1)]);
    assert_eq!(
        lost[0].expected,
        format!("publish {} keeps what publish {} held", second.0, first.0)
    );
    // The pointer's snapshot holds the old labels of that word: L, explained by the same loss.
    let labels = of_class(&report, Class::L);
    assert_eq!(labels.len(), 1);
    assert_eq!(labels[0].ids, vec![word(1, 1)]);
    assert_eq!(labels[0].cause, Cause::StaleBase);
    assert!(
        of_class(&report, Class::P).is_empty(),
        "the pointer only moved forward"
    );
}

/// Two uploads within one version tick: the second replaces the first under the same key while
/// the pointer names it, so readers lose the first's writes and the version id was reused.
#[test]
fn an_upload_reusing_the_pointers_version_id_is_class_u_and_p() {
    let mut case = Case::new();
    case.compact(10, &correct);
    let collection = Collection::Lines;
    let base = case.stores[0].pointer_publish().unwrap();
    let fields = case.truth(line(1));
    let renamed = EntryFields {
        merchant: 12,
        ..fields
    };
    case.table.put_metadata(at(29), DAMAGED, 12);
    let (first, first_version) = case.upload(collection, 30, base, &[(line(1), renamed)]);
    case.promote(collection, 30, first);
    // 30.5 s and 30 s share a version id at a 1 s resolution.
    let store = &mut case.stores[0];
    let copy = store.checkout(base);
    let outcome = store.publish(Instant::ZERO.add(Duration::from_millis(30_500)), copy);
    assert_eq!(outcome.version, first_version);
    assert_eq!(outcome.replaced, Some(first));
    assert!(
        outcome.head_move.is_some(),
        "readers of the pointer see it at once"
    );
    case.history.publishes[collection.index()].push(PublishRecord {
        collection,
        publish: u64::from(outcome.publish.0),
        base: u64::from(base.0),
        version: outcome.version.0,
        at: Instant::ZERO.add(Duration::from_millis(30_500)),
        invocation: 31,
        ids: CompactIds::from_sorted(&[]),
        pointer: PointerOutcome::NotWritten,
        promoted_at: None,
    });

    let report = case.judge();
    let reused: Vec<&Anomaly> = of_class(&report, Class::P)
        .into_iter()
        .filter(|a| a.cause == Cause::VersionIdReused)
        .collect();
    assert_eq!(reused.len(), 1, "{:#?}", report.anomalies);
    assert_eq!(reused[0].ids, vec![line(1)]);
    assert_eq!(
        reused[0].found,
        format!(
            "publish {} reused version id {} of publish {} at {}",
            outcome.publish.0,
            first_version.0,
            first.0,
            Instant::ZERO.add(Duration::from_millis(30_500))
        )
    );
    let lost = of_class(&report, Class::U);
    assert_eq!(lost.len(), 1, "{:#?}", report.anomalies);
    assert_eq!(lost[0].cause, Cause::VersionIdReused);
    assert_eq!(lost[0].ids, vec![line(1)]);
    // The new merchant is gone from the first line, lost; the other ids never had it.
    let merchant: Vec<(Collection, Cause, Vec<ChromaId>)> = of_class(&report, Class::M)
        .iter()
        .map(|a| (a.collection.unwrap(), a.cause, a.ids.clone()))
        .collect();
    let words: Vec<ChromaId> = (1..=2).map(|n| word(1, n)).chain([word(2, 1)]).collect();
    assert_eq!(
        merchant,
        vec![
            (Collection::Lines, Cause::VersionIdReused, vec![line(1)]),
            (
                Collection::Lines,
                Cause::MetadataNotForwarded,
                vec![line(2)]
            ),
            (Collection::Words, Cause::MetadataNotForwarded, words),
        ]
    );
    let lost_line = of_class(&report, Class::M)
        .into_iter()
        .find(|a| a.cause == Cause::VersionIdReused)
        .unwrap();
    assert_eq!(lost_line.expected, "merchant 12");
    assert_eq!(lost_line.found, "merchant 7");
    assert_only_damaged(&report);
}

/// A slow compaction uploads first and promotes last: the pointer goes back to an older version
/// id, and what the newer publish wrote disappears for readers.
#[test]
fn a_pointer_moved_to_an_older_version_is_class_p() {
    let mut case = Case::new();
    case.compact(10, &correct);
    let collection = Collection::Words;
    let base = case.stores[1].pointer_publish().unwrap();
    let clean_word = ChromaId::word(CLEAN, 1, 1);
    let clean_fields = case.truth(clean_word);
    let (slow, slow_version) = case.upload(collection, 40, base, &[(clean_word, clean_fields)]);
    case.table
        .put_label(at(44), word(1, 2), label_item(5, ValidationStatus::Pending));
    let labelled = case.truth(word(1, 2));
    let (fast, fast_version) = case.upload(collection, 45, base, &[(word(1, 2), labelled)]);
    case.promote(collection, 45, fast);
    case.promote(collection, 50, slow);
    assert_eq!(case.stores[1].read_pointer().version, slow_version);
    assert!(slow_version < fast_version);

    let report = case.judge();
    let pointer = of_class(&report, Class::P);
    assert_eq!(pointer.len(), 1, "{:#?}", report.anomalies);
    assert_eq!(pointer[0].cause, Cause::PointerWentBack);
    // The issue names what the publish promoted back wrote: the clean receipt's word.
    assert_eq!(pointer[0].receipt, Some(CLEAN));
    assert_eq!(pointer[0].ids, vec![clean_word]);
    assert_eq!(
        pointer[0].found,
        format!(
            "pointer moved back from version {} to {} at {}",
            fast_version.0,
            slow_version.0,
            at(50)
        )
    );
    let lost = of_class(&report, Class::U);
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].receipt, Some(DAMAGED));
    assert_eq!(lost[0].ids, vec![word(1, 2)]);
    assert_eq!(lost[0].cause, Cause::StaleBase);
    let labels = of_class(&report, Class::L);
    assert_eq!(labels.len(), 1);
    assert_eq!(labels[0].ids, vec![word(1, 2)]);
}

/// A publish log entry with no store behind it: another publish reusing a version id that is not
/// the pointer's, found from the log alone.
#[test]
fn a_version_id_reused_off_the_pointer_is_class_p() {
    let mut case = Case::new();
    case.compact(10, &correct);
    let words = &mut case.history.publishes[Collection::Words.index()];
    let last = words.last().unwrap().publish;
    let logged = |publish: u64, seconds: u64, ids: &[ChromaId]| PublishRecord {
        collection: Collection::Words,
        publish,
        base: last,
        version: 60,
        at: at(seconds),
        invocation: publish,
        ids: CompactIds::from_sorted(ids),
        pointer: PointerOutcome::NotWritten,
        promoted_at: None,
    };
    words.push(logged(last + 1, 60, &[word(1, 1)]));
    words.push(logged(last + 2, 60, &[word(1, 2)]));
    let report = case.judge();
    let reused = of_class(&report, Class::P);
    assert_eq!(reused.len(), 1, "{:#?}", report.anomalies);
    assert_eq!(reused[0].cause, Cause::VersionIdReused);
    assert_eq!(reused[0].ids, vec![word(1, 1)]);
    // Neither was ever visible, so nobody lost anything and the snapshot is still right.
    assert!(of_class(&report, Class::U).is_empty());
    assert_eq!(report.anomalies.len(), 1);
}

/// The described profile with the two repairs that make it converge (retry ids not yet merged,
/// one FIFO group per collection), old flow, a light load and a wait cap no run reaches.
fn converging_config(seed: u64) -> PipelineConfig {
    let mut config = PipelineConfig::described();
    config.seed = seed;
    config.flow = Flow::Old;
    config.workload.receipts = 6;
    config.compaction.missing_id = MissingId::Retry;
    config.stream_processor.message_group = MessageGroupKey::Collection;
    config.wait.cap = Duration::from_secs(30 * 60);
    config
}

#[test]
fn a_converging_trial_judged_end_to_end_is_clean() {
    for seed in 1..=3 {
        let config = converging_config(seed);
        let judged = explore::judge(&valid(&config), None, &TrialOptions::default());
        let report = &judged.trial.report;
        assert!(
            judged.oracle.is_clean(),
            "seed {seed}: {:#?}",
            judged.oracle.kinds()
        );
        assert_eq!(report.stop, "empty", "seed {seed}");
        assert_eq!(judged.oracle.receipts_checked, 6);
        assert_eq!(report.never_visible, 0, "seed {seed}");
        assert_eq!(report.latency_ms.labels_visible.count, 6, "seed {seed}");
    }
}

/// The same load on the described profile as written (ids not yet merged are dropped): the oracle
/// is not blind on real trials, and `judge` re-runs with history to explain what it finds.
#[test]
fn the_unrepaired_profile_judged_end_to_end_is_not_clean() {
    let mut config = converging_config(1);
    config.compaction.missing_id = MissingId::Drop;
    config.stream_processor.message_group = MessageGroupKey::Receipt;
    config.wait.cap = Duration::from_secs(120);
    let judged = explore::judge(&valid(&config), None, &TrialOptions::default());
    assert!(!judged.oracle.is_clean());
    let kinds = judged.oracle.kinds();
    assert!(
        kinds.contains(&(Class::L, Cause::LabelBeforeEmbedding)),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().all(|(_, cause)| *cause != Cause::Unexplained),
        "{kinds:?}"
    );
    assert!(judged.trial.report.never_visible > 0);
    for anomaly in &judged.oracle.anomalies {
        assert!(!anomaly.excerpt.is_empty(), "{anomaly:?}");
        if anomaly.cause == Cause::LabelBeforeEmbedding {
            assert!(
                anomaly
                    .excerpt
                    .iter()
                    .any(|r| r.event == HistoryEvent::EmbeddingNotFound),
                "the excerpt shows the dropped update"
            );
        }
    }
}

/// Exploration judges with `check_kinds` over the evidence history: the same anomalies as `check`
/// over the whole history, id for id and cause for cause, without the text only people read; and
/// a hunt's per-kind counts are the full judgement's.
#[test]
fn judging_for_kinds_finds_what_the_full_judgement_finds() {
    let mut racing = 0;
    for seed in 1..=9 {
        let mut config = converging_config(seed);
        config.flow = Flow::New;
        config.compaction.missing_id = MissingId::Drop;
        config.stream_processor.message_group = MessageGroupKey::Receipt;
        // Seeds in turn, with FIFO, random and PCT orders of simultaneous events.
        let choices = explore::choices_for(1, seed - 1, 200);
        let trial = |history| {
            let (config, options) = explore::apply(&valid(&config), &choices, history);
            sim::pipeline::run_trial(&config, None, &options)
        };
        let whole = trial(HistoryFilter::All);
        let evidence = trial(HistoryFilter::Evidence);
        assert_eq!(whole.report.fingerprint, evidence.report.fingerprint);
        assert!(evidence.history.records.len() < whole.history.records.len());
        let full = oracle::check(&explore::oracle_input(&whole));
        let kinds = oracle::check_kinds(&explore::oracle_input(&evidence));
        racing += usize::from(!full.is_clean());
        let summary = |report: &oracle::Report| -> Vec<_> {
            report
                .anomalies
                .iter()
                .map(|a| {
                    (
                        a.class,
                        a.cause,
                        a.receipt,
                        a.collection,
                        a.id_count,
                        a.ids.clone(),
                    )
                })
                .collect()
        };
        assert_eq!(summary(&full), summary(&kinds), "seed {seed}");
        assert_eq!(full.by_class, kinds.by_class);
        assert_eq!(full.receipts_affected, kinds.receipts_affected);
        assert!(full.anomalies.iter().all(|a| !a.excerpt.is_empty()));
        assert!(kinds.anomalies.iter().all(|a| a.excerpt.is_empty()));
        let explored = explore::explore(&valid(&config), &choices);
        assert_eq!(
            explored.affected,
            explore::affected_by_kind(&full),
            "seed {seed}"
        );
    }
    assert!(
        racing >= 2,
        "the unrepaired profile races on some seeds: {racing}"
    );
}
