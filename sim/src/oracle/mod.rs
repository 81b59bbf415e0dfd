//! The race oracle: judges a finished trial by its final stores and its history, never by the
//! models' own idea of what happened.
//!
//! Classes (SEMANTICS.md section 2): **E** an embedded line or word of a receipt whose run was
//! inserted is missing from the snapshot the pointer names; **L** a word's label fields there differ
//! from the state derived from its label items in DynamoDB; **M** merchant fields differ from the
//! current ReceiptMetadata; **U** something a visible version contained is missing from the next
//! visible version (a lost update); **P** the pointer went back, a version id was reused by another
//! publish, or the pointer names a version that no longer exists.
//!
//! E, L and M compare the table with the pointer's snapshot id by id. U and P replay the publish log
//! (every upload and pointer write, always recorded) into the sequence of versions readers saw,
//! using only each publish's base and the ids its delta wrote, so no snapshot is ever copied.
//! Causes come from the event history of the affected receipts (`cause`), and every anomaly carries
//! the excerpt of the history that touched its ids.
//!
//! Depends on `entities`, `services::{table, object_store}` (read-only) and `pipeline::history`.

mod cause;
mod index;
mod lineage;

pub use cause::Cause;
use index::HistoryIndex;

use crate::entities::{ChromaId, Collection, EntryFields, LabelFields, ReceiptIndex};
use crate::pipeline::history::{History, HistoryRecord};
use crate::services::object_store::{SnapshotReader, SnapshotStore};
use crate::services::table::Table;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most ids an anomaly lists (the count is always exact).
pub const ANOMALY_IDS_MAX: usize = 16;
/// The most anomalies of one class and cause a report lists (all are counted).
pub const ANOMALIES_LISTED_PER_KIND_MAX: usize = 1000;
/// The most history records an excerpt holds.
pub const EXCERPT_RECORDS_MAX: usize = 400;

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Class {
    /// Embedding missing from the pointer's snapshot.
    E,
    /// Label fields not converged.
    L,
    /// Merchant metadata not converged.
    M,
    /// Lost update across visible versions.
    U,
    /// Pointer went back, or a version id was reused.
    P,
}

impl Class {
    pub const ALL: [Class; 5] = [Class::E, Class::L, Class::M, Class::U, Class::P];
    pub fn name(self) -> &'static str {
        match self {
            Class::E => "E",
            Class::L => "L",
            Class::M => "M",
            Class::U => "U",
            Class::P => "P",
        }
    }
    pub fn meaning(self) -> &'static str {
        match self {
            Class::E => "embedding missing from the snapshot",
            Class::L => "label fields not converged",
            Class::M => "merchant metadata not converged",
            Class::U => "lost update across published versions",
            Class::P => "pointer not sane",
        }
    }
}

/// One violation: its class, its cause, what it touched, and the history that shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Anomaly {
    pub class: Class,
    pub cause: Cause,
    pub collection: Option<Collection>,
    pub receipt: Option<ReceiptIndex>,
    /// How many ids are affected; `ids` lists at most `ANOMALY_IDS_MAX` of them.
    pub id_count: usize,
    pub ids: Vec<ChromaId>,
    /// What the source of truth says, and what the snapshot holds, for the first id.
    pub expected: String,
    pub found: String,
    /// Every history record that touched these ids (or, for U and P, the publishes involved), in order.
    pub excerpt: Vec<HistoryRecord>,
}

/// What the oracle reads.
pub struct Input<'a> {
    pub table: &'a Table,
    /// The `lines` and `words` buckets, in `Collection::index` order.
    pub stores: [&'a SnapshotStore; 2],
    pub history: &'a History,
    /// Receipts `0..receipts` were part of the trial.
    pub receipts: u32,
    /// Whether the trial ended with nothing left to do (rather than at its horizon).
    pub quiescent: bool,
}

/// The oracle's verdict on one trial.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub anomalies: Vec<Anomaly>,
    /// Anomaly count per class.
    pub by_class: BTreeMap<Class, u64>,
    /// Distinct receipts affected, per class.
    pub receipts_affected_by_class: BTreeMap<Class, u64>,
    /// Distinct receipts with any anomaly.
    pub receipts_affected: u64,
    pub receipts_checked: u64,
    /// Anomalies counted but not listed: past `ANOMALIES_LISTED_PER_KIND_MAX` of one class and
    /// cause, only the lowest receipts are listed.
    pub anomalies_unlisted: u64,
    /// Findings an absent embedding hides, counted apart from the anomalies above.
    pub masked: Masked,
}

