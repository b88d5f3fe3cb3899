//! A partition's HNSW graph: building it (after the IVF index), extending it
//! with points written since, tombstoning changed points at once, and
//! choosing between the indexes for a search.
//!
//! A point changed after the graph's build is tombstoned in the graph and
//! queued in `pending`: searches score pending points exactly until the
//! indexer inserts them again (`Partition::graph_extend`, paced against
//! the writes), so a fresh point is found at once and a stale node never
//! answers. Past [`PENDING_BY_CODES`] of them (a bulk load), a search
//! ranks those the indexer has coded by their codes and re-ranks the best
//! by their current rows. The same paced steps first repair the graph around each
//! tombstone (`Hnsw::repair_next`), which frees its slot for the next
//! insert: deletes and updates are mended in place, not by rebuilds. A
//! rebuild comes when the partition has doubled over the graph's build and
//! writes have paused (`GROWTH_REBUILD`; never in memory-light mode:
//! growth by less only recalibrates the graph, on real queries or on
//! held-out points, `recal`), or when the graph holds more slots beyond
//! the partition's points than points (`DEAD_REBUILD`: memory, not recall,
//! is then the reason).

use super::{Partition, Retired, SearchParams, MIN_POINTS};
use crate::index::calib::{CalibQuery, Calibration};
use crate::index::hnsw::{side_rerank, Exact, GraphBuilder, Hnsw, HnswQuery, SideCodes};
use crate::math::distance::Metric;
use crate::math::prefetch;
use crate::math::topk::{Scored, TopK};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Pending rows prefetched ahead of the one being scored in a search.
const PENDING_AHEAD: usize = 4;

/// Pending points from which a search ranks them by their codes and
/// re-ranks only the best exactly ([`side_rerank`]). Below it the
/// exact scan costs ~0.2 ms at 384 dimensions, and it is what the
/// calibration measured; beyond, after a bulk load, tens of thousands of
/// pending points per partition cost several milliseconds per query.
pub(super) const PENDING_BY_CODES: usize = 1024;

/// Estimated nanoseconds per byte of a pending point's code scored in a
/// search (a 384-dimension 4-bit code, 192 bytes: 18.6 ns against 62 for
/// its row in a plain exact scan, `cargo bench --bench hnsw_engine --
/// --pending`).
const CODE_POINT_NS_PER_BYTE: f32 = 0.1;

/// Which index answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKind {
    Ivf,
    Hnsw,
}

impl IndexKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IndexKind::Ivf => "ivf",
            IndexKind::Hnsw => "hnsw",
        }
    }
}

#[derive(Clone)]
pub(super) struct HnswState {
    pub(super) graph: Hnsw,
    pub(super) calibration: Calibration,
    /// Changed since the build or the last insert: scored exactly while
    /// there are few ([`PENDING_BY_CODES`]), by their codes beyond.
    pub(super) pending: HashSet<u64>,
    /// Codes of pending points, by the graph's quantizer, made by the
    /// indexer's steps: every pending point is here or in `uncoded`.
    pub(super) coded: SideCodes,
    /// Pending points still to be coded (entries no longer pending, or
    /// coded since, are skipped).
    pub(super) uncoded: Vec<u64>,
    build_ms: u64,
    /// Live nodes when installed (growth counts against it).
    pub(super) built_nodes: usize,
    pub(super) recal: super::recal::Mark,
    /// Pending points a held-out recalibration keeps out of the graph
    /// until it ends (its probes: see `recal`), ascending.
    pub(super) held: Vec<u64>,
}

impl HnswState {
    /// A pending point the graph may take now (not held out).
    fn next_insert(&self) -> Option<u64> {
        self.pending.iter().copied().find(|id| self.held.binary_search(id).is_err())
    }

    /// Whether points wait to be inserted or coded, or tombstones to be
    /// repaired.
    fn waiting(&self) -> bool {
        self.graph.unrepaired() > 0 || self.next_insert().is_some() || !self.uncoded.is_empty()
    }

    /// Point `id` changed: pending, its code (if any) stale.
    fn touched(&mut self, id: u64) {
        self.coded.remove(id);
        self.pending.insert(id);
        self.uncoded.push(id);
    }

    /// Pending point `id` went into the graph.
    fn inserted(&mut self, id: u64) {
        self.pending.remove(&id);
        self.coded.remove(id);
    }
}

