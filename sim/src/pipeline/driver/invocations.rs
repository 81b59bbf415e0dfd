//! Running invocations, one generic mechanism for the three functions (over `InvocationState`):
//! advancing a state machine through its effects (at once when an effect takes no time, else by a
//! step event), its deadline kill, lock heartbeats, and its end. In measured
//! timing (`Performer::measured_timing`) a data-plane effect is performed when it is issued and its
//! answer kept in the slot until its step, the measured duration later; an effect the performer
//! starts instead waits in flight, and its step is scheduled when the lookahead hears it ended.

use super::*;

/// Bounds the lookahead's waits when no event is left but effects are in flight.
const LOOKAHEAD_WAITS_MAX: usize = 1 << 20;

/// An effect in flight: its invocation, when it was issued and its deadline.
pub(super) struct InFlight {
    function: Function,
    slot: u32,
    generation: u32,
    issued: Instant,
    deadline: Instant,
}

impl<P: Performer> Simulation<'_, P> {
    /// Runs an invocation on from where it is: performs at once each effect that takes no time,
    /// and leaves it waiting on the first that does (its step scheduled, or in flight); when the
    /// state machine asks for nothing more, the invocation returns.
    pub(super) fn advance<I: InvocationState>(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = I::slots(self).take(slot, generation) else {
            return;
        };
        for _ in 0..SYNCHRONOUS_EFFECTS_MAX {
            I::drain_notes(self, now, &mut state);
            let Some(effect) = state.poll_effect() else {
                break;
            };
            match self.issue(now, slot, generation, state, effect) {
                Some(survivor) => state = survivor,
                None => return,
            }
        }
        self.end(now, slot, state);
    }

    /// Issues `effect`: draws its cost; performs it at issue if the performer measures it; then
    /// either defers its completion (the state goes back into its slot, `None`) or performs and
    /// answers it at once (the state back, unless the invocation died of the answer).
    fn issue<I: InvocationState>(
        &mut self,
        now: Instant,
        slot: u32,
        generation: u32,
        mut state: Box<I>,
        effect: Effect,
    ) -> Option<Box<I>> {
        let cost = I::cost(self, now, &mut state, &effect);
        let mut duration = cost.duration;
        let answered = if self.measures(&effect) {
            let response = I::perform(self, now, slot, generation, &mut state, &effect);
            duration = self.performer.take_measured();
            if let Some(ticket) = self.performer.take_started() {
                let issued = self.engine.now().max(now).add(cost.stall);
                self.start_in_flight(ticket, slot, generation, issued, state, effect);
                return None;
            }
            Some(response)
        } else {
            None
        };
        let duration = duration.saturating_add(cost.stall);
        let deadline = state.invocation().deadline;
        if self.defer::<I>(slot, generation, now, duration, deadline) {
            let (pending, answer) = state.outstanding();
            *pending = Some(effect);
            *answer = answered;
            I::slots(self).put_back(slot, state);
            return None;
        }
        let response = match answered {
            Some(response) => response,
            None => I::perform(self, now, slot, generation, &mut state, &effect),
        };
        state.handle_response(now, response);
        I::responded(self, now, slot, &effect, state)
    }

    /// The outstanding effect of an invocation completes: its answer (kept from its issue, or
    /// performed now) is handed to the state machine, which then runs on.
    pub(super) fn step<I: InvocationState>(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = I::slots(self).take(slot, generation) else {
            return;
        };
        let (pending, answer) = state.outstanding();
        let effect = pending.take().expect("a step has an outstanding effect");
        let response = match answer.take() {
            Some(response) => response,
            None => I::perform(self, now, slot, generation, &mut state, &effect),
        };
        state.handle_response(now, response);
        let Some(state) = I::responded(self, now, slot, &effect, state) else {
            return;
        };
        I::slots(self).put_back(slot, state);
        self.advance::<I>(now, slot, generation);
    }

    /// The function returned: its teardown, its concurrency back, its slot free.
    fn end<I: InvocationState>(&mut self, now: Instant, slot: u32, mut state: Box<I>) {
        I::drain_notes(self, now, &mut state);
        assert!(state.is_done(), "{} stalled", I::NAME);
        I::returned(self, now, &mut state);
        let id = state.invocation().id;
        I::lambda(self).finish(now, id);
        I::slots(self).release(slot);
        I::vacated(self, now, &state);
        I::slots(self).recycle(state);
    }

    /// An invocation's deadline: if it still runs, it is killed (its outstanding effect never
    /// completes) and its slot freed.
    pub(super) fn kill<I: InvocationState>(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = I::slots(self).take(slot, generation) else {
            return;
        };
        let id = state.invocation().id;
        I::lambda(self).kill(now, id);
        I::killed(self, now, &mut state);
        I::slots(self).release(slot);
        I::vacated(self, now, &state);
        I::slots(self).recycle(state);
    }

    /// An effect the performer started: the invocation waits in its slot until the lookahead
    /// hears the effect ended.
    fn start_in_flight<I: InvocationState>(
        &mut self,
        ticket: u64,
        slot: u32,
        generation: u32,
        issued: Instant,
        mut state: Box<I>,
        effect: Effect,
    ) {
        let in_flight = InFlight {
            function: I::FUNCTION,
            slot,
            generation,
            issued,
            deadline: state.invocation().deadline,
        };
        self.in_flight.insert(ticket, in_flight);
        let (pending, answer) = state.outstanding();
        *pending = Some(effect);
        *answer = None;
        I::slots(self).put_back(slot, state);
    }

    /// An effect in flight ended: its answer is kept in the slot and its step scheduled at its
    /// issue plus its duration (if the invocation still runs).
    fn land<I: InvocationState>(&mut self, in_flight: &InFlight, completion: &Completion) {
        let (slot, generation) = (in_flight.slot, in_flight.generation);
        let Some(mut state) = I::slots(self).take(slot, generation) else {
            return;
        };
        *state.outstanding().1 = Some(completion.answer);
        I::slots(self).put_back(slot, state);
        let at = in_flight.issued.add(completion.duration);
        let at = at.max(self.engine.now());
        let deadline = in_flight.deadline.max(self.engine.now());
        self.schedule_step(I::FUNCTION, slot, generation, at, deadline);
    }

    /// Sends a stream processor invocation's messages to their compaction queue.
    pub(super) fn send_messages(
        &mut self,
        now: Instant,
        invocation: u64,
        collection: Collection,
        messages: &[Message],
    ) {
        let fifo = self.deployment.queues.kind == ConfigQueueKind::Fifo;
        let actor = Actor::StreamProcessor { invocation };
        let event = HistoryEvent::MessagesSent;
        self.record_messages(now, actor, event, collection, messages, String::new);
        for message in messages {
            let group = fifo.then_some(message.group);
            let digest = message.content_digest();
            self.queues[collection.index()].send(now, *message, group, digest);
        }
        self.wake_queue(now, collection);
    }

    /// Drops a compaction invocation's working copy, if it opened one.
    pub(super) fn discard_working_copy(&mut self, state: &mut CompactionSlot) {
        let collection = state.machine.collection();
        if let Some(working_copy) = state.kept.working_copy.take() {
            self.stores[collection.index()].discard(working_copy);
        }
    }

    /// Conservative lookahead before the next event: waits for the effects in flight that may end
    /// before it (or before their deadline, or before an effect that ended) and schedules each ended one's step at its issue plus
    /// its duration, which no event handled so far follows; an effect still in flight at its
    /// deadline is killed there. With no event left, waits until one is scheduled or none is in
    /// flight.
    pub(super) fn look_ahead(&mut self) {
        for _ in 0..LOOKAHEAD_WAITS_MAX {
            let next = self.engine.next_at();
            let deadline = self.in_flight.values().map(|f| f.deadline).min();
            let until = match (next, deadline) {
                (Some(next), Some(deadline)) => Some(next.min(deadline)),
                (next, deadline) => next.or(deadline),
            };
            let mut ended = std::mem::take(&mut self.completions);
            ended.clear();
            let reached = self.performer.complete_until(until, &mut ended);
            for completion in &ended {
                let Some(in_flight) = self.in_flight.remove(&completion.ticket) else {
                    continue;
                };
                match in_flight.function {
                    Function::Upload => self.land::<UploadSlot>(&in_flight, completion),
                    Function::StreamProcessor => self.land::<ProcessorSlot>(&in_flight, completion),
                    Function::Compaction => self.land::<CompactionSlot>(&in_flight, completion),
                }
            }
            self.completions = ended;
            if let Some(reached) = reached {
                self.kill_overdue(reached);
            }
            // The next event may be handled only if no effect in flight can end before it.
            let next_reached = match (self.engine.next_at(), reached) {
                (Some(next), Some(reached)) => next <= reached,
                _ => false,
            };
            if self.in_flight.is_empty() || next_reached {
                return;
            }
        }
        panic!("effects in flight never ended");
    }

    /// Kills at their deadline the invocations whose effect is still in flight there (no effect
    /// in flight ends before `reached`).
    fn kill_overdue(&mut self, reached: Instant) {
        let overdue: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= reached)
            .map(|(ticket, _)| *ticket)
            .collect();
        for ticket in overdue {
            let in_flight = self.in_flight.remove(&ticket).expect("listed");
            let deadline = in_flight.deadline.max(self.engine.now());
            let (slot, generation) = (in_flight.slot, in_flight.generation);
            self.schedule_step(in_flight.function, slot, generation, Instant::MAX, deadline);
        }
    }

    pub(super) fn report_outcomes(&mut self, now: Instant, state: &CompactionSlot) {
        let collection = state.machine.collection();
        let queue = &mut self.queues[collection.index()];
        let any_failed = state.machine.outcomes().contains(&Outcome::Failed);
        let whole_batch =
            self.behaviour.compaction.failure_reporting == FailureReporting::WholeBatch;
        let mut deleted = 0u64;
        let mut failed = 0u64;
        for (outcome, handle) in state.machine.outcomes().iter().zip(&state.kept.handles) {
            let delete = match outcome {
                Outcome::Done => !(whole_batch && any_failed),
                Outcome::Failed => false,
                Outcome::Open => unreachable!("a finished invocation decided every message"),
            };
            if delete {
                if queue.delete(now, *handle).is_deleted() {
                    deleted += 1;
                } else {
                    self.counters.stale_deletes += 1;
                }
            } else {
                queue.fail(now, *handle, false);
                failed += 1;
            }
        }
        self.counters.messages_failed += failed;
        let actor = Actor::Compaction {
            invocation: state.invocation.id.0,
            collection,
        };
        if deleted > 0 {
            self.history
                .record(now, actor, HistoryEvent::MessagesDeleted, None, &[], || {
                    deleted.to_string()
                });
        }
        if failed > 0 {
            self.history
                .record(now, actor, HistoryEvent::MessagesFailed, None, &[], || {
                    failed.to_string()
                });
        }
    }

    /// Schedules the completion of an effect that takes `duration` from `now`, and says so; an
    /// effect with no duration, asked for at the engine's present, completes at once instead
    /// (unless every effect of the function takes a step).
    pub(super) fn defer<I: InvocationState>(
        &mut self,
        slot: u32,
        generation: u32,
        now: Instant,
        duration: Duration,
        deadline: Instant,
    ) -> bool {
        if !I::STEPS_EVERY_EFFECT && duration == Duration::ZERO && now <= self.engine.now() {
            return false;
        }
        let at = self.engine.now().max(now).add(duration);
        self.schedule_step(I::FUNCTION, slot, generation, at, deadline);
        true
    }

    /// Schedules the completion of an invocation's outstanding effect, or, if that lies past the
    /// invocation's deadline, its kill at the deadline (the effect then never completes).
    pub(super) fn schedule_step(
        &mut self,
        function: Function,
        slot: u32,
        generation: u32,
        at: Instant,
        deadline: Instant,
    ) {
        if at > deadline {
            self.engine.schedule_at(
                deadline,
                Event::Kill {
                    function,
                    slot,
                    generation,
                },
            );
        } else {
            self.engine.schedule_at(
                at,
                Event::Step {
                    function,
                    slot,
                    generation,
                },
            );
        }
    }

    pub(super) fn heartbeat(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(state) = self.compactions.get(slot, generation) else {
            return;
        };
        let Some(owner) = state.kept.heartbeat_owner else {
            return;
        };
        let collection = state.machine.collection();
        let lease = self.behaviour.compaction.lock_lease;
        let heartbeat_interval = self.behaviour.compaction.heartbeat_interval;
        let interval = heartbeat_interval.expect("a heartbeat runs only with heartbeats on");
        if self.locks[collection.index()]
            .heartbeat(now, owner, lease)
            .is_ok()
        {
            self.engine
                .schedule_at(now.add(interval), Event::Heartbeat { slot, generation });
        }
    }
}
