//! The per-shard write-ahead log on glommio DMA files (O_DIRECT): executes
//! the I/O steps that `aionbd_io::wal::WalWriter` plans, with group commit:
//! appends that arrive while a flush is in flight share the next one
//! (one write + one fdatasync for all of them).
//!
//! The router appends each write's record right after applying it in
//! memory and acknowledges only once the record is durable (docs/storage.md).

use aionbd_io::wal::{recover, Corruption, Lsn, Recovered, SegmentBytes, Step, WalWriter, WriteError};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::io::{DmaFile, OpenOptions};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

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

pub fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016x}.log")
}

/// Read every segment of a WAL directory (start-up only).
pub fn read_segments(dir: &Path) -> std::io::Result<Vec<SegmentBytes>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("wal-") && name.ends_with(".log") {
            out.push(SegmentBytes { bytes: std::fs::read(entry.path())?, name: entry.path().display().to_string() });
        }
    }
    Ok(out)
}

/// Recover a WAL directory: the records after `first_lsn`, with a torn
/// tail zeroed durably so the log can continue in a new segment.
pub fn recover_dir(dir: &Path, first_lsn: Lsn) -> Result<Recovered, String> {
    // Segments a crash interrupted before their header was durable.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with(".log.tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let segments = read_segments(dir).map_err(|e| format!("cannot read WAL directory {}: {e}", dir.display()))?;
    let rec = recover(segments, first_lsn).map_err(|c: Corruption| c.to_string())?;
    if let Some((path, offset)) = &rec.torn_tail {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| format!("{path}: {e}"))?;
        let len = f.metadata().map_err(|e| format!("{path}: {e}"))?.len();
        f.seek(SeekFrom::Start(*offset)).map_err(|e| format!("{path}: {e}"))?;
        f.write_all(&vec![0u8; (len - offset) as usize]).map_err(|e| format!("{path}: {e}"))?;
        f.sync_data().map_err(|e| format!("{path}: {e}"))?;
        eprintln!("aionbd: WAL {path}: truncated a torn tail at offset {offset} (an unacknowledged batch)");
    }
    Ok(rec)
}

type Waiter = LocalSender<Result<Lsn, WalError>>;

/// One shard's WAL. All methods run on the shard's executor.
pub struct Wal {
    dir: PathBuf,
    writer: RefCell<WalWriter>,
    files: RefCell<HashMap<u64, Rc<DmaFile>>>,
    queue: RefCell<Vec<(u8, Vec<u8>, Waiter)>>,
    flushing: Cell<bool>,
    failed: RefCell<Option<WalError>>,
    /// Most records one group commit takes.
    max_batch: usize,
    pub syncs: Cell<u64>,
    pub records: Cell<u64>,
}

impl Wal {
    pub fn new(dir: PathBuf, writer: WalWriter, max_batch: usize) -> Rc<Wal> {
        Rc::new(Wal {
            dir,
            writer: RefCell::new(writer),
            files: RefCell::new(HashMap::new()),
            queue: RefCell::new(Vec::new()),
            flushing: Cell::new(false),
            failed: RefCell::new(None),
            max_batch: max_batch.max(1),
            syncs: Cell::new(0),
            records: Cell::new(0),
        })
    }

