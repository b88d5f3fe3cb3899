//! Recalibrating an installed index without rebuilding it, on the real
//! queries or, until there are enough of them, on held-out points.
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
//! `graph::GROWTH_REBUILD`).
//!
//! A graph whose table still rests on held-out points is measured again on
//! held-out points after the same growth or repairs: its probes (points it
//! holds, spread over the partition) are taken out of it and held out of
//! inserts while the run measures the graph on them and on midpoints of
//! pairs of them, unfiltered and as broad filters admit points, as its
//! build did; then they go back in. A rebuild did this before, holding a
//! second graph beside the first.

use super::graph::{HnswState, IndexKind};
use super::reservoir::RESERVOIR;
use super::{Partition, SearchParams};
use crate::index::calib::{self, in_share, CalibQuery, CalibRows, Calibrator, CALIB_K};
use crate::index::hnsw::FILTER_SHARES;
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
    /// Measurements on real queries so far (its build's, if it had them,
    /// and recalibrations).
    real_runs: u32,
    /// Deleted or updated points the graph was repaired around since it
    /// was last measured.
    repaired: usize,
    /// Live nodes when it was last measured (built or recalibrated).
    measured_live: usize,
    /// When it was last measured on held-out points (built, or
    /// recalibrated on them).
    held_at: Instant,
}

impl Mark {
    /// The mark of install `serial` with `live` points, installed at
    /// `now`, measured on real queries at `at` (`None`: on held-out points
    /// only).
    pub fn new(serial: u64, live: usize, at: Option<Instant>, now: Instant) -> Self {
        Mark { serial, at, real_runs: at.is_some() as u32, repaired: 0, measured_live: live, held_at: now }
    }

    /// Whether repairs changed [`REPAIRED_SHARE`] of the index (with
    /// `live` points) or it grew by [`GROWN_SHARE`] since it was measured.
    fn changed(&self, live: usize) -> bool {
        self.repaired as f64 >= REPAIRED_SHARE * live.max(1) as f64
            || live as f64 >= (1.0 + GROWN_SHARE) * self.measured_live.max(1) as f64
    }

    /// Count a repair of the graph this mark belongs to.
    pub(super) fn note_repair(&mut self) {
        self.repaired += 1;
    }
}

/// A recalibration under way: which index, and the calibration runs (on
/// real queries: one; on held-out points: the unfiltered one, then one per
/// filtered share, `FILTER_SHARES`).
pub struct Recalibration {
    pub(super) kind: IndexKind,
    serial: u64,
    calibs: Vec<Calibrator>,
    /// On held-out points (the graph's probes, kept out of it meanwhile).
    held_out: bool,
}

/// A partition's rows for a recalibration's exact scan: in slot order, or
/// for a memory-light partition in its rows file's order, then its rows
/// in memory: the scan then reads the file in runs. (In slot order, slots
/// side by side sat in file rows far apart after a bulk load whose rows
/// were evicted in the graph's insertion order: each run read for one row
/// brought few of the next ones, and a recalibration read the file about
/// four times over, each read blocking its shard.) Sample points are
/// slots. A row evicted or moved by a delete while the scan runs may be
/// missed or met twice; the scan takes the partition as each step finds
/// it.
impl CalibRows for Partition {
    fn rows(&self) -> usize {
        self.cold.as_ref().map_or(self.len(), |c| c.file_rows() + c.hot_slots().len())
    }
    fn row_at(&self, r: usize) -> &[f32] {
        self.row(self.scan_slot(r))
    }
    fn norm_at(&self, r: usize) -> f32 {
        self.norms[self.scan_slot(r)]
    }
    fn answer_id(&self, r: usize) -> u64 {
        self.ids[self.scan_slot(r)]
    }
    fn present(&self, r: usize) -> bool {
        self.scan_slot(r) < self.len()
    }
    fn probe_row(&self, slot: usize) -> &[f32] {
        self.row(slot)
    }
    fn probe_id(&self, slot: usize) -> u64 {
        self.ids[slot]
    }
}

impl Partition {
    /// The slot at scan position `r` ([`CalibRows`]); `usize::MAX` for a
    /// free file row.
    fn scan_slot(&self, r: usize) -> usize {
        let Some(c) = &self.cold else { return r };
        match r.checked_sub(c.file_rows()) {
            None => c.slot_of_file_row(r),
            Some(h) => c.hot_slots().get(h).map_or(usize::MAX, |&s| s as usize),
        }
    }
}

