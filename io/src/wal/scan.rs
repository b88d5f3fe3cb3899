//! Reading a segment back. [`scan_segment`] returns the records of every
//! intact batch, in order, and how the segment ends:
//!
//! - [`ScanEnd::Clean`]: the next block is unwritten (zeros) or stale (left
//!   by an older use of the file), and nothing valid of this segment follows.
//! - [`ScanEnd::TornTail`]: a batch is incomplete or damaged and nothing
//!   valid of this segment follows it: the batch in flight at a crash, never
//!   acknowledged. Recovery truncates it.
//! - [`ScanEnd::Corrupt`]: damage with valid batches after it, a batch at the
//!   wrong place, an LSN gap or a broken chain. Acknowledged data may be
//!   lost: recovery stops and names the segment and offset.

use super::format::{
    record_crc, BatchHeader, FormatError, Lsn, SegmentHeader, BATCH_HEADER_BYTES, BLOCK_BYTES, RECORD_HEADER_BYTES,
};

/// One record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: u8,
    pub lsn: Lsn,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    Clean,
    TornTail { offset: u64, reason: String },
    Corrupt { offset: u64, reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    pub header: SegmentHeader,
    pub records: Vec<Record>,
    pub end: ScanEnd,
    /// Byte offset just past the last intact batch: where a writer resuming
    /// this segment would continue (recovery starts a fresh segment instead).
    pub valid_bytes: u64,
    /// The LSN the next record must carry.
    pub next_lsn: Lsn,
    /// Payload CRC of the last intact batch (0 if none): the chain value.
    pub last_payload_crc: u32,
    /// A clean end with bytes other than zero after it: a torn batch whose
    /// first block was lost, or stale blocks. Harmless in a segment that
    /// later ones follow, but a writer continuing the newest segment would
    /// leave them behind its batches, so recovery zeroes them there.
    pub dirty_after_end: bool,
}

/// Does a valid batch of this segment start at block `b`?
fn valid_batch_at(bytes: &[u8], seg: &SegmentHeader, b: usize) -> bool {
    let at = b * BLOCK_BYTES;
    match bytes.get(at..).map(BatchHeader::decode) {
        Some(Ok(h)) => h.segment_seq == seg.segment_seq && h.salt == seg.salt && h.block_index as usize == b,
        _ => false,
    }
}

/// First block after `from` where a valid batch of this segment starts.
fn later_valid_batch(bytes: &[u8], seg: &SegmentHeader, from: usize) -> Option<usize> {
    (from + 1..bytes.len() / BLOCK_BYTES).find(|&b| valid_batch_at(bytes, seg, b))
}

/// Why a batch whose payload passed its checksum does not hold the records
/// its header promises (never a torn write: the scan calls it corruption).
#[derive(Clone, Debug, PartialEq, Eq)]
enum RecordError {
    HeaderPastPayload,
    BodyPastPayload,
    /// Record `index` of the batch carries another LSN than its place.
    Lsn {
        index: u64,
        lsn: Lsn,
        expected: Lsn,
    },
    Checksum {
        index: u64,
        lsn: Lsn,
    },
    /// Bytes left in the payload after the header's record count.
    TrailingBytes(usize),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            RecordError::HeaderPastPayload => f.write_str("record header past the payload"),
            RecordError::BodyPastPayload => f.write_str("record body past the payload"),
            RecordError::Lsn { index, lsn, expected } => write!(f, "record {index} has LSN {lsn}, expected {expected}"),
            RecordError::Checksum { index, lsn } => write!(f, "record {index} (LSN {lsn}) fails its checksum"),
            RecordError::TrailingBytes(n) => write!(f, "{n} payload bytes after the last record"),
        }
    }
}

impl std::error::Error for RecordError {}

