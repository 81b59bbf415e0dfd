//! Invocation slots: the running invocations of each function, reused, a generation telling a
//! stale event (a step or kill of an invocation that has ended) from a live one; and what the driver
//! keeps beside each state machine. Depends on the state machines and the service models.

use super::*;

pub(super) struct UploadSlot {
    pub(super) invocation: Invocation,
    pub(super) machine: UploadInvocation,
    pub(super) handles: Vec<(ReceiptIndex, ReceiptHandle)>,
    pub(super) pending: Option<Effect>,
    /// The answer of the pending effect when it was performed at issue (measured timing).
    pub(super) answered: Option<Response>,
}

pub(super) struct ProcessorSlot {
    pub(super) invocation: Invocation,
    pub(super) machine: StreamProcessorInvocation,
    pub(super) batch: BatchId,
    pub(super) pending: Option<Effect>,
    /// Always `None`: no stream processor effect is performed at issue.
    pub(super) answered: Option<Response>,
}

pub(super) struct CompactionSlot {
    pub(super) invocation: Invocation,
    pub(super) machine: CompactionInvocation,
    pub(super) handles: Vec<ReceiptHandle>,
    pub(super) pending: Option<Effect>,
    /// The answer of the pending effect when it was performed at issue (measured timing).
    pub(super) answered: Option<Response>,
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

/// Slots for running invocations, reused; a generation tells stale events apart.
pub(super) struct Slots<T> {
    /// Boxed so that taking a running invocation out and back moves a pointer, not the state.
    entries: Vec<(u32, Option<Box<T>>)>,
    free: Vec<u32>,
    /// Invocations put into a slot, and slots released: each invocation ends exactly once.
    inserted: u64,
    released: u64,
}

impl<T> Slots<T> {
    pub(super) fn new() -> Slots<T> {
        Slots {
            entries: Vec::new(),
            free: Vec::new(),
            inserted: 0,
            released: 0,
        }
    }
    pub(super) fn insert(&mut self, value: T) -> (u32, u32) {
        let value = Box::new(value);
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
