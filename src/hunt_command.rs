//! `hunt` and `replay`: many trials over seeds and orderings of simultaneous events, shares of
//! receipts affected per anomaly class and cause with 95 % intervals, one shrunk counterexample file
//! per class and cause; and the exact re-run of such a file.
//!
//! Depends on `pipeline_scenario`, `parallel`, `output` and `sim::explore`.

use crate::failure::Failure;
use crate::load::Loaded;
use crate::output::{Output, write_atomically};
use crate::pipeline_scenario;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sim::explore::{self, Choices, Explored};
use sim::oracle::{Anomaly, Cause, Class};
use sim::pipeline::{HistoryFilter, HistoryRecord, PipelineConfig};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The version of the counterexample file format.
const COUNTEREXAMPLE_FORMAT: u32 = 1;
/// The most history records printed by `replay`.
const EXCERPT_PRINTED_MAX: usize = 60;

pub struct HuntFlags<'a> {
    pub trials: usize,
    pub time_budget: Option<std::time::Duration>,
    pub out: &'a Path,
    pub export: Option<&'a Output>,
}

/// A counterexample file: everything needed to run the trial again, and what it showed.
#[derive(Serialize, Deserialize)]
pub struct CounterexampleFile {
    pub receipt_sim_counterexample: u32,
    pub class: Class,
    pub cause: Cause,
    pub description: String,
    /// The resolved scenario, as TOML.
    pub scenario: String,
    pub choices: Choices,
    pub fingerprint: String,
    pub events: u64,
    pub receipts: u64,
    pub anomaly: Value,
    pub excerpt: Value,
    pub replay: String,
}

/// The result of `hunt`.
#[derive(Serialize)]
pub struct HuntResult {
    pub schema_version: u32,
    pub command: &'static str,
    pub scenario: Value,
    pub seed: u64,
    pub trials: u64,
    pub receipts: u64,
    pub elapsed_s: f64,
    pub trials_per_s: f64,
    pub threads: u64,
    pub anomalies: HuntAnomalies,
    pub counterexamples: Vec<String>,
}

#[derive(Serialize)]
pub struct HuntAnomalies {
    /// Trials showing each class.
    pub by_class: BTreeMap<&'static str, u64>,
    pub receipts_affected: BTreeMap<&'static str, u64>,
    pub kinds: Vec<KindResult>,
}

/// One anomaly class and cause found by a hunt.
#[derive(Serialize)]
pub struct KindResult {
    pub class: &'static str,
    pub cause: &'static str,
    pub description: &'static str,
    pub trials: u64,
    pub receipts_affected: u64,
    pub share: f64,
    pub share_ci95: [f64; 2],
    pub counterexample: Option<String>,
    pub counterexample_receipts: Option<u64>,
}

#[derive(Default)]
struct KindTally {
    trials: u64,
    receipts: u64,
    first: Option<Choices>,
}

