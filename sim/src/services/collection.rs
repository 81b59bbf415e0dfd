//! A Chroma working copy: a snapshot being edited by one compaction, with Chroma's semantics.
//!
//! A working copy is its base publish plus an overlay of edited ids (`None`: deleted). Chroma's
//! rules: `update` of a missing id is silently ignored; `upsert` inserts a missing id and, for an
//! existing one, either replaces its whole metadata (`UpsertMode::Replace`, the Python-era store) or
//! merges keys, the record's present fields winning and absent ones kept (`UpsertMode::Merge`, the
//! 1.x server). A metadata value set to null deletes the key; for the compact fields that is a
//! merchant of 0 or empty label fields.
//!
//! Guarantee honoured: Chroma's own. Broken on purpose by choosing `Replace` (an upsert of a delta
//! record wipes labels already applied) and by dropping updates of missing ids.
//! Depends on `entities` only: a working copy reads its base through `SnapshotEntries`, which the
//! object store implements (the dependency runs from the store to the working copy).

use crate::entities::{ChromaId, EntryFields, LabelFields};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;

/// How `upsert` treats an existing id.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum UpsertMode {
    Replace,
    Merge,
}

/// A metadata record: `None` means the key is absent from the record; `Some(0)` / `Some(empty)`
/// sets the field to absent (a null value).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryPatch {
    pub merchant: Option<u32>,
    pub labels: Option<LabelFields>,
}

impl EntryPatch {
    /// Present fields win, absent ones are kept.
    pub fn merged_into(&self, fields: EntryFields) -> EntryFields {
        EntryFields {
            merchant: self.merchant.unwrap_or(fields.merchant),
            labels: self.labels.unwrap_or(fields.labels),
        }
    }

    /// The record alone: absent fields are absent.
    pub fn as_fields(&self) -> EntryFields {
        self.merged_into(EntryFields::default())
    }
}

/// The most ids one working copy may edit (a sanity bound).
const OVERLAY_MAX: usize = 1 << 24;

/// Where a working copy reads the ids it has not edited: the published snapshots of a store.
pub trait SnapshotEntries {
    /// The handle of one published snapshot.
    type Publish: Copy + fmt::Debug + PartialEq;
    /// The fields of `id` in `publish`, if the id is there.
    fn entry(&self, publish: Self::Publish, id: ChromaId) -> Option<EntryFields>;
}

/// A snapshot being edited, on top of its base publish `P`. Made by the store's `checkout`, ended
/// by its `publish` or `discard`.
#[derive(Debug, PartialEq)]
pub struct WorkingCopy<P> {
    base: P,
    overlay: BTreeMap<ChromaId, Option<EntryFields>>,
}

impl<P: Copy> WorkingCopy<P> {
    pub(crate) fn new(base: P) -> WorkingCopy<P> {
        WorkingCopy {
            base,
            overlay: BTreeMap::new(),
        }
    }

    pub fn base(&self) -> P {
        self.base
    }

    /// Edited ids with their new fields (`None`: deleted), ascending.
    pub fn overlay(&self) -> &BTreeMap<ChromaId, Option<EntryFields>> {
        &self.overlay
    }

    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    pub fn get(
        &self,
        store: &impl SnapshotEntries<Publish = P>,
        id: ChromaId,
    ) -> Option<EntryFields> {
        match self.overlay.get(&id) {
            Some(fields) => *fields,
            None => store.entry(self.base, id),
        }
    }

    pub fn contains(&self, store: &impl SnapshotEntries<Publish = P>, id: ChromaId) -> bool {
        self.get(store, id).is_some()
    }

    fn write(&mut self, id: ChromaId, fields: Option<EntryFields>) {
        self.overlay.insert(id, fields);
        assert!(
            self.overlay.len() <= OVERLAY_MAX,
            "working copy overlay bound reached"
        );
    }

    /// Chroma `update`: merges the record into an existing id; a missing id is ignored (false).
    pub fn update(
        &mut self,
        store: &impl SnapshotEntries<Publish = P>,
        id: ChromaId,
        patch: EntryPatch,
    ) -> bool {
        let Some(current) = self.get(store, id) else {
            return false;
        };
        self.write(id, Some(patch.merged_into(current)));
        true
    }

    /// Chroma `upsert`: inserts a missing id; replaces or merges an existing one per `mode`.
    /// Returns the id's fields before (`None`: it was missing), so a caller can tell what the
    /// upsert overwrote.
    pub fn upsert(
        &mut self,
        store: &impl SnapshotEntries<Publish = P>,
        id: ChromaId,
        patch: EntryPatch,
        mode: UpsertMode,
    ) -> Option<EntryFields> {
        let merge = |current: Option<EntryFields>| match (current, mode) {
            (Some(current), UpsertMode::Merge) => patch.merged_into(current),
            _ => patch.as_fields(),
        };
        // One search of the overlay, for the read and the write.
        let previous = match self.overlay.entry(id) {
            Entry::Occupied(mut edited) => {
                let current = *edited.get();
                edited.insert(Some(merge(current)));
                current
            }
            Entry::Vacant(unedited) => {
                let current = store.entry(self.base, id);
                unedited.insert(Some(merge(current)));
                current
            }
        };
        assert!(
            self.overlay.len() <= OVERLAY_MAX,
            "working copy overlay bound reached"
        );
        previous
    }

    /// Deletes every label field of an existing id; a missing id is ignored (false).
    pub fn delete_label_fields(
        &mut self,
        store: &impl SnapshotEntries<Publish = P>,
        id: ChromaId,
    ) -> bool {
        let patch = EntryPatch {
            merchant: None,
            labels: Some(LabelFields::default()),
        };
        self.update(store, id, patch)
    }

    /// Sets (or with `None` deletes) the merchant of an existing id; a missing id is ignored (false).
    pub fn set_merchant(
        &mut self,
        store: &impl SnapshotEntries<Publish = P>,
        id: ChromaId,
        merchant: Option<u32>,
    ) -> bool {
        let patch = EntryPatch {
            merchant: Some(merchant.unwrap_or(0)),
            labels: None,
        };
        self.update(store, id, patch)
    }

    /// Chroma `delete`: removes an existing id; a missing id is ignored (false).
    pub fn delete(&mut self, store: &impl SnapshotEntries<Publish = P>, id: ChromaId) -> bool {
        if !self.contains(store, id) {
            return false;
        }
        self.write(id, None);
        true
    }
}
