//! Shard data and the synchronous operations on it: collections, partitions,
//! points, payloads, filters, distance kernels and top-k selection.
//!
//! Folders by job: [`math`] (keys, kernels, top-k, RNG), [`payload`]
//! (payloads, filters, payload indexes), [`index`] (IVF, HNSW, their
//! calibration, SQ8 codes), [`partition`] (a collection's points on one
//! shard and its search planner), [`shard`] (the catalog and the dispatch
//! of partition operations), [`ops`] (the messages).
//!
//! Nothing in this crate does I/O, awaits or takes a lock: a shard is owned
//! by one executor thread, and the server crate moves [`ops`] messages
//! (home and partition operations, and their replies) between shards.

pub mod error;
pub mod export;
pub mod index;
pub mod math;
pub mod ops;
pub mod partition;
pub mod payload;
pub mod placement;
pub mod quota;
pub mod record;
pub mod shard;

#[cfg(test)]
mod memory_budget_tests;
#[cfg(test)]
mod replay_tests;

pub use error::ShardError;
pub use math::distance::Metric;
pub use shard::{Shard, ShardLimits};
