//! `aionbd import` and `aionbd export`: bulk transfer to and from a running
//! server over its HTTP API (docs/backup.md).
//!
//! Import reads NDJSON (an export, or lines of `{"id","values","payload"}`),
//! fvecs or npy (ids = row + `--id-start`, payloads from an optional NDJSON
//! file, one object per row), checks each point against the collection,
//! and sends batches under the server's point and byte limits (halving
//! them if the server answers 413). 429 and 503 are retried after their
//! `Retry-After`; 408 and lost connections are retried too, as upserts are
//! idempotent. A line that cannot be imported stops the run, naming it; every
//! line before it was written, and `--from-line` resumes anywhere.

use crate::fs::FsError;
use aionbd_io::vecfile;
use serde_json::Value;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod error;
pub use error::{Failure, InputProblem, Place, TransferError};

/// How to reach the server.
#[derive(clap::Args, Debug, Clone)]
pub struct Connection {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API key (sent as x-api-key).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Bearer token or JWT (sent as Authorization: Bearer).
    #[arg(long)]
    pub token: Option<String>,
    /// PEM file of the CA that signed the server's certificate (HTTPS).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Attempts per request on 429, 503, 408 and connection errors.
    #[arg(long, default_value_t = 10)]
    pub retries: u32,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ImportArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Collection to write (default: the name in an export's first line).
    #[arg(long)]
    pub collection: Option<String>,
    /// Create the collection if it does not exist (dimension from the data).
    #[arg(long)]
    pub create: bool,
    /// NDJSON payloads for fvecs/npy rows: line i is row i's payload object.
    #[arg(long, value_name = "NDJSON")]
    pub payloads: Option<PathBuf>,
    /// Id of the first row of an fvecs/npy file.
    #[arg(long, default_value_t = 0)]
    pub id_start: u64,
    /// Start at this line (1 = the first; rows for fvecs/npy), to resume.
    #[arg(long, default_value_t = 1)]
    pub from_line: u64,
    /// Points per request (the server's limits.upsert_batch_max_points).
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Bytes per request body (the server's server.max_body_bytes).
    #[arg(long, default_value_t = 8 << 20)]
    pub max_body_bytes: usize,
    /// File to read: .ndjson/.jsonl, .fvecs or .npy.
    pub file: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Collection to export.
    #[arg(long)]
    pub collection: String,
    /// File to write (NDJSON); written as FILE.tmp and renamed when complete.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

struct Client {
    agent: ureq::Agent,
    conn: Connection,
}

impl Client {
    fn new(conn: &Connection) -> Result<Client, TransferError> {
        let mut b =
            ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(10)).timeout_read(Duration::from_secs(120));
        if let Some(ca) = &conn.ca_file {
            use rustls::pki_types::pem::PemObject;
            let bad = |source| TransferError::CaFile { path: ca.clone(), source };
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).map_err(bad)? {
                roots.add(cert.map_err(bad)?).map_err(TransferError::Tls)?;
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(TransferError::Tls)?
                .with_root_certificates(roots)
                .with_no_client_auth();
            b = b.tls_config(Arc::new(tls));
        }
        Ok(Client { agent: b.build(), conn: conn.clone() })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.conn.url.trim_end_matches('/'))
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let mut r = self.agent.request(method, &self.url(path));
        if let Some(k) = &self.conn.api_key {
            r = r.set("x-api-key", k);
        }
        if let Some(t) = &self.conn.token {
            r = r.set("authorization", &format!("Bearer {t}"));
        }
        r
    }

    /// One request, retried on 429/503 (after `Retry-After`), 408 and
    /// connection errors with a growing pause.
    fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<ureq::Response, Failure> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = self.request(method, path);
            let sent = match body {
                Some(b) => req.set("content-type", "application/json").send_bytes(b),
                None => req.call(),
            };
            let failure = match sent {
                Ok(r) => return Ok(r),
                Err(ureq::Error::Status(code, r)) => {
                    let retry_after = r.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok());
                    Failure::Status(code, r.into_string().unwrap_or_default(), retry_after)
                }
                Err(ureq::Error::Transport(t)) => Failure::Transport(Box::new(t)),
            };
            let wait = match &failure {
                Failure::Status(429 | 503, _, Some(s)) => Duration::from_secs(*s),
                Failure::Status(429 | 503 | 408, _, _) | Failure::Transport(_) => {
                    Duration::from_millis(100 << attempt.min(6))
                }
                Failure::Status(..) | Failure::UnreadableBody(_) | Failure::UnreadableJson(_) => return Err(failure),
            };
            if attempt >= self.conn.retries.max(1) {
                return Err(failure);
            }
            std::thread::sleep(wait);
        }
    }

    fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON to memory"));
        let r = self.call(method, path, bytes.as_deref())?;
        let text = r.into_string().map_err(Failure::UnreadableBody)?;
        serde_json::from_str(&text).map_err(Failure::UnreadableJson)
    }
}

