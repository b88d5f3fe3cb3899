//! The WAL writer as a state machine without I/O: it decides what bytes go
//! where, the caller performs the writes and syncs (glommio DMA files in the
//! server, [`super::simdisk::SimDisk`] in tests) and reports back. One batch
//! is in flight at a time, which keeps "a synced block is never rewritten"
//! and "only the last batch can be torn" true by construction.

use super::format::{encode_batch, Lsn, SegmentHeader, BATCH_HEADER_BYTES, BLOCK_BYTES, RECORD_HEADER_BYTES};
use std::fmt;

/// What the caller must do, in order, before the batch is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create segment file `segment_seq` of `segment_bytes` (zero-filled),
    /// write `header` at offset 0, sync it and its directory.
    OpenSegment { segment_seq: u64, header: Vec<u8>, segment_bytes: u64 },
    /// Write `bytes` at `offset` of segment `segment_seq`, then sync it.
    WriteBatch { segment_seq: u64, offset: u64, bytes: Vec<u8>, last_lsn: Lsn },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The records cannot fit in one segment, even an empty one.
    BatchTooLarge {
        bytes: usize,
        segment_bytes: usize,
    },
    NoRecords,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            WriteError::BatchTooLarge { bytes, segment_bytes } => {
                write!(f, "a batch of {bytes} bytes does not fit a {segment_bytes}-byte segment")
            }
            WriteError::NoRecords => f.write_str("a batch needs at least one record"),
        }
    }
}

pub struct WalWriter {
    shard_id: u16,
    segment_bytes: usize,
    /// Open segment, if any; `None` forces a new one on the next append.
    current: Option<SegmentHeader>,
    next_block: usize,
    prev_payload_crc: u32,
    next_lsn: Lsn,
    next_segment_seq: u64,
    salt: Box<dyn FnMut() -> u64>,
}

impl WalWriter {
    /// A writer whose next record gets `next_lsn` and whose next segment is
    /// `next_segment_seq`; it opens a new segment on its first append.
    /// `salt` supplies a random value per segment.
    pub fn new(
        shard_id: u16,
        segment_bytes: usize,
        next_lsn: Lsn,
        next_segment_seq: u64,
        salt: Box<dyn FnMut() -> u64>,
    ) -> Self {
        assert!(segment_bytes.is_multiple_of(BLOCK_BYTES) && segment_bytes >= 2 * BLOCK_BYTES);
        WalWriter {
            shard_id,
            segment_bytes,
            current: None,
            next_block: 1,
            prev_payload_crc: 0,
            next_lsn,
            next_segment_seq,
            salt,
        }
    }

    /// The writer for a log just recovered: it continues in the newest
    /// segment where recovery found its end (`Recovered::resume`, after any
    /// torn tail there was zeroed durably), or opens a new segment when
    /// there is none or it was made with another segment size or shard.
    /// Continuing keeps a restart from adding a preallocated segment.
    pub fn after_recovery(
        shard_id: u16,
        segment_bytes: usize,
        rec: &super::recover::Recovered,
        salt: Box<dyn FnMut() -> u64>,
    ) -> Self {
        let mut w = Self::new(shard_id, segment_bytes, rec.next_lsn, rec.next_segment_seq, salt);
        if let Some(r) = &rec.resume {
            let fits = r.header.segment_bytes as usize == segment_bytes
                && r.header.shard_id == shard_id
                && (r.valid_bytes as usize).is_multiple_of(BLOCK_BYTES)
                && r.valid_bytes as usize >= BLOCK_BYTES
                && (r.valid_bytes as usize) < segment_bytes;
            if fits {
                w.current = Some(r.header);
                w.next_block = r.valid_bytes as usize / BLOCK_BYTES;
                w.prev_payload_crc = r.last_payload_crc;
            }
        }
        w
    }

    /// The segment the next batch goes to if it fits (`None`: a new one).
    pub fn current_segment(&self) -> Option<u64> {
        self.current.map(|h| h.segment_seq)
    }

    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Bytes a batch of these records occupies on disk.
    pub fn batch_bytes(records: &[(u8, &[u8])]) -> usize {
        let raw = BATCH_HEADER_BYTES + records.iter().map(|(_, b)| RECORD_HEADER_BYTES + b.len()).sum::<usize>();
        raw.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
    }

    /// Plan one batch. The steps must all succeed (and be synced) before
    /// the records count as durable; on any failure the caller must stop
    /// using this writer (the shard's WAL is failed).
    pub fn append(&mut self, records: &[(u8, &[u8])]) -> Result<Vec<Step>, WriteError> {
        if records.is_empty() {
            return Err(WriteError::NoRecords);
        }
        let bytes = Self::batch_bytes(records);
        if bytes > self.segment_bytes - BLOCK_BYTES {
            return Err(WriteError::BatchTooLarge { bytes, segment_bytes: self.segment_bytes });
        }
        let mut steps = Vec::new();
        let fits = self.current.is_some() && self.next_block * BLOCK_BYTES + bytes <= self.segment_bytes;
        if !fits {
            let header = SegmentHeader {
                shard_id: self.shard_id,
                segment_seq: self.next_segment_seq,
                first_lsn: self.next_lsn,
                salt: (self.salt)(),
                segment_bytes: self.segment_bytes as u32,
            };
            self.next_segment_seq += 1;
            steps.push(Step::OpenSegment {
                segment_seq: header.segment_seq,
                header: header.encode(),
                segment_bytes: self.segment_bytes as u64,
            });
            self.current = Some(header);
            self.next_block = 1;
            self.prev_payload_crc = 0;
        }
        let seg = self.current.expect("a segment is open");
        let mut out = Vec::with_capacity(bytes);
        let info = encode_batch(&seg, self.next_block as u32, self.prev_payload_crc, self.next_lsn, records, &mut out);
        debug_assert_eq!(info.padded_bytes, bytes);
        steps.push(Step::WriteBatch {
            segment_seq: seg.segment_seq,
            offset: (self.next_block * BLOCK_BYTES) as u64,
            bytes: out,
            last_lsn: info.last_lsn,
        });
        self.next_block += bytes / BLOCK_BYTES;
        self.prev_payload_crc = info.payload_crc;
        self.next_lsn = info.last_lsn + 1;
        Ok(steps)
    }
}
