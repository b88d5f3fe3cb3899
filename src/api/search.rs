//! Search routes (API.md §6): top-1, top-k and batch. The dispatcher sends
//! the queries to every partition of the collection, each partition scans
//! its points exactly, and the partial top-k lists are merged here.

use super::{body, json, json_vectors_body, Api, ApiError};
use crate::metrics::Metrics;
use aionbd_http::Request;
use aionbd_shards::math::key::key_to_value;
use aionbd_shards::math::topk::merge;
use aionbd_shards::ops::{Hit, PartitionHits, SearchOp};
use aionbd_shards::partition::{IndexKind, IvfChoice};
use aionbd_shards::Metric;
use serde::Serialize;
use std::sync::Arc;

/// `ivf` and `hnsw` are refused for collections below this many points
/// (API.md §6), the number from which a partition builds its indexes
/// (a collection just above it may still answer exactly: its partitions
/// are smaller).
const IVF_MIN_POINTS: u64 = aionbd_shards::index::ivf::MIN_POINTS as u64;
/// `auto`'s recall target when the request names none (API.md §12).
const DEFAULT_TARGET_RECALL: f64 = 0.95;
/// Largest `ef` a search may ask for.
const MAX_EF: u64 = 65_536;
/// Queries a partition answers in one synchronous step. A batch goes to
/// each partition in pieces of this many (all sent at once, run one per
/// turn), so a large exact batch does not hold a shard for its whole scan.
const QUERIES_PER_STEP: usize = 64;

#[derive(Serialize)]
struct HitOut<'a> {
    id: u64,
    value: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a aionbd_shards::payload::Payload>,
}

#[derive(Serialize)]
struct Top1Out<'a> {
    id: u64,
    metric: &'static str,
    value: f32,
    #[serde(flatten)]
    how: How,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a aionbd_shards::payload::Payload>,
}

#[derive(Serialize)]
struct TopKOut<'a> {
    metric: &'static str,
    #[serde(flatten)]
    how: How,
    hits: Vec<HitOut<'a>>,
}

#[derive(Serialize)]
struct BatchItemOut<'a> {
    #[serde(flatten)]
    how: How,
    hits: Vec<HitOut<'a>>,
}

#[derive(Serialize)]
struct BatchOut<'a> {
    metric: &'static str,
    results: Vec<BatchItemOut<'a>>,
}

/// How an answer was computed: `mode`, and `recall_at_k: 1.0` for an
/// exact answer or `estimated_recall` (the calibrated recall@k of the index
/// setting used) for an approximate one (API.md §6, §12).
#[derive(Serialize, Clone, Copy)]
struct How {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    recall_at_k: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_recall: Option<f32>,
    /// What `estimated_recall` rests on (approximate answers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    calibration: Option<CalibrationOut>,
}

/// `{"basis": "real_queries", "real_queries": n}` when every partition
/// that answered approximately was calibrated on real queries (n: the
/// fewest behind one), else `{"basis": "held_out_points"}`.
#[derive(Serialize, Clone, Copy)]
struct CalibrationOut {
    basis: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    real_queries: Option<usize>,
}

/// Results of one search request, one list of hits per query.
struct Found {
    metric: Metric,
    per_query: Vec<Vec<Hit>>,
    /// `None`: exact everywhere.
    estimated_recall: Option<f32>,
    /// Fewest real queries behind an approximate partition's calibration
    /// (`None`: some rested on held-out points).
    calibration_real: Option<usize>,
    /// The indexes partitions answered with (exact ones not counted).
    ivf: bool,
    hnsw: bool,
}

impl Found {
    fn how(&self) -> How {
        let mode = match (self.ivf, self.hnsw) {
            (true, true) => "ivf+hnsw",
            (false, true) => "hnsw",
            _ => "ivf",
        };
        let calibration = Some(match self.calibration_real {
            Some(n) => CalibrationOut { basis: "real_queries", real_queries: Some(n) },
            None => CalibrationOut { basis: "held_out_points", real_queries: None },
        });
        match self.estimated_recall {
            None => How { mode: "exact", recall_at_k: Some(1.0), estimated_recall: None, calibration: None },
            Some(r) => How { mode, recall_at_k: None, estimated_recall: Some(r), calibration },
        }
    }
}

