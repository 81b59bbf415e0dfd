//! The live performer: the core's object-store and collection performers against a real object
//! store and a real ChromaDB server, called synchronously from the trial's thread (each call a
//! `block_on` on a current-thread tokio runtime).
//!
//! Deltas and snapshots are real objects (the `codec`'s records: ids, an embedding of the chosen
//! dimension derived from the id, metadata); snapshots go to the version's key
//! (`{collection}/snapshot/timestamped/{version}/records.rsim`) and the pointer of each collection
//! is promoted as the store does it (`store::Promotion`), a blind write overwriting. Every
//! compaction invocation loads the snapshot it opens into a Chroma collection of its own, applies
//! merges and updates through the Chroma API, and exports that collection's records as the new
//! snapshot. Etags are handed out as handles into the pointers read so far.
//!
//! In real timing (`Timing::Real`) the wall time of an effect's server calls, times the time
//! scale, is the effect's virtual duration. The working-copy operations (delta upserts, gets,
//! updates) are started on the runtime's workers and the driver told so (`take_started`); the
//! driver's lookahead (`complete_until`) waits only until each one in flight has ended or its
//! lower bound (issue + wall time so far x scale) reaches the next event, so concurrent
//! invocations' operations are in flight at once. An operation's duration runs from its start to
//! when this thread sees it ended. The other operations block the trial's thread
//! (`take_measured`). Every call's duration is recorded per operation (`OperationTimes`), and
//! the most operations in flight at once (`in_flight_max`).
//!
//! Every answer comes from the servers; where it differs from the models' answer the difference is
//! counted and the first few are described (`Divergences`). A backend error answers the effect
//! `Failed` in the model's terms (unavailable, timed out, not found) and is counted.
//!
//! Depends on `chroma`, `store`, `codec` and the core's performer seam.

use super::chroma::{
    ChromaClient, ChromaClientOptions, ChromaCollection, ChromaError, CollectionEntries, ErrorKind,
    GetOptions, Metadata,
};
use super::codec::{self, Kind, MetaValue, Record, Records};
use super::faulty_store::StoreFaults;
use super::store::{Pointer, Promoted, Promotion, Store, StoreError};
use serde_json::Value;
use sim::entities::{ChromaId, Collection, EntryFields, LabelFields, ReceiptIndex};
pub use sim::pipeline::config::Timing;
use sim::pipeline::effect::{EtagHandle, Failure, Response, VersionId};
use sim::pipeline::performer::Completion;
use sim::pipeline::performer::{
    CollectionPerformer, InvocationId, ObjectStorePerformer, Performer, RecordPatch,
};
use sim::services::collection::{EntryPatch, UpsertMode};
use sim::services::object_store::VersionId as StoreVersion;
use sim::time::{Duration, Instant};
use std::collections::BTreeMap;
use tokio::sync::mpsc;

/// Ids per Chroma request when loading or exporting a collection.
const CHROMA_BATCH_IDS: usize = 1000;
/// The most records one exported collection may hold (a bound on the export loop).
const EXPORT_IDS_MAX: usize = 1 << 24;
/// Divergences described in full (all are counted).
const DIVERGENCES_DESCRIBED_MAX: usize = 8;
/// Tries of a blind pointer write on a store that promotes by generations.
const BLIND_WRITE_TRIES_MAX: usize = 64;

/// Where the live trial runs and how its records look.
#[derive(Clone, Debug)]
pub struct LiveSettings {
    pub chroma: String,
    pub store: String,
    /// Embedding dimension of every record.
    pub dimension: u32,
    /// The version id resolution of the scenario (for snapshot keys).
    pub version_resolution: Duration,
    /// A name no other trial uses: the prefix of every key and Chroma collection.
    pub run: String,
    /// Where the durations of data-plane effects come from.
    pub timing: Timing,
    /// Virtual nanoseconds per measured wall nanosecond, in real timing.
    pub time_scale: f64,
    /// The Chroma client's timeout of one request.
    pub chroma_timeout: std::time::Duration,
    /// Faults injected into the store's operations during the trial (not its set-up or the
    /// final read-back).
    pub store_faults: StoreFaults,
}

/// Answers of the servers that differ from the models' answers.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Divergences {
    pub count: u64,
    pub described: Vec<String>,
}

/// Calls and time spent against the servers, per operation: the total, and the measured duration
/// of each call (in call order).
#[derive(Clone, Debug, Default)]
pub struct OperationTimes {
    pub calls: u64,
    pub seconds: f64,
    pub durations_ns: Vec<u64>,
}

/// An operation's measured durations, summarised for the outputs.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct OperationSummary {
    pub calls: u64,
    pub seconds: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub max_ms: f64,
}

