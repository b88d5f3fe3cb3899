//! Shard data and the synchronous operations on it: collections, partitions,
//! points, payloads, filters, distance kernels and top-k selection.
//!
//! Nothing in this crate does I/O, awaits or takes a lock: a shard is owned
//! by one executor thread, and the server crate moves [`ops`] messages
//! (home and partition operations, and their replies) between shards.

pub mod calib;
pub mod error;
pub mod export;
pub mod filter;
pub mod hnsw;
pub mod ivf;
pub mod math;
pub mod ops;
pub mod partition;
pub mod payload;
pub mod payload_index;
pub mod placement;
pub mod quota;
pub mod record;
pub mod shard;
pub mod sq8;

#[cfg(test)]
mod memory_budget_tests;
#[cfg(test)]
mod replay_tests;

pub use error::ShardError;
pub use math::distance::Metric;
pub use shard::{Shard, ShardLimits};
