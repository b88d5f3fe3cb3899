//! HNSW graph index of one partition (Malkov & Yashunin), traversed over
//! 8-bit scalar-quantized codes ([`crate::index::sq8`]) and re-ranked with the
//! full-precision vectors the caller holds.
//!
//! Nodes are numbered in insertion order and carry a key (a row of the
//! build's copy while building, a point id once installed). The graph is
//! built with squared l2 between codes (the distance HNSW's guarantees are
//! about); searches score with the query's own metric, and the calibration
//! measures what that gives per metric. Deleted or replaced points are
//! tombstoned: their nodes still route searches but never answer. Inserts
//! after the build extend the graph one point at a time.

mod build;
pub use build::{GraphBuilder, EF_LADDER, FILTER_SHARES};

use crate::index::sq8::{L2Codes, Prepared, Sq8};
use crate::math::distance::Metric;
use crate::math::prefetch;
use crate::math::rng::splitmix64;
use crate::math::topk::{Scored, TopK};
use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

/// Graph settings (API: collection-level defaults in the server config).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HnswParams {
    /// Links per node on the upper levels (twice this on level 0).
    pub m: usize,
    /// Beam width while inserting.
    pub ef_construction: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams { m: 16, ef_construction: 100 }
    }
}

/// A node and its distance to the point being looked for.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Near {
    d: f32,
    n: u32,
}

impl Eq for Near {}
impl PartialOrd for Near {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Near {
    fn cmp(&self, o: &Self) -> Ordering {
        self.d.total_cmp(&o.d).then(self.n.cmp(&o.n))
    }
}

/// Which nodes a search has seen: one bit per node, cleared per search.
/// (A generation word per node avoided the clearing but cost a cache miss
/// per neighbour: 100 KB of marks for 25k nodes against 3 KB of bits.)
#[derive(Clone, Default)]
struct Visited {
    bits: Vec<u64>,
}

impl Visited {
    fn start(&mut self, n: usize) {
        let words = n.div_ceil(64);
        self.bits.clear();
        self.bits.resize(words, 0);
    }

    /// `true` the first time `n` is seen.
    #[inline]
    fn first(&mut self, n: u32) -> bool {
        let (w, b) = ((n / 64) as usize, 1u64 << (n % 64));
        let word = &mut self.bits[w];
        let new = *word & b == 0;
        *word |= b;
        new
    }
}

/// `Hnsw::upper_at` of a node with no links above level 0.
const NO_UPPER: u32 = u32::MAX;

/// One cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Bytes stored from a cache-line boundary, so a 192-byte code (384
/// dimensions at 4 bits) spans three lines, not four. (A large `Vec<u8>`
/// from glibc's allocator starts 16 bytes past a page boundary.)
#[derive(Clone, Default)]
struct LineBytes {
    lines: Vec<Line>,
    len: usize,
}

impl LineBytes {
    fn as_slice(&self) -> &[u8] {
        // SAFETY: `lines` holds at least `len` initialised bytes (Line is
        // plain bytes with no padding).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const u8, self.len) }
    }

    fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        self.lines.resize(end.div_ceil(64), Line([0; 64]));
        // SAFETY: as in `as_slice`, now with room for `end` bytes.
        let all = unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut u8, end) };
        all[self.len..].copy_from_slice(bytes);
        self.len = end;
    }

    fn capacity(&self) -> usize {
        self.lines.capacity() * 64
    }
}

/// How a walk scores nodes: the distance to node `n`, and a hint to load
/// what that will read ahead of time.
pub trait Scorer {
    fn dist(&self, n: u32) -> f32;
    /// `whole`: everything `dist(n)` reads; otherwise its first cache line.
    fn prefetch(&self, n: u32, whole: bool);
}

/// Full-precision scoring of the candidates a walk re-ranks.
pub trait Exact {
    /// The exact key of the point with graph key `key` (`None`: gone).
    fn exact(&self, key: u64) -> Option<f32>;
    /// The exact keys of `keys`, in order. The partition's implementation
    /// starts loading every row before scoring the first (the rows are
    /// mostly out of cache).
    fn exact_all(&self, keys: &[u64]) -> Vec<Option<f32>> {
        keys.iter().map(|&k| self.exact(k)).collect()
    }
}