impl OperationTimes {
    fn record(&mut self, elapsed: std::time::Duration) {
        self.calls += 1;
        self.seconds += elapsed.as_secs_f64();
        self.durations_ns
            .push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Calls, total, and the median, 90th percentile and largest of the durations (nearest rank).
    pub fn summary(&self) -> OperationSummary {
        let mut sorted = self.durations_ns.clone();
        sorted.sort_unstable();
        let rank = |share: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let index = ((share * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[index - 1] as f64 / 1e6
        };
        OperationSummary {
            calls: self.calls,
            seconds: self.seconds,
            median_ms: rank(0.5),
            p90_ms: rank(0.9),
            max_ms: rank(1.0),
        }
    }
}

/// The version a pointer names (`None` before any promotion) and the records of its object
/// (`None` when the object is gone).
pub type FinalSnapshot = (Option<VersionId>, Option<Vec<(ChromaId, EntryFields)>>);

/// A compaction invocation's working copy: its Chroma collection and the delta it downloaded last.
struct Working {
    collection: ChromaCollection,
    delta: Option<Vec<Record>>,
}

pub struct LivePerformer {
    runtime: tokio::runtime::Runtime,
    chroma: ChromaClient,
    /// Objects under the trial's prefix.
    objects: Store,
    /// The pointer of each collection (`Collection::index` order).
    pointers: [Store; 2],
    /// `objects` and `pointers` without injected faults, for reading the final snapshots back.
    clean: (Store, [Store; 2]),
    settings: LiveSettings,
    /// The pointers read so far, each with the models' etag of the same read: etag handle `h`
    /// is `read[h - 1]`.
    read: Vec<(Pointer, EtagHandle)>,
    working: BTreeMap<InvocationId, Working>,
    /// Every Chroma collection this trial made, for the clean-up at the end.
    made: Vec<String>,
    pub divergences: Divergences,
    /// Backend errors, counted; the first described.
    pub errors: u64,
    pub first_error: Option<String>,
    pub times: BTreeMap<&'static str, OperationTimes>,
    /// Wall time of the calls since the driver last took it (`take_measured`).
    measured: std::time::Duration,
    /// Operations started and not yet seen to end, by ticket.
    in_flight: BTreeMap<u64, Started>,
    /// The ticket of the operation the last call started, for `take_started`.
    started: Option<u64>,
    next_ticket: u64,
    ended: (mpsc::UnboundedSender<Ended>, mpsc::UnboundedReceiver<Ended>),
    /// The most operations in flight at once (started ones and the blocking call).
    pub in_flight_max: u64,
}

/// A started operation: when (virtual and wall), what it is and how its result becomes the answer.
struct Started {
    now: Instant,
    wall: std::time::Instant,
    name: &'static str,
    what: String,
    model: Response,
    answer_of: fn(usize, Response) -> Response,
}

/// A started operation's result: its ticket, and a count (records upserted, ids present).
type Ended = (u64, Result<usize, ChromaError>);

/// Bounds the waits of one `complete_until` (each ends with an operation's end or the bound).
const COMPLETION_WAITS_MAX: usize = 1 << 20;

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the I/O runtime: {error}"))
}

impl LivePerformer {
    /// Connects to both servers (each must answer) and sets up the state before the trial: the
    /// empty initial snapshot of each collection, and its pointer naming it.
    pub fn connect(settings: LiveSettings) -> Result<LivePerformer, String> {
        let store = Store::open(&settings.store)?;
        let options = ChromaClientOptions {
            url: settings.chroma.clone(),
            timeout: settings.chroma_timeout,
            ..Default::default()
        };
        let chroma = ChromaClient::new(options).map_err(|error| error.to_string())?;
        let runtime = runtime()?;
        let objects = store.under(&settings.run);
        let pointers = Collection::ALL.map(|collection| objects.under(collection.name()));
        let clean = (objects.clone(), pointers.clone());
        let mut performer = LivePerformer {
            runtime,
            chroma,
            objects,
            pointers,
            clean,
            settings,
            read: Vec::new(),
            working: BTreeMap::new(),
            made: Vec::new(),
            divergences: Divergences::default(),
            errors: 0,
            first_error: None,
            times: BTreeMap::new(),
            measured: std::time::Duration::ZERO,
            in_flight: BTreeMap::new(),
            started: None,
            next_ticket: 0,
            ended: mpsc::unbounded_channel(),
            in_flight_max: 0,
        };
        performer.set_up().map_err(|error| error.to_string())?;
        let faults = performer.settings.store_faults;
        if faults.any() {
            let objects = store.with_faults(faults).under(&performer.settings.run);
            performer.pointers = Collection::ALL.map(|collection| objects.under(collection.name()));
            performer.objects = objects;
        }
        Ok(performer)
    }

