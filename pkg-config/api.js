// The public JavaScript API of kms-envelope, over the wasm-bindgen module.
// Shaped like the AWS Encryption SDK for JavaScript: keyring classes,
// encrypt/decrypt returning { result | plaintext, messageHeader }, plus
// streams, parseHeader, encryptedSize, key pinning and a gateway client.
// '#init' instantiates the wasm module (Node or browser flavour, chosen by the
// package's "imports" conditions); its top-level await finishes before this runs.
import '#init';
import * as wasm from './wasm/kms_envelope.js';
import { uploadThrough } from './upload.js';

export { UploadError } from './upload.js';

/** Thrown by every operation; `.code` is a stable string such as "FRAME_AUTH_FAILED". */
export const EnvelopeError = wasm.envelopeErrorClass();

export const CommitmentPolicy = Object.freeze({
  REQUIRE_ENCRYPT_REQUIRE_DECRYPT: 'REQUIRE_ENCRYPT_REQUIRE_DECRYPT',
  REQUIRE_ENCRYPT_ALLOW_DECRYPT: 'REQUIRE_ENCRYPT_ALLOW_DECRYPT',
});

export const AlgorithmSuiteIdentifier = Object.freeze({
  ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY: 0x0478,
  ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY_ECDSA_P384: 0x0578,
});

const HANDLE = Symbol('kms-envelope keyring');

function handle(keyring, name = 'keyring') {
  const h = keyring && keyring[HANDLE];
  if (!h) {
    throw new EnvelopeError('INVALID_ARGUMENT', `${name}: must be a KmsRsaKeyring, RawRsaKeyring, RawAesKeyring or MultiKeyring`);
  }
  return h;
}

class KeyringBase {
  constructor(h) { Object.defineProperty(this, HANDLE, { value: h }); }
}

/** A bounded in-memory cache of data keys for `CachingKeyring`s (entries zeroized on eviction). */
export class MaterialsCache {
  constructor(capacity = 1000) { Object.defineProperty(this, HANDLE, { value: new wasm.MaterialsCache(capacity) }); }
  /** Entries held now. */
  get size() { return this[HANDLE].size; }
  /** Drops every entry. */
  clear() { this[HANDLE].clear(); }
}

/**
 * Serves data keys from `cache` and asks `keyring` on a miss: reopening a message (or reading ranges of it)
 * does not call the backend Decrypt again while the entry is valid. `reuseDataKeys: true` also reuses a
 * data key across messages on encrypt (one key then protects several messages: bound it with the limits).
 */
export class CachingKeyring extends KeyringBase {
  constructor({ keyring, cache, ...limits } = {}) {
    if (!(cache instanceof MaterialsCache)) throw new EnvelopeError('INVALID_ARGUMENT', 'cache: must be a MaterialsCache');
    super(wasm.Keyring.caching(handle(keyring), cache[HANDLE], limits));
  }
}

/** The AWS KMS RSA keyring (`aws-kms-rsa`): encrypt with the KMS key's public key, decrypt through `kmsDecrypt`. */
export class KmsRsaKeyring extends KeyringBase {
  constructor(options) { super(wasm.Keyring.kmsRsa(options)); }
}

/** The raw RSA keyring (namespace/name; OAEP SHA-1/256/384/512 or PKCS#1). */
export class RawRsaKeyring extends KeyringBase {
  constructor(options) { super(wasm.Keyring.rawRsa(options)); }
}

/** The raw AES keyring (16-, 24- or 32-byte wrapping key). */
export class RawAesKeyring extends KeyringBase {
  constructor(options) { super(wasm.Keyring.rawAes(options)); }
}

/** A generator keyring plus children: every one wraps the data key; decrypt tries each. */
export class MultiKeyring extends KeyringBase {
  constructor({ generator, children = [] } = {}) {
    super(wasm.createMultiKeyring(
      generator ? handle(generator, 'generator').clone() : undefined,
      children.map((c, i) => handle(c, `children[${i}]`).clone()),
    ));
  }
}

/**
 * Web Workers that run the AES-GCM of frames in parallel, for `encrypt`, `decrypt`, `encryptStream`,
 * `decryptStream` and `Encryptor` (option `pool`). One thread's WebCrypto calls spend most of their
 * time in bookkeeping around the AES; workers spread it over the cores. The calling thread still lays
 * out and orders every frame, and plaintext is released only once its frame authenticates. Used for
 * suites without signatures (the default); others run on the calling thread. Reuse one pool for many
 * messages and `terminate()` it when done. `workerUrl`: where `pool-worker.js` of this package is
 * served, if a bundler does not resolve it (or a Content-Security-Policy needs a fixed URL).
 */
