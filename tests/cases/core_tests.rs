//! Behaviour of the core: round trips, streaming, tampering, limits and every error code.

use std::sync::Arc;

use crate::shared::*;
use kms_envelope::*;
use rsa::Oaep;
use crate::case;

const S0478: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;
const S0578: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384;

fn all_keyrings() -> Vec<(String, Box<dyn Keyring>)> {
    let mut v: Vec<(String, Box<dyn Keyring>)> = Vec::new();
    for bits in [128, 192, 256] {
        v.push((format!("raw-aes-{bits}"), Box::new(raw_aes(bits))));
    }
    for p in [RsaPadding::Pkcs1, RsaPadding::OaepSha1, RsaPadding::OaepSha256, RsaPadding::OaepSha384, RsaPadding::OaepSha512] {
        v.push((format!("raw-rsa-{}", p.as_str()), Box::new(raw_rsa(p))));
    }
    for a in [KmsRsaAlgorithm::RsaesOaepSha1, KmsRsaAlgorithm::RsaesOaepSha256] {
        v.push((format!("kms-rsa-{}", a.as_str()), Box::new(kms_rsa(a).0)));
    }
    v
}

case! {
    fn round_trip_every_keyring_size_and_frame_length() {
        let contexts = contexts();
        for (i, (name, k)) in all_keyrings().iter().enumerate() {
            for (j, f) in [1u32, 128, 4096].into_iter().enumerate() {
                let f = f as usize;
                for (n, len) in [0, 1, f.saturating_sub(1), f, f + 1, 3 * f + 5].into_iter().enumerate() {
                    let c = &contexts[(i + j + n) % contexts.len()];
                    let pt = plaintext(len);
                    let ct = encrypt(k.as_ref(), &pt, &opts(S0478, f as u32, c));
                    let (got, h) = now(Client::new().decrypt(k.as_ref(), &ct, &DecryptOptions::default()))
                        .unwrap_or_else(|e| panic!("{name} f={f} len={len}: {e}"));
                    assert_eq!(got, pt, "{name} f={f} len={len}");
                    assert_eq!(&h.encryption_context, c);
                    assert_eq!(h.frame_length as usize, f);
                }
            }
        }
    }
}

case! {
    fn header_layout_matches_the_spec() {
        let (k, _) = kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256);
        let c = ctx(&[("owner", "alice")]);
        let ct = encrypt(&k, b"abc", &opts(S0478, 65536, &c));
        let (h, len) = parse_header(&ct).unwrap();
        assert_eq!(ct[0], 2);
        assert_eq!(&ct[1..3], &[0x04, 0x78]);
        assert_eq!(h.version, MessageVersion::V2);
        assert_eq!(h.message_id.len(), 32);
        assert_eq!(h.encrypted_data_keys.len(), 1);
        let edk = &h.encrypted_data_keys[0];
        assert_eq!(edk.provider_id, "aws-kms-rsa");
        assert_eq!(edk.provider_info, KEY_ARN.as_bytes());
        assert_eq!(edk.ciphertext.len(), 256);
        assert_eq!(h.content_type, ContentType::Framed);
        // v2 fixed overhead is 92 bytes plus the context and EDK fields.
        let ctx_len = 2 + 2 + 5 + 2 + 5;
        let edk_len = (2 + 11) + (2 + KEY_ARN.len()) + (2 + 256);
        assert_eq!(len, 92 + ctx_len + edk_len);
        // One final frame of 3 bytes, full-frame rule aside: 40 bytes of overhead.
        assert_eq!(ct.len(), len + 40 + 3);
        assert_eq!(&ct[len..len + 8], &[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1]);
    }
}

case! {
    fn kms_rsa_wraps_the_context_digest_and_the_data_key() {
        let (k, kms) = kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256);
        let c = ctx(&[("b", "2"), ("a", "1")]);
        let ct = encrypt(&k, b"x", &opts(S0478, 64, &c));
        let (h, _) = parse_header(&ct).unwrap();
        let sk = private_key(RSA_2048);
        let pt = sk.decrypt(Oaep::new::<sha2::Sha256>(), &h.encrypted_data_keys[0].ciphertext).unwrap();
        assert_eq!(pt.len(), 80);
        // SHA-384 of the canonical context: 00 02 | 00 01 'a' 00 01 '1' | 00 01 'b' 00 01 '2'
        use sha2::Digest;
        let ser = [0, 2, 0, 1, b'a', 0, 1, b'1', 0, 1, b'b', 0, 1, b'2'];
        assert_eq!(&pt[..48], &sha2::Sha384::digest(ser)[..]);
        assert_eq!(decrypt(&k, &ct).unwrap(), b"x");
        assert_eq!(*kms.calls.lock().unwrap(), 2 - 1);
    }
}

