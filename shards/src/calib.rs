//! What index builds share: the copy of a partition's rows a build works
//! on, and the calibration that measures an index against exact answers.
//!
//! Calibration runs sample queries (points of the partition, each excluded
//! from its own answers, for every metric, plus a reservoir of recent real
//! queries, each for its own metric) exactly and through the index at every
//! setting of a ladder (IVF: probe counts; HNSW: beam widths), recording
//! recall@10 and the time each setting took per query. `auto` then picks
//! the cheapest setting whose recall clears the target.

use crate::distance::Metric;
use crate::ivf::exact_key;
use crate::topk::{Scored, TopK};

/// recall@k measured by calibration.
pub const CALIB_K: usize = 10;
/// Sample points used as calibration queries.
pub const CALIB_QUERIES: usize = 64;
/// Rows handed over per copy step (about 400 KB at 384 dimensions, well
/// under a millisecond).
const COPY_ROWS: usize = 256;

pub fn metric_index(m: Metric) -> usize {
    match m {
        Metric::L2 => 0,
        Metric::Dot => 1,
        Metric::Cosine => 2,
    }
}

const METRICS: [Metric; 3] = [Metric::L2, Metric::Dot, Metric::Cosine];

/// A calibration as rows: (setting, [recall l2, dot, cosine], ns per query).
pub type CalibTable = Vec<(usize, [f32; 3], f32)>;

/// Measured recall@10 and cost per setting, per metric (l2, dot, cosine).
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    /// The settings, ascending (more work, more recall).
    pub ladder: Vec<usize>,
    pub recall: [Vec<f32>; 3],
    /// Mean nanoseconds per query at each setting (all metrics).
    pub cost_ns: Vec<f32>,
    /// Queries the recall was measured over, per metric: collection points
    /// for every metric, plus the recent real queries of that metric.
    pub samples: [usize; 3],
    /// How many of those were real queries (all metrics).
    pub real_queries: usize,
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
    let mut z = (r as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) % 100) < share as u64
}

impl Calibration {
    /// The calibration for searches whose filter admits `fraction` of the
    /// points: the measured share nearest at or below it (`None` below the
    /// smallest share measured); unfiltered searches use `self`.
    pub fn for_fraction(&self, fraction: f64) -> Option<&Calibration> {
        if fraction >= 1.0 {
            return Some(self);
        }
        self.by_share.iter().rev().find(|(share, _)| *share as f64 <= fraction * 100.0 + 1e-9).map(|(_, c)| c)
    }

    /// The smallest setting whose measured recall meets `target` with a
    /// margin of one standard error of the measurement (so a setting that
    /// only just met it on the sample is not trusted), with its measured
    /// recall and cost; `None` if none does.
    pub fn choose(&self, metric: Metric, target: f32) -> Option<(usize, f32, f32)> {
        let r = &self.recall[metric_index(metric)];
        let samples = (self.samples[metric_index(metric)].max(1) * CALIB_K) as f32;
        (0..self.ladder.len())
            .find(|&i| r[i] >= 1.0 || r[i] - (r[i] * (1.0 - r[i]) / samples).sqrt() >= target)
            .map(|i| (self.ladder[i], r[i], self.cost_ns.get(i).copied().unwrap_or(f32::INFINITY)))
    }

    /// Measured recall for a setting (the nearest ladder step at or below
    /// it).
    pub fn recall_at(&self, metric: Metric, setting: usize) -> f32 {
        let r = &self.recall[metric_index(metric)];
        self.ladder.iter().zip(r).rfind(|(&n, _)| n <= setting).map_or(0.0, |(_, &rec)| rec)
    }

    /// Per setting: (setting, [recall l2, dot, cosine], ns per query).
    pub fn table(&self) -> CalibTable {
        (0..self.ladder.len())
            .map(|i| {
                let at = |m: usize| self.recall[m].get(i).copied().unwrap_or(0.0);
                (self.ladder[i], [at(0), at(1), at(2)], self.cost_ns.get(i).copied().unwrap_or(0.0))
            })
            .collect()
    }
}

/// A copy of a partition's rows, taken in chunks between requests; the
/// row number is the key an index uses while it is built.
pub struct Rows {
    pub dim: usize,
    pub ids: Vec<u64>,
    rows: Vec<f32>,
    norms: Vec<f32>,
}

impl Rows {
    pub fn new(ids: Vec<u64>, dim: usize) -> Rows {
        let n = ids.len();
        Rows { dim, rows: Vec::with_capacity(n * dim), norms: Vec::with_capacity(n), ids }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Copy the next chunk; `get` gives a point's current row and norm
    /// (`None`: deleted since the build started: such points are searched
    /// through the changed-points path anyway). `true` once complete.
    pub fn copy<'a>(&mut self, get: impl Fn(u64) -> Option<(&'a [f32], f32)>) -> bool {
        let start = self.norms.len();
        let end = (start + COPY_ROWS).min(self.ids.len());
        for &id in &self.ids[start..end] {
            match get(id) {
                Some((row, norm)) => {
                    self.rows.extend_from_slice(row);
                    self.norms.push(norm);
                }
                None => {
                    self.rows.resize(self.rows.len() + self.dim, 0.0);
                    self.norms.push(0.0);
                }
            }
        }
        end == self.ids.len()
    }

    #[inline]
    pub fn row(&self, r: usize) -> &[f32] {
        &self.rows[r * self.dim..(r + 1) * self.dim]
    }

    #[inline]
    pub fn norm(&self, r: usize) -> f32 {
        self.norms[r]
    }

    /// The exact key of row `r` for `q`.
    #[inline]
    pub fn key(&self, metric: Metric, q: &[f32], r: usize) -> f32 {
        exact_key(metric, q, self.row(r), self.norms[r])
    }
}

