//! What a trial leaves behind for the oracle and for people: the optional event history (records
//! kept only when the `HistoryFilter` asks, so the hot path allocates nothing when it is off) and
//! the always-kept compact publish log per collection.
//!
//! Depends on `entities`, `time`, `effect` and `serde`.

use super::effect::VersionId;
use crate::entities::{ChromaId, Collection, ReceiptIndex};
use crate::time::Instant;
use serde::{Serialize, Serializer};
use std::collections::BTreeSet;

/// Which history records a trial keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HistoryFilter {
    #[default]
    Off,
    All,
    /// The records the oracle's cause rules read (`HistoryEvent::is_evidence`), without the
    /// `detail` text: what explaining anomalies needs, at a fraction of the cost (exploration
    /// of small trials). Excerpts need more: a trial judged for people keeps `Receipts`.
    Evidence,
    /// Only records about these receipts: what the oracle's causes and excerpts read (they never
    /// read a record about no receipt, such as a publish or a lock check, whose number grows with
    /// the trial; the publish log keeps the publishes).
    Receipts(BTreeSet<ReceiptIndex>),
}

impl HistoryFilter {
    pub fn is_off(&self) -> bool {
        *self == HistoryFilter::Off
    }
    /// Whether a record of `event` about `receipt` is kept.
    pub fn wants(&self, event: HistoryEvent, receipt: Option<ReceiptIndex>) -> bool {
        match (self, receipt) {
            (HistoryFilter::Off, _) => false,
            (HistoryFilter::All, _) => true,
            (HistoryFilter::Evidence, _) => event.is_evidence(),
            (HistoryFilter::Receipts(_), None) => false,
            (HistoryFilter::Receipts(receipts), Some(receipt)) => receipts.contains(&receipt),
        }
    }
}

/// Who did something.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Actor {
    Workload,
    Upload {
        invocation: u64,
    },
    StreamProcessor {
        invocation: u64,
    },
    Compaction {
        invocation: u64,
        collection: Collection,
    },
    Queue {
        collection: Collection,
    },
}

impl Serialize for Actor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = match self {
            Actor::Workload => "workload".to_string(),
            Actor::Upload { invocation } => format!("upload#{invocation}"),
            Actor::StreamProcessor { invocation } => format!("stream_processor#{invocation}"),
            Actor::Compaction {
                invocation,
                collection,
            } => format!("compaction#{invocation}/{}", collection.name()),
            Actor::Queue { collection } => format!("queue/{}", collection.name()),
        };
        serializer.serialize_str(&text)
    }
}

/// What happened.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryEvent {
    Arrival,
    UploadStarted,
    TableWrite,
    DeltaUploaded,
    DeltaLost,
    WaitCapped,
    LabelsSaved,
    UploadFinished,
    UploadKilled,
    MessagesSent,
    BatchReceived,
    DeltaMerged,
    /// A delta merge's upsert changed the label fields an id already carried: replaced the whole
    /// metadata by the delta's record, which carries none (`compaction.upsert = "replace"`), or
    /// wrote the record's labels over newer ones. The record names those ids.
    MergeReplacedLabels,
    LabelsUpdated,
    LabelsDeleted,
    MerchantUpdated,
    EmbeddingNotFound,
    BusyAtQuickCheck,
    BusyAtPublish,
    PointerMoved,
    Published,
    PointerPromoted,
    PointerConflict,
    /// The ownership re-check before the upload or the pointer write found the lock lost.
    OwnershipLost,
    MessagesDeleted,
    MessagesFailed,
    DeadLettered,
    /// A message reached its queue's retention period and SQS deleted it (detail: the queue).
    ExpiredByRetention,
    CompactionKilled,
    LabelsVisible,
    /// Injected: a compaction invocation stalls (detail: where and for how long).
    Stalled,
    /// Injected: a compaction invocation died right after its pointer write.
    KilledAfterPointer,
    /// Injected: a stream processor invocation failed after sending; the mapping retries the batch.
    StreamRetried,
    /// A compaction invocation start was refused after the mapping received the batch: injected
    /// (no detail) or by the reserved concurrency (detail `reserved concurrency`).
    Throttled,
    /// A label or metadata update's read or write failed and was logged (a label names its word,
    /// a metadata update no id; detail: the failure).
    UpdateFailed,
}

