//! Interop with the official AWS Encryption SDKs, both directions, byte-exact
//! plaintexts: the Python SDK (with the material providers' AWS KMS RSA
//! keyring) and `@aws-crypto/client-node`. Each peer runs one batch per
//! direction (tests/interop/peer.py and peer.mjs share a job format).
//!
//! These tests need the peers, which `make test` installs; run them with
//! `cargo test --test interop -- --include-ignored`.
#![cfg(not(target_arch = "wasm32"))]

mod shared;

use std::path::{Path, PathBuf};
use std::process::Command;

use kms_envelope::*;
use serde_json::{json, Value};
use shared::*;

const ALL_SUITES: [&str; 11] = [
    "0x0014", "0x0046", "0x0078", "0x0114", "0x0146", "0x0178", "0x0214", "0x0346", "0x0378", "0x0478", "0x0578",
];
const RAW_KEYRINGS: [&str; 8] = [
    "raw-aes-128",
    "raw-aes-192",
    "raw-aes-256",
    "raw-rsa-pkcs1-2048",
    "raw-rsa-oaep-sha1-2048",
    "raw-rsa-oaep-sha256-2048",
    "raw-rsa-oaep-sha384-2048",
    "raw-rsa-oaep-sha512-2048",
];
const KMS_KEYRINGS: [&str; 2] = ["kms-rsa-RSAES_OAEP_SHA_1", "kms-rsa-RSAES_OAEP_SHA_256"];
const BIG: usize = 3 * 1024 * 1024 + 17;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Peer {
    Python,
    Node,
}

impl Peer {
    fn command(self) -> Command {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut c = match self {
            Peer::Python => {
                let mut c = Command::new(root.join(".venv/bin/python"));
                c.arg(root.join("tests/interop/peer.py"));
                c
            }
            Peer::Node => {
                let mut c = Command::new("node");
                c.arg(root.join("tests/interop/peer.mjs"));
                c
            }
        };
        c.arg(root.join("tests/vectors/keys"));
        c
    }

    fn keyrings(self) -> Vec<&'static str> {
        let mut v = RAW_KEYRINGS.to_vec();
        if self == Peer::Python {
            v.extend(KMS_KEYRINGS); // the JS SDK has no AWS KMS RSA keyring
        }
        v
    }

    /// Frame lengths the peer's encryptor accepts (Python: multiples of 128; 0 = non-framed).
    fn encrypt_frames(self, legacy: bool) -> Vec<u32> {
        match (self, legacy) {
            (Peer::Python, true) => vec![0, 128, 512, 4096, 65536],
            _ => vec![128, 512, 4096, 65536],
        }
    }
}

struct Case {
    keyring: &'static str,
    suite: &'static str,
    frame: u32,
    len: usize,
    context: EncryptionContext,
}

fn keyring(spec: &str) -> Box<dyn Keyring> {
    if let Some(bits) = spec.strip_prefix("raw-aes-") {
        return Box::new(raw_aes(bits.parse().unwrap()));
    }
    if let Some(rest) = spec.strip_prefix("raw-rsa-") {
        let padding = rest.strip_suffix("-2048").unwrap();
        return Box::new(raw_rsa(RsaPadding::parse(padding).unwrap()));
    }
    let alg = spec.strip_prefix("kms-rsa-").unwrap();
    Box::new(kms_rsa(KmsRsaAlgorithm::parse(alg).unwrap()).0)
}

/// Sizes around the frame edges (for non-framed, a few small sizes).
fn sizes(frame: u32) -> Vec<usize> {
    let f = frame as usize;
    if f == 0 {
        vec![0, 1, 1000]
    } else {
        vec![0, 1, f - 1, f, f + 1]
    }
}

