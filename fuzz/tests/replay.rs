//! Replays every seed and every past finding through the fuzz targets'
//! properties, on stable Rust, as part of `make test`. Seeds: the checked-in
//! peer messages (`tests/vectors/`), prefixes and single-byte changes of
//! them, and `fuzz/seeds/<target>/`; findings: `fuzz/regressions/<target>/`.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<_> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

/// Message bytes of the peer vectors (after the text header's blank line).
fn peer_messages() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["python", "node"] {
        for (name, bytes) in files(&root().join("tests/vectors").join(sub)) {
            let split = bytes.windows(2).position(|w| w == b"\n\n").unwrap();
            out.push((name, bytes[split + 2..].to_vec()));
        }
    }
    assert!(out.len() > 200, "the peer vectors are missing");
    out
}

fn run(target: &str, f: fn(&[u8]), inputs: &[(String, Vec<u8>)]) -> usize {
    let mut all = inputs.to_vec();
    all.extend(files(&root().join("fuzz/seeds").join(target)));
    all.extend(files(&root().join("fuzz/regressions").join(target)));
    for (name, data) in &all {
        if let Err(e) = std::panic::catch_unwind(|| f(data)) {
            panic!("{target}: {name} breaks the property: {:?}", e.downcast_ref::<String>().map(String::as_str).or(e.downcast_ref::<&str>().copied()));
        }
    }
    all.len()
}

/// Cheap variants of the raw-AES messages (the ones the fuzz keyring
/// opens): prefixes and one changed byte every 97 bytes, so the replay
/// reaches the error paths too.
fn variants(messages: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, m) in messages.iter().filter(|(n, _)| n.contains("raw-aes")).step_by(3) {
        for cut in [1, 37, 200, m.len() / 2, m.len().saturating_sub(1)] {
            out.push((format!("{name}[..{cut}]"), m[..cut.min(m.len())].to_vec()));
        }
        for i in (0..m.len()).step_by(97) {
            let mut x = m.clone();
            x[i] ^= 0x20;
            out.push((format!("{name}^{i}"), x));
        }
    }
    out
}

#[test]
fn header() {
    let msgs = peer_messages();
    // The peers write canonical headers: serializing gives their own bytes.
    for (name, m) in &msgs {
        let (h, len) = kms_envelope::parse_header(m).unwrap();
        let body = h.serialize_body().unwrap();
        assert_eq!(&m[..body.len()], &body[..], "{name}");
        assert!(len > body.len());
    }
    let mut inputs = msgs.clone();
    inputs.extend(variants(&msgs));
    println!("header: {} inputs", run("header", kms_envelope_fuzz::header, &inputs));
}

#[test]
fn context() {
    let mut inputs = Vec::new();
    for (name, m) in peer_messages() {
        let at = if m[0] == 1 { 20 } else { 35 };
        let n = u16::from_be_bytes([m[at], m[at + 1]]) as usize;
        inputs.push((name, m[at + 2..at + 2 + n].to_vec()));
    }
    println!("context: {} inputs", run("context", kms_envelope_fuzz::context, &inputs));
}

#[test]
fn decrypt() {
    let msgs = peer_messages();
    let mut inputs = msgs.clone();
    inputs.extend(variants(&msgs).into_iter().step_by(5));
    println!("decrypt: {} inputs", run("decrypt", kms_envelope_fuzz::decrypt, &inputs));
}

#[test]
fn stream_chunked() {
    let mut inputs = Vec::new();
    for (i, (name, m)) in peer_messages().into_iter().enumerate() {
        let mut x = vec![i as u8];
        x.extend_from_slice(&m);
        inputs.push((name, x));
    }
    let more = variants(&inputs).into_iter().step_by(5).collect::<Vec<_>>();
    inputs.extend(more);
    println!("stream_chunked: {} inputs", run("stream_chunked", kms_envelope_fuzz::stream_chunked, &inputs));
}

#[test]
fn gateway_request() {
    println!("gateway_request: {} inputs", run("gateway_request", kms_envelope_fuzz::gateway_request, &[]));
}
