//! One collection's S3 prefix: timestamped snapshot versions, the `latest-pointer.txt` pointer, and
//! a per-container file cache of downloaded snapshots.
//!
//! Publishes are numbered (`PublishId`; publish 0 is the empty snapshot) and form a tree: each is
//! its base publish plus a delta (id -> new fields, with the old fields kept for undo). A publish is
//! uploaded under the version id `floor(now / version_resolution)`; two uploads in one tick reuse the
//! version id and the later one replaces the prefix's content (last writer wins). `prune_versions`
//! keeps the newest `keep_versions` version ids. The pointer holds a version id and an etag; writes
//! are compare-and-swap (`If-Match`, failing with 412 when the etag changed) or blind overwrites.
//!
//! Only one full copy is materialised: the content of the publish the pointer names through the
//! version map (the head). Any other publish is read by walking from the head to it through their
//! lowest common ancestor, undoing and redoing deltas; moving the head does the same and reports
//! every id whose fields changed. Deltas are kept for a window of recent publishes and for every
//! publish a live reference holds (working copies, existing version ids, the head), together with
//! the deltas on the paths from those publishes to the head; older ones are dropped, and a publish
//! whose path lost a delta can no longer be read (a file cache entry of it counts as not cached).
//!
//! Guarantee honoured: strong read-after-write; concurrent writers, last write wins; conditional
//! pointer writes give compare-and-swap. Broken on purpose by blind pointer overwrites from a stale
//! base (the other publish's changes vanish), by version-id reuse within a tick, and by pruning a
//! version the pointer still names.
//!
//! Memory: the head stores per receipt a sorted `u32` id column (4 bytes per id), one merchant per
//! receipt unless its ids disagree (then 4 more bytes per id), 16 bytes per labelled word, and 48
//! bytes of headers per receipt: 11.7 bytes per id measured for 79 ids and 35 labelled words a
//! receipt, so 1 M receipts (79 M ids) take about 0.9 GiB, about 1.05 GiB with a 4096-publish delta
//! window. Deltas cost 48 bytes per changed id, publish nodes 56 bytes each.
//! Depends on `time`, `entities` and `services::collection` (the working copy it checks out).

use crate::entities::{ChromaId, Collection, EntryFields, LabelFields, ReceiptIndex};
use crate::services::collection::SnapshotEntries;
use crate::time::{Duration, Instant, NANOS_PER_SEC};
use std::collections::{BTreeMap, BTreeSet};

/// A working copy of one of this store's publishes.
pub type WorkingCopy = crate::services::collection::WorkingCopy<PublishId>;

/// A publish: one uploaded snapshot. `PublishId::EMPTY` is the initial empty snapshot.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublishId(pub u32);

impl PublishId {
    pub const EMPTY: PublishId = PublishId(0);
}

/// A timestamped version prefix: `VersionId(tick + 1)`, where `tick = floor(now / resolution)`;
/// `VersionId::INITIAL` holds the empty snapshot from before the trial.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionId(pub u64);

/// The wall-clock second the trial starts at (2025-01-01 00:00:00 UTC), for version keys only.
const TRIAL_EPOCH_UNIX_SECONDS: u64 = 1_735_689_600;

impl VersionId {
    pub const INITIAL: VersionId = VersionId(0);

    /// `{collection}/snapshot/timestamped/{YYYYmmdd_HHMMSS}/` (with nanoseconds if the resolution is
    /// finer than a second).
    pub fn key(self, collection: Collection, resolution: Duration) -> String {
        let prefix = format!("{}/snapshot/timestamped/", collection.name());
        if self == VersionId::INITIAL {
            return format!("{prefix}initial/");
        }
        let nanos = (self.0 - 1).saturating_mul(resolution.as_nanos());
        let seconds = TRIAL_EPOCH_UNIX_SECONDS + nanos / NANOS_PER_SEC;
        let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
        let time = seconds % 86_400;
        let mut key = format!(
            "{prefix}{year:04}{month:02}{day:02}_{:02}{:02}{:02}",
            time / 3600,
            time / 60 % 60,
            time % 60
        );
        if !resolution.as_nanos().is_multiple_of(NANOS_PER_SEC) {
            key.push_str(&format!(".{:09}", nanos % NANOS_PER_SEC));
        }
        key.push('/');
        key
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The pointer object's etag (a generation number, new on every write).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Etag(pub u64);

/// What `latest-pointer.txt` holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Pointer {
    pub version: VersionId,
    pub etag: Etag,
}

/// Knobs of the bucket model.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotParams {
    /// Version ids are `floor(now / version_resolution)` (1 s in the real system).
    pub version_resolution: Duration,
    /// Version ids kept by `prune_versions` (4).
    pub keep_versions: usize,
    /// Recent publishes whose deltas are kept even if nothing references them.
    pub deltas_window: usize,
    /// Hard bound on kept deltas (window plus what live references need); exceeded means a
    /// reference was held far too long.
    pub deltas_max: usize,
}

/// One id whose fields changed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct EntryChange {
    pub id: ChromaId,
    pub old: Option<EntryFields>,
    pub new: Option<EntryFields>,
}

/// The materialised head moved: the content readers of the pointer see changed.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadMove {
    pub from: PublishId,
    pub to: PublishId,
    /// Every id whose fields differ between `from` and `to`, ascending.
    pub changes: Vec<EntryChange>,
    /// Entries in the new head.
    pub entry_count: u64,
}

/// What a publish (snapshot upload) did.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishOutcome {
    pub publish: PublishId,
    pub version: VersionId,
    /// The publish this upload replaced under a reused version id.
    pub replaced: Option<PublishId>,
    /// Set if the pointer names `version`, so readers see the upload at once.
    pub head_move: Option<HeadMove>,
    /// Entries in the uploaded snapshot (for transfer-time models).
    pub entry_count: u64,
    /// Ids the publish changed relative to its base.
    pub delta_len: usize,
}

/// A pointer write that succeeded.
#[derive(Clone, Debug, PartialEq)]
pub struct PointerWrite {
    pub previous: Pointer,
    pub pointer: Pointer,
    pub head_move: Option<HeadMove>,
}

/// A conditional pointer write found another etag (HTTP 412).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PreconditionFailed {
    pub current: Pointer,
}

/// The version prefix does not exist (never uploaded, or pruned).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VersionMissing(pub VersionId);

/// Facts about one publish.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PublishInfo {
    pub parent: PublishId,
    pub version: VersionId,
    pub published_at: Instant,
    pub entry_count: u64,
    pub has_delta: bool,
}

/// Counts kept by the bucket model.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotCounters {
    pub publishes: u64,
    pub version_reuses: u64,
    pub pointer_writes: u64,
    pub pointer_precondition_failures: u64,
    pub head_moves: u64,
    /// Head moves that had to undo deltas (the new head is not a descendant of the old).
    pub head_moves_across_branches: u64,
    pub versions_pruned: u64,
    /// Times the pointer named a version that no longer exists.
    pub pointer_dangling: u64,
    pub deltas_dropped: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct DeltaEntry {
    id: ChromaId,
    new: Option<EntryFields>,
    old: Option<EntryFields>,
}

