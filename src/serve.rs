//! A shard's accept loop: connections from the process's one listening
//! socket, each served by `aionbd_http::conn::serve` (over TLS when a
//! certificate is configured), until shutdown; then the drain.

use crate::api::{Api, ForPeer, Shared};
use crate::metrics::Metrics;
use aionbd_http::{ConnConfig, Limits};
use glommio::net::TcpListener;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a shard checks for a shutdown request.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);
/// How long a shard waits for in-flight requests at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of file descriptors and similar).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// Header lines a request may have.
const MAX_HEADERS: usize = 64;
/// Requests a connection may have queued behind the one being answered.
const MAX_PIPELINED: usize = 16;

/// The process-wide shutdown request (SIGTERM / SIGINT set it).
#[derive(Clone)]
pub struct Shutdown(pub Arc<AtomicBool>);

impl Shutdown {
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Resolves once shutdown is requested.
    pub async fn wait(&self) {
        while !self.requested() {
            glommio::timer::sleep(SHUTDOWN_POLL).await;
        }
    }
}

/// A shard's own descriptor of the process's listening socket.
pub struct ShardListener {
    listener: TcpListener,
    /// The descriptor `listener` owns (glommio's listener does not lend it).
    fd: RawFd,
}

impl ShardListener {
    pub fn new(shared: &std::net::TcpListener) -> std::io::Result<Self> {
        let fd = shared.try_clone()?.into_raw_fd();
        // SAFETY: a fresh duplicate of a listening TCP socket's descriptor,
        // owned from here on by the glommio listener (closed when it drops).
        Ok(ShardListener { listener: unsafe { TcpListener::from_raw_fd(fd) }, fd })
    }
}

/// The connection settings of the configuration.
pub fn conn_config(cfg: &crate::config::Config) -> ConnConfig {
    ConnConfig {
        limits: Limits {
            max_head_bytes: cfg.max_head_bytes,
            max_headers: MAX_HEADERS,
            max_body_bytes: cfg.max_body_bytes,
        },
        request_read_timeout: Duration::from_millis(cfg.request_read_timeout_ms),
        idle_timeout: Duration::from_millis(cfg.idle_timeout_ms),
        max_pipelined: MAX_PIPELINED,
    }
}

/// Accept and serve connections on `listener` until `shutdown`, then stop
/// the kernel queueing new ones and give requests already running
/// [`SHUTDOWN_GRACE`] to finish (idle connections are dropped).
pub async fn accept_loop(
    me: usize,
    ShardListener { listener, fd }: ShardListener,
    api: Rc<Api>,
    metrics: Rc<Metrics>,
    shared: Arc<Shared>,
    shutdown: Shutdown,
) {
    let conn_cfg = conn_config(&shared.config);
    let max_conns = shared.config.max_connections_per_shard as u64;
    // The certificate for new connections (taken again after a SIGHUP).
    let creds = crate::reload::Local::new(&shared.current);
    let accept = async {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    if metrics.connections_open.get() >= max_conns {
                        Metrics::add(&metrics.connections_rejected_total, 1);
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    Metrics::add(&metrics.connections_total, 1);
                    Metrics::add(&metrics.connections_open, 1);
                    let tls = creds.get(&shared.current).tls.clone().map(futures_rustls::TlsAcceptor::from);
                    glommio::spawn_local(serve_connection(stream, api.clone(), metrics.clone(), tls, conn_cfg))
                        .detach();
                }
                Err(_) if shutdown.requested() => glommio::timer::sleep(SHUTDOWN_POLL).await,
                Err(e) => {
                    tracing::warn!("shard {me}: accept failed: {e}");
                    glommio::timer::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    };
    futures_lite::future::or(accept, shutdown.wait()).await;
    // Stop the kernel from queueing connections no shard will accept (the
    // socket is shared: any shard may do it, the others' calls are no-ops).
    // SAFETY: shutdown on the descriptor this listener owns, still open.
    unsafe { libc::shutdown(fd, libc::SHUT_RD) };
    drop(listener);
    let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
    while metrics.in_flight() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

/// One connection, to its end.
async fn serve_connection(
    stream: glommio::net::TcpStream,
    api: Rc<Api>,
    metrics: Rc<Metrics>,
    tls: Option<futures_rustls::TlsAcceptor>,
    conn_cfg: ConnConfig,
) {
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let service = ForPeer { api: &api, peer };
    match tls {
        None => {
            let _ = aionbd_http::conn::serve(stream, &service, &conn_cfg, glommio::timer::sleep).await;
        }
        // The handshake gets the time a request has to arrive.
        Some(acceptor) => {
            let handshake = async { acceptor.accept(stream).await.ok() };
            let late = async {
                glommio::timer::sleep(conn_cfg.request_read_timeout).await;
                None
            };
            if let Some(tls_stream) = futures_lite::future::or(handshake, late).await {
                let _ = aionbd_http::conn::serve(tls_stream, &service, &conn_cfg, glommio::timer::sleep).await;
            }
        }
    }
    metrics.connections_open.set(metrics.connections_open.get() - 1);
}
