//! Start-up: one glommio executor per shard, pinned to its CPU, joined by a
//! message mesh; start attempts (a stalled mesh is retried with a fresh
//! pool); the gate that lets shards serve only once all have restored; and
//! each shard's life (`shard_main`). Every shard accepts from the process's
//! one listening socket (`listen`, `serve`).

use crate::api::{Api, Shared};
use crate::background;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::router::Msg;
use crate::serve::{self, Shutdown};
use aionbd_shards::placement::Placement;
use aionbd_shards::{Shard, ShardLimits};
use glommio::channels::channel_mesh::{MeshBuilder, Receivers, Senders};
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Messages in a channel between two shards; more wait in the sender's
/// outbox. glommio writes every slot when it makes a channel (~250 bytes a
/// message here): 1024 slots cost 440 KiB of a 2-shard server's idle RSS,
/// and 128 measured no slower (load-search 8 connections, load-ingest;
/// docs/benchmarks.md, "Footprint").
const MESH_CHANNEL_CAPACITY: usize = 128;
/// Preempt timer when only request handling is busy.
const PREEMPT_TIMER: Duration = Duration::from_millis(5);

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
    Failed(ShardStartError),
}

/// Why the server could not start (`start`'s error).
#[derive(Debug)]
pub enum StartError {
    /// The executor pool could not be built.
    Executors(glommio::GlommioError<()>),
    /// The shard mesh stalled on every attempt.
    MeshNeverFormed { attempts: usize },
    /// A shard failed on its way to serving.
    Shard(ShardStartError),
    /// A shard reported listening before every shard had recovered.
    ListenedEarly,
    /// Every shard thread ended while the main thread waited for recovery.
    ShardsStopped,
    /// A shard reported recovering a second time.
    RecoveredTwice,
    /// A shard did not report listening within [`LISTEN_WAIT`].
    NotListening,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            StartError::Executors(e) => write!(f, "cannot start shard executors: {e}"),
            StartError::MeshNeverFormed { attempts } => write!(f, "the shard mesh did not form in {attempts} attempts"),
            StartError::Shard(e) => e.fmt(f),
            StartError::ListenedEarly => f.write_str("a shard listened before recovery ended"),
            StartError::ShardsStopped => f.write_str("the shards stopped during recovery"),
            StartError::RecoveredTwice => f.write_str("unexpected start-up message"),
            StartError::NotListening => {
                write!(f, "a shard did not start listening within {} s", LISTEN_WAIT.as_secs())
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Executors(e) => Some(e),
            StartError::Shard(e) => Some(e),
            StartError::MeshNeverFormed { .. }
            | StartError::ListenedEarly
            | StartError::ShardsStopped
            | StartError::RecoveredTwice
            | StartError::NotListening => None,
        }
    }
}

/// Why one shard could not start (sent to the main thread).
#[derive(Debug)]
pub enum ShardStartError {
    /// The shard mesh did not form within [`MESH_WAIT`]: a fresh executor
    /// pool may cure it (up to [`START_ATTEMPTS`]).
    MeshStalled,
    /// Joining the mesh failed.
    MeshJoin(glommio::GlommioError<()>),
    Restore {
        shard: usize,
        source: crate::restore::RestoreError,
    },
    /// The shard's duplicate of the listening socket could not be made.
    Listener {
        shard: usize,
        source: std::io::Error,
    },
    /// Memory-light mode: the directory of the rows files could not be
    /// emptied or made.
    RowsDir {
        shard: usize,
        source: crate::fs::FsError,
    },
}

impl std::fmt::Display for ShardStartError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            ShardStartError::MeshStalled => f.write_str("the shard mesh stalled"),
            ShardStartError::MeshJoin(_) => f.write_str("cannot join the shard mesh"),
            ShardStartError::Restore { shard, source } => write!(f, "shard {shard}: {source}"),
            ShardStartError::Listener { shard, source } => {
                write!(f, "shard {shard}: cannot share the listening socket: {source}")
            }
            ShardStartError::RowsDir { shard, source } => write!(f, "shard {shard}: rows files: {source}"),
        }
    }
}

