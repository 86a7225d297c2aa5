// The crypto worker: encrypts uploads and decrypts downloads off the main
// thread, streaming, with kms-envelope (the npm package) and a streaming
// SHA-256 (hash-wasm). Messages in: {type: 'upload'|'download'|'preview'|'cancel', id, …}
// (download and preview carry the listed object, owner included); out:
// {type: 'progress'|'status'|'done'|'error', id, …}.
import {
  KmsRsaKeyring, decryptStream, gatewayKmsDecrypt, decryptRange, uploadEncrypted,
} from 'kms-envelope';
import { createSHA256 } from 'hash-wasm';
import { b64decode } from './format.js';
import { GatewayError, explain } from './errors.js';

const jobs = new Map();

const post = (msg, transfer) => self.postMessage(msg, transfer || []);

self.onmessage = (ev) => {
  const m = ev.data;
  if (m.type === 'cancel') { jobs.get(m.id)?.abort(); return; }
  const ctl = new AbortController();
  jobs.set(m.id, ctl);
  const run = { upload, download, preview }[m.type];
  const state = { lastGateway: null };
  run(m, ctl.signal, state)
    .then((result) => post({ type: 'done', id: m.id, ...result }))
    .catch((e) => post({
      type: 'error', id: m.id, code: e.code || e.error || e.name || 'ERROR',
      message: ctl.signal.aborted ? 'Cancelled.' : explain(e, state.lastGateway), detail: String(e && e.message),
    }))
    .finally(() => jobs.delete(m.id));
};

async function answer(res) {
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new GatewayError(res.status, body.error, body.message);
  return body;
}

/**
 * Where to read a listed object's blob (with Range requests): a presigned S3
 * URL (no credentials), or the gateway's own route (the session cookie).
 */
async function blobSource(object, signal) {
  const where = await fetch(`${objectUrl(object).replace('?', '/url?')}`, { credentials: 'same-origin', signal }).then(answer);
  return where.direct ? { url: where.url, credentials: 'omit' } : { url: where.url, credentials: 'same-origin' };
}

