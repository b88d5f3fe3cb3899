//! The search planner of a partition: the one place that decides how a
//! search is answered ([`Partition::plan`]) and the one place that runs the
//! decision up to its exact scans ([`Partition::execute_approximate`]).
//!
//! In order:
//! 1. a filter whose indexed `must` clause leaves at most a tenth of the
//!    points is answered exactly from those candidates (unless a mode
//!    forces an index);
//! 2. an approximate search takes the graph or the IVF lists: the one the
//!    request forces or sets (`ef`, `nprobe`), else (`auto`) the one whose
//!    calibrated setting meets the target recall at the lower cost;
//! 3. everything else, and any approximate search no index can serve
//!    (none built, no setting meets the target, a filter too selective for
//!    the index), scans every row exactly.
//!
//! Whatever the plan, a query that an index answers with fewer than k hits
//! is answered again by the exact scan, so a filter never silently loses
//! results.

use super::{IndexKind, IvfChoice, Partition, SearchParams};
use crate::math::topk::Scored;

/// How a partition answers one search (see the module's rules).
#[derive(Clone, Debug, PartialEq)]
pub enum SearchPlan {
    /// Score these points, the only ones the filter can match.
    Candidates(Vec<u64>),
    /// Walk the graph at beam width `ef`.
    Graph { ef: usize, recall: f32 },
    /// Probe `nprobe` IVF lists.
    Ivf { nprobe: usize, recall: f32 },
    /// Scan every row.
    Exact,
}

/// The hits of one search, with what answered it.
#[derive(Debug)]
pub struct Answer {
    pub per_query: Vec<Vec<Scored>>,
    /// The calibrated recall of the index setting used (approximate only).
    pub estimated_recall: Option<f32>,
    pub index: Option<IndexKind>,
    /// Queries still to be answered by the exact scan, ascending: those an
    /// index answered with fewer than k hits, or every query when no
    /// index answered.
    pub exact: Vec<usize>,
}

/// Cost of scoring one point by id beside an index: fixed part (lookup,
/// the row's first cache misses) and per dimension (an estimate, see
/// [`Partition::exact_points_ns`]).
const EXACT_POINT_NS: f32 = 60.0;
const EXACT_POINT_NS_PER_DIM: f32 = 0.35;

impl Partition {
    /// Decide how to answer a search with `params`; `approx` is the
    /// request's index choice (`None`: exact mode).
    pub fn plan(&self, params: &SearchParams, approx: Option<IvfChoice>) -> SearchPlan {
        let forced = approx.is_some_and(|c| c.forced.is_some());
        if !forced {
            if let Some(candidates) = self.filter_candidates(params) {
                return SearchPlan::Candidates(candidates);
            }
        }
        let Some(choice) = approx else { return SearchPlan::Exact };
        let fraction = self.filter_fraction(params);
        let graph = self.graph_plan(params, &choice, fraction);
        let ivf = || self.ivf_plan(params, &choice, fraction);
        let use_ivf = match choice.forced {
            Some(kind) => kind == IndexKind::Ivf,
            None if choice.ef.is_some() => false,
            None if choice.nprobe.is_some() => true,
            // `auto`: the cheaper of the two that meet the target, each
            // with the points it scores one by one beside the index (its
            // calibrated cost was measured without them).
            None => match (ivf(), graph) {
                (Some((_, _, ivf_cost)), Some((_, _, graph_cost))) => {
                    let ivf_changed = self.ivf.as_ref().map_or(0, |s| s.dirty.len());
                    ivf_cost + self.exact_points_ns(ivf_changed) <= graph_cost + self.graph_pending_ns(params.k)
                }
                (ivf, _) => ivf.is_some(),
            },
        };
        let planned = if use_ivf {
            ivf().map(|(nprobe, recall, _)| SearchPlan::Ivf { nprobe, recall })
        } else {
            graph.map(|(ef, recall, _)| SearchPlan::Graph { ef, recall })
        };
        planned.unwrap_or(SearchPlan::Exact)
    }

    /// Estimated nanoseconds to score `n` points one by one beside an
    /// index (a lookup by id, a row read from memory, its distance): the
    /// IVF lists score every point changed since their build that way,
    /// which under steady ingest grows to a tenth of the partition before
    /// a rebuild (at 384 dimensions, ~0.2 us per point: 17,500 changed
    /// points cost ~3.5 ms, against 0.1-0.5 ms for a graph search).
    pub(super) fn exact_points_ns(&self, n: usize) -> f32 {
        n as f32 * (EXACT_POINT_NS + EXACT_POINT_NS_PER_DIM * self.dim as f32)
    }

    /// Run `plan` for `queries`, the exact scans it leaves included, in one
    /// go (the shard runs those scans in pieces instead, `search_start`).
    #[cfg(test)]
    pub fn execute(&self, plan: &SearchPlan, queries: &[Vec<f32>], params: &SearchParams) -> Answer {
        let mut answer = self.execute_approximate(plan, queries, params);
        if answer.exact.len() == queries.len() {
            answer.per_query = self.search(queries, params);
        } else if !answer.exact.is_empty() {
            let again: Vec<Vec<f32>> = answer.exact.iter().map(|&q| queries[q].clone()).collect();
            for (&q, hits) in answer.exact.iter().zip(self.search(&again, params)) {
                answer.per_query[q] = hits;
            }
        }
        answer.exact.clear();
        answer
    }

