//! The stream processor: a Lambda behind the DynamoDB stream's event source mapping that routes
//! each record of its batch to the `lines` and `words` queues.
//!
//! Routing: a CompactionRun INSERT gives one message per collection; any other INSERT is dropped
//! (*built*) or forwarded; a MODIFY gives a message only if a watched field changed, a REMOVE always;
//! label messages go to `words`, metadata messages to both queues; a run marked COMPLETED gives a
//! "run completed" message unless that builder fails (*built*). Messages carry a FIFO message group
//! key per the configured scheme and are sent in batches.
//!
//! A sans-IO state machine like the upload Lambda's. It reads its settings, the behaviour part's
//! `config::StreamProcessorBehaviour`, by reference. Depends on `effect`, `config`, `entities`.

use super::config::{MessageGroupKey, OtherInserts, RunCompletedMessage, StreamProcessorBehaviour};
use super::effect::{Component, Effect, EventName, Message, MessageKind, Response, RunState, Work};
use crate::entities::{Collection, LabelItem, ReceiptIndex};
use crate::random::mix64;
use crate::time::Instant;
use crate::workload::WordRef;

/// The item a stream record is about, with its old and new images (compact).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ItemChange {
    Label {
        word: WordRef,
        label: u8,
        old: Option<LabelItem>,
        new: Option<LabelItem>,
    },
    /// The merchant value of ReceiptMetadata (`None`: no item, or no merchant).
    Metadata { old: Option<u32>, new: Option<u32> },
    /// The run's (lines, words) states.
    Run {
        old: Option<(RunState, RunState)>,
        new: Option<(RunState, RunState)>,
    },
    /// OCR'd lines and words: never routed.
    Ocr,
}

/// One stream record as the stream processor sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RecordView {
    pub sequence: u64,
    pub event: EventName,
    pub receipt: ReceiptIndex,
    pub image: u32,
    pub receipt_id: u32,
    pub change: ItemChange,
}

/// Entity type tags for group keys.
const ENTITY_RUN: u64 = 1;
const ENTITY_LABEL: u64 = 2;
const ENTITY_METADATA: u64 = 3;

/// The FIFO message group: `{entity}:{run_id, else receipt_id, else image_id}:{collection}`.
pub fn message_group(
    scheme: MessageGroupKey,
    entity: u64,
    record: &RecordView,
    collection: Collection,
) -> u64 {
    let collection_tag = collection as u64 + 1;
    match scheme {
        MessageGroupKey::Collection => mix64(collection_tag),
        // A run's group is its run id (one per receipt here) under both other schemes.
        _ if entity == ENTITY_RUN => {
            mix64(entity << 60 ^ u64::from(record.receipt) << 2 ^ collection_tag)
        }
        MessageGroupKey::Receipt => {
            mix64(entity << 60 ^ u64::from(record.receipt_id) << 2 ^ collection_tag ^ 1 << 59)
        }
        MessageGroupKey::ImageReceipt => mix64(
            entity << 60
                ^ u64::from(record.image) << 24
                ^ u64::from(record.receipt_id) << 2
                ^ collection_tag
                ^ 1 << 58,
        ),
    }
}

/// What routing a batch noticed, for the metrics.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutingCounts {
    pub dropped_inserts: u64,
    pub unwatched_modifies: u64,
    pub run_completed_failures: u64,
}

