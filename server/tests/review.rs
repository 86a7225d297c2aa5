//! The findings of the security review of `serve`, each tried again as the
//! attacker tried it, over real sockets on 127.0.0.1 (bounded in count and
//! time): another local account against the data directory and the
//! server's sockets; memory and CPU spent before authentication; upload and
//! connection caps; idle and HTTP/2 connections; throttled credentials;
//! bounded audit lines; the decrypt-side limits at upload; ids per owner;
//! revocation; the JSON shape of the HTTP stack's refusals; the configured
//! origin; logout; duplicate tokens; trusted proxies.
//!
//! The local KMS's own port (`kms-envelope local-kms`) is in `localkms.rs`.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

// ---- the process under test ------------------------------------------------

fn proc_status(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Peak resident memory so far, in bytes.
fn peak_rss(pid: u32) -> u64 {
    proc_status(pid, "VmHWM:") * 1024
}

/// CPU time (user + system) the process has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let hz: f64 = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output().unwrap().stdout).unwrap().trim().parse().unwrap();
    ticks as f64 / hz
}

fn addr(gw: &Gw) -> String {
    gw.url.trim_start_matches("http://").to_owned()
}

fn metrics(gw: &Gw) -> String {
    ureq::get(&format!("{}/v1/metrics", gw.url)).call().unwrap().into_string().unwrap()
}

fn metric(gw: &Gw, name: &str) -> u64 {
    let m = metrics(gw);
    let line = m.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {m}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Sends `head` (and `body`) on a new connection; (status, whole answer).
fn exchange(gw: &Gw, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr(gw)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(head.replace("{addr}", &addr(gw)).as_bytes());
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    (text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), text)
}

fn json_body(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

// ---- 1, 2: another local account ------------------------------------------

const INTRUDER: &str = "kmsenv-intruder";

/// A second OS account (created once; the tests run as root).
fn intruder() -> (u32, u32) {
    let id = |flag: &str| Command::new("id").args([flag, INTRUDER]).output().unwrap();
    if !id("-u").status.success() {
        let o = Command::new("useradd").args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", INTRUDER]).output().unwrap();
        assert!(o.status.success() || id("-u").status.success(), "useradd: {}", String::from_utf8_lossy(&o.stderr));
    }
    let n = |flag: &str| String::from_utf8(id(flag).stdout).unwrap().trim().parse().unwrap();
    (n("-u"), n("-g"))
}

/// Runs `cmd` as the intruder; whether it succeeded.
fn as_intruder(cmd: &[&str]) -> bool {
    let (uid, gid) = intruder();
    let o = Command::new("setpriv")
        .args([&format!("--reuid={uid}"), &format!("--regid={gid}"), "--clear-groups", "--"])
        .args(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    o.success()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        out.push(p.clone());
        if e.file_type().unwrap().is_dir() {
            walk(&p, out);
        }
    }
}

/// The inodes of the sockets a process holds.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
        .collect()
}

/// Ports the process listens on (TCP, v4 and v6), and how many Unix sockets it holds.
fn listening(pid: u32) -> (Vec<u16>, usize) {
    let mine = socket_inodes(pid);
    let mut ports = vec![];
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = f[9].parse().unwrap();
            if f[3] == "0A" && mine.contains(&inode) {
                ports.push(u16::from_str_radix(f[1].rsplit(':').next().unwrap(), 16).unwrap());
            }
        }
    }
    let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    // Unix sockets with a name another process could connect to (unnamed
    // socket pairs, such as the signal handler's, cannot be reached).
    let unix = unix
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 7 && f[6].parse().is_ok_and(|i: u64| mine.contains(&i)))
        .count();
    (ports, unix)
}

