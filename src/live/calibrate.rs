//! Calibration: measures the data-plane operations against a real object store and ChromaDB over a
//! range of snapshot sizes, and writes a scenario fragment whose cost distributions (the fields of
//! `[store]` and `[compaction]`) a scenario takes with `extends`.
//!
//! Per size: snapshot upload (create-if-absent) and download, pointer read and promotion, a delta
//! get, and Chroma get, update and upsert batches on a collection holding the snapshot's records.
//! Transfer costs are fitted as a fixed part plus bytes over a rate (least squares over the sizes'
//! medians); per-operation costs are written as the empirical distribution of the samples. The
//! harness's own overhead is measured side by side: the same operations issued bare (straight to
//! `object_store` and reqwest, one clock around the block) and through this harness (its client and
//! store, a clock around each operation).
//!
//! Depends on `chroma`, `store`, `codec`, `failure` and `parallel` (the progress bar).

use super::chroma::{
    ChromaClient, ChromaClientOptions, ChromaCollection, CollectionEntries, GetOptions, Metadata,
};
use super::codec::{self, Kind};
use super::store::Store;
use crate::failure::Failure;
use object_store::ObjectStoreExt;
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Instant;

/// Ids per Chroma batch (get, update, upsert), as the compaction applies a batch's messages.
pub const CHROMA_BATCH_IDS: usize = 100;
/// Ids per add while loading a collection.
const LOAD_BATCH_IDS: usize = 1000;
/// Records in a delta: about one receipt's words.
const DELTA_IDS: usize = 100;
/// Side-by-side pairs of Chroma gets per repetition (they take milliseconds: many pairs are cheap).
const OVERHEAD_PAIRS: usize = 8;
pub const SIZES_MAX: usize = 16;
pub const SIZE_IDS_MAX: usize = 1_000_000;

pub struct CalibrateFlags {
    pub chroma: String,
    pub store: String,
    pub sizes: Vec<usize>,
    pub dimension: u32,
    pub repetitions: usize,
}

/// The samples of one size, in seconds.
#[derive(Default)]
struct SizeSamples {
    ids: usize,
    snapshot_bytes: usize,
    upload: Vec<f64>,
    download: Vec<f64>,
    pointer_read: Vec<f64>,
    pointer_write: Vec<f64>,
    delta_get: Vec<f64>,
    chroma_load: f64,
    chroma_get: Vec<f64>,
    chroma_update: Vec<f64>,
    chroma_upsert: Vec<f64>,
}

/// Bare and harness samples of the same operations, measured in pairs, in seconds.
#[derive(Default)]
struct Overhead {
    store_bare: Vec<f64>,
    store_harness: Vec<f64>,
    chroma_bare: Vec<f64>,
    chroma_harness: Vec<f64>,
}

pub struct Calibration {
    /// The scenario fragment.
    pub toml: String,
    /// A table for the terminal.
    pub summary: String,
    /// The same figures, machine-readable (`figures`).
    pub json: Value,
}

fn backend(error: impl std::fmt::Display) -> Failure {
    Failure::backend(error.to_string())
}

pub fn calibrate(flags: &CalibrateFlags) -> Result<Calibration, Failure> {
    assert!(!flags.sizes.is_empty() && flags.sizes.len() <= SIZES_MAX);
    assert!(flags.repetitions >= 1);
    let store = Store::open(&flags.store).map_err(Failure::bad_input)?;
    let options = ChromaClientOptions {
        url: flags.chroma.clone(),
        ..Default::default()
    };
    let client = ChromaClient::new(options).map_err(backend)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::backend(format!("cannot start the I/O runtime: {error}")))?;
    runtime.block_on(async {
        store.probe().await.map_err(backend)?;
        client.heartbeat().await.map_err(backend)?;
        let run = format!("calibration-{}", std::process::id());
        let store = store.under(&run);
        let mut sizes = Vec::with_capacity(flags.sizes.len());
        let mut overhead = Overhead::default();
        let bar = crate::parallel::progress(flags.sizes.len() as u64, "snapshot sizes");
        bar.tick();
        for &ids in &flags.sizes {
            sizes.push(measure_size(flags, &store, &client, &run, ids, &mut overhead).await?);
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(Calibration {
            toml: fragment(flags, &sizes, &overhead),
            summary: summary(&sizes, &overhead),
            json: figures(flags, &sizes, &overhead),
        })
    })
}

