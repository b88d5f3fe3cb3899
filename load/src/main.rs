//! `aionbd-load`: a load generator for AIONBD, pointed at any URL.
//!
//! - `run`: open loop at a fixed arrival rate (`--rate`, uniform or Poisson;
//!   latency from each request's intended start, so a stalled server shows)
//!   or closed loop with N connections (`--connections`, optional
//!   pipelining); workloads search / upsert / batch-upsert / delete / mixed;
//!   data from fvecs / npy / NDJSON or generated; recall against ground
//!   truth (ivecs) or the server's exact mode; a live line each second, a
//!   text and JSON report, an SVG percentile plot.
//! - `knee`: step the arrival rate up until p99 passes a bound.
//! - `compare`: two JSON reports; exits 1 past a threshold.
//! - `plot`: SVG of one or more JSON reports.

mod client;
mod data;
mod drive;
mod report;
mod sched;
mod setup;

use clap::{Parser, Subcommand, ValueEnum};
use client::{Conn, Target};
use data::Vectors;
use drive::run;
use report::Report;
use sched::Arrival;
use setup::prepare;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "aionbd-load", version, about = "Load generator for AIONBD (latency, throughput, recall)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one workload and report.
    Run(RunArgs),
    /// Step the arrival rate up until p99 passes --p99-ms; report the highest rate that held.
    Knee(KneeArgs),
    /// Compare two JSON reports; exit 1 if the new one is worse past the threshold.
    Compare {
        base: PathBuf,
        new: PathBuf,
        /// Allowed change, in percent, before a figure counts as worse.
        #[arg(long, default_value_t = 10.0)]
        threshold_percent: f64,
    },
    /// Check that every write an --acked-log recorded is on the server with
    /// its exact values (after crashes, restarts, a full disk).
    Verify {
        #[command(flatten)]
        run: RunArgs,
        /// The log `run --acked-log` wrote.
        #[arg(long)]
        acked: PathBuf,
    },
    /// Write an SVG percentile plot of JSON reports.
    Plot {
        reports: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    Search,
    Upsert,
    BatchUpsert,
    Delete,
    /// Searches and single-point upserts, `--read-ratio` of them searches.
    Mixed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Exact,
    Auto,
    Hnsw,
    Ivf,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Server URL (http:// or https://).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key (x-api-key).
    #[arg(long)]
    api_key: Option<String>,
    /// Bearer token or JWT.
    #[arg(long)]
    token: Option<String>,
    /// PEM CA file for HTTPS.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "search")]
    workload: Workload,
    /// Collection(s) to use, comma-separated; requests rotate over them.
    #[arg(long, default_value = "load")]
    collection: String,
    /// Create the collection(s) if missing (dimension from the data).
    #[arg(long)]
    create: bool,
    /// Upsert every data vector (ids 0..n) before the run.
    #[arg(long)]
    preload: bool,
    /// After preloading, wait until no index build runs (up to 30 min).
    #[arg(long)]
    wait_index: bool,
    /// Vectors to write (and to search with if no --queries): fvecs, npy or NDJSON.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Without --data: generate this many clustered vectors.
    #[arg(long, default_value_t = 10_000)]
    generate: usize,
    /// Dimension of generated vectors.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    #[arg(long, default_value_t = 64)]
    clusters: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Query vectors (fvecs, npy, NDJSON); default: generated beside the data, or the data rows.
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Ground truth (ivecs, one row per query): recall of every answer.
    #[arg(long)]
    ground_truth: Option<PathBuf>,
    /// Without ground truth: after the run, compare this many queries with the server's exact mode.
    #[arg(long, default_value_t = 0)]
    recall_sample: usize,
    #[arg(long, value_enum, default_value = "auto")]
    mode: Mode,
    /// For mode auto: the recall to meet.
    #[arg(long)]
    target_recall: Option<f64>,
    /// For mode hnsw.
    #[arg(long)]
    ef: Option<u32>,
    /// For mode ivf.
    #[arg(long)]
    nprobe: Option<u32>,
    #[arg(long, default_value_t = 10)]
    limit: usize,
    #[arg(long, default_value = "cosine")]
    metric: String,
    /// A search filter (JSON), sent as is.
    #[arg(long)]
    filter: Option<String>,
    /// Share of searches in a mixed workload.
    #[arg(long, default_value_t = 0.9)]
    read_ratio: f64,
    /// Points per batch upsert.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Append "collection id row" for every acknowledged upserted point to
    /// this file (for `aionbd-load verify`, after crashes).
    #[arg(long)]
    acked_log: Option<PathBuf>,
    /// First id the write workloads create (default: the number of data
    /// vectors, so preloaded points and searches' truth stay untouched).
    #[arg(long)]
    id_start: Option<u64>,
    /// Upserted points are data rows moved by Gaussian noise of this size
    /// (relative to the row's norm; the norm is kept): 0.5 puts a point at
    /// cosine ~0.9 from its row, a paraphrase rather than a copy. Default 0:
    /// exact copies of data rows under new ids (what `verify` checks).
    #[arg(long, default_value_t = 0.0)]
    vary: f32,
    /// Open loop: requests per second (latency from each request's intended start).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, value_enum, default_value = "uniform")]
    arrival: Arrival,
    /// Connections: the closed loop's callers, or the open loop's pool (default 64 then).
    #[arg(long)]
    connections: Option<usize>,
    /// Closed loop: requests in flight per connection (pipelining).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Attempts again after 429 / 503 / a lost connection (counted in the report).
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the percentile plot as SVG.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// No live line.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct KneeArgs {
    #[command(flatten)]
    run: RunArgs,
    /// The p99 that must hold, in ms.
    #[arg(long)]
    p99_ms: f64,
    #[arg(long, default_value_t = 100.0)]
    start_rate: f64,
    /// Each step multiplies the rate by this.
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    /// Seconds per step.
    #[arg(long, default_value_t = 10.0)]
    step_duration: f64,
    #[arg(long, default_value_t = 20)]
    max_steps: usize,
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Run(a) => match run_cmd(&a) {
            Ok(worse) => worse,
            Err(e) => fail(&e),
        },
        Cmd::Knee(k) => match knee(&k) {
            Ok(()) => 0,
            Err(e) => fail(&e),
        },
        Cmd::Compare { base, new, threshold_percent } => match (read_report(&base), read_report(&new)) {
            (Ok(b), Ok(n)) => {
                let (lines, worse) = report::compare(&b, &n, threshold_percent / 100.0);
                for l in lines {
                    println!("{l}");
                }
                println!(
                    "compare: {} (threshold {threshold_percent}%)",
                    if worse { "WORSE" } else { "no figure worse" }
                );
                i32::from(worse)
            }
            (Err(e), _) | (_, Err(e)) => fail(&e),
        },
        Cmd::Verify { run, acked } => match verify(&run, &acked) {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => fail(&e),
        },
        Cmd::Plot { reports, out } => {
            let loaded: Result<Vec<(String, Report)>, String> =
                reports.iter().map(|p| read_report(p).map(|r| (p.display().to_string(), r))).collect();
            match loaded {
                Ok(rs) => {
                    let refs: Vec<(&str, &Report)> = rs.iter().map(|(n, r)| (n.as_str(), r)).collect();
                    match std::fs::write(&out, Report::svg(&refs)) {
                        Ok(()) => 0,
                        Err(e) => fail(&format!("{}: {e}", out.display())),
                    }
                }
                Err(e) => fail(&e),
            }
        }
    };
    std::process::exit(code);
}

