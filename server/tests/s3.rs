//! The gateway with objects in S3: moto 5.2.5's S3 server, started here on
//! 127.0.0.1 by tests/interop/moto_s3.py, reached through the official
//! `aws-sdk-s3` (the gateway's only S3 code path), with a fault-injecting
//! proxy in front where a test needs faults.
//!
//! Parts go straight to presigned multipart URLs (sizes 0 bytes to 50 MiB,
//! exact part multiples and one byte past), downloads are presigned
//! redirects with `Range`; the header checks refuse and delete a blob
//! with another owner, a reused or unissued id, or a foreign key; bad
//! completions, a failed part PUT retried, cancel, expiry and the sweep of
//! unknown multipart uploads, and an S3 outage (before and after the parts
//! are assembled; readiness names the store).
//!
//! They need the Python venv that `make test` sets up, hence `#[ignore]`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kms_envelope::{Client, DecryptOptions, KmsRsaAlgorithm, KmsRsaKeyring};
use serde_json::{json, Value};

use common::s3::*;

/// Seals `data` so that the blob is exactly `target` bytes (a context
/// entry pads the header a byte at a time).
fn seal_exact(sealer: &Sealer, user: &str, object: &str, target: usize) -> Vec<u8> {
    let len = |l: usize| sealer.seal_with(user, object, &[("pad", "x")], &vec![7u8; l]).len();
    let mut l = target - 10_000;
    l = l + (target - 600) - len(l);
    let short = target - len(l);
    assert!((1..2000).contains(&short), "{short}");
    let blob = sealer.seal_with(user, object, &[("pad", &"x".repeat(1 + short))], &vec![7u8; l]);
    assert_eq!(blob.len(), target);
    blob
}

#[test]
#[ignore = "needs the Python venv (moto); make test runs it"]
fn every_size_round_trips_through_presigned_parts() {
    let s3 = moto_s3();
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), &s3.moto, "");
    let sealer = Sealer::new(&gw);

    // The proxied paths carry no bytes in S3 mode.
    let (s, v) = gw.upload(Some("alice"), b"anything");
    assert_eq!((s, v["error"].as_str()), (409, Some("DIRECT_UPLOAD")), "{v}");
    let (s, v) = status(ureq::put(&format!("{}/v1/uploads/x?offset=0", gw.url)).set("authorization", &token("alice")).send_bytes(b"x"));
    assert_eq!((s, v["error"].as_str()), (409, Some("DIRECT_UPLOAD")), "{v}");
    // The web app may reach the store (and only it besides itself).
    let csp = ureq::get(&format!("{}/v1/public-key", gw.url)).call().unwrap().header("content-security-policy").unwrap().to_owned();
    assert!(csp.contains(&format!("connect-src 'self' {};", s3.moto)), "{csp}");

    for size in [0usize, 1, 1 << 20, 50 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let (s, o, blob) = upload_direct(&gw, &sealer, "alice", &data);
        assert_eq!(s, 201, "{size}: {o}");
        assert_eq!(o["size"], blob.len() as u64);
        let id = o["id"].as_str().unwrap();
        assert!(s3.has(&format!("{PREFIX}alice/{id}.esdk")));
        assert!(download(&gw, "alice", "alice", id) == blob, "{size} bytes: the blob comes back whole");
    }

    // Exactly two parts, and two parts and one byte.
    for target in [2 * PART, 2 * PART + 1] {
        let up = start_upload(&gw, "alice");
        let id = up["uploadId"].as_str().unwrap();
        let blob = seal_exact(&sealer, "alice", up["objectId"].as_str().unwrap(), target);
        let (parts, _) = send_parts(&gw, "alice", id, &blob);
        assert_eq!(parts.len(), target.div_ceil(PART));
        let (s, o) = complete(&gw, "alice", id, &parts);
        assert_eq!((s, o["size"].as_u64()), (201, Some(target as u64)), "{o}");
        assert!(download(&gw, "alice", "alice", o["id"].as_str().unwrap()) == blob);
    }

    // Range reads of the presigned URL, and the data key for its owner only.
    let data = vec![42u8; 3 << 20];
    let (_, o, blob) = upload_direct(&gw, &sealer, "alice", &data);
    let id = o["id"].as_str().unwrap();
    let (s, loc) = gw.get_json("alice", &format!("/v1/objects/{id}/url"));
    assert_eq!((s, loc["direct"].as_bool(), loc["size"].as_u64()), (200, Some(true), Some(blob.len() as u64)), "{loc}");
    let r = ureq::get(loc["url"].as_str().unwrap()).set("range", "bytes=1000-2999").call().unwrap();
    assert_eq!(r.status(), 206);
    let mut part = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut part).unwrap();
    assert!(part == blob[1000..3000]);
    assert_eq!(gw.get_json("bob", &format!("/v1/objects/{id}/url?owner=alice")).0, 404, "not shared");
    assert_eq!(gw.decrypt_key(Some("bob"), &request_for(&blob)).0, 403);
    let keyring = KmsRsaKeyring::new(o["keyArn"].as_str().unwrap(), None, KmsRsaAlgorithm::RsaesOaepSha256)
        .unwrap()
        .with_kms_decrypt(std::sync::Arc::new(ViaGateway { url: gw.url.clone(), user: "alice" }));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (plain, _) = rt.block_on(Client::new().decrypt(&keyring, &download(&gw, "alice", "alice", id), &DecryptOptions::default())).unwrap();
    assert!(plain == data, "decrypted from S3 with the gateway's data key");
    let (_, list) = gw.get_json("alice", "/v1/objects");
    assert_eq!(list["objects"].as_array().unwrap().len(), 7);
    assert!(s3.multipart_uploads().is_empty(), "every upload completed");

    // Deleting removes the blob from S3.
    assert_eq!(ureq::delete(&format!("{}/v1/objects/{id}", gw.url)).set("authorization", &token("alice")).call().unwrap().status(), 204);
    assert!(!s3.has(&format!("{PREFIX}alice/{id}.esdk")));
}

