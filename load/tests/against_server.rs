//! `aionbd-load` against the real server (the `aionbd` binary built beside
//! it by `cargo test --workspace`): every workload's counts match the
//! server's /metrics, and a server stalled for a second shows in the open
//! loop's p99 while a closed loop hides it.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_aionbd-load")).parent().unwrap().to_path_buf()
}

struct Server {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Server {
    fn start(tag: &str) -> Server {
        let server = bin_dir().join("aionbd");
        assert!(server.exists(), "{} is missing: build the server (cargo build --release)", server.display());
        let dir = std::env::temp_dir().join(format!("aionbd-load-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut child = Command::new(server)
            .env_clear()
            .env("AIONBD_BIND", "127.0.0.1:0")
            .env("AIONBD_SHARDS", "2")
            .env("AIONBD_DATA_DIR", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.find_map(|l| l.ok().filter(|l| l.contains("listening on"))).expect("the server starts");
        std::thread::spawn(move || for _ in lines {});
        let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
        Server { child, url, dir }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn load(args: &[&str]) -> Value {
    let out =
        std::env::temp_dir().join(format!("aionbd-load-report-{}-{}.json", std::process::id(), args.join("_").len()));
    let o = Command::new(env!("CARGO_BIN_EXE_aionbd-load"))
        .arg("run")
        .args(args)
        .args(["--quiet", "--json", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "aionbd-load {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(out);
    v
}

#[test]
fn every_workload_reports_what_the_server_counted() {
    let s = Server::start("workloads");
    let common = ["--url", &s.url, "--generate", "3000", "--dim", "32", "--duration", "1.5", "--connections", "2"];
    let mut first = common.to_vec();
    first.extend(["--create", "--preload", "--mode", "exact", "--recall-sample", "10"]);
    let r = load(&first);
    let delta = |r: &Value, k: &str| r["server_metrics_delta"][k].as_f64().unwrap_or(0.0) as u64;
    let requests = r["requests"].as_u64().unwrap();
    assert!(requests > 50, "{r}");
    assert_eq!(r["ok"].as_u64(), Some(requests), "{r}");
    // The /metrics snapshot closes the run; the recall checks come after it.
    assert_eq!(delta(&r, "search_queries_total"), requests, "{r}");
    assert_eq!(r["recall"].as_f64(), Some(1.0), "exact mode: {r}");

    let mut up = common.to_vec();
    up.extend(["--workload", "upsert"]);
    let r = load(&up);
    // A write answered 408 (the server's deadline, on a busy box) may still
    // have been applied: the server's counts lie between the two.
    let within = |r: &Value, n: u64| (r["ok"].as_u64().unwrap()..=r["requests"].as_u64().unwrap()).contains(&n);
    assert!(within(&r, delta(&r, "persistence_writes")), "{r}");
    assert!(within(&r, delta(&r, "points")), "new ids each time: {r}");

    let mut batch = common.to_vec();
    batch.extend(["--workload", "batch-upsert", "--batch", "16", "--id-start", "1000000"]);
    let r = load(&batch);
    let (ok, sent) = (r["ok"].as_u64().unwrap(), r["requests"].as_u64().unwrap());
    assert!((16 * ok..=16 * sent).contains(&delta(&r, "points")), "{r}");

    let mut mixed = common.to_vec();
    mixed.extend(["--workload", "mixed", "--read-ratio", "0.75", "--id-start", "2000000"]);
    let r = load(&mixed);
    let (searches, upserts) =
        (r["by_kind"]["search"]["count"].as_u64().unwrap(), r["by_kind"]["upsert"]["count"].as_u64().unwrap());
    assert_eq!(searches + upserts, r["requests"].as_u64().unwrap());
    assert_eq!(delta(&r, "search_queries_total"), searches, "{r}");
    let failed = r["requests"].as_u64().unwrap() - r["ok"].as_u64().unwrap();
    assert!((upserts - failed.min(upserts)..=upserts).contains(&delta(&r, "persistence_writes")), "{r}");
    let share = searches as f64 / (searches + upserts) as f64;
    assert!((share - 0.75).abs() < 0.1, "read share {share}");

    let mut del = common.to_vec();
    del.extend(["--workload", "delete", "--rate", "200"]);
    let r = load(&del);
    assert_eq!(r["loop_kind"], "open");
    let n = r["requests"].as_u64().unwrap();
    assert!((250..=350).contains(&n), "200/s for 1.5 s: {n}");
    assert_eq!(delta(&r, "points") as i64, 0, "a gauge going down is not a positive delta");
}

#[test]
fn a_stall_shows_in_the_open_loop_p99_and_hides_in_a_closed_loop() {
    let s = Server::start("stall");
    let pid = s.child.id().to_string();
    let setup = ["--url", &s.url, "--generate", "2000", "--dim", "16", "--create", "--preload", "--duration", "0.2"];
    load(&setup);
    let stall = |pid: String| {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            Command::new("kill").args(["-STOP", &pid]).status().unwrap();
            std::thread::sleep(Duration::from_millis(1000));
            Command::new("kill").args(["-CONT", &pid]).status().unwrap();
        })
    };
    let run = ["--url", &s.url, "--generate", "2000", "--dim", "16", "--duration", "4", "--mode", "exact"];
    let t = stall(pid.clone());
    let mut open = run.to_vec();
    open.extend(["--rate", "200", "--connections", "8"]);
    let o = load(&open);
    t.join().unwrap();
    let p99 = |r: &Value| r["latency"]["p99_us"].as_u64().unwrap();
    assert!(p99(&o) >= 900_000, "open loop p99 {} us: {o}", p99(&o));
    let t = stall(pid);
    let mut closed = run.to_vec();
    closed.extend(["--connections", "1"]);
    let c = load(&closed);
    t.join().unwrap();
    assert!(p99(&c) < 900_000, "closed loop p99 {} us (one slow request among many): {c}", p99(&c));
    assert!(c["latency"]["max_us"].as_u64().unwrap() >= 900_000, "the one stalled request: {c}");
}
