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
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Messages in a channel between two shards; more wait in the sender's
/// outbox. glommio writes every slot when it makes a channel (~250 bytes a
/// message here): 1024 slots cost 440 KiB of a 2-shard server's idle RSS,
/// and 128 measured no slower (load-search 8 connections, load-ingest;
/// docs/benchmarks.md, "Footprint").
const MESH_CHANNEL_CAPACITY: usize = 128;
/// How often a shard checks for a shutdown request.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);
/// How long a shard waits for in-flight requests at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Longest a shard goes without polling for network and channel events
/// while a background queue (index builds, snapshots) has work. Glommio
/// runs a busy queue step after step and polls only when the preempt timer
/// fires; requests and shard messages wait for that poll.
const BACKGROUND_POLL: Duration = Duration::from_micros(500);
/// Preempt timer when only request handling is busy.
const PREEMPT_TIMER: Duration = Duration::from_millis(5);

/// How often every shard wakes up whatever it is doing.
const HEARTBEAT: Duration = Duration::from_millis(5);

/// Least time between two measurements of a shard's memory (memory budget).
const MEMORY_REPORT_EVERY: Duration = Duration::from_millis(20);

/// With a memory budget, every shard measures the memory its data holds
/// and tells the other shards when it changed, so each home shard admits
/// new points against the whole process's use (`Shard::memory_in_use`).
/// Measuring walks the partitions and payload indexes, so the pause after
/// a measurement is at least 20x its length (at most ~5 % of the shard).
fn start_memory_reports(router: Rc<Router>) {
    glommio::spawn_local(async move {
        let mut last = None;
        loop {
            let t0 = std::time::Instant::now();
            let own = router.with_shard(|s| s.measure_memory());
            let took = t0.elapsed();
            if last != Some(own) {
                // Nothing to wait for: each peer just records it.
                router.report_memory(own);
                last = Some(own);
            }
            glommio::timer::sleep(MEMORY_REPORT_EVERY.max(took * 20)).await;
        }
    })
    .detach();
}

/// Work around a glommio 0.9 scheduler bug: when the preempt timer fires
/// before a round runs any task queue, the executor can park although a
/// queue is runnable, and sleeps until some I/O or timer completes (fixed
/// upstream in glommio/glommio#53, not in a release we can use). A request
/// whose handling was runnable then waited for the client's next request,
/// seen as rare 30 s test timeouts under CPU contention. A pending timer
/// bounds that sleep, so every shard keeps one. It also reports turns that
/// came late (a shard busy in one long step, or not running at all).
fn start_heartbeat(me: usize) {
    glommio::spawn_local(async move {
        let mut last = (std::time::Instant::now(), thread_cpu());
        loop {
            glommio::timer::sleep(HEARTBEAT).await;
            crate::watchdog::beat(me);
            let now = (std::time::Instant::now(), thread_cpu());
            let gap = now.0 - last.0;
            crate::watchdog::turn_late(gap.saturating_sub(HEARTBEAT));
            if gap >= STALL_REPORT {
                let ran = now.1.saturating_sub(last.1);
                tracing::warn!(
                    "shard {me}: no turn for {} ms, its thread ran {} ms of it ({}); work queued meanwhile waited",
                    gap.as_millis(),
                    ran.as_millis(),
                    // Hundreds of ms of CPU without a turn: long synchronous
                    // work (under contention it also waited for the CPU).
                    if ran * 2 >= STALL_REPORT {
                        "long synchronous work"
                    } else {
                        "the thread was not running or the executor slept"
                    }
                );
            }
            last = now;
        }
    })
    .detach();
}

/// A shard that gets no turn for this long reports it (on stderr).
const STALL_REPORT: Duration = Duration::from_millis(500);

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer; the thread CPU clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A low-priority task queue for background work: `shares` against request
/// handling's 1000, and the reactor polled every [`BACKGROUND_POLL`] while
/// it runs, so requests arriving meanwhile are not held back.
pub fn background_queue(shares: usize, name: &str) -> glommio::TaskQueueHandle {
    glommio::executor().create_task_queue(
        glommio::Shares::Static(shares),
        glommio::Latency::Matters(BACKGROUND_POLL),
        name,
    )
}

