//! Starts the real `aionbd` binary on 127.0.0.1:0 and talks raw HTTP/1.1 to
//! it. On failure, the server's command line and output are printed.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Lines of the server's stderr kept for failure messages.
const LOG_TAIL: usize = 40;

pub struct Server {
    child: Child,
    pub addr: String,
    pub data_dir: std::path::PathBuf,
    /// Remove `data_dir` on drop (false when the test passed it in).
    owns_dir: bool,
    command: String,
    /// The last [`LOG_TAIL`] lines of the server's stderr. The pipe is
    /// drained all along: a full pipe would block the shard that writes.
    log: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("response is not JSON ({e}): {:?}", self.body))
    }
}

pub fn unique_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir =
        std::env::temp_dir().join(format!("aionbd-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Server {
    /// Start with `shards` shards and extra `AIONBD_*` variables.
    pub fn start(shards: usize, env: &[(&str, &str)]) -> Server {
        Self::start_with_args(shards, env, &[])
    }

    pub fn start_with_args(shards: usize, env: &[(&str, &str)], args: &[&str]) -> Server {
        let mut s = Self::start_in(&unique_dir(), shards, env, args);
        s.owns_dir = true;
        s
    }

    /// Start on an existing data directory (kept after the server stops).
    pub fn start_in(dir: &std::path::Path, shards: usize, env: &[(&str, &str)], args: &[&str]) -> Server {
        Self::launch(Command::new(env!("CARGO_BIN_EXE_aionbd")), dir, shards, env, args)
    }

    /// [`Server::start`] through a wrapper that execs the server
    /// (`wrapper` then the server's path), e.g. `setpriv` to drop a
    /// capability.
    pub fn start_under(wrapper: &[&str], shards: usize, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..]).arg(env!("CARGO_BIN_EXE_aionbd"));
        let mut s = Self::launch(cmd, &unique_dir(), shards, env, &[]);
        s.owns_dir = true;
        s
    }

    fn launch(mut cmd: Command, dir: &std::path::Path, shards: usize, env: &[(&str, &str)], args: &[&str]) -> Server {
        let data_dir = dir.to_path_buf();
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AIONBD_BIND", "127.0.0.1:0")
            .env("AIONBD_SHARDS", shards.to_string())
            .env("AIONBD_DATA_DIR", &data_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let command = format!("{cmd:?}");
        let mut child = cmd.spawn().expect("spawn aionbd");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let tail = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("no turn for") {
                    eprintln!("{line}"); // a stalled shard: shown even when the test passes
                }
                let mut t = tail.lock().unwrap();
                if t.len() == LOG_TAIL {
                    t.remove(0);
                }
                t.push(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Skip "recovering" lines: the server is up once it listens.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100)); // the last lines
                panic!("server did not start: {command}\nstderr:\n{}", log.lock().unwrap().join("\n"));
            }
        };
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected start line: {line}"))
            .to_owned();
        Server { child, addr, data_dir, owns_dir: false, command, log }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    /// One request on a fresh connection (`Connection: close`).
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
        let mut s = self.connect();
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!("content-length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        let t0 = std::time::Instant::now();
        s.write_all(&bytes).unwrap();
        let mut out = Vec::new();
        if let Err(e) = s.read_to_end(&mut out) {
            // A request that got no answer: is the server wedged, or only
            // this connection? Ask on a fresh one.
            let probe = TcpStream::connect(&self.addr).and_then(|mut p| {
                p.set_read_timeout(Some(Duration::from_secs(5)))?;
                p.write_all(b"GET /metrics HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")?;
                let mut b = String::new();
                p.read_to_string(&mut b).map(|_| b)
            });
            panic!(
                "{method} {path}: no answer after {:?} ({e}; {} bytes read)\nGET /metrics on a new connection: {probe:?}\n{}",
                t0.elapsed(),
                out.len(),
                self.stderr_tail()
            );
        }
        let mut resps = parse_responses(&out);
        assert_eq!(
            resps.len(),
            1,
            "{} {path}: expected one response, got {resps:?}\nserver: {}\nits stderr, last lines:\n{}",
            method,
            self.command,
            self.stderr_tail()
        );
        resps.remove(0)
    }

    pub fn req(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        let headers: &[(&str, &str)] = if body.is_some() { &[("content-type", "application/json")] } else { &[] };
        self.raw(method, path, headers, body.map(str::as_bytes))
    }

    /// Request, assert the status, return the JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
        let text = body.map(|b| b.to_string());
        let r = self.req(method, path, text.as_deref());
        assert_eq!(r.status, status, "{method} {path} {text:?} -> {} {}\n{}", r.status, r.body, self.stderr_tail());
        r.json()
    }

    /// The server's command line and the last lines of its stderr.
    pub fn stderr_tail(&self) -> String {
        format!("server: {}\nlast stderr lines:\n{}", self.command, self.log.lock().unwrap().join("\n"))
    }

    /// [`Server::stderr_tail`] once the server's stderr holds `needle`, or
    /// after `limit` (the lines reach the log through a reader thread, which
    /// may lag the server's readiness).
    pub fn stderr_with(&self, needle: &str, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline && !self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stderr_tail()
    }

    /// Assert an error response: status and code.
    pub fn error(&self, method: &str, path: &str, body: Option<&str>, status: u16, code: &str) -> Value {
        let r = self.req(method, path, body);
        assert_eq!(r.status, status, "{method} {path} {body:?} -> {} {}", r.status, r.body);
        let v = r.json();
        assert_eq!(v["code"], code, "{method} {path}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v
    }

    /// Wait up to `limit` for the process to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        wait_timeout(&mut self.child, limit)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process gets no chance to clean up (a crash).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send SIGTERM and return the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        send_signal(self.child.id(), 15);
        let status = wait_timeout(&mut self.child, Duration::from_secs(10));
        status.unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("server did not stop after SIGTERM")
        })
    }
}

