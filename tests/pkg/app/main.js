// A page bundled from the packed npm package, as a customer would use it.
import {
  KmsRsaKeyring, RawAesKeyring, RawRsaKeyring, EnvelopeError, WorkerPool, Encryptor,
  encrypt, decrypt, encryptStream, decryptStream, parseHeader, encryptedSize,
} from 'kms-envelope';

const b64 = (u8) => { let s = ''; for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000)); return btoa(s); };
const plaintext = (n) => { const a = new Uint8Array(n); for (let i = 0; i < n; i++) a[i] = (i * 31 + (i >> 8) * 7 + 11) & 0xff; return a; };
const collect = async (rs) => new Uint8Array(await new Response(rs).arrayBuffer());
const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

// A ReadableStream of `bytes` in random chunk sizes (seeded), 1 byte to 300 KiB.
function chunked(bytes, seed) {
  let x = seed >>> 0, off = 0;
  const next = () => { x ^= x << 13; x >>>= 0; x ^= x >> 17; x ^= x << 5; x >>>= 0; return x; };
  return new ReadableStream({
    pull(c) {
      if (off >= bytes.length) { c.close(); return; }
      const n = Math.min(bytes.length - off, next() % 5 === 0 ? 1 + (next() % 16) : 1 + (next() % 300000));
      c.enqueue(bytes.slice(off, off + n));
      off += n;
    },
  });
}

// Reads a stream until it errors: what it delivered, and the error.
async function readAll(rs) {
  const reader = rs.getReader(), parts = [];
  try {
    for (;;) { const { done, value } = await reader.read(); if (done) break; parts.push(value); }
  } catch (e) {
    return { bytes: new Uint8Array(await new Blob(parts).arrayBuffer()), error: e };
  }
  return { bytes: new Uint8Array(await new Blob(parts).arrayBuffer()), error: null };
}

// The worker pool: same messages as without it, through one-shot calls,
// streams and the hand-driven Encryptor; tamper and truncation still fail
// with their codes, releasing only authenticated plaintext.
async function poolChecks(check, aes, ctx) {
  const pool = new WorkerPool({ workers: 2 });
  check('pool: size', pool.size === 2);
  const big = plaintext(3 * 1048576 + 12345);
  for (const [n, frameLength] of [[1, 4096], [4095, 4096], [4096, 4096], [4097, 4096], [200000, 4096], [big.length, 65536], [big.length, 1000]]) {
    const pt = big.subarray(0, n);
    const m = (await encrypt(aes, pt, { encryptionContext: ctx, frameLength, pool })).result;
    const size = await encryptedSize(aes, n, { encryptionContext: ctx, frameLength });
    const plain = (await decrypt(aes, m, { encryptionContext: ctx })).plaintext;
    const pooled = (await decrypt(aes, m, { encryptionContext: ctx, pool })).plaintext;
    check(`pool: one-shot ${n} bytes, frame ${frameLength}: exact size, decrypts with and without the pool`, m.length === size && same(plain, pt) && same(pooled, pt));
  }
  // Frames over 16 MiB stay on the calling thread, pool or not.
  const huge = plaintext(18 * 1048576 + 7);
  // A client writes frames up to its maxFrameLength (16 MiB unless raised), as it reads them.
  const hm = (await encrypt(aes, huge, { frameLength: 17 * 1048576, maxFrameLength: 32 * 1048576, pool })).result;
  check('pool: frames over 16 MiB', same((await decrypt(aes, hm, { pool, maxFrameLength: 32 * 1048576 })).plaintext, huge));
  const empty = (await encrypt(aes, new Uint8Array(0), { pool })).result;
  check('pool: empty message', (await decrypt(aes, empty, { pool })).plaintext.length === 0);
  const emptyStream = await collect(new Blob([]).stream().pipeThrough(encryptStream(aes, { pool })));
  check('pool: empty stream', (await decrypt(aes, emptyStream)).plaintext.length === 0);

  // Streams in random chunk sizes, both ways, pooled and not, crossed.
  for (const seed of [1, 2, 3]) {
    const sealed = await collect(chunked(big, seed).pipeThrough(encryptStream(aes, { encryptionContext: ctx, pool })));
    const back = await collect(chunked(sealed, seed + 10).pipeThrough(decryptStream(aes, { pool })));
    const back2 = (await decrypt(aes, sealed)).plaintext;
    check(`pool: streams in random chunks (seed ${seed})`, same(back, big) && same(back2, big));
  }
  const e = await Encryptor.start(aes, { pool, frameLength: 4096 });
  const parts = [await e.update(big.subarray(0, 70000)), await e.update(big.subarray(70000, 2000000)), await e.update(big.subarray(2000000)), await e.finish()];
  check('pool: hand-driven Encryptor', same((await decrypt(aes, new Uint8Array(await new Blob(parts).arrayBuffer()))).plaintext, big));

  // Signed suites take the calling thread (the signature needs every frame in order).
  const rsa = new RawRsaKeyring({ keyNamespace: 'page', keyName: 'rsa', padding: 'oaep-sha256', ...(await rsaPair()) });
  const signed = (await encrypt(rsa, big.subarray(0, 300000), { suiteId: 0x0578, pool })).result;
  check('pool: signed suite round trip', same((await decrypt(rsa, signed, { pool })).plaintext, big.subarray(0, 300000)));

  // A changed bit in a frame in the middle: nothing from its batch on is released.
  const m = (await encrypt(aes, big, { frameLength: 4096 })).result;
  const bad = m.slice();
  bad[bad.length >> 1] ^= 0x10;
  try { await decrypt(aes, bad, { pool }); check('pool: tamper fails one-shot', false); } catch (err) {
    check('pool: tamper fails one-shot', err instanceof EnvelopeError && err.code === 'FRAME_AUTH_FAILED');
  }
  const t = await readAll(chunked(bad, 7).pipeThrough(decryptStream(aes, { pool })));
  check('pool: tamper fails the stream, only authenticated plaintext before it',
    t.error instanceof EnvelopeError && t.error.code === 'FRAME_AUTH_FAILED' && t.bytes.length < big.length / 2 && same(t.bytes, big.subarray(0, t.bytes.length)));
  const cut = await readAll(chunked(m.subarray(0, m.length - 100), 8).pipeThrough(decryptStream(aes, { pool })));
  check('pool: truncation fails the stream', cut.error instanceof EnvelopeError && cut.error.code === 'TRUNCATED' && same(cut.bytes, big.subarray(0, cut.bytes.length)));
  // A declared plaintextLength holds on the pooled path: more bytes, or fewer, fail the stream.
  for (const [declared, n] of [[10, 200000], [300000, 200000]]) {
    const r = await readAll(chunked(big.subarray(0, n), 3).pipeThrough(encryptStream(aes, { pool, plaintextLength: declared, frameLength: 4096 })));
    check(`pool: ${n} bytes against a declared ${declared} fail`, r.error instanceof EnvelopeError && r.error.code === 'INVALID_ARGUMENT');
  }

  // Misuse gets clear errors.
  try { await encrypt(aes, big, { pool: {} }); check('pool: not a WorkerPool', false); } catch (err) {
    check('pool: not a WorkerPool', err instanceof EnvelopeError && err.code === 'INVALID_ARGUMENT' && /pool/.test(err.message));
  }
  try { new WorkerPool({ workers: 0 }); check('pool: workers 0 refused', false); } catch (err) {
    check('pool: workers 0 refused', err instanceof EnvelopeError && err.code === 'INVALID_ARGUMENT');
  }
  const pooledOut = (await encrypt(aes, big.subarray(0, 200000), { encryptionContext: ctx, pool })).result;
  pool.terminate();
  try { await encrypt(aes, big, { pool }); check('pool: terminated pool', false); } catch (err) {
    check('pool: terminated pool', err instanceof EnvelopeError && err.code === 'INVALID_STATE');
  }
  return pooledOut;
}