/// Progress on stderr: one updating line on a terminal, a plain line every
/// 5 s otherwise, and a last line at the end.
struct Progress {
    what: &'static str,
    t0: Instant,
    last: Instant,
    tty: bool,
    total: Option<u64>,
}

impl Progress {
    fn new(what: &'static str, total: Option<u64>) -> Self {
        let now = Instant::now();
        Progress { what, t0: now, last: now, tty: std::io::stderr().is_terminal(), total }
    }

    /// `done` points so far; `fraction` of the work when the total is unknown.
    fn show(&mut self, done: u64, fraction: Option<f64>, last: bool) {
        let every = if self.tty { Duration::from_millis(200) } else { Duration::from_secs(5) };
        if !last && self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let secs = self.t0.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let frac = self.total.filter(|t| *t > 0).map(|t| done as f64 / t as f64).or(fraction);
        let mut line = format!("{} {done} points, {rate:.0} points/s", self.what);
        if let Some(f) = frac.filter(|_| !last) {
            let eta = if f > 0.0 { secs * (1.0 - f) / f } else { f64::NAN };
            line.push_str(&format!(", {:.1}%, ETA {eta:.0} s", f * 100.0));
        }
        if last {
            line.push_str(&format!(" in {secs:.1} s"));
        }
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            if last {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

/// One point to send, and the line it came from.
struct Point {
    line: u64,
    json: Vec<u8>,
}

/// A source of points, line by line.
enum Source {
    Ndjson {
        lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
        line: u64,
        bytes: u64,
        total_bytes: u64,
    },
    Matrix {
        m: vecfile::Matrix<f32>,
        row: usize,
        id_start: u64,
        payloads: Option<std::io::Lines<std::io::BufReader<std::fs::File>>>,
    },
}

fn open_lines(path: &Path) -> Result<std::io::Lines<std::io::BufReader<std::fs::File>>, FsError> {
    let f = std::fs::File::open(path).map_err(FsError::at("cannot open", path))?;
    Ok(std::io::BufReader::with_capacity(1 << 20, f).lines())
}

/// What is known of the collection's shape before sending.
struct Shape {
    dimension: Option<usize>,
    strict_finite: bool,
}

fn point_json(id: u64, values: &[f32], payload: Option<&Value>, shape: &Shape) -> Result<Vec<u8>, InputProblem> {
    if let Some(dimension) = shape.dimension.filter(|d| *d != values.len()) {
        return Err(InputProblem::Dimension { id, values: values.len(), dimension });
    }
    if shape.strict_finite && values.iter().any(|v| !v.is_finite()) {
        return Err(InputProblem::NonFinite { id });
    }
    if let Some(p) = payload.filter(|p| !p.is_object() && !p.is_null()) {
        return Err(InputProblem::PayloadNotObject { id, payload: p.clone() });
    }
    let mut out = Vec::with_capacity(values.len() * 12 + 64);
    let empty = Value::Object(Default::default());
    crate::backup::point_json(id, values, payload.filter(|p| p.is_object()).unwrap_or(&empty), &mut out);
    Ok(out)
}

impl Source {
    fn next(&mut self, shape: &Shape) -> Result<Option<Point>, TransferError> {
        match self {
            Source::Ndjson { lines, line, bytes, .. } => loop {
                let Some(text) = lines.next() else { return Ok(None) };
                *line += 1;
                let bad = |problem| TransferError::BadInput { at: Place::Line(*line), problem };
                let text = text.map_err(|e| bad(InputProblem::Read(e)))?;
                *bytes += text.len() as u64 + 1;
                if text.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(&text).map_err(|e| bad(InputProblem::NotJson(e)))?;
                if v.get("aionbd_export").is_some() {
                    continue; // an export's collection line
                }
                let id = v.get("id").and_then(Value::as_u64).ok_or_else(|| bad(InputProblem::NoId))?;
                let values = v
                    .get("values")
                    .or_else(|| v.get("vector"))
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad(InputProblem::NoValues))?;
                let mut floats = Vec::with_capacity(values.len());
                for x in values {
                    match x.as_f64() {
                        Some(f) => floats.push(f as f32),
                        None => return Err(bad(InputProblem::NotANumber { id, value: x.clone() })),
                    }
                }
                let json = point_json(id, &floats, v.get("payload"), shape).map_err(bad)?;
                return Ok(Some(Point { line: *line, json }));
            },
            Source::Matrix { m, row, id_start, payloads } => {
                if *row >= m.rows {
                    return Ok(None);
                }
                let line = *row as u64 + 1;
                let bad_payload = |problem| TransferError::BadInput { at: Place::PayloadLine(line), problem };
                let payload = match payloads {
                    Some(lines) => match lines.next() {
                        Some(Ok(t)) if !t.trim().is_empty() => {
                            Some(serde_json::from_str::<Value>(&t).map_err(|e| bad_payload(InputProblem::NotJson(e)))?)
                        }
                        Some(Err(e)) => return Err(bad_payload(InputProblem::Read(e))),
                        _ => None,
                    },
                    None => None,
                };
                let id = *id_start + *row as u64;
                let json = point_json(id, m.row(*row), payload.as_ref(), shape)
                    .map_err(|problem| TransferError::BadInput { at: Place::Row(line), problem })?;
                *row += 1;
                Ok(Some(Point { line, json }))
            }
        }
    }

    fn fraction(&self) -> Option<f64> {
        match self {
            Source::Ndjson { bytes, total_bytes, .. } if *total_bytes > 0 => Some(*bytes as f64 / *total_bytes as f64),
            _ => None,
        }
    }
}

/// The first line of an NDJSON export, if the file starts with one.
fn export_header(path: &Path) -> Option<Value> {
    let first = open_lines(path).ok()?.next()?.ok()?;
    let v: Value = serde_json::from_str(&first).ok()?;
    v.get("aionbd_export").is_some().then_some(v)
}

fn is_vector_file(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("fvecs" | "npy"))
}

pub fn import(a: &ImportArgs) -> Result<String, TransferError> {
    let client = Client::new(&a.conn)?;
    let header = if is_vector_file(&a.file) { None } else { export_header(&a.file) };
    let name = a
        .collection
        .clone()
        .or_else(|| header.as_ref()?.pointer("/collection/name")?.as_str().map(str::to_owned))
        .ok_or(TransferError::NoCollection)?;
    let mut source = if is_vector_file(&a.file) {
        let m =
            vecfile::read::<f32>(&a.file).map_err(|source| TransferError::VecFile { path: a.file.clone(), source })?;
        let mut payloads = a.payloads.as_deref().map(open_lines).transpose()?;
        let skip = a.from_line.saturating_sub(1) as usize;
        if let Some(p) = payloads.as_mut() {
            for _ in 0..skip {
                p.next();
            }
        }
        Source::Matrix { row: skip.min(m.rows), m, id_start: a.id_start, payloads }
    } else {
        let total_bytes = std::fs::metadata(&a.file).map(|m| m.len()).unwrap_or(0);
        let mut lines = open_lines(&a.file)?;
        let mut line = 0;
        let mut bytes = 0;
        while line + 1 < a.from_line {
            match lines.next() {
                Some(Ok(t)) => bytes += t.len() as u64 + 1,
                _ => break,
            }
            line += 1;
        }
        Source::Ndjson { lines, line, bytes, total_bytes }
    };
    let path = format!("/collections/{name}");
    let info = match client.json("GET", &path, None) {
        Ok(v) => v,
        Err(Failure::Status(404, ..)) if a.create => {
            let (dimension, strict_finite) = match (&source, &header) {
                (Source::Matrix { m, .. }, _) => (m.dim as u64, true),
                (_, Some(h)) => (
                    h.pointer("/collection/dimension").and_then(Value::as_u64).unwrap_or(0),
                    h.pointer("/collection/strict_finite").and_then(Value::as_bool).unwrap_or(true),
                ),
                _ => (first_dimension(&a.file).ok_or(TransferError::UnknownDimension)?, true),
            };
            let body = serde_json::json!({"name": name, "dimension": dimension, "strict_finite": strict_finite});
            client
                .json("POST", "/collections", Some(&body))
                .map_err(|source| TransferError::Create { name: name.clone(), source })?;
            eprintln!("created collection '{name}' (dimension {dimension})");
            client.json("GET", &path, None).map_err(TransferError::Request)?
        }
        Err(Failure::Status(404, ..)) => return Err(TransferError::NoSuchCollection { name, url: a.conn.url.clone() }),
        Err(source) => return Err(TransferError::Server { url: a.conn.url.clone(), source }),
    };
    let shape = Shape {
        dimension: info.get("dimension").and_then(Value::as_u64).map(|d| d as usize),
        strict_finite: info.get("strict_finite").and_then(Value::as_bool).unwrap_or(true),
    };
    let total = match &source {
        Source::Matrix { m, row, .. } => Some((m.rows - row) as u64),
        _ => header.as_ref().and_then(|h| h.get("points")).and_then(Value::as_u64),
    };
    let mut progress = Progress::new("imported", total);
    let mut imp = Importer {
        client: &client,
        path: format!("{path}/points"),
        batch: a.batch.max(1),
        max_bytes: a.max_body_bytes.max(1024),
        written: 0,
        last_line: a.from_line.saturating_sub(1),
    };
    let mut pending: Vec<Point> = Vec::new();
    let mut pending_bytes = 0usize;
    let result = loop {
        let next = match source.next(&shape) {
            Ok(p) => p,
            Err(e) => {
                // Every line before the bad one is written before stopping.
                break match pending.is_empty() {
                    true => Err(e),
                    false => imp.send(&pending).and(Err(e)),
                };
            }
        };
        let flush = match &next {
            Some(p) => pending.len() >= imp.batch || pending_bytes + p.json.len() + 64 > imp.max_bytes,
            None => true,
        };
        if flush && !pending.is_empty() {
            if let Err(e) = imp.send(&pending) {
                break Err(e);
            }
            pending.clear();
            pending_bytes = 0;
            progress.show(imp.written, source.fraction(), false);
        }
        match next {
            Some(p) => {
                pending_bytes += p.json.len() + 1;
                pending.push(p);
            }
            None => break Ok(()),
        }
    };
    progress.show(imp.written, None, true);
    match result {
        Ok(()) => Ok(format!("imported {} points into '{name}'", imp.written)),
        Err(e) => {
            Err(TransferError::ImportStopped { cause: Box::new(e), written: imp.written, last_line: imp.last_line })
        }
    }
}

/// The dimension of the first point line of an NDJSON file.
fn first_dimension(path: &Path) -> Option<u64> {
    for line in open_lines(path).ok()?.take(10) {
        let v: Value = serde_json::from_str(&line.ok()?).ok()?;
        if let Some(vals) = v.get("values").or_else(|| v.get("vector")).and_then(Value::as_array) {
            return Some(vals.len() as u64);
        }
    }
    None
}

struct Importer<'a> {
    client: &'a Client,
    path: String,
    batch: usize,
    max_bytes: usize,
    written: u64,
    /// Every line up to this one is written.
    last_line: u64,
}