impl std::fmt::Debug for HnswState {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "HnswState {{ nodes: {}, pending: {} }}", self.graph.nodes(), self.pending.len())
    }
}

/// What a partition reports about its graph (GET /collections/{name}).
#[derive(Clone, Debug)]
pub struct HnswStatus {
    pub nodes: usize,
    pub tombstones: usize,
    pub pending_exact: usize,
    pub building: bool,
    pub build_ms: u64,
    pub bytes: usize,
    pub m: usize,
    pub ef_construction: usize,
    pub real_queries: usize,
    /// Real queries behind each metric's recall (see `IvfStatus::real`).
    pub real: [usize; 3],
    /// (ef, recall@10 for l2, dot, cosine, ns per query)
    pub calibration: crate::index::calib::CalibTable,
    /// The same with a share (percent) of the points admitted.
    pub calibration_by_share: Vec<(u32, crate::index::calib::CalibTable)>,
}

/// Targets the graph must serve before the IVF lists are dropped. Not
/// 0.99: where the graph cannot promise it, the lists do so only by
/// probing nearly all of them, a scan over 8-bit codes that saves time
/// over the exact scan but not a quarter of the raw vectors' memory.
const DROP_TARGETS: [f32; 4] = [0.8, 0.9, 0.95, 0.98];

/// How much cheaper than the graph the lists must be, at some target, to
/// be worth their memory (~400 bytes per point at 384 dimensions, a
/// quarter of the raw vectors) beside it. Calibrated costs are measured
/// times, noisy on a busy box; a margin keeps a setting that is only as
/// fast from deciding.
const KEEP_IVF_SPEEDUP: f32 = 1.5;

/// Whether the IVF lists are not worth keeping beside the graph (see
/// [`Partition::drop_unused_ivf`]): for every metric and target, the graph
/// meets it at most [`KEEP_IVF_SPEEDUP`] times the lists' cost, or the
/// lists cannot meet it either; both tables resting on the same kind of
/// queries (held-out points or real queries) per metric.
pub(super) fn ivf_unused(graph: &Calibration, ivf: &Calibration) -> bool {
    [Metric::L2, Metric::Dot, Metric::Cosine].into_iter().all(|m| {
        graph.real_basis(m).is_some() == ivf.real_basis(m).is_some()
            && DROP_TARGETS.into_iter().all(|t| match (graph.choose(m, t), ivf.choose(m, t)) {
                (_, None) => true,
                (Some(g), Some(i)) => g.2 <= i.2 * KEEP_IVF_SPEEDUP,
                (None, Some(_)) => false,
            })
    })
}

/// Growth of the partition over the nodes the graph was built with that
/// triggers a rebuild, only once writes have paused, and not in
/// memory-light mode: growth is measured by recalibrating (on real
/// queries, or on held-out points while there are too few: `recal`,
/// `recal::GROWN_SHARE`), and the graph grows by inserts as an HNSW graph
/// is built anyway; a rebuild each time the partition doubles only
/// retrains the graph's 8-bit code ranges on the points as they are now
/// and sizes its arrays. Under steady ingest such a rebuild cannot finish:
/// at 200 points/s per partition, the one that started at 141,000 points
/// ran for over seven minutes at its paced share while the points written
/// meanwhile kept ~1,000 points waiting for the graph and searches
/// slowed (commit 3ac537a). A rebuild holds a second graph beside the
/// installed one until it replaces it: a memory-light partition, whose
/// graph is most of its memory, would peak near twice its settled size.
const GROWTH_REBUILD: f64 = 1.0;

/// Points written during a rebuild that only a pause in writes allowed
/// (the doubling one above) that make it give up: writes resumed, and the
/// rebuild would run under them. A pause is seen when the shard applied no
/// write for 2 s (`indexer::WRITES_PAUSED`), which a stall of the writers
/// (a slow fsync) also gives: in an hour of ingest at 200 points/s per
/// partition, one such rebuild of 321,000 points started after 27 minutes
/// and ran on under the writes, with over 1,000 points waiting for the
/// graph and search p50 up to 8 ms. The next pause starts it again.
pub const IDLE_BUILD_WRITES: usize = 1024;

