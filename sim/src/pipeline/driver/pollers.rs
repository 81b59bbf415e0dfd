//! The pollers: arrivals at the upload queue, the upload queue's poller, the stream's event source
//! mapping and the two compaction queues' mappings. Each receives what is ready and starts
//! invocations while the function has room, and schedules its next poll.

use super::*;

impl<P: Performer> Simulation<'_, P> {
    /// Whether a poll event at `now` is the one poller `index` waits for; a superseded or
    /// duplicate poll event is skipped (every poll computes the next one it needs).
    pub(super) fn take_poll(&mut self, poller: Poller, now: Instant) -> bool {
        let at = self.poll_at.at(poller);
        if *at == Some(now) {
            *at = None;
            true
        } else {
            false
        }
    }

    /// Wakes the poller at `at` unless it wakes earlier.
    pub(super) fn wake(&mut self, poller: Poller, at: Instant) {
        let at = at.max(self.engine.now());
        let scheduled = self.poll_at.at(poller);
        if scheduled.is_some_and(|scheduled| scheduled <= at) {
            return;
        }
        *scheduled = Some(at);
        self.engine.schedule_at(at, poller.event());
    }

    pub(super) fn arrive(&mut self, now: Instant, receipt: ReceiptIndex) {
        if let Some(next) = self.receipts.get(receipt as usize + 1) {
            self.engine
                .schedule_at(next.arrival_instant(), Event::Arrival(next.index));
        }
        self.progress[receipt as usize].arrived = true;
        let digest = mix64(u64::from(receipt));
        self.upload_queue.send(now, receipt, None, digest);
        self.history.record(
            now,
            Actor::Workload,
            HistoryEvent::Arrival,
            Some(receipt),
            &[],
            String::new,
        );
        self.wake(Poller::Upload, now);
    }

    pub(super) fn plan(&self, receipt: ReceiptIndex) -> ReceiptPlan {
        let shape = &self.receipts[receipt as usize];
        ReceiptPlan {
            receipt,
            has_labels: !shape.labels.is_empty(),
            has_changed_labels: shape.labels.iter().any(|label| label.change.is_some()),
            has_merchant_correction: shape.merchant_correction.is_some(),
        }
    }

    pub(super) fn poll_uploads(&mut self, now: Instant) {
        let batch_size = self.config.upload.batch_size as usize;
        for _ in 0..self.config.upload.concurrency {
            if !self.upload_lambda.has_capacity() {
                return;
            }
            if self.upload_queue.next_visible_at(now) != Some(now) {
                break;
            }
            let dead_before = self.upload_queue.dead_letters().len();
            let mut received = std::mem::take(&mut self.received_uploads);
            self.upload_queue
                .receive_into(now, batch_size, &mut received);
            if !self.history.filter.is_off() && self.upload_queue.dead_letters().len() > dead_before
            {
                for index in dead_before..self.upload_queue.dead_letters().len() {
                    let receipt = self.upload_queue.dead_letters()[index].body;
                    self.history.record(
                        now,
                        Actor::Workload,
                        HistoryEvent::DeadLettered,
                        Some(receipt),
                        &[],
                        || "upload".to_string(),
                    );
                }
            }
            let handles: Vec<(ReceiptIndex, ReceiptHandle)> = received
                .iter()
                .map(|message| (message.body, message.handle))
                .collect();
            self.received_uploads = received;
            if handles.is_empty() {
                break;
            }
            let invocation = self.upload_lambda.try_start(now).expect("capacity checked");
            let plans = handles
                .iter()
                .map(|(receipt, _)| self.plan(*receipt))
                .collect();
            let start = now.add(invocation.cold_start);
            let machine = UploadInvocation::new(start, self.upload_settings, plans);
            let slot = UploadSlot {
                invocation,
                machine,
                handles,
                pending: None,
            };
            let (slot, generation) = self.uploads.insert(slot);
            self.advance_upload(start, slot, generation);
        }
        if let Some(at) = self.upload_queue.next_visible_at(now)
            && at > now
        {
            self.wake(Poller::Upload, at);
        }
    }

    /// The mapping takes a batch at once when one is ready (a busy poller goes straight on);
    /// otherwise it looks again on its polling cadence.
    pub(super) fn wake_stream(&mut self, now: Instant) {
        if let Some((ready_at, _)) = self.stream.next_ready() {
            if ready_at <= now {
                self.wake(Poller::Stream, now);
            } else {
                let interval = self.config.stream.poll_interval.as_nanos();
                self.wake(
                    Poller::Stream,
                    Instant(ready_at.as_nanos().div_ceil(interval) * interval),
                );
            }
        }
    }

    pub(super) fn poll_stream(&mut self, now: Instant) {
        // The shards present when the poll begins; a shard opened later waits for the next poll.
        let shard_count = self.stream.shard_count() as u32;
        'shards: for shard in (0..shard_count).map(ShardId) {
            if !self.stream.is_live(shard) {
                continue;
            }
            while self.processor_lambda.has_capacity() {
                if self.stream.ready_at(shard).is_none_or(|at| at > now) {
                    continue 'shards;
                }
                let Some(batch) = self.stream.next_batch(now, shard) else {
                    continue 'shards;
                };
                self.start_processor(now, batch);
            }
        }
        if self.processor_lambda.has_capacity() {
            self.wake_stream(now.add(Duration(1)));
        }
    }

    pub(super) fn record_view(&self, record: &StreamRecord) -> RecordView {
        let receipt = record.key.receipt();
        let shape = &self.receipts[receipt as usize];
        let change = match record.key {
            ItemKey::Line(_) | ItemKey::Word(_) => ItemChange::Ocr,
            ItemKey::Metadata(_) => {
                let merchant = |image: Option<ItemImage>| match image {
                    Some(ItemImage::Metadata { merchant }) => Some(merchant),
                    _ => None,
                };
                ItemChange::Metadata {
                    old: merchant(record.old),
                    new: merchant(record.new),
                }
            }
            ItemKey::Run { .. } => {
                let states = |image: Option<ItemImage>| match image {
                    Some(ItemImage::Run(run)) => Some((run.lines_state, run.words_state)),
                    _ => None,
                };
                ItemChange::Run {
                    old: states(record.old),
                    new: states(record.new),
                }
            }
            ItemKey::Label { word, label } => {
                let item = |image: Option<ItemImage>| -> Option<LabelItem> {
                    match image {
                        Some(ItemImage::Label(item)) => Some(item),
                        _ => None,
                    }
                };
                let word = WordRef {
                    line: word.line_number() as u16,
                    word: word.word_number() as u16,
                };
                ItemChange::Label {
                    word,
                    label,
                    old: item(record.old),
                    new: item(record.new),
                }
            }
        };
        RecordView {
            sequence: record.sequence,
            event: record.event,
            receipt,
            image: shape.image,
            receipt_id: shape.receipt_id,
            change,
        }
    }

    pub(super) fn start_processor(
        &mut self,
        now: Instant,
        batch: crate::services::stream::StreamBatch,
    ) {
        let invocation = self
            .processor_lambda
            .try_start(now)
            .expect("capacity checked");
        let mut views = std::mem::take(&mut self.views);
        views.clear();
        for record in &batch.records {
            self.stages
                .record(Stage::StreamLag, now.since(record.written_at));
            views.push(self.record_view(record));
        }
        let start = now.add(invocation.cold_start);
        let machine = StreamProcessorInvocation::new(start, &self.routing, &views);
        self.views = views;
        self.counters.dropped_inserts += machine.counts.dropped_inserts;
        self.counters.run_completed_failures += machine.counts.run_completed_failures;
        let (slot, generation) = self.processors.insert(ProcessorSlot {
            invocation,
            machine,
            batch: batch.id,
            pending: None,
        });
        self.advance_processor(start, slot, generation);
    }

    /// History records for the messages the last receive moved to the dead-letter queue.
    pub(super) fn record_dead_letters(
        &mut self,
        now: Instant,
        collection: Collection,
        dead_before: usize,
    ) {
        if self.history.filter.is_off() {
            return;
        }
        let queue = &self.queues[collection.index()];
        for index in dead_before..queue.dead_letters().len() {
            let message = queue.dead_letters()[index].body;
            let ids = self.message_ids(&message);
            self.history.record(
                now,
                Actor::Queue { collection },
                HistoryEvent::DeadLettered,
                Some(message.receipt),
                ids.as_slice(),
                || describe_messages(collection, std::slice::from_ref(&message)),
            );
        }
    }

    /// Whether the mapping's batching window lets it receive now; otherwise the window is opened
    /// (or kept) and a poll is due when it closes.
    pub(super) fn batching_window_open(&mut self, now: Instant, collection: Collection) -> bool {
        let window = self.config.queues.batching_window;
        let queue = &self.queues[collection.index()];
        let visible = queue.depth().saturating_sub(queue.in_flight());
        if window == Duration::ZERO || visible >= self.config.queues.batch_size as usize {
            self.window_started[collection.index()] = None;
            return false;
        }
        let started = *self.window_started[collection.index()].get_or_insert(now);
        let closes = started.add(window);
        if now >= closes {
            self.window_started[collection.index()] = None;
            return false;
        }
        self.wake(Poller::Queue(collection), closes);
        true
    }

    pub(super) fn poll_queue(&mut self, now: Instant, collection: Collection) {
        let batch_size = self.config.queues.batch_size as usize;
        let queue_index = collection.index();
        for _ in 0..self.config.compaction.reserved_concurrency {
            if !self.compaction_lambda.has_capacity() {
                return;
            }
            if self.queues[queue_index].next_visible_at(now) != Some(now) {
                break;
            }
            if self.batching_window_open(now, collection) {
                return;
            }
            let dead_before = self.queues[queue_index].dead_letters().len();
            let mut received = std::mem::take(&mut self.received_messages);
            self.queues[queue_index].receive_into(now, batch_size, &mut received);
            self.record_dead_letters(now, collection, dead_before);
            if received.is_empty() || self.throttled(now, collection, &received) {
                self.received_messages = received;
                break;
            }
            let invocation = self
                .compaction_lambda
                .try_start(now)
                .expect("capacity checked");
            let mut messages = Vec::with_capacity(received.len());
            let mut handles = Vec::with_capacity(received.len());
            for message in received.drain(..) {
                self.stages
                    .record(Stage::QueueWait, now.since(message.sent_at));
                messages.push(message.body);
                handles.push(message.handle);
            }
            self.received_messages = received;
            let start = now.add(invocation.cold_start);
            let cache_versions = self.config.compaction.cache_versions as usize;
            self.caches
                .entry(invocation.container.0)
                .or_insert_with(|| {
                    [
                        FileCache::new(cache_versions),
                        FileCache::new(cache_versions),
                    ]
                });
            let actor = Actor::Compaction {
                invocation: invocation.id.0,
                collection,
            };
            self.history
                .record(now, actor, HistoryEvent::BatchReceived, None, &[], || {
                    describe_messages(collection, &messages)
                });
            let machine = CompactionInvocation::new(
                start,
                self.compaction_settings.clone(),
                collection,
                messages,
            );
            // A batch with nothing to apply ends at once, cold start or not.
            let start = if machine.is_done() { now } else { start };
            let stall = if machine.is_done() {
                None
            } else {
                self.draw_stall()
            };
            let slot = CompactionSlot {
                invocation,
                machine,
                handles,
                pending: None,
                working_copy: None,
                published: None,
                publish_record: None,
                heartbeat_owner: None,
                stall,
            };
            let (slot, generation) = self.compactions.insert(slot);
            self.advance_compaction(start, slot, generation);
        }
        if let Some(at) = self.queues[queue_index].next_visible_at(now)
            && at > now
        {
            self.wake(Poller::Queue(collection), at);
        }
    }

    /// A compaction slot came free: the other collection's mapping looks first, for fairness.
    pub(super) fn wake_queues_after(&mut self, now: Instant, finished: Collection) {
        let other = match finished {
            Collection::Lines => Collection::Words,
            Collection::Words => Collection::Lines,
        };
        self.wake_queue(now, other);
        self.wake_queue(now, finished);
    }

    /// Wakes a compaction mapping when its queue has something receivable and the function has
    /// room; a full function wakes both mappings when an invocation ends.
    pub(super) fn wake_queue(&mut self, now: Instant, collection: Collection) {
        if !self.compaction_lambda.has_capacity() {
            return;
        }
        if let Some(at) = self.queues[collection.index()].next_visible_at(now) {
            self.wake(Poller::Queue(collection), at);
        }
    }
}
