//! The pipeline commands through the binary: the keys `run` and `compare` export and how they
//! relate, histories, receipts written and replayed, rejected inputs, a trial cut at its horizon,
//! and the race `hunt` finds in the built profile, replayed from its counterexample file alone.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{assert_bad_input, receipt_sim, stderr, write};

/// Runs a command that must succeed and print JSON on standard output.
fn json(args: &[&str]) -> Value {
    let output = common::receipt_sim_ok(args);
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}

fn run_json(extra: &[&str]) -> Value {
    let mut args = vec!["run", "quick", "--json", "-"];
    args.extend_from_slice(extra);
    json(&args)
}

fn number(value: &Value, path: &str) -> f64 {
    let mut current = value;
    for key in path.split('.') {
        current = &current[key];
    }
    current
        .as_f64()
        .unwrap_or_else(|| panic!("`{path}` is not a number: {current}"))
}

#[test]
fn run_exports_every_documented_key() {
    let value = run_json(&[]);
    for key in ["fingerprint", "events", "receipts", "never_visible", "stop"] {
        assert!(value.get(key).is_some(), "missing `{key}`");
    }
    for key in ["dead_lettered", "lock_failures", "backlog", "in_flight"] {
        assert!(value[key].is_object(), "`{key}` is not an object");
    }
    let receipts = number(&value, "receipts");
    assert_eq!(receipts, 12.0);
    assert!(number(&value, "events") > receipts);
    for latency in ["labels_saved", "labels_visible"] {
        let at = |q: &str| number(&value, &format!("latency_ms.{latency}.{q}"));
        assert!(
            at("p50") <= at("p90") && at("p90") <= at("p99") && at("p99") <= at("max"),
            "{latency} percentiles out of order: {}",
            value["latency_ms"][latency]
        );
        assert!(at("count") <= receipts);
    }
    // Every receipt either saved its labels or is counted as never saved.
    assert_eq!(
        number(&value, "latency_ms.labels_saved.count") + number(&value, "never_saved"),
        receipts
    );
    let by_class = value["anomalies"]["by_class"].as_object().unwrap();
    let classes: Vec<&str> = by_class.keys().map(String::as_str).collect();
    assert_eq!(classes, ["E", "L", "M", "P", "U"]);
    let listed = value["anomalies"]["list"].as_array().unwrap().len() as f64;
    let counted: f64 = by_class.values().map(|v| v.as_f64().unwrap()).sum();
    assert_eq!(listed, counted);
    let affected = number(&value, "anomalies.receipts_affected");
    assert!(affected > 0.0 && affected <= receipts);
}

#[test]
fn the_seed_alone_decides_the_fingerprint() {
    let first = run_json(&[]);
    let again = run_json(&[]);
    assert_eq!(first["fingerprint"], again["fingerprint"]);
    assert_eq!(first["events"], again["events"]);
    let other = run_json(&["--seed", "2"]);
    assert_ne!(first["fingerprint"], other["fingerprint"]);
    // `--seed` and `--set seed=` are the same knob.
    let set = run_json(&["--set", "seed=2"]);
    assert_eq!(other["fingerprint"], set["fingerprint"]);
}

#[test]
fn compare_nests_the_trials_of_both_flows_and_pairs_them() {
    let value = json(&["compare", "quick", "--json", "-"]);
    for key in ["old", "new", "paired"] {
        assert!(value[key].is_object(), "missing `{key}`");
    }
    for flow in ["old", "new"] {
        for key in [
            "fingerprint",
            "events",
            "receipts",
            "never_visible",
            "dead_lettered",
            "lock_failures",
        ] {
            assert!(value[flow].get(key).is_some(), "missing `{flow}.{key}`");
        }
        assert!(value[flow]["latency_ms"]["labels_visible"]["count"].is_number());
        assert!(value[flow]["anomalies"]["by_class"]["L"].is_number());
        assert!(value[flow]["anomalies"]["receipts_affected"].is_number());
    }
    // Each side is the trial `run` gives for that flow.
    let old = run_json(&["--set", "flow=old"]);
    let new = run_json(&["--set", "flow=new"]);
    assert_eq!(value["old"]["fingerprint"], old["fingerprint"]);
    assert_eq!(value["new"]["fingerprint"], new["fingerprint"]);
    assert_ne!(old["fingerprint"], new["fingerprint"]);
    let paired = &value["paired"]["labels_saved"];
    assert_eq!(number(paired, "count"), 12.0);
    assert_eq!(number(paired, "only_old") + number(paired, "only_new"), 0.0);
    // The built profile never marks runs, so the old flow waits the full 120 s cap: the new flow
    // saves every receipt's labels sooner, by more than the cap on average.
    assert!(number(paired, "mean") < -120_000.0, "{paired}");
    assert_eq!(number(paired, "new_faster_share"), 1.0);
}

