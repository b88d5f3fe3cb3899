//! Storage formats for AIONBD. Today: reading the vector files users bring to
//! benchmarks and imports (texmex `.fvecs`/`.ivecs`, NumPy `.npy`). Next: the
//! per-shard write-ahead log and snapshots, as pure functions over bytes.

pub mod vecfile;
