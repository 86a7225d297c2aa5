//! Gateways with their metadata in PostgreSQL (Debian's server, started
//! here in a scratch directory by tests/interop/pg_scratch.py, reached over
//! TLS with a password):
//!
//! - two gateway instances sharing one database, one S3 bucket (moto) and
//!   one KMS (the local KMS served over HTTP, as AWS KMS would be): an
//!   upload started on one and completed on the other, a share made on one
//!   honoured (and revoked) through the other, a delete seen by both, and
//!   one id recorded once whichever instance races for it;
//! - readiness and answers that follow the database: PostgreSQL stopped →
//!   `/readyz` 503 naming it and requests answered 503
//!   `DATABASE_UNAVAILABLE` (no hang, no crash, nothing lost); started
//!   again → ready, and everything as it was.
//!
//! The rest of the gateway tests run against PostgreSQL too
//! (`KMS_ENVELOPE_TEST_POSTGRES=1`, see scripts/test.sh). These need the
//! Python venv and PostgreSQL that `make test` installs, hence `#[ignore]`.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::s3::*;
use common::*;
use kms_envelope::{Client, DecryptOptions, KmsRsaAlgorithm, KmsRsaKeyring};
use serde_json::{json, Value};

/// The local KMS as a service (one key, alias/files) that both instances call.
fn kms_service(dir: &Path) -> (Helper, String) {
    let kd = dir.join("kms");
    cli(&["keys", "--data-dir", kd.to_str().unwrap(), "create", "--spec", "RSA_2048", "--alias", "files"]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kms-envelope"));
    cmd.args(["local-kms", "--data-dir", kd.to_str().unwrap(), "--listen", "127.0.0.1:0"]).env_remove("KMS_ENVELOPE_MASTER_KEY");
    let h = spawn(cmd);
    let url = h.words.last().unwrap().clone();
    (h, url)
}

/// A gateway instance in `dir`: the shared KMS, database and bucket.
fn instance(dir: &Path, kms: &str, kms_creds: &Path, db: &str, s3: &str) -> Gw {
    std::fs::create_dir_all(dir).unwrap();
    let mut cfg = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nkey = \"alias/files\"\nkms_endpoint = \"{kms}\"\nmax_object_bytes = {}\n{db}\
         decrypt_burst = 4\ndecrypt_rate_per_second = 0.01\nkms_cache_seconds = 0\n\
         storage = \"s3\"\ns3_bucket = \"{BUCKET}\"\ns3_prefix = \"{PREFIX}\"\ns3_endpoint = \"{s3}\"\ns3_path_style = true\npart_bytes = {PART}\n",
        64 << 20
    );
    for (u, t) in TOKENS {
        cfg += &format!("[[users]]\nname = \"{u}\"\ntoken_sha256 = \"{}\"\n", hex_sha256(t.as_bytes()));
    }
    std::fs::write(dir.join("gateway.toml"), cfg).unwrap();
    // One set of credentials, the local KMS's (moto's S3 takes any).
    start_env(dir, &[("AWS_SHARED_CREDENTIALS_FILE", kms_creds)])
}

fn data_key(gw: &Gw, user: &'static str, arn: &str, blob: &[u8]) -> Result<Vec<u8>, String> {
    let keyring = KmsRsaKeyring::new(arn, None, KmsRsaAlgorithm::RsaesOaepSha256).unwrap().with_kms_decrypt(Arc::new(ViaGateway { url: gw.url.clone(), user }));
    block_on(Client::new().decrypt(&keyring, blob, &DecryptOptions::default())).map(|(plain, _)| plain).map_err(|e| e.to_string())
}

fn listed(gw: &Gw, user: &str) -> Vec<String> {
    let (s, v) = gw.get_json(user, "/v1/objects");
    assert_eq!(s, 200, "{v}");
    v["objects"].as_array().unwrap().iter().map(|o| format!("{}/{}", o["owner"].as_str().unwrap(), o["id"].as_str().unwrap())).collect()
}

