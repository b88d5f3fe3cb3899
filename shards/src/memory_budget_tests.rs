//! The memory budget as a home shard applies it: the estimate for new
//! points, a measurement replacing it, and other shards' reports.

use crate::ops::{CollectionSpec, CreateCollection, HomeOp, HomeWrite, Plan, PointIn, Upsert};
use crate::payload::Payload;
use crate::placement::Placement;
use crate::shard::POINT_OVERHEAD_BYTES;
use crate::{Shard, ShardError, ShardLimits};

fn write(shard: &mut Shard, op: impl Into<HomeWrite>) -> Result<Plan, ShardError> {
    shard.execute_home(HomeOp::Write(op.into()))
}

fn upsert(shard: &mut Shard, ids: std::ops::Range<u64>) -> Result<Plan, ShardError> {
    let points = ids.map(|id| PointIn { id, values: vec![0.5; 16], payload: Payload::default() }).collect();
    write(shard, Upsert { name: "c".into(), points })
}

#[test]
fn new_points_past_the_budget_are_refused_with_every_shard_counted() {
    // 16 dimensions: each new point is estimated at 64 + 128 bytes.
    let per = 16 * 4 + POINT_OVERHEAD_BYTES;
    let limits = ShardLimits {
        max_points_per_collection: 1000,
        memory_budget_bytes: 50 * per,
        hnsw: Default::default(),
        tenant_quota: Default::default(),
    };
    let mut shard = Shard::new(0, Placement::new(1, 1), limits);
    write(&mut shard, CreateCollection(CollectionSpec { name: "c".into(), dimension: 16, strict_finite: true }))
        .unwrap();
    upsert(&mut shard, 0..50).unwrap();
    assert!(matches!(upsert(&mut shard, 50..51), Err(ShardError::ResourceExhausted(_))));
    // Replacing stored points adds nothing.
    upsert(&mut shard, 0..50).unwrap();
    // A measurement replaces the estimate with what the data holds.
    let measured = shard.measure_memory();
    assert!(measured > 0);
    assert_eq!(shard.memory_in_use(), measured);
    // Another shard's report counts against the same budget.
    shard.record_peer_memory(1, 50 * per);
    assert_eq!(shard.memory_in_use(), measured + 50 * per);
    let err = upsert(&mut shard, 50..51).unwrap_err();
    assert!(matches!(&err, ShardError::ResourceExhausted(m) if m.contains("memory budget")), "{err:?}");
    shard.record_peer_memory(1, 0);
    shard.measure_memory();
    // Without a budget nothing is refused for memory.
    let mut free = Shard::new(0, Placement::new(1, 1), ShardLimits { memory_budget_bytes: 0, ..limits });
    write(&mut free, CreateCollection(CollectionSpec { name: "c".into(), dimension: 16, strict_finite: true }))
        .unwrap();
    upsert(&mut free, 0..200).unwrap();
}
