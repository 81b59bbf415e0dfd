//! The discrete-event engine: one event queue with a total order, a virtual clock, a horizon, an
//! event limit, and the event-history fingerprint.
//!
//! Events are ordered by time, then by a tie-break key, then by the order in which they were
//! scheduled, so the order is total and never depends on memory addresses or hashing. The tie-break
//! is deterministic by default (first scheduled, first run) and pluggable: exploration swaps in a
//! random order or PCT-style actor priorities to try other orders of simultaneous events.
//!
//! The engine knows nothing of receipts, queues or services: it depends only on `time` and `random`.

use crate::random::{Stream, mix64};
use crate::time::{Duration, Instant};
use rand::Rng;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// What a model's event must tell the engine.
pub trait Event {
    /// A stable digest of the event's kind and the ids it touches. Mixed into the fingerprint, so it
    /// must not depend on addresses, hash-map order or anything else that varies between runs.
    fn digest(&self) -> u64;
    /// The actor this event belongs to, used by tie-breakers that order simultaneous events by
    /// actor. Small dense numbers keep the PCT tie-breaker's table short; actors at or beyond
    /// `PCT_ACTORS_MAX` share one priority.
    fn actor(&self) -> u32 {
        0
    }
}

/// How simultaneous events are ordered.
#[derive(Clone, Debug)]
pub enum TieBreak {
    /// In the order they were scheduled (the default; deterministic).
    Fifo,
    /// In a random order drawn from the given stream.
    Random(Stream),
    /// PCT-style: each actor draws a random priority; the highest runs first; at each change point
    /// (counted in scheduled events) the actor being scheduled drops below every other actor.
    Pct(Pct),
}

/// State of the PCT-style tie-breaker.
#[derive(Clone, Debug)]
pub struct Pct {
    stream: Stream,
    /// Priority per actor, indexed by actor, from the actor's first event on; 0 means none yet.
    /// Actors are small dense numbers (see `Event::actor`), so this stays short.
    priorities: Vec<u64>,
    /// Schedule counts at which a priority change happens, ascending.
    change_points: Vec<u64>,
    next_change: usize,
    lowest: u64,
}

/// The most actors a PCT tie-breaker tracks; actors beyond share one priority.
pub const PCT_ACTORS_MAX: usize = 1 << 16;

impl Pct {
    /// `depth` priority changes placed uniformly over the first `expected_events` schedules.
    pub fn new(mut stream: Stream, depth: u32, expected_events: u64) -> Pct {
        let mut change_points: Vec<u64> = (0..depth)
            .map(|_| stream.next_u64() % expected_events.max(1))
            .collect();
        change_points.sort_unstable();
        Pct {
            stream,
            // Room for the actors of a small trial, so that priorities rarely grow.
            priorities: Vec::with_capacity(64),
            change_points,
            next_change: 0,
            lowest: u64::MAX / 2,
        }
    }

    fn key(&mut self, actor: u32, scheduled: u64) -> u64 {
        let index = actor as usize;
        let mut priority = if index < PCT_ACTORS_MAX {
            if index >= self.priorities.len() {
                self.priorities.resize(index + 1, 0);
            }
            if self.priorities[index] == 0 {
                // Fresh priorities live in the upper half, demoted ones below it.
                self.priorities[index] = u64::MAX / 2 + self.stream.next_u64() / 2;
            }
            self.priorities[index]
        } else {
            // Actors beyond the bound share the lowest fresh priority.
            u64::MAX / 2
        };
        if self.next_change < self.change_points.len()
            && self.change_points[self.next_change] <= scheduled
        {
            self.next_change += 1;
            self.lowest -= 1;
            priority = self.lowest;
            if index < PCT_ACTORS_MAX {
                self.priorities[index] = priority;
            }
        }
        assert!(priority > 0, "priority 0 marks an actor without one");
        // The heap pops the smallest key first: invert so the highest priority runs first.
        u64::MAX - priority
    }
}

impl TieBreak {
    #[inline]
    fn key(&mut self, actor: u32, seq: u64) -> u64 {
        match self {
            TieBreak::Fifo => 0,
            TieBreak::Random(stream) => stream.next_u64(),
            TieBreak::Pct(pct) => pct.key(actor, seq),
        }
    }
}

/// Why the engine stopped handing out events.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Nothing left to do.
    Empty,
    /// The next event lies past the horizon.
    Horizon,
    /// The event limit was reached: the model may not terminate.
    EventLimit,
}

struct Entry<E> {
    at: Instant,
    key: u64,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest entry first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.key, other.seq).cmp(&(self.at, self.key, self.seq))
    }
}

