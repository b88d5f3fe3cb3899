//! Snapshot files and the manifest that names the current one, as pure
//! functions over bytes (byte layout: docs/storage.md).
//!
//! A snapshot is a header followed by CRC32C-framed records and an end frame
//! that carries the record count: a file without its end frame, with a bad
//! CRC anywhere, or with bytes after the end is rejected as a whole. The
//! records themselves are opaque here (the server stores log records that
//! rebuild the state when replayed).
//!
//! The manifest is a short text file naming the snapshot and the LSN it
//! covers, with a CRC32C of its own lines. It is replaced atomically (write
//! a temporary file, fsync, rename, fsync the directory), so it names either
//! the old snapshot or the new one, never a mix.

use crate::wal::Lsn;
use std::fmt;
use std::io::Read;

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"AIONSNP\0";
pub const SNAPSHOT_VERSION: u16 = 1;
pub const SNAPSHOT_HEADER_BYTES: usize = 40;
/// Frame header: body length (u32) and CRC32C of kind + body (u32).
pub const FRAME_HEADER_BYTES: usize = 8;
/// The kind of the end frame (record kinds must be below it).
pub const END_KIND: u8 = 0xff;
/// Largest frame a reader accepts (a bound on what a damaged length can make
/// it allocate).
pub const MAX_FRAME_BYTES: usize = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub shard_id: u16,
    /// Every log record up to and including this LSN is in the snapshot.
    pub lsn: Lsn,
    pub created_unix_ms: u64,
}

impl SnapshotHeader {
    pub fn encode(&self) -> [u8; SNAPSHOT_HEADER_BYTES] {
        let mut b = [0u8; SNAPSHOT_HEADER_BYTES];
        b[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
        b[8..10].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&self.shard_id.to_le_bytes());
        b[16..24].copy_from_slice(&self.lsn.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_unix_ms.to_le_bytes());
        let crc = crc32c::crc32c(&b[..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, HeaderError> {
        if b.len() < SNAPSHOT_HEADER_BYTES {
            return Err(HeaderError::Short);
        }
        if b[0..8] != SNAPSHOT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        if crc32c::crc32c(&b[..36]) != u32::from_le_bytes(b[36..40].try_into().unwrap()) {
            return Err(HeaderError::Checksum);
        }
        let version = u16::from_le_bytes(b[8..10].try_into().unwrap());
        if version != SNAPSHOT_VERSION {
            return Err(HeaderError::Version(version));
        }
        Ok(SnapshotHeader {
            shard_id: u16::from_le_bytes(b[10..12].try_into().unwrap()),
            lsn: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            created_unix_ms: u64::from_le_bytes(b[24..32].try_into().unwrap()),
        })
    }
}

/// Why a snapshot header is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    Short,
    BadMagic,
    Checksum,
    /// A format version this build does not read.
    Version(u16),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            HeaderError::Short => f.write_str("file is shorter than a snapshot header"),
            HeaderError::BadMagic => f.write_str("not a snapshot file (bad magic)"),
            HeaderError::Checksum => f.write_str("snapshot header checksum mismatch"),
            HeaderError::Version(v) => {
                write!(f, "snapshot format version {v} is not supported (this build reads {SNAPSHOT_VERSION})")
            }
        }
    }
}

impl std::error::Error for HeaderError {}

fn frame_crc(kind: u8, body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[kind]), body)
}

/// Append one record frame to `out`.
pub fn encode_frame(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    assert!(kind != END_KIND, "kind 0xff is the end frame");
    push_frame(kind, body, out);
}

fn push_frame(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&((body.len() + 1) as u32).to_le_bytes());
    out.extend_from_slice(&frame_crc(kind, body).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
}

/// The end frame: how many record frames precede it, and the header's LSN.
pub fn encode_end(records: u64, lsn: Lsn, out: &mut Vec<u8>) {
    let mut body = [0u8; 16];
    body[..8].copy_from_slice(&records.to_le_bytes());
    body[8..].copy_from_slice(&lsn.to_le_bytes());
    push_frame(END_KIND, &body, out);
}

/// Where and why a snapshot file is unusable.
#[derive(Debug)]
pub struct SnapshotError {
    pub offset: u64,
    pub reason: SnapshotDamage,
}

