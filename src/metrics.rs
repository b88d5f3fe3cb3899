//! Request metrics, one [`Metrics`] per shard (plain cells: no atomics, no
//! locks). `/metrics` gathers a [`MetricsSnapshot`] from every shard and adds
//! them up; latency percentiles come from merged hdrhistograms.

use hdrhistogram::Histogram;
use std::cell::{Cell, RefCell};
use std::time::{SystemTime, UNIX_EPOCH};

mod shard;
pub use shard::{prometheus_shards, ShardGauges};

/// Latency histogram range: 1 us .. 60 s (values are clamped to it).
pub(crate) const HIST_MAX_US: u64 = 60_000_000;
/// 2 significant digits: percentiles within 1 %, and at most 19 KiB of
/// counters per histogram instead of 136 KiB at 3 digits. Each shard keeps
/// six (requests, four route classes, WAL fdatasync); at 3 digits, made
/// for the whole range at once, they were 1.6 MiB of a 2-shard server's
/// idle RSS.
const HIST_DIGITS: u8 = 2;

/// An empty latency histogram. It starts with counters up to 2 us (2 KiB)
/// and grows them (`auto`) to the largest value recorded or added, so
/// memory follows the latencies seen, at most the 19 KiB of [`HIST_MAX_US`]:
/// an idle server's untouched route classes and WAL histograms no longer
/// hold ~0.2 MiB of zeros. Values, quantiles and precision are unchanged.
pub(crate) fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 2, HIST_DIGITS).expect("static histogram bounds are valid");
    h.auto(true);
    h
}

fn wall_minute() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 60).unwrap_or(0)
}

pub struct Metrics {
    requests_total: Cell<u64>,
    /// Data-changing operations this shard applied, home writes and
    /// partition writes alike (the indexer paces itself by it).
    writes_applied: Cell<u64>,
    in_flight: Cell<u64>,
    responses_2xx: Cell<u64>,
    responses_4xx: Cell<u64>,
    responses_5xx: Cell<u64>,
    duration_us_total: Cell<u64>,
    /// (wall-clock minute, max duration in it)
    duration_us_max: Cell<(u64, u64)>,
    latency: RefCell<Histogram<u64>>,
    /// Latency per route class (`ROUTE_CLASSES` order).
    class_latency: RefCell<[Histogram<u64>; 4]>,
    pub search_queries_total: Cell<u64>,
    pub search_ivf_queries_total: Cell<u64>,
    pub search_ivf_fallback_exact_total: Cell<u64>,
    pub index_builds_total: Cell<u64>,
    pub rate_limit_rejections_total: Cell<u64>,
    /// 401s by `auth::Failure` (its `ALL` order).
    pub auth_failures: [Cell<u64>; 6],
    /// 403s: a credential whose scope does not reach the route.
    pub auth_forbidden_total: Cell<u64>,
    /// 429s from tenant quotas: collections, points.
    pub quota_rejections: [Cell<u64>; 2],
    /// Per tenant (with auth on): requests authenticated, and of those the
    /// ones refused (403 scope, 429 rate limit or quota).
    tenants: RefCell<std::collections::BTreeMap<String, (u64, u64)>>,
    pub connections_open: Cell<u64>,
    pub connections_total: Cell<u64>,
    pub connections_rejected_total: Cell<u64>,
}

