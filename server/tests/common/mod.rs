//! Helpers of the gateway tests: a gateway process on 127.0.0.1 with its
//! embedded local KMS, users alice, bob and carol, and HTTP helpers.
#![allow(dead_code)]

pub mod s3;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kms_envelope::{Client, EncryptOptions, KmsDecrypt, KmsDecryptRequest, KmsDecryptResponse, KmsRsaAlgorithm, KmsRsaKeyring};
use serde_json::{json, Value};
use sha2::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_kms-envelope");

pub struct Gw {
    pub child: Child,
    pub url: String,
    /// The KMS the gateway uses, as its banner names it.
    pub kms: String,
    pub dir: PathBuf,
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn cli(args: &[&str]) -> String {
    let o = Command::new(BIN).args(args).env_remove("KMS_ENVELOPE_MASTER_KEY").output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

pub const TOKENS: [(&str, &str); 3] = [("alice", "token-alice-0123456789"), ("bob", "token-bob-0123456789"), ("carol", "token-carol-0123456789")];

pub fn token(user: &str) -> String {
    format!("Bearer {}", TOKENS.iter().find(|(u, _)| *u == user).unwrap().1)
}

pub fn setup(dir: &Path, max: u64) {
    setup_with(dir, max, "");
}

/// A key in a fresh local KMS and a gateway configuration with `extra` lines.
pub fn setup_with(dir: &Path, max: u64, extra: &str) {
    cli(&["keys", "--data-dir", dir.join("data").to_str().unwrap(), "create", "--spec", "RSA_2048", "--alias", "files"]);
    let mut cfg = format!("listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nkey = \"alias/files\"\nmax_object_bytes = {max}\n{}{extra}\n", if extra.contains("database_url") { String::new() } else { database_lines() });
    for (u, t) in TOKENS {
        cfg += &format!("[[users]]\nname = \"{u}\"\ntoken_sha256 = \"{}\"\n", hex_sha256(t.as_bytes()));
    }
    std::fs::write(dir.join("gateway.toml"), cfg).unwrap();
}

/// Whether the gateways of this run keep metadata in PostgreSQL
/// (`KMS_ENVELOPE_TEST_POSTGRES=1`: every gateway a test configures gets a
/// database of its own on one scratch server) rather than SQLite.
pub fn on_postgres() -> bool {
    std::env::var("KMS_ENVELOPE_TEST_POSTGRES").is_ok_and(|v| v == "1")
}

/// The scratch PostgreSQL server of this test binary (tests/interop/pg_scratch.py),
/// stopped when the binary exits (its stdin closes).
pub struct PgScratch {
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    _child: Child,
    pub ca: String,
    next: usize,
}

impl PgScratch {
    fn command(&mut self, cmd: &str, answer: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with(answer), "pg_scratch.py {cmd}: {line:?}");
        line.trim().to_owned()
    }

    /// A new, empty database: its URL.
    pub fn database(&mut self) -> String {
        self.next += 1;
        let name = format!("gw_{}_{}", std::process::id(), self.next);
        self.command(&format!("db {name}"), "db ").split_whitespace().nth(1).unwrap().to_owned()
    }

    pub fn stop(&mut self) {
        self.command("stop", "stopped");
    }

    pub fn start(&mut self) {
        self.command("start", "started");
    }
}

impl PgScratch {
    /// A server of its own (a test that stops and starts it).
    pub fn spawn() -> PgScratch {
        let mut child = Command::new("python3")
            .arg(root().join("tests/interop/pg_scratch.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"ready"), "pg_scratch.py: {line:?}");
        let ca = words[2].to_owned();
        PgScratch { stdin: child.stdin.take().unwrap(), stdout, _child: child, ca, next: 0 }
    }

    /// Configuration lines for a fresh database of this server, over TLS.
    pub fn config_lines(&mut self) -> String {
        let url = self.database();
        format!("database_url = \"{url}\"\ndatabase_ca = \"{}\"\n", self.ca)
    }
}

/// The server this test binary's gateways share.
pub fn pg() -> std::sync::MutexGuard<'static, PgScratch> {
    static PG: std::sync::OnceLock<std::sync::Mutex<PgScratch>> = std::sync::OnceLock::new();
    PG.get_or_init(|| std::sync::Mutex::new(PgScratch::spawn())).lock().unwrap_or_else(|p| p.into_inner())
}

/// Configuration lines for the metadata database of a new gateway: none
/// (SQLite), or a fresh PostgreSQL database reached over TLS.
pub fn database_lines() -> String {
    if !on_postgres() {
        return String::new();
    }
    pg().config_lines()
}

pub fn hex_sha256(b: &[u8]) -> String {
    sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

pub fn start(dir: &Path) -> Gw {
    start_with(dir, &[])
}

/// Starts `serve` with extra arguments; reads the URL it prints.
pub fn start_with(dir: &Path, args: &[&str]) -> Gw {
    spawn_gateway(dir, args, &[], "warn", Stdio::null())
}

/// Starts `serve` with environment variables set (e.g. the credentials of
/// a `local-kms` it is configured to use).
pub fn start_env(dir: &Path, env: &[(&str, &Path)]) -> Gw {
    spawn_gateway(dir, &[], env, "warn", Stdio::null())
}

/// Starts `serve` logging at debug level (its own crates, the AWS SDK and
/// the HTTP stack) to `dir/gateway.log`, for scanning.
pub fn start_logged(dir: &Path) -> Gw {
    let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
    spawn_gateway(dir, &[], &[], "debug", Stdio::from(log))
}

fn spawn_gateway(dir: &Path, args: &[&str], env: &[(&str, &Path)], level: &str, stderr: Stdio) -> Gw {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", dir.join("gateway.toml").to_str().unwrap()])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .env_remove("KMS_ENVELOPE_MASTER_KEY")
        .env("RUST_LOG", level)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    // Keep what else it prints (audit lines with `audit_stdout`) in dir/gateway.stdout.
    let mut rest = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("gateway.stdout")).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut rest));
    let url = line.split_whitespace().nth(3).unwrap_or_else(|| panic!("unexpected: {line:?}")).to_owned();
    let kms = line.rsplit("KMS ").next().unwrap_or("").trim().trim_end_matches(')').to_owned();
    Gw { child, url, kms, dir: dir.to_owned() }
}