/// What is wrong with a snapshot file at [`SnapshotError::offset`].
#[derive(Debug)]
pub enum SnapshotDamage {
    /// The file ends before its end frame.
    Incomplete,
    /// Reading the file failed.
    Io(std::io::Error),
    Header(HeaderError),
    FrameLength(usize),
    FrameChecksum,
    MalformedEnd,
    /// The end frame's count or LSN differs from what the file holds.
    EndMismatch {
        records: u64,
        lsn: Lsn,
        held_records: u64,
        header_lsn: Lsn,
    },
    BytesAfterEnd,
}

impl From<FrameError> for SnapshotDamage {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Ends => SnapshotDamage::Incomplete,
            FrameError::Io(e) => SnapshotDamage::Io(e),
            FrameError::Length(n) => SnapshotDamage::FrameLength(n),
            FrameError::Checksum => SnapshotDamage::FrameChecksum,
        }
    }
}

impl fmt::Display for SnapshotDamage {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            SnapshotDamage::Incomplete => {
                f.write_str("file ends before the snapshot's end frame (incomplete snapshot)")
            }
            SnapshotDamage::Io(e) => write!(f, "{e}"),
            SnapshotDamage::Header(e) => write!(f, "{e}"),
            SnapshotDamage::FrameLength(n) => write!(f, "impossible frame length {n}"),
            SnapshotDamage::FrameChecksum => f.write_str("frame checksum mismatch"),
            SnapshotDamage::MalformedEnd => f.write_str("malformed end frame"),
            SnapshotDamage::EndMismatch { records, lsn, held_records, header_lsn } => write!(
                f,
                "end frame says {records} records at LSN {lsn}, the file holds {held_records} at LSN {header_lsn}"
            ),
            SnapshotDamage::BytesAfterEnd => f.write_str("bytes after the end frame"),
        }
    }
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "at offset {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.reason {
            SnapshotDamage::Io(e) => Some(e),
            SnapshotDamage::Header(e) => Some(e),
            _ => None,
        }
    }
}

/// Streams the records of a snapshot, checking every frame.
pub struct SnapshotReader<R: Read> {
    src: R,
    pub header: SnapshotHeader,
    offset: u64,
    records: u64,
    done: bool,
    body: Vec<u8>,
}

impl<R: Read> SnapshotReader<R> {
    pub fn new(mut src: R) -> Result<Self, SnapshotError> {
        let mut h = [0u8; SNAPSHOT_HEADER_BYTES];
        read_exact_at(&mut src, &mut h, 0).map_err(|(offset, e)| SnapshotError { offset, reason: e.into() })?;
        let header =
            SnapshotHeader::decode(&h).map_err(|e| SnapshotError { offset: 0, reason: SnapshotDamage::Header(e) })?;
        Ok(SnapshotReader {
            src,
            header,
            offset: SNAPSHOT_HEADER_BYTES as u64,
            records: 0,
            done: false,
            body: Vec::new(),
        })
    }

    /// The next record as (kind, body); `None` after a verified end frame.
    /// The body borrows a buffer the reader reuses.
    pub fn next_record(&mut self) -> Result<Option<(u8, &[u8])>, SnapshotError> {
        if self.done {
            return Ok(None);
        }
        let at = self.offset;
        let err = |reason: SnapshotDamage| SnapshotError { offset: at, reason };
        let (fh, kind) = read_frame(&mut self.src, at, &mut self.body)
            .map_err(|(offset, e)| SnapshotError { offset, reason: e.into() })?;
        self.offset += (fh.len() + self.body.len()) as u64;
        let len = self.body.len() + 1;
        if kind != END_KIND {
            self.records += 1;
            return Ok(Some((kind, &self.body)));
        }
        let body = &self.body;
        if len != 17 {
            return Err(err(SnapshotDamage::MalformedEnd));
        }
        let records = u64::from_le_bytes(body[0..8].try_into().unwrap());
        let lsn = u64::from_le_bytes(body[8..16].try_into().unwrap());
        if records != self.records || lsn != self.header.lsn {
            return Err(err(SnapshotDamage::EndMismatch {
                records,
                lsn,
                held_records: self.records,
                header_lsn: self.header.lsn,
            }));
        }
        let mut extra = [0u8; 1];
        let after = |reason| SnapshotError { offset: self.offset, reason };
        match self.src.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => return Err(after(SnapshotDamage::BytesAfterEnd)),
            Err(e) => return Err(after(SnapshotDamage::Io(e))),
        }
        self.done = true;
        Ok(None)
    }
}

/// Why a frame cannot be read (snapshots and backups share the framing;
/// each says what a file ending early means for it).
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The file ends inside the frame.
    Ends,
    Io(std::io::Error),
    Length(usize),
    Checksum,
}