#[test]
fn history_is_json_lines_of_events_and_does_not_change_the_trial() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let path = path.to_str().unwrap();
    let with_history = run_json(&["--history", path]);
    assert_eq!(with_history["fingerprint"], run_json(&[])["fingerprint"]);
    let text = std::fs::read_to_string(path).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is a JSON object"))
        .collect();
    assert!(records.len() > 100, "{} records", records.len());
    for record in &records {
        assert!(record["at_s"].is_number(), "{record}");
        assert!(record["actor"].is_string(), "{record}");
        assert!(record["event"].is_string(), "{record}");
    }
    let arrivals = records.iter().filter(|r| r["event"] == "arrival").count();
    assert_eq!(arrivals, 12, "one arrival per receipt");

    // `compare` writes both trials, each tagged with its flow and in time order.
    let path = dir.path().join("compare.jsonl");
    let output = receipt_sim(&["compare", "quick", "--history", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = std::fs::read_to_string(&path).unwrap();
    for flow in ["old", "new"] {
        let times: Vec<f64> = text
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|record| record["flow"] == flow)
            .map(|record| record["at_s"].as_f64().unwrap())
            .collect();
        assert!(times.len() > 100, "{flow}: {} records", times.len());
        assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{flow}");
    }
}

#[test]
fn written_receipts_replay_as_the_same_trial() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("receipts.jsonl");
    let file = file.to_str().unwrap();
    let output = receipt_sim(&["receipts", "quick", "--out", file]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines = std::fs::read_to_string(file).unwrap();
    assert_eq!(lines.lines().count(), 12);
    let scenario = write(
        dir.path(),
        "replay.toml",
        &format!("extends = \"quick\"\n\n[workload]\nsource = {{ file = \"{file}\" }}\n"),
    );
    let replayed = json(&["run", &scenario, "--json", "-"]);
    let generated = run_json(&[]);
    assert_eq!(replayed["fingerprint"], generated["fingerprint"]);
    assert_eq!(replayed["receipts"], 12);
    let compared = json(&["compare", &scenario, "--json", "-"]);
    assert_eq!(compared["old"]["fingerprint"], generated["fingerprint"]);
}

