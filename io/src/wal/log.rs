//! One shard's write-ahead log, over any [`SegmentIo`]: the server runs it
//! on glommio DMA files, the crash tests on the simulated disk, so the
//! thousands of seeded crashes exercise this code and no copy of it.
//!
//! - **Group commit**: [`Wal::append`] queues a record and gives it the
//!   next LSN at once (the order of the calls is the log's order); the
//!   flusher task writes what is queued as one batch (at most `max_batch`
//!   records, and no more than fits a segment), then one fdatasync covers
//!   them all. A record is acknowledged once that fdatasync returned (or,
//!   in a relaxed sync mode, once it was written). One batch is in flight.
//! - **Rollover**: a batch that does not fit the current segment goes to a
//!   new one. The old segment's unsynced tail is synced first (so only the
//!   newest segment can ever hold a torn batch); the new one is the spare
//!   file, given its header, fdatasynced, renamed to its segment name and
//!   the directory fsynced, so a crash leaves no segment or a whole header.
//! - **Spare segment**: a background task keeps one preallocated file
//!   ready, so rollover needs no new space and a full disk is noticed by
//!   [`Wal::admit`] before a write is applied (507), not after.
//! - **Manifest switch**: [`Wal::install_snapshot`] moves a snapshot into
//!   place once the log is durable up to its LSN, replaces the manifest,
//!   and only then deletes the segments it covers.
//! - After an I/O error the log stops for good (an fdatasync error cannot
//!   be retried safely: the kernel may have dropped the data it failed to
//!   write): every record not yet acknowledged, and every later append,
//!   fails.
//!
//! The owner spawns the three tasks of [`Wal::tasks`] on its executor once;
//! they are written in `log/flush.rs`.

use super::disk::{IoFailure, IoOp, SegmentIo};
use super::format::{segment_name, Lsn, BLOCK_BYTES, WAL_DIR};
use super::recover::Recovered;
use super::writer::WalWriter;
use crate::snapshot::{Manifest, MANIFEST};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

mod flush;

/// When the WAL calls fdatasync (docs/storage.md, "Sync modes").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncPolicy {
    /// Acknowledge only after an fdatasync covers the write (the default).
    pub every_write: bool,
    /// Otherwise: fdatasync once this many writes are unsynced (0 = off) ...
    pub every_n: u64,
    /// ... and at least this often while any write is unsynced.
    pub interval: Option<Duration>,
}

/// How a WAL is run (from the server's `persistence` settings).
#[derive(Clone, Copy, Debug)]
pub struct WalOptions {
    pub shard_id: u16,
    pub segment_bytes: u64,
    pub policy: SyncPolicy,
    /// Most records one group commit takes.
    pub max_batch: usize,
    /// How long the flusher waits for more records before writing a batch.
    pub flush_delay: Duration,
}

/// Name prefix of preallocated files kept ready for the next segment
/// (removed at start-up like any `*.log.tmp`).
const SPARE_PREFIX: &str = "wal-spare-";
/// How often a write refused for lack of disk space retries reserving one.
pub const SPACE_RETRY: Duration = Duration::from_millis(200);
/// Bytes of zeros written per call when a torn tail is zeroed.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

const _: () = assert!(ZERO_CHUNK_BYTES.is_multiple_of(BLOCK_BYTES));

/// Why a WAL operation failed.
#[derive(Clone, Debug)]
pub enum WalError {
    /// A record that does not fit one segment even alone.
    TooLarge {
        bytes: usize,
        segment_bytes: usize,
    },
    /// No space for the next segment: [`Wal::admit`] refuses writes until
    /// a spare can be reserved again.
    NoSpareSegment(IoFailure),
    /// A write or a segment's creation hit a full disk (ENOSPC).
    DiskFull(IoFailure),
    Io(IoFailure),
    /// A write returned fewer bytes than asked.
    ShortWrite {
        written: usize,
        bytes: usize,
    },
    /// Appended after an earlier error stopped the WAL.
    Stopped(Box<WalError>),
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            WalError::TooLarge { bytes, segment_bytes } => {
                write!(f, "a batch of {bytes} bytes does not fit a {segment_bytes}-byte segment")
            }
            WalError::NoSpareSegment(e) => write!(f, "cannot reserve the next WAL segment: {e}"),
            WalError::DiskFull(e) | WalError::Io(e) => write!(f, "{e}"),
            WalError::ShortWrite { written, bytes } => write!(f, "short WAL write: {written} of {bytes} bytes"),
            WalError::Stopped(e) => write!(f, "the WAL stopped after an earlier error: {e}"),
        }
    }
}

