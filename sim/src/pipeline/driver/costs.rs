//! The cost of an effect: how long it takes, sampled from the service model's distributions (a
//! receipt's upload stages from the receipt's own streams, so both flows draw alike).

use super::*;

impl<P: Performer> Simulation<'_, P> {
    pub(super) fn receipt_stream(&self, name: &str, receipt: ReceiptIndex) -> Stream {
        self.streams.stream_indexed(name, u64::from(receipt))
    }

    pub(super) fn upload_duration(&mut self, effect: &Effect, receipt: ReceiptIndex) -> Duration {
        let upload = &self.model.upload;
        let run = u64::from(self.progress[receipt as usize].run_id);
        match effect {
            Effect::Work(Work::Ocr) => upload.ocr.sample(&mut self.receipt_stream("ocr", receipt)),
            Effect::Work(Work::MerchantResolution) => upload
                .merchant_resolution
                .sample(&mut self.receipt_stream("merchant-resolution", receipt)),
            Effect::Work(Work::Embedding) => upload
                .embedding
                .sample(&mut self.receipt_stream("embedding", receipt)),
            Effect::Work(Work::Langgraph) => upload
                .langgraph
                .sample(&mut self.receipt_stream("langgraph", receipt)),
            Effect::Sleep(duration) => *duration,
            Effect::PutObject(ObjectKey::Delta { collection, .. }) => {
                let mut stream = self.streams.stream_indexed(
                    "delta-upload",
                    u64::from(receipt) << 8 | run << 1 | collection.index() as u64,
                );
                upload.delta_upload.sample(&mut stream)
            }
            // A GetItem is charged no time: the old flow's polls then cost one event each.
            Effect::TableRead(_) => Duration::ZERO,
            Effect::TableWrite(write) => {
                let kind = match write {
                    TableWrite::OcrResult { .. } => 0,
                    TableWrite::Metadata { .. } => 1,
                    TableWrite::RunInsert { .. } => 2,
                    TableWrite::ProposedLabels { .. } => 3,
                    TableWrite::ChangedLabels { .. } => 4,
                    TableWrite::MerchantCorrection { .. } => 5,
                    TableWrite::RunState { .. } => 6,
                };
                let mut stream = self
                    .streams
                    .stream_indexed("upload-table", u64::from(receipt) << 8 | run << 3 | kind);
                upload.table_operation.sample(&mut stream)
            }
            other => panic!("the upload Lambda does not ask for {other:?}"),
        }
    }

    pub(super) fn compaction_duration(
        &mut self,
        state: &CompactionSlot,
        effect: &Effect,
    ) -> Duration {
        let model = self.model;
        let store_config = &model.store;
        let compaction = &model.compaction;
        let stream = &mut self.compaction_stream;
        match effect {
            Effect::ReadPointer(_) | Effect::WritePointer { .. } => {
                store_config.pointer_operation.sample(stream)
            }
            Effect::LockAcquire { .. }
            | Effect::LockRelease { .. }
            | Effect::LockValidate { .. } => compaction.lock_operation.sample(stream),
            Effect::LockHeartbeat { .. } => Duration::ZERO,
            Effect::CacheLoad {
                collection,
                version,
            } => self.cache_load_duration(state, *collection, *version),
            Effect::OpenWorkingCopy {
                collection,
                version,
            } => self.open_working_copy_duration(state, *collection, *version),
            Effect::GetObject(ObjectKey::Delta { .. }) => compaction.delta_download.sample(stream),
            Effect::Collection(_) => Duration::ZERO,
            Effect::TableRead(_) | Effect::TableWrite(_) => {
                model.upload.table_operation.sample(stream)
            }
            Effect::Work(Work::Apply { ids }) => compaction
                .apply
                .sample(stream)
                .saturating_add(compaction.apply_per_id.saturating_mul(*ids)),
            Effect::Sleep(duration) => *duration,
            Effect::PutObject(ObjectKey::Snapshot { collection, .. }) => {
                self.snapshot_upload_duration(state, *collection)
            }
            Effect::CacheStore { .. } => compaction.write_back.sample(stream),
            other => panic!("the compaction does not ask for {other:?}"),
        }
    }

    /// A cache load downloads the published snapshot unless the container's cache holds it.
    fn cache_load_duration(
        &mut self,
        state: &CompactionSlot,
        collection: Collection,
        version: Option<VersionId>,
    ) -> Duration {
        let store_config = &self.model.store;
        match self.cached_publish(state, collection, version) {
            Some((_, true)) | None => Duration::ZERO,
            Some((publish, false)) => {
                let entries = self.stores[collection.index()].entry_count(publish);
                snapshot_download(store_config, &mut self.compaction_stream, entries)
            }
        }
    }

    /// Opening a working copy copies the snapshot, after downloading it if it is not cached.
    fn open_working_copy_duration(
        &mut self,
        state: &CompactionSlot,
        collection: Collection,
        version: Option<VersionId>,
    ) -> Duration {
        let store_config = &self.model.store;
        let (entries, cached) = match self.cached_publish(state, collection, version) {
            Some((publish, cached)) => {
                (self.stores[collection.index()].entry_count(publish), cached)
            }
            None => (0, true),
        };
        let stream = &mut self.compaction_stream;
        let mut duration = self
            .model
            .compaction
            .copy
            .sample(stream)
            .saturating_add(store_config.transfer(entries, store_config.copy_bytes_per_s));
        if !cached {
            duration = duration.saturating_add(snapshot_download(store_config, stream, entries));
        }
        duration
    }

    /// Uploading a snapshot sends the working copy's base and overlay entries.
    fn snapshot_upload_duration(
        &mut self,
        state: &CompactionSlot,
        collection: Collection,
    ) -> Duration {
        let store_config = &self.model.store;
        let store = &self.stores[collection.index()];
        let working_copy = state
            .kept
            .working_copy
            .as_ref()
            .expect("a working copy to upload");
        let entries = store.entry_count(working_copy.base()) + working_copy.overlay_len() as u64;
        let stream = &mut self.compaction_stream;
        store_config
            .upload_fixed
            .sample(stream)
            .saturating_add(store_config.transfer(entries, store_config.upload_bytes_per_s))
    }
}

/// Downloading a snapshot of `entries` entries: the fixed part, then the transfer.
fn snapshot_download(
    store: &crate::pipeline::config::StoreModel,
    stream: &mut Stream,
    entries: u64,
) -> Duration {
    store
        .download_fixed
        .sample(stream)
        .saturating_add(store.transfer(entries, store.download_bytes_per_s))
}
