//! `run` and `compare` for pipeline scenarios: one trial (or the same receipts and random draws
//! through both flows), judged by the oracle, printed for people and exported for machines.
//!
//! Depends on `pipeline_scenario`, `output`, `parallel` (progress), `sim::explore` and
//! `sim::stats`.

use crate::failure::Failure;
use crate::load::Loaded;
use crate::output::Output;
use crate::pipeline_scenario::{self, PipelineScenario};
use serde::Serialize;
use serde_json::{Value, json};
use sim::explore::{self, Judged};
use sim::metrics::LatencySummary;
use sim::oracle;
use sim::pipeline::{Flow, HistoryFilter, TrialOptions};
use std::fmt::Write as _;

/// The most anomalies printed for people (the JSON export lists them all).
const ANOMALIES_PRINTED_MAX: usize = 8;

/// Flags shared by `run` and `compare`.
pub struct TrialFlags<'a> {
    pub export: Option<&'a Output>,
    pub history: Option<&'a Output>,
    /// Exit with code 1 when the oracle finds an anomaly.
    pub check: bool,
    pub scenario_name: &'a str,
}

fn options(history: bool) -> TrialOptions {
    TrialOptions {
        history: if history {
            HistoryFilter::All
        } else {
            HistoryFilter::Off
        },
        ..TrialOptions::default()
    }
}

pub fn run(loaded: &Loaded, flags: &TrialFlags<'_>) -> Result<(), Failure> {
    let scenario = pipeline_scenario::load(loaded)?;
    let mut options = options(flags.history.is_some());
    let receipts = scenario
        .receipts()
        .map_or(scenario.config.workload.receipts, |r| r.len() as u64);
    let progress = crate::parallel::trial_progress(receipts);
    options.observer = progress.as_ref().map(|(observer, _)| observer.clone());
    let judged = explore::judge(&scenario.config, scenario.receipts(), &options);
    if let Some((_, bar)) = progress {
        bar.finish_and_clear();
    }
    check_settled(&judged, loaded)?;
    let json_on_stdout = matches!(flags.export, Some(Output::Stdout));
    let mut text = String::new();
    describe_trial(&mut text, &judged, flags.scenario_name);
    crate::output::say(json_on_stdout, &text);
    if let Some(history) = flags.history {
        history.write(&history_lines(&judged, None))?;
    }
    if let Some(export) = flags.export {
        export.write_json(&RunResult {
            schema_version: crate::output::SCHEMA_VERSION,
            command: "run",
            scenario: serde_json::to_value(&*scenario.config).unwrap_or(Value::Null),
            trial: TrialResult::of(&judged),
        })?;
    }
    check_outcome(flags.check, &[&judged])
}

pub fn compare(loaded: &Loaded, flags: &TrialFlags<'_>) -> Result<(), Failure> {
    let scenario = pipeline_scenario::load(loaded)?;
    // The same receipts for both flows; every draw is per receipt, so the flows share them too.
    let generated;
    let receipts = match scenario.receipts() {
        Some(receipts) => receipts,
        None => {
            generated = sim::pipeline::generate_receipts(&scenario.config);
            &generated[..]
        }
    };
    let flows = [Flow::Old, Flow::New];
    let history = flags.history.is_some();
    let judged: Vec<Judged> = crate::parallel::map(2, "flows", |index| {
        let config = scenario.config.with_flow(flows[index]);
        explore::judge(&config, Some(receipts), &options(history))
    });
    let (old, new) = (&judged[0], &judged[1]);
    check_settled(old, loaded)?;
    check_settled(new, loaded)?;
    let paired = paired_json(old, new);
    let json_on_stdout = matches!(flags.export, Some(Output::Stdout));
    let mut text = String::new();
    describe_comparison(&mut text, &scenario, old, new, &paired, flags.scenario_name);
    crate::output::say(json_on_stdout, &text);
    if let Some(output) = flags.history {
        let mut bytes = history_lines(old, Some("old"));
        bytes.extend(history_lines(new, Some("new")));
        output.write(&bytes)?;
    }
    if let Some(export) = flags.export {
        export.write_json(&CompareResult {
            schema_version: crate::output::SCHEMA_VERSION,
            command: "compare",
            scenario: serde_json::to_value(&*scenario.config).unwrap_or(Value::Null),
            seed: scenario.config.seed,
            receipts: receipts.len() as u64,
            old: TrialResult::of(old),
            new: TrialResult::of(new),
            paired,
        })?;
    }
    check_outcome(flags.check, &[old, new])
}

