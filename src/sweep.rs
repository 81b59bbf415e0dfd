//! `sweep` and `merge`: a base scenario and a grid (or list) of overrides, replications per case,
//! run on all cores; a deterministic shard of the cases on each machine; shard results merged into
//! exactly the result of the whole sweep.
//!
//! A sweep file:
//!
//! ```toml
//! scenario = "built"          # an embedded profile, or a file beside this one
//! replications = 3            # seeds seed, seed+1, …
//! set = ["workload.receipts=40"]
//! [grid]                      # every combination, axes in name order
//! "workload.rate_per_hour" = [60, 240]
//! flow = ["old", "new"]
//! [[cases]]                   # optional: each listed case is crossed with the grid
//! "queues.kind" = "standard"
//! [plan]                      # for `plan`: the load axis and what a configuration costs
//! load = "workload.rate_per_hour"
//! cost = { "compaction.reserved_concurrency" = 1.0 }
//! ```
//!
//! Depends on `load`, `pipeline_scenario`, `parallel`, `histogram`, `shard`, `exporters`,
//! `hunt_command` and `verdict_command` (their merges) and `sim::explore`.

use crate::exporters::Exports;
use crate::failure::Failure;
use crate::histogram::{Buckets, Percentiles};
use crate::shard::Shard;
use crate::{load, pipeline_scenario};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sim::explore;
use sim::oracle::Class;
use sim::pipeline::config::ValidatedConfig;
use sim::pipeline::{Flow, TrialOptions};
use sim::workload::Receipt;
use std::collections::BTreeMap;
use std::path::Path;

/// The version of every result file this build writes.
use crate::output::SCHEMA_VERSION;
/// The most cases one sweep may have.
const CASES_MAX: u64 = 100_000;
/// The most replications per case.
const REPLICATIONS_MAX: u64 = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    scenario: String,
    #[serde(default = "one")]
    replications: u64,
    #[serde(default)]
    set: Vec<String>,
    #[serde(default)]
    grid: toml::Table,
    #[serde(default)]
    cases: Vec<toml::Table>,
    #[serde(default)]
    plan: Option<PlanSection>,
}

fn one() -> u64 {
    1
}

fn bisection_steps_default() -> u32 {
    4
}

/// What `plan` needs beyond the grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSection {
    /// The axis that is the load (numeric).
    pub load: String,
    /// Cost per unit of each numeric axis; a configuration costs the sum.
    #[serde(default)]
    pub cost: BTreeMap<String, f64>,
    /// Bisection steps between the last load met and the first missed.
    #[serde(default = "bisection_steps_default")]
    pub bisection_steps: u32,
}

/// One axis of the grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub path: String,
    pub values: Vec<Value>,
}

/// The sweep as resolved, echoed in every result so shards can be checked against each other.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepSpec {
    pub scenario: String,
    pub replications: u64,
    pub set: Vec<String>,
    pub axes: Vec<Axis>,
    /// Listed cases (each crossed with the grid); empty for a plain grid.
    pub listed: Vec<BTreeMap<String, Value>>,
    pub cases_total: u64,
    pub plan: Option<PlanSection>,
    /// A digest of the resolved base scenario and everything above.
    pub digest: String,
}

/// A loaded sweep: the spec and the base scenario's folder.
pub struct Sweep {
    pub spec: SweepSpec,
    base: String,
}

/// One case ready to run.
pub struct CaseSpec {
    pub index: u64,
    pub overrides: BTreeMap<String, Value>,
    pub config: ValidatedConfig,
    receipts: Option<Vec<Receipt>>,
}

/// What one replication of a case measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicationResult {
    pub seed: u64,
    pub fingerprint: String,
    pub events: u64,
    pub stop: String,
    pub receipts: u64,
    pub ended_at_s: f64,
    pub never_visible: u64,
    pub never_saved: u64,
    pub dead_lettered: u64,
    /// Messages and records left in queues and the stream at the end.
    pub backlog_end: u64,
    pub receipts_affected: u64,
    pub affected_by_class: BTreeMap<String, u64>,
    pub utilisation: BTreeMap<String, f64>,
    pub queue_depth_max: BTreeMap<String, u64>,
    pub queue_age_s_max: BTreeMap<String, f64>,
    /// Per stage, `[p50, p99]` in milliseconds.
    pub stages_ms: BTreeMap<String, [f64; 2]>,
}

