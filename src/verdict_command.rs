//! `verdict`: the note's claim ("the pipeline no longer needs to wait for the compaction") judged
//! over many trials, for each profile and fix, at a light and a heavy load, in both flows: shares
//! of receipts with each anomaly class (95 % Wilson intervals), "labels visible" p50 and p99, and
//! whether the claim holds there. Markdown for people, JSON for machines.
//!
//! Depends on `load`, `pipeline_scenario`, `parallel`, `output` and `sim::explore`.

use crate::failure::Failure;
use crate::load;
use crate::output::Output;
use crate::pipeline_scenario;
use serde_json::{Value, json};
use sim::explore;
use sim::metrics::Latency;
use sim::oracle::{Cause, Class};
use sim::pipeline::{Flow, TrialOptions, ValidatedConfig};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The configurations judged: the two profiles and every fix.
pub const CONFIGURATIONS: [&str; 10] = [
    "described",
    "built",
    "fixes/forward_inserts",
    "fixes/retry_missing_ids",
    "fixes/group_per_collection",
    "fixes/sync_on_merge",
    "fixes/honoured_wait",
    "fixes/cas_pointer",
    "fixes/maximum_concurrency",
    "fixes/all",
];

/// The loads: a light trickle and a heavy burst.
pub const LOADS: [(&str, &[&str]); 2] = [
    (
        "light",
        &[
            "workload.receipts=20",
            "workload.arrival=poisson",
            "workload.rate_per_hour=60",
        ],
    ),
    (
        "heavy",
        &[
            "workload.receipts=200",
            "workload.arrival=bursts",
            "workload.bursts=[{at = \"0s\", receipts = 200}]",
        ],
    ),
];

/// The result of `verdict`.
#[derive(serde::Serialize)]
pub struct VerdictResult {
    pub schema_version: u32,
    pub command: &'static str,
    pub shard: crate::shard::Shard,
    /// False while the verdict runs: the pairs judged so far.
    pub complete: bool,
    pub overrides: Vec<String>,
    pub trials_per_cell: u64,
    pub loads: Vec<LoadResult>,
    /// One row per configuration, load and flow.
    pub rows: Vec<Value>,
    pub claims: Vec<Value>,
    /// The verdict table as printed.
    pub markdown: String,
}

#[derive(serde::Serialize)]
pub struct LoadResult {
    pub name: &'static str,
    pub overrides: &'static [&'static str],
}

impl LoadResult {
    /// The verdict's loads, in table order.
    fn all() -> Vec<LoadResult> {
        LOADS
            .iter()
            .map(|(name, overrides)| LoadResult { name, overrides })
            .collect()
    }
}

pub struct VerdictFlags<'a> {
    pub trials: usize,
    /// The (configuration, load) pairs to judge: pair k belongs to shard k mod N.
    pub shard: crate::shard::Shard,
    pub overrides: &'a [String],
    pub export_json: Option<&'a Output>,
    pub export_markdown: Option<&'a Output>,
}

/// One (configuration, load, flow) cell.
struct Cell {
    /// The (configuration, load) pair the cell belongs to: shards own whole pairs.
    pair: u64,
    configuration: &'static str,
    load: &'static str,
    flow: Flow,
    config: ValidatedConfig,
}

/// What one trial of a cell contributes.
struct TrialSummary {
    receipts: u64,
    affected_by_class: BTreeMap<Class, u64>,
    affected_any: u64,
    causes: BTreeMap<(Class, Cause), u64>,
    visible: Vec<sim::time::Duration>,
    never_visible: u64,
}

#[derive(Default)]
struct CellResult {
    receipts: u64,
    affected_by_class: BTreeMap<Class, u64>,
    affected_any: u64,
    causes: BTreeMap<(Class, Cause), u64>,
    visible: Latency,
    never_visible: u64,
}