#[test]
#[ignore = "needs the Python venv (moto); make test runs it"]
fn the_header_checks_refuse_and_remove_the_blob() {
    let s3 = moto_s3();
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), &s3.moto, "");
    let sealer = Sealer::new(&gw);
    let (s, first, _) = upload_direct(&gw, &sealer, "alice", b"first");
    assert_eq!(s, 201);
    let taken = first["id"].as_str().unwrap().to_owned();
    let (_, pk) = status(ureq::get(&format!("{}/v1/public-key", gw.url)).call());
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, pk["publicKey"].as_str().unwrap()).unwrap();
    let foreign = Sealer { keyring: KmsRsaKeyring::new("arn:aws:kms:us-east-1:111122223333:key/not-this-gateways", Some(&der), KmsRsaAlgorithm::RsaesOaepSha256).unwrap() };

    type Make<'a> = Box<dyn Fn(&str) -> Vec<u8> + 'a>;
    let cases: Vec<(&str, Make, u16, &str)> = vec![
        ("another owner", Box::new(|id: &str| sealer.seal("bob", id, b"x")), 403, "FORBIDDEN"),
        ("a reused id", Box::new(|_: &str| sealer.seal("alice", &taken, b"x")), 409, "CONFLICT"),
        ("an id not issued", Box::new(|_: &str| sealer.seal("alice", "chosen-by-me", b"x")), 400, "INVALID_MESSAGE"),
        ("a foreign key", Box::new(|id: &str| foreign.seal("alice", id, b"x")), 400, "INVALID_MESSAGE"),
        ("not an envelope", Box::new(|_: &str| vec![0x55; 100]), 400, "INVALID_MESSAGE"),
        ("a cut header", Box::new(|id: &str| sealer.seal("alice", id, b"x")[..60].to_vec()), 400, "INVALID_MESSAGE"),
    ];
    for (what, make, code, error) in cases {
        let up = start_upload(&gw, "alice");
        let (id, object) = (up["uploadId"].as_str().unwrap(), up["objectId"].as_str().unwrap());
        let (parts, _) = send_parts(&gw, "alice", id, &make(object));
        let (s, v) = complete(&gw, "alice", id, &parts);
        assert_eq!((s, v["error"].as_str()), (code, Some(error)), "{what}: {v}");
        assert!(!s3.has(&format!("{PREFIX}alice/{object}.esdk")), "{what}: the refused blob is gone from S3");
        assert_eq!(presign(&gw, "alice", id, &[1]).0, 404, "{what}: the upload ended");
    }
    let (_, list) = gw.get_json("alice", "/v1/objects");
    assert_eq!(list["objects"].as_array().unwrap().len(), 1, "only the first object");
    assert!(s3.has(&format!("{PREFIX}alice/{taken}.esdk")), "the object whose id was reused is untouched");
}

