#!/usr/bin/env python3
"""Writes the failure vectors under tests/vectors/failures/: messages every
reader must refuse, each with the error code kms-envelope gives (see
tests/vectors/README.md), and tests/vectors/failures.rs, which runs each as
its own test case natively, under Node and in Chromium.

    .venv/bin/python tests/interop/make_failure_vectors.py

Most are one precise change to a message an official SDK wrote (a checked-in
success vector); each file's `generator:` line names the source and the
change. Where the Python SDK can make the failing message itself (required
encryption context left out on decrypt), it does, through tests/interop/peer.py.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VECTORS = os.path.join(ROOT, "tests", "vectors")
OUT = os.path.join(VECTORS, "failures")
PY_VERSION = "python aws-encryption-sdk 4.0.7, aws-cryptographic-material-providers 1.11.3"


def load(rel):
    with open(os.path.join(VECTORS, rel), "rb") as f:
        data = f.read()
    head, message = data.split(b"\n\n", 1)
    fields = dict(l.split(": ", 1) for l in head.decode().splitlines()[1:])
    return fields, message


def u16(b, at):
    return struct.unpack(">H", b[at:at + 2])[0]


def u32(b, at):
    return struct.unpack(">I", b[at:at + 4])[0]


class Layout:
    """Offsets of a message's parts (SPEC data-format/message-header.md, message-body.md)."""

    def __init__(self, m):
        self.m = m
        self.version = m[0]
        p = 1
        if self.version == 1:
            self.type_at = 1
            p = 2
        self.suite_at = p
        self.suite = u16(m, p)
        p += 2
        self.id_at = p
        p += 16 if self.version == 1 else 32
        self.aad_len_at = p
        aad_len = u16(m, p)
        p += 2
        self.ctx_at, self.ctx_end = p, p + aad_len
        p = self.ctx_end
        self.edk_count_at = p
        count = u16(m, p)
        p += 2
        self.edks_at = p
        self.edks = []
        for _ in range(count):
            start = p
            fields = []
            for _ in range(3):
                n = u16(m, p)
                fields.append((p + 2, p + 2 + n))
                p += 2 + n
            self.edks.append((start, p, fields))
        self.edks_end = p
        self.content_type_at = p
        self.content_type = m[p]
        p += 1
        if self.version == 1:
            self.reserved_at = p
            p += 4
            self.iv_len_at = p
            p += 1
        self.frame_len_at = p
        self.frame_len = u32(m, p)
        p += 4
        if self.version == 2:
            self.commit_at = p
            p += 32
        self.body_end = p
        if self.version == 1:
            self.header_iv_at = p
            p += 12
        self.tag_at = p
        p += 16
        self.header_end = p
        self.frames = []
        if self.content_type == 2:
            while True:
                start = p
                seq = u32(m, p)
                if seq == 0xFFFFFFFF:
                    n = u32(m, p + 4 + 4 + 12)
                    end = p + 4 + 4 + 12 + 4 + n + 16
                    self.frames.append((start, end, True))
                    p = end
                    break
                end = p + 4 + 12 + self.frame_len + 16
                self.frames.append((start, end, False))
                p = end
        else:
            n = struct.unpack(">Q", m[p + 12:p + 20])[0]
            self.single = (p, p + 12 + 8 + n + 16)
            p = self.single[1]
        self.body_stop = p
        self.footer_at = p if p < len(m) else None


def flip(m, at, bit=1):
    b = bytearray(m)
    b[at] ^= bit
    return bytes(b)


def put(m, at, raw):
    return m[:at] + raw + m[at + len(raw):]


def with_context(m, L, pairs, count=None):
    """Replaces the stored context with PAIRS (a list, any order, duplicates allowed)."""
    ser = struct.pack(">H", len(pairs) if count is None else count)
    for k, v in pairs:
        k, v = k if isinstance(k, bytes) else k.encode(), v if isinstance(v, bytes) else v.encode()
        ser += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
    return m[:L.aad_len_at] + struct.pack(">H", len(ser)) + ser + m[L.ctx_end:]


