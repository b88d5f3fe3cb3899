//! Acknowledged writes survive crashes: the server is SIGKILLed and
//! restarted on the same data directory.

use crate::harness::{observe, unique_dir, Server};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn every_route_that_writes_survives_sigkill_and_restart() {
    let dir = unique_dir();
    let s = Server::start_in(&dir, 2, &[], &[]);
    s.call("POST", "/collections", Some(json!({"name": "keep", "dimension": 3})), 200);
    s.call("POST", "/collections", Some(json!({"name": "gone", "dimension": 2})), 200);
    s.call("POST", "/collections", Some(json!({"name": "again", "dimension": 2})), 200);
    let pts: Vec<Value> = (0..60u64)
        .map(|i| json!({"id": i, "values": [i as f32, 0.5, -1.25], "payload": {"n": i, "tags": ["a", "b"]}}))
        .collect();
    s.call("POST", "/collections/keep/points", Some(json!({ "points": pts })), 200);
    s.call("PUT", "/collections/keep/points/7", Some(json!({"values": [7.5, 7.5, 7.5], "payload": {"x": true}})), 200);
    s.call("DELETE", "/collections/keep/points/8", None, 200);
    s.call(
        "POST",
        "/collections/keep/points/payload/set",
        Some(json!({"points": [1, 2], "payload": {"tier": "gold"}})),
        200,
    );
    s.call("POST", "/collections/keep/points/payload/delete", Some(json!({"points": [3], "keys": ["tags"]})), 200);
    s.call("DELETE", "/collections/gone", None, 200);
    s.call("DELETE", "/collections/again", None, 200);
    s.call("POST", "/collections", Some(json!({"name": "again", "dimension": 4})), 200);
    s.call("PUT", "/collections/again/points/1", Some(json!({"values": [1, 2, 3, 4]})), 200);
    let before = observe(&s);
    assert_eq!(s.call("GET", "/metrics", None, 200)["persistence_enabled"], true);
    s.kill();
    let s = Server::start_in(&dir, 2, &[], &[]);
    assert_eq!(observe(&s), before);
    // And the log keeps going after a recovery.
    s.call("PUT", "/collections/keep/points/1000", Some(json!({"values": [1, 1, 1]})), 200);
    let after = observe(&s);
    s.kill();
    let s = Server::start_in(&dir, 2, &[], &[]);
    assert_eq!(observe(&s), after);
    let hit = s.call("POST", "/collections/keep/search", Some(json!({"query": [7.5, 7.5, 7.5], "metric": "l2"})), 200);
    assert_eq!(hit["id"], 7);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Small segments and an eager snapshot cadence, so a test's few MiB of
/// writes exercise snapshots, the manifest switch and segment deletion.
pub const EAGER_SNAPSHOTS: &[(&str, &str)] = &[
    ("AIONBD_WAL_SEGMENT_BYTES", "1048576"),
    ("AIONBD_SNAPSHOT_MIN_WAL_BYTES", "262144"),
    ("AIONBD_SNAPSHOT_WAL_PERCENT", "1"),
];

/// A directory fsync that takes long (on a busy disk, ext4's journal
/// commit) runs beside the shard, not on it: segment rollovers and
/// snapshot switches wait for it, requests on the shard do not. It is
/// logged at debug level, as is each snapshot.
#[test]
fn slow_directory_syncs_do_not_stall_the_shard() {
    let dir = unique_dir();
    let mut env = EAGER_SNAPSHOTS.to_vec();
    env.push(("AIONBD_DEBUG_SLOW_SYNC_DIR_MS", "700"));
    env.push(("AIONBD_LOG", "warn,aionbd::wal::dma=debug,aionbd::snapshot=debug"));
    let s = Server::start_in(&dir, 1, &env, &[]);
    s.call("POST", "/collections", Some(json!({"name": "d", "dimension": 256})), 200);
    // ~3 MiB of log in 1 MiB segments: rollovers and snapshots, each with
    // a directory sync of 700 ms.
    for round in 0..25u64 {
        let pts: Vec<Value> = (0..100u64)
            .map(|i| json!({"id": round * 100 + i, "values": vec![(round * 100 + i) as f32; 256]}))
            .collect();
        s.call("POST", "/collections/d/points", Some(json!({"points": pts})), 200);
    }
    // A snapshot's switch syncs the directory twice.
    let t0 = Instant::now();
    while metric(&s, "persistence_snapshots_total") == 0 {
        assert!(t0.elapsed() < Duration::from_secs(30), "no snapshot was taken");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A sync on the shard would be a stall of 700 ms, its thread asleep.
    let asleep = metric(&s, "shard_stall_asleep_ms_total");
    assert!(asleep < 500, "the shard slept {asleep} ms in stalls: {}", s.stderr_tail());
    // The slow calls are logged, to be placed against slow writes.
    let log = s.stderr_tail();
    assert!(log.contains("wal disk: sync directory") && log.contains(" ms"), "{log}");
    assert!(log.contains("snapshot at LSN"), "{log}");
    let hit =
        s.call("POST", "/collections/d/search", Some(json!({"query": vec![2499.0f32; 256], "metric": "l2"})), 200);
    assert_eq!(hit["id"], 2499);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

fn files_in(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.retain(|n| n.starts_with(prefix));
    v.sort();
    v
}

fn metric(s: &Server, key: &str) -> u64 {
    s.call("GET", "/metrics", None, 200)[key].as_u64().unwrap()
}

/// Snapshots are taken while writes go on, restore exactly what was
/// acknowledged (with the WAL after them), and keep the disk bounded: old
/// snapshots and covered segments are deleted.
#[test]
fn snapshots_restore_exactly_and_bound_the_log() {
    let dir = unique_dir();
    let s = Server::start_in(&dir, 2, EAGER_SNAPSHOTS, &[]);
    s.call("POST", "/collections", Some(json!({"name": "big", "dimension": 256})), 200);
    s.call("POST", "/collections", Some(json!({"name": "small", "dimension": 2})), 200);
    s.call("POST", "/collections", Some(json!({"name": "dropped", "dimension": 2})), 200);
    // ~10 MiB of WAL over 300 live points: the log outgrows the data.
    for round in 0..40u64 {
        let pts: Vec<Value> = (0..100u64)
            .map(|i| {
                let id = (round * 37 + i) % 300;
                json!({"id": id, "values": vec![(round * 1000 + i) as f32; 256], "payload": {"round": round}})
            })
            .collect();
        s.call("POST", "/collections/big/points", Some(json!({ "points": pts })), 200);
        s.call("PUT", &format!("/collections/small/points/{round}"), Some(json!({"values": [round, 1]})), 200);
        if round % 5 == 0 {
            s.call("DELETE", &format!("/collections/big/points/{}", (round * 37) % 300), None, 200);
            s.call(
                "POST",
                "/collections/big/points/payload/set",
                Some(json!({"points": [(round * 37 + 1) % 300], "payload": {"tag": round}})),
                200,
            );
        }
    }
    s.call("DELETE", "/collections/dropped", None, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&s, "persistence_checkpoint_success_total") < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(metric(&s, "persistence_checkpoint_success_total") >= 2, "no snapshots were taken");
    assert_eq!(metric(&s, "persistence_checkpoint_error_total"), 0);
    // Writes after the last snapshot come back from the WAL.
    s.call("PUT", "/collections/small/points/9999", Some(json!({"values": [9, 9]})), 200);
    let before = observe(&s);
    // Covered segments go once a snapshot is switched in; their unlinks run
    // on a helper thread after the switch, so wait for them (a kill in that
    // window leaves them for the next snapshot to remove).
    let segments = |shard: &str| files_in(&dir.join(shard).join("wal"), "wal-0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ["shard-00", "shard-01"].iter().any(|s| segments(s).len() > 4) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill();
    for shard in ["shard-00", "shard-01"] {
        let segs = segments(shard);
        assert!(segs.len() <= 4, "{shard}: covered segments kept: {segs:?}");
    }
    let s = Server::start_in(&dir, 2, EAGER_SNAPSHOTS, &[]);
    assert_eq!(observe(&s), before);
    // One snapshot per shard once started: a kill between a snapshot's
    // manifest switch and the old file's unlink (off the shard, so a wider
    // window) leaves the old one, which start-up removes.
    for shard in ["shard-00", "shard-01"] {
        let snaps = files_in(&dir.join(shard), "snap-");
        assert!(snaps.len() <= 1, "{shard}: old snapshots kept: {snaps:?}");
    }
    let hit = s.call("POST", "/collections/small/search", Some(json!({"query": [9, 9], "metric": "l2"})), 200);
    assert_eq!(hit["id"], 9999);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writers record what the server acknowledged; the server is killed at
/// random moments while they write; after each restart every acknowledged
/// point must be there with its exact values; snapshots are taken (and
/// interrupted) along the way, and backups and NDJSON exports are taken
/// back to back: each one that completed holds every point acknowledged
/// before it began, and some restore. 30 rounds by default;
/// `AIONBD_CRASH_ITERATIONS` asks for more (scripts/crash-loop.sh).
#[test]
fn crash_loop_keeps_every_acknowledged_write() {
    let dir = unique_dir();
    let acked: Arc<Mutex<BTreeMap<u64, f32>>> = Arc::default();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next_id = 0u64;
    let iterations: usize = std::env::var("AIONBD_CRASH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let (mut backups_checked, mut exports_checked) = (0, 0);
    for round in 0..iterations {
        let t0 = Instant::now();
        let s = Server::start_in(&dir, 2, EAGER_SNAPSHOTS, &[]);
        let start_ms = t0.elapsed().as_millis();
        if round == 0 {
            s.call("POST", "/collections", Some(json!({"name": "crash", "dimension": 2})), 200);
        }
        // What was acknowledged is there, exactly: every point in the
        // first rounds, then a sample of ~300 (all of them at the end).
        let known: Vec<(u64, f32)> = acked.lock().unwrap().iter().map(|(k, v)| (*k, *v)).collect();
        let step = known.len().div_ceil(300).max(1);
        for (id, v) in known.iter().skip(round % step).step_by(step) {
            let p = s.call("GET", &format!("/collections/crash/points/{id}"), None, 200);
            assert_eq!(p["values"], json!([*v, 1.0]), "round {round}: point {id}");
        }
        let addr = s.addr.clone();
        let stop_at = Instant::now() + Duration::from_millis(20 + seed % 200);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let writers: Vec<_> = (0..4u64)
            .map(|w| {
                let acked = acked.clone();
                let addr = addr.clone();
                let base = next_id + w * 1_000_000;
                std::thread::spawn(move || {
                    for i in 0..100_000u64 {
                        let id = base + i;
                        let v = (id % 1000) as f32 + 0.25;
                        let body = json!({"values": [v, 1.0]}).to_string();
                        match put(&addr, &format!("/collections/crash/points/{id}"), &body) {
                            Some(200) => {
                                acked.lock().unwrap().insert(id, v);
                            }
                            _ => return, // the server died mid-request
                        }
                    }
                })
            })
            .collect();
        // Backups and exports taken while the writers write, until the
        // server dies under them.
        let taker = {
            let (addr, acked) = (addr.clone(), acked.clone());
            std::thread::spawn(move || take_backups_and_exports(&addr, &acked))
        };
        while Instant::now() < stop_at {
            std::thread::sleep(Duration::from_millis(5));
        }
        s.kill();
        for w in writers {
            w.join().unwrap();
        }
        let (backups, exports) = taker.join().unwrap();
        backups_checked += backups.len();
        exports_checked += exports;
        // Every completed backup holds what was acknowledged before it
        // began; some restore into a fresh directory and serve it.
        for (i, (bytes, before)) in backups.iter().enumerate() {
            let restore_it = i + 1 == backups.len() && round % 10 == 0;
            check_backup(bytes, before, restore_it, round);
        }
        next_id += 10_000_000;
        // However often it crashes, the directory stays within its bound.
        let data = acked.lock().unwrap().len() as u64 * 128;
        let (used, bound) = (crate::datadir::dir_bytes(&dir), crate::datadir::stated_bound(data, 2, 1 << 20, 1 << 18));
        assert!(used <= bound, "round {round}: {used} bytes on disk, bound {bound}");
        if round % 100 == 0 || round + 1 == iterations {
            eprintln!("crash loop round {round}: start-up {start_ms} ms, {used} bytes on disk (bound {bound})");
        }
    }
    let n = acked.lock().unwrap().len();
    eprintln!(
        "crash loop: {iterations} SIGKILLs, {n} acknowledged writes, all recovered; {backups_checked} backups and \
         {exports_checked} exports completed during the loop, each holding every write acknowledged before it"
    );
    assert!(backups_checked > 0 && exports_checked > 0, "no backup or export completed during the loop");
    assert!(n > 100, "the writers got only {n} acknowledgements");
    let s = Server::start_in(&dir, 2, EAGER_SNAPSHOTS, &[]);
    let count = s.call("GET", "/collections/crash", None, 200)["point_count"].as_u64().unwrap();
    assert!(count >= n as u64, "{count} points after recovery, {n} acknowledged");
    for (id, v) in acked.lock().unwrap().iter() {
        let p = s.call("GET", &format!("/collections/crash/points/{id}"), None, 200);
        assert_eq!(p["values"], json!([*v, 1.0]), "after the last restart: point {id}");
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

type Acked = Arc<Mutex<BTreeMap<u64, f32>>>;
/// A completed backup's bytes and the writes acknowledged before it began.
type TakenBackup = (Vec<u8>, BTreeMap<u64, f32>);

/// Take backups and NDJSON exports one after another until the server
/// dies. Returns the completed backups (with the acknowledged writes known
/// before each began) and how many exports completed (each checked here).
fn take_backups_and_exports(addr: &str, acked: &Acked) -> (Vec<TakenBackup>, usize) {
    let (mut backups, mut exports) = (Vec::new(), 0);
    loop {
        let before = acked.lock().unwrap().clone();
        match fetch(addr, "/backup") {
            Some(d) if d.complete && d.status == 200 => backups.push((d.body, before)),
            _ => return (backups, exports),
        }
        let before = acked.lock().unwrap().clone();
        let Some(d) = fetch(addr, "/collections/crash/export").filter(|d| d.complete && d.status == 200) else {
            return (backups, exports);
        };
        let text = String::from_utf8(d.body).unwrap();
        let mut got = BTreeMap::new();
        for line in text.lines().skip(1) {
            let v: Value = serde_json::from_str(line).unwrap();
            got.insert(v["id"].as_u64().unwrap(), v["values"][0].as_f64().unwrap() as f32);
        }
        for (id, v) in &before {
            assert_eq!(got.get(id), Some(v), "an export lost acknowledged point {id}");
        }
        exports += 1;
    }
}

/// GET on its own connection, the body decoded; `None` if it failed.
fn fetch(addr: &str, path: &str) -> Option<crate::harness::Download> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(c, "GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").ok()?;
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out); // a reset after a SIGKILL: what arrived
    (out.windows(4).any(|w| w == b"\r\n\r\n")).then(|| crate::harness::decode_download(&out))
}

/// A completed backup verifies whole and holds every acknowledged write
/// in `before` with its value; with `restore`, it is restored into a new
/// directory and a server started there serves those points.
fn check_backup(bytes: &[u8], before: &BTreeMap<u64, f32>, restore: bool, round: usize) {
    let dir = unique_dir();
    let file = dir.join("b.aionbd");
    std::fs::write(&file, bytes).unwrap();
    let mut got = BTreeMap::new();
    aionbd::offline::read_backup(&file, &mut |frame| {
        let aionbd::offline::BackupFrame::Record(kind, body) = frame else { return Ok(()) };
        if let Ok(aionbd_shards::record::LogRecord::Upsert { points, .. }) =
            aionbd_shards::record::LogRecord::decode(kind, body)
        {
            for p in points {
                got.insert(p.id, p.values[0]);
            }
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("round {round}: a completed backup does not verify: {e}"));
    for (id, v) in before {
        assert_eq!(got.get(id), Some(v), "round {round}: a backup lost acknowledged point {id}");
    }
    if restore {
        let data = dir.join("data");
        let (code, out, err) = crate::harness::tool(&[
            "restore",
            "--from",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--shards",
            "2",
        ]);
        assert_eq!(code, 0, "round {round}: {out}{err}");
        let s = Server::start_in(&data, 2, &[], &[]);
        let count = s.call("GET", "/collections/crash", None, 200)["point_count"].as_u64().unwrap();
        assert_eq!(count, got.len() as u64, "round {round}: the restored server holds other points than the backup");
        for (id, v) in before.iter().step_by(before.len().div_ceil(50).max(1)) {
            let p = s.call("GET", &format!("/collections/crash/points/{id}"), None, 200);
            assert_eq!(p["values"], json!([*v, 1.0]), "round {round}: restored point {id}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// One PUT on its own connection; `None` if the connection failed.
fn put(addr: &str, path: &str, body: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "PUT {path} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    c.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1)?.parse().ok()
}

/// While the shards recover, /live answers 200 and /ready (and every data
/// route) 503; once they listen, /ready is 200.
#[test]
fn live_answers_and_ready_is_503_during_recovery() {
    use std::io::BufRead;
    let dir = unique_dir();
    let s = Server::start_in(&dir, 2, &[], &[]);
    s.call("POST", "/collections", Some(json!({"name": "c", "dimension": 2})), 200);
    s.kill();
    let (mut child, mut out, mut line) = crate::harness::start_recovering(&dir, &[]);
    let addr = line.split("http://").nth(1).unwrap().split('/').next().unwrap().to_owned();
    let get = |path: &str| -> (u16, String) {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        (resp.split(' ').nth(1).unwrap().parse().unwrap(), resp)
    };
    assert_eq!(get("/live").0, 200);
    let (status, body) = get("/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("recovering"), "{body}");
    assert_eq!(get("/collections/c").0, 503);
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "second line: {line}");
    assert_eq!(get("/ready").0, 200);
    assert_eq!(get("/collections/c").0, 200);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Relaxed modes acknowledge after the device write and sync later (every
/// N writes, or on a timer): far fewer fdatasyncs, and a process crash
/// still loses nothing acknowledged (only power loss could).
#[test]
fn relaxed_sync_modes_sync_less_and_survive_a_process_crash() {
    for (mode, env) in [
        ("every 25 writes", [("AIONBD_WAL_SYNC_ON_WRITE", "false"), ("AIONBD_WAL_SYNC_EVERY_N_WRITES", "25")]),
        ("every second", [("AIONBD_WAL_SYNC_ON_WRITE", "false"), ("AIONBD_WAL_SYNC_INTERVAL_SECONDS", "1")]),
    ] {
        let dir = unique_dir();
        let s = Server::start_in(&dir, 1, &env, &[]);
        s.call("POST", "/collections", Some(json!({"name": "r", "dimension": 2})), 200);
        let f0 = metric(&s, "persistence_wal_fsyncs_total");
        for id in 0..100u64 {
            s.call("PUT", &format!("/collections/r/points/{id}"), Some(json!({"values": [id, 1]})), 200);
        }
        let synced = metric(&s, "persistence_wal_fsyncs_total") - f0;
        // Sync on write would have issued 100 (one per sequential write).
        assert!(synced <= 8, "{mode}: {synced} fdatasyncs for 100 writes");
        if mode == "every second" {
            // The timer syncs what is pending.
            let deadline = Instant::now() + Duration::from_secs(5);
            while metric(&s, "persistence_wal_fsyncs_total") == f0 + synced {
                assert!(Instant::now() < deadline, "the interval sync never came");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        s.kill();
        let s = Server::start_in(&dir, 1, &env, &[]);
        assert_eq!(s.call("GET", "/collections/r", None, 200)["point_count"], 100, "{mode}");
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
