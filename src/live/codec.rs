//! The bytes of a snapshot or a delta in the object store: a header, then one record per id (the
//! id, an embedding of the header's dimension, and metadata).
//!
//! Layout, little-endian: magic `RSIM`, a format byte, a kind byte (snapshot or delta), the
//! dimension (u32), the record count (u64); each record: id length (u16) and UTF-8 bytes, `dimension`
//! f32s, metadata entry count (u16), each entry a key (u16 length, bytes) and a tagged value
//! (0 string with u32 length, 1 i64, 2 f64, 3 bool). A record costs `4 * dimension` bytes plus its id
//! and metadata, so a snapshot grows linearly with its ids as the model's `bytes_per_entry` says.
//! Decoding checks every length against the bytes left and never allocates more than they allow.
//!
//! Depends on nothing outside std.

use std::fmt;

const MAGIC: &[u8; 4] = b"RSIM";
const FORMAT: u8 = 1;
const HEADER_BYTES: usize = 4 + 1 + 1 + 4 + 8;
/// The widest embedding a record may carry.
pub const DIMENSION_MAX: u32 = 1 << 16;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Snapshot = 0,
    Delta = 1,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub id: String,
    pub embedding: Vec<f32>,
    pub metadata: Vec<(String, MetaValue)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Records {
    pub kind: Kind,
    pub dimension: u32,
    pub records: Vec<Record>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed record file: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

pub fn encode(records: &Records) -> Vec<u8> {
    assert!(records.dimension <= DIMENSION_MAX);
    let mut out =
        Vec::with_capacity(HEADER_BYTES + records.records.len() * encoded_size_hint(records));
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.push(records.kind as u8);
    out.extend_from_slice(&records.dimension.to_le_bytes());
    out.extend_from_slice(&(records.records.len() as u64).to_le_bytes());
    for record in &records.records {
        assert_eq!(
            record.embedding.len(),
            records.dimension as usize,
            "record {}",
            record.id
        );
        put_short(&mut out, record.id.as_bytes());
        for value in &record.embedding {
            out.extend_from_slice(&value.to_le_bytes());
        }
        let entries = u16::try_from(record.metadata.len()).expect("at most 65535 metadata keys");
        out.extend_from_slice(&entries.to_le_bytes());
        for (key, value) in &record.metadata {
            put_short(&mut out, key.as_bytes());
            put_value(&mut out, value);
        }
    }
    out
}

fn encoded_size_hint(records: &Records) -> usize {
    records.dimension as usize * 4 + 64
}

fn put_short(out: &mut Vec<u8>, bytes: &[u8]) {
    let length = u16::try_from(bytes.len()).expect("ids and keys are at most 65535 bytes");
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_value(out: &mut Vec<u8>, value: &MetaValue) {
    match value {
        MetaValue::Text(text) => {
            out.push(0);
            let length = u32::try_from(text.len()).expect("a metadata string fits in 4 GiB");
            out.extend_from_slice(&length.to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        MetaValue::Integer(number) => {
            out.push(1);
            out.extend_from_slice(&number.to_le_bytes());
        }
        MetaValue::Float(number) => {
            out.push(2);
            out.extend_from_slice(&number.to_le_bytes());
        }
        MetaValue::Bool(flag) => {
            out.push(3);
            out.push(u8::from(*flag));
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let left = self.bytes.len() - self.position;
        if length > left {
            return Err(DecodeError(format!(
                "{what} at byte {} needs {length} bytes, {left} left",
                self.position
            )));
        }
        let slice = &self.bytes[self.position..self.position + length];
        self.position += length;
        Ok(slice)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N, what)?.try_into().expect("length checked"))
    }
    fn text(&mut self, length: usize, what: &str) -> Result<String, DecodeError> {
        let bytes = self.take(length, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError(format!("{what} is not UTF-8")))
    }
    fn short_text(&mut self, what: &str) -> Result<String, DecodeError> {
        let length = u16::from_le_bytes(self.array(what)?) as usize;
        self.text(length, what)
    }
}

pub fn decode(bytes: &[u8]) -> Result<Records, DecodeError> {
    let mut reader = Reader { bytes, position: 0 };
    if reader.take(4, "magic")? != MAGIC {
        return Err(DecodeError(
            "not a receipt-sim record file (bad magic)".to_string(),
        ));
    }
    let [format] = reader.array("format")?;
    if format != FORMAT {
        return Err(DecodeError(format!("format {format}, expected {FORMAT}")));
    }
    let kind = match reader.array("kind")? {
        [0] => Kind::Snapshot,
        [1] => Kind::Delta,
        [other] => return Err(DecodeError(format!("kind {other}"))),
    };
    let dimension = u32::from_le_bytes(reader.array("dimension")?);
    if dimension > DIMENSION_MAX {
        return Err(DecodeError(format!(
            "dimension {dimension} above {DIMENSION_MAX}"
        )));
    }
    let count = u64::from_le_bytes(reader.array("count")?);
    // Each record takes at least its id length, its embedding and its entry count.
    let record_bytes_min = 2 + 4 * dimension as u64 + 2;
    if count.saturating_mul(record_bytes_min) > (bytes.len() - reader.position) as u64 {
        return Err(DecodeError(format!(
            "{count} records cannot fit in {} bytes",
            bytes.len()
        )));
    }
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        records.push(decode_record(&mut reader, dimension)?);
    }
    if reader.position != bytes.len() {
        return Err(DecodeError(format!(
            "{} bytes after the last record",
            bytes.len() - reader.position
        )));
    }
    Ok(Records {
        kind,
        dimension,
        records,
    })
}

fn decode_record(reader: &mut Reader<'_>, dimension: u32) -> Result<Record, DecodeError> {
    let id = reader.short_text("id")?;
    let raw = reader.take(4 * dimension as usize, "embedding")?;
    let embedding = raw
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes(chunk.try_into().expect("chunks of four")))
        .collect();
    let entries = u16::from_le_bytes(reader.array("metadata count")?);
    let mut metadata = Vec::with_capacity(entries as usize);
    for _ in 0..entries {
        let key = reader.short_text("metadata key")?;
        let value = match reader.array("metadata tag")? {
            [0] => {
                let length = u32::from_le_bytes(reader.array("string length")?) as usize;
                MetaValue::Text(reader.text(length, "metadata string")?)
            }
            [1] => MetaValue::Integer(i64::from_le_bytes(reader.array("integer")?)),
            [2] => MetaValue::Float(f64::from_le_bytes(reader.array("float")?)),
            [3] => MetaValue::Bool(reader.array::<1>("bool")? != [0]),
            [tag] => return Err(DecodeError(format!("metadata tag {tag} of id {id}"))),
        };
        metadata.push((key, value));
    }
    Ok(Record {
        id,
        embedding,
        metadata,
    })
}

/// `count` records shaped like the pipeline's word embeddings: id `IMAGE#..#RECEIPT#..#WORD#n`,
/// a deterministic embedding, and a few label fields.
pub fn synthetic(kind: Kind, count: usize, dimension: u32, salt: u64) -> Records {
    let mut state = salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        // xorshift64*: deterministic filler, not a model's random stream.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let records = (0..count)
        .map(|index| Record {
            id: format!("IMAGE#{salt:08}#RECEIPT#{:05}#WORD#{index:06}", index / 100),
            embedding: (0..dimension)
                .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32)
                .collect(),
            metadata: vec![
                (
                    "text".to_string(),
                    MetaValue::Text(format!("word{index:06}")),
                ),
                (
                    "label_status".to_string(),
                    MetaValue::Text("validated".to_string()),
                ),
                (
                    "valid_labels".to_string(),
                    MetaValue::Text(",TOTAL,".to_string()),
                ),
                (
                    "merchant_name".to_string(),
                    MetaValue::Text("Sprouts".to_string()),
                ),
                (
                    "line_id".to_string(),
                    MetaValue::Integer((index % 40) as i64),
                ),
                ("confidence".to_string(), MetaValue::Float(0.97)),
                ("is_noise".to_string(), MetaValue::Bool(false)),
            ],
        })
        .collect();
    Records {
        kind,
        dimension,
        records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_size_grows_linearly() {
        let small = synthetic(Kind::Snapshot, 10, 8, 1);
        let large = synthetic(Kind::Snapshot, 20, 8, 1);
        let small_bytes = encode(&small);
        let large_bytes = encode(&large);
        assert_eq!(decode(&small_bytes).unwrap(), small);
        assert_eq!(decode(&large_bytes).unwrap(), large);
        let per_record = (large_bytes.len() - small_bytes.len()) / 10;
        assert!(
            per_record > 4 * 8,
            "a record holds its embedding: {per_record} bytes"
        );
        assert_eq!(small_bytes.len(), HEADER_BYTES + 10 * per_record);
    }

    #[test]
    fn truncated_or_inflated_files_are_errors_not_panics() {
        let bytes = encode(&synthetic(Kind::Delta, 3, 4, 2));
        for length in 0..bytes.len() {
            assert!(
                decode(&bytes[..length]).is_err(),
                "prefix of {length} bytes"
            );
        }
        let mut inflated = bytes.clone();
        inflated[10..18].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&inflated).unwrap_err().0.contains("cannot fit"));
    }
}
