//! What index builds share: the view of a partition's rows a build works
//! on, and the calibration that measures an index against exact answers.
//!
//! Calibration runs sample queries (points of the partition, each excluded
//! from its own answers, and midpoints of pairs of them, for every metric,
//! plus a reservoir of recent real queries, each under every metric the
//! partition is queried with, see [`RealQueries`]) exactly and through the index at every
//! setting of a ladder (IVF: probe counts; HNSW: beam widths), recording
//! recall@10 and the time each setting took per query. `auto` then picks
//! the cheapest setting whose recall clears the target.

use crate::math::distance::{kernels, Metric};
use crate::math::key::{key_from_dot, norm};
use crate::math::rng::splitmix64;
use crate::math::topk::{Scored, TopK};

mod rows;
#[cfg(test)]
pub(crate) use rows::Dense;
pub use rows::{RowSource, Rows, RowsAt};

/// recall@k measured by calibration.
pub const CALIB_K: usize = 10;
/// Sample points used as calibration queries.
pub const CALIB_QUERIES: usize = 64;
/// Real queries of a metric that make its calibration rest on them.
pub const MIN_REAL: usize = 64;
/// How many times more of its true top 10 a real query misses than a
/// held-out stored point at the same setting: held-out points sit where
/// the data is dense, queries written for another purpose often do not.
/// Measured on queries unlike the stored texts (docs/benchmarks.md,
/// "Calibration"): 1.9-2.8x. Until real queries calibrate a metric, its
/// held-out recall r counts as 1 - (1 - r) * HELD_OUT_GAP, so the target is
/// met from the first query, at the price of a wider search until the
/// first recalibration.
pub const HELD_OUT_GAP: f32 = 3.0;
/// How far from 1 a row's length may be for the rows to count as unit
/// length: l2, dot and cosine then rank points alike for any query
/// (|q - x|^2 = |q|^2 + 1 - 2 q.x and q.x / |q| both order by q.x), so a
/// real query of one metric measures the others too. Embedding models'
/// normalised f32 output is within 1e-6.
pub const UNIT_NORM_TOL: f32 = 1e-3;

pub fn metric_index(m: Metric) -> usize {
    match m {
        Metric::L2 => 0,
        Metric::Dot => 1,
        Metric::Cosine => 2,
    }
}

const METRICS: [Metric; 3] = [Metric::L2, Metric::Dot, Metric::Cosine];

/// The real queries a calibration measures: a partition's reservoir of
/// them, each with the metric it asked for, and the metrics the partition
/// has been queried with. Each query is measured under every one of those
/// metrics, so a metric that few queries use (a monitor's `dot` searches
/// beside a `cosine` load) rests on the busy metric's real queries rather
/// than on held-out points, whose figures go stale as the graph grows and
/// whose discount, on a large partition, can leave no setting but an
/// exact scan. On rows of unit length the three metrics rank points alike
/// ([`UNIT_NORM_TOL`]): each query then runs under its own metric only and
/// counts for all three.
#[derive(Clone, Debug, Default)]
pub struct RealQueries {
    pub queries: Vec<(Metric, Vec<f32>)>,
    /// Metrics queried (l2, dot, cosine, as [`metric_index`]).
    pub metrics: [bool; 3],
}

impl RealQueries {
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }
}

/// A calibration as rows: (setting, [recall l2, dot, cosine], ns per query).
pub type CalibTable = Vec<(usize, [f32; 3], f32)>;

/// Measured recall and cost per setting, per metric (l2, dot, cosine).
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    /// The settings, ascending (more work, more recall).
    pub ladder: Vec<usize>,
    /// The recall this partition contributes to a collection-wide top 10
    /// split over `parts` partitions (see [`Calibration::apply_parts`]);
    /// recall@10 of the partition itself with one partition.
    pub recall: [Vec<f32>; 3],
    /// Per setting, the share of queries whose exact j-th nearest point
    /// (j < 10) the index found in its top 10.
    pub by_rank: [Vec<[f32; CALIB_K]>; 3],
    /// Partitions per collection `recall` was computed for.
    pub parts: usize,
    /// Mean nanoseconds per query at each setting (all metrics).
    pub cost_ns: Vec<f32>,
    /// Queries the recall was measured over, per metric: collection points
    /// for every metric, plus the real queries measured under it.
    pub samples: [usize; 3],
    /// Real queries the last calibration on them ran (whatever metric each
    /// asked for).
    pub real_queries: usize,
    /// Real queries behind each metric's recall (0: held-out points only,
    /// which [`HELD_OUT_GAP`] discounts); see [`RealQueries`].
    pub real: [usize; 3],
    /// The same measured with only a share of the points admitted (percent,
    /// ascending), as a filter admits them: filtered searches use these.
    pub by_share: Vec<(u32, Calibration)>,
}

