// The packed package from Node 20, as a customer would use it.
import { constants, privateDecrypt } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import {
  KmsRsaKeyring, RawRsaKeyring, MultiKeyring, EnvelopeError, encrypt, decrypt, encryptStream, decryptStream, CommitmentPolicy,
} from 'kms-envelope';

const [keysDir, outPath, arn] = process.argv.slice(2);
const checks = [];
const check = (name, ok) => checks.push({ name, ok: !!ok });
const plaintext = (n) => { const a = new Uint8Array(n); for (let i = 0; i < n; i++) a[i] = (i * 31 + (i >> 8) * 7 + 11) & 0xff; return a; };

const priv = readFileSync(`${keysDir}/rsa-2048.pem`);
const kmsDecrypt = async ({ keyId, ciphertextBlob, encryptionAlgorithm }) => {
  if (keyId !== arn || encryptionAlgorithm !== 'RSAES_OAEP_SHA_256') throw new Error('IncorrectKeyException');
  const plaintext = privateDecrypt({ key: priv, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, ciphertextBlob);
  return { plaintext: new Uint8Array(plaintext), keyId: arn };
};
const kms = new KmsRsaKeyring({ keyArn: arn, publicKey: readFileSync(`${keysDir}/rsa-2048.pub.der`), kmsDecrypt });
const raw = new RawRsaKeyring({
  keyNamespace: 'kms-envelope-test', keyName: 'rsa-3072', padding: 'oaep-sha256',
  publicKey: readFileSync(`${keysDir}/rsa-3072.pub.pem`, 'utf8'), privateKey: readFileSync(`${keysDir}/rsa-3072.pem`, 'utf8'),
});
const multi = new MultiKeyring({ generator: kms, children: [raw] });
const pt = plaintext(300000);
const ctx = { owner: 'alice', purpose: 'node' };

const { result, messageHeader } = await encrypt(multi, pt, { encryptionContext: ctx });
check('two EDKs', messageHeader.encryptedDataKeys.length === 2);
for (const [name, k] of [['kms', kms], ['raw', raw]]) {
  const { plaintext: out } = await decrypt(k, result, { encryptionContext: { owner: 'alice' } });
  check(`decrypt with ${name}`, Buffer.compare(Buffer.from(out), Buffer.from(pt)) === 0);
}
const streamed = new Uint8Array(await new Response(new Blob([pt]).stream().pipeThrough(encryptStream(kms, { encryptionContext: ctx }))).arrayBuffer());
const back = new Uint8Array(await new Response(new Blob([streamed]).stream().pipeThrough(decryptStream(kms))).arrayBuffer());
check('stream round trip', Buffer.compare(Buffer.from(back), Buffer.from(pt)) === 0);
try { await decrypt(kms, result.subarray(0, result.length - 1)); check('truncation detected', false); } catch (e) {
  check('truncation detected', e instanceof EnvelopeError && e.code === 'TRUNCATED');
}
// The maximum number of EDKs holds on encrypt too.
try { await encrypt(multi, pt, { maxEncryptedDataKeys: 1 }); check('EDK maximum on encrypt', false); } catch (e) {
  check('EDK maximum on encrypt', e instanceof EnvelopeError && e.code === 'LIMIT_EXCEEDED');
}
check('EDK maximum raised', (await encrypt(multi, pt, { maxEncryptedDataKeys: 2 })).messageHeader.encryptedDataKeys.length === 2);
try { new KmsRsaKeyring({ keyArn: 'alias/x' }); check('alias refused', false); } catch (e) {
  check('alias refused', e instanceof EnvelopeError && e.code === 'INVALID_ARGUMENT');
}
check('constants', CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT === 'REQUIRE_ENCRYPT_ALLOW_DECRYPT');
writeFileSync(outPath, streamed);
console.log(JSON.stringify({ checks }));