#[derive(Clone, Debug)]
struct Node {
    parent: PublishId,
    depth: u32,
    version: VersionId,
    published_at: Instant,
    entry_count: u64,
    /// Sorted by id; `None` once dropped.
    delta: Option<Box<[DeltaEntry]>>,
    references: u32,
}

impl Node {
    fn delta_get(&self, id: ChromaId) -> Option<&DeltaEntry> {
        let delta = self.delta.as_ref().expect("a path node without its delta");
        delta
            .binary_search_by_key(&id, |entry| entry.id)
            .ok()
            .map(|index| &delta[index])
    }
}

/// The merchant column of one receipt's entries.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Merchants {
    Uniform(u32),
    PerId(Box<[u32]>),
}

/// One receipt's entries in the materialised head.
#[derive(Clone, Debug)]
struct ReceiptEntries {
    /// `ChromaId` low 24 bits, ascending.
    ids: Box<[u32]>,
    merchants: Merchants,
    /// Non-empty label fields, by id.
    labels: Box<[(u32, LabelFields)]>,
}

impl Default for ReceiptEntries {
    fn default() -> ReceiptEntries {
        ReceiptEntries {
            ids: Box::new([]),
            merchants: Merchants::Uniform(0),
            labels: Box::new([]),
        }
    }
}

const LOCAL_MASK: u64 = 0xff_ffff;

impl ReceiptEntries {
    /// The merchant of the entry at `index` of `ids`.
    fn merchant_at(&self, index: usize) -> u32 {
        match &self.merchants {
            Merchants::Uniform(merchant) => *merchant,
            Merchants::PerId(merchants) => merchants[index],
        }
    }

    fn get(&self, local: u32) -> Option<EntryFields> {
        let index = self.ids.binary_search(&local).ok()?;
        let merchant = self.merchant_at(index);
        let labels = match self.labels.binary_search_by_key(&local, |(id, _)| *id) {
            Ok(position) => self.labels[position].1,
            Err(_) => LabelFields::default(),
        };
        Some(EntryFields { merchant, labels })
    }

    /// Every entry, ascending: one pass over ids and labels together (both are ascending).
    fn decode(&self) -> Vec<(u32, EntryFields)> {
        let mut labels = self.labels.iter().peekable();
        self.ids
            .iter()
            .enumerate()
            .map(|(index, local)| {
                let merchant = self.merchant_at(index);
                let labels = match labels.next_if(|(id, _)| id == local) {
                    Some((_, fields)) => *fields,
                    None => LabelFields::default(),
                };
                (*local, EntryFields { merchant, labels })
            })
            .collect()
    }

    fn encode(entries: &[(u32, EntryFields)]) -> ReceiptEntries {
        let ids: Box<[u32]> = entries.iter().map(|(local, _)| *local).collect();
        let first = entries.first().map_or(0, |(_, fields)| fields.merchant);
        let merchants = if entries.iter().all(|(_, fields)| fields.merchant == first) {
            Merchants::Uniform(first)
        } else {
            Merchants::PerId(entries.iter().map(|(_, fields)| fields.merchant).collect())
        };
        let labels = entries
            .iter()
            .filter(|(_, fields)| !fields.labels.is_empty())
            .map(|(local, fields)| (*local, fields.labels))
            .collect();
        ReceiptEntries {
            ids,
            merchants,
            labels,
        }
    }

    fn heap_bytes(&self) -> usize {
        let merchants = match &self.merchants {
            Merchants::Uniform(_) => 0,
            Merchants::PerId(merchants) => merchants.len() * 4,
        };
        self.ids.len() * 4
            + merchants
            + self.labels.len() * std::mem::size_of::<(u32, LabelFields)>()
    }
}

/// The one materialised snapshot: the head's content.
#[derive(Clone, Debug, Default)]
struct Materialised {
    receipts: Vec<ReceiptEntries>,
    entry_count: u64,
}

impl Materialised {
    fn get(&self, id: ChromaId) -> Option<EntryFields> {
        self.receipts
            .get(id.receipt() as usize)?
            .get((id.0 & LOCAL_MASK) as u32)
    }

    /// Applies `changes` (ascending, all of `receipt`) by merging them into the receipt's entries.
    fn apply_receipt(&mut self, receipt: ReceiptIndex, changes: &[EntryChange]) {
        let index = receipt as usize;
        if index >= self.receipts.len() {
            self.receipts
                .resize_with(index + 1, ReceiptEntries::default);
        }
        let current = self.receipts[index].decode();
        let mut merged: Vec<(u32, EntryFields)> = Vec::with_capacity(current.len() + changes.len());
        let mut position = 0usize;
        for EntryChange { id, new, .. } in changes {
            assert_eq!(id.receipt(), receipt);
            let local = (id.0 & LOCAL_MASK) as u32;
            while position < current.len() && current[position].0 < local {
                merged.push(current[position]);
                position += 1;
            }
            let existed = position < current.len() && current[position].0 == local;
            if existed {
                position += 1;
            }
            match (existed, new) {
                (false, Some(_)) => self.entry_count += 1,
                (true, None) => self.entry_count -= 1,
                _ => {}
            }
            if let Some(fields) = new {
                merged.push((local, *fields));
            }
        }
        merged.extend_from_slice(&current[position..]);
        self.receipts[index] = ReceiptEntries::encode(&merged);
    }

    /// Applies changes over many receipts (ascending by id).
    fn apply(&mut self, changes: &[EntryChange]) {
        for chunk in changes.chunk_by(|a, b| a.id.receipt() == b.id.receipt()) {
            self.apply_receipt(chunk[0].id.receipt(), chunk);
        }
    }

    fn heap_bytes(&self) -> usize {
        let headers = self.receipts.capacity() * std::mem::size_of::<ReceiptEntries>();
        headers
            + self
                .receipts
                .iter()
                .map(ReceiptEntries::heap_bytes)
                .sum::<usize>()
    }
}

/// The route from the head to a publish: publishes from the target up to (excluding) the lowest
/// common ancestor, and from the head up to it.
#[derive(Clone, Debug, Default)]
struct ReadPath {
    target_side: Vec<PublishId>,
    head_side: Vec<PublishId>,
}

/// Reads one publish of a store (`SnapshotStore::reader`).
pub struct SnapshotReader<'a> {
    store: &'a SnapshotStore,
    path: ReadPath,
}

impl<'a> SnapshotReader<'a> {
    /// The fields of `id` in the publish.
    pub fn get(&self, id: ChromaId) -> Option<EntryFields> {
        self.store.get_on_path(&self.path, id)
    }

    /// A reader of one receipt's entries in the publish for ids asked in ascending order: when
    /// the publish is the head (the common case) it walks the head's entries in order, else it
    /// reads id by id.
    pub fn receipt(&self, receipt: ReceiptIndex) -> ReceiptReader<'_, 'a> {
        let at_head = self.path.target_side.is_empty() && self.path.head_side.is_empty();
        ReceiptReader {
            reader: self,
            head: at_head.then(|| self.store.head_receipt(receipt)),
        }
    }
}