fn fail(e: &str) -> i32 {
    eprintln!("aionbd-load: {e}");
    2
}

fn read_report(p: &std::path::Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a report: {e}", p.display()))
}

/// Everything a worker needs, shared read-only.
struct Plan {
    target: Target,
    collections: Vec<String>,
    workload: Workload,
    data: Vectors,
    queries: Vectors,
    truth: Option<Vec<Vec<u64>>>,
    search_body_tail: String,
    /// Search requests rendered once, `[query * collections + collection]`
    /// (when there are at most [`RENDERED_MAX`]), so a worker's turn costs
    /// no float formatting: the client's own time per request is what
    /// limits one connection's rate.
    rendered: Vec<Vec<u8>>,
    read_ratio: f64,
    batch: usize,
    id_start: u64,
    /// `--vary`.
    vary: f32,
    /// Where acknowledged writes are logged (`--acked-log`).
    acked: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    limit: usize,
    timeout: Duration,
    retries: u32,
}

/// Operation kinds, for per-kind latency.
const KINDS: [&str; 4] = ["search", "upsert", "batch-upsert", "delete"];

impl Plan {
    /// Request `i`: its kind (index into KINDS), query index, bytes.
    /// The kind of request `i` (index into KINDS).
    fn kind_of(&self, i: u64) -> usize {
        match self.workload {
            Workload::Search => 0,
            Workload::Upsert => 1,
            Workload::BatchUpsert => 2,
            Workload::Delete => 3,
            Workload::Mixed => {
                // A fixed pseudo-random split: the same i, the same kind.
                let u = (sched::Rng::new(i ^ 0x5eed).next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                if u < self.read_ratio {
                    0
                } else {
                    1
                }
            }
        }
    }

    /// Record the points request `i` wrote, once it was acknowledged
    /// (`--acked-log`: "collection id row" lines for `verify`).
    fn log_acked(&self, i: u64, status: u16) {
        let Some(log) = &self.acked else { return };
        if status != 200 {
            return;
        }
        use std::io::Write;
        let coll = &self.collections[(i as usize) % self.collections.len()];
        let rows = self.data.rows() as u64;
        let mut w = log.lock().expect("acked log");
        match self.kind_of(i) {
            1 => {
                let _ = writeln!(w, "{coll} {} {}", self.id_start + i, i % rows);
            }
            2 => {
                for k in 0..self.batch as u64 {
                    let n = i * self.batch as u64 + k;
                    let _ = writeln!(w, "{coll} {} {}", self.id_start + n, n % rows);
                }
            }
            _ => {}
        }
    }

    fn request(&self, i: u64) -> (usize, usize, std::borrow::Cow<'_, [u8]>) {
        let coll = &self.collections[(i as usize) % self.collections.len()];
        let kind = self.kind_of(i);
        let rows = self.data.rows();
        match kind {
            0 => {
                let q = (i as usize) % self.queries.rows();
                let c = (i as usize) % self.collections.len();
                match self.rendered.get(q * self.collections.len() + c) {
                    Some(bytes) => (0, q, bytes.as_slice().into()),
                    None => (0, q, self.search_request(q, c).into()),
                }
            }
            1 => {
                // New ids (above the data's by default: searches keep their truth).
                let id = self.id_start + i;
                let body = format!("{{\"values\":{}}}", floats(&self.point(id, (i as usize) % rows)));
                (
                    1,
                    0,
                    Conn::request(
                        &self.target,
                        "PUT",
                        &format!("/collections/{coll}/points/{id}"),
                        Some(body.as_bytes()),
                    )
                    .into(),
                )
            }
            2 => {
                let mut body = String::from("{\"points\":[");
                for k in 0..self.batch {
                    let n = i * self.batch as u64 + k as u64;
                    if k > 0 {
                        body.push(',');
                    }
                    body.push_str(&format!(
                        "{{\"id\":{},\"values\":{}}}",
                        self.id_start + n,
                        floats(&self.point(self.id_start + n, (n as usize) % rows))
                    ));
                }
                body.push_str("]}");
                (
                    2,
                    0,
                    Conn::request(&self.target, "POST", &format!("/collections/{coll}/points"), Some(body.as_bytes()))
                        .into(),
                )
            }
            _ => {
                let id = (i as usize) % rows;
                (3, 0, Conn::request(&self.target, "DELETE", &format!("/collections/{coll}/points/{id}"), None).into())
            }
        }
    }
}

/// Most search requests [`Plan::rendered`] holds (about 1.5 KiB each at
/// 384 dimensions).
const RENDERED_MAX: usize = 65_536;

impl Plan {
    /// The search request for query `q` on collection `c`.
    fn search_request(&self, q: usize, c: usize) -> Vec<u8> {
        let body = format!("{{\"query\":{}{}", floats(self.queries.row(q)), self.search_body_tail);
        let path = format!("/collections/{}/search/topk", self.collections[c]);
        Conn::request(&self.target, "POST", &path, Some(body.as_bytes()))
    }

