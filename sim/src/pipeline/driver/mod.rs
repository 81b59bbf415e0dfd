//! The simulated driver: runs the pipeline's state machines on the service models inside the event
//! engine. It turns every effect into an engine event after a sampled duration, performs the effect
//! on the service models when that event fires, and hands the answer back. It also starts
//! invocations (pollers of the upload queue, the stream and the two compaction queues), kills them
//! at their deadline, keeps lock heartbeats, samples queues, and tracks "labels visible". It injects
//! the faults of `[faults]` (compaction stalls, deaths right after the pointer write, stream
//! processor retries, throttled compaction starts), each drawn from its own named stream.
//!
//! Durations of a receipt's upload stages come from the receipt's own streams (`ocr`, receipt ...),
//! so old and new flow see the same draws (common random numbers). It reads the configuration's
//! four parts (`config::Behaviour`, `Deployment`, `ServiceModel`, `Faults`) of a
//! `ValidatedConfig`, never the `PipelineConfig` a user wrote, and hands each state machine its
//! settings as the behaviour part holds them. Depends on everything else in the crate; nothing
//! depends on it but `pipeline::run_trial`.

mod costs;
mod faults;
mod invocation;
mod invocations;
mod locks;
mod notes;
mod objects;
mod perform;
mod pollers;
mod slots;
mod table;
#[cfg(test)]
mod tests;
mod working_copy;

use super::compaction::{CompactionInvocation, CompactionNote, Outcome};
use super::config::{
    Behaviour, ColdStart, Deployment, FailureReporting, Faults, FileCacheSharing, MappingPollers,
    QueueKind as ConfigQueueKind, ServiceModel, StallPoint, UploadBatchDeletion,
    UpsertMode as ConfigUpsertMode, ValidatedConfig,
};
use super::effect::{
    CollectionOp, Component, Effect, Message, MessageKind, ObjectKey, Response, RunState,
    TableRead, TableStateHandle, TableWrite, VersionId, Work,
};
use super::history::{Actor, CompactIds, History, HistoryEvent, PointerOutcome, PublishRecord};
use super::performer::{Completion, Performer, RecordPatch, Simulated};
use super::stream_processor::{ItemChange, RecordView, StreamProcessorInvocation};
use super::upload::{ReceiptPlan, UploadInvocation, UploadNote};
use super::visibility::Visibility;
use super::{ReportDetail, TrialCounters};
use crate::engine::{Engine, Event as EngineEvent};
use crate::entities::{ChromaId, Collection, LabelFields, LabelItem, ReceiptIndex};
use crate::metrics::{Series, Stage, Stages};
use crate::random::{Stream, Streams, mix64};
use crate::services::collection::{EntryPatch, UpsertMode};
use crate::services::lambda::{Invocation, Lambda, LambdaParams};
use crate::services::lock::{LeaseLock, LockOwner as ServiceOwner, OwnerStatus};
use crate::services::object_store::{
    Etag, FileCache, HeadMove, PublishId, SnapshotParams, SnapshotStore, VersionId as StoreVersion,
};
use crate::services::queue::{Queue, QueueKind, QueueParams, ReceiptHandle, Received};
use crate::services::stream::{BatchId, ShardId, StreamParams, TableStream};
use crate::services::table::{
    CompactionRun, ItemImage, ItemKey, ReceiptShape, StreamRecord, Table,
};
use crate::time::{Duration, Instant};
use crate::workload::{LabelSpec, Receipt, WordRef, chance};
use faults::FaultStreams;
use invocation::InvocationState;
use invocations::InFlight;
pub use notes::{describe_messages, message_word};
use slots::{
    CompactionKept, CompactionSlot, ProcessorKept, ProcessorSlot, ReceiptTableState, Slot, Slots,
    UploadKept, UploadSlot,
};
use std::collections::BTreeMap;
use table::final_labels;