/// One receipt's entries in one publish (`SnapshotReader::receipt`).
pub struct ReceiptReader<'r, 'a> {
    reader: &'r SnapshotReader<'a>,
    head: Option<HeadReceipt<'a>>,
}

impl ReceiptReader<'_, '_> {
    /// The fields of `id`: what `SnapshotReader::get` answers; ids asked in ascending order.
    pub fn get(&mut self, id: ChromaId) -> Option<EntryFields> {
        match &mut self.head {
            Some(head) => head.get(id),
            None => self.reader.get(id),
        }
    }
}

/// One id read along the route from the head to a publish, the publishes handed in as a walk
/// passes them (each side in order from its end towards the common ancestor). On the target's
/// side the delta nearest the target that holds the id decides (its new value); else, on the
/// head's side, the one nearest the common ancestor (its old value); else the head's content.
struct PathRead {
    id: ChromaId,
    target_side: Option<Option<EntryFields>>,
    head_side: Option<Option<EntryFields>>,
}

impl PathRead {
    fn new(id: ChromaId) -> PathRead {
        PathRead {
            id,
            target_side: None,
            head_side: None,
        }
    }

    fn visit(&mut self, node: &Node, on_target_side: bool) {
        if on_target_side && self.target_side.is_some() {
            return;
        }
        if let Some(entry) = node.delta_get(self.id) {
            if on_target_side {
                self.target_side = Some(entry.new);
            } else {
                self.head_side = Some(entry.old);
            }
        }
    }

    fn value(self, head: &Materialised) -> Option<EntryFields> {
        match (self.target_side, self.head_side) {
            (Some(value), _) | (None, Some(value)) => value,
            (None, None) => head.get(self.id),
        }
    }
}

/// The most publishes a trial may make (ids are 32-bit).
const PUBLISHES_MAX: usize = u32::MAX as usize;

/// One receipt's entries in the head, read in ascending order of id (`SnapshotStore::head_receipt`).
pub struct HeadReceipt<'a> {
    receipt: ReceiptIndex,
    entries: Option<&'a ReceiptEntries>,
    /// Where the next id and label searches start: every entry before is below the last id asked.
    id_position: usize,
    label_position: usize,
    last: Option<ChromaId>,
}

impl HeadReceipt<'_> {
    /// The fields of `id` in the head; `id` is the receipt's and above every id asked before.
    pub fn get(&mut self, id: ChromaId) -> Option<EntryFields> {
        assert!(
            id.receipt() == self.receipt && self.last.is_none_or(|last| id > last),
            "ids of one receipt asked in ascending order"
        );
        self.last = Some(id);
        let entries = self.entries?;
        let local = (id.0 & LOCAL_MASK) as u32;
        let ids = &entries.ids;
        // Bounded by the receipt's entries: the positions only move forward.
        while self.id_position < ids.len() && ids[self.id_position] < local {
            self.id_position += 1;
        }
        if ids.get(self.id_position) != Some(&local) {
            return None;
        }
        let merchant = entries.merchant_at(self.id_position);
        let labels = &entries.labels;
        while self.label_position < labels.len() && labels[self.label_position].0 < local {
            self.label_position += 1;
        }
        let labels = match labels.get(self.label_position) {
            Some((label_id, fields)) if *label_id == local => *fields,
            _ => LabelFields::default(),
        };
        Some(EntryFields { merchant, labels })
    }
}

/// One collection's bucket prefix.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    collection: Collection,
    params: SnapshotParams,
    nodes: Vec<Node>,
    versions: BTreeMap<VersionId, PublishId>,
    pointer: Pointer,
    head: PublishId,
    materialised: Materialised,
    /// Publishes that still hold their delta, ascending.
    with_delta: BTreeSet<PublishId>,
    counters: SnapshotCounters,
}

impl SnapshotEntries for SnapshotStore {
    type Publish = PublishId;
    #[inline]
    fn entry(&self, publish: PublishId, id: ChromaId) -> Option<EntryFields> {
        self.get(publish, id)
    }
}

impl SnapshotStore {
    pub fn new(collection: Collection, params: SnapshotParams) -> SnapshotStore {
        SnapshotStore::reusing(None, collection, params)
    }

    /// A new store, as `new` makes it, that keeps `old`'s storage of publishes and entries,
    /// emptied, when there is one: a worker running trial after trial allocates it once.
    pub fn reusing(
        old: Option<SnapshotStore>,
        collection: Collection,
        params: SnapshotParams,
    ) -> SnapshotStore {
        let (mut nodes, mut receipts) = old.map_or_else(Default::default, |old| {
            (old.nodes, old.materialised.receipts)
        });
        assert!(
            params.version_resolution > Duration::ZERO,
            "version resolution must be positive"
        );
        assert!(params.keep_versions >= 1, "keep at least one version");
        assert!(params.deltas_window >= 1 && params.deltas_window <= params.deltas_max);
        let root = Node {
            parent: PublishId::EMPTY,
            depth: 0,
            version: VersionId::INITIAL,
            published_at: Instant::ZERO,
            entry_count: 0,
            delta: Some(Box::new([])),
            references: 0,
        };
        nodes.clear();
        nodes.push(root);
        receipts.clear();
        SnapshotStore {
            collection,
            params,
            nodes,
            versions: BTreeMap::from([(VersionId::INITIAL, PublishId::EMPTY)]),
            pointer: Pointer {
                version: VersionId::INITIAL,
                etag: Etag(0),
            },
            head: PublishId::EMPTY,
            materialised: Materialised {
                receipts,
                ..Materialised::default()
            },
            with_delta: BTreeSet::from([PublishId::EMPTY]),
            counters: SnapshotCounters::default(),
        }
    }

    pub fn collection(&self) -> Collection {
        self.collection
    }

    pub fn params(&self) -> &SnapshotParams {
        &self.params
    }

    pub fn counters(&self) -> &SnapshotCounters {
        &self.counters
    }

    fn node(&self, publish: PublishId) -> &Node {
        &self.nodes[publish.0 as usize]
    }

    pub fn publish_info(&self, publish: PublishId) -> PublishInfo {
        let node = self.node(publish);
        PublishInfo {
            parent: node.parent,
            version: node.version,
            published_at: node.published_at,
            entry_count: node.entry_count,
            has_delta: node.delta.is_some(),
        }
    }

    /// Publishes made so far, including the empty one.
    pub fn publish_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn read_pointer(&self) -> Pointer {
        self.pointer
    }

    /// The version id an upload at `now` gets.
    pub fn version_id_at(&self, now: Instant) -> VersionId {
        VersionId(now.as_nanos() / self.params.version_resolution.as_nanos() + 1)
    }

    /// What the version prefix holds now (a download's result).
    pub fn resolve(&self, version: VersionId) -> Result<PublishId, VersionMissing> {
        self.versions
            .get(&version)
            .copied()
            .ok_or(VersionMissing(version))
    }

    /// The publish the pointer names, or `None` if its version no longer exists.
    pub fn pointer_publish(&self) -> Option<PublishId> {
        self.resolve(self.pointer.version).ok()
    }

    /// The materialised publish (the pointer's, or the last one it named if it dangles).
    pub fn head(&self) -> PublishId {
        self.head
    }