/// One calibration query in progress: first an exact scan of the copy (in
/// chunks), then the index (one or more ladder settings per step).
struct Job {
    query: Vec<f32>,
    metric: Metric,
    /// The query's own row (excluded from its answers), or `usize::MAX`.
    me: usize,
    exact: TopK,
    scanned: usize,
    truth: Option<Vec<u64>>,
    rung: usize,
}

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
    real: Vec<(Metric, Vec<f32>)>,
    ladder: Vec<usize>,
    hits: [Vec<u32>; 3],
    cost: Vec<(f64, u32)>,
    job: usize,
    cur: Option<Box<Job>>,
}

impl Calibrator {
    /// Calibrate `ladder` with the rows `probes` and the real queries `real`.
    pub fn new(probes: Vec<usize>, real: Vec<(Metric, Vec<f32>)>, ladder: Vec<usize>) -> Calibrator {
        Calibrator {
            held_out: Vec::new(),
            share: 100,
            done: false,
            hits: std::array::from_fn(|_| vec![0; ladder.len()]),
            cost: vec![(0.0, 0); ladder.len()],
            probes,
            real,
            ladder,
            job: 0,
            cur: None,
        }
    }

    /// Leave the probe rows out of the exact answers too: the index under
    /// test holds none of them (HNSW inserts them after calibrating, so its
    /// sample queries are as unseen as real ones).
    pub fn hold_out_probes(&mut self, rows: usize) {
        self.held_out = vec![false; rows];
        self.probes.iter().for_each(|&r| self.held_out[r] = true);
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
    pub fn step(
        &mut self,
        rows: &Rows,
        scan_rows: usize,
        eval: impl FnOnce(&CalibQuery) -> Vec<(Vec<Scored>, f32)>,
    ) -> bool {
        let Some(mut cur) = self.cur.take().or_else(|| self.next_job(rows)) else {
            self.done = true;
            return true;
        };
        let Some(truth) = &cur.truth else {
            let end = (cur.scanned + scan_rows).min(rows.len());
            for r in cur.scanned..end {
                if r != cur.me && !self.held_out.get(r).copied().unwrap_or(false) && in_share(r, self.share) {
                    cur.exact.push(Scored { key: rows.key(cur.metric, &cur.query, r), id: r as u64 });
                }
            }
            cur.scanned = end;
            if end == rows.len() {
                let exact = std::mem::replace(&mut cur.exact, TopK::new(0));
                cur.truth = Some(exact.into_sorted().into_iter().map(|s| s.id).collect());
            }
            self.cur = Some(cur);
            return false;
        };
        let answers = eval(&CalibQuery {
            query: &cur.query,
            metric: cur.metric,
            me: cur.me,
            rung: cur.rung,
            ladder: &self.ladder,
        });
        for (found, ns) in answers.into_iter().take(self.ladder.len() - cur.rung) {
            let hit = found.iter().filter(|s| truth.contains(&s.id)).count();
            self.hits[metric_index(cur.metric)][cur.rung] += hit as u32;
            let c = &mut self.cost[cur.rung];
            *c = (c.0 + ns as f64, c.1 + 1);
            cur.rung += 1;
        }
        if cur.rung < self.ladder.len() {
            self.cur = Some(cur);
        } else {
            self.job += 1;
        }
        false
    }

    /// Job `job`: probe point `job / 3` for each metric in turn, then the
    /// real queries; `None` once all are done.
    fn next_job(&self, rows: &Rows) -> Option<Box<Job>> {
        let probe_jobs = self.probes.len() * 3;
        let (query, metric, me) = if self.job < probe_jobs {
            let r = self.probes[self.job / 3];
            (rows.row(r).to_vec(), METRICS[self.job % 3], r)
        } else {
            let (m, q) = self.real.get(self.job - probe_jobs)?;
            (q.clone(), *m, usize::MAX)
        };
        Some(Box::new(Job { query, metric, me, exact: TopK::new(CALIB_K), scanned: 0, truth: None, rung: 0 }))
    }

    /// The measured recall and cost per setting.
    pub fn finish(self) -> Calibration {
        let mut c = Calibration {
            ladder: self.ladder,
            cost_ns: self.cost.iter().map(|&(sum, n)| (sum / n.max(1) as f64) as f32).collect(),
            real_queries: self.real.len(),
            ..Default::default()
        };
        for (m, metric) in METRICS.into_iter().enumerate() {
            let n = self.probes.len() + self.real.iter().filter(|(rm, _)| *rm == metric).count();
            c.samples[m] = n;
            c.recall[m] = self.hits[m].iter().map(|&h| h as f32 / (n * CALIB_K).max(1) as f32).collect();
        }
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