/// Signal a process through bash's `kill` builtin (no procps needed).
fn send_signal(pid: u32, sig: i32) {
    let _ = Command::new("bash").arg("-c").arg(format!("kill -{sig} {pid}")).status();
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

type Headers = Vec<(String, String)>;

/// A response head: where it ends (the blank line), status, headers
/// (names lower-cased); `None` until the blank line arrived.
fn parse_head(bytes: &[u8]) -> Option<(usize, u16, Headers)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    Some((end, status, headers))
}

/// Parse consecutive HTTP responses (Content-Length framed) from bytes.
pub fn parse_responses(mut bytes: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Some((end, status, headers)) = parse_head(bytes) else { break };
        let len: usize =
            headers.iter().find(|(k, _)| k == "content-length").map(|(_, v)| v.parse().unwrap()).unwrap_or(0);
        if bytes.len() < end + 4 + len {
            break;
        }
        let body = String::from_utf8_lossy(&bytes[end + 4..end + 4 + len]).into_owned();
        bytes = &bytes[end + 4 + len..];
        out.push(Resp { status, headers, body });
    }
    out
}

/// Read from a keep-alive stream until `n` complete responses arrived.
pub fn read_responses(s: &mut TcpStream, n: usize) -> Vec<Resp> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let resps = parse_responses(&buf);
        if resps.len() >= n {
            return resps;
        }
        let k = s.read(&mut chunk).unwrap();
        if k == 0 {
            return parse_responses(&buf);
        }
        buf.extend_from_slice(&chunk[..k]);
    }
}

/// Start the server on `dir` (2 shards) with recovery held back 1.5 s (a
/// test hook) and `env`: the process, its stdout after the first line, and
/// that first line (the recovery notice).
pub fn start_recovering(
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (Child, BufReader<std::process::ChildStdout>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aionbd"))
        .env_clear()
        .envs(env.iter().copied())
        .env("AIONBD_BIND", "127.0.0.1:0")
        .env("AIONBD_SHARDS", "2")
        .env("AIONBD_DATA_DIR", dir)
        .env("AIONBD_DEBUG_RECOVERY_DELAY_MS", "1500")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("recovering"), "first line: {line}");
    (child, out, line)
}

/// Mount a size-limited tmpfs (needs root, as on the CI machines).
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    pub fn mount(mib: u64) -> Option<Tmpfs> {
        Self::mount_with(&format!("size={mib}m"))
    }

    /// Mount with these options (`ro`, `size=...`).
    pub fn mount_with(options: &str) -> Option<Tmpfs> {
        let dir = unique_dir();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every collection, and every point of each, as clients see them.
pub fn observe(s: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    let list = s.call("GET", "/collections", None, 200);
    for c in list["collections"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        out.push(c.clone());
        let page = s.call("GET", &format!("/collections/{name}/points?limit=1000"), None, 200);
        for p in page["points"].as_array().unwrap() {
            out.push(s.call("GET", &format!("/collections/{name}/points/{}", p["id"]), None, 200));
        }
    }
    out
}

/// A streamed (chunked) download: status, headers, the decoded body, and
/// whether the body ended with its last chunk (a failed stream does not).
pub struct Download {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub complete: bool,
}

impl Server {
    /// `GET path` on a fresh connection, decoding a chunked body.
    pub fn download(&self, path: &str, headers: &[(&str, &str)]) -> Download {
        let mut s = self.connect();
        let mut req = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        decode_download(&raw)
    }
}

/// Split one response (chunked or with a Content-Length) into a [`Download`].
pub fn decode_download(raw: &[u8]) -> Download {
    let (end, status, headers) = parse_head(raw).expect("a response head");
    let mut rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked");
    if !chunked {
        return Download { status, headers, body: rest.to_vec(), complete: true };
    }
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Download { status, headers, body, complete: false };
        };
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
        rest = &rest[eol + 2..];
        if size == 0 {
            return Download { status, headers, body, complete: rest.starts_with(b"\r\n") };
        }
        if rest.len() < size + 2 {
            body.extend_from_slice(&rest[..rest.len().min(size)]);
            return Download { status, headers, body, complete: false };
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Run `aionbd <args>` (a tool, not the server): exit code, stdout, stderr.
pub fn tool(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aionbd")).args(args).env_clear().output().expect("run aionbd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