pub fn hunt(loaded: &Loaded, flags: &HuntFlags<'_>) -> Result<(), Failure> {
    let scenario = pipeline_scenario::load(loaded)?;
    if scenario.receipts.is_some() {
        return Err(Failure::bad_input(
            "hunt explores generated workloads: set workload.source = \"generate\"".to_string(),
        ));
    }
    std::fs::create_dir_all(flags.out).map_err(|error| {
        Failure::bad_input(format!(
            "--out {}: cannot create: {error}",
            flags.out.display()
        ))
    })?;
    let config = &scenario.config;
    // PCT spreads its priority changes over the events a plain trial takes.
    let expected_events = sim::pipeline::run_trial(config, None, &Default::default())
        .report
        .events;
    let started = std::time::Instant::now();
    let deadline = flags.time_budget.map(|budget| started + budget);
    let explored: Vec<Explored> = crate::parallel::map_until_with(
        flags.trials,
        deadline,
        "trials",
        || (),
        |(), index| {
            let choices = explore::choices_for(config.seed, index as u64, expected_events);
            explore::explore(config, &choices)
        },
    );
    let elapsed = started.elapsed().as_secs_f64();
    let receipts_total: u64 = explored.iter().map(|e| e.receipts).sum();
    let mut kinds: BTreeMap<(Class, Cause), KindTally> = BTreeMap::new();
    for trial in &explored {
        for (kind, receipts) in &trial.affected {
            let tally = kinds.entry(*kind).or_default();
            tally.trials += 1;
            tally.receipts += receipts;
            tally.first.get_or_insert(trial.choices);
        }
    }
    let counterexamples: Vec<(Class, Cause, PathBuf, usize)> =
        crate::parallel::map(kinds.len(), "shrinking", |i| {
            let (kind, tally) = kinds.iter().nth(i).expect("index within kinds");
            let choices = tally.first.expect("a kind has a first trial");
            write_counterexample(config, &choices, *kind, flags.out)
        })
        .into_iter()
        .collect::<Result<Vec<_>, Failure>>()?
        .into_iter()
        .flatten()
        .collect();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "hunt: {} trials of {} receipts in {:.1} s ({:.0} trials/s on {} threads), seeds from {}",
        explored.len(),
        receipts_total / explored.len().max(1) as u64,
        elapsed,
        explored.len() as f64 / elapsed.max(1e-9),
        crate::parallel::threads(),
        config.seed
    );
    if kinds.is_empty() {
        let upper = sim::stats::wilson_ci95(0, receipts_total)[1];
        let _ = writeln!(
            text,
            "  no anomaly in {receipts_total} receipts (95% upper bound on the share: {upper:.4})"
        );
    }
    let mut kinds_json = Vec::new();
    for ((class, cause), tally) in &kinds {
        let ci = sim::stats::wilson_ci95(tally.receipts, receipts_total);
        let share = tally.receipts as f64 / receipts_total.max(1) as f64;
        let file = counterexamples
            .iter()
            .find(|(c, k, _, _)| c == class && k == cause);
        let _ = writeln!(
            text,
            "  {} {:<27} {:>6} trials  receipts {:.4} (95% CI {:.4} .. {:.4})  {}",
            class.name(),
            cause.name(),
            tally.trials,
            share,
            ci[0],
            ci[1],
            file.map_or("(did not shrink)".to_string(), |(_, _, path, _)| path
                .display()
                .to_string())
        );
        kinds_json.push(KindResult {
            class: class.name(),
            cause: cause.name(),
            description: cause.description(),
            trials: tally.trials,
            receipts_affected: tally.receipts,
            share,
            share_ci95: ci,
            counterexample: file.map(|(_, _, path, _)| path.display().to_string()),
            counterexample_receipts: file.map(|(_, _, _, receipts)| *receipts as u64),
        });
    }
    crate::output::say(matches!(flags.export, Some(Output::Stdout)), &text);
    if let Some(export) = flags.export {
        let mut by_class: BTreeMap<&str, u64> = Class::ALL.iter().map(|c| (c.name(), 0)).collect();
        let mut affected_by_class: BTreeMap<&str, u64> = by_class.clone();
        for ((class, _), tally) in &kinds {
            *by_class.entry(class.name()).or_default() += tally.trials;
            *affected_by_class.entry(class.name()).or_default() += tally.receipts;
        }
        let value = HuntResult {
            schema_version: crate::output::SCHEMA_VERSION,
            command: "hunt",
            scenario: crate::load::toml_to_json(&loaded.table),
            seed: config.seed,
            trials: explored.len() as u64,
            receipts: receipts_total,
            elapsed_s: elapsed,
            trials_per_s: explored.len() as f64 / elapsed.max(1e-9),
            threads: crate::parallel::threads() as u64,
            anomalies: HuntAnomalies {
                by_class,
                receipts_affected: affected_by_class,
                kinds: kinds_json,
            },
            counterexamples: counterexamples
                .iter()
                .map(|(_, _, path, _)| path.display().to_string())
                .collect(),
        };
        export.write_json(&value)?;
    }
    if kinds.is_empty() {
        Ok(())
    } else {
        Err(Failure::race_found(format!(
            "{} kinds of anomaly found; counterexamples in {}",
            kinds.len(),
            flags.out.display()
        )))
    }
}

