//! The HTTP/1.1 layer through the real server: keep-alive, pipelining,
//! framing, limits and deadlines.

use crate::harness::{parse_responses, read_responses, Server};
use std::io::{Read, Write};
use std::time::Duration;

fn read_all(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn keep_alive_and_pipelined_responses_come_in_order() {
    let s = Server::start(2, &[]);
    s.call("POST", "/collections", Some(serde_json::json!({"name": "p", "dimension": 1})), 200);
    let mut c = s.connect();
    // Ten requests in one write, mixing routes and an error.
    let mut burst = Vec::new();
    for i in 0..10u64 {
        let body = format!(r#"{{"values":[{i}]}}"#);
        if i == 4 {
            burst.extend(b"GET /nope HTTP/1.1\r\nhost: t\r\n\r\n");
        } else {
            burst.extend(
                format!("PUT /collections/p/points/{i} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: req-{i}\r\n\r\n{body}", body.len())
                    .as_bytes(),
            );
        }
    }
    c.write_all(&burst).unwrap();
    let resps = read_responses(&mut c, 10);
    assert_eq!(resps.len(), 10);
    for (i, r) in resps.iter().enumerate() {
        if i == 4 {
            assert_eq!(r.status, 404);
        } else {
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.header("x-request-id"), Some(format!("req-{i}").as_str()));
            assert_eq!(r.json()["id"], i as u64);
        }
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    // The same connection keeps working, then closes on request.
    c.write_all(b"GET /live HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").unwrap();
    let rest = parse_responses(&read_all(&mut c));
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].header("connection"), Some("close"));
}

#[test]
fn request_ids_are_echoed_or_generated() {
    let s = Server::start(1, &[]);
    let r = s.raw("GET", "/live", &[("x-request-id", "abc-123")], None);
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let r = s.raw("GET", "/live", &[], None);
    let id = r.header("x-request-id").unwrap();
    assert_eq!(id.len(), 36, "uuid: {id}");
    let e = s.raw("GET", "/missing", &[], None);
    assert!(e.header("x-request-id").is_some());
}

#[test]
fn chunked_bodies_are_accepted() {
    let s = Server::start(1, &[]);
    let body = br#"{"name":"chunky","dimension":2}"#;
    let mut c = s.connect();
    let mut req = b"POST /collections HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for part in body.chunks(7) {
        req.extend(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend(part);
        req.extend(b"\r\n");
    }
    req.extend(b"0\r\n\r\n");
    c.write_all(&req).unwrap();
    let r = parse_responses(&read_all(&mut c));
    assert_eq!(r[0].status, 200, "{:?}", r[0]);
    assert_eq!(r[0].json()["name"], "chunky");
}

#[test]
fn framing_attacks_and_limits_close_the_connection() {
    let s = Server::start(1, &[("AIONBD_MAX_BODY_BYTES", "1000")]);
    let cases: [(&[u8], u16); 5] = [
        (b"POST /collections HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST /collections HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello", 400),
        (b"POST /collections HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n", 413),
        (b"NOT HTTP\r\n\r\n", 400),
        (b"POST /collections HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n7d0\r\n", 413),
    ];
    for (raw, status) in cases {
        let mut c = s.connect();
        c.write_all(raw).unwrap();
        // The server answers and closes even though the client keeps the
        // connection open: read_to_end returns.
        let r = parse_responses(&read_all(&mut c));
        assert_eq!(r.len(), 1, "{:?}", String::from_utf8_lossy(raw));
        assert_eq!(r[0].status, status, "{:?}", String::from_utf8_lossy(raw));
        assert_eq!(r[0].header("connection"), Some("close"));
        let code = r[0].json()["code"].as_str().unwrap().to_owned();
        assert_eq!(code, if status == 413 { "payload_too_large" } else { "invalid_argument" });
    }
    // A client that sends a whole oversized body before reading (as most
    // do) still gets the 413, not a connection reset: the server reads and
    // drops the rest of the body after answering.
    let mut c = s.connect();
    let body = vec![b' '; 3 << 20];
    let head = format!("POST /collections HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n", body.len());
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&body).expect("the server drains the body instead of resetting");
    let r = parse_responses(&read_all(&mut c));
    assert_eq!(r[0].status, 413);
    let long_head = format!("GET /live HTTP/1.1\r\nx-long: {}\r\n\r\n", "a".repeat(20_000));
    let mut c = s.connect();
    c.write_all(long_head.as_bytes()).unwrap();
    assert_eq!(parse_responses(&read_all(&mut c))[0].status, 431);
}

