//! The gateway and CLI against KMS services other than the embedded one:
//!
//! - moto 5.2.5 in server mode (with tests/interop/moto_kms.py's test-only
//!   patch for RSA): an independent KMS emulator, reached through the same
//!   `aws-sdk-kms` code path as AWS KMS;
//! - a fault-injecting proxy (tests/interop/kms_faults.py) in front of the
//!   local KMS: throttling bursts are retried, sustained throttling becomes
//!   429 with Retry-After, a KMS that lies about the key or the plaintext or
//!   drops connections releases no key, and service returns with KMS.
//!
//! - the official Python SDK's AWS KMS RSA keyring, against the gateway's
//!   embedded local KMS: the gateway serves the data key of a message the
//!   Python keyring made, to its owner only.
//!
//! All need the Python venv that `make test` sets up, hence `#[ignore]`.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use kms_envelope::{Client, DecryptOptions, KmsRsaAlgorithm, KmsRsaKeyring};
use serde_json::{json, Value};

/// A gateway configuration for `kms_endpoint` and `key`, users as in common,
/// plus `extra` lines.
fn configure(dir: &Path, endpoint: &str, key: &str, extra: &str) {
    let mut cfg = format!("listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nkey = \"{key}\"\nkms_endpoint = \"{endpoint}\"\n{extra}\n");
    for (u, t) in TOKENS {
        cfg += &format!("[[users]]\nname = \"{u}\"\ntoken_sha256 = \"{}\"\n", hex_sha256(t.as_bytes()));
    }
    std::fs::write(dir.join("gateway.toml"), cfg).unwrap();
}

fn decrypt_whole(gw: &Gw, user: &'static str, arn: &str, blob: &[u8]) -> Vec<u8> {
    let keyring = KmsRsaKeyring::new(arn, None, KmsRsaAlgorithm::RsaesOaepSha256)
        .unwrap()
        .with_kms_decrypt(Arc::new(ViaGateway { url: gw.url.clone(), user }));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(Client::new().decrypt(&keyring, blob, &DecryptOptions::default())).unwrap().0
}

#[test]
#[ignore = "needs the Python venv with moto (make test runs it)"]
fn cli_and_gateway_against_moto() {
    let mut cmd = python("moto_kms.py");
    cmd.args(["serve", "--spec", "RSA_2048"]);
    let moto = spawn(cmd);
    let (url, arn) = (moto.words[1].clone(), moto.words[2].clone());
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n).to_str().unwrap().to_owned();

    // The CLI: GetPublicKey to encrypt, Decrypt to decrypt, both via aws-sdk-kms.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(p("plain"), &data).unwrap();
    let kms = format!("arn={arn}");
    cli(&["encrypt", "-i", &p("plain"), "-o", &p("sealed"), "--context", "purpose=moto", "--kms-rsa", &kms, "--kms-endpoint", &url]);
    cli(&["decrypt", "-i", &p("sealed"), "-o", &p("opened"), "--kms-rsa", &kms, "--kms-endpoint", &url]);
    assert_eq!(std::fs::read(p("opened")).unwrap(), data);

    // A key the gateway cannot use is refused at start, with the reason.
    configure(d.path(), &url, "alias/symmetric", "");
    let o = Command::new(env!("CARGO_BIN_EXE_kms-envelope")).args(["serve", "--config", d.path().join("gateway.toml").to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("needs an RSA key for ENCRYPT_DECRYPT"), "{err}");

    // The gateway with moto as its KMS.
    configure(d.path(), &url, "alias/files", "kms_cache_seconds = 0");
    let gw = start(d.path());
    let (_, pk) = status(ureq::get(&format!("{}/v1/public-key", gw.url)).call());
    assert_eq!(pk["keyArn"], arn.as_str(), "the alias resolves to the key ARN");
    assert_eq!(pk["keySpec"], "RSA_2048");
    let blob = gw.seal("alice", "moto-1", "m.bin", &data);
    assert_eq!(gw.upload(Some("alice"), &blob).0, 201);
    let req = request_for(&blob);
    let (s, v) = gw.decrypt_key(Some("alice"), &req);
    assert_eq!(s, 200, "{v}");
    assert_eq!(B64.decode(v["plaintext"].as_str().unwrap()).unwrap().len(), 80);
    assert_eq!(v["keyId"], arn.as_str());
    assert_eq!(gw.decrypt_key(Some("bob"), &req).0, 403);
    assert_eq!(decrypt_whole(&gw, "alice", &arn, &blob), data);

    // Key state as moto reports it.
    let set = |state: &str| {
        let mut c = python("moto_kms.py");
        assert!(c.args(["set-state", &url, &arn, state]).status().unwrap().success());
    };
    set("disable");
    let (s, v) = gw.decrypt_key(Some("alice"), &req);
    assert_eq!((s, v["error"].as_str()), (409, Some("KEY_DISABLED")), "{v}");
    set("enable");
    assert_eq!(gw.decrypt_key(Some("alice"), &req).0, 200);
}