/// Bind and listen on `addr` once for the whole process. Every shard
/// accepts from this one socket (a duplicate of its descriptor each), and
/// so does the recovery stand-in before them: a second process cannot bind
/// the address (no SO_REUSEPORT, so no port sharing with another server),
/// connections queued while the shards take over are served, not reset,
/// and SO_REUSEADDR lets a restart bind past connections in TIME_WAIT.
pub fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Connections the kernel queues before a shard accepts them.
const LISTEN_BACKLOG: i32 = 1024;

pub struct Started {
    pub handles: glommio::PoolThreadHandles<()>,
    /// Records replayed from the WAL, all shards together.
    pub replayed: usize,
}

/// Start-up progress a shard reports to the main thread.
enum Progress {
    Recovered { shard: usize, records: usize },
    Listening,
    Failed(StartError),
}

/// Why a shard could not start.
#[derive(Debug)]
enum StartError {
    /// The shard mesh did not form within [`MESH_WAIT`]: a fresh executor
    /// pool may cure it (up to [`START_ATTEMPTS`]).
    MeshStalled,
    Failed(String),
}

impl From<String> for StartError {
    fn from(e: String) -> Self {
        StartError::Failed(e)
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            StartError::MeshStalled => f.write_str("the shard mesh stalled"),
            StartError::Failed(e) => f.write_str(e),
        }
    }
}

/// Pause after an index build before a shard starts the next (API.md §9's
/// `AIONBD_L2_INDEX_BUILD_COOLDOWN_MS` default).
const INDEX_BUILD_COOLDOWN: Duration = Duration::from_millis(1000);

/// How often the main thread reports recovery progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How often it updates systemd's STATUS= line meanwhile.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// How long a shard waits for the channel mesh to form before the start-up
/// is retried. (Rarely, glommio's mesh join never completes: seen about once
/// in a few hundred starts under load, both executors idle. A fresh pool
/// works.) Nothing is read before the join, so a retry redoes no work.
/// After it, shards wait for each other without a deadline: recovery takes
/// as long as the data needs, and reports its progress.
const MESH_WAIT: Duration = Duration::from_secs(5);
/// How often a shard wakes while it joins the mesh (see `shard_main`).
const MESH_TICK: Duration = Duration::from_millis(1);
/// Start-up attempts before giving up on a stalled mesh.
const START_ATTEMPTS: usize = 3;

/// Start every shard. Returns once all of them listen, or with the errors.
pub fn start(
    shared: Arc<Shared>,
    listener: Arc<std::net::TcpListener>,
    shutdown: Arc<AtomicBool>,
) -> Result<Started, String> {
    crate::watchdog::install(shared.config.shards);
    for attempt in 1..=START_ATTEMPTS {
        match start_once(shared.clone(), listener.clone(), shutdown.clone())? {
            Some(started) => return Ok(started),
            None => tracing::warn!("start-up attempt {attempt}: the shard mesh stalled; starting the shards again"),
        }
    }
    Err(format!("the shard mesh did not form in {START_ATTEMPTS} attempts"))
}

