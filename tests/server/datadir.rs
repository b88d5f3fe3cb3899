//! The data directory: one server at a time, bounded on disk however often
//! it restarts, a start-up that waits for a slow shard, and data that
//! follows the box when its shard or partition count changes (re-layout),
//! including a crash at every step of that.

use crate::durability::EAGER_SNAPSHOTS;
use crate::harness::{observe, unique_dir, Server, Tmpfs};
use crate::startup::run_expecting_failure;
use serde_json::{json, Value};
use std::path::Path;

/// Bytes allocated under `dir` (preallocated segments count in full).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512).unwrap_or(0),
        })
        .sum()
}

fn dir_env(dir: &Path, shards: usize) -> Vec<(String, String)> {
    vec![
        ("AIONBD_DATA_DIR".into(), dir.display().to_string()),
        ("AIONBD_SHARDS".into(), shards.to_string()),
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
    ]
}

fn refused(dir: &Path, extra: &[(&str, &str)]) -> (i32, String) {
    let mut env = dir_env(dir, 1);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run_expecting_failure(&env, &[])
}

#[test]
fn a_second_server_on_the_same_directory_or_port_is_refused() {
    let dir = unique_dir();
    let first = Server::start_in(&dir, 2, &[], &[]);
    first.call("POST", "/collections", Some(json!({"name": "c", "dimension": 2})), 200);
    for id in 0..20 {
        first.call("PUT", &format!("/collections/c/points/{id}"), Some(json!({"values": [id, 1]})), 200);
    }
    // Same directory, another port.
    let (code, err) = refused(&dir, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("in use by another aionbd process"), "{err}");
    assert!(err.contains(&format!("PID {}", first.pid())) && err.contains("LOCK"), "{err}");
    // Same port, another directory.
    let other = unique_dir();
    let (code, err) = refused(&other, &[("AIONBD_BIND", &first.addr)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("address in use"), "{err}");
    // The first server still serves every connection, with every write.
    let before = observe(&first);
    for _ in 0..20 {
        assert_eq!(first.call("GET", "/collections/c", None, 200)["point_count"], 20);
    }
    first.call("PUT", "/collections/c/points/99", Some(json!({"values": [9, 9]})), 200);
    first.kill();
    let again = Server::start_in(&dir, 2, &[], &[]);
    let after = observe(&again);
    assert_eq!(after.len(), before.len() + 1, "every acknowledged write, and the one after the refusals");
    drop(again);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other);
}

