//! A partition's reservoir of real queries, which calibration measures its
//! indexes on (`recal`, and every build): a uniform sample of the queries
//! seen, saved across restarts by the server (`aionbd::queries_file`).

use super::Partition;
use crate::index::calib::{metric_index, RealQueries};
use crate::math::distance::Metric;
use crate::math::rng::mix64_short;

/// Real queries a partition keeps for calibration.
pub(super) const RESERVOIR: usize = 256;

impl Partition {
    /// Offer a (validated) query to the calibration reservoir: reservoir
    /// sampling keeps a uniform sample of the queries seen.
    pub fn remember_query(&mut self, metric: Metric, q: &[f32]) {
        self.queries_seen += 1;
        self.queries_offered += 1;
        self.reservoir.metrics[metric_index(metric)] = true;
        let queries = &mut self.reservoir.queries;
        if queries.len() < RESERVOIR {
            queries.push((metric, q.to_vec()));
            return;
        }
        let j = (mix64_short(self.queries_seen) % self.queries_seen) as usize;
        if j < RESERVOIR {
            queries[j] = (metric, q.to_vec());
        }
    }

    /// The reservoir of real queries (saved across restarts by the server,
    /// `aionbd::queries_file`).
    pub fn real_queries(&self) -> &RealQueries {
        &self.reservoir
    }

    /// Queries ever offered to the reservoir (a saver compares it).
    pub fn queries_offered(&self) -> u64 {
        self.queries_offered
    }

    /// Take a saved reservoir as this partition's, at start-up, before any
    /// index is built (so the first builds calibrate on real queries).
    /// Queries of another dimension are ignored. A few queries may have
    /// reached the partition first (a peer shard serves as soon as it
    /// can): they are offered to the restored reservoir as new ones.
    /// Returns whether any saved query was taken.
    pub fn restore_real_queries(&mut self, mut saved: RealQueries) -> bool {
        saved.queries.retain(|(_, q)| q.len() == self.dim && q.iter().all(|x| x.is_finite()));
        saved.queries.truncate(RESERVOIR);
        if saved.is_empty() {
            return false;
        }
        let live = std::mem::replace(&mut self.reservoir, saved);
        self.queries_seen = self.reservoir.len() as u64;
        for (i, on) in live.metrics.into_iter().enumerate() {
            self.reservoir.metrics[i] |= on;
        }
        for (metric, q) in live.queries {
            self.remember_query(metric, &q);
        }
        true
    }
}
