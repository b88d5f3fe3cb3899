//! A partition: the points of one collection that hash to it, stored
//! column-wise (ids, one contiguous f32 matrix, norms, payloads) so an exact
//! scan streams memory linearly. Everything here is synchronous and owned by
//! one shard; nothing is shared across threads.

use crate::index::calib::RealQueries;
use crate::index::ivf::{Builder, Ivf, IvfQuery, MIN_POINTS};
use crate::math::aligned::AlignedF32;
use crate::math::distance::{kernels, Kernels, Metric};
use crate::math::id_index::IdIndex;
use crate::math::key::{exact_key_normed, key, norm};
use crate::math::topk::{Scored, TopK};
use crate::payload::filter::Filter;
use crate::payload::{payload_mem_bytes, Payload};
use std::collections::HashSet;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct Partition {
    dim: usize,
    ids: Vec<u64>,
    /// Row-major, starting on a cache line (see `math::aligned`): every
    /// slot's row, or with `cold` only the hot rows.
    vectors: AlignedF32,
    /// Memory-light: where each slot's row is (see `cold`).
    cold: Option<cold::Cold>,
    norms: Vec<f32>,
    payloads: Vec<Payload>,
    /// Point id -> slot. ahash (randomly seeded, so crafted ids cannot
    /// force collisions) instead of SipHash: re-ranking looks up every
    /// candidate, and SipHash was a visible share of a graph search.
    slot_of: IdIndex,
    payload_bytes: usize,
    /// The IVF index, if built, and the points changed since its build
    /// (searched exactly; their list entries are skipped).
    ivf: Option<IvfState>,
    /// Points changed since the running build started.
    build_dirty: Option<HashSet<u64>>,
    /// Upserts and deletes since the last build started.
    changes: usize,
    /// Deletes that moved a row into a lower slot, ever: an exact scan in
    /// pieces that sees this change may meet a row twice (`ScanPieces`).
    moves: u64,
    /// `changes` when `ivf_wanted` last looked (unchanged = writes paused).
    changes_seen: usize,
    /// A sample (reservoir) of real queries, for calibration: uniform
    /// over the queries since the last recalibration and the sample it
    /// used, so it follows a query stream that drifts; and every metric
    /// the partition has been queried with (each query is measured under
    /// all of them).
    reservoir: RealQueries,
    /// Queries offered to the reservoir since the last recalibration
    /// (plus the reservoir's size then).
    queries_seen: u64,
    /// Queries ever offered to the reservoir (never reset).
    queries_offered: u64,
    /// Indexes installed so far (each gets the next number: a
    /// recalibration installs only into the index it measured).
    installs: u64,
    /// The IVF lists were dropped: not worth their memory beside the graph
    /// (`graph::drop_unused_ivf`); none is built again unless a search
    /// forces IVF, which pins them for the partition's life.
    ivf_dropped: bool,
    ivf_pinned: bool,
    /// The HNSW graph, if built (see `graph`).
    hnsw: Option<graph::HnswState>,
    /// Points changed since the running graph build started.
    hnsw_build_dirty: Option<HashSet<u64>>,
    /// Whether the running graph build is one only a pause in writes
    /// allows (`graph::IDLE_BUILD_WRITES`).
    hnsw_build_idle: bool,
    hnsw_params: crate::index::hnsw::HnswParams,
    /// Partitions of this collection: calibrated recall is the share of a
    /// collection-wide answer (see `Calibration::apply_parts`).
    parts: usize,
    /// Indexes of the payload fields filters use (see `payload_index`).
    payload_index: crate::payload::index::PayloadIndexes,
}

/// Index memory an install or a recalibration replaced or dropped.
/// Dropping it frees it on the thread that drops it: the server hands it
/// to a thread of its own (`aionbd::reclaim`), since unmapping a large
/// partition's graph took a shard 100-250 ms between two requests.
#[derive(Default)]
#[must_use = "dropping it frees the memory here; hand it off to free it elsewhere"]
pub struct Retired(Vec<Box<dyn Send>>);

impl Retired {
    /// Add `old`, if there is one.
    pub fn keep<T: Send + 'static>(&mut self, old: Option<T>) {
        if let Some(old) = old {
            self.0.push(Box::new(old));
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Clone, Debug)]
struct IvfState {
    index: Ivf,
    dirty: HashSet<u64>,
    recal: recal::Mark,
}

