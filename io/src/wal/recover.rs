//! Recovery over all of a shard's segments: scan them in sequence order,
//! check that LSNs continue from one segment to the next, and decide whether
//! the log is usable (possibly after dropping a torn tail) or corrupt.

use super::format::{FormatError, Lsn};
use super::scan::{scan_segment, Record, ScanEnd, SegmentScan};
use std::fmt;

/// Where a segment's bytes came from, for messages.
pub struct SegmentBytes {
    pub name: String,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    pub records: Vec<Record>,
    pub next_lsn: Lsn,
    /// The next segment number to use for a new segment.
    pub next_segment_seq: u64,
    /// A torn tail that was dropped. Before writing anything new, it must
    /// be zeroed durably (`Wal::open` does); otherwise the torn batch would
    /// sit in front of later segments and the next recovery would rightly
    /// call it corruption.
    pub torn_tail: Option<TornTail>,
    /// Where a writer continues in the newest segment instead of opening a
    /// new one (after the torn tail, if any, was zeroed durably), so that a
    /// restart adds no segment: `None` with no segment, or when the newest
    /// segment does not end exactly at `next_lsn`.
    pub resume: Option<Resume>,
    /// Bytes of the segments that hold the records replayed (headers and
    /// batch padding included): the log a snapshot would make redundant.
    pub log_bytes: u64,
    /// Every segment scanned, in order: (sequence number, first LSN). The
    /// WAL deletes from these once a snapshot covers them.
    pub segments: Vec<(u64, Lsn)>,
}

impl Recovered {
    /// An empty log starting at `first_lsn` (no segment yet).
    pub fn empty(first_lsn: Lsn) -> Recovered {
        Recovery::new(first_lsn, 0).finish()
    }

    /// Whether the log reaches segment `seq` (a manifest's
    /// `wal_segment_seq`): if not, its newest segments were lost.
    pub fn reaches_segment(&self, seq: u64) -> bool {
        self.next_segment_seq > seq
    }
}

/// The batch in flight at a crash, at the end of the newest segment:
/// `segment` from `offset` to its end (`segment_bytes`) is to be zeroed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub segment: String,
    pub offset: u64,
    pub segment_bytes: u64,
}

/// The end of the newest segment: its header, the offset just past its last
/// intact batch and that batch's payload CRC (the chain value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    pub segment: String,
    pub header: super::format::SegmentHeader,
    pub valid_bytes: u64,
    pub last_payload_crc: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    pub segment: String,
    pub offset: u64,
    pub reason: String,
    /// Records before the damage (what `--wal-truncate-corrupt` would keep).
    pub last_good_lsn: Option<Lsn>,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WAL corruption in {} at offset {}: {}", self.segment, self.offset, self.reason)?;
        match self.last_good_lsn {
            Some(l) => write!(f, " (records up to LSN {l} are intact)"),
            None => write!(f, " (no intact record before it)"),
        }
    }
}

/// Recover from `segments` (any order). `first_lsn` is the LSN the log must
/// start at (1 with no snapshot, snapshot LSN + 1 otherwise); segments that
/// end before it are skipped.
pub fn recover(mut segments: Vec<SegmentBytes>, first_lsn: Lsn) -> Result<Recovered, Corruption> {
    let mut scans = Vec::with_capacity(segments.len());
    for s in segments.drain(..) {
        match scan_segment(&s.bytes) {
            Ok(scan) => scans.push((s.name, scan)),
            Err(e) => return Err(header_corruption(s.name, &e)),
        }
    }
    scans.sort_by_key(|(_, s)| s.header.segment_seq);
    let mut rec = Recovery::new(first_lsn, scans.len());
    let mut records = Vec::new();
    for (name, scan) in scans {
        records.extend(rec.push(name, scan)?);
    }
    let mut out = rec.finish();
    out.records = records;
    Ok(out)
}

