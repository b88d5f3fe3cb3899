//! Start-up and shutdown: configuration errors, the shipped config file,
//! signals.

use crate::harness::{wait_timeout, Server};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn run_expecting_failure(env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aionbd"));
    cmd.env_clear().env("AIONBD_BIND", "127.0.0.1:0").args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(20)).expect("exits on bad configuration");
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

#[test]
fn every_configuration_problem_is_reported_at_once() {
    let (code, err) = run_expecting_failure(
        &[
            ("AIONBD_MAX_DIMENSION", "lots"),
            ("AIONBD_WAL_SYNC_ON_WRITE", "perhaps"),
            ("AIONBD_SHARDS", "999"),
            ("AIONBD_AUTH_MODE", "jwt"),
            ("AIONBD_AUTH_RATE_LIMIT_PER_MINUTE", "-5"),
            ("AIONBD_AUTH_RATE_WINDOW_RETENTION_MINUTES", "0"),
            ("AIONBD_AUTH_TENANT_MAX_POINTS", "-1"),
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    for needle in [
        "limits.max_dimension",
        "persistence.wal_sync_on_write",
        "server.shards",
        "security.auth_mode",
        "security.rate_limit_per_minute",
        "security.rate_window_retention_minutes",
        "security.tenant_max_points",
    ] {
        assert!(err.contains(needle), "missing {needle} in: {err}");
    }
    let (code, err) = run_expecting_failure(&[], &["--set", "limits.nope=1"]);
    assert_eq!(code, 2, "{err}");
    // Quotas count per tenant: with authentication off there are none.
    let (code, err) = run_expecting_failure(&[("AIONBD_AUTH_TENANT_MAX_COLLECTIONS", "3")], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("need authentication on"), "{err}");
}

#[test]
fn shipped_config_file_starts_the_server() {
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let s = Server::start_with_args(1, &[], &["--config", cfg]);
    assert_eq!(s.call("GET", "/live", None, 200)["status"], "live");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let s = Server::start(2, &[]);
    assert_eq!(s.call("GET", "/ready", None, 200)["status"], "ready");
    let status = s.terminate();
    assert!(status.success(), "exit status {status:?}");
}

/// A shard that panics ends the whole process, with the panic on stderr,
/// instead of leaving its data unreachable while the other shard serves on
/// (requests touching it would hang until they time out).
#[test]
fn a_panicking_shard_ends_the_process() {
    let mut s = Server::start(2, &[("AIONBD_DEBUG_PANIC_SHARD_1_MS", "300")]);
    let status = s.wait_exit(std::time::Duration::from_secs(10)).expect("the server exits after a shard panics");
    assert!(!status.success(), "exit status {status:?}");
    std::thread::sleep(std::time::Duration::from_millis(200)); // the last stderr lines
    let tail = s.stderr_tail();
    assert!(tail.contains("shard 1 panics as asked") && tail.contains("aborting the process"), "{tail}");
}

#[test]
fn a_shard_blocked_in_a_system_call_is_woken_by_the_watchdog() {
    // The test hook blocks the only shard's thread in pause(2) 300 ms after
    // it starts: like an executor asleep with no timer to end the sleep,
    // only a signal frees it (src/watchdog.rs).
    let s = Server::start(1, &[("AIONBD_DEBUG_PAUSE_SHARD_0_MS", "300")]);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(s.call("GET", "/live", None, 200)["status"], "live");
    s.call("POST", "/collections", Some(serde_json::json!({"name": "w", "dimension": 1})), 200);
    s.call("PUT", "/collections/w/points/1", Some(serde_json::json!({"values": [1.0]})), 200);
    let m = s.call("GET", "/metrics", None, 200);
    let signals = m["shard_watchdog_signals_total"].as_u64().unwrap();
    assert!(signals >= 1, "the watchdog sent {signals} signals");
    // The stall is counted, and its time was spent asleep (in pause(2)).
    assert!(m["shard_stalls_total"].as_u64().unwrap() >= 1, "{m}");
    assert!(m["shard_stall_asleep_ms_total"].as_u64().unwrap() >= 40, "{m}");
}

/// A shard held in one long synchronous step is reported on stderr with
/// the step's name and where the time went, and counted in /metrics.
#[test]
fn a_shard_stalled_in_a_long_step_is_reported_with_the_step() {
    // The hook sleeps 2 s in a step named "debug stall", 300 ms after start
    // (a blocking call: no signal shortens a sleep(3) that restarts).
    let s = Server::start(1, &[("AIONBD_DEBUG_STALL_SHARD_0_MS", "300")]);
    let t0 = std::time::Instant::now();
    let report = loop {
        let tail = s.stderr_tail();
        if let Some(line) = tail.lines().find(|l| l.contains("shard 0: no turn for")) {
            break line.to_owned();
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no stall report: {tail}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(report.contains("seen in: debug stall"), "{report}");
    let took: u64 = report.split("no turn for ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    assert!(took >= 1900, "{report}");
    let m = s.call("GET", "/metrics", None, 200);
    let ms = |k: &str| m[k].as_u64().unwrap();
    assert!(ms("shard_stalls_total") >= 1, "{m}");
    assert!(ms("shard_stall_asleep_ms_total") >= 1500, "{m}");
    assert!(report.contains("slept") && !report.contains("no scheduler statistics"), "{report}");
}

/// An unknown AIONBD_* variable (a typo) is reported; with --strict-env
/// the server refuses to start. Test hooks and the original's engine knobs
/// are not reported.
#[test]
fn unknown_environment_variables_are_reported() {
    let (code, err) = run_expecting_failure(
        &[("AIONBD_SHRADS", "2"), ("AIONBD_DEBUG_NOTHING", "1"), ("AIONBD_IVF_NPROBE_DEFAULT", "8")],
        &["--strict-env"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("AIONBD_SHRADS") && err.contains("--strict-env"), "{err}");
    assert!(!err.contains("AIONBD_DEBUG_NOTHING") && !err.contains("AIONBD_IVF_NPROBE_DEFAULT"), "{err}");
}

/// Too little locked memory for io_uring stops the server with one line
/// naming the limit and the fix (glommio would panic blaming the kernel).
/// Root is not bound by the limit, so the server runs as `nobody` here.
#[test]
fn too_little_locked_memory_is_one_clear_line() {
    let tools = ["prlimit", "setpriv"].iter().all(|t| {
        let probe = Command::new("bash").arg("-c").arg(format!("command -v {t}")).stdout(Stdio::null()).status();
        probe.is_ok_and(|s| s.success())
    });
    // SAFETY: geteuid has no preconditions.
    if !tools || unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root, prlimit and setpriv (util-linux) to run the server as another user");
        return;
    }
    // A copy `nobody` can execute, wherever the build directory is.
    let dir = crate::harness::unique_dir();
    let bin = dir.join("aionbd");
    std::fs::copy(env!("CARGO_BIN_EXE_aionbd"), &bin).unwrap();
    Command::new("chmod").arg("-R").arg("a+rx").arg(&dir).status().unwrap();
    let out = Command::new("prlimit")
        .args(["--memlock=100000:100000", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["--bind", "127.0.0.1:0"])
        .env_clear()
        .env("AIONBD_PERSISTENCE_ENABLED", "false")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("locked-memory limit is 97 KiB") && err.contains("LimitMEMLOCK"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Leveled logs: `AIONBD_LOG_FORMAT=json` makes every log line a JSON object
/// with its level; `AIONBD_LOG=error` hides warnings, and `RUST_LOG`
/// overrides `AIONBD_LOG`.
#[test]
fn logs_are_leveled_filtered_and_optionally_json() {
    let memory_only = ("AIONBD_PERSISTENCE_ENABLED", "false");
    let s = Server::start(1, &[memory_only, ("AIONBD_LOG_FORMAT", "json")]);
    let tail = s.stderr_with("memory only", Duration::from_secs(10));
    let lines: Vec<serde_json::Value> = tail
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let warning = lines.iter().find(|v| v["fields"]["message"].as_str().is_some_and(|m| m.contains("memory only")));
    assert_eq!(warning.map(|v| v["level"].as_str()), Some(Some("WARN")), "{tail}");
    drop(s);
    let quiet = Server::start(1, &[memory_only, ("AIONBD_LOG", "error")]);
    assert!(!quiet.stderr_tail().contains("memory only"), "{}", quiet.stderr_tail());
    drop(quiet);
    let loud = Server::start(1, &[memory_only, ("AIONBD_LOG", "error"), ("RUST_LOG", "info")]);
    let tail = loud.stderr_with("memory only", Duration::from_secs(10));
    assert!(tail.contains("memory only"), "{tail}");
    let (code, err) = run_expecting_failure(&[("AIONBD_LOG", "warn,,=x=y")], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("server.log"), "{err}");
}

/// A server SIGKILLed and started again at once on the same address starts:
/// the dead process's listening socket outlives it for a few milliseconds
/// (io_uring teardown), and the new one waits for it instead of failing
/// with "address in use" (found by scripts/chaos.sh).
#[test]
fn a_restart_right_after_sigkill_gets_the_same_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bind = format!("127.0.0.1:{port}");
    let dir = crate::harness::unique_dir();
    let first = Server::start_in(&dir, 2, &[("AIONBD_BIND", &bind)], &[]);
    first.kill();
    let second = Server::start_in(&dir, 2, &[("AIONBD_BIND", &bind)], &[]);
    assert_eq!(second.addr, bind);
    assert_eq!(second.req("GET", "/ready", None).status, 200);
    drop(second);
    let _ = std::fs::remove_dir_all(dir);
}