/// Whether row `r` belongs to the pseudo-random `share` percent of rows a
/// filtered calibration admits.
pub fn in_share(r: usize, share: u32) -> bool {
    if share >= 100 {
        return true;
    }
    // The first splitmix64 output seeded with the row number.
    let mut state = r as u64;
    (splitmix64(&mut state) % 100) < share as u64
}

/// `w[j]`: the chance that a partition holds more than `j` of a
/// collection-wide top 10, points being spread evenly over `parts`
/// partitions by their ids' hash (so a partition's share is binomial).
fn rank_weights(parts: usize) -> [f64; CALIB_K] {
    let p = 1.0 / parts.max(1) as f64;
    let k = CALIB_K as i32;
    let mut pmf = [0.0f64; CALIB_K + 1];
    let mut choose = 1.0f64;
    for (m, slot) in pmf.iter_mut().enumerate() {
        *slot = choose * p.powi(m as i32) * (1.0 - p).powi(k - m as i32);
        choose = choose * (k - m as i32) as f64 / (m as f64 + 1.0);
    }
    std::array::from_fn(|j| pmf[j + 1..].iter().sum())
}

impl Calibration {
    /// Recompute `recall` for a collection of `parts` partitions. A
    /// collection-wide top 10 holds M of this partition's points, its own
    /// exact top M, M ~ Binomial(10, 1/parts); the merged answer finds as
    /// many of them as this partition's answer holds, so the recall it
    /// contributes is the per-rank hit rate weighted by P(M > rank). With
    /// one partition this is recall@10; with two, the top ranks (which a
    /// graph or list scan finds most reliably) weigh most.
    pub fn apply_parts(&mut self, parts: usize) {
        let w = rank_weights(parts);
        let total: f64 = w.iter().sum();
        for m in 0..3 {
            self.recall[m] = self.by_rank[m]
                .iter()
                .map(|r| (r.iter().zip(&w).map(|(&h, &w)| h as f64 * w).sum::<f64>() / total) as f32)
                .collect();
        }
        self.parts = parts.max(1);
        self.by_share.iter_mut().for_each(|(_, c)| c.apply_parts(parts));
    }

    /// The calibration for searches whose filter admits `fraction` of the
    /// points: the measured share nearest at or below it (`None` below the
    /// smallest share measured); unfiltered searches use `self`.
    pub fn for_fraction(&self, fraction: f64) -> Option<&Calibration> {
        if fraction >= 1.0 {
            return Some(self);
        }
        self.by_share.iter().rev().find(|(share, _)| *share as f64 <= fraction * 100.0 + 1e-9).map(|(_, c)| c)
    }

    /// Recall at ladder step `i` for metric `m` as `auto` trusts it: as
    /// measured on real queries, or discounted by [`HELD_OUT_GAP`] while
    /// only held-out points measured it.
    fn trusted(&self, m: usize, i: usize) -> f32 {
        self.trusted_as(m, i, self.real[m] >= MIN_REAL)
    }

    fn trusted_as(&self, m: usize, i: usize, real: bool) -> f32 {
        let r = self.recall[m].get(i).copied().unwrap_or(0.0);
        if real {
            r
        } else {
            (1.0 - (1.0 - r) * HELD_OUT_GAP).max(0.0)
        }
    }

    /// Whether any metric's table rests on real queries (not on held-out
    /// points): growth and repairs are then measured by recalibrating on
    /// them rather than by a rebuild.
    pub fn rests_on_real(&self) -> bool {
        self.real.iter().any(|&n| n >= MIN_REAL)
    }

    /// What a metric's recall rests on: `Some(n)` real queries, `None`:
    /// held-out points (discounted).
    pub fn real_basis(&self, metric: Metric) -> Option<usize> {
        let n = self.real[metric_index(metric)];
        (n >= MIN_REAL).then_some(n)
    }

    /// The smallest setting whose trusted recall meets `target` with a
    /// margin of one standard error of the measurement (so a setting that
    /// only just met it on the sample is not trusted), with its trusted
    /// recall and cost; `None` if none does.
    pub fn choose(&self, metric: Metric, target: f32) -> Option<(usize, f32, f32)> {
        self.choose_as(metric, target, false)
    }

    /// [`Calibration::choose`] for a filtered search through an index
    /// calibrated unfiltered: real-query figures do not describe it, so
    /// the held-out discount applies whatever the basis.
    pub fn choose_filtered(&self, metric: Metric, target: f32) -> Option<(usize, f32, f32)> {
        self.choose_as(metric, target, true)
    }

