//! Running a calibration: each sample or real query scanned exactly over
//! the rows (16 queries per pass), then answered through the index under
//! test at the ladder's settings, in bounded steps; `finish` turns the
//! tallies into a [`Calibration`].

use super::{in_share, metric_index, Calibration, RealQueries, CALIB_K, METRICS, UNIT_NORM_TOL};
use crate::math::distance::{kernels, Metric};
use crate::math::key::{key_from_dot, norm};
use crate::math::topk::{Scored, TopK};

/// Rows a calibration scans for the exact answers: a build's rows
/// (answers keyed by row number) or a partition's own rows (keyed by point
/// id, for recalibrating an installed index), in the order the scan reads
/// them (a memory-light partition's: its rows file's, so the scan reads
/// the file in runs). Sample points are named by their probe number (a
/// build's row, a partition's slot), which need not be a scan position.
pub trait CalibRows {
    fn rows(&self) -> usize;
    fn row_at(&self, r: usize) -> &[f32];
    fn norm_at(&self, r: usize) -> f32;
    /// The key the index under test answers with for row `r`.
    fn answer_id(&self, r: usize) -> u64;
    /// Whether scan position `r` holds a point (a free file row does not).
    fn present(&self, _r: usize) -> bool {
        true
    }
    /// The row of sample point `probe`.
    fn probe_row(&self, probe: usize) -> &[f32] {
        self.row_at(probe)
    }
    /// The answer key of sample point `probe`.
    fn probe_id(&self, probe: usize) -> u64 {
        self.answer_id(probe)
    }
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
    /// Its answer key.
    me_id: Option<u64>,
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
/// into `hits`; returns how many of them it holds. A point of `found`
/// that the exact answer left out but that lies at the same distance as a
/// missed one (a duplicate vector: among equals the exact answer keeps the
/// lowest ids, an index any of them) stands in for it: it is as near.
fn tally(truth: &[Scored], found: &[Scored], hits: &mut [u32; CALIB_K]) -> usize {
    let mut spare: Vec<f32> = found.iter().filter(|s| !truth.iter().any(|t| t.id == s.id)).map(|s| s.key).collect();
    let mut held = 0;
    for (j, t) in truth.iter().enumerate() {
        let tie = |&k: &f32| (k - t.key).abs() <= TIE * (1.0 + t.key.abs());
        let hit =
            found.iter().any(|s| s.id == t.id) || spare.iter().position(tie).map(|i| spare.swap_remove(i)).is_some();
        if hit {
            hits[j] += 1;
            held += 1;
        }
    }
    held
}

/// One query's recall@10 when its answer held `held` of `truth`'s points.
fn query_recall(held: usize, truth: &[Scored]) -> f64 {
    if truth.is_empty() {
        1.0
    } else {
        held as f64 / truth.len() as f64
    }
}

/// Every this many evaluations (a query under one metric) walks the whole
/// ladder (the others stop once two rungs in a row found their whole
/// answer), so every rung's cost is measured.
const FULL_LADDER_EVERY: usize = 8;

/// Longest an index search of a calibration may be expected to take (one
/// query at one setting is one step of the background work, not divisible):
/// on a ~755,000-point partition, graph walks with a tenth of the points
/// admitted took 65-107 ms at the ladder's widest beams, each a stall of
/// the shard. A wider setting whose predicted time (this one's, in
/// proportion to the setting) is past it is not measured.
const WALK_BUDGET_NS: f64 = 16e6;

/// One query of a calibration, for the index under test.
pub struct CalibQuery<'a> {
    pub query: &'a [f32],
    pub metric: Metric,
    /// Row excluded from the answers (`usize::MAX`: none).
    pub me: usize,
    /// First ladder rung wanted, and the ladder.
    pub rung: usize,
    pub ladder: &'a [usize],
    /// The query's exact answer (what its recall is counted against).
    pub truth: &'a [Scored],
}

