//! The vocabulary between the pipeline's state machines and whatever performs their operations:
//! messages, object keys, the `Effect` a component asks for and the `Response` it is handed back.
//!
//! Every data-plane operation (object get and put, pointer read and promotion, lock operations,
//! table reads and writes, collection get/update/upsert, message sends) is an `Effect`, so a live
//! driver can perform the same operations against a real object store and Chroma server. Effects
//! name receipts, words and collections by the compact ids of `entities`; the performer owns the
//! data (the table, the working copy). Depends on `entities`, `time`, `random` and `workload`.

use crate::entities::{Collection, LabelFields, ReceiptIndex};
use crate::random::mix64;
use crate::time::{Duration, Instant};
use crate::workload::WordRef;

/// A snapshot version id: `floor(publish time / resolution)`, shown as `YYYYmmdd_HHMMSS`.
pub type VersionId = u64;

/// An etag as the state machines hold it: an opaque handle the performer hands out with a pointer
/// read and maps back on a conditional write (a live store's etags are strings).
pub type EtagHandle = u64;

/// A receipt's state as one table query read it (`TableRead::ReceiptState`), kept by the performer
/// under this handle until the `CollectionOp::WriteTableState` that hands it back writes it.
pub type TableStateHandle = u64;

/// A component of the pipeline as a sans-IO state machine: asked for the next effect, handed
/// each effect's answer, asked whether it has finished. The upload, the stream processor and the
/// compaction implement it; whatever drives them (the simulation's driver, a test) knows them
/// through it, and the notes each writes, its own type, through its own `poll_note`.
pub trait Component {
    /// The next effect, or `None` while one is outstanding or when the component is done.
    fn poll_effect(&mut self) -> Option<Effect>;
    /// The answer to the outstanding effect.
    fn handle_response(&mut self, now: Instant, response: Response);
    fn is_done(&self) -> bool;
}

/// A lock owner id, handed out by the lock on every successful acquisition.
pub type LockOwner = u64;

pub use crate::services::table::{EventName, RunState};

/// What a queue message asks the compaction to do.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// A CompactionRun INSERT: merge the receipt's delta into this collection.
    RunDelta,
    /// A CompactionRun marked COMPLETED (the "run completed" message): nothing to apply.
    RunCompleted,
    /// A label item (the word's label `label`) changed (INSERT forwarded, MODIFY) or went (REMOVE).
    Label {
        word: WordRef,
        label: u8,
        event: EventName,
    },
    /// ReceiptMetadata changed: set the merchant of the receipt's ids (`None` deletes it).
    Metadata {
        merchant: Option<u32>,
        event: EventName,
    },
}

/// One queue message, as the stream processor builds it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageKind,
    pub receipt: ReceiptIndex,
    pub collection: Collection,
    /// The stream record the message came from.
    pub record_sequence: u64,
    /// The send time (part of the body, so a re-send is never deduplicated).
    pub sent_at: Instant,
    /// FIFO message group key digest.
    pub group: u64,
}

impl Message {
    /// The content-based deduplication digest of the body.
    pub fn content_digest(&self) -> u64 {
        let kind = match self.kind {
            MessageKind::RunDelta => 1,
            MessageKind::RunCompleted => 2,
            MessageKind::Label { word, label, event } => {
                3 ^ u64::from(word.line) << 8
                    ^ u64::from(word.word) << 24
                    ^ (event as u64) << 40
                    ^ u64::from(label) << 48
            }
            MessageKind::Metadata { merchant, event } => {
                4 ^ u64::from(merchant.unwrap_or(0)) << 8 ^ (event as u64) << 40
            }
        };
        mix64(
            kind ^ mix64(u64::from(self.receipt))
                ^ mix64(self.record_sequence ^ (self.collection as u64) << 62)
                ^ self.sent_at.as_nanos().rotate_left(17),
        )
    }
    /// Whether the message is a label REMOVE (ordered first under `removals_first`).
    pub fn is_label_removal(&self) -> bool {
        matches!(
            self.kind,
            MessageKind::Label {
                event: EventName::Remove,
                ..
            }
        )
    }
    /// Rank in a compaction batch: merges, then metadata, then labels.
    pub fn apply_rank(&self) -> u8 {
        match self.kind {
            MessageKind::RunDelta => 0,
            MessageKind::RunCompleted => 0,
            MessageKind::Metadata { .. } => 1,
            MessageKind::Label { .. } => 2,
        }
    }
}

