//! An index of a trial's history by id and by receipt, built once per judgement so that explaining
//! thousands of findings does not scan the whole history for each.
//!
//! Depends on `entities` and `pipeline::history`.

use crate::entities::{ChromaId, ReceiptIndex};
use crate::pipeline::history::HistoryRecord;
use std::collections::BTreeMap;

pub struct HistoryIndex<'a> {
    records: &'a [HistoryRecord],
    /// Records naming the id, in order.
    by_id: BTreeMap<ChromaId, Vec<usize>>,
    /// Records about the receipt that name no id, in order.
    by_receipt_without_ids: BTreeMap<ReceiptIndex, Vec<usize>>,
    /// Every record about the receipt, in order.
    by_receipt: BTreeMap<ReceiptIndex, Vec<usize>>,
}

impl<'a> HistoryIndex<'a> {
    pub fn new(records: &'a [HistoryRecord]) -> HistoryIndex<'a> {
        let mut index = HistoryIndex {
            records,
            by_id: BTreeMap::new(),
            by_receipt_without_ids: BTreeMap::new(),
            by_receipt: BTreeMap::new(),
        };
        for (position, record) in records.iter().enumerate() {
            for id in &record.ids {
                let positions = index.by_id.entry(*id).or_default();
                // A record naming an id twice is indexed once.
                if positions.last() != Some(&position) {
                    positions.push(position);
                }
            }
            if let Some(receipt) = record.receipt {
                index.by_receipt.entry(receipt).or_default().push(position);
                if record.ids.is_empty() {
                    index
                        .by_receipt_without_ids
                        .entry(receipt)
                        .or_default()
                        .push(position);
                }
            }
        }
        index
    }

    /// The records that touched `id`: those naming it, and those about its receipt naming no id.
    pub fn of_id(&self, id: ChromaId) -> Vec<&'a HistoryRecord> {
        self.of_ids(&[id], id.receipt())
    }

    /// The records that touched any of `ids`, or `receipt` without naming ids, in order.
    pub fn of_ids(&self, ids: &[ChromaId], receipt: ReceiptIndex) -> Vec<&'a HistoryRecord> {
        let mut positions: Vec<usize> = ids
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .flatten()
            .copied()
            .collect();
        positions.extend(
            self.by_receipt_without_ids
                .get(&receipt)
                .into_iter()
                .flatten()
                .copied(),
        );
        positions.sort_unstable();
        positions.dedup();
        positions
            .into_iter()
            .map(|position| &self.records[position])
            .collect()
    }

    /// Every record about `receipt`, in order.
    pub fn of_receipt(
        &self,
        receipt: ReceiptIndex,
    ) -> impl Iterator<Item = &'a HistoryRecord> + '_ {
        self.by_receipt
            .get(&receipt)
            .into_iter()
            .flatten()
            .map(|position| &self.records[*position])
    }
}