impl std::error::Error for WalError {}

impl WalError {
    /// A failed call while writing: ENOSPC from creating a segment or from
    /// a write is a full disk, anything else an I/O error.
    fn from_io(f: IoFailure) -> WalError {
        let space = matches!(f.op, IoOp::Create | IoOp::Preallocate | IoOp::Write) && f.is_disk_full();
        if space {
            WalError::DiskFull(f)
        } else {
            WalError::Io(f)
        }
    }
}

/// Why a snapshot could not be switched in (the snapshot file is then
/// left to the caller; the log still holds everything).
#[derive(Clone, Debug)]
pub enum SwitchError {
    /// The log could not be made durable up to the snapshot's LSN.
    Wal(WalError),
    Io(IoFailure),
}

impl fmt::Display for SwitchError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            SwitchError::Wal(e) => write!(f, "WAL: {e}"),
            SwitchError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SwitchError {}

/// A task waiting for a record to be acknowledged (`durable: false`) or to
/// be covered by an fdatasync (`durable: true`).
struct Waiter {
    id: u64,
    lsn: Lsn,
    durable: bool,
    waker: Waker,
}

/// One shard's WAL. Everything runs on the shard's thread.
pub struct Wal<D: SegmentIo> {
    io: D,
    shard_dir: PathBuf,
    wal_dir: PathBuf,
    shard_id: u16,
    writer: RefCell<WalWriter>,
    segment_bytes: u64,
    policy: SyncPolicy,
    flush_delay: Duration,
    max_batch: usize,
    /// Sync on every write: records the next group waits for (at most
    /// `max_batch`, for at most half of `last_sync`): those the last group
    /// acknowledged, whose writers may come back at once, and those queued
    /// while it was synced ([`Wal::gather`]).
    gather_want: Cell<usize>,
    /// How long the last fdatasync took.
    last_sync: Cell<Duration>,
    /// Gathers in a row that ended at their deadline short of their
    /// records, and groups to write before the next gather.
    gather_misses: Cell<u32>,
    gather_skip: Cell<u32>,
    /// The segment batches go to.
    current: RefCell<Option<D::File>>,
    /// Segment files on disk, oldest first: (sequence number, first LSN).
    segments: RefCell<VecDeque<(u64, Lsn)>>,
    /// A preallocated file (and its temporary path) ready to become the
    /// next segment.
    spare: RefCell<Option<(D::File, PathBuf)>>,
    /// Someone needs a spare (start, rollover, a refused write).
    spare_wanted: Cell<bool>,
    spares_made: Cell<u64>,
    /// Why the last attempt to reserve a spare failed (cleared by success).
    no_space: RefCell<Option<IoFailure>>,
    /// Records queued for the next batch, in LSN order.
    queue: RefCell<VecDeque<(u8, Vec<u8>)>>,
    waiters: RefCell<Vec<Waiter>>,
    next_waiter: Cell<u64>,
    flusher: Cell<Option<Waker>>,
    spare_maker: Cell<Option<Waker>>,
    /// The spare maker is creating a spare (writing its zeros).
    spare_making: Cell<bool>,
    /// A rollover waiting for the spare being made.
    spare_waiter: Cell<Option<Waker>>,
    /// Someone waits for an fdatasync covering this LSN.
    sync_through: Cell<Lsn>,
    failed: RefCell<Option<WalError>>,
    /// LSN of the last record queued / written / covered by an fdatasync.
    assigned: Cell<Lsn>,
    written: Cell<Lsn>,
    durable: Cell<Lsn>,
    pub syncs: Cell<u64>,
    pub records: Cell<u64>,
    pub bytes: Cell<u64>,
    pub batches: Cell<u64>,
    /// Groups that waited for their writers ([`Wal::gather`]), and those
    /// of them that reached their deadline first.
    pub gathers: Cell<u64>,
    pub gathers_missed: Cell<u64>,
}

