//! Synthetic receipts and their arrival at the upload queue.
//!
//! A `Receipt` is everything the pipeline needs to know in advance about one receipt: which image
//! it is on, when it arrives, its lines and words (and which words are noise), its merchant and the
//! merchant LangGraph corrects it to, and the labels LangGraph writes (and which of those it later
//! changes). Receipts are serde so a trial can replay a file of them instead of generating.
//!
//! Arrivals are image uploads: every receipt of an image arrives at the image's time. Three
//! processes: Poisson at a rate, bursts ("500 receipts uploaded at once"), and a trace of times.
//! Every receipt's shape is drawn from its own stream (`receipt-shape`, index), so the receipts of
//! two trials with one seed are equal whatever else differs. Depends on `entities`, `time`,
//! `random` and `distribution`; the pipeline's configuration
//! embeds `WorkloadConfig` as its `[workload]` table (the dependency runs that way only).

use crate::distribution::NumberDist;
use crate::entities::{LABELS, LINES_PER_RECEIPT_MAX, LabelItem, ReceiptIndex, ValidationStatus};
use crate::random::{Stream, Streams};
use crate::time::{Duration, Instant};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Where the trial's receipts come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadSource {
    /// Generated from the seed and the shapes below.
    Generate,
    /// Replayed from a JSON Lines file of receipts (read by the caller, handed in as a slice).
    File(String),
}

/// The arrival process of receipts at the upload queue.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalProcess {
    /// Exponential gaps at `rate_per_hour`, plus the bursts.
    Poisson,
    /// Only the bursts.
    Bursts,
    /// The arrival times listed in `trace`, in order.
    Trace,
}

/// `receipts` receipts uploaded at once, at `at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    pub at: Duration,
    pub receipts: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadConfig {
    pub source: WorkloadSource,
    /// How many receipts the trial uploads (generated), including those of the bursts.
    pub receipts: u64,
    pub arrival: ArrivalProcess,
    /// Poisson rate; receipts not taken by bursts arrive at this rate from time zero.
    pub rate_per_hour: f64,
    pub bursts: Vec<Burst>,
    /// Arrival times for `arrival = "trace"`; receipts beyond its length are not generated.
    pub trace: Vec<Duration>,
    /// Receipts on one image (sampled per image, rounded, at least 1).
    pub receipts_per_image: NumberDist,
    pub lines_per_receipt: NumberDist,
    pub words_per_line: NumberDist,
    /// Share of a receipt's words that are noise (not embedded, never labelled), sampled per receipt.
    pub noise_word_share: NumberDist,
    /// Labels LangGraph gives one embedded word (sampled per word, rounded).
    pub labels_per_word: NumberDist,
    /// Share of a receipt's labels that LangGraph changes after proposing them, sampled per receipt.
    pub changed_label_share: NumberDist,
    /// Share of a receipt's labels that LangGraph removes after proposing them (consolidation: a
    /// stream REMOVE), sampled per receipt. The code at 54acc5869 deletes no label from LangGraph
    /// (`save_receipt_word_labels` in receipt_label/receipt_label/langchain/currency_validation.py
    /// only adds and updates), hence 0; the compactor's handling of a REMOVE
    /// (`apply_label_updates_in_memory` in
    /// infra/chromadb_compaction/lambdas/compaction/label_handler.py calls `remove_word_labels`,
    /// which clears every label field of the word) is what a share above 0 exercises.
    pub removed_label_share: NumberDist,
    /// Share of a receipt's labels that are not removed and existed before this run: written
    /// VALID with the OCR result, then changed by LangGraph (a stream MODIFY of an item older than
    /// the run; `save_receipt_word_labels` updates such items through
    /// `update_receipt_word_labels`), sampled per receipt. 0 by default: the share of a receipt's
    /// labels that exist before its first run is not known.
    pub older_label_share: NumberDist,
    /// Probability that LangGraph corrects a receipt's merchant, sampled per receipt.
    pub merchant_correction_share: NumberDist,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            source: WorkloadSource::Generate,
            receipts: 100,
            arrival: ArrivalProcess::Poisson,
            rate_per_hour: 60.0,
            bursts: Vec::new(),
            trace: Vec::new(),
            receipts_per_image: shape_dist("empirical(1, 1, 1, 2)"),
            lines_per_receipt: shape_dist("uniform(20, 40)"),
            words_per_line: shape_dist("uniform(1, 4)"),
            noise_word_share: shape_dist("uniform(0.05, 0.15)"),
            labels_per_word: shape_dist("empirical(0, 1)"),
            changed_label_share: shape_dist("uniform(0.1, 0.3)"),
            removed_label_share: shape_dist("0"),
            older_label_share: shape_dist("0"),
            merchant_correction_share: shape_dist("0.1"),
        }
    }
}

