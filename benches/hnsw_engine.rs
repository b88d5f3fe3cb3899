//! The HNSW engine in-process (no HTTP), on a real data set: build time,
//! bytes per vector, and for a ladder of `ef` the recall@10 and single-thread
//! QPS of traversal over 8-bit codes and over the f32 vectors (same graph,
//! same re-ranking), so the quantization's gain is measured side by side.
//! `scripts/hnsw_compare.sh` runs it next to hnswlib on the same data.
//!
//! Run: `cargo bench --bench hnsw_engine -- --data ../shared/data/debian-minilm`
//! Options: `--m 16 --ef-construction 100 --queries 1000 --json` (one JSON
//! object per line instead of the table).
//!
//! `--churn`: deletes and updates instead. Deletes 30 % of the points (and,
//! separately, updates 30 %: delete + insert of the same vector, one round
//! and three rounds), then gives recall@10 and single-thread QPS per `ef`
//! for the graph with tombstones only (`Hnsw::set_repair(false)`, the old
//! behaviour), repaired in place, and a fresh build of what is left, side
//! by side; the ground truth of the survivors is computed exactly.
//!
//! `--pending`: the points that wait outside a graph (after a bulk load):
//! codes fitted on the first half of the data, the second half scanned per
//! query exactly and by its codes with the best `side_rerank(10)`
//! re-ranked exactly, time per point and recall@10 of the codes' answer
//! against the exact scan's, side by side.

use aionbd_io::vecfile::{self, Matrix};
use aionbd_shards::index::hnsw::{side_rerank, Hnsw, HnswParams, HnswQuery, Scorer, SideCodes};
use aionbd_shards::index::sq8::Sq8;
use aionbd_shards::math::distance::kernels;
use aionbd_shards::math::topk::{Scored, TopK};
use aionbd_shards::Metric;
use std::path::PathBuf;
use std::time::Instant;

const EFS: [usize; 10] = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256];

fn build(base: &Matrix<f32>, rows: impl Iterator<Item = usize> + Clone, params: HnswParams) -> Hnsw {
    let sq = Sq8::fit_bits(
        base.dim,
        rows.clone().step_by(7).map(|i| base.row(i)),
        aionbd_shards::index::hnsw::code_bits(base.dim),
    );
    let mut g = Hnsw::new(base.dim, params, sq, 42);
    let dot = kernels().dot;
    for i in rows {
        let r = base.row(i);
        g.insert(i as u64, r, dot(r, r).sqrt());
    }
    g
}

