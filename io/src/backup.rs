//! Backup files, as pure functions over bytes (layout: docs/backup.md).
//!
//! A backup is a header, then frames in the snapshot framing (length, CRC32C
//! of kind + body, kind, body): per collection its log records (one
//! `CreateCollection`, then `Upsert`s), optionally the real queries `auto`
//! calibrates on (kind `0xfd`, since version 2: one entry in the layout of
//! `queries.bin`, `crate::queries`) and a collection-end frame (kind
//! `0xfe`: name, home shard, cut LSN, point count); last an end frame
//! (`0xff`) with the number of frames before it, a CRC32C of every byte
//! before it, and the manifest (JSON text). It is written as a stream, so
//! the manifest comes last; a reader checks every frame as it goes and the
//! whole-file CRC at the end. The records are opaque here.

use crate::queries::{self, SavedQueries};
use crate::snapshot::{read_exact_at, read_frame, FrameError};
use std::fmt;
use std::io::Read;

pub const BACKUP_MAGIC: [u8; 8] = *b"AIONBAK\0";
/// The version written. Version 2 added the calibration-queries frame.
pub const BACKUP_VERSION: u16 = 2;
/// The oldest version this build reads.
pub const OLDEST_READABLE: u16 = 1;
pub const BACKUP_HEADER_BYTES: usize = 32;
/// Closes one collection: name, home shard, cut LSN, points written.
pub const COLLECTION_END_KIND: u8 = 0xfe;
/// A collection's saved real queries (advisory: calibration data).
pub const QUERIES_KIND: u8 = 0xfd;
pub const END_KIND: u8 = crate::snapshot::END_KIND;

fn frame_crc(kind: u8, body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[kind]), body)
}

