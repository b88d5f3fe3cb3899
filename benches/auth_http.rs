//! What authentication costs per request: QPS of a small, cheap search
//! (exact top-10 over 2,000 x 16, 8 keep-alive clients) with each auth mode,
//! each measured right after the same server shape with auth off, in one
//! run, rounds alternated. The ratio mode / off is the figure; the search is
//! small on purpose so the credential check is a visible share of a request.
//!
//! Run: `cargo bench --bench auth_http -- [--seconds 3] [--rounds 2]`

mod common;

use common::{Client, Server};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SECRET: &str = "bench-secret-bench-secret-bench-secret";

struct Mode {
    name: &'static str,
    env: Vec<(String, String)>,
    header: Option<(&'static str, String)>,
}

fn token(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    encode(&h, &serde_json::json!({"tenant": "bench", "sub": "b", "exp": exp}), key).unwrap()
}

fn modes(dir: &std::path::Path) -> Vec<Mode> {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let pub_path = dir.join("ed.pub");
    std::fs::write(&pub_path, kp.public_key_pem()).unwrap();
    let ed = EncodingKey::from_ed_pem(kp.serialize_pem().as_bytes()).unwrap();
    let env = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    vec![
        Mode {
            name: "api_key",
            env: env(&[("AIONBD_AUTH_MODE", "api_key"), ("AIONBD_AUTH_API_KEYS", "bench:k1")]),
            header: Some(("x-api-key", "k1".into())),
        },
        Mode {
            name: "jwt HS256",
            env: env(&[("AIONBD_AUTH_MODE", "jwt"), ("AIONBD_AUTH_JWT_HS256_SECRET", SECRET)]),
            header: Some((
                "authorization",
                format!("Bearer {}", token(Algorithm::HS256, None, &EncodingKey::from_secret(SECRET.as_bytes()))),
            )),
        },
        Mode {
            name: "jwt EdDSA",
            env: vec![
                ("AIONBD_AUTH_MODE".into(), "jwt".into()),
                ("AIONBD_AUTH_JWT_PUBLIC_KEYS".into(), format!("ed1:EdDSA:{}", pub_path.display())),
            ],
            header: Some(("authorization", format!("Bearer {}", token(Algorithm::EdDSA, Some("ed1"), &ed)))),
        },
    ]
}

/// Start a server with `env`, load the small collection, and measure QPS.
fn measure(env: &[(String, String)], header: Option<(&str, &str)>, seconds: f64) -> f64 {
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("AIONBD_PERSISTENCE_ENABLED", "false"));
    let mut server = Server::start(2, 2, &env);
    let addr = server.addr.clone();
    let mut c = Client::with_header(&addr, header);
    assert_eq!(c.post("/collections", br#"{"name":"b","dimension":16}"#).0, 200);
    for batch in 0..8u64 {
        let pts: Vec<String> = (0..250u64)
            .map(|i| {
                let id = batch * 250 + i;
                let v: Vec<String> = (0..16).map(|d| format!("{:.4}", ((id * 31 + d) % 97) as f32 / 97.0)).collect();
                format!(r#"{{"id":{id},"values":[{}]}}"#, v.join(","))
            })
            .collect();
        let (st, body) = c.post("/collections/b/points", format!(r#"{{"points":[{}]}}"#, pts.join(",")).as_bytes());
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    }
    let query =
        br#"{"query":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.1,0.2,0.3,0.4,0.5,0.6,0.7],"limit":10,"mode":"exact"}"#;
    let done = AtomicU64::new(0);
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (addr, done) = (&addr, &done);
            s.spawn(move || {
                let mut c = Client::with_header(addr, header);
                while Instant::now() < stop {
                    let (st, _) = c.post("/collections/b/search/topk", query);
                    assert_eq!(st, 200);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    server.kill();
    done.load(Ordering::Relaxed) as f64 / seconds
}

fn main() {
    let (mut seconds, mut rounds) = (3.0, 2);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds S"),
            "--rounds" => rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let dir = std::env::temp_dir().join(format!("aionbd-auth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!("small exact search (2,000 x 16, top 10), 8 keep-alive clients, 2 shards, {seconds} s per run");
    println!("| round | mode | QPS | auth off, just before | mode / off |");
    println!("|---|---|---|---|---|");
    for round in 1..=rounds {
        for m in modes(&dir) {
            let off = measure(&[], None, seconds);
            let on = measure(&m.env, m.header.as_ref().map(|(k, v)| (*k, v.as_str())), seconds);
            println!("| {round} | {} | {on:.0} | {off:.0} | {:.3} |", m.name, on / off);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