fn shape_dist(text: &str) -> NumberDist {
    NumberDist::parse(text).unwrap_or_else(|error| panic!("default `{text}`: {error}"))
}

/// The `proposed_by` value of a label LangGraph proposes, and of one it changes.
pub const PROPOSED_BY_LANGGRAPH: u8 = 1;
pub const PROPOSED_BY_VALIDATION: u8 = 2;
/// The `proposed_by` value of a label that existed before the receipt's run.
pub const PROPOSED_BY_EARLIER: u8 = 3;

/// A word by its 1-based line and word numbers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WordRef {
    pub line: u16,
    pub word: u16,
}

/// One label LangGraph writes for one word: first as a new PENDING item (or, if `older`, as a VALID
/// item written with the OCR result, before the run), then, if `change` is set, changed to that
/// status (with new reasoning) by a conditional put, or, if `removed`, deleted.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSpec {
    pub line: u16,
    pub word: u16,
    /// Index into `entities::LABELS`.
    pub label: u8,
    pub reasoning: u32,
    pub change: Option<ValidationStatus>,
    /// LangGraph deletes the item after proposing it (never together with `change`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub removed: bool,
    /// The item existed before the run (always together with `change`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub older: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl LabelSpec {
    pub fn word_ref(&self) -> WordRef {
        WordRef {
            line: self.line,
            word: self.word,
        }
    }
    /// The item first written (a stream INSERT): LangGraph's proposal, or the earlier item.
    pub fn proposed_item(&self) -> LabelItem {
        let (validation_status, proposed_by) = if self.older {
            (ValidationStatus::Valid, PROPOSED_BY_EARLIER)
        } else {
            (ValidationStatus::Pending, PROPOSED_BY_LANGGRAPH)
        };
        LabelItem {
            label: self.label,
            validation_status,
            reasoning: self.reasoning,
            proposed_by,
            consolidated_from: 0,
        }
    }
    /// The item the word ends with, or none if LangGraph removes it.
    pub fn final_item(&self) -> Option<LabelItem> {
        if self.removed {
            return None;
        }
        Some(self.changed_item().unwrap_or(self.proposed_item()))
    }
    /// The item after LangGraph's change (a stream MODIFY), if it changes the label.
    pub fn changed_item(&self) -> Option<LabelItem> {
        self.change.map(|status| LabelItem {
            label: self.label,
            validation_status: status,
            reasoning: self.reasoning.wrapping_add(1),
            proposed_by: PROPOSED_BY_VALIDATION,
            consolidated_from: 0,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Dense index in arrival order (0, 1, 2, ...).
    pub index: ReceiptIndex,
    pub image: u32,
    /// The receipt's number within its image, from 1.
    pub receipt_id: u32,
    /// Arrival at the upload queue, since the start of the trial.
    pub arrival: Duration,
    /// Words of each line; the receipt has `words_per_line.len()` lines.
    pub words_per_line: Vec<u8>,
    /// Words that are noise: never embedded, never labelled. Sorted.
    pub noise_words: Vec<WordRef>,
    /// Merchant value id written by merchant resolution (never 0).
    pub merchant: u32,
    /// The merchant LangGraph corrects the receipt to, if it does.
    pub merchant_correction: Option<u32>,
    /// Labels in (line, word, label) order, on embedded words only.
    pub labels: Vec<LabelSpec>,
}

impl Receipt {
    pub fn arrival_instant(&self) -> Instant {
        Instant::ZERO.add(self.arrival)
    }
    pub fn line_count(&self) -> u32 {
        self.words_per_line.len() as u32
    }
    pub fn is_noise(&self, word: WordRef) -> bool {
        self.noise_words.binary_search(&word).is_ok()
    }
    /// Every word, noise included, in (line, word) order.
    pub fn words(&self) -> impl Iterator<Item = WordRef> + '_ {
        self.words_per_line
            .iter()
            .enumerate()
            .flat_map(|(line, words)| {
                (1..=u16::from(*words)).map(move |word| WordRef {
                    line: line as u16 + 1,
                    word,
                })
            })
    }
    /// Every word with whether it is noise, in (line, word) order: one walk beside the noise
    /// words (sorted, distinct and all existing: `check`), not a search per word.
    pub fn words_with_noise(&self) -> impl Iterator<Item = (WordRef, bool)> + '_ {
        let mut noise = self.noise_words.iter().peekable();
        self.words()
            .map(move |word| (word, noise.next_if(|noisy| **noisy == word).is_some()))
    }
    /// Embedded words, in (line, word) order.
    pub fn embedded_words(&self) -> impl Iterator<Item = WordRef> + '_ {
        self.words_with_noise()
            .filter(|(_, is_noise)| !is_noise)
            .map(|(word, _)| word)
    }
    pub fn embedded_word_count(&self) -> u32 {
        let words: u32 = self
            .words_per_line
            .iter()
            .map(|words| u32::from(*words))
            .sum();
        words - self.noise_words.len() as u32
    }
    /// The merchant value the receipt ends with.
    pub fn final_merchant(&self) -> u32 {
        self.merchant_correction.unwrap_or(self.merchant)
    }

    /// Checks the receipt's own consistency (for replayed files).
    pub fn check(&self) -> Result<(), String> {
        let lines = self.words_per_line.len() as u32;
        if lines > LINES_PER_RECEIPT_MAX {
            return Err(format!(
                "receipt {}: {lines} lines, at most {LINES_PER_RECEIPT_MAX}",
                self.index
            ));
        }
        if self.merchant == 0 || self.merchant_correction == Some(0) {
            return Err(format!(
                "receipt {}: merchant value 0 is reserved for \"absent\"",
                self.index
            ));
        }
        if !self.noise_words.windows(2).all(|pair| pair[0] < pair[1]) {
            return Err(format!(
                "receipt {}: noise words are not sorted and distinct",
                self.index
            ));
        }
        let exists = |word: WordRef| {
            word.line >= 1
                && u32::from(word.line) <= lines
                && word.word >= 1
                && word.word <= u16::from(self.words_per_line[usize::from(word.line) - 1])
        };
        if let Some(word) = self.noise_words.iter().find(|word| !exists(**word)) {
            return Err(format!(
                "receipt {}: noise word {word:?} does not exist",
                self.index
            ));
        }
        let mut previous: Option<(WordRef, u8)> = None;
        for label in &self.labels {
            let word = label.word_ref();
            if !exists(word) || self.is_noise(word) || usize::from(label.label) >= LABELS.len() {
                return Err(format!(
                    "receipt {}: label {label:?} is on no embedded word",
                    self.index
                ));
            }
            if previous.is_some_and(|previous| previous >= (word, label.label)) {
                return Err(format!(
                    "receipt {}: labels are not sorted and distinct",
                    self.index
                ));
            }
            previous = Some((word, label.label));
            if (label.removed && label.change.is_some()) || (label.older && label.change.is_none())
            {
                return Err(format!(
                    "receipt {}: label {label:?}: a removed label has no change, an older one has one",
                    self.index
                ));
            }
        }
        Ok(())
    }
}

