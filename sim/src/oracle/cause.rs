//! Why an anomaly happened: the causes the oracle can name, and the rules that pick one from the
//! history of the affected ids. A rule reads the history; it never asks a model what it did.
//!
//! Depends on the oracle's `Input` and `lineage`, and `pipeline::history`.

use super::index::HistoryIndex;
use super::lineage::Lineage;
use super::{Class, Input};
use crate::entities::{ChromaId, Collection, ReceiptIndex};
use crate::pipeline::history::HistoryEvent;
use serde::{Deserialize, Serialize};

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A label update reached the compaction before the word's embedding was merged, was dropped
    /// as "embedding not found", and nothing applied it later.
    LabelBeforeEmbedding,
    /// A new label (a stream INSERT) produced no message.
    LabelInsertNotForwarded,
    /// A delta merge (upsert) replaced label fields that were already applied: the history's
    /// `merge_replaced_labels` record names the id, after its last label update or removal.
    MergeOverwroteLabels,
    /// A label REMOVE deleted all label fields of a word that still has labels.
    RemoveClearedLabels,
    /// The message carrying the change went to the dead-letter queue.
    DeadLettered,
    /// The message carrying the change reached its queue's retention period and was deleted.
    ExpiredByRetention,
    /// The receipt's delta upload failed and the run went on without it.
    DeltaLost,
    /// The compaction's read or write for the change failed; the error was logged and the message
    /// counted as done.
    UpdateFailed,
    /// A newer visible version was built on a base without this id's change (a concurrent
    /// publish, a blind pointer overwrite, or a lease that expired under a running holder).
    StaleBase,
    /// An upload reused the version id the pointer names and replaced its content.
    VersionIdReused,
    /// The pointer was moved to an older version.
    PointerWentBack,
    /// A merchant update found none of the receipt's ids in the snapshot (its embeddings were not
    /// merged yet) and was dropped.
    MetadataBeforeEmbedding,
    /// A delta merge (or a re-merge of a redelivered run) wrote the merchant the receipt had at
    /// embedding time over a newer one.
    MergeOverwroteMetadata,
    /// A metadata change never reached the snapshot.
    MetadataNotForwarded,
    /// The trial stopped at its horizon with the change still under way.
    InFlightAtHorizon,
    /// None of the rules matched; the excerpt shows what happened.
    Unexplained,
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Cause::LabelBeforeEmbedding => "label_before_embedding",
            Cause::LabelInsertNotForwarded => "label_insert_not_forwarded",
            Cause::MergeOverwroteLabels => "merge_overwrote_labels",
            Cause::RemoveClearedLabels => "remove_cleared_labels",
            Cause::DeadLettered => "dead_lettered",
            Cause::ExpiredByRetention => "expired_by_retention",
            Cause::DeltaLost => "delta_lost",
            Cause::UpdateFailed => "update_failed",
            Cause::StaleBase => "stale_base",
            Cause::VersionIdReused => "version_id_reused",
            Cause::PointerWentBack => "pointer_went_back",
            Cause::MetadataBeforeEmbedding => "metadata_before_embedding",
            Cause::MergeOverwroteMetadata => "merge_overwrote_metadata",
            Cause::MetadataNotForwarded => "metadata_not_forwarded",
            Cause::InFlightAtHorizon => "in_flight_at_horizon",
            Cause::Unexplained => "unexplained",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Cause::LabelBeforeEmbedding => {
                "label applied before its embedding was merged (dropped as \"embedding not found\")"
            }
            Cause::LabelInsertNotForwarded => {
                "label INSERT never forwarded by the stream processor"
            }
            Cause::MergeOverwroteLabels => "delta merge overwrote label fields already applied",
            Cause::RemoveClearedLabels => "label REMOVE cleared the word's remaining labels",
            Cause::DeadLettered => "message dead-lettered after the receive limit",
            Cause::ExpiredByRetention => "message deleted at the queue's retention period",
            Cause::DeltaLost => "delta upload failed and was ignored",
            Cause::UpdateFailed => "the compaction's update failed and was logged",
            Cause::StaleBase => "a later version was built on a base without this change",
            Cause::VersionIdReused => "an upload reused the pointer's version id",
            Cause::PointerWentBack => "pointer moved to an older version",
            Cause::MetadataBeforeEmbedding => {
                "merchant update applied before the receipt's embeddings were merged (dropped)"
            }
            Cause::MergeOverwroteMetadata => "delta merge wrote an older merchant over a newer one",
            Cause::MetadataNotForwarded => "metadata change never reached the snapshot",
            Cause::InFlightAtHorizon => "still in flight when the trial reached its horizon",
            Cause::Unexplained => "no rule matched; see the excerpt",
        }
    }
}

/// The most kinds of history event `Evidence` tells apart.
const EVENTS_MAX: usize = 64;

/// What the history says about one id, gathered in one pass over the records that touched it: for
/// each event, whether any record of it touched the id (naming it, or its receipt naming no ids),
/// and the position of the last record of it naming the id.
struct Evidence {
    /// Bit `event as u32`: some record of the event touched the id.
    any: u64,
    /// Per event, one past the position of the last record of it naming the id; 0 for none.
    last_naming: [usize; EVENTS_MAX],
}

/// The events of the records about one receipt that name no id: they touch every id of the
/// receipt alike and name none, so they are gathered once per receipt, not once per finding.
#[derive(Default)]
pub struct ReceiptEvents {
    receipt: Option<ReceiptIndex>,
    any: u64,
}