fn main() {
    let mut data = PathBuf::from("../shared/data/debian-minilm");
    let (mut params, mut n_queries, mut json, mut quick) = (HnswParams::default(), 1000usize, false, false);
    let (mut churn_mode, mut pending_mode) = (false, false);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--data" => data = PathBuf::from(val()),
            "--m" => params.m = val().parse().unwrap(),
            "--ef-construction" => params.ef_construction = val().parse().unwrap(),
            "--queries" => n_queries = val().parse().unwrap(),
            "--json" => json = true,
            // Skip the two-thread build and the f32 traversal (tuning runs).
            "--quick" => quick = true,
            "--churn" => churn_mode = true,
            "--pending" => pending_mode = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let base: Matrix<f32> = vecfile::read(&data.join("base.fvecs")).expect("base.fvecs");
    let queries: Matrix<f32> = vecfile::read(&data.join("queries.fvecs")).expect("queries.fvecs");
    let gt: Matrix<i32> = vecfile::read(&data.join("gt.ivecs")).expect("gt.ivecs");
    let nq = n_queries.min(queries.rows);
    let n = base.rows;
    if churn_mode {
        churn(&base, &queries, &gt, nq, params);
        return;
    }
    if pending_mode {
        pending(&base, &queries, nq, params);
        return;
    }

    // One graph on one thread, and two half graphs on two threads (as the
    // server builds two partitions, one per core).
    let t = Instant::now();
    let g = build(&base, 0..n, params);
    let build1 = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut halves = std::thread::scope(|s| {
        let a = s.spawn(|| build(&base, 0..n / 2, params));
        let b = s.spawn(|| build(&base, n / 2..n, params));
        [a.join().unwrap(), b.join().unwrap()]
    });
    let build2 = t.elapsed().as_secs_f64();
    let bytes = g.mem_bytes() as f64 / n as f64;

    let dot = kernels().dot;
    let exact = |q: &[f32], id: u64| Some(-dot(q, base.row(id as usize)));
    let run = |ef: usize, quantized: bool| -> (f64, f64) {
        let mut hit = 0;
        let t = Instant::now();
        for qi in 0..nq {
            let q = queries.row(qi);
            let found = if quantized {
                g.search(&HnswQuery { query: q, metric: Metric::Dot, k: 10, ef }, |_| true, |id| exact(q, id))
            } else {
                g.search_by(&Floats { g: &g, base: &base, q }, 10, ef, |_| true, |id| exact(q, id))
            };
            hit += found.iter().filter(|s| gt.row(qi)[..10].contains(&(s.id as i32))).count();
        }
        (nq as f64 / t.elapsed().as_secs_f64(), hit as f64 / (nq * 10) as f64)
    };
    if json {
        println!(
            r#"{{"engine":"aionbd","m":{},"ef_construction":{},"build_s_1_thread":{build1:.3},"build_s_2_threads_2_partitions":{build2:.3},"bytes_per_vector":{bytes:.0}}}"#,
            params.m, params.ef_construction
        );
    } else {
        println!(
            "data: {n} x {}, {nq} queries, dot, M={} ef_construction={}",
            base.dim, params.m, params.ef_construction
        );
        println!("build: {build1:.2} s (one graph, 1 thread); {build2:.2} s (two half graphs, 2 threads)");
        println!(
            "graph + codes: {bytes:.0} bytes per vector ({:.1} % of the f32 vectors)",
            100.0 * bytes / (base.dim * 4) as f64
        );
        println!();
    }
    // The server's shape: every query walks both half graphs (one per
    // partition). Serial: the CPU a query costs; two threads, one per half
    // at once: the throughput two busy cores give without HTTP.
    let halves_run = |halves: &mut [Hnsw; 2], ef: usize, threads: bool| -> (f64, f64) {
        let walk = |g: &Hnsw, qi: usize| {
            let q = queries.row(qi);
            g.search(&HnswQuery { query: q, metric: Metric::Dot, k: 10, ef }, |_| true, |id| exact(q, id))
        };
        let t = Instant::now();
        let hit = if threads {
            std::thread::scope(|s| {
                let hs: Vec<_> = halves
                    .iter_mut()
                    .map(|g| s.spawn(move || (0..nq).map(|qi| walk(g, qi).len()).sum::<usize>()))
                    .collect();
                hs.into_iter().for_each(|h| {
                    h.join().unwrap();
                });
            });
            0
        } else {
            (0..nq)
                .map(|qi| {
                    let mut top = aionbd_shards::math::topk::TopK::new(10);
                    halves.iter().flat_map(|g| walk(g, qi)).for_each(|s| top.push(s));
                    top.into_sorted().iter().filter(|s| gt.row(qi)[..10].contains(&(s.id as i32))).count()
                })
                .sum()
        };
        (nq as f64 / t.elapsed().as_secs_f64(), hit as f64 / (nq * 10) as f64)
    };
    if !json {
        println!("| ef | recall@10 two halves | QPS two halves, 1 thread | QPS two halves, 2 threads | one graph 1 thread / halves 1 thread |");
        println!("|---|---|---|---|---|");
        for ef in [16, 24, 32, 64] {
            let (one, _) = run(ef, true);
            let (serial, r) = halves_run(&mut halves, ef, false);
            let (par, _) = halves_run(&mut halves, ef, true);
            println!("| {ef} | {r:.4} | {serial:.0} | {par:.0} | {:.2}x |", one / serial);
        }
        println!();
        println!("| ef | recall@10 sq8 | QPS sq8 | recall@10 f32 | QPS f32 | sq8 / f32 |");
        println!("|---|---|---|---|---|---|");
    }
    for ef in EFS {
        let (qq, rq) = run(ef, true);
        let (qf, rf) = if quick { (f64::NAN, f64::NAN) } else { run(ef, false) };
        if json {
            println!(
                r#"{{"engine":"aionbd","ef":{ef},"recall":{rq:.4},"qps":{qq:.0},"recall_f32":{rf:.4},"qps_f32":{qf:.0}}}"#
            );
        } else {
            println!("| {ef} | {rq:.4} | {qq:.0} | {rf:.4} | {qf:.0} | {:.2}x |", qq / qf);
        }
    }
}

/// Float traversal: the f32 rows (node keys are row numbers here), with
/// the same prefetching as the codes get.
struct Floats<'a> {
    g: &'a Hnsw,
    base: &'a Matrix<f32>,
    q: &'a [f32],
}

impl Scorer for Floats<'_> {
    fn dist(&self, n: u32) -> f32 {
        -(kernels().dot)(self.q, self.base.row(self.g.key_of(n) as usize))
    }

    fn prefetch(&self, n: u32, whole: bool) {
        let row = self.base.row(self.g.key_of(n) as usize);
        let lines = if whole { row.len() * 4 / 64 } else { 1 };
        for i in 0..lines {
            // SAFETY: a hint; the address is inside the row.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch((row.as_ptr() as *const i8).add(i * 64), _MM_HINT_T0);
            }
        }
    }
}