#[test]
fn directories_that_are_not_ours_newer_or_read_only_are_refused_untouched() {
    // Another program's files.
    let dir = unique_dir();
    std::fs::write(dir.join("photo.jpg"), b"not a database").unwrap();
    let (code, err) = refused(&dir, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not an aionbd data directory") && err.contains("photo.jpg"), "{err}");
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names.len(), 1, "nothing was written: {names:?}");
    let _ = std::fs::remove_dir_all(&dir);
    // Written by a newer version.
    let dir = unique_dir();
    drop(Server::start_in(&dir, 1, &[], &[]));
    std::fs::write(dir.join("LAYOUT"), "format=2\nshards=1\npartitions_per_collection=1\n").unwrap();
    let listing = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name()).collect();
        v.sort();
        v
    };
    let files = listing(&dir);
    let (code, err) = refused(&dir, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("newer version") && err.contains("LAYOUT"), "{err}");
    assert_eq!(listing(&dir), files);
    let _ = std::fs::remove_dir_all(&dir);
    // A read-only file system (a tmpfs mounted read-only: root ignores modes).
    match Tmpfs::mount_with("ro,size=1m") {
        Some(fs) => {
            let (code, err) = refused(&fs.0, &[]);
            assert_eq!(code, 2, "{err}");
            assert!(err.contains("read-only"), "{err}");
        }
        None => eprintln!("SKIPPED: cannot mount a read-only tmpfs here (not root?)"),
    }
    // Not a directory at all.
    let dir = unique_dir();
    let file = dir.join("data");
    std::fs::write(&file, b"x").unwrap();
    let (code, err) = refused(&file, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a directory"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The bound docs/storage.md states: the snapshot and one being written
/// (2x the data), and per shard the log since the snapshot (at most
/// `min_wal` here, the snapshot being tiny) in whole segments, plus the
/// open segment and the spare; 64 KiB for the small files.
pub fn stated_bound(data_bytes: u64, shards: u64, segment_bytes: u64, min_wal: u64) -> u64 {
    2 * data_bytes + shards * ((min_wal.div_ceil(segment_bytes) + 2) * segment_bytes + 64 * 1024)
}

/// 100 restarts (SIGKILL, a crash loop under a supervisor) with writes in
/// between: the directory stays within the stated bound, no start adds a
/// segment, and every acknowledged write is there.
#[test]
fn a_hundred_crash_restarts_keep_the_directory_bounded() {
    let dir = unique_dir();
    let (segment, min_wal) = (1u64 << 20, 1u64 << 18);
    let env = EAGER_SNAPSHOTS;
    let mut acked = 0u64;
    let mut start_ms = Vec::new();
    for round in 0..100u64 {
        let t0 = std::time::Instant::now();
        let s = Server::start_in(&dir, 2, env, &[]);
        start_ms.push(t0.elapsed().as_millis());
        if round == 0 {
            s.call("POST", "/collections", Some(json!({"name": "r", "dimension": 16})), 200);
        }
        assert_eq!(s.call("GET", "/collections/r", None, 200)["point_count"], acked, "round {round}");
        for i in 0..10u64 {
            let id = round * 10 + i;
            s.call("PUT", &format!("/collections/r/points/{id}"), Some(json!({"values": vec![id as f32; 16]})), 200);
            acked += 1;
        }
        s.kill();
        let data = acked * (16 * 4 + 64);
        let used = dir_bytes(&dir);
        let bound = stated_bound(data, 2, segment, min_wal);
        assert!(used <= bound, "round {round}: {used} bytes on disk for {data} of data (bound {bound})");
        for shard in ["shard-00", "shard-01"] {
            let segs = std::fs::read_dir(dir.join(shard).join("wal")).unwrap().count();
            assert!(segs <= 3, "round {round}: {segs} files in {shard}/wal");
        }
    }
    let first: u128 = start_ms[..10].iter().sum::<u128>() / 10;
    let last: u128 = start_ms[90..].iter().sum::<u128>() / 10;
    eprintln!("100 crash restarts: start-up {first} ms (first 10) vs {last} ms (last 10), {} bytes", dir_bytes(&dir));
    let s = Server::start_in(&dir, 2, env, &[]);
    assert_eq!(s.call("GET", "/collections/r", None, 200)["point_count"], acked);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One shard's replay takes 10 s (a test hook), twice the old start-up
/// deadline: the others wait for it, progress is reported, and it starts.
#[test]
fn a_start_up_with_one_slow_shard_completes() {
    let dir = unique_dir();
    let s = Server::start_in(&dir, 2, &[], &[]);
    fill(&s, "slow", 4, 200);
    let before = observe(&s);
    s.kill();
    let s = Server::start_in(&dir, 2, &[("AIONBD_DEBUG_SLOW_REPLAY_SHARD_1_MS", "10000")], &[]);
    assert_eq!(observe(&s), before);
    let log = s.stderr_tail();
    assert!(log.contains("recovering for") && log.contains("shard 1 replaying"), "{log}");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Collections of several shapes: points with payloads, some deleted, some
/// payloads patched or trimmed, one collection dropped and made again.
fn fill(s: &Server, prefix: &str, collections: usize, points: u64) {
    for c in 0..collections {
        let name = format!("{prefix}-{c}");
        let dim = 3 + c;
        let strict = c % 2 == 0;
        s.call("POST", "/collections", Some(json!({"name": name, "dimension": dim, "strict_finite": strict})), 200);
        for chunk in 0..points.div_ceil(50) {
            let pts: Vec<Value> = (chunk * 50..((chunk + 1) * 50).min(points))
                .map(|id| {
                    let v: Vec<f32> = (0..dim).map(|d| (id as f32 * 0.37 + d as f32).sin() / 3.0).collect();
                    json!({"id": id, "values": v, "payload": {"tag": format!("t{}", id % 7), "n": id, "odd": id % 2 == 1}})
                })
                .collect();
            s.call("POST", &format!("/collections/{name}/points"), Some(json!({"points": pts})), 200);
        }
        for id in (0..points).step_by(9) {
            s.call("DELETE", &format!("/collections/{name}/points/{id}"), None, 200);
        }
        let ids: Vec<u64> = (1..points).step_by(5).filter(|id| id % 9 != 0).collect();
        s.call(
            "POST",
            &format!("/collections/{name}/points/payload/set"),
            Some(json!({"points": ids, "payload": {"extra": c}})),
            200,
        );
        let ids: Vec<u64> = (2..points).step_by(11).filter(|id| id % 9 != 0).collect();
        s.call(
            "POST",
            &format!("/collections/{name}/points/payload/delete"),
            Some(json!({"points": ids, "keys": ["tag"]})),
            200,
        );
    }
    let again = format!("{prefix}-0");
    s.call("DELETE", &format!("/collections/{again}"), None, 200);
    s.call("POST", "/collections", Some(json!({"name": again, "dimension": 3})), 200);
    s.call("PUT", &format!("/collections/{again}/points/7"), Some(json!({"values": [0.125, -3.5, 1e-7]})), 200);
}

/// What `observe` sees, less the partition count (which a re-layout
/// changes on purpose).
fn data(s: &Server) -> Vec<Value> {
    let mut v = observe(s);
    for item in &mut v {
        if let Some(o) = item.as_object_mut() {
            o.remove("partitions");
        }
    }
    v
}

/// Compare two observations, naming the first difference only.
fn assert_same(got: &[Value], want: &[Value], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {} items, expected {}", got.len(), want.len());
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!("{what}: item {i} is {}, expected {}", got[i], want[i]);
    }
}

fn start_layout(dir: &Path, shards: usize, partitions: usize, extra: &[(&str, &str)]) -> Server {
    let p = partitions.to_string();
    // 3 shards on a 2-CPU box run unpinned.
    let mut env: Vec<(&str, &str)> =
        vec![("AIONBD_PARTITIONS_PER_COLLECTION", &p), ("AIONBD_ALLOW_MORE_SHARDS_THAN_CPUS", "true")];
    env.extend_from_slice(extra);
    Server::start_in(dir, shards, &env, &[])
}

/// 2 x 2 -> 1 x 1 -> 2 x 1 -> 3 x 3 -> 2 x 2 (shards x partitions): every point,
/// vector (as the server prints it, bit for bit), payload and collection
/// setting is the same after each move, writes keep working, and the old
/// layout's files are gone.
#[test]
fn relayout_follows_the_shard_and_partition_count() {
    let dir = unique_dir();
    let s = start_layout(&dir, 2, 2, EAGER_SNAPSHOTS);
    fill(&s, "m", 3, 300);
    let mut want = data(&s);
    s.kill();
    for (extra, (shards, parts)) in (1000u64..).zip([(1, 1), (2, 1), (3, 3), (2, 2)]) {
        let s = start_layout(&dir, shards, parts, EAGER_SNAPSHOTS);
        assert_same(&data(&s), &want, &format!("after moving to {shards} x {parts}"));
        let info = s.call("GET", "/collections/m-1", None, 200);
        assert_eq!((info["partitions"].as_u64(), info["dimension"].as_u64()), (Some(parts as u64), Some(4)));
        assert_eq!(info["strict_finite"], false);
        // Writes go on in the new layout, and survive a crash.
        s.call("PUT", &format!("/collections/m-1/points/{extra}"), Some(json!({"values": [1, 2, 3, 4]})), 200);
        want = data(&s);
        s.kill();
        let layout = std::fs::read_to_string(dir.join("LAYOUT")).unwrap();
        assert!(layout.contains(&format!("shards={shards}\n")), "{layout}");
        let tops: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("shard-") || n.starts_with("layout-"))
            .collect();
        assert_eq!(tops.len(), 1, "only the current generation is left: {tops:?}");
    }
    let s = start_layout(&dir, 2, 2, &[]);
    assert_same(&data(&s), &want, "after a restart");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A crash at each step of a re-layout (a test hook aborts the process
/// there) leaves the old layout or the new one, never a mix: a start with
/// the old counts (before the switch) or the new ones finds all the data.
#[test]
fn a_crash_at_any_step_of_a_relayout_leaves_the_old_or_the_new_layout() {
    let base = unique_dir();
    let s = start_layout(&base, 2, 2, EAGER_SNAPSHOTS);
    fill(&s, "k", 2, 120);
    let want = data(&s);
    s.kill();
    for step in ["copying", "written", "renamed", "switched"] {
        let dir = unique_dir();
        let copied = std::process::Command::new("cp").arg("-a").arg(base.join(".")).arg(&dir).status().unwrap();
        assert!(copied.success());
        let mut env = dir_env(&dir, 1);
        env.push(("AIONBD_DEBUG_RELAYOUT_CRASH".into(), step.into()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (code, err) = run_expecting_failure(&env, &[]);
        assert!(err.contains(&format!("aborting at {step}")), "{step}: exit {code}: {err}");
        let layout = std::fs::read_to_string(dir.join("LAYOUT")).unwrap();
        let switched = layout.contains("shards=1\n");
        assert_eq!(switched, step == "switched", "{step}: {layout}");
        if !switched {
            // The old layout is intact: it starts as it was, no re-layout.
            let s = start_layout(&dir, 2, 2, &[]);
            assert_same(&data(&s), &want, &format!("{step}: old layout"));
            assert!(!s.stderr_tail().contains("re-placing"), "{step}");
            drop(s);
        }
        let s = start_layout(&dir, 1, 1, &[]);
        assert_same(&data(&s), &want, &format!("{step}: new layout"));
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// A client polling with fresh connections from the moment the address
/// answers (the recovery stand-in) until well after the shards took over
/// gets an answer on every connection: none is reset at the hand-over
/// (the stand-in and the shards accept from the same socket). Five starts.
#[test]
fn polling_through_the_recovery_hand_over_sees_no_reset() {
    use std::io::{BufRead, Read, Write};
    let dir = unique_dir();
    let s = Server::start_in(&dir, 2, &[], &[]);
    fill(&s, "h", 1, 100);
    s.kill();
    let path = std::env::var("PATH").unwrap_or_default();
    let (mut resets, mut answers) = (Vec::new(), 0);
    for round in 0..5 {
        let (mut child, mut out, line) = crate::harness::start_recovering(&dir, &[("PATH", &path)]);
        let addr = line.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap().to_owned();
        // Read the "listening" line in the background.
        let listening = std::thread::spawn(move || {
            let mut l = String::new();
            let _ = out.read_line(&mut l);
            l
        });
        let mut after_ready = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while after_ready < 200 && std::time::Instant::now() < deadline {
            let mut c = std::net::TcpStream::connect(&addr).expect("the address accepts throughout");
            c.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            let mut resp = String::new();
            let got = c
                .write_all(b"GET /ready HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
                .and_then(|_| c.read_to_string(&mut resp));
            match got {
                Ok(_) if resp.starts_with("HTTP/1.1 200") => after_ready += 1,
                Ok(_) if resp.starts_with("HTTP/1.1 503") => {}
                other => resets.push(format!("round {round}: {other:?} {resp:?}")),
            }
            answers += 1;
        }
        assert_eq!(after_ready, 200, "round {round}: /ready never answered 200");
        assert!(listening.join().unwrap().contains("listening on"));
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(resets.is_empty(), "{} of {answers} connections failed: {resets:?}", resets.len());
    let _ = std::fs::remove_dir_all(&dir);
}
