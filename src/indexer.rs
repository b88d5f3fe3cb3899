//! Background index work: one task per shard, on a low-priority task queue.
//! Each round it builds the payload indexes filters asked for, inserts
//! points written since into the HNSW graphs (paced
//! against the writes, for at most [`EXTEND_ROUND`]), recalibrates an installed index (on real queries, or its graph on held-out points) when
//! one is due (`shards::partition::recal`), or else finds a partition
//! wanting its IVF index, or once that is in its HNSW graph, (re)built:
//! builds and calibrates in bounded steps that read the partition's rows in
//! place, installs the result and hands the index it replaced, and the
//! memory the build freed, back to the kernel on the reclaim thread
//! ([`crate::reclaim`]). Writes and
//! searches go on meanwhile; points changed since the build started are
//! searched exactly until the next build (`shards::partition`).
//!
//! Pacing: between steps the task yields the CPU; while the shard is
//! serving requests it also rests three times as long as the step took
//! (eight times while it applies writes, as a collection's home or as a
//! partition of one), so index work takes at most a quarter of a busy
//! shard (a ninth of an ingesting one). (Glommio's shares
//! alone do not bound it: a request queue that waits on I/O loses its turn
//! credit, and the background queue runs a step at each of its wake-ups.)
//! One exception: while more than [`BACKLOG`] points of a shard wait for
//! its graphs, graph inserts do not rest, the queue gets request
//! handling's shares (so up to half a busy shard), and they come before
//! any build or recalibration step. Every search scans the waiting points
//! (exactly, or past 1,024 in a partition by their codes), so a ninth of
//! the shard would let fast ingest (1,400 points/s on 2 shards,
//! docs/benchmarks.md) grow them, and every search's cost, without end.

use crate::node::Node;
use aionbd_shards::math::rng::lcg64;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often an idle shard looks for a partition to index.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// Shares of the build queue; request handling has 1000.
const BUILD_SHARES: usize = 50;
/// Time a graph-extension step may take.
const EXTEND_STEP: Duration = Duration::from_micros(150);
/// Points a payload-index build step indexes (about 0.1 ms).
const PAYLOAD_INDEX_STEP: usize = 512;
/// Rows a memory-light partition writes to its rows file per step (384
/// dims: 96 KiB, about 0.1-0.3 ms on this box's virtual disk).
const EVICT_STEP: usize = 64;
/// Least time between two `malloc_trim`s while writes go on.
const TRIM_WRITING: Duration = Duration::from_secs(2);
/// Longest stretch of graph extension per round (rests included).
const EXTEND_ROUND: Duration = Duration::from_secs(2);
/// Points changed during a graph build that may wait as pending when it is
/// installed (the rest is inserted into the new graph first)...
const CATCH_UP_LEFT: usize = 256;
/// ...unless, over this long, the catch-up did not shrink what waits.
const CATCH_UP_ROUND: Duration = Duration::from_secs(2);
/// Rest per unit of step time while requests arrive (index work then
/// takes at most a quarter of the core)...
const BUSY_REST: u32 = 3;
/// ...and while writes arrive (at most a ninth): acknowledging writes is
/// the shard's first duty, an index is derived data that can catch up, and
/// during a bulk load most index work is redone as the partition grows.
const WRITE_REST: u32 = 8;
/// Points waiting for the graphs of a shard (searched exactly by every
/// search) past which graph inserts take up to half the shard, ahead of
/// builds and recalibrations: they do not rest between steps but yield,
/// and the build queue has as many shares as request handling
/// ([`BACKLOG_SHARES`]). Under steady ingest faster than a ninth of the
/// shard inserts, the pending set settles at this line, so every search
/// scans about this many points exactly: at 1,700 single-point upserts/s
/// the search p50 was 0.56-0.76 ms with 1,024 and 0.48-0.56 ms with 128
/// (idle: 0.36-0.39; docs/benchmarks.md, "At 1,700 points/s"), with the
/// same write latency. The inserts are the same work either way; only
/// when they run changes.
const BACKLOG: usize = 128;
/// Shares of the build queue while the backlog is past [`BACKLOG`]. A
/// timed rest would not do: a sleeping queue's timer fires only when the
/// busy request queue is preempted (every 5 ms), so a 150 µs step per
/// wake-up got 3 % of a shard whose searches scanned a growing backlog.
const BACKLOG_SHARES: usize = 1000;
/// How long a shard must have applied no write for a graph to be rebuilt
/// for growth (`shards::partition::graph::GROWTH_REBUILD`): under steady
/// ingest it grows by inserts and is recalibrated instead.
const WRITES_PAUSED: Duration = Duration::from_secs(2);
/// How often glommio reads the build queue's shares.
const SHARES_PERIOD: Duration = Duration::from_millis(10);

