//! What the strict exposition shows per shard and per collection, beside
//! the server-wide sums: each shard's own gauges (they mean nothing added
//! up), WAL fdatasync latency, and how far each collection's indexes cover
//! its points.

use super::{write_histogram, Histogram};
use aionbd_shards::ops::IndexProgress;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Most collections with their own index series; the rest are summed as
/// `other` (as tenants are past `TENANT_SERIES`).
pub const COLLECTION_SERIES: usize = 256;

/// One shard's own gauges, read on that shard.
#[derive(Clone, Debug, Default)]
pub struct ShardGauges {
    pub shard: usize,
    pub requests_in_flight: u64,
    pub connections_open: u64,
    /// Messages this shard holds for each peer beyond the peer's channel
    /// (what that peer has still to take up).
    pub backlog_to: Vec<u64>,
    /// Longest delay of a heartbeat turn past its due time, recent.
    pub turn_lateness_us: u64,
    pub wal_segments: u64,
    /// WAL bytes a restart would replay beyond the newest snapshot.
    pub wal_bytes_since_snapshot: u64,
    /// Seconds since this shard's last snapshot (since start if none yet;
    /// 0 with persistence off).
    pub snapshot_age_s: f64,
}

/// One family: HELP, TYPE and a series per shard.
fn per_shard(out: &mut String, name: &str, help: &str, shards: &[ShardGauges], value: impl Fn(&ShardGauges) -> f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for g in shards {
        let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", g.shard, value(g));
    }
}

/// Per-shard gauges, the fdatasync histogram and per-collection index
/// progress, for `?format=strict`.
pub fn prometheus_shards(shards: &[ShardGauges], fsync: &Histogram<u64>, indexes: &[IndexProgress]) -> String {
    let mut out = String::with_capacity(4096);
    let mut shards = shards.to_vec();
    shards.sort_by_key(|g| g.shard);
    let backlog = |to: usize| shards.iter().map(|g| g.backlog_to.get(to).copied().unwrap_or(0)).sum::<u64>();
    let backlogs: Vec<u64> = shards.iter().map(|g| backlog(g.shard)).collect();
    per_shard(&mut out, "aionbd_shard_requests_in_flight", "HTTP requests this shard is serving.", &shards, |g| {
        g.requests_in_flight as f64
    });
    per_shard(&mut out, "aionbd_shard_connections_open", "Client connections this shard holds.", &shards, |g| {
        g.connections_open as f64
    });
    per_shard(
        &mut out,
        "aionbd_shard_mesh_backlog",
        "Messages other shards hold for this shard beyond its channel (0 unless it falls behind).",
        &shards,
        |g| backlogs[shards.iter().position(|s| s.shard == g.shard).unwrap_or(0)] as f64,
    );
    per_shard(
        &mut out,
        "aionbd_shard_turn_lateness_seconds",
        "Longest delay of the shard's 5 ms heartbeat turn past its due time in the last 10-20 s: how long work \
         queued on this shard may have waited for the CPU.",
        &shards,
        |g| g.turn_lateness_us as f64 / 1e6,
    );
    per_shard(&mut out, "aionbd_shard_wal_segments", "WAL segment files of this shard.", &shards, |g| {
        g.wal_segments as f64
    });
    per_shard(
        &mut out,
        "aionbd_shard_wal_bytes_since_snapshot",
        "WAL bytes written since this shard's last snapshot cut: what a restart replays beyond the snapshot.",
        &shards,
        |g| g.wal_bytes_since_snapshot as f64,
    );
    per_shard(
        &mut out,
        "aionbd_shard_snapshot_age_seconds",
        "Seconds since this shard's last snapshot (since the server started if it took none; 0 with persistence off).",
        &shards,
        |g| g.snapshot_age_s,
    );
    let _ = writeln!(
        out,
        "# HELP aionbd_wal_fdatasync_duration_seconds Time of each WAL fdatasync (all shards).\n\
         # TYPE aionbd_wal_fdatasync_duration_seconds histogram"
    );
    write_histogram(&mut out, "aionbd_wal_fdatasync_duration_seconds", "", fsync);
    write_index_progress(&mut out, indexes);
    out
}

