//! Thousands of seeded crashes on the simulated disk: whatever the crash
//! point and whichever unsynced sectors survive, recovery holds every
//! acknowledged record, holds nothing but a prefix of what was written (no
//! holes, nothing invented), and never reports corruption.

use super::format::{Lsn, BLOCK_BYTES};
use super::recover::{recover, SegmentBytes};
use super::simdisk::{Rng, SimDisk};
use super::writer::{Step, WalWriter};
use std::collections::BTreeMap;

fn seg_name(seq: u64) -> String {
    format!("wal-{seq:016x}.log")
}

fn body_for(lsn: Lsn, len: usize) -> Vec<u8> {
    (0..len).map(|i| (lsn as usize * 31 + i * 7) as u8).collect()
}

/// Run writes until a crash; return the highest acknowledged LSN.
fn run_until_crash(
    disk: &mut SimDisk,
    writer: &mut WalWriter,
    rng: &mut Rng,
    written: &mut BTreeMap<Lsn, Vec<u8>>,
    acked: &mut Lsn,
) {
    let batches = 1 + rng.below(30);
    for _ in 0..batches {
        let n = 1 + rng.below(4) as usize;
        let first = writer.next_lsn();
        let bodies: Vec<Vec<u8>> = (0..n).map(|i| body_for(first + i as u64, rng.below(3000) as usize)).collect();
        let records: Vec<(u8, &[u8])> = bodies.iter().map(|b| (9u8, b.as_slice())).collect();
        let steps = writer.append(&records).expect("batches fit");
        for (i, b) in bodies.into_iter().enumerate() {
            written.insert(first + i as u64, b);
        }
        for step in steps {
            match step {
                Step::OpenSegment { segment_seq, header, segment_bytes } => {
                    let name = seg_name(segment_seq);
                    disk.create(&name, segment_bytes as usize);
                    disk.write_at(&name, 0, &header);
                    if rng.below(40) == 0 {
                        disk.crash(rng);
                        return;
                    }
                    disk.sync(&name);
                }
                Step::WriteBatch { segment_seq, offset, bytes, last_lsn } => {
                    let name = seg_name(segment_seq);
                    if rng.below(40) == 0 {
                        disk.crash(rng); // before the write
                        return;
                    }
                    disk.write_at(&name, offset, &bytes);
                    if rng.below(15) == 0 {
                        disk.crash(rng); // written, not synced: may tear
                        return;
                    }
                    disk.sync(&name);
                    *acked = last_lsn; // acknowledged only after the sync
                }
            }
        }
    }
    disk.crash(rng);
}

fn recover_disk(disk: &SimDisk) -> super::recover::Recovered {
    let segments = disk.names().into_iter().map(|n| SegmentBytes { bytes: disk.read(&n), name: n }).collect();
    recover(segments, 1).unwrap_or_else(|c| panic!("corruption after a plain crash: {c}"))
}

#[test]
fn seeded_crashes_keep_every_acknowledged_record_and_no_holes() {
    let mut torn_tails = 0;
    let mut rollovers = 0;
    let mut resumed = 0;
    for seed in 0..3000u64 {
        let mut rng = Rng::new(seed);
        let mut disk = SimDisk::default();
        let mut written: BTreeMap<Lsn, Vec<u8>> = BTreeMap::new();
        let mut acked: Lsn = 0;
        let mut last: Option<super::recover::Recovered> = None;
        // Three lives: crash, recover, keep writing where the log ended
        // (in the newest segment, as the server does).
        for _life in 0..3 {
            let salt_seed = rng.next_u64();
            let mut salt_rng = Rng::new(salt_seed);
            let salt = Box::new(move || salt_rng.next_u64());
            let mut writer = match &last {
                None => WalWriter::new(0, 8 * BLOCK_BYTES, 1, 1, salt),
                Some(rec) => WalWriter::after_recovery(0, 8 * BLOCK_BYTES, rec, salt),
            };
            resumed += writer.current_segment().is_some() as usize;
            run_until_crash(&mut disk, &mut writer, &mut rng, &mut written, &mut acked);
            let rec = recover_disk(&disk);
            if let Some((name, offset)) = &rec.torn_tail {
                // Repair before writing on: zero the torn tail, durably.
                torn_tails += 1;
                let len = disk.read(name).len() - *offset as usize;
                disk.write_at(name, *offset, &vec![0; len]);
                disk.sync(name);
            }
            rollovers += (rec.next_segment_seq > 2) as usize;
            let got: Vec<Lsn> = rec.records.iter().map(|r| r.lsn).collect();
            let expect: Vec<Lsn> = (1..rec.next_lsn).collect();
            assert_eq!(got, expect, "seed {seed}: LSNs must run 1.. without holes");
            assert!(
                rec.next_lsn > acked,
                "seed {seed}: acknowledged LSN {acked} lost (recovered up to {})",
                rec.next_lsn - 1
            );
            for r in &rec.records {
                assert_eq!(Some(&r.body), written.get(&r.lsn), "seed {seed}: LSN {} recovered wrong bytes", r.lsn);
            }
            // What was not recovered was never acknowledged; forget it.
            written.retain(|&l, _| l < rec.next_lsn);
            last = Some(rec);
        }
    }
    eprintln!(
        "3000 seeds x 3 lives: {torn_tails} torn tails repaired, {rollovers} recoveries after rollover, \
         {resumed} lives continued in the recovered segment"
    );
    // The runs must actually exercise torn tails and segment rollover.
    assert!(torn_tails > 100, "only {torn_tails} torn tails");
    assert!(rollovers > 100, "only {rollovers} runs with rollover");
    assert!(resumed > 1000, "only {resumed} lives resumed a segment");
}