/// Fill `buf` from `src`, which is at `offset`; on failure, that offset.
pub(crate) fn read_exact_at(src: &mut impl Read, buf: &mut [u8], offset: u64) -> Result<(), (u64, FrameError)> {
    src.read_exact(buf).map_err(|e| {
        (offset, if e.kind() == std::io::ErrorKind::UnexpectedEof { FrameError::Ends } else { FrameError::Io(e) })
    })
}

/// Read one frame at `at` into `body` (kind excluded), checking its length
/// and CRC: the frame's header bytes (length, CRC, kind) and its kind, or
/// the offset of the fault and the fault.
pub(crate) fn read_frame(
    src: &mut impl Read,
    at: u64,
    body: &mut Vec<u8>,
) -> Result<([u8; FRAME_HEADER_BYTES + 1], u8), (u64, FrameError)> {
    let mut fh = [0u8; FRAME_HEADER_BYTES + 1];
    read_exact_at(src, &mut fh, at)?;
    let len = u32::from_le_bytes(fh[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(fh[4..8].try_into().unwrap());
    let kind = fh[8];
    if len == 0 || len > MAX_FRAME_BYTES {
        return Err((at, FrameError::Length(len)));
    }
    body.resize(len - 1, 0);
    read_exact_at(src, body, at + FRAME_HEADER_BYTES as u64 + 1)?;
    if frame_crc(kind, body) != crc {
        return Err((at, FrameError::Checksum));
    }
    Ok((fh, kind))
}

/// A `Read` over a file whose reads run ahead on a helper thread, so disk
/// time overlaps the caller's processing (start-up reads of big files).
pub struct ReadAhead {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    /// Emptied chunks go back to the reader thread (no fresh pages per chunk).
    recycle: std::sync::mpsc::Sender<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ReadAhead {
    pub fn new(mut file: std::fs::File, chunk_bytes: usize, depth: usize) -> ReadAhead {
        let (tx, rx) = std::sync::mpsc::sync_channel(depth);
        let (recycle, spare) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || loop {
            let mut buf = spare.try_recv().unwrap_or_default();
            buf.resize(chunk_bytes, 0);
            let mut filled = 0;
            let result = loop {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == buf.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(filled);
            let last = filled < chunk_bytes || result.is_err();
            let msg = result.map(|_| buf);
            if tx.send(msg).is_err() || last {
                return;
            }
        });
        ReadAhead { rx, recycle, chunk: Vec::new(), at: 0 }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.chunk, chunk);
                    let _ = self.recycle.send(used);
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The manifest of one shard's data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub shard_id: u16,
    /// File name of the current snapshot (in the shard directory).
    pub snapshot: String,
    /// Records up to this LSN are in the snapshot; replay starts after it.
    pub lsn: Lsn,
    /// Highest WAL segment number that existed when the manifest was
    /// written: a WAL ending before it has lost its newest segments.
    pub wal_segment_seq: u64,
}

/// File name of the manifest in a shard directory.
pub const MANIFEST: &str = "MANIFEST";

const MANIFEST_FIRST_LINE: &str = "aionbd-manifest 1";

impl Manifest {
    pub fn encode(&self) -> String {
        let body = format!(
            "{MANIFEST_FIRST_LINE}\nshard={}\nsnapshot={}\nlsn={}\nwal_segment_seq={}\n",
            self.shard_id, self.snapshot, self.lsn, self.wal_segment_seq
        );
        let crc = crc32c::crc32c(body.as_bytes());
        format!("{body}crc32c={crc:08x}\n")
    }

    pub fn decode(text: &str) -> Result<Self, ManifestError> {
        let (body, last) = match text.trim_end_matches('\n').rsplit_once('\n') {
            Some((body, last)) => (format!("{body}\n"), last),
            None => return Err(ManifestError::Truncated),
        };
        let crc = last.strip_prefix("crc32c=").ok_or(ManifestError::NoChecksum)?;
        let crc = u32::from_str_radix(crc, 16).map_err(|_| ManifestError::ChecksumNotHex)?;
        if crc32c::crc32c(body.as_bytes()) != crc {
            return Err(ManifestError::ChecksumMismatch);
        }
        let mut lines = body.lines();
        if lines.next() != Some(MANIFEST_FIRST_LINE) {
            return Err(ManifestError::NotVersion1);
        }
        let mut field = |key: &'static str| -> Result<String, ManifestError> {
            let line = lines.next().ok_or(ManifestError::Missing(key))?;
            line.strip_prefix(key)
                .and_then(|r| r.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(|| ManifestError::BadLine { key, line: line.to_owned() })
        };
        let num = |value: String, key: &'static str| {
            value.parse::<u64>().map_err(|_| ManifestError::NotANumber { key, value })
        };
        let shard_id = num(field("shard")?, "shard")? as u16;
        let snapshot = field("snapshot")?;
        let lsn = num(field("lsn")?, "lsn")?;
        let wal_segment_seq = num(field("wal_segment_seq")?, "wal_segment_seq")?;
        if snapshot.is_empty() || snapshot.contains('/') {
            return Err(ManifestError::BadSnapshotName(snapshot));
        }
        Ok(Manifest { shard_id, snapshot, lsn, wal_segment_seq })
    }
}

/// Why a manifest is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestError {
    Truncated,
    NoChecksum,
    ChecksumNotHex,
    ChecksumMismatch,
    NotVersion1,
    /// The line for this key is missing.
    Missing(&'static str),
    /// The line where this key belongs holds something else.
    BadLine {
        key: &'static str,
        line: String,
    },
    NotANumber {
        key: &'static str,
        value: String,
    },
    /// The snapshot file name is empty or names another directory.
    BadSnapshotName(String),
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ManifestError::Truncated => f.write_str("manifest is truncated"),
            ManifestError::NoChecksum => f.write_str("manifest has no checksum line"),
            ManifestError::ChecksumNotHex => f.write_str("manifest checksum is not hex"),
            ManifestError::ChecksumMismatch => f.write_str("manifest checksum mismatch"),
            ManifestError::NotVersion1 => f.write_str("not a version-1 manifest"),
            ManifestError::Missing(key) => write!(f, "manifest lacks '{key}'"),
            ManifestError::BadLine { key, line } => write!(f, "manifest line '{line}' should be '{key}=...'"),
            ManifestError::NotANumber { key, value } => write!(f, "manifest {key} '{value}' is not a number"),
            ManifestError::BadSnapshotName(name) => write!(f, "manifest names an invalid snapshot file '{name}'"),
        }
    }
}

