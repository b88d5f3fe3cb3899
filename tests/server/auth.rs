//! Authentication, tenants and scopes through the real server (API.md §8):
//! every route against every kind of credential, with the expected status
//! of each cell written out; JWTs signed in the test with HS256, EdDSA,
//! ES256 and RS256 keys, and the ways a token must fail.

use crate::harness::{unique_dir, Resp, Server};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// Who sends a request in the matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Nobody,
    BadKey,
    BadToken,
    Malformed,
    ReadKey,
    WriteKey,
    AdminKey,
    Token,
    OtherTenant,
}

const EVERYONE: [Who; 9] = [
    Who::Nobody,
    Who::BadKey,
    Who::BadToken,
    Who::Malformed,
    Who::ReadKey,
    Who::WriteKey,
    Who::AdminKey,
    Who::Token,
    Who::OtherTenant,
];

const KEYS: &str = "acme:a-admin,acme:a-write,acme:a-read,beta:b-admin";
const SCOPES: &str = "a-write:write,a-read:readonly";

fn headers(who: Who) -> Vec<(&'static str, &'static str)> {
    match who {
        Who::Nobody => vec![],
        Who::BadKey => vec![("x-api-key", "not-a-key")],
        Who::BadToken => vec![("authorization", "Bearer not-a-token")],
        Who::Malformed => vec![("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")],
        Who::ReadKey => vec![("x-api-key", "a-read")],
        Who::WriteKey => vec![("x-api-key", "a-write")],
        Who::AdminKey => vec![("x-api-key", "a-admin")],
        Who::Token => vec![("authorization", "Bearer a-token")],
        Who::OtherTenant => vec![("x-api-key", "b-admin")],
    }
}

fn send(s: &Server, who: Who, method: &str, path: &str, body: Option<&str>) -> Resp {
    let mut h = headers(who);
    if body.is_some() {
        h.push(("content-type", "application/json"));
    }
    s.raw(method, path, &h, body.map(str::as_bytes))
}

