//! The partition role of a shard: the operations the home shards of
//! collections send to the partitions placed here (apply a write, export for
//! snapshots and backups) and those dispatchers send (search, count, get a
//! point). They run to completion here and never message another shard:
//! [`Shard::execute_partition`] returns a reply, not a plan. The catalog
//! (home role) is in `catalog.rs`.

use super::{PartitionSlot, Shard};
use crate::error::{collection_not_found, invalid, point_not_found, ShardError};
use crate::export::Export;
use crate::ops::{
    ApplyDelete, ApplyDeletePayloadKeys, ApplySetPayload, ApplyUpsert, Count, CreatePartition, DropPartition,
    ExportBegin, ExportChunk, ExportEnd, Exported, GetPoint, Hit, IndexState, IndexStatus, PartitionHits, PartitionOp,
    PartitionReply, PointIn, RestoreEncoded, SearchOp,
};
use crate::partition::{Answer, IndexKind, Partition, SearchParams};
use crate::payload::Payload;
use crate::record::LogRecord;

impl Shard {
    fn partition(&self, name: &str) -> Result<&PartitionSlot, ShardError> {
        self.partitions.get(name).ok_or_else(|| collection_not_found(name))
    }

    /// The partition for an apply op, if it is still the incarnation the home
    /// shard meant (a concurrent delete may have dropped it). A running
    /// export first copies the points the op will change.
    fn partition_for_apply(&mut self, name: &str, uid: u64, ids: &[u64]) -> Option<&mut Partition> {
        let slot = self.partitions.get_mut(name).filter(|s| s.uid == uid)?;
        for (_, export) in &mut slot.exports {
            for &id in ids {
                export.before_write(&slot.data, id);
            }
        }
        Some(&mut slot.data)
    }

    fn export_slot(&mut self, name: &str, uid: u64) -> Result<&mut PartitionSlot, ShardError> {
        self.partitions
            .get_mut(name)
            .filter(|s| s.uid == uid)
            .ok_or_else(|| ShardError::Gone(format!("partition of '{name}' was dropped during an export")))
    }

    /// Run one partition operation to completion. It never messages
    /// another shard: its answer is a reply, with no fan-out.
    pub fn execute_partition(&mut self, op: PartitionOp) -> Result<PartitionReply, ShardError> {
        let reply = self.execute_partition_op(op);
        self.release_reads();
        reply
    }

