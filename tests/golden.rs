//! Golden outputs: the deterministic figures of every embedded scenario, pinned in committed
//! expectation files under `tests/golden/`.
//!
//! Each case runs the binary (`run` and `compare` of every embedded pipeline scenario at its
//! defaults, `run mmc`, a small `hunt` and a small `verdict`), keeps the figures that a change of
//! the model would move (fingerprints, event counts, counters, anomaly counts by class and cause,
//! latency percentiles) as sorted `path = value` lines, and compares them with the expectation.
//! `UPDATE_EXPECT=1 cargo test --test golden` rewrites the expectations (rust-analyzer's way); a
//! commit that changes one says why in its message. Wall-clock figures (elapsed time, trials per
//! second, thread counts) and file paths are left out, so the figures are the same on every machine.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;

use common::{receipt_sim, stderr};

/// Keys never pinned: the resolved scenario (the input, not an output), the queue samples and the
/// per-receipt latency values (their maxima and percentiles are pinned, and the fingerprint pins
/// the rest).
const UNPINNED_KEYS: [&str; 3] = ["scenario", "samples", "latency_values_ms"];

fn expectation_path(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{}.txt", case.replace('/', "-")))
}

/// Appends `prefix.key = value` lines for every leaf under `value`.
fn flatten(prefix: &str, value: &Value, lines: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if UNPINNED_KEYS.contains(&key.as_str()) {
                    continue;
                }
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, child, lines);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{index}]"), child, lines);
            }
        }
        leaf => lines.push(format!("{prefix} = {leaf}")),
    }
}

/// A trial's pinned figures: everything but the unpinned keys, with the anomaly list reduced to
/// counts of receipts and ids by class and cause (its excerpts are pinned by the fingerprint).
fn trial_lines(prefix: &str, trial: &Value, lines: &mut Vec<String>) {
    let object = trial.as_object().expect("a trial is a JSON object");
    for (key, value) in object {
        if UNPINNED_KEYS.contains(&key.as_str()) {
            continue;
        }
        let path = format!("{prefix}{key}");
        if key == "anomalies" {
            anomaly_lines(&path, value, lines);
        } else {
            flatten(&path, value, lines);
        }
    }
}

fn anomaly_lines(prefix: &str, anomalies: &Value, lines: &mut Vec<String>) {
    let mut by_cause: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for anomaly in anomalies["list"].as_array().expect("an anomaly list") {
        let class = anomaly["class"].as_str().expect("a class").to_string();
        let cause = anomaly["cause"].as_str().expect("a cause").to_string();
        let entry = by_cause.entry((class, cause)).or_default();
        entry.0 += 1;
        entry.1 += anomaly["id_count"].as_u64().expect("an id count");
    }
    for ((class, cause), (anomalies, ids)) in by_cause {
        lines.push(format!(
            "{prefix}.by_cause.{class}.{cause} = {anomalies} anomalies, {ids} ids"
        ));
    }
    for (key, value) in anomalies.as_object().expect("anomalies are an object") {
        if key != "list" {
            flatten(&format!("{prefix}.{key}"), value, lines);
        }
    }
}

/// Runs the binary and parses the JSON it exported to `--json FILE`. `hunt` exits 1 when it
/// finds races, which the golden figures include, so both 0 and 1 are accepted there.
fn exported(args: &[&str], dir: &Path, accepted: &[i32]) -> Value {
    let file = dir.join("out.json");
    let mut full: Vec<&str> = args.to_vec();
    let file_text = file.to_str().expect("a UTF-8 temporary path");
    full.extend_from_slice(&["--json", file_text]);
    let output = receipt_sim(&full);
    let code = output.status.code().unwrap_or(-1);
    assert!(
        accepted.contains(&code),
        "{args:?} exited {code}: {}",
        stderr(&output)
    );
    let text = std::fs::read_to_string(&file).expect("the export was written");
    serde_json::from_str(&text).expect("the export is one JSON document")
}

/// Compares the lines with the case's expectation file, or rewrites it under `UPDATE_EXPECT=1`.
fn check(case: &str, mut lines: Vec<String>) {
    lines.sort();
    let actual = lines.join("\n") + "\n";
    let path = expectation_path(case);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{case}: no expectation at {}; run `UPDATE_EXPECT=1 cargo test --test golden`",
            path.display()
        )
    });
    if expected == actual {
        return;
    }
    let expected_lines: Vec<&str> = expected.lines().collect();
    let actual_lines: Vec<&str> = actual.lines().collect();
    let mut diff = String::new();
    for line in &expected_lines {
        if !actual_lines.contains(line) {
            diff.push_str(&format!("- {line}\n"));
        }
    }
    for line in &actual_lines {
        if !expected_lines.contains(line) {
            diff.push_str(&format!("+ {line}\n"));
        }
    }
    panic!(
        "{case}: golden figures changed (- expected, + now); if the change is intended, run \
         `UPDATE_EXPECT=1 cargo test --test golden` and say why in the commit message\n{diff}"
    );
}

