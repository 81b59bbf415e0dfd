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
use std::collections::{BTreeMap, BTreeSet};

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
    let by_publish: BTreeMap<u64, &PublishRecord> = log.iter().map(|r| (r.publish, r)).collect();
    let mut steps: Vec<(Instant, Step, u64)> = Vec::with_capacity(log.len() * 2);
    for record in log {
        steps.push((record.at, Step::Upload, record.publish));
        if let (PointerOutcome::Promoted, Some(at)) = (record.pointer, record.promoted_at) {
            steps.push((at, Step::Promote, record.publish));
        }
    }
    steps.sort_unstable();
    // Publish 0, the empty snapshot, is visible under version 0 before anything happens.
    let mut pointer_version: u64 = 0;
    let mut latest_under: BTreeMap<u64, u64> = BTreeMap::from([(0, 0)]);
    let mut visible: u64 = 0;
    for (at, step, publish) in steps {
        let record = by_publish[&publish];
        let next_visible = match step {
            Step::Upload => {
                if let Some(replaced) = latest_under.insert(record.version, publish)
                    && replaced != publish
                {
                    let ids = by_publish
                        .get(&replaced)
                        .map(|r| r.ids.to_vec())
                        .unwrap_or_default();
                    lineage.pointer_issues.push(PointerIssue {
                        collection,
                        cause: Cause::VersionIdReused,
                        ids,
                        detail: format!(
                            "publish {publish} reused version id {} of publish {replaced} at {at}",
                            record.version
                        ),
                    });
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
                latest_under[&record.version]
            }
        };
        if next_visible != visible {
            let cause = if step == Step::Upload {
                Cause::VersionIdReused
            } else {
                Cause::StaleBase
            };
            record_losses(
                &by_publish,
                visible,
                next_visible,
                at,
                cause,
                &mut lineage.losses[collection.index()],
            );
            visible = next_visible;
        }
    }
}

/// The publish `publish` was built on (0 for the empty snapshot and unknown publishes).
fn base_of(by_publish: &BTreeMap<u64, &PublishRecord>, publish: u64) -> u64 {
    by_publish.get(&publish).map_or(0, |r| r.base)
}

/// Records the ids a step from `from` to `to` loses.
fn record_losses(
    by_publish: &BTreeMap<u64, &PublishRecord>,
    from: u64,
    to: u64,
    at: Instant,
    cause: Cause,
    losses: &mut BTreeMap<ChromaId, Loss>,
) {
    // Walk both chains down to the common ancestor. A base always has a smaller number than the
    // publish built on it, so stepping the larger one down terminates; bound it anyway.
    let (mut a, mut b) = (from, to);
    let mut from_side: BTreeSet<ChromaId> = BTreeSet::new();
    let mut to_side: BTreeSet<ChromaId> = BTreeSet::new();
    let steps_max = by_publish.len() * 2 + 2;
    for _ in 0..steps_max {
        if a == b {
            break;
        }
        if a > b {
            if let Some(record) = by_publish.get(&a) {
                from_side.extend(record.ids.iter());
            }
            let base = base_of(by_publish, a);
            assert!(
                base < a || a == 0,
                "publish {a} is built on a later publish {base}"
            );
            a = base;
        } else {
            if let Some(record) = by_publish.get(&b) {
                to_side.extend(record.ids.iter());
            }
            let base = base_of(by_publish, b);
            assert!(
                base < b || b == 0,
                "publish {b} is built on a later publish {base}"
            );
            b = base;
        }
    }
    assert_eq!(a, b, "publish chains of {from} and {to} never met");
    for id in from_side.difference(&to_side) {
        losses.entry(*id).or_insert(Loss {
            at,
            from,
            to,
            cause,
        });
    }
}
