//! The oracle on hand-built worlds: a table, two buckets and a history made directly with the
//! service models, each with one injected anomaly of a known class and cause, and a clean one.

use sim::entities::{ChromaId, Collection, EntryFields, LabelFields, LabelItem, ValidationStatus};
use sim::oracle::{self, Cause, Class};
use sim::pipeline::history::{
    Actor, CompactIds, History, HistoryEvent, HistoryFilter, HistoryRecord, PointerOutcome,
    PublishRecord,
};
use sim::services::collection::{EntryPatch, UpsertMode};
use sim::services::object_store::{PublishId, SnapshotParams, SnapshotStore};
use sim::services::table::{CompactionRun, ReceiptShape, Table};
use sim::time::{Duration, Instant};

const MERCHANT: u32 = 7;

fn at(seconds: u64) -> Instant {
    Instant::ZERO.add(Duration::from_secs(seconds))
}

fn item(label: u8) -> LabelItem {
    LabelItem {
        label,
        validation_status: ValidationStatus::Valid,
        reasoning: 3,
        proposed_by: 1,
        consolidated_from: 0,
    }
}

/// Receipt 0: one line of two words, merchant 7, a run inserted, a VALID label on word 1.
struct World {
    table: Table,
    stores: [SnapshotStore; 2],
    history: History,
}

impl World {
    fn new() -> World {
        let mut table = Table::new();
        table.put_ocr(at(1), 0, ReceiptShape::new(&[2], &[false, false]));
        table.put_metadata(at(2), 0, MERCHANT);
        table.put_run(at(3), CompactionRun::pending(0, 0));
        table.put_label(at(4), word(1), item(0));
        let params = SnapshotParams {
            version_resolution: Duration::from_secs(1),
            keep_versions: 4,
            deltas_window: 64,
            deltas_max: 256,
        };
        let stores = [
            SnapshotStore::new(Collection::Lines, params.clone()),
            SnapshotStore::new(Collection::Words, params),
        ];
        World {
            table,
            stores,
            history: History::new(HistoryFilter::All),
        }
    }

    /// What a correct compaction writes for `id`.
    fn correct(&self, id: ChromaId) -> EntryFields {
        let labels = if id.is_word() {
            LabelFields::derive(&self.table.label_items(id))
        } else {
            LabelFields::default()
        };
        EntryFields {
            merchant: MERCHANT,
            labels,
        }
    }

    /// Publishes `entries` into `collection` on top of the pointer's version at `seconds`,
    /// promotes it, and logs the publish as the pipeline does.
    fn publish(
        &mut self,
        collection: Collection,
        seconds: u64,
        entries: &[(ChromaId, EntryFields)],
    ) {
        let store = &mut self.stores[collection.index()];
        let base = store
            .pointer_publish()
            .expect("the pointer names a version");
        let mut copy = store.checkout(base);
        for (id, fields) in entries {
            let patch = EntryPatch {
                merchant: Some(fields.merchant),
                labels: Some(fields.labels),
            };
            copy.upsert(store, *id, patch, UpsertMode::Replace);
        }
        let outcome = store.publish(at(seconds), copy);
        store.write_pointer(at(seconds), outcome.version);
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
            pointer: PointerOutcome::Promoted,
            promoted_at: Some(at(seconds)),
        });
    }

    /// Publishes every id of receipt 0 correctly, except as `tamper` says.
    fn publish_all(
        &mut self,
        seconds: u64,
        tamper: impl Fn(ChromaId, EntryFields) -> Option<EntryFields>,
    ) {
        for collection in Collection::ALL {
            let ids = self.table.shape(0).unwrap().collection_ids(0, collection);
            let entries: Vec<(ChromaId, EntryFields)> = ids
                .into_iter()
                .filter_map(|id| tamper(id, self.correct(id)).map(|f| (id, f)))
                .collect();
            self.publish(collection, seconds, &entries);
        }
    }

    fn record(&mut self, seconds: u64, event: HistoryEvent, ids: &[ChromaId]) {
        self.history.records.push(HistoryRecord {
            at: at(seconds),
            actor: Actor::Workload,
            event,
            receipt: Some(0),
            ids: ids.to_vec(),
            detail: String::new(),
        });
    }

    fn check(&self) -> oracle::Report {
        oracle::check(&oracle::Input {
            table: &self.table,
            stores: [&self.stores[0], &self.stores[1]],
            history: &self.history,
            receipts: 1,
            quiescent: true,
        })
    }
}

