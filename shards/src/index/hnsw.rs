//! HNSW graph index of one partition (Malkov & Yashunin), traversed over
//! 8-bit scalar-quantized codes ([`crate::index::sq8`]) and re-ranked with the
//! full-precision vectors the caller holds.
//!
//! Nodes are numbered in insertion order and carry a key (a row of the
//! build's copy while building, a point id once installed). The graph is
//! built with squared l2 between codes (the distance HNSW's guarantees are
//! about); searches score with the query's own metric, and the calibration
//! measures what that gives per metric. Inserts after the build extend the
//! graph one point at a time.
//!
//! Deleting (or replacing) a point repairs the graph in place
//! ([`Hnsw::remove`] at once; [`Hnsw::tombstone`], then
//! [`Hnsw::repair_next`] from background steps): its node stops answering
//! at once; each live neighbour that linked to it keeps its other links
//! and adds those of the deleted node's links that the build's heuristic
//! admits beside them; a deleted entry point hands over to a live
//! neighbour. The node's slot is then free: its own links stay (nodes the
//! repair did not reach may still link to it and route through it) until
//! an insert takes the slot over. Nodes queued for repair count as present
//! for other repairs, so a batch repairs as if deleted one by one. An insert takes a free slot of a level
//! no higher than its own (a stale link on level `l` to the slot must find
//! the slot on level `l`), so updates and delete + insert churn do not
//! grow the graph. [`Hnsw::set_repair`] turns this off (tombstones only:
//! deleted nodes keep routing, inserts append), for comparison.

mod build;
mod repair;
mod search;
mod side;
pub use build::{GraphBuilder, EF_LADDER, FILTER_SHARES};
pub use side::{side_rerank, SideCodes};

/// A change of every node's key in progress ([`Hnsw::rekey_step`]).
pub struct Rekeying {
    next: usize,
    node_of: IdIndex,
}

use crate::index::sq8::{L2Codes, Prepared, Sq8};
use crate::math::distance::Metric;
use crate::math::id_index::IdIndex;
use crate::math::prefetch;
use crate::math::rng::splitmix64;
use crate::math::topk::{Scored, TopK};
use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

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

