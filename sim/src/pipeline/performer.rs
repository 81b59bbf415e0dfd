//! The performer seam: the data-plane operations of the object store (deltas, snapshots, the
//! pointer) and of Chroma (each compaction invocation's working copy), one trait per resource.
//!
//! The driver performs every data-plane effect through these traits. It first answers the effect
//! on the service models (the simulated object store and working copy, which the cost model and
//! "labels visible" read), then hands the models' answer to the performer, and the performer's
//! answer is what the state machine sees. `Simulated` performs nothing more: it hands the models'
//! answer back, inlined, so the simulated path costs what it did before the seam. A live performer
//! (the binary's) performs the same operation against real servers and answers from what they
//! said; any answer may be `Response::Failed` with a `Failure`, as the services say it.
//!
//! Handles are opaque: an etag in `Response::Pointer` and `Effect::WritePointer` is a number the
//! performer hands out and maps back to whatever its store uses (object_store's strings for a live
//! one). Version ids are the pipeline's own (timestamps at the configured resolution).
//!
//! Performers do no scheduling and read no clock of the trial's: `now` is virtual time, for naming.
//! The timing hook is the one exception a performer may choose: in measured timing
//! (`Performer::measured_timing`) the driver performs a data-plane effect when it is issued and
//! hands its answer back after the virtual duration `Performer::take_measured` reports (the live
//! performer's wall-clock measurement, scaled), instead of the model's sampled duration. The core
//! itself still reads no clock: the duration is a number the performer hands over.
//!
//! A measured performer may also *start* an operation rather than perform it (`take_started`
//! names it; what the call returned is then no answer): the driver schedules nothing for it, and
//! before each event it asks for the completions that could come before that event's time
//! (`complete_until`, conservative lookahead), scheduling each at its issue plus its duration.
//! The virtual times go in, durations come out: the performer alone reads a clock.
//! Depends on `entities`, `services::collection` (patches), `time` and `pipeline::effect`.

use crate::entities::{ChromaId, Collection, ReceiptIndex};
use crate::pipeline::effect::{EtagHandle, Response, VersionId};
use crate::services::collection::{EntryPatch, UpsertMode};
use crate::time::{Duration, Instant};

/// A compaction invocation, by its id: the owner of one working copy.
pub type InvocationId = u64;

/// An id and the fields a record writes on it (a delta's record, or an update).
pub type RecordPatch = (ChromaId, EntryPatch);

/// The bucket: deltas, snapshot versions and the pointer of each collection.
pub trait ObjectStorePerformer {
    /// Uploads the delta of a receipt's run. `records` is what it holds: filled only when the
    /// performer asks for records (`Performer::RECORDS`), empty otherwise.
    fn put_delta(
        &mut self,
        now: Instant,
        collection: Collection,
        receipt: ReceiptIndex,
        run: u32,
        records: &[RecordPatch],
        model: Response,
    ) -> Response;
    /// Downloads the delta of a receipt's run for the invocation's next `upsert_delta`.
    fn get_delta(
        &mut self,
        now: Instant,
        invocation: InvocationId,
        collection: Collection,
        receipt: ReceiptIndex,
        run: u32,
        model: Response,
    ) -> Response;
    /// Reads the pointer (`Response::Pointer` with an etag handle).
    fn read_pointer(&mut self, now: Instant, collection: Collection, model: Response) -> Response;
    /// Uploads the invocation's working copy as snapshot `version` (`Response::Published`).
    fn put_snapshot(
        &mut self,
        now: Instant,
        invocation: InvocationId,
        collection: Collection,
        version: VersionId,
        model: Response,
    ) -> Response;
    /// Promotes the pointer to `version`: a compare-and-swap on `expected` (a handle a
    /// `read_pointer` answered), else a plain overwrite.
    fn write_pointer(
        &mut self,
        now: Instant,
        collection: Collection,
        version: VersionId,
        expected: Option<EtagHandle>,
        model: Response,
    ) -> Response;
    /// Deletes snapshot versions the retention pruned.
    fn delete_snapshots(&mut self, now: Instant, collection: Collection, versions: &[VersionId]);
    /// The models' etag of the pointer read that answered `handle` (the models' compare-and-swap
    /// compares their own etags).
    fn model_etag(&self, handle: EtagHandle) -> EtagHandle;
}