/// Deleted slots per point that trigger a rebuild (slots beyond the
/// partition's points: those the pending points will not take). Deletes and updates
/// are repaired in place: after deleting 30 % of 50k or 100k points,
/// recall@10 per `ef` stays within 0.017 of a fresh build of the survivors
/// at about the same QPS (within 0.01 from ef 32 on), and after updating
/// 30 % three times over within 0.016 (0.004 from ef 32 on), where
/// tombstones alone lose a third of the QPS and grow the graph by the
/// updates (docs/benchmarks.md, "Deletes and updates repaired in place"),
/// so only memory calls for a rebuild: free slots not yet taken by
/// inserts, up to half the graph.
const DEAD_REBUILD: f64 = 1.0;

impl Partition {
    /// Graph settings, and the collection's partition count.
    pub fn configure(&mut self, p: crate::index::hnsw::HnswParams, parts: usize) {
        self.hnsw_params = p;
        self.parts = parts.max(1);
    }

    pub(super) fn graph_touched(&mut self, id: u64) {
        if let Some(h) = &mut self.hnsw {
            h.graph.tombstone(id);
            h.touched(id);
        }
        if let Some(d) = &mut self.hnsw_build_dirty {
            d.insert(id);
        }
    }

    pub(super) fn graph_bytes(&self) -> usize {
        self.hnsw.as_ref().map_or(0, |h| {
            h.graph.mem_bytes() + h.pending.capacity() * 16 + h.coded.mem_bytes() + h.uncoded.capacity() * 8
        })
    }

    /// Whether the graph should be (re)built now: the IVF index is in and
    /// no build runs, and there is no graph yet, or the partition grew by
    /// [`GROWTH_REBUILD`] over it while `writes_paused` (the shard applied
    /// no write for a while) and rows stay in memory, or it holds
    /// [`DEAD_REBUILD`] slots per point beyond the points. Growth short of
    /// that, and repairs, are measured by recalibrating (`recal`).
    pub fn graph_wanted(&self, writes_paused: bool) -> bool {
        self.len() >= MIN_POINTS
            && (self.ivf.is_some() || self.hnsw.is_some() || self.ivf_dropped)
            && self.build_dirty.is_none()
            && self.hnsw_build_dirty.is_none()
            && self.hnsw.as_ref().is_none_or(|h| {
                let grown = self.len() as f64 >= (1.0 + GROWTH_REBUILD) * h.built_nodes.max(1) as f64;
                let grown = grown && writes_paused && self.cold.is_none();
                // Slots left over once the pending points took theirs.
                let dead = h.graph.nodes().saturating_sub(self.len());
                let dead = dead as f64 > DEAD_REBUILD * self.len().max(1) as f64;
                grown || dead
            })
    }

    /// Start a build: copy the ids (each step reads the rows in place),
    /// track changes from here on, and hand the builder the real queries
    /// seen, which it measures the new graph on beside its held-out sample
    /// (later queries then count as new, as after a recalibration).
    pub fn graph_build_start(&mut self, seed: u64) -> GraphBuilder {
        self.hnsw_build_dirty = Some(HashSet::new());
        self.hnsw_build_idle = false;
        if !self.reservoir.is_empty() {
            self.queries_seen = self.reservoir.len() as u64;
        }
        GraphBuilder::new(self.ids.clone(), self.dim, self.hnsw_params, seed, self.reservoir.clone())
    }

    /// [`Partition::graph_build_start`] for a rebuild that only a pause in
    /// writes allows: [`Partition::graph_build_abandoned`] gives it up
    /// once writes resume.
    pub fn graph_build_start_idle(&mut self, seed: u64) -> GraphBuilder {
        let b = self.graph_build_start(seed);
        self.hnsw_build_idle = true;
        b
    }

    /// Whether the running build was given up (and no longer runs): it is
    /// one only a pause in writes allowed, and [`IDLE_BUILD_WRITES`]
    /// points were written since it started. The installed graph goes on
    /// taking the new points in.
    pub fn graph_build_abandoned(&mut self) -> bool {
        let written = self.hnsw_build_dirty.as_ref().map_or(0, HashSet::len);
        let abandon = self.hnsw_build_idle && written >= IDLE_BUILD_WRITES;
        if abandon {
            (self.hnsw_build_dirty, self.hnsw_build_idle) = (None, false);
        }
        abandon
    }

    /// One bounded step of the running graph build over this partition's
    /// rows; `true` when done.
    pub fn graph_build_step(&self, b: &mut GraphBuilder) -> bool {
        b.step(self)
    }