impl Importer<'_> {
    /// Send points as one batch. A 413 halves the limits and resends; a 400
    /// resends them one by one to name the line the server refuses.
    fn send(&mut self, points: &[Point]) -> Result<(), TransferError> {
        let mut body = Vec::with_capacity(points.iter().map(|p| p.json.len() + 1).sum::<usize>() + 16);
        body.extend_from_slice(b"{\"points\":[");
        for (i, p) in points.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&p.json);
        }
        body.extend_from_slice(b"]}");
        match self.client.call("POST", &self.path, Some(&body)) {
            Ok(_) => {
                self.written += points.len() as u64;
                self.last_line = points.last().map_or(self.last_line, |p| p.line);
                Ok(())
            }
            Err(Failure::Status(413, ..)) if points.len() > 1 => {
                self.batch = (points.len() / 2).max(1);
                self.max_bytes = (body.len() / 2).max(1024);
                eprintln!(
                    "the server refused {} bytes (413): sending at most {} points per request",
                    body.len(),
                    self.batch
                );
                let (a, b) = points.split_at(points.len() / 2);
                self.send(a)?;
                self.send(b)
            }
            Err(Failure::Status(400, ..)) if points.len() > 1 => {
                for p in points {
                    self.send(std::slice::from_ref(p))?;
                }
                Ok(())
            }
            Err(source) => Err(TransferError::Refused {
                first: points.first().map_or(0, |p| p.line),
                last: points.last().map_or(0, |p| p.line),
                source,
            }),
        }
    }
}

