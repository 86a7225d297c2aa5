//! The `kms-envelope` command line: round trips, inspect, and failure
//! behaviour (non-zero exit, one line with the error code, no output file).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_kms-envelope");
const ARN: &str = "arn:aws:kms:us-west-2:111122223333:key/0a1b2c3d-0000-4000-8000-000000000001";

fn keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/keys")
}

fn key(name: &str) -> String {
    keys().join(name).display().to_string()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("binary runs")
}

fn run_stdin(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut c = Command::new(BIN).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(stdin).unwrap();
    c.wait_with_output().unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// Fails with `code`, prints exactly one line naming it, and leaves no `out`.
fn fails_with(o: &Output, code: &str, out: Option<&Path>) {
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("kms-envelope: error {code}: ")), "{err}");
    if let Some(p) = out {
        assert!(!p.exists(), "{} was written", p.display());
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left behind");
    }
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 % 251) as u8).collect()
}

fn raw_rsa_pub() -> String {
    format!("namespace=ns,name=rsa,public={},padding=oaep-sha256", key("rsa-3072.pub.pem"))
}

fn raw_rsa_priv() -> String {
    format!("namespace=ns,name=rsa,private={},padding=oaep-sha256", key("rsa-3072.pem"))
}

#[test]
fn encrypt_inspect_decrypt_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in.bin");
    let sealed = d.path().join("in.bin.esdk");
    let output = d.path().join("out.bin");
    let data = sample(300_000);
    std::fs::write(&input, &data).unwrap();
    let aes = format!("namespace=ns,name=aes,key={}", key("aes-256.key"));
    let kms = format!("arn={ARN},public={},algorithm=RSAES_OAEP_SHA_256", key("rsa-2048.pub.der"));
    ok(&run(&[
        "encrypt", "-i", input.to_str().unwrap(), "-o", sealed.to_str().unwrap(),
        "--context", "owner=alice", "--context", "file=in.bin", "--frame-length", "4096",
        "--kms-rsa", &kms, "--raw-rsa", &raw_rsa_pub(), "--raw-aes", &aes,
    ]));
    let o = run(&["inspect", "-i", sealed.to_str().unwrap()]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(v["suite_id"], "0x0478");
    assert_eq!(v["frame_length"], 4096);
    assert_eq!(v["encryption_context"]["owner"], "alice");
    assert_eq!(v["message_id"].as_str().unwrap().len(), 64);
    let edks = v["encrypted_data_keys"].as_array().unwrap();
    // Command-line order: the KMS key is the generator, then raw RSA, then raw AES.
    assert_eq!(edks[0]["provider_id"], "aws-kms-rsa");
    assert_eq!(edks[0]["provider_info"], ARN);
    assert_eq!(edks[1]["provider_id"], "ns");
    assert_eq!(edks[1]["ciphertext_length"], 384);
    assert_eq!(edks[2]["provider_info_hex"].as_str().unwrap().len(), 2 * (3 + 8 + 12));
    // The maximum number of EDKs applies on encrypt too: three keyrings, at most two.
    let capped = d.path().join("capped.esdk");
    fails_with(
        &run(&["encrypt", "-i", input.to_str().unwrap(), "-o", capped.to_str().unwrap(), "--max-encrypted-data-keys", "2",
               "--kms-rsa", &kms, "--raw-rsa", &raw_rsa_pub(), "--raw-aes", &aes]),
        "LIMIT_EXCEEDED",
        Some(&capped),
    );
    // Either member of the keyring decrypts.
    ok(&run(&["decrypt", "-i", sealed.to_str().unwrap(), "-o", output.to_str().unwrap(), "--raw-aes", &aes, "--context", "owner=alice"]));
    assert_eq!(std::fs::read(&output).unwrap(), data);
    std::fs::remove_file(&output).unwrap();
    ok(&run(&["decrypt", "-i", sealed.to_str().unwrap(), "-o", output.to_str().unwrap(), "--raw-rsa", &raw_rsa_priv()]));
    assert_eq!(std::fs::read(&output).unwrap(), data);
}