/// A share of receipts with its 95 % Wilson interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub receipts: u64,
    pub of: u64,
    pub share: f64,
    pub ci95: [f64; 2],
}

impl Share {
    pub fn new(receipts: u64, of: u64) -> Share {
        Share {
            receipts,
            of,
            share: receipts as f64 / of.max(1) as f64,
            ci95: sim::stats::wilson_ci95(receipts, of),
        }
    }
}

/// One case: its overrides, every replication, and the latency histograms over all of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    pub index: u64,
    pub overrides: BTreeMap<String, Value>,
    pub flow: String,
    pub receipts: u64,
    pub labels_saved_ms: Percentiles,
    pub labels_visible_ms: Percentiles,
    pub anomalies: Share,
    pub dead_lettered: u64,
    pub never_saved: u64,
    pub never_visible: u64,
    /// Replications cut off by the horizon or the event limit.
    pub unfinished: u64,
    pub histograms: CaseHistograms,
    pub replications: Vec<ReplicationResult>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseHistograms {
    pub labels_saved: Buckets,
    pub labels_visible: Buckets,
}

/// Figures over every case of one flow, from the merged histograms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowTotals {
    pub cases: u64,
    pub receipts: u64,
    pub anomalies: Share,
    pub labels_saved_ms: Percentiles,
    pub labels_visible_ms: Percentiles,
    pub histograms: CaseHistograms,
}

/// The result of `sweep` (one shard or all) and of `merge`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    pub schema_version: u32,
    pub command: String,
    pub spec: SweepSpec,
    pub shard: Shard,
    /// False while the sweep runs: the cases so far.
    pub complete: bool,
    pub cases_done: u64,
    pub totals: BTreeMap<String, FlowTotals>,
    pub cases: Vec<CaseResult>,
}