/// Tenant acme's fixture: collection `only-a` (dimension 2) with points
/// 1..=3, made again before each cell so every cell starts the same.
fn fixture(s: &Server) {
    let _ = send(s, Who::AdminKey, "DELETE", "/collections/only-a", None);
    let r = send(s, Who::AdminKey, "POST", "/collections", Some(r#"{"name":"only-a","dimension":2}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    let pts =
        r#"{"points":[{"id":1,"values":[1,0],"payload":{"k":"x"}},{"id":2,"values":[0,1]},{"id":3,"values":[1,1]}]}"#;
    assert_eq!(send(s, Who::AdminKey, "POST", "/collections/only-a/points", Some(pts)).status, 200);
}

/// Every route of the table, with a request that succeeds for a caller
/// allowed to make it: (method, path, body, is a write route).
fn routes() -> Vec<(&'static str, &'static str, Option<&'static str>, bool)> {
    let q = r#"{"query":[1,0],"limit":2}"#;
    vec![
        ("GET", "/live", None, false),
        ("GET", "/ready", None, false),
        ("GET", "/metrics", None, false),
        ("GET", "/metrics/prometheus", None, false),
        ("GET", "/openapi.yaml", None, false),
        ("POST", "/distance", Some(r#"{"left":[1,2],"right":[3,4]}"#), false),
        ("GET", "/collections", None, false),
        ("POST", "/collections", Some(r#"{"name":"made","dimension":2}"#), true),
        ("GET", "/collections/only-a", None, false),
        ("DELETE", "/collections/only-a", None, true),
        ("GET", "/collections/only-a/points", None, false),
        ("POST", "/collections/only-a/points", Some(r#"{"points":[{"id":9,"values":[2,2]}]}"#), true),
        ("POST", "/collections/only-a/points/count", Some("{}"), false),
        ("POST", "/collections/only-a/points/payload/set", Some(r#"{"points":[2],"payload":{"n":1}}"#), true),
        ("POST", "/collections/only-a/points/payload/delete", Some(r#"{"points":[1],"keys":["k"]}"#), true),
        ("GET", "/collections/only-a/points/3", None, false),
        ("PUT", "/collections/only-a/points/7", Some(r#"{"values":[3,3]}"#), true),
        ("DELETE", "/collections/only-a/points/2", None, true),
        ("POST", "/collections/only-a/search", Some(q), false),
        ("POST", "/collections/only-a/search/topk", Some(q), false),
        ("POST", "/collections/only-a/search/topk/batch", Some(r#"{"queries":[[1,0]],"limit":2}"#), false),
    ]
}

/// The expected status of one cell.
fn expected(who: Who, path: &str, write: bool) -> u16 {
    let collection_route = path.starts_with("/collections/");
    match who {
        Who::Nobody | Who::BadKey | Who::BadToken | Who::Malformed => 401,
        Who::ReadKey if write => 403,
        Who::ReadKey | Who::WriteKey | Who::AdminKey | Who::Token => 200,
        // Another tenant: acme's collection does not exist for it.
        Who::OtherTenant if collection_route => 404,
        Who::OtherTenant => 200,
    }
}

#[test]
fn every_route_against_every_credential() {
    let s = Server::start(
        2,
        &[
            ("AIONBD_AUTH_MODE", "api_key_or_bearer_token"),
            ("AIONBD_AUTH_API_KEYS", KEYS),
            ("AIONBD_AUTH_API_KEY_SCOPES", SCOPES),
            ("AIONBD_AUTH_BEARER_TOKENS", "acme:a-token"),
            ("AIONBD_PERSISTENCE_ENABLED", "false"),
            // Hundreds of refused cells from one address on purpose.
            ("AIONBD_AUTH_FAILURE_LIMIT_PER_MINUTE", "0"),
        ],
    );
    // Tenant beta's own data, which no cell may see or change.
    let r = send(&s, Who::OtherTenant, "POST", "/collections", Some(r#"{"name":"only-b","dimension":3}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(&s, Who::OtherTenant, "PUT", "/collections/only-b/points/5", Some(r#"{"values":[5,5,5]}"#));
    assert_eq!(r.status, 200);
    let mut failures = Vec::new();
    for (method, path, body, write) in routes() {
        for who in EVERYONE {
            fixture(&s);
            let _ = send(&s, Who::AdminKey, "DELETE", "/collections/made", None);
            let _ = send(&s, Who::OtherTenant, "DELETE", "/collections/made", None);
            let r = send(&s, who, method, path, body);
            let want = expected(who, path, write);
            if r.status != want {
                failures.push(format!("{who:?} {method} {path}: {} (expected {want}) {}", r.status, r.body));
                continue;
            }
            let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            let code = body.get("code").cloned().unwrap_or(Value::Null);
            match want {
                401 => assert_eq!(code, "unauthorized", "{who:?} {method} {path}"),
                403 => assert_eq!(code, "forbidden", "{who:?} {method} {path}"),
                404 => assert!(r.body.contains("only-a") && !r.body.contains("::"), "{}", r.body),
                _ => {}
            }
            if method == "GET" && path == "/collections" && want == 200 {
                let list = r.json();
                let names: Vec<&str> =
                    list["collections"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
                let own = if who == Who::OtherTenant { "only-b" } else { "only-a" };
                assert_eq!(names, vec![own], "{who:?} lists only its tenant's collections, unprefixed");
            }
        }
    }
    assert!(failures.is_empty(), "{} cells differ:\n{}", failures.len(), failures.join("\n"));
    // Nothing of beta's was touched by any cell.
    let b = send(&s, Who::OtherTenant, "GET", "/collections/only-b/points/5", None);
    assert_eq!((b.status, b.json()["values"].clone()), (200, json!([5.0, 5.0, 5.0])));
    assert_eq!(send(&s, Who::OtherTenant, "GET", "/collections/only-b", None).json()["point_count"], 1);
    // The same name in two tenants is two collections; a name taken in the
    // caller's own tenant is 409, named as the caller named it.
    fixture(&s);
    let r = send(&s, Who::AdminKey, "POST", "/collections", Some(r#"{"name":"only-a","dimension":2}"#));
    assert_eq!(r.status, 409);
    assert!(r.body.contains("'only-a'") && !r.body.contains("::"), "{}", r.body);
    assert_eq!(
        send(&s, Who::OtherTenant, "POST", "/collections", Some(r#"{"name":"only-a","dimension":4}"#)).status,
        200
    );
    assert_eq!(send(&s, Who::AdminKey, "GET", "/collections/only-a", None).json()["dimension"], 2);
    assert_eq!(send(&s, Who::OtherTenant, "GET", "/collections/only-a", None).json()["dimension"], 4);
    // Failures are counted by reason; a 401 says how to authenticate.
    let m = send(&s, Who::AdminKey, "GET", "/metrics", None).json();
    assert!(m["auth_failures_missing_total"].as_u64().unwrap() >= 21, "{m}");
    assert!(m["auth_failures_malformed_total"].as_u64().unwrap() >= 20, "{m}");
    assert!(m["auth_forbidden_total"].as_u64().unwrap() >= 7, "{m}");
    assert_eq!(send(&s, Who::Nobody, "GET", "/nope", None).header("www-authenticate"), Some("Bearer"));
    // A route that writes to a collection named like a read route is a write.
    assert_eq!(send(&s, Who::ReadKey, "POST", "/collections/search-log/points", Some("{}")).status, 403);
}

#[test]
fn tenants_survive_restart_and_auth_off_collections_stay_invisible() {
    let dir = unique_dir();
    let env: &[(&str, &str)] = &[("AIONBD_AUTH_MODE", "api_key"), ("AIONBD_AUTH_API_KEYS", KEYS)];
    // Made with auth off: no namespace.
    let s = Server::start_in(&dir, 2, &[], &[]);
    s.call("POST", "/collections", Some(json!({"name": "open", "dimension": 2})), 200);
    drop(s);
    let s = Server::start_in(&dir, 2, env, &[]);
    fixture(&s);
    let r = send(&s, Who::OtherTenant, "POST", "/collections", Some(r#"{"name":"only-a","dimension":3}"#));
    assert_eq!(r.status, 200);
    s.kill();
    let s = Server::start_in(&dir, 2, env, &[]);
    let list = |who| send(&s, who, "GET", "/collections", None).json()["collections"].clone();
    assert_eq!(list(Who::AdminKey).as_array().unwrap().len(), 1, "{}", list(Who::AdminKey));
    assert_eq!(list(Who::AdminKey)[0]["dimension"], 2);
    assert_eq!(list(Who::OtherTenant)[0]["dimension"], 3);
    assert_eq!(send(&s, Who::AdminKey, "GET", "/collections/open", None).status, 404);
    assert_eq!(send(&s, Who::AdminKey, "GET", "/collections/only-a/points/3", None).status, 200);
    drop(s);
    // With auth off again, only the collection made with auth off shows.
    let s = Server::start_in(&dir, 2, &[], &[]);
    let names = s.call("GET", "/collections", None, 200)["collections"].clone();
    assert_eq!(names.as_array().unwrap().len(), 1, "{names}");
    assert_eq!(names[0]["name"], "open");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn probes_can_be_left_open_and_metrics_kept_for_admins() {
    let s = Server::start(
        1,
        &[
            ("AIONBD_AUTH_MODE", "api_key"),
            ("AIONBD_AUTH_API_KEYS", KEYS),
            ("AIONBD_AUTH_API_KEY_SCOPES", SCOPES),
            ("AIONBD_AUTH_OPEN_HEALTH", "true"),
            ("AIONBD_AUTH_METRICS_ADMIN", "true"),
            ("AIONBD_PERSISTENCE_ENABLED", "false"),
        ],
    );
    assert_eq!(send(&s, Who::Nobody, "GET", "/live", None).status, 200);
    assert_eq!(send(&s, Who::Nobody, "GET", "/ready", None).status, 200);
    assert_eq!(send(&s, Who::Nobody, "GET", "/collections", None).status, 401);
    assert_eq!(send(&s, Who::WriteKey, "GET", "/metrics", None).status, 403);
    assert_eq!(send(&s, Who::ReadKey, "GET", "/metrics/prometheus", None).status, 403);
    assert_eq!(send(&s, Who::AdminKey, "GET", "/metrics", None).status, 200);
}

#[test]
fn bad_auth_settings_are_all_reported_without_secrets() {
    let (code, err) = crate::startup::run_expecting_failure(
        &[
            ("AIONBD_AUTH_MODE", "api_key"),
            ("AIONBD_AUTH_API_KEYS", "acme:s3cr3t-one,beta:s3cr3t-one,broken"),
            ("AIONBD_AUTH_API_KEY_SCOPES", "ghost:read"),
            ("AIONBD_SHARDS", "1"),
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("listed twice") && err.contains("not tenant:secret") && err.contains("not in security.api_keys")
    );
    assert!(!err.contains("s3cr3t-one") && !err.contains("broken"), "a secret was printed: {err}");
    for (mode, missing) in
        [("jwt", "needs a key"), ("bearer_token", "needs security.bearer_tokens"), ("sso", "expected")]
    {
        let (code, err) =
            crate::startup::run_expecting_failure(&[("AIONBD_AUTH_MODE", mode), ("AIONBD_SHARDS", "1")], &[]);
        assert_eq!(code, 2, "{mode}: {err}");
        assert!(err.contains(missing), "{mode}: {err}");
    }
}

// ---- JWT ----

const SECRET: &str = "0123456789abcdef0123456789abcdef-hs256";

/// Rate windows are UTC minutes: wait for a fresh one if this one is
/// nearly over, so a test's requests all fall in one window.
fn early_in_a_minute() {
    let second = now() % 60;
    if second >= 45 {
        std::thread::sleep(std::time::Duration::from_secs(61 - second));
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "svc", "tenant": "acme", "iss": "edge-ca", "aud": "aionbd", "exp": now() + 600});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, c: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    encode(&h, c, key).unwrap()
}

/// Key pairs made for the test: (private PKCS#8 PEM, public SPKI PEM).
fn keypair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
    let kp = rcgen::KeyPair::generate_for(alg).unwrap();
    (kp.serialize_pem(), kp.public_key_pem())
}

/// RSA: ring cannot generate RSA keys, so openssl does.
fn rsa_keypair(dir: &std::path::Path) -> (String, String) {
    let key = dir.join("rsa.pem");
    let ok = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&key)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (Debian package openssl) makes the test's RSA key")
        .success();
    assert!(ok);
    let public = std::process::Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&key).output().unwrap();
    (std::fs::read_to_string(&key).unwrap(), String::from_utf8(public.stdout).unwrap())
}

#[test]
fn jwts_of_every_algorithm_verify_and_every_bad_one_is_401() {
    let dir = unique_dir();
    let (ed_priv, ed_pub) = keypair(&rcgen::PKCS_ED25519);
    let (ec_priv, ec_pub) = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (rsa_priv, rsa_pub) = rsa_keypair(&dir);
    for (name, pem) in [("ed.pem", &ed_pub), ("ec.pem", &ec_pub), ("rsa.pub.pem", &rsa_pub)] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    let keys = format!(
        "ed1:EdDSA:{},ec1:ES256:{},rsa1:RS256:{}",
        dir.join("ed.pem").display(),
        dir.join("ec.pem").display(),
        dir.join("rsa.pub.pem").display()
    );
    let s = Server::start(
        1,
        &[
            ("AIONBD_AUTH_MODE", "jwt"),
            ("AIONBD_AUTH_JWT_HS256_SECRET", SECRET),
            ("AIONBD_AUTH_JWT_PUBLIC_KEYS", &keys),
            ("AIONBD_AUTH_JWT_ISSUER", "edge-ca"),
            ("AIONBD_AUTH_JWT_AUDIENCE", "other,aionbd"),
            ("AIONBD_PERSISTENCE_ENABLED", "false"),
        ],
    );
    let hs = EncodingKey::from_secret(SECRET.as_bytes());
    let ed = EncodingKey::from_ed_pem(ed_priv.as_bytes()).unwrap();
    let ec = EncodingKey::from_ec_pem(ec_priv.as_bytes()).unwrap();
    let rsa = EncodingKey::from_rsa_pem(rsa_priv.as_bytes()).unwrap();
    let get = |token: &str| {
        let auth = format!("Bearer {token}");
        s.raw("GET", "/collections", &[("authorization", &auth)], None)
    };
    let good = claims(json!({}));
    for (what, token) in [
        ("HS256", sign(Algorithm::HS256, None, &hs, &good)),
        ("EdDSA", sign(Algorithm::EdDSA, Some("ed1"), &ed, &good)),
        ("ES256", sign(Algorithm::ES256, Some("ec1"), &ec, &good)),
        ("RS256", sign(Algorithm::RS256, Some("rsa1"), &rsa, &good)),
        ("expired within the 60 s leeway", sign(Algorithm::HS256, None, &hs, &claims(json!({"exp": now() - 30})))),
    ] {
        let r = get(&token);
        assert_eq!(r.status, 200, "{what}: {}", r.body);
    }
    let create = |token: &str, name: &str| {
        let auth = format!("Bearer {token}");
        let body = format!(r#"{{"name":"{name}","dimension":2}}"#);
        s.raw(
            "POST",
            "/collections",
            &[("authorization", &auth), ("content-type", "application/json")],
            Some(body.as_bytes()),
        )
    };
    // A JWT caller is admin unless its scope claim says less.
    let reader = sign(Algorithm::EdDSA, Some("ed1"), &ed, &claims(json!({"scope": "read"})));
    let r = create(&reader, "x");
    assert_eq!(r.status, 403, "{}", r.body);
    // Tenants come from the claim: the RS256 caller of tenant acme sees what
    // the HS256 caller of acme made.
    let r = create(&sign(Algorithm::HS256, None, &hs, &good), "shared");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get(&sign(Algorithm::RS256, Some("rsa1"), &rsa, &good)).json()["collections"][0]["name"], "shared");
    let beta = sign(Algorithm::ES256, Some("ec1"), &ec, &claims(json!({"tenant": "beta"})));
    assert_eq!(get(&beta).json()["collections"], json!([]));

    let b64 = |v: &Value| {
        use std::io::Write;
        let mut out = Vec::new();
        let _ = write!(out, "{v}");
        base64url(&out)
    };
    let valid = sign(Algorithm::HS256, None, &hs, &good);
    let mut parts: Vec<String> = valid.split('.').map(String::from).collect();
    parts[1] = b64(&claims(json!({"tenant": "beta"})));
    let tampered = parts.join(".");
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&good));
    // HS256 "signed" with the RSA public key as the secret (alg confusion).
    let confused_kid = sign(Algorithm::HS256, Some("rsa1"), &EncodingKey::from_secret(rsa_pub.as_bytes()), &good);
    let confused = sign(Algorithm::HS256, None, &EncodingKey::from_secret(rsa_pub.as_bytes()), &good);
    let bad: Vec<(&str, String, &str)> = vec![
        ("expired past the leeway", sign(Algorithm::HS256, None, &hs, &claims(json!({"exp": now() - 120}))), "expired"),
        ("nbf in the future", sign(Algorithm::HS256, None, &hs, &claims(json!({"nbf": now() + 300}))), "expired"),
        ("wrong iss", sign(Algorithm::HS256, None, &hs, &claims(json!({"iss": "someone-else"}))), "claims"),
        ("wrong aud", sign(Algorithm::HS256, None, &hs, &claims(json!({"aud": "not-us"}))), "claims"),
        ("no exp", sign(Algorithm::HS256, None, &hs, &claims(json!({"exp": null}))), "claims"),
        ("no tenant", sign(Algorithm::HS256, None, &hs, &claims(json!({"tenant": null}))), "claims"),
        ("blank tenant", sign(Algorithm::HS256, None, &hs, &claims(json!({"tenant": " "}))), "claims"),
        ("unknown scope", sign(Algorithm::HS256, None, &hs, &claims(json!({"scope": "root"}))), "claims"),
        ("alg none", none, "invalid_jwt"),
        ("HS256 with the RSA public key, rsa kid", confused_kid, "invalid_jwt"),
        ("HS256 with the RSA public key, no kid", confused, "invalid_jwt"),
        ("unknown kid", sign(Algorithm::EdDSA, Some("nope"), &ed, &good), "invalid_jwt"),
        ("EdDSA key under the ES256 kid", sign(Algorithm::EdDSA, Some("ec1"), &ed, &good), "invalid_jwt"),
        ("tampered payload", tampered, "invalid_jwt"),
        ("not a JWT", "abc.def".to_owned(), "invalid_jwt"),
    ];
    let before = s.call("GET", "/metrics", None, 401);
    assert_eq!(before["code"], "unauthorized");
    for (what, token, _) in &bad {
        let r = get(token);
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(r.json()["code"], "unauthorized", "{what}");
    }
    let m = get(&valid).status;
    assert_eq!(m, 200);
    let auth = format!("Bearer {valid}");
    let metrics: Value = s.raw("GET", "/metrics", &[("authorization", &auth)], None).json();
    for reason in ["expired", "claims", "invalid_jwt"] {
        let want = bad.iter().filter(|b| b.2 == reason).count() as u64;
        assert_eq!(metrics[format!("auth_failures_{reason}_total")], want, "{reason}: {metrics}");
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// base64url without padding (the JWT encoding), for hand-made tokens.
fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The rate limit counts per tenant (API.md §8): one tenant at its limit
/// does not slow another; failed authentication is not counted.
#[test]
fn the_rate_limit_is_per_tenant() {
    let s = Server::start(
        2,
        &[
            ("AIONBD_AUTH_MODE", "api_key"),
            ("AIONBD_AUTH_API_KEYS", KEYS),
            ("AIONBD_AUTH_RATE_LIMIT_PER_MINUTE", "10"),
            ("AIONBD_PERSISTENCE_ENABLED", "false"),
        ],
    );
    early_in_a_minute();
    for _ in 0..20 {
        assert_eq!(send(&s, Who::BadKey, "GET", "/live", None).status, 401);
    }
    let statuses = |who| (0..15).map(|_| send(&s, who, "GET", "/live", None).status).collect::<Vec<_>>();
    let a = statuses(Who::AdminKey);
    assert_eq!(a.iter().filter(|&&c| c == 200).count(), 10, "{a:?}");
    let r = send(&s, Who::WriteKey, "GET", "/live", None);
    assert_eq!(r.status, 429, "another key of the same tenant shares its bucket");
    assert!(r.header("retry-after").is_some());
    let b = statuses(Who::OtherTenant);
    assert_eq!(b.iter().filter(|&&c| c == 200).count(), 10, "{b:?}");
    let m = send(&s, Who::OtherTenant, "GET", "/metrics", None);
    assert_eq!(m.status, 429);
}

/// Tenant quotas under concurrency (API.md §8): 32 clients of one tenant
/// racing to create collections and add points end exactly at the quota,
/// never above it, and after a restart too; another tenant is not affected.
#[test]
fn tenant_quotas_hold_exactly_under_racing_clients_and_restart() {
    let dir = unique_dir();
    let env: &[(&str, &str)] = &[
        ("AIONBD_AUTH_MODE", "api_key"),
        ("AIONBD_AUTH_API_KEYS", KEYS),
        ("AIONBD_AUTH_TENANT_MAX_COLLECTIONS", "5"),
        ("AIONBD_AUTH_TENANT_MAX_POINTS", "100"),
    ];
    let s = Server::start_in(&dir, 2, env, &[]);
    let race = |f: &(dyn Fn(usize) -> Resp + Sync)| -> Vec<Resp> {
        std::thread::scope(|sc| {
            let hs: Vec<_> = (0..32).map(|i| sc.spawn(move || f(i))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let made = race(&|i| {
        let body = format!(r#"{{"name":"c{i}","dimension":2}}"#);
        send(&s, Who::AdminKey, "POST", "/collections", Some(&body))
    });
    let ok: Vec<usize> = (0..32).filter(|&i| made[i].status == 200).collect();
    assert_eq!(ok.len(), 5, "collections made: {ok:?}");
    for r in made.iter().filter(|r| r.status != 200) {
        assert_eq!((r.status, r.json()["code"].clone()), (429, json!("resource_exhausted")), "{}", r.body);
        assert!(r.body.contains("quota of 5 collections"), "{}", r.body);
    }
    // 32 batches of 10 new points over the 5 collections: exactly 10 fit.
    let added = race(&|i| {
        let pts: Vec<String> = (0..10).map(|k| format!(r#"{{"id":{},"values":[1,2]}}"#, i * 10 + k)).collect();
        let body = format!(r#"{{"points":[{}]}}"#, pts.join(","));
        send(&s, Who::AdminKey, "POST", &format!("/collections/c{}/points", ok[i % 5]), Some(&body))
    });
    assert_eq!(added.iter().filter(|r| r.status == 200).count(), 10);
    assert!(added.iter().all(|r| r.status == 200 || r.status == 429));
    let total = |s: &Server| -> u64 {
        ok.iter()
            .map(|i| {
                send(s, Who::AdminKey, "GET", &format!("/collections/c{i}"), None).json()["point_count"]
                    .as_u64()
                    .unwrap()
            })
            .sum()
    };
    assert_eq!(total(&s), 100);
    // Replacing a stored point adds nothing, so it passes at the quota.
    let c = format!("/collections/c{}/points", ok[0]);
    let first_id: u64 = send(&s, Who::AdminKey, "GET", &c, None).json()["points"][0]["id"].as_u64().unwrap();
    let r = send(&s, Who::AdminKey, "PUT", &format!("{c}/{first_id}"), Some(r#"{"values":[9,9]}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    // Another tenant has its own quota.
    assert_eq!(send(&s, Who::OtherTenant, "POST", "/collections", Some(r#"{"name":"c0","dimension":2}"#)).status, 200);
    s.kill();
    let s = Server::start_in(&dir, 2, env, &[]);
    assert_eq!(total(&s), 100, "after restart");
    assert_eq!(send(&s, Who::AdminKey, "POST", "/collections", Some(r#"{"name":"late","dimension":2}"#)).status, 429);
    assert_eq!(send(&s, Who::AdminKey, "PUT", &format!("{c}/99999"), Some(r#"{"values":[1,1]}"#)).status, 429);
    // Deleting frees room.
    assert_eq!(send(&s, Who::AdminKey, "DELETE", &format!("{c}/{first_id}"), None).status, 200);
    assert_eq!(send(&s, Who::AdminKey, "PUT", &format!("{c}/99999"), Some(r#"{"values":[1,1]}"#)).status, 200);
    let m = send(&s, Who::AdminKey, "GET", "/metrics", None).json();
    assert!(m["tenant_quota_point_rejections_total"].as_u64().unwrap() >= 1, "{m}");
    assert!(m["tenant_quota_collection_rejections_total"].as_u64().unwrap() >= 1, "{m}");
    // Per tenant since this start: the two 429s above are acme's rejections.
    assert_eq!(m["tenants"]["acme"]["rejections"], 2, "{m}");
    assert!(m["tenants"]["acme"]["requests"].as_u64().unwrap() >= 5, "{m}");
    let prom = send(&s, Who::AdminKey, "GET", "/metrics/prometheus", None).body;
    assert!(prom.contains("aionbd_tenant_rejections_total{tenant=\"acme\"} 2"), "{prom}");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP reloads the credentials from the config file: on one keep-alive
/// connection that stays open throughout, the old key stops working and
/// the new one starts; a broken file leaves the new key in force, says why
/// on stderr and counts the failure.
#[test]
fn sighup_rotates_keys_on_open_connections_and_a_bad_file_changes_nothing() {
    use std::io::Write;
    let dir = unique_dir();
    let cfg = dir.join("aionbd.toml");
    let write_keys = |keys: &str| {
        std::fs::write(&cfg, format!("[security]\nauth_mode = \"api_key\"\napi_keys = \"{keys}\"\n")).unwrap();
    };
    write_keys("acme:old-key");
    let cfg_arg = cfg.display().to_string();
    let s = Server::start_with_args(1, &[("AIONBD_PERSISTENCE_ENABLED", "false")], &["--config", &cfg_arg]);
    let mut conn = s.connect();
    let mut ask = |key: &str| -> u16 {
        write!(conn, "GET /collections HTTP/1.1\r\nhost: t\r\nx-api-key: {key}\r\n\r\n").unwrap();
        crate::harness::read_responses(&mut conn, 1).remove(0).status
    };
    assert_eq!((ask("old-key"), ask("new-key")), (200, 401));
    let hup = |pid: u32| {
        let ok = std::process::Command::new("bash").arg("-c").arg(format!("kill -HUP {pid}")).status().unwrap();
        assert!(ok.success());
    };
    let wait_for = |what: &str, f: &mut dyn FnMut() -> bool| {
        let t0 = std::time::Instant::now();
        while !f() {
            assert!(t0.elapsed() < std::time::Duration::from_secs(10), "{what}: not within 10 s\n{}", s.stderr_tail());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    write_keys("acme:new-key");
    hup(s.pid());
    wait_for("the new key", &mut || ask("new-key") == 200);
    assert_eq!(ask("old-key"), 401, "the old key stopped working on the same connection");
    // A broken file: refused, the credentials in force stay.
    write_keys("nocolon");
    hup(s.pid());
    let reload_failures = |s: &Server| {
        let r = s.raw("GET", "/metrics", &[("x-api-key", "new-key")], None);
        r.json()["credential_reload_failures_total"].as_u64().unwrap()
    };
    wait_for("the refused reload", &mut || reload_failures(&s) == 1);
    assert_eq!((ask("new-key"), ask("old-key")), (200, 401));
    assert!(s.stderr_tail().contains("reload refused"), "{}", s.stderr_tail());
    assert!(!s.stderr_tail().contains("nocolon"), "a secret was printed: {}", s.stderr_tail());
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Failed authentication uses up a per-source budget (here 5 a minute):
/// past it that address gets 429, even with a good key, so a key cannot be
/// guessed at line rate; another address is not affected.
#[test]
fn failed_authentication_is_budgeted_per_source_address() {
    let s = Server::start(
        1,
        &[
            ("AIONBD_AUTH_MODE", "api_key"),
            ("AIONBD_AUTH_API_KEYS", KEYS),
            ("AIONBD_AUTH_FAILURE_LIMIT_PER_MINUTE", "5"),
            ("AIONBD_PERSISTENCE_ENABLED", "false"),
        ],
    );
    early_in_a_minute();
    let from = |source: &str, key: &str| -> Resp {
        use std::io::{Read, Write};
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let src: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
        sock.bind(&src.into()).unwrap();
        let dst: std::net::SocketAddr = s.addr.parse().unwrap();
        sock.connect(&dst.into()).unwrap();
        let mut c: std::net::TcpStream = sock.into();
        write!(c, "GET /collections HTTP/1.1\r\nhost: t\r\nx-api-key: {key}\r\nconnection: close\r\n\r\n").unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        crate::harness::parse_responses(&out).remove(0)
    };
    for _ in 0..5 {
        assert_eq!(from("127.0.0.1", "guess").status, 401);
    }
    let r = from("127.0.0.1", "a-admin");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some() && r.body.contains("failed authentication"), "{}", r.body);
    assert_eq!(from("127.0.0.2", "a-admin").status, 200, "another address keeps its budget");
}