def mutations():
    """(name, source vector, rule, change, expected code, message, extra header lines)."""
    out = []

    def add(name, src, code, change, message, rule, extra=()):
        out.append((name, src, code, change, message, rule, list(extra)))

    A = "python/python-0478-raw-aes-256-f4096-n8195.vec"
    fa, a = load(A)
    La = Layout(a)
    f1, f2, fin = La.frames
    rule = "SPEC data-format/message-header.md"
    add("v2-version-3", A, "UNSUPPORTED_VERSION", "version byte 0x02 -> 0x03", put(a, 0, b"\x03"), rule + " Version")
    add("v2-version-0", A, "UNSUPPORTED_VERSION", "version byte 0x02 -> 0x00", put(a, 0, b"\x00"), rule + " Version")
    add("base64-text", A, "UNSUPPORTED_VERSION", "the message base64-encoded (a common mistake)",
        __import__("base64").b64encode(a), "SPEC client-apis/decrypt.md Encrypted Message Format")
    add("v2-suite-unknown", A, "UNSUPPORTED_SUITE", "suite id 0x0478 -> 0x9999", put(a, La.suite_at, b"\x99\x99"), rule + " Algorithm Suite ID")
    add("v2-suite-zero", A, "UNSUPPORTED_SUITE", "suite id 0x0478 -> 0x0000", put(a, La.suite_at, b"\x00\x00"), rule + " Algorithm Suite ID")
    add("v2-suite-of-v1", A, "UNSUPPORTED_VERSION", "suite id 0x0478 -> 0x0178 (a v1 suite in a v2 header)", put(a, La.suite_at, b"\x01\x78"), rule + " Version")
    add("v2-zero-edks", A, "MALFORMED_MESSAGE", "encrypted data key count 1 -> 0, the key removed",
        a[:La.edk_count_at] + b"\x00\x00" + a[La.edks_end:], rule + " Encrypted Data Key Count")
    edk = a[La.edks[0][0]:La.edks[0][1]]
    add("v2-eleven-edks", A, "LIMIT_EXCEEDED", "the encrypted data key repeated 11 times (the default maximum is 10)",
        a[:La.edk_count_at] + struct.pack(">H", 11) + edk * 11 + a[La.edks_end:], "SPEC client-apis/decrypt.md maximum encrypted data keys")
    add("v2-edk-count-past-end", A, "TRUNCATED", "encrypted data key count 1 -> 2 (the second reads into the header's tail)",
        put(a, La.edk_count_at, b"\x00\x02"), rule + " Encrypted Data Keys")
    add("v2-duplicate-context-key", A, "INVALID_ENCRYPTION_CONTEXT", "stored context -> two pairs with the key \"k\"",
        with_context(a, La, [("k", "1"), ("k", "2")]), "SPEC framework/structures.md Encryption Context: unique keys")
    add("v2-context-not-utf8", A, "INVALID_ENCRYPTION_CONTEXT", "stored context -> a key of byte 0xFF",
        with_context(a, La, [(b"\xff", "v")]), "SPEC framework/structures.md Encryption Context: UTF-8")
    add("v2-context-count-high", A, "MALFORMED_MESSAGE", "stored context -> count 2, one pair",
        with_context(a, La, [("k", "v")], count=2), rule + " AAD")
    trailing = b"\x00\x01\x00\x01k\x00\x01v\x00\x00"
    add("v2-context-trailing-bytes", A, "MALFORMED_MESSAGE", "stored context -> one pair and 2 more bytes inside the AAD length",
        a[:La.aad_len_at] + struct.pack(">H", len(trailing)) + trailing + a[La.ctx_end:], rule + " AAD")
    add("v2-public-key-in-unsigned-suite", A, "RESERVED_ENCRYPTION_CONTEXT_KEY", "stored context -> aws-crypto-public-key added in suite 0x0478",
        with_context(a, La, [("aws-crypto-public-key", "A" * 44)]), "SPEC framework/default-cmm.md Decrypt Materials")
    add("v2-content-type-0", A, "MALFORMED_MESSAGE", "content type 0x02 -> 0x00", put(a, La.content_type_at, b"\x00"), rule + " Content Type")
    add("v2-content-type-3", A, "MALFORMED_MESSAGE", "content type 0x02 -> 0x03", put(a, La.content_type_at, b"\x03"), rule + " Content Type")
    add("v2-non-framed-with-frame-length", A, "MALFORMED_MESSAGE", "content type 0x02 -> 0x01, frame length kept at 4096",
        put(a, La.content_type_at, b"\x01"), rule + " Frame Length: 0 for non-framed")
    add("v2-framed-frame-length-0", A, "MALFORMED_MESSAGE", "frame length 4096 -> 0 with framed content",
        put(a, La.frame_len_at, b"\x00\x00\x00\x00"), rule + " Frame Length")
    add("v2-frame-length-over-limit", A, "LIMIT_EXCEEDED", "frame length 4096 -> 16 MiB + 1 (the default limit is 16 MiB)",
        put(a, La.frame_len_at, struct.pack(">I", (16 << 20) + 1)), "kms-envelope DecryptLimits::max_frame_length")
    add("v2-frame-length-changed", A, "HEADER_AUTH_FAILED", "frame length 4096 -> 4095 (the header tag covers it)",
        put(a, La.frame_len_at, struct.pack(">I", 4095)), "SPEC client-apis/decrypt.md Verify the header")
    add("v2-commit-key", A, "COMMITMENT_MISMATCH", "a bit of the commitment key flipped", flip(a, La.commit_at + 5), "SPEC client-apis/decrypt.md key commitment")
    add("v2-message-id", A, "COMMITMENT_MISMATCH", "a bit of the message id flipped (the commitment derives from it)", flip(a, La.id_at + 3), "SPEC framework/algorithm-suites.md key commitment")
    add("v2-header-tag", A, "HEADER_AUTH_FAILED", "a bit of the header tag flipped", flip(a, La.tag_at + 15, 0x80), "SPEC client-apis/decrypt.md Verify the header")
    add("v2-context-value", A, "NO_DECRYPTABLE_KEY", "stored context -> one changed pair (the raw AES keyring binds it)",
        with_context(a, La, [("owner", "mallory")]), "SPEC framework/raw-aes-keyring.md OnDecrypt")
    s, e, flds = La.edks[0]
    add("v2-edk-ciphertext", A, "NO_DECRYPTABLE_KEY", "a bit of the encrypted data key flipped", flip(a, flds[2][0] + 4), "SPEC framework/raw-aes-keyring.md OnDecrypt")
    add("v2-edk-provider-id", A, "NO_DECRYPTABLE_KEY", "the key provider id's first byte changed", flip(a, flds[0][0]), "SPEC framework/raw-aes-keyring.md OnDecrypt")
    add("v2-frame-tag", A, "FRAME_AUTH_FAILED", "a bit of frame 1's tag flipped", flip(a, f1[1] - 1), "SPEC client-apis/decrypt.md Decrypt the message body")
    add("v2-frame-ciphertext", A, "FRAME_AUTH_FAILED", "a bit of frame 1's ciphertext flipped", flip(a, f1[0] + 4 + 12 + 100), "SPEC client-apis/decrypt.md Decrypt the message body")
    add("v2-frame-iv", A, "FRAME_AUTH_FAILED", "a bit of frame 2's IV flipped", flip(a, f2[0] + 4 + 11), "SPEC data-format/message-body.md IV")
    add("v2-final-frame-ciphertext", A, "FRAME_AUTH_FAILED", "a bit of the final frame's ciphertext flipped", flip(a, fin[0] + 4 + 4 + 12 + 4), "SPEC client-apis/decrypt.md Decrypt the message body")
    add("v2-sequence-skips", A, "FRAME_SEQUENCE", "frame 2's sequence number 2 -> 3", put(a, f2[0], struct.pack(">I", 3)), "SPEC data-format/message-body.md Sequence Number")
    add("v2-frames-swapped", A, "FRAME_SEQUENCE", "frames 1 and 2 swapped", a[:f1[0]] + a[f2[0]:f2[1]] + a[f1[0]:f1[1]] + a[fin[0]:], "SPEC data-format/message-body.md Sequence Number")
    add("v2-frame-missing", A, "FRAME_SEQUENCE", "frame 2 removed", a[:f2[0]] + a[fin[0]:], "SPEC data-format/message-body.md Sequence Number")
    add("v2-frame-repeated", A, "FRAME_SEQUENCE", "frame 1 repeated", a[:f2[0]] + a[f1[0]:f1[1]] + a[f2[0]:], "SPEC data-format/message-body.md Sequence Number")
    add("v2-final-frame-sequence", A, "FRAME_SEQUENCE", "the final frame's sequence number 3 -> 4", put(a, fin[0] + 4, struct.pack(">I", 4)), "SPEC data-format/message-body.md Sequence Number")
    add("v2-final-frame-missing", A, "TRUNCATED", "the final frame removed", a[:fin[0]], "SPEC client-apis/decrypt.md: the final frame ends the body")
    add("v2-cut-in-frame", A, "TRUNCATED", "cut in the middle of frame 2", a[:f2[0] + 100], "SPEC client-apis/decrypt.md Decrypt the message body")
    add("v2-cut-in-header", A, "TRUNCATED", "cut inside the header", a[:La.edks_at + 5], "SPEC data-format/message-header.md")
    add("v2-cut-after-header", A, "TRUNCATED", "only the header", a[:La.header_end], "SPEC client-apis/decrypt.md Decrypt the message body")
    add("v2-cut-one-byte", A, "TRUNCATED", "the last byte removed", a[:-1], "SPEC client-apis/decrypt.md Decrypt the message body")
    add("empty", A, "TRUNCATED", "no bytes at all", b"", "SPEC client-apis/decrypt.md")
    add("v2-one-byte", A, "TRUNCATED", "only the version byte", a[:1], "SPEC client-apis/decrypt.md")
    add("v2-trailing-byte", A, "TRAILING_DATA", "one byte after the final frame", a + b"\x00", "SPEC client-apis/decrypt.md: bytes after the message")
    add("v2-trailing-frame", A, "TRAILING_DATA", "the final frame repeated after itself", a + a[fin[0]:fin[1]], "SPEC client-apis/decrypt.md: bytes after the message")
    add("v2-final-frame-longer-than-frame", A, "MALFORMED_MESSAGE", "the final frame's content length 3 -> 4097 (frame length 4096)",
        put(a, fin[0] + 4 + 4 + 12, struct.pack(">I", 4097)), "SPEC data-format/message-body.md Encrypted Content Length")
    add("v2-final-frame-length-shorter", A, "FRAME_AUTH_FAILED", "the final frame's content length 3 -> 2 (its AAD covers it)",
        put(a, fin[0] + 4 + 4 + 12, struct.pack(">I", 2))[:fin[1] - 1], "SPEC data-format/message-body-aad.md Content Length")

    B = "python/python-0578-raw-aes-256-f512-n513.vec"
    fb, b_ = load(B)
    Lb = Layout(b_)
    sig_len = u16(b_, Lb.footer_at)
    add("signed-signature-bit", B, "SIGNATURE_INVALID", "a bit of the footer signature flipped", flip(b_, len(b_) - 5), "SPEC client-apis/decrypt.md Verify the signature")
    add("signed-footer-missing", B, "TRUNCATED", "the footer removed", b_[:Lb.footer_at], "SPEC data-format/message-footer.md")
    add("signed-footer-cut", B, "TRUNCATED", "the footer's last byte removed", b_[:-1], "SPEC data-format/message-footer.md")
    add("signed-signature-length", B, "TRUNCATED", "the signature length +1, no byte added", put(b_, Lb.footer_at, struct.pack(">H", sig_len + 1)), "SPEC data-format/message-footer.md")
    add("signed-trailing-bytes", B, "TRAILING_DATA", "two bytes after the footer", b_ + b"\x00\x00", "SPEC client-apis/decrypt.md: bytes after the message")
    add("signed-public-key-removed", B, "NO_DECRYPTABLE_KEY", "aws-crypto-public-key removed from the stored context (the raw AES keyring binds it)",
        with_context(b_, Lb, []), "SPEC framework/raw-aes-keyring.md OnDecrypt")
    add("signed-refused-by-option", B, "SIGNATURE_POLICY", "unchanged; decrypted with the unsigned-only option", b_,
        "SPEC client-apis/decrypt.md unsigned-only decryption", ["decrypt-options: refuse-signed"])
    add("signed-last-frame-tag", B, "FRAME_AUTH_FAILED", "a bit of the final frame's tag flipped", flip(b_, Lb.frames[-1][1] - 2), "SPEC client-apis/decrypt.md Decrypt the message body")

    D = "python/python-0178-raw-aes-256-f512-n1.vec"
    fd, d = load(D)
    Ld = Layout(d)
    v1 = "SPEC data-format/message-header.md (version 1)"
    legacy = ["policy: require-encrypt-allow-decrypt"]
    add("v1-refused-by-default-policy", D, "COMMITMENT_POLICY_VIOLATION", "unchanged; decrypted under require-encrypt-require-decrypt", d,
        "SPEC framework/commitment-policy.md", ["policy: require-encrypt-require-decrypt"])
    add("v1-type-byte", D, "MALFORMED_MESSAGE", "message type 0x80 -> 0x81", put(d, Ld.type_at, b"\x81"), v1 + " Type", legacy)
    add("v1-reserved-nonzero", D, "MALFORMED_MESSAGE", "a reserved byte 0x00 -> 0x01", put(d, Ld.reserved_at + 3, b"\x01"), v1 + " Reserved", legacy)
    add("v1-iv-length", D, "MALFORMED_MESSAGE", "IV length 12 -> 16", put(d, Ld.iv_len_at, b"\x10"), v1 + " IV Length", legacy)
    add("v1-suite-of-v2", D, "UNSUPPORTED_VERSION", "suite 0x0178 -> 0x0478 (a v2 suite in a v1 header)", put(d, Ld.suite_at, b"\x04\x78"), v1 + " Version", legacy)
    add("v1-header-tag", D, "HEADER_AUTH_FAILED", "a bit of the header tag flipped", flip(d, Ld.tag_at + 1), "SPEC client-apis/decrypt.md Verify the header", legacy)
    add("v1-header-iv", D, "HEADER_AUTH_FAILED", "a bit of the header IV flipped (v1 uses the stored IV)", flip(d, Ld.header_iv_at + 2), "SPEC client-apis/decrypt.md Verify the header", legacy)
    add("v1-frame-tag", D, "FRAME_AUTH_FAILED", "a bit of the final frame's tag flipped", flip(d, Ld.frames[-1][1] - 1), "SPEC client-apis/decrypt.md Decrypt the message body", legacy)

    E = "python/python-0014-raw-aes-256-f4096-n8195.vec"
    fe, e_ = load(E)
    add("v1-identity-kdf-refused-by-default-policy", E, "COMMITMENT_POLICY_VIOLATION", "unchanged; decrypted under require-encrypt-require-decrypt", e_,
        "SPEC framework/commitment-policy.md", ["policy: require-encrypt-require-decrypt"])

    C = "python/python-0378-raw-aes-256-f0-n100.vec"
    fc, c = load(C)
    Lc = Layout(c)
    s0, s1 = Lc.single
    add("v1-non-framed-tag", C, "FRAME_AUTH_FAILED", "a bit of the single block's tag flipped", flip(c, s1 - 1), "SPEC data-format/message-body.md Non-Framed Data", legacy)
    add("v1-non-framed-length-high", C, "TRUNCATED", "the single block's content length 100 -> 100000 (past the end)", put(c, s0 + 12, struct.pack(">Q", 100000)), "SPEC data-format/message-body.md Non-Framed Data", legacy)
    add("v1-non-framed-length-huge", C, "MALFORMED_MESSAGE", "the single block's content length -> 2^36 (over the format's 2^36 - 32)",
        put(c, s0 + 12, struct.pack(">Q", 1 << 36)), "SPEC data-format/message-body.md Encrypted Content Length", legacy)
    add("v1-non-framed-signature", C, "SIGNATURE_INVALID", "a bit of the footer signature flipped", flip(c, len(c) - 3), "SPEC client-apis/decrypt.md Verify the signature", legacy)
    add("v1-non-framed-footer-missing", C, "TRUNCATED", "the footer removed", c[:Lc.footer_at], "SPEC data-format/message-footer.md", legacy)
    add("v1-non-framed-with-frame-length", C, "MALFORMED_MESSAGE", "frame length 0 -> 512 with non-framed content",
        put(c, Lc.frame_len_at, struct.pack(">I", 512)), v1 + " Frame Length", legacy)

    K = "python/python-0478-kms-rsa-RSAES_OAEP_SHA_256-f4096-n10000.vec"
    fk, k = load(K)
    Lk = Layout(k)
    s, e, flds = Lk.edks[0]
    arn = k[flds[1][0]:flds[1][1]]
    not_arn = b"alias/not-a-key-arn".ljust(len(arn), b"-")
    add("kms-rsa-provider-info-not-arn", K, "MALFORMED_MESSAGE", "the aws-kms-rsa key's provider info -> \"alias/not-a-key-arn---…\" (not a key ARN)",
        put(k, flds[1][0], not_arn), "SPEC framework/aws-kms/aws-kms-rsa-keyring.md OnDecrypt")
    add("kms-rsa-ciphertext", K, "KMS_ERROR", "a bit of the RSA ciphertext flipped (KMS answers InvalidCiphertextException)", flip(k, flds[2][0] + 10), "SPEC framework/aws-kms/aws-kms-rsa-keyring.md OnDecrypt")
    add("kms-rsa-context-changed", K, "KMS_RESPONSE_INVALID", "stored context -> one changed pair (the wrapped key holds its digest)",
        with_context(k, Lk, [("owner", "mallory")]), "SPEC framework/aws-kms/aws-kms-rsa-keyring.md: the encryption context digest")
    return out


