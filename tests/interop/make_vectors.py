#!/usr/bin/env python3
"""Regenerates the checked-in test vectors under tests/vectors/ with the
official SDK peers (see tests/vectors/README.md), then rewrites
tests/vectors/index.rs so the native and wasm suites compile them in.

    .venv/bin/python tests/interop/make_vectors.py            # Python vectors + index
    .venv/bin/python tests/interop/make_vectors.py --node     # also Node vectors

Run it only to add or refresh vectors; `make test` reads the files as they are.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VECTORS = os.path.join(ROOT, "tests", "vectors")
KEYS = os.path.join(VECTORS, "keys")

SUITES = ["0x0014", "0x0046", "0x0078", "0x0114", "0x0146", "0x0178",
          "0x0214", "0x0346", "0x0378", "0x0478", "0x0578"]
RAW_KEYRINGS = ["raw-aes-128", "raw-aes-192", "raw-aes-256",
                "raw-rsa-pkcs1-2048", "raw-rsa-oaep-sha1-3072", "raw-rsa-oaep-sha256-2048",
                "raw-rsa-oaep-sha384-4096", "raw-rsa-oaep-sha512-2048"]
CONTEXTS = [
    {},
    {"owner": "alice", "object": "0001", "purpose": "test"},
    {"имя": "файл.txt", "ключ": "значение", "emoji": "🔐", "é": "ü"},
    {"ctl\u0001": "line\nbreak\ttab\u0000nul", "\u007f": "\r"},
]
PY_VERSION = "python aws-encryption-sdk 4.0.7, aws-cryptographic-material-providers 1.11.3"
NODE_VERSION = "node @aws-crypto/client-node 5.0.2"


def plaintext(n):
    return bytes(((i * 31 + (i >> 8) * 7 + 11) & 0xFF) for i in range(n))


def matrix(node):
    """(name, job, fields) for every vector to make."""
    out = []
    frames = [128, 512, 4096]
    i = 0
    for suite in SUITES:
        legacy = suite not in ("0x0478", "0x0578")
        keyrings = RAW_KEYRINGS
        for keyring in keyrings:
            for variant in range(2 if not node else 1):
                i += 1
                f = frames[i % len(frames)]
                if legacy and variant == 1 and not node:
                    f = 0  # the legacy non-framed body
                sizes = [0, 1, f - 1 if f else 100, f, f + 1, 2 * f + 3 if f else 3000]
                n = sizes[i % len(sizes)]
                c = CONTEXTS[i % len(CONTEXTS)]
                out.append((suite, keyring, f, n, c, legacy))
    if not node:
        for alg in ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]:
            for j, (f, n) in enumerate([(128, 0), (512, 513), (4096, 4096), (4096, 10000)]):
                out.append(("0x0478", "kms-rsa-" + alg, f, n, CONTEXTS[j % len(CONTEXTS)], False))
    return out


def generate(peer_cmd, prefix, version, node):
    cases = matrix(node)
    tmp = tempfile.mkdtemp()
    jobs = []
    for k, (suite, keyring, f, n, c, legacy) in enumerate(cases):
        src = os.path.join(tmp, "pt-%d" % k)
        with open(src, "wb") as fh:
            fh.write(plaintext(n))
        jobs.append({
            "op": "encrypt", "keyring": keyring, "suite": suite, "frame_length": f, "context": c,
            "policy": "forbid-encrypt-allow-decrypt" if legacy else "require-encrypt-require-decrypt",
            "input": src, "output": os.path.join(tmp, "ct-%d" % k),
        })
    with open(os.path.join(tmp, "jobs.json"), "w") as fh:
        json.dump({"jobs": jobs}, fh)
    subprocess.run(peer_cmd + [KEYS, os.path.join(tmp, "jobs.json"), os.path.join(tmp, "res.json")], check=True)
    with open(os.path.join(tmp, "res.json")) as fh:
        results = json.load(fh)
    outdir = os.path.join(VECTORS, prefix)
    os.makedirs(outdir, exist_ok=True)
    for old in os.listdir(outdir):
        os.remove(os.path.join(outdir, old))
    made = 0
    for k, ((suite, keyring, f, n, c, legacy), res) in enumerate(zip(cases, results)):
        if not res["ok"]:
            print("skipped %s %s f=%d: %s" % (suite, keyring, f, res["error"]), file=sys.stderr)
            continue
        with open(jobs[k]["output"], "rb") as fh:
            message = fh.read()
        pt = plaintext(n)
        head = [
            "kms-envelope test vector",
            "expect: success",
            "suite: " + suite,
            "keyring: " + keyring,
            "frame-length: %d" % f,
            "context: " + json.dumps(c, ensure_ascii=True, sort_keys=True),
            "plaintext: %d %s" % (n, hashlib.sha256(pt).hexdigest()),
            "policy: " + ("require-encrypt-allow-decrypt" if legacy else "require-encrypt-require-decrypt"),
            "generator: " + version,
        ]
        name = "%s-%s-%s-f%d-n%d.vec" % (prefix, suite[2:], keyring, f, n)
        with open(os.path.join(outdir, name), "wb") as fh:
            fh.write(("\n".join(head) + "\n\n").encode() + message)
        made += 1
    print("%s: %d vectors" % (prefix, made))


def write_index():
    entries = []
    for sub in sorted(os.listdir(VECTORS)):
        d = os.path.join(VECTORS, sub)
        if sub == "keys" or not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if f.endswith(".vec"):
                entries.append('    ("%s/%s", include_bytes!("%s/%s")),' % (sub, f, sub, f))
    with open(os.path.join(VECTORS, "index.rs"), "w") as fh:
        fh.write("// Generated by tests/interop/make_vectors.py; do not edit.\n")
        fh.write("pub const VECTORS: &[(&str, &[u8])] = &[\n" + "\n".join(entries) + "\n];\n")
    print("index: %d vectors" % len(entries))


if __name__ == "__main__":
    generate([sys.executable, os.path.join(HERE, "peer.py")], "python", PY_VERSION, node=False)
    if "--node" in sys.argv:
        generate(["node", os.path.join(HERE, "peer.mjs")], "node", NODE_VERSION, node=True)
    write_index()
