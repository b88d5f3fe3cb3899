//! Health, metrics and `/distance` (API.md §3).

use super::{body, json, json_vectors_body, Api, ApiError, ApiResult, Body, ErrorCode};
use crate::metrics::{prometheus, MetricsSnapshot, Value};
use aionbd_http::Request;
use aionbd_shards::math::{distance::kernels, key::norm};
use aionbd_shards::ops::ShardDataStats;
use aionbd_shards::Metric;
use serde_json::json;

impl Api {
    fn uptime_ms(&self) -> u64 {
        self.shared.started.elapsed().as_millis() as u64
    }

    pub(super) fn live(&self) -> ApiResult {
        json(&json!({"status": "live", "uptime_ms": self.uptime_ms()}))
    }

    /// Ready when every shard's WAL (if persistence is on) still works.
    /// The server accepts connections only after recovery, so a listening
    /// server has its data loaded.
    pub(super) async fn ready(&self) -> ApiResult {
        let (_, m) = self.gather().await?;
        if m.wal_failed_shards > 0 {
            return Err(ApiError::new(
                ErrorCode::NotReady,
                format!("storage unavailable: the write-ahead log failed on {} shard(s)", m.wal_failed_shards),
            ));
        }
        json(&json!({
            "status": "ready",
            "uptime_ms": self.uptime_ms(),
            "checks": {"engine_loaded": true, "storage_available": true}
        }))
    }

    /// Gather data statistics and HTTP metrics from every shard.
    async fn gather(&self) -> Result<(ShardDataStats, MetricsSnapshot), ApiError> {
        let answers = self.node.scatter_stats(&self.all_shards()).await;
        let mut data = ShardDataStats::default();
        let mut merged: Option<MetricsSnapshot> = None;
        for a in answers {
            let (d, m) = a?;
            data.collections_homed += d.collections_homed;
            data.points_homed += d.points_homed;
            data.partitions += d.partitions;
            data.memory_bytes += d.memory_bytes;
            data.indexes.extend(d.indexes);
            match &mut merged {
                None => merged = Some(*m),
                Some(acc) => acc.merge(&m),
            }
        }
        Ok((data, merged.expect("at least one shard")))
    }