    /// Existing version ids with their publishes, ascending.
    pub fn versions(&self) -> Vec<(VersionId, PublishId)> {
        self.versions
            .iter()
            .map(|(version, publish)| (*version, *publish))
            .collect()
    }

    pub fn entry_count(&self, publish: PublishId) -> u64 {
        self.node(publish).entry_count
    }

    /// The fields of `id` in the head.
    pub fn head_get(&self, id: ChromaId) -> Option<EntryFields> {
        self.materialised.get(id)
    }

    /// A reader of one receipt's entries in the head for ids asked in ascending order: what
    /// `head_get` answers, each found by walking on from the last instead of by a search.
    pub fn head_receipt(&self, receipt: ReceiptIndex) -> HeadReceipt<'_> {
        HeadReceipt {
            receipt,
            entries: self.materialised.receipts.get(receipt as usize),
            id_position: 0,
            label_position: 0,
            last: None,
        }
    }

    /// Every entry of one receipt in the head, ascending.
    pub fn head_receipt_entries(&self, receipt: ReceiptIndex) -> Vec<(ChromaId, EntryFields)> {
        let Some(entries) = self.materialised.receipts.get(receipt as usize) else {
            return Vec::new();
        };
        let base = u64::from(receipt) << 24;
        entries
            .decode()
            .into_iter()
            .map(|(local, fields)| (ChromaId(base | u64::from(local)), fields))
            .collect()
    }

    fn read_path(&self, target: PublishId) -> Option<ReadPath> {
        let mut path = ReadPath::default();
        self.walk_to_head(target, |publish, on_target_side| {
            let side = if on_target_side {
                &mut path.target_side
            } else {
                &mut path.head_side
            };
            side.push(publish);
        })?;
        Some(path)
    }

    /// Walks from `target` and from the head up to their common ancestor, handing each publish
    /// passed (and whether it is on the target's side) to `visit`; `None` if a delta on the way
    /// was dropped.
    #[inline]
    fn walk_to_head(
        &self,
        target: PublishId,
        mut visit: impl FnMut(PublishId, bool),
    ) -> Option<()> {
        let (mut x, mut y) = (target, self.head);
        // Bounded by the depth of the two publishes.
        while x != y {
            let on_target_side = self.node(x).depth >= self.node(y).depth;
            let deeper = if on_target_side { &mut x } else { &mut y };
            self.node(*deeper).delta.as_ref()?;
            visit(*deeper, on_target_side);
            *deeper = self.node(*deeper).parent;
        }
        Some(())
    }

    /// Whether `publish` can be read (every delta between it and the head is kept).
    pub fn is_readable(&self, publish: PublishId) -> bool {
        (publish.0 as usize) < self.nodes.len() && self.walk_to_head(publish, |_, _| {}).is_some()
    }

    fn get_on_path(&self, path: &ReadPath, id: ChromaId) -> Option<EntryFields> {
        let mut read = PathRead::new(id);
        for publish in &path.target_side {
            read.visit(self.node(*publish), true);
        }
        for publish in &path.head_side {
            read.visit(self.node(*publish), false);
        }
        read.value(&self.materialised)
    }

    /// The fields of `id` in any readable publish: what `reader(publish).get(id)` answers, read
    /// on the walk itself instead of a route kept for more reads.
    pub fn get(&self, publish: PublishId, id: ChromaId) -> Option<EntryFields> {
        let mut read = PathRead::new(id);
        self.walk_to_head(publish, |visited, on_target_side| {
            read.visit(self.node(visited), on_target_side)
        })
        .expect("read of a publish whose deltas were dropped");
        read.value(&self.materialised)
    }

    /// A reader of one readable publish: finds the route to it once for many reads.
    pub fn reader(&self, publish: PublishId) -> SnapshotReader<'_> {
        let path = self
            .read_path(publish)
            .expect("read of a publish whose deltas were dropped");
        SnapshotReader { store: self, path }
    }

    /// Holds a reference to `publish` so it stays readable (a working copy holds one).
    pub fn retain(&mut self, publish: PublishId) {
        assert!(self.is_readable(publish), "retain of an unreadable publish");
        self.nodes[publish.0 as usize].references += 1;
    }

    pub fn release(&mut self, publish: PublishId) {
        let node = &mut self.nodes[publish.0 as usize];
        assert!(node.references > 0, "release without retain");
        node.references -= 1;
    }

    /// A working copy of `publish` (holds a reference until published or discarded).
    pub fn checkout(&mut self, publish: PublishId) -> WorkingCopy {
        self.retain(publish);
        WorkingCopy::new(publish)
    }

    pub fn discard(&mut self, working_copy: WorkingCopy) {
        self.release(working_copy.base());
    }

    /// Uploads the working copy as a new snapshot under the version id of `now`.
    pub fn publish(&mut self, now: Instant, working_copy: WorkingCopy) -> PublishOutcome {
        let base = working_copy.base();
        let path = self
            .read_path(base)
            .expect("the base of a working copy is always readable");
        let mut delta: Vec<DeltaEntry> = Vec::with_capacity(working_copy.overlay().len());
        let mut entry_count = self.node(base).entry_count;
        for (id, new) in working_copy.overlay() {
            let old = self.get_on_path(&path, *id);
            if old == *new {
                continue;
            }
            match (old, new) {
                (None, Some(_)) => entry_count += 1,
                (Some(_), None) => entry_count -= 1,
                _ => {}
            }
            delta.push(DeltaEntry {
                id: *id,
                new: *new,
                old,
            });
        }
        assert!(self.nodes.len() < PUBLISHES_MAX, "publish ids exhausted");
        let publish = PublishId(self.nodes.len() as u32);
        let version = self.version_id_at(now);
        let delta_len = delta.len();
        self.nodes.push(Node {
            parent: base,
            depth: self.node(base).depth + 1,
            version,
            published_at: now,
            entry_count,
            delta: Some(delta.into_boxed_slice()),
            references: 0,
        });
        self.with_delta.insert(publish);
        self.release(base);
        self.counters.publishes += 1;
        let replaced = self.versions.insert(version, publish);
        if replaced.is_some() {
            self.counters.version_reuses += 1;
        }
        let head_move = (self.pointer.version == version).then(|| self.move_head(publish));
        self.prune_deltas();
        PublishOutcome {
            publish,
            version,
            replaced,
            head_move,
            entry_count,
            delta_len,
        }
    }

    /// Compare-and-swap pointer write (`If-Match: expected`).
    pub fn write_pointer_if_match(
        &mut self,
        now: Instant,
        version: VersionId,
        expected: Etag,
    ) -> Result<PointerWrite, PreconditionFailed> {
        if self.pointer.etag != expected {
            self.counters.pointer_precondition_failures += 1;
            return Err(PreconditionFailed {
                current: self.pointer,
            });
        }
        Ok(self.write_pointer(now, version))
    }

    /// Blind pointer overwrite (last write wins).
    pub fn write_pointer(&mut self, _now: Instant, version: VersionId) -> PointerWrite {
        let previous = self.pointer;
        self.pointer = Pointer {
            version,
            etag: Etag(previous.etag.0 + 1),
        };
        self.counters.pointer_writes += 1;
        let head_move = self.follow_pointer();
        PointerWrite {
            previous,
            pointer: self.pointer,
            head_move,
        }
    }

    /// Moves the head to the pointer's publish if it exists and differs.
    fn follow_pointer(&mut self) -> Option<HeadMove> {
        match self.pointer_publish() {
            None => {
                self.counters.pointer_dangling += 1;
                None
            }
            Some(target) if target == self.head => None,
            Some(target) => {
                let head_move = self.move_head(target);
                self.prune_deltas();
                Some(head_move)
            }
        }
    }

    /// Deletes every version id but the newest `keep_versions`; returns the deleted ones.
    pub fn prune_versions(&mut self, _now: Instant) -> Vec<VersionId> {
        let mut pruned = Vec::new();
        while self.versions.len() > self.params.keep_versions {
            let (version, _) = self.versions.pop_first().expect("more than keep_versions");
            pruned.push(version);
        }
        self.counters.versions_pruned += pruned.len() as u64;
        if pruned.contains(&self.pointer.version) {
            self.counters.pointer_dangling += 1;
        }
        pruned
    }

    fn move_head(&mut self, target: PublishId) -> HeadMove {
        // The common move, to a publish made on the head, needs no path: the one it would find
        // (nothing on the head's side, the target alone on its own) is known.
        let to_child = target != self.head
            && self.node(target).parent == self.head
            && self.node(target).delta.is_some();
        let (changes, across_branches) = if to_child {
            (self.changes_to_child(target), false)
        } else {
            let path = self
                .read_path(target)
                .expect("the head moves only to readable publishes");
            debug_assert!(!(path.head_side.is_empty() && path.target_side.len() == 1));
            (self.changes_along(&path), !path.head_side.is_empty())
        };
        self.materialised.apply(&changes);
        let from = self.head;
        self.head = target;
        self.counters.head_moves += 1;
        if across_branches {
            self.counters.head_moves_across_branches += 1;
        }
        let entry_count = self.node(target).entry_count;
        assert_eq!(
            self.materialised.entry_count, entry_count,
            "head content disagrees with its count"
        );
        HeadMove {
            from,
            to: target,
            changes,
            entry_count,
        }
    }

    /// The changes of a move from the head to a publish made on it (the common move): its delta,
    /// which holds one entry per id, ascending, each only where the value changed, with the old
    /// value being the head's (`publish`).
    fn changes_to_child(&self, child: PublishId) -> Vec<EntryChange> {
        debug_assert_eq!(self.node(child).parent, self.head);
        let delta = self.node(child).delta.as_deref().expect("path delta");
        delta
            .iter()
            .map(|entry| {
                debug_assert_eq!(self.materialised.get(entry.id), entry.old);
                EntryChange {
                    id: entry.id,
                    old: entry.old,
                    new: entry.new,
                }
            })
            .collect()
    }

    /// The changes of a move along `path`, across branches or over several publishes.
    fn changes_along(&self, path: &ReadPath) -> Vec<EntryChange> {
        // Undo the head side, then redo the target side from the common ancestor down: the last
        // value written for an id is its value in the target.
        let mut finals: Vec<(ChromaId, Option<EntryFields>)> = Vec::new();
        for publish in &path.head_side {
            let delta = self.node(*publish).delta.as_deref().expect("path delta");
            finals.extend(delta.iter().map(|entry| (entry.id, entry.old)));
        }
        for publish in path.target_side.iter().rev() {
            let delta = self.node(*publish).delta.as_deref().expect("path delta");
            finals.extend(delta.iter().map(|entry| (entry.id, entry.new)));
        }
        // Stable: the writes to one id stay in order.
        finals.sort_by_key(|(id, _)| *id);
        let mut changes = Vec::with_capacity(finals.len());
        for writes_to_id in finals.chunk_by(|a, b| a.0 == b.0) {
            let (id, new) = *writes_to_id.last().expect("a chunk is never empty");
            let old = self.materialised.get(id);
            if old != new {
                changes.push(EntryChange { id, old, new });
            }
        }
        changes
    }

    /// Publishes whose deltas must stay: head, referenced, version targets and the recent window.
    fn pinned(&self) -> Vec<PublishId> {
        let mut pinned: Vec<PublishId> = vec![self.head];
        pinned.extend(self.versions.values().copied());
        pinned.extend(
            self.with_delta
                .iter()
                .rev()
                .take(self.params.deltas_window)
                .copied(),
        );
        pinned.extend(
            self.with_delta
                .iter()
                .copied()
                .filter(|p| self.node(*p).references > 0),
        );
        pinned.sort_unstable();
        pinned.dedup();
        pinned.retain(|publish| self.node(*publish).delta.is_some());
        pinned
    }

    /// Publishes on the paths from every pinned publish to the head (excluding the common ancestor),
    /// plus the pinned ones themselves.
    fn needed(&self, pinned: &[PublishId]) -> BTreeSet<PublishId> {
        let mut needed: BTreeSet<PublishId> = BTreeSet::from([PublishId::EMPTY]);
        let mut head_chain: BTreeSet<PublishId> = BTreeSet::new();
        let mut cursor = Some(self.head);
        let mut ancestor_depth_min = self.node(self.head).depth;
        for &start in pinned {
            let mut x = start;
            // Bounded: each step moves x one level up; stops at the head chain or a marked publish.
            loop {
                while let Some(chain) = cursor.filter(|c| self.node(*c).depth >= self.node(x).depth)
                {
                    head_chain.insert(chain);
                    cursor = (chain != PublishId::EMPTY).then(|| self.node(chain).parent);
                }
                if head_chain.contains(&x) {
                    ancestor_depth_min = ancestor_depth_min.min(self.node(x).depth);
                    break;
                }
                if x != start && needed.contains(&x) {
                    break;
                }
                assert!(
                    self.node(x).delta.is_some(),
                    "a live publish's path lost a delta"
                );
                needed.insert(x);
                x = self.node(x).parent;
            }
            needed.insert(start);
        }
        needed.extend(
            head_chain
                .into_iter()
                .filter(|p| self.node(*p).depth > ancestor_depth_min),
        );
        needed
    }

    /// Drops deltas nothing needs once more than the window (plus a quarter) are kept.
    fn prune_deltas(&mut self) {
        let slack = self.params.deltas_window / 4 + 1;
        if self.with_delta.len() <= self.params.deltas_window + slack {
            return;
        }
        let pinned = self.pinned();
        let needed = self.needed(&pinned);
        let drop: Vec<PublishId> = self.with_delta.difference(&needed).copied().collect();
        for publish in drop {
            assert_eq!(
                self.node(publish).references,
                0,
                "dropping a referenced publish"
            );
            self.nodes[publish.0 as usize].delta = None;
            self.with_delta.remove(&publish);
            self.counters.deltas_dropped += 1;
        }
        assert!(
            self.with_delta.len() <= self.params.deltas_max,
            "{} deltas kept, more than deltas_max {}: a reference is held too long",
            self.with_delta.len(),
            self.params.deltas_max
        );
    }

    /// Publishes that still hold their delta.
    pub fn deltas_kept(&self) -> usize {
        self.with_delta.len()
    }

    /// Heap bytes held (capacity-based; allocator overhead excluded).
    pub fn heap_bytes(&self) -> usize {
        let nodes = self.nodes.capacity() * std::mem::size_of::<Node>();
        let deltas: usize = self
            .with_delta
            .iter()
            .map(|p| self.node(*p).delta.as_ref().map_or(0, |d| d.len()))
            .sum::<usize>()
            * std::mem::size_of::<DeltaEntry>();
        nodes + deltas + self.materialised.heap_bytes()
    }
}

