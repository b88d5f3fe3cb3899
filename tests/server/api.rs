//! Every route of API.md §3-§7 and every error class of §2, through HTTP.

use crate::harness::Server;
use serde_json::{json, Value};

fn ids(v: &Value, key: &str) -> Vec<u64> {
    v[key].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect()
}

fn demo(s: &Server, name: &str) {
    s.call("POST", "/collections", Some(json!({"name": name, "dimension": 4})), 200);
    s.call(
        "POST",
        &format!("/collections/{name}/points"),
        Some(json!({"points": [
            {"id": 1, "values": [1.0, 0.0, 0.0, 0.0], "payload": {"label": "alpha", "tier": "gold", "n": 1, "tags": ["a", "b"]}},
            {"id": 2, "values": [0.8, 0.1, 0.0, 0.0], "payload": {"label": "beta", "tier": "silver", "n": 2.5}},
            {"id": 3, "values": [0.0, 1.0, 0.0, 0.0], "payload": {"label": "gamma", "tier": "gold", "n": 3}}
        ]})),
        200,
    );
}

/// The flow the original JS and Python SDK suites check (API.md §11).
#[test]
fn sdk_suite_flow_on_two_shards() {
    let s = Server::start(2, &[("AIONBD_PERSISTENCE_ENABLED", "false")]);
    assert_eq!(s.call("GET", "/live", None, 200)["status"], "live");
    let ready = s.call("GET", "/ready", None, 200);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["engine_loaded"], true);
    let created =
        s.call("POST", "/collections", Some(json!({"name": "sdk", "dimension": 4, "strict_finite": true})), 200);
    assert_eq!(
        created,
        json!({"name": "sdk", "dimension": 4, "strict_finite": true, "point_count": 0, "partitions": 2})
    );
    let d =
        s.call("POST", "/distance", Some(json!({"left": [1, 0, 0, 0], "right": [1, 0, 0, 0], "metric": "l2"})), 200);
    assert_eq!(d, json!({"metric": "l2", "value": 0.0}));
    let up = s.call(
        "PUT",
        "/collections/sdk/points/1",
        Some(json!({"values": [1, 0, 0, 0], "payload": {"label": "alpha"}})),
        200,
    );
    assert_eq!(up, json!({"id": 1, "created": true}));
    let again = s.call(
        "PUT",
        "/collections/sdk/points/1",
        Some(json!({"values": [1, 0, 0, 0], "payload": {"label": "alpha"}})),
        200,
    );
    assert_eq!(again["created"], false);
    let batch = s.call(
        "POST",
        "/collections/sdk/points",
        Some(json!({"points": [
            {"id": 2, "values": [0.8, 0.1, 0, 0], "payload": {"label": "beta"}},
            {"id": 3, "values": [0, 1, 0, 0], "payload": {"label": "gamma"}}
        ]})),
        200,
    );
    assert_eq!(batch["created"].as_u64().unwrap() + batch["updated"].as_u64().unwrap(), 2);
    assert_eq!(batch["results"], json!([{"id": 2, "created": true}, {"id": 3, "created": true}]));
    let p2 = s.call("GET", "/collections/sdk/points/2", None, 200);
    assert_eq!(p2, json!({"id": 2, "values": [0.8, 0.1, 0.0, 0.0], "payload": {"label": "beta"}}));
    let top1 = s.call(
        "POST",
        "/collections/sdk/search",
        Some(json!({"query": [1, 0, 0, 0], "metric": "dot", "mode": "exact", "include_payload": true})),
        200,
    );
    assert_eq!(top1["id"], 1);
    assert_eq!(top1["mode"], "exact");
    assert_eq!(top1["recall_at_k"], 1.0);
    assert_eq!(top1["payload"], json!({"label": "alpha"}));
    let topk = s.call(
        "POST",
        "/collections/sdk/search/topk",
        Some(json!({"query": [1, 0, 0, 0], "metric": "dot", "mode": "auto", "limit": 2, "include_payload": true})),
        200,
    );
    assert_eq!(topk["metric"], "dot");
    assert_eq!(topk["mode"], "exact");
    assert_eq!(ids(&topk, "hits"), vec![1, 2]);
    let bs = s.call(
        "POST",
        "/collections/sdk/search/topk/batch",
        Some(json!({"queries": [[1, 0, 0, 0], [0, 1, 0, 0]], "metric": "dot", "mode": "auto", "limit": 2})),
        200,
    );
    assert_eq!(bs["metric"], "dot");
    assert_eq!(bs["results"].as_array().unwrap().len(), 2);
    assert_eq!(ids(&bs["results"][1], "hits"), vec![3, 2]);
    let page = s.call("GET", "/collections/sdk/points?limit=10&offset=0", None, 200);
    assert_eq!(ids(&page, "points"), vec![1, 2, 3]);
    let cursor = s.call("GET", "/collections/sdk/points?limit=10&after_id=1", None, 200);
    assert_eq!(ids(&cursor, "points"), vec![2, 3]);
    assert_eq!(s.call("DELETE", "/collections/sdk/points/3", None, 200), json!({"id": 3, "deleted": true}));
    let m = s.call("GET", "/metrics", None, 200);
    assert!(m["collections"].is_u64());
    assert!(m["http_requests_5xx_total"].is_u64(), "python SDK alias");
    for key in [
        "uptime_ms",
        "ready",
        "engine_loaded",
        "storage_available",
        "http_requests_total",
        "http_requests_in_flight",
        "http_responses_2xx_total",
        "http_responses_4xx_total",
        "http_responses_5xx_total",
        "http_request_duration_us_total",
        "http_request_duration_us_max",
        "http_request_duration_us_avg",
        "collections",
        "points",
        "l2_indexes",
        "persistence_enabled",
        "persistence_writes",
        "memory_used_bytes",
    ] {
        assert!(!m[key].is_null(), "metrics key {key} missing: {m}");
    }
    assert_eq!(m["points"], 2);
    let prom = s.req("GET", "/metrics/prometheus", None);
    assert_eq!(prom.status, 200);
    assert_eq!(prom.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert!(prom.body.contains("aionbd_http_responses_total{status=\"2xx\"}"));
    assert!(prom.body.contains("aionbd_http_request_duration_us{quantile=\"0.99\"}"));
    assert_eq!(s.call("DELETE", "/collections/sdk", None, 200), json!({"name": "sdk", "deleted": true}));
    s.error("DELETE", "/collections/sdk", None, 404, "not_found");
}

