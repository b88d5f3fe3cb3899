//! The per-shard write-ahead log on glommio DMA files (O_DIRECT): executes
//! the I/O steps that `aionbd_io::wal::WalWriter` plans, with group commit:
//! appends that arrive while a flush is in flight share the next one
//! (one write + one fdatasync for all of them).
//!
//! The node appends each write's record right after applying it in
//! memory and acknowledges only once the record is durable (docs/storage.md).

use aionbd_io::wal::{Lsn, Step, WalWriter, WriteError};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::io::{DmaFile, OpenOptions};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

/// Why a WAL append failed. After an I/O error the WAL is failed for good
/// (an fdatasync error cannot be retried safely): every later append fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalError {
    Io(String),
    DiskFull(String),
    TooLarge(String),
    Failed(String),
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            WalError::Io(m) | WalError::DiskFull(m) | WalError::TooLarge(m) | WalError::Failed(m) => f.write_str(m),
        }
    }
}

fn io_err(context: &str, e: impl fmt::Display, disk_full: bool) -> WalError {
    let msg = format!("{context}: {e}");
    if disk_full {
        WalError::DiskFull(msg)
    } else {
        WalError::Io(msg)
    }
}

fn is_enospc(e: &glommio::GlommioError<()>) -> bool {
    matches!(e, glommio::GlommioError::IoError(io) if io.raw_os_error() == Some(28))
}

mod recovery;
pub use recovery::{read_segment_names, read_segments, recover_dir, remove_unfinished, SegmentReader};

pub fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016x}.log")
}

type Waiter = LocalSender<Result<Lsn, WalError>>;

/// When the WAL calls fdatasync (API.md §9 settings; docs/storage.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncPolicy {
    /// Acknowledge only after an fdatasync covers the write (the default).
    pub every_write: bool,
    /// Otherwise: fdatasync once this many writes are unsynced (0 = off) ...
    pub every_n: u64,
    /// ... and at least this often while any write is unsynced.
    pub interval: Option<Duration>,
}

impl SyncPolicy {
    pub fn from_config(p: &crate::config::PersistenceConfig) -> SyncPolicy {
        let interval = (p.wal_sync_interval_seconds > 0).then(|| Duration::from_secs(p.wal_sync_interval_seconds));
        // Relaxed with neither knob set would never sync: bound it at 1 s.
        let interval = if !p.wal_sync_on_write && p.wal_sync_every_n_writes == 0 {
            interval.or(Some(Duration::from_secs(1)))
        } else {
            interval
        };
        SyncPolicy { every_write: p.wal_sync_on_write, every_n: p.wal_sync_every_n_writes, interval }
    }
}

/// Name prefix of preallocated files kept ready for the next segment
/// (removed at recovery like any `*.log.tmp`).
const SPARE_PREFIX: &str = "wal-spare-";
/// How often a write refused for lack of disk space retries reserving one.
const SPACE_RETRY: Duration = Duration::from_millis(200);

/// One shard's WAL. All methods run on the shard's executor.
pub struct Wal {
    dir: PathBuf,
    writer: RefCell<WalWriter>,
    segment_bytes: u64,
    policy: SyncPolicy,
    flush_delay: Duration,
    /// The segment batches go to.
    current: RefCell<Option<Rc<DmaFile>>>,
    /// A preallocated file ready to become the next segment: rollover then
    /// needs no new disk space, and a full disk is noticed (and writes
    /// refused with 507) before any write is applied.
    spare: RefCell<Option<Rc<DmaFile>>>,
    preparing: Cell<bool>,
    spares_made: Cell<u64>,
    disk_full: RefCell<Option<(String, std::time::Instant)>>,
    queue: RefCell<Vec<(u8, Vec<u8>, Waiter)>>,
    flushing: Cell<bool>,
    sync_due: Cell<bool>,
    failed: RefCell<Option<WalError>>,
    /// Most records one group commit takes.
    max_batch: usize,
    /// LSN of the last record queued / written / covered by an fdatasync.
    assigned: Cell<Lsn>,
    written: Cell<Lsn>,
    durable: Cell<Lsn>,
    pub syncs: Cell<u64>,
    pub records: Cell<u64>,
    pub bytes: Cell<u64>,
    pub batches: Cell<u64>,
    /// Segment files on disk (for the WAL size in /metrics).
    pub segments: Cell<u64>,
    /// Time of each fdatasync, in microseconds (`/metrics`).
    pub sync_latency: RefCell<hdrhistogram::Histogram<u64>>,
}

