//! The command line as a user meets it: scenario errors, exit codes, JSON exports, determinism.

mod common;

use common::{assert_bad_input, receipt_sim, stderr, write};

const SMALL_MMC: [&str; 4] = [
    "--set",
    "mmc.customers=20000",
    "--set",
    "mmc.replications=4",
];

fn mmc_json(extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["run", "mmc", "--json", "-"];
    args.extend_from_slice(&SMALL_MMC);
    args.extend_from_slice(extra);
    let output = receipt_sim(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

#[test]
fn mmc_json_has_the_documented_keys() {
    let json = mmc_json(&[]);
    for key in [
        "model",
        "wq_mean",
        "wq_ci95",
        "erlang_c_wq",
        "little_law_max_abs_error",
        "replications",
        "customers",
        "fingerprint",
        "events",
        "seed",
        "scenario",
    ] {
        assert!(json.get(key).is_some(), "missing key {key} in {json}");
    }
    assert_eq!(json["model"], "mmc");
    assert_eq!(json["replications"], 4);
    assert_eq!(json["scenario"]["mmc"]["customers"], 20000);
    let wq = json["wq_mean"].as_f64().unwrap();
    let theory = json["erlang_c_wq"].as_f64().unwrap();
    assert!(
        (wq / theory - 1.0).abs() < 0.25,
        "wq {wq} vs Erlang C {theory}"
    );
    assert!(json["little_law_max_abs_error"].as_f64().unwrap().abs() < 1e-9);
}

#[test]
fn same_seed_same_fingerprint_other_seed_other_fingerprint() {
    let a = mmc_json(&["--seed", "11"]);
    let b = mmc_json(&["--seed", "11"]);
    let c = mmc_json(&["--seed", "12"]);
    assert_eq!(a["fingerprint"], b["fingerprint"]);
    assert_eq!(a["events"], b["events"]);
    assert_ne!(a["fingerprint"], c["fingerprint"]);
}

#[test]
fn malformed_scenario_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "broken.toml",
        "model = \"mmc\"\n[mmc]\nservers = \n",
    );
    let output = receipt_sim(&["run", &path]);
    assert_bad_input(&output, &["broken.toml:3:"]);
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = "model = \"mmc\"\nseed = 1\n[mmc]\nservers = 4\nservrs = 4\narrival_rate = 3.6\n\
                service_rate = 1.0\ncustomers = 1000\nreplications = 2\nwarmup_fraction = 0.1\n";
    let path = write(dir.path(), "typo.toml", text);
    let output = receipt_sim(&["run", &path]);
    assert_bad_input(&output, &["typo.toml:5", "mmc.servrs", "unknown field"]);
}

#[test]
fn unknown_field_in_an_override_names_the_override() {
    let output = receipt_sim(&["run", "mmc", "--set", "mmc.severs=2"]);
    assert_bad_input(&output, &["--set mmc.severs=2", "mmc.severs"]);
}

#[test]
fn impossible_parameters_are_rejected_by_field() {
    let output = receipt_sim(&["run", "mmc", "--set", "mmc.servers=0"]);
    assert_bad_input(&output, &["mmc.servers"]);
    let output = receipt_sim(&["run", "mmc", "--set", "mmc.arrival_rate=-1"]);
    assert_bad_input(&output, &["mmc.arrival_rate"]);
    let output = receipt_sim(&["run", "mmc", "--set", "mmc.arrival_rate=4.5"]);
    assert_bad_input(&output, &["mmc."]);
}

#[test]
fn missing_scenario_and_bad_export_path_fail_before_any_work() {
    let output = receipt_sim(&["run", "no-such-scenario.toml"]);
    assert_bad_input(&output, &["no-such-scenario.toml"]);
    let output = receipt_sim(&["run", "mmc", "--json", "/no/such/folder/out.json"]);
    assert_bad_input(&output, &["--export-json", "/no/such/folder/out.json"]);
}

#[test]
fn export_file_is_complete_json_and_extends_merges_a_base() {
    let dir = tempfile::tempdir().unwrap();
    let base = "model = \"mmc\"\nseed = 3\n[mmc]\nservers = 2\narrival_rate = 1.0\nservice_rate = 1.0\n\
                customers = 5000\nreplications = 2\nwarmup_fraction = 0.0\n";
    write(dir.path(), "base.toml", base);
    let child = write(
        dir.path(),
        "child.toml",
        "extends = \"base.toml\"\n[mmc]\nservers = 3\n",
    );
    let out = dir.path().join("result.json");
    let output = receipt_sim(&["run", &child, "--export-json", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(json["scenario"]["mmc"]["servers"], 3);
    assert_eq!(json["scenario"]["mmc"]["customers"], 5000);
    assert_eq!(json["seed"], 3);
}

/// The `[live]` table: `scenario` prints its fields, an unknown one is refused by line, a bad
/// value by field, and `live` without a Chroma server from either the flag or the table is bad
/// input (exit 2) before any connection.
#[test]
fn the_live_table_is_printed_checked_and_required_for_a_server() {
    let output = receipt_sim(&["scenario", "quick", "--set", "live.timing=real"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    let table = text.split("[live]\n").nth(1).expect("a [live] table");
    for line in [
        "chroma = \"\"",
        "store = \"memory://\"",
        "timing = \"real\"  # default: \"model\"",
        "time_scale = 1.0",
        "dimension = 16",
    ] {
        assert!(table.contains(line), "`{line}` missing from:\n{table}");
    }
    let dir = tempfile::tempdir().unwrap();
    let text = "extends = \"quick\"\n[live]\nchroma = \"http://127.0.0.1:1\"\nchrome = \"x\"\n";
    let path = write(dir.path(), "typo.toml", text);
    let output = receipt_sim(&["live", &path]);
    assert_bad_input(&output, &["typo.toml:4", "live.chrome", "unknown field"]);
    let output = receipt_sim(&["live", "quick", "--set", "live.time_scale=0"]);
    assert_bad_input(&output, &["live.time_scale"]);
    let output = receipt_sim(&["live", "quick", "--set", "live.timing=later"]);
    assert_bad_input(&output, &["live.timing"]);
    let output = receipt_sim(&["live", "quick"]);
    assert_bad_input(&output, &["--chroma", "live.chroma"]);
}