impl std::error::Error for ManifestError {}

pub fn snapshot_name(lsn: Lsn) -> String {
    format!("snap-{lsn:016x}.bin")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(records: &[(u8, Vec<u8>)], lsn: Lsn) -> Vec<u8> {
        let mut out = SnapshotHeader { shard_id: 3, lsn, created_unix_ms: 42 }.encode().to_vec();
        for (k, b) in records {
            encode_frame(*k, b, &mut out);
        }
        encode_end(records.len() as u64, lsn, &mut out);
        out
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, SnapshotError> {
        let mut r = SnapshotReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some((k, b)) = r.next_record()? {
            out.push((k, b.to_vec()));
        }
        Ok(out)
    }

    proptest! {
        #[test]
        fn round_trip_and_any_damage_is_rejected(
            records in proptest::collection::vec((0u8..0xfe, proptest::collection::vec(any::<u8>(), 0..300)), 0..20),
            lsn in any::<u64>(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let bytes = file(&records, lsn);
            prop_assert_eq!(read_all(&bytes).unwrap(), records.clone());
            // Every strict prefix is an incomplete snapshot.
            let n = cut.index(bytes.len());
            prop_assert!(read_all(&bytes[..n]).is_err());
            // Every single bit flip is caught (header CRC, frame CRC, or a
            // length that breaks the framing).
            let mut bad = bytes.clone();
            let at = flip.index(bad.len());
            bad[at] ^= 1 << bit;
            prop_assert!(read_all(&bad).is_err(), "flip at {} of {} accepted", at, bad.len());
            // Trailing bytes are rejected too.
            let mut long = bytes;
            long.push(0);
            prop_assert!(read_all(&long).is_err());
        }
    }

    #[test]
    fn header_fields_survive() {
        let h = SnapshotHeader { shard_id: 7, lsn: 123456, created_unix_ms: 99 };
        assert_eq!(SnapshotHeader::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn manifest_round_trips_and_rejects_edits() {
        let m = Manifest { shard_id: 1, snapshot: snapshot_name(77), lsn: 77, wal_segment_seq: 9 };
        let text = m.encode();
        assert_eq!(Manifest::decode(&text).unwrap(), m);
        assert_eq!(Manifest::decode(&text.replace("lsn=77", "lsn=78")), Err(ManifestError::ChecksumMismatch));
        assert!(Manifest::decode(&text[..text.len() / 2]).is_err());
        assert!(Manifest::decode("").is_err());
    }
}
