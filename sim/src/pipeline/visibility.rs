//! "Labels visible", tracked incrementally: for every receipt whose upload work finished, how many
//! of its ids (lines and embedded words) disagree between the snapshot the pointer names and
//! DynamoDB (label fields derived from all of the word's label items, and the merchant). The
//! receipt is visible from the last instant that count fell to zero; a receipt that disagrees at
//! the end of the trial never became visible.
//!
//! Updated on every head move of a collection (the changed ids with old and new fields) and on
//! every table change of a finished receipt (a full recount of its ids). Depends on `entities`,
//! `time` and the table and snapshot store models.

use crate::entities::{ChromaId, Collection, EntryFields, LabelFields, ReceiptIndex};
use crate::services::object_store::{EntryChange, HeadMove, SnapshotStore};
use crate::services::table::Table;
use crate::time::Instant;

/// Per receipt: finished, the count of disagreeing ids, and since when it agrees.
#[derive(Clone, Debug, Default)]
pub struct Visibility {
    finished: Vec<bool>,
    mismatches: Vec<u32>,
    /// `Instant::MAX`: not agreeing now.
    visible_since: Vec<Instant>,
}

/// What a correct snapshot holds for `id` given the table.
pub fn expected_fields(table: &Table, id: ChromaId) -> EntryFields {
    let merchant = table.metadata(id.receipt()).unwrap_or(0);
    let labels = if id.is_word() {
        table.derived_label_fields(id)
    } else {
        LabelFields::default()
    };
    EntryFields { merchant, labels }
}

/// `expected_fields` of one receipt's ids asked in ascending order: the merchant read once and
/// the receipt's label items walked once beside the words, instead of a search per id.
struct ReceiptExpectation<I: Iterator<Item = (ChromaId, LabelFields)>> {
    merchant: u32,
    labelled: std::iter::Peekable<I>,
    unlabelled: LabelFields,
    /// The last word asked for.
    last_word: ChromaId,
}

fn receipt_expectation(
    table: &Table,
    receipt: ReceiptIndex,
) -> ReceiptExpectation<impl Iterator<Item = (ChromaId, LabelFields)> + '_> {
    ReceiptExpectation {
        merchant: table.metadata(receipt).unwrap_or(0),
        labelled: table.derived_label_fields_by_word(receipt).peekable(),
        unlabelled: LabelFields::derive(std::iter::empty()),
        last_word: ChromaId(0),
    }
}

impl<I: Iterator<Item = (ChromaId, LabelFields)>> ReceiptExpectation<I> {
    /// The fields of `id`; ids asked of words must ascend.
    fn of(&mut self, id: ChromaId) -> EntryFields {
        let labels = if id.is_word() {
            assert!(id >= self.last_word, "words asked out of order");
            self.last_word = id;
            while self.labelled.next_if(|(word, _)| *word < id).is_some() {}
            match self.labelled.peek() {
                Some((word, labels)) if *word == id => *labels,
                _ => self.unlabelled,
            }
        } else {
            LabelFields::default()
        };
        EntryFields {
            merchant: self.merchant,
            labels,
        }
    }
}

impl Visibility {
    pub fn new(receipts: usize) -> Visibility {
        Visibility {
            finished: Vec::new(),
            mismatches: Vec::new(),
            visible_since: Vec::new(),
        }
        .renewed(receipts)
    }

    /// Tracking for `receipts` receipts (as `new` makes it) in this one's storage, so a worker
    /// running trial after trial allocates it once.
    pub fn renewed(self, receipts: usize) -> Visibility {
        let Visibility {
            mut finished,
            mut mismatches,
            mut visible_since,
        } = self;
        finished.clear();
        finished.resize(receipts, false);
        mismatches.clear();
        mismatches.resize(receipts, 0);
        visible_since.clear();
        visible_since.resize(receipts, Instant::MAX);
        Visibility {
            finished,
            mismatches,
            visible_since,
        }
    }

