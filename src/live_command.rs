//! `live`: one pipeline trial whose object-store and Chroma effects are performed against real
//! servers (`live::performer`), while the table, stream, queues, lock and Lambda stay models. The
//! oracle judges the final snapshots read back from the real store, not the models' copies; the
//! outputs are `run`'s, with a `live` section (servers, timing and time scale, wall time, calls and
//! measured durations per operation, answers that differed from the models', backend errors, and
//! the final snapshots' digests). The backends and timing are the scenario's `[live]` table, each
//! flag given overriding its field.
//!
//! Depends on `live`, `trial_command`, `pipeline_scenario`, `load`, `output` and `failure`.

use crate::failure::Failure;
use crate::live::faulty_store::StoreFaults;
use crate::live::performer::{Divergences, LivePerformer, LiveSettings, OperationSummary, Timing};
use crate::load::Loaded;
use crate::output::Output;
use crate::trial_command::TrialResult;
use serde::Serialize;
use serde_json::Value;
use sim::entities::{ChromaId, Collection, EntryFields};
use sim::explore::{self, Judged};
use sim::oracle;
use sim::pipeline::config::Behaviour;
use sim::pipeline::{HistoryFilter, Trial, TrialOptions, run_trial_with};
use sim::services::collection::{EntryPatch, UpsertMode};
use sim::services::object_store::{SnapshotParams, SnapshotStore, VersionId as StoreVersion};
use sim::services::table::Table;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The command's flags; a backend flag given overrides the scenario's `[live]` field.
pub struct LiveFlags<'a> {
    pub chroma: Option<&'a str>,
    pub store: Option<&'a str>,
    pub dimension: Option<u32>,
    pub timing: Option<Timing>,
    /// Virtual time per measured wall time, in real timing.
    pub time_scale: Option<f64>,
    pub export: Option<&'a Output>,
    pub check: bool,
    pub scenario_name: &'a str,
}

/// A final snapshot as the store holds it: the version the pointer names and a digest of its
/// records (ids and fields, ascending).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotDigest {
    pub version: Option<u64>,
    /// `false` when the pointer names a version whose object is gone.
    pub readable: bool,
    pub entries: u64,
    pub digest: String,
}

#[derive(Serialize)]
struct LiveSection<'a> {
    chroma: &'a str,
    store: &'a str,
    timing: &'static str,
    time_scale: f64,
    dimension: u32,
    wall_s: f64,
    /// Read back from the real store after the trial (what the oracle judged).
    snapshots: &'a BTreeMap<&'static str, SnapshotDigest>,
    /// The models' final snapshots in the same trial, for comparison.
    model_snapshots: &'a BTreeMap<&'static str, SnapshotDigest>,
    divergences: &'a Divergences,
    backend_errors: u64,
    first_backend_error: Option<&'a str>,
    /// Per server operation: calls, total wall time and the measured durations' median, 90th
    /// percentile and maximum.
    operations: &'a BTreeMap<&'static str, OperationSummary>,
    /// The most server operations in flight at once.
    operations_in_flight_max: u64,
}

#[derive(Serialize)]
struct LiveResult<'a> {
    schema_version: u32,
    command: &'static str,
    scenario: Value,
    #[serde(flatten)]
    trial: TrialResult<'a>,
    live: LiveSection<'a>,
}

fn unique_run() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("rs-live-{}-{nanos}", std::process::id())
}

pub fn live(loaded: &Loaded, flags: &LiveFlags<'_>) -> Result<(), Failure> {
    let scenario = crate::pipeline_scenario::load(loaded)?;
    let config = &scenario.config;
    let backends = backends(loaded, &config.live, config.seed, flags)?;
    let settings = LiveSettings {
        version_resolution: config.behaviour().compaction.version_id_resolution,
        run: unique_run(),
        ..backends.clone()
    };
    // A store URL that cannot name a store is bad input; one that does not answer, a backend's.
    crate::live::store::Store::open(&settings.store).map_err(Failure::bad_input)?;
    let performer = LivePerformer::connect(settings).map_err(Failure::backend)?;
    let options = TrialOptions {
        history: HistoryFilter::All,
        ..TrialOptions::default()
    };
    let started = std::time::Instant::now();
    let (trial, mut performer) = run_trial_with(config, scenario.receipts(), &options, performer);
    let wall_s = started.elapsed().as_secs_f64();
    let imported = read_final_snapshots(config.behaviour(), &mut performer)?;
    performer.clean_up();
    let run = LiveRun::judge(trial, [&imported[0], &imported[1]], performer, wall_s);
    crate::trial_command::check_settled(&run.judged, loaded)?;
    let json_on_stdout = matches!(flags.export, Some(Output::Stdout));
    crate::output::say(
        json_on_stdout,
        &run.describe(flags.scenario_name, backends.timing),
    );
    if let Some(export) = flags.export {
        let scenario = serde_json::to_value(&**config).unwrap_or(Value::Null);
        export.write_json(&run.result(scenario, &backends))?;
    }
    crate::trial_command::check_outcome(flags.check, &[&run.judged])
}

