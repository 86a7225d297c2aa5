//! Gateways with their metadata in PostgreSQL (Debian's server, started
//! here in a scratch directory by tests/interop/pg_scratch.py, reached over
//! TLS with a password):
//!
//! - two gateway instances sharing one database, one S3 bucket (moto) and
//!   one KMS (the local KMS served over HTTP, as AWS KMS would be): an
//!   upload started on one and completed on the other, a share made on one
//!   honoured (and revoked) through the other, a delete seen by both, and
//!   one id recorded once whichever instance races for it, and one audit
//!   that `kms-envelope audit` reads through either instance's configuration;
//! - `kill -9` of one of two instances in the middle of 20 clients'
//!   uploads and data-key requests: the other answers throughout, every
//!   acknowledged upload is whole and decrypts, nothing partial is ever
//!   listed, the audit has exactly one record per answered decision, and
//!   the killed instance's upload resumes on the other (the time printed);
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

/// A gateway instance in `dir` (its name in audit records: the directory's):
/// the shared KMS, database and bucket, and `extra` configuration lines.
fn instance(dir: &Path, kms: &str, kms_creds: &Path, db: &str, s3: &str, extra: &str) -> Gw {
    std::fs::create_dir_all(dir).unwrap();
    let name = dir.file_name().unwrap().to_str().unwrap();
    let mut cfg = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nkey = \"alias/files\"\nkms_endpoint = \"{kms}\"\nmax_object_bytes = {}\n{db}\
         kms_cache_seconds = 0\ninstance_name = \"{name}\"\n\
         storage = \"s3\"\ns3_bucket = \"{BUCKET}\"\ns3_prefix = \"{PREFIX}\"\ns3_endpoint = \"{s3}\"\ns3_path_style = true\npart_bytes = {PART}\n{extra}\n",
        64 << 20
    );
    for (u, t) in TOKENS {
        cfg += &format!("[[users]]\nname = \"{u}\"\ntoken_sha256 = \"{}\"\n", hex_sha256(t.as_bytes()));
    }
    std::fs::write(dir.join("gateway.toml"), cfg).unwrap();
    // One set of credentials, the local KMS's (moto's S3 takes any).
    start_env(dir, &[("AWS_SHARED_CREDENTIALS_FILE", kms_creds)])
}

/// Two instances, `a` and `b` under `root`, sharing a fresh database, one
/// bucket (moto) and one KMS, each with `extra` configuration lines.
struct Pair {
    s3: S3,
    _kms: Helper,
    a: Gw,
    b: Gw,
}

