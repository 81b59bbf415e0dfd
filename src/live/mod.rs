//! Real backends: a ChromaDB HTTP client, object stores holding snapshots, deltas and the pointer,
//! the record format of those objects, and the calibration that measures their operations.
//!
//! Runs on tokio, which only this part of the binary uses. Depends on nothing of the rest of the
//! binary except `failure` and `parallel` (calibration's progress bar); the core knows nothing of
//! it.

pub mod calibrate;
pub mod chroma;
pub mod codec;
pub mod faulty_store;
pub mod performer;
pub mod store;
