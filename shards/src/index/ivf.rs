//! IVF index of one partition: a k-means coarse quantizer, inverted lists
//! of 8-bit scalar-quantized codes, probing of the nearest lists, and
//! re-ranking of the best candidates with full-precision vectors.
//!
//! The index is built over the partition's rows (read in place at each
//! step, see [`Rows`]) by a [`Builder`] that does bounded steps, so the shard can run it on a low-priority task
//! queue and keep serving between steps. The builder also calibrates the
//! index: for sample queries it measures recall@10 against an exact scan at
//! each probe count of a ladder, per metric; `auto` then picks the smallest
//! probe count whose measured recall meets the target.
//!
//! List entries are keys: the build's row numbers while building (so the
//! calibration can re-rank from the rows), point ids once installed.

use crate::index::calib::{
    spread, CalibQuery, Calibration, Calibrator, RealQueries, RowSource, Rows, CALIB_K, CALIB_QUERIES,
};
use crate::index::sq8::{Prepared, Sq8};
use crate::math::distance::{kernels, Metric};
use crate::math::key::norm;
use crate::math::rng::splitmix64;
use crate::math::topk::{Scored, TopK};

/// Fewest points for which a partition gets an index.
pub const MIN_POINTS: usize = 2048;
/// Multiply-adds a builder step may do (about a tenth of a millisecond), so the
/// shard gets control back often.
const STEP_WORK: usize = 500_000;
const TRAIN_ITERS: usize = 8;
/// Training sample: this many points per list (k-means cost is linear in it).
const TRAIN_PER_LIST: usize = 32;

/// Lists for `n` points: about √n, so a list holds about √n points.
pub fn lists_for(n: usize) -> usize {
    ((n as f64).sqrt().round() as usize).clamp(8, 4096)
}

/// [`Builder::assigned`] of a row deleted before its assignment.
const UNLISTED: u32 = u32::MAX;

/// Candidates re-ranked exactly per query.
fn rerank_count(k: usize) -> usize {
    (4 * k).max(40)
}

/// The inverted lists, one after another in one array per field: list `c`
/// holds entries `start[c]..end[c]` (`end[c]` may fall short of
/// `start[c + 1]` by the points deleted during the build). One allocation
/// per field rather than three per list: at 384 dimensions and beyond ~11,000
/// points the codes are one mapped block, which goes back to the kernel the
/// moment a replaced index is freed. Per-list vectors, grown by doubling,
/// left a rebuild's worth of arena garbage per rebuild until the next trim;
/// during a bulk load (a rebuild per tenth of new points) that was most of
/// the peak (docs/benchmarks.md, "Memory").
#[derive(Clone, Debug, Default)]
struct Lists {
    start: Vec<usize>,
    end: Vec<usize>,
    keys: Vec<u64>,
    norms: Vec<f32>,
    /// `dim` bytes per entry (8-bit codes).
    codes: Vec<u8>,
}

impl Lists {
    fn len(&self) -> usize {
        self.start.len()
    }

    /// Entries of list `c`.
    fn range(&self, c: usize) -> std::ops::Range<usize> {
        self.start[c]..self.end[c]
    }

    /// Size the lists for rows assigned as `assigned` says (`dim` bytes of
    /// code each) and return where each list's first entry goes.
    fn reserve(&mut self, assigned: &[u32], dim: usize) -> Vec<usize> {
        let mut counts = vec![0usize; self.len()];
        for &c in assigned.iter().filter(|&&c| c != UNLISTED) {
            counts[c as usize] += 1;
        }
        let mut at = 0;
        for (start, count) in self.start.iter_mut().zip(&counts) {
            *start = at;
            at += count;
        }
        self.end = self.start.clone();
        self.keys = vec![0; at];
        self.norms = vec![0.0; at];
        self.codes = vec![0; at * dim];
        self.start.clone()
    }

