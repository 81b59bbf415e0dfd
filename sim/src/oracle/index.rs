//! An index of a trial's history by id and by receipt, built once per judgement so that explaining
//! thousands of findings does not scan the whole history for each. A short history is scanned
//! instead: that costs less than building the maps.
//!
//! Depends on `entities` and `pipeline::history`.

use crate::entities::{ChromaId, ReceiptIndex};
use crate::pipeline::history::HistoryRecord;

/// Histories of at most this many records are scanned, not indexed.
const SCAN_RECORDS_MAX: usize = 64;

pub struct HistoryIndex<'a> {
    records: &'a [HistoryRecord],
    /// `None` for a history short enough to scan.
    maps: Option<Maps>,
}

/// Each map is one vector of (key, record position) pairs sorted by key, then position: a few
/// allocations however many ids the history names.
struct Maps {
    /// Records naming the id, in order.
    by_id: Vec<(ChromaId, usize)>,
    /// Records about the receipt that name no id, in order.
    by_receipt_without_ids: Vec<(ReceiptIndex, usize)>,
    /// Every record about the receipt, in order.
    by_receipt: Vec<(ReceiptIndex, usize)>,
}

/// Whether a record touched any of `ids`: it names one, or it is about `receipt` and names no id.
fn touches(record: &HistoryRecord, ids: &[ChromaId], receipt: ReceiptIndex) -> bool {
    if record.ids.is_empty() {
        record.receipt == Some(receipt)
    } else {
        record.ids.iter().any(|id| ids.contains(id))
    }
}

/// The positions stored under `key`, in order.
fn positions_of<K: Ord + Copy>(map: &[(K, usize)], key: K) -> &[(K, usize)] {
    let start = map.partition_point(|(k, _)| *k < key);
    let end = start + map[start..].partition_point(|(k, _)| *k == key);
    &map[start..end]
}

