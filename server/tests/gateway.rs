//! The gateway over real HTTP on 127.0.0.1 with its embedded local KMS:
//! uploads and their checks, listing, sharing, deletion, the authorization
//! matrix of the backend Decrypt (owner, shared user, stranger, no token,
//! forged context, a data key from another object, a disabled key), the
//! audit log, a full decrypt through the gateway, crash safety, and
//! health, readiness and a graceful drain.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use kms_envelope::{Client, DecryptOptions, EncryptionContext, KmsRsaAlgorithm, KmsRsaKeyring};
use serde_json::{json, Value};
use sha2::Digest;

#[test]
fn gateway_end_to_end_and_authorization_matrix() {
    let d = tempfile::tempdir().unwrap();
    // No KMS answer cache here: the disabled key must be seen at once.
    setup_with(d.path(), 4 << 20, "kms_cache_seconds = 0\naudit_stdout = true\ninstance_name = \"gw-a\"");
    let gw = start_logged(d.path());
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();

    // Uploads. Refusals come before the body is read, so they use small
    // bodies the socket buffers absorb (an HTTP client must otherwise read
    // the early answer while still sending).
    let small = gw.seal("alice", "obj-s", "s.txt", b"tiny");
    assert_eq!(gw.upload(None, &small).0, 401, "no token");
    assert_eq!(gw.upload(Some("bob"), &small).0, 403, "the context's owner is alice");
    assert_eq!(gw.upload(Some("alice"), &small).0, 201);
    assert_eq!(gw.upload(Some("alice"), &small).0, 409, "same object id");
    let blob1 = gw.seal("alice", "obj-1", "a.txt", &data);
    let (s, v) = gw.upload(Some("alice"), &blob1);
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["id"], "obj-1");
    assert_eq!(v["size"], blob1.len());
    assert_eq!(gw.upload(Some("alice"), b"not an envelope at all").0, 400);
    assert_eq!(gw.upload(Some("alice"), &blob1[..50]).0, 400, "ends inside the header");
    // Too large: refused from Content-Length, before the body is read.
    let addr = gw.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "POST /v1/objects HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n", token("alice"), 5 << 20).unwrap();
    let mut status_line = String::new();
    BufReader::new(&s).read_line(&mut status_line).unwrap();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    let blob2 = gw.seal("alice", "obj-2", "b.txt", b"second");
    assert_eq!(gw.upload(Some("alice"), &blob2).0, 201);
    let bad_id = gw.seal("alice", "../../etc", "x", b"x");
    assert_eq!(gw.upload(Some("alice"), &bad_id).0, 400, "path traversal in the object id");

    // Listing and download.
    let (_, list) = gw.get_json("alice", "/v1/objects");
    assert_eq!(list["objects"].as_array().unwrap().len(), 3);
    assert_eq!(gw.get_json("bob", "/v1/objects").1["objects"].as_array().unwrap().len(), 0);
    let got = ureq::get(&format!("{}/v1/objects/obj-1", gw.url)).set("authorization", &token("alice")).call().unwrap();
    let mut bytes = Vec::new();
    got.into_reader().read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, blob1);
    assert_eq!(gw.get_json("bob", "/v1/objects/obj-1").0, 404, "strangers cannot tell it exists");

    // The backend Decrypt.
    let req1 = request_for(&blob1);
    let mut decisions = 0;
    let (s, v) = gw.decrypt_key(Some("alice"), &req1);
    decisions += 1;
    assert_eq!(s, 200, "{v}");
    let pt = B64.decode(v["plaintext"].as_str().unwrap()).unwrap();
    let ctx: EncryptionContext = serde_json::from_value(req1["encryptionContext"].clone()).unwrap();
    let ser = kms_envelope::format::context::serialize(&ctx).unwrap();
    assert_eq!(pt.len(), 80);
    assert_eq!(&pt[..48], &sha2::Sha384::digest(&ser)[..], "KMS Decrypt's answer, as KMS gives it");
    let secret_b64 = v["plaintext"].as_str().unwrap().to_owned();
    for (who, code) in [(Some("bob"), 403), (Some("carol"), 403)] {
        assert_eq!(gw.decrypt_key(who, &req1).0, code, "{who:?}");
        decisions += 1;
    }
    // No credential: refused and counted, not a line of the audit log.
    assert_eq!(gw.decrypt_key(None, &req1).0, 401);
    // A forged context: alice's own object, but a claim the wrapped key was not made for.
    let mut forged = req1.clone();
    forged["encryptionContext"]["file"] = json!("other.txt");
    let (s, v) = gw.decrypt_key(Some("alice"), &forged);
    decisions += 1;
    assert_eq!(s, 403, "{v}");
    assert!(v["message"].as_str().unwrap().contains("another encryption context"));
    // A data key from another object, presented with this object's context.
    let mut swapped = req1.clone();
    swapped["ciphertextBlob"] = request_for(&blob2)["ciphertextBlob"].clone();
    assert_eq!(gw.decrypt_key(Some("alice"), &swapped).0, 403);
    decisions += 1;
    // Sharing lets bob in; not carol.
    let (s, _) = status(ureq::post(&format!("{}/v1/objects/obj-1/shares", gw.url)).set("authorization", &token("bob")).send_json(json!({"user": "carol"})));
    assert_eq!(s, 404, "bob may not share what he cannot see");
    let (s, v) = status(ureq::post(&format!("{}/v1/objects/obj-1/shares", gw.url)).set("authorization", &token("alice")).send_json(json!({"user": "bob"})));
    assert_eq!(s, 200, "{v}");
    assert_eq!(gw.decrypt_key(Some("bob"), &req1).0, 200);
    decisions += 1;
    assert_eq!(gw.decrypt_key(Some("carol"), &req1).0, 403);
    decisions += 1;
    // A disabled key: the gateway says so; enabled again, it serves.
    let arn = req1["keyId"].as_str().unwrap().to_owned();
    let dd = d.path().join("data");
    cli(&["keys", "--data-dir", dd.to_str().unwrap(), "disable", &arn]);
    assert_eq!(gw.decrypt_key(Some("alice"), &req1).0, 409);
    decisions += 1;
    cli(&["keys", "--data-dir", dd.to_str().unwrap(), "enable", &arn]);

    // bob decrypts the whole file through the gateway.
    let (_, bytes) = (0, {
        let r = ureq::get(&format!("{}/v1/objects/obj-1?owner=alice", gw.url)).set("authorization", &token("bob")).call().unwrap();
        let mut b = Vec::new();
        r.into_reader().read_to_end(&mut b).unwrap();
        b
    });
    let keyring = KmsRsaKeyring::new(&arn, None, KmsRsaAlgorithm::RsaesOaepSha256)
        .unwrap()
        .with_kms_decrypt(Arc::new(ViaGateway { url: gw.url.clone(), user: "bob" }));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (plain, _) = rt.block_on(Client::new().decrypt(&keyring, &bytes, &DecryptOptions::default())).unwrap();
    decisions += 1;
    assert_eq!(plain, data);

    // The audit records: one per decision and per share granted, and no key
    // material; read back by `kms-envelope audit`, and the same on stdout.
    let audit = audit_text(d.path());
    let all = audit_records(d.path());
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("seq");
        v
    };
    assert_eq!(all.iter().cloned().map(strip).collect::<Vec<_>>(), stdout_records(d.path()), "audit_stdout prints each record");
    assert!(all.iter().all(|r| r["instance"] == "gw-a"), "{audit}");
    let lines: Vec<&Value> = all.iter().filter(|l| l.get("decision").is_some()).collect();
    assert_eq!(lines.len(), decisions, "{audit}");
    let events: Vec<_> = all.iter().filter_map(|l| l.get("event")).collect();
    assert_eq!(events, [&json!("share")], "{audit}");
    assert_eq!(lines.iter().filter(|l| l["decision"] == "allow").count(), 3);
    assert!(lines.iter().all(|l| l["time"].is_string() && l["reason"].is_string()));
    assert!(!audit.contains(&secret_b64) && !audit.contains(&secret_b64[64..]), "key material in the audit log");
    // Nor in the server's debug log (its own, the AWS SDK's, the in-process
    // KMS connector's), in any encoding.
    let log = std::fs::read_to_string(d.path().join("gateway.log")).unwrap();
    assert!(log.contains("aws_smithy") && log.contains("local KMS call"), "the debug log lacks the SDK's and the local KMS's lines: {} bytes", log.len());
    let dek = &pt[48..];
    let hex_dek: String = dek.iter().map(|b| format!("{b:02x}")).collect();
    for (what, needle) in [
        ("the KMS plaintext, base64", secret_b64.clone()),
        ("the data key, base64", B64.encode(dek)),
        ("the data key, hex", hex_dek.clone()),
        ("the data key, HEX", hex_dek.to_uppercase()),
        ("the data key, a byte list", format!("{:?}", &dek[..8]).trim_end_matches(']').to_owned()),
    ] {
        assert!(!log.contains(&needle) && !audit.contains(&needle), "{what} appears in the gateway's logs");
    }

    // Deletion: only the owner; the blob goes too.
    let del = |who: &str| status(ureq::delete(&format!("{}/v1/objects/obj-2", gw.url)).set("authorization", &token(who)).call()).0;
    assert_eq!(del("bob"), 404);
    assert_eq!(del("alice"), 204);
    assert_eq!(gw.get_json("alice", "/v1/objects/obj-2").0, 404);
    assert!(!dd.join("objects/alice/obj-2.esdk").exists());
}