    /// Bring a finished graph up to date, for up to `budget`, with points
    /// changed since its build started (each: out of the graph, repaired
    /// around, inserted again as it is now), before it is installed, so the
    /// installed graph does not start with every point written during the
    /// build pending (scanned exactly by each search). Returns how many
    /// changes still wait; `None` if the partition has no build running.
    pub fn graph_catch_up(&mut self, graph: &mut Hnsw, budget: Duration) -> Option<usize> {
        let t0 = Instant::now();
        while t0.elapsed() < budget {
            let dirty = self.hnsw_build_dirty.as_mut()?;
            let Some(&id) = dirty.iter().next() else { break };
            dirty.remove(&id);
            graph.tombstone(id);
            while graph.repair_next() {}
            self.graph_insert_current(graph, id);
        }
        self.hnsw_build_dirty.as_ref().map(HashSet::len)
    }

    /// Insert point `id` into `graph` as the partition holds it now
    /// (nothing if it was deleted meanwhile).
    fn graph_insert_current(&self, graph: &mut Hnsw, id: u64) {
        if let Some(&slot) = self.slot_of.get(&id) {
            let slot = slot as usize;
            let row = super::row_at(self.cold.as_ref(), &self.vectors, self.dim, slot);
            graph.insert(id, row, self.norms[slot]);
        }
    }

    /// Code pending point `id` as the partition holds it now (nothing if it
    /// is no longer pending, already coded, or deleted).
    pub(super) fn graph_code_current(&self, h: &mut HnswState, id: u64) {
        if !h.pending.contains(&id) || h.coded.contains(id) {
            return;
        }
        if let Some(&slot) = self.slot_of.get(&id) {
            let slot = slot as usize;
            let row = super::row_at(self.cold.as_ref(), &self.vectors, self.dim, slot);
            h.graph.side_insert(&mut h.coded, id, row, self.norms[slot]);
        }
    }

    /// Install a finished graph; points changed since its build started
    /// (and not caught up with) are pending. A graph its build measured on
    /// real queries counts as recalibrated `now`. Returns the graph (and
    /// IVF lists) it replaced, for the caller to free (see [`Retired`]).
    pub fn graph_install(&mut self, built: (Hnsw, Calibration, u64), now: Instant) -> Retired {
        let (mut graph, mut calibration, build_ms) = built;
        calibration.apply_parts(self.parts);
        let pending = self.hnsw_build_dirty.take().unwrap_or_default();
        pending.iter().for_each(|&id| graph.tombstone(id));
        let built_nodes = graph.live();
        self.installs += 1;
        let measured = calibration.rests_on_real().then_some(now);
        let recal = super::recal::Mark::new(self.installs, built_nodes, measured, now);
        let mut retired = Retired::default();
        let held = Vec::new();
        let (coded, uncoded) = (SideCodes::default(), pending.iter().copied().collect());
        let state = HnswState { graph, calibration, pending, coded, uncoded, build_ms, built_nodes, recal, held };
        retired.keep(self.hnsw.replace(state));
        retired.keep(self.drop_unused_ivf());
        retired
    }

    /// Drop the IVF lists when they are not worth their memory beside the
    /// graph ([`ivf_unused`]). Runs when a graph is installed (on
    /// held-out calibration) and after each recalibration (on real
    /// queries), not during an IVF build and not once a search forced
    /// IVF. Filtered searches too narrow for the graph then scan exactly
    /// (or use a payload index). Returns the lists it dropped.
    #[must_use]
    pub(super) fn drop_unused_ivf(&mut self) -> Option<super::IvfState> {
        let (Some(h), Some(s)) = (&self.hnsw, &self.ivf) else { return None };
        if self.ivf_pinned || self.build_dirty.is_some() || !ivf_unused(&h.calibration, &s.index.calibration) {
            return None;
        }
        self.ivf_dropped = true;
        self.ivf.take()
    }