    fn mem_bytes(&self) -> usize {
        (self.start.capacity() + self.end.capacity()) * 8
            + self.keys.capacity() * 8
            + self.norms.capacity() * 4
            + self.codes.capacity()
    }
}

#[derive(Clone, Debug)]
pub struct Ivf {
    dim: usize,
    centroids: Vec<f32>,
    centroid_norms: Vec<f32>,
    lists: Lists,
    sq: Sq8,
    pub calibration: Calibration,
    /// Points indexed when the build started.
    pub indexed: usize,
    /// Milliseconds the build took (steps only, not the waits between).
    pub build_ms: u64,
}

/// One search through the index.
pub struct IvfQuery<'a> {
    pub query: &'a [f32],
    pub metric: Metric,
    pub k: usize,
    pub nprobe: usize,
}

impl Ivf {
    pub fn nlist(&self) -> usize {
        self.lists.len()
    }

    /// Bytes of the index itself (codes, keys, norms, centroids).
    pub fn mem_bytes(&self) -> usize {
        self.lists.mem_bytes() + (self.centroids.len() + self.centroid_norms.len()) * 4 + self.sq.mem_bytes()
    }

    /// Map every key (build-time row) through `f` (to point ids).
    fn rekey(&mut self, f: impl Fn(u64) -> u64) {
        self.lists.keys.iter_mut().for_each(|k| *k = f(*k));
    }

    /// Approximate top-k: probe the `nprobe` nearest lists, keep the best
    /// candidates by their quantized score (those `accept` admits), then
    /// re-rank them by the full-precision key `exact` returns (`None`: the
    /// point is gone or no longer indexed). Keys are "lower is better".
    pub fn search(
        &self,
        q: &IvfQuery,
        mut accept: impl FnMut(u64) -> bool,
        mut exact: impl FnMut(u64) -> Option<f32>,
    ) -> Vec<Scored> {
        let scan = Scan::new(self, q);
        let mut order = scan.list_order(self);
        let nprobe = q.nprobe.clamp(1, order.len());
        order.select_nth_unstable_by(nprobe - 1, |a, b| a.0.total_cmp(&b.0));
        let mut cand = TopK::new(rerank_count(q.k));
        for &(_, c) in &order[..nprobe] {
            scan.list(self, c, &mut cand, &mut accept);
        }
        rerank(cand, q.k, &mut exact)
    }

    /// [`Ivf::search`] at every probe count of `ladder` (ascending) for the
    /// cost of one search probing the largest: lists are scanned nearest
    /// first and the candidates re-ranked at each rung. With each answer:
    /// the codes scanned up to that rung.
    pub fn search_ladder(
        &self,
        q: &IvfQuery,
        ladder: &[usize],
        mut accept: impl FnMut(u64) -> bool,
        mut exact: impl FnMut(u64) -> Option<f32>,
    ) -> Vec<(Vec<Scored>, usize)> {
        let scan = Scan::new(self, q);
        let mut order = scan.list_order(self);
        order.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut codes = 0;
        let mut cand = TopK::new(rerank_count(q.k));
        let mut scanned = 0;
        ladder
            .iter()
            .map(|&nprobe| {
                let nprobe = nprobe.clamp(1, order.len());
                for &(_, c) in &order[scanned.min(nprobe)..nprobe] {
                    scan.list(self, c, &mut cand, &mut accept);
                    codes += self.lists.range(c).len();
                }
                scanned = scanned.max(nprobe);
                (rerank(cand.clone(), q.k, &mut exact), codes)
            })
            .collect()
    }
}

/// The probe counts one calibration step measures, from rung `rung` of
/// `ladder`: up to twice the first (at least 8). Each step probes from
/// scratch, so no step probes every list of a large partition at once
/// unless the ladder gets there (and the calibration's walk budget stops a
/// query's climb before a rung too slow for one step): probing all ~740
/// lists of a 300,000-point partition in one step scanned all its codes.
pub fn calib_rungs(ladder: &[usize], rung: usize) -> std::ops::Range<usize> {
    let first = ladder[rung];
    let end = ladder[rung + 1..].iter().position(|&n| n > (2 * first).max(8)).map_or(ladder.len(), |i| rung + 1 + i);
    rung..end
}

