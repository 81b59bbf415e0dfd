//! A DynamoDB stream and the Lambda event source mapping that reads it.
//!
//! The stream: each record goes to one shard, chosen by hashing its item key, so all records of an
//! item share a shard and keep their order. Shards may split over time (`shard_split_interval`):
//! every open shard closes and children take its keys (twice as many until `shards_max`, else one
//! each); a child is read only after its parent is drained, as the mapping does, so per-item order
//! survives splits. Records older than `retention` (24 h) are trimmed.
//!
//! The mapping: each shard is read in `parallelization_factor` lanes; an item always hashes to the
//! same lane and a lane has at most one batch in flight, so a batch never holds a record of an item
//! with an earlier record in flight. A lane's batch is ready when `batch_size` records wait, or when
//! the first waiting record has waited `batching_window`. A failed batch blocks its lane and is
//! retried (bisected into halves if `bisect_on_failure`) until it succeeds, its records exceed
//! `retry_attempts_max`, or they pass `record_age_max`; dropped records are counted.
//!
//! Guarantee honoured: each change appears exactly once in the stream, in order per item. Delivery
//! to the function is at-least-once: a failed batch is delivered again, so effects the function
//! produced before failing are repeated; retry limits and record age drop records; nothing orders
//! records of different items.
//! Depends on `time` and `services::table` (the record type).

use crate::services::table::StreamRecord;
use crate::time::{Duration, Instant};
use std::collections::{BTreeMap, VecDeque};

/// Knobs of the stream and its event source mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamParams {
    /// Shards at the start of the trial (at least 1).
    pub shards: u32,
    /// Every this long, each open shard closes and children take over; `None`: shards never split.
    pub shard_split_interval: Option<Duration>,
    /// Splits double the open shards until this many are open, then replace them one for one.
    pub shards_max: u32,
    /// Records per batch, at most.
    pub batch_size: u32,
    /// How long the first waiting record waits for a batch to fill.
    pub batching_window: Duration,
    /// Concurrent batches per shard, 1 to 10.
    pub parallelization_factor: u32,
    /// Retries of a failing record before it is dropped; `None`: until it is too old.
    pub retry_attempts_max: Option<u32>,
    /// Split a failing batch in two and retry the halves separately.
    pub bisect_on_failure: bool,
    /// Records older than this (since written) are dropped unprocessed; `None`: no limit.
    pub record_age_max: Option<Duration>,
    /// The stream's retention (24 h for DynamoDB streams).
    pub retention: Duration,
}

/// A shard of the stream (dense index, in creation order).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u32);

/// A batch handed to the function, unique over the trial.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchId(pub u64);

/// Records handed to one invocation of the stream processor.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamBatch {
    pub id: BatchId,
    pub shard: ShardId,
    /// In stream order; never two records of one item out of order.
    pub records: Vec<StreamRecord>,
    /// 0 on first delivery; the number of earlier failed deliveries of these records otherwise.
    pub attempt: u32,
}

/// What a failed batch turns into.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FailOutcome {
    /// The same records will be delivered again.
    Retrying { attempt: u32 },
    /// The records will be delivered again as two batches, first half first.
    Bisected { attempt: u32 },
    /// The records exceeded the retry limit and were dropped.
    Discarded { records: usize },
}

/// Counts kept by the stream and mapping.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamCounters {
    pub records_appended: u64,
    pub batches_started: u64,
    pub batches_completed: u64,
    pub batches_failed: u64,
    pub bisections: u64,
    /// Records delivered again after a failure (counted per record per retry).
    pub records_redelivered: u64,
    pub records_dropped_by_age: u64,
    pub records_dropped_by_retries: u64,
    pub records_trimmed_by_retention: u64,
    pub shard_splits: u64,
}

#[derive(Clone, Debug)]
struct Pending {
    record: StreamRecord,
    appended_at: Instant,
    /// Failed deliveries so far.
    attempts: u32,
}

#[derive(Clone, Debug, Default)]
struct Lane {
    fresh: VecDeque<Pending>,
    /// Failed batches waiting for redelivery, in order, ahead of every fresh record.
    retry: VecDeque<Vec<Pending>>,
    retry_ready_at: Instant,
    in_flight: Option<(BatchId, Vec<Pending>)>,
}