impl Recalibration {
    /// What is measured, for the log: "hnsw on 256 real queries", "ivf on
    /// held-out points".
    pub fn describe(&self) -> String {
        match self.calibs.first() {
            Some(c) if !self.held_out => format!("{} on {} real queries", self.kind.as_str(), c.real_queries()),
            _ => format!("{} on held-out points", self.kind.as_str()),
        }
    }
}

impl Partition {
    /// Whether an index with this mark (and `live` points) is due: it rests
    /// on held-out points and enough real queries arrived, or [`EVERY`]
    /// passed and [`NEW_QUERIES`] came since its last recalibration, or
    /// [`REPAIRED_EVERY`] passed and repairs changed [`REPAIRED_SHARE`]
    /// of it or it grew by [`GROWN_SHARE`] (the reservoir's queries still
    /// stand for the stream), or it was measured on real queries only once
    /// and [`REPAIRED_EVERY`] and a reservoir's worth of new queries
    /// passed.
    fn recal_due(&self, mark: &Mark, rests_on_real: bool, live: usize, now: Instant) -> bool {
        if self.reservoir.len() < calib::MIN_REAL {
            return false;
        }
        match mark.at {
            None => true,
            Some(_) if !rests_on_real => true,
            Some(at) => {
                let since = now.saturating_duration_since(at);
                let new = self.queries_seen.saturating_sub(self.reservoir.len() as u64);
                let queried = since >= EVERY && new >= NEW_QUERIES;
                // The first measurement on real queries rests on the first
                // ones to come (from `MIN_REAL` of them), which may be a
                // warm-up's rather than the stream's (stored points searched
                // for, each its own nearest: 0.98 measured where the stream
                // got 0.94): a reservoir's worth of newer ones measures
                // again without waiting for `EVERY`.
                let second = mark.real_runs < 2 && since >= REPAIRED_EVERY && new >= RESERVOIR as u64;
                queried || second || (since >= REPAIRED_EVERY && mark.changed(live))
            }
        }
    }

    /// Whether the graph, measured on held-out points only, is due a
    /// held-out recalibration: it grew by [`GROWN_SHARE`] or repairs
    /// changed [`REPAIRED_SHARE`] of it since it was measured, and
    /// [`REPAIRED_EVERY`] passed. (This replaces the rebuild that growth
    /// brought: both measure the grown graph on unseen stored points, but a
    /// rebuild held a second graph beside the first.)
    fn held_out_due(&self, h: &HnswState, now: Instant) -> bool {
        !h.calibration.rests_on_real()
            && now.saturating_duration_since(h.recal.held_at) >= REPAIRED_EVERY
            && h.recal.changed(self.len())
    }