/// Label and metadata findings hidden behind an absent embedding (class E): the id is missing
/// from the snapshot, so its fields cannot be compared, yet DynamoDB says it owes the snapshot
/// labels (L: the word has label items) or a merchant change (M: a merchant update of the
/// receipt reached the compaction). Counted by class, in ids and in receipts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Masked {
    pub ids_by_class: BTreeMap<Class, u64>,
    pub receipts_by_class: BTreeMap<Class, u64>,
}

impl Masked {
    fn new() -> Masked {
        let zero = || [Class::L, Class::M].iter().map(|c| (*c, 0)).collect();
        Masked {
            ids_by_class: zero(),
            receipts_by_class: zero(),
        }
    }

    /// Adds one receipt's masked ids of `class`.
    fn add(&mut self, class: Class, ids: u64) {
        if ids > 0 {
            *self.ids_by_class.entry(class).or_default() += ids;
            *self.receipts_by_class.entry(class).or_default() += 1;
        }
    }
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.by_class.values().all(|count| *count == 0)
    }
    /// Receipts with at least one anomaly, ascending.
    pub fn affected_receipts(&self) -> Vec<ReceiptIndex> {
        let mut receipts: Vec<ReceiptIndex> =
            self.anomalies.iter().filter_map(|a| a.receipt).collect();
        receipts.sort_unstable();
        receipts.dedup();
        receipts
    }
    /// Distinct (class, cause) pairs found, in order.
    pub fn kinds(&self) -> Vec<(Class, Cause)> {
        let mut kinds: Vec<(Class, Cause)> =
            self.anomalies.iter().map(|a| (a.class, a.cause)).collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    }
}

/// A mismatch found by the per-id comparison, before grouping.
struct Finding {
    class: Class,
    collection: Collection,
    id: ChromaId,
    mismatch: Mismatch,
}

/// What the source of truth says and what the snapshot holds, formatted only for the first id of
/// each anomaly.
#[derive(Copy, Clone)]
enum Mismatch {
    Absent,
    Merchant {
        expected: u32,
        found: u32,
    },
    Labels {
        expected: LabelFields,
        found: LabelFields,
    },
}

impl Mismatch {
    fn describe(self) -> (String, String) {
        match self {
            Mismatch::Absent => ("present".to_string(), "absent".to_string()),
            Mismatch::Merchant { expected, found } => {
                (format!("merchant {expected}"), format!("merchant {found}"))
            }
            Mismatch::Labels { expected, found } => (expected.to_string(), found.to_string()),
        }
    }
}

/// Judges one finished trial. Receipts are compared one at a time, so memory holds the listed
/// anomalies and per-receipt class bits, never every finding of a large trial at once.
pub fn check(input: &Input<'_>) -> Report {
    check_with(input, Detail::Full)
}

/// Judges one finished trial as `check` does, finding the same anomalies with the same classes,
/// causes and ids, but leaves out what only people read: no excerpts, and no expected and found
/// values. Exploration judges every trial this way.
pub fn check_kinds(input: &Input<'_>) -> Report {
    check_with(input, Detail::Kinds)
}

/// How much of each anomaly a report spells out.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Detail {
    Full,
    Kinds,
}

fn check_with(input: &Input<'_>, detail: Detail) -> Report {
    let lineage = lineage::replay(input.history);
    let index = HistoryIndex::new(&input.history.records);
    let mut tally = Tally::new(input.receipts);
    let readers = input.stores.map(|store| {
        store
            .resolve(store.read_pointer().version)
            .ok()
            .map(|publish| store.reader(publish))
    });
    let mut findings: Vec<Finding> = Vec::new();
    let mut masked = Masked::new();
    for receipt in 0..input.receipts {
        findings.clear();
        compare_receipt(input, &readers, receipt, &mut findings);
        count_masked(input, &index, receipt, &findings, &mut masked);
        for anomaly in group_findings(input, &index, &lineage, findings.drain(..), detail) {
            tally.add(anomaly);
        }
    }
    for anomaly in lineage.anomalies() {
        tally.add(anomaly);
    }
    let mut report = tally.finish(u64::from(input.receipts));
    report.masked = masked;
    if detail == Detail::Full {
        for anomaly in &mut report.anomalies {
            anomaly.excerpt = excerpt(&index, anomaly);
        }
    }
    report.anomalies.sort_by(|a, b| {
        (a.class, a.cause, a.receipt, a.collection, a.ids.first()).cmp(&(
            b.class,
            b.cause,
            b.receipt,
            b.collection,
            b.ids.first(),
        ))
    });
    report
}