fn cells(overrides: &[String]) -> Result<Vec<Cell>, Failure> {
    let mut cells = Vec::new();
    for configuration in CONFIGURATIONS {
        for (load, load_overrides) in LOADS {
            for flow in [Flow::Old, Flow::New] {
                let mut all: Vec<String> = load_overrides.iter().map(|s| s.to_string()).collect();
                all.push(format!(
                    "flow={}",
                    if flow == Flow::Old { "old" } else { "new" }
                ));
                all.extend(overrides.iter().cloned());
                let loaded = load::load(configuration, None, &all)?;
                let config = pipeline_scenario::load(&loaded)?.config;
                cells.push(Cell {
                    pair: (cells.len() / 2) as u64,
                    configuration,
                    load,
                    flow,
                    config,
                });
            }
        }
    }
    Ok(cells)
}

fn summarise_trial(config: &ValidatedConfig, seed_offset: u64) -> TrialSummary {
    let config = config.with_seed(config.seed.wrapping_add(seed_offset));
    let judged = explore::judge(&config, None, &TrialOptions::default());
    let mut affected_by_class = BTreeMap::new();
    for class in Class::ALL {
        affected_by_class.insert(
            class,
            *judged
                .oracle
                .receipts_affected_by_class
                .get(&class)
                .unwrap_or(&0),
        );
    }
    TrialSummary {
        receipts: judged.trial.report.receipts,
        affected_by_class,
        affected_any: judged.oracle.receipts_affected,
        causes: explore::affected_by_kind(&judged.oracle)
            .into_iter()
            .collect(),
        visible: judged
            .trial
            .latencies
            .iter()
            .filter_map(|l| l.labels_visible)
            .collect(),
        never_visible: judged.trial.report.never_visible,
    }
}

pub fn verdict(flags: &VerdictFlags<'_>) -> Result<(), Failure> {
    if flags.trials == 0 {
        return Err(Failure::bad_input("--trials 0: judge at least one trial"));
    }
    let cells: Vec<Cell> = cells(flags.overrides)?
        .into_iter()
        .filter(|cell| flags.shard.owns(cell.pair))
        .collect();
    let trials = flags.trials;
    // Both cells of a pair are judged before the pair lands: trials `2 * trials` at a time.
    let per_pair = 2 * trials;
    let mut results: Vec<Option<CellResult>> = (0..cells.len()).map(|_| None).collect();
    let mut pending: BTreeMap<usize, Vec<Option<TrialSummary>>> = BTreeMap::new();
    land(flags, &cells, &results)?;
    let mut failure: Option<Failure> = None;
    let mut pace = crate::output::Pace::new();
    crate::parallel::for_each_done(
        cells.len() * trials,
        None,
        "trials",
        |index| summarise_trial(&cells[index / trials].config, (index % trials) as u64),
        |index, summary| {
            let slots = pending
                .entry(index / per_pair)
                .or_insert_with(|| (0..per_pair).map(|_| None).collect());
            slots[index % per_pair] = Some(summary);
            if slots.iter().all(Option::is_some) {
                let slots = pending.remove(&(index / per_pair)).expect("pending");
                let mut summaries = slots.into_iter().map(|s| s.expect("all ran"));
                for cell in 0..2 {
                    let cell_index = (index / per_pair) * 2 + cell;
                    results[cell_index] = Some(fold(summaries.by_ref().take(trials)));
                }
                if failure.is_none() && pace.due() {
                    failure = land(flags, &cells, &results).err();
                }
            }
        },
    );
    assert!(pending.is_empty(), "every pair completed");
    if let Some(failure) = failure {
        return Err(failure);
    }
    let result = assemble(flags, &cells, &results);
    let json_on_stdout = matches!(flags.export_json, Some(Output::Stdout));
    crate::output::say(json_on_stdout, &result.markdown);
    if let Some(output) = flags.export_markdown {
        output.write(result.markdown.as_bytes())?;
    }
    if let Some(output) = flags.export_json {
        output.write_json(&serde_json::to_value(&result).unwrap_or(Value::Null))?;
    }
    Ok(())
}

