//! Recalibrating an installed index on the real queries, without
//! rebuilding it.
//!
//! A build calibrates on held-out stored points, which overstate the recall
//! real queries get when those are unlike the stored data (`calib`'s
//! `HELD_OUT_GAP` discounts such figures). Once the partition has seen
//! [`calib::MIN_REAL`] real queries, the indexer measures the installed
//! graph and IVF lists on its reservoir of them: each query exactly over
//! the partition's own rows, in slices, then through the index at every
//! setting of its ladder, exactly as a search runs (pending points scored
//! exactly beside the graph). The index does not change; only its table of
//! setting -> recall and cost does. Recalibration repeats as queries come
//! in (at most every [`EVERY`]) so the table follows a drifting stream,
//! and sooner once repairs changed a tenth of the graph
//! ([`REPAIRED_SHARE`]: a graph repaired around many deleted or updated
//! points answers with less recall per `ef` than the one measured) or
//! inserts grew it by a fifth ([`GROWN_SHARE`]: a bigger graph gives less
//! recall per `ef`; this replaces a rebuild for growth, see
//! `graph::GROWTH_REBUILD_REAL`).

use super::graph::IndexKind;
use super::{Partition, SearchParams};
use crate::index::calib::{self, CalibQuery, CalibRows, Calibrator, CALIB_K};
use crate::index::ivf::IvfQuery;
use crate::math::topk::{Scored, TopK};
use std::time::{Duration, Instant};

/// Least time between two recalibrations of one index (the first comes
/// as soon as enough real queries were seen).
pub const EVERY: Duration = Duration::from_secs(60);
/// New queries (since the last one) that make a recalibration due.
const NEW_QUERIES: u64 = 64;
/// Rows of the exact scan per step (about 0.1 ms at 384 dimensions).
const SCAN_ROWS: usize = 512;
/// Graph repairs since the last measurement, as a share of its live
/// nodes, that make a recalibration due before [`EVERY`] (after 30 %
/// deletes, a repaired graph's recall@10 at ef 16 is 0.015 below the
/// unchanged one's: docs/benchmarks.md "Deletes and updates repaired in
/// place").
pub const REPAIRED_SHARE: f64 = 0.1;
/// Growth of the graph's live nodes since the last measurement that makes
/// a recalibration due before [`EVERY`].
pub const GROWN_SHARE: f64 = 0.2;
/// Least time between two recalibrations that repairs or growth make due.
pub const REPAIRED_EVERY: Duration = Duration::from_secs(10);

/// An index's recalibration record.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    /// The partition's install number of the index.
    serial: u64,
    /// When it was last recalibrated.
    at: Option<Instant>,
    /// Deleted or updated points the graph was repaired around since it
    /// was last measured.
    repaired: usize,
    /// Live nodes when it was last measured (built or recalibrated).
    measured_live: usize,
}

impl Mark {
    /// The mark of install `serial` with `live` points, measured on real
    /// queries at `at` (`None`: on held-out points only).
    pub fn new(serial: u64, live: usize, at: Option<Instant>) -> Self {
        Mark { serial, at, repaired: 0, measured_live: live }
    }

    /// Count a repair of the graph this mark belongs to.
    pub(super) fn note_repair(&mut self) {
        self.repaired += 1;
    }
}

/// A recalibration under way: which index, and the calibration run.
pub struct Recalibration {
    pub(super) kind: IndexKind,
    serial: u64,
    calib: Calibrator,
}

impl CalibRows for Partition {
    fn rows(&self) -> usize {
        self.len()
    }
    fn row_at(&self, r: usize) -> &[f32] {
        self.row(r)
    }
    fn norm_at(&self, r: usize) -> f32 {
        self.norms[r]
    }
    fn answer_id(&self, r: usize) -> u64 {
        self.ids[r]
    }
}

impl Partition {
    /// Whether an index with this mark (and `live` points) is due: it rests
    /// on held-out points and enough real queries arrived, or [`EVERY`]
    /// passed and [`NEW_QUERIES`] came since its last recalibration, or
    /// [`REPAIRED_EVERY`] passed and repairs changed [`REPAIRED_SHARE`]
    /// of it or it grew by [`GROWN_SHARE`] (the reservoir's queries still
    /// stand for the stream).
    fn recal_due(&self, mark: &Mark, rests_on_real: bool, live: usize, now: Instant) -> bool {
        if self.reservoir.len() < calib::MIN_REAL {
            return false;
        }
        match mark.at {
            None => true,
            Some(_) if !rests_on_real => true,
            Some(at) => {
                let since = now.saturating_duration_since(at);
                let queried = since >= EVERY && self.queries_seen >= self.reservoir.len() as u64 + NEW_QUERIES;
                let changed = mark.repaired as f64 >= REPAIRED_SHARE * live.max(1) as f64
                    || live as f64 >= (1.0 + GROWN_SHARE) * mark.measured_live.max(1) as f64;
                queried || (since >= REPAIRED_EVERY && changed)
            }
        }
    }

