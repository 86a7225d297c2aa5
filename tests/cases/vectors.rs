//! Test vectors made by the official SDKs, checked in as files under
//! `tests/vectors/` (see its README). Each file is a text header of
//! `name: value` lines, a blank line, then the message bytes; the native and
//! wasm suites decrypt every one with no peer installed.

use sha2::{Digest, Sha256};

use crate::shared::*;
use kms_envelope::*;
use crate::case;

include!("../vectors/index.rs");

pub struct Vector {
    pub name: &'static str,
    pub fields: Vec<(String, String)>,
    pub message: &'static [u8],
}

impl Vector {
    pub fn find(&self, k: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    pub fn get(&self, k: &str) -> &str {
        self.fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("{}: no {k}", self.name))
    }
}

pub fn parse(name: &'static str, bytes: &'static [u8]) -> Vector {
    let split = bytes.windows(2).position(|w| w == b"\n\n").expect("blank line after the vector header");
    let head = core::str::from_utf8(&bytes[..split]).unwrap();
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("kms-envelope test vector"), "{name}");
    let fields = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap_or_else(|| panic!("{name}: bad line {l:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    Vector { name, fields, message: &bytes[split + 2..] }
}

/// The keyring a vector names: `raw-aes-BITS`, `raw-rsa-PADDING-BITS`, `kms-rsa-ALGORITHM`.
pub fn keyring_for(spec: &str) -> Box<dyn Keyring> {
    if let Some(bits) = spec.strip_prefix("raw-aes-") {
        return Box::new(raw_aes(bits.parse().unwrap()));
    }
    if let Some(rest) = spec.strip_prefix("raw-rsa-") {
        let (padding, bits) = rest.rsplit_once('-').unwrap();
        let (public, private) = match bits {
            "2048" => (RSA_2048_PUB, RSA_2048),
            "3072" => (RSA_3072_PUB, RSA_3072),
            "4096" => (RSA_4096_PUB, RSA_4096),
            _ => panic!("no rsa-{bits} test key"),
        };
        let name = format!("rsa-{bits}");
        return Box::new(
            RawRsaKeyring::new("kms-envelope-test", &name, RsaPadding::parse(padding).unwrap(), Some(public), Some(private)).unwrap(),
        );
    }
    if let Some(alg) = spec.strip_prefix("kms-rsa-") {
        return Box::new(kms_rsa(KmsRsaAlgorithm::parse(alg).unwrap()).0);
    }
    panic!("unknown keyring {spec}")
}

pub fn check(v: &Vector) {
    let k = keyring_for(v.get("keyring"));
    let client = match v.get("policy") {
        "require-encrypt-allow-decrypt" => legacy_client(),
        _ => Client::new(),
    };
    let expect = v.get("expect");
    let mut opts = DecryptOptions::default();
    if let Some(c) = v.find("decrypt-context") {
        opts.encryption_context = serde_json::from_str(c).unwrap_or_else(|e| panic!("{}: decrypt-context: {e}", v.name));
    }
    match v.find("decrypt-options") {
        None => {}
        Some("refuse-signed") => opts.refuse_signed = true,
        Some(o) => panic!("{}: unknown decrypt-options {o:?}", v.name),
    }
    let r = now(client.decrypt(k.as_ref(), v.message, &opts));
    if expect == "success" {
        let (pt, h) = r.unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let (len, sha) = v.get("plaintext").split_once(' ').unwrap();
        assert_eq!(pt.len(), len.parse::<usize>().unwrap(), "{}", v.name);
        assert_eq!(hex::encode(Sha256::digest(&pt)), sha, "{}", v.name);
        assert_eq!(pt, plaintext(pt.len()), "{}", v.name);
        assert_eq!(format!("0x{:04X}", h.suite.id()), v.get("suite"), "{}", v.name);
        // The streaming decryptor agrees, fed a byte at a time around frame edges.
        let (spt, sr) = stream_decrypt(&client, k.as_ref(), v.message, &[1, 13, 700]);
        sr.unwrap_or_else(|e| panic!("{} (streaming): {e}", v.name));
        assert_eq!(spt, pt);
    } else {
        let e = r.expect_err(v.name);
        assert_eq!(e.code().as_str(), expect, "{}: {e}", v.name);
        // Streamed in small pieces, the same refusal.
        let mut dec = client.decryptor(&opts);
        let mut out = Vec::new();
        let streamed = (|| {
            for piece in v.message.chunks(97) {
                if now(dec.update(piece, &mut out))? == DecryptStatus::NeedDataKey {
                    now(dec.unwrap_data_key(k.as_ref()))?;
                }
            }
            now(dec.update(&[], &mut out))?;
            dec.finish().map(|_| ())
        })();
        assert_eq!(code(streamed), expect, "{} (streaming)", v.name);
    }
}

/// One failure vector: the message is refused with the code its file names.
pub fn check_failure(name: &'static str, bytes: &'static [u8]) {
    let v = parse(name, bytes);
    assert_ne!(v.get("expect"), "success", "{name}");
    assert!(v.get("generator").contains(' ') && v.get("rule").starts_with("SPEC ") || v.get("rule").starts_with("kms-envelope"), "{name}: says how it was made and which rule it breaks");
    check(&v);
}

mod failures {
    use super::check_failure;
    use crate::case;
    include!("../vectors/failures.rs");

    case! {
        fn failure_vectors_cover_the_rules() {
            assert!(FAILURES.len() >= 60, "only {} failure vectors", FAILURES.len());
        }
    }
}

case! {
    fn peer_vectors_decrypt() {
        assert!(VECTORS.len() >= 100, "only {} vectors", VECTORS.len());
        let mut suites = std::collections::BTreeSet::new();
        for (name, bytes) in VECTORS {
            let v = parse(name, bytes);
            check(&v);
            suites.insert(v.get("suite").to_owned());
        }
        assert_eq!(suites.len(), 11, "vectors cover every suite: {suites:?}");
    }
}

case! {
    fn legacy_vectors_are_refused_by_the_default_policy() {
        let mut refused = 0;
        for (name, bytes) in VECTORS {
            let v = parse(name, bytes);
            if v.get("policy") == "require-encrypt-allow-decrypt" && v.get("expect") == "success" {
                let k = keyring_for(v.get("keyring"));
                let r = now(Client::new().decrypt(k.as_ref(), v.message, &DecryptOptions::default()));
                assert_eq!(code(r), "COMMITMENT_POLICY_VIOLATION", "{name}");
                refused += 1;
            }
        }
        assert!(refused > 0);
    }
}