    /// Queue one record now (records get LSNs in the order of these calls,
    /// which must be the order the shard applied them); the returned future
    /// resolves once an fdatasync covers the record.
    pub fn append(
        self: &Rc<Self>,
        kind: u8,
        body: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Lsn, WalError>> {
        let (tx, rx) = local_channel::new_bounded(1);
        if let Some(e) = self.failed.borrow().clone() {
            let _ = tx.try_send(Err(WalError::Failed(format!("the WAL stopped after an earlier error: {e}"))));
        } else {
            self.queue.borrow_mut().push((kind, body, tx));
            if !self.flushing.get() {
                self.flushing.set(true);
                let wal = self.clone();
                glommio::spawn_local(async move { wal.flush_loop().await }).detach();
            }
        }
        async move { rx.recv().await.unwrap_or_else(|| Err(WalError::Failed("WAL flusher stopped".into()))) }
    }

    /// Whether an I/O error has stopped this WAL.
    pub fn is_failed(&self) -> bool {
        self.failed.borrow().is_some()
    }

    async fn flush_loop(self: Rc<Self>) {
        loop {
            let group: Vec<(u8, Vec<u8>, Waiter)> = {
                let mut q = self.queue.borrow_mut();
                let n = q.len().min(self.max_batch);
                q.drain(..n).collect()
            };
            if group.is_empty() {
                self.flushing.set(false);
                return;
            }
            let result = self.flush(&group).await;
            if let Err(e) = &result {
                *self.failed.borrow_mut() = Some(e.clone());
            }
            for (i, (_, _, tx)) in group.into_iter().enumerate() {
                let _ = tx.try_send(result.clone().map(|first| first + i as u64));
            }
        }
    }

    /// Write one group; returns the LSN of its first record.
    async fn flush(&self, group: &[(u8, Vec<u8>, Waiter)]) -> Result<Lsn, WalError> {
        let records: Vec<(u8, &[u8])> = group.iter().map(|(k, b, _)| (*k, b.as_slice())).collect();
        let first = self.writer.borrow().next_lsn();
        let steps = self.writer.borrow_mut().append(&records).map_err(|e| match e {
            WriteError::BatchTooLarge { .. } => WalError::TooLarge(e.to_string()),
            WriteError::NoRecords => WalError::Io(e.to_string()),
        })?;
        for step in steps {
            match step {
                Step::OpenSegment { segment_seq, header, segment_bytes } => {
                    // Build the segment under a temporary name and rename it
                    // only once its header is durable: a crash mid-way leaves
                    // a *.tmp file (removed at recovery), never a segment
                    // without a valid header.
                    let path = self.dir.join(segment_name(segment_seq));
                    let tmp = self.dir.join(format!("{}.tmp", segment_name(segment_seq)));
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .dma_open(&tmp)
                        .await
                        .map_err(|e| io_err(&format!("create {}", tmp.display()), &e, is_enospc(&e)))?;
                    file.pre_allocate(segment_bytes, false)
                        .await
                        .map_err(|e| io_err(&format!("preallocate {}", tmp.display()), &e, is_enospc(&e)))?;
                    let file = Rc::new(file);
                    self.write_synced(&file, 0, &header).await?;
                    file.rename(&path)
                        .await
                        .map_err(|e| io_err(&format!("rename to {}", path.display()), &e, false))?;
                    // The new name must be durable too. Once per segment, so a
                    // plain blocking fsync of the directory is fine here.
                    std::fs::File::open(&self.dir)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| io_err(&format!("sync directory {}", self.dir.display()), &e, false))?;
                    self.files.borrow_mut().insert(segment_seq, file);
                }
                Step::WriteBatch { segment_seq, offset, bytes, .. } => {
                    let file = self.files.borrow().get(&segment_seq).cloned().expect("segment opened first");
                    self.write_synced(&file, offset, &bytes).await?;
                }
            }
        }
        self.records.set(self.records.get() + group.len() as u64);
        Ok(first)
    }

    async fn write_synced(&self, file: &DmaFile, offset: u64, bytes: &[u8]) -> Result<(), WalError> {
        let mut buf = file.alloc_dma_buffer(bytes.len());
        buf.as_bytes_mut().copy_from_slice(bytes);
        let written = file.write_at(buf, offset).await.map_err(|e| io_err("WAL write", &e, is_enospc(&e)))?;
        if written != bytes.len() {
            return Err(WalError::Io(format!("short WAL write: {written} of {} bytes", bytes.len())));
        }
        file.fdatasync().await.map_err(|e| io_err("WAL fdatasync", &e, is_enospc(&e)))?;
        self.syncs.set(self.syncs.get() + 1);
        Ok(())
    }
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
                let wal = Wal::new(d, writer, 64);
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
        let rec = recover_dir(&dir, 1).unwrap();
        assert_eq!(rec.records.len(), 640);
        assert!(rec.next_segment_seq > 2, "segments rolled over");
        let bodies: std::collections::HashSet<Vec<u8>> = rec.records.into_iter().map(|r| r.body).collect();
        assert!(bodies.contains(b"task 31 record 19".as_slice()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
