//! The ChromaDB client against a real 1.5.9 server: round trips of every operation, and the
//! server's own semantics the model relies on (a missing id in an update, upsert merging metadata,
//! a `null` deleting a key, an add of an existing id).

mod common;
mod live;

use receipt_sim::live::chroma;

use chroma::{
    ChromaClient, ChromaClientOptions, ChromaCollection, CollectionEntries, ErrorKind, GetOptions,
    Metadata,
};
use serde_json::{Value, json};

async fn client() -> Option<ChromaClient> {
    let url = live::server_variable("RECEIPT_SIM_CHROMA_URL")?;
    let client = ChromaClient::new(ChromaClientOptions {
        url: url.clone(),
        ..Default::default()
    })
    .unwrap();
    match client.heartbeat().await {
        Ok(_) => Some(client),
        Err(error) => {
            live::unavailable(&format!(
                "RECEIPT_SIM_CHROMA_URL={url} does not answer: {error}"
            ));
            None
        }
    }
}

fn metadata(value: Value) -> Metadata {
    value.as_object().unwrap().clone()
}

fn entries(
    ids: &[&str],
    embeddings: Option<Vec<Vec<f32>>>,
    metadatas: Option<Vec<Value>>,
) -> CollectionEntries {
    CollectionEntries {
        ids: ids.iter().map(|id| id.to_string()).collect(),
        embeddings,
        metadatas: metadatas.map(|all| all.into_iter().map(metadata).collect()),
        documents: None,
    }
}

async fn metadata_of(collection: &ChromaCollection, id: &str) -> Option<Metadata> {
    let options = GetOptions {
        ids: Some(vec![id.to_string()]),
        include: Some(vec!["metadatas".to_string()]),
        ..Default::default()
    };
    let got = collection.get(&options).await.unwrap();
    got.metadatas.unwrap().into_iter().next().flatten()
}

async fn fresh_collection(client: &ChromaClient) -> ChromaCollection {
    let name = live::unique("test");
    let collection = client.get_or_create_collection(&name, None).await.unwrap();
    let again = client.get_or_create_collection(&name, None).await.unwrap();
    assert_eq!(
        collection.id(),
        again.id(),
        "get-or-create returns the same collection"
    );
    collection
}

#[tokio::test]
async fn round_trips_of_every_operation() {
    let Some(client) = client().await else { return };
    assert!(client.heartbeat().await.unwrap() > 0);
    let collection = fresh_collection(&client).await;
    assert_eq!(
        client.get_collection(collection.name()).await.unwrap().id(),
        collection.id()
    );
    let added = entries(
        &["a", "b", "c"],
        Some(vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.5, 0.5]]),
        Some(vec![
            json!({"label": "TOTAL"}),
            json!({"label": "DATE"}),
            json!({"label": "TAX"}),
        ]),
    );
    collection.add(&added).await.unwrap();
    assert_eq!(collection.count().await.unwrap(), 3);
    let options = GetOptions {
        ids: Some(vec!["b".to_string()]),
        include: Some(vec!["embeddings".to_string(), "metadatas".to_string()]),
        ..Default::default()
    };
    let got = collection.get(&options).await.unwrap();
    assert_eq!(got.ids, ["b"]);
    assert_eq!(got.embeddings.unwrap(), [vec![0.0, 1.0]]);
    assert_eq!(got.metadatas.unwrap()[0].as_ref().unwrap()["label"], "DATE");
    let filtered = GetOptions {
        where_metadata: Some(json!({"label": "TAX"})),
        ..Default::default()
    };
    assert_eq!(collection.get(&filtered).await.unwrap().ids, ["c"]);
    collection
        .delete(Some(vec!["a".to_string()]), None)
        .await
        .unwrap();
    assert_eq!(collection.count().await.unwrap(), 2);
    client.delete_collection(collection.name()).await.unwrap();
    let gone = client.get_collection(collection.name()).await.unwrap_err();
    assert!(
        matches!(gone.kind, ErrorKind::Status { code: 404, .. }),
        "{gone}"
    );
}

