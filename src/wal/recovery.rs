//! Reading a WAL directory at start-up: list and read the segments, run
//! `aionbd_io::wal::recover` over them, and (only when the operator asks)
//! cut a log damaged before its tail. A torn tail is zeroed when the WAL
//! is opened (`aionbd_io::wal::Wal::open`).

use aionbd_io::wal::{
    parse_segment_name, recover, scan_segment, Corruption, Lsn, Record, Recovered, Recovery, SegmentBytes, SegmentScan,
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
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len() as usize;
    // Zeroed by the allocator (a fresh mapping at this size): no page is
    // touched until a chunk with data is copied in.
    let mut buf = vec![0u8; len];
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut at = 0;
    loop {
        let n = match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.len() < at + n {
            buf.resize(at + n, 0);
        }
        if !all_zero(&chunk[..n]) {
            buf[at..at + n].copy_from_slice(&chunk[..n]);
        }
        at += n;
    }
    buf.truncate(at);
    Ok(buf)
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

/// One segment read and scanned by the helper thread of [`SegmentReader`].
type Scanned = (String, std::io::Result<(u64, Result<SegmentScan, aionbd_io::wal::FormatError>)>);

/// A WAL directory read and scanned segment by segment on a helper thread,
/// a segment ahead of the shard that applies them: reading, scanning and
/// replaying overlap, and at most `AHEAD` scanned segments wait in memory.
/// Started before the snapshot loads.
pub struct SegmentReader {
    dir: PathBuf,
    segments: usize,
    rx: std::sync::mpsc::Receiver<Scanned>,
}

/// Scanned segments the helper thread keeps ready (each holds a copy of
/// its records: with 4, a replay of a long log held up to 6 segments'
/// worth per shard, while one ahead keeps the thread reading during the
/// apply).
const AHEAD: usize = 1;

impl SegmentReader {
    pub fn start(dir: &Path) -> SegmentReader {
        remove_unfinished(dir);
        let names = read_segment_names(dir);
        let (tx, rx) = std::sync::mpsc::sync_channel(AHEAD);
        let segments = names.len();
        let spawned = std::thread::Builder::new().name("aionbd-wal-read".into()).spawn(move || {
            for path in names {
                // A buffer per segment, freed once scanned (the records are
                // copied out): only its pages with data are ever mapped.
                let scanned = read_segment(&path).map(|buf| (buf.len() as u64, scan_segment(&buf)));
                if tx.send((path.display().to_string(), scanned)).is_err() {
                    return;
                }
            }
        });
        if let Err(e) = spawned {
            // Without the thread the receiver reports "stopped" at once.
            tracing::error!("cannot start the WAL reader thread: {e}");
        }
        SegmentReader { dir: dir.to_path_buf(), segments, rx }
    }

    /// Recover the log from `first_lsn` as [`recover_dir`] does (damage
    /// refuses; a torn tail is left for `Wal::open` to zero), calling
    /// `apply` on each record as soon as its segment is scanned, then
    /// awaiting `pace`. Returns how
    /// the log ends (`records` empty) and the bytes read. On an error the
    /// records applied so far must be thrown away (start-up stops).
    pub async fn replay<E>(
        self,
        first_lsn: Lsn,
        mut apply: impl FnMut(&Record) -> Result<(), E>,
        mut pace: impl AsyncFnMut(),
    ) -> Result<(Recovered, u64), ReplayError<E>> {
        let mut rec = Recovery::new(first_lsn, self.segments);
        let mut read = 0u64;
        let mut applied = 0usize;
        for _ in 0..self.segments {
            let (name, scanned) = loop {
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
            let (bytes, scan) = match scanned {
                Ok(s) => s,
                Err(source) => return Err(ReplayError::Log(RecoveryError::ReadSegment { segment: name, source })),
            };
            read += bytes;
            let pushed = match scan {
                Ok(scan) => rec.push(name, scan),
                Err(e) => Err(Corruption {
                    segment: name,
                    offset: 0,
                    reason: format!("segment header: {e}"),
                    last_good_lsn: None,
                }),
            };
            for r in pushed.map_err(|c| ReplayError::Log(RecoveryError::Corrupt(c)))? {
                apply(&r).map_err(ReplayError::Apply)?;
                pace().await;
                applied += 1;
                if applied.is_multiple_of(64) {
                    futures_lite::future::yield_now().await;
                }
            }
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
}