impl ReceiptEvents {
    /// Bit `event as u32`: a record of the event about `receipt` names no id.
    fn of(&mut self, index: &HistoryIndex<'_>, receipt: ReceiptIndex) -> u64 {
        if self.receipt != Some(receipt) {
            self.receipt = Some(receipt);
            self.any = index
                .of_receipt_without_ids(receipt)
                .fold(0, |any, record| any | event_bit(record.event));
        }
        self.any
    }
}

fn event_bit(event: HistoryEvent) -> u64 {
    let event = event as usize;
    assert!(event < EVENTS_MAX, "history events fit a 64-bit set");
    1 << event
}

impl Evidence {
    /// What the records that touched the id show: those naming it, and those about its receipt
    /// naming none (`receipt_events`), which name nothing and so only count as present.
    fn gather(
        index: &HistoryIndex<'_>,
        id: ChromaId,
        receipt_events: &mut ReceiptEvents,
    ) -> Evidence {
        let mut evidence = Evidence {
            any: receipt_events.of(index, id.receipt()),
            last_naming: [0; EVENTS_MAX],
        };
        for (position, record) in index.naming(id) {
            evidence.any |= event_bit(record.event);
            evidence.last_naming[record.event as usize] = position + 1;
        }
        evidence
    }

    fn any(&self, event: HistoryEvent) -> bool {
        self.any & (1 << event as u32) != 0
    }

    /// Whether a merge overwrote the id's applied labels after their last update or removal:
    /// then that is why they differ, whatever other message of the receipt was lost.
    fn merge_overwrote_labels(&self) -> bool {
        let Some(replaced) = self.last_naming(HistoryEvent::MergeReplacedLabels) else {
            return false;
        };
        [HistoryEvent::LabelsUpdated, HistoryEvent::LabelsDeleted]
            .iter()
            .all(|event| self.last_naming(*event).is_none_or(|at| at < replaced))
    }

    /// The position in the history of the last record of the event naming the id.
    fn last_naming(&self, event: HistoryEvent) -> Option<usize> {
        self.last_naming[event as usize].checked_sub(1)
    }
}

/// Picks the cause of a per-id finding. The rules go from the most specific evidence to the least.
pub fn explain(
    input: &Input<'_>,
    index: &HistoryIndex<'_>,
    lineage: &Lineage,
    class: Class,
    collection: Collection,
    id: ChromaId,
    receipt_events: &mut ReceiptEvents,
) -> Cause {
    if let Some(loss) = lineage.loss(collection, id) {
        return loss.cause;
    }
    let evidence = Evidence::gather(index, id, receipt_events);
    let any = |event: HistoryEvent| evidence.any(event);
    // What last wrote a word's label fields decides before any dead letter of the receipt.
    if class == Class::L && evidence.merge_overwrote_labels() {
        return Cause::MergeOverwroteLabels;
    }
    if any(HistoryEvent::DeadLettered) {
        return Cause::DeadLettered;
    }
    if any(HistoryEvent::ExpiredByRetention) {
        return Cause::ExpiredByRetention;
    }
    let by_class = match class {
        Class::E => any(HistoryEvent::DeltaLost).then_some(Cause::DeltaLost),
        Class::L => label_cause(input, &evidence, id),
        Class::M => metadata_cause(input, index, &evidence, id),
        Class::U | Class::P => None,
    };
    if let Some(cause) = by_class {
        return cause;
    }
    if !input.quiescent {
        return Cause::InFlightAtHorizon;
    }
    Cause::Unexplained
}

/// The cause of a label finding that the word's own history shows, if any.
fn label_cause(input: &Input<'_>, evidence: &Evidence, id: ChromaId) -> Option<Cause> {
    let last_naming = |event: HistoryEvent| evidence.last_naming(event);
    let last_label_apply = last_naming(HistoryEvent::LabelsUpdated);
    if let Some(removal) = last_naming(HistoryEvent::LabelsDeleted)
        && last_label_apply.is_none_or(|apply| removal > apply)
        && input.table.has_label_items(id)
    {
        return Some(Cause::RemoveClearedLabels);
    }
    if let Some(failed) = last_naming(HistoryEvent::UpdateFailed)
        && last_label_apply.is_none_or(|apply| failed > apply)
    {
        return Some(Cause::UpdateFailed);
    }
    if last_naming(HistoryEvent::EmbeddingNotFound).is_some() {
        return Some(Cause::LabelBeforeEmbedding);
    }
    let label_written = last_naming(HistoryEvent::TableWrite).is_some();
    let label_sent = last_naming(HistoryEvent::MessagesSent).is_some();
    (label_written && !label_sent && input.quiescent).then_some(Cause::LabelInsertNotForwarded)
}

/// The cause of a metadata finding that the receipt's history shows, if any.
fn metadata_cause(
    input: &Input<'_>,
    index: &HistoryIndex<'_>,
    evidence: &Evidence,
    id: ChromaId,
) -> Option<Cause> {
    let last_update = evidence.last_naming(HistoryEvent::MerchantUpdated);
    let last_merge = evidence.last_naming(HistoryEvent::DeltaMerged);
    if let (Some(update), Some(merge)) = (last_update, last_merge)
        && merge > update
    {
        return Some(Cause::MergeOverwroteMetadata);
    }
    let update_missed = index
        .of_receipt(id.receipt())
        .any(|r| r.event == HistoryEvent::MerchantUpdated && !r.ids.contains(&id));
    if last_update.is_none() && update_missed {
        return Some(Cause::MetadataBeforeEmbedding);
    }
    if last_update.is_none() && evidence.any(HistoryEvent::UpdateFailed) {
        return Some(Cause::UpdateFailed);
    }
    input.quiescent.then_some(Cause::MetadataNotForwarded)
}