/// The header: magic, version, creation time, CRC32C of the bytes before it.
pub fn encode_header(created_unix_ms: u64) -> [u8; BACKUP_HEADER_BYTES] {
    let mut b = [0u8; BACKUP_HEADER_BYTES];
    b[0..8].copy_from_slice(&BACKUP_MAGIC);
    b[8..10].copy_from_slice(&BACKUP_VERSION.to_le_bytes());
    b[16..24].copy_from_slice(&created_unix_ms.to_le_bytes());
    let crc = crc32c::crc32c(&b[..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Builds a backup as a sequence of byte chunks, keeping the running CRC
/// and frame count the end frame needs.
#[derive(Debug)]
pub struct BackupWriter {
    crc: u32,
    frames: u64,
    bytes: u64,
}

impl BackupWriter {
    /// A writer and the file's first bytes (the header).
    pub fn start(created_unix_ms: u64) -> (BackupWriter, Vec<u8>) {
        let mut w = BackupWriter { crc: 0, frames: 0, bytes: 0 };
        let header = encode_header(created_unix_ms).to_vec();
        w.account(&header);
        (w, header)
    }

    fn account(&mut self, bytes: &[u8]) {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.bytes += bytes.len() as u64;
    }

    /// Append a frame of `kind` (below `0xfe`: a log record) to `out`.
    pub fn frame(&mut self, kind: u8, body: &[u8], out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&((body.len() + 1) as u32).to_le_bytes());
        out.extend_from_slice(&frame_crc(kind, body).to_le_bytes());
        out.push(kind);
        out.extend_from_slice(body);
        self.account(&out[at..]);
        self.frames += 1;
    }

    /// The current collection's real queries (before its end frame).
    pub fn queries(&mut self, entry: &SavedQueries, out: &mut Vec<u8>) {
        self.frame(QUERIES_KIND, &queries::encode(std::slice::from_ref(entry)), out);
    }

    /// Close a collection's frames.
    pub fn collection_end(&mut self, end: &CollectionEnd, out: &mut Vec<u8>) {
        self.frame(COLLECTION_END_KIND, &end.encode(), out);
    }

    /// The end frame; `manifest` is JSON text. Returns the file's size.
    pub fn finish(mut self, manifest: &str, out: &mut Vec<u8>) -> u64 {
        let mut body = Vec::with_capacity(12 + manifest.len());
        body.extend_from_slice(&self.frames.to_le_bytes());
        body.extend_from_slice(&self.crc.to_le_bytes());
        body.extend_from_slice(manifest.as_bytes());
        let at = out.len();
        out.extend_from_slice(&((body.len() + 1) as u32).to_le_bytes());
        out.extend_from_slice(&frame_crc(END_KIND, &body).to_le_bytes());
        out.push(END_KIND);
        out.extend_from_slice(&body);
        self.bytes += (out.len() - at) as u64;
        self.bytes
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// The frame that closes one collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionEnd {
    pub name: String,
    pub home_shard: u16,
    /// The home shard's LSN at the cut: the collection holds exactly the
    /// writes the home shard logged up to it.
    pub lsn: u64,
    pub points: u64,
}

impl CollectionEnd {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(22 + self.name.len());
        b.extend_from_slice(&(self.name.len() as u32).to_le_bytes());
        b.extend_from_slice(self.name.as_bytes());
        b.extend_from_slice(&self.home_shard.to_le_bytes());
        b.extend_from_slice(&self.lsn.to_le_bytes());
        b.extend_from_slice(&self.points.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, MalformedCollectionEnd> {
        let n = u32::from_le_bytes(b.get(0..4).ok_or(MalformedCollectionEnd)?.try_into().unwrap()) as usize;
        let name = std::str::from_utf8(b.get(4..4 + n).ok_or(MalformedCollectionEnd)?)
            .map_err(|_| MalformedCollectionEnd)?
            .to_owned();
        let rest = b.get(4 + n..).ok_or(MalformedCollectionEnd)?;
        if rest.len() != 18 {
            return Err(MalformedCollectionEnd);
        }
        Ok(CollectionEnd {
            name,
            home_shard: u16::from_le_bytes(rest[0..2].try_into().unwrap()),
            lsn: u64::from_le_bytes(rest[2..10].try_into().unwrap()),
            points: u64::from_le_bytes(rest[10..18].try_into().unwrap()),
        })
    }
}

/// A collection-end frame whose body does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MalformedCollectionEnd;

impl fmt::Display for MalformedCollectionEnd {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("malformed collection-end frame")
    }
}

impl std::error::Error for MalformedCollectionEnd {}

/// Where and why a backup file is unusable.
#[derive(Debug)]
pub struct BackupError {
    pub offset: u64,
    pub reason: BackupDamage,
}

/// What is wrong with a backup file at [`BackupError::offset`].
#[derive(Debug)]
pub enum BackupDamage {
    /// The file ends before its end frame.
    Truncated,
    /// Reading the file failed.
    Io(std::io::Error),
    BadMagic,
    HeaderChecksum,
    /// A format version this build does not read.
    Version(u16),
    FrameLength(usize),
    FrameChecksum,
    MalformedCollectionEnd,
    /// A calibration-queries frame that does not hold one entry.
    MalformedQueries(String),
    MalformedEnd,
    /// The end frame's frame count differs from the frames the file holds.
    FrameCount {
        counted: u64,
        held: u64,
    },
    FileChecksum,
    ManifestNotUtf8,
    BytesAfterEnd,
}

impl From<FrameError> for BackupDamage {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Ends => BackupDamage::Truncated,
            FrameError::Io(e) => BackupDamage::Io(e),
            FrameError::Length(n) => BackupDamage::FrameLength(n),
            FrameError::Checksum => BackupDamage::FrameChecksum,
        }
    }
}

impl fmt::Display for BackupDamage {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            BackupDamage::Truncated => f.write_str("file ends before the backup's end frame (truncated backup)"),
            BackupDamage::Io(e) => write!(f, "{e}"),
            BackupDamage::BadMagic => f.write_str("not an aionbd backup (bad magic)"),
            BackupDamage::HeaderChecksum => f.write_str("backup header checksum mismatch"),
            BackupDamage::Version(v) => {
                write!(
                    f,
                    "backup format version {v} is not supported (this build reads versions {OLDEST_READABLE} to \
                     {BACKUP_VERSION})"
                )
            }
            BackupDamage::FrameLength(n) => write!(f, "impossible frame length {n}"),
            BackupDamage::FrameChecksum => f.write_str("frame checksum mismatch"),
            BackupDamage::MalformedCollectionEnd => write!(f, "{MalformedCollectionEnd}"),
            BackupDamage::MalformedQueries(why) => write!(f, "malformed calibration-queries frame: {why}"),
            BackupDamage::MalformedEnd => f.write_str("malformed end frame"),
            BackupDamage::FrameCount { counted, held } => {
                write!(f, "end frame counts {counted} frames, the file holds {held}")
            }
            BackupDamage::FileChecksum => f.write_str("whole-file checksum mismatch"),
            BackupDamage::ManifestNotUtf8 => f.write_str("manifest is not UTF-8"),
            BackupDamage::BytesAfterEnd => f.write_str("bytes after the end frame"),
        }
    }
}

impl fmt::Display for BackupError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "at offset {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for BackupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.reason {
            BackupDamage::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// One item of a backup, in file order.