mod cold;
mod filtered;
mod scan;
pub use scan::ScanPieces;
use scan::{piece_rows, Scan};
mod graph;
mod plan;
mod recal;
mod reservoir;
pub use cold::{ColdFile, ColdFiles, RowsStatus};
pub use graph::{HnswStatus, IndexKind};
pub use plan::{Answer, SearchPlan};
pub use recal::Recalibration;
pub use scan::set_scan_piece_rows;

/// How an approximate search should pick its index and setting.
#[derive(Clone, Copy, Debug)]
pub struct IvfChoice {
    /// Probe exactly this many lists (expert override).
    pub nprobe: Option<usize>,
    /// Beam width for the graph (expert override).
    pub ef: Option<usize>,
    /// Otherwise: the cheapest calibrated setting meeting this recall.
    pub target_recall: f32,
    /// `ivf` or `hnsw` mode: use that index even when no setting meets the
    /// target (its widest setting) or a filter is selective; `None`
    /// (`auto`) answers exactly then.
    pub forced: Option<IndexKind>,
}

/// What a partition reports about its index (GET /collections/{name}).
#[derive(Clone, Debug)]
pub struct IvfStatus {
    /// Dropped as unused beside the graph (see `graph::drop_unused_ivf`).
    pub dropped: bool,
    pub lists: usize,
    pub indexed: usize,
    pub pending_exact: usize,
    pub build_ms: u64,
    pub building: bool,
    pub bytes: usize,
    /// Real queries among the calibration queries.
    pub real_queries: usize,
    /// Real queries behind each metric's recall (l2, dot, cosine; below
    /// `calib::MIN_REAL`: held-out points, discounted).
    pub real: [usize; 3],
    /// (nprobe, recall@10 for l2, dot, cosine, ns per query)
    pub calibration: Vec<(usize, [f32; 3], f32)>,
}

/// How to score one search.
#[derive(Clone, Copy)]
pub struct SearchParams<'a> {
    pub metric: Metric,
    pub k: usize,
    pub filter: Option<&'a Filter>,
}

/// Exact keys of a partition's points for one query (see `exact_of`).
#[derive(Clone, Copy)]
pub(crate) struct ExactOf<'a> {
    p: &'a Partition,
    metric: Metric,
    q: &'a [f32],
    /// The query's norm (cosine only), computed once, not per point.
    q_norm: f32,
}

impl ExactOf<'_> {
    /// The exact key of point `id` (`None`: not here).
    pub(crate) fn get(&self, id: u64) -> Option<f32> {
        self.at(*self.p.slot_of.get(&id)? as usize)
    }

    /// The exact key of the point in `slot` (`None`: no cosine for a zero
    /// vector).
    fn at(&self, slot: usize) -> Option<f32> {
        let key = exact_key_normed(self.metric, self.q, self.q_norm, self.p.row(slot), self.p.norms[slot]);
        (!key.is_nan()).then_some(key)
    }
}

impl crate::index::hnsw::Exact for ExactOf<'_> {
    fn exact(&self, id: u64) -> Option<f32> {
        self.get(id)
    }

    /// One slot lookup per point: prefetch every row, then score. Rows on
    /// disk are read in one batch.
    fn exact_all(&self, ids: &[u64]) -> Vec<Option<f32>> {
        let slots: Vec<Option<usize>> = ids.iter().map(|id| self.p.slot_of.get(id).map(|&s| s as usize)).collect();
        let Some(c) = &self.p.cold else {
            slots.iter().flatten().for_each(|&s| crate::math::prefetch(self.p.row(s)));
            return slots.iter().map(|s| self.at((*s)?)).collect();
        };
        let dim = self.p.dim;
        let file_rows: Vec<u32> = slots.iter().flatten().filter_map(|&s| c.place(s).err()).collect();
        let mut read = vec![0.0; file_rows.len() * dim];
        c.read(&file_rows, &mut read);
        let mut next = read.chunks_exact(dim.max(1));
        slots
            .iter()
            .map(|&s| {
                let s = s?;
                let row = match c.place(s) {
                    Ok(hot) => &self.p.vectors[hot * dim..(hot + 1) * dim],
                    Err(_) => next.next()?,
                };
                let key = exact_key_normed(self.metric, self.q, self.q_norm, row, self.p.norms[s]);
                (!key.is_nan()).then_some(key)
            })
            .collect()
    }
}

