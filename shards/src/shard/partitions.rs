//! The partition role of a shard: the operations the home shards of
//! collections send to the partitions placed here (apply a write, search,
//! count, get a point, export for snapshots and backups). They run to
//! completion here and never message another shard. The catalog (home role)
//! is in the parent module.

use super::{PartitionSlot, Shard};
use crate::error::{collection_not_found, invalid, point_not_found, ShardError};
use crate::export::Export;
use crate::ops::{Hit, Op, Reply, SearchOp};
use crate::partition::{IndexKind, Partition, SearchParams};
use crate::record::LogRecord;

impl Shard {
    pub(super) fn partition(&self, name: &str) -> Result<&PartitionSlot, ShardError> {
        self.partitions.get(name).ok_or_else(|| collection_not_found(name))
    }

    /// The partition for an apply op, if it is still the incarnation the home
    /// shard meant (a concurrent delete may have dropped it). A running
    /// export first copies the points the op will change.
    pub(super) fn partition_for_apply(&mut self, name: &str, uid: u64, ids: &[u64]) -> Option<&mut Partition> {
        let slot = self.partitions.get_mut(name).filter(|s| s.uid == uid)?;
        for (_, export) in &mut slot.exports {
            for &id in ids {
                export.before_write(&slot.data, id);
            }
        }
        Some(&mut slot.data)
    }

    pub(super) fn export_slot(&mut self, name: &str, uid: u64) -> Result<&mut PartitionSlot, ShardError> {
        self.partitions
            .get_mut(name)
            .filter(|s| s.uid == uid)
            .ok_or_else(|| ShardError::Gone(format!("partition of '{name}' was dropped during an export")))
    }

    pub(super) fn apply_partition_op(&mut self, op: Op) -> Result<Reply, ShardError> {
        match op {
            Op::CreatePartition { uid, spec } => {
                let mut data = Partition::new(spec.dimension);
                data.configure(self.limits.hnsw, self.placement.partitions);
                self.partitions.insert(spec.name.clone(), PartitionSlot { uid, spec, data, exports: Vec::new() });
                Ok(Reply::Done)
            }
            Op::DropPartition { name, uid } => {
                if self.partitions.get(&name).is_some_and(|s| s.uid == uid) {
                    self.partitions.remove(&name);
                }
                Ok(Reply::Done)
            }
            Op::ApplyUpsert { name, uid, points } => {
                let ids: Vec<u64> = points.iter().map(|p| p.id).collect();
                if let Some(p) = self.partition_for_apply(&name, uid, &ids) {
                    for pt in points {
                        p.upsert(pt.id, &pt.values, pt.payload);
                    }
                }
                Ok(Reply::Done)
            }
            Op::ApplyDelete { name, uid, ids } => {
                if let Some(p) = self.partition_for_apply(&name, uid, &ids) {
                    for id in ids {
                        p.delete(id);
                    }
                }
                Ok(Reply::Done)
            }
            Op::ApplySetPayload { name, uid, ids, patch } => {
                let mut changed = 0;
                if let Some(p) = self.partition_for_apply(&name, uid, &ids) {
                    for id in ids {
                        let f = |pl: &mut crate::payload::Payload| {
                            for (k, v) in &patch {
                                pl.insert(k.clone(), v.clone());
                            }
                        };
                        changed += p.update_payload(id, f).unwrap_or(false) as u64;
                    }
                }
                Ok(Reply::Changed(changed))
            }
            Op::ApplyDeletePayloadKeys { name, uid, ids, keys } => {
                let mut changed = 0;
                if let Some(p) = self.partition_for_apply(&name, uid, &ids) {
                    for id in ids {
                        let f = |pl: &mut crate::payload::Payload| {
                            for k in &keys {
                                pl.remove(k);
                            }
                        };
                        changed += p.update_payload(id, f).unwrap_or(false) as u64;
                    }
                }
                Ok(Reply::Changed(changed))
            }
            Op::Search(s) => self.search(s),
            Op::GetPoint { name, id } => {
                let slot = self.partition(&name)?;
                let (values, payload) = slot.data.get(id).ok_or_else(|| point_not_found(&name, id))?;
                Ok(Reply::Point { id, values: values.to_vec(), payload: payload.clone() })
            }
            Op::Count { name, filter } => Ok(Reply::Count(self.partition(&name)?.data.count(filter.as_deref()))),
            Op::Stats => Ok(Reply::Stats(self.data_stats())),
            Op::PeerMemory { from, bytes } => {
                self.memory.peers.insert(from, bytes);
                Ok(Reply::Done)
            }
            Op::IndexStatus { name } => {
                let p = &self.partition(&name)?.data;
                Ok(Reply::IndexStatus(p.ivf_status(), p.graph_status().map(Box::new), p.payload_index_status()))
            }
            Op::RestoreEncoded { name, uid, body } => {
                let Ok(LogRecord::Upsert { points, .. }) = LogRecord::decode(crate::record::kind::UPSERT, &body) else {
                    return Err(ShardError::Internal(format!("snapshot record for '{name}' does not decode")));
                };
                let ids: Vec<u64> = points.iter().map(|p| p.id).collect();
                if let Some(p) = self.partition_for_apply(&name, uid, &ids) {
                    for pt in points {
                        p.upsert(pt.id, &pt.values, pt.payload);
                    }
                }
                Ok(Reply::Done)
            }
            Op::ExportBegin { name, uid, export } => {
                let slot = self.export_slot(&name, uid)?;
                slot.exports.retain(|(e, _)| *e != export);
                slot.exports.push((export, Export::begin(&slot.data)));
                Ok(Reply::Done)
            }
            Op::ExportChunk { name, uid, export, max_points } => {
                let slot = self.export_slot(&name, uid)?;
                // An export that finished has nothing more (a reader may
                // ask ahead, past the end).
                let Some(at) = slot.exports.iter().position(|(e, _)| *e == export) else {
                    return Ok(Reply::Exported { points: Vec::new(), done: true });
                };
                let (points, done) = slot.exports[at].1.next_chunk(&slot.data, max_points);
                if done {
                    slot.exports.swap_remove(at);
                }
                Ok(Reply::Exported { points, done })
            }
            Op::ExportEnd { name, uid, export } => {
                if let Ok(slot) = self.export_slot(&name, uid) {
                    slot.exports.retain(|(e, _)| *e != export);
                }
                Ok(Reply::Done)
            }
            home => Err(ShardError::Internal(format!("home operation {home:?} reached the partition path"))),
        }
    }

