//! One Lambda function's concurrency: reserved concurrency, warm and cold containers, timeouts, and
//! busy time.
//!
//! `try_start` admits an invocation if fewer than `reserved_concurrency` run, else counts a throttle.
//! An admitted invocation runs in an execution environment (a container, whose file cache the driver
//! keeps): the most recently used idle container if one exists, else a new one. A new container
//! always starts cold; a reused one starts cold with probability `cold_start_share` (the platform
//! recycled it, so it comes back empty under a new id). Cold start durations are drawn from
//! `cold_start_duration`. Idle containers older than `container_idle_max` are reclaimed.
//! An invocation still running at `deadline` is killed by the driver (`kill`); its container is
//! discarded, and a later `finish` of it reports that it was killed.
//!
//! Guarantee honoured: never more than `reserved_concurrency` invocations at once (asserted).
//! Broken on purpose by a timeout shorter than the work: the killed invocation may have written the
//! pointer and not yet reported success, so its messages come back.
//! Depends on `time`, `random` and `distribution`.

use crate::distribution::DurationDist;
use crate::random::Stream;
use crate::time::{Duration, Instant};
use std::collections::VecDeque;

/// Knobs of one function.
#[derive(Clone, Debug, PartialEq)]
pub struct LambdaParams {
    /// Invocations allowed at once (at least 1).
    pub reserved_concurrency: u32,
    /// The function's timeout; the driver kills an invocation at its start plus this.
    pub timeout: Duration,
    /// Share of invocations on a reused container that still start cold.
    pub cold_start_share: f64,
    pub cold_start_duration: DurationDist,
    /// Idle containers older than this are reclaimed; `None`: kept for the whole trial.
    pub container_idle_max: Option<Duration>,
}

/// An invocation, unique over the trial.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InvocationId(pub u64);

/// An execution environment, unique over the trial; a cold start always gets a new one.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerId(pub u64);

/// An admitted invocation.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub id: InvocationId,
    pub container: ContainerId,
    pub started_at: Instant,
    /// Zero for a warm start; the handler begins at `started_at + cold_start`.
    pub cold_start: Duration,
    /// When the driver must kill the invocation if it is still running.
    pub deadline: Instant,
}

/// How an invocation ended, as `finish` finds it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FinishOutcome {
    Finished,
    /// The invocation had already been killed at its deadline; its work after that did not happen.
    AlreadyKilled,
}

/// Counts kept by the function.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LambdaCounters {
    pub invocations: u64,
    pub throttles: u64,
    pub cold_starts: u64,
    pub kills: u64,
    pub containers_created: u64,
    pub containers_reclaimed: u64,
    pub in_flight_max: u32,
}

/// Killed invocations remembered so that a late `finish` can be told apart, at most this many.
const KILLED_REMEMBERED_MAX: usize = 4096;

/// The invocations (running or idle) a Lambda has room for from the start.
const ROOM_INITIAL: u32 = 8;

/// One function's concurrency model.
#[derive(Clone, Debug)]
pub struct Lambda {
    params: LambdaParams,
    stream: Stream,
    /// Ascending by id: ids are handed out in order, so a start appends.
    running: Vec<Invocation>,
    /// Idle containers with the time they became idle, most recently used last.
    idle: Vec<(ContainerId, Instant)>,
    killed: VecDeque<InvocationId>,
    invocation_next: u64,
    container_next: u64,
    busy_nanos: u128,
    busy_since: Instant,
    counters: LambdaCounters,
}

impl Lambda {
    /// `stream` decides cold starts and their durations.
    pub fn new(params: LambdaParams, stream: Stream) -> Lambda {
        Lambda::reusing(None, params, stream)
    }

    /// A new function, as `new` makes it, whose vectors are `old`'s, emptied, when there is one:
    /// a worker running trial after trial allocates them once.
    pub fn reusing(old: Option<Lambda>, params: LambdaParams, stream: Stream) -> Lambda {
        assert!(
            params.reserved_concurrency >= 1,
            "reserved concurrency must be at least 1"
        );
        assert!(
            (0.0..=1.0).contains(&params.cold_start_share),
            "cold start share in [0, 1]"
        );
        // Room for the invocations of a small deployment, so that a short trial rarely grows them.
        let room = params.reserved_concurrency.min(ROOM_INITIAL) as usize;
        let (mut running, mut idle, mut killed) = match old {
            Some(old) => (old.running, old.idle, old.killed),
            None => (Vec::new(), Vec::new(), VecDeque::new()),
        };
        running.clear();
        running.reserve(room);
        idle.clear();
        idle.reserve(room);
        killed.clear();
        Lambda {
            params,
            stream,
            running,
            idle,
            killed,
            invocation_next: 0,
            container_next: 0,
            busy_nanos: 0,
            busy_since: Instant::ZERO,
            counters: LambdaCounters::default(),
        }
    }

