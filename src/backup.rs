//! Backups and NDJSON exports of live collections, streamed.
//!
//! Both start with a cut on each home shard concerned (`ops::ExportCut`):
//! the home shard's current LSN, made durable, and an export begun on every
//! partition of the collections it names, sent after every write it planned
//! before, so each partition's export holds exactly the writes up to the
//! cut (copy-before-write, `aionbd_shards::export`). Consistency: every
//! collection is at one LSN of its home shard, and all collections of one
//! home shard (so all of one tenant's) are at the same cut; collections of
//! different home shards are cut at nearly the same moment but not at one
//! cut. Every write acknowledged before the request arrived is included.
//!
//! The run then asks the partitions for chunks of 512 points, one at a time,
//! and encodes them as the backup format (`aionbd_io::backup`) or as NDJSON
//! lines, a chunk per HTTP chunk, so memory stays flat whatever the size.
//! A partition's last chunk brings its reservoir of real queries, and a
//! backup keeps the fullest of a collection's before its end frame, so a
//! restore's index builds calibrate on them (`crate::queries_file`).
//! Dropping a run (a client that went away) ends its partition exports.

use crate::node::Node;
use crate::queries_file::to_saved;
use aionbd_io::backup::{BackupWriter, CollectionEnd};
use aionbd_shards::index::calib::RealQueries;
use aionbd_shards::ops::{CollectionSpec, Cut, ExportChunk, ExportCut, ExportEnd, Exported};
use aionbd_shards::placement::{Placement, ShardId};
use aionbd_shards::record::LogRecord;
use aionbd_shards::ShardError;
use std::collections::VecDeque;
use std::rc::Rc;

/// Points asked of a partition per step (and per backup record).
const CHUNK_POINTS: usize = 512;
/// Chunk requests kept in flight per partition.
const IN_FLIGHT: usize = 4;
/// A streamed chunk is sent once it holds about this much.
const CHUNK_BYTES: usize = 256 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The binary backup file (docs/backup.md).
    Backup,
    /// One JSON line for the collection, then one per point.
    Ndjson,
}

/// What one home shard is asked to cut: named collections (all it homes
/// when empty), optionally only one tenant's.
pub struct CutRequest {
    pub home: ShardId,
    pub only: Vec<String>,
    pub tenant: Option<String>,
}

/// A collection waiting to be written.
struct Queued {
    spec: CollectionSpec,
    uid: u64,
    home: ShardId,
    lsn: u64,
    points_at_cut: u64,
}

/// One partition of the collection being written, with the chunk
/// requests sent ahead to its shard.
struct Part {
    shard: ShardId,
    inflight: VecDeque<crate::node::Pending<Exported>>,
    done: bool,
    /// The partition's real queries, sent with its last chunk.
    queries: Option<RealQueries>,
}

struct Current {
    c: Queued,
    parts: Vec<Part>,
    /// The part to read from next (round robin).
    next: usize,
    written: u64,
}

/// One entry of a backup's manifest.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct ManifestCollection {
    pub name: String,
    pub dimension: usize,
    pub strict_finite: bool,
    pub points: u64,
    pub home_shard: u16,
    pub lsn: u64,
}

/// A backup's manifest (the end frame's JSON text, and the `.json` file
/// kept beside a stored backup).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Manifest {
    pub format: u32,
    pub aionbd_version: String,
    pub created_unix_ms: u64,
    pub consistency: String,
    pub collections: Vec<ManifestCollection>,
    pub points: u64,
    /// Size of the backup file (not part of the end frame's copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The stored backup's name (not part of the end frame's copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

pub const CONSISTENCY: &str = "each collection at one LSN of its home shard; the collections of one home shard \
                               (all of one tenant's) at one cut; every write acknowledged before the backup began";