impl HistoryEvent {
    /// Whether the oracle's cause rules (`oracle::cause`) read records of this event; the
    /// evidence filter keeps only these.
    pub fn is_evidence(self) -> bool {
        matches!(
            self,
            HistoryEvent::TableWrite
                | HistoryEvent::DeltaLost
                | HistoryEvent::MessagesSent
                | HistoryEvent::DeltaMerged
                | HistoryEvent::MergeReplacedLabels
                | HistoryEvent::LabelsUpdated
                | HistoryEvent::LabelsDeleted
                | HistoryEvent::MerchantUpdated
                | HistoryEvent::EmbeddingNotFound
                | HistoryEvent::DeadLettered
                | HistoryEvent::ExpiredByRetention
                | HistoryEvent::UpdateFailed
        )
    }
}

fn serialize_instant<S: Serializer>(at: &Instant, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(at.as_secs_f64())
}

fn serialize_optional_instant<S: Serializer>(
    at: &Option<Instant>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serializer.serialize_some(&at.as_secs_f64()),
        None => serializer.serialize_none(),
    }
}

/// One history record (written as one JSON line by the CLI).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryRecord {
    /// Seconds since the start of the trial.
    #[serde(rename = "at_s", serialize_with = "serialize_instant")]
    pub at: Instant,
    pub actor: Actor,
    pub event: HistoryEvent,
    pub receipt: Option<ReceiptIndex>,
    pub ids: Vec<ChromaId>,
    pub detail: String,
}

/// How a publish's pointer write ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PointerOutcome {
    /// Uploaded; the pointer write has not happened (yet, or the invocation was killed).
    NotWritten,
    Promoted,
    /// The compare-and-swap failed.
    Conflict,
}

/// One publish of one collection: always recorded, for the oracle's lost-update and pointer checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublishRecord {
    pub collection: Collection,
    pub publish: u64,
    pub base: u64,
    pub version: VersionId,
    #[serde(rename = "at_s", serialize_with = "serialize_instant")]
    pub at: Instant,
    pub invocation: u64,
    /// The ids the publish's delta wrote, sorted.
    pub ids: CompactIds,
    pub pointer: PointerOutcome,
    /// When the pointer write that promoted this publish happened.
    #[serde(
        rename = "promoted_at_s",
        serialize_with = "serialize_optional_instant"
    )]
    pub promoted_at: Option<Instant>,
}

/// A sorted set of ids stored as LEB128 varints of the gaps between them (ids of one receipt lie
/// close together, so most take one or two bytes instead of eight). A few ids fit in the value
/// itself; more go to the heap. Serialised as a list of ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactIds {
    bytes: Bytes,
    len: u32,
}

/// The encoded gaps: inline when they fit.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Bytes {
    Inline { used: u8, data: [u8; INLINE_BYTES] },
    Heap(Box<[u8]>),
}

/// The most encoded bytes kept in the value itself.
const INLINE_BYTES: usize = 22;

impl Default for CompactIds {
    fn default() -> Self {
        CompactIds {
            bytes: Bytes::Inline {
                used: 0,
                data: [0; INLINE_BYTES],
            },
            len: 0,
        }
    }
}

/// Calls `emit` with each byte of the LEB128 encoding of the gaps between `ids`.
fn encode_gaps(ids: &[ChromaId], mut emit: impl FnMut(u8)) {
    let mut previous = 0u64;
    for id in ids {
        let mut gap = id.0 - previous;
        previous = id.0;
        loop {
            let byte = (gap & 0x7f) as u8;
            gap >>= 7;
            if gap == 0 {
                emit(byte);
                break;
            }
            emit(byte | 0x80);
        }
    }
}

