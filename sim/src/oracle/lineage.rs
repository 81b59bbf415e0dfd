//! Replays the publish log of each collection into the sequence of versions a reader of the pointer
//! saw, and finds what each step lost (class U) and where the pointer misbehaved (class P).
//!
//! A reader sees the publish most recently uploaded under the version id the pointer names: it
//! changes when the pointer is written, and when an upload reuses the pointer's version id. A step
//! from publish `a` to publish `b` loses, unless `a` is an ancestor of `b`, every id written on
//! `a`'s side of their common ancestor and not written again on `b`'s side. Only bases and written
//! ids are used, so no snapshot is copied.
//!
//! Depends on `pipeline::history` and `entities`.

use super::{ANOMALY_IDS_MAX, Anomaly, Cause, Class};
use crate::entities::{ChromaId, Collection, ReceiptIndex};
use crate::pipeline::history::{History, PointerOutcome, PublishRecord};
use crate::time::Instant;
use std::collections::BTreeMap;

/// How an id came to be lost.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    pub at: Instant,
    pub from: u64,
    pub to: u64,
    pub cause: Cause,
}

/// A pointer misbehaviour.
#[derive(Clone, Debug)]
struct PointerIssue {
    collection: Collection,
    cause: Cause,
    ids: Vec<ChromaId>,
    detail: String,
}

/// What the replay found, for both collections.
#[derive(Default)]
pub struct Lineage {
    /// Ids lost at some step, the first loss of each, per collection.
    losses: [BTreeMap<ChromaId, Loss>; 2],
    pointer_issues: Vec<PointerIssue>,
}

impl Lineage {
    pub fn loss(&self, collection: Collection, id: ChromaId) -> Option<&Loss> {
        self.losses[collection.index()].get(&id)
    }

    /// U anomalies (one per collection, receipt and cause) and P anomalies.
    pub fn anomalies(&self) -> Vec<Anomaly> {
        let mut anomalies = Vec::new();
        for collection in Collection::ALL {
            let mut groups: BTreeMap<(ReceiptIndex, Cause), Vec<(ChromaId, Loss)>> =
                BTreeMap::new();
            for (id, loss) in &self.losses[collection.index()] {
                groups
                    .entry((id.receipt(), loss.cause))
                    .or_default()
                    .push((*id, *loss));
            }
            for ((receipt, cause), ids) in groups {
                let (_, first) = ids[0];
                anomalies.push(Anomaly {
                    class: Class::U,
                    cause,
                    collection: Some(collection),
                    receipt: Some(receipt),
                    id_count: ids.len(),
                    ids: ids
                        .iter()
                        .take(ANOMALY_IDS_MAX)
                        .map(|(id, _)| *id)
                        .collect(),
                    expected: format!(
                        "publish {} keeps what publish {} held",
                        first.to, first.from
                    ),
                    found: format!("lost at {}", first.at),
                    excerpt: Vec::new(),
                });
            }
        }
        for issue in &self.pointer_issues {
            let mut receipts: Vec<ReceiptIndex> = issue.ids.iter().map(|id| id.receipt()).collect();
            receipts.dedup();
            let receipt_groups: Vec<Option<ReceiptIndex>> = if receipts.is_empty() {
                vec![None]
            } else {
                receipts.into_iter().map(Some).collect()
            };
            for receipt in receipt_groups {
                let ids: Vec<ChromaId> = issue
                    .ids
                    .iter()
                    .copied()
                    .filter(|id| receipt.is_none_or(|r| id.receipt() == r))
                    .collect();
                anomalies.push(Anomaly {
                    class: Class::P,
                    cause: issue.cause,
                    collection: Some(issue.collection),
                    receipt,
                    id_count: ids.len(),
                    ids: ids.into_iter().take(ANOMALY_IDS_MAX).collect(),
                    expected: "a new version id per publish, pointer moving forward".to_string(),
                    found: issue.detail.clone(),
                    excerpt: Vec::new(),
                });
            }
        }
        anomalies
    }
}

/// One step of the replay: an upload, or a pointer write.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Upload,
    Promote,
}

pub fn replay(history: &History) -> Lineage {
    let mut lineage = Lineage::default();
    for collection in Collection::ALL {
        replay_collection(collection, history.publishes(collection), &mut lineage);
    }
    lineage
}

