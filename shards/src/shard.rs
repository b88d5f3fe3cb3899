//! One shard's data: the catalog entries of the collections homed here
//! (the home role, `shard/catalog.rs`) and the partitions placed here (the
//! partition role, `shard/partitions.rs`). Each role has one synchronous
//! entry point, run in arrival order: [`Shard::execute_home`] answers with a
//! [`crate::ops::Plan`] (a reply plus the partition operations to send on),
//! [`Shard::execute_partition`] with a reply only, so a partition operation
//! cannot fan out. Below: the memory view of the budget and the hand-offs
//! of the background index work.

use crate::export::Export;
use crate::ops::{CollectionSpec, ShardDataStats};
use crate::partition::Partition;
use crate::placement::{Placement, ShardId};
use catalog::CatalogEntry;
use std::collections::HashMap;

mod catalog;
mod partitions;
pub use partitions::{ExactScan, SearchStart};

/// Limits the shard enforces itself (the rest are checked by the API layer).
#[derive(Clone, Copy, Debug)]
pub struct ShardLimits {
    pub max_points_per_collection: u64,
    /// Memory all shards' data may hold together (0: no budget).
    pub memory_budget_bytes: u64,
    /// Graph settings for the partitions this shard creates.
    pub hnsw: crate::index::hnsw::HnswParams,
    /// Collections and points per tenant (checked here: a tenant's
    /// collections are all homed on one shard).
    pub tenant_quota: crate::quota::TenantQuota,
}

struct PartitionSlot {
    uid: u64,
    spec: CollectionSpec,
    data: Partition,
    /// Snapshots, backups and exports copying this partition out, by
    /// export id (usually none; a few at most).
    exports: Vec<(u64, Export)>,
}

pub struct Shard {
    id: ShardId,
    placement: Placement,
    limits: ShardLimits,
    catalog: HashMap<String, CatalogEntry>,
    partitions: HashMap<String, PartitionSlot>,
    next_uid: u64,
    memory: MemoryView,
    /// Memory-light mode: opens the rows file of each partition created.
    cold_files: Option<std::rc::Rc<dyn crate::partition::ColdFiles>>,
    /// Memory-light mode, during a restart's replay: rows go to the rows
    /// files as they are applied ([`REPLAY_HOT_ROWS`]).
    replaying: bool,
}

/// Rows a memory-light partition holds in memory during a restart's
/// replay before it writes them out (at 384 dimensions, 3 MiB).
pub const REPLAY_HOT_ROWS: usize = 2048;

/// This shard's view of the memory the data holds, for the memory budget:
/// its own bytes as last measured plus an estimate of what it admitted
/// since, and what each other shard last reported.
#[derive(Default)]
struct MemoryView {
    measured: u64,
    admitted: u64,
    peers: HashMap<ShardId, u64>,
}

/// Bytes a new point is assumed to add until the next measurement, on top
/// of its vector (ids, norms, maps, catalog entry; payloads and indexes are
/// counted when measured).
pub const POINT_OVERHEAD_BYTES: u64 = 128;

impl Shard {
    pub fn new(id: ShardId, placement: Placement, limits: ShardLimits) -> Self {
        Shard {
            id,
            placement,
            limits,
            catalog: HashMap::new(),
            partitions: HashMap::new(),
            next_uid: 1,
            memory: MemoryView::default(),
            cold_files: None,
            replaying: false,
        }
    }

    /// Keep the rows of partitions created from now on in rows files
    /// (memory-light mode, `partition::cold`).
    pub fn set_cold_files(&mut self, files: std::rc::Rc<dyn crate::partition::ColdFiles>) {
        self.cold_files = Some(files);
    }

    /// Memory-light mode: a restart's replay starts (`true`; rows applied
    /// go to the rows files once [`REPLAY_HOT_ROWS`] of a partition are in
    /// memory) or ends (`false`; every row still in memory goes). Without
    /// it a restart held every row in memory until the graphs were built.
    pub fn set_replaying(&mut self, on: bool) {
        self.replaying = on && self.cold_files.is_some();
        if !on {
            self.partitions.values_mut().for_each(|s| {
                s.data.evict_replayed(1);
            });
        }
    }

    /// Write up to `max` rows the graphs hold to the rows files of one
    /// partition; `true` if any partition could move more.
    pub fn evict_cold(&mut self, max: usize) -> bool {
        self.partitions.values_mut().any(|s| s.data.evict_cold(max))
    }

    /// Drop the rows read from rows files for borrowers (see
    /// `Partition::release_reads`).
    fn release_reads(&mut self) {
        if self.cold_files.is_some() {
            self.partitions.values_mut().for_each(|s| s.data.release_reads());
        }
    }