fn word(number: u32) -> ChromaId {
    ChromaId::word(0, 1, number)
}

/// The (class, cause) pairs of a report.
fn kinds(report: &oracle::Report) -> Vec<(Class, Cause)> {
    report.kinds()
}

#[test]
fn a_converged_world_has_no_anomaly() {
    let mut world = World::new();
    world.publish_all(10, |_, fields| Some(fields));
    let report = world.check();
    assert!(report.is_clean(), "{:?}", report.anomalies);
    assert_eq!(report.receipts_checked, 1);
    assert_eq!(report.receipts_affected, 0);
}

#[test]
fn a_missing_embedding_is_class_e() {
    let mut world = World::new();
    world.publish_all(10, |id, fields| (id != word(2)).then_some(fields));
    let report = world.check();
    assert_eq!(report.by_class[&Class::E], 1);
    let anomaly = &report.anomalies[0];
    assert_eq!(
        (anomaly.class, anomaly.collection, anomaly.receipt),
        (Class::E, Some(Collection::Words), Some(0))
    );
    assert_eq!(anomaly.ids, vec![word(2)]);
    assert_eq!(report.receipts_affected_by_class[&Class::E], 1);
}

#[test]
fn unconverged_labels_are_class_l_and_the_history_names_the_cause() {
    let strip = |id: ChromaId, fields: EntryFields| {
        Some(if id == word(1) {
            EntryFields {
                labels: LabelFields::default(),
                ..fields
            }
        } else {
            fields
        })
    };
    // The label was written and never sent: the stream processor dropped the INSERT.
    let mut world = World::new();
    world.record(4, HistoryEvent::TableWrite, &[word(1)]);
    world.publish_all(10, strip);
    let report = world.check();
    assert_eq!(
        kinds(&report),
        vec![(Class::L, Cause::LabelInsertNotForwarded)]
    );
    assert_eq!(report.anomalies[0].ids, vec![word(1)]);
    assert_eq!(
        report.anomalies[0].excerpt.len(),
        1,
        "the excerpt holds the record that touched the word"
    );
    // The label was sent, but the compaction found no embedding and dropped it.
    let mut world = World::new();
    world.record(4, HistoryEvent::TableWrite, &[word(1)]);
    world.record(5, HistoryEvent::MessagesSent, &[word(1)]);
    world.record(6, HistoryEvent::EmbeddingNotFound, &[word(1)]);
    world.publish_all(10, strip);
    assert_eq!(
        kinds(&world.check()),
        vec![(Class::L, Cause::LabelBeforeEmbedding)]
    );
    // The label was applied, then a later merge replaced the word's metadata.
    let mut world = World::new();
    world.record(6, HistoryEvent::LabelsUpdated, &[word(1)]);
    world.record(8, HistoryEvent::DeltaMerged, &[word(1), word(2)]);
    world.publish_all(10, strip);
    assert_eq!(
        kinds(&world.check()),
        vec![(Class::L, Cause::MergeOverwroteLabels)]
    );
}

#[test]
fn an_old_merchant_is_class_m() {
    let mut world = World::new();
    world.publish_all(10, |id, fields| {
        Some(if id.is_word() {
            fields
        } else {
            EntryFields {
                merchant: 5,
                ..fields
            }
        })
    });
    let report = world.check();
    assert_eq!(report.by_class[&Class::M], 1, "{:?}", report.anomalies);
    let anomaly = &report.anomalies[0];
    assert_eq!(anomaly.collection, Some(Collection::Lines));
    assert_eq!(anomaly.expected, "merchant 7");
    assert_eq!(anomaly.found, "merchant 5");
}