/// A cached snapshot in a container's file cache.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    pub version: VersionId,
    pub publish: PublishId,
    pub stored_at: Instant,
}

/// One Lambda container's file cache of snapshots: version id -> the publish it downloaded.
/// A version id reused after the download maps to the stale publish here. Entries hold no
/// reference: an idle container may keep an entry for hours, and pinning it would pin every delta
/// since; an entry whose publish can no longer be read counts as not cached. Check out the
/// publish `get` returns at once to hold it.
#[derive(Clone, Debug)]
pub struct FileCache {
    capacity: usize,
    /// Ascending by version.
    entries: Vec<CacheEntry>,
}

impl FileCache {
    pub fn new(capacity: usize) -> FileCache {
        assert!(capacity >= 1, "a cache holds at least one version");
        FileCache {
            capacity,
            entries: Vec::with_capacity(capacity + 1),
        }
    }

    pub fn entries(&self) -> &[CacheEntry] {
        &self.entries
    }

    /// The publish cached under `version`; `None` if absent or no longer readable.
    pub fn get(&self, store: &SnapshotStore, version: VersionId) -> Option<PublishId> {
        let entry = self.entries.iter().find(|entry| entry.version == version)?;
        store.is_readable(entry.publish).then_some(entry.publish)
    }

    /// Stores `publish` under `version` (replacing an older copy) and prunes to the capacity, oldest
    /// version first. Returns false, storing nothing, if the publish is no longer readable.
    pub fn put(
        &mut self,
        store: &SnapshotStore,
        now: Instant,
        version: VersionId,
        publish: PublishId,
    ) -> bool {
        if !store.is_readable(publish) {
            return false;
        }
        self.entries.retain(|entry| entry.version != version);
        let position = self
            .entries
            .partition_point(|entry| entry.version < version);
        self.entries.insert(
            position,
            CacheEntry {
                version,
                publish,
                stored_at: now,
            },
        );
        while self.entries.len() > self.capacity {
            self.entries.remove(0);
        }
        assert!(self.entries.len() <= self.capacity);
        true
    }

