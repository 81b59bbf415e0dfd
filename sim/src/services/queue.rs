//! An SQS queue, FIFO or standard, generic over the message body.
//!
//! Both kinds: a received message is invisible for `visibility_timeout`, then visible again with a
//! higher receive count; a message received `receive_limit` times is moved to the dead-letter queue
//! (kept and counted) instead of being delivered again; messages older than `retention` vanish.
//! Receipt handles are unique per receive. A handle is stale once the message has been received
//! again; SQS then answers differently by kind: a FIFO queue rejects a delete with a stale or expired
//! handle (`ReceiptHandleIsInvalid`) and the message stays, a standard queue accepts the call but
//! does not delete the message. A delete with the current handle of a standard queue succeeds even
//! after the visibility timeout expired, as SQS does.
//!
//! FIFO: messages carry a group key; a group with any message in flight hands out nothing, so a
//! group is handled one batch at a time and in order, and a failed group's messages come back before
//! its later ones. Groups are served oldest head first. Content-based deduplication drops a send
//! whose digest was seen in the last `deduplication_window` (5 min).
//! Standard: at-least-once (each send is stored twice with probability `duplicate_share`), no order
//! (a receive picks uniformly among visible messages).
//!
//! Guarantee honoured: the documented ones above. Broken on purpose by a visibility timeout shorter
//! than the consumer's work (the message is handled twice, concurrently), by low receive limits
//! (messages dead-lettered), and by standard queues (duplicates, reordering).
//! Depends on `time` and `random`.

use crate::random::Stream;
use crate::time::{Duration, Instant};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// FIFO or standard, with the standard queue's duplicate share.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum QueueKind {
    Fifo,
    Standard { duplicate_share: f64 },
}

/// Knobs of one queue.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueParams {
    pub kind: QueueKind,
    pub visibility_timeout: Duration,
    /// Receives after which a message goes to the dead-letter queue (maxReceiveCount); `None`: never.
    pub receive_limit: Option<u32>,
    pub retention: Duration,
    /// FIFO content-based deduplication window (5 min in SQS).
    pub deduplication_window: Duration,
}

/// The id SQS returns for a send; duplicates of a standard queue share it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u64);

/// A receipt handle: the stored copy it names and which receive of that copy produced it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReceiptHandle {
    copy: u64,
    receive: u32,
}

/// A FIFO message group key (a digest of the real group id string).
pub type GroupKey = u64;

/// What a send did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    Stored(MessageId),
    /// Standard queue: stored twice (both copies will be delivered).
    StoredTwice(MessageId),
    /// FIFO: a send with the same digest inside the deduplication window; nothing stored.
    Deduplicated(MessageId),
}

impl SendOutcome {
    pub fn message_id(&self) -> MessageId {
        match *self {
            SendOutcome::Stored(id)
            | SendOutcome::StoredTwice(id)
            | SendOutcome::Deduplicated(id) => id,
        }
    }
}

/// A message as a receive hands it out.
#[derive(Clone, Debug, PartialEq)]
pub struct Received<M> {
    pub message_id: MessageId,
    pub handle: ReceiptHandle,
    pub body: M,
    pub group: Option<GroupKey>,
    /// 1 on first receive.
    pub receive_count: u32,
    pub sent_at: Instant,
    /// When the message becomes visible again unless deleted.
    pub invisible_until: Instant,
}

/// What a delete did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// FIFO: the handle is stale or expired; the call fails and the message stays.
    StaleRejected,
    /// Standard: the handle is stale; the call succeeds but the message stays.
    StaleIgnored,
    /// The message is no longer in the queue (deleted, dead-lettered or expired).
    AlreadyGone,
}

impl DeleteOutcome {
    pub fn is_deleted(self) -> bool {
        self == DeleteOutcome::Deleted
    }
}

/// A message moved to the dead-letter queue.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter<M> {
    pub message_id: MessageId,
    pub body: M,
    pub group: Option<GroupKey>,
    pub receive_count: u32,
    pub sent_at: Instant,
    pub moved_at: Instant,
}