/// `--required-context` pairs are authenticated, not stored: `inspect` does
/// not show them and decryption needs them again as `--context`.
#[test]
fn required_context_is_authenticated_not_stored() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in.bin");
    let sealed = d.path().join("in.bin.esdk");
    let output = d.path().join("out.bin");
    let data = sample(10_000);
    std::fs::write(&input, &data).unwrap();
    let aes = format!("namespace=ns,name=aes,key={}", key("aes-256.key"));
    ok(&run(&[
        "encrypt", "-i", input.to_str().unwrap(), "-o", sealed.to_str().unwrap(),
        "--context", "owner=alice", "--required-context", "tenant=t-1", "--raw-aes", &aes,
    ]));
    let o = run(&["inspect", "-i", sealed.to_str().unwrap()]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["encryption_context"], serde_json::json!({ "owner": "alice" }));
    let dec = |extra: &[&str]| {
        let mut args = vec!["decrypt", "-i", sealed.to_str().unwrap(), "-o", output.to_str().unwrap(), "--raw-aes", &aes];
        args.extend_from_slice(extra);
        run(&args)
    };
    fails_with(&dec(&[]), "NO_DECRYPTABLE_KEY", Some(&output));
    fails_with(&dec(&["--context", "tenant=t-2"]), "NO_DECRYPTABLE_KEY", Some(&output));
    fails_with(&dec(&["--context", "tenant=t-1", "--context", "owner=bob"]), "ENCRYPTION_CONTEXT_MISMATCH", Some(&output));
    ok(&dec(&["--context", "tenant=t-1", "--context", "owner=alice"]));
    assert_eq!(std::fs::read(&output).unwrap(), data);
    // A key given both ways is refused.
    fails_with(
        &run(&["encrypt", "-i", input.to_str().unwrap(), "-o", d.path().join("x").to_str().unwrap(),
               "--context", "tenant=a", "--required-context", "tenant=b", "--raw-aes", &aes]),
        "INVALID_ARGUMENT",
        Some(&d.path().join("x")),
    );
}

#[test]
fn stdin_and_stdout_and_the_signing_suite() {
    let data = sample(70_000);
    let o = run_stdin(&["encrypt", "-i", "-", "-o", "-", "--suite", "0x0578", "--raw-rsa", &raw_rsa_pub()], &data);
    ok(&o);
    assert_eq!(&o.stdout[..3], &[2, 5, 0x78]);
    let p = run_stdin(&["decrypt", "-i", "-", "-o", "-", "--raw-rsa", &raw_rsa_priv()], &o.stdout);
    ok(&p);
    assert_eq!(p.stdout, data);
    // Unsigned-only decryption refuses it, and writes nothing.
    let u = run_stdin(&["decrypt", "-i", "-", "-o", "-", "--unsigned-only", "--raw-rsa", &raw_rsa_priv()], &o.stdout);
    fails_with(&u, "SIGNATURE_POLICY", None);
    assert!(u.stdout.is_empty());
}