/// Routes one record into `out`, one vector per collection in `Collection::index` order (one or two
/// messages, or none). `sent_at` is filled in at send.
pub fn route(
    behaviour: &StreamProcessorBehaviour,
    record: &RecordView,
    out: &mut [Vec<Message>; 2],
    counts: &mut RoutingCounts,
) {
    let mut push = |kind: MessageKind, entity: u64, collection: Collection| {
        out[collection.index()].push(Message {
            kind,
            receipt: record.receipt,
            collection,
            record_sequence: record.sequence,
            sent_at: Instant::ZERO,
            group: message_group(behaviour.message_group, entity, record, collection),
        });
    };
    let forward_insert = behaviour.other_inserts == OtherInserts::Forward;
    let routed = |event: EventName, changed: bool| match event {
        EventName::Insert => forward_insert,
        EventName::Modify => changed,
        EventName::Remove => true,
    };
    match (record.change, record.event) {
        (ItemChange::Ocr, _) => {}
        (ItemChange::Run { .. }, EventName::Insert) => {
            for collection in Collection::ALL {
                push(MessageKind::RunDelta, ENTITY_RUN, collection);
            }
        }
        (ItemChange::Run { old, new }, _) => {
            for collection in completed_runs(old, new) {
                match behaviour.run_completed_message {
                    RunCompletedMessage::Works => {
                        push(MessageKind::RunCompleted, ENTITY_RUN, collection)
                    }
                    RunCompletedMessage::Fails => counts.run_completed_failures += 1,
                }
            }
        }
        (
            ItemChange::Label {
                word,
                label,
                old,
                new,
            },
            event,
        ) => {
            if routed(event, old != new) {
                push(
                    MessageKind::Label { word, label, event },
                    ENTITY_LABEL,
                    Collection::Words,
                );
            } else {
                counts.unrouted(event);
            }
        }
        (ItemChange::Metadata { old, new }, event) => {
            if routed(event, old != new) {
                let merchant = if event == EventName::Remove {
                    None
                } else {
                    new
                };
                for collection in Collection::ALL {
                    push(
                        MessageKind::Metadata { merchant, event },
                        ENTITY_METADATA,
                        collection,
                    );
                }
            } else {
                counts.unrouted(event);
            }
        }
    }
}

/// The collections whose run state a MODIFY of the run row turns to completed (an absent image
/// counts as pending; an absent new image keeps the old one).
fn completed_runs(
    old: Option<(RunState, RunState)>,
    new: Option<(RunState, RunState)>,
) -> impl Iterator<Item = Collection> {
    let pending = (RunState::Pending, RunState::Pending);
    let (old, new) = (
        old.unwrap_or(pending),
        new.unwrap_or(old.unwrap_or(pending)),
    );
    [
        (Collection::Lines, old.0, new.0),
        (Collection::Words, old.1, new.1),
    ]
    .into_iter()
    .filter(|(_, was, is)| *is == RunState::Completed && *was != RunState::Completed)
    .map(|(collection, _, _)| collection)
}

