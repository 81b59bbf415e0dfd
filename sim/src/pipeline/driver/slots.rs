//! Invocation slots: the running invocations of each function, reused, a generation telling a
//! stale event (a step or kill of an invocation that has ended) from a live one; and what the driver
//! keeps beside each state machine. Depends on the state machines and the service models.

use super::*;

/// A running invocation as the driver holds it, the same for the three functions: the Lambda
/// invocation, its state machine, the effect it waits on (with that effect's answer when it was
/// performed at issue, in measured timing) and what the driver keeps beside this function's state
/// machine (`kept`).
pub(super) struct Slot<M, K> {
    pub(super) invocation: Invocation,
    pub(super) machine: M,
    pub(super) pending: Option<Effect>,
    pub(super) answered: Option<Response>,
    pub(super) kept: K,
}

impl<M: Component, K> Slot<M, K> {
    /// An invocation that waits on nothing yet.
    pub(super) fn new(invocation: Invocation, machine: M, kept: K) -> Slot<M, K> {
        Slot {
            invocation,
            machine,
            pending: None,
            answered: None,
            kept,
        }
    }
}

pub(super) type UploadSlot = Slot<UploadInvocation, UploadKept>;
pub(super) type ProcessorSlot = Slot<StreamProcessorInvocation, ProcessorKept>;
pub(super) type CompactionSlot = Slot<CompactionInvocation, CompactionKept>;

/// Beside an upload: the receipt handles of its batch's messages, deleted when it returns.
pub(super) struct UploadKept {
    pub(super) handles: Vec<(ReceiptIndex, ReceiptHandle)>,
}

/// Beside a stream processor invocation: the stream batch it handles.
pub(super) struct ProcessorKept {
    pub(super) batch: BatchId,
}

/// Beside a compaction: its batch's receipt handles, its working copy and publish, its lock
/// heartbeat, an injected stall and the receipt state last read.
pub(super) struct CompactionKept {
    pub(super) handles: Vec<ReceiptHandle>,
    pub(super) working_copy: Option<crate::services::object_store::WorkingCopy>,
    pub(super) published: Option<PublishId>,
    pub(super) publish_record: Option<usize>,
    pub(super) heartbeat_owner: Option<ServiceOwner>,
    /// An injected stall not yet taken: it delays the effect at the configured stall point.
    pub(super) stall: Option<Duration>,
    /// The receipt state the last `TableRead::ReceiptState` read, under the handle it answered,
    /// until the `CollectionOp::WriteTableState` that hands the handle back.
    pub(super) table_state: Option<(TableStateHandle, ReceiptTableState)>,
}

/// A receipt's state as one table query read it: its ReceiptMetadata merchant and, for the words
/// collection, each labelled word's derived label fields, ascending by id.
pub(super) struct ReceiptTableState {
    pub(super) merchant: Option<u32>,
    pub(super) labelled: Vec<(ChromaId, LabelFields)>,
}

/// The most boxes of ended invocations kept for the next ones.
const SPARE_BOXES_MAX: usize = 16;

/// Slots for running invocations, reused; a generation tells stale events apart.
pub(super) struct Slots<T> {
    /// Boxed so that taking a running invocation out and back moves a pointer, not the state.
    entries: Vec<(u32, Option<Box<T>>)>,
    free: Vec<u32>,
    /// Boxes of ended invocations, at most `SPARE_BOXES_MAX`, for the next ones to move into: a
    /// box's old content is dropped when a new invocation takes its place.
    spare: Vec<Box<T>>,
    /// Invocations put into a slot, and slots released: each invocation ends exactly once.
    inserted: u64,
    released: u64,
}

impl<T> Slots<T> {
    pub(super) fn new() -> Slots<T> {
        Slots {
            entries: Vec::new(),
            free: Vec::new(),
            spare: Vec::new(),
            inserted: 0,
            released: 0,
        }
        .renewed()
    }
    /// Empty slots (as `new` makes them) in this one's storage, so a worker running trial after
    /// trial allocates it once. An invocation still in a slot is dropped.
    pub(super) fn renewed(self) -> Slots<T> {
        let Slots {
            mut entries,
            mut free,
            mut spare,
            inserted: _,
            released: _,
        } = self;
        // The boxes of invocations still running at the end are spare now.
        spare.extend(entries.drain(..).filter_map(|(_, value)| value));
        spare.truncate(SPARE_BOXES_MAX);
        free.clear();
        // Room for the invocations of a short trial, so that it rarely grows them.
        entries.reserve(4);
        free.reserve(4);
        Slots {
            entries,
            free,
            spare,
            inserted: 0,
            released: 0,
        }
    }
    pub(super) fn insert(&mut self, value: T) -> (u32, u32) {
        let value = match self.spare.pop() {
            Some(mut spare) => {
                *spare = value;
                spare
            }
            None => Box::new(value),
        };
        self.inserted += 1;
        if let Some(slot) = self.free.pop() {
            let entry = &mut self.entries[slot as usize];
            assert!(entry.1.is_none());
            entry.0 += 1;
            entry.1 = Some(value);
            (slot, entry.0)
        } else {
            self.entries.push((0, Some(value)));
            ((self.entries.len() - 1) as u32, 0)
        }
    }
    /// Takes the value out if the generation matches.
    pub(super) fn take(&mut self, slot: u32, generation: u32) -> Option<Box<T>> {
        let entry = self.entries.get_mut(slot as usize)?;
        if entry.0 != generation {
            return None;
        }
        entry.1.take()
    }
    pub(super) fn put_back(&mut self, slot: u32, value: Box<T>) {
        let entry = &mut self.entries[slot as usize];
        assert!(entry.1.is_none());
        entry.1 = Some(value);
    }
    pub(super) fn release(&mut self, slot: u32) {
        assert!(self.entries[slot as usize].1.is_none());
        assert!(self.released < self.inserted, "a slot released twice");
        self.released += 1;
        self.free.push(slot);
    }
    /// The ended invocation whose box the next `insert` moves into, if any: its storage is the
    /// caller's to take for the new one.
    pub(super) fn spare_mut(&mut self) -> Option<&mut T> {
        self.spare.last_mut().map(|spare| &mut **spare)
    }
    /// Keeps the box of an ended invocation (its slot released) for a later one to move into.
    pub(super) fn recycle(&mut self, ended: Box<T>) {
        if self.spare.len() < SPARE_BOXES_MAX {
            self.spare.push(ended);
        }
    }
    pub(super) fn get(&self, slot: u32, generation: u32) -> Option<&T> {
        let entry = self.entries.get(slot as usize)?;
        if entry.0 != generation {
            return None;
        }
        entry.1.as_deref()
    }
    pub(super) fn live(&self) -> usize {
        self.entries
            .iter()
            .filter(|entry| entry.1.is_some())
            .count()
    }
    /// (invocations inserted, slots released) so far.
    #[cfg(test)]
    pub(super) fn tally(&self) -> (u64, u64) {
        (self.inserted, self.released)
    }
    /// Every slot with its current generation (the generation of its latest invocation).
    #[cfg(test)]
    pub(super) fn generations(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0u32..).zip(self.entries.iter().map(|entry| entry.0))
    }
}
