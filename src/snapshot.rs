//! Per-shard snapshots: taking them in the background, switching the
//! manifest, deleting what they make redundant, and loading them at start.
//!
//! A shard snapshots the collections it is home to, at a cut: the LSN of the
//! last write its WAL has queued (see `Node::snapshot_cut`). The partitions
//! of those collections (on any shard) are copied out chunk by chunk while
//! writes go on (`aionbd_shards::export`), so the file holds exactly the
//! state at the cut. The file is written on a low-priority task queue, then:
//! wait until the WAL is durable up to the cut, rename the file into place,
//! switch the manifest (write new, fsync, rename, fsync the directory), and
//! only then delete the old snapshot and the WAL segments the new one covers.
//! Formats and the recovery order: docs/storage.md.

use crate::fs::FsError;
use crate::node::Node;
pub use aionbd_io::snapshot::MANIFEST;
use aionbd_io::snapshot::{
    encode_end, encode_frame, snapshot_name, Manifest, ManifestError, SnapshotHeader, SnapshotReader,
};
use aionbd_io::wal::Lsn;
use aionbd_shards::ops::{ExportChunk, ExportEnd, Exported};
use aionbd_shards::record::LogRecord;
use aionbd_shards::ShardError;
use futures_lite::AsyncWriteExt;
use glommio::io::{DmaFile, DmaStreamWriterBuilder};
use glommio::TaskQueueHandle;
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// Points per export chunk (and per snapshot record): ~190 KiB at 384
/// dims. A snapshot holds a chunk three times at once (the exported
/// points, their record, its frame) beside the writes it runs next to:
/// with 512 points and 1 MiB write buffers a memory-light bulk load
/// peaked at 1.26x its settled RSS (docs/benchmarks.md, memory-light mode).
const CHUNK_POINTS: usize = 128;
/// The snapshot file's write buffer, and how many more are written behind
/// it (in flight to the device).
const WRITE_BUFFER: usize = 256 << 10;
const WRITE_BEHIND: usize = 2;
/// How often a shard checks whether a snapshot is due.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// Why a snapshot was not taken.
#[derive(Debug)]
enum TakeError {
    /// A collection was dropped while it was exported (the shard's
    /// message): not a failure, the snapshot is taken again later.
    Aborted(String),
    PersistenceOff,
    /// The cut could not be taken.
    Cut(ShardError),
    /// A partition could not export a chunk.
    Export(ShardError),
    File(FsError),
    /// The WAL failed before it made the cut durable, or the switch to the
    /// new snapshot (rename, manifest, covered segments) failed.
    Switch(aionbd_io::wal::SwitchError),
}

impl From<FsError> for TakeError {
    fn from(e: FsError) -> Self {
        TakeError::File(e)
    }
}

impl std::fmt::Display for TakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            TakeError::Aborted(m) => f.write_str(m),
            TakeError::PersistenceOff => f.write_str("persistence is off"),
            TakeError::Cut(e) => write!(f, "cannot start the export: {e}"),
            TakeError::Export(e) => write!(f, "export: {e}"),
            TakeError::File(e) => write!(f, "{e}"),
            TakeError::Switch(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TakeError::Cut(e) | TakeError::Export(e) => Some(e),
            TakeError::File(e) => Some(e),
            TakeError::Aborted(_) | TakeError::PersistenceOff => None,
            TakeError::Switch(e) => Some(e),
        }
    }
}

/// Shares of the snapshot task queue; request handling has 1000.
const SNAPSHOT_SHARES: usize = 50;

/// One shard's snapshot state and counters.
pub struct Snapshots {
    shard_id: usize,
    dir: PathBuf,
    min_wal_bytes: u64,
    wal_percent: u64,
    /// WAL bytes written when the last snapshot's cut was taken.
    wal_bytes_at_cut: Cell<u64>,
    last_file_bytes: Cell<u64>,
    pub in_flight: Cell<bool>,
    pub taken: Cell<u64>,
    /// When the last snapshot was written (or the shard started).
    pub last_taken: Cell<std::time::Instant>,
    pub failed: Cell<u64>,
    pub last_error: RefCell<Option<String>>,
    queue: TaskQueueHandle,
}