/// Checks a whole set of receipts: each consistent, indices dense, arrivals not decreasing.
pub fn check_receipts(receipts: &[Receipt]) -> Result<(), String> {
    for (position, receipt) in receipts.iter().enumerate() {
        if receipt.index as usize != position {
            return Err(format!(
                "receipt at position {position} has index {}",
                receipt.index
            ));
        }
        if position > 0 && receipts[position - 1].arrival > receipt.arrival {
            return Err(format!(
                "receipt {position} arrives before receipt {}",
                position - 1
            ));
        }
        receipt.check()?;
    }
    Ok(())
}

/// A uniform integer in `0..bound` (bound > 0).
pub fn below(stream: &mut Stream, bound: u64) -> u64 {
    assert!(bound > 0);
    ((u128::from(stream.next_u64()) * u128::from(bound)) >> 64) as u64
}

/// True with probability `share`.
pub fn chance(stream: &mut Stream, share: f64) -> bool {
    ((stream.next_u64() >> 11) as f64) / ((1u64 << 53) as f64) < share
}

/// An image upload: its time and how many receipts it holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Upload {
    at: Duration,
    receipts: u64,
}

/// The trial's receipts, generated from the seed and the workload configuration.
pub fn generate(seed: u64, config: &WorkloadConfig) -> Vec<Receipt> {
    let streams = Streams::new(seed);
    let uploads = uploads(&streams, config);
    let total: u64 = uploads.iter().map(|upload| upload.receipts).sum();
    assert!(total <= config.receipts);
    let mut receipts = Vec::with_capacity(total as usize);
    for (image, upload) in uploads.iter().enumerate() {
        for receipt_id in 1..=upload.receipts {
            let index = receipts.len() as ReceiptIndex;
            let shape = Shape {
                index,
                image: image as u32,
                receipt_id: receipt_id as u32,
                arrival: upload.at,
            };
            receipts.push(shape.generate(&streams, config));
        }
    }
    debug_assert!(check_receipts(&receipts).is_ok());
    receipts
}

