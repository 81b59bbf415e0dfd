//! The compaction Lambda: one invocation takes a batch of one collection's queue and folds it into
//! the collection's snapshot.
//!
//! Steps (PIPELINE.md section 5): read the pointer without the lock and make sure that version is in
//! the file cache; quick check under the lock (busy: every message fails at once; pointer moved:
//! likewise); copy the cached snapshot and apply merges, then metadata, then labels without the
//! lock; publish under the lock (tries with delays, heartbeat while held, re-read the pointer,
//! upload the new version, promote the pointer by compare-and-swap or blind overwrite); mark runs;
//! write the new version back to the cache. With `sync_from_table_on_merge`, each merge is followed
//! by a read of the receipt's label items and metadata from the table, written onto the merged ids.
//!
//! A sans-IO state machine: one outstanding effect at a time, `poll_note` for the metrics, and
//! `outcomes` per message at the end. The driver reports them to the queue (per item or whole
//! batch). Its settings are the behaviour part's `config::CompactionBehaviour`, a clone per
//! invocation that shares the retry delays. Depends on `effect`, `config`, `entities` and
//! `metrics`.

use super::config::{
    CompactionBehaviour, DriftCheck, InBatchOrdering, MissingId, OwnershipCheck, PointerPromotion,
    StallPoint,
};
use super::effect::{
    CollectionOp, Component, Effect, Failure, LockOwner, Message, MessageKind, ObjectKey, Response,
    RunState, TableRead, TableStateHandle, TableWrite, VersionId, Work,
};
use crate::entities::{Collection, LabelFields};
use crate::metrics::Stage;
use crate::time::{Duration, Instant};
use std::collections::VecDeque;

/// How one message of the batch ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not decided yet (the invocation is still running or was killed).
    Open,
    Done,
    Failed,
}

/// Why an invocation failed its messages, or what it did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CompactionNote {
    Stage(Stage, Duration),
    /// The lock was busy at the quick check.
    BusyAtQuickCheck,
    /// The lock was busy at every try at publish.
    BusyAtPublish,
    /// The pointer moved between the first read and the quick check.
    PointerMovedAtQuickCheck,
    /// The pointer moved between the first read and publish.
    PointerMovedAtPublish,
    /// The compare-and-swap promotion failed.
    PointerConflict,
    /// The ownership re-check found the lock no longer this invocation's (taken over or expired).
    OwnershipLost,
    /// A delta could not be downloaded, unpacked or upserted; the message still counts as done.
    DeltaLost(usize),
    /// A label message found no embedding for its word.
    EmbeddingNotFound(usize),
    /// A metadata message found none of the receipt's ids.
    MetadataDropped(usize),
    /// A label or metadata message's read or write failed (or, under the sync-on-merge fix, the
    /// receipt state's); logged.
    UpdateFailed(usize),
    /// The snapshot was uploaded under this version id and the pointer promoted to it.
    Published {
        version: VersionId,
    },
    /// The snapshot version to start from could not be downloaded (pruned meanwhile).
    SnapshotMissing,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Step {
    ReadPointer,
    CacheLoad,
    QuickLock,
    QuickReread,
    QuickRelease {
        failing: bool,
    },
    OpenWorkingCopy,
    /// Applying `order[position]`; `phase` counts the sub-steps of one message.
    Apply {
        position: usize,
        phase: u8,
    },
    ApplyWork,
    PublishLock {
        tries: usize,
    },
    PublishSleep {
        tries: usize,
    },
    HeartbeatStart,
    PublishReread,
    /// The ownership re-check before the upload (`then_promote` false) or the pointer write.
    ValidateOwnership {
        then_promote: bool,
    },
    Upload,
    Promote,
    HeartbeatStop {
        failing: bool,
    },
    PublishRelease {
        failing: bool,
    },
    MarkCompleted {
        position: usize,
    },
    WriteBack,
    Done,
}

/// One invocation of the compaction Lambda over one collection's batch.
#[derive(Clone, Debug)]
pub struct CompactionInvocation {
    behaviour: CompactionBehaviour,
    collection: Collection,
    messages: Vec<Message>,
    /// Message indices in apply order (duplicates skipped under `deduplicate`).
    order: Vec<usize>,
    outcomes: Vec<Outcome>,
    step: Step,
    outstanding: bool,
    started: Instant,
    step_started: Instant,
    pointer: (Option<VersionId>, u64),
    owner: Option<LockOwner>,
    version: VersionId,
    ids_touched: u64,
    /// The label fields read for the label message being applied.
    pending_fields: LabelFields,
    /// The receipt state read for the delta being synced (sync on merge).
    pending_table_state: TableStateHandle,
    lock_wait_started: Instant,
    /// When the snapshot upload began (the publish stage is upload plus promotion).
    publish_started: Instant,
    notes: VecDeque<CompactionNote>,
}

/// An invocation's vectors: its batch, and what it derives from it. An ended invocation hands
/// them over emptied (`CompactionInvocation::take_vectors`) so that the next one allocates none.
#[derive(Clone, Debug, Default)]
pub struct CompactionVectors {
    /// The batch's messages (emptied when taken; the caller fills them).
    pub messages: Vec<Message>,
    order: Vec<usize>,
    outcomes: Vec<Outcome>,
    notes: VecDeque<CompactionNote>,
}

impl CompactionInvocation {
    pub fn new(
        now: Instant,
        behaviour: CompactionBehaviour,
        collection: Collection,
        messages: Vec<Message>,
    ) -> Self {
        let vectors = CompactionVectors {
            messages,
            ..CompactionVectors::default()
        };
        CompactionInvocation::reusing(now, behaviour, collection, vectors)
    }

    /// `new` over the batch `vectors.messages`, keeping its other vectors' storage.
    pub fn reusing(
        now: Instant,
        behaviour: CompactionBehaviour,
        collection: Collection,
        vectors: CompactionVectors,
    ) -> Self {
        let CompactionVectors {
            messages,
            mut order,
            mut outcomes,
            mut notes,
        } = vectors;
        assert!(
            !messages.is_empty(),
            "an invocation holds at least one message"
        );
        assert!(
            messages
                .iter()
                .all(|message| message.collection == collection),
            "one collection per batch"
        );
        apply_order_into(
            &mut order,
            &messages,
            behaviour.in_batch_ordering,
            behaviour.deduplicate,
        );
        // A batch with nothing to apply (only "run completed" messages) is done at once.
        let applies = order
            .iter()
            .any(|index| messages[*index].kind != MessageKind::RunCompleted);
        outcomes.clear();
        outcomes.extend((0..messages.len()).map(|index| {
            if applies && order.contains(&index) {
                Outcome::Open
            } else {
                Outcome::Done
            }
        }));
        notes.clear();
        notes.reserve(4);
        CompactionInvocation {
            behaviour,
            collection,
            messages,
            order,
            outcomes,
            step: if applies {
                Step::ReadPointer
            } else {
                Step::Done
            },
            outstanding: false,
            started: now,
            step_started: now,
            pointer: (None, 0),
            owner: None,
            version: 0,
            ids_touched: 0,
            pending_fields: LabelFields::default(),
            pending_table_state: 0,
            lock_wait_started: now,
            publish_started: now,
            notes,
        }
    }