fn replay_collection(collection: Collection, log: &[PublishRecord], lineage: &mut Lineage) {
    let publishes = Publishes::new(log);
    let steps = replay_steps(log);
    // Publish 0, the empty snapshot, is visible under version 0 before anything happens.
    let mut pointer_version: u64 = 0;
    // The latest publish uploaded under each version id, as (version, publish) sorted by version
    // (version ids grow with time, so most uploads append).
    let mut latest_under: Vec<(u64, u64)> = Vec::with_capacity(log.len() + 1);
    latest_under.push((0, 0));
    let find = |latest_under: &[(u64, u64)], version: u64| {
        latest_under.binary_search_by_key(&version, |(version, _)| *version)
    };
    let mut visible: u64 = 0;
    // Scratch sets of record_losses, kept across steps.
    let mut sides = (Vec::new(), Vec::new());
    for (at, step, publish) in steps {
        let record = publishes
            .get(publish)
            .expect("every step names a logged publish");
        let next_visible = match step {
            Step::Upload => {
                let position = find(&latest_under, record.version);
                if let Some(issue) = uploaded(&mut latest_under, position, &publishes, record, at) {
                    lineage.pointer_issues.push(issue);
                }
                if record.version == pointer_version {
                    publish
                } else {
                    visible
                }
            }
            Step::Promote => {
                if record.version < pointer_version {
                    lineage.pointer_issues.push(PointerIssue {
                        collection,
                        cause: Cause::PointerWentBack,
                        ids: record.ids.to_vec(),
                        detail: format!(
                            "pointer moved back from version {pointer_version} to {} at {at}",
                            record.version
                        ),
                    });
                }
                pointer_version = record.version;
                let position = find(&latest_under, record.version)
                    .expect("a promoted version was uploaded first");
                latest_under[position].1
            }
        };
        if next_visible != visible {
            let cause = if step == Step::Upload {
                Cause::VersionIdReused
            } else {
                Cause::StaleBase
            };
            record_losses(
                &publishes,
                (visible, next_visible),
                at,
                cause,
                &mut sides,
                &mut lineage.losses[collection.index()],
            );
            visible = next_visible;
        }
    }
}

/// The uploads and promotions of a collection's publish log, in time order.
fn replay_steps(log: &[PublishRecord]) -> Vec<(Instant, Step, u64)> {
    let mut steps: Vec<(Instant, Step, u64)> = Vec::with_capacity(log.len() * 2);
    for record in log {
        steps.push((record.at, Step::Upload, record.publish));
        if let (PointerOutcome::Promoted, Some(at)) = (record.pointer, record.promoted_at) {
            steps.push((at, Step::Promote, record.publish));
        }
    }
    steps.sort_unstable();
    steps
}

/// An upload lands under its version id (`position`: where the version is, or would go, in
/// `latest_under`); one that replaces another publish's upload under the same id is an issue.
fn uploaded(
    latest_under: &mut Vec<(u64, u64)>,
    position: Result<usize, usize>,
    publishes: &Publishes<'_>,
    record: &PublishRecord,
    at: Instant,
) -> Option<PointerIssue> {
    let publish = record.publish;
    let replaced = match position {
        Ok(position) => std::mem::replace(&mut latest_under[position].1, publish),
        Err(position) => {
            latest_under.insert(position, (record.version, publish));
            return None;
        }
    };
    if replaced == publish {
        return None;
    }
    let ids = publishes
        .get(replaced)
        .map(|r| r.ids.to_vec())
        .unwrap_or_default();
    Some(PointerIssue {
        collection: record.collection,
        cause: Cause::VersionIdReused,
        ids,
        detail: format!(
            "publish {publish} reused version id {} of publish {replaced} at {at}",
            record.version
        ),
    })
}

/// A collection's publish log, looked up by publish number.
struct Publishes<'a> {
    /// Ascending by publish number.
    log: &'a [PublishRecord],
}

impl<'a> Publishes<'a> {
    fn new(log: &'a [PublishRecord]) -> Publishes<'a> {
        assert!(
            log.windows(2).all(|pair| pair[0].publish < pair[1].publish),
            "the publish log is in publish order"
        );
        Publishes { log }
    }

    fn get(&self, publish: u64) -> Option<&'a PublishRecord> {
        let position = self
            .log
            .binary_search_by_key(&publish, |record| record.publish)
            .ok()?;
        Some(&self.log[position])
    }

    /// The publish `publish` was built on (0 for the empty snapshot and unknown publishes).
    fn base_of(&self, publish: u64) -> u64 {
        self.get(publish).map_or(0, |r| r.base)
    }
}

/// Records the ids a step from publish `from` to publish `to` loses. `sides` is scratch space.
fn record_losses(
    publishes: &Publishes<'_>,
    (from, to): (u64, u64),
    at: Instant,
    cause: Cause,
    sides: &mut (Vec<ChromaId>, Vec<ChromaId>),
    losses: &mut BTreeMap<ChromaId, Loss>,
) {
    // Walk both chains down to the common ancestor. A base always has a smaller number than the
    // publish built on it, so stepping the larger one down terminates; bound it anyway.
    let (from_side, to_side) = sides;
    from_side.clear();
    to_side.clear();
    let (mut a, mut b) = (from, to);
    let steps_max = publishes.log.len() * 2 + 2;
    for _ in 0..steps_max {
        if a == b {
            break;
        }
        if a > b {
            if let Some(record) = publishes.get(a) {
                from_side.extend(record.ids.iter());
            }
            let base = publishes.base_of(a);
            assert!(
                base < a || a == 0,
                "publish {a} is built on a later publish {base}"
            );
            a = base;
        } else {
            if let Some(record) = publishes.get(b) {
                to_side.extend(record.ids.iter());
            }
            let base = publishes.base_of(b);
            assert!(
                base < b || b == 0,
                "publish {b} is built on a later publish {base}"
            );
            b = base;
        }
    }
    assert_eq!(a, b, "publish chains of {from} and {to} never met");
    from_side.sort_unstable();
    from_side.dedup();
    to_side.sort_unstable();
    for id in from_side.iter() {
        if to_side.binary_search(id).is_err() {
            losses.entry(*id).or_insert(Loss {
                at,
                from,
                to,
                cause,
            });
        }
    }
}