fn run_case(scenario: &str) {
    let dir = tempfile::tempdir().unwrap();
    let trial = exported(&["run", scenario], dir.path(), &[0]);
    let mut lines = Vec::new();
    trial_lines("", &trial, &mut lines);
    check(&format!("run-{scenario}"), lines);
}

fn compare_case(scenario: &str) {
    let dir = tempfile::tempdir().unwrap();
    let comparison = exported(&["compare", scenario], dir.path(), &[0]);
    let mut lines = Vec::new();
    for flow in ["old", "new"] {
        trial_lines(&format!("{flow}."), &comparison[flow], &mut lines);
    }
    flatten("paired", &comparison["paired"], &mut lines);
    flatten("receipts", &comparison["receipts"], &mut lines);
    check(&format!("compare-{scenario}"), lines);
}

/// Every embedded pipeline scenario: `run` and `compare` at its defaults.
macro_rules! pipeline_cases {
    ($($name:ident => $scenario:literal),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn run() {
                    super::run_case($scenario);
                }
                #[test]
                fn compare() {
                    super::compare_case($scenario);
                }
            }
        )*
    };
}

pipeline_cases! {
    described => "described",
    built => "built",
    quick => "quick",
    hunt => "hunt",
    scale => "scale",
    fix_group_per_collection => "fixes/group_per_collection",
    fix_retry_missing_ids => "fixes/retry_missing_ids",
    fix_honoured_wait => "fixes/honoured_wait",
    fix_forward_inserts => "fixes/forward_inserts",
    fix_all => "fixes/all",
    fix_cas_pointer => "fixes/cas_pointer",
    fix_sync_on_merge => "fixes/sync_on_merge",
    fix_maximum_concurrency => "fixes/maximum_concurrency",
}

#[test]
fn every_embedded_scenario_has_a_golden_case() {
    let source = std::fs::read_to_string(file!()).unwrap();
    let load =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/load.rs")).unwrap();
    let mut embedded = 0;
    for line in load.lines() {
        let Some(start) = line.find("include_str!(\"../scenarios/") else {
            continue;
        };
        let rest = &line[start + "include_str!(\"../scenarios/".len()..];
        let name = rest.split(".toml").next().unwrap();
        embedded += 1;
        if name == "mmc" {
            continue;
        }
        assert!(
            source.contains(&format!("=> \"{name}\"")),
            "embedded scenario `{name}` has no golden case"
        );
    }
    assert!(embedded >= 13, "found only {embedded} embedded scenarios");
}

#[test]
fn run_mmc() {
    let dir = tempfile::tempdir().unwrap();
    let report = exported(&["run", "mmc"], dir.path(), &[0]);
    let mut lines = Vec::new();
    flatten("", &report, &mut lines);
    check("run-mmc", lines);
}

#[test]
fn hunt_small() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hunt");
    let out = out.to_str().unwrap();
    let args = ["hunt", "hunt", "--trials", "400", "--out", out];
    let report = exported(&args, dir.path(), &[0, 1]);
    let mut lines = Vec::new();
    for key in ["trials", "receipts", "seed"] {
        flatten(key, &report[key], &mut lines);
    }
    for kind in report["anomalies"]["kinds"].as_array().unwrap() {
        let name = format!(
            "kinds.{}.{}",
            kind["class"].as_str().unwrap(),
            kind["cause"].as_str().unwrap()
        );
        for key in [
            "receipts_affected",
            "trials",
            "share",
            "counterexample_receipts",
        ] {
            flatten(&format!("{name}.{key}"), &kind[key], &mut lines);
        }
        let file = kind["counterexample"].as_str().unwrap();
        let counterexample: Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for key in ["fingerprint", "events", "receipts"] {
            flatten(
                &format!("{name}.counterexample.{key}"),
                &counterexample[key],
                &mut lines,
            );
        }
    }
    flatten("by_class", &report["anomalies"]["by_class"], &mut lines);
    check("hunt-hunt", lines);
}

#[test]
fn verdict_small() {
    let dir = tempfile::tempdir().unwrap();
    let report = exported(&["verdict", "--trials", "2"], dir.path(), &[0]);
    let mut lines = Vec::new();
    for row in report["rows"].as_array().unwrap() {
        let name = format!(
            "{}.{}.{}",
            row["configuration"].as_str().unwrap(),
            row["load"].as_str().unwrap(),
            row["flow"].as_str().unwrap()
        );
        for key in [
            "anomalies",
            "causes",
            "labels_visible_ms",
            "never_visible",
            "receipts",
        ] {
            flatten(&format!("{name}.{key}"), &row[key], &mut lines);
        }
    }
    for claim in report["claims"].as_array().unwrap() {
        let name = format!(
            "claim.{}.{}",
            claim["configuration"].as_str().unwrap(),
            claim["load"].as_str().unwrap()
        );
        flatten(&name, claim, &mut lines);
    }
    check("verdict-2-trials", lines);
}