impl<F: Fn(u64) -> Option<f32>> Exact for F {
    fn exact(&self, key: u64) -> Option<f32> {
        self(key)
    }
}

/// Scoring by the graph's own codes.
struct Codes<'a> {
    g: &'a Hnsw,
    prep: &'a Prepared,
}

impl Scorer for Codes<'_> {
    #[inline]
    fn dist(&self, n: u32) -> f32 {
        self.prep.key(self.g.code(n), self.g.norms[n as usize])
    }

    #[inline]
    fn prefetch(&self, n: u32, whole: bool) {
        self.g.prefetch_code(n, whole);
        if !whole {
            prefetch(std::slice::from_ref(&self.g.norms[n as usize]));
        }
    }
}

/// Squared l2 by the integer kernel (construction, and l2 searches).
struct L2Scorer<'a> {
    g: &'a Hnsw,
    q: &'a L2Codes,
}

impl Scorer for L2Scorer<'_> {
    #[inline]
    fn dist(&self, n: u32) -> f32 {
        self.q.key(self.g.code(n), self.g.sqs[n as usize])
    }

    #[inline]
    fn prefetch(&self, n: u32, whole: bool) {
        self.g.prefetch_code(n, whole);
        if !whole {
            prefetch(std::slice::from_ref(&self.g.sqs[n as usize]));
        }
    }
}

/// One search through the graph.
pub struct HnswQuery<'a> {
    pub query: &'a [f32],
    pub metric: Metric,
    pub k: usize,
    /// Beam width (at least `k` is used).
    pub ef: usize,
}

#[derive(Clone)]
pub struct Hnsw {
    /// Bytes per code (`Sq8::code_len`).
    code_len: usize,
    params: HnswParams,
    m0: usize,
    sq: Sq8,
    codes: LineBytes,
    norms: Vec<f32>,
    /// Per node `Sq8::code_sq` of its code (integer l2).
    sqs: Vec<f32>,
    keys: Vec<u64>,
    node_of: HashMap<u64, u32>,
    /// Level-0 links, `m0` slots per node, `len0` of them used.
    links0: Vec<u32>,
    len0: Vec<u8>,
    /// Per node, its row in `upper` ([`NO_UPPER`]: level 0 only, as for
    /// all but about one node in `m`).
    upper_at: Vec<u32>,
    /// Links on levels 1.. of the nodes that have them:
    /// `upper[upper_at[node]][level - 1]`.
    upper: Vec<Vec<Vec<u32>>>,
    deleted: Vec<bool>,
    tombstones: usize,
    entry: u32,
    max_level: usize,
    rng: u64,
    visited: RefCell<Visited>,
}

impl Hnsw {
    /// An empty graph whose codes use the quantizer `sq`.
    pub fn new(dim: usize, params: HnswParams, sq: Sq8, seed: u64) -> Hnsw {
        assert!(params.m >= 2 && params.m <= 64, "m out of range");
        assert_eq!(sq.dim(), dim, "the quantizer was fitted to another dimension");
        Hnsw {
            code_len: sq.code_len(),
            params,
            m0: 2 * params.m,
            sq,
            codes: LineBytes::default(),
            norms: Vec::new(),
            sqs: Vec::new(),
            keys: Vec::new(),
            node_of: HashMap::new(),
            links0: Vec::new(),
            len0: Vec::new(),
            upper_at: Vec::new(),
            upper: Vec::new(),
            deleted: Vec::new(),
            tombstones: 0,
            entry: 0,
            max_level: 0,
            rng: seed | 1,
            visited: RefCell::new(Visited::default()),
        }
    }

    /// Nodes, tombstoned ones included.
    pub fn nodes(&self) -> usize {
        self.keys.len()
    }

    /// Nodes that still answer.
    pub fn live(&self) -> usize {
        self.keys.len() - self.tombstones
    }