impl Lane {
    /// The lane `Lane::default` makes, keeping its rings' storage.
    fn empty(&mut self) {
        let Lane {
            fresh,
            retry,
            retry_ready_at,
            in_flight,
        } = self;
        fresh.clear();
        retry.clear();
        *retry_ready_at = Instant::default();
        *in_flight = None;
    }

    fn is_drained(&self) -> bool {
        self.fresh.is_empty() && self.retry.is_empty() && self.in_flight.is_none()
    }

    fn ready_at(&self, params: &StreamParams) -> Option<Instant> {
        if self.in_flight.is_some() {
            return None;
        }
        if !self.retry.is_empty() {
            return Some(self.retry_ready_at);
        }
        let batch_size = params.batch_size as usize;
        if self.fresh.len() >= batch_size {
            return Some(self.fresh[batch_size - 1].appended_at);
        }
        let first = self.fresh.front()?;
        Some(first.appended_at.add(params.batching_window))
    }

    fn oldest_written_at(&self) -> Option<Instant> {
        let in_flight = self
            .in_flight
            .iter()
            .flat_map(|(_, records)| records.first());
        let retry = self.retry.iter().flat_map(|batch| batch.first());
        in_flight
            .chain(retry)
            .chain(self.fresh.front())
            .map(|p| p.record.written_at)
            .min()
    }

    fn len(&self) -> usize {
        let in_flight = self
            .in_flight
            .as_ref()
            .map_or(0, |(_, records)| records.len());
        self.fresh.len() + self.retry.iter().map(Vec::len).sum::<usize>() + in_flight
    }
}

#[derive(Clone, Debug)]
struct Shard {
    parent: Option<ShardId>,
    closed: bool,
    lanes: Vec<Lane>,
}

/// The most shards a trial may create (splits are rare; this is a sanity bound).
const SHARDS_TOTAL_MAX: usize = 1 << 16;

/// The stream with its event source mapping.
#[derive(Clone, Debug)]
pub struct TableStream {
    params: StreamParams,
    shards: Vec<Shard>,
    /// The shards new records go to, in hash order.
    open: Vec<ShardId>,
    split_next_at: Option<Instant>,
    in_flight: BTreeMap<BatchId, (ShardId, usize)>,
    batch_next: u64,
    sequence_last: u64,
    counters: StreamCounters,
    spare: SpareBatches,
}

/// The most emptied batch vectors a stream keeps for later batches, of each kind.
const SPARE_BATCHES_MAX: usize = 8;

/// Emptied vectors of finished batches (`TableStream::complete`, `recycle`), which later batches
/// fill instead of allocating.
#[derive(Clone, Debug, Default)]
struct SpareBatches {
    pending: Vec<Vec<Pending>>,
    records: Vec<Vec<StreamRecord>>,
}

impl TableStream {
    pub fn new(params: StreamParams) -> TableStream {
        TableStream::reusing(None, params)
    }

    /// A new stream, as `new` makes it, that keeps `old`'s storage of shards and lanes, emptied,
    /// when there is one: a worker running trial after trial allocates it once.
    pub fn reusing(old: Option<TableStream>, params: StreamParams) -> TableStream {
        let (mut shards, mut open, spare) =
            old.map_or_else(Default::default, |old| (old.shards, old.open, old.spare));
        assert!(params.shards >= 1, "a stream has at least one shard");
        assert!(
            params.shards <= params.shards_max,
            "shards must not exceed shards_max"
        );
        assert!(params.batch_size >= 1, "batch size must be at least 1");
        assert!(
            (1..=10).contains(&params.parallelization_factor),
            "parallelization factor 1..=10"
        );
        let lanes = params.parallelization_factor as usize;
        shards.truncate(params.shards as usize);
        for shard in &mut shards {
            shard.parent = None;
            shard.closed = false;
            shard.lanes.truncate(lanes);
            for lane in &mut shard.lanes {
                lane.empty();
            }
            shard.lanes.resize_with(lanes, Lane::default);
        }
        shards.resize_with(params.shards as usize, || Shard {
            parent: None,
            closed: false,
            lanes: vec![Lane::default(); lanes],
        });
        open.clear();
        open.extend((0..params.shards).map(ShardId));
        let split_next_at = params
            .shard_split_interval
            .map(|interval| Instant::ZERO.add(interval));
        TableStream {
            params,
            shards,
            open,
            split_next_at,
            in_flight: BTreeMap::new(),
            batch_next: 0,
            sequence_last: 0,
            counters: StreamCounters::default(),
            spare,
        }
    }

