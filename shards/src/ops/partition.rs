//! Partition operations: sent to the shard holding a partition of a
//! collection, by the collection's home shard (the writes it planned, the
//! start of an export) or by a dispatcher (search, count, get a point,
//! export chunks). They run to completion on that shard and never message
//! another: their reply is a [`PartitionReply`], not a plan.
//!
//! Operations that change a partition carry the collection's `uid` and are
//! ignored by a partition of another incarnation (delete then re-create).

use super::{CollectionSpec, Hit, PointIn, ShardOp, ShardReply};
use crate::math::distance::Metric;
use crate::partition::{HnswStatus, IndexKind, IvfChoice, IvfStatus};
use crate::payload::filter::Filter;
use crate::payload::Payload;
use std::sync::Arc;

family! {
    /// An operation on the partition of a collection placed on the
    /// receiving shard.
    PartitionOp => PartitionReply {
        CreatePartition(CreatePartition) -> (),
        DropPartition(DropPartition) -> (),
        ApplyUpsert(ApplyUpsert) -> (),
        ApplyDelete(ApplyDelete) -> (),
        /// Points whose payload changed.
        ApplySetPayload(ApplySetPayload) -> u64,
        /// Points whose payload changed.
        ApplyDeletePayloadKeys(ApplyDeletePayloadKeys) -> u64,
        Search(SearchOp) -> PartitionHits,
        GetPoint(GetPoint) -> PointIn,
        Count(Count) -> u64,
        IndexStatus(IndexStatus) -> IndexState,
        RestoreEncoded(RestoreEncoded) -> (),
        ExportBegin(ExportBegin) -> (),
        ExportChunk(ExportChunk) -> Exported,
        ExportEnd(ExportEnd) -> (),
    }
}

#[derive(Clone, Debug)]
pub struct CreatePartition {
    pub uid: u64,
    pub spec: CollectionSpec,
}

#[derive(Clone, Debug)]
pub struct DropPartition {
    pub name: String,
    pub uid: u64,
}

#[derive(Clone, Debug)]
pub struct ApplyUpsert {
    pub name: String,
    pub uid: u64,
    pub points: Vec<PointIn>,
}

