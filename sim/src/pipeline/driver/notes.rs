//! What notes do, and the history records the driver writes: the state machines' notes become
//! counters, stage latencies, progress and history records.

use super::*;

/// The word id a label message is about.
pub fn message_word(message: &Message) -> Option<ChromaId> {
    match message.kind {
        MessageKind::Label { word, .. } => Some(ChromaId::word(
            message.receipt,
            u32::from(word.line),
            u32::from(word.word),
        )),
        _ => None,
    }
}

/// `{collection} {receipt}/{record sequence}/{group:x}/{kind} ...` (kind: `run`, `completed`,
/// `metadata`, `label.{line}.{word}.{label}`): the messages of a send or a batch,
/// for the history.
pub fn describe_messages(collection: Collection, messages: &[Message]) -> String {
    let mut text = collection.name().to_string();
    for message in messages {
        let kind = match message.kind {
            MessageKind::RunDelta => "run".to_string(),
            MessageKind::RunCompleted => "completed".to_string(),
            MessageKind::Metadata { .. } => "metadata".to_string(),
            MessageKind::Label { word, label, .. } => {
                format!("label.{}.{}.{label}", word.line, word.word)
            }
        };
        text.push_str(&format!(
            " {}/{}/{:x}/{kind}",
            message.receipt, message.record_sequence, message.group
        ));
    }
    text
}

/// The history's actor of an upload invocation.
fn upload_actor(state: &UploadSlot) -> Actor {
    Actor::Upload {
        invocation: state.invocation.id.0,
    }
}