/// A cell's result from its trials, in seed order.
fn fold(summaries: impl Iterator<Item = TrialSummary>) -> CellResult {
    let mut result = CellResult::default();
    for summary in summaries {
        result.receipts += summary.receipts;
        result.affected_any += summary.affected_any;
        result.never_visible += summary.never_visible;
        for (class, count) in summary.affected_by_class {
            *result.affected_by_class.entry(class).or_default() += count;
        }
        for (kind, count) in summary.causes {
            *result.causes.entry(kind).or_default() += count;
        }
        for latency in summary.visible {
            result.visible.record(latency);
        }
    }
    result
}

/// The verdict over the pairs judged so far (both cells of a pair, or neither).
fn assemble(
    flags: &VerdictFlags<'_>,
    cells: &[Cell],
    results: &[Option<CellResult>],
) -> VerdictResult {
    let (done_cells, done_results): (Vec<&Cell>, Vec<&CellResult>) = cells
        .iter()
        .zip(results)
        .filter_map(|(cell, result)| result.as_ref().map(|result| (cell, result)))
        .unzip();
    let rows: Vec<Value> = done_cells
        .iter()
        .zip(&done_results)
        .map(|(cell, result)| row_json(cell, result))
        .collect();
    let claims = claims(&done_cells, &done_results);
    let markdown = markdown(flags.trials, &rows, &claims);
    // Keys in name order, as `merge` writes them, so merged shards equal the whole.
    VerdictResult {
        schema_version: crate::output::SCHEMA_VERSION,
        command: "verdict",
        shard: flags.shard,
        complete: done_cells.len() == cells.len(),
        overrides: flags.overrides.to_vec(),
        trials_per_cell: flags.trials as u64,
        loads: LoadResult::all(),
        rows,
        claims,
        markdown,
    }
}

/// Lands the verdict so far in the export files.
fn land(
    flags: &VerdictFlags<'_>,
    cells: &[Cell],
    results: &[Option<CellResult>],
) -> Result<(), Failure> {
    let result = assemble(flags, cells, results);
    if let Some(output) = flags.export_markdown {
        output.write_partial(result.markdown.as_bytes())?;
    }
    if let Some(output) = flags.export_json {
        let value = serde_json::to_value(&result).unwrap_or(Value::Null);
        output.write_partial(&crate::output::json_bytes(&value)?)?;
    }
    Ok(())
}

fn share_json(count: u64, total: u64) -> Value {
    let ci = sim::stats::wilson_ci95(count, total);
    json!({ "receipts": count, "share": count as f64 / total.max(1) as f64, "ci95": ci })
}

fn row_json(cell: &Cell, result: &CellResult) -> Value {
    let summary = result.visible.summary();
    let by_class: serde_json::Map<String, Value> = result
        .affected_by_class
        .iter()
        .map(|(class, count)| {
            (
                class.name().to_string(),
                share_json(*count, result.receipts),
            )
        })
        .collect();
    let causes: Vec<Value> = result
        .causes
        .iter()
        .map(|((class, cause), count)| json!({"class": class.name(), "cause": cause.name(), "receipts": count}))
        .collect();
    json!({
        "pair": cell.pair,
        "configuration": cell.configuration,
        "load": cell.load,
        "flow": if cell.flow == Flow::Old { "old" } else { "new" },
        "receipts": result.receipts,
        "anomalies": { "by_class": by_class, "any": share_json(result.affected_any, result.receipts) },
        "causes": causes,
        "labels_visible_ms": { "p50": summary.p50, "p99": summary.p99, "count": summary.count },
        "never_visible": result.never_visible,
    })
}