/// Counts every anomaly and lists a bounded number of each kind.
struct Tally {
    listed: Vec<Anomaly>,
    listed_per_kind: BTreeMap<(Class, Cause), usize>,
    unlisted: u64,
    by_class: BTreeMap<Class, u64>,
    /// Bit `class as u8` set: the receipt has an anomaly of that class.
    classes_by_receipt: Vec<u8>,
}

impl Tally {
    fn new(receipts: u32) -> Tally {
        Tally {
            listed: Vec::new(),
            listed_per_kind: BTreeMap::new(),
            unlisted: 0,
            by_class: Class::ALL.iter().map(|c| (*c, 0)).collect(),
            classes_by_receipt: vec![0; receipts as usize],
        }
    }

    fn add(&mut self, anomaly: Anomaly) {
        *self.by_class.entry(anomaly.class).or_default() += 1;
        if let Some(bits) = anomaly
            .receipt
            .and_then(|r| self.classes_by_receipt.get_mut(r as usize))
        {
            *bits |= 1 << anomaly.class as u8;
        }
        let listed = self
            .listed_per_kind
            .entry((anomaly.class, anomaly.cause))
            .or_default();
        if *listed < ANOMALIES_LISTED_PER_KIND_MAX {
            *listed += 1;
            self.listed.push(anomaly);
        } else {
            self.unlisted += 1;
        }
    }

    fn finish(self, receipts_checked: u64) -> Report {
        let receipts_affected_by_class = Class::ALL
            .iter()
            .map(|class| {
                let bit = 1u8 << *class as u8;
                (
                    *class,
                    self.classes_by_receipt
                        .iter()
                        .filter(|bits| **bits & bit != 0)
                        .count() as u64,
                )
            })
            .collect();
        Report {
            anomalies: self.listed,
            by_class: self.by_class,
            receipts_affected_by_class,
            receipts_affected: self
                .classes_by_receipt
                .iter()
                .filter(|bits| **bits != 0)
                .count() as u64,
            receipts_checked,
            anomalies_unlisted: self.unlisted,
            masked: Masked::default(),
        }
    }
}