fn pair(root: &Path, extra: &str) -> Pair {
    let s3 = moto_s3();
    let (kms, kms_url) = kms_service(root);
    let creds = root.join("kms/kms/credentials");
    let db = pg().config_lines();
    let a = instance(&root.join("a"), &kms_url, &creds, &db, &s3.moto, extra);
    let b = instance(&root.join("b"), &kms_url, &creds, &db, &s3.moto, extra);
    Pair { s3, _kms: kms, a, b }
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
    let Pair { s3, _kms, a, b } = pair(root.path(), "decrypt_burst = 4\ndecrypt_rate_per_second = 0.01");
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

    // One audit for both: each decision and share event once, under the
    // instance that made it; the refusals over budget counted, not recorded.
    let mut seen: Vec<String> = audit_records(a.dir.as_path())
        .iter()
        .map(|r| format!("{} {} {}", r["instance"].as_str().unwrap(), r["user"].as_str().unwrap(), r["decision"].as_str().or(r["event"].as_str()).unwrap()))
        .collect();
    seen.sort();
    assert_eq!(seen, ["a alice share", "a bob deny", "a carol allow", "a carol allow", "b alice unshare", "b bob allow", "b carol allow", "b carol allow"]);
    assert_eq!(audit_text(a.dir.as_path()), audit_text(b.dir.as_path()), "either instance's configuration reads the same records");
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

/// What one trial of the kill test got: an upload (start, part, complete)
/// and then a data key for the object, on one instance.
struct Trial {
    instance: &'static str,
    user: &'static str,
    object: String,
    blob: Vec<u8>,
    data: Vec<u8>,
    /// The completion's status; `None` if it got no answer (the instance died).
    completed: Option<u16>,
    /// The data-key request's status; `None` if unanswered or never sent.
    key: Option<u16>,
}

/// A status, or `None` for no answer (connection refused or reset).
fn answered(r: Result<ureq::Response, ureq::Error>) -> Option<(u16, Value)> {
    match r {
        Ok(r) => {
            let s = r.status();
            Some((s, r.into_json().unwrap_or(Value::Null)))
        }
        Err(ureq::Error::Status(s, r)) => Some((s, r.into_json().unwrap_or(Value::Null))),
        Err(ureq::Error::Transport(_)) => None,
    }
}

/// One trial on `gw`; `None` where the upload never got an object id.
fn trial(gw: &Gw, instance: &'static str, sealer: &Sealer, user: &'static str, n: usize) -> Option<Trial> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(20)).build();
    let post = |path: &str, body: Value| answered(agent.post(&format!("{}{path}", gw.url)).set("authorization", &token(user)).send_json(body));
    let (s, up) = answered(agent.post(&format!("{}/v1/uploads", gw.url)).set("authorization", &token(user)).call())?;
    assert_eq!(s, 201, "{up}");
    let (id, object) = (up["uploadId"].as_str().unwrap().to_owned(), up["objectId"].as_str().unwrap().to_owned());
    let data: Vec<u8> = format!("trial {n} of {user} on {instance} ").repeat(50 + n % 7).into_bytes();
    let blob = sealer.seal(user, &object, &data);
    let mut t = Trial { instance, user, object, blob, data, completed: None, key: None };
    let Some((s, urls)) = post(&format!("/v1/uploads/{id}/parts"), json!({ "partNumbers": [1] })) else { return Some(t) };
    assert_eq!(s, 200, "{urls}");
    let (s, etag) = put_part(urls["parts"][0]["url"].as_str().unwrap(), &t.blob);
    assert_eq!(s, 200);
    let Some((s, done)) = post(&format!("/v1/uploads/{id}/complete"), json!({ "parts": [{ "partNumber": 1, "etag": etag }] })) else { return Some(t) };
    assert_eq!(s, 201, "{done}");
    t.completed = Some(s);
    t.key = post("/v1/decrypt-data-key", request_for(&t.blob)).map(|(s, _)| s);
    Some(t)
}