    /// Code pending points, repair the graph around tombstones, then
    /// insert pending points into it, for up to `budget`; `true` if more
    /// of any waits. The indexer calls it while writes go on, paced against
    /// them, so the pending set (scanned by every search) stays small under
    /// steady ingest; coding goes first (~2 us a point against ~200 for
    /// an insert at 384 dimensions), so a burst of writes is soon scanned
    /// by codes, and repairs go before inserts, so re-inserted points take
    /// the freed slots.
    pub fn graph_extend(&mut self, budget: Duration) -> bool {
        let t0 = Instant::now();
        // Out of `self` while it changes, so rows can be read beside it.
        let Some(mut h) = self.hnsw.take() else { return false };
        while t0.elapsed() < budget {
            if let Some(id) = h.uncoded.pop() {
                self.graph_code_current(&mut h, id);
                continue;
            }
            if h.graph.repair_next() {
                h.recal.note_repair();
                continue;
            }
            let Some(id) = h.next_insert() else { break };
            h.inserted(id);
            self.graph_insert_current(&mut h.graph, id);
        }
        let more = h.waiting();
        self.hnsw = Some(h);
        more
    }

    /// Estimated nanoseconds a graph search for `k` hits spends on the
    /// pending points (see [`Partition::exact_points_ns`]).
    pub(super) fn graph_pending_ns(&self, k: usize) -> f32 {
        let Some(h) = &self.hnsw else { return 0.0 };
        if h.pending.len() <= PENDING_BY_CODES {
            return self.exact_points_ns(h.pending.len());
        }
        let exact = h.pending.len() - h.coded.len().min(h.pending.len()) + side_rerank(k);
        self.exact_points_ns(exact) + h.coded.len() as f32 * CODE_POINT_NS_PER_BYTE * h.graph.code_len() as f32
    }

    /// Points waiting to be inserted into the graph, or tombstones to
    /// repair around.
    pub fn graph_pending(&self) -> bool {
        self.hnsw.as_ref().is_some_and(HnswState::waiting)
    }

    /// How many points wait for the graph, and tombstones for repair.
    pub fn graph_backlog(&self) -> usize {
        self.hnsw.as_ref().map_or(0, |h| h.pending.len() + h.graph.unrepaired())
    }

    pub fn graph_status(&self) -> Option<HnswStatus> {
        let building = self.hnsw_build_dirty.is_some();
        let h = self.hnsw.as_ref();
        if h.is_none() && !building {
            return None;
        }
        let p = self.hnsw_params;
        Some(HnswStatus {
            nodes: h.map_or(0, |h| h.graph.live()),
            tombstones: h.map_or(0, |h| h.graph.tombstones()),
            pending_exact: h.map_or(0, |h| h.pending.len()),
            building,
            build_ms: h.map_or(0, |h| h.build_ms),
            bytes: h.map_or(0, |h| h.graph.mem_bytes()),
            m: p.m,
            ef_construction: p.ef_construction,
            real_queries: h.map_or(0, |h| h.calibration.real_queries),
            real: h.map_or([0; 3], |h| h.calibration.real),
            calibration: h.map_or(Vec::new(), |h| h.calibration.table()),
            calibration_by_share: h
                .map_or(Vec::new(), |h| h.calibration.by_share.iter().map(|(s, c)| (*s, c.table())).collect()),
        })
    }

    /// How far the indexes cover the points (`/metrics`).
    pub fn index_progress(&self, collection: &str) -> crate::ops::IndexProgress {
        let (ivf_indexed, ivf_exact) = self.ivf.as_ref().map_or((0, 0), |s| (s.index.indexed, s.dirty.len()));
        let (hnsw_nodes, hnsw_exact) = self.hnsw.as_ref().map_or((0, 0), |h| (h.graph.live(), h.pending.len()));
        crate::ops::IndexProgress {
            collection: collection.to_owned(),
            points: self.len() as u64,
            ivf_indexed: ivf_indexed as u64,
            ivf_exact: ivf_exact as u64,
            hnsw_nodes: hnsw_nodes as u64,
            hnsw_exact: hnsw_exact as u64,
            building: self.build_dirty.is_some() as u64 + self.hnsw_build_dirty.is_some() as u64,
        }
    }

    /// Top-k through the graph at beam width `ef` (`None`: no graph).
    pub(super) fn search_graph(
        &self,
        queries: &[Vec<f32>],
        params: &SearchParams,
        ef: usize,
    ) -> Option<Vec<Vec<Scored>>> {
        let h = self.hnsw.as_ref()?;
        Some(queries.iter().map(|q| self.graph_query(h, q, params, ef)).collect())
    }