/// The claim, per configuration and load: the new flow (no wait) is free of anomalies, and no
/// worse than the old flow.
fn claims(cells: &[&Cell], results: &[&CellResult]) -> Vec<Value> {
    let mut claims = Vec::new();
    for pair in cells.chunks(2).zip(results.chunks(2)) {
        let ([old_cell, new_cell], [old, new]) = pair else {
            continue;
        };
        assert_eq!((old_cell.flow, new_cell.flow), (Flow::Old, Flow::New));
        let holds = new.affected_any == 0;
        let no_worse = new.affected_any <= old.affected_any;
        let upper = sim::stats::wilson_ci95(new.affected_any, new.receipts)[1];
        let statement = if holds {
            format!(
                "holds: no anomaly in {} receipts (share below {upper:.4} at 95%)",
                new.receipts
            )
        } else if no_worse {
            format!(
                "fails, though no worse than waiting: {:.1}% of receipts affected (old flow {:.1}%)",
                100.0 * new.affected_any as f64 / new.receipts.max(1) as f64,
                100.0 * old.affected_any as f64 / old.receipts.max(1) as f64
            )
        } else {
            format!(
                "fails: {:.1}% of receipts affected without the wait, {:.1}% with it",
                100.0 * new.affected_any as f64 / new.receipts.max(1) as f64,
                100.0 * old.affected_any as f64 / old.receipts.max(1) as f64
            )
        };
        claims.push(json!({
            "pair": new_cell.pair,
            "configuration": new_cell.configuration,
            "load": new_cell.load,
            "holds": holds,
            "no_worse_than_waiting": no_worse,
            "statement": statement,
        }));
    }
    claims
}

fn percent(share: &Value) -> String {
    let value = share["share"].as_f64().unwrap_or(0.0);
    let ci = &share["ci95"];
    if share["receipts"].as_u64() == Some(0) {
        return format!("0 (≤{:.1})", 100.0 * ci[1].as_f64().unwrap_or(0.0));
    }
    format!(
        "{:.1} ({:.1}–{:.1})",
        100.0 * value,
        100.0 * ci[0].as_f64().unwrap_or(0.0),
        100.0 * ci[1].as_f64().unwrap_or(0.0)
    )
}

/// A "labels visible" percentile in seconds, or a dash when no receipt became visible.
fn visible_seconds(latency: &Value, key: &str) -> String {
    if latency["count"].as_u64().unwrap_or(0) == 0 {
        return "–".to_string();
    }
    format!("{:.1}", latency[key].as_f64().unwrap_or(0.0) / 1000.0)
}

fn markdown(trials: usize, rows: &[Value], claims: &[Value]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "# Verdict on the note's claim\n");
    let _ = writeln!(
        text,
        "The note claims the pipeline no longer needs to wait for the compaction because \"the two \
         compactions operate on different data\". Each row: {trials} trials (seeds 1..={trials}) of one \
         configuration at one load and flow; shares are percentages of receipts with an anomaly of \
         the class, with 95% Wilson intervals; latencies in seconds. Loads: light = 20 receipts at \
         60/h; heavy = 200 receipts uploaded at once. Generated by `receipt-sim verdict --trials {trials}`.\n"
    );
    let _ = writeln!(
        text,
        "| configuration | load | flow | receipts | E % | L % | M % | U % | P % | any % | visible p50 s | visible p99 s | never visible | main causes |"
    );
    let _ = writeln!(
        text,
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for row in rows {
        let _ = writeln!(text, "{}", row_line(row));
    }
    let _ = writeln!(text, "\n## Does the claim hold?\n");
    let _ = writeln!(text, "| configuration | load | claim |");
    let _ = writeln!(text, "|---|---|---|");
    for claim in claims {
        let _ = writeln!(
            text,
            "| {} | {} | {} |",
            claim["configuration"].as_str().unwrap_or(""),
            claim["load"].as_str().unwrap_or(""),
            claim["statement"].as_str().unwrap_or("")
        );
    }
    text
}

