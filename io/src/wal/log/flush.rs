//! The WAL's writing tasks: the flusher (group commit: a batch of queued
//! records, synced as the policy says, rolled over onto the spare segment
//! when it does not fit), the spare-segment maker and the relaxed modes'
//! sync timer. [`Wal::tasks`] hands them to the owner to spawn.

use super::{Wal, WalError, SPACE_RETRY, SPARE_PREFIX};
use crate::wal::disk::{IoFailure, IoOp, SegmentIo};
use crate::wal::format::{segment_name, Lsn, BATCH_HEADER_BYTES, BLOCK_BYTES, RECORD_HEADER_BYTES};
use crate::wal::writer::{Step, WriteError};
use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::path::PathBuf;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// Longest a group waits for its writers ([`Wal::gather`])...
const GATHER_MAX: Duration = Duration::from_millis(1);
/// ...and most groups written without waiting after gathers that ended
/// at their deadline.
const GATHER_SKIP_MAX: u32 = 1023;

impl<D: SegmentIo> Wal<D> {
    /// Records to write or an fdatasync to make (never once failed).
    fn has_work(&self) -> bool {
        self.failed.borrow().is_none()
            && (!self.queue.borrow().is_empty()
                || (self.sync_through.get() > self.durable.get() && self.written.get() > self.durable.get()))
    }