    fn choose_as(&self, metric: Metric, target: f32, filtered: bool) -> Option<(usize, f32, f32)> {
        let m = metric_index(metric);
        let real = self.real[m] >= MIN_REAL && !filtered;
        // Each query contributes about 10 / parts answers to the estimate.
        let samples = (self.samples[m].max(1) * CALIB_K) as f32 / self.parts.max(1) as f32;
        (0..self.ladder.len())
            .map(|i| (i, self.trusted_as(m, i, real)))
            .find(|&(_, r)| r >= 1.0 || r - (r * (1.0 - r) / samples).sqrt() >= target)
            .map(|(i, r)| (self.ladder[i], r, self.cost_ns.get(i).copied().unwrap_or(f32::INFINITY)))
    }

    /// Trusted recall for a setting (the nearest ladder step at or below
    /// it); `filtered` as in [`Calibration::choose_filtered`].
    pub fn recall_at(&self, metric: Metric, setting: usize) -> f32 {
        self.recall_at_as(metric, setting, false)
    }

    pub fn recall_at_as(&self, metric: Metric, setting: usize, filtered: bool) -> f32 {
        let m = metric_index(metric);
        let real = self.real[m] >= MIN_REAL && !filtered;
        self.ladder.iter().rposition(|&n| n <= setting).map_or(0.0, |i| self.trusted_as(m, i, real))
    }

    /// Take over the metrics `fresh` measured on at least [`MIN_REAL`]
    /// real queries (recall and cost: real queries are what is served);
    /// the other metrics, the filtered tables and the ladder stay.
    pub fn merge_real(&mut self, fresh: Calibration) {
        let mut any = false;
        for m in 0..3 {
            if fresh.real[m] >= MIN_REAL && fresh.by_rank[m].len() == self.ladder.len() {
                self.by_rank[m] = fresh.by_rank[m].clone();
                self.samples[m] = fresh.samples[m];
                self.real[m] = fresh.real[m];
                any = true;
            }
        }
        if any && fresh.cost_ns.len() == self.ladder.len() {
            self.cost_ns = fresh.cost_ns;
        }
        if any {
            self.real_queries = fresh.real_queries;
        }
        self.apply_parts(self.parts);
    }

    /// Per setting: (setting, [trusted recall l2, dot, cosine], ns per
    /// query).
    pub fn table(&self) -> CalibTable {
        (0..self.ladder.len())
            .map(|i| {
                let at = |m: usize| self.trusted(m, i);
                (self.ladder[i], [at(0), at(1), at(2)], self.cost_ns.get(i).copied().unwrap_or(0.0))
            })
            .collect()
    }
}

/// Rows a calibration scans for the exact answers: a build's rows
/// (answers keyed by row number) or a partition's own rows (keyed by point
/// id, for recalibrating an installed index).
pub trait CalibRows {
    fn rows(&self) -> usize;
    fn row_at(&self, r: usize) -> &[f32];
    fn norm_at(&self, r: usize) -> f32;
    /// The key the index under test answers with for row `r`.
    fn answer_id(&self, r: usize) -> u64;
}

/// One calibration query in progress: first an exact scan of the rows (in
/// chunks) for each of its metrics at once (one dot product per row gives
/// all three keys), then the index for each metric in turn (one or more
/// ladder settings per step).
struct Job {
    query: Vec<f32>,
    q_norm: f32,
    /// Every metric for a sample point; for a real query its own first,
    /// then the others the partition is queried with (only its own once
    /// the rows turn out to have unit length).
    metrics: Vec<Metric>,
    /// A real query (not a sample point).
    real: bool,
    /// The query's own row (excluded from its answers), or `usize::MAX`.
    me: usize,
    exact: Vec<TopK>,
    scanned: usize,
    /// The exact answers, per metric, once the scan is complete.
    truths: Option<Vec<Vec<Scored>>>,
    /// The metric being evaluated (index into `metrics`).
    at: usize,
    rung: usize,
    /// Consecutive rungs that found the whole exact answer.
    streak: u32,
}

/// Relative tolerance under which two keys are a tie (the exact scan and an
/// index's re-ranking compute a key with different kernels).
const TIE: f32 = 1e-4;

/// Count, per rank j, whether `found` holds the exact answer's j-th point
/// into `hits`; returns whether it holds all of them. A point of `found`
/// that the exact answer left out but that lies at the same distance as a
/// missed one (a duplicate vector: among equals the exact answer keeps the
/// lowest ids, an index any of them) stands in for it: it is as near.
fn tally(truth: &[Scored], found: &[Scored], hits: &mut [u32; CALIB_K]) -> bool {
    let mut spare: Vec<f32> = found.iter().filter(|s| !truth.iter().any(|t| t.id == s.id)).map(|s| s.key).collect();
    let mut all = true;
    for (j, t) in truth.iter().enumerate() {
        let tie = |&k: &f32| (k - t.key).abs() <= TIE * (1.0 + t.key.abs());
        let hit =
            found.iter().any(|s| s.id == t.id) || spare.iter().position(tie).map(|i| spare.swap_remove(i)).is_some();
        if hit {
            hits[j] += 1;
        } else {
            all = false;
        }
    }
    all
}