/// Counts kept by the queue.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueCounters {
    pub sends: u64,
    pub deduplicated: u64,
    pub duplicated: u64,
    /// Messages handed out, over all receives.
    pub received: u64,
    /// Messages handed out whose receive count was above 1.
    pub redelivered: u64,
    pub deleted: u64,
    pub stale_deletes: u64,
    pub dead_lettered: u64,
    pub expired_by_retention: u64,
}

#[derive(Clone, Debug)]
struct Copy<M> {
    message_id: MessageId,
    body: M,
    group: Option<GroupKey>,
    sent_at: Instant,
    receive_count: u32,
    /// `Some` while received and not yet visible again (may lie in the past until noticed).
    invisible_until: Option<Instant>,
}

#[derive(Clone, Debug, Default)]
struct Group {
    /// Copy ids in send order; the in-flight ones are a prefix.
    copies: VecDeque<u64>,
    in_flight: u32,
}

/// The most messages one queue holds (a sanity bound; a trial beyond it is misconfigured).
const MESSAGES_MAX: usize = 1 << 26;

/// The stored copies and deduplication entries a queue has room for from the start, so that a
/// short trial rarely grows them.
const ROOM_INITIAL: usize = 16;

/// Stored copies by copy id. Ids are handed out in ascending order and most copies leave in about
/// the order they came, so the copies sit in a ring indexed by id minus the oldest stored id, with
/// a hole where a later copy left first: each lookup is an index, not a tree search. The ring starts
/// at the oldest stored copy, so it spans the ids sent since then.
#[derive(Clone, Debug)]
struct Copies<M> {
    /// The id of `ring[0]`.
    first_id: u64,
    ring: VecDeque<Option<Copy<M>>>,
    stored: usize,
}

impl<M> Copies<M> {
    #[cfg(test)]
    fn new() -> Self {
        Copies::with_ring(VecDeque::with_capacity(ROOM_INITIAL))
    }

    /// No copies, stored in `ring` (emptied here).
    fn with_ring(mut ring: VecDeque<Option<Copy<M>>>) -> Self {
        ring.clear();
        Copies {
            first_id: 1,
            ring,
            stored: 0,
        }
    }

    fn len(&self) -> usize {
        self.stored
    }

    fn position(&self, copy_id: u64) -> Option<usize> {
        usize::try_from(copy_id.checked_sub(self.first_id)?)
            .ok()
            .filter(|position| *position < self.ring.len())
    }

    /// Stores a copy under the next id after every id stored so far.
    fn push(&mut self, copy_id: u64, copy: Copy<M>) {
        if self.ring.is_empty() {
            self.first_id = copy_id;
        }
        assert_eq!(
            copy_id,
            self.first_id + self.ring.len() as u64,
            "copy ids ascend"
        );
        self.ring.push_back(Some(copy));
        self.stored += 1;
    }

    fn get(&self, copy_id: u64) -> Option<&Copy<M>> {
        self.ring[self.position(copy_id)?].as_ref()
    }

    fn get_mut(&mut self, copy_id: u64) -> Option<&mut Copy<M>> {
        let position = self.position(copy_id)?;
        self.ring[position].as_mut()
    }

    fn remove(&mut self, copy_id: u64) -> Option<Copy<M>> {
        let position = self.position(copy_id)?;
        let copy = self.ring[position].take()?;
        self.stored -= 1;
        // Bounded by the ring's length: drop the holes the removal left at the front.
        while self.ring.front().is_some_and(Option::is_none) {
            self.ring.pop_front();
            self.first_id += 1;
        }
        Some(copy)
    }

    /// The oldest stored copy and its id.
    fn first(&self) -> Option<(u64, &Copy<M>)> {
        let copy = self.ring.front()?.as_ref().expect("no hole at the front");
        Some((self.first_id, copy))
    }
}

/// One SQS queue.
#[derive(Clone, Debug)]
pub struct Queue<M: Clone> {
    params: QueueParams,
    stream: Stream,
    /// Stored copies by copy id (ascending = send order).
    copies: Copies<M>,
    /// Invisible copies by the time they become visible.
    invisible: BTreeSet<(Instant, u64)>,
    /// Standard: visible copy ids (may hold ids of copies gone since; skipped on receive).
    visible: Vec<u64>,
    /// Entries of `visible` whose copy expired by retention.
    visible_gone: usize,
    /// FIFO: groups, and the groups that can hand out messages keyed by their head copy id.
    groups: BTreeMap<GroupKey, Group>,
    ready_groups: BTreeSet<(u64, GroupKey)>,
    /// FIFO: digests seen within the deduplication window, with their message ids.
    deduplication: BTreeMap<u64, (Instant, MessageId)>,
    deduplication_order: VecDeque<(Instant, u64)>,
    dead_letters: Vec<DeadLetter<M>>,
    /// Messages that reached `retention` (SQS deletes them); `moved_at` is the expiry instant.
    expired: Vec<DeadLetter<M>>,
    message_next: u64,
    copy_next: u64,
    counters: QueueCounters,
}

