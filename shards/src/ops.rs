//! Messages between shards: what a dispatcher asks a shard to do, and the
//! answers. Everything is `Send` (it crosses cores over channels) and holds
//! ids, vectors and scores; no references into a shard's data.
//!
//! Two families, by who answers them:
//! - home operations ([`HomeOp`], `ops/home.rs`) go to a collection's home
//!   shard: catalog reads ([`HomeRead`]) and writes ([`HomeWrite`], logged).
//!   The home shard answers with a [`Plan`]: the reply plus the partition
//!   operations it still has to send on, in order.
//! - partition operations ([`PartitionOp`], `ops/partition.rs`) act on the
//!   partition placed on the receiving shard. They are answered with a
//!   [`PartitionReply`], which has no room for further operations: a
//!   partition operation cannot fan out.
//!
//! Each operation is its own type, and [`Op::Reply`] fixes its answer,
//! so whoever sends one gets that type back, not a reply to match. On the
//! mesh an operation travels in its family's enum ([`ShardOp`]) and its reply
//! in the family's reply enum; `family!` declares both from one list, so
//! variant `X` of a family is answered by variant `X` of its replies.

use crate::payload::Payload;

/// Declares one family of operations: the enum carrying them, the enum of
/// their replies (variant for variant, each holding its operation's reply
/// type) and, for each operation, its [`Op`] impl and conversions.
/// The family's own `From<family> for ShardOp` and
/// `TryFrom<ShardReply> for replies` are written beside it.
macro_rules! family {
    (
        $(#[$meta:meta])*
        $family:ident => $replies:ident {
            $( $(#[$vmeta:meta])* $variant:ident($request:ident) -> $reply:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        pub enum $family {
            $( $(#[$vmeta])* $variant($request), )*
        }

        impl $family {
            /// The operation's name (its variant), for stall reports; a
            /// reference to a constant, so it can be stored in one word.
            pub fn name(&self) -> &'static &'static str {
                match self {
                    $( $family::$variant(_) => &stringify!($variant), )*
                }
            }
        }

        #[doc = concat!("The replies to [`", stringify!($family), "`], variant for variant.")]
        #[derive(Clone, Debug)]
        pub enum $replies {
            $( $variant($reply), )*
        }

        $(
            impl From<$request> for $family {
                fn from(request: $request) -> Self {
                    $family::$variant(request)
                }
            }

            impl From<$request> for $crate::ops::ShardOp {
                fn from(request: $request) -> Self {
                    $family::$variant(request).into()
                }
            }

            impl $crate::ops::Op for $request {
                type Reply = $reply;
                fn reply(reply: $crate::ops::ShardReply) -> Option<$reply> {
                    match <$replies>::try_from(reply) {
                        Ok($replies::$variant(reply)) => Some(reply),
                        _ => None,
                    }
                }
            }
        )*
    };
}

mod home;
mod partition;

pub use home::*;
pub use partition::*;

/// An operation with a fixed reply type.
pub trait Op: Into<ShardOp> {
    type Reply;
    /// This operation's reply out of the reply the mesh carried; `None`
    /// only if a shard answered another operation than the one it was
    /// asked (a bug: the router turns it into an internal error).
    fn reply(reply: ShardReply) -> Option<Self::Reply>;
}

/// Any operation, as it crosses the mesh.
#[derive(Clone, Debug)]
pub enum ShardOp {
    Home(HomeOp),
    Partition(PartitionOp),
}

/// Any reply, as it crosses the mesh.
#[derive(Clone, Debug)]
pub enum ShardReply {
    Home(HomeReply),
    Partition(PartitionReply),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CollectionSpec {
    pub name: String,
    pub dimension: usize,
    pub strict_finite: bool,
}

#[derive(Clone, Debug)]
pub struct CollectionInfo {
    pub spec: CollectionSpec,
    pub point_count: u64,
    pub partitions: usize,
}

/// A point with its vector and payload: as written, and as read back
/// (`GetPoint`, exports).
#[derive(Clone, Debug, PartialEq)]
pub struct PointIn {
    pub id: u64,
    pub values: Vec<f32>,
    pub payload: Payload,
}

/// A page request for `GET /collections/{name}/points`.
#[derive(Clone, Copy, Debug)]
pub enum PageFrom {
    Offset(usize),
    After(u64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct PointsPage {
    pub ids: Vec<u64>,
    pub total: u64,
    pub next_offset: Option<u64>,
    pub next_after_id: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct Hit {
    /// Lower is better (see `topk`).
    pub key: f32,
    pub id: u64,
    pub payload: Option<Payload>,
}

impl crate::math::topk::Ranked for Hit {
    fn rank(&self) -> crate::math::topk::Scored {
        crate::math::topk::Scored { key: self.key, id: self.id }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ShardDataStats {
    pub collections_homed: u64,
    pub points_homed: u64,
    pub partitions: u64,
    pub memory_bytes: u64,
    /// Index progress of each partition this shard holds.
    pub indexes: Vec<IndexProgress>,
}

/// How far one partition's indexes cover its points (`/metrics`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IndexProgress {
    pub collection: String,
    pub points: u64,
    /// Points in the IVF lists, and points searched exactly beside them.
    pub ivf_indexed: u64,
    pub ivf_exact: u64,
    /// Live graph nodes, and points searched exactly beside the graph.
    pub hnsw_nodes: u64,
    pub hnsw_exact: u64,
    /// Index builds under way (0, 1 or 2).
    pub building: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_takes_only_the_reply_of_its_own_variant() {
        let upserted = ShardReply::Home(HomeReply::Write(HomeWriteReply::Upsert(vec![(7, true)])));
        assert_eq!(Upsert::reply(upserted.clone()), Some(vec![(7, true)]));
        assert!(CreateCollection::reply(upserted).is_none());
        // Same reply type (u64), other variant: still refused.
        let changed = ShardReply::Partition(PartitionReply::ApplySetPayload(3));
        assert_eq!(ApplySetPayload::reply(changed.clone()), Some(3));
        assert_eq!(Count::reply(changed.clone()), None);
        assert_eq!(SetPayload::reply(changed.clone()), None);
        // The whole family takes any of its replies, and only those.
        assert!(PartitionOp::reply(changed).is_some());
        assert!(PartitionOp::reply(ShardReply::Home(HomeReply::Write(HomeWriteReply::SetPayload(3)))).is_none());
    }
}
