//! Collection routes (API.md §4). The catalog entry lives on the
//! collection's home shard; listing asks every shard for the entries it homes.

use super::{body, collection_name, internal_name, json, json_body, visible_name, Api, ApiError, ApiResult};
use aionbd_http::Request;
use aionbd_shards::ops::{
    CollectionInfo, CollectionSpec, CreateCollection, DeleteCollection, GetCollection, IndexState, IndexStatus,
    ListCollections,
};
use serde::Serialize;

#[derive(Serialize)]
pub(super) struct InfoOut<'a> {
    name: &'a str,
    dimension: usize,
    strict_finite: bool,
    point_count: u64,
    /// Additive: partitions the collection is split into.
    partitions: usize,
}

impl<'a> From<&'a CollectionInfo> for InfoOut<'a> {
    fn from(i: &'a CollectionInfo) -> Self {
        InfoOut {
            name: visible_name(&i.spec.name),
            dimension: i.spec.dimension,
            strict_finite: i.spec.strict_finite,
            point_count: i.point_count,
            partitions: i.partitions,
        }
    }
}

impl Api {
    pub(super) async fn create_collection(&self, req: &mut Request, tenant: Option<&str>) -> ApiResult {
        let b: body::CreateCollection = json_body(req)?;
        let visible = collection_name(&b.name)?;
        let name = internal_name(tenant, &visible);
        let max = self.cfg().max_dimension;
        if b.dimension == 0 || b.dimension > max as u64 {
            return Err(ApiError::invalid(format!("dimension must be between 1 and {max}, got {}", b.dimension)));
        }
        let spec =
            CollectionSpec { name: name.clone(), dimension: b.dimension as usize, strict_finite: b.strict_finite };
        // Errors name the collection as the caller does (no tenant prefix).
        let shown = |mut e: ApiError| {
            e.message = e.message.replace(&name, &visible);
            e
        };
        let info = self.call(self.placement.home(&name), CreateCollection(spec)).await.map_err(shown)?;
        json(&InfoOut::from(&info))
    }

    /// The caller's collections only (those of its tenant; with auth off,
    /// those made with auth off).
    pub(super) async fn list_collections(&self, tenant: Option<&str>) -> ApiResult {
        let mut all: Vec<CollectionInfo> =
            self.scatter(&self.all_shards(), || ListCollections).await?.into_iter().flatten().collect();
        all.retain(|c| super::in_namespace(&c.spec.name, tenant));
        all.sort_by(|a, b| visible_name(&a.spec.name).cmp(visible_name(&b.spec.name)));
        let out: Vec<InfoOut> = all.iter().map(InfoOut::from).collect();
        json(&serde_json::json!({ "collections": out }))
    }

    /// The catalog entry, from the home shard (404 if absent).
    pub(super) async fn collection_info(&self, name: &str) -> Result<CollectionInfo, ApiError> {
        self.call(self.placement.home(name), GetCollection { name: name.to_owned() }).await
    }

    /// The catalog entry plus (additive) the index state of every
    /// partition: lists, points indexed, points searched exactly until the
    /// next build, build time, and the calibration (recall@10 per probe
    /// count and metric).
    pub(super) async fn get_collection(&self, raw: &str) -> ApiResult {
        let name = raw.to_owned();
        let info = self.collection_info(&name).await?;
        let parts = self.scatter(&self.placement.shards_of(&name), || IndexStatus { name: name.clone() }).await?;
        let partitions: Vec<serde_json::Value> = parts.into_iter().map(index_json).collect();
        let mut out = serde_json::to_value(InfoOut::from(&info)).map_err(|e| ApiError::internal(e.to_string()))?;
        out["index"] = serde_json::json!({ "partitions": partitions });
        json(&out)
    }

    pub(super) async fn delete_collection(&self, raw: &str) -> ApiResult {
        let name = raw.to_owned();
        self.call(self.placement.home(&name), DeleteCollection { name: name.clone() }).await?;
        json(&serde_json::json!({"name": visible_name(&name), "deleted": true}))
    }
}

/// One partition's index state as JSON.
fn index_json(state: IndexState) -> serde_json::Value {
    let payload: Vec<serde_json::Value> = state
        .payload
        .iter()
        .map(|(f, terms, numbers, building)| {
            serde_json::json!({"field": f, "terms": terms, "numbers": numbers, "building": building})
        })
        .collect();
    let rows = state.rows.map(|r| serde_json::json!({"in_memory": r.in_memory, "on_disk": r.on_disk}));
    let Some(st) = state.ivf else {
        let mut v = serde_json::json!({"kind": "none", "payload_indexes": payload});
        if let Some(rows) = rows {
            v["rows"] = rows;
        }
        return v;
    };
    let mut v = serde_json::json!({
        "kind": "ivf",
        "dropped": st.dropped,
        "lists": st.lists,
        "indexed_points": st.indexed,
        "exact_points": st.pending_exact,
        "building": st.building,
        "build_ms": st.build_ms,
        "bytes": st.bytes,
        "calibration_real_queries": st.real_queries,
        "calibration_basis": basis(st.real),
        "calibration": st.calibration.iter().map(|(n, r, ns)| serde_json::json!({
            "nprobe": n, "recall_l2": r[0], "recall_dot": r[1], "recall_cosine": r[2], "us_per_query": ns / 1e3
        })).collect::<Vec<_>>(),
    });
    v["payload_indexes"] = payload.into();
    if let Some(rows) = rows {
        v["rows"] = rows;
    }
    if let Some(g) = state.hnsw {
        v["hnsw"] = serde_json::json!({
            "nodes": g.nodes,
            "tombstones": g.tombstones,
            "exact_points": g.pending_exact,
            "building": g.building,
            "build_ms": g.build_ms,
            "bytes": g.bytes,
            "m": g.m,
            "ef_construction": g.ef_construction,
            "calibration_real_queries": g.real_queries,
            "calibration_basis": basis(g.real),
            "calibration": ef_table(&g.calibration),
            "calibration_filtered": g.calibration_by_share.iter().map(|(share, t)| serde_json::json!({
                "admitted_percent": share, "calibration": ef_table(t)
            })).collect::<Vec<_>>(),
        });
    }
    v
}

/// Per metric, what its calibrated recall rests on: real queries (how
/// many) or held-out stored points (discounted until real queries come).
fn basis(real: [usize; 3]) -> serde_json::Value {
    let one = |n: usize| {
        if n >= aionbd_shards::index::calib::MIN_REAL {
            serde_json::json!({"basis": "real_queries", "real_queries": n})
        } else {
            serde_json::json!({"basis": "held_out_points"})
        }
    };
    serde_json::json!({"l2": one(real[0]), "dot": one(real[1]), "cosine": one(real[2])})
}

/// A graph calibration table as JSON rows.
fn ef_table(t: &[(usize, [f32; 3], f32)]) -> Vec<serde_json::Value> {
    t.iter()
        .map(|(ef, r, ns)| {
            serde_json::json!({"ef": ef, "recall_l2": r[0], "recall_dot": r[1], "recall_cosine": r[2], "us_per_query": ns / 1e3})
        })
        .collect()
}