/// The audit records of the gateway configured in `dir`, as
/// `kms-envelope audit --json` prints them (one JSON line each).
pub fn audit_text(dir: &Path) -> String {
    cli(&["audit", "--config", dir.join("gateway.toml").to_str().unwrap(), "--json"])
}

pub fn audit_records(dir: &Path) -> Vec<Value> {
    audit_text(dir).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The JSON lines a gateway started in `dir` printed on stdout.
pub fn stdout_records(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("gateway.stdout")).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

pub fn status(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
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
    pub fn upload(&self, user: Option<&str>, blob: &[u8]) -> (u16, Value) {
        let mut req = ureq::post(&format!("{}/v1/objects", self.url));
        if let Some(u) = user {
            req = req.set("authorization", &token(u));
        }
        status(req.send_bytes(blob))
    }

    pub fn get_json(&self, user: &str, path: &str) -> (u16, Value) {
        status(ureq::get(&format!("{}{path}", self.url)).set("authorization", &token(user)).call())
    }

    pub fn decrypt_key(&self, user: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = ureq::post(&format!("{}/v1/decrypt-data-key", self.url));
        if let Some(u) = user {
            req = req.set("authorization", &token(u));
        }
        status(req.send_json(body.clone()))
    }

    /// Encrypts `data` with the CLI to the gateway's public key.
    pub fn seal(&self, owner: &str, object: &str, file: &str, data: &[u8]) -> Vec<u8> {
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

/// `GET /readyz`: status, body, Retry-After.
pub fn readyz(url: &str) -> (u16, Value, Option<String>) {
    match ureq::get(&format!("{url}/readyz")).call() {
        Ok(r) => (r.status(), r.into_json().unwrap(), None),
        Err(ureq::Error::Status(s, r)) => {
            let retry = r.header("retry-after").map(str::to_owned);
            (s, r.into_json().unwrap(), retry)
        }
        Err(e) => panic!("{e}"),
    }
}

/// Polls `/readyz` (past the gateway's one-second reuse of a result) until it answers `want`.
pub fn readyz_becomes(url: &str, want: u16) -> Value {
    let mut last = Value::Null;
    for _ in 0..40 {
        let (s, v, _) = readyz(url);
        if s == want {
            return v;
        }
        last = v;
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("/readyz never answered {want}: {last}");
}

/// Sends `signal` (TERM, INT, …) to the process.
pub fn signal(child: &Child, signal: &str) {
    let ok = Command::new("sh").args(["-c", &format!("kill -{signal} {}", child.id())]).status().unwrap().success();
    assert!(ok, "kill -{signal}");
}

/// The decrypt-data-key request a browser would send for `blob`.
pub fn request_for(blob: &[u8]) -> Value {
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
pub struct ViaGateway {
    pub url: String,
    pub user: &'static str,
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


/// Seals objects with the library (no CLI process per object).
pub struct Sealer {
    pub keyring: KmsRsaKeyring,
}

impl Sealer {
    pub fn new(gw: &Gw) -> Sealer {
        let (_, pk) = status(ureq::get(&format!("{}/v1/public-key", gw.url)).call());
        let der = B64.decode(pk["publicKey"].as_str().unwrap()).unwrap();
        let keyring = KmsRsaKeyring::new(pk["keyArn"].as_str().unwrap(), Some(&der), KmsRsaAlgorithm::RsaesOaepSha256).unwrap();
        Sealer { keyring }
    }

    pub fn seal(&self, owner: &str, object: &str, data: &[u8]) -> Vec<u8> {
        self.seal_with(owner, object, &[], data)
    }

    /// `seal` with more encryption context.
    pub fn seal_with(&self, owner: &str, object: &str, extra: &[(&str, &str)], data: &[u8]) -> Vec<u8> {
        let mut o = EncryptOptions::default();
        o.encryption_context.insert("owner".into(), owner.into());
        o.encryption_context.insert("object".into(), object.into());
        o.encryption_context.insert("file".into(), format!("{object}.bin"));
        for (k, v) in extra {
            o.encryption_context.insert((*k).into(), (*v).into());
        }
        block_on(Client::new().encrypt(&self.keyring, data, &o)).unwrap()
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}

/// Raw HTTP/1.1: writes `head` and `body`, returns the status code and body.
pub fn raw(url: &str, head: &str, body: &[u8]) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.replace("{addr}", addr).as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

/// A helper process that prints a line starting with `ready` (or the local
/// KMS's `local KMS listening on`); it ends when dropped (stdin closes).
pub struct Helper {
    pub child: Child,
    _stdin: Option<ChildStdin>,
    pub words: Vec<String>,
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(mut cmd: Command) -> Helper {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("helper starts");
    let stdin = child.stdin.take();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the helper exited before it was ready");
        if line.starts_with("ready") || line.starts_with("local KMS listening") {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Helper { child, _stdin: stdin, words: line.split_whitespace().map(str::to_owned).collect() }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn python(script: &str) -> Command {
    let mut c = Command::new(root().join(".venv/bin/python"));
    c.arg(root().join("tests/interop").join(script));
    c
}