    /// The instant from which the receipt agrees, if it agrees now and has finished.
    pub fn visible_since(&self, receipt: ReceiptIndex) -> Option<Instant> {
        let index = receipt as usize;
        (self.finished[index]
            && self.mismatches[index] == 0
            && self.visible_since[index] != Instant::MAX)
            .then_some(self.visible_since[index])
    }

    pub fn mismatches(&self, receipt: ReceiptIndex) -> u32 {
        self.mismatches[receipt as usize]
    }

    pub fn is_finished(&self, receipt: ReceiptIndex) -> bool {
        self.finished[receipt as usize]
    }

    /// The receipt's upload work is done: from now on it is tracked.
    pub fn finish(
        &mut self,
        now: Instant,
        receipt: ReceiptIndex,
        table: &Table,
        stores: &[SnapshotStore; 2],
    ) {
        self.finished[receipt as usize] = true;
        self.recount(now, receipt, table, stores);
    }

    /// A table write touched the receipt.
    pub fn table_changed(
        &mut self,
        now: Instant,
        receipt: ReceiptIndex,
        table: &Table,
        stores: &[SnapshotStore; 2],
    ) {
        if self.finished[receipt as usize] {
            self.recount(now, receipt, table, stores);
        }
    }

    fn recount(
        &mut self,
        now: Instant,
        receipt: ReceiptIndex,
        table: &Table,
        stores: &[SnapshotStore; 2],
    ) {
        let Some(shape) = table.shape(receipt) else {
            self.set(now, receipt, u32::MAX);
            return;
        };
        let mut expectation = receipt_expectation(table, receipt);
        let mut count = 0u32;
        let mut lines = stores[Collection::Lines.index()].head_receipt(receipt);
        for id in shape.line_ids(receipt) {
            let expected = expectation.of(id);
            debug_assert_eq!(expected, expected_fields(table, id));
            let found = lines.get(id);
            debug_assert_eq!(found, stores[Collection::Lines.index()].head_get(id));
            count += u32::from(found != Some(expected));
        }
        let mut words = stores[Collection::Words.index()].head_receipt(receipt);
        for id in shape.embedded_word_ids(receipt) {
            let expected = expectation.of(id);
            debug_assert_eq!(expected, expected_fields(table, id));
            let found = words.get(id);
            debug_assert_eq!(found, stores[Collection::Words.index()].head_get(id));
            count += u32::from(found != Some(expected));
        }
        self.set(now, receipt, count);
    }

    fn set(&mut self, now: Instant, receipt: ReceiptIndex, count: u32) {
        let index = receipt as usize;
        let before = self.mismatches[index];
        self.mismatches[index] = count;
        if count > 0 {
            self.visible_since[index] = Instant::MAX;
        } else if before != 0 || self.visible_since[index] == Instant::MAX {
            self.visible_since[index] = now;
        }
    }