    fn set_up(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let chroma = self.chroma.clone();
        self.runtime.block_on(chroma.heartbeat())?;
        for collection in Collection::ALL {
            let key = self.snapshot_key(collection, StoreVersion::INITIAL.0);
            let empty = encode(&[], self.settings.dimension);
            let objects = self.objects.clone();
            self.runtime.block_on(objects.put_immutable(&key, empty))?;
            let pointer = self.pointers[collection.index()].clone();
            let read = self.runtime.block_on(pointer.read_pointer())?;
            let value = StoreVersion::INITIAL.0.to_string();
            let promoted = self.runtime.block_on(pointer.promote(&read, &value))?;
            if promoted != Promoted::Won {
                return Err(format!("{}: the fresh pointer was taken", pointer.url()).into());
            }
        }
        Ok(())
    }

    fn snapshot_key(&self, collection: Collection, version: VersionId) -> String {
        let prefix = StoreVersion(version).key(collection, self.settings.version_resolution);
        format!("{prefix}records.rsim")
    }

    fn delta_key(collection: Collection, receipt: ReceiptIndex, run: u32) -> String {
        format!("{}/delta/{receipt}-{run}/delta.rsim", collection.name())
    }

    /// Runs one operation on the runtime, timing it under `name`.
    fn call<T>(&mut self, name: &'static str, operation: impl Future<Output = T>) -> T {
        self.in_flight_max = self.in_flight_max.max(self.in_flight.len() as u64 + 1);
        let started = std::time::Instant::now();
        let result = self.runtime.block_on(operation);
        let elapsed = started.elapsed();
        self.times.entry(name).or_default().record(elapsed);
        self.measured += elapsed;
        result
    }

