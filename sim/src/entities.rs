//! The pipeline's entities in compact form: receipt, line and word ids as integers, label items as
//! DynamoDB holds them, and the label and merchant fields as a Chroma snapshot carries them.
//!
//! Ids are dense integers so that a million receipts fit in memory; the string forms of the real
//! system (`IMAGE#…#RECEIPT#00001#LINE#00002#WORD#00003`) are derived for output only.
//! Depends on nothing inside the crate but `serde` derives.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A receipt's dense index within a trial (0, 1, 2, …), in arrival order.
pub type ReceiptIndex = u32;

/// The most lines a receipt may have, and the most words a line may have (ids pack into 12 bits).
pub const LINES_PER_RECEIPT_MAX: u32 = 4095;
pub const WORDS_PER_LINE_MAX: u32 = 4095;

/// The two Chroma collections, each with its own snapshot, queue, lock and pointer.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Collection {
    Lines,
    Words,
}

impl Collection {
    pub const ALL: [Collection; 2] = [Collection::Lines, Collection::Words];
    pub fn name(self) -> &'static str {
        match self {
            Collection::Lines => "lines",
            Collection::Words => "words",
        }
    }
    pub fn index(self) -> usize {
        match self {
            Collection::Lines => 0,
            Collection::Words => 1,
        }
    }
}

/// A Chroma id in one collection: receipt index, line number (1-based) and, in `words`, word number
/// (1-based; 0 in `lines`), packed as `receipt << 24 | line << 12 | word`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChromaId(pub u64);

impl ChromaId {
    pub fn line(receipt: ReceiptIndex, line: u32) -> ChromaId {
        assert!((1..=LINES_PER_RECEIPT_MAX).contains(&line));
        ChromaId(u64::from(receipt) << 24 | u64::from(line) << 12)
    }
    pub fn word(receipt: ReceiptIndex, line: u32, word: u32) -> ChromaId {
        assert!((1..=LINES_PER_RECEIPT_MAX).contains(&line));
        assert!((1..=WORDS_PER_LINE_MAX).contains(&word));
        ChromaId(u64::from(receipt) << 24 | u64::from(line) << 12 | u64::from(word))
    }
    pub fn receipt(self) -> ReceiptIndex {
        (self.0 >> 24) as ReceiptIndex
    }
    pub fn line_number(self) -> u32 {
        ((self.0 >> 12) & 0xfff) as u32
    }
    pub fn word_number(self) -> u32 {
        (self.0 & 0xfff) as u32
    }
    pub fn is_word(self) -> bool {
        self.word_number() != 0
    }
}

/// The label vocabulary; a label item names one of these by index.
pub const LABELS: [&str; 16] = [
    "MERCHANT_NAME",
    "STORE_HOURS",
    "PHONE_NUMBER",
    "WEBSITE",
    "LOYALTY_ID",
    "ADDRESS_LINE",
    "DATE",
    "TIME",
    "PAYMENT_METHOD",
    "COUPON",
    "DISCOUNT",
    "PRODUCT_NAME",
    "QUANTITY",
    "UNIT_PRICE",
    "LINE_TOTAL",
    "GRAND_TOTAL",
];

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValidationStatus {
    None,
    Pending,
    Valid,
    Invalid,
    NeedsReview,
}

/// One ReceiptWordLabel item: one word, one label. `reasoning`, `proposed_by` and
/// `consolidated_from` are value ids standing for the text fields of the real item.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LabelItem {
    pub label: u8,
    pub validation_status: ValidationStatus,
    pub reasoning: u32,
    pub proposed_by: u8,
    pub consolidated_from: u8,
}

/// The label fields of a word in a Chroma snapshot, derived from all of the word's label items.
/// All zero means "no label fields" (a word never labelled, or one whose fields were deleted).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LabelFields {
    /// Bit `i` set: label `LABELS[i]` is VALID.
    pub valid: u16,
    /// Bit `i` set: label `LABELS[i]` is INVALID.
    pub invalid: u16,
    /// Bit `i` set: label `LABELS[i]` exists with another status (NONE, PENDING, NEEDS_REVIEW).
    pub other: u16,
    /// A digest of the remaining fields (reasoning, proposed_by, consolidated_from) of every item.
    pub detail: u32,
}

impl LabelFields {
    pub fn is_empty(&self) -> bool {
        *self == LabelFields::default()
    }