impl CompactIds {
    /// From ids in strictly ascending order.
    pub fn from_sorted(ids: &[ChromaId]) -> CompactIds {
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "ids must be sorted and distinct"
        );
        let mut size = 0;
        encode_gaps(ids, |_| size += 1);
        let bytes = if size <= INLINE_BYTES {
            let mut data = [0; INLINE_BYTES];
            let mut used = 0;
            encode_gaps(ids, |byte| {
                data[used] = byte;
                used += 1;
            });
            Bytes::Inline {
                used: used as u8,
                data,
            }
        } else {
            let mut heap = Vec::with_capacity(size);
            encode_gaps(ids, |byte| heap.push(byte));
            Bytes::Heap(heap.into_boxed_slice())
        };
        CompactIds {
            bytes,
            len: ids.len() as u32,
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Inline { used, data } => &data[..*used as usize],
            Bytes::Heap(heap) => heap,
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = ChromaId> + '_ {
        let bytes = self.bytes();
        let mut position = 0usize;
        let mut previous = 0u64;
        (0..self.len).map(move |_| {
            let mut gap = 0u64;
            let mut shift = 0;
            loop {
                let byte = bytes[position];
                position += 1;
                gap |= u64::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            previous += gap;
            ChromaId(previous)
        })
    }
    pub fn to_vec(&self) -> Vec<ChromaId> {
        self.iter().collect()
    }
    pub fn contains(&self, id: ChromaId) -> bool {
        self.iter()
            .take_while(|candidate| *candidate <= id)
            .any(|candidate| candidate == id)
    }
    /// The bytes held on the heap (none while the encoding fits inline).
    pub fn heap_bytes(&self) -> usize {
        match &self.bytes {
            Bytes::Inline { .. } => 0,
            Bytes::Heap(heap) => heap.len(),
        }
    }
}

impl Serialize for CompactIds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// The history of one trial.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub filter: HistoryFilter,
    /// In time order once the trial is over; records at the same time in the order they were
    /// written.
    pub records: Vec<HistoryRecord>,
    /// Whether a record was written out of time order.
    unsorted: bool,
    /// Publishes of `lines` and `words`, in publish order.
    pub publishes: [Vec<PublishRecord>; 2],
}

impl History {
    pub fn new(filter: HistoryFilter) -> History {
        History {
            filter: HistoryFilter::Off,
            records: Vec::new(),
            unsorted: false,
            publishes: [Vec::new(), Vec::new()],
        }
        .renewed(filter)
    }

    /// An empty history (as `new` makes it) in this one's storage, so a worker running trial
    /// after trial allocates it once.
    pub fn renewed(self, filter: HistoryFilter) -> History {
        let History {
            filter: _,
            mut records,
            unsorted: _,
            mut publishes,
        } = self;
        records.clear();
        for publishes in &mut publishes {
            publishes.clear();
        }
        History {
            filter,
            records,
            unsorted: false,
            publishes,
        }
    }

    /// Keeps a record if the filter wants it. `detail` is only called then.
    pub fn record(
        &mut self,
        at: Instant,
        actor: Actor,
        event: HistoryEvent,
        receipt: Option<ReceiptIndex>,
        ids: &[ChromaId],
        detail: impl FnOnce() -> String,
    ) {
        if !self.filter.wants(event, receipt) {
            return;
        }
        let detail = if self.filter == HistoryFilter::Evidence {
            String::new()
        } else {
            detail()
        };
        let record = HistoryRecord {
            at,
            actor,
            event,
            receipt,
            ids: ids.to_vec(),
            detail,
        };
        // Some records are written when an action is decided and stamped with the time it takes
        // effect: one stable sort at the end (`finish`) puts them in place.
        self.unsorted |= self.records.last().is_some_and(|last| last.at > at);
        self.records.push(record);
    }

    /// Narrows the history to what `filter` would have kept, given a history recorded with a
    /// filter that keeps at least as much. The records kept stay in their order.
    pub fn retain(&mut self, filter: HistoryFilter) {
        self.records
            .retain(|record| filter.wants(record.event, record.receipt));
        self.filter = filter;
    }

    /// Puts the records in time order, ties in the order they were written.
    pub fn finish(&mut self) {
        if self.unsorted {
            self.records.sort_by_key(|record| record.at);
            self.unsorted = false;
        }
        debug_assert!(self.records.is_sorted_by_key(|record| record.at));
    }