/// The corruption a segment whose header does not decode is.
pub fn header_corruption(segment: String, e: &FormatError) -> Corruption {
    Corruption { segment, offset: 0, reason: format!("segment header: {}", describe(e)), last_good_lsn: None }
}

/// The same recovery one segment at a time, so a caller can apply each
/// segment's records while the next is read and scanned. Segments must come
/// in sequence order, all `n_segments` of them; whatever `push` returned
/// before a `Corruption` is to be thrown away with it (start-up then stops).
pub struct Recovery {
    first_lsn: Lsn,
    n_segments: usize,
    pushed: usize,
    started: bool,
    tail_lsn: Lsn,
    /// Damage in a segment that may lie wholly before the snapshot.
    deferred: Option<Corruption>,
    out: Recovered,
}

impl Recovery {
    pub fn new(first_lsn: Lsn, n_segments: usize) -> Self {
        Recovery {
            first_lsn,
            n_segments,
            pushed: 0,
            started: false,
            tail_lsn: first_lsn,
            deferred: None,
            out: Recovered {
                records: Vec::new(),
                next_lsn: first_lsn,
                next_segment_seq: 1,
                torn_tail: None,
                resume: None,
                log_bytes: 0,
                segments: Vec::new(),
            },
        }
    }

    /// Scan one segment's bytes and [`Recovery::push`] it.
    pub fn push_bytes(&mut self, name: String, bytes: &[u8]) -> Result<Vec<Record>, Corruption> {
        match scan_segment(bytes) {
            Ok(scan) => self.push(name, scan),
            Err(e) => Err(header_corruption(name, &e)),
        }
    }

    /// The next segment's scan: its records at or after `first_lsn`, or
    /// the corruption that stops recovery.
    pub fn push(&mut self, name: String, mut scan: SegmentScan) -> Result<Vec<Record>, Corruption> {
        let first_lsn = self.first_lsn;
        let records: Vec<Record> =
            std::mem::take(&mut scan.records).into_iter().filter(|r| r.lsn >= first_lsn).collect();
        self.push_scanned(name, scan, !records.is_empty())?;
        Ok(records)
    }

