//! Byte layouts of segment headers, batch headers and records. All integers
//! are little-endian; every header and payload carries a CRC32C.

use std::fmt;

/// Log sequence number: every record gets the next one, per shard.
pub type Lsn = u64;

/// Alignment and padding unit of segments and batches (direct I/O writes
/// whole blocks; 4 KiB covers the 512 B and 4 KiB sectors of common disks).
pub const BLOCK_BYTES: usize = 4096;

pub const SEGMENT_MAGIC: [u8; 8] = *b"AIONWAL\0";
pub const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"AWLB");
pub const FORMAT_VERSION: u16 = 1;

/// Bytes of a batch header at the start of a batch's first block.
pub const BATCH_HEADER_BYTES: usize = 64;
/// Bytes of a record header before its body.
pub const RECORD_HEADER_BYTES: usize = 20;
/// Bytes of the segment header that its CRC covers (the rest of block 0 is zero).
const SEGMENT_HEADER_BYTES: usize = 48;

/// A shard's WAL directory, under its shard directory.
pub const WAL_DIR: &str = "wal";

/// File name of segment `seq`: fixed-width hex, so names sort in sequence.
pub fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016x}.log")
}

/// The sequence number a segment file name carries (`None`: not a segment).
pub fn parse_segment_name(name: &str) -> Option<u64> {
    u64::from_str_radix(name.strip_prefix("wal-")?.strip_suffix(".log")?, 16).ok()
}

/// Whether a file of a WAL directory is unfinished: a segment whose header
/// never became durable, or a spare (`wal-spare-N.log.tmp`). Start-up
/// deletes them; they hold nothing.
pub fn is_unfinished(name: &str) -> bool {
    name.ends_with(".log.tmp")
}

const _: () = assert!(BLOCK_BYTES.is_power_of_two() && BLOCK_BYTES >= 512);
const _: () = assert!(BATCH_HEADER_BYTES < BLOCK_BYTES && SEGMENT_HEADER_BYTES < BLOCK_BYTES);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatError {
    BadMagic,
    BadVersion(u16),
    BadChecksum,
    /// A field holds a value the writer never produces.
    BadField(&'static str),
    Truncated,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            FormatError::BadMagic => f.write_str("bad magic number"),
            FormatError::BadVersion(v) => write!(f, "unsupported format version {v}"),
            FormatError::BadChecksum => f.write_str("checksum mismatch"),
            FormatError::BadField(name) => write!(f, "invalid field {name}"),
            FormatError::Truncated => f.write_str("truncated"),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Block 0 of every segment.
///
/// ```text
/// 0  magic "AIONWAL\0"  8 | 8  version u16 | 10 shard_id u16 | 12 block_bytes u32
/// 16 segment_seq u64 | 24 first_lsn u64 | 32 salt u64 | 40 segment_bytes u32
/// 44 header_crc u32 (CRC32C of bytes 0..44) | zeros to 4096
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub shard_id: u16,
    /// Increases by one per segment of a shard, never reused.
    pub segment_seq: u64,
    /// LSN of the first record this segment will hold.
    pub first_lsn: Lsn,
    /// Random per segment file incarnation: blocks left over from an older
    /// use of the same file carry another salt and are recognised as stale.
    pub salt: u64,
    pub segment_bytes: u32,
}

impl SegmentHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK_BYTES];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&self.shard_id.to_le_bytes());
        b[12..16].copy_from_slice(&(BLOCK_BYTES as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.segment_seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[32..40].copy_from_slice(&self.salt.to_le_bytes());
        b[40..44].copy_from_slice(&self.segment_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < SEGMENT_HEADER_BYTES {
            return Err(FormatError::Truncated);
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic);
        }
        if crc32c::crc32c(&b[0..44]) != u32_at(b, 44) {
            return Err(FormatError::BadChecksum);
        }
        let version = u16_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(FormatError::BadVersion(version));
        }
        if u32_at(b, 12) as usize != BLOCK_BYTES {
            return Err(FormatError::BadField("block_bytes"));
        }
        let h = SegmentHeader {
            shard_id: u16_at(b, 10),
            segment_seq: u64_at(b, 16),
            first_lsn: u64_at(b, 24),
            salt: u64_at(b, 32),
            segment_bytes: u32_at(b, 40),
        };
        if !(h.segment_bytes as usize).is_multiple_of(BLOCK_BYTES) || (h.segment_bytes as usize) < 2 * BLOCK_BYTES {
            return Err(FormatError::BadField("segment_bytes"));
        }
        Ok(h)
    }
}

/// The first 64 bytes of a batch.
///
/// ```text
/// 0  magic "AWLB" u32 | 4 version u16 | 6 flags u16 | 8 header_crc u32
/// 12 payload_crc u32 | 16 segment_seq u64 | 24 salt u64 | 32 block_index u32
/// 36 record_count u32 | 40 first_lsn u64 | 48 payload_bytes u32
/// 52 padded_bytes u32 | 56 prev_payload_crc u32 | 60 reserved u32 (zero)
/// ```
/// `header_crc` is the CRC32C of the 64 bytes with that field zeroed;
/// `payload_crc` covers the records (`payload_bytes` after the header).
/// `segment_seq`, `salt` and `block_index` (= file offset / 4096) must match
/// where the batch is read, which exposes stale and misdirected blocks;
/// `prev_payload_crc` chains a batch to the one before it in the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub flags: u16,
    pub payload_crc: u32,
    pub segment_seq: u64,
    pub salt: u64,
    pub block_index: u32,
    pub record_count: u32,
    pub first_lsn: Lsn,
    pub payload_bytes: u32,
    pub padded_bytes: u32,
    pub prev_payload_crc: u32,
}

