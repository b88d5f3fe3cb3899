//! Reading a WAL directory at start-up: list the segments and scan them on
//! a helper thread a window at a time, handing their records to the
//! replay as met ([`SegmentReader`]); or read them whole, run
//! `aionbd_io::wal::recover` over them, and (only when the operator asks)
//! cut a log damaged before its tail. A torn tail is zeroed when the WAL
//! is opened (`aionbd_io::wal::Wal::open`).

use aionbd_io::wal::{
    header_corruption, parse_segment_name, recover, scan_segment_into, Corruption, FormatError, Lsn, Record, Recovered,
    Recovery, SegmentBytes, SegmentScan, SegmentSource,
};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a WAL directory could not be recovered.
#[derive(Debug)]
pub enum RecoveryError {
    ReadDir {
        dir: PathBuf,
        source: io::Error,
    },
    ReadSegment {
        segment: String,
        source: io::Error,
    },
    /// The helper thread reading the segments ended early.
    ReaderStopped {
        dir: PathBuf,
    },
    /// Damage before the tail: start-up refuses (unless the operator asks
    /// for the log to be cut).
    Corrupt(Corruption),
    /// `--wal-truncate-corrupt` could not cut the log at the damage.
    CutFailed {
        corruption: Corruption,
        source: CutError,
    },
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            RecoveryError::ReadDir { dir, source } => {
                write!(f, "cannot read WAL directory {}: {source}", dir.display())
            }
            RecoveryError::ReadSegment { segment, source } => write!(f, "cannot read WAL segment {segment}: {source}"),
            RecoveryError::ReaderStopped { dir } => write!(f, "the WAL reader of {} stopped", dir.display()),
            RecoveryError::Corrupt(c) => write!(
                f,
                "{c}. The server refuses to start rather than lose acknowledged writes silently; \
                 to start anyway and drop every record from the damage on, pass --wal-truncate-corrupt"
            ),
            RecoveryError::CutFailed { corruption, source } => {
                write!(f, "{corruption}; cutting the log failed: {source}")
            }
        }
    }
}

impl std::error::Error for RecoveryError {}

/// Why cutting a damaged log failed.
#[derive(Debug)]
pub enum CutError {
    UnexpectedName(String),
    Read(io::Error),
    Remove { segment: String, source: io::Error },
    Zero { segment: PathBuf, source: io::Error },
    SyncDir { dir: PathBuf, source: io::Error },
}

impl fmt::Display for CutError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            CutError::UnexpectedName(name) => write!(f, "unexpected segment name {name}"),
            CutError::Read(e) => write!(f, "{e}"),
            CutError::Remove { segment, source } => write!(f, "remove {segment}: {source}"),
            CutError::Zero { segment, source } => write!(f, "{}: {source}", segment.display()),
            CutError::SyncDir { dir, source } => write!(f, "sync {}: {source}", dir.display()),
        }
    }
}

impl std::error::Error for CutError {}

/// Why a replay stopped: the log, or the caller's `apply`.
#[derive(Debug)]
pub enum ReplayError<E> {
    Log(RecoveryError),
    Apply(E),
}