/// Chroma: one working collection per compaction invocation, never shared.
pub trait CollectionPerformer {
    /// Loads snapshot `version` (`None`: the empty snapshot) into a new working copy of the
    /// invocation (`Response::Entries`: its size).
    fn open_working_copy(
        &mut self,
        now: Instant,
        invocation: InvocationId,
        collection: Collection,
        version: Option<VersionId>,
        model: Response,
    ) -> Response;
    /// Upserts the records of the delta the invocation downloaded last (`Response::Entries`).
    fn upsert_delta(
        &mut self,
        now: Instant,
        invocation: InvocationId,
        receipt: ReceiptIndex,
        mode: UpsertMode,
        model: Response,
    ) -> Response;
    /// Whether `id` is in the working copy (`Response::Present`).
    fn get(
        &mut self,
        now: Instant,
        invocation: InvocationId,
        id: ChromaId,
        model: Response,
    ) -> Response;
    /// Chroma `update` of each record: present ids merge it, missing ids are ignored. Answers as
    /// `model` does: `Done`, or `Touched` with the count of present ids.
    fn update(
        &mut self,
        now: Instant,
        invocation: InvocationId,
        records: &[RecordPatch],
        model: Response,
    ) -> Response;
}

/// A started operation's end: the ticket `take_started` named, its answer and its virtual
/// duration from its issue.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Completion {
    pub ticket: u64,
    pub answer: Response,
    pub duration: Duration,
}

/// Everything the driver performs effects on, beyond the models.
pub trait Performer: ObjectStorePerformer + CollectionPerformer {
    /// Whether `put_delta` and `update` need their records (the driver builds them only then).
    const RECORDS: bool;
    /// Whether data-plane effects take the virtual time `take_measured` reports rather than the
    /// model's: the driver then performs each such effect when it is issued and answers it after
    /// that duration. `false`: every effect takes the model's time (the pure simulation's).
    #[inline(always)]
    fn measured_timing(&self) -> bool {
        false
    }
    /// The virtual time the operations performed since the last call took, and resets it.
    #[inline(always)]
    fn take_measured(&mut self) -> Duration {
        Duration::ZERO
    }
    /// The ticket of the operation the last call started rather than performed, if it did.
    #[inline(always)]
    fn take_started(&mut self) -> Option<u64> {
        None
    }
    /// Waits until every started operation has ended or cannot end before virtual time `until`
    /// (`None`: no bound), appends the ended ones, and answers the time before which no
    /// operation still in flight ends (at most `until`: the performer may lower it to an ended
    /// one's end, to hand that one over sooner).
    #[inline(always)]
    fn complete_until(
        &mut self,
        until: Option<Instant>,
        _ended: &mut Vec<Completion>,
    ) -> Option<Instant> {
        until
    }
}

/// The simulated performer: the service models' answers are the answers.
#[derive(Copy, Clone, Debug, Default)]
pub struct Simulated;

impl ObjectStorePerformer for Simulated {
    #[inline(always)]
    fn put_delta(
        &mut self,
        _: Instant,
        _: Collection,
        _: ReceiptIndex,
        _: u32,
        _: &[RecordPatch],
        model: Response,
    ) -> Response {
        model
    }
    #[inline(always)]
    fn get_delta(
        &mut self,
        _: Instant,
        _: InvocationId,
        _: Collection,
        _: ReceiptIndex,
        _: u32,
        model: Response,
    ) -> Response {
        model
    }
    #[inline(always)]
    fn read_pointer(&mut self, _: Instant, _: Collection, model: Response) -> Response {
        model
    }
    #[inline(always)]
    fn put_snapshot(
        &mut self,
        _: Instant,
        _: InvocationId,
        _: Collection,
        _: VersionId,
        model: Response,
    ) -> Response {
        model
    }
    #[inline(always)]
    fn write_pointer(
        &mut self,
        _: Instant,
        _: Collection,
        _: VersionId,
        _: Option<EtagHandle>,
        model: Response,
    ) -> Response {
        model
    }
    #[inline(always)]
    fn delete_snapshots(&mut self, _: Instant, _: Collection, _: &[VersionId]) {}
    #[inline(always)]
    fn model_etag(&self, handle: EtagHandle) -> EtagHandle {
        handle
    }
}

impl CollectionPerformer for Simulated {
    #[inline(always)]
    fn open_working_copy(
        &mut self,
        _: Instant,
        _: InvocationId,
        _: Collection,
        _: Option<VersionId>,
        model: Response,
    ) -> Response {
        model
    }
    #[inline(always)]
    fn upsert_delta(
        &mut self,
        _: Instant,
        _: InvocationId,
        _: ReceiptIndex,
        _: UpsertMode,
        model: Response,
    ) -> Response {
        model
    }
    #[inline(always)]
    fn get(&mut self, _: Instant, _: InvocationId, _: ChromaId, model: Response) -> Response {
        model
    }
    #[inline(always)]
    fn update(
        &mut self,
        _: Instant,
        _: InvocationId,
        _: &[RecordPatch],
        model: Response,
    ) -> Response {
        model
    }
}

impl Performer for Simulated {
    const RECORDS: bool = false;
}