/// Pending events. A trial of a few receipts has a dozen pending at a time, a large one about a
/// hundred: a vector kept sorted, the next event last, pops in constant time. A new event finds
/// its place from the end (`insert_position`), and the entries due before it move up at once. Past `SORTED_MAX` entries a binary heap
/// is cheaper: the queue turns into one there and back below a quarter of that. Both give the
/// entries in the same order.
enum Pending<E> {
    /// Ascending by `Entry`'s order, which is reversed: the next event is the last.
    Sorted(Vec<Entry<E>>),
    Heap(BinaryHeap<Entry<E>>),
}

/// The most pending events kept in a sorted vector.
const SORTED_MAX: usize = 512;

/// Room for the pending events of a small trial, so that the vector rarely grows.
const SORTED_INITIAL: usize = 64;

/// Where `entry` goes in `entries` (ascending; the next event last): after every entry due later,
/// before every entry due earlier. The search walks back from the end over exactly the entries
/// that the insertion then moves up, so it costs no more than the move; and a new event is most
/// often due before every pending one, or all but a few, where the walk's comparisons are ones a
/// processor predicts. (A search by halves, whose comparisons it cannot predict, cost a hunt about
/// a twentieth of its speed.)
#[inline]
fn insert_position<E>(entries: &[Entry<E>], entry: &Entry<E>) -> usize {
    let mut position = entries.len();
    while position > 0 && entries[position - 1] > *entry {
        position -= 1;
    }
    position
}

impl<E> Pending<E> {
    fn len(&self) -> usize {
        match self {
            Pending::Sorted(entries) => entries.len(),
            Pending::Heap(heap) => heap.len(),
        }
    }

    #[inline]
    fn push(&mut self, entry: Entry<E>) {
        match self {
            Pending::Sorted(entries) if entries.len() < SORTED_MAX => {
                // The common case first: due before every pending event, it goes last.
                match entries.last() {
                    Some(last) if *last > entry => {
                        let position = insert_position(entries, &entry);
                        entries.insert(position, entry);
                    }
                    _ => entries.push(entry),
                }
            }
            Pending::Sorted(entries) => {
                let mut heap = BinaryHeap::from(std::mem::take(entries));
                heap.push(entry);
                *self = Pending::Heap(heap);
            }
            Pending::Heap(heap) => heap.push(entry),
        }
    }

    fn peek(&self) -> Option<&Entry<E>> {
        match self {
            Pending::Sorted(entries) => entries.last(),
            Pending::Heap(heap) => heap.peek(),
        }
    }

    #[inline]
    fn pop(&mut self) -> Option<Entry<E>> {
        match self {
            Pending::Sorted(entries) => entries.pop(),
            Pending::Heap(heap) => {
                let entry = heap.pop();
                if heap.len() <= SORTED_MAX / 4 {
                    let entries = std::mem::take(heap).into_sorted_vec();
                    *self = Pending::Sorted(entries);
                }
                entry
            }
        }
    }
}

/// The event queue and clock of one trial.
pub struct Engine<E> {
    now: Instant,
    horizon: Instant,
    event_limit: u64,
    queue: Pending<E>,
    tie_break: TieBreak,
    scheduled: u64,
    handled: u64,
    fingerprint: u64,
    stop: Option<Stop>,
}

impl<E: Event> Engine<E> {
    /// An engine with no horizon, no event limit and the FIFO tie-break.
    pub fn new() -> Engine<E> {
        Engine::with_storage(Vec::with_capacity(SORTED_INITIAL))
    }

    /// A new engine whose pending events are kept in `entries` (emptied here).
    fn with_storage(mut entries: Vec<Entry<E>>) -> Engine<E> {
        entries.clear();
        entries.reserve(SORTED_INITIAL);
        Engine {
            now: Instant::ZERO,
            horizon: Instant::MAX,
            event_limit: u64::MAX,
            queue: Pending::Sorted(entries),
            tie_break: TieBreak::Fifo,
            scheduled: 0,
            handled: 0,
            fingerprint: 0x5eed_f00d_cafe_d00d,
            stop: None,
        }
    }

    /// A new engine (as `new` makes it) that keeps this one's storage for pending events, so a
    /// worker running trial after trial allocates it once. Whatever was pending is dropped.
    pub fn renewed(self) -> Engine<E> {
        let Engine {
            now: _,
            horizon: _,
            event_limit: _,
            queue,
            tie_break: _,
            scheduled: _,
            handled: _,
            fingerprint: _,
            stop: _,
        } = self;
        Engine::with_storage(match queue {
            Pending::Sorted(entries) => entries,
            Pending::Heap(heap) => heap.into_vec(),
        })
    }

    pub fn with_horizon(mut self, horizon: Instant) -> Self {
        self.horizon = horizon;
        self
    }