/// `extends` is resolved against the scenario's folder; a relative receipts file is resolved
/// against the working directory instead, so a scenario and its receipts moved together stop
/// working unless the command runs from their folder.
#[test]
fn a_relative_receipts_file_is_found_next_to_its_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("receipts.jsonl");
    let output = receipt_sim(&["receipts", "quick", "--out", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    write(dir.path(), "base.toml", "extends = \"quick\"\n");
    let scenario = write(
        dir.path(),
        "replay.toml",
        "extends = \"base.toml\"\n\n[workload]\nsource = { file = \"receipts.jsonl\" }\n",
    );
    let output = Command::new(env!("CARGO_BIN_EXE_receipt-sim"))
        .args(["run", &scenario, "--json", "-"])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn impossible_knob_values_are_rejected_by_field() {
    for (set, field) in [
        (
            "compaction.reserved_concurrency=0",
            "compaction.reserved_concurrency",
        ),
        ("workload.rate_per_hour=-1", "workload.rate_per_hour"),
        ("queues.receive_limit=0", "queues.receive_limit"),
    ] {
        for command in ["run", "compare"] {
            let output = receipt_sim(&[command, "quick", "--set", set, "--json", "-"]);
            assert_bad_input(&output, &[field]);
        }
    }
}

#[test]
fn an_unknown_field_is_named_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let typo = write(
        dir.path(),
        "typo.toml",
        "extends = \"quick\"\nseed = 3\n\n[compaction]\nreserved_concurrency = 4\nlease_secs = 30\n",
    );
    let output = receipt_sim(&["run", &typo]);
    assert_bad_input(
        &output,
        &["typo.toml:6", "compaction.lease_secs", "unknown field"],
    );
    // In a base scenario, the base file and its line are named.
    write(
        dir.path(),
        "base.toml",
        "extends = \"quick\"\n\n[queues]\nvisibilty_timeout = \"1m\"\n",
    );
    let child = write(
        dir.path(),
        "child.toml",
        "extends = \"base.toml\"\nseed = 4\n",
    );
    let output = receipt_sim(&["compare", &child]);
    assert_bad_input(&output, &["base.toml:4", "queues.visibilty_timeout"]);
}

#[test]
fn an_overloaded_configuration_stops_at_its_horizon_with_work_left() {
    let value = run_json(&[
        "--set",
        "workload.receipts=300",
        "--set",
        "workload.arrival=bursts",
        "--set",
        "workload.bursts=[{at = \"0s\", receipts = 300}]",
        "--set",
        "horizon=10m",
        // A hundred upload invocations, not the account's thousand: the burst waits for them.
        "--set",
        "upload.concurrency=100",
    ]);
    assert_eq!(value["stop"], "horizon");
    assert!(number(&value, "ended_at_s") <= 600.0);
    assert_eq!(number(&value, "receipts"), 300.0);
    let backlog = &value["backlog"];
    for key in ["upload_queue", "lines_queue", "words_queue"] {
        assert!(backlog[key].is_number(), "backlog.{key}: {backlog}");
    }
    assert!(number(backlog, "upload_queue") > 0.0, "{backlog}");
    let in_flight = number(&value, "in_flight.receipts");
    assert!(in_flight > 0.0);
    let never_saved = number(&value, "never_saved");
    assert!(never_saved >= in_flight);
    assert_eq!(
        number(&value, "latency_ms.labels_saved.count") + never_saved,
        300.0
    );
    // What is still under way at the horizon is not blamed on a race.
    let list = value["anomalies"]["list"].as_array().unwrap();
    assert!(list.iter().any(|a| a["cause"] == "in_flight_at_horizon"));
}

#[test]
fn check_fails_on_the_built_profile_and_passes_where_the_pipeline_converges() {
    let output = receipt_sim(&["run", "quick", "--check"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("--check"), "{}", stderr(&output));
    let output = receipt_sim(&[
        "run",
        "described",
        "--set",
        "workload.receipts=6",
        "--set",
        "compaction.missing_id=retry",
        "--set",
        "stream_processor.message_group=collection",
        "--check",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// Writes `counterexample` with `change` applied and replays it.
fn replay_tampered(dir: &Path, counterexample: &Value, change: impl Fn(&mut Value)) -> Output {
    let mut tampered = counterexample.clone();
    change(&mut tampered);
    let path = write(
        dir,
        "tampered.json",
        &serde_json::to_string(&tampered).unwrap(),
    );
    receipt_sim(&["replay", &path])
}

#[test]
fn hunt_finds_the_dropped_label_race_and_its_counterexamples_replay() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hunt");
    let output = receipt_sim(&[
        "hunt",
        "hunt",
        "--trials",
        "300",
        "--out",
        out.to_str().unwrap(),
        "--json",
        "-",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["trials"], 300);
    let kinds = value["anomalies"]["kinds"].as_array().unwrap();
    assert!(
        kinds
            .iter()
            .any(|k| k["class"] == "L" && k["cause"] == "label_insert_not_forwarded"),
        "{kinds:?}"
    );
    // One counterexample file per kind, named by it, and nothing else in the folder.
    let mut written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let mut expected: Vec<String> = kinds
        .iter()
        .map(|k| {
            format!(
                "{}-{}.json",
                k["class"].as_str().unwrap(),
                k["cause"].as_str().unwrap()
            )
        })
        .collect();
    expected.sort();
    assert_eq!(written, expected);

    for kind in kinds {
        let file = kind["counterexample"].as_str().unwrap();
        let replay = receipt_sim(&["replay", file]);
        let stdout = String::from_utf8_lossy(&replay.stdout);
        assert_eq!(replay.status.code(), Some(0), "{file}: {}", stderr(&replay));
        assert!(stdout.contains("same as recorded"), "{stdout}");
        let cause = kind["cause"].as_str().unwrap();
        assert!(stdout.contains(cause), "{stdout}");
        assert!(stdout.contains("history of the affected ids"), "{stdout}");
    }

    let file = out.join("L-label_insert_not_forwarded.json");
    let counterexample: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let seed = counterexample["choices"]["seed"].as_u64().unwrap();
    let other_seed = replay_tampered(dir.path(), &counterexample, |c| {
        c["choices"]["seed"] = Value::from(seed + 1);
    });
    assert_eq!(other_seed.status.code(), Some(1), "{}", stderr(&other_seed));
    let other_fingerprint = replay_tampered(dir.path(), &counterexample, |c| {
        c["fingerprint"] = Value::from("0123456789abcdef");
    });
    assert_eq!(other_fingerprint.status.code(), Some(1));
    let other_cause = replay_tampered(dir.path(), &counterexample, |c| {
        c["cause"] = Value::from("label_before_embedding");
    });
    assert_eq!(other_cause.status.code(), Some(1));
    let untouched = replay_tampered(dir.path(), &counterexample, |_| {});
    assert_eq!(untouched.status.code(), Some(0), "{}", stderr(&untouched));
}

#[test]
fn a_long_trial_shows_progress_on_a_terminal_only_and_the_same_result() {
    let found = Command::new("sh")
        .args(["-c", "command -v script"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("skipped: `script` (util-linux) is not installed to give the trial a terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_receipt-sim");
    let run = |name: &str| {
        let json = dir.path().join(name);
        format!(
            "{bin} run built --set workload.receipts=3000 --json {}",
            json.display()
        )
    };
    let plain = Command::new("sh")
        .args(["-c", &run("plain.json")])
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(0), "{}", stderr(&plain));
    assert!(!stderr(&plain).contains("saved,"), "{}", stderr(&plain));
    // `script` runs the command on a pseudo-terminal and copies what it drew to standard output.
    let on_terminal = Command::new("script")
        .args([
            "-qec",
            &format!("{} >/dev/null", run("terminal.json")),
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert_eq!(on_terminal.status.code(), Some(0));
    let drawn = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(drawn.contains("/3000 saved,"), "{drawn}");
    assert!(drawn.contains("h simulated"), "{drawn}");
    assert_eq!(
        std::fs::read(dir.path().join("plain.json")).unwrap(),
        std::fs::read(dir.path().join("terminal.json")).unwrap(),
        "progress changes nothing the trial does"
    );
}
