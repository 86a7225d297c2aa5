// Measures, in one page run and on the same input: the WebCrypto AES-256-GCM
// ceiling (64 KiB calls, sequential and 4 in flight; and the same calls
// written into one output array, or run in a JS TransformStream: what a
// one-shot call and a stream must do besides the calls) and kms-envelope
// (one-shot and streaming, both ways, KMS RSA keyring, 64 KiB frames), plus
// the pure-wasm RustCrypto fallback, and the peers: the AWS Encryption SDK
// for browsers (raw RSA keyring, suite 0x0478, frames of 4 KiB and 64 KiB)
// and OpenPGP.js v6 (AEAD, SEIPDv2). Median of 5 runs after a warm-up.
import { KmsRsaKeyring, RawRsaKeyring, WorkerPool, encrypt, decrypt, encryptStream, decryptStream } from 'kms-envelope';
import * as esdk from '@aws-crypto/client-browser';
import * as openpgp from 'openpgp';

const MiB = 1024 * 1024;
const FRAME = 65536;
const out = document.getElementById('out');
const log = (s) => { out.textContent += s + '\n'; };

function heap() { return performance.memory ? performance.memory.usedJSHeapSize : 0; }
let heapPeak = 0;
const sampler = setInterval(() => { heapPeak = Math.max(heapPeak, heap()); }, 20);

function randomBytes(n) {
  const a = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(a.subarray(i, Math.min(n, i + 65536)));
  return a;
}

async function time(fn) {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

// The renderer's peak RSS, reset before each measurement, where the runner
// offers it (scripts/bench.mjs reads /proc); 0 elsewhere.
const rssReset = async () => (window.__rssReset ? window.__rssReset() : false);
const rssPeakMiB = async () => (window.__rssPeakMiB ? window.__rssPeakMiB() : 0);
const cpuMs = async () => (window.__cpuMs ? window.__cpuMs() : 0);

async function measure(name, bytes, fn, runs) {
  await fn(); // warm-up
  heapPeak = heap();
  await rssReset();
  const cpu0 = await cpuMs();
  const ms = [];
  for (let i = 0; i < runs; i++) ms.push(await time(fn));
  // The browser's CPU over the elapsed time of the runs (the calls to read it are outside).
  const cpuCores = (await cpuMs() - cpu0) / ms.reduce((a, b) => a + b, 0);
  ms.sort((a, b) => a - b);
  const median = ms[Math.floor(ms.length / 2)];
  const r = { name, mibps: (bytes / MiB) / (median / 1000), ms: median, runs: ms.map((x) => Math.round(x)), heapPeakMiB: heapPeak / MiB, rssPeakMiB: await rssPeakMiB(), cpuCores };
  log(`${name.padEnd(44)} ${r.mibps.toFixed(0).padStart(6)} MiB/s  (median ${median.toFixed(0)} ms of ${runs}; ${cpuCores.toFixed(2)} cores; JS heap peak ${r.heapPeakMiB.toFixed(0)} MiB, renderer RSS peak ${r.rssPeakMiB.toFixed(0)} MiB)`);
  return r;
}

async function drain(readable) {
  let n = 0;
  const reader = readable.getReader();
  for (;;) { const { done, value } = await reader.read(); if (done) return n; n += value.length; }
}

function pemToDer(pem) { return Uint8Array.from(atob(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '')), (c) => c.charCodeAt(0)); }