case! {
    fn kms_rsa_refuses_aliases_small_keys_and_signing_suites() {
        assert_eq!(code(KmsRsaKeyring::new("alias/files", None, KmsRsaAlgorithm::RsaesOaepSha256)), "INVALID_ARGUMENT");
        assert_eq!(
            code(KmsRsaKeyring::new("arn:aws:kms:us-west-2:111122223333:alias/files", None, KmsRsaAlgorithm::RsaesOaepSha256)),
            "INVALID_ARGUMENT"
        );
        assert_eq!(code(KmsRsaKeyring::new(KEY_ARN, Some(RSA_1024_PUB), KmsRsaAlgorithm::RsaesOaepSha256)), "INVALID_KEY");
        assert_eq!(code(KmsRsaKeyring::new(KEY_ARN, Some(b"not a key"), KmsRsaAlgorithm::RsaesOaepSha256)), "INVALID_KEY");
        let (k, _) = kms_rsa(KmsRsaAlgorithm::RsaesOaepSha1);
        let r = now(Client::new().encrypt(&k, b"x", &opts(S0578, 64, &ctx(&[]))));
        assert_eq!(code(r), "UNSUPPORTED_SUITE_FOR_KEYRING");
        // And on decrypt: a 0x0578 message carrying an aws-kms-rsa EDK.
        let aes = raw_aes(256);
        let signed = encrypt(&aes, b"x", &opts(S0578, 64, &ctx(&[])));
        assert_eq!(code(decrypt(&k, &signed)), "UNSUPPORTED_SUITE_FOR_KEYRING");
    }
}

case! {
    fn kms_rsa_checks_the_response() {
        let (k, kms) = kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256);
        let ct = encrypt(&k, b"secret", &opts(S0478, 64, &ctx(&[("a", "1")])));
        *kms.mode.lock().unwrap() = FakeKmsMode::WrongKeyId;
        assert_eq!(code(decrypt(&k, &ct)), "KMS_RESPONSE_INVALID");
        *kms.mode.lock().unwrap() = FakeKmsMode::Throttle;
        let e = decrypt(&k, &ct).unwrap_err();
        assert_eq!(e.code().as_str(), "KMS_ERROR");
        assert!(e.detail().contains("ThrottlingException"));
        *kms.mode.lock().unwrap() = FakeKmsMode::Normal;
        assert_eq!(decrypt(&k, &ct).unwrap(), b"secret");
        // No KMS Decrypt function configured.
        let enc_only = KmsRsaKeyring::new(KEY_ARN, Some(RSA_2048_PUB), KmsRsaAlgorithm::RsaesOaepSha256).unwrap();
        assert_eq!(code(decrypt(&enc_only, &ct)), "INVALID_ARGUMENT");
    }
}

case! {
    fn kms_rsa_context_binding_catches_a_transplanted_key() {
        // Same key, same EDK length: move message A's EDK into message B.
        let (k, _) = kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256);
        let a = encrypt(&k, b"for alice", &opts(S0478, 64, &ctx(&[("owner", "alice")])));
        let b = encrypt(&k, b"for bobby", &opts(S0478, 64, &ctx(&[("owner", "bobby")])));
        let (ha, _) = parse_header(&a).unwrap();
        let (hb, _) = parse_header(&b).unwrap();
        let ea = &ha.encrypted_data_keys[0].ciphertext;
        let eb = &hb.encrypted_data_keys[0].ciphertext;
        let pos = b.windows(eb.len()).position(|w| w == eb.as_slice()).unwrap();
        let mut forged = b.clone();
        forged[pos..pos + ea.len()].copy_from_slice(ea);
        assert_eq!(code(decrypt(&k, &forged)), "KMS_RESPONSE_INVALID");
    }
}