/// One attempt; `Ok(None)` when the mesh stalled and all shards stopped.
fn start_once(
    shared: Arc<Shared>,
    listener: Arc<std::net::TcpListener>,
    shutdown: Arc<AtomicBool>,
) -> Result<Option<Started>, String> {
    let n = shared.config.shards;
    let mesh: Option<MeshBuilder<Msg, _>> = (n > 1).then(|| MeshBuilder::full(n, MESH_CHANNEL_CAPACITY));
    let (ready_tx, ready_rx) = mpsc::channel::<Progress>();
    let go = Arc::new(AtomicBool::new(false));
    let abort = Arc::new(AtomicBool::new(false));
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let gate = Gate {
        go: go.clone(),
        abort: abort.clone(),
        progress: progress.clone(),
        join_slots: Arc::new(AtomicUsize::new(0)),
    };
    let spin = shared.config.spin_before_park_us;
    // One pinned executor per CPU; unpinned when asked for more shards
    // than CPUs (server.allow_more_shards_than_cpus).
    let placement =
        if shared.config.oversubscribed { PoolPlacement::Unbound(n) } else { PoolPlacement::MaxSpread(n, None) };
    let mut builder = LocalExecutorPoolBuilder::new(placement)
        .name("aionbd-shard")
        .io_memory(shared.config.io_memory_bytes)
        .ring_depth(shared.config.ring_depth)
        .preempt_timer(PREEMPT_TIMER);
    if spin > 0 {
        builder = builder.spin_before_park(Duration::from_micros(spin));
    }
    let handles = builder
        .on_all_shards(move || async move {
            let result = shard_main(shared, mesh, listener, shutdown, gate, ready_tx.clone()).await;
            if let Err(e) = result {
                let _ = ready_tx.send(Progress::Failed(e));
            }
        })
        .map_err(|e| format!("cannot start shard executors: {e}"))?;
    // Phase 1: every shard recovers its WAL and replays it. Nobody serves
    // until all have, so no request sees a half-replayed state.
    let mut replayed = 0;
    let mut done = vec![false; n];
    let t0 = std::time::Instant::now();
    let mut last_report = t0;
    let mut last_status = t0;
    crate::notify::status("recovering: loading snapshots and replaying the write-ahead log");
    while done.iter().any(|d| !d) {
        match ready_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Progress::Recovered { shard, records }) => {
                replayed += records;
                done[shard] = true;
            }
            Ok(Progress::Failed(StartError::MeshStalled)) => {
                abort.store(true, Ordering::SeqCst);
                handles.join_all();
                return Ok(None);
            }
            Ok(Progress::Failed(e)) => return Err(e.to_string()),
            Ok(Progress::Listening) => return Err("a shard listened before recovery ended".into()),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("the shards stopped during recovery".into()),
        }
        let states = || -> String {
            let states: Vec<String> = (0..n)
                .map(|s| {
                    let r = progress[s].load(Ordering::Relaxed);
                    format!("shard {s} {} {r} records", if done[s] { "done," } else { "replaying," })
                })
                .collect();
            format!("recovering for {:.0} s: {}", t0.elapsed().as_secs_f64(), states.join("; "))
        };
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = std::time::Instant::now();
            crate::notify::status(&states());
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = std::time::Instant::now();
            tracing::info!("{}", states());
        }
    }
    go.store(true, Ordering::SeqCst);
    // Phase 2: every shard listens.
    for _ in 0..n {
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Progress::Listening) => {}
            Ok(Progress::Failed(e)) => return Err(e.to_string()),
            Ok(Progress::Recovered { .. }) => return Err("unexpected start-up message".into()),
            Err(_) => return Err("a shard did not start listening within 30 s".into()),
        }
    }
    Ok(Some(Started { handles, replayed }))
}

/// What the main thread tells the shards after their recovery: serve, or
/// stop (another shard's mesh stalled and the start-up is retried).
#[derive(Clone)]
struct Gate {
    go: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
    /// Records each shard has applied so far (snapshot and WAL).
    progress: Arc<Vec<AtomicU64>>,
    /// Watchdog slots handed out to shards joining the mesh (their own
    /// index is known only once they joined).
    join_slots: Arc<AtomicUsize>,
}