impl<E: fmt::Display> fmt::Display for ReplayError<E> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ReplayError::Log(e) => write!(f, "{e}"),
            ReplayError::Apply(e) => write!(f, "{e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for ReplayError<E> {}

/// Paths of the segment files in a WAL directory.
pub fn read_segment_names(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("wal-") && n.ends_with(".log")
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Read every segment of a WAL directory (start-up only).
pub fn read_segments(dir: &Path) -> std::io::Result<Vec<SegmentBytes>> {
    read_segment_names(dir)
        .into_iter()
        .map(|p| Ok(SegmentBytes { bytes: read_segment(&p)?, name: p.display().to_string() }))
        .collect()
}

/// Bytes read at a time by [`read_segment`].
const READ_CHUNK: usize = 1 << 20;

/// A segment file's bytes, as `std::fs::read` returns them, in a buffer
/// whose all-zero chunks are never written: a segment is created at its
/// full size (64 MiB by default) and filled from the start, so most of the
/// newest one is zeros, and those pages of a fresh zeroed allocation stay
/// unmapped (a shard's replay held the whole file in memory).
pub fn read_segment(path: &Path) -> io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len() as usize;
    read_sparse(&f, 0, len)
}

/// `len` bytes of `f` with those before `from` left zero, read as
/// [`read_segment`] reads (chunks of zeros never written).
fn read_sparse(f: &std::fs::File, from: usize, len: usize) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    // Zeroed by the allocator (a fresh mapping at this size): no page is
    // touched until a chunk with data is copied in.
    let mut buf = vec![0u8; len];
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut at = from;
    while at < len {
        let n = match f.read_at(&mut chunk[..READ_CHUNK.min(len - at)], at as u64) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if !all_zero(&chunk[..n]) {
            buf[at..at + n].copy_from_slice(&chunk[..n]);
        }
        at += n;
    }
    buf.truncate(at.max(from));
    Ok(buf)
}

/// A segment file as a scan reads it ([`SegmentSource`]): a window at a
/// time, moving forward with the scan, so only the window (`window_bytes`,
/// or one batch if larger) is in memory, not the segment; the look past
/// the end of the log reads the rest as [`read_segment`] does (its zeros
/// never mapped). A failed read is kept in `failed` and gives the scan
/// zeros (it ends there; the caller reports the error).
struct SegmentFile {
    file: std::fs::File,
    len: usize,
    window_bytes: usize,
    /// The bytes at `at..at + window.len()`.
    window: Vec<u8>,
    at: usize,
    /// The rest of the file from `tail_from`, in a buffer as long as the
    /// file (once the scan looked past the end of the log).
    tail: Option<(usize, Vec<u8>)>,
    failed: Option<io::Error>,
}

impl SegmentFile {
    fn open(path: &Path, window_bytes: usize) -> io::Result<SegmentFile> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len() as usize;
        Ok(SegmentFile { file, len, window_bytes, window: Vec::new(), at: 0, tail: None, failed: None })
    }
}

impl SegmentSource for SegmentFile {
    fn segment_len(&self) -> usize {
        self.len
    }

    fn bytes(&mut self, at: usize, n: usize) -> &[u8] {
        if at < self.at || at + n > self.at + self.window.len() {
            use std::os::unix::fs::FileExt;
            let want = n.max(self.window_bytes).min(self.len - at);
            self.window.clear();
            self.window.resize(want, 0);
            if let Err(e) = self.file.read_exact_at(&mut self.window, at as u64) {
                self.window.fill(0);
                self.failed.get_or_insert(e);
            }
            self.at = at;
        }
        &self.window[at - self.at..at - self.at + n]
    }

    fn tail(&mut self, from: usize) -> &[u8] {
        if self.tail.as_ref().is_none_or(|(f, _)| *f > from) {
            self.window = Vec::new();
            let rest = read_sparse(&self.file, from, self.len).unwrap_or_else(|e| {
                self.failed.get_or_insert(e);
                vec![0; self.len]
            });
            self.tail = Some((from, rest));
        }
        self.tail.as_ref().map_or(&[], |(_, t)| t)
    }
}

fn all_zero(bytes: &[u8]) -> bool {
    let words = bytes.chunks_exact(8);
    let tail = words.remainder().iter().fold(0u8, |a, &b| a | b);
    words.fold(0u64, |a, w| a | u64::from_ne_bytes(w.try_into().expect("8 bytes"))) == 0 && tail == 0
}