/// Objects in the bucket.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ObjectKey {
    /// `{collection}/delta/{run_id}/delta.tar.gz`.
    Delta {
        collection: Collection,
        receipt: ReceiptIndex,
    },
    /// `{collection}/snapshot/timestamped/{version}/`.
    Snapshot {
        collection: Collection,
        version: VersionId,
    },
}

/// Off-box work whose duration the performer decides.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Work {
    Ocr,
    MerchantResolution,
    Embedding,
    Langgraph,
    /// Routing one stream record batch of this many records.
    RouteRecords(u32),
    /// The unlocked in-memory work of one batch that touched this many ids.
    Apply {
        ids: u64,
    },
}

/// DynamoDB reads.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TableRead {
    /// The receipt's CompactionRun states.
    RunState { receipt: ReceiptIndex },
    /// The label fields derived from all current label items of the word.
    WordLabels {
        receipt: ReceiptIndex,
        word: WordRef,
    },
    /// One query of the receipt's partition: all its label items and its ReceiptMetadata,
    /// answered by `Response::TableState`, whose handle names what was read.
    ReceiptState { receipt: ReceiptIndex },
}

/// DynamoDB writes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TableWrite {
    /// The OCR'd lines and words of the receipt.
    OcrResult { receipt: ReceiptIndex },
    /// ReceiptMetadata with the resolved merchant (an INSERT).
    Metadata { receipt: ReceiptIndex },
    /// The CompactionRun with both states PENDING (an INSERT).
    RunInsert { receipt: ReceiptIndex },
    /// A run state update by the compaction.
    RunState {
        receipt: ReceiptIndex,
        collection: Collection,
        state: RunState,
    },
    /// LangGraph's new labels: unconditional puts, PENDING.
    ProposedLabels { receipt: ReceiptIndex },
    /// LangGraph's changed labels: conditional puts on the existing items.
    ChangedLabels { receipt: ReceiptIndex },
    /// LangGraph's merchant correction: a ReceiptMetadata MODIFY.
    MerchantCorrection { receipt: ReceiptIndex },
}

impl TableWrite {
    /// The receipt the write is about.
    pub fn receipt(&self) -> ReceiptIndex {
        match *self {
            TableWrite::OcrResult { receipt }
            | TableWrite::Metadata { receipt }
            | TableWrite::RunInsert { receipt }
            | TableWrite::RunState { receipt, .. }
            | TableWrite::ProposedLabels { receipt }
            | TableWrite::ChangedLabels { receipt }
            | TableWrite::MerchantCorrection { receipt } => receipt,
        }
    }
}

/// Operations on the invocation's working copy (a local Chroma collection).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CollectionOp {
    /// Upsert the records of the receipt's delta (downloaded by `GetObject` just before).
    UpsertDelta { receipt: ReceiptIndex },
    /// Whether the word's id is present.
    GetWord {
        receipt: ReceiptIndex,
        word: WordRef,
    },
    /// Overwrite the word's label fields (an update: a missing id is ignored).
    UpdateLabels {
        receipt: ReceiptIndex,
        word: WordRef,
        fields: LabelFields,
    },
    /// Delete every label field of the word.
    DeleteLabels {
        receipt: ReceiptIndex,
        word: WordRef,
    },
    /// Set the merchant of the receipt's ids that are present (ids from the table's current
    /// words or lines of the receipt); `None` deletes the field.
    UpdateReceiptMerchant {
        receipt: ReceiptIndex,
        merchant: Option<u32>,
    },
    /// Write what a `TableRead::ReceiptState` read (`state`, the handle of its answer) onto the
    /// ids of the receipt's merged delta: each word's label fields derived from its label items,
    /// and the merchant on every id (answered `Touched`).
    WriteTableState {
        receipt: ReceiptIndex,
        state: TableStateHandle,
    },
}