impl<M: Clone> Queue<M> {
    /// `stream` draws standard-queue duplicates and receive order; unused by FIFO queues.
    pub fn new(params: QueueParams, stream: Stream) -> Queue<M> {
        Queue::reusing(None, params, stream)
    }

    /// A new queue, as `new` makes it, whose vectors and rings are `old`'s, emptied, when there
    /// is one: a worker running trial after trial allocates them once.
    pub fn reusing(old: Option<Queue<M>>, params: QueueParams, stream: Stream) -> Queue<M> {
        if let QueueKind::Standard { duplicate_share } = params.kind {
            assert!(
                (0.0..=1.0).contains(&duplicate_share),
                "duplicate share in [0, 1]"
            );
        }
        assert!(
            params.receive_limit != Some(0),
            "a receive limit must be at least 1"
        );
        let (ring, mut visible, mut deduplication_order, mut dead_letters, mut expired) = match old
        {
            Some(old) => (
                old.copies.ring,
                old.visible,
                old.deduplication_order,
                old.dead_letters,
                old.expired,
            ),
            None => (
                VecDeque::with_capacity(ROOM_INITIAL),
                Vec::new(),
                VecDeque::with_capacity(ROOM_INITIAL),
                Vec::new(),
                Vec::new(),
            ),
        };
        visible.clear();
        deduplication_order.clear();
        dead_letters.clear();
        expired.clear();
        Queue {
            params,
            stream,
            copies: Copies::with_ring(ring),
            invisible: BTreeSet::new(),
            visible,
            visible_gone: 0,
            groups: BTreeMap::new(),
            ready_groups: BTreeSet::new(),
            deduplication: BTreeMap::new(),
            deduplication_order,
            dead_letters,
            expired,
            message_next: 0,
            copy_next: 0,
            counters: QueueCounters::default(),
        }
    }

    pub fn params(&self) -> &QueueParams {
        &self.params
    }

    pub fn counters(&self) -> &QueueCounters {
        &self.counters
    }

    pub fn is_fifo(&self) -> bool {
        self.params.kind == QueueKind::Fifo
    }

    /// Sends a message. FIFO needs a group; `deduplication_digest` is the content digest FIFO
    /// deduplicates on (ignored by standard queues).
    pub fn send(
        &mut self,
        now: Instant,
        body: M,
        group: Option<GroupKey>,
        deduplication_digest: u64,
    ) -> SendOutcome {
        self.advance(now);
        self.counters.sends += 1;
        match self.params.kind {
            QueueKind::Fifo => {
                let group = group.expect("a FIFO message needs a group");
                if let Some((_, id)) = self.deduplication.get(&deduplication_digest) {
                    self.counters.deduplicated += 1;
                    return SendOutcome::Deduplicated(*id);
                }
                let id = self.new_message_id();
                self.deduplication.insert(deduplication_digest, (now, id));
                self.deduplication_order
                    .push_back((now, deduplication_digest));
                self.store(now, id, body, Some(group));
                SendOutcome::Stored(id)
            }
            QueueKind::Standard { duplicate_share } => {
                let id = self.new_message_id();
                let twice = super::unit_interval(&mut self.stream) < duplicate_share;
                if twice {
                    self.counters.duplicated += 1;
                    self.store(now, id, body.clone(), group);
                }
                self.store(now, id, body, group);
                if twice {
                    SendOutcome::StoredTwice(id)
                } else {
                    SendOutcome::Stored(id)
                }
            }
        }
    }

    fn new_message_id(&mut self) -> MessageId {
        self.message_next += 1;
        MessageId(self.message_next)
    }

