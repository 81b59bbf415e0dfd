//! Real backends: a ChromaDB HTTP client, object stores holding snapshots, deltas and the pointer,
//! the record format of those objects, and the calibration that measures their operations.
//!
//! Runs on tokio, which only this part of the binary uses. Depends on nothing of the rest of the
//! binary except `failure`; the core knows nothing of it.

// The client and the store expose their whole surface (the live tests drive all of it); calibration
// uses a part.
pub mod calibrate;
#[allow(dead_code)]
pub mod chroma;
#[allow(dead_code)]
pub mod codec;
pub mod performer;
#[allow(dead_code)]
pub mod store;
