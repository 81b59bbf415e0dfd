//! Performing effects: which resource each effect of each function goes to.

use super::*;
use crate::pipeline::effect::Failure;

/// Whether an effect goes to the object store or Chroma (what the performer performs).
fn data_plane(effect: &Effect) -> bool {
    matches!(
        effect,
        Effect::ReadPointer(_)
            | Effect::CacheLoad { .. }
            | Effect::OpenWorkingCopy { .. }
            | Effect::GetObject(_)
            | Effect::PutObject(_)
            | Effect::WritePointer { .. }
            | Effect::Collection(_)
    )
}

impl<P: Performer> Simulation<'_, P> {
    /// Whether `effect` takes its measured time (performed at issue) rather than the model's.
    #[inline]
    pub(super) fn measures(&self, effect: &Effect) -> bool {
        self.performer.measured_timing() && data_plane(effect)
    }

    pub(super) fn perform_upload(
        &mut self,
        now: Instant,
        effect: &Effect,
        receipt: ReceiptIndex,
    ) -> Response {
        match effect {
            Effect::Work(_) | Effect::Sleep(_) => Response::Done,
            Effect::PutObject(ObjectKey::Delta {
                collection,
                receipt,
            }) => {
                let run = u64::from(self.progress[*receipt as usize].run_id);
                let mut stream = self.streams.stream_indexed(
                    "delta-error",
                    u64::from(*receipt) << 8 | run << 1 | collection.index() as u64,
                );
                if chance(&mut stream, self.faults.delta_upload_error_share) {
                    return Response::Failed(Failure::Unavailable);
                }
                let mut records = std::mem::take(&mut self.scratch_records);
                records.clear();
                if P::RECORDS {
                    self.delta_records(*receipt, *collection, &mut records);
                }
                // The upload names the delta by the run it inserts next (the id it made first).
                let answer = self.performer.put_delta(
                    now,
                    *collection,
                    *receipt,
                    run as u32 + 1,
                    &records,
                    Response::Done,
                );
                self.scratch_records = records;
                if answer == Response::Done {
                    self.progress[*receipt as usize].deltas |= 1 << collection.index();
                }
                answer
            }
            Effect::TableRead(TableRead::RunState { receipt }) => {
                let run_id = self.progress[*receipt as usize].run_id;
                let run = self
                    .table
                    .run(*receipt, run_id)
                    .expect("the run was inserted");
                Response::RunState {
                    lines: run.lines_state,
                    words: run.words_state,
                }
            }
            Effect::TableWrite(write) => {
                self.write_table(now, *write);
                Response::Done
            }
            other => panic!("the upload Lambda does not ask for {other:?} (receipt {receipt})"),
        }
    }

    pub(super) fn perform_compaction(
        &mut self,
        now: Instant,
        slot: u32,
        generation: u32,
        state: &mut CompactionSlot,
        effect: &Effect,
    ) -> Response {
        match effect {
            Effect::Work(_) | Effect::Sleep(_) => Response::Done,
            Effect::ReadPointer(_) | Effect::CacheLoad { .. } | Effect::OpenWorkingCopy { .. } => {
                self.perform_snapshot_read(now, state, effect)
            }
            Effect::LockAcquire { .. }
            | Effect::LockRelease { .. }
            | Effect::LockValidate { .. }
            | Effect::LockHeartbeat { .. } => {
                self.perform_lock(now, slot, generation, state, effect)
            }
            Effect::GetObject(ObjectKey::Delta {
                collection,
                receipt,
            }) => self.get_delta(now, state, *collection, *receipt),
            Effect::Collection(_) if self.collection_fails() => {
                Response::Failed(Failure::Unavailable)
            }
            Effect::Collection(operation) => self.perform_collection(now, state, *operation),
            Effect::TableRead(TableRead::WordLabels { receipt, word }) => {
                let id = ChromaId::word(*receipt, u32::from(word.line), u32::from(word.word));
                Response::WordLabels(self.table.derived_label_fields(id))
            }
            Effect::TableRead(TableRead::ReceiptState { receipt }) => {
                self.read_table_state(state, *receipt)
            }
            Effect::TableWrite(write) => {
                self.write_table(now, *write);
                Response::Done
            }
            Effect::PutObject(ObjectKey::Snapshot { collection, .. }) => {
                self.publish(now, state, *collection)
            }
            Effect::WritePointer {
                collection,
                version,
                expected_etag,
            } => self.write_pointer(now, state, *collection, *version, *expected_etag),
            Effect::CacheStore {
                collection,
                version,
            } => {
                self.store_in_cache(now, state, *collection, *version);
                Response::Done
            }
            other => panic!("the compaction does not ask for {other:?}"),
        }
    }

    /// A delta download: found once the receipt's upload put it (and the receipt is in the table).
    fn get_delta(
        &mut self,
        now: Instant,
        state: &CompactionSlot,
        collection: Collection,
        receipt: ReceiptIndex,
    ) -> Response {
        let progress = self.progress[receipt as usize];
        let uploaded = progress.deltas & (1 << collection.index()) != 0;
        let model = if uploaded && self.table.shape(receipt).is_some() {
            Response::Done
        } else {
            Response::Failed(Failure::NotFound)
        };
        let invocation = state.invocation.id.0;
        self.performer
            .get_delta(now, invocation, collection, receipt, progress.run_id, model)
    }

    /// The write-back of the snapshot this invocation published into its container's cache.
    fn store_in_cache(
        &mut self,
        now: Instant,
        state: &CompactionSlot,
        collection: Collection,
        version: VersionId,
    ) {
        let Some(publish) = state.kept.published else {
            return;
        };
        let key = self.cache_key(state.invocation.container.0);
        let store = &mut self.stores[collection.index()];
        if let Some(caches) = self.caches.get_mut(&key) {
            caches[collection.index()].put(store, now, StoreVersion(version), publish);
        }
    }
}