    /// The invocation's vectors, emptied, for a later one (`reusing`); it holds none after.
    pub fn take_vectors(&mut self) -> CompactionVectors {
        let mut vectors = CompactionVectors {
            messages: std::mem::take(&mut self.messages),
            order: std::mem::take(&mut self.order),
            outcomes: std::mem::take(&mut self.outcomes),
            notes: std::mem::take(&mut self.notes),
        };
        vectors.messages.clear();
        vectors.order.clear();
        vectors.outcomes.clear();
        vectors.notes.clear();
        vectors
    }

    pub fn collection(&self) -> Collection {
        self.collection
    }
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }
    /// The lock owner while the invocation holds the lock.
    pub fn owner(&self) -> Option<LockOwner> {
        self.owner
    }
    /// Whether the effect the invocation asks for next is the one an injected stall delays:
    /// the first try to take the publish lock (`BeforePublish`), or the pointer re-read under the
    /// lock (`HoldingLock`).
    pub fn at_stall_point(&self, point: StallPoint) -> bool {
        match point {
            StallPoint::BeforePublish => self.step == Step::PublishLock { tries: 0 },
            StallPoint::HoldingLock => self.step == Step::PublishReread,
            StallPoint::Uploading => self.step == Step::Upload,
        }
    }
    pub fn poll_note(&mut self) -> Option<CompactionNote> {
        self.notes.pop_front()
    }

    fn apply_effect(&self, index: usize, phase: u8) -> Effect {
        let message = &self.messages[index];
        let receipt = message.receipt;
        match (message.kind, phase) {
            (MessageKind::RunDelta, 0) => Effect::TableWrite(TableWrite::RunState {
                receipt,
                collection: self.collection,
                state: RunState::Processing,
            }),
            (MessageKind::RunDelta, 1) => Effect::GetObject(ObjectKey::Delta {
                collection: self.collection,
                receipt,
            }),
            (MessageKind::RunDelta, 2) => Effect::Collection(CollectionOp::UpsertDelta { receipt }),
            (MessageKind::RunDelta, 3) => Effect::TableRead(TableRead::ReceiptState { receipt }),
            (MessageKind::RunDelta, _) => Effect::Collection(CollectionOp::WriteTableState {
                receipt,
                state: self.pending_table_state,
            }),
            (MessageKind::Metadata { merchant, .. }, _) => {
                Effect::Collection(CollectionOp::UpdateReceiptMerchant { receipt, merchant })
            }
            (
                MessageKind::Label {
                    word,
                    event: super::effect::EventName::Remove,
                    ..
                },
                _,
            ) => Effect::Collection(CollectionOp::DeleteLabels { receipt, word }),
            (MessageKind::Label { word, .. }, 0) => {
                Effect::Collection(CollectionOp::GetWord { receipt, word })
            }
            (MessageKind::Label { word, .. }, 1) => {
                Effect::TableRead(TableRead::WordLabels { receipt, word })
            }
            (MessageKind::Label { word, .. }, _) => {
                Effect::Collection(CollectionOp::UpdateLabels {
                    receipt,
                    word,
                    fields: self.pending_fields,
                })
            }
            (MessageKind::RunCompleted, _) => unreachable!("run completed messages apply nothing"),
        }
    }

    fn enter(&mut self, now: Instant, step: Step) {
        self.step = step;
        self.step_started = now;
    }

    fn fail_open(&mut self) {
        for outcome in &mut self.outcomes {
            if *outcome == Outcome::Open {
                *outcome = Outcome::Failed;
            }
        }
    }

    fn finish(&mut self, now: Instant) {
        for outcome in &mut self.outcomes {
            if *outcome == Outcome::Open {
                *outcome = Outcome::Done;
            }
        }
        self.notes.push_back(CompactionNote::Stage(
            Stage::CompactionWork,
            now.since(self.started),
        ));
        self.enter(now, Step::Done);
    }

    fn fail_all(&mut self, now: Instant) {
        self.fail_open();
        self.notes.push_back(CompactionNote::Stage(
            Stage::CompactionWork,
            now.since(self.started),
        ));
        self.enter(now, Step::Done);
    }

    fn handle_publish_lock(&mut self, now: Instant, tries: usize, response: Response) {
        match lock_of(response) {
            Some(owner) => {
                self.owner = Some(owner);
                self.notes.push_back(CompactionNote::Stage(
                    Stage::LockWait,
                    now.since(self.lock_wait_started),
                ));
                let next = if self.behaviour.heartbeat_interval.is_some() {
                    Step::HeartbeatStart
                } else {
                    Step::PublishReread
                };
                self.enter(now, next);
            }
            None if tries < self.behaviour.publish_lock_retry_delays.len() => {
                self.enter(now, Step::PublishSleep { tries: tries + 1 });
            }
            None => {
                self.notes.push_back(CompactionNote::BusyAtPublish);
                self.fail_all(now);
            }
        }
    }

    /// Whether a pointer re-read shows the pointer as first read, by the configured compare: the
    /// version-id text (a reused id looks unchanged) or the etag.
    fn pointer_unchanged(&self, response: Response) -> bool {
        match (pointer_of(response), self.behaviour.drift_check) {
            (None, _) => false,
            (Some((version, _)), DriftCheck::VersionId) => version == self.pointer.0,
            (Some(pointer), DriftCheck::Etag) => pointer == self.pointer,
        }
    }

    /// Goes on to the upload (or the pointer write), through the ownership re-check if on.
    fn validate_then(&mut self, now: Instant, then_promote: bool) {
        let next = match self.behaviour.ownership_check {
            OwnershipCheck::BeforeUploadAndPointer => Step::ValidateOwnership { then_promote },
            OwnershipCheck::Off if then_promote => Step::Promote,
            OwnershipCheck::Off => Step::Upload,
        };
        self.enter(now, next);
    }

    fn leave_publish(&mut self, now: Instant, failing: bool) {
        if self.behaviour.heartbeat_interval.is_some() {
            self.enter(now, Step::HeartbeatStop { failing });
        } else {
            self.enter(now, Step::PublishRelease { failing });
        }
    }

    fn next_mark(&mut self, now: Instant, from: usize) {
        if self.behaviour.mark_runs {
            let next = (from..self.order.len()).find(|position| {
                let index = self.order[*position];
                self.messages[index].kind == MessageKind::RunDelta
                    && self.outcomes[index] == Outcome::Open
            });
            if let Some(position) = next {
                self.enter(now, Step::MarkCompleted { position });
                return;
            }
        }
        self.enter(now, Step::WriteBack);
    }

    /// Moves to the first sub-step of the message at `position` (or on to the unlocked work).
    fn next_apply(&mut self, now: Instant, position: usize) {
        let mut position = position;
        while position < self.order.len() {
            let message = &self.messages[self.order[position]];
            match message.kind {
                MessageKind::RunCompleted => position += 1,
                MessageKind::RunDelta if !self.behaviour.mark_runs => {
                    self.enter(now, Step::Apply { position, phase: 1 });
                    return;
                }
                _ => {
                    self.enter(now, Step::Apply { position, phase: 0 });
                    return;
                }
            }
        }
        self.enter(now, Step::ApplyWork);
    }

    fn handle_apply(&mut self, now: Instant, position: usize, phase: u8, response: Response) {
        let index = self.order[position];
        match self.messages[index].kind {
            MessageKind::RunDelta => self.handle_delta(now, position, phase, response),
            MessageKind::Metadata { .. } => match response {
                Response::Touched(ids) => {
                    // The code at 54acc5869 (`apply_metadata_updates_in_memory` in
                    // infra/chromadb_compaction/lambdas/compaction/metadata_handler.py) records
                    // `updated_count = 0` as a result and the message counts as done; under
                    // `missing_id = "retry"` it fails and comes back, as a label update does.
                    if ids == 0 {
                        self.notes.push_back(CompactionNote::MetadataDropped(index));
                        self.retry_if_configured(index);
                    }
                    self.ids_touched += ids;
                    self.next_apply(now, position + 1);
                }
                Response::Failed(_) => self.update_failed(now, position),
                other => panic!("a metadata update answered {other:?}"),
            },
            MessageKind::Label {
                event: super::effect::EventName::Remove,
                ..
            } => match response {
                Response::Failed(_) => self.update_failed(now, position),
                _ => {
                    self.ids_touched += 1;
                    self.next_apply(now, position + 1);
                }
            },
            MessageKind::Label { .. } => self.handle_label(now, position, phase, response),
            MessageKind::RunCompleted => unreachable!("run completed messages apply nothing"),
        }
    }

    /// A run's delta: mark PROCESSING (phase 0), download (1), upsert (2) and, under the
    /// sync-on-merge fix, read the receipt's state (3) and write it onto the merged ids (4).
    fn handle_delta(&mut self, now: Instant, position: usize, phase: u8, response: Response) {
        let index = self.order[position];
        match (phase, response) {
            (0, _) => self.enter(now, Step::Apply { position, phase: 1 }),
            // A delta that cannot be downloaded or upserted is logged and the message still counts
            // as done: `merge_compaction_deltas` at 54acc5869
            // (infra/chromadb_compaction/lambdas/compaction/compaction_run.py, lines 309 and
            // 344) logs and goes on to the next run.
            (1 | 2, Response::Failed(_)) => {
                self.notes.push_back(CompactionNote::DeltaLost(index));
                self.next_apply(now, position + 1);
            }
            (1, Response::Done) => self.enter(now, Step::Apply { position, phase: 2 }),
            (1, other) => panic!("a delta download answered {other:?}"),
            (2, Response::Entries(ids)) => {
                self.ids_touched += ids;
                if self.behaviour.sync_from_table_on_merge {
                    self.enter(now, Step::Apply { position, phase: 3 });
                } else {
                    self.next_apply(now, position + 1);
                }
            }
            (2, other) => panic!("a delta upsert answered {other:?}"),
            // The fix cannot sync what it could not read or write: the message fails and its run
            // comes back, to sync again.
            (3 | 4, Response::Failed(_)) => {
                self.notes.push_back(CompactionNote::UpdateFailed(index));
                self.outcomes[index] = Outcome::Failed;
                self.next_apply(now, position + 1);
            }
            (3, Response::TableState(state)) => {
                self.pending_table_state = state;
                self.enter(now, Step::Apply { position, phase: 4 });
            }
            (3, other) => panic!("a receipt state read answered {other:?}"),
            (_, Response::Touched(_)) => self.next_apply(now, position + 1),
            (_, other) => panic!("a table state write answered {other:?}"),
        }
    }

    /// A label change: find the word's embedding (phase 0), read its label fields from the
    /// table (1), write them (2).
    fn handle_label(&mut self, now: Instant, position: usize, phase: u8, response: Response) {
        let index = self.order[position];
        match (phase, response) {
            (_, Response::Failed(_)) => self.update_failed(now, position),
            (0, Response::Present(true)) => self.enter(now, Step::Apply { position, phase: 1 }),
            (0, Response::Present(false)) => {
                self.notes
                    .push_back(CompactionNote::EmbeddingNotFound(index));
                self.retry_if_configured(index);
                self.next_apply(now, position + 1);
            }
            (0, other) => panic!("a get answered {other:?}"),
            (1, Response::WordLabels(fields)) => {
                self.pending_fields = fields;
                self.enter(now, Step::Apply { position, phase: 2 });
            }
            (1, other) => panic!("a label read answered {other:?}"),
            (_, _) => {
                self.ids_touched += 1;
                self.next_apply(now, position + 1);
            }
        }
    }

    /// A label or metadata update whose read or write failed. The code at 54acc5869 catches the
    /// error, logs it and counts no update (`update_word_labels`, `remove_word_labels` and
    /// `update_receipt_metadata` in infra/chromadb_compaction/lambdas/compaction/operations.py,
    /// lines 594, 669, 154 and 213), so the message counts as done; under `missing_id = "retry"`
    /// it fails and comes back, as a missing id does.
    fn update_failed(&mut self, now: Instant, position: usize) {
        let index = self.order[position];
        self.notes.push_back(CompactionNote::UpdateFailed(index));
        self.retry_if_configured(index);
        self.next_apply(now, position + 1);
    }

    fn retry_if_configured(&mut self, index: usize) {
        if self.behaviour.missing_id == MissingId::Retry {
            self.outcomes[index] = Outcome::Failed;
        }
    }

    /// The answers of the quick check (the pointer read, the cache load, and the lock taken to
    /// re-read the pointer and released) and of the working copy's opening.
    fn handle_quick_check(&mut self, now: Instant, response: Response) {
        match self.step {
            Step::ReadPointer => match pointer_of(response) {
                Some(pointer) => {
                    self.pointer = pointer;
                    self.enter(now, Step::CacheLoad);
                }
                // No pointer read, no base: the batch fails before any lock is taken.
                None => self.fail_all(now),
            },
            Step::CacheLoad | Step::OpenWorkingCopy if response.is_failure() => {
                self.notes.push_back(CompactionNote::SnapshotMissing);
                self.fail_all(now);
            }
            Step::CacheLoad => self.enter(now, Step::QuickLock),
            Step::QuickLock => match lock_of(response) {
                Some(owner) => {
                    self.owner = Some(owner);
                    self.enter(now, Step::QuickReread);
                }
                None => {
                    self.notes.push_back(CompactionNote::BusyAtQuickCheck);
                    self.fail_all(now);
                }
            },
            Step::QuickReread => {
                // A failed re-read cannot show the pointer still: the check fails like a move.
                let moved = !self.pointer_unchanged(response);
                if moved {
                    self.notes
                        .push_back(CompactionNote::PointerMovedAtQuickCheck);
                }
                self.enter(now, Step::QuickRelease { failing: moved });
            }
            Step::QuickRelease { failing } => {
                self.owner = None;
                if failing {
                    self.fail_all(now);
                } else {
                    self.enter(now, Step::OpenWorkingCopy);
                }
            }
            Step::OpenWorkingCopy => self.next_apply(now, 0),
            _ => unreachable!("not a quick check step"),
        }
    }

    /// The answers of the publish under the lock: the pointer re-read, the ownership checks, the
    /// snapshot upload and the pointer promotion.
    fn handle_publish(&mut self, now: Instant, response: Response) {
        match self.step {
            Step::PublishReread => {
                if !self.pointer_unchanged(response) {
                    if !response.is_failure() {
                        self.notes.push_back(CompactionNote::PointerMovedAtPublish);
                    }
                    self.leave_publish(now, true);
                } else {
                    self.publish_started = now;
                    self.validate_then(now, false);
                }
            }
            Step::ValidateOwnership { then_promote } => {
                if lock_of(response) == self.owner {
                    let next = if then_promote {
                        Step::Promote
                    } else {
                        Step::Upload
                    };
                    self.enter(now, next);
                } else {
                    self.notes.push_back(CompactionNote::OwnershipLost);
                    self.leave_publish(now, true);
                }
            }
            Step::Upload => {
                match response {
                    Response::Published { version } => {
                        self.version = version;
                        self.validate_then(now, true);
                    }
                    // The upload failed: nothing to promote, the batch fails under the lock.
                    Response::Failed(_) => self.leave_publish(now, true),
                    other => panic!("an upload answered {other:?}"),
                }
            }
            Step::Promote => {
                let failing = response.is_failure();
                if response == Response::Failed(Failure::PreconditionFailed) {
                    self.notes.push_back(CompactionNote::PointerConflict);
                } else if !failing {
                    assert_eq!(response, Response::Done);
                    self.notes.push_back(CompactionNote::Published {
                        version: self.version,
                    });
                }
                self.notes.push_back(CompactionNote::Stage(
                    Stage::Publish,
                    now.since(self.publish_started),
                ));
                self.leave_publish(now, failing);
            }
            _ => unreachable!("not a publish step"),
        }
    }

    /// The effects of the publish and after: the lock heartbeat, the upload, the promotion, the
    /// run marks and the cache write-back.
    fn publish_effect(&self) -> Effect {
        let collection = self.collection;
        match self.step {
            Step::HeartbeatStart => Effect::LockHeartbeat {
                collection,
                owner: self.owner.expect("heartbeat while held"),
                interval: self.behaviour.heartbeat_interval.expect("heartbeats on"),
            },
            Step::HeartbeatStop { .. } => Effect::LockHeartbeat {
                collection,
                owner: self.owner.expect("heartbeat while held"),
                interval: Duration::ZERO,
            },
            Step::Upload => Effect::PutObject(ObjectKey::Snapshot {
                collection,
                version: self.version,
            }),
            Step::Promote => Effect::WritePointer {
                collection,
                version: self.version,
                expected_etag: match self.behaviour.pointer_promotion {
                    PointerPromotion::Cas => Some(self.pointer.1),
                    PointerPromotion::Blind => None,
                },
            },
            Step::MarkCompleted { position } => Effect::TableWrite(TableWrite::RunState {
                receipt: self.messages[self.order[position]].receipt,
                collection,
                state: RunState::Completed,
            }),
            Step::WriteBack => Effect::CacheStore {
                collection,
                version: self.version,
            },
            _ => unreachable!("not a publish step"),
        }
    }
}