/// Image uploads in time order (bursts before Poisson uploads at the same time).
fn uploads(streams: &Streams, config: &WorkloadConfig) -> Vec<Upload> {
    let mut sizes = streams.stream("image-size");
    let mut remaining = config.receipts;
    let mut next_size = |remaining: &mut u64| -> u64 {
        let size = config
            .receipts_per_image
            .sample_count(&mut sizes)
            .max(1)
            .min(*remaining);
        *remaining -= size;
        size
    };
    let mut uploads = Vec::new();
    for burst in &config.bursts {
        let mut burst_remaining = burst.receipts.min(remaining);
        remaining -= burst_remaining;
        while burst_remaining > 0 {
            let receipts = next_size(&mut burst_remaining);
            uploads.push(Upload {
                at: burst.at,
                receipts,
            });
        }
    }
    match config.arrival {
        ArrivalProcess::Bursts => {}
        ArrivalProcess::Poisson => {
            let mut gaps = streams.stream("arrival-gap");
            let mean_gap_s = 3600.0 / config.rate_per_hour;
            let mut at_s = 0.0f64;
            while remaining > 0 {
                let uniform = ((gaps.next_u64() >> 11) as f64 + 0.5) / ((1u64 << 53) as f64);
                at_s += -mean_gap_s * uniform.ln();
                let receipts = next_size(&mut remaining);
                uploads.push(Upload {
                    at: Duration::from_secs_f64(at_s),
                    receipts,
                });
            }
        }
        ArrivalProcess::Trace => {
            for at in &config.trace {
                if remaining == 0 {
                    break;
                }
                let receipts = next_size(&mut remaining);
                uploads.push(Upload { at: *at, receipts });
            }
        }
    }
    uploads.sort_by_key(|upload| upload.at);
    uploads
}

