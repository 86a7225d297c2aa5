//! Random-access decryption: the result equals the plaintext slice for many
//! messages and ranges; only the header and the covering frames are read;
//! every frame used is verified, and frames outside the range are not read.

use std::sync::Mutex;

use crate::case;
use crate::shared::*;
use kms_envelope::*;

const S0478: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;
const S0578: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384;

/// Serves a message from memory and records every read.
struct Recorded {
    bytes: Vec<u8>,
    reads: Mutex<Vec<(u64, usize)>>,
}

impl Recorded {
    fn new(bytes: Vec<u8>) -> Recorded {
        Recorded { bytes, reads: Mutex::new(Vec::new()) }
    }
    fn reads(&self) -> Vec<(u64, usize)> {
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl RangeSource for Recorded {
    async fn size(&self) -> Result<u64> {
        Ok(self.bytes.len() as u64)
    }
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.reads.lock().unwrap().push((offset, len));
        self.bytes[..].read_at(offset, len).await
    }
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 { 0 } else { self.0 % n }
    }
}

fn range(k: &dyn Keyring, src: &dyn RangeSource, start: u64, end: u64) -> Result<RangePlaintext> {
    now(Client::new().decrypt_range(k, src, start, end, &DecryptOptions::default()))
}

/// A range read that accepts a signature it cannot check.
fn unverified(k: &dyn Keyring, src: &dyn RangeSource, start: u64, end: u64) -> Result<RangePlaintext> {
    let o = DecryptOptions { allow_unverified_signature: true, ..DecryptOptions::default() };
    now(Client::new().decrypt_range(k, src, start, end, &o))
}

/// Checks the reads of one range request: the header read (from 0, at most
/// 4 KiB for these headers), then nothing outside the covering frames, and
/// all of them.
fn check_reads(reads: &[(u64, usize)], header_fetch: u64, cover: (u64, u64), what: &str) {
    let mut covered = 0u64;
    for &(o, n) in reads {
        let e = o + n as u64;
        if e <= header_fetch {
            continue; // the header read
        }
        assert!(o >= cover.0.max(header_fetch.min(cover.0)) && e <= cover.1, "{what}: read {o}..{e} outside the covering frames {cover:?}");
        covered += n as u64;
    }
    let needed = cover.1.saturating_sub(cover.0.max(header_fetch));
    assert_eq!(covered, needed, "{what}: covering frames {cover:?} not read exactly once (header read {header_fetch})");
}

case! {
    fn range_reads_return_the_plaintext_slice_and_read_only_covering_frames() {
        let k = raw_aes(256);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for f in [7u32, 128, 4096] {
            let fl = f as u64;
            for len in [0u64, 1, fl - 1, fl, fl + 1, 5 * fl, 5 * fl + 3, 40_000] {
                let pt = plaintext(len as usize);
                let ct = encrypt(&k, &pt, &opts(S0478, f, &ctx(&[("owner", "alice")])));
                let (_, header_len) = parse_header(&ct).unwrap();
                let header_fetch = (ct.len() as u64).min(4096);
                let src = Recorded::new(ct.clone());
                let stride = fl + 32;
                let frames = if len == 0 { 0 } else { (len - 1) / fl }; // regular frames
                let mut ranges = vec![(0, 0), (0, 1), (0, len), (len.saturating_sub(1), len), (fl - 1, fl + 1), (fl, 2 * fl), (len, len + 10), (3, 2)];
                for _ in 0..12 {
                    let a = rng.below(len + 1);
                    ranges.push((a, a + rng.below(len + 1 - a)));
                }
                for (start, end) in ranges {
                    let what = format!("f={f} len={len} range {start}..{end}");
                    let r = range(&k, &src, start, end).unwrap_or_else(|e| panic!("{what}: {e}"));
                    let e = end.min(len);
                    let s = start.min(e); // as `slice` clamps
                    assert_eq!(r.plaintext, pt[s as usize..e as usize], "{what}");
                    assert_eq!((r.start, r.end, r.plaintext_len), (s, e, len), "{what}");
                    assert_eq!(r.header.encryption_context["owner"], "alice");
                    // The frames [first, last] cover the range; reaching the end adds the final frame.
                    let reaches_end = e == len;
                    let reads = src.reads();
                    if s < e || reaches_end {
                        let first = if s < e { s / fl } else { frames };
                        let last = if reaches_end { frames } else { (e - 1) / fl };
                        let from = header_len as u64 + first * stride;
                        let to = if last == frames { ct.len() as u64 } else { header_len as u64 + (last + 1) * stride };
                        check_reads(&reads, header_fetch, (from, to), &what);
                    } else {
                        assert!(reads.iter().all(|&(o, n)| o + n as u64 <= header_fetch), "{what}: an empty range reads only the header");
                    }
                }
            }
        }
    }
}