/// What a component asks to be done. Exactly one effect is outstanding per component at a time;
/// the answer comes back through the component's `handle_response`.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Work(Work),
    /// Wake me after this long.
    Sleep(Duration),
    /// Download (and unpack) an object: `Done`, or `Failed` if it is missing or unreadable.
    GetObject(ObjectKey),
    /// Upload an object; for a snapshot, the invocation's working copy under the version id of
    /// the upload time (answered by `Response::Published`; the key's version is ignored).
    PutObject(ObjectKey),
    ReadPointer(Collection),
    /// Promote the pointer to `version`; with `expected_etag` a compare-and-swap, else blind.
    WritePointer {
        collection: Collection,
        version: VersionId,
        expected_etag: Option<EtagHandle>,
    },
    /// Take the collection's lease lock (a conditional put); answered by `Response::Lock`.
    LockAcquire {
        collection: Collection,
        lease: Duration,
    },
    LockRelease {
        collection: Collection,
        owner: LockOwner,
    },
    /// Read the lock item (owner and expiry): answered by `Response::Lock` with `owner` if it
    /// still holds an unexpired lease, else `None`. A read, so the answer may be stale by the time
    /// the holder acts on it.
    LockValidate {
        collection: Collection,
        owner: LockOwner,
    },
    /// Start (or stop, with `interval` zero) heartbeating a held lock in the background.
    LockHeartbeat {
        collection: Collection,
        owner: LockOwner,
        interval: Duration,
    },
    TableRead(TableRead),
    TableWrite(TableWrite),
    Collection(CollectionOp),
    /// Copy the cached snapshot of the version (`None`: the empty snapshot) into a fresh working
    /// copy; a version no longer cached is downloaded again.
    OpenWorkingCopy {
        collection: Collection,
        version: Option<VersionId>,
    },
    /// Look the version up in the file cache, downloading it if absent.
    CacheLoad {
        collection: Collection,
        version: Option<VersionId>,
    },
    /// Put the published working copy into the file cache under its version id.
    CacheStore {
        collection: Collection,
        version: VersionId,
    },
    SendMessages {
        collection: Collection,
        messages: Vec<Message>,
    },
}

/// Why an effect failed, as the services say it: every effect can fail in one of these ways.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The object, key or item is not there (a 404, a pruned version, a missing delta).
    NotFound,
    /// A conditional write lost (an etag or condition did not match).
    PreconditionFailed,
    /// The service refused for rate (a 429, `ProvisionedThroughputExceeded`, `SlowDown`).
    Throttled,
    /// No answer in time.
    TimedOut,
    /// The service failed or could not be reached (a 5xx, a connection error).
    Unavailable,
}

/// The answer to an effect.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Done,
    /// The operation failed, and why.
    Failed(Failure),
    /// The pointer: its version id (`None` before the first publish) and etag.
    Pointer {
        version: Option<VersionId>,
        etag: EtagHandle,
    },
    /// A lock answer: the new owner id, or `None` when the lock is busy.
    Lock {
        owner: Option<LockOwner>,
    },
    RunState {
        lines: RunState,
        words: RunState,
    },
    WordLabels(LabelFields),
    /// A receipt's state was read (`TableRead::ReceiptState`), kept under this handle.
    TableState(TableStateHandle),
    /// Whether an id was present / how many ids an update touched.
    Present(bool),
    Touched(u64),
    /// Size of a snapshot in ids (for a cache load or working copy), or ids a delta upserted.
    Entries(u64),
    /// A snapshot upload landed under this version id.
    Published {
        version: VersionId,
    },
}

impl Response {
    pub fn is_failure(&self) -> bool {
        matches!(self, Response::Failed(_))
    }
}