    /// Render every search request once, if the workload searches and
    /// they are few enough.
    fn render_searches(&mut self) {
        let n = self.queries.rows() * self.collections.len();
        if !matches!(self.workload, Workload::Search | Workload::Mixed) || n > RENDERED_MAX {
            return;
        }
        let c = self.collections.len();
        self.rendered = (0..n).map(|k| self.search_request(k / c, k % c)).collect();
    }

    /// The vector written as point `id`: data row `row`, or with `--vary`
    /// that row moved by noise seeded by the id ([`varied`]).
    fn point(&self, id: u64, row: usize) -> std::borrow::Cow<'_, [f32]> {
        let x = self.data.row(row);
        if self.vary <= 0.0 {
            return std::borrow::Cow::Borrowed(x);
        }
        std::borrow::Cow::Owned(varied(x, self.vary, id))
    }
}

/// `x` plus Gaussian noise of `vary` times its norm (spread over its
/// dimensions), scaled back to `x`'s norm; the same seed, the same vector.
fn varied(x: &[f32], vary: f32, seed: u64) -> Vec<f32> {
    let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
    let n = norm(x);
    let scale = vary * n / (x.len().max(1) as f32).sqrt();
    let mut rng = sched::Rng::new(seed ^ 0x7a11_5eed);
    let mut v: Vec<f32> = x.iter().map(|&a| a + scale * rng.normal() as f32).collect();
    let m = norm(&v);
    if m > 0.0 {
        v.iter_mut().for_each(|a| *a *= n / m);
    }
    v
}