/// A trial stopped at its event limit spins (a shape the model cannot settle): an error naming
/// the bound, before any output is written.
pub fn check_settled(judged: &Judged, loaded: &Loaded) -> Result<(), Failure> {
    if judged.trial.report.stop != "event_limit" {
        return Ok(());
    }
    Err(Failure::bad_input(format!(
        "{}: the trial did not settle within its bound of {} events (set by the scenario's \
         receipts and words); look for a period or a retry that spins",
        loaded.locate("workload.receipts"),
        judged.trial.report.events
    )))
}

pub fn check_outcome(check: bool, judged: &[&Judged]) -> Result<(), Failure> {
    let anomalies: usize = judged.iter().map(|j| j.oracle.anomalies.len()).sum();
    if check && anomalies > 0 {
        return Err(Failure::race_found(format!(
            "the oracle found {anomalies} anomalies (--check)"
        )));
    }
    Ok(())
}

/// The result of `run` on a pipeline scenario.
#[derive(Serialize)]
pub struct RunResult<'a> {
    pub schema_version: u32,
    pub command: &'static str,
    pub scenario: Value,
    #[serde(flatten)]
    pub trial: TrialResult<'a>,
}

/// The result of `compare`.
#[derive(Serialize)]
pub struct CompareResult<'a> {
    pub schema_version: u32,
    pub command: &'static str,
    pub scenario: Value,
    pub seed: u64,
    pub receipts: u64,
    pub old: TrialResult<'a>,
    pub new: TrialResult<'a>,
    pub paired: Value,
}

/// One trial: its report, the oracle's findings, and every receipt's latencies (for CDFs).
#[derive(Serialize)]
pub struct TrialResult<'a> {
    #[serde(flatten)]
    pub report: &'a sim::pipeline::TrialReport,
    pub anomalies: AnomaliesResult<'a>,
    pub latency_values_ms: LatencyValues,
}

/// Per-receipt latencies in milliseconds, ascending.
#[derive(Serialize)]
pub struct LatencyValues {
    pub labels_saved: Vec<f64>,
    pub labels_visible: Vec<f64>,
}

#[derive(Serialize)]
pub struct AnomaliesResult<'a> {
    pub by_class: std::collections::BTreeMap<&'static str, u64>,
    pub receipts_affected: u64,
    pub receipts_affected_by_class: std::collections::BTreeMap<&'static str, u64>,
    pub receipts_checked: u64,
    /// Label and metadata findings an absent embedding hides, apart from the counts above.
    pub masked_ids_by_class: std::collections::BTreeMap<&'static str, u64>,
    pub masked_receipts_by_class: std::collections::BTreeMap<&'static str, u64>,
    pub list: &'a [oracle::Anomaly],
}