impl<D: SegmentIo> Wal<D> {
    /// The WAL of `shard_dir` (segments in its `wal/`), continuing the log
    /// recovery found: a torn tail is zeroed durably first, then the
    /// newest segment is continued where its last intact batch ends (a
    /// restart adds no segment), unless it was made with another segment
    /// size or shard; then the first write opens a new one. `salt` gives
    /// each new segment a random value. Spawn [`Wal::tasks`] next.
    pub async fn open(
        io: D,
        shard_dir: &Path,
        rec: &Recovered,
        options: WalOptions,
        salt: Box<dyn FnMut() -> u64>,
    ) -> Result<Rc<Self>, WalError> {
        if let Some(tail) = &rec.torn_tail {
            zero_tail(&io, Path::new(&tail.segment), tail.offset, tail.segment_bytes).await?;
        }
        let writer = WalWriter::after_recovery(options.shard_id, options.segment_bytes as usize, rec, salt);
        let wal_dir = shard_dir.join(WAL_DIR);
        let current = match writer.current_segment() {
            Some(seq) => {
                let path = wal_dir.join(segment_name(seq));
                Some(io.open(&path).await.map_err(|e| WalError::Io(IoFailure::new(IoOp::Open, &path, e)))?)
            }
            None => None,
        };
        let last = writer.next_lsn() - 1;
        Ok(Rc::new(Wal {
            io,
            shard_dir: shard_dir.to_path_buf(),
            wal_dir,
            shard_id: options.shard_id,
            writer: RefCell::new(writer),
            segment_bytes: options.segment_bytes,
            policy: options.policy,
            flush_delay: options.flush_delay,
            max_batch: options.max_batch.max(1),
            gather_want: Cell::new(1),
            last_sync: Cell::new(Duration::ZERO),
            gather_misses: Cell::new(0),
            gather_skip: Cell::new(0),
            current: RefCell::new(current),
            segments: RefCell::new(rec.segments.iter().copied().collect()),
            spare: RefCell::new(None),
            spare_wanted: Cell::new(true),
            spares_made: Cell::new(0),
            no_space: RefCell::new(None),
            queue: RefCell::new(VecDeque::new()),
            waiters: RefCell::new(Vec::new()),
            next_waiter: Cell::new(0),
            flusher: Cell::new(None),
            spare_maker: Cell::new(None),
            spare_making: Cell::new(false),
            spare_waiter: Cell::new(None),
            sync_through: Cell::new(last),
            failed: RefCell::new(None),
            assigned: Cell::new(last),
            written: Cell::new(last),
            durable: Cell::new(last),
            syncs: Cell::new(0),
            records: Cell::new(0),
            bytes: Cell::new(0),
            batches: Cell::new(0),
            gathers: Cell::new(0),
            gathers_missed: Cell::new(0),
        }))
    }

    /// The WAL's tasks, to be spawned once on the shard's executor: the
    /// flusher, the spare-segment maker and (in a relaxed sync mode with an
    /// interval) the sync timer. They run as long as the executor.
    pub fn tasks(
        self: &Rc<Self>,
    ) -> (
        impl Future<Output = ()> + 'static,
        impl Future<Output = ()> + 'static,
        Option<impl Future<Output = ()> + 'static>,
    )
    where
        D: 'static,
    {
        let timer =
            self.policy.interval.filter(|_| !self.policy.every_write).map(|every| self.clone().sync_timer(every));
        (self.clone().flush_loop(), self.clone().spare_loop(), timer)
    }

    pub fn io(&self) -> &D {
        &self.io
    }

    /// Queue one record now (records get LSNs in the order of these calls,
    /// which must be the order the shard applied them); the returned future
    /// resolves once the record is durable by the sync policy: covered by
    /// an fdatasync, or (relaxed modes) written to the device.
    pub fn append(self: &Rc<Self>, kind: u8, body: Vec<u8>) -> Appended<D> {
        if let Some(e) = self.failed.borrow().clone() {
            return Appended { wal: self.clone(), lsn: 0, waiter: None, refused: Some(WalError::Stopped(Box::new(e))) };
        }
        let lsn = self.assigned.get() + 1;
        self.assigned.set(lsn);
        self.queue.borrow_mut().push_back((kind, body));
        self.kick();
        Appended { wal: self.clone(), lsn, waiter: None, refused: None }
    }

