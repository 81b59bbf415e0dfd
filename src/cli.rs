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
    /// Print the complete resolved scenario as TOML: every knob, with the default where it differs.
    Scenario(ScenarioShowArgs),
    /// Re-run a counterexample file exactly; exit 0 only if the same anomaly appears again with the
    /// same fingerprint.
    Replay(ReplayArgs),
    /// Run a grid of cases (a base scenario and overrides), replications per case, on all cores.
    Sweep(SweepArgs),
    /// Merge the shard results of one sweep into the result of the whole sweep.
    Merge(MergeArgs),
    /// At each load, the cheapest configuration of a sweep's grid that meets an objective, and the
    /// load at which each configuration stops meeting it.
    Plan(PlanArgs),
    /// Write an HTML page and SVG and PNG plots from a JSON result.
    Report(ReportArgs),
    /// Re-run a baseline's scenarios and seeds and fail on any changed figure.
    Regress(RegressArgs),
    /// Run one scenario as `run` does, with the object store and Chroma real: each compaction
    /// loads the snapshot into a Chroma collection of its own, applies its messages there, and
    /// uploads and promotes the new version; the oracle judges what the real store holds.
    Live(LiveArgs),
    /// Measure a real object store's and ChromaDB's data-plane operations over snapshot sizes, and
    /// write the cost distributions as a scenario fragment to `extends`.
    Calibrate(CalibrateArgs),
}

/// The exports of the planning commands, each rewritten after every case.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write the results as JSON to FILE (`-` for standard output).
    #[arg(long = "export-json", visible_alias = "json", value_name = "FILE")]
    pub export_json: Option<String>,
    /// Write the results as Markdown to FILE.
    #[arg(long = "export-markdown", value_name = "FILE")]
    pub export_markdown: Option<String>,
    /// Write the results as a self-contained HTML page to FILE.
    #[arg(long = "export-html", value_name = "FILE")]
    pub export_html: Option<String>,
}

impl ExportArgs {
    fn create(&self) -> Result<crate::exporters::Exports, Failure> {
        crate::exporters::Exports::create(
            self.export_json.as_deref(),
            self.export_markdown.as_deref(),
            self.export_html.as_deref(),
        )
    }
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// A sweep file (see `scenarios/sweeps/`).
    pub sweep: String,
    /// Run shard I of N (from 0): cases whose index is I modulo N. Also taken from
    /// SLURM_ARRAY_TASK_ID/COUNT, JOB_COMPLETION_INDEX with RECEIPT_SIM_SHARD_COUNT, or
    /// AWS_BATCH_JOB_ARRAY_INDEX/SIZE.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    #[command(flatten)]
    pub exports: ExportArgs,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Shard results written by `sweep --shard`, `hunt --shard` or `verdict --shard`.
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Where to write the merged hunt's counterexample files.
    #[arg(long, value_name = "DIR", default_value = "out/hunt")]
    pub out: String,
    #[command(flatten)]
    pub exports: ExportArgs,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// A sweep file with a `[plan]` section naming the load axis.
    pub sweep: String,
    /// The objective, e.g. "labels_visible.p99 < 120s".
    #[arg(long)]
    pub slo: String,
    /// The largest share of receipts with an anomaly a configuration may have (e.g. 0).
    #[arg(long, value_name = "SHARE")]
    pub max_anomaly_share: Option<f64>,
    #[command(flatten)]
    pub exports: ExportArgs,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A JSON result of run, compare, hunt, verdict, sweep, merge or plan.
    pub results: String,
    /// The folder for index.html and the plots.
    #[arg(long, value_name = "DIR")]
    pub out: String,
}