/// One shard's metrics, `Send` so it can cross to the gathering shard.
#[derive(Clone, Debug)]
pub struct MetricsSnapshot {
    pub requests_total: u64,
    pub in_flight: u64,
    pub responses_2xx: u64,
    pub responses_4xx: u64,
    pub responses_5xx: u64,
    pub duration_us_total: u64,
    pub duration_us_max: (u64, u64),
    pub latency: Histogram<u64>,
    pub class_latency: [Histogram<u64>; 4],
    pub search_queries_total: u64,
    pub search_ivf_queries_total: u64,
    pub search_ivf_fallback_exact_total: u64,
    pub index_builds_total: u64,
    pub rate_limit_rejections_total: u64,
    pub auth_failures: [u64; 6],
    pub auth_forbidden_total: u64,
    pub quota_rejections: [u64; 2],
    /// Tenant -> (requests, rejections), at most [`TENANT_SERIES`] tenants.
    pub tenants: std::collections::BTreeMap<String, (u64, u64)>,
    pub connections_open: u64,
    pub connections_total: u64,
    pub connections_rejected_total: u64,
    /// WAL figures, filled in by the node (0 without persistence).
    pub wal_records: u64,
    pub wal_syncs: u64,
    /// Group commits that waited for their writers, and those of them that
    /// reached their deadline first (`io::wal` group commit).
    pub wal_group_waits: u64,
    pub wal_group_waits_missed: u64,
    pub wal_failed_shards: u64,
    pub wal_shards: u64,
    pub wal_disk_full_shards: u64,
    pub wal_size_bytes: u64,
    pub wal_batches: u64,
    pub snapshots_taken: u64,
    pub snapshots_failed: u64,
    pub snapshots_in_flight: u64,
    /// WAL fdatasync times in microseconds, filled in by the node.
    pub fsync_latency: Histogram<u64>,
    /// Each shard's own gauges (one entry per shard once merged).
    pub shards: Vec<ShardGauges>,
}

fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get() + by);
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests_total: Cell::new(0),
            writes_applied: Cell::new(0),
            in_flight: Cell::new(0),
            responses_2xx: Cell::new(0),
            responses_4xx: Cell::new(0),
            responses_5xx: Cell::new(0),
            duration_us_total: Cell::new(0),
            duration_us_max: Cell::new((0, 0)),
            latency: RefCell::new(new_histogram()),
            class_latency: RefCell::new(std::array::from_fn(|_| new_histogram())),
            search_queries_total: Cell::new(0),
            search_ivf_queries_total: Cell::new(0),
            search_ivf_fallback_exact_total: Cell::new(0),
            index_builds_total: Cell::new(0),
            rate_limit_rejections_total: Cell::new(0),
            auth_failures: Default::default(),
            auth_forbidden_total: Cell::new(0),
            quota_rejections: Default::default(),
            tenants: Default::default(),
            connections_open: Cell::new(0),
            connections_total: Cell::new(0),
            connections_rejected_total: Cell::new(0),
        }
    }
}

impl Metrics {
    /// Requests this shard has started serving (the indexer paces itself
    /// by it).
    pub fn requests_started(&self) -> u64 {
        self.requests_total.get()
    }

    pub fn writes_applied(&self) -> u64 {
        self.writes_applied.get()
    }

    pub fn write_applied(&self) {
        bump(&self.writes_applied, 1);
    }
}

impl Metrics {
    pub fn request_started(&self) {
        bump(&self.requests_total, 1);
        bump(&self.in_flight, 1);
    }

    /// Count a request of `tenant` and whether it was refused (403, 429).
    /// Tenants are configured (keys, tokens) or signed into JWTs, so the
    /// series are few; past [`TENANT_SERIES`] the rest count as `other`.
    pub fn tenant_request(&self, tenant: &str, status: u16) {
        let mut t = self.tenants.borrow_mut();
        let key = if t.contains_key(tenant) || t.len() < TENANT_SERIES { tenant } else { "other" };
        let e = t.entry(key.to_owned()).or_default();
        e.0 += 1;
        e.1 += matches!(status, 403 | 429) as u64;
    }