impl Component for CompactionInvocation {
    fn poll_effect(&mut self) -> Option<Effect> {
        if self.outstanding || self.step == Step::Done {
            return None;
        }
        self.outstanding = true;
        let collection = self.collection;
        let effect = match self.step {
            Step::ReadPointer | Step::QuickReread | Step::PublishReread => {
                Effect::ReadPointer(collection)
            }
            Step::CacheLoad => Effect::CacheLoad {
                collection,
                version: self.pointer.0,
            },
            Step::ValidateOwnership { .. } => Effect::LockValidate {
                collection,
                owner: self.owner.expect("validated while held"),
            },
            Step::QuickLock | Step::PublishLock { .. } => Effect::LockAcquire {
                collection,
                lease: self.behaviour.lock_lease,
            },
            Step::QuickRelease { .. } | Step::PublishRelease { .. } => Effect::LockRelease {
                collection,
                owner: self.owner.expect("released while held"),
            },
            Step::OpenWorkingCopy => Effect::OpenWorkingCopy {
                collection,
                version: self.pointer.0,
            },
            Step::Apply { position, phase } => self.apply_effect(self.order[position], phase),
            Step::ApplyWork => Effect::Work(Work::Apply {
                ids: self.ids_touched,
            }),
            Step::PublishSleep { tries } => {
                Effect::Sleep(self.behaviour.publish_lock_retry_delays[tries - 1])
            }
            Step::HeartbeatStart
            | Step::HeartbeatStop { .. }
            | Step::Upload
            | Step::Promote
            | Step::MarkCompleted { .. }
            | Step::WriteBack => self.publish_effect(),
            Step::Done => unreachable!(),
        };
        Some(effect)
    }