    fn execute_partition_op(&mut self, op: PartitionOp) -> Result<PartitionReply, ShardError> {
        Ok(match op {
            PartitionOp::CreatePartition(CreatePartition { uid, spec }) => {
                let mut data = Partition::new(spec.dimension);
                data.configure(self.limits.hnsw, self.placement.partitions);
                if let Some(file) = self.cold_files.as_ref().and_then(|f| f.open(&spec.name, uid, spec.dimension)) {
                    data.set_cold(file);
                }
                self.partitions.insert(spec.name.clone(), PartitionSlot { uid, spec, data, exports: Vec::new() });
                PartitionReply::CreatePartition(())
            }
            PartitionOp::DropPartition(DropPartition { name, uid }) => {
                if self.partitions.get(&name).is_some_and(|s| s.uid == uid) {
                    self.partitions.remove(&name);
                }
                PartitionReply::DropPartition(())
            }
            PartitionOp::ApplyUpsert(ApplyUpsert { name, uid, points }) => {
                self.upsert_points(&name, uid, points);
                PartitionReply::ApplyUpsert(())
            }
            PartitionOp::ApplyDelete(ApplyDelete { name, uid, ids }) => {
                if let Some(p) = self.partition_for_apply(&name, uid, &ids) {
                    for id in ids {
                        p.delete(id);
                    }
                }
                PartitionReply::ApplyDelete(())
            }
            PartitionOp::ApplySetPayload(ApplySetPayload { name, uid, ids, patch }) => {
                let set = |pl: &mut Payload| {
                    for (k, v) in &patch {
                        pl.insert(k.clone(), v.clone());
                    }
                };
                PartitionReply::ApplySetPayload(self.update_payloads(&name, uid, ids, set))
            }
            PartitionOp::ApplyDeletePayloadKeys(ApplyDeletePayloadKeys { name, uid, ids, keys }) => {
                let remove = |pl: &mut Payload| {
                    for k in &keys {
                        pl.remove(k);
                    }
                };
                PartitionReply::ApplyDeletePayloadKeys(self.update_payloads(&name, uid, ids, remove))
            }
            PartitionOp::Search(s) => PartitionReply::Search(self.search(s)?),
            PartitionOp::GetPoint(GetPoint { name, id }) => {
                let slot = self.partition(&name)?;
                let (values, payload) = slot.data.get(id).ok_or_else(|| point_not_found(&name, id))?;
                PartitionReply::GetPoint(PointIn { id, values: values.to_vec(), payload: payload.clone() })
            }
            PartitionOp::Count(Count { name, filter }) => {
                PartitionReply::Count(self.partition(&name)?.data.count(filter.as_deref()))
            }
            PartitionOp::IndexStatus(IndexStatus { name }) => {
                let p = &self.partition(&name)?.data;
                PartitionReply::IndexStatus(IndexState {
                    ivf: p.ivf_status(),
                    hnsw: p.graph_status().map(Box::new),
                    payload: p.payload_index_status(),
                    rows: p.rows_status(),
                })
            }
            PartitionOp::RestoreEncoded(RestoreEncoded { name, uid, body }) => {
                let Ok(LogRecord::Upsert { points, .. }) = LogRecord::decode(crate::record::kind::UPSERT, &body) else {
                    return Err(ShardError::Internal(format!("snapshot record for '{name}' does not decode")));
                };
                self.upsert_points(&name, uid, points);
                PartitionReply::RestoreEncoded(())
            }
            PartitionOp::ExportBegin(ExportBegin { name, uid, export }) => {
                let slot = self.export_slot(&name, uid)?;
                slot.exports.retain(|(e, _)| *e != export);
                slot.exports.push((export, Export::begin(&slot.data)));
                PartitionReply::ExportBegin(())
            }
            PartitionOp::ExportChunk(ExportChunk { name, uid, export, max_points }) => {
                let slot = self.export_slot(&name, uid)?;
                // An export that finished has nothing more (a reader may
                // ask ahead, past the end).
                let Some(at) = slot.exports.iter().position(|(e, _)| *e == export) else {
                    return Ok(PartitionReply::ExportChunk(Exported { points: Vec::new(), done: true }));
                };
                let (points, done) = slot.exports[at].1.next_chunk(&slot.data, max_points);
                if done {
                    slot.exports.swap_remove(at);
                }
                PartitionReply::ExportChunk(Exported { points, done })
            }
            PartitionOp::ExportEnd(ExportEnd { name, uid, export }) => {
                if let Ok(slot) = self.export_slot(&name, uid) {
                    slot.exports.retain(|(e, _)| *e != export);
                }
                PartitionReply::ExportEnd(())
            }
        })
    }

    /// Upsert points into the partition, if it is still incarnation `uid`.
    fn upsert_points(&mut self, name: &str, uid: u64, points: Vec<PointIn>) {
        let ids: Vec<u64> = points.iter().map(|p| p.id).collect();
        if let Some(p) = self.partition_for_apply(name, uid, &ids) {
            for pt in points {
                p.upsert(pt.id, &pt.values, pt.payload);
            }
        }
    }

    /// Change the payload of each point of `ids` present; returns how many
    /// changed.
    fn update_payloads(&mut self, name: &str, uid: u64, ids: Vec<u64>, f: impl Fn(&mut Payload)) -> u64 {
        let mut changed = 0;
        if let Some(p) = self.partition_for_apply(name, uid, &ids) {
            for id in ids {
                changed += p.update_payload(id, &f).unwrap_or(false) as u64;
            }
        }
        changed
    }

    /// Query errors (400): dimension, finiteness, zero cosine query.
    fn validate_queries(&self, s: &SearchOp) -> Result<(), ShardError> {
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

    fn search(&mut self, s: SearchOp) -> Result<PartitionHits, ShardError> {
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
        let plan = slot.data.plan(&params, s.approx);
        let Answer { per_query: found, estimated_recall, index } = slot.data.execute(&plan, &s.queries, &params);
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
        Ok(PartitionHits { per_query, n_points: slot.data.len() as u64, estimated_recall, index, calibration_real })
    }
}