#[test]
fn slow_requests_get_408_and_idle_connections_close() {
    let s = Server::start(1, &[("AIONBD_REQUEST_READ_TIMEOUT_MS", "300"), ("AIONBD_IDLE_TIMEOUT_MS", "300")]);
    let mut c = s.connect();
    c.write_all(b"GET /live HTTP/1.1\r\nhost: t\r\n").unwrap();
    let t0 = std::time::Instant::now();
    let r = parse_responses(&read_all(&mut c));
    assert_eq!(r[0].status, 408);
    assert_eq!(r[0].json()["code"], "request_timeout");
    assert!(t0.elapsed() < Duration::from_secs(10));
    // An idle keep-alive connection is closed without a response.
    let mut idle = s.connect();
    assert!(read_all(&mut idle).is_empty());
}

#[test]
fn expect_continue_and_http_1_0() {
    let s = Server::start(1, &[]);
    let mut c = s.connect();
    let body = br#"{"name":"ex","dimension":2}"#;
    let head = format!(
        "POST /collections HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    c.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(body).unwrap();
    assert_eq!(parse_responses(&read_all(&mut c))[0].status, 200);
    // HTTP/1.0 closes by default.
    let mut c = s.connect();
    c.write_all(b"GET /live HTTP/1.0\r\n\r\n").unwrap();
    let r = parse_responses(&read_all(&mut c));
    assert_eq!((r[0].status, r[0].header("connection")), (200, Some("close")));
}

#[test]
fn concurrent_clients_on_two_shards_see_one_database() {
    let s = Server::start(2, &[]);
    s.call("POST", "/collections", Some(serde_json::json!({"name": "cc", "dimension": 2})), 200);
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..50u64 {
                    let id = t * 1000 + i;
                    s.call(
                        "PUT",
                        &format!("/collections/cc/points/{id}"),
                        Some(serde_json::json!({"values": [id as f32, 1.0]})),
                        200,
                    );
                }
            });
        }
    });
    assert_eq!(s.call("GET", "/collections/cc", None, 200)["point_count"], 400);
    let m = s.call("GET", "/metrics", None, 200);
    assert_eq!(m["points"], 400);
    let hit =
        s.call("POST", "/collections/cc/search", Some(serde_json::json!({"query": [7005, 1], "metric": "l2"})), 200);
    assert_eq!(hit["id"], 7005);
}

/// A search that runs past the request timeout answers 408
/// `request_timeout`. A 4096-query batch over 10k x 400 points takes about
/// 1 s here (16 G multiply-adds), several times the 250 ms timeout, so the
/// request is past its deadline whether the timer fires while it waits for
/// the other shard or the scan finishes first; loading (~10 ms per batch)
/// stays well inside it.
/// Settings for a server that takes large exact batches.
const BIG_BATCHES: [(&str, &str); 3] = [
    ("AIONBD_PERSISTENCE_ENABLED", "false"),
    ("AIONBD_SEARCH_BATCH_MAX_QUERIES", "8192"),
    ("AIONBD_MAX_BODY_BYTES", "16777216"),
];

/// A collection "slow" of 20,480 points x 400 dimensions, and the body of
/// an exact batch search of `n` queries over it (about a second of CPU for
/// 6144 with the AVX-512 kernels, several without).
fn slow_collection(s: &Server, n: usize) -> String {
    s.call("POST", "/collections", Some(serde_json::json!({"name": "slow", "dimension": 400})), 200);
    for chunk in 0..80u64 {
        let pts: Vec<serde_json::Value> = (0..256u64)
            .map(|i| {
                let id = chunk * 256 + i;
                serde_json::json!({"id": id, "values": (0..400).map(|d| ((id * 31 + d) % 97) as f32).collect::<Vec<_>>()})
            })
            .collect();
        s.call("POST", "/collections/slow/points", Some(serde_json::json!({ "points": pts })), 200);
    }
    let queries: Vec<Vec<f32>> = (0..n).map(|q| (0..400).map(|d| ((q * 7 + d) % 13) as f32).collect()).collect();
    serde_json::json!({"queries": queries, "metric": "l2", "limit": 10, "mode": "exact"}).to_string()
}