impl<P: Performer> Simulation<'_, P> {
    pub(super) fn drain_upload_notes(&mut self, now: Instant, state: &mut UploadSlot) {
        while let Some(note) = state.machine.poll_note() {
            match note {
                UploadNote::Started(receipt) => self.upload_started(now, state, receipt),
                UploadNote::EmbeddingStarted(receipt) => {
                    self.progress[receipt as usize].embedding_started_at = Some(now);
                }
                UploadNote::Stage(_, stage, duration) => self.stages.record(stage, duration),
                UploadNote::DeltaLost(receipt, collection) => {
                    self.counters.deltas_lost += 1;
                    let actor = upload_actor(state);
                    let event = HistoryEvent::DeltaLost;
                    self.history
                        .record(now, actor, event, Some(receipt), &[], || {
                            collection.name().to_string()
                        });
                }
                UploadNote::WaitCapped(_) => self.counters.waits_capped += 1,
                UploadNote::LabelsSaved(receipt) => {
                    let progress = &mut self.progress[receipt as usize];
                    progress.saved_at = Some(now);
                    progress.saved_from_embedding =
                        progress.embedding_started_at.map(|at| now.since(at));
                    self.record_upload(now, state, HistoryEvent::LabelsSaved, receipt);
                }
                UploadNote::Finished(receipt) => self.upload_finished(now, state, receipt),
            }
        }
    }

    /// A receipt's upload started: its wait in the upload queue ends (at its first start).
    fn upload_started(&mut self, now: Instant, state: &UploadSlot, receipt: ReceiptIndex) {
        let arrival = self.receipts[receipt as usize].arrival_instant();
        if !self.progress[receipt as usize].started {
            self.stages
                .record(Stage::UploadQueueWait, now.since(arrival));
        }
        self.progress[receipt as usize].started = true;
        self.record_upload(now, state, HistoryEvent::UploadStarted, receipt);
    }

    /// A receipt's upload finished: its message is deleted now if the mapping deletes per record,
    /// and the wait for its labels to be visible starts.
    fn upload_finished(&mut self, now: Instant, state: &mut UploadSlot, receipt: ReceiptIndex) {
        if self.behaviour.upload.batch_deletion == UploadBatchDeletion::PerRecord {
            let position = state
                .kept
                .handles
                .iter()
                .position(|(r, _)| *r == receipt)
                .expect("a handle per receipt");
            let (_, handle) = state.kept.handles.remove(position);
            self.delete_upload(now, handle);
        }
        self.progress[receipt as usize].finished = true;
        self.visibility
            .finish(now, receipt, &self.table, &self.stores);
        self.record_upload(now, state, HistoryEvent::UploadFinished, receipt);
    }

    /// A history record of an upload invocation about one receipt, with no detail.
    fn record_upload(
        &mut self,
        now: Instant,
        state: &UploadSlot,
        event: HistoryEvent,
        receipt: ReceiptIndex,
    ) {
        let actor = upload_actor(state);
        self.history
            .record(now, actor, event, Some(receipt), &[], String::new);
    }

    /// Deletes one upload message; a handle made stale by a newer receive deletes nothing.
    pub(super) fn delete_upload(&mut self, now: Instant, handle: ReceiptHandle) {
        if !self.upload_queue.delete(now, handle).is_deleted() {
            self.counters.stale_deletes += 1;
        }
    }

    pub(super) fn drain_compaction_notes(&mut self, now: Instant, state: &mut CompactionSlot) {
        let collection = state.machine.collection();
        let actor = Actor::Compaction {
            invocation: state.invocation.id.0,
            collection,
        };
        while let Some(note) = state.machine.poll_note() {
            match note {
                CompactionNote::Stage(stage, duration) => self.stages.record(stage, duration),
                CompactionNote::DeltaLost(index) => {
                    self.counters.deltas_unreadable += 1;
                    let receipt = state.machine.messages()[index].receipt;
                    let event = HistoryEvent::DeltaLost;
                    self.history
                        .record(now, actor, event, Some(receipt), &[], || {
                            collection.name().to_string()
                        });
                }
                CompactionNote::EmbeddingNotFound(index) => {
                    self.counters.embedding_not_found += 1;
                    let message = state.machine.messages()[index];
                    let ids = message_word(&message);
                    let event = HistoryEvent::EmbeddingNotFound;
                    let receipt = Some(message.receipt);
                    self.history
                        .record(now, actor, event, receipt, ids.as_slice(), String::new);
                }
                CompactionNote::UpdateFailed(index) => {
                    let message = state.machine.messages()[index];
                    let ids = message_word(&message);
                    let event = HistoryEvent::UpdateFailed;
                    let receipt = Some(message.receipt);
                    self.history
                        .record(now, actor, event, receipt, ids.as_slice(), String::new);
                }
                other => {
                    if let Some(event) = self.count_compaction_note(collection, other) {
                        self.history
                            .record(now, actor, event, None, &[], String::new);
                    }
                }
            }
        }
    }

    /// Counts a compaction note that concerns no receipt; the history event it writes, if any.
    fn count_compaction_note(
        &mut self,
        collection: Collection,
        note: CompactionNote,
    ) -> Option<HistoryEvent> {
        let counters = &mut self.counters;
        let (counter, event) = match note {
            CompactionNote::BusyAtQuickCheck => (
                &mut counters.busy_at_quick_check,
                Some(HistoryEvent::BusyAtQuickCheck),
            ),
            CompactionNote::BusyAtPublish => (
                &mut counters.busy_at_publish,
                Some(HistoryEvent::BusyAtPublish),
            ),
            CompactionNote::PointerMovedAtQuickCheck => (
                &mut counters.pointer_moved_at_quick_check,
                Some(HistoryEvent::PointerMoved),
            ),
            CompactionNote::PointerMovedAtPublish => (
                &mut counters.pointer_moved_at_publish,
                Some(HistoryEvent::PointerMoved),
            ),
            CompactionNote::PointerConflict => (
                &mut counters.pointer_conflicts,
                Some(HistoryEvent::PointerConflict),
            ),
            CompactionNote::OwnershipLost => (
                &mut counters.ownership_lost,
                Some(HistoryEvent::OwnershipLost),
            ),
            CompactionNote::MetadataDropped(_) => (&mut counters.metadata_dropped, None),
            CompactionNote::Published { .. } => (
                &mut counters.publishes[collection.index()],
                Some(HistoryEvent::PointerPromoted),
            ),
            CompactionNote::SnapshotMissing => (&mut counters.snapshot_missing, None),
            CompactionNote::Stage(..)
            | CompactionNote::DeltaLost(_)
            | CompactionNote::EmbeddingNotFound(_)
            | CompactionNote::UpdateFailed(_) => {
                unreachable!("notes about a receipt are handled by the caller")
            }
        };
        *counter += 1;
        event
    }

    /// One history record per run of consecutive messages about one receipt and of one sort: label
    /// messages name their words; run and metadata messages name no id (they concern the receipt).
    /// The detail lists the run's messages, after `prefix` when it is not empty.
    pub(super) fn record_messages(
        &mut self,
        now: Instant,
        actor: Actor,
        event: HistoryEvent,
        collection: Collection,
        messages: &[Message],
        prefix: impl Fn() -> String,
    ) {
        if self.history.filter.is_off() {
            return;
        }
        let same_run = |a: &Message, b: &Message| {
            a.receipt == b.receipt && message_word(a).is_some() == message_word(b).is_some()
        };
        for run in messages.chunk_by(same_run) {
            let receipt = run[0].receipt;
            if !self.history.filter.wants(event, Some(receipt)) {
                continue;
            }
            let ids: Vec<ChromaId> = run.iter().filter_map(message_word).collect();
            self.history
                .record(now, actor, event, Some(receipt), &ids, || {
                    let messages = describe_messages(collection, run);
                    let prefix = prefix();
                    if prefix.is_empty() {
                        messages
                    } else {
                        format!("{prefix}: {messages}")
                    }
                });
        }
    }

    /// The ids a message concerns, for the history: a label message its word, a run message the
    /// receipt's ids in its collection, a metadata message the receipt's ids the snapshot holds.
    pub(super) fn message_ids(&self, message: &Message) -> Vec<ChromaId> {
        let receipt = message.receipt;
        let collection = message.collection;
        match message.kind {
            MessageKind::Label { .. } => message_word(message).into_iter().collect(),
            MessageKind::RunDelta | MessageKind::RunCompleted => self
                .table
                .shape(receipt)
                .map_or_else(Vec::new, |shape| shape.collection_ids(receipt, collection)),
            MessageKind::Metadata { .. } => self.stores[collection.index()]
                .head_receipt_entries(receipt)
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
        }
    }
}
