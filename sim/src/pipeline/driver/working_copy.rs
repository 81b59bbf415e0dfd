//! Performing collection effects on the invocation's working copy (Chroma semantics): delta
//! upserts, gets, label and merchant updates, and the sync of the table's state on merge.

use super::*;
use crate::entities::EntryFields;

impl<P: Performer> Simulation<'_, P> {
    /// Upserts the records of the receipt's delta into the invocation's working copy.
    pub(super) fn upsert_delta(
        &mut self,
        now: Instant,
        state: &mut CompactionSlot,
        receipt: ReceiptIndex,
    ) -> Response {
        let collection = state.machine.collection();
        let store = &self.stores[collection.index()];
        let working_copy = state
            .kept
            .working_copy
            .as_mut()
            .expect("an upsert needs a working copy");
        let shape = self
            .table
            .shape(receipt)
            .expect("a downloaded delta has its receipt's words");
        let receipt_shape = &self.receipts[receipt as usize];
        let mode = match self.behaviour.compaction.upsert {
            ConfigUpsertMode::Replace => UpsertMode::Replace,
            ConfigUpsertMode::Merge => UpsertMode::Merge,
        };
        let labels_known = self.behaviour.chroma.labels_known_at_embed;
        let mut ids = std::mem::take(&mut self.scratch_ids);
        ids.clear();
        match collection {
            Collection::Lines => ids.extend(shape.line_ids(receipt)),
            Collection::Words => ids.extend(shape.embedded_word_ids(receipt)),
        }
        let recording = !self.history.filter.is_off();
        let mut replaced = Vec::new();
        for id in &ids {
            let labels = (labels_known && id.is_word()).then(|| final_labels(receipt_shape, *id));
            let patch = EntryPatch {
                merchant: Some(receipt_shape.merchant),
                labels,
            };
            let previous = working_copy.upsert(store, *id, patch, mode);
            if recording && previous.is_some_and(|before| labels_overwritten(before, patch, mode)) {
                replaced.push(*id);
            }
        }
        let actor = Actor::Compaction {
            invocation: state.invocation.id.0,
            collection,
        };
        self.history.record(
            now,
            actor,
            HistoryEvent::DeltaMerged,
            Some(receipt),
            &ids,
            String::new,
        );
        if !replaced.is_empty() {
            self.history.record(
                now,
                actor,
                HistoryEvent::MergeReplacedLabels,
                Some(receipt),
                &replaced,
                || format!("upsert {mode:?}").to_lowercase(),
            );
        }
        let count = ids.len() as u64;
        self.scratch_ids = ids;
        let invocation = state.invocation.id.0;
        self.performer
            .upsert_delta(now, invocation, receipt, mode, Response::Entries(count))
    }

    /// The records of a receipt's delta for a collection: its embedded ids, each with the
    /// receipt's merchant and, when labels are known at embedding time, its final labels.
    pub(super) fn delta_records(
        &self,
        receipt: ReceiptIndex,
        collection: Collection,
        records: &mut Vec<RecordPatch>,
    ) {
        let Some(shape) = self.table.shape(receipt) else {
            return;
        };
        let receipt_shape = &self.receipts[receipt as usize];
        let labels_known = self.behaviour.chroma.labels_known_at_embed;
        let patch = |id: ChromaId| EntryPatch {
            merchant: Some(receipt_shape.merchant),
            labels: (labels_known && id.is_word()).then(|| final_labels(receipt_shape, id)),
        };
        match collection {
            Collection::Lines => records.extend(shape.line_ids(receipt).map(|id| (id, patch(id)))),
            Collection::Words => {
                records.extend(shape.embedded_word_ids(receipt).map(|id| (id, patch(id))))
            }
        }
    }

    pub(super) fn perform_collection(
        &mut self,
        now: Instant,
        state: &mut CompactionSlot,
        operation: CollectionOp,
    ) -> Response {
        assert!(
            state.kept.working_copy.is_some(),
            "collection operations need a working copy"
        );
        let word_id = |receipt: ReceiptIndex, word: WordRef| {
            ChromaId::word(receipt, u32::from(word.line), u32::from(word.word))
        };
        match operation {
            CollectionOp::UpsertDelta { receipt } => self.upsert_delta(now, state, receipt),
            CollectionOp::GetWord { receipt, word } => {
                self.get_word(now, state, word_id(receipt, word))
            }
            CollectionOp::UpdateLabels {
                receipt,
                word,
                fields,
            } => self.update_labels(now, state, receipt, word_id(receipt, word), fields),
            CollectionOp::DeleteLabels { receipt, word } => {
                self.delete_labels(now, state, receipt, word_id(receipt, word))
            }
            CollectionOp::UpdateReceiptMerchant { receipt, merchant } => {
                self.update_receipt_merchant(now, state, receipt, merchant)
            }
            CollectionOp::WriteTableState {
                receipt,
                state: handle,
            } => self.write_table_state(now, state, receipt, handle),
        }
    }

    /// Whether the working copy holds the word's id.
    fn get_word(&mut self, now: Instant, state: &CompactionSlot, id: ChromaId) -> Response {
        let store = &self.stores[state.machine.collection().index()];
        let working_copy = state
            .kept
            .working_copy
            .as_ref()
            .expect("checked by the caller");
        let model = Response::Present(working_copy.contains(store, id));
        self.performer.get(now, state.invocation.id.0, id, model)
    }

    /// Sets one word's label fields.
    fn update_labels(
        &mut self,
        now: Instant,
        state: &mut CompactionSlot,
        receipt: ReceiptIndex,
        id: ChromaId,
        fields: LabelFields,
    ) -> Response {
        let store = &self.stores[state.machine.collection().index()];
        let working_copy = state
            .kept
            .working_copy
            .as_mut()
            .expect("checked by the caller");
        let patch = EntryPatch {
            merchant: None,
            labels: Some(fields),
        };
        working_copy.update(store, id, patch);
        let actor = compaction_actor(state);
        let event = HistoryEvent::LabelsUpdated;
        let history = &mut self.history;
        history.record(now, actor, event, Some(receipt), &[id], || {
            fields.to_string()
        });
        self.update_one(now, state, id, patch)
    }

    /// Clears one word's label fields.
    fn delete_labels(
        &mut self,
        now: Instant,
        state: &mut CompactionSlot,
        receipt: ReceiptIndex,
        id: ChromaId,
    ) -> Response {
        let store = &self.stores[state.machine.collection().index()];
        let working_copy = state
            .kept
            .working_copy
            .as_mut()
            .expect("checked by the caller");
        working_copy.delete_label_fields(store, id);
        let actor = compaction_actor(state);
        let event = HistoryEvent::LabelsDeleted;
        let history = &mut self.history;
        history.record(now, actor, event, Some(receipt), &[id], String::new);
        let patch = EntryPatch {
            merchant: None,
            labels: Some(LabelFields::default()),
        };
        self.update_one(now, state, id, patch)
    }

    /// Hands the performer the update of one id.
    fn update_one(
        &mut self,
        now: Instant,
        state: &CompactionSlot,
        id: ChromaId,
        patch: EntryPatch,
    ) -> Response {
        perform_update(
            &mut self.performer,
            &mut self.scratch_records,
            now,
            state.invocation.id.0,
            |records| records.push((id, patch)),
            Response::Done,
        )
    }

    /// Sets the merchant on the receipt's ids in the working copy; answers how many it changed.
    fn update_receipt_merchant(
        &mut self,
        now: Instant,
        state: &mut CompactionSlot,
        receipt: ReceiptIndex,
        merchant: Option<u32>,
    ) -> Response {
        let collection = state.machine.collection();
        let store = &self.stores[collection.index()];
        let working_copy = state
            .kept
            .working_copy
            .as_mut()
            .expect("checked by the caller");
        let Some(shape) = self.table.shape(receipt) else {
            return Response::Touched(0);
        };
        // The ids actually updated, named by the history record.
        let mut touched = std::mem::take(&mut self.scratch_ids);
        touched.clear();
        let mut update = |id: ChromaId| {
            if working_copy.set_merchant(store, id, merchant) {
                touched.push(id);
            }
        };
        match collection {
            Collection::Lines => shape.line_ids(receipt).for_each(&mut update),
            Collection::Words => shape.embedded_word_ids(receipt).for_each(&mut update),
        }
        let count = touched.len() as u64;
        let actor = compaction_actor(state);
        let event = HistoryEvent::MerchantUpdated;
        self.history
            .record(now, actor, event, Some(receipt), &touched, || {
                format!("{merchant:?} on {count} ids")
            });
        self.scratch_ids = touched;
        let patch = EntryPatch {
            merchant: Some(merchant.unwrap_or(0)),
            labels: None,
        };
        perform_update(
            &mut self.performer,
            &mut self.scratch_records,
            now,
            state.invocation.id.0,
            |records| {
                let ids = shape.collection_ids(receipt, collection);
                records.extend(ids.into_iter().map(|id| (id, patch)));
            },
            Response::Touched(count),
        )
    }

    /// `TableRead::ReceiptState`: one query of the receipt's partition, its ReceiptMetadata and
    /// label items (the label fields derived per word), kept in the slot under a new handle.
    pub(super) fn read_table_state(
        &mut self,
        state: &mut CompactionSlot,
        receipt: ReceiptIndex,
    ) -> Response {
        let read = ReceiptTableState {
            merchant: self.table.metadata(receipt),
            labelled: match state.machine.collection() {
                Collection::Lines => Vec::new(),
                Collection::Words => self.table.labelled_words(receipt),
            },
        };
        let handle = state
            .kept
            .table_state
            .as_ref()
            .map_or(1, |(last, _)| last + 1);
        state.kept.table_state = Some((handle, read));
        Response::TableState(handle)
    }

    /// The sync-on-merge fix: writes the receipt's state as the table query `handle` names read it
    /// (each merged word's label fields derived from its label items, and the ReceiptMetadata
    /// merchant) onto the ids of its merged delta.
    pub(super) fn write_table_state(
        &mut self,
        now: Instant,
        state: &mut CompactionSlot,
        receipt: ReceiptIndex,
        handle: TableStateHandle,
    ) -> Response {
        let read = match state.kept.table_state.take() {
            Some((kept, read)) if kept == handle => read,
            _ => panic!("a table state write hands back the handle of the last read"),
        };
        let collection = state.machine.collection();
        let store = &self.stores[collection.index()];
        let working_copy = state
            .kept
            .working_copy
            .as_mut()
            .expect("a table state write needs a working copy");
        let Some(shape) = self.table.shape(receipt) else {
            return Response::Touched(0);
        };
        let ReceiptTableState { merchant, labelled } = read;
        let mut written = std::mem::take(&mut self.scratch_ids);
        written.clear();
        let patch_of = |id: ChromaId| {
            let labels = id.is_word().then(|| {
                labelled
                    .binary_search_by_key(&id, |(word, _)| *word)
                    .map_or(LabelFields::default(), |position| labelled[position].1)
            });
            EntryPatch { merchant, labels }
        };
        for id in shape.collection_ids(receipt, collection) {
            if working_copy.update(store, id, patch_of(id)) {
                written.push(id);
            }
        }
        record_table_state_sync(&mut self.history, now, state, receipt, merchant, &written);
        let count = written.len() as u64;
        self.scratch_ids = written;
        perform_update(
            &mut self.performer,
            &mut self.scratch_records,
            now,
            state.invocation.id.0,
            |records| {
                let ids = shape.collection_ids(receipt, collection);
                records.extend(ids.into_iter().map(|id| (id, patch_of(id))));
            },
            Response::Touched(count),
        )
    }
}

