// Types of the kms-envelope npm package (hand-curated; the runtime is wasm-bindgen output).

export type Bytes = Uint8Array | ArrayBuffer | ArrayBufferView;
export type EncryptionContext = Record<string, string>;

/** Stable error codes (see the README's table). */
export type ErrorCode =
  | 'INVALID_ARGUMENT' | 'INVALID_KEY' | 'TRUNCATED' | 'TRAILING_DATA' | 'MALFORMED_MESSAGE'
  | 'UNSUPPORTED_VERSION' | 'UNSUPPORTED_SUITE' | 'LIMIT_EXCEEDED' | 'INVALID_ENCRYPTION_CONTEXT'
  | 'RESERVED_ENCRYPTION_CONTEXT_KEY' | 'ENCRYPTION_CONTEXT_MISMATCH' | 'COMMITMENT_POLICY_VIOLATION'
  | 'COMMITMENT_MISMATCH' | 'HEADER_AUTH_FAILED' | 'FRAME_AUTH_FAILED' | 'FRAME_SEQUENCE'
  | 'SIGNATURE_INVALID' | 'SIGNATURE_POLICY' | 'NO_DECRYPTABLE_KEY' | 'UNSUPPORTED_SUITE_FOR_KEYRING' | 'KMS_ERROR'
  | 'KMS_RESPONSE_INVALID' | 'ENCRYPTION_FAILED' | 'INVALID_STATE' | 'IO';

export class EnvelopeError extends Error {
  constructor(code: ErrorCode, message: string);
  readonly name: 'EnvelopeError';
  readonly code: ErrorCode;
}

export declare const CommitmentPolicy: {
  readonly REQUIRE_ENCRYPT_REQUIRE_DECRYPT: 'REQUIRE_ENCRYPT_REQUIRE_DECRYPT';
  readonly REQUIRE_ENCRYPT_ALLOW_DECRYPT: 'REQUIRE_ENCRYPT_ALLOW_DECRYPT';
};
export declare const AlgorithmSuiteIdentifier: {
  readonly ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY: 0x0478;
  readonly ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY_ECDSA_P384: 0x0578;
};

export type KmsEncryptionAlgorithm = 'RSAES_OAEP_SHA_256' | 'RSAES_OAEP_SHA_1';

export interface KmsDecryptRequest {
  keyId: string;
  ciphertextBlob: Uint8Array;
  encryptionAlgorithm: KmsEncryptionAlgorithm;
  /** The message's encryption context, for a backend that authorizes on it. KMS itself takes none. */
  encryptionContext: EncryptionContext;
}
export interface KmsDecryptResponse {
  /** SHA-384(context) ‖ data key, as KMS Decrypt returns it (bytes or base64). */
  plaintext: Uint8Array | string;
  keyId: string;
  encryptionAlgorithm?: KmsEncryptionAlgorithm;
}
export type KmsDecrypt = (request: KmsDecryptRequest) => Promise<KmsDecryptResponse>;

/** The JSON of KMS GetPublicKey (`PublicKey` base64 DER SPKI). */
export interface GetPublicKeyResponse {
  KeyId?: string;
  PublicKey: string | Uint8Array;
  KeyUsage?: string;
  KeySpec?: string;
  EncryptionAlgorithms?: string[];
}

export interface KmsRsaKeyringOptions {
  /** A full KMS key ARN (aliases are refused). */
  keyArn: string;
  /** DER SPKI bytes, PEM, or a GetPublicKey response. Needed to encrypt. */
  publicKey?: Bytes | string | GetPublicKeyResponse;
  encryptionAlgorithm?: KmsEncryptionAlgorithm;
  /** Needed to decrypt: KMS Decrypt, or `gatewayKmsDecrypt(url)`. */
  kmsDecrypt?: KmsDecrypt;
  /** Refuse any key ARN not listed. */
  allowedKeyArns?: string[];
  /** SHA-256 of the DER SPKI (hex or base64): refuse any other public key. */
  publicKeyFingerprint?: string;
}
export interface RawRsaKeyringOptions {
  keyNamespace: string;
  keyName: string;
  publicKey?: string | Bytes;
  privateKey?: string | Bytes;
  padding?: 'oaep-sha1' | 'oaep-sha256' | 'oaep-sha384' | 'oaep-sha512' | 'pkcs1';
}
export interface RawAesKeyringOptions {
  keyNamespace: string;
  keyName: string;
  wrappingKey: Bytes;
}