impl std::error::Error for ShardStartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShardStartError::MeshStalled => None,
            ShardStartError::MeshJoin(e) => Some(e),
            ShardStartError::Restore { source, .. } => Some(source),
            ShardStartError::Listener { source, .. } => Some(source),
            ShardStartError::RowsDir { source, .. } => Some(source),
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
/// How often a shard wakes while it joins the mesh (see `join_mesh`).
const MESH_TICK: Duration = Duration::from_millis(1);
/// Start-up attempts before giving up on a stalled mesh.
const START_ATTEMPTS: usize = 3;
/// How long the main thread waits for each shard to listen once all have
/// recovered.
const LISTEN_WAIT: Duration = Duration::from_secs(30);

/// Start every shard. Returns once all of them listen, or with the errors.
pub fn start(
    shared: Arc<Shared>,
    listener: Arc<std::net::TcpListener>,
    shutdown: Arc<AtomicBool>,
) -> Result<Started, StartError> {
    crate::watchdog::install(shared.config.shards);
    for attempt in 1..=START_ATTEMPTS {
        match start_once(shared.clone(), listener.clone(), shutdown.clone())? {
            Some(started) => return Ok(started),
            None => tracing::warn!("start-up attempt {attempt}: the shard mesh stalled; starting the shards again"),
        }
    }
    Err(StartError::MeshNeverFormed { attempts: START_ATTEMPTS })
}

/// One attempt; `Ok(None)` when the mesh stalled and all shards stopped.
fn start_once(
    shared: Arc<Shared>,
    listener: Arc<std::net::TcpListener>,
    shutdown: Arc<AtomicBool>,
) -> Result<Option<Started>, StartError> {
    let n = shared.config.shards;
    let mesh: Option<MeshBuilder<Msg, _>> = (n > 1).then(|| MeshBuilder::full(n, MESH_CHANNEL_CAPACITY));
    let (ready_tx, ready_rx) = mpsc::channel::<Progress>();
    let go = Arc::new(AtomicBool::new(false));
    let abort = Arc::new(AtomicBool::new(false));
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let started = shared.started;
    let gate = Gate {
        go: go.clone(),
        abort: abort.clone(),
        progress: progress.clone(),
        join_slots: Arc::new(AtomicUsize::new(0)),
        waiting: Arc::new(Mutex::new(Vec::new())),
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
    let release = gate.clone();
    tracing::debug!("start-up: starting {n} shard executors at {:.2} ms", ms_since(started));
    let handles = builder
        .on_all_shards(move || async move {
            let shutdown = Shutdown(shutdown);
            let result = shard_main(shared, mesh, listener, shutdown, gate, ready_tx.clone()).await;
            if let Err(e) = result {
                let _ = ready_tx.send(Progress::Failed(e));
            }
        })
        .map_err(StartError::Executors)?;
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
            Ok(Progress::Failed(ShardStartError::MeshStalled)) => {
                release.release(&abort);
                handles.join_all();
                return Ok(None);
            }
            Ok(Progress::Failed(e)) => return Err(StartError::Shard(e)),
            Ok(Progress::Listening) => return Err(StartError::ListenedEarly),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(StartError::ShardsStopped),
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
    tracing::debug!("start-up: every shard recovered at {:.2} ms", ms_since(started));
    release.release(&go);
    // Phase 2: every shard listens.
    for _ in 0..n {
        match ready_rx.recv_timeout(LISTEN_WAIT) {
            Ok(Progress::Listening) => {}
            Ok(Progress::Failed(e)) => return Err(StartError::Shard(e)),
            Ok(Progress::Recovered { .. }) => return Err(StartError::RecoveredTwice),
            Err(_) => return Err(StartError::NotListening),
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
    /// Shards waiting for `go` or `abort` ([`Gate::wait_go`]): woken by
    /// [`Gate::release`] from the main thread (glommio queues a waker
    /// woken from another thread on its executor and wakes it), so a
    /// shard starts serving the moment the last one recovered, with no
    /// polling interval on the way.
    waiting: Arc<Mutex<Vec<Waker>>>,
}

/// How often a shard waiting for its peers checks for an abort.
const ABORT_POLL: Duration = Duration::from_millis(10);

impl Gate {
    fn is_aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }

    /// Resolves once the start-up is given up.
    async fn aborted(&self) {
        while !self.is_aborted() {
            glommio::timer::sleep(ABORT_POLL).await;
        }
    }

    /// The main thread's word: set `flag` (`go` or `abort`), then wake
    /// every shard waiting in [`Gate::wait_go`].
    fn release(&self, flag: &AtomicBool) {
        flag.store(true, Ordering::SeqCst);
        let waiting = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()));
        for w in waiting {
            w.wake();
        }
    }

    /// Wait for the main thread's word: `true` to serve, `false` to stop.
    async fn wait_go(&self) -> bool {
        let decided = || {
            if self.is_aborted() {
                Some(false)
            } else if self.go.load(Ordering::SeqCst) {
                Some(true)
            } else {
                None
            }
        };
        std::future::poll_fn(|cx| {
            if let Some(go) = decided() {
                return Poll::Ready(go);
            }
            self.waiting.lock().unwrap_or_else(|e| e.into_inner()).push(cx.waker().clone());
            // Looked at again once registered: `release` sets its flag
            // before it takes the list, so a word given meanwhile is seen.
            decided().map_or(Poll::Pending, Poll::Ready)
        })
        .await
    }
}

