//! Restart speed against the disk: load N points (default 1,000,000) over
//! HTTP with snapshots on as shipped, SIGKILL the server, drop the page
//! cache, time a sequential O_DIRECT read of the data files (snapshot + WAL
//! segments), drop the cache again and time the restart (snapshot load +
//! WAL replay, until the server listens). Reports both speeds over the same
//! bytes and their ratio.
//!
//! Run (as root, for the cache drop): `cargo bench --bench restart_http --
//! --data ../shared/data/debian-minilm` Options: `--points N`, `--base FILE`.
//! Vectors cycle through the base file with fresh ids.
//!
//! `--wal-points N`: instead, N single-point upserts (PUT, 32 writers) with
//! snapshots off, so the restart replays a log of N small records.
//! `--relayout`: then also restart with 1 shard instead of 2 (the server
//! re-places the data into the new layout first) and time that too.

mod common;

use aionbd_io::vecfile::{self, Matrix};
use common::{metric, vec_json, Client, Server};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const O_DIRECT: i32 = 0o40000;

fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// Files the server reads at start: snapshots and WAL segments.
fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.path().is_dir()) {
        for e in std::fs::read_dir(shard.path()).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("snap-") && n.ends_with(".bin") {
                out.push(e.path());
            }
        }
        for e in std::fs::read_dir(shard.path().join("wal")).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("wal-0") && n.ends_with(".log") {
                out.push(e.path());
            }
        }
    }
    out
}

/// Sequential O_DIRECT read of every file, 4 MiB at a time: (bytes, time).
fn read_direct(files: &[PathBuf]) -> (u64, Duration) {
    const CHUNK: usize = 4 << 20;
    let mut raw = vec![0u8; CHUNK + 4096];
    let off = raw.as_ptr().align_offset(4096);
    let buf = &mut raw[off..off + CHUNK];
    let t0 = Instant::now();
    let mut total = 0u64;
    for f in files {
        let mut file = std::fs::OpenOptions::new().read(true).custom_flags(O_DIRECT).open(f).unwrap();
        loop {
            let n = file.read(buf).unwrap();
            total += n as u64;
            if n < CHUNK {
                break;
            }
        }
    }
    (total, t0.elapsed())
}

