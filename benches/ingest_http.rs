//! Durable ingest over HTTP in each durability mode (sync on write, every
//! N writes, every second) and with persistence off (the request path's
//! ceiling: nothing written to disk), measured side by side in one run:
//!
//! - 1 client, single-point PUTs in turn (one fdatasync per write: the
//!   baseline group commit has to beat),
//! - 32 concurrent clients, single-point PUTs (group commit shares syncs),
//! - 1 client, 256-point batch upserts,
//!
//! each reporting points/s, p50/p99 acknowledgement latency, the
//! fdatasyncs issued (from /metrics) and the CPU time per point of the
//! server process and of this load generator (from /proc and getrusage;
//! both share the machine's cores).
//!
//! Run: `cargo bench --bench ingest_http -- --data ../shared/data/debian-minilm`
//! Options: `--seconds S` per phase (default 5), `--base FILE`,
//! `--max-batch N` (writes per group commit, default 16 as shipped),
//! `--every-n N` (the every-N mode's N, default 64).
//! Restart speed has its own benchmark (restart_http).
//! The data directory is a temporary directory on the same disk as /tmp.

mod common;

use aionbd_io::vecfile::{self, Matrix};
use common::{metric, own_cpu_seconds, pct, vec_json, Client, Server};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `clients` writers sending single-point PUTs (ids from `first_id`) for
/// `seconds`: (points, latencies ms).
fn single_writers(addr: &str, rows_json: &[String], clients: usize, seconds: f64, first_id: u64) -> (u64, Vec<f64>) {
    let bodies: Vec<Vec<u8>> = (0..rows_json.len().min(2000))
        .map(|i| format!(r#"{{"values":{}}}"#, rows_json[i % rows_json.len()]).into_bytes())
        .collect();
    let bodies = &bodies;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let per: Vec<Vec<f64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..clients as u64)
            .map(|t| {
                s.spawn(move || {
                    let mut c = Client::new(addr);
                    let mut lat = Vec::new();
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        let id = first_id + t * 10_000_000 + i;
                        let t0 = Instant::now();
                        let (st, resp) = c.send(
                            "PUT",
                            &format!("/collections/ingest/points/{id}"),
                            &bodies[(id % bodies.len() as u64) as usize],
                        );
                        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&resp));
                        lat.push(t0.elapsed().as_secs_f64() * 1e3);
                        i += 1;
                    }
                    lat
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<f64> = per.into_iter().flatten().collect();
    all.sort_by(f64::total_cmp);
    (all.len() as u64, all)
}

/// What a phase cost: fdatasyncs and CPU seconds of the server and of this
/// load generator, read before and after it.
struct Cost {
    syncs: u64,
    server_cpu: f64,
    load_cpu: f64,
}

impl Cost {
    fn now(server: &Server) -> Cost {
        Cost {
            syncs: metric(&server.addr, "persistence_wal_fsyncs_total"),
            server_cpu: server.cpu_seconds(),
            load_cpu: own_cpu_seconds(),
        }
    }
}

/// One table row: points/s, latency quantiles (`lat` sorted), syncs and CPU
/// per point (server, load generator) between `before` and now.
fn print_row(server: &Server, before: &Cost, mode: &str, phase: &str, rate: f64, lat: &[f64], points: u64) {
    let after = Cost::now(server);
    let syncs = after.syncs - before.syncs;
    let per_point = |s: f64| s * 1e6 / points.max(1) as f64;
    let per_sync = if syncs == 0 { "-".to_owned() } else { format!("{:.1}", points as f64 / syncs as f64) };
    println!(
        "| {mode} | {phase} | {rate:.0} | {:.2} | {:.2} | {syncs} | {per_sync} | {:.0} | {:.0} |",
        pct(lat, 0.5),
        pct(lat, 0.99),
        per_point(after.server_cpu - before.server_cpu),
        per_point(after.load_cpu - before.load_cpu),
    );
}

/// One durability mode: its name and the settings that select it.
struct Mode {
    name: &'static str,
    env: Vec<(&'static str, String)>,
}

fn main() {
    let mut data = PathBuf::from("../shared/data/debian-minilm");
    let mut base_file: Option<PathBuf> = None;
    let mut seconds = 5.0;
    let mut max_batch = "16".to_owned();
    let mut every_n = "64".to_owned();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data" => data = PathBuf::from(it.next().expect("--data DIR")),
            "--base" => base_file = Some(PathBuf::from(it.next().expect("--base FILE"))),
            "--seconds" => seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds S"),
            "--max-batch" => max_batch = it.next().expect("--max-batch N"),
            "--every-n" => every_n = it.next().expect("--every-n N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let path = base_file.unwrap_or_else(|| data.join("base.fvecs"));
    let base: Matrix<f32> = vecfile::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("data: {} x {} ({}); 2 shards", base.rows, base.dim, path.display());
    // Request bodies are built from these before any timing starts.
    let rows_json: Vec<String> = (0..base.rows.min(4096)).map(|i| vec_json(base.row(i))).collect();
    println!("group commit takes at most {max_batch} writes per fdatasync (AIONBD_WAL_GROUP_COMMIT_MAX_BATCH)");
    let relaxed = |extra: (&'static str, String)| {
        vec![
            ("AIONBD_WAL_SYNC_ON_WRITE", "false".to_owned()),
            extra,
            ("AIONBD_WAL_GROUP_COMMIT_MAX_BATCH", max_batch.clone()),
        ]
    };
    let modes = [
        Mode { name: "sync on write", env: vec![("AIONBD_WAL_GROUP_COMMIT_MAX_BATCH", max_batch.clone())] },
        Mode { name: "every N writes", env: relaxed(("AIONBD_WAL_SYNC_EVERY_N_WRITES", every_n.clone())) },
        Mode { name: "every 1 s", env: relaxed(("AIONBD_WAL_SYNC_INTERVAL_SECONDS", "1".to_owned())) },
        // The request path without the log: what this box serves when
        // nothing is written to disk, the ceiling for every mode above.
        Mode { name: "no WAL (persistence off)", env: vec![("AIONBD_PERSISTENCE_ENABLED", "false".to_owned())] },
    ];
    println!("every N writes: N = {every_n}");
    println!();
    println!(
        "| mode | phase | points/s | p50 ms | p99 ms | fdatasyncs | points per fdatasync | server CPU us/point | load CPU us/point |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    // 32-writer points/s per mode, and the sync-on-write one-writer rate.
    let mut many = Vec::new();
    let mut one = 0.0;
    for mode in &modes {
        let env: Vec<(&str, &str)> = mode.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = Server::start(2, 2, &env);
        let addr = server.addr.clone();
        let mut c = Client::new(&addr);
        let (st, _) = c.post("/collections", format!(r#"{{"name":"ingest","dimension":{}}}"#, base.dim).as_bytes());
        assert_eq!(st, 200);
        let mut rates = Vec::new();
        for (label, clients, first) in
            [("1 writer, single points", 1usize, 0u64), ("32 writers, single points", 32, 1u64 << 40)]
        {
            let before = Cost::now(&server);
            let t0 = Instant::now();
            let (n, lat) = single_writers(&addr, &rows_json, clients, seconds, first);
            let rate = n as f64 / t0.elapsed().as_secs_f64();
            rates.push(rate);
            print_row(&server, &before, mode.name, label, rate, &lat, n);
        }
        if one == 0.0 {
            one = rates[0];
        }
        many.push(rates[1]);
        // 256-point batches, one client.
        let before = Cost::now(&server);
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let t0 = Instant::now();
        let (mut n, mut lat, mut start) = (0u64, Vec::new(), 0usize);
        while Instant::now() < deadline {
            // Fresh ids over pre-formatted vectors: the client's own float
            // formatting must not be what is timed.
            let mut body = String::with_capacity(256 * (rows_json[0].len() + 32));
            body.push_str(r#"{"points":["#);
            for j in 0..256 {
                if j > 0 {
                    body.push(',');
                }
                let id = (2u64 << 40) + (start + j) as u64;
                body.push_str(&format!(r#"{{"id":{id},"values":{}}}"#, rows_json[(start + j) % rows_json.len()]));
            }
            body.push_str("]}");
            let t = Instant::now();
            let (st, resp) = c.post("/collections/ingest/points", body.as_bytes());
            assert_eq!(st, 200, "{}", String::from_utf8_lossy(&resp));
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            n += 256;
            start += 256;
        }
        let rate = n as f64 / t0.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        print_row(&server, &before, mode.name, "1 client, 256-point batches", rate, &lat, n);
    }
    println!();
    println!("group commit (sync on write): 32 writers / 1 writer = {:.1}x the points/s", many[0] / one);
    println!(
        "ceiling: 32 writers with no WAL at all = {:.1}x the sync-on-write one-writer rate ({:.0} points/s)",
        many[3] / one,
        many[3]
    );
}