    pub fn params(&self) -> &StreamParams {
        &self.params
    }

    pub fn counters(&self) -> &StreamCounters {
        &self.counters
    }

    fn split_due(&mut self, now: Instant) {
        let Some(interval) = self.params.shard_split_interval else {
            return;
        };
        assert!(
            interval > Duration::ZERO,
            "a split interval must be positive"
        );
        while let Some(at) = self.split_next_at.filter(|at| *at <= now) {
            let count = self.open.len();
            let doubled = count * 2 <= self.params.shards_max as usize;
            let children = if doubled { count * 2 } else { count };
            assert!(
                self.shards.len() + children <= SHARDS_TOTAL_MAX,
                "too many shard splits"
            );
            let lanes = self.params.parallelization_factor as usize;
            let mut open = Vec::with_capacity(children);
            for index in 0..children {
                let parent = self.open[index % count];
                open.push(ShardId(self.shards.len() as u32));
                self.shards.push(Shard {
                    parent: Some(parent),
                    closed: false,
                    lanes: vec![Lane::default(); lanes],
                });
            }
            for id in &self.open {
                self.shards[id.0 as usize].closed = true;
            }
            self.open = open;
            self.counters.shard_splits += 1;
            self.split_next_at = Some(at.add(interval));
        }
    }

    /// Appends a table write's record; returns the shard it went to. Records arrive in sequence order.
    pub fn append(&mut self, now: Instant, record: StreamRecord) -> ShardId {
        assert!(
            record.sequence > self.sequence_last,
            "stream records must arrive in write order"
        );
        assert!(
            record.written_at <= now,
            "a record cannot be appended before it is written"
        );
        self.sequence_last = record.sequence;
        self.split_due(now);
        let digest = record.key.digest();
        let shard = self.open[(digest % self.open.len() as u64) as usize];
        let lane = ((digest >> 32) % u64::from(self.params.parallelization_factor)) as usize;
        let pending = Pending {
            record,
            appended_at: now,
            attempts: 0,
        };
        self.shards[shard.0 as usize].lanes[lane]
            .fresh
            .push_back(pending);
        self.counters.records_appended += 1;
        shard
    }

