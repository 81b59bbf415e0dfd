//! Models of the managed services the pipeline runs on: the DynamoDB table and its stream, the
//! stream's event source mapping, SQS queues, Lambda concurrency, the S3 bucket of Chroma snapshots,
//! a Chroma working copy, and the DynamoDB lease lock.
//!
//! Every model is a plain data structure: methods take `now: Instant` and return what happened,
//! including when something next becomes possible, so the driver decides when to wake. No model
//! schedules events or reads a clock, and every random draw comes from a stream the caller hands in.
//! Depends on `time`, `random`, `distribution` and `entities` only.

pub mod collection;
pub mod lambda;
pub mod lock;
pub mod object_store;
pub mod queue;
pub mod stream;
pub mod table;

use crate::random::Stream;
use rand::Rng;

/// A uniform draw from `[0, 1)` with 53 bits of precision.
pub(crate) fn unit_interval(stream: &mut Stream) -> f64 {
    (stream.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A uniform draw from `0..bound` (multiply-high, bias below 2^-32 for the bounds used here).
pub(crate) fn index_below(stream: &mut Stream, bound: usize) -> usize {
    assert!(bound > 0, "index_below needs a non-empty range");
    ((u128::from(stream.next_u64()) * bound as u128) >> 64) as usize
}