fn faults(proxy: &str, f: Value) {
    let r = ureq::post(&format!("{proxy}/__faults")).send_json(f).unwrap();
    assert_eq!(r.status(), 204);
}

fn counters(proxy: &str) -> Value {
    ureq::get(&format!("{proxy}/__faults")).call().unwrap().into_json().unwrap()
}

#[test]
#[ignore = "needs the Python venv (make test runs it)"]
fn gateway_under_kms_throttling_lies_and_outages() {
    let d = tempfile::tempdir().unwrap();
    let kms_dir = d.path().join("kms");
    let kd = kms_dir.to_str().unwrap();
    cli(&["keys", "--data-dir", kd, "create", "--spec", "RSA_2048", "--alias", "files"]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kms-envelope"));
    cmd.args(["local-kms", "--data-dir", kd, "--listen", "127.0.0.1:0"]).env_remove("KMS_ENVELOPE_MASTER_KEY");
    let local = spawn(cmd);
    let kms_url = local.words.last().unwrap().clone();
    let mut cmd = python("kms_faults.py");
    cmd.arg(&kms_url);
    let proxy = spawn(cmd);
    let purl = proxy.words[1].clone();

    configure(d.path(), &purl, "alias/files", "kms_cache_seconds = 0");
    let creds = kms_dir.join("kms/credentials");
    let gw = start_env(d.path(), &[("AWS_SHARED_CREDENTIALS_FILE", &creds)]);
    let data = vec![9u8; 100_000];
    let blob = gw.seal("alice", "f-1", "f.bin", &data);
    assert_eq!(gw.upload(Some("alice"), &blob).0, 201);
    let req = request_for(&blob);
    let arn = req["keyId"].as_str().unwrap().to_owned();
    let mut decisions = 0;
    let mut call = |f: Value| {
        faults(&purl, f);
        decisions += 1;
        let r = ureq::post(&format!("{}/v1/decrypt-data-key", gw.url)).set("authorization", &token("alice")).send_json(req.clone());
        match r {
            Ok(r) => (200, None, r.into_json::<Value>().unwrap()),
            Err(ureq::Error::Status(s, r)) => (s, r.header("retry-after").map(str::to_owned), r.into_json::<Value>().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };

    // GetPublicKey answers are cached: many public-key requests, one KMS call.
    faults(&purl, json!({}));
    for _ in 0..5 {
        assert_eq!(status(ureq::get(&format!("{}/v1/public-key", gw.url)).call()).0, 200);
    }
    assert_eq!(counters(&purl)["ops"].get("GetPublicKey"), None, "{}", counters(&purl));

    // A burst of throttling is retried with backoff and succeeds.
    let (s, _, v) = call(json!({ "throttle": 2 }));
    assert_eq!(s, 200, "{v}");
    let c = counters(&purl);
    assert_eq!((c["throttled"].as_u64(), c["decrypts"].as_u64()), (Some(2), Some(3)), "{c}");

    // Sustained throttling: 429 with Retry-After after a bounded number of tries.
    let (s, retry, v) = call(json!({ "throttle": -1 }));
    assert_eq!((s, v["error"].as_str()), (429, Some("KMS_THROTTLED")), "{v}");
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    assert!(v.get("plaintext").is_none());
    let tries = counters(&purl)["decrypts"].as_u64().unwrap();
    assert!((2..=5).contains(&tries), "{tries} attempts");

    // KMS comes back: so does service.
    assert_eq!(call(json!({})).0, 200);

    // A KMS that answers for another key, or with a plaintext whose digest
    // does not prove the context: no key leaves the gateway.
    for lie in [json!({ "wrongKeyId": true }), json!({ "wrongPlaintext": true })] {
        let (s, _, v) = call(lie.clone());
        assert_eq!(s, 403, "{lie}: {v}");
        assert!(v.get("plaintext").is_none());
    }

    // KMS drops every connection: 503 with Retry-After, then recovery.
    let (s, retry, v) = call(json!({ "down": true }));
    assert_eq!((s, v["error"].as_str()), (503, Some("KMS_UNAVAILABLE")), "{v}");
    assert!(retry.is_some());
    // …and the instance says it is not ready, naming KMS, until KMS is back.
    let (s, v, retry) = readyz(&gw.url);
    assert_eq!((s, v["error"].as_str(), &v["checks"]["database"], &v["checks"]["storage"]), (503, Some("NOT_READY"), &json!("ok"), &json!("ok")), "{v}");
    assert!(v["checks"]["kms"] == "unreachable" || v["checks"]["kms"] == "timeout", "{v}");
    assert!(retry.is_some());
    faults(&purl, json!({}));
    readyz_becomes(&gw.url, 200);
    // A slow KMS (under the attempt timeout) is waited for.
    let (s, _, v) = call(json!({ "delay": 1.5 }));
    assert_eq!(s, 200, "{v}");
    faults(&purl, json!({}));
    assert_eq!(decrypt_whole(&gw, "alice", &arn, &blob), data);
    decisions += 1;

    let audit = audit_text(d.path());
    let lines = audit_records(d.path());
    assert_eq!(lines.len(), decisions, "{audit}");
    assert_eq!(lines.iter().filter(|l| l["decision"] == "allow").count(), 4);
}

#[test]
#[ignore = "needs the Python venv (make test runs it)"]
fn gateway_serves_keys_for_messages_the_python_kms_rsa_keyring_made() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 8 << 20);
    let gw = start(d.path());
    let (_, pk) = status(ureq::get(&format!("{}/v1/public-key", gw.url)).call());
    let arn = pk["keyArn"].as_str().unwrap().to_owned();
    let data: Vec<u8> = (0..400_000u32).map(|i| (i * 13 % 256) as u8).collect();
    let plain = d.path().join("plain");
    let made = d.path().join("python.esdk");
    std::fs::write(&plain, &data).unwrap();
    let ctx = json!({ "owner": "alice", "object": "py-1", "file": "from-python.bin" }).to_string();
    // The Python keyring reaches the same keys through `local-kms` (the
    // gateway calls its embedded KMS in process: there is no port to share).
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kms-envelope"));
    let store = d.path().join("data");
    cmd.args(["local-kms", "--data-dir", store.to_str().unwrap(), "--listen", "127.0.0.1:0"]).env_remove("KMS_ENVELOPE_MASTER_KEY");
    let local = spawn(cmd);
    let kms_url = local.words.last().unwrap().clone();
    let mut c = python("kms_rsa_peer.py");
    c.env("AWS_SHARED_CREDENTIALS_FILE", store.join("kms/credentials"));
    let out = c.args(["encrypt", &kms_url, &arn, plain.to_str().unwrap(), made.to_str().unwrap(), &ctx]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let blob = std::fs::read(&made).unwrap();
    let (s, v) = gw.upload(Some("alice"), &blob);
    assert_eq!(s, 201, "{v}");
    let req = request_for(&blob);
    assert_eq!(gw.decrypt_key(Some("alice"), &req).0, 200);
    assert_eq!(gw.decrypt_key(Some("bob"), &req).0, 403);
    assert_eq!(decrypt_whole(&gw, "alice", &arn, &blob), data);
}

#[test]
#[ignore = "needs the Python venv (make test runs it)"]
fn gateway_caches_kms_answers_but_authorizes_every_request() {
    let d = tempfile::tempdir().unwrap();
    let kd = d.path().join("kms");
    cli(&["keys", "--data-dir", kd.to_str().unwrap(), "create", "--spec", "RSA_2048", "--alias", "files"]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kms-envelope"));
    cmd.args(["local-kms", "--data-dir", kd.to_str().unwrap(), "--listen", "127.0.0.1:0"]).env_remove("KMS_ENVELOPE_MASTER_KEY");
    let local = spawn(cmd);
    let mut cmd = python("kms_faults.py");
    cmd.arg(local.words.last().unwrap());
    let proxy = spawn(cmd);
    let purl = proxy.words[1].clone();
    configure(d.path(), &purl, "alias/files", "kms_cache_seconds = 2");
    let creds = kd.join("kms/credentials");
    let gw = start_env(d.path(), &[("AWS_SHARED_CREDENTIALS_FILE", &creds)]);
    let blob = gw.seal("alice", "c-1", "c.bin", &[5u8; 70_000]);
    assert_eq!(gw.upload(Some("alice"), &blob).0, 201);
    let (s, _) = status(ureq::post(&format!("{}/v1/objects/c-1/shares", gw.url)).set("authorization", &token("alice")).send_json(json!({"user": "bob"})));
    assert_eq!(s, 200);
    let req = request_for(&blob);
    faults(&purl, json!({}));
    let mut keys = std::collections::HashSet::new();
    for who in ["alice", "bob", "alice", "bob", "alice"] {
        let (s, v) = gw.decrypt_key(Some(who), &req);
        assert_eq!(s, 200, "{who}: {v}");
        keys.insert(v["plaintext"].as_str().unwrap().to_owned());
    }
    assert_eq!(keys.len(), 1);
    assert_eq!(counters(&purl)["decrypts"], 1, "five entitled requests, one KMS call");
    // A warm cache changes nothing for the unentitled.
    assert_eq!(gw.decrypt_key(Some("carol"), &req).0, 403);
    let mut forged = req.clone();
    forged["encryptionContext"]["file"] = json!("other.bin");
    assert_eq!(gw.decrypt_key(Some("alice"), &forged).0, 403, "the cached answer still proves the context");
    assert_eq!(counters(&purl)["decrypts"], 1);
    // After the TTL, KMS is asked again.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    assert_eq!(gw.decrypt_key(Some("bob"), &req).0, 200);
    assert_eq!(counters(&purl)["decrypts"], 2);
    let m = ureq::get(&format!("{}/v1/metrics", gw.url)).call().unwrap().into_string().unwrap();
    assert!(m.contains("kms_envelope_kms_decrypt_calls_total 2"), "{m}");
    assert!(m.contains("kms_envelope_kms_decrypt_cache_hits_total 5"), "{m}");
    assert!(m.contains("kms_envelope_data_key_decisions_total{decision=\"deny\"} 2"), "{m}");
}
