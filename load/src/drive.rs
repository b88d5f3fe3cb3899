//! Driving one run: the workers (open loop on a schedule, or closed loop
//! with optional pipelining), and the collector that turns their samples
//! into the report.

use crate::client::Conn;
use crate::report::{histogram, Latency, Report};
use crate::sched::{self, Schedule};
use crate::{exchange, metrics, recall_of, sampled_recall, Plan, RunArgs, RunResult, Sample, Workload, KINDS};
use clap::ValueEnum;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// One run: open loop when `rate` is set, closed otherwise.
pub(crate) fn run(plan: &Arc<Plan>, a: &RunArgs, rate: Option<f64>) -> Result<RunResult, String> {
    let open = rate.is_some();
    let connections = a.connections.unwrap_or(if open { 64 } else { 8 }).max(1);
    let warmup = Duration::from_secs_f64(a.warmup.max(0.0));
    let measure = Duration::from_secs_f64(a.duration.max(0.1));
    let before = metrics(&plan.target, plan.timeout);
    let (tx, rx) = mpsc::channel::<Vec<Sample>>();
    let stop = Arc::new(AtomicBool::new(false));
    let t_start = Instant::now() + Duration::from_millis(50);
    let collector = {
        let quiet = a.quiet;
        let measured_from = t_start + warmup;
        std::thread::spawn(move || collect(rx, t_start, measured_from, open, quiet))
    };
    let seq = Arc::new(AtomicU64::new(0));
    let start = t_start;
    let end = start + warmup + measure;
    let mut threads = Vec::new();
    let mut dispatch_lag = histogram();
    let mut late = (0u64, 0u64);
    if let Some(rate) = rate {
        // Open loop: the dispatcher hands intended start times to a pool.
        let (jobs_tx, jobs_rx) = mpsc::channel::<(u64, Instant)>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        for _ in 0..connections {
            let (plan, tx, jobs) = (plan.clone(), tx.clone(), jobs_rx.clone());
            threads.push(std::thread::spawn(move || {
                let mut conn = None;
                let mut out = Outbox::new(tx);
                loop {
                    let job = jobs.lock().expect("job queue").recv();
                    let Ok((i, intended)) = job else { break };
                    let (kind, q, bytes) = plan.request(i);
                    let sent = Instant::now();
                    let (status, body, retried) = exchange(&plan, &mut conn, &bytes);
                    let done = Instant::now();
                    plan.log_acked(i, status);
                    let recall = recall_of(&plan, kind, q, status, &body);
                    out.push(Sample { kind, intended, sent, done, status, retried, recall });
                }
            }));
        }
        let mut schedule = Schedule::new(rate, a.arrival, a.seed);
        let mut i = 0u64;
        loop {
            let intended = start + schedule.next().expect("endless");
            if intended >= end {
                break;
            }
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            let lag = Instant::now().saturating_duration_since(intended);
            let _ = dispatch_lag.record(lag.as_micros() as u64 + 1);
            late.0 += 1;
            late.1 += u64::from(lag > Duration::from_millis(1));
            if jobs_tx.send((i, intended)).is_err() {
                break;
            }
            i += 1;
        }
        drop(jobs_tx);
    } else {
        for _ in 0..connections {
            let (plan, tx, stop, seq) = (plan.clone(), tx.clone(), stop.clone(), seq.clone());
            let depth = a.pipeline.max(1);
            threads.push(std::thread::spawn(move || {
                while Instant::now() < start {
                    std::thread::sleep(Duration::from_millis(1));
                }
                closed_loop(&plan, &tx, &stop, &seq, depth);
            }));
        }
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
    }
    drop(tx);
    for t in threads {
        let _ = t.join();
    }
    let Collected { total, kinds, status, retries, recall_sum, recall_n, last_done, seen_kinds } =
        collector.join().expect("the collector thread");
    if let Some(log) = &plan.acked {
        use std::io::Write;
        log.lock().expect("acked log").flush().map_err(|e| format!("--acked-log: {e}"))?;
    }
    let measured_from = start + warmup;
    let after = metrics(&plan.target, plan.timeout);
    let server_metrics_delta = after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            let counter_or_gauge = !k.contains("avg") && !k.ends_with("_max") && !k.starts_with("uptime");
            (d != 0.0 && before.contains_key(k) && counter_or_gauge).then(|| (k.clone(), d))
        })
        .collect();
    let elapsed = if open { measure.as_secs_f64() } else { (last_done - measured_from).as_secs_f64().max(1e-6) };
    let requests = total.len();
    let mut report = Report {
        tool: format!("aionbd-load {}", env!("CARGO_PKG_VERSION")),
        url: a.url.clone(),
        workload: a.workload.to_possible_value().map_or_else(String::new, |v| v.get_name().to_owned()),
        loop_kind: if open { "open" } else { "closed" }.to_owned(),
        target_rate: rate,
        connections,
        duration_s: elapsed,
        requests,
        ok: status.get("200").copied().unwrap_or(0),
        throughput_per_s: requests as f64 / elapsed,
        status,
        retries,
        latency: Latency::of(&total),
        by_kind: BTreeMap::new(),
        recall: (recall_n > 0).then(|| recall_sum / recall_n as f64),
        recall_checked: recall_n,
        generator_lag_p99_us: if open { dispatch_lag.value_at_quantile(0.99) } else { 0 },
        generator_lag_max_us: if open { dispatch_lag.max() } else { 0 },
        generator_late_share: if late.0 > 0 { late.1 as f64 / late.0 as f64 } else { 0.0 },
        server_metrics_delta,
        started_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(elapsed as u64),
    };
    if seen_kinds.iter().filter(|k| **k).count() > 1 {
        for (k, h) in kinds.iter().enumerate().filter(|(k, _)| seen_kinds[*k]) {
            report.by_kind.insert(KINDS[k].to_owned(), Latency::of(h));
        }
    }
    if plan.truth.is_none() && a.recall_sample > 0 && plan.workload != Workload::Upsert {
        let (r, n) = sampled_recall(plan, a.recall_sample)?;
        report.recall = Some(r);
        report.recall_checked = n;
    }
    Ok(RunResult { report })
}

