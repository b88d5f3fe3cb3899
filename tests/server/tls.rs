//! HTTPS: the same API over rustls when `AIONBD_TLS_ENABLED` names a
//! certificate and key; curl is the client, trusting only the test's
//! self-signed certificate.

use crate::harness::{unique_dir, Server};
use crate::startup::run_expecting_failure;
use std::process::Command;

/// A self-signed certificate for 127.0.0.1 and localhost: (dir, cert, key).
fn self_signed() -> (std::path::PathBuf, String, String) {
    let dir = unique_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (dir, cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned())
}

/// curl with the test's certificate as the only trusted root: (exit code, stdout).
fn curl(cert: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert", cert])
        .args(args)
        .output()
        .expect("curl is installed (README: the tests need it)");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn https_serves_the_api_with_the_configured_certificate() {
    let (dir, cert, key) = self_signed();
    let s = Server::start(
        2,
        &[("AIONBD_TLS_ENABLED", "true"), ("AIONBD_TLS_CERT_PATH", &cert), ("AIONBD_TLS_KEY_PATH", &key)],
    );
    let base = format!("https://{}", s.addr);
    // Two requests on one kept-alive connection.
    let (code, out) = curl(&cert, &[&format!("{base}/live"), &format!("{base}/ready")]);
    assert_eq!(code, 0, "{out}\n{}", s.stderr_tail());
    assert!(out.contains(r#""status":"live""#) && out.contains(r#""status":"ready""#), "{out}");
    // A write and a search.
    let json = ["-H", "content-type: application/json", "-X", "POST"];
    let (code, out) =
        curl(&cert, &[&json[..], &[&format!("{base}/collections"), "-d", r#"{"name":"t","dimension":2}"#]].concat());
    assert_eq!((code, out.contains(r#""name":"t""#)), (0, true), "{out}");
    let put = ["-H", "content-type: application/json", "-X", "PUT", "-d", r#"{"values":[1,0]}"#];
    let (code, _) = curl(&cert, &[&put[..], &[&format!("{base}/collections/t/points/7")]].concat());
    assert_eq!(code, 0);
    let (code, out) = curl(
        &cert,
        &[&json[..], &[&format!("{base}/collections/t/search"), "-d", r#"{"query":[1,0],"metric":"l2"}"#]].concat(),
    );
    assert_eq!(code, 0);
    assert!(out.contains(r#""id":7"#), "{out}");
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let (code, out) = curl(&cert, &[&format!("http://{}/live", s.addr)]);
    assert!(code != 0 && !out.contains("live"), "plain HTTP answered: {code} {out}");
    // A client that does not trust the certificate refuses it.
    let out = Command::new("curl").args(["-sS", "--max-time", "20", &format!("{base}/live")]).output().unwrap();
    assert!(!out.status.success(), "an untrusted certificate was accepted");
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tls_without_usable_files_refuses_to_start() {
    let (code, err) = run_expecting_failure(&[("AIONBD_TLS_ENABLED", "true")], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("security.tls_cert_path"), "{err}");
    let (dir, cert, _) = self_signed();
    let missing = dir.join("nope.pem");
    let (code, err) = run_expecting_failure(
        &[
            ("AIONBD_TLS_ENABLED", "true"),
            ("AIONBD_TLS_CERT_PATH", &cert),
            ("AIONBD_TLS_KEY_PATH", missing.to_str().unwrap()),
            ("AIONBD_PERSISTENCE_ENABLED", "false"),
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope.pem"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_recovery_stand_in_speaks_tls_too() {
    use std::io::BufRead;
    let (certs, cert, key) = self_signed();
    let tls = [
        ("AIONBD_TLS_ENABLED", "true"),
        ("AIONBD_TLS_CERT_PATH", cert.as_str()),
        ("AIONBD_TLS_KEY_PATH", key.as_str()),
    ];
    let dir = unique_dir();
    let s = Server::start_in(&dir, 2, &tls, &[]);
    let base = format!("https://{}", s.addr);
    let json = ["-H", "content-type: application/json", "-X", "POST"];
    let (code, _) =
        curl(&cert, &[&json[..], &[&format!("{base}/collections"), "-d", r#"{"name":"c","dimension":2}"#]].concat());
    assert_eq!(code, 0);
    s.kill();
    let (mut child, mut out, mut line) = crate::harness::start_recovering(&dir, &tls);
    assert!(line.contains("https://"), "first line: {line}");
    let addr = line.split("https://").nth(1).unwrap().split('/').next().unwrap().to_owned();
    let status =
        |path: &str| curl(&cert, &["-o", "/dev/null", "-w", "%{http_code}", &format!("https://{addr}{path}")]).1;
    assert_eq!(status("/live"), "200");
    assert_eq!(status("/ready"), "503");
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("listening on https://"), "second line: {line}");
    assert_eq!(status("/ready"), "200");
    assert_eq!(status("/collections/c"), "200");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(certs);
}

/// SIGHUP loads a new certificate from the same paths: new connections
/// get it (a client trusting only the new one connects, one trusting only
/// the old one no longer does); an unreadable key leaves the old one.
#[test]
fn sighup_loads_a_new_certificate() {
    let (dir, cert, key) = self_signed();
    let old_cert = dir.join("old.pem");
    std::fs::copy(&cert, &old_cert).unwrap();
    let old_cert = old_cert.to_str().unwrap().to_owned();
    let s = Server::start(
        1,
        &[("AIONBD_TLS_ENABLED", "true"), ("AIONBD_TLS_CERT_PATH", &cert), ("AIONBD_TLS_KEY_PATH", &key)],
    );
    let live = format!("https://{}/live", s.addr);
    assert_eq!(curl(&old_cert, &[&live]).0, 0);
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let hup =
        || assert!(Command::new("bash").arg("-c").arg(format!("kill -HUP {}", s.pid())).status().unwrap().success());
    hup();
    let t0 = std::time::Instant::now();
    while curl(&cert, &[&live]).0 != 0 {
        assert!(t0.elapsed().as_secs() < 10, "the new certificate was not served\n{}", s.stderr_tail());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_ne!(curl(&old_cert, &[&live]).0, 0, "the old certificate is still served");
    // A key file that no longer parses: refused, the new certificate stays.
    std::fs::write(&key, "not a key").unwrap();
    hup();
    let t0 = std::time::Instant::now();
    while !s.stderr_tail().contains("reload refused") {
        assert!(t0.elapsed().as_secs() < 10, "{}", s.stderr_tail());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(curl(&cert, &[&live]).0, 0);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