/// Batch upserts of 256 points from 4 writers.
fn load_batches(addr: &str, rows: &[String], points: usize) {
    let writers = 4;
    std::thread::scope(|s| {
        for w in 0..writers {
            s.spawn(move || {
                let mut c = Client::new(addr);
                let mut start = w * 256;
                while start < points {
                    let end = (start + 256).min(points);
                    let pts: Vec<String> =
                        (start..end).map(|i| format!(r#"{{"id":{i},"values":{}}}"#, rows[i % rows.len()])).collect();
                    let (st, resp) =
                        c.post("/collections/big/points", format!(r#"{{"points":[{}]}}"#, pts.join(",")).as_bytes());
                    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&resp));
                    start += writers * 256;
                }
            });
        }
    });
}

fn main() {
    let mut data = PathBuf::from("../shared/data/debian-minilm");
    let mut base_file: Option<PathBuf> = None;
    let mut points = 1_000_000usize;
    let mut wal_points = 0usize;
    let mut relayout = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data" => data = PathBuf::from(it.next().expect("--data DIR")),
            "--base" => base_file = Some(PathBuf::from(it.next().expect("--base FILE"))),
            "--points" => points = it.next().and_then(|v| v.parse().ok()).expect("--points N"),
            "--wal-points" => wal_points = it.next().and_then(|v| v.parse().ok()).expect("--wal-points N"),
            "--relayout" => relayout = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let path = base_file.unwrap_or_else(|| data.join("base.fvecs"));
    let base: Matrix<f32> = vecfile::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if wal_points > 0 {
        points = wal_points;
    }
    println!("data: {} x {} ({}), loading {points} points, 2 shards", base.rows, base.dim, path.display());
    let cap = points.to_string();
    let mut env = vec![("AIONBD_MAX_POINTS_PER_COLLECTION", cap.as_str())];
    if wal_points > 0 {
        // Only the log: no snapshot, and syncs once a second (the layout
        // of the log is the same batches either way).
        env.extend([("AIONBD_SNAPSHOT_MIN_WAL_BYTES", "1099511627776"), ("AIONBD_WAL_SYNC_ON_WRITE", "false")]);
    }
    let mut server = Server::start(2, 2, &env);
    let addr = server.addr.clone();
    let (st, _) =
        Client::new(&addr).post("/collections", format!(r#"{{"name":"big","dimension":{}}}"#, base.dim).as_bytes());
    assert_eq!(st, 200);
    // Pre-render each base row once; batches are stitched from them.
    let rows: Vec<String> = (0..base.rows).map(|i| vec_json(base.row(i))).collect();
    let t0 = Instant::now();
    if wal_points > 0 {
        let writers = 32;
        std::thread::scope(|s| {
            for w in 0..writers {
                let (rows, addr) = (&rows, &addr);
                s.spawn(move || {
                    let mut c = Client::new(addr);
                    for i in (w..points).step_by(writers) {
                        let body = format!(r#"{{"values":{}}}"#, rows[i % rows.len()]);
                        let (st, resp) = c.send("PUT", &format!("/collections/big/points/{i}"), body.as_bytes());
                        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&resp));
                    }
                });
            }
        });
    } else {
        load_batches(&addr, &rows, points);
    }
    let load = t0.elapsed().as_secs_f64();
    assert_eq!(metric(&addr, "points") as usize, points);
    // Let a snapshot in flight finish (a real crash would not wait; the
    // WAL then holds more, which the figures below include either way).
    while metric(&addr, "persistence_checkpoint_in_flight") > 0 {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "loaded in {load:.1} s ({:.0} points/s), {} snapshot(s) taken",
        points as f64 / load,
        metric(&addr, "persistence_checkpoint_success_total")
    );
    server.kill();
    if let Ok(keep) = std::env::var("AIONBD_BENCH_KEEP") {
        // For profiling the restart by hand.
        let _ = std::process::Command::new("cp").arg("-a").arg(&server.data_dir).arg(&keep).status();
    }
    let files = data_files(&server.data_dir);
    let (snap, wal): (Vec<&PathBuf>, Vec<&PathBuf>) =
        files.iter().partition(|p| p.file_name().unwrap().to_string_lossy().starts_with("snap-"));
    let size = |v: &[&PathBuf]| v.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum::<u64>();
    println!(
        "on disk: {} snapshot file(s) {:.0} MB, {} WAL segment(s) {:.0} MB (preallocated size)",
        snap.len(),
        size(&snap) as f64 / 1e6,
        wal.len(),
        size(&wal) as f64 / 1e6
    );
    let cold = drop_caches();
    if !cold {
        println!("WARNING: cannot drop the page cache (not root?): both reads below may come from memory");
    }
    let (bytes, disk) = read_direct(&files);
    let disk_rate = bytes as f64 / disk.as_secs_f64() / 1e6;
    println!(
        "disk: sequential O_DIRECT read of those {:.0} MB in {:.2} s = {disk_rate:.0} MB/s",
        bytes as f64 / 1e6,
        disk.as_secs_f64()
    );
    drop_caches();
    server.show_stderr = true;
    let took = server.restart();
    assert_eq!(metric(&server.addr, "points") as usize, points, "every point back after the restart");
    let restart_rate = bytes as f64 / took.as_secs_f64() / 1e6;
    println!(
        "restart: {points} points back in {:.2} s = {restart_rate:.0} MB/s of those files ({} cache)",
        took.as_secs_f64(),
        if cold { "cold" } else { "warm" }
    );
    println!("restart speed / disk sequential read speed = {:.0} %", 100.0 * restart_rate / disk_rate);
    if relayout {
        server.kill();
        drop_caches();
        server.set_layout(1, 1);
        let took = server.restart();
        assert_eq!(metric(&server.addr, "points") as usize, points, "every point back in the new layout");
        println!(
            "restart into a new layout (2 x 2 -> 1 x 1 shards x partitions): {points} points back in {:.2} s = \
             {:.0} MB/s of the old files ({:.0} % of the disk's sequential read)",
            took.as_secs_f64(),
            bytes as f64 / took.as_secs_f64() / 1e6,
            100.0 * bytes as f64 / took.as_secs_f64() / 1e6 / disk_rate
        );
    }
}