/// The history records of a sync on merge: the labels written (words) and the merchant.
fn record_table_state_sync(
    history: &mut History,
    now: Instant,
    state: &CompactionSlot,
    receipt: ReceiptIndex,
    merchant: Option<u32>,
    written: &[ChromaId],
) {
    let actor = compaction_actor(state);
    if state.machine.collection() == Collection::Words {
        history.record(
            now,
            actor,
            HistoryEvent::LabelsUpdated,
            Some(receipt),
            written,
            || "synced from the table on merge".to_string(),
        );
    }
    if merchant.is_some() {
        history.record(
            now,
            actor,
            HistoryEvent::MerchantUpdated,
            Some(receipt),
            written,
            || format!("{merchant:?} synced from the table on merge"),
        );
    }
}

/// The history's actor of a compaction invocation.
fn compaction_actor(state: &CompactionSlot) -> Actor {
    Actor::Compaction {
        invocation: state.invocation.id.0,
        collection: state.machine.collection(),
    }
}

/// Hands a collection update to the performer; `fill` writes its records, called only when the
/// performer asks for records (`Performer::RECORDS`), so the simulated path builds none.
fn perform_update<P: Performer>(
    performer: &mut P,
    scratch: &mut Vec<RecordPatch>,
    now: Instant,
    invocation: u64,
    fill: impl FnOnce(&mut Vec<RecordPatch>),
    model: Response,
) -> Response {
    scratch.clear();
    if P::RECORDS {
        fill(scratch);
    }
    performer.update(now, invocation, scratch, model)
}

/// Whether an upsert of `patch` changed the label fields an id carried `before` (none carried,
/// nothing to overwrite): `Replace` keeps only the record's fields, `Merge` the record's where
/// present.
fn labels_overwritten(before: EntryFields, patch: EntryPatch, mode: UpsertMode) -> bool {
    let after = match (patch.labels, mode) {
        (Some(labels), _) => labels,
        (None, UpsertMode::Merge) => before.labels,
        (None, UpsertMode::Replace) => LabelFields::default(),
    };
    !before.labels.is_empty() && after != before.labels
}