/// Every this many evaluations (a query under one metric) walks the whole
/// ladder (the others stop once two rungs in a row found their whole
/// answer), so every rung's cost is measured.
const FULL_LADDER_EVERY: usize = 8;

/// One query of a calibration, for the index under test.
pub struct CalibQuery<'a> {
    pub query: &'a [f32],
    pub metric: Metric,
    /// Row excluded from the answers (`usize::MAX`: none).
    pub me: usize,
    /// First ladder rung wanted, and the ladder.
    pub rung: usize,
    pub ladder: &'a [usize],
}

/// Runs a calibration in bounded steps.
pub struct Calibrator {
    probes: Vec<usize>,
    /// Rows left out of the exact answers (not in the index yet).
    held_out: Vec<bool>,
    /// Percent of rows admitted (`in_share`), as a filter would.
    share: u32,
    done: bool,
    real: RealQueries,
    /// Per metric: real queries whose exact answer under it is known
    /// (measured under it).
    real_evals: [usize; 3],
    ladder: Vec<usize>,
    /// Per metric, rung and rank j: queries whose exact j-th nearest the
    /// index found; `[0]`: sample points, `[1]`: real queries (kept apart
    /// so that unit-length rows can count real queries for every metric).
    hits: [[Vec<[u32; CALIB_K]>; 3]; 2],
    /// Per metric and rank j: queries whose exact answer has a j-th point
    /// (`[0]` sample points, `[1]` real queries).
    ranks: [[[u32; CALIB_K]; 3]; 2],
    /// Whether every row scanned so far had unit length.
    unit: bool,
    cost: Vec<(f64, u32)>,
    /// Jobs made so far (the next one's number).
    job: usize,
    /// Evaluations finished (a query under one metric).
    evals: usize,
    /// Jobs whose exact answers one pass over the rows is finding together
    /// (every row read once for [`SCAN_BATCH`] queries: a memory-light
    /// partition reads its rows from disk).
    scanning: Vec<Job>,
    /// Jobs with their exact answers, waiting for the index, in order.
    scanned: std::collections::VecDeque<Box<Job>>,
    cur: Option<Box<Job>>,
}

/// Queries whose exact answers one pass over the rows finds.
const SCAN_BATCH: usize = 16;

impl Calibrator {
    /// Calibrate `ladder` with the rows `probes` and the real queries `real`.
    pub fn new(probes: Vec<usize>, real: RealQueries, ladder: Vec<usize>) -> Calibrator {
        Calibrator {
            held_out: Vec::new(),
            share: 100,
            done: false,
            hits: std::array::from_fn(|_| std::array::from_fn(|_| vec![[0; CALIB_K]; ladder.len()])),
            ranks: [[[0; CALIB_K]; 3]; 2],
            unit: true,
            cost: vec![(0.0, 0); ladder.len()],
            probes,
            real,
            real_evals: [0; 3],
            ladder,
            job: 0,
            evals: 0,
            scanning: Vec::new(),
            scanned: Default::default(),
            cur: None,
        }
    }

    /// Leave the rows marked in `held_out` out of the exact answers: the
    /// index under test holds none of them (HNSW inserts its probe rows
    /// after calibrating, so its sample queries are as unseen as real ones,
    /// and real queries measured on the same graph must not find them).
    pub fn hold_out(&mut self, held_out: Vec<bool>) {
        self.held_out = held_out;
    }

    /// Admit only the `in_share(row, share)` rows to the exact answers (the
    /// index under test must admit the same ones).
    pub fn admit_share(&mut self, share: u32) {
        self.share = share;
    }

    pub fn share(&self) -> u32 {
        self.share
    }

    pub fn probes(&self) -> &[usize] {
        &self.probes
    }

    pub fn ladder(&self) -> &[usize] {
        &self.ladder
    }