    pub fn params(&self) -> &LambdaParams {
        &self.params
    }

    pub fn counters(&self) -> &LambdaCounters {
        &self.counters
    }

    pub fn in_flight(&self) -> u32 {
        self.running.len() as u32
    }

    /// Whether an invocation would be admitted now.
    pub fn has_capacity(&self) -> bool {
        self.in_flight() < self.params.reserved_concurrency
    }

    fn account_busy(&mut self, now: Instant) {
        let elapsed = now.since(self.busy_since);
        self.busy_nanos += u128::from(elapsed.as_nanos()) * self.running.len() as u128;
        self.busy_since = now;
    }

    fn reclaim_idle(&mut self, now: Instant) {
        let Some(idle_max) = self.params.container_idle_max else {
            return;
        };
        let before = self.idle.len();
        self.idle
            .retain(|(_, idle_since)| now.saturating_since(*idle_since) <= idle_max);
        self.counters.containers_reclaimed += (before - self.idle.len()) as u64;
    }

    fn new_container(&mut self) -> ContainerId {
        self.container_next += 1;
        self.counters.containers_created += 1;
        ContainerId(self.container_next)
    }

    /// Admits an invocation, or counts a throttle and returns `None`.
    pub fn try_start(&mut self, now: Instant) -> Option<Invocation> {
        if !self.has_capacity() {
            self.counters.throttles += 1;
            return None;
        }
        self.account_busy(now);
        self.reclaim_idle(now);
        let reused = self.idle.pop().map(|(container, _)| container);
        let recycled = reused.is_some()
            && super::unit_interval(&mut self.stream) < self.params.cold_start_share;
        let (container, cold) = match reused {
            Some(container) if !recycled => (container, false),
            _ => (self.new_container(), true),
        };
        let cold_start = if cold {
            self.counters.cold_starts += 1;
            self.params.cold_start_duration.sample(&mut self.stream)
        } else {
            Duration::ZERO
        };
        self.invocation_next += 1;
        let id = InvocationId(self.invocation_next);
        let deadline = now.add(self.params.timeout);
        let invocation = Invocation {
            id,
            container,
            started_at: now,
            cold_start,
            deadline,
        };
        debug_assert!(self.running.last().is_none_or(|last| last.id < id));
        self.running.push(invocation);
        self.counters.invocations += 1;
        self.counters.in_flight_max = self.counters.in_flight_max.max(self.in_flight());
        assert!(
            self.in_flight() <= self.params.reserved_concurrency,
            "reserved concurrency exceeded"
        );
        Some(invocation)
    }

    /// The invocation ended; its container becomes idle. Reports a kill that came first.
    pub fn finish(&mut self, now: Instant, id: InvocationId) -> FinishOutcome {
        if self.killed.contains(&id) {
            return FinishOutcome::AlreadyKilled;
        }
        self.account_busy(now);
        let invocation = self
            .take_running(id)
            .expect("finish of an unknown invocation");
        assert!(
            now <= invocation.deadline,
            "an invocation ran past its deadline without a kill"
        );
        self.idle.push((invocation.container, now));
        assert!(self.idle.len() + self.running.len() <= self.params.reserved_concurrency as usize);
        FinishOutcome::Finished
    }

    /// The driver kills a running invocation at its deadline; returns false if it had finished.
    pub fn kill(&mut self, now: Instant, id: InvocationId) -> bool {
        if self.running(id).is_none() {
            return false;
        }
        self.account_busy(now);
        let invocation = self.take_running(id).expect("checked above");
        assert!(now >= invocation.deadline, "kill before the deadline");
        if self.killed.len() >= KILLED_REMEMBERED_MAX {
            self.killed.pop_front();
        }
        self.killed.push_back(id);
        self.counters.kills += 1;
        true
    }

    pub fn was_killed(&self, id: InvocationId) -> bool {
        self.killed.contains(&id)
    }

    pub fn running(&self, id: InvocationId) -> Option<&Invocation> {
        self.running_position(id)
            .map(|position| &self.running[position])
    }

