//! Pipeline scenarios as the binary reads them: the typed configuration, validated, and the
//! receipts it replays when `workload.source` names a file of receipts (JSON Lines).
//!
//! Depends on `load` and `sim::pipeline`.

use crate::failure::Failure;
use crate::load::Loaded;
use sim::pipeline::config::WorkloadSource;
use sim::pipeline::{PipelineConfig, ValidatedConfig};
use sim::scenario::{self, ScenarioError};
use sim::workload::{Receipt, check_receipts};

/// The most receipts a replayed file may hold.
const RECEIPTS_FILE_MAX: usize = 20_000_000;

/// A validated pipeline configuration and the receipts to replay, if the scenario names a file.
pub struct PipelineScenario {
    pub config: ValidatedConfig,
    pub receipts: Option<Vec<Receipt>>,
}

impl PipelineScenario {
    pub fn receipts(&self) -> Option<&[Receipt]> {
        self.receipts.as_deref()
    }
}

pub fn load(loaded: &Loaded) -> Result<PipelineScenario, Failure> {
    let model = loaded.model()?;
    if model != "pipeline" {
        return Err(Failure::bad_input(format!(
            "{}: this command needs a pipeline scenario, not model `{model}`",
            loaded.locate("model")
        )));
    }
    let config: PipelineConfig =
        scenario::deserialize(&loaded.table).map_err(|e| loaded.failure(e))?;
    let config = ValidatedConfig::new(config)
        .map_err(|error| loaded.failure(ScenarioError::at(error.field, error.message)))?;
    let receipts = match &config.workload.source {
        WorkloadSource::Generate => None,
        WorkloadSource::File(path) => Some(
            read_receipts(&loaded.resolve_path("workload.source", path)).map_err(|message| {
                Failure::bad_input(format!(
                    "{}: workload.source: {message}",
                    loaded.locate("workload.source")
                ))
            })?,
        ),
    };
    if let Some(receipts) = &receipts {
        check_replay_memory(&config, receipts).map_err(|message| {
            Failure::bad_input(format!(
                "{}: workload.source: {message}",
                loaded.locate("workload.source")
            ))
        })?;
    }
    Ok(PipelineScenario { config, receipts })
}

/// Refuses a file of receipts whose trial would need more than `TRIAL_BYTES_MAX`, estimated as
/// for a generated workload: each word's share, and the labels of the receipts in flight.
fn check_replay_memory(config: &ValidatedConfig, receipts: &[Receipt]) -> Result<(), String> {
    use sim::pipeline::config::{BYTES_PER_LABEL_IN_FLIGHT, BYTES_PER_WORD, TRIAL_BYTES_MAX};
    let words: f64 = receipts
        .iter()
        .map(|receipt| {
            receipt
                .words_per_line
                .iter()
                .map(|w| f64::from(*w))
                .sum::<f64>()
        })
        .sum();
    let labels: f64 = receipts
        .iter()
        .map(|receipt| receipt.labels.len() as f64)
        .sum();
    let in_flight_share =
        (f64::from(config.upload.concurrency) / receipts.len().max(1) as f64).min(1.0);
    let bytes = words * BYTES_PER_WORD + labels * in_flight_share * BYTES_PER_LABEL_IN_FLIGHT;
    if bytes <= TRIAL_BYTES_MAX as f64 {
        return Ok(());
    }
    Err(format!(
        "{} receipts of {words:.0} words need about {:.1} GiB, more than the {} GiB a trial may take",
        receipts.len(),
        bytes / f64::from(1u32 << 30),
        TRIAL_BYTES_MAX >> 30
    ))
}

/// The most bytes an input file (receipts, a counterexample) may hold.
const INPUT_BYTES_MAX: u64 = 4 << 30;