#[test]
fn another_account_reads_no_file_and_gets_no_key() {
    // A root the other account can enter, so that only the gateway's own
    // modes stand between it and the data.
    let root = tempfile::Builder::new().prefix("kms-envelope-review").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    setup(root.path(), 8 << 20);
    let data = root.path().join("data");
    // What an older version left: a world-readable directory and log.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("audit.log"), "").unwrap();
    std::fs::set_permissions(data.join("audit.log"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let control = root.path().join("control.txt");
    std::fs::write(&control, "readable").unwrap();
    std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(as_intruder(&["cat", control.to_str().unwrap()]), "the other account cannot even read a 0644 file: the test proves nothing");

    // The most permissive umask: modes must not depend on it.
    let gw = start_with_umask(root.path(), "000");
    let sealer = Sealer::new(&gw);
    let blob = sealer.seal("alice", "secret-1", b"the plaintext nobody else may read");
    assert_eq!(gw.upload(Some("alice"), &blob).0, 201);
    let pending = sealer.seal("alice", "secret-2", &[9u8; 5000]);
    // An upload in progress has its temporary file.
    let (s, _, v) = send(&gw, "POST", "/v1/uploads", Some("alice"), None);
    assert_eq!(s, 201, "{v}");
    let id = v["uploadId"].as_str().unwrap();
    assert_eq!(send(&gw, "PUT", &format!("/v1/uploads/{id}?offset=0"), Some("alice"), Some(&pending[..1000])).0, 200);

    let mut paths = vec![data.clone()];
    walk(&data, &mut paths);
    let names: Vec<String> = paths.iter().map(|p| p.strip_prefix(&data).unwrap().display().to_string()).collect();
    let sqlite = if on_postgres() { &[][..] } else { &["gateway.sqlite3", "gateway.sqlite3-wal"][..] };
    for want in sqlite.iter().chain(&["audit.log", "master.key", "kms/keys", "objects/alice/secret-1.esdk", "objects/incoming"]) {
        assert!(names.iter().any(|n| n == want), "{want} not among {names:?}");
    }
    assert_eq!(names.iter().any(|n| n == "gateway.sqlite3"), !on_postgres(), "metadata in SQLite only without database_url");
    assert!(std::fs::read_dir(data.join("objects/incoming")).unwrap().count() == 1);
    for p in &paths {
        let meta = std::fs::symlink_metadata(p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", p.display());
        assert!(!as_intruder(&["cat", p.to_str().unwrap()]), "the other account reads {}", p.display());
    }
    assert!(!as_intruder(&["ls", data.to_str().unwrap()]));

    // Sockets: the API port is the only one; the embedded KMS has none.
    let pid = gw.child.id();
    let port: u16 = gw.url.rsplit(':').next().unwrap().parse().unwrap();
    let (ports, unix) = listening(pid);
    assert_eq!((ports, unix), (vec![port], 0), "the gateway's listening sockets");
    assert!(gw.kms.contains("in process"), "{}", gw.kms);
    // The API port is no KMS: TrentService.Decrypt there gets no key.
    let req = request_for(&blob);
    let body = json!({ "KeyId": req["keyId"], "CiphertextBlob": req["ciphertextBlob"], "EncryptionAlgorithm": "RSAES_OAEP_SHA_256" }).to_string();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {{addr}}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: TrentService.Decrypt\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (code, text) = exchange(&gw, &head, body.as_bytes());
    assert!(code == 404 || code == 405, "{text}");
    assert!(!text.contains("Plaintext"), "{text}");
    // And the data-key route wants a credential the other account cannot read.
    let (code, _) = exchange(&gw, &format!("POST /v1/decrypt-data-key HTTP/1.1\r\nHost: {{addr}}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", req.to_string().len()), req.to_string().as_bytes());
    assert_eq!(code, 401);
}

/// `serve` started through a shell with `umask` set.
fn start_with_umask(dir: &Path, umask: &str) -> Gw {
    let bin = env!("CARGO_BIN_EXE_kms-envelope");
    let mut child = Command::new("sh")
        .args(["-c", &format!("umask {umask} && exec \"$0\" serve --config \"$1\""), bin, dir.join("gateway.toml").to_str().unwrap()])
        .env_remove("KMS_ENVELOPE_MASTER_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let url = line.split_whitespace().nth(3).unwrap_or_else(|| panic!("unexpected: {line:?}")).to_owned();
    let kms = line.rsplit("KMS ").next().unwrap_or("").trim().trim_end_matches(')').to_owned();
    Gw { child, url, kms, dir: dir.to_owned() }
}

/// A request through ureq as `user` (bearer token): (status, headers we
/// look at, JSON body).
fn send(gw: &Gw, method: &str, path: &str, user: Option<&str>, body: Option<&[u8]>) -> (u16, Option<String>, Value) {
    let mut req = ureq::request(method, &format!("{}{path}", gw.url));
    if let Some(u) = user {
        req = req.set("authorization", &token(u));
    }
    let r = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let r = match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let s = r.status();
    let retry = r.header("retry-after").map(str::to_owned);
    let text = r.into_string().unwrap_or_default();
    (s, retry, serde_json::from_str(&text).unwrap_or(Value::Null))
}

// ---- 3: memory before authentication ----------------------------------------

/// Sends the head of a 16 MiB request, then as much of the body as the
/// server takes; its status.
fn big_request(addr: String, head: String) -> u16 {
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(head.as_bytes());
    let chunk = vec![0x42u8; 1 << 20];
    for _ in 0..16 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn request_bodies_cost_no_memory_before_authentication() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 64 << 20);
    let gw = start(d.path());
    let pid = gw.child.id();
    // A real upload in progress, whose id an attacker might have seen.
    let (_, _, v) = send(&gw, "POST", "/v1/uploads", Some("alice"), None);
    let id = v["uploadId"].as_str().unwrap().to_owned();
    assert_eq!(metric(&gw, "kms_envelope_refusals_total{reason=\"unauthenticated\"}"), 0);
    let before = peak_rss(pid);
    let threads: Vec<_> = (0..40)
        .map(|i| {
            let a = addr(&gw);
            let auth = if i % 2 == 0 { "Authorization: Bearer not-a-token\r\n" } else { "" };
            let head = format!("PUT /v1/uploads/{id}?offset=0 HTTP/1.1\r\nHost: {a}\r\n{auth}Content-Length: {}\r\n\r\n", 16 << 20);
            std::thread::spawn(move || big_request(a, head))
        })
        .collect();
    let codes: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let grew = peak_rss(pid).saturating_sub(before);
    // The answer may be lost to the reset of a connection whose body was
    // never read (0); it is never a success.
    assert!(codes.iter().all(|c| [0, 401, 429].contains(c)), "{codes:?}");
    assert!(grew < 64 << 20, "40 unauthenticated 16 MiB PUTs raised the peak RSS by {} MiB", grew >> 20);
    let refused = metric(&gw, "kms_envelope_refusals_total{reason=\"unauthenticated\"}") + metric(&gw, "kms_envelope_refusals_total{reason=\"auth_throttled\"}");
    assert_eq!(refused, 40, "every one refused at authentication");

    // An authenticated 16 MiB part goes to disk as it arrives.
    let sealer = Sealer::new(&gw);
    let big = sealer.seal("alice", "big-part", &vec![7u8; 16 << 20]);
    let part = &big[..16 << 20];
    let before = peak_rss(pid);
    let (s, _, v) = send(&gw, "PUT", &format!("/v1/uploads/{id}?offset=0"), Some("alice"), Some(part));
    assert_eq!((s, v["received"].as_u64()), (200, Some(16 << 20)), "{v}");
    let grew = peak_rss(pid).saturating_sub(before);
    assert!(grew < 8 << 20, "a 16 MiB part raised the peak RSS by {} MiB", grew >> 20);
    let (s, _, _) = send(&gw, "PUT", &format!("/v1/uploads/{id}?offset={}", 16 << 20), Some("alice"), Some(&big[16 << 20..]));
    assert_eq!(s, 200);
    let (s, _, v) = send(&gw, "POST", &format!("/v1/uploads/{id}/complete"), Some("alice"), None);
    assert_eq!((s, v["size"].as_u64()), (201, Some(big.len() as u64)), "{v}");
}

// ---- 4: header parsing in linear time ---------------------------------------

/// Streams `blob` as a chunked upload, its first `header_len` bytes in
/// chunks of `chunk` bytes; (answer, server CPU seconds spent).
fn drip(gw: &Gw, blob: &[u8], header_len: usize, chunk: usize) -> (String, f64) {
    let pid = gw.child.id();
    let mut s = TcpStream::connect(addr(gw)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "POST /v1/objects HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", addr(gw), token("alice")).unwrap();
    let cpu_before = cpu_seconds(pid);
    // Batches of chunks that arrive apart.
    let mut framed = Vec::new();
    for (i, piece) in blob[..header_len].chunks(chunk).enumerate() {
        write!(framed, "{:x}\r\n", piece.len()).unwrap();
        framed.extend_from_slice(piece);
        framed.extend_from_slice(b"\r\n");
        if i % 4096 == 4095 {
            let _ = s.write_all(&framed);
            framed.clear();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let rest = &blob[header_len..];
    write!(framed, "{:x}\r\n", rest.len()).unwrap();
    framed.extend_from_slice(rest);
    framed.extend_from_slice(b"\r\n0\r\n\r\n");
    let _ = s.write_all(&framed);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).into_owned(), cpu_seconds(pid) - cpu_before)
}

#[test]
fn a_64_kib_context_fed_a_byte_at_a_time_costs_little_cpu() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 8 << 20);
    let gw = start(d.path());
    let sealer = Sealer::new(&gw);
    let filler = "x".repeat(64_000);
    let blob = sealer.seal_with("alice", "drip", &[("padding", &filler)], b"after a long header");
    let (h, header_len) = kms_envelope::parse_header(&blob).unwrap();
    assert!(h.encryption_context["padding"].len() == 64_000 && header_len > 64_000);

    // One byte a chunk: refused once the chunks are clearly pathological,
    // having cost little (the rest is not read: the answer may be lost to
    // the connection's reset).
    let (answer, cpu) = drip(&gw, &blob, header_len, 1);
    assert!(answer.is_empty() || json_body(&answer)["error"] == "TOO_FRAGMENTED", "{answer}");
    assert!(cpu < 0.2, "{header_len} header bytes, one chunk each, cost {cpu:.3} s of server CPU");
    eprintln!("server CPU: 1-byte chunks {cpu:.3} s");
    assert_eq!(gw.get_json("alice", "/v1/objects").1["objects"], json!([]));

    // 64 bytes a chunk (1008 chunks of header): accepted, and the header's
    // checks (parsed at 64, 128, … bytes, not at every chunk) cost little.
    let (answer, cpu) = drip(&gw, &blob, header_len, 64);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(cpu < 0.2, "{header_len} header bytes in 64-byte chunks cost {cpu:.3} s of server CPU");
    let r = ureq::get(&format!("{}/v1/objects/drip", gw.url)).set("authorization", &token("alice")).call().unwrap();
    let mut got = Vec::new();
    r.into_reader().read_to_end(&mut got).unwrap();
    assert_eq!(got, blob, "the object is whole");
    eprintln!("server CPU: 64-byte chunks {cpu:.3} s");
}

// ---- 5: upload caps ---------------------------------------------------------

/// Starts a streamed upload of `len` bytes and sends none of them yet.
fn held_upload(gw: &Gw, user: &str, len: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr(gw)).unwrap();
    write!(s, "POST /v1/objects HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Length: {len}\r\n\r\n", addr(gw), token(user)).unwrap();
    s
}

