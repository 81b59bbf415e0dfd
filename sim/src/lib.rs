//! receipt-sim's deterministic core: the engine, service models, the pipeline, the oracle and the
//! scenario types. It does no I/O and reads no clock: a trial is a pure function of its scenario and
//! seed. The binary crate around it reads files, prints, plots and drives real backends.

pub mod distribution;
pub mod engine;
pub mod entities;
pub mod explore;
pub mod metrics;
pub mod mmc;
pub mod oracle;
pub mod pipeline;
pub mod random;
pub mod scenario;
pub mod services;
pub mod stats;
pub mod time;
pub mod workload;