    fn store(&mut self, now: Instant, message_id: MessageId, body: M, group: Option<GroupKey>) {
        assert!(self.copies.len() < MESSAGES_MAX, "queue bound reached");
        self.copy_next += 1;
        let copy_id = self.copy_next;
        let copy = Copy {
            message_id,
            body,
            group,
            sent_at: now,
            receive_count: 0,
            invisible_until: None,
        };
        self.copies.push(copy_id, copy);
        match (self.params.kind, group) {
            (QueueKind::Fifo, Some(key)) => {
                let entry = self.groups.entry(key).or_default();
                entry.copies.push_back(copy_id);
                if entry.in_flight == 0 && entry.copies.len() == 1 {
                    self.ready_groups.insert((copy_id, key));
                }
            }
            _ => self.visible.push(copy_id),
        }
    }

    /// Brings the queue to `now`: expired visibility timeouts, retention and deduplication window.
    fn advance(&mut self, now: Instant) {
        while let Some(&(at, copy_id)) = self.invisible.first() {
            if at > now {
                break;
            }
            self.invisible.pop_first();
            self.make_visible(copy_id, at);
        }
        self.expire_retention(now);
        let window = self.params.deduplication_window;
        while let Some(&(at, digest)) = self.deduplication_order.front() {
            if now.saturating_since(at) < window {
                break;
            }
            self.deduplication_order.pop_front();
            if self
                .deduplication
                .get(&digest)
                .is_some_and(|(sent, _)| *sent == at)
            {
                self.deduplication.remove(&digest);
            }
        }
    }

    fn make_visible(&mut self, copy_id: u64, at: Instant) {
        let Some(copy) = self.copies.get_mut(copy_id) else {
            return;
        };
        if copy.invisible_until != Some(at) {
            return;
        }
        copy.invisible_until = None;
        match copy.group.filter(|_| self.params.kind == QueueKind::Fifo) {
            Some(key) => self.group_in_flight_done(key),
            None => self.visible.push(copy_id),
        }
    }

    fn group_in_flight_done(&mut self, key: GroupKey) {
        let group = self.groups.get_mut(&key).expect("group of a stored copy");
        assert!(group.in_flight > 0);
        group.in_flight -= 1;
        self.refresh_group(key);
    }

    /// Re-files a group as ready or not, and forgets it when empty.
    fn refresh_group(&mut self, key: GroupKey) {
        let group = &self.groups[&key];
        if group.copies.is_empty() {
            assert_eq!(group.in_flight, 0);
            self.groups.remove(&key);
            return;
        }
        if group.in_flight == 0 {
            self.ready_groups.insert((group.copies[0], key));
        }
    }

    fn expire_retention(&mut self, now: Instant) {
        let retention = self.params.retention;
        while let Some((copy_id, copy)) = self.copies.first() {
            if now.saturating_since(copy.sent_at) < retention {
                break;
            }
            self.counters.expired_by_retention += 1;
            let copy = self.remove_copy(copy_id);
            let listed_visible = copy.group.is_none() || self.params.kind != QueueKind::Fifo;
            if listed_visible && copy.invisible_until.is_none() {
                self.visible_gone += 1;
            }
            self.expired.push(DeadLetter {
                message_id: copy.message_id,
                moved_at: copy.sent_at.add(retention),
                body: copy.body,
                group: copy.group,
                receive_count: copy.receive_count,
                sent_at: copy.sent_at,
            });
        }
    }

    /// Removes a stored copy from every index.
    fn remove_copy(&mut self, copy_id: u64) -> Copy<M> {
        let copy = self.copies.remove(copy_id).expect("copy to remove");
        if let Some(at) = copy.invisible_until {
            self.invisible.remove(&(at, copy_id));
        }
        if let (QueueKind::Fifo, Some(key)) = (self.params.kind, copy.group) {
            let group = self.groups.get_mut(&key).expect("group of a stored copy");
            let position = group
                .copies
                .iter()
                .position(|id| *id == copy_id)
                .expect("in group");
            if position == 0 {
                self.ready_groups.remove(&(copy_id, key));
            }
            group.copies.remove(position);
            if copy.invisible_until.is_some() {
                group.in_flight -= 1;
            }
            if position == 0 || copy.invisible_until.is_some() {
                self.refresh_group(key);
            } else if group.copies.is_empty() {
                self.groups.remove(&key);
            }
        }
        copy
    }

