//! Home operations: sent to a collection's home shard (placement's `home`),
//! which keeps its catalog entry and orders its writes. Listing asks every
//! shard for the collections it homes. The home shard answers with a
//! [`Plan`], whose fan-out holds only partition operations.

use super::{CollectionInfo, CollectionSpec, PageFrom, PartitionOp, PointIn, PointsPage, ShardOp, ShardReply};
use crate::payload::Payload;
use crate::placement::ShardId;

/// A home operation: a catalog read or a write.
#[derive(Clone, Debug)]
pub enum HomeOp {
    Read(HomeRead),
    Write(HomeWrite),
}

impl HomeOp {
    /// The operation's name, for stall reports (see `PartitionOp::name`).
    pub fn name(&self) -> &'static &'static str {
        match self {
            HomeOp::Read(op) => op.name(),
            HomeOp::Write(op) => op.name(),
        }
    }
}

/// The reply to a [`HomeOp`], read for read and write for write.
#[derive(Clone, Debug)]
pub enum HomeReply {
    Read(HomeReadReply),
    Write(HomeWriteReply),
}

family! {
    /// Catalog reads: answered from the home shard's catalog entries; they
    /// change nothing and are not logged.
    HomeRead => HomeReadReply {
        GetCollection(GetCollection) -> CollectionInfo,
        ListCollections(ListCollections) -> Vec<CollectionInfo>,
        ListPoints(ListPoints) -> PointsPage,
        ExportCut(ExportCut) -> Cut,
    }
}

family! {
    /// Writes: validated against the catalog, logged as their effect (a
    /// `LogRecord`), then applied by the partition operations of the plan.
    HomeWrite => HomeWriteReply {
        CreateCollection(CreateCollection) -> CollectionInfo,
        DeleteCollection(DeleteCollection) -> (),
        /// Per input point, in request order: (id, created).
        Upsert(Upsert) -> Vec<(u64, bool)>,
        DeletePoint(DeletePoint) -> (),
        /// Points whose payload changed, on every partition.
        SetPayload(SetPayload) -> u64,
        /// Points whose payload changed, on every partition.
        DeletePayloadKeys(DeletePayloadKeys) -> u64,
    }
}

#[derive(Clone, Debug)]
pub struct GetCollection {
    pub name: String,
}

/// The collections homed on the receiving shard.
#[derive(Clone, Debug)]
pub struct ListCollections;

#[derive(Clone, Debug)]
pub struct ListPoints {
    pub name: String,
    pub from: PageFrom,
    pub limit: usize,
}

/// Home side of an export (backup, NDJSON export, snapshot): the
/// collections homed here that `only` names (every one when empty; with
/// `tenant`, only that tenant's) are cut at this shard's current LSN, and
/// an export `export` begins on each of their partitions (`ExportBegin`,
/// sent in order after every write planned so far). Answered once every
/// partition has begun.
#[derive(Clone, Debug)]
pub struct ExportCut {
    pub export: u64,
    pub only: Vec<String>,
    pub tenant: Option<String>,
}

/// An export's cut: the home shard's LSN at the cut (0 without
/// persistence; filled in by the router, which owns the WAL) and the
/// collections cut, with their uids and point counts, in creation order.
#[derive(Clone, Debug)]
pub struct Cut {
    pub lsn: u64,
    pub collections: Vec<(CollectionSpec, u64)>,
    pub points: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct CreateCollection(pub CollectionSpec);

#[derive(Clone, Debug)]
pub struct DeleteCollection {
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct Upsert {
    pub name: String,
    pub points: Vec<PointIn>,
}

#[derive(Clone, Debug)]
pub struct DeletePoint {
    pub name: String,
    pub id: u64,
}

#[derive(Clone, Debug)]
pub struct SetPayload {
    pub name: String,
    pub ids: Vec<u64>,
    pub patch: Payload,
}

#[derive(Clone, Debug)]
pub struct DeletePayloadKeys {
    pub name: String,
    pub ids: Vec<u64>,
    pub keys: Vec<String>,
}

/// A home shard's answer: the reply, the partition operations it still has
/// to send to other shards (in this order) before the reply may be given,
/// and for a write, its log record (kind, encoded body) to make durable
/// first.
#[derive(Debug)]
pub struct Plan {
    pub reply: HomeReply,
    pub fanout: Vec<(ShardId, PartitionOp)>,
    pub log: Option<(u8, Vec<u8>)>,
}

impl From<HomeReply> for Plan {
    fn from(reply: HomeReply) -> Self {
        Plan { reply, fanout: Vec::new(), log: None }
    }
}

impl HomeReply {
    /// Count points a partition operation of this reply's plan changed
    /// (`PartitionReply::changed`): payload writes answer with the total.
    pub fn add_changed(&mut self, n: u64) {
        match self {
            HomeReply::Write(HomeWriteReply::SetPayload(total) | HomeWriteReply::DeletePayloadKeys(total)) => {
                *total += n
            }
            HomeReply::Write(
                HomeWriteReply::CreateCollection(_)
                | HomeWriteReply::DeleteCollection(_)
                | HomeWriteReply::Upsert(_)
                | HomeWriteReply::DeletePoint(_),
            )
            | HomeReply::Read(_) => {}
        }
    }
}

impl From<HomeRead> for HomeOp {
    fn from(op: HomeRead) -> Self {
        HomeOp::Read(op)
    }
}

impl From<HomeWrite> for HomeOp {
    fn from(op: HomeWrite) -> Self {
        HomeOp::Write(op)
    }
}

impl From<HomeOp> for ShardOp {
    fn from(op: HomeOp) -> Self {
        ShardOp::Home(op)
    }
}

impl From<HomeRead> for ShardOp {
    fn from(op: HomeRead) -> Self {
        ShardOp::Home(HomeOp::Read(op))
    }
}

impl From<HomeWrite> for ShardOp {
    fn from(op: HomeWrite) -> Self {
        ShardOp::Home(HomeOp::Write(op))
    }
}

impl TryFrom<ShardReply> for HomeReadReply {
    type Error = ShardReply;
    fn try_from(reply: ShardReply) -> Result<Self, ShardReply> {
        match reply {
            ShardReply::Home(HomeReply::Read(r)) => Ok(r),
            other => Err(other),
        }
    }
}

impl TryFrom<ShardReply> for HomeWriteReply {
    type Error = ShardReply;
    fn try_from(reply: ShardReply) -> Result<Self, ShardReply> {
        match reply {
            ShardReply::Home(HomeReply::Write(r)) => Ok(r),
            other => Err(other),
        }
    }
}
