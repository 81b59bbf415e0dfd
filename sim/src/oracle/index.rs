//! An index of a trial's history by id and by receipt, built once per judgement so that explaining
//! thousands of findings does not scan the whole history for each.
//!
//! Depends on `entities` and `pipeline::history`.

use crate::entities::{ChromaId, ReceiptIndex};
use crate::pipeline::history::HistoryRecord;

/// Each map is one vector of (key, record position) pairs sorted by key, then position: three
/// allocations however many ids the history names.
pub struct HistoryIndex<'a> {
    records: &'a [HistoryRecord],
    /// Records naming the id, in order.
    by_id: Vec<(ChromaId, usize)>,
    /// Records about the receipt that name no id, in order.
    by_receipt_without_ids: Vec<(ReceiptIndex, usize)>,
    /// Every record about the receipt, in order.
    by_receipt: Vec<(ReceiptIndex, usize)>,
}

/// The positions stored under `key`, in order.
fn positions_of<K: Ord + Copy>(map: &[(K, usize)], key: K) -> &[(K, usize)] {
    let start = map.partition_point(|(k, _)| *k < key);
    let end = start + map[start..].partition_point(|(k, _)| *k == key);
    &map[start..end]
}

impl<'a> HistoryIndex<'a> {
    pub fn new(records: &'a [HistoryRecord]) -> HistoryIndex<'a> {
        let mut by_id = Vec::new();
        // A counting sort by receipt, which keeps positions ascending within each receipt:
        // count[receipt + 1] is first the number of records about the receipt, then where the
        // receipt's records start in `by_receipt`.
        let mut count: Vec<usize> = Vec::new();
        for (position, record) in records.iter().enumerate() {
            by_id.extend(record.ids.iter().map(|id| (*id, position)));
            if let Some(receipt) = record.receipt {
                let receipt = receipt as usize;
                if count.len() < receipt + 2 {
                    count.resize(receipt + 2, 0);
                }
                count[receipt + 1] += 1;
            }
        }
        for receipt in 1..count.len() {
            count[receipt] += count[receipt - 1];
        }
        let mut by_receipt = vec![(0, 0); count.last().copied().unwrap_or(0)];
        for (position, record) in records.iter().enumerate() {
            if let Some(receipt) = record.receipt {
                let next = &mut count[receipt as usize];
                by_receipt[*next] = (receipt, position);
                *next += 1;
            }
        }
        debug_assert!(by_receipt.is_sorted());
        let by_receipt_without_ids = by_receipt
            .iter()
            .filter(|(_, position)| records[*position].ids.is_empty())
            .copied()
            .collect();
        // A record naming an id twice is indexed once.
        by_id.sort_unstable();
        by_id.dedup();
        HistoryIndex {
            records,
            by_id,
            by_receipt_without_ids,
            by_receipt,
        }
    }

    /// The records that touched `id`, in order, with their positions: those naming it, and those
    /// about its receipt naming no id. Allocates nothing (a merge of two sorted runs).
    pub fn of_id(&self, id: ChromaId) -> impl Iterator<Item = (usize, &'a HistoryRecord)> + '_ {
        let mut naming = positions_of(&self.by_id, id)
            .iter()
            .map(|(_, p)| *p)
            .peekable();
        let mut receipt = positions_of(&self.by_receipt_without_ids, id.receipt())
            .iter()
            .map(|(_, p)| *p)
            .peekable();
        // The two runs are disjoint: one holds records naming ids, the other records naming none.
        std::iter::from_fn(move || match (naming.peek(), receipt.peek()) {
            (Some(a), Some(b)) if a < b => naming.next(),
            (Some(_), Some(_)) | (None, Some(_)) => receipt.next(),
            (Some(_), None) => naming.next(),
            (None, None) => None,
        })
        .map(|position| (position, &self.records[position]))
    }

    /// The records that touched any of `ids`, or `receipt` without naming ids, in order.
    pub fn of_ids(&self, ids: &[ChromaId], receipt: ReceiptIndex) -> Vec<&'a HistoryRecord> {
        let mut positions: Vec<usize> = ids
            .iter()
            .flat_map(|id| positions_of(&self.by_id, *id))
            .map(|(_, position)| *position)
            .chain(
                positions_of(&self.by_receipt_without_ids, receipt)
                    .iter()
                    .map(|(_, position)| *position),
            )
            .collect();
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
        positions_of(&self.by_receipt, receipt)
            .iter()
            .map(|(_, position)| &self.records[*position])
    }
}