export declare abstract class Keyring { protected constructor(); }
export declare class KmsRsaKeyring extends Keyring { constructor(options: KmsRsaKeyringOptions); }
export declare class RawRsaKeyring extends Keyring { constructor(options: RawRsaKeyringOptions); }
export declare class RawAesKeyring extends Keyring { constructor(options: RawAesKeyringOptions); }
export declare class MaterialsCache {
  /** At most `capacity` entries (default 1000), least recently used evicted first; evicted keys are zeroized. */
  constructor(capacity?: number);
  readonly size: number;
  clear(): void;
}
export interface CachingKeyringOptions {
  keyring: Keyring;
  cache: MaterialsCache;
  /** Seconds an entry may be used: above 0 (default 300). */
  maxAge?: number;
  /** Messages an entry may serve: 1 to 2^32 (default 2^32). */
  maxMessages?: number;
  /** Plaintext bytes an encryption entry may protect: at most 2^63 - 1 (the default). */
  maxBytes?: number;
  /** Keyrings naming the same partition share entries of one cache; by default each keyring has a unique partition and shares nothing. */
  partition?: string;
  /** Reuse data keys across messages on encrypt (default false: one key then protects many messages). Needs `plaintextLength` for streams. */
  reuseDataKeys?: boolean;
}
/** Serves data keys from a MaterialsCache; the inner keyring (and KMS behind it) is asked on a miss. */
export declare class CachingKeyring extends Keyring { constructor(options: CachingKeyringOptions); }
export declare class MultiKeyring extends Keyring { constructor(options: { generator?: Keyring; children?: Keyring[] }); }

export interface WorkerPoolOptions {
  /** Number of workers, 1 to 64 (default: hardwareConcurrency, at most 4). */
  workers?: number;
  /** Where this package's `pool-worker.js` is served, when a bundler does not resolve it. */
  workerUrl?: string | URL;
}
/**
 * Web Workers running the AES-GCM of frames in parallel (browsers). Pass it as the `pool` option;
 * reuse it for many messages; `terminate()` it when done. Suites without signatures only (the default).
 */
export declare class WorkerPool {
  constructor(options?: WorkerPoolOptions);
  readonly size: number;
  terminate(): void;
}

export interface CommonOptions {
  /** "webcrypto" (default; falls back to RustCrypto where WebCrypto cannot serve) or "rustcrypto". */
  aeadBackend?: 'webcrypto' | 'rustcrypto';
  /** Run frames' AES-GCM on these workers (WebCrypto backend, unsigned suites). */
  pool?: WorkerPool;
}
export interface EncryptOptions extends CommonOptions {
  encryptionContext?: EncryptionContext;
  /** Default 65536. */
  frameLength?: number;
  /** Default 0x0478. 0x0578 (signed) only with raw keyrings. */
  suiteId?: 0x0478 | 0x0578;
  /** The plaintext's length when known up front (enforced; lets a CachingKeyring reuse data keys). */
  plaintextLength?: number;
  /** Most encrypted data keys the message may carry: default 10 (what decrypt accepts by default); `false` for no limit. */
  maxEncryptedDataKeys?: number | false;
  /** Keys of `encryptionContext` whose pairs are authenticated but not stored in the header: decryption needs them again in its `encryptionContext`. */
  requiredEncryptionContextKeys?: string[];
}
export interface DecryptOptions extends CommonOptions {
  /** The reproduced encryption context: pairs the header stores must match; the others are the message's authenticate-only pairs, and decryption fails unless the message was written with exactly them. */
  encryptionContext?: EncryptionContext;
  /** Default 10; `false` for no limit (the ESDK specification sets none). */
  maxEncryptedDataKeys?: number | false;
  commitmentPolicy?: keyof typeof CommitmentPolicy;
  /** Largest frame accepted, default 16 MiB; encrypt refuses a larger frameLength, so what it writes decrypt reads. */
  maxFrameLength?: number;
  /** Largest non-framed body accepted (held in memory whole until its tag verifies), default 64 MiB. */
  maxNonFramedLength?: number;
  /** Refuse signed messages (SIGNATURE_POLICY) as soon as the header shows one. */
  refuseSigned?: boolean;
  /** decryptRange: return a range of a signed message that does not reach its end (its signature cannot be checked; the result says "not-checked"). Default: refused with SIGNATURE_POLICY. */
  allowUnverifiedSignature?: boolean;
}

export interface EncryptedDataKey { providerId: string; providerInfo: string | Uint8Array; encryptedDataKey: Uint8Array; }
export interface MessageHeader {
  version: 1 | 2;
  suiteId: number;
  messageId: Uint8Array;
  encryptionContext: EncryptionContext;
  encryptedDataKeys: EncryptedDataKey[];
  contentType: 'framed' | 'non-framed';
  frameLength: number;
  /** Key ARNs of the message's `aws-kms-rsa` data keys. */
  keyArns: string[];
  /** parseHeader only. */
  headerLength?: number;
}

export function encrypt(keyring: Keyring, plaintext: Bytes, options?: EncryptOptions): Promise<{ result: Uint8Array; messageHeader: MessageHeader }>;
export function decrypt(keyring: Keyring, ciphertext: Bytes, options?: DecryptOptions): Promise<{ plaintext: Uint8Array; messageHeader: MessageHeader }>;