case! {
    fn signing_suite_round_trip_and_footer() {
        let k = raw_rsa(RsaPadding::OaepSha256);
        for len in [0usize, 1, 100, 4096, 5000] {
            let pt = plaintext(len);
            let ct = encrypt(&k, &pt, &opts(S0578, 1024, &ctx(&[("a", "b")])));
            let (h, _) = parse_header(&ct).unwrap();
            let pk = &h.encryption_context[PUBLIC_KEY_CONTEXT_KEY];
            assert_eq!(pk.len(), 68, "base64 of a compressed P-384 point");
            assert_eq!(decrypt(&k, &ct).unwrap(), pt);
            // Footer: UInt16 length then a DER P-384 signature (at most 104 bytes).
            let (_, hl) = parse_header(&ct).unwrap();
            let full = if len == 0 { 0 } else { (len - 1) / 1024 };
            let body = full * (1024 + 32) + (len - full * 1024) + 40;
            let footer = &ct[hl + body..];
            let sig_len = u16::from_be_bytes([footer[0], footer[1]]) as usize;
            assert_eq!(footer.len(), 2 + sig_len);
            assert_eq!(sig_len, 103, "static-length P-384 signature, as the Python SDK writes");
        }
    }
}

case! {
    fn reserved_context_keys_are_refused_on_encrypt() {
        let k = raw_aes(256);
        let r = now(Client::new().encrypt(&k, b"x", &opts(S0478, 64, &ctx(&[("aws-crypto-public-key", "x")]))));
        assert_eq!(code(r), "RESERVED_ENCRYPTION_CONTEXT_KEY");
    }
}

case! {
    fn legacy_suites_cannot_be_used_to_encrypt() {
        let k = raw_aes(256);
        for s in AlgorithmSuite::ALL.iter().filter(|s| !s.is_committing()) {
            let r = now(Client::new().encrypt(&k, b"x", &opts(*s, 64, &ctx(&[]))));
            assert_eq!(code(r), "COMMITMENT_POLICY_VIOLATION", "{s}");
        }
        let r = now(Client::new().encrypt(&k, b"x", &opts(S0478, 0, &ctx(&[]))));
        assert_eq!(code(r), "INVALID_ARGUMENT");
    }
}

case! {
    fn streaming_in_random_chunks_matches_one_shot() {
        let k = raw_aes(256);
        let mut rng = Rng(0x9E3779B97F4A7C15);
        for suite in [S0478, S0578] {
            for f in [1u32, 17, 512, 4096] {
                let len = rng.below(3 * f as usize + 20);
                let pt = plaintext(len);
                let chunks: Vec<usize> = (0..7).map(|_| 1 + rng.below(2 * f as usize + 3)).collect();
                let ct = stream_encrypt(&k, &pt, &opts(suite, f, &ctx(&[("f", "x")])), &chunks);
                assert_eq!(decrypt(&k, &ct).unwrap(), pt, "one-shot decrypt of streamed encrypt");
                let (got, r) = stream_decrypt(&Client::new(), &k, &ct, &chunks);
                r.unwrap();
                assert_eq!(got, pt);
                let (got, r) = stream_decrypt(&Client::new(), &k, &ct, &[1]);
                r.unwrap();
                assert_eq!(got, pt);
            }
        }
    }
}

case! {
    fn encrypted_size_is_exact() {
        let k = raw_aes(256);
        for suite in [S0478, S0578] {
            for (f, len) in [(1u32, 0usize), (1, 5), (64, 63), (64, 64), (64, 65), (4096, 10_000)] {
                let o = opts(suite, f, &ctx(&[("a", "b")]));
                let enc = now(Client::new().encryptor(&k, &o)).unwrap();
                let predicted = enc.encrypted_size(len as u64).unwrap();
                let mut out = Vec::new();
                let mut enc = enc;
                now(enc.update(&plaintext(len), &mut out)).unwrap();
                now(enc.finish(&mut out)).unwrap();
                assert_eq!(out.len() as u64, predicted, "{suite} f={f} len={len}");
            }
        }
        assert_eq!(encrypted_size(100, 0, 0, S0478), None);
        assert_eq!(encrypted_size(100, u64::MAX / 2, 1, S0478), None, "more than 2^32 - 1 frames");
    }
}

case! {
    fn exact_multiple_ends_with_a_full_final_frame() {
        let k = raw_aes(128);
        let ct = encrypt(&k, &plaintext(64), &opts(S0478, 32, &ctx(&[])));
        let (_, hl) = parse_header(&ct).unwrap();
        // one regular frame (4+12+32+16) then a final frame with 32 bytes
        assert_eq!(ct.len(), hl + 64 + 40 + 32);
        let fin = hl + 64;
        assert_eq!(&ct[fin..fin + 8], &[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 2]);
        assert_eq!(&ct[fin + 20..fin + 24], &[0, 0, 0, 32]);
    }
}