    /// Whether every query is done (`step` returned `true`).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Do a bounded amount of work: part of an exact scan, or one call of
    /// `eval`, which answers the query at ladder rungs from `q.rung` on
    /// (as many as it likes, at least one) with the nanoseconds each took.
    /// `true` once every query is done.
    pub fn step<R: CalibRows + ?Sized>(
        &mut self,
        rows: &R,
        scan_rows: usize,
        eval: impl FnOnce(&CalibQuery) -> Vec<(Vec<Scored>, f32)>,
    ) -> bool {
        if self.cur.is_none() && self.scanned.is_empty() {
            if self.scanning.is_empty() {
                self.scanning = (0..SCAN_BATCH).map_while(|_| self.next_job(rows).map(|job| *job)).collect();
                if self.scanning.is_empty() {
                    self.done = true;
                    return true;
                }
            }
            self.scan(rows, (scan_rows / self.scanning.len()).max(64));
            return false;
        }
        let mut cur = match self.cur.take() {
            Some(cur) => cur,
            None => self.scanned.pop_front().expect("a scanned job"),
        };
        let truths = cur.truths.as_ref().expect("scanned");
        let (metric, truth) = (cur.metrics[cur.at], &truths[cur.at]);
        let answers = eval(&CalibQuery { query: &cur.query, metric, me: cur.me, rung: cur.rung, ladder: &self.ladder });
        let hits = &mut self.hits[cur.real as usize][metric_index(metric)];
        for (found, ns) in answers.into_iter().take(self.ladder.len() - cur.rung) {
            let all = tally(truth, &found, &mut hits[cur.rung]);
            let c = &mut self.cost[cur.rung];
            *c = (c.0 + ns as f64, c.1 + 1);
            cur.rung += 1;
            cur.streak = if all { cur.streak + 1 } else { 0 };
            // Two rungs in a row found everything: a wider search finds it
            // too (it explores what the narrower one did and more), so the
            // remaining rungs are credited without running them.
            if cur.streak >= 2 && !self.evals.is_multiple_of(FULL_LADDER_EVERY) {
                for rung in &mut hits[cur.rung..] {
                    rung[..truth.len()].iter_mut().for_each(|h| *h += 1);
                }
                cur.rung = self.ladder.len();
                break;
            }
        }
        if cur.rung == self.ladder.len() {
            self.evals += 1;
            (cur.at, cur.rung, cur.streak) = (cur.at + 1, 0, 0);
        }
        if cur.at < cur.metrics.len() {
            self.cur = Some(cur);
        }
        false
    }

    /// Scan up to `n` more rows for every job in `scanning` (the rows may
    /// change between steps: recalibration scans a live partition, and a
    /// slot past the end just ends the scan); jobs whose scan is complete
    /// move to `scanned`.
    fn scan<R: CalibRows + ?Sized>(&mut self, rows: &R, n: usize) {
        let from = self.scanning[0].scanned;
        let end = (from + n).min(rows.rows());
        let dot = kernels().dot;
        for r in from..end {
            if self.held_out.get(r).copied().unwrap_or(false) || !in_share(r, self.share) {
                continue;
            }
            let (row, norm, id) = (rows.row_at(r), rows.norm_at(r), rows.answer_id(r));
            self.unit &= (norm - 1.0).abs() <= UNIT_NORM_TOL;
            for cur in self.scanning.iter_mut().filter(|c| c.me != r) {
                let d = dot(&cur.query, row);
                for (top, &m) in cur.exact.iter_mut().zip(&cur.metrics) {
                    let key = key_from_dot(m, d, cur.q_norm, norm);
                    if !key.is_nan() {
                        top.push(Scored { key, id });
                    }
                }
            }
        }
        self.scanning.iter_mut().for_each(|c| c.scanned = end.max(c.scanned));
        if end < rows.rows() {
            return;
        }
        for mut cur in self.scanning.drain(..) {
            let tops = std::mem::take(&mut cur.exact);
            let mut truths: Vec<Vec<Scored>> = tops.into_iter().map(TopK::into_sorted).collect();
            if cur.real && self.unit {
                // Unit-length rows: its own metric measures the others.
                cur.metrics.truncate(1);
                truths.truncate(1);
            }
            for (t, &m) in truths.iter().zip(&cur.metrics) {
                self.ranks[cur.real as usize][metric_index(m)][..t.len()].iter_mut().for_each(|n| *n += 1);
                if cur.real {
                    self.real_evals[metric_index(m)] += 1;
                }
            }
            cur.truths = Some(truths);
            self.scanned.push_back(Box::new(cur));
        }
    }

    /// Job `job`: sample point `job` under every metric, then the real
    /// queries, each under its own; `None` once all are done.
    fn next_job<R: CalibRows + ?Sized>(&mut self, rows: &R) -> Option<Box<Job>> {
        let (query, metrics, me, real) = if self.job < self.probes.len() {
            let r = self.probes[self.job];
            let mut query = rows.row_at(r).to_vec();
            // Every other sample query is the midpoint of two sample points:
            // it sits between the data's dense places, where queries written
            // unlike the stored texts land (their nearest points are farther
            // than a stored point's), not on top of a stored point.
            if self.job % 2 == 1 {
                let other = rows.row_at(self.probes[self.job - 1]);
                query.iter_mut().zip(other).for_each(|(q, o)| *q = 0.5 * (*q + *o));
            }
            (query, METRICS.to_vec(), r, false)
        } else {
            let (m, q) = self.real.queries.get(self.job - self.probes.len())?;
            let others = METRICS.into_iter().filter(|o| o != m && self.real.metrics[metric_index(*o)]);
            (q.clone(), std::iter::once(*m).chain(others).collect(), usize::MAX, true)
        };
        self.job += 1;
        let q_norm = norm(&query);
        Some(Box::new(Job {
            query,
            q_norm,
            exact: metrics.iter().map(|_| TopK::new(CALIB_K)).collect(),
            metrics,
            real,
            me,
            scanned: 0,
            truths: None,
            at: 0,
            rung: 0,
            streak: 0,
        }))
    }