impl Wal {
    pub fn new(
        dir: PathBuf,
        writer: WalWriter,
        segment_bytes: u64,
        policy: SyncPolicy,
        max_batch: usize,
        flush_delay: Duration,
    ) -> Rc<Wal> {
        let last = writer.next_lsn() - 1;
        let wal = Rc::new(Wal {
            dir,
            writer: RefCell::new(writer),
            segment_bytes,
            policy,
            flush_delay,
            current: RefCell::new(None),
            spare: RefCell::new(None),
            preparing: Cell::new(false),
            spares_made: Cell::new(0),
            disk_full: RefCell::new(None),
            queue: RefCell::new(Vec::new()),
            flushing: Cell::new(false),
            sync_due: Cell::new(false),
            failed: RefCell::new(None),
            max_batch: max_batch.max(1),
            assigned: Cell::new(last),
            written: Cell::new(last),
            durable: Cell::new(last),
            syncs: Cell::new(0),
            records: Cell::new(0),
            bytes: Cell::new(0),
            batches: Cell::new(0),
            segments: Cell::new(0),
            sync_latency: RefCell::new(crate::metrics::new_histogram()),
        });
        wal.prepare_spare();
        if let Some(every) = policy.interval.filter(|_| !policy.every_write) {
            let weak = Rc::downgrade(&wal);
            glommio::spawn_local(async move {
                loop {
                    glommio::timer::sleep(every).await;
                    let Some(wal) = weak.upgrade() else { return };
                    if wal.written.get() > wal.durable.get() {
                        wal.request_sync();
                    }
                }
            })
            .detach();
        }
        wal
    }