#[test]
#[ignore = "needs PostgreSQL and the Python venv (make test installs them)"]
fn two_gateways_share_one_database_bucket_and_kms() {
    let root = tempfile::tempdir().unwrap();
    let s3 = moto_s3();
    let (_kms, kms_url) = kms_service(root.path());
    let creds = root.path().join("kms/kms/credentials");
    let db = pg().config_lines();
    let a = instance(&root.path().join("a"), &kms_url, &creds, &db, &s3.moto);
    let b = instance(&root.path().join("b"), &kms_url, &creds, &db, &s3.moto);
    for gw in [&a, &b] {
        assert_eq!(readyz(&gw.url).0, 200);
    }
    let sealer = Sealer::new(&a);

    // Started on A, its parts presigned by A, completed on B.
    let up = start_upload(&a, "alice");
    let id = up["uploadId"].as_str().unwrap();
    let object = up["objectId"].as_str().unwrap().to_owned();
    let data: Vec<u8> = (0..(PART + 4321) as u32).map(|i| (i % 253) as u8).collect();
    let blob = sealer.seal("alice", &object, &data);
    let (parts, _) = send_parts(&a, "alice", id, &blob);
    let (s, o) = complete(&b, "alice", id, &parts);
    assert_eq!(s, 201, "{o}");
    let name = format!("alice/{object}");
    assert_eq!(listed(&a, "alice"), std::slice::from_ref(&name));
    assert_eq!(listed(&b, "alice"), std::slice::from_ref(&name));
    assert!(download(&a, "alice", "alice", &object) == blob);
    assert_eq!(complete(&a, "alice", id, &parts).0, 404, "the upload is over for every instance");

    // Shared on A, honoured by B; revoked on B, refused by A.
    let arn = o["keyArn"].as_str().unwrap().to_owned();
    assert_eq!(post_json(&a, "alice", &format!("/v1/objects/{object}/shares"), json!({ "user": "bob" })).0, 200);
    assert_eq!(listed(&b, "bob"), std::slice::from_ref(&name));
    assert_eq!(data_key(&b, "bob", &arn, &blob).unwrap(), data);
    let r = ureq::delete(&format!("{}/v1/objects/{object}/shares/bob", b.url)).set("authorization", &token("alice")).call().unwrap();
    assert_eq!(r.status(), 204);
    assert!(listed(&a, "bob").is_empty());
    let e = data_key(&a, "bob", &arn, &blob).unwrap_err();
    assert!(e.contains("403") || e.to_lowercase().contains("forbidden"), "{e}");

    // Two uploads completed at once, one on each instance, for one object id: one object.
    let up2 = start_upload(&b, "carol");
    let (id2, object2) = (up2["uploadId"].as_str().unwrap().to_owned(), up2["objectId"].as_str().unwrap().to_owned());
    let blob2 = sealer.seal("carol", &object2, b"once");
    let (parts2, _) = send_parts(&b, "carol", &id2, &blob2);
    let (ra, rb) = std::thread::scope(|t| {
        let x = t.spawn(|| complete(&a, "carol", &id2, &parts2));
        let y = t.spawn(|| complete(&b, "carol", &id2, &parts2));
        (x.join().unwrap(), y.join().unwrap())
    });
    let statuses = [ra.0, rb.0];
    assert!(statuses.contains(&201) && statuses.iter().filter(|s| **s == 201).count() == 1, "{ra:?} {rb:?}");
    assert_eq!(listed(&a, "carol"), [format!("carol/{object2}")]);
    assert!(download(&b, "carol", "carol", &object2) == blob2, "the losing completion left the winner's blob alone");

    // One data-key budget for carol across both instances (a burst of 4).
    let got: Vec<bool> = (0..6).map(|i| data_key(if i % 2 == 0 { &a } else { &b }, "carol", &arn, &blob2).is_ok()).collect();
    assert_eq!(got, [true, true, true, true, false, false], "4 across both, then 429 on either");

    // A session made on A is one on B; ended on B, it is over on A.
    let (s, login, cookie) = session_request(&a, "POST", "/v1/login", None, Some(json!({ "user": "alice", "token": TOKENS[0].1 })));
    assert_eq!(s, 200, "{login}");
    let cookie = cookie.unwrap();
    assert_eq!(session_request(&b, "GET", "/v1/session", Some(&cookie), None).1["user"], "alice");
    let csrf = login["csrfToken"].as_str().unwrap();
    let r = ureq::post(&format!("{}/v1/logout", b.url)).set("cookie", &cookie).set("x-csrf-token", csrf).call().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(session_request(&a, "GET", "/v1/session", Some(&cookie), None).0, 401);

    // Deleted through B: gone for A, from the bucket too.
    let r = ureq::delete(&format!("{}/v1/objects/{object}", b.url)).set("authorization", &token("alice")).call().unwrap();
    assert_eq!(r.status(), 204);
    assert!(listed(&a, "alice").is_empty());
    assert_eq!(a.get_json("alice", &format!("/v1/objects/{object}/url")).0, 404);
    assert!(!s3.has(&format!("{PREFIX}alice/{object}.esdk")));
}

