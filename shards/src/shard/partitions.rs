//! The partition role of a shard: the operations the home shards of
//! collections send to the partitions placed here (apply a write, export for
//! snapshots and backups) and those dispatchers send (search, count, get a
//! point). They run to completion here and never message another shard:
//! [`Shard::execute_partition`] returns a reply, not a plan. The catalog
//! (home role) is in `catalog.rs`.

use super::{PartitionSlot, Shard};
use crate::error::{collection_not_found, invalid, point_not_found, ShardError};
use crate::export::Export;
use crate::math::topk::Scored;
use crate::ops::{
    ApplyDelete, ApplyDeletePayloadKeys, ApplySetPayload, ApplyUpsert, Count, CreatePartition, DropPartition,
    ExportBegin, ExportChunk, ExportEnd, Exported, GetPoint, Hit, IndexState, IndexStatus, PartitionHits, PartitionOp,
    PartitionReply, PointIn, RestoreEncoded, SearchOp,
};
use crate::partition::{Answer, IndexKind, Partition, ScanPieces, SearchParams};
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
            PartitionOp::ExportChunk(ExportChunk { name, uid, export, max_points, with_queries }) => {
                let slot = self.export_slot(&name, uid)?;
                // An export that finished has nothing more (a reader may
                // ask ahead, past the end).
                let Some(at) = slot.exports.iter().position(|(e, _)| *e == export) else {
                    return Ok(PartitionReply::ExportChunk(Exported {
                        points: Vec::new(),
                        done: true,
                        real_queries: None,
                    }));
                };
                let (points, done) = slot.exports[at].1.next_chunk(&slot.data, max_points);
                let mut real_queries = None;
                if done {
                    slot.exports.swap_remove(at);
                    if with_queries {
                        real_queries = Some(slot.data.real_queries()).filter(|q| !q.is_empty()).cloned();
                    }
                }
                PartitionReply::ExportChunk(Exported { points, done, real_queries })
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
        let replaying = self.replaying;
        if let Some(p) = self.partition_for_apply(name, uid, &ids) {
            for pt in points {
                p.upsert(pt.id, &pt.values, pt.payload);
            }
            if replaying {
                p.evict_replayed(super::REPLAY_HOT_ROWS);
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

    /// A search run to completion, its exact scan (if any) in one go.
    fn search(&mut self, s: SearchOp) -> Result<PartitionHits, ShardError> {
        match self.search_start(s) {
            SearchStart::Done(answer) => answer,
            SearchStart::Pieces(mut scan) => loop {
                if let Some(answer) = self.search_continue(&mut scan) {
                    break answer;
                }
            },
        }
    }

    /// Plan and start a search. An exact scan of a partition's in-memory
    /// rows larger than one piece (`Partition::search_piece`) scans its top
    /// slots and returns the rest as an [`ExactScan`], which the caller
    /// runs a piece per turn ([`Shard::search_continue`]), so the shard
    /// answers other requests between pieces.
    pub fn search_start(&mut self, s: SearchOp) -> SearchStart {
        if let Err(e) = self.validate_queries(&s) {
            return SearchStart::Done(Err(e));
        }
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
        let slot = match self.partition(&s.name) {
            Ok(slot) => slot,
            Err(e) => return SearchStart::Done(Err(e)),
        };
        let params = SearchParams { metric: s.metric, k: s.k, filter: s.filter.as_deref() };
        let plan = slot.data.plan(&params, s.approx);
        let answer = slot.data.execute_approximate(&plan, &s.queries, &params);
        let calibration_real = answer.index.and_then(|kind| slot.data.calibration_real(kind, &params));
        if answer.exact.is_empty() {
            let Answer { per_query, estimated_recall, index, .. } = answer;
            return SearchStart::Done(Ok(hits(
                slot,
                per_query,
                s.include_payload,
                estimated_recall,
                index,
                calibration_real,
            )));
        }
        let mut pieces = if answer.exact.len() == s.queries.len() {
            ScanPieces::new(&s.queries, s.metric, s.k)
        } else {
            let queries: Vec<Vec<f32>> = answer.exact.iter().map(|&q| s.queries[q].clone()).collect();
            ScanPieces::new(&queries, s.metric, s.k)
        };
        let more = slot.data.search_piece(&params, usize::MAX, &mut pieces);
        let mut scan = ExactScan { uid: slot.uid, below: more.unwrap_or(0), pieces, answer, calibration_real, op: s };
        match more {
            Some(_) => SearchStart::Pieces(scan),
            None => SearchStart::Done(Ok(scan.hits(slot))),
        }
    }

    /// Scan the next piece of `scan`; its answer once the last is done. A
    /// collection dropped (or dropped and made again) meanwhile answers
    /// as a search that came after the drop.
    pub fn search_continue(&mut self, scan: &mut ExactScan) -> Option<Result<PartitionHits, ShardError>> {
        let s = &scan.op;
        let slot = match self.partitions.get(&s.name).filter(|slot| slot.uid == scan.uid) {
            Some(slot) => slot,
            None => return Some(Err(collection_not_found(&s.name))),
        };
        let params = SearchParams { metric: s.metric, k: s.k, filter: s.filter.as_deref() };
        match slot.data.search_piece(&params, scan.below, &mut scan.pieces) {
            Some(below) => {
                scan.below = below;
                None
            }
            None => Some(Ok(scan.hits(slot))),
        }
    }
}

/// How a search began ([`Shard::search_start`]).
pub enum SearchStart {
    Done(Result<PartitionHits, ShardError>),
    /// An exact scan with pieces left.
    Pieces(ExactScan),
}

/// An exact scan of one partition under way, a piece of rows at a time from
/// the top slot down: a delete moves the last row into its hole, so a point
/// can only move from a scanned slot into one not yet scanned (met twice,
/// kept once), never the other way, and every point present throughout the
/// search is found. Points added meanwhile land above the scanned range.
/// It answers the queries of an exact search, or those of an approximate
/// one that its index answered with fewer than k hits.
pub struct ExactScan {
    op: SearchOp,
    /// The partition's incarnation when the scan began.
    uid: u64,
    /// The next piece scans the slots below this one.
    below: usize,
    /// Per scanned query (`op`'s, or those listed in `answer.exact`), the
    /// best hits of the pieces so far; taken by the answer.
    pieces: ScanPieces,
    /// What the plan answered before the scan (nothing, for an exact plan).
    answer: Answer,
    calibration_real: Option<usize>,
}

impl ExactScan {
    fn hits(&mut self, slot: &PartitionSlot) -> PartitionHits {
        let a = &mut self.answer;
        let found = std::mem::take(&mut self.pieces).into_hits();
        for (&q, found) in a.exact.iter().zip(found) {
            a.per_query[q] = found;
        }
        let per_query = std::mem::take(&mut a.per_query);
        hits(slot, per_query, self.op.include_payload, a.estimated_recall, a.index, self.calibration_real)
    }
}

/// A partition's answer out of its hits per query.
fn hits(
    slot: &PartitionSlot,
    found: Vec<Vec<Scored>>,
    include_payload: bool,
    estimated_recall: Option<f32>,
    index: Option<IndexKind>,
    calibration_real: Option<usize>,
) -> PartitionHits {
    let per_query = found
        .into_iter()
        .map(|hits| {
            hits.into_iter()
                .map(|h| Hit {
                    key: h.key,
                    id: h.id,
                    payload: if include_payload { slot.data.payload(h.id).cloned() } else { None },
                })
                .collect()
        })
        .collect();
    PartitionHits { per_query, n_points: slot.data.len() as u64, estimated_recall, index, calibration_real }
}