    /// Run `plan` for `queries` up to its exact scans: the queries listed
    /// in [`Answer::exact`] have no answer yet (the shard scans for them
    /// in pieces, `shard::ExactScan`).
    pub fn execute_approximate(&self, plan: &SearchPlan, queries: &[Vec<f32>], params: &SearchParams) -> Answer {
        let approximate = match plan {
            SearchPlan::Candidates(c) => {
                let per_query = self.search_candidates(queries, params, c);
                return Answer { per_query, estimated_recall: None, index: None, exact: Vec::new() };
            }
            SearchPlan::Graph { ef, recall } => {
                self.search_graph(queries, params, *ef).map(|found| (found, *recall, IndexKind::Hnsw))
            }
            SearchPlan::Ivf { nprobe, recall } => {
                self.search_ivf(queries, params, *nprobe).map(|found| (found, *recall, IndexKind::Ivf))
            }
            SearchPlan::Exact => None,
        };
        let Some((per_query, recall, kind)) = approximate else {
            let exact = (0..queries.len()).collect();
            return Answer { per_query: vec![Vec::new(); queries.len()], estimated_recall: None, index: None, exact };
        };
        let want = params.k.min(self.len());
        let exact = per_query.iter().enumerate().filter(|(_, hits)| hits.len() < want).map(|(q, _)| q).collect();
        Answer { per_query, estimated_recall: Some(recall), index: Some(kind), exact }
    }

    /// Share of points a filter matches, from up to 512 payloads spread
    /// evenly over the partition (the first ones would be the oldest
    /// writes, which filters on ids or times select unevenly).
    fn filter_fraction(&self, params: &SearchParams) -> f64 {
        let Some(f) = params.filter.filter(|f| !f.is_empty()) else { return 1.0 };
        let stride = (self.payloads.len() / 512).max(1);
        let (mut seen, mut matching) = (0usize, 0usize);
        for p in self.payloads.iter().step_by(stride) {
            seen += 1;
            matching += f.matches(p) as usize;
        }
        matching as f64 / seen.max(1) as f64
    }

    /// (ef, calibrated recall, ns per query) for a graph search; `None`
    /// when the graph should not answer (none built, or `auto` and no
    /// setting meets the target or the filter is too narrow).
    pub(super) fn graph_plan(
        &self,
        params: &SearchParams,
        choice: &IvfChoice,
        fraction: f64,
    ) -> Option<(usize, f32, f32)> {
        let h = self.hnsw.as_ref()?;
        let forced = choice.forced == Some(IndexKind::Hnsw);
        // A filtered walk uses the calibration measured with a share of the
        // points admitted at or below the filter's (10 % or 50 %); `auto`
        // does not walk the graph for narrower filters (a walk visits about
        // ef / share nodes to find ef matches).
        let c = match h.calibration.for_fraction(fraction) {
            Some(c) => c,
            None if forced => h.calibration.by_share.first().map_or(&h.calibration, |(_, c)| c),
            None => return None,
        };
        let widest = *c.ladder.last()?;
        let at = |ef: usize| {
            let (recall, cost) = c.at(params.metric, ef, false);
            (ef, recall, cost)
        };
        match choice.ef {
            Some(ef) => Some(at(ef)),
            None => c.choose(params.metric, choice.target_recall).or_else(|| forced.then(|| at(widest))),
        }
    }

    /// (nprobe, calibrated recall, ns per query) for an IVF search; `None`
    /// when it should be exact instead (no index, or `auto` and no setting
    /// meets the target, or a filter so selective that probing would miss
    /// results).
    pub(super) fn ivf_plan(
        &self,
        params: &SearchParams,
        choice: &IvfChoice,
        fraction: f64,
    ) -> Option<(usize, f32, f32)> {
        let index = &self.ivf.as_ref()?.index;
        let calib = &index.calibration;
        let forced = choice.forced == Some(IndexKind::Ivf);
        // Lists are calibrated unfiltered: a filtered probe trusts them only
        // as far as held-out figures (see `Calibration::choose_filtered`).
        let filtered = fraction < 1.0;
        let at = |n: usize| {
            let n = n.min(index.nlist());
            let (recall, cost) = calib.at(params.metric, n, filtered);
            (n, recall, cost)
        };
        let chosen = if filtered {
            calib.choose_filtered(params.metric, choice.target_recall)
        } else {
            calib.choose(params.metric, choice.target_recall)
        };
        let (nprobe, recall, cost) = match choice.nprobe {
            Some(n) => at(n),
            None => match chosen {
                Some(c) => c,
                None if forced => at(index.nlist()),
                None => return None,
            },
        };
        // Points expected to match among those probed; too few and an exact
        // filtered scan is the safer answer.
        let expected = fraction * self.len() as f64 * nprobe as f64 / index.nlist() as f64;
        if !forced && fraction < 1.0 && expected < (8 * params.k) as f64 {
            return None;
        }
        Some((nprobe, recall, cost))
    }
}
