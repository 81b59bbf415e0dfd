//! receipt-sim as a library: the commands, loaders, exporters, reports and live drivers the
//! `receipt-sim` binary runs, so that benchmarks and tests load scenarios and measure exactly what
//! the binary does, with no copies of its code.
//!
//! Depends on `sim` (the deterministic core) and the I/O crates (tokio, reqwest, object_store,
//! plotters, clap). Its modules are listed, with the edges between them each may use, in
//! `tests/tidy.rs`.

pub mod allocator;
pub mod cli;
pub mod exporters;
pub mod failure;
pub mod histogram;
pub mod hunt_command;
pub mod live;
pub mod live_command;
pub mod load;
pub mod markdown;
pub mod mmc_command;
pub mod output;
pub mod parallel;
pub mod pipeline_scenario;
pub mod plan;
pub mod plots;
pub mod regress;
pub mod report;
pub mod shard;
pub mod sweep;
pub mod trial_command;
pub mod verdict_command;