/// Sends the headers and half the body of an upload, then stops.
fn half_upload(url: &str, blob: &[u8]) -> TcpStream {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "POST /v1/objects HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n", token("alice"), blob.len()).unwrap();
    s.write_all(&blob[..blob.len() / 2]).unwrap();
    s.flush().unwrap();
    s
}

#[test]
fn interrupted_uploads_leave_nothing_and_acknowledged_ones_survive() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 64 << 20);
    let mut gw = start(d.path());
    let kept = gw.seal("alice", "kept", "k", &vec![3u8; 100_000]);
    assert_eq!(gw.upload(Some("alice"), &kept).0, 201);
    let incoming = d.path().join("data/objects/incoming");

    // The client goes away mid-upload.
    let blob = gw.seal("alice", "aborted", "a", &vec![5u8; 2 << 20]);
    drop(half_upload(&gw.url, &blob));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0, "partial file left behind");
    assert_eq!(gw.get_json("alice", "/v1/objects/aborted").0, 404);

    // The server is killed mid-upload.
    let blob = gw.seal("alice", "killed", "k", &vec![6u8; 2 << 20]);
    let _conn = half_upload(&gw.url, &blob);
    std::thread::sleep(std::time::Duration::from_millis(300));
    gw.child.kill().unwrap(); // SIGKILL
    gw.child.wait().unwrap();
    drop(gw);
    let gw = start(d.path());
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
    let (_, list) = gw.get_json("alice", "/v1/objects");
    let ids: Vec<&str> = list["objects"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["kept"], "only the acknowledged object");
    let r = ureq::get(&format!("{}/v1/objects/kept", gw.url)).set("authorization", &token("alice")).call().unwrap();
    let mut b = Vec::new();
    r.into_reader().read_to_end(&mut b).unwrap();
    assert_eq!(b, kept);
}

