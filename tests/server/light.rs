//! Memory-light mode (`AIONBD_MEMORY_MODE=light`) through the real server:
//! rows the graph holds move to rows files; searches (graph, exact,
//! filtered), point reads, updates and deletes answer as they would with
//! every row in memory; a restart rebuilds the files from the log as it
//! replays it; a dropped collection leaves no file.

use crate::harness::{unique_dir, Server};
use crate::ivf::{clustered_dim, ids, load, topk};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const LIGHT_ENV: &[(&str, &str)] = &[("AIONBD_MEMORY_MODE", "light"), ("AIONBD_REQUEST_TIMEOUT_MS", "25000")];

/// Wait until every partition's graph holds every point and no row the
/// graph holds is left in memory; returns the partitions' `rows`.
fn wait_cold(s: &Server, name: &str, points: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = s.call("GET", &format!("/collections/{name}"), None, 200);
        let parts = v["index"]["partitions"].as_array().unwrap().clone();
        let settled =
            |p: &Value| p["hnsw"]["building"] == false && p["hnsw"]["exact_points"] == 0 && p["rows"]["in_memory"] == 0;
        let on_disk: u64 = parts.iter().map(|p| p["rows"]["on_disk"].as_u64().unwrap_or(0)).sum();
        if parts.iter().all(settled) && on_disk == points as u64 {
            return parts;
        }
        assert!(Instant::now() < deadline, "rows not moved to disk: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ids of the `k` nearest `points` (l2, ties by id), skipping deleted.
fn brute(points: &[Option<Vec<f32>>], q: &[f32], k: usize) -> Vec<u64> {
    let mut d: Vec<(f32, u64)> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().map(|p| (p.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(), i as u64)))
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter().take(k).map(|(_, i)| i).collect()
}

fn rows_files(dir: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    for shard in ["shard-00", "shard-01"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(shard).join("rows")) {
            names.extend(entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()));
        }
    }
    names.sort();
    names
}

/// Exact and filtered answers against brute force, point reads, and with
/// `graph` the graph's recall and an exhaustive beam.
fn check_answers(s: &Server, points: &[Option<Vec<f32>>], queries: &[Vec<f32>], when: &str, graph: bool) {
    let mut found = 0;
    for q in queries {
        let truth = brute(points, q, 10);
        let exact = ids(&topk(s, "c", q, json!({"mode": "exact"})));
        // Equal up to ties in the last place (the server's float keys).
        let common = exact.iter().filter(|id| truth.contains(id)).count();
        assert!(common >= 9, "{when}: exact {exact:?} vs brute force {truth:?}");
        let odd = topk(s, "c", q, json!({"mode": "exact", "filter": {"must": [{"field": "even", "value": false}]}}));
        assert!(ids(&odd).len() == 10 && ids(&odd).iter().all(|id| id % 2 == 1), "{when}: {odd}");
        if graph {
            let v = topk(s, "c", q, json!({"mode": "hnsw", "target_recall": 0.95}));
            assert_eq!(v["mode"], "hnsw", "{when}: {v}");
            found += ids(&v).iter().filter(|id| exact.contains(id)).count();
            let wide = topk(s, "c", q, json!({"mode": "hnsw", "ef": 8192}));
            assert_eq!(ids(&wide), exact, "{when}: an exhaustive beam re-ranks every row from disk");
        }
    }
    if graph {
        let recall = found as f64 / (queries.len() * 10) as f64;
        eprintln!("light mode, {when}: hnsw recall@10 at target 0.95: {recall:.4}");
        assert!(recall >= 0.94, "{when}: recall@10 {recall:.4}");
    }
    for id in [0usize, 1, 777, points.len() - 1] {
        match &points[id] {
            Some(p) => {
                let v = s.call("GET", &format!("/collections/c/points/{id}"), None, 200);
                let got: Vec<f32> =
                    v["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
                assert_eq!(&got, p, "{when}: point {id}");
            }
            None => {
                s.call("GET", &format!("/collections/c/points/{id}"), None, 404);
            }
        }
    }
}

#[test]
fn light_mode_answers_from_rows_on_disk_and_survives_a_restart() {
    let dir = unique_dir();
    let dim = 32;
    let (points, queries) = clustered_dim(6_000, dim, 41);
    let queries = &queries[..40];
    let mut model: Vec<Option<Vec<f32>>> = points.iter().cloned().map(Some).collect();
    let s = Server::start_in(&dir, 2, LIGHT_ENV, &[]);
    load(&s, "c", &points);
    let parts = wait_cold(&s, "c", 6_000);
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(rows_files(&dir).len(), 2, "one rows file per partition");
    check_answers(&s, &model, queries, "all rows on disk", true);
    // Updates (new rows in memory until the graph holds them) and deletes
    // (their file rows reused).
    for id in (0..6_000).step_by(7) {
        if id % 2 == 0 {
            s.call("DELETE", &format!("/collections/c/points/{id}"), None, 200);
            model[id] = None;
        } else {
            let v = points[(id * 13) % 6_000].iter().map(|x| x + 0.5).collect::<Vec<f32>>();
            let body = json!({"points": [{"id": id, "values": v, "payload": {"even": false}}]});
            s.call("POST", "/collections/c/points", Some(body), 200);
            model[id] = Some(v);
        }
    }
    check_answers(&s, &model, queries, "after writes", true);
    let live = model.iter().flatten().count();
    wait_cold(&s, "c", live);
    check_answers(&s, &model, queries, "writes moved to disk", true);
    // An export reads every row from disk, 512 points a step.
    let d = s.download("/collections/c/export", &[]);
    assert!(d.status == 200 && d.complete, "export: {}", d.status);
    let lines: Vec<Value> =
        String::from_utf8(d.body).unwrap().lines().skip(1).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), live, "one line per point (after the header)");
    for l in &lines {
        let id = l["id"].as_u64().unwrap() as usize;
        let got: Vec<f32> = l["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(Some(&got), model[id].as_ref(), "exported point {id}");
    }
    // A restart replays the log and moves the rows out as it goes: none is
    // in memory once it serves, long before the graphs are built again.
    s.terminate();
    let s = Server::start_in(&dir, 2, LIGHT_ENV, &[]);
    let v = s.call("GET", "/collections/c", None, 200);
    let rows: Vec<(u64, u64)> = v["index"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["rows"]["in_memory"].as_u64().unwrap(), p["rows"]["on_disk"].as_u64().unwrap()))
        .collect();
    assert_eq!(rows.iter().map(|r| r.0).sum::<u64>(), 0, "rows in memory after the replay: {v}");
    assert_eq!(rows.iter().map(|r| r.1).sum::<u64>(), live as u64, "{v}");
    check_answers(&s, &model, &queries[..10], "restarted", false);
    wait_cold(&s, "c", live);
    check_answers(&s, &model, &queries[..10], "restarted, rows on disk", true);
    s.call("DELETE", "/collections/c", None, 200);
    assert_eq!(rows_files(&dir), Vec::<String>::new(), "a dropped collection's rows files are removed");
    s.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_memory_mode_is_refused_at_start() {
    let dir = unique_dir();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aionbd"))
        .args(["--data-dir", &dir.to_string_lossy(), "--bind", "127.0.0.1:0", "--set", "index.memory_mode=tiny"])
        .env_clear()
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("index.memory_mode") && err.contains("\"light\""), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