fn hits_out(metric: Metric, hits: &[Hit]) -> Vec<HitOut<'_>> {
    hits.iter()
        .map(|h| HitOut {
            id: h.id,
            value: key_to_value(metric, h.key),
            payload: h.payload.as_ref().filter(|p| !p.is_empty()),
        })
        .collect()
}

impl Api {
    async fn run_search(
        &self,
        raw: &str,
        queries: Vec<Vec<f32>>,
        b: &body::Search,
        k_default: u64,
    ) -> Result<Found, ApiError> {
        let name = raw.to_owned();
        let cfg = self.cfg();
        let metric = b.metric.unwrap_or(Metric::Dot);
        let mode = b.mode.unwrap_or(body::Mode::Auto);
        if let Some(r) = b.target_recall {
            if !(r > 0.0 && r <= 1.0) {
                return Err(ApiError::invalid(format!("target_recall must be in (0, 1], got {r}")));
            }
        }
        if b.nprobe == Some(0) {
            return Err(ApiError::invalid("nprobe must be at least 1"));
        }
        if let Some(ef) = b.ef {
            if !(1..=MAX_EF).contains(&ef) {
                return Err(ApiError::invalid(format!("ef must be between 1 and {MAX_EF}, got {ef}")));
            }
        }
        let limit = b.limit.unwrap_or(k_default);
        let max = cfg.max_topk_limit as u64;
        if limit == 0 || limit > max {
            return Err(ApiError::invalid(format!("limit must be between 1 and {max}, got {limit}")));
        }
        let filter = b.filter.clone().map(|f| f.validate()).transpose()?.map(Arc::new);
        let n_queries = queries.len();
        let target_recall = b.target_recall.unwrap_or(DEFAULT_TARGET_RECALL) as f32;
        let nprobe = b.nprobe.map(|n| n as usize);
        let ef = b.ef.map(|n| n as usize);
        let choice = |forced| Some(IvfChoice { nprobe, ef, target_recall, forced });
        let approx = match mode {
            body::Mode::Exact => None,
            body::Mode::Auto => choice(None),
            body::Mode::Ivf => choice(Some(IndexKind::Ivf)),
            body::Mode::Hnsw => choice(Some(IndexKind::Hnsw)),
        };
        // A forced index needs a collection of IVF_MIN_POINTS (API.md §6):
        // refused before any partition scans, at the price of one catalog
        // round trip on these expert modes only.
        if let body::Mode::Ivf | body::Mode::Hnsw = mode {
            let count = self.collection_info(&name).await?.point_count;
            if count < IVF_MIN_POINTS {
                let m = if mode == body::Mode::Ivf { "ivf" } else { "hnsw" };
                return Err(ApiError::invalid(format!(
                    "mode '{m}' needs at least {IVF_MIN_POINTS} points, collection '{}' has {count}",
                    super::visible_name(&name)
                )));
            }
        }
        let steps: Vec<Arc<Vec<Vec<f32>>>> = if n_queries <= QUERIES_PER_STEP {
            vec![Arc::new(queries)]
        } else {
            queries.chunks(QUERIES_PER_STEP).map(|c| Arc::new(c.to_vec())).collect()
        };
        let op = |step: usize| SearchOp {
            name: name.clone(),
            queries: steps[step].clone(),
            metric,
            k: limit as usize,
            filter: filter.clone(),
            include_payload: b.include_payload.unwrap_or(true),
            approx,
        };
        let shards = self.placement.shards_of(&name);
        let answers = self.node.scatter_steps(&shards, steps.len(), op).await;
        // Per query, each partition's hits (merged at the end).
        let mut per_query: Vec<Vec<Vec<Hit>>> = (0..n_queries).map(|_| Vec::new()).collect();
        let mut total = 0;
        // Recall of the merged answer: each partition's calibrated share
        // of it (see `Calibration::apply_parts`) weighted by its size, an
        // exact partition counting 1; `None` while every one is exact.
        // A partition's steps each weigh by their share of the queries.
        let (mut recall_sum, mut approximate) = (0.0f64, false);
        let (mut ivf, mut hnsw) = (false, false);
        // Fewest real queries behind an approximate partition (usize::MAX:
        // none answered approximately; None: one rested on held-out points).
        let mut calibration_real = Some(usize::MAX);
        for (step, row) in answers.into_iter().enumerate() {
            let first = step * QUERIES_PER_STEP;
            let share = steps[step].len() as f64 / n_queries as f64;
            for a in row {
                let PartitionHits {
                    per_query: part,
                    n_points,
                    estimated_recall: part_recall,
                    index,
                    calibration_real: real,
                } = a?;
                if step == 0 {
                    total += n_points;
                }
                if index.is_some() {
                    calibration_real = calibration_real.zip(real).map(|(a, b)| a.min(b));
                }
                ivf |= index == Some(IndexKind::Ivf);
                hnsw |= index == Some(IndexKind::Hnsw);
                approximate |= part_recall.is_some();
                recall_sum += share * n_points as f64 * part_recall.unwrap_or(1.0) as f64;
                for (acc, hits) in per_query[first..].iter_mut().zip(part) {
                    acc.push(hits);
                }
            }
        }
        if total == 0 {
            return Err(ApiError::invalid(format!("collection '{name}' is empty: nothing to search")));
        }
        let estimated_recall = approximate.then(|| (recall_sum / total as f64) as f32);
        let metrics = &self.node.metrics;
        Metrics::add(&metrics.search_queries_total, n_queries as u64);
        if (mode == body::Mode::Ivf || mode == body::Mode::Hnsw) && estimated_recall.is_none() {
            // No index is ready yet (it builds in the background).
            Metrics::add(&metrics.search_ivf_fallback_exact_total, n_queries as u64);
        }
        if estimated_recall.is_some() {
            Metrics::add(&metrics.search_ivf_queries_total, n_queries as u64);
        }
        let per_query = per_query.into_iter().map(|parts| merge(parts, limit as usize)).collect();
        Ok(Found { metric, per_query, estimated_recall, calibration_real, ivf, hnsw })
    }