    fn metric_pairs(&self, d: &ShardDataStats, m: &MetricsSnapshot) -> Vec<(&'static str, Value)> {
        use Value::{B, F, U};
        let cfg = self.cfg();
        let p = &cfg.persistence;
        let requests = m.requests_total;
        let avg = if requests == 0 { 0.0 } else { m.duration_us_total as f64 / requests as f64 };
        let (stalls, stall_ms) = crate::watchdog::stalls();
        vec![
            ("uptime_ms", U(self.uptime_ms())),
            ("ready", B(m.wal_failed_shards == 0)),
            ("engine_loaded", B(true)),
            ("storage_available", B(m.wal_failed_shards == 0)),
            ("http_requests_total", U(m.requests_total)),
            ("http_requests_in_flight", U(m.in_flight)),
            ("http_responses_2xx_total", U(m.responses_2xx)),
            ("http_responses_4xx_total", U(m.responses_4xx)),
            ("http_responses_5xx_total", U(m.responses_5xx)),
            ("http_requests_5xx_total", U(m.responses_5xx)),
            ("http_request_duration_us_total", U(m.duration_us_total)),
            ("http_request_duration_us_max", U(m.duration_us_max_now())),
            ("http_request_duration_us_avg", F(avg)),
            ("http_connections_open", U(m.connections_open)),
            ("http_connections_total", U(m.connections_total)),
            ("http_connections_rejected_total", U(m.connections_rejected_total)),
            ("collections", U(d.collections_homed)),
            ("points", U(d.points_homed)),
            ("shards", U(cfg.shards as u64)),
            ("partitions_per_collection", U(cfg.partitions_per_collection as u64)),
            ("l2_indexes", U(0)),
            ("l2_index_cache_lookups", U(0)),
            ("l2_index_cache_hits", U(0)),
            ("l2_index_cache_misses", U(0)),
            ("l2_index_cache_hit_ratio", F(0.0)),
            ("l2_index_build_requests", U(0)),
            ("l2_index_build_successes", U(m.index_builds_total)),
            ("l2_index_build_failures", U(0)),
            ("l2_index_build_cooldown_skips", U(0)),
            ("l2_index_build_cooldown_ms", U(0)),
            ("l2_index_build_max_in_flight", U(0)),
            ("l2_index_build_in_flight", U(0)),
            ("l2_index_warmup_on_boot", B(false)),
            ("auth_failures_total", U(m.auth_failures.iter().sum())),
            ("auth_failures_missing_total", U(m.auth_failures[0])),
            ("auth_failures_malformed_total", U(m.auth_failures[1])),
            ("auth_failures_unknown_credential_total", U(m.auth_failures[2])),
            ("auth_failures_invalid_jwt_total", U(m.auth_failures[3])),
            ("auth_failures_expired_total", U(m.auth_failures[4])),
            ("auth_failures_claims_total", U(m.auth_failures[5])),
            ("auth_forbidden_total", U(m.auth_forbidden_total)),
            ("credential_reloads_total", U(self.shared.current.reloads.load(std::sync::atomic::Ordering::Relaxed))),
            (
                "credential_reload_failures_total",
                U(self.shared.current.failures.load(std::sync::atomic::Ordering::Relaxed)),
            ),
            ("rate_limit_rejections_total", U(m.rate_limit_rejections_total)),
            ("shard_watchdog_signals_total", U(crate::watchdog::signals())),
            ("shard_stalls_total", U(stalls)),
            ("shard_stall_running_ms_total", U(stall_ms[0])),
            ("shard_stall_waiting_ms_total", U(stall_ms[1])),
            ("shard_stall_asleep_ms_total", U(stall_ms[2])),
            ("audit_events_total", U(0)),
            ("collection_write_lock_entries", U(0)),
            ("tenant_rate_window_entries", U(self.node.rate.entries() as u64)),
            ("tenant_quota_lock_entries", U(0)),
            ("tenant_quota_collection_rejections_total", U(m.quota_rejections[0])),
            ("tenant_quota_point_rejections_total", U(m.quota_rejections[1])),
            ("persistence_enabled", B(m.wal_shards > 0)),
            ("persistence_writes", U(m.wal_records)),
            ("persistence_wal_sync_on_write", B(p.wal_sync_on_write)),
            ("persistence_wal_sync_every_n_writes", U(p.wal_sync_every_n_writes)),
            ("persistence_wal_sync_interval_seconds", U(p.wal_sync_interval_seconds)),
            ("persistence_wal_group_commit_max_batch", U(p.wal_group_commit_max_batch)),
            ("persistence_wal_group_commit_flush_delay_ms", U(p.wal_group_commit_flush_delay_ms)),
            ("persistence_async_checkpoints", B(p.async_checkpoints)),
            ("persistence_checkpoint_compact_after", U(p.checkpoint_compact_after)),
            ("persistence_checkpoint_in_flight", U(m.snapshots_in_flight)),
            ("persistence_checkpoint_degraded_total", U(0)),
            ("persistence_checkpoint_success_total", U(m.snapshots_taken)),
            ("persistence_checkpoint_error_total", U(m.snapshots_failed)),
            ("persistence_checkpoint_schedule_skips_total", U(0)),
            ("persistence_wal_group_commits_total", U(m.wal_batches)),
            ("persistence_wal_fsyncs_total", U(m.wal_syncs)),
            ("persistence_wal_group_waits_total", U(m.wal_group_waits)),
            ("persistence_wal_group_waits_missed_total", U(m.wal_group_waits_missed)),
            ("persistence_wal_disk_full", B(m.wal_disk_full_shards > 0)),
            ("persistence_snapshots_total", U(m.snapshots_taken)),
            ("persistence_wal_grouped_records_total", U(m.wal_records)),
            ("persistence_wal_group_queue_depth", U(0)),
            ("persistence_wal_size_bytes", U(m.wal_size_bytes)),
            ("persistence_wal_tail_open", B(false)),
            ("persistence_incremental_segments", U(0)),
            ("persistence_incremental_size_bytes", U(0)),
            ("search_queries_total", U(m.search_queries_total)),
            ("search_ivf_queries_total", U(m.search_ivf_queries_total)),
            ("search_ivf_fallback_exact_total", U(m.search_ivf_fallback_exact_total)),
            ("max_points_per_collection", U(cfg.max_points_per_collection)),
            ("index_background_nice", U(cfg.background_nice as u64)),
            ("memory_budget_bytes", U(cfg.memory_budget_bytes)),
            ("memory_used_bytes", U(d.memory_bytes)),
        ]
    }

