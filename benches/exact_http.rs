//! Exact top-10 search over HTTP against the release server, on a real data
//! set (fvecs or npy). Everything is measured side by side in one run:
//!
//! - the machine's memory read bandwidth (1 and 2 threads),
//! - QPS and p50/p99 latency with 1 and 8 keep-alive clients,
//! - the scan's effective GB/s (bytes a query scans / its p50 latency)
//!   against the bandwidth (1 thread for one partition, 2 for two)
//!   measured with no server alive just before the layout's server starts
//!   and just after it stops, the higher of the two,
//! - batch search throughput per query for batches of 1, 16 and 64 (each
//!   for `--seconds`),
//! - recall@10 against the ground truth (a correctness check: exact ~ 1.0),
//!
//! for several layouts: 2 shards x 2 partitions (default), 2 shards x 1
//! partition, 1 shard; on the full base set and on its first 10k points.
//!
//! Run: `cargo bench --bench exact_http -- --data ../shared/data/debian-minilm`
//! Options: `--queries N` (default 200), `--seconds S` per concurrent phase
//! (default 5), `--base FILE --query-file FILE --gt FILE` to name files.
//! The load clients run on the same 2 CPUs as the server: figures are for
//! the whole box, clients included. Each layout is measured once its
//! background index builds are done. `AIONBD_BIN=PATH` runs another server
//! build (e.g. an older one, for a side-by-side comparison).

mod common;

use aionbd_io::vecfile::{self, Matrix};
use common::{pct, timed_searches, vec_json, Client, Server};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Args {
    base: PathBuf,
    queries: PathBuf,
    gt: Option<PathBuf>,
    n_queries: usize,
    seconds: f64,
    /// Layouts to run, as "SHARDSxPARTITIONS" (default 2x2,2x1,1x1).
    layouts: Vec<(usize, usize)>,
}

fn parse_args() -> Args {
    let mut data: Option<PathBuf> = None;
    let (mut base, mut queries, mut gt) = (None, None, None);
    let (mut n_queries, mut seconds) = (200usize, 5.0f64);
    let mut layouts = vec![(2, 2), (2, 1), (1, 1)];
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--data" => data = Some(PathBuf::from(val())),
            "--base" => base = Some(PathBuf::from(val())),
            "--query-file" => queries = Some(PathBuf::from(val())),
            "--gt" => gt = Some(PathBuf::from(val())),
            "--queries" => n_queries = val().parse().expect("--queries N"),
            "--seconds" => seconds = val().parse().expect("--seconds S"),
            "--layouts" => {
                layouts = val()
                    .split(',')
                    .map(|l| {
                        let (s, p) = l.split_once('x').expect("--layouts 2x2,1x1");
                        (s.parse().unwrap(), p.parse().unwrap())
                    })
                    .collect()
            }
            "--bench" => {}
            other => panic!("unknown argument {other}; see the header of benches/exact_http.rs"),
        }
    }
    let dir = data.unwrap_or_else(|| PathBuf::from("../shared/data/debian-minilm"));
    let pick = |given: Option<PathBuf>, names: &[&str]| -> Option<PathBuf> {
        given.or_else(|| names.iter().map(|n| dir.join(n)).find(|p| p.exists()))
    };
    Args {
        base: pick(base, &["base.fvecs", "base.npy"])
            .expect("no base.fvecs / base.npy: pass --data DIR or --base FILE"),
        queries: pick(queries, &["queries.fvecs", "queries.npy"]).expect("no queries file: pass --query-file FILE"),
        gt: pick(gt, &["gt.ivecs", "gt.npy"]),
        n_queries,
        seconds,
        layouts,
    }
}

