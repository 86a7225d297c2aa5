//! The exhaustive tamper suite (native only: tens of thousands of decrypts).
//! Every message changed is refused with the expected code, by one-shot and
//! by streaming decryption, and streaming never releases a byte that is not
//! the plaintext or that comes from the damaged frame or after it.
//!
//! `core_tests.rs` has the suites kms-envelope writes (every bit of 0x0478
//! and 0x0578 messages, truncation at every offset, trailing data); here:
//! peer messages of all 11 suites, every frame pair swapped and every frame
//! duplicated, the EDK list altered, and the context changed.

use std::sync::Arc;

use crate::shared::*;
use kms_envelope::*;

const S0478: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;
const S0578: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384;

/// Checks one tampered message; returns the error code.
fn refused(client: &Client, k: &dyn Keyring, ct: &[u8], pt: &[u8], codes: &[&str], what: &str) -> &'static str {
    let e = now(client.decrypt(k, ct, &DecryptOptions::default())).err().unwrap_or_else(|| panic!("{what}: accepted"));
    assert!(codes.contains(&e.code().as_str()), "{what}: got {e}");
    for chunks in [&[ct.len()][..], &[1], &[7, 64, 3]] {
        let (released, r) = stream_decrypt(client, k, ct, chunks);
        let e2 = r.err().unwrap_or_else(|| panic!("{what}: accepted by streaming"));
        assert_eq!(e2.code(), e.code(), "{what}: streaming in {chunks:?} disagrees");
        assert!(released.len() <= pt.len() && released == pt[..released.len()], "{what}: released bytes that are not the plaintext");
    }
    e.code().as_str()
}

/// Offsets of the body's frames: (start, length), the final frame last.
fn frames(ct: &[u8], frame_len: usize, iv_len: usize) -> Vec<(usize, usize)> {
    let (_, hl) = parse_header(ct).unwrap();
    let mut out = Vec::new();
    let mut at = hl;
    loop {
        if ct[at..at + 4] == [0xff; 4] {
            let n = u32::from_be_bytes(ct[at + 8 + iv_len..at + 12 + iv_len].try_into().unwrap()) as usize;
            out.push((at, 8 + iv_len + 4 + n + 16));
            return out;
        }
        out.push((at, 4 + iv_len + frame_len + 16));
        at += 4 + iv_len + frame_len + 16;
    }
}

#[test]
fn a_changed_bit_anywhere_in_a_peer_message_of_every_suite_is_refused() {
    // The smallest framed and non-framed raw-AES message of each suite
    // from the Python and Node SDKs; one bit per byte, rotating.
    use crate::cases::vectors::{keyring_for, parse, VECTORS};
    let client = legacy_client();
    let mut picked: std::collections::BTreeMap<(String, bool), (usize, &str, &[u8], usize)> = Default::default();
    for (name, bytes) in VECTORS {
        let v = parse(name, bytes);
        if v.get("expect") != "success" || !v.get("keyring").starts_with("raw-aes") {
            continue;
        }
        let len: usize = v.get("plaintext").split_once(' ').unwrap().0.parse().unwrap();
        let key = (v.get("suite").to_owned(), v.get("frame-length") == "0");
        if picked.get(&key).is_none_or(|p| v.message.len() < p.0) {
            picked.insert(key, (v.message.len(), v.name, v.message, len));
        }
    }
    assert_eq!(picked.keys().filter(|k| !k.1).count(), 11, "a framed message of every suite");
    let mut total = 0;
    for ((suite, non_framed), (_, name, ct, len)) in &picked {
        let v = parse(name, VECTORS.iter().find(|(n, _)| n == name).unwrap().1);
        let k = keyring_for(v.get("keyring"));
        let pt = plaintext(*len);
        assert_eq!(now(client.decrypt(k.as_ref(), ct, &DecryptOptions::default())).unwrap().0, pt, "{name}");
        let (h, hl) = parse_header(ct).unwrap();
        let signed = h.suite.signature().is_some();
        for byte in 0..ct.len() {
            let mut t = ct.to_vec();
            t[byte] ^= 1 << (byte % 8);
            let what = format!("{name} ({suite}, non-framed {non_framed}): bit {} of byte {byte}", byte % 8);
            let code = refused(&client, k.as_ref(), &t, &pt, ALL_TAMPER_CODES, &what);
            if byte >= hl && !signed {
                // In the body: the frame (or the non-framed block, whose
                // length field may now claim too much) fails.
                assert!(["FRAME_AUTH_FAILED", "FRAME_SEQUENCE", "MALFORMED_MESSAGE", "TRUNCATED", "TRAILING_DATA", "LIMIT_EXCEEDED"].contains(&code), "{what}: {code}");
            }
            total += 1;
        }
    }
    assert!(total > 5_000, "{total}");
}

