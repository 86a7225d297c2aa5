// A page bundled from the packed npm package, as a customer would use it.
import {
  KmsRsaKeyring, RawAesKeyring, EnvelopeError, encrypt, decrypt, encryptStream, decryptStream, parseHeader, encryptedSize,
} from 'kms-envelope';

const b64 = (u8) => { let s = ''; for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000)); return btoa(s); };
const plaintext = (n) => { const a = new Uint8Array(n); for (let i = 0; i < n; i++) a[i] = (i * 31 + (i >> 8) * 7 + 11) & 0xff; return a; };
const collect = async (rs) => new Uint8Array(await new Response(rs).arrayBuffer());

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
  return { checks, oneShot: b64(result), streamed: b64(streamed), webcrypto: !!(globalThis.crypto && crypto.subtle) };
}

window.__run = run;
document.getElementById('status').textContent = 'ready';
