//! Damage done to the files by hand, then a restart of the real binary:
//! a damaged or cut tail starts with a prefix of the writes; the same
//! damage in the middle of the log refuses to start and names the file and
//! offset, unless the operator passes --wal-truncate-corrupt. And a full
//! disk: 507 for writes, reads go on, writes resume when space returns.

use crate::harness::{unique_dir, Server, Tmpfs};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BLOCK: usize = 4096;
/// One shard, 1 MiB segments, no snapshots: the log stays as written.
const PLAIN_LOG: &[(&str, &str)] =
    &[("AIONBD_WAL_SEGMENT_BYTES", "1048576"), ("AIONBD_SNAPSHOT_MIN_WAL_BYTES", "1000000000000")];

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("shard-00/wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(".log"))
        .collect();
    v.sort();
    v
}

/// Offset of the last block holding anything but zeros.
fn last_used_block(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    (0..bytes.len() / BLOCK).rev().find(|b| bytes[b * BLOCK..(b + 1) * BLOCK].iter().any(|&x| x != 0)).unwrap() * BLOCK
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// A log of `n` single-point writes after the collection's creation: with
/// one writer, every write is its own batch of one 4 KiB block, so record
/// (LSN) k sits in block k of the first segment.
fn write_log(n: u64) -> PathBuf {
    let dir = unique_dir();
    let s = Server::start_in(&dir, 1, PLAIN_LOG, &[]);
    s.call("POST", "/collections", Some(json!({"name": "c", "dimension": 4})), 200);
    for id in 1..=n {
        s.call("PUT", &format!("/collections/c/points/{id}"), Some(json!({"values": [id, 0, 0, 1]})), 200);
    }
    s.kill();
    dir
}

fn ids(s: &Server) -> Vec<u64> {
    let page = s.call("GET", "/collections/c/points?limit=1000", None, 200);
    page["points"].as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect()
}

/// Start the binary on `dir`; it must exit with an error. Returns stderr.
fn start_expecting_failure(dir: &Path, args: &[&str]) -> String {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_aionbd"))
        .env_clear()
        .env("AIONBD_BIND", "127.0.0.1:0")
        .env("AIONBD_SHARDS", "1")
        .env("AIONBD_DATA_DIR", dir)
        .envs(PLAIN_LOG.iter().copied())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = crate::harness::wait_timeout(&mut child, Duration::from_secs(30));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server started although it should have refused");
    }
    assert_ne!(status.unwrap().code(), Some(0), "the server should have refused to start");
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    err
}