    fn handle_response(&mut self, now: Instant, response: Response) {
        assert!(self.outstanding, "a response without an outstanding effect");
        assert!(now >= self.step_started);
        self.outstanding = false;
        match self.step {
            Step::ReadPointer
            | Step::CacheLoad
            | Step::QuickLock
            | Step::QuickReread
            | Step::QuickRelease { .. }
            | Step::OpenWorkingCopy => self.handle_quick_check(now, response),
            Step::Apply { position, phase } => self.handle_apply(now, position, phase, response),
            Step::ApplyWork => {
                self.lock_wait_started = now;
                self.enter(now, Step::PublishLock { tries: 0 });
            }
            Step::PublishLock { tries } => self.handle_publish_lock(now, tries, response),
            Step::PublishSleep { tries } => self.enter(now, Step::PublishLock { tries }),
            Step::HeartbeatStart => self.enter(now, Step::PublishReread),
            Step::PublishReread | Step::ValidateOwnership { .. } | Step::Upload | Step::Promote => {
                self.handle_publish(now, response)
            }
            Step::HeartbeatStop { failing } => self.enter(now, Step::PublishRelease { failing }),
            Step::PublishRelease { failing } => {
                self.owner = None;
                if failing {
                    self.fail_all(now);
                } else {
                    self.next_mark(now, 0);
                }
            }
            Step::MarkCompleted { position } => self.next_mark(now, position + 1),
            Step::WriteBack => self.finish(now),
            Step::Done => unreachable!(),
        }
    }

    fn is_done(&self) -> bool {
        self.step == Step::Done
    }
}

/// The pointer a read answered, or `None` if the read failed.
fn pointer_of(response: Response) -> Option<(Option<VersionId>, u64)> {
    match response {
        Response::Pointer { version, etag } => Some((version, etag)),
        Response::Failed(_) => None,
        other => panic!("a pointer read answered {other:?}"),
    }
}