    pub fn with_event_limit(mut self, event_limit: u64) -> Self {
        assert!(event_limit > 0);
        self.event_limit = event_limit;
        self
    }

    pub fn with_tie_break(mut self, tie_break: TieBreak) -> Self {
        assert_eq!(
            self.scheduled, 0,
            "the tie-break is chosen before any event"
        );
        self.tie_break = tie_break;
        self
    }

    pub fn now(&self) -> Instant {
        self.now
    }
    pub fn horizon(&self) -> Instant {
        self.horizon
    }
    /// Events handed out so far.
    pub fn events(&self) -> u64 {
        self.handled
    }
    /// The time of the next event, if any (before the horizon or not).
    pub fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|entry| entry.at)
    }
    /// Events scheduled and not yet handed out.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }
    /// The event-history fingerprint: a hash over the time and digest of every event handed out, in
    /// order. Two trials with the same fingerprint ran the same history.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
    /// Why `next` last returned `None`, if it has.
    pub fn stop(&self) -> Option<Stop> {
        self.stop
    }

    #[inline]
    pub fn schedule_at(&mut self, at: Instant, event: E) {
        assert!(
            at >= self.now,
            "event scheduled in the past: {at:?} < {:?}",
            self.now
        );
        let seq = self.scheduled;
        // FIFO needs no actor: skip computing one on the common path.
        let key = match self.tie_break {
            TieBreak::Fifo => 0,
            _ => self.tie_break.key(event.actor(), seq),
        };
        self.scheduled += 1;
        self.queue.push(Entry {
            at,
            key,
            seq,
            event,
        });
    }

    pub fn schedule_in(&mut self, delay: Duration, event: E) {
        self.schedule_at(self.now.add(delay), event);
    }

    /// Hands out the next event and moves the clock to its time, or says why there is none.
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn next(&mut self) -> Option<(Instant, E)> {
        if self.handled >= self.event_limit {
            self.stop = Some(Stop::EventLimit);
            return None;
        }
        let Some(top) = self.queue.peek() else {
            self.stop = Some(Stop::Empty);
            return None;
        };
        if top.at > self.horizon {
            self.stop = Some(Stop::Horizon);
            return None;
        }
        let entry = self.queue.pop().expect("peeked entry is present");
        assert!(entry.at >= self.now, "time went backwards");
        self.now = entry.at;
        self.handled += 1;
        self.fingerprint = mix64(
            self.fingerprint.rotate_left(23)
                ^ entry.at.0
                ^ entry.event.digest().wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        debug_assert_eq!(self.handled + self.queue.len() as u64, self.scheduled);
        Some((entry.at, entry.event))
    }

    /// Checks the engine's accounting at the end of a trial: every event scheduled was either
    /// handed out or is still pending (none lost).
    pub fn assert_accounted(&self) {
        assert_eq!(
            self.handled + self.queue.len() as u64,
            self.scheduled,
            "events lost: scheduled {}, handled {}, pending {}",
            self.scheduled,
            self.handled,
            self.queue.len()
        );
    }
}

impl<E: Event> Default for Engine<E> {
    fn default() -> Self {
        Engine::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Streams;
    use rand::RngExt;

    #[derive(Debug, PartialEq)]
    struct Tick(u64);
    impl Event for Tick {
        fn digest(&self) -> u64 {
            self.0
        }
        fn actor(&self) -> u32 {
            self.0 as u32
        }
    }

    fn drain(engine: &mut Engine<Tick>) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        while let Some((at, tick)) = engine.next() {
            out.push((at.0, tick.0));
        }
        out
    }

    #[test]
    fn orders_by_time_then_schedule_order() {
        let mut engine = Engine::new();
        engine.schedule_at(Instant(5), Tick(1));
        engine.schedule_at(Instant(3), Tick(2));
        engine.schedule_at(Instant(5), Tick(3));
        engine.schedule_at(Instant(3), Tick(4));
        assert_eq!(drain(&mut engine), vec![(3, 2), (3, 4), (5, 1), (5, 3)]);
        assert_eq!(engine.stop(), Some(Stop::Empty));
        engine.assert_accounted();
    }