case! {
    fn range_reads_verify_the_frames_they_use_and_skip_the_others() {
        let k = raw_aes(256);
        let f = 256u64;
        let pt = plaintext(10 * f as usize + 17);
        let ct = encrypt(&k, &pt, &opts(S0478, f as u32, &ctx(&[])));
        let (_, h) = parse_header(&ct).unwrap();
        // A flipped byte inside frame 4 (0-based 3).
        let mut bad = ct.clone();
        bad[h + 3 * (f as usize + 32) + 40] ^= 1;
        let src = Recorded::new(bad);
        let e = range(&k, &src, 3 * f + 5, 3 * f + 6).unwrap_err();
        assert_eq!(e.code(), ErrorCode::FrameAuthFailed, "{e}");
        let e = range(&k, &src, 2 * f, 5 * f).unwrap_err();
        assert_eq!(e.code(), ErrorCode::FrameAuthFailed, "a range spanning the bad frame");
        let r = range(&k, &src, 0, 3 * f).unwrap();
        assert_eq!(r.plaintext, pt[..3 * f as usize], "frames before the bad one");
        let r = range(&k, &src, 4 * f, pt.len() as u64).unwrap();
        assert_eq!(r.plaintext, pt[4 * f as usize..], "frames after it, to the end");

        // Frames out of place: frames 2 and 3 swapped.
        let mut swapped = ct.clone();
        let s = f as usize + 32;
        let (a, b) = (h + s, h + 2 * s);
        let frame2 = swapped[a..a + s].to_vec();
        swapped.copy_within(b..b + s, a);
        swapped[b..b + s].copy_from_slice(&frame2);
        let e = range(&k, &Recorded::new(swapped), f, f + 1).unwrap_err();
        assert_eq!(e.code(), ErrorCode::FrameSequence, "{e}");

        // The header is always verified; the data key must open it.
        let mut bad_header = ct.clone();
        bad_header[h - 5] ^= 1; // inside the header's authentication tag
        assert_eq!(range(&k, &Recorded::new(bad_header), 0, 1).unwrap_err().code(), ErrorCode::HeaderAuthFailed);
        let other = RawAesKeyring::new("kms-envelope-test", "aes-256", &[9u8; 32]).unwrap();
        assert!(range(&other, &Recorded::new(ct.clone()), 0, 1).is_err());

        // Truncation and trailing bytes are caught when the range reaches the end.
        let cut = &ct[..ct.len() - 5];
        assert!(range(&k, &Recorded::new(cut.to_vec()), 9 * f, pt.len() as u64).is_err());
        let mut longer = ct.clone();
        longer.push(0);
        assert!(range(&k, &Recorded::new(longer), 9 * f, pt.len() as u64).is_err());
    }
}

