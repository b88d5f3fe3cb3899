//! The production [`SegmentIo`]: glommio DMA files (O_DIRECT), with the
//! fdatasync latency histogram of `/metrics`. Errors keep glommio's text
//! (and its error kind, so ENOSPC is still a full disk).

use aionbd_io::wal::SegmentIo;
use glommio::io::{DmaFile, OpenOptions};
use std::cell::RefCell;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

/// Bytes per write when a spare segment's zeros are written out (segment
/// sizes are multiples of 4096, so every write stays block-aligned).
const ZERO_CHUNK: usize = 128 << 10;

/// A disk call slower than this is logged at debug level, with its
/// operation and path: a write held up at the log shows where it waited.
const SLOW_CALL: Duration = Duration::from_millis(100);

/// Await `call` and log it at debug level if it took [`SLOW_CALL`] or more.
async fn timed<R>(op: &str, path: &Path, call: impl std::future::Future<Output = R>) -> R {
    let t0 = std::time::Instant::now();
    let r = call.await;
    let took = t0.elapsed();
    if took >= SLOW_CALL {
        tracing::debug!("wal disk: {op} {} took {} ms", path.display(), took.as_millis());
    }
    r
}

/// A shard's files on its disk.
pub struct DmaDisk {
    /// Time of each fdatasync, in microseconds (`/metrics`).
    pub sync_latency: RefCell<hdrhistogram::Histogram<u64>>,
    /// What [`SegmentIo::now`] counts from.
    origin: std::time::Instant,
}

impl DmaDisk {
    pub fn new() -> DmaDisk {
        DmaDisk { sync_latency: RefCell::new(crate::metrics::new_histogram()), origin: std::time::Instant::now() }
    }

    async fn zero_fill_chunks(&self, file: &Rc<DmaFile>, bytes: u64) -> io::Result<()> {
        let mut at = 0u64;
        while at < bytes {
            let len = ZERO_CHUNK.min((bytes - at) as usize);
            let mut buf = file.alloc_dma_buffer(len);
            buf.as_bytes_mut().fill(0);
            let n = file.write_at(buf, at).await.map_err(to_io)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "zero-filling a spare segment"));
            }
            at += n as u64;
        }
        Ok(())
    }
}

impl Default for DmaDisk {
    fn default() -> Self {
        DmaDisk::new()
    }
}

/// A glommio error as an `io::Error` with the same text and kind.
fn to_io(e: glommio::GlommioError<()>) -> io::Error {
    let kind = match &e {
        glommio::GlommioError::IoError(s) | glommio::GlommioError::EnhancedIoError { source: s, .. } => s.kind(),
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.to_string())
}

/// Run a blocking file system call on the executor's blocking thread (one
/// per shard, glommio's pool), so the shard's requests go on meanwhile.
/// The WAL awaits each such call before its next step, as it awaited the
/// call itself before: the order of its disk operations is unchanged.
async fn off_the_shard<R: Send + 'static>(call: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(call).await
}

impl SegmentIo for DmaDisk {
    type File = Rc<DmaFile>;

    async fn create(&self, path: &Path) -> io::Result<Rc<DmaFile>> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(true);
        let file = timed("create", path, options.dma_open(path)).await.map_err(to_io)?;
        Ok(Rc::new(file))
    }

    async fn preallocate(&self, file: &Rc<DmaFile>, bytes: u64) -> io::Result<()> {
        timed("preallocate", Path::new("a spare segment"), file.pre_allocate(bytes, false)).await.map_err(to_io)
    }

    /// Zeros in chunks of [`ZERO_CHUNK`], each its own write: the
    /// executor serves requests between them.
    async fn zero_fill(&self, file: &Rc<DmaFile>, bytes: u64) -> io::Result<()> {
        timed("zero-fill", Path::new("a spare segment"), self.zero_fill_chunks(file, bytes)).await
    }

    async fn open(&self, path: &Path) -> io::Result<Rc<DmaFile>> {
        Ok(Rc::new(OpenOptions::new().read(true).write(true).dma_open(path).await.map_err(to_io)?))
    }

    async fn write_at(&self, file: &Rc<DmaFile>, offset: u64, bytes: &[u8]) -> io::Result<usize> {
        let mut buf = file.alloc_dma_buffer(bytes.len());
        buf.as_bytes_mut().copy_from_slice(bytes);
        file.write_at(buf, offset).await.map_err(to_io)
    }

    async fn fdatasync(&self, file: &Rc<DmaFile>) -> io::Result<()> {
        let t0 = std::time::Instant::now();
        file.fdatasync().await.map_err(to_io)?;
        if let Some(slow) = crate::debug_hooks::slow_fdatasync() {
            glommio::timer::sleep(slow).await;
        }
        let us = t0.elapsed().as_micros() as u64;
        let _ = self.sync_latency.borrow_mut().record(us.clamp(1, crate::metrics::HIST_MAX_US));
        Ok(())
    }

    // The manifest: small, but its fsync waits for the file system's
    // journal; on the executor's blocking thread (see `sync_dir`).
    async fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let (owned, bytes) = (path.to_owned(), bytes.to_vec());
        let call = off_the_shard(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(owned)?;
            f.write_all(&bytes)?;
            f.sync_all()
        });
        timed("write and fsync", path, call).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        timed("rename to", to, glommio::io::rename(from, to)).await.map_err(to_io)
    }

    // Unlinking a 64 MiB segment frees its extents: blocking, off the shard.
    async fn remove(&self, path: &Path) -> io::Result<()> {
        let owned = path.to_owned();
        timed("remove", path, off_the_shard(move || std::fs::remove_file(owned))).await
    }

    // Once per segment or snapshot. A directory's fsync commits the file
    // system's journal, which on ext4 also waits for other files' dirty
    // data: 370 ms of a shard asleep in one stall report during a bulk
    // load, every request on it waiting. So it runs on the executor's
    // blocking thread, and the shard goes on serving.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let owned = dir.to_owned();
        let call = off_the_shard(move || {
            if let Some(slow) = crate::debug_hooks::slow_sync_dir() {
                std::thread::sleep(slow);
            }
            std::fs::File::open(owned)?.sync_all()
        });
        timed("sync directory", dir, call).await
    }

    async fn sleep(&self, duration: Duration) {
        glommio::timer::sleep(duration).await;
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}
