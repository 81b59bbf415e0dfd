//! The simulated driver: runs the pipeline's state machines on the service models inside the event
//! engine. It turns every effect into an engine event after a sampled duration, performs the effect
//! on the service models when that event fires, and hands the answer back. It also starts
//! invocations (pollers of the upload queue, the stream and the two compaction queues), kills them
//! at their deadline, keeps lock heartbeats, samples queues, and tracks "labels visible". It injects
//! the faults of `[faults]` (compaction stalls, deaths right after the pointer write, stream
//! processor retries, throttled compaction starts), each drawn from its own named stream.
//!
//! Durations of a receipt's upload stages come from the receipt's own streams (`ocr`, receipt ...),
//! so old and new flow see the same draws (common random numbers). Depends on everything else in
//! the crate; nothing depends on it but `pipeline::run_trial`.

use super::compaction::{CompactionInvocation, CompactionNote, CompactionSettings, Outcome};
use super::config::{
    FailureReporting, PipelineConfig, QueueKind as ConfigQueueKind, StallPoint,
    UpsertMode as ConfigUpsertMode,
};
use super::effect::{
    CollectionOp, Effect, Message, MessageKind, ObjectKey, Response, RunState, TableRead,
    TableWrite, VersionId, Work,
};
use super::history::{Actor, CompactIds, History, HistoryEvent, PointerOutcome, PublishRecord};
use super::stream_processor::{ItemChange, RecordView, RoutingSettings, StreamProcessorInvocation};
use super::upload::{ReceiptPlan, UploadInvocation, UploadNote, UploadSettings};
use super::visibility::Visibility;
use super::{ReportDetail, TrialCounters};
use crate::engine::{Engine, Event as EngineEvent};
use crate::entities::{ChromaId, Collection, LabelFields, LabelItem, ReceiptIndex};
use crate::metrics::{Series, Stage, Stages};
use crate::random::{Stream, Streams, mix64};
use crate::services::collection::{EntryPatch, UpsertMode};
use crate::services::lambda::{Invocation, Lambda, LambdaParams};
use crate::services::lock::{LeaseLock, LockOwner as ServiceOwner};
use crate::services::object_store::{
    Etag, FileCache, HeadMove, PublishId, SnapshotParams, SnapshotStore, VersionId as StoreVersion,
};
use crate::services::queue::{Queue, QueueKind, QueueParams, ReceiptHandle, Received};
use crate::services::stream::{BatchId, ShardId, StreamParams, TableStream};
use crate::services::table::{
    CompactionRun, ItemImage, ItemKey, ReceiptShape, StreamRecord, Table,
};
use crate::time::{Duration, Instant};
use crate::workload::{Receipt, WordRef, chance};
use std::collections::BTreeMap;

/// The most effects one step may perform without time passing (zero-duration effects).
const SYNCHRONOUS_EFFECTS_MAX: u32 = 100_000;
/// Interval of queue samples (doubled whenever the sample buffer fills).
const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// Names of the event kinds counted in `Simulation::events_by_kind`.
pub const EVENT_KINDS: [&str; 9] = [
    "arrival",
    "upload_poll",
    "stream_poll",
    "queue_poll",
    "upload_step",
    "stream_processor_step",
    "compaction_step",
    "kill",
    "heartbeat",
];

/// The three functions.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Function {
    Upload,
    StreamProcessor,
    Compaction,
}

/// Engine events of a trial.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Arrival(ReceiptIndex),
    UploadPoll,
    StreamPoll,
    QueuePoll(Collection),
    /// The outstanding effect of an invocation completes.
    Step {
        function: Function,
        slot: u32,
        generation: u32,
    },
    /// An invocation's deadline.
    Kill {
        function: Function,
        slot: u32,
        generation: u32,
    },
    /// A lock heartbeat of a compaction invocation.
    Heartbeat {
        slot: u32,
        generation: u32,
    },
}

impl EngineEvent for Event {
    #[inline]
    fn digest(&self) -> u64 {
        let function_tag = |function: Function| function as u64;
        match *self {
            Event::Arrival(receipt) => mix64(1 ^ u64::from(receipt) << 8),
            Event::UploadPoll => 2,
            Event::StreamPoll => 3,
            Event::QueuePoll(collection) => 4 ^ (collection as u64) << 8,
            Event::Step {
                function,
                slot,
                generation,
            } => mix64(
                5 ^ function_tag(function) << 8
                    ^ u64::from(slot) << 16
                    ^ u64::from(generation) << 40,
            ),
            Event::Kill {
                function,
                slot,
                generation,
            } => mix64(
                6 ^ function_tag(function) << 8
                    ^ u64::from(slot) << 16
                    ^ u64::from(generation) << 40,
            ),
            Event::Heartbeat { slot, generation } => {
                mix64(7 ^ u64::from(slot) << 16 ^ u64::from(generation) << 40)
            }
        }
    }
    #[inline]
    fn actor(&self) -> u32 {
        match *self {
            Event::Arrival(_) | Event::UploadPoll => 0,
            Event::StreamPoll => 1,
            Event::QueuePoll(collection) => 2 + collection as u32,
            // An invocation is one actor, its heartbeats included; slots are reused, so the
            // numbers stay small.
            Event::Step { function, slot, .. } | Event::Kill { function, slot, .. } => {
                4 + slot.min(ACTOR_SLOTS_MAX) * 3 + function as u32
            }
            Event::Heartbeat { slot, .. } => {
                4 + slot.min(ACTOR_SLOTS_MAX) * 3 + Function::Compaction as u32
            }
        }
    }
}

/// Invocation slots beyond this share one actor number.
const ACTOR_SLOTS_MAX: u32 = 1 << 20;

/// Slots for running invocations, reused; a generation tells stale events apart.
struct Slots<T> {
    /// Boxed so that taking a running invocation out and back moves a pointer, not the state.
    entries: Vec<(u32, Option<Box<T>>)>,
    free: Vec<u32>,
}

impl<T> Slots<T> {
    fn new() -> Slots<T> {
        Slots {
            entries: Vec::new(),
            free: Vec::new(),
        }
    }
    fn insert(&mut self, value: T) -> (u32, u32) {
        let value = Box::new(value);
        if let Some(slot) = self.free.pop() {
            let entry = &mut self.entries[slot as usize];
            assert!(entry.1.is_none());
            entry.0 += 1;
            entry.1 = Some(value);
            (slot, entry.0)
        } else {
            self.entries.push((0, Some(value)));
            ((self.entries.len() - 1) as u32, 0)
        }
    }
    /// Takes the value out if the generation matches.
    fn take(&mut self, slot: u32, generation: u32) -> Option<Box<T>> {
        let entry = self.entries.get_mut(slot as usize)?;
        if entry.0 != generation {
            return None;
        }
        entry.1.take()
    }
    fn put_back(&mut self, slot: u32, value: Box<T>) {
        let entry = &mut self.entries[slot as usize];
        assert!(entry.1.is_none());
        entry.1 = Some(value);
    }
    fn release(&mut self, slot: u32) {
        assert!(self.entries[slot as usize].1.is_none());
        self.free.push(slot);
    }
    fn get(&self, slot: u32, generation: u32) -> Option<&T> {
        let entry = self.entries.get(slot as usize)?;
        if entry.0 != generation {
            return None;
        }
        entry.1.as_deref()
    }
    fn live(&self) -> usize {
        self.entries
            .iter()
            .filter(|entry| entry.1.is_some())
            .count()
    }
}

struct UploadSlot {
    invocation: Invocation,
    machine: UploadInvocation,
    handles: Vec<(ReceiptIndex, ReceiptHandle)>,
    pending: Option<Effect>,
}

struct ProcessorSlot {
    invocation: Invocation,
    machine: StreamProcessorInvocation,
    batch: BatchId,
    pending: Option<Effect>,
}

struct CompactionSlot {
    invocation: Invocation,
    machine: CompactionInvocation,
    handles: Vec<ReceiptHandle>,
    pending: Option<Effect>,
    working_copy: Option<crate::services::object_store::WorkingCopy>,
    published: Option<PublishId>,
    publish_record: Option<usize>,
    heartbeat_owner: Option<ServiceOwner>,
    /// An injected stall not yet taken: it delays the effect at the configured stall point.
    stall: Option<Duration>,
}

/// One named stream per injected fault, so that turning one fault on shifts no other draw.
struct FaultStreams {
    stall: Stream,
    kill_after_pointer: Stream,
    stream_retry: Stream,
    throttle: Stream,
}

/// Whether an injected fault with this share strikes (no draw when the fault is off).
fn strikes(stream: &mut Stream, share: f64) -> bool {
    share > 0.0 && chance(stream, share)
}

/// Per-receipt progress.
#[derive(Copy, Clone, Debug, Default)]
pub struct Progress {
    pub arrived: bool,
    pub started: bool,
    pub saved_at: Option<Instant>,
    pub finished: bool,
    pub run_id: u32,
    /// Bit per collection: the delta of the current run was uploaded.
    pub deltas: u8,
}

