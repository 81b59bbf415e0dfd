//! The configuration of one trial of the pipeline: one struct tree, `PipelineConfig`, whose
//! `Default` is the **described** profile (the pipeline as the note describes it) and whose
//! `built()` is the pipeline as its code behaved. Every figure the spec quotes is the default of a
//! distribution, never a constant; every variant of PIPELINE.md section 7 is a knob, and so is
//! every injected fault (`[faults]`, all off by default).
//!
//! Serde: every struct denies unknown fields and defaults missing ones, so a scenario file names
//! only what it changes.
//!
//! A trial does not read this tree: `ValidatedConfig::new` validates it once and splits it into
//! four parts, each a module of its own: `behaviour` (what the real code does, held as the state
//! machines' settings; both drivers read it), `deployment` (concurrency, batch sizes, timeouts,
//! the queues' and mappings' settings), `model` (the service model: distributions, cold starts,
//! bandwidths and the services' constants) and `faults` (injected faults). Depends on `time`,
//! `distribution`, `random` (the seed's serde form), `workload` and `serde`.

use crate::distribution::{DurationDist, NumberDist};
use crate::time::Duration;
use serde::{Deserialize, Serialize};
use std::fmt;

pub use crate::workload::{ArrivalProcess, Burst, WorkloadConfig, WorkloadSource};

mod behaviour;
mod deployment;
mod faults;
mod model;
mod validated;

pub use behaviour::{
    Behaviour, ChromaBehaviour, CompactionBehaviour, StoreBehaviour, StreamBehaviour,
    StreamProcessorBehaviour, UploadBehaviour, WaitBehaviour,
};
pub use deployment::{
    CompactionDeployment, Deployment, FunctionDeployment, QueuesDeployment, StreamDeployment,
    UploadDeployment,
};
pub use faults::Faults;
pub use model::{
    ColdStart, CompactionModel, QueuesModel, ServiceModel, SnapshotsModel, StoreModel, StreamModel,
    StreamProcessorModel, UploadModel,
};
pub use validated::ValidatedConfig;

/// The most messages one SQS receive (and one Lambda batch of a FIFO mapping) may hold.
pub const FIFO_BATCH_SIZE_MAX: u32 = 10;
/// The most messages a standard-queue mapping may hand to one invocation.
pub const STANDARD_BATCH_SIZE_MAX: u32 = 10_000;
/// The most records a DynamoDB stream mapping may hand to one invocation.
pub const STREAM_BATCH_SIZE_MAX: u32 = 10_000;
/// SQS: visibility timeout at most 12 h.
pub const VISIBILITY_TIMEOUT_MAX: Duration = Duration::from_secs(12 * 3600);
/// Lambda: a function times out after at most 15 min.
pub const LAMBDA_TIMEOUT_MAX: Duration = Duration::from_secs(900);
/// The most receipts one trial may hold (ids pack the receipt into 40 bits; memory is the bound).
pub const RECEIPTS_MAX: u64 = 20_000_000;
/// The most words a generated line may hold (a `u8` in `Receipt`).
pub const WORDS_PER_LINE_GENERATED_MAX: f64 = 255.0;
/// The longest horizon of a trial: ten years of virtual time.
pub const HORIZON_MAX: Duration = Duration::from_secs(3650 * 86_400);
/// The shortest poll period or heartbeat interval: a millisecond.
pub const PERIOD_MIN: Duration = Duration::from_millis(1);
/// The most polls (or heartbeats) one wait (or one lock holding) may take: the period must be at
/// least the span it covers over this many.
pub const PERIODS_PER_SPAN_MAX: u64 = 10_000;
/// The most memory a trial may need, as estimated from its shape before it starts.
pub const TRIAL_BYTES_MAX: u64 = 12 << 30;
/// Estimated bytes a word of the trial holds over the whole trial (its items, ids, snapshots).
pub const BYTES_PER_WORD: f64 = 90.0;
/// Estimated bytes a label of a receipt in flight holds (its messages and deltas).
pub const BYTES_PER_LABEL_IN_FLIGHT: f64 = 1024.0;
/// The most snapshot versions a container caches or the store keeps.
pub const VERSIONS_MAX: u32 = 64;
/// The fewest and the most bytes one id adds to a snapshot.
pub const BYTES_PER_ENTRY_MAX: u64 = 1 << 20;
/// The slowest bandwidth of the object store, bytes per second.
pub const BYTES_PER_S_MIN: f64 = 1e6;
/// The most receive limits and retries: more only spins the model.
pub const RECEIVE_LIMIT_MAX: u32 = 1000;
/// The most concurrent batches a queue mapping may be given (the service stops at 1 000–1 250).
pub const POLLERS_MAX: u32 = 1250;

/// Which upload flow runs: the old one waits for the compaction before LangGraph, the new does not.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    Old,
    New,
}

/// An invalid configuration value: the dotted path of the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    #[serde(with = "crate::random::seed_serde")]
    pub seed: u64,
    pub flow: Flow,
    /// The trial stops at this virtual time even if work remains.
    pub horizon: Duration,
    pub workload: WorkloadConfig,
    pub upload: UploadConfig,
    pub stream: StreamConfig,
    pub stream_processor: StreamProcessorConfig,
    pub queues: QueuesConfig,
    pub compaction: CompactionConfig,
    pub wait: WaitConfig,
    pub store: StoreConfig,
    pub chroma: ChromaConfig,
    pub faults: FaultsConfig,
    pub live: LiveConfig,
}

/// What the upload Lambda does when a delta upload fails.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaUploadError {
    /// *built:* the failure is ignored and the run is inserted anyway.
    Ignore,
    /// The upload is retried until it succeeds (bounded by `delta_upload_tries_max`).
    Retry,
}

