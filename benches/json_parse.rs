//! How request bodies are parsed: simd-json or serde_json on the body the
//! issue named (a 256-point x 384-dim batch upsert with payloads), and
//! serde_json against the vector fast path (`api::vectors`, issue 21) on
//! that body and on single-point upserts, their numbers written as an `f32`'s
//! shortest text (Rust, the benches) and as an `f64`'s (Python, JavaScript).
//! Every parser reads the same bytes into the server's real body type,
//! alternating rounds so machine noise hits all alike; the ratios are what
//! count.
//!
//! Run: `cargo bench --bench json_parse`

use aionbd::api::body::{parse_vectors, parse_with, BatchUpsert, JsonParser, UpsertPoint};
use std::time::Instant;

fn values(seed: &mut u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 0.2 - 0.1
        })
        .collect()
}

fn batch_body() -> Vec<u8> {
    let mut seed = 42u64;
    let points: Vec<serde_json::Value> = (0..256)
        .map(|i| {
            let values = values(&mut seed, 384);
            serde_json::json!({"id": i, "values": values, "payload": {"label": format!("item-{i}"), "n": i}})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "points": points })).unwrap()
}

/// 64 single-point bodies, numbers as `f32` texts or as `f64` texts.
fn point_bodies(as_f64: bool) -> Vec<Vec<u8>> {
    let mut seed = 7u64;
    (0..64)
        .map(|_| {
            let v = values(&mut seed, 384);
            let texts: Vec<String> =
                v.iter().map(|x| if as_f64 { format!("{:?}", f64::from(*x)) } else { x.to_string() }).collect();
            format!(r#"{{"values":[{}]}}"#, texts.join(",")).into_bytes()
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Simd,
    Serde,
    Fast,
}

/// Seconds per body, over `iters` passes over `bodies`.
fn time<T: aionbd::api::vectors::Vectors>(way: Way, bodies: &[Vec<u8>], iters: usize, check: impl Fn(&T)) -> f64 {
    let mut bufs: Vec<Vec<u8>> = bodies.to_vec();
    let t0 = Instant::now();
    for _ in 0..iters {
        for (buf, src) in bufs.iter_mut().zip(bodies) {
            buf.copy_from_slice(src); // simd-json parses in place; copy for all
            let b: T = match way {
                Way::Simd => parse_with(JsonParser::Simd, buf),
                Way::Serde => parse_with(JsonParser::Serde, buf),
                Way::Fast => parse_vectors(buf),
            }
            .expect("valid body");
            check(&b);
        }
    }
    t0.elapsed().as_secs_f64() / (iters * bodies.len()) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median of 7 alternating rounds per way: seconds per body.
fn compare<T: aionbd::api::vectors::Vectors>(
    ways: &[Way],
    bodies: &[Vec<u8>],
    iters: usize,
    check: impl Fn(&T) + Copy,
) -> Vec<f64> {
    let mut runs = vec![Vec::new(); ways.len()];
    for &w in ways {
        time(w, bodies, 2, check);
    }
    for _ in 0..7 {
        for (k, &w) in ways.iter().enumerate() {
            runs[k].push(time(w, bodies, iters, check));
        }
    }
    runs.into_iter().map(median).collect()
}

fn main() {
    let batch = vec![batch_body()];
    let mb = batch[0].len() as f64 / 1e6;
    let t =
        compare::<BatchUpsert>(&[Way::Simd, Way::Serde, Way::Fast], &batch, 20, |b| assert_eq!(b.points.len(), 256));
    println!("batch body: 256 points x 384 dims with payloads, {mb:.2} MB (median of 7 rounds)");
    println!("| parser | ms per body | MB/s |");
    println!("|---|---|---|");
    for (name, s) in [("simd-json 0.14 (serde path)", t[0]), ("serde_json 1", t[1]), ("vector fast path", t[2])] {
        println!("| {name} | {:.3} | {:.1} |", s * 1e3, mb / s);
    }
    println!("serde_json / simd-json = {:.2}x the time; fast path / serde_json = {:.2}x", t[1] / t[0], t[2] / t[1]);
    println!();
    println!("single-point upserts (384 dims, 64 bodies):");
    println!("| numbers written as | bytes | serde_json us per body | fast path us per body | fast / serde |");
    println!("|---|---|---|---|---|");
    for (label, as_f64) in [("f32 shortest (Rust, ryu)", false), ("f64 shortest (Python, JS)", true)] {
        let bodies = point_bodies(as_f64);
        let t = compare::<UpsertPoint>(&[Way::Serde, Way::Fast], &bodies, 200, |b| assert_eq!(b.values.len(), 384));
        println!("| {label} | {} | {:.2} | {:.2} | {:.2}x |", bodies[0].len(), t[0] * 1e6, t[1] * 1e6, t[1] / t[0]);
    }
}