/// The final snapshots as the real store holds them, imported into snapshot stores for the oracle.
fn read_final_snapshots(
    behaviour: &Behaviour,
    performer: &mut LivePerformer,
) -> Result<Vec<SnapshotStore>, Failure> {
    let params = snapshot_params(behaviour);
    let mut imported = Vec::with_capacity(2);
    for collection in Collection::ALL {
        let (version, entries) = performer
            .final_snapshot(collection)
            .map_err(|error| Failure::backend(format!("reading the final snapshot: {error}")))?;
        imported.push(import(collection, &params, version, entries));
    }
    Ok(imported)
}

/// A live trial judged on the snapshots read back, with what the performer measured.
struct LiveRun {
    judged: Judged,
    performer: LivePerformer,
    wall_s: f64,
    /// Read back from the real store (what the oracle judged), and the models' in the same trial.
    snapshots: BTreeMap<&'static str, SnapshotDigest>,
    model_snapshots: BTreeMap<&'static str, SnapshotDigest>,
    operations: BTreeMap<&'static str, OperationSummary>,
}

impl LiveRun {
    fn judge(
        trial: Trial,
        stores: [&SnapshotStore; 2],
        performer: LivePerformer,
        wall_s: f64,
    ) -> LiveRun {
        let input = oracle::Input {
            stores,
            ..explore::oracle_input(&trial)
        };
        let report = oracle::check(&input);
        let digests = |stores: [&SnapshotStore; 2]| -> BTreeMap<&'static str, SnapshotDigest> {
            Collection::ALL
                .iter()
                .map(|c| (c.name(), digest(stores[c.index()], trial.table(), &trial)))
                .collect()
        };
        let snapshots = digests(stores);
        let model_snapshots = digests([
            trial.store(Collection::Lines),
            trial.store(Collection::Words),
        ]);
        let operations = performer
            .times
            .iter()
            .map(|(name, times)| (*name, times.summary()))
            .collect();
        let judged = Judged {
            trial,
            oracle: report,
        };
        LiveRun {
            judged,
            performer,
            wall_s,
            snapshots,
            model_snapshots,
            operations,
        }
    }

    /// The trial's description, then the live section's.
    fn describe(&self, scenario_name: &str, timing: Timing) -> String {
        let mut text = String::new();
        crate::trial_command::describe_trial(&mut text, &self.judged, scenario_name);
        let performer = &self.performer;
        let (snapshots, model_snapshots) = (&self.snapshots, &self.model_snapshots);
        describe_live(
            &mut text,
            performer,
            self.wall_s,
            snapshots,
            model_snapshots,
        );
        describe_operations(&mut text, timing, &self.operations);
        text
    }

    /// The JSON result: `run`'s, with the live section.
    fn result<'a>(&'a self, scenario: Value, backends: &'a LiveSettings) -> LiveResult<'a> {
        let performer = &self.performer;
        LiveResult {
            schema_version: crate::output::SCHEMA_VERSION,
            command: "live",
            scenario,
            trial: TrialResult::of(&self.judged),
            live: LiveSection {
                chroma: &backends.chroma,
                store: &backends.store,
                timing: backends.timing.name(),
                time_scale: backends.time_scale,
                dimension: backends.dimension,
                wall_s: self.wall_s,
                snapshots: &self.snapshots,
                model_snapshots: &self.model_snapshots,
                divergences: &performer.divergences,
                backend_errors: performer.errors,
                first_backend_error: performer.first_error.as_deref(),
                operations: &self.operations,
                operations_in_flight_max: performer.in_flight_max,
            },
        }
    }
}

/// The backends and timing of the trial: each flag given, else the scenario's `[live]` field.
fn backends(
    loaded: &Loaded,
    live: &sim::pipeline::config::LiveConfig,
    seed: u64,
    flags: &LiveFlags<'_>,
) -> Result<LiveSettings, Failure> {
    let chroma = flags.chroma.unwrap_or(&live.chroma);
    if chroma.is_empty() {
        return Err(Failure::bad_input(format!(
            "{}: no ChromaDB server: give --chroma URL or live.chroma in the scenario",
            loaded.locate("live.chroma")
        )));
    }
    Ok(LiveSettings {
        chroma: chroma.to_string(),
        store: flags.store.unwrap_or(&live.store).to_string(),
        dimension: flags.dimension.unwrap_or(live.dimension),
        version_resolution: sim::time::Duration::ZERO,
        run: String::new(),
        timing: flags.timing.unwrap_or(live.timing),
        time_scale: flags.time_scale.unwrap_or(live.time_scale),
        chroma_timeout: std::time::Duration::from_nanos(live.chroma_timeout.as_nanos()),
        store_faults: StoreFaults {
            seed,
            error_share: live.store_error_share,
            delay_share: live.store_delay_share,
            delay: std::time::Duration::from_nanos(live.store_delay.as_nanos()),
        },
    })
}