/// Runs one batch with a peer; returns each job's result.
fn run_batch(peer: Peer, dir: &Path, jobs: &[Value]) -> Vec<Result<(), String>> {
    let jobs_path = dir.join("jobs.json");
    let res_path = dir.join("results.json");
    std::fs::write(&jobs_path, serde_json::to_vec(&json!({ "jobs": jobs })).unwrap()).unwrap();
    let out = peer.command().arg(&jobs_path).arg(&res_path).output().expect("peer starts");
    assert!(out.status.success(), "{peer:?} peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<Value> = serde_json::from_slice(&std::fs::read(&res_path).unwrap()).unwrap();
    assert_eq!(results.len(), jobs.len());
    results
        .into_iter()
        .map(|r| if r["ok"] == json!(true) { Ok(()) } else { Err(r["error"].to_string()) })
        .collect()
}

fn job(op: &str, c: &Case, policy: &str, input: &Path, output: &Path) -> Value {
    json!({
        "op": op, "keyring": c.keyring, "suite": c.suite, "frame_length": c.frame,
        "context": c.context, "policy": policy,
        "input": input, "output": output,
    })
}

fn peer_encrypts_we_decrypt(peer: Peer) {
    let dir = tempfile::tempdir().unwrap();
    let contexts = contexts();
    let mut cases = Vec::new();
    let mut n = 0;
    for keyring in peer.keyrings() {
        let suites: Vec<&str> = if keyring.starts_with("kms-rsa") { vec!["0x0478"] } else { ALL_SUITES.to_vec() };
        for suite in suites {
            let legacy = !matches!(suite, "0x0478" | "0x0578");
            for frame in peer.encrypt_frames(legacy) {
                for len in sizes(frame) {
                    n += 1;
                    cases.push(Case { keyring, suite, frame, len, context: contexts[n % contexts.len()].clone() });
                }
            }
        }
    }
    // Several MiB, every suite, default-sized and small frames.
    for suite in ALL_SUITES {
        for frame in [4096, 65536] {
            n += 1;
            cases.push(Case { keyring: "raw-aes-256", suite, frame, len: BIG, context: contexts[n % 4].clone() });
        }
    }
    let mut jobs = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let input = dir.path().join(format!("pt-{i}"));
        std::fs::write(&input, plaintext(c.len)).unwrap();
        let legacy = !matches!(c.suite, "0x0478" | "0x0578");
        let policy = if legacy { "forbid-encrypt-allow-decrypt" } else { "require-encrypt-require-decrypt" };
        jobs.push(job("encrypt", c, policy, &input, &dir.path().join(format!("ct-{i}"))));
    }
    let results = run_batch(peer, dir.path(), &jobs);
    let client = legacy_client();
    let mut checked = 0;
    for (i, (c, r)) in cases.iter().zip(results).enumerate() {
        let what = format!("{peer:?} {} {} f={} n={}", c.keyring, c.suite, c.frame, c.len);
        r.unwrap_or_else(|e| panic!("{what}: peer could not encrypt: {e}"));
        let ct = std::fs::read(dir.path().join(format!("ct-{i}"))).unwrap();
        let k = keyring(c.keyring);
        let (pt, h) = now(client.decrypt(k.as_ref(), &ct, &DecryptOptions::default()))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(pt == plaintext(c.len), "{what}: plaintext differs");
        assert_eq!(format!("0x{:04X}", h.suite.id()), c.suite, "{what}");
        let mut stored = h.encryption_context.clone();
        stored.remove(PUBLIC_KEY_CONTEXT_KEY);
        assert_eq!(stored, c.context, "{what}");
        checked += 1;
    }
    eprintln!("{peer:?} → kms-envelope: {checked} messages decrypted byte-exact");
    assert!(checked >= 400);
}

fn we_encrypt_peer_decrypts(peer: Peer) {
    let dir = tempfile::tempdir().unwrap();
    let contexts = contexts();
    let mut cases = Vec::new();
    let mut n = 0;
    for keyring in peer.keyrings() {
        let suites: &[&str] = if keyring.starts_with("kms-rsa") { &["0x0478"] } else { &["0x0478", "0x0578"] };
        for &suite in suites {
            // Frame length 1 is ours only: peers decrypt it, Python cannot encrypt it.
            for frame in [1u32, 128, 512, 4096, 65536] {
                for len in sizes(frame) {
                    n += 1;
                    cases.push(Case { keyring, suite, frame, len, context: contexts[n % contexts.len()].clone() });
                }
            }
        }
    }
    for suite in ["0x0478", "0x0578"] {
        for frame in [4096, 65536] {
            n += 1;
            cases.push(Case { keyring: "raw-rsa-oaep-sha256-2048", suite, frame, len: BIG, context: contexts[n % 4].clone() });
        }
    }
    let mut jobs = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let k = keyring(c.keyring);
        let suite = AlgorithmSuite::parse(c.suite).unwrap();
        let ct = now(Client::new().encrypt(k.as_ref(), &plaintext(c.len), &opts(suite, c.frame, &c.context))).unwrap();
        let input = dir.path().join(format!("ct-{i}"));
        std::fs::write(&input, ct).unwrap();
        jobs.push(job("decrypt", c, "require-encrypt-require-decrypt", &input, &dir.path().join(format!("pt-{i}"))));
    }
    let results = run_batch(peer, dir.path(), &jobs);
    let mut checked = 0;
    for (i, (c, r)) in cases.iter().zip(results).enumerate() {
        let what = format!("{peer:?} {} {} f={} n={}", c.keyring, c.suite, c.frame, c.len);
        r.unwrap_or_else(|e| panic!("{what}: peer could not decrypt our message: {e}"));
        let pt = std::fs::read(dir.path().join(format!("pt-{i}"))).unwrap();
        assert!(pt == plaintext(c.len), "{what}: plaintext differs");
        checked += 1;
    }
    eprintln!("kms-envelope → {peer:?}: {checked} messages decrypted byte-exact");
    assert!(checked >= 400);
}

