//! The service model part of a trial's configuration: how long things take and how the managed
//! services behave where the pipeline's code and deployment do not say (the distributions of every
//! stage and operation, cold starts, the object store's bandwidths, the size of a snapshot's
//! entry, duplicate deliveries of standard queues, how a mapping's pollers receive), and the
//! constants of the services the model follows. Only the simulated driver reads it: a live trial
//! in real timing measures what this models.
//!
//! Built from a validated `PipelineConfig` by `ServiceModel::of`. Depends on `time`,
//! `distribution` and the configuration's own enums only.

use super::{MappingPollers, PipelineConfig};
use crate::distribution::DurationDist;
use crate::time::Duration;

/// How the services and the functions' work take time.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceModel {
    pub upload: UploadModel,
    pub stream_processor: StreamProcessorModel,
    pub compaction: CompactionModel,
    pub store: StoreModel,
    pub queues: QueuesModel,
    pub stream: StreamModel,
    pub snapshots: SnapshotsModel,
    /// Interval of queue samples (doubled whenever the sample buffer fills): ten seconds, finer
    /// than the one-minute period at which CloudWatch reports an SQS queue's depth and oldest
    /// message's age, so a report shows at least what a dashboard would.
    pub sample_interval: Duration,
}

/// A function's cold starts.
///
/// The share of cold starts on a reused container lives here, not among the faults: a cold start
/// is how Lambda runs a function (a new container always starts cold, an idle one sometimes
/// does), not something that goes wrong, and turning it off is a change of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct ColdStart {
    /// This share of invocations on a reused container starts cold.
    pub share: f64,
    pub duration: DurationDist,
}

/// The upload Lambda's stages.
#[derive(Clone, Debug, PartialEq)]
pub struct UploadModel {
    pub ocr: DurationDist,
    pub merchant_resolution: DurationDist,
    pub embedding: DurationDist,
    pub delta_upload: DurationDist,
    pub langgraph: DurationDist,
    /// One DynamoDB write (reads are charged no time); the compaction's table operations too.
    pub table_operation: DurationDist,
    pub cold_start: ColdStart,
}

/// The stream processor's work.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamProcessorModel {
    /// Time to route one record.
    pub record_handling: DurationDist,
    pub send_batch: DurationDist,
    pub cold_start: ColdStart,
}

/// The compaction Lambda's work.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactionModel {
    pub lock_operation: DurationDist,
    pub copy: DurationDist,
    pub apply: DurationDist,
    pub apply_per_id: Duration,
    pub delta_download: DurationDist,
    pub write_back: DurationDist,
    pub cold_start: ColdStart,
}

/// The object store (S3) of snapshots and deltas.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreModel {
    /// Bytes one id (embedding plus metadata) adds to a snapshot.
    pub bytes_per_entry: u64,
    pub download_fixed: DurationDist,
    pub download_bytes_per_s: f64,
    pub upload_fixed: DurationDist,
    pub upload_bytes_per_s: f64,
    pub copy_bytes_per_s: f64,
    pub pointer_operation: DurationDist,
}

impl StoreModel {
    /// Time to move `entries` ids at `bytes_per_s`, beyond the fixed part.
    pub fn transfer(&self, entries: u64, bytes_per_s: f64) -> Duration {
        Duration::from_secs_f64(entries as f64 * self.bytes_per_entry as f64 / bytes_per_s)
    }
}

/// The queues (SQS) and the compaction queues' event source mappings.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuesModel {
    /// Standard compaction queues: probability that a send is delivered twice.
    pub duplicate_share: f64,
    /// Whether the mappings' pollers receive regardless of the function's concurrency.
    pub mapping_pollers: MappingPollers,
    /// The upload queue's retention: 4 days, SQS's default `MessageRetentionPeriod` (345 600 s),
    /// which the upload queue at 54acc5869 keeps (infra/upload_images/infra.py line 140).
    pub upload_queue_retention: Duration,
    /// The upload queue's deduplication window: SQS's deduplication interval of 5 minutes.
    pub upload_queue_deduplication_window: Duration,
}

/// The table's stream (DynamoDB Streams).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamModel {
    /// DynamoDB Streams keeps a record for 24 hours.
    pub retention: Duration,
}

/// The bookkeeping of the snapshot store's model. S3 keeps every delta object until it is
/// deleted; the model forgets a delta no reference needs once it is this far behind, a bound of
/// memory and not an AWS fact.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotsModel {
    /// Recent publishes whose deltas are kept even if nothing references them.
    pub deltas_window: usize,
    /// Hard bound on kept deltas (window plus what live references need).
    pub deltas_max: usize,
}

impl ServiceModel {
    /// The service model of a configuration that passed validation.
    pub fn of(config: &PipelineConfig) -> ServiceModel {
        ServiceModel {
            upload: UploadModel::of(config),
            stream_processor: StreamProcessorModel {
                record_handling: config.stream_processor.record_handling.clone(),
                send_batch: config.stream_processor.send_batch.clone(),
                cold_start: ColdStart {
                    share: config.stream_processor.cold_start_share,
                    duration: config.stream_processor.cold_start.clone(),
                },
            },
            compaction: CompactionModel::of(config),
            store: StoreModel::of(config),
            queues: QueuesModel {
                duplicate_share: config.queues.duplicate_share,
                mapping_pollers: config.queues.mapping_pollers,
                upload_queue_retention: Duration::from_secs(4 * 86_400),
                upload_queue_deduplication_window: Duration::from_secs(300),
            },
            stream: StreamModel {
                retention: Duration::from_secs(86_400),
            },
            snapshots: SnapshotsModel {
                deltas_window: 4096,
                deltas_max: 16_384,
            },
            sample_interval: Duration::from_secs(10),
        }
    }
}

impl UploadModel {
    fn of(config: &PipelineConfig) -> UploadModel {
        let upload = &config.upload;
        UploadModel {
            ocr: upload.ocr.clone(),
            merchant_resolution: upload.merchant_resolution.clone(),
            embedding: upload.embedding.clone(),
            delta_upload: upload.delta_upload.clone(),
            langgraph: upload.langgraph.clone(),
            table_operation: upload.table_operation.clone(),
            cold_start: ColdStart {
                share: upload.cold_start_share,
                duration: upload.cold_start.clone(),
            },
        }
    }
}

impl CompactionModel {
    fn of(config: &PipelineConfig) -> CompactionModel {
        let compaction = &config.compaction;
        CompactionModel {
            lock_operation: compaction.lock_operation.clone(),
            copy: compaction.copy.clone(),
            apply: compaction.apply.clone(),
            apply_per_id: compaction.apply_per_id,
            delta_download: compaction.delta_download.clone(),
            write_back: compaction.write_back.clone(),
            cold_start: ColdStart {
                share: compaction.cold_start_share,
                duration: compaction.cold_start.clone(),
            },
        }
    }
}

impl StoreModel {
    fn of(config: &PipelineConfig) -> StoreModel {
        let store = &config.store;
        StoreModel {
            bytes_per_entry: store.bytes_per_entry,
            download_fixed: store.download_fixed.clone(),
            download_bytes_per_s: store.download_bytes_per_s,
            upload_fixed: store.upload_fixed.clone(),
            upload_bytes_per_s: store.upload_bytes_per_s,
            copy_bytes_per_s: store.copy_bytes_per_s,
            pointer_operation: store.pointer_operation.clone(),
        }
    }
}