#[test]
fn collections_create_list_get_delete_and_errors() {
    let s = Server::start(2, &[]);
    for name in ["zeta", "alpha", "mid.dle_-1"] {
        s.call("POST", "/collections", Some(json!({"name": format!("  {name} "), "dimension": 3})), 200);
    }
    let list = s.call("GET", "/collections", None, 200);
    let names: Vec<&str> =
        list["collections"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["alpha", "mid.dle_-1", "zeta"]);
    assert_eq!(s.call("GET", "/collections/alpha", None, 200)["dimension"], 3);
    assert_eq!(s.call("GET", "/collections/%20alpha", None, 200)["name"], "alpha");
    s.error("POST", "/collections", Some(r#"{"name":"alpha","dimension":3}"#), 409, "conflict");
    s.error("POST", "/collections", Some(r#"{"name":"a..b","dimension":3}"#), 400, "invalid_argument");
    s.error("POST", "/collections", Some(r#"{"name":"a:b","dimension":3}"#), 400, "invalid_argument");
    s.error("POST", "/collections", Some(r#"{"name":"","dimension":3}"#), 400, "invalid_argument");
    let long = "x".repeat(129);
    s.error("POST", "/collections", Some(&format!(r#"{{"name":"{long}","dimension":3}}"#)), 400, "invalid_argument");
    s.error("POST", "/collections", Some(r#"{"name":"d0","dimension":0}"#), 400, "invalid_argument");
    s.error("POST", "/collections", Some(r#"{"name":"d0","dimension":4097}"#), 400, "invalid_argument");
    s.error("POST", "/collections", Some(r#"{"name":"d0","dimension":-1}"#), 400, "invalid_argument");
    s.error("POST", "/collections", Some(r#"{"name":"d0"}"#), 400, "invalid_argument");
    s.error("POST", "/collections", Some(r#"{"name":"d0","dimension":3"#), 400, "invalid_argument");
    s.error("POST", "/collections", Some("null"), 400, "invalid_argument");
    s.error("GET", "/collections/missing", None, 404, "not_found");
    s.error("GET", "/collections/bad name", None, 400, "invalid_argument");
    // Content type rules.
    let r = s.raw("POST", "/collections", &[], Some(br#"{"name":"ct","dimension":3}"#));
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("invalid_argument")));
    let r = s.raw("POST", "/collections", &[("content-type", "text/plain")], Some(br#"{"name":"ct","dimension":3}"#));
    assert_eq!(r.status, 400);
    let r = s.raw(
        "POST",
        "/collections",
        &[("content-type", "application/json; charset=utf-8")],
        Some(br#"{"name":"ct","dimension":3,"unknown_field":1}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    s.call("DELETE", "/collections/zeta", None, 200);
    s.call("POST", "/collections", Some(json!({"name": "zeta", "dimension": 5})), 200);
    assert_eq!(s.call("GET", "/collections/zeta", None, 200)["point_count"], 0);
}

#[test]
fn points_validation_is_all_or_nothing() {
    let s = Server::start(2, &[]);
    demo(&s, "v");
    s.call("POST", "/collections", Some(json!({"name": "loose", "dimension": 2, "strict_finite": false})), 200);
    // One bad item rejects the whole batch.
    let bad = json!({"points": [{"id": 10, "values": [1, 2, 3, 4]}, {"id": 11, "values": [1, 2, 3]}]});
    s.error("POST", "/collections/v/points", Some(&bad.to_string()), 400, "invalid_argument");
    s.error("GET", "/collections/v/points/10", None, 404, "not_found");
    let non_finite = r#"{"points":[{"id":12,"values":[1,2,3,1e39]}]}"#;
    s.error("POST", "/collections/v/points", Some(non_finite), 400, "invalid_argument");
    s.call("PUT", "/collections/loose/points/1", Some(json!({"values": [1.0, 2.0]})), 200);
    assert_eq!(s.req("PUT", "/collections/loose/points/2", Some(r#"{"values":[1e39,1]}"#)).status, 200);
    for payload in [r#"{"a":null}"#, r#"{"a":{"b":1}}"#, r#"{" ":1}"#, r#"{"a":[[1]]}"#] {
        let body = format!(r#"{{"values":[1,2,3,4],"payload":{payload}}}"#);
        s.error("PUT", "/collections/v/points/20", Some(&body), 400, "invalid_argument");
    }
    s.error("PUT", "/collections/v/points/20", Some(r#"{"values":[1,2,3,4],"payload":null}"#), 400, "invalid_argument");
    s.error("PUT", "/collections/v/points/20", Some(r#"{"values":[]}"#), 400, "invalid_argument");
    s.error("PUT", "/collections/v/points/abc", Some(r#"{"values":[1,2,3,4]}"#), 400, "invalid_argument");
    s.error("PUT", "/collections/v/points/-1", Some(r#"{"values":[1,2,3,4]}"#), 400, "invalid_argument");
    s.error("PUT", "/collections/nope/points/1", Some(r#"{"values":[1,2,3,4]}"#), 404, "not_found");
    s.error("PUT", "/collections/nope/points/1", Some(r#"{"values":"#), 400, "invalid_argument");
    s.error("POST", "/collections/v/points", Some(r#"{"points":[]}"#), 400, "invalid_argument");
    let too_many: Vec<Value> = (0..257).map(|i| json!({"id": i, "values": [1, 2, 3, 4]})).collect();
    s.error("POST", "/collections/v/points", Some(&json!({"points": too_many}).to_string()), 400, "invalid_argument");
    // Arrays of scalars are accepted (additive extension) and round-trip.
    s.call(
        "PUT",
        "/collections/v/points/30",
        Some(json!({"values": [0, 0, 1, 0], "payload": {"tags": ["x", 2, true]}})),
        200,
    );
    assert_eq!(s.call("GET", "/collections/v/points/30", None, 200)["payload"], json!({"tags": ["x", 2, true]}));
    // Large ids survive.
    let big = u64::MAX;
    s.call("PUT", &format!("/collections/v/points/{big}"), Some(json!({"values": [0, 0, 0, 1]})), 200);
    assert_eq!(s.call("GET", &format!("/collections/v/points/{big}"), None, 200)["id"], json!(big));
    assert_eq!(s.call("DELETE", "/collections/v/points/30", None, 200), json!({"id": 30, "deleted": true}));
    s.error("DELETE", "/collections/v/points/30", None, 404, "not_found");
    assert_eq!(s.call("GET", "/collections/v", None, 200)["point_count"], 4);
}

#[test]
fn point_cap_answers_429() {
    let s = Server::start(2, &[("AIONBD_MAX_POINTS_PER_COLLECTION", "3")]);
    demo(&s, "cap");
    // Replacing existing ids is fine at the cap; a new id is not.
    s.call("PUT", "/collections/cap/points/1", Some(json!({"values": [1, 1, 1, 1]})), 200);
    s.error("PUT", "/collections/cap/points/4", Some(r#"{"values":[1,1,1,1]}"#), 429, "resource_exhausted");
    let mixed = json!({"points": [{"id": 2, "values": [1, 1, 1, 1]}, {"id": 5, "values": [1, 1, 1, 1]}]});
    s.error("POST", "/collections/cap/points", Some(&mixed.to_string()), 429, "resource_exhausted");
    assert_eq!(s.call("GET", "/collections/cap/points/2", None, 200)["values"], json!([0.8, 0.1, 0.0, 0.0]));
}

/// 256 points of dimension 128 from `first`, as a batch upsert body.
fn batch_of_128d(first: u64) -> String {
    let points: Vec<Value> =
        (first..first + 256).map(|id| json!({"id": id, "values": vec![(id % 7) as f32; 128]})).collect();
    json!({ "points": points }).to_string()
}

#[test]
fn memory_budget_answers_429_and_deleting_frees_it() {
    let budget = 4_000_000u64;
    let s = Server::start(2, &[("AIONBD_MEMORY_BUDGET_BYTES", &budget.to_string())]);
    s.call("POST", "/collections", Some(json!({"name": "m", "dimension": 128})), 200);
    // 128 floats are 512 bytes: the budget holds a few thousand points.
    let mut stored = 0u64;
    let refused = loop {
        assert!(stored < 20_000, "no 429 after {stored} points under a {budget}-byte budget");
        let r = s.req("POST", "/collections/m/points", Some(&batch_of_128d(stored)));
        if r.status != 200 {
            break r;
        }
        stored += 256;
    };
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.json()["code"], "resource_exhausted");
    assert!(refused.json()["message"].as_str().unwrap().contains("memory budget"), "{}", refused.body);
    assert!(stored >= 2048, "only {stored} points fit in {budget} bytes");
    // Nothing of the refused batch was stored; reads and replacing go on.
    let info = s.call("GET", "/collections/m", None, 200);
    assert_eq!(info["point_count"], stored);
    s.call("GET", &format!("/collections/m/points/{stored}"), None, 404);
    s.call("PUT", "/collections/m/points/0", Some(json!({"values": vec![1.0; 128]})), 200);
    let hit = s.call("POST", "/collections/m/search", Some(json!({"query": vec![1.0; 128], "metric": "l2"})), 200);
    assert_eq!(hit["id"], 0);
    let used = s.call("GET", "/metrics", None, 200)["memory_used_bytes"].as_u64().unwrap();
    // Measured use may pass the budget by the growth of the arrays the last
    // admitted write needed (docs/api-decisions.md), not by much more.
    assert!(used > budget / 2 && used < 2 * budget, "memory_used_bytes {used} with a {budget}-byte budget");
    // Deleting the collection gives its memory back: another collection
    // takes writes again once the shards have measured (every 20 ms).
    s.call("DELETE", "/collections/m", None, 200);
    s.call("POST", "/collections", Some(json!({"name": "n", "dimension": 128})), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = s.req("POST", "/collections/n/points", Some(&batch_of_128d(0)));
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 429, "{}", r.body);
        assert!(std::time::Instant::now() < deadline, "writes still refused after deleting: {}", r.body);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn pagination_rules() {
    let s = Server::start(2, &[]);
    s.call("POST", "/collections", Some(json!({"name": "pg", "dimension": 1})), 200);
    let points: Vec<Value> = (1..=25u64).map(|i| json!({"id": i * 3, "values": [i as f32]})).collect();
    s.call("POST", "/collections/pg/points", Some(json!({ "points": points })), 200);
    let p = s.call("GET", "/collections/pg/points?limit=10", None, 200);
    assert_eq!(ids(&p, "points"), (1..=10u64).map(|i| i * 3).collect::<Vec<_>>());
    assert_eq!(
        (p["total"].as_u64(), p["next_offset"].as_u64(), p["next_after_id"].as_u64()),
        (Some(25), Some(10), Some(30))
    );
    let p = s.call("GET", "/collections/pg/points?limit=10&offset=20", None, 200);
    assert_eq!(ids(&p, "points").len(), 5);
    assert!(p["next_offset"].is_null() && p["next_after_id"].is_null());
    let p = s.call("GET", "/collections/pg/points?limit=10&offset=30", None, 200);
    assert_eq!(ids(&p, "points").len(), 0);
    // Cursor mode walks everything exactly once.
    let mut seen = Vec::new();
    let mut after: Option<u64> = Some(0);
    while let Some(a) = after {
        let p = s.call("GET", &format!("/collections/pg/points?limit=7&after_id={a}"), None, 200);
        assert!(p["next_offset"].is_null());
        seen.extend(ids(&p, "points"));
        after = p["next_after_id"].as_u64();
    }
    assert_eq!(seen, (1..=25u64).map(|i| i * 3).collect::<Vec<_>>());
    let p = s.call("GET", "/collections/pg/points?after_id=72&offset=0", None, 200);
    assert_eq!(ids(&p, "points"), vec![75]);
    assert!(p["next_after_id"].is_null());
    s.error("GET", "/collections/pg/points?limit=0", None, 400, "invalid_argument");
    s.error("GET", "/collections/pg/points?limit=1001", None, 400, "invalid_argument");
    s.error("GET", "/collections/pg/points?offset=100001", None, 400, "invalid_argument");
    s.error("GET", "/collections/pg/points?after_id=3&offset=2", None, 400, "invalid_argument");
    s.error("GET", "/collections/pg/points?limit=x", None, 400, "invalid_argument");
    s.error("GET", "/collections/none/points", None, 404, "not_found");
}

#[test]
fn search_metrics_filters_ties_and_errors() {
    let s = Server::start(2, &[]);
    demo(&s, "s");
    let q = |body: Value| s.call("POST", "/collections/s/search/topk", Some(body), 200);
    let l2 = q(json!({"query": [1, 0, 0, 0], "metric": "l2", "limit": 3}));
    assert_eq!(ids(&l2, "hits"), vec![1, 2, 3]);
    assert_eq!(l2["hits"][0]["value"], 0.0);
    let cos = q(json!({"query": [0, 2, 0, 0], "metric": "cosine", "limit": 1, "include_payload": false}));
    assert_eq!(cos["hits"], json!([{"id": 3, "value": 1.0}]));
    // Filters: must / should / must_not / minimum_should_match, match and range, arrays.
    let f = |filter: Value| ids(&q(json!({"query": [1, 0, 0, 0], "limit": 10, "filter": filter})), "hits");
    assert_eq!(f(json!({"must": [{"field": "tier", "value": "gold"}]})), vec![1, 3]);
    assert_eq!(f(json!({"must_not": [{"field": "tier", "value": "gold"}]})), vec![2]);
    assert_eq!(f(json!({"must": [{"field": "n", "gte": 2, "lt": 3}]})), vec![2]);
    assert_eq!(f(json!({"must": [{"field": "n", "value": 1.0}]})), vec![1]);
    assert_eq!(f(json!({"must": [{"field": "tags", "value": "b"}]})), vec![1]);
    assert_eq!(
        f(json!({"should": [{"field": "label", "value": "beta"}, {"field": "label", "value": "gamma"}]})),
        vec![2, 3]
    );
    assert_eq!(
        f(json!({"should": [{"field": "tier", "value": "gold"}, {"field": "n", "gt": 2}], "minimum_should_match": 2})),
        vec![3]
    );
    assert_eq!(f(json!({"must": [{"field": "missing", "value": 1}]})), Vec::<u64>::new());
    let count = |filter: Value| {
        s.call("POST", "/collections/s/points/count", Some(json!({ "filter": filter })), 200)["count"].clone()
    };
    assert_eq!(count(json!({"must": [{"field": "tier", "value": "gold"}]})), 2);
    assert_eq!(s.call("POST", "/collections/s/points/count", Some(json!({})), 200)["count"], 3);
    // Ties break by ascending id, across partitions.
    s.call("POST", "/collections", Some(json!({"name": "ties", "dimension": 2})), 200);
    let pts: Vec<Value> = (0..40u64).rev().map(|i| json!({"id": i, "values": [1.0, (i % 2) as f32]})).collect();
    s.call("POST", "/collections/ties/points", Some(json!({ "points": pts })), 200);
    let t = s.call(
        "POST",
        "/collections/ties/search/topk",
        Some(json!({"query": [1, 0], "metric": "dot", "limit": 5})),
        200,
    );
    assert_eq!(ids(&t, "hits"), vec![0, 1, 2, 3, 4]);
    let t = s.call(
        "POST",
        "/collections/ties/search/topk",
        Some(json!({"query": [0, 1], "metric": "dot", "limit": 3})),
        200,
    );
    assert_eq!(ids(&t, "hits"), vec![1, 3, 5]);
    // Top-1 with a filter that excludes everything is 400; topk is empty.
    let none = json!({"query": [1, 0, 0, 0], "filter": {"must": [{"field": "tier", "value": "none"}]}});
    s.error("POST", "/collections/s/search", Some(&none.to_string()), 400, "invalid_argument");
    assert_eq!(q(none)["hits"], json!([]));
    // Error classes.
    let bad = [
        r#"{"query":[1,0,0]}"#,
        r#"{"query":[1,0,0,0],"limit":0}"#,
        r#"{"query":[1,0,0,0],"limit":1001}"#,
        r#"{"query":[1,0,0,0],"metric":"L2"}"#,
        r#"{"query":[1,0,0,0],"mode":"fast"}"#,
        r#"{"query":[1,0,0,0],"target_recall":0}"#,
        r#"{"query":[1,0,0,0],"target_recall":1.5}"#,
        r#"{"query":[0,0,0,0],"metric":"cosine"}"#,
        r#"{"query":[1e39,0,0,0]}"#,
        r#"{"query":[1,0,0,0],"mode":"ivf"}"#,
        r#"{"query":[1,0,0,0],"filter":null}"#,
        r#"{"query":[1,0,0,0],"filter":{"must":[{"field":"a","value":1,"gt":0}]}}"#,
        r#"{"query":[1,0,0,0],"filter":{"must":[{"field":"a","value":1,"x":0}]}}"#,
        r#"{"query":[1,0,0,0],"filter":{"must":[{"field":"a","gt":5,"lt":1}]}}"#,
        r#"{"query":[1,0,0,0],"filter":{"must":[{"field":"a"}]}}"#,
        r#"{"query":[1,0,0,0],"filter":{"should":[],"minimum_should_match":1}}"#,
        r#"{"limit":3}"#,
    ];
    for body in bad {
        s.error("POST", "/collections/s/search/topk", Some(body), 400, "invalid_argument");
    }
    s.error("POST", "/collections/none/search/topk", Some(r#"{"query":[1,0,0,0]}"#), 404, "not_found");
    s.error("POST", "/collections/none/search/topk", Some(r#"{"query":[1,0,0,0]"#), 400, "invalid_argument");
    s.call("POST", "/collections", Some(json!({"name": "empty", "dimension": 4})), 200);
    for route in ["search", "search/topk"] {
        s.error(
            "POST",
            &format!("/collections/empty/{route}"),
            Some(r#"{"query":[1,0,0,0]}"#),
            400,
            "invalid_argument",
        );
    }
    s.error(
        "POST",
        "/collections/empty/search/topk/batch",
        Some(r#"{"queries":[[1,0,0,0]]}"#),
        400,
        "invalid_argument",
    );
    s.error("POST", "/collections/s/search/topk/batch", Some(r#"{"queries":[]}"#), 400, "invalid_argument");
    s.error(
        "POST",
        "/collections/s/search/topk/batch",
        Some(r#"{"queries":[[1,0,0,0],[1,0]]}"#),
        400,
        "invalid_argument",
    );
    // ivf on >= 2048 points answers exactly and says so.
    s.call("POST", "/collections", Some(json!({"name": "big", "dimension": 2})), 200);
    for chunk in 0..9u64 {
        let pts: Vec<Value> =
            (0..256u64).map(|i| json!({"id": chunk * 256 + i, "values": [i as f32, chunk as f32]})).collect();
        s.call("POST", "/collections/big/points", Some(json!({ "points": pts })), 200);
    }
    let ivf = s.call(
        "POST",
        "/collections/big/search/topk",
        Some(json!({"query": [3, 0], "metric": "l2", "mode": "ivf", "limit": 1})),
        200,
    );
    assert_eq!((ivf["mode"].as_str(), ivf["recall_at_k"].as_f64()), (Some("exact"), Some(1.0)));
    assert_eq!(ids(&ivf, "hits"), vec![3]);
    assert!(s.call("GET", "/metrics", None, 200)["search_ivf_fallback_exact_total"].as_u64().unwrap() >= 1);
}

/// 75 queries, more than a query block of the exact kernels, fewer than
/// the batch limit.
#[test]
fn batch_search_equals_single_searches() {
    let s = Server::start(2, &[]);
    s.call("POST", "/collections", Some(json!({"name": "b", "dimension": 8})), 200);
    let mut seed = 7u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) % 1000) as f32 / 100.0 - 5.0
    };
    let pts: Vec<Value> =
        (0..200u64).map(|i| json!({"id": i, "values": (0..8).map(|_| next()).collect::<Vec<_>>()})).collect();
    s.call("POST", "/collections/b/points", Some(json!({ "points": pts })), 200);
    let queries: Vec<Vec<f32>> = (0..75).map(|_| (0..8).map(|_| next()).collect()).collect();
    for metric in ["l2", "dot", "cosine"] {
        let batch = s.call(
            "POST",
            "/collections/b/search/topk/batch",
            Some(json!({"queries": queries, "metric": metric, "limit": 7})),
            200,
        );
        for (i, q) in queries.iter().enumerate() {
            let single = s.call(
                "POST",
                "/collections/b/search/topk",
                Some(json!({"query": q, "metric": metric, "limit": 7})),
                200,
            );
            assert_eq!(ids(&batch["results"][i], "hits"), ids(&single, "hits"), "{metric} query {i}");
        }
    }
}

#[test]
fn payload_set_and_delete() {
    let s = Server::start(2, &[]);
    demo(&s, "pl");
    let r = s.call(
        "POST",
        "/collections/pl/points/payload/set",
        Some(json!({"points": [1, 2, 2], "payload": {"tier": "pro", "region": "eu"}})),
        200,
    );
    assert_eq!(r, json!({"updated": 2}));
    let r = s.call(
        "POST",
        "/collections/pl/points/payload/set",
        Some(json!({"points": [1, 2], "payload": {"tier": "pro"}})),
        200,
    );
    assert_eq!(r, json!({"updated": 0}));
    assert_eq!(s.call("GET", "/collections/pl/points/1", None, 200)["payload"]["region"], "eu");
    let r = s.call(
        "POST",
        "/collections/pl/points/payload/delete",
        Some(json!({"points": [1, 2, 3], "keys": ["region"]})),
        200,
    );
    assert_eq!(r, json!({"updated": 2}));
    assert!(s.call("GET", "/collections/pl/points/2", None, 200)["payload"].get("region").is_none());
    s.error(
        "POST",
        "/collections/pl/points/payload/set",
        Some(r#"{"points":[1,99],"payload":{"a":1}}"#),
        404,
        "not_found",
    );
    assert!(
        s.call("GET", "/collections/pl/points/1", None, 200)["payload"].get("a").is_none(),
        "nothing changed on 404"
    );
    s.error(
        "POST",
        "/collections/pl/points/payload/set",
        Some(r#"{"points":[],"payload":{"a":1}}"#),
        400,
        "invalid_argument",
    );
    s.error(
        "POST",
        "/collections/pl/points/payload/set",
        Some(r#"{"points":[1],"payload":{}}"#),
        400,
        "invalid_argument",
    );
    s.error(
        "POST",
        "/collections/pl/points/payload/delete",
        Some(r#"{"points":[1],"keys":[]}"#),
        400,
        "invalid_argument",
    );
    s.error(
        "POST",
        "/collections/pl/points/payload/delete",
        Some(r#"{"points":[1],"keys":[" "]}"#),
        400,
        "invalid_argument",
    );
    s.error("POST", "/collections/pl/points/count", None, 400, "invalid_argument");
}

#[test]
fn distance_route() {
    let s = Server::start(1, &[]);
    let d = |b: Value| s.call("POST", "/distance", Some(b), 200)["value"].as_f64().unwrap();
    assert_eq!(d(json!({"left": [1, 2], "right": [3, 4]})), 11.0);
    assert_eq!(d(json!({"left": [0, 0], "right": [3, 4], "metric": "l2"})), 5.0);
    assert!((d(json!({"left": [1, 0], "right": [1, 1], "metric": "cosine"})) - 0.70710677).abs() < 1e-6);
    for bad in [
        r#"{"left":[1],"right":[1,2]}"#,
        r#"{"left":[],"right":[]}"#,
        r#"{"left":[0,0],"right":[1,1],"metric":"cosine"}"#,
        r#"{"left":[1e39],"right":[1]}"#,
        r#"{"left":[1],"right":[1],"metric":"manhattan"}"#,
        // Results beyond f32 are refused rather than answered as null.
        r#"{"left":[1e30,1e30],"right":[1e30,1e30]}"#,
        r#"{"left":[3e38,3e38],"right":[-3e38,-3e38],"metric":"l2"}"#,
    ] {
        s.error("POST", "/distance", Some(bad), 400, "invalid_argument");
    }
}

/// Found by schemathesis (clients/python/tests): serde reads a struct from
/// a JSON array, and `null` clause lists slipped past the filter parser.
#[test]
fn bodies_must_be_objects_and_null_lists_are_refused() {
    let s = Server::start(1, &[]);
    s.error("POST", "/collections", Some(r#"["arr",3]"#), 400, "invalid_argument");
    s.error("POST", "/distance", Some("[[1,2],[3,4]]"), 400, "invalid_argument");
    s.call("POST", "/collections", Some(json!({"name": "arr", "dimension": 3})), 200);
    s.error("PUT", "/collections/arr/points/5", Some("[[1,2,3]]"), 400, "invalid_argument");
    s.error("POST", "/collections/arr/points/count", Some("[]"), 400, "invalid_argument");
    for list in ["must", "should", "must_not"] {
        let body = format!(r#"{{"filter":{{"{list}":null}}}}"#);
        s.error("POST", "/collections/arr/points/count", Some(&body), 400, "invalid_argument");
    }
    // Whitespace before the object is fine.
    assert_eq!(s.call("POST", "/collections/arr/points/count", None, 400)["code"], "invalid_argument");
    let r = s.req("POST", "/collections/arr/points/count", Some("  \n {}"));
    assert_eq!(r.status, 200, "{}", r.body);
    // `.` is a path segment URL clients rewrite away: not a name.
    s.error("POST", "/collections", Some(r#"{"name":".","dimension":2}"#), 400, "invalid_argument");
}

#[test]
fn routing_errors_are_json() {
    let s = Server::start(1, &[]);
    s.error("GET", "/nope", None, 404, "not_found");
    s.error("PATCH", "/collections", None, 405, "invalid_argument");
    s.error("DELETE", "/live", None, 405, "invalid_argument");
    // RFC 9110: a 405 names the methods the resource has.
    assert_eq!(s.req("PATCH", "/collections", None).header("allow"), Some("GET, POST"));
    assert_eq!(s.req("TRACE", "/live", None).header("allow"), Some("GET"));
    s.error("GET", "/collections/x/points/notanumber", None, 400, "invalid_argument");
}

/// At the defaults, a batch at the documented cap (256 points) of
/// 1536-dimension vectors fits the body limit (issue 16: 1 MiB refused a
/// full batch of 384 dimensions), and a body past the limit is told which
/// setting to raise.
#[test]
fn a_full_batch_of_large_vectors_fits_the_default_body_limit() {
    let s = Server::start(1, &[("AIONBD_PERSISTENCE_ENABLED", "false")]);
    s.call("POST", "/collections", Some(json!({"name": "big", "dimension": 1536})), 200);
    let mut seed = 7u64;
    let points: Vec<Value> = (0..256u64)
        .map(|id| {
            let v: Vec<f32> = (0..1536)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            json!({"id": id, "values": v})
        })
        .collect();
    let body = json!({"points": points}).to_string();
    assert!(body.len() > 4 << 20, "the batch is {} bytes", body.len());
    let r = s.req("POST", "/collections/big/points", Some(&body));
    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(300)]);
    assert_eq!(r.json()["created"], 256);
    let small = Server::start(1, &[("AIONBD_PERSISTENCE_ENABLED", "false"), ("AIONBD_MAX_BODY_BYTES", "100000")]);
    let r = small.req("POST", "/collections", Some(&body));
    assert_eq!(r.status, 413);
    assert!(r.body.contains("AIONBD_MAX_BODY_BYTES"), "{}", r.body);
}

/// `?format=strict` is the exposition `promtool check metrics` accepts
/// (Debian package `prometheus`; `.ci/run` installs it); the default keeps
/// the original's names.
#[test]
fn the_strict_prometheus_exposition_passes_promtool() {
    let s = crate::harness::Server::start(2, &[]);
    s.call("POST", "/collections", Some(serde_json::json!({"name": "p", "dimension": 2})), 200);
    s.call("PUT", "/collections/p/points/1", Some(serde_json::json!({"values": [1, 2]})), 200);
    let strict = s.req("GET", "/metrics/prometheus?format=strict", None);
    assert_eq!(strict.status, 200);
    assert!(strict.body.contains("aionbd_http_request_duration_seconds_bucket{le=\"+Inf\"}"), "{}", strict.body);
    assert!(strict.body.contains("aionbd_persistence_writes_total "), "{}", strict.body);
    // Per route class: the create and the PUT were writes, no search ran.
    let count = |class: &str| -> u64 {
        let key = format!("aionbd_http_route_duration_seconds_count{{class=\"{class}\"}} ");
        let line =
            strict.body.lines().find(|l| l.starts_with(&key)).unwrap_or_else(|| panic!("{key}: {}", strict.body));
        line[key.len()..].parse().unwrap()
    };
    assert_eq!(count("write"), 2, "create + put");
    assert_eq!(count("search"), 0);
    let value = |key: &str| -> f64 {
        let line = strict.body.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{key}: {}", strict.body));
        line[key.len()..].trim().parse().unwrap()
    };
    // Each shard's own gauges; the one gathering the scrape serves it.
    for shard in 0..2 {
        for family in
            ["connections_open", "mesh_backlog", "turn_lateness_seconds", "wal_segments", "snapshot_age_seconds"]
        {
            value(&format!("aionbd_shard_{family}{{shard=\"{shard}\"}} "));
        }
    }
    assert_eq!(
        value("aionbd_shard_requests_in_flight{shard=\"0\"} ") + value("aionbd_shard_requests_in_flight{shard=\"1\"} "),
        1.0,
        "the scrape itself"
    );
    // Two writes, each acknowledged after an fdatasync.
    assert!(value("aionbd_wal_fdatasync_duration_seconds_count ") >= 2.0);
    assert_eq!(value("aionbd_collection_points{collection=\"p\"} "), 1.0);
    assert_eq!(value("aionbd_collection_index_coverage_ratio{collection=\"p\"} "), 0.0, "1 point, no index yet");
    let original = s.req("GET", "/metrics/prometheus", None);
    assert!(original.body.contains("aionbd_persistence_writes ") && original.body.contains("quantile="));
    assert_eq!(s.req("GET", "/metrics/prometheus?format=bogus", None).status, 400);
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is needed for this test");
    use std::io::Write;
    promtool.stdin.take().unwrap().write_all(strict.body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