#[test]
#[ignore = "needs the SDK peers; `make test` runs it"]
fn python_encrypts_kms_envelope_decrypts() {
    peer_encrypts_we_decrypt(Peer::Python);
}

#[test]
#[ignore = "needs the SDK peers; `make test` runs it"]
fn kms_envelope_encrypts_python_decrypts() {
    we_encrypt_peer_decrypts(Peer::Python);
}

#[test]
#[ignore = "needs the SDK peers; `make test` runs it"]
fn node_encrypts_kms_envelope_decrypts() {
    peer_encrypts_we_decrypt(Peer::Node);
}

#[test]
#[ignore = "needs the SDK peers; `make test` runs it"]
fn kms_envelope_encrypts_node_decrypts() {
    we_encrypt_peer_decrypts(Peer::Node);
}

/// A 20 MiB non-framed message from the Python SDK (frame length 0)
/// decrypts with the default limits, whole and streamed: the frame limit
/// does not cap non-framed bodies, which have their own (documented) one.
#[test]
#[ignore = "needs the SDK peers; `make test` runs it"]
fn python_non_framed_20_mib_decrypts_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let len = 20 << 20;
    let input = dir.path().join("pt");
    std::fs::write(&input, plaintext(len)).unwrap();
    let cases: Vec<Case> = [("raw-aes-256", "0x0478"), ("kms-rsa-RSAES_OAEP_SHA_256", "0x0478"), ("raw-aes-256", "0x0578")]
        .into_iter()
        .map(|(keyring, suite)| Case { keyring, suite, frame: 0, len, context: ctx(&[("owner", "alice")]) })
        .collect();
    let jobs: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| job("encrypt", c, "require-encrypt-require-decrypt", &input, &dir.path().join(format!("ct-{i}"))))
        .collect();
    for (i, (c, r)) in cases.iter().zip(run_batch(Peer::Python, dir.path(), &jobs)).enumerate() {
        let what = format!("{} {} non-framed 20 MiB", c.keyring, c.suite);
        r.unwrap_or_else(|e| panic!("{what}: the peer could not encrypt: {e}"));
        let ct = std::fs::read(dir.path().join(format!("ct-{i}"))).unwrap();
        let k = keyring(c.keyring);
        let (pt, h) = now(Client::new().decrypt(k.as_ref(), &ct, &DecryptOptions::default())).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(h.content_type, ContentType::NonFramed, "{what}");
        assert!(pt == plaintext(len), "{what}");
        let (spt, r) = stream_decrypt(&Client::new(), k.as_ref(), &ct, &[65536]);
        r.unwrap_or_else(|e| panic!("{what}, streamed: {e}"));
        assert!(spt == plaintext(len), "{what}, streamed");
        // A small frame limit does not touch it; the non-framed limit does.
        let frames = Client::new().with_limits(DecryptLimits { max_frame_length: 4096, ..DecryptLimits::default() });
        assert!(now(frames.decrypt(k.as_ref(), &ct, &DecryptOptions::default())).is_ok(), "{what}: capped by the frame limit");
        let tight = Client::new().with_limits(DecryptLimits { max_non_framed_length: 1 << 20, ..DecryptLimits::default() });
        assert_eq!(code(now(tight.decrypt(k.as_ref(), &ct, &DecryptOptions::default()))), "LIMIT_EXCEEDED", "{what}");
    }
}