/// Shrinks the first trial that showed `kind` and writes its counterexample file.
fn write_counterexample(
    config: &PipelineConfig,
    choices: &Choices,
    kind: (Class, Cause),
    out: &Path,
) -> Result<Option<(Class, Cause, PathBuf, usize)>, Failure> {
    let Some(found) = explore::shrink(config, choices, kind) else {
        return Ok(None);
    };
    let path = out.join(format!("{}-{}.json", kind.0.name(), kind.1.name()));
    let anomaly = found
        .judged
        .oracle
        .anomalies
        .iter()
        .find(|a| (a.class, a.cause) == kind)
        .expect("the shrunk trial shows the kind");
    let scenario = toml::to_string(&found.config)
        .map_err(|error| Failure::bad_input(format!("cannot print the scenario: {error}")))?;
    let file = CounterexampleFile {
        receipt_sim_counterexample: COUNTEREXAMPLE_FORMAT,
        class: kind.0,
        cause: kind.1,
        description: format!("{}: {}", kind.0.meaning(), kind.1.description()),
        scenario,
        choices: found.choices,
        fingerprint: found.judged.trial.report.fingerprint.clone(),
        events: found.judged.trial.report.events,
        receipts: found.judged.trial.report.receipts,
        anomaly: serde_json::to_value(anomaly).unwrap_or(Value::Null),
        excerpt: serde_json::to_value(&anomaly.excerpt).unwrap_or(Value::Null),
        replay: format!("receipt-sim replay {}", path.display()),
    };
    let mut bytes = serde_json::to_vec_pretty(&file)
        .map_err(|error| Failure::bad_input(format!("cannot encode a counterexample: {error}")))?;
    bytes.push(b'\n');
    write_atomically(&path, &bytes)?;
    Ok(Some((
        kind.0,
        kind.1,
        path,
        found.judged.trial.report.receipts as usize,
    )))
}