    /// Start a recalibration of the graph or else the IVF index on real
    /// queries (`auto` compares their costs at the target, so both must
    /// rest on the same queries), or else of the graph on held-out points;
    /// `None` if none is due.
    pub fn recal_start(&mut self, now: Instant) -> Option<Recalibration> {
        let (kind, serial, ladder, held_out) = match (&self.hnsw, &self.ivf) {
            (Some(h), _) if self.recal_due(&h.recal, h.calibration.rests_on_real(), self.len(), now) => {
                (IndexKind::Hnsw, h.recal.serial, h.calibration.ladder.clone(), false)
            }
            (_, Some(s)) if self.recal_due(&s.recal, s.index.calibration.rests_on_real(), self.len(), now) => {
                (IndexKind::Ivf, s.recal.serial, s.index.calibration.ladder.clone(), false)
            }
            (Some(h), _) if self.held_out_due(h, now) => {
                (IndexKind::Hnsw, h.recal.serial, h.calibration.ladder.clone(), true)
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
        if held_out {
            let calibs = self.hold_out_probes(&ladder);
            return Some(Recalibration { kind, serial, calibs, held_out });
        }
        // Later queries replace the sample's with the chance they would
        // have had among the queries since this one.
        self.queries_seen = self.reservoir.len() as u64;
        let calibs = vec![Calibrator::new(Vec::new(), self.reservoir.clone(), ladder)];
        Some(Recalibration { kind, serial, calibs, held_out })
    }

    /// Take the probes of a held-out recalibration out of the graph: up to
    /// `CALIB_QUERIES` points it holds, spread over the partition,
    /// tombstoned (its repairs mend the graph around them) and pending
    /// (searches score them exactly meanwhile), held out of inserts until
    /// the recalibration ends. Then they are as unseen as a build's probes,
    /// which it inserts only after calibrating. Returns the calibrations:
    /// unfiltered, then one per filtered share.
    fn hold_out_probes(&mut self, ladder: &[usize]) -> Vec<Calibrator> {
        let Some(h) = self.hnsw.as_mut() else { return Vec::new() };
        let in_graph: Vec<usize> = (0..self.ids.len()).filter(|&r| !h.pending.contains(&self.ids[r])).collect();
        let probes = calib::spread(&in_graph);
        let mut held: Vec<u64> = probes.iter().map(|&r| self.ids[r]).collect();
        for &id in &held {
            h.graph.tombstone(id);
            h.pending.insert(id);
        }
        held.sort_unstable();
        // Probe rows are read when their turn comes: a delete that moves a
        // row into a probe's slot meanwhile makes that query another
        // point's (in the graph, and its own nearest).
        let set = Calibrator::held_out_set(&probes, &held, ladder, &FILTER_SHARES);
        h.held = held;
        set
    }

    /// One bounded step: part of an exact scan, or one query through the
    /// index at some ladder settings. `Some(true)` once complete, `None`
    /// if the index it measures was replaced (drop it).
    pub fn recal_step(&self, r: &mut Recalibration) -> Option<bool> {
        let Some(calib) = r.calibs.iter_mut().find(|c| !c.is_done()) else { return Some(true) };
        match r.kind {
            IndexKind::Hnsw => {
                let h = self.hnsw.as_ref().filter(|h| h.recal.serial == r.serial)?;
                let share = calib.share();
                // As a search answers, but without the points a filtered
                // share leaves out, nor a held-out run's probes (out of the
                // graph, pending, and out of the exact answers); with
                // neither, the walk calls no filter, as an unfiltered
                // search's does not (its time is what is measured).
                let admit = |id: u64| in_share(id, share) && h.held.binary_search(&id).is_err();
                let all = share >= 100 && h.held.is_empty();
                calib.step(self, SCAN_ROWS, |q: &CalibQuery| {
                    let t = Instant::now();
                    let found = if all { self.recal_walk(h, q, |_| true) } else { self.recal_walk(h, q, admit) };
                    vec![(found, t.elapsed().as_nanos() as f32)]
                });
            }
            IndexKind::Ivf => {
                let state = self.ivf.as_ref().filter(|s| s.recal.serial == r.serial)?;
                calib.step(self, SCAN_ROWS, |q: &CalibQuery| {
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
                });
            }
        }
        Some(r.calibs.iter().all(Calibrator::is_done))
    }

    /// A recalibration's walk for `q` over the points `admit` admits, with
    /// the pending points scored exactly, as a search at its `ef` answers.
    fn recal_walk(&self, h: &HnswState, q: &CalibQuery, admit: impl Fn(u64) -> bool) -> Vec<Scored> {
        let ef = q.ladder[q.rung];
        match self.cold {
            None => self.graph_walk(h, q.query, q.metric, CALIB_K, ef, admit),
            // Memory-light: no row read (see `graph_walk_known`).
            Some(_) => self.graph_walk_known(h, q, ef, admit),
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
        let Some(mut fresh) = Calibrator::finish_set(r.calibs) else { return super::Retired::default() };
        match r.kind {
            IndexKind::Hnsw if r.held_out => {
                let parts = self.parts;
                if let Some(h) = self.hnsw.as_mut().filter(|h| h.recal.serial == r.serial) {
                    // The held-out tables are replaced whole (no metric rests
                    // on real queries, or this would not have run); the probes
                    // go back in with the pending points.
                    fresh.apply_parts(parts);
                    h.calibration = fresh;
                    h.held.clear();
                    // The probes' repairs were this run's own doing.
                    (h.recal.held_at, h.recal.repaired) = (now, 0);
                }
            }
            IndexKind::Hnsw => {
                if let Some(h) = self.hnsw.as_mut().filter(|h| h.recal.serial == r.serial) {
                    h.calibration.merge_real(fresh);
                    h.recal.at = Some(now);
                    h.recal.real_runs += 1;
                }
            }
            IndexKind::Ivf => {
                if let Some(s) = self.ivf.as_mut().filter(|s| s.recal.serial == r.serial) {
                    s.index.calibration.merge_real(fresh);
                    s.recal.at = Some(now);
                    s.recal.real_runs += 1;
                }
            }
        }
        // Both tables may now rest on real queries: compare them again.
        let mut retired = super::Retired::default();
        retired.keep(self.drop_unused_ivf());
        retired
    }
}