/// The largest contexts a peer writes (65534 and 65535 serialized bytes:
/// the header field's UInt16 allows them, this library writes at most
/// 65533) decrypt here; re-serializing them for AAD and digests does not
/// apply the write-side cap.
#[test]
#[ignore = "needs the SDK peers; `make test` runs it"]
fn peers_largest_contexts_decrypt() {
    for peer in [Peer::Python, Peer::Node] {
        let dir = tempfile::tempdir().unwrap();
        let mut cases = Vec::new();
        for size in [65533usize, 65534, 65535] {
            // One pair: UInt16 count, then two UInt16-prefixed strings.
            let value = "v".repeat(size - 2 - 2 - 3 - 2);
            let context = ctx(&[("big", &value)]);
            assert_eq!(kms_envelope::format::context::canonical(&context).unwrap().len(), size);
            for keyring in peer.keyrings().into_iter().filter(|k| matches!(*k, "raw-aes-256" | "raw-rsa-oaep-sha256-2048" | "kms-rsa-RSAES_OAEP_SHA_256")) {
                cases.push(Case { keyring, suite: "0x0478", frame: 4096, len: 5000, context: context.clone() });
            }
        }
        let input = dir.path().join("pt");
        std::fs::write(&input, plaintext(5000)).unwrap();
        let jobs: Vec<Value> = cases
            .iter()
            .enumerate()
            .map(|(i, c)| job("encrypt", c, "require-encrypt-require-decrypt", &input, &dir.path().join(format!("ct-{i}"))))
            .collect();
        let results = run_batch(peer, dir.path(), &jobs);
        let mut decrypted = 0;
        for (i, (c, r)) in cases.iter().zip(results).enumerate() {
            let size = kms_envelope::format::context::canonical(&c.context).unwrap().len();
            let what = format!("{peer:?} {} context of {size} bytes", c.keyring);
            if let Err(e) = r {
                // A peer that caps its own writes lower: nothing to read.
                eprintln!("{what}: the peer does not write it ({e})");
                continue;
            }
            let ct = std::fs::read(dir.path().join(format!("ct-{i}"))).unwrap();
            let k = keyring(c.keyring);
            let (pt, h) = now(Client::new().decrypt(k.as_ref(), &ct, &DecryptOptions::default())).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(pt == plaintext(5000) && h.encryption_context == c.context, "{what}");
            // Streamed in small chunks too.
            let (spt, r) = stream_decrypt(&Client::new(), k.as_ref(), &ct, &[1000, 7]);
            r.unwrap_or_else(|e| panic!("{what}, streamed: {e}"));
            assert!(spt == plaintext(5000), "{what}, streamed");
            if size > kms_envelope::format::context::MAX_SERIALIZED_LEN {
                decrypted += 1;
            }
        }
        eprintln!("{peer:?}: {decrypted} messages with a context over 65533 bytes decrypted");
        if peer == Peer::Python {
            assert!(decrypted >= 4, "the Python SDK writes contexts of 65534 and 65535 bytes");
        }
    }
}

/// Peers refuse what we refuse: a tampered frame fails in the peer too (a
/// sanity check that the peers really authenticate what they are given).
#[test]
#[ignore = "needs the SDK peers; `make test` runs it"]
fn peers_reject_our_tampered_messages() {
    for peer in [Peer::Python, Peer::Node] {
        let dir = tempfile::tempdir().unwrap();
        let k = raw_aes(256);
        let mut ct = now(Client::new().encrypt(&k, &plaintext(300), &opts(AlgorithmSuite::parse("0x0478").unwrap(), 128, &ctx(&[])))).unwrap();
        let n = ct.len();
        ct[n - 20] ^= 1;
        let input: PathBuf = dir.path().join("ct");
        std::fs::write(&input, &ct).unwrap();
        let c = Case { keyring: "raw-aes-256", suite: "0x0478", frame: 128, len: 300, context: ctx(&[]) };
        let jobs = vec![job("decrypt", &c, "require-encrypt-require-decrypt", &input, &dir.path().join("pt"))];
        let r = run_batch(peer, dir.path(), &jobs);
        assert!(r[0].is_err(), "{peer:?} accepted a tampered message");
    }
}