/// Join the channel mesh (`None` with one shard). The join waits on
/// notifications from the other executors. Seen under CPU contention: an
/// executor slept through one (34 of 200 starts with five busy loops
/// beside them), and only the [`MESH_WAIT`] timeout woke it, so the start
/// took 5 s; or it slept through its timers too and the start hung. So the
/// shard beats a watchdog slot of its own while it joins (a sleep through
/// timers is interrupted within 100 ms), and a 1 ms ticker makes every
/// turn look at the channels again.
async fn join_mesh(mesh: Option<Mesh>, gate: &Gate, shards: usize) -> Result<Option<Joined>, ShardStartError> {
    let Some(m) = mesh else { return Ok(None) };
    let slot = gate.join_slots.fetch_add(1, Ordering::SeqCst) % shards;
    let _joining = crate::watchdog::watch(slot);
    let ticker = async {
        loop {
            glommio::timer::sleep(MESH_TICK).await;
            crate::watchdog::beat(slot);
        }
    };
    let join = futures_lite::future::or(m.join(), ticker);
    match glommio::timer::timeout(MESH_WAIT, async { Ok(join.await) }).await {
        Ok(Ok(joined)) => Ok(Some(joined)),
        Ok(Err(e)) => Err(ShardStartError::MeshJoin(e)),
        Err(_) => Err(ShardStartError::MeshStalled),
    }
}

type Mesh = MeshBuilder<Msg, glommio::channels::channel_mesh::Full>;
type Joined = (Senders<Msg>, Receivers<Msg>);

