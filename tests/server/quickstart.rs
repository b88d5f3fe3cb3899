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
}
