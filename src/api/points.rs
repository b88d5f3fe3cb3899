//! Point routes (API.md §5). Writes go to the collection's home shard, which
//! validates the whole request, orders it and fans it out to partitions;
//! reads go straight to the partition holding the point.

use super::{body, json, json_body, json_vectors_body, point_id, Api, ApiError, ApiResult};
use aionbd_http::Request;
use aionbd_shards::ops::{
    Count, DeletePayloadKeys, DeletePoint, GetPoint, HomeWrite, ListPoints, Op, PageFrom, PointIn, SetPayload, Upsert,
};
use aionbd_shards::payload::Payload;
use serde_json::json;

/// Offsets beyond this are refused (use `after_id` cursors instead).
const MAX_OFFSET: usize = 100_000;

/// f32 values serialise in their shortest f32 form (0.1, not 0.100000001).
#[derive(serde::Serialize)]
struct PointOut {
    id: u64,
    values: Vec<f32>,
    payload: Payload,
}

impl Api {
    async fn upsert(&self, name: &str, points: Vec<PointIn>) -> Result<Vec<(u64, bool)>, ApiError> {
        self.call(self.placement.home(name), Upsert { name: name.to_owned(), points }).await
    }

    pub(super) async fn upsert_point(&self, raw: &str, id: &str, req: &mut Request) -> ApiResult {
        let name = raw.to_owned();
        let id = point_id(id)?;
        let b: body::UpsertPoint = json_vectors_body(req)?;
        let point = PointIn { id, values: b.values, payload: b.payload.unwrap_or_default() };
        let results = self.upsert(&name, vec![point]).await?;
        json(&json!({"id": id, "created": results[0].1}))
    }

    pub(super) async fn upsert_batch(&self, raw: &str, req: &mut Request) -> ApiResult {
        let name = raw.to_owned();
        let b: body::BatchUpsert = json_vectors_body(req)?;
        let max = self.cfg().upsert_batch_max_points;
        if b.points.is_empty() || b.points.len() > max {
            return Err(ApiError::invalid(format!("points must hold 1 to {max} items, got {}", b.points.len())));
        }
        let points = b
            .points
            .into_iter()
            .map(|p| PointIn { id: p.id, values: p.values, payload: p.payload.unwrap_or_default() })
            .collect();
        let results = self.upsert(&name, points).await?;
        let created = results.iter().filter(|r| r.1).count();
        let out: Vec<_> = results.iter().map(|(id, c)| json!({"id": id, "created": c})).collect();
        json(&json!({"created": created, "updated": results.len() - created, "results": out}))
    }

    pub(super) async fn get_point(&self, raw: &str, id: &str) -> ApiResult {
        let name = raw.to_owned();
        let id = point_id(id)?;
        let shard = self.placement.shard_of_point(&name, id);
        let PointIn { id, values, payload } = self.call(shard, GetPoint { name, id }).await?;
        json(&PointOut { id, values, payload })
    }

    pub(super) async fn delete_point(&self, raw: &str, id: &str) -> ApiResult {
        let name = raw.to_owned();
        let id = point_id(id)?;
        self.call(self.placement.home(&name), DeletePoint { name, id }).await?;
        json(&json!({"id": id, "deleted": true}))
    }

    pub(super) async fn list_points(&self, raw: &str, query: Option<&str>) -> ApiResult {
        let name = raw.to_owned();
        let (mut offset, mut limit, mut after) = (None, None, None);
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let parse = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::invalid(format!("query parameter {k}='{v}' is not an unsigned integer")))
            };
            match k {
                "offset" => offset = Some(parse(v)?),
                "limit" => limit = Some(parse(v)?),
                "after_id" => after = Some(parse(v)?),
                _ => {}
            }
        }
        let max = self.cfg().max_page_limit as u64;
        let limit = limit.unwrap_or(100);
        if limit == 0 || limit > max {
            return Err(ApiError::invalid(format!("limit must be between 1 and {max}, got {limit}")));
        }
        let from = match (after, offset) {
            (Some(_), Some(o)) if o != 0 => return Err(ApiError::invalid("offset cannot be combined with after_id")),
            (Some(a), _) => PageFrom::After(a),
            (None, o) => {
                let o = o.unwrap_or(0);
                if o > MAX_OFFSET as u64 {
                    return Err(ApiError::invalid(format!(
                        "offset must be at most {MAX_OFFSET}, got {o}; page with after_id instead"
                    )));
                }
                PageFrom::Offset(o as usize)
            }
        };
        let op = ListPoints { name: name.clone(), from, limit: limit as usize };
        let p = self.call(self.placement.home(&name), op).await?;
        let points: Vec<_> = p.ids.iter().map(|id| json!({"id": id})).collect();
        json(&json!({
            "points": points,
            "total": p.total,
            "next_offset": p.next_offset,
            "next_after_id": p.next_after_id,
        }))
    }

    pub(super) async fn count(&self, raw: &str, req: &mut Request) -> ApiResult {
        let name = raw.to_owned();
        let b: body::Count = json_body(req)?;
        let filter = b.filter.map(|f| f.validate()).transpose()?.map(std::sync::Arc::new);
        let shards = self.placement.shards_of(&name);
        let counts = self.scatter(&shards, || Count { name: name.clone(), filter: filter.clone() }).await?;
        json(&json!({"count": counts.iter().sum::<u64>()}))
    }

    /// A payload write: answered with the points it changed.
    async fn payload_write<Q: Op<Reply = u64> + Into<HomeWrite>>(&self, name: &str, op: Q) -> ApiResult {
        let updated = self.call(self.placement.home(name), op).await?;
        json(&json!({"updated": updated}))
    }

    pub(super) async fn payload_set(&self, raw: &str, req: &mut Request) -> ApiResult {
        let name = raw.to_owned();
        let b: body::PayloadSet = json_body(req)?;
        if b.points.is_empty() {
            return Err(ApiError::invalid("points must not be empty"));
        }
        if b.payload.is_empty() {
            return Err(ApiError::invalid("payload must not be empty"));
        }
        let patch: Payload = b.payload;
        self.payload_write(&name, SetPayload { name: name.clone(), ids: b.points, patch }).await
    }

    pub(super) async fn payload_delete(&self, raw: &str, req: &mut Request) -> ApiResult {
        let name = raw.to_owned();
        let b: body::PayloadDelete = json_body(req)?;
        if b.points.is_empty() {
            return Err(ApiError::invalid("points must not be empty"));
        }
        if b.keys.is_empty() {
            return Err(ApiError::invalid("keys must not be empty"));
        }
        self.payload_write(&name, DeletePayloadKeys { name: name.clone(), ids: b.points, keys: b.keys }).await
    }
}
