//! `plan`: capacity answers from a sweep. At each load of the grid, the cheapest configuration
//! that meets the objective; for each configuration, the load at which it stops meeting it (the
//! objective missed, dead letters, receipts never saved because the backlog did not drain, or too
//! many anomalies), refined by bisection between the last grid load met and the first missed.
//!
//! Depends on `sweep` (cases and their results), `exporters` and `sim::time`.

use crate::exporters::Exports;
use crate::failure::Failure;
use crate::output::SCHEMA_VERSION;
use crate::shard::Shard;
use crate::sweep::{CaseResult, Sweep, SweepSpec, run_cases};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// An objective: `labels_visible.p99 < 120s`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub text: String,
    pub latency: String,
    pub percentile: String,
    pub below_ms: f64,
    pub max_anomaly_share: Option<f64>,
}

impl Objective {
    pub fn parse(text: &str, max_anomaly_share: Option<f64>) -> Result<Objective, Failure> {
        let fail = |why: &str| {
            Failure::bad_input(format!(
                "--slo `{text}`: {why}; expected e.g. \"labels_visible.p99 < 120s\""
            ))
        };
        let (left, right) = text.split_once('<').ok_or_else(|| fail("no `<`"))?;
        let (latency, percentile) = left.trim().split_once('.').ok_or_else(|| fail("no `.`"))?;
        if !["labels_saved", "labels_visible"].contains(&latency) {
            return Err(fail("the latency is labels_saved or labels_visible"));
        }
        if !["p50", "p90", "p99", "max", "mean"].contains(&percentile) {
            return Err(fail("the statistic is p50, p90, p99, max or mean"));
        }
        let bound: sim::time::Duration = right
            .trim()
            .trim_start_matches('=')
            .trim()
            .parse()
            .map_err(|error: String| fail(&error))?;
        if let Some(share) = max_anomaly_share
            && !(0.0..=1.0).contains(&share)
        {
            return Err(Failure::bad_input(format!(
                "--max-anomaly-share {share}: a share from 0 to 1"
            )));
        }
        Ok(Objective {
            text: text.to_string(),
            latency: latency.to_string(),
            percentile: percentile.to_string(),
            below_ms: bound.as_millis_f64(),
            max_anomaly_share,
        })
    }

    /// The measured statistic of a case, in milliseconds.
    pub fn measured_ms(&self, case: &CaseResult) -> f64 {
        let p = if self.latency == "labels_saved" {
            &case.labels_saved_ms
        } else {
            &case.labels_visible_ms
        };
        match self.percentile.as_str() {
            "p50" => p.p50,
            "p90" => p.p90,
            "p99" => p.p99,
            "max" => p.max,
            _ => p.mean,
        }
    }

    /// Why a case misses the objective, or `None` when it meets it.
    pub fn misses(&self, case: &CaseResult) -> Option<String> {
        let count = if self.latency == "labels_saved" {
            case.labels_saved_ms.count
        } else {
            case.labels_visible_ms.count
        };
        if count == 0 {
            return Some(format!("no receipt reached {}", self.latency));
        }
        if case.dead_lettered > 0 {
            return Some(format!("{} messages dead-lettered", case.dead_lettered));
        }
        if case.never_saved > 0 || case.unfinished > 0 {
            return Some(format!(
                "backlog did not drain: {} receipts never saved",
                case.never_saved
            ));
        }
        if let Some(max) = self.max_anomaly_share
            && case.anomalies.share > max
        {
            return Some(format!(
                "anomalies in {:.2} % of receipts",
                100.0 * case.anomalies.share
            ));
        }
        let measured = self.measured_ms(case);
        (measured >= self.below_ms).then(|| {
            format!(
                "{}.{} {:.1} s",
                self.latency,
                self.percentile,
                measured / 1000.0
            )
        })
    }
}