/// Decrypts `ct` every way and checks it fails with one of `codes`, and that
/// streaming never releases plaintext that is not a prefix of the original,
/// nor the frame the damage is in.
fn assert_rejected(k: &dyn Keyring, ct: &[u8], pt: &[u8], codes: &[&str], what: &str) {
    let client = Client::new();
    let e = now(client.decrypt(k, ct, &DecryptOptions::default())).expect_err(what);
    assert!(codes.contains(&e.code().as_str()), "{what}: got {e}");
    let (released, r) = stream_decrypt(&client, k, ct, &[7, 64, 3]);
    let e = r.expect_err(what);
    assert!(codes.contains(&e.code().as_str()), "{what} (streaming): got {e}");
    assert!(released.len() <= pt.len() && released == pt[..released.len()], "{what}: released bytes that are not the plaintext");
}

case! {
    fn every_bit_flip_is_detected() {
        let k = raw_aes(256);
        for suite in [S0478, S0578] {
            let pt = plaintext(40);
            let ct = encrypt(&k, &pt, &opts(suite, 16, &ctx(&[("k", "v")])));
            let (_, hl) = parse_header(&ct).unwrap();
            for byte in 0..ct.len() {
                for bit in 0..8 {
                    let mut t = ct.clone();
                    t[byte] ^= 1 << bit;
                    let (released, r) = stream_decrypt(&Client::new(), &k, &t, &[ct.len()]);
                    let e = r.expect_err("flip accepted");
                    assert!(released == pt[..released.len()], "flip at {byte}: wrong plaintext released");
                    if byte >= hl {
                        // Damage in frame i: nothing from frame i on is released.
                        let frame = (byte - hl) / (16 + 32);
                        assert!(released.len() <= frame * 16, "flip at {byte} ({e}): released {}", released.len());
                    } else {
                        assert!(released.is_empty());
                    }
                }
            }
        }
    }
}

case! {
    fn targeted_tampering_gives_the_right_code() {
        let k = raw_aes(256);
        let pt = plaintext(40);
        let ct = encrypt(&k, &pt, &opts(S0478, 16, &ctx(&[("k", "v")])));
        let (h, hl) = parse_header(&ct).unwrap();
        let flip = |i: usize| {
            let mut t = ct.clone();
            t[i] ^= 0x01;
            t
        };
        assert_rejected(&k, &flip(hl - 20), &pt, &["COMMITMENT_MISMATCH"], "commit key");
        assert_rejected(&k, &flip(hl - 1), &pt, &["HEADER_AUTH_FAILED"], "header tag");
        assert_rejected(&k, &flip(hl - 16 - 32 - 1), &pt, &["HEADER_AUTH_FAILED"], "frame length");
        assert_rejected(&k, &flip(3), &pt, &["COMMITMENT_MISMATCH"], "message id (the commit key derives from it)");
        assert_rejected(&k, &flip(hl + 20), &pt, &["FRAME_AUTH_FAILED"], "frame ciphertext");
        assert_rejected(&k, &flip(hl + 47), &pt, &["FRAME_AUTH_FAILED"], "frame tag");
        assert_rejected(&k, &flip(hl + 10), &pt, &["FRAME_AUTH_FAILED"], "frame IV");
        assert_rejected(&k, &flip(hl + 3), &pt, &["FRAME_SEQUENCE"], "frame sequence number");
        let mut v = ct.clone();
        v[0] = 3;
        assert_rejected(&k, &v, &pt, &["UNSUPPORTED_VERSION"], "version");
        let mut v = ct.clone();
        v[1..3].copy_from_slice(&[0x09, 0x99]);
        assert_rejected(&k, &v, &pt, &["UNSUPPORTED_SUITE"], "suite");
        // Changing the context value changes the AES keyring's AAD and the header tag.
        let pos = ct.windows(4).position(|w| w == [b'k', 0, 1, b'v']).unwrap() + 3;
        let mut v = ct.clone();
        v[pos] = b'w';
        assert_rejected(&k, &v, &pt, &["NO_DECRYPTABLE_KEY", "HEADER_AUTH_FAILED"], "context");
        // Content type 3 is not a thing.
        let ct_pos = hl - 16 - 32 - 4 - 1;
        let mut v = ct.clone();
        v[ct_pos] = 3;
        assert_rejected(&k, &v, &pt, &["MALFORMED_MESSAGE"], "content type");
        assert_eq!(h.encrypted_data_keys.len(), 1);
    }
}