    /// Receives up to `max` messages; a message over the receive limit goes to the dead-letter queue.
    pub fn receive(&mut self, now: Instant, max: usize) -> Vec<Received<M>> {
        let mut received = Vec::with_capacity(max.min(1024));
        self.receive_into(now, max, &mut received);
        received
    }

    /// `receive` into `out` (cleared first), which the caller may reuse from receive to receive.
    pub fn receive_into(&mut self, now: Instant, max: usize, out: &mut Vec<Received<M>>) {
        out.clear();
        self.advance(now);
        match self.params.kind {
            QueueKind::Fifo => self.receive_fifo(now, max, out),
            QueueKind::Standard { .. } => self.receive_standard(now, max, out),
        }
        assert!(out.len() <= max);
    }

    fn receive_fifo(&mut self, now: Instant, max: usize, out: &mut Vec<Received<M>>) {
        while out.len() < max {
            let Some((_, key)) = self.ready_groups.pop_first() else {
                break;
            };
            let mut taken = 0usize;
            let mut index = 0usize;
            while out.len() < max {
                let Some(&copy_id) = self.groups.get(&key).and_then(|g| g.copies.get(index)) else {
                    break;
                };
                if self.over_receive_limit(copy_id) {
                    self.dead_letter(now, copy_id);
                    continue;
                }
                out.push(self.hand_out(now, copy_id));
                taken += 1;
                index += 1;
            }
            // Dead-lettering may have re-filed the group as ready; file it again from scratch.
            if let Some(group) = self.groups.get_mut(&key) {
                self.ready_groups.remove(&(group.copies[0], key));
                group.in_flight += taken as u32;
                self.refresh_group(key);
            }
        }
    }

    fn receive_standard(&mut self, now: Instant, max: usize, out: &mut Vec<Received<M>>) {
        // Bounded: each turn removes one entry from `visible`.
        while out.len() < max && !self.visible.is_empty() {
            let index = super::index_below(&mut self.stream, self.visible.len());
            let copy_id = self.visible.swap_remove(index);
            let Some(copy) = self.copies.get(copy_id) else {
                // Expired by retention while visible.
                self.visible_gone -= 1;
                continue;
            };
            assert!(
                copy.invisible_until.is_none(),
                "an in-flight message listed as visible"
            );
            if self.over_receive_limit(copy_id) {
                self.dead_letter(now, copy_id);
                continue;
            }
            out.push(self.hand_out(now, copy_id));
        }
    }

    fn over_receive_limit(&self, copy_id: u64) -> bool {
        let count = self.copies.get(copy_id).expect("stored copy").receive_count;
        self.params
            .receive_limit
            .is_some_and(|limit| count >= limit)
    }

    fn dead_letter(&mut self, now: Instant, copy_id: u64) {
        let copy = self.remove_copy(copy_id);
        self.counters.dead_lettered += 1;
        self.dead_letters.push(DeadLetter {
            message_id: copy.message_id,
            body: copy.body,
            group: copy.group,
            receive_count: copy.receive_count,
            sent_at: copy.sent_at,
            moved_at: now,
        });
    }

    fn hand_out(&mut self, now: Instant, copy_id: u64) -> Received<M> {
        let invisible_until = now.add(self.params.visibility_timeout);
        let copy = self.copies.get_mut(copy_id).expect("copy to hand out");
        assert!(
            copy.invisible_until.is_none(),
            "an invisible message handed out"
        );
        copy.receive_count += 1;
        copy.invisible_until = Some(invisible_until);
        self.invisible.insert((invisible_until, copy_id));
        self.counters.received += 1;
        if copy.receive_count > 1 {
            self.counters.redelivered += 1;
        }
        Received {
            message_id: copy.message_id,
            handle: ReceiptHandle {
                copy: copy_id,
                receive: copy.receive_count,
            },
            body: copy.body.clone(),
            group: copy.group,
            receive_count: copy.receive_count,
            sent_at: copy.sent_at,
            invisible_until,
        }
    }