    pub fn request_finished(&self, status: u16, duration_us: u64) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        match status {
            200..=299 => bump(&self.responses_2xx, 1),
            400..=499 => bump(&self.responses_4xx, 1),
            500..=599 => bump(&self.responses_5xx, 1),
            _ => {}
        }
        bump(&self.duration_us_total, duration_us);
        let minute = wall_minute();
        let (m, max) = self.duration_us_max.get();
        let max = if m == minute { max.max(duration_us) } else { duration_us };
        self.duration_us_max.set((minute, max));
        let _ = self.latency.borrow_mut().record(duration_us.clamp(1, HIST_MAX_US));
    }

    /// Record a resolved request's latency under its route class
    /// (`ROUTE_CLASSES` index).
    pub fn record_class(&self, class: usize, duration_us: u64) {
        if let Some(h) = self.class_latency.borrow_mut().get_mut(class) {
            let _ = h.record(duration_us.clamp(1, HIST_MAX_US));
        }
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.get()
    }

    pub fn add(c: &Cell<u64>, by: u64) {
        bump(c, by);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            requests_total: self.requests_total.get(),
            in_flight: self.in_flight.get(),
            responses_2xx: self.responses_2xx.get(),
            responses_4xx: self.responses_4xx.get(),
            responses_5xx: self.responses_5xx.get(),
            duration_us_total: self.duration_us_total.get(),
            duration_us_max: self.duration_us_max.get(),
            latency: self.latency.borrow().clone(),
            class_latency: self.class_latency.borrow().clone(),
            search_queries_total: self.search_queries_total.get(),
            search_ivf_queries_total: self.search_ivf_queries_total.get(),
            search_ivf_fallback_exact_total: self.search_ivf_fallback_exact_total.get(),
            index_builds_total: self.index_builds_total.get(),
            rate_limit_rejections_total: self.rate_limit_rejections_total.get(),
            auth_failures: std::array::from_fn(|i| self.auth_failures[i].get()),
            auth_forbidden_total: self.auth_forbidden_total.get(),
            quota_rejections: std::array::from_fn(|i| self.quota_rejections[i].get()),
            tenants: self.tenants.borrow().clone(),
            connections_open: self.connections_open.get(),
            connections_total: self.connections_total.get(),
            connections_rejected_total: self.connections_rejected_total.get(),
            wal_records: 0,
            wal_syncs: 0,
            wal_group_waits: 0,
            wal_group_waits_missed: 0,
            wal_failed_shards: 0,
            wal_shards: 0,
            wal_disk_full_shards: 0,
            wal_size_bytes: 0,
            wal_batches: 0,
            snapshots_taken: 0,
            snapshots_failed: 0,
            snapshots_in_flight: 0,
            fsync_latency: new_histogram(),
            shards: Vec::new(),
        }
    }
}

impl MetricsSnapshot {
    /// Add another shard's snapshot into this one.
    pub fn merge(&mut self, o: &MetricsSnapshot) {
        self.requests_total += o.requests_total;
        self.in_flight += o.in_flight;
        self.responses_2xx += o.responses_2xx;
        self.responses_4xx += o.responses_4xx;
        self.responses_5xx += o.responses_5xx;
        self.duration_us_total += o.duration_us_total;
        let minute = wall_minute();
        let mine = if self.duration_us_max.0 == minute { self.duration_us_max.1 } else { 0 };
        let theirs = if o.duration_us_max.0 == minute { o.duration_us_max.1 } else { 0 };
        self.duration_us_max = (minute, mine.max(theirs));
        let _ = self.latency.add(&o.latency);
        for (a, b) in self.class_latency.iter_mut().zip(&o.class_latency) {
            let _ = a.add(b);
        }
        self.search_queries_total += o.search_queries_total;
        self.search_ivf_queries_total += o.search_ivf_queries_total;
        self.index_builds_total += o.index_builds_total;
        self.rate_limit_rejections_total += o.rate_limit_rejections_total;
        for (a, b) in self.auth_failures.iter_mut().zip(o.auth_failures) {
            *a += b;
        }
        self.auth_forbidden_total += o.auth_forbidden_total;
        for (a, b) in self.quota_rejections.iter_mut().zip(o.quota_rejections) {
            *a += b;
        }
        for (t, (r, x)) in &o.tenants {
            let e = self.tenants.entry(t.clone()).or_default();
            *e = (e.0 + r, e.1 + x);
        }
        self.search_ivf_fallback_exact_total += o.search_ivf_fallback_exact_total;
        self.connections_open += o.connections_open;
        self.connections_total += o.connections_total;
        self.connections_rejected_total += o.connections_rejected_total;
        self.wal_records += o.wal_records;
        self.wal_syncs += o.wal_syncs;
        self.wal_group_waits += o.wal_group_waits;
        self.wal_group_waits_missed += o.wal_group_waits_missed;
        self.wal_failed_shards += o.wal_failed_shards;
        self.wal_shards += o.wal_shards;
        self.wal_disk_full_shards += o.wal_disk_full_shards;
        self.wal_size_bytes += o.wal_size_bytes;
        self.wal_batches += o.wal_batches;
        self.snapshots_taken += o.snapshots_taken;
        self.snapshots_failed += o.snapshots_failed;
        self.snapshots_in_flight += o.snapshots_in_flight;
        let _ = self.fsync_latency.add(&o.fsync_latency);
        self.shards.extend(o.shards.iter().cloned());
    }