/// When the upload queue's messages of a batch are deleted.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadBatchDeletion {
    /// The mapping deletes the whole batch when the function returns, and a function error or
    /// timeout returns every message of it, records already handled included ("if your function
    /// returns an error ... the messages in the batch become visible again": AWS Lambda Developer
    /// Guide, with-sqs.html). The code at 54acc5869 neither deletes a record itself nor reports
    /// partial batch failures (infra/upload_images/container_ocr/handler/handler.py,
    /// `lambda_handler`, loops over `event["Records"]` and returns 200;
    /// infra/upload_images/infra.py, the `ocr-results-mapping`, sets no function_response_types),
    /// so a timed-out batch embeds its finished receipts again.
    WhenFunctionReturns,
    /// Each record's message is deleted as soon as the record is handled: a timeout returns only
    /// the unfinished records.
    PerRecord,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Concurrency of the upload Lambda. The function at 54acc5869 reserves none
    /// (infra/upload_images/infra.py, `process_ocr_lambda_config`, has no
    /// reserved_concurrent_executions), so it shares the account's pool: 1 000 concurrent
    /// executions per Region by default (AWS Lambda Developer Guide, gettingstarted-limits.html).
    pub concurrency: u32,
    /// Receipts per invocation (SQS trigger), handled in sequence (infra.py: batch_size=10).
    pub batch_size: u32,
    /// The function's timeout (infra.py: "timeout": 600); a timeout kills the invocation mid-receipt.
    pub timeout: Duration,
    /// Which of a batch's messages a timeout returns to the upload queue.
    pub batch_deletion: UploadBatchDeletion,
    pub queue_visibility_timeout: Duration,
    pub ocr: DurationDist,
    pub merchant_resolution: DurationDist,
    pub embedding: DurationDist,
    pub delta_upload: DurationDist,
    /// Probability that one delta upload fails.
    pub delta_upload_error_share: f64,
    pub delta_upload_error: DeltaUploadError,
    pub delta_upload_tries_max: u32,
    pub langgraph: DurationDist,
    /// One DynamoDB write as the upload Lambda sees it (reads are charged no time).
    pub table_operation: DurationDist,
    /// Whether the upload queue has a redrive policy (a dead-letter queue). The deployment at
    /// 54acc5869 has none (infra/upload_images/infra.py line 142, the ocr-results queue:
    /// `redrive_policy=None,  # No DLQ for now`): a message past any receive count keeps coming
    /// back until the queue's retention period (345 600 s, line 140) deletes it.
    pub dead_letter_queue: bool,
    /// The upload queue's receive limit, with a dead-letter queue (then the receipt is
    /// dead-lettered); without one it has no effect.
    pub queue_receive_limit: u32,
    /// This share of invocations on a reused container starts cold (a new container always does).
    pub cold_start_share: f64,
    pub cold_start: DurationDist,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    pub shards: u32,
    /// Feed the OCR'd line and word items' INSERT records to the stream (they are routed nowhere,
    /// but they fill batches and cost the stream processor time).
    pub ocr_records: bool,
    /// The mapping polls each shard this often.
    pub poll_interval: Duration,
    pub batch_size: u32,
    pub batching_window: Duration,
    pub parallelization_factor: u32,
    pub retry_limit: u32,
    pub bisect_on_error: bool,
    pub record_age_max: Duration,
}

/// Whether INSERTs other than a CompactionRun's produce messages.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtherInserts {
    /// *built:* a new label or new metadata produces no message.
    Drop,
    /// A new label or new metadata is routed like a MODIFY.
    Forward,
}

/// The "run completed" message builder (a CompactionRun MODIFY to COMPLETED).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunCompletedMessage {
    Works,
    /// *built:* it always fails and sends nothing.
    Fails,
}

/// How the FIFO message group of a label or metadata message is keyed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageGroupKey {
    /// `{entity}:{receipt number}:{collection}`, as the code keys it (both profiles): shared by
    /// receipt 1 of every image.
    Receipt,
    /// `{entity}:{image}:{receipt}:{collection}`, one group per receipt.
    ImageReceipt,
    /// One group per collection: total order, no parallelism.
    Collection,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamProcessorConfig {
    pub reserved_concurrency: u32,
    pub timeout: Duration,
    pub other_inserts: OtherInserts,
    pub run_completed_message: RunCompletedMessage,
    pub message_group: MessageGroupKey,
    /// Time to route one record.
    pub record_handling: DurationDist,
    /// Messages per SendMessageBatch call.
    pub send_batch_size: u32,
    pub send_batch: DurationDist,
    pub cold_start_share: f64,
    pub cold_start: DurationDist,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    Fifo,
    Standard,
}

/// How a compaction queue's event source mapping receives.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingPollers {
    /// The service: the mapping's pollers receive whether or not the function has room; a batch
    /// the function's concurrency refuses is throttled, stays invisible until its visibility
    /// timeout and has cost a receive (AWS Lambda Developer Guide, "Configuring scaling behavior
    /// for SQS event source mappings", services-sqs-scaling.html).
    Independent,
    /// A receive only when an invocation can start: no throttle ever costs a receive.
    FunctionCapacity,
}

/// How a compaction invocation reports failed messages.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReporting {
    /// Failed message ids are reported; the others are deleted.
    PerItem,
    /// *built:* receipt handles are reported instead of ids, so the whole batch counts as failed.
    WholeBatch,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueuesConfig {
    pub kind: QueueKind,
    pub visibility_timeout: Duration,
    pub retention: Duration,
    /// After this many receives a message moves to the dead-letter queue.
    pub receive_limit: u32,
    pub batch_size: u32,
    /// The compaction mappings wait this long for a batch to fill (0: take what is there).
    pub batching_window: Duration,
    /// Standard queues: probability that a send is delivered twice.
    pub duplicate_share: f64,
    pub deduplication_window: Duration,
    /// The compaction mapping polls each queue this often when it is empty, and backs off this
    /// long after a throttled batch.
    pub poll_interval: Duration,
    /// Whether the mappings' pollers receive regardless of the function's concurrency.
    pub mapping_pollers: MappingPollers,
    /// Standard queues: the concurrent batches a mapping starts with (5), the batches it adds per
    /// minute while messages remain (300) and its most (1 000), per services-sqs-scaling.html.
    /// FIFO queues have at most one batch in flight per message group instead.
    pub pollers_initial: u32,
    pub pollers_added_per_minute: u32,
    pub pollers_max: u32,
    /// The mapping's `ScalingConfig.MaximumConcurrency` (2..=1000): the most invocations it
    /// starts at once; 0 leaves it unset, as the code at 54acc5869 does
    /// (infra/chromadb_compaction/components/lambda_functions.py,
    /// `_create_event_source_mappings`, sets no scaling_config).
    pub maximum_concurrency: u32,
}

/// What the publish compares to see that the pointer moved since the invocation read it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftCheck {
    /// The pointer's text, the version id, as the code at 54acc5869 does
    /// (infra/chromadb_compaction/lambdas/enhanced_compaction_handler.py keeps
    /// `expected_pointer = dl.get("version_id")`): a version id reused within its resolution
    /// looks unchanged.
    VersionId,
    /// The pointer object's etag, which changes with every write.
    Etag,
}