/// Where one receipt sits; its contents come from its own stream.
struct Shape {
    index: ReceiptIndex,
    image: u32,
    receipt_id: u32,
    arrival: Duration,
}

impl Shape {
    fn generate(&self, streams: &Streams, config: &WorkloadConfig) -> Receipt {
        let mut stream = streams.stream_indexed("receipt-shape", u64::from(self.index));
        let lines = config
            .lines_per_receipt
            .sample_count(&mut stream)
            .clamp(1, u64::from(LINES_PER_RECEIPT_MAX));
        let words_per_line: Vec<u8> = (0..lines)
            .map(|_| {
                config
                    .words_per_line
                    .sample_count(&mut stream)
                    .clamp(1, 255) as u8
            })
            .collect();
        let noise_share = config.noise_word_share.sample(&mut stream).clamp(0.0, 1.0);
        let mut noise_words = Vec::new();
        for (line, words) in words_per_line.iter().enumerate() {
            for word in 1..=u16::from(*words) {
                if chance(&mut stream, noise_share) {
                    noise_words.push(WordRef {
                        line: line as u16 + 1,
                        word,
                    });
                }
            }
        }
        let merchant = 1 + below(&mut stream, 5_000) as u32;
        let correction_share = config
            .merchant_correction_share
            .sample(&mut stream)
            .clamp(0.0, 1.0);
        let merchant_correction = chance(&mut stream, correction_share)
            .then(|| 1 + (merchant + below(&mut stream, 4_999) as u32) % 5_000);
        let mut receipt = Receipt {
            index: self.index,
            image: self.image,
            receipt_id: self.receipt_id,
            arrival: self.arrival,
            words_per_line,
            noise_words,
            merchant,
            merchant_correction,
            labels: Vec::new(),
        };
        receipt.labels = labels(&receipt, &mut stream, config);
        let mut fates = streams.stream_indexed("receipt-label-fate", u64::from(self.index));
        label_fates(&mut receipt.labels, &mut fates, config);
        receipt
    }
}

fn labels(receipt: &Receipt, stream: &mut Stream, config: &WorkloadConfig) -> Vec<LabelSpec> {
    let changed_share = config.changed_label_share.sample(stream).clamp(0.0, 1.0);
    let mut labels = Vec::new();
    for word in receipt.embedded_words() {
        let count = config
            .labels_per_word
            .sample_count(stream)
            .min(LABELS.len() as u64);
        let mut chosen: u16 = 0;
        while u64::from(chosen.count_ones()) < count {
            chosen |= 1 << below(stream, LABELS.len() as u64);
        }
        for label in 0..LABELS.len() as u8 {
            if chosen & (1 << label) == 0 {
                continue;
            }
            let reasoning = stream.next_u64() as u32;
            let change = chance(stream, changed_share).then(|| {
                if chance(stream, 0.8) {
                    ValidationStatus::Valid
                } else {
                    ValidationStatus::Invalid
                }
            });
            labels.push(LabelSpec {
                line: word.line,
                word: word.word,
                label,
                reasoning,
                change,
                removed: false,
                older: false,
            });
        }
    }
    labels
}

/// Draws which labels LangGraph removes and which existed before the run, from a stream of their
/// own (so the other draws do not move with these shares): each label is removed with the
/// receipt's removed share, else older with its older share. A removed label is not changed; an
/// older one always is (VALID 4 in 5, as a change).
fn label_fates(labels: &mut [LabelSpec], stream: &mut Stream, config: &WorkloadConfig) {
    let removed_share = config.removed_label_share.sample(stream).clamp(0.0, 1.0);
    let older_share = config.older_label_share.sample(stream).clamp(0.0, 1.0);
    for label in labels.iter_mut() {
        if chance(stream, removed_share) {
            label.removed = true;
            label.change = None;
        } else if chance(stream, older_share) {
            label.older = true;
            if label.change.is_none() {
                label.change = Some(if chance(stream, 0.8) {
                    ValidationStatus::Valid
                } else {
                    ValidationStatus::Invalid
                });
            }
        }
    }
}