#[derive(Args, Debug)]
pub struct RegressArgs {
    /// The baseline file.
    #[arg(long, value_name = "FILE", default_value = "reports/baseline.json")]
    pub baseline: String,
    /// Accept the figures as they are now: rewrite the baseline.
    #[arg(long)]
    pub bless: bool,
    /// Override a field of every pipeline scenario of the baseline, as if its default changed.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

/// Runs the planning commands: sweeps, merges, plans, reports and the regression gate.
fn planning(command: Command) -> Result<(), Failure> {
    match command {
        Command::Sweep(args) => {
            let exports = args.exports.create()?;
            let shard = crate::shard::resolve(args.shard.as_deref())?;
            crate::sweep::sweep(&args.sweep, shard, &exports)
        }
        Command::Merge(args) => {
            let exports = args.exports.create()?;
            crate::sweep::merge(&args.files, std::path::Path::new(&args.out), &exports)
        }
        Command::Plan(args) => {
            let exports = args.exports.create()?;
            let objective = crate::plan::Objective::parse(&args.slo, args.max_anomaly_share)?;
            crate::plan::plan(&args.sweep, objective, &exports)
        }
        Command::Report(args) => crate::report::report(&args.results, &args.out),
        Command::Regress(args) => crate::regress::regress(&args.baseline, args.bless, &args.set),
        _ => unreachable!("only planning commands come here"),
    }
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
    /// Also write the measured figures as JSON (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
}

#[derive(Args, Debug)]
pub struct LiveArgs {
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// The ChromaDB server, e.g. `http://127.0.0.1:8000` (overrides `live.chroma`).
    #[arg(long, value_name = "URL")]
    pub chroma: Option<String>,
    /// `memory://`, `file:///DIR` or `s3://BUCKET` with the AWS_* environment (overrides
    /// `live.store`, default `memory://`).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Where durations come from (overrides `live.timing`): `model` (the scenario's
    /// distributions, so the trial takes the pure simulation's decisions; the default) or `real`
    /// (each object-store and Chroma operation's measured wall time, times the time scale,
    /// advances virtual time).
    #[arg(long, value_name = "MODE", value_parser = sim::pipeline::config::Timing::NAMES)]
    pub timing: Option<String>,
    /// Virtual time per measured wall time in real timing (overrides `live.time_scale`, default 1).
    #[arg(long, value_name = "F", value_parser = parse_time_scale)]
    pub time_scale: Option<f64>,
    /// Embedding dimension of the records (overrides `live.dimension`, default 16).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub dimension: Option<u32>,
    /// Exit with code 1 when the oracle finds an anomaly.
    #[arg(long)]
    pub check: bool,
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
    /// Explore shard I of N (from 0): trials whose index is I modulo N; `merge` joins the
    /// shards. Also taken from SLURM_ARRAY_TASK_ID/COUNT, JOB_COMPLETION_INDEX with
    /// RECEIPT_SIM_SHARD_COUNT, or AWS_BATCH_JOB_ARRAY_INDEX/SIZE.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
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
    /// Judge shard I of N (from 0) of the (configuration, load) pairs; `merge` joins the shards.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
}

#[derive(Args, Debug)]
pub struct ScenarioShowArgs {
    /// A scenario file, or the name of an embedded profile (`built`, `described`, `quick`, `mmc`, …).
    pub scenario: String,
    /// The seed (overrides the scenario's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override any field (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
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
            return Err(Failure::bad_input(clap_message(&error)));
        }
    };
    check_threads_variable()?;
    match cli.command {
        Command::Run(args) => run(args),
        Command::Calibrate(args) => {
            let out = Output::create(&args.out, "--out")?;
            let json = args
                .json
                .as_deref()
                .map(|target| Output::create(target, "--json"))
                .transpose()?;
            let flags = crate::live::calibrate::CalibrateFlags {
                sizes: crate::live::calibrate::parse_sizes(&args.sizes)?,
                chroma: args.chroma,
                store: args.store,
                dimension: args.dimension,
                repetitions: args.repetitions as usize,
            };
            let calibration = crate::live::calibrate::calibrate(&flags)?;
            eprint!("{}", calibration.summary);
            if let Some(json) = &json {
                let mut result = serde_json::json!({
                    "schema_version": crate::output::SCHEMA_VERSION,
                    "command": "calibrate",
                });
                if let (Some(result), serde_json::Value::Object(figures)) =
                    (result.as_object_mut(), calibration.json)
                {
                    result.extend(figures);
                }
                json.write_json(&result)?;
            }
            out.write(calibration.toml.as_bytes())
        }
        Command::Live(args) => live(args),
        Command::Compare(args) => compare(args),
        Command::Receipts(args) => receipts(args),
        Command::Hunt(args) => hunt(args),
        Command::Verdict(args) => verdict(args),
        Command::Scenario(args) => {
            let loaded = load::load(&args.scenario, args.seed, &args.set)?;
            print!("{}", crate::pipeline_scenario::resolved_toml(&loaded)?);
            Ok(())
        }
        Command::Replay(args) => {
            let export = optional_output(args.export_json.as_deref(), "--export-json")?;
            crate::hunt_command::replay(&args.file, export.as_ref())
        }
        command => planning(command),
    }
}

fn optional_output(target: Option<&str>, flag: &str) -> Result<Option<Output>, Failure> {
    target.map(|t| Output::create(t, flag)).transpose()
}

fn verdict(args: VerdictArgs) -> Result<(), Failure> {
    check_count("--trials", args.trials, VERDICT_TRIALS_MAX)?;
    if let Some(flow) = args
        .set
        .iter()
        .find(|set| set.trim_start().starts_with("flow"))
    {
        return Err(Failure::bad_input(format!(
            "--set {}: verdict runs both flows and compares them; it takes no `flow`",
            sim::time::echo(flow)
        )));
    }
    let json = optional_output(args.export_json.as_deref(), "--export-json")?;
    let markdown = optional_output(args.export_markdown.as_deref(), "--export-markdown")?;
    crate::verdict_command::verdict(&crate::verdict_command::VerdictFlags {
        trials: args.trials,
        shard: crate::shard::resolve(args.shard.as_deref())?,
        overrides: &args.set,
        export_json: json.as_ref(),
        export_markdown: markdown.as_ref(),
    })
}