/// What a load balancer sees: `/healthz` and `/readyz` (its parts named);
/// on SIGTERM `/readyz` answers 503 `DRAINING` for `drain_seconds` while
/// every route still serves, then the listener closes, an upload in flight
/// finishes and is kept, and the process exits 0.
#[test]
fn health_readiness_and_a_graceful_drain_on_sigterm() {
    let d = tempfile::tempdir().unwrap();
    setup_with(d.path(), 64 << 20, "drain_seconds = 2\nshutdown_grace_seconds = 20");
    let mut gw = start(d.path());
    let (s, v) = status(ureq::get(&format!("{}/healthz", gw.url)).call());
    assert_eq!((s, v["status"].as_str()), (200, Some("alive")));
    let (s, v, _) = readyz(&gw.url);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({ "status": "ready", "checks": { "database": "ok", "storage": "ok", "kms": "ok" } }));

    // An upload is half sent when the signal comes.
    let blob = gw.seal("alice", "in-flight", "f.bin", &vec![7u8; 3 << 20]);
    let mut conn = half_upload(&gw.url, &blob);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let t0 = std::time::Instant::now();
    signal(&gw.child, "TERM");
    let v = readyz_becomes(&gw.url, 503);
    assert_eq!(v["error"], "DRAINING", "{v}");
    let (_, _, retry) = readyz(&gw.url);
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    // Draining, it still serves: liveness, keys, listings.
    assert_eq!(status(ureq::get(&format!("{}/healthz", gw.url)).call()).0, 200);
    assert_eq!(gw.get_json("alice", "/v1/objects").0, 200);

    // The drain ends: no new connection is taken…
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let mut refused = false;
    while t0.elapsed() < std::time::Duration::from_secs(8) {
        if TcpStream::connect(&addr).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(refused, "the listener is still open {:?} after SIGTERM", t0.elapsed());
    assert!(t0.elapsed() >= std::time::Duration::from_millis(1900), "closed before drain_seconds: {:?}", t0.elapsed());
    // …but the upload in flight finishes and is acknowledged.
    conn.write_all(&blob[blob.len() / 2..]).unwrap();
    let mut answer = String::new();
    BufReader::new(&conn).read_line(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let exit = gw.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    drop(gw);

    // It was kept.
    let gw = start(d.path());
    let r = ureq::get(&format!("{}/v1/objects/in-flight", gw.url)).set("authorization", &token("alice")).call().unwrap();
    let mut b = Vec::new();
    r.into_reader().read_to_end(&mut b).unwrap();
    assert_eq!(b, blob);
}

/// A request with the headers given; answers (status, Set-Cookie, JSON body).
fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> (u16, String, Value) {
    let mut req = ureq::request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let r = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let r = match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let s = r.status();
    let cookie = r.header("set-cookie").unwrap_or("").to_owned();
    let mut text = String::new();
    r.into_reader().read_to_string(&mut text).unwrap();
    (s, cookie, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn web_login_sets_a_strict_cookie_and_state_changes_need_csrf() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 1 << 20);
    let gw = start(d.path());
    let u = |p: &str| format!("{}{p}", gw.url);
    let alice_token = TOKENS[0].1;
    let login = |user: &str, tok: &str, extra: &[(&str, &str)]| {
        let body = json!({ "user": user, "token": tok }).to_string();
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(extra);
        send("POST", &u("/v1/login"), &h, Some(body.as_bytes()))
    };
    assert_eq!(login("alice", "wrong", &[]).0, 401);
    assert_eq!(login("bob", alice_token, &[]).0, 401, "alice's token is not bob's");
    assert_eq!(login("alice", alice_token, &[("origin", "https://evil.example")]).0, 403, "login CSRF");

    let (s, set_cookie, v) = login("alice", alice_token, &[]);
    assert_eq!(s, 200, "{v}");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attr), "{attr} missing: {set_cookie}");
    }
    let csrf = v["csrfToken"].as_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(!set_cookie.contains(alice_token) && !set_cookie.contains(&csrf));
    let c = ("cookie", cookie.as_str());
    let (s, _, v) = send("GET", &u("/v1/session"), &[c], None);
    assert_eq!((s, v["user"].as_str(), v["csrfToken"].as_str()), (200, Some("alice"), Some(csrf.as_str())));
    assert_eq!(send("GET", &u("/v1/objects"), &[c], None).0, 200, "reads need the cookie only");
    assert_eq!(send("GET", &u("/v1/objects"), &[("cookie", "kms_envelope_session=forged")], None).0, 401);

    // Uploads, deletions and data keys need the CSRF token and a same-origin request.
    let blob = gw.seal("alice", "web-1", "w.txt", b"from the browser");
    let x = ("x-csrf-token", csrf.as_str());
    let (s, _, v) = send("POST", &u("/v1/objects"), &[c], Some(&blob));
    assert_eq!((s, v["error"].as_str()), (403, Some("CSRF")));
    assert_eq!(send("POST", &u("/v1/objects"), &[c, ("x-csrf-token", "guess")], Some(&blob)).0, 403);
    assert_eq!(send("POST", &u("/v1/objects"), &[c, x], Some(&blob)).0, 201);
    let key_req = request_for(&blob).to_string();
    let j = ("content-type", "application/json");
    assert_eq!(send("POST", &u("/v1/decrypt-data-key"), &[c, j], Some(key_req.as_bytes())).0, 403);
    assert_eq!(send("POST", &u("/v1/decrypt-data-key"), &[c, j, x, ("sec-fetch-site", "cross-site")], Some(key_req.as_bytes())).0, 403);
    let host = gw.url.trim_start_matches("http://").to_owned();
    let same_origin = format!("http://{host}");
    let o = ("origin", same_origin.as_str());
    let (s, _, v) = send("POST", &u("/v1/decrypt-data-key"), &[c, j, x, o, ("sec-fetch-site", "same-origin")], Some(key_req.as_bytes()));
    assert_eq!(s, 200, "{v}");
    assert_eq!(send("DELETE", &u("/v1/objects/web-1"), &[c, x, ("origin", "https://evil.example")], None).0, 403);
    assert_eq!(send("DELETE", &u("/v1/objects/web-1"), &[c, x, o], None).0, 204);

    // Logging out ends the session on the server, not only in the browser.
    let (s, cleared, _) = send("POST", &u("/v1/logout"), &[c, x], None);
    assert_eq!(s, 204);
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(send("GET", &u("/v1/objects"), &[c], None).0, 401);
    // Security headers on every answer.
    let r = ureq::get(&u("/v1/public-key")).call().unwrap();
    assert!(r.header("content-security-policy").unwrap().contains("default-src 'self'"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("strict-transport-security"), None, "no HSTS over plain HTTP");
}