#[derive(Debug, PartialEq)]
pub enum Item<'a> {
    /// A log record (kind, body) of the current collection.
    Record(u8, &'a [u8]),
    /// The current collection's saved real queries.
    Queries(SavedQueries),
    CollectionEnd(CollectionEnd),
    /// The verified end: the manifest's JSON text.
    End(String),
}

/// Reads a backup, checking the header, every frame's CRC, the frame count
/// and the whole-file CRC; nothing may follow the end frame.
pub struct BackupReader<R: Read> {
    src: R,
    pub created_unix_ms: u64,
    offset: u64,
    crc: u32,
    frames: u64,
    done: bool,
    body: Vec<u8>,
}

impl<R: Read> BackupReader<R> {
    pub fn new(mut src: R) -> Result<Self, BackupError> {
        let mut h = [0u8; BACKUP_HEADER_BYTES];
        read_exact_at(&mut src, &mut h, 0).map_err(|(offset, e)| BackupError { offset, reason: e.into() })?;
        let err = |reason| BackupError { offset: 0, reason };
        if h[0..8] != BACKUP_MAGIC {
            return Err(err(BackupDamage::BadMagic));
        }
        if crc32c::crc32c(&h[..28]) != u32::from_le_bytes(h[28..32].try_into().unwrap()) {
            return Err(err(BackupDamage::HeaderChecksum));
        }
        let version = u16::from_le_bytes(h[8..10].try_into().unwrap());
        if !(OLDEST_READABLE..=BACKUP_VERSION).contains(&version) {
            return Err(err(BackupDamage::Version(version)));
        }
        Ok(BackupReader {
            created_unix_ms: u64::from_le_bytes(h[16..24].try_into().unwrap()),
            crc: crc32c::crc32c(&h),
            src,
            offset: BACKUP_HEADER_BYTES as u64,
            frames: 0,
            done: false,
            body: Vec::new(),
        })
    }

