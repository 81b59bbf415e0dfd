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

impl<P: Performer> Simulation<'_, P> {
    pub(super) fn drain_upload_notes(&mut self, now: Instant, state: &mut UploadSlot) {
        while let Some(note) = state.machine.poll_note() {
            match note {
                UploadNote::Started(receipt) => {
                    let arrival = self.receipts[receipt as usize].arrival_instant();
                    if !self.progress[receipt as usize].started {
                        self.stages
                            .record(Stage::UploadQueueWait, now.since(arrival));
                    }
                    self.progress[receipt as usize].started = true;
                    self.history.record(
                        now,
                        Actor::Upload {
                            invocation: state.invocation.id.0,
                        },
                        HistoryEvent::UploadStarted,
                        Some(receipt),
                        &[],
                        String::new,
                    );
                }
                UploadNote::EmbeddingStarted(receipt) => {
                    self.progress[receipt as usize].embedding_started_at = Some(now);
                }
                UploadNote::Stage(_, stage, duration) => self.stages.record(stage, duration),
                UploadNote::DeltaLost(receipt, collection) => {
                    self.counters.deltas_lost += 1;
                    self.history.record(
                        now,
                        Actor::Upload {
                            invocation: state.invocation.id.0,
                        },
                        HistoryEvent::DeltaLost,
                        Some(receipt),
                        &[],
                        || collection.name().to_string(),
                    );
                }
                UploadNote::WaitCapped(_) => self.counters.waits_capped += 1,
                UploadNote::LabelsSaved(receipt) => {
                    let progress = &mut self.progress[receipt as usize];
                    progress.saved_at = Some(now);
                    progress.saved_from_embedding =
                        progress.embedding_started_at.map(|at| now.since(at));
                    self.history.record(
                        now,
                        Actor::Upload {
                            invocation: state.invocation.id.0,
                        },
                        HistoryEvent::LabelsSaved,
                        Some(receipt),
                        &[],
                        String::new,
                    );
                }
                UploadNote::Finished(receipt) => {
                    if self.config.upload.batch_deletion == UploadBatchDeletion::PerRecord {
                        let position = state
                            .handles
                            .iter()
                            .position(|(r, _)| *r == receipt)
                            .expect("a handle per receipt");
                        let (_, handle) = state.handles.remove(position);
                        self.delete_upload(now, handle);
                    }
                    self.progress[receipt as usize].finished = true;
                    self.visibility
                        .finish(now, receipt, &self.table, &self.stores);
                    self.history.record(
                        now,
                        Actor::Upload {
                            invocation: state.invocation.id.0,
                        },
                        HistoryEvent::UploadFinished,
                        Some(receipt),
                        &[],
                        String::new,
                    );
                }
            }
        }
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
            let event = match note {
                CompactionNote::Stage(stage, duration) => {
                    self.stages.record(stage, duration);
                    continue;
                }
                CompactionNote::BusyAtQuickCheck => {
                    self.counters.busy_at_quick_check += 1;
                    HistoryEvent::BusyAtQuickCheck
                }
                CompactionNote::BusyAtPublish => {
                    self.counters.busy_at_publish += 1;
                    HistoryEvent::BusyAtPublish
                }
                CompactionNote::PointerMovedAtQuickCheck => {
                    self.counters.pointer_moved_at_quick_check += 1;
                    HistoryEvent::PointerMoved
                }
                CompactionNote::PointerMovedAtPublish => {
                    self.counters.pointer_moved_at_publish += 1;
                    HistoryEvent::PointerMoved
                }
                CompactionNote::PointerConflict => {
                    self.counters.pointer_conflicts += 1;
                    HistoryEvent::PointerConflict
                }
                CompactionNote::OwnershipLost => {
                    self.counters.ownership_lost += 1;
                    HistoryEvent::OwnershipLost
                }
                CompactionNote::DeltaLost(index) => {
                    self.counters.deltas_unreadable += 1;
                    let receipt = state.machine.messages()[index].receipt;
                    self.history.record(
                        now,
                        actor,
                        HistoryEvent::DeltaLost,
                        Some(receipt),
                        &[],
                        || collection.name().to_string(),
                    );
                    continue;
                }
                CompactionNote::EmbeddingNotFound(index) => {
                    self.counters.embedding_not_found += 1;
                    let message = state.machine.messages()[index];
                    let ids = message_word(&message);
                    self.history.record(
                        now,
                        actor,
                        HistoryEvent::EmbeddingNotFound,
                        Some(message.receipt),
                        ids.as_slice(),
                        String::new,
                    );
                    continue;
                }
                CompactionNote::MetadataDropped(_) => {
                    self.counters.metadata_dropped += 1;
                    continue;
                }
                CompactionNote::UpdateFailed(index) => {
                    let message = state.machine.messages()[index];
                    let ids = message_word(&message);
                    self.history.record(
                        now,
                        actor,
                        HistoryEvent::UpdateFailed,
                        Some(message.receipt),
                        ids.as_slice(),
                        String::new,
                    );
                    continue;
                }
                CompactionNote::Published { .. } => {
                    self.counters.publishes[collection.index()] += 1;
                    HistoryEvent::PointerPromoted
                }
                CompactionNote::SnapshotMissing => {
                    self.counters.snapshot_missing += 1;
                    continue;
                }
            };
            self.history
                .record(now, actor, event, None, &[], String::new);
        }
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
