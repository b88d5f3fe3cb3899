//! The per-shard write-ahead log: its format as pure functions over bytes,
//! and the log itself over a small disk trait.
//!
//! A WAL is a sequence of preallocated, fixed-size segment files. Block 0 of
//! a segment is its header; after it come **batches**, the unit of group
//! commit: each starts on a [`BLOCK_BYTES`] boundary, is padded to a whole
//! number of blocks, and holds records with consecutive LSNs. A block that
//! belongs to a synced batch is never written again, so only the batch in
//! flight at a crash can be torn. Byte layouts: docs/storage.md.
//!
//! [`format`] encodes and decodes headers, batches and records and names
//! the files; [`writer`] plans batches and segment rollover without doing
//! I/O; [`scan`] reads a segment back and classifies how it ends (clean,
//! torn tail, or corruption that must stop recovery); [`recover`] does that
//! over all segments; [`log`] is the log a shard writes (group commit,
//! rollover, spare segment, manifest switch), generic over [`SegmentIo`]
//! ([`disk`]), which the server implements with glommio DMA files and
//! [`simdisk`] with a disk that loses and tears unsynced writes at a crash.

pub mod disk;
pub mod format;
pub mod log;
pub mod recover;
pub mod scan;
pub mod simdisk;
pub mod writer;

#[cfg(test)]
mod crash_tests;

pub use disk::{IoFailure, IoOp, SegmentIo};
pub use format::{
    encode_batch, is_unfinished, parse_segment_name, segment_name, BatchHeader, FormatError, Lsn, SegmentHeader,
    BLOCK_BYTES, WAL_DIR,
};
pub use log::{Appended, SwitchError, SyncPolicy, Wal, WalError, WalOptions};
pub use recover::{header_corruption, recover, Corruption, Recovered, Recovery, SegmentBytes, TornTail};
pub use scan::{scan_segment, scan_segment_into, Record, ScanEnd, SegmentScan, SegmentSource};
pub use writer::{Step, WalWriter, WriteError};
