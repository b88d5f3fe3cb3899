//! Durable ingest over HTTP in each durability mode (sync on write, every
//! N writes, every second) and with persistence off (the request path's
//! ceiling: nothing written to disk), measured side by side in one run:
//!
//! - 1 client, single-point PUTs in turn (one fdatasync per write: the
//!   baseline group commit has to beat),
//! - 32 concurrent clients, single-point PUTs (group commit shares syncs),
//! - 1 client, 256-point batch upserts,
//!
//! each into a collection of its own (so index work in one phase does not
//! depend on how many points an earlier one wrote), each reporting
//! points/s, p50/p99 acknowledgement latency, the
//! fdatasyncs issued (from /metrics) and the CPU time per point of the
//! server process and of this load generator (from /proc and getrusage;
//! both share the machine's cores).
//!
//! Run: `cargo bench --bench ingest_http -- --data ../shared/data/debian-minilm`
//! Options: `--seconds S` per phase (default 5), `--base FILE`,
//! `--max-batch N` (writes per group commit, default 16 as shipped),
//! `--every-n N` (the every-N mode's N, default 64),
//! `--modes sync,every-n,every-1s,off` (default all four),
//! `--no-batches` (single points only),
//! `--bin LABEL=PATH` (repeatable: server builds to compare, each mode run
//! on each build in turn, the order reversed every round; default this
//! build, or `AIONBD_BIN`), `--rounds N` (default 1). The summary gives
//! medians over rounds of ratios taken within one round: sync on write
//! with 32 writers against persistence off, and each build's server CPU
//! per point against the first build's.
//! Restart speed has its own benchmark (restart_http).
//! The data directory is a temporary directory on the same disk as /tmp.

mod common;

