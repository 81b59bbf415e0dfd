//! The command line: clap definitions and the dispatch to each command.
//!
//! Depends on every command module; no command module depends on it.

use crate::failure::Failure;
use crate::load;
use crate::output::Output;
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "receipt-sim", version, about = "Simulate a receipt pipeline racing its ChromaDB compaction", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one scenario: a pipeline trial, or the M/M/c validation model.
    Run(RunArgs),
}

/// What every scenario-driven command takes.
#[derive(Args, Debug, Clone)]
pub struct ScenarioArgs {
    /// A scenario file, or the name of an embedded profile (`built`, `described`, `quick`, `mmc`, …).
    #[arg(default_value = "built")]
    pub scenario: String,
    /// The seed of the trial (overrides the scenario's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override any field: `--set compaction.reserved_concurrency=4` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Write the results as JSON to FILE (`-` for standard output).
    #[arg(long = "export-json", visible_alias = "json", value_name = "FILE")]
    pub export_json: Option<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub scenario: ScenarioArgs,
}

pub fn main() -> Result<(), Failure> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                print!("{error}");
                return Ok(());
            }
            let text = error.to_string();
            let first = text.lines().next().unwrap_or("bad command line");
            return Err(Failure::bad_input(
                first.trim_start_matches("error: ").to_string(),
            ));
        }
    };
    match cli.command {
        Command::Run(args) => run(args),
    }
}

/// The JSON export named on the command line, created before any work.
pub fn export(args: &ScenarioArgs) -> Result<Option<Output>, Failure> {
    args.export_json
        .as_deref()
        .map(|target| Output::create(target, "--export-json"))
        .transpose()
}

/// Prints the human summary where it does not mix with JSON on standard output.
pub fn say(json_on_stdout: bool, text: &str) {
    if json_on_stdout {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

fn run(args: RunArgs) -> Result<(), Failure> {
    let export = export(&args.scenario)?;
    let loaded = load::load(
        &args.scenario.scenario,
        args.scenario.seed,
        &args.scenario.set,
    )?;
    match loaded.model()?.as_str() {
        "mmc" => crate::mmc_command::run(&loaded, export.as_ref()),
        other => Err(Failure::bad_input(format!(
            "model `{other}` is not available in this build"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