    /// Query errors (400): dimension, finiteness, zero cosine query.
    pub(super) fn validate_queries(&self, s: &SearchOp) -> Result<(), ShardError> {
        let slot = self.partition(&s.name)?;
        if let Some(q) = s.queries.iter().find(|q| q.len() != slot.spec.dimension) {
            return Err(invalid(format!(
                "query has {} values, collection '{}' has dimension {}",
                q.len(),
                s.name,
                slot.spec.dimension
            )));
        }
        if s.queries.iter().any(|q| q.iter().any(|v| !v.is_finite())) {
            return Err(invalid("query values must be finite"));
        }
        if s.metric == crate::Metric::Cosine && s.queries.iter().any(|q| q.iter().all(|&v| v == 0.0)) {
            return Err(invalid("cosine search needs a non-zero query vector"));
        }
        Ok(())
    }

    pub(super) fn search(&mut self, s: SearchOp) -> Result<Reply, ShardError> {
        self.validate_queries(&s)?;
        if let Some(slot) = self.partitions.get_mut(&s.name) {
            // A few queries per request feed the calibration reservoir.
            for q in s.queries.iter().take(4) {
                slot.data.remember_query(s.metric, q);
            }
            if s.approx.is_some_and(|c| c.forced == Some(IndexKind::Ivf) || c.nprobe.is_some()) {
                slot.data.want_ivf();
            }
            if let Some(f) = s.filter.as_deref() {
                slot.data.want_payload_indexes(f);
            }
        }
        let slot = self.partition(&s.name)?;
        let params = SearchParams { metric: s.metric, k: s.k, filter: s.filter.as_deref() };
        // Planner: a filter whose indexed must clause leaves few candidates
        // is answered exactly from them (unless an index was forced).
        let forced = s.approx.is_some_and(|c| c.forced.is_some());
        let candidates = if forced { None } else { slot.data.filter_candidates(&params) };
        let approx = match candidates {
            Some(_) => None,
            None => s.approx.and_then(|choice| slot.data.search_approx(&s.queries, &params, choice)),
        };
        let (found, estimated_recall, index) = match (approx, candidates) {
            (Some((found, recall, kind)), _) => (found, Some(recall), Some(kind)),
            (None, Some(c)) => (slot.data.search_candidates(&s.queries, &params, &c), None, None),
            (None, None) => (slot.data.search(&s.queries, &params), None, None),
        };
        let calibration_real = index.and_then(|kind| slot.data.calibration_real(kind, &params));
        let per_query = found
            .into_iter()
            .map(|hits| {
                hits.into_iter()
                    .map(|h| Hit {
                        key: h.key,
                        id: h.id,
                        payload: if s.include_payload { slot.data.payload(h.id).cloned() } else { None },
                    })
                    .collect()
            })
            .collect();
        Ok(Reply::Hits { per_query, n_points: slot.data.len() as u64, estimated_recall, index, calibration_real })
    }
}