impl BatchHeader {
    pub fn encode(&self, out: &mut [u8]) {
        let b = &mut out[..BATCH_HEADER_BYTES];
        b.fill(0);
        b[0..4].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[12..16].copy_from_slice(&self.payload_crc.to_le_bytes());
        b[16..24].copy_from_slice(&self.segment_seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.salt.to_le_bytes());
        b[32..36].copy_from_slice(&self.block_index.to_le_bytes());
        b[36..40].copy_from_slice(&self.record_count.to_le_bytes());
        b[40..48].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[48..52].copy_from_slice(&self.payload_bytes.to_le_bytes());
        b[52..56].copy_from_slice(&self.padded_bytes.to_le_bytes());
        b[56..60].copy_from_slice(&self.prev_payload_crc.to_le_bytes());
        let crc = crc32c::crc32c(b);
        b[8..12].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decode and check magic, version and header CRC (not placement).
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < BATCH_HEADER_BYTES {
            return Err(FormatError::Truncated);
        }
        if u32_at(b, 0) != BATCH_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let mut copy = [0u8; BATCH_HEADER_BYTES];
        copy.copy_from_slice(&b[..BATCH_HEADER_BYTES]);
        copy[8..12].fill(0);
        if crc32c::crc32c(&copy) != u32_at(b, 8) {
            return Err(FormatError::BadChecksum);
        }
        let version = u16_at(b, 4);
        if version != FORMAT_VERSION {
            return Err(FormatError::BadVersion(version));
        }
        Ok(BatchHeader {
            flags: u16_at(b, 6),
            payload_crc: u32_at(b, 12),
            segment_seq: u64_at(b, 16),
            salt: u64_at(b, 24),
            block_index: u32_at(b, 32),
            record_count: u32_at(b, 36),
            first_lsn: u64_at(b, 40),
            payload_bytes: u32_at(b, 48),
            padded_bytes: u32_at(b, 52),
            prev_payload_crc: u32_at(b, 56),
        })
    }
}

/// Record layout inside a batch payload:
///
/// ```text
/// 0 body_bytes u32 | 4 kind u8 | 5 reserved [u8; 3] (zero) | 8 lsn u64
/// 16 record_crc u32 (CRC32C of kind, reserved, lsn and body) | 20 body
/// ```
pub fn record_crc(kind: u8, lsn: Lsn, body: &[u8]) -> u32 {
    let mut head = [0u8; 12];
    head[0] = kind;
    head[4..12].copy_from_slice(&lsn.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), body)
}

/// What [`encode_batch`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    pub payload_crc: u32,
    pub padded_bytes: usize,
    pub last_lsn: Lsn,
}

/// Append one batch (header, records, zero padding to a block boundary) to
/// `out`. `block_index` is where the batch will sit in the segment;
/// `prev_payload_crc` is the previous batch's payload CRC (0 for the first).
/// Records get LSNs `first_lsn`, `first_lsn + 1`, ...
pub fn encode_batch(
    seg: &SegmentHeader,
    block_index: u32,
    prev_payload_crc: u32,
    first_lsn: Lsn,
    records: &[(u8, &[u8])],
    out: &mut Vec<u8>,
) -> BatchInfo {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let start = out.len();
    out.resize(start + BATCH_HEADER_BYTES, 0);
    for (i, (kind, body)) in records.iter().enumerate() {
        let lsn = first_lsn + i as u64;
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&[*kind, 0, 0, 0]);
        out.extend_from_slice(&lsn.to_le_bytes());
        out.extend_from_slice(&record_crc(*kind, lsn, body).to_le_bytes());
        out.extend_from_slice(body);
    }
    let payload_bytes = out.len() - start - BATCH_HEADER_BYTES;
    let padded_bytes = (out.len() - start).div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
    out.resize(start + padded_bytes, 0);
    let payload_crc = crc32c::crc32c(&out[start + BATCH_HEADER_BYTES..start + BATCH_HEADER_BYTES + payload_bytes]);
    let header = BatchHeader {
        flags: 0,
        payload_crc,
        segment_seq: seg.segment_seq,
        salt: seg.salt,
        block_index,
        record_count: records.len() as u32,
        first_lsn,
        payload_bytes: payload_bytes as u32,
        padded_bytes: padded_bytes as u32,
        prev_payload_crc,
    };
    header.encode(&mut out[start..]);
    BatchInfo { payload_crc, padded_bytes, last_lsn: first_lsn + records.len() as u64 - 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_reject_damage() {
        let seg = SegmentHeader { shard_id: 3, segment_seq: 9, first_lsn: 100, salt: 0xfeed, segment_bytes: 1 << 20 };
        let block = seg.encode();
        assert_eq!(block.len(), BLOCK_BYTES);
        assert_eq!(SegmentHeader::decode(&block), Ok(seg));
        for at in 0..48 {
            let mut bad = block.clone();
            bad[at] ^= 0x10;
            assert!(SegmentHeader::decode(&bad).is_err(), "flip at {at}");
        }
        let mut out = Vec::new();
        let info = encode_batch(&seg, 1, 7, 100, &[(1, b"abc"), (2, b"")], &mut out);
        assert_eq!(out.len(), BLOCK_BYTES);
        assert_eq!(info.last_lsn, 101);
        let h = BatchHeader::decode(&out).unwrap();
        assert_eq!((h.record_count, h.first_lsn, h.block_index, h.prev_payload_crc), (2, 100, 1, 7));
        for at in 0..BATCH_HEADER_BYTES {
            let mut bad = out.clone();
            bad[at] ^= 0x01;
            assert!(BatchHeader::decode(&bad).is_err(), "flip at {at}");
        }
    }
}