/// The key of the one file cache every container shares (a container's own key is its id).
const SHARED_FILE_CACHE: u64 = u64::MAX;
/// The most effects one step may perform without time passing (zero-duration effects).
const SYNCHRONOUS_EFFECTS_MAX: u32 = 100_000;

/// What an engine event is, for the count of events by kind. `Event::kind` names every event's
/// kind (an exhaustive match), and `EventKind::name` every kind's name.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Arrival,
    UploadPoll,
    StreamPoll,
    QueuePoll,
    UploadStep,
    StreamProcessorStep,
    CompactionStep,
    Kill,
    Heartbeat,
}

impl EventKind {
    /// Every kind, in declaration order (`ALL[kind as usize] == kind`; tested).
    pub const ALL: [EventKind; 9] = [
        EventKind::Arrival,
        EventKind::UploadPoll,
        EventKind::StreamPoll,
        EventKind::QueuePoll,
        EventKind::UploadStep,
        EventKind::StreamProcessorStep,
        EventKind::CompactionStep,
        EventKind::Kill,
        EventKind::Heartbeat,
    ];
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Arrival => "arrival",
            EventKind::UploadPoll => "upload_poll",
            EventKind::StreamPoll => "stream_poll",
            EventKind::QueuePoll => "queue_poll",
            EventKind::UploadStep => "upload_step",
            EventKind::StreamProcessorStep => "stream_processor_step",
            EventKind::CompactionStep => "compaction_step",
            EventKind::Kill => "kill",
            EventKind::Heartbeat => "heartbeat",
        }
    }
}

/// Events handled, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventCounts([u64; EventKind::ALL.len()]);

impl EventCounts {
    #[inline]
    fn count(&mut self, kind: EventKind) {
        self.0[kind as usize] += 1;
    }
    pub fn get(&self, kind: EventKind) -> u64 {
        self.0[kind as usize]
    }
    /// (name, count) of every kind.
    pub fn by_name(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        EventKind::ALL
            .iter()
            .map(|kind| (kind.name(), self.get(*kind)))
    }
}

/// Serialised as a map from each kind's name to its count, the names in ascending order (the form
/// reports have always had), without building one.
impl serde::Serialize for EventCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut by_name: [(&'static str, u64); EventKind::ALL.len()] =
            [("", 0); EventKind::ALL.len()];
        for (slot, pair) in by_name.iter_mut().zip(self.by_name()) {
            *slot = pair;
        }
        by_name.sort_unstable_by_key(|(name, _)| *name);
        let mut map = serializer.serialize_map(Some(by_name.len()))?;
        for (name, count) in by_name {
            map.serialize_entry(name, &count)?;
        }
        map.end()
    }
}

/// The pollers: the upload queue's, the stream's and one per compaction queue.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Poller {
    Upload,
    Stream,
    Queue(Collection),
}

impl Poller {
    fn event(self) -> Event {
        match self {
            Poller::Upload => Event::UploadPoll,
            Poller::Stream => Event::StreamPoll,
            Poller::Queue(collection) => Event::QueuePoll(collection),
        }
    }
}

/// When each poller next wakes, if it is scheduled.
#[derive(Copy, Clone, Debug, Default)]
struct PollTimes {
    upload: Option<Instant>,
    stream: Option<Instant>,
    queues: PerCollection<Option<Instant>>,
}

impl PollTimes {
    #[inline]
    fn at(&mut self, poller: Poller) -> &mut Option<Instant> {
        match poller {
            Poller::Upload => &mut self.upload,
            Poller::Stream => &mut self.stream,
            Poller::Queue(collection) => self.queues.get_mut(collection),
        }
    }
}

/// One value per collection, by name (serialised as a map with the names in ascending order).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PerCollection<T> {
    pub lines: T,
    pub words: T,
}

impl<T> PerCollection<T> {
    #[inline]
    pub fn get(&self, collection: Collection) -> &T {
        match collection {
            Collection::Lines => &self.lines,
            Collection::Words => &self.words,
        }
    }
    #[inline]
    pub fn get_mut(&mut self, collection: Collection) -> &mut T {
        match collection {
            Collection::Lines => &mut self.lines,
            Collection::Words => &mut self.words,
        }
    }
}

