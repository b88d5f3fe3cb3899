//! The exact scan of a partition (`Partition::search`): every row against
//! a batch of queries, in tiles of rows that stay in L1 while each block of
//! 4 queries passes; for a memory-light partition the hot rows, then the
//! rows file read in runs.

use super::{cold, Partition};
use crate::math::aligned::AlignedF32;
use crate::math::distance::{Kernels, Metric, QUERY_BLOCK, ROW_BLOCK};
use crate::math::key::{raw_block, raw_pair};
use crate::math::prefetch;
use crate::math::topk::{Scored, TopK};

/// Rows scored per tile in batch search: 256 rows x 384 dims x 4 B = 384 KiB,
/// which stays in a 2 MiB L2 while every query block passes over it.
const TILE_ROWS: usize = 16;

/// One exact scan of a partition for a batch of prepared queries.
pub(super) struct Scan<'a> {
    pub(super) p: &'a Partition,
    pub(super) kern: &'a Kernels,
    pub(super) metric: Metric,
    pub(super) queries: &'a [&'a [f32]],
    /// Rows that pass the filter (none: every row).
    pub(super) mask: Option<&'a [bool]>,
}

impl Scan<'_> {
    /// Score every row of the partition: the row buffer in place, or for a
    /// memory-light partition its hot rows, then the rows file read
    /// [`cold::SCAN_RUN`] rows at a time.
    #[inline(always)]
    pub(super) fn run(&self, tops: &mut [TopK], key_of: impl Fn(f32, usize) -> f32 + Copy) {
        let p = self.p;
        let Some(c) = &p.cold else {
            return self.run_rows(&p.vectors, |i| i, tops, key_of);
        };
        let hot = c.hot_slots();
        self.run_rows(&p.vectors, |i| hot[i] as usize, tops, key_of);
        let mut buf = AlignedF32::new();
        buf.extend_from_slice(&vec![0.0; cold::SCAN_RUN.min(c.file_rows()) * p.dim]);
        for first in (0..c.file_rows()).step_by(cold::SCAN_RUN) {
            let rows = &mut buf[..(c.file_rows() - first).min(cold::SCAN_RUN) * p.dim];
            c.read_run(first, rows);
            self.run_rows(rows, |i| c.slot_of_file_row(first + i), tops, key_of);
        }
    }

    /// Push every passing row of `rows` into each query's `TopK`, ranked by
    /// `key_of(kernel output, slot)`; row `i` is the point in slot
    /// `slot_at(i)` (`usize::MAX`: no point, skipped).
    #[inline(always)]
    fn run_rows(
        &self,
        rows: &[f32],
        slot_at: impl Fn(usize) -> usize,
        tops: &mut [TopK],
        key_of: impl Fn(f32, usize) -> f32,
    ) {
        let (p, mask, dim) = (self.p, self.mask, self.p.dim);
        let n = rows.len().checked_div(dim).unwrap_or(0);
        let row = |i: usize| &rows[i * dim..(i + 1) * dim];
        let passes = |slot: usize| slot != usize::MAX && mask.is_none_or(|m| m[slot]);
        if self.queries.len() < QUERY_BLOCK {
            let pair = raw_pair(self.kern, self.metric);
            for (q, top) in self.queries.iter().zip(tops.iter_mut()) {
                let mut threshold = top.threshold();
                for i in 0..n {
                    let slot = slot_at(i);
                    if !passes(slot) {
                        continue;
                    }
                    let key = key_of(pair(q, row(i)), slot);
                    // Cheap pre-check; `push` breaks ties by id.
                    if key <= threshold {
                        top.push(Scored { key, id: p.ids[slot] });
                        threshold = top.threshold();
                    }
                }
            }
            return;
        }
        // Tiles of rows stay in cache while every block of queries passes;
        // each kernel call scores QUERY_BLOCK queries x ROW_BLOCK rows.
        let block = raw_block(self.kern, self.metric);
        let n_blocks = self.queries.len().div_ceil(QUERY_BLOCK);
        for tile_start in (0..n).step_by(TILE_ROWS) {
            let tile_end = (tile_start + TILE_ROWS).min(n);
            // The next tile is fetched from memory while this one is scored:
            // an equal share of its lines at each kernel call.
            let next = &rows[tile_end * dim..(tile_end + TILE_ROWS).min(n) * dim];
            let calls = n_blocks * (tile_end - tile_start).div_ceil(ROW_BLOCK);
            let share = next.len().div_ceil(calls).next_multiple_of(16);
            let mut ahead = next.chunks(share.max(16));
            for b in 0..n_blocks {
                let first = b * QUERY_BLOCK;
                let live = (self.queries.len() - first).min(QUERY_BLOCK);
                // A short last block repeats its last query, a short last
                // row group its last row; their scores are dropped.
                let qs: [&[f32]; QUERY_BLOCK] = std::array::from_fn(|i| self.queries[first + i.min(live - 1)]);
                let tops = &mut tops[first..first + live];
                let mut thresholds = [f32::NEG_INFINITY; QUERY_BLOCK];
                for (t, top) in thresholds.iter_mut().zip(tops.iter()) {
                    *t = top.threshold();
                }
                for group in (tile_start..tile_end).step_by(ROW_BLOCK) {
                    let count = (tile_end - group).min(ROW_BLOCK);
                    if mask.is_some() && !(group..group + count).any(|i| passes(slot_at(i))) {
                        continue;
                    }
                    let xs: [&[f32]; ROW_BLOCK] = std::array::from_fn(|r| row(group + r.min(count - 1)));
                    if let Some(lines) = ahead.next() {
                        prefetch(lines);
                    }
                    let raw = block(&qs, &xs);
                    for ((top, threshold), raw) in tops.iter_mut().zip(thresholds.iter_mut()).zip(&raw) {
                        for (r, &raw) in raw[..count].iter().enumerate() {
                            let slot = slot_at(group + r);
                            let key = key_of(raw, slot);
                            if key <= *threshold && passes(slot) {
                                top.push(Scored { key, id: p.ids[slot] });
                                *threshold = top.threshold();
                            }
                        }
                    }
                }
            }
        }
    }
}
