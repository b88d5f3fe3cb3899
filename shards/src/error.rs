//! The error every shard operation returns. The API layer maps each variant
//! to an HTTP status in one exhaustive `match`.

use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum ShardError {
    /// Bad request content: wrong dimension, bad filter, empty batch, ...
    InvalidArgument(String),
    /// Collection or point absent.
    NotFound(String),
    /// Collection name taken.
    Conflict(String),
    /// What an export or build was copying went away (its collection was
    /// dropped after it started): the work is abandoned, not failed.
    Gone(String),
    /// A configured cap was reached (points per collection, ...).
    ResourceExhausted(String),
    /// A tenant quota was reached (`crate::quota`).
    Quota(crate::quota::Quota, String),
    /// The disk is full: the write could not be made durable.
    InsufficientStorage(String),
    /// An internal invariant failed, a peer shard could not be reached, or
    /// the write-ahead log failed.
    Internal(String),
}

impl fmt::Display for ShardError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ShardError::InvalidArgument(m)
            | ShardError::NotFound(m)
            | ShardError::Conflict(m)
            | ShardError::Gone(m)
            | ShardError::ResourceExhausted(m)
            | ShardError::Quota(_, m)
            | ShardError::InsufficientStorage(m)
            | ShardError::Internal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ShardError {}

pub fn invalid(msg: impl Into<String>) -> ShardError {
    ShardError::InvalidArgument(msg.into())
}

pub fn collection_not_found(name: &str) -> ShardError {
    ShardError::NotFound(format!("collection '{name}' not found"))
}

pub fn point_not_found(name: &str, id: u64) -> ShardError {
    ShardError::NotFound(format!("point {id} not found in collection '{name}'"))
}
