//! Bounded top-k selection and the k-way merge of per-partition results.
//!
//! Scores are normalised to a `key` where lower is better (l2: squared
//! distance; dot and cosine: the negated similarity), and ties break by
//! ascending point id, so every partition and the merge agree on one order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    /// Lower is better.
    pub key: f32,
    pub id: u64,
}

impl Scored {
    /// Total order: better first (lower key, then lower id).
    pub fn rank_cmp(&self, other: &Self) -> Ordering {
        self.key.total_cmp(&other.key).then(self.id.cmp(&other.id))
    }
}

/// Heap entry ordered so the heap's top is the worst kept candidate.
#[derive(Clone, Copy, Debug)]
struct Worst(Scored);

impl PartialEq for Worst {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Worst {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.rank_cmp(&o.0)
    }
}

/// Keeps the `k` best candidates seen so far.
#[derive(Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
    /// A point may arrive twice (see [`TopK::distinct`]).
    distinct: bool,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK { k, heap: BinaryHeap::with_capacity(k.min(4096) + 1), distinct: false }
    }

    /// From now on a point that arrives again keeps its best entry, once:
    /// an exact scan in pieces meets a row twice when a delete moved it
    /// down into a slot not yet scanned (`Partition::search_piece`). Each
    /// push that would enter then looks for its id among the k kept.
    pub fn distinct(&mut self) {
        self.distinct = true;
    }

    /// The key a candidate must beat (or tie, with a lower id) to enter.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::INFINITY
        } else {
            self.heap.peek().map_or(f32::INFINITY, |w| w.0.key)
        }
    }

    #[inline]
    pub fn push(&mut self, s: Scored) {
        if self.k == 0 || !s.key.is_finite() {
            return;
        }
        if self.distinct {
            return self.push_distinct(s);
        }
        if self.heap.len() < self.k {
            self.heap.push(Worst(s));
        } else if let Some(mut top) = self.heap.peek_mut() {
            if s.rank_cmp(&top.0) == Ordering::Less {
                *top = Worst(s);
            }
        }
    }

    /// [`TopK::push`] once [`TopK::distinct`]: a point already kept keeps
    /// the better of its two entries.
    #[cold]
    fn push_distinct(&mut self, s: Scored) {
        let full = self.heap.len() == self.k;
        if full && self.heap.peek().is_some_and(|top| s.rank_cmp(&top.0) != Ordering::Less) {
            return;
        }
        match self.heap.iter().position(|w| w.0.id == s.id) {
            Some(at) => {
                let mut kept = std::mem::take(&mut self.heap).into_vec();
                if s.rank_cmp(&kept[at].0) == Ordering::Less {
                    kept[at] = Worst(s);
                }
                self.heap = kept.into();
            }
            None if full => {
                if let Some(mut top) = self.heap.peek_mut() {
                    *top = Worst(s);
                }
            }
            None => self.heap.push(Worst(s)),
        }
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|w| w.0).collect();
        v.sort_by(Scored::rank_cmp);
        v
    }
}

/// Anything ranked by a [`Scored`]: the merge's item.
pub trait Ranked {
    fn rank(&self) -> Scored;
}

impl Ranked for Scored {
    fn rank(&self) -> Scored {
        *self
    }
}

/// Merge per-partition results (each any order) into the global best `k`,
/// in the one order (lower key, then lower id). The server merges its
/// partitions' hits with this: a point lives in one partition, so no id
/// is met twice.
pub fn merge<T: Ranked, I: IntoIterator<Item = Vec<T>>>(parts: I, k: usize) -> Vec<T> {
    let mut all: Vec<T> = parts.into_iter().flatten().collect();
    all.sort_by(|a, b| a.rank().rank_cmp(&b.rank()));
    all.truncate(k);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn merged_partition_topk_equals_brute_force(
            // Few distinct keys so ties are common.
            keys in prop::collection::vec(0u8..20, 0..300),
            parts in 1usize..5,
            k in 0usize..40,
        ) {
            let all: Vec<Scored> = keys.iter().enumerate().map(|(i, &key)| Scored { key: key as f32, id: i as u64 * 7 % 1000 + i as u64 * 1000 }).collect();
            let mut per_part: Vec<TopK> = (0..parts).map(|_| TopK::new(k)).collect();
            for s in &all {
                per_part[(s.id % parts as u64) as usize].push(*s);
            }
            let merged = merge(per_part.into_iter().map(TopK::into_sorted), k);
            let mut brute = all.clone();
            brute.sort_by(Scored::rank_cmp);
            brute.truncate(k);
            prop_assert_eq!(merged, brute);
        }
    }

    proptest! {
        /// Once distinct, a point pushed again (a moved row scanned by a
        /// second piece, maybe changed in between) is kept once, at its
        /// better entry, and the rest is the brute-force answer over
        /// distinct points.
        #[test]
        fn a_distinct_top_k_keeps_a_point_pushed_twice_once(
            keys in prop::collection::vec(0u8..20, 1..200),
            again in prop::collection::vec((0usize..300, 0u8..20), 0..60),
            k in 0usize..40,
        ) {
            let first: Vec<Scored> = keys.iter().enumerate().map(|(i, &key)| Scored { key: key as f32, id: i as u64 }).collect();
            let repeats: Vec<Scored> = again.iter().map(|&(i, key)| Scored { key: key as f32, id: i as u64 }).collect();
            let mut top = TopK::new(k);
            first.iter().for_each(|s| top.push(*s));
            top.distinct();
            repeats.iter().for_each(|s| top.push(*s));
            let merged = top.into_sorted();
            let mut best: std::collections::BTreeMap<u64, Scored> = std::collections::BTreeMap::new();
            for s in first.iter().chain(&repeats) {
                let e = best.entry(s.id).or_insert(*s);
                if s.rank_cmp(e) == Ordering::Less {
                    *e = *s;
                }
            }
            let mut brute: Vec<Scored> = best.into_values().collect();
            brute.sort_by(Scored::rank_cmp);
            brute.truncate(k);
            prop_assert_eq!(merged, brute);
        }
    }

    #[test]
    fn non_finite_scores_are_skipped() {
        let mut t = TopK::new(3);
        t.push(Scored { key: f32::NAN, id: 1 });
        t.push(Scored { key: f32::INFINITY, id: 2 });
        t.push(Scored { key: 1.0, id: 3 });
        assert_eq!(t.into_sorted(), vec![Scored { key: 1.0, id: 3 }]);
    }
}