/// Load the shard's snapshot, recover and replay its WAL, and attach the
/// WAL and the snapshot task to the router. Returns the records applied.
async fn recover_shard(router: &Rc<Router>, shared: &Shared, me: usize, progress: &AtomicU64) -> Result<usize, String> {
    let p = &shared.config.persistence;
    let shard_dir = shared.shards_root.join(format!("shard-{me:02}"));
    let wal_dir = shard_dir.join(aionbd_io::wal::WAL_DIR);
    std::fs::create_dir_all(&wal_dir).map_err(|e| format!("cannot create {}: {e}", wal_dir.display()))?;
    let t0 = std::time::Instant::now();
    // Read and scan the WAL segments on a helper thread, a few ahead of
    // the replay, starting while the snapshot loads.
    let reader = (!p.wal_truncate_corrupt).then(|| crate::wal::SegmentReader::start(&wal_dir));
    let loaded = crate::snapshot::load(router, &shard_dir, me, progress).await?;
    let t1 = std::time::Instant::now();
    let first_lsn = loaded.manifest.as_ref().map_or(1, |m| m.lsn + 1);
    if let Some(late) = crate::debug_hooks::slow_replay(me) {
        glommio::timer::sleep(late).await;
    }
    let mut replayer = crate::replay::Replayer::new(router);
    let mut apply = |r: &aionbd_io::wal::Record| -> Result<(), String> {
        replayer.apply(r)?;
        if replayer.records.is_multiple_of(64) {
            progress.fetch_add(64, Ordering::Relaxed);
        }
        Ok(())
    };
    let (recovered, read_bytes) = match reader {
        Some(reader) => reader.replay(first_lsn, &mut apply).await.map_err(|e| e.to_string())?,
        // Cutting a damaged log needs the whole log first (the operator's
        // --wal-truncate-corrupt): read, recover (and cut), then replay.
        None => {
            let segments = crate::wal::read_segments(&wal_dir)
                .map_err(|e| format!("cannot read WAL directory {}: {e}", wal_dir.display()))?;
            let read: u64 = segments.iter().map(|s| s.bytes.len() as u64).sum();
            let mut rec =
                crate::wal::recover_dir(&wal_dir, first_lsn, true, Some(segments)).map_err(|e| e.to_string())?;
            for (i, r) in std::mem::take(&mut rec.records).iter().enumerate() {
                apply(r)?;
                if i % 64 == 63 {
                    futures_lite::future::yield_now().await;
                }
            }
            (rec, read)
        }
    };
    replayer.flush()?;
    let (replayed, replayed_bytes) = (replayer.records, replayer.bytes);
    if let Some(m) = &loaded.manifest {
        if !recovered.reaches_segment(m.wal_segment_seq) {
            return Err(format!(
                "WAL segment {} (and any after it) is missing from {}: the manifest recorded it when the \
                 snapshot at LSN {} was taken; acknowledged writes may be lost, refusing to start",
                m.wal_segment_seq,
                wal_dir.display(),
                m.lsn
            ));
        }
    }
    if loaded.records > 0 || replayed > 0 {
        tracing::info!(
            "shard {me}: snapshot: {} records ({:.1} MB) in {:.2} s; WAL: {replayed} records ({:.1} MB of \
             segments read and scanned alongside) replayed in {:.2} s",
            loaded.records,
            loaded.file_bytes as f64 / 1e6,
            (t1 - t0).as_secs_f64(),
            read_bytes as f64 / 1e6,
            t1.elapsed().as_secs_f64()
        );
    }
    let options = aionbd_io::wal::WalOptions {
        shard_id: me as u16,
        segment_bytes: p.wal_segment_bytes,
        policy: crate::wal::sync_policy(p),
        max_batch: p.wal_group_commit_max_batch as usize,
        flush_delay: Duration::from_millis(p.wal_group_commit_flush_delay_ms),
    };
    let wal = crate::wal::open(&shard_dir, &recovered, options).await.map_err(|e| e.to_string())?;
    if let Some(t) = &recovered.torn_tail {
        tracing::warn!("WAL {}: truncated a torn tail at offset {} (an unacknowledged batch)", t.segment, t.offset);
    }
    // The replayed log counts toward the next snapshot.
    wal.bytes.set(recovered.log_bytes.max(replayed_bytes));
    router.set_wal(wal);
    let snaps = crate::snapshot::Snapshots::new(me, shard_dir, p, loaded.file_bytes);
    progress.store(loaded.records + replayed, Ordering::Relaxed);
    router.set_snapshots(snaps);
    Ok((loaded.records + replayed) as usize)
}