impl<'a> HistoryIndex<'a> {
    pub fn new(records: &'a [HistoryRecord]) -> HistoryIndex<'a> {
        let maps = (records.len() > SCAN_RECORDS_MAX).then(|| Maps::new(records));
        HistoryIndex { records, maps }
    }

    /// Always builds the maps, however short the history (to test both ways).
    #[cfg(test)]
    fn indexed(records: &'a [HistoryRecord]) -> HistoryIndex<'a> {
        HistoryIndex {
            records,
            maps: Some(Maps::new(records)),
        }
    }
}

impl Maps {
    fn new(records: &[HistoryRecord]) -> Maps {
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
        Maps {
            by_id,
            by_receipt_without_ids,
            by_receipt,
        }
    }
}

impl<'a> HistoryIndex<'a> {
    /// The records naming `id`, in order, with their positions. With `of_receipt_without_ids` of
    /// its receipt, they are every record that touched the id.
    pub fn naming(&self, id: ChromaId) -> impl Iterator<Item = (usize, &'a HistoryRecord)> + '_ {
        let records = self.records;
        let scanned = self.maps.is_none().then(|| {
            records
                .iter()
                .enumerate()
                .filter(move |(_, record)| record.ids.contains(&id))
        });
        let indexed = self.maps.as_ref().map(|maps| {
            positions_of(&maps.by_id, id)
                .iter()
                .map(|(_, position)| (*position, &records[*position]))
        });
        scanned
            .into_iter()
            .flatten()
            .chain(indexed.into_iter().flatten())
    }

    /// The records about `receipt` that name no id, in order: they touch every id of the receipt.
    pub fn of_receipt_without_ids(
        &self,
        receipt: ReceiptIndex,
    ) -> impl Iterator<Item = &'a HistoryRecord> + '_ {
        self.about_receipt(
            receipt,
            |maps| &maps.by_receipt_without_ids,
            move |record| record.ids.is_empty() && record.receipt == Some(receipt),
        )
    }

    /// The records about `receipt` that `scan` keeps, found by scanning a short history or under
    /// the receipt in the map `map` picks.
    fn about_receipt(
        &self,
        receipt: ReceiptIndex,
        map: fn(&Maps) -> &[(ReceiptIndex, usize)],
        scan: impl Fn(&HistoryRecord) -> bool + 'static,
    ) -> impl Iterator<Item = &'a HistoryRecord> + '_ {
        let records = self.records;
        let scanned = self
            .maps
            .is_none()
            .then(|| records.iter().filter(move |record| scan(record)));
        let indexed = self.maps.as_ref().map(|maps| {
            positions_of(map(maps), receipt)
                .iter()
                .map(|(_, position)| &records[*position])
        });
        scanned
            .into_iter()
            .flatten()
            .chain(indexed.into_iter().flatten())
    }

    /// The records that touched any of `ids`, or `receipt` without naming ids, in order.
    pub fn of_ids(&self, ids: &[ChromaId], receipt: ReceiptIndex) -> Vec<&'a HistoryRecord> {
        let Some(maps) = &self.maps else {
            return self
                .records
                .iter()
                .filter(|record| touches(record, ids, receipt))
                .collect();
        };
        let mut positions: Vec<usize> = ids
            .iter()
            .flat_map(|id| positions_of(&maps.by_id, *id))
            .map(|(_, position)| *position)
            .chain(
                positions_of(&maps.by_receipt_without_ids, receipt)
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
        self.about_receipt(
            receipt,
            |maps| &maps.by_receipt,
            move |record| record.receipt == Some(receipt),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::history::{Actor, HistoryEvent};
    use crate::random::Streams;
    use crate::time::Instant;
    use rand::RngExt;

    /// Scanning and indexing give the same records, in the same order, on random histories.
    #[test]
    fn scanning_finds_what_the_maps_find() {
        let mut stream = Streams::new(3).stream("history-index");
        let id = |receipt: u32, word: u32| ChromaId::word(receipt, 1, word);
        for _ in 0..50 {
            let records: Vec<HistoryRecord> = (0..stream.random_range(0..40))
                .map(|at| {
                    let receipt = stream.random_range(0..4u32);
                    let mut ids: Vec<ChromaId> = (0..stream.random_range(0..3))
                        .map(|_| id(receipt, stream.random_range(1..4)))
                        .collect();
                    ids.sort_unstable();
                    HistoryRecord {
                        at: Instant(at),
                        actor: Actor::Workload,
                        event: HistoryEvent::TableWrite,
                        receipt: (stream.random_range(0..5) > 0).then_some(receipt),
                        ids,
                        detail: String::new(),
                    }
                })
                .collect();
            let scanned = HistoryIndex::new(&records);
            assert!(scanned.maps.is_none());
            let indexed = HistoryIndex::indexed(&records);
            for receipt in 0..4 {
                let of_receipt = |index: &HistoryIndex<'_>| -> Vec<*const HistoryRecord> {
                    index.of_receipt(receipt).map(|r| r as *const _).collect()
                };
                assert_eq!(of_receipt(&scanned), of_receipt(&indexed));
                let without_ids = |index: &HistoryIndex<'_>| -> Vec<*const HistoryRecord> {
                    index
                        .of_receipt_without_ids(receipt)
                        .map(|r| r as *const _)
                        .collect()
                };
                assert_eq!(without_ids(&scanned), without_ids(&indexed));
                for word in 1..4 {
                    let naming = |index: &HistoryIndex<'_>| -> Vec<usize> {
                        index.naming(id(receipt, word)).map(|(p, _)| p).collect()
                    };
                    assert_eq!(naming(&scanned), naming(&indexed));
                    // Together they are every record that touched the id, each once.
                    let mut touched: Vec<*const HistoryRecord> = naming(&indexed)
                        .into_iter()
                        .map(|p| &records[p] as *const _)
                        .chain(without_ids(&indexed))
                        .collect();
                    touched.sort_unstable();
                    let mut expected: Vec<*const HistoryRecord> = records
                        .iter()
                        .filter(|r| touches(r, &[id(receipt, word)], receipt))
                        .map(|r| r as *const _)
                        .collect();
                    expected.sort_unstable();
                    assert_eq!(touched, expected);
                    let ids = [id(receipt, word), id(receipt, 3)];
                    let of_ids = |index: &HistoryIndex<'_>| -> Vec<*const HistoryRecord> {
                        index
                            .of_ids(&ids, receipt)
                            .into_iter()
                            .map(|r| r as *const _)
                            .collect()
                    };
                    assert_eq!(of_ids(&scanned), of_ids(&indexed));
                }
            }
        }
    }
}