/// Compares one receipt's ids in both collections with the table. `readers` read the snapshot each
/// collection's pointer names (none if the pointer names no readable publish).
fn compare_receipt(
    input: &Input<'_>,
    readers: &[Option<SnapshotReader<'_>>; 2],
    receipt: ReceiptIndex,
    findings: &mut Vec<Finding>,
) {
    let Some(shape) = input.table.shape(receipt) else {
        return;
    };
    if !input.table.runs(receipt).iter().any(|_| true) {
        // No run inserted: the receipt never reached the compaction, nothing is owed.
        return;
    }
    let merchant_expected = input.table.metadata(receipt).unwrap_or(0);
    // The label fields of the words, from one pass over the receipt's items beside its words.
    let unlabelled = LabelFields::derive(std::iter::empty());
    let mut labelled = input.table.derived_label_fields_by_word(receipt).peekable();
    let mut expected_labels = |id: ChromaId| {
        while labelled.next_if(|(word, _)| *word < id).is_some() {}
        let labels = match labelled.peek() {
            Some((word, labels)) if *word == id => *labels,
            _ => unlabelled,
        };
        debug_assert_eq!(labels, input.table.derived_label_fields(id));
        labels
    };
    for collection in Collection::ALL {
        let mut reader = readers[collection.index()]
            .as_ref()
            .map(|reader| reader.receipt(receipt));
        let mut compare = |id: ChromaId| {
            let entry: Option<EntryFields> = reader.as_mut().and_then(|reader| reader.get(id));
            let Some(entry) = entry else {
                findings.push(Finding {
                    class: Class::E,
                    collection,
                    id,
                    mismatch: Mismatch::Absent,
                });
                return;
            };
            if entry.merchant != merchant_expected {
                findings.push(Finding {
                    class: Class::M,
                    collection,
                    id,
                    mismatch: Mismatch::Merchant {
                        expected: merchant_expected,
                        found: entry.merchant,
                    },
                });
            }
            if collection == Collection::Words {
                let expected = expected_labels(id);
                if entry.labels != expected {
                    findings.push(Finding {
                        class: Class::L,
                        collection,
                        id,
                        mismatch: Mismatch::Labels {
                            expected,
                            found: entry.labels,
                        },
                    });
                }
            }
        };
        match collection {
            Collection::Lines => shape.line_ids(receipt).for_each(&mut compare),
            Collection::Words => shape.embedded_word_ids(receipt).for_each(&mut compare),
        }
    }
}

/// Counts the label and metadata findings that one receipt's absent ids hide (see `Masked`).
fn count_masked(
    input: &Input<'_>,
    index: &HistoryIndex<'_>,
    receipt: ReceiptIndex,
    findings: &[Finding],
    masked: &mut Masked,
) {
    let absent = || findings.iter().filter(|f| f.class == Class::E);
    if absent().next().is_none() {
        return;
    }
    let labelled = absent()
        .filter(|f| f.collection == Collection::Words && input.table.has_label_items(f.id))
        .count();
    masked.add(Class::L, labelled as u64);
    let merchant_updated = index
        .of_receipt(receipt)
        .any(|record| record.event == crate::pipeline::history::HistoryEvent::MerchantUpdated);
    if merchant_updated {
        masked.add(Class::M, absent().count() as u64);
    }
}

/// Groups per-id findings into anomalies by (class, cause, receipt, collection).
fn group_findings(
    input: &Input<'_>,
    index: &HistoryIndex<'_>,
    lineage: &lineage::Lineage,
    findings: impl Iterator<Item = Finding>,
    detail: Detail,
) -> Vec<Anomaly> {
    // One receipt's findings make a few groups: a vector searched in order is cheaper than a map.
    let mut groups: Vec<((Class, Cause, ReceiptIndex, Collection), Anomaly)> = Vec::new();
    let mut receipt_events = cause::ReceiptEvents::default();
    for finding in findings {
        let receipt = finding.id.receipt();
        let cause = cause::explain(
            input,
            index,
            lineage,
            finding.class,
            finding.collection,
            finding.id,
            &mut receipt_events,
        );
        let key = (finding.class, cause, receipt, finding.collection);
        let position = match groups.iter().position(|(group, _)| *group == key) {
            Some(position) => position,
            None => {
                groups.push((
                    key,
                    Anomaly {
                        class: finding.class,
                        cause,
                        collection: Some(finding.collection),
                        receipt: Some(receipt),
                        id_count: 0,
                        ids: Vec::new(),
                        expected: String::new(),
                        found: String::new(),
                        excerpt: Vec::new(),
                    },
                ));
                groups.len() - 1
            }
        };
        let anomaly = &mut groups[position].1;
        if anomaly.id_count == 0 && detail == Detail::Full {
            (anomaly.expected, anomaly.found) = finding.mismatch.describe();
        }
        anomaly.id_count += 1;
        if anomaly.ids.len() < ANOMALY_IDS_MAX {
            anomaly.ids.push(finding.id);
        }
    }
    groups.sort_by_key(|(key, _)| *key);
    groups.into_iter().map(|(_, anomaly)| anomaly).collect()
}

/// Every record that touched the anomaly's listed ids (or its receipt, for records naming no id),
/// in order, bounded.
fn excerpt(index: &HistoryIndex<'_>, anomaly: &Anomaly) -> Vec<HistoryRecord> {
    let mut records: Vec<HistoryRecord> = match anomaly.receipt {
        Some(receipt) => index
            .of_ids(&anomaly.ids, receipt)
            .into_iter()
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    if records.len() > EXCERPT_RECORDS_MAX {
        // Keep the beginning and the end, where the cause and its effect stand.
        let tail = records.split_off(records.len() - EXCERPT_RECORDS_MAX / 2);
        records.truncate(EXCERPT_RECORDS_MAX / 2);
        records.extend(tail);
    }
    records
}