/// Everything one trial holds while it runs.
pub struct Simulation<'a> {
    pub config: &'a PipelineConfig,
    pub receipts: &'a [Receipt],
    streams: Streams,
    pub engine: Engine<Event>,
    pub table: Table,
    pub stream: TableStream,
    pub upload_queue: Queue<ReceiptIndex>,
    pub queues: [Queue<Message>; 2],
    pub upload_lambda: Lambda,
    pub processor_lambda: Lambda,
    pub compaction_lambda: Lambda,
    pub locks: [LeaseLock; 2],
    pub stores: [SnapshotStore; 2],
    caches: BTreeMap<u64, [FileCache; 2]>,
    uploads: Slots<UploadSlot>,
    processors: Slots<ProcessorSlot>,
    compactions: Slots<CompactionSlot>,
    poll_at: [Option<Instant>; 4],
    /// When each compaction mapping's batching window opened, if it is open.
    window_started: [Option<Instant>; 2],
    pub progress: Vec<Progress>,
    pub visibility: Visibility,
    pub stages: Stages,
    /// Whether queues are sampled into `series` (not for brief reports).
    sampling: bool,
    /// Scratch space of the queue pollers, reused from receive to receive.
    received_uploads: Vec<Received<ReceiptIndex>>,
    received_messages: Vec<Received<Message>>,
    pub series: [Series; 3],
    pub history: History,
    pub counters: TrialCounters,
    /// Events handled by kind, in the order of `EVENT_KINDS`.
    pub events_by_kind: [u64; 9],
    processor_stream: Stream,
    compaction_stream: Stream,
    faults: FaultStreams,
    upload_settings: UploadSettings,
    routing: RoutingSettings,
    compaction_settings: CompactionSettings,
    upload_records: Vec<StreamRecord>,
    views: Vec<RecordView>,
    scratch_ids: Vec<ChromaId>,
}

fn queue_params(config: &PipelineConfig) -> QueueParams {
    let queues = &config.queues;
    QueueParams {
        kind: match queues.kind {
            ConfigQueueKind::Fifo => QueueKind::Fifo,
            ConfigQueueKind::Standard => QueueKind::Standard {
                duplicate_share: queues.duplicate_share,
            },
        },
        visibility_timeout: queues.visibility_timeout,
        receive_limit: Some(queues.receive_limit),
        retention: queues.retention,
        deduplication_window: queues.deduplication_window,
    }
}

fn lambda_params(
    concurrency: u32,
    timeout: Duration,
    cold_start_share: f64,
    cold_start: &crate::distribution::DurationDist,
) -> LambdaParams {
    LambdaParams {
        reserved_concurrency: concurrency,
        timeout,
        cold_start_share,
        cold_start_duration: cold_start.clone(),
        container_idle_max: None,
    }
}

impl<'a> Simulation<'a> {
    pub fn new(
        config: &'a PipelineConfig,
        receipts: &'a [Receipt],
        engine: Engine<Event>,
        history: History,
        detail: ReportDetail,
    ) -> Self {
        let streams = Streams::new(config.seed);
        let stream_params = StreamParams {
            shards: config.stream.shards,
            shard_split_interval: None,
            shards_max: config.stream.shards,
            batch_size: config.stream.batch_size,
            batching_window: config.stream.batching_window,
            parallelization_factor: config.stream.parallelization_factor,
            retry_attempts_max: Some(config.stream.retry_limit),
            bisect_on_failure: config.stream.bisect_on_error,
            record_age_max: Some(config.stream.record_age_max),
            retention: Duration::from_secs(86_400),
        };
        let upload_queue_params = QueueParams {
            kind: QueueKind::Standard {
                duplicate_share: 0.0,
            },
            visibility_timeout: config.upload.queue_visibility_timeout,
            receive_limit: Some(config.upload.queue_receive_limit),
            retention: Duration::from_secs(4 * 86_400),
            deduplication_window: Duration::from_secs(300),
        };
        let snapshot_params = SnapshotParams {
            version_resolution: config.compaction.version_id_resolution,
            keep_versions: config.store.keep_versions as usize,
            deltas_window: 4096,
            deltas_max: 16_384,
        };
        let compaction = &config.compaction;
        Simulation {
            config,
            receipts,
            streams,
            engine,
            table: Table::with_capacity(receipts.len()),
            stream: TableStream::new(stream_params),
            upload_queue: Queue::new(upload_queue_params, streams.stream("upload-queue")),
            queues: [
                Queue::new(queue_params(config), streams.stream("lines-queue")),
                Queue::new(queue_params(config), streams.stream("words-queue")),
            ],
            upload_lambda: Lambda::new(
                lambda_params(
                    config.upload.concurrency,
                    config.upload.timeout,
                    config.upload.cold_start_share,
                    &config.upload.cold_start,
                ),
                streams.stream("upload-lambda"),
            ),
            processor_lambda: Lambda::new(
                lambda_params(
                    config.stream_processor.reserved_concurrency,
                    config.stream_processor.timeout,
                    config.stream_processor.cold_start_share,
                    &config.stream_processor.cold_start,
                ),
                streams.stream("stream-processor-lambda"),
            ),
            compaction_lambda: Lambda::new(
                lambda_params(
                    compaction.reserved_concurrency,
                    compaction.timeout,
                    compaction.cold_start_share,
                    &compaction.cold_start,
                ),
                streams.stream("compaction-lambda"),
            ),
            locks: [LeaseLock::new(), LeaseLock::new()],
            stores: [
                SnapshotStore::new(Collection::Lines, snapshot_params.clone()),
                SnapshotStore::new(Collection::Words, snapshot_params),
            ],
            caches: BTreeMap::new(),
            uploads: Slots::new(),
            processors: Slots::new(),
            compactions: Slots::new(),
            poll_at: [None; 4],
            window_started: [None; 2],
            progress: vec![Progress::default(); receipts.len()],
            visibility: Visibility::new(receipts.len()),
            stages: match detail {
                ReportDetail::Full => Stages::new(),
                ReportDetail::Brief => Stages::off(),
            },
            sampling: detail == ReportDetail::Full,
            received_uploads: Vec::new(),
            received_messages: Vec::new(),
            series: [
                Series::new(SAMPLE_INTERVAL),
                Series::new(SAMPLE_INTERVAL),
                Series::new(SAMPLE_INTERVAL),
            ],
            history,
            counters: TrialCounters::default(),
            events_by_kind: [0; 9],
            processor_stream: streams.stream("stream-processor"),
            compaction_stream: streams.stream("compaction"),
            faults: FaultStreams {
                stall: streams.stream("fault-compaction-stall"),
                kill_after_pointer: streams.stream("fault-kill-after-pointer"),
                stream_retry: streams.stream("fault-stream-retry"),
                throttle: streams.stream("fault-throttle"),
            },
            upload_settings: UploadSettings {
                flow: config.flow,
                wait_poll_period: config.wait.poll_period,
                wait_cap: config.wait.cap,
                delta_upload_error: config.upload.delta_upload_error,
                delta_upload_tries_max: config.upload.delta_upload_tries_max,
            },
            routing: RoutingSettings {
                other_inserts: config.stream_processor.other_inserts,
                run_completed_message: config.stream_processor.run_completed_message,
                message_group: config.stream_processor.message_group,
                send_batch_size: config.stream_processor.send_batch_size,
            },
            compaction_settings: CompactionSettings {
                lock_lease: compaction.lock_lease,
                heartbeat_interval: compaction
                    .heartbeat_enabled
                    .then_some(compaction.heartbeat_interval),
                publish_lock_retry_delays: compaction.publish_lock_retry_delays.as_slice().into(),
                pointer_promotion: compaction.pointer_promotion,
                missing_id: compaction.missing_id,
                mark_runs: compaction.mark_runs,
                in_batch_ordering: compaction.in_batch_ordering,
                deduplicate: compaction.deduplicate,
                sync_from_table_on_merge: compaction.sync_from_table_on_merge,
            },
            upload_records: Vec::with_capacity(64),
            views: Vec::with_capacity(64),
            scratch_ids: Vec::with_capacity(256),
        }
    }

    /// Schedules every arrival and the first sample, then runs the engine until it stops.
    pub fn run(&mut self) {
        // Arrivals are scheduled one at a time, each by the one before, to keep the queue small.
        if let Some(first) = self.receipts.first() {
            self.engine
                .schedule_at(first.arrival_instant(), Event::Arrival(first.index));
        }
        while let Some((now, event)) = self.engine.next() {
            self.handle(now, event);
        }
        self.engine.assert_accounted();
    }

