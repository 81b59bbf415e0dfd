//! Pipeline scenarios as the binary reads them: the typed configuration, validated, and the
//! receipts it replays when `workload.source` names a file of receipts (JSON Lines).
//!
//! Depends on `load` and `sim::pipeline`.

use crate::failure::Failure;
use crate::load::Loaded;
use sim::pipeline::PipelineConfig;
use sim::pipeline::config::WorkloadSource;
use sim::scenario::{self, ScenarioError};
use sim::workload::{Receipt, check_receipts};

/// The most receipts a replayed file may hold.
const RECEIPTS_FILE_MAX: usize = 20_000_000;

/// A validated pipeline configuration and the receipts to replay, if the scenario names a file.
pub struct PipelineScenario {
    pub config: PipelineConfig,
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
    config
        .validate()
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

/// Reads receipts written by `receipt-sim receipts` (one JSON object per line).
pub fn read_receipts(path: &std::path::Path) -> Result<Vec<Receipt>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("{}: cannot read: {error}", path.display()))?;
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
