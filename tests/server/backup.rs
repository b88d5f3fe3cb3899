//! Backup, restore, check, export and import through the real binary
//! (docs/backup.md): a backup under concurrent writers restores to exactly
//! its cut; export -> import gives the same points bit for bit; damaged
//! backups and bad NDJSON are refused with the place named; `check` finds
//! flipped bytes; a full backup disk answers 507 while serving goes on.

use crate::harness::{tool, unique_dir, Server, Tmpfs};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Deterministic awkward floats: tiny, huge, negative, many digits.
fn value(seed: u64, i: usize) -> f32 {
    let x = seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64 * 1442695040888963407);
    let bits = ((x >> 33) as u32 & 0x807f_ffff) | (((x >> 13) as u32 % 200 + 27) << 23);
    f32::from_bits(bits)
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// Point lines of an NDJSON export, as a sorted set of exact texts (the
/// shortest round-trip text of an f32 is unique, so equal text = equal bits).
fn point_lines(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path).unwrap().lines().skip(1).map(str::to_owned).collect()
}

fn export_cli(s: &Server, collection: &str, out: &Path) {
    let url = format!("http://{}", s.addr);
    let (code, stdout, stderr) =
        tool(&["export", "--url", &url, "--collection", collection, "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "export failed: {stdout}\n{stderr}");
}

#[test]
fn export_then_import_gives_identical_points_bit_for_bit() {
    let a = Server::start(2, &[]);
    a.call("POST", "/collections", Some(json!({"name": "src", "dimension": 16})), 200);
    for batch in 0..8u64 {
        let points: Vec<Value> = (0..250u64)
            .map(|k| {
                let id = batch * 1000 + k;
                let values: Vec<f32> = (0..16).map(|i| value(id, i)).collect();
                let payload = json!({"tag": format!("t{}", id % 7), "n": id, "x": id as f64 / 3.0, "ok": id % 2 == 0,
                                     "list": ["a", "b"]});
                json!({"id": id, "values": values, "payload": payload})
            })
            .collect();
        a.call("POST", "/collections/src/points", Some(json!({"points": points})), 200);
    }
    let dir = unique_dir();
    let first = dir.join("src.ndjson");
    export_cli(&a, "src", &first);
    let lines = point_lines(&first);
    assert_eq!(lines.len(), 2000);
    // The server's own rendering of a point matches its export line.
    let p = a.call("GET", "/collections/src/points/3007", None, 200);
    let line = lines.iter().find(|l| l.starts_with("{\"id\":3007,")).unwrap();
    let from_line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(from_line["values"], p["values"]);
    assert_eq!(from_line["payload"], p["payload"]);

    // A fresh server, the file imported with --create under another name.
    let b = Server::start(1, &[]);
    let url = format!("http://{}", b.addr);
    let (code, out, err) =
        tool(&["import", "--url", &url, "--collection", "copy", "--create", "--batch", "300", first.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("imported 2000 points"), "{out}");
    let info = b.call("GET", "/collections/copy", None, 200);
    assert_eq!((info["dimension"].as_u64(), info["point_count"].as_u64()), (Some(16), Some(2000)));
    let second = dir.join("copy.ndjson");
    export_cli(&b, "copy", &second);
    assert_eq!(point_lines(&second), lines, "export -> import -> export changed points");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_ndjson_stops_at_its_line_and_everything_before_is_written() {
    let s = Server::start(2, &[]);
    s.call("POST", "/collections", Some(json!({"name": "c", "dimension": 3})), 200);
    let dir = unique_dir();
    let url = format!("http://{}", s.addr);
    let mut text = String::new();
    for id in 0..40 {
        text.push_str(&format!("{{\"id\":{id},\"values\":[{id},1,2]}}\n"));
    }
    text.push_str("{\"id\":40,\"values\":[1,2]}\n"); // line 41: wrong dimension
    text.push_str("{\"id\":41,\"values\":[1,2,3]}\n");
    let file = dir.join("bad.ndjson");
    write_file(&file, text.as_bytes());
    let (code, _, err) = tool(&["import", "--url", &url, "--collection", "c", "--batch", "16", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("line 41") && err.contains("dimension is 3"), "{err}");
    assert!(err.contains("40 points were written") && err.contains("--from-line 41"), "{err}");
    let count = s.call("POST", "/collections/c/points/count", Some(json!({})), 200);
    assert_eq!(count["count"], 40, "every point before the bad line is written and readable");
    for id in 0..40 {
        s.call("GET", &format!("/collections/c/points/{id}"), None, 200);
    }

    // Not JSON at all: named the same way.
    write_file(&file, b"{\"id\":1,\"values\":[1,2,3]}\nnot json\n");
    let (code, _, err) = tool(&["import", "--url", &url, "--collection", "c", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("line 2: not JSON"), "{err}");

    // A point the server refuses (a payload of a type it does not store)
    // is found by retrying its batch point by point.
    let mut text = String::new();
    for id in 100..110 {
        text.push_str(&format!("{{\"id\":{id},\"values\":[1,2,3]}}\n"));
    }
    text.push_str("{\"id\":110,\"values\":[1,2,3],\"payload\":{\"deep\":{\"nested\":{\"no\":1}}}}\n");
    write_file(&file, text.as_bytes());
    let (code, _, err) = tool(&["import", "--url", &url, "--collection", "c", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("line 11") && err.contains("server answered 400"), "{err}");
    assert!(err.contains("10 points were written"), "{err}");

    // Resuming after the bad line finishes the file.
    let (code, out, err) =
        tool(&["import", "--url", &url, "--collection", "c", "--from-line", "12", file.to_str().unwrap()]);
    assert_eq!((code, out.contains("imported 0 points")), (0, true), "{out}{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// One writer's sequence: point `base + k` inserted together with its
/// "head" point (payload `k`) in one batch, i.e. one logged write.
fn writer(url: String, w: u64, stop: Arc<AtomicBool>, acked: Arc<AtomicU64>) {
    let host = url.trim_start_matches("http://").to_owned();
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let body = json!({"points": [
            {"id": w * 1_000_000 + k, "values": [w as f32, k as f32, 1.0, 0.5], "payload": {"w": w, "k": k}},
            {"id": 900_000_000 + w, "values": [w as f32, 0.0, 0.0, 1.0], "payload": {"k": k}},
        ]})
        .to_string();
        let req = format!(
            "POST /collections/c/points HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&host).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        acked.store(k + 1, Ordering::SeqCst); // writes 0..=k acknowledged
        k += 1;
    }
}

fn restore(backup: &Path, dir: &Path, shards: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["restore", "--from", backup.to_str().unwrap(), "--data-dir", dir.to_str().unwrap()];
    args.extend_from_slice(&["--shards", shards]);
    args.extend_from_slice(extra);
    tool(&args)
}

#[test]
fn a_backup_under_eight_writers_restores_to_exactly_its_cut() {
    let s = Server::start(2, &[]);
    s.call("POST", "/collections", Some(json!({"name": "c", "dimension": 4})), 200);
    s.call("POST", "/collections", Some(json!({"name": "quiet", "dimension": 2})), 200);
    s.call("PUT", "/collections/quiet/points/1", Some(json!({"values": [1, 2]})), 200);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Vec<Arc<AtomicU64>> = (0..8).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let threads: Vec<_> = (0..8u64)
        .map(|w| {
            let (url, stop, a) = (format!("http://{}", s.addr), stop.clone(), acked[w as usize].clone());
            std::thread::spawn(move || writer(url, w, stop, a))
        })
        .collect();
    let t0 = Instant::now();
    while acked.iter().map(|a| a.load(Ordering::SeqCst)).min().unwrap() < 20 {
        assert!(t0.elapsed() < Duration::from_secs(30), "writers made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    let d = s.download("/backup", &[]);
    assert_eq!(d.status, 200);
    assert!(d.complete, "the backup stream ended early");
    assert!(d.headers.iter().any(|(k, v)| k == "content-disposition" && v.contains(".aionbd")), "{:?}", d.headers);
    // Writes go on during and after the backup.
    let more = acked[0].load(Ordering::SeqCst) + 10;
    while acked[0].load(Ordering::SeqCst) < more {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let dir = unique_dir();
    let file = dir.join("b.aionbd");
    write_file(&file, &d.body);
    let (code, out, err) = tool(&["check", "--backup", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");

    // Restored into another layout (1 shard), the server re-lays it out
    // for 2 at start.
    let data = dir.join("restored");
    let (code, out, err) = restore(&file, &data, "1", &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("restored 2 collection(s)"), "{out}");
    let r = Server::start_in(&data, 2, &[], &[]);
    let page = |after: Option<u64>| {
        let q = after.map_or(String::new(), |a| format!("&after_id={a}"));
        r.call("GET", &format!("/collections/c/points?limit=1000{q}"), None, 200)
    };
    let mut present: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut after = None;
    loop {
        let p = page(after);
        let pts = p["points"].as_array().unwrap();
        for pt in pts {
            let id = pt["id"].as_u64().unwrap();
            if id < 900_000_000 {
                present.entry(id / 1_000_000).or_default().insert(id % 1_000_000);
            }
        }
        match p["next_after_id"].as_u64() {
            Some(n) if !pts.is_empty() => after = Some(n),
            _ => break,
        }
    }
    for w in 0..8u64 {
        let ks = present.get(&w).cloned().unwrap_or_default();
        let n = ks.len() as u64;
        // A prefix of the writer's sequence, no holes ...
        assert_eq!(ks, (0..n).collect::<BTreeSet<_>>(), "writer {w}: not a prefix");
        // ... holding every write acknowledged before the backup began ...
        assert!(n >= before[w as usize], "writer {w}: {n} points, {} were acknowledged before", before[w as usize]);
        // ... and its head point written by the same write as the last one.
        let head = r.call("GET", &format!("/collections/c/points/{}", 900_000_000 + w), None, 200);
        assert_eq!(head["payload"]["k"].as_u64(), Some(n - 1), "writer {w}: head and points from different cuts");
    }
    assert_eq!(r.call("GET", "/collections/quiet/points/1", None, 200)["values"], json!([1.0, 2.0]));

    // A non-empty directory is refused unless --force, and keeps its data.
    drop(r);
    let (code, _, err) = restore(&file, &data, "2", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("not empty") && err.contains("--force"), "{err}");
    let (code, out, err) = restore(&file, &data, "2", &["--force"]);
    assert_eq!(code, 0, "{out}{err}");
    let r = Server::start_in(&data, 2, &[], &[]);
    assert_eq!(r.call("GET", "/collections/quiet", None, 200)["point_count"], 1);
    drop(r);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn damaged_truncated_or_foreign_backups_are_refused_and_nothing_is_written() {
    let s = Server::start(2, &[]);
    s.call("POST", "/collections", Some(json!({"name": "c", "dimension": 8})), 200);
    let points: Vec<Value> = (0..200).map(|id| json!({"id": id, "values": [id, 1, 2, 3, 4, 5, 6, 7]})).collect();
    s.call("POST", "/collections/c/points", Some(json!({"points": points})), 200);
    let good = s.download("/backup?collection=c", &[]).body;
    let dir = unique_dir();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "flipped",
            {
                let mut b = good.clone();
                b[good.len() / 2] ^= 0x10;
                b
            },
            "checksum mismatch",
        ),
        ("truncated", good[..good.len() - 7].to_vec(), "truncated backup"),
        ("foreign", b"{\"not\": \"a backup\"} padding padding padding".to_vec(), "not an aionbd backup"),
        (
            "appended",
            {
                let mut b = good.clone();
                b.push(0);
                b
            },
            "after the end frame",
        ),
    ];
    for (name, bytes, why) in cases {
        let file = dir.join(format!("{name}.aionbd"));
        write_file(&file, &bytes);
        let target = dir.join(format!("data-{name}"));
        let (code, _, err) = restore(&file, &target, "1", &[]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains(file.to_str().unwrap()) && err.contains("offset") && err.contains(why), "{name}: {err}");
        let untouched = !target.exists() || std::fs::read_dir(&target).unwrap().next().is_none();
        assert!(untouched, "{name}: restore wrote into {}", target.display());
        let (code, out, _) = tool(&["check", "--backup", file.to_str().unwrap()]);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.contains("DAMAGED"), "{out}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn newest(dir: &Path, prefix: &str) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(prefix) && !n.ends_with(".tmp")
        })
        .collect();
    v.sort();
    v.pop().unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()))
}

#[test]
fn check_finds_a_flipped_byte_in_a_snapshot_and_in_a_wal_segment() {
    let dir = unique_dir();
    // Snapshot after every write, then writes that stay in the log.
    let env = [("AIONBD_SNAPSHOT_MIN_WAL_BYTES", "1"), ("AIONBD_SNAPSHOT_WAL_PERCENT", "1")];
    let s = Server::start_in(&dir, 1, &env, &[]);
    s.call("POST", "/collections", Some(json!({"name": "c", "dimension": 4})), 200);
    for id in 0..5 {
        s.call("PUT", &format!("/collections/c/points/{id}"), Some(json!({"values": [id, 0, 0, 1]})), 200);
    }
    let shard = dir.join("shard-00");
    let t0 = Instant::now();
    // The manifest names a snapshot once its switch is done.
    while !shard.join("MANIFEST").exists() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no snapshot was taken");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.kill();
    let (code, out, err) = tool(&["check", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("a restart recovers every record"), "{out}");

    // The snapshot the manifest names (a newer one may be renamed into
    // place but not yet switched to when the server was killed).
    let manifest = std::fs::read_to_string(shard.join("MANIFEST")).unwrap();
    let named = manifest.lines().find_map(|l| l.strip_prefix("snapshot=")).unwrap();
    let snap = shard.join(named);
    let clean = std::fs::read(&snap).unwrap();
    let mut bad = clean.clone();
    bad[clean.len() - 30] ^= 0x40;
    write_file(&snap, &bad);
    let (code, out, _) = tool(&["check", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DAMAGED") && out.contains(snap.to_str().unwrap()) && out.contains("refuses"), "{out}");
    write_file(&snap, &clean);

    // More writes, in the log only (no snapshots now), then damage to the
    // first of them: corruption before the tail.
    let quiet = [("AIONBD_SNAPSHOT_MIN_WAL_BYTES", "1000000000000")];
    let s = Server::start_in(&dir, 1, &quiet, &[]);
    for id in 10..14 {
        s.call("PUT", &format!("/collections/c/points/{id}"), Some(json!({"values": [id, 0, 0, 1]})), 200);
    }
    s.kill();
    let (code, out, _) = tool(&["check", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let seg = newest(&shard.join("wal"), "wal-");
    let bytes = std::fs::read(&seg).unwrap();
    // The first batch block after the header that holds data.
    let block = (1..bytes.len() / 4096).find(|b| bytes[b * 4096..b * 4096 + 4] == *b"AWLB").unwrap();
    let mut bad = bytes.clone();
    bad[block * 4096 + 100] ^= 0x01;
    write_file(&seg, &bad);
    let (code, out, _) = tool(&["check", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("DAMAGED") && out.contains("WAL corruption") && out.contains("--wal-truncate-corrupt"),
        "{out}"
    );
    // The damage lies before the snapshot, but the acknowledged writes after
    // it sit behind it: a restart refuses rather than start without them.
    let d = dir.to_str().unwrap();
    let (code, err) = crate::startup::run_expecting_failure(&[("AIONBD_SHARDS", "1"), ("AIONBD_DATA_DIR", d)], &[]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("WAL corruption"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn backups_kept_on_the_server_list_download_delete_and_a_full_disk_is_507() {
    let Some(fs) = Tmpfs::mount(1) else {
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        return;
    };
    let backups = fs.0.to_str().unwrap().to_owned();
    let s = Server::start(2, &[("AIONBD_BACKUP_DIR", &backups)]);
    s.call("POST", "/collections", Some(json!({"name": "small", "dimension": 4})), 200);
    s.call("PUT", "/collections/small/points/1", Some(json!({"values": [1, 2, 3, 4]})), 200);
    let m = s.call("POST", "/backups", None, 200);
    let name = m["name"].as_str().unwrap().to_owned();
    assert_eq!(m["points"], 1);
    let list = s.call("GET", "/backups", None, 200);
    assert_eq!(list["backups"][0]["name"], name.as_str());
    let d = s.download(&format!("/backups/{name}"), &[]);
    assert_eq!(d.status, 200);
    let file = fs.0.join(format!("{name}.aionbd"));
    assert_eq!(d.body, std::fs::read(&file).unwrap());

    // A collection bigger than the 1 MiB disk: 507, nothing kept, and the
    // server goes on serving reads and writes.
    s.call("POST", "/collections", Some(json!({"name": "big", "dimension": 256})), 200);
    for batch in 0..8 {
        let points: Vec<Value> =
            (0..200).map(|k| json!({"id": batch * 200 + k, "values": vec![0.5f32; 256]})).collect();
        s.call("POST", "/collections/big/points", Some(json!({"points": points})), 200);
    }
    let e = s.error("POST", "/backups", None, 507, "insufficient_storage");
    assert!(e["message"].as_str().unwrap().contains("disk full"), "{e}");
    let left: Vec<String> =
        std::fs::read_dir(&fs.0).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(left.iter().all(|n| !n.ends_with(".tmp")), "{left:?}");
    s.call("PUT", "/collections/small/points/2", Some(json!({"values": [1, 2, 3, 4]})), 200);
    assert_eq!(s.call("GET", "/collections/big", None, 200)["point_count"], 1600);

    s.call("DELETE", &format!("/backups/{name}"), None, 200);
    s.error("GET", &format!("/backups/{name}"), None, 404, "not_found");
    s.error("DELETE", "/backups/..", None, 404, "not_found");
    assert_eq!(s.call("GET", "/backups", None, 200)["backups"], json!([]));
}

#[test]
fn with_auth_a_tenant_backs_up_only_its_own_collections_and_kept_backups_need_admin() {
    let env = [
        ("AIONBD_AUTH_MODE", "api_key"),
        ("AIONBD_AUTH_API_KEYS", "a:key-a,b:key-b,ops:key-admin"),
        ("AIONBD_AUTH_API_KEY_SCOPES", "key-a:write,key-b:write,key-admin:admin"),
    ];
    let s = Server::start(2, &env);
    let as_ = |key: &'static str| [("x-api-key", key), ("content-type", "application/json")];
    for (key, name) in [("key-a", "docs"), ("key-b", "docs"), ("key-b", "other")] {
        let body = json!({"name": name, "dimension": 2}).to_string();
        assert_eq!(s.raw("POST", "/collections", &as_(key), Some(body.as_bytes())).status, 200);
    }
    let names = |key: &'static str| -> Vec<String> {
        let d = s.download("/backup", &[("x-api-key", key)]);
        assert_eq!(d.status, 200);
        let dir = unique_dir();
        let f = dir.join("t.aionbd");
        write_file(&f, &d.body);
        let (code, out, err) = tool(&["check", "--backup", f.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}{err}");
        let text = String::from_utf8_lossy(&d.body).into_owned();
        let _ = std::fs::remove_dir_all(dir);
        ["a::docs", "b::docs", "b::other"].iter().filter(|n| text.contains(*n)).map(|n| n.to_string()).collect()
    };
    assert_eq!(names("key-a"), ["a::docs"]);
    assert_eq!(names("key-b"), ["b::docs", "b::other"]);
    assert_eq!(names("key-admin"), ["a::docs", "b::docs", "b::other"]);
    // Another tenant's collection by name: not found in the caller's namespace.
    let d = s.download("/backup?collection=other", &[("x-api-key", "key-a")]);
    assert_eq!(d.status, 404);
    // Kept backups need admin.
    assert_eq!(s.raw("POST", "/backups", &as_("key-a"), None).status, 403);
    assert_eq!(s.raw("GET", "/backups", &as_("key-b"), None).status, 403);
    assert_eq!(s.raw("POST", "/backups", &as_("key-admin"), None).status, 200);
}

#[test]
fn a_streamed_answer_keeps_the_connection_for_the_next_request() {
    use std::io::{Read, Write};
    let s = Server::start(2, &[]);
    s.call("POST", "/collections", Some(json!({"name": "c", "dimension": 2})), 200);
    let points: Vec<Value> = (0..1500).map(|id| json!({"id": id, "values": [id, 1]})).collect();
    for chunk in points.chunks(250) {
        s.call("POST", "/collections/c/points", Some(json!({"points": chunk})), 200);
    }
    // Two pipelined requests: the export (chunked), then a plain one.
    let mut c = s.connect();
    c.write_all(b"GET /collections/c/export HTTP/1.1\r\nhost: t\r\n\r\nGET /live HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let first = crate::harness::decode_download(&raw);
    assert!(first.complete);
    let text = String::from_utf8(first.body.clone()).unwrap();
    assert_eq!(text.lines().count(), 1501, "header line + one line per point");
    assert!(
        String::from_utf8_lossy(&raw).contains("\r\n0\r\n\r\nHTTP/1.1 200 OK"),
        "the next answer follows the last chunk"
    );
    // HTTP/1.0: no chunked coding; the body ends where the connection closes.
    let mut c = s.connect();
    c.write_all(b"GET /collections/c/export HTTP/1.0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let d = crate::harness::decode_download(&raw);
    assert!(!d.headers.iter().any(|(k, _)| k == "transfer-encoding"), "{:?}", d.headers);
    assert_eq!(d.body, first.body);
    // Unknown collection: a plain 404 before any byte of a stream.
    s.error("GET", "/collections/nope/export", None, 404, "not_found");
}