/// Codes stored from a cache-line boundary, so a 192-byte code (384
/// dimensions at 4 bits) spans three lines, not four. (A large `Vec<u8>`
/// from glibc's allocator starts 16 bytes past a page boundary.)
type LineBytes = crate::math::aligned::Aligned<u8>;

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
    /// Key -> node (grown without a pause, see `math::id_index`).
    node_of: IdIndex,
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
    /// Deleted nodes (repaired or not).
    tombstones: usize,
    /// Repair on delete and reuse of deleted slots (see the module doc).
    repair: bool,
    /// Deleted, repaired slots an insert may take, by the slot's level.
    free: Vec<Vec<u32>>,
    /// Deleted nodes whose repair waits ([`Hnsw::tombstone`]).
    unrepaired: Vec<u32>,
    /// Per node, whether it waits in `unrepaired`: repairs treat such a
    /// node as still there (its own repair will pass its links on), as if
    /// the deletes had been repaired one by one in order.
    queued: Vec<bool>,
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
            node_of: IdIndex::default(),
            links0: Vec::new(),
            len0: Vec::new(),
            upper_at: Vec::new(),
            upper: Vec::new(),
            deleted: Vec::new(),
            tombstones: 0,
            repair: true,
            free: Vec::new(),
            unrepaired: Vec::new(),
            queued: Vec::new(),
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

    /// Deleted nodes, free slots included.
    pub fn tombstones(&self) -> usize {
        self.tombstones
    }

    /// Deleted slots waiting for an insert to take them over.
    pub fn free_slots(&self) -> usize {
        self.free.iter().map(Vec::len).sum()
    }

    /// Deleted nodes whose repair waits for [`Hnsw::repair_next`].
    pub fn unrepaired(&self) -> usize {
        self.unrepaired.len()
    }

    /// Repair on delete and reuse freed slots (the default), or only
    /// tombstone deleted nodes and append every insert (for comparison;
    /// set it before the first delete).
    pub fn set_repair(&mut self, on: bool) {
        self.repair = on;
    }

    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Bytes per code.
    pub fn code_len(&self) -> usize {
        self.code_len
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
            + self.free.iter().map(|f| 24 + f.capacity() * 4).sum::<usize>()
            + self.unrepaired.capacity() * 4
            + self.queued.capacity()
            + upper
            + self.sq.mem_bytes()
    }

    #[inline]
    fn code(&self, n: u32) -> &[u8] {
        &self.codes[n as usize * self.code_len..][..self.code_len]
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

    /// The highest level node `n` has links on.
    #[inline]
    fn level_of(&self, n: u32) -> usize {
        match self.upper_at[n as usize] {
            NO_UPPER => 0,
            row => self.upper[row as usize].len(),
        }
    }

    /// Links a list on `level` may hold.
    fn cap(&self, level: usize) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.params.m
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
        self.codes.reserve_exact((n * self.code_len).saturating_sub(self.codes.len()));
        self.norms.reserve_exact(more);
        self.sqs.reserve_exact(more);
        self.keys.reserve_exact(more);
        self.node_of.presize(n);
        self.links0.reserve_exact(more * self.m0);
        self.len0.reserve_exact(more);
        self.upper_at.reserve_exact(more);
        self.deleted.reserve_exact(more);
        self.queued.reserve_exact(more);
    }

    /// The list of `from` chosen among `cands` by [`Hnsw::select`], by l2
    /// between codes.
    fn reselect(&self, from: u32, cands: &[u32], cap: usize) -> Vec<u32> {
        let fq = self.sq.l2_code(self.code(from), self.sqs[from as usize]);
        let mut near: Vec<Near> =
            cands.iter().map(|&n| Near { d: fq.key(self.code(n), self.sqs[n as usize]), n }).collect();
        near.sort();
        self.select(&near, cap)
    }

    /// Whether `key` has a live node.
    pub fn contains(&self, key: u64) -> bool {
        self.node_of.contains_key(&key)
    }

    /// Add a point (a key already in the graph is tombstoned first).
    pub fn insert(&mut self, key: u64, x: &[f32], norm: f32) {
        self.remove(key);
        let level = self.random_level();
        let mut code = Vec::with_capacity(self.code_len);
        self.sq.encode(x, &mut code);
        let free = if self.repair { self.take_free(level) } else { None };
        let node = match free {
            Some(s) => {
                self.reuse(s, key, &code, norm, level);
                s
            }
            None => self.append(key, &code, norm, level),
        };
        // The first live node (repair: the graph may hold only free slots).
        let alone = if self.repair { self.live() == 1 } else { node == 0 };
        if alone {
            self.entry = node;
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
        // With repair, links go to live nodes only, never to the node's own
        // (reused) slot, which stale links may reach.
        let repair = self.repair;
        for l in (0..=level.min(self.max_level)).rev() {
            let found = self.beam(&sc, &entry, self.params.ef_construction, l, |n| {
                !repair || (n != node && !self.deleted[n as usize])
            });
            let found = found.into_sorted_vec();
            chosen.push((l, self.select(&found, self.params.m)));
            if !found.is_empty() {
                entry = found;
            }
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

    /// Node `node` appended at `level` (a new slot).
    fn append(&mut self, key: u64, code: &[u8], norm: f32, level: usize) -> u32 {
        let node = self.keys.len() as u32;
        if self.keys.len() == self.keys.capacity() {
            // Grow by an eighth, not double: the slack of a grown array
            // can sit on pages the allocator already had resident.
            self.reserve(self.keys.len() + self.keys.len() / 8 + 64);
        }
        self.codes.extend_from_slice(code);
        self.norms.push(norm);
        self.sqs.push(self.sq.code_sq(self.code(node)));
        self.keys.push(key);
        self.node_of.insert(key, node, &self.keys);
        self.links0.resize(self.links0.len() + self.m0, 0);
        self.len0.push(0);
        if level == 0 {
            self.upper_at.push(NO_UPPER);
        } else {
            self.upper_at.push(self.upper.len() as u32);
            self.upper.push(vec![Vec::new(); level]);
        }
        self.deleted.push(false);
        self.queued.push(false);
        node
    }

    /// Add the link `from -> to` on `level`; a full list keeps the best by
    /// the selection heuristic (with repair, deleted nodes drop out).
    fn link(&mut self, from: u32, to: u32, level: usize) {
        let cap = self.cap(level);
        let cur = self.links(from, level);
        if cur.contains(&to) {
            // A stale link to a reused slot already names the node.
            return;
        }
        if cur.len() < cap {
            let mut next = cur.to_vec();
            next.push(to);
            self.set_links(from, level, &next);
            return;
        }
        let cands: Vec<u32> = cur.iter().chain([&to]).copied().filter(|&n| !self.repair || !self.freed(n)).collect();
        let keep = self.reselect(from, &cands, cap);
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
        let mut r = self.rekeying();
        while !self.rekey_step(&mut r, &f, std::time::Duration::MAX) {}
    }

    /// Start changing every node's key ([`Hnsw::rekey_step`]).
    pub fn rekeying(&self) -> Rekeying {
        // A quarter to spare: the points written during the build go in next.
        let room = self.live() + self.live() / 4;
        Rekeying { next: 0, node_of: IdIndex::with_capacity(room) }
    }

    /// Map the keys of the nodes from where `r` stands by `f`, for about
    /// `budget` (the new map is built beside the old one: the graph keeps
    /// its old keys meanwhile); once every node is mapped the new keys
    /// take over, and `true`. A graph build keys its nodes by row while it
    /// builds and by point id once done: a map of 755,000 ids in one go
    /// was a stall of the shard installing it.
    pub fn rekey_step(&mut self, r: &mut Rekeying, f: impl Fn(u64) -> u64, budget: std::time::Duration) -> bool {
        let t0 = std::time::Instant::now();
        while r.next < self.keys.len() {
            let end = (r.next + 4096).min(self.keys.len());
            for n in (r.next..end).filter(|&n| !self.deleted[n]) {
                // Room for every node: it never grows, so no keys to
                // move by.
                r.node_of.insert(f(self.keys[n]), n as u32, &[]);
            }
            r.next = end;
            if t0.elapsed() >= budget {
                return r.next == self.keys.len() && self.rekey_finish(r, f);
            }
        }
        self.rekey_finish(r, f)
    }

    fn rekey_finish(&mut self, r: &mut Rekeying, f: impl Fn(u64) -> u64) -> bool {
        self.keys.iter_mut().for_each(|k| *k = f(*k));
        self.node_of = std::mem::take(&mut r.node_of);
        true
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
