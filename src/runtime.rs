//! Start-up wiring: one glommio executor per shard, pinned to its CPU, joined
//! by a message mesh; every executor binds the listen address (SO_REUSEPORT)
//! and serves the connections the kernel hands it.

use crate::api::{Api, Shared};
use crate::metrics::Metrics;
use crate::router::{Msg, Router};
use aionbd_http::{ConnConfig, Limits};
use aionbd_shards::placement::Placement;
use aionbd_shards::{Shard, ShardLimits};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Messages in flight between two shards before the sender waits.
const MESH_CHANNEL_CAPACITY: usize = 1024;
/// Bytes each executor registers with io_uring for I/O buffers.
const IO_MEMORY_BYTES: usize = 2 << 20;
/// How often a shard checks for a shutdown request.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);
/// How long a shard waits for in-flight requests at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Reserve the listen address before the shards start: this resolves port 0
/// to a real port that every shard then binds with SO_REUSEPORT, and fails
/// early (with a clear message) if the address is taken. The returned socket
/// is never listened on, so it receives no connections.
pub fn reserve_address(addr: SocketAddr) -> std::io::Result<(socket2::Socket, SocketAddr)> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    let local = socket.local_addr()?.as_socket().expect("an inet socket has an inet address");
    Ok((socket, local))
}

pub struct Started {
    pub handles: glommio::PoolThreadHandles<()>,
}

/// Start every shard. Returns once all of them listen, or with the errors.
pub fn start(shared: Arc<Shared>, addr: SocketAddr, shutdown: Arc<AtomicBool>) -> Result<Started, String> {
    let n = shared.config.shards;
    let mesh: Option<MeshBuilder<Msg, _>> = (n > 1).then(|| MeshBuilder::full(n, MESH_CHANNEL_CAPACITY));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, String>>();
    let spin = shared.config.spin_before_park_us;
    let mut builder = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(n, None))
        .name("aionbd-shard")
        .io_memory(IO_MEMORY_BYTES)
        .preempt_timer(Duration::from_millis(5));
    if spin > 0 {
        builder = builder.spin_before_park(Duration::from_micros(spin));
    }
    let handles = builder
        .on_all_shards(move || async move {
            let result = shard_main(shared, mesh, addr, shutdown, ready_tx.clone()).await;
            if let Err(e) = result {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| format!("cannot start shard executors: {e}"))?;
    let mut errors = Vec::new();
    for _ in 0..n {
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a shard did not start within 30 s".into()),
        }
    }
    if errors.is_empty() {
        Ok(Started { handles })
    } else {
        Err(errors.join("; "))
    }
}

async fn shard_main(
    shared: Arc<Shared>,
    mesh: Option<MeshBuilder<Msg, glommio::channels::channel_mesh::Full>>,
    addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<usize, String>>,
) -> Result<(), String> {
    let cfg = &shared.config;
    let joined = match mesh {
        Some(m) => Some(m.join().await.map_err(|_| "cannot join the shard mesh".to_string())?),
        None => None,
    };
    let me = joined.as_ref().map_or(0, |(s, _)| s.peer_id());
    let placement = Placement::new(cfg.shards, cfg.partitions_per_collection);
    let shard = Shard::new(me, placement, ShardLimits { max_points_per_collection: cfg.max_points_per_collection });
    let metrics = Rc::new(Metrics::default());
    let router = Router::start(shard, cfg.shards, metrics.clone(), joined);
    let api = Rc::new(Api::new(router, shared.clone()));
    let listener = TcpListener::bind(addr).map_err(|e| format!("shard {me}: cannot listen on {addr}: {e}"))?;
    let conn_cfg = ConnConfig {
        limits: Limits { max_head_bytes: cfg.max_head_bytes, max_headers: 64, max_body_bytes: cfg.max_body_bytes },
        request_read_timeout: Duration::from_millis(cfg.request_read_timeout_ms),
        idle_timeout: Duration::from_millis(cfg.idle_timeout_ms),
        max_pipelined: 16,
    };
    let max_conns = cfg.max_connections_per_shard as u64;
    // First sleep warms glommio's timer (its first sleep can be slow).
    glommio::timer::sleep(Duration::from_millis(1)).await;
    let _ = ready.send(Ok(me));
    let stop = {
        let shutdown = shutdown.clone();
        async move {
            while !shutdown.load(Ordering::Relaxed) {
                glommio::timer::sleep(SHUTDOWN_POLL).await;
            }
            None
        }
    };
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
                    let api = api.clone();
                    let metrics = metrics.clone();
                    glommio::spawn_local(async move {
                        let _ = aionbd_http::conn::serve(stream, &*api, &conn_cfg, glommio::timer::sleep).await;
                        metrics.connections_open.set(metrics.connections_open.get() - 1);
                    })
                    .detach();
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off briefly.
                    eprintln!("aionbd: shard {me}: accept failed: {e}");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    };
    let _: Option<()> = futures_lite::future::or(accept, stop).await;
    drop(listener);
    // Let requests already running finish; idle connections are dropped.
    let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
    while metrics.in_flight() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