    /// Whether a write may be applied now: refused while no disk space
    /// could be reserved for the next segment. Call before applying a
    /// write, so a refused write changes nothing.
    pub fn admit(&self) -> Result<(), WalError> {
        if self.spare.borrow().is_some() {
            return Ok(());
        }
        let no_space = self.no_space.borrow().clone();
        match no_space {
            None => Ok(()),
            Some(e) => {
                self.want_spare();
                Err(WalError::NoSpareSegment(e))
            }
        }
    }

    /// LSN of the last record queued so far.
    pub fn last_assigned(&self) -> Lsn {
        self.assigned.get()
    }

    /// Resolves once every record up to `lsn` (queued already) is covered
    /// by an fdatasync, forcing one in the relaxed modes.
    pub fn wait_durable(&self, lsn: Lsn) -> impl Future<Output = Result<(), WalError>> + '_ {
        let mut waiter = None;
        poll_fn(move |cx| {
            if let Some(e) = self.failed.borrow().clone() {
                return Poll::Ready(Err(e));
            }
            if self.durable.get() >= lsn {
                return Poll::Ready(Ok(()));
            }
            if self.sync_through.get() < lsn {
                self.sync_through.set(lsn);
                self.kick();
            }
            self.register(&mut waiter, lsn, true, cx.waker());
            Poll::Pending
        })
    }

    /// Whether an I/O error has stopped this WAL.
    pub fn is_failed(&self) -> bool {
        self.failed.borrow().is_some()
    }

    /// Whether writes are being refused for lack of disk space.
    pub fn is_disk_full(&self) -> bool {
        self.spare.borrow().is_none() && self.no_space.borrow().is_some()
    }

    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Segment files on disk.
    pub fn segment_count(&self) -> u64 {
        self.segments.borrow().len() as u64
    }

    /// The newest segment's sequence number (0: none yet).
    pub fn newest_segment(&self) -> u64 {
        self.segments.borrow().back().map_or(0, |s| s.0)
    }

    /// Switch the shard to a snapshot holding the state at `lsn`, written
    /// and synced at `tmp` in the shard directory: once the log is durable
    /// up to `lsn` (a manifest never names a snapshot ahead of its log),
    /// rename it to `name`, fsync the directory, replace the manifest
    /// (write `MANIFEST.tmp`, fsync, rename, fsync the directory), and only
    /// then delete the segments the snapshot covers. Returns how many.
    pub async fn install_snapshot(&self, tmp: &Path, name: &str, lsn: Lsn) -> Result<u64, SwitchError> {
        self.wait_durable(lsn).await.map_err(SwitchError::Wal)?;
        fn io_err(op: IoOp, path: &Path) -> impl FnOnce(std::io::Error) -> SwitchError + '_ {
            move |e| SwitchError::Io(IoFailure::new(op, path, e))
        }
        let dir = &self.shard_dir;
        self.io.rename(tmp, &dir.join(name)).await.map_err(io_err(IoOp::RenameSnapshot, tmp))?;
        self.io.sync_dir(dir).await.map_err(io_err(IoOp::SyncDir, dir))?;
        let manifest = Manifest {
            shard_id: self.shard_id,
            snapshot: name.to_owned(),
            lsn,
            wal_segment_seq: self.newest_segment(),
        };
        let path = dir.join(MANIFEST);
        let next = path.with_extension("tmp");
        self.io.write_file(&next, manifest.encode().as_bytes()).await.map_err(io_err(IoOp::WriteManifest, &path))?;
        self.io.rename(&next, &path).await.map_err(io_err(IoOp::WriteManifest, &path))?;
        self.io.sync_dir(dir).await.map_err(io_err(IoOp::SyncDir, dir))?;
        self.release_through(lsn).await.map_err(SwitchError::Io)
    }

    /// Delete the segments whose records are all at or below `lsn` (every
    /// segment whose successor starts at or before `lsn + 1`; never the
    /// newest, which is being written), then fsync the directory.
    async fn release_through(&self, lsn: Lsn) -> Result<u64, IoFailure> {
        let mut removed = 0;
        loop {
            let covered = {
                let segs = self.segments.borrow();
                (segs.len() >= 2 && segs[1].1 <= lsn + 1).then(|| segs[0].0)
            };
            let Some(seq) = covered else { break };
            let path = self.wal_dir.join(segment_name(seq));
            self.io.remove(&path).await.map_err(|e| IoFailure::new(IoOp::Remove, &path, e))?;
            self.segments.borrow_mut().pop_front();
            removed += 1;
        }
        if removed > 0 {
            let dir = &self.wal_dir;
            self.io.sync_dir(dir).await.map_err(|e| IoFailure::new(IoOp::SyncDir, dir, e))?;
        }
        Ok(removed)
    }

    /// LSNs up to this are acknowledged to their writers.
    fn acked(&self) -> Lsn {
        if self.policy.every_write {
            self.durable.get()
        } else {
            self.written.get()
        }
    }

    fn kick(&self) {
        if let Some(w) = self.flusher.take() {
            w.wake();
        }
    }

    fn want_spare(&self) {
        self.spare_wanted.set(true);
        if let Some(w) = self.spare_maker.take() {
            w.wake();
        }
    }

    /// Record `waker` to be woken once `lsn` is acknowledged (or durable).
    fn register(&self, slot: &mut Option<u64>, lsn: Lsn, durable: bool, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        if let Some(w) = slot.and_then(|id| waiters.iter_mut().find(|w| w.id == id)) {
            if !w.waker.will_wake(waker) {
                w.waker = waker.clone();
            }
            return;
        }
        let id = self.next_waiter.get();
        self.next_waiter.set(id + 1);
        waiters.push(Waiter { id, lsn, durable, waker: waker.clone() });
        *slot = Some(id);
    }

    /// Wake the waiters whose record is now acknowledged (or durable), or
    /// all of them once the WAL failed.
    fn wake_waiters(&self) {
        let failed = self.failed.borrow().is_some();
        let (acked, durable) = (self.acked(), self.durable.get());
        self.waiters.borrow_mut().retain(|w| {
            let done = failed || w.lsn <= if w.durable { durable } else { acked };
            if done {
                w.waker.wake_by_ref();
            }
            !done
        });
    }
}