#[tokio::test]
async fn missing_ids_merges_and_null_keys() {
    let Some(client) = client().await else { return };
    let collection = fresh_collection(&client).await;
    let start = entries(
        &["a"],
        Some(vec![vec![1.0, 0.0]]),
        Some(vec![json!({"label": "TOTAL", "merchant": "Sprouts"})]),
    );
    collection.add(&start).await.unwrap();
    // An update naming a missing id answers success and creates nothing, even beside a present id.
    let update = entries(
        &["a", "missing"],
        None,
        Some(vec![json!({"status": "valid"}), json!({"status": "valid"})]),
    );
    collection.update(&update).await.unwrap();
    assert_eq!(collection.count().await.unwrap(), 1);
    assert_eq!(metadata_of(&collection, "missing").await, None);
    // The update merged a key into the present id's metadata.
    let merged = metadata_of(&collection, "a").await.unwrap();
    assert_eq!(
        (merged["label"].clone(), merged["status"].clone()),
        (json!("TOTAL"), json!("valid"))
    );
    // An add of an existing id leaves it unchanged.
    let re_add = entries(
        &["a"],
        Some(vec![vec![0.0, 1.0]]),
        Some(vec![json!({"label": "DATE"})]),
    );
    collection.add(&re_add).await.unwrap();
    assert_eq!(
        metadata_of(&collection, "a").await.unwrap()["label"],
        "TOTAL"
    );
    // Upsert merges metadata of an existing id (the 1.x server), and adds a missing one.
    let upsert = entries(
        &["a", "b"],
        Some(vec![vec![1.0, 0.0], vec![0.0, 1.0]]),
        Some(vec![json!({"label": "TAX"}), json!({"label": "DATE"})]),
    );
    collection.upsert(&upsert).await.unwrap();
    let upserted = metadata_of(&collection, "a").await.unwrap();
    assert_eq!(
        (upserted["label"].clone(), upserted["merchant"].clone()),
        (json!("TAX"), json!("Sprouts"))
    );
    assert_eq!(collection.count().await.unwrap(), 2);
    // A null deletes the key.
    let null = entries(&["a"], None, Some(vec![json!({"merchant": null})]));
    collection.update(&null).await.unwrap();
    assert!(
        !metadata_of(&collection, "a")
            .await
            .unwrap()
            .contains_key("merchant")
    );
    client.delete_collection(collection.name()).await.unwrap();
}

#[tokio::test]
async fn a_server_that_is_down_is_an_unreachable_error_soon() {
    // Port 1 on loopback refuses at once; the bounded tries end the wait.
    let options = ChromaClientOptions {
        url: "http://127.0.0.1:1".to_string(),
        ..Default::default()
    };
    let client = ChromaClient::new(options).unwrap();
    let started = std::time::Instant::now();
    let error = client.heartbeat().await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unreachable, "{error}");
    assert!(error.to_string().contains("after 3 tries"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// Calibration against the live server and an in-memory store writes a fragment `run` accepts, with
/// costs taken from the measurements.
#[test]
fn calibration_writes_a_fragment_a_scenario_runs_with() {
    let Some(url) = live::server_variable("RECEIPT_SIM_CHROMA_URL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("costs.toml");
    let out_text = out.to_str().unwrap();
    let json = dir.path().join("costs.json");
    let args = [
        "calibrate",
        "--json",
        json.to_str().unwrap(),
        "--chroma",
        &url,
        "--store",
        "memory://",
        "--out",
        out_text,
        "--sizes",
        "10,100",
        "--dimension",
        "8",
        "--repetitions",
        "2",
    ];
    let output = common::receipt_sim(&args);
    if output.status.code() == Some(3) {
        return live::unavailable(&format!(
            "calibrate could not reach {url}: {}",
            common::stderr(&output)
        ));
    }
    assert!(output.status.success(), "{}", common::stderr(&output));
    let figures: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(figures["command"], "calibrate");
    let sizes = figures["sizes"].as_array().unwrap();
    let ids: Vec<u64> = sizes.iter().map(|s| s["ids"].as_u64().unwrap()).collect();
    assert_eq!(ids, [10, 100]);
    assert!(sizes[1]["snapshot_bytes"].as_u64() > sizes[0]["snapshot_bytes"].as_u64());
    for size in sizes {
        for (name, median) in size["median_ms"].as_object().unwrap() {
            assert!(median.as_f64().unwrap() > 0.0, "{name}: {size}");
        }
    }
    for key in ["store_download_percent", "chroma_get_percent"] {
        assert!(figures["overhead"][key].is_f64(), "{key}: {figures}");
    }
    let fragment = std::fs::read_to_string(&out).unwrap();
    assert!(fragment.contains("download_bytes_per_s = "), "{fragment}");
    assert!(
        fragment.contains("pointer_operation = \"empirical("),
        "{fragment}"
    );
    let scenario = common::write(
        dir.path(),
        "scenario.toml",
        "extends = \"costs.toml\"\n[workload]\nreceipts = 4\n",
    );
    let run = common::receipt_sim(&["run", &scenario]);
    assert!(run.status.success(), "{}", common::stderr(&run));
    assert!(!common::stderr(&output).contains("snapshot sizes ["));
    calibration_shows_progress_on_a_terminal(&url, dir.path());
}

/// On a pseudo-terminal (`script`, util-linux) calibration draws its progress over the sizes.
fn calibration_shows_progress_on_a_terminal(url: &str, dir: &std::path::Path) {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: `script` (util-linux) is not installed to give calibrate a terminal");
        return;
    }
    let command = format!(
        "{} calibrate --chroma {url} --store memory:// --out {} --sizes 10,20 --dimension 8 \
         --repetitions 1 2>&1",
        env!("CARGO_BIN_EXE_receipt-sim"),
        dir.join("terminal.toml").display()
    );
    let on_terminal = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(on_terminal.status.code(), Some(0));
    let drawn = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(drawn.contains("snapshot sizes ["), "{drawn}");
    assert!(drawn.contains("/2"), "{drawn}");
}
