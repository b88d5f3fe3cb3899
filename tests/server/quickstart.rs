//! The README's curl examples, run verbatim (only the port differs) against
//! a real server: the quick start a new user follows must work.

use crate::harness::Server;
use serde_json::Value;
use std::process::Command;

/// Every ```bash block in README.md whose first line starts with `curl`,
/// in order.
fn readme_curl_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```bash") => current = Some(String::new()),
            (Some(b), l) if l.starts_with("```") => {
                if b.trim_start().starts_with("curl") {
                    blocks.push(b.clone());
                }
                current = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn readme_quick_start_curl_examples_work_verbatim() {
    let blocks = readme_curl_blocks();
    assert!(blocks.len() >= 4, "README quick start lost its curl examples: {blocks:?}");
    let s = Server::start(2, &[]);
    let mut outputs: Vec<String> = Vec::new();
    for block in &blocks {
        let script = block.replace("127.0.0.1:8080", &s.addr);
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("set -e\n{script}"))
            .output()
            .expect("bash and curl must be installed");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "README block failed:\n{script}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push(stdout);
    }
    let all = outputs.join("\n");
    // Create, upsert, search and health blocks all answered sensibly.
    // curl prints no newline after a body, so JSON answers run together;
    // read each block's output as a stream of values (up to the Prometheus
    // text, which is not JSON).
    let jsons: Vec<Value> = outputs
        .iter()
        .flat_map(|o| {
            serde_json::Deserializer::from_str(o).into_iter::<Value>().map_while(Result::ok).collect::<Vec<_>>()
        })
        .collect();
    assert!(jsons.iter().any(|v| v["name"] == "demo" && v["dimension"] == 4), "{all}");
    assert!(jsons.iter().any(|v| v["created"] == 3), "{all}");
    let search = jsons.iter().find(|v| v.get("hits").is_some()).unwrap_or_else(|| panic!("no search output: {all}"));
    let ids: Vec<u64> = search["hits"].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(search["hits"][0]["payload"]["label"], "alpha");
    assert!(jsons.iter().any(|v| v["status"] == "live"));
    assert!(jsons.iter().any(|v| v["status"] == "ready"));
    assert!(all.contains("aionbd_http_requests_total"), "prometheus text missing: {all}");
    assert!(jsons.iter().all(|v| v.get("code").is_none()), "an example answered an error: {all}");
    // The backup block: an NDJSON export and a backup file.
    assert!(jsons.iter().any(|v| v["aionbd_export"] == 1 && v["points"] == 3), "{all}");
    let backup = std::fs::read("/tmp/aionbd-demo.aionbd").expect("the README's backup file");
    assert!(backup.starts_with(b"AIONBAK\0"), "not a backup file");
}

/// The README's authentication examples: each ```sh block that exports
/// `AIONBD_AUTH_*` and runs the server gives the environment; the ```sh
/// block after it is run verbatim (only the port differs) against a server
/// started with that environment. Every command must answer without an
/// error, and the same server must refuse a request with no credential.
#[test]
fn readme_auth_examples_work_verbatim() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut blocks: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(b), l) if l.starts_with("```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    let mut ran = 0;
    for pair in blocks.windows(2) {
        let (env_block, script) = (&pair[0], &pair[1]);
        if !(env_block.contains("export AIONBD_AUTH_MODE") && env_block.contains("cargo run --release")) {
            continue;
        }
        let env: Vec<(String, String)> = env_block
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect();
        let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.push(("AIONBD_PERSISTENCE_ENABLED", "false"));
        let s = Server::start(2, &env);
        let script = script.replace("127.0.0.1:8080", &s.addr);
        let out = Command::new("bash").arg("-c").arg(format!("set -e\n{script}")).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{script}\nstdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
        let answers: Vec<Value> =
            serde_json::Deserializer::from_str(&stdout).into_iter::<Value>().map_while(Result::ok).collect();
        assert!(!answers.is_empty() && answers.iter().all(|v| v.get("code").is_none()), "{script}\n{stdout}");
        assert_eq!(s.req("GET", "/collections", None).status, 401, "{env:?}: no credential must be refused");
        ran += 1;
    }
    assert_eq!(ran, 3, "README lost an auth example");
}
