//! In-process throughput of the library on this machine, for `make bench`:
//! one-shot and streaming (1 MiB chunks) encryption and decryption with a
//! raw RSA-2048 (OAEP-SHA256) keyring, suite 0x0478, 64 KiB frames, with
//! each AES-GCM backend: RustCrypto (portable, the library's default) and
//! aws-lc-rs (what the CLI uses).
//!
//!     cargo run --release -p kms-envelope-server --example native_bench -- [MiB=256] [runs=5]
//!
//! Prints one JSON object per backend: MiB/s (median of `runs` after a
//! warm-up) per case.
//! Not a test: `scripts/bench-native.mjs` puts it beside the peers and
//! OpenSSL's AES-GCM speed, measured in the same run.

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use kms_envelope::{AeadProvider, Client, DecryptOptions, DecryptStatus, EncryptOptions, RawRsaKeyring, RsaPadding, RustCryptoAead};
use kms_envelope_server::aead::AwsLcAead;

/// Every future here completes at once (no I/O).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    f.now_or_never().expect("completes at once")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let mib = args.first().copied().unwrap_or(256);
    let runs = args.get(1).copied().unwrap_or(5);
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/keys");
    let public = std::fs::read(format!("{keys}/rsa-2048.pub.pem")).unwrap();
    let private = std::fs::read(format!("{keys}/rsa-2048.pem")).unwrap();
    let k = RawRsaKeyring::new("kms-envelope-test", "rsa-2048", RsaPadding::OaepSha256, Some(&public), Some(&private)).unwrap();
    let mut pt = vec![0u8; mib << 20];
    // Incompressible, deterministic input.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for c in pt.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    let backends: [(&str, Arc<dyn AeadProvider>); 2] = [("rustcrypto", Arc::new(RustCryptoAead)), ("aws-lc-rs", Arc::new(AwsLcAead))];
    for (name, aead) in backends {
        run(name, Client::new().with_aead(aead), &k, &pt, mib, runs);
    }
}

fn run(name: &str, client: Client, k: &RawRsaKeyring, pt: &[u8], mib: usize, runs: usize) {
    let opts = EncryptOptions::default();
    let dopts = DecryptOptions::default();
    let rate = |secs: f64| mib as f64 / secs;
    let time = |f: &mut dyn FnMut()| -> f64 {
        f(); // warm-up
        median((0..runs).map(|_| {
            let t = Instant::now();
            f();
            rate(t.elapsed().as_secs_f64())
        }).collect())
    };
    let mut ct = Vec::new();
    let enc = time(&mut || ct = block_on(client.encrypt(k, pt, &opts)).unwrap());
    let dec = time(&mut || {
        let (p, _) = block_on(client.decrypt(k, &ct, &dopts)).unwrap();
        assert!(p.len() == pt.len());
    });
    const CHUNK: usize = 1 << 20;
    let enc_stream = time(&mut || {
        let mut e = block_on(client.encryptor(k, &opts)).unwrap();
        let mut out = Vec::with_capacity(2 * CHUNK);
        let mut n = 0;
        for c in pt.chunks(CHUNK) {
            block_on(e.update(c, &mut out)).unwrap();
            n += out.len();
            out.clear();
        }
        block_on(e.finish(&mut out)).unwrap();
        assert_eq!(n + out.len(), ct.len());
    });
    let dec_stream = time(&mut || {
        let mut d = client.decryptor(&dopts);
        let mut out = Vec::with_capacity(2 * CHUNK);
        let mut n = 0;
        for c in ct.chunks(CHUNK) {
            if block_on(d.update(c, &mut out)).unwrap() == DecryptStatus::NeedDataKey {
                block_on(d.unwrap_data_key(k)).unwrap();
                block_on(d.update(&[], &mut out)).unwrap();
            }
            n += out.len();
            out.clear();
        }
        d.finish().unwrap();
        assert_eq!(n, pt.len());
    });
    println!(
        "{{\"backend\": \"{name}\", \"mib\": {mib}, \"runs\": {runs}, \"encrypt\": {enc:.1}, \"decrypt\": {dec:.1}, \"encryptStream\": {enc_stream:.1}, \"decryptStream\": {dec_stream:.1}, \"overheadBytes\": {}}}",
        ct.len() - pt.len()
    );
}