    /// [`Recovery::push`] for a segment whose records the caller took as
    /// the scan met them (`scan_segment_into`): the same checks, in the
    /// same order, on the scan without its records; `took_any` says whether
    /// the segment held a record at or after `first_lsn`.
    pub fn push_scanned(&mut self, name: String, scan: SegmentScan, took_any: bool) -> Result<(), Corruption> {
        let first_lsn = self.first_lsn;
        let last = self.pushed + 1 == self.n_segments;
        if self.pushed > 0 && scan.header.segment_seq < self.out.next_segment_seq {
            return Err(Corruption {
                segment: name,
                offset: 0,
                reason: format!(
                    "segment {} comes after segment {}",
                    scan.header.segment_seq,
                    self.out.next_segment_seq - 1
                ),
                last_good_lsn: self.out.next_lsn.checked_sub(1),
            });
        }
        self.pushed += 1;
        let out = &mut self.out;
        out.segments.push((scan.header.segment_seq, scan.header.first_lsn));
        out.next_segment_seq = scan.header.segment_seq + 1;
        // Only the newest segment can be resumed; set again for each one.
        out.resume = last.then(|| Resume {
            segment: name.clone(),
            header: scan.header,
            valid_bytes: scan.valid_bytes,
            last_payload_crc: scan.last_payload_crc,
        });
        // A torn batch whose first block was lost ends the newest segment
        // cleanly but leaves its other blocks after the end: zero them too,
        // or the writer continuing here leaves them between its batches and
        // the next recovery finds damage before later segments.
        if last && scan.end == ScanEnd::Clean && scan.dirty_after_end {
            out.torn_tail = Some(TornTail {
                segment: name.clone(),
                offset: scan.valid_bytes,
                segment_bytes: scan.header.segment_bytes as u64,
            });
        }
        self.tail_lsn = scan.next_lsn;
        let last_good = out.next_lsn.checked_sub(1).filter(|&l| l >= first_lsn);
        // Damage in the previous segment is harmless only if it lay wholly
        // before the snapshot, which this segment's first LSN tells.
        if let Some(damage) = self.deferred.take() {
            if scan.header.first_lsn > first_lsn {
                return Err(damage);
            }
        }
        if scan.next_lsn <= first_lsn && !self.started {
            match scan.end {
                ScanEnd::Clean => return Ok(()), // wholly before the snapshot
                // Damage stops the scan, so `next_lsn` says nothing of the
                // batches after it: they may hold records past the snapshot.
                // The next segment's first LSN decides; in the newest
                // segment nothing can, so it is handled as damage below.
                ScanEnd::TornTail { offset, reason } | ScanEnd::Corrupt { offset, reason } if !last => {
                    self.deferred =
                        Some(Corruption { segment: name, offset, reason, last_good_lsn: first_lsn.checked_sub(1) });
                    return Ok(());
                }
                _ => {}
            }
        }
        let gap = scan.header.first_lsn > out.next_lsn;
        let overlap = scan.header.first_lsn < out.next_lsn && self.started;
        if gap || overlap {
            return Err(Corruption {
                segment: name,
                offset: 0,
                reason: format!(
                    "segment starts at LSN {}, expected {}: records {}",
                    scan.header.first_lsn,
                    out.next_lsn,
                    if gap { "are missing" } else { "overlap" }
                ),
                last_good_lsn: last_good,
            });
        }
        out.log_bytes += scan.valid_bytes;
        self.started |= took_any;
        out.next_lsn = out.next_lsn.max(scan.next_lsn);
        match scan.end {
            ScanEnd::Clean => {}
            ScanEnd::TornTail { offset, .. } if last => {
                out.torn_tail =
                    Some(TornTail { segment: name, offset, segment_bytes: scan.header.segment_bytes as u64 })
            }
            ScanEnd::TornTail { offset, reason } => {
                return Err(Corruption {
                    segment: name,
                    offset,
                    reason: format!("{reason}; later segments exist"),
                    last_good_lsn: out.next_lsn.checked_sub(1),
                })
            }
            ScanEnd::Corrupt { offset, reason } => {
                return Err(Corruption { segment: name, offset, reason, last_good_lsn: out.next_lsn.checked_sub(1) })
            }
        }
        Ok(())
    }

    /// A segment's bytes scanned with its records taken as the scan meets
    /// them (`scan_segment_into`, then [`Recovery::push_scanned`]), as the
    /// server's start-up reader takes them; returns those at or after
    /// `first_lsn`.
    #[cfg(test)]
    pub(crate) fn push_streamed(&mut self, name: String, bytes: &[u8]) -> Result<Vec<Record>, Corruption> {
        let first_lsn = self.first_lsn;
        let mut records = Vec::new();
        let scanned = super::scan::scan_segment_into(&mut { bytes }, &mut |r| {
            if r.lsn >= first_lsn {
                records.push(r)
            }
        });
        match scanned {
            Ok(scan) => self.push_scanned(name, scan, !records.is_empty()).map(|()| records),
            Err(e) => Err(header_corruption(name, &e)),
        }
    }

    /// How the log ends (`records` empty: `push` returned them).
    pub fn finish(mut self) -> Recovered {
        // The newest segment must end exactly where the log ends (it may
        // also end exactly at the snapshot, having been skipped).
        if self.tail_lsn != self.out.next_lsn {
            self.out.resume = None;
        }
        self.out
    }
}

