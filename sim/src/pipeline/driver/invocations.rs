//! Running invocations: advancing a state machine through its effects (at once when an effect takes
//! no time, else by a step event), its deadline kill, lock heartbeats, and its end. In measured
//! timing (`Performer::measured_timing`) a data-plane effect is performed when it is issued and its
//! answer kept in the slot until its step, the measured duration later; an effect the performer
//! starts instead waits in flight, and its step is scheduled when the lookahead hears it ended.

use super::*;

/// Bounds the lookahead's waits when no event is left but effects are in flight.
const LOOKAHEAD_WAITS_MAX: usize = 1 << 20;

/// A compaction effect in flight: its invocation, when it was issued and its deadline.
pub(super) struct InFlight {
    slot: u32,
    generation: u32,
    issued: Instant,
    deadline: Instant,
}

impl<P: Performer> Simulation<'_, P> {
    pub(super) fn advance_upload(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = self.uploads.take(slot, generation) else {
            return;
        };
        for _ in 0..SYNCHRONOUS_EFFECTS_MAX {
            self.drain_upload_notes(now, &mut state);
            let Some(effect) = state.machine.poll_effect() else {
                break;
            };
            let receipt = state.machine.unfinished()[0].receipt;
            let mut duration = self.upload_duration(&effect, receipt);
            let answered = if self.measures(&effect) {
                let response = self.perform_upload(now, &effect, receipt);
                duration = self.performer.take_measured();
                Some(response)
            } else {
                None
            };
            let deadline = state.invocation.deadline;
            if self.defer_effect(Function::Upload, slot, generation, now, duration, deadline) {
                state.pending = Some(effect);
                state.answered = answered;
                self.uploads.put_back(slot, state);
                return;
            }
            let response = match answered {
                Some(response) => response,
                None => self.perform_upload(now, &effect, receipt),
            };
            state.machine.handle_response(now, response);
        }
        self.drain_upload_notes(now, &mut state);
        assert!(state.machine.is_done(), "an upload invocation stalled");
        // The function returned: the mapping deletes what is left of the batch (every message of
        // it unless each record's was deleted when handled).
        for (_, handle) in std::mem::take(&mut state.handles) {
            self.delete_upload(now, handle);
        }
        self.upload_lambda.finish(now, state.invocation.id);
        self.uploads.release(slot);
        self.wake(Poller::Upload, now);
    }

    pub(super) fn step_upload(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = self.uploads.take(slot, generation) else {
            return;
        };
        let effect = state
            .pending
            .take()
            .expect("a step has an outstanding effect");
        let receipt = state.machine.unfinished()[0].receipt;
        let response = match state.answered.take() {
            Some(response) => response,
            None => self.perform_upload(now, &effect, receipt),
        };
        state.machine.handle_response(now, response);
        self.uploads.put_back(slot, state);
        self.advance_upload(now, slot, generation);
    }

    pub(super) fn advance_processor(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = self.processors.take(slot, generation) else {
            return;
        };
        if let Some(effect) = state.machine.poll_effect() {
            let config = &self.config.stream_processor;
            let duration = match &effect {
                Effect::Work(Work::RouteRecords(records)) => {
                    let mut total = Duration::ZERO;
                    for _ in 0..*records {
                        total = total.saturating_add(
                            config.record_handling.sample(&mut self.processor_stream),
                        );
                    }
                    total
                }
                Effect::SendMessages { .. } => config.send_batch.sample(&mut self.processor_stream),
                other => panic!("the stream processor does not ask for {other:?}"),
            };
            state.pending = Some(effect);
            let at = now.max(self.engine.now()).add(duration);
            self.schedule_step(
                Function::StreamProcessor,
                slot,
                generation,
                at,
                state.invocation.deadline,
            );
            self.processors.put_back(slot, state);
            return;
        }
        assert!(state.machine.is_done());
        self.processor_lambda.finish(now, state.invocation.id);
        if self.stream_retried(now, &state) {
            self.stream.fail(now, state.batch);
        } else {
            self.stream.complete(now, state.batch);
        }
        self.processors.release(slot);
        self.wake_stream(now);
    }

    pub(super) fn step_processor(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = self.processors.take(slot, generation) else {
            return;
        };
        let effect = state
            .pending
            .take()
            .expect("a step has an outstanding effect");
        if let Effect::SendMessages {
            collection,
            messages,
        } = effect
        {
            let fifo = self.config.queues.kind == ConfigQueueKind::Fifo;
            let actor = Actor::StreamProcessor {
                invocation: state.invocation.id.0,
            };
            let event = HistoryEvent::MessagesSent;
            self.record_messages(now, actor, event, collection, &messages, String::new);
            for message in messages {
                let group = fifo.then_some(message.group);
                let digest = message.content_digest();
                self.queues[collection.index()].send(now, message, group, digest);
            }
            self.wake_queue(now, collection);
        }
        state.machine.handle_response(now, Response::Done);
        self.processors.put_back(slot, state);
        self.advance_processor(now, slot, generation);
    }

    pub(super) fn advance_compaction(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = self.compactions.take(slot, generation) else {
            return;
        };
        for _ in 0..SYNCHRONOUS_EFFECTS_MAX {
            self.drain_compaction_notes(now, &mut state);
            let Some(effect) = state.machine.poll_effect() else {
                break;
            };
            let mut duration = self.compaction_duration(&state, &effect);
            let stall = self.take_stall(now, &mut state);
            let answered = if self.measures(&effect) {
                let response = self.perform_compaction(now, slot, generation, &mut state, &effect);
                duration = self.performer.take_measured();
                if let Some(ticket) = self.performer.take_started() {
                    let in_flight = InFlight {
                        slot,
                        generation,
                        issued: self.engine.now().max(now).add(stall),
                        deadline: state.invocation.deadline,
                    };
                    self.in_flight.insert(ticket, in_flight);
                    state.pending = Some(effect);
                    state.answered = None;
                    self.compactions.put_back(slot, state);
                    return;
                }
                Some(response)
            } else {
                None
            };
            let duration = duration.saturating_add(stall);
            let deadline = state.invocation.deadline;
            if self.defer_effect(
                Function::Compaction,
                slot,
                generation,
                now,
                duration,
                deadline,
            ) {
                state.pending = Some(effect);
                state.answered = answered;
                self.compactions.put_back(slot, state);
                return;
            }
            let response = match answered {
                Some(response) => response,
                None => self.perform_compaction(now, slot, generation, &mut state, &effect),
            };
            state.machine.handle_response(now, response);
            let Some(survivor) = self.kill_after_pointer(now, slot, &effect, state) else {
                return;
            };
            state = survivor;
        }
        self.drain_compaction_notes(now, &mut state);
        assert!(state.machine.is_done(), "a compaction invocation stalled");
        self.report_outcomes(now, &state);
        let collection = state.machine.collection();
        if let Some(working_copy) = state.working_copy.take() {
            self.stores[collection.index()].discard(working_copy);
        }
        self.compaction_lambda.finish(now, state.invocation.id);
        self.compactions.release(slot);
        self.compaction_ended(now, collection);
    }

    pub(super) fn step_compaction(&mut self, now: Instant, slot: u32, generation: u32) {
        let Some(mut state) = self.compactions.take(slot, generation) else {
            return;
        };
        let effect = state
            .pending
            .take()
            .expect("a step has an outstanding effect");
        let response = match state.answered.take() {
            Some(response) => response,
            None => self.perform_compaction(now, slot, generation, &mut state, &effect),
        };
        state.machine.handle_response(now, response);
        let Some(state) = self.kill_after_pointer(now, slot, &effect, state) else {
            return;
        };
        self.compactions.put_back(slot, state);
        self.advance_compaction(now, slot, generation);
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
                let (slot, generation) = (in_flight.slot, in_flight.generation);
                let Some(mut state) = self.compactions.take(slot, generation) else {
                    continue;
                };
                state.answered = Some(completion.answer);
                self.compactions.put_back(slot, state);
                let at = in_flight.issued.add(completion.duration);
                let at = at.max(self.engine.now());
                let deadline = in_flight.deadline.max(self.engine.now());
                self.schedule_step(Function::Compaction, slot, generation, at, deadline);
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
            self.schedule_step(
                Function::Compaction,
                slot,
                generation,
                Instant::MAX,
                deadline,
            );
        }
    }

    pub(super) fn report_outcomes(&mut self, now: Instant, state: &CompactionSlot) {
        let collection = state.machine.collection();
        let queue = &mut self.queues[collection.index()];
        let any_failed = state.machine.outcomes().contains(&Outcome::Failed);
        let whole_batch = self.config.compaction.failure_reporting == FailureReporting::WholeBatch;
        let mut deleted = 0u64;
        let mut failed = 0u64;
        for (outcome, handle) in state.machine.outcomes().iter().zip(&state.handles) {
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
    /// effect with no duration, asked for at the engine's present, completes at once instead.
    pub(super) fn defer_effect(
        &mut self,
        function: Function,
        slot: u32,
        generation: u32,
        now: Instant,
        duration: Duration,
        deadline: Instant,
    ) -> bool {
        if duration == Duration::ZERO && now <= self.engine.now() {
            return false;
        }
        let at = self.engine.now().max(now).add(duration);
        self.schedule_step(function, slot, generation, at, deadline);
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
        let Some(owner) = state.heartbeat_owner else {
            return;
        };
        let collection = state.machine.collection();
        let lease = self.config.compaction.lock_lease;
        let interval = self.config.compaction.heartbeat_interval;
        if self.locks[collection.index()]
            .heartbeat(now, owner, lease)
            .is_ok()
        {
            self.engine
                .schedule_at(now.add(interval), Event::Heartbeat { slot, generation });
        }
    }

    pub(super) fn kill(&mut self, now: Instant, function: Function, slot: u32, generation: u32) {
        match function {
            Function::Upload => {
                let Some(state) = self.uploads.take(slot, generation) else {
                    return;
                };
                self.upload_lambda.kill(now, state.invocation.id);
                self.counters.kills.upload += 1;
                let receipt = state.machine.unfinished().first().map(|plan| plan.receipt);
                self.history.record(
                    now,
                    Actor::Upload {
                        invocation: state.invocation.id.0,
                    },
                    HistoryEvent::UploadKilled,
                    receipt,
                    &[],
                    String::new,
                );
                self.uploads.release(slot);
                self.wake(Poller::Upload, now);
            }
            Function::StreamProcessor => {
                let Some(state) = self.processors.take(slot, generation) else {
                    return;
                };
                self.processor_lambda.kill(now, state.invocation.id);
                self.counters.kills.stream_processor += 1;
                self.stream.fail(now, state.batch);
                self.processors.release(slot);
                self.wake_stream(now);
            }
            Function::Compaction => {
                let Some(mut state) = self.compactions.take(slot, generation) else {
                    return;
                };
                self.compaction_lambda.kill(now, state.invocation.id);
                self.counters.kills.compaction += 1;
                let collection = state.machine.collection();
                if let Some(working_copy) = state.working_copy.take() {
                    self.stores[collection.index()].discard(working_copy);
                }
                self.drop_container_cache(state.invocation.container.0);
                let actor = Actor::Compaction {
                    invocation: state.invocation.id.0,
                    collection,
                };
                self.history.record(
                    now,
                    actor,
                    HistoryEvent::CompactionKilled,
                    None,
                    &[],
                    String::new,
                );
                self.compactions.release(slot);
                self.compaction_ended(now, collection);
            }
        }
    }
}