case! {
    fn range_reads_of_signed_messages_check_the_signature_at_the_end() {
        let k = raw_aes(256);
        let f = 4096u64;
        let pt = plaintext(6 * f as usize + 100);
        let ct = encrypt(&k, &pt, &opts(S0578, f as u32, &ctx(&[("a", "b")])));
        let src = Recorded::new(ct.clone());
        // A middle range cannot check the signature: refused unless allowed,
        // before any data key is unwrapped, and then it says so.
        assert_eq!(range(&k, &src, f + 3, 2 * f + 9).unwrap_err().code(), ErrorCode::SignaturePolicy);
        let src = Recorded::new(ct.clone());
        let r = unverified(&k, &src, f + 3, 2 * f + 9).unwrap();
        assert_eq!(r.plaintext, pt[f as usize + 3..2 * f as usize + 9]);
        assert_eq!(r.signature, SignatureCheck::NotChecked);
        assert!(src.reads().iter().map(|r| r.1).sum::<usize>() < ct.len(), "a middle range does not read everything");
        let src = Recorded::new(ct.clone());
        let r = range(&k, &src, 5 * f, pt.len() as u64).unwrap();
        assert_eq!(r.plaintext, pt[5 * f as usize..]);
        assert_eq!(r.signature, SignatureCheck::Verified);
        let read: usize = src.reads().iter().map(|r| r.1).sum();
        assert!(read >= ct.len(), "reaching the end reads the whole message to check the signature");
        // A forged signature fails a range that reaches the end, not one that does not.
        let mut forged = ct.clone();
        let n = forged.len();
        forged[n - 10] ^= 1;
        let src = Recorded::new(forged);
        assert_eq!(range(&k, &src, 5 * f, pt.len() as u64).unwrap_err().code(), ErrorCode::SignatureInvalid);
        assert_eq!(unverified(&k, &src, 0, f).unwrap().signature, SignatureCheck::NotChecked);
        // Unsigned messages: nothing to check.
        let plain = encrypt(&k, &pt, &opts(S0478, f as u32, &ctx(&[])));
        assert_eq!(range(&k, &Recorded::new(plain), 0, f).unwrap().signature, SignatureCheck::Unsigned);
    }
}

case! {
    fn range_reads_find_the_footer_despite_look_alike_bytes() {
        // Bytes inside the signature that read as another length prefix
        // (0x00, l at l + 2 bytes from the end) must not make the layout
        // ambiguous: only a prefix followed by a DER SEQUENCE header counts.
        let k = raw_aes(256);
        let f = 4096u64;
        let pt = plaintext(6 * f as usize + 100);
        let ct = encrypt(&k, &pt, &opts(S0578, f as u32, &ctx(&[])));
        let n = ct.len();
        for l in [20usize, 57, 99] {
            let mut m = ct.clone();
            m[n - 2 - l] = 0;
            m[n - 1 - l] = l as u8;
            let src = Recorded::new(m.clone());
            let r = unverified(&k, &src, f + 3, 2 * f + 9).unwrap();
            assert_eq!(r.plaintext, pt[f as usize + 3..2 * f as usize + 9]);
            let read: usize = src.reads().iter().map(|r| r.1).sum();
            assert!(read < m.len(), "look-alike prefix {l}: read {read} of {} bytes", m.len());
        }
    }
}

case! {
    fn range_reads_of_peer_messages() {
        // Messages from the Python and Node SDKs in every framed suite, among
        // them sizes that are a multiple of the frame length (which peers may
        // end with an empty final frame) and signatures of every length (the
        // Node SDK does not pad its DER signatures): the layout must add up
        // for all of them.
        use crate::cases::vectors::{keyring_for, parse, VECTORS};
        let mut checked = 0;
        for (name, bytes) in VECTORS {
            let v = parse(name, bytes);
            if v.get("expect") != "success" || v.get("frame-length") == "0" || v.get("keyring").contains("4096") {
                continue;
            }
            let client = Client::new().with_commitment_policy(CommitmentPolicy::parse(v.get("policy")).unwrap());
            let o = DecryptOptions { allow_unverified_signature: true, ..DecryptOptions::default() };
            let range = |k: &dyn Keyring, src: &dyn RangeSource, s, e| now(client.decrypt_range(k, src, s, e, &o));
            let len: u64 = v.get("plaintext").split_once(' ').unwrap().0.parse().unwrap();
            let pt = plaintext(len as usize);
            let k = keyring_for(v.get("keyring"));
            let src = Recorded::new(v.message.to_vec());
            for (s, e) in [(0, len), (len / 2, len), (0, len / 3 + 1), (len / 3, len / 2)] {
                let r = range(k.as_ref(), &src, s, e).unwrap_or_else(|err| panic!("{name} {s}..{e}: {err}"));
                let e2 = e.min(len);
                assert!(r.plaintext == pt[s.min(e2) as usize..e2 as usize], "{name} {s}..{e}: {} bytes", r.plaintext.len());
                assert_eq!(r.plaintext_len, len, "{name}");
            }
            checked += 1;
        }
        assert!(checked >= 150, "only {checked} peer messages");
    }
}