async fn timed<T, E>(
    samples: &mut Vec<f64>,
    operation: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = operation.await;
    samples.push(started.elapsed().as_secs_f64());
    result
}

async fn measure_size(
    flags: &CalibrateFlags,
    store: &Store,
    client: &ChromaClient,
    run: &str,
    ids: usize,
    overhead: &mut Overhead,
) -> Result<SizeSamples, Failure> {
    let snapshot = codec::synthetic(Kind::Snapshot, ids, flags.dimension, ids as u64);
    let bytes = codec::encode(&snapshot);
    let mut samples = SizeSamples {
        ids,
        snapshot_bytes: bytes.len(),
        ..Default::default()
    };
    measure_store(flags, store, &bytes, &mut samples, overhead).await?;
    let collection = client
        .get_or_create_collection(&format!("{run}-{ids}"), None)
        .await
        .map_err(backend)?;
    let loaded = load(&collection, &snapshot).await;
    samples.chroma_load = loaded?;
    let measured = measure_chroma(
        flags,
        client,
        &collection,
        &snapshot,
        &mut samples,
        overhead,
    )
    .await;
    client
        .delete_collection(collection.name())
        .await
        .map_err(backend)?;
    measured?;
    Ok(samples)
}

async fn measure_store(
    flags: &CalibrateFlags,
    store: &Store,
    bytes: &[u8],
    samples: &mut SizeSamples,
    overhead: &mut Overhead,
) -> Result<(), Failure> {
    let ids = samples.ids;
    let delta = codec::encode(&codec::synthetic(
        Kind::Delta,
        DELTA_IDS,
        flags.dimension,
        7,
    ));
    store
        .put_immutable(&format!("delta/{ids}"), delta)
        .await
        .map_err(backend)?;
    for repetition in 0..flags.repetitions {
        let key = format!("snapshot/{ids}/{repetition}");
        let created = timed(
            &mut samples.upload,
            store.put_immutable(&key, bytes.to_vec()),
        )
        .await;
        assert!(created.map_err(backend)?, "{key} is fresh");
        let downloaded = timed(&mut samples.download, store.get(&key))
            .await
            .map_err(backend)?;
        assert_eq!(downloaded.len(), bytes.len());
        let pointer = timed(&mut samples.pointer_read, store.read_pointer())
            .await
            .map_err(backend)?;
        timed(&mut samples.pointer_write, store.promote(&pointer, &key))
            .await
            .map_err(backend)?;
        timed(&mut samples.delta_get, store.get(&format!("delta/{ids}")))
            .await
            .map_err(backend)?;
        // Side by side, in alternating order: the same download bare and through the harness.
        let path = object_store::path::Path::from(key.as_str());
        let bare = async { store.inner().get(&path).await?.bytes().await };
        let harness = store.get(&key);
        let (bare, bare_s, harness, harness_s) = pair(repetition % 2 == 0, bare, harness).await;
        bare.map_err(|error| Failure::backend(format!("store {}: {error}", store.url())))?;
        harness.map_err(backend)?;
        overhead.store_bare.push(bare_s);
        overhead.store_harness.push(harness_s);
    }
    let decoded = codec::decode(
        &store
            .get(&format!("snapshot/{ids}/0"))
            .await
            .map_err(backend)?,
    );
    assert_eq!(decoded.map(|records| records.records.len()).ok(), Some(ids));
    Ok(())
}

