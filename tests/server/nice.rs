//! Index work at a lower kernel priority (`AIONBD_INDEX_BACKGROUND_NICE`)
//! through the real server: the shard threads run index steps at that nice
//! value and get their own back after; a server that may not raise a
//! thread's priority back says so at start and leaves the setting off.

use crate::harness::Server;
use crate::ivf::{clustered_dim, load};
use std::time::{Duration, Instant};

const NICE_ENV: &[(&str, &str)] = &[("AIONBD_INDEX_BACKGROUND_NICE", "19")];

/// The nice value of each shard thread of process `pid` (the executors'
/// threads and their helper threads, which glommio names alike).
fn shard_nices(pid: u32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("aionbd-shard")))
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            // Fields after the command's closing parenthesis: state is the
            // 3rd field of stat, nice the 19th.
            stat.rsplit_once(')')?.1.split_whitespace().nth(16)?.parse().ok()
        })
        .collect()
}

/// Whether a thread of this process may lower its priority to 19 and raise
/// it back (what the server checks at start).
fn may_renice() -> bool {
    std::thread::spawn(|| {
        // SAFETY: plain syscalls on this thread.
        unsafe {
            let tid = libc::gettid() as libc::id_t;
            let base = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, 19) == 0 && libc::setpriority(libc::PRIO_PROCESS, tid, base) == 0
        }
    })
    .join()
    .unwrap()
}

fn own_nice() -> i32 {
    // SAFETY: plain syscall on this process.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

#[test]
fn index_steps_run_at_the_configured_nice_and_the_shards_get_their_own_back() {
    let s = Server::start(2, NICE_ENV);
    let metrics = s.call("GET", "/metrics", None, 200);
    if !may_renice() {
        // No CAP_SYS_NICE nor RLIMIT_NICE here: the server must say so.
        assert_eq!(metrics["index_background_nice"], 0);
        assert!(s.stderr_with("is off", Duration::from_secs(5)).contains("LimitNICE"), "{}", s.stderr_tail());
        return;
    }
    assert_eq!(metrics["index_background_nice"], 19, "{}", s.stderr_tail());
    let base = own_nice();
    let pid = s.pid();
    let before = shard_nices(pid);
    assert!(before.len() >= 2 && before.iter().all(|&n| n == base), "before any index work: {before:?}");
    let (points, _) = clustered_dim(8_000, 64, 7);
    load(&s, "c", &points);
    // Sample the shard threads while the indexes build, until both
    // partitions' graphs are settled.
    let (mut lowered, mut own) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        for _ in 0..50 {
            let nices = shard_nices(pid);
            lowered += nices.iter().filter(|&&n| n == 19).count();
            assert!(nices.iter().all(|&n| n == 19 || n == base), "{nices:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
        let v = s.call("GET", "/collections/c", None, 200);
        let parts = v["index"]["partitions"].as_array().unwrap().clone();
        let settled = |p: &serde_json::Value| {
            p["hnsw"]["building"] == false && p["hnsw"]["exact_points"] == 0 && p["hnsw"]["nodes"].as_u64() > Some(0)
        };
        if parts.iter().all(settled) {
            break;
        }
        assert!(Instant::now() < deadline, "graphs not built: {v}");
    }
    assert!(lowered > 0, "no shard thread seen at nice 19 while the indexes built");
    // Index steps end: the threads are back at the process's nice (a later
    // recalibration may still run a step now and then).
    for _ in 0..200 {
        own += shard_nices(pid).iter().all(|&n| n == base) as usize;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(own > 0, "the shard threads never got their own priority back");
    s.terminate();
}

#[test]
fn without_the_right_to_raise_a_priority_back_index_work_stays_at_the_servers() {
    // setpriv (util-linux) drops CAP_SYS_NICE from the server; RLIMIT_NICE
    // stays at its default of 0 (as under systemd without LimitNICE=).
    let wrapper = ["setpriv", "--bounding-set=-sys_nice", "--inh-caps=-sys_nice", "--"];
    let s = Server::start_under(&wrapper, 1, NICE_ENV);
    assert_eq!(s.call("GET", "/metrics", None, 200)["index_background_nice"], 0);
    let warning = s.stderr_with("index.background_nice = 19 is off", Duration::from_secs(5));
    assert!(warning.contains("CAP_SYS_NICE") && warning.contains("LimitNICE="), "{warning}");
    let (points, _) = clustered_dim(3_000, 16, 3);
    load(&s, "c", &points);
    for _ in 0..200 {
        let nices = shard_nices(s.pid());
        assert!(!nices.is_empty() && nices.iter().all(|&n| n == own_nice()), "{nices:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    s.terminate();
}

#[test]
fn a_nice_value_out_of_range_is_refused_at_start() {
    let dir = crate::harness::unique_dir();
    for bad in ["20", "-5", "low"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aionbd"))
            .args(["--data-dir", &dir.to_string_lossy(), "--bind", "127.0.0.1:0"])
            .args(["--set", &format!("index.background_nice={bad}")])
            .env_clear()
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("index.background_nice"), "{bad}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
