//! A live trial in model timing: `live quick` against the running ChromaDB and each store (memory,
//! local files, SeaweedFS's S3) takes the pure simulation's decisions: the same fingerprint and
//! anomalies as `run quick` with the same seed, every server answer the models' answer, and the
//! final snapshots read back from the real store holding what the models' do.

mod common;
mod live;

use serde_json::Value;

fn export(args: &[&str], environment: &[(&str, String)]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("result.json");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--seed", "7", "--json", json.to_str().unwrap()]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_receipt-sim"))
        .args(&all)
        .envs(
            environment
                .iter()
                .map(|(key, value)| (*key, value.as_str())),
        )
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        common::stderr(&output)
    );
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

/// What must agree between a pure and a live trial: the history's fingerprint, its event count,
/// and every anomaly's class, cause, receipt, collection and ids.
fn decisions(result: &Value) -> (Value, Value, Vec<Value>) {
    let anomalies = result["anomalies"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|anomaly| {
            serde_json::json!([
                anomaly["class"],
                anomaly["cause"],
                anomaly["receipt"],
                anomaly["collection"],
                anomaly["ids"],
                anomaly["id_count"]
            ])
        })
        .collect();
    (
        result["fingerprint"].clone(),
        result["events"].clone(),
        anomalies,
    )
}