/// Codes a tampered message may get, depending on what the change hits.
const ALL_TAMPER_CODES: &[&str] = &[
    "MALFORMED_MESSAGE", "TRUNCATED", "TRAILING_DATA", "UNSUPPORTED_VERSION", "UNSUPPORTED_SUITE", "COMMITMENT_MISMATCH",
    "HEADER_AUTH_FAILED", "FRAME_AUTH_FAILED", "FRAME_SEQUENCE", "SIGNATURE_INVALID", "NO_DECRYPTABLE_KEY",
    "INVALID_ENCRYPTION_CONTEXT", "COMMITMENT_POLICY", "LIMIT_EXCEEDED",
];

#[test]
fn every_pair_of_frames_swapped_and_every_frame_duplicated_is_refused() {
    let k = raw_aes(256);
    for suite in [S0478, S0578] {
        let pt = plaintext(16 * 5 + 7);
        let ct = encrypt(&k, &pt, &opts(suite, 16, &ctx(&[("k", "v")])));
        let fr = frames(&ct, 16, 12);
        assert_eq!(fr.len(), 6);
        let (_, hl) = parse_header(&ct).unwrap();
        let end = fr.last().map(|(a, n)| a + n).unwrap();
        let build = |order: &[usize]| {
            let mut v = ct[..hl].to_vec();
            for &i in order {
                v.extend_from_slice(&ct[fr[i].0..fr[i].0 + fr[i].1]);
            }
            v.extend_from_slice(&ct[end..]);
            v
        };
        assert_eq!(build(&[0, 1, 2, 3, 4, 5]), ct);
        let client = Client::new();
        for i in 0..fr.len() {
            for j in i + 1..fr.len() {
                let mut order: Vec<usize> = (0..fr.len()).collect();
                order.swap(i, j);
                refused(&client, &k, &build(&order), &pt, &["FRAME_SEQUENCE"], &format!("{suite:?}: frames {i} and {j} swapped"));
            }
            for at in 0..=fr.len() {
                let mut order: Vec<usize> = (0..fr.len()).collect();
                order.insert(at, i);
                // After the final frame a copy is trailing data, or (signed)
                // a footer that does not parse or verify.
                let codes: &[&str] = if at == fr.len() || (i == fr.len() - 1 && at == i) { &["TRAILING_DATA", "SIGNATURE_INVALID", "MALFORMED_MESSAGE", "TRUNCATED"] } else { &["FRAME_SEQUENCE"] };
                refused(&client, &k, &build(&order), &pt, codes, &format!("{suite:?}: frame {i} duplicated at {at}"));
            }
            let order: Vec<usize> = (0..fr.len()).filter(|&x| x != i).collect();
            refused(&client, &k, &build(&order), &pt, &["FRAME_SEQUENCE", "TRUNCATED"], &format!("{suite:?}: frame {i} dropped"));
        }
    }
}

/// A message with its header body replaced by `h` serialized; the header's
/// authentication tag and the body are the original ones.
fn with_header(ct: &[u8], h: &Header) -> Vec<u8> {
    let (orig, hl) = parse_header(ct).unwrap();
    let body_len = orig.serialize_body().unwrap().len();
    assert_eq!(hl, body_len + 16, "v2: the header auth is a 16-byte tag");
    let mut v = h.serialize_body().unwrap();
    v.extend_from_slice(&ct[body_len..]);
    v
}