/// Whether the publish re-reads the lock (owner and expiry) before the upload and again before
/// the pointer write.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnershipCheck {
    /// As the code at 54acc5869 does (`upload_snapshot_atomic` in
    /// receipt_label/receipt_label/utils/chroma_s3_helpers.py calls
    /// `LockManager.validate_ownership`, lock_manager.py, before the upload and before the
    /// pointer write): check then act, not atomic.
    BeforeUploadAndPointer,
    /// No re-check: the lock taken at publish is trusted to the end.
    Off,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointerPromotion {
    /// Conditional write on the etag read before the heavy work.
    Cas,
    /// Unconditional overwrite: the last writer wins.
    Blind,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpsertMode {
    /// The Python-era store, the built profile's: an upsert replaces the whole metadata of an
    /// existing id. The merge at 54acc5869 upserts the delta's records, which carry no labels,
    /// over the snapshot (infra/chromadb_compaction/lambdas/compaction/compaction_run.py,
    /// `target.upsert_vectors(... metadatas=data.get("metadatas"))`), so a receipt embedded
    /// again (a new run: embedding_processor.py draws `run_id = str(uuid.uuid4())` each time)
    /// wipes the labels its words already carry.
    Replace,
    /// The 1.x server: an upsert merges keys into the existing metadata.
    Merge,
}

/// Where the compaction's file cache of snapshot versions lives.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileCacheSharing {
    /// One file system (EFS) for every compaction container, as the code at 54acc5869 mounts it
    /// (infra/chromadb_compaction/lambdas/compaction/efs_snapshot_manager.py keeps
    /// `{CHROMA_ROOT}/snapshots/{collection}/{version}`; `cleanup_old_snapshots(keep_versions=3)`
    /// removes older versions with `shutil.rmtree` after any invocation's write-back,
    /// enhanced_compaction_handler.py line 701). A version pruned while another invocation still
    /// copies it fails that copy (`shutil.copytree(efs_snapshot_path, local_snapshot_path)`,
    /// line 499, in the `try` whose `except` fails every message of the collection, "Failed
    /// during EFS setup").
    Shared,
    /// Each container its own cache (`/tmp`), lost with the container.
    PerContainer,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingId {
    /// "embedding not found": the message counts as done and is deleted.
    Drop,
    /// The message fails and comes back after the visibility timeout.
    Retry,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InBatchOrdering {
    /// Merges, then metadata, then labels, each in arrival order.
    Arrival,
    /// As `Arrival`, but label removals before the other label messages.
    RemovalsFirst,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Shared by both queue mappings.
    pub reserved_concurrency: u32,
    pub timeout: Duration,
    pub lock_lease: Duration,
    pub heartbeat_enabled: bool,
    pub heartbeat_interval: Duration,
    /// Waits before each further try to take the lock at publish (two tries after 0.1 s and 0.2 s).
    pub publish_lock_retry_delays: Vec<Duration>,
    pub pointer_promotion: PointerPromotion,
    pub drift_check: DriftCheck,
    pub ownership_check: OwnershipCheck,
    /// Version ids are `floor(now / resolution)`: two publishes in one tick reuse an id.
    pub version_id_resolution: Duration,
    pub upsert: UpsertMode,
    pub missing_id: MissingId,
    pub failure_reporting: FailureReporting,
    /// *described:* runs are marked PROCESSING and COMPLETED. *built:* never.
    pub mark_runs: bool,
    pub in_batch_ordering: InBatchOrdering,
    /// Apply at most one message per (entity, key) in a batch, the latest.
    pub deduplicate: bool,
    /// Where the compaction containers cache snapshot versions.
    pub file_cache: FileCacheSharing,
    /// Versions the file cache keeps (the write-back prunes to this many).
    pub cache_versions: u32,
    pub lock_operation: DurationDist,
    pub copy: DurationDist,
    /// Unlocked in-memory work for one collection of one batch (merges, metadata, labels).
    pub apply: DurationDist,
    /// Extra in-memory work per id touched.
    pub apply_per_id: Duration,
    pub delta_download: DurationDist,
    pub write_back: DurationDist,
    /// This share of invocations on a reused container starts cold (a new container always does).
    pub cold_start_share: f64,
    pub cold_start: DurationDist,
    /// Fix: after merging a delta, read the receipt's label items and ReceiptMetadata from
    /// DynamoDB and write the derived label fields and the merchant onto every merged id, so a
    /// change written before the merge is not lost.
    pub sync_from_table_on_merge: bool,
}

/// Where an injected compaction stall takes effect.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StallPoint {
    /// After the unlocked work, before the first try to take the publish lock: the batch's
    /// visibility timeout may run out, so the batch is received again while this one still runs.
    BeforePublish,
    /// Under the publish lock, before the pointer re-read: without heartbeats the lease may expire
    /// and a second holder get in.
    HoldingLock,
    /// Under the publish lock, after the pointer re-read, during the snapshot upload: a second
    /// holder let in by an expired lease publishes first, and this holder's pointer write then
    /// replaces it with a version built on a stale base.
    Uploading,
}

/// Injected faults, all off by default. Each share is drawn from its own named stream, so turning
/// one fault on shifts no other draw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsConfig {
    /// Share of compaction invocations that stall at `compaction_stall_point` (the function's
    /// timeout still kills a stalled invocation).
    pub compaction_stall_share: f64,
    pub compaction_stall: DurationDist,
    pub compaction_stall_point: StallPoint,
    /// Share of pointer writes after which the compaction invocation dies at once: its messages are
    /// neither deleted nor failed (they come back after the visibility timeout), the lock is not
    /// released (it stays until its lease expires) and the cache write-back does not happen.
    pub kill_after_pointer_share: f64,
    /// Share of stream processor invocations that fail after sending their messages: the mapping
    /// retries the batch, which re-sends them with a new send time.
    pub stream_retry_share: f64,
    /// Share of compaction invocation starts that are throttled: the mapping has received the batch,
    /// the invocation is refused, the messages become visible again after the visibility timeout
    /// (the receive counts towards the receive limit) and the mapping backs off one poll interval.
    pub throttle_share: f64,
    /// Share of the compaction's Chroma operations (delta upsert, get, update, delete) that fail
    /// as unavailable. The compaction handles the failure as the real code does: a failed upsert
    /// loses the delta, a failed label or metadata update is logged and dropped (retried under
    /// `missing_id = "retry"`).
    pub collection_error_share: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WaitConfig {
    /// Old flow: poll the CompactionRun this often ...
    pub poll_period: Duration,
    /// ... for at most this long, then go on regardless.
    pub cap: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Snapshot versions kept under `snapshot/timestamped/`.
    pub keep_versions: u32,
    /// Bytes one id (embedding plus metadata) adds to a snapshot.
    pub bytes_per_entry: u64,
    pub download_fixed: DurationDist,
    pub download_bytes_per_s: f64,
    pub upload_fixed: DurationDist,
    pub upload_bytes_per_s: f64,
    pub copy_bytes_per_s: f64,
    pub pointer_operation: DurationDist,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChromaConfig {
    /// The delta carries the label fields DynamoDB holds when the embeddings are computed.
    pub labels_known_at_embed: bool,
}

/// Where the durations of a live trial's object-store and Chroma effects come from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Timing {
    /// The scenario's distributions: a live trial takes the pure simulation's decisions.
    Model,
    /// Each effect's measured wall time, times `time_scale`, advances virtual time.
    Real,
}

impl Timing {
    pub const NAMES: [&'static str; 2] = ["model", "real"];
    pub fn parse(text: &str) -> Option<Timing> {
        match text {
            "model" => Some(Timing::Model),
            "real" => Some(Timing::Real),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Timing::Model => "model",
            Timing::Real => "real",
        }
    }
}

/// The largest `live.time_scale`: a measured second counts at most a day of virtual time.
pub const TIME_SCALE_MAX: f64 = 86_400.0;
/// The largest `live.dimension` of a record's embedding.
pub const DIMENSION_MAX: u32 = 65_536;

/// The backends of `receipt-sim live` (its flags override these); a pure trial ignores them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// The ChromaDB server's URL; empty: `--chroma` must give it.
    pub chroma: String,
    /// `memory://`, `file:///DIR` or `s3://BUCKET`.
    pub store: String,
    pub timing: Timing,
    /// Virtual time per measured wall time, in real timing.
    pub time_scale: f64,
    /// Embedding dimension of the records.
    pub dimension: u32,
    /// The Chroma client's timeout of one request (each of its bounded tries).
    pub chroma_timeout: Duration,
    /// Injected store faults during the trial: the share of store reads, writes and copies that
    /// fail, and the share that first wait `store_delay`.
    pub store_error_share: f64,
    pub store_delay_share: f64,
    pub store_delay: Duration,
}

/// The longest `live.chroma_timeout` and `live.store_delay`.
pub const CHROMA_TIMEOUT_MAX: Duration = Duration::from_secs(3600);

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            chroma: String::new(),
            store: "memory://".to_string(),
            timing: Timing::Model,
            time_scale: 1.0,
            dimension: 16,
            chroma_timeout: Duration::from_secs(30),
            store_error_share: 0.0,
            store_delay_share: 0.0,
            store_delay: Duration::ZERO,
        }
    }
}

