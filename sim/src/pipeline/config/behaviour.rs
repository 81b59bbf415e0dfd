//! The behaviour part of a trial's configuration: what the real code does (the upload flow, the
//! old flow's wait, the stream processor's routing, the compaction's locking, publishing and
//! message handling). Both drivers read it: the simulated one builds the state machines' settings
//! from it, the live one reads it the same way. Nothing here is a duration drawn from a
//! distribution or a size of the deployment.
//!
//! Built from a validated `PipelineConfig` by `Behaviour::of`. Depends on `time` and the
//! configuration's own enums only.

use super::{
    DeltaUploadError, DriftCheck, FailureReporting, Flow, InBatchOrdering, MessageGroupKey,
    MissingId, OtherInserts, OwnershipCheck, PipelineConfig, PointerPromotion, RunCompletedMessage,
    UploadBatchDeletion, UpsertMode,
};
use crate::time::Duration;

/// What the code of the three functions does.
#[derive(Clone, Debug, PartialEq)]
pub struct Behaviour {
    /// Which upload flow runs (the old waits for the compaction before LangGraph).
    pub flow: Flow,
    pub wait: WaitBehaviour,
    pub upload: UploadBehaviour,
    pub stream: StreamBehaviour,
    pub stream_processor: StreamProcessorBehaviour,
    pub compaction: CompactionBehaviour,
    pub store: StoreBehaviour,
    pub chroma: ChromaBehaviour,
}

/// The old flow's wait for the CompactionRun (`[wait]`).
#[derive(Clone, Debug, PartialEq)]
pub struct WaitBehaviour {
    pub poll_period: Duration,
    pub cap: Duration,
}

/// The upload Lambda's handling of failed delta uploads and of its queue's messages.
#[derive(Clone, Debug, PartialEq)]
pub struct UploadBehaviour {
    pub delta_upload_error: DeltaUploadError,
    pub delta_upload_tries_max: u32,
    /// Which of a batch's messages a timeout returns to the upload queue.
    pub batch_deletion: UploadBatchDeletion,
}

/// What the table writes into its stream.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamBehaviour {
    /// The OCR'd line and word items' INSERT records reach the stream.
    pub ocr_records: bool,
}

/// The stream processor's routing of records into messages.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamProcessorBehaviour {
    pub other_inserts: OtherInserts,
    pub run_completed_message: RunCompletedMessage,
    pub message_group: MessageGroupKey,
    /// Messages per SendMessageBatch call.
    pub send_batch_size: u32,
}

/// The compaction Lambda's locking, publishing and message handling.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactionBehaviour {
    pub lock_lease: Duration,
    pub heartbeat_enabled: bool,
    pub heartbeat_interval: Duration,
    pub publish_lock_retry_delays: Vec<Duration>,
    pub pointer_promotion: PointerPromotion,
    pub drift_check: DriftCheck,
    pub ownership_check: OwnershipCheck,
    /// Version ids are `floor(now / resolution)`.
    pub version_id_resolution: Duration,
    pub upsert: UpsertMode,
    pub missing_id: MissingId,
    pub failure_reporting: FailureReporting,
    pub mark_runs: bool,
    pub in_batch_ordering: InBatchOrdering,
    pub deduplicate: bool,
    /// Versions the file cache keeps (the write-back prunes to this many).
    pub cache_versions: u32,
    pub sync_from_table_on_merge: bool,
}

/// What the publish leaves in the bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreBehaviour {
    /// Snapshot versions kept under `snapshot/timestamped/`.
    pub keep_versions: u32,
}

/// What a delta carries to Chroma.
#[derive(Clone, Debug, PartialEq)]
pub struct ChromaBehaviour {
    /// The delta carries the label fields DynamoDB holds when the embeddings are computed.
    pub labels_known_at_embed: bool,
}

impl Behaviour {
    /// The behaviour of a configuration that passed validation.
    pub fn of(config: &PipelineConfig) -> Behaviour {
        let upload = &config.upload;
        let processor = &config.stream_processor;
        Behaviour {
            flow: config.flow,
            wait: WaitBehaviour {
                poll_period: config.wait.poll_period,
                cap: config.wait.cap,
            },
            upload: UploadBehaviour {
                delta_upload_error: upload.delta_upload_error,
                delta_upload_tries_max: upload.delta_upload_tries_max,
                batch_deletion: upload.batch_deletion,
            },
            stream: StreamBehaviour {
                ocr_records: config.stream.ocr_records,
            },
            stream_processor: StreamProcessorBehaviour {
                other_inserts: processor.other_inserts,
                run_completed_message: processor.run_completed_message,
                message_group: processor.message_group,
                send_batch_size: processor.send_batch_size,
            },
            compaction: CompactionBehaviour::of(config),
            store: StoreBehaviour {
                keep_versions: config.store.keep_versions,
            },
            chroma: ChromaBehaviour {
                labels_known_at_embed: config.chroma.labels_known_at_embed,
            },
        }
    }
}

impl CompactionBehaviour {
    fn of(config: &PipelineConfig) -> CompactionBehaviour {
        let compaction = &config.compaction;
        CompactionBehaviour {
            lock_lease: compaction.lock_lease,
            heartbeat_enabled: compaction.heartbeat_enabled,
            heartbeat_interval: compaction.heartbeat_interval,
            publish_lock_retry_delays: compaction.publish_lock_retry_delays.clone(),
            pointer_promotion: compaction.pointer_promotion,
            drift_check: compaction.drift_check,
            ownership_check: compaction.ownership_check,
            version_id_resolution: compaction.version_id_resolution,
            upsert: compaction.upsert,
            missing_id: compaction.missing_id,
            failure_reporting: compaction.failure_reporting,
            mark_runs: compaction.mark_runs,
            in_batch_ordering: compaction.in_batch_ordering,
            deduplicate: compaction.deduplicate,
            cache_versions: compaction.cache_versions,
            sync_from_table_on_merge: compaction.sync_from_table_on_merge,
        }
    }
}
