//! The DynamoDB table holding every receipt's items, and the stream records its writes produce.
//!
//! Items per receipt: the OCR'd lines and words (with which words are embedded, i.e. not noise),
//! ReceiptMetadata (a merchant value id, absent until inserted), CompactionRun items, and one
//! ReceiptWordLabel item per (word, label). Every write returns the stream record it produces
//! (view NEW_AND_OLD_IMAGES: event name, key, old and new image, a per-table sequence number), or
//! none when nothing changed, as DynamoDB writes no record for a put that leaves the item as it was.
//!
//! Guarantee honoured: writes are atomic and strongly consistent, a conditional put of a missing item
//! fails, and each change yields exactly one record. Nothing here breaks it; loss, duplication and
//! reordering of records happen downstream (`stream`).
//!
//! Storage is compact so that a million receipts fit: records are dense per `ReceiptIndex`, the word
//! layout is a words-per-line column plus a noise bitset, label items live in a small sorted `Vec`
//! per receipt grown a few slots at a time: 12 bytes per label item, under 3 bytes per word, 64
//! bytes of record per receipt; 664 bytes per receipt of 80 words, 35 label items and one run were
//! measured, so a million receipts take about 0.63 GiB (see `heap_bytes`).
//! Depends on `time` and `entities`.

use crate::entities::{ChromaId, Collection, LabelFields, LabelItem, ReceiptIndex};
use crate::time::Instant;

/// Identifies a CompactionRun (the real system's run uuid).
pub type RunId = u32;

/// The state of one collection's half of a CompactionRun.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RunState {
    Pending,
    Processing,
    Completed,
    Failed,
}

/// A CompactionRun item.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct CompactionRun {
    pub run_id: RunId,
    pub receipt: ReceiptIndex,
    pub lines_state: RunState,
    pub words_state: RunState,
    pub started_at: Option<Instant>,
    pub finished_at: Option<Instant>,
    pub lines_merged: u32,
    pub words_merged: u32,
}

impl CompactionRun {
    /// A new run with both states PENDING, as the upload Lambda inserts it.
    pub fn pending(run_id: RunId, receipt: ReceiptIndex) -> CompactionRun {
        CompactionRun {
            run_id,
            receipt,
            lines_state: RunState::Pending,
            words_state: RunState::Pending,
            started_at: None,
            finished_at: None,
            lines_merged: 0,
            words_merged: 0,
        }
    }

    pub fn state(&self, collection: Collection) -> RunState {
        match collection {
            Collection::Lines => self.lines_state,
            Collection::Words => self.words_state,
        }
    }

    /// Both halves COMPLETED (what the old flow's poll waits for).
    pub fn is_completed(&self) -> bool {
        self.lines_state == RunState::Completed && self.words_state == RunState::Completed
    }
}

/// The key of an item that produces stream records.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemKey {
    /// An OCR'd line item (`ChromaId::line`).
    Line(ChromaId),
    /// An OCR'd word item (`ChromaId::word`).
    Word(ChromaId),
    Metadata(ReceiptIndex),
    Run {
        receipt: ReceiptIndex,
        run_id: RunId,
    },
    Label {
        word: ChromaId,
        label: u8,
    },
}

impl ItemKey {
    pub fn receipt(&self) -> ReceiptIndex {
        match *self {
            ItemKey::Line(id) | ItemKey::Word(id) | ItemKey::Label { word: id, .. } => id.receipt(),
            ItemKey::Metadata(receipt) | ItemKey::Run { receipt, .. } => receipt,
        }
    }

    /// A stable digest of the key (stream shard and lane choice hash this).
    pub fn digest(&self) -> u64 {
        use crate::random::mix64;
        let (kind, a, b) = match *self {
            ItemKey::Line(id) => (1u64, id.0, 0u64),
            ItemKey::Word(id) => (2, id.0, 0),
            ItemKey::Metadata(receipt) => (3, u64::from(receipt), 0),
            ItemKey::Run { receipt, run_id } => (4, u64::from(receipt), u64::from(run_id)),
            ItemKey::Label { word, label } => (5, word.0, u64::from(label)),
        };
        mix64(kind ^ mix64(a ^ mix64(b)))
    }
}