/// The queue depth and age samples of the upload queue and the two compaction queues.
pub type QueueSeries = super::PerQueue<Series>;

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

impl Event {
    pub fn kind(&self) -> EventKind {
        match *self {
            Event::Arrival(_) => EventKind::Arrival,
            Event::UploadPoll => EventKind::UploadPoll,
            Event::StreamPoll => EventKind::StreamPoll,
            Event::QueuePoll(_) => EventKind::QueuePoll,
            Event::Step { function, .. } => match function {
                Function::Upload => EventKind::UploadStep,
                Function::StreamProcessor => EventKind::StreamProcessorStep,
                Function::Compaction => EventKind::CompactionStep,
            },
            Event::Kill { .. } => EventKind::Kill,
            Event::Heartbeat { .. } => EventKind::Heartbeat,
        }
    }
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

/// Per-receipt progress.
#[derive(Copy, Clone, Debug, Default)]
pub struct Progress {
    pub arrived: bool,
    pub started: bool,
    pub saved_at: Option<Instant>,
    /// The start of the embedding of the receipt's latest upload attempt.
    pub embedding_started_at: Option<Instant>,
    /// From `embedding_started_at` to the labels' save of the same attempt.
    pub saved_from_embedding: Option<Duration>,
    pub finished: bool,
    pub run_id: u32,
    /// Bit per collection: the delta of the current run was uploaded.
    pub deltas: u8,
}

/// Everything one trial holds while it runs; `P` performs the data-plane effects beside the models.
pub struct Simulation<'a, P = Simulated> {
    /// The trial's seed, for its report.
    pub seed: u64,
    /// What the real code does.
    pub behaviour: &'a Behaviour,
    /// Concurrency, batch sizes, timeouts.
    pub deployment: &'a Deployment,
    /// Distributions, bandwidths and the services' constants.
    pub model: &'a ServiceModel,
    /// The injected faults' shares.
    pub faults: &'a Faults,
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
    poll_at: PollTimes,
    /// When each compaction mapping's batching window opened, if it is open.
    window_started: [Option<Instant>; 2],
    /// Expired messages already written to the history: upload, lines and words queues.
    expired_recorded: [usize; 3],
    /// Per compaction mapping: invocations it started that still run, and since when its queue
    /// has had messages (its pollers scale up from then).
    mapping_running: [u32; 2],
    mapping_busy_since: [Option<Instant>; 2],
    pub progress: Vec<Progress>,
    pub visibility: Visibility,
    pub stages: Stages,
    /// Whether queues are sampled into `series` (not for brief reports).
    sampling: bool,
    /// Scratch space of the queue pollers, reused from receive to receive.
    received_uploads: Vec<Received<ReceiptIndex>>,
    received_messages: Vec<Received<Message>>,
    pub series: QueueSeries,
    pub history: History,
    pub counters: TrialCounters,
    pub events_by_kind: EventCounts,
    processor_stream: Stream,
    compaction_stream: Stream,
    fault_streams: FaultStreams,
    upload_records: Vec<StreamRecord>,
    views: Vec<RecordView>,
    scratch_ids: Vec<ChromaId>,
    /// Records handed to the performer (only when it asks for them).
    scratch_records: Vec<RecordPatch>,
    /// Compaction effects the performer started and has not ended, by ticket (measured timing).
    in_flight: BTreeMap<u64, InFlight>,
    completions: Vec<Completion>,
    pub performer: P,
}