async function* chunks(stream, signal) {
  const reader = stream.getReader();
  try {
    for (;;) {
      if (signal.aborted) throw new DOMException('cancelled', 'AbortError');
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

async function sha256Of(file, signal, id) {
  const h = await createSHA256();
  h.init();
  let done = 0;
  for await (const c of chunks(file.stream(), signal)) {
    h.update(c);
    done += c.length;
    post({ type: 'progress', id, phase: 'hashing', done, total: file.size });
  }
  return h.digest('hex');
}

async function upload(m, signal) {
  const { id, file, key, owner, objectId, csrf } = m;
  const t0 = performance.now();
  const sha256 = await sha256Of(file, signal, id);
  const t1 = performance.now();
  const keyring = new KmsRsaKeyring({
    keyArn: key.keyArn,
    publicKey: b64decode(key.publicKey),
    encryptionAlgorithm: 'RSAES_OAEP_SHA_256',
    publicKeyFingerprint: key.fingerprint,
    allowedKeyArns: [key.keyArn],
  });
  // Objects in S3: parts go straight there (the gateway issues the object id);
  // otherwise through the gateway, under the id chosen here.
  let direct = false;
  const watching = async (url, init) => {
    if (!url.startsWith('/')) direct = true;
    return fetch(url, init);
  };
  const object = await uploadEncrypted(file, keyring, {
    context: { owner, file: file.name, sha256 },
    headers: { 'X-CSRF-Token': csrf },
    credentials: 'same-origin',
    signal,
    fetch: watching,
    onProgress: ({ sent, total }) => post({ type: 'progress', id, phase: 'uploading', done: sent, total }),
    objectId,
  }).catch((e) => { throw e.status ? new GatewayError(e.status, e.code, e.message) : e; });
  return { object, sha256, size: file.size, direct, timings: { hashMs: t1 - t0, sealAndSendMs: performance.now() - t1 } };
}

/** The blob of a listed object: ids are unique per owner, so always name the owner. */
function objectUrl(object) {
  if (!object.owner) throw Object.assign(new Error('the object has no owner'), { code: 'INVALID_OBJECT' });
  return `/v1/objects/${encodeURIComponent(object.id)}?owner=${encodeURIComponent(object.owner)}`;
}

function keyringFor(object, csrf, signal, id, state) {
  // Watch the gateway's answers: say when KMS throttles (the client retries).
  const watching = async (url, init) => {
    const r = await fetch(url, init);
    if (r.status === 429 || r.status === 503) post({ type: 'status', id, message: 'KMS is busy (throttled): retrying…' });
    if (!r.ok) {
      const j = await r.clone().json().catch(() => ({}));
      state.lastGateway = { status: r.status, error: j.error, message: j.message };
    }
    return r;
  };
  return new KmsRsaKeyring({
    keyArn: object.keyArn,
    encryptionAlgorithm: 'RSAES_OAEP_SHA_256',
    kmsDecrypt: gatewayKmsDecrypt('/v1/decrypt-data-key', {
      headers: { 'X-CSRF-Token': csrf }, credentials: 'same-origin', fetch: watching, signal,
    }),
  });
}

/** The first `bytes` of a file, decrypted from only the frames that hold them (HTTP Range requests). */
async function preview(m, signal, state) {
  const { id, object, csrf, bytes } = m;
  let read = 0;
  const counting = async (url, init) => {
    const r = await fetch(url, { ...init, signal });
    if (r.ok && init.method !== 'HEAD') read += Number(r.headers.get('content-length') || 0);
    if (!r.ok) state.lastGateway = { status: r.status };
    return r;
  };
  const keyring = keyringFor(object, csrf, signal, id, state);
  const source = { ...(await blobSource(object, signal)), fetch: counting };
  const r = await decryptRange(keyring, source, 0, bytes, { encryptionContext: { owner: object.owner, object: object.id } });
  return { plaintext: r.plaintext, plaintextLength: r.plaintextLength, read, fileName: r.messageHeader.encryptionContext.file };
}

async function download(m, signal, state) {
  const { id, object, csrf, handle } = m;
  const t0 = performance.now();
  const where = await blobSource(object, signal);
  const res = await fetch(where.url, { credentials: where.credentials, signal }).catch((e) => {
    if (signal.aborted) throw e;
    throw Object.assign(new Error(`the file could not be fetched: ${e.message}`), { code: 'STORAGE_UNREACHABLE' });
  });
  if (!res.ok) await answer(res);
  const total = Number(res.headers.get('content-length')) || object.size;
  const keyring = keyringFor(object, csrf, signal, id, state);
  // The blob must be the object asked for: a server that swaps blobs fails here.
  const dec = decryptStream(keyring, { encryptionContext: { owner: object.owner, object: object.id } });
  let received = 0;
  const counted = new TransformStream({
    transform(c, out) {
      received += c.length;
      post({ type: 'progress', id, phase: 'downloading', done: received, total });
      out.enqueue(c);
    },
  });
  const hasher = await createSHA256();
  hasher.init();
  const hashed = new TransformStream({ transform(c, out) { hasher.update(c); out.enqueue(c); } });
  let header;
  dec.messageHeader.then((h) => { header = h; }, () => {});
  const plain = res.body.pipeThrough(counted, { signal }).pipeThrough(dec).pipeThrough(hashed);

  let blob;
  if (handle) {
    // Streams to disk; an error aborts the write, which discards it.
    const writable = await handle.createWritable();
    try {
      await plain.pipeTo(writable, { signal });
    } catch (e) {
      await handle.remove?.().catch(() => {});
      throw e;
    }
  } else {
    // The browser keeps blob data out of the JS heap (on disk when large);
    // chunks are handed over a few MiB at a time.
    const parts = [];
    let batch = [];
    let batched = 0;
    for await (const c of chunks(plain, signal)) {
      batch.push(c);
      batched += c.length;
      if (batched >= 4 << 20) { parts.push(new Blob(batch)); batch = []; batched = 0; }
    }
    parts.push(new Blob(batch));
    blob = new Blob(parts, { type: 'application/octet-stream' });
  }
  const sha256 = hasher.digest('hex');
  const expected = header?.encryptionContext?.sha256 || null;
  if (expected && expected !== sha256) {
    if (handle) await handle.remove?.().catch(() => {});
    throw Object.assign(new Error('SHA-256 mismatch'), { code: 'HASH_MISMATCH' });
  }
  return { timings: { totalMs: performance.now() - t0 }, sha256, expected, blob, fileName: header?.encryptionContext?.file || object.id, size: received };
}
