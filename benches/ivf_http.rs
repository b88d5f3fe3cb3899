//! Approximate search over HTTP on a real data set, side by side in one run:
//! exact, `ivf` at several `nprobe`, and `auto` at several `target_recall`:
//! recall@10 against the ground truth, QPS and latency with 1 client, QPS
//! with 8 clients for exact and auto 0.95; index build time (from the
//! server's own report) and index bytes per vector against raw vectors.
//!
//! Run: `cargo bench --bench ivf_http -- --data ../shared/data/debian-minilm`
//! Options: `--queries N` (default 500), `--seconds S` for the 8-client
//! phases (default 5), `--metric dot|l2|cosine` (default dot),
//! `--partitions 1|2` per collection (default 2, one per shard),
//! `--rounds N --between CMD` (after the table, N times: run the shell
//! command CMD, e.g. a peer's benchmark, then the 8-client hnsw phase at
//! ef 24 and 32), `--hnsw-only` (exact, hnsw and auto rows, no IVF rows, no filtered table:
//! what `scripts/hnsw_http_compare.sh` runs between two hnswlib runs).

mod common;

use aionbd_io::vecfile::{self, Matrix};
use common::{concurrent, pct, timed_searches, vec_json, Client, Server};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn body(q: &[f32], metric: &str, extra: &str) -> Vec<u8> {
    format!(r#"{{"query":{},"metric":"{metric}","limit":10,"include_payload":false{extra}}}"#, vec_json(q)).into_bytes()
}

/// One client over all query bodies: (QPS, p50, p99, recall@10, mode seen, estimated recall).
fn run_one(addr: &str, bodies: &[Vec<u8>], gt: &Matrix<i32>) -> (f64, f64, f64, f64, String, f64) {
    let mut c = Client::new(addr);
    for b in bodies.iter().take(10) {
        c.post("/collections/bench/search/topk", b);
    }
    let (mut ok, mut mode, mut est) = (0usize, String::new(), 0.0);
    let (qps, lat) = timed_searches(addr, bodies, |i, resp| {
        let v: serde_json::Value = serde_json::from_slice(resp).unwrap();
        let ids: Vec<i32> = v["hits"].as_array().unwrap().iter().map(|h| h["id"].as_i64().unwrap() as i32).collect();
        ok += ids.iter().filter(|id| gt.row(i)[..10].contains(id)).count();
        mode = v["mode"].as_str().unwrap_or("").to_owned();
        est = v["estimated_recall"].as_f64().unwrap_or(v["recall_at_k"].as_f64().unwrap_or(0.0));
    });
    (qps, pct(&lat, 0.5), pct(&lat, 0.99), ok as f64 / (bodies.len() * 10) as f64, mode, est)
}

fn main() {
    let mut data = PathBuf::from("../shared/data/debian-minilm");
    let (mut n_queries, mut seconds, mut metric, mut partitions) = (500usize, 5.0f64, "dot".to_owned(), 2usize);
    let mut hnsw_only = false;
    let (mut rounds, mut between) = (0usize, String::new());
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--data" => data = PathBuf::from(val()),
            "--queries" => n_queries = val().parse().unwrap(),
            "--seconds" => seconds = val().parse().unwrap(),
            "--metric" => metric = val(),
            "--partitions" => partitions = val().parse().unwrap(),
            "--hnsw-only" => hnsw_only = true,
            "--rounds" => rounds = val().parse().unwrap(),
            "--between" => between = val(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let base: Matrix<f32> = vecfile::read(&data.join("base.fvecs")).expect("base.fvecs");
    let queries: Matrix<f32> = vecfile::read(&data.join("queries.fvecs")).expect("queries.fvecs");
    let gt: Matrix<i32> = vecfile::read(&data.join("gt.ivecs")).expect("gt.ivecs");
    let n_queries = n_queries.min(queries.rows);
    println!(
        "data: {} x {}, {n_queries} queries, metric {metric}, 2 shards x {partitions} partitions",
        base.rows, base.dim
    );
    let server = Server::start(2, partitions, &[("AIONBD_PERSISTENCE_ENABLED", "false")]);
    let addr = server.addr.clone();
    let mut c = Client::new(&addr);
    let (st, _) = c.post("/collections", format!(r#"{{"name":"bench","dimension":{}}}"#, base.dim).as_bytes());
    assert_eq!(st, 200);
    for start in (0..base.rows).step_by(256) {
        let pts: Vec<String> = (start..(start + 256).min(base.rows))
            .map(|i| format!(r#"{{"id":{i},"values":{},"payload":{{"n":{i}}}}}"#, vec_json(base.row(i))))
            .collect();
        let (st, r) = c.post("/collections/bench/points", format!(r#"{{"points":[{}]}}"#, pts.join(",")).as_bytes());
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&r));
    }
    // `auto` drops IVF lists the graph makes redundant; a search that
    // forces them (here one at nprobe 1) keeps them, built again if need be.
    if !hnsw_only {
        let (st, r) =
            c.post("/collections/bench/search/topk", &body(queries.row(0), &metric, r#","mode":"ivf","nprobe":1"#));
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&r));
    }
    // Wait for both partitions' indexes (built in the background).
    let t0 = Instant::now();
    let info = settled(&mut c, false, !hnsw_only);
    let indexed_after = t0.elapsed();
    let parts = info["index"]["partitions"].as_array().unwrap();
    let build_ms: Vec<u64> = parts.iter().map(|p| p["build_ms"].as_u64().unwrap()).collect();
    let index_bytes: u64 = parts.iter().map(|p| p["bytes"].as_u64().unwrap()).sum();
    let raw = (base.rows * base.dim * 4) as f64;
    println!(
        "index: {} lists per partition; last build + calibration per partition (both at once, one per core): \
         {:?} ms of work; every point indexed {:.1} s after the last upsert",
        parts[0]["lists"],
        build_ms,
        indexed_after.as_secs_f64()
    );
    println!(
        "index memory: {:.0} bytes per vector = {:.1} % of the raw f32 vectors ({} bytes each)",
        index_bytes as f64 / base.rows as f64,
        100.0 * index_bytes as f64 / raw,
        base.dim * 4
    );
    println!("calibration (partition 0): {}", parts[0]["calibration"]);
    let g = &parts[0]["hnsw"];
    println!(
        "hnsw: build {:?} ms of work per partition, {:.0} bytes per vector; calibration (partition 0): {}",
        parts.iter().map(|p| p["hnsw"]["build_ms"].as_u64().unwrap()).collect::<Vec<_>>(),
        parts.iter().map(|p| p["hnsw"]["bytes"].as_u64().unwrap()).sum::<u64>() as f64 / base.rows as f64,
        g["calibration"]
    );
    println!();
    println!("| mode | recall@10 | estimated | QPS 1 client | p50 ms | p99 ms | speed-up vs exact |");
    println!("|---|---|---|---|---|---|---|");
    let qs = |extra: &str| -> Vec<Vec<u8>> { (0..n_queries).map(|i| body(queries.row(i), &metric, extra)).collect() };
    let exact = qs(r#","mode":"exact""#);
    // Warm-up: the first 64 queries a partition serves trigger a
    // recalibrating rebuild (API decisions: calibration); measure after it,
    // as a user's steady state, and report the exact QPS while it ran.
    let (during, ..) = run_one(&addr, &exact, &gt);
    let t1 = Instant::now();
    settled(&mut c, true, !hnsw_only);
    let recal = t1.elapsed();
    let (eq, ..) = run_one(&addr, &exact, &gt);
    let mut configs: Vec<(String, Vec<u8>)> = vec![("exact".into(), Vec::new())];
    for n in [1, 2, 4, 8, 16, 32, 64].into_iter().filter(|_| !hnsw_only) {
        configs.push((format!("ivf nprobe={n}"), format!(r#","mode":"ivf","nprobe":{n}"#).into_bytes()));
    }
    for ef in [16, 20, 24, 32, 64, 128] {
        configs.push((format!("hnsw ef={ef}"), format!(r#","mode":"hnsw","ef":{ef}"#).into_bytes()));
    }
    for t in [0.8, 0.9, 0.95, 0.99] {
        configs.push((format!("auto target={t}"), format!(r#","mode":"auto","target_recall":{t}"#).into_bytes()));
    }
    let mut recalls = std::collections::HashMap::new();
    for (label, extra) in &configs {
        let bodies = if label == "exact" { exact.clone() } else { qs(std::str::from_utf8(extra).unwrap()) };
        let (qps, p50, p99, recall, mode, est) = run_one(&addr, &bodies, &gt);
        println!("| {label} ({mode}) | {recall:.4} | {est:.3} | {qps:.0} | {p50:.2} | {p99:.2} | {:.1}x |", qps / eq);
        recalls.insert(label.clone(), recall);
    }
    println!();
    let auto95 = qs(r#","mode":"auto","target_recall":0.95"#);
    let e8 = concurrent(&addr, &exact, 8, seconds);
    let a8 = concurrent(&addr, &auto95, 8, seconds);
    println!(
        "8 clients: exact {e8:.0} QPS, auto 0.95 {a8:.0} QPS = {:.1}x (recall {:.4})",
        a8 / e8,
        recalls["auto target=0.95"]
    );
    for ef in [16, 20, 24, 32, 64, 128] {
        let h = concurrent(&addr, &qs(&format!(r#","mode":"hnsw","ef":{ef}"#)), 8, seconds);
        println!("8 clients: hnsw ef={ef} {h:.0} QPS (recall {:.4})", recalls[&format!("hnsw ef={ef}")]);
    }
    // Alternate a peer's measurement (`--between`, run while this server
    // idles) with ours, so both see the same machine minute by minute.
    for r in 1..=rounds {
        if !between.is_empty() {
            let st = std::process::Command::new("sh").arg("-c").arg(&between).status().expect("run --between");
            assert!(st.success(), "--between failed: {st}");
        }
        for ef in [24, 32] {
            let h = concurrent(&addr, &qs(&format!(r#","mode":"hnsw","ef":{ef}"#)), 8, seconds);
            println!("round {r}: 8 clients: hnsw ef={ef} {h:.0} QPS (recall {:.4})", recalls[&format!("hnsw ef={ef}")]);
        }
    }
    if !hnsw_only {
        filtered(&addr, &queries, n_queries, &metric, base.rows);
    }
    println!(
        "warm-up: exact {during:.0} QPS while the first recalibrating rebuild ran ({eq:.0} after); \
         it ended {:.1} s after the warm-up queries",
        recal.as_secs_f64()
    );
}

/// Filtered searches at 1 %, 10 % and 50 % selectivity (payload `n` = id,
/// filter `n < x`): recall@10 against the exact filtered answer, QPS with
/// 1 client, per mode.
fn filtered(addr: &str, queries: &Matrix<f32>, n_queries: usize, metric: &str, rows: usize) {
    println!();
    println!("| filter | mode | answered as | recall@10 | QPS 1 client | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    for share in [0.01, 0.1, 0.5] {
        let below = (rows as f64 * share) as u64;
        let with = |mode: &str| -> Vec<Vec<u8>> {
            let extra = format!(r#","mode":"{mode}","filter":{{"must":[{{"field":"n","lt":{below}}}]}}"#);
            (0..n_queries).map(|i| body(queries.row(i), metric, &extra)).collect()
        };
        // The exact filtered answers are the ground truth here.
        let mut c = Client::new(addr);
        let truth: Vec<i32> = with("exact")
            .iter()
            .flat_map(|b| {
                let (_, r) = c.post("/collections/bench/search/topk", b);
                let v: serde_json::Value = serde_json::from_slice(&r).unwrap();
                let mut ids: Vec<i32> =
                    v["hits"].as_array().unwrap().iter().map(|h| h["id"].as_i64().unwrap() as i32).collect();
                ids.resize(10, -1);
                ids
            })
            .collect();
        let gt = Matrix { rows: n_queries, dim: 10, data: truth };
        for mode in ["exact", "auto", "hnsw", "ivf"] {
            let (qps, p50, p99, recall, used, _) = run_one(addr, &with(mode), &gt);
            println!(
                "| n < {below} ({:.0} %) | {mode} | {used} | {recall:.4} | {qps:.0} | {p50:.2} | {p99:.2} |",
                share * 100.0
            );
        }
    }
}

/// Wait until every partition's indexes are settled (no build running,
/// nothing scanned exactly) and, with `real`, calibrated on real queries;
/// IVF lists only with `ivf` (else they may be dropped); the collection's
/// info then.
fn settled(c: &mut Client, real: bool, ivf: bool) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let (_, b) = c.send("GET", "/collections/bench", b"");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let parts = v["index"]["partitions"].as_array().unwrap().clone();
        let ok = |p: &serde_json::Value| {
            let lists = p["lists"].as_u64().unwrap_or(0) > 0
                && p["exact_points"] == 0
                && (!real || p["calibration_real_queries"].as_u64().unwrap_or(0) > 0);
            p["kind"] == "ivf"
                && p["building"] == false
                && (!ivf || lists)
                && p["hnsw"]["building"] == false
                && p["hnsw"]["exact_points"] == 0
                && (!real || p["hnsw"]["calibration_real_queries"].as_u64().unwrap_or(0) > 0)
        };
        if parts.iter().all(ok) {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "indexes not settled: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
