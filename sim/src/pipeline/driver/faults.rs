//! Injected faults (`config::Faults`): compaction stalls, deaths right after the pointer
//! write, stream processor retries, throttled compaction starts and failing Chroma operations,
//! each drawn from its own named stream and drawing nothing while its share is 0.

use super::*;

/// One named stream per injected fault, so that turning one fault on shifts no other draw.
pub(super) struct FaultStreams {
    pub(super) stall: Stream,
    pub(super) kill_after_pointer: Stream,
    pub(super) stream_retry: Stream,
    pub(super) throttle: Stream,
    pub(super) collection_error: Stream,
}

impl FaultStreams {
    pub(super) fn new(streams: &Streams) -> FaultStreams {
        FaultStreams {
            stall: streams.stream("fault-compaction-stall"),
            kill_after_pointer: streams.stream("fault-kill-after-pointer"),
            stream_retry: streams.stream("fault-stream-retry"),
            throttle: streams.stream("fault-throttle"),
            collection_error: streams.stream("fault-collection-error"),
        }
    }
}

/// Whether an injected fault with this share strikes (no draw when the fault is off).
pub(super) fn strikes(stream: &mut Stream, share: f64) -> bool {
    share > 0.0 && chance(stream, share)
}

impl<P: Performer> Simulation<'_, P> {
    /// An injected throttle of the compaction start for a batch the mapping just received: the
    /// invocation is refused, the messages stay in flight until their visibility timeout (the
    /// receive counts towards the receive limit), and the mapping backs off one poll interval.
    pub(super) fn throttled(
        &mut self,
        now: Instant,
        collection: Collection,
        received: &[Received<Message>],
    ) -> bool {
        let share = self.faults.injected.throttle_share;
        if !strikes(&mut self.fault_streams.throttle, share) {
            return false;
        }
        self.counters.throttles_injected += 1;
        if self.history.filter.wants(HistoryEvent::Throttled, None) {
            let messages: Vec<Message> = received.iter().map(|message| message.body).collect();
            let actor = Actor::Queue { collection };
            let event = HistoryEvent::Throttled;
            self.record_messages(now, actor, event, collection, &messages, String::new);
        }
        let backoff = now.add(self.deployment.queues.poll_interval);
        self.wake(Poller::Queue(collection), backoff);
        true
    }

    /// Whether a new compaction invocation will stall, and for how long.
    pub(super) fn draw_stall(&mut self) -> Option<Duration> {
        let faults = &self.faults.injected;
        if !strikes(&mut self.fault_streams.stall, faults.compaction_stall_share) {
            return None;
        }
        Some(
            faults
                .compaction_stall
                .sample(&mut self.fault_streams.stall),
        )
    }

    /// The stall to add to the effect the invocation just asked for, if it is the stall point.
    pub(super) fn take_stall(&mut self, now: Instant, state: &mut CompactionSlot) -> Duration {
        let point = self.faults.injected.compaction_stall_point;
        if state.kept.stall.is_none() || !state.machine.at_stall_point(point) {
            return Duration::ZERO;
        }
        let stall = state.kept.stall.take().expect("checked above");
        self.counters.stalls += 1;
        if !self.history.filter.is_off() {
            let collection = state.machine.collection();
            let actor = Actor::Compaction {
                invocation: state.invocation.id.0,
                collection,
            };
            let name = match point {
                StallPoint::BeforePublish => "before_publish",
                StallPoint::HoldingLock => "holding_lock",
                StallPoint::Uploading => "uploading",
            };
            let messages = state.machine.messages();
            self.record_messages(
                now,
                actor,
                HistoryEvent::Stalled,
                collection,
                messages,
                || format!("{name} for {stall}"),
            );
        }
        stall
    }

    /// After a pointer write, the injected death of the invocation: nothing after the write happens
    /// (no deletes or failures reported, no lock release, no cache write-back; the execution
    /// environment comes back with an empty cache). Returns the state back if it survives.
    #[inline]
    pub(super) fn kill_after_pointer(
        &mut self,
        now: Instant,
        slot: u32,
        effect: &Effect,
        state: Box<CompactionSlot>,
    ) -> Option<Box<CompactionSlot>> {
        let share = self.faults.injected.kill_after_pointer_share;
        if !matches!(effect, Effect::WritePointer { .. })
            || !strikes(&mut self.fault_streams.kill_after_pointer, share)
        {
            return Some(state);
        }
        self.die_after_pointer(now, slot, state);
        None
    }

    #[cold]
    pub(super) fn die_after_pointer(
        &mut self,
        now: Instant,
        slot: u32,
        mut state: Box<CompactionSlot>,
    ) {
        self.drain_compaction_notes(now, &mut state);
        self.counters.kills_after_pointer += 1;
        let collection = state.machine.collection();
        if !self.history.filter.is_off() {
            let actor = Actor::Compaction {
                invocation: state.invocation.id.0,
                collection,
            };
            let event = HistoryEvent::KilledAfterPointer;
            let messages = state.machine.messages();
            self.record_messages(now, actor, event, collection, messages, String::new);
        }
        self.discard_working_copy(&mut state);
        self.drop_container_cache(state.invocation.container.0);
        self.compaction_lambda.finish(now, state.invocation.id);
        self.compactions.release(slot);
        self.compaction_ended(now, collection);
    }

    /// Whether a finished stream processor invocation fails by injection after its sends, so that
    /// the mapping retries (or bisects) its batch and the messages are sent again.
    pub(super) fn stream_retried(&mut self, now: Instant, state: &ProcessorSlot) -> bool {
        let share = self.faults.injected.stream_retry_share;
        if !strikes(&mut self.fault_streams.stream_retry, share) {
            return false;
        }
        self.counters.stream_retries += 1;
        let actor = Actor::StreamProcessor {
            invocation: state.invocation.id.0,
        };
        let event = HistoryEvent::StreamRetried;
        let mut recorded = false;
        for collection in Collection::ALL {
            let messages = state.machine.messages(collection);
            recorded |= !messages.is_empty();
            self.record_messages(now, actor, event, collection, messages, String::new);
        }
        if !recorded {
            self.history
                .record(now, actor, event, None, &[], || "no messages".to_string());
        }
        true
    }

    /// Whether an injected fault fails this Chroma operation of the compaction before it is
    /// performed (the working copy stays as it was).
    pub(super) fn collection_fails(&mut self) -> bool {
        let share = self.faults.injected.collection_error_share;
        strikes(&mut self.fault_streams.collection_error, share)
    }
}
