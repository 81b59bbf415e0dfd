//! Performing collection effects on the invocation's working copy (Chroma semantics): delta
//! upserts, gets, label and merchant updates, and the sync of the table's state on merge.

use super::*;

impl Simulation<'_> {
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
            .working_copy
            .as_mut()
            .expect("an upsert needs a working copy");
        let shape = self
            .table
            .shape(receipt)
            .expect("a downloaded delta has its receipt's words");
        let receipt_shape = &self.receipts[receipt as usize];
        let mode = match self.config.compaction.upsert {
            ConfigUpsertMode::Replace => UpsertMode::Replace,
            ConfigUpsertMode::Merge => UpsertMode::Merge,
        };
        let labels_known = self.config.chroma.labels_known_at_embed;
        let mut ids = std::mem::take(&mut self.scratch_ids);
        ids.clear();
        match collection {
            Collection::Lines => ids.extend(shape.line_ids(receipt)),
            Collection::Words => ids.extend(shape.embedded_word_ids(receipt)),
        }
        for id in &ids {
            let labels = (labels_known && id.is_word()).then(|| final_labels(receipt_shape, *id));
            let patch = EntryPatch {
                merchant: Some(receipt_shape.merchant),
                labels,
            };
            working_copy.upsert(store, *id, patch, mode);
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
        let count = ids.len() as u64;
        self.scratch_ids = ids;
        Response::Entries(count)
    }

    pub(super) fn perform_collection(
        &mut self,
        now: Instant,
        state: &mut CompactionSlot,
        operation: CollectionOp,
    ) -> Response {
        let collection = state.machine.collection();
        let store = &self.stores[collection.index()];
        let working_copy = state
            .working_copy
            .as_mut()
            .expect("collection operations need a working copy");
        let word_id = |receipt: ReceiptIndex, word: WordRef| {
            ChromaId::word(receipt, u32::from(word.line), u32::from(word.word))
        };
        let actor = Actor::Compaction {
            invocation: state.invocation.id.0,
            collection,
        };
        match operation {
            CollectionOp::UpsertDelta { receipt } => self.upsert_delta(now, state, receipt),
            CollectionOp::GetWord { receipt, word } => {
                Response::Present(working_copy.contains(store, word_id(receipt, word)))
            }
            CollectionOp::UpdateLabels {
                receipt,
                word,
                fields,
            } => {
                let id = word_id(receipt, word);
                working_copy.update(
                    store,
                    id,
                    EntryPatch {
                        merchant: None,
                        labels: Some(fields),
                    },
                );
                self.history.record(
                    now,
                    actor,
                    HistoryEvent::LabelsUpdated,
                    Some(receipt),
                    &[id],
                    || fields.to_string(),
                );
                Response::Done
            }
            CollectionOp::DeleteLabels { receipt, word } => {
                let id = word_id(receipt, word);
                working_copy.delete_label_fields(store, id);
                self.history.record(
                    now,
                    actor,
                    HistoryEvent::LabelsDeleted,
                    Some(receipt),
                    &[id],
                    String::new,
                );
                Response::Done
            }
            CollectionOp::UpdateReceiptMerchant { receipt, merchant } => {
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
                self.history.record(
                    now,
                    actor,
                    HistoryEvent::MerchantUpdated,
                    Some(receipt),
                    &touched,
                    || format!("{merchant:?} on {count} ids"),
                );
                self.scratch_ids = touched;
                Response::Touched(count)
            }
            CollectionOp::WriteTableState { receipt } => {
                self.write_table_state(now, state, receipt)
            }
        }
    }

    /// The sync-on-merge fix: writes the receipt's state as the table holds it (each merged word's
    /// label fields derived from its label items, and the ReceiptMetadata merchant) onto the ids of
    /// its merged delta. The table is read at the instant of the preceding
    /// `TableRead::ReceiptState`: a collection operation takes no time, so nothing runs between.
    pub(super) fn write_table_state(
        &mut self,
        now: Instant,
        state: &mut CompactionSlot,
        receipt: ReceiptIndex,
    ) -> Response {
        let collection = state.machine.collection();
        let store = &self.stores[collection.index()];
        let working_copy = state
            .working_copy
            .as_mut()
            .expect("a table state write needs a working copy");
        let Some(shape) = self.table.shape(receipt) else {
            return Response::Touched(0);
        };
        let merchant = self.table.metadata(receipt);
        let labelled = match collection {
            Collection::Lines => Vec::new(),
            Collection::Words => self.table.labelled_words(receipt),
        };
        let mut written = std::mem::take(&mut self.scratch_ids);
        written.clear();
        for id in shape.collection_ids(receipt, collection) {
            let labels = id.is_word().then(|| {
                labelled
                    .binary_search_by_key(&id, |(word, _)| *word)
                    .map_or(LabelFields::default(), |position| labelled[position].1)
            });
            if working_copy.update(store, id, EntryPatch { merchant, labels }) {
                written.push(id);
            }
        }
        let actor = Actor::Compaction {
            invocation: state.invocation.id.0,
            collection,
        };
        if collection == Collection::Words {
            self.history.record(
                now,
                actor,
                HistoryEvent::LabelsUpdated,
                Some(receipt),
                &written,
                || "synced from the table on merge".to_string(),
            );
        }
        if merchant.is_some() {
            self.history.record(
                now,
                actor,
                HistoryEvent::MerchantUpdated,
                Some(receipt),
                &written,
                || format!("{merchant:?} synced from the table on merge"),
            );
        }
        let count = written.len() as u64;
        self.scratch_ids = written;
        Response::Touched(count)
    }
}