    fn handle(&mut self, now: Instant, event: Event) {
        let kind = match event {
            Event::Arrival(_) => 0,
            Event::UploadPoll => 1,
            Event::StreamPoll => 2,
            Event::QueuePoll(_) => 3,
            Event::Step { function, .. } => 4 + function as usize,
            Event::Kill { .. } => 7,
            Event::Heartbeat { .. } => 8,
        };
        self.events_by_kind[kind] += 1;
        // Queues are sampled at the first event due, so sampling adds no events of its own.
        if self.sampling && self.series[0].due(now) {
            self.sample(now);
        }
        match event {
            Event::Arrival(receipt) => self.arrive(now, receipt),
            Event::UploadPoll => {
                if self.take_poll(0, now) {
                    self.poll_uploads(now);
                }
            }
            Event::StreamPoll => {
                if self.take_poll(1, now) {
                    self.poll_stream(now);
                }
            }
            Event::QueuePoll(collection) => {
                if self.take_poll(2 + collection.index(), now) {
                    self.poll_queue(now, collection);
                }
            }
            Event::Step {
                function,
                slot,
                generation,
            } => match function {
                Function::Upload => self.step_upload(now, slot, generation),
                Function::StreamProcessor => self.step_processor(now, slot, generation),
                Function::Compaction => self.step_compaction(now, slot, generation),
            },
            Event::Kill {
                function,
                slot,
                generation,
            } => self.kill(now, function, slot, generation),
            Event::Heartbeat { slot, generation } => self.heartbeat(now, slot, generation),
        }
    }

    /// Whether a poll event at `now` is the one poller `index` waits for; a superseded or
    /// duplicate poll event is skipped (every poll computes the next one it needs).
    fn take_poll(&mut self, index: usize, now: Instant) -> bool {
        if self.poll_at[index] == Some(now) {
            self.poll_at[index] = None;
            true
        } else {
            false
        }
    }

    /// Wakes poller `index` (0 upload, 1 stream, 2/3 queues) at `at` unless it wakes earlier.
    fn wake(&mut self, index: usize, at: Instant) {
        let at = at.max(self.engine.now());
        if self.poll_at[index].is_some_and(|scheduled| scheduled <= at) {
            return;
        }
        self.poll_at[index] = Some(at);
        let event = match index {
            0 => Event::UploadPoll,
            1 => Event::StreamPoll,
            2 => Event::QueuePoll(Collection::Lines),
            _ => Event::QueuePoll(Collection::Words),
        };
        self.engine.schedule_at(at, event);
    }

    fn sample(&mut self, now: Instant) {
        let depths = [
            (self.upload_queue.depth(), self.upload_queue.oldest_age(now)),
            (self.queues[0].depth(), self.queues[0].oldest_age(now)),
            (self.queues[1].depth(), self.queues[1].oldest_age(now)),
        ];
        for (series, (depth, age)) in self.series.iter_mut().zip(depths) {
            series.record(now, depth as u64, age);
        }
    }

    // ----- arrivals and the upload Lambda -----

    fn arrive(&mut self, now: Instant, receipt: ReceiptIndex) {
        if let Some(next) = self.receipts.get(receipt as usize + 1) {
            self.engine
                .schedule_at(next.arrival_instant(), Event::Arrival(next.index));
        }
        self.progress[receipt as usize].arrived = true;
        let digest = mix64(u64::from(receipt));
        self.upload_queue.send(now, receipt, None, digest);
        self.history.record(
            now,
            Actor::Workload,
            HistoryEvent::Arrival,
            Some(receipt),
            &[],
            String::new,
        );
        self.wake(0, now);
    }

    fn plan(&self, receipt: ReceiptIndex) -> ReceiptPlan {
        let shape = &self.receipts[receipt as usize];
        ReceiptPlan {
            receipt,
            has_labels: !shape.labels.is_empty(),
            has_changed_labels: shape.labels.iter().any(|label| label.change.is_some()),
            has_merchant_correction: shape.merchant_correction.is_some(),
        }
    }

    fn poll_uploads(&mut self, now: Instant) {
        let batch_size = self.config.upload.batch_size as usize;
        for _ in 0..self.config.upload.concurrency {
            if !self.upload_lambda.has_capacity() {
                return;
            }
            if self.upload_queue.next_visible_at(now) != Some(now) {
                break;
            }
            let dead_before = self.upload_queue.dead_letters().len();
            let mut received = std::mem::take(&mut self.received_uploads);
            self.upload_queue
                .receive_into(now, batch_size, &mut received);
            if !self.history.filter.is_off() && self.upload_queue.dead_letters().len() > dead_before
            {
                for index in dead_before..self.upload_queue.dead_letters().len() {
                    let receipt = self.upload_queue.dead_letters()[index].body;
                    self.history.record(
                        now,
                        Actor::Workload,
                        HistoryEvent::DeadLettered,
                        Some(receipt),
                        &[],
                        || "upload".to_string(),
                    );
                }
            }
            let handles: Vec<(ReceiptIndex, ReceiptHandle)> = received
                .iter()
                .map(|message| (message.body, message.handle))
                .collect();
            self.received_uploads = received;
            if handles.is_empty() {
                break;
            }
            let invocation = self.upload_lambda.try_start(now).expect("capacity checked");
            let plans = handles
                .iter()
                .map(|(receipt, _)| self.plan(*receipt))
                .collect();
            let start = now.add(invocation.cold_start);
            let machine = UploadInvocation::new(start, self.upload_settings, plans);
            let slot = UploadSlot {
                invocation,
                machine,
                handles,
                pending: None,
            };
            let (slot, generation) = self.uploads.insert(slot);
            self.advance_upload(start, slot, generation);
        }
        if let Some(at) = self.upload_queue.next_visible_at(now)
            && at > now
        {
            self.wake(0, at);
        }
    }

    fn advance_upload(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = self.uploads.take(slot, generation) else {
            return;
        };
        for _ in 0..SYNCHRONOUS_EFFECTS_MAX {
            self.drain_upload_notes(now, &mut state);
            let Some(effect) = state.machine.poll_effect() else {
                break;
            };
            let receipt = state.machine.unfinished()[0].receipt;
            let duration = self.upload_duration(&effect, receipt);
            let deadline = state.invocation.deadline;
            if self.defer_effect(Function::Upload, slot, generation, now, duration, deadline) {
                state.pending = Some(effect);
                self.uploads.put_back(slot, state);
                return;
            }
            let response = self.perform_upload(now, &effect, receipt);
            state.machine.handle_response(now, response);
        }
        self.drain_upload_notes(now, &mut state);
        assert!(state.machine.is_done(), "an upload invocation stalled");
        self.upload_lambda.finish(now, state.invocation.id);
        self.uploads.release(slot);
        self.wake(0, now);
    }

    fn step_upload(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = self.uploads.take(slot, generation) else {
            return;
        };
        let effect = state
            .pending
            .take()
            .expect("a step has an outstanding effect");
        let receipt = state.machine.unfinished()[0].receipt;
        let response = self.perform_upload(now, &effect, receipt);
        state.machine.handle_response(now, response);
        self.uploads.put_back(slot, state);
        self.advance_upload(now, slot, generation);
    }

    fn drain_upload_notes(&mut self, now: Instant, state: &mut UploadSlot) {
        while let Some(note) = state.machine.poll_note() {
            match note {
                UploadNote::Started(receipt) => {
                    let arrival = self.receipts[receipt as usize].arrival_instant();
                    if !self.progress[receipt as usize].started {
                        self.stages
                            .record(Stage::UploadQueueWait, now.since(arrival));
                    }
                    self.progress[receipt as usize].started = true;
                    self.history.record(
                        now,
                        Actor::Upload {
                            invocation: state.invocation.id.0,
                        },
                        HistoryEvent::UploadStarted,
                        Some(receipt),
                        &[],
                        String::new,
                    );
                }
                UploadNote::Stage(_, stage, duration) => self.stages.record(stage, duration),
                UploadNote::DeltaLost(receipt, collection) => {
                    self.counters.deltas_lost += 1;
                    self.history.record(
                        now,
                        Actor::Upload {
                            invocation: state.invocation.id.0,
                        },
                        HistoryEvent::DeltaLost,
                        Some(receipt),
                        &[],
                        || collection.name().to_string(),
                    );
                }
                UploadNote::WaitCapped(_) => self.counters.waits_capped += 1,
                UploadNote::LabelsSaved(receipt) => {
                    self.progress[receipt as usize].saved_at = Some(now);
                    self.history.record(
                        now,
                        Actor::Upload {
                            invocation: state.invocation.id.0,
                        },
                        HistoryEvent::LabelsSaved,
                        Some(receipt),
                        &[],
                        String::new,
                    );
                }
                UploadNote::Finished(receipt) => {
                    let position = state
                        .handles
                        .iter()
                        .position(|(r, _)| *r == receipt)
                        .expect("a handle per receipt");
                    let (_, handle) = state.handles.remove(position);
                    if !self.upload_queue.delete(now, handle).is_deleted() {
                        self.counters.stale_deletes += 1;
                    }
                    self.progress[receipt as usize].finished = true;
                    self.visibility
                        .finish(now, receipt, &self.table, &self.stores);
                    self.history.record(
                        now,
                        Actor::Upload {
                            invocation: state.invocation.id.0,
                        },
                        HistoryEvent::UploadFinished,
                        Some(receipt),
                        &[],
                        String::new,
                    );
                }
            }
        }
    }

    fn receipt_stream(&self, name: &str, receipt: ReceiptIndex) -> Stream {
        self.streams.stream_indexed(name, u64::from(receipt))
    }

