//! How long one batch of new points can stall a partition while its map
//! of point id -> slot grows: a `HashMap` (ahash, as the partition used),
//! which moves every entry into a table twice the size within one insert,
//! against `IdIndex`, which moves a few per insert; then a partition's
//! whole apply path (`Partition::upsert`, 384-dim rows, which uses
//! `IdIndex`), first under glibc's own mmap threshold (raised by the maps
//! freed before it, as a server's freed indexes raise it), then under the
//! fixed threshold the server sets (`reclaim::fixed_mmap_threshold`), where
//! the partition's arrays past 4 MiB grow by `mremap` instead of copying.
//! Batches of 256 new ids, as `aionbd-load --batch 256` sends; the maps in
//! turn, twice each, in one run. Prints the total time, the
//! worst batch, and every batch over 5 ms with the id count it started at.
//!
//! Run: `cargo bench --bench id_growth -- [IDS]` (default 1,900,000: past
//! the doublings at 917,504 and 1,835,008 ids).

use aionbd_shards::math::id_index::IdIndex;
use aionbd_shards::partition::Partition;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const BATCH: usize = 256;
const DIM: usize = 384;

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| a != "--bench")
        .map_or(1_900_000, |a| a.parse().expect("usage: id_growth [IDS]"));
    // Ids spread over u64 as users' ids may be.
    let id = |i: usize| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let row: Vec<f32> = (0..DIM).map(|i| (i as f32).sin()).collect();
    for kind in ["hashmap", "id index", "hashmap", "id index", "partition", "partition, fixed mmap threshold"] {
        if kind == "partition, fixed mmap threshold" {
            aionbd::reclaim::fixed_mmap_threshold(false);
        }
        let mut map: HashMap<u64, u32, ahash::RandomState> = HashMap::default();
        let mut index = IdIndex::default();
        let mut keys: Vec<u64> = Vec::new();
        let mut partition = Partition::new(DIM);
        let (mut worst, mut slow) = (Duration::ZERO, Vec::new());
        let t0 = Instant::now();
        for start in (0..n).step_by(BATCH) {
            let t = Instant::now();
            for i in start..(start + BATCH).min(n) {
                match kind {
                    "hashmap" => {
                        map.insert(id(i), i as u32);
                    }
                    "id index" => {
                        index.insert(id(i), i as u32, &keys);
                        keys.push(id(i));
                    }
                    _ => {
                        partition.upsert(id(i), &row, Default::default());
                    }
                }
            }
            let e = t.elapsed();
            worst = worst.max(e);
            if e > Duration::from_millis(5) {
                slow.push((start, (e.as_secs_f64() * 1e4).round() / 10.0));
            }
        }
        std::hint::black_box((&map, &index, &partition));
        println!(
            "{kind}: {n} ids in batches of {BATCH} in {:.0} ms; worst batch {:.1} ms; batches over 5 ms (ids, ms): {slow:?}",
            t0.elapsed().as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3
        );
    }
}