#[test]
fn waiting_past_the_request_timeout_answers_408() {
    let mut env = BIG_BATCHES.to_vec();
    env.push(("AIONBD_REQUEST_TIMEOUT_MS", "250"));
    let s = Server::start(2, &env);
    let body = slow_collection(&s, 4096);
    let r = s.req("POST", "/collections/slow/search/topk/batch", Some(&body));
    assert_eq!(r.status, 408, "{}", r.body);
    assert_eq!(r.json()["code"], "request_timeout");
    // The server keeps serving afterwards.
    assert_eq!(s.call("GET", "/live", None, 200)["status"], "live");
}

#[test]
fn a_large_exact_batch_does_not_hold_its_shard() {
    // One shard: every request shares the core the batch runs on. The
    // batch is answered in steps of 64 queries, so a small request sent
    // while it runs is answered between two steps, before the batch ends.
    // The batch may take longer than the default 2 s request timeout when
    // the suite loads the box; a 408 is not what this test is about.
    let mut env = BIG_BATCHES.to_vec();
    env.push(("AIONBD_REQUEST_TIMEOUT_MS", "120000"));
    let s = Server::start(1, &env);
    let body = slow_collection(&s, 6144);
    let batch_done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let batch = scope.spawn(|| {
            let r = s.req("POST", "/collections/slow/search/topk/batch", Some(&body));
            batch_done.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        });
        // Let the batch arrive and start scanning (it scans for seconds).
        std::thread::sleep(Duration::from_millis(300));
        let small = s.call("GET", "/collections/slow", None, 200);
        let finished_first = batch_done.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(small["point_count"], 20480, "{small}");
        let r = batch.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["results"].as_array().map(Vec::len), Some(6144));
        assert!(!finished_first, "the small request waited for the whole batch");
    });
}

/// An exact scan runs in pieces of rows (`AIONBD_DEBUG_SCAN_PIECE_ROWS`
/// makes them 16 rows, so ~70 per partition here, and
/// `AIONBD_DEBUG_SCAN_PIECE_PAUSE_MS` 1 ms apart), and other requests run
/// between them: deletes that move rows into the holes they leave. Every
/// search still finds each point present throughout, once: the near points
/// (added last, so the deletes move them) are never deleted, the far ones
/// are (added first, deleted during the searches).
#[test]
fn exact_scans_in_pieces_find_every_point_while_deletes_move_rows() {
    let s = Server::start(
        2,
        &[
            ("AIONBD_DEBUG_SCAN_PIECE_ROWS", "16"),
            ("AIONBD_DEBUG_SCAN_PIECE_PAUSE_MS", "1"),
            ("AIONBD_PERSISTENCE_ENABLED", "false"),
        ],
    );
    s.call("POST", "/collections", Some(serde_json::json!({"name": "moving", "dimension": 2})), 200);
    let far = 1000..3000u64;
    for chunk in far.clone().collect::<Vec<u64>>().chunks(250) {
        let pts: Vec<serde_json::Value> =
            chunk.iter().map(|&id| serde_json::json!({"id": id, "values": [1000.0 + id as f32, 0.0]})).collect();
        s.call("POST", "/collections/moving/points", Some(serde_json::json!({ "points": pts })), 200);
    }
    let pts: Vec<serde_json::Value> = (0..200u64).map(|id| serde_json::json!({"id": id, "values": [id, 1]})).collect();
    s.call("POST", "/collections/moving/points", Some(serde_json::json!({ "points": pts })), 200);
    let near: Vec<u64> = (0..200).collect();
    let deleting = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for id in far.clone() {
                s.call("DELETE", &format!("/collections/moving/points/{id}"), None, 200);
            }
            deleting.store(false, std::sync::atomic::Ordering::SeqCst);
        });
        let mut searches = 0;
        while deleting.load(std::sync::atomic::Ordering::SeqCst) || searches < 5 {
            let query = serde_json::json!({"query": [0.0, 1.0], "metric": "l2", "limit": 200, "mode": "exact"});
            let r = s.call("POST", "/collections/moving/search/topk", Some(query), 200);
            let ids: Vec<u64> = r["hits"].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect();
            assert_eq!(ids, near, "search {searches}");
            // A batch of two steps' worth of queries (64 a step).
            let batch =
                serde_json::json!({"queries": vec![[0.0, 1.0]; 70], "metric": "l2", "limit": 200, "mode": "exact"});
            let r = s.call("POST", "/collections/moving/search/topk/batch", Some(batch), 200);
            for item in r["results"].as_array().unwrap() {
                let ids: Vec<u64> =
                    item["hits"].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect();
                assert_eq!(ids, near, "batch {searches}");
            }
            searches += 1;
        }
    });
    let count = s.call("GET", "/collections/moving", None, 200);
    assert_eq!(count["point_count"], 200, "{count}");
}

