//! Building an [`Hnsw`] over a partition's rows (read in place at each
//! step, see [`Rows`]) in bounded steps, and calibrating it (unfiltered and with a share of the points
//! admitted, as filters admit them).

use super::{Hnsw, HnswParams, HnswQuery};
use crate::index::calib::{
    in_share, spread, CalibQuery, Calibration, Calibrator, RealQueries, RowSource, Rows, CALIB_K,
};
use crate::index::sq8::Ranges;

/// Beam widths the calibration measures.
pub const EF_LADDER: [usize; 12] = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512];
/// Work per builder step (inserts go on until this much time passed).
const STEP_TIME: std::time::Duration = std::time::Duration::from_micros(150);

/// Rows apart that the quantizer's ranges are taken from.
const FIT_EVERY: usize = 7;

enum Phase {
    /// The quantizer's ranges from every [`FIT_EVERY`]th row, a slice per
    /// step; the graph exists from the step after.
    Fit {
        next: usize,
        ranges: Ranges,
    },
    Insert {
        next: usize,
    },
    Calibrate,
    /// The calibration sample goes in last, a few points per step.
    InsertProbes {
        next: usize,
    },
    /// The nodes keyed by point id instead of row, a slice per step.
    Rekey(super::Rekeying),
    Done,
}

/// Builds an [`Hnsw`] over a partition's rows in bounded steps:
/// inserts every row but the calibration sample, calibrates with that
/// sample (unseen by the graph, like real queries) and, apart, with the
/// real queries the partition has seen, then inserts the sample too.
pub struct GraphBuilder {
    rows: Rows,
    params: HnswParams,
    seed: u64,
    pub(super) graph: Option<Hnsw>,
    held_out: Vec<bool>,
    /// Unfiltered first, then each filtered share (`FILTER_SHARES`).
    calibs: Vec<Calibrator>,
    /// The real queries' calibration, if there are any
    /// ([`GraphBuilder::new`]).
    real: Option<Calibrator>,
    phase: Phase,
    spent: std::time::Duration,
}

/// Shares of points (percent) the graph is also calibrated with, as broad
/// filters admit them.
pub const FILTER_SHARES: [u32; 2] = [10, 50];

impl GraphBuilder {
    /// A build over the rows of `ids`. `real`: the partition's reservoir
    /// of real queries, measured apart from the held-out sample (the two
    /// are not pooled: held-out points overstate real queries' recall, see
    /// `calib::HELD_OUT_GAP`), and whose figures replace the held-out ones
    /// for each metric with enough of them (`Calibration::merge_real`), as
    /// a recalibration of the installed graph would: a rebuild of a graph
    /// that `auto` already serves on real queries' figures keeps serving
    /// on them, instead of on discounted held-out figures until a
    /// recalibration (on a grown partition, those can ask for a beam no
    /// search under load can afford).
    pub fn new(ids: Vec<u64>, dim: usize, params: HnswParams, seed: u64, real: RealQueries) -> GraphBuilder {
        let n = ids.len();
        // Probe rows spread over the partition (ids are in no useful order).
        let all: Vec<usize> = (0..n).collect();
        let probes = spread(&all);
        let mut held_out = vec![false; n];
        probes.iter().for_each(|&r| held_out[r] = true);
        let held: Vec<u64> = probes.iter().map(|&r| r as u64).collect();
        let calibs = Calibrator::held_out_set(&probes, &held, &EF_LADDER, &FILTER_SHARES);
        let real = (!real.is_empty()).then(|| {
            let mut c = Calibrator::new(Vec::new(), real, EF_LADDER.to_vec());
            c.hold_out(held);
            c
        });
        GraphBuilder {
            rows: Rows::new(ids, dim),
            params,
            seed,
            graph: None,
            held_out,
            calibs,
            real,
            phase: Phase::Fit { next: 0, ranges: Ranges::new(dim) },
            spent: std::time::Duration::ZERO,
        }
    }

    /// What the next step does, for stall reports (`aionbd::watchdog`).
    pub fn phase_name(&self) -> &'static &'static str {
        match self.phase {
            Phase::Fit { .. } => &"graph build step: fit",
            Phase::Insert { .. } => &"graph build step: insert",
            Phase::Calibrate => &"graph build step: calibrate",
            Phase::InsertProbes { .. } => &"graph build step: insert sample",
            Phase::Rekey(_) => &"graph build step: key by id",
            Phase::Done => &"graph build step",
        }
    }