/// Reads a regular file of at most `INPUT_BYTES_MAX` bytes of UTF-8 text.
pub fn read_bounded(path: &std::path::Path) -> Result<String, String> {
    let shown = path.display();
    let metadata =
        std::fs::metadata(path).map_err(|error| format!("{shown}: cannot read: {error}"))?;
    if !metadata.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    if metadata.len() > INPUT_BYTES_MAX {
        return Err(format!(
            "{shown}: {} bytes, at most {INPUT_BYTES_MAX}",
            metadata.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|error| format!("{shown}: cannot read: {error}"))?;
    String::from_utf8(bytes).map_err(|error| {
        let valid = error.utf8_error().valid_up_to();
        let line = error.as_bytes()[..valid]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        format!("{shown}:{line}: not UTF-8 text")
    })
}

/// Reads receipts written by `receipt-sim receipts` (one JSON object per line).
pub fn read_receipts(path: &std::path::Path) -> Result<Vec<Receipt>, String> {
    let text = read_bounded(path)?;
    let path = path.display();
    let mut receipts = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if receipts.len() >= RECEIPTS_FILE_MAX {
            return Err(format!("{path}: more than {RECEIPTS_FILE_MAX} receipts"));
        }
        let receipt: Receipt = serde_json::from_str(line)
            .map_err(|error| format!("{path}:{}: {error}", number + 1))?;
        receipts.push(receipt);
    }
    check_receipts(&receipts).map_err(|error| format!("{path}: {error}"))?;
    Ok(receipts)
}

/// The complete resolved scenario as TOML: every knob with its value, and the described
/// profile's default as a comment where the value differs.
pub fn resolved_toml(loaded: &Loaded) -> Result<String, Failure> {
    if loaded.model()? == "mmc" {
        let scenario: sim::mmc::MmcScenario =
            scenario::deserialize(&loaded.table).map_err(|e| loaded.failure(e))?;
        scenario
            .mmc
            .validate()
            .map_err(|(field, message)| loaded.failure(ScenarioError::at(field, message)))?;
        let text = toml::to_string(&scenario)
            .map_err(|error| Failure::bad_input(format!("cannot print the scenario: {error}")))?;
        return Ok(format!("model = \"mmc\"\n{text}"));
    }
    let scenario = load(loaded)?;
    let table = |config: &PipelineConfig| -> Result<toml::Table, Failure> {
        toml::Table::try_from(config)
            .map_err(|error| Failure::bad_input(format!("cannot print the scenario: {error}")))
    };
    let resolved = table(&scenario.config)?;
    let defaults = table(&PipelineConfig::default())?;
    let mut text = String::from(
        "# The resolved scenario: every knob. `# default:` gives the described profile's value\n\
         # where this one differs.\nmodel = \"pipeline\"\n",
    );
    write_table(&mut text, &resolved, &defaults, None);
    Ok(text)
}

/// Writes the scalars of `table` and then each sub-table under its `[header]`.
fn write_table(
    text: &mut String,
    table: &toml::Table,
    defaults: &toml::Table,
    header: Option<&str>,
) {
    use std::fmt::Write as _;
    if let Some(header) = header {
        let _ = writeln!(text, "\n[{header}]");
    }
    for (key, value) in table {
        if value.is_table() {
            continue;
        }
        let value_text = inline(value);
        match defaults.get(key) {
            Some(default) if default != value => {
                let _ = writeln!(text, "{key} = {value_text}  # default: {}", inline(default));
            }
            _ => {
                let _ = writeln!(text, "{key} = {value_text}");
            }
        }
    }
    let empty = toml::Table::new();
    for (key, value) in table {
        if let toml::Value::Table(sub) = value {
            let sub_defaults = defaults
                .get(key)
                .and_then(toml::Value::as_table)
                .unwrap_or(&empty);
            let name = match header {
                Some(header) => format!("{header}.{key}"),
                None => key.clone(),
            };
            write_table(text, sub, sub_defaults, Some(&name));
        }
    }
}

/// A value as TOML on one line (tables inline).
fn inline(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(table) => {
            let fields: Vec<String> = table
                .iter()
                .map(|(key, value)| format!("{key} = {}", inline(value)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}