    /// Empties the cache (its container is gone). Entries hold no references, so nothing in the
    /// store is released.
    pub fn clear(&mut self, _store: &SnapshotStore) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{Stream, Streams};
    use crate::services::collection::{EntryPatch, UpsertMode};
    use crate::services::{index_below, unit_interval};

    fn params() -> SnapshotParams {
        SnapshotParams {
            version_resolution: Duration::from_secs(1),
            keep_versions: 4,
            deltas_window: 4096,
            deltas_max: 16_384,
        }
    }

    fn store() -> SnapshotStore {
        SnapshotStore::new(Collection::Words, params())
    }

    fn merchant(value: u32) -> EntryPatch {
        EntryPatch {
            merchant: Some(value),
            labels: None,
        }
    }

    fn at_secs(seconds: u64) -> Instant {
        Instant::ZERO.add(Duration::from_secs(seconds))
    }

    /// Publishes `ids` with merchant `value` on top of `base` at `now`.
    fn publish_ids(
        store: &mut SnapshotStore,
        now: Instant,
        base: PublishId,
        ids: &[ChromaId],
        value: u32,
    ) -> PublishOutcome {
        let mut copy = store.checkout(base);
        for id in ids {
            copy.upsert(store, *id, merchant(value), UpsertMode::Merge);
        }
        store.publish(now, copy)
    }

    /// The head read in ascending order (`head_receipt`) answers as `head_get` does, merchants
    /// uniform or per id, labels on some words, ids present or not.
    #[test]
    fn head_read_in_order_answers_as_reads_by_id() {
        let mut store = store();
        let mut copy = store.checkout(PublishId::EMPTY);
        for receipt in 0..3u32 {
            for word in (1..=12u32).filter(|word| word % 3 != 0) {
                let id = ChromaId::word(receipt, 1 + word / 5, word);
                let labelled = (word + receipt) % 2 == 0;
                let patch = EntryPatch {
                    merchant: Some(if receipt == 1 { word } else { 40 }),
                    labels: labelled.then_some(LabelFields {
                        valid: word as u16,
                        ..LabelFields::default()
                    }),
                };
                copy.upsert(&store, id, patch, UpsertMode::Merge);
            }
        }
        let outcome = store.publish(at_secs(1), copy);
        store.write_pointer(at_secs(2), outcome.version);
        let mut labelled = 0;
        let at_head = store.reader(outcome.publish);
        let at_root = store.reader(PublishId::EMPTY);
        for receipt in 0..4u32 {
            let mut head = store.head_receipt(receipt);
            let mut head_by_reader = at_head.receipt(receipt);
            let mut root_by_reader = at_root.receipt(receipt);
            for line in 1..=3u32 {
                for word in 1..=12u32 {
                    let id = ChromaId::word(receipt, line, word);
                    let expected = store.head_get(id);
                    labelled += usize::from(expected.is_some_and(|e| !e.labels.is_empty()));
                    assert_eq!(head.get(id), expected, "{id:?}");
                    assert_eq!(head_by_reader.get(id), expected, "reader {id:?}");
                    assert_eq!(root_by_reader.get(id), store.get(PublishId::EMPTY, id));
                }
            }
        }
        assert!(labelled > 5, "the content has labels to read");
    }

    #[test]
    fn version_keys_have_the_real_shape() {
        let store = store();
        let version = store.version_id_at(Instant::ZERO.add(Duration::from_secs(86_400 + 3661)));
        assert_eq!(
            version.key(Collection::Words, Duration::from_secs(1)),
            "words/snapshot/timestamped/20250102_010101/"
        );
        assert_eq!(store.version_id_at(Instant(999_999_999)), VersionId(1));
    }