/// The list whose centroid is nearest to `x` by l2.
fn nearest(centroids: &[f32], dim: usize, x: &[f32]) -> usize {
    let l2 = kernels().l2sq;
    centroids
        .chunks_exact(dim)
        .enumerate()
        .map(|(c, cen)| (l2(x, cen), c))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(0, |(_, c)| c)
}

/// The exact top `k` of the quantized candidates.
fn rerank(cand: TopK, k: usize, exact: &mut impl FnMut(u64) -> Option<f32>) -> Vec<Scored> {
    let mut top = TopK::new(k);
    for c in cand.into_sorted() {
        if let Some(key) = exact(c.id) {
            top.push(Scored { key, id: c.id });
        }
    }
    top.into_sorted()
}

/// A query prepared for quantized scoring.
struct Scan {
    metric: Metric,
    prep: Prepared,
}

impl Scan {
    fn new(ivf: &Ivf, q: &IvfQuery) -> Scan {
        Scan { metric: q.metric, prep: ivf.sq.prepare(q.query, q.metric) }
    }

    /// (centroid key, list) for every list, unordered.
    fn list_order(&self, ivf: &Ivf) -> Vec<(f32, usize)> {
        let kern = kernels();
        let dim = ivf.dim;
        let query = &self.prep.query[..];
        (0..ivf.nlist())
            .map(|c| {
                let cen = &ivf.centroids[c * dim..(c + 1) * dim];
                let key = match self.metric {
                    Metric::L2 => (kern.l2sq)(query, cen),
                    Metric::Dot => -(kern.dot)(query, cen),
                    Metric::Cosine => -(kern.dot)(query, cen) / ivf.centroid_norms[c].max(f32::MIN_POSITIVE),
                };
                (key, c)
            })
            .collect()
    }

    /// Score list `c` by its codes into `cand`.
    fn list(&self, ivf: &Ivf, c: usize, cand: &mut TopK, accept: &mut impl FnMut(u64) -> bool) {
        let lists = &ivf.lists;
        let entries = lists.range(c);
        let codes = lists.codes[entries.start * ivf.dim..entries.end * ivf.dim].chunks_exact(ivf.dim);
        for ((code, &norm), &key) in codes.zip(&lists.norms[entries.clone()]).zip(&lists.keys[entries]) {
            let approx = self.prep.key(code, norm);
            if approx <= cand.threshold() && accept(key) {
                cand.push(Scored { key: approx, id: key });
            }
        }
    }
}

enum Phase {
    /// Seed the centroids and fit the quantizer (the first step).
    Seed,
    Train {
        iter: usize,
        cursor: usize,
        sums: Vec<f64>,
        counts: Vec<u32>,
    },
    /// Find each row's list ([`Builder::assigned`]).
    Assign {
        cursor: usize,
    },
    /// Write each listed row's entry at its list's next free place.
    Pack {
        cursor: usize,
        next: Vec<usize>,
    },
    Calibrate,
    Done,
}

/// Builds an [`Ivf`] over a partition's rows in bounded steps.
pub struct Builder {
    dim: usize,
    rows: Rows,
    sample: Vec<usize>,
    /// Each row's list ([`UNLISTED`]: deleted before its assignment), until
    /// the lists are packed.
    assigned: Vec<u32>,
    index: Ivf,
    phase: Phase,
    calib: Calibrator,
    /// The real queries' calibration, if the partition had any.
    real: Option<Calibrator>,
    spent: std::time::Duration,
}

