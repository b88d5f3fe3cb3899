//! Messages between shards: what a dispatcher asks a shard to do, and the
//! answers. Everything is `Send` (it crosses cores over channels) and holds
//! ids, vectors and scores; no references into a shard's data.

use crate::filter::Filter;
use crate::math::distance::Metric;
use crate::payload::Payload;
use crate::placement::ShardId;
use std::sync::Arc;

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
pub struct SearchOp {
    pub name: String,
    pub queries: Arc<Vec<Vec<f32>>>,
    pub metric: Metric,
    pub k: usize,
    pub filter: Option<Arc<Filter>>,
    pub include_payload: bool,
    /// `None`: exact scan. Otherwise use the partition's index as chosen.
    pub approx: Option<crate::partition::IvfChoice>,
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

/// What a shard is asked to do. "Home" operations go to the collection's home
/// shard, which orders them and fans the partition work out; "partition"
/// operations touch one shard's partition only and never call other shards.
#[derive(Clone, Debug)]
pub enum Op {
    // --- home operations ---
    CreateCollection(CollectionSpec),
    DeleteCollection {
        name: String,
    },
    GetCollection {
        name: String,
    },
    ListCollections,
    ListPoints {
        name: String,
        from: PageFrom,
        limit: usize,
    },
    Upsert {
        name: String,
        points: Vec<PointIn>,
    },
    DeletePoint {
        name: String,
        id: u64,
    },
    SetPayload {
        name: String,
        ids: Vec<u64>,
        patch: Payload,
    },
    DeletePayloadKeys {
        name: String,
        ids: Vec<u64>,
        keys: Vec<String>,
    },
    // --- partition operations ---
    CreatePartition {
        uid: u64,
        spec: CollectionSpec,
    },
    DropPartition {
        name: String,
        uid: u64,
    },
    ApplyUpsert {
        name: String,
        uid: u64,
        points: Vec<PointIn>,
    },
    ApplyDelete {
        name: String,
        uid: u64,
        ids: Vec<u64>,
    },
    ApplySetPayload {
        name: String,
        uid: u64,
        ids: Vec<u64>,
        patch: Payload,
    },
    ApplyDeletePayloadKeys {
        name: String,
        uid: u64,
        ids: Vec<u64>,
        keys: Vec<String>,
    },
    Search(SearchOp),
    GetPoint {
        name: String,
        id: u64,
    },
    Count {
        name: String,
        filter: Option<Arc<Filter>>,
    },
    Stats,
    /// Another shard's memory as it measured it (for the memory budget).
    PeerMemory {
        from: ShardId,
        bytes: u64,
    },
    IndexStatus {
        name: String,
    },
    /// Snapshot loading: an encoded `LogRecord::Upsert` whose points all
    /// belong to this shard's partition, decoded here (on this core).
    RestoreEncoded {
        name: String,
        uid: u64,
        body: Vec<u8>,
    },
    /// Home side of an export (backup, NDJSON export): the collections
    /// homed here that `only` names (every one when empty; with `tenant`,
    /// only that tenant's) are cut at this shard's current LSN, and an
    /// export `export` begins on each of their partitions. Answered with
    /// `Reply::Cut` once every partition has begun.
    ExportCut {
        export: u64,
        only: Vec<String>,
        tenant: Option<String>,
    },
    /// Snapshot, backup and export support: remember the partition as it is
    /// now, as export `export` (several may run at once) ...
    ExportBegin {
        name: String,
        uid: u64,
        export: u64,
    },
    /// ... hand out up to `max_points` of it (`Reply::Exported`) ...
    ExportChunk {
        name: String,
        uid: u64,
        export: u64,
        max_points: usize,
    },
    /// ... or forget it (an abandoned snapshot or export).
    ExportEnd {
        name: String,
        uid: u64,
        export: u64,
    },
}

impl Op {
    /// Home operations that change data (and are logged).
    pub fn is_home_write(&self) -> bool {
        matches!(
            self,
            Op::CreateCollection(_)
                | Op::DeleteCollection { .. }
                | Op::Upsert { .. }
                | Op::DeletePoint { .. }
                | Op::SetPayload { .. }
                | Op::DeletePayloadKeys { .. }
        )
    }

    /// Operations that change data, home or partition (not catalog-only
    /// reads, searches or exports).
    pub fn changes_data(&self) -> bool {
        self.is_home_write()
            || matches!(
                self,
                Op::ApplyUpsert { .. }
                    | Op::ApplyDelete { .. }
                    | Op::ApplySetPayload { .. }
                    | Op::ApplyDeletePayloadKeys { .. }
            )
    }

    /// Partition operations run to completion on the receiving shard
    /// without messaging anyone; home operations may fan out.
    pub fn is_partition_op(&self) -> bool {
        matches!(
            self,
            Op::CreatePartition { .. }
                | Op::DropPartition { .. }
                | Op::ApplyUpsert { .. }
                | Op::ApplyDelete { .. }
                | Op::ApplySetPayload { .. }
                | Op::ApplyDeletePayloadKeys { .. }
                | Op::Search(_)
                | Op::GetPoint { .. }
                | Op::Count { .. }
                | Op::Stats
                | Op::IndexStatus { .. }
                | Op::RestoreEncoded { .. }
                | Op::ExportBegin { .. }
                | Op::ExportChunk { .. }
                | Op::ExportEnd { .. }
        )
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

#[derive(Clone, Debug)]
pub enum Reply {
    Info(CollectionInfo),
    Infos(Vec<CollectionInfo>),
    Deleted,
    /// Per input point, in request order: (id, created).
    Upserted(Vec<(u64, bool)>),
    Done,
    Changed(u64),
    Hits {
        per_query: Vec<Vec<Hit>>,
        n_points: u64,
        /// Calibrated recall of the index setting used; `None`: exact.
        estimated_recall: Option<f32>,
        /// The index that answered (`None`: exact).
        index: Option<crate::partition::IndexKind>,
        /// Real queries the calibration used rests on (`None`: held-out
        /// points, or exact).
        calibration_real: Option<usize>,
    },
    Point {
        id: u64,
        values: Vec<f32>,
        payload: Payload,
    },
    Count(u64),
    Page(PointsPage),
    Stats(ShardDataStats),
    /// Index state of this shard's partition of a collection.
    /// The IVF index, the HNSW graph and the payload indexes (field,
    /// distinct strings/booleans, numeric entries) of a partition.
    IndexStatus(
        Option<crate::partition::IvfStatus>,
        Option<Box<crate::partition::HnswStatus>>,
        Vec<(String, usize, usize, bool)>,
    ),
    /// An export's cut (`Op::ExportCut`): the home shard's LSN at the cut
    /// (0 without persistence; filled in by the router, which owns the WAL)
    /// and the collections cut, with their uids and point counts, in
    /// creation order.
    Cut {
        lsn: u64,
        collections: Vec<(CollectionSpec, u64)>,
        points: Vec<u64>,
    },
    /// A chunk of a partition export; `done` when it was the last.
    Exported {
        points: Vec<PointIn>,
        done: bool,
    },
}

/// A reply plus the partition operations the home shard still has to send to
/// other shards (in this order) before the reply may be given, and for a
/// write, its log record (kind, encoded body) to make durable first.
#[derive(Debug)]
pub struct Plan {
    pub reply: Reply,
    pub fanout: Vec<(ShardId, Op)>,
    pub log: Option<(u8, Vec<u8>)>,
}

impl From<Reply> for Plan {
    fn from(reply: Reply) -> Self {
        Plan { reply, fanout: Vec::new(), log: None }
    }
}