/// What a finished trial leaves for the next one to reuse: the storage of each service model and
/// of the driver's containers (`pipeline::Scratch` keeps it, with the engine's and the history's). No state passes from one trial to the
/// next through it: each part is built anew in the storage it names (`reusing`, `renewed`), to
/// the state a new one has, so a trial on reused storage is the trial a fresh one runs (tested).
#[derive(Default)]
pub struct Storage {
    pub(super) table: Option<Table>,
    stream: Option<TableStream>,
    upload_queue: Option<Queue<ReceiptIndex>>,
    queues: Option<[Queue<Message>; 2]>,
    lambdas: Option<[Lambda; 3]>,
    pub(super) stores: Option<[SnapshotStore; 2]>,
    uploads: Option<Slots<UploadSlot>>,
    processors: Option<Slots<ProcessorSlot>>,
    compactions: Option<Slots<CompactionSlot>>,
    progress: Vec<Progress>,
    visibility: Option<Visibility>,
    received_uploads: Vec<Received<ReceiptIndex>>,
    received_messages: Vec<Received<Message>>,
    upload_records: Vec<StreamRecord>,
    views: Vec<RecordView>,
    scratch_ids: Vec<ChromaId>,
    scratch_records: Vec<RecordPatch>,
    completions: Vec<Completion>,
}

/// A finished simulation taken apart (`Simulation::into_parts`).
pub struct Parts<P> {
    pub engine: Engine<Event>,
    pub table: Table,
    pub stores: [SnapshotStore; 2],
    pub history: History,
    pub performer: P,
    pub storage: Storage,
}

/// `vector`, emptied, with room for at least `room` more.
fn emptied<T>(mut vector: Vec<T>, room: usize) -> Vec<T> {
    vector.clear();
    vector.reserve(room);
    vector
}

/// Each of `old`'s models, to be built again in its storage, or none when there is no `old`.
fn each<T, const N: usize>(old: Option<[T; N]>) -> [Option<T>; N] {
    match old {
        Some(models) => models.map(Some),
        None => std::array::from_fn(|_| None),
    }
}

fn queue_params(deployment: &Deployment, model: &ServiceModel) -> QueueParams {
    let queues = &deployment.queues;
    QueueParams {
        kind: match queues.kind {
            ConfigQueueKind::Fifo => QueueKind::Fifo,
            ConfigQueueKind::Standard => QueueKind::Standard {
                duplicate_share: model.queues.duplicate_share,
            },
        },
        visibility_timeout: queues.visibility_timeout,
        receive_limit: Some(queues.receive_limit),
        retention: queues.retention,
        deduplication_window: queues.deduplication_window,
    }
}

/// The lines and words queues, in `old`'s storage when there is one.
fn compaction_queues(
    old: Option<[Queue<Message>; 2]>,
    deployment: &Deployment,
    model: &ServiceModel,
    streams: &Streams,
) -> [Queue<Message>; 2] {
    let [lines, words] = each(old);
    [
        Queue::reusing(
            lines,
            queue_params(deployment, model),
            streams.stream("lines-queue"),
        ),
        Queue::reusing(
            words,
            queue_params(deployment, model),
            streams.stream("words-queue"),
        ),
    ]
}

/// The snapshot stores of the lines and words collections, in `old`'s storage when there is one.
fn snapshot_stores(
    old: Option<[SnapshotStore; 2]>,
    behaviour: &Behaviour,
    model: &ServiceModel,
) -> [SnapshotStore; 2] {
    let [lines, words] = each(old);
    [
        SnapshotStore::reusing(lines, Collection::Lines, snapshot_params(behaviour, model)),
        SnapshotStore::reusing(words, Collection::Words, snapshot_params(behaviour, model)),
    ]
}

/// The samples of the three queues, every `model.sample_interval` at first.
fn queue_series(model: &ServiceModel) -> QueueSeries {
    QueueSeries {
        upload: Series::new(model.sample_interval),
        lines: Series::new(model.sample_interval),
        words: Series::new(model.sample_interval),
    }
}

fn lambda_params(concurrency: u32, timeout: Duration, cold_start: &ColdStart) -> LambdaParams {
    LambdaParams {
        reserved_concurrency: concurrency,
        timeout,
        cold_start_share: cold_start.share,
        cold_start_duration: cold_start.duration.clone(),
        container_idle_max: None,
    }
}

