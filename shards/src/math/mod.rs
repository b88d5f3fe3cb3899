//! The shard's shared math, used by partitions, indexes and calibration
//! alike and depending on nothing else in the crate: distance kernels and
//! [`distance::Metric`], the key of a point under a metric (`key`, the one
//! formula), top-k selection and the one result order (`topk`), the
//! deterministic mixers and generators (`rng`), the prefetch hint, and the
//! cache-line-aligned buffer rows live in (`aligned`), and the id ->
//! position maps that grow without a pause (`id_index`).

pub mod aligned;
pub mod distance;
pub mod id_index;
pub mod key;
mod prefetch;
pub mod rng;
pub mod topk;

pub use prefetch::prefetch;
