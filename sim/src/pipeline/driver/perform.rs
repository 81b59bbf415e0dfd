//! Performing effects: which resource each effect of each function goes to.

use super::*;
use crate::pipeline::effect::Failure;

impl Simulation<'_> {
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
                if chance(&mut stream, self.config.upload.delta_upload_error_share) {
                    Response::Failed(Failure::Unavailable)
                } else {
                    self.progress[*receipt as usize].deltas |= 1 << collection.index();
                    Response::Done
                }
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
            }) => {
                let uploaded =
                    self.progress[*receipt as usize].deltas & (1 << collection.index()) != 0;
                if uploaded && self.table.shape(*receipt).is_some() {
                    Response::Done
                } else {
                    Response::Failed(Failure::NotFound)
                }
            }
            Effect::Collection(operation) => self.perform_collection(now, state, *operation),
            Effect::TableRead(TableRead::WordLabels { receipt, word }) => {
                let id = ChromaId::word(*receipt, u32::from(word.line), u32::from(word.word));
                Response::WordLabels(self.table.derived_label_fields(id))
            }
            Effect::TableRead(TableRead::ReceiptState { .. }) => Response::Done,
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
                if let Some(publish) = state.published {
                    let store = &mut self.stores[collection.index()];
                    if let Some(caches) = self.caches.get_mut(&state.invocation.container.0) {
                        caches[collection.index()].put(store, now, StoreVersion(*version), publish);
                    }
                }
                Response::Done
            }
            other => panic!("the compaction does not ask for {other:?}"),
        }
    }
}
