//! The home role of a shard: the catalog entries of the collections homed
//! here. Catalog reads are answered from them. A write is validated against
//! them without changing anything (`plan_write`), described as its effect
//! (a [`LogRecord`], logged by the caller) and applied (`apply_record`, also
//! the path of replay), which updates the entry and issues the partition
//! operations: those for this shard run at once, the rest come back in the
//! [`Plan`]'s fan-out.

use super::Shard;
use crate::error::{collection_not_found, invalid, point_not_found, ShardError};
use crate::ops::{
    ApplyDelete, ApplyDeletePayloadKeys, ApplySetPayload, ApplyUpsert, CollectionInfo, CollectionSpec, CreatePartition,
    Cut, DropPartition, ExportBegin, ExportCut, HomeOp, HomeRead, HomeReadReply, HomeReply, HomeWrite, HomeWriteReply,
    PageFrom, PartitionOp, Plan, PointIn, PointsPage, RestoreEncoded,
};
use crate::payload::blank_key;
use crate::placement::ShardId;
use crate::record::LogRecord;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

/// Point ids grouped by the shard holding them.
type IdsByShard = Vec<(ShardId, Vec<u64>)>;

/// A collection as its home shard knows it.
#[derive(Debug)]
pub(super) struct CatalogEntry {
    spec: CollectionSpec,
    uid: u64,
    /// Every live point id, ascending: pagination, counts and the point cap.
    pub(super) ids: BTreeSet<u64>,
}

impl Shard {
    /// Run one home operation. A write comes back with the encoded
    /// [`LogRecord`] of its effect in [`Plan::log`], for the caller to make
    /// durable before it answers.
    pub fn execute_home(&mut self, op: HomeOp) -> Result<Plan, ShardError> {
        match op {
            HomeOp::Read(read) => self.read(read),
            HomeOp::Write(write) => {
                let record = self.plan_write(write)?;
                let log = (record.kind(), record.encode());
                let mut plan = self.apply_record(record)?;
                plan.log = Some(log);
                Ok(plan)
            }
        }
    }

    fn read(&mut self, op: HomeRead) -> Result<Plan, ShardError> {
        let reply = match op {
            HomeRead::GetCollection(q) => HomeReadReply::GetCollection(self.info(self.entry(&q.name)?)),
            HomeRead::ListCollections(_) => {
                HomeReadReply::ListCollections(self.catalog.values().map(|e| self.info(e)).collect())
            }
            HomeRead::ListPoints(q) => HomeReadReply::ListPoints(page(self.entry(&q.name)?, q.from, q.limit)),
            HomeRead::ExportCut(q) => return self.export_cut(q),
        };
        Ok(HomeReply::Read(reply).into())
    }

    /// Validate a home write against the current state, without changing
    /// anything, and describe its effect as a log record.
    fn plan_write(&mut self, op: HomeWrite) -> Result<LogRecord, ShardError> {
        match op {
            HomeWrite::CreateCollection(crate::ops::CreateCollection(spec)) => {
                if self.catalog.contains_key(&spec.name) {
                    return Err(ShardError::Conflict(format!("collection '{}' already exists", spec.name)));
                }
                if let Some(tenant) = crate::placement::tenant_of(&spec.name) {
                    self.limits.tenant_quota.admit(tenant, self.tenant_usage(tenant), 1, 0)?;
                }
                let uid = ((self.id as u64) << 48) | self.next_uid;
                Ok(LogRecord::CreateCollection { spec, uid })
            }
            HomeWrite::DeleteCollection(q) => {
                self.entry(&q.name)?;
                Ok(LogRecord::DeleteCollection { name: q.name })
            }
            HomeWrite::Upsert(q) => {
                let new_bytes = self.validate_upsert(&q.name, &q.points)?;
                self.memory.admitted += new_bytes;
                Ok(LogRecord::Upsert { name: q.name, points: q.points })
            }
            HomeWrite::DeletePoint(q) => {
                if !self.entry(&q.name)?.ids.contains(&q.id) {
                    return Err(point_not_found(&q.name, q.id));
                }
                Ok(LogRecord::DeletePoints { name: q.name, ids: vec![q.id] })
            }
            HomeWrite::SetPayload(q) => {
                if let Some(k) = blank_key(&q.patch) {
                    return Err(invalid(format!("payload key '{k}' is blank")));
                }
                let ids = self.existing_ids(&q.name, q.ids)?;
                Ok(LogRecord::SetPayload { name: q.name, ids, patch: q.patch })
            }
            HomeWrite::DeletePayloadKeys(q) => {
                if q.keys.iter().any(|k| k.trim().is_empty()) {
                    return Err(invalid("payload keys must not be blank"));
                }
                let ids = self.existing_ids(&q.name, q.ids)?;
                Ok(LogRecord::DeletePayloadKeys { name: q.name, ids, keys: q.keys })
            }
        }
    }

