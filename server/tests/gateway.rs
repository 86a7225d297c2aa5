//! The gateway over real HTTP on 127.0.0.1 with its embedded local KMS:
//! uploads and their checks, listing, sharing, deletion, the authorization
//! matrix of the backend Decrypt (owner, shared user, stranger, no token,
//! forged context, a data key from another object, a disabled key), the
//! audit log, a full decrypt through the gateway, and crash safety.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kms_envelope::{Client, DecryptOptions, EncryptionContext, KmsDecrypt, KmsDecryptRequest, KmsDecryptResponse, KmsRsaAlgorithm, KmsRsaKeyring};
use serde_json::{json, Value};
use sha2::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_kms-envelope");

struct Gw {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(args: &[&str]) -> String {
    let o = Command::new(BIN).args(args).env_remove("KMS_ENVELOPE_MASTER_KEY").output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

const TOKENS: [(&str, &str); 3] = [("alice", "token-alice-0123456789"), ("bob", "token-bob-0123456789"), ("carol", "token-carol-0123456789")];

fn token(user: &str) -> String {
    format!("Bearer {}", TOKENS.iter().find(|(u, _)| *u == user).unwrap().1)
}

fn setup(dir: &Path, max: u64) {
    cli(&["keys", "--data-dir", dir.join("data").to_str().unwrap(), "create", "--spec", "RSA_2048", "--alias", "files"]);
    let mut cfg = format!("listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nkey = \"alias/files\"\nmax_object_bytes = {max}\n");
    for (u, t) in TOKENS {
        cfg += &format!("[[users]]\nname = \"{u}\"\ntoken_sha256 = \"{}\"\n", hex_sha256(t.as_bytes()));
    }
    std::fs::write(dir.join("gateway.toml"), cfg).unwrap();
}

fn hex_sha256(b: &[u8]) -> String {
    sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn start(dir: &Path) -> Gw {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", dir.join("gateway.toml").to_str().unwrap()])
        .env_remove("KMS_ENVELOPE_MASTER_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().nth(3).unwrap_or_else(|| panic!("unexpected: {line:?}")).to_owned();
    Gw { child, url, dir: dir.to_owned() }
}

fn status(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    match r {
        Ok(r) => {
            let s = r.status();
            let mut body = String::new();
            r.into_reader().read_to_string(&mut body).unwrap();
            (s, serde_json::from_str(&body).unwrap_or(Value::Null))
        }
        Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("{e}"),
    }
}

impl Gw {
    fn upload(&self, user: Option<&str>, blob: &[u8]) -> (u16, Value) {
        let mut req = ureq::post(&format!("{}/v1/objects", self.url));
        if let Some(u) = user {
            req = req.set("authorization", &token(u));
        }
        status(req.send_bytes(blob))
    }

    fn get_json(&self, user: &str, path: &str) -> (u16, Value) {
        status(ureq::get(&format!("{}{path}", self.url)).set("authorization", &token(user)).call())
    }

    fn decrypt_key(&self, user: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = ureq::post(&format!("{}/v1/decrypt-data-key", self.url));
        if let Some(u) = user {
            req = req.set("authorization", &token(u));
        }
        status(req.send_json(body.clone()))
    }

    /// Encrypts `data` with the CLI to the gateway's public key.
    fn seal(&self, owner: &str, object: &str, file: &str, data: &[u8]) -> Vec<u8> {
        let (_, pk) = status(ureq::get(&format!("{}/v1/public-key", self.url)).call());
        let der = B64.decode(pk["publicKey"].as_str().unwrap()).unwrap();
        assert_eq!(pk["fingerprint"], hex_sha256(&der));
        let arn = pk["keyArn"].as_str().unwrap();
        let d = &self.dir;
        std::fs::write(d.join("pk.der"), der).unwrap();
        std::fs::write(d.join("plain"), data).unwrap();
        cli(&[
            "encrypt", "-i", d.join("plain").to_str().unwrap(), "-o", d.join("sealed").to_str().unwrap(),
            "--context", &format!("owner={owner}"), "--context", &format!("object={object}"), "--context", &format!("file={file}"),
            "--kms-rsa", &format!("arn={arn},public={}", d.join("pk.der").display()),
        ]);
        std::fs::read(d.join("sealed")).unwrap()
    }
}

/// The decrypt-data-key request a browser would send for `blob`.
fn request_for(blob: &[u8]) -> Value {
    let (h, _) = kms_envelope::parse_header(blob).unwrap();
    let edk = h.encrypted_data_keys.iter().find(|e| e.provider_id == "aws-kms-rsa").unwrap();
    json!({
        "keyId": String::from_utf8(edk.provider_info.clone()).unwrap(),
        "ciphertextBlob": B64.encode(&edk.ciphertext),
        "encryptionAlgorithm": "RSAES_OAEP_SHA_256",
        "encryptionContext": h.encryption_context,
    })
}

/// A `KmsDecrypt` that asks the gateway, as the browser module's `gatewayKmsDecrypt` does.
struct ViaGateway {
    url: String,
    user: &'static str,
}

#[async_trait::async_trait]
impl KmsDecrypt for ViaGateway {
    async fn decrypt(&self, req: KmsDecryptRequest) -> kms_envelope::Result<KmsDecryptResponse> {
        let body = json!({ "keyId": req.key_id, "ciphertextBlob": B64.encode(&req.ciphertext_blob),
                           "encryptionAlgorithm": req.encryption_algorithm.as_str(), "encryptionContext": req.encryption_context });
        let (s, v) = status(ureq::post(&format!("{}/v1/decrypt-data-key", self.url)).set("authorization", &token(self.user)).send_json(body));
        if s != 200 {
            return Err(kms_envelope::Error::new(kms_envelope::ErrorCode::KmsError, format!("{s} {v}")));
        }
        Ok(KmsDecryptResponse {
            key_id: v["keyId"].as_str().unwrap().to_owned(),
            plaintext: zeroize::Zeroizing::new(B64.decode(v["plaintext"].as_str().unwrap()).unwrap()),
        })
    }
}

#[test]
fn gateway_end_to_end_and_authorization_matrix() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 4 << 20);
    let gw = start(d.path());
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
    for (who, code) in [(Some("bob"), 403), (Some("carol"), 403), (None, 401)] {
        assert_eq!(gw.decrypt_key(who, &req1).0, code, "{who:?}");
        decisions += 1;
    }
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
        let r = ureq::get(&format!("{}/v1/objects/obj-1", gw.url)).set("authorization", &token("bob")).call().unwrap();
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

    // The audit log: one line per decision, and no key material.
    let audit = std::fs::read_to_string(dd.join("audit.log")).unwrap();
    let lines: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), decisions, "{audit}");
    assert_eq!(lines.iter().filter(|l| l["decision"] == "allow").count(), 3);
    assert!(lines.iter().all(|l| l["time"].is_string() && l["reason"].is_string()));
    assert!(!audit.contains(&secret_b64) && !audit.contains(&secret_b64[64..]), "key material in the audit log");

    // Deletion: only the owner; the blob goes too.
    let del = |who: &str| status(ureq::delete(&format!("{}/v1/objects/obj-2", gw.url)).set("authorization", &token(who)).call()).0;
    assert_eq!(del("bob"), 404);
    assert_eq!(del("alice"), 204);
    assert_eq!(gw.get_json("alice", "/v1/objects/obj-2").0, 404);
    assert!(!dd.join("objects/obj-2.esdk").exists());
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
