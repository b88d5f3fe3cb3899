//! Group commit in-process, without HTTP: one shard's WAL (`aionbd::wal`, O_DIRECT
//! segments, fdatasync per batch) on the disk under the chosen directory,
//! appending records the size of a single-point 384-dim upsert.
//!
//! Phases, side by side in one run: 1 writer awaiting each record's
//! durability (one fdatasync per write), then 32 concurrent writers (the
//! shipped max batch of 16, then 64). Each reports records/s, p50/p99
//! acknowledgement latency and fdatasyncs. `ingest_http` measures the same
//! over HTTP, where the server's CPU per request caps the 32-writer rate;
//! this shows what the log itself does with the same disk.
//!
//! Run: `cargo bench --bench wal_group_commit -- [--dir DIR] [--seconds S]`
//! (default: a temporary directory under /tmp, 5 s per phase).

mod common;

use aionbd::wal::Wal;
use aionbd_io::wal::{Recovered, SyncPolicy, WalOptions, WAL_DIR};
use glommio::LocalExecutorBuilder;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Bytes of a logged single-point upsert of 384 floats (values, id,
/// collection name, empty payload).
const RECORD_BYTES: usize = 384 * 4 + 40;

/// `writers` tasks appending for `seconds`: (records, latencies ms, syncs).
async fn phase(wal: &Rc<Wal>, writers: usize, seconds: f64) -> (u64, Vec<f64>, u64) {
    let syncs0 = wal.syncs.get();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..writers)
        .map(|t| {
            let wal = wal.clone();
            glommio::spawn_local(async move {
                let mut lat = Vec::new();
                let body = vec![t as u8; RECORD_BYTES];
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    wal.append(3, body.clone()).await.expect("append");
                    lat.push(t0.elapsed().as_secs_f64() * 1e3);
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await);
    }
    all.sort_by(f64::total_cmp);
    (all.len() as u64, all, wal.syncs.get() - syncs0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or(0.0)
}

fn main() {
    let (mut dir, mut seconds) = (std::env::temp_dir(), 5.0f64);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--dir" => dir = PathBuf::from(val()),
            "--seconds" => seconds = val().parse().unwrap(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let dir = dir.join(format!("aionbd-wal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.clone();
    let rows = LocalExecutorBuilder::default()
        .spawn(move || async move {
            let mut rows = Vec::new();
            for (writers, max_batch) in [(1, 16), (32, 16), (32, 64)] {
                let sub = d.join(format!("w{writers}-b{max_batch}"));
                std::fs::create_dir_all(sub.join(WAL_DIR)).unwrap();
                let policy = SyncPolicy { every_write: true, every_n: 0, interval: None };
                let options =
                    WalOptions { shard_id: 0, segment_bytes: 64 << 20, policy, max_batch, flush_delay: Duration::ZERO };
                let wal = aionbd::wal::open(&sub, &Recovered::empty(1), options).await.expect("open the WAL");
                // Let the spare segment be preallocated before timing.
                glommio::timer::sleep(Duration::from_millis(300)).await;
                let cpu0 = common::own_cpu_seconds();
                let (n, lat, syncs) = phase(&wal, writers, seconds).await;
                let cpu = (common::own_cpu_seconds() - cpu0) * 1e6 / n.max(1) as f64;
                rows.push((writers, max_batch, n as f64 / seconds, pct(&lat, 0.5), pct(&lat, 0.99), syncs, n, cpu));
            }
            rows
        })
        .unwrap()
        .join()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    println!("record: {RECORD_BYTES} bytes, sync on write, {seconds} s per phase, directory under {}", dir.display());
    println!(
        "| writers | max batch | records/s | p50 ms | p99 ms | fdatasyncs | records per fdatasync | vs 1 writer | CPU us/record |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let base = rows[0].2;
    for (w, b, rate, p50, p99, syncs, n, cpu) in rows {
        println!(
            "| {w} | {b} | {rate:.0} | {p50:.3} | {p99:.3} | {syncs} | {:.1} | {:.1}x | {cpu:.1} |",
            n as f64 / syncs.max(1) as f64,
            rate / base
        );
    }
}