    pub fn tombstones(&self) -> usize {
        self.tombstones
    }

    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Bytes of the graph (codes, links, keys, norms, code terms, the key map).
    pub fn mem_bytes(&self) -> usize {
        let upper: usize = self.upper_at.capacity() * 4
            + self.upper.iter().map(|l| 24 + l.iter().map(|v| 24 + v.capacity() * 4).sum::<usize>()).sum::<usize>();
        self.codes.capacity()
            + self.norms.capacity() * 4
            + self.sqs.capacity() * 4
            + self.keys.capacity() * 8
            + self.node_of.capacity() * 16
            + self.links0.capacity() * 4
            + self.len0.capacity()
            + self.deleted.capacity()
            + upper
            + self.sq.mem_bytes()
    }

    #[inline]
    fn code(&self, n: u32) -> &[u8] {
        &self.codes.as_slice()[n as usize * self.code_len..][..self.code_len]
    }

    /// Start loading node `n`'s code (`whole`: every line, else the first).
    #[inline]
    fn prefetch_code(&self, n: u32, whole: bool) {
        let code = self.code(n);
        prefetch(if whole { code } else { &code[..code.len().min(1)] });
    }

    #[inline]
    fn links(&self, n: u32, level: usize) -> &[u32] {
        if level == 0 {
            let b = n as usize * self.m0;
            &self.links0[b..b + self.len0[n as usize] as usize]
        } else {
            &self.upper[self.upper_at[n as usize] as usize][level - 1]
        }
    }

    fn set_links(&mut self, n: u32, level: usize, to: &[u32]) {
        if level == 0 {
            let b = n as usize * self.m0;
            self.links0[b..b + to.len()].copy_from_slice(to);
            self.len0[n as usize] = to.len() as u8;
        } else {
            let l = &mut self.upper[self.upper_at[n as usize] as usize][level - 1];
            l.clear();
            l.extend_from_slice(to);
        }
    }