export interface EnvelopeTransformStream extends TransformStream<Uint8Array, Uint8Array> {
  /** Resolves with the header; for decryption, once the data key is unwrapped and before any plaintext. */
  readonly messageHeader: Promise<MessageHeader>;
}
export function encryptStream(keyring: Keyring, options?: EncryptOptions): EnvelopeTransformStream;
export function decryptStream(keyring: Keyring, options?: DecryptOptions): EnvelopeTransformStream;

/** Exact size of the message for `plaintextSize` bytes (for Content-Length). */
export function encryptedSize(keyring: Keyring, plaintextSize: number, options?: EncryptOptions): Promise<number>;
/** Where `decryptRange` reads a message from. */
export type RangeSource =
  | Blob
  | string
  | { url: string; headers?: Record<string, string>; credentials?: RequestCredentials; fetch?: typeof fetch }
  | { size: number; read(offset: number, length: number): Promise<Uint8Array | ArrayBuffer> };
export interface RangeResult {
  plaintext: Uint8Array;
  messageHeader: MessageHeader;
  /** The range returned, after clamping to the plaintext's length. */
  start: number;
  end: number;
  /** The whole message's plaintext length. */
  plaintextLength: number;
  /** "unsigned" (the suite signs nothing), "verified" (the whole message was read), "not-checked" (allowUnverifiedSignature). */
  signature: 'unsigned' | 'verified' | 'not-checked';
}
/**
 * Decrypts plaintext bytes [start, end) of a framed message, reading only its header and the frames that
 * cover the range; each is authenticated. When the range reaches the end, the final frame (and for signed
 * suites the whole message and its signature) is verified too. A range read cannot prove that frames
 * outside the range are intact or present.
 */
export function decryptRange(keyring: Keyring, source: RangeSource, start: number, end?: number, options?: DecryptOptions): Promise<RangeResult>;
/** The header of a message, without any key. */
export function parseHeader(bytes: Bytes): MessageHeader;

export interface GatewayOptions {
  headers?: Record<string, string>;
  credentials?: RequestCredentials;
  /** Default 5. */
  maxAttempts?: number;
  signal?: AbortSignal;
  fetch?: typeof fetch;
}
/** A `kmsDecrypt` that POSTs to the kms-envelope gateway, retrying throttling with backoff and jitter. */
export function gatewayKmsDecrypt(url: string, options?: GatewayOptions): KmsDecrypt;

/** Why `uploadEncrypted` failed: the gateway's code (`FORBIDDEN`, `TOO_LARGE`, `TOO_MANY_UPLOADS`,
 * `STORAGE_UNAVAILABLE`, `INVALID_MESSAGE`, …) or one of these. */
export type UploadErrorCode = 'NETWORK' | 'STORAGE' | 'ABORTED' | 'INVALID_ARGUMENT' | 'GATEWAY' | (string & {});
export class UploadError extends Error {
  readonly name: 'UploadError';
  readonly code: UploadErrorCode;
  /** The HTTP status, when there was an answer. */
  readonly status?: number;
}
export interface UploadOptions {
  /** The gateway's base URL; default the page's origin. */
  gateway?: string;
  /** The encryption context: `owner` (the uploader) required; the gateway issues `object` for a direct upload. */
  context: EncryptionContext & { owner: string };
  /** Sent to the gateway (never to S3): e.g. `Authorization` or `X-CSRF-Token`. */
  headers?: Record<string, string>;
  credentials?: RequestCredentials;
  /** Parts in flight to S3 at once; default 3. */
  concurrency?: number;
  /** Tries after the first for each part; default 5. */
  retries?: number;
  /** Ciphertext bytes acknowledged so far (`total` when the source is a Blob). */
  onProgress?: (p: { sent: number; total?: number }) => void;
  signal?: AbortSignal;
  fetch?: typeof fetch;
  /** Options of the encryption (frame length, pool, …); the context is `context`. */
  encrypt?: Omit<EncryptOptions, 'encryptionContext'>;
}
/** The object as the gateway lists it. */
export interface StoredObject {
  id: string;
  owner: string;
  keyArn: string;
  size: number;
  created: number;
  fileName: string | null;
  sharedWith: string[];
}
/**
 * Encrypts `source` as it uploads it to a kms-envelope gateway: straight to S3 through presigned
 * multipart URLs when the gateway keeps objects there, else through the gateway.
 */
export function uploadEncrypted(source: Blob | ReadableStream<Uint8Array>, keyring: Keyring, options: UploadOptions): Promise<StoredObject>;

export interface EncryptorHandle {
  readonly messageHeader: MessageHeader;
  encryptedSize(plaintextSize: number): number;
  update(chunk: Bytes): Promise<Uint8Array>;
  finish(): Promise<Uint8Array>;
}
export declare const Encryptor: { start(keyring: Keyring, options?: EncryptOptions): Promise<EncryptorHandle> };
export declare class Decryptor {
  constructor(keyring: Keyring, options?: DecryptOptions);
  readonly messageHeader: MessageHeader | undefined;
  update(chunk: Bytes): Promise<Uint8Array>;
  finish(): MessageHeader;
}