/// One row of the verdict table.
fn row_line(row: &Value) -> String {
    let by_class = &row["anomalies"]["by_class"];
    let causes = main_causes(row);
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        row["configuration"].as_str().unwrap_or(""),
        row["load"].as_str().unwrap_or(""),
        row["flow"].as_str().unwrap_or(""),
        row["receipts"],
        percent(&by_class["E"]),
        percent(&by_class["L"]),
        percent(&by_class["M"]),
        percent(&by_class["U"]),
        percent(&by_class["P"]),
        percent(&row["anomalies"]["any"]),
        visible_seconds(&row["labels_visible_ms"], "p50"),
        visible_seconds(&row["labels_visible_ms"], "p99"),
        row["never_visible"],
        if causes.is_empty() {
            "–".to_string()
        } else {
            causes.join("; ")
        }
    )
}

/// The row's three most frequent causes, by receipts, as "class cause (receipts)".
fn main_causes(row: &Value) -> Vec<String> {
    let mut causes: Vec<(u64, String)> = row["causes"]
        .as_array()
        .map(|causes| {
            causes
                .iter()
                .map(|c| {
                    let receipts = c["receipts"].as_u64().unwrap_or(0);
                    (
                        receipts,
                        format!(
                            "{} {} ({receipts})",
                            c["class"].as_str().unwrap_or(""),
                            c["cause"].as_str().unwrap_or("")
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    causes.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    causes.into_iter().take(3).map(|(_, text)| text).collect()
}

/// `merge` of verdict shards: the rows and claims of every pair, in pair order, as one verdict.
pub fn merge(
    parts: &[(String, Value)],
    exports: &crate::exporters::Exports,
) -> Result<(), Failure> {
    let pairs_total = (CONFIGURATIONS.len() * LOADS.len()) as u64;
    let (first_file, first) = &parts[0];
    let mut rows: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    let mut claims: BTreeMap<u64, Value> = BTreeMap::new();
    for (file, part) in parts {
        if part["complete"] != true {
            return Err(Failure::bad_input(format!(
                "{file}: an unfinished shard ({} pairs done): run it again",
                part["claims"].as_array().map_or(0, Vec::len)
            )));
        }
        for key in ["trials_per_cell", "overrides", "schema_version"] {
            if part[key] != first[key] {
                return Err(Failure::bad_input(format!(
                    "{file}: {key} {} differs from {first_file}'s {}",
                    part[key], first[key]
                )));
            }
        }
        for row in part["rows"].as_array().into_iter().flatten() {
            let pair = row["pair"].as_u64().unwrap_or(u64::MAX);
            rows.entry(pair).or_default().push(row.clone());
        }
        for claim in part["claims"].as_array().into_iter().flatten() {
            let pair = claim["pair"].as_u64().unwrap_or(u64::MAX);
            if claims.insert(pair, claim.clone()).is_some() {
                return Err(Failure::bad_input(format!(
                    "{file}: pair {pair} given twice: shards overlap"
                )));
            }
        }
    }
    if let Some(missing) = (0..pairs_total).find(|pair| !claims.contains_key(pair)) {
        return Err(Failure::bad_input(format!(
            "merge: pair {missing} of {pairs_total} is in no file: a shard is missing"
        )));
    }
    let trials = first["trials_per_cell"].as_u64().unwrap_or(0);
    let rows: Vec<Value> = rows.into_values().flatten().collect();
    let claims: Vec<Value> = claims.into_values().collect();
    let markdown = markdown(trials as usize, &rows, &claims);
    let result = VerdictResult {
        schema_version: crate::output::SCHEMA_VERSION,
        command: "verdict",
        shard: crate::shard::Shard::WHOLE,
        complete: true,
        overrides: serde_json::from_value(first["overrides"].clone()).unwrap_or_default(),
        trials_per_cell: trials,
        loads: LoadResult::all(),
        rows,
        claims,
        markdown,
    };
    exports.write(&serde_json::to_value(&result).unwrap_or(Value::Null))
}
