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
//! Depends on `entities` and `services::object_store` (to read the base publish).

use crate::entities::{ChromaId, EntryFields, LabelFields};
use crate::services::object_store::{PublishId, SnapshotStore};
use std::collections::BTreeMap;

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

/// A snapshot being edited. Made by `SnapshotStore::checkout`, ended by `publish` or `discard`.
#[derive(Debug, PartialEq)]
pub struct WorkingCopy {
    base: PublishId,
    overlay: BTreeMap<ChromaId, Option<EntryFields>>,
}

impl WorkingCopy {
    pub(crate) fn new(base: PublishId) -> WorkingCopy {
        WorkingCopy {
            base,
            overlay: BTreeMap::new(),
        }
    }

    pub fn base(&self) -> PublishId {
        self.base
    }

    /// Edited ids with their new fields (`None`: deleted), ascending.
    pub fn overlay(&self) -> &BTreeMap<ChromaId, Option<EntryFields>> {
        &self.overlay
    }

    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    pub fn get(&self, store: &SnapshotStore, id: ChromaId) -> Option<EntryFields> {
        match self.overlay.get(&id) {
            Some(fields) => *fields,
            None => store.get(self.base, id),
        }
    }

    pub fn contains(&self, store: &SnapshotStore, id: ChromaId) -> bool {
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
    pub fn update(&mut self, store: &SnapshotStore, id: ChromaId, patch: EntryPatch) -> bool {
        let Some(current) = self.get(store, id) else {
            return false;
        };
        self.write(id, Some(patch.merged_into(current)));
        true
    }

    /// Chroma `upsert`: inserts a missing id; replaces or merges an existing one per `mode`.
    /// Returns whether the id existed.
    pub fn upsert(
        &mut self,
        store: &SnapshotStore,
        id: ChromaId,
        patch: EntryPatch,
        mode: UpsertMode,
    ) -> bool {
        let current = self.get(store, id);
        let fields = match (current, mode) {
            (Some(current), UpsertMode::Merge) => patch.merged_into(current),
            _ => patch.as_fields(),
        };
        self.write(id, Some(fields));
        current.is_some()
    }

    /// Deletes every label field of an existing id; a missing id is ignored (false).
    pub fn delete_label_fields(&mut self, store: &SnapshotStore, id: ChromaId) -> bool {
        let patch = EntryPatch {
            merchant: None,
            labels: Some(LabelFields::default()),
        };
        self.update(store, id, patch)
    }

    /// Sets (or with `None` deletes) the merchant of an existing id; a missing id is ignored (false).
    pub fn set_merchant(
        &mut self,
        store: &SnapshotStore,
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
    pub fn delete(&mut self, store: &SnapshotStore, id: ChromaId) -> bool {
        if !self.contains(store, id) {
            return false;
        }
        self.write(id, None);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::Collection;
    use crate::services::object_store::SnapshotParams;
    use crate::time::{Duration, Instant};

    fn store_with(id: ChromaId, fields: EntryFields) -> SnapshotStore {
        let params = SnapshotParams {
            version_resolution: Duration::from_secs(1),
            keep_versions: 4,
            deltas_window: 16,
            deltas_max: 64,
        };
        let mut store = SnapshotStore::new(Collection::Words, params);
        let mut copy = store.checkout(PublishId::EMPTY);
        copy.upsert(
            &store,
            id,
            EntryPatch {
                merchant: Some(fields.merchant),
                labels: Some(fields.labels),
            },
            UpsertMode::Replace,
        );
        let outcome = store.publish(Instant(1), copy);
        store.write_pointer(Instant(1), outcome.version);
        store
    }

    fn labels(detail: u32) -> LabelFields {
        LabelFields {
            valid: 1,
            invalid: 0,
            other: 0,
            detail,
        }
    }

    #[test]
    fn update_of_a_missing_id_is_ignored() {
        let present = ChromaId::word(1, 1, 1);
        let missing = ChromaId::word(1, 1, 2);
        let mut store = store_with(
            present,
            EntryFields {
                merchant: 3,
                labels: labels(1),
            },
        );
        let mut copy = store.checkout(store.head());
        let patch = EntryPatch {
            merchant: None,
            labels: Some(labels(9)),
        };
        assert!(!copy.update(&store, missing, patch));
        assert!(!copy.delete_label_fields(&store, missing));
        assert!(!copy.set_merchant(&store, missing, Some(4)));
        assert_eq!(copy.overlay_len(), 0);
        assert!(copy.update(&store, present, patch));
        assert_eq!(
            copy.get(&store, present),
            Some(EntryFields {
                merchant: 3,
                labels: labels(9)
            })
        );
        assert!(copy.set_merchant(&store, present, None));
        assert_eq!(
            copy.get(&store, present).unwrap().merchant,
            0,
            "a null deletes the field"
        );
        let outcome = store.publish(Instant(2), copy);
        assert_eq!(outcome.delta_len, 1);
        assert!(store.get(outcome.publish, missing).is_none());
    }

    /// A delta record (merchant only) upserted over a word whose labels were already applied:
    /// replace wipes the labels, merge keeps them.
    #[test]
    fn upsert_replace_versus_merge() {
        let id = ChromaId::word(2, 1, 1);
        let labelled = EntryFields {
            merchant: 3,
            labels: labels(5),
        };
        let record = EntryPatch {
            merchant: Some(4),
            labels: None,
        };
        let mut store = store_with(id, labelled);
        let mut copy = store.checkout(store.head());
        assert!(copy.upsert(&store, id, record, UpsertMode::Replace));
        assert_eq!(
            copy.get(&store, id),
            Some(EntryFields {
                merchant: 4,
                labels: LabelFields::default()
            })
        );
        store.discard(copy);
        let mut copy = store.checkout(store.head());
        assert!(copy.upsert(&store, id, record, UpsertMode::Merge));
        assert_eq!(
            copy.get(&store, id),
            Some(EntryFields {
                merchant: 4,
                labels: labels(5)
            })
        );
        let fresh = ChromaId::word(2, 1, 2);
        assert!(
            !copy.upsert(&store, fresh, record, UpsertMode::Merge),
            "inserted"
        );
        assert_eq!(
            copy.get(&store, fresh),
            Some(EntryFields {
                merchant: 4,
                labels: LabelFields::default()
            })
        );
        store.discard(copy);
    }
}