impl RoutingCounts {
    /// Counts a record the processor does not route: an INSERT it drops, or a MODIFY of a field it
    /// does not watch.
    fn unrouted(&mut self, event: EventName) {
        if event == EventName::Insert {
            self.dropped_inserts += 1;
        } else {
            self.unwatched_modifies += 1;
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Step {
    Route,
    Send {
        collection: Collection,
        start: usize,
    },
    Done,
}

/// One invocation of the stream processor over one batch of records.
#[derive(Clone, Debug)]
pub struct StreamProcessorInvocation {
    send_batch_size: usize,
    record_count: u32,
    /// Messages per collection, in record order.
    messages: [Vec<Message>; 2],
    step: Step,
    outstanding: bool,
    now: Instant,
    pub counts: RoutingCounts,
}

impl StreamProcessorInvocation {
    pub fn new(
        now: Instant,
        behaviour: &StreamProcessorBehaviour,
        records: &[RecordView],
    ) -> StreamProcessorInvocation {
        StreamProcessorInvocation::reusing(now, behaviour, records, Default::default())
    }

    /// `new`, routing into `messages` (emptied first): an ended invocation's vectors
    /// (`take_messages`), so that the new one allocates none.
    pub fn reusing(
        now: Instant,
        behaviour: &StreamProcessorBehaviour,
        records: &[RecordView],
        mut messages: [Vec<Message>; 2],
    ) -> StreamProcessorInvocation {
        assert!(!records.is_empty());
        assert!(behaviour.send_batch_size > 0);
        for collection in &mut messages {
            collection.clear();
        }
        let mut counts = RoutingCounts::default();
        for record in records {
            route(behaviour, record, &mut messages, &mut counts);
        }
        StreamProcessorInvocation {
            send_batch_size: behaviour.send_batch_size as usize,
            record_count: records.len() as u32,
            messages,
            step: Step::Route,
            outstanding: false,
            now,
            counts,
        }
    }

    /// The invocation's vectors of messages, for a later one (`reusing`); it holds none after.
    pub fn take_messages(&mut self) -> [Vec<Message>; 2] {
        std::mem::take(&mut self.messages)
    }

    /// The messages routed to one collection, in record order (sent ones carry their send time).
    pub fn messages(&self, collection: Collection) -> &[Message] {
        &self.messages[collection.index()]
    }

    fn next_send(&self, collection: Collection, start: usize) -> Step {
        if start < self.messages[collection.index()].len() {
            return Step::Send { collection, start };
        }
        match collection {
            Collection::Lines => self.next_send(Collection::Words, 0),
            Collection::Words => Step::Done,
        }
    }
}

impl Component for StreamProcessorInvocation {
    fn poll_effect(&mut self) -> Option<Effect> {
        if self.outstanding || self.step == Step::Done {
            return None;
        }
        self.outstanding = true;
        match self.step {
            Step::Route => Some(Effect::Work(Work::RouteRecords(self.record_count))),
            Step::Send { collection, start } => {
                let all = &mut self.messages[collection.index()];
                let end = (start + self.send_batch_size).min(all.len());
                for message in &mut all[start..end] {
                    message.sent_at = self.now;
                }
                Some(Effect::SendMessages {
                    collection,
                    messages: all[start..end].to_vec(),
                })
            }
            Step::Done => unreachable!(),
        }
    }

    fn handle_response(&mut self, now: Instant, response: Response) {
        assert!(self.outstanding, "a response without an outstanding effect");
        // A failed send is logged and skipped, as the real processor does: its messages are lost
        // and the invocation goes on with the next send.
        assert!(
            response == Response::Done || response.is_failure(),
            "routing and sends answer done or a failure, not {response:?}"
        );
        self.outstanding = false;
        self.now = now;
        let next = match self.step {
            Step::Route => self.next_send(Collection::Lines, 0),
            Step::Send { collection, start } => {
                self.next_send(collection, start + self.send_batch_size)
            }
            Step::Done => unreachable!(),
        };
        self.step = next;
    }

    fn is_done(&self) -> bool {
        self.step == Step::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::ValidationStatus;

    fn behaviour(
        other_inserts: OtherInserts,
        message_group: MessageGroupKey,
    ) -> StreamProcessorBehaviour {
        StreamProcessorBehaviour {
            other_inserts,
            run_completed_message: RunCompletedMessage::Fails,
            message_group,
            send_batch_size: 10,
        }
    }

    fn label(status: ValidationStatus) -> LabelItem {
        LabelItem {
            label: 1,
            validation_status: status,
            reasoning: 5,
            proposed_by: 1,
            consolidated_from: 0,
        }
    }

    fn record(receipt: u32, image: u32, event: EventName, change: ItemChange) -> RecordView {
        RecordView {
            sequence: u64::from(receipt),
            event,
            receipt,
            image,
            receipt_id: 1,
            change,
        }
    }

    #[test]
    fn routes_as_the_spec_says() {
        use EventName::{Insert, Modify, Remove};
        use OtherInserts::{Drop as Dropped, Forward};
        use ValidationStatus::{Pending, Valid};
        let word = WordRef { line: 1, word: 2 };
        let labelled =
            |old: Option<ValidationStatus>, new: Option<ValidationStatus>| ItemChange::Label {
                word,
                label: 1,
                old: old.map(label),
                new: new.map(label),
            };
        let merchant = |old, new| ItemChange::Metadata { old, new };
        let run = |old, new| ItemChange::Run { old, new };
        let processing = (RunState::Processing, RunState::Pending);
        let completed = (RunState::Completed, RunState::Pending);
        let pending = (RunState::Pending, RunState::Pending);
        // (event, change, other inserts, messages routed)
        let cases = [
            (Insert, run(None, Some(pending)), Dropped, 2),
            (Insert, labelled(None, Some(Pending)), Dropped, 0),
            (Insert, labelled(None, Some(Pending)), Forward, 1),
            (Modify, labelled(Some(Pending), Some(Valid)), Dropped, 1),
            (Modify, labelled(Some(Valid), Some(Valid)), Dropped, 0),
            (Remove, labelled(Some(Valid), None), Dropped, 1),
            (Modify, merchant(Some(3), Some(4)), Dropped, 2),
            (Insert, merchant(None, Some(4)), Dropped, 0),
            // In these settings a completed run is counted as a failed message, not routed.
            (Modify, run(Some(processing), Some(completed)), Forward, 0),
            (Insert, ItemChange::Ocr, Forward, 0),
        ];
        for (event, change, other_inserts, expected) in cases {
            let record = record(0, 0, event, change);
            let mut out = [Vec::new(), Vec::new()];
            let mut counts = RoutingCounts::default();
            route(
                &behaviour(other_inserts, MessageGroupKey::Receipt),
                &record,
                &mut out,
                &mut counts,
            );
            assert_eq!(out[0].len() + out[1].len(), expected, "{record:?}");
            for collection in Collection::ALL {
                assert!(
                    out[collection.index()]
                        .iter()
                        .all(|message| message.collection == collection)
                );
            }
        }
    }

    #[test]
    fn group_keys_follow_the_scheme() {
        let word = WordRef { line: 1, word: 1 };
        let change = ItemChange::Label {
            word,
            label: 1,
            old: None,
            new: Some(label(ValidationStatus::Pending)),
        };
        let a = record(0, 10, EventName::Remove, change);
        let b = record(1, 11, EventName::Remove, change);
        let group = |scheme, record: &RecordView| {
            message_group(scheme, ENTITY_LABEL, record, Collection::Words)
        };
        // Receipt 1 of two images shares one group under the built scheme only.
        assert_eq!(
            group(MessageGroupKey::Receipt, &a),
            group(MessageGroupKey::Receipt, &b)
        );
        assert_ne!(
            group(MessageGroupKey::ImageReceipt, &a),
            group(MessageGroupKey::ImageReceipt, &b)
        );
        assert_eq!(
            group(MessageGroupKey::Collection, &a),
            group(MessageGroupKey::Collection, &b)
        );
        let run = |receipt| {
            message_group(
                MessageGroupKey::Receipt,
                ENTITY_RUN,
                &record(receipt, receipt, EventName::Insert, ItemChange::Ocr),
                Collection::Lines,
            )
        };
        assert_ne!(run(0), run(1));
    }

    /// The INSERTs of `count` runs, one per receipt, in sequence order.
    fn run_inserts(count: u32) -> Vec<RecordView> {
        (0..count)
            .map(|i| {
                record(
                    i,
                    i,
                    EventName::Insert,
                    ItemChange::Run {
                        old: None,
                        new: Some((RunState::Pending, RunState::Pending)),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn sends_in_batches_keeping_record_order() {
        let records = run_inserts(25);
        let mut invocation = StreamProcessorInvocation::new(
            Instant::ZERO,
            &behaviour(OtherInserts::Drop, MessageGroupKey::Receipt),
            &records,
        );
        let mut sent: Vec<Message> = Vec::new();
        let mut now = Instant::ZERO;
        while let Some(effect) = invocation.poll_effect() {
            if let Effect::SendMessages { messages, .. } = effect {
                assert!(messages.len() <= 10);
                sent.extend(messages);
            }
            now = now.add(crate::time::Duration::from_millis(1));
            invocation.handle_response(now, Response::Done);
        }
        assert!(invocation.is_done());
        assert_eq!(sent.len(), 50);
        let words: Vec<u64> = sent
            .iter()
            .filter(|m| m.collection == Collection::Words)
            .map(|m| m.record_sequence)
            .collect();
        assert_eq!(words, (0..25).collect::<Vec<u64>>());
    }

    /// A failed send is skipped: the invocation goes on with the next send and finishes.
    #[test]
    fn a_failed_send_is_skipped_and_the_invocation_goes_on() {
        let records = run_inserts(25);
        let mut invocation = StreamProcessorInvocation::new(
            Instant::ZERO,
            &behaviour(OtherInserts::Drop, MessageGroupKey::Receipt),
            &records,
        );
        let mut sends = 0;
        let mut now = Instant::ZERO;
        while let Some(effect) = invocation.poll_effect() {
            let response = match effect {
                Effect::SendMessages { .. } => {
                    sends += 1;
                    Response::Failed(crate::pipeline::effect::Failure::Throttled)
                }
                _ => Response::Done,
            };
            now = now.add(crate::time::Duration::from_millis(1));
            invocation.handle_response(now, response);
        }
        assert!(invocation.is_done());
        assert_eq!(sends, 6, "every send is tried once");
    }
}
