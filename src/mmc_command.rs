//! `run` for the M/M/c validation model: replications in parallel, a summary beside Erlang C.
//!
//! Depends on `sim::mmc`, `parallel` and `output`.

use crate::failure::Failure;
use crate::load::Loaded;
use crate::output::Output;
use crate::parallel;
use sim::mmc::{self, MmcScenario};

pub fn run(loaded: &Loaded, export: Option<&Output>) -> Result<(), Failure> {
    let scenario: MmcScenario =
        sim::scenario::deserialize(&loaded.table).map_err(|e| loaded.failure(e))?;
    scenario.mmc.validate().map_err(|(field, message)| {
        loaded.failure(sim::scenario::ScenarioError::at(field, message))
    })?;
    let config = &scenario.mmc;
    let replications = parallel::map(config.replications as usize, "replications", |index| {
        mmc::run_replication(config, scenario.seed, index as u64)
    });
    let report = mmc::summarize(config, &replications);
    let json_on_stdout = matches!(export, Some(Output::Stdout));
    crate::output::say(
        json_on_stdout,
        &format!(
            "M/M/{} at load {:.3}, {} replications of {} customers, seed {}\n\
             waiting time Wq  {:.4} s  ({})\n\
             Erlang C Wq      {:.4} s  (deviation {:+.2} %)\n\
             utilisation      {:.4}  (theory {:.4})\n\
             Little's law     max |L - lambda W| = {:.3e}\n\
             events {}  fingerprint {}\n",
            config.servers,
            config.arrival_rate / (config.servers as f64 * config.service_rate),
            report.replications,
            report.customers,
            scenario.seed,
            report.wq_mean,
            if report.replications > 1 {
                format!(
                    "95% CI {:.4} .. {:.4}",
                    report.wq_ci95[0], report.wq_ci95[1]
                )
            } else {
                "one replication: no interval".to_string()
            },
            report.erlang_c_wq,
            100.0 * (report.wq_mean / report.erlang_c_wq - 1.0),
            report.utilisation,
            report.utilisation_theory,
            report.little_law_max_abs_error,
            report.events,
            report.fingerprint,
        ),
    );
    if let Some(export) = export {
        let mut value = serde_json::to_value(&report)
            .map_err(|error| Failure::bad_input(format!("cannot encode the report: {error}")))?;
        value["schema_version"] = serde_json::json!(crate::output::SCHEMA_VERSION);
        value["command"] = serde_json::json!("run");
        value["model"] = serde_json::json!("mmc");
        value["seed"] = serde_json::json!(scenario.seed);
        value["scenario"] = serde_json::to_value(&scenario).unwrap_or(serde_json::Value::Null);
        export.write_json(&value)?;
    }
    Ok(())
}