/// Recover a WAL directory: the records after `first_lsn` (a torn tail is
/// left for `Wal::open` to zero). Damage anywhere else refuses, unless
/// `truncate_corrupt`: then the log is cut at the first bad record (the
/// rest of that segment zeroed, later segments deleted) and the lost LSN
/// range is reported.
/// `preread` may hold the segments already read (start-up with
/// `--wal-truncate-corrupt` reads them first, to report their size).
pub fn recover_dir(
    dir: &Path,
    first_lsn: Lsn,
    truncate_corrupt: bool,
    mut preread: Option<Vec<SegmentBytes>>,
) -> Result<Recovered, RecoveryError> {
    remove_unfinished(dir);
    let mut cuts = 0;
    let rec = loop {
        let segments = match preread.take() {
            Some(s) => s,
            None => read_segments(dir).map_err(|source| RecoveryError::ReadDir { dir: dir.to_path_buf(), source })?,
        };
        let n_segments = segments.len();
        match recover(segments, first_lsn) {
            Ok(rec) => break rec,
            Err(c) if truncate_corrupt && cuts <= n_segments => {
                cuts += 1;
                let dropped = match cut_log(dir, &c) {
                    Ok(d) => d,
                    Err(source) => return Err(RecoveryError::CutFailed { corruption: c, source }),
                };
                let from = c.last_good_lsn.map_or(first_lsn, |l| l + 1);
                tracing::warn!(
                    "{c}; --wal-truncate-corrupt: log cut at {} offset {}; records from LSN {from} on \
                     are lost{}",
                    c.segment,
                    c.offset,
                    match dropped {
                        Some(hi) if hi > from => format!(" (later segments held LSNs up to at least {hi})"),
                        _ => String::new(),
                    }
                );
            }
            Err(c) => return Err(RecoveryError::Corrupt(c)),
        }
    };
    Ok(rec)
}

/// What the helper thread of [`SegmentReader`] sends: a segment's records
/// as its scan meets them, in pieces of about [`PIECE_BYTES`], then how
/// the segment ended.
enum Scanned {
    Records(Vec<Record>),
    End { segment: String, read: io::Result<(u64, Result<SegmentScan, FormatError>)> },
}

/// A WAL directory read and scanned segment by segment on a helper thread
/// while the shard applies the records: reading, scanning and replaying
/// overlap. A segment is read a [`WINDOW`] at a time ([`SegmentFile`]) and
/// its records travel in pieces, so what waits in memory is the window and
/// at most [`AHEAD`] pieces, not whole segments nor their records (a
/// 134 MB log replayed with no snapshot held two 64 MiB segments and their
/// records: docs/benchmarks.md, memory-light mode, "Through a restart").
/// Started once the snapshot is loaded.
pub struct SegmentReader {
    dir: PathBuf,
    segments: usize,
    first_lsn: Lsn,
    rx: std::sync::mpsc::Receiver<Scanned>,
}

/// Record bytes per piece sent to the replay (a record larger than that
/// goes alone).
const PIECE_BYTES: usize = 1 << 20;
/// Bytes of a segment file a scan reads at a time ([`SegmentFile`]).
const WINDOW: usize = 1 << 20;
/// Pieces the helper thread may send ahead of the replay.
const AHEAD: usize = 2;