    /// Every shard that still holds or may receive records (the shards a poller must visit).
    pub fn live_shards(&self) -> impl Iterator<Item = ShardId> + use<'_> {
        (0..self.shards.len() as u32)
            .map(ShardId)
            .filter(|shard| self.is_live(*shard))
    }

    /// Whether a shard is open or still holds records.
    pub fn is_live(&self, shard: ShardId) -> bool {
        !self.is_drained(shard)
    }

    /// How many shards exist, closed ones included (shard ids are `0..shard_count`).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn is_drained(&self, shard: ShardId) -> bool {
        let shard = &self.shards[shard.0 as usize];
        shard.closed && shard.lanes.iter().all(Lane::is_drained)
    }

    fn readable(&self, shard: ShardId) -> bool {
        self.shards[shard.0 as usize]
            .parent
            .is_none_or(|parent| self.is_drained(parent))
    }

    /// When a batch could next be taken from `shard` (possibly already past), or `None` if the shard
    /// has nothing to hand out (empty, every lane busy, or its parent not yet drained).
    pub fn ready_at(&self, shard: ShardId) -> Option<Instant> {
        if !self.readable(shard) {
            return None;
        }
        let lanes = &self.shards[shard.0 as usize].lanes;
        lanes
            .iter()
            .filter_map(|lane| lane.ready_at(&self.params))
            .min()
    }

    /// The earliest `ready_at` over all shards, with its shard (lowest shard id on ties).
    pub fn next_ready(&self) -> Option<(Instant, ShardId)> {
        self.live_shards()
            .filter_map(|shard| Some((self.ready_at(shard)?, shard)))
            .min()
    }

    /// Drops records too old to deliver from the head of a lane's waiting records.
    fn drop_expired(
        lane: &mut Lane,
        params: &StreamParams,
        now: Instant,
        counters: &mut StreamCounters,
    ) {
        let too_old = |pending: &Pending| -> Option<bool> {
            let age = now.saturating_since(pending.record.written_at);
            if age > params.retention {
                return Some(true);
            }
            params
                .record_age_max
                .filter(|limit| age > *limit)
                .map(|_| false)
        };
        let mut count = |trimmed: bool| {
            if trimmed {
                counters.records_trimmed_by_retention += 1;
            } else {
                counters.records_dropped_by_age += 1;
            }
        };
        for batch in lane.retry.iter_mut() {
            batch.retain(|pending| too_old(pending).map(&mut count).is_none());
        }
        lane.retry.retain(|batch| !batch.is_empty());
        while let Some(trimmed) = lane.fresh.front().and_then(too_old) {
            count(trimmed);
            lane.fresh.pop_front();
        }
    }

    /// Takes one batch from `shard` if one is ready at `now`.
    pub fn next_batch(&mut self, now: Instant, shard: ShardId) -> Option<StreamBatch> {
        if !self.readable(shard) {
            return None;
        }
        let params = &self.params;
        let lanes = &mut self.shards[shard.0 as usize].lanes;
        for lane in lanes.iter_mut().filter(|lane| lane.in_flight.is_none()) {
            Self::drop_expired(lane, params, now, &mut self.counters);
        }
        let (lane_index, _) = lanes
            .iter()
            .enumerate()
            .filter_map(|(index, lane)| Some((index, lane.ready_at(params)?)))
            .filter(|(_, ready_at)| *ready_at <= now)
            .min_by_key(|(index, ready_at)| (*ready_at, *index))?;
        let lane = &mut lanes[lane_index];
        let taken: Vec<Pending> = match lane.retry.pop_front() {
            Some(batch) => batch,
            None => {
                let count = lane.fresh.len().min(params.batch_size as usize);
                let mut taken = self.spare.pending.pop().unwrap_or_default();
                taken.extend(lane.fresh.drain(..count));
                taken
            }
        };
        assert!(!taken.is_empty() && taken.len() <= params.batch_size as usize);
        let attempt = taken[0].attempts;
        assert!(taken.iter().all(|pending| pending.attempts == attempt));
        let id = BatchId(self.batch_next);
        self.batch_next += 1;
        let mut records = self.spare.records.pop().unwrap_or_default();
        records.extend(taken.iter().map(|pending| pending.record));
        lane.in_flight = Some((id, taken));
        self.in_flight.insert(id, (shard, lane_index));
        self.counters.batches_started += 1;
        if attempt > 0 {
            self.counters.records_redelivered += self.batch_len(id) as u64;
        }
        Some(StreamBatch {
            id,
            shard,
            records,
            attempt,
        })
    }

    fn batch_len(&self, id: BatchId) -> usize {
        let (shard, lane) = self.in_flight[&id];
        self.shards[shard.0 as usize].lanes[lane]
            .in_flight
            .as_ref()
            .map_or(0, |(_, r)| r.len())
    }

    fn take_in_flight(&mut self, id: BatchId) -> (ShardId, usize, Vec<Pending>) {
        let (shard, lane) = self
            .in_flight
            .remove(&id)
            .expect("unknown or finished batch");
        let (held, records) = self.shards[shard.0 as usize].lanes[lane]
            .in_flight
            .take()
            .expect("lane lost its batch");
        assert_eq!(held, id);
        (shard, lane, records)
    }

    /// The function succeeded: the batch's records are done.
    pub fn complete(&mut self, _now: Instant, id: BatchId) -> usize {
        let (_, _, mut records) = self.take_in_flight(id);
        self.counters.batches_completed += 1;
        let count = records.len();
        records.clear();
        if self.spare.pending.len() < SPARE_BATCHES_MAX {
            self.spare.pending.push(records);
        }
        count
    }

    /// Takes back the records of a batch handed out (`StreamBatch::records`) once read, for a
    /// later batch to hold.
    pub fn recycle(&mut self, mut records: Vec<StreamRecord>) {
        records.clear();
        if self.spare.records.len() < SPARE_BATCHES_MAX {
            self.spare.records.push(records);
        }
    }

    /// The function failed: retry, bisect or drop the batch's records; the lane stays blocked by them.
    pub fn fail(&mut self, now: Instant, id: BatchId) -> FailOutcome {
        let (shard, lane_index, mut records) = self.take_in_flight(id);
        self.counters.batches_failed += 1;
        for pending in records.iter_mut() {
            pending.attempts += 1;
        }
        let attempt = records[0].attempts;
        if self
            .params
            .retry_attempts_max
            .is_some_and(|limit| attempt > limit)
        {
            self.counters.records_dropped_by_retries += records.len() as u64;
            return FailOutcome::Discarded {
                records: records.len(),
            };
        }
        let bisect = self.params.bisect_on_failure && records.len() > 1;
        let lane = &mut self.shards[shard.0 as usize].lanes[lane_index];
        lane.retry_ready_at = now;
        if bisect {
            let second = records.split_off(records.len() / 2);
            lane.retry.push_front(second);
            lane.retry.push_front(records);
            self.counters.bisections += 1;
            FailOutcome::Bisected { attempt }
        } else {
            lane.retry.push_front(records);
            FailOutcome::Retrying { attempt }
        }
    }

    /// Records waiting or in flight, over all shards.
    pub fn backlog_len(&self) -> usize {
        self.shards
            .iter()
            .flat_map(|shard| shard.lanes.iter())
            .map(Lane::len)
            .sum()
    }

    pub fn in_flight_batches(&self) -> usize {
        self.in_flight.len()
    }

    /// The age of the oldest unfinished record (the mapping's IteratorAge), zero if none.
    pub fn iterator_age(&self, now: Instant) -> Duration {
        let oldest = self
            .shards
            .iter()
            .flat_map(|shard| shard.lanes.iter())
            .filter_map(Lane::oldest_written_at)
            .min();
        oldest.map_or(Duration::ZERO, |at| now.saturating_since(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::{ChromaId, LabelItem, ValidationStatus};
    use crate::services::table::{EventName, ItemImage, ItemKey};

    fn params() -> StreamParams {
        StreamParams {
            shards: 1,
            shard_split_interval: None,
            shards_max: 8,
            batch_size: 3,
            batching_window: Duration::from_secs(1),
            parallelization_factor: 1,
            retry_attempts_max: Some(2),
            bisect_on_failure: false,
            record_age_max: None,
            retention: Duration::from_secs(86_400),
        }
    }

    fn record(sequence: u64, word: u32, at: Instant) -> StreamRecord {
        let item = LabelItem {
            label: 0,
            validation_status: ValidationStatus::Pending,
            reasoning: sequence as u32,
            proposed_by: 0,
            consolidated_from: 0,
        };
        StreamRecord {
            sequence,
            written_at: at,
            event: EventName::Insert,
            key: ItemKey::Label {
                word: ChromaId::word(0, 1, word),
                label: 0,
            },
            old: None,
            new: Some(ItemImage::Label(item)),
        }
    }

    #[test]
    fn batch_waits_for_window_or_fills() {
        let mut stream = TableStream::new(params());
        let shard = stream.append(Instant(0), record(1, 1, Instant(0)));
        assert_eq!(
            stream.ready_at(shard),
            Some(Instant::ZERO.add(Duration::from_secs(1)))
        );
        assert!(stream.next_batch(Instant(10), shard).is_none());
        stream.append(Instant(10), record(2, 2, Instant(10)));
        stream.append(Instant(20), record(3, 3, Instant(20)));
        assert_eq!(stream.ready_at(shard), Some(Instant(20)));
        let batch = stream.next_batch(Instant(20), shard).unwrap();
        assert_eq!(batch.records.len(), 3);
        assert_eq!(stream.ready_at(shard), None, "one batch in flight per lane");
        assert_eq!(stream.complete(Instant(30), batch.id), 3);
        assert_eq!(stream.backlog_len(), 0);
    }

    /// Under a parallelization factor above 1, records of one item are handed out strictly in order,
    /// never two at once, while other items proceed in parallel.
    #[test]
    fn per_item_order_holds_under_parallelization() {
        let mut stream = TableStream::new(StreamParams {
            parallelization_factor: 4,
            batch_size: 2,
            batching_window: Duration::ZERO,
            ..params()
        });
        let mut sequence = 0;
        for round in 0..10u64 {
            for word in 1..=8 {
                sequence += 1;
                stream.append(Instant(round), record(sequence, word, Instant(round)));
            }
        }
        let mut seen: BTreeMap<ItemKey, u64> = BTreeMap::new();
        let mut in_flight_items: BTreeMap<ItemKey, BatchId> = BTreeMap::new();
        let mut concurrent_max = 0;
        let now = Instant(100);
        for step in 0..1000 {
            let mut batches = Vec::new();
            while let Some(batch) = stream.next_batch(now, ShardId(0)) {
                batches.push(batch);
            }
            if batches.is_empty() {
                break;
            }
            concurrent_max = concurrent_max.max(batches.len());
            for batch in &batches {
                for record in &batch.records {
                    assert!(
                        in_flight_items
                            .insert(record.key, batch.id)
                            .is_none_or(|b| b == batch.id)
                    );
                }
            }
            for (index, batch) in batches.iter().enumerate() {
                // Fail every third batch once to exercise retries.
                if (step + index) % 3 == 0 && batch.attempt == 0 {
                    stream.fail(now, batch.id);
                    in_flight_items.retain(|_, id| *id != batch.id);
                    continue;
                }
                for record in &batch.records {
                    let last = seen.insert(record.key, record.sequence).unwrap_or(0);
                    assert!(record.sequence > last, "item {:?} out of order", record.key);
                }
                in_flight_items.retain(|_, id| *id != batch.id);
                stream.complete(now, batch.id);
            }
        }
        assert_eq!(stream.backlog_len(), 0);
        assert_eq!(seen.len(), 8);
        assert!(concurrent_max > 1, "lanes ran in parallel");
        assert!(stream.counters().records_redelivered > 0);
    }

    #[test]
    fn failures_bisect_then_drop_after_retry_limit() {
        let mut stream = TableStream::new(StreamParams {
            bisect_on_failure: true,
            ..params()
        });
        for sequence in 1..=3 {
            stream.append(Instant(0), record(sequence, sequence as u32, Instant(0)));
        }
        let now = Instant(0);
        let batch = stream.next_batch(now, ShardId(0)).unwrap();
        assert_eq!(
            stream.fail(now, batch.id),
            FailOutcome::Bisected { attempt: 1 }
        );
        let first = stream.next_batch(now, ShardId(0)).unwrap();
        assert_eq!(first.records.len(), 1);
        assert_eq!(first.attempt, 1);
        assert_eq!(
            stream.fail(now, first.id),
            FailOutcome::Retrying { attempt: 2 }
        );
        let again = stream.next_batch(now, ShardId(0)).unwrap();
        assert_eq!(
            again.records, first.records,
            "a failed half blocks the lane"
        );
        assert_eq!(
            stream.fail(now, again.id),
            FailOutcome::Discarded { records: 1 }
        );
        let second = stream.next_batch(now, ShardId(0)).unwrap();
        assert_eq!(
            second
                .records
                .iter()
                .map(|r| r.sequence)
                .collect::<Vec<_>>(),
            vec![2, 3]
        );
        stream.complete(now, second.id);
        assert_eq!(stream.counters().records_dropped_by_retries, 1);
    }

    #[test]
    fn old_records_are_dropped_and_counted() {
        let mut stream = TableStream::new(StreamParams {
            record_age_max: Some(Duration(100)),
            ..params()
        });
        stream.append(Instant(0), record(1, 1, Instant(0)));
        stream.append(Instant(500), record(2, 2, Instant(500)));
        let later = Instant(500).add(Duration::from_secs(2));
        let batch = stream.next_batch(Instant(550), ShardId(0));
        assert!(
            batch.is_none(),
            "the window has not passed for the young record"
        );
        assert_eq!(stream.counters().records_dropped_by_age, 1);
        let batch = stream.next_batch(later, ShardId(0));
        assert!(batch.is_none(), "the second record aged out as well");
        assert_eq!(stream.counters().records_dropped_by_age, 2);
    }

    #[test]
    fn children_wait_for_their_parent() {
        let mut stream = TableStream::new(StreamParams {
            shard_split_interval: Some(Duration(1000)),
            batching_window: Duration::ZERO,
            ..params()
        });
        stream.append(Instant(0), record(1, 1, Instant(0)));
        let child = stream.append(Instant(1500), record(2, 1, Instant(1500)));
        assert_ne!(child, ShardId(0));
        assert_eq!(stream.counters().shard_splits, 1);
        assert_eq!(stream.ready_at(child), None, "parent not drained");
        let parent = stream.next_batch(Instant(1500), ShardId(0)).unwrap();
        assert_eq!(parent.records[0].sequence, 1);
        assert!(stream.next_batch(Instant(1500), child).is_none());
        stream.complete(Instant(1500), parent.id);
        let next = stream.next_batch(Instant(1500), child).unwrap();
        assert_eq!(next.records[0].sequence, 2);
    }
}
