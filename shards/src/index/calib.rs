//! What index builds share: the view of a partition's rows a build works
//! on, and the calibration that measures an index against exact answers.
//!
//! Calibration runs sample queries (points of the partition, each excluded
//! from its own answers, and midpoints of pairs of them, for every metric,
//! plus a reservoir of recent real queries, each under every metric the
//! partition is queried with, see [`RealQueries`]) exactly and through the index at every
//! setting of a ladder (IVF: probe counts; HNSW: beam widths), recording
//! recall@10 and the time each setting took per query. `auto` then picks
//! the cheapest setting whose recall clears the target, reading recall
//! between two measured settings on the line joining them. This module
//! holds the tables and how `auto` reads them; `run` runs a calibration.

use crate::math::distance::Metric;
use crate::math::rng::splitmix64;

mod rows;
mod run;
#[cfg(test)]
pub(crate) use rows::Dense;
pub use rows::{RowSource, Rows, RowsAt};
#[cfg(test)]
pub(crate) use run::SCAN_BATCH;
pub use run::{CalibQuery, CalibRows, Calibrator};

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
/// Misses per sample answer a setting that missed none may still have
/// (the rule of three): a held-out calibration of 64 sample queries on a
/// 2-partition collection (320 answers) trusts no setting beyond 0.991
/// before [`HELD_OUT_GAP`], 0.972 after, so higher targets scan exactly
/// until real queries measure the index.
pub const ZERO_MISS_BOUND: f32 = 3.0;
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

/// The metrics in [`metric_index`] order.
pub const METRICS: [Metric; 3] = [Metric::L2, Metric::Dot, Metric::Cosine];

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
    /// Per setting, the variance over queries of one query's recall@10
    /// (empty: not measured; the margin then treats a query's 10 answers
    /// as independent).
    pub query_var: [Vec<f32>; 3],
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