impl LiveConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_time_scale(self.time_scale).map_err(|message| ConfigError {
            field: "live.time_scale".to_string(),
            message,
        })?;
        check(
            (1..=DIMENSION_MAX).contains(&self.dimension),
            "live.dimension",
            "must lie in 1..=65536",
        )?;
        check(
            self.chroma_timeout >= Duration::from_millis(1)
                && self.chroma_timeout <= CHROMA_TIMEOUT_MAX,
            "live.chroma_timeout",
            "must lie in [1ms, 1h]",
        )?;
        check_share(self.store_error_share, "live.store_error_share")?;
        check_share(self.store_delay_share, "live.store_delay_share")?;
        check(
            self.store_delay <= CHROMA_TIMEOUT_MAX,
            "live.store_delay",
            "must be at most 1h",
        )?;
        check(!self.store.is_empty(), "live.store", "must name a store")
    }
}

/// A time scale in (0, `TIME_SCALE_MAX`], or what is wrong with it.
pub fn check_time_scale(scale: f64) -> Result<(), String> {
    if scale.is_finite() && scale > 0.0 && scale <= TIME_SCALE_MAX {
        Ok(())
    } else {
        Err(format!("{scale} is not in (0, {TIME_SCALE_MAX}]"))
    }
}

fn duration_dist(text: &str) -> DurationDist {
    DurationDist::parse(text).unwrap_or_else(|error| panic!("default `{text}`: {error}"))
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            seed: 1,
            flow: Flow::Old,
            horizon: Duration::from_secs(7 * 86_400),
            workload: WorkloadConfig::default(),
            upload: UploadConfig::default(),
            stream: StreamConfig::default(),
            stream_processor: StreamProcessorConfig::default(),
            queues: QueuesConfig::default(),
            compaction: CompactionConfig::default(),
            wait: WaitConfig::default(),
            store: StoreConfig::default(),
            chroma: ChromaConfig::default(),
            faults: FaultsConfig::default(),
            live: LiveConfig::default(),
        }
    }
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            concurrency: 1000,
            batch_size: 10,
            timeout: Duration::from_secs(600),
            batch_deletion: UploadBatchDeletion::WhenFunctionReturns,
            queue_visibility_timeout: Duration::from_secs(900),
            ocr: duration_dist("uniform(15s, 30s)"),
            merchant_resolution: duration_dist("uniform(0.5s, 2s)"),
            embedding: duration_dist("uniform(15s, 30s)"),
            delta_upload: duration_dist("uniform(100ms, 500ms)"),
            delta_upload_error_share: 0.0,
            delta_upload_error: DeltaUploadError::Retry,
            delta_upload_tries_max: 3,
            langgraph: duration_dist("mixture(0.99 * uniform(20s, 30s), 0.01 * 42.3s)"),
            table_operation: duration_dist("uniform(5ms, 20ms)"),
            dead_letter_queue: false,
            queue_receive_limit: 3,
            cold_start_share: 0.01,
            cold_start: duration_dist("uniform(100ms, 1.5s)"),
        }
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            shards: 4,
            ocr_records: false,
            poll_interval: Duration::from_millis(250),
            batch_size: 10,
            batching_window: Duration::from_secs(1),
            parallelization_factor: 1,
            retry_limit: 3,
            bisect_on_error: true,
            record_age_max: Duration::from_secs(3600),
        }
    }
}

impl Default for StreamProcessorConfig {
    fn default() -> Self {
        StreamProcessorConfig {
            reserved_concurrency: 1,
            timeout: Duration::from_secs(120),
            other_inserts: OtherInserts::Forward,
            run_completed_message: RunCompletedMessage::Works,
            message_group: MessageGroupKey::Receipt,
            record_handling: duration_dist("uniform(1ms, 5ms)"),
            send_batch_size: 10,
            send_batch: duration_dist("uniform(10ms, 30ms)"),
            cold_start_share: 0.01,
            cold_start: duration_dist("uniform(100ms, 1.5s)"),
        }
    }
}

impl Default for QueuesConfig {
    fn default() -> Self {
        QueuesConfig {
            kind: QueueKind::Fifo,
            visibility_timeout: Duration::from_secs(1200),
            retention: Duration::from_secs(4 * 86_400),
            receive_limit: 3,
            batch_size: 10,
            batching_window: Duration::ZERO,
            duplicate_share: 0.0,
            deduplication_window: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
            mapping_pollers: MappingPollers::Independent,
            pollers_initial: 5,
            pollers_added_per_minute: 300,
            pollers_max: 1000,
            maximum_concurrency: 0,
        }
    }
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            reserved_concurrency: 10,
            timeout: Duration::from_secs(300),
            lock_lease: Duration::from_secs(180),
            heartbeat_enabled: true,
            heartbeat_interval: Duration::from_secs(30),
            publish_lock_retry_delays: vec![Duration::from_millis(100), Duration::from_millis(200)],
            pointer_promotion: PointerPromotion::Blind,
            drift_check: DriftCheck::VersionId,
            ownership_check: OwnershipCheck::BeforeUploadAndPointer,
            version_id_resolution: Duration::from_secs(1),
            upsert: UpsertMode::Merge,
            missing_id: MissingId::Drop,
            failure_reporting: FailureReporting::PerItem,
            mark_runs: true,
            in_batch_ordering: InBatchOrdering::Arrival,
            deduplicate: false,
            file_cache: FileCacheSharing::Shared,
            cache_versions: 3,
            lock_operation: duration_dist("uniform(50ms, 150ms)"),
            copy: duration_dist("uniform(1s, 3s)"),
            apply: duration_dist("uniform(3s, 4s)"),
            apply_per_id: Duration::from_micros(20),
            delta_download: duration_dist("uniform(100ms, 300ms)"),
            write_back: duration_dist("uniform(1s, 2s)"),
            cold_start_share: 0.01,
            cold_start: duration_dist("uniform(100ms, 1.5s)"),
            sync_from_table_on_merge: false,
        }
    }
}