def peer_made(tmp):
    """Messages the Python SDK writes with required encryption context: refused without it."""
    keys = os.path.join(VECTORS, "keys")
    pt = os.path.join(tmp, "pt")
    with open(pt, "wb") as f:
        f.write(bytes(((i * 31 + (i >> 8) * 7 + 11) & 0xFF) for i in range(1000)))
    context = {"owner": "alice", "tenant": "t-1"}
    jobs = [{"op": "encrypt", "keyring": kr, "suite": "0x0478", "frame_length": 512, "context": context,
             "policy": "require-encrypt-require-decrypt", "input": pt, "output": os.path.join(tmp, "ct-%d" % i),
             "required_keys": ["tenant"]}
            for i, kr in enumerate(["raw-aes-256", "kms-rsa-RSAES_OAEP_SHA_256"])]
    with open(os.path.join(tmp, "jobs.json"), "w") as f:
        json.dump({"jobs": jobs}, f)
    subprocess.run([sys.executable, os.path.join(HERE, "peer.py"), keys, os.path.join(tmp, "jobs.json"), os.path.join(tmp, "res.json")], check=True)
    with open(os.path.join(tmp, "res.json")) as f:
        assert all(r["ok"] for r in json.load(f))
    out = []
    made = PY_VERSION + ", Required Encryption Context CMM (tenant authenticate-only)"
    for i, (kr, code) in enumerate([("raw-aes-256", "NO_DECRYPTABLE_KEY"), ("kms-rsa-RSAES_OAEP_SHA_256", "KMS_RESPONSE_INVALID")]):
        with open(os.path.join(tmp, "ct-%d" % i), "rb") as f:
            m = f.read()
        base = {"suite": "0x0478", "keyring": kr, "frame-length": "512", "context": json.dumps({"owner": "alice"}),
                "plaintext": "1000 -", "policy": "require-encrypt-require-decrypt"}
        rule = "SPEC framework/required-encryption-context-cmm.md"
        out.append(("required-context-missing-" + kr, base, code, made + "; decrypted without the pair", m, rule, []))
        out.append(("required-context-wrong-" + kr, base, code, made + "; decrypted with tenant=t-2", m, rule, ['decrypt-context: {"tenant": "t-2"}']))
        out.append(("required-context-stored-mismatch-" + kr, base, "ENCRYPTION_CONTEXT_MISMATCH", made + "; decrypted with owner=bob", m,
                    "SPEC framework/cmm-interface.md Decrypt Materials", ['decrypt-context: {"owner": "bob", "tenant": "t-1"}']))
    return out


