//! The rows a build works on: [`Rows`] (its point ids in slot order) read
//! through a [`RowSource`] (the partition) one step at a time as
//! [`RowsAt`], never a copy of the vectors.

use super::CalibRows;
use crate::math::distance::Metric;
use crate::math::key::exact_key;
#[cfg(test)]
use crate::math::key::norm;

/// Where a build reads its rows: the partition's current rows, by point
/// id, with the point's slot when the build started as a hint (checked: a
/// delete moves the last row into the hole). `None`: the point is gone.
pub trait RowSource {
    fn row_of(&self, slot: usize, id: u64) -> Option<(&[f32], f32)>;
    /// Rows are read from disk (a memory-light partition after a restart):
    /// calibration walks key their candidates from the exact answers
    /// ([`CalibQuery::known_key`](super::CalibQuery::known_key)).
    fn rows_on_disk(&self) -> bool {
        false
    }
}

/// The rows of a build: the points `ids`, in the partition's slot order
/// when the build started (the row number is the key an index uses while
/// it is built), read through a [`RowSource`] at every step, so a build
/// holds no copy of the vectors (two shards building at once held a second
/// copy of every vector). A point changed since the build started reads as
/// it is now, one deleted as zeros: the partition tracks both as changed
/// and scores them exactly, so their place in the index never answers.
pub struct Rows {
    pub dim: usize,
    pub ids: Vec<u64>,
    zeros: Vec<f32>,
}

impl Rows {
    pub fn new(ids: Vec<u64>, dim: usize) -> Rows {
        Rows { dim, ids, zeros: vec![0.0; dim] }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The rows as `src` holds them now.
    pub fn at<'a>(&'a self, src: &'a dyn RowSource) -> RowsAt<'a> {
        RowsAt { rows: self, src }
    }
}

/// A build's rows during one step (see [`Rows`]).
#[derive(Clone, Copy)]
pub struct RowsAt<'a> {
    rows: &'a Rows,
    src: &'a dyn RowSource,
}

impl<'a> RowsAt<'a> {
    pub fn dim(&self) -> usize {
        self.rows.dim
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `r` and its norm (`None`: deleted since the build started).
    #[inline]
    pub fn get(&self, r: usize) -> Option<(&'a [f32], f32)> {
        self.src.row_of(r, self.rows.ids[r])
    }

    /// Row `r`, zeros if it was deleted.
    #[inline]
    pub fn row(&self, r: usize) -> &'a [f32] {
        self.get(r).map_or(&self.rows.zeros[..], |(row, _)| row)
    }

    #[inline]
    pub fn norm(&self, r: usize) -> f32 {
        self.get(r).map_or(0.0, |(_, n)| n)
    }

    /// The exact key of row `r` for `q`.
    #[inline]
    pub fn key(&self, metric: Metric, q: &[f32], r: usize) -> f32 {
        let (row, n) = self.get(r).unwrap_or((&self.rows.zeros[..], 0.0));
        exact_key(metric, q, row, n)
    }
}

impl CalibRows for RowsAt<'_> {
    fn rows(&self) -> usize {
        self.len()
    }
    fn row_at(&self, r: usize) -> &[f32] {
        self.row(r)
    }
    fn norm_at(&self, r: usize) -> f32 {
        self.norm(r)
    }
    fn answer_id(&self, r: usize) -> u64 {
        r as u64
    }
}

/// Rows held in one matrix (tests): point id = row number.
#[cfg(test)]
pub(crate) struct Dense {
    pub dim: usize,
    pub rows: Vec<f32>,
    pub norms: Vec<f32>,
}

#[cfg(test)]
impl Dense {
    pub fn new(rows: Vec<f32>, dim: usize) -> Dense {
        let norms = rows.chunks(dim).map(norm).collect();
        Dense { dim, rows, norms }
    }
}

#[cfg(test)]
impl RowSource for Dense {
    fn row_of(&self, _slot: usize, id: u64) -> Option<(&[f32], f32)> {
        let r = id as usize;
        Some((&self.rows[r * self.dim..(r + 1) * self.dim], self.norms[r]))
    }
}