    /// Two writers read the same pointer and publish from the same base. With compare-and-swap the
    /// second pointer write fails; with a blind overwrite it succeeds and the first writer's changes
    /// vanish from the content the pointer names.
    #[test]
    fn cas_fails_after_another_write_and_blind_overwrite_loses_the_other_publish() {
        let a = ChromaId::word(1, 1, 1);
        let b = ChromaId::word(2, 1, 1);
        for compare_and_swap in [true, false] {
            let mut store = store();
            let read = store.read_pointer();
            let base = store.resolve(read.version).unwrap();
            let first = publish_ids(&mut store, at_secs(10), base, &[a], 7);
            let second = publish_ids(&mut store, at_secs(11), base, &[b], 8);
            let write = store
                .write_pointer_if_match(at_secs(12), first.version, read.etag)
                .unwrap();
            let moved = write.head_move.unwrap();
            assert_eq!(
                moved.changes.iter().map(|c| c.id).collect::<Vec<_>>(),
                vec![a]
            );
            if compare_and_swap {
                let failed = store.write_pointer_if_match(at_secs(13), second.version, read.etag);
                assert_eq!(
                    failed,
                    Err(PreconditionFailed {
                        current: store.read_pointer()
                    })
                );
                assert_eq!(store.head_get(a).unwrap().merchant, 7);
                assert_eq!(store.counters().pointer_precondition_failures, 1);
            } else {
                let write = store.write_pointer(at_secs(13), second.version);
                let moved = write.head_move.unwrap();
                assert_eq!(moved.changes.len(), 2, "a undone, b done");
                assert_eq!(store.head_get(a), None, "the first writer's change is lost");
                assert_eq!(store.head_get(b).unwrap().merchant, 8);
                assert_eq!(store.counters().head_moves_across_branches, 1);
            }
        }
    }

    /// Two uploads in one tick share a version id; the prefix then holds the later one, so the
    /// pointer written by the first writer shows the second writer's content.
    #[test]
    fn version_id_reuse_within_one_tick() {
        let mut store = store();
        let a = ChromaId::word(1, 1, 1);
        let b = ChromaId::word(2, 1, 1);
        let first = publish_ids(&mut store, Instant(1_000), PublishId::EMPTY, &[a], 1);
        store.write_pointer(Instant(2_000), first.version);
        assert_eq!(store.head(), first.publish);
        let second = publish_ids(&mut store, Instant(3_000), PublishId::EMPTY, &[b], 2);
        assert_eq!(second.version, first.version);
        assert_eq!(second.replaced, Some(first.publish));
        assert_eq!(store.resolve(first.version), Ok(second.publish));
        let moved = second
            .head_move
            .expect("the pointer names the reused version");
        assert_eq!(moved.from, first.publish);
        assert_eq!(store.head_get(a), None);
        assert_eq!(store.counters().version_reuses, 1);
    }

    #[test]
    fn head_moves_across_branches_report_the_changed_ids() {
        let mut store = store();
        let [a, b, c, d] = [1, 2, 3, 4].map(|receipt| ChromaId::word(receipt, 1, 1));
        let root = publish_ids(&mut store, at_secs(1), PublishId::EMPTY, &[a, b], 1);
        store.write_pointer(at_secs(1), root.version);
        // Branch one: c added, a changed. Branch two: d added, b changed, a deleted.
        let one = publish_ids(&mut store, at_secs(2), root.publish, &[c, a], 5);
        let mut copy = store.checkout(root.publish);
        copy.upsert(&store, d, merchant(9), UpsertMode::Merge);
        copy.update(&store, b, merchant(9));
        assert!(copy.delete(&store, a));
        let two = store.publish(at_secs(3), copy);
        store.write_pointer(at_secs(4), one.version);
        let moved = store
            .write_pointer(at_secs(5), two.version)
            .head_move
            .unwrap();
        let field = |value| {
            Some(EntryFields {
                merchant: value,
                labels: LabelFields::default(),
            })
        };
        assert_eq!(
            moved.changes,
            vec![
                EntryChange {
                    id: a,
                    old: field(5),
                    new: None
                },
                EntryChange {
                    id: b,
                    old: field(1),
                    new: field(9)
                },
                EntryChange {
                    id: c,
                    old: field(5),
                    new: None
                },
                EntryChange {
                    id: d,
                    old: None,
                    new: field(9)
                },
            ]
        );
        assert_eq!(moved.entry_count, 2);
        assert_eq!(store.entry_count(one.publish), 3);
        // Reading a publish on another branch walks through the common ancestor.
        assert_eq!(store.get(one.publish, a), field(5));
        assert_eq!(store.get(root.publish, a), field(1));
    }

    #[test]
    fn pruning_versions_can_leave_the_pointer_dangling() {
        let mut store = store();
        let id = ChromaId::word(1, 1, 1);
        let old = publish_ids(&mut store, at_secs(1), PublishId::EMPTY, &[id], 1);
        store.write_pointer(at_secs(1), old.version);
        for second in 2..6 {
            publish_ids(
                &mut store,
                at_secs(second),
                old.publish,
                &[id],
                second as u32,
            );
        }
        let pruned = store.prune_versions(at_secs(7));
        assert_eq!(pruned, vec![VersionId::INITIAL, old.version]);
        assert_eq!(store.versions().len(), 4);
        assert_eq!(store.pointer_publish(), None);
        assert_eq!(store.resolve(old.version), Err(VersionMissing(old.version)));
        assert_eq!(
            store.head(),
            old.publish,
            "the materialised copy stays until the pointer moves"
        );
    }

    /// A cached copy of a version id that was reused afterwards is stale; a cache entry whose
    /// publish can no longer be read counts as not cached.
    #[test]
    fn file_cache_keeps_three_and_can_hold_a_stale_copy() {
        let mut store = store();
        let mut cache = FileCache::new(3);
        let id = ChromaId::word(1, 1, 1);
        let first = publish_ids(&mut store, Instant(10), PublishId::EMPTY, &[id], 1);
        assert!(cache.put(&store, Instant(10), first.version, first.publish));
        let second = publish_ids(&mut store, Instant(20), PublishId::EMPTY, &[id], 2);
        assert_eq!(second.version, first.version);
        assert_eq!(
            cache.get(&store, first.version),
            Some(first.publish),
            "stale copy"
        );
        assert_ne!(store.resolve(first.version), Ok(first.publish));
        for second in 1..=3 {
            let outcome = publish_ids(&mut store, at_secs(second), first.publish, &[id], 3);
            cache.put(&store, at_secs(second), outcome.version, outcome.publish);
        }
        assert_eq!(cache.entries().len(), 3);
        assert_eq!(
            cache.get(&store, first.version),
            None,
            "pruned oldest first"
        );
        cache.clear(&store);
        assert!(cache.entries().is_empty());
    }

    /// A naive model of the bucket: every publish's full content.
    struct Reference {
        contents: Vec<BTreeMap<ChromaId, EntryFields>>,
    }

    fn random_publish(
        store: &mut SnapshotStore,
        reference: &mut Reference,
        stream: &mut Stream,
        now: Instant,
        base: PublishId,
    ) -> PublishOutcome {
        let mut copy = store.checkout(base);
        let mut content = reference.contents[base.0 as usize].clone();
        for _ in 0..1 + index_below(stream, 6) {
            let id = ChromaId::word(
                index_below(stream, 5) as u32,
                1,
                1 + index_below(stream, 4) as u32,
            );
            let value = 1 + index_below(stream, 3) as u32;
            if unit_interval(stream) < 0.2 {
                copy.delete(store, id);
                content.remove(&id);
            } else {
                copy.upsert(store, id, merchant(value), UpsertMode::Merge);
                content.insert(
                    id,
                    EntryFields {
                        merchant: value,
                        labels: LabelFields::default(),
                    },
                );
            }
        }
        let outcome = store.publish(now, copy);
        assert_eq!(outcome.publish.0 as usize, reference.contents.len());
        assert_eq!(outcome.entry_count, content.len() as u64);
        reference.contents.push(content);
        outcome
    }

