//! The exact scan in process, without HTTP: one partition of N random
//! 384-dim rows, each kernel set this CPU runs (scalar, AVX2+FMA,
//! AVX-512), dot and l2, batches of 1, 16 and 64 queries: ms per batch,
//! queries/s, and the batch's speed-up over one query, in one run. Also the
//! blocked kernel alone on data in L1 (its arithmetic ceiling, GFLOP/s).
//!
//! Run: `cargo bench --bench scan_kernels -- [ROWS]` (default 100,000; at
//! 384 dims that is 154 MB, well past the L3, so one query is bound by
//! memory bandwidth and a batch by arithmetic). `--kernels avx512f` keeps
//! one kernel set.

use aionbd_shards::math::distance::{available, Kernels, Metric, QUERY_BLOCK, ROW_BLOCK};
use aionbd_shards::partition::{Partition, SearchParams};
use aionbd_shards::payload::Payload;
use std::time::Instant;

const DIM: usize = 384;

fn main() {
    let mut rows = 100_000usize;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--kernels" => only = args.next(),
            "--bench" => {}
            n => rows = n.parse().expect("usage: scan_kernels [ROWS] [--kernels NAME]"),
        }
    }
    let mut s = 12345u64;
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let mut p = Partition::new(DIM);
    for i in 0..rows {
        let v: Vec<f32> = (0..DIM).map(|_| next()).collect();
        p.upsert(i as u64, &v, Payload::new());
    }
    let queries: Vec<Vec<f32>> = (0..64).map(|_| (0..DIM).map(|_| next()).collect()).collect();
    println!("{rows} rows x {DIM} dims ({:.0} MB), top-10", (rows * DIM * 4) as f64 / 1e6);
    println!();
    println!("| kernels | metric | batch | ms per batch | queries/s | vs batch of 1 |");
    println!("|---|---|---|---|---|---|");
    let kernels: Vec<Kernels> =
        available().into_iter().filter(|k| only.as_deref().is_none_or(|o| o == k.name)).collect();
    for k in &kernels {
        for metric in [Metric::Dot, Metric::L2] {
            let params = SearchParams { metric, k: 10, filter: None };
            let mut one = 0.0;
            for size in [1usize, 16, 64] {
                let batch = &queries[..size];
                let reps = if size == 1 { 64 } else { 8 };
                std::hint::black_box(p.search_with(k, batch, &params));
                let t = Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(p.search_with(k, batch, &params));
                }
                let per = t.elapsed().as_secs_f64() / reps as f64;
                let qps = size as f64 / per;
                if size == 1 {
                    one = qps;
                }
                println!("| {} | {metric:?} | {size} | {:.3} | {qps:.0} | {:.2}x |", k.name, per * 1e3, qps / one);
            }
        }
    }
    println!();
    println!("| kernels | blocked kernel, operands in L1 | GFLOP/s |");
    println!("|---|---|---|");
    for k in &kernels {
        let qs: [&[f32]; QUERY_BLOCK] = std::array::from_fn(|i| queries[i].as_slice());
        let xs: [&[f32]; ROW_BLOCK] = std::array::from_fn(|i| queries[QUERY_BLOCK + i].as_slice());
        let reps = if k.name == "scalar" { 20_000 } else { 1_000_000 };
        let t = Instant::now();
        let mut acc = 0f32;
        for _ in 0..reps {
            acc += (k.dot_block)(std::hint::black_box(&qs), std::hint::black_box(&xs))[0][0];
        }
        std::hint::black_box(acc);
        let per = t.elapsed().as_secs_f64() / reps as f64;
        let flops = (QUERY_BLOCK * ROW_BLOCK * DIM * 2) as f64;
        println!(
            "| {} | {QUERY_BLOCK} queries x {ROW_BLOCK} rows: {:.1} ns | {:.1} |",
            k.name,
            per * 1e9,
            flops / per / 1e9
        );
    }
}