/// One shard, from its executor's start to its shutdown: join the mesh,
/// restore its data, wait for every shard to have restored (the gate), start
/// the background work, and serve.
async fn shard_main(
    shared: Arc<Shared>,
    mesh: Option<Mesh>,
    listener: Arc<std::net::TcpListener>,
    shutdown: Shutdown,
    gate: Gate,
    ready: mpsc::Sender<Progress>,
) -> Result<(), ShardStartError> {
    let cfg = &shared.config;
    tracing::debug!("start-up: a shard executor runs at {:.2} ms", ms_since(shared.started));
    crate::nice::init(cfg.background_nice);
    let joined = join_mesh(mesh, &gate, cfg.shards).await?;
    let me = joined.as_ref().map_or(0, |(s, _)| s.peer_id());
    tracing::debug!("start-up: shard {me} joined the mesh at {:.2} ms", ms_since(shared.started));
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
    let mut shard = shard;
    if cfg.memory_light {
        let dir = shared.shards_root.join(format!("shard-{me:02}")).join("rows");
        let files = crate::rows_file::RowsFiles::new(dir.clone()).map_err(|e| ShardStartError::RowsDir {
            shard: me,
            source: crate::fs::FsError::new("cannot prepare", &dir, e),
        })?;
        shard.set_cold_files(Rc::new(files));
        // Rows replayed go to the rows files as they come, not only once
        // a graph holds them (until every shard has recovered, below).
        shard.set_replaying(cfg.persistence.enabled);
    }
    let metrics = Rc::new(Metrics::default());
    let node = Node::start(shard, cfg.shards, metrics.clone(), joined);
    node.rate.set_limit(cfg.rate_limit_per_minute, cfg.rate_window_retention_minutes);
    // A shard that gets no turn is woken (and reported) from the start.
    background::start_heartbeat(me);
    let _watched = crate::watchdog::watch(me);
    let mut records = 0;
    if cfg.persistence.enabled {
        records = crate::restore::recover_shard(&node, &shared, me, &gate.progress[me])
            .await
            .map_err(|source| ShardStartError::Restore { shard: me, source })?;
    }
    // Wait (without a deadline) until every peer applied what this shard
    // sent it; a start-up given up elsewhere stops the wait.
    futures_lite::future::or(node.barrier(), gate.aborted()).await;
    if gate.is_aborted() {
        return Ok(());
    }
    // A log replayed at start that is due for a snapshot gets it now,
    // before writes are taken: a server that crashes again before its
    // background snapshot ran (a crash loop) still bounds its log and the
    // next start's replay.
    if let Some(s) = node.snapshots().filter(|s| s.due(&node)) {
        let t0 = std::time::Instant::now();
        if let Some(lsn) = s.take(&node).await {
            tracing::info!(
                "shard {me}: snapshot at LSN {lsn} taken at start-up in {:.2} s",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    tracing::debug!("start-up: shard {me} recovered at {:.2} ms", ms_since(shared.started));
    let _ = ready.send(Progress::Recovered { shard: me, records });
    if !gate.wait_go().await {
        return Ok(());
    }
    // Every peer has applied what it replayed here too: rows still in
    // memory (fewer than `REPLAY_HOT_ROWS` per partition) go to disk, and
    // rows written from now on wait for the graph as usual.
    node.with_shard(&"end of the replay (memory-light)", |s| s.set_replaying(false));
    // Every shard recovered, so every partition is in place (a partition's
    // data comes from its collection's home shard). Before any index build:
    // the first builds calibrate on the real queries seen before the restart.
    let shard_dir = shared.shards_root.join(format!("shard-{me:02}"));
    let rewrite_queries = cfg.persistence.enabled && crate::queries_file::restore(&node, &shard_dir);
    // Background work starts only once every shard serves.
    if let Some(s) = node.snapshots() {
        s.start(node.clone());
    }
    crate::indexer::start(node.clone(), INDEX_BUILD_COOLDOWN);
    let saver = cfg
        .persistence
        .enabled
        .then(|| crate::queries_file::Saver::start(node.clone(), shard_dir.clone(), rewrite_queries));
    if cfg.memory_budget_bytes > 0 {
        background::start_memory_reports(node.clone());
    }
    crate::debug_hooks::start_shard_faults(me);
    let api = Rc::new(Api::new(node.clone(), shared.clone()));
    let listener =
        serve::ShardListener::new(&listener).map_err(|source| ShardStartError::Listener { shard: me, source })?;
    tracing::debug!("start-up: shard {me} serves at {:.2} ms", ms_since(shared.started));
    let _ = ready.send(Progress::Listening);
    serve::accept_loop(me, listener, api, metrics, shared, shutdown).await;
    if let Some(saver) = saver {
        saver.stop().await;
    }
    Ok(())
}

/// Milliseconds since `t` (the start-up's debug-level time stamps).
pub fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use glommio::channels::channel_mesh::MeshBuilder;
    use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::{Duration, Instant};

    /// Two executors that park between messages (no spin, no timer) pass a
    /// token back and forth over the shard mesh, 40,000 hops, each waking a
    /// parked executor through glommio's sleep handshake (the notify flag,
    /// the fences `third_party/glommio` puts in place of `membarrier`, the
    /// last look at the channels, the eventfd). A lost wake-up leaves both
    /// asleep with nothing to wake them, and the test fails (seen with the
    /// flag never set). In a server the 5 ms heartbeat would hide such a
    /// loss as stalls. The window a missing fence opens is a few
    /// instructions wide (three runs without them passed): this guards the
    /// wake-up path, not the fences' placement.
    #[test]
    fn executors_parked_between_mesh_messages_always_wake() {
        const ROUND_TRIPS: u32 = 20_000;
        let mesh = MeshBuilder::<u32, _>::full(2, 1);
        let (done_tx, done_rx) = mpsc::channel();
        let pool = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(2))
            .on_all_shards(move || async move {
                let (outbox, inbox) = mesh.join().await.expect("join the mesh");
                let peer = 1 - outbox.peer_id();
                if peer == 1 {
                    outbox.send_to(peer, 0).await.expect("send");
                }
                let mut last = 0;
                while last + 1 < ROUND_TRIPS * 2 {
                    let Ok(Some(n)) = inbox.recv_from(peer).await else { break };
                    last = n;
                    if n + 1 < ROUND_TRIPS * 2 {
                        outbox.send_to(peer, n + 1).await.expect("send");
                        last = n + 1;
                    }
                }
                last
            })
            .expect("two executors");
        std::thread::spawn(move || {
            let _ = done_tx.send(pool.join_all());
        });
        let results = done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a message's wake-up was lost: both executors parked with a message pending");
        assert_eq!(results.len(), 2);
        for r in results {
            let last = r.expect("executor ran");
            assert!(last >= ROUND_TRIPS * 2 - 1, "exchange ended early at {last}");
        }
    }

    /// A message that reaches a shard while a background queue runs step
    /// after step is taken after the step it arrived in, not when the
    /// preempt timer next fires: a queue that yields ends the executor's
    /// round, so the rings and channels are polled before the next
    /// (`third_party/glommio`, `run_task_queues`). Executor 0 runs 200 us
    /// busy steps on a queue whose preempt period is 100 ms, counting them;
    /// executor 1 sends it the count every 2 ms. Upstream took each message
    /// hundreds of steps late (at the timer); the median lag asked for here
    /// is at most 2 steps, in counts, so a slow machine stretches the steps
    /// but not the lag.
    #[test]
    fn a_shard_message_waits_for_one_background_step_not_for_the_preempt_timer() {
        const MESSAGES: u64 = 25;
        let steps = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mesh = MeshBuilder::<u64, _>::full(2, 4);
        let (done_tx, done_rx) = mpsc::channel();
        let pool = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(2))
            .on_all_shards(move || {
                let (steps, stop) = (steps.clone(), stop.clone());
                async move {
                    let (outbox, inbox) = mesh.join().await.expect("join the mesh");
                    let peer = 1 - outbox.peer_id();
                    if peer == 0 {
                        // The sender: the step count it saw, every 2 ms.
                        for _ in 0..MESSAGES {
                            glommio::timer::sleep(Duration::from_millis(2)).await;
                            outbox.send_to(peer, steps.load(Ordering::Acquire)).await.expect("send");
                        }
                        return Vec::new();
                    }
                    let ex = glommio::executor();
                    let queue = ex.create_task_queue(
                        glommio::Shares::Static(50),
                        glommio::Latency::Matters(Duration::from_millis(100)),
                        "steps",
                    );
                    let (bg_steps, bg_stop) = (steps.clone(), stop.clone());
                    let background = glommio::spawn_local_into(
                        async move {
                            while !bg_stop.load(Ordering::Acquire) {
                                let t0 = Instant::now();
                                while t0.elapsed() < Duration::from_micros(200) {
                                    std::hint::spin_loop();
                                }
                                bg_steps.fetch_add(1, Ordering::AcqRel);
                                glommio::executor().yield_task_queue_now().await;
                            }
                        },
                        queue,
                    )
                    .expect("spawn the steps");
                    let mut lags = Vec::new();
                    for _ in 0..MESSAGES {
                        let Ok(Some(sent_at)) = inbox.recv_from(peer).await else { break };
                        lags.push(steps.load(Ordering::Acquire) - sent_at);
                    }
                    stop.store(true, Ordering::Release);
                    background.await;
                    lags
                }
            })
            .expect("two executors");
        std::thread::spawn(move || {
            let _ = done_tx.send(pool.join_all());
        });
        let results = done_rx.recv_timeout(Duration::from_secs(60)).expect("executors finished");
        let mut lags: Vec<u64> = results.into_iter().flat_map(|r| r.expect("executor ran")).collect();
        assert_eq!(lags.len(), MESSAGES as usize);
        lags.sort_unstable();
        let median = lags[lags.len() / 2];
        assert!(median <= 2, "messages waited a median {median} background steps (all: {lags:?})");
    }
}