/// An item's image in a stream record, in compact form.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ItemImage {
    /// A line or word item (its attributes are not modelled).
    Ocr,
    /// ReceiptMetadata: the merchant value id (standing for every watched merchant field).
    Metadata {
        merchant: u32,
    },
    Run(CompactionRun),
    Label(LabelItem),
}

/// The stream record's event name.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventName {
    Insert,
    Modify,
    Remove,
}

/// One change as the table's stream carries it (NEW_AND_OLD_IMAGES).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamRecord {
    /// Per-table sequence number, 1, 2, 3, … in write order.
    pub sequence: u64,
    /// When the write happened (the record's ApproximateCreationDateTime).
    pub written_at: Instant,
    pub event: EventName,
    pub key: ItemKey,
    pub old: Option<ItemImage>,
    pub new: Option<ItemImage>,
}

/// A conditional write found its condition false (ConditionalCheckFailedException).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ConditionFailed;

/// A receipt's OCR'd layout: words per line and which words are noise (not embedded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptShape {
    words_per_line: Box<[u16]>,
    /// Bit `i` set: the `i`-th word (in line-major order) is noise.
    noise: Box<[u64]>,
}

impl ReceiptShape {
    /// `words_per_line[l]` words on line `l + 1`; `is_noise[i]` for the `i`-th word in line order.
    pub fn new(words_per_line: &[u16], is_noise: &[bool]) -> ReceiptShape {
        let word_count: usize = words_per_line.iter().map(|count| usize::from(*count)).sum();
        assert_eq!(word_count, is_noise.len(), "one noise flag per word");
        assert!(words_per_line.len() <= crate::entities::LINES_PER_RECEIPT_MAX as usize);
        assert!(
            words_per_line
                .iter()
                .all(|count| u32::from(*count) <= crate::entities::WORDS_PER_LINE_MAX)
        );
        let mut noise = vec![0u64; word_count.div_ceil(64)];
        for (index, flag) in is_noise.iter().enumerate() {
            if *flag {
                noise[index / 64] |= 1 << (index % 64);
            }
        }
        ReceiptShape {
            words_per_line: words_per_line.into(),
            noise: noise.into_boxed_slice(),
        }
    }

    pub fn line_count(&self) -> u32 {
        self.words_per_line.len() as u32
    }

    pub fn word_count(&self) -> u32 {
        self.words_per_line
            .iter()
            .map(|count| u32::from(*count))
            .sum()
    }

    /// Every line id of the receipt, ascending.
    pub fn line_ids(&self, receipt: ReceiptIndex) -> impl Iterator<Item = ChromaId> + '_ {
        (1..=self.line_count()).map(move |line| ChromaId::line(receipt, line))
    }

    /// Every word id with its noise flag, ascending.
    pub fn word_ids(&self, receipt: ReceiptIndex) -> impl Iterator<Item = (ChromaId, bool)> + '_ {
        let mut index = 0usize;
        self.words_per_line
            .iter()
            .enumerate()
            .flat_map(move |(line_offset, count)| {
                let line = line_offset as u32 + 1;
                (1..=u32::from(*count)).map(move |word| (line, word))
            })
            .map(move |(line, word)| {
                let is_noise = self.noise[index / 64] & (1 << (index % 64)) != 0;
                index += 1;
                (ChromaId::word(receipt, line, word), is_noise)
            })
    }

    /// The embedded (non-noise) word ids, ascending: the ids the `words` collection gets.
    pub fn embedded_word_ids(&self, receipt: ReceiptIndex) -> impl Iterator<Item = ChromaId> + '_ {
        self.word_ids(receipt)
            .filter(|(_, is_noise)| !is_noise)
            .map(|(id, _)| id)
    }

    /// The ids the given collection gets for this receipt.
    pub fn collection_ids(&self, receipt: ReceiptIndex, collection: Collection) -> Vec<ChromaId> {
        match collection {
            Collection::Lines => self.line_ids(receipt).collect(),
            Collection::Words => self.embedded_word_ids(receipt).collect(),
        }
    }

    fn heap_bytes(&self) -> usize {
        self.words_per_line.len() * 2 + self.noise.len() * 8
    }
}