    /// Offset of the next frame (of the first bad byte after an error).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next item; `None` once the end frame was read.
    pub fn next_item(&mut self) -> Result<Option<Item<'_>>, BackupError> {
        if self.done {
            return Ok(None);
        }
        let at = self.offset;
        let err = |reason: BackupDamage| BackupError { offset: at, reason };
        let (fh, kind) = read_frame(&mut self.src, at, &mut self.body)
            .map_err(|(offset, e)| BackupError { offset, reason: e.into() })?;
        let file_crc_before = self.crc;
        self.crc = crc32c::crc32c_append(crc32c::crc32c_append(self.crc, &fh), &self.body);
        self.offset += (fh.len() + self.body.len()) as u64;
        if kind != END_KIND {
            self.frames += 1;
        }
        match kind {
            END_KIND => {
                if self.body.len() < 12 {
                    return Err(err(BackupDamage::MalformedEnd));
                }
                let frames = u64::from_le_bytes(self.body[0..8].try_into().unwrap());
                let file_crc = u32::from_le_bytes(self.body[8..12].try_into().unwrap());
                if frames != self.frames {
                    return Err(err(BackupDamage::FrameCount { counted: frames, held: self.frames }));
                }
                if file_crc != file_crc_before {
                    return Err(err(BackupDamage::FileChecksum));
                }
                let manifest =
                    std::str::from_utf8(&self.body[12..]).map_err(|_| err(BackupDamage::ManifestNotUtf8))?.to_owned();
                let mut extra = [0u8; 1];
                let after = |reason| BackupError { offset: self.offset, reason };
                match self.src.read(&mut extra) {
                    Ok(0) => {}
                    Ok(_) => return Err(after(BackupDamage::BytesAfterEnd)),
                    Err(e) => return Err(after(BackupDamage::Io(e))),
                }
                self.done = true;
                Ok(Some(Item::End(manifest)))
            }
            COLLECTION_END_KIND => Ok(Some(Item::CollectionEnd(
                CollectionEnd::decode(&self.body).map_err(|_| err(BackupDamage::MalformedCollectionEnd))?,
            ))),
            QUERIES_KIND => match queries::decode(&self.body) {
                Ok(mut entries) if entries.len() == 1 => Ok(Some(Item::Queries(entries.remove(0)))),
                Ok(entries) => Err(err(BackupDamage::MalformedQueries(format!("{} entries, not one", entries.len())))),
                Err(e) => Err(err(BackupDamage::MalformedQueries(e.0))),
            },
            _ => Ok(Some(Item::Record(kind, &self.body))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(records: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let (mut w, mut out) = BackupWriter::start(42);
        for (k, b) in records {
            w.frame(*k, b, &mut out);
        }
        w.collection_end(&CollectionEnd { name: "c".into(), home_shard: 1, lsn: 9, points: 3 }, &mut out);
        let n = w.finish("{\"format\":1}", &mut out);
        assert_eq!(n, out.len() as u64);
        out
    }

    type Records = Vec<(u8, Vec<u8>)>;

    fn read_all(bytes: &[u8]) -> Result<(Records, String), BackupError> {
        let mut r = BackupReader::new(bytes)?;
        let mut recs = Vec::new();
        loop {
            match r.next_item()? {
                Some(Item::Record(k, b)) => recs.push((k, b.to_vec())),
                Some(Item::Queries(q)) => panic!("no queries written: {q:?}"),
                Some(Item::CollectionEnd(e)) => assert_eq!(e.lsn, 9),
                Some(Item::End(m)) => return Ok((recs, m)),
                None => unreachable!("End comes first"),
            }
        }
    }

    proptest! {
        #[test]
        fn round_trips_and_any_damage_is_found(
            records in proptest::collection::vec((1u8..7, proptest::collection::vec(any::<u8>(), 0..64)), 0..8),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = sample(&records);
            let (back, manifest) = read_all(&bytes).unwrap();
            prop_assert_eq!(back, records);
            prop_assert_eq!(manifest, "{\"format\":1}");
            // A flipped bit anywhere is refused.
            let mut bad = bytes.clone();
            bad[flip.index(bytes.len())] ^= 1 << bit;
            prop_assert!(read_all(&bad).is_err());
            // So is any proper prefix, and a byte appended.
            let n = cut.index(bytes.len());
            prop_assert!(read_all(&bytes[..n]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(read_all(&longer).is_err());
        }
    }

    /// A header of `version`, its CRC made to match.
    fn with_version(bytes: &[u8], version: u16) -> Vec<u8> {
        let mut b = bytes.to_vec();
        b[8..10].copy_from_slice(&version.to_le_bytes());
        let crc = crc32c::crc32c(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn queries_frames_round_trip_and_older_versions_still_read() {
        let entry = SavedQueries {
            name: "docs".into(),
            uid: 7,
            metrics: [false, false, true],
            queries: vec![(2, vec![0.5, -1.0, f32::MIN_POSITIVE]), (2, vec![1.0, 2.0, 3.0])],
        };
        let (mut w, mut out) = BackupWriter::start(1);
        w.frame(1, b"create", &mut out);
        w.queries(&entry, &mut out);
        w.collection_end(&CollectionEnd { name: "docs".into(), home_shard: 0, lsn: 3, points: 0 }, &mut out);
        w.finish("{}", &mut out);
        let mut r = BackupReader::new(&out[..]).unwrap();
        assert_eq!(r.next_item().unwrap(), Some(Item::Record(1, b"create")));
        assert_eq!(r.next_item().unwrap(), Some(Item::Queries(entry)));
        assert!(matches!(r.next_item().unwrap(), Some(Item::CollectionEnd(_))));
        assert_eq!(r.next_item().unwrap(), Some(Item::End("{}".into())));
        // A version-1 file (no queries frames) reads as before; a version
        // from the future is refused by name. The header CRC is rewritten,
        // so only the whole-file CRC (over the header) still disagrees.
        let v1 = sample(&[(1, b"c".to_vec())]);
        let v1 = with_version(&v1, 1);
        assert!(BackupReader::new(&v1[..]).is_ok());
        let e = BackupReader::new(&with_version(&v1, BACKUP_VERSION + 1)[..]).err().unwrap();
        assert!(e.to_string().contains("versions 1 to 2"), "{e}");
        // A queries frame whose body is not one entry is named.
        let (mut w, mut out) = BackupWriter::start(1);
        w.frame(QUERIES_KIND, &queries::encode(&[]), &mut out);
        let e = BackupReader::new(&out[..]).unwrap().next_item().err().unwrap();
        assert!(e.to_string().contains("calibration-queries frame: 0 entries"), "{e}");
    }

    #[test]
    fn a_snapshot_or_other_file_is_not_a_backup() {
        let e = BackupReader::new(&b"AIONSNP\0........................"[..]).err().unwrap();
        assert!(matches!(e.reason, BackupDamage::BadMagic), "{e}");
        assert!(e.to_string().contains("not an aionbd backup"), "{e}");
        let e = BackupReader::new(&b"short"[..]).err().unwrap();
        assert!(matches!(e.reason, BackupDamage::Truncated), "{e}");
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}