impl Default for FaultsConfig {
    fn default() -> Self {
        FaultsConfig {
            compaction_stall_share: 0.0,
            compaction_stall: duration_dist("uniform(2m, 4m)"),
            compaction_stall_point: StallPoint::BeforePublish,
            kill_after_pointer_share: 0.0,
            stream_retry_share: 0.0,
            throttle_share: 0.0,
            collection_error_share: 0.0,
        }
    }
}

impl Default for WaitConfig {
    fn default() -> Self {
        WaitConfig {
            poll_period: Duration::from_secs(2),
            cap: Duration::from_secs(120),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            keep_versions: 4,
            // About 674 MB for about 96 000 ids: a 1536-dimension embedding plus metadata.
            bytes_per_entry: 7_000,
            download_fixed: duration_dist("uniform(50ms, 150ms)"),
            download_bytes_per_s: 135e6,
            upload_fixed: duration_dist("uniform(2s, 3s)"),
            upload_bytes_per_s: 56e6,
            copy_bytes_per_s: 700e6,
            pointer_operation: duration_dist("uniform(10ms, 40ms)"),
        }
    }
}

impl PipelineConfig {
    /// The described profile (the same as `Default`).
    pub fn described() -> PipelineConfig {
        PipelineConfig::default()
    }

    /// The built profile: the described one with every item PIPELINE.md marks *built:*.
    pub fn built() -> PipelineConfig {
        let mut config = PipelineConfig::default();
        config.upload.delta_upload_error = DeltaUploadError::Ignore;
        config.stream_processor.other_inserts = OtherInserts::Drop;
        config.stream_processor.run_completed_message = RunCompletedMessage::Fails;
        config.compaction.failure_reporting = FailureReporting::WholeBatch;
        config.compaction.mark_runs = false;
        config.compaction.upsert = UpsertMode::Replace;
        config
    }

    /// Rejects values no real deployment could have, and shapes the model cannot honour: a
    /// trial of a valid configuration needs a bounded memory and a bounded number of events.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(self.horizon > Duration::ZERO, "horizon", "must be positive")?;
        check(
            self.horizon <= HORIZON_MAX,
            "horizon",
            "must be at most 3650d (ten years)",
        )?;
        self.workload.validate()?;
        self.upload.validate()?;
        self.stream.validate()?;
        self.stream_processor.validate()?;
        self.queues.validate()?;
        self.compaction.validate(&self.queues)?;
        self.wait.validate()?;
        self.store.validate()?;
        self.faults.validate()?;
        self.live.validate()?;
        check_durations(self)?;
        self.check_memory()
    }

    /// The receipts a generated trial holds at most.
    fn receipts_max(&self) -> u64 {
        match self.workload.arrival {
            ArrivalProcess::Trace => self.workload.receipts.min(self.workload.trace.len() as u64),
            ArrivalProcess::Poisson | ArrivalProcess::Bursts => self.workload.receipts,
        }
    }

    /// Estimated bytes a trial of this shape needs: each word's share over the whole trial, and
    /// the labels of the receipts in flight at once.
    pub fn memory_estimate_bytes(&self) -> u64 {
        let workload = &self.workload;
        let words_per_receipt =
            workload.lines_per_receipt.mean().max(0.0) * workload.words_per_line.mean().max(0.0);
        let labels_per_receipt = words_per_receipt * workload.labels_per_word.mean().max(1.0);
        let receipts = self.receipts_max() as f64;
        let in_flight = receipts.min(f64::from(self.upload.concurrency));
        let bytes = receipts * words_per_receipt * BYTES_PER_WORD
            + in_flight * labels_per_receipt * BYTES_PER_LABEL_IN_FLIGHT;
        bytes.min(u64::MAX as f64) as u64
    }

    fn check_memory(&self) -> Result<(), ConfigError> {
        let bytes = self.memory_estimate_bytes();
        if bytes <= TRIAL_BYTES_MAX {
            return Ok(());
        }
        let workload = &self.workload;
        let words_per_receipt = workload.lines_per_receipt.mean() * workload.words_per_line.mean();
        let field = if words_per_receipt > 10_000.0 {
            "workload.words_per_line"
        } else {
            "workload.receipts"
        };
        Err(ConfigError {
            field: field.to_string(),
            message: format!(
                "a trial of {} receipts of about {words_per_receipt:.0} words each needs about                  {:.1} GiB, more than the {} GiB a trial may take; lower workload.receipts,                  workload.lines_per_receipt or workload.words_per_line",
                self.receipts_max(),
                bytes as f64 / f64::from(1u32 << 30),
                TRIAL_BYTES_MAX >> 30
            ),
        })
    }

    /// The most events a trial of this shape and `receipts` receipts (at least those it
    /// generates) may take before it is stopped as one that does not settle: far more than any
    /// trial of the shape takes (a few hundred per receipt and a few per word), so a trial that
    /// reaches it spins.
    pub fn event_limit(&self, receipts: u64) -> u64 {
        let workload = &self.workload;
        let words_per_receipt = workload.lines_per_receipt.mean().max(0.0)
            * workload.words_per_line.mean().max(0.0)
            * workload.labels_per_word.mean().max(1.0);
        let receipts = self.receipts_max().max(receipts) as f64;
        let events = 10_000_000.0 + receipts * (100_000.0 + 1_000.0 * words_per_receipt);
        events.min(u64::MAX as f64) as u64
    }
}

impl WaitConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_period(self.poll_period, self.cap, "wait.poll_period", "wait.cap")
    }
}

/// A period (polls, heartbeats) of at least `PERIOD_MIN` and at least `span` over
/// `PERIODS_PER_SPAN_MAX`, so one span takes a bounded number of periods.
fn check_period(
    period: Duration,
    span: Duration,
    field: &str,
    span_field: &str,
) -> Result<(), ConfigError> {
    check(
        period >= PERIOD_MIN,
        field,
        format_args!("must be at least {PERIOD_MIN}"),
    )?;
    let floor = Duration::from_nanos(span.as_nanos() / PERIODS_PER_SPAN_MAX);
    check(
        period >= floor,
        field,
        format_args!(
            "must be at least {floor}: `{span_field}` ({span}) over {PERIODS_PER_SPAN_MAX} periods"
        ),
    )
}

/// Every duration and the mean of every duration distribution at most the longest horizon, so
/// that no instant of a trial comes near `Instant::MAX`.
fn check_durations(config: &PipelineConfig) -> Result<(), ConfigError> {
    check_distribution_means(config)?;
    check_fixed_durations(config)?;
    check_arrival_times(config)
}