case! {
    fn truncation_and_trailing_bytes() {
        let k = raw_aes(256);
        for suite in [S0478, S0578] {
            let pt = plaintext(40);
            let ct = encrypt(&k, &pt, &opts(suite, 16, &ctx(&[])));
            for cut in 0..ct.len() {
                assert_rejected(&k, &ct[..cut], &pt, &["TRUNCATED"], &format!("cut at {cut}"));
            }
            let mut extra = ct.clone();
            extra.push(0);
            assert_rejected(&k, &extra, &pt, &["TRAILING_DATA"], "one byte after the end");
            let mut twice = ct.clone();
            twice.extend_from_slice(&ct);
            assert_rejected(&k, &twice, &pt, &["TRAILING_DATA"], "two messages");
        }
    }
}

case! {
    fn reordered_duplicated_and_dropped_frames() {
        let k = raw_aes(256);
        let pt = plaintext(16 * 3 + 5);
        let ct = encrypt(&k, &pt, &opts(S0478, 16, &ctx(&[])));
        let (_, hl) = parse_header(&ct).unwrap();
        let fr = 4 + 12 + 16 + 16;
        let frames: Vec<&[u8]> = (0..3).map(|i| &ct[hl + i * fr..hl + (i + 1) * fr]).collect();
        let last = &ct[hl + 3 * fr..];
        let build = |order: &[usize]| {
            let mut v = ct[..hl].to_vec();
            for &i in order {
                v.extend_from_slice(frames[i]);
            }
            v.extend_from_slice(last);
            v
        };
        assert_rejected(&k, &build(&[1, 0, 2]), &pt, &["FRAME_SEQUENCE"], "swapped");
        assert_rejected(&k, &build(&[0, 0, 1, 2]), &pt, &["FRAME_SEQUENCE"], "duplicated");
        assert_rejected(&k, &build(&[0, 2]), &pt, &["FRAME_SEQUENCE"], "dropped");
        assert_rejected(&k, &build(&[0, 1]), &pt, &["FRAME_SEQUENCE"], "last regular frame dropped");
        // Final frame moved earlier: the message ends, the rest is trailing.
        let mut v = ct[..hl].to_vec();
        v.extend_from_slice(last);
        assert_rejected(&k, &v, &pt, &["FRAME_SEQUENCE"], "final frame first");
    }
}

case! {
    fn signature_tampering() {
        let k = raw_aes(256);
        let pt = plaintext(40);
        let ct = encrypt(&k, &pt, &opts(S0578, 16, &ctx(&[])));
        let n = ct.len();
        let mut t = ct.clone();
        t[n - 10] ^= 0x40;
        assert_rejected(&k, &t, &pt, &["SIGNATURE_INVALID"], "signature byte");
        // The final frame is withheld until the signature verifies.
        let (released, r) = stream_decrypt(&Client::new(), &k, &t, &[1]);
        assert_eq!(code(r), "SIGNATURE_INVALID");
        assert_eq!(released.len(), 32, "only the two regular frames");
        // A signature from another message of the same key does not verify either.
        let other = encrypt(&k, &pt, &opts(S0578, 16, &ctx(&[])));
        let (_, hl) = parse_header(&ct).unwrap();
        let body_end = hl + 2 * 48 + 40 + 8;
        let (_, ohl) = parse_header(&other).unwrap();
        let mut mixed = ct[..body_end].to_vec();
        mixed.extend_from_slice(&other[ohl + 2 * 48 + 40 + 8..]);
        assert_rejected(&k, &mixed, &pt, &["SIGNATURE_INVALID"], "foreign signature");
    }
}

