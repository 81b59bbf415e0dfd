//! The behaviour part of a trial's configuration: what the real code does (the upload flow, the
//! old flow's wait, the stream processor's routing, the compaction's locking, publishing and
//! message handling). Its parts are the state machines' settings: the upload Lambda takes
//! `UploadBehaviour`, the stream processor `StreamProcessorBehaviour`, the compaction
//! `CompactionBehaviour`, each built once here and handed over as it is (a copy, a reference, a
//! clone that shares the retry delays); the driver reads the fields that are its to act on (which
//! messages a timeout returns, the upsert mode, failure reporting, the versions kept) from the
//! same parts. The live driver reads it the same way. Nothing here is a duration drawn from a
//! distribution or a size of the deployment.
//!
//! Built from a validated `PipelineConfig` by `Behaviour::of`. Depends on `time` and the
//! configuration's own enums only, never on the state machines that read it.

use super::{
    DeltaUploadError, DriftCheck, FailureReporting, Flow, InBatchOrdering, MessageGroupKey,
    MissingId, OtherInserts, OwnershipCheck, PipelineConfig, PointerPromotion, RunCompletedMessage,
    UploadBatchDeletion, UpsertMode,
};
use crate::time::Duration;
use std::sync::Arc;

/// What the code of the three functions does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Behaviour {
    pub upload: UploadBehaviour,
    pub stream: StreamBehaviour,
    pub stream_processor: StreamProcessorBehaviour,
    pub compaction: CompactionBehaviour,
    pub store: StoreBehaviour,
    pub chroma: ChromaBehaviour,
}

/// The upload Lambda's settings: its flow, the old flow's wait and its handling of failed delta
/// uploads (the state machine reads these), and which of a batch's messages a timeout returns to
/// the upload queue (the driver's).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct UploadBehaviour {
    /// Which upload flow runs (the old waits for the compaction before LangGraph).
    pub flow: Flow,
    pub wait: WaitBehaviour,
    pub delta_upload_error: DeltaUploadError,
    pub delta_upload_tries_max: u32,
    /// Which of a batch's messages a timeout returns to the upload queue.
    pub batch_deletion: UploadBatchDeletion,
}

/// The old flow's wait for the CompactionRun (`[wait]`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct WaitBehaviour {
    pub poll_period: Duration,
    pub cap: Duration,
}

/// What the table writes into its stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamBehaviour {
    /// The OCR'd line and word items' INSERT records reach the stream.
    pub ocr_records: bool,
}

/// The stream processor's settings: its routing of records into messages.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct StreamProcessorBehaviour {
    pub other_inserts: OtherInserts,
    pub run_completed_message: RunCompletedMessage,
    pub message_group: MessageGroupKey,
    /// Messages per SendMessageBatch call.
    pub send_batch_size: u32,
}

/// The compaction Lambda's settings: its locking, publishing and message handling. The state
/// machine takes a clone per invocation (the retry delays are shared, so it does not allocate);
/// the version-id resolution, the upsert mode, failure reporting and the cached versions are the
/// driver's to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionBehaviour {
    pub lock_lease: Duration,
    /// `None`: no heartbeat.
    pub heartbeat_interval: Option<Duration>,
    pub publish_lock_retry_delays: Arc<[Duration]>,
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
    /// After a delta merge, read the receipt's state from the table and write it onto the merged
    /// ids.
    pub sync_from_table_on_merge: bool,
}

/// What the publish leaves in the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreBehaviour {
    /// Snapshot versions kept under `snapshot/timestamped/`.
    pub keep_versions: u32,
}

/// What a delta carries to Chroma.
#[derive(Clone, Debug, PartialEq, Eq)]
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
            upload: UploadBehaviour {
                flow: config.flow,
                wait: WaitBehaviour {
                    poll_period: config.wait.poll_period,
                    cap: config.wait.cap,
                },
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
            heartbeat_interval: compaction
                .heartbeat_enabled
                .then_some(compaction.heartbeat_interval),
            publish_lock_retry_delays: compaction.publish_lock_retry_delays.as_slice().into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_off_leave_no_interval_and_the_retry_delays_are_shared() {
        let mut config = PipelineConfig::built();
        config.compaction.heartbeat_enabled = true;
        let on = Behaviour::of(&config);
        assert_eq!(
            on.compaction.heartbeat_interval,
            Some(config.compaction.heartbeat_interval)
        );
        config.compaction.heartbeat_enabled = false;
        let off = Behaviour::of(&config);
        assert_eq!(off.compaction.heartbeat_interval, None);
        let clone = off.compaction.clone();
        assert!(Arc::ptr_eq(
            &clone.publish_lock_retry_delays,
            &off.compaction.publish_lock_retry_delays
        ));
        assert_eq!(
            &*clone.publish_lock_retry_delays,
            config.compaction.publish_lock_retry_delays.as_slice()
        );
    }
}