fn stream_params(deployment: &Deployment, model: &ServiceModel) -> StreamParams {
    let stream = &deployment.stream;
    StreamParams {
        shards: stream.shards,
        shard_split_interval: None,
        shards_max: stream.shards,
        batch_size: stream.batch_size,
        batching_window: stream.batching_window,
        parallelization_factor: stream.parallelization_factor,
        retry_attempts_max: Some(stream.retry_limit),
        bisect_on_failure: stream.bisect_on_error,
        record_age_max: Some(stream.record_age_max),
        retention: model.stream.retention,
    }
}

fn upload_queue_params(deployment: &Deployment, model: &ServiceModel) -> QueueParams {
    let upload = &deployment.upload;
    QueueParams {
        kind: QueueKind::Standard {
            duplicate_share: 0.0,
        },
        visibility_timeout: upload.queue_visibility_timeout,
        // No redrive policy, no receive limit: a message comes back until retention deletes it.
        receive_limit: upload
            .dead_letter_queue
            .then_some(upload.queue_receive_limit),
        retention: model.queues.upload_queue_retention,
        deduplication_window: model.queues.upload_queue_deduplication_window,
    }
}

fn snapshot_params(behaviour: &Behaviour, model: &ServiceModel) -> SnapshotParams {
    SnapshotParams {
        version_resolution: behaviour.compaction.version_id_resolution,
        keep_versions: behaviour.store.keep_versions as usize,
        deltas_window: model.snapshots.deltas_window,
        deltas_max: model.snapshots.deltas_max,
    }
}

/// The upload, stream processor and compaction functions, in `old`'s storage when there is one.
fn lambdas(
    old: Option<[Lambda; 3]>,
    deployment: &Deployment,
    model: &ServiceModel,
    streams: &Streams,
) -> [Lambda; 3] {
    let [upload, processor, compaction] = each(old);
    let (upload_config, processor_config, compaction_config) = (
        &deployment.upload,
        &deployment.stream_processor,
        &deployment.compaction,
    );
    [
        Lambda::reusing(
            upload,
            lambda_params(
                upload_config.concurrency,
                upload_config.timeout,
                &model.upload.cold_start,
            ),
            streams.stream("upload-lambda"),
        ),
        Lambda::reusing(
            processor,
            lambda_params(
                processor_config.reserved_concurrency,
                processor_config.timeout,
                &model.stream_processor.cold_start,
            ),
            streams.stream("stream-processor-lambda"),
        ),
        Lambda::reusing(
            compaction,
            lambda_params(
                compaction_config.reserved_concurrency,
                compaction_config.timeout,
                &model.compaction.cold_start,
            ),
            streams.stream("compaction-lambda"),
        ),
    ]
}

impl<'a> Simulation<'a> {
    /// A simulation whose effects are performed on the models alone.
    pub fn new(
        config: &'a ValidatedConfig,
        receipts: &'a [Receipt],
        engine: Engine<Event>,
        history: History,
        detail: ReportDetail,
    ) -> Self {
        Simulation::with_performer(
            config,
            receipts,
            engine,
            history,
            detail,
            Simulated,
            Storage::default(),
        )
    }
}