#[test]
#[ignore = "needs PostgreSQL and the Python venv (make test installs them)"]
fn readiness_and_answers_follow_the_database() {
    let d = tempfile::tempdir().unwrap();
    let mut pg = PgScratch::spawn();
    setup_with(d.path(), 64 << 20, &pg.config_lines());
    let gw = start(d.path());
    let kept = gw.seal("alice", "kept", "k.bin", &vec![4u8; 70_000]);
    assert_eq!(gw.upload(Some("alice"), &kept).0, 201);
    let (s, v, _) = readyz(&gw.url);
    assert_eq!((s, &v["checks"]["database"]), (200, &json!("ok")), "{v}");

    pg.stop();
    let t = Instant::now();
    let v = readyz_becomes(&gw.url, 503);
    assert_eq!(v["error"], "NOT_READY", "{v}");
    assert!(v["checks"]["database"] == "unreachable" || v["checks"]["database"] == "timeout", "{v}");
    assert_eq!((&v["checks"]["storage"], &v["checks"]["kms"]), (&json!("ok"), &json!("ok")), "{v}");
    assert!(!v.to_string().contains("kms-test-password") && !v.to_string().contains("127.0.0.1"), "no detail for the unauthenticated: {v}");
    // Requests get a coded 503 with Retry-After, within the pool's timeouts.
    for (what, r) in [
        ("list", ureq::get(&format!("{}/v1/objects", gw.url)).set("authorization", &token("alice")).call()),
        ("upload", ureq::post(&format!("{}/v1/objects", gw.url)).set("authorization", &token("alice")).send_bytes(&gw_blob(&gw))),
        ("data key", ureq::post(&format!("{}/v1/decrypt-data-key", gw.url)).set("authorization", &token("alice")).send_json(request_for(&kept))),
    ] {
        let Err(ureq::Error::Status(503, r)) = r else { panic!("{what} while the database is down: {r:?}") };
        assert!(r.header("retry-after").is_some(), "{what}");
        assert_eq!(r.into_json::<Value>().unwrap()["error"], "DATABASE_UNAVAILABLE", "{what}");
    }
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(status(ureq::get(&format!("{}/healthz", gw.url)).call()).0, 200, "alive all the same");

    pg.start();
    readyz_becomes(&gw.url, 200);
    assert_eq!(listed(&gw, "alice"), ["alice/kept"], "the upload refused in the outage left nothing");
    assert_eq!(gw.decrypt_key(Some("alice"), &request_for(&kept)).0, 200);
    let again = gw.seal("alice", "after", "a.bin", b"after the outage");
    assert_eq!(gw.upload(Some("alice"), &again).0, 201);
}

/// A request with an optional session cookie and JSON body: (status, body, the session cookie set).
fn session_request(gw: &Gw, method: &str, path: &str, cookie: Option<&str>, body: Option<Value>) -> (u16, Value, Option<String>) {
    let mut req = ureq::request(method, &format!("{}{path}", gw.url));
    if let Some(c) = cookie {
        req = req.set("cookie", c);
    }
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(s, r)) => return (s, r.into_json().unwrap_or(Value::Null), None),
        Err(e) => panic!("{e}"),
    };
    let set = r.header("set-cookie").and_then(|c| c.split(';').next()).map(str::to_owned);
    (r.status(), r.into_json().unwrap(), set)
}

/// An upload's body for `gw` (object id `during-outage`).
fn gw_blob(gw: &Gw) -> Vec<u8> {
    gw.seal("alice", "during-outage", "o.bin", b"sent while the database is down")
}
