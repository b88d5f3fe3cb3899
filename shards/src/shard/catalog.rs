//! The home role of a shard: the catalog entries of the collections homed
//! here, planning and applying writes, export cuts.

use super::Shard;
use crate::error::{collection_not_found, invalid, point_not_found, ShardError};
use crate::ops::{CollectionInfo, CollectionSpec, Op, PageFrom, Plan, PointIn, PointsPage, Reply};
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
    /// Validate a home write against the current state, without changing
    /// anything, and describe its effect as a log record.
    pub(super) fn plan_write(&mut self, op: Op) -> Result<LogRecord, ShardError> {
        match op {
            Op::CreateCollection(spec) => {
                if self.catalog.contains_key(&spec.name) {
                    return Err(ShardError::Conflict(format!("collection '{}' already exists", spec.name)));
                }
                if let Some(tenant) = crate::placement::tenant_of(&spec.name) {
                    self.limits.tenant_quota.admit(tenant, self.tenant_usage(tenant), 1, 0)?;
                }
                let uid = ((self.id as u64) << 48) | self.next_uid;
                Ok(LogRecord::CreateCollection { spec, uid })
            }
            Op::DeleteCollection { name } => {
                self.entry(&name)?;
                Ok(LogRecord::DeleteCollection { name })
            }
            Op::Upsert { name, points } => {
                let new_bytes = self.validate_upsert(&name, &points)?;
                self.memory.admitted += new_bytes;
                Ok(LogRecord::Upsert { name, points })
            }
            Op::DeletePoint { name, id } => {
                if !self.entry(&name)?.ids.contains(&id) {
                    return Err(point_not_found(&name, id));
                }
                Ok(LogRecord::DeletePoints { name, ids: vec![id] })
            }
            Op::SetPayload { name, ids, patch } => {
                if let Some(k) = blank_key(&patch) {
                    return Err(invalid(format!("payload key '{k}' is blank")));
                }
                let ids = self.existing_ids(&name, ids)?;
                Ok(LogRecord::SetPayload { name, ids, patch })
            }
            Op::DeletePayloadKeys { name, ids, keys } => {
                if keys.iter().any(|k| k.trim().is_empty()) {
                    return Err(invalid("payload keys must not be blank"));
                }
                let ids = self.existing_ids(&name, ids)?;
                Ok(LogRecord::DeletePayloadKeys { name, ids, keys })
            }
            other => Err(ShardError::Internal(format!("{other:?} is not a home write"))),
        }
    }

    /// Apply the effect of a validated write: update the catalog and issue
    /// the partition operations. Used for live writes and for WAL replay, so
    /// it checks no limits (a replayed write was accepted when it happened).
    pub fn apply_record(&mut self, record: LogRecord) -> Result<Plan, ShardError> {
        let placement = self.placement;
        match record {
            LogRecord::CreateCollection { spec, uid } => {
                self.next_uid = self.next_uid.max((uid & ((1 << 48) - 1)) + 1);
                let entry = CatalogEntry { spec: spec.clone(), uid, ids: BTreeSet::new() };
                let info = self.info(&entry);
                self.catalog.insert(spec.name.clone(), entry);
                let ops = placement
                    .shards_of(&spec.name)
                    .into_iter()
                    .map(|s| (s, Op::CreatePartition { uid, spec: spec.clone() }))
                    .collect();
                self.route(Reply::Info(info), ops)
            }
            LogRecord::DeleteCollection { name } => {
                let entry = self.catalog.remove(&name).ok_or_else(|| collection_not_found(&name))?;
                let ops = placement
                    .shards_of(&name)
                    .into_iter()
                    .map(|s| (s, Op::DropPartition { name: name.clone(), uid: entry.uid }))
                    .collect();
                self.route(Reply::Deleted, ops)
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
                    .map(|(part, g)| {
                        (placement.partition_shard(&name, part), Op::ApplyUpsert { name: name.clone(), uid, points: g })
                    })
                    .collect();
                self.route(Reply::Upserted(results), ops)
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
                    .map(|(s, ids)| (s, Op::ApplyDelete { name: name.clone(), uid, ids }))
                    .collect();
                self.route(Reply::Deleted, ops)
            }
            LogRecord::SetPayload { name, ids, patch } => {
                let uid = self.entry(&name)?.uid;
                let ops = self
                    .group_by_shard(&name, ids)
                    .into_iter()
                    .map(|(s, ids)| (s, Op::ApplySetPayload { name: name.clone(), uid, ids, patch: patch.clone() }))
                    .collect();
                self.route(Reply::Changed(0), ops)
            }
            LogRecord::DeletePayloadKeys { name, ids, keys } => {
                let uid = self.entry(&name)?.uid;
                let ops = self
                    .group_by_shard(&name, ids)
                    .into_iter()
                    .map(|(s, ids)| {
                        (s, Op::ApplyDeletePayloadKeys { name: name.clone(), uid, ids, keys: keys.clone() })
                    })
                    .collect();
                self.route(Reply::Changed(0), ops)
            }
        }
    }

    pub(super) fn entry(&self, name: &str) -> Result<&CatalogEntry, ShardError> {
        self.catalog.get(name).ok_or_else(|| collection_not_found(name))
    }

    fn entry_mut(&mut self, name: &str) -> Result<&mut CatalogEntry, ShardError> {
        self.catalog.get_mut(name).ok_or_else(|| collection_not_found(name))
    }

    pub(super) fn info(&self, e: &CatalogEntry) -> CollectionInfo {
        CollectionInfo { spec: e.spec.clone(), point_count: e.ids.len() as u64, partitions: self.placement.partitions }
    }

    /// Apply partition ops addressed to this shard now; return the others.
    /// A `Changed` reply accumulates the local counts.
    fn route(&mut self, mut reply: Reply, ops: Vec<(ShardId, Op)>) -> Result<Plan, ShardError> {
        let mut fanout = Vec::new();
        for (target, op) in ops {
            if target == self.id {
                let local = self.apply_partition_op(op)?;
                if let (Reply::Changed(total), Reply::Changed(n)) = (&mut reply, local) {
                    *total += n;
                }
            } else {
                fanout.push((target, op));
            }
        }
        Ok(Plan { reply, fanout, log: None })
    }

    /// Upsert validation: dimension, finiteness, payload keys, point cap,
    /// memory budget. Returns the bytes the new points are estimated to add.
    /// Collections and points `tenant` holds (all homed on this shard).
    fn tenant_usage(&self, tenant: &str) -> crate::quota::Usage {
        let mut u = crate::quota::Usage::default();
        for e in self.catalog.values().filter(|e| crate::placement::tenant_of(&e.spec.name) == Some(tenant)) {
            u.collections += 1;
            u.points += e.ids.len() as u64;
        }
        u
    }

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
    /// decode and apply (`Op::RestoreEncoded`), so every core shares the
    /// decoding. Same effect as `apply_record` of the decoded record.
    pub fn restore_upsert(&mut self, body: &[u8]) -> Result<Vec<(ShardId, Op)>, ShardError> {
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
                (placement.partition_shard(&name, part), Op::RestoreEncoded { name: name.clone(), uid, body })
            })
            .collect())
    }

    /// The collections homed here, for a snapshot cut.
    pub fn homed_collections(&self) -> Vec<(CollectionSpec, u64)> {
        let mut out: Vec<_> = self.catalog.values().map(|e| (e.spec.clone(), e.uid)).collect();
        out.sort_by_key(|(_, uid)| *uid);
        out
    }

    /// `Op::ExportCut`: the collections to export and an `ExportBegin` for
    /// each of their partitions, sent in order after every write planned so
    /// far, so each export starts at exactly this cut.
    pub(super) fn export_cut(
        &mut self,
        export: u64,
        only: &[String],
        tenant: Option<&str>,
    ) -> Result<Plan, ShardError> {
        for name in only {
            self.entry(name)?;
        }
        let collections: Vec<(CollectionSpec, u64)> = self
            .homed_collections()
            .into_iter()
            .filter(|(spec, _)| only.is_empty() || only.contains(&spec.name))
            .filter(|(spec, _)| tenant.is_none() || crate::placement::tenant_of(&spec.name) == tenant)
            .collect();
        let begins = collections
            .iter()
            .flat_map(|(spec, uid)| {
                self.placement
                    .shards_of(&spec.name)
                    .into_iter()
                    .map(move |s| (s, Op::ExportBegin { name: spec.name.clone(), uid: *uid, export }))
            })
            .collect();
        let points = collections
            .iter()
            .map(|(spec, _)| self.catalog.get(&spec.name).map_or(0, |e| e.ids.len() as u64))
            .collect();
        self.route(Reply::Cut { lsn: 0, collections, points }, begins)
    }
}

/// One page of ids (API.md §5 pagination rules).
pub(super) fn page(entry: &CatalogEntry, from: PageFrom, limit: usize) -> PointsPage {
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
