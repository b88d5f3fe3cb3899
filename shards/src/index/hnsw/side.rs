//! Codes of points kept beside the graph (a partition's pending points):
//! encoded by the graph's own quantizer and scored as its nodes are, so a
//! search can rank thousands of points that wait for the graph by their
//! codes and re-rank only the best by their full vectors.

use super::*;
use std::collections::HashMap;

/// How many of the codes nearest to a query to score exactly for `k`
/// hits: the codes' order hides almost no true neighbour behind that
/// (`cargo bench --bench hnsw_engine -- --pending`).
pub fn side_rerank(k: usize) -> usize {
    (4 * k).max(64)
}

/// Codes of points outside the graph, one per key, tied to the graph
/// whose quantizer encoded them ([`Hnsw::side_insert`]).
#[derive(Clone, Default)]
pub struct SideCodes {
    codes: Vec<u8>,
    norms: Vec<f32>,
    /// Per code, `Sq8::code_sq` (integer l2).
    sqs: Vec<f32>,
    keys: Vec<u64>,
    /// Key -> position.
    at: HashMap<u64, u32>,
}

impl SideCodes {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, key: u64) -> bool {
        self.at.contains_key(&key)
    }

    /// Drop `key`'s code (the last code takes its place); whether it had one.
    pub fn remove(&mut self, key: u64) -> bool {
        let Some(i) = self.at.remove(&key) else { return false };
        let (i, last) = (i as usize, self.keys.len() - 1);
        let len = self.codes.len() / self.keys.len();
        if i != last {
            self.codes.copy_within(last * len..(last + 1) * len, i * len);
            self.at.insert(self.keys[last], i as u32);
        }
        self.codes.truncate(last * len);
        self.norms.swap_remove(i);
        self.sqs.swap_remove(i);
        self.keys.swap_remove(i);
        if self.keys.is_empty() {
            // The build's burst is over: give its memory back.
            *self = SideCodes::default();
        }
        true
    }

    pub fn mem_bytes(&self) -> usize {
        self.codes.capacity()
            + (self.norms.capacity() + self.sqs.capacity()) * 4
            + self.keys.capacity() * 8
            + self.at.capacity() * 16
    }
}

impl Hnsw {
    /// Add the code of `x` (norm `norm`) under `key` to `side`, replacing
    /// any code `key` had there.
    pub fn side_insert(&self, side: &mut SideCodes, key: u64, x: &[f32], norm: f32) {
        side.remove(key);
        side.at.insert(key, side.keys.len() as u32);
        let start = side.codes.len();
        self.sq.encode(x, &mut side.codes);
        side.sqs.push(self.sq.code_sq(&side.codes[start..]));
        side.norms.push(norm);
        side.keys.push(key);
    }

    /// The keys of the `n` codes of `side` nearest to `query` by `metric`
    /// (the graph's approximate keys), among those `accept` admits.
    pub fn side_nearest(
        &self,
        side: &SideCodes,
        query: &[f32],
        metric: Metric,
        n: usize,
        accept: impl Fn(u64) -> bool,
    ) -> Vec<u64> {
        let len = self.code_len;
        let code = |i: usize| &side.codes[i * len..(i + 1) * len];
        let mut top = TopK::new(n);
        let mut add = |i: usize, key: f32| {
            if key <= top.threshold() && accept(side.keys[i]) {
                top.push(Scored { key, id: side.keys[i] });
            }
        };
        if metric == Metric::L2 {
            let q = self.sq.l2_query(query);
            (0..side.len()).for_each(|i| add(i, q.key(code(i), side.sqs[i])));
        } else {
            let q = self.sq.prepare(query, metric);
            (0..side.len()).for_each(|i| add(i, q.key(code(i), side.norms[i])));
        }
        top.into_sorted().into_iter().map(|s| s.id).collect()
    }
}