impl Builder {
    /// A build over the points `ids` (the partition's slot order), whose
    /// rows each [`Builder::step`] reads from the partition; `real`: the
    /// partition's reservoir of real queries, measured apart from the
    /// held-out sample and merged as a recalibration would (see
    /// `hnsw::GraphBuilder::new`): a rebuild of lists that `auto` serves on
    /// real queries' figures goes on serving on them.
    pub fn new(ids: Vec<u64>, dim: usize, seed: u64, real: RealQueries) -> Builder {
        let n = ids.len();
        let nlist = lists_for(n).min(n.max(1));
        let mut state = seed;
        // Training sample without replacement (partial Fisher-Yates).
        let want = (nlist * TRAIN_PER_LIST).min(n);
        let mut perm: Vec<usize> = (0..n).collect();
        for i in 0..want {
            let j = i + (splitmix64(&mut state) % (n - i) as u64) as usize;
            perm.swap(i, j);
        }
        let sample: Vec<usize> = perm[..want].to_vec();
        // Calibration queries: points outside the training sample when there
        // are enough (k-means fits its own sample better than unseen queries).
        let unseen = &perm[want..];
        let probes = if unseen.len() >= CALIB_QUERIES { spread(unseen) } else { spread(&sample) };
        let lists = Lists { start: vec![0; nlist], end: vec![0; nlist], ..Lists::default() };
        // 1, 2, 3, 4, 6, 8, 12, 16, 24, ... then every list.
        let mut ladder: Vec<usize> = std::iter::successors(Some(1usize), |p| Some(p * 2))
            .flat_map(|p| [p, p + p / 2])
            .filter(|&p| p > 0)
            .take_while(|&p| p < nlist)
            .collect();
        ladder.dedup();
        ladder.push(nlist);
        let index = Ivf {
            dim,
            centroids: Vec::with_capacity(nlist * dim),
            centroid_norms: Vec::new(),
            lists,
            sq: Sq8::default(),
            calibration: Calibration::default(),
            indexed: n,
            build_ms: 0,
        };
        Builder {
            dim,
            rows: Rows::new(ids, dim),
            sample,
            assigned: Vec::new(),
            index,
            phase: Phase::Seed,
            real: (!real.is_empty()).then(|| Calibrator::new(Vec::new(), real, ladder.clone())),
            calib: Calibrator::new(probes, RealQueries::default(), ladder),
            spent: std::time::Duration::ZERO,
        }
    }

    /// Initial centroids (the first sample points) and the scalar
    /// quantizer's range per dimension (from the sample).
    fn seed(&mut self, src: &dyn RowSource) {
        let dim = self.dim;
        let nlist = self.index.nlist();
        let rows = self.rows.at(src);
        let mut centroids = Vec::with_capacity(nlist * dim);
        for &r in &self.sample[..nlist] {
            centroids.extend_from_slice(rows.row(r));
        }
        self.index.sq = Sq8::fit(dim, self.sample.iter().map(|&r| rows.row(r)));
        self.index.centroids = centroids;
        self.phase = Phase::Train { iter: 0, cursor: 0, sums: vec![0.0; nlist * dim], counts: vec![0; nlist] };
    }

    /// What the next step does, for stall reports (`aionbd::watchdog`).
    pub fn phase_name(&self) -> &'static &'static str {
        match self.phase {
            Phase::Seed => &"IVF build step: seed",
            Phase::Train { .. } => &"IVF build step: train",
            Phase::Assign { .. } => &"IVF build step: assign",
            Phase::Pack { .. } => &"IVF build step: pack",
            Phase::Calibrate => &"IVF build step: calibrate",
            Phase::Done => &"IVF build step",
        }
    }

    /// Do a bounded amount of work over the rows `src` holds now; `true`
    /// once the index is complete.
    pub fn step(&mut self, src: &dyn RowSource) -> bool {
        let t0 = std::time::Instant::now();
        let done = self.step_inner(src);
        self.spent += t0.elapsed();
        done
    }

