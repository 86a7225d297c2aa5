//! The bodies of the fuzz targets, kept in a library so the same code runs
//! under libFuzzer (`fuzz_targets/`, `make fuzz`) and as a plain test that
//! replays the seed corpora and every past finding (`tests/replay.rs`, part
//! of `make test`).
//!
//! Each target states a property, not just "does not panic":
//! * `header`: parse → serialize → parse gives the same header, and
//!   serializing again gives the same bytes.
//! * `context`: the same for the serialized encryption context, and the
//!   serialization keeps the length of any well-formed input.
//! * `decrypt`: one-shot decryption and a random-access read of the whole
//!   message agree: both fail, or both give the same plaintext.
//! * `stream_chunked`: the streaming decryptor fed in arbitrary chunkings
//!   agrees with one-shot decryption, error code included, and never emits
//!   more plaintext than one-shot decryption would.
//! * `gateway_request`: a request body the gateway accepts names a plain
//!   object id, a 1–1024-byte wrapped key, and a context that round-trips.

use std::sync::{Arc, OnceLock};

use futures::executor::block_on;
use kms_envelope::format::context;
use kms_envelope::{
    parse_header, Client, CommitmentPolicy, DecryptOptions, DecryptStatus, Keyring, MessageVersion, MultiKeyring,
    RawAesKeyring, RawRsaKeyring, RsaPadding,
};

const NAMESPACE: &str = "kms-envelope-test";

fn key_file(f: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../tests/vectors/keys/{f}", env!("CARGO_MANIFEST_DIR"))).expect("test key")
}

/// The raw AES keyrings the checked-in peer vectors were made with
/// (`tests/vectors/README.md`), so mutated peer messages reach the body.
fn aes_keyrings() -> Vec<Arc<dyn Keyring>> {
    [128, 192, 256]
        .into_iter()
        .map(|bits| Arc::new(RawAesKeyring::new(NAMESPACE, &format!("aes-{bits}"), &key_file(&format!("aes-{bits}.key"))).unwrap()) as Arc<dyn Keyring>)
        .collect()
}

/// Raw AES, and one raw RSA keyring (RSA-2048, OAEP-SHA256) for the
/// `decrypt` target. More RSA keys would cost a private-key operation per
/// input each (the fuzzer fell to 16 executions a second with five); a
/// mutated RSA ciphertext only ever fails its padding check, and every
/// padding and size is covered by the vector and interop tests.
fn keyring() -> &'static MultiKeyring {
    static K: OnceLock<MultiKeyring> = OnceLock::new();
    K.get_or_init(|| {
        let mut children = aes_keyrings();
        let (public, private) = (key_file("rsa-2048.pub.pem"), key_file("rsa-2048.pem"));
        children.push(Arc::new(RawRsaKeyring::new(NAMESPACE, "rsa-2048", RsaPadding::OaepSha256, Some(&public), Some(&private)).unwrap()));
        MultiKeyring::new(None, children).unwrap()
    })
}

/// Raw AES only, for the chunking target: its work is the framing.
fn aes_keyring() -> &'static MultiKeyring {
    static K: OnceLock<MultiKeyring> = OnceLock::new();
    K.get_or_init(|| MultiKeyring::new(None, aes_keyrings()).unwrap())
}

fn client() -> Client {
    // Legacy suites too: more of the decoder is reachable.
    Client::new().with_commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt)
}

/// Header codec round trip.
pub fn header(data: &[u8]) {
    let Ok((h, len)) = parse_header(data) else { return };
    assert!(len <= data.len());
    let auth_len = match h.version {
        MessageVersion::V1 => 12 + 16,
        MessageVersion::V2 => 16,
    };
    let body = h.serialize_body().expect("a parsed header serializes");
    let mut again = body.clone();
    again.extend_from_slice(&data[len - auth_len..len]);
    let (h2, len2) = parse_header(&again).expect("a serialized header parses");
    assert_eq!(h2, h, "parse → serialize → parse changed the header");
    assert_eq!(len2, again.len());
    assert_eq!(h2.serialize_body().unwrap(), body, "serialization is not a fixpoint");
    // Byte-exact when the input's context was canonical (pairs sorted, no
    // legacy `00 00` empty encoding), the one freedom the parser allows.
    let at = match h.version {
        MessageVersion::V1 => 1 + 1 + 2 + 16,
        MessageVersion::V2 => 1 + 2 + 32,
    };
    let n = u16::from_be_bytes([data[at], data[at + 1]]) as usize;
    if context::serialize(&h.encryption_context).unwrap() == data[at + 2..at + 2 + n] {
        assert_eq!(&data[..len - auth_len], &body[..], "a canonical header did not serialize to its own bytes");
    }
}