fn floats(v: &[f32]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(v.len() * 12 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x}");
    }
    s.push(']');
    s
}

/// One measured request, for the collector.
struct Sample {
    kind: usize,
    intended: Instant,
    sent: Instant,
    done: Instant,
    status: u16,
    retried: u32,
    recall: Option<f64>,
}

/// Send one request (retrying as asked), reconnecting after a lost
/// connection. Returns the answer's status (0: none) and body.
fn exchange(plan: &Plan, conn: &mut Option<Conn>, bytes: &[u8]) -> (u16, Vec<u8>, u32) {
    let mut retried = 0;
    loop {
        let result = (|| -> std::io::Result<client::Answer> {
            if conn.is_none() {
                *conn = Some(Conn::open(&plan.target, plan.timeout)?);
            }
            let c = conn.as_mut().expect("opened above");
            c.send(bytes)?;
            c.read_answer()
        })();
        let (status, body, wait) = match result {
            Ok(a) => (a.status, a.body, a.retry_after.map(Duration::from_secs)),
            Err(_) => {
                *conn = None;
                (0, Vec::new(), None)
            }
        };
        let retryable = matches!(status, 0 | 429 | 503);
        if !retryable || retried >= plan.retries {
            return (status, body, retried);
        }
        retried += 1;
        std::thread::sleep(wait.unwrap_or(Duration::from_millis(50 << retried.min(5))));
    }
}