    /// Apply the effect of a validated write: update the catalog and issue
    /// the partition operations. Used for live writes and for WAL replay, so
    /// it checks no limits (a replayed write was accepted when it happened).
    /// Each kind of record answers as the write that logs it.
    pub fn apply_record(&mut self, record: LogRecord) -> Result<Plan, ShardError> {
        let placement = self.placement;
        let (reply, ops): (HomeWriteReply, Vec<(ShardId, PartitionOp)>) = match record {
            LogRecord::CreateCollection { spec, uid } => {
                self.next_uid = self.next_uid.max((uid & ((1 << 48) - 1)) + 1);
                let entry = CatalogEntry { spec: spec.clone(), uid, ids: BTreeSet::new() };
                let info = self.info(&entry);
                self.catalog.insert(spec.name.clone(), entry);
                let ops = placement
                    .shards_of(&spec.name)
                    .into_iter()
                    .map(|s| (s, CreatePartition { uid, spec: spec.clone() }.into()))
                    .collect();
                (HomeWriteReply::CreateCollection(info), ops)
            }
            LogRecord::DeleteCollection { name } => {
                let entry = self.catalog.remove(&name).ok_or_else(|| collection_not_found(&name))?;
                let ops = placement
                    .shards_of(&name)
                    .into_iter()
                    .map(|s| (s, DropPartition { name: name.clone(), uid: entry.uid }.into()))
                    .collect();
                (HomeWriteReply::DeleteCollection(()), ops)
            }
            LogRecord::Upsert { name, points } => {
                let entry = self.entry_mut(&name)?;
                let results: Vec<(u64, bool)> = points.iter().map(|p| (p.id, entry.ids.insert(p.id))).collect();
                let uid = entry.uid;
                let mut groups: Vec<Vec<PointIn>> = vec![Vec::new(); placement.partitions];
                for p in points {
                    groups[placement.partition_of(p.id)].push(p);
                }
                let ops = groups
                    .into_iter()
                    .enumerate()
                    .filter(|(_, g)| !g.is_empty())
                    .map(|(part, points)| {
                        let shard = placement.partition_shard(&name, part);
                        (shard, ApplyUpsert { name: name.clone(), uid, points }.into())
                    })
                    .collect();
                (HomeWriteReply::Upsert(results), ops)
            }
            LogRecord::DeletePoints { name, ids } => {
                let entry = self.entry_mut(&name)?;
                ids.iter().for_each(|id| {
                    entry.ids.remove(id);
                });
                let uid = entry.uid;
                let ops = self
                    .group_by_shard(&name, ids)
                    .into_iter()
                    .map(|(s, ids)| (s, ApplyDelete { name: name.clone(), uid, ids }.into()))
                    .collect();
                (HomeWriteReply::DeletePoint(()), ops)
            }
            LogRecord::SetPayload { name, ids, patch } => {
                let uid = self.entry(&name)?.uid;
                let ops = self
                    .group_by_shard(&name, ids)
                    .into_iter()
                    .map(|(s, ids)| (s, ApplySetPayload { name: name.clone(), uid, ids, patch: patch.clone() }.into()))
                    .collect();
                (HomeWriteReply::SetPayload(0), ops)
            }
            LogRecord::DeletePayloadKeys { name, ids, keys } => {
                let uid = self.entry(&name)?.uid;
                let ops = self
                    .group_by_shard(&name, ids)
                    .into_iter()
                    .map(|(s, ids)| {
                        (s, ApplyDeletePayloadKeys { name: name.clone(), uid, ids, keys: keys.clone() }.into())
                    })
                    .collect();
                (HomeWriteReply::DeletePayloadKeys(0), ops)
            }
        };
        self.route(HomeReply::Write(reply), ops)
    }

