//! The command line: clap definitions and the dispatch to each command.
//!
//! Depends on every command module; no command module depends on it.

use crate::failure::Failure;
use crate::load;
use crate::output::Output;
use crate::trial_command::TrialFlags;
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "receipt-sim", version, about = "Simulate a receipt pipeline racing its ChromaDB compaction", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one scenario: a pipeline trial judged by the oracle, or the M/M/c validation model.
    Run(TrialArgs),
    /// Replay the same receipts and random draws through the old and the new flow, side by side.
    Compare(TrialArgs),
    /// Write the receipts a scenario generates as JSON Lines.
    Receipts(ReceiptsArgs),
    /// Explore many trials (seeds, orderings of simultaneous events, faults) for anomalies, and
    /// write one shrunk counterexample per anomaly class and cause.
    Hunt(HuntArgs),
    /// Judge the note's claim: every profile and fix, light and heavy load, both flows.
    Verdict(VerdictArgs),
    /// Re-run a counterexample file exactly; exit 0 only if the same anomaly appears again with the
    /// same fingerprint.
    Replay(ReplayArgs),
    /// Measure a real object store's and ChromaDB's data-plane operations over snapshot sizes, and
    /// write the cost distributions as a scenario fragment to `extends`.
    Calibrate(CalibrateArgs),
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// The ChromaDB server, e.g. `http://127.0.0.1:8000`.
    #[arg(long, value_name = "URL")]
    pub chroma: String,
    /// `memory://`, `file:///DIR` or `s3://BUCKET` (with the AWS_* environment).
    #[arg(long, value_name = "URL", default_value = "memory://")]
    pub store: String,
    /// Where to write the scenario fragment (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub out: String,
    /// Snapshot sizes in ids.
    #[arg(long, value_name = "IDS,...", default_value = "100,1000,10000")]
    pub sizes: String,
    /// Embedding dimension of the records.
    #[arg(long, value_name = "N", default_value_t = 384, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub dimension: u32,
    /// Measurements of each operation per size.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repetitions: u32,
}

#[derive(Args, Debug)]
pub struct HuntArgs {
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// How many trials to explore.
    #[arg(long, default_value_t = 2000)]
    pub trials: usize,
    /// Stop starting trials after this long (wall clock), e.g. `30s`, `5m`.
    #[arg(long, value_name = "DURATION")]
    pub time_budget: Option<String>,
    /// Where to write counterexample files.
    #[arg(long, value_name = "DIR", default_value = "out/hunt")]
    pub out: String,
}