/// Per collection: points, points in each index and beside it, builds
/// under way (partitions summed over shards).
fn write_index_progress(out: &mut String, indexes: &[IndexProgress]) {
    let mut by: BTreeMap<&str, IndexProgress> = BTreeMap::new();
    for p in indexes {
        let key = if by.contains_key(p.collection.as_str()) || by.len() < COLLECTION_SERIES {
            p.collection.as_str()
        } else {
            "other"
        };
        let e = by.entry(key).or_default();
        e.points += p.points;
        e.ivf_indexed += p.ivf_indexed;
        e.ivf_exact += p.ivf_exact;
        e.hnsw_nodes += p.hnsw_nodes;
        e.hnsw_exact += p.hnsw_exact;
        e.building += p.building;
    }
    let by: Vec<(String, IndexProgress)> = by.into_iter().map(|(c, p)| (escape_label(c), p)).collect();
    let family = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    family(out, "aionbd_collection_points", "Points of the collection (over all its partitions).");
    for (c, p) in &by {
        let _ = writeln!(out, "aionbd_collection_points{{collection=\"{c}\"}} {}", p.points);
    }
    family(
        out,
        "aionbd_collection_index_points",
        "Points inside an index (state=indexed) or searched exactly beside it until the index takes them in \
         (state=exact), by index.",
    );
    for (c, p) in &by {
        for (index, state, n) in [
            ("ivf", "indexed", p.ivf_indexed),
            ("ivf", "exact", p.ivf_exact),
            ("hnsw", "indexed", p.hnsw_nodes),
            ("hnsw", "exact", p.hnsw_exact),
        ] {
            let _ = writeln!(
                out,
                "aionbd_collection_index_points{{collection=\"{c}\",index=\"{index}\",state=\"{state}\"}} {n}"
            );
        }
    }
    family(
        out,
        "aionbd_collection_index_coverage_ratio",
        "Share of the collection's points inside its graph (or its IVF lists when it has no graph); 1 when empty.",
    );
    for (c, p) in &by {
        let covered = if p.hnsw_nodes > 0 { p.hnsw_nodes } else { p.ivf_indexed };
        let ratio = if p.points == 0 { 1.0 } else { (covered as f64 / p.points as f64).min(1.0) };
        let _ = writeln!(out, "aionbd_collection_index_coverage_ratio{{collection=\"{c}\"}} {ratio}");
    }
    family(
        out,
        "aionbd_collection_index_builds_in_progress",
        "Index builds under way for the collection's partitions.",
    );
    for (c, p) in &by {
        let _ = writeln!(out, "aionbd_collection_index_builds_in_progress{{collection=\"{c}\"}} {}", p.building);
    }
}

/// A label value as the text format wants it: backslash, quote and newline
/// escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_shard_and_per_collection_series() {
        let shards = vec![
            ShardGauges { shard: 1, backlog_to: vec![3, 0], turn_lateness_us: 2500, ..Default::default() },
            ShardGauges { shard: 0, backlog_to: vec![0, 4], snapshot_age_s: 7.5, ..Default::default() },
        ];
        let idx = vec![
            IndexProgress { collection: "a\"b".into(), points: 10, hnsw_nodes: 6, hnsw_exact: 4, ..Default::default() },
            IndexProgress { collection: "a\"b".into(), points: 10, hnsw_nodes: 10, building: 1, ..Default::default() },
        ];
        let mut h = super::super::new_histogram();
        h.record(1500).unwrap();
        let text = prometheus_shards(&shards, &h, &idx);
        // Shard 0's backlog is what shard 1 holds for it, and the other way round.
        assert!(text.contains("aionbd_shard_mesh_backlog{shard=\"0\"} 3\n"), "{text}");
        assert!(text.contains("aionbd_shard_mesh_backlog{shard=\"1\"} 4\n"));
        assert!(text.contains("aionbd_shard_turn_lateness_seconds{shard=\"1\"} 0.0025\n"));
        assert!(text.contains("aionbd_shard_snapshot_age_seconds{shard=\"0\"} 7.5\n"));
        assert!(text.contains("aionbd_wal_fdatasync_duration_seconds_bucket{le=\"0.0025\"} 1\n"));
        assert!(text.contains("aionbd_wal_fdatasync_duration_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(text.contains("aionbd_collection_points{collection=\"a\\\"b\"} 20\n"));
        assert!(
            text.contains("aionbd_collection_index_points{collection=\"a\\\"b\",index=\"hnsw\",state=\"exact\"} 4\n")
        );
        assert!(text.contains("aionbd_collection_index_coverage_ratio{collection=\"a\\\"b\"} 0.8\n"));
        assert!(text.contains("aionbd_collection_index_builds_in_progress{collection=\"a\\\"b\"} 1\n"));
    }
}