export async function run({ sizeMiB = 64, runs = 5, arn, publicKeyPem, privateKeyPem }) {
  const size = sizeMiB * MiB;
  const input = randomBytes(size);
  const results = [];

  // The ceiling: raw WebCrypto, one call per 64 KiB.
  const key = await crypto.subtle.importKey('raw', randomBytes(32), 'AES-GCM', false, ['encrypt', 'decrypt']);
  const iv = (i) => { const v = new Uint8Array(12); new DataView(v.buffer).setUint32(8, i + 1); return v; };
  const aad = new Uint8Array(100);
  const sealed = [];
  // One WebCrypto call on frame i of the input (encrypt) or of `sealed` (decrypt).
  const frameCall = (op, i) => (op === 'enc'
    ? crypto.subtle.encrypt({ name: 'AES-GCM', iv: iv(i), additionalData: aad }, key, input.subarray(i * FRAME, (i + 1) * FRAME))
    : crypto.subtle.decrypt({ name: 'AES-GCM', iv: iv(i), additionalData: aad }, key, sealed[i]));
  for (let i = 0; i * FRAME < size; i++) sealed.push(new Uint8Array(await frameCall('enc', i)));
  const bare = async (op) => {
    for (let i = 0; i < sealed.length; i++) await frameCall(op, i);
  };
  const ceilEnc = await measure('WebCrypto AES-GCM 64 KiB, sequential: encrypt', size, () => bare('enc'), runs);
  const ceilDec = await measure('WebCrypto AES-GCM 64 KiB, sequential: decrypt', size, () => bare('dec'), runs);
  results.push({ ...ceilEnc, group: 'ceiling', op: 'encrypt' }, { ...ceilDec, group: 'ceiling', op: 'decrypt' });
  const inflight = async (op) => {
    const q = [];
    for (let i = 0; i * FRAME < size; i++) {
      q.push(frameCall(op, i));
      if (q.length === 4) await q.shift();
    }
    await Promise.all(q);
  };
  // The one-shot ceiling: the same calls, each result written into one new
  // output array (what a one-shot call must return).
  const intoOne = async (op) => {
    const o = new Uint8Array(op === 'enc' ? size + 16 * sealed.length : size);
    let off = 0;
    for (let i = 0; i < sealed.length; i++) {
      const r = new Uint8Array(await frameCall(op, i));
      o.set(r, off);
      off += r.length;
    }
    if (off !== o.length) throw new Error('one-shot ceiling: wrong length');
  };
  const oEnc = await measure('WebCrypto 64 KiB, into one output array: encrypt', size, () => intoOne('enc'), runs);
  const oDec = await measure('WebCrypto 64 KiB, into one output array: decrypt', size, () => intoOne('dec'), runs);
  results.push({ ...oEnc, group: 'one-shot-ceiling', op: 'encrypt' }, { ...oDec, group: 'one-shot-ceiling', op: 'decrypt' });
  results.push({ ...(await measure('WebCrypto AES-GCM 64 KiB, 4 in flight: encrypt', size, () => inflight('enc'), runs)), group: 'ceiling-4', op: 'encrypt' });
  results.push({ ...(await measure('WebCrypto AES-GCM 64 KiB, 4 in flight: decrypt', size, () => inflight('dec'), runs)), group: 'ceiling-4', op: 'decrypt' });

  // The streaming ceiling: the same calls in a pure-JS TransformStream fed by
  // Blob.stream() and drained, i.e. the best a stream of 64 KiB frames can do here.
  const frameStream = (op) => {
    const unit = op === 'enc' ? FRAME : FRAME + 16;
    let pending = new Uint8Array(0), i = 0;
    const one = async (c, bytes) => {
      const params = { name: 'AES-GCM', iv: iv(i++), additionalData: aad };
      c.enqueue(new Uint8Array(await (op === 'enc' ? crypto.subtle.encrypt(params, key, bytes) : crypto.subtle.decrypt(params, key, bytes))));
    };
    return new TransformStream({
      async transform(chunk, c) {
        let data = chunk, off = 0;
        if (pending.length) { data = new Uint8Array(pending.length + chunk.length); data.set(pending); data.set(chunk, pending.length); }
        for (; data.length - off >= unit; off += unit) await one(c, data.subarray(off, off + unit));
        pending = data.slice(off);
      },
      async flush(c) { if (pending.length) await one(c, pending); },
    });
  };
  const sealedBlob = new Blob(sealed);
  // What the stream source alone delivers.
  // (A read rate: no ratio to an AES ceiling.)
  results.push({ ...(await measure('Blob.stream() read and drained, no crypto', size, async () => { await drain(new Blob([input]).stream()); }, runs)), group: 'source', op: 'read' });
  const sEnc = await measure('WebCrypto 64 KiB frames in a JS stream: encrypt', size, async () => { await drain(new Blob([input]).stream().pipeThrough(frameStream('enc'))); }, runs);
  const sDec = await measure('WebCrypto 64 KiB frames in a JS stream: decrypt', size, async () => { await drain(sealedBlob.stream().pipeThrough(frameStream('dec'))); }, runs);
  results.push({ ...sEnc, group: 'stream-ceiling', op: 'encrypt' }, { ...sDec, group: 'stream-ceiling', op: 'decrypt' });

  // kms-envelope with the KMS RSA keyring; KMS Decrypt answered locally by WebCrypto RSA-OAEP.
  const priv = await crypto.subtle.importKey('pkcs8', pemToDer(privateKeyPem), { name: 'RSA-OAEP', hash: 'SHA-256' }, false, ['decrypt']);
  const kmsDecrypt = async ({ ciphertextBlob }) => ({ plaintext: new Uint8Array(await crypto.subtle.decrypt({ name: 'RSA-OAEP' }, priv, ciphertextBlob)), keyId: arn });
  const keyring = new KmsRsaKeyring({ keyArn: arn, publicKey: publicKeyPem, kmsDecrypt });
  const ctx = { encryptionContext: { owner: 'bench' } };
  let message;
  results.push({ ...(await measure('kms-envelope one-shot: encrypt', size, async () => { message = (await encrypt(keyring, input, ctx)).result; }, runs)), group: 'one-shot', op: 'encrypt' });
  results.push({ ...(await measure('kms-envelope one-shot: decrypt', size, async () => { await decrypt(keyring, message, ctx); }, runs)), group: 'one-shot', op: 'decrypt' });
  results.push({ ...(await measure('kms-envelope stream: encrypt', size, async () => {
    const n = await drain(new Blob([input]).stream().pipeThrough(encryptStream(keyring, ctx)));
    if (n !== message.length) throw new Error(`stream wrote ${n} bytes, expected ${message.length}`);
  }, runs)), group: 'stream', op: 'encrypt' });
  results.push({ ...(await measure('kms-envelope stream: decrypt', size, async () => {
    const n = await drain(new Blob([message]).stream().pipeThrough(decryptStream(keyring, ctx)));
    if (n !== size) throw new Error(`stream released ${n} bytes, expected ${size}`);
  }, runs)), group: 'stream', op: 'decrypt' });

  // The same with a worker pool (frames' AES-GCM on Web Workers, one per core).
  const pool = new WorkerPool({ workers: navigator.hardwareConcurrency || 2 });
  const pctx = { ...ctx, pool };
  const poolName = `${pool.size} workers`;
  results.push({ ...(await measure(`kms-envelope one-shot, ${poolName}: encrypt`, size, async () => {
    const m = (await encrypt(keyring, input, pctx)).result;
    if (m.length !== message.length) throw new Error('pooled encrypt: wrong length');
  }, runs)), group: 'pool', op: 'encrypt' });
  results.push({ ...(await measure(`kms-envelope one-shot, ${poolName}: decrypt`, size, async () => {
    const { plaintext } = await decrypt(keyring, message, pctx);
    if (plaintext.length !== size || plaintext[size - 1] !== input[size - 1]) throw new Error('pooled decrypt: wrong plaintext');
  }, runs)), group: 'pool', op: 'decrypt' });
  results.push({ ...(await measure(`kms-envelope stream, ${poolName}: encrypt`, size, async () => {
    const n = await drain(new Blob([input]).stream().pipeThrough(encryptStream(keyring, pctx)));
    if (n !== message.length) throw new Error(`pooled stream wrote ${n} bytes`);
  }, runs)), group: 'pool-stream', op: 'encrypt' });
  results.push({ ...(await measure(`kms-envelope stream, ${poolName}: decrypt`, size, async () => {
    const n = await drain(new Blob([message]).stream().pipeThrough(decryptStream(keyring, pctx)));
    if (n !== size) throw new Error(`pooled stream released ${n} bytes`);
  }, runs)), group: 'pool-stream', op: 'decrypt' });

  // 1 GiB streamed through encryption and straight into decryption: the
  // pipeline's rate and the JS heap peak show memory stays flat.
  const GiB = 1024 * MiB;
  const block = input.subarray(0, MiB);
  const source = () => {
    let sent = 0;
    return new ReadableStream({
      pull(c) {
        if (sent >= GiB) { c.close(); return; }
        c.enqueue(block.slice());
        sent += MiB;
      },
    }, { highWaterMark: 2 });
  };
  results.push({ ...(await measure('kms-envelope stream, 1 GiB encrypt → decrypt pipeline', GiB, async () => {
    const n = await drain(source().pipeThrough(encryptStream(keyring, ctx)).pipeThrough(decryptStream(keyring, ctx)));
    if (n !== GiB) throw new Error(`pipeline released ${n} bytes`);
  }, Math.min(runs, 3))), group: 'stream-1gib', op: 'pipeline', streams: true });
  results.push({ ...(await measure(`kms-envelope stream, ${poolName}, 1 GiB encrypt → decrypt pipeline`, GiB, async () => {
    const n = await drain(source().pipeThrough(encryptStream(keyring, pctx)).pipeThrough(decryptStream(keyring, pctx)));
    if (n !== GiB) throw new Error(`pooled pipeline released ${n} bytes`);
  }, Math.min(runs, 3))), group: 'stream-1gib', op: 'pipeline', streams: true });
  pool.terminate();

  // The AWS Encryption SDK for browsers: raw RSA keyring (WebCrypto), the
  // same suite, one-shot (it has no streaming API in browsers).
  const jwk = async (der, format, usages) => {
    const j = await crypto.subtle.exportKey('jwk', await crypto.subtle.importKey(format, der, { name: 'RSA-OAEP', hash: 'SHA-256' }, true, usages));
    delete j.key_ops; // the SDK imports with its own usages
    return j;
  };
  const esdkKeyring = new esdk.RawRsaKeyringWebCrypto({
    keyName: 'rsa-2048', keyNamespace: 'kms-envelope-test',
    publicKey: await esdk.RawRsaKeyringWebCrypto.importPublicKey(await jwk(pemToDer(publicKeyPem), 'spki', ['encrypt'])),
    privateKey: await esdk.RawRsaKeyringWebCrypto.importPrivateKey(await jwk(pemToDer(privateKeyPem), 'pkcs8', ['decrypt'])),
  });
  const esdkClient = esdk.buildClient(esdk.CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
  for (const frameLength of [4096, 65536]) {
    let m;
    const o = { encryptionContext: { owner: 'bench' }, frameLength, suiteId: esdk.AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY };
    const name = `@aws-crypto/client-browser, frame ${frameLength / 1024} KiB`;
    results.push({ ...(await measure(`${name}: encrypt`, size, async () => { m = (await esdkClient.encrypt(esdkKeyring, input, o)).result; }, runs)), group: 'peer', op: 'encrypt', overheadBytes: m.length - size, streams: false });
    results.push({ ...(await measure(`${name}: decrypt`, size, async () => {
      const { plaintext } = await esdkClient.decrypt(esdkKeyring, m);
      if (plaintext.length !== size) throw new Error('client-browser round trip');
    }, runs)), group: 'peer', op: 'decrypt', overheadBytes: m.length - size, streams: false });
    // And the SDK's message decrypts with kms-envelope (interop on the bench input).
    const raw = new RawRsaKeyring({ keyName: 'rsa-2048', keyNamespace: 'kms-envelope-test', publicKey: publicKeyPem, privateKey: privateKeyPem, padding: 'oaep-sha256' });
    const back = (await decrypt(raw, m)).plaintext;
    if (back.length !== size || back[12345] !== input[12345]) throw new Error('kms-envelope could not decrypt client-browser output');
  }

  // OpenPGP.js v6: a v6 Curve25519 key, AEAD (AES-GCM, SEIPDv2), binary.
  const { privateKey: pgpPriv, publicKey: pgpPub } = await openpgp.generateKey({ type: 'curve25519', userIDs: [{ name: 'bench' }], format: 'object', config: { v6Keys: true } });
  const pgpConfig = { aeadProtect: true, preferredAEADAlgorithm: openpgp.enums.aead.gcm, preferredSymmetricAlgorithm: openpgp.enums.symmetric.aes256 };
  let pgpMsg;
  results.push({ ...(await measure('openpgp 6 (AEAD GCM): encrypt', size, async () => {
    pgpMsg = await openpgp.encrypt({ message: await openpgp.createMessage({ binary: input }), encryptionKeys: pgpPub, format: 'binary', config: pgpConfig });
  }, runs)), group: 'peer', op: 'encrypt', overheadBytes: pgpMsg.length - size, streams: true });
  results.push({ ...(await measure('openpgp 6 (AEAD GCM): decrypt', size, async () => {
    const { data } = await openpgp.decrypt({ message: await openpgp.readMessage({ binaryMessage: pgpMsg }), decryptionKeys: pgpPriv, format: 'binary' });
    if (data.length !== size) throw new Error('openpgp round trip');
  }, runs)), group: 'peer', op: 'decrypt', overheadBytes: pgpMsg.length - size, streams: true });

  // The portable fallback: AES-GCM compiled to wasm (no WebCrypto), on a quarter of the input.
  const soft = { ...ctx, aeadBackend: 'rustcrypto' };
  const small = input.subarray(0, size / 4);
  let softMsg;
  results.push({ ...(await measure('kms-envelope RustCrypto fallback: encrypt', small.length, async () => { softMsg = (await encrypt(keyring, small, soft)).result; }, 3)), group: 'rustcrypto', op: 'encrypt' });
  results.push({ ...(await measure('kms-envelope RustCrypto fallback: decrypt', small.length, async () => { await decrypt(keyring, softMsg, soft); }, 3)), group: 'rustcrypto', op: 'decrypt' });

  // Both ceilings once more, at the end: the page's state drifts over a run
  // (heap, GC), and the ratios use the faster of the two measurements.
  const ceilEnc2 = await measure('WebCrypto AES-GCM 64 KiB, sequential, again at the end: encrypt', size, () => bare('enc'), runs);
  const ceilDec2 = await measure('WebCrypto AES-GCM 64 KiB, sequential, again at the end: decrypt', size, () => bare('dec'), runs);
  const oEnc2 = await measure('WebCrypto 64 KiB, into one output array, again at the end: encrypt', size, () => intoOne('enc'), runs);
  const oDec2 = await measure('WebCrypto 64 KiB, into one output array, again at the end: decrypt', size, () => intoOne('dec'), runs);
  results.push({ ...ceilEnc2, group: 'ceiling', op: 'encrypt' }, { ...ceilDec2, group: 'ceiling', op: 'decrypt' });
  results.push({ ...oEnc2, group: 'one-shot-ceiling', op: 'encrypt' }, { ...oDec2, group: 'one-shot-ceiling', op: 'decrypt' });

  clearInterval(sampler);
  const ceiling = { encrypt: Math.max(ceilEnc.mibps, ceilEnc2.mibps), decrypt: Math.max(ceilDec.mibps, ceilDec2.mibps) };
  const streamCeiling = { encrypt: sEnc.mibps, decrypt: sDec.mibps };
  // Encrypting and decrypting the same bytes in one pipeline: its ceiling
  // is both ceilings in series.
  ceiling.pipeline = 1 / (1 / ceiling.encrypt + 1 / ceiling.decrypt);
  streamCeiling.pipeline = 1 / (1 / streamCeiling.encrypt + 1 / streamCeiling.decrypt);
  const oneShotCeiling = { encrypt: Math.max(oEnc.mibps, oEnc2.mibps), decrypt: Math.max(oDec.mibps, oDec2.mibps) };
  for (const r of results) {
    if (ceiling[r.op]) r.ratio = r.mibps / ceiling[r.op];
    if (['stream-ceiling', 'stream', 'pool-stream', 'stream-1gib'].includes(r.group)) r.ratioShape = r.mibps / streamCeiling[r.op];
    if (['one-shot-ceiling', 'one-shot', 'pool'].includes(r.group)) r.ratioShape = r.mibps / oneShotCeiling[r.op];
  }
  for (const r of results) {
    if (['one-shot', 'stream', 'pool', 'pool-stream', 'rustcrypto'].includes(r.group)) Object.assign(r, { overheadBytes: message.length - size, streams: true });
  }
  return { sizeMiB, runs, overheadBytes: message.length - size, userAgent: navigator.userAgent, ceiling, oneShotCeiling, streamCeiling, results };
}

window.__bench = run;
document.getElementById('status').textContent = 'ready';