#[test]
fn data_key_requests_are_rate_limited_per_user() {
    let d = tempfile::tempdir().unwrap();
    setup_with(d.path(), 1 << 20, "decrypt_rate_per_second = 0.2\ndecrypt_burst = 3");
    let gw = start(d.path());
    let blob = gw.seal("alice", "rl-1", "r.txt", b"rate");
    assert_eq!(gw.upload(Some("alice"), &blob).0, 201);
    let req = request_for(&blob);
    for _ in 0..3 {
        assert_eq!(gw.decrypt_key(Some("alice"), &req).0, 200);
    }
    let r = ureq::post(&format!("{}/v1/decrypt-data-key", gw.url)).set("authorization", &token("alice")).send_json(req.clone());
    let Err(ureq::Error::Status(429, r)) = r else { panic!("expected 429") };
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=5).contains(&wait), "Retry-After {wait}");
    assert_eq!(r.into_json::<Value>().unwrap()["error"], "RATE_LIMITED");
    assert_eq!(gw.decrypt_key(Some("bob"), &req).0, 403, "bob has his own budget (and no right)");
    // Counted, not written: a flood of refusals is no flood of synced lines.
    let audit = audit_text(d.path());
    assert_eq!(audit.lines().count(), 4, "three allowed, one denied (bob): {audit}");
    let m = ureq::get(&format!("{}/v1/metrics", gw.url)).call().unwrap().into_string().unwrap();
    assert!(m.contains("kms_envelope_refusals_total{reason=\"rate_limited\"} 1"), "{m}");
}