use aionbd_io::vecfile::{self, Matrix};
use common::{metric, own_cpu_seconds, pct, vec_json, Client, Server};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `clients` writers sending single-point PUTs (ids from `first_id`) to
/// collection `name` for `seconds`: (points, latencies ms).
fn single_writers(
    addr: &str,
    name: &str,
    rows_json: &[String],
    clients: usize,
    seconds: f64,
    first_id: u64,
) -> (u64, Vec<f64>) {
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
                            &format!("/collections/{name}/points/{id}"),
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
/// per point (server, load generator) between `before` and now; returns the
/// server's CPU us per point.
fn print_row(server: &Server, before: &Cost, prefix: &str, phase: &str, rate: f64, lat: &[f64], points: u64) -> f64 {
    let after = Cost::now(server);
    let syncs = after.syncs - before.syncs;
    let per_point = |s: f64| s * 1e6 / points.max(1) as f64;
    let per_sync = if syncs == 0 { "-".to_owned() } else { format!("{:.1}", points as f64 / syncs as f64) };
    let server_us = per_point(after.server_cpu - before.server_cpu);
    println!(
        "| {prefix} | {phase} | {rate:.0} | {:.2} | {:.2} | {syncs} | {per_sync} | {server_us:.0} | {:.0} |",
        pct(lat, 0.5),
        pct(lat, 0.99),
        per_point(after.load_cpu - before.load_cpu),
    );
    server_us
}

/// One durability mode: its name, the `--modes` key that selects it, and
/// its settings.
struct Mode {
    name: &'static str,
    key: &'static str,
    env: Vec<(&'static str, String)>,
}

/// One build's figures in one mode, by phase label.
type Phases = Vec<(&'static str, Figure)>;
/// Every run's phases: `[round][build][mode]`.
type Figures = Vec<Vec<Vec<Phases>>>;

/// What one phase measured: points/s and the server's CPU us per point.
#[derive(Clone, Copy)]
struct Figure {
    rate: f64,
    server_us: f64,
}

/// The median of `v` (the mean of the middle two for an even count); NaN
/// if empty.
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One build's phases, run and printed; the figures per phase label.
#[allow(clippy::too_many_arguments)]
fn run_mode(
    bin: &std::path::Path,
    label: &str,
    round: usize,
    mode: &Mode,
    base: &Matrix<f32>,
    rows_json: &[String],
    seconds: f64,
    batches: bool,
) -> Phases {
    let env: Vec<(&str, &str)> = mode.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_bin(bin, 2, 2, &env);
    let addr = server.addr.clone();
    let mut c = Client::new(&addr);
    // Each phase writes into a collection of its own, so a build that wrote
    // more points in an earlier phase does not pay for larger index builds
    // in the next one.
    let create = |c: &mut Client, name: &str| {
        let (st, _) = c.post("/collections", format!(r#"{{"name":"{name}","dimension":{}}}"#, base.dim).as_bytes());
        assert_eq!(st, 200);
    };
    let mut figures = Vec::new();
    let prefix = format!("{label} | {round} | {}", mode.name);
    for (phase, name, clients, first) in
        [(ONE_WRITER, "ingest1", 1usize, 0u64), (MANY_WRITERS, "ingest32", 32, 1u64 << 40)]
    {
        create(&mut c, name);
        let before = Cost::now(&server);
        let t0 = Instant::now();
        let (n, lat) = single_writers(&addr, name, rows_json, clients, seconds, first);
        let rate = n as f64 / t0.elapsed().as_secs_f64();
        let server_us = print_row(&server, &before, &prefix, phase, rate, &lat, n);
        figures.push((phase, Figure { rate, server_us }));
    }
    if !batches {
        return figures;
    }
    // 256-point batches, one client.
    create(&mut c, "ingest");
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
    let server_us = print_row(&server, &before, &prefix, BATCHES, rate, &lat, n);
    figures.push((BATCHES, Figure { rate, server_us }));
    figures
}

const ONE_WRITER: &str = "1 writer, single points";
const MANY_WRITERS: &str = "32 writers, single points";
const BATCHES: &str = "1 client, 256-point batches";

fn main() {
    let mut data = PathBuf::from("../shared/data/debian-minilm");
    let mut base_file: Option<PathBuf> = None;
    let mut seconds = 5.0;
    let mut max_batch = "16".to_owned();
    let mut every_n = "64".to_owned();
    let mut modes_wanted: Option<Vec<String>> = None;
    let mut batches = true;
    let mut bins: Vec<(String, PathBuf)> = Vec::new();
    let mut rounds = 1usize;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data" => data = PathBuf::from(it.next().expect("--data DIR")),
            "--base" => base_file = Some(PathBuf::from(it.next().expect("--base FILE"))),
            "--seconds" => seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds S"),
            "--max-batch" => max_batch = it.next().expect("--max-batch N"),
            "--every-n" => every_n = it.next().expect("--every-n N"),
            "--modes" => modes_wanted = Some(it.next().expect("--modes LIST").split(',').map(str::to_owned).collect()),
            "--no-batches" => batches = false,
            "--bin" => {
                let v = it.next().expect("--bin LABEL=PATH");
                let (label, path) = v.split_once('=').expect("--bin LABEL=PATH");
                bins.push((label.to_owned(), PathBuf::from(path)));
            }
            "--rounds" => rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds N"),
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
        Mode {
            name: "sync on write",
            key: "sync",
            env: vec![("AIONBD_WAL_GROUP_COMMIT_MAX_BATCH", max_batch.clone())],
        },
        Mode {
            name: "every N writes",
            key: "every-n",
            env: relaxed(("AIONBD_WAL_SYNC_EVERY_N_WRITES", every_n.clone())),
        },
        Mode { name: "every 1 s", key: "every-1s", env: relaxed(("AIONBD_WAL_SYNC_INTERVAL_SECONDS", "1".to_owned())) },
        // The request path without the log: what this box serves when
        // nothing is written to disk, the ceiling for every mode above.
        Mode {
            name: "no WAL (persistence off)",
            key: "off",
            env: vec![("AIONBD_PERSISTENCE_ENABLED", "false".to_owned())],
        },
    ];
    let modes: Vec<&Mode> = match &modes_wanted {
        None => modes.iter().collect(),
        Some(keys) => {
            for k in keys {
                assert!(modes.iter().any(|m| m.key == k), "--modes: unknown mode {k} (sync, every-n, every-1s, off)");
            }
            modes.iter().filter(|m| keys.iter().any(|k| k == m.key)).collect()
        }
    };
    if bins.is_empty() {
        bins.push(("this build".to_owned(), common::default_bin()));
    }
    for (label, path) in &bins {
        println!("build {label}: {}", path.display());
    }
    println!("every N writes: N = {every_n}");
    println!();
    println!(
        "| build | round | mode | phase | points/s | p50 ms | p99 ms | fdatasyncs | points per fdatasync | server CPU us/point | load CPU us/point |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    // figures[round][build][mode] = the phases' figures.
    let mut figures: Figures = Vec::new();
    for round in 0..rounds {
        let mut per_build = vec![vec![Vec::new(); modes.len()]; bins.len()];
        for (m, mode) in modes.iter().enumerate() {
            // Each build in turn, the order reversed every round so that
            // the box's drift does not favour one of them.
            let order: Vec<usize> =
                if round % 2 == 0 { (0..bins.len()).collect() } else { (0..bins.len()).rev().collect() };
            for b in order {
                let (label, bin) = &bins[b];
                per_build[b][m] = run_mode(bin, label, round + 1, mode, &base, &rows_json, seconds, batches);
            }
        }
        figures.push(per_build);
    }
    summary(&bins, &modes, &figures);
}

/// Medians over rounds of the ratios each round gives.
fn summary(bins: &[(String, PathBuf)], modes: &[&Mode], figures: &Figures) {
    let get = |round: usize, b: usize, key: &str, phase: &str| -> Option<Figure> {
        let m = modes.iter().position(|m| m.key == key)?;
        figures[round][b][m].iter().find(|(p, _)| *p == phase).map(|(_, f)| *f)
    };
    let rounds = figures.len();
    let over_rounds = |f: &dyn Fn(usize) -> Option<f64>| median((0..rounds).filter_map(f).collect());
    println!();
    println!("medians over {rounds} round(s):");
    for (b, (label, _)) in bins.iter().enumerate() {
        println!("build {label}:");
        let sync_one = |r: usize| get(r, b, "sync", ONE_WRITER);
        let sync_many = |r: usize| get(r, b, "sync", MANY_WRITERS);
        let off_many = |r: usize| get(r, b, "off", MANY_WRITERS);
        if modes.iter().any(|m| m.key == "sync") {
            println!(
                "  group commit (sync on write): 32 writers / 1 writer = {:.1}x the points/s",
                over_rounds(&|r| Some(sync_many(r)?.rate / sync_one(r)?.rate))
            );
        }
        if modes.iter().any(|m| m.key == "sync") && modes.iter().any(|m| m.key == "off") {
            println!(
                "  ceiling: 32 writers with no WAL = {:.1}x the sync-on-write one-writer rate",
                over_rounds(&|r| Some(off_many(r)?.rate / sync_one(r)?.rate))
            );
            println!(
                "  sync on write, 32 writers / persistence off, 32 writers = {:.2}x the points/s",
                over_rounds(&|r| Some(sync_many(r)?.rate / off_many(r)?.rate))
            );
        }
        for mode in modes {
            for phase in [ONE_WRITER, MANY_WRITERS, BATCHES] {
                let rate = over_rounds(&|r| Some(get(r, b, mode.key, phase)?.rate));
                if rate.is_nan() {
                    continue;
                }
                let cpu = over_rounds(&|r| Some(get(r, b, mode.key, phase)?.server_us));
                let vs_first = if b == 0 {
                    String::new()
                } else {
                    format!(
                        ", {:.2}x build {}'s",
                        over_rounds(&|r| Some(
                            get(r, b, mode.key, phase)?.server_us / get(r, 0, mode.key, phase)?.server_us
                        )),
                        bins[0].0
                    )
                };
                println!("  {} | {phase}: {rate:.0} points/s, server CPU {cpu:.1} us/point{vs_first}", mode.name);
            }
        }
    }
}
