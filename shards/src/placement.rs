//! Where things live: a collection's home shard (its catalog entry and write
//! sequencer) and the shards holding its partitions; which partition a point
//! belongs to. Pure functions of names, ids and the shard count, so every
//! shard computes the same answer without asking anyone.

use crate::math::rng::mix64;

/// Index of a shard (= its executor) in `0..n_shards`.
pub type ShardId = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub n_shards: usize,
    /// Partitions per collection, `1..=n_shards`.
    pub partitions: usize,
}

/// Between a tenant and a collection name in a collection's internal name;
/// names cannot contain `:`, so the split is unambiguous.
pub const TENANT_SEP: &str = "::";

/// The tenant of an internal collection name; `None` for a collection made
/// with authentication off.
pub fn tenant_of(name: &str) -> Option<&str> {
    name.split_once(TENANT_SEP).map(|(t, _)| t)
}

/// FNV-1a: stable across processes and versions (placement must not change
/// between restarts once data is persisted).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Placement {
    pub fn new(n_shards: usize, partitions: usize) -> Self {
        assert!(n_shards >= 1 && (1..=n_shards).contains(&partitions), "validated in config");
        Placement { n_shards, partitions }
    }

    /// The shard owning the collection's catalog entry and partition 0.
    /// Every collection of a tenant (`tenant::name`) has the same home: the
    /// tenant's catalog lives on one shard, which checks its quotas in the
    /// same synchronous step as each write (exact under any concurrency).
    /// Partitions still spread over every shard.
    pub fn home(&self, name: &str) -> ShardId {
        let key = tenant_of(name).unwrap_or(name);
        (fnv1a(key.as_bytes()) % self.n_shards as u64) as ShardId
    }

    pub fn partition_shard(&self, name: &str, partition: usize) -> ShardId {
        (self.home(name) + partition) % self.n_shards
    }

    /// Shards holding the collection's partitions, partition order.
    pub fn shards_of(&self, name: &str) -> Vec<ShardId> {
        (0..self.partitions).map(|p| self.partition_shard(name, p)).collect()
    }

    /// The partition of point `id`: persisted data sits where this says,
    /// so it (and [`mix64`]) must never change.
    pub fn partition_of(&self, id: u64) -> usize {
        (mix64(id) % self.partitions as u64) as usize
    }

    pub fn shard_of_point(&self, name: &str, id: u64) -> ShardId {
        self.partition_shard(name, self.partition_of(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_land_on_distinct_shards_and_ids_spread() {
        let p = Placement::new(4, 3);
        let shards = p.shards_of("demo");
        assert_eq!(shards.len(), 3);
        assert!(shards[0] != shards[1] && shards[1] != shards[2] && shards[0] != shards[2]);
        let mut counts = [0usize; 3];
        for id in 0..30_000u64 {
            counts[p.partition_of(id)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 9_000), "{counts:?}");
    }

    /// Values from before `mix64` replaced placement's own copy of it.
    #[test]
    fn partition_of_a_point_never_changes() {
        let ids = [0u64, 1, 2, 3, 1000, 123_456_789, u64::MAX];
        assert_eq!(ids.map(|id| Placement::new(8, 8).partition_of(id)), [0, 5, 2, 0, 7, 0, 3]);
        assert_eq!(ids.map(|id| Placement::new(7, 5).partition_of(id)), [0, 4, 0, 1, 1, 4, 2]);
    }

    #[test]
    fn a_tenants_collections_share_a_home_and_others_spread() {
        let p = Placement::new(4, 4);
        let homes: std::collections::BTreeSet<_> = (0..50).map(|i| p.home(&format!("acme::c{i}"))).collect();
        assert_eq!(homes.len(), 1);
        let spread: std::collections::BTreeSet<_> = (0..50).map(|i| p.home(&format!("c{i}"))).collect();
        assert_eq!(spread.len(), 4, "names without a tenant keep their own homes");
        assert_eq!(tenant_of("acme::docs"), Some("acme"));
        assert_eq!(tenant_of("docs"), None);
    }
}