/// Zero a torn tail durably: `path` from `offset` to `segment_bytes`.
async fn zero_tail<D: SegmentIo>(io: &D, path: &Path, offset: u64, segment_bytes: u64) -> Result<(), WalError> {
    let fail = |e| WalError::Io(IoFailure::new(IoOp::ZeroTail, path, e));
    let file = io.open(path).await.map_err(fail)?;
    let zeros = vec![0u8; ZERO_CHUNK_BYTES.min(segment_bytes.saturating_sub(offset) as usize)];
    let mut at = offset;
    while at < segment_bytes {
        let n = zeros.len().min((segment_bytes - at) as usize);
        let written = io.write_at(&file, at, &zeros[..n]).await.map_err(fail)?;
        if written != n {
            return Err(WalError::ShortWrite { written, bytes: n });
        }
        at += n as u64;
    }
    io.fdatasync(&file).await.map_err(fail)
}

/// The future of [`Wal::append`]: the record's LSN once it is acknowledged.
pub struct Appended<D: SegmentIo> {
    wal: Rc<Wal<D>>,
    lsn: Lsn,
    waiter: Option<u64>,
    refused: Option<WalError>,
}

impl<D: SegmentIo> Future for Appended<D> {
    type Output = Result<Lsn, WalError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(e) = this.refused.take() {
            return Poll::Ready(Err(e));
        }
        let wal = &this.wal;
        if this.lsn <= wal.acked() {
            return Poll::Ready(Ok(this.lsn));
        }
        if let Some(e) = wal.failed.borrow().clone() {
            return Poll::Ready(Err(e));
        }
        wal.register(&mut this.waiter, this.lsn, false, cx.waker());
        Poll::Pending
    }
}