impl CalibQuery<'_> {
    /// The key of answer `id` as the walk's re-rank would score it, taken
    /// from the exact answer instead of the row (`f32::MAX` outside it).
    /// Recall is counted against that answer, and a candidate outside it
    /// cannot displace one inside it, so a walk keyed this way finds what
    /// a walk that reads every candidate's row finds, and reads no row (a
    /// memory-light partition's rows are on disk).
    pub fn known_key(&self, id: u64) -> f32 {
        self.truth.iter().find(|s| s.id == id).map_or(f32::MAX, |s| s.key)
    }
}

/// Runs a calibration in bounded steps.
pub struct Calibrator {
    probes: Vec<usize>,
    /// Answer ids left out of the exact answers (not in the index under
    /// test), ascending.
    held_out: Vec<u64>,
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
    /// Per metric and rung: the sum of the queries' recall@10 and of its
    /// square (`[0]` sample points, `[1]` real queries): how much single
    /// queries' recall spreads, which the margin of `choose` needs (the
    /// misses of one query come together, so its 10 answers are not 10
    /// independent samples).
    moments: [[Vec<(f64, f64)>; 3]; 2],
    /// Per metric: evaluations finished (`[0]` sample points, `[1]` real
    /// queries).
    evaluated: [[u32; 3]; 2],
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
    /// Queries whose climb stopped at [`WALK_BUDGET_NS`].
    walks_cut: usize,
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
            moments: std::array::from_fn(|_| std::array::from_fn(|_| vec![(0.0, 0.0); ladder.len()])),
            evaluated: [[0; 3]; 2],
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
            walks_cut: 0,
        }
    }

    /// Leave the points answering as `held_out` out of the exact answers:
    /// the index under test holds none of them (HNSW inserts its probe rows
    /// after calibrating, and a held-out recalibration keeps its probe
    /// points out of the graph until it ends, so the sample queries are as
    /// unseen as real ones, and real queries measured on the same graph
    /// must not find them).
    pub fn hold_out(&mut self, mut held_out: Vec<u64>) {
        held_out.sort_unstable();
        self.held_out = held_out;
    }

    /// Admit only the points whose answer id is `in_share(id, share)` to
    /// the exact answers (the index under test must admit the same ones).
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

    /// Queries whose climb up the ladder stopped where the next setting
    /// would have taken longer than [`WALK_BUDGET_NS`].
    pub fn walks_cut(&self) -> usize {
        self.walks_cut
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
        let q = CalibQuery { query: &cur.query, metric, me: cur.me, rung: cur.rung, ladder: &self.ladder, truth };
        let answers = eval(&q);
        let (src, mi) = (cur.real as usize, metric_index(metric));
        let hits = &mut self.hits[src][mi];
        let moments = &mut self.moments[src][mi];
        for (found, ns) in answers.into_iter().take(self.ladder.len() - cur.rung) {
            let held = tally(truth, &found, &mut hits[cur.rung]);
            let r = query_recall(held, truth);
            let mo = &mut moments[cur.rung];
            *mo = (mo.0 + r, mo.1 + r * r);
            let all = held == truth.len();
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
                for mo in &mut moments[cur.rung..] {
                    *mo = (mo.0 + 1.0, mo.1 + 1.0);
                }
                cur.rung = self.ladder.len();
                break;
            }
            // The next rung would take longer than a step may: it is not
            // run, nor any above it; they count as misses for this query
            // (so `auto` trusts them less and scans exactly instead) and
            // are costed in proportion to their setting.
            if let Some(&next) = self.ladder.get(cur.rung) {
                let per_setting = ns as f64 / self.ladder[cur.rung - 1].max(1) as f64;
                if per_setting * next as f64 > WALK_BUDGET_NS {
                    for (i, c) in self.cost.iter_mut().enumerate().skip(cur.rung) {
                        *c = (c.0 + per_setting * self.ladder[i] as f64, c.1 + 1);
                    }
                    self.walks_cut += 1;
                    cur.rung = self.ladder.len();
                    break;
                }
            }
        }
        if cur.rung == self.ladder.len() {
            self.evals += 1;
            self.evaluated[src][mi] += 1;
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
            if !rows.present(r) {
                continue;
            }
            let id = rows.answer_id(r);
            if !in_share(id, self.share) || self.held_out.binary_search(&id).is_ok() {
                continue;
            }
            let (row, norm) = (rows.row_at(r), rows.norm_at(r));
            self.unit &= (norm - 1.0).abs() <= UNIT_NORM_TOL;
            for cur in self.scanning.iter_mut().filter(|c| c.me_id != Some(id)) {
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
            let mut query = rows.probe_row(r).to_vec();
            // Every other sample query is the midpoint of two sample points:
            // it sits between the data's dense places, where queries written
            // unlike the stored texts land (their nearest points are farther
            // than a stored point's), not on top of a stored point.
            if self.job % 2 == 1 {
                let other = rows.probe_row(self.probes[self.job - 1]);
                query.iter_mut().zip(other).for_each(|(q, o)| *q = 0.5 * (*q + *o));
            }
            (query, METRICS.to_vec(), Some(r), false)
        } else {
            let (m, q) = self.real.queries.get(self.job - self.probes.len())?;
            let others = METRICS.into_iter().filter(|o| o != m && self.real.metrics[metric_index(*o)]);
            (q.clone(), std::iter::once(*m).chain(others).collect(), None, true)
        };
        self.job += 1;
        let q_norm = norm(&query);
        Some(Box::new(Job {
            query,
            q_norm,
            exact: metrics.iter().map(|_| TopK::new(CALIB_K)).collect(),
            metrics,
            real,
            me: me.unwrap_or(usize::MAX),
            me_id: me.map(|r| rows.probe_id(r)),
            scanned: 0,
            truths: None,
            at: 0,
            rung: 0,
            streak: 0,
        }))
    }

    /// The calibrations of one held-out sample `probes` (the points
    /// answering as `held`, which the index under test does not hold):
    /// unfiltered, then with each of `shares` percent of the points
    /// admitted, as filters admit them. [`Calibrator::finish_set`] turns
    /// them into one calibration.
    pub fn held_out_set(probes: &[usize], held: &[u64], ladder: &[usize], shares: &[u32]) -> Vec<Calibrator> {
        std::iter::once(100)
            .chain(shares.iter().copied())
            .map(|share| {
                let mut c = Calibrator::new(probes.to_vec(), RealQueries::default(), ladder.to_vec());
                c.hold_out(held.to_vec());
                c.admit_share(share);
                c
            })
            .collect()
    }

    /// The calibration a [`Calibrator::held_out_set`] measured: the
    /// unfiltered one, with the others as its `by_share` tables (`None`:
    /// an empty set).
    pub fn finish_set(set: Vec<Calibrator>) -> Option<Calibration> {
        let mut set = set.into_iter().map(|c| (c.share(), c.finish()));
        let (_, mut calibration) = set.next()?;
        calibration.by_share = set.collect();
        Some(calibration)
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
            let n = self.evaluated[0][m] + from.iter().map(|&f| self.evaluated[1][f]).sum::<u32>();
            c.query_var[m] = (0..c.ladder.len())
                .map(|i| {
                    let (s1, s2) = std::iter::once(self.moments[0][m][i])
                        .chain(from.iter().map(|&f| self.moments[1][f][i]))
                        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
                    let n = n.max(1) as f64;
                    (s2 / n - (s1 / n).powi(2)).max(0.0) as f32
                })
                .collect();
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

#[cfg(test)]
mod tests {
    use super::super::{Dense, Rows, MIN_REAL};
    use super::*;
    use crate::math::rng::splitmix64;

    #[test]
    fn a_duplicate_at_the_same_distance_counts_for_the_point_it_ties_with() {
        let s = |id, key| Scored { key, id };
        // Exact answer: 1 and 2 are copies of one vector (key 0.5), then 3.
        let truth = [s(1, 0.5), s(2, 0.5), s(3, 0.7)];
        let mut hits = [0; CALIB_K];
        // Another copy (7) found instead of 2: as near, so rank 1 holds.
        assert_eq!(tally(&truth, &[s(1, 0.5), s(7, 0.5 + 1e-6), s(3, 0.7)], &mut hits), 3);
        assert_eq!(hits[..3], [1, 1, 1]);
        // A point farther than the one it replaces does not stand in, and
        // one stand-in covers one missed rank only.
        let mut hits = [0; CALIB_K];
        assert_eq!(tally(&truth, &[s(7, 0.5), s(8, 0.6), s(9, 0.71)], &mut hits), 1);
        assert_eq!(hits[..3], [1, 0, 0]);
        // Ids found: no key needed.
        let mut hits = [0; CALIB_K];
        assert_eq!(tally(&truth, &[s(3, 0.0), s(2, 9.0), s(1, 9.0)], &mut hits), 3);
        assert_eq!(hits[..3], [1, 1, 1]);
    }

    /// Two indexes with the same mean recall, one missing a little of every
    /// answer and one missing much of every other answer: the second's
    /// estimate is less certain (a hard query's misses come together), so
    /// `auto` trusts its cheap setting less.
    #[test]
    fn the_spread_of_single_queries_widens_the_margin() {
        let (n, dim) = (200usize, 8usize);
        let mut s = 5u64;
        let raw: Vec<f32> = (0..n * dim).map(|_| (splitmix64(&mut s) % 1000) as f32 / 500.0 - 1.0).collect();
        let queries: Vec<(Metric, Vec<f32>)> = (0..MIN_REAL)
            .map(|i| (Metric::L2, raw[i * dim..(i + 1) * dim].iter().map(|x| x + 0.01).collect()))
            .collect();
        // At the first rung each query finds `kept(i)` of its 10 nearest.
        let measure = |kept: &dyn Fn(usize) -> usize| {
            let dense = Dense::new(raw.clone(), dim);
            let rows = Rows::new((0..n as u64).collect(), dim);
            let rows = rows.at(&dense);
            let real = RealQueries { queries: queries.clone(), metrics: [true, false, false] };
            let mut cal = Calibrator::new(Vec::new(), real, vec![1, 2]);
            let mut asked = 0;
            while !cal.step(&rows, 1000, |q: &CalibQuery| {
                let mut top = TopK::new(CALIB_K);
                for r in 0..n {
                    let d = (kernels().dot)(q.query, rows.row(r));
                    top.push(Scored { key: key_from_dot(q.metric, d, norm(q.query), rows.norm(r)), id: r as u64 });
                }
                let found = top.into_sorted();
                let first = kept(asked);
                asked += 1;
                (q.rung..q.ladder.len())
                    .map(|rung| (found[..if rung == 0 { first } else { 10 }].to_vec(), 1.0))
                    .collect()
            }) {}
            cal.finish()
        };
        let even = measure(&|_| 8);
        let uneven = measure(&|i| if i % 2 == 0 { 6 } else { 10 });
        for c in [&even, &uneven] {
            assert!((c.recall_at(Metric::L2, 1) - 0.8).abs() < 1e-6, "{:?}", c.recall[0]);
            assert_eq!(c.query_var[0][1], 0.0, "every query found everything at the second rung");
        }
        assert!(even.query_var[0][0] < 1e-9, "{:?}", even.query_var[0]);
        assert!((uneven.query_var[0][0] - 0.04).abs() < 1e-6, "{:?}", uneven.query_var[0]);
        // 640 answers: as independent samples, 0.8 is 0.0158 uncertain and
        // meets 0.78; spread as measured (design effect 0.04 / 0.016 = 2.5)
        // 0.025, and only the second rung does.
        assert_eq!(even.choose(Metric::L2, 0.78).map(|x| x.0), Some(1));
        assert_eq!(uneven.choose(Metric::L2, 0.78).map(|x| x.0), Some(2));
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

    /// The ladder of the two tests below.
    const LADDER: [usize; 5] = [1, 2, 4, 8, 16];

    /// Calibrate [`LADDER`] with 16 sample points of a fixed 300 x 4 data
    /// set; each index search is answered by `answer`, given the query and
    /// its exact answer (scored as the calibration's exact scan scores:
    /// ties and rounding alike).
    fn calibrate(mut answer: impl FnMut(&CalibQuery, Vec<Scored>) -> (Vec<Scored>, f32)) -> Calibrator {
        let (n, dim) = (300usize, 4usize);
        let data: Vec<f32> = (0..n * dim).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let dense = Dense::new(data, dim);
        let rows = Rows::new((0..n as u64).collect(), dim);
        let rows = rows.at(&dense);
        let probes: Vec<usize> = (0..16).collect();
        let mut cal = Calibrator::new(probes, RealQueries::default(), LADDER.to_vec());
        while !cal.step(&rows, 1000, |q: &CalibQuery| {
            let mut top = TopK::new(CALIB_K);
            for r in (0..n).filter(|&r| r != q.me) {
                let d = (kernels().dot)(q.query, rows.row(r));
                top.push(Scored { key: key_from_dot(q.metric, d, norm(q.query), rows.norm(r)), id: r as u64 });
            }
            vec![answer(q, top.into_sorted())]
        }) {}
        cal
    }

    /// A calibration of an index that always finds the exact answer runs
    /// two rungs for most queries, the whole ladder for every eighth, and
    /// still measures recall 1 and a cost for every rung, never less for
    /// a wider one.
    #[test]
    fn queries_answered_fully_twice_stop_climbing() {
        let mut runs = 0usize;
        let cal = calibrate(|q, exact| {
            runs += 1;
            // Rung 1 (setting 2) is slowed by something else each time.
            let cost = if q.rung == 1 { 1e6 } else { 1000.0 * q.ladder[q.rung] as f32 };
            (exact, cost)
        });
        let jobs = 16usize * 3;
        let full = jobs.div_ceil(FULL_LADDER_EVERY);
        assert_eq!(runs, full * LADDER.len() + (jobs - full) * 2);
        let c = cal.finish();
        assert!(c.recall.iter().all(|r| r.iter().all(|&x| x == 1.0)), "{:?}", c.recall);
        // A rung measured dearer than the one above it takes that cost.
        assert_eq!(c.cost_ns, vec![1000.0, 4000.0, 4000.0, 8000.0, 16000.0]);
    }

    /// An index whose searches take 3 ms per unit of setting: settings 1,
    /// 2 and 4 run (the last 12 ms), 8 would take 24 ms, past the budget,
    /// so neither it nor 16 runs; they count as misses although the index
    /// would have found everything there, and are costed in proportion.
    #[test]
    fn settings_past_the_walk_budget_are_not_run_and_not_trusted() {
        let mut widest = 0;
        let cal = calibrate(|q, mut exact| {
            widest = widest.max(q.ladder[q.rung]);
            // Below setting 8 the search misses its last answer.
            if q.ladder[q.rung] < 8 {
                exact.pop();
            }
            (exact, 3e6 * q.ladder[q.rung] as f32)
        });
        assert_eq!(widest, 4);
        assert_eq!(cal.walks_cut(), 16 * 3);
        let c = cal.finish();
        for m in 0..3 {
            assert!((c.recall[m][2] - 0.9).abs() < 1e-6, "{:?}", c.recall[m]);
            assert_eq!(c.recall[m][3..], [0.0, 0.0]);
        }
        assert_eq!(c.cost_ns, vec![3e6, 6e6, 12e6, 24e6, 48e6]);
    }
}
