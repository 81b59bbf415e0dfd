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
            has_changed_labels: shape
                .labels
                .iter()
                .any(|label| label.change.is_some() || label.removed),
            has_merchant_correction: shape.merchant_correction.is_some(),
        }
    }

    pub(super) fn poll_uploads(&mut self, now: Instant) {
        let batch_size = self.deployment.upload.batch_size as usize;
        for _ in 0..self.deployment.upload.concurrency {
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
            self.record_expired();
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
            let machine = UploadInvocation::new(start, self.behaviour.upload, plans);
            let slot = UploadSlot::new(invocation, machine, UploadKept { handles });
            let (slot, generation) = self.uploads.insert(slot);
            self.advance::<UploadSlot>(start, slot, generation);
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
                let interval = self.deployment.stream.poll_interval.as_nanos();
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
        // The vectors of the ended invocation whose box this one takes.
        let messages = self
            .processors
            .spare_mut()
            .map(|ended| ended.machine.take_messages())
            .unwrap_or_default();
        let machine = StreamProcessorInvocation::reusing(
            start,
            &self.behaviour.stream_processor,
            &views,
            messages,
        );
        self.views = views;
        self.counters.dropped_inserts += machine.counts.dropped_inserts;
        self.counters.run_completed_failures += machine.counts.run_completed_failures;
        let kept = ProcessorKept { batch: batch.id };
        self.stream.recycle(batch.records);
        let (slot, generation) = self
            .processors
            .insert(ProcessorSlot::new(invocation, machine, kept));
        self.advance::<ProcessorSlot>(start, slot, generation);
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

    /// History records, stamped with the instant of expiry, for the messages the queues' retention
    /// removed since the last call (SQS deletes a message at its retention period without a trace;
    /// the history keeps one so that the loss has a cause).
    pub(super) fn record_expired(&mut self) {
        if self.history.filter.is_off() {
            return;
        }
        let expired = self.upload_queue.expired();
        for message in &expired[self.expired_recorded[0]..] {
            let receipt = message.body;
            self.history.record(
                message.moved_at,
                Actor::Workload,
                HistoryEvent::ExpiredByRetention,
                Some(receipt),
                &[],
                || "upload".to_string(),
            );
        }
        self.expired_recorded[0] = expired.len();
        for collection in Collection::ALL {
            let queue = &self.queues[collection.index()];
            let recorded = self.expired_recorded[1 + collection.index()];
            let fresh: Vec<_> = queue.expired()[recorded..]
                .iter()
                .map(|message| (message.moved_at, message.body))
                .collect();
            self.expired_recorded[1 + collection.index()] = queue.expired().len();
            for (at, message) in fresh {
                let ids = self.message_ids(&message);
                self.history.record(
                    at,
                    Actor::Queue { collection },
                    HistoryEvent::ExpiredByRetention,
                    Some(message.receipt),
                    ids.as_slice(),
                    || describe_messages(collection, std::slice::from_ref(&message)),
                );
            }
        }
    }

    /// Whether the mapping's batching window lets it receive now; otherwise the window is opened
    /// (or kept) and a poll is due when it closes.
    pub(super) fn batching_window_open(&mut self, now: Instant, collection: Collection) -> bool {
        let window = self.deployment.queues.batching_window;
        let queue = &self.queues[collection.index()];
        let visible = queue.depth().saturating_sub(queue.in_flight());
        if window == Duration::ZERO || visible >= self.deployment.queues.batch_size as usize {
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

    /// Whether the compaction mappings' pollers receive regardless of the function's room.
    fn independent_pollers(&self) -> bool {
        self.model.queues.mapping_pollers == MappingPollers::Independent
    }

    /// The batches mapping `collection` may have in flight at `now`. Standard queues: 5 at first,
    /// up to 300 more a minute while messages remain, at most 1 000 (services-sqs-scaling.html);
    /// FIFO queues: the queue itself hands out one batch per message group at a time, so only
    /// the pollers' bound applies. `maximum_concurrency`, when set, caps both.
    pub(super) fn mapping_limit(&self, now: Instant, collection: Collection) -> u32 {
        let queues = &self.deployment.queues;
        let scaled = match (queues.kind, self.mapping_busy_since[collection.index()]) {
            (ConfigQueueKind::Fifo, _) => queues.pollers_max,
            (ConfigQueueKind::Standard, None) => queues.pollers_initial,
            (ConfigQueueKind::Standard, Some(since)) => {
                let added = u128::from(queues.pollers_added_per_minute)
                    * u128::from(now.since(since).as_nanos())
                    / 60_000_000_000;
                let added = u32::try_from(added).unwrap_or(u32::MAX);
                queues
                    .pollers_max
                    .min(queues.pollers_initial.saturating_add(added))
            }
        };
        match queues.maximum_concurrency {
            0 => scaled,
            cap => scaled.min(cap),
        }
    }

    /// Keeps the instant since which the mapping's queue has had messages, for its scaling.
    fn note_mapping_load(&mut self, now: Instant, collection: Collection) {
        let index = collection.index();
        let has_messages = self.queues[index].depth() > 0;
        if !has_messages && self.mapping_running[index] == 0 {
            self.mapping_busy_since[index] = None;
        } else if has_messages && self.mapping_busy_since[index].is_none() {
            self.mapping_busy_since[index] = Some(now);
        }
    }

    /// Whether the mapping may receive one more batch now: the function has room (when the
    /// pollers wait for it) and the mapping is below its limit.
    fn mapping_has_room(&self, now: Instant, collection: Collection) -> bool {
        if !self.independent_pollers() {
            return self.compaction_lambda.has_capacity();
        }
        self.mapping_running[collection.index()] < self.mapping_limit(now, collection)
    }

    /// A batch the function's reserved concurrency refused: it stays invisible until its
    /// visibility timeout, its receive counted, and the mapping backs off one poll interval.
    fn throttle_batch(
        &mut self,
        now: Instant,
        collection: Collection,
        received: &[Received<Message>],
    ) {
        if self.history.filter.wants(HistoryEvent::Throttled, None) {
            let messages: Vec<Message> = received.iter().map(|message| message.body).collect();
            let actor = Actor::Queue { collection };
            let event = HistoryEvent::Throttled;
            self.record_messages(now, actor, event, collection, &messages, || {
                "reserved concurrency".to_string()
            });
        }
        let backoff = now.add(self.deployment.queues.poll_interval);
        self.wake(Poller::Queue(collection), backoff);
    }

    /// A compaction invocation of `collection`'s mapping ended (finished or killed).
    pub(super) fn compaction_ended(&mut self, now: Instant, collection: Collection) {
        let running = &mut self.mapping_running[collection.index()];
        assert!(
            *running > 0,
            "a mapping ended an invocation it did not start"
        );
        *running -= 1;
        self.wake_queues_after(now, collection);
    }

    pub(super) fn poll_queue(&mut self, now: Instant, collection: Collection) {
        let batch_size = self.deployment.queues.batch_size as usize;
        let queue_index = collection.index();
        self.note_mapping_load(now, collection);
        let receives_max = if self.independent_pollers() {
            self.deployment.queues.pollers_max
        } else {
            self.deployment.compaction.reserved_concurrency
        };
        for _ in 0..receives_max {
            if !self.mapping_has_room(now, collection) {
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
            self.record_expired();
            if received.is_empty() || self.throttled(now, collection, &received) {
                self.received_messages = received;
                break;
            }
            let Some(invocation) = self.compaction_lambda.try_start(now) else {
                self.throttle_batch(now, collection, &received);
                self.received_messages = received;
                break;
            };
            self.start_compaction(now, collection, invocation, received);
        }
        if let Some(at) = self.queues[queue_index].next_visible_at(now)
            && at > now
        {
            self.wake(Poller::Queue(collection), at);
        }
    }

    /// Starts a compaction invocation on a received batch: its messages' queue wait ends, and
    /// an empty batch ends at once; a stall may be injected into it.
    fn start_compaction(
        &mut self,
        now: Instant,
        collection: Collection,
        invocation: Invocation,
        mut received: Vec<Received<Message>>,
    ) {
        self.mapping_running[collection.index()] += 1;
        // The vectors of the ended invocation whose box this one takes.
        let (mut vectors, mut handles) = match self.compactions.spare_mut() {
            Some(ended) => (
                ended.machine.take_vectors(),
                std::mem::take(&mut ended.kept.handles),
            ),
            None => Default::default(),
        };
        let messages = &mut vectors.messages;
        handles.clear();
        for message in received.drain(..) {
            self.stages
                .record(Stage::QueueWait, now.since(message.sent_at));
            messages.push(message.body);
            handles.push(message.handle);
        }
        self.received_messages = received;
        let start = now.add(invocation.cold_start);
        self.caches_of(invocation.container.0);
        let actor = Actor::Compaction {
            invocation: invocation.id.0,
            collection,
        };
        self.history
            .record(now, actor, HistoryEvent::BatchReceived, None, &[], || {
                describe_messages(collection, messages)
            });
        let machine = CompactionInvocation::reusing(
            start,
            self.behaviour.compaction.clone(),
            collection,
            vectors,
        );
        // A batch with nothing to apply ends at once, cold start or not.
        let start = if machine.is_done() { now } else { start };
        let stall = if machine.is_done() {
            None
        } else {
            self.draw_stall()
        };
        let kept = CompactionKept {
            handles,
            working_copy: None,
            published: None,
            publish_record: None,
            heartbeat_owner: None,
            stall,
            table_state: None,
        };
        let slot = CompactionSlot::new(invocation, machine, kept);
        let (slot, generation) = self.compactions.insert(slot);
        self.advance::<CompactionSlot>(start, slot, generation);
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

    /// Wakes a compaction mapping when its queue has something receivable and the mapping has
    /// room (independent pollers: below its limit; otherwise: the function has room); a full
    /// mapping or function wakes both mappings when an invocation ends.
    pub(super) fn wake_queue(&mut self, now: Instant, collection: Collection) {
        if !self.mapping_has_room(now, collection) {
            return;
        }
        if let Some(at) = self.queues[collection.index()].next_visible_at(now) {
            self.wake(Poller::Queue(collection), at);
        }
    }
}