    #[test]
    fn pending_events_leave_in_heap_order_at_every_size() {
        // Bursts of pushes past the sorted vector's bound, interleaved with pops down to a few:
        // the queue changes form several times and must give what a plain heap gives.
        let mut stream = Streams::new(5).stream("pending");
        let mut pending = Pending::Sorted(Vec::new());
        let mut heap = BinaryHeap::new();
        let mut seq = 0;
        for round in 0..40u64 {
            let pushes = stream.random_range(0..3 * SORTED_MAX as u64);
            for _ in 0..pushes {
                let at = Instant(stream.random_range(0..50));
                let entry = || Entry {
                    at,
                    key: round % 3,
                    seq,
                    event: Tick(seq),
                };
                pending.push(entry());
                heap.push(entry());
                seq += 1;
            }
            let pops = stream.random_range(0..=pending.len() as u64);
            for _ in 0..pops {
                assert_eq!(pending.peek().map(|e| e.seq), heap.peek().map(|e| e.seq));
                let (a, b) = (pending.pop().unwrap(), heap.pop().unwrap());
                assert_eq!((a.at, a.key, a.seq), (b.at, b.key, b.seq));
            }
            assert_eq!(pending.len(), heap.len());
        }
        while let Some(b) = heap.pop() {
            assert_eq!(pending.pop().map(|a| a.seq), Some(b.seq));
        }
        assert!(pending.pop().is_none());
    }

    #[test]
    fn a_new_event_goes_where_a_search_by_halves_puts_it() {
        // Every place in vectors of every length up to a few dozen.
        for len in 0..40u64 {
            let entries: Vec<Entry<Tick>> = (0..len)
                .rev()
                .map(|i| Entry {
                    at: Instant(2 * i + 1),
                    key: 0,
                    seq: i,
                    event: Tick(i),
                })
                .collect();
            for at in 0..=2 * len + 1 {
                let entry = Entry {
                    at: Instant(at),
                    key: 0,
                    seq: len,
                    event: Tick(len),
                };
                let expected = entries.partition_point(|pending| *pending < entry);
                assert_eq!(insert_position(&entries, &entry), expected, "{len} {at}");
            }
        }
    }

    #[test]
    fn horizon_leaves_later_events_pending() {
        let mut engine = Engine::new().with_horizon(Instant(10));
        engine.schedule_at(Instant(10), Tick(1));
        engine.schedule_at(Instant(11), Tick(2));
        assert_eq!(drain(&mut engine), vec![(10, 1)]);
        assert_eq!(engine.stop(), Some(Stop::Horizon));
        assert_eq!(engine.pending(), 1);
        engine.assert_accounted();
    }

    #[test]
    fn event_limit_stops_a_model_that_never_ends() {
        let mut engine = Engine::new().with_event_limit(100);
        engine.schedule_at(Instant(0), Tick(0));
        let mut handled = 0;
        while let Some((_, tick)) = engine.next() {
            handled += 1;
            engine.schedule_in(Duration(1), Tick(tick.0 + 1));
        }
        assert_eq!(handled, 100);
        assert_eq!(engine.stop(), Some(Stop::EventLimit));
    }

    #[test]
    #[should_panic(expected = "in the past")]
    fn scheduling_in_the_past_is_a_bug() {
        let mut engine = Engine::new();
        engine.schedule_at(Instant(5), Tick(0));
        engine.next();
        engine.schedule_at(Instant(4), Tick(1));
    }

    #[test]
    fn fingerprint_depends_on_order_and_time() {
        let run = |events: &[(u64, u64)]| {
            let mut engine = Engine::new();
            for (at, id) in events {
                engine.schedule_at(Instant(*at), Tick(*id));
            }
            drain(&mut engine);
            engine.fingerprint()
        };
        let base = run(&[(1, 1), (2, 2)]);
        assert_eq!(base, run(&[(1, 1), (2, 2)]));
        assert_ne!(base, run(&[(1, 2), (2, 1)]));
        assert_ne!(base, run(&[(1, 1), (3, 2)]));
    }

    #[test]
    fn random_tie_break_permutes_simultaneous_events_only() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..32 {
            let stream = Streams::new(seed).stream("tie-break");
            let mut engine = Engine::new().with_tie_break(TieBreak::Random(stream));
            for id in 0..3 {
                engine.schedule_at(Instant(1), Tick(id));
            }
            engine.schedule_at(Instant(0), Tick(9));
            let order = drain(&mut engine);
            assert_eq!(order[0], (0, 9), "earlier events still run first");
            seen.insert(order.iter().map(|(_, id)| *id).collect::<Vec<_>>());
        }
        assert!(seen.len() > 2, "random tie-break explored only {seen:?}");
    }

    #[test]
    fn pct_orders_simultaneous_events_by_actor_priority() {
        let mut orders = std::collections::BTreeSet::new();
        for seed in 0..32 {
            let pct = Pct::new(Streams::new(seed).stream("pct"), 1, 6);
            let mut engine = Engine::new().with_tie_break(TieBreak::Pct(pct));
            for id in 0..3 {
                engine.schedule_at(Instant(1), Tick(id));
            }
            orders.insert(
                drain(&mut engine)
                    .iter()
                    .map(|(_, id)| *id)
                    .collect::<Vec<_>>(),
            );
        }
        assert!(orders.len() > 2);
    }
}
