//! Running a calibration: each sample or real query scanned exactly over
//! the rows ([`SCAN_BATCH`] queries per pass), then answered through the index under
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

/// Queries whose exact answers one pass over the rows finds: a
/// memory-light partition's recalibration on its 256 real queries reads
/// its rows file 256 / this many times (with 16, 8 times: 300 MB for a
/// 25,000-row partition at 384 dimensions, in ~3,000 steps of ~0.25 ms,
/// each blocking its shard on a read). A step scans 64 rows for every
/// query of the pass: ~0.1 ms of arithmetic with 64.
pub(crate) const SCAN_BATCH: usize = 64;

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

    /// Real queries this run measures.
    pub fn real_queries(&self) -> usize {
        self.real.len()
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
#[path = "run_tests.rs"]
mod tests;