    /// The measured recall and cost per setting (recall as recall@10: see
    /// [`Calibration::apply_parts`] for collections of several partitions).
    pub fn finish(self) -> Calibration {
        // A rung no query ran (only possible without queries) is costed
        // from the one below it, in proportion to the setting.
        let mut cost_ns: Vec<f32> = Vec::with_capacity(self.ladder.len());
        for (i, &(sum, n)) in self.cost.iter().enumerate() {
            let c = match (n, cost_ns.last()) {
                (0, Some(&below)) => below * self.ladder[i] as f32 / self.ladder[i - 1].max(1) as f32,
                _ => (sum / n.max(1) as f64) as f32,
            };
            cost_ns.push(c);
        }
        // A wider setting does more work: a rung measured dearer than one
        // above it was slowed by something else (preemption, a build on the
        // other core), so it takes the cost above it. Times are means over
        // few queries on a shared box; the tables compare indexes by them.
        for i in (0..cost_ns.len().saturating_sub(1)).rev() {
            cost_ns[i] = cost_ns[i].min(cost_ns[i + 1]);
        }
        // Unit-length rows: the three metrics rank alike, so every real
        // query measured the index for all of them (its own metric's walk
        // differs from theirs only by the codes' rounding).
        let pooled = self.unit && !self.real.is_empty();
        let mut c = Calibration { ladder: self.ladder, cost_ns, real_queries: self.real.len(), ..Default::default() };
        let [probe_hits, real_hits] = &self.hits;
        let [probe_ranks, real_ranks] = &self.ranks;
        for m in 0..METRICS.len() {
            // The metrics whose real-query evaluations count for `m`.
            let from: &[usize] = if pooled { &[0, 1, 2] } else { std::slice::from_ref(&m) };
            c.real[m] = if pooled { self.real.len() } else { self.real_evals[m] };
            c.samples[m] = self.probes.len() + c.real[m];
            let ranks: [u32; CALIB_K] =
                std::array::from_fn(|j| probe_ranks[m][j] + from.iter().map(|&f| real_ranks[f][j]).sum::<u32>());
            c.by_rank[m] = (0..c.ladder.len())
                .map(|i| {
                    std::array::from_fn(|j| {
                        let h = probe_hits[m][i][j] + from.iter().map(|&f| real_hits[f][i][j]).sum::<u32>();
                        if ranks[j] == 0 {
                            1.0
                        } else {
                            h as f32 / ranks[j] as f32
                        }
                    })
                })
                .collect();
        }
        c.apply_parts(1);
        c
    }
}