    /// Max duration of the current wall-clock minute.
    pub fn duration_us_max_now(&self) -> u64 {
        if self.duration_us_max.0 == wall_minute() {
            self.duration_us_max.1
        } else {
            0
        }
    }
}

/// A metric value for rendering: JSON keeps its type, Prometheus gets a number.
#[derive(Clone, Copy, Debug)]
pub enum Value {
    U(u64),
    F(f64),
    B(bool),
}

/// Render `(key, value)` pairs as Prometheus text exposition (format 0.0.4).
/// The three response-class keys become one labelled counter; monotonic
/// keys are counters, the rest gauges. Latency quantiles come from `latency`.
/// Most tenants with their own series in `/metrics`.
pub const TENANT_SERIES: usize = 256;

/// Per-tenant counters as Prometheus text.
pub fn prometheus_tenants(tenants: &std::collections::BTreeMap<String, (u64, u64)>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if tenants.is_empty() {
        return out;
    }
    let _ = writeln!(out, "# HELP aionbd_tenant_requests_total Authenticated requests per tenant.");
    let _ = writeln!(out, "# TYPE aionbd_tenant_requests_total counter");
    for (t, (r, _)) in tenants {
        let _ = writeln!(out, "aionbd_tenant_requests_total{{tenant=\"{t}\"}} {r}");
    }
    let _ = writeln!(
        out,
        "# HELP aionbd_tenant_rejections_total Requests per tenant refused by scope (403), rate limit or quota (429)."
    );
    let _ = writeln!(out, "# TYPE aionbd_tenant_rejections_total counter");
    for (t, (_, x)) in tenants {
        let _ = writeln!(out, "aionbd_tenant_rejections_total{{tenant=\"{t}\"}} {x}");
    }
    out
}

pub fn prometheus(pairs: &[(&str, Value)], latency: &Histogram<u64>) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(8192);
    let is_counter = |k: &str| {
        k.ends_with("_total")
            || k == "persistence_writes"
            || matches!(k, "l2_index_cache_lookups" | "l2_index_cache_hits" | "l2_index_cache_misses")
            || matches!(
                k,
                "l2_index_build_requests"
                    | "l2_index_build_successes"
                    | "l2_index_build_failures"
                    | "l2_index_build_cooldown_skips"
            )
    };
    let (plain, classes) = split_pairs(pairs);
    for (k, num) in plain {
        let kind = if is_counter(k) { "counter" } else { "gauge" };
        let _ = writeln!(out, "# TYPE aionbd_{k} {kind}\naionbd_{k} {num}");
    }
    let _ = writeln!(out, "# TYPE aionbd_http_responses_total counter");
    for (class, n) in classes {
        let _ = writeln!(out, "aionbd_http_responses_total{{status=\"{class}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP aionbd_http_request_duration_us Request latency in microseconds.");
    let _ = writeln!(out, "# TYPE aionbd_http_request_duration_us summary");
    for q in [0.5, 0.9, 0.99, 0.999] {
        let _ = writeln!(out, "aionbd_http_request_duration_us{{quantile=\"{q}\"}} {}", latency.value_at_quantile(q));
    }
    let sum: f64 = latency.iter_recorded().map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64).sum();
    let _ = writeln!(out, "aionbd_http_request_duration_us_sum {sum}");
    let _ = writeln!(out, "aionbd_http_request_duration_us_count {}", latency.len());
    out
}