fn parse_records(payload: &[u8], h: &BatchHeader) -> Result<Vec<Record>, RecordError> {
    let mut out = Vec::with_capacity(h.record_count as usize);
    let mut at = 0usize;
    for i in 0..h.record_count as u64 {
        let head = payload.get(at..at + RECORD_HEADER_BYTES).ok_or(RecordError::HeaderPastPayload)?;
        let len = u32::from_le_bytes(head[0..4].try_into().unwrap()) as usize;
        let kind = head[4];
        let lsn = u64::from_le_bytes(head[8..16].try_into().unwrap());
        let crc = u32::from_le_bytes(head[16..20].try_into().unwrap());
        let body = payload
            .get(at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + len)
            .ok_or(RecordError::BodyPastPayload)?;
        if lsn != h.first_lsn + i {
            return Err(RecordError::Lsn { index: i, lsn, expected: h.first_lsn + i });
        }
        if record_crc(kind, lsn, body) != crc {
            return Err(RecordError::Checksum { index: i, lsn });
        }
        out.push(Record { kind, lsn, body: body.to_vec() });
        at += RECORD_HEADER_BYTES + len;
    }
    if at != payload.len() {
        return Err(RecordError::TrailingBytes(payload.len() - at));
    }
    Ok(out)
}

/// Where a scan reads a segment: its bytes in memory (`&[u8]`), or a file
/// read a window at a time, so that a segment is never held whole (the
/// server's start-up reader, `src/wal/recovery.rs`). A scan reads forward
/// only.
pub trait SegmentSource {
    /// The segment's length in bytes.
    fn segment_len(&self) -> usize;
    /// The `n` bytes at `at` (`at + n <= segment_len()`).
    fn bytes(&mut self, at: usize, n: usize) -> &[u8];
    /// The segment's bytes from `from` on, in a slice as long as the
    /// segment (bytes before `from` may read as zeros): what the scan looks
    /// through past damage or the end of the log.
    fn tail(&mut self, from: usize) -> &[u8];
}

impl SegmentSource for &[u8] {
    fn segment_len(&self) -> usize {
        self.len()
    }
    fn bytes(&mut self, at: usize, n: usize) -> &[u8] {
        &self[at..at + n]
    }
    fn tail(&mut self, _from: usize) -> &[u8] {
        self
    }
}

/// Scan one segment's bytes (the whole file, or any prefix of it).
/// A damaged segment header is an error: headers are written and synced
/// before a segment is used, so it is never the torn write of a crash.
pub fn scan_segment(bytes: &[u8]) -> Result<SegmentScan, FormatError> {
    let mut records = Vec::new();
    let mut scan = scan_segment_into(&mut { bytes }, &mut |r| records.push(r))?;
    scan.records = records;
    Ok(scan)
}

/// [`scan_segment`] over any [`SegmentSource`], handing each intact
/// batch's records to `sink` as the scan meets them instead of collecting
/// them (the returned scan's `records` is empty), so a reader need hold
/// neither a segment nor its records at once. Records of batches before
/// damage reach `sink` before the scan finds the damage: what the caller
/// did with them is to be thrown away if recovery then refuses.
pub fn scan_segment_into<S: SegmentSource>(
    src: &mut S,
    sink: &mut dyn FnMut(Record),
) -> Result<SegmentScan, FormatError> {
    let mut scan = scan_batches(src, sink)?;
    if scan.end == ScanEnd::Clean {
        let from = scan.valid_bytes as usize;
        let rest = src.tail(from).get(from..).unwrap_or_default();
        scan.dirty_after_end = rest.chunks(BLOCK_BYTES).any(|b| b.iter().fold(0, |acc, &x| acc | x) != 0);
    }
    Ok(scan)
}

/// Damage at block `b`: torn if nothing valid of this segment follows,
/// else corrupt.
fn damaged<S: SegmentSource>(src: &mut S, header: &SegmentHeader, b: usize, reason: String) -> ScanEnd {
    let offset = (b * BLOCK_BYTES) as u64;
    match later_valid_batch(src.tail(b * BLOCK_BYTES), header, b) {
        None => ScanEnd::TornTail { offset, reason },
        Some(next) => ScanEnd::Corrupt {
            offset,
            reason: format!("{reason}; a valid batch follows at offset {}", next * BLOCK_BYTES),
        },
    }
}