case! {
    fn wrong_keys_and_required_context() {
        let k = raw_aes(256);
        let ct = encrypt(&k, b"data", &opts(S0478, 64, &ctx(&[("owner", "alice")])));
        let other = RawAesKeyring::new("kms-envelope-test", "aes-256", &[9u8; 32]).unwrap();
        assert_eq!(code(decrypt(&other, &ct)), "NO_DECRYPTABLE_KEY");
        let unrelated = RawAesKeyring::new("elsewhere", "aes-256", AES_256).unwrap();
        let e = decrypt(&unrelated, &ct).unwrap_err();
        assert_eq!(e.code().as_str(), "NO_DECRYPTABLE_KEY");
        assert!(e.detail().contains("no encrypted data key matches"));
        let rsa_other = RawRsaKeyring::new("kms-envelope-test", "rsa-2048", RsaPadding::OaepSha256, None, Some(RSA_3072)).unwrap();
        let ct2 = encrypt(&raw_rsa(RsaPadding::OaepSha256), b"data", &opts(S0478, 64, &ctx(&[])));
        assert_eq!(code(decrypt(&rsa_other, &ct2)), "NO_DECRYPTABLE_KEY");
        // Reproduced context: a stored pair must match; a pair the header
        // does not store is authenticated (and the AES keyring's AAD fails).
        let req = |pairs: &[(&str, &str)]| DecryptOptions { encryption_context: ctx(pairs), ..DecryptOptions::default() };
        assert!(now(Client::new().decrypt(&k, &ct, &req(&[("owner", "alice")]))).is_ok());
        assert_eq!(code(now(Client::new().decrypt(&k, &ct, &req(&[("owner", "bob")])))), "ENCRYPTION_CONTEXT_MISMATCH");
        assert_eq!(code(now(Client::new().decrypt(&k, &ct, &req(&[("tenant", "x")])))), "NO_DECRYPTABLE_KEY");
    }
}

case! {
    fn multi_keyring_wraps_for_every_member_and_limits_edks() {
        let children: Vec<Arc<dyn Keyring>> = vec![Arc::new(raw_rsa(RsaPadding::OaepSha1)), Arc::new(kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256).0)];
        let multi = MultiKeyring::new(Some(Arc::new(raw_aes(128))), children).unwrap();
        let ct = encrypt(&multi, b"shared", &opts(S0478, 64, &ctx(&[])));
        let (h, _) = parse_header(&ct).unwrap();
        assert_eq!(h.encrypted_data_keys.len(), 3);
        assert_eq!(decrypt(&raw_aes(128), &ct).unwrap(), b"shared");
        assert_eq!(decrypt(&raw_rsa(RsaPadding::OaepSha1), &ct).unwrap(), b"shared");
        assert_eq!(decrypt(&kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256).0, &ct).unwrap(), b"shared");
        assert_eq!(decrypt(&multi, &ct).unwrap(), b"shared");
        // Decrypt tries members in order and reports every failure.
        let (failing_kms, fake) = kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256);
        *fake.mode.lock().unwrap() = FakeKmsMode::Throttle;
        let bad_aes = RawAesKeyring::new("kms-envelope-test", "aes-128", &[1u8; 16]).unwrap();
        let m2 = MultiKeyring::new(None, vec![Arc::new(bad_aes), Arc::new(failing_kms)]).unwrap();
        let e = decrypt(&m2, &ct).unwrap_err();
        assert_eq!(e.code().as_str(), "NO_DECRYPTABLE_KEY");
        assert!(e.detail().contains("AES-GCM unwrap failed") && e.detail().contains("ThrottlingException"), "{e}");
        // Eleven EDKs exceed the default maximum of ten.
        let many: Vec<Arc<dyn Keyring>> = (0..10)
            .map(|i| Arc::new(RawAesKeyring::new("ns", &format!("k{i}"), &[i as u8; 16]).unwrap()) as Arc<dyn Keyring>)
            .collect();
        let big = MultiKeyring::new(Some(Arc::new(raw_aes(256))), many).unwrap();
        // SPEC client-apis/encrypt.md: the same maximum applies on encrypt.
        assert_eq!(code(now(Client::new().encrypt(&big, b"x", &opts(S0478, 64, &ctx(&[]))))), "LIMIT_EXCEEDED");
        let lenient = Client::new().with_max_encrypted_data_keys(Some(11));
        let ct = now(lenient.encrypt(&big, b"x", &opts(S0478, 64, &ctx(&[])))).unwrap();
        assert_eq!(code(decrypt(&raw_aes(256), &ct)), "LIMIT_EXCEEDED");
        let unlimited = Client::new().with_max_encrypted_data_keys(None);
        assert!(now(unlimited.encrypt(&big, b"x", &opts(S0478, 64, &ctx(&[])))).is_ok());
        assert!(now(lenient.decrypt(&raw_aes(256), &ct, &DecryptOptions::default())).is_ok());
        // The same limits, for a store that checks headers it cannot decrypt.
        assert_eq!(code(DecryptLimits::default().parse_header(&ct)), "LIMIT_EXCEEDED");
        let eleven = DecryptLimits { max_encrypted_data_keys: Some(11), ..DecryptLimits::default() };
        let (h, len) = eleven.parse_header(&ct).unwrap();
        assert_eq!((h.encrypted_data_keys.len(), len), (11, parse_header(&ct).unwrap().1));
        assert_eq!(code(eleven.parse_header(&ct[..len - 1])), "TRUNCATED");
        let short = DecryptLimits { max_header_length: len - 1, ..eleven };
        assert_eq!(code(short.parse_header(&ct)), "LIMIT_EXCEEDED");
        assert_eq!(code(short.parse_header(&ct[..len - 1])), "TRUNCATED");
        assert_eq!(code(DecryptLimits { max_header_length: 10, ..eleven }.parse_header(&ct[..100])), "LIMIT_EXCEEDED");
        assert_eq!(code(DecryptLimits { max_frame_length: 32, ..eleven }.parse_header(&ct)), "LIMIT_EXCEEDED");
        assert_eq!(code(MultiKeyring::new(None, vec![])), "INVALID_ARGUMENT");
    }
}