/// Latency histogram buckets of the strict exposition, in seconds.
const BUCKETS_S: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Route classes of the per-class latency histograms.
pub const ROUTE_CLASSES: [&str; 4] = ["search", "write", "read", "admin"];

/// Named numbers, in order.
type Numbers<'a> = Vec<(&'a str, f64)>;

/// The pairs as numbers, without the three response-class keys (returned
/// apart: they form one labelled counter) and the JSON-only 5xx alias.
fn split_pairs<'a>(pairs: &[(&'a str, Value)]) -> (Numbers<'a>, Numbers<'a>) {
    let (mut plain, mut classes) = (Vec::new(), Vec::new());
    for (k, v) in pairs {
        let num = match *v {
            Value::U(u) => u as f64,
            Value::F(f) => f,
            Value::B(b) => b as u8 as f64,
        };
        if let Some(class) = k.strip_prefix("http_responses_").and_then(|r| r.strip_suffix("_total")) {
            classes.push((class, num));
        } else if *k != "http_requests_5xx_total" {
            plain.push((*k, num));
        }
    }
    (plain, classes)
}

/// One histogram's buckets, sum and count; `label` is `""` or `name="v",`.
fn write_histogram(out: &mut String, name: &str, label: &str, h: &Histogram<u64>) {
    use std::fmt::Write;
    for b in BUCKETS_S {
        let n = if h.is_empty() { 0 } else { h.count_between(0, (b * 1e6) as u64) };
        let _ = writeln!(out, "{name}_bucket{{{label}le=\"{b}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{label}le=\"+Inf\"}} {}", h.len());
    let sum_us: f64 = h.iter_recorded().map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64).sum();
    let sel = label.trim_end_matches(',');
    let braces = if sel.is_empty() { String::new() } else { format!("{{{sel}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {}", sum_us / 1e6);
    let _ = writeln!(out, "{name}_count{braces} {}", h.len());
}

/// The exposition `promtool check metrics` accepts (`?format=strict`):
/// every family with HELP and TYPE, counters ending in `_total`, time in
/// seconds, latency as histograms with buckets (overall and per route
/// class). The original's names (API.md) are translated by fixed rules, so
/// each JSON key still has one series: `_us` and `_ms` become `_seconds`
/// (values converted), a counter without `_total` gets it.
pub fn prometheus_strict(pairs: &[(&str, Value)], latency: &Histogram<u64>, by_class: &[Histogram<u64>]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(16384);
    let (plain, classes) = split_pairs(pairs);
    for (k, num) in plain {
        let (name, value, kind) = strict_name(k, num);
        let _ = writeln!(
            out,
            "# HELP {name} The '{k}' field of GET /metrics{}.\n# TYPE {name} {kind}\n{name} {value}",
            if name.ends_with("_seconds") || name.contains("_seconds_") { ", in seconds" } else { "" }
        );
    }
    let _ = writeln!(out, "# HELP aionbd_http_responses_total HTTP responses by status class.");
    let _ = writeln!(out, "# TYPE aionbd_http_responses_total counter");
    for (class, n) in classes {
        let _ = writeln!(out, "aionbd_http_responses_total{{status=\"{class}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP aionbd_http_request_duration_seconds HTTP request latency (all routes, all shards).");
    let _ = writeln!(out, "# TYPE aionbd_http_request_duration_seconds histogram");
    write_histogram(&mut out, "aionbd_http_request_duration_seconds", "", latency);
    let _ = writeln!(
        out,
        "# HELP aionbd_http_route_duration_seconds Latency of routed requests by route class: search (the three \
         search routes), write (API.md's write routes), read (other data routes), admin (health, metrics, backups, \
         the status page and the API description)."
    );
    let _ = writeln!(out, "# TYPE aionbd_http_route_duration_seconds histogram");
    for (class, h) in ROUTE_CLASSES.iter().zip(by_class) {
        write_histogram(&mut out, "aionbd_http_route_duration_seconds", &format!("class=\"{class}\","), h);
    }
    out
}

/// A JSON key's strict name, value and type: `_us` / `_ms` to seconds,
/// counters ending in `_total`.
fn strict_name(k: &str, num: f64) -> (String, f64, &'static str) {
    let mut name = k.to_owned();
    let mut value = num;
    for (unit, per_second) in [("_us", 1e6), ("_ms", 1e3)] {
        for suffix in ["", "_max", "_avg", "_total"] {
            let from = format!("{unit}{suffix}");
            if let Some(stem) = name.strip_suffix(&from) {
                name = format!("{stem}_seconds{suffix}");
                value = num / per_second;
                break;
            }
        }
    }
    let counter = k.ends_with("_total")
        || k == "persistence_writes"
        || matches!(
            k,
            "l2_index_cache_lookups"
                | "l2_index_cache_hits"
                | "l2_index_cache_misses"
                | "l2_index_build_requests"
                | "l2_index_build_successes"
                | "l2_index_build_failures"
                | "l2_index_build_cooldown_skips"
        );
    if counter && !name.ends_with("_total") {
        name.push_str("_total");
    }
    (format!("aionbd_{name}"), value, if counter { "counter" } else { "gauge" })
}

#[cfg(test)]
mod strict_tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        assert_eq!(strict_name("persistence_writes", 3.0), ("aionbd_persistence_writes_total".into(), 3.0, "counter"));
        assert_eq!(
            strict_name("http_request_duration_us_total", 2e6),
            ("aionbd_http_request_duration_seconds_total".into(), 2.0, "counter")
        );
        assert_eq!(
            strict_name("http_request_duration_us_max", 1500.0),
            ("aionbd_http_request_duration_seconds_max".into(), 0.0015, "gauge")
        );
        assert_eq!(strict_name("uptime_ms", 2000.0), ("aionbd_uptime_seconds".into(), 2.0, "gauge"));
        assert_eq!(strict_name("points", 7.0), ("aionbd_points".into(), 7.0, "gauge"));
    }

    #[test]
    fn a_growing_histogram_answers_as_a_full_range_one() {
        let mut full = Histogram::<u64>::new_with_bounds(1, HIST_MAX_US, HIST_DIGITS).unwrap();
        let mut grown = new_histogram();
        let empty = new_histogram();
        assert_eq!(empty.count_between(0, 10_000_000), 0);
        for us in [3, 50, 300, 300, 2_000, 20_000_000, HIST_MAX_US] {
            full.record(us).unwrap();
            grown.record(us).unwrap();
        }
        let mut merged = new_histogram();
        merged.add(&grown).unwrap();
        for h in [&grown, &merged] {
            for q in [0.5, 0.9, 0.99, 1.0] {
                assert_eq!(h.value_at_quantile(q), full.value_at_quantile(q));
            }
            assert_eq!(h.count_between(0, 2_500), full.count_between(0, 2_500));
            assert_eq!(h.len(), full.len());
        }
        let mut small = new_histogram();
        small.record(100).unwrap();
        assert_eq!(small.count_between(0, 10_000_000), 1, "a bound past its counters counts all");
    }

    #[test]
    fn the_latency_histogram_is_cumulative() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for us in [50, 300, 300, 2_000, 20_000_000] {
            h.record(us).unwrap();
        }
        let classes: [Histogram<u64>; 4] = std::array::from_fn(|_| h.clone());
        let text = prometheus_strict(&[("points", Value::U(1))], &h, &classes);
        let bucket = |le: &str| -> u64 {
            let line = text.lines().find(|l| l.contains(&format!("le=\"{le}\""))).unwrap();
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert_eq!(
            (bucket("0.0001"), bucket("0.0005"), bucket("0.0025"), bucket("10"), bucket("+Inf")),
            (1, 3, 4, 4, 5)
        );
        assert!(text.contains("# HELP aionbd_points ") && text.contains("# TYPE aionbd_points gauge"));
    }
}