fn scan_batches<S: SegmentSource>(src: &mut S, sink: &mut dyn FnMut(Record)) -> Result<SegmentScan, FormatError> {
    let len = src.segment_len();
    let header = SegmentHeader::decode(src.bytes(0, len.min(BLOCK_BYTES)))?;
    let mut scan = SegmentScan {
        header,
        records: Vec::new(),
        end: ScanEnd::Clean,
        valid_bytes: BLOCK_BYTES as u64,
        next_lsn: header.first_lsn,
        last_payload_crc: 0,
        dirty_after_end: false,
    };
    let n_blocks = len / BLOCK_BYTES;
    let mut b = 1usize;
    while b < n_blocks {
        let at = b * BLOCK_BYTES;
        let block = src.bytes(at, BLOCK_BYTES);
        let h = match BatchHeader::decode(block) {
            Ok(h) => h,
            Err(_) if block.iter().all(|&x| x == 0) => {
                // Unwritten space: the log ends here, unless data follows.
                if let Some(next) = later_valid_batch(src.tail(at), &header, b) {
                    scan.end = ScanEnd::Corrupt {
                        offset: at as u64,
                        reason: format!("unwritten block before a valid batch at offset {}", next * BLOCK_BYTES),
                    };
                }
                return Ok(scan);
            }
            Err(e) => {
                scan.end = damaged(src, &header, b, format!("batch header: {e}"));
                return Ok(scan);
            }
        };
        if h.segment_seq != header.segment_seq || h.salt != header.salt {
            // Left over from an older incarnation of this file: end of log.
            if let Some(next) = later_valid_batch(src.tail(at), &header, b) {
                scan.end = ScanEnd::Corrupt {
                    offset: at as u64,
                    reason: format!("stale block before a valid batch at offset {}", next * BLOCK_BYTES),
                };
            }
            return Ok(scan);
        }
        let corrupt = |reason: String| ScanEnd::Corrupt { offset: at as u64, reason };
        if h.block_index as usize != b {
            scan.end = corrupt(format!("batch written for block {} found at block {b} (misdirected)", h.block_index));
            return Ok(scan);
        }
        if h.first_lsn != scan.next_lsn {
            scan.end = corrupt(format!("batch starts at LSN {}, expected {}", h.first_lsn, scan.next_lsn));
            return Ok(scan);
        }
        if h.prev_payload_crc != scan.last_payload_crc {
            scan.end = corrupt("batch does not chain to the previous batch".to_owned());
            return Ok(scan);
        }
        let padded = h.padded_bytes as usize;
        let payload_end = BATCH_HEADER_BYTES + h.payload_bytes as usize;
        if h.record_count == 0 || !padded.is_multiple_of(BLOCK_BYTES) || payload_end > padded {
            scan.end = corrupt("batch header holds impossible sizes".to_owned());
            return Ok(scan);
        }
        if at + padded > len {
            scan.end = damaged(src, &header, b, "batch extends past the end of the file".to_owned());
            return Ok(scan);
        }
        let payload = src.bytes(at + BATCH_HEADER_BYTES, payload_end - BATCH_HEADER_BYTES);
        if crc32c::crc32c(payload) != h.payload_crc {
            scan.end = damaged(src, &header, b, "batch payload fails its checksum".to_owned());
            return Ok(scan);
        }
        match parse_records(payload, &h) {
            Ok(records) => records.into_iter().for_each(&mut *sink),
            Err(e) => {
                scan.end = corrupt(e.to_string());
                return Ok(scan);
            }
        }
        scan.next_lsn = h.first_lsn + h.record_count as u64;
        scan.last_payload_crc = h.payload_crc;
        b += padded / BLOCK_BYTES;
        scan.valid_bytes = (b * BLOCK_BYTES) as u64;
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::super::format::encode_batch;
    use super::*;
    use proptest::prelude::*;

    const SEG_BYTES: usize = 64 * BLOCK_BYTES;

    #[test]
    fn record_errors_say_which_record_and_why() {
        let said = |e: RecordError| e.to_string();
        assert_eq!(said(RecordError::HeaderPastPayload), "record header past the payload");
        assert_eq!(said(RecordError::BodyPastPayload), "record body past the payload");
        assert_eq!(said(RecordError::Lsn { index: 2, lsn: 9, expected: 7 }), "record 2 has LSN 9, expected 7");
        assert_eq!(said(RecordError::Checksum { index: 0, lsn: 5 }), "record 0 (LSN 5) fails its checksum");
        assert_eq!(said(RecordError::TrailingBytes(3)), "3 payload bytes after the last record");
    }

    fn header(salt: u64) -> SegmentHeader {
        SegmentHeader { shard_id: 1, segment_seq: 5, first_lsn: 1000, salt, segment_bytes: SEG_BYTES as u32 }
    }

    /// A preallocated (zero-filled) segment holding these batches, plus the
    /// byte range of each batch and the records written.
    fn build(seg: &SegmentHeader, batches: &[Vec<Vec<u8>>]) -> (Vec<u8>, Vec<(usize, usize)>, Vec<Record>) {
        let mut bytes = seg.encode();
        let mut ranges = Vec::new();
        let mut records = Vec::new();
        let (mut lsn, mut prev) = (seg.first_lsn, 0u32);
        for batch in batches {
            let start = bytes.len();
            let recs: Vec<(u8, &[u8])> = batch.iter().map(|b| (7u8, b.as_slice())).collect();
            let info = encode_batch(seg, (start / BLOCK_BYTES) as u32, prev, lsn, &recs, &mut bytes);
            for (i, body) in batch.iter().enumerate() {
                records.push(Record { kind: 7, lsn: lsn + i as u64, body: body.clone() });
            }
            ranges.push((start, start + info.padded_bytes));
            lsn = info.last_lsn + 1;
            prev = info.payload_crc;
        }
        assert!(bytes.len() <= SEG_BYTES);
        bytes.resize(SEG_BYTES, 0);
        (bytes, ranges, records)
    }

    fn arb_batches() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
        let body = prop::collection::vec(any::<u8>(), 0..3000);
        prop::collection::vec(prop::collection::vec(body, 1..5), 1..8)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn round_trip(batches in arb_batches()) {
            let (bytes, ranges, records) = build(&header(42), &batches);
            let scan = scan_segment(&bytes).unwrap();
            prop_assert_eq!(scan.end, ScanEnd::Clean);
            prop_assert_eq!(scan.valid_bytes as usize, ranges.last().unwrap().1);
            prop_assert_eq!(scan.next_lsn, 1000 + records.len() as u64);
            prop_assert_eq!(scan.records.len(), records.len());
            prop_assert!(scan.records == records, "records differ");
        }

        /// A crash that persisted only a prefix of the bytes (the rest of the
        /// preallocated file still zero, or the file cut short) recovers a
        /// prefix of the records made of whole batches, and is never
        /// reported as corruption.
        #[test]
        fn any_byte_prefix_recovers_a_prefix_of_whole_batches(batches in arb_batches(), cut in 0.0f64..1.0, zero_fill in any::<bool>()) {
            let (bytes, ranges, records) = build(&header(42), &batches);
            let written = ranges.last().unwrap().1;
            let cut = BLOCK_BYTES + ((written - BLOCK_BYTES) as f64 * cut) as usize;
            let mut crashed = bytes[..cut].to_vec();
            if zero_fill {
                crashed.resize(SEG_BYTES, 0);
            }
            let scan = scan_segment(&crashed).unwrap();
            prop_assert!(!matches!(scan.end, ScanEnd::Corrupt { .. }), "{:?}", scan.end);
            // A batch survives when every byte its checksums cover persisted
            // (with a zero-filled file, its zero padding is there anyway).
            let whole = ranges
                .iter()
                .filter(|r| {
                    let covered = r.0 + BATCH_HEADER_BYTES + BatchHeader::decode(&bytes[r.0..]).unwrap().payload_bytes as usize;
                    if zero_fill { covered <= cut } else { r.1 <= cut }
                })
                .count();
            let n: usize = batches[..whole].iter().map(Vec::len).sum();
            prop_assert_eq!(scan.records.len(), n);
            prop_assert!(scan.records[..] == records[..n], "recovered records differ from the written prefix");
        }

        /// Damage inside any batch but the last is corruption, named at that
        /// batch; damage in the last batch is a torn tail.
        #[test]
        fn damage_fails_closed_unless_it_is_the_tail(batches in arb_batches(), which in any::<prop::sample::Index>(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let (mut bytes, ranges, _) = build(&header(42), &batches);
            let i = which.index(ranges.len());
            let (start, _) = ranges[i];
            // Flip a bit the checksums cover: header or payload.
            let h = BatchHeader::decode(&bytes[start..]).unwrap();
            let covered = BATCH_HEADER_BYTES + h.payload_bytes as usize;
            bytes[start + pos.index(covered)] ^= 1 << bit;
            let scan = scan_segment(&bytes).unwrap();
            if i + 1 < ranges.len() {
                prop_assert!(matches!(scan.end, ScanEnd::Corrupt { offset, .. } if offset as usize == start), "{:?}", scan.end);
            } else {
                prop_assert!(matches!(scan.end, ScanEnd::TornTail { offset, .. } if offset as usize == start), "{:?}", scan.end);
            }
            let n: usize = batches[..i].iter().map(Vec::len).sum();
            prop_assert_eq!(scan.records.len(), n);
        }
    }

    #[test]
    fn stale_blocks_end_the_log_and_misdirected_ones_are_corruption() {
        let batches: Vec<Vec<Vec<u8>>> = (0..4).map(|i| vec![vec![i as u8; 5000]]).collect();
        // An older incarnation (another salt) wrote 4 batches; the new one 2.
        let (old, _, _) = build(&header(1), &batches);
        let (new, ranges, records) = build(&header(2), &batches[..2]);
        let mut recycled = old.clone();
        recycled[..ranges[1].1].copy_from_slice(&new[..ranges[1].1]);
        let scan = scan_segment(&recycled).unwrap();
        assert_eq!(scan.end, ScanEnd::Clean);
        assert_eq!(scan.records, records);
        // A stale block in front of a valid batch of ours hides a lost write.
        let (full, franges, _) = build(&header(2), &batches);
        let mut holed = full.clone();
        let (s, e) = franges[1];
        holed[s..e].copy_from_slice(&old[s..e]);
        assert!(matches!(scan_segment(&holed).unwrap().end, ScanEnd::Corrupt { offset, .. } if offset as usize == s));
        // An unwritten (zero) block in front of a valid batch: lost write.
        let mut zeroed = full.clone();
        zeroed[s..e].fill(0);
        assert!(matches!(scan_segment(&zeroed).unwrap().end, ScanEnd::Corrupt { .. }));
        // A valid batch copied to another place is misdirected.
        let mut misdirected = full.clone();
        let (s3, e3) = franges[3];
        let copy = full[franges[0].0..franges[0].1].to_vec();
        misdirected[s3..s3 + copy.len()].copy_from_slice(&copy);
        let _ = e3;
        assert!(
            matches!(scan_segment(&misdirected).unwrap().end, ScanEnd::Corrupt { offset, .. } if offset as usize == s3)
        );
        // A torn batch whose first block was lost (zero) but not the rest:
        // the log ends cleanly before it, with dirty bytes after the end.
        let mut headless = full.clone();
        let (s2, e2) = franges[2];
        headless[s2..s2 + BLOCK_BYTES].fill(0);
        headless[franges[3].0..].fill(0);
        let scan = scan_segment(&headless).unwrap();
        assert_eq!((scan.end, scan.valid_bytes as usize, scan.dirty_after_end), (ScanEnd::Clean, s2, true));
        assert!(e2 > s2 + BLOCK_BYTES, "the batch spans several blocks");
        assert!(!scan_segment(&new).unwrap().dirty_after_end);
        // A damaged segment header refuses the segment.
        let mut bad = full;
        bad[20] ^= 1;
        assert!(scan_segment(&bad).is_err());
    }
}