fn snapshot_params(behaviour: &Behaviour) -> SnapshotParams {
    SnapshotParams {
        version_resolution: behaviour.compaction.version_id_resolution,
        keep_versions: usize::MAX,
        deltas_window: 16,
        deltas_max: 1 << 16,
    }
}

/// A store holding what the real one holds at the end: one publish of the records read back,
/// its version named by the pointer; a pointer naming a missing object dangles, as the model's can.
fn import(
    collection: Collection,
    params: &SnapshotParams,
    version: Option<u64>,
    entries: Option<Vec<(ChromaId, EntryFields)>>,
) -> SnapshotStore {
    let mut store = SnapshotStore::new(collection, params.clone());
    let now = sim::time::Instant::ZERO;
    if version.is_none() {
        return store;
    }
    let Some(entries) = entries else {
        // The pointer names a version whose object is gone: an id no publish has.
        store.write_pointer(now, StoreVersion(u64::MAX));
        return store;
    };
    let mut working_copy = store.checkout(store.head());
    for (id, fields) in entries {
        let patch = EntryPatch {
            merchant: Some(fields.merchant),
            labels: Some(fields.labels),
        };
        working_copy.upsert(&store, id, patch, UpsertMode::Replace);
    }
    let outcome = store.publish(now, working_copy);
    store.write_pointer(now, outcome.version);
    store
}

/// The digest of the snapshot the pointer names, over every id the table knows.
fn digest(store: &SnapshotStore, table: &Table, trial: &Trial) -> SnapshotDigest {
    let version = store.read_pointer().version;
    let Ok(publish) = store.resolve(version) else {
        return SnapshotDigest {
            version: Some(version.0),
            readable: false,
            entries: 0,
            digest: String::new(),
        };
    };
    let reader = store.reader(publish);
    let mut hash: u64 = 0x5eed;
    let mut entries = 0;
    for receipt in 0..trial.report.receipts as u32 {
        let Some(shape) = table.shape(receipt) else {
            continue;
        };
        for id in shape.collection_ids(receipt, store.collection()) {
            if let Some(fields) = reader.get(id) {
                entries += 1;
                let labels = fields.labels;
                let packed = u64::from(fields.merchant)
                    ^ u64::from(labels.valid) << 32
                    ^ u64::from(labels.invalid) << 48
                    ^ u64::from(labels.other).rotate_left(17)
                    ^ u64::from(labels.detail).rotate_left(40);
                hash = sim::random::mix64(hash ^ id.0).wrapping_add(sim::random::mix64(packed));
            }
        }
    }
    SnapshotDigest {
        version: None,
        readable: true,
        entries,
        digest: format!("{hash:016x}"),
    }
}

fn describe_live(
    text: &mut String,
    performer: &LivePerformer,
    wall_s: f64,
    snapshots: &BTreeMap<&'static str, SnapshotDigest>,
    model_snapshots: &BTreeMap<&'static str, SnapshotDigest>,
) {
    let calls: u64 = performer.times.values().map(|times| times.calls).sum();
    let seconds: f64 = performer.times.values().map(|times| times.seconds).sum();
    let _ = writeln!(
        text,
        "  live: {wall_s:.2} s wall, {calls} server calls taking {seconds:.2} s; {} answers \
         differed from the models', {} backend errors",
        performer.divergences.count, performer.errors
    );
    for described in &performer.divergences.described {
        let _ = writeln!(text, "    {described}");
    }
    for (name, snapshot) in snapshots {
        let same = model_snapshots.get(name) == Some(snapshot);
        let _ = writeln!(
            text,
            "  final {name} snapshot in the store: {} ids, digest {}{}",
            snapshot.entries,
            snapshot.digest,
            if same {
                " (the models' too)"
            } else {
                " (the models' differs)"
            }
        );
    }
}

fn describe_operations(
    text: &mut String,
    timing: Timing,
    operations: &BTreeMap<&'static str, OperationSummary>,
) {
    let _ = writeln!(
        text,
        "  server operations ({} timing): calls, median, 90th percentile, max",
        timing.name()
    );
    for (name, summary) in operations {
        let _ = writeln!(
            text,
            "    {name:<20} {:>6}  {:>9.3} ms  {:>9.3} ms  {:>9.3} ms",
            summary.calls, summary.median_ms, summary.p90_ms, summary.max_ms
        );
    }
}