    fn check_readable(store: &SnapshotStore, reference: &Reference, publish: PublishId) {
        // The head read in ascending order answers as the head read id by id, asked ids present
        // or not.
        for receipt in 0..6 {
            let mut head = store.head_receipt(receipt);
            for word in 1..=5 {
                let id = ChromaId::word(receipt, 1, word);
                assert_eq!(head.get(id), store.head_get(id), "head {id:?}");
            }
        }
        if !store.is_readable(publish) {
            return;
        }
        let content = &reference.contents[publish.0 as usize];
        let reader = store.reader(publish);
        for receipt in 0..5 {
            for word in 1..=4 {
                let id = ChromaId::word(receipt, 1, word);
                let expected = content.get(&id).copied();
                assert_eq!(store.get(publish, id), expected, "{publish:?} {id:?}");
                assert_eq!(reader.get(id), expected, "reader {publish:?} {id:?}");
            }
        }
    }

    /// Ids whose fields differ between two publishes of the naive model, ascending.
    fn differing_ids(reference: &Reference, from: PublishId, to: PublishId) -> Vec<ChromaId> {
        let old = &reference.contents[from.0 as usize];
        let new = &reference.contents[to.0 as usize];
        let ids: BTreeSet<ChromaId> = old.keys().chain(new.keys()).copied().collect();
        ids.into_iter()
            .filter(|id| old.get(id) != new.get(id))
            .collect()
    }

    /// Random publishes from random (often stale) bases, pointer moves by CAS and blind writes, and
    /// a small delta window: every readable publish reads as the naive model says, head moves report
    /// exactly the differences, referenced publishes stay readable, and the bound holds.
    #[test]
    fn matches_a_naive_model_under_random_branching_and_pruning() {
        let params = SnapshotParams {
            deltas_window: 8,
            deltas_max: 64,
            ..params()
        };
        let mut store = SnapshotStore::new(Collection::Words, params);
        let mut reference = Reference {
            contents: vec![BTreeMap::new()],
        };
        let mut stream = Streams::new(11).stream("object-store-test");
        let mut held: Vec<WorkingCopy> = Vec::new();
        let mut now = Instant::ZERO;
        for _ in 0..600 {
            now = now.add(Duration::from_millis(400));
            let pointer = store.read_pointer();
            let mut base = store.pointer_publish().unwrap_or(store.head());
            if unit_interval(&mut stream) < 0.3 {
                // A stale base, as a writer that read the pointer a while ago has.
                let back = 1 + index_below(&mut stream, 6);
                let stale = PublishId(store.publish_count().saturating_sub(back) as u32);
                if store.is_readable(stale) {
                    base = stale;
                }
            }
            let outcome = random_publish(&mut store, &mut reference, &mut stream, now, base);
            let before = store.head();
            let write = if unit_interval(&mut stream) < 0.5 {
                store
                    .write_pointer_if_match(now, outcome.version, pointer.etag)
                    .ok()
            } else {
                Some(store.write_pointer(now, outcome.version))
            };
            if let Some(head_move) = write.and_then(|w| w.head_move) {
                let expected = differing_ids(&reference, before, head_move.to);
                assert_eq!(
                    head_move.changes.iter().map(|c| c.id).collect::<Vec<_>>(),
                    expected
                );
            }
            store.prune_versions(now);
            // Hold a few working copies for a while, as slow invocations do.
            if unit_interval(&mut stream) < 0.1 && held.len() < 3 {
                let pick = PublishId(index_below(&mut stream, store.publish_count()) as u32);
                if store.is_readable(pick) {
                    held.push(store.checkout(pick));
                }
            } else if !held.is_empty() && unit_interval(&mut stream) < 0.1 {
                let copy = held.remove(0);
                store.discard(copy);
            }
            for copy in &held {
                assert!(
                    store.is_readable(copy.base()),
                    "a referenced publish stays readable"
                );
            }
            let recent = store.publish_count().saturating_sub(20);
            for publish in recent..store.publish_count() {
                check_readable(&store, &reference, PublishId(publish as u32));
            }
            assert!(store.deltas_kept() <= 64);
        }
        assert!(store.counters().deltas_dropped > 400, "pruning ran");
        assert!(
            store.counters().head_moves_across_branches > 10,
            "branches were crossed"
        );
        for copy in held {
            store.discard(copy);
        }
    }

    /// Bytes per id of the materialised head and of deltas, for the memory budget (a million
    /// receipts of 80 words: 80 M ids). Not a benchmark: it counts allocated capacity.
    #[test]
    fn bytes_per_id_fit_the_budget() {
        let mut store = store();
        let receipts = 500u32;
        let mut base = PublishId::EMPTY;
        for chunk in 0..receipts / 10 {
            let mut copy = store.checkout(base);
            for receipt in chunk * 10..chunk * 10 + 10 {
                for line in 1..=20 {
                    for word in 1..=4 {
                        let id = ChromaId::word(receipt, line, word);
                        copy.upsert(&store, id, merchant(receipt + 1), UpsertMode::Merge);
                    }
                }
                // About 30 labelled words per receipt.
                for line in 1..=8 {
                    for word in 1..=4 {
                        let labels = LabelFields {
                            valid: 1,
                            invalid: 0,
                            other: 0,
                            detail: word,
                        };
                        let id = ChromaId::word(receipt, line, word);
                        copy.update(
                            &store,
                            id,
                            EntryPatch {
                                merchant: None,
                                labels: Some(labels),
                            },
                        );
                    }
                }
            }
            let outcome = store.publish(at_secs(u64::from(chunk)), copy);
            store.write_pointer(at_secs(u64::from(chunk)), outcome.version);
            base = outcome.publish;
        }
        let ids = u64::from(receipts) * 80;
        assert_eq!(store.entry_count(store.head()), ids);
        let head_bytes = store.materialised.heap_bytes() as f64 / ids as f64;
        // 4 bytes of id, 16 per labelled word (32 of 80), receipt headers: about 12 bytes per id,
        // so about 1 GiB for 80 M ids.
        assert!(head_bytes < 14.0, "{head_bytes} bytes per id in the head");
        assert_eq!(std::mem::size_of::<DeltaEntry>(), 48);
    }
}

#[cfg(test)]
mod working_copy_tests {
    //! The working copy's Chroma semantics over a real store.
    use super::*;
    use crate::services::collection::{EntryPatch, UpsertMode};

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
        assert!(
            copy.upsert(&store, id, record, UpsertMode::Replace)
                .is_some()
        );
        assert_eq!(
            copy.get(&store, id),
            Some(EntryFields {
                merchant: 4,
                labels: LabelFields::default()
            })
        );
        store.discard(copy);
        let mut copy = store.checkout(store.head());
        assert!(copy.upsert(&store, id, record, UpsertMode::Merge).is_some());
        assert_eq!(
            copy.get(&store, id),
            Some(EntryFields {
                merchant: 4,
                labels: labels(5)
            })
        );
        let fresh = ChromaId::word(2, 1, 2);
        assert!(
            copy.upsert(&store, fresh, record, UpsertMode::Merge)
                .is_none(),
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