async fn shard_main(
    shared: Arc<Shared>,
    mesh: Option<MeshBuilder<Msg, glommio::channels::channel_mesh::Full>>,
    listener: Arc<std::net::TcpListener>,
    shutdown: Arc<AtomicBool>,
    gate: Gate,
    ready: mpsc::Sender<Progress>,
) -> Result<(), StartError> {
    let cfg = &shared.config;
    let joined = match mesh {
        Some(m) => {
            // The join waits on notifications from the other executors. Seen
            // under CPU contention: an executor slept through one (34 of 200
            // starts with five busy loops beside them), and only the
            // timeout below woke it, so the start took 5 s; or it slept
            // through its timers too and the start hung. So the shard beats
            // a watchdog slot of its own while it joins (a sleep through
            // timers is interrupted within 100 ms), and a 1 ms ticker makes
            // every turn look at the channels again.
            let slot = gate.join_slots.fetch_add(1, Ordering::SeqCst) % cfg.shards;
            let _joining = crate::watchdog::watch(slot);
            let ticker = async {
                loop {
                    glommio::timer::sleep(MESH_TICK).await;
                    crate::watchdog::beat(slot);
                }
            };
            let join = futures_lite::future::or(m.join(), ticker);
            let joined = glommio::timer::timeout(MESH_WAIT, async { Ok(join.await) }).await;
            match joined {
                Ok(Ok(j)) => Some(j),
                Ok(Err(_)) => return Err(StartError::Failed("cannot join the shard mesh".to_string())),
                Err(_) => return Err(StartError::MeshStalled),
            }
        }
        None => None,
    };
    let me = joined.as_ref().map_or(0, |(s, _)| s.peer_id());
    let placement = Placement::new(cfg.shards, cfg.partitions_per_collection);
    let shard = Shard::new(
        me,
        placement,
        ShardLimits {
            max_points_per_collection: cfg.max_points_per_collection,
            memory_budget_bytes: cfg.memory_budget_bytes,
            hnsw: cfg.hnsw,
            tenant_quota: cfg.tenant_quota,
        },
    );
    let metrics = Rc::new(Metrics::default());
    let router = Router::start(shard, cfg.shards, metrics.clone(), joined);
    router.rate.set_limit(cfg.rate_limit_per_minute, cfg.rate_window_retention_minutes);
    // A shard that gets no turn is woken (and reported) from the start.
    start_heartbeat(me);
    let _watched = crate::watchdog::watch(me);
    let mut records = 0;
    if cfg.persistence.enabled {
        records =
            recover_shard(&router, &shared, me, &gate.progress[me]).await.map_err(|e| format!("shard {me}: {e}"))?;
    }
    // Wait (without a deadline) until every peer applied what this shard
    // sent it; a start-up given up elsewhere stops the wait.
    let aborted = async {
        while !gate.abort.load(Ordering::SeqCst) {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
    };
    futures_lite::future::or(router.barrier(), aborted).await;
    if gate.abort.load(Ordering::SeqCst) {
        return Ok(());
    }
    // A log replayed at start that is due for a snapshot gets it now,
    // before writes are taken: a server that crashes again before its
    // background snapshot ran (a crash loop) still bounds its log and the
    // next start's replay.
    if let Some(s) = router.snapshots().filter(|s| s.due(&router)) {
        let t0 = std::time::Instant::now();
        if let Some(lsn) = s.take(&router).await {
            tracing::info!(
                "shard {me}: snapshot at LSN {lsn} taken at start-up in {:.2} s",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let _ = ready.send(Progress::Recovered { shard: me, records });
    while !gate.go.load(Ordering::SeqCst) {
        if gate.abort.load(Ordering::SeqCst) {
            return Ok(());
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    // Background work starts only once every shard serves.
    if let Some(s) = router.snapshots() {
        s.start(router.clone());
    }
    crate::indexer::start(router.clone(), INDEX_BUILD_COOLDOWN);
    if cfg.memory_budget_bytes > 0 {
        start_memory_reports(router.clone());
    }
    for fault in crate::debug_hooks::shard_faults(me) {
        use crate::debug_hooks::ShardFault;
        glommio::spawn_local(async move {
            match fault {
                ShardFault::Pause(after) => {
                    glommio::timer::sleep(after).await;
                    // SAFETY: pause has no preconditions; it returns after a signal.
                    unsafe { libc::pause() };
                }
                ShardFault::Stall(after) => {
                    glommio::timer::sleep(after).await;
                    std::thread::sleep(Duration::from_secs(2));
                }
                ShardFault::Panic(after) => {
                    glommio::timer::sleep(after).await;
                    panic!("AIONBD_DEBUG_PANIC_SHARD_{me}_MS: shard {me} panics as asked");
                }
            }
        })
        .detach();
    }
    let api = Rc::new(Api::new(router, shared.clone()));
    let fd = listener.try_clone().map_err(|e| format!("shard {me}: cannot share the listening socket: {e}"))?;
    // SAFETY: a fresh duplicate of a listening TCP socket's descriptor,
    // owned from here on by the glommio listener (closed when it drops).
    let listen_fd = fd.into_raw_fd();
    let listener = unsafe { TcpListener::from_raw_fd(listen_fd) };
    let conn_cfg = ConnConfig {
        limits: Limits { max_head_bytes: cfg.max_head_bytes, max_headers: 64, max_body_bytes: cfg.max_body_bytes },
        request_read_timeout: Duration::from_millis(cfg.request_read_timeout_ms),
        idle_timeout: Duration::from_millis(cfg.idle_timeout_ms),
        max_pipelined: 16,
    };
    let max_conns = cfg.max_connections_per_shard as u64;
    // The certificate for new connections (taken again after a SIGHUP).
    let creds = crate::reload::Local::new(&shared.current);
    // First sleep warms glommio's timer (its first sleep can be slow).
    glommio::timer::sleep(Duration::from_millis(1)).await;
    let _ = ready.send(Progress::Listening);
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
                    let tls = creds.get(&shared.current).tls.clone().map(futures_rustls::TlsAcceptor::from);
                    let peer = stream.peer_addr().ok().map(|a| a.ip());
                    glommio::spawn_local(async move {
                        let service = crate::api::ForPeer { api: &api, peer };
                        match tls {
                            None => {
                                let _ =
                                    aionbd_http::conn::serve(stream, &service, &conn_cfg, glommio::timer::sleep).await;
                            }
                            // The handshake gets the time a request has to arrive.
                            Some(acceptor) => {
                                let handshake = async { acceptor.accept(stream).await.ok() };
                                let late = async {
                                    glommio::timer::sleep(conn_cfg.request_read_timeout).await;
                                    None
                                };
                                if let Some(tls_stream) = futures_lite::future::or(handshake, late).await {
                                    let _ = aionbd_http::conn::serve(
                                        tls_stream,
                                        &service,
                                        &conn_cfg,
                                        glommio::timer::sleep,
                                    )
                                    .await;
                                }
                            }
                        }
                        metrics.connections_open.set(metrics.connections_open.get() - 1);
                    })
                    .detach();
                }
                Err(_) if shutdown.load(Ordering::Relaxed) => glommio::timer::sleep(SHUTDOWN_POLL).await,
                Err(e) => {
                    // Out of file descriptors and similar: back off briefly.
                    tracing::warn!("shard {me}: accept failed: {e}");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    };
    let _: Option<()> = futures_lite::future::or(accept, stop).await;
    // Stop the kernel from queueing connections no shard will accept (the
    // socket is shared: any shard may do it, the others' calls are no-ops).
    // SAFETY: shutdown on a descriptor this listener owns.
    unsafe { libc::shutdown(listen_fd, libc::SHUT_RD) };
    drop(listener);
    // Let requests already running finish; idle connections are dropped.
    let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
    while metrics.in_flight() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