    fn step_inner(&mut self, src: &dyn RowSource) -> bool {
        let dim = self.dim;
        let step_points = (STEP_WORK / (self.index.nlist() * dim).max(1)).clamp(8, 4096);
        let rows = self.rows.at(src);
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Seed => {
                self.seed(src);
                false
            }
            Phase::Train { iter, cursor, mut sums, mut counts } => {
                let end = (cursor + step_points).min(self.sample.len());
                for s in cursor..end {
                    let r = self.sample[s];
                    let c = nearest(&self.index.centroids, dim, rows.row(r));
                    counts[c] += 1;
                    for (acc, &v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(rows.row(r)) {
                        *acc += v as f64;
                    }
                }
                if end < self.sample.len() {
                    self.phase = Phase::Train { iter, cursor: end, sums, counts };
                    return false;
                }
                // Move each centroid to the mean of its points (an empty
                // list keeps its centroid).
                for c in 0..counts.len() {
                    if counts[c] > 0 {
                        for i in 0..dim {
                            self.index.centroids[c * dim + i] = (sums[c * dim + i] / counts[c] as f64) as f32;
                        }
                    }
                }
                self.phase = if iter + 1 < TRAIN_ITERS {
                    let nlist = counts.len();
                    Phase::Train { iter: iter + 1, cursor: 0, sums: vec![0.0; nlist * dim], counts: vec![0; nlist] }
                } else {
                    self.index.centroid_norms =
                        (0..counts.len()).map(|c| norm(&self.index.centroids[c * dim..(c + 1) * dim])).collect();
                    Phase::Assign { cursor: 0 }
                };
                false
            }
            Phase::Assign { cursor } => {
                let end = (cursor + step_points).min(rows.len());
                if cursor == 0 {
                    self.assigned = Vec::with_capacity(rows.len());
                }
                for r in cursor..end {
                    // Deleted since the build started: not listed.
                    let c = rows.get(r).map_or(UNLISTED, |(row, _)| nearest(&self.index.centroids, dim, row) as u32);
                    self.assigned.push(c);
                }
                self.phase = if end < rows.len() {
                    Phase::Assign { cursor: end }
                } else {
                    Phase::Pack { cursor: 0, next: self.index.lists.reserve(&self.assigned, dim) }
                };
                false
            }
            Phase::Pack { cursor, mut next } => {
                let end = (cursor + (STEP_WORK / dim.max(1)).max(64)).min(rows.len());
                let lists = &mut self.index.lists;
                for r in cursor..end {
                    let c = self.assigned[r];
                    // Deleted since its assignment: not listed either.
                    let Some((row, row_norm)) = rows.get(r).filter(|_| c != UNLISTED) else { continue };
                    let at = next[c as usize];
                    next[c as usize] += 1;
                    lists.keys[at] = r as u64;
                    lists.norms[at] = row_norm;
                    self.index.sq.encode_into(row, &mut lists.codes[at * dim..(at + 1) * dim]);
                }
                if end < rows.len() {
                    self.phase = Phase::Pack { cursor: end, next };
                } else {
                    lists.end = next;
                    self.assigned = Vec::new();
                    self.phase = Phase::Calibrate;
                }
                false
            }
            Phase::Calibrate => {
                let index = &self.index;
                // The held-out sample first, then the real queries.
                let calib = match &mut self.real {
                    Some(real) if self.calib.is_done() => real,
                    _ => &mut self.calib,
                };
                let done = calib.step(&rows, (STEP_WORK / dim.max(1)).max(64), |q: &CalibQuery| {
                    let t = std::time::Instant::now();
                    let me = q.me;
                    let found = index.search_ladder(
                        &IvfQuery { query: q.query, metric: q.metric, k: CALIB_K, nprobe: 0 },
                        &q.ladder[calib_rungs(q.ladder, q.rung)],
                        |key| key as usize != me,
                        |key| Some(rows.key(q.metric, q.query, key as usize)),
                    );
                    // Time per rung: the centroids plus the codes scanned so far.
                    let ns = t.elapsed().as_nanos() as f32;
                    let total = (index.nlist() + found.last().map_or(0, |f| f.1)) as f32;
                    found.into_iter().map(|(hits, codes)| (hits, ns * (index.nlist() + codes) as f32 / total)).collect()
                });
                let done = done && self.real.as_ref().is_none_or(Calibrator::is_done);
                if !done {
                    self.phase = Phase::Calibrate;
                }
                done
            }
            Phase::Done => true,
        }
    }

