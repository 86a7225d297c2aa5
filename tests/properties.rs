//! Property tests (proptest): for random plaintext sizes, frame lengths,
//! suites and chunkings, decrypt(encrypt(x)) = x — one-shot, streaming in
//! the given chunks, and through range reads of random ranges; and a random
//! single-byte change anywhere is always an error, never a different plaintext.
#![cfg(not(target_arch = "wasm32"))]

use futures::executor::block_on;
use kms_envelope::*;
use proptest::prelude::*;

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("props", "aes-256", &[0x42; 32]).unwrap()
}

fn message(len: usize, frame: u32, signed: bool) -> (Vec<u8>, Vec<u8>) {
    let pt: Vec<u8> = (0..len).map(|i| (i.wrapping_mul(131) ^ (i >> 7)) as u8).collect();
    let suite = if signed {
        AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384
    } else {
        AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY
    };
    let mut opts = EncryptOptions { suite, frame_length: frame, ..Default::default() };
    opts.encryption_context.insert("p".into(), "q".into());
    let ct = block_on(Client::new().encrypt(&keyring(), &pt, &opts)).unwrap();
    (pt, ct)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn round_trips_in_any_chunking_and_range(
        len in 0usize..12_000,
        frame in 1u32..3_000,
        signed in any::<bool>(),
        chunks in proptest::collection::vec(1usize..4_000, 1..12),
        a in 0u64..13_000,
        b in 0u64..13_000,
    ) {
        let (pt, ct) = message(len, frame, signed);
        let k = keyring();
        let (one_shot, _) = block_on(Client::new().decrypt(&k, &ct, &DecryptOptions::default())).unwrap();
        prop_assert_eq!(&one_shot, &pt);

        let mut dec = Client::new().decryptor(&DecryptOptions::default());
        let (mut out, mut at, mut i) = (Vec::new(), 0usize, 0usize);
        while at < ct.len() {
            let n = chunks[i % chunks.len()].min(ct.len() - at);
            if block_on(dec.update(&ct[at..at + n], &mut out)).unwrap() == DecryptStatus::NeedDataKey {
                block_on(dec.unwrap_data_key(&k)).unwrap();
                block_on(dec.update(&[], &mut out)).unwrap();
            }
            at += n;
            i += 1;
        }
        dec.finish().unwrap();
        prop_assert_eq!(&out, &pt);

        let (s, e) = (a.min(b), a.max(b));
        // A signed message's range that stops short of the end must opt in
        // to an unchecked signature, and then says it was not checked.
        let e2 = (e as usize).min(len);
        let s2 = (s as usize).min(e2);
        let short = signed && e2 < len;
        let strict = block_on(Client::new().decrypt_range(&k, &ct, s, e, &DecryptOptions::default()));
        // (A footer whose length the message size leaves ambiguous is read
        // whole, and then verified.)
        if short {
            match strict {
                Err(err) => prop_assert_eq!(err.code(), ErrorCode::SignaturePolicy),
                Ok(r) => prop_assert_eq!(r.signature, SignatureCheck::Verified),
            }
        }
        let o = DecryptOptions { allow_unverified_signature: true, ..DecryptOptions::default() };
        let r = block_on(Client::new().decrypt_range(&k, &ct, s, e, &o)).unwrap();
        prop_assert_eq!(&r.plaintext[..], &pt[s2..e2]);
        let fits = match (signed, short) {
            (false, _) => r.signature == SignatureCheck::Unsigned,
            (true, false) => r.signature == SignatureCheck::Verified,
            (true, true) => r.signature != SignatureCheck::Unsigned,
        };
        prop_assert!(fits, "signature {:?} for signed={} short={}", r.signature, signed, short);
    }

    #[test]
    fn a_changed_byte_is_always_an_error(
        len in 0usize..6_000,
        frame in 1u32..2_000,
        signed in any::<bool>(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (_, mut ct) = message(len, frame, signed);
        let i = at.index(ct.len());
        ct[i] ^= flip;
        let r = block_on(Client::new().decrypt(&keyring(), &ct, &DecryptOptions::default()));
        prop_assert!(r.is_err(), "byte {} changed, yet it decrypted", i);
    }
}