/// The ids of a top-k answer's hits (a typed parse: no tree of values).
fn hit_ids(body: &[u8]) -> Option<Vec<u64>> {
    #[derive(serde::Deserialize)]
    struct Hit {
        id: u64,
    }
    #[derive(serde::Deserialize)]
    struct TopK {
        hits: Vec<Hit>,
    }
    let t: TopK = serde_json::from_slice(body).ok()?;
    Some(t.hits.into_iter().map(|h| h.id).collect())
}

fn recall_of(plan: &Plan, kind: usize, query: usize, status: u16, body: &[u8]) -> Option<f64> {
    let truth = plan.truth.as_ref()?;
    if kind != 0 || status != 200 {
        return None;
    }
    let ids = hit_ids(body)?;
    Some(data::recall(&ids, &truth[query], plan.limit))
}

struct RunResult {
    report: Report,
}

/// Run the workload as `a` says (after preloading if asked).
fn run_cmd(a: &RunArgs) -> Result<i32, String> {
    let plan = Arc::new(prepare(a)?);
    let result = run(&plan, a, a.rate)?;
    let r = &result.report;
    print!("{}", r.text());
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(r).expect("JSON"))
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if let Some(p) = &a.svg {
        std::fs::write(p, Report::svg(&[(&r.workload, r)])).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if r.loop_kind == "open" && r.generator_lag_max_us > 1_000_000 {
        return Err(format!(
            "this machine could not generate {:.0} requests/s: the generator fell {:.1} s behind its schedule \
             (p99 {:.1} ms late); the figures above measure the generator, not the server: lower --rate, or run \
             the load from another machine",
            a.rate.unwrap_or(0.0),
            r.generator_lag_max_us as f64 / 1e6,
            r.generator_lag_p99_us as f64 / 1000.0
        ));
    }
    if r.loop_kind == "open" && r.generator_lag_p99_us * 4 > r.latency.p99_us {
        eprintln!(
            "aionbd-load: warning: the generator itself sent requests up to {:.1} ms late (p99), a quarter or more \
             of the p99 it reports: on this machine the load generator competes with the server for CPU",
            r.generator_lag_p99_us as f64 / 1000.0
        );
    }
    Ok(0)
}

fn headers(a: &RunArgs) -> String {
    let mut h = String::new();
    if let Some(k) = &a.api_key {
        h.push_str(&format!("x-api-key: {k}\r\n"));
    }
    if let Some(t) = &a.token {
        h.push_str(&format!("authorization: Bearer {t}\r\n"));
    }
    h
}