fn assert_same_as_simulation(store: &str, environment: &[(&str, String)], sets: &[&str]) {
    let Some(chroma) = live::server_variable("RECEIPT_SIM_CHROMA_URL") else {
        return;
    };
    let mut run = vec!["run", "quick"];
    let mut live = vec!["live", "quick", "--chroma", &chroma, "--store", store];
    for set in sets {
        run.extend(["--set", set]);
        live.extend(["--set", set]);
    }
    let pure = export(&run, &[]);
    let live = export(&live, environment);
    assert_eq!(live["command"], "live");
    assert_eq!(decisions(&live), decisions(&pure), "{store}");
    assert!(
        !pure["anomalies"]["list"].as_array().unwrap().is_empty(),
        "quick on the built profile shows anomalies, so the comparison compares something"
    );
    let section = &live["live"];
    assert_eq!(section["divergences"]["count"], 0, "{store}: {section}");
    assert_eq!(section["backend_errors"], 0, "{store}: {section}");
    for collection in ["lines", "words"] {
        let real = &section["snapshots"][collection];
        assert_eq!(real, &section["model_snapshots"][collection], "{store}");
        assert!(real["entries"].as_u64().unwrap() > 0, "{store}: {real}");
    }
    assert!(
        section["operations"]["collection_load"]["calls"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn live_quick_in_memory_matches_the_simulation() {
    assert_same_as_simulation("memory://", &[], &[]);
}

#[test]
fn live_quick_on_local_files_matches_the_simulation() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    assert_same_as_simulation(&url, &[], &[]);
}

/// The SeaweedFS endpoint's store URL and environment, or `None` when skipped.
fn seaweedfs() -> Option<(String, Vec<(&'static str, String)>)> {
    let endpoint = live::server_variable("RECEIPT_SIM_S3_SEAWEED_ENDPOINT")?;
    let variable =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
    let bucket = variable("RECEIPT_SIM_S3_BUCKET", "receipt-sim");
    let environment = vec![
        ("AWS_ENDPOINT_URL", endpoint),
        (
            "AWS_ACCESS_KEY_ID",
            variable("RECEIPT_SIM_S3_ACCESS_KEY_ID", ""),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            variable("RECEIPT_SIM_S3_SECRET_ACCESS_KEY", ""),
        ),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
    ];
    Some((format!("s3://{bucket}"), environment))
}

#[test]
fn live_quick_on_seaweedfs_matches_the_simulation() {
    if let Some((store, environment)) = seaweedfs() {
        assert_same_as_simulation(&store, &environment, &[]);
    }
}

/// With the pointer promoted by compare-and-swap, the servers' etags stand behind the handles
/// the compaction holds, and the models' compare-and-swap still compares the models' own.
#[test]
fn live_quick_with_compare_and_swap_on_seaweedfs_matches_the_simulation() {
    if let Some((store, environment)) = seaweedfs() {
        let sets = ["compaction.pointer_promotion=cas", "workload.receipts=16"];
        assert_same_as_simulation(&store, &environment, &sets);
    }
}

/// `live quick` on the in-memory store in real timing at scale 1000, with `extra` flags.
fn export_real_timing(chroma: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "live",
        "quick",
        "--chroma",
        chroma,
        "--store",
        "memory://",
        "--timing",
        "real",
        "--time-scale",
        "1000",
    ];
    args.extend_from_slice(extra);
    export(&args, &[])
}

/// A live trial in real timing: each object-store and Chroma operation's measured wall time,
/// times the scale, is its virtual duration. The trial completes and is judged, every operation
/// kind it performed has its measured durations in the export, and the delta upload stage took
/// no more virtual time than the delta writes were measured to take, scaled (the model would
/// have charged its own distribution's hundreds of milliseconds at scale 1).
#[test]
fn live_quick_in_real_timing_records_measured_durations() {
    let Some(chroma) = live::server_variable("RECEIPT_SIM_CHROMA_URL") else {
        return;
    };
    let scale = 1000.0;
    let result = export_real_timing(&chroma, &[]);
    let section = &result["live"];
    assert_eq!(section["timing"], "real");
    assert_eq!(section["time_scale"], scale);
    assert_eq!(section["backend_errors"], 0, "{section}");
    assert_eq!(
        result["anomalies"]["receipts_checked"], result["receipts"],
        "the oracle judged every receipt"
    );
    let operations = section["operations"].as_object().unwrap();
    for name in [
        "delta_put",
        "delta_get",
        "pointer_read",
        "pointer_write",
        "snapshot_put",
        "collection_load",
        "collection_upsert",
        "collection_export",
    ] {
        let operation = &operations[name];
        assert!(
            operation["calls"].as_u64().unwrap() > 0,
            "{name}: {operation}"
        );
        for figure in ["median_ms", "p90_ms", "max_ms"] {
            assert!(
                operation[figure].as_f64().unwrap() > 0.0,
                "{name}: {operation}"
            );
        }
    }
    let delta_put_ms = operations["delta_put"]["seconds"].as_f64().unwrap() * 1000.0;
    let stage = &result["latency_ms"]["stages"]["delta_upload"];
    let stage_max_ms = stage["max"].as_f64().unwrap();
    assert!(stage_max_ms > 0.0, "{stage}");
    assert!(
        stage_max_ms <= delta_put_ms * scale + 0.001,
        "a delta upload stage of {stage_max_ms} ms, from {delta_put_ms} ms of delta writes"
    );
}

/// A live trial in real timing with a burst of receipts, so that several compaction invocations
/// run at once: their working-copy operations are in flight together on the servers (the live
/// performer saw at least two at once), and the trial completes, every receipt judged.
#[test]
fn concurrent_invocations_have_operations_in_flight_at_once_in_real_timing() {
    let Some(chroma) = live::server_variable("RECEIPT_SIM_CHROMA_URL") else {
        return;
    };
    let result = export_real_timing(&chroma, &["--set", "workload.rate_per_hour=7200"]);
    let section = &result["live"];
    assert_eq!(section["backend_errors"], 0, "{section}");
    let in_flight_max = section["operations_in_flight_max"].as_u64().unwrap();
    assert!(
        in_flight_max >= 2,
        "at most {in_flight_max} in flight: {section}"
    );
    assert_eq!(
        result["anomalies"]["receipts_checked"], result["receipts"],
        "the oracle judged every receipt"
    );
    let operations = section["operations"].as_object().unwrap();
    for name in ["collection_upsert", "collection_load", "pointer_write"] {
        assert!(operations[name]["calls"].as_u64().unwrap() > 0, "{name}");
    }
}

/// The backends and timing written in the scenario's `[live]` table are the trial's, and a flag
/// overrides its field.
#[test]
fn the_scenario_names_the_backends_and_flags_override_them() {
    let Some(chroma) = live::server_variable("RECEIPT_SIM_CHROMA_URL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file://{}", dir.path().join("store").display());
    let text = format!(
        "extends = \"quick\"\n[live]\nchroma = \"{chroma}\"\nstore = \"{store}\"\n\
         timing = \"real\"\ntime_scale = 10\ndimension = 8\n"
    );
    let scenario = dir.path().join("backends.toml");
    std::fs::write(&scenario, text).unwrap();
    let scenario = scenario.to_str().unwrap();
    let result = export(&["live", scenario], &[]);
    let section = &result["live"];
    assert_eq!(section["chroma"], chroma.as_str());
    assert_eq!(section["store"], store.as_str());
    assert_eq!(section["timing"], "real");
    assert_eq!(section["time_scale"], 10.0);
    assert_eq!(section["dimension"], 8);
    assert!(
        dir.path()
            .join("store")
            .read_dir()
            .unwrap()
            .next()
            .is_some(),
        "the trial wrote to the scenario's store"
    );
    let args = [
        "live",
        scenario,
        "--timing",
        "model",
        "--store",
        "memory://",
    ];
    let overridden = export(&args, &[]);
    assert_eq!(overridden["live"]["timing"], "model");
    assert_eq!(overridden["live"]["store"], "memory://");
    assert_eq!(overridden["live"]["time_scale"], 10.0);
    let pure = export(&["run", "quick"], &[]);
    assert_eq!(decisions(&overridden), decisions(&pure));
}

/// A store failing a seeded share of its operations: each failure is the effect's failure in the
/// models' terms, counted, and the trial finishes and is judged. A store delaying every operation:
/// in real timing each operation's measured duration holds the delay.
#[test]
fn a_faulty_store_fails_effects_counted_and_a_slow_one_is_measured() {
    let Some(chroma) = live::server_variable("RECEIPT_SIM_CHROMA_URL") else {
        return;
    };
    let base = ["live", "quick", "--chroma", &chroma, "--store", "memory://"];
    let mut failing = base.to_vec();
    failing.extend(["--set", "live.store_error_share=0.2"]);
    let result = export(&failing, &[]);
    let section = &result["live"];
    assert!(section["backend_errors"].as_u64().unwrap() > 0, "{section}");
    let first = section["first_backend_error"].as_str().unwrap();
    assert!(first.contains("injected failure"), "{first}");
    assert!(section["divergences"]["count"].as_u64().unwrap() > 0);
    assert_ne!(result["stop"], "event_limit");
    assert_eq!(result["anomalies"]["receipts_checked"], result["receipts"]);
    let again = export(&failing, &[]);
    assert_eq!(
        again["live"]["backend_errors"], section["backend_errors"],
        "the same seed injects the same faults"
    );
    assert_eq!(decisions(&again), decisions(&result));

    let mut slow = base.to_vec();
    slow.extend([
        "--timing",
        "real",
        "--set",
        "live.store_delay_share=1",
        "--set",
        "live.store_delay=20ms",
    ]);
    let result = export(&slow, &[]);
    let operations = &result["live"]["operations"];
    for name in ["delta_put", "delta_get", "snapshot_put", "pointer_read"] {
        let median = operations[name]["median_ms"].as_f64().unwrap();
        assert!(median >= 20.0, "{name}: {}", operations[name]);
    }
    assert_eq!(result["live"]["backend_errors"], 0);
}

/// Every `records.rsim` object under `dir`, recursively (bounded depth).
fn snapshot_files(dir: &std::path::Path, depth: u32, found: &mut Vec<std::path::PathBuf>) {
    if depth == 0 {
        return;
    }
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            snapshot_files(&path, depth - 1, found);
        } else if path.file_name().is_some_and(|name| name == "records.rsim") {
            found.push(path);
        }
    }
}