/// The owner a lock acquisition answered; a failed acquisition holds no lock, like a busy one.
fn lock_of(response: Response) -> Option<LockOwner> {
    match response {
        Response::Lock { owner } => owner,
        Response::Failed(_) => None,
        other => panic!("a lock acquisition answered {other:?}"),
    }
}

/// Message indices in apply order: merges, then metadata, then labels (removals first if asked),
/// each in arrival order; under `deduplicate` only the last message per key.
pub fn apply_order(
    messages: &[Message],
    ordering: InBatchOrdering,
    deduplicate: bool,
) -> Vec<usize> {
    let mut order = Vec::new();
    apply_order_into(&mut order, messages, ordering, deduplicate);
    order
}

/// `apply_order` written into `order` (emptied first).
fn apply_order_into(
    order: &mut Vec<usize>,
    messages: &[Message],
    ordering: InBatchOrdering,
    deduplicate: bool,
) {
    order.clear();
    order.extend(0..messages.len());
    order.sort_by_key(|index| {
        let message = &messages[*index];
        let removal_rank = match ordering {
            InBatchOrdering::RemovalsFirst if message.is_label_removal() => 0,
            _ => 1,
        };
        (message.apply_rank(), removal_rank, *index)
    });
    if deduplicate {
        let key = |message: &Message| -> (u8, u32, u32) {
            match message.kind {
                MessageKind::Label { word, .. } => (
                    2,
                    message.receipt,
                    u32::from(word.line) << 16 | u32::from(word.word),
                ),
                MessageKind::Metadata { .. } => (1, message.receipt, 0),
                MessageKind::RunDelta => (0, message.receipt, 0),
                MessageKind::RunCompleted => (3, message.receipt, 0),
            }
        };
        // Kept in place: the entries written are all at or before the one read.
        let mut kept = 0;
        for position in 0..order.len() {
            let index = order[position];
            let later = order[position + 1..]
                .iter()
                .any(|other| key(&messages[*other]) == key(&messages[index]));
            if !later {
                order[kept] = index;
                kept += 1;
            }
        }
        order.truncate(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::config::{FailureReporting, UpsertMode};
    use crate::pipeline::effect::EventName;
    use crate::workload::WordRef;

    fn behaviour() -> CompactionBehaviour {
        CompactionBehaviour {
            lock_lease: Duration::from_secs(180),
            heartbeat_interval: Some(Duration::from_secs(30)),
            publish_lock_retry_delays: vec![Duration::from_millis(100), Duration::from_millis(200)]
                .into(),
            pointer_promotion: PointerPromotion::Cas,
            drift_check: DriftCheck::Etag,
            ownership_check: OwnershipCheck::Off,
            version_id_resolution: Duration::from_secs(1),
            upsert: UpsertMode::Replace,
            missing_id: MissingId::Drop,
            failure_reporting: FailureReporting::PerItem,
            mark_runs: true,
            in_batch_ordering: InBatchOrdering::Arrival,
            deduplicate: false,
            cache_versions: 2,
            sync_from_table_on_merge: false,
        }
    }

    fn message(receipt: u32, kind: MessageKind) -> Message {
        Message {
            kind,
            receipt,
            collection: Collection::Words,
            record_sequence: u64::from(receipt),
            sent_at: Instant::ZERO,
            group: 0,
        }
    }

    fn label(receipt: u32, event: EventName) -> Message {
        message(
            receipt,
            MessageKind::Label {
                word: WordRef { line: 1, word: 1 },
                label: 0,
                event,
            },
        )
    }

    /// Drives the invocation, answering with `answer`; returns the effects it asked for.
    fn drive(
        invocation: &mut CompactionInvocation,
        mut answer: impl FnMut(&Effect, usize) -> Response,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut now = Instant::ZERO;
        for _ in 0..200 {
            let Some(effect) = invocation.poll_effect() else {
                break;
            };
            now = now.add(Duration::from_millis(10));
            let response = answer(&effect, effects.len());
            effects.push(effect);
            invocation.handle_response(now, response);
        }
        assert!(invocation.is_done());
        effects
    }

    /// Answers as an idle world would: pointer at version 5 etag 9, lock free, ids present.
    fn idle(effect: &Effect) -> Response {
        match effect {
            Effect::ReadPointer(_) => Response::Pointer {
                version: Some(5),
                etag: 9,
            },
            Effect::LockAcquire { .. } => Response::Lock { owner: Some(1) },
            Effect::CacheLoad { .. } | Effect::OpenWorkingCopy { .. } => Response::Entries(100),
            Effect::Collection(CollectionOp::UpsertDelta { .. }) => Response::Entries(3),
            Effect::Collection(CollectionOp::GetWord { .. }) => Response::Present(true),
            Effect::Collection(
                CollectionOp::UpdateReceiptMerchant { .. } | CollectionOp::WriteTableState { .. },
            ) => Response::Touched(3),
            Effect::TableRead(TableRead::WordLabels { .. }) => {
                Response::WordLabels(LabelFields::default())
            }
            Effect::TableRead(TableRead::ReceiptState { .. }) => Response::TableState(7),
            Effect::PutObject(_) => Response::Published { version: 6 },
            _ => Response::Done,
        }
    }

    #[test]
    fn applies_merges_then_metadata_then_labels_and_publishes_by_cas() {
        let messages = vec![
            label(1, EventName::Modify),
            message(
                1,
                MessageKind::Metadata {
                    merchant: Some(3),
                    event: EventName::Modify,
                },
            ),
            message(1, MessageKind::RunDelta),
        ];
        let mut invocation =
            CompactionInvocation::new(Instant::ZERO, behaviour(), Collection::Words, messages);
        let effects = drive(&mut invocation, |effect, _| idle(effect));
        let applied: Vec<&Effect> = effects
            .iter()
            .filter(|effect| {
                matches!(
                    effect,
                    Effect::Collection(
                        CollectionOp::UpsertDelta { .. }
                            | CollectionOp::UpdateReceiptMerchant { .. }
                            | CollectionOp::UpdateLabels { .. }
                    )
                )
            })
            .collect();
        assert!(matches!(
            applied[0],
            Effect::Collection(CollectionOp::UpsertDelta { .. })
        ));
        assert!(matches!(
            applied[1],
            Effect::Collection(CollectionOp::UpdateReceiptMerchant { .. })
        ));
        assert!(matches!(
            applied[2],
            Effect::Collection(CollectionOp::UpdateLabels { .. })
        ));
        assert!(effects.contains(&Effect::WritePointer {
            collection: Collection::Words,
            version: 6,
            expected_etag: Some(9)
        }));
        let marks = effects
            .iter()
            .filter(|effect| matches!(effect, Effect::TableWrite(TableWrite::RunState { .. })))
            .count();
        assert_eq!(marks, 2, "PROCESSING, then COMPLETED after publish");
        assert!(
            invocation
                .outcomes()
                .iter()
                .all(|outcome| *outcome == Outcome::Done)
        );
        let mut publish = None;
        while let Some(note) = invocation.poll_note() {
            if let CompactionNote::Stage(Stage::Publish, duration) = note {
                publish = Some(duration);
            }
        }
        // Every effect takes 10 ms here: the upload and the promotion.
        assert_eq!(publish, Some(Duration::from_millis(20)));
    }

    #[test]
    fn a_busy_lock_at_the_quick_check_fails_every_message_at_once() {
        let messages = vec![label(1, EventName::Modify), label(2, EventName::Modify)];
        let mut invocation =
            CompactionInvocation::new(Instant::ZERO, behaviour(), Collection::Words, messages);
        let effects = drive(&mut invocation, |effect, _| match effect {
            Effect::LockAcquire { .. } => Response::Lock { owner: None },
            other => idle(other),
        });
        assert_eq!(
            effects.len(),
            3,
            "read pointer, cache load, lock: {effects:?}"
        );
        assert_eq!(invocation.outcomes(), &[Outcome::Failed, Outcome::Failed]);
        let mut notes = Vec::new();
        while let Some(note) = invocation.poll_note() {
            notes.push(note);
        }
        assert!(notes.contains(&CompactionNote::BusyAtQuickCheck));
    }

    #[test]
    fn a_pointer_moved_before_publish_fails_every_message_and_releases_the_lock() {
        let messages = vec![
            message(1, MessageKind::RunDelta),
            label(2, EventName::Modify),
        ];
        let mut invocation =
            CompactionInvocation::new(Instant::ZERO, behaviour(), Collection::Words, messages);
        let mut reads = 0;
        let effects = drive(&mut invocation, |effect, _| match effect {
            Effect::ReadPointer(_) => {
                reads += 1;
                // The third read (at publish) sees another publish.
                Response::Pointer {
                    version: Some(if reads < 3 { 5 } else { 6 }),
                    etag: if reads < 3 { 9 } else { 10 },
                }
            }
            other => idle(other),
        });
        assert_eq!(invocation.outcomes(), &[Outcome::Failed, Outcome::Failed]);
        assert!(
            !effects
                .iter()
                .any(|effect| matches!(effect, Effect::PutObject(_) | Effect::WritePointer { .. }))
        );
        assert!(matches!(effects.last(), Some(Effect::LockRelease { .. })));
    }

    #[test]
    fn publish_retries_the_lock_then_gives_up() {
        let mut invocation = CompactionInvocation::new(
            Instant::ZERO,
            behaviour(),
            Collection::Words,
            vec![label(1, EventName::Modify)],
        );
        let mut acquisitions = 0;
        let effects = drive(&mut invocation, |effect, _| match effect {
            Effect::LockAcquire { .. } => {
                acquisitions += 1;
                Response::Lock {
                    owner: (acquisitions == 1).then_some(1),
                }
            }
            other => idle(other),
        });
        assert_eq!(
            acquisitions, 4,
            "the quick check, then three tries at publish"
        );
        let sleeps: Vec<&Effect> = effects
            .iter()
            .filter(|effect| matches!(effect, Effect::Sleep(_)))
            .collect();
        assert_eq!(
            sleeps,
            vec![
                &Effect::Sleep(Duration::from_millis(100)),
                &Effect::Sleep(Duration::from_millis(200))
            ]
        );
        assert_eq!(invocation.outcomes(), &[Outcome::Failed]);
    }

    #[test]
    fn a_missing_embedding_is_dropped_or_retried_as_configured() {
        for (missing_id, expected) in [
            (MissingId::Drop, Outcome::Done),
            (MissingId::Retry, Outcome::Failed),
        ] {
            let behaviour = CompactionBehaviour {
                missing_id,
                ..behaviour()
            };
            let messages = vec![label(1, EventName::Modify), label(2, EventName::Remove)];
            let mut invocation =
                CompactionInvocation::new(Instant::ZERO, behaviour, Collection::Words, messages);
            let effects = drive(&mut invocation, |effect, _| match effect {
                Effect::Collection(CollectionOp::GetWord { .. }) => Response::Present(false),
                other => idle(other),
            });
            assert!(!effects.iter().any(|effect| matches!(
                effect,
                Effect::Collection(CollectionOp::UpdateLabels { .. })
            )));
            assert_eq!(
                invocation.outcomes(),
                &[expected, Outcome::Done],
                "{missing_id:?}"
            );
        }
    }

    /// Every Chroma operation of the compaction can fail, and each failure is handled as the code
    /// at 54acc5869 handles it (infra/chromadb_compaction/lambdas/compaction): a failed upsert is
    /// logged and the run counts as done with its delta lost (compaction_run.py line 344); a failed
    /// label or metadata update is caught, logged and counts as done (operations.py lines 154, 213,
    /// 594, 669), retried under `missing_id = "retry"`; the batch still publishes.
    #[test]
    fn a_failed_chroma_operation_loses_or_retries_only_its_own_message() {
        let metadata = MessageKind::Metadata {
            merchant: Some(7),
            event: EventName::Modify,
        };
        type Case = (fn(&Effect) -> bool, Message, CompactionNote);
        let failing: [Case; 5] = [
            (
                |e| matches!(e, Effect::Collection(CollectionOp::UpsertDelta { .. })),
                message(1, MessageKind::RunDelta),
                CompactionNote::DeltaLost(0),
            ),
            (
                |e| matches!(e, Effect::Collection(CollectionOp::GetWord { .. })),
                label(1, EventName::Modify),
                CompactionNote::UpdateFailed(0),
            ),
            (
                |e| matches!(e, Effect::Collection(CollectionOp::UpdateLabels { .. })),
                label(1, EventName::Modify),
                CompactionNote::UpdateFailed(0),
            ),
            (
                |e| matches!(e, Effect::Collection(CollectionOp::DeleteLabels { .. })),
                label(1, EventName::Remove),
                CompactionNote::UpdateFailed(0),
            ),
            (
                |e| {
                    matches!(
                        e,
                        Effect::Collection(CollectionOp::UpdateReceiptMerchant { .. })
                    )
                },
                message(1, metadata),
                CompactionNote::UpdateFailed(0),
            ),
        ];
        for (fails, first, note) in failing {
            for missing_id in [MissingId::Drop, MissingId::Retry] {
                let behaviour = CompactionBehaviour {
                    missing_id,
                    ..behaviour()
                };
                let messages = vec![first, label(2, EventName::Modify)];
                let mut invocation = CompactionInvocation::new(
                    Instant::ZERO,
                    behaviour,
                    Collection::Words,
                    messages,
                );
                // Only the first message's operation fails; the second's goes through.
                let mut failed = false;
                let effects = drive(&mut invocation, |effect, _| {
                    if fails(effect) && !failed {
                        failed = true;
                        Response::Failed(Failure::Unavailable)
                    } else {
                        idle(effect)
                    }
                });
                assert!(failed, "{first:?}");
                let retried =
                    missing_id == MissingId::Retry && note != CompactionNote::DeltaLost(0);
                let expected = if retried {
                    Outcome::Failed
                } else {
                    Outcome::Done
                };
                assert_eq!(
                    invocation.outcomes(),
                    &[expected, Outcome::Done],
                    "{first:?}"
                );
                assert!(
                    effects
                        .iter()
                        .any(|e| matches!(e, Effect::WritePointer { .. })),
                    "the batch still publishes: {first:?}"
                );
                let notes: Vec<CompactionNote> =
                    std::iter::from_fn(|| invocation.poll_note()).collect();
                assert!(notes.contains(&note), "{first:?}: {notes:?}");
            }
        }
    }

    /// Under the sync-on-merge fix, a receipt state that cannot be read or written fails the run's
    /// message, so that the run comes back and syncs again.
    #[test]
    fn a_failed_sync_on_merge_fails_the_run_message() {
        let syncing = CompactionBehaviour {
            sync_from_table_on_merge: true,
            ..behaviour()
        };
        let steps: [fn(&Effect) -> bool; 2] = [
            |e| matches!(e, Effect::TableRead(TableRead::ReceiptState { .. })),
            |e| matches!(e, Effect::Collection(CollectionOp::WriteTableState { .. })),
        ];
        for fails in steps {
            let messages = vec![message(1, MessageKind::RunDelta)];
            let mut invocation = CompactionInvocation::new(
                Instant::ZERO,
                syncing.clone(),
                Collection::Words,
                messages,
            );
            drive(&mut invocation, |effect, _| {
                if fails(effect) {
                    Response::Failed(Failure::TimedOut)
                } else {
                    idle(effect)
                }
            });
            assert!(invocation.is_done());
            assert_eq!(invocation.outcomes(), &[Outcome::Failed]);
        }
    }

    /// A merchant update that finds none of the receipt's ids: counted done at 54acc5869
    /// (`apply_metadata_updates_in_memory`, metadata_handler.py), retried under `retry`.
    #[test]
    fn a_metadata_update_without_ids_is_dropped_or_retried_as_configured() {
        for (missing_id, expected) in [
            (MissingId::Drop, Outcome::Done),
            (MissingId::Retry, Outcome::Failed),
        ] {
            let behaviour = CompactionBehaviour {
                missing_id,
                ..behaviour()
            };
            let kind = MessageKind::Metadata {
                merchant: Some(7),
                event: EventName::Modify,
            };
            let messages = vec![message(1, kind), label(2, EventName::Modify)];
            let mut invocation =
                CompactionInvocation::new(Instant::ZERO, behaviour, Collection::Words, messages);
            drive(&mut invocation, |effect, _| match effect {
                Effect::Collection(CollectionOp::UpdateReceiptMerchant { .. }) => {
                    Response::Touched(0)
                }
                other => idle(other),
            });
            assert_eq!(
                invocation.outcomes(),
                &[expected, Outcome::Done],
                "{missing_id:?}"
            );
        }
    }

    /// `upload_snapshot_atomic` (chroma_s3_helpers.py at 54acc5869) validates ownership before
    /// the upload and again before the pointer write; a lease lost in between fails the publish
    /// after the upload and before the pointer moves.
    #[test]
    fn an_ownership_recheck_fails_the_publish_before_the_pointer_write() {
        let behaviour = CompactionBehaviour {
            ownership_check: OwnershipCheck::BeforeUploadAndPointer,
            ..behaviour()
        };
        for lost_at in [0usize, 1] {
            let mut invocation = CompactionInvocation::new(
                Instant::ZERO,
                behaviour.clone(),
                Collection::Words,
                vec![label(1, EventName::Modify)],
            );
            let mut validations = 0usize;
            let effects = drive(&mut invocation, |effect, _| match effect {
                Effect::LockValidate { owner, .. } => {
                    validations += 1;
                    let holding = validations - 1 < lost_at;
                    Response::Lock {
                        owner: holding.then_some(*owner),
                    }
                }
                other => idle(other),
            });
            let uploaded = effects
                .iter()
                .any(|e| matches!(e, Effect::PutObject(ObjectKey::Snapshot { .. })));
            assert_eq!(uploaded, lost_at == 1, "lost at check {lost_at}");
            assert!(
                !effects
                    .iter()
                    .any(|e| matches!(e, Effect::WritePointer { .. }))
            );
            assert_eq!(invocation.outcomes(), &[Outcome::Failed]);
        }
    }

    /// A version id reused within its resolution leaves the pointer's text as it was read: the
    /// version-id compare of the code at 54acc5869 (`expected_pointer = dl.get("version_id")`,
    /// enhanced_compaction_handler.py) goes on to publish on a stale base; the etag compare sees
    /// the pointer was rewritten and fails the batch.
    #[test]
    fn a_reused_version_id_passes_the_text_compare_and_not_the_etag_compare() {
        for (drift_check, publishes) in [(DriftCheck::VersionId, true), (DriftCheck::Etag, false)] {
            let behaviour = CompactionBehaviour {
                drift_check,
                pointer_promotion: PointerPromotion::Blind,
                ..behaviour()
            };
            let mut invocation = CompactionInvocation::new(
                Instant::ZERO,
                behaviour,
                Collection::Words,
                vec![label(1, EventName::Modify)],
            );
            let mut reads = 0;
            let effects = drive(&mut invocation, |effect, _| match effect {
                Effect::ReadPointer(_) => {
                    reads += 1;
                    // The first read and the quick check see etag 9; by publish another
                    // invocation rewrote the pointer under the same version id.
                    let etag = if reads <= 2 { 9 } else { 10 };
                    Response::Pointer {
                        version: Some(5),
                        etag,
                    }
                }
                other => idle(other),
            });
            let promoted = effects
                .iter()
                .any(|e| matches!(e, Effect::WritePointer { .. }));
            assert_eq!(promoted, publishes, "{drift_check:?}");
        }
    }

    #[test]
    fn ordering_and_deduplication() {
        let messages = vec![
            label(1, EventName::Modify),
            label(1, EventName::Remove),
            message(2, MessageKind::RunDelta),
            label(1, EventName::Modify),
        ];
        assert_eq!(
            apply_order(&messages, InBatchOrdering::Arrival, false),
            vec![2, 0, 1, 3]
        );
        assert_eq!(
            apply_order(&messages, InBatchOrdering::RemovalsFirst, false),
            vec![2, 1, 0, 3]
        );
        assert_eq!(
            apply_order(&messages, InBatchOrdering::Arrival, true),
            vec![2, 3]
        );
    }

    /// An invocation built in an ended one's vectors is the invocation `new` builds.
    #[test]
    fn an_invocation_in_reused_vectors_is_a_new_one() {
        let mut deduplicating = behaviour();
        deduplicating.deduplicate = true;
        let first = vec![
            label(1, EventName::Modify),
            message(2, MessageKind::RunDelta),
            label(1, EventName::Remove),
            label(1, EventName::Modify),
        ];
        let mut ended = CompactionInvocation::new(
            Instant::ZERO,
            deduplicating.clone(),
            Collection::Words,
            first,
        );
        drive(&mut ended, |effect, _| idle(effect));
        assert!(ended.is_done());
        let second = vec![
            message(3, MessageKind::RunCompleted),
            label(4, EventName::Insert),
        ];
        for behaviour in [behaviour(), deduplicating] {
            let mut vectors = ended.take_vectors();
            assert!(vectors.messages.is_empty() && vectors.messages.capacity() >= 4);
            assert!(ended.messages().is_empty() && ended.outcomes().is_empty());
            vectors.messages.extend_from_slice(&second);
            let now = Instant(7);
            let reused =
                CompactionInvocation::reusing(now, behaviour.clone(), Collection::Words, vectors);
            let new = CompactionInvocation::new(now, behaviour, Collection::Words, second.clone());
            assert_eq!(format!("{reused:?}"), format!("{new:?}"));
            ended = reused;
        }
    }

    #[test]
    fn a_merge_synced_from_the_table_reads_the_receipt_then_writes_it_before_other_messages() {
        let behaviour = CompactionBehaviour {
            sync_from_table_on_merge: true,
            ..behaviour()
        };
        let messages = vec![
            label(1, EventName::Modify),
            message(1, MessageKind::RunDelta),
        ];
        let mut invocation =
            CompactionInvocation::new(Instant::ZERO, behaviour, Collection::Words, messages);
        let effects = drive(&mut invocation, |effect, _| idle(effect));
        let upsert = effects
            .iter()
            .position(|effect| {
                *effect == Effect::Collection(CollectionOp::UpsertDelta { receipt: 1 })
            })
            .expect("the delta is merged");
        assert_eq!(
            effects[upsert + 1],
            Effect::TableRead(TableRead::ReceiptState { receipt: 1 })
        );
        assert_eq!(
            effects[upsert + 2],
            Effect::Collection(CollectionOp::WriteTableState {
                receipt: 1,
                state: 7
            }),
            "the write hands back the handle of the read"
        );
        assert!(matches!(
            effects[upsert + 3],
            Effect::Collection(CollectionOp::GetWord { .. })
        ));
        assert_eq!(invocation.outcomes(), &[Outcome::Done, Outcome::Done]);
        let mut plain =
            CompactionInvocation::new(Instant::ZERO, self::behaviour(), Collection::Words, {
                vec![message(1, MessageKind::RunDelta)]
            });
        let effects = drive(&mut plain, |effect, _| idle(effect));
        assert!(!effects.iter().any(|effect| matches!(
            effect,
            Effect::TableRead(TableRead::ReceiptState { .. })
                | Effect::Collection(CollectionOp::WriteTableState { .. })
        )));
    }

    #[test]
    fn stall_points_are_the_first_publish_lock_try_and_the_reread_under_the_lock() {
        let mut invocation = CompactionInvocation::new(
            Instant::ZERO,
            behaviour(),
            Collection::Words,
            vec![label(1, EventName::Modify)],
        );
        let mut seen = Vec::new();
        let mut now = Instant::ZERO;
        for _ in 0..100 {
            let before = invocation.at_stall_point(StallPoint::BeforePublish);
            let holding = invocation.at_stall_point(StallPoint::HoldingLock);
            let Some(effect) = invocation.poll_effect() else {
                break;
            };
            if before {
                seen.push(("before_publish", effect.clone()));
            }
            if holding {
                assert!(invocation.owner().is_some(), "the lock is held");
                seen.push(("holding_lock", effect.clone()));
            }
            now = now.add(Duration::from_millis(10));
            invocation.handle_response(now, idle(&effect));
        }
        assert!(invocation.is_done());
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(matches!(
            seen[0],
            ("before_publish", Effect::LockAcquire { .. })
        ));
        assert!(matches!(seen[1], ("holding_lock", Effect::ReadPointer(_))));
    }

    #[test]
    fn a_batch_of_run_completed_messages_needs_no_work() {
        let messages = vec![message(1, MessageKind::RunCompleted)];
        let mut invocation =
            CompactionInvocation::new(Instant::ZERO, behaviour(), Collection::Words, messages);
        assert!(invocation.poll_effect().is_none());
        assert!(invocation.is_done());
        assert_eq!(invocation.outcomes(), &[Outcome::Done]);
    }

    /// A failed pointer read fails the batch before any lock is taken; a failed re-read under the
    /// lock fails it like a moved pointer (the lock is released); a failed promotion that is not a
    /// lost condition is no pointer conflict.
    #[test]
    fn failed_pointer_reads_and_promotions_fail_the_batch_without_panicking() {
        let messages = vec![label(1, EventName::Modify), label(2, EventName::Modify)];
        let mut invocation = CompactionInvocation::new(
            Instant::ZERO,
            behaviour(),
            Collection::Words,
            messages.clone(),
        );
        let effects = drive(&mut invocation, |effect, _| match effect {
            Effect::ReadPointer(_) => Response::Failed(Failure::Unavailable),
            other => idle(other),
        });
        assert_eq!(effects.len(), 1, "{effects:?}");
        assert!(invocation.outcomes().iter().all(|o| *o == Outcome::Failed));

        let mut invocation = CompactionInvocation::new(
            Instant::ZERO,
            behaviour(),
            Collection::Words,
            messages.clone(),
        );
        let mut reads = 0;
        let effects = drive(&mut invocation, |effect, _| match effect {
            Effect::ReadPointer(_) => {
                reads += 1;
                if reads == 2 {
                    Response::Failed(Failure::TimedOut)
                } else {
                    idle(effect)
                }
            }
            other => idle(other),
        });
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::LockRelease { .. }))
        );
        assert!(invocation.outcomes().iter().all(|o| *o == Outcome::Failed));

        let mut invocation =
            CompactionInvocation::new(Instant::ZERO, behaviour(), Collection::Words, messages);
        drive(&mut invocation, |effect, _| match effect {
            Effect::WritePointer { .. } => Response::Failed(Failure::Unavailable),
            other => idle(other),
        });
        let mut notes = Vec::new();
        while let Some(note) = invocation.poll_note() {
            notes.push(note);
        }
        assert!(
            !notes.contains(&CompactionNote::PointerConflict),
            "{notes:?}"
        );
        assert!(
            !notes
                .iter()
                .any(|n| matches!(n, CompactionNote::Published { .. }))
        );
        assert!(invocation.outcomes().iter().all(|o| *o == Outcome::Failed));
    }

    /// A failed lock acquisition holds no lock: at the quick check it fails the batch as busy.
    #[test]
    fn a_failed_lock_acquisition_is_a_busy_lock() {
        let messages = vec![label(1, EventName::Modify)];
        let mut invocation =
            CompactionInvocation::new(Instant::ZERO, behaviour(), Collection::Words, messages);
        drive(&mut invocation, |effect, _| match effect {
            Effect::LockAcquire { .. } => Response::Failed(Failure::Throttled),
            other => idle(other),
        });
        let mut busy = false;
        while let Some(note) = invocation.poll_note() {
            busy |= note == CompactionNote::BusyAtQuickCheck;
        }
        assert!(busy);
        assert_eq!(invocation.outcomes(), &[Outcome::Failed]);
    }
}