/// The mean of every duration distribution at most the longest horizon.
fn check_distribution_means(config: &PipelineConfig) -> Result<(), ConfigError> {
    let upload = &config.upload;
    let processor = &config.stream_processor;
    let compaction = &config.compaction;
    let store = &config.store;
    let dists: [(&DurationDist, &str); 20] = [
        (&upload.ocr, "upload.ocr"),
        (&upload.merchant_resolution, "upload.merchant_resolution"),
        (&upload.embedding, "upload.embedding"),
        (&upload.delta_upload, "upload.delta_upload"),
        (&upload.langgraph, "upload.langgraph"),
        (&upload.table_operation, "upload.table_operation"),
        (&upload.cold_start, "upload.cold_start"),
        (
            &processor.record_handling,
            "stream_processor.record_handling",
        ),
        (&processor.send_batch, "stream_processor.send_batch"),
        (&processor.cold_start, "stream_processor.cold_start"),
        (&compaction.lock_operation, "compaction.lock_operation"),
        (&compaction.copy, "compaction.copy"),
        (&compaction.apply, "compaction.apply"),
        (&compaction.delta_download, "compaction.delta_download"),
        (&compaction.write_back, "compaction.write_back"),
        (&compaction.cold_start, "compaction.cold_start"),
        (&store.download_fixed, "store.download_fixed"),
        (&store.upload_fixed, "store.upload_fixed"),
        (&store.pointer_operation, "store.pointer_operation"),
        (&config.faults.compaction_stall, "faults.compaction_stall"),
    ];
    for (dist, field) in dists {
        check(
            dist.mean() <= HORIZON_MAX,
            field,
            "the mean must be at most 3650d (ten years)",
        )?;
    }
    Ok(())
}

/// Every fixed duration (and publish retry delay) at most the longest horizon.
fn check_fixed_durations(config: &PipelineConfig) -> Result<(), ConfigError> {
    let compaction = &config.compaction;
    let delay_max = compaction.publish_lock_retry_delays.iter().copied().max();
    check(
        delay_max.is_none_or(|delay| delay <= HORIZON_MAX),
        "compaction.publish_lock_retry_delays",
        "each delay must be at most 3650d (ten years)",
    )?;
    let durations: [(Duration, &str); 9] = [
        (compaction.apply_per_id, "compaction.apply_per_id"),
        (config.queues.retention, "queues.retention"),
        (
            config.queues.deduplication_window,
            "queues.deduplication_window",
        ),
        (config.stream.record_age_max, "stream.record_age_max"),
        (config.stream.poll_interval, "stream.poll_interval"),
        (config.queues.poll_interval, "queues.poll_interval"),
        (compaction.lock_lease, "compaction.lock_lease"),
        (
            compaction.version_id_resolution,
            "compaction.version_id_resolution",
        ),
        (config.wait.cap, "wait.cap"),
    ];
    for (duration, field) in durations {
        check(
            duration <= HORIZON_MAX,
            field,
            "must be at most 3650d (ten years)",
        )?;
    }
    Ok(())
}

/// Every burst's and trace's arrival time at most the longest horizon.
fn check_arrival_times(config: &PipelineConfig) -> Result<(), ConfigError> {
    let at_max = config.workload.bursts.iter().map(|burst| burst.at).max();
    let trace_max = config.workload.trace.iter().copied().max();
    for (at, field) in [(at_max, "workload.bursts"), (trace_max, "workload.trace")] {
        check(
            at.is_none_or(|at| at <= HORIZON_MAX),
            field,
            "arrival times must be at most 3650d (ten years)",
        )?;
    }
    Ok(())
}

/// `message` is formatted only when the check fails: a trial's configuration is checked often
/// (every candidate of a shrink), and formatting its durations cost more than the checks.
fn check(condition: bool, field: &str, message: impl fmt::Display) -> Result<(), ConfigError> {
    if condition {
        Ok(())
    } else {
        Err(ConfigError {
            field: field.to_string(),
            message: message.to_string(),
        })
    }
}

fn check_share(value: f64, field: &str) -> Result<(), ConfigError> {
    check(
        value.is_finite() && (0.0..=1.0).contains(&value),
        field,
        "must be a share in [0, 1]",
    )
}

fn check_number_bounds(
    dist: &NumberDist,
    low: f64,
    high: f64,
    field: &str,
) -> Result<(), ConfigError> {
    let (min, max) = dist.bounds();
    if min >= low && max <= high {
        return Ok(());
    }
    Err(ConfigError {
        field: field.to_string(),
        message: format!("values must lie in [{low}, {high}], `{dist}` reaches [{min}, {max}]"),
    })
}

impl WorkloadConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.receipts <= RECEIPTS_MAX,
            "workload.receipts",
            "too many receipts for one trial",
        )?;
        self.check_arrivals()?;
        self.check_shapes()
    }

    /// The arrival process's own parameters, and bounds on the bursts and the trace.
    fn check_arrivals(&self) -> Result<(), ConfigError> {
        match self.arrival {
            ArrivalProcess::Poisson => check(
                self.rate_per_hour.is_finite() && self.rate_per_hour > 0.0,
                "workload.rate_per_hour",
                "must be a positive rate",
            )?,
            ArrivalProcess::Bursts => check(
                self.bursts
                    .iter()
                    .map(|burst| burst.receipts.min(RECEIPTS_MAX))
                    .fold(0u64, u64::saturating_add)
                    >= self.receipts,
                "workload.bursts",
                "the bursts must hold at least `workload.receipts` receipts",
            )?,
            ArrivalProcess::Trace => check(
                self.trace.windows(2).all(|pair| pair[0] <= pair[1]),
                "workload.trace",
                "arrival times must not decrease",
            )?,
        }
        check(
            self.bursts.len() as u64 <= RECEIPTS_MAX,
            "workload.bursts",
            "too many bursts for one trial",
        )?;
        check(
            self.trace.len() as u64 <= RECEIPTS_MAX,
            "workload.trace",
            "too many arrival times for one trial",
        )
    }

    /// The bounds of the distributions that shape receipts: images, lines, words and labels.
    fn check_shapes(&self) -> Result<(), ConfigError> {
        let bounds: [(&NumberDist, f64, f64, &str); 9] = [
            (
                &self.receipts_per_image,
                0.0,
                1000.0,
                "workload.receipts_per_image",
            ),
            (
                &self.lines_per_receipt,
                0.0,
                4095.0,
                "workload.lines_per_receipt",
            ),
            (
                &self.words_per_line,
                0.0,
                WORDS_PER_LINE_GENERATED_MAX,
                "workload.words_per_line",
            ),
            (
                &self.noise_word_share,
                0.0,
                1.0,
                "workload.noise_word_share",
            ),
            (&self.labels_per_word, 0.0, 16.0, "workload.labels_per_word"),
            (
                &self.changed_label_share,
                0.0,
                1.0,
                "workload.changed_label_share",
            ),
            (
                &self.removed_label_share,
                0.0,
                1.0,
                "workload.removed_label_share",
            ),
            (
                &self.older_label_share,
                0.0,
                1.0,
                "workload.older_label_share",
            ),
            (
                &self.merchant_correction_share,
                0.0,
                1.0,
                "workload.merchant_correction_share",
            ),
        ];
        for (dist, low, high, field) in bounds {
            check_number_bounds(dist, low, high, field)?;
        }
        Ok(())
    }
}

