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
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK { k, heap: BinaryHeap::with_capacity(k.min(4096) + 1) }
    }

    /// The key a candidate must beat to enter, once full.
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
/// partitions' hits with this.
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

    #[test]
    fn non_finite_scores_are_skipped() {
        let mut t = TopK::new(3);
        t.push(Scored { key: f32::NAN, id: 1 });
        t.push(Scored { key: f32::INFINITY, id: 2 });
        t.push(Scored { key: 1.0, id: 3 });
        assert_eq!(t.into_sorted(), vec![Scored { key: 1.0, id: 3 }]);
    }
}