case! {
    fn limits_and_invalid_keys() {
        let k = raw_aes(256);
        let ct = encrypt(&k, &plaintext(100), &opts(S0478, 64, &ctx(&[])));
        let tight = Client::new().with_limits(DecryptLimits { max_frame_length: 32, ..DecryptLimits::default() });
        assert_eq!(code(now(tight.decrypt(&k, &ct, &DecryptOptions::default()))), "LIMIT_EXCEEDED");
        let tiny_header = Client::new().with_limits(DecryptLimits { max_header_length: 50, ..DecryptLimits::default() });
        assert_eq!(code(now(tiny_header.decrypt(&k, &ct[..100], &DecryptOptions::default()))), "LIMIT_EXCEEDED");
        assert_eq!(code(RawAesKeyring::new("ns", "n", &[0u8; 17])), "INVALID_KEY");
        assert_eq!(code(RawAesKeyring::new("aws-kms", "n", &[0u8; 16])), "INVALID_ARGUMENT");
        assert_eq!(code(RawRsaKeyring::new("ns", "n", RsaPadding::Pkcs1, Some(RSA_1024_PUB), None)), "INVALID_KEY");
        assert_eq!(code(RawRsaKeyring::new("ns", "n", RsaPadding::Pkcs1, None, None)), "INVALID_ARGUMENT");
        assert_eq!(code(RsaPadding::parse("oaep-md5")), "INVALID_ARGUMENT");
        assert_eq!(code(KmsRsaAlgorithm::parse("SYMMETRIC_DEFAULT")), "INVALID_ARGUMENT");
        assert_eq!(code(AlgorithmSuite::parse("0x0000")), "UNSUPPORTED_SUITE");
        assert_eq!(code(CommitmentPolicy::parse("forbid-encrypt-allow-decrypt")), "INVALID_ARGUMENT");
        assert_eq!(AlgorithmSuite::parse("0x0478").unwrap(), S0478);
        // Public-key-only keyrings cannot decrypt; private-only cannot encrypt.
        let pub_only = RawRsaKeyring::new("kms-envelope-test", "rsa-2048", RsaPadding::OaepSha256, Some(RSA_2048_PUB), None).unwrap();
        let c2 = encrypt(&pub_only, b"x", &opts(S0478, 64, &ctx(&[])));
        assert_eq!(code(decrypt(&pub_only, &c2)), "INVALID_ARGUMENT");
        let priv_only = RawRsaKeyring::new("kms-envelope-test", "rsa-2048", RsaPadding::OaepSha256, None, Some(RSA_2048)).unwrap();
        assert_eq!(decrypt(&priv_only, &c2).unwrap(), b"x");
        assert_eq!(code(now(Client::new().encrypt(&priv_only, b"x", &opts(S0478, 64, &ctx(&[]))))), "INVALID_ARGUMENT");
    }
}

case! {
    fn malformed_context_in_a_header() {
        // Build a header whose context repeats a key: the parser refuses it.
        let k = raw_aes(256);
        let ct = encrypt(&k, b"x", &opts(S0478, 64, &ctx(&[("aa", "1"), ("ab", "1")])));
        let mut t = ct.clone();
        let pos = t.windows(2).position(|w| w == b"ab").unwrap();
        t[pos + 1] = b'a';
        assert_rejected(&k, &t, b"x", &["INVALID_ENCRYPTION_CONTEXT"], "duplicate key");
        let mut t = ct.clone();
        t[pos] = 0xFF;
        assert_rejected(&k, &t, b"x", &["INVALID_ENCRYPTION_CONTEXT"], "invalid UTF-8");
        // Oversized contexts are refused on encrypt.
        let big = ctx(&[("k", &"v".repeat(70000))]);
        assert_eq!(code(now(Client::new().encrypt(&k, b"x", &opts(S0478, 64, &big)))), "INVALID_ENCRYPTION_CONTEXT");
    }
}