async function rsaPair() {
  const k = await crypto.subtle.generateKey({ name: 'RSA-OAEP', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['encrypt', 'decrypt']);
  return { publicKey: new Uint8Array(await crypto.subtle.exportKey('spki', k.publicKey)), privateKey: new Uint8Array(await crypto.subtle.exportKey('pkcs8', k.privateKey)) };
}

async function run(params) {
  const checks = [];
  const check = (name, ok) => checks.push({ name, ok: !!ok });
  const kms = new KmsRsaKeyring({ keyArn: params.arn, publicKey: params.publicKeyPem });
  const ctx = { owner: 'alice', 'файл': 'report.pdf' };
  const pt = plaintext(200000);

  // One-shot and streaming encryption in the browser, to be decrypted by the Python SDK.
  const { result } = await encrypt(kms, pt, { encryptionContext: ctx });
  const streamed = await collect(new Blob([pt]).stream().pipeThrough(encryptStream(kms, { encryptionContext: ctx, frameLength: 4096 })));
  check('encryptedSize is exact', (await encryptedSize(kms, pt.length, { encryptionContext: ctx })) === result.length);
  check('parseHeader finds the key ARN', parseHeader(streamed).keyArns[0] === params.arn);

  // Local round trip with a raw AES keyring through both streams.
  const aes = new RawAesKeyring({ keyNamespace: 'page', keyName: 'k', wrappingKey: new Uint8Array(32).fill(3) });
  const sealed = new Blob([pt]).stream().pipeThrough(encryptStream(aes, { encryptionContext: ctx }));
  const opened = await collect(sealed.pipeThrough(decryptStream(aes, { encryptionContext: { owner: 'alice' } })));
  check('stream round trip', opened.length === pt.length && opened.every((v, i) => v === pt[i]));

  // Errors are EnvelopeErrors with codes.
  const one = (await encrypt(aes, pt.subarray(0, 100))).result;
  one[one.length - 3] ^= 1;
  try { await decrypt(aes, one); check('tamper detected', false); } catch (e) {
    check('tamper detected', e instanceof EnvelopeError && e.code === 'FRAME_AUTH_FAILED');
  }
  // The same through a worker pool; its KMS-keyring output goes to the Python SDK too.
  await poolChecks(check, aes, ctx);
  const pool = new WorkerPool();
  const pooled = (await encrypt(kms, pt, { encryptionContext: ctx, pool, frameLength: 4096 })).result;
  pool.terminate();
  return { checks, oneShot: b64(result), streamed: b64(streamed), pooled: b64(pooled), webcrypto: !!(globalThis.crypto && crypto.subtle) };
}

window.__run = run;
document.getElementById('status').textContent = 'ready';
