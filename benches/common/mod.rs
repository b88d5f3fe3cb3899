//! Shared by the HTTP benchmarks: start the release server, a keep-alive
//! client, JSON for vectors.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    /// The server binary: `AIONBD_BIN` if set, else this build's.
    bin: std::path::PathBuf,
    pub addr: String,
    pub data_dir: std::path::PathBuf,
    shards: usize,
    partitions: usize,
    extra: Vec<(String, String)>,
    /// Pass the server's stderr through on later (re)starts.
    pub show_stderr: bool,
}

impl Server {
    /// Start the release server with `extra` environment variables: the
    /// binary `AIONBD_BIN` names, else this build's.
    pub fn start(shards: usize, partitions: usize, extra: &[(&str, &str)]) -> Server {
        Self::start_bin(&default_bin(), shards, partitions, extra)
    }

    /// Start the server binary `bin` (another build's, to compare two
    /// builds in one run) with `extra` environment variables.
    pub fn start_bin(bin: &std::path::Path, shards: usize, partitions: usize, extra: &[(&str, &str)]) -> Server {
        let data_dir = std::env::temp_dir().join(format!("aionbd-bench-{}-{shards}x{partitions}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let extra: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (child, addr) = Self::spawn(bin, shards, partitions, &extra, &data_dir, false);
        Server { child, bin: bin.to_owned(), addr, data_dir, shards, partitions, extra, show_stderr: false }
    }

    /// SIGKILL the server and start it again on the same data directory;
    /// returns how long the new process took until it listened.
    pub fn crash_and_restart(&mut self) -> std::time::Duration {
        self.kill();
        self.restart()
    }

    /// Later (re)starts use this layout (the server re-places the data).
    pub fn set_layout(&mut self, shards: usize, partitions: usize) {
        self.shards = shards;
        self.partitions = partitions;
    }

    /// SIGKILL (the data directory stays).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start again on the same data directory after [`Server::kill`];
    /// returns how long the new process took until it listened.
    pub fn restart(&mut self) -> std::time::Duration {
        let t0 = std::time::Instant::now();
        let (child, addr) =
            Self::spawn(&self.bin, self.shards, self.partitions, &self.extra, &self.data_dir, self.show_stderr);
        self.child = child;
        self.addr = addr;
        t0.elapsed()
    }

    /// CPU seconds (user + system) the server process has used so far,
    /// from /proc (Linux).
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("/proc/PID/stat");
        // Fields after the command name (which may hold spaces) start at
        // state (field 3); utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        ticks as f64 / clock_ticks()
    }

    /// A memory line of /proc/PID/status in MiB (`VmRSS`, `VmHWM`: the
    /// peak RSS so far).
    pub fn status_mib(&self, key: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc/PID/status");
        let line = status.lines().find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'));
        let kib: f64 = line.and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        kib / 1024.0
    }

    fn spawn(
        bin: &std::path::Path,
        shards: usize,
        partitions: usize,
        extra: &[(String, String)],
        data_dir: &std::path::Path,
        show_stderr: bool,
    ) -> (Child, String) {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("AIONBD_BIND", "127.0.0.1:0")
            .env("AIONBD_SHARDS", shards.to_string())
            .env("AIONBD_PARTITIONS_PER_COLLECTION", partitions.to_string())
            .env("AIONBD_DATA_DIR", data_dir)
            .env("AIONBD_MAX_BODY_BYTES", (64 << 20).to_string())
            .env("AIONBD_REQUEST_TIMEOUT_MS", "60000")
            .stdout(Stdio::piped())
            .stderr(if show_stderr { Stdio::inherit() } else { Stdio::null() });
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start server");
        // The first line may say it is recovering; it serves once it listens.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("the server exited before listening");
            }
        }
        let addr =
            line.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).expect("start line").to_owned();
        (child, addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The server binary the benchmarks start: `AIONBD_BIN` if set (e.g. an
/// older build kept for comparison), else the one this build made.
pub fn default_bin() -> std::path::PathBuf {
    std::env::var_os("AIONBD_BIN").map_or_else(|| env!("CARGO_BIN_EXE_aionbd").into(), Into::into)
}

/// A keep-alive HTTP/1.1 client.
pub struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    /// Header lines sent with every request (e.g. a credential).
    extra: String,
}

impl Client {
    pub fn new(addr: &str) -> Client {
        Self::with_header(addr, None)
    }

    /// A client sending `name: value` with every request.
    pub fn with_header(addr: &str, header: Option<(&str, &str)>) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let extra = header.map_or(String::new(), |(k, v)| format!("{k}: {v}\r\n"));
        Client { s, buf: Vec::with_capacity(1 << 16), extra }
    }

    pub fn post(&mut self, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        self.send("POST", path, body)
    }

    pub fn send(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: b\r\ncontent-type: application/json\r\n{}content-length: {}\r\n\r\n",
            self.extra,
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        self.s.write_all(&req).unwrap();
        self.buf.clear();
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).unwrap().to_ascii_lowercase();
                let status: u16 = head[9..12].parse().unwrap();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    let k = self.s.read(&mut chunk).unwrap();
                    assert!(k > 0, "server closed");
                    self.buf.extend_from_slice(&chunk[..k]);
                }
                return (status, self.buf[end + 4..end + 4 + len].to_vec());
            }
            let k = self.s.read(&mut chunk).unwrap();
            assert!(k > 0, "server closed");
            self.buf.extend_from_slice(&chunk[..k]);
        }
    }
}

/// Clock ticks per second, the unit of /proc times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant and has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds (user + system) this process (every thread) has used.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid start.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// One numeric key of the server's JSON `/metrics` (0 if absent).
pub fn metric(addr: &str, key: &str) -> u64 {
    let mut c = Client::new(addr);
    let (_, body) = c.send("GET", "/metrics", b"");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v[key].as_u64().unwrap_or(0)
}

/// The `p` quantile of sorted samples.
/// Searches per second of `clients` closed-loop clients posting `bodies`
/// (round robin, each from its own offset) to the `bench` collection for
/// `seconds`.
pub fn concurrent(addr: &str, bodies: &[Vec<u8>], clients: usize, seconds: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let n: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..clients)
            .map(|t| {
                s.spawn(move || {
                    let mut c = Client::new(addr);
                    let (mut i, mut n) = (t * 37, 0);
                    while Instant::now() < deadline {
                        let (st, _) = c.post("/collections/bench/search/topk", &bodies[i % bodies.len()]);
                        assert_eq!(st, 200);
                        i += 1;
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    n as f64 / seconds
}

/// Post each of `bodies` to the `bench` collection's top-k search in turn
/// on one keep-alive connection, handing `each` the body's index and the
/// 200 answer: (searches per second, latencies in ms, sorted).
pub fn timed_searches(addr: &str, bodies: &[Vec<u8>], mut each: impl FnMut(usize, &[u8])) -> (f64, Vec<f64>) {
    let mut c = Client::new(addr);
    let mut lat = Vec::with_capacity(bodies.len());
    let t0 = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        let t = Instant::now();
        let (st, resp) = c.post("/collections/bench/search/topk", b);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&resp));
        each(i, &resp);
    }
    let qps = bodies.len() as f64 / t0.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    (qps, lat)
}

pub fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

pub fn vec_json(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}
