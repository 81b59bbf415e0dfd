//! receipt-sim: a deterministic discrete-event simulator and benchmark harness for a receipt
//! pipeline whose label writes race a ChromaDB compaction.
//!
//! `main` is a short pipeline: parse the command line, run the command, print one error line and
//! exit with a code by class (0 ok, 1 race found, 2 bad input, 3 backend failure).

mod allocator;
mod cli;
mod exporters;
mod failure;
mod histogram;
mod hunt_command;
mod live;
mod live_command;
mod load;
mod markdown;
mod mmc_command;
mod output;
mod parallel;
mod pipeline_scenario;
mod plan;
mod plots;
mod regress;
mod report;
mod shard;
mod sweep;
mod trial_command;
mod verdict_command;

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

fn main() -> ExitCode {
    output::remove_on_signal();
    // The outputs land when the command did its work (found a race or not), else none does.
    let result = match cli::main() {
        Ok(()) => output::commit(),
        Err(failure) if failure.class == failure::Class::RaceFound => {
            output::commit().and(Err(failure))
        }
        Err(failure) => {
            output::discard();
            Err(failure)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