    pub(super) async fn search_top1(&self, raw: &str, req: &mut Request) -> super::ApiResult {
        let mut b: body::Search = json_vectors_body(req)?;
        let query = b.query.take().ok_or_else(|| ApiError::invalid("missing field `query`"))?;
        b.limit = Some(1);
        let found = self.run_search(raw, vec![query], &b, 1).await?;
        let hit = found.per_query[0]
            .first()
            .ok_or_else(|| ApiError::invalid("no point qualifies: the filter excludes every point"))?;
        let metric = found.metric;
        json(&Top1Out {
            id: hit.id,
            metric: metric.as_str(),
            value: key_to_value(metric, hit.key),
            how: found.how(),
            payload: hit.payload.as_ref().filter(|p| !p.is_empty()),
        })
    }

    pub(super) async fn search_topk(&self, raw: &str, req: &mut Request) -> super::ApiResult {
        let mut b: body::Search = json_vectors_body(req)?;
        let query = b.query.take().ok_or_else(|| ApiError::invalid("missing field `query`"))?;
        let found = self.run_search(raw, vec![query], &b, 10).await?;
        let metric = found.metric;
        json(&TopKOut { metric: metric.as_str(), how: found.how(), hits: hits_out(metric, &found.per_query[0]) })
    }

    pub(super) async fn search_batch(&self, raw: &str, req: &mut Request) -> super::ApiResult {
        let mut b: body::Search = json_vectors_body(req)?;
        let queries = b.queries.take().ok_or_else(|| ApiError::invalid("missing field `queries`"))?;
        let max = self.cfg().search_batch_max_queries;
        if queries.is_empty() || queries.len() > max {
            return Err(ApiError::invalid(format!("queries must hold 1 to {max} queries, got {}", queries.len())));
        }
        let found = self.run_search(raw, queries, &b, 10).await?;
        let metric = found.metric;
        let results = found
            .per_query
            .iter()
            .map(|hits| BatchItemOut { how: found.how(), hits: hits_out(metric, hits) })
            .collect();
        json(&BatchOut { metric: metric.as_str(), results })
    }
}