/// The most trials `hunt` explores (each keeps a few hundred bytes until the end).
const HUNT_TRIALS_MAX: usize = 1_000_000;
/// The most trials per cell of `verdict` (it judges 40 cells).
const VERDICT_TRIALS_MAX: usize = 10_000;

/// A count flag in `1..=max`.
fn check_count(flag: &str, count: usize, max: usize) -> Result<(), Failure> {
    if (1..=max).contains(&count) {
        return Ok(());
    }
    Err(Failure::bad_input(format!(
        "{flag} {count}: must lie in 1..={max}"
    )))
}

/// One line from a clap error: its first line, and the missing argument or the usage where the
/// first line alone says nothing.
fn clap_message(error: &clap::Error) -> String {
    use clap::error::ErrorKind;
    if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return "no command given: run `receipt-sim --help` for the commands".to_string();
    }
    let text = error.to_string();
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let first = lines
        .next()
        .unwrap_or("bad command line")
        .trim_start_matches("error: ")
        .to_string();
    if first.ends_with(':') {
        let detail: Vec<&str> = lines
            .take_while(|line| !line.starts_with("Usage:"))
            .collect();
        return format!("{first} {}", detail.join(", "));
    }
    first
}

/// `RECEIPT_SIM_THREADS`, when set, must be a positive number of threads.
fn check_threads_variable() -> Result<(), Failure> {
    let Some(text) = std::env::var_os("RECEIPT_SIM_THREADS") else {
        return Ok(());
    };
    let text = text.to_string_lossy();
    match text.trim().parse::<usize>() {
        Ok(threads) if (1..=4096).contains(&threads) => Ok(()),
        _ => Err(Failure::bad_input(format!(
            "RECEIPT_SIM_THREADS={}: expected a number of threads in 1..=4096",
            sim::time::echo(&text)
        ))),
    }
}

/// The JSON export named on the command line, created before any work.
pub fn export(args: &ScenarioArgs) -> Result<Option<Output>, Failure> {
    args.export_json
        .as_deref()
        .map(|target| Output::create(target, "--export-json"))
        .transpose()
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
    if let (Some(json), Some(history)) = (&args.scenario.export_json, &args.history)
        && json == history
        && json != "-"
    {
        return Err(Failure::bad_input(format!(
            "--export-json and --history both name {}: give each its own file",
            sim::time::echo(json)
        )));
    }
    let export = export(&args.scenario)?;
    let history = history_output(&args)?;
    let loaded = load::load(
        &args.scenario.scenario,
        args.scenario.seed,
        &args.scenario.set,
    )?;
    if flows == Flows::Scenario && loaded.model()? == "mmc" {
        if args.history.is_some() || args.check {
            return Err(Failure::bad_input(format!(
                "{}: the M/M/c model keeps no history and has no oracle: drop --history and --check",
                loaded.locate("model")
            )));
        }
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

fn parse_time_scale(text: &str) -> Result<f64, String> {
    let scale: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    sim::pipeline::config::check_time_scale(scale).map(|()| scale)
}

fn live(args: LiveArgs) -> Result<(), Failure> {
    let export = export(&args.scenario)?;
    let loaded = load::load(
        &args.scenario.scenario,
        args.scenario.seed,
        &args.scenario.set,
    )?;
    let flags = crate::live_command::LiveFlags {
        chroma: args.chroma.as_deref(),
        store: args.store.as_deref(),
        dimension: args.dimension,
        timing: args.timing.as_deref().map(|name| {
            sim::pipeline::config::Timing::parse(name).expect("clap accepts only the timing names")
        }),
        time_scale: args.time_scale,
        export: export.as_ref(),
        check: args.check,
        scenario_name: &args.scenario.scenario,
    };
    crate::live_command::live(&loaded, &flags)
}

fn hunt(args: HuntArgs) -> Result<(), Failure> {
    check_count("--trials", args.trials, HUNT_TRIALS_MAX)?;
    crate::output::check_dir(&args.out, "--out")?;
    let export = export(&args.scenario)?;
    let time_budget = match args.time_budget.as_deref() {
        None => None,
        Some(text) => {
            let budget: sim::time::Duration = text.parse().map_err(|error| {
                Failure::bad_input(format!("--time-budget {}: {error}", sim::time::echo(text)))
            })?;
            if budget == sim::time::Duration::ZERO {
                return Err(Failure::bad_input(
                    "--time-budget 0s: a hunt needs time for at least one trial",
                ));
            }
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
        shard: crate::shard::resolve(args.shard.as_deref())?,
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