    /// Wait until `ready`, keeping the task's waker in `slot` meanwhile.
    fn wait_until<'a>(
        &'a self,
        slot: &'a Cell<Option<Waker>>,
        ready: impl Fn(&Self) -> bool + 'a,
    ) -> impl Future<Output = ()> + 'a {
        poll_fn(move |cx| {
            if ready(self) {
                return Poll::Ready(());
            }
            slot.set(Some(cx.waker().clone()));
            Poll::Pending
        })
    }

    pub(super) async fn flush_loop(self: Rc<Self>) {
        loop {
            self.wait_until(&self.flusher, Self::has_work).await;
            if !self.flush_delay.is_zero() && !self.queue.borrow().is_empty() {
                self.io.sleep(self.flush_delay).await;
            } else {
                self.gather().await;
            }
            let result =
                if self.queue.borrow().is_empty() { self.sync_current().await } else { self.flush_group().await };
            if let Err(e) = result {
                *self.failed.borrow_mut() = Some(e);
            }
            if self.failed.borrow().is_some() {
                // Nothing queued is written after a failure: its batch
                // would follow one the kernel may have dropped.
                self.queue.borrow_mut().clear();
            }
            if self.spare.borrow().is_none() {
                self.want_spare();
            }
            self.wake_waiters();
        }
    }

    /// Sync on every write: before a group is written, wait (at most half
    /// as long as the last fdatasync took, and [`GATHER_MAX`]) until as many
    /// records are queued as the last group acknowledged plus those queued
    /// while it was synced. Without it, writers that each wait for their
    /// acknowledgement settle into two groups that take turns: those one
    /// fdatasync acknowledged come back while the next one runs, so each
    /// write waits for two fdatasyncs, and each covers half the writers.
    /// Writers that do not come back at once (requests arriving at their
    /// own pace) would make every group wait out its deadline: after a
    /// gather ends at its deadline short of its records, the next 1, 3,
    /// 7, ... (at most [`GATHER_SKIP_MAX`]) groups are written at once.
    async fn gather(&self) {
        let want = self.gather_want.get().min(self.max_batch);
        let queued = || self.queue.borrow().len();
        if !self.policy.every_write || queued() == 0 || queued() >= want {
            return;
        }
        // An fdatasync that took no time leaves nobody waiting for the
        // next one: no wait, and no miss.
        let wait = (self.last_sync.get() / 2).min(GATHER_MAX);
        if wait.is_zero() {
            return;
        }
        if self.gather_skip.get() > 0 {
            self.gather_skip.set(self.gather_skip.get() - 1);
            return;
        }
        // Only the flusher (this task) stops the log, so a failure cannot
        // arrive during the wait.
        let mut deadline = std::pin::pin!(self.io.sleep(wait));
        let gathered = poll_fn(|cx| {
            if queued() >= want {
                return Poll::Ready(true);
            }
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            self.flusher.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        // The slot is empty while the flusher writes (a deadline left it set).
        self.flusher.take();
        self.gathers.set(self.gathers.get() + 1);
        self.gathers_missed.set(self.gathers_missed.get() + !gathered as u64);
        if gathered {
            self.gather_misses.set(0);
        } else {
            let misses = (self.gather_misses.get() + 1).min(GATHER_SKIP_MAX.ilog2() + 1);
            self.gather_misses.set(misses);
            self.gather_skip.set(((1u32 << misses) - 1).min(GATHER_SKIP_MAX));
        }
    }

    /// Take the next group off the queue (at most `max_batch` records, and
    /// no more than one segment holds) and write it as one batch, synced
    /// as the policy says.
    async fn flush_group(&self) -> Result<(), WalError> {
        let group = self.take_group();
        let records: Vec<(u8, &[u8])> = group.iter().map(|(k, b)| (*k, b.as_slice())).collect();
        let first = self.writer.borrow().next_lsn();
        let steps = self.writer.borrow_mut().append(&records).map_err(|e| match e {
            WriteError::BatchTooLarge { bytes, segment_bytes } => WalError::TooLarge { bytes, segment_bytes },
            WriteError::NoRecords => unreachable!("a group holds at least one record"),
        })?;
        for step in steps {
            match step {
                Step::OpenSegment { segment_seq, header, .. } => self.open_segment(segment_seq, first, &header).await?,
                Step::WriteBatch { bytes, offset, last_lsn, .. } => {
                    let file = self.current.borrow().clone().expect("segment opened first");
                    self.write_all_at(&file, offset, &bytes).await?;
                    self.written.set(last_lsn);
                    self.bytes.set(self.bytes.get() + bytes.len() as u64);
                    self.batches.set(self.batches.get() + 1);
                    let unsynced = self.written.get() - self.durable.get();
                    let p = self.policy;
                    if p.every_write
                        || (p.every_n > 0 && unsynced >= p.every_n)
                        || self.sync_through.get() > self.durable.get()
                    {
                        self.sync_current().await?;
                    }
                }
            }
        }
        self.records.set(self.records.get() + group.len() as u64);
        self.gather_want.set(group.len() + self.queue.borrow().len());
        Ok(())
    }

    fn take_group(&self) -> Vec<(u8, Vec<u8>)> {
        let mut queue = self.queue.borrow_mut();
        let room = self.segment_bytes as usize - BLOCK_BYTES;
        let mut raw = BATCH_HEADER_BYTES;
        let mut n = 0;
        for (_, body) in queue.iter().take(self.max_batch) {
            raw += RECORD_HEADER_BYTES + body.len();
            if n > 0 && raw.div_ceil(BLOCK_BYTES) * BLOCK_BYTES > room {
                break;
            }
            n += 1;
        }
        queue.drain(..n).collect()
    }

    async fn sync_current(&self) -> Result<(), WalError> {
        let upto = self.written.get();
        let file = self.current.borrow().clone();
        if let Some(file) = file {
            let t0 = self.io.now();
            self.io
                .fdatasync(&file)
                .await
                .map_err(|e| WalError::Io(IoFailure::new(IoOp::Fdatasync, &self.wal_dir, e)))?;
            self.last_sync.set(self.io.now().saturating_sub(t0));
            self.syncs.set(self.syncs.get() + 1);
        }
        self.durable.set(upto);
        Ok(())
    }

    /// Turn the spare file into segment `seq` (first LSN `first_lsn`):
    /// header written and synced under the temporary name, then renamed
    /// and the directory synced, so a crash leaves either no segment or one
    /// with a valid header.
    async fn open_segment(&self, seq: u64, first_lsn: Lsn, header: &[u8]) -> Result<(), WalError> {
        // Whatever the old segment holds must be durable before later
        // segments exist (recovery treats damage before them as corruption).
        if self.written.get() > self.durable.get() {
            self.sync_current().await?;
        }
        if self.spare.borrow().is_none() && self.spare_making.get() {
            // The maker is writing a spare's zeros (it began when the
            // current segment did, or at start-up): a segment without them
            // would pay more per sync for all its life.
            self.wait_until(&self.spare_waiter, |w| !w.spare_making.get()).await;
        }
        let spare = self.spare.borrow_mut().take();
        let (file, tmp) = match spare {
            Some(s) => s,
            // The spare was not ready (or the disk was full a moment ago).
            // Reserved only: writing 64 MiB of zeros here would hold the
            // batch up; its syncs cost more until the next segment.
            None => self.create_spare(false).await.map_err(WalError::from_io)?,
        };
        self.write_all_at(&file, 0, header).await?;
        let path = self.wal_dir.join(segment_name(seq));
        self.io.fdatasync(&file).await.map_err(|e| WalError::Io(IoFailure::new(IoOp::Fdatasync, &tmp, e)))?;
        self.syncs.set(self.syncs.get() + 1);
        self.io.rename(&tmp, &path).await.map_err(|e| WalError::Io(IoFailure::new(IoOp::RenameSegment, &path, e)))?;
        let dir = &self.wal_dir;
        self.io.sync_dir(dir).await.map_err(|e| WalError::Io(IoFailure::new(IoOp::SyncDir, dir, e)))?;
        *self.current.borrow_mut() = Some(file);
        self.segments.borrow_mut().push_back((seq, first_lsn));
        self.want_spare();
        Ok(())
    }

    async fn write_all_at(&self, file: &D::File, offset: u64, bytes: &[u8]) -> Result<(), WalError> {
        let written = self
            .io
            .write_at(file, offset, bytes)
            .await
            .map_err(|e| WalError::from_io(IoFailure::new(IoOp::Write, &self.wal_dir, e)))?;
        if written != bytes.len() {
            return Err(WalError::ShortWrite { written, bytes: bytes.len() });
        }
        Ok(())
    }

    /// Create and preallocate a spare segment file (`zeroed`: with its
    /// zeros written out, see [`SegmentIo::zero_fill`]).
    async fn create_spare(&self, zeroed: bool) -> Result<(D::File, PathBuf), IoFailure> {
        self.spares_made.set(self.spares_made.get() + 1);
        let path = self.wal_dir.join(format!("{SPARE_PREFIX}{}.log.tmp", self.spares_made.get()));
        let file = self.io.create(&path).await.map_err(|e| IoFailure::new(IoOp::Create, &path, e))?;
        let mut made = self.io.preallocate(&file, self.segment_bytes).await;
        if made.is_ok() && zeroed {
            made = self.io.zero_fill(&file, self.segment_bytes).await;
        }
        if let Err(e) = made {
            drop(file);
            let _ = self.io.remove(&path).await;
            return Err(IoFailure::new(IoOp::Preallocate, &path, e));
        }
        Ok((file, path))
    }

    /// Keep a spare segment ready; after a failure, try again only when
    /// asked (a refused write, a rollover) and at most every `SPACE_RETRY`.
    pub(super) async fn spare_loop(self: Rc<Self>) {
        loop {
            self.wait_until(&self.spare_maker, |w| w.spare_wanted.get() && w.spare.borrow().is_none()).await;
            self.spare_wanted.set(false);
            self.spare_making.set(true);
            let made = self.create_spare(true).await;
            self.spare_making.set(false);
            if let Some(w) = self.spare_waiter.take() {
                w.wake();
            }
            match made {
                Ok(spare) => {
                    *self.spare.borrow_mut() = Some(spare);
                    *self.no_space.borrow_mut() = None;
                }
                Err(e) => {
                    *self.no_space.borrow_mut() = Some(e);
                    self.io.sleep(SPACE_RETRY).await;
                }
            }
        }
    }

    /// The relaxed modes' interval: sync whatever is unsynced.
    pub(super) async fn sync_timer(self: Rc<Self>, every: Duration) {
        loop {
            self.io.sleep(every).await;
            if self.written.get() > self.durable.get() && self.sync_through.get() < self.written.get() {
                self.sync_through.set(self.written.get());
                self.kick();
            }
        }
    }
}