    fn upload_duration(&mut self, effect: &Effect, receipt: ReceiptIndex) -> Duration {
        let upload = &self.config.upload;
        let run = u64::from(self.progress[receipt as usize].run_id);
        match effect {
            Effect::Work(Work::Ocr) => upload.ocr.sample(&mut self.receipt_stream("ocr", receipt)),
            Effect::Work(Work::MerchantResolution) => upload
                .merchant_resolution
                .sample(&mut self.receipt_stream("merchant-resolution", receipt)),
            Effect::Work(Work::Embedding) => upload
                .embedding
                .sample(&mut self.receipt_stream("embedding", receipt)),
            Effect::Work(Work::Langgraph) => upload
                .langgraph
                .sample(&mut self.receipt_stream("langgraph", receipt)),
            Effect::Sleep(duration) => *duration,
            Effect::PutObject(ObjectKey::Delta { collection, .. }) => {
                let mut stream = self.streams.stream_indexed(
                    "delta-upload",
                    u64::from(receipt) << 8 | run << 1 | collection.index() as u64,
                );
                upload.delta_upload.sample(&mut stream)
            }
            // A GetItem is charged no time: the old flow's polls then cost one event each.
            Effect::TableRead(_) => Duration::ZERO,
            Effect::TableWrite(write) => {
                let kind = match write {
                    TableWrite::OcrResult { .. } => 0,
                    TableWrite::Metadata { .. } => 1,
                    TableWrite::RunInsert { .. } => 2,
                    TableWrite::ProposedLabels { .. } => 3,
                    TableWrite::ChangedLabels { .. } => 4,
                    TableWrite::MerchantCorrection { .. } => 5,
                    TableWrite::RunState { .. } => 6,
                };
                let mut stream = self
                    .streams
                    .stream_indexed("upload-table", u64::from(receipt) << 8 | run << 3 | kind);
                upload.table_operation.sample(&mut stream)
            }
            other => panic!("the upload Lambda does not ask for {other:?}"),
        }
    }

    fn perform_upload(&mut self, now: Instant, effect: &Effect, receipt: ReceiptIndex) -> Response {
        match effect {
            Effect::Work(_) | Effect::Sleep(_) => Response::Done,
            Effect::PutObject(ObjectKey::Delta {
                collection,
                receipt,
            }) => {
                let run = u64::from(self.progress[*receipt as usize].run_id);
                let mut stream = self.streams.stream_indexed(
                    "delta-error",
                    u64::from(*receipt) << 8 | run << 1 | collection.index() as u64,
                );
                if chance(&mut stream, self.config.upload.delta_upload_error_share) {
                    Response::Failed
                } else {
                    self.progress[*receipt as usize].deltas |= 1 << collection.index();
                    Response::Done
                }
            }
            Effect::TableRead(TableRead::RunState { receipt }) => {
                let run_id = self.progress[*receipt as usize].run_id;
                let run = self
                    .table
                    .run(*receipt, run_id)
                    .expect("the run was inserted");
                Response::RunState {
                    lines: run.lines_state,
                    words: run.words_state,
                }
            }
            Effect::TableWrite(write) => {
                self.write_table(now, *write);
                Response::Done
            }
            other => panic!("the upload Lambda does not ask for {other:?} (receipt {receipt})"),
        }
    }

    /// Performs one table write on the table model, collecting the stream records it produced.
    fn apply_table_write(
        &mut self,
        now: Instant,
        write: TableWrite,
        receipt: ReceiptIndex,
        records: &mut Vec<StreamRecord>,
    ) {
        let shape = &self.receipts[receipt as usize];
        match write {
            TableWrite::OcrResult { .. } => {
                if self.table.shape(receipt).is_none() {
                    let ocr = self.table.put_ocr(now, receipt, table_shape(shape));
                    if self.config.stream.ocr_records {
                        records.extend(ocr);
                    }
                }
            }
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
            } => {
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
            TableWrite::ProposedLabels { .. } => {
                for label in &shape.labels {
                    let word =
                        ChromaId::word(receipt, u32::from(label.line), u32::from(label.word));
                    records.extend(self.table.put_label(now, word, label.proposed_item()));
                }
            }
            TableWrite::ChangedLabels { .. } => {
                for label in &shape.labels {
                    let Some(item) = label.changed_item() else {
                        continue;
                    };
                    let word =
                        ChromaId::word(receipt, u32::from(label.line), u32::from(label.word));
                    if let Ok(record) = self.table.put_label_if_exists(now, word, item) {
                        records.extend(record);
                    }
                }
            }
            TableWrite::MerchantCorrection { .. } => {
                let merchant = shape.merchant_correction.expect("a correction is planned");
                records.extend(self.table.put_metadata(now, receipt, merchant));
            }
        }
    }

    /// Performs a table write, appends its stream records, and updates visibility and history.
    fn write_table(&mut self, now: Instant, write: TableWrite) {
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

    // ----- the stream processor -----

    /// The mapping takes a batch at once when one is ready (a busy poller goes straight on);
    /// otherwise it looks again on its polling cadence.
    fn wake_stream(&mut self, now: Instant) {
        if let Some((ready_at, _)) = self.stream.next_ready() {
            if ready_at <= now {
                self.wake(1, now);
            } else {
                let interval = self.config.stream.poll_interval.as_nanos();
                self.wake(
                    1,
                    Instant(ready_at.as_nanos().div_ceil(interval) * interval),
                );
            }
        }
    }

    fn poll_stream(&mut self, now: Instant) {
        // The shards present when the poll begins; a shard opened later waits for the next poll.
        let shard_count = self.stream.shard_count() as u32;
        'shards: for shard in (0..shard_count).map(ShardId) {
            if !self.stream.is_live(shard) {
                continue;
            }
            while self.processor_lambda.has_capacity() {
                if self.stream.ready_at(shard).is_none_or(|at| at > now) {
                    continue 'shards;
                }
                let Some(batch) = self.stream.next_batch(now, shard) else {
                    continue 'shards;
                };
                self.start_processor(now, batch);
            }
        }
        if self.processor_lambda.has_capacity() {
            self.wake_stream(now.add(Duration(1)));
        }
    }

    fn record_view(&self, record: &StreamRecord) -> RecordView {
        let receipt = record.key.receipt();
        let shape = &self.receipts[receipt as usize];
        let change = match record.key {
            ItemKey::Line(_) | ItemKey::Word(_) => ItemChange::Ocr,
            ItemKey::Metadata(_) => {
                let merchant = |image: Option<ItemImage>| match image {
                    Some(ItemImage::Metadata { merchant }) => Some(merchant),
                    _ => None,
                };
                ItemChange::Metadata {
                    old: merchant(record.old),
                    new: merchant(record.new),
                }
            }
            ItemKey::Run { .. } => {
                let states = |image: Option<ItemImage>| match image {
                    Some(ItemImage::Run(run)) => Some((run.lines_state, run.words_state)),
                    _ => None,
                };
                ItemChange::Run {
                    old: states(record.old),
                    new: states(record.new),
                }
            }
            ItemKey::Label { word, label } => {
                let item = |image: Option<ItemImage>| -> Option<LabelItem> {
                    match image {
                        Some(ItemImage::Label(item)) => Some(item),
                        _ => None,
                    }
                };
                let word = WordRef {
                    line: word.line_number() as u16,
                    word: word.word_number() as u16,
                };
                ItemChange::Label {
                    word,
                    label,
                    old: item(record.old),
                    new: item(record.new),
                }
            }
        };
        RecordView {
            sequence: record.sequence,
            event: record.event,
            receipt,
            image: shape.image,
            receipt_id: shape.receipt_id,
            change,
        }
    }

    fn start_processor(&mut self, now: Instant, batch: crate::services::stream::StreamBatch) {
        let invocation = self
            .processor_lambda
            .try_start(now)
            .expect("capacity checked");
        let mut views = std::mem::take(&mut self.views);
        views.clear();
        for record in &batch.records {
            self.stages
                .record(Stage::StreamLag, now.since(record.written_at));
            views.push(self.record_view(record));
        }
        let start = now.add(invocation.cold_start);
        let machine = StreamProcessorInvocation::new(start, &self.routing, &views);
        self.views = views;
        self.counters.dropped_inserts += machine.counts.dropped_inserts;
        self.counters.run_completed_failures += machine.counts.run_completed_failures;
        let (slot, generation) = self.processors.insert(ProcessorSlot {
            invocation,
            machine,
            batch: batch.id,
            pending: None,
        });
        self.advance_processor(start, slot, generation);
    }

    fn advance_processor(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = self.processors.take(slot, generation) else {
            return;
        };
        if let Some(effect) = state.machine.poll_effect() {
            let config = &self.config.stream_processor;
            let duration = match &effect {
                Effect::Work(Work::RouteRecords(records)) => {
                    let mut total = Duration::ZERO;
                    for _ in 0..*records {
                        total = total.saturating_add(
                            config.record_handling.sample(&mut self.processor_stream),
                        );
                    }
                    total
                }
                Effect::SendMessages { .. } => config.send_batch.sample(&mut self.processor_stream),
                other => panic!("the stream processor does not ask for {other:?}"),
            };
            state.pending = Some(effect);
            let at = now.max(self.engine.now()).add(duration);
            self.schedule_step(
                Function::StreamProcessor,
                slot,
                generation,
                at,
                state.invocation.deadline,
            );
            self.processors.put_back(slot, state);
            return;
        }
        assert!(state.machine.is_done());
        self.processor_lambda.finish(now, state.invocation.id);
        if self.stream_retried(now, &state) {
            self.stream.fail(now, state.batch);
        } else {
            self.stream.complete(now, state.batch);
        }
        self.processors.release(slot);
        self.wake_stream(now);
    }