#[test]
#[ignore = "needs PostgreSQL and the Python venv (make test installs them)"]
fn an_instance_killed_mid_traffic_loses_nothing_acknowledged() {
    let root = tempfile::tempdir().unwrap();
    let Pair { s3, _kms, a, b } = pair(root.path(), "decrypt_burst = 10000\ndecrypt_rate_per_second = 1000\nmax_uploads_per_user = 64");
    let sealer = Sealer::new(&b);
    let arn = status(ureq::get(&format!("{}/v1/public-key", b.url)).call()).1["keyArn"].as_str().unwrap().to_owned();

    // An upload of two parts on A, the first part sent: to resume on B after A dies.
    let up = start_upload(&a, "carol");
    let (resume_id, resume_object) = (up["uploadId"].as_str().unwrap().to_owned(), up["objectId"].as_str().unwrap().to_owned());
    let resume_data: Vec<u8> = (0..(PART + 777) as u32).map(|i| (i % 251) as u8).collect();
    let resume_blob = sealer.seal("carol", &resume_object, &resume_data);
    let (s, urls) = presign(&a, "carol", &resume_id, &[1]);
    assert_eq!(s, 200, "{urls}");
    let first = put_part(urls["parts"][0]["url"].as_str().unwrap(), &resume_blob[..PART]);
    assert_eq!(first.0, 200);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let a_dead = std::sync::atomic::AtomicBool::new(false);
    let done_on_a = std::sync::atomic::AtomicUsize::new(0);
    let users = ["alice", "bob", "carol"];
    let (trials, listings, resumed) = std::thread::scope(|t| {
        // 20 clients, each alternating between the instances (B only once A is gone).
        let workers: Vec<_> = (0..20)
            .map(|w| {
                let (a, b, sealer, stop, a_dead, done_on_a) = (&a, &b, &sealer, &stop, &a_dead, &done_on_a);
                t.spawn(move || {
                    let mut mine = Vec::new();
                    for n in 0.. {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let on_a = (w + n) % 2 == 0 && !a_dead.load(std::sync::atomic::Ordering::Relaxed);
                        let (gw, name) = if on_a { (a, "a") } else { (b, "b") };
                        if let Some(r) = trial(gw, name, sealer, users[w % 3], w * 1000 + n) {
                            if on_a && r.key.is_some() {
                                done_on_a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            mine.push(r);
                        }
                    }
                    mine
                })
            })
            .collect();
        // Every listing B gives meanwhile: each object listed has its whole blob in the bucket.
        let watcher = t.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for user in users {
                    for name in listed(&b, user) {
                        assert!(s3.has(&format!("{PREFIX}{name}.esdk")), "{name} listed without its blob");
                    }
                    n += 1;
                }
            }
            n
        });
        // kill -9 of A once it has answered some of the traffic, in the middle of the rest.
        let t0 = Instant::now();
        while done_on_a.load(std::sync::atomic::Ordering::Relaxed) < 15 {
            assert!(t0.elapsed() < Duration::from_secs(120), "A answered too little");
            std::thread::sleep(Duration::from_millis(5));
        }
        signal(&a.child, "KILL");
        let killed = Instant::now();
        a_dead.store(true, std::sync::atomic::Ordering::Relaxed);
        // The upload A began resumes on B: the second part, then completion.
        let (s, urls) = presign(&b, "carol", &resume_id, &[2]);
        assert_eq!(s, 200, "{urls}");
        let resumable = killed.elapsed();
        let second = put_part(urls["parts"][0]["url"].as_str().unwrap(), &resume_blob[PART..]);
        let (s, v) = complete(&b, "carol", &resume_id, &[(1, first.1.clone()), (2, second.1)]);
        assert_eq!(s, 201, "{v}");
        let completed = killed.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let trials: Vec<Trial> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        (trials, watcher.join().unwrap(), (resumable, completed))
    });
    eprintln!(
        "kill -9 test: {} trials ({} on A, {} answered by A), {} listings on B; a killed instance's upload resumable on the other after {} ms, completed after {} ms",
        trials.len(),
        trials.iter().filter(|t| t.instance == "a").count(),
        trials.iter().filter(|t| t.instance == "a" && t.key.is_some()).count(),
        listings,
        resumed.0.as_millis(),
        resumed.1.as_millis()
    );

    // B answered every request sent to it, and its trials all succeeded.
    assert!(trials.iter().filter(|t| t.instance == "b").all(|t| t.completed == Some(201) && t.key == Some(200)));

    // The audit: exactly one record per answered decision, under the instance that answered;
    // at most one for a request whose answer the kill cut off.
    let records = audit_records(b.dir.as_path());
    for t in &trials {
        let mine: Vec<&Value> = records.iter().filter(|r| r["object"] == t.object.as_str() && r["decision"].is_string()).collect();
        match t.key {
            Some(s) => {
                assert_eq!(mine.len(), 1, "{} on {}: {mine:?}", t.object, t.instance);
                assert_eq!((mine[0]["instance"].as_str(), mine[0]["user"].as_str(), mine[0]["decision"].as_str()), (Some(t.instance), Some(t.user), Some(if s == 200 { "allow" } else { "deny" })));
            }
            None => assert!(mine.len() <= 1, "{mine:?}"),
        }
    }

    // Every acknowledged upload is listed and whole, and decrypts through B;
    // nothing else is listed but uploads whose completion the kill cut off (whole too).
    let by_name: std::collections::HashMap<String, &Trial> = trials.iter().map(|t| (format!("{}/{}", t.user, t.object), t)).collect();
    for user in users {
        let names = listed(&b, user);
        for t in trials.iter().filter(|t| t.user == user && t.completed == Some(201)) {
            assert!(names.contains(&format!("{user}/{}", t.object)), "acknowledged {} not listed", t.object);
        }
        for name in names {
            if name == format!("carol/{resume_object}") {
                assert!(download(&b, "carol", "carol", &resume_object) == resume_blob);
                continue;
            }
            let t = by_name.get(&name).unwrap_or_else(|| panic!("{name} listed but never uploaded"));
            assert!(download(&b, user, user, &t.object) == t.blob, "{name} is not whole");
        }
    }
    for t in trials.iter().filter(|t| t.completed == Some(201)).step_by(7) {
        assert_eq!(data_key(&b, t.user, &arn, &t.blob).unwrap(), t.data);
    }
    assert_eq!(data_key(&b, "carol", &arn, &resume_blob).unwrap(), resume_data);
}