#[derive(Args, Debug)]
pub struct VerdictArgs {
    /// Trials per configuration, load and flow.
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Override a field of every configuration (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Write the results as JSON to FILE (`-` for standard output).
    #[arg(long = "export-json", visible_alias = "json", value_name = "FILE")]
    pub export_json: Option<String>,
    /// Write the verdict table as Markdown to FILE, e.g. `reports/verdict.md`.
    #[arg(long = "export-markdown", value_name = "FILE")]
    pub export_markdown: Option<String>,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A counterexample file written by `hunt`.
    pub file: String,
    /// Write the outcome as JSON to FILE (`-` for standard output).
    #[arg(long = "export-json", visible_alias = "json", value_name = "FILE")]
    pub export_json: Option<String>,
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
pub struct TrialArgs {
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// Write the full ordered event history as JSON Lines to FILE (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub history: Option<String>,
    /// Exit with code 1 when the oracle finds an anomaly.
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct ReceiptsArgs {
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// Where to write the receipts (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub out: String,
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
        Command::Calibrate(args) => {
            let out = Output::create(&args.out, "--out")?;
            let flags = crate::live::calibrate::CalibrateFlags {
                sizes: crate::live::calibrate::parse_sizes(&args.sizes)?,
                chroma: args.chroma,
                store: args.store,
                dimension: args.dimension,
                repetitions: args.repetitions as usize,
            };
            let calibration = crate::live::calibrate::calibrate(&flags)?;
            eprint!("{}", calibration.summary);
            out.write(calibration.toml.as_bytes())
        }
        Command::Compare(args) => compare(args),
        Command::Receipts(args) => receipts(args),
        Command::Hunt(args) => hunt(args),
        Command::Verdict(args) => {
            let json = args
                .export_json
                .as_deref()
                .map(|t| Output::create(t, "--export-json"))
                .transpose()?;
            let markdown = args
                .export_markdown
                .as_deref()
                .map(|t| Output::create(t, "--export-markdown"))
                .transpose()?;
            crate::verdict_command::verdict(&crate::verdict_command::VerdictFlags {
                trials: args.trials,
                overrides: &args.set,
                export_json: json.as_ref(),
                export_markdown: markdown.as_ref(),
            })
        }
        Command::Replay(args) => {
            let export = args
                .export_json
                .as_deref()
                .map(|t| Output::create(t, "--export-json"))
                .transpose()?;
            crate::hunt_command::replay(&args.file, export.as_ref())
        }
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

fn history_output(args: &TrialArgs) -> Result<Option<Output>, Failure> {
    args.history
        .as_deref()
        .map(|target| Output::create(target, "--history"))
        .transpose()
}

/// Which flows a trial command runs.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Flows {
    /// `run`: the scenario's flow (or the M/M/c model).
    Scenario,
    /// `compare`: the old and the new flow on the same receipts.
    Both,
}

fn run(args: TrialArgs) -> Result<(), Failure> {
    trial(args, Flows::Scenario)
}

fn compare(args: TrialArgs) -> Result<(), Failure> {
    trial(args, Flows::Both)
}

fn trial(args: TrialArgs, flows: Flows) -> Result<(), Failure> {
    let export = export(&args.scenario)?;
    let history = history_output(&args)?;
    let loaded = load::load(
        &args.scenario.scenario,
        args.scenario.seed,
        &args.scenario.set,
    )?;
    if flows == Flows::Scenario && loaded.model()? == "mmc" {
        return crate::mmc_command::run(&loaded, export.as_ref());
    }
    let flags = TrialFlags {
        export: export.as_ref(),
        history: history.as_ref(),
        check: args.check,
        scenario_name: &args.scenario.scenario,
    };
    match flows {
        Flows::Scenario => crate::trial_command::run(&loaded, &flags),
        Flows::Both => crate::trial_command::compare(&loaded, &flags),
    }
}

fn hunt(args: HuntArgs) -> Result<(), Failure> {
    let export = export(&args.scenario)?;
    if args.trials == 0 {
        return Err(Failure::bad_input("--trials 0: explore at least one trial"));
    }
    let time_budget = match args.time_budget.as_deref() {
        None => None,
        Some(text) => {
            let budget: sim::time::Duration = text
                .parse()
                .map_err(|error| Failure::bad_input(format!("--time-budget {text}: {error}")))?;
            Some(std::time::Duration::from_nanos(budget.as_nanos()))
        }
    };
    let loaded = load::load(
        &args.scenario.scenario,
        args.scenario.seed,
        &args.scenario.set,
    )?;
    let flags = crate::hunt_command::HuntFlags {
        trials: args.trials,
        time_budget,
        out: std::path::Path::new(&args.out),
        export: export.as_ref(),
    };
    crate::hunt_command::hunt(&loaded, &flags)
}

fn receipts(args: ReceiptsArgs) -> Result<(), Failure> {
    let out = Output::create(&args.out, "--out")?;
    let loaded = load::load(
        &args.scenario.scenario,
        args.scenario.seed,
        &args.scenario.set,
    )?;
    let scenario = crate::pipeline_scenario::load(&loaded)?;
    let receipts = match scenario.receipts {
        Some(receipts) => receipts,
        None => sim::pipeline::generate_receipts(&scenario.config),
    };
    let mut bytes = Vec::new();
    for receipt in &receipts {
        let line = serde_json::to_vec(receipt).map_err(|error| {
            Failure::bad_input(format!("cannot encode receipt {}: {error}", receipt.index))
        })?;
        bytes.extend(line);
        bytes.push(b'\n');
    }
    out.write(&bytes)?;
    if !matches!(out, Output::Stdout) {
        eprintln!("wrote {} receipts to {}", receipts.len(), args.out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