/// The arrival instant of the last receipt, or zero.
pub fn last_arrival(receipts: &[Receipt]) -> Instant {
    receipts
        .last()
        .map_or(Instant::ZERO, Receipt::arrival_instant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(receipts: u64) -> WorkloadConfig {
        WorkloadConfig {
            receipts,
            ..WorkloadConfig::default()
        }
    }

    #[test]
    fn generation_is_seeded_and_consistent() {
        let a = generate(3, &config(200));
        assert_eq!(a.len(), 200);
        assert_eq!(a, generate(3, &config(200)));
        assert_ne!(a, generate(4, &config(200)));
        check_receipts(&a).unwrap();
        // Receipt shapes do not depend on how many receipts follow.
        assert_eq!(
            a[..50].iter().map(|r| &r.labels).collect::<Vec<_>>(),
            generate(3, &config(200))[..50]
                .iter()
                .map(|r| &r.labels)
                .collect::<Vec<_>>()
        );
        let labels: usize = a.iter().map(|r| r.labels.len()).sum();
        let words: u32 = a.iter().map(Receipt::embedded_word_count).sum();
        assert!(
            labels > 0 && (labels as f64) < words as f64,
            "{labels} labels on {words} words"
        );
        assert!(
            a.iter().any(|r| r.receipt_id == 2),
            "some image holds two receipts"
        );
        assert!(a.iter().any(|r| r.merchant_correction.is_some()));
        assert!(a.iter().flat_map(|r| &r.labels).any(|l| l.change.is_some()));
    }

    /// Removed and older labels are drawn at the configured shares (removed of all labels, older
    /// of those not removed), from their own stream: the labels' places and reasonings do not move.
    #[test]
    fn removed_and_older_labels_follow_their_shares() {
        let mut shares = config(400);
        shares.labels_per_word = crate::distribution::NumberDist::constant(2.0);
        shares.removed_label_share = crate::distribution::NumberDist::constant(0.2);
        shares.older_label_share = crate::distribution::NumberDist::constant(0.25);
        let drawn = generate(9, &shares);
        check_receipts(&drawn).unwrap();
        let labels: Vec<&LabelSpec> = drawn.iter().flat_map(|r| &r.labels).collect();
        let total = labels.len() as f64;
        let removed = labels.iter().filter(|l| l.removed).count() as f64;
        let kept = total - removed;
        let older = labels.iter().filter(|l| l.older).count() as f64;
        let sigma = |share: f64, n: f64| (share * (1.0 - share) / n).sqrt();
        assert!(total > 10_000.0, "{total} labels");
        assert!(
            (removed / total - 0.2).abs() < 4.0 * sigma(0.2, total),
            "{removed} of {total} removed"
        );
        assert!(
            (older / kept - 0.25).abs() < 4.0 * sigma(0.25, kept),
            "{older} of {kept} older"
        );
        assert!(labels.iter().all(|l| !(l.removed && l.older)));
        assert!(
            labels
                .iter()
                .filter(|l| l.removed)
                .all(|l| l.change.is_none())
        );
        assert!(
            labels
                .iter()
                .filter(|l| l.older)
                .all(|l| l.change.is_some())
        );
        // A word with a label removed and another changed, in both orders.
        let orders = |first_removed: bool| {
            drawn.iter().flat_map(|r| r.labels.windows(2)).any(|pair| {
                pair[0].word_ref() == pair[1].word_ref()
                    && pair[0].removed == first_removed
                    && pair[1].removed != first_removed
                    && pair[usize::from(first_removed)].change.is_some()
            })
        };
        assert!(orders(true) && orders(false));
        // The default shares are 0 and the other draws do not depend on these.
        let default = generate(
            9,
            &WorkloadConfig {
                removed_label_share: WorkloadConfig::default().removed_label_share,
                older_label_share: WorkloadConfig::default().older_label_share,
                ..shares.clone()
            },
        );
        assert!(
            default
                .iter()
                .flat_map(|r| &r.labels)
                .all(|l| !l.removed && !l.older)
        );
        let place = |l: &LabelSpec| (l.word_ref(), l.label, l.reasoning);
        assert!(
            default
                .iter()
                .flat_map(|r| &r.labels)
                .map(place)
                .eq(labels.iter().map(|l| place(l)))
        );
    }

    #[test]
    fn poisson_rate_and_bursts() {
        let mut poisson = config(4000);
        poisson.receipts_per_image = crate::distribution::NumberDist::constant(1.0);
        poisson.rate_per_hour = 3600.0;
        let receipts = generate(1, &poisson);
        let span_s = last_arrival(&receipts).as_secs_f64();
        assert!(
            (span_s - 4000.0).abs() < 4.0 * 4000f64.sqrt(),
            "4000 arrivals at 1/s took {span_s}s"
        );
        let mut bursts = config(700);
        bursts.arrival = ArrivalProcess::Bursts;
        bursts.bursts = vec![
            Burst {
                at: Duration::from_secs(60),
                receipts: 500,
            },
            Burst {
                at: Duration::ZERO,
                receipts: 200,
            },
        ];
        let receipts = generate(1, &bursts);
        assert_eq!(receipts.len(), 700);
        assert_eq!(
            receipts
                .iter()
                .filter(|r| r.arrival == Duration::from_secs(60))
                .count(),
            500
        );
        check_receipts(&receipts).unwrap();
    }

    #[test]
    fn trace_replays_times() {
        let mut trace = config(3);
        trace.arrival = ArrivalProcess::Trace;
        trace.receipts_per_image = crate::distribution::NumberDist::constant(1.0);
        trace.trace = vec![
            Duration::from_secs(1),
            Duration::from_secs(5),
            Duration::from_secs(9),
            Duration::from_secs(20),
        ];
        let arrivals: Vec<Duration> = generate(1, &trace).iter().map(|r| r.arrival).collect();
        assert_eq!(
            arrivals,
            vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(9)
            ]
        );
    }

    #[test]
    fn receipts_round_trip_through_serde() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct File {
            receipts: Vec<Receipt>,
        }
        let file = File {
            receipts: generate(5, &config(3)),
        };
        let text = toml::to_string(&file).unwrap();
        assert_eq!(toml::from_str::<File>(&text).unwrap(), file);
        assert!(
            text.contains("arrival = \""),
            "durations are written readably: {text}"
        );
    }

    /// The walk beside the noise words flags exactly the words a search finds noisy.
    #[test]
    fn words_with_noise_flag_the_noise_words() {
        let mut noisy = 0;
        for receipt in generate(7, &config(40)) {
            let flagged: Vec<(WordRef, bool)> = receipt.words_with_noise().collect();
            let searched: Vec<(WordRef, bool)> = receipt
                .words()
                .map(|word| (word, receipt.is_noise(word)))
                .collect();
            assert_eq!(flagged, searched);
            noisy += receipt.noise_words.len();
        }
        assert!(noisy > 10, "the receipts have noise words");
    }

    #[test]
    fn check_rejects_a_label_on_noise() {
        let mut receipt = generate(1, &config(1)).remove(0);
        let word = receipt.embedded_words().next().unwrap();
        receipt.noise_words.push(word);
        receipt.noise_words.sort();
        receipt.labels.insert(
            0,
            LabelSpec {
                line: word.line,
                word: word.word,
                label: 0,
                reasoning: 0,
                change: None,
                removed: false,
                older: false,
            },
        );
        receipt.labels.sort_by_key(|l| (l.word_ref(), l.label));
        receipt.labels.dedup_by_key(|l| (l.word_ref(), l.label));
        assert!(receipt.check().is_err());
    }
}
