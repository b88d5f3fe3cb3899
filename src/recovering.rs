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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest request head the responder reads.
const MAX_HEAD: usize = 16 * 1024;

pub struct Responder {
    stop: Arc<AtomicBool>,
    /// An eventfd that wakes the thread out of its `poll` to stop.
    wake: Arc<OwnedFd>,
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
        // SAFETY: eventfd takes two integers; a non-negative result is a new
        // descriptor that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is the fresh descriptor checked above.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let woken = wake.clone();
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
                    // Sleep until a connection comes or `stop` wakes us (it
                    // used to sleep 2 ms between tries: a request that came
                    // then, e.g. the poll for /ready just as the shards took
                    // over, waited for it).
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        wait_readable(listener.as_raw_fd(), woken.as_raw_fd())
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })?;
        Ok(Responder { stop, wake, thread: Some(thread) })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let one = 1u64.to_ne_bytes();
        // SAFETY: an 8-byte write from a live buffer to our own eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Block until `listener` has a connection to accept or `wake` was written
/// (at most a second, as a safety net: the caller looks at its stop flag).
fn wait_readable(listener: i32, wake: i32) {
    let mut fds = [
        libc::pollfd { fd: listener, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: wake, events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: poll reads and writes the two pollfds of a live array.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000) };
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
