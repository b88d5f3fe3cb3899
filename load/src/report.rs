//! What a run measured: latency percentiles from an HdrHistogram (in
//! microseconds, 3 significant digits), throughput, errors by status, recall,
//! the server's /metrics deltas; as text, as JSON, as an SVG percentile plot;
//! and the comparison of two JSON reports.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A histogram of latencies in microseconds, 1 us .. 1 hour.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// (percentile, microseconds) for plotting.
    #[serde(default)]
    pub percentiles: Vec<(f64, u64)>,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let percentiles = [0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0]
            .iter()
            .map(|&p| (p, h.value_at_percentile(p)))
            .collect();
        Latency {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            percentiles,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub url: String,
    pub workload: String,
    /// "open" (fixed arrival rate) or "closed" (N connections).
    pub loop_kind: String,
    pub target_rate: Option<f64>,
    pub connections: usize,
    pub duration_s: f64,
    pub requests: u64,
    pub ok: u64,
    pub throughput_per_s: f64,
    /// Answers by HTTP status (0: no answer: connection error or timeout).
    pub status: BTreeMap<String, u64>,
    /// Requests sent again after a 429/503 or a lost connection (never
    /// silent: they are counted here and in the live line).
    pub retries: u64,
    pub latency: Latency,
    /// Per operation kind (search, upsert, ...), when the run mixes them.
    pub by_kind: BTreeMap<String, Latency>,
    /// Mean recall@k of the answers checked, and how many were checked.
    pub recall: Option<f64>,
    pub recall_checked: u64,
    /// How late the generator itself sent open-loop requests (not the
    /// server's doing): p99 in microseconds and the share sent > 1 ms late.
    pub generator_lag_p99_us: u64,
    #[serde(default)]
    pub generator_lag_max_us: u64,
    pub generator_late_share: f64,
    /// Numeric fields of the server's `/metrics` that changed during the run.
    pub server_metrics_delta: BTreeMap<String, f64>,
    pub started_unix_s: u64,
}