/// Recall@10 against `truth` (per query) and single-thread QPS of `g` at
/// `ef`; panics if a key `live` refuses answers.
fn measure(
    g: &Hnsw,
    base: &Matrix<f32>,
    queries: &Matrix<f32>,
    truth: &[Vec<usize>],
    ef: usize,
    live: &[bool],
) -> (f64, f64) {
    let dot = kernels().dot;
    let mut hit = 0;
    let t = Instant::now();
    for (qi, want) in truth.iter().enumerate() {
        let q = queries.row(qi);
        let found = g.search(
            &HnswQuery { query: q, metric: Metric::Dot, k: 10, ef },
            |_| true,
            |id| Some(-dot(q, base.row(id as usize))),
        );
        assert!(found.iter().all(|s| live[s.id as usize]), "a deleted point answered");
        hit += found.iter().filter(|s| want.contains(&(s.id as usize))).count();
    }
    (truth.len() as f64 / t.elapsed().as_secs_f64(), hit as f64 / (truth.len() * 10) as f64)
}

/// Exact top 10 by dot of the first `nq` queries among the live rows.
fn truth_of(base: &Matrix<f32>, queries: &Matrix<f32>, nq: usize, live: &[bool]) -> Vec<Vec<usize>> {
    let dot = kernels().dot;
    (0..nq)
        .map(|qi| {
            let q = queries.row(qi);
            let mut top = aionbd_shards::math::topk::TopK::new(10);
            for i in (0..base.rows).filter(|&i| live[i]) {
                top.push(aionbd_shards::math::topk::Scored { key: -dot(q, base.row(i)), id: i as u64 });
            }
            top.into_sorted().into_iter().map(|s| s.id as usize).collect()
        })
        .collect()
}

const CHURN_EFS: [usize; 5] = [16, 32, 64, 128, 256];

fn churn(base: &Matrix<f32>, queries: &Matrix<f32>, gt: &Matrix<i32>, nq: usize, params: HnswParams) {
    let n = base.rows;
    let dot = kernels().dot;
    let t = Instant::now();
    let g = build(base, 0..n, params);
    println!(
        "data: {n} x {}, {nq} queries, dot, M={} ef_construction={}; full build {:.1} s",
        base.dim,
        params.m,
        params.ef_construction,
        t.elapsed().as_secs_f64()
    );
    // A random 30 %, in random order (a seeded shuffle).
    let pick = |seed: u64| -> Vec<usize> {
        let mut ids: Vec<usize> = (0..n).collect();
        let mut s = seed;
        for i in (1..n).rev() {
            let j = (aionbd_shards::math::rng::splitmix64(&mut s) % (i as u64 + 1)) as usize;
            ids.swap(i, j);
        }
        ids.truncate(n * 3 / 10);
        ids
    };
    let gone = pick(7);
    let mut live = vec![true; n];
    gone.iter().for_each(|&i| live[i] = false);
    let survivors: Vec<usize> = (0..n).filter(|&i| live[i]).collect();
    let truth = truth_of(base, queries, nq, &live);

    let per_op = |t: Instant, ops: usize| t.elapsed().as_secs_f64() * 1e6 / ops as f64;
    let mut tomb = g.clone();
    tomb.set_repair(false);
    let t = Instant::now();
    gone.iter().for_each(|&i| tomb.remove(i as u64));
    let tomb_us = per_op(t, gone.len());
    let mut rep = g.clone();
    let t = Instant::now();
    gone.iter().for_each(|&i| rep.remove(i as u64));
    let rep_us = per_op(t, gone.len());
    let t = Instant::now();
    let fresh = build(base, survivors.iter().copied(), params);
    let fresh_s = t.elapsed().as_secs_f64();
    let bytes = |g: &Hnsw| g.mem_bytes() as f64 / g.live() as f64;
    println!();
    println!("Delete 30 % ({} points, random order):", gone.len());
    println!(
        "- tombstones only: {tomb_us:.1} us per delete, {} nodes, {:.0} bytes per live point",
        tomb.nodes(),
        bytes(&tomb)
    );
    println!(
        "- repaired: {rep_us:.1} us per delete, {} nodes ({} free slots), {:.0} bytes per live point",
        rep.nodes(),
        rep.free_slots(),
        bytes(&rep)
    );
    println!("- fresh build of the survivors: {fresh_s:.1} s, {:.0} bytes per live point", bytes(&fresh));
    let table = |graphs: [&Hnsw; 3], truth: &[Vec<usize>], live: &[bool]| {
        println!();
        println!("| ef | tombstones recall@10 | QPS | repaired recall@10 | QPS | fresh build recall@10 | QPS |");
        println!("|---|---|---|---|---|---|---|");
        for ef in CHURN_EFS {
            // QPS: the best of three passes, the graphs in turn (a shared box).
            let mut r = [(0.0f64, 0.0f64); 3];
            for _ in 0..3 {
                for (i, g) in graphs.iter().enumerate() {
                    let (qps, recall) = measure(g, base, queries, truth, ef, live);
                    r[i] = (r[i].0.max(qps), recall);
                }
            }
            println!(
                "| {ef} | {:.4} | {:.0} | {:.4} | {:.0} | {:.4} | {:.0} |",
                r[0].1, r[0].0, r[1].1, r[1].0, r[2].1, r[2].0
            );
        }
    };
    table([&tomb, &rep, &fresh], &truth, &live);
    drop((tomb, rep, fresh));

    // Updates: the same vectors deleted and inserted again (rounds of a
    // fresh random 30 % each); the fresh build is the first graph.
    let truth: Vec<Vec<usize>> = (0..nq).map(|qi| gt.row(qi)[..10].iter().map(|&i| i as usize).collect()).collect();
    let all = vec![true; n];
    let (mut tomb, mut rep) = (g.clone(), g.clone());
    tomb.set_repair(false);
    for round in 1..=3 {
        let ids = pick(100 + round);
        let update = |h: &mut Hnsw| {
            let t = Instant::now();
            for &i in &ids {
                let r = base.row(i);
                h.insert(i as u64, r, dot(r, r).sqrt());
            }
            per_op(t, ids.len())
        };
        let (tu, ru) = (update(&mut tomb), update(&mut rep));
        if round == 2 {
            continue;
        }
        println!();
        println!("Update 30 % x {round} ({} points per round, delete + insert of the same vector):", ids.len());
        println!(
            "- tombstones only: {tu:.0} us per update, {} nodes, {:.0} bytes per live point",
            tomb.nodes(),
            bytes(&tomb)
        );
        println!(
            "- repaired: {ru:.0} us per update, {} nodes ({} free slots), {:.0} bytes per live point",
            rep.nodes(),
            rep.free_slots(),
            bytes(&rep)
        );
        table([&tomb, &rep, &g], &truth, &all);
    }
}