/// FNV-1a, 64 bits: a stable digest across builds and machines.
pub fn digest(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn toml_to_json(value: &toml::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn axes_of(grid: &toml::Table, name: &str) -> Result<Vec<Axis>, Failure> {
    let mut axes = Vec::new();
    for (path, values) in grid {
        let Some(values) = values.as_array().filter(|v| !v.is_empty()) else {
            return Err(Failure::bad_input(format!(
                "{name}: grid.\"{path}\": expected a non-empty list of values"
            )));
        };
        axes.push(Axis {
            path: path.clone(),
            values: values.iter().map(toml_to_json).collect(),
        });
    }
    Ok(axes)
}

impl Sweep {
    /// Reads and checks a sweep file; every case's scenario is loaded and validated by `cases`.
    pub fn read(path: &str) -> Result<Sweep, Failure> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| Failure::bad_input(format!("{path}: cannot read: {error}")))?;
        let file: SweepFile = toml::from_str(&text).map_err(|error| {
            let line = error
                .span()
                .map(|span| format!(":{}", text[..span.start].matches('\n').count() + 1))
                .unwrap_or_default();
            Failure::bad_input(format!("{path}{line}: {}", error.message().trim()))
        })?;
        if file.replications == 0 || file.replications > REPLICATIONS_MAX {
            return Err(Failure::bad_input(format!(
                "{path}: replications {}: must be 1 to {REPLICATIONS_MAX}",
                file.replications
            )));
        }
        let beside = Path::new(path)
            .parent()
            .map(|dir| dir.join(&file.scenario))
            .filter(|candidate| candidate.is_file());
        let base = beside.map_or(file.scenario.clone(), |p| p.display().to_string());
        let axes = axes_of(&file.grid, path)?;
        let listed: Vec<BTreeMap<String, Value>> = file
            .cases
            .iter()
            .map(|case| {
                case.iter()
                    .map(|(k, v)| (k.clone(), toml_to_json(v)))
                    .collect()
            })
            .collect();
        let cases_total = axes
            .iter()
            .try_fold(listed.len().max(1) as u64, |n, axis| {
                n.checked_mul(axis.values.len() as u64)
            })
            .filter(|n| *n <= CASES_MAX)
            .ok_or_else(|| Failure::bad_input(format!("{path}: more than {CASES_MAX} cases")))?;
        if let Some(plan) = &file.plan
            && !axes.iter().any(|axis| axis.path == plan.load)
        {
            return Err(Failure::bad_input(format!(
                "{path}: plan.load `{}` is not an axis of the grid",
                plan.load
            )));
        }
        let resolved = load::load(&base, None, &file.set)?;
        let mut spec = SweepSpec {
            scenario: file.scenario,
            replications: file.replications,
            set: file.set,
            axes,
            listed,
            cases_total,
            plan: file.plan,
            digest: String::new(),
        };
        let mut digested = serde_json::to_vec(&spec).unwrap_or_default();
        digested.extend(serde_json::to_vec(&resolved.table).unwrap_or_default());
        spec.digest = digest(&digested);
        Ok(Sweep { spec, base })
    }

    /// The overrides of case `index`: the listed case, then one value per axis (last axis fastest).
    pub fn overrides(&self, index: u64) -> BTreeMap<String, Value> {
        assert!(index < self.spec.cases_total);
        let mut rest = index;
        let mut overrides = BTreeMap::new();
        for axis in self.spec.axes.iter().rev() {
            let n = axis.values.len() as u64;
            overrides.insert(axis.path.clone(), axis.values[(rest % n) as usize].clone());
            rest /= n;
        }
        if let Some(listed) = self.spec.listed.get(rest as usize) {
            for (path, value) in listed {
                overrides
                    .entry(path.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        overrides
    }

    /// Loads and validates the case with these overrides.
    pub fn case(
        &self,
        index: u64,
        overrides: BTreeMap<String, Value>,
    ) -> Result<CaseSpec, Failure> {
        let mut all = self.spec.set.clone();
        for (path, value) in &overrides {
            let toml_value: toml::Value = serde_json::from_value(value.clone())
                .map_err(|error| Failure::bad_input(format!("{path}: {error}")))?;
            all.push(format!("{path}={toml_value}"));
        }
        let loaded = load::load(&self.base, None, &all)?;
        let scenario = pipeline_scenario::load(&loaded)?;
        Ok(CaseSpec {
            index,
            overrides,
            config: scenario.config,
            receipts: scenario.receipts,
        })
    }

    /// Every case of the shard, loaded before any runs.
    pub fn cases(&self, shard: Shard) -> Result<Vec<CaseSpec>, Failure> {
        (0..self.spec.cases_total)
            .filter(|index| shard.owns(*index))
            .map(|index| self.case(index, self.overrides(index)))
            .collect()
    }
}

/// What one replication leaves before its case is summarised.
pub struct Replicated {
    result: ReplicationResult,
    saved_us: Vec<u64>,
    visible_us: Vec<u64>,
}

fn per_function<T: Copy>(report: &sim::pipeline::PerFunction<T>) -> BTreeMap<String, T> {
    [
        ("compaction", report.compaction),
        ("stream_processor", report.stream_processor),
        ("upload", report.upload),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn per_queue<T: Copy>(
    pick: impl Fn(&sim::pipeline::QueueReport) -> T,
    queues: &sim::pipeline::PerQueue<sim::pipeline::QueueReport>,
) -> BTreeMap<String, T> {
    [
        ("lines", &queues.lines),
        ("upload", &queues.upload),
        ("words", &queues.words),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), pick(v)))
    .collect()
}

/// Runs replication `replication` of a case.
pub fn replicate(case: &CaseSpec, replication: u64) -> Replicated {
    let config = case
        .config
        .with_seed(case.config.seed.wrapping_add(replication));
    let judged = explore::judge(&config, case.receipts.as_deref(), &TrialOptions::default());
    let report = &judged.trial.report;
    let micros = |d: sim::time::Duration| d.as_nanos() / 1_000;
    let result = ReplicationResult {
        seed: config.seed,
        fingerprint: report.fingerprint.clone(),
        events: report.events,
        stop: report.stop.to_string(),
        receipts: report.receipts,
        ended_at_s: report.ended_at_s,
        never_visible: report.never_visible,
        never_saved: report.never_saved,
        dead_lettered: report.dead_lettered.upload
            + report.dead_lettered.lines
            + report.dead_lettered.words,
        backlog_end: report.backlog.upload_queue
            + report.backlog.stream_records
            + report.backlog.lines_queue
            + report.backlog.words_queue,
        receipts_affected: judged.oracle.receipts_affected,
        affected_by_class: Class::ALL
            .iter()
            .map(|class| {
                let count = judged.oracle.receipts_affected_by_class.get(class);
                (class.name().to_string(), count.copied().unwrap_or(0))
            })
            .collect(),
        utilisation: per_function(&report.utilisation),
        queue_depth_max: per_queue(|q| q.depth_max, &report.queues),
        queue_age_s_max: per_queue(|q| q.oldest_age_s_max, &report.queues),
        stages_ms: report
            .latency_ms
            .stages
            .iter()
            .filter(|(_, summary)| summary.count > 0)
            .map(|(stage, summary)| (stage.clone(), [summary.p50, summary.p99]))
            .collect(),
    };
    let latencies = &judged.trial.latencies;
    Replicated {
        result,
        saved_us: latencies
            .iter()
            .filter_map(|l| l.labels_saved.map(micros))
            .collect(),
        visible_us: latencies
            .iter()
            .filter_map(|l| l.labels_visible.map(micros))
            .collect(),
    }
}

/// A case's result from its replications, in replication order.
pub fn summarise(case: &CaseSpec, replicated: Vec<Replicated>) -> CaseResult {
    assert!(!replicated.is_empty());
    let histograms = CaseHistograms {
        labels_saved: Buckets::of(replicated.iter().flat_map(|r| r.saved_us.iter().copied())),
        labels_visible: Buckets::of(replicated.iter().flat_map(|r| r.visible_us.iter().copied())),
    };
    let replications: Vec<ReplicationResult> = replicated.into_iter().map(|r| r.result).collect();
    let sum = |pick: fn(&ReplicationResult) -> u64| replications.iter().map(pick).sum::<u64>();
    let receipts = sum(|r| r.receipts);
    CaseResult {
        index: case.index,
        overrides: case.overrides.clone(),
        flow: flow_name(case.config.flow).to_string(),
        receipts,
        labels_saved_ms: histograms.labels_saved.percentiles(),
        labels_visible_ms: histograms.labels_visible.percentiles(),
        anomalies: Share::new(sum(|r| r.receipts_affected), receipts),
        dead_lettered: sum(|r| r.dead_lettered),
        never_saved: sum(|r| r.never_saved),
        never_visible: sum(|r| r.never_visible),
        unfinished: sum(|r| u64::from(r.stop != "empty")),
        histograms,
        replications,
    }
}

pub fn flow_name(flow: Flow) -> &'static str {
    match flow {
        Flow::Old => "old",
        Flow::New => "new",
    }
}

/// Runs `cases` with `replications` each on all cores; `on_case` sees each case as it completes.
pub fn run_cases(
    cases: &[CaseSpec],
    replications: u64,
    label: &str,
    mut on_case: impl FnMut(CaseResult) + Send,
) {
    let per_case = replications as usize;
    let mut pending: BTreeMap<usize, Vec<Option<Replicated>>> = BTreeMap::new();
    crate::parallel::for_each_done(
        cases.len() * per_case,
        None,
        label,
        |index| replicate(&cases[index / per_case], (index % per_case) as u64),
        |index, replicated| {
            let case = index / per_case;
            let slots = pending
                .entry(case)
                .or_insert_with(|| (0..per_case).map(|_| None).collect());
            slots[index % per_case] = Some(replicated);
            if slots.iter().all(Option::is_some) {
                let slots = pending.remove(&case).expect("the case is pending");
                let replicated = slots.into_iter().map(|s| s.expect("all ran")).collect();
                on_case(summarise(&cases[case], replicated));
            }
        },
    );
    assert!(pending.is_empty(), "every case completed");
}

/// The totals of every flow, over the cases given.
fn totals(cases: &[CaseResult]) -> BTreeMap<String, FlowTotals> {
    let mut flows: BTreeMap<String, Vec<&CaseResult>> = BTreeMap::new();
    for case in cases {
        flows.entry(case.flow.clone()).or_default().push(case);
    }
    flows
        .into_iter()
        .map(|(flow, cases)| {
            let histograms = CaseHistograms {
                labels_saved: Buckets::merge(cases.iter().map(|c| &c.histograms.labels_saved)),
                labels_visible: Buckets::merge(cases.iter().map(|c| &c.histograms.labels_visible)),
            };
            let receipts = cases.iter().map(|c| c.receipts).sum();
            let affected = cases.iter().map(|c| c.anomalies.receipts).sum();
            let totals = FlowTotals {
                cases: cases.len() as u64,
                receipts,
                anomalies: Share::new(affected, receipts),
                labels_saved_ms: histograms.labels_saved.percentiles(),
                labels_visible_ms: histograms.labels_visible.percentiles(),
                histograms,
            };
            (flow, totals)
        })
        .collect()
}

impl SweepResult {
    /// The result of the cases given (in any order), complete when every case of the shard is in.
    pub fn assemble(spec: &SweepSpec, shard: Shard, mut cases: Vec<CaseResult>) -> SweepResult {
        cases.sort_by_key(|case| case.index);
        let owned = (0..spec.cases_total).filter(|i| shard.owns(*i)).count() as u64;
        SweepResult {
            schema_version: SCHEMA_VERSION,
            command: "sweep".to_string(),
            spec: spec.clone(),
            shard,
            complete: cases.len() as u64 == owned,
            cases_done: cases.len() as u64,
            totals: totals(&cases),
            cases,
        }
    }
}

/// `sweep FILE`: runs the shard's cases and rewrites the exports after each.
pub fn sweep(path: &str, shard: Shard, exports: &Exports) -> Result<(), Failure> {
    let sweep = Sweep::read(path)?;
    let cases = sweep.cases(shard)?;
    let spec = &sweep.spec;
    exports.write_partial(
        &serde_json::to_value(SweepResult::assemble(spec, shard, Vec::new()))
            .unwrap_or(Value::Null),
    )?;
    let started = std::time::Instant::now();
    let mut done: Vec<CaseResult> = Vec::with_capacity(cases.len());
    let mut failure: Option<Failure> = None;
    let mut pace = crate::output::Pace::new();
    run_cases(&cases, spec.replications, "cases", |case| {
        done.push(case);
        if failure.is_none() && pace.due() {
            let partial = SweepResult::assemble(spec, shard, done.clone());
            failure = exports
                .write_partial(&serde_json::to_value(&partial).unwrap_or(Value::Null))
                .err();
        }
    });
    if let Some(failure) = failure {
        return Err(failure);
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let result = SweepResult::assemble(spec, shard, done);
    assert!(result.complete);
    exports.write(&serde_json::to_value(&result).unwrap_or(Value::Null))?;
    let trials = result.cases_done * spec.replications;
    let text = format!(
        "sweep {path}: shard {}/{}: {} of {} cases, {} trials in {:.1} s ({:.2} cases/s, {:.1} trials/s on {} threads)\n{}",
        shard.index,
        shard.count,
        result.cases_done,
        spec.cases_total,
        trials,
        elapsed,
        result.cases_done as f64 / elapsed,
        trials as f64 / elapsed,
        crate::parallel::threads(),
        crate::markdown::markdown(&serde_json::to_value(&result).unwrap_or(Value::Null)),
    );
    crate::output::say(exports.json_on_stdout(), &text);
    Ok(())
}

/// `merge FILES`: the shards of one sweep, hunt or verdict into the result of the whole (a
/// hunt's counterexamples are written in `out`).
pub fn merge(files: &[String], out: &Path, exports: &Exports) -> Result<(), Failure> {
    let mut parts = Vec::with_capacity(files.len());
    for file in files {
        parts.push((file.clone(), read_json(file)?));
    }
    let command = parts.first().map(|(_, value)| value["command"].clone());
    if let Some(command) = command
        && (command == "verdict" || command == "hunt")
    {
        if let Some((file, _)) = parts.iter().find(|(_, value)| value["command"] != command) {
            return Err(Failure::bad_input(format!(
                "{file}: not a {command} result"
            )));
        }
        return if command == "hunt" {
            crate::hunt_command::merge(&parts, out, exports)
        } else {
            crate::verdict_command::merge(&parts, exports)
        };
    }
    let result = merge_sweep(parts)?;
    exports.write(&serde_json::to_value(&result).unwrap_or(Value::Null))?;
    let text = format!(
        "merged {} files: {} cases\n",
        files.len(),
        result.cases_done
    );
    crate::output::say(exports.json_on_stdout(), &text);
    Ok(())
}

fn read_json(file: &str) -> Result<Value, Failure> {
    let text =
        crate::pipeline_scenario::read_bounded(Path::new(file)).map_err(Failure::bad_input)?;
    serde_json::from_str(&text)
        .map_err(|error| Failure::bad_input(format!("{file}: not JSON: {error}")))
}

/// Joins the shards of one sweep: every case exactly once, all of one spec, each shard finished.
fn merge_sweep(parts: Vec<(String, Value)>) -> Result<SweepResult, Failure> {
    let mut spec: Option<SweepSpec> = None;
    let mut cases: BTreeMap<u64, CaseResult> = BTreeMap::new();
    for (file, value) in parts {
        let part: SweepResult = serde_json::from_value(value)
            .map_err(|error| Failure::bad_input(format!("{file}: not a sweep result: {error}")))?;
        check_part(&file, &part, spec.as_ref())?;
        if spec.is_none() {
            spec = Some(part.spec.clone());
        }
        for case in part.cases {
            if cases.insert(case.index, case).is_some() {
                return Err(Failure::bad_input(format!(
                    "{file}: a case given twice: shards overlap"
                )));
            }
        }
    }
    let Some(spec) = spec else {
        return Err(Failure::bad_input("merge: name at least one shard file"));
    };
    if let Some(missing) = (0..spec.cases_total).find(|i| !cases.contains_key(i)) {
        return Err(Failure::bad_input(format!(
            "merge: case {missing} of {} is in no file: a shard is missing",
            spec.cases_total
        )));
    }
    Ok(SweepResult::assemble(
        &spec,
        Shard::WHOLE,
        cases.into_values().collect(),
    ))
}

/// A shard can join the merge if this build reads it, it is finished, and it is of the same sweep.
fn check_part(file: &str, part: &SweepResult, first: Option<&SweepSpec>) -> Result<(), Failure> {
    if part.schema_version != SCHEMA_VERSION {
        return Err(Failure::bad_input(format!(
            "{file}: schema_version {} (this build reads {SCHEMA_VERSION})",
            part.schema_version
        )));
    }
    if !part.complete {
        return Err(Failure::bad_input(format!(
            "{file}: an unfinished shard ({} cases done): run it again",
            part.cases_done
        )));
    }
    match first {
        Some(first) if first.digest != part.spec.digest => Err(Failure::bad_input(format!(
            "{file}: a shard of another sweep (digest {}, expected {})",
            part.spec.digest, first.digest
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/sweeps/small.toml");

    #[test]
    fn cases_enumerate_the_grid_with_the_last_axis_fastest() {
        let sweep = Sweep::read(SMALL).unwrap();
        assert_eq!(sweep.spec.cases_total, 8);
        let names: Vec<String> = (0..8)
            .map(|i| {
                let o = sweep.overrides(i);
                format!(
                    "{}/{}/{}",
                    o["compaction.reserved_concurrency"], o["flow"], o["workload.rate_per_hour"]
                )
            })
            .collect();
        assert_eq!(names[0], "1/\"old\"/240");
        assert_eq!(names[1], "1/\"old\"/2400");
        assert_eq!(names[2], "1/\"new\"/240");
        assert_eq!(names[7], "4/\"new\"/2400");
        let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), 8);
    }

    #[test]
    fn a_partial_result_lists_the_cases_done_and_says_it_is_incomplete() {
        let sweep = Sweep::read(SMALL).unwrap();
        let cases = sweep.cases(Shard::new(1, 4, "test").unwrap()).unwrap();
        assert_eq!(cases.iter().map(|c| c.index).collect::<Vec<_>>(), [1, 5]);
        let first = summarise(
            &cases[1],
            vec![replicate(&cases[1], 0), replicate(&cases[1], 1)],
        );
        assert_eq!(first.replications.len(), 2);
        assert_ne!(first.replications[0].seed, first.replications[1].seed);
        let shard = Shard::new(1, 4, "test").unwrap();
        let partial = SweepResult::assemble(&sweep.spec, shard, vec![first.clone()]);
        assert!(!partial.complete);
        assert_eq!(partial.cases_done, 1);
        let second = summarise(
            &cases[0],
            vec![replicate(&cases[0], 0), replicate(&cases[0], 1)],
        );
        let whole = SweepResult::assemble(&sweep.spec, shard, vec![first, second]);
        assert!(whole.complete);
        assert_eq!(
            whole.cases.iter().map(|c| c.index).collect::<Vec<_>>(),
            [1, 5]
        );
    }
}