#[test]
fn failures_leave_no_output() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    let sealed = d.path().join("sealed");
    let out = d.path().join("out");
    std::fs::write(&input, sample(10_000)).unwrap();
    ok(&run(&["encrypt", "-i", input.to_str().unwrap(), "-o", sealed.to_str().unwrap(), "--frame-length", "1024", "--raw-rsa", &raw_rsa_pub()]));
    let mut bytes = std::fs::read(&sealed).unwrap();

    // Wrong key.
    let other = format!("namespace=ns,name=rsa,private={},padding=oaep-sha256", key("rsa-4096.pem"));
    fails_with(&run(&["decrypt", "-i", sealed.to_str().unwrap(), "-o", out.to_str().unwrap(), "--raw-rsa", &other]), "NO_DECRYPTABLE_KEY", Some(&out));

    // A flipped bit in the last frame: earlier frames authenticate, but nothing is written.
    let n = bytes.len();
    bytes[n - 30] ^= 1;
    let bad = d.path().join("bad");
    std::fs::write(&bad, &bytes).unwrap();
    fails_with(&run(&["decrypt", "-i", bad.to_str().unwrap(), "-o", out.to_str().unwrap(), "--raw-rsa", &raw_rsa_priv()]), "FRAME_AUTH_FAILED", Some(&out));

    // Truncated.
    std::fs::write(&bad, &bytes[..n - 100]).unwrap();
    fails_with(&run(&["decrypt", "-i", bad.to_str().unwrap(), "-o", out.to_str().unwrap(), "--raw-rsa", &raw_rsa_priv()]), "TRUNCATED", Some(&out));

    // An existing output file is left as it was when decryption fails.
    std::fs::write(&out, b"previous").unwrap();
    fails_with(&run(&["decrypt", "-i", bad.to_str().unwrap(), "-o", out.to_str().unwrap(), "--raw-rsa", &raw_rsa_priv()]), "TRUNCATED", None);
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
    std::fs::remove_file(&out).unwrap();

    // A pair the message was not written with: authenticated, and refused.
    fails_with(
        &run(&["decrypt", "-i", sealed.to_str().unwrap(), "-o", out.to_str().unwrap(), "--context", "owner=bob", "--raw-rsa", &raw_rsa_priv()]),
        "HEADER_AUTH_FAILED",
        Some(&out),
    );
    // Missing input, bad arguments, bad keys.
    fails_with(&run(&["encrypt", "-i", "/nonexistent/x", "-o", out.to_str().unwrap(), "--raw-rsa", &raw_rsa_pub()]), "IO", Some(&out));
    fails_with(&run(&["encrypt", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap()]), "INVALID_ARGUMENT", Some(&out));
    fails_with(
        &run(&["encrypt", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--raw-rsa", "namespace=ns,name=rsa,padding=oaep-sha256,colour=blue"]),
        "INVALID_ARGUMENT",
        Some(&out),
    );
    fails_with(
        &run(&["encrypt", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--raw-rsa", &format!("namespace=ns,name=r,public={},padding=pkcs1", key("rsa-1024.pub.pem"))]),
        "INVALID_KEY",
        Some(&out),
    );
    fails_with(
        &run(&["encrypt", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--context", "aws-crypto-x=1", "--raw-rsa", &raw_rsa_pub()]),
        "RESERVED_ENCRYPTION_CONTEXT_KEY",
        Some(&out),
    );
    let kms = format!("arn={ARN},public={}", key("rsa-2048.pub.pem"));
    fails_with(
        &run(&["encrypt", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--suite", "0x0578", "--kms-rsa", &kms]),
        "UNSUPPORTED_SUITE_FOR_KEYRING",
        Some(&out),
    );
    fails_with(
        &run(&["encrypt", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--kms-rsa", &format!("arn=alias/files,public={}", key("rsa-2048.pub.pem"))]),
        "INVALID_ARGUMENT",
        Some(&out),
    );
    fails_with(&run(&["inspect", "-i", input.to_str().unwrap()]), "UNSUPPORTED_VERSION", None);
}

#[test]
fn legacy_messages_need_the_permissive_policy() {
    // A vector the Python SDK wrote with a non-committing suite.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/python");
    let vec = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("python-0178-raw-aes-256"))
        .expect("a 0x0178 raw AES vector");
    let bytes = std::fs::read(&vec).unwrap();
    let split = bytes.windows(2).position(|w| w == b"\n\n").unwrap();
    let d = tempfile::tempdir().unwrap();
    let msg = d.path().join("legacy");
    let out = d.path().join("out");
    std::fs::write(&msg, &bytes[split + 2..]).unwrap();
    let aes = format!("namespace=kms-envelope-test,name=aes-256,key={}", key("aes-256.key"));
    fails_with(&run(&["decrypt", "-i", msg.to_str().unwrap(), "-o", out.to_str().unwrap(), "--raw-aes", &aes]), "COMMITMENT_POLICY_VIOLATION", Some(&out));
    ok(&run(&[
        "decrypt", "-i", msg.to_str().unwrap(), "-o", out.to_str().unwrap(), "--raw-aes", &aes,
        "--commitment-policy", "require-encrypt-allow-decrypt",
    ]));
    let o = run(&["inspect", "-i", msg.to_str().unwrap()]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["suite_id"], "0x0178");
    assert_eq!(v["commitment"], false);
}