impl Report {
    pub fn text(&self) -> String {
        let l = &self.latency;
        let ms = |us: u64| us as f64 / 1000.0;
        let mut out = format!(
            "{} {}-loop against {}: {} requests in {:.1} s = {:.0}/s{}\n",
            self.workload,
            self.loop_kind,
            self.url,
            self.requests,
            self.duration_s,
            self.throughput_per_s,
            self.target_rate.map_or(String::new(), |r| format!(" (target {r:.0}/s)"))
        );
        out.push_str(&format!(
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}{}\n",
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.max_us),
            l.mean_us / 1000.0,
            if self.loop_kind == "open" { " (from intended start)" } else { "" }
        ));
        for (kind, k) in &self.by_kind {
            out.push_str(&format!(
                "  {kind}: {} requests, p50 {:.3} p99 {:.3} max {:.3} ms\n",
                k.count,
                ms(k.p50_us),
                ms(k.p99_us),
                ms(k.max_us)
            ));
        }
        let status: Vec<String> = self.status.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        out.push_str(&format!("status: {}; retries: {}\n", status.join(", "), self.retries));
        if let Some(r) = self.recall {
            out.push_str(&format!("recall@k: {r:.4} over {} answers\n", self.recall_checked));
        }
        if self.loop_kind == "open" {
            out.push_str(&format!(
                "generator: p99 {:.3} ms late, {:.2}% of requests sent > 1 ms late\n",
                ms(self.generator_lag_p99_us),
                self.generator_late_share * 100.0
            ));
        }
        if !self.server_metrics_delta.is_empty() {
            let d: Vec<String> = self.server_metrics_delta.iter().map(|(k, v)| format!("{k} +{v}")).collect();
            out.push_str(&format!("server /metrics: {}\n", d.join(", ")));
        }
        out
    }

    /// An HdrHistogram-style percentile plot: x is the percentile on a
    /// log scale of 1/(1-p), y the latency in ms.
    pub fn svg(reports: &[(&str, &Report)]) -> String {
        let (w, h, left, bottom, top, right) = (760.0, 420.0, 70.0, 50.0, 30.0, 20.0);
        let x_of = |p: f64| {
            let v = (1.0 / (1.0 - (p / 100.0).min(0.99999))).log10(); // 0 .. 5
            left + (w - left - right) * v / 5.0
        };
        let max_us =
            reports.iter().flat_map(|(_, r)| r.latency.percentiles.iter().map(|(_, v)| *v)).max().unwrap_or(1).max(1)
                as f64;
        let y_of = |us: f64| h - bottom - (h - bottom - top) * us / max_us;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{left}\" y=\"18\">latency by percentile (ms)</text>\n"
        );
        for p in [0.0, 90.0, 99.0, 99.9, 99.99, 99.999] {
            let x = x_of(p);
            s.push_str(&format!(
                "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#ddd\"/>\
                 <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{p}%</text>\n",
                h - bottom,
                h - bottom + 18.0
            ));
        }
        for i in 0..=4 {
            let us = max_us * i as f64 / 4.0;
            let y = y_of(us);
            s.push_str(&format!(
                "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{:.2}</text>\n",
                w - right,
                left - 6.0,
                y + 4.0,
                us / 1000.0
            ));
        }
        let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
        for (i, (name, r)) in reports.iter().enumerate() {
            let c = colors[i % colors.len()];
            let pts: Vec<String> =
                r.latency.percentiles.iter().map(|(p, v)| format!("{:.1},{:.1}", x_of(*p), y_of(*v as f64))).collect();
            s.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n",
                pts.join(" ")
            ));
            s.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{}: p99 {:.2} ms</text>\n",
                left + 10.0,
                top + 16.0 * (i as f64 + 1.0),
                xml_escape(name),
                r.latency.p99_us as f64 / 1000.0
            ));
        }
        s.push_str("</svg>\n");
        s
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// How `new` compares with `base`: lines to print, and whether any figure
/// got worse by more than `threshold` (a fraction: 0.10 = 10 %).
pub fn compare(base: &Report, new: &Report, threshold: f64) -> (Vec<String>, bool) {
    let mut lines = vec![format!("{:<12} {:>12} {:>12} {:>9}", "figure", "base", "new", "change")];
    let mut worse = false;
    let mut row = |name: &str, b: f64, n: f64, higher_is_better: bool| {
        let change = if b == 0.0 { 0.0 } else { (n - b) / b };
        let bad = if higher_is_better { change < -threshold } else { change > threshold };
        worse |= bad;
        lines.push(format!(
            "{name:<12} {b:>12.3} {n:>12.3} {:>+8.1}%{}",
            change * 100.0,
            if bad { "  WORSE" } else { "" }
        ));
    };
    row("throughput/s", base.throughput_per_s, new.throughput_per_s, true);
    for (name, b, n) in [
        ("p50 ms", base.latency.p50_us, new.latency.p50_us),
        ("p90 ms", base.latency.p90_us, new.latency.p90_us),
        ("p99 ms", base.latency.p99_us, new.latency.p99_us),
        ("p99.9 ms", base.latency.p999_us, new.latency.p999_us),
    ] {
        row(name, b as f64 / 1000.0, n as f64 / 1000.0, false);
    }
    let errors = |r: &Report| r.requests.saturating_sub(r.ok) as f64 / r.requests.max(1) as f64;
    let (eb, en) = (errors(base), errors(new));
    let bad = en > eb + threshold / 10.0;
    worse |= bad;
    lines.push(format!(
        "{:<12} {:>11.2}% {:>11.2}%{}",
        "errors",
        eb * 100.0,
        en * 100.0,
        if bad { "  WORSE" } else { "" }
    ));
    if let (Some(b), Some(n)) = (base.recall, new.recall) {
        let bad = n < b - 0.005;
        worse |= bad;
        lines.push(format!("{:<12} {b:>12.4} {n:>12.4}{}", "recall", if bad { "  WORSE" } else { "" }));
    }
    (lines, worse)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The report's arithmetic against a hand-built histogram: 100 values,
    /// 1..=100 ms.
    #[test]
    fn percentiles_match_a_hand_computed_histogram() {
        let mut h = histogram();
        for ms in 1..=100u64 {
            h.record(ms * 1000).unwrap();
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 100);
        // HdrHistogram at 3 significant digits: values within 0.1 %.
        let near = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.001 + 1.0;
        assert!(near(l.p50_us, 50_000), "{}", l.p50_us);
        assert!(near(l.p90_us, 90_000), "{}", l.p90_us);
        assert!(near(l.p99_us, 99_000), "{}", l.p99_us);
        assert!(near(l.p999_us, 100_000), "{}", l.p999_us);
        assert!(near(l.max_us, 100_000), "{}", l.max_us);
        assert!((l.mean_us - 50_500.0).abs() < 60.0, "{}", l.mean_us);
    }

    #[test]
    fn compare_flags_a_p99_regression_past_the_threshold_only() {
        let mut base = Report { requests: 1000, ok: 1000, throughput_per_s: 500.0, ..Default::default() };
        base.latency.p99_us = 10_000;
        let mut same = base.clone();
        same.latency.p99_us = 10_500; // +5 %
        assert!(!compare(&base, &same, 0.10).1);
        let mut slower = base.clone();
        slower.latency.p99_us = 12_000; // +20 %
        let (lines, worse) = compare(&base, &slower, 0.10);
        assert!(worse && lines.iter().any(|l| l.starts_with("p99 ms") && l.ends_with("WORSE")), "{lines:?}");
        let mut fewer = base.clone();
        fewer.throughput_per_s = 400.0;
        assert!(compare(&base, &fewer, 0.10).1);
    }

    #[test]
    fn the_plot_is_svg_with_one_line_per_report() {
        let mut h = histogram();
        for us in [100, 200, 300, 5000] {
            h.record(us).unwrap();
        }
        let r = Report { latency: Latency::of(&h), ..Default::default() };
        let svg = Report::svg(&[("a", &r), ("b<c", &r)]);
        assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 2 && svg.contains("b&lt;c"));
    }
}
