// Measures, in one page run and on the same input: the WebCrypto AES-256-GCM
// ceiling (64 KiB calls, sequential and 4 in flight; and the same calls
// written into one output array, or run in a JS TransformStream: what a
// one-shot call and a stream must do besides the calls) and kms-envelope
// (one-shot and streaming, both ways, KMS RSA keyring, 64 KiB frames), plus
// the pure-wasm RustCrypto fallback, and the peers: the AWS Encryption SDK
// for browsers (raw RSA keyring, suite 0x0478, frames of 4 KiB and 64 KiB)
// and OpenPGP.js v6 (AEAD, SEIPDv2). Median of the runs (7 by default) after
// a warm-up; each run of a measured row follows one run of its ceilings, and
// its ratios are the medians of the per-run ratios.
import { KmsRsaKeyring, RawRsaKeyring, WorkerPool, encrypt, decrypt, encryptStream, decryptStream } from 'kms-envelope';
import * as esdk from '@aws-crypto/client-browser';
import * as openpgp from 'openpgp';

const MiB = 1024 * 1024;
const FRAME = 65536;
const out = document.getElementById('out');
const log = (s) => { out.textContent += s + '\n'; };

function heap() { return performance.memory ? performance.memory.usedJSHeapSize : 0; }
// Sampled only while a measured row runs (not while its paired ceilings do).
let heapPeak = 0, sampling = false;
const sampler = setInterval(() => { if (sampling) heapPeak = Math.max(heapPeak, heap()); }, 20);

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

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Times `fn` on `bytes` bytes: a warm-up, then `runs` runs. With `paired`
// ({ ceiling, shape }: functions doing the same work on `size` bytes), each
// run of the row comes right after one run of its ceiling and one of its
// same-shape ceiling, and the row's ratios are the medians of the per-run
// ratios: a shared machine's speed drifts over a page run by more than the
// differences measured, and alternation takes the drift out.
async function measure(name, bytes, fn, runs, paired = {}) {
  await fn(); // warm-up
  const ms = [], vsCeiling = [], vsShape = [];
  let cpu = 0, rss = 0;
  heapPeak = heap();
  for (let i = 0; i < runs; i++) {
    const tc = paired.ceiling ? await time(paired.ceiling) : 0;
    const ts = paired.shape ? await time(paired.shape) : 0;
    await rssReset();
    const cpu0 = await cpuMs();
    sampling = true;
    const t = await time(fn);
    sampling = false;
    cpu += (await cpuMs()) - cpu0;
    rss = Math.max(rss, await rssPeakMiB());
    ms.push(t);
    // MiB/s of the row over MiB/s of the ceiling, on this run.
    if (tc) vsCeiling.push((bytes / t) / (paired.size / tc));
    if (ts) vsShape.push((bytes / t) / (paired.size / ts));
  }
  const m = median(ms);
  const r = {
    name, mibps: (bytes / MiB) / (m / 1000), ms: m, runs: ms.map((x) => Math.round(x)),
    heapPeakMiB: heapPeak / MiB, rssPeakMiB: rss,
    // The browser's CPU time over the elapsed time of the row's runs.
    cpuCores: cpu / ms.reduce((a, b) => a + b, 0),
  };
  if (vsCeiling.length) r.pairedRatio = median(vsCeiling);
  if (vsShape.length) r.pairedShape = median(vsShape);
  const ratios = [r.pairedRatio && `${r.pairedRatio.toFixed(2)}× ceiling`, r.pairedShape && `${r.pairedShape.toFixed(2)}× same shape`].filter(Boolean).join(', ');
  log(`${name.padEnd(44)} ${r.mibps.toFixed(0).padStart(6)} MiB/s${ratios ? ` (${ratios})` : ''}  (median ${m.toFixed(0)} ms of ${runs}; ${r.cpuCores.toFixed(2)} cores; JS heap peak ${r.heapPeakMiB.toFixed(0)} MiB, renderer RSS peak ${rss.toFixed(0)} MiB)`);
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
  // What a row is measured in alternation with (see `measure`): the bare
  // ceiling of its direction and, where given, its same-shape ceiling.
  const pair = (op, shape) => ({ size, ceiling: () => bare(op), shape });
  const oEnc = await measure('WebCrypto 64 KiB, into one output array: encrypt', size, () => intoOne('enc'), runs, pair('enc'));
  const oDec = await measure('WebCrypto 64 KiB, into one output array: decrypt', size, () => intoOne('dec'), runs, pair('dec'));
  results.push({ ...oEnc, group: 'one-shot-ceiling', op: 'encrypt' }, { ...oDec, group: 'one-shot-ceiling', op: 'decrypt' });
  results.push({ ...(await measure('WebCrypto AES-GCM 64 KiB, 4 in flight: encrypt', size, () => inflight('enc'), runs, pair('enc'))), group: 'ceiling-4', op: 'encrypt' });
  results.push({ ...(await measure('WebCrypto AES-GCM 64 KiB, 4 in flight: decrypt', size, () => inflight('dec'), runs, pair('dec'))), group: 'ceiling-4', op: 'decrypt' });

  // The streaming ceiling: the same calls in a pure-JS TransformStream fed by
  // Blob.stream() and drained, i.e. the best a stream of 64 KiB frames can do here.
  const frameStream = (op) => {
    const unit = op === 'enc' ? FRAME : FRAME + 16;
    // A frame that straddles chunks is put together in one reused buffer
    // (WebCrypto copies its input before returning), the others are used
    // where they lie: one copy only where one cannot be avoided.
    const part = new Uint8Array(unit);
    let have = 0, i = 0;
    const one = async (c, bytes) => {
      const params = { name: 'AES-GCM', iv: iv(i++), additionalData: aad };
      c.enqueue(new Uint8Array(await (op === 'enc' ? crypto.subtle.encrypt(params, key, bytes) : crypto.subtle.decrypt(params, key, bytes))));
    };
    return new TransformStream({
      async transform(chunk, c) {
        let off = 0;
        if (have) {
          off = Math.min(unit - have, chunk.length);
          part.set(chunk.subarray(0, off), have);
          have += off;
          if (have < unit) return;
          await one(c, part);
          have = 0;
        }
        for (; chunk.length - off >= unit; off += unit) await one(c, chunk.subarray(off, off + unit));
        part.set(chunk.subarray(off));
        have = chunk.length - off;
      },
      async flush(c) { if (have) await one(c, part.subarray(0, have)); },
    });
  };
  // The sealed frames as one Blob of one part, as a message is.
  const sealedBlob = new Blob([new Uint8Array(await new Blob(sealed).arrayBuffer())]);
  // What the stream source alone delivers.
  // (A read rate: no ratio to an AES ceiling.)
  results.push({ ...(await measure('Blob.stream() read and drained, no crypto', size, async () => { await drain(new Blob([input]).stream()); }, runs)), group: 'source', op: 'read' });
  const streamCeil = {
    enc: async () => { await drain(new Blob([input]).stream().pipeThrough(frameStream('enc'))); },
    dec: async () => { await drain(sealedBlob.stream().pipeThrough(frameStream('dec'))); },
  };
  const sEnc = await measure('WebCrypto 64 KiB frames in a JS stream: encrypt', size, streamCeil.enc, runs, pair('enc'));
  const sDec = await measure('WebCrypto 64 KiB frames in a JS stream: decrypt', size, streamCeil.dec, runs, pair('dec'));
  results.push({ ...sEnc, group: 'stream-ceiling', op: 'encrypt' }, { ...sDec, group: 'stream-ceiling', op: 'decrypt' });

  // kms-envelope with the KMS RSA keyring; KMS Decrypt answered locally by WebCrypto RSA-OAEP.
  const priv = await crypto.subtle.importKey('pkcs8', pemToDer(privateKeyPem), { name: 'RSA-OAEP', hash: 'SHA-256' }, false, ['decrypt']);
  const kmsDecrypt = async ({ ciphertextBlob }) => ({ plaintext: new Uint8Array(await crypto.subtle.decrypt({ name: 'RSA-OAEP' }, priv, ciphertextBlob)), keyId: arn });
  const keyring = new KmsRsaKeyring({ keyArn: arn, publicKey: publicKeyPem, kmsDecrypt });
  const ctx = { encryptionContext: { owner: 'bench' } };
  let message;
  results.push({ ...(await measure('kms-envelope one-shot: encrypt', size, async () => { message = (await encrypt(keyring, input, ctx)).result; }, runs, pair('enc', () => intoOne('enc')))), group: 'one-shot', op: 'encrypt' });
  results.push({ ...(await measure('kms-envelope one-shot: decrypt', size, async () => { await decrypt(keyring, message, ctx); }, runs, pair('dec', () => intoOne('dec')))), group: 'one-shot', op: 'decrypt' });
  // The message as a Blob made once, as the stream ceiling's ciphertext is.
  const messageBlob = new Blob([message]);
  results.push({ ...(await measure('kms-envelope stream: encrypt', size, async () => {
    const n = await drain(new Blob([input]).stream().pipeThrough(encryptStream(keyring, ctx)));
    if (n !== message.length) throw new Error(`stream wrote ${n} bytes, expected ${message.length}`);
  }, runs, pair('enc', streamCeil.enc))), group: 'stream', op: 'encrypt' });
  results.push({ ...(await measure('kms-envelope stream: decrypt', size, async () => {
    const n = await drain(messageBlob.stream().pipeThrough(decryptStream(keyring, ctx)));
    if (n !== size) throw new Error(`stream released ${n} bytes, expected ${size}`);
  }, runs, pair('dec', streamCeil.dec))), group: 'stream', op: 'decrypt' });

  // The same with a worker pool (frames' AES-GCM on Web Workers, one per core).
  const pool = new WorkerPool({ workers: navigator.hardwareConcurrency || 2 });
  const pctx = { ...ctx, pool };
  const poolName = `${pool.size} workers`;
  results.push({ ...(await measure(`kms-envelope one-shot, ${poolName}: encrypt`, size, async () => {
    const m = (await encrypt(keyring, input, pctx)).result;
    if (m.length !== message.length) throw new Error('pooled encrypt: wrong length');
  }, runs, pair('enc', () => intoOne('enc')))), group: 'pool', op: 'encrypt' });
  results.push({ ...(await measure(`kms-envelope one-shot, ${poolName}: decrypt`, size, async () => {
    const { plaintext } = await decrypt(keyring, message, pctx);
    if (plaintext.length !== size || plaintext[size - 1] !== input[size - 1]) throw new Error('pooled decrypt: wrong plaintext');
  }, runs, pair('dec', () => intoOne('dec')))), group: 'pool', op: 'decrypt' });
  results.push({ ...(await measure(`kms-envelope stream, ${poolName}: encrypt`, size, async () => {
    const n = await drain(new Blob([input]).stream().pipeThrough(encryptStream(keyring, pctx)));
    if (n !== message.length) throw new Error(`pooled stream wrote ${n} bytes`);
  }, runs, pair('enc', streamCeil.enc))), group: 'pool-stream', op: 'encrypt' });
  results.push({ ...(await measure(`kms-envelope stream, ${poolName}: decrypt`, size, async () => {
    const n = await drain(messageBlob.stream().pipeThrough(decryptStream(keyring, pctx)));
    if (n !== size) throw new Error(`pooled stream released ${n} bytes`);
  }, runs, pair('dec', streamCeil.dec))), group: 'pool-stream', op: 'decrypt' });

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
    results.push({ ...(await measure(`${name}: encrypt`, size, async () => { m = (await esdkClient.encrypt(esdkKeyring, input, o)).result; }, runs, pair('enc'))), group: 'peer', op: 'encrypt', overheadBytes: m.length - size, streams: false });
    results.push({ ...(await measure(`${name}: decrypt`, size, async () => {
      const { plaintext } = await esdkClient.decrypt(esdkKeyring, m);
      if (plaintext.length !== size) throw new Error('client-browser round trip');
    }, runs, pair('dec'))), group: 'peer', op: 'decrypt', overheadBytes: m.length - size, streams: false });
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
  }, runs, pair('enc'))), group: 'peer', op: 'encrypt', overheadBytes: pgpMsg.length - size, streams: true });
  results.push({ ...(await measure('openpgp 6 (AEAD GCM): decrypt', size, async () => {
    const { data } = await openpgp.decrypt({ message: await openpgp.readMessage({ binaryMessage: pgpMsg }), decryptionKeys: pgpPriv, format: 'binary' });
    if (data.length !== size) throw new Error('openpgp round trip');
  }, runs, pair('dec'))), group: 'peer', op: 'decrypt', overheadBytes: pgpMsg.length - size, streams: true });

  // The portable fallback: AES-GCM compiled to wasm (no WebCrypto), on a quarter of the input.
  const soft = { ...ctx, aeadBackend: 'rustcrypto' };
  const small = input.subarray(0, size / 4);
  let softMsg;
  results.push({ ...(await measure('kms-envelope RustCrypto fallback: encrypt', small.length, async () => { softMsg = (await encrypt(keyring, small, soft)).result; }, 3, pair('enc'))), group: 'rustcrypto', op: 'encrypt' });
  results.push({ ...(await measure('kms-envelope RustCrypto fallback: decrypt', small.length, async () => { await decrypt(keyring, softMsg, soft); }, 3, pair('dec'))), group: 'rustcrypto', op: 'decrypt' });

  // Both ceilings once more, at the end: the page's state drifts over a run
  // (heap, GC); rows without a pair (the pipelines) are set against the
  // faster of the two measurements.
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
    // Paired rows: the medians of their per-run ratios (see `measure`).
    // The others (the ceilings themselves, the pipelines): against the
    // faster of the ceiling's measurements.
    if (r.pairedRatio) r.ratio = r.pairedRatio;
    else if (ceiling[r.op]) r.ratio = r.mibps / ceiling[r.op];
    if (r.pairedShape) r.ratioShape = r.pairedShape;
    else if (['stream-ceiling', 'stream-1gib'].includes(r.group)) r.ratioShape = r.mibps / streamCeiling[r.op];
    else if (r.group === 'one-shot-ceiling') r.ratioShape = r.mibps / oneShotCeiling[r.op];
  }
  for (const r of results) {
    if (['one-shot', 'stream', 'pool', 'pool-stream', 'rustcrypto'].includes(r.group)) Object.assign(r, { overheadBytes: message.length - size, streams: true });
  }
  return { sizeMiB, runs, overheadBytes: message.length - size, userAgent: navigator.userAgent, ceiling, oneShotCeiling, streamCeiling, results };
}

window.__bench = run;
document.getElementById('status').textContent = 'ready';