    /// Queue one record now (records get LSNs in the order of these calls,
    /// which must be the order the shard applied them); the returned future
    /// resolves once the record is durable by the sync policy: covered by
    /// an fdatasync, or (relaxed modes) written to the device.
    pub fn append(
        self: &Rc<Self>,
        kind: u8,
        body: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Lsn, WalError>> {
        let (tx, rx) = local_channel::new_bounded(1);
        if let Some(e) = self.failed.borrow().clone() {
            let _ = tx.try_send(Err(WalError::Failed(format!("the WAL stopped after an earlier error: {e}"))));
        } else {
            self.assigned.set(self.assigned.get() + 1);
            self.queue.borrow_mut().push((kind, body, tx));
            self.kick();
        }
        async move { rx.recv().await.unwrap_or_else(|| Err(WalError::Failed("WAL flusher stopped".into()))) }
    }

    /// Whether a write may be applied now: `Err(DiskFull)` while no disk
    /// space could be reserved for the next segment. Call before applying
    /// a write, so a refused write changes nothing.
    pub fn admit(self: &Rc<Self>) -> Result<(), WalError> {
        if self.spare.borrow().is_some() {
            return Ok(());
        }
        let full = self.disk_full.borrow().clone();
        match full {
            None => Ok(()),
            Some((msg, _)) => {
                self.ensure_spare();
                Err(WalError::DiskFull(msg))
            }
        }
    }

    /// LSN of the last record queued so far.
    pub fn last_assigned(&self) -> Lsn {
        self.assigned.get()
    }

    /// Resolves once every record up to `lsn` is covered by an fdatasync
    /// (forcing one in the relaxed modes).
    pub async fn wait_durable(self: &Rc<Self>, lsn: Lsn) -> Result<(), WalError> {
        loop {
            if let Some(e) = self.failed.borrow().clone() {
                return Err(e);
            }
            if self.durable.get() >= lsn {
                return Ok(());
            }
            if self.written.get() >= lsn {
                self.request_sync();
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Whether an I/O error has stopped this WAL.
    pub fn is_failed(&self) -> bool {
        self.failed.borrow().is_some()
    }

    /// Whether writes are being refused for lack of disk space.
    pub fn is_disk_full(&self) -> bool {
        self.spare.borrow().is_none() && self.disk_full.borrow().is_some()
    }

    fn request_sync(self: &Rc<Self>) {
        self.sync_due.set(true);
        self.kick();
    }

    fn kick(self: &Rc<Self>) {
        if !self.flushing.get() {
            self.flushing.set(true);
            let wal = self.clone();
            glommio::spawn_local(async move { wal.flush_loop().await }).detach();
        }
    }

    /// Reserve the next segment if none is ready (rate-limited while the
    /// disk is full).
    fn ensure_spare(self: &Rc<Self>) {
        let retry = self.disk_full.borrow().as_ref().is_none_or(|(_, since)| since.elapsed() >= SPACE_RETRY);
        if retry {
            self.prepare_spare();
        }
    }

    /// Create and preallocate the spare segment file in the background.
    fn prepare_spare(self: &Rc<Self>) {
        if self.preparing.get() || self.spare.borrow().is_some() {
            return;
        }
        self.preparing.set(true);
        let wal = self.clone();
        glommio::spawn_local(async move {
            match wal.create_spare().await {
                Ok(file) => {
                    *wal.spare.borrow_mut() = Some(Rc::new(file));
                    *wal.disk_full.borrow_mut() = None;
                }
                Err(e) => {
                    let msg = format!("cannot reserve the next WAL segment: {e}");
                    *wal.disk_full.borrow_mut() = Some((msg, std::time::Instant::now()));
                }
            }
            wal.preparing.set(false);
        })
        .detach();
    }

    async fn create_spare(&self) -> Result<DmaFile, WalError> {
        self.spares_made.set(self.spares_made.get() + 1);
        let path = self.dir.join(format!("{SPARE_PREFIX}{}.log.tmp", self.spares_made.get()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&path)
            .await
            .map_err(|e| io_err(&format!("create {}", path.display()), &e, is_enospc(&e)))?;
        if let Err(e) = file.pre_allocate(self.segment_bytes, false).await {
            let _ = file.close().await;
            let _ = std::fs::remove_file(&path);
            return Err(io_err(&format!("preallocate {}", path.display()), &e, is_enospc(&e)));
        }
        Ok(file)
    }

    async fn flush_loop(self: Rc<Self>) {
        loop {
            if !self.flush_delay.is_zero() && !self.queue.borrow().is_empty() {
                glommio::timer::sleep(self.flush_delay).await;
            }
            let group: Vec<(u8, Vec<u8>, Waiter)> = {
                let mut q = self.queue.borrow_mut();
                let n = q.len().min(self.max_batch);
                q.drain(..n).collect()
            };
            if group.is_empty() {
                if self.sync_due.replace(false) && self.written.get() > self.durable.get() {
                    if let Err(e) = self.sync_current().await {
                        *self.failed.borrow_mut() = Some(e);
                    }
                }
                if self.queue.borrow().is_empty() && !self.sync_due.get() {
                    self.flushing.set(false);
                    return;
                }
                continue;
            }
            let result = self.flush(&group).await;
            self.ensure_spare();
            if let Err(e) = &result {
                *self.failed.borrow_mut() = Some(e.clone());
            }
            for (i, (_, _, tx)) in group.into_iter().enumerate() {
                let _ = tx.try_send(result.clone().map(|first| first + i as u64));
            }
        }
    }

    /// Write one group (and sync it if the policy says so); returns the LSN
    /// of its first record.
    async fn flush(&self, group: &[(u8, Vec<u8>, Waiter)]) -> Result<Lsn, WalError> {
        let records: Vec<(u8, &[u8])> = group.iter().map(|(k, b, _)| (*k, b.as_slice())).collect();
        let first = self.writer.borrow().next_lsn();
        let steps = self.writer.borrow_mut().append(&records).map_err(|e| match e {
            WriteError::BatchTooLarge { .. } => WalError::TooLarge(e.to_string()),
            WriteError::NoRecords => WalError::Io(e.to_string()),
        })?;
        for step in steps {
            match step {
                Step::OpenSegment { segment_seq, header, .. } => self.open_segment(segment_seq, &header).await?,
                Step::WriteBatch { bytes, offset, last_lsn, .. } => {
                    let file = self.current.borrow().clone().expect("segment opened first");
                    write_all_at(&file, offset, &bytes).await?;
                    self.written.set(last_lsn);
                    self.bytes.set(self.bytes.get() + bytes.len() as u64);
                    self.batches.set(self.batches.get() + 1);
                    let unsynced = self.written.get() - self.durable.get();
                    let p = self.policy;
                    if p.every_write || (p.every_n > 0 && unsynced >= p.every_n) || self.sync_due.replace(false) {
                        self.sync_current().await?;
                    }
                }
            }
        }
        self.records.set(self.records.get() + group.len() as u64);
        Ok(first)
    }

    async fn sync_current(&self) -> Result<(), WalError> {
        let file = self.current.borrow().clone();
        if let Some(file) = file {
            let t0 = std::time::Instant::now();
            file.fdatasync().await.map_err(|e| io_err("WAL fdatasync", &e, false))?;
            let us = t0.elapsed().as_micros() as u64;
            let _ = self.sync_latency.borrow_mut().record(us.clamp(1, crate::metrics::HIST_MAX_US));
            self.syncs.set(self.syncs.get() + 1);
        }
        self.durable.set(self.written.get());
        Ok(())
    }

    /// Turn the spare file into segment `seq`: header written and synced
    /// under the temporary name, then renamed and the directory synced, so
    /// a crash leaves either no segment or one with a valid header.
    async fn open_segment(&self, seq: u64, header: &[u8]) -> Result<(), WalError> {
        // Whatever the old segment holds must be durable before later
        // segments exist (recovery treats damage before them as corruption).
        if self.written.get() > self.durable.get() {
            self.sync_current().await?;
        }
        let spare = self.spare.borrow_mut().take();
        let file = match spare {
            Some(f) => f,
            // The spare was not ready (or the disk was full a moment ago).
            None => Rc::new(self.create_spare().await?),
        };
        write_all_at(&file, 0, header).await?;
        file.fdatasync().await.map_err(|e| io_err("WAL fdatasync", &e, false))?;
        self.syncs.set(self.syncs.get() + 1);
        let path = self.dir.join(segment_name(seq));
        file.rename(&path).await.map_err(|e| io_err(&format!("rename to {}", path.display()), &e, false))?;
        // Once per segment, so a plain blocking fsync of the directory is fine.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(&format!("sync directory {}", self.dir.display()), &e, false))?;
        *self.current.borrow_mut() = Some(file);
        self.segments.set(self.segments.get() + 1);
        Ok(())
    }

    /// Continue in segment `seq`, the newest one recovery found (the writer
    /// was made by `WalWriter::after_recovery`), instead of opening a new
    /// one: a restart then adds no segment file.
    pub async fn resume_segment(&self, seq: u64) -> Result<(), String> {
        let path = self.dir.join(segment_name(seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(&path)
            .await
            .map_err(|e| format!("cannot open {} to continue the log: {e}", path.display()))?;
        *self.current.borrow_mut() = Some(Rc::new(file));
        Ok(())
    }

    /// `n` old segments were deleted (after a snapshot covered them).
    pub fn forget_segments(&self, n: u64) {
        self.segments.set(self.segments.get().saturating_sub(n));
    }

    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }
}

async fn write_all_at(file: &DmaFile, offset: u64, bytes: &[u8]) -> Result<(), WalError> {
    let mut buf = file.alloc_dma_buffer(bytes.len());
    buf.as_bytes_mut().copy_from_slice(bytes);
    let written = file.write_at(buf, offset).await.map_err(|e| io_err("WAL write", &e, is_enospc(&e)))?;
    if written != bytes.len() {
        return Err(WalError::Io(format!("short WAL write: {written} of {} bytes", bytes.len())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutorBuilder;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aionbd-wal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Concurrent appends on real O_DIRECT files share fdatasyncs, roll over
    /// segments, and read back complete through recovery.
    #[test]
    fn group_commit_on_dma_files_round_trips() {
        let dir = temp_dir("gc");
        let d = dir.clone();
        let (syncs, records) = LocalExecutorBuilder::default()
            .spawn(move || async move {
                let writer = WalWriter::new(0, 16 * 4096, 1, 1, Box::new(|| 0x5eed));
                let policy = SyncPolicy { every_write: true, every_n: 0, interval: None };
                let wal = Wal::new(d, writer, 16 * 4096, policy, 64, Duration::ZERO);
                let tasks: Vec<_> = (0..32u64)
                    .map(|t| {
                        let wal = wal.clone();
                        glommio::spawn_local(async move {
                            let mut lsns = Vec::new();
                            for i in 0..20u64 {
                                let body = format!("task {t} record {i}").into_bytes();
                                lsns.push(wal.append(3, body).await.expect("append"));
                            }
                            lsns
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for t in tasks {
                    all.extend(t.await);
                }
                all.sort();
                assert_eq!(all, (1..=640).collect::<Vec<_>>(), "every append got a distinct LSN");
                (wal.syncs.get(), wal.records.get())
            })
            .unwrap()
            .join()
            .unwrap();
        eprintln!("640 records from 32 concurrent writers: {syncs} fdatasyncs");
        assert_eq!(records, 640);
        assert!(syncs < 640 / 4, "group commit should share fdatasyncs: {syncs} syncs for 640 records");
        let rec = recover_dir(&dir, 1, false, None).unwrap();
        assert_eq!(rec.records.len(), 640);
        assert!(rec.next_segment_seq > 2, "segments rolled over");
        let bodies: std::collections::HashSet<Vec<u8>> = rec.records.into_iter().map(|r| r.body).collect();
        assert!(bodies.contains(b"task 31 record 19".as_slice()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
