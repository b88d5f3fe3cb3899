//! The two memory modes side by side in one run (`index.memory_mode`):
//! `full` keeps every f32 row in memory, `light` writes the rows the graph
//! holds to a rows file and reads the few candidates a query re-ranks back
//! with direct I/O. Per mode: RSS after the load, settled and at its peak
//! against the raw f32 vectors; then, once real queries recalibrated the
//! graph, recall@10 against the ground truth, QPS and p50/p99 latency with
//! one client for `auto` at 0.90 / 0.95 / 0.99, QPS with 2 and 8 clients at
//! 0.95, and exact search with one client.
//!
//! Run: `cargo bench --bench memory_modes -- --data ../shared/data/debian-minilm`
//! Options: `--queries N` (default 500), `--query-file NAME` (default
//! queries.fvecs, with gt.ivecs; e.g. `queries_appstream.fvecs` with
//! `--gt-file gt_appstream.ivecs`), `--metric cosine|dot|l2` (default cosine), `--seconds S` for the
//! 2- and 8-client phases (default 5), `--modes full,light` (the order,
//! repeatable: `full,light,full,light` alternates them). Persistence is off
//! (the log does not change what is measured); 2 shards x 2 partitions.

mod common;

use aionbd_io::vecfile::{self, Matrix};
use common::{concurrent, pct, timed_searches, vec_json, Client, Server};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn body(q: &[f32], metric: &str, extra: &str) -> Vec<u8> {
    format!(r#"{{"query":{},"metric":"{metric}","limit":10,"include_payload":false{extra}}}"#, vec_json(q)).into_bytes()
}

/// One client over every body: (QPS, p50 ms, p99 ms, recall@10).
fn one_client(addr: &str, bodies: &[Vec<u8>], gt: &Matrix<i32>) -> (f64, f64, f64, f64) {
    let mut found = 0usize;
    let (qps, lat) = timed_searches(addr, bodies, |i, resp| {
        let v: Value = serde_json::from_slice(resp).unwrap();
        let ids = v["hits"].as_array().unwrap().iter().map(|h| h["id"].as_i64().unwrap() as i32);
        found += ids.filter(|id| gt.row(i)[..10].contains(id)).count();
    });
    (qps, pct(&lat, 0.5), pct(&lat, 0.99), found as f64 / (bodies.len() * 10) as f64)
}

/// Wait until every partition's graph holds every point, nothing is
/// pending, no row the graph holds is in memory (light), and with `real`
/// the graph's calibration rests on real queries.
fn settled(c: &mut Client, points: usize, real: bool) -> Value {
    let t0 = Instant::now();
    loop {
        let (_, b) = c.send("GET", "/collections/bench", b"");
        let v: Value = serde_json::from_slice(&b).unwrap();
        let parts = v["index"]["partitions"].as_array().unwrap().clone();
        let ok = |p: &Value| {
            p["hnsw"]["building"] == false
                && p["hnsw"]["exact_points"] == 0
                && p["rows"]["in_memory"].as_u64().unwrap_or(0) == 0
                && (!real || p["hnsw"]["calibration_real_queries"].as_u64().unwrap_or(0) > 0)
        };
        let nodes: u64 = parts.iter().map(|p| p["hnsw"]["nodes"].as_u64().unwrap_or(0)).sum();
        if parts.iter().all(ok) && nodes == points as u64 {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(600), "indexes not settled: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Args {
    data: PathBuf,
    query_file: String,
    gt_file: String,
    n_queries: usize,
    metric: String,
    seconds: f64,
    modes: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        data: PathBuf::from("../shared/data/debian-minilm"),
        query_file: "queries.fvecs".into(),
        gt_file: "gt.ivecs".into(),
        n_queries: 500,
        metric: "cosine".into(),
        seconds: 5.0,
        modes: vec!["full".into(), "light".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--data" => a.data = PathBuf::from(val()),
            "--query-file" => a.query_file = val(),
            "--gt-file" => a.gt_file = val(),
            "--queries" => a.n_queries = val().parse().unwrap(),
            "--metric" => a.metric = val(),
            "--seconds" => a.seconds = val().parse().unwrap(),
            "--modes" => a.modes = val().split(',').map(str::to_owned).collect(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn main() {
    let a = args();
    let base: Matrix<f32> = vecfile::read(&a.data.join("base.fvecs")).expect("base.fvecs");
    let queries: Matrix<f32> = vecfile::read(&a.data.join(&a.query_file)).expect("query file");
    let gt: Matrix<i32> = vecfile::read(&a.data.join(&a.gt_file)).expect("ground truth file");
    let n_queries = a.n_queries.min(queries.rows);
    let raw_mib = (base.rows * base.dim * 4) as f64 / (1 << 20) as f64;
    println!(
        "data: {} x {} ({raw_mib:.1} MiB of f32), {n_queries} queries from {}, metric {}, 2 shards x 2 partitions",
        base.rows, base.dim, a.query_file, a.metric
    );
    let qs = |extra: &str| -> Vec<Vec<u8>> { (0..n_queries).map(|i| body(queries.row(i), &a.metric, extra)).collect() };
    let mut table = Vec::new();
    let mut memory = Vec::new();
    for mode in &a.modes {
        let server =
            Server::start(2, 2, &[("AIONBD_PERSISTENCE_ENABLED", "false"), ("AIONBD_MEMORY_MODE", mode.as_str())]);
        let addr = server.addr.clone();
        let mut c = Client::new(&addr);
        let (st, _) = c.post("/collections", format!(r#"{{"name":"bench","dimension":{}}}"#, base.dim).as_bytes());
        assert_eq!(st, 200);
        let t0 = Instant::now();
        for start in (0..base.rows).step_by(256) {
            let pts: Vec<String> = (start..(start + 256).min(base.rows))
                .map(|i| format!(r#"{{"id":{i},"values":{}}}"#, vec_json(base.row(i))))
                .collect();
            let (st, r) =
                c.post("/collections/bench/points", format!(r#"{{"points":[{}]}}"#, pts.join(",")).as_bytes());
            assert_eq!(st, 200, "{}", String::from_utf8_lossy(&r));
        }
        let loaded = t0.elapsed().as_secs_f64();
        settled(&mut c, base.rows, false);
        let built = t0.elapsed().as_secs_f64();
        // Real queries recalibrate the graph (no rebuild); measure after.
        let auto95 = qs(r#","mode":"auto","target_recall":0.95"#);
        one_client(&addr, &auto95, &gt);
        settled(&mut c, base.rows, true);
        std::thread::sleep(Duration::from_secs(3));
        let (rss, peak) = (server.status_mib("VmRSS"), server.status_mib("VmHWM"));
        memory.push(format!(
            "| {mode} | {loaded:.0} s + {:.0} s | {rss:.0} MiB | **{:.2}x** | {peak:.0} MiB | {:.2}x | {:.2}x |",
            built - loaded,
            rss / raw_mib,
            peak / raw_mib,
            peak / rss
        ));
        for target in [0.9, 0.95, 0.99] {
            let (qps, p50, p99, recall) =
                one_client(&addr, &qs(&format!(r#","mode":"auto","target_recall":{target}"#)), &gt);
            table.push(format!("| {mode} | auto {target} | {recall:.4} | {qps:.0} | {p50:.2} | {p99:.2} | | |"));
        }
        let (two, eight) = (concurrent(&addr, &auto95, 2, a.seconds), concurrent(&addr, &auto95, 8, a.seconds));
        table.push(format!("| {mode} | auto 0.95, 2 / 8 clients | | | | | {two:.0} | {eight:.0} |"));
        let (qps, p50, p99, recall) = one_client(&addr, &qs(r#","mode":"exact""#)[..n_queries.min(200)], &gt);
        table.push(format!("| {mode} | exact | {recall:.4} | {qps:.0} | {p50:.2} | {p99:.2} | | |"));
        eprintln!("{mode}: done");
    }
    println!();
    println!("| mode | load + index | settled RSS | / raw | peak RSS | peak / raw | peak / settled |");
    println!("|---|---|---|---|---|---|---|");
    memory.iter().for_each(|l| println!("{l}"));
    println!();
    println!("| mode | search | recall@10 | QPS 1 client | p50 ms | p99 ms | QPS 2 clients | QPS 8 clients |");
    println!("|---|---|---|---|---|---|---|---|");
    table.iter().for_each(|l| println!("{l}"));
}