pub fn replay(path: &str, export: Option<&Output>) -> Result<(), Failure> {
    let text = crate::pipeline_scenario::read_bounded(std::path::Path::new(path))
        .map_err(Failure::bad_input)?;
    let file: CounterexampleFile = serde_json::from_str(&text)
        .map_err(|error| Failure::bad_input(format!("{path}: {error}")))?;
    if file.receipt_sim_counterexample != COUNTEREXAMPLE_FORMAT {
        return Err(Failure::bad_input(format!(
            "{path}: counterexample format {} (this build reads {COUNTEREXAMPLE_FORMAT})",
            file.receipt_sim_counterexample
        )));
    }
    let table: toml::Table = toml::from_str(&file.scenario)
        .map_err(|error| Failure::bad_input(format!("{path}: scenario: {}", error.message())))?;
    for key in ["extends", "model"] {
        if table.contains_key(key) {
            return Err(Failure::bad_input(format!(
                "{path}: scenario: field `{key}`: a counterexample holds a resolved pipeline \
                 scenario, without `{key}`"
            )));
        }
    }
    check_choices(path, &file.choices)?;
    let config: PipelineConfig = sim::scenario::deserialize(&table)
        .map_err(|error| Failure::bad_input(format!("{path}: scenario: {error}")))?;
    config
        .validate()
        .map_err(|error| Failure::bad_input(format!("{path}: scenario: {error}")))?;
    if config.workload.source != sim::pipeline::config::WorkloadSource::Generate {
        return Err(Failure::bad_input(format!(
            "{path}: scenario: field `workload.source`: a counterexample replays generated receipts"
        )));
    }
    let (config, options) = explore::apply(&config, &file.choices, HistoryFilter::All);
    let judged = explore::judge(&config, None, &options);
    let kind = (file.class, file.cause);
    let anomaly: Option<&Anomaly> = judged
        .oracle
        .anomalies
        .iter()
        .find(|a| (a.class, a.cause) == kind);
    let same_fingerprint = judged.trial.report.fingerprint == file.fingerprint;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replay {path}: {} {} ({}), seed {}, {} receipts, {} events, fingerprint {} ({})",
        file.class.name(),
        file.cause.name(),
        file.cause.description(),
        file.choices.seed,
        judged.trial.report.receipts,
        judged.trial.report.events,
        judged.trial.report.fingerprint,
        if same_fingerprint {
            "same as recorded"
        } else {
            "DIFFERENT from the recorded one"
        }
    );
    if let Some(anomaly) = anomaly {
        let _ = writeln!(
            out,
            "  receipt {} {}: {} ids; expected {}, found {}",
            anomaly.receipt.map_or("-".to_string(), |r| r.to_string()),
            anomaly.collection.map_or("-", |c| c.name()),
            anomaly.id_count,
            anomaly.expected,
            anomaly.found
        );
        describe_excerpt(&mut out, &anomaly.excerpt);
    }
    crate::output::say(matches!(export, Some(Output::Stdout)), &out);
    if let Some(export) = export {
        export.write_json(&json!({
            "file": path,
            "reproduced": anomaly.is_some() && same_fingerprint,
            "same_fingerprint": same_fingerprint,
            "fingerprint": judged.trial.report.fingerprint,
            "class": file.class.name(),
            "cause": file.cause.name(),
            "anomaly": anomaly,
        }))?;
    }
    match (anomaly.is_some(), same_fingerprint) {
        (true, true) => Ok(()),
        (false, _) => Err(Failure::race_found(format!(
            "{path}: did not reproduce: no {} {} anomaly this time",
            file.class.name(),
            file.cause.name()
        ))),
        (true, false) => Err(Failure::race_found(format!(
            "{path}: did not reproduce exactly: fingerprint {} instead of {}",
            judged.trial.report.fingerprint, file.fingerprint
        ))),
    }
}

/// The most priority changes of a PCT ordering (hunts use 1 to 3).
const PCT_DEPTH_MAX: u32 = 64;

/// The orderings a counterexample may ask for: PCT of bounded depth.
fn check_choices(path: &str, choices: &Choices) -> Result<(), Failure> {
    if let explore::Ordering::Pct { depth, .. } = choices.ordering
        && depth > PCT_DEPTH_MAX
    {
        return Err(Failure::bad_input(format!(
            "{path}: field `choices.ordering.depth`: {depth} priority changes, at most {PCT_DEPTH_MAX}"
        )));
    }
    Ok(())
}

pub fn describe_excerpt(out: &mut String, excerpt: &[HistoryRecord]) {
    let _ = writeln!(
        out,
        "  history of the affected ids ({} records):",
        excerpt.len()
    );
    for record in excerpt.iter().take(EXCERPT_PRINTED_MAX) {
        let actor = serde_json::to_value(record.actor)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        let event = serde_json::to_value(record.event)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        let ids: Vec<String> = record
            .ids
            .iter()
            .take(4)
            .map(|id| format!("{}/{}/{}", id.receipt(), id.line_number(), id.word_number()))
            .collect();
        let _ = writeln!(
            out,
            "    {:>10.3}s  {:<26} {:<20} {} {}",
            record.at.as_secs_f64(),
            actor.unwrap_or_default(),
            event.unwrap_or_default(),
            if ids.is_empty() {
                String::new()
            } else {
                format!("[{}]", ids.join(" "))
            },
            record.detail
        );
    }
    if excerpt.len() > EXCERPT_PRINTED_MAX {
        let _ = writeln!(
            out,
            "    … {} more records",
            excerpt.len() - EXCERPT_PRINTED_MAX
        );
    }
}
