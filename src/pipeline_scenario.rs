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
    Ok(PipelineScenario { config, receipts })
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