    fn step_processor(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = self.processors.take(slot, generation) else {
            return;
        };
        let effect = state
            .pending
            .take()
            .expect("a step has an outstanding effect");
        if let Effect::SendMessages {
            collection,
            messages,
        } = effect
        {
            let fifo = self.config.queues.kind == ConfigQueueKind::Fifo;
            let actor = Actor::StreamProcessor {
                invocation: state.invocation.id.0,
            };
            let event = HistoryEvent::MessagesSent;
            self.record_messages(now, actor, event, collection, &messages, String::new);
            for message in messages {
                let group = fifo.then_some(message.group);
                let digest = message.content_digest();
                self.queues[collection.index()].send(now, message, group, digest);
            }
            self.wake_queue(now, collection);
        }
        state.machine.handle_response(now, Response::Done);
        self.processors.put_back(slot, state);
        self.advance_processor(now, slot, generation);
    }
}

impl Simulation<'_> {
    // ----- the compaction Lambda -----

    /// History records for the messages the last receive moved to the dead-letter queue.
    fn record_dead_letters(&mut self, now: Instant, collection: Collection, dead_before: usize) {
        if self.history.filter.is_off() {
            return;
        }
        let queue = &self.queues[collection.index()];
        for index in dead_before..queue.dead_letters().len() {
            let message = queue.dead_letters()[index].body;
            let ids = self.message_ids(&message);
            self.history.record(
                now,
                Actor::Queue { collection },
                HistoryEvent::DeadLettered,
                Some(message.receipt),
                ids.as_slice(),
                || describe_messages(collection, std::slice::from_ref(&message)),
            );
        }
    }

    /// Whether the mapping's batching window lets it receive now; otherwise the window is opened
    /// (or kept) and a poll is due when it closes.
    fn batching_window_open(&mut self, now: Instant, collection: Collection) -> bool {
        let window = self.config.queues.batching_window;
        let queue = &self.queues[collection.index()];
        let visible = queue.depth().saturating_sub(queue.in_flight());
        if window == Duration::ZERO || visible >= self.config.queues.batch_size as usize {
            self.window_started[collection.index()] = None;
            return false;
        }
        let started = *self.window_started[collection.index()].get_or_insert(now);
        let closes = started.add(window);
        if now >= closes {
            self.window_started[collection.index()] = None;
            return false;
        }
        self.wake(2 + collection.index(), closes);
        true
    }

    fn poll_queue(&mut self, now: Instant, collection: Collection) {
        let batch_size = self.config.queues.batch_size as usize;
        let queue_index = collection.index();
        for _ in 0..self.config.compaction.reserved_concurrency {
            if !self.compaction_lambda.has_capacity() {
                return;
            }
            if self.queues[queue_index].next_visible_at(now) != Some(now) {
                break;
            }
            if self.batching_window_open(now, collection) {
                return;
            }
            let dead_before = self.queues[queue_index].dead_letters().len();
            let mut received = std::mem::take(&mut self.received_messages);
            self.queues[queue_index].receive_into(now, batch_size, &mut received);
            self.record_dead_letters(now, collection, dead_before);
            if received.is_empty() || self.throttled(now, collection, &received) {
                self.received_messages = received;
                break;
            }
            let invocation = self
                .compaction_lambda
                .try_start(now)
                .expect("capacity checked");
            let mut messages = Vec::with_capacity(received.len());
            let mut handles = Vec::with_capacity(received.len());
            for message in received.drain(..) {
                self.stages
                    .record(Stage::QueueWait, now.since(message.sent_at));
                messages.push(message.body);
                handles.push(message.handle);
            }
            self.received_messages = received;
            let start = now.add(invocation.cold_start);
            let cache_versions = self.config.compaction.cache_versions as usize;
            self.caches
                .entry(invocation.container.0)
                .or_insert_with(|| {
                    [
                        FileCache::new(cache_versions),
                        FileCache::new(cache_versions),
                    ]
                });
            let actor = Actor::Compaction {
                invocation: invocation.id.0,
                collection,
            };
            self.history
                .record(now, actor, HistoryEvent::BatchReceived, None, &[], || {
                    describe_messages(collection, &messages)
                });
            let machine = CompactionInvocation::new(
                start,
                self.compaction_settings.clone(),
                collection,
                messages,
            );
            // A batch with nothing to apply ends at once, cold start or not.
            let start = if machine.is_done() { now } else { start };
            let stall = if machine.is_done() {
                None
            } else {
                self.draw_stall()
            };
            let slot = CompactionSlot {
                invocation,
                machine,
                handles,
                pending: None,
                working_copy: None,
                published: None,
                publish_record: None,
                heartbeat_owner: None,
                stall,
            };
            let (slot, generation) = self.compactions.insert(slot);
            self.advance_compaction(start, slot, generation);
        }
        if let Some(at) = self.queues[queue_index].next_visible_at(now)
            && at > now
        {
            self.wake(2 + queue_index, at);
        }
    }

    fn advance_compaction(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = self.compactions.take(slot, generation) else {
            return;
        };
        for _ in 0..SYNCHRONOUS_EFFECTS_MAX {
            self.drain_compaction_notes(now, &mut state);
            let Some(effect) = state.machine.poll_effect() else {
                break;
            };
            let duration = self
                .compaction_duration(&state, &effect)
                .saturating_add(self.take_stall(now, &mut state));
            let deadline = state.invocation.deadline;
            if self.defer_effect(
                Function::Compaction,
                slot,
                generation,
                now,
                duration,
                deadline,
            ) {
                state.pending = Some(effect);
                self.compactions.put_back(slot, state);
                return;
            }
            let response = self.perform_compaction(now, slot, generation, &mut state, &effect);
            state.machine.handle_response(now, response);
            let Some(survivor) = self.kill_after_pointer(now, slot, &effect, state) else {
                return;
            };
            state = survivor;
        }
        self.drain_compaction_notes(now, &mut state);
        assert!(state.machine.is_done(), "a compaction invocation stalled");
        self.report_outcomes(now, &state);
        let collection = state.machine.collection();
        if let Some(working_copy) = state.working_copy.take() {
            self.stores[collection.index()].discard(working_copy);
        }
        self.compaction_lambda.finish(now, state.invocation.id);
        self.compactions.release(slot);
        self.wake_queues_after(now, collection);
    }

    /// A compaction slot came free: the other collection's mapping looks first, for fairness.
    fn wake_queues_after(&mut self, now: Instant, finished: Collection) {
        let other = match finished {
            Collection::Lines => Collection::Words,
            Collection::Words => Collection::Lines,
        };
        self.wake_queue(now, other);
        self.wake_queue(now, finished);
    }

    /// Wakes a compaction mapping when its queue has something receivable and the function has
    /// room; a full function wakes both mappings when an invocation ends.
    fn wake_queue(&mut self, now: Instant, collection: Collection) {
        if !self.compaction_lambda.has_capacity() {
            return;
        }
        if let Some(at) = self.queues[collection.index()].next_visible_at(now) {
            self.wake(2 + collection.index(), at);
        }
    }

    fn step_compaction(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = self.compactions.take(slot, generation) else {
            return;
        };
        let effect = state
            .pending
            .take()
            .expect("a step has an outstanding effect");
        let response = self.perform_compaction(now, slot, generation, &mut state, &effect);
        state.machine.handle_response(now, response);
        let Some(state) = self.kill_after_pointer(now, slot, &effect, state) else {
            return;
        };
        self.compactions.put_back(slot, state);
        self.advance_compaction(now, slot, generation);
    }

    fn report_outcomes(&mut self, now: Instant, state: &CompactionSlot) {
        let collection = state.machine.collection();
        let queue = &mut self.queues[collection.index()];
        let any_failed = state.machine.outcomes().contains(&Outcome::Failed);
        let whole_batch = self.config.compaction.failure_reporting == FailureReporting::WholeBatch;
        let mut deleted = 0u64;
        let mut failed = 0u64;
        for (outcome, handle) in state.machine.outcomes().iter().zip(&state.handles) {
            let delete = match outcome {
                Outcome::Done => !(whole_batch && any_failed),
                Outcome::Failed => false,
                Outcome::Open => unreachable!("a finished invocation decided every message"),
            };
            if delete {
                if queue.delete(now, *handle).is_deleted() {
                    deleted += 1;
                } else {
                    self.counters.stale_deletes += 1;
                }
            } else {
                queue.fail(now, *handle, false);
                failed += 1;
            }
        }
        self.counters.messages_failed += failed;
        let actor = Actor::Compaction {
            invocation: state.invocation.id.0,
            collection,
        };
        if deleted > 0 {
            self.history
                .record(now, actor, HistoryEvent::MessagesDeleted, None, &[], || {
                    deleted.to_string()
                });
        }
        if failed > 0 {
            self.history
                .record(now, actor, HistoryEvent::MessagesFailed, None, &[], || {
                    failed.to_string()
                });
        }
    }

    fn drain_compaction_notes(&mut self, now: Instant, state: &mut CompactionSlot) {
        let collection = state.machine.collection();
        let actor = Actor::Compaction {
            invocation: state.invocation.id.0,
            collection,
        };
        while let Some(note) = state.machine.poll_note() {
            let event = match note {
                CompactionNote::Stage(stage, duration) => {
                    self.stages.record(stage, duration);
                    continue;
                }
                CompactionNote::BusyAtQuickCheck => {
                    self.counters.busy_at_quick_check += 1;
                    HistoryEvent::BusyAtQuickCheck
                }
                CompactionNote::BusyAtPublish => {
                    self.counters.busy_at_publish += 1;
                    HistoryEvent::BusyAtPublish
                }
                CompactionNote::PointerMovedAtQuickCheck => {
                    self.counters.pointer_moved_at_quick_check += 1;
                    HistoryEvent::PointerMoved
                }
                CompactionNote::PointerMovedAtPublish => {
                    self.counters.pointer_moved_at_publish += 1;
                    HistoryEvent::PointerMoved
                }
                CompactionNote::PointerConflict => {
                    self.counters.pointer_conflicts += 1;
                    HistoryEvent::PointerConflict
                }
                CompactionNote::DeltaLost(index) => {
                    self.counters.deltas_unreadable += 1;
                    let receipt = state.machine.messages()[index].receipt;
                    self.history.record(
                        now,
                        actor,
                        HistoryEvent::DeltaLost,
                        Some(receipt),
                        &[],
                        || collection.name().to_string(),
                    );
                    continue;
                }
                CompactionNote::EmbeddingNotFound(index) => {
                    self.counters.embedding_not_found += 1;
                    let message = state.machine.messages()[index];
                    let ids = message_word(&message);
                    self.history.record(
                        now,
                        actor,
                        HistoryEvent::EmbeddingNotFound,
                        Some(message.receipt),
                        ids.as_slice(),
                        String::new,
                    );
                    continue;
                }
                CompactionNote::MetadataDropped(_) => {
                    self.counters.metadata_dropped += 1;
                    continue;
                }
                CompactionNote::Published { .. } => {
                    self.counters.publishes[collection.index()] += 1;
                    HistoryEvent::PointerPromoted
                }
                CompactionNote::SnapshotMissing => {
                    self.counters.snapshot_missing += 1;
                    continue;
                }
            };
            self.history
                .record(now, actor, event, None, &[], String::new);
        }
    }

    fn cache(&self, state: &CompactionSlot, collection: Collection) -> &FileCache {
        &self.caches[&state.invocation.container.0][collection.index()]
    }

    /// The publish a version names for this invocation: its cache's copy, else a download.
    fn cached_publish(
        &self,
        state: &CompactionSlot,
        collection: Collection,
        version: Option<VersionId>,
    ) -> Option<(PublishId, bool)> {
        let store = &self.stores[collection.index()];
        let version = StoreVersion(version.unwrap_or(StoreVersion::INITIAL.0));
        if let Some(publish) = self.cache(state, collection).get(store, version) {
            return Some((publish, true));
        }
        store.resolve(version).ok().map(|publish| (publish, false))
    }

    fn compaction_duration(&mut self, state: &CompactionSlot, effect: &Effect) -> Duration {
        let config = self.config;
        let store_config = &config.store;
        let compaction = &config.compaction;
        let stream = &mut self.compaction_stream;
        match effect {
            Effect::ReadPointer(_) | Effect::WritePointer { .. } => {
                store_config.pointer_operation.sample(stream)
            }
            Effect::LockAcquire { .. } | Effect::LockRelease { .. } => {
                compaction.lock_operation.sample(stream)
            }
            Effect::LockHeartbeat { .. } => Duration::ZERO,
            Effect::CacheLoad {
                collection,
                version,
            } => match self.cached_publish(state, *collection, *version) {
                Some((_, true)) | None => Duration::ZERO,
                Some((publish, false)) => {
                    let entries = self.stores[collection.index()].entry_count(publish);
                    let stream = &mut self.compaction_stream;
                    store_config.download_fixed.sample(stream).saturating_add(
                        store_config.transfer(entries, store_config.download_bytes_per_s),
                    )
                }
            },
            Effect::OpenWorkingCopy {
                collection,
                version,
            } => {
                let (entries, cached) = match self.cached_publish(state, *collection, *version) {
                    Some((publish, cached)) => {
                        (self.stores[collection.index()].entry_count(publish), cached)
                    }
                    None => (0, true),
                };
                let stream = &mut self.compaction_stream;
                let mut duration = compaction
                    .copy
                    .sample(stream)
                    .saturating_add(store_config.transfer(entries, store_config.copy_bytes_per_s));
                if !cached {
                    duration = duration
                        .saturating_add(store_config.download_fixed.sample(stream))
                        .saturating_add(
                            store_config.transfer(entries, store_config.download_bytes_per_s),
                        );
                }
                duration
            }
            Effect::GetObject(ObjectKey::Delta { .. }) => compaction.delta_download.sample(stream),
            Effect::Collection(_) => Duration::ZERO,
            Effect::TableRead(_) | Effect::TableWrite(_) => {
                config.upload.table_operation.sample(stream)
            }
            Effect::Work(Work::Apply { ids }) => compaction
                .apply
                .sample(stream)
                .saturating_add(compaction.apply_per_id.saturating_mul(*ids)),
            Effect::Sleep(duration) => *duration,
            Effect::PutObject(ObjectKey::Snapshot { collection, .. }) => {
                let store = &self.stores[collection.index()];
                let working_copy = state
                    .working_copy
                    .as_ref()
                    .expect("a working copy to upload");
                let entries =
                    store.entry_count(working_copy.base()) + working_copy.overlay_len() as u64;
                let stream = &mut self.compaction_stream;
                store_config
                    .upload_fixed
                    .sample(stream)
                    .saturating_add(store_config.transfer(entries, store_config.upload_bytes_per_s))
            }
            Effect::CacheStore { .. } => compaction.write_back.sample(stream),
            other => panic!("the compaction does not ask for {other:?}"),
        }
    }

    /// Pointer reads, cache loads (a download on a miss) and the copy into a working copy.
    fn perform_snapshot_read(
        &mut self,
        now: Instant,
        state: &mut CompactionSlot,
        effect: &Effect,
    ) -> Response {
        match effect {
            Effect::ReadPointer(collection) => {
                let pointer = self.stores[collection.index()].read_pointer();
                Response::Pointer {
                    version: Some(pointer.version.0),
                    etag: pointer.etag.0,
                }
            }
            Effect::CacheLoad {
                collection,
                version,
            } => match self.cached_publish(state, *collection, *version) {
                Some((publish, cached)) => {
                    let store = &mut self.stores[collection.index()];
                    if !cached {
                        let version = StoreVersion(version.unwrap_or(0));
                        let cache = &mut self
                            .caches
                            .get_mut(&state.invocation.container.0)
                            .expect("a cache per container")[collection.index()];
                        cache.put(store, now, version, publish);
                    }
                    Response::Entries(store.entry_count(publish))
                }
                None => Response::Failed,
            },
            Effect::OpenWorkingCopy {
                collection,
                version,
            } => match self.cached_publish(state, *collection, *version) {
                Some((publish, _)) => {
                    let store = &mut self.stores[collection.index()];
                    assert!(state.working_copy.is_none());
                    state.working_copy = Some(store.checkout(publish));
                    Response::Entries(store.entry_count(publish))
                }
                None => Response::Failed,
            },
            other => unreachable!("not a snapshot read: {other:?}"),
        }
    }

    /// Lock acquisition, release and the start or stop of heartbeats.
    fn perform_lock(
        &mut self,
        now: Instant,
        slot: u32,
        generation: u32,
        state: &mut CompactionSlot,
        effect: &Effect,
    ) -> Response {
        match effect {
            Effect::LockAcquire { collection, lease } => {
                match self.locks[collection.index()].acquire(now, *lease) {
                    Ok(owner) => Response::Lock {
                        owner: Some(owner.0),
                    },
                    Err(_) => Response::Lock { owner: None },
                }
            }
            Effect::LockRelease { collection, owner } => {
                self.locks[collection.index()].release(now, ServiceOwner(*owner));
                Response::Done
            }
            Effect::LockHeartbeat {
                owner, interval, ..
            } => {
                if *interval > Duration::ZERO {
                    state.heartbeat_owner = Some(ServiceOwner(*owner));
                    self.engine
                        .schedule_at(now.add(*interval), Event::Heartbeat { slot, generation });
                } else {
                    state.heartbeat_owner = None;
                }
                Response::Done
            }
            other => unreachable!("not a lock operation: {other:?}"),
        }
    }

    fn perform_compaction(
        &mut self,
        now: Instant,
        slot: u32,
        generation: u32,
        state: &mut CompactionSlot,
        effect: &Effect,
    ) -> Response {
        match effect {
            Effect::Work(_) | Effect::Sleep(_) => Response::Done,
            Effect::ReadPointer(_) | Effect::CacheLoad { .. } | Effect::OpenWorkingCopy { .. } => {
                self.perform_snapshot_read(now, state, effect)
            }
            Effect::LockAcquire { .. }
            | Effect::LockRelease { .. }
            | Effect::LockHeartbeat { .. } => {
                self.perform_lock(now, slot, generation, state, effect)
            }
            Effect::GetObject(ObjectKey::Delta {
                collection,
                receipt,
            }) => {
                let uploaded =
                    self.progress[*receipt as usize].deltas & (1 << collection.index()) != 0;
                if uploaded && self.table.shape(*receipt).is_some() {
                    Response::Done
                } else {
                    Response::Failed
                }
            }
            Effect::Collection(operation) => self.perform_collection(now, state, *operation),
            Effect::TableRead(TableRead::WordLabels { receipt, word }) => {
                let id = ChromaId::word(*receipt, u32::from(word.line), u32::from(word.word));
                Response::WordLabels(self.table.derived_label_fields(id))
            }
            Effect::TableRead(TableRead::ReceiptState { .. }) => Response::Done,
            Effect::TableWrite(write) => {
                self.write_table(now, *write);
                Response::Done
            }
            Effect::PutObject(ObjectKey::Snapshot { collection, .. }) => {
                self.publish(now, state, *collection)
            }
            Effect::WritePointer {
                collection,
                version,
                expected_etag,
            } => self.write_pointer(now, state, *collection, *version, *expected_etag),
            Effect::CacheStore {
                collection,
                version,
            } => {
                if let Some(publish) = state.published {
                    let store = &mut self.stores[collection.index()];
                    if let Some(caches) = self.caches.get_mut(&state.invocation.container.0) {
                        caches[collection.index()].put(store, now, StoreVersion(*version), publish);
                    }
                }
                Response::Done
            }
            other => panic!("the compaction does not ask for {other:?}"),
        }
    }

    /// Upserts the records of the receipt's delta into the invocation's working copy.
    fn upsert_delta(
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

    fn perform_collection(
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
    fn write_table_state(
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

    fn publish(
        &mut self,
        now: Instant,
        state: &mut CompactionSlot,
        collection: Collection,
    ) -> Response {
        let working_copy = state
            .working_copy
            .take()
            .expect("a working copy to publish");
        let mut ids: Vec<ChromaId> = working_copy.overlay().keys().copied().collect();
        ids.sort_unstable();
        let outcome = self.stores[collection.index()].publish(now, working_copy);
        state.published = Some(outcome.publish);
        let publishes = &mut self.history.publishes[collection.index()];
        publishes.push(PublishRecord {
            collection,
            publish: u64::from(outcome.publish.0),
            base: 0,
            version: outcome.version.0,
            at: now,
            invocation: state.invocation.id.0,
            ids: CompactIds::from_sorted(&ids),
            pointer: PointerOutcome::NotWritten,
            promoted_at: None,
        });
        let info = self.stores[collection.index()].publish_info(outcome.publish);
        let record = publishes.last_mut().expect("just pushed");
        record.base = u64::from(info.parent.0);
        state.publish_record = Some(publishes.len() - 1);
        let actor = Actor::Compaction {
            invocation: state.invocation.id.0,
            collection,
        };
        self.history
            .record(now, actor, HistoryEvent::Published, None, &[], || {
                format!(
                    "publish {} version {}",
                    outcome.publish.0, outcome.version.0
                )
            });
        if let Some(head_move) = outcome.head_move {
            self.head_moved(now, collection, &head_move);
        }
        Response::Published {
            version: outcome.version.0,
        }
    }

    fn write_pointer(
        &mut self,
        now: Instant,
        state: &mut CompactionSlot,
        collection: Collection,
        version: VersionId,
        expected_etag: Option<u64>,
    ) -> Response {
        if let Some(owner) = state.machine.owner() {
            self.locks[collection.index()].check(now, ServiceOwner(owner));
        }
        let store = &mut self.stores[collection.index()];
        let written = match expected_etag {
            Some(etag) => store
                .write_pointer_if_match(now, StoreVersion(version), Etag(etag))
                .ok(),
            None => Some(store.write_pointer(now, StoreVersion(version))),
        };
        let outcome = if written.is_some() {
            PointerOutcome::Promoted
        } else {
            PointerOutcome::Conflict
        };
        if let Some(index) = state.publish_record {
            let record = &mut self.history.publishes[collection.index()][index];
            record.pointer = outcome;
            if outcome == PointerOutcome::Promoted {
                record.promoted_at = Some(now);
            }
        }
        let Some(written) = written else {
            return Response::Failed;
        };
        store.prune_versions(now);
        if let Some(head_move) = written.head_move {
            self.head_moved(now, collection, &head_move);
        }
        Response::Done
    }

    fn head_moved(&mut self, now: Instant, collection: Collection, head_move: &HeadMove) {
        let mut became_visible = Vec::new();
        self.visibility
            .head_moved(now, head_move, &self.table, &mut became_visible);
        for receipt in became_visible {
            let actor = Actor::Queue { collection };
            self.history.record(
                now,
                actor,
                HistoryEvent::LabelsVisible,
                Some(receipt),
                &[],
                String::new,
            );
        }
    }

    // ----- steps, deadlines and heartbeats -----

    /// Schedules the completion of an effect that takes `duration` from `now`, and says so; an
    /// effect with no duration, asked for at the engine's present, completes at once instead.
    fn defer_effect(
        &mut self,
        function: Function,
        slot: u32,
        generation: u32,
        now: Instant,
        duration: Duration,
        deadline: Instant,
    ) -> bool {
        if duration == Duration::ZERO && now <= self.engine.now() {
            return false;
        }
        let at = self.engine.now().max(now).add(duration);
        self.schedule_step(function, slot, generation, at, deadline);
        true
    }

    /// Schedules the completion of an invocation's outstanding effect, or, if that lies past the
    /// invocation's deadline, its kill at the deadline (the effect then never completes).
    fn schedule_step(
        &mut self,
        function: Function,
        slot: u32,
        generation: u32,
        at: Instant,
        deadline: Instant,
    ) {
        if at > deadline {
            self.engine.schedule_at(
                deadline,
                Event::Kill {
                    function,
                    slot,
                    generation,
                },
            );
        } else {
            self.engine.schedule_at(
                at,
                Event::Step {
                    function,
                    slot,
                    generation,
                },
            );
        }
    }

    fn heartbeat(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(state) = self.compactions.get(slot, generation) else {
            return;
        };
        let Some(owner) = state.heartbeat_owner else {
            return;
        };
        let collection = state.machine.collection();
        let lease = self.config.compaction.lock_lease;
        let interval = self.config.compaction.heartbeat_interval;
        if self.locks[collection.index()]
            .heartbeat(now, owner, lease)
            .is_ok()
        {
            self.engine
                .schedule_at(now.add(interval), Event::Heartbeat { slot, generation });
        }
    }

    fn kill(&mut self, now: Instant, function: Function, slot: u32, generation: u32) {
        match function {
            Function::Upload => {
                let Some(state) = self.uploads.take(slot, generation) else {
                    return;
                };
                self.upload_lambda.kill(now, state.invocation.id);
                self.counters.kills[0] += 1;
                let receipt = state.machine.unfinished().first().map(|plan| plan.receipt);
                self.history.record(
                    now,
                    Actor::Upload {
                        invocation: state.invocation.id.0,
                    },
                    HistoryEvent::UploadKilled,
                    receipt,
                    &[],
                    String::new,
                );
                self.uploads.release(slot);
                self.wake(0, now);
            }
            Function::StreamProcessor => {
                let Some(state) = self.processors.take(slot, generation) else {
                    return;
                };
                self.processor_lambda.kill(now, state.invocation.id);
                self.counters.kills[1] += 1;
                self.stream.fail(now, state.batch);
                self.processors.release(slot);
                self.wake_stream(now);
            }
            Function::Compaction => {
                let Some(mut state) = self.compactions.take(slot, generation) else {
                    return;
                };
                self.compaction_lambda.kill(now, state.invocation.id);
                self.counters.kills[2] += 1;
                let collection = state.machine.collection();
                if let Some(working_copy) = state.working_copy.take() {
                    self.stores[collection.index()].discard(working_copy);
                }
                if let Some(mut caches) = self.caches.remove(&state.invocation.container.0) {
                    for (cache, store) in caches.iter_mut().zip(self.stores.iter_mut()) {
                        cache.clear(store);
                    }
                }
                let actor = Actor::Compaction {
                    invocation: state.invocation.id.0,
                    collection,
                };
                self.history.record(
                    now,
                    actor,
                    HistoryEvent::CompactionKilled,
                    None,
                    &[],
                    String::new,
                );
                self.compactions.release(slot);
                self.wake_queues_after(now, collection);
            }
        }
    }

    /// Invocations still running: (upload, stream processor, compaction).
    pub fn running(&self) -> (usize, usize, usize) {
        (
            self.uploads.live(),
            self.processors.live(),
            self.compactions.live(),
        )
    }
}

impl Simulation<'_> {
    // ----- injected faults (`config::FaultsConfig`) and the history records naming ids -----

    /// An injected throttle of the compaction start for a batch the mapping just received: the
    /// invocation is refused, the messages stay in flight until their visibility timeout (the
    /// receive counts towards the receive limit), and the mapping backs off one poll interval.
    fn throttled(
        &mut self,
        now: Instant,
        collection: Collection,
        received: &[Received<Message>],
    ) -> bool {
        let share = self.config.faults.throttle_share;
        if !strikes(&mut self.faults.throttle, share) {
            return false;
        }
        self.counters.throttles_injected += 1;
        if self.history.filter.wants(HistoryEvent::Throttled, None) {
            let messages: Vec<Message> = received.iter().map(|message| message.body).collect();
            let actor = Actor::Queue { collection };
            let event = HistoryEvent::Throttled;
            self.record_messages(now, actor, event, collection, &messages, String::new);
        }
        let backoff = now.add(self.config.queues.poll_interval);
        self.wake(2 + collection.index(), backoff);
        true
    }

    /// Whether a new compaction invocation will stall, and for how long.
    fn draw_stall(&mut self) -> Option<Duration> {
        let faults = &self.config.faults;
        if !strikes(&mut self.faults.stall, faults.compaction_stall_share) {
            return None;
        }
        Some(faults.compaction_stall.sample(&mut self.faults.stall))
    }

    /// The stall to add to the effect the invocation just asked for, if it is the stall point.
    fn take_stall(&mut self, now: Instant, state: &mut CompactionSlot) -> Duration {
        let point = self.config.faults.compaction_stall_point;
        if state.stall.is_none() || !state.machine.at_stall_point(point) {
            return Duration::ZERO;
        }
        let stall = state.stall.take().expect("checked above");
        self.counters.stalls += 1;
        if !self.history.filter.is_off() {
            let collection = state.machine.collection();
            let actor = Actor::Compaction {
                invocation: state.invocation.id.0,
                collection,
            };
            let name = match point {
                StallPoint::BeforePublish => "before_publish",
                StallPoint::HoldingLock => "holding_lock",
                StallPoint::Uploading => "uploading",
            };
            let messages = state.machine.messages();
            self.record_messages(
                now,
                actor,
                HistoryEvent::Stalled,
                collection,
                messages,
                || format!("{name} for {stall}"),
            );
        }
        stall
    }

    /// After a pointer write, the injected death of the invocation: nothing after the write happens
    /// (no deletes or failures reported, no lock release, no cache write-back; the execution
    /// environment comes back with an empty cache). Returns the state back if it survives.
    #[inline]
    fn kill_after_pointer(
        &mut self,
        now: Instant,
        slot: u32,
        effect: &Effect,
        state: Box<CompactionSlot>,
    ) -> Option<Box<CompactionSlot>> {
        let share = self.config.faults.kill_after_pointer_share;
        if !matches!(effect, Effect::WritePointer { .. })
            || !strikes(&mut self.faults.kill_after_pointer, share)
        {
            return Some(state);
        }
        self.die_after_pointer(now, slot, state);
        None
    }

    #[cold]
    fn die_after_pointer(&mut self, now: Instant, slot: u32, mut state: Box<CompactionSlot>) {
        self.drain_compaction_notes(now, &mut state);
        self.counters.kills_after_pointer += 1;
        let collection = state.machine.collection();
        if !self.history.filter.is_off() {
            let actor = Actor::Compaction {
                invocation: state.invocation.id.0,
                collection,
            };
            let event = HistoryEvent::KilledAfterPointer;
            let messages = state.machine.messages();
            self.record_messages(now, actor, event, collection, messages, String::new);
        }
        if let Some(working_copy) = state.working_copy.take() {
            self.stores[collection.index()].discard(working_copy);
        }
        if let Some(mut caches) = self.caches.remove(&state.invocation.container.0) {
            for (cache, store) in caches.iter_mut().zip(self.stores.iter_mut()) {
                cache.clear(store);
            }
        }
        self.compaction_lambda.finish(now, state.invocation.id);
        self.compactions.release(slot);
        self.wake_queues_after(now, collection);
    }

    /// Whether a finished stream processor invocation fails by injection after its sends, so that
    /// the mapping retries (or bisects) its batch and the messages are sent again.
    fn stream_retried(&mut self, now: Instant, state: &ProcessorSlot) -> bool {
        let share = self.config.faults.stream_retry_share;
        if !strikes(&mut self.faults.stream_retry, share) {
            return false;
        }
        self.counters.stream_retries += 1;
        let actor = Actor::StreamProcessor {
            invocation: state.invocation.id.0,
        };
        let event = HistoryEvent::StreamRetried;
        let mut recorded = false;
        for collection in Collection::ALL {
            let messages = state.machine.messages(collection);
            recorded |= !messages.is_empty();
            self.record_messages(now, actor, event, collection, messages, String::new);
        }
        if !recorded {
            self.history
                .record(now, actor, event, None, &[], || "no messages".to_string());
        }
        true
    }

    /// One history record per run of consecutive messages about one receipt and of one sort: label
    /// messages name their words; run and metadata messages name no id (they concern the receipt).
    /// The detail lists the run's messages, after `prefix` when it is not empty.
    fn record_messages(
        &mut self,
        now: Instant,
        actor: Actor,
        event: HistoryEvent,
        collection: Collection,
        messages: &[Message],
        prefix: impl Fn() -> String,
    ) {
        if self.history.filter.is_off() {
            return;
        }
        let same_run = |a: &Message, b: &Message| {
            a.receipt == b.receipt && message_word(a).is_some() == message_word(b).is_some()
        };
        for run in messages.chunk_by(same_run) {
            let receipt = run[0].receipt;
            if !self.history.filter.wants(event, Some(receipt)) {
                continue;
            }
            let ids: Vec<ChromaId> = run.iter().filter_map(message_word).collect();
            self.history
                .record(now, actor, event, Some(receipt), &ids, || {
                    let messages = describe_messages(collection, run);
                    let prefix = prefix();
                    if prefix.is_empty() {
                        messages
                    } else {
                        format!("{prefix}: {messages}")
                    }
                });
        }
    }

    /// The ids a message concerns, for the history: a label message its word, a run message the
    /// receipt's ids in its collection, a metadata message the receipt's ids the snapshot holds.
    fn message_ids(&self, message: &Message) -> Vec<ChromaId> {
        let receipt = message.receipt;
        let collection = message.collection;
        match message.kind {
            MessageKind::Label { .. } => message_word(message).into_iter().collect(),
            MessageKind::RunDelta | MessageKind::RunCompleted => self
                .table
                .shape(receipt)
                .map_or_else(Vec::new, |shape| shape.collection_ids(receipt, collection)),
            MessageKind::Metadata { .. } => self.stores[collection.index()]
                .head_receipt_entries(receipt)
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
        }
    }
}

/// The OCR'd lines and words of a receipt as the table stores them.
fn table_shape(receipt: &Receipt) -> ReceiptShape {
    let words_per_line: Vec<u16> = receipt
        .words_per_line
        .iter()
        .map(|words| u16::from(*words))
        .collect();
    let noise: Vec<bool> = receipt.words().map(|word| receipt.is_noise(word)).collect();
    ReceiptShape::new(&words_per_line, &noise)
}

/// The word id a label message is about.
pub fn message_word(message: &Message) -> Option<ChromaId> {
    match message.kind {
        MessageKind::Label { word, .. } => Some(ChromaId::word(
            message.receipt,
            u32::from(word.line),
            u32::from(word.word),
        )),
        _ => None,
    }
}

/// `{collection} {receipt}/{record sequence}/{group:x}/{kind} ...` (kind: `run`, `completed`,
/// `metadata`, `label.{line}.{word}.{label}`): the messages of a send or a batch,
/// for the history.
pub fn describe_messages(collection: Collection, messages: &[Message]) -> String {
    let mut text = collection.name().to_string();
    for message in messages {
        let kind = match message.kind {
            MessageKind::RunDelta => "run".to_string(),
            MessageKind::RunCompleted => "completed".to_string(),
            MessageKind::Metadata { .. } => "metadata".to_string(),
            MessageKind::Label { word, label, .. } => {
                format!("label.{}.{}.{label}", word.line, word.word)
            }
        };
        text.push_str(&format!(
            " {}/{}/{:x}/{kind}",
            message.receipt, message.record_sequence, message.group
        ));
    }
    text
}

/// The label fields a receipt's word ends with (LangGraph's final items), for deltas that carry
/// labels known at embed time.
fn final_labels(receipt: &Receipt, id: ChromaId) -> LabelFields {
    let items: Vec<LabelItem> = receipt
        .labels
        .iter()
        .filter(|label| {
            u32::from(label.line) == id.line_number() && u32::from(label.word) == id.word_number()
        })
        .map(|label| label.changed_item().unwrap_or(label.proposed_item()))
        .collect();
    LabelFields::derive(&items)
}