    /// Do about 0.15 ms of work over the rows `src` holds now; `true`
    /// once complete.
    pub fn step(&mut self, src: &dyn RowSource) -> bool {
        let t0 = std::time::Instant::now();
        let done = self.step_inner(src, t0);
        self.spent += t0.elapsed();
        done
    }

    fn step_inner(&mut self, src: &dyn RowSource, t0: std::time::Instant) -> bool {
        let rows = self.rows.at(src);
        if let Phase::Fit { next, ranges } = &mut self.phase {
            while *next < rows.len() && t0.elapsed() < STEP_TIME {
                let end = (*next + 16 * FIT_EVERY).min(rows.len());
                (*next..end).step_by(FIT_EVERY).for_each(|r| ranges.add(rows.row(r)));
                *next = end.next_multiple_of(FIT_EVERY);
            }
            if *next >= rows.len() {
                let Phase::Fit { ranges, .. } = std::mem::replace(&mut self.phase, Phase::Insert { next: 0 }) else {
                    unreachable!("in the fit phase")
                };
                let sq = ranges.codes(super::code_bits(rows.dim()));
                let mut graph = Hnsw::new(rows.dim(), self.params, sq, self.seed);
                graph.reserve(rows.len());
                self.graph = Some(graph);
            }
            return false;
        }
        let graph = self.graph.as_mut().expect("the graph exists once its ranges are fitted");
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Insert { mut next } => {
                while next < rows.len() && t0.elapsed() < STEP_TIME {
                    // Deleted since the build started: no node.
                    if let (false, Some((row, norm))) = (self.held_out[next], rows.get(next)) {
                        graph.insert(next as u64, row, norm);
                    }
                    next += 1;
                }
                self.phase = if next < rows.len() { Phase::Insert { next } } else { Phase::Calibrate };
            }
            Phase::Calibrate => {
                let g = &*graph;
                // The first calibration not done yet (each returns done once).
                let Some(calib) = self.calibs.iter_mut().chain(self.real.as_mut()).find(|c| !c.is_done()) else {
                    self.phase = Phase::InsertProbes { next: 0 };
                    return false;
                };
                let share = calib.share();
                let on_disk = src.rows_on_disk();
                calib.step(&rows, 1024, |q: &CalibQuery| {
                    let t = std::time::Instant::now();
                    let me = q.me;
                    let hq = HnswQuery { query: q.query, metric: q.metric, k: CALIB_K, ef: q.ladder[q.rung] };
                    let admit = |key: u64| key as usize != me && in_share(key, share);
                    let found = if on_disk {
                        g.search(&hq, admit, |key| Some(q.known_key(key)))
                    } else {
                        g.search(&hq, admit, |key| Some(rows.key(q.metric, q.query, key as usize)))
                    };
                    vec![(found, t.elapsed().as_nanos() as f32)]
                });
                self.phase = Phase::Calibrate;
            }
            Phase::InsertProbes { mut next } => {
                let probes = self.calibs[0].probes();
                while next < probes.len() && t0.elapsed() < STEP_TIME {
                    let r = probes[next];
                    if let Some((row, norm)) = rows.get(r) {
                        graph.insert(r as u64, row, norm);
                    }
                    next += 1;
                }
                self.phase =
                    if next == probes.len() { Phase::Rekey(graph.rekeying()) } else { Phase::InsertProbes { next } };
            }
            Phase::Rekey(mut r) => {
                let ids = &self.rows.ids;
                if graph.rekey_step(&mut r, |row| ids[row as usize], STEP_TIME.saturating_sub(t0.elapsed())) {
                    return true;
                }
                self.phase = Phase::Rekey(r);
            }
            Phase::Done => return true,
            Phase::Fit { .. } => unreachable!("handled above"),
        }
        false
    }

    /// The finished graph keyed by point id, its calibration and the
    /// milliseconds of work it took.
    pub fn finish(self) -> (Hnsw, Calibration, u64) {
        let graph = self.graph.expect("finish after the last step");
        let mut calibration = Calibrator::finish_set(self.calibs).expect("the unfiltered calibration");
        if let Some(real) = self.real {
            calibration.merge_real(real.finish());
        }
        (graph, calibration, self.spent.as_millis() as u64)
    }
}
