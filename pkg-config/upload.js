// Uploads through a kms-envelope gateway: the transport of `uploadEncrypted`
// (api.js), which supplies the encryption. `POST /v1/uploads` says where the
// bytes go:
//
// - `direct: true` (objects in S3): the gateway issues the object id the
//   encryption context carries and presigns multipart `UploadPart` URLs; parts
//   go straight to S3, several in flight, each retried with backoff from the
//   ciphertext still held (nothing acknowledged is encrypted or sent again);
//   then `complete` with the ETags. The gateway carries no file bytes.
// - otherwise the parts go to the gateway in order (`PUT /v1/uploads/ID?offset=N`).
//
// Errors are `UploadError`s with a stable `code`: the gateway's (`FORBIDDEN`,
// `TOO_LARGE`, `STORAGE_UNAVAILABLE`, …), `NETWORK`, `STORAGE` (S3 refused a
// part), `ABORTED`, or `INVALID_ARGUMENT`. A failed or aborted upload is
// cancelled on the gateway (S3 frees its parts).

/** An upload that failed: `code` is stable, `status` the HTTP status if there was one. */
export class UploadError extends Error {
  constructor(code, message, status) {
    super(message);
    this.name = 'UploadError';
    this.code = code;
    this.status = status;
  }
}

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); reject(aborted()); }, { once: true });
});
const aborted = () => new UploadError('ABORTED', 'the upload was aborted');
const backoff = (attempt) => 250 * 2 ** attempt * (0.5 + Math.random());
/** Worth another try: the network, throttling, a server error, an expired presigned URL. */
const transient = (status) => status >= 500 || status === 429 || status === 408;

function options(o) {
  const concurrency = o.concurrency ?? 3;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 16) throw new UploadError('INVALID_ARGUMENT', 'concurrency: an integer from 1 to 16');
  const retries = o.retries ?? 5;
  if (!Number.isInteger(retries) || retries < 0 || retries > 20) throw new UploadError('INVALID_ARGUMENT', 'retries: an integer from 0 to 20');
  return {
    base: String(o.gateway ?? '').replace(/\/+$/, ''),
    headers: o.headers ?? {},
    credentials: o.credentials ?? 'same-origin',
    fetch: o.fetch ?? globalThis.fetch.bind(globalThis),
    signal: o.signal,
    onProgress: o.onProgress,
    concurrency,
    retries,
  };
}

