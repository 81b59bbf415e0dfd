//! receipt-sim: a deterministic discrete-event simulator and benchmark harness for a receipt
//! pipeline whose label writes race a ChromaDB compaction.
//!
//! `main` is a short pipeline: parse the command line, run the command, print one error line and
//! exit with a code by class (0 ok, 1 race found, 2 bad input, 3 backend failure).

mod allocator;
mod cli;
mod failure;
mod hunt_command;
mod live;
mod load;
mod mmc_command;
mod output;
mod parallel;
mod pipeline_scenario;
mod trial_command;
mod verdict_command;

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

fn main() -> ExitCode {
    match cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