    /// The finished index, keyed by point id.
    pub fn finish(mut self) -> Ivf {
        self.index.calibration = self.calib.finish();
        if let Some(real) = self.real {
            self.index.calibration.merge_real(real.finish());
        }
        let ids = std::mem::take(&mut self.rows.ids);
        self.index.rekey(|row| ids[row as usize]);
        self.index.build_ms = self.spent.as_millis() as u64;
        self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::calib::metric_index;
    use crate::math::key::exact_key;

    /// Clustered points: `clusters` centres, points scattered around them.
    pub fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut unit = || (splitmix64(&mut s) >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0;
        let centres: Vec<f32> = (0..clusters * dim).map(|_| unit() * 4.0).collect();
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = i % clusters;
            for d in 0..dim {
                out.push(centres[c * dim + d] + unit());
            }
        }
        out
    }

    fn build(n: usize, dim: usize) -> (Ivf, Vec<f32>, Vec<f32>) {
        let rows = clustered(n, dim, 32, 7);
        let norms: Vec<f32> = rows.chunks(dim).map(|r| r.iter().map(|x| x * x).sum::<f32>().sqrt()).collect();
        let dense = crate::index::calib::Dense::new(rows.clone(), dim);
        let mut b = Builder::new((0..n as u64).collect(), dim, 1, RealQueries::default());
        while !b.step(&dense) {}
        (b.finish(), rows, norms)
    }

    /// Rows that some ids no longer have (deleted while a build runs).
    struct Vanishing {
        dense: crate::index::calib::Dense,
        gone: std::collections::HashSet<u64>,
    }

    impl RowSource for Vanishing {
        fn row_of(&self, slot: usize, id: u64) -> Option<(&[f32], f32)> {
            (!self.gone.contains(&id)).then(|| self.dense.row_of(slot, id)).flatten()
        }
    }

    #[test]
    fn packed_lists_hold_every_row_present_at_its_packing_once() {
        let (n, dim) = (3000, 8);
        let dense = crate::index::calib::Dense::new(clustered(n, dim, 16, 3), dim);
        let mut src = Vanishing { dense, gone: Default::default() };
        let mut b = Builder::new((0..n as u64).collect(), dim, 5, RealQueries::default());
        let (mut assigning, mut packing) = (false, false);
        while !b.step(&src) {
            // Some go before their rows are assigned to lists, some after
            // (before their entries are packed).
            if !assigning && *b.phase_name() == "IVF build step: assign" {
                assigning = true;
                src.gone.extend((0..n as u64).step_by(7));
            }
            if !packing && *b.phase_name() == "IVF build step: pack" {
                packing = true;
                src.gone.extend((3..n as u64).step_by(11));
            }
        }
        assert!(assigning && packing);
        let ivf = b.finish();
        let lists = &ivf.lists;
        let mut seen = vec![0; n];
        for c in 0..ivf.nlist() {
            assert!(lists.range(c).end <= lists.start.get(c + 1).copied().unwrap_or(lists.keys.len()));
            for e in lists.range(c) {
                let id = lists.keys[e];
                seen[id as usize] += 1;
                // The entry is the row's own code and norm.
                let (row, norm) = src.row_of(id as usize, id).expect("listed rows are present");
                assert_eq!(lists.norms[e], norm);
                let mut code = Vec::new();
                ivf.sq.encode(row, &mut code);
                assert_eq!(&lists.codes[e * dim..(e + 1) * dim], &code[..]);
            }
        }
        for (id, &times) in seen.iter().enumerate() {
            let want = usize::from(!src.gone.contains(&(id as u64)));
            assert_eq!(times, want, "point {id} listed {times} times");
        }
    }