/** A JSON call to the gateway; its error answer becomes an UploadError with the gateway's code. */
async function call(o, method, path, body) {
  let r;
  try {
    r = await o.fetch(o.base + path, {
      method, credentials: o.credentials, signal: o.signal,
      headers: { ...o.headers, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch (e) {
    if (o.signal?.aborted) throw aborted();
    throw new UploadError('NETWORK', `the gateway is unreachable: ${e.message}`);
  }
  const j = r.status === 204 ? {} : await r.json().catch(() => ({}));
  if (!r.ok) throw new UploadError(j.error || 'GATEWAY', j.message || `the gateway answered ${r.status}`, r.status);
  return j;
}

/** Cuts a stream of byte chunks into Blobs of exactly `size` bytes (the last one shorter). */
async function* parts(stream, size, signal) {
  const reader = stream.getReader();
  let held = [];
  let heldBytes = 0;
  let ended = false;
  try {
    for (;;) {
      if (signal?.aborted) throw aborted();
      const { done, value } = await reader.read();
      if (done) { ended = true; break; }
      let chunk = value;
      while (heldBytes + chunk.length >= size) {
        const take = size - heldBytes;
        held.push(chunk.subarray(0, take));
        yield new Blob(held);
        chunk = chunk.subarray(take);
        held = [];
        heldBytes = 0;
      }
      if (chunk.length) { held.push(chunk); heldBytes += chunk.length; }
    }
    if (heldBytes) yield new Blob(held);
  } finally {
    // Stopped early (a failure, an abort): the encryption upstream stops too.
    if (!ended) reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** Presigned part URLs, asked for up to 16 parts ahead (they stay valid for minutes). */
function presigner(o, uploadId, maxParts) {
  const urls = new Map();
  const ask = async (numbers) => {
    const r = await call(o, 'POST', `/v1/uploads/${encodeURIComponent(uploadId)}/parts`, { partNumbers: numbers });
    for (const p of r.parts) urls.set(p.partNumber, p.url);
  };
  return {
    async url(n, fresh) {
      if (fresh || !urls.has(n)) {
        const numbers = fresh ? [n] : Array.from({ length: Math.min(16, maxParts - n + 1) }, (_, i) => n + i);
        await ask(numbers);
      }
      const u = urls.get(n);
      urls.delete(n);
      return u;
    },
  };
}

/** PUTs one part to S3 until it is acknowledged: its ETag. */
async function putDirect(o, urls, n, blob) {
  for (let attempt = 0; ; attempt++) {
    const url = await urls.url(n, attempt > 0);
    let status = 0;
    let why;
    try {
      const r = await o.fetch(url, { method: 'PUT', body: blob, signal: o.signal, credentials: 'omit' });
      if (r.ok) {
        const etag = r.headers.get('etag');
        if (!etag) throw new UploadError('STORAGE', 'S3 answered no ETag: the bucket\'s CORS rule must expose the ETag header');
        return etag;
      }
      status = r.status;
      why = `S3 answered ${r.status} for part ${n}`;
      // 403: the presigned URL expired (a fresh one is asked for).
      if (!transient(status) && status !== 403) throw new UploadError('STORAGE', why, status);
    } catch (e) {
      if (o.signal?.aborted) throw aborted();
      if (e instanceof UploadError) throw e;
      why = `part ${n} could not be sent: ${e.message}`;
    }
    if (attempt >= o.retries) throw new UploadError(status ? 'STORAGE' : 'NETWORK', why, status || undefined);
    await sleep(backoff(attempt), o.signal);
  }
}

async function direct(o, start, stream, total) {
  const urls = presigner(o, start.uploadId, start.maxParts);
  const etags = [];
  const inflight = new Set();
  let acknowledged = 0;
  let failure = null;
  let n = 0;
  for await (const blob of parts(stream, start.partBytes, o.signal)) {
    if (failure) break;
    n += 1;
    if (n > start.maxParts) throw new UploadError('TOO_LARGE', `objects are limited to ${start.maxObjectBytes} bytes`);
    const number = n;
    const p = putDirect(o, urls, number, blob).then((etag) => {
      etags[number - 1] = etag;
      acknowledged += blob.size;
      o.onProgress?.({ sent: acknowledged, total });
    }, (e) => { failure ??= e; });
    inflight.add(p);
    p.finally(() => inflight.delete(p));
    while (inflight.size >= o.concurrency) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  if (failure) throw failure;
  return call(o, 'POST', `/v1/uploads/${encodeURIComponent(start.uploadId)}/complete`, {
    parts: etags.map((etag, i) => ({ partNumber: i + 1, etag })),
  });
}

/** One part to the gateway, retried; a part it already has counts as sent. */
async function putThrough(o, uploadId, offset, blob) {
  for (let attempt = 0; ; attempt++) {
    let why;
    let status = 0;
    try {
      const r = await o.fetch(`${o.base}/v1/uploads/${encodeURIComponent(uploadId)}?offset=${offset}`, {
        method: 'PUT', body: blob, signal: o.signal, credentials: o.credentials,
        headers: { ...o.headers, 'Content-Type': 'application/octet-stream' },
      });
      if (r.ok) return;
      const j = await r.json().catch(() => ({}));
      if (r.status === 409 && j.received === offset + blob.size) return;
      status = r.status;
      why = j.message || `the gateway answered ${r.status}`;
      if (!transient(r.status)) throw new UploadError(j.error || 'GATEWAY', why, r.status);
    } catch (e) {
      if (o.signal?.aborted) throw aborted();
      if (e instanceof UploadError) throw e;
      why = `a part could not be sent: ${e.message}`;
    }
    if (attempt >= o.retries) throw new UploadError(status ? 'GATEWAY' : 'NETWORK', why, status || undefined);
    await sleep(backoff(attempt), o.signal);
  }
}

async function through(o, start, stream, total) {
  const size = Math.min(start.maxPartBytes ?? 4 << 20, 4 << 20);
  let offset = 0;
  for await (const blob of parts(stream, size, o.signal)) {
    await putThrough(o, start.uploadId, offset, blob);
    offset += blob.size;
    o.onProgress?.({ sent: offset, total });
  }
  return call(o, 'POST', `/v1/uploads/${encodeURIComponent(start.uploadId)}/complete`);
}

/**
 * Uploads `source` (a Blob/File or a ReadableStream of bytes), sealed by `seal(context)` (a
 * TransformStream), to the gateway. `context` must name the `owner`; for a direct upload the gateway
 * issues `object`, otherwise `context.object`, `opts.objectId` or a random UUID is used. `size(context)`, if given,
 * tells the ciphertext's total for progress. Resolves to the stored object, as the gateway lists it.
 */
export async function uploadThrough(source, seal, size, opts = {}) {
  const o = options(opts);
  const context = { ...(opts.context ?? {}) };
  if (typeof context.owner !== 'string' || !context.owner) throw new UploadError('INVALID_ARGUMENT', 'context.owner: the uploader, as the gateway knows them');
  const stream = typeof Blob !== 'undefined' && source instanceof Blob ? source.stream() : source;
  if (!stream || typeof stream.pipeThrough !== 'function') throw new UploadError('INVALID_ARGUMENT', 'source: a Blob, a File or a ReadableStream');
  if (o.signal?.aborted) throw aborted();
  const start = await call(o, 'POST', '/v1/uploads');
  const cancel = () => o.fetch(`${o.base}/v1/uploads/${encodeURIComponent(start.uploadId)}`, {
    method: 'DELETE', credentials: o.credentials, headers: o.headers,
  }).catch(() => {});
  try {
    if (start.direct) {
      if (context.object !== undefined && context.object !== start.objectId) {
        throw new UploadError('INVALID_ARGUMENT', 'context.object: the gateway issues the object id of a direct upload (leave it out)');
      }
      context.object = start.objectId;
    } else {
      context.object ??= opts.objectId ?? globalThis.crypto.randomUUID();
    }
    const total = size ? await size(context) : undefined;
    const sealed = stream.pipeThrough(seal(context));
    const object = await (start.direct ? direct(o, start, sealed, total) : through(o, start, sealed, total));
    return object;
  } catch (e) {
    await cancel();
    if (o.signal?.aborted) throw aborted();
    throw e;
  }
}