    /// The fields a correct compaction writes for a word whose label items are `items` (any order).
    pub fn derive<'a>(items: impl IntoIterator<Item = &'a LabelItem>) -> LabelFields {
        let mut fields = LabelFields::default();
        let mut detail: u64 = 0;
        let mut any = false;
        for item in items {
            any = true;
            assert!(
                usize::from(item.label) < LABELS.len(),
                "label index out of range"
            );
            let bit = 1u16 << item.label;
            match item.validation_status {
                ValidationStatus::Valid => fields.valid |= bit,
                ValidationStatus::Invalid => fields.invalid |= bit,
                _ => fields.other |= bit,
            }
            // Order-independent: a sum of per-item mixes.
            let packed = u64::from(item.label)
                | u64::from(item.reasoning) << 8
                | u64::from(item.proposed_by) << 40
                | u64::from(item.consolidated_from) << 48;
            detail = detail.wrapping_add(crate::random::mix64(packed));
        }
        if !any {
            return LabelFields::default();
        }
        // Never all-zero for a labelled word.
        fields.detail = (detail >> 32) as u32 | 1;
        fields
    }
}

impl fmt::Display for LabelFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "(no label fields)");
        }
        let names = |mask: u16| -> String {
            let names: Vec<&str> = (0..16)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| LABELS[i])
                .collect();
            names.join(",")
        };
        write!(
            f,
            "valid=[{}] invalid=[{}] other=[{}] detail={:08x}",
            names(self.valid),
            names(self.invalid),
            names(self.other),
            self.detail
        )
    }
}

/// The metadata a Chroma snapshot carries for one line or word.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntryFields {
    /// Merchant value id (standing for the watched merchant fields); 0 means absent.
    pub merchant: u32,
    /// Label fields (always empty in `lines`).
    pub labels: LabelFields,
}

/// The real system's key strings, for output only.
pub fn image_key(image: u32) -> String {
    // Images are uuids in the real system; a stable uuid-shaped string per image number.
    let mixed = crate::random::mix64(u64::from(image));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        image,
        (mixed >> 48) & 0xffff,
        (mixed >> 36) & 0xfff,
        (mixed >> 24) & 0xfff,
        mixed & 0xffff_ffff_ffff
    )
}

/// `IMAGE#{image}#RECEIPT#{rid:05}#LINE#{lid:05}` and, for a word, `#WORD#{wid:05}`.
pub fn chroma_key(image: u32, receipt_id: u32, id: ChromaId) -> String {
    let mut key = format!(
        "IMAGE#{}#RECEIPT#{:05}#LINE#{:05}",
        image_key(image),
        receipt_id,
        id.line_number()
    );
    if id.is_word() {
        key.push_str(&format!("#WORD#{:05}", id.word_number()));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(label: u8, status: ValidationStatus, reasoning: u32) -> LabelItem {
        LabelItem {
            label,
            validation_status: status,
            reasoning,
            proposed_by: 1,
            consolidated_from: 0,
        }
    }

    #[test]
    fn ids_pack_and_unpack() {
        let id = ChromaId::word(123_456, 17, 4095);
        assert_eq!(
            (id.receipt(), id.line_number(), id.word_number()),
            (123_456, 17, 4095)
        );
        assert!(id.is_word());
        assert!(!ChromaId::line(3, 1).is_word());
        assert!(ChromaId::line(1, 2) < ChromaId::word(1, 2, 1));
    }

    #[test]
    fn derived_fields_ignore_order_and_see_every_field() {
        let a = item(0, ValidationStatus::Valid, 7);
        let b = item(6, ValidationStatus::Pending, 9);
        assert_eq!(LabelFields::derive(&[a, b]), LabelFields::derive(&[b, a]));
        assert!(LabelFields::derive(&[]).is_empty());
        let base = LabelFields::derive(&[a]);
        assert!(!base.is_empty());
        assert_eq!(base.valid, 1);
        assert_ne!(
            base,
            LabelFields::derive(&[item(0, ValidationStatus::Valid, 8)])
        );
        assert_ne!(
            base,
            LabelFields::derive(&[item(0, ValidationStatus::Invalid, 7)])
        );
    }

    #[test]
    fn keys_have_the_real_shape() {
        let key = chroma_key(5, 1, ChromaId::word(0, 2, 3));
        assert!(key.starts_with("IMAGE#00000005-"), "{key}");
        assert!(
            key.ends_with("#RECEIPT#00001#LINE#00002#WORD#00003"),
            "{key}"
        );
    }
}