/// Encryption-context codec round trip.
pub fn context(data: &[u8]) {
    let Ok(ctx) = context::parse(data) else { return };
    let Ok(bytes) = context::serialize(&ctx) else {
        // Only the size limit refuses a parsed context.
        assert!(data.len() > 2 && !ctx.is_empty());
        return;
    };
    assert_eq!(context::parse(&bytes).expect("a serialized context parses"), ctx);
    assert_eq!(context::serialize(&context::parse(&bytes).unwrap()).unwrap(), bytes);
    if data == [0, 0] {
        assert!(bytes.is_empty(), "the legacy empty encoding serializes as nothing");
    } else {
        assert_eq!(bytes.len(), data.len(), "serialization changed the length of a well-formed context");
    }
}

/// Whole-message decryption: one-shot and random access agree.
pub fn decrypt(data: &[u8]) {
    let c = client();
    let k = keyring();
    let opts = DecryptOptions::default();
    let one = block_on(c.decrypt(k, data, &opts));
    let owned = data.to_vec();
    let range = block_on(c.decrypt_range(k, &owned, 0, u64::MAX, &opts));
    match (&one, &range) {
        (Ok((pt, h)), Ok(r)) => {
            assert!(r.plaintext == *pt, "a whole-message range read gives {} bytes, decryption {}", r.plaintext.len(), pt.len());
            assert_eq!(&r.header, h);
            assert_eq!(r.plaintext_len, pt.len() as u64);
            assert_eq!(&parse_header(data).unwrap().0, h);
        }
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("decrypts, but a range read of all of it fails: {:?} {}", e.code(), e.detail()),
        (Err(e), Ok(_)) => panic!("a range read of all of it succeeds, but decryption fails: {:?} {}", e.code(), e.detail()),
    }
}

/// Streaming decryption in arbitrary chunkings agrees with one-shot.
pub fn stream_chunked(data: &[u8]) {
    let Some((&seed, message)) = data.split_first() else { return };
    let c = client();
    let k = aes_keyring();
    let opts = DecryptOptions::default();
    let one = block_on(c.decrypt(k, message, &opts));

    // Chunk sizes from a small generator seeded by the first byte: up to 1,
    // 16, 256 or 4096 bytes at a time.
    let max = [1usize, 16, 256, 4096][(seed & 3) as usize];
    let mut state = u32::from(seed) | 0x9e37_7900;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        1 + state as usize % max
    };
    let mut dec = c.decryptor(&opts);
    let mut out = Vec::new();
    let streamed = block_on(async {
        let mut rest = message;
        loop {
            let n = next().min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            if dec.update(chunk, &mut out).await? == DecryptStatus::NeedDataKey {
                dec.unwrap_data_key(k).await?;
                dec.update(&[], &mut out).await?;
            }
            if rest.is_empty() {
                break;
            }
        }
        dec.finish()
    });
    match (&one, &streamed) {
        (Ok((pt, h)), Ok(h2)) => {
            assert!(out == *pt, "streaming gives {} bytes, one-shot {}", out.len(), pt.len());
            assert_eq!(h, h2);
        }
        (Err(e1), Err(e2)) => {
            assert_eq!(e1.code(), e2.code(), "one-shot says {}, streaming says {}", e1.detail(), e2.detail());
        }
        (Ok(_), Err(e)) => panic!("streaming fails where one-shot succeeds: {:?} {}", e.code(), e.detail()),
        (Err(e), Ok(_)) => panic!("streaming succeeds where one-shot fails: {:?} {}", e.code(), e.detail()),
    }
}

/// The gateway's request-body checks.
pub fn gateway_request(data: &[u8]) {
    use kms_envelope_server::api::{parse_json, valid_object_id, DecryptRequest, LoginRequest, ShareRequest};
    if let Ok(r) = DecryptRequest::parse(data) {
        assert!(valid_object_id(&r.object));
        assert_eq!(r.encryption_context.get("object"), Some(&r.object));
        assert!((1..=1024).contains(&r.ciphertext_blob.len()));
        assert_eq!(context::parse(&r.serialized_context).unwrap(), r.encryption_context);
    }
    let _ = parse_json::<LoginRequest>(data);
    let _ = parse_json::<ShareRequest>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if valid_object_id(s) {
            assert!(!s.contains(['/', '.', '\\', '\0', '\'', '"', ';', ' ']));
        }
    }
}