impl Snapshots {
    pub fn new(
        shard_id: usize,
        dir: PathBuf,
        cfg: &crate::config::PersistenceConfig,
        last_file_bytes: u64,
    ) -> Rc<Self> {
        let queue = crate::background::background_queue(SNAPSHOT_SHARES, "snapshot");
        Rc::new(Snapshots {
            shard_id,
            dir,
            min_wal_bytes: cfg.snapshot_min_wal_bytes,
            wal_percent: cfg.snapshot_wal_percent,
            wal_bytes_at_cut: Cell::new(0),
            last_file_bytes: Cell::new(last_file_bytes),
            in_flight: Cell::new(false),
            taken: Cell::new(0),
            last_taken: Cell::new(std::time::Instant::now()),
            failed: Cell::new(0),
            last_error: RefCell::new(None),
            queue,
        })
    }

    /// Watch the WAL and take a snapshot whenever enough was written.
    pub fn start(self: &Rc<Self>, node: Rc<Node>) {
        let snaps = self.clone();
        glommio::spawn_local_into(
            async move {
                loop {
                    glommio::timer::sleep(CHECK_EVERY).await;
                    if snaps.due(&node) {
                        snaps.take(&node).await;
                    }
                }
            },
            self.queue,
        )
        .expect("the snapshot queue exists")
        .detach();
    }

    /// WAL bytes written since the last snapshot's cut.
    pub fn wal_bytes_since(&self, node: &Node) -> u64 {
        node.wal().map_or(0, |wal| wal.bytes.get().saturating_sub(self.wal_bytes_at_cut.get()))
    }

    /// Enough log was written since the last snapshot's cut to take one.
    pub fn due(&self, node: &Node) -> bool {
        let Some(wal) = node.wal() else { return false };
        if wal.is_failed() {
            return false;
        }
        let since = wal.bytes.get() - self.wal_bytes_at_cut.get();
        since >= self.min_wal_bytes.max(self.last_file_bytes.get() * self.wal_percent / 100) && since > 0
    }

    /// Take one snapshot now (errors are counted and logged; the WAL keeps
    /// everything, so a failed snapshot loses nothing).
    pub async fn take(&self, node: &Node) -> Option<Lsn> {
        self.in_flight.set(true);
        let t0 = std::time::Instant::now();
        let result = self.write(node).await;
        self.in_flight.set(false);
        match result {
            Ok((lsn, bytes)) => {
                let ms = t0.elapsed().as_millis();
                tracing::debug!("shard {}: snapshot at LSN {lsn}, {bytes} bytes, taken in {ms} ms", self.shard_id);
                self.taken.set(self.taken.get() + 1);
                self.last_taken.set(std::time::Instant::now());
                self.last_file_bytes.set(bytes);
                Some(lsn)
            }
            Err(TakeError::Aborted(e)) => {
                tracing::info!("shard {}: snapshot restarts later: {e}", self.shard_id);
                None
            }
            Err(e) => {
                self.failed.set(self.failed.get() + 1);
                tracing::error!("shard {}: snapshot failed (will retry): {e}", self.shard_id);
                *self.last_error.borrow_mut() = Some(e.to_string());
                None
            }
        }
    }

