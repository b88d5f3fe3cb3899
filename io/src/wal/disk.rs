//! What the WAL needs from a disk and a clock, as one small trait, so the
//! same log code ([`super::log::Wal`]: group commit, rollover, the spare
//! segment, the manifest switch) runs on glommio DMA files in the server
//! (`src/wal/dma.rs`) and on the crash-simulating [`super::simdisk`] in
//! tests. Methods return futures (a simulated call may complete at once);
//! the log is generic over the trait, so nothing is boxed or dispatched
//! dynamically on the write path.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The operations of the WAL's files. Paths are whole paths (the server's
/// are under `data_dir/shard-NN/`); the log writes only blocks of
/// [`super::BLOCK_BYTES`] at block-aligned offsets through a file handle.
pub trait SegmentIo {
    /// An open file; cloned for each batch (an `Rc` in the server).
    type File: Clone;

    /// Create `path` (truncating any file of that name) for reading and
    /// writing. Its name is durable only after [`SegmentIo::sync_dir`].
    fn create(&self, path: &Path) -> impl Future<Output = io::Result<Self::File>>;
    /// Reserve `bytes` of zeros for a file just created (fallocate).
    fn preallocate(&self, file: &Self::File, bytes: u64) -> impl Future<Output = io::Result<()>>;
    /// Write the zeros of a preallocated file out, so that later writes
    /// overwrite written blocks: a sync after one then flushes data alone,
    /// with no extent change to journal (on ext4, a write + fdatasync into
    /// fallocated space took 1.6-1.8x as long, measured in
    /// docs/benchmarks.md). The spare segment maker calls it in the
    /// background. Where preallocated space reads as zeros already at no
    /// cost, as on the simulated disk, there is nothing to do.
    fn zero_fill(&self, _file: &Self::File, _bytes: u64) -> impl Future<Output = io::Result<()>> {
        std::future::ready(Ok(()))
    }
    /// Open an existing file for writing (the segment a restart continues in).
    fn open(&self, path: &Path) -> impl Future<Output = io::Result<Self::File>>;
    /// Write `bytes` at `offset`; returns how many were written.
    fn write_at(&self, file: &Self::File, offset: u64, bytes: &[u8]) -> impl Future<Output = io::Result<usize>>;
    /// Make what was written to `file` durable.
    fn fdatasync(&self, file: &Self::File) -> impl Future<Output = io::Result<()>>;
    /// Create or truncate a small file (the manifest's temporary), write
    /// `bytes` and fsync it; its name is durable only after `sync_dir`.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> impl Future<Output = io::Result<()>>;
    fn rename(&self, from: &Path, to: &Path) -> impl Future<Output = io::Result<()>>;
    fn remove(&self, path: &Path) -> impl Future<Output = io::Result<()>>;
    /// Make the creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> impl Future<Output = io::Result<()>>;
    /// Wait (the group-commit delay, the relaxed modes' sync interval, the
    /// pause between attempts to reserve a segment on a full disk).
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()>;
    /// Time since some fixed instant, on the clock [`SegmentIo::sleep`]
    /// runs by (how long an fdatasync took, for group commit).
    fn now(&self) -> Duration;
}

/// What the log was doing when an I/O call failed; each has the message
/// the server has always printed for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    /// Creating a spare segment file.
    Create,
    Preallocate,
    /// Writing a batch or a segment header.
    Write,
    Fdatasync,
    /// Turning a spare into segment `path`.
    RenameSegment,
    /// Moving a snapshot file (`path`) into place.
    RenameSnapshot,
    SyncDir,
    /// Replacing the manifest `path`.
    WriteManifest,
    /// Deleting a segment a snapshot covers.
    Remove,
    /// Opening the newest segment to continue it after a restart.
    Open,
    /// Zeroing the torn tail of segment `path` at start-up.
    ZeroTail,
}

/// A failed I/O call: what, on which file, and the system's error.
#[derive(Clone, Debug)]
pub struct IoFailure {
    pub op: IoOp,
    pub path: PathBuf,
    /// Shared: the WAL hands the same failure to every waiting write.
    pub source: Arc<io::Error>,
}

impl IoFailure {
    pub fn new(op: IoOp, path: &Path, source: io::Error) -> IoFailure {
        IoFailure { op, path: path.to_path_buf(), source: Arc::new(source) }
    }

    /// Whether the disk is full (ENOSPC).
    pub fn is_disk_full(&self) -> bool {
        self.source.kind() == io::ErrorKind::StorageFull
    }
}

impl fmt::Display for IoFailure {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let (p, e) = (self.path.display(), &self.source);
        match self.op {
            IoOp::Create => write!(f, "create {p}: {e}"),
            IoOp::Preallocate => write!(f, "preallocate {p}: {e}"),
            IoOp::Write => write!(f, "WAL write: {e}"),
            IoOp::Fdatasync => write!(f, "WAL fdatasync: {e}"),
            IoOp::RenameSegment => write!(f, "rename to {p}: {e}"),
            IoOp::RenameSnapshot => write!(f, "rename {p}: {e}"),
            IoOp::SyncDir => write!(f, "sync directory {p}: {e}"),
            IoOp::WriteManifest => write!(f, "write {p}: {e}"),
            IoOp::Remove => write!(f, "remove {p}: {e}"),
            IoOp::Open => write!(f, "cannot open {p} to continue the log: {e}"),
            IoOp::ZeroTail => write!(f, "{p}: {e}"),
        }
    }
}

impl std::error::Error for IoFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}
