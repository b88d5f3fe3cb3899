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
use std::sync::atomic::{AtomicUsize, Ordering};

/// Rows scored per tile in batch search: 256 rows x 384 dims x 4 B = 384 KiB,
/// which stays in a 2 MiB L2 while every query block passes over it.
const TILE_ROWS: usize = 16;

/// Multiply-adds one piece of an exact scan in pieces may take, counting a
/// query of a batch as an eighth (the batch kernel's gain): 2^21, a single
/// 384-dim query's 5,461 rows, 0.3-0.8 ms on this box's cores (pieces of
/// 2^23 took ~3 ms each while both shards scanned).
const PIECE_WORK: usize = 1 << 21;
/// Fewest rows in a piece.
const PIECE_MIN_ROWS: usize = 1024;

/// Rows per piece a test fixed (0: none; [`set_scan_piece_rows`]).
static PIECE_ROWS: AtomicUsize = AtomicUsize::new(0);

/// Fix the rows of every exact scan's pieces, process-wide: for tests that
/// must see a scan in many pieces on a small collection (the server's
/// `AIONBD_DEBUG_SCAN_PIECE_ROWS`).
pub fn set_scan_piece_rows(rows: usize) {
    PIECE_ROWS.store(rows, Ordering::Relaxed);
}

/// Rows a piece of an exact scan covers for `queries` queries of `dim`
/// dimensions (`Partition::search_piece`).
pub(super) fn piece_rows(dim: usize, queries: usize) -> usize {
    match PIECE_ROWS.load(Ordering::Relaxed) {
        0 => (PIECE_WORK / (dim.max(1) * queries.div_ceil(8).max(1))).max(PIECE_MIN_ROWS),
        fixed => fixed,
    }
}

/// An exact scan of one partition in pieces (`Partition::search_piece`),
/// between its pieces: the queries as scored, and each one's top k so
/// far, kept across pieces so a piece's rows are pushed into it directly
/// (merging each piece's own top k into them cost batches of 64 ~9 %).
/// The default scans for no query.
#[derive(Default)]
pub struct ScanPieces {
    pub(super) prepared: AlignedF32,
    pub(super) tops: Vec<TopK>,
    /// The partition's `moves` at the last piece (none: no piece yet).
    pub(super) moves: Option<u64>,
}

impl ScanPieces {
    /// A scan for `queries` under `metric`, `k` hits each.
    pub fn new(queries: &[Vec<f32>], metric: Metric, k: usize) -> Self {
        let tops = queries.iter().map(|_| TopK::new(k)).collect();
        ScanPieces { prepared: super::prepare(queries, metric), tops, moves: None }
    }

    /// Each query's hits, best first.
    pub fn into_hits(self) -> Vec<Vec<Scored>> {
        self.tops.into_iter().map(TopK::into_sorted).collect()
    }
}

/// One exact scan of a partition for a batch of prepared queries.
pub(super) struct Scan<'a> {
    pub(super) p: &'a Partition,
    pub(super) kern: &'a Kernels,
    pub(super) metric: Metric,
    pub(super) queries: &'a [&'a [f32]],
    /// Rows that pass the filter, by slot from `slots.start` (none: every
    /// row).
    pub(super) mask: Option<&'a [bool]>,
    /// Only these slots of the in-memory rows (none: every row).
    pub(super) slots: Option<std::ops::Range<usize>>,
}

impl Scan<'_> {
    /// Score every row of the partition (or the slots asked for): the row
    /// buffer in place, or for a memory-light partition its hot rows, then
    /// the rows file read [`cold::SCAN_RUN`] rows at a time.
    #[inline(always)]
    pub(super) fn run(&self, tops: &mut [TopK], key_of: impl Fn(f32, usize) -> f32 + Copy) {
        let p = self.p;
        let Some(c) = &p.cold else {
            let Some(slots) = self.slots.clone() else {
                return self.run_rows(&p.vectors, 0, |i| i, tops, key_of);
            };
            let rows = &p.vectors[slots.start * p.dim..slots.end * p.dim];
            return self.run_rows(rows, slots.start, |i| i, tops, key_of);
        };
        let hot = c.hot_slots();
        self.run_rows(&p.vectors, 0, |i| hot[i] as usize, tops, key_of);
        let mut buf = AlignedF32::new();
        buf.extend_from_slice(&vec![0.0; cold::SCAN_RUN.min(c.file_rows()) * p.dim]);
        for first in (0..c.file_rows()).step_by(cold::SCAN_RUN) {
            let rows = &mut buf[..(c.file_rows() - first).min(cold::SCAN_RUN) * p.dim];
            c.read_run(first, rows);
            self.run_rows(rows, 0, |i| c.slot_of_file_row(first + i), tops, key_of);
        }
    }

    /// Push every passing row of `rows` into each query's `TopK`, ranked by
    /// `key_of(kernel output, slot)`; the rows are numbered from `first`,
    /// and row `i` is the point in slot `slot_at(i)` (`usize::MAX`: no
    /// point, skipped).
    #[inline(always)]
    fn run_rows(
        &self,
        rows: &[f32],
        first: usize,
        slot_at: impl Fn(usize) -> usize,
        tops: &mut [TopK],
        key_of: impl Fn(f32, usize) -> f32,
    ) {
        let (p, mask, dim) = (self.p, self.mask, self.p.dim);
        let mask_first = self.slots.as_ref().map_or(0, |s| s.start);
        let n = rows.len().checked_div(dim).unwrap_or(0);
        let row = |i: usize| &rows[(i - first) * dim..(i - first + 1) * dim];
        let passes = |slot: usize| slot != usize::MAX && mask.is_none_or(|m| m[slot - mask_first]);
        if self.queries.len() < QUERY_BLOCK {
            let pair = raw_pair(self.kern, self.metric);
            for (q, top) in self.queries.iter().zip(tops.iter_mut()) {
                let mut threshold = top.threshold();
                // Numbered from `first` (not `first +` a count from 0), the
                // loop lets the compiler see that an in-memory slot
                // (`slot_at(i) == i`) is never `usize::MAX`: with the
                // addition it kept the test and the scan ran ~2x slower.
                for i in first..first + n {
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
        let end = first + n;
        for tile_start in (first..end).step_by(TILE_ROWS) {
            let tile_end = (tile_start + TILE_ROWS).min(end);
            // The next tile is fetched from memory while this one is scored:
            // an equal share of its lines at each kernel call.
            let next = &rows[(tile_end - first) * dim..((tile_end + TILE_ROWS).min(end) - first) * dim];
            let calls = n_blocks * (tile_end - tile_start).div_ceil(ROW_BLOCK);
            let share = next.len().div_ceil(calls).next_multiple_of(16);
            let mut ahead = next.chunks(share.max(16));
            for b in 0..n_blocks {
                let q0 = b * QUERY_BLOCK;
                let live = (self.queries.len() - q0).min(QUERY_BLOCK);
                // A short last block repeats its last query, a short last
                // row group its last row; their scores are dropped.
                let qs: [&[f32]; QUERY_BLOCK] = std::array::from_fn(|i| self.queries[q0 + i.min(live - 1)]);
                let tops = &mut tops[q0..q0 + live];
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
