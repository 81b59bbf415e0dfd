//! What a running invocation is to the driver: the one trait (`InvocationState`) the three slot
//! states implement (upload, stream processor, compaction), so that one generic advance, step and
//! kill (`invocations.rs`) runs all three. The trait asks the state machine for effects, hands it
//! answers and drains its notes; its hooks hold what differs between the functions: the cost of
//! an effect, how it is performed, what a note does, and the teardown when an invocation returns
//! or is killed. Generic, not `dyn`: each function's path is compiled on its own. Depends on the
//! slots, the state machines and the rest of the driver.

use super::*;

/// The model's cost of an effect: its duration, and an injected stall delaying it (added after
/// the duration a measured effect took, and to the issue of one in flight).
pub(super) struct Cost {
    pub(super) duration: Duration,
    pub(super) stall: Duration,
}

impl Cost {
    fn of(duration: Duration) -> Cost {
        Cost {
            duration,
            stall: Duration::ZERO,
        }
    }
}

/// What every slot is to the generic advance, step and kill, written once for `Slot`.
pub(super) trait Running {
    fn invocation(&self) -> &Invocation;
    /// The effect the invocation waits on, and its answer when it was performed at issue.
    fn outstanding(&mut self) -> (&mut Option<Effect>, &mut Option<Response>);
    fn poll_effect(&mut self) -> Option<Effect>;
    fn handle_response(&mut self, now: Instant, response: Response);
    fn is_done(&self) -> bool;
}

impl<M: Component, K> Running for Slot<M, K> {
    #[inline]
    fn invocation(&self) -> &Invocation {
        &self.invocation
    }
    #[inline]
    fn outstanding(&mut self) -> (&mut Option<Effect>, &mut Option<Response>) {
        (&mut self.pending, &mut self.answered)
    }
    #[inline]
    fn poll_effect(&mut self) -> Option<Effect> {
        self.machine.poll_effect()
    }
    #[inline]
    fn handle_response(&mut self, now: Instant, response: Response) {
        self.machine.handle_response(now, response);
    }
    #[inline]
    fn is_done(&self) -> bool {
        self.machine.is_done()
    }
}

/// A running invocation's slot state, as the generic advance, step and kill see it: what is
/// common comes from `Running`, what differs between the functions from the hooks below.
pub(super) trait InvocationState: Running + Sized {
    /// The function whose invocations these are (names its step and kill events).
    const FUNCTION: Function;
    /// Whether every effect completes by a step event, even one that takes no time (else an
    /// effect of no duration, asked for at the engine's present, is performed at once).
    const STEPS_EVERY_EFFECT: bool;
    /// What a stalled invocation is called when the driver asserts it finished.
    const NAME: &'static str;

    fn slots<'s, P: Performer>(simulation: &'s mut Simulation<'_, P>) -> &'s mut Slots<Self>;
    fn lambda<'s, P: Performer>(simulation: &'s mut Simulation<'_, P>) -> &'s mut Lambda;