pub fn export(a: &ExportArgs) -> Result<String, TransferError> {
    let client = Client::new(&a.conn)?;
    let resp = client
        .call("GET", &format!("/collections/{}/export", a.collection), None)
        .map_err(|source| TransferError::Server { url: a.conn.url.clone(), source })?;
    let tmp = a.out.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(FsError::at("cannot create", &tmp))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut reader = std::io::BufReader::with_capacity(1 << 20, resp.into_reader());
    let mut line = Vec::new();
    let mut progress = Progress::new("exported", None);
    let (mut points, mut bytes) = (0u64, 0u64);
    let result = (|| -> Result<(), TransferError> {
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(TransferError::ExportStopped)?;
            if n == 0 {
                break;
            }
            if line.last() != Some(&b'\n') {
                return Err(TransferError::ExportTruncated);
            }
            if bytes == 0 {
                let v: Value = serde_json::from_slice(&line).map_err(TransferError::ExportHeader)?;
                progress.total = v.get("points").and_then(Value::as_u64);
            } else {
                points += 1;
            }
            bytes += n as u64;
            out.write_all(&line).map_err(FsError::at("", &tmp))?;
            progress.show(points, None, false);
        }
        let file = out.into_inner().map_err(|e| FsError::new("", &tmp, e.into_error()))?;
        file.sync_all().map_err(FsError::at("", &tmp))?;
        Ok(std::fs::rename(&tmp, &a.out).map_err(FsError::at("rename to", &a.out))?)
    })();
    progress.show(points, None, true);
    match result {
        Ok(()) => Ok(format!(
            "exported {points} points of '{}' to {} ({:.1} MB)",
            a.collection,
            a.out.display(),
            bytes as f64 / 1e6
        )),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