    /// Whether `handle` is the current, unexpired handle of an in-flight message.
    fn handle_is_current(&self, now: Instant, handle: ReceiptHandle) -> Option<bool> {
        let copy = self.copies.get(handle.copy)?;
        let current = copy.receive_count == handle.receive;
        let unexpired = copy.invisible_until.is_some_and(|until| now < until);
        Some(current && unexpired)
    }

    /// Deletes the message `handle` names (see the module comment for stale handles).
    pub fn delete(&mut self, now: Instant, handle: ReceiptHandle) -> DeleteOutcome {
        self.advance(now);
        let Some(copy) = self.copies.get(handle.copy) else {
            return DeleteOutcome::AlreadyGone;
        };
        let current = copy.receive_count == handle.receive;
        let accepted = match self.params.kind {
            QueueKind::Fifo => self.handle_is_current(now, handle) == Some(true),
            QueueKind::Standard { .. } => current,
        };
        if !accepted {
            self.counters.stale_deletes += 1;
            return match self.params.kind {
                QueueKind::Fifo => DeleteOutcome::StaleRejected,
                QueueKind::Standard { .. } => DeleteOutcome::StaleIgnored,
            };
        }
        self.remove_copy(handle.copy);
        self.counters.deleted += 1;
        DeleteOutcome::Deleted
    }

    /// ChangeMessageVisibility: the message becomes visible `timeout` from `now` (zero: at once).
    /// Returns false, changing nothing, if the handle is not the current unexpired one.
    pub fn change_visibility(
        &mut self,
        now: Instant,
        handle: ReceiptHandle,
        timeout: Duration,
    ) -> bool {
        self.advance(now);
        if self.handle_is_current(now, handle) != Some(true) {
            return false;
        }
        let copy = self.copies.get_mut(handle.copy).expect("checked current");
        let old = copy
            .invisible_until
            .replace(now.add(timeout))
            .expect("in flight");
        self.invisible.remove(&(old, handle.copy));
        self.invisible.insert((now.add(timeout), handle.copy));
        self.advance(now);
        true
    }

    /// The consumer failed the message: it comes back after its visibility timeout, or at once.
    pub fn fail(&mut self, now: Instant, handle: ReceiptHandle, visible_at_once: bool) -> bool {
        if visible_at_once {
            self.change_visibility(now, handle, Duration::ZERO)
        } else {
            self.handle_is_current(now, handle) == Some(true)
        }
    }

    /// When a receive could next hand something out: `Some(now)` if a message is receivable at
    /// `now`, else the earliest time an in-flight message becomes visible, else `None`.
    pub fn next_visible_at(&self, now: Instant) -> Option<Instant> {
        let receivable_now = match self.params.kind {
            QueueKind::Fifo => !self.ready_groups.is_empty(),
            QueueKind::Standard { .. } => self.visible.len() > self.visible_gone,
        };
        let first_expiry = self.invisible.first().map(|(at, _)| *at);
        if receivable_now || first_expiry.is_some_and(|at| at <= now) {
            return Some(now);
        }
        first_expiry
    }

    /// Messages stored (visible and in flight; ApproximateNumberOfMessages + NotVisible).
    pub fn depth(&self) -> usize {
        self.copies.len()
    }

    /// Messages received and not yet deleted or visible again.
    pub fn in_flight(&self) -> usize {
        self.invisible.len()
    }

    /// Age of the oldest stored message at `now` (ApproximateAgeOfOldestMessage), zero if empty.
    pub fn oldest_age(&self, now: Instant) -> Duration {
        self.copies
            .first()
            .map(|(_, copy)| copy)
            .map_or(Duration::ZERO, |copy| now.saturating_since(copy.sent_at))
    }

    pub fn dead_letters(&self) -> &[DeadLetter<M>] {
        &self.dead_letters
    }

    /// The messages that reached the retention limit, in the order they expired.
    pub fn expired(&self) -> &[DeadLetter<M>] {
        &self.expired
    }