export class WorkerPool {
  #workers = [];
  #pending = new Map();
  #nextId = 0;
  constructor({ workers, workerUrl } = {}) {
    if (typeof Worker !== 'function') throw new EnvelopeError('INVALID_STATE', 'WorkerPool needs Web Workers (a browser or a worker)');
    const n = workers ?? Math.max(1, Math.min(4, globalThis.navigator?.hardwareConcurrency ?? 2));
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new EnvelopeError('INVALID_ARGUMENT', 'workers: must be an integer from 1 to 64');
    /** Number of workers. */
    this.size = n;
    for (let i = 0; i < n; i++) {
      const w = workerUrl
        ? new Worker(workerUrl, { type: 'module' })
        : new Worker(new URL('./pool-worker.js', import.meta.url), { type: 'module' });
      const slot = { worker: w, busy: 0 };
      w.onmessage = ({ data }) => this.#settle(slot, data);
      w.onerror = (e) => {
        e.preventDefault?.();
        slot.broken = true;
        for (const [id, p] of this.#pending) if (p.slot === slot) this.#fail(id, `a worker failed: ${e.message || 'could not start'}`);
      };
      this.#workers.push(slot);
    }
  }

  /**
   * Runs one batch (internal protocol, see pool-worker.js): resolves to `{ frames, buffer }`, the
   * frames' outputs and the request's buffer (transferred there and back, for reuse).
   */
  run(request) {
    const live = this.#workers.filter((s) => !s.broken);
    if (live.length === 0) return Promise.reject(new EnvelopeError('INVALID_STATE', 'the worker pool has no working worker (terminated, or pool-worker.js could not load)'));
    const slot = live.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, slot, op: request.op });
      slot.busy++;
      slot.worker.postMessage({ ...request, id }, [request.data.buffer]);
    });
  }

  /** Stops the workers; batches still running fail. */
  terminate() {
    for (const s of this.#workers) { s.worker.terminate(); s.broken = true; }
    for (const id of [...this.#pending.keys()]) this.#fail(id, 'the worker pool was terminated');
  }

  #settle(slot, { id, out, back, error }) {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    slot.busy--;
    // WebCrypto's OperationError on decrypt: a tag that does not verify.
    if (error === 'OperationError' && p.op === 'decrypt') p.reject(new EnvelopeError('FRAME_AUTH_FAILED', 'authentication tag does not verify'));
    else if (error) p.reject(new EnvelopeError('ENCRYPTION_FAILED', `a pool worker: ${error}`));
    else p.resolve({ frames: out, buffer: back });
  }

  #fail(id, message) {
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    p.slot.busy--;
    p.reject(new EnvelopeError('INVALID_STATE', message));
  }
}

function checked(options) {
  if (options && options.pool !== undefined && options.pool !== null && !(options.pool instanceof WorkerPool)) {
    throw new EnvelopeError('INVALID_ARGUMENT', 'pool: must be a WorkerPool');
  }
  return options;
}

export function encrypt(keyring, plaintext, options) { return wasm.encrypt(handle(keyring), plaintext, checked(options)); }
export function decrypt(keyring, ciphertext, options) { return wasm.decrypt(handle(keyring), ciphertext, checked(options)); }
export function encryptStream(keyring, options) { return wasm.encryptStream(handle(keyring), checked(options)); }
export function decryptStream(keyring, options) { return wasm.decryptStream(handle(keyring), checked(options)); }
export function encryptedSize(keyring, plaintextSize, options) { return wasm.encryptedSize(handle(keyring), plaintextSize, options); }
export function parseHeader(bytes) { return wasm.parseHeader(bytes); }
/**
 * Decrypts plaintext bytes [start, end) reading only the header and the frames that cover them.
 * `source`: a Blob/File, a URL (HTTP Range requests), `{ url, headers?, credentials?, fetch? }`
 * or `{ size, read(offset, length) }`. `end` may be Infinity; the range is clamped like `slice`.
 */
export function decryptRange(keyring, source, start, end, options) {
  return wasm.decryptRange(handle(keyring), source, start, end === undefined ? Infinity : end, options);
}
export function gatewayKmsDecrypt(url, options) { return wasm.gatewayKmsDecrypt(url, options); }

/**
 * Encrypts `source` (a Blob/File or a ReadableStream) as it uploads it to a kms-envelope gateway:
 * straight to S3 through presigned multipart URLs when the gateway keeps objects there (several
 * parts in flight, failed parts retried from the ciphertext held, never re-encrypted), else
 * through the gateway. Options: `gateway` (base URL, default same origin), `context` (`owner`
 * required), `headers`, `credentials`, `concurrency` (default 3), `retries`, `onProgress({ sent, total })`
 * (acknowledged ciphertext bytes), `signal`, `fetch`, and `encrypt` (options of `encryptStream`).
 * Resolves to the stored object; rejects with an `UploadError`.
 */
export function uploadEncrypted(source, keyring, options = {}) {
  const h = handle(keyring);
  const encrypt = checked(options.encrypt ?? {});
  const size = typeof Blob !== 'undefined' && source instanceof Blob
    ? (encryptionContext) => wasm.encryptedSize(h, source.size, { ...encrypt, encryptionContext })
    : undefined;
  const seal = (encryptionContext) => wasm.encryptStream(h, { ...encrypt, encryptionContext });
  return uploadThrough(source, seal, size, options);
}

/** Hand-driven encryption: `const e = await Encryptor.start(keyring, opts)`, then `update` / `finish`. */
export const Encryptor = {
  start(keyring, options) { return wasm.Encryptor.start(handle(keyring), checked(options)); },
};

/** Hand-driven decryption: `new Decryptor(keyring, opts)`, then `update` / `finish`. */
export class Decryptor {
  constructor(keyring, options) { return new wasm.Decryptor(handle(keyring), options); }
}