/// A build reads the partition's rows in place: the slot a point had when
/// the build started, unless a delete moved it since.
impl crate::index::calib::RowSource for Partition {
    #[inline]
    fn row_of(&self, slot: usize, id: u64) -> Option<(&[f32], f32)> {
        let slot = if self.ids.get(slot) == Some(&id) { slot } else { *self.slot_of.get(&id)? as usize };
        Some((self.row(slot), self.norms[slot]))
    }

    fn rows_on_disk(&self) -> bool {
        self.cold.as_ref().is_some_and(|c| c.status().on_disk > 0)
    }
}

/// The row of `slot` (fields apart, so a caller may hold other fields
/// mutably): in the row buffer, or read from the rows file.
#[inline]
fn row_at<'a>(cold: Option<&'a cold::Cold>, vectors: &'a AlignedF32, dim: usize, slot: usize) -> &'a [f32] {
    let at = match cold.map(|c| (c, c.place(slot))) {
        None => slot,
        Some((_, Ok(hot))) => hot,
        Some((c, Err(r))) => return c.cached(r, dim),
    };
    &vectors[at * dim..(at + 1) * dim]
}

impl Partition {
    pub fn new(dim: usize) -> Self {
        Partition {
            dim,
            ids: Vec::new(),
            vectors: AlignedF32::new(),
            cold: None,
            norms: Vec::new(),
            payloads: Vec::new(),
            slot_of: IdIndex::default(),
            payload_bytes: 0,
            ivf: None,
            build_dirty: None,
            changes: 0,
            moves: 0,
            changes_seen: 0,
            reservoir: RealQueries::default(),
            queries_seen: 0,
            queries_offered: 0,
            installs: 0,
            ivf_dropped: false,
            ivf_pinned: false,
            hnsw: None,
            hnsw_build_dirty: None,
            hnsw_build_idle: false,
            hnsw_params: crate::index::hnsw::HnswParams::default(),
            parts: 1,
            payload_index: Default::default(),
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Ids in slot order.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn row(&self, slot: usize) -> &[f32] {
        row_at(self.cold.as_ref(), &self.vectors, self.dim, slot)
    }

    /// Note a change to point `id` for the index (exact until rebuilt).
    fn touched(&mut self, id: u64) {
        if let Some(s) = &mut self.ivf {
            s.dirty.insert(id);
        }
        if let Some(d) = &mut self.build_dirty {
            d.insert(id);
        }
        self.graph_touched(id);
        self.changes += 1;
    }

    /// Insert or replace; returns true if the id was new here.
    pub fn upsert(&mut self, id: u64, values: &[f32], payload: Payload) -> bool {
        assert_eq!(values.len(), self.dim, "dimension validated before apply");
        self.touched(id);
        let n = norm(values);
        let bytes = payload_mem_bytes(&payload);
        match self.slot_of.get(&id) {
            Some(&slot) => {
                let slot = slot as usize;
                let hot_rows = self.vectors.len() / self.dim.max(1);
                match self.cold.as_mut().map_or(Some(slot), |c| c.rewrite(slot, hot_rows)) {
                    Some(at) => self.vectors[at * self.dim..(at + 1) * self.dim].copy_from_slice(values),
                    None => self.vectors.extend_from_slice(values),
                }
                self.norms[slot] = n;
                self.payload_index.update(id, Some(&self.payloads[slot]), Some(&payload));
                self.payload_bytes = self.payload_bytes + bytes - payload_mem_bytes(&self.payloads[slot]);
                self.payloads[slot] = payload;
                false
            }
            None => {
                self.payload_index.update(id, None, Some(&payload));
                self.slot_of.insert(id, self.ids.len() as u32, &self.ids);
                if let Some(c) = &mut self.cold {
                    c.push_hot(self.ids.len(), self.vectors.len() / self.dim.max(1));
                }
                self.ids.push(id);
                self.vectors.extend_from_slice(values);
                self.norms.push(n);
                self.payloads.push(payload);
                self.payload_bytes += bytes;
                true
            }
        }
    }

    /// Remove a point; returns true if it existed. The last row moves into
    /// the hole, so removal is O(dim).
    pub fn delete(&mut self, id: u64) -> bool {
        let Some(slot) = self.slot_of.remove(&id) else {
            return false;
        };
        self.touched(id);
        let slot = slot as usize;
        self.payload_index.update(id, Some(&self.payloads[slot]), None);
        let last = self.ids.len() - 1;
        self.payload_bytes -= payload_mem_bytes(&self.payloads[slot]);
        if let Some(c) = &mut self.cold {
            c.delete(slot, &mut self.vectors, self.dim);
        }
        if slot != last {
            self.moves += 1;
            let moved = self.ids[last];
            if self.cold.is_none() {
                self.vectors.copy_within(last * self.dim..(last + 1) * self.dim, slot * self.dim);
            }
            self.ids[slot] = moved;
            self.norms[slot] = self.norms[last];
            self.payloads.swap(slot, last);
            self.slot_of.insert(moved, slot as u32, &self.ids);
        }
        self.ids.pop();
        self.norms.pop();
        self.payloads.pop();
        if self.cold.is_none() {
            self.vectors.truncate(last * self.dim);
        }
        true
    }

    pub fn get(&self, id: u64) -> Option<(&[f32], &Payload)> {
        let slot = *self.slot_of.get(&id)? as usize;
        Some((self.row(slot), &self.payloads[slot]))
    }

    pub fn payload(&self, id: u64) -> Option<&Payload> {
        self.slot_of.get(&id).map(|&s| &self.payloads[s as usize])
    }

    /// Apply `f` to a point's payload; returns whether it changed.
    pub fn update_payload(&mut self, id: u64, f: impl FnOnce(&mut Payload)) -> Option<bool> {
        let slot = *self.slot_of.get(&id)? as usize;
        let p = &mut self.payloads[slot];
        let before_bytes = payload_mem_bytes(p);
        let before = p.clone();
        f(p);
        self.payload_index.update(id, Some(&before), Some(p));
        self.payload_bytes = self.payload_bytes + payload_mem_bytes(p) - before_bytes;
        Some(*p != before)
    }

    pub fn count(&self, filter: Option<&Filter>) -> u64 {
        match filter {
            None => self.len() as u64,
            Some(f) => self.payloads.iter().filter(|p| f.matches(p)).count() as u64,
        }
    }

    /// Bytes held in memory: vectors, norms, ids, id map and payloads.
    pub fn mem_bytes(&self) -> usize {
        self.vectors.capacity() * 4
            + self.cold.as_ref().map_or(0, cold::Cold::mem_bytes)
            + self.norms.capacity() * 4
            + self.ids.capacity() * 8
            + self.slot_of.capacity() * 16
            + self.payloads.capacity() * std::mem::size_of::<Payload>()
            + self.payload_bytes
            + self.ivf.as_ref().map_or(0, |s| s.index.mem_bytes() + s.dirty.capacity() * 16)
            + self.graph_bytes()
            + self.payload_index.mem_bytes()
    }

    /// Bytes of the index alone.
    pub fn index_bytes(&self) -> usize {
        self.ivf.as_ref().map_or(0, |s| s.index.mem_bytes()) + self.graph_bytes()
    }

    /// Whether the index should be (re)built now: enough points, no build
    /// running, and none yet, or a tenth of the points changed since the
    /// last build, or some changed and writes paused since the last look
    /// (the indexer looks every 200 ms). Real queries never rebuild it:
    /// they recalibrate the installed index (`recal`).
    pub fn ivf_wanted(&mut self, _now: Instant) -> bool {
        let paused = self.changes > 0 && self.changes == self.changes_seen;
        self.changes_seen = self.changes;
        self.len() >= MIN_POINTS
            && !self.ivf_dropped
            && self.build_dirty.is_none()
            && self.ivf.as_ref().is_none_or(|s| paused || self.changes * 10 >= s.index.indexed.max(1))
    }

    /// Start a build: copy the ids (each [`Partition::ivf_build_step`]
    /// reads the rows in place) and track changes from here on. The build
    /// calibrates on held-out points and on the real queries seen, as a
    /// graph build does (`graph_build_start`): lists rebuilt under ingest
    /// then serve on real queries' figures at once, instead of on
    /// discounted held-out ones until a recalibration measures them again.
    pub fn ivf_build_start(&mut self, seed: u64, _now: Instant) -> Builder {
        self.build_dirty = Some(HashSet::new());
        self.changes = 0;
        self.changes_seen = 0;
        if !self.reservoir.is_empty() {
            // As in `graph_build_start`: later queries count as new.
            self.queries_seen = self.reservoir.len() as u64;
        }
        Builder::new(self.ids.clone(), self.dim, seed, self.reservoir.clone())
    }

    /// One bounded step of the running build over this partition's rows;
    /// `true` when done.
    pub fn ivf_build_step(&self, b: &mut Builder) -> bool {
        b.step(self)
    }

    /// Install a finished build; points changed since it started stay
    /// exact. Returns the lists it replaced, for the caller to free.
    pub fn ivf_install(&mut self, mut index: Ivf) -> Retired {
        index.calibration.apply_parts(self.parts);
        let dirty = self.build_dirty.take().unwrap_or_default();
        self.installs += 1;
        let measured = index.calibration.rests_on_real().then(Instant::now);
        let mut retired = Retired::default();
        retired.keep(self.ivf.replace(IvfState {
            index,
            dirty,
            recal: recal::Mark::new(self.installs, self.len(), measured, Instant::now()),
        }));
        retired.keep(self.drop_unused_ivf());
        retired
    }

    /// A search forced the IVF lists (`mode: "ivf"` or `nprobe`): build
    /// them again if they were dropped, and keep them from now on.
    pub fn want_ivf(&mut self) {
        self.ivf_dropped = false;
        self.ivf_pinned = true;
    }

    pub fn ivf_status(&self) -> Option<IvfStatus> {
        let building = self.build_dirty.is_some();
        match &self.ivf {
            // (A memory-light partition never built lists: none until its graph.)
            None if !building && (!self.ivf_dropped || (self.cold.is_some() && self.hnsw.is_none())) => None,
            None => Some(IvfStatus {
                dropped: self.ivf_dropped,
                lists: 0,
                indexed: 0,
                pending_exact: 0,
                build_ms: 0,
                building,
                bytes: 0,
                real_queries: 0,
                real: [0; 3],
                calibration: Vec::new(),
            }),
            Some(s) => {
                let c = &s.index.calibration;
                Some(IvfStatus {
                    dropped: false,
                    lists: s.index.nlist(),
                    indexed: s.index.indexed,
                    pending_exact: s.dirty.len(),
                    build_ms: s.index.build_ms,
                    building,
                    bytes: s.index.mem_bytes(),
                    real_queries: c.real_queries,
                    real: c.real,
                    calibration: c.table(),
                })
            }
        }
    }

    /// The current exact key of a point for `q` (`None`: gone, or no
    /// cosine for a zero vector): what indexes re-rank with.
    fn exact_of<'a>(&'a self, metric: Metric, q: &'a [f32]) -> ExactOf<'a> {
        let q_norm = if metric == Metric::Cosine { norm(q) } else { 0.0 };
        ExactOf { p: self, metric, q, q_norm }
    }

    /// Whether a point passes `filter` (none: every point).
    fn passes<'a>(&'a self, filter: Option<&'a Filter>) -> impl Fn(u64) -> bool + 'a {
        move |id| filter.is_none_or(|f| self.payload(id).is_some_and(|p| f.matches(p)))
    }

    /// Top-k through the IVF lists, probing `nprobe` of them, with the
    /// points changed since their build scored exactly (`None`: no lists).
    fn search_ivf(&self, queries: &[Vec<f32>], params: &SearchParams, nprobe: usize) -> Option<Vec<Vec<Scored>>> {
        let state = self.ivf.as_ref()?;
        let index = &state.index;
        let filter = params.filter.filter(|f| !f.is_empty());
        let results = queries
            .iter()
            .map(|q| {
                let (exact, passes) = (self.exact_of(params.metric, q), self.passes(filter));
                let iq = IvfQuery { query: q, metric: params.metric, k: params.k, nprobe };
                let hits = index.search(&iq, |id| !state.dirty.contains(&id) && passes(id), |id| exact.get(id));
                let mut top = TopK::new(params.k);
                hits.into_iter().for_each(|h| top.push(h));
                for &id in &state.dirty {
                    if let (Some(key), true) = (exact.get(id), passes(id)) {
                        top.push(Scored { key, id });
                    }
                }
                top.into_sorted()
            })
            .collect();
        Some(results)
    }

    /// Exact top-k for every query. Queries must have this partition's
    /// dimension (validated by the caller); cosine queries must be non-zero.
    pub fn search(&self, queries: &[Vec<f32>], params: &SearchParams) -> Vec<Vec<Scored>> {
        self.search_with(kernels(), queries, params)
    }

    pub fn search_with(&self, kern: &Kernels, queries: &[Vec<f32>], params: &SearchParams) -> Vec<Vec<Scored>> {
        let mut scan = ScanPieces::new(queries, params.metric, params.k);
        self.scan(kern, &scan.prepared, params, None, &mut scan.tops);
        scan.into_hits()
    }

    /// One piece of an exact scan in pieces (`shard::ExactScan`): the rows
    /// in the slots just below `below` (capped at the partition's length),
    /// as many as [`piece_rows`] allows for this many queries, into
    /// `scan`'s top k per query; returns the slot the next piece scans
    /// below (`None`: this was the last). A memory-light partition scans
    /// everything in one piece.
    pub fn search_piece(&self, params: &SearchParams, below: usize, scan: &mut ScanPieces) -> Option<usize> {
        let rows = piece_rows(self.dim, scan.tops.len());
        self.search_piece_of(params, below, rows, scan)
    }

    /// [`Partition::search_piece`] with pieces of `rows` rows.
    fn search_piece_of(
        &self,
        params: &SearchParams,
        below: usize,
        rows: usize,
        scan: &mut ScanPieces,
    ) -> Option<usize> {
        // A delete since the last piece may have moved a scanned row down
        // into a slot not yet scanned: from now on a point met again keeps
        // its best entry, once.
        if scan.moves != Some(self.moves) {
            if scan.moves.is_some() {
                scan.tops.iter_mut().for_each(TopK::distinct);
            }
            scan.moves = Some(self.moves);
        }
        if self.cold.is_some() {
            // Every row in one piece: memory-light from its first point
            // (`set_cold`), the partition never had an earlier piece.
            self.scan(kernels(), &scan.prepared, params, None, &mut scan.tops);
            return None;
        }
        let end = below.min(self.len());
        let start = end.saturating_sub(rows.max(1));
        self.scan(kernels(), &scan.prepared, params, Some(start..end), &mut scan.tops);
        (start > 0).then_some(start)
    }

    /// Push every row, or the in-memory rows of `slots`, into each
    /// prepared query's top k (`prepare`).
    fn scan(
        &self,
        kern: &Kernels,
        prepared: &AlignedF32,
        params: &SearchParams,
        slots: Option<std::ops::Range<usize>>,
        tops: &mut [TopK],
    ) {
        // The filter's verdict for each slot scanned, from the first.
        let mask: Option<Vec<bool>> = params.filter.filter(|f| !f.is_empty()).map(|f| {
            let range = slots.clone().unwrap_or(0..self.payloads.len());
            self.payloads[range].iter().map(|p| f.matches(p)).collect()
        });
        let prepared: Vec<&[f32]> = prepared.chunks(self.dim.max(1)).collect();
        let metric = params.metric;
        let mask = mask.as_deref();
        // One copy of the scan per metric, so the key's formula is inlined
        // into its inner loop. The queries were normalised (`prepare`), so
        // cosine divides by the row's norm alone (`q_norm` 1.0). (`key`
        // gives `-raw / n`, the same float as `-(raw / n)` wherever it is
        // finite; a non-finite key never enters a `TopK`.)
        let scan = Scan { p: self, kern, metric, queries: &prepared, mask, slots };
        match metric {
            Metric::L2 => scan.run(tops, |raw, _| key(Metric::L2, raw, 1.0, 0.0)),
            Metric::Dot => scan.run(tops, |raw, _| key(Metric::Dot, raw, 1.0, 0.0)),
            // (A free row of the rows file has no slot, nor a norm.)
            Metric::Cosine => {
                scan.run(tops, |raw, slot| key(Metric::Cosine, raw, 1.0, self.norms.get(slot).map_or(0.0, |n| *n)))
            }
        }
    }
}

/// The queries of an exact scan as it scores them, in one aligned buffer
/// like the rows: cosine queries normalised (scored by dot, then divided
/// by the row's norm), the others as they are.
fn prepare(queries: &[Vec<f32>], metric: Metric) -> AlignedF32 {
    let mut buf = AlignedF32::new();
    for q in queries {
        match metric {
            Metric::Cosine => {
                let n = norm(q);
                buf.extend_from_slice(&q.iter().map(|x| x / n).collect::<Vec<f32>>());
            }
            _ => buf.extend_from_slice(q),
        }
    }
    buf
}

#[cfg(test)]
mod calib_tests;
#[cfg(test)]
mod cold_tests;
#[cfg(test)]
mod tests;