    fn entry(&self, name: &str) -> Result<&CatalogEntry, ShardError> {
        self.catalog.get(name).ok_or_else(|| collection_not_found(name))
    }

    fn entry_mut(&mut self, name: &str) -> Result<&mut CatalogEntry, ShardError> {
        self.catalog.get_mut(name).ok_or_else(|| collection_not_found(name))
    }

    fn info(&self, e: &CatalogEntry) -> CollectionInfo {
        CollectionInfo { spec: e.spec.clone(), point_count: e.ids.len() as u64, partitions: self.placement.partitions }
    }

    /// Apply partition ops addressed to this shard now; return the others.
    /// A payload write's reply accumulates the local counts.
    fn route(&mut self, mut reply: HomeReply, ops: Vec<(ShardId, PartitionOp)>) -> Result<Plan, ShardError> {
        let mut fanout = Vec::new();
        for (target, op) in ops {
            if target == self.id {
                reply.add_changed(self.execute_partition(op)?.changed());
            } else {
                fanout.push((target, op));
            }
        }
        Ok(Plan { reply, fanout, log: None })
    }

    /// Collections and points `tenant` holds (all homed on this shard).
    fn tenant_usage(&self, tenant: &str) -> crate::quota::Usage {
        let mut u = crate::quota::Usage::default();
        for e in self.catalog.values().filter(|e| crate::placement::tenant_of(&e.spec.name) == Some(tenant)) {
            u.collections += 1;
            u.points += e.ids.len() as u64;
        }
        u
    }

    /// Upsert validation: dimension, finiteness, payload keys, point cap,
    /// memory budget. Returns the bytes the new points are estimated to add.
    fn validate_upsert(&self, name: &str, points: &[PointIn]) -> Result<u64, ShardError> {
        let cap = self.limits.max_points_per_collection;
        let entry = self.entry(name)?;
        for (i, p) in points.iter().enumerate() {
            if p.values.len() != entry.spec.dimension {
                return Err(invalid(format!(
                    "point {} (item {i}): vector has {} values, collection '{name}' has dimension {}",
                    p.id,
                    p.values.len(),
                    entry.spec.dimension
                )));
            }
            if entry.spec.strict_finite && p.values.iter().any(|v| !v.is_finite()) {
                return Err(invalid(format!(
                    "point {} (item {i}): vector has a non-finite value and collection '{name}' is strict_finite",
                    p.id
                )));
            }
            if let Some(k) = blank_key(&p.payload) {
                return Err(invalid(format!("point {} (item {i}): payload key '{k}' is blank", p.id)));
            }
        }
        let fresh: BTreeSet<u64> = points.iter().map(|p| p.id).filter(|id| !entry.ids.contains(id)).collect();
        if let Some(tenant) = crate::placement::tenant_of(name) {
            self.limits.tenant_quota.admit(tenant, self.tenant_usage(tenant), 0, fresh.len() as u64)?;
        }
        if entry.ids.len() as u64 + fresh.len() as u64 > cap {
            return Err(ShardError::ResourceExhausted(format!(
                "collection '{name}' would exceed its cap of {cap} points ({} stored, {} new)",
                entry.ids.len(),
                fresh.len()
            )));
        }
        let new_bytes = fresh.len() as u64 * (entry.spec.dimension as u64 * 4 + super::POINT_OVERHEAD_BYTES);
        let budget = self.limits.memory_budget_bytes;
        let in_use = self.memory_in_use();
        if budget > 0 && new_bytes > 0 && in_use + new_bytes > budget {
            return Err(ShardError::ResourceExhausted(format!(
                "memory budget of {budget} bytes would be exceeded: {in_use} bytes in use, {} new points need about \
                 {new_bytes} (delete collections to free memory)",
                fresh.len()
            )));
        }
        Ok(new_bytes)
    }

    /// Check every id exists (404 otherwise); return them deduplicated.
    fn existing_ids(&self, name: &str, ids: Vec<u64>) -> Result<Vec<u64>, ShardError> {
        let entry = self.entry(name)?;
        if let Some(missing) = ids.iter().find(|id| !entry.ids.contains(id)) {
            return Err(point_not_found(name, *missing));
        }
        Ok(ids.into_iter().collect::<BTreeSet<u64>>().into_iter().collect())
    }