/// A live trial ended by SIGTERM midway leaves no export (nor any temporary beside it), and a
/// store as the real pipeline would: each pointer names a snapshot whose object is complete, and
/// every snapshot uploaded (promoted or not) decodes whole.
#[test]
fn an_interrupted_live_trial_leaves_no_export_and_a_consistent_store() {
    use receipt_sim::live::{codec, store::Store};
    use sim::entities::Collection;
    let Some(chroma) = live::server_variable("RECEIPT_SIM_CHROMA_URL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let url = format!("file://{}", root.display());
    let exports = dir.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    let json = exports.join("result.json");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_receipt-sim"))
        .args(["live", "quick", "--chroma", &chroma, "--store", &url])
        .args(["--timing", "real", "--set", "live.store_delay_share=1"])
        .args(["--set", "live.store_delay=30ms", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "ended by the signal, midway");
    let left: Vec<_> = std::fs::read_dir(&exports).unwrap().collect();
    assert!(left.is_empty(), "no export and no temporary: {left:?}");

    let runs: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().collect();
    assert_eq!(runs.len(), 1, "one trial's prefix");
    let run = runs[0].file_name().to_string_lossy().into_owned();
    let objects = Store::open(&url).unwrap().under(&run);
    let resolution = sim::pipeline::PipelineConfig::default()
        .compaction
        .version_id_resolution;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut promoted = 0;
    for collection in Collection::ALL {
        let pointer = objects.under(collection.name());
        let read = runtime.block_on(pointer.read_pointer()).unwrap();
        let version: u64 = read
            .value
            .expect("set up before the trial")
            .parse()
            .unwrap();
        promoted += u32::from(version != 0);
        let key = sim::services::object_store::VersionId(version).key(collection, resolution);
        let bytes = runtime
            .block_on(objects.get(&format!("{key}records.rsim")))
            .unwrap_or_else(|error| panic!("the pointer names a missing snapshot: {error}"));
        let records = codec::decode(&bytes).unwrap();
        assert_eq!(records.kind, codec::Kind::Snapshot);
    }
    assert!(promoted > 0, "the signal came after a promotion");
    let mut snapshots = Vec::new();
    snapshot_files(&root.join(&run), 8, &mut snapshots);
    assert!(snapshots.len() > 2, "{snapshots:?}");
    for path in snapshots {
        let bytes = std::fs::read(&path).unwrap();
        codec::decode(&bytes).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    }
}
