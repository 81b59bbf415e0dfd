//! Performing table effects on the table model: writes (and the stream records they append) and
//! what "labels visible" must learn of them.

use super::*;

/// The OCR'd lines and words of a receipt as the table stores them.
pub(super) fn table_shape(receipt: &Receipt) -> ReceiptShape {
    let words_per_line: Vec<u16> = receipt
        .words_per_line
        .iter()
        .map(|words| u16::from(*words))
        .collect();
    let noise: Vec<bool> = receipt
        .words_with_noise()
        .map(|(_, is_noise)| is_noise)
        .collect();
    ReceiptShape::new(&words_per_line, &noise)
}

/// The label fields a receipt's word ends with (LangGraph's final items, removed ones gone), for
/// deltas that carry labels known at embed time.
pub(super) fn final_labels(receipt: &Receipt, id: ChromaId) -> LabelFields {
    let items: Vec<LabelItem> = receipt
        .labels
        .iter()
        .filter(|label| {
            u32::from(label.line) == id.line_number() && u32::from(label.word) == id.word_number()
        })
        .filter_map(LabelSpec::final_item)
        .collect();
    LabelFields::derive(&items)
}

impl<P: Performer> Simulation<'_, P> {
    /// Performs one table write on the table model, collecting the stream records it produced.
    pub(super) fn apply_table_write(
        &mut self,
        now: Instant,
        write: TableWrite,
        receipt: ReceiptIndex,
        records: &mut Vec<StreamRecord>,
    ) {
        let shape = &self.receipts[receipt as usize];
        match write {
            TableWrite::OcrResult { .. } => self.write_ocr_result(now, receipt, records),
            TableWrite::Metadata { .. } => {
                records.extend(self.table.put_metadata(now, receipt, shape.merchant))
            }
            TableWrite::RunInsert { .. } => {
                let progress = &mut self.progress[receipt as usize];
                progress.run_id += 1;
                let run = CompactionRun::pending(progress.run_id, receipt);
                records.push(self.table.put_run(now, run));
            }
            TableWrite::RunState {
                collection, state, ..
            } => self.write_run_state(now, receipt, collection, state, records),
            TableWrite::ProposedLabels { .. } => {
                for label in shape.labels.iter().filter(|label| !label.older) {
                    let word =
                        ChromaId::word(receipt, u32::from(label.line), u32::from(label.word));
                    records.extend(self.table.put_label(now, word, label.proposed_item()));
                }
            }
            TableWrite::ChangedLabels { .. } => self.write_changed_labels(now, receipt, records),
            TableWrite::MerchantCorrection { .. } => {
                let merchant = shape.merchant_correction.expect("a correction is planned");
                records.extend(self.table.put_metadata(now, receipt, merchant));
            }
        }
    }

    /// The receipt's lines and words, once; labels older than the run are in the table before
    /// it starts.
    fn write_ocr_result(
        &mut self,
        now: Instant,
        receipt: ReceiptIndex,
        records: &mut Vec<StreamRecord>,
    ) {
        if self.table.shape(receipt).is_some() {
            return;
        }
        let shape = &self.receipts[receipt as usize];
        let ocr_records = self.behaviour.stream.ocr_records.then_some(&mut *records);
        self.table
            .put_ocr_into(now, receipt, table_shape(shape), ocr_records);
        for label in shape.labels.iter().filter(|label| label.older) {
            let word = ChromaId::word(receipt, u32::from(label.line), u32::from(label.word));
            records.extend(self.table.put_label(now, word, label.proposed_item()));
        }
    }

    /// A collection's state of the receipt's current run (a completed one counts what it merged).
    fn write_run_state(
        &mut self,
        now: Instant,
        receipt: ReceiptIndex,
        collection: Collection,
        state: RunState,
        records: &mut Vec<StreamRecord>,
    ) {
        let shape = &self.receipts[receipt as usize];
        let run_id = self.progress[receipt as usize].run_id;
        let merged = match state {
            RunState::Completed => match collection {
                Collection::Lines => shape.line_count(),
                Collection::Words => shape.embedded_word_count(),
            },
            _ => 0,
        };
        if let Ok(record) = self
            .table
            .update_run_state(now, receipt, run_id, collection, state, merged)
        {
            records.extend(record);
        }
    }

    /// Changes and removals in label order, so a word may see a REMOVE before or after a MODIFY
    /// of another of its labels.
    fn write_changed_labels(
        &mut self,
        now: Instant,
        receipt: ReceiptIndex,
        records: &mut Vec<StreamRecord>,
    ) {
        let shape = &self.receipts[receipt as usize];
        for label in &shape.labels {
            let word = ChromaId::word(receipt, u32::from(label.line), u32::from(label.word));
            if label.removed {
                records.extend(self.table.delete_label(now, word, label.label));
                continue;
            }
            let Some(item) = label.changed_item() else {
                continue;
            };
            if let Ok(record) = self.table.put_label_if_exists(now, word, item) {
                records.extend(record);
            }
        }
    }

    /// Performs a table write, appends its stream records, and updates visibility and history.
    pub(super) fn write_table(&mut self, now: Instant, write: TableWrite) {
        let mut records = std::mem::take(&mut self.upload_records);
        records.clear();
        let receipt = write.receipt();
        self.apply_table_write(now, write, receipt, &mut records);
        let appended = !records.is_empty();
        // The word ids of label writes, for the history (only built when it is kept).
        let mut label_words: Vec<ChromaId> = Vec::new();
        if appended
            && self
                .history
                .filter
                .wants(HistoryEvent::TableWrite, Some(receipt))
        {
            label_words.extend(records.iter().filter_map(|record| match record.key {
                ItemKey::Label { word, .. } => Some(word),
                _ => None,
            }));
            label_words.dedup();
        }
        for record in records.drain(..) {
            self.stream.append(now, record);
        }
        self.upload_records = records;
        // Run states are not part of what "labels visible" compares.
        let visible_fields = !matches!(
            write,
            TableWrite::RunState { .. } | TableWrite::RunInsert { .. }
        );
        if appended && visible_fields {
            self.visibility
                .table_changed(now, receipt, &self.table, &self.stores);
        }
        if appended {
            self.history.record(
                now,
                Actor::Workload,
                HistoryEvent::TableWrite,
                Some(receipt),
                &label_words,
                || format!("{write:?}"),
            );
            self.wake_stream(now);
        }
    }
}
