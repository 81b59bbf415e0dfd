//! `regress`: the regression gate. Re-runs the scenarios and seeds of a baseline file and compares
//! their deterministic figures (fingerprints, event counts, percentiles, anomaly counts) exactly;
//! any difference fails (exit 1) unless accepted with `--bless`, which rewrites the baseline.
//!
//! Depends on `load`, `pipeline_scenario`, `parallel`, `output` and `sim::explore`, `sim::mmc`.

use crate::failure::Failure;
use crate::output::SCHEMA_VERSION;
use crate::{load, pipeline_scenario};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sim::explore;
use sim::oracle::Class;
use sim::pipeline::TrialOptions;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The most differences printed.
const CHANGES_PRINTED_MAX: usize = 40;

/// What an entry re-runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One trial judged by the oracle (or, for an M/M/c scenario, its replications).
    Trial,
    /// Explored trials as `hunt` runs them: receipts affected per class and cause.
    Hunt { trials: u64 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub scenario: String,
    pub seed: u64,
    pub set: Vec<String>,
    pub kind: Kind,
    /// Flat `path: value` figures.
    pub figures: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub schema_version: u32,
    pub command: String,
    pub entries: Vec<Entry>,
}

fn entry(name: &str, scenario: &str, set: &[&str], kind: Kind) -> Entry {
    Entry {
        name: name.to_string(),
        scenario: scenario.to_string(),
        seed: 1,
        set: set.iter().map(|s| s.to_string()).collect(),
        kind,
        figures: BTreeMap::new(),
    }
}

/// The entries of a new baseline: small, a few seconds in all.
fn default_entries() -> Vec<Entry> {
    vec![
        entry("quick, old flow", "quick", &["flow=old"], Kind::Trial),
        entry("quick, new flow", "quick", &["flow=new"], Kind::Trial),
        entry(
            "described, new flow",
            "described",
            &["flow=new"],
            Kind::Trial,
        ),
        entry("built, old flow", "built", &[], Kind::Trial),
        entry("hunt", "hunt", &[], Kind::Hunt { trials: 300 }),
        entry(
            "M/M/c",
            "mmc",
            &["mmc.customers=20000", "mmc.replications=2"],
            Kind::Trial,
        ),
    ]
}

/// Flattens a JSON value into `path: value` pairs.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, inner, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn trial_figures(loaded: &load::Loaded) -> Result<BTreeMap<String, Value>, Failure> {
    let mut figures = BTreeMap::new();
    if loaded.model()? == "mmc" {
        let scenario: sim::mmc::MmcScenario =
            sim::scenario::deserialize(&loaded.table).map_err(|e| loaded.failure(e))?;
        let report = sim::mmc::run_scenario(&scenario);
        flatten(
            "",
            &serde_json::to_value(&report).unwrap_or(Value::Null),
            &mut figures,
        );
        return Ok(figures);
    }
    let scenario = pipeline_scenario::load(loaded)?;
    let judged = explore::judge(
        &scenario.config,
        scenario.receipts(),
        &TrialOptions::default(),
    );
    let report = &judged.trial.report;
    let value = json!({
        "fingerprint": report.fingerprint,
        "events": report.events,
        "receipts": report.receipts,
        "stop": report.stop,
        "latency_ms": report.latency_ms,
        "never_visible": report.never_visible,
        "never_saved": report.never_saved,
        "dead_lettered": report.dead_lettered,
        "publishes": report.publishes,
        "receipts_affected": judged.oracle.receipts_affected,
        "anomalies": Class::ALL.iter().map(|c| (c.name(), judged.oracle.by_class.get(c).copied().unwrap_or(0))).collect::<BTreeMap<_, _>>(),
    });
    flatten("", &value, &mut figures);
    Ok(figures)
}