    /// The pointer's head moved: adjust the count of every finished receipt an id belongs to.
    /// Returns the receipts that became visible.
    pub fn head_moved(
        &mut self,
        now: Instant,
        head_move: &HeadMove,
        table: &Table,
        became_visible: &mut Vec<ReceiptIndex>,
    ) {
        // The changes ascend, so each receipt's come together.
        let same_receipt = |a: &EntryChange, b: &EntryChange| a.id.receipt() == b.id.receipt();
        for changes in head_move.changes.chunk_by(same_receipt) {
            let receipt = changes[0].id.receipt();
            let index = receipt as usize;
            if index >= self.finished.len() || !self.finished[index] {
                continue;
            }
            let mut expectation = receipt_expectation(table, receipt);
            for change in changes {
                let expected = expectation.of(change.id);
                debug_assert_eq!(expected, expected_fields(table, change.id));
                let agreed = change.old == Some(expected);
                let agrees = change.new == Some(expected);
                let count = self.mismatches[index];
                let count = match (agreed, agrees) {
                    (true, false) => count + 1,
                    (false, true) => {
                        assert!(count > 0, "receipt {receipt}: more agreeing ids than ids");
                        count - 1
                    }
                    _ => count,
                };
                if count == 0 && self.mismatches[index] != 0 {
                    became_visible.push(receipt);
                }
                self.set(now, receipt, count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::{LabelItem, ValidationStatus};
    use crate::services::collection::{EntryPatch, UpsertMode};
    use crate::services::object_store::{PublishId, SnapshotParams};
    use crate::services::table::ReceiptShape;
    use crate::time::Duration;

    fn stores() -> [SnapshotStore; 2] {
        let params = SnapshotParams {
            version_resolution: Duration::from_secs(1),
            keep_versions: 4,
            deltas_window: 64,
            deltas_max: 256,
        };
        [
            SnapshotStore::new(Collection::Lines, params.clone()),
            SnapshotStore::new(Collection::Words, params),
        ]
    }

    /// Publishes `patches` on the head of `store` and promotes the pointer; returns the head move.
    fn publish(
        store: &mut SnapshotStore,
        at_s: u64,
        patches: &[(ChromaId, EntryPatch)],
    ) -> HeadMove {
        let now = Instant::ZERO.add(Duration::from_secs(at_s));
        let head = store.pointer_publish().unwrap_or(PublishId::EMPTY);
        let mut working_copy = store.checkout(head);
        for (id, patch) in patches {
            working_copy.upsert(store, *id, *patch, UpsertMode::Merge);
        }
        let outcome = store.publish(now, working_copy);
        store
            .write_pointer(now, outcome.version)
            .head_move
            .expect("the head moved")
    }

    #[test]
    fn a_receipt_is_visible_once_its_line_its_word_and_the_label_agree() {
        let mut table = Table::new();
        let mut stores = stores();
        let now = |s: u64| Instant::ZERO.add(Duration::from_secs(s));
        // One line with two words; the second is noise.
        table.put_ocr(now(0), 0, ReceiptShape::new(&[2], &[false, true]));
        table.put_metadata(now(0), 0, 7);
        let line = ChromaId::line(0, 1);
        let word = ChromaId::word(0, 1, 1);
        let item = LabelItem {
            label: 3,
            validation_status: ValidationStatus::Valid,
            reasoning: 1,
            proposed_by: 1,
            consolidated_from: 0,
        };
        table.put_label(now(1), word, item);
        let mut visibility = Visibility::new(1);
        visibility.finish(now(2), 0, &table, &stores);
        assert_eq!(
            visibility.mismatches(0),
            2,
            "neither id is in a snapshot yet"
        );
        let merchant = EntryPatch {
            merchant: Some(7),
            labels: None,
        };
        let mut visible = Vec::new();
        let moved = publish(&mut stores[0], 3, &[(line, merchant)]);
        visibility.head_moved(now(3), &moved, &table, &mut visible);
        assert_eq!(visibility.mismatches(0), 1);
        let moved = publish(&mut stores[1], 4, &[(word, merchant)]);
        visibility.head_moved(now(4), &moved, &table, &mut visible);
        assert_eq!(visibility.mismatches(0), 1, "the word lacks its label");
        assert_eq!(visibility.visible_since(0), None);
        let labelled = EntryPatch {
            merchant: None,
            labels: Some(LabelFields::derive(&[item])),
        };
        let moved = publish(&mut stores[1], 5, &[(word, labelled)]);
        visibility.head_moved(now(5), &moved, &table, &mut visible);
        assert_eq!(visible, vec![0]);
        assert_eq!(visibility.visible_since(0), Some(now(5)));
        // A later merchant correction in the table makes it disagree again until it is applied.
        table.put_metadata(now(6), 0, 8);
        visibility.table_changed(now(6), 0, &table, &stores);
        assert_eq!(visibility.mismatches(0), 2);
        assert_eq!(visibility.visible_since(0), None);
    }
}