/// The status of an answer already sent, if any (without waiting long).
fn answered(s: &mut TcpStream) -> Option<(u16, String)> {
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buf = vec![0u8; 4096];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            Some((text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), text))
        }
        _ => None,
    }
}

#[test]
fn uploads_in_progress_are_capped_per_user_and_in_all() {
    let d = tempfile::tempdir().unwrap();
    setup_with(d.path(), 8 << 20, "max_uploads_per_user = 8\nmax_uploads = 12\nupload_stall_seconds = 20");
    let gw = start(d.path());
    let sealer = Sealer::new(&gw);

    // 150 streamed uploads from alice at once: 8 proceed, the rest get 429.
    let mut alice: Vec<TcpStream> = (0..150).map(|_| held_upload(&gw, "alice", 200_000)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let answers: Vec<Option<(u16, String)>> = alice.iter_mut().map(answered).collect();
    let refused: Vec<&String> = answers.iter().flatten().filter(|(c, _)| *c == 429).map(|(_, t)| t).collect();
    assert_eq!(answers.iter().filter(|a| a.is_none()).count(), 8, "uploads left running");
    assert_eq!(refused.len(), 142);
    assert!(refused.iter().all(|t| t.to_ascii_lowercase().contains("retry-after: ") && t.contains("TOO_MANY_UPLOADS")), "{}", refused[0]);
    // The chunked path counts against the same cap.
    let (s, retry, v) = send(&gw, "POST", "/v1/uploads", Some("alice"), None);
    assert_eq!((s, v["error"].as_str()), (429, Some("TOO_MANY_UPLOADS")), "{v}");
    assert!(retry.is_some());

    // bob has his own 8, but only 4 are left of the 12 for everyone.
    let mut bob: Vec<TcpStream> = (0..6).map(|_| held_upload(&gw, "bob", 200_000)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let answers: Vec<Option<(u16, String)>> = bob.iter_mut().map(answered).collect();
    assert_eq!(answers.iter().filter(|a| a.is_none()).count(), 4);
    assert_eq!(answers.iter().flatten().filter(|(c, _)| *c == 429).count(), 2);

    // Uploads that end give their slots back.
    drop(alice);
    drop(bob);
    std::thread::sleep(Duration::from_millis(500));
    let fresh = sealer.seal("alice", "after", b"a slot again");
    assert_eq!(gw.upload(Some("alice"), &fresh).0, 201);
    assert_eq!(std::fs::read_dir(d.path().join("data/objects/incoming")).unwrap().count(), 0);
}

// ---- 6: idle and HTTP/2 connections -----------------------------------------

/// Reads until the server closes the connection; how long that took.
fn closed_after(mut s: TcpStream, limit: Duration) -> Duration {
    let t = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return t.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => return Duration::MAX,
            Err(_) => return t.elapsed(),
        }
    }
}

