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
    /// Only candidates ranked before this one enter.
    bound: Option<Scored>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        Self::bounded(k, None)
    }

    /// A `TopK` that only takes candidates ranked before `bound`: the k-th
    /// best found elsewhere (an exact scan's earlier pieces), which no
    /// candidate behind it could displace from the merged answer.
    pub fn bounded(k: usize, bound: Option<Scored>) -> Self {
        TopK { k, heap: BinaryHeap::with_capacity(k.min(4096) + 1), bound }
    }

    /// The key a candidate must beat (or tie, with a lower id) to enter.
    #[inline]
    pub fn threshold(&self) -> f32 {
        let own =
            if self.heap.len() < self.k { f32::INFINITY } else { self.heap.peek().map_or(f32::INFINITY, |w| w.0.key) };
        self.bound.map_or(own, |b| own.min(b.key))
    }

    #[inline]
    pub fn push(&mut self, s: Scored) {
        if self.k == 0 || !s.key.is_finite() || self.bound.is_some_and(|b| s.rank_cmp(&b) != Ordering::Less) {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Worst(s));
        } else if let Some(mut top) = self.heap.peek_mut() {
            if s.rank_cmp(&top.0) == Ordering::Less {
                *top = Worst(s);
            }
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
    let mut all = sorted(parts);
    all.truncate(k);
    all
}

/// Every entry of `parts`, in the one order.
fn sorted<T: Ranked, I: IntoIterator<Item = Vec<T>>>(parts: I) -> Vec<T> {
    let mut all: Vec<T> = parts.into_iter().flatten().collect();
    all.sort_by(|a, b| a.rank().rank_cmp(&b.rank()));
    all
}

/// [`merge`] for lists that can meet a point twice, keeping its best
/// entry: the pieces of one partition's exact scan, when a delete moved
/// a row down into a slot not yet scanned (`Partition::search_piece`).
pub fn merge_distinct<T: Ranked, I: IntoIterator<Item = Vec<T>>>(parts: I, k: usize) -> Vec<T> {
    let all = sorted(parts);
    let mut seen = std::collections::HashSet::with_capacity(k.min(all.len()));
    let mut out = Vec::with_capacity(k.min(all.len()));
    for item in all {
        if out.len() == k {
            break;
        }
        if seen.insert(item.rank().id) {
            out.push(item);
        }
    }
    out
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
        /// A point met twice (a moved row scanned by two pieces, maybe
        /// changed in between) is kept once, at its better entry, and the
        /// rest is the brute-force answer over distinct points.
        #[test]
        fn merge_distinct_keeps_a_point_met_twice_once(
            keys in prop::collection::vec(0u8..20, 1..200),
            again in prop::collection::vec((0usize..200, 0u8..20), 0..30),
            k in 0usize..40,
        ) {
            let first: Vec<Scored> = keys.iter().enumerate().map(|(i, &key)| Scored { key: key as f32, id: i as u64 }).collect();
            let repeats: Vec<Scored> = again.iter().map(|&(i, key)| Scored { key: key as f32, id: (i % keys.len()) as u64 }).collect();
            let merged = merge_distinct([first.clone(), repeats.clone()], k);
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