    /// Brings retention (and visibility timeouts) to `now` without receiving, so that a message
    /// past its retention is listed in `expired` even if nothing receives from the queue.
    pub fn expire_until(&mut self, now: Instant) {
        self.advance(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Streams;

    fn fifo() -> Queue<u32> {
        let params = QueueParams {
            kind: QueueKind::Fifo,
            visibility_timeout: Duration::from_secs(1200),
            receive_limit: Some(3),
            retention: Duration::from_secs(4 * 86_400),
            deduplication_window: Duration::from_secs(300),
        };
        Queue::new(params, Streams::new(1).stream("queue"))
    }

    fn standard(duplicate_share: f64) -> Queue<u32> {
        let params = QueueParams {
            kind: QueueKind::Standard { duplicate_share },
            visibility_timeout: Duration::from_secs(30),
            receive_limit: Some(5),
            retention: Duration::from_secs(4 * 86_400),
            deduplication_window: Duration::from_secs(300),
        };
        Queue::new(params, Streams::new(1).stream("queue"))
    }

    fn bodies(received: &[Received<u32>]) -> Vec<u32> {
        received.iter().map(|message| message.body).collect()
    }

    #[test]
    fn fifo_group_is_in_order_one_batch_at_a_time() {
        let mut queue = fifo();
        let now = Instant(0);
        for body in 0..6u32 {
            queue.send(now, body, Some(u64::from(body % 2)), u64::from(body));
        }
        let first = queue.receive(now, 2);
        assert_eq!(
            bodies(&first),
            vec![0, 2],
            "the oldest group first, in order"
        );
        let second = queue.receive(now, 10);
        assert_eq!(
            bodies(&second),
            vec![1, 3, 5],
            "group 0 is in flight, only group 1 serves"
        );
        assert!(queue.receive(now, 10).is_empty());
        // Fail message 0 at once: group 0 hands out 0 again before 4.
        assert!(queue.fail(now, first[0].handle, true));
        assert!(
            queue.receive(now, 10).is_empty(),
            "message 2 is still in flight"
        );
        assert!(queue.delete(now, first[1].handle).is_deleted());
        let again = queue.receive(now, 10);
        assert_eq!(bodies(&again), vec![0, 4]);
        assert_eq!(again[0].receive_count, 2);
    }

    #[test]
    fn fifo_dead_letters_after_the_receive_limit() {
        let mut queue = fifo();
        let mut now = Instant(0);
        queue.send(now, 7, Some(1), 7);
        queue.send(now, 8, Some(1), 8);
        for receive in 1..=3 {
            let batch = queue.receive(now, 1);
            assert_eq!(bodies(&batch), vec![7]);
            assert_eq!(batch[0].receive_count, receive);
            now = batch[0].invisible_until;
            assert_eq!(queue.next_visible_at(Instant(0)), Some(now));
        }
        let batch = queue.receive(now, 1);
        assert_eq!(
            bodies(&batch),
            vec![8],
            "message 7 went to the dead-letter queue"
        );
        assert_eq!(queue.dead_letters().len(), 1);
        assert_eq!(queue.dead_letters()[0].body, 7);
        assert_eq!(queue.dead_letters()[0].receive_count, 3);
        assert_eq!(queue.counters().dead_lettered, 1);
    }

    /// A consumer slower than the visibility timeout: the message is received a second time while
    /// the first consumer still works, and the first consumer's delete fails with a stale handle.
    #[test]
    fn visibility_timeout_expiring_under_a_running_consumer() {
        for mut queue in [fifo(), standard(0.0)] {
            let timeout = queue.params().visibility_timeout;
            queue.send(Instant(0), 5, Some(1), 5);
            let first = queue.receive(Instant(0), 10);
            assert_eq!(first.len(), 1);
            let later = Instant(0).add(timeout);
            let second = queue.receive(later, 10);
            assert_eq!(bodies(&second), vec![5]);
            assert_ne!(first[0].handle, second[0].handle);
            let stale = queue.delete(later, first[0].handle);
            let expected = if queue.is_fifo() {
                DeleteOutcome::StaleRejected
            } else {
                DeleteOutcome::StaleIgnored
            };
            assert_eq!(stale, expected);
            assert_eq!(queue.depth(), 1, "the stale delete removed nothing");
            assert!(queue.delete(later, second[0].handle).is_deleted());
            assert_eq!(
                queue.delete(later, second[0].handle),
                DeleteOutcome::AlreadyGone
            );
            assert_eq!(queue.depth(), 0);
        }
    }

    #[test]
    fn fifo_deduplicates_within_the_window_only() {
        let mut queue = fifo();
        let first = queue.send(Instant(0), 1, Some(1), 99);
        let again = queue.send(Instant(0).add(Duration::from_secs(299)), 1, Some(1), 99);
        assert_eq!(again, SendOutcome::Deduplicated(first.message_id()));
        let later = queue.send(Instant(0).add(Duration::from_secs(301)), 1, Some(1), 99);
        assert!(matches!(later, SendOutcome::Stored(_)));
        assert_eq!(queue.depth(), 2);
    }

    #[test]
    fn standard_duplicates_at_the_configured_share() {
        let mut queue = standard(0.1);
        let sends = 20_000u32;
        for body in 0..sends {
            queue.send(Instant(0), body, None, 0);
        }
        let duplicated = queue.counters().duplicated;
        // Binomial(20000, 0.1): standard deviation 42; five of them either side of 2000.
        assert!(
            (1790..=2210).contains(&duplicated),
            "{duplicated} duplicates"
        );
        assert_eq!(queue.depth(), sends as usize + duplicated as usize);
        let mut seen: BTreeMap<u32, u32> = BTreeMap::new();
        let mut out_of_order = 0;
        let mut last = 0;
        for _ in 0..100_000 {
            let batch = queue.receive(Instant(1), 100);
            if batch.is_empty() {
                break;
            }
            for message in batch {
                out_of_order += u32::from(message.body < last);
                last = message.body;
                *seen.entry(message.body).or_default() += 1;
                assert!(queue.delete(Instant(1), message.handle).is_deleted());
            }
        }
        assert_eq!(seen.len(), sends as usize);
        assert_eq!(
            seen.values().filter(|count| **count == 2).count() as u64,
            duplicated
        );
        assert!(out_of_order > 1000, "a standard queue does not keep order");
    }

    #[test]
    fn copies_answer_as_a_map_under_any_order_of_removal() {
        use rand::RngExt;
        let mut stream = Streams::new(7).stream("copies");
        let mut copies = Copies::new();
        let mut model: BTreeMap<u64, u32> = BTreeMap::new();
        let copy = |body: u32| Copy {
            message_id: MessageId(u64::from(body)),
            body,
            group: None,
            sent_at: Instant::ZERO,
            receive_count: 0,
            invisible_until: None,
        };
        let mut next_id = 0u64;
        for _ in 0..5_000 {
            if stream.random_range(0..3) > 0 || model.is_empty() {
                next_id += 1;
                copies.push(next_id, copy(next_id as u32));
                model.insert(next_id, next_id as u32);
            } else {
                let victim = stream.random_range(0..=next_id + 1);
                let removed = copies.remove(victim).map(|c| c.body);
                assert_eq!(removed, model.remove(&victim));
            }
            let probe = stream.random_range(0..=next_id + 1);
            assert_eq!(
                copies.get(probe).map(|c| c.body),
                model.get(&probe).copied()
            );
            assert_eq!(copies.len(), model.len());
            assert_eq!(
                copies.first().map(|(id, c)| (id, c.body)),
                model.first_key_value().map(|(id, body)| (*id, *body))
            );
        }
        assert!(copies.ring.len() <= (next_id + 1 - copies.first_id) as usize);
    }

    #[test]
    fn retention_drops_old_messages_and_age_is_reported() {
        let mut queue = fifo();
        queue.send(Instant(0), 1, Some(1), 1);
        queue.send(Instant(0).add(Duration::from_secs(10)), 2, Some(2), 2);
        let at = Instant(0).add(Duration::from_secs(20));
        assert_eq!(queue.oldest_age(at), Duration::from_secs(20));
        let after = Instant(0)
            .add(queue.params().retention)
            .add(Duration::from_secs(1));
        let batch = queue.receive(after, 10);
        assert_eq!(bodies(&batch), vec![2]);
        assert_eq!(queue.counters().expired_by_retention, 1);
        let expired = queue.expired();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].body, 1);
        assert_eq!(
            expired[0].moved_at,
            Instant(0).add(queue.params().retention)
        );
        // Nothing receives again: `expire_until` lists the second message, in flight, at its
        // expiry too.
        queue.expire_until(after.add(Duration::from_secs(3600)));
        assert_eq!(queue.expired().len(), 2);
        assert_eq!(queue.expired()[1].body, 2);
        assert_eq!(queue.depth(), 0);
    }
}