    /// Group ids by the shard holding them, in shard order.
    fn group_by_shard(&self, name: &str, ids: Vec<u64>) -> IdsByShard {
        let mut by_shard: HashMap<ShardId, Vec<u64>> = HashMap::new();
        for id in ids {
            by_shard.entry(self.placement.shard_of_point(name, id)).or_default().push(id);
        }
        let mut groups: IdsByShard = by_shard.into_iter().collect();
        groups.sort_by_key(|(s, _)| *s);
        groups
    }

    /// Start-up, home side of an encoded `Upsert` record: add its ids to the
    /// catalog and return, per partition shard, the encoded points it must
    /// decode and apply ([`RestoreEncoded`]), so every core shares the
    /// decoding. Same effect as `apply_record` of the decoded record.
    pub fn restore_upsert(&mut self, body: &[u8]) -> Result<Vec<(ShardId, RestoreEncoded)>, ShardError> {
        let placement = self.placement;
        let (name, ids, bodies) = LogRecord::split_upsert(body, placement.partitions, |id| placement.partition_of(id))
            .map_err(|e| ShardError::Internal(e.to_string()))?;
        let entry = self.entry_mut(&name)?;
        entry.ids.extend(ids);
        let uid = entry.uid;
        Ok(bodies
            .into_iter()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(part, body)| {
                (placement.partition_shard(&name, part), RestoreEncoded { name: name.clone(), uid, body })
            })
            .collect())
    }

    /// The collections homed here, for a snapshot cut.
    pub fn homed_collections(&self) -> Vec<(CollectionSpec, u64)> {
        let mut out: Vec<_> = self.catalog.values().map(|e| (e.spec.clone(), e.uid)).collect();
        out.sort_by_key(|(_, uid)| *uid);
        out
    }

    /// [`ExportCut`]: the collections to export and an [`ExportBegin`] for
    /// each of their partitions, sent in order after every write planned so
    /// far, so each export starts at exactly this cut.
    fn export_cut(&mut self, cut: ExportCut) -> Result<Plan, ShardError> {
        let ExportCut { export, only, tenant } = cut;
        for name in &only {
            self.entry(name)?;
        }
        let collections: Vec<(CollectionSpec, u64)> = self
            .homed_collections()
            .into_iter()
            .filter(|(spec, _)| only.is_empty() || only.contains(&spec.name))
            .filter(|(spec, _)| tenant.is_none() || crate::placement::tenant_of(&spec.name) == tenant.as_deref())
            .collect();
        let begins = collections
            .iter()
            .flat_map(|(spec, uid)| {
                self.placement
                    .shards_of(&spec.name)
                    .into_iter()
                    .map(move |s| (s, ExportBegin { name: spec.name.clone(), uid: *uid, export }.into()))
            })
            .collect();
        let points = collections
            .iter()
            .map(|(spec, _)| self.catalog.get(&spec.name).map_or(0, |e| e.ids.len() as u64))
            .collect();
        self.route(HomeReply::Read(HomeReadReply::ExportCut(Cut { lsn: 0, collections, points })), begins)
    }
}

/// One page of ids (API.md §5 pagination rules).
fn page(entry: &CatalogEntry, from: PageFrom, limit: usize) -> PointsPage {
    let total = entry.ids.len() as u64;
    match from {
        PageFrom::Offset(offset) => {
            let ids: Vec<u64> = entry.ids.iter().skip(offset).take(limit).copied().collect();
            let consumed = offset as u64 + ids.len() as u64;
            let more = consumed < total;
            PointsPage {
                next_offset: more.then_some(consumed),
                next_after_id: if more { ids.last().copied() } else { None },
                ids,
                total,
            }
        }
        PageFrom::After(after) => {
            let mut it = entry.ids.range((Bound::Excluded(after), Bound::Unbounded));
            let ids: Vec<u64> = it.by_ref().take(limit).copied().collect();
            let more = it.next().is_some();
            PointsPage { next_offset: None, next_after_id: if more { ids.last().copied() } else { None }, ids, total }
        }
    }
}