    pub(super) async fn metrics_json(&self) -> ApiResult {
        let (d, m) = self.gather().await?;
        let mut map = serde_json::Map::new();
        for (k, v) in self.metric_pairs(&d, &m) {
            let value = match v {
                Value::U(u) => json!(u),
                Value::F(f) => json!(f),
                Value::B(b) => json!(b),
            };
            map.insert(k.to_owned(), value);
        }
        map.insert("distance_kernel".to_owned(), json!(self.shared.kernel_name));
        // Additive: per tenant (auth on), {"requests": n, "rejections": n}.
        let tenants: serde_json::Map<String, serde_json::Value> =
            m.tenants.iter().map(|(t, (r, x))| (t.clone(), json!({"requests": r, "rejections": x}))).collect();
        map.insert("tenants".to_owned(), serde_json::Value::Object(tenants));
        json(&map)
    }

    /// `GET /metrics/prometheus`: the original's names (API.md), or with
    /// `?format=strict` the exposition `promtool check metrics` accepts.
    pub(super) async fn metrics_prometheus(&self, query: Option<&str>) -> ApiResult {
        let strict = match query.unwrap_or("") {
            "" | "format=original" => false,
            "format=strict" => true,
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query '{other}': this route takes format=original (the default) or format=strict"
                )))
            }
        };
        let (d, m) = self.gather().await?;
        let pairs = self.metric_pairs(&d, &m);
        let mut text = if strict {
            crate::metrics::prometheus_strict(&pairs, &m.latency, &m.class_latency)
        } else {
            prometheus(&pairs, &m.latency)
        };
        text.push_str(&crate::metrics::prometheus_tenants(&m.tenants));
        if strict {
            text.push_str(&crate::metrics::prometheus_shards(&m.shards, &m.fsync_latency, &d.indexes));
        }
        Ok(Body::Text(text))
    }

    pub(super) fn distance(&self, req: &mut Request) -> ApiResult {
        let b: body::Distance = json_vectors_body(req)?;
        let metric = b.metric.unwrap_or(Metric::Dot);
        let cfg = self.cfg();
        if b.left.is_empty() || b.right.is_empty() {
            return Err(ApiError::invalid("left and right must not be empty"));
        }
        if b.left.len() != b.right.len() {
            return Err(ApiError::invalid(format!(
                "left has {} values and right has {}; they must match",
                b.left.len(),
                b.right.len()
            )));
        }
        if b.left.len() > cfg.max_dimension {
            return Err(ApiError::invalid(format!("vectors longer than max dimension {}", cfg.max_dimension)));
        }
        if cfg.strict_finite && b.left.iter().chain(&b.right).any(|v| !v.is_finite()) {
            return Err(ApiError::invalid("vectors must contain only finite values"));
        }
        let k = kernels();
        let value = match metric {
            Metric::Dot => (k.dot)(&b.left, &b.right),
            Metric::L2 => (k.l2sq)(&b.left, &b.right).sqrt(),
            Metric::Cosine => {
                let (nl, nr) = (norm(&b.left), norm(&b.right));
                if nl == 0.0 || nr == 0.0 {
                    return Err(ApiError::invalid("cosine is undefined for a zero vector"));
                }
                (k.dot)(&b.left, &b.right) / (nl * nr)
            }
        };
        if !value.is_finite() {
            return Err(ApiError::invalid(format!(
                "the {} of these vectors is beyond the range of a 32-bit float",
                metric.as_str()
            )));
        }
        #[derive(serde::Serialize)]
        struct DistanceOut {
            metric: &'static str,
            value: f32,
        }
        json(&DistanceOut { metric: metric.as_str(), value })
    }
}