impl SegmentReader {
    /// Start reading the segments of `dir`; records before `first_lsn` (a
    /// snapshot holds them) are scanned but not sent.
    pub fn start(dir: &Path, first_lsn: Lsn) -> SegmentReader {
        remove_unfinished(dir);
        let names = read_segment_names(dir);
        let (tx, rx) = std::sync::mpsc::sync_channel(AHEAD);
        let segments = names.len();
        let spawned = std::thread::Builder::new().name("aionbd-wal-read".into()).spawn(move || {
            let mut gone = false;
            for path in names {
                let read = SegmentFile::open(&path, WINDOW).and_then(|mut file| {
                    let (mut piece, mut bytes) = (Vec::new(), 0);
                    let scan = scan_segment_into(&mut file, &mut |r: Record| {
                        if r.lsn < first_lsn || gone {
                            return;
                        }
                        bytes += r.body.len();
                        piece.push(r);
                        if bytes >= PIECE_BYTES {
                            gone = tx.send(Scanned::Records(std::mem::take(&mut piece))).is_err();
                            bytes = 0;
                        }
                    });
                    if !piece.is_empty() && !gone {
                        gone = tx.send(Scanned::Records(piece)).is_err();
                    }
                    // A failed read gave the scan zeros: the error stands.
                    file.failed.take().map_or(Ok((file.len as u64, scan)), Err)
                });
                let end = Scanned::End { segment: path.display().to_string(), read };
                if gone || tx.send(end).is_err() {
                    return; // the replay stopped
                }
            }
        });
        if let Err(e) = spawned {
            // Without the thread the receiver reports "stopped" at once.
            tracing::error!("cannot start the WAL reader thread: {e}");
        }
        SegmentReader { dir: dir.to_path_buf(), segments, first_lsn, rx }
    }

    /// Recover the log from the `first_lsn` given to [`SegmentReader::start`]
    /// as [`recover_dir`] does (damage refuses; a torn tail is left for
    /// `Wal::open` to zero), calling `apply` on each record as soon as the
    /// scan has met it, then awaiting `pace`. Returns how the log ends
    /// (`records` empty) and the bytes read. On an error the records
    /// applied so far must be thrown away (start-up stops): records of a
    /// segment are applied before its scan ends, so before damage found
    /// after them.
    pub async fn replay<E>(
        self,
        mut apply: impl FnMut(&Record) -> Result<(), E>,
        mut pace: impl AsyncFnMut(),
    ) -> Result<(Recovered, u64), ReplayError<E>> {
        let mut rec = Recovery::new(self.first_lsn, self.segments);
        let (mut read, mut applied, mut ended, mut took_any) = (0u64, 0usize, 0usize, false);
        while ended < self.segments {
            let scanned = loop {
                match self.rx.try_recv() {
                    Ok(s) => break s,
                    Err(std::sync::mpsc::TryRecvError::Empty) => {
                        glommio::timer::sleep(std::time::Duration::from_micros(200)).await
                    }
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        return Err(ReplayError::Log(RecoveryError::ReaderStopped { dir: self.dir.clone() }))
                    }
                }
            };
            let (segment, scan) = match scanned {
                Scanned::Records(records) => {
                    took_any |= !records.is_empty();
                    for r in &records {
                        apply(r).map_err(ReplayError::Apply)?;
                        pace().await;
                        applied += 1;
                        if applied.is_multiple_of(64) {
                            futures_lite::future::yield_now().await;
                        }
                    }
                    continue;
                }
                Scanned::End { segment, read: Err(source) } => {
                    return Err(ReplayError::Log(RecoveryError::ReadSegment { segment, source }))
                }
                Scanned::End { segment, read: Ok((bytes, scan)) } => {
                    read += bytes;
                    (segment, scan)
                }
            };
            ended += 1;
            let pushed = match scan {
                Ok(scan) => rec.push_scanned(segment, scan, std::mem::take(&mut took_any)),
                Err(e) => Err(header_corruption(segment, &e)),
            };
            pushed.map_err(|c| ReplayError::Log(RecoveryError::Corrupt(c)))?;
        }
        Ok((rec.finish(), read))
    }
}