    /// Start a recalibration of the graph or else the IVF index (`auto`
    /// compares their costs at the target, so both must rest on the same
    /// queries); `None` if neither is due.
    pub fn recal_start(&mut self, now: Instant) -> Option<Recalibration> {
        let (kind, serial, ladder) = match (&self.hnsw, &self.ivf) {
            (Some(h), _) if self.recal_due(&h.recal, h.calibration.rests_on_real(), self.len(), now) => {
                (IndexKind::Hnsw, h.recal.serial, h.calibration.ladder.clone())
            }
            (_, Some(s)) if self.recal_due(&s.recal, s.index.calibration.rests_on_real(), self.len(), now) => {
                (IndexKind::Ivf, s.recal.serial, s.index.calibration.ladder.clone())
            }
            _ => return None,
        };
        // Repairs and inserts from here on are ones this run may not see.
        let live = self.len();
        let mark = match kind {
            IndexKind::Hnsw => self.hnsw.as_mut().map(|h| &mut h.recal),
            IndexKind::Ivf => self.ivf.as_mut().map(|s| &mut s.recal),
        };
        if let Some(mark) = mark {
            mark.repaired = 0;
            mark.measured_live = live;
        }
        // Later queries replace the sample's with the chance they would
        // have had among the queries since this one.
        self.queries_seen = self.reservoir.len() as u64;
        Some(Recalibration { kind, serial, calib: Calibrator::new(Vec::new(), self.reservoir.clone(), ladder) })
    }

    /// One bounded step: part of an exact scan, or one query through the
    /// index at some ladder settings. `Some(true)` once complete, `None`
    /// if the index it measures was replaced (drop it).
    pub fn recal_step(&self, r: &mut Recalibration) -> Option<bool> {
        match r.kind {
            IndexKind::Hnsw => {
                let h = self.hnsw.as_ref().filter(|h| h.recal.serial == r.serial)?;
                Some(r.calib.step(self, SCAN_ROWS, |q: &CalibQuery| {
                    let t = Instant::now();
                    let params = SearchParams { metric: q.metric, k: CALIB_K, filter: None };
                    let found = self.graph_query(h, q.query, &params, q.ladder[q.rung]);
                    vec![(found, t.elapsed().as_nanos() as f32)]
                }))
            }
            IndexKind::Ivf => {
                let state = self.ivf.as_ref().filter(|s| s.recal.serial == r.serial)?;
                Some(r.calib.step(self, SCAN_ROWS, |q: &CalibQuery| {
                    let t = Instant::now();
                    let exact = self.exact_of(q.metric, q.query);
                    let iq = IvfQuery { query: q.query, metric: q.metric, k: CALIB_K, nprobe: 0 };
                    let rungs = state.index.search_ladder(
                        &iq,
                        &q.ladder[crate::index::ivf::calib_rungs(q.ladder, q.rung)],
                        |id| !state.dirty.contains(&id),
                        |id| exact.get(id),
                    );
                    // Time per rung: the centroids plus the codes scanned so
                    // far (as the build's calibration apportions it).
                    let ns = t.elapsed().as_nanos() as f32;
                    let lists = state.index.nlist();
                    let total = (lists + rungs.last().map_or(0, |f| f.1)) as f32;
                    // The points changed since the build are searched
                    // exactly at every setting: score them once per step,
                    // not once per rung of the step's group (a partition
                    // under an hour of ingest had 30,000 of them).
                    let mut changed = TopK::new(CALIB_K);
                    for &id in &state.dirty {
                        if let Some(key) = exact.get(id) {
                            changed.push(Scored { key, id });
                        }
                    }
                    let changed = changed.into_sorted();
                    rungs
                        .into_iter()
                        .map(|(hits, codes)| {
                            let ns = ns * (lists + codes) as f32 / total;
                            let mut top = TopK::new(CALIB_K);
                            hits.into_iter().chain(changed.iter().copied()).for_each(|h| top.push(h));
                            (top.into_sorted(), ns)
                        })
                        .collect()
                }))
            }
        }
    }

    /// Real queries the calibration a search with `params` uses rests on
    /// (`None`: held-out points; filtered searches use the filtered
    /// tables, which only held-out points measure).
    pub fn calibration_real(&self, kind: IndexKind, params: &SearchParams) -> Option<usize> {
        if params.filter.is_some_and(|f| !f.is_empty()) {
            return None;
        }
        match kind {
            IndexKind::Hnsw => self.hnsw.as_ref()?.calibration.real_basis(params.metric),
            IndexKind::Ivf => self.ivf.as_ref()?.index.calibration.real_basis(params.metric),
        }
    }

    /// Put a finished recalibration's figures into the index it measured;
    /// returns the IVF lists it found unused, for the caller to free.
    pub fn recal_install(&mut self, r: Recalibration, now: Instant) -> super::Retired {
        let fresh = r.calib.finish();
        match r.kind {
            IndexKind::Hnsw => {
                if let Some(h) = self.hnsw.as_mut().filter(|h| h.recal.serial == r.serial) {
                    h.calibration.merge_real(fresh);
                    h.recal.at = Some(now);
                }
            }
            IndexKind::Ivf => {
                if let Some(s) = self.ivf.as_mut().filter(|s| s.recal.serial == r.serial) {
                    s.index.calibration.merge_real(fresh);
                    s.recal.at = Some(now);
                }
            }
        }
        // Both tables may now rest on real queries: compare them again.
        let mut retired = super::Retired::default();
        retired.keep(self.drop_unused_ivf());
        retired
    }
}