/// GET over TLS trusting only `ca` (PEM); answers the raw response head.
fn https_head(port: u16, ca: &Path, path: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_file(ca).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots).with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(("127.0.0.1", port)).unwrap());
    write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out);
    out.split("\r\n\r\n").next().unwrap().to_ascii_lowercase()
}

#[test]
fn tls_with_hsts_and_data_keys_refused_over_plain_http_off_loopback() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 1 << 20);
    let gw = start_with(d.path(), &["--dev-tls"]);
    assert!(gw.url.starts_with("https://127.0.0.1:"), "{}", gw.url);
    let port: u16 = gw.url.rsplit(':').next().unwrap().parse().unwrap();
    let cert = d.path().join("data/dev-tls/cert.pem");
    let head = https_head(port, &cert, "/v1/public-key");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("strict-transport-security: max-age=31536000"), "{head}");
    let key = std::fs::metadata(d.path().join("data/dev-tls/key.pem")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777, 0o600);
    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let _ = write!(s, "GET /v1/public-key HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("keyArn"));
    drop(gw);

    // Plain HTTP on all interfaces: a client on another address gets no key.
    let Some(ip) = non_loopback_address() else {
        eprintln!("no non-loopback address on this machine: the off-loopback refusal is not exercised");
        return;
    };
    let gw = start_with(d.path(), &["--listen", "0.0.0.0:0"]);
    let port = gw.url.rsplit(':').next().unwrap().to_owned();
    let blob = gw.seal("alice", "tls-1", "t", b"t");
    let req = request_for(&blob);
    let from = |host: &str| {
        let r = ureq::post(&format!("http://{host}:{port}/v1/decrypt-data-key")).set("authorization", &token("alice")).send_json(req.clone());
        match r {
            Ok(r) => (r.status(), Value::Null),
            Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };
    let (s, v) = from(&ip.to_string());
    assert_eq!((s, v["error"].as_str()), (403, Some("TLS_REQUIRED")));
    let (s, v) = from("127.0.0.1");
    assert_eq!((s, v["error"].as_str()), (403, Some("FORBIDDEN")), "loopback gets as far as authorization (no such object)");
}

fn non_loopback_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.200:9").or_else(|_| s.connect("10.255.255.1:9")).ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

#[test]
fn chunked_uploads_continue_in_order_and_leave_nothing_when_cancelled() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 8 << 20);
    let gw = start(d.path());
    let u = |p: &str| format!("{}{p}", gw.url);
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 253) as u8).collect();
    let blob = gw.seal("alice", "chunked-1", "c.bin", &data);
    let alice = token("alice");
    let bob = token("bob");
    let a = ("authorization", alice.as_str());
    let b = ("authorization", bob.as_str());

    let (s, _, v) = send("POST", &u("/v1/uploads"), &[a], None);
    assert_eq!(s, 201, "{v}");
    let id = v["uploadId"].as_str().unwrap().to_owned();
    assert_eq!(v["maxPartBytes"], 16 << 20);
    let part = |who, offset: usize, bytes: &[u8]| send("PUT", &u(&format!("/v1/uploads/{id}?offset={offset}")), &[who], Some(bytes));
    let third = blob.len() / 3;
    assert_eq!(part(a, 0, &blob[..third]).2["received"], third);
    assert_eq!(part(b, third, &blob[third..2 * third]).0, 404, "bob cannot add to alice's upload");
    let (s, _, v) = part(a, 0, &blob[..third]);
    assert_eq!((s, v["error"].as_str(), v["received"].as_u64()), (409, Some("OFFSET_MISMATCH"), Some(third as u64)), "a retried part");
    assert_eq!(part(a, third, &blob[third..2 * third]).0, 200);
    assert_eq!(part(a, 2 * third, &blob[2 * third..]).0, 200);
    assert_eq!(gw.get_json("alice", "/v1/objects/chunked-1").0, 404, "not visible before completion");
    let (s, _, v) = send("POST", &u(&format!("/v1/uploads/{id}/complete")), &[a], None);
    assert_eq!((s, v["size"].as_u64()), (201, Some(blob.len() as u64)), "{v}");
    let r = ureq::get(&u("/v1/objects/chunked-1")).set("authorization", &alice).call().unwrap();
    let mut got = Vec::new();
    r.into_reader().read_to_end(&mut got).unwrap();
    assert_eq!(got, blob);
    assert_eq!(send("POST", &u(&format!("/v1/uploads/{id}/complete")), &[a], None).0, 404, "completed once");

    // A refused header ends the upload; a cancelled one leaves no file.
    let incoming = d.path().join("data/objects/incoming");
    let other = gw.seal("bob", "chunked-2", "x", b"bob's");
    let id2 = send("POST", &u("/v1/uploads"), &[a], None).2["uploadId"].as_str().unwrap().to_owned();
    assert_eq!(send("PUT", &u(&format!("/v1/uploads/{id2}?offset=0")), &[a], Some(&other)).0, 403, "owner is bob, uploader alice");
    assert_eq!(send("PUT", &u(&format!("/v1/uploads/{id2}?offset=0")), &[a], Some(&other)).0, 404);
    let id3 = send("POST", &u("/v1/uploads"), &[a], None).2["uploadId"].as_str().unwrap().to_owned();
    let blob3 = gw.seal("alice", "chunked-3", "y", &data);
    assert_eq!(send("PUT", &u(&format!("/v1/uploads/{id3}?offset=0")), &[a], Some(&blob3[..100_000])).0, 200);
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 1);
    assert_eq!(send("DELETE", &u(&format!("/v1/uploads/{id3}")), &[b], None).0, 404);
    assert_eq!(send("DELETE", &u(&format!("/v1/uploads/{id3}")), &[a], None).0, 204);
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
    assert_eq!(send("POST", &u(&format!("/v1/uploads/{id3}/complete")), &[a], None).0, 404);
    // Ending inside the header is refused, and leaves nothing.
    let id4 = send("POST", &u("/v1/uploads"), &[a], None).2["uploadId"].as_str().unwrap().to_owned();
    assert_eq!(send("PUT", &u(&format!("/v1/uploads/{id4}?offset=0")), &[a], Some(&blob3[..20])).0, 200);
    assert_eq!(send("POST", &u(&format!("/v1/uploads/{id4}/complete")), &[a], None).0, 400);
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
    let (_, list) = gw.get_json("alice", "/v1/objects");
    assert_eq!(list["objects"].as_array().unwrap().len(), 1);

    // Cancelled while a part is still arriving (a browser that gives up
    // mid-part): the part ends the upload when it ends, and nothing remains.
    let id5 = send("POST", &u("/v1/uploads"), &[a], None).2["uploadId"].as_str().unwrap().to_owned();
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let mut part5 = TcpStream::connect(&addr).unwrap();
    write!(part5, "PUT /v1/uploads/{id5}?offset=0 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {alice}\r\nContent-Length: {}\r\n\r\n", blob3.len()).unwrap();
    part5.write_all(&blob3[..200_000]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 1);
    assert_eq!(send("DELETE", &u(&format!("/v1/uploads/{id5}")), &[a], None).0, 204);
    drop(part5);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0, "the cancelled upload's file");
    assert_eq!(send("PUT", &u(&format!("/v1/uploads/{id5}?offset=0")), &[a], Some(&blob3[..10])).0, 404);
}