/// Remove segments a crash interrupted before their header was durable,
/// and spare segments (they hold nothing).
pub fn remove_unfinished(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with(".log.tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn zero_from(path: &Path, offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(&vec![0u8; len.saturating_sub(offset) as usize])?;
    f.sync_data()
}

/// Cut the log at a corruption: zero the damaged segment from the damage
/// (or delete it when its header is bad) and delete every later segment.
/// Returns the highest first-LSN among the deleted segments.
fn cut_log(dir: &Path, c: &Corruption) -> Result<Option<Lsn>, CutError> {
    let seq_of = |name: &str| parse_segment_name(Path::new(name).file_name()?.to_str()?);
    let bad = seq_of(&c.segment).ok_or_else(|| CutError::UnexpectedName(c.segment.clone()))?;
    let mut highest = None;
    for seg in read_segments(dir).map_err(CutError::Read)? {
        let Some(seq) = seq_of(&seg.name) else { continue };
        if seq > bad || (seq == bad && c.offset == 0) {
            if let Ok(h) = aionbd_io::wal::SegmentHeader::decode(&seg.bytes) {
                highest = highest.max(Some(h.first_lsn));
            }
            std::fs::remove_file(&seg.name).map_err(|source| CutError::Remove { segment: seg.name.clone(), source })?;
        }
    }
    if c.offset > 0 {
        let segment = PathBuf::from(&c.segment);
        zero_from(&segment, c.offset).map_err(|source| CutError::Zero { segment, source })?;
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| CutError::SyncDir { dir: dir.to_path_buf(), source })?;
    Ok(highest)
}

#[cfg(test)]
mod read_tests {
    use super::*;

    /// Pages of `buf` in memory (`mincore`).
    fn resident_pages(buf: &[u8]) -> usize {
        let page = 4096;
        let start = buf.as_ptr() as usize / page * page;
        let pages = (buf.as_ptr() as usize + buf.len() - start).div_ceil(page);
        let mut vec = vec![0u8; pages];
        // SAFETY: `start..start + pages * page` covers `buf`'s pages, and
        // `vec` has one byte per page.
        let rc = unsafe { libc::mincore(start as *mut libc::c_void, pages * page, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        vec.iter().filter(|&&v| v & 1 == 1).count()
    }

    /// A segment read back is the file's bytes, and of a 64 MiB file with
    /// a few MiB of data only the chunks with data are in memory.
    #[test]
    fn a_segment_reads_whole_with_its_zeros_left_unmapped() {
        let path = std::env::temp_dir().join(format!("aionbd-read-segment-{}", std::process::id()));
        let mut bytes = vec![0u8; 64 << 20];
        let mut s = 7u64;
        // Data at the start, a lone byte past a hole, data across a chunk
        // boundary; the file's length is not a multiple of the chunk.
        for b in &mut bytes[..(2 << 20) + 123] {
            *b = (aionbd_shards::math::rng::splitmix64(&mut s) >> 56) as u8;
        }
        bytes[(5 << 20) + 17] = 1;
        bytes[(9 << 20) - 100..(9 << 20) + 100].fill(0xab);
        bytes.truncate((64 << 20) - 4096 + 5);
        std::fs::write(&path, &bytes).unwrap();
        let read = read_segment(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        // Before anything reads the zeros (a read maps pages too).
        let resident = resident_pages(&read) * 4096;
        // The 1 MiB chunks with data: 0-2, 5, 8 and 9, and a page more
        // where one straddles two chunks (`std::fs::read`: all 64 MiB).
        assert!(resident <= (6 << 20) + 4 * 4096, "{} KiB of the buffer in memory", resident >> 10);
        assert!(read == bytes, "the bytes read differ from the file's");
        assert!(all_zero(&[0; 13]) && !all_zero(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
    }

    /// The reader thread's records, sent in pieces as its scans meet them,
    /// replay what recovering the whole directory at once returns: the
    /// same records from the snapshot's LSN on, and the same log end.
    #[test]
    fn a_replay_in_pieces_applies_what_whole_recovery_returns() {
        use aionbd_io::wal::{SyncPolicy, WalOptions, WAL_DIR};
        let dir = std::env::temp_dir().join(format!("aionbd-wal-pieces-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(WAL_DIR)).unwrap();
        let d = dir.clone();
        let (replayed, streamed, whole) = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let options = WalOptions {
                    shard_id: 0,
                    segment_bytes: 2 << 20,
                    policy: SyncPolicy { every_write: true, every_n: 0, interval: None },
                    max_batch: 4,
                    flush_delay: std::time::Duration::ZERO,
                };
                let wal = crate::wal::open(&d, &Recovered::empty(1), options).await.expect("open");
                // 200 KB records: about 9 per segment, so several pieces
                // (`PIECE_BYTES`) a segment.
                for i in 0..60u64 {
                    let body: Vec<u8> = (0..200_000u64).map(|j| (i * 7 + j) as u8).collect();
                    wal.append(1, body).await.expect("append");
                }
                assert!(wal.segment_count() >= 5, "segments rolled over");
                drop(wal);
                let wal_dir = d.join(WAL_DIR);
                let mut replayed = Vec::new();
                let reader = SegmentReader::start(&wal_dir, 17);
                let (streamed, _) = reader
                    .replay(
                        |r: &Record| -> Result<(), ()> {
                            replayed.push(r.clone());
                            Ok(())
                        },
                        async || {},
                    )
                    .await
                    .expect("replay");
                let whole = recover_dir(&wal_dir, 17, false, None).expect("recover");
                (replayed, streamed, whole)
            })
            .unwrap()
            .join()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(replayed.len(), 44, "LSN 17 to 60");
        assert_eq!(replayed.first().map(|r| r.lsn), Some(17));
        assert!(replayed == whole.records, "the replayed records differ from whole recovery's");
        assert_eq!(Recovered { records: Vec::new(), ..whole }, streamed);
    }

    proptest::proptest! {
        /// A segment file scanned a window at a time ([`SegmentFile`]) gives
        /// what a scan of its whole bytes gives: the same records and the
        /// same end, whatever the window, the batch sizes and the damage
        /// (past the end of the log, in a batch, or in a header).
        #[test]
        fn a_segment_scanned_a_window_at_a_time_scans_as_a_whole(
            sizes in proptest::collection::vec(1usize..20_000, 1..12),
            window in 1usize..6,
            damage in proptest::option::of((0usize..64 * 4096, 1u8..=255)),
        ) {
            use aionbd_io::wal::{scan_segment, Step, WalWriter, BLOCK_BYTES};
            let segment_bytes = 64 * BLOCK_BYTES;
            let mut w = WalWriter::new(0, segment_bytes, 1, 1, Box::new(|| 11));
            let mut bytes = Vec::new();
            for (i, &n) in sizes.iter().enumerate() {
                let body = vec![i as u8 + 1; n];
                for step in w.append(&[(1, &body[..])]).unwrap() {
                    match step {
                        Step::OpenSegment { header, segment_bytes, .. } if bytes.is_empty() => {
                            bytes = vec![0u8; segment_bytes as usize];
                            bytes[..header.len()].copy_from_slice(&header);
                        }
                        Step::OpenSegment { .. } => {} // the first segment is the one scanned
                        Step::WriteBatch { offset, bytes: b, .. } if (offset as usize) + b.len() <= bytes.len() => {
                            bytes[offset as usize..offset as usize + b.len()].copy_from_slice(&b)
                        }
                        Step::WriteBatch { .. } => {}
                    }
                }
            }
            if let Some((at, x)) = damage {
                bytes[at] ^= x;
            }
            let path = std::env::temp_dir().join(format!("aionbd-window-scan-{}", std::process::id()));
            std::fs::write(&path, &bytes).unwrap();
            let mut file = SegmentFile::open(&path, window * BLOCK_BYTES).unwrap();
            let mut records = Vec::new();
            let windowed = scan_segment_into(&mut file, &mut |r| records.push(r)).map(|mut s| {
                s.records = records;
                s
            });
            std::fs::remove_file(&path).unwrap();
            proptest::prop_assert!(file.failed.is_none());
            proptest::prop_assert_eq!(windowed, scan_segment(&bytes));
        }
    }
}