    fn random_level(&mut self) -> usize {
        // splitmix64 -> uniform (0, 1]; level = floor(-ln(u) / ln(m)).
        let z = splitmix64(&mut self.rng);
        let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-u.ln() / (self.params.m as f64).ln()) as usize).min(16)
    }

    /// Room for `n` nodes in all (a build knows its size; growing by
    /// doubling would leave up to half of each array unused).
    pub fn reserve(&mut self, n: usize) {
        let more = n.saturating_sub(self.keys.len());
        let lines = (n * self.code_len).div_ceil(64);
        self.codes.lines.reserve_exact(lines.saturating_sub(self.codes.lines.len()));
        self.norms.reserve_exact(more);
        self.sqs.reserve_exact(more);
        self.keys.reserve_exact(more);
        self.links0.reserve_exact(more * self.m0);
        self.len0.reserve_exact(more);
        self.upper_at.reserve_exact(more);
        self.deleted.reserve_exact(more);
    }

    /// Tombstone the node of `key`, if any: it keeps routing, never answers.
    pub fn remove(&mut self, key: u64) {
        if let Some(n) = self.node_of.remove(&key) {
            if !self.deleted[n as usize] {
                self.deleted[n as usize] = true;
                self.tombstones += 1;
            }
        }
    }

    /// Whether `key` has a live node.
    pub fn contains(&self, key: u64) -> bool {
        self.node_of.contains_key(&key)
    }

    /// Add a point (a key already in the graph is tombstoned first).
    pub fn insert(&mut self, key: u64, x: &[f32], norm: f32) {
        self.remove(key);
        let node = self.keys.len() as u32;
        if self.keys.len() == self.keys.capacity() {
            // Grow by an eighth, not double: the slack of a grown array
            // can sit on pages the allocator already had resident.
            self.reserve(self.keys.len() + self.keys.len() / 8 + 64);
        }
        let level = self.random_level();
        let mut code = Vec::with_capacity(self.code_len);
        self.sq.encode(x, &mut code);
        self.codes.extend_from_slice(&code);
        self.norms.push(norm);
        self.sqs.push(self.sq.code_sq(self.code(node)));
        self.keys.push(key);
        self.node_of.insert(key, node);
        self.links0.resize(self.links0.len() + self.m0, 0);
        self.len0.push(0);
        if level == 0 {
            self.upper_at.push(NO_UPPER);
        } else {
            self.upper_at.push(self.upper.len() as u32);
            self.upper.push(vec![Vec::new(); level]);
        }
        self.deleted.push(false);
        if node == 0 {
            self.entry = 0;
            self.max_level = level;
            return;
        }
        // Look for neighbours by l2 from the point's own vector to the codes.
        let q = self.sq.l2_query(x);
        let sc = L2Scorer { g: self, q: &q };
        let mut cur = Near { d: sc.dist(self.entry), n: self.entry };
        for l in (level + 1..=self.max_level).rev() {
            cur = self.greedy(&sc, cur, l);
        }
        let mut chosen: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut entry = vec![cur];
        for l in (0..=level.min(self.max_level)).rev() {
            let found = self.beam(&sc, &entry, self.params.ef_construction, l, |_| true);
            let found = found.into_sorted_vec();
            chosen.push((l, self.select(&found, self.params.m)));
            entry = found;
        }
        for (l, to) in chosen {
            self.set_links(node, l, &to);
            for nb in to {
                self.link(nb, node, l);
            }
        }
        if level > self.max_level {
            self.entry = node;
            self.max_level = level;
        }
    }

    /// Add the link `from -> to` on `level`; a full list keeps the best by
    /// the selection heuristic.
    fn link(&mut self, from: u32, to: u32, level: usize) {
        let cap = if level == 0 { self.m0 } else { self.params.m };
        let cur = self.links(from, level);
        if cur.len() < cap {
            let mut next = cur.to_vec();
            next.push(to);
            self.set_links(from, level, &next);
            return;
        }
        let fq = self.sq.l2_code(self.code(from), self.sqs[from as usize]);
        let mut cands: Vec<Near> =
            cur.iter().chain([&to]).map(|&n| Near { d: fq.key(self.code(n), self.sqs[n as usize]), n }).collect();
        cands.sort();
        let keep = self.select(&cands, cap);
        self.set_links(from, level, &keep);
    }

    /// HNSW's neighbour heuristic over `cands` (nearest first): keep a
    /// candidate only if it is nearer to the point than to every one kept,
    /// so links spread in different directions.
    fn select(&self, cands: &[Near], m: usize) -> Vec<u32> {
        // Each kept node is prepared once to score the candidates after it.
        let mut out: Vec<(u32, L2Codes)> = Vec::with_capacity(m);
        for c in cands {
            if out.len() >= m {
                break;
            }
            let (cc, csq) = (self.code(c.n), self.sqs[c.n as usize]);
            if out.iter().all(|(_, o)| o.key(cc, csq) > c.d) {
                out.push((c.n, self.sq.l2_code(cc, csq)));
            }
        }
        out.into_iter().map(|(n, _)| n).collect()
    }

    /// Greedy walk on one level to the node nearest by `dist`.
    fn greedy(&self, sc: &impl Scorer, mut cur: Near, level: usize) -> Near {
        loop {
            let mut moved = false;
            for &nb in self.links(cur.n, level) {
                let d = sc.dist(nb);
                if d < cur.d {
                    cur = Near { d, n: nb };
                    moved = true;
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    /// Beam search on one level: up to `ef` nearest nodes that `accept`
    /// admits (every node routes, admitted or not).
    fn beam(
        &self,
        sc: &impl Scorer,
        entry: &[Near],
        ef: usize,
        level: usize,
        mut accept: impl FnMut(u32) -> bool,
    ) -> BinaryHeap<Near> {
        let mut visited = self.visited.borrow_mut();
        visited.start(self.keys.len());
        let mut cand: BinaryHeap<Reverse<Near>> = BinaryHeap::with_capacity(ef * 2);
        let mut res: BinaryHeap<Near> = BinaryHeap::with_capacity(ef + 1);
        for &e in entry {
            if visited.first(e.n) {
                cand.push(Reverse(e));
                if accept(e.n) {
                    res.push(e);
                }
            }
        }
        while res.len() > ef {
            res.pop();
        }
        let bound = |res: &BinaryHeap<Near>| {
            if res.len() >= ef {
                res.peek().map_or(f32::INFINITY, |w| w.d)
            } else {
                f32::INFINITY
            }
        };
        while let Some(Reverse(c)) = cand.pop() {
            if c.d > bound(&res) {
                break;
            }
            // The next candidate's link list is likely the next one read.
            if let (Some(Reverse(next)), 0) = (cand.peek(), level) {
                let b = next.n as usize * self.m0;
                prefetch(&self.links0[b..b + self.m0]);
                prefetch(std::slice::from_ref(&self.len0[next.n as usize]));
            }
            let links = self.links(c.n, level);
            // The first line of every neighbour's code now, the whole code
            // of the next neighbour while scoring this one.
            for &nb in links {
                sc.prefetch(nb, false);
            }
            for (j, &nb) in links.iter().enumerate() {
                if let Some(&next) = links.get(j + 1) {
                    sc.prefetch(next, true);
                }
                if !visited.first(nb) {
                    continue;
                }
                let d = sc.dist(nb);
                if d < bound(&res) {
                    cand.push(Reverse(Near { d, n: nb }));
                    if accept(nb) {
                        res.push(Near { d, n: nb });
                        if res.len() > ef {
                            res.pop();
                        }
                    }
                }
            }
        }
        res
    }

    /// Approximate top-k over the codes, re-ranked by `exact` (`None`: the
    /// point is gone); `accept` filters by key. Keys are "lower is better".
    pub fn search(&self, q: &HnswQuery, accept: impl FnMut(u64) -> bool, exact: impl Exact) -> Vec<Scored> {
        if q.metric == Metric::L2 {
            let l2 = self.sq.l2_query(q.query);
            return self.search_by(&L2Scorer { g: self, q: &l2 }, q.k, q.ef, accept, exact);
        }
        let prep = self.sq.prepare(q.query, q.metric);
        self.search_by(&Codes { g: self, prep: &prep }, q.k, q.ef, accept, exact)
    }

    /// [`Hnsw::search`] with a caller's scoring of nodes (benchmarks compare
    /// float traversal with it).
    pub fn search_by(
        &self,
        sc: &impl Scorer,
        k: usize,
        ef: usize,
        mut accept: impl FnMut(u64) -> bool,
        exact: impl Exact,
    ) -> Vec<Scored> {
        if self.keys.is_empty() || k == 0 {
            return Vec::new();
        }
        let mut cur = Near { d: sc.dist(self.entry), n: self.entry };
        for l in (1..=self.max_level).rev() {
            cur = self.greedy(sc, cur, l);
        }
        let found = self.beam(sc, &[cur], ef.max(k), 0, |n| !self.deleted[n as usize] && accept(self.keys[n as usize]));
        // Re-rank the best of the beam by the full vectors: twice k (at
        // least 20) is where the codes' order stops hiding true neighbours
        // on the data measured (the calibration measures it either way). A
        // beam as wide as the graph is an exhaustive search: all of it.
        let mut found = found.into_sorted_vec();
        if ef < self.live() {
            found.truncate((2 * k).max(20));
        }
        let keys: Vec<u64> = found.iter().map(|c| self.keys[c.n as usize]).collect();
        let mut top = TopK::new(k);
        for (key, e) in keys.iter().zip(exact.exact_all(&keys)) {
            if let Some(e) = e {
                top.push(Scored { key: e, id: *key });
            }
        }
        top.into_sorted()
    }

    /// The key of node `n`.
    #[inline]
    pub fn key_of(&self, n: u32) -> u64 {
        self.keys[n as usize]
    }

    /// Keys of the live nodes.
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.iter().zip(&self.deleted).filter(|(_, &d)| !d).map(|(&k, _)| k)
    }

    /// Map every key through `f` (build rows to point ids).
    pub fn rekey(&mut self, f: impl Fn(u64) -> u64) {
        self.keys.iter_mut().for_each(|k| *k = f(*k));
        self.node_of = self
            .keys
            .iter()
            .zip(&self.deleted)
            .enumerate()
            .filter(|(_, (_, &d))| !d)
            .map(|(n, (&k, _))| (k, n as u32))
            .collect();
    }
}

/// Bits per dimension of a graph's codes: 4 from 128 dimensions (half the
/// bytes to fetch per visited node, at the same recall per `ef` on the
/// data measured), 8 below (fewer dimensions average out less of the
/// coarser rounding, and their codes are small anyway).
pub fn code_bits(dim: usize) -> u32 {
    if dim >= 128 {
        4
    } else {
        8
    }
}

#[cfg(test)]
mod tests;
