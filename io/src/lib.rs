//! Storage formats for AIONBD, as pure functions over bytes so they can be
//! tested and fuzzed without a disk: the per-shard write-ahead log format
//! ([`wal`]) and the vector files users bring to benchmarks and imports
//! ([`vecfile`]: texmex `.fvecs`/`.ivecs`, NumPy `.npy`).

pub mod backup;
pub mod queries;
pub mod snapshot;
pub mod vecfile;
pub mod wal;