    pub fn publishes(&self, collection: Collection) -> &[PublishRecord] {
        &self.publishes[collection.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_ids_round_trip() {
        let ids: Vec<ChromaId> = vec![
            ChromaId::line(0, 1),
            ChromaId::word(0, 1, 1),
            ChromaId::word(0, 1, 2),
            ChromaId::word(7, 3, 9),
            ChromaId::word(1_000_000, 4095, 4095),
        ];
        let compact = CompactIds::from_sorted(&ids);
        assert_eq!(compact.iter().collect::<Vec<_>>(), ids);
        assert_eq!(compact.len(), 5);
        assert!(compact.contains(ChromaId::word(7, 3, 9)));
        assert!(!compact.contains(ChromaId::word(7, 3, 8)));
        assert!(compact.heap_bytes() < 5 * 8);
        // A receipt's few ids stay inline; many go to the heap, and read back the same.
        let few = CompactIds::from_sorted(&ids[..3]);
        assert_eq!(few.heap_bytes(), 0);
        assert_eq!(few.to_vec(), ids[..3]);
        let many: Vec<ChromaId> = (1..=40).map(|word| ChromaId::word(9, 1, word)).collect();
        let compact = CompactIds::from_sorted(&many);
        assert!(compact.heap_bytes() > 0);
        assert_eq!(compact.to_vec(), many);
        assert!(compact.contains(ChromaId::word(9, 1, 39)));
        assert_eq!(CompactIds::default().to_vec(), Vec::new());
    }

    /// Records written out of time order end up in time order, ties in the order written, a short
    /// or a long way back.
    #[test]
    fn records_end_in_time_order_ties_as_written() {
        for late in [3u64, 200] {
            let mut history = History::new(HistoryFilter::All);
            let mut write = |at: u64, receipt: u32| {
                history.record(
                    Instant(at),
                    Actor::Workload,
                    HistoryEvent::TableWrite,
                    Some(receipt),
                    &[],
                    String::new,
                );
            };
            for at in 0..=late {
                write(at * 10, 0);
            }
            // Stamped with earlier times than the last record: one a short way back, one tying
            // with a record already written.
            write(15, 1);
            write(10, 2);
            history.finish();
            let order: Vec<(u64, u32)> = history
                .records
                .iter()
                .map(|r| (r.at.0, r.receipt.unwrap()))
                .collect();
            let mut expected: Vec<(u64, u32)> = (0..=late).map(|at| (at * 10, 0)).collect();
            expected.insert(2, (10, 2));
            expected.insert(3, (15, 1));
            assert_eq!(order, expected, "{late} records before");
        }
    }

    /// Narrowing a history recorded for more receipts keeps exactly what recording with the
    /// narrower filter keeps, in the same order.
    #[test]
    fn retain_narrows_to_what_the_filter_would_have_kept() {
        let wide = HistoryFilter::Receipts([1, 2, 3].into_iter().collect());
        let narrow = HistoryFilter::Receipts([2, 3].into_iter().collect());
        let write = |filter: &HistoryFilter| {
            let mut history = History::new(filter.clone());
            for (at, receipt) in [
                (5, Some(3)),
                (1, Some(1)),
                (2, None),
                (2, Some(2)),
                (7, None),
            ] {
                history.record(
                    Instant(at),
                    Actor::Workload,
                    HistoryEvent::TableWrite,
                    receipt,
                    &[],
                    || format!("{at}"),
                );
            }
            history.finish();
            history
        };
        let mut narrowed = write(&wide);
        narrowed.retain(narrow.clone());
        let recorded = write(&narrow);
        assert_eq!(narrowed.records, recorded.records);
        assert_eq!(narrowed.filter, narrow);
        assert_eq!(narrowed.records.len(), 2);
        narrowed.retain(HistoryFilter::Off);
        assert!(narrowed.records.is_empty());
    }

    #[test]
    fn filter_keeps_what_it_names() {
        let mut history = History::new(HistoryFilter::Receipts([3].into_iter().collect()));
        let mut called = 0;
        for receipt in [Some(1), Some(3), None] {
            history.record(
                Instant::ZERO,
                Actor::Workload,
                HistoryEvent::Arrival,
                receipt,
                &[],
                || {
                    called += 1;
                    String::new()
                },
            );
        }
        // Neither receipt 1's record nor the record about no receipt is kept.
        assert_eq!(history.records.len(), 1);
        assert_eq!(history.records[0].receipt, Some(3));
        assert_eq!(called, 1);
        let mut off = History::new(HistoryFilter::Off);
        off.record(
            Instant::ZERO,
            Actor::Workload,
            HistoryEvent::Arrival,
            Some(1),
            &[],
            || unreachable!(),
        );
        assert!(off.records.is_empty());
    }
}