impl<'a, P: Performer> Simulation<'a, P> {
    /// A simulation of `config` over `receipts` on `engine`, recording into `history`, its
    /// services and containers built in `storage` (`Storage::default()` for new ones).
    pub fn with_performer(
        config: &'a ValidatedConfig,
        receipts: &'a [Receipt],
        engine: Engine<Event>,
        history: History,
        detail: ReportDetail,
        performer: P,
        storage: Storage,
    ) -> Self {
        let streams = Streams::new(config.seed());
        let (behaviour, deployment, model) =
            (config.behaviour(), config.deployment(), config.model());
        let [upload_lambda, processor_lambda, compaction_lambda] =
            lambdas(storage.lambdas, deployment, model, &streams);
        let receipt_count = receipts.len();
        let mut progress = emptied(storage.progress, receipt_count);
        progress.resize(receipt_count, Progress::default());
        Simulation {
            seed: config.seed(),
            behaviour,
            deployment,
            model,
            faults: config.faults(),
            receipts,
            streams,
            engine,
            table: storage.table.unwrap_or_default().renewed(receipt_count),
            stream: TableStream::reusing(storage.stream, stream_params(deployment, model)),
            upload_queue: Queue::reusing(
                storage.upload_queue,
                upload_queue_params(deployment, model),
                streams.stream("upload-queue"),
            ),
            queues: compaction_queues(storage.queues, deployment, model, &streams),
            upload_lambda,
            processor_lambda,
            compaction_lambda,
            locks: [LeaseLock::new(), LeaseLock::new()],
            stores: snapshot_stores(storage.stores, behaviour, model),
            caches: BTreeMap::new(),
            uploads: storage.uploads.map_or_else(Slots::new, Slots::renewed),
            processors: storage.processors.map_or_else(Slots::new, Slots::renewed),
            compactions: storage.compactions.map_or_else(Slots::new, Slots::renewed),
            poll_at: PollTimes::default(),
            window_started: [None; 2],
            expired_recorded: [0; 3],
            mapping_running: [0; 2],
            mapping_busy_since: [None; 2],
            progress,
            visibility: storage.visibility.map_or_else(
                || Visibility::new(receipt_count),
                |v| v.renewed(receipt_count),
            ),
            stages: match detail {
                ReportDetail::Full => Stages::new(),
                ReportDetail::Brief => Stages::off(),
            },
            sampling: detail == ReportDetail::Full,
            received_uploads: emptied(storage.received_uploads, 0),
            received_messages: emptied(storage.received_messages, 0),
            series: queue_series(model),
            history,
            counters: TrialCounters::default(),
            events_by_kind: EventCounts::default(),
            processor_stream: streams.stream("stream-processor"),
            compaction_stream: streams.stream("compaction"),
            fault_streams: FaultStreams::new(&streams),
            upload_records: emptied(storage.upload_records, 64),
            views: emptied(storage.views, 64),
            scratch_ids: emptied(storage.scratch_ids, 256),
            scratch_records: emptied(storage.scratch_records, 0),
            in_flight: BTreeMap::new(),
            completions: emptied(storage.completions, 0),
            performer,
        }
    }

    /// Ends the simulation: what the oracle reads (the table, the stores, the history), the
    /// performer, the engine, and the storage of everything else for the next trial.
    pub fn into_parts(self) -> Parts<P> {
        let Simulation {
            engine,
            table,
            stream,
            upload_queue,
            queues,
            upload_lambda,
            processor_lambda,
            compaction_lambda,
            stores,
            uploads,
            processors,
            compactions,
            progress,
            visibility,
            received_uploads,
            received_messages,
            history,
            upload_records,
            views,
            scratch_ids,
            scratch_records,
            completions,
            performer,
            ..
        } = self;
        Parts {
            engine,
            table,
            stores,
            history,
            performer,
            storage: Storage {
                table: None,
                stream: Some(stream),
                upload_queue: Some(upload_queue),
                queues: Some(queues),
                lambdas: Some([upload_lambda, processor_lambda, compaction_lambda]),
                stores: None,
                uploads: Some(uploads),
                processors: Some(processors),
                compactions: Some(compactions),
                progress,
                visibility: Some(visibility),
                received_uploads,
                received_messages,
                upload_records,
                views,
                scratch_ids,
                scratch_records,
                completions,
            },
        }
    }

    /// Schedules every arrival and the first sample, then runs the engine until it stops.
    pub fn run(&mut self) {
        self.run_observed(None);
    }