thread_local! {
    /// Whether this shard's graph backlog is past [`BACKLOG`], as the
    /// indexer last saw it (one executor per thread: one flag per shard).
    static BACKLOGGED: Cell<bool> = const { Cell::new(false) };
    /// Whether a finished graph is catching up with more than [`BACKLOG`]
    /// points written during its build (see `build_graph`).
    static CATCHING_UP: Cell<bool> = const { Cell::new(false) };
}

/// The build queue's shares: [`BUILD_SHARES`], or [`BACKLOG_SHARES`] while
/// graph inserts are behind.
struct BuildShares;

impl glommio::SharesManager for BuildShares {
    fn shares(&self) -> usize {
        if BACKLOGGED.get() || CATCHING_UP.get() {
            BACKLOG_SHARES
        } else {
            BUILD_SHARES
        }
    }

    fn adjustment_period(&self) -> Duration {
        SHARES_PERIOD
    }
}

/// Paces background steps against request load.
struct Pace<'a> {
    node: &'a Node,
    seen: u64,
    writes_seen: u64,
}

/// Run a paced index step at the nice value index work runs at
/// (`index.background_nice`, [`crate::nice`]).
fn low<T>(f: impl FnOnce() -> T) -> T {
    let _low = crate::nice::lowered();
    f()
}

impl<'a> Pace<'a> {
    fn new(node: &'a Node) -> Self {
        Pace { node, seen: node.metrics.requests_started(), writes_seen: node.metrics.writes_applied() }
    }

    /// Run one step, then give the CPU back (and rest if requests arrived).
    async fn step<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let out = low(f);
        let took = t0.elapsed();
        let (now, w) = (self.node.metrics.requests_started(), self.node.metrics.writes_applied());
        if w != self.writes_seen {
            (self.seen, self.writes_seen) = (now, w);
            glommio::timer::sleep(took * WRITE_REST).await;
        } else if now != self.seen {
            self.seen = now;
            glommio::timer::sleep(took * BUSY_REST).await;
        } else {
            glommio::executor().yield_task_queue_now().await;
        }
        out
    }

    /// Run one step, then only yield (no rest, whatever arrived): work that
    /// every search pays for while it waits (see [`BACKLOG`]), so also at
    /// the process's priority, not `index.background_nice`'s.
    async fn rush<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let out = f();
        glommio::executor().yield_task_queue_now().await;
        out
    }

    /// One step of graph inserts and repairs; `true` if more wait. Past
    /// [`BACKLOG`] waiting points it only yields, with the queue's shares
    /// raised to request handling's: every search scans those points
    /// exactly, so under fast ingest a ninth of the shard would let them
    /// (and each search's cost) grow without end.
    async fn extend(&mut self) -> bool {
        let node = self.node;
        let backlog = || node.with_shard(&"graph backlog count", |s| s.graph_backlog());
        if backlog() <= BACKLOG {
            BACKLOGGED.set(false);
            return self.step(|| node.with_shard(&"graph insert step", |s| s.graph_extend(EXTEND_STEP))).await;
        }
        BACKLOGGED.set(true);
        self.rush(|| {
            let more = node.with_shard(&"graph insert step", |s| s.graph_extend(EXTEND_STEP));
            BACKLOGGED.set(backlog() > BACKLOG);
            more
        })
        .await
    }

    /// Between the steps of a long job (a build, a recalibration), a step
    /// of inserting the points waiting for an installed graph, so the
    /// pending set every search scans exactly stays small while the job
    /// runs (a graph build takes tens of seconds at a ninth of a shard);
    /// while more than [`BACKLOG`] wait, steps until they no longer do
    /// (the job waits: it builds for later, the backlog costs every search
    /// now).
    async fn keep_graphs_current(&mut self) {
        let node = self.node;
        while node.with_shard(&"graph pending check", |s| s.graph_pending()) {
            self.extend().await;
            if !BACKLOGGED.get() {
                break;
            }
        }
        self.evict().await;
    }

    /// Memory-light mode: write the rows the installed graph now holds to
    /// disk, in paced steps; `true` if any went. Also between the steps of
    /// long jobs ([`Pace::keep_graphs_current`]): a graph rebuild during a
    /// bulk load runs for seconds, and every row written meanwhile stayed
    /// in memory until it ended (15,000 rows per partition, most of the
    /// load's peak, on a 50,000-point load). A build reads its rows where
    /// they are at each step, in memory or on disk.
    async fn evict(&mut self) -> bool {
        let node = self.node;
        let evict = || node.with_shard(&"eviction step (memory-light)", |s| s.evict_cold(EVICT_STEP));
        // Unpaced once: in full mode (or with nothing to evict) it is a
        // no-op, and a paced step would yield for nothing.
        if !evict() {
            return false;
        }
        while self.step(evict).await {}
        true
    }
}