/// Numeric fields of /metrics (top level and one level down).
fn metrics(target: &Target, timeout: Duration) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(mut c) = Conn::open(target, timeout) else { return out };
    let Ok(a) = c.call("GET", "/metrics", None) else { return out };
    let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(&a.body) else { return out };
    for (k, v) in m {
        match v {
            serde_json::Value::Number(n) => {
                out.insert(k, n.as_f64().unwrap_or(0.0));
            }
            serde_json::Value::Object(inner) => {
                for (k2, v2) in inner {
                    if let Some(n) = v2.as_f64() {
                        out.insert(format!("{k}.{k2}"), n);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Recall of the run's mode against the server's exact mode, on `n` queries.
fn sampled_recall(plan: &Plan, n: usize) -> Result<(f64, u64), String> {
    let mut conn = Conn::open(&plan.target, plan.timeout).map_err(|e| e.to_string())?;
    let coll = &plan.collections[0];
    let ids = |body: &[u8]| hit_ids(body).unwrap_or_default();
    let (mut sum, mut count) = (0.0, 0u64);
    for q in 0..n.min(plan.queries.rows()) {
        let query = floats(plan.queries.row(q));
        let body = format!("{{\"query\":{query}{}", plan.search_body_tail);
        let got = conn
            .call("POST", &format!("/collections/{coll}/search/topk"), Some(body.as_bytes()))
            .map_err(|e| e.to_string())?;
        let exact_tail = plan
            .search_body_tail
            .replace("\"mode\":\"auto\"", "\"mode\":\"exact\"")
            .replace("\"mode\":\"hnsw\"", "\"mode\":\"exact\"")
            .replace("\"mode\":\"ivf\"", "\"mode\":\"exact\"");
        let exact_body = format!("{{\"query\":{query}{exact_tail}");
        let exact = conn
            .call("POST", &format!("/collections/{coll}/search/topk"), Some(exact_body.as_bytes()))
            .map_err(|e| e.to_string())?;
        if got.status == 200 && exact.status == 200 {
            sum += data::recall(&ids(&got.body), &ids(&exact.body), plan.limit);
            count += 1;
        }
    }
    Ok((if count > 0 { sum / count as f64 } else { 0.0 }, count))
}

/// Step the rate up until p99 passes the bound (or errors pass 1 %).
fn knee(k: &KneeArgs) -> Result<(), String> {
    let plan = Arc::new(prepare(&k.run)?);
    let mut a = k.run.clone();
    a.duration = k.step_duration;
    a.quiet = true;
    let mut rate = k.start_rate;
    let mut held: Option<(f64, Report)> = None;
    let mut steps = Vec::new();
    println!("{:>10} {:>10} {:>10} {:>10} {:>8}", "rate/s", "got/s", "p50 ms", "p99 ms", "errors");
    for _ in 0..k.max_steps {
        let r = run(&plan, &a, Some(rate))?.report;
        let errors = r.requests.saturating_sub(r.ok) as f64 / r.requests.max(1) as f64;
        println!(
            "{rate:>10.0} {:>10.0} {:>10.3} {:>10.3} {:>7.2}%",
            r.throughput_per_s,
            r.latency.p50_us as f64 / 1000.0,
            r.latency.p99_us as f64 / 1000.0,
            errors * 100.0
        );
        if r.generator_lag_max_us > 1_000_000 {
            println!(
                "knee: stopped at {rate:.0}/s: this machine cannot generate that rate (the generator fell behind)"
            );
            break;
        }
        let ok = r.latency.p99_us as f64 / 1000.0 <= k.p99_ms && errors <= 0.01;
        steps.push(r.clone());
        if !ok {
            break;
        }
        held = Some((rate, r));
        rate *= k.factor;
    }
    match &held {
        Some((rate, r)) => println!(
            "knee: {rate:.0} requests/s held p99 <= {} ms (p99 {:.3} ms); the next step did not",
            k.p99_ms,
            r.latency.p99_us as f64 / 1000.0
        ),
        None => println!("knee: even {:.0} requests/s missed p99 <= {} ms", k.start_rate, k.p99_ms),
    }
    if let Some(p) = &k.run.json {
        let out =
            serde_json::json!({"p99_bound_ms": k.p99_ms, "knee_rate": held.as_ref().map(|h| h.0), "steps": steps});
        std::fs::write(p, serde_json::to_string_pretty(&out).expect("JSON"))
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

/// `verify`: GET every logged point; its values must be the data row's,
/// bit for bit. Prints one summary line; `Ok(false)` if any is missing.
fn verify(a: &RunArgs, acked: &std::path::Path) -> Result<bool, String> {
    let target = Target::parse(&a.url, a.ca_file.as_deref(), headers(a))?;
    let data = match &a.data {
        Some(p) => Vectors::load(p)?,
        None => Vectors::generate(a.generate, a.dim, a.clusters, a.seed),
    };
    let text = std::fs::read_to_string(acked).map_err(|e| format!("{}: {e}", acked.display()))?;
    let mut conn = Conn::open(&target, Duration::from_secs_f64(a.timeout)).map_err(|e| format!("{}: {e}", a.url))?;
    let (mut checked, mut bad) = (0u64, Vec::new());
    for (n, line) in text.lines().enumerate() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [coll, id, row] = parts[..] else {
            return Err(format!("{} line {}: not 'collection id row'", acked.display(), n + 1));
        };
        let row: usize = row.parse().map_err(|_| format!("{} line {}: bad row", acked.display(), n + 1))?;
        if row >= data.rows() {
            return Err(format!(
                "{} line {}: row {row}, the data has {} (same data options as the run?)",
                acked.display(),
                n + 1,
                data.rows()
            ));
        }
        let answer = conn.call("GET", &format!("/collections/{coll}/points/{id}"), None).map_err(|e| e.to_string())?;
        let ok = answer.status == 200
            && serde_json::from_slice::<serde_json::Value>(&answer.body).ok().is_some_and(|v| {
                v.get("values").and_then(|x| x.as_array()).is_some_and(|vals| {
                    vals.len() == data.dim
                        && vals.iter().zip(data.row(row)).all(|(x, want)| x.as_f64().map(|f| f as f32) == Some(*want))
                })
            });
        if !ok {
            bad.push(format!("{coll}/{id} (status {})", answer.status));
        }
        checked += 1;
    }
    if bad.is_empty() {
        println!("verify: all {checked} acknowledged writes are present with their values");
        Ok(true)
    } else {
        println!(
            "verify: {} of {checked} acknowledged writes missing or different, e.g. {}",
            bad.len(),
            bad.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        );
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::{floats, varied, Plan, Workload};
    use crate::client::Target;
    use crate::data::Vectors;

    fn plan(workload: Workload) -> Plan {
        Plan {
            target: Target::parse("http://127.0.0.1:9", None, String::new()).unwrap(),
            collections: vec!["a".into(), "b".into()],
            workload,
            data: Vectors::generate(20, 8, 2, 1),
            queries: Vectors::generate(3, 8, 2, 2),
            truth: None,
            search_body_tail: ",\"limit\":10}".into(),
            rendered: Vec::new(),
            read_ratio: 0.5,
            batch: 1,
            id_start: 20,
            vary: 0.0,
            acked: None,
            limit: 10,
            timeout: std::time::Duration::from_secs(1),
            retries: 0,
        }
    }

    /// Requests rendered once are byte for byte those formatted per request.
    #[test]
    fn rendered_searches_are_the_requests_formatted_each_time() {
        for workload in [Workload::Search, Workload::Mixed] {
            let fresh = plan(workload);
            let mut rendered = plan(workload);
            rendered.render_searches();
            assert_eq!(rendered.rendered.len(), 6);
            for i in 0..24 {
                assert_eq!(rendered.request(i), fresh.request(i), "{workload:?} request {i}");
            }
        }
        let mut writes = plan(Workload::Upsert);
        writes.render_searches();
        assert!(writes.rendered.is_empty(), "nothing to render for writes");
    }

    #[test]
    fn floats_round_trip() {
        let v = [0.1f32, -1.0e-7, 3.4028235e38, 1.0 / 3.0, -0.0, 1e-45];
        let back: Vec<f32> = serde_json::from_str(&floats(&v)).unwrap();
        assert_eq!(back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), v.map(f32::to_bits).to_vec());
    }

    #[test]
    fn a_varied_point_is_a_paraphrase_of_its_row_with_its_norm() {
        let x: Vec<f32> = (0..384).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f32>();
        let n = dot(&x, &x).sqrt();
        let v = varied(&x, 0.5, 7);
        assert!((dot(&v, &v).sqrt() - n).abs() < 1e-3 * n);
        let cos = dot(&x, &v) / (n * n);
        // 1 / sqrt(1 + 0.5²) = 0.894, give or take the noise's own spread.
        assert!((0.85..0.94).contains(&cos), "{cos}");
        assert_eq!(v, varied(&x, 0.5, 7), "the same seed, the same vector");
        assert_ne!(v, varied(&x, 0.5, 8));
    }
}