    pub fn id(&self) -> ShardId {
        self.id
    }

    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Memory the data holds on every shard, as this shard knows it.
    pub fn memory_in_use(&self) -> u64 {
        self.memory.measured + self.memory.admitted + self.memory.peers.values().sum::<u64>()
    }

    /// Measure this shard's own memory again (dropping the estimate of
    /// what it admitted since the last measurement); returns the bytes.
    pub fn measure_memory(&mut self) -> u64 {
        self.memory.measured = self.data_stats().memory_bytes;
        self.memory.admitted = 0;
        self.memory.measured
    }

    /// Another shard's memory as it measured it (for the memory budget).
    pub fn record_peer_memory(&mut self, from: ShardId, bytes: u64) {
        self.memory.peers.insert(from, bytes);
    }

    /// A partition that wants its index (re)built, with a builder over a
    /// partition's rows: (collection, uid, builder). One at a time.
    pub fn ivf_next_build(
        &mut self,
        seed: u64,
        now: std::time::Instant,
    ) -> Option<(String, u64, crate::index::ivf::Builder)> {
        // Every partition looks (each tracks whether its writes paused).
        let mut pick = None;
        for (name, slot) in self.partitions.iter_mut() {
            if slot.data.ivf_wanted(now) && pick.is_none() {
                pick = Some(name.clone());
            }
        }
        let name = pick?;
        let slot = self.partitions.get_mut(&name)?;
        Some((name, slot.uid, slot.data.ivf_build_start(seed, now)))
    }

    /// A partition wanting its HNSW graph (re)built, and the builder
    /// (`writes_paused`: see `Partition::graph_wanted`).
    pub fn graph_next_build(
        &mut self,
        seed: u64,
        writes_paused: bool,
    ) -> Option<(String, u64, crate::index::hnsw::GraphBuilder)> {
        let (name, slot) = self.partitions.iter_mut().find(|(_, s)| s.data.graph_wanted(writes_paused))?;
        // Wanted only because writes paused: given up if they resume.
        let builder = if slot.data.graph_wanted(false) {
            slot.data.graph_build_start(seed)
        } else {
            slot.data.graph_build_start_idle(seed)
        };
        Some((name.clone(), slot.uid, builder))
    }

    /// One step of a running graph build; `None` if its partition is
    /// gone or the build was given up (`Partition::graph_build_abandoned`):
    /// the build is then dropped.
    pub fn graph_build_step(&mut self, name: &str, uid: u64, b: &mut crate::index::hnsw::GraphBuilder) -> Option<bool> {
        let slot = self.partitions.get_mut(name).filter(|s| s.uid == uid)?;
        if slot.data.graph_build_abandoned() {
            return None;
        }
        let done = slot.data.graph_build_step(b);
        self.release_reads();
        Some(done)
    }

    /// One step of bringing a finished graph up to date before its install
    /// (`Partition::graph_catch_up`): the changes still waiting, `None` if
    /// its partition is gone or builds no graph.
    pub fn graph_catch_up(
        &mut self,
        name: &str,
        uid: u64,
        graph: &mut crate::index::hnsw::Hnsw,
        budget: std::time::Duration,
    ) -> Option<usize> {
        let slot = self.partitions.get_mut(name).filter(|s| s.uid == uid)?;
        let left = slot.data.graph_catch_up(graph, budget);
        self.release_reads();
        left
    }

    pub fn graph_install(
        &mut self,
        name: &str,
        uid: u64,
        built: (crate::index::hnsw::Hnsw, crate::index::calib::Calibration, u64),
        now: std::time::Instant,
    ) -> crate::partition::Retired {
        let slot = self.partitions.get_mut(name).filter(|s| s.uid == uid);
        slot.map_or_else(Default::default, |slot| slot.data.graph_install(built, now))
    }

    /// Index up to `n` points for a payload index being built; `true` if
    /// any partition has more to do.
    pub fn payload_index_step(&mut self, n: usize) -> bool {
        let Some(slot) = self.partitions.values_mut().find(|s| s.data.payload_index_building()) else { return false };
        slot.data.payload_index_step(n) || self.partitions.values().any(|s| s.data.payload_index_building())
    }

    /// Insert points changed since a graph build, for about `budget`;
    /// `true` if any partition has more.
    pub fn graph_extend(&mut self, budget: std::time::Duration) -> bool {
        let Some(slot) = self.partitions.values_mut().find(|s| s.data.graph_pending()) else { return false };
        slot.data.graph_extend(budget) || self.graph_pending()
    }

