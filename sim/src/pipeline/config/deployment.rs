//! The deployment part of a trial's configuration: what the infrastructure code sets (each
//! function's concurrency and timeout, batch sizes, the queues' and the stream mapping's
//! settings, where the compaction's file cache lives). The simulated driver reads it to build the
//! service models and to start invocations.
//!
//! Built from a validated `PipelineConfig` by `Deployment::of`. Depends on `time` and the
//! configuration's own enums only.

use super::{FileCacheSharing, PipelineConfig, QueueKind};
use crate::time::Duration;

/// How the pipeline is deployed.
#[derive(Clone, Debug, PartialEq)]
pub struct Deployment {
    pub upload: UploadDeployment,
    pub stream: StreamDeployment,
    pub stream_processor: FunctionDeployment,
    pub compaction: CompactionDeployment,
    pub queues: QueuesDeployment,
}

/// The upload Lambda and its queue.
#[derive(Clone, Debug, PartialEq)]
pub struct UploadDeployment {
    pub concurrency: u32,
    /// Receipts per invocation (SQS trigger).
    pub batch_size: u32,
    pub timeout: Duration,
    pub queue_visibility_timeout: Duration,
    /// Whether the upload queue has a redrive policy.
    pub dead_letter_queue: bool,
    /// The upload queue's receive limit, with a dead-letter queue.
    pub queue_receive_limit: u32,
}

/// The table's stream and its event source mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamDeployment {
    pub shards: u32,
    pub poll_interval: Duration,
    pub batch_size: u32,
    pub batching_window: Duration,
    pub parallelization_factor: u32,
    pub retry_limit: u32,
    pub bisect_on_error: bool,
    pub record_age_max: Duration,
}

/// A function's reserved concurrency and timeout.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionDeployment {
    pub reserved_concurrency: u32,
    pub timeout: Duration,
}

/// The compaction Lambda (shared by both queue mappings) and its file cache.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactionDeployment {
    pub reserved_concurrency: u32,
    pub timeout: Duration,
    pub file_cache: FileCacheSharing,
}

/// The two compaction queues and their mappings.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuesDeployment {
    pub kind: QueueKind,
    pub visibility_timeout: Duration,
    pub retention: Duration,
    pub receive_limit: u32,
    pub batch_size: u32,
    pub batching_window: Duration,
    pub deduplication_window: Duration,
    pub poll_interval: Duration,
    pub pollers_initial: u32,
    pub pollers_added_per_minute: u32,
    pub pollers_max: u32,
    /// The mapping's `ScalingConfig.MaximumConcurrency`; 0 leaves it unset.
    pub maximum_concurrency: u32,
}

impl Deployment {
    /// The deployment of a configuration that passed validation.
    pub fn of(config: &PipelineConfig) -> Deployment {
        let upload = &config.upload;
        let stream = &config.stream;
        Deployment {
            upload: UploadDeployment {
                concurrency: upload.concurrency,
                batch_size: upload.batch_size,
                timeout: upload.timeout,
                queue_visibility_timeout: upload.queue_visibility_timeout,
                dead_letter_queue: upload.dead_letter_queue,
                queue_receive_limit: upload.queue_receive_limit,
            },
            stream: StreamDeployment {
                shards: stream.shards,
                poll_interval: stream.poll_interval,
                batch_size: stream.batch_size,
                batching_window: stream.batching_window,
                parallelization_factor: stream.parallelization_factor,
                retry_limit: stream.retry_limit,
                bisect_on_error: stream.bisect_on_error,
                record_age_max: stream.record_age_max,
            },
            stream_processor: FunctionDeployment {
                reserved_concurrency: config.stream_processor.reserved_concurrency,
                timeout: config.stream_processor.timeout,
            },
            compaction: CompactionDeployment {
                reserved_concurrency: config.compaction.reserved_concurrency,
                timeout: config.compaction.timeout,
                file_cache: config.compaction.file_cache,
            },
            queues: QueuesDeployment::of(config),
        }
    }
}

impl QueuesDeployment {
    fn of(config: &PipelineConfig) -> QueuesDeployment {
        let queues = &config.queues;
        QueuesDeployment {
            kind: queues.kind,
            visibility_timeout: queues.visibility_timeout,
            retention: queues.retention,
            receive_limit: queues.receive_limit,
            batch_size: queues.batch_size,
            batching_window: queues.batching_window,
            deduplication_window: queues.deduplication_window,
            poll_interval: queues.poll_interval,
            pollers_initial: queues.pollers_initial,
            pollers_added_per_minute: queues.pollers_added_per_minute,
            pollers_max: queues.pollers_max,
            maximum_concurrency: queues.maximum_concurrency,
        }
    }
}