fn describe(e: &FormatError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::format::BLOCK_BYTES;
    use crate::wal::writer::{Step, WalWriter};
    use proptest::prelude::*;

    /// Segments written by a writer with small segments, all synced.
    fn segments(batches: usize) -> Vec<SegmentBytes> {
        let mut salt = 7u64;
        let mut w = WalWriter::new(
            0,
            4 * BLOCK_BYTES,
            1,
            1,
            Box::new(move || {
                salt += 1;
                salt
            }),
        );
        let mut files: Vec<(u64, Vec<u8>)> = Vec::new();
        for i in 0..batches {
            let body = vec![i as u8; 5000];
            for step in w.append(&[(1, &body)]).unwrap() {
                match step {
                    Step::OpenSegment { segment_seq, header, segment_bytes } => {
                        let mut f = vec![0u8; segment_bytes as usize];
                        f[..header.len()].copy_from_slice(&header);
                        files.push((segment_seq, f));
                    }
                    Step::WriteBatch { offset, bytes, .. } => {
                        let f = &mut files.last_mut().unwrap().1;
                        f[offset as usize..offset as usize + bytes.len()].copy_from_slice(&bytes);
                    }
                }
            }
        }
        files.into_iter().map(|(seq, bytes)| SegmentBytes { name: format!("seg-{seq}"), bytes }).collect()
    }

    #[test]
    fn whole_log_recovers_and_gaps_or_damage_fail_closed() {
        let all = segments(6);
        assert_eq!(all.len(), 6, "one 8 KiB batch per 16 KiB segment after the header");
        let ok = recover(segments(6), 1).unwrap();
        assert_eq!((ok.records.len(), ok.next_lsn, ok.next_segment_seq, ok.torn_tail.clone()), (6, 7, 7, None));
        // Records before a snapshot are skipped.
        assert_eq!(recover(segments(6), 4).unwrap().records.first().map(|r| r.lsn), Some(4));
        // A missing middle segment is a gap.
        let mut gap = segments(6);
        gap.remove(2);
        let err = recover(gap, 1).unwrap_err();
        assert_eq!((err.segment.as_str(), err.last_good_lsn), ("seg-4", Some(2)));
        // Damage in a segment with later segments after it fails closed.
        let mut damaged = segments(6);
        damaged[1].bytes[BLOCK_BYTES + 100] ^= 1;
        let err = recover(damaged, 1).unwrap_err();
        assert_eq!((err.segment.as_str(), err.offset), ("seg-2", BLOCK_BYTES as u64));
        assert!(err.to_string().contains("seg-2"), "{err}");
        // The same damage in the last segment is a torn tail.
        let mut torn = segments(6);
        torn[5].bytes[BLOCK_BYTES + 100] ^= 1;
        let rec = recover(torn, 1).unwrap();
        let tail = rec.torn_tail.map(|t| (t.segment, t.offset, t.segment_bytes));
        assert_eq!(
            (rec.records.len(), tail),
            (5, Some(("seg-6".to_owned(), BLOCK_BYTES as u64, 4 * BLOCK_BYTES as u64)))
        );
    }

    /// A torn batch whose first block was lost (zero) and a later block
    /// kept: the newest segment ends cleanly before it, but the blocks left
    /// after the end are a torn tail to zero (found by the crash test: a
    /// restart continued the segment, left them between its batches, and
    /// the next restart refused).
    #[test]
    fn dirty_blocks_after_the_end_of_the_newest_segment_are_a_torn_tail() {
        let mut segs = segments(3);
        segs[2].bytes[BLOCK_BYTES..2 * BLOCK_BYTES].fill(0);
        let rec = recover(segs, 1).unwrap();
        let tail = rec.torn_tail.map(|t| (t.segment, t.offset));
        assert_eq!((rec.records.len(), tail), (2, Some(("seg-3".to_owned(), BLOCK_BYTES as u64))));
        assert_eq!(rec.segments, vec![(1, 1), (2, 2), (3, 3)]);
    }

    /// Damage in records a snapshot already covers must not hide the
    /// records after it (found by `aionbd check`: the newest segment, its
    /// first batch flipped, recovered zero of the acknowledged writes past
    /// the snapshot and started).
    #[test]
    fn damage_before_the_snapshot_does_not_hide_later_records() {
        // Two batches per segment: LSN 1-2 in seg-1, 3-4 in seg-2, 5-6 in seg-3.
        let one_segment = |batches: usize| {
            let mut w = WalWriter::new(0, 8 * BLOCK_BYTES, 1, 1, Box::new(|| 9));
            let mut f: Vec<u8> = Vec::new();
            for i in 0..batches {
                for step in w.append(&[(1, &vec![i as u8; 100][..])]).unwrap() {
                    match step {
                        Step::OpenSegment { header, segment_bytes, .. } => {
                            f = vec![0u8; segment_bytes as usize];
                            f[..header.len()].copy_from_slice(&header);
                        }
                        Step::WriteBatch { offset, bytes, .. } => {
                            f[offset as usize..offset as usize + bytes.len()].copy_from_slice(&bytes)
                        }
                    }
                }
            }
            vec![SegmentBytes { name: "seg-1".into(), bytes: f }]
        };
        // Four records in one segment, a snapshot at LSN 2, the first batch
        // damaged: records 3 and 4 are behind the damage.
        let mut newest = one_segment(4);
        newest[0].bytes[BLOCK_BYTES + 70] ^= 1;
        let err = recover(newest, 3).unwrap_err();
        assert_eq!((err.offset, err.last_good_lsn), (BLOCK_BYTES as u64, Some(2)), "{err}");
        // Damage in an older segment the snapshot covers whole is harmless.
        let mut old = segments(6);
        old[0].bytes[BLOCK_BYTES + 100] ^= 1;
        let rec = recover(old, 3).unwrap();
        assert_eq!(rec.records.first().map(|r| r.lsn), Some(3));
        // But not when the next segment starts past the snapshot.
        let mut old = segments(6);
        old[1].bytes[BLOCK_BYTES + 100] ^= 1;
        let err = recover(old, 2).unwrap_err();
        assert_eq!(err.segment, "seg-2");
    }

    proptest! {
        /// Recovery from records taken as the scan meets them
        /// (`scan_segment_into` and `push_scanned`, as the server's reader
        /// thread does) ends as `recover` does: the same records and log
        /// end, or the same corruption, whatever the damage, a missing
        /// segment or the snapshot's LSN.
        #[test]
        fn recovery_from_streamed_records_equals_recovery_from_whole_scans(
            batches in 1usize..9,
            first_lsn in 1u64..12,
            damage in proptest::option::of((0usize..9, 0usize..4 * BLOCK_BYTES, 1u8..=255)),
            missing in proptest::option::of(0usize..9),
        ) {
            let mut segs = segments(batches);
            if let Some((s, at, x)) = damage {
                let n = segs.len();
                segs[s % n].bytes[at] ^= x;
            }
            if let Some(m) = missing.filter(|_| segs.len() > 1) {
                let n = segs.len();
                segs.remove(m % n);
            }
            let copy = segs.iter().map(|s| SegmentBytes { name: s.name.clone(), bytes: s.bytes.clone() }).collect();
            let whole = recover(copy, first_lsn);
            let mut rec = Recovery::new(first_lsn, segs.len());
            let mut records = Vec::new();
            let streamed = segs.iter().try_for_each(|s| {
                records.extend(rec.push_streamed(s.name.clone(), &s.bytes)?);
                Ok(())
            });
            match (whole, streamed) {
                (Ok(w), Ok(())) => {
                    let mut s = rec.finish();
                    s.records = records;
                    prop_assert_eq!(w, s);
                }
                (Err(w), Err(s)) => prop_assert_eq!(w, s),
                (w, s) => prop_assert!(false, "whole {:?}, streamed {:?}", w.map(|r| r.next_lsn), s),
            }
        }
    }
}