/// Build the HNSW graph of a partition that wants one (after its IVF
/// index; `writes_paused`: see [`WRITES_PAUSED`]); `false` if none does.
async fn build_graph(node: &Node, seed: u64, writes_paused: bool) -> bool {
    let Some((name, uid, mut builder)) =
        node.with_shard(&"graph build start", |s| s.graph_next_build(seed, writes_paused))
    else {
        return false;
    };
    let started = Instant::now();
    let mut pace = Pace::new(node);
    let mut done = Some(false);
    while done == Some(false) {
        let phase = builder.phase_name();
        done = pace.step(|| node.with_shard(phase, |s| s.graph_build_step(&name, uid, &mut builder))).await;
        pace.keep_graphs_current().await;
    }
    if done.is_none() {
        return true; // the partition was dropped, or writes resumed
    }
    node.metrics.index_builds_total.set(node.metrics.index_builds_total.get() + 1);
    let mut built = builder.finish();
    // Catch up with the points written during the build while that
    // shrinks what waits; the rest is pending after the install. Past
    // BACKLOG points behind, catch-up steps neither rest nor yield their
    // shares, like inserts into an installed graph: a graph installed with
    // every point of a long build pending (47,000 were seen under steady
    // ingest, paced steps inserting fewer than arrived) makes each search
    // score them all exactly, for seconds.
    let mut left = usize::MAX;
    let mut round = Instant::now();
    let mut behind = true;
    CATCHING_UP.set(behind);
    let caught_up = loop {
        let step =
            || node.with_shard(&"graph catch-up step", |s| s.graph_catch_up(&name, uid, &mut built.0, EXTEND_STEP));
        let now_left = if behind { pace.rush(step).await } else { pace.step(step).await };
        let Some(now_left) = now_left else { break false }; // the partition was dropped
        behind = now_left > BACKLOG;
        CATCHING_UP.set(behind);
        if now_left <= CATCH_UP_LEFT {
            break true;
        }
        pace.keep_graphs_current().await;
        if round.elapsed() >= CATCH_UP_ROUND {
            if now_left >= left {
                break true; // writes come faster than even that inserts them
            }
            (left, round) = (now_left, Instant::now());
        }
    };
    CATCHING_UP.set(false);
    if caught_up {
        crate::reclaim::free(node.with_shard(&"graph install", |s| s.graph_install(&name, uid, built, Instant::now())));
        tracing::info!(
            "shard {}: {name}: graph built and installed in {:.1} s",
            node.me(),
            started.elapsed().as_secs_f64()
        );
    }
    true
}

/// Recalibrate an installed index on its partition's real queries, or its
/// graph on held-out points (no rebuild: only its table of setting ->
/// recall changes); `false` if none is due.
async fn recalibrate(node: &Node) -> bool {
    let Some((name, uid, mut job)) = node.with_shard(&"recalibration start", |s| s.recal_next(Instant::now())) else {
        return false;
    };
    let (started, what) = (Instant::now(), job.describe());
    // The steps' own time, rests and other work left out: what a
    // recalibration costs its shard.
    let mut busy = Duration::ZERO;
    let mut pace = Pace::new(node);
    loop {
        let step = || {
            let t0 = Instant::now();
            let out = node.with_shard(&"recalibration step", |s| s.recal_step(&name, uid, &mut job));
            busy += t0.elapsed();
            out
        };
        match pace.step(step).await {
            Some(false) => pace.keep_graphs_current().await,
            Some(true) => break,
            None => return true,
        }
    }
    // It may drop the IVF lists (unused beside the graph).
    crate::reclaim::free(node.with_shard(&"recalibration install", |s| s.recal_install(&name, uid, job)));
    tracing::debug!(
        "shard {}: {name}: {what} recalibrated in {:.1} s ({} ms of steps)",
        node.me(),
        started.elapsed().as_secs_f64(),
        busy.as_millis()
    );
    true
}