/// An object on the gateway, read with HTTP Range requests.
struct HttpObject {
    url: String,
    auth: String,
    read: std::sync::Mutex<u64>,
}

#[async_trait::async_trait]
impl kms_envelope::RangeSource for HttpObject {
    async fn size(&self) -> kms_envelope::Result<u64> {
        let r = ureq::head(&self.url).set("authorization", &self.auth).call().unwrap();
        Ok(r.header("content-length").unwrap().parse().unwrap())
    }
    async fn read_at(&self, offset: u64, len: usize) -> kms_envelope::Result<Vec<u8>> {
        let r = ureq::get(&self.url).set("authorization", &self.auth).set("range", &format!("bytes={offset}-{}", offset + len as u64 - 1)).call().unwrap();
        assert_eq!(r.status(), 206);
        let mut b = Vec::new();
        r.into_reader().read_to_end(&mut b).unwrap();
        *self.read.lock().unwrap() += b.len() as u64;
        Ok(b)
    }
}

#[test]
fn objects_serve_byte_ranges_for_random_access_decryption() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 64 << 20);
    let gw = start(d.path());
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let blob = gw.seal("alice", "ranged", "movie.bin", &data);
    assert_eq!(gw.upload(Some("alice"), &blob).0, 201);
    let url = format!("{}/v1/objects/ranged", gw.url);
    let alice = token("alice");
    let r = ureq::get(&url).set("authorization", &alice).set("range", "bytes=100-199").call().unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.header("content-range"), Some(format!("bytes 100-199/{}", blob.len()).as_str()));
    let mut b = Vec::new();
    r.into_reader().read_to_end(&mut b).unwrap();
    assert_eq!(b, blob[100..200]);
    let r = ureq::get(&url).set("authorization", &alice).set("range", "bytes=-10").call().unwrap();
    let mut b = Vec::new();
    r.into_reader().read_to_end(&mut b).unwrap();
    assert_eq!(b, blob[blob.len() - 10..]);
    let past = format!("bytes={}-", blob.len() + 5);
    assert_eq!(status(ureq::get(&url).set("authorization", &alice).set("range", &past).call()).0, 416);
    assert_eq!(status(ureq::get(&url).set("authorization", &token("bob")).set("range", "bytes=0-9").call()).0, 404, "ranges are authorized too");
    let head = ureq::head(&url).set("authorization", &alice).call().unwrap();
    assert_eq!(head.header("accept-ranges"), Some("bytes"));

    // The library's range read over HTTP: the header and two frames, not 3 MB.
    let (_, pk) = status(ureq::get(&format!("{}/v1/public-key", gw.url)).call());
    let arn = pk["keyArn"].as_str().unwrap().to_owned();
    let keyring = KmsRsaKeyring::new(&arn, None, KmsRsaAlgorithm::RsaesOaepSha256)
        .unwrap()
        .with_kms_decrypt(Arc::new(ViaGateway { url: gw.url.clone(), user: "alice" }));
    let src = HttpObject { url, auth: alice, read: std::sync::Mutex::new(0) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let r = rt.block_on(Client::new().decrypt_range(&keyring, &src, 1_000_000, 1_065_536, &DecryptOptions::default())).unwrap();
    assert_eq!(r.plaintext, data[1_000_000..1_065_536]);
    assert_eq!(r.plaintext_len, data.len() as u64);
    let read = *src.read.lock().unwrap();
    assert!(read <= 4096 + 2 * (65_536 + 32), "{read} bytes read");
}