impl UploadConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.concurrency > 0,
            "upload.concurrency",
            "must be at least 1",
        )?;
        check(
            (1..=FIFO_BATCH_SIZE_MAX).contains(&self.batch_size),
            "upload.batch_size",
            "must lie in 1..=10",
        )?;
        check(
            self.timeout > Duration::ZERO && self.timeout <= LAMBDA_TIMEOUT_MAX,
            "upload.timeout",
            "must lie in (0, 15m]",
        )?;
        check(
            self.queue_visibility_timeout >= self.timeout,
            "upload.queue_visibility_timeout",
            "must be at least the function timeout",
        )?;
        check_share(
            self.delta_upload_error_share,
            "upload.delta_upload_error_share",
        )?;
        check(
            (1..=RECEIVE_LIMIT_MAX).contains(&self.delta_upload_tries_max),
            "upload.delta_upload_tries_max",
            "must lie in 1..=1000",
        )?;
        check(
            (1..=RECEIVE_LIMIT_MAX).contains(&self.queue_receive_limit),
            "upload.queue_receive_limit",
            "must lie in 1..=1000",
        )?;
        check(
            self.concurrency <= 100_000,
            "upload.concurrency",
            "must be at most 100000",
        )?;
        check_share(self.cold_start_share, "upload.cold_start_share")
    }
}

impl StreamConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=1024).contains(&self.shards),
            "stream.shards",
            "must lie in 1..=1024",
        )?;
        check(
            self.poll_interval >= PERIOD_MIN,
            "stream.poll_interval",
            "must be at least 1ms",
        )?;
        check(
            (1..=STREAM_BATCH_SIZE_MAX).contains(&self.batch_size),
            "stream.batch_size",
            "must lie in 1..=10000",
        )?;
        check(
            self.batching_window <= Duration::from_secs(300),
            "stream.batching_window",
            "must be at most 300s",
        )?;
        check(
            (1..=10).contains(&self.parallelization_factor),
            "stream.parallelization_factor",
            "must lie in 1..=10",
        )?;
        check(
            self.retry_limit <= 10_000,
            "stream.retry_limit",
            "must be at most 10000",
        )?;
        check(
            self.record_age_max > Duration::ZERO,
            "stream.record_age_max",
            "must be positive",
        )
    }
}

impl StreamProcessorConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=100_000).contains(&self.reserved_concurrency),
            "stream_processor.reserved_concurrency",
            "must lie in 1..=100000",
        )?;
        check(
            self.timeout > Duration::ZERO && self.timeout <= LAMBDA_TIMEOUT_MAX,
            "stream_processor.timeout",
            "must lie in (0, 15m]",
        )?;
        check_share(self.cold_start_share, "stream_processor.cold_start_share")?;
        check(
            (1..=10).contains(&self.send_batch_size),
            "stream_processor.send_batch_size",
            "must lie in 1..=10 (SendMessageBatch)",
        )
    }
}

impl QueuesConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.visibility_timeout <= VISIBILITY_TIMEOUT_MAX,
            "queues.visibility_timeout",
            "must be at most 12h",
        )?;
        check(
            self.receive_limit > 0,
            "queues.receive_limit",
            "must be at least 1",
        )?;
        check(
            self.receive_limit <= 1000,
            "queues.receive_limit",
            "must be at most 1000",
        )?;
        let batch_size_max = match self.kind {
            QueueKind::Fifo => FIFO_BATCH_SIZE_MAX,
            QueueKind::Standard => STANDARD_BATCH_SIZE_MAX,
        };
        check(
            (1..=batch_size_max).contains(&self.batch_size),
            "queues.batch_size",
            format_args!("must lie in 1..={batch_size_max} for this queue kind"),
        )?;
        check(
            self.batch_size <= 10 || self.batching_window > Duration::ZERO,
            "queues.batching_window",
            "a batch over 10 messages needs a batching window",
        )?;
        check_share(self.duplicate_share, "queues.duplicate_share")?;
        check(
            self.kind == QueueKind::Standard || self.duplicate_share == 0.0,
            "queues.duplicate_share",
            "FIFO queues do not duplicate",
        )?;
        check(
            self.retention > Duration::ZERO,
            "queues.retention",
            "must be positive",
        )?;
        check(
            self.poll_interval >= PERIOD_MIN,
            "queues.poll_interval",
            "must be at least 1ms",
        )?;
        self.validate_pollers()
    }

    fn validate_pollers(&self) -> Result<(), ConfigError> {
        check(
            (1..=POLLERS_MAX).contains(&self.pollers_max),
            "queues.pollers_max",
            format_args!("must lie in 1..={POLLERS_MAX}"),
        )?;
        check(
            (1..=self.pollers_max).contains(&self.pollers_initial),
            "queues.pollers_initial",
            "must lie in 1..=queues.pollers_max",
        )?;
        check(
            self.pollers_added_per_minute <= POLLERS_MAX,
            "queues.pollers_added_per_minute",
            format_args!("must be at most {POLLERS_MAX}"),
        )?;
        check(
            self.maximum_concurrency == 0 || (2..=1000).contains(&self.maximum_concurrency),
            "queues.maximum_concurrency",
            "must be 0 (unset) or lie in 2..=1000",
        )
    }
}

impl CompactionConfig {
    fn validate(&self, queues: &QueuesConfig) -> Result<(), ConfigError> {
        check(
            (1..=100_000).contains(&self.reserved_concurrency),
            "compaction.reserved_concurrency",
            "must lie in 1..=100000",
        )?;
        check(
            self.timeout > Duration::ZERO && self.timeout <= LAMBDA_TIMEOUT_MAX,
            "compaction.timeout",
            "must lie in (0, 15m]",
        )?;
        check(
            self.lock_lease > Duration::ZERO,
            "compaction.lock_lease",
            "must be positive",
        )?;
        if self.heartbeat_enabled {
            check_period(
                self.heartbeat_interval,
                self.timeout,
                "compaction.heartbeat_interval",
                "compaction.timeout",
            )?;
        }
        check(
            self.publish_lock_retry_delays.len() <= 16,
            "compaction.publish_lock_retry_delays",
            "at most 16 retries",
        )?;
        check(
            self.version_id_resolution > Duration::ZERO,
            "compaction.version_id_resolution",
            "must be positive",
        )?;
        check(
            (1..=VERSIONS_MAX).contains(&self.cache_versions),
            "compaction.cache_versions",
            "must lie in 1..=64",
        )?;
        check_share(self.cold_start_share, "compaction.cold_start_share")?;
        check(
            queues.visibility_timeout > Duration::ZERO,
            "queues.visibility_timeout",
            "must be positive",
        )
    }
}