/// Build the IVF index of a partition that wants one; `false` if none does.
async fn build_ivf(node: &Node, seed: u64) -> bool {
    let Some((name, uid, mut builder)) =
        node.with_shard(&"IVF build start", |s| s.ivf_next_build(seed, Instant::now()))
    else {
        return false;
    };
    let started = Instant::now();
    let mut pace = Pace::new(node);
    let mut done = Some(false);
    while done == Some(false) {
        let phase = builder.phase_name();
        done = pace.step(|| node.with_shard(phase, |s| s.ivf_build_step(&name, uid, &mut builder))).await;
        pace.keep_graphs_current().await;
    }
    if done.is_none() {
        return true; // the partition was dropped
    }
    let index = builder.finish();
    let points = index.indexed;
    node.metrics.index_builds_total.set(node.metrics.index_builds_total.get() + 1);
    crate::reclaim::free(node.with_shard(&"IVF install", |s| s.ivf_install(&name, uid, index)));
    tracing::info!(
        "shard {}: {name}: IVF lists over {points} points built and installed in {:.1} s",
        node.me(),
        started.elapsed().as_secs_f64()
    );
    true
}

/// Hand memory freed inside the allocator back to the kernel
/// ([`crate::reclaim::trim`], off the shard's thread): a build's scratch
/// and the index an install replaced (or a recalibration dropped) sit
/// below live data in the arena. Each trim walks every arena (0.6-26 ms,
/// median 2.5, per call on a 50k x 384 server while it ingested), so it
/// runs once per install or recalibration, and at most every
/// [`TRIM_WRITING`] while writes go on; a trim skipped then is done when
/// they pause, before the next build (docs/benchmarks.md, "Memory").
fn release_freed() {
    crate::reclaim::trim();
}

/// When freed memory last went back to the kernel, and what is still
/// owed: a trim an install skipped while writes went on (done once they
/// pause, before the next build would stack on that garbage), or arrays a
/// graph's inserts grew (small: done when writes pause, at most every
/// [`TRIM_WRITING`], so a trickle of writes does not trim after each).
#[derive(Default)]
struct Trims {
    last: Option<Instant>,
    owed: bool,
    grown: bool,
}

impl Trims {
    fn due(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= TRIM_WRITING)
    }

    fn run(&mut self) {
        release_freed();
        *self = Trims { last: Some(Instant::now()), owed: false, grown: false };
    }
}

pub fn start(node: Rc<Node>, cooldown: Duration) {
    let queue = crate::background::background_queue_with(glommio::Shares::Dynamic(Rc::new(BuildShares)), "ivf-build");
    let mut seed = 0x5eed_u64 ^ node.me() as u64;
    let mut trims = Trims::default();
    let mut last_writes = node.metrics.writes_applied();
    let mut last_write_seen = Instant::now();
    glommio::spawn_local_into(
        async move {
            loop {
                glommio::timer::sleep(CHECK_EVERY).await;
                seed = lcg64(seed);
                if node.metrics.writes_applied() == last_writes && (trims.owed || (trims.grown && trims.due())) {
                    trims.run();
                }
                // Points written since a graph's build go in first, while
                // writes go on (paced against them), so searches scan few
                // pending points exactly; bounded per round so that ingest
                // faster than inserts cannot starve the rest.
                let mut pace = Pace::new(&node);
                // Payload indexes filters asked for, a slice at a time.
                while pace
                    .step(|| node.with_shard(&"payload index step", |s| s.payload_index_step(PAYLOAD_INDEX_STEP)))
                    .await
                {}
                // Inserts grow the graph's arrays, freeing the smaller ones.
                trims.grown |= node.with_shard(&"graph pending check", |s| s.graph_pending());
                let round_end = Instant::now() + EXTEND_ROUND;
                while pace.extend().await && Instant::now() < round_end {}
                // Memory-light mode: rows the graph now holds go to disk.
                if pace.evict().await {
                    trims.grown = true;
                }
                let writes = node.metrics.writes_applied();
                if writes != last_writes {
                    last_write_seen = Instant::now();
                }
                let writes_paused = last_write_seen.elapsed() >= WRITES_PAUSED;
                let freed = if recalibrate(&node).await {
                    true
                } else if build_ivf(&node, seed).await {
                    glommio::timer::sleep(cooldown).await;
                    true
                } else {
                    build_graph(&node, seed, writes_paused).await
                };
                // While writes go on, the next build follows soon: trim at
                // most every TRIM_WRITING.
                let writing = node.metrics.writes_applied() != writes;
                if freed && (!writing || trims.due()) {
                    trims.run();
                } else if freed {
                    trims.owed = true;
                }
                last_writes = node.metrics.writes_applied();
            }
        },
        queue,
    )
    .expect("the build queue exists")
    .detach();
}