def write(name, fields, code, made, message, rule, extra):
    head = ["kms-envelope test vector", "expect: " + code]
    overrides = dict(l.split(": ", 1) for l in extra)
    for k in ["suite", "keyring", "frame-length", "context", "policy"]:
        head.append("%s: %s" % (k, overrides.pop(k, fields[k])))
    head += ["%s: %s" % kv for kv in overrides.items()]
    head += ["rule: " + rule, "generator: " + made]
    with open(os.path.join(OUT, name + ".vec"), "wb") as f:
        f.write(("\n".join(head) + "\n\n").encode() + message)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    names = []
    for name, src, code, change, message, rule, extra in mutations():
        fields, _ = load(src)
        write(name, fields, code, "tests/interop/make_failure_vectors.py: %s, %s" % (src, change), message, rule, extra)
        names.append(name)
    with tempfile.TemporaryDirectory() as tmp:
        for name, fields, code, made, message, rule, extra in peer_made(tmp):
            write(name, fields, code, made, message, rule, extra)
            names.append(name)
    names.sort()
    with open(os.path.join(VECTORS, "failures.rs"), "w") as f:
        f.write("// Generated by tests/interop/make_failure_vectors.py; do not edit.\n")
        f.write("// One test case per failure vector, so one failure does not hide another.\n")
        f.write("pub const FAILURES: &[&str] = &[\n" + "".join('    "%s",\n' % n for n in names) + "];\n\n")
        for n in names:
            ident = n.replace("-", "_").lower()
            f.write('case! {\n    fn fails_%s() {\n        check_failure("%s", include_bytes!("failures/%s.vec"));\n    }\n}\n\n' % (ident, n, n))
    print("%d failure vectors" % len(names))


if __name__ == "__main__":
    main()
