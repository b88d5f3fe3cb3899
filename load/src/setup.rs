//! Before a run: the data loaded, the server and collections checked,
//! points preloaded, and the indexes awaited.

use crate::client::{Conn, Target};
use crate::data::{self, Vectors};
use crate::{floats, headers, Mode, Plan, RunArgs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Load the data, check the server and the collections, preload.
pub(crate) fn prepare(a: &RunArgs) -> Result<Plan, String> {
    let target = Target::parse(&a.url, a.ca_file.as_deref(), headers(a))?;
    let timeout = Duration::from_secs_f64(a.timeout);
    let data = match &a.data {
        Some(p) => Vectors::load(p)?,
        None => Vectors::generate(a.generate, a.dim, a.clusters, a.seed),
    };
    let queries = match &a.queries {
        Some(p) => Vectors::load(p)?,
        None if a.data.is_none() => Vectors::generate(1000, a.dim, a.clusters, a.seed ^ 0x9e37),
        None => Vectors { dim: data.dim, data: data.data[..data.dim * data.rows().min(1000)].to_vec() },
    };
    if queries.dim != data.dim {
        return Err(format!("the queries have {} dimensions, the data {}", queries.dim, data.dim));
    }
    let truth = a.ground_truth.as_deref().map(|p| data::ground_truth(p, queries.rows())).transpose()?;
    let mut conn = Conn::open(&target, timeout).map_err(|e| format!("{} does not answer: {e}", a.url))?;
    let live = conn.call("GET", "/ready", None).map_err(|e| format!("{}: {e}", a.url))?;
    if live.status != 200 {
        return Err(format!("{}/ready answered {}: {}", a.url, live.status, String::from_utf8_lossy(&live.body)));
    }
    let collections: Vec<String> =
        a.collection.split(',').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect();
    for c in &collections {
        let info = conn.call("GET", &format!("/collections/{c}"), None).map_err(|e| e.to_string())?;
        match info.status {
            200 => {
                let v: serde_json::Value = serde_json::from_slice(&info.body).map_err(|e| e.to_string())?;
                let dim = v.get("dimension").and_then(|d| d.as_u64()).unwrap_or(0) as usize;
                if dim != data.dim {
                    return Err(format!("collection '{c}' has dimension {dim}, the data {}", data.dim));
                }
            }
            404 if a.create => {
                let body = format!("{{\"name\":\"{c}\",\"dimension\":{}}}", data.dim);
                let r = conn.call("POST", "/collections", Some(body.as_bytes())).map_err(|e| e.to_string())?;
                if r.status != 200 {
                    return Err(format!("creating '{c}': {} {}", r.status, String::from_utf8_lossy(&r.body)));
                }
            }
            404 => return Err(format!("collection '{c}' does not exist (pass --create)")),
            s => return Err(format!("GET /collections/{c}: {s} {}", String::from_utf8_lossy(&info.body))),
        }
        if a.preload {
            preload(&mut conn, c, &data)?;
        }
    }
    if a.wait_index {
        for c in &collections {
            wait_index(&mut conn, c)?;
        }
    }
    if !(a.vary.is_finite() && a.vary >= 0.0) {
        return Err(format!("--vary must be a number >= 0, got {}", a.vary));
    }
    if a.vary > 0.0 && a.acked_log.is_some() {
        return Err(
            "--vary writes points that are not data rows, which `verify` compares against: not with --acked-log".into(),
        );
    }
    let mut tail = format!(",\"limit\":{},\"metric\":\"{}\"", a.limit, a.metric);
    let mode = match a.mode {
        Mode::Exact => "exact",
        Mode::Auto => "auto",
        Mode::Hnsw => "hnsw",
        Mode::Ivf => "ivf",
    };
    tail.push_str(&format!(",\"mode\":\"{mode}\""));
    if let Some(r) = a.target_recall {
        tail.push_str(&format!(",\"target_recall\":{r}"));
    }
    if let Some(ef) = a.ef {
        tail.push_str(&format!(",\"ef\":{ef}"));
    }
    if let Some(n) = a.nprobe {
        tail.push_str(&format!(",\"nprobe\":{n}"));
    }
    if let Some(f) = &a.filter {
        serde_json::from_str::<serde_json::Value>(f).map_err(|e| format!("--filter is not JSON: {e}"))?;
        tail.push_str(&format!(",\"filter\":{f}"));
    }
    tail.push('}');
    let rows = data.rows();
    let mut plan = Plan {
        target,
        collections,
        workload: a.workload,
        data,
        queries,
        truth,
        search_body_tail: tail,
        rendered: Vec::new(),
        read_ratio: a.read_ratio,
        batch: a.batch.max(1),
        id_start: a.id_start.unwrap_or(rows as u64),
        vary: a.vary,
        acked: match &a.acked_log {
            Some(p) => Some(Mutex::new(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("{}: {e}", p.display()))?,
            ))),
            None => None,
        },
        limit: a.limit,
        timeout,
        retries: a.retries,
    };
    plan.render_searches();
    Ok(plan)
}

fn preload(conn: &mut Conn, coll: &str, data: &Vectors) -> Result<(), String> {
    let t0 = Instant::now();
    let rows = data.rows();
    let mut i = 0;
    while i < rows {
        let end = (i + 256).min(rows);
        let points: Vec<String> =
            (i..end).map(|r| format!("{{\"id\":{r},\"values\":{}}}", floats(data.row(r)))).collect();
        let body = format!("{{\"points\":[{}]}}", points.join(","));
        let r = conn
            .call("POST", &format!("/collections/{coll}/points"), Some(body.as_bytes()))
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("preload of '{coll}': {} {}", r.status, String::from_utf8_lossy(&r.body)));
        }
        i = end;
    }
    eprintln!("preloaded {rows} points into '{coll}' in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Wait until every partition of `coll` has its IVF and HNSW index built
/// with no point outside them (checked twice, 2 s apart).
fn wait_index(conn: &mut Conn, coll: &str) -> Result<(), String> {
    let t0 = Instant::now();
    let mut quiet = 0;
    while quiet < 2 {
        if t0.elapsed() > Duration::from_secs(1800) {
            return Err(format!("the indexes of '{coll}' were still building after 30 minutes"));
        }
        std::thread::sleep(Duration::from_secs(2));
        let r = conn.call("GET", &format!("/collections/{coll}"), None).map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
        let parts = v.pointer("/index/partitions").and_then(|p| p.as_array()).cloned().unwrap_or_default();
        // Ready: no build running and no point waiting outside the indexes
        // (a partition below the index threshold has kind "none").
        let ready = |p: &serde_json::Value| {
            let idle = |v: Option<&serde_json::Value>| {
                v.is_some_and(|v| {
                    v.get("building").and_then(|b| b.as_bool()) == Some(false)
                        && v.get("exact_points").and_then(|n| n.as_u64()) == Some(0)
                })
            };
            p.get("kind").and_then(|k| k.as_str()) == Some("none") || (idle(Some(p)) && idle(p.get("hnsw")))
        };
        quiet = if !parts.is_empty() && parts.iter().all(ready) { quiet + 1 } else { 0 };
    }
    eprintln!("indexes of '{coll}' idle after {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}
