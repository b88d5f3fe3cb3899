//! Walking the graph: the greedy descent through the upper levels and the
//! beam search on one level (both shared by inserts and searches), and
//! the top-k searches with their re-ranking.

use super::*;

impl Hnsw {
    /// Greedy walk on one level to the node nearest by `dist`.
    pub(super) fn greedy(&self, sc: &impl Scorer, mut cur: Near, level: usize) -> Near {
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
    pub(super) fn beam(
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
}