#[derive(Clone, Debug)]
pub struct ApplyDelete {
    pub name: String,
    pub uid: u64,
    pub ids: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct ApplySetPayload {
    pub name: String,
    pub uid: u64,
    pub ids: Vec<u64>,
    pub patch: Payload,
}

#[derive(Clone, Debug)]
pub struct ApplyDeletePayloadKeys {
    pub name: String,
    pub uid: u64,
    pub ids: Vec<u64>,
    pub keys: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct SearchOp {
    pub name: String,
    pub queries: Arc<Vec<Vec<f32>>>,
    pub metric: Metric,
    pub k: usize,
    pub filter: Option<Arc<Filter>>,
    pub include_payload: bool,
    /// `None`: exact scan. Otherwise use the partition's index as chosen.
    pub approx: Option<IvfChoice>,
}

/// One partition's answer to a search: its top k per query.
#[derive(Clone, Debug)]
pub struct PartitionHits {
    pub per_query: Vec<Vec<Hit>>,
    pub n_points: u64,
    /// Calibrated recall of the index setting used; `None`: exact.
    pub estimated_recall: Option<f32>,
    /// The index that answered (`None`: exact).
    pub index: Option<IndexKind>,
    /// Real queries the calibration used rests on (`None`: held-out
    /// points, or exact).
    pub calibration_real: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct GetPoint {
    pub name: String,
    pub id: u64,
}

/// Points of the partition passing `filter` (all without one).
#[derive(Clone, Debug)]
pub struct Count {
    pub name: String,
    pub filter: Option<Arc<Filter>>,
}

/// The index state of this shard's partition of a collection.
#[derive(Clone, Debug)]
pub struct IndexStatus {
    pub name: String,
}

/// The IVF index, the HNSW graph and the payload indexes of a partition.
#[derive(Clone, Debug)]
pub struct IndexState {
    pub ivf: Option<IvfStatus>,
    pub hnsw: Option<Box<HnswStatus>>,
    /// Per payload index: field, distinct strings/booleans, numeric
    /// entries, still building.
    pub payload: Vec<(String, usize, usize, bool)>,
    /// Memory-light mode: rows in memory and in the rows file.
    pub rows: Option<crate::partition::RowsStatus>,
}

/// Snapshot loading: an encoded `LogRecord::Upsert` whose points all
/// belong to this shard's partition, decoded here (on this core).
#[derive(Clone, Debug)]
pub struct RestoreEncoded {
    pub name: String,
    pub uid: u64,
    pub body: Vec<u8>,
}

/// Snapshot, backup and export support: remember the partition as it is
/// now, as export `export` (several may run at once) ...
#[derive(Clone, Debug)]
pub struct ExportBegin {
    pub name: String,
    pub uid: u64,
    pub export: u64,
}

/// ... hand out up to `max_points` of it ...
#[derive(Clone, Debug)]
pub struct ExportChunk {
    pub name: String,
    pub uid: u64,
    pub export: u64,
    pub max_points: usize,
    /// Send the partition's real queries with the last chunk (backups
    /// only: snapshots and NDJSON exports do not keep them).
    pub with_queries: bool,
}

/// A chunk of a partition export; `done` when it was the last.
#[derive(Clone, Debug)]
pub struct Exported {
    pub points: Vec<PointIn>,
    pub done: bool,
    /// With the last chunk, if asked for: the partition's reservoir of real
    /// queries, if it holds any (a backup keeps them for calibration after
    /// a restore).
    pub real_queries: Option<crate::index::calib::RealQueries>,
}

/// ... or forget it (an abandoned snapshot or export).
#[derive(Clone, Debug)]
pub struct ExportEnd {
    pub name: String,
    pub uid: u64,
    pub export: u64,
}

impl PartitionOp {
    /// Whether the operation changes the partition's points (the indexer
    /// paces itself by writes).
    pub fn changes_data(&self) -> bool {
        match self {
            PartitionOp::ApplyUpsert(_)
            | PartitionOp::ApplyDelete(_)
            | PartitionOp::ApplySetPayload(_)
            | PartitionOp::ApplyDeletePayloadKeys(_) => true,
            PartitionOp::CreatePartition(_)
            | PartitionOp::DropPartition(_)
            | PartitionOp::Search(_)
            | PartitionOp::GetPoint(_)
            | PartitionOp::Count(_)
            | PartitionOp::IndexStatus(_)
            | PartitionOp::RestoreEncoded(_)
            | PartitionOp::ExportBegin(_)
            | PartitionOp::ExportChunk(_)
            | PartitionOp::ExportEnd(_) => false,
        }
    }
}

impl PartitionReply {
    /// Points whose payload the operation changed (see
    /// `HomeReply::add_changed`); 0 for every other reply.
    pub fn changed(&self) -> u64 {
        match self {
            PartitionReply::ApplySetPayload(n) | PartitionReply::ApplyDeletePayloadKeys(n) => *n,
            PartitionReply::CreatePartition(())
            | PartitionReply::DropPartition(())
            | PartitionReply::ApplyUpsert(())
            | PartitionReply::ApplyDelete(())
            | PartitionReply::Search(_)
            | PartitionReply::GetPoint(_)
            | PartitionReply::Count(_)
            | PartitionReply::IndexStatus(_)
            | PartitionReply::RestoreEncoded(())
            | PartitionReply::ExportBegin(())
            | PartitionReply::ExportChunk(_)
            | PartitionReply::ExportEnd(()) => 0,
        }
    }
}

/// The whole family as one request (the partition operations of a plan).
impl super::Op for PartitionOp {
    type Reply = PartitionReply;
    fn reply(reply: ShardReply) -> Option<PartitionReply> {
        PartitionReply::try_from(reply).ok()
    }
}

impl From<PartitionOp> for ShardOp {
    fn from(op: PartitionOp) -> Self {
        ShardOp::Partition(op)
    }
}

impl TryFrom<ShardReply> for PartitionReply {
    type Error = ShardReply;
    fn try_from(reply: ShardReply) -> Result<Self, ShardReply> {
        match reply {
            ShardReply::Partition(r) => Ok(r),
            other => Err(other),
        }
    }
}