    /// Runs a working-copy operation: started on the runtime in real timing (its answer comes
    /// through `complete_until`; the provisional one returned is the model's), else performed.
    fn start(
        &mut self,
        now: Instant,
        name: &'static str,
        what: String,
        model: Response,
        answer_of: fn(usize, Response) -> Response,
        operation: impl Future<Output = Result<usize, ChromaError>> + Send + 'static,
    ) -> Response {
        if self.settings.timing != Timing::Real {
            let answer = match self.call(name, operation) {
                Ok(count) => answer_of(count, model),
                Err(error) => self.chroma_failed(&error),
            };
            return self.answer(&what, answer, model);
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let sender = self.ended.0.clone();
        self.runtime.spawn(async move {
            // The receiver lives as long as the performer; a closed one has nothing to hear.
            let _ = sender.send((ticket, operation.await));
        });
        let started = Started {
            now,
            wall: std::time::Instant::now(),
            name,
            what,
            model,
            answer_of,
        };
        self.in_flight.insert(ticket, started);
        self.in_flight_max = self.in_flight_max.max(self.in_flight.len() as u64);
        self.started = Some(ticket);
        model
    }

    /// An ended operation's answer, its duration recorded, seen at `seen`; and its issue.
    fn end(&mut self, ended: Ended, seen: std::time::Instant) -> Option<(Completion, Instant)> {
        let (ticket, result) = ended;
        let started = self.in_flight.remove(&ticket)?;
        let elapsed = seen.saturating_duration_since(started.wall);
        self.times.entry(started.name).or_default().record(elapsed);
        let answer = match result {
            Ok(count) => (started.answer_of)(count, started.model),
            Err(error) => self.chroma_failed(&error),
        };
        let answer = self.answer(&started.what, answer, started.model);
        let completion = Completion {
            ticket,
            answer,
            duration: self.scaled(elapsed),
        };
        Some((completion, started.now))
    }

    fn scaled(&self, wall: std::time::Duration) -> Duration {
        Duration::from_nanos_f64(wall.as_nanos() as f64 * self.settings.time_scale)
    }

    /// The wall instant at which every operation in flight has a lower bound of at least `until`.
    fn bound_reached_at(&self, until: Instant) -> std::time::Instant {
        let scale = self.settings.time_scale.max(f64::MIN_POSITIVE);
        let now = std::time::Instant::now();
        let mut at = now;
        for started in self.in_flight.values() {
            let ahead_ns = until.0.saturating_sub(started.now.0) as f64 / scale;
            let wall = std::time::Duration::from_secs_f64((ahead_ns / 1e9).min(1e9));
            at = at.max(started.wall + wall);
        }
        at
    }

    /// Every operation in flight waited for to its end (before clean-up).
    fn settle(&mut self) {
        for _ in 0..COMPLETION_WAITS_MAX {
            if self.in_flight.is_empty() {
                return;
            }
            let receiver = &mut self.ended.1;
            let Some(ended) = self.runtime.block_on(receiver.recv()) else {
                return;
            };
            self.end(ended, std::time::Instant::now());
        }
    }

    /// A backend error as the effect's failure, counted.
    fn failed(&mut self, error: &dyn std::fmt::Display, failure: Failure) -> Response {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
        Response::Failed(failure)
    }

    fn store_failed(&mut self, error: &StoreError) -> Response {
        let failure = match error.source {
            object_store::Error::NotFound { .. } => return Response::Failed(Failure::NotFound),
            object_store::Error::Precondition { .. } => Failure::PreconditionFailed,
            _ => Failure::Unavailable,
        };
        self.failed(error, failure)
    }

    fn chroma_failed(&mut self, error: &ChromaError) -> Response {
        let failure = match error.kind {
            ErrorKind::Timeout => Failure::TimedOut,
            _ => Failure::Unavailable,
        };
        self.failed(error, failure)
    }

    /// The answer to hand back, noting where it differs from the models'.
    fn answer(&mut self, operation: &str, answer: Response, model: Response) -> Response {
        if answer != model {
            self.divergences.count += 1;
            if self.divergences.described.len() < DIVERGENCES_DESCRIBED_MAX {
                self.divergences.described.push(format!(
                    "{operation}: the servers answered {answer:?}, the models {model:?}"
                ));
            }
        }
        answer
    }

    fn handle_of(&mut self, pointer: Pointer, model_etag: EtagHandle) -> EtagHandle {
        let same = |read: &(Pointer, EtagHandle)| read.0 == pointer && read.1 == model_etag;
        let position = match self.read.iter().position(same) {
            Some(position) => position,
            None => {
                self.read.push((pointer, model_etag));
                self.read.len() - 1
            }
        };
        position as EtagHandle + 1
    }

    /// The records a snapshot holds, read back from the store after the trial: the version the
    /// pointer names (`None` before any promotion) and its records, or the store's error.
    pub fn final_snapshot(&mut self, collection: Collection) -> Result<FinalSnapshot, String> {
        let pointer = self.clean.1[collection.index()].clone();
        let read = self
            .call("pointer_read", pointer.read_pointer())
            .map_err(|error| error.to_string())?;
        let Some(version) = read.value.as_deref().and_then(|value| value.parse().ok()) else {
            return Ok((None, None));
        };
        let key = self.snapshot_key(collection, version);
        let objects = self.clean.0.clone();
        match self.call("snapshot_get", objects.get(&key)) {
            Ok(bytes) => {
                let records = codec::decode(&bytes).map_err(|error| format!("{key}: {error}"))?;
                let mut entries = Vec::with_capacity(records.records.len());
                for record in &records.records {
                    entries.push(entry_of(record).map_err(|error| format!("{key}: {error}"))?);
                }
                entries.sort_unstable_by_key(|(id, _)| *id);
                Ok((Some(version), Some(entries)))
            }
            Err(error) if matches!(error.source, object_store::Error::NotFound { .. }) => {
                Ok((Some(version), None))
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// Deletes every Chroma collection the trial made that is still there.
    pub fn clean_up(&mut self) {
        self.settle();
        let names = std::mem::take(&mut self.made);
        let chroma = self.chroma.clone();
        for name in names {
            // A collection already deleted (published) answers not found: nothing to do.
            let _ = self.call("collection_delete", chroma.delete_collection(&name));
        }
        self.working.clear();
    }

    fn working(&self, invocation: InvocationId) -> Option<ChromaCollection> {
        self.working
            .get(&invocation)
            .map(|working| working.collection.clone())
    }

    /// Loads records into a fresh collection of the invocation.
    async fn load(
        chroma: ChromaClient,
        name: String,
        records: Vec<Record>,
    ) -> Result<(ChromaCollection, usize), ChromaError> {
        let collection = chroma.get_or_create_collection(&name, None).await?;
        for batch in records.chunks(CHROMA_BATCH_IDS) {
            collection.add(&entries_of(batch, true)).await?;
        }
        let count = collection.count().await?;
        Ok((collection, count))
    }

    /// Every record of a collection, in pages.
    async fn export(collection: ChromaCollection) -> Result<Vec<Record>, ChromaError> {
        let mut records = Vec::new();
        while records.len() < EXPORT_IDS_MAX {
            let options = GetOptions {
                limit: Some(CHROMA_BATCH_IDS),
                offset: Some(records.len()),
                include: Some(vec!["embeddings".into(), "metadatas".into()]),
                ..Default::default()
            };
            let page = collection.get(&options).await?;
            let got = page.ids.len();
            let embeddings = page.embeddings.unwrap_or_default();
            let metadatas = page.metadatas.unwrap_or_default();
            for (index, id) in page.ids.into_iter().enumerate() {
                records.push(Record {
                    id,
                    embedding: embeddings.get(index).cloned().unwrap_or_default(),
                    metadata: metadata_record(metadatas.get(index).cloned().flatten()),
                });
            }
            if got < CHROMA_BATCH_IDS {
                break;
            }
        }
        Ok(records)
    }

    /// The ids of `ids` the collection holds.
    async fn present(
        collection: &ChromaCollection,
        ids: Vec<String>,
    ) -> Result<Vec<String>, ChromaError> {
        let options = GetOptions {
            ids: Some(ids),
            include: Some(Vec::new()),
            ..Default::default()
        };
        Ok(collection.get(&options).await?.ids)
    }
}

impl Drop for LivePerformer {
    fn drop(&mut self) {
        self.clean_up();
    }
}

impl ObjectStorePerformer for LivePerformer {
    fn put_delta(
        &mut self,
        _now: Instant,
        collection: Collection,
        receipt: ReceiptIndex,
        run: u32,
        records: &[RecordPatch],
        model: Response,
    ) -> Response {
        let records: Vec<Record> = records
            .iter()
            .map(|(id, patch)| record_of(*id, patch.as_fields(), self.settings.dimension))
            .collect();
        let bytes = encode_kind(Kind::Delta, records, self.settings.dimension);
        let key = Self::delta_key(collection, receipt, run);
        let objects = self.objects.clone();
        let answer = match self.call("delta_put", objects.put_immutable(&key, bytes)) {
            Ok(_) => Response::Done,
            Err(error) => self.store_failed(&error),
        };
        self.answer("delta put", answer, model)
    }

    fn get_delta(
        &mut self,
        _now: Instant,
        invocation: InvocationId,
        collection: Collection,
        receipt: ReceiptIndex,
        run: u32,
        model: Response,
    ) -> Response {
        let key = Self::delta_key(collection, receipt, run);
        let objects = self.objects.clone();
        let answer = match self.call("delta_get", objects.get(&key)) {
            Ok(bytes) => match codec::decode(&bytes) {
                Ok(records) => {
                    if let Some(working) = self.working.get_mut(&invocation) {
                        working.delta = Some(records.records);
                    }
                    Response::Done
                }
                Err(error) => self.failed(&format!("{key}: {error}"), Failure::Unavailable),
            },
            Err(error) => self.store_failed(&error),
        };
        self.answer("delta get", answer, model)
    }

    fn read_pointer(&mut self, _now: Instant, collection: Collection, model: Response) -> Response {
        let pointer = self.pointers[collection.index()].clone();
        let answer = match self.call("pointer_read", pointer.read_pointer()) {
            Ok(read) => {
                let version = read.value.as_deref().and_then(|value| value.parse().ok());
                let model_etag = match model {
                    Response::Pointer { etag, .. } => etag,
                    _ => 0,
                };
                let etag = self.handle_of(read, model_etag);
                Response::Pointer { version, etag }
            }
            Err(error) => self.store_failed(&error),
        };
        // Handles are this performer's own: only the version is compared with the models'.
        let comparable = match (answer, model) {
            (Response::Pointer { version, .. }, Response::Pointer { etag, .. }) => {
                Response::Pointer { version, etag }
            }
            _ => answer,
        };
        self.answer("pointer read", comparable, model);
        answer
    }

    fn put_snapshot(
        &mut self,
        _now: Instant,
        invocation: InvocationId,
        collection: Collection,
        version: VersionId,
        model: Response,
    ) -> Response {
        let Some(working) = self.working(invocation) else {
            return self.answer("snapshot put", Response::Failed(Failure::NotFound), model);
        };
        let exported = self.call("collection_export", Self::export(working.clone()));
        let records = match exported {
            Ok(records) => records,
            Err(error) => {
                let answer = self.chroma_failed(&error);
                return self.answer("snapshot put", answer, model);
            }
        };
        let bytes = encode_kind(Kind::Snapshot, records, self.settings.dimension);
        let key = self.snapshot_key(collection, version);
        let objects = self.objects.clone();
        // A version id names a prefix the real pipeline overwrites when two publishes share it.
        let answer = match self.call("snapshot_put", objects.put(&key, bytes)) {
            Ok(()) => Response::Published { version },
            Err(error) => self.store_failed(&error),
        };
        let chroma = self.chroma.clone();
        let name = working.name().to_string();
        if self
            .call("collection_delete", chroma.delete_collection(&name))
            .is_ok()
        {
            self.made.retain(|made| *made != name);
        }
        self.working.remove(&invocation);
        self.answer("snapshot put", answer, model)
    }

    fn write_pointer(
        &mut self,
        _now: Instant,
        collection: Collection,
        version: VersionId,
        expected: Option<EtagHandle>,
        model: Response,
    ) -> Response {
        let store = self.pointers[collection.index()].clone();
        let value = version.to_string();
        let promoted = match expected {
            Some(handle) => {
                let read = self.read[handle as usize - 1].0.clone();
                self.call("pointer_write", store.promote(&read, &value))
            }
            None => self.call("pointer_write", blind_write(store, value)),
        };
        let answer = match promoted {
            Ok(Promoted::Won) => Response::Done,
            Ok(Promoted::Lost) => Response::Failed(Failure::PreconditionFailed),
            Err(error) => self.store_failed(&error),
        };
        self.answer("pointer write", answer, model)
    }

    fn model_etag(&self, handle: EtagHandle) -> EtagHandle {
        self.read[handle as usize - 1].1
    }

    fn delete_snapshots(&mut self, _now: Instant, collection: Collection, versions: &[VersionId]) {
        for version in versions {
            let key = self.snapshot_key(collection, *version);
            let objects = self.objects.clone();
            if let Err(error) = self.call("snapshot_delete", objects.delete(&key)) {
                self.store_failed(&error);
            }
        }
    }
}

/// A plain overwrite of the pointer: on a store that promotes by generations, the next
/// generation after the highest, again if another writer took it.
async fn blind_write(store: Store, value: String) -> Result<Promoted, StoreError> {
    if store.promotion != Promotion::Generations {
        let mut overwrite = store.clone();
        overwrite.promotion = Promotion::Overwrite;
        let read = overwrite.read_pointer().await?;
        return overwrite.promote(&read, &value).await;
    }
    for _ in 0..BLIND_WRITE_TRIES_MAX {
        let read = store.read_pointer().await?;
        if store.promote(&read, &value).await? == Promoted::Won {
            return Ok(Promoted::Won);
        }
    }
    Ok(Promoted::Lost)
}

impl CollectionPerformer for LivePerformer {
    fn open_working_copy(
        &mut self,
        _now: Instant,
        invocation: InvocationId,
        collection: Collection,
        version: Option<VersionId>,
        model: Response,
    ) -> Response {
        let records = match version {
            None => Vec::new(),
            Some(version) => {
                let key = self.snapshot_key(collection, version);
                let objects = self.objects.clone();
                match self.call("snapshot_get", objects.get(&key)) {
                    Ok(bytes) => match codec::decode(&bytes) {
                        Ok(records) => records.records,
                        Err(error) => {
                            let answer =
                                self.failed(&format!("{key}: {error}"), Failure::Unavailable);
                            return self.answer("working copy open", answer, model);
                        }
                    },
                    Err(error) => {
                        let answer = self.store_failed(&error);
                        return self.answer("working copy open", answer, model);
                    }
                }
            }
        };
        let name = format!("{}-{}-{invocation}", self.settings.run, collection.name());
        self.made.push(name.clone());
        let chroma = self.chroma.clone();
        let answer = match self.call("collection_load", Self::load(chroma, name, records)) {
            Ok((chroma_collection, count)) => {
                let working = Working {
                    collection: chroma_collection,
                    delta: None,
                };
                self.working.insert(invocation, working);
                Response::Entries(count as u64)
            }
            Err(error) => self.chroma_failed(&error),
        };
        self.answer("working copy open", answer, model)
    }

    fn upsert_delta(
        &mut self,
        now: Instant,
        invocation: InvocationId,
        receipt: ReceiptIndex,
        mode: UpsertMode,
        model: Response,
    ) -> Response {
        let delta = self
            .working
            .get_mut(&invocation)
            .and_then(|working| working.delta.take());
        let (Some(collection), Some(delta)) = (self.working(invocation), delta) else {
            let answer = Response::Failed(Failure::NotFound);
            return self.answer(&format!("delta upsert of receipt {receipt}"), answer, model);
        };
        let count = delta.len();
        let applied = async move { upsert(collection, delta, mode).await.map(|()| count) };
        let what = format!("delta upsert of receipt {receipt}");
        let answer_of: fn(usize, Response) -> Response = |count, _| Response::Entries(count as u64);
        self.start(now, "collection_upsert", what, model, answer_of, applied)
    }

    fn get(
        &mut self,
        now: Instant,
        invocation: InvocationId,
        id: ChromaId,
        model: Response,
    ) -> Response {
        let Some(collection) = self.working(invocation) else {
            return self.answer("get", Response::Failed(Failure::NotFound), model);
        };
        let ids = vec![id_text(id)];
        let present = async move { Ok(Self::present(&collection, ids).await?.len()) };
        let answer_of: fn(usize, Response) -> Response =
            |present, _| Response::Present(present > 0);
        self.start(
            now,
            "collection_get",
            "get".into(),
            model,
            answer_of,
            present,
        )
    }

    fn update(
        &mut self,
        now: Instant,
        invocation: InvocationId,
        records: &[RecordPatch],
        model: Response,
    ) -> Response {
        let Some(collection) = self.working(invocation) else {
            return self.answer("update", Response::Failed(Failure::NotFound), model);
        };
        let entries = CollectionEntries {
            ids: records.iter().map(|(id, _)| id_text(*id)).collect(),
            metadatas: Some(
                records
                    .iter()
                    .map(|(_, patch)| patch_metadata(patch))
                    .collect(),
            ),
            ..Default::default()
        };
        let updated = async move {
            let present = Self::present(&collection, entries.ids.clone()).await?;
            if !entries.ids.is_empty() {
                collection.update(&entries).await?;
            }
            Ok::<usize, ChromaError>(present.len())
        };
        let answer_of: fn(usize, Response) -> Response = |present, model| match model {
            Response::Done => Response::Done,
            _ => Response::Touched(present as u64),
        };
        self.start(
            now,
            "collection_update",
            "update".into(),
            model,
            answer_of,
            updated,
        )
    }
}

impl Performer for LivePerformer {
    const RECORDS: bool = true;
    fn measured_timing(&self) -> bool {
        self.settings.timing == Timing::Real
    }
    fn take_measured(&mut self) -> Duration {
        let measured = std::mem::take(&mut self.measured);
        self.scaled(measured)
    }
    fn take_started(&mut self) -> Option<u64> {
        self.started.take()
    }
    fn complete_until(
        &mut self,
        mut until: Option<Instant>,
        ended: &mut Vec<Completion>,
    ) -> Option<Instant> {
        // An ended operation's step comes no later than its issue plus its duration: the others
        // need only be waited for until then.
        let lower = |until: &mut Option<Instant>, (completion, issued): &(Completion, Instant)| {
            let at = issued.add(completion.duration);
            *until = Some(until.map_or(at, |until| until.min(at)));
        };
        for _ in 0..COMPLETION_WAITS_MAX {
            while let Ok(result) = self.ended.1.try_recv() {
                if let Some(end) = self.end(result, std::time::Instant::now()) {
                    lower(&mut until, &end);
                    ended.push(end.0);
                }
            }
            if self.in_flight.is_empty() {
                return until;
            }
            let wake = until.map(|until| self.bound_reached_at(until));
            if wake.is_some_and(|wake| std::time::Instant::now() >= wake) {
                return until;
            }
            let receiver = &mut self.ended.1;
            let result = self.runtime.block_on(async {
                match wake {
                    Some(wake) => tokio::time::timeout_at(wake.into(), receiver.recv())
                        .await
                        .ok()
                        .flatten(),
                    None => receiver.recv().await,
                }
            });
            if let Some(result) = result
                && let Some(end) = self.end(result, std::time::Instant::now())
            {
                lower(&mut until, &end);
                ended.push(end.0);
            }
        }
        until
    }
}

/// Chroma's upsert for `Merge` (present keys win, the others are kept, a zero field deleted by a
/// following update); `Replace` deletes the ids first and adds the records whole.
async fn upsert(
    collection: ChromaCollection,
    records: Vec<Record>,
    mode: UpsertMode,
) -> Result<(), ChromaError> {
    if records.is_empty() {
        return Ok(());
    }
    match mode {
        UpsertMode::Replace => {
            let ids = records.iter().map(|record| record.id.clone()).collect();
            collection.delete(Some(ids), None).await?;
            collection.add(&entries_of(&records, true)).await
        }
        UpsertMode::Merge => collection.upsert(&entries_of(&records, true)).await,
    }
}

/// The id as Chroma and the records name it: the packed id in hex.
fn id_text(id: ChromaId) -> String {
    format!("{:016x}", id.0)
}

const KIND_KEY: &str = "kind";
const MERCHANT_KEY: &str = "merchant";
const LABEL_KEYS: [&str; 4] = [
    "labels_valid",
    "labels_invalid",
    "labels_other",
    "labels_detail",
];

fn label_values(labels: LabelFields) -> [i64; 4] {
    [
        i64::from(labels.valid),
        i64::from(labels.invalid),
        i64::from(labels.other),
        i64::from(labels.detail),
    ]
}

/// The embedding of an id: deterministic filler of the chosen dimension.
fn embedding_of(id: ChromaId, dimension: u32) -> Vec<f32> {
    let mut state = sim::random::mix64(id.0) | 1;
    (0..dimension)
        .map(|_| {
            state = sim::random::mix64(state);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// A record holding `fields`: absent fields (a zero merchant, empty labels) are absent keys.
fn record_of(id: ChromaId, fields: EntryFields, dimension: u32) -> Record {
    let kind = if id.is_word() { "word" } else { "line" };
    let mut metadata = vec![(KIND_KEY.to_string(), MetaValue::Text(kind.to_string()))];
    if fields.merchant != 0 {
        metadata.push((
            MERCHANT_KEY.to_string(),
            MetaValue::Integer(i64::from(fields.merchant)),
        ));
    }
    if !fields.labels.is_empty() {
        for (key, value) in LABEL_KEYS.iter().zip(label_values(fields.labels)) {
            if value != 0 {
                metadata.push((key.to_string(), MetaValue::Integer(value)));
            }
        }
    }
    Record {
        id: id_text(id),
        embedding: embedding_of(id, dimension),
        metadata,
    }
}

/// The id and fields a record holds.
fn entry_of(record: &Record) -> Result<(ChromaId, EntryFields), String> {
    let id = u64::from_str_radix(&record.id, 16)
        .map_err(|_| format!("record id {:?} is not a packed id", record.id))?;
    let integer = |key: &str| {
        record
            .metadata
            .iter()
            .find_map(|(name, value)| match value {
                MetaValue::Integer(value) if name == key => Some(*value),
                _ => None,
            })
    };
    let field = |key: &str| integer(key).unwrap_or(0);
    let labels = LabelFields {
        valid: field(LABEL_KEYS[0]) as u16,
        invalid: field(LABEL_KEYS[1]) as u16,
        other: field(LABEL_KEYS[2]) as u16,
        detail: field(LABEL_KEYS[3]) as u32,
    };
    Ok((
        ChromaId(id),
        EntryFields {
            merchant: field(MERCHANT_KEY) as u32,
            labels,
        },
    ))
}

/// An update's metadata: the patch's present fields, a zero value as `null` (the key deleted).
fn patch_metadata(patch: &EntryPatch) -> Metadata {
    let mut metadata = Metadata::new();
    let value = |value: i64| {
        if value == 0 {
            Value::Null
        } else {
            Value::from(value)
        }
    };
    if let Some(merchant) = patch.merchant {
        metadata.insert(MERCHANT_KEY.to_string(), value(i64::from(merchant)));
    }
    if let Some(labels) = patch.labels {
        for (key, field) in LABEL_KEYS.iter().zip(label_values(labels)) {
            metadata.insert(key.to_string(), value(field));
        }
    }
    metadata
}

/// Chroma entries of records (with their embeddings when `embeddings`).
fn entries_of(records: &[Record], embeddings: bool) -> CollectionEntries {
    CollectionEntries {
        ids: records.iter().map(|record| record.id.clone()).collect(),
        embeddings: embeddings.then(|| {
            records
                .iter()
                .map(|record| record.embedding.clone())
                .collect()
        }),
        metadatas: Some(
            records
                .iter()
                .map(|record| {
                    let mut metadata = Metadata::new();
                    for (key, value) in &record.metadata {
                        metadata.insert(key.clone(), json_of(value));
                    }
                    metadata
                })
                .collect(),
        ),
        documents: None,
    }
}

fn json_of(value: &MetaValue) -> Value {
    match value {
        MetaValue::Text(text) => Value::from(text.clone()),
        MetaValue::Integer(integer) => Value::from(*integer),
        MetaValue::Float(float) => Value::from(*float),
        MetaValue::Bool(flag) => Value::from(*flag),
    }
}

/// A Chroma record's metadata as the codec keeps it, keys in order.
fn metadata_record(metadata: Option<Metadata>) -> Vec<(String, MetaValue)> {
    let mut entries: Vec<(String, MetaValue)> = metadata
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(key, value)| {
            let value = match value {
                Value::String(text) => MetaValue::Text(text),
                Value::Bool(flag) => MetaValue::Bool(flag),
                Value::Number(number) => match number.as_i64() {
                    Some(integer) => MetaValue::Integer(integer),
                    None => MetaValue::Float(number.as_f64()?),
                },
                _ => return None,
            };
            Some((key, value))
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

fn encode(records: &[(ChromaId, EntryFields)], dimension: u32) -> Vec<u8> {
    let records = records
        .iter()
        .map(|(id, fields)| record_of(*id, *fields, dimension))
        .collect();
    encode_kind(Kind::Snapshot, records, dimension)
}

fn encode_kind(kind: Kind, records: Vec<Record>, dimension: u32) -> Vec<u8> {
    codec::encode(&Records {
        kind,
        dimension,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_the_fields_they_were_made_of() {
        let id = ChromaId::word(3, 2, 1);
        let fields = EntryFields {
            merchant: 7,
            labels: LabelFields {
                valid: 1,
                invalid: 0,
                other: 4,
                detail: 99,
            },
        };
        let record = record_of(id, fields, 8);
        assert_eq!(record.embedding.len(), 8);
        assert_eq!(entry_of(&record), Ok((id, fields)));
        let empty = record_of(id, EntryFields::default(), 8);
        assert_eq!(empty.metadata.len(), 1, "absent fields are absent keys");
        assert_eq!(entry_of(&empty), Ok((id, EntryFields::default())));
    }

    #[test]
    fn an_update_deletes_a_zero_field_and_leaves_absent_ones_alone() {
        let patch = EntryPatch {
            merchant: Some(0),
            labels: None,
        };
        let metadata = patch_metadata(&patch);
        assert_eq!(metadata.len(), 1);
        assert_eq!(metadata[MERCHANT_KEY], Value::Null);
    }
}