/// What the collector counted over the measured part of a run.
struct Collected {
    total: hdrhistogram::Histogram<u64>,
    kinds: Vec<hdrhistogram::Histogram<u64>>,
    status: BTreeMap<String, u64>,
    retries: u64,
    recall_sum: f64,
    recall_n: u64,
    last_done: Instant,
    seen_kinds: [bool; 4],
}

/// Count samples as they arrive (a live line on stderr each second) until
/// every worker has hung up.
fn collect(
    rx: mpsc::Receiver<Vec<Sample>>,
    start: Instant,
    measured_from: Instant,
    open: bool,
    quiet: bool,
) -> Collected {
    let mut total = histogram();
    let mut kinds: Vec<hdrhistogram::Histogram<u64>> = KINDS.iter().map(|_| histogram()).collect();
    let mut window = histogram();
    let mut status: BTreeMap<String, u64> = BTreeMap::new();
    let mut window_errors: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut retries, mut recall_sum, mut recall_n, mut last_done) = (0u64, 0.0, 0u64, measured_from);
    let mut next_line = start + Duration::from_secs(1);
    let mut seen_kinds = [false; 4];
    loop {
        let batch = rx.recv_timeout(Duration::from_millis(100));
        let now = Instant::now();
        if now >= next_line && !quiet {
            let l = Latency::of(&window);
            let errs: Vec<String> = window_errors.iter().map(|(s, n)| format!("{s} x{n}")).collect();
            eprintln!(
                "{:>5.0} s  {:>7}/s  p50 {:>8.3} ms  p99 {:>8.3} ms  {}",
                (now - start).as_secs_f64(),
                window.len(),
                l.p50_us as f64 / 1000.0,
                l.p99_us as f64 / 1000.0,
                if errs.is_empty() { "no errors".to_owned() } else { format!("errors: {}", errs.join(", ")) }
            );
            window.reset();
            window_errors.clear();
            next_line += Duration::from_secs(1);
        }
        let batch = match batch {
            Ok(b) => b,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        for s in batch {
            let lat = sched::latency(
                s.intended.saturating_duration_since(start),
                s.sent.saturating_duration_since(start),
                s.done.saturating_duration_since(start),
                open,
            );
            let us = lat.as_micros() as u64 + 1;
            let _ = window.record(us);
            if s.status != 200 {
                *window_errors.entry(s.status).or_default() += 1;
            }
            if s.intended < measured_from {
                continue;
            }
            let _ = total.record(us);
            let _ = kinds[s.kind].record(us);
            seen_kinds[s.kind] = true;
            *status.entry(s.status.to_string()).or_default() += 1;
            retries += s.retried as u64;
            if let Some(r) = s.recall {
                recall_sum += r;
                recall_n += 1;
            }
            last_done = last_done.max(s.done);
        }
    }
    Collected { total, kinds, status, retries, recall_sum, recall_n, last_done, seen_kinds }
}