    /// Turns the notes the state machine wrote into counters, stages and history records.
    fn drain_notes<P: Performer>(_: &mut Simulation<'_, P>, _: Instant, _: &mut Self) {}
    /// How long `effect` takes in the model (drawn when the effect is issued).
    fn cost<P: Performer>(
        simulation: &mut Simulation<'_, P>,
        now: Instant,
        state: &mut Self,
        effect: &Effect,
    ) -> Cost;
    /// Performs `effect` on the service models (and the performer) and answers it.
    fn perform<P: Performer>(
        simulation: &mut Simulation<'_, P>,
        now: Instant,
        slot: u32,
        generation: u32,
        state: &mut Self,
        effect: &Effect,
    ) -> Response;
    /// After an answer was handled: the state back, unless the invocation died there.
    #[inline]
    fn responded<P: Performer>(
        _: &mut Simulation<'_, P>,
        _: Instant,
        _: u32,
        _: &Effect,
        state: Box<Self>,
    ) -> Option<Box<Self>> {
        Some(state)
    }
    /// The function returned: what happens before its concurrency comes back.
    fn returned<P: Performer>(simulation: &mut Simulation<'_, P>, now: Instant, state: &mut Self);
    /// The invocation was killed at its deadline (its concurrency already back).
    fn killed<P: Performer>(simulation: &mut Simulation<'_, P>, now: Instant, state: &mut Self);
    /// The slot is free again, after a return or a kill: wakes whoever waits for it.
    fn vacated<P: Performer>(simulation: &mut Simulation<'_, P>, now: Instant, state: &Self);
}

impl UploadSlot {
    fn receipt(&self) -> ReceiptIndex {
        self.machine.unfinished()[0].receipt
    }
}

impl InvocationState for UploadSlot {
    const FUNCTION: Function = Function::Upload;
    const STEPS_EVERY_EFFECT: bool = false;
    const NAME: &'static str = "an upload invocation";

    fn slots<'s, P: Performer>(simulation: &'s mut Simulation<'_, P>) -> &'s mut Slots<Self> {
        &mut simulation.uploads
    }
    fn lambda<'s, P: Performer>(simulation: &'s mut Simulation<'_, P>) -> &'s mut Lambda {
        &mut simulation.upload_lambda
    }
    fn drain_notes<P: Performer>(
        simulation: &mut Simulation<'_, P>,
        now: Instant,
        state: &mut Self,
    ) {
        simulation.drain_upload_notes(now, state);
    }
    fn cost<P: Performer>(
        simulation: &mut Simulation<'_, P>,
        _: Instant,
        state: &mut Self,
        effect: &Effect,
    ) -> Cost {
        Cost::of(simulation.upload_duration(effect, state.receipt()))
    }
    fn perform<P: Performer>(
        simulation: &mut Simulation<'_, P>,
        now: Instant,
        _: u32,
        _: u32,
        state: &mut Self,
        effect: &Effect,
    ) -> Response {
        simulation.perform_upload(now, effect, state.receipt())
    }
    /// The mapping deletes what is left of the batch (every message of it unless each record's
    /// was deleted when handled).
    fn returned<P: Performer>(simulation: &mut Simulation<'_, P>, now: Instant, state: &mut Self) {
        for (_, handle) in std::mem::take(&mut state.kept.handles) {
            simulation.delete_upload(now, handle);
        }
    }
    fn killed<P: Performer>(simulation: &mut Simulation<'_, P>, now: Instant, state: &mut Self) {
        simulation.counters.kills.upload += 1;
        let receipt = state.machine.unfinished().first().map(|plan| plan.receipt);
        let actor = Actor::Upload {
            invocation: state.invocation.id.0,
        };
        let event = HistoryEvent::UploadKilled;
        let history = &mut simulation.history;
        history.record(now, actor, event, receipt, &[], String::new);
    }
    fn vacated<P: Performer>(simulation: &mut Simulation<'_, P>, now: Instant, _: &Self) {
        simulation.wake(Poller::Upload, now);
    }
}

impl InvocationState for ProcessorSlot {
    const FUNCTION: Function = Function::StreamProcessor;
    const STEPS_EVERY_EFFECT: bool = true;
    const NAME: &'static str = "a stream processor invocation";

    fn slots<'s, P: Performer>(simulation: &'s mut Simulation<'_, P>) -> &'s mut Slots<Self> {
        &mut simulation.processors
    }
    fn lambda<'s, P: Performer>(simulation: &'s mut Simulation<'_, P>) -> &'s mut Lambda {
        &mut simulation.processor_lambda
    }
    fn cost<P: Performer>(
        simulation: &mut Simulation<'_, P>,
        _: Instant,
        _: &mut Self,
        effect: &Effect,
    ) -> Cost {
        let processor = &simulation.model.stream_processor;
        let stream = &mut simulation.processor_stream;
        Cost::of(match effect {
            Effect::Work(Work::RouteRecords(records)) => {
                let mut total = Duration::ZERO;
                for _ in 0..*records {
                    total = total.saturating_add(processor.record_handling.sample(stream));
                }
                total
            }
            Effect::SendMessages { .. } => processor.send_batch.sample(stream),
            other => panic!("the stream processor does not ask for {other:?}"),
        })
    }
    /// Routing takes only time; a send puts the messages on their compaction queue.
    fn perform<P: Performer>(
        simulation: &mut Simulation<'_, P>,
        now: Instant,
        _: u32,
        _: u32,
        state: &mut Self,
        effect: &Effect,
    ) -> Response {
        if let Effect::SendMessages {
            collection,
            messages,
        } = effect
        {
            simulation.send_messages(now, state.invocation.id.0, *collection, messages);
        }
        Response::Done
    }
    /// The mapping completes the batch, or retries it when a failure is injected after the sends.
    fn returned<P: Performer>(simulation: &mut Simulation<'_, P>, now: Instant, state: &mut Self) {
        if simulation.stream_retried(now, state) {
            simulation.stream.fail(now, state.kept.batch);
        } else {
            simulation.stream.complete(now, state.kept.batch);
        }
    }
    fn killed<P: Performer>(simulation: &mut Simulation<'_, P>, now: Instant, state: &mut Self) {
        simulation.counters.kills.stream_processor += 1;
        simulation.stream.fail(now, state.kept.batch);
    }
    fn vacated<P: Performer>(simulation: &mut Simulation<'_, P>, now: Instant, _: &Self) {
        simulation.wake_stream(now);
    }
}

impl InvocationState for CompactionSlot {
    const FUNCTION: Function = Function::Compaction;
    const STEPS_EVERY_EFFECT: bool = false;
    const NAME: &'static str = "a compaction invocation";

    fn slots<'s, P: Performer>(simulation: &'s mut Simulation<'_, P>) -> &'s mut Slots<Self> {
        &mut simulation.compactions
    }
    fn lambda<'s, P: Performer>(simulation: &'s mut Simulation<'_, P>) -> &'s mut Lambda {
        &mut simulation.compaction_lambda
    }
    fn drain_notes<P: Performer>(
        simulation: &mut Simulation<'_, P>,
        now: Instant,
        state: &mut Self,
    ) {
        simulation.drain_compaction_notes(now, state);
    }
    /// The model's duration, drawn before the injected stall (which draws only at its point).
    fn cost<P: Performer>(
        simulation: &mut Simulation<'_, P>,
        now: Instant,
        state: &mut Self,
        effect: &Effect,
    ) -> Cost {
        let duration = simulation.compaction_duration(state, effect);
        let stall = simulation.take_stall(now, state);
        Cost { duration, stall }
    }
    fn perform<P: Performer>(
        simulation: &mut Simulation<'_, P>,
        now: Instant,
        slot: u32,
        generation: u32,
        state: &mut Self,
        effect: &Effect,
    ) -> Response {
        simulation.perform_compaction(now, slot, generation, state, effect)
    }
    /// The injected death right after a pointer write.
    #[inline]
    fn responded<P: Performer>(
        simulation: &mut Simulation<'_, P>,
        now: Instant,
        slot: u32,
        effect: &Effect,
        state: Box<Self>,
    ) -> Option<Box<Self>> {
        simulation.kill_after_pointer(now, slot, effect, state)
    }
    /// The mapping deletes (or fails) the batch's messages by their outcomes; the working copy
    /// is dropped.
    fn returned<P: Performer>(simulation: &mut Simulation<'_, P>, now: Instant, state: &mut Self) {
        simulation.report_outcomes(now, state);
        simulation.discard_working_copy(state);
    }
    /// The working copy and the container's file cache are lost with the invocation.
    fn killed<P: Performer>(simulation: &mut Simulation<'_, P>, now: Instant, state: &mut Self) {
        simulation.counters.kills.compaction += 1;
        simulation.discard_working_copy(state);
        simulation.drop_container_cache(state.invocation.container.0);
        let actor = Actor::Compaction {
            invocation: state.invocation.id.0,
            collection: state.machine.collection(),
        };
        let event = HistoryEvent::CompactionKilled;
        let history = &mut simulation.history;
        history.record(now, actor, event, None, &[], String::new);
    }
    fn vacated<P: Performer>(simulation: &mut Simulation<'_, P>, now: Instant, state: &Self) {
        simulation.compaction_ended(now, state.machine.collection());
    }
}