/// Pick `CALIB_QUERIES` rows spread over `candidates` (or all of them).
pub fn spread(candidates: &[usize]) -> Vec<usize> {
    if candidates.len() <= CALIB_QUERIES {
        return candidates.to_vec();
    }
    candidates.iter().step_by(candidates.len() / CALIB_QUERIES).take(CALIB_QUERIES).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_at_the_same_distance_counts_for_the_point_it_ties_with() {
        let s = |id, key| Scored { key, id };
        // Exact answer: 1 and 2 are copies of one vector (key 0.5), then 3.
        let truth = [s(1, 0.5), s(2, 0.5), s(3, 0.7)];
        let mut hits = [0; CALIB_K];
        // Another copy (7) found instead of 2: as near, so rank 1 holds.
        assert!(tally(&truth, &[s(1, 0.5), s(7, 0.5 + 1e-6), s(3, 0.7)], &mut hits));
        assert_eq!(hits[..3], [1, 1, 1]);
        // A point farther than the one it replaces does not stand in, and
        // one stand-in covers one missed rank only.
        let mut hits = [0; CALIB_K];
        assert!(!tally(&truth, &[s(7, 0.5), s(8, 0.6), s(9, 0.71)], &mut hits));
        assert_eq!(hits[..3], [1, 0, 0]);
        // Ids found: no key needed.
        let mut hits = [0; CALIB_K];
        assert!(tally(&truth, &[s(3, 0.0), s(2, 9.0), s(1, 9.0)], &mut hits));
        assert_eq!(hits[..3], [1, 1, 1]);
    }

    #[test]
    fn rank_weights_are_the_chance_of_holding_more_than_j_of_the_top() {
        assert!(rank_weights(1).iter().all(|&w| (w - 1.0).abs() < 1e-12));
        let w = rank_weights(2);
        // E[M] = 10 / 2, and P(M > j) falls with j.
        assert!((w.iter().sum::<f64>() - 5.0).abs() < 1e-9);
        assert!(w.windows(2).all(|p| p[0] > p[1]));
        assert!((w[0] - (1.0 - 0.5f64.powi(10))).abs() < 1e-12);
    }

    #[test]
    fn parts_weigh_the_top_ranks() {
        let mut c = Calibration { ladder: vec![1], ..Default::default() };
        // Finds the best 5 always, the rest never.
        let ranks: [f32; CALIB_K] = std::array::from_fn(|j| if j < 5 { 1.0 } else { 0.0 });
        c.by_rank = std::array::from_fn(|_| vec![ranks]);
        c.apply_parts(1);
        assert!((c.recall[0][0] - 0.5).abs() < 1e-6);
        c.apply_parts(2);
        // With two partitions most of a partition's share of the top 10
        // is its own top 5.
        let w = rank_weights(2);
        let want = w[..5].iter().sum::<f64>() / 5.0;
        assert!((c.recall[1][0] as f64 - want).abs() < 1e-6 && want > 0.85, "{want}");
    }

    /// Held-out figures are discounted until real queries measured the
    /// metric; a recalibration replaces only the metrics it measured.
    #[test]
    fn held_out_recall_is_discounted_until_real_queries_replace_it() {
        let table = |recalls: &[f32]| -> Vec<[f32; CALIB_K]> { recalls.iter().map(|&r| [r; CALIB_K]).collect() };
        let mut c =
            Calibration { ladder: vec![16, 32], cost_ns: vec![1.0, 2.0], samples: [64; 3], ..Default::default() };
        c.by_rank = std::array::from_fn(|_| table(&[0.98, 1.0]));
        c.apply_parts(1);
        // 0.98 on held-out points counts as 1 - 0.02 * HELD_OUT_GAP.
        assert_eq!(c.choose(Metric::L2, 0.95).map(|x| x.0), Some(32));
        assert!((c.recall_at(Metric::L2, 16) - (1.0 - 0.02 * HELD_OUT_GAP)).abs() < 1e-5);
        assert_eq!(c.real_basis(Metric::L2), None);
        let mut fresh = Calibration { ladder: vec![16, 32], cost_ns: vec![3.0, 5.0], ..Default::default() };
        fresh.by_rank = std::array::from_fn(|_| table(&[0.97, 0.99]));
        fresh.real = [MIN_REAL, 0, MIN_REAL - 1];
        fresh.samples = fresh.real;
        c.merge_real(fresh);
        // l2 now rests on real queries, at face value; dot and cosine
        // (too few real queries) keep their discounted held-out figures.
        assert_eq!(c.real_basis(Metric::L2), Some(MIN_REAL));
        assert_eq!(c.choose(Metric::L2, 0.95).map(|x| x.0), Some(16));
        assert!((c.recall_at(Metric::L2, 16) - 0.97).abs() < 1e-5);
        assert_eq!(c.choose(Metric::Cosine, 0.95).map(|x| x.0), Some(32));
        assert_eq!(c.real_basis(Metric::Cosine), None);
        assert_eq!(c.cost_ns, vec![3.0, 5.0], "costs measured on real queries");
    }

    /// Real queries are measured under every metric the partition is
    /// queried with; on unit-length rows (the metrics rank alike) under
    /// their own only, counting for all three.
    #[test]
    fn real_queries_measure_every_metric_queried() {
        let (n, dim) = (200usize, 8usize);
        let mut s = 3u64;
        let mut raw: Vec<f32> = (0..n * dim).map(|_| (splitmix64(&mut s) % 1000) as f32 / 500.0 - 1.0).collect();
        raw.chunks_mut(dim).for_each(|r| {
            let l = norm(r);
            r.iter_mut().for_each(|x| *x /= l);
        });
        let queries: Vec<(Metric, Vec<f32>)> = (0..MIN_REAL)
            .map(|i| (Metric::Cosine, raw[i * dim..(i + 1) * dim].iter().map(|x| x * 3.0).collect()))
            .collect();
        // Calibrate over `data` with the cosine queries, the partition
        // having been queried by `metrics`; also how many queries ran
        // under each metric.
        let measure = |data: Vec<f32>, metrics: [bool; 3]| {
            let dense = Dense::new(data, dim);
            let rows = Rows::new((0..n as u64).collect(), dim);
            let rows = rows.at(&dense);
            let real = RealQueries { queries: queries.clone(), metrics };
            let mut cal = Calibrator::new(Vec::new(), real, vec![1, 2]);
            let mut runs = [0usize; 3];
            // An index that, by dot only, misses the 10th nearest point at
            // the first rung.
            while !cal.step(&rows, 1000, |q: &CalibQuery| {
                runs[metric_index(q.metric)] += 1;
                let mut top = TopK::new(CALIB_K);
                for r in 0..n {
                    let d = (kernels().dot)(q.query, rows.row(r));
                    top.push(Scored { key: key_from_dot(q.metric, d, norm(q.query), rows.norm(r)), id: r as u64 });
                }
                let found = top.into_sorted();
                let miss = |rung: usize| (rung == 0 && q.metric == Metric::Dot) as usize;
                (q.rung..q.ladder.len()).map(|rung| (found[..CALIB_K - miss(rung)].to_vec(), 1.0)).collect()
            }) {}
            (cal.finish(), runs.map(|r| r > 0))
        };
        // Unit length: cosine alone ran and counts for every metric.
        let (c, ran) = measure(raw.clone(), [false, true, true]);
        assert_eq!(ran, [false, false, true]);
        assert_eq!((c.real, c.real_queries, c.samples), ([MIN_REAL; 3], MIN_REAL, [MIN_REAL; 3]));
        for m in [Metric::L2, Metric::Dot, Metric::Cosine] {
            assert_eq!(c.real_basis(m), Some(MIN_REAL));
            assert_eq!((c.recall_at(m, 1), c.recall_at(m, 2)), (1.0, 1.0), "{m:?}");
        }
        // Rows of length 2: the queries ran under cosine and dot (the
        // metrics queried), and dot's figures are its own.
        let long: Vec<f32> = raw.iter().map(|x| x * 2.0).collect();
        let (c, ran) = measure(long.clone(), [false, true, true]);
        assert_eq!(ran, [false, true, true]);
        assert_eq!((c.real, c.real_queries), ([0, MIN_REAL, MIN_REAL], MIN_REAL));
        assert_eq!(c.real_basis(Metric::L2), None);
        assert!((c.recall_at(Metric::Dot, 1) - 0.9).abs() < 1e-6 && c.recall_at(Metric::Dot, 2) == 1.0);
        assert_eq!(c.recall_at(Metric::Cosine, 1), 1.0);
        // Merged into a table resting on held-out points: dot and cosine
        // move, l2 keeps its figures.
        let mut base = Calibration { ladder: vec![1, 2], samples: [64; 3], ..Default::default() };
        base.by_rank = std::array::from_fn(|_| vec![[0.5; CALIB_K]; 2]);
        base.merge_real(c);
        assert_eq!((base.real, base.real_queries), ([0, MIN_REAL, MIN_REAL], MIN_REAL));
        assert_eq!(base.by_rank[0][0][0], 0.5);
        // Queried by cosine alone: only cosine is measured.
        let (c, ran) = measure(long, [false, false, true]);
        assert_eq!((c.real, ran), ([0, 0, MIN_REAL], [false, false, true]));
    }

    /// A calibration of an index that always finds the exact answer runs
    /// two rungs for most queries, the whole ladder for every eighth, and
    /// still measures recall 1 and a cost for every rung, never less for
    /// a wider one.
    #[test]
    fn queries_answered_fully_twice_stop_climbing() {
        let (n, dim) = (300usize, 4usize);
        let data: Vec<f32> = (0..n * dim).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let dense = Dense::new(data, dim);
        let rows = Rows::new((0..n as u64).collect(), dim);
        let rows = rows.at(&dense);
        let ladder = vec![1, 2, 4, 8, 16];
        let probes: Vec<usize> = (0..16).collect();
        let mut cal = Calibrator::new(probes, RealQueries::default(), ladder.clone());
        let mut runs = 0usize;
        while !cal.step(&rows, 1000, |q: &CalibQuery| {
            runs += 1;
            let mut top = TopK::new(CALIB_K);
            for r in (0..n).filter(|&r| r != q.me) {
                // Scored as the calibration's exact scan scores (ties and
                // rounding alike).
                let d = (kernels().dot)(q.query, rows.row(r));
                let key = key_from_dot(q.metric, d, norm(q.query), rows.norm(r));
                top.push(Scored { key, id: r as u64 });
            }
            // Rung 1 (setting 2) is slowed by something else each time.
            let cost = if q.rung == 1 { 1e6 } else { 1000.0 * q.ladder[q.rung] as f32 };
            vec![(top.into_sorted(), cost)]
        }) {}
        let jobs = 16usize * 3;
        let full = jobs.div_ceil(FULL_LADDER_EVERY);
        assert_eq!(runs, full * ladder.len() + (jobs - full) * 2);
        let c = cal.finish();
        assert!(c.recall.iter().all(|r| r.iter().all(|&x| x == 1.0)), "{:?}", c.recall);
        // A rung measured dearer than the one above it takes that cost.
        assert_eq!(c.cost_ns, vec![1000.0, 4000.0, 4000.0, 8000.0, 16000.0]);
    }
}