/// Required (authenticate-only) encryption context with the material
/// providers' Required Encryption Context CMM, both ways: what the Python
/// SDK writes with pairs left out of its header decrypts here once they are
/// reproduced, and the reverse; without them, or with another value, both
/// sides refuse.
#[test]
#[ignore = "needs the SDK peers; `make test` runs it"]
fn python_required_encryption_context_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let full = ctx(&[("owner", "alice"), ("tenant", "t-1"), ("purpose", "audit")]);
    let required = ["tenant", "purpose"];
    let good = ctx(&[("tenant", "t-1"), ("purpose", "audit")]);
    let wrong = ctx(&[("tenant", "t-2"), ("purpose", "audit")]);
    let combos = [("raw-aes-256", "0x0478"), ("raw-aes-256", "0x0578"), ("kms-rsa-RSAES_OAEP_SHA_256", "0x0478")];
    let len = 70_000;
    let input = dir.path().join("pt");
    std::fs::write(&input, plaintext(len)).unwrap();

    // Python encrypts, kms-envelope decrypts.
    let cases: Vec<Case> = combos.iter().map(|&(keyring, suite)| Case { keyring, suite, frame: 4096, len, context: full.clone() }).collect();
    let jobs: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut j = job("encrypt", c, "require-encrypt-require-decrypt", &input, &dir.path().join(format!("py-{i}")));
            j["required_keys"] = json!(required);
            j
        })
        .collect();
    for (i, (c, r)) in cases.iter().zip(run_batch(Peer::Python, dir.path(), &jobs)).enumerate() {
        let what = format!("Python {} {} required context", c.keyring, c.suite);
        r.unwrap_or_else(|e| panic!("{what}: the peer could not encrypt: {e}"));
        let ct = std::fs::read(dir.path().join(format!("py-{i}"))).unwrap();
        let (h, _) = parse_header(&ct).unwrap();
        let mut stored = h.encryption_context.clone();
        stored.remove(PUBLIC_KEY_CONTEXT_KEY);
        assert_eq!(stored, ctx(&[("owner", "alice")]), "{what}: the header stores only the other pairs");
        let k = keyring(c.keyring);
        let with = |rc: &EncryptionContext| DecryptOptions { encryption_context: rc.clone(), ..DecryptOptions::default() };
        let (pt, _) = now(Client::new().decrypt(k.as_ref(), &ct, &with(&good))).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(pt == plaintext(len), "{what}: plaintext differs");
        assert!(now(Client::new().decrypt(k.as_ref(), &ct, &with(&wrong))).is_err(), "{what}: a wrong value decrypted");
        assert!(now(Client::new().decrypt(k.as_ref(), &ct, &DecryptOptions::default())).is_err(), "{what}: decrypted without the pairs");
    }

    // kms-envelope encrypts, Python decrypts with the CMM and the reproduced pairs.
    let mut jobs = Vec::new();
    let mut expect = Vec::new();
    for (i, &(keyring_spec, suite)) in combos.iter().enumerate() {
        let k = keyring(keyring_spec);
        let mut o = opts(AlgorithmSuite::parse(suite).unwrap(), 4096, &full);
        o.required_encryption_context_keys = required.iter().map(|s| s.to_string()).collect();
        let ct = now(Client::new().encrypt(k.as_ref(), &plaintext(len), &o)).unwrap();
        let ct_path = dir.path().join(format!("ours-{i}"));
        std::fs::write(&ct_path, ct).unwrap();
        let c = Case { keyring: keyring_spec, suite, frame: 4096, len, context: full.clone() };
        for (n, reproduced) in [Some(&good), Some(&wrong), None].into_iter().enumerate() {
            let mut j = job("decrypt", &c, "require-encrypt-require-decrypt", &ct_path, &dir.path().join(format!("out-{i}-{n}")));
            if let Some(rc) = reproduced {
                j["required_keys"] = json!(required);
                j["reproduced"] = json!(rc);
            }
            jobs.push(j);
            expect.push((format!("kms-envelope {keyring_spec} {suite} → Python, reproduced {reproduced:?}"), n == 0, format!("out-{i}-{n}")));
        }
    }
    for ((what, ok, out), r) in expect.into_iter().zip(run_batch(Peer::Python, dir.path(), &jobs)) {
        match (ok, r) {
            (true, Ok(())) => assert!(std::fs::read(dir.path().join(out)).unwrap() == plaintext(len), "{what}: plaintext differs"),
            (true, Err(e)) => panic!("{what}: the peer could not decrypt: {e}"),
            (false, Ok(())) => panic!("{what}: the peer decrypted it"),
            (false, Err(_)) => {}
        }
    }
}