fn hunt_figures(loaded: &load::Loaded, trials: u64) -> Result<BTreeMap<String, Value>, Failure> {
    let config = pipeline_scenario::load(loaded)?.config;
    let events = sim::pipeline::run_trial(&config, None, &TrialOptions::default())
        .report
        .events;
    let explored = crate::parallel::map_in(
        trials as usize,
        "hunt",
        || explore::Explorer::new(&config),
        |explorer, index| {
            explorer.explore(&explore::choices_for(config.seed, index as u64, events))
        },
    );
    let mut figures = BTreeMap::new();
    let mut receipts = 0;
    for trial in &explored {
        receipts += trial.receipts;
        for ((class, cause), affected) in &trial.affected {
            let key = format!("affected.{}.{}", class.name(), cause.name());
            let count = figures.entry(key).or_insert(json!(0));
            *count = json!(count.as_u64().unwrap_or(0) + affected);
        }
    }
    figures.insert("receipts".to_string(), json!(receipts));
    figures.insert("trials".to_string(), json!(explored.len()));
    Ok(figures)
}

/// Runs an entry now, with `extra` overrides on pipeline scenarios.
fn measure(entry: &Entry, extra: &[String]) -> Result<BTreeMap<String, Value>, Failure> {
    let probe = load::load(&entry.scenario, Some(entry.seed), &entry.set)?;
    let mut set = entry.set.clone();
    if probe.model()? == "pipeline" {
        set.extend(extra.iter().cloned());
    }
    let loaded = load::load(&entry.scenario, Some(entry.seed), &set)?;
    match entry.kind {
        Kind::Trial => trial_figures(&loaded),
        Kind::Hunt { trials } => hunt_figures(&loaded, trials),
    }
}

/// The differences between two sets of figures, one line each.
fn changes(
    name: &str,
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
) -> Vec<String> {
    let mut lines = Vec::new();
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for key in keys {
        let (a, b) = (before.get(key), after.get(key));
        if a != b {
            let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), Value::to_string);
            lines.push(format!("  {name}: {key}: {} -> {}", show(a), show(b)));
        }
    }
    lines
}

pub fn regress(path: &str, bless: bool, extra: &[String]) -> Result<(), Failure> {
    let output = crate::output::Output::create(path, "--baseline")?;
    let baseline = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str::<Baseline>(&text)
            .map_err(|error| Failure::bad_input(format!("{path}: not a baseline: {error}")))?,
        Err(_) if bless => Baseline {
            schema_version: SCHEMA_VERSION,
            command: "regress".to_string(),
            entries: default_entries(),
        },
        Err(error) => {
            return Err(Failure::bad_input(format!(
                "{path}: cannot read: {error} (create it with --bless)"
            )));
        }
    };
    if baseline.schema_version != SCHEMA_VERSION {
        return Err(Failure::bad_input(format!(
            "{path}: schema_version {} (this build reads {SCHEMA_VERSION})",
            baseline.schema_version
        )));
    }
    let started = std::time::Instant::now();
    let mut updated = baseline.clone();
    let mut lines = Vec::new();
    for entry in &mut updated.entries {
        let figures = measure(entry, extra)?;
        lines.extend(changes(&entry.name, &entry.figures, &figures));
        entry.figures = figures;
    }
    let mut text = format!(
        "regress {path}: {} entries in {:.1} s, {} figures changed\n",
        updated.entries.len(),
        started.elapsed().as_secs_f64(),
        lines.len()
    );
    for line in lines.iter().take(CHANGES_PRINTED_MAX) {
        let _ = writeln!(text, "{line}");
    }
    if lines.len() > CHANGES_PRINTED_MAX {
        let _ = writeln!(text, "  … {} more", lines.len() - CHANGES_PRINTED_MAX);
    }
    print!("{text}");
    if bless {
        output.write_json(&updated)?;
        println!("blessed: {path} rewritten");
        return Ok(());
    }
    if lines.is_empty() {
        Ok(())
    } else {
        Err(Failure::race_found(format!(
            "{} figures differ from {path}: accept them with --bless if the change is intended",
            lines.len()
        )))
    }
}
