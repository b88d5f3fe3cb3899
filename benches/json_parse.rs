//! Which JSON parser decodes request bodies: simd-json or serde_json, on the
//! body the issue names (a 256-point x 384-dim batch upsert with payloads).
//! Both parse the same bytes into the server's real body type, alternating
//! rounds so machine noise hits both alike; the ratio is what counts.
//!
//! Run: `cargo bench --bench json_parse`

use aionbd::api::body::{parse_with, BatchUpsert, JsonParser};
use std::time::Instant;

fn body() -> Vec<u8> {
    let mut seed = 42u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 40) as f32 / (1u64 << 24) as f32) * 0.2 - 0.1
    };
    let points: Vec<serde_json::Value> = (0..256)
        .map(|i| {
            let values: Vec<f32> = (0..384).map(|_| next()).collect();
            serde_json::json!({"id": i, "values": values, "payload": {"label": format!("item-{i}"), "n": i}})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "points": points })).unwrap()
}

fn time(parser: JsonParser, src: &[u8], iters: usize) -> f64 {
    let mut buf = src.to_vec();
    let t0 = Instant::now();
    for _ in 0..iters {
        buf.copy_from_slice(src); // simd-json parses in place; copy for both
        let b: BatchUpsert = parse_with(parser, &mut buf).expect("valid body");
        assert_eq!(b.points.len(), 256);
    }
    t0.elapsed().as_secs_f64() / iters as f64
}

fn main() {
    let src = body();
    let iters = 40;
    let (mut simd, mut serde) = (Vec::new(), Vec::new());
    time(JsonParser::Simd, &src, 5);
    time(JsonParser::Serde, &src, 5);
    for _ in 0..7 {
        simd.push(time(JsonParser::Simd, &src, iters));
        serde.push(time(JsonParser::Serde, &src, iters));
    }
    simd.sort_by(f64::total_cmp);
    serde.sort_by(f64::total_cmp);
    let (s, j) = (simd[3], serde[3]);
    let mb = src.len() as f64 / 1e6;
    println!("body: 256 points x 384 dims, {mb:.2} MB");
    println!("simd-json : {:8.3} ms/body  {:7.1} MB/s", s * 1e3, mb / s);
    println!("serde_json: {:8.3} ms/body  {:7.1} MB/s", j * 1e3, mb / j);
    println!("serde_json time / simd-json time = {:.2}x (median of 7 rounds)", j / s);
}