    #[test]
    fn probing_every_list_equals_exact_and_recall_never_falls_as_probes_rise() {
        let (n, dim) = (4000, 16);
        let (ivf, rows, norms) = build(n, dim);
        assert_eq!(ivf.nlist(), lists_for(n));
        for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
            let r = &ivf.calibration.recall[metric_index(metric)];
            assert!(r.windows(2).all(|w| w[1] >= w[0]), "{metric:?}: recall falls as nprobe rises: {r:?}");
            for qi in (0..n).step_by(397) {
                let q = &rows[qi * dim..(qi + 1) * dim];
                let exact_of = |id: u64| exact_key(metric, q, &rows[id as usize * dim..][..dim], norms[id as usize]);
                let mut want = TopK::new(10);
                (0..n as u64).for_each(|id| want.push(Scored { key: exact_of(id), id }));
                let want: Vec<u64> = want.into_sorted().into_iter().map(|s| s.id).collect();
                let got = ivf.search(
                    &IvfQuery { query: q, metric, k: 10, nprobe: ivf.nlist() },
                    |_| true,
                    |id| Some(exact_of(id)),
                );
                let got: Vec<u64> = got.into_iter().map(|s| s.id).collect();
                assert_eq!(got, want, "{metric:?} query {qi}");
            }
        }
    }

    #[test]
    fn calibration_steps_probe_at_most_twice_their_first_count() {
        let ladder = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 740];
        let mut steps = Vec::new();
        let mut rung = 0;
        while rung < ladder.len() {
            let r = calib_rungs(&ladder, rung);
            assert_eq!(r.start, rung);
            assert!(r.end > rung, "every step measures a rung");
            steps.push(ladder[r.clone()].to_vec());
            rung = r.end;
        }
        for s in &steps {
            assert!(*s.last().unwrap() <= (2 * s[0]).max(8), "{s:?}");
        }
        assert_eq!(steps.first().unwrap(), &vec![1, 2, 3, 4, 6, 8]);
        assert_eq!(steps[1], vec![12, 16, 24]);
        assert_eq!(steps.last().unwrap(), &vec![740]);
    }

    #[test]
    fn ladder_search_equals_a_search_at_each_rung() {
        let (n, dim) = (3000, 12);
        let (ivf, rows, norms) = build(n, dim);
        let ladder = ivf.calibration.ladder.clone();
        for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
            for qi in (0..n).step_by(331) {
                let q = &rows[qi * dim..(qi + 1) * dim];
                let exact_of = |id: u64| exact_key(metric, q, &rows[id as usize * dim..][..dim], norms[id as usize]);
                let odd = |id: u64| id % 2 == 1;
                let at = ivf.search_ladder(&IvfQuery { query: q, metric, k: 10, nprobe: 0 }, &ladder, odd, |id| {
                    Some(exact_of(id))
                });
                for (rung, &nprobe) in ladder.iter().enumerate() {
                    let one = ivf.search(&IvfQuery { query: q, metric, k: 10, nprobe }, odd, |id| Some(exact_of(id)));
                    assert_eq!(at[rung].0, one, "{metric:?} query {qi} nprobe {nprobe}");
                }
            }
        }
    }

    #[test]
    fn calibration_picks_the_smallest_probe_count_meeting_the_target() {
        let (ivf, _, _) = build(3000, 8);
        let c = &ivf.calibration;
        let (n, r, _) = c.choose(Metric::L2, 0.9).expect("0.9 is reachable");
        assert!(r >= 0.9);
        assert_eq!(c.recall_at(Metric::L2, n), r);
        // One probe fewer reads a lower recall, and a target at that recall
        // is met by no more probes than that.
        if n > c.ladder[0] {
            let below = c.recall_at(Metric::L2, n - 1);
            assert!(below <= r);
            assert!(c.choose(Metric::L2, below).is_none_or(|(m, ..)| m <= n));
        }
    }
}