/// `--pending`: the second half of the data as points waiting beside a
/// graph of the first half, scored exactly and by codes.
fn pending(base: &Matrix<f32>, queries: &Matrix<f32>, nq: usize, params: HnswParams) {
    let (n, half) = (base.rows, base.rows / 2);
    let bits = aionbd_shards::index::hnsw::code_bits(base.dim);
    let sq = Sq8::fit_bits(base.dim, (0..half).step_by(7).map(|i| base.row(i)), bits);
    let g = Hnsw::new(base.dim, params, sq, 42);
    let dot = kernels().dot;
    let mut side = SideCodes::default();
    let t = Instant::now();
    for i in half..n {
        let r = base.row(i);
        g.side_insert(&mut side, i as u64, r, dot(r, r).sqrt());
    }
    let code_ns = t.elapsed().as_secs_f64() * 1e9 / (n - half) as f64;
    let exact_top = |q: &[f32], ids: &mut dyn Iterator<Item = u64>| {
        let mut top = TopK::new(10);
        ids.for_each(|id| top.push(Scored { key: -dot(q, base.row(id as usize)), id }));
        top.into_sorted()
    };
    let (mut exact_s, mut codes_s, mut hits) = (0.0, 0.0, 0);
    for qi in 0..nq {
        let q = queries.row(qi);
        let t = Instant::now();
        let want = exact_top(q, &mut (half as u64..n as u64));
        exact_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let near = g.side_nearest(&side, q, Metric::Cosine, side_rerank(10), |_| true);
        let got = exact_top(q, &mut near.into_iter());
        codes_s += t.elapsed().as_secs_f64();
        hits += got.iter().filter(|s| want.iter().any(|w| w.id == s.id)).count();
    }
    let per_point = |s: f64| s * 1e9 / (nq * (n - half)) as f64;
    println!("{} pending points x {} dims ({bits}-bit codes), {nq} queries, top-10 cosine", n - half, base.dim);
    println!("coding: {code_ns:.0} ns per point");
    println!("| scan | us per query | ns per point | recall@10 vs the exact scan |");
    println!("|---|---|---|---|");
    println!("| exact | {:.0} | {:.1} | 1 |", exact_s * 1e6 / nq as f64, per_point(exact_s));
    println!(
        "| codes, best {} re-ranked | {:.0} | {:.1} | {:.4} |",
        side_rerank(10),
        codes_s * 1e6 / nq as f64,
        per_point(codes_s),
        hits as f64 / (10 * nq) as f64
    );
    println!("speed-up: {:.2}x", exact_s / codes_s);
}