    fn take_running(&mut self, id: InvocationId) -> Option<Invocation> {
        let position = self.running_position(id)?;
        Some(self.running.remove(position))
    }

    fn running_position(&self, id: InvocationId) -> Option<usize> {
        self.running.binary_search_by_key(&id, |i| i.id).ok()
    }

    /// Invocation-time integral up to `now`, in seconds (sum over invocations of their durations).
    pub fn busy_seconds(&mut self, now: Instant) -> f64 {
        self.account_busy(now);
        self.busy_nanos as f64 / 1e9
    }

    /// Busy time over capacity time (`reserved_concurrency` × elapsed) up to `now`.
    pub fn utilisation(&mut self, now: Instant) -> f64 {
        let busy = self.busy_seconds(now);
        let capacity = now.as_secs_f64() * f64::from(self.params.reserved_concurrency);
        if capacity == 0.0 {
            0.0
        } else {
            busy / capacity
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Streams;

    fn lambda(reserved: u32, cold_start_share: f64) -> Lambda {
        let params = LambdaParams {
            reserved_concurrency: reserved,
            timeout: Duration::from_secs(300),
            cold_start_share,
            cold_start_duration: DurationDist::constant(Duration::from_millis(500)),
            container_idle_max: None,
        };
        Lambda::new(params, Streams::new(3).stream("lambda"))
    }

    #[test]
    fn reserved_concurrency_is_never_exceeded() {
        let mut function = lambda(3, 0.0);
        let mut running = Vec::new();
        let mut now = Instant(0);
        for step in 0..200u64 {
            now = now.add(Duration::from_secs(1));
            if step % 3 == 2 && !running.is_empty() {
                let id = running.remove(0);
                assert_eq!(function.finish(now, id), FinishOutcome::Finished);
            }
            if let Some(invocation) = function.try_start(now) {
                running.push(invocation.id);
            }
            assert!(function.in_flight() <= 3);
        }
        assert_eq!(function.counters().in_flight_max, 3);
        assert!(function.counters().throttles > 0);
        assert_eq!(
            function.counters().containers_created,
            3,
            "warm containers are reused"
        );
    }

    #[test]
    fn timeouts_kill_and_late_finish_is_reported() {
        let mut function = lambda(1, 0.0);
        let invocation = function.try_start(Instant(0)).unwrap();
        assert_eq!(invocation.cold_start, Duration::from_millis(500));
        assert!(function.try_start(Instant(1)).is_none());
        assert!(function.kill(invocation.deadline, invocation.id));
        assert!(function.was_killed(invocation.id));
        assert_eq!(
            function.finish(invocation.deadline.add(Duration(5)), invocation.id),
            FinishOutcome::AlreadyKilled
        );
        let next = function.try_start(invocation.deadline).unwrap();
        assert_ne!(
            next.container, invocation.container,
            "a killed container is discarded"
        );
        assert!(next.cold_start > Duration::ZERO);
    }

    #[test]
    fn busy_time_integrates_running_invocations() {
        let mut function = lambda(2, 0.0);
        let a = function.try_start(Instant::ZERO).unwrap();
        let b = function
            .try_start(Instant::ZERO.add(Duration::from_secs(1)))
            .unwrap();
        function.finish(Instant::ZERO.add(Duration::from_secs(3)), a.id);
        function.finish(Instant::ZERO.add(Duration::from_secs(4)), b.id);
        let now = Instant::ZERO.add(Duration::from_secs(10));
        assert!((function.busy_seconds(now) - 6.0).abs() < 1e-9);
        assert!((function.utilisation(now) - 0.3).abs() < 1e-9);
    }

    #[test]
    fn reused_containers_start_cold_at_the_share() {
        let mut function = lambda(1, 0.25);
        let mut now = Instant(0);
        let first = function.try_start(now).unwrap();
        function.finish(now, first.id);
        let trials = 4000;
        let mut cold = 0;
        for _ in 0..trials {
            now = now.add(Duration::from_secs(1));
            let invocation = function.try_start(now).unwrap();
            cold += u32::from(invocation.cold_start > Duration::ZERO);
            function.finish(now, invocation.id);
        }
        let share = f64::from(cold) / f64::from(trials);
        // Binomial(4000, 0.25): standard deviation 0.0068; five of them either side.
        assert!((share - 0.25).abs() < 0.035, "cold share {share}");
    }
}