    /// Whether any partition has points waiting for its graph.
    pub fn graph_pending(&self) -> bool {
        self.partitions.values().any(|s| s.data.graph_pending())
    }

    /// Points waiting for their partition's graph (scanned exactly by
    /// every search) and tombstones waiting for repair, over the shard.
    pub fn graph_backlog(&self) -> usize {
        self.partitions.values().map(|s| s.data.graph_backlog()).sum()
    }

    /// One step of a running IVF build; `None` if its partition is gone
    /// (the build is then dropped).
    pub fn ivf_build_step(&mut self, name: &str, uid: u64, b: &mut crate::index::ivf::Builder) -> Option<bool> {
        let slot = self.partitions.get(name).filter(|s| s.uid == uid)?;
        let done = slot.data.ivf_build_step(b);
        self.release_reads();
        Some(done)
    }

    /// Install a finished index, if its partition is still the same
    /// incarnation; returns the memory it replaced (see
    /// [`crate::partition::Retired`]).
    pub fn ivf_install(&mut self, name: &str, uid: u64, index: crate::index::ivf::Ivf) -> crate::partition::Retired {
        let slot = self.partitions.get_mut(name).filter(|s| s.uid == uid);
        slot.map_or_else(Default::default, |slot| slot.data.ivf_install(index))
    }

    /// The partitions that have seen real queries, by collection name.
    fn partitions_with_queries(&self) -> Vec<(&String, &PartitionSlot)> {
        let mut out: Vec<_> = self.partitions.iter().filter(|(_, s)| !s.data.real_queries().is_empty()).collect();
        out.sort_by_key(|(name, _)| *name);
        out
    }

    /// Each partition's reservoir of real queries: (collection, uid,
    /// queries), for the server to save across restarts.
    pub fn real_queries(&self) -> Vec<(String, u64, crate::index::calib::RealQueries)> {
        let with = self.partitions_with_queries();
        with.into_iter().map(|(name, s)| (name.clone(), s.uid, s.data.real_queries().clone())).collect()
    }

    /// What the saved reservoirs must match to be current: per partition
    /// with queries, (collection, uid, queries ever offered), by name.
    pub fn real_queries_state(&self) -> Vec<(String, u64, u64)> {
        let with = self.partitions_with_queries();
        with.into_iter().map(|(name, s)| (name.clone(), s.uid, s.data.queries_offered())).collect()
    }

    /// Give saved reservoirs back to the partitions of the same collection
    /// incarnation (name and uid); returns how many partitions took one.
    pub fn restore_real_queries(&mut self, saved: Vec<(String, u64, crate::index::calib::RealQueries)>) -> usize {
        let mut taken = 0;
        for (name, uid, queries) in saved {
            if let Some(slot) = self.partitions.get_mut(&name).filter(|s| s.uid == uid) {
                taken += slot.data.restore_real_queries(queries) as usize;
            }
        }
        taken
    }

    /// A partition whose index is due a recalibration on real queries,
    /// and the job (see `partition::recal`).
    pub fn recal_next(&mut self, now: std::time::Instant) -> Option<(String, u64, crate::partition::Recalibration)> {
        self.partitions
            .iter_mut()
            .find_map(|(name, slot)| slot.data.recal_start(now).map(|r| (name.clone(), slot.uid, r)))
    }

    /// One step of a recalibration; `None` if its partition or index is
    /// gone (the job is then dropped).
    pub fn recal_step(&mut self, name: &str, uid: u64, r: &mut crate::partition::Recalibration) -> Option<bool> {
        let done = self.partitions.get(name).filter(|s| s.uid == uid)?.data.recal_step(r);
        self.release_reads();
        done
    }

    pub fn recal_install(
        &mut self,
        name: &str,
        uid: u64,
        r: crate::partition::Recalibration,
    ) -> crate::partition::Retired {
        let slot = self.partitions.get_mut(name).filter(|s| s.uid == uid);
        slot.map_or_else(Default::default, |slot| slot.data.recal_install(r, std::time::Instant::now()))
    }

    pub fn data_stats(&self) -> ShardDataStats {
        ShardDataStats {
            collections_homed: self.catalog.len() as u64,
            points_homed: self.catalog.values().map(|e| e.ids.len() as u64).sum(),
            partitions: self.partitions.len() as u64,
            memory_bytes: self.partitions.values().map(|s| s.data.mem_bytes() as u64).sum::<u64>()
                + self.catalog.values().map(|e| e.ids.len() as u64 * 40).sum::<u64>(),
            indexes: self.partitions.iter().map(|(name, s)| s.data.index_progress(name)).collect(),
        }
    }
}