impl<'a> TrialResult<'a> {
    pub fn of(judged: &'a Judged) -> TrialResult<'a> {
        let sorted = |pick: fn(&sim::pipeline::ReceiptLatency) -> Option<sim::time::Duration>| {
            let mut values: Vec<f64> = judged
                .trial
                .latencies
                .iter()
                .filter_map(|l| pick(l).map(|d| d.as_millis_f64()))
                .collect();
            values.sort_by(f64::total_cmp);
            values
        };
        TrialResult {
            report: &judged.trial.report,
            anomalies: AnomaliesResult::of(&judged.oracle),
            latency_values_ms: LatencyValues {
                labels_saved: sorted(|l| l.labels_saved),
                labels_visible: sorted(|l| l.labels_visible),
            },
        }
    }
}

impl<'a> AnomaliesResult<'a> {
    pub fn of(report: &'a oracle::Report) -> AnomaliesResult<'a> {
        let names = |map: &std::collections::BTreeMap<oracle::Class, u64>| {
            map.iter()
                .map(|(class, count)| (class.name(), *count))
                .collect()
        };
        AnomaliesResult {
            by_class: names(&report.by_class),
            receipts_affected: report.receipts_affected,
            receipts_affected_by_class: names(&report.receipts_affected_by_class),
            receipts_checked: report.receipts_checked,
            masked_ids_by_class: names(&report.masked.ids_by_class),
            masked_receipts_by_class: names(&report.masked.receipts_by_class),
            list: &report.anomalies,
        }
    }
}

/// The history as JSON Lines, each record tagged with its flow when comparing.
fn history_lines(judged: &Judged, flow: Option<&str>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for record in &judged.trial.history.records {
        let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
        if let Some(flow) = flow {
            value["flow"] = json!(flow);
        }
        bytes.extend(serde_json::to_vec(&value).unwrap_or_default());
        bytes.push(b'\n');
    }
    bytes
}

/// Per-receipt differences new minus old, in milliseconds, over receipts measured in both flows.
fn paired_json(old: &Judged, new: &Judged) -> Value {
    let pick = |judged: &Judged, visible: bool| -> Vec<Option<f64>> {
        judged
            .trial
            .latencies
            .iter()
            .map(|l| {
                if visible {
                    l.labels_visible
                } else {
                    l.labels_saved
                }
                .map(|d| d.as_millis_f64())
            })
            .collect()
    };
    let mut out = serde_json::Map::new();
    for (name, visible) in [("labels_saved", false), ("labels_visible", true)] {
        let (a, b) = (pick(old, visible), pick(new, visible));
        let mut differences: Vec<f64> = a
            .iter()
            .zip(&b)
            .filter_map(|(a, b)| Some((*b)? - (*a)?))
            .collect();
        let only_old = a
            .iter()
            .zip(&b)
            .filter(|(a, b)| a.is_some() && b.is_none())
            .count();
        let only_new = a
            .iter()
            .zip(&b)
            .filter(|(a, b)| a.is_none() && b.is_some())
            .count();
        let mut entry =
            json!({ "count": differences.len(), "only_old": only_old, "only_new": only_new });
        if differences.len() >= 2 {
            let (mean, ci) = sim::stats::mean_ci95(&differences);
            differences.sort_by(f64::total_cmp);
            let quantile =
                |q: f64| differences[((differences.len() - 1) as f64 * q).round() as usize];
            entry["mean"] = json!(mean);
            entry["mean_ci95"] = json!(ci);
            entry["p10"] = json!(quantile(0.10));
            entry["p50"] = json!(quantile(0.50));
            entry["p90"] = json!(quantile(0.90));
            entry["new_faster_share"] = json!(
                differences.iter().filter(|d| **d < 0.0).count() as f64 / differences.len() as f64
            );
        }
        out.insert(name.to_string(), entry);
    }
    Value::Object(out)
}

fn seconds(ms: f64) -> String {
    format!("{:.1}", ms / 1000.0)
}

/// p50, p90, p99 and max in seconds, or dashes when nothing was measured.
fn percentiles(summary: &LatencySummary) -> [String; 4] {
    if summary.count == 0 {
        return ["–", "–", "–", "–"].map(str::to_string);
    }
    [summary.p50, summary.p90, summary.p99, summary.max].map(seconds)
}

fn latency_row(text: &mut String, name: &str, summary: &LatencySummary) {
    let [p50, p90, p99, max] = percentiles(summary);
    let count = summary.count;
    let _ = writeln!(
        text,
        "  {name:<22} {p50:>8} {p90:>8} {p99:>8} {max:>8} {count:>8}"
    );
}

pub fn describe_trial(text: &mut String, judged: &Judged, name: &str) {
    let report = &judged.trial.report;
    let flow = match report.flow {
        Flow::Old => "old",
        Flow::New => "new",
    };
    let _ = writeln!(
        text,
        "pipeline trial of {name}: flow {flow}, seed {}, {} receipts",
        report.seed, report.receipts
    );
    let _ = writeln!(
        text,
        "  stopped: {} at {:.1} s simulated; {} events; fingerprint {}",
        report.stop, report.ended_at_s, report.events, report.fingerprint
    );
    let _ = writeln!(
        text,
        "  {:<22} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "latency (s)", "p50", "p90", "p99", "max", "count"
    );
    latency_row(text, "labels saved", &report.latency_ms.labels_saved);
    latency_row(
        text,
        "  from embedding",
        &report.latency_ms.labels_saved_from_embedding,
    );
    latency_row(text, "labels visible", &report.latency_ms.labels_visible);
    for (stage, summary) in &report.latency_ms.stages {
        if summary.count > 0 {
            latency_row(text, &format!("  {stage}"), summary);
        }
    }
    let _ = writeln!(
        text,
        "  never visible {}  never saved {}  dead-lettered lines {} words {}  stream records dropped {}",
        report.never_visible,
        report.never_saved,
        report.dead_lettered.lines,
        report.dead_lettered.words,
        report.stream_records_dropped
    );
    let _ = writeln!(
        text,
        "  lock busy at quick check {} at publish {}; lease expired under holder {}; publishes lines {} words {}; pointer conflicts {}",
        report.lock_failures.busy_at_quick_check,
        report.lock_failures.busy_at_publish,
        report.lock_failures.expired_under_running_holder,
        report.publishes.lines,
        report.publishes.words,
        report.pointer_conflicts
    );
    let _ = writeln!(
        text,
        "  utilisation upload {:.2} stream processor {:.2} compaction {:.2}; backlog words queue {}; in flight {}",
        report.utilisation.upload,
        report.utilisation.stream_processor,
        report.utilisation.compaction,
        report.backlog.words_queue,
        report.in_flight.receipts
    );
    describe_anomalies(text, &judged.oracle);
}

pub fn describe_anomalies(text: &mut String, report: &oracle::Report) {
    let counts: Vec<String> = report
        .by_class
        .iter()
        .map(|(class, count)| {
            let receipts = report
                .receipts_affected_by_class
                .get(class)
                .copied()
                .unwrap_or(0);
            format!("{} {count} ({receipts} receipts)", class.name())
        })
        .collect();
    let _ = writeln!(
        text,
        "  oracle: {}; {} of {} receipts affected",
        counts.join("  "),
        report.receipts_affected,
        report.receipts_checked
    );
    let masked: Vec<String> = report
        .masked
        .ids_by_class
        .iter()
        .map(|(class, ids)| {
            let receipts = report.masked.receipts_by_class.get(class).copied();
            format!(
                "{} {ids} ids ({} receipts)",
                class.name(),
                receipts.unwrap_or(0)
            )
        })
        .collect();
    let _ = writeln!(
        text,
        "  masked by an absent embedding: {}",
        masked.join("  ")
    );
    for anomaly in report.anomalies.iter().take(ANOMALIES_PRINTED_MAX) {
        let receipt = anomaly.receipt.map_or("-".to_string(), |r| r.to_string());
        let collection = anomaly.collection.map_or("-", |c| c.name());
        let _ = writeln!(
            text,
            "    {} {:<27} receipt {receipt} {collection}: {} ids; expected {}, found {}",
            anomaly.class.name(),
            anomaly.cause.name(),
            anomaly.id_count,
            anomaly.expected,
            anomaly.found
        );
    }
    if report.anomalies.len() > ANOMALIES_PRINTED_MAX {
        let _ = writeln!(
            text,
            "    … {} more in the JSON export",
            report.anomalies.len() - ANOMALIES_PRINTED_MAX
        );
    }
}

fn describe_comparison(
    text: &mut String,
    scenario: &PipelineScenario,
    old: &Judged,
    new: &Judged,
    paired: &Value,
    name: &str,
) {
    let _ = writeln!(
        text,
        "compare old and new flow on {name}: seed {}, {} receipts, same receipts and draws",
        scenario.config.seed, old.trial.report.receipts
    );
    let _ = writeln!(
        text,
        "  {:<16} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9}",
        "seconds",
        "old p50",
        "old p90",
        "old p99",
        "old max",
        "new p50",
        "new p90",
        "new p99",
        "new max"
    );
    for (label, pick) in [
        (
            "labels saved",
            (|r: &sim::pipeline::TrialReport| r.latency_ms.labels_saved.clone()) as fn(&_) -> _,
        ),
        ("labels visible", |r: &sim::pipeline::TrialReport| {
            r.latency_ms.labels_visible.clone()
        }),
    ] {
        let [a50, a90, a99, amax] = percentiles(&pick(&old.trial.report));
        let [b50, b90, b99, bmax] = percentiles(&pick(&new.trial.report));
        let _ = writeln!(
            text,
            "  {label:<16} {a50:>9} {a90:>9} {a99:>9} {amax:>9} | {b50:>9} {b90:>9} {b99:>9} {bmax:>9}"
        );
    }
    for name in ["labels_saved", "labels_visible"] {
        let entry = &paired[name];
        if let (Some(mean), Some(p50)) = (entry["mean"].as_f64(), entry["p50"].as_f64()) {
            let ci = &entry["mean_ci95"];
            let _ = writeln!(
                text,
                "  paired new - old {name}: mean {} s (95% CI {} .. {}), median {} s over {} receipts",
                seconds(mean),
                seconds(ci[0].as_f64().unwrap_or(f64::NAN)),
                seconds(ci[1].as_f64().unwrap_or(f64::NAN)),
                seconds(p50),
                entry["count"]
            );
        }
    }
    let _ = writeln!(
        text,
        "  never visible: old {} new {}; fingerprints old {} new {}",
        old.trial.report.never_visible,
        new.trial.report.never_visible,
        old.trial.report.fingerprint,
        new.trial.report.fingerprint
    );
    let _ = writeln!(text, "old flow");
    describe_anomalies(text, &old.oracle);
    let _ = writeln!(text, "new flow");
    describe_anomalies(text, &new.oracle);
}