case! {
    fn misuse_of_the_streaming_api() {
        let k = raw_aes(256);
        let ct = encrypt(&k, b"x", &opts(S0478, 64, &ctx(&[])));
        let client = Client::new();
        let mut dec = client.decryptor(&DecryptOptions::default());
        let mut out = Vec::new();
        assert_eq!(code(dec.materials()), "INVALID_STATE");
        assert_eq!(now(dec.update(&ct[..10], &mut out)).unwrap(), DecryptStatus::NeedInput);
        assert_eq!(now(dec.update(&ct[10..], &mut out)).unwrap(), DecryptStatus::NeedDataKey);
        assert!(dec.header().is_some());
        let m = dec.materials().unwrap();
        let m = now(k.on_decrypt(m, &dec.header().unwrap().encrypted_data_keys.clone())).unwrap();
        now(dec.set_data_key(m)).unwrap();
        assert_eq!(now(dec.update(&[], &mut out)).unwrap(), DecryptStatus::Done);
        assert_eq!(out, b"x");
        assert_eq!(code(dec.materials()), "INVALID_STATE");
        // After a failure, the decryptor stays failed.
        let mut dec = client.decryptor(&DecryptOptions::default());
        let mut bad = ct.clone();
        bad[0] = 9;
        assert_eq!(code(now(dec.update(&bad, &mut out))), "UNSUPPORTED_VERSION");
        assert_eq!(code(now(dec.update(&ct, &mut out))), "INVALID_STATE");
        assert_eq!(code(dec.finish()), "INVALID_STATE");
    }
}

/// An AEAD backend that always fails: errors from a plugged-in backend surface as they are.
struct BrokenAead;
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl AeadProvider for BrokenAead {
    async fn new_key(&self, _key: &[u8]) -> Result<Box<dyn FrameAead>> {
        Ok(Box::new(BrokenAead))
    }
}
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl FrameAead for BrokenAead {
    async fn seal(&self, _: &[u8; 12], _: &[u8], _: &[u8], _: &mut Vec<u8>) -> Result<()> {
        Err(Error::new(ErrorCode::EncryptionFailed, "backend unavailable"))
    }
    async fn open(&self, _: &[u8; 12], _: &[u8], _: &[u8], _: &mut Vec<u8>) -> Result<()> {
        Err(Error::new(ErrorCode::FrameAuthFailed, "backend unavailable"))
    }
}

case! {
    fn the_aead_seam_is_used_and_its_errors_surface() {
        let client = Client::new().with_aead(Arc::new(BrokenAead));
        let r = now(client.encrypt(&raw_aes(256), b"x", &opts(S0478, 64, &ctx(&[]))));
        assert_eq!(code(r), "ENCRYPTION_FAILED");
        let ct = encrypt(&raw_aes(256), b"x", &opts(S0478, 64, &ctx(&[])));
        assert_eq!(code(now(client.decrypt(&raw_aes(256), &ct, &DecryptOptions::default()))), "HEADER_AUTH_FAILED");
    }
}

case! {
    fn error_codes_are_stable_strings() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "duplicate {c}");
            assert_eq!(ErrorCode::from_str_code(c.as_str()), Some(*c));
            assert!(c.as_str().chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'));
        }
        assert_eq!(ErrorCode::ALL.len(), 25);
        let e = Error::new(ErrorCode::Truncated, "x");
        assert_eq!(e.to_string(), "TRUNCATED: x");
    }
}

case! {
    fn secrets_do_not_print() {
        let k = raw_aes(256);
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&format!("{:?}", AES_256)));
        let m = EncryptionMaterials {
            suite: S0478,
            encryption_context: ctx(&[]),
            data_key: Some(DataKey::new(vec![0x5A; 32])),
            encrypted_data_keys: vec![],
            plaintext_length: None,
        };
        let dbg = format!("{m:?}");
        assert!(dbg.contains("<redacted>") && !dbg.contains("90, 90"), "{dbg}");
    }
}