#[test]
fn idle_and_unfinished_connections_are_closed_and_capped() {
    let d = tempfile::tempdir().unwrap();
    setup_with(d.path(), 1 << 20, "idle_timeout_seconds = 2\nheader_timeout_seconds = 2\nmax_connections = 20");
    let gw = start(d.path());
    let limit = Duration::from_secs(10);
    let within = |took: Duration, what: &str| assert!(took <= Duration::from_millis(3500), "{what}: open after {took:?}");
    let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // Nothing sent at all.
    within(closed_after(TcpStream::connect(addr(&gw)).unwrap(), limit), "a silent connection");
    // The HTTP/2 preface only.
    let mut s = TcpStream::connect(addr(&gw)).unwrap();
    s.write_all(preface).unwrap();
    within(closed_after(s, limit), "an h2c preface");
    // The preface, SETTINGS, and a HEADERS frame cut short.
    let mut s = TcpStream::connect(addr(&gw)).unwrap();
    s.write_all(preface).unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap(); // empty SETTINGS
    s.write_all(&[0, 0, 100, 1, 4, 0, 0, 0, 1, 0x82, 0x86]).unwrap(); // HEADERS of 100 bytes, 2 sent
    within(closed_after(s, limit), "an unfinished HEADERS frame");
    // HTTP/1.1 keep-alive after an answer, then silence.
    let mut s = TcpStream::connect(addr(&gw)).unwrap();
    write!(s, "GET /v1/public-key HTTP/1.1\r\nHost: {}\r\n\r\n", addr(&gw)).unwrap();
    within(closed_after(s, limit), "an idle keep-alive connection");

    // At most 20 connections: the others are closed at once, and service
    // returns when they go.
    let held: Vec<TcpStream> = (0..25).map(|_| TcpStream::connect(addr(&gw)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let closed = held
        .into_iter()
        .filter(|s| {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 1];
            matches!((&*s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .collect::<Vec<_>>();
    assert_eq!(closed.len(), 20, "connections kept open");
    drop(closed);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status(ureq::get(&format!("{}/v1/public-key", gw.url)).call()).0, 200);
}

// ---- 7: throttled authentication --------------------------------------------

fn login(gw: &Gw, user: &str, token: &str, client: &str) -> (u16, Option<String>) {
    let r = ureq::post(&format!("{}/v1/login", gw.url)).set("x-forwarded-for", client).send_json(json!({ "user": user, "token": token }));
    match r {
        Ok(r) => (r.status(), None),
        Err(ureq::Error::Status(s, r)) => (s, r.header("retry-after").map(str::to_owned)),
        Err(e) => panic!("{e}"),
    }
}

fn bearer(gw: &Gw, token: &str, client: &str) -> u16 {
    let r = ureq::get(&format!("{}/v1/objects", gw.url)).set("authorization", &format!("Bearer {token}")).set("x-forwarded-for", client).call();
    match r {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(s, _)) => s,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn failed_authentication_is_throttled_per_user_and_address() {
    let d = tempfile::tempdir().unwrap();
    // Client addresses come from a trusted proxy (this test), so that
    // clients can stand at different addresses.
    setup_with(d.path(), 1 << 20, "auth_failure_burst = 3\nauth_failures_per_minute = 6\ntrusted_proxies = [\"127.0.0.1\"]");
    let gw = start(d.path());
    let (attacker, victim) = ("203.0.113.66", "198.51.100.7");
    let alice = TOKENS[0].1;
    // Successes are never counted.
    for _ in 0..10 {
        assert_eq!(login(&gw, "alice", alice, attacker).0, 200);
        assert_eq!(bearer(&gw, alice, attacker), 200);
    }
    // Wrong bearer tokens: 3 answered, then throttled with Retry-After.
    for _ in 0..3 {
        assert_eq!(bearer(&gw, "guess", attacker), 401);
    }
    assert_eq!(bearer(&gw, "guess", attacker), 429);
    assert_eq!(bearer(&gw, "guess", victim), 401, "another address has its own budget");
    assert_eq!(bearer(&gw, alice, attacker), 200, "a valid token is never refused");
    // Wrong sign-ins for alice: throttled for (alice, that address) only.
    for _ in 0..3 {
        assert_eq!(login(&gw, "alice", "guess", attacker).0, 401);
    }
    let (s, retry) = login(&gw, "alice", "guess", attacker);
    assert_eq!(s, 429);
    let wait: u64 = retry.unwrap().parse().unwrap();
    assert!((1..=10).contains(&wait), "Retry-After {wait}");
    assert_eq!(login(&gw, "alice", alice, attacker).0, 429, "no guessing while throttled, not even a right one");
    assert_eq!(login(&gw, "alice", alice, victim).0, 200, "alice elsewhere signs in");
    assert_eq!(login(&gw, "bob", TOKENS[1].1, attacker).0, 200, "bob at the same address signs in");
    assert!(metric(&gw, "kms_envelope_refusals_total{reason=\"auth_throttled\"}") >= 3);
    // The lock ends by itself: one failure's worth refills in 10 s.
    std::thread::sleep(Duration::from_secs(wait));
    assert_eq!(login(&gw, "alice", alice, attacker).0, 200);
}

// ---- 8: bounded audit lines, refusals counted ---------------------------------

#[test]
fn audit_lines_are_bounded_and_refusals_without_identity_are_counted() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 1 << 20);
    let gw = start(d.path());
    let sealer = Sealer::new(&gw);
    let blob = sealer.seal("alice", "a-1", b"audited");
    assert_eq!(gw.upload(Some("alice"), &blob).0, 201);
    let req = request_for(&blob);
    for _ in 0..200 {
        assert_eq!(gw.decrypt_key(None, &req).0, 401);
    }
    assert_eq!(audit_text(d.path()), "", "unauthenticated requests wrote audit records");
    assert_eq!(metric(&gw, "kms_envelope_refusals_total{reason=\"unauthenticated\"}"), 200);

    // A 60 KB keyId from a signed-in user: one bounded line, a bounded echo.
    let mut huge = req.clone();
    huge["keyId"] = json!(format!("arn:aws:kms:us-east-1:111122223333:key/{}", "k".repeat(60_000)));
    let (s, v) = gw.decrypt_key(Some("alice"), &huge);
    assert_eq!(s, 403, "{v}");
    assert!(v.to_string().len() < 1024, "the error echoes {} bytes", v.to_string().len());
    let text = audit_text(d.path());
    assert_eq!(text.lines().count(), 1);
    assert!(text.len() < 2048, "an audit line of {} bytes", text.len());
    let line: Value = serde_json::from_str(text.trim()).unwrap();
    assert!(line["keyArn"].as_str().unwrap().ends_with(" bytes]"), "{line}");
}

// ---- 9: upload limits, ids per owner ----------------------------------------

/// `blob` with its header's one data key followed by `extra` tiny ones
/// (the count field rewritten): what a hostile uploader can send.
fn with_extra_keys(blob: &[u8], extra: u16) -> Vec<u8> {
    // SPEC data-format/message-header.md (v2): version, suite id, message
    // id (32), AAD length and AAD, then the EDK count and the EDKs.
    let aad_len = u16::from_be_bytes([blob[35], blob[36]]) as usize;
    let count_at = 37 + aad_len;
    assert_eq!(u16::from_be_bytes([blob[count_at], blob[count_at + 1]]), 1);
    let mut out = blob[..count_at].to_vec();
    out.extend_from_slice(&(1 + extra).to_be_bytes());
    let mut at = count_at + 2;
    for _ in 0..3 {
        let n = u16::from_be_bytes([blob[at], blob[at + 1]]) as usize;
        at += 2 + n;
    }
    out.extend_from_slice(&blob[count_at + 2..at]);
    for _ in 0..extra {
        out.extend_from_slice(&[0, 1, b'x', 0, 1, b'y', 0, 1, b'z']);
    }
    out.extend_from_slice(&blob[at..]);
    out
}

#[test]
fn uploads_meet_the_decrypt_limits_and_ids_are_per_owner() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 4 << 20);
    let gw = start(d.path());
    let sealer = Sealer::new(&gw);
    let blob = sealer.seal("alice", "many-keys", b"x");
    for extra in [15_999u16, 10] {
        let hostile = with_extra_keys(&blob, extra);
        let (s, v) = gw.upload(Some("alice"), &hostile);
        assert_eq!((s, v["error"].as_str()), (400, Some("LIMIT_EXCEEDED")), "{} data keys: {v}", extra + 1);
    }
    let nine = with_extra_keys(&blob, 9);
    assert_eq!(gw.upload(Some("alice"), &nine).0, 201, "10 data keys are within the limit");

    // Two owners, one id: no 409 tells bob that alice has "report", and his
    // upload does not touch hers.
    let alices = sealer.seal("alice", "report", b"alice's report");
    let bobs = sealer.seal("bob", "report", b"bob's report");
    assert_eq!(gw.upload(Some("alice"), &alices).0, 201);
    assert_eq!(gw.upload(Some("bob"), &bobs).0, 201);
    let (s, v) = gw.upload(Some("bob"), &sealer.seal("bob", "report", b"again"));
    assert_eq!((s, v["error"].as_str()), (409, Some("CONFLICT")), "his own id again: {v}");
    let get = |who: &str, path: &str| {
        let r = ureq::get(&format!("{}{path}", gw.url)).set("authorization", &token(who)).call().unwrap();
        let mut b = Vec::new();
        r.into_reader().read_to_end(&mut b).unwrap();
        b
    };
    assert_eq!(get("alice", "/v1/objects/report"), alices);
    assert_eq!(get("bob", "/v1/objects/report"), bobs);
    assert_eq!(gw.get_json("bob", "/v1/objects/report?owner=alice").0, 404);
    // The data key follows the owner the context names.
    assert_eq!(gw.decrypt_key(Some("bob"), &request_for(&bobs)).0, 200);
    assert_eq!(gw.decrypt_key(Some("bob"), &request_for(&alices)).0, 403);
}

// ---- 10: revocation ---------------------------------------------------------

#[test]
fn revoked_shares_get_no_object_and_no_data_key_even_from_the_cache() {
    let d = tempfile::tempdir().unwrap();
    setup_with(d.path(), 1 << 20, "kms_cache_seconds = 300");
    let gw = start(d.path());
    let sealer = Sealer::new(&gw);
    let blob = sealer.seal("alice", "shared-1", b"for bob, for a while");
    assert_eq!(gw.upload(Some("alice"), &blob).0, 201);
    let json_share = |who: &str, user: &str| status(ureq::post(&format!("{}/v1/objects/shared-1/shares", gw.url)).set("authorization", &token(who)).send_json(json!({ "user": user })));
    assert_eq!(json_share("alice", "bob").0, 200);
    let req = request_for(&blob);
    assert_eq!(gw.decrypt_key(Some("bob"), &req).0, 200, "shared");
    assert_eq!(send(&gw, "GET", "/v1/objects/shared-1?owner=alice", Some("bob"), None).0, 200);
    let (s, v) = gw.get_json("alice", "/v1/objects/shared-1/shares");
    assert_eq!((s, v["shares"][0]["user"].as_str()), (200, Some("bob")), "{v}");
    assert!(v["shares"][0]["granted"].as_f64().unwrap() > 1.7e9);
    assert_eq!(gw.get_json("bob", "/v1/objects/shared-1/shares?owner=alice").0, 404, "bob cannot see the shares");

    // Only the owner revokes.
    assert_eq!(send(&gw, "DELETE", "/v1/objects/shared-1/shares/bob", Some("bob"), None).0, 404);
    assert_eq!(send(&gw, "DELETE", "/v1/objects/shared-1/shares/bob", Some("alice"), None).0, 204);
    assert_eq!(send(&gw, "DELETE", "/v1/objects/shared-1/shares/bob", Some("alice"), None).0, 404, "once");
    // bob: not listed, not served, no data key (the KMS answer is still cached).
    let (_, list) = gw.get_json("bob", "/v1/objects");
    assert!(list["objects"].as_array().unwrap().is_empty(), "{list}");
    assert_eq!(send(&gw, "GET", "/v1/objects/shared-1?owner=alice", Some("bob"), None).0, 404);
    assert_eq!(gw.decrypt_key(Some("bob"), &req).0, 403);
    assert_eq!(gw.decrypt_key(Some("alice"), &req).0, 200, "the owner still reads");
    assert_eq!(metric(&gw, "kms_envelope_kms_decrypt_calls_total"), 1, "the cache was warm throughout");
    let (_, v) = gw.get_json("alice", "/v1/objects/shared-1/shares");
    assert_eq!(v["shares"], json!([]));

    let audit = audit_text(d.path());
    let events: Vec<(String, String)> = audit_records(d.path())
        .into_iter()
        .filter(|l| l.get("event").is_some())
        .map(|l| (l["event"].as_str().unwrap().to_owned(), format!("{}/{}→{} by {}", l["owner"], l["object"], l["target"], l["user"])))
        .collect();
    let want = "\"alice\"/\"shared-1\"→\"bob\" by \"alice\"";
    assert_eq!(events, [("share".to_owned(), want.to_owned()), ("unshare".to_owned(), want.to_owned())], "{audit}");
}

// ---- 11: the rest -----------------------------------------------------------

#[test]
fn the_http_stacks_refusals_are_json_too() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 1 << 20);
    let gw = start(d.path());
    let a = token("alice");
    let cases: Vec<(String, u16, &str)> = vec![
        (format!("PUT /v1/uploads/x?offset=abc HTTP/1.1\r\nHost: {{addr}}\r\nAuthorization: {a}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"), 400, "INVALID_REQUEST"),
        (format!("POST /v1/objects/x/shares HTTP/1.1\r\nHost: {{addr}}\r\nAuthorization: {a}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n"), 413, "TOO_LARGE"),
        ("GET /v1/nothing-here HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n".to_owned(), 404, "NOT_FOUND"),
        ("PATCH /v1/objects HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(), 405, "METHOD_NOT_ALLOWED"),
        ("GET /v1/objects/%FF HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n".to_owned(), 400, "INVALID_REQUEST"),
    ];
    for (head, code, error) in cases {
        let (s, text) = exchange(&gw, &head, &[]);
        assert_eq!(s, code, "{head}: {text}");
        assert!(text.to_ascii_lowercase().contains("content-type: application/json"), "{text}");
        let v = json_body(&text);
        assert_eq!(v["error"], error, "{text}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty() && m.len() <= 512), "{text}");
    }
}

/// Signs alice in; (cookie header, CSRF token).
fn web_login(gw: &Gw) -> (String, String) {
    let r = ureq::post(&format!("{}/v1/login", gw.url)).send_json(json!({ "user": "alice", "token": TOKENS[0].1 })).unwrap();
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let v: Value = r.into_json().unwrap();
    (cookie, v["csrfToken"].as_str().unwrap().to_owned())
}

#[test]
fn the_configured_origin_logout_duplicate_tokens_and_trusted_proxies() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 1 << 20);
    let gw = start(d.path());
    let sealer = Sealer::new(&gw);
    assert_eq!(gw.upload(Some("alice"), &sealer.seal("alice", "o-1", b"x")).0, 201);
    let (cookie, csrf) = web_login(&gw);
    let del = |origin: &str, host: &str| {
        let head = format!(
            "DELETE /v1/objects/o-1 HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"
        );
        exchange(&gw, &head, &[]).0
    };
    // A page of another site whose name resolves here sends its own Host:
    // matching Host and Origin prove nothing.
    assert_eq!(del("http://evil.example", "evil.example"), 403);
    assert_eq!(del(&format!("https://{}", addr(&gw)), &addr(&gw)), 403, "another scheme");
    assert_eq!(del(&gw.url, &addr(&gw)), 204, "the gateway's own origin");

    // Logout ends the session that authenticated it, and only that one.
    let (cookie2, _) = web_login(&gw);
    let r = ureq::post(&format!("{}/v1/logout", gw.url)).set("authorization", &token("alice")).set("cookie", &cookie2).call().unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.header("set-cookie").is_none(), "a bearer-token logout clears no cookie");
    let session = |c: &str| status(ureq::get(&format!("{}/v1/session", gw.url)).set("cookie", c).call()).0;
    assert_eq!(session(&cookie2), 200, "the cookie's session lives on");
    let r = ureq::post(&format!("{}/v1/logout", gw.url)).set("cookie", &cookie2).set("x-csrf-token", "wrong").call();
    assert!(matches!(r, Err(ureq::Error::Status(403, _))));
    let (_, csrf2) = {
        let v: Value = ureq::get(&format!("{}/v1/session", gw.url)).set("cookie", &cookie2).call().unwrap().into_json().unwrap();
        ((), v["csrfToken"].as_str().unwrap().to_owned())
    };
    assert_eq!(ureq::post(&format!("{}/v1/logout", gw.url)).set("cookie", &cookie2).set("x-csrf-token", &csrf2).call().unwrap().status(), 204);
    assert_eq!(session(&cookie2), 401);
    assert_eq!(session(&cookie), 200, "another session of the same user lives on");

    // Behind a proxy on this machine that the configuration does not name,
    // clients are not local: no data key over plain HTTP, no metrics.
    let blob = sealer.seal("alice", "o-2", b"y");
    assert_eq!(gw.upload(Some("alice"), &blob).0, 201);
    let req = request_for(&blob);
    let via_proxy = |path: &str, proto: &str| {
        let r = ureq::post(&format!("{}{path}", gw.url))
            .set("authorization", &token("alice"))
            .set("x-forwarded-for", "203.0.113.9")
            .set("x-forwarded-proto", proto)
            .send_json(req.clone());
        match r {
            Ok(r) => (r.status(), Value::Null),
            Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap_or(Value::Null)),
            Err(e) => panic!("{e}"),
        }
    };
    let (s, v) = via_proxy("/v1/decrypt-data-key", "https");
    assert_eq!((s, v["error"].as_str()), (403, Some("TLS_REQUIRED")), "{v}");
    let m = ureq::get(&format!("{}/v1/metrics", gw.url)).set("x-forwarded-for", "203.0.113.9").call();
    assert!(matches!(m, Err(ureq::Error::Status(403, _))));
    drop(gw);

    // Named as trusted, the proxy's X-Forwarded-Proto counts, and its
    // client (from off the machine) still gets no metrics.
    let cfg = std::fs::read_to_string(d.path().join("gateway.toml")).unwrap();
    std::fs::write(d.path().join("gateway.toml"), cfg.replacen("max_object_bytes", "trusted_proxies = [\"127.0.0.1\"]\nmax_object_bytes", 1)).unwrap();
    let gw = start(d.path());
    let r = ureq::post(&format!("{}/v1/decrypt-data-key", gw.url))
        .set("authorization", &token("alice"))
        .set("x-forwarded-for", "203.0.113.9")
        .set("x-forwarded-proto", "https")
        .send_json(req.clone());
    assert_eq!(r.unwrap().status(), 200);
    let r = ureq::post(&format!("{}/v1/decrypt-data-key", gw.url)).set("authorization", &token("alice")).set("x-forwarded-for", "203.0.113.9").send_json(req.clone());
    assert!(matches!(r, Err(ureq::Error::Status(403, _))), "plain HTTP at the proxy");
    assert!(matches!(ureq::get(&format!("{}/v1/metrics", gw.url)).set("x-forwarded-for", "203.0.113.9").call(), Err(ureq::Error::Status(403, _))));
    assert_eq!(ureq::get(&format!("{}/v1/metrics", gw.url)).call().unwrap().status(), 200, "the machine itself");
    drop(gw);

    // Two users with one token: refused at start.
    let cfg = std::fs::read_to_string(d.path().join("gateway.toml")).unwrap();
    let bob_hash = hex_sha256(TOKENS[1].1.as_bytes());
    let carol_hash = hex_sha256(TOKENS[2].1.as_bytes());
    std::fs::write(d.path().join("gateway.toml"), cfg.replace(&carol_hash, &bob_hash)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kms-envelope")).args(["serve", "--config", d.path().join("gateway.toml").to_str().unwrap()]).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("token_sha256 of another user"), "{e}");
}