fn closed_loop(plan: &Plan, tx: &mpsc::Sender<Vec<Sample>>, stop: &AtomicBool, seq: &AtomicU64, depth: usize) {
    let mut out = Outbox::new(tx.clone());
    if depth <= 1 {
        let mut conn = None;
        while !stop.load(Ordering::Relaxed) {
            let i = seq.fetch_add(1, Ordering::Relaxed);
            let (kind, q, bytes) = plan.request(i);
            let sent = Instant::now();
            let (status, body, retried) = exchange(plan, &mut conn, &bytes);
            let done = Instant::now();
            plan.log_acked(i, status);
            let recall = recall_of(plan, kind, q, status, &body);
            out.push(Sample { kind, intended: sent, sent, done, status, retried, recall });
        }
        return;
    }
    // Pipelined: up to `depth` requests written before their answers are read.
    let Ok(mut conn) = Conn::open(&plan.target, plan.timeout) else { return };
    let mut inflight: std::collections::VecDeque<(u64, usize, usize, Instant)> = Default::default();
    loop {
        while inflight.len() < depth && !stop.load(Ordering::Relaxed) {
            let i = seq.fetch_add(1, Ordering::Relaxed);
            let (kind, q, bytes) = plan.request(i);
            let sent = Instant::now();
            if conn.send(&bytes).is_err() {
                return;
            }
            inflight.push_back((i, kind, q, sent));
        }
        let Some((i, kind, q, sent)) = inflight.pop_front() else { return };
        let (status, body) = match conn.read_answer() {
            Ok(a) => (a.status, a.body),
            Err(_) => return,
        };
        let done = Instant::now();
        plan.log_acked(i, status);
        let recall = recall_of(plan, kind, q, status, &body);
        out.push(Sample { kind, intended: sent, sent, done, status, retried: 0, recall });
    }
}

/// A worker's samples on their way to the collector, sent in batches (every
/// [`Outbox::BATCH`] samples or [`Outbox::EVERY`], and when the worker
/// ends): one hand-over per request woke the collector thread each time,
/// and on a small box that thread shares the CPUs with the server.
struct Outbox {
    tx: mpsc::Sender<Vec<Sample>>,
    held: Vec<Sample>,
    since: Instant,
}

impl Outbox {
    const BATCH: usize = 64;
    const EVERY: Duration = Duration::from_millis(50);

    fn new(tx: mpsc::Sender<Vec<Sample>>) -> Outbox {
        Outbox { tx, held: Vec::with_capacity(Self::BATCH), since: Instant::now() }
    }

    fn push(&mut self, s: Sample) {
        let done = s.done;
        self.held.push(s);
        if self.held.len() >= Self::BATCH || done.saturating_duration_since(self.since) >= Self::EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.held.is_empty() {
            let _ = self.tx.send(std::mem::replace(&mut self.held, Vec::with_capacity(Self::BATCH)));
        }
        self.since = Instant::now();
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.flush();
    }
}