    async fn write(&self, node: &Node) -> Result<(Lsn, u64), TakeError> {
        let wal = node.wal().ok_or(TakeError::PersistenceOff)?;
        let bytes_at_cut = wal.bytes.get();
        let cut = node.snapshot_cut().await.map_err(TakeError::Cut)?;
        let lsn = cut.lsn;
        let name = snapshot_name(lsn);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let result = async {
            let file = DmaFile::create(&tmp).await.map_err(|e| FsError::new("create", &tmp, e.into()))?;
            let mut out = DmaStreamWriterBuilder::new(file)
                .with_buffer_size(WRITE_BUFFER)
                .with_write_behind(WRITE_BEHIND)
                .build();
            let created_unix_ms =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            let mut buf = SnapshotHeader { shard_id: self.shard_id as u16, lsn, created_unix_ms }.encode().to_vec();
            let mut records = 0u64;
            let mut next_part = 0;
            for (spec, uid) in &cut.collections {
                let create = LogRecord::CreateCollection { spec: spec.clone(), uid: *uid };
                encode_frame(create.kind(), &create.encode(), &mut buf);
                records += 1;
                while let Some((name, part_uid, shard)) = cut.parts.get(next_part).filter(|p| p.0 == spec.name) {
                    next_part += 1;
                    loop {
                        let op = ExportChunk {
                            name: name.clone(),
                            uid: *part_uid,
                            export: cut.export,
                            max_points: CHUNK_POINTS,
                            with_queries: false,
                        };
                        let Exported { points, done, .. } = match node.call(*shard, op).wait().await {
                            Ok(chunk) => chunk,
                            // Dropped after the cut: the log holds the drop;
                            // start over later rather than fail.
                            Err(ShardError::Gone(e)) => return Err(TakeError::Aborted(e)),
                            Err(e) => return Err(TakeError::Export(e)),
                        };
                        if !points.is_empty() {
                            let rec = LogRecord::Upsert { name: name.clone(), points };
                            encode_frame(rec.kind(), &rec.encode(), &mut buf);
                            records += 1;
                        }
                        out.write_all(&buf).await.map_err(FsError::at("write", &tmp))?;
                        buf.clear();
                        if done {
                            break;
                        }
                        glommio::yield_if_needed().await;
                    }
                }
            }
            encode_end(records, lsn, &mut buf);
            out.write_all(&buf).await.map_err(FsError::at("write", &tmp))?;
            // Closing flushes, truncates to the real length and fdatasyncs.
            out.close().await.map_err(FsError::at("close", &tmp))?;
            Ok(std::fs::metadata(&tmp).map(|m| m.len()).map_err(FsError::at("", &tmp))?)
        }
        .await;
        let bytes = match result {
            Ok(b) => b,
            Err(e) => {
                // Stop the exports still running and drop the partial file.
                for (name, uid, shard) in &cut.parts {
                    let _ =
                        node.call(*shard, ExportEnd { name: name.clone(), uid: *uid, export: cut.export }).wait().await;
                }
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        // Once the WAL is durable up to the cut: into place, the manifest
        // switched, the covered segments deleted (the WAL's code, which the
        // crash tests run on a simulated disk).
        wal.install_snapshot(&tmp, &name, lsn).await.map_err(TakeError::Switch)?;
        self.wal_bytes_at_cut.set(bytes_at_cut);
        // The switch is durable: the old snapshot goes too (unlinking a
        // large file blocks while its extents are freed: off the shard).
        let (dir, keep) = (self.dir.clone(), name.clone());
        glommio::executor().spawn_blocking(move || remove_old_snapshots(&dir, &keep)).await;
        Ok((lsn, bytes))
    }
}

fn remove_old_snapshots(dir: &Path, keep: &str) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("snap-") && name != keep {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// What start-up found in a shard directory's manifest.
pub struct Loaded {
    pub manifest: Option<Manifest>,
    pub records: u64,
    pub file_bytes: u64,
}

/// Why a shard's snapshot could not be loaded at start-up.
#[derive(Debug)]
pub enum LoadError {
    File(FsError),
    /// The snapshot file the manifest names cannot be opened.
    Missing {
        path: PathBuf,
        source: std::io::Error,
    },
    Manifest {
        path: PathBuf,
        source: ManifestError,
    },
    /// The manifest is another shard's.
    OtherShard {
        path: PathBuf,
        shard: u16,
        expected: usize,
    },
    Damaged {
        path: PathBuf,
        source: aionbd_io::snapshot::SnapshotError,
    },
    /// The snapshot's header names another LSN or shard than its manifest.
    Mismatch {
        path: PathBuf,
    },
    /// A record could not be applied (the node's message).
    Apply(crate::node::ApplyError),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            LoadError::File(e) => write!(f, "{e}"),
            LoadError::Missing { path, source } => {
                write!(f, "snapshot {} (named by the manifest): {source}", path.display())
            }
            LoadError::Manifest { path, source } => write!(f, "{}: {source}", path.display()),
            LoadError::OtherShard { path, shard, expected } => {
                write!(f, "{} belongs to shard {shard}, not {expected}", path.display())
            }
            LoadError::Damaged { path, source } => write!(f, "snapshot {} is damaged {source}", path.display()),
            LoadError::Mismatch { path } => write!(f, "snapshot {} does not match its manifest", path.display()),
            LoadError::Apply(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::File(e) => Some(e),
            LoadError::Missing { source, .. } => Some(source),
            LoadError::Manifest { source, .. } => Some(source),
            LoadError::Damaged { source, .. } => Some(source),
            LoadError::OtherShard { .. } | LoadError::Mismatch { .. } | LoadError::Apply(_) => None,
        }
    }
}

/// Bytes a snapshot load reads at a time on its helper thread, and the
/// chunks that wait: up to `DEPTH + 2` chunks are in memory (waiting,
/// being read, being applied). With 8 MiB chunks that was ~50 MB of a
/// restart's peak (heaptrack); the load is bound by applying the points,
/// not by these reads.
const READ_AHEAD_CHUNK: usize = 1 << 20;
const READ_AHEAD_DEPTH: usize = 4;

/// A snapshot file's reader (its header read and checked), the file read
/// ahead on a helper thread.
pub fn open_reader(
    file: std::fs::File,
) -> Result<SnapshotReader<std::io::BufReader<aionbd_io::snapshot::ReadAhead>>, aionbd_io::snapshot::SnapshotError> {
    let ahead = aionbd_io::snapshot::ReadAhead::new(file, READ_AHEAD_CHUNK, READ_AHEAD_DEPTH);
    SnapshotReader::new(std::io::BufReader::with_capacity(1 << 20, ahead))
}

/// Load the shard's current snapshot (if any) through `node`, before the
/// WAL is replayed. Leftovers of interrupted snapshots are removed.
pub async fn load(
    node: &Node,
    dir: &Path,
    shard_id: usize,
    progress: &std::sync::atomic::AtomicU64,
) -> Result<Loaded, LoadError> {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let mpath = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&mpath) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Loaded { manifest: None, records: 0, file_bytes: 0 })
        }
        Err(e) => return Err(LoadError::File(FsError::new("cannot read", &mpath, e))),
    };
    let manifest = Manifest::decode(&text).map_err(|source| LoadError::Manifest { path: mpath.clone(), source })?;
    if manifest.shard_id as usize != shard_id {
        return Err(LoadError::OtherShard { path: mpath, shard: manifest.shard_id, expected: shard_id });
    }
    let spath = dir.join(&manifest.snapshot);
    let file = std::fs::File::open(&spath).map_err(|source| LoadError::Missing { path: spath.clone(), source })?;
    let file_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bad = |source| LoadError::Damaged { path: spath.clone(), source };
    let mut reader = open_reader(file).map_err(bad)?;
    if reader.header.lsn != manifest.lsn || reader.header.shard_id as usize != shard_id {
        return Err(LoadError::Mismatch { path: spath });
    }
    remove_old_snapshots(dir, &manifest.snapshot);
    let mut records = 0u64;
    while let Some((kind, body)) = reader.next_record().map_err(bad)? {
        node.restore_logged(kind, body, &|| format!("snapshot {} record {records}", spath.display()))
            .map_err(LoadError::Apply)?;
        node.replay_pace(crate::node::REPLAY_IN_FLIGHT).await;
        records += 1;
        // Let peers apply what this shard sends them (and vice versa).
        if records.is_multiple_of(64) {
            progress.store(records, std::sync::atomic::Ordering::Relaxed);
            futures_lite::future::yield_now().await;
        }
    }
    Ok(Loaded { manifest: Some(manifest), records, file_bytes })
}
