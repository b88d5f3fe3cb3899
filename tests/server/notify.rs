//! systemd's notify protocol through a datagram socket the test owns (as
//! systemd would with `Type=notify`): STATUS= while recovering, READY=1 once
//! /ready is 200, WATCHDOG=1 at half the configured interval and none while
//! a shard is stuck, STOPPING=1 on SIGTERM.

use crate::harness::{unique_dir, Server};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Messages received, with when they came.
type Log = Arc<Mutex<Vec<(Instant, String)>>>;

fn listen(dir: &std::path::Path) -> (String, Log) {
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let log: Log = Arc::default();
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.lock().unwrap().push((Instant::now(), text));
        }
    });
    (path.display().to_string(), log)
}

fn has(log: &Log, what: &str) -> bool {
    log.lock().unwrap().iter().any(|(_, m)| m.contains(what))
}

#[test]
fn systemd_is_told_status_ready_watchdog_and_stopping() {
    let dir = unique_dir();
    let data = dir.join("data");
    // A log to replay, and one shard that replays slowly.
    let s = Server::start_in(&data, 2, &[], &[]);
    s.call("POST", "/collections", Some(serde_json::json!({"name": "n", "dimension": 2})), 200);
    for id in 0..50 {
        s.call("PUT", &format!("/collections/n/points/{id}"), Some(serde_json::json!({"values": [id, 1]})), 200);
    }
    s.kill();
    let (path, log) = listen(&dir);
    let env = [
        ("NOTIFY_SOCKET", path.as_str()),
        ("WATCHDOG_USEC", "400000"),
        ("AIONBD_DEBUG_SLOW_REPLAY_SHARD_1_MS", "1200"),
        ("AIONBD_DEBUG_STALL_SHARD_0_MS", "2500"),
    ];
    let s = Server::start_in(&data, 2, &env, &[]);
    // The server printed "listening" just before READY=1.
    let t0 = Instant::now();
    while !has(&log, "READY=1") {
        assert!(t0.elapsed() < Duration::from_secs(5), "no READY=1: {:?}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(s.req("GET", "/ready", None).status, 200, "READY=1 came before /ready answered 200");
    {
        let l = log.lock().unwrap();
        let ready_at = l.iter().position(|(_, m)| m.contains("READY=1")).unwrap();
        assert!(
            l[..ready_at].iter().any(|(_, m)| m.contains("STATUS=recovering")),
            "no STATUS= while recovering: {l:?}"
        );
    }
    // Pings at about half of 400 ms while both shards turn; none while
    // shard 0 is stuck (2 s from 2.5 s after it started serving).
    std::thread::sleep(Duration::from_millis(4600));
    let pings: Vec<Instant> =
        log.lock().unwrap().iter().filter(|(_, m)| m.contains("WATCHDOG=1")).map(|(t, _)| *t).collect();
    assert!(pings.len() >= 8, "{} pings in ~5 s", pings.len());
    let longest = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(longest >= Duration::from_millis(1200), "the pings did not stop while a shard was stuck: gap {longest:?}");
    s.terminate();
    assert!(has(&log, "STOPPING=1"), "{:?}", log.lock().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}
