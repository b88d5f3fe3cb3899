//! Deleting a point from the graph: marking its node deleted, repairing
//! the graph around it (at once with [`Hnsw::remove`], or later, in the
//! indexer's paced steps, after [`Hnsw::tombstone`]), handing the entry
//! point over, and reusing the freed slot for a later insert. See the
//! parent module's doc for the rules.

use super::{Hnsw, Near, NO_UPPER};
use crate::index::sq8::L2Codes;

impl Hnsw {
    /// Delete the node of `key`, if any: it never answers again. With
    /// repair on, the graph is repaired around it at once (about as much
    /// work as an insert) and its slot becomes free; without, it is a
    /// tombstone that keeps routing.
    pub fn remove(&mut self, key: u64) {
        if let Some(n) = self.mark_deleted(key) {
            if self.repair {
                self.repair_node(n);
            }
        }
    }

    /// Delete the node of `key`, if any, at once (it never answers again),
    /// and leave its repair to [`Hnsw::repair_next`]: a write marks, the
    /// background does the work. Until then it routes as a tombstone.
    pub fn tombstone(&mut self, key: u64) {
        if let Some(n) = self.mark_deleted(key) {
            if self.repair {
                self.unrepaired.push(n);
                self.queued[n as usize] = true;
            }
        }
    }

    /// Repair around one deleted node [`Hnsw::tombstone`] left; `false`
    /// when none waits.
    pub fn repair_next(&mut self) -> bool {
        let Some(n) = self.unrepaired.pop() else { return false };
        self.queued[n as usize] = false;
        self.repair_node(n);
        true
    }

    fn mark_deleted(&mut self, key: u64) -> Option<u32> {
        let n = self.node_of.remove(&key)?;
        if self.deleted[n as usize] {
            return None;
        }
        self.deleted[n as usize] = true;
        self.tombstones += 1;
        Some(n)
    }

    /// Repair around the deleted node `n`, hand the entry over if it was
    /// the entry, and free its slot.
    fn repair_node(&mut self, n: u32) {
        self.repair_around(n);
        if self.entry == n {
            self.hand_over_entry(n);
        }
        let level = self.level_of(n);
        if self.free.len() <= level {
            self.free.resize(level + 1, Vec::new());
        }
        self.free[level].push(n);
    }

    /// Repair the graph around the deleted node `d`: on every level it has,
    /// each live neighbour that links back to it keeps its other live
    /// links and adds those of `d`'s live links that the build's heuristic
    /// admits beside them ([`Hnsw::fill`]). Each of `d`'s links is prepared
    /// once per level and scores both sides of every comparison (l2 between
    /// codes is symmetric), so a delete costs O(links) preparations and
    /// O(links x links) code distances per neighbour at most. Nodes that
    /// link to `d` without `d` linking to them keep a link to a node that
    /// still routes (its own links are left as they are).
    fn repair_around(&mut self, d: u32) {
        for l in 0..=self.level_of(d) {
            let around: Vec<(u32, L2Codes)> = self
                .links(d, l)
                .iter()
                .filter(|&&c| !self.freed(c))
                .map(|&c| (c, self.sq.l2_code(self.code(c), self.sqs[c as usize])))
                .collect();
            for (n, _) in &around {
                let n = *n;
                if !self.links(n, l).contains(&d) {
                    continue;
                }
                let kept: Vec<u32> = self.links(n, l).iter().copied().filter(|&c| c != d && !self.freed(c)).collect();
                let next = self.fill(n, kept, &around, self.cap(l));
                self.set_links(n, l, &next);
            }
        }
    }

    /// Deleted and repaired (or being repaired): gone from the graph but
    /// for stale links. A node queued for repair still counts as there.
    #[inline]
    pub(super) fn freed(&self, n: u32) -> bool {
        self.deleted[n as usize] && !self.queued[n as usize]
    }

    /// A new entry point for the deleted entry `d`: its first live
    /// neighbour on the highest level that has one. Only when every
    /// neighbour on every level is deleted too, the highest live node by a
    /// scan of the graph; with none live the entry stays (inserts route
    /// through it).
    fn hand_over_entry(&mut self, d: u32) {
        let live = |n: &&u32| !self.deleted[**n as usize];
        let next = (0..=self.level_of(d)).rev().find_map(|l| self.links(d, l).iter().find(live).copied());
        let next = next.or_else(|| {
            (0..self.keys.len() as u32).filter(|n| !self.deleted[*n as usize]).max_by_key(|&n| self.level_of(n))
        });
        if let Some(n) = next {
            self.entry = n;
            self.max_level = self.level_of(n);
        }
    }

    /// `kept` (links of `from` that stay) plus those of `cands` (prepared)
    /// that [`Hnsw::select`]'s heuristic admits beside them, nearest to
    /// `from` first, up to `cap`: a candidate nearer to `from` than to
    /// every link kept so far.
    fn fill(&self, from: u32, mut kept: Vec<u32>, cands: &[(u32, L2Codes)], cap: usize) -> Vec<u32> {
        let dist = |c: &L2Codes, n: u32| c.key(self.code(n), self.sqs[n as usize]);
        let mut near: Vec<(Near, &L2Codes)> = cands
            .iter()
            .filter(|(c, _)| *c != from && !kept.contains(c))
            .map(|(c, p)| (Near { d: dist(p, from), n: *c }, p))
            .collect();
        near.sort_by_key(|(c, _)| *c);
        for (c, p) in near {
            if kept.len() >= cap {
                break;
            }
            if kept.iter().all(|&o| dist(p, o) > c.d) {
                kept.push(c.n);
            }
        }
        kept
    }

    /// A free slot for a node of `level`: one whose own level is at most
    /// that (links on any of its old levels stay valid), its own level
    /// first.
    pub(super) fn take_free(&mut self, level: usize) -> Option<u32> {
        let top = level.min(self.free.len().checked_sub(1)?);
        (0..=top).rev().find_map(|l| self.free[l].pop())
    }

    /// Put point `key` into the free slot `s` at `level` (not below the
    /// slot's): the code, norm, key, an empty list on every level.
    pub(super) fn reuse(&mut self, s: u32, key: u64, code: &[u8], norm: f32, level: usize) {
        let i = s as usize;
        self.codes[i * self.code_len..][..self.code_len].copy_from_slice(code);
        self.norms[i] = norm;
        self.sqs[i] = self.sq.code_sq(self.code(s));
        self.keys[i] = key;
        self.node_of.insert(key, s, &self.keys);
        self.len0[i] = 0;
        if level > 0 {
            if self.upper_at[i] == NO_UPPER {
                self.upper_at[i] = self.upper.len() as u32;
                self.upper.push(Vec::new());
            }
            let row = &mut self.upper[self.upper_at[i] as usize];
            row.iter_mut().for_each(Vec::clear);
            row.resize(level, Vec::new());
        }
        debug_assert_eq!(self.level_of(s), level);
        self.deleted[i] = false;
        self.tombstones -= 1;
    }
}