    /// `run`, showing `observer` the progress every `observer.every_events` events (a counter
    /// per event, nothing more, on the hot path).
    pub fn run_observed(&mut self, observer: Option<&crate::pipeline::Observer>) {
        // Arrivals are scheduled one at a time, each by the one before, to keep the queue small.
        if let Some(first) = self.receipts.first() {
            self.engine
                .schedule_at(first.arrival_instant(), Event::Arrival(first.index));
        }
        let every_events = observer.map_or(u64::MAX, |o| o.every_events.max(1));
        let mut countdown = every_events;
        loop {
            if !self.in_flight.is_empty() {
                self.look_ahead();
            }
            let Some((now, event)) = self.engine.next() else {
                break;
            };
            self.handle(now, event);
            countdown -= 1;
            if countdown == 0 {
                countdown = every_events;
                if let Some(observer) = observer {
                    (observer.call)(&self.reached(now));
                }
            }
        }
        self.engine.assert_accounted();
        let end = self.engine.now();
        self.upload_queue.expire_until(end);
        self.queues[0].expire_until(end);
        self.queues[1].expire_until(end);
        self.record_expired();
    }

    /// What the trial has reached at `now`.
    fn reached(&self, now: Instant) -> crate::pipeline::TrialProgress {
        crate::pipeline::TrialProgress {
            now,
            events: self.engine.events(),
            receipts: self.receipts.len() as u64,
            receipts_saved: self
                .progress
                .iter()
                .filter(|p| p.saved_at.is_some())
                .count() as u64,
        }
    }

    fn handle(&mut self, now: Instant, event: Event) {
        self.events_by_kind.count(event.kind());
        // Queues are sampled at the first event due, so sampling adds no events of its own.
        if self.sampling && self.series.upload.due(now) {
            self.sample(now);
        }
        match event {
            Event::Arrival(receipt) => self.arrive(now, receipt),
            Event::UploadPoll => {
                if self.take_poll(Poller::Upload, now) {
                    self.poll_uploads(now);
                }
            }
            Event::StreamPoll => {
                if self.take_poll(Poller::Stream, now) {
                    self.poll_stream(now);
                }
            }
            Event::QueuePoll(collection) => {
                if self.take_poll(Poller::Queue(collection), now) {
                    self.poll_queue(now, collection);
                }
            }
            Event::Step {
                function,
                slot,
                generation,
            } => match function {
                Function::Upload => self.step::<UploadSlot>(now, slot, generation),
                Function::StreamProcessor => self.step::<ProcessorSlot>(now, slot, generation),
                Function::Compaction => self.step::<CompactionSlot>(now, slot, generation),
            },
            Event::Kill {
                function,
                slot,
                generation,
            } => match function {
                Function::Upload => self.kill::<UploadSlot>(now, slot, generation),
                Function::StreamProcessor => self.kill::<ProcessorSlot>(now, slot, generation),
                Function::Compaction => self.kill::<CompactionSlot>(now, slot, generation),
            },
            Event::Heartbeat { slot, generation } => self.heartbeat(now, slot, generation),
        }
    }

    fn sample(&mut self, now: Instant) {
        let upload = &self.upload_queue;
        let (lines, words) = (&self.queues[0], &self.queues[1]);
        let series = &mut self.series;
        series
            .upload
            .record(now, upload.depth() as u64, upload.oldest_age(now));
        series
            .lines
            .record(now, lines.depth() as u64, lines.oldest_age(now));
        series
            .words
            .record(now, words.depth() as u64, words.oldest_age(now));
    }

    // ----- arrivals and the upload Lambda -----

    // ----- the stream processor -----
}

impl<P: Performer> Simulation<'_, P> {
    // ----- the compaction Lambda -----

    // ----- steps, deadlines and heartbeats -----

    /// Invocations still running: (upload, stream processor, compaction).
    pub fn running(&self) -> (usize, usize, usize) {
        (
            self.uploads.live(),
            self.processors.live(),
            self.compactions.live(),
        )
    }
}

impl<P: Performer> Simulation<'_, P> {
    // ----- injected faults (`config::Faults`) and the history records naming ids -----
}