/// A label item as stored: the word's packed (line, word) number and the item.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct LabelSlot {
    /// `line << 12 | word`, the low 24 bits of the word's `ChromaId`.
    word_local: u32,
    item: LabelItem,
}

impl LabelSlot {
    fn sort_key(&self) -> (u32, u8) {
        (self.word_local, self.item.label)
    }
}

#[derive(Clone, Debug, Default)]
struct ReceiptRecord {
    /// The merchant value id of ReceiptMetadata; `None` until inserted.
    metadata: Option<u32>,
    shape: Option<Box<ReceiptShape>>,
    runs: Vec<CompactionRun>,
    /// Sorted by (word, label).
    labels: Vec<LabelSlot>,
}

/// The most receipts one table holds (ids are 32-bit; the bound is a sanity check).
const RECEIPTS_MAX: usize = 1 << 28;

/// The DynamoDB table.
#[derive(Clone, Debug, Default)]
pub struct Table {
    receipts: Vec<ReceiptRecord>,
    sequence_last: u64,
    label_item_count: u64,
}

fn word_local(word: ChromaId) -> u32 {
    (word.0 & 0xff_ffff) as u32
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    /// A table with room for `receipts` receipts reserved up front.
    pub fn with_capacity(receipts: usize) -> Table {
        Table::default().renewed(receipts)
    }

    /// An empty table (as `with_capacity` makes it) that keeps this one's storage of receipts, so
    /// a worker running trial after trial allocates it once.
    pub fn renewed(self, receipts: usize) -> Table {
        let mut records = self.receipts;
        records.clear();
        records.reserve(receipts);
        Table {
            receipts: records,
            ..Table::default()
        }
    }

    /// The number of stream records written so far (the last sequence number).
    pub fn sequence_last(&self) -> u64 {
        self.sequence_last
    }

    pub fn label_item_count(&self) -> u64 {
        self.label_item_count
    }

    fn record_mut(&mut self, receipt: ReceiptIndex) -> &mut ReceiptRecord {
        let index = receipt as usize;
        assert!(index < RECEIPTS_MAX, "receipt index {receipt} out of range");
        if index >= self.receipts.len() {
            self.receipts.resize_with(index + 1, ReceiptRecord::default);
        }
        &mut self.receipts[index]
    }

    fn record(&self, receipt: ReceiptIndex) -> Option<&ReceiptRecord> {
        self.receipts.get(receipt as usize)
    }

    fn emit(
        &mut self,
        now: Instant,
        key: ItemKey,
        old: Option<ItemImage>,
        new: Option<ItemImage>,
    ) -> StreamRecord {
        assert!(old.is_some() || new.is_some());
        assert_ne!(old, new, "a record must carry a change");
        self.sequence_last += 1;
        let event = match (old, new) {
            (None, Some(_)) => EventName::Insert,
            (Some(_), Some(_)) => EventName::Modify,
            _ => EventName::Remove,
        };
        StreamRecord {
            sequence: self.sequence_last,
            written_at: now,
            event,
            key,
            old,
            new,
        }
    }

    /// OCR writes the receipt's line and word items: one INSERT per line and per word, in id order.
    /// The receipt must not have been OCR'd before.
    pub fn put_ocr(
        &mut self,
        now: Instant,
        receipt: ReceiptIndex,
        shape: ReceiptShape,
    ) -> Vec<StreamRecord> {
        let mut records = Vec::new();
        self.put_ocr_into(now, receipt, shape, Some(&mut records));
        records
    }

    /// `put_ocr`, appending the stream records to `records`, or, when no one reads them, only
    /// numbering them (a receipt has hundreds of items: building records to drop them is most of
    /// the write's cost).
    pub fn put_ocr_into(
        &mut self,
        now: Instant,
        receipt: ReceiptIndex,
        shape: ReceiptShape,
        records: Option<&mut Vec<StreamRecord>>,
    ) {
        assert!(
            self.record_mut(receipt).shape.is_none(),
            "receipt {receipt} OCR'd twice"
        );
        match records {
            Some(records) => {
                let keys = shape
                    .line_ids(receipt)
                    .map(ItemKey::Line)
                    .chain(shape.word_ids(receipt).map(|(id, _)| ItemKey::Word(id)));
                records.reserve(shape.line_count() as usize + shape.word_count() as usize);
                records.extend(keys.map(|key| self.emit(now, key, None, Some(ItemImage::Ocr))));
            }
            None => {
                self.sequence_last += u64::from(shape.line_count()) + u64::from(shape.word_count())
            }
        }
        self.record_mut(receipt).shape = Some(Box::new(shape));
    }

    /// The receipt's OCR'd layout, if OCR has written it.
    pub fn shape(&self, receipt: ReceiptIndex) -> Option<&ReceiptShape> {
        self.record(receipt)?.shape.as_deref()
    }

    /// Puts ReceiptMetadata: an INSERT if absent, a MODIFY if the merchant differs, no record if equal.
    pub fn put_metadata(
        &mut self,
        now: Instant,
        receipt: ReceiptIndex,
        merchant: u32,
    ) -> Option<StreamRecord> {
        let record = self.record_mut(receipt);
        let old = record.metadata.replace(merchant);
        if old == Some(merchant) {
            return None;
        }
        let old = old.map(|merchant| ItemImage::Metadata { merchant });
        Some(self.emit(
            now,
            ItemKey::Metadata(receipt),
            old,
            Some(ItemImage::Metadata { merchant }),
        ))
    }

    /// The merchant value id of the receipt's ReceiptMetadata, if it exists.
    pub fn metadata(&self, receipt: ReceiptIndex) -> Option<u32> {
        self.record(receipt)?.metadata
    }

    /// Inserts a CompactionRun (an INSERT); the run id must be new for the receipt.
    pub fn put_run(&mut self, now: Instant, run: CompactionRun) -> StreamRecord {
        let record = self.record_mut(run.receipt);
        assert!(
            record
                .runs
                .iter()
                .all(|existing| existing.run_id != run.run_id),
            "run {} of receipt {} inserted twice",
            run.run_id,
            run.receipt
        );
        record.runs.reserve_exact(1);
        record.runs.push(run);
        let key = ItemKey::Run {
            receipt: run.receipt,
            run_id: run.run_id,
        };
        self.emit(now, key, None, Some(ItemImage::Run(run)))
    }

    /// Every CompactionRun of a receipt, in insertion order.
    pub fn runs(&self, receipt: ReceiptIndex) -> &[CompactionRun] {
        self.record(receipt).map_or(&[], |record| &record.runs[..])
    }

    pub fn run(&self, receipt: ReceiptIndex, run_id: RunId) -> Option<&CompactionRun> {
        self.record(receipt)?
            .runs
            .iter()
            .find(|run| run.run_id == run_id)
    }

    /// Sets one collection's state of a run (a MODIFY). PROCESSING stamps `started_at` if unset;
    /// COMPLETED and FAILED stamp `finished_at` and record `merged` vectors. Fails if the run is absent.
    pub fn update_run_state(
        &mut self,
        now: Instant,
        receipt: ReceiptIndex,
        run_id: RunId,
        collection: Collection,
        state: RunState,
        merged: u32,
    ) -> Result<Option<StreamRecord>, ConditionFailed> {
        let record = self.record_mut(receipt);
        let run = record
            .runs
            .iter_mut()
            .find(|run| run.run_id == run_id)
            .ok_or(ConditionFailed)?;
        let old = *run;
        match state {
            RunState::Pending => {}
            RunState::Processing => {
                run.started_at.get_or_insert(now);
            }
            RunState::Completed | RunState::Failed => {
                run.finished_at = Some(now);
                match collection {
                    Collection::Lines => run.lines_merged = merged,
                    Collection::Words => run.words_merged = merged,
                }
            }
        }
        match collection {
            Collection::Lines => run.lines_state = state,
            Collection::Words => run.words_state = state,
        }
        let new = *run;
        if new == old {
            return Ok(None);
        }
        let key = ItemKey::Run { receipt, run_id };
        Ok(Some(self.emit(
            now,
            key,
            Some(ItemImage::Run(old)),
            Some(ItemImage::Run(new)),
        )))
    }

    fn label_position(&self, word: ChromaId, label: u8) -> (ReceiptIndex, Result<usize, usize>) {
        let receipt = word.receipt();
        let key = (word_local(word), label);
        let position = match self.record(receipt) {
            Some(record) => record
                .labels
                .binary_search_by_key(&key, LabelSlot::sort_key),
            None => Err(0),
        };
        (receipt, position)
    }

    /// An unconditional put of the label item of `word` named by `item.label`: INSERT if new, MODIFY
    /// if different, no record if equal.
    pub fn put_label(
        &mut self,
        now: Instant,
        word: ChromaId,
        item: LabelItem,
    ) -> Option<StreamRecord> {
        assert!(word.is_word(), "labels belong to words");
        assert!(usize::from(item.label) < crate::entities::LABELS.len());
        let (receipt, position) = self.label_position(word, item.label);
        let slot = LabelSlot {
            word_local: word_local(word),
            item,
        };
        let record = self.record_mut(receipt);
        let old = match position {
            Ok(index) => Some(std::mem::replace(&mut record.labels[index].item, item)),
            Err(index) => {
                if record.labels.len() == record.labels.capacity() {
                    // Grow a few slots at a time: a receipt holds tens of items, doubling would waste.
                    record.labels.reserve_exact(4.max(record.labels.len() / 4));
                }
                record.labels.insert(index, slot);
                self.label_item_count += 1;
                None
            }
        };
        if old == Some(item) {
            return None;
        }
        let key = ItemKey::Label {
            word,
            label: item.label,
        };
        Some(self.emit(
            now,
            key,
            old.map(ItemImage::Label),
            Some(ItemImage::Label(item)),
        ))
    }

    /// A conditional put (`attribute_exists`): replaces an existing label item, fails if it is absent.
    pub fn put_label_if_exists(
        &mut self,
        now: Instant,
        word: ChromaId,
        item: LabelItem,
    ) -> Result<Option<StreamRecord>, ConditionFailed> {
        let (_, position) = self.label_position(word, item.label);
        match position {
            Ok(_) => Ok(self.put_label(now, word, item)),
            Err(_) => Err(ConditionFailed),
        }
    }

    /// Deletes a label item: a REMOVE, or no record if it did not exist.
    pub fn delete_label(
        &mut self,
        now: Instant,
        word: ChromaId,
        label: u8,
    ) -> Option<StreamRecord> {
        let (receipt, position) = self.label_position(word, label);
        let index = position.ok()?;
        let record = self.record_mut(receipt);
        let old = record.labels.remove(index).item;
        self.label_item_count -= 1;
        let key = ItemKey::Label { word, label };
        Some(self.emit(now, key, Some(ItemImage::Label(old)), None))
    }

    pub fn label_item(&self, word: ChromaId, label: u8) -> Option<LabelItem> {
        let (receipt, position) = self.label_position(word, label);
        Some(self.record(receipt)?.labels[position.ok()?].item)
    }

    /// Every label item of `word` (a query on the word's key prefix), in label order.
    pub fn label_items(&self, word: ChromaId) -> Vec<LabelItem> {
        self.label_slots(word)
            .iter()
            .map(|slot| slot.item)
            .collect()
    }

    /// Whether `word` has any label item.
    pub fn has_label_items(&self, word: ChromaId) -> bool {
        !self.label_slots(word).is_empty()
    }

    fn label_slots(&self, word: ChromaId) -> &[LabelSlot] {
        let Some(record) = self.record(word.receipt()) else {
            return &[];
        };
        let local = word_local(word);
        let start = record
            .labels
            .partition_point(|slot| slot.word_local < local);
        let end = start + record.labels[start..].partition_point(|slot| slot.word_local == local);
        &record.labels[start..end]
    }

    /// The label fields a correct compaction derives for `word` from its current items.
    pub fn derived_label_fields(&self, word: ChromaId) -> LabelFields {
        LabelFields::derive(self.label_slots(word).iter().map(|slot| &slot.item))
    }

    /// `derived_label_fields` of every word of the receipt that has label items, ascending by id,
    /// in one pass over the receipt's items (no search per word, no allocation).
    pub fn derived_label_fields_by_word(
        &self,
        receipt: ReceiptIndex,
    ) -> impl Iterator<Item = (ChromaId, LabelFields)> + '_ {
        let labels = self
            .record(receipt)
            .map_or(&[][..], |record| &record.labels[..]);
        labels
            .chunk_by(|a, b| a.word_local == b.word_local)
            .map(move |chunk| {
                let word = ChromaId(u64::from(receipt) << 24 | u64::from(chunk[0].word_local));
                (
                    word,
                    LabelFields::derive(chunk.iter().map(|slot| &slot.item)),
                )
            })
    }

    /// Every word of the receipt that has at least one label item, with its derived fields, ascending.
    pub fn labelled_words(&self, receipt: ReceiptIndex) -> Vec<(ChromaId, LabelFields)> {
        let Some(record) = self.record(receipt) else {
            return Vec::new();
        };
        let mut result: Vec<(ChromaId, LabelFields)> = Vec::new();
        for chunk in record.labels.chunk_by(|a, b| a.word_local == b.word_local) {
            let word = ChromaId(u64::from(receipt) << 24 | u64::from(chunk[0].word_local));
            let items: Vec<LabelItem> = chunk.iter().map(|slot| slot.item).collect();
            result.push((word, LabelFields::derive(&items)));
        }
        result
    }

    /// Receipt records allocated (the highest receipt index touched, plus one).
    pub fn receipt_count(&self) -> usize {
        self.receipts.len()
    }

    /// Heap bytes held, counting allocated capacity (allocator overhead excluded).
    pub fn heap_bytes(&self) -> usize {
        let per_receipt = std::mem::size_of::<ReceiptRecord>();
        let mut bytes = self.receipts.capacity() * per_receipt;
        for record in &self.receipts {
            bytes += record.labels.capacity() * std::mem::size_of::<LabelSlot>();
            bytes += record.runs.capacity() * std::mem::size_of::<CompactionRun>();
            if let Some(shape) = &record.shape {
                bytes += std::mem::size_of::<ReceiptShape>() + shape.heap_bytes();
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::ValidationStatus;

    fn item(label: u8, status: ValidationStatus) -> LabelItem {
        LabelItem {
            label,
            validation_status: status,
            reasoning: 1,
            proposed_by: 0,
            consolidated_from: 0,
        }
    }

    #[test]
    fn label_writes_produce_insert_modify_remove_and_nothing_for_no_change() {
        let mut table = Table::new();
        let word = ChromaId::word(3, 2, 1);
        let now = Instant(5);
        let insert = table
            .put_label(now, word, item(4, ValidationStatus::Pending))
            .unwrap();
        assert_eq!(insert.event, EventName::Insert);
        assert_eq!(insert.old, None);
        assert!(
            table
                .put_label(now, word, item(4, ValidationStatus::Pending))
                .is_none()
        );
        let modify = table
            .put_label(now, word, item(4, ValidationStatus::Valid))
            .unwrap();
        assert_eq!(modify.event, EventName::Modify);
        assert_eq!(
            modify.old,
            Some(ItemImage::Label(item(4, ValidationStatus::Pending)))
        );
        assert!(modify.sequence > insert.sequence);
        assert_eq!(
            table.put_label_if_exists(now, word, item(5, ValidationStatus::Valid)),
            Err(ConditionFailed)
        );
        assert_eq!(
            table.label_items(word),
            vec![item(4, ValidationStatus::Valid)]
        );
        let remove = table.delete_label(now, word, 4).unwrap();
        assert_eq!(remove.event, EventName::Remove);
        assert_eq!(remove.new, None);
        assert!(table.delete_label(now, word, 4).is_none());
        assert!(table.label_items(word).is_empty());
        assert_eq!(table.label_item_count(), 0);
    }

    #[test]
    fn label_items_are_grouped_per_word_and_derived() {
        let mut table = Table::new();
        let a = ChromaId::word(1, 1, 2);
        let b = ChromaId::word(1, 1, 3);
        table.put_label(Instant(0), b, item(1, ValidationStatus::Valid));
        table.put_label(Instant(0), a, item(7, ValidationStatus::Invalid));
        table.put_label(Instant(0), a, item(2, ValidationStatus::Valid));
        assert_eq!(table.label_items(a).len(), 2);
        let labelled = table.labelled_words(1);
        assert_eq!(labelled.len(), 2);
        assert_eq!(labelled[0].0, a);
        assert_eq!(labelled[0].1.valid, 1 << 2);
        assert_eq!(labelled[0].1.invalid, 1 << 7);
        assert_eq!(labelled[1], (b, table.derived_label_fields(b)));
    }

    #[test]
    fn metadata_and_runs() {
        let mut table = Table::new();
        let insert = table.put_metadata(Instant(1), 0, 9).unwrap();
        assert_eq!(insert.event, EventName::Insert);
        assert!(table.put_metadata(Instant(2), 0, 9).is_none());
        let modify = table.put_metadata(Instant(3), 0, 10).unwrap();
        assert_eq!(modify.old, Some(ItemImage::Metadata { merchant: 9 }));
        let run = table.put_run(Instant(4), CompactionRun::pending(77, 0));
        assert_eq!(run.event, EventName::Insert);
        let record = table
            .update_run_state(
                Instant(5),
                0,
                77,
                Collection::Words,
                RunState::Completed,
                80,
            )
            .unwrap()
            .unwrap();
        assert_eq!(record.event, EventName::Modify);
        let stored = table.run(0, 77).unwrap();
        assert_eq!(
            (stored.words_state, stored.words_merged),
            (RunState::Completed, 80)
        );
        assert!(!stored.is_completed());
        assert_eq!(
            table.update_run_state(Instant(5), 0, 78, Collection::Words, RunState::Failed, 0),
            Err(ConditionFailed)
        );
    }

    #[test]
    fn shape_lists_embedded_words() {
        let mut table = Table::new();
        let shape = ReceiptShape::new(&[2, 1], &[false, true, false]);
        let records = table.put_ocr(Instant(0), 4, shape);
        assert_eq!(records.len(), 5, "two lines and three words");
        let shape = table.shape(4).unwrap();
        let embedded: Vec<ChromaId> = shape.embedded_word_ids(4).collect();
        assert_eq!(
            embedded,
            vec![ChromaId::word(4, 1, 1), ChromaId::word(4, 2, 1)]
        );
        assert_eq!(shape.collection_ids(4, Collection::Lines).len(), 2);
    }

    #[test]
    fn ocr_without_records_numbers_them_the_same() {
        let mut with_records = Table::new();
        let mut without = Table::new();
        let shape = || ReceiptShape::new(&[2, 1], &[false, true, false]);
        let records = with_records.put_ocr(Instant(0), 4, shape());
        without.put_ocr_into(Instant(0), 4, shape(), None);
        assert_eq!(records.last().map(|record| record.sequence), Some(5));
        assert_eq!(without.sequence_last(), with_records.sequence_last());
        assert_eq!(without.shape(4), with_records.shape(4));
        let next = |table: &mut Table| table.put_metadata(Instant(1), 4, 9).unwrap().sequence;
        assert_eq!(next(&mut without), 6);
        assert_eq!(next(&mut with_records), 6);
    }

    #[test]
    fn bytes_per_receipt_stay_small() {
        // 80 words and 35 label items per receipt: about 12 bytes per item, 3 per word.
        let mut table = Table::new();
        let receipts = 200u32;
        for receipt in 0..receipts {
            let shape = ReceiptShape::new(&[4; 20], &[false; 80]);
            table.put_ocr(Instant(0), receipt, shape);
            table.put_metadata(Instant(0), receipt, 1);
            table.put_run(Instant(0), CompactionRun::pending(receipt, receipt));
            for index in 0..35u32 {
                let word = ChromaId::word(receipt, 1 + index / 4, 1 + index % 4);
                table.put_label(
                    Instant(0),
                    word,
                    item((index % 16) as u8, ValidationStatus::Valid),
                );
            }
        }
        let per_receipt = table.heap_bytes() / receipts as usize;
        // Well under 1 GiB for a million receipts.
        assert!(per_receipt < 700, "{per_receipt} bytes per receipt");
    }
}
