//! Performing object store effects on the snapshot store and the file caches: pointer reads,
//! cache loads and the copy into a working copy, snapshot uploads and pointer promotion.

use super::*;
use crate::pipeline::effect::Failure;

impl<P: Performer> Simulation<'_, P> {
    /// The key of the file cache a container uses: the shared one, or its own.
    pub(super) fn cache_key(&self, container: u64) -> u64 {
        assert_ne!(
            container, SHARED_FILE_CACHE,
            "a container id is not the shared key"
        );
        match self.deployment.compaction.file_cache {
            FileCacheSharing::Shared => SHARED_FILE_CACHE,
            FileCacheSharing::PerContainer => container,
        }
    }

    pub(super) fn cache(&self, state: &CompactionSlot, collection: Collection) -> &FileCache {
        &self.caches[&self.cache_key(state.invocation.container.0)][collection.index()]
    }

    /// The file caches a container uses, made empty on first use.
    pub(super) fn caches_of(&mut self, container: u64) -> &mut [FileCache; 2] {
        let key = self.cache_key(container);
        let cache_versions = self.behaviour.compaction.cache_versions as usize;
        self.caches.entry(key).or_insert_with(|| {
            [
                FileCache::new(cache_versions),
                FileCache::new(cache_versions),
            ]
        })
    }

    /// A container is gone: its own cache goes with it; the shared file system stays.
    pub(super) fn drop_container_cache(&mut self, container: u64) {
        if self.cache_key(container) == SHARED_FILE_CACHE {
            return;
        }
        if let Some(mut caches) = self.caches.remove(&container) {
            for (cache, store) in caches.iter_mut().zip(self.stores.iter_mut()) {
                cache.clear(store);
            }
        }
    }

    /// The publish the copy into a working copy reads at its end. On the shared file system the
    /// version must still be there: pruned by another invocation during the copy, it is missing.
    fn copied_publish(
        &self,
        state: &CompactionSlot,
        collection: Collection,
        version: Option<VersionId>,
    ) -> Option<PublishId> {
        if self.deployment.compaction.file_cache == FileCacheSharing::Shared {
            let store = &self.stores[collection.index()];
            let version = StoreVersion(version.unwrap_or(StoreVersion::INITIAL.0));
            return self.cache(state, collection).get(store, version);
        }
        self.cached_publish(state, collection, version)
            .map(|(publish, _)| publish)
    }

    /// The publish a version names for this invocation: its cache's copy, else a download.
    pub(super) fn cached_publish(
        &self,
        state: &CompactionSlot,
        collection: Collection,
        version: Option<VersionId>,
    ) -> Option<(PublishId, bool)> {
        let store = &self.stores[collection.index()];
        let version = StoreVersion(version.unwrap_or(StoreVersion::INITIAL.0));
        if let Some(publish) = self.cache(state, collection).get(store, version) {
            return Some((publish, true));
        }
        store.resolve(version).ok().map(|publish| (publish, false))
    }

    /// Pointer reads, cache loads (a download on a miss) and the copy into a working copy.
    pub(super) fn perform_snapshot_read(
        &mut self,
        now: Instant,
        state: &mut CompactionSlot,
        effect: &Effect,
    ) -> Response {
        match effect {
            Effect::ReadPointer(collection) => {
                let pointer = self.stores[collection.index()].read_pointer();
                let model = Response::Pointer {
                    version: Some(pointer.version.0),
                    etag: pointer.etag.0,
                };
                self.performer.read_pointer(now, *collection, model)
            }
            Effect::CacheLoad {
                collection,
                version,
            } => match self.cached_publish(state, *collection, *version) {
                Some((publish, cached)) => {
                    let key = self.cache_key(state.invocation.container.0);
                    let store = &mut self.stores[collection.index()];
                    if !cached {
                        let version = StoreVersion(version.unwrap_or(0));
                        let cache = &mut self.caches.get_mut(&key).expect("a cache per container")
                            [collection.index()];
                        cache.put(store, now, version, publish);
                    }
                    Response::Entries(store.entry_count(publish))
                }
                None => Response::Failed(Failure::NotFound),
            },
            Effect::OpenWorkingCopy {
                collection,
                version,
            } => {
                let model = match self.copied_publish(state, *collection, *version) {
                    Some(publish) => {
                        let store = &mut self.stores[collection.index()];
                        assert!(state.kept.working_copy.is_none());
                        state.kept.working_copy = Some(store.checkout(publish));
                        Response::Entries(store.entry_count(publish))
                    }
                    None => Response::Failed(Failure::NotFound),
                };
                let invocation = state.invocation.id.0;
                let answer =
                    self.performer
                        .open_working_copy(now, invocation, *collection, *version, model);
                if answer.is_failure()
                    && let Some(working_copy) = state.kept.working_copy.take()
                {
                    self.stores[collection.index()].discard(working_copy);
                }
                answer
            }
            other => unreachable!("not a snapshot read: {other:?}"),
        }
    }

    pub(super) fn publish(
        &mut self,
        now: Instant,
        state: &mut CompactionSlot,
        collection: Collection,
    ) -> Response {
        let working_copy = state
            .kept
            .working_copy
            .take()
            .expect("a working copy to publish");
        let mut ids: Vec<ChromaId> = working_copy.overlay().keys().copied().collect();
        ids.sort_unstable();
        let outcome = self.stores[collection.index()].publish(now, working_copy);
        state.kept.published = Some(outcome.publish);
        let publishes = &mut self.history.publishes[collection.index()];
        publishes.push(PublishRecord {
            collection,
            publish: u64::from(outcome.publish.0),
            base: 0,
            version: outcome.version.0,
            at: now,
            invocation: state.invocation.id.0,
            ids: CompactIds::from_sorted(&ids),
            pointer: PointerOutcome::NotWritten,
            promoted_at: None,
        });
        let info = self.stores[collection.index()].publish_info(outcome.publish);
        let record = publishes.last_mut().expect("just pushed");
        record.base = u64::from(info.parent.0);
        state.kept.publish_record = Some(publishes.len() - 1);
        let actor = Actor::Compaction {
            invocation: state.invocation.id.0,
            collection,
        };
        self.history
            .record(now, actor, HistoryEvent::Published, None, &[], || {
                format!(
                    "publish {} version {}",
                    outcome.publish.0, outcome.version.0
                )
            });
        if let Some(head_move) = outcome.head_move {
            self.head_moved(now, collection, &head_move);
        }
        let model = Response::Published {
            version: outcome.version.0,
        };
        let invocation = state.invocation.id.0;
        self.performer
            .put_snapshot(now, invocation, collection, outcome.version.0, model)
    }

    pub(super) fn write_pointer(
        &mut self,
        now: Instant,
        state: &mut CompactionSlot,
        collection: Collection,
        version: VersionId,
        expected_etag: Option<u64>,
    ) -> Response {
        if let Some(owner) = state.machine.owner() {
            self.locks[collection.index()].check(now, ServiceOwner(owner));
        }
        let store = &mut self.stores[collection.index()];
        let written = match expected_etag {
            Some(etag) => store
                .write_pointer_if_match(
                    now,
                    StoreVersion(version),
                    Etag(self.performer.model_etag(etag)),
                )
                .ok(),
            None => Some(store.write_pointer(now, StoreVersion(version))),
        };
        let model = if written.is_some() {
            Response::Done
        } else {
            Response::Failed(Failure::PreconditionFailed)
        };
        let answer = self
            .performer
            .write_pointer(now, collection, version, expected_etag, model);
        let outcome = match answer {
            Response::Done => PointerOutcome::Promoted,
            Response::Failed(Failure::PreconditionFailed) => PointerOutcome::Conflict,
            _ => PointerOutcome::NotWritten,
        };
        if let Some(index) = state.kept.publish_record {
            let record = &mut self.history.publishes[collection.index()][index];
            record.pointer = outcome;
            if outcome == PointerOutcome::Promoted {
                record.promoted_at = Some(now);
            }
        }
        let Some(written) = written else {
            return answer;
        };
        let pruned = self.stores[collection.index()].prune_versions(now);
        if !pruned.is_empty() {
            let versions: Vec<VersionId> = pruned.iter().map(|version| version.0).collect();
            self.performer.delete_snapshots(now, collection, &versions);
        }
        if let Some(head_move) = written.head_move {
            self.head_moved(now, collection, &head_move);
        }
        answer
    }

    pub(super) fn head_moved(
        &mut self,
        now: Instant,
        collection: Collection,
        head_move: &HeadMove,
    ) {
        let mut became_visible = Vec::new();
        self.visibility
            .head_moved(now, head_move, &self.table, &mut became_visible);
        for receipt in became_visible {
            let actor = Actor::Queue { collection };
            self.history.record(
                now,
                actor,
                HistoryEvent::LabelsVisible,
                Some(receipt),
                &[],
                String::new,
            );
        }
    }
}