#[test]
fn an_altered_edk_list_is_refused() {
    // Three EDKs: raw AES-256 (generator), raw AES-128 and raw RSA.
    let aes256: Arc<dyn Keyring> = Arc::new(raw_aes(256));
    let aes128: Arc<dyn Keyring> = Arc::new(raw_aes(128));
    let rsa: Arc<dyn Keyring> = Arc::new(raw_rsa(RsaPadding::OaepSha256));
    let all = MultiKeyring::new(Some(aes256.clone()), vec![aes128.clone(), rsa.clone()]).unwrap();
    let pt = plaintext(100);
    let ct = encrypt(&all, &pt, &opts(S0478, 64, &ctx(&[("owner", "alice")])));
    let (h, _) = parse_header(&ct).unwrap();
    assert_eq!(h.encrypted_data_keys.len(), 3);
    let client = Client::new();
    assert_eq!(now(client.decrypt(&all, &ct, &DecryptOptions::default())).unwrap().0, pt);
    let keyrings: [(&str, &dyn Keyring); 4] = [("all", &all), ("aes-256", aes256.as_ref()), ("aes-128", aes128.as_ref()), ("rsa", rsa.as_ref())];

    // Removed: whoever can still unwrap gets the data key, and the header
    // tag (over the EDK list) fails; whoever cannot, has no key.
    for i in 0..3 {
        let mut t = h.clone();
        t.encrypted_data_keys.remove(i);
        let msg = with_header(&ct, &t);
        for (who, k) in keyrings {
            let own = ["aes-256", "aes-128", "rsa"].iter().position(|w| *w == who);
            let can = own.is_none_or(|w| w != i);
            let want = if can { "HEADER_AUTH_FAILED" } else { "NO_DECRYPTABLE_KEY" };
            refused(&client, k, &msg, &pt, &[want], &format!("EDK {i} removed, keyring {who}"));
        }
    }
    // Reordered, duplicated: the header tag fails.
    for order in [[1, 0, 2], [2, 1, 0], [0, 2, 1]] {
        let mut t = h.clone();
        t.encrypted_data_keys = order.iter().map(|&i| h.encrypted_data_keys[i].clone()).collect();
        refused(&client, &all, &with_header(&ct, &t), &pt, &["HEADER_AUTH_FAILED"], &format!("EDKs in order {order:?}"));
    }
    let mut t = h.clone();
    t.encrypted_data_keys.push(h.encrypted_data_keys[0].clone());
    refused(&client, &all, &with_header(&ct, &t), &pt, &["HEADER_AUTH_FAILED"], "an EDK duplicated");
    // Provider id, provider info (key name, IV) or ciphertext changed:
    // that EDK no longer unwraps for its keyring.
    for i in 0..3 {
        let own: &dyn Keyring = [aes256.as_ref(), aes128.as_ref(), rsa.as_ref()][i];
        let changes: Vec<(&str, Box<dyn Fn(&mut EncryptedDataKey)>)> = vec![
            ("provider id", Box::new(|e: &mut EncryptedDataKey| e.provider_id.push('x'))),
            ("provider info, first byte", Box::new(|e: &mut EncryptedDataKey| e.provider_info[0] ^= 1)),
            ("provider info, last byte", Box::new(|e: &mut EncryptedDataKey| *e.provider_info.last_mut().unwrap() ^= 1)),
            ("ciphertext", Box::new(|e: &mut EncryptedDataKey| e.ciphertext[3] ^= 1)),
            ("ciphertext, shortened", Box::new(|e: &mut EncryptedDataKey| { e.ciphertext.pop(); })),
        ];
        for (what, change) in &changes {
            let mut t = h.clone();
            change(&mut t.encrypted_data_keys[i]);
            let msg = with_header(&ct, &t);
            refused(&client, own, &msg, &pt, &["NO_DECRYPTABLE_KEY"], &format!("EDK {i}: {what}, its own keyring"));
            refused(&client, &all, &msg, &pt, &["HEADER_AUTH_FAILED"], &format!("EDK {i}: {what}, all keyrings"));
        }
    }
    // No EDK at all: not a message.
    let (_, hl) = parse_header(&ct).unwrap();
    let body = h.serialize_body().unwrap();
    let ctx_len = u16::from_be_bytes([body[35], body[36]]) as usize;
    let at = 37 + ctx_len;
    let mut v = body[..at].to_vec();
    v.extend_from_slice(&[0, 0]);
    let edk_end = {
        let mut p = at + 2;
        for _ in 0..3 {
            for _ in 0..3 {
                let n = u16::from_be_bytes([body[p], body[p + 1]]) as usize;
                p += 2 + n;
            }
        }
        p
    };
    v.extend_from_slice(&body[edk_end..]);
    v.extend_from_slice(&ct[hl - 16..]);
    refused(&client, &all, &v, &pt, &["MALFORMED_MESSAGE"], "an empty EDK list");
}

#[test]
fn a_changed_context_is_refused() {
    let pt = plaintext(50);
    let c = ctx(&[("owner", "alice"), ("object", "o-1")]);
    let changes: Vec<(&str, Box<dyn Fn(&mut EncryptionContext)>)> = vec![
        ("value changed", Box::new(|c: &mut EncryptionContext| { c.insert("owner".into(), "mallory".into()); })),
        ("pair added", Box::new(|c: &mut EncryptionContext| { c.insert("role".into(), "admin".into()); })),
        ("pair removed", Box::new(|c: &mut EncryptionContext| { c.remove("object"); })),
        ("emptied", Box::new(|c: &mut EncryptionContext| c.clear())),
    ];
    // Raw AES binds the context into the wrapped key: no key. Raw RSA
    // does not: the header tag fails. KMS RSA binds its digest, which KMS
    // returns: the answer does not fit the context.
    let (kms, _) = kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256);
    let keyrings: Vec<(&str, Box<dyn Keyring>, &str)> = vec![
        ("raw AES", Box::new(raw_aes(256)), "NO_DECRYPTABLE_KEY"),
        ("raw RSA", Box::new(raw_rsa(RsaPadding::OaepSha1)), "HEADER_AUTH_FAILED"),
        ("KMS RSA", Box::new(kms), "KMS_RESPONSE_INVALID"),
    ];
    let client = Client::new();
    for (name, k, want) in &keyrings {
        let ct = encrypt(k.as_ref(), &pt, &opts(S0478, 32, &c));
        let (h, _) = parse_header(&ct).unwrap();
        for (what, change) in &changes {
            let mut t = h.clone();
            change(&mut t.encryption_context);
            refused(&client, k.as_ref(), &with_header(&ct, &t), &pt, &[want], &format!("{name}: context {what}"));
        }
    }
}
