//! The filter planner of a partition: payload indexes for the fields that
//! filters' `must` clauses name, and exact answers from their candidates
//! when a filter matches few points.

use super::{Partition, SearchParams};
use crate::math::topk::{Scored, TopK};
use crate::payload::filter::Filter;

/// Largest share of a partition a filter's candidates may have for the
/// planner to score them one by one rather than scan (random access to a
/// candidate's row costs a few times a sequential scan step).
const CANDIDATES_MAX_SHARE: usize = 10;

impl Partition {
    /// Ask for the payload indexes `filter`'s `must` clauses would use;
    /// the indexer builds them ([`Partition::payload_index_step`]), so the
    /// search that asks is not the one that pays for the scan.
    pub fn want_payload_indexes(&mut self, filter: &Filter) {
        let ids = &self.ids;
        self.payload_index.want(filter, || ids.clone());
    }

    /// Index up to `n` more points for a payload index being built; `true`
    /// while one is.
    pub fn payload_index_step(&mut self, n: usize) -> bool {
        let (payloads, slot_of) = (&self.payloads, &self.slot_of);
        self.payload_index.build_step(n, |id| slot_of.get(&id).map(|&s| &payloads[s as usize]))
    }

    pub fn payload_index_building(&self) -> bool {
        self.payload_index.is_building()
    }

    /// The only points the search's filter can match, when an index on one
    /// of its `must` clauses yields at most a tenth of the partition.
    pub(super) fn filter_candidates(&self, params: &SearchParams) -> Option<Vec<u64>> {
        let filter = params.filter.filter(|f| !f.is_empty())?;
        self.payload_index.candidates(filter, self.len() / CANDIDATES_MAX_SHARE)
    }

    /// Exact top-k among `candidates` (each checked against the whole
    /// filter).
    pub(super) fn search_candidates(
        &self,
        queries: &[Vec<f32>],
        params: &SearchParams,
        candidates: &[u64],
    ) -> Vec<Vec<Scored>> {
        let passes = self.passes(params.filter);
        queries
            .iter()
            .map(|q| {
                let exact = self.exact_of(params.metric, q);
                let mut top = TopK::new(params.k);
                for &id in candidates {
                    if let (true, Some(key)) = (passes(id), exact.get(id)) {
                        top.push(Scored { key, id });
                    }
                }
                top.into_sorted()
            })
            .collect()
    }

    /// (field, distinct strings/booleans, numeric entries, still being
    /// built) per index.
    pub fn payload_index_status(&self) -> Vec<(String, usize, usize, bool)> {
        self.payload_index.status()
    }
}
