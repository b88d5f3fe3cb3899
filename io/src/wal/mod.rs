//! The per-shard write-ahead log format, as pure functions over bytes.
//!
//! A WAL is a sequence of preallocated, fixed-size segment files. Block 0 of
//! a segment is its header; after it come **batches**, the unit of group
//! commit: each starts on a [`BLOCK_BYTES`] boundary, is padded to a whole
//! number of blocks, and holds records with consecutive LSNs. A block that
//! belongs to a synced batch is never written again, so only the batch in
//! flight at a crash can be torn. Byte layouts: docs/storage.md.
//!
//! [`format`] encodes and decodes headers, batches and records; [`writer`]
//! plans batches and segment rollover without doing I/O; [`scan`] reads a
//! segment back and classifies how it ends (clean, torn tail, or corruption
//! that must stop recovery); [`recover`] does that over all segments;
//! [`simdisk`] is the crash-simulating disk the tests run on.

pub mod format;
pub mod recover;
pub mod scan;
pub mod simdisk;
pub mod writer;

#[cfg(test)]
mod crash_tests;

pub use format::{encode_batch, BatchHeader, FormatError, Lsn, SegmentHeader, BLOCK_BYTES};
pub use recover::{recover, Corruption, Recovered, Recovery, SegmentBytes};
pub use scan::{scan_segment, Record, ScanEnd, SegmentScan};
pub use writer::{Step, WalWriter, WriteError};
