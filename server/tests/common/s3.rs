//! moto's S3 server (tests/interop/moto_s3.py, with its fault proxy) and
//! the direct-upload client steps the S3 tests share: start, presign, PUT
//! parts (retrying as the browser does), complete, download.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

pub const BUCKET: &str = "kms-envelope-test";
pub const PREFIX: &str = "files/";
pub const PART: usize = 5 << 20;

/// moto's S3 server and its fault proxy.
pub struct S3 {
    _helper: Helper,
    pub moto: String,
    pub proxy: String,
}

pub fn moto_s3() -> S3 {
    let mut c = python("moto_s3.py");
    c.args(["serve", "--bucket", BUCKET]);
    let h = spawn(c);
    let (moto, proxy) = (h.words[1].clone(), h.words[2].clone());
    S3 { _helper: h, moto, proxy }
}

impl S3 {
    /// The multipart uploads moto holds, as (key, upload id), listed without the gateway.
    pub fn multipart_uploads(&self) -> Vec<(String, String)> {
        let xml = ureq::get(&format!("{}/{BUCKET}?uploads", self.moto)).call().unwrap().into_string().unwrap();
        let field = |chunk: &str, tag: &str| chunk.split(&format!("<{tag}>")).nth(1).and_then(|r| r.split(&format!("</{tag}>")).next()).unwrap_or("").to_owned();
        xml.split("<Upload>").skip(1).map(|u| (field(u, "Key"), field(u, "UploadId"))).collect()
    }

    /// Whether moto holds a blob at `key`.
    pub fn has(&self, key: &str) -> bool {
        match ureq::head(&format!("{}/{BUCKET}/{key}", self.moto)).call() {
            Ok(_) => true,
            Err(ureq::Error::Status(404, _)) => false,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts a multipart upload behind the gateway's back: its upload id.
    pub fn stray_upload(&self, key: &str) -> String {
        let xml = ureq::post(&format!("{}/{BUCKET}/{key}?uploads", self.moto)).call().unwrap().into_string().unwrap();
        xml.split("<UploadId>").nth(1).unwrap().split("</UploadId>").next().unwrap().to_owned()
    }

    pub fn faults(&self, body: Value) -> Value {
        ureq::post(&format!("{}/__faults", self.proxy)).send_json(body).unwrap().into_json().unwrap()
    }
}

/// A gateway (embedded local KMS) keeping objects in moto at `endpoint`.
pub fn gateway(dir: &Path, endpoint: &str, extra: &str) -> Gw {
    let cfg = format!(
        "storage = \"s3\"\ns3_bucket = \"{BUCKET}\"\ns3_prefix = \"{PREFIX}\"\ns3_endpoint = \"{endpoint}\"\ns3_path_style = true\npart_bytes = {PART}\n{extra}"
    );
    setup_with(dir, 64 << 20, &cfg);
    start_env(dir, &[("AWS_ACCESS_KEY_ID", Path::new("testing")), ("AWS_SECRET_ACCESS_KEY", Path::new("testing"))])
}

pub fn no_redirects() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

pub fn post_json(gw: &Gw, user: &str, path: &str, body: Value) -> (u16, Value) {
    status(ureq::post(&format!("{}{path}", gw.url)).set("authorization", &token(user)).send_json(body))
}

pub fn start_upload(gw: &Gw, user: &str) -> Value {
    let (s, v) = status(ureq::post(&format!("{}/v1/uploads", gw.url)).set("authorization", &token(user)).call());
    assert_eq!(s, 201, "{v}");
    assert_eq!((v["direct"].as_bool(), v["partBytes"].as_u64()), (Some(true), Some(PART as u64)), "{v}");
    v
}

pub fn presign(gw: &Gw, user: &str, upload: &str, numbers: &[i32]) -> (u16, Value) {
    post_json(gw, user, &format!("/v1/uploads/{upload}/parts"), json!({ "partNumbers": numbers }))
}

/// PUTs one part to its presigned URL: the status and the `ETag` answered.
pub fn put_part(url: &str, bytes: &[u8]) -> (u16, String) {
    match ureq::put(url).send_bytes(bytes) {
        Ok(r) => (r.status(), r.header("etag").unwrap_or("").to_owned()),
        Err(ureq::Error::Status(s, _)) => (s, String::new()),
        Err(e) => panic!("{e}"),
    }
}

/// Sends every part of `blob` (retrying a failed PUT with backoff, as the
/// browser does): the (number, ETag) list and the failed PUTs.
pub fn send_parts(gw: &Gw, user: &str, upload: &str, blob: &[u8]) -> (Vec<(i32, String)>, usize) {
    let chunks: Vec<&[u8]> = if blob.is_empty() { vec![blob] } else { blob.chunks(PART).collect() };
    let mut done = Vec::new();
    let mut failures = 0;
    for (batch, group) in chunks.chunks(16).enumerate() {
        let numbers: Vec<i32> = (0..group.len()).map(|i| (batch * 16 + i + 1) as i32).collect();
        let (s, urls) = presign(gw, user, upload, &numbers);
        assert_eq!(s, 200, "{urls}");
        for (i, part) in group.iter().enumerate() {
            let url = urls["parts"][i]["url"].as_str().unwrap();
            assert_eq!(urls["parts"][i]["partNumber"], numbers[i]);
            let mut wait = Duration::from_millis(50);
            loop {
                let (s, etag) = put_part(url, part);
                if s == 200 {
                    done.push((numbers[i], etag));
                    break;
                }
                failures += 1;
                assert!(failures < 5, "part {} keeps failing: {s}", numbers[i]);
                std::thread::sleep(wait);
                wait *= 2;
            }
        }
    }
    (done, failures)
}

pub fn complete(gw: &Gw, user: &str, upload: &str, parts: &[(i32, String)]) -> (u16, Value) {
    let parts: Vec<Value> = parts.iter().map(|(n, e)| json!({ "partNumber": n, "etag": e })).collect();
    post_json(gw, user, &format!("/v1/uploads/{upload}/complete"), json!({ "parts": parts }))
}

/// Seals `data` for the upload's issued object id and uploads it directly.
pub fn upload_direct(gw: &Gw, sealer: &Sealer, user: &str, data: &[u8]) -> (u16, Value, Vec<u8>) {
    let up = start_upload(gw, user);
    let blob = sealer.seal(user, up["objectId"].as_str().unwrap(), data);
    let id = up["uploadId"].as_str().unwrap();
    let (parts, _) = send_parts(gw, user, id, &blob);
    let (s, v) = complete(gw, user, id, &parts);
    (s, v, blob)
}

/// The blob through the gateway's redirect to a presigned URL.
pub fn download(gw: &Gw, user: &str, owner: &str, id: &str) -> Vec<u8> {
    let r = no_redirects().get(&format!("{}/v1/objects/{id}?owner={owner}", gw.url)).set("authorization", &token(user)).call().unwrap();
    assert_eq!(r.status(), 307);
    let location = r.header("location").unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature="), "a SigV4 presigned URL");
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut ureq::get(&location).call().unwrap().into_reader(), &mut out).unwrap();
    out
}