/// Whether the point answering as `key` (a build's row number, an
/// installed index's point id) belongs to the pseudo-random `share`
/// percent of points a filtered calibration admits.
pub fn in_share(key: u64, share: u32) -> bool {
    if share >= 100 {
        return true;
    }
    // The first splitmix64 output seeded with the key.
    let mut state = key;
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
        // A setting that missed nothing on the sample is not thereby
        // perfect: with no miss in n answers, the miss rate is still up to
        // 3 / n (the rule of three, ~95 % one-sided). Taken at face value,
        // a held-out sample that a wide walk answered in full certified
        // any target, 0.99 included, whatever the discount, and keyword
        // queries then got 0.966 (docs/benchmarks.md, "A second corpus").
        let r = self.recall[m].get(i).copied().unwrap_or(0.0).min(1.0 - ZERO_MISS_BOUND / self.answers(m));
        if real {
            r
        } else {
            (1.0 - (1.0 - r) * HELD_OUT_GAP).max(0.0)
        }
    }

    /// Answers behind metric `m`'s recall: each sample query contributes
    /// about 10 / parts of the collection's top 10.
    fn answers(&self, m: usize) -> f32 {
        (self.samples[m].max(1) * CALIB_K) as f32 / self.parts.max(1) as f32
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

    /// How much wider the spread of the recall estimate at step `i` is
    /// than if a query's 10 answers were 10 independent samples (the
    /// design effect: a hard query misses several at once). Measured on
    /// debian-minilm at recall@10 ~0.96: 4.3.
    fn design_effect(&self, m: usize, i: usize) -> f32 {
        let Some(&var) = self.query_var[m].get(i) else { return 1.0 };
        let Some(ranks) = self.by_rank[m].get(i) else { return 1.0 };
        let r10 = ranks.iter().sum::<f32>() / CALIB_K as f32;
        let binomial = r10 * (1.0 - r10) / CALIB_K as f32;
        if binomial <= 0.0 {
            return 1.0;
        }
        (var / binomial).clamp(1.0, CALIB_K as f32)
    }

    fn choose_as(&self, metric: Metric, target: f32, filtered: bool) -> Option<(usize, f32, f32)> {
        let m = metric_index(metric);
        let real = self.real[m] >= MIN_REAL && !filtered;
        // Each query contributes about 10 / parts answers to the estimate,
        // which are not independent: the binomial variance is widened by
        // the design effect measured at the setting.
        let answers = self.answers(m);
        let meets = |r: f32, deff: f32| r - (deff * r * (1.0 - r) / answers).sqrt() >= target;
        let i = (0..self.ladder.len()).find(|&i| meets(self.trusted_as(m, i, real), self.design_effect(m, i)))?;
        let deff = self.design_effect(m, i).max(if i == 0 { 1.0 } else { self.design_effect(m, i - 1) });
        // Between the step below (which fell short) and this one, the
        // smallest setting whose interpolated recall meets the target: the
        // graph's steps are 1.3-1.6x apart, and the step up alone delivered
        // 0.96-0.97 on debian-minilm for a target of 0.95. Along the line
        // between the two the test flips once, so a binary search finds it
        // (this runs per partition per search; IVF's last gap spans
        // hundreds of probe counts).
        let (mut lo, mut hi) = (if i == 0 { self.ladder[0] } else { self.ladder[i - 1] + 1 }, self.ladder[i]);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if meets(self.at_as(m, mid, real).0, deff) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let (r, cost) = self.at_as(m, hi, real);
        Some((hi, r, cost))
    }

    /// Trusted recall and cost for a setting (ascending ladder): at a step
    /// as measured; between two steps on the straight line joining them
    /// (recall grows with diminishing returns as a search widens, so that
    /// line lies at or below the true curve: the estimate errs low); past
    /// the last step, the last; below the first, no recall is known (0).
    fn at_as(&self, m: usize, setting: usize, real: bool) -> (f32, f32) {
        let cost = |i: usize| self.cost_ns.get(i).copied().unwrap_or(f32::INFINITY);
        let Some(hi) = self.ladder.iter().position(|&n| n >= setting) else {
            let last = self.ladder.len().saturating_sub(1);
            return (self.trusted_as(m, last, real), cost(last));
        };
        if self.ladder[hi] == setting {
            return (self.trusted_as(m, hi, real), cost(hi));
        }
        if hi == 0 {
            return (0.0, cost(0));
        }
        let (a, b) = (self.ladder[hi - 1] as f32, self.ladder[hi] as f32);
        let t = (setting as f32 - a) / (b - a);
        let lerp = |x: f32, y: f32| x + (y - x) * t;
        let (c0, c1) = (cost(hi - 1), cost(hi));
        let c = if c0.is_finite() && c1.is_finite() { lerp(c0, c1) } else { f32::INFINITY };
        (lerp(self.trusted_as(m, hi - 1, real), self.trusted_as(m, hi, real)), c)
    }

    /// Trusted recall for any setting (see [`Calibration::at`]).
    pub fn recall_at(&self, metric: Metric, setting: usize) -> f32 {
        self.at(metric, setting, false).0
    }

    /// Trusted recall and ns per query for any setting, interpolated
    /// between the ladder's steps; `filtered` as in
    /// [`Calibration::choose_filtered`].
    pub fn at(&self, metric: Metric, setting: usize, filtered: bool) -> (f32, f32) {
        let m = metric_index(metric);
        self.at_as(m, setting, self.real[m] >= MIN_REAL && !filtered)
    }

    /// Take over the metrics `fresh` measured on at least [`MIN_REAL`]
    /// real queries (recall and cost: real queries are what is served);
    /// the other metrics, the filtered tables and the ladder stay.
    pub fn merge_real(&mut self, fresh: Calibration) {
        let mut any = false;
        for m in 0..3 {
            if fresh.real[m] >= MIN_REAL && fresh.by_rank[m].len() == self.ladder.len() {
                self.by_rank[m] = fresh.by_rank[m].clone();
                self.query_var[m] = fresh.query_var[m].clone();
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

    /// On tables whose recall rises with the setting, `choose` is the
    /// smallest setting from the first step whose interpolated recall
    /// meets the target (the binary search equals a scan).
    #[test]
    fn choose_is_the_smallest_setting_meeting_the_target() {
        let mut state = 7u64;
        let mut unit = || (splitmix64(&mut state) >> 11) as f32 / (1u64 << 53) as f32;
        for _ in 0..300 {
            let ladder = vec![1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 740];
            let mut r = 0.3 * unit();
            let recalls: Vec<f32> = ladder
                .iter()
                .map(|_| {
                    r += (1.0 - r) * unit() * 0.5;
                    r
                })
                .collect();
            let mut c = Calibration { ladder: ladder.clone(), samples: [64; 3], ..Default::default() };
            c.cost_ns = ladder.iter().map(|&n| n as f32).collect();
            c.by_rank = std::array::from_fn(|_| recalls.iter().map(|&r| [r; CALIB_K]).collect());
            c.real = [MIN_REAL; 3];
            c.apply_parts(2);
            let target = 0.5 + 0.5 * unit();
            let samples = (64 * CALIB_K) as f32 / 2.0;
            let meets = |r: f32| r - (r * (1.0 - r) / samples).sqrt() >= target;
            let scan = (1..=740).find(|&s| meets(c.recall_at(Metric::Dot, s)));
            assert_eq!(c.choose(Metric::Dot, target).map(|x| x.0), scan, "{recalls:?} target {target}");
        }
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
        // 0.98 on held-out points counts as 1 - 0.02 * HELD_OUT_GAP = 0.94,
        // short of 0.95; 1.0 over 640 answers as at most 1 - 3 / 640 missed
        // (ZERO_MISS_BOUND), discounted: 1 - 3 * 3 / 640 = 0.98594. Between
        // ef 16 and 32 recall is read on the line joining the two: 0.96010
        // at ef 23, less one standard error over 640 answers (0.0077) is
        // 0.9524, the first to meet 0.95 (ef 22: 0.95723 - 0.0080).
        let top = 1.0 - HELD_OUT_GAP * ZERO_MISS_BOUND / 640.0;
        let (ef, recall, cost) = c.choose(Metric::L2, 0.95).expect("ef 32 meets it");
        assert_eq!(ef, 23);
        let want = 0.94 + (top - 0.94) * 7.0 / 16.0;
        assert!((recall - want).abs() < 1e-5 && (cost - (1.0 + 7.0 / 16.0)).abs() < 1e-5, "{recall} {cost}");
        assert_eq!(c.at(Metric::L2, 23, false), (recall, cost));
        // No setting is trusted past `top` on 64 held-out queries.
        assert_eq!(c.choose(Metric::L2, 0.985), None);
        assert!((c.recall_at(Metric::L2, 16) - (1.0 - 0.02 * HELD_OUT_GAP)).abs() < 1e-5);
        assert_eq!(c.recall_at(Metric::L2, 8), 0.0, "below the ladder nothing is known");
        assert!((c.recall_at(Metric::L2, 64) - top).abs() < 1e-6, "past the ladder, its last step");
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
        assert_eq!(c.choose(Metric::Cosine, 0.95).map(|x| x.0), Some(23));
        assert_eq!(c.real_basis(Metric::Cosine), None);
        assert_eq!(c.cost_ns, vec![3.0, 5.0], "costs measured on real queries");
    }
}