#[test]
#[ignore = "needs the Python venv (moto); make test runs it"]
fn completions_must_name_exactly_the_uploaded_parts() {
    let s3 = moto_s3();
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), &s3.moto, "");
    let sealer = Sealer::new(&gw);
    let up = start_upload(&gw, "alice");
    let id = up["uploadId"].as_str().unwrap();
    let blob = sealer.seal("alice", up["objectId"].as_str().unwrap(), &vec![1u8; PART + 1000]);
    let (parts, _) = send_parts(&gw, "alice", id, &blob);
    assert_eq!(parts.len(), 2);
    let bad = |parts: Vec<(i32, String)>, why: &str| {
        let (s, v) = complete(&gw, "alice", id, &parts);
        assert_eq!((s, v["error"].as_str()), (400, Some("INVALID_PARTS")), "{why}: {v}");
    };
    bad(vec![], "no parts");
    bad(vec![parts[0].clone()], "a part left out");
    bad(vec![parts[1].clone(), parts[0].clone()], "out of order");
    bad(vec![parts[0].clone(), (2, "\"0123456789abcdef0123456789abcdef\"".into())], "a wrong ETag");
    bad(vec![parts[0].clone(), parts[1].clone(), (3, parts[1].1.clone())], "a part never uploaded");
    let (s, v) = complete(&gw, "bob", id, &parts);
    assert_eq!((s, v["error"].as_str()), (404, Some("UPLOAD")), "someone else's upload: {v}");
    let (s, v) = post_json(&gw, "alice", &format!("/v1/uploads/{id}/complete"), json!({ "parts": "all" }));
    assert_eq!((s, v["error"].as_str()), (400, Some("INVALID_REQUEST")), "{v}");
    // A first part shorter than the part size would put the frames in the wrong place.
    let short = start_upload(&gw, "alice");
    let sid = short["uploadId"].as_str().unwrap();
    let sblob = sealer.seal("alice", short["objectId"].as_str().unwrap(), &vec![1u8; PART + 1000]);
    let (s, urls) = presign(&gw, "alice", sid, &[1, 2]);
    assert_eq!(s, 200);
    let mid = PART - 4096;
    let p1 = put_part(urls["parts"][0]["url"].as_str().unwrap(), &sblob[..mid]);
    let p2 = put_part(urls["parts"][1]["url"].as_str().unwrap(), &sblob[mid..]);
    let (s, v) = complete(&gw, "alice", sid, &[(1, p1.1), (2, p2.1)]);
    assert_eq!((s, v["error"].as_str()), (400, Some("INVALID_PARTS")), "{v}");
    // Nothing acknowledged was lost: the right completion still succeeds.
    let (s, o) = complete(&gw, "alice", id, &parts);
    assert_eq!(s, 201, "{o}");
    assert!(download(&gw, "alice", "alice", o["id"].as_str().unwrap()) == blob);
    // Presigning stays within the object size limit.
    assert_eq!(presign(&gw, "alice", sid, &[13]).0, 200, "64 MiB takes 13 parts of 5 MiB");
    let (s, v) = presign(&gw, "alice", sid, &[14]);
    assert_eq!((s, v["error"].as_str()), (400, Some("TOO_LARGE")), "{v}");
    assert_eq!(presign(&gw, "alice", sid, &[0]).0, 400);
    assert_eq!(presign(&gw, "alice", sid, &(1..=17).collect::<Vec<_>>()).0, 400, "16 at a time");
}