/// Why a running backup or export stopped.
#[derive(Debug)]
pub enum ExportError {
    /// The collection was deleted while it was exported.
    Deleted { name: String },
    /// A partition could not export a chunk of the collection.
    Shard { name: String, source: ShardError },
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            ExportError::Deleted { name } => write!(f, "collection '{name}' was deleted while it was exported"),
            ExportError::Shard { name, source } => write!(f, "export of '{name}': {source}"),
        }
    }
}

impl std::error::Error for ExportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExportError::Deleted { .. } => None,
            ExportError::Shard { source, .. } => Some(source),
        }
    }
}

/// A running backup or export.
pub struct ExportRun {
    node: Rc<Node>,
    placement: Placement,
    format: Format,
    export: u64,
    todo: VecDeque<Queued>,
    current: Option<Current>,
    /// Partition exports begun and not finished: (collection, uid, shard).
    open: Vec<(String, u64, ShardId)>,
    writer: Option<BackupWriter>,
    started: bool,
    finished: bool,
    created_unix_ms: u64,
    manifest: Vec<ManifestCollection>,
    /// Points the cut found, for progress.
    pub points_at_cut: u64,
    /// Points written so far.
    pub points_written: u64,
}

pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl ExportRun {
    /// Take the cuts (all before the first byte is produced, so every
    /// collection is cut as close to the request as possible).
    pub async fn start(
        node: Rc<Node>,
        placement: Placement,
        format: Format,
        cuts: Vec<CutRequest>,
    ) -> Result<ExportRun, ShardError> {
        let export = node.new_export_id();
        let mut run = ExportRun {
            node: node.clone(),
            placement,
            format,
            export,
            todo: VecDeque::new(),
            current: None,
            open: Vec::new(),
            writer: None,
            started: false,
            finished: false,
            created_unix_ms: now_unix_ms(),
            manifest: Vec::new(),
            points_at_cut: 0,
            points_written: 0,
        };
        let pending: Vec<_> = cuts
            .into_iter()
            .map(|c| (c.home, node.call(c.home, ExportCut { export, only: c.only, tenant: c.tenant })))
            .collect();
        let mut first_error = None;
        for (home, p) in pending {
            match p.wait().await {
                Ok(Cut { lsn, collections, points }) => {
                    for ((spec, uid), n) in collections.into_iter().zip(points) {
                        for s in placement.shards_of(&spec.name) {
                            run.open.push((spec.name.clone(), uid, s));
                        }
                        run.points_at_cut += n;
                        run.todo.push_back(Queued { spec, uid, home, lsn, points_at_cut: n });
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // On error, dropping `run` ends the exports that did begin.
        match first_error {
            Some(e) => Err(e),
            None => Ok(run),
        }
    }

    /// The collections cut, in the order they will be written.
    pub fn collections(&self) -> impl Iterator<Item = (&CollectionSpec, u64)> {
        self.todo.iter().map(|p| (&p.spec, p.points_at_cut))
    }

    /// The next chunk of output; `None` after the last.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ExportError> {
        if self.finished {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(CHUNK_BYTES + (1 << 20));
        if !self.started {
            self.started = true;
            if self.format == Format::Backup {
                let (w, header) = BackupWriter::start(self.created_unix_ms);
                self.writer = Some(w);
                out.extend_from_slice(&header);
            }
        }
        while out.len() < CHUNK_BYTES {
            let Some(cur) = self.current.as_mut() else {
                match self.todo.pop_front() {
                    Some(c) => self.begin_collection(c, &mut out),
                    None => {
                        self.finish(&mut out);
                        break;
                    }
                }
                continue;
            };
            let n = cur.parts.len();
            let Some(i) = (0..n).map(|k| (cur.next + k) % n).find(|&i| !cur.parts[i].done) else {
                self.end_collection(&mut out);
                continue;
            };
            cur.next = (i + 1) % n;
            let (name, uid, export) = (cur.c.spec.name.clone(), cur.c.uid, self.export);
            // Keep a few requests ahead on every partition: a shard busy
            // with searches answers them in its next turns, and the parts
            // are read in turn, so the export moves at the pace of the
            // busiest shard's turns, not of their sum.
            let with_queries = self.format == Format::Backup;
            for p in cur.parts.iter_mut().filter(|p| !p.done) {
                while p.inflight.len() < IN_FLIGHT {
                    let op = ExportChunk { name: name.clone(), uid, export, max_points: CHUNK_POINTS, with_queries };
                    p.inflight.push_back(self.node.call(p.shard, op));
                }
            }
            let shard = cur.parts[i].shard;
            let pending = cur.parts[i].inflight.pop_front().expect("topped up above");
            let (points, done, queries) = match pending.wait().await {
                Ok(Exported { points, done, real_queries }) => (points, done, real_queries),
                Err(ShardError::Gone(_)) => return Err(ExportError::Deleted { name }),
                Err(source) => return Err(ExportError::Shard { name, source }),
            };
            let cur = self.current.as_mut().expect("set above");
            cur.written += points.len() as u64;
            self.points_written += points.len() as u64;
            match self.format {
                Format::Backup => {
                    if !points.is_empty() {
                        let rec = LogRecord::Upsert { name: name.clone(), points };
                        self.writer.as_mut().expect("started").frame(rec.kind(), &rec.encode(), &mut out);
                    }
                }
                Format::Ndjson => {
                    for p in &points {
                        ndjson_point(p.id, &p.values, &p.payload, &mut out);
                    }
                }
            }
            if done {
                // Requests sent past the end answer "done" with nothing.
                cur.parts[i].done = true;
                cur.parts[i].inflight.clear();
                cur.parts[i].queries = queries;
                self.open.retain(|(n, u, s)| !(n == &name && *u == uid && *s == shard));
            }
            glommio::yield_if_needed().await;
        }
        Ok(Some(out))
    }

    fn begin_collection(&mut self, c: Queued, out: &mut Vec<u8>) {
        match self.format {
            Format::Backup => {
                let create = LogRecord::CreateCollection { spec: c.spec.clone(), uid: c.uid };
                self.writer.as_mut().expect("started").frame(create.kind(), &create.encode(), out);
            }
            Format::Ndjson => {
                let line = serde_json::json!({
                    "aionbd_export": 1,
                    "collection": {
                        "name": crate::api::visible_name(&c.spec.name),
                        "dimension": c.spec.dimension,
                        "strict_finite": c.spec.strict_finite,
                    },
                    "points": c.points_at_cut,
                    "lsn": c.lsn,
                });
                serde_json::to_writer(&mut *out, &line).expect("JSON to memory");
                out.push(b'\n');
            }
        }
        let parts = self
            .placement
            .shards_of(&c.spec.name)
            .into_iter()
            .map(|shard| Part { shard, inflight: VecDeque::new(), done: false, queries: None })
            .collect();
        self.current = Some(Current { c, parts, next: 0, written: 0 });
    }

    fn end_collection(&mut self, out: &mut Vec<u8>) {
        let mut cur = self.current.take().expect("a collection is open");
        if let Some(w) = self.writer.as_mut() {
            // Every search reaches each partition, so each reservoir samples
            // the same stream: the fullest is kept.
            let fullest = cur.parts.iter_mut().filter_map(|p| p.queries.take()).max_by_key(|q| q.len());
            if let Some(real) = fullest {
                w.queries(&to_saved((cur.c.spec.name.clone(), cur.c.uid, real)), out);
            }
            let end = CollectionEnd {
                name: cur.c.spec.name.clone(),
                home_shard: cur.c.home as u16,
                lsn: cur.c.lsn,
                points: cur.written,
            };
            w.collection_end(&end, out);
        }
        self.manifest.push(ManifestCollection {
            name: cur.c.spec.name,
            dimension: cur.c.spec.dimension,
            strict_finite: cur.c.spec.strict_finite,
            points: cur.written,
            home_shard: cur.c.home as u16,
            lsn: cur.c.lsn,
        });
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.finished = true;
        if let Some(w) = self.writer.take() {
            let m = self.manifest();
            w.finish(&serde_json::to_string(&m).expect("JSON to memory"), out);
        }
    }

    /// The manifest of what was written so far (all of it once finished).
    pub fn manifest(&self) -> Manifest {
        Manifest {
            format: aionbd_io::backup::BACKUP_VERSION as u32,
            aionbd_version: env!("CARGO_PKG_VERSION").to_string(),
            created_unix_ms: self.created_unix_ms,
            consistency: CONSISTENCY.to_string(),
            points: self.manifest.iter().map(|c| c.points).sum(),
            collections: self.manifest.clone(),
            bytes: None,
            name: None,
        }
    }

    /// The run as a body stream for the HTTP layer. The run itself goes on
    /// the shard's low-priority export queue (like snapshots), two chunks
    /// ahead of the client, so requests keep their latency; a client that
    /// goes away drops the stream, and the run stops at its next chunk.
    pub fn into_stream(mut self) -> aionbd_http::BodyStream {
        let (tx, rx) = glommio::channels::local_channel::new_bounded::<Result<Vec<u8>, ExportError>>(2);
        let producer = async move {
            loop {
                let (item, last) = match self.next_chunk().await {
                    Ok(Some(chunk)) => (Ok(chunk), false),
                    Ok(None) => break,
                    Err(e) => (Err(e), true),
                };
                if tx.send(item).await.is_err() || last {
                    break;
                }
            }
        };
        glommio::spawn_local_into(producer, export_queue()).expect("the export queue exists").detach();
        Box::pin(futures_lite::stream::unfold(rx, |rx| async move {
            rx.recv().await.map(|item| (item.map_err(aionbd_http::StreamError::from), rx))
        }))
    }
}

/// Shares of the export queue (backups, exports); requests have 1000.
const EXPORT_SHARES: usize = 50;

thread_local! {
    static EXPORT_QUEUE: std::cell::Cell<Option<glommio::TaskQueueHandle>> = const { std::cell::Cell::new(None) };
}

/// This shard's low-priority queue for backups and exports.
pub fn export_queue() -> glommio::TaskQueueHandle {
    EXPORT_QUEUE.with(|q| {
        q.get().unwrap_or_else(|| {
            let h = crate::background::background_queue(EXPORT_SHARES, "export");
            q.set(Some(h));
            h
        })
    })
}

impl Drop for ExportRun {
    fn drop(&mut self) {
        for (name, uid, shard) in self.open.drain(..) {
            drop(self.node.call(shard, ExportEnd { name, uid, export: self.export }));
        }
    }
}

/// One NDJSON point line: `{"id":..,"values":[..],"payload":{..}}`, floats
/// in their shortest round-trip form; infinities as ±1e39 (which parse back
/// to them), NaN as null.
pub fn ndjson_point(id: u64, values: &[f32], payload: &aionbd_shards::payload::Payload, out: &mut Vec<u8>) {
    point_json(id, values, payload, out);
    out.push(b'\n');
}

/// `{"id":..,"values":[..],"payload":..}` (no newline), floats as in
/// [`ndjson_point`]; the payload is anything serde writes as a JSON object.
pub fn point_json(id: u64, values: &[f32], payload: &impl serde::Serialize, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{{\"id\":{id},\"values\":[");
    let mut buf = ryu::Buffer::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if v.is_finite() {
            out.extend_from_slice(buf.format_finite(*v).as_bytes());
        } else if v.is_nan() {
            out.extend_from_slice(b"null");
        } else if *v > 0.0 {
            out.extend_from_slice(b"1e39");
        } else {
            out.extend_from_slice(b"-1e39");
        }
    }
    out.extend_from_slice(b"],\"payload\":");
    serde_json::to_writer(&mut *out, payload).expect("JSON to memory");
    out.push(b'}');
}