    /// One query through the graph, with the pending points scored exactly:
    /// what a search at `ef` answers (recalibration measures this).
    pub(super) fn graph_query(&self, h: &HnswState, q: &[f32], params: &SearchParams, ef: usize) -> Vec<Scored> {
        let (metric, k) = (params.metric, params.k);
        // Unfiltered, the walk never reads a node's key (a cache miss per
        // admitted neighbour) nor calls a filter.
        match params.filter.filter(|f| !f.is_empty()) {
            None => self.graph_walk(h, q, metric, k, ef, |_| true),
            Some(f) => self.graph_walk(h, q, metric, k, ef, self.passes(Some(f))),
        }
    }

    /// [`Partition::graph_walk`] for a recalibration, keyed by the query's
    /// exact answer ([`CalibQuery::known_key`]): a memory-light partition
    /// would read ~20 rows from disk per walk, on a device its searches
    /// already keep busy (p99 of a one-client search stream was 5-7x its
    /// settled value while recalibrations ran). The walk's time then
    /// leaves out the re-rank, the same ~20 rows at every setting.
    pub(super) fn graph_walk_known(
        &self,
        h: &HnswState,
        q: &CalibQuery,
        ef: usize,
        admit: impl Fn(u64) -> bool,
    ) -> Vec<Scored> {
        let k = crate::index::calib::CALIB_K;
        let hq = HnswQuery { query: q.query, metric: q.metric, k, ef };
        let mut top = TopK::new(k);
        h.graph.search(&hq, &admit, |id| Some(q.known_key(id))).into_iter().for_each(|s| top.push(s));
        for &id in h.pending.iter().filter(|&&id| admit(id) && self.slot_of.get(&id).is_some()) {
            top.push(Scored { key: q.known_key(id), id });
        }
        top.into_sorted()
    }

    /// [`Partition::graph_query`] over the points `admit` admits.
    pub(super) fn graph_walk(
        &self,
        h: &HnswState,
        q: &[f32],
        metric: Metric,
        k: usize,
        ef: usize,
        admit: impl Fn(u64) -> bool,
    ) -> Vec<Scored> {
        let exact = self.exact_of(metric, q);
        let hq = HnswQuery { query: q, metric, k, ef };
        let mut top = TopK::new(k);
        h.graph.search(&hq, &admit, exact).into_iter().for_each(|s| top.push(s));
        let mut slots: Vec<u32> = if h.pending.len() > PENDING_BY_CODES {
            // Many pending points (a bulk load): the coded ones ranked by
            // their codes, the best re-ranked; the others scanned below.
            let near = h.graph.side_nearest(&h.coded, q, metric, side_rerank(k), &admit);
            for (id, key) in near.iter().zip(exact.exact_all(&near)) {
                if let Some(key) = key {
                    top.push(Scored { key, id: *id });
                }
            }
            let uncoded = h.uncoded.iter().filter(|&&id| h.pending.contains(&id) && !h.coded.contains(id));
            uncoded.filter_map(|id| self.slot_of.get(id).copied()).collect()
        } else {
            h.pending.iter().filter_map(|id| self.slot_of.get(id).copied()).collect()
        };
        // Pending points in slot order, the rows a few ahead prefetched:
        // new points sit together at the end of the rows, so this reads
        // forwards (in the set's hash order every row was a cache miss, and
        // the pending scan cost more than the walk under steady ingest).
        // An uncoded point may be listed twice.
        slots.sort_unstable();
        slots.dedup();
        if self.cold.is_some() {
            // Memory-light: pending rows are in memory, but a held-out
            // recalibration's probes are on disk: one batched read for
            // them all, not one read (of a run of rows) each.
            let ids: Vec<u64> = slots.iter().map(|&slot| self.ids[slot as usize]).filter(|&id| admit(id)).collect();
            let keys = exact.exact_all(&ids);
            ids.into_iter().zip(keys).filter_map(|(id, key)| Some(Scored { key: key?, id })).for_each(|s| top.push(s));
            return top.into_sorted();
        }
        for (i, &slot) in slots.iter().enumerate() {
            if let Some(&ahead) = slots.get(i + PENDING_AHEAD) {
                prefetch(self.row(ahead as usize));
            }
            let id = self.ids[slot as usize];
            if let (Some(key), true) = (exact.at(slot as usize), admit(id)) {
                top.push(Scored { key, id });
            }
        }
        top.into_sorted()
    }
}
