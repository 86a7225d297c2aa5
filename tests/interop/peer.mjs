#!/usr/bin/env node
/* Runs a batch of encrypt/decrypt jobs with the official AWS Encryption SDK for
 * JavaScript (@aws-crypto/client-node 5.0.2, installed next to this file).
 *
 *     node peer.mjs KEYS_DIR JOBS.json RESULTS.json
 *
 * JOBS.json: {"jobs": [job, ...]}, each job
 *     {"op": "encrypt" | "decrypt",
 *      "keyring": "raw-aes-BITS" | "raw-rsa-PADDING-BITS",
 *      "suite": "0x0478", "frame_length": 4096, "context": {...},
 *      "policy": "require-encrypt-require-decrypt" | "require-encrypt-allow-decrypt"
 *                | "forbid-encrypt-allow-decrypt",
 *      "input": PATH, "output": PATH}
 * RESULTS.json: [{"ok": true} | {"ok": false, "error": "..."}, ...] in job order.
 *
 * Keys come from KEYS_DIR (the test keys of tests/vectors/keys): namespace
 * "kms-envelope-test", key names "aes-BITS" and "rsa-BITS". PADDING is pkcs1 or
 * oaep-sha{1,256,384,512} (MGF1 uses the OAEP hash: OpenSSL's default). Encrypt
 * uses the RSA public key only, decrypt the private key. "kms-rsa-*" jobs fail:
 * the JS SDK has no AWS KMS RSA keyring.
 *
 * Quirks of the JS SDK / Node.js that this peer handles:
 * - Encryption context order. 5.0.2 serializes the message header with
 *   serializeFactory(fromUtf8, {utf8Sorting: true}) hard-coded in encrypt-node
 *   (encrypt_stream.js, framed_encrypt_stream.js); buildClient() has no such
 *   option. The raw AES keyring builds its wrapping AAD from the context itself
 *   and defaults to the old localeCompare order, so it is built here with
 *   {utf8Sorting: true} (UTF-8 byte order, as the spec and other ESDKs do).
 *   The raw RSA keyring does not use the context; decryption parses the header
 *   bytes as they are. No other place in the path takes the flag.
 * - frame_length 0 (non-framed) cannot be encrypted: encryptStream requires
 *   frameLength > 0, so such jobs report its error. Decrypting non-framed works.
 *   Any other length up to 2^32 - 1 is accepted (even 1; peer.py needs k*128).
 * - Node.js >= 20.11.1 refuses privateDecrypt with RSA_PKCS1_PADDING (Marvin
 *   attack, CVE-2023-46809) unless started with --security-revert, which
 *   NODE_OPTIONS may not carry. A batch that decrypts with raw-rsa-pkcs1-* is
 *   therefore re-run in a child node started with that flag.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { constants } from 'node:crypto'
import sdk from '@aws-crypto/client-node'

const {
  buildClient,
  CommitmentPolicy,
  AlgorithmSuiteIdentifier,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
  RawRsaKeyringNode,
} = sdk

const NAMESPACE = 'kms-envelope-test'
const REVERT_PKCS1 = '--security-revert=CVE-2023-46809'

const POLICIES = {
  'require-encrypt-require-decrypt': CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT,
  'require-encrypt-allow-decrypt': CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT,
  'forbid-encrypt-allow-decrypt': CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT,
}
const RSA_PADDINGS = {
  pkcs1: { padding: constants.RSA_PKCS1_PADDING },
  'oaep-sha1': { padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' },
  'oaep-sha256': { padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
  'oaep-sha384': { padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha384' },
  'oaep-sha512': { padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha512' },
}
const AES_WRAPPING = {
  128: RawAesWrappingSuiteIdentifier.AES128_GCM_IV12_TAG16_NO_PADDING,
  192: RawAesWrappingSuiteIdentifier.AES192_GCM_IV12_TAG16_NO_PADDING,
  256: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
}

function keyring(keysDir, spec, op) {
  let m
  if ((m = /^raw-aes-(\d+)$/.exec(spec)) && AES_WRAPPING[m[1]]) {
    return new RawAesKeyringNode({
      keyNamespace: NAMESPACE,
      keyName: `aes-${m[1]}`,
      // the SDK wants a buffer that owns its whole ArrayBuffer: copy it out
      unencryptedMasterKey: new Uint8Array(readFileSync(`${keysDir}/aes-${m[1]}.key`)),
      wrappingSuite: AES_WRAPPING[m[1]],
      utf8Sorting: true, // wrapping AAD = context in UTF-8 byte order
    })
  }
  if ((m = /^raw-rsa-(.+)-(\d+)$/.exec(spec)) && RSA_PADDINGS[m[1]]) {
    const rsaKey =
      op === 'encrypt'
        ? { publicKey: readFileSync(`${keysDir}/rsa-${m[2]}.pub.pem`, 'utf8') }
        : { privateKey: readFileSync(`${keysDir}/rsa-${m[2]}.pem`, 'utf8') }
    return new RawRsaKeyringNode({
      keyNamespace: NAMESPACE,
      keyName: `rsa-${m[2]}`,
      rsaKey,
      ...RSA_PADDINGS[m[1]],
    })
  }
  if (spec.startsWith('kms-rsa-')) {
    throw new Error('the AWS Encryption SDK for JavaScript has no AWS KMS RSA keyring')
  }
  throw new Error(`unknown keyring ${spec}`)
}

async function run(keysDir, job) {
  const commitmentPolicy = POLICIES[job.policy]
  if (!commitmentPolicy) throw new Error(`unknown policy ${job.policy}`)
  const { encrypt, decrypt } = buildClient({ commitmentPolicy })
  const ring = keyring(keysDir, job.keyring, job.op)
  const data = readFileSync(job.input)
  let out
  if (job.op === 'encrypt') {
    const suiteId = parseInt(job.suite, 16)
    if (typeof AlgorithmSuiteIdentifier[suiteId] !== 'string') {
      throw new Error(`unknown suite ${job.suite}`)
    }
    ;({ result: out } = await encrypt(ring, data, {
      suiteId,
      encryptionContext: job.context || {},
      frameLength: job.frame_length,
    }))
  } else if (job.op === 'decrypt') {
    ;({ plaintext: out } = await decrypt(ring, data))
  } else {
    throw new Error(`unknown op ${job.op}`)
  }
  writeFileSync(job.output, out)
}

async function main() {
  const [keysDir, jobsPath, resultsPath] = process.argv.slice(2)
  const { jobs } = JSON.parse(readFileSync(jobsPath, 'utf8'))
  const needsPkcs1 = jobs.some(
    (j) => j.op === 'decrypt' && /^raw-rsa-pkcs1-/.test(j.keyring)
  )
  if (needsPkcs1 && !process.execArgv.includes(REVERT_PKCS1)) {
    // Re-run this batch in a child node allowed to do PKCS#1 v1.5 decryption.
    const args = [REVERT_PKCS1, ...process.execArgv, ...process.argv.slice(1)]
    const child = spawnSync(process.execPath, args, { stdio: 'inherit' })
    process.exit(child.status ?? 1)
  }
  const results = []
  for (const job of jobs) {
    try {
      await run(keysDir, job)
      results.push({ ok: true })
    } catch (e) {
      // reported per job, the batch goes on
      results.push({ ok: false, error: `${e?.name ?? 'Error'}: ${e?.message ?? e}` })
    }
  }
  writeFileSync(resultsPath, JSON.stringify(results))
}

await main()