fn entries(records: &[codec::Record], with_embeddings: bool) -> CollectionEntries {
    let metadatas = records.iter().map(record_metadata).collect();
    CollectionEntries {
        ids: records.iter().map(|record| record.id.clone()).collect(),
        embeddings: with_embeddings.then(|| {
            records
                .iter()
                .map(|record| record.embedding.clone())
                .collect()
        }),
        metadatas: Some(metadatas),
        documents: None,
    }
}

fn record_metadata(record: &codec::Record) -> Metadata {
    record
        .metadata
        .iter()
        .map(|(key, value)| {
            let value = match value {
                codec::MetaValue::Text(text) => Value::from(text.as_str()),
                codec::MetaValue::Integer(number) => Value::from(*number),
                codec::MetaValue::Float(number) => Value::from(*number),
                codec::MetaValue::Bool(flag) => Value::from(*flag),
            };
            (key.clone(), value)
        })
        .collect()
}

/// Loads the snapshot's records into the collection; returns the seconds it took.
async fn load(collection: &ChromaCollection, snapshot: &codec::Records) -> Result<f64, Failure> {
    let started = Instant::now();
    for chunk in snapshot.records.chunks(LOAD_BATCH_IDS) {
        collection
            .add(&entries(chunk, true))
            .await
            .map_err(backend)?;
    }
    let count = collection.count().await.map_err(backend)?;
    if count != snapshot.records.len() {
        return Err(Failure::backend(format!(
            "chroma collection {} holds {count} ids after adding {}",
            collection.name(),
            snapshot.records.len()
        )));
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn measure_chroma(
    flags: &CalibrateFlags,
    client: &ChromaClient,
    collection: &ChromaCollection,
    snapshot: &codec::Records,
    samples: &mut SizeSamples,
    overhead: &mut Overhead,
) -> Result<(), Failure> {
    let batch_ids = CHROMA_BATCH_IDS.min(snapshot.records.len());
    let bare_http = reqwest::Client::new();
    // The bare client opens its connection before it is measured, as the harness's has.
    let warm = bare_http.get(format!("{}/api/v2/heartbeat", client.url()));
    warm.send()
        .await
        .map_err(|error| Failure::backend(format!("chroma at {}: {error}", client.url())))?;
    for repetition in 0..flags.repetitions {
        let start = (repetition * batch_ids) % (snapshot.records.len() - batch_ids + 1);
        let batch = &snapshot.records[start..start + batch_ids];
        let ids: Vec<String> = batch.iter().map(|record| record.id.clone()).collect();
        let get = GetOptions {
            ids: Some(ids.clone()),
            include: Some(vec!["metadatas".to_string()]),
            ..Default::default()
        };
        let got = timed(&mut samples.chroma_get, collection.get(&get))
            .await
            .map_err(backend)?;
        assert_eq!(got.ids.len(), batch_ids);
        let update = entries(batch, false);
        timed(&mut samples.chroma_update, collection.update(&update))
            .await
            .map_err(backend)?;
        timed(
            &mut samples.chroma_upsert,
            collection.upsert(&entries(batch, true)),
        )
        .await
        .map_err(backend)?;
        side_by_side_get(client, collection, &bare_http, &get, overhead).await?;
    }
    Ok(())
}

/// The same get, `OVERHEAD_PAIRS` times as one bare request and through the client, in
/// alternating order.
async fn side_by_side_get(
    client: &ChromaClient,
    collection: &ChromaCollection,
    bare_http: &reqwest::Client,
    get: &GetOptions,
    overhead: &mut Overhead,
) -> Result<(), Failure> {
    let url = format!(
        "{}/api/v2/tenants/default_tenant/databases/default_database/collections/{}/get",
        client.url(),
        collection.id()
    );
    let body = serde_json::to_vec(get).expect("get options serialise");
    for pair_index in 0..OVERHEAD_PAIRS {
        let bare = async {
            let request = bare_http
                .post(&url)
                .header("content-type", "application/json");
            request.body(body.clone()).send().await?.bytes().await
        };
        let harness = collection.get(get);
        let (bare, bare_s, harness, harness_s) = pair(pair_index % 2 == 0, bare, harness).await;
        bare.map_err(|error| Failure::backend(format!("chroma at {}: {error}", client.url())))?;
        harness.map_err(backend)?;
        overhead.chroma_bare.push(bare_s);
        overhead.chroma_harness.push(harness_s);
    }
    Ok(())
}

/// Awaits two operations one after the other (futures start when awaited), `bare` first if asked,
/// and returns each one's result and seconds.
async fn pair<B: Future, H: Future>(
    bare_first: bool,
    bare: B,
    harness: H,
) -> (B::Output, f64, H::Output, f64) {
    async fn clocked<F: Future>(operation: F) -> (F::Output, f64) {
        let started = Instant::now();
        let output = operation.await;
        (output, started.elapsed().as_secs_f64())
    }
    if bare_first {
        let (bare, bare_s) = clocked(bare).await;
        let (harness, harness_s) = clocked(harness).await;
        (bare, bare_s, harness, harness_s)
    } else {
        let (harness, harness_s) = clocked(harness).await;
        let (bare, bare_s) = clocked(bare).await;
        (bare, bare_s, harness, harness_s)
    }
}

fn median(samples: &[f64]) -> f64 {
    assert!(!samples.is_empty());
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Least squares of `seconds = fixed + bytes / rate` over the sizes' medians: (fixed, rate).
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    assert!(!points.is_empty());
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    // A flat or falling fit (noise, or one size) charges the whole time as transfer of the largest.
    let largest = points
        .iter()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .expect("not empty");
    if slope <= 0.0 {
        return (0.0, largest.0 / largest.1.max(1e-9));
    }
    let fixed = (mean_y - slope * mean_x).max(0.0);
    (fixed, 1.0 / slope)
}

fn duration_text(seconds: f64) -> String {
    format!("{:.1}us", (seconds * 1e6).max(0.0))
}

fn empirical(samples: impl Iterator<Item = f64>) -> String {
    let mut values: Vec<f64> = samples.collect();
    values.sort_by(f64::total_cmp);
    let texts: Vec<String> = values.into_iter().map(duration_text).collect();
    format!("empirical({})", texts.join(", "))
}

/// The fixed part as the spread of the samples once their transfer time is taken off.
fn fixed_part(sizes: &[SizeSamples], samples: fn(&SizeSamples) -> &[f64], rate: f64) -> String {
    let residuals = sizes.iter().flat_map(|size| {
        let transfer = size.snapshot_bytes as f64 / rate;
        samples(size)
            .iter()
            .map(move |seconds| (seconds - transfer).max(0.0))
    });
    let (low, high) = residuals.fold((f64::INFINITY, 0.0f64), |(low, high), r| {
        (low.min(r), high.max(r))
    });
    if duration_text(low) == duration_text(high) {
        return duration_text(low);
    }
    format!("uniform({}, {})", duration_text(low), duration_text(high))
}

/// The median over pairs of the harness's time over the bare time, as a percentage above it
/// (pairs, not pooled samples: each pair is one size, measured back to back).
fn percent(harness: &[f64], bare: &[f64]) -> f64 {
    assert_eq!(harness.len(), bare.len());
    let ratios: Vec<f64> = harness
        .iter()
        .zip(bare)
        .map(|(harness, bare)| harness / bare.max(1e-9))
        .collect();
    (median(&ratios) - 1.0) * 100.0
}

fn table_rows(sizes: &[SizeSamples]) -> String {
    let ms = |samples: &[f64]| median(samples) * 1e3;
    let mut text = String::from(
        "# ids      bytes  upload_ms download_ms pointer_read_ms pointer_write_ms delta_get_ms chroma_load_s chroma_get_ms chroma_update_ms chroma_upsert_ms\n",
    );
    for s in sizes {
        let _ = writeln!(
            text,
            "# {:>7} {:>10} {:>9.3} {:>11.3} {:>15.3} {:>16.3} {:>12.3} {:>13.3} {:>13.3} {:>16.3} {:>16.3}",
            s.ids,
            s.snapshot_bytes,
            ms(&s.upload),
            ms(&s.download),
            ms(&s.pointer_read),
            ms(&s.pointer_write),
            ms(&s.delta_get),
            s.chroma_load,
            ms(&s.chroma_get),
            ms(&s.chroma_update),
            ms(&s.chroma_upsert),
        );
    }
    text
}

fn fragment(flags: &CalibrateFlags, sizes: &[SizeSamples], overhead: &Overhead) -> String {
    let medians = |samples: fn(&SizeSamples) -> &[f64]| -> Vec<(f64, f64)> {
        sizes
            .iter()
            .map(|s| (s.snapshot_bytes as f64, median(samples(s))))
            .collect()
    };
    let (_, download_rate) = fit(&medians(|s| &s.download));
    let (_, upload_rate) = fit(&medians(|s| &s.upload));
    let largest = sizes
        .iter()
        .max_by_key(|s| s.ids)
        .expect("one size at least");
    let bytes_per_entry =
        (largest.snapshot_bytes as f64 / largest.ids.max(1) as f64).round() as u64;
    let pointer = sizes
        .iter()
        .flat_map(|s| s.pointer_read.iter().chain(&s.pointer_write).copied());
    let update_per_id = median(
        &sizes
            .iter()
            .flat_map(|s| s.chroma_update.iter().copied())
            .collect::<Vec<_>>(),
    ) / CHROMA_BATCH_IDS
        .min(sizes.iter().map(|s| s.ids).min().unwrap_or(1))
        .max(1) as f64;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Costs measured by `receipt-sim calibrate --chroma {} --store {}`,",
        flags.chroma, flags.store
    );
    let _ = writeln!(
        text,
        "# embeddings of dimension {}, {} repetitions per size; medians:",
        flags.dimension, flags.repetitions
    );
    text.push_str(&table_rows(sizes));
    let _ = writeln!(
        text,
        "# Harness overhead over bare operations (median ratio of pairs): store downloads {:+.1} %, chroma gets {:+.1} %.",
        percent(&overhead.store_harness, &overhead.store_bare),
        percent(&overhead.chroma_harness, &overhead.chroma_bare)
    );
    text.push_str("# A scenario takes these costs with `extends = \"THIS FILE\"`.\n\n[store]\n");
    let _ = writeln!(text, "bytes_per_entry = {bytes_per_entry}");
    let _ = writeln!(
        text,
        "download_fixed = \"{}\"",
        fixed_part(sizes, |s| &s.download, download_rate)
    );
    let _ = writeln!(text, "download_bytes_per_s = {download_rate:.0}.0");
    let _ = writeln!(
        text,
        "upload_fixed = \"{}\"",
        fixed_part(sizes, |s| &s.upload, upload_rate)
    );
    let _ = writeln!(text, "upload_bytes_per_s = {upload_rate:.0}.0");
    let _ = writeln!(text, "pointer_operation = \"{}\"", empirical(pointer));
    text.push_str("\n[compaction]\n");
    let delta = sizes.iter().flat_map(|s| s.delta_get.iter().copied());
    let _ = writeln!(text, "delta_download = \"{}\"", empirical(delta));
    text.push_str("# One Chroma update of a batch, per id it names.\n");
    let _ = writeln!(text, "apply_per_id = \"{}\"", duration_text(update_per_id));
    text
}

fn summary(sizes: &[SizeSamples], overhead: &Overhead) -> String {
    let mut text = table_rows(sizes).replace("# ", "");
    let _ = writeln!(
        text,
        "harness overhead (median ratio of side-by-side pairs): store downloads {:+.1} % (medians {:.3} ms harness, {:.3} ms bare), chroma gets {:+.1} % ({:.3} ms, {:.3} ms)",
        percent(&overhead.store_harness, &overhead.store_bare),
        median(&overhead.store_harness) * 1e3,
        median(&overhead.store_bare) * 1e3,
        percent(&overhead.chroma_harness, &overhead.chroma_bare),
        median(&overhead.chroma_harness) * 1e3,
        median(&overhead.chroma_bare) * 1e3,
    );
    text
}

/// The measured figures as JSON: per size its ids, bytes and each operation's median (ms), and
/// the harness's overhead over the bare operations (median ratio of pairs, in percent).
fn figures(flags: &CalibrateFlags, sizes: &[SizeSamples], overhead: &Overhead) -> Value {
    let ms = |samples: &[f64]| median(samples) * 1e3;
    let sizes: Vec<Value> = sizes
        .iter()
        .map(|size| {
            serde_json::json!({
                "ids": size.ids,
                "snapshot_bytes": size.snapshot_bytes,
                "median_ms": {
                    "snapshot_upload": ms(&size.upload),
                    "snapshot_download": ms(&size.download),
                    "pointer_read": ms(&size.pointer_read),
                    "pointer_write": ms(&size.pointer_write),
                    "delta_get": ms(&size.delta_get),
                    "chroma_get": ms(&size.chroma_get),
                    "chroma_update": ms(&size.chroma_update),
                    "chroma_upsert": ms(&size.chroma_upsert),
                },
                "chroma_load_ms": size.chroma_load * 1e3,
            })
        })
        .collect();
    serde_json::json!({
        "chroma": flags.chroma,
        "store": flags.store,
        "dimension": flags.dimension,
        "repetitions": flags.repetitions,
        "sizes": sizes,
        "overhead": {
            "store_download_percent": percent(&overhead.store_harness, &overhead.store_bare),
            "store_download_harness_ms": ms(&overhead.store_harness),
            "store_download_bare_ms": ms(&overhead.store_bare),
            "chroma_get_percent": percent(&overhead.chroma_harness, &overhead.chroma_bare),
            "chroma_get_harness_ms": ms(&overhead.chroma_harness),
            "chroma_get_bare_ms": ms(&overhead.chroma_bare),
        },
    })
}

/// Reads `--sizes 100,1000,10000`.
pub fn parse_sizes(text: &str) -> Result<Vec<usize>, Failure> {
    let sizes: Result<Vec<usize>, _> = text
        .split(',')
        .map(|part| part.trim().parse::<usize>())
        .collect();
    let sizes = sizes.map_err(|_| {
        Failure::bad_input(format!(
            "--sizes {text}: expected counts of ids, e.g. 100,1000,10000"
        ))
    })?;
    if sizes.is_empty()
        || sizes.len() > SIZES_MAX
        || sizes.iter().any(|&s| s == 0 || s > SIZE_IDS_MAX)
    {
        return Err(Failure::bad_input(format!(
            "--sizes {text}: between 1 and {SIZES_MAX} sizes, each from 1 to {SIZE_IDS_MAX} ids"
        )));
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linear_cost_is_fitted_back() {
        let points: Vec<(f64, f64)> = [1e3, 1e5, 1e7]
            .iter()
            .map(|&bytes| (bytes, 0.002 + bytes / 50e6))
            .collect();
        let (fixed, rate) = fit(&points);
        assert!((fixed - 0.002).abs() < 1e-9, "{fixed}");
        assert!((rate - 50e6).abs() / 50e6 < 1e-9, "{rate}");
    }

    #[test]
    fn samples_are_written_sorted_in_microseconds() {
        let text = empirical([0.0012, 0.000_25].into_iter());
        assert_eq!(text, "empirical(250.0us, 1200.0us)");
    }

    #[test]
    fn sizes_are_bounded() {
        assert_eq!(parse_sizes("100, 1000").unwrap(), [100, 1000]);
        assert!(parse_sizes("0").is_err());
        assert!(parse_sizes("ten").is_err());
        assert!(parse_sizes("2000000").is_err());
    }
}