/// Read bandwidth of summing a 1 GiB array with `threads` threads, GB/s.
fn memory_bandwidth(threads: usize) -> f64 {
    let n = (1usize << 30) / 4;
    let data: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let chunk = n / threads;
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t0 = Instant::now();
        let total: f32 = std::thread::scope(|s| {
            let hs: Vec<_> = data
                .chunks(chunk)
                .map(|c| {
                    s.spawn(move || {
                        let mut acc = [0f32; 16];
                        for block in c.chunks_exact(16) {
                            for i in 0..16 {
                                acc[i] += block[i];
                            }
                        }
                        acc.iter().sum::<f32>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        std::hint::black_box(total);
        best = best.max((n * 4) as f64 / t0.elapsed().as_secs_f64() / 1e9);
    }
    best
}

fn load(addr: &str, base: &Matrix<f32>, n: usize) -> f64 {
    let mut c = Client::new(addr);
    let dim = base.dim;
    let (st, body) = c.post("/collections", format!(r#"{{"name":"bench","dimension":{dim}}}"#).as_bytes());
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let t0 = Instant::now();
    for start in (0..n).step_by(256) {
        let end = (start + 256).min(n);
        let pts: Vec<String> =
            (start..end).map(|i| format!(r#"{{"id":{i},"values":{}}}"#, vec_json(base.row(i)))).collect();
        let body = format!(r#"{{"points":[{}]}}"#, pts.join(","));
        let (st, resp) = c.post("/collections/bench/points", body.as_bytes());
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&resp));
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Wait until no index build runs on the collection (seen twice, 0.5 s
/// apart), so background builds do not share the CPUs with the measured
/// scans. An exact scan does not use the indexes; they are built because
/// the collection is large enough for `auto`.
fn wait_idle(addr: &str) {
    fn building(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(m) => m.iter().any(|(k, v)| (k == "building" && v == true) || building(v)),
            serde_json::Value::Array(a) => a.iter().any(building),
            _ => false,
        }
    }
    let mut c = Client::new(addr);
    let t0 = Instant::now();
    let mut quiet = 0;
    while quiet < 2 {
        assert!(t0.elapsed() < Duration::from_secs(600), "index builds still running after 10 minutes");
        std::thread::sleep(Duration::from_millis(500));
        let (_, b) = c.send("GET", "/collections/bench", b"");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        quiet = if building(&v["index"]) { 0 } else { quiet + 1 };
    }
}

fn search_body(q: &[f32]) -> Vec<u8> {
    format!(r#"{{"query":{},"metric":"dot","limit":10,"mode":"exact","include_payload":false}}"#, vec_json(q))
        .into_bytes()
}

/// One client, queries in turn: (QPS, p50 ms, p99 ms, recall@10 if gt).
fn single_client(
    addr: &str,
    queries: &Matrix<f32>,
    n: usize,
    gt: Option<&Matrix<i32>>,
) -> (f64, f64, f64, Option<f64>) {
    let mut c = Client::new(addr);
    let bodies: Vec<Vec<u8>> = (0..n).map(|i| search_body(queries.row(i % queries.rows))).collect();
    for b in bodies.iter().take(10) {
        c.post("/collections/bench/search/topk", b);
    }
    let mut hits_ok = 0usize;
    let (qps, lat) = timed_searches(addr, &bodies, |i, resp| {
        if let Some(gt) = gt {
            let v: serde_json::Value = serde_json::from_slice(resp).unwrap();
            let ids: Vec<i64> = v["hits"].as_array().unwrap().iter().map(|h| h["id"].as_i64().unwrap()).collect();
            let truth = &gt.row(i % queries.rows)[..10];
            hits_ok += ids.iter().filter(|id| truth.contains(&(**id as i32))).count();
        }
    });
    let recall = gt.map(|_| hits_ok as f64 / (n * 10) as f64);
    (qps, pct(&lat, 0.5), pct(&lat, 0.99), recall)
}

/// `clients` keep-alive clients for `seconds`: (QPS, p50 ms, p99 ms).
/// Request bodies are built once up front so the clients, which share the
/// box's CPUs with the server, spend as little as possible per request.
fn concurrent(addr: &str, queries: &Matrix<f32>, clients: usize, seconds: f64) -> (f64, f64, f64) {
    let bodies: Vec<Vec<u8>> = (0..queries.rows).map(|i| search_body(queries.row(i))).collect();
    let bodies = &bodies;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let lats: Vec<Vec<f64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..clients)
            .map(|t| {
                s.spawn(move || {
                    let mut c = Client::new(addr);
                    let mut lat = Vec::new();
                    let mut i = t * 37;
                    while Instant::now() < deadline {
                        let b = &bodies[i % bodies.len()];
                        let t0 = Instant::now();
                        let (st, _) = c.post("/collections/bench/search/topk", b);
                        assert_eq!(st, 200);
                        lat.push(t0.elapsed().as_secs_f64() * 1e3);
                        i += 1;
                    }
                    lat
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<f64> = lats.into_iter().flatten().collect();
    all.sort_by(f64::total_cmp);
    (all.len() as f64 / seconds, pct(&all, 0.5), pct(&all, 0.99))
}

/// Batch search: queries per second for batches of `size` (one client),
/// batches sent in turn for `seconds` (at least 8 of them): a fixed 512
/// queries gave a batch of 64 eight requests, too few to tell builds apart.
fn batch_throughput(addr: &str, queries: &Matrix<f32>, size: usize, seconds: f64) -> f64 {
    let mut c = Client::new(addr);
    let distinct = queries.rows.div_ceil(size).max(1);
    let bodies: Vec<Vec<u8>> = (0..distinct)
        .map(|b| {
            let qs: Vec<String> = (0..size).map(|j| vec_json(queries.row((b * size + j) % queries.rows))).collect();
            format!(
                r#"{{"queries":[{}],"metric":"dot","limit":10,"mode":"exact","include_payload":false}}"#,
                qs.join(",")
            )
            .into_bytes()
        })
        .collect();
    c.post("/collections/bench/search/topk/batch", &bodies[0]);
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < 8 || t0.elapsed().as_secs_f64() < seconds {
        let (st, resp) = c.post("/collections/bench/search/topk/batch", &bodies[sent % distinct]);
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&resp));
        sent += 1;
    }
    (sent * size) as f64 / t0.elapsed().as_secs_f64()
}

fn read_matrix<T: vecfile::Element>(p: &Path) -> Matrix<T> {
    vecfile::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn main() {
    let args = parse_args();
    let base: Matrix<f32> = read_matrix(&args.base);
    let queries: Matrix<f32> = read_matrix(&args.queries);
    let gt: Option<Matrix<i32>> = args.gt.as_deref().map(read_matrix);
    println!("data: {} base x {} dims, {} queries ({})", base.rows, base.dim, queries.rows, args.base.display());
    // The bandwidth is measured again right before each layout's single
    // client phase (a shared host's bandwidth moves by tens of percent
    // within minutes); this first figure is for the record.
    let (bw1, bw2) = (memory_bandwidth(1), memory_bandwidth(2));
    println!("memory read bandwidth: 1 thread {bw1:.1} GB/s, 2 threads {bw2:.1} GB/s");
    println!();
    println!("| set | shards x partitions | load pts/s | 1 client QPS | p50 ms | p99 ms | scan GB/s | bw GB/s | % of bw | 8 clients QPS | p50 ms | p99 ms | recall@10 |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut qps8 = std::collections::HashMap::new();
    let mut batch_rows = Vec::new();
    let sets = [("10k", 10_000.min(base.rows)), ("full", base.rows)];
    for (set, n) in sets {
        for &(shards, parts) in &args.layouts {
            // Bandwidth probes run with no server alive (an idle server
            // beside the probe read 25-45 % lower figures, which would
            // flatter the scan): one before this layout's server starts,
            // one after it stops; the higher of the two counts.
            let bw_before = memory_bandwidth(parts.min(2));
            let server = Server::start(shards, parts, &[("AIONBD_PERSISTENCE_ENABLED", "false")]);
            let load_rate = load(&server.addr, &base, n);
            wait_idle(&server.addr);
            let gt_here = if n == base.rows { gt.as_ref() } else { None };
            let (q1, p50, p99, recall) = single_client(&server.addr, &queries, args.n_queries, gt_here);
            let scanned_gb = (n * base.dim * 4) as f64 / 1e9;
            let gbps = scanned_gb / (p50 / 1e3);
            let (q8, p50_8, p99_8) = concurrent(&server.addr, &queries, 8, args.seconds);
            qps8.insert((set, shards, parts), q8);
            let batches: Vec<(usize, f64)> = if set == "full" && shards == 2 && parts == 2 {
                [1, 16, 64].map(|size| (size, batch_throughput(&server.addr, &queries, size, args.seconds))).to_vec()
            } else {
                Vec::new()
            };
            drop(server);
            let bw = bw_before.max(memory_bandwidth(parts.min(2)));
            println!(
                "| {set} | {shards} x {parts} | {load_rate:.0} | {q1:.1} | {p50:.2} | {p99:.2} | {gbps:.1} | {bw:.1} | {:.0} % | {q8:.1} | {p50_8:.2} | {p99_8:.2} | {} |",
                100.0 * gbps / bw,
                recall.map_or("-".to_owned(), |r| format!("{r:.4}"))
            );
            batch_rows.extend(batches);
        }
    }
    println!();
    for set in ["10k", "full"] {
        let Some(one) = qps8.get(&(set, 1, 1)) else { continue };
        for ((s, shards, parts), q) in &qps8 {
            if *s == set && (*shards, *parts) != (1, 1) {
                println!(
                    "{set}: 8-client throughput, {shards} shards x {parts} partitions / 1 shard = {:.2}x",
                    q / one
                );
            }
        }
    }
    println!();
    println!("| batch size | queries/s | per-query throughput vs batch of 1 |");
    println!("|---|---|---|");
    let base_rate = batch_rows.first().map_or(1.0, |r| r.1);
    for (size, rate) in &batch_rows {
        println!("| {size} | {rate:.1} | {:.2}x |", rate / base_rate);
    }
}