#[test]
fn the_rate_limit_counts_every_shard_and_answers_429_with_retry_after() {
    let limit = 30usize;
    let s = Server::start(2, &[("AIONBD_AUTH_RATE_LIMIT_PER_MINUTE", &limit.to_string())]);
    // The window is the UTC wall-clock minute: start early in one.
    let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60;
    if second >= 45 {
        std::thread::sleep(Duration::from_secs(61 - second));
    }
    // Each request on a new connection: the kernel spreads them over both
    // shards, which must count together.
    let (mut ok, mut refused) = (0, Vec::new());
    for _ in 0..2 * limit {
        let r = s.req("GET", "/live", None);
        match r.status {
            200 => ok += 1,
            429 => refused.push(r),
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    // Never refused below the limit; past it only by reports in flight
    // between the shards (none here: one request at a time).
    assert!((limit..=limit + 2).contains(&ok), "{ok} requests passed a limit of {limit}");
    for r in &refused {
        assert_eq!(r.json()["code"], "resource_exhausted", "{}", r.body);
        let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    }
}

/// HEAD is GET without a body (keep-alive goes on after it); OPTIONS lists
/// a path's methods before authentication; CORS headers only for the
/// configured origins, and they do not replace credentials.
#[test]
fn head_options_and_cors() {
    let env = [
        ("AIONBD_AUTH_MODE", "api_key"),
        ("AIONBD_AUTH_API_KEYS", "t:key-1"),
        ("AIONBD_CORS_ALLOWED_ORIGINS", "https://app.example.com"),
        ("AIONBD_PERSISTENCE_ENABLED", "false"),
    ];
    let s = Server::start(2, &env);
    let key = [("x-api-key", "key-1")];
    // HEAD: the head of the GET answer (its Content-Length), no body; the
    // next pipelined request is answered on the same connection.
    let get = s.raw("GET", "/collections", &key, None);
    let mut c = s.connect();
    c.write_all(b"HEAD /collections HTTP/1.1\r\nhost: t\r\nx-api-key: key-1\r\n\r\nGET /live HTTP/1.1\r\nhost: t\r\nx-api-key: key-1\r\nconnection: close\r\n\r\n")
        .unwrap();
    let raw = String::from_utf8(read_all(&mut c)).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(head.contains(&format!("content-length: {}", get.body.len())), "{raw}");
    assert!(rest.starts_with("HTTP/1.1 200"), "the body of a HEAD answer was sent: {raw}");
    let mut c = s.connect();
    c.write_all(b"HEAD /collections/c/search HTTP/1.1\r\nhost: t\r\nx-api-key: key-1\r\nconnection: close\r\n\r\n")
        .unwrap();
    let raw = String::from_utf8(read_all(&mut c)).unwrap();
    assert!(raw.starts_with("HTTP/1.1 405") && raw.ends_with("\r\n\r\n"), "a head alone: {raw}");
    // OPTIONS, without credentials: 200 and Allow; 404 off the route table.
    let o = s.raw("OPTIONS", "/collections/c/points/7", &[], None);
    assert_eq!(o.status, 200);
    assert_eq!(o.header("allow"), Some("GET, PUT, DELETE, HEAD, OPTIONS"));
    assert!(o.header("access-control-allow-origin").is_none(), "no Origin, no CORS headers");
    assert_eq!(s.raw("OPTIONS", "/nope", &[], None).status, 404);
    // A preflight from the allowed origin, then the real request.
    let origin = [("origin", "https://app.example.com"), ("access-control-request-method", "POST")];
    let p = s.raw("OPTIONS", "/collections", &origin, None);
    assert_eq!(p.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(p.header("access-control-allow-methods"), Some("GET, POST, HEAD, OPTIONS"));
    assert!(p.header("access-control-allow-headers").unwrap().contains("x-api-key"));
    let r = s.raw("GET", "/collections", &[("origin", "https://app.example.com"), ("x-api-key", "key-1")], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert!(r.header("access-control-expose-headers").unwrap().contains("x-request-id"));
    // CORS does not replace credentials, and other origins get nothing.
    let no_key = s.raw("GET", "/collections", &[("origin", "https://app.example.com")], None);
    assert_eq!(no_key.status, 401);
    let other = s.raw("GET", "/collections", &[("origin", "https://evil.example"), ("x-api-key", "key-1")], None);
    assert_eq!(other.status, 200);
    assert!(other.header("access-control-allow-origin").is_none());
}