/// Authenticate-only context pairs through the gateway: an upload may carry
/// them (the gateway authorizes on the stored `owner` and `object`, so
/// those must be stored); the data-key proof covers the whole context the
/// reader claims, so a download decrypts only with the pairs reproduced.
#[test]
fn authenticate_only_pairs_are_proved_by_the_data_key_route() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 4 << 20);
    let gw = start(d.path());
    let sealer = Sealer::new(&gw);
    let seal = |only: &[&str], object: &str| {
        let mut o = kms_envelope::EncryptOptions::default();
        for (k, v) in [("owner", "alice"), ("object", object), ("file", "f.bin"), ("case", "C-42")] {
            o.encryption_context.insert(k.into(), v.into());
        }
        o.required_encryption_context_keys = only.iter().map(|k| k.to_string()).collect();
        block_on(Client::new().encrypt(&sealer.keyring, b"case file", &o)).unwrap()
    };
    let blob = seal(&["case"], "auth-only");
    assert_eq!(gw.upload(Some("alice"), &blob).0, 201);
    // The gateway cannot authorize what the header does not name.
    let (s, v) = gw.upload(Some("alice"), &seal(&["owner"], "no-owner"));
    assert_eq!(s, 403, "{v}");
    let (s, v) = gw.upload(Some("alice"), &seal(&["object"], "no-object"));
    assert_eq!(s, 400, "{v}");

    let arn = request_for(&blob)["keyId"].as_str().unwrap().to_owned();
    let via = |user| {
        KmsRsaKeyring::new(&arn, None, KmsRsaAlgorithm::RsaesOaepSha256).unwrap().with_kms_decrypt(Arc::new(ViaGateway { url: gw.url.clone(), user }))
    };
    let with = |pairs: &[(&str, &str)]| DecryptOptions { encryption_context: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..DecryptOptions::default() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (plain, h) = rt.block_on(Client::new().decrypt(&via("alice"), &blob, &with(&[("case", "C-42")]))).unwrap();
    assert_eq!(plain, b"case file");
    assert!(!h.encryption_context.contains_key("case"));
    // Without the pair, or with another value, the gateway's proof fails.
    for pairs in [&[][..], &[("case", "C-43")][..]] {
        let e = rt.block_on(Client::new().decrypt(&via("alice"), &blob, &with(pairs))).unwrap_err();
        assert!(e.detail().contains("403") && e.detail().contains("another encryption context"), "{pairs:?}: {e}");
    }
    // A stranger with the right pair is still refused.
    let e = rt.block_on(Client::new().decrypt(&via("bob"), &blob, &with(&[("case", "C-42")]))).unwrap_err();
    assert!(e.detail().contains("403"), "{e}");
}