#[test]
fn a_garbled_or_cut_tail_starts_with_the_prefix() {
    for damage in ["garble", "cut"] {
        let dir = write_log(20);
        let seg = segments(&dir).pop().unwrap();
        let last = last_used_block(&seg);
        assert_eq!(last, 21 * BLOCK, "one block per write");
        match damage {
            "garble" => flip(&seg, last + 70),
            _ => std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len((last + 50) as u64).unwrap(),
        }
        let s = Server::start_in(&dir, 1, PLAIN_LOG, &[]);
        assert_eq!(ids(&s), (1..=19).collect::<Vec<_>>(), "{damage}: the last write is gone, all before it stay");
        // The log goes on after the repair, and survives another restart.
        s.call("PUT", "/collections/c/points/77", Some(json!({"values": [1, 1, 1, 1]})), 200);
        s.kill();
        let s = Server::start_in(&dir, 1, PLAIN_LOG, &[]);
        assert_eq!(ids(&s).len(), 20, "{damage}");
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn damage_mid_log_refuses_to_start_unless_told_to_truncate() {
    // 300 writes fill the first 1 MiB segment (255 blocks) and go on in a
    // second one, so block 10 of the first is in the middle of the log.
    let dir = write_log(300);
    let segs = segments(&dir);
    assert!(segs.len() >= 2, "{segs:?}");
    flip(&segs[0], 10 * BLOCK + 70);
    let err = start_expecting_failure(&dir, &[]);
    let name = segs[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.contains(&name) && err.contains("offset 40960"), "stderr names file and offset: {err}");
    assert!(err.contains("--wal-truncate-corrupt"), "stderr says how to proceed: {err}");
    // Refusing changed nothing: it refuses again.
    assert!(start_expecting_failure(&dir, &[]).contains(&name));
    // The operator accepts the loss: records from LSN 10 (point 9) on go.
    let s = Server::start_in(&dir, 1, PLAIN_LOG, &["--wal-truncate-corrupt"]);
    assert_eq!(ids(&s), (1..=8).collect::<Vec<_>>());
    s.call("PUT", "/collections/c/points/500", Some(json!({"values": [5, 0, 0, 1]})), 200);
    s.kill();
    // The cut log is whole again: a plain start works.
    let s = Server::start_in(&dir, 1, PLAIN_LOG, &[]);
    assert_eq!(ids(&s).len(), 9);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_snapshot_or_manifest_refuses_to_start() {
    let dir = unique_dir();
    let env = [("AIONBD_SNAPSHOT_MIN_WAL_BYTES", "1"), ("AIONBD_SNAPSHOT_WAL_PERCENT", "1")];
    let s = Server::start_in(&dir, 1, &env, &[]);
    s.call("POST", "/collections", Some(json!({"name": "c", "dimension": 4})), 200);
    s.call("PUT", "/collections/c/points/1", Some(json!({"values": [1, 0, 0, 1]})), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.call("GET", "/metrics", None, 200)["persistence_checkpoint_success_total"] == 0 {
        assert!(Instant::now() < deadline, "no snapshot");
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill();
    let shard = dir.join("shard-00");
    let snap = std::fs::read_dir(&shard)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("snap-"))
        .unwrap();
    let len = std::fs::metadata(&snap).unwrap().len() as usize;
    flip(&snap, len - 30);
    let err = start_expecting_failure(&dir, &[]);
    assert!(err.contains("snapshot") && err.contains("damaged"), "{err}");
    flip(&snap, len - 30);
    let manifest = shard.join("MANIFEST");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("lsn=", "lsn=9")).unwrap();
    assert!(start_expecting_failure(&dir, &[]).contains("checksum"));
    std::fs::write(&manifest, text).unwrap();
    let s = Server::start_in(&dir, 1, &env, &[]);
    assert_eq!(ids(&s), vec![1]);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_disk_answers_507_keeps_reads_and_resumes() {
    let Some(fs) = Tmpfs::mount(8) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?); the disk-full test needs one");
        return;
    };
    let data = fs.0.join("data");
    let s = Server::start_in(&data, 1, PLAIN_LOG, &[]);
    s.call("POST", "/collections", Some(json!({"name": "c", "dimension": 64})), 200);
    // One point before the disk fills, so the read checks below have data
    // even when the very first batch is the one refused.
    s.call("PUT", "/collections/c/points/1000000", Some(json!({"values": vec![0.5; 64]})), 200);
    // The first write consumed the spare segment; wait for its replacement
    // so the ballast below meets a server that had room.
    let wal = data.join("shard-00/wal");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_dir(&wal).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("wal-spare-"))
    {
        assert!(Instant::now() < deadline, "no spare segment appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Fill the file system with ballast, then give back one piece.
    let mut ballast = Vec::new();
    for i in 0.. {
        let p = fs.0.join(format!("ballast-{i}"));
        if std::fs::write(&p, vec![1u8; 256 << 10]).is_err() {
            let _ = std::fs::remove_file(&p);
            break;
        }
        ballast.push(p);
    }
    std::fs::remove_file(ballast.pop().unwrap()).unwrap();
    let mut acked = 1u64;
    let mut refused = None;
    for batch in 0..400u64 {
        let pts: Vec<_> = (0..50).map(|i| json!({"id": batch * 50 + i, "values": vec![i as f32; 64]})).collect();
        let r = s.req("POST", "/collections/c/points", Some(&json!({ "points": pts }).to_string()));
        match r.status {
            200 => acked += 50,
            507 => {
                refused = Some(r.json());
                break;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    let refused = refused.expect("the disk never filled up");
    assert_eq!(refused["code"], "insufficient_storage", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("disk full"), "{refused}");
    // Reads go on; the refused write changed nothing.
    let count = s.call("GET", "/collections/c", None, 200)["point_count"].as_u64().unwrap();
    assert_eq!(count, acked);
    s.call("POST", "/collections/c/search", Some(json!({"query": vec![1.0; 64], "metric": "l2"})), 200);
    assert_eq!(
        s.req("PUT", "/collections/c/points/999999", Some(&json!({"values": vec![0; 64]}).to_string())).status,
        507
    );
    // Space comes back: writes resume.
    for p in &ballast {
        std::fs::remove_file(p).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.req("PUT", "/collections/c/points/999999", Some(&json!({"values": vec![0; 64]}).to_string()));
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 507, "{}", r.body);
        assert!(Instant::now() < deadline, "writes did not resume after space returned");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.kill();
    // Nothing on disk was damaged: every acknowledged write is back.
    let s = Server::start_in(&data, 1, PLAIN_LOG, &[]);
    let count = s.call("GET", "/collections/c", None, 200)["point_count"].as_u64().unwrap();
    assert_eq!(count, acked + 1);
    drop(s);
}
