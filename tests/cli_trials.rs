//! Pipeline commands as a user runs them: JSON keys, determinism, comparison, impossible knobs,
//! overload, and a known race found by `hunt` and replayed from its counterexample file alone.

use std::process::{Command, Output};

fn receipt_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_receipt-sim"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn json(args: &[&str]) -> serde_json::Value {
    let output = receipt_sim(args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

fn assert_latency(value: &serde_json::Value) {
    for key in ["p50", "p90", "p99", "max", "count"] {
        assert!(
            value.get(key).is_some_and(|v| v.is_number()),
            "missing {key} in {value}"
        );
    }
}

#[test]
fn run_reports_the_documented_keys_and_is_deterministic() {
    let a = json(&["run", "quick", "--json", "-"]);
    for key in [
        "fingerprint",
        "events",
        "receipts",
        "never_visible",
        "dead_lettered",
        "lock_failures",
        "scenario",
    ] {
        assert!(a.get(key).is_some(), "missing {key}");
    }
    assert_latency(&a["latency_ms"]["labels_saved"]);
    assert_latency(&a["latency_ms"]["labels_visible"]);
    assert!(a["anomalies"]["by_class"]["L"].as_u64().is_some());
    assert!(a["anomalies"]["receipts_affected"].as_u64().is_some());
    assert_eq!(a["receipts"], 12);
    assert_eq!(
        a["latency_ms"]["labels_saved"]["count"], 12,
        "every receipt's labels were saved"
    );
    let b = json(&["run", "quick", "--json", "-"]);
    assert_eq!(a["fingerprint"], b["fingerprint"]);
    let c = json(&["run", "quick", "--seed", "2", "--json", "-"]);
    assert_ne!(a["fingerprint"], c["fingerprint"]);
}

#[test]
fn compare_nests_both_flows_and_pairs_them() {
    let value = json(&["compare", "quick", "--json", "-"]);
    for flow in ["old", "new"] {
        assert!(value[flow]["fingerprint"].is_string());
        assert_latency(&value[flow]["latency_ms"]["labels_saved"]);
    }
    assert_eq!(value["old"]["flow"], "old");
    assert_eq!(value["new"]["flow"], "new");
    let saved = &value["paired"]["labels_saved"];
    assert_eq!(saved["count"], 12);
    // The built profile's old flow always waits the full 120 s cap, so the new flow saves labels
    // sooner for every receipt.
    assert!(saved["mean"].as_f64().unwrap() < -100_000.0, "{saved}");
    assert_eq!(saved["new_faster_share"], 1.0);
}

#[test]
fn history_is_json_lines_of_ordered_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let output = receipt_sim(&["run", "quick", "--history", path.to_str().unwrap()]);
    assert!(output.status.success());
    let text = std::fs::read_to_string(&path).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records.len() > 50);
    let times: Vec<f64> = records
        .iter()
        .map(|r| r["at_s"].as_f64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "records are in time order"
    );
    assert!(
        records
            .iter()
            .any(|r| r["event"] == "arrival" && r["actor"] == "workload")
    );
    assert!(records.iter().any(|r| r["event"] == "labels_saved"));
}

#[test]
fn impossible_knobs_exit_2_naming_the_field() {
    for (set, field) in [
        (
            "compaction.reserved_concurrency=0",
            "compaction.reserved_concurrency",
        ),
        ("queues.receive_limit=0", "queues.receive_limit"),
        ("workload.rate_per_hour=-1", "workload.rate_per_hour"),
    ] {
        let output = receipt_sim(&["run", "quick", "--set", set]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{set}: {stderr}");
        assert!(stderr.contains(field), "{set}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn an_overloaded_configuration_stops_at_its_horizon() {
    let value = json(&[
        "run",
        "quick",
        "--set",
        "workload.receipts=300",
        "--set",
        "workload.arrival=bursts",
        "--set",
        "workload.bursts=[{at = \"0s\", receipts = 300}]",
        "--set",
        "horizon=10m",
        "--json",
        "-",
    ]);
    assert_eq!(value["stop"], "horizon");
    let in_flight = value["in_flight"]["receipts"].as_u64().unwrap();
    let backlog = value["backlog"]["upload_queue"].as_u64().unwrap();
    assert!(
        in_flight + backlog > 0,
        "work remains at the horizon: {}",
        value["backlog"]
    );
}

#[test]
fn hunt_finds_the_dropped_label_race_and_its_counterexample_replays() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let output = receipt_sim(&[
        "hunt", "hunt", "--trials", "300", "--out", out, "--json", "-",
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "hunt exits 1 when it finds a race"
    );
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["trials"], 300);
    assert!(value["anomalies"]["by_class"]["L"].as_u64().unwrap() > 0);
    let kinds = value["anomalies"]["kinds"].as_array().unwrap();
    let dropped = kinds
        .iter()
        .find(|k| k["class"] == "L" && k["cause"] == "label_insert_not_forwarded")
        .expect("the built profile drops new labels");
    let share = dropped["share_ci95"].as_array().unwrap();
    assert!(share[0].as_f64().unwrap() > 0.5, "{dropped}");
    let file = dropped["counterexample"].as_str().unwrap().to_string();
    assert_eq!(
        dropped["counterexample_receipts"], 1,
        "shrunk to a single receipt"
    );
    let counterexamples = value["counterexamples"].as_array().unwrap();
    assert_eq!(counterexamples.len(), kinds.len());

    let replay = receipt_sim(&["replay", &file]);
    let stdout = String::from_utf8_lossy(&replay.stdout);
    assert_eq!(
        replay.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert!(stdout.contains("same as recorded"), "{stdout}");
    assert!(
        stdout.contains("table_write"),
        "the excerpt shows the label write: {stdout}"
    );

    // A tampered file does not reproduce.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut tampered: serde_json::Value = serde_json::from_str(&text).unwrap();
    tampered["fingerprint"] = serde_json::json!("0000000000000000");
    let path = dir.path().join("tampered.json");
    std::fs::write(&path, serde_json::to_vec(&tampered).unwrap()).unwrap();
    let replay = receipt_sim(&["replay", path.to_str().unwrap()]);
    assert_eq!(replay.status.code(), Some(1));
}

#[test]
fn receipts_written_and_replayed_give_the_same_trial() {
    let dir = tempfile::tempdir().unwrap();
    let receipts = dir.path().join("receipts.jsonl");
    let output = receipt_sim(&["receipts", "quick", "--out", receipts.to_str().unwrap()]);
    assert!(output.status.success());
    assert_eq!(
        std::fs::read_to_string(&receipts).unwrap().lines().count(),
        12
    );
    let generated = json(&["run", "quick", "--json", "-"]);
    let source = format!("workload.source={{file = \"{}\"}}", receipts.display());
    let replayed = json(&["run", "quick", "--set", &source, "--json", "-"]);
    assert_eq!(generated["fingerprint"], replayed["fingerprint"]);
}