/// One evaluated load of a configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub load: f64,
    pub measured_ms: f64,
    pub meets: bool,
    pub misses_because: Option<String>,
    pub anomaly_share: f64,
    pub anomaly_share_ci95: [f64; 2],
    /// Found by bisection rather than read from the grid.
    pub bisected: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Configuration {
    pub name: String,
    pub overrides: BTreeMap<String, Value>,
    pub cost: f64,
    /// The highest load evaluated that the configuration meets, below every load it misses.
    pub meets_up_to: Option<f64>,
    /// The lowest load evaluated that it misses.
    pub fails_from: Option<f64>,
    pub fails_because: Option<String>,
    pub points: Vec<Point>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadAnswer {
    pub load: f64,
    pub cheapest: Option<String>,
    pub cost: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanResult {
    pub schema_version: u32,
    pub command: String,
    pub objective: String,
    pub slo: Objective,
    pub load_axis: String,
    pub spec: SweepSpec,
    /// False while the plan runs: the answers from the cases so far.
    pub complete: bool,
    /// Grid and bisection cases run.
    pub cases_done: u64,
    pub loads: Vec<LoadAnswer>,
    pub configurations: Vec<Configuration>,
}

fn number(value: &Value) -> Option<f64> {
    value.as_f64()
}

fn point(objective: &Objective, load: f64, case: &CaseResult, bisected: bool) -> Point {
    let misses = objective.misses(case);
    Point {
        load,
        measured_ms: objective.measured_ms(case),
        meets: misses.is_none(),
        misses_because: misses,
        anomaly_share: case.anomalies.share,
        anomaly_share_ci95: case.anomalies.ci95,
        bisected,
    }
}

/// Sets where the configuration stops meeting the objective from its points so far.
fn bracket(config: &mut Configuration) {
    config.points.sort_by(|a, b| a.load.total_cmp(&b.load));
    let first_miss = config.points.iter().position(|p| !p.meets);
    config.fails_from = first_miss.map(|i| config.points[i].load);
    config.fails_because = first_miss.and_then(|i| config.points[i].misses_because.clone());
    let met = &config.points[..first_miss.unwrap_or(config.points.len())];
    config.meets_up_to = met.last().map(|p| p.load);
}

/// The configurations of the grid (every case less its load), with their grid points.
fn configurations(
    spec: &SweepSpec,
    objective: &Objective,
    load_axis: &str,
    cases: &[CaseResult],
) -> Result<Vec<Configuration>, Failure> {
    let cost_of = spec
        .plan
        .as_ref()
        .map(|p| p.cost.clone())
        .unwrap_or_default();
    let mut by_name: BTreeMap<String, Configuration> = BTreeMap::new();
    for case in cases {
        let mut overrides = case.overrides.clone();
        let load = overrides
            .remove(load_axis)
            .as_ref()
            .and_then(number)
            .ok_or_else(|| {
                Failure::bad_input(format!("plan: the load axis `{load_axis}` takes numbers"))
            })?;
        let name = crate::markdown::configuration_name(&overrides);
        let cost = cost_of
            .iter()
            .map(|(path, weight)| weight * overrides.get(path).and_then(number).unwrap_or(0.0))
            .sum();
        let entry = by_name
            .entry(name.clone())
            .or_insert_with(|| Configuration {
                name,
                overrides,
                cost,
                meets_up_to: None,
                fails_from: None,
                fails_because: None,
                points: Vec::new(),
            });
        entry.points.push(point(objective, load, case, false));
    }
    let mut configs: Vec<Configuration> = by_name.into_values().collect();
    configs.iter_mut().for_each(bracket);
    Ok(configs)
}

/// Sees the configurations after each bisection step, with the cases the step ran.
type OnStep<'a> = dyn FnMut(&[Configuration], u64) -> Result<(), Failure> + 'a;

/// Bisects each configuration's bracket: every step runs one load per configuration.
fn bisect(
    sweep: &Sweep,
    objective: &Objective,
    load_axis: &str,
    integral: bool,
    configs: &mut [Configuration],
    on_step: &mut OnStep<'_>,
) -> Result<(), Failure> {
    let steps = sweep.spec.plan.as_ref().map_or(4, |p| p.bisection_steps);
    let mut next_index = sweep.spec.cases_total;
    for _ in 0..steps {
        let mut todo: Vec<(usize, f64)> = Vec::new();
        for (i, config) in configs.iter().enumerate() {
            let (Some(low), Some(high)) = (config.meets_up_to, config.fails_from) else {
                continue;
            };
            let mid = if integral {
                ((low + high) / 2.0).floor()
            } else {
                (low + high) / 2.0
            };
            if mid > low && mid < high {
                todo.push((i, mid));
            }
        }
        if todo.is_empty() {
            break;
        }
        let mut cases = Vec::with_capacity(todo.len());
        for (i, load) in &todo {
            let mut overrides = configs[*i].overrides.clone();
            let value = if integral {
                Value::from(*load as i64)
            } else {
                Value::from(*load)
            };
            overrides.insert(load_axis.to_string(), value);
            cases.push(sweep.case(next_index, overrides)?);
            next_index += 1;
        }
        let mut results: Vec<CaseResult> = Vec::new();
        run_cases(&cases, sweep.spec.replications, "bisection", |case| {
            results.push(case)
        });
        results.sort_by_key(|case| case.index);
        for ((i, load), case) in todo.iter().zip(&results) {
            configs[*i].points.push(point(objective, *load, case, true));
            bracket(&mut configs[*i]);
        }
        on_step(configs, todo.len() as u64)?;
    }
    Ok(())
}

/// At each grid load, the cheapest configuration meeting the objective there.
fn answers(configs: &[Configuration], loads: &[f64]) -> Vec<LoadAnswer> {
    loads
        .iter()
        .map(|load| {
            let best = configs
                .iter()
                .filter(|c| c.points.iter().any(|p| p.load == *load && p.meets))
                .min_by(|a, b| a.cost.total_cmp(&b.cost).then(a.name.cmp(&b.name)));
            LoadAnswer {
                load: *load,
                cheapest: best.map(|c| c.name.clone()),
                cost: best.map(|c| c.cost),
            }
        })
        .collect()
}

/// The sweep's load axis: its path, its loads (numbers), and whether they are all integers.
fn load_axis_of(path: &str, sweep: &Sweep) -> Result<(String, Vec<f64>, bool), Failure> {
    let Some(plan) = &sweep.spec.plan else {
        return Err(Failure::bad_input(format!(
            "{path}: no [plan] section naming the load axis"
        )));
    };
    let load_axis = plan.load.clone();
    let axis = sweep
        .spec
        .axes
        .iter()
        .find(|a| a.path == load_axis)
        .expect("checked on reading");
    let loads: Vec<f64> = axis.values.iter().filter_map(number).collect();
    if loads.len() != axis.values.len() {
        return Err(Failure::bad_input(format!(
            "{path}: grid.\"{load_axis}\": loads are numbers"
        )));
    }
    let integral = axis.values.iter().all(|v| v.is_i64() || v.is_u64());
    Ok((load_axis, loads, integral))
}

pub fn plan(path: &str, objective: Objective, exports: &Exports) -> Result<(), Failure> {
    let sweep = Sweep::read(path)?;
    let (load_axis, loads, integral) = load_axis_of(path, &sweep)?;
    let cases = sweep.cases(Shard::WHOLE)?;
    let mut sorted_loads = loads;
    sorted_loads.sort_by(f64::total_cmp);
    sorted_loads.dedup();
    let assemble = |configs: Vec<Configuration>, cases_done: u64, complete: bool| PlanResult {
        schema_version: SCHEMA_VERSION,
        command: "plan".to_string(),
        objective: objective.text.clone(),
        slo: objective.clone(),
        load_axis: load_axis.clone(),
        spec: sweep.spec.clone(),
        complete,
        cases_done,
        loads: answers(&configs, &sorted_loads),
        configurations: configs,
    };
    let land = |result: &PlanResult| {
        exports.write_partial(&serde_json::to_value(result).unwrap_or(Value::Null))
    };
    land(&assemble(Vec::new(), 0, false))?;
    let mut done: Vec<CaseResult> = Vec::new();
    let mut failure: Option<Failure> = None;
    let mut pace = crate::output::Pace::new();
    run_cases(&cases, sweep.spec.replications, "cases", |case| {
        done.push(case);
        if failure.is_none() && pace.due() {
            failure = configurations(&sweep.spec, &objective, &load_axis, &done)
                .and_then(|configs| land(&assemble(configs, done.len() as u64, false)))
                .err();
        }
    });
    if let Some(failure) = failure {
        return Err(failure);
    }
    done.sort_by_key(|case| case.index);
    let mut configs = configurations(&sweep.spec, &objective, &load_axis, &done)?;
    let mut cases_done = done.len() as u64;
    bisect(
        &sweep,
        &objective,
        &load_axis,
        integral,
        &mut configs,
        &mut |configs, ran| {
            cases_done += ran;
            if !pace.due() {
                return Ok(());
            }
            land(&assemble(configs.to_vec(), cases_done, false))
        },
    )?;
    let result = assemble(configs, cases_done, true);
    let value = serde_json::to_value(&result).unwrap_or(Value::Null);
    exports.write(&value)?;
    crate::output::say(exports.json_on_stdout(), &crate::markdown::markdown(&value));
    Ok(())
}