impl FaultsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_share(self.compaction_stall_share, "faults.compaction_stall_share")?;
        check_share(
            self.kill_after_pointer_share,
            "faults.kill_after_pointer_share",
        )?;
        check_share(self.stream_retry_share, "faults.stream_retry_share")?;
        check_share(self.throttle_share, "faults.throttle_share")?;
        check_share(self.collection_error_share, "faults.collection_error_share")
    }
}

impl StoreConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=VERSIONS_MAX).contains(&self.keep_versions),
            "store.keep_versions",
            "must lie in 1..=64",
        )?;
        check(
            self.bytes_per_entry <= BYTES_PER_ENTRY_MAX,
            "store.bytes_per_entry",
            "must be at most 1048576 (1 MiB)",
        )?;
        for (value, field) in [
            (self.download_bytes_per_s, "store.download_bytes_per_s"),
            (self.upload_bytes_per_s, "store.upload_bytes_per_s"),
            (self.copy_bytes_per_s, "store.copy_bytes_per_s"),
        ] {
            check(
                value.is_finite() && value >= BYTES_PER_S_MIN,
                field,
                "must be a bandwidth of at least 1e6 bytes per second",
            )?;
        }
        Ok(())
    }

    /// Time to move `entries` ids at `bytes_per_s`, beyond the fixed part.
    pub fn transfer(&self, entries: u64, bytes_per_s: f64) -> Duration {
        Duration::from_secs_f64(entries as f64 * self.bytes_per_entry as f64 / bytes_per_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_profiles_are_valid_and_differ_in_the_built_items() {
        let described = PipelineConfig::default();
        let built = PipelineConfig::built();
        assert_eq!(described.validate(), Ok(()));
        assert_eq!(built.validate(), Ok(()));
        assert!(described.compaction.mark_runs);
        assert!(!built.compaction.mark_runs);
        assert_eq!(built.stream_processor.other_inserts, OtherInserts::Drop);
        assert_eq!(
            built.compaction.failure_reporting,
            FailureReporting::WholeBatch
        );
        assert_ne!(described, built);
    }

    #[test]
    fn validate_names_the_field() {
        type Change = fn(&mut PipelineConfig);
        let cases: Vec<(Change, &str)> = vec![
            (
                |c| c.compaction.reserved_concurrency = 0,
                "compaction.reserved_concurrency",
            ),
            (|c| c.queues.receive_limit = 0, "queues.receive_limit"),
            (|c| c.queues.batch_size = 0, "queues.batch_size"),
            (|c| c.queues.batch_size = 11, "queues.batch_size"),
            (|c| c.workload.rate_per_hour = 0.0, "workload.rate_per_hour"),
            (
                |c| c.workload.rate_per_hour = -3.0,
                "workload.rate_per_hour",
            ),
            (
                |c| c.stream.parallelization_factor = 11,
                "stream.parallelization_factor",
            ),
            (
                |c| c.stream_processor.reserved_concurrency = 0,
                "stream_processor.reserved_concurrency",
            ),
            (|c| c.upload.concurrency = 0, "upload.concurrency"),
            (
                |c| {
                    c.workload.removed_label_share = NumberDist::parse("uniform(0.5, 1.2)").unwrap()
                },
                "workload.removed_label_share",
            ),
            (
                |c| c.workload.older_label_share = NumberDist::constant(-0.1),
                "workload.older_label_share",
            ),
            (|c| c.horizon = Duration::ZERO, "horizon"),
            (
                |c| c.faults.compaction_stall_share = 1.5,
                "faults.compaction_stall_share",
            ),
            (
                |c| c.faults.kill_after_pointer_share = -0.1,
                "faults.kill_after_pointer_share",
            ),
            (
                |c| c.faults.stream_retry_share = f64::NAN,
                "faults.stream_retry_share",
            ),
            (|c| c.faults.throttle_share = 2.0, "faults.throttle_share"),
            (
                |c| c.faults.collection_error_share = -1.0,
                "faults.collection_error_share",
            ),
        ];
        for (change, field) in cases {
            let mut config = PipelineConfig::default();
            change(&mut config);
            let error = config.validate().expect_err(field);
            assert_eq!(error.field, field, "{error}");
        }
        let mut standard = PipelineConfig::default();
        standard.queues.kind = QueueKind::Standard;
        standard.queues.batch_size = 1000;
        standard.queues.batching_window = Duration::from_secs(5);
        assert_eq!(standard.validate(), Ok(()));
    }

    #[test]
    fn toml_names_only_what_changes_and_rejects_unknown_fields() {
        let config: PipelineConfig = toml::from_str(
            "seed = 7\nflow = \"new\"\nhorizon = \"1d\"\n[workload]\nsource = { file = \"r.jsonl\" }\n\
             [compaction]\npointer_promotion = \"cas\"\nlock_operation = \"uniform(10ms, 20ms)\"\n",
        )
        .unwrap();
        assert_eq!(config.seed, 7);
        assert_eq!(config.flow, Flow::New);
        assert_eq!(
            config.workload.source,
            WorkloadSource::File("r.jsonl".into())
        );
        assert_eq!(config.compaction.pointer_promotion, PointerPromotion::Cas);
        assert_eq!(config.queues, QueuesConfig::default());
        let error =
            toml::from_str::<PipelineConfig>("[queues]\nvisibility = \"1s\"\n").unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
        let generate: PipelineConfig =
            toml::from_str("[workload]\nsource = \"generate\"\n").unwrap();
        assert_eq!(generate.workload.source, WorkloadSource::Generate);
    }

    #[test]
    fn faults_are_off_by_default_and_named_in_a_section_of_their_own() {
        let described = PipelineConfig::default();
        assert_eq!(described.faults.compaction_stall_share, 0.0);
        assert_eq!(described.faults.kill_after_pointer_share, 0.0);
        assert_eq!(described.faults.stream_retry_share, 0.0);
        assert_eq!(described.faults.throttle_share, 0.0);
        assert_eq!(described.faults.collection_error_share, 0.0);
        assert!(!described.compaction.sync_from_table_on_merge);
        let config: PipelineConfig = toml::from_str(
            "[faults]\ncompaction_stall_share = 0.5\ncompaction_stall = \"3m\"\n\
             compaction_stall_point = \"holding_lock\"\nthrottle_share = 0.1\n\
             [compaction]\nsync_from_table_on_merge = true\n",
        )
        .unwrap();
        assert_eq!(config.faults.compaction_stall_share, 0.5);
        assert_eq!(
            config.faults.compaction_stall,
            DurationDist::constant(Duration::from_secs(180))
        );
        assert_eq!(
            config.faults.compaction_stall_point,
            StallPoint::HoldingLock
        );
        assert_eq!(config.faults.throttle_share, 0.1);
        assert!(config.compaction.sync_from_table_on_merge);
        assert_eq!(config.validate(), Ok(()));
        let error = toml::from_str::<PipelineConfig>("[faults]\nstall_share = 0.1\n").unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
    }
}