#[test]
#[ignore = "needs the Python venv (moto); make test runs it"]
fn a_part_put_that_fails_is_retried() {
    let s3 = moto_s3();
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), &s3.proxy, "");
    let sealer = Sealer::new(&gw);
    s3.faults(json!({ "failPartPuts": 1, "status": 503 }));
    let up = start_upload(&gw, "alice");
    let id = up["uploadId"].as_str().unwrap();
    let data = vec![9u8; 2 * PART];
    let blob = sealer.seal("alice", up["objectId"].as_str().unwrap(), &data);
    let (parts, failures) = send_parts(&gw, "alice", id, &blob);
    assert_eq!(failures, 1, "the injected fault was seen once");
    let f = s3.faults(json!({}));
    assert_eq!((f["partPuts"].as_u64(), f["failedPuts"].as_u64()), (Some(parts.len() as u64 + 1), Some(1)), "{f}");
    let (s, o) = complete(&gw, "alice", id, &parts);
    assert_eq!(s, 201, "{o}");
    assert!(download(&gw, "alice", "alice", o["id"].as_str().unwrap()) == blob, "the retried part is in place");
}

#[test]
#[ignore = "needs the Python venv (moto); make test runs it"]
fn cancelled_expired_and_unknown_uploads_leave_nothing_in_s3() {
    let s3 = moto_s3();
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), &s3.moto, "upload_idle_seconds = 2\nsweep_seconds = 1");
    let sealer = Sealer::new(&gw);

    // Cancel: the multipart upload is aborted at once.
    let up = start_upload(&gw, "alice");
    let id = up["uploadId"].as_str().unwrap();
    let blob = sealer.seal("alice", up["objectId"].as_str().unwrap(), &vec![3u8; PART + 10]);
    let (urls_s, urls) = presign(&gw, "alice", id, &[1]);
    assert_eq!(urls_s, 200);
    assert_eq!(put_part(urls["parts"][0]["url"].as_str().unwrap(), &blob[..PART]).0, 200);
    assert_eq!(s3.multipart_uploads().len(), 1);
    let del = |user: &str| status(ureq::delete(&format!("{}/v1/uploads/{id}", gw.url)).set("authorization", &token(user)).call()).0;
    assert_eq!(del("bob"), 404, "someone else's upload");
    assert_eq!(del("alice"), 204);
    assert!(s3.multipart_uploads().is_empty(), "aborted");
    assert_eq!(presign(&gw, "alice", id, &[2]).0, 404);

    // Expiry: an upload idle past upload_idle_seconds is aborted by the sweep;
    // so is a multipart upload under the prefix the gateway never started,
    // and one outside the prefix is not the gateway's.
    let idle = start_upload(&gw, "alice");
    let (_, urls) = presign(&gw, "alice", idle["uploadId"].as_str().unwrap(), &[1]);
    assert_eq!(put_part(urls["parts"][0]["url"].as_str().unwrap(), &blob[..PART]).0, 200);
    let stray = s3.stray_upload(&format!("{PREFIX}alice/stray.esdk"));
    let other = s3.stray_upload("elsewhere/keep.bin");
    assert_eq!(s3.multipart_uploads().len(), 3);
    let t = Instant::now();
    loop {
        let left = s3.multipart_uploads();
        if left.len() == 1 {
            assert_eq!(left[0], ("elsewhere/keep.bin".to_owned(), other.clone()));
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "still there: {left:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!s3.multipart_uploads().iter().any(|(_, u)| *u == stray));
    assert_eq!(presign(&gw, "alice", idle["uploadId"].as_str().unwrap(), &[2]).0, 404, "expired");
    let (_, list) = gw.get_json("alice", "/v1/objects");
    assert!(list["objects"].as_array().unwrap().is_empty());
}

#[test]
#[ignore = "needs the Python venv (moto); make test runs it"]
fn an_s3_outage_gets_coded_errors_and_loses_nothing() {
    let s3 = moto_s3();
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), &s3.proxy, "");
    let sealer = Sealer::new(&gw);
    let up = start_upload(&gw, "alice");
    let id = up["uploadId"].as_str().unwrap();
    let blob = sealer.seal("alice", up["objectId"].as_str().unwrap(), &vec![5u8; PART + 77]);
    let (parts, _) = send_parts(&gw, "alice", id, &blob);

    s3.faults(json!({ "down": true }));
    let t = Instant::now();
    let (s, v) = complete(&gw, "alice", id, &parts);
    assert_eq!((s, v["error"].as_str()), (503, Some("STORAGE_UNAVAILABLE")), "{v}");
    let r = ureq::post(&format!("{}/v1/uploads", gw.url)).set("authorization", &token("alice")).call();
    let Err(ureq::Error::Status(503, r)) = r else { panic!("a new upload during the outage: {r:?}") };
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.into_json::<Value>().unwrap()["error"], "STORAGE_UNAVAILABLE");
    assert!(t.elapsed() < Duration::from_secs(30), "answered within the SDK's timeouts: {:?}", t.elapsed());
    let (_, list) = gw.get_json("alice", "/v1/objects");
    assert!(list["objects"].as_array().unwrap().is_empty(), "nothing half-visible");
    // The instance says it is not ready, naming the store, and answers within its check timeout.
    let t = Instant::now();
    let (s, v, retry) = readyz(&gw.url);
    assert_eq!((s, v["error"].as_str(), &v["checks"]["database"], &v["checks"]["kms"]), (503, Some("NOT_READY"), &json!("ok"), &json!("ok")), "{v}");
    assert!(v["checks"]["storage"] == "unreachable" || v["checks"]["storage"] == "timeout", "{v}");
    assert!(retry.is_some() && t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(!v.to_string().contains(BUCKET) && !v.to_string().contains("127.0.0.1"), "no detail for the unauthenticated: {v}");

    s3.faults(json!({ "down": false }));
    readyz_becomes(&gw.url, 200);
    let (s, o) = complete(&gw, "alice", id, &parts);
    assert_eq!(s, 201, "the same completion once S3 is back: {o}");
    assert!(download(&gw, "alice", "alice", o["id"].as_str().unwrap()) == blob);

    // S3 fails after assembling the parts, while the header is read back: the
    // same completion, sent again, finds the blob assembled and finishes.
    let up = start_upload(&gw, "alice");
    let id = up["uploadId"].as_str().unwrap();
    let blob = sealer.seal("alice", up["objectId"].as_str().unwrap(), &vec![6u8; PART + 99]);
    let (parts, _) = send_parts(&gw, "alice", id, &blob);
    s3.faults(json!({ "failGets": 10 }));
    let (s, v) = complete(&gw, "alice", id, &parts);
    assert_eq!((s, v["error"].as_str()), (503, Some("STORAGE_UNAVAILABLE")), "{v}");
    assert_eq!(gw.get_json("alice", "/v1/objects").1["objects"].as_array().unwrap().len(), 1, "not an object yet");
    s3.faults(json!({ "failGets": 0 }));
    let (s, o) = complete(&gw, "alice", id, &parts);
    assert_eq!(s, 201, "the completion sent again: {o}");
    assert!(download(&gw, "alice", "alice", o["id"].as_str().unwrap()) == blob);

    // A gateway whose bucket does not exist says so at startup.
    let d2 = tempfile::tempdir().unwrap();
    setup_with(d2.path(), 1 << 20, &format!("storage = \"s3\"\ns3_bucket = \"no-such-bucket\"\ns3_endpoint = \"{}\"\ns3_path_style = true", s3.moto));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kms-envelope"))
        .args(["serve", "--config", d2.path().join("gateway.toml").to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("S3 bucket no-such-bucket"), "{}", String::from_utf8_lossy(&out.stderr));
}
