//! The answer while the shards recover: a small blocking responder on the
//! listen address that says `/live` 200, `/ready` 503, and 503 for every
//! other route, until the shards have loaded their snapshots and replayed
//! their logs and listen themselves (API.md §12; docs/api-decisions.md).
//!
//! It runs on its own thread, off the data path, and accepts from the same
//! listening socket the shards will accept from. It stops just after they
//! listen (a request in that ~millisecond overlap may still get its 503);
//! connections it did not accept stay queued for the shards, so none is
//! reset at the hand-over.

use crate::api::{ApiError, ErrorCode};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest request head the responder reads.
const MAX_HEAD: usize = 16 * 1024;

pub struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    /// Answer on `listener` (a duplicate of the process's listening socket,
    /// which the shards accept from once they serve) until
    /// [`Responder::stop`], over TLS when `tls` is given (as the shards will).
    pub fn start(
        listener: std::net::TcpListener,
        started: Instant,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Responder> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("aionbd-recovering".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                        match &tls {
                            None => answer(stream, started),
                            Some(cfg) => {
                                if let Ok(conn) = rustls::ServerConnection::new(cfg.clone()) {
                                    let mut tls_stream = rustls::StreamOwned::new(conn, stream);
                                    answer(&mut tls_stream, started);
                                    tls_stream.conn.send_close_notify();
                                    let _ = tls_stream.flush();
                                }
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })?;
        Ok(Responder { stop, thread: Some(thread) })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Read one request head and answer it; the connection then closes.
fn answer(mut stream: impl Read + Write, started: Instant) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let uptime_ms = started.elapsed().as_millis() as u64;
    let (status, body) = match (method, path) {
        ("GET", "/live") => {
            (200, serde_json::json!({"status": "live", "uptime_ms": uptime_ms, "recovering": true}).to_string().into())
        }
        _ => {
            let e = ApiError::new(
                ErrorCode::NotReady,
                "the server is recovering its data (loading snapshots, replaying the write-ahead log); retry when GET \
                 /ready answers 200",
            );
            (e.status(), e.body())
        }
    };
    let reason = if status == 200 { "OK" } else { "Service Unavailable" };
    let mut resp = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    resp.extend_from_slice(&body);
    let _ = stream.write_all(&resp);
    let _ = stream.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request's bytes in, the answer's bytes out.
    struct Exchange {
        input: std::io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Exchange {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Exchange {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn everything_but_live_is_503_not_ready() {
        let mut x = Exchange { input: std::io::Cursor::new(b"GET /ready HTTP/1.1\r\n\r\n".to_vec()), output: vec![] };
        answer(&mut x, Instant::now());
        let body = r#"{"code":"not_ready","message":"the server is recovering its data (loading snapshots, replaying the write-ahead log); retry when GET /ready answers 200"}"#;
        let want = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: \
             1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(String::from_utf8(x.output).unwrap(), want);
    }
}