#[test]
fn a_publish_from_a_stale_base_loses_an_update_class_u() {
    let mut world = World::new();
    world.publish_all(10, |_, fields| Some(fields));
    // A second publish of `words`, built on the empty snapshot (publish 0) instead of the pointer's
    // version, promoted later: the first publish's words are lost to readers.
    let store = &mut world.stores[Collection::Words.index()];
    let copy = store.checkout(PublishId(0));
    let outcome = store.publish(at(20), copy);
    store.write_pointer(at(20), outcome.version);
    world.history.publishes[Collection::Words.index()].push(PublishRecord {
        collection: Collection::Words,
        publish: u64::from(outcome.publish.0),
        base: 0,
        version: outcome.version.0,
        at: at(20),
        invocation: 99,
        ids: CompactIds::from_sorted(&[]),
        pointer: PointerOutcome::Promoted,
        promoted_at: Some(at(20)),
    });
    let report = world.check();
    let lost: Vec<_> = report
        .anomalies
        .iter()
        .filter(|a| a.class == Class::U)
        .collect();
    assert_eq!(lost.len(), 1, "{:?}", report.anomalies);
    assert_eq!(lost[0].cause, Cause::StaleBase);
    assert_eq!(lost[0].ids, vec![word(1), word(2)]);
    // The words are gone from the pointer's snapshot too, and E says so, with the loss as cause.
    let missing: Vec<_> = report
        .anomalies
        .iter()
        .filter(|a| a.class == Class::E)
        .collect();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].cause, Cause::StaleBase);
}

/// A publish log entry with no store behind it, for the pointer checks.
fn logged(publish: u64, base: u64, version: u64, seconds: u64, ids: &[ChromaId]) -> PublishRecord {
    PublishRecord {
        collection: Collection::Words,
        publish,
        base,
        version,
        at: at(seconds),
        invocation: publish,
        ids: CompactIds::from_sorted(ids),
        pointer: PointerOutcome::Promoted,
        promoted_at: Some(at(seconds)),
    }
}

#[test]
fn a_pointer_moving_back_is_class_p() {
    let mut world = World::new();
    world.publish_all(10, |_, fields| Some(fields));
    let words = &mut world.history.publishes[Collection::Words.index()];
    let last = words.last().unwrap().publish;
    words.push(logged(last + 1, last, 50, 30, &[word(1)]));
    words.push(logged(last + 2, last + 1, 40, 40, &[word(1)]));
    let report = world.check();
    let pointer: Vec<_> = report
        .anomalies
        .iter()
        .filter(|a| a.class == Class::P)
        .collect();
    assert_eq!(pointer.len(), 1, "{:?}", report.anomalies);
    assert_eq!(pointer[0].cause, Cause::PointerWentBack);
}

#[test]
fn a_reused_version_id_is_class_p_and_loses_the_replaced_publish() {
    let mut world = World::new();
    world.publish_all(10, |_, fields| Some(fields));
    let words = &mut world.history.publishes[Collection::Words.index()];
    let last = words.last().unwrap().publish;
    // Two publishes on the same base within one version tick: the second replaces the first.
    words.push(logged(last + 1, last, 60, 30, &[word(1)]));
    words.push(logged(last + 2, last, 60, 31, &[word(2)]));
    let report = world.check();
    assert!(
        report.kinds().contains(&(Class::P, Cause::VersionIdReused)),
        "{:?}",
        report.kinds()
    );
    let lost: Vec<_> = report
        .anomalies
        .iter()
        .filter(|a| a.class == Class::U)
        .collect();
    assert_eq!(lost.len(), 1, "{:?}", report.anomalies);
    assert_eq!(lost[0].ids, vec![word(1)]);
}
