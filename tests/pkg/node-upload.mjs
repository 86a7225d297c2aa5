// `uploadEncrypted` from Node 20, as a customer's service would use it, against
// the real gateway: with objects in S3 (moto) the parts go straight to S3; with
// the local directory they go through the gateway. Read back from where
// `GET /v1/objects/ID/url` says, decrypted with `gatewayKmsDecrypt`.
//
//   node node-upload.mjs '{"s3": {"url", "alice", "bob"}, "local": {…}}'
import { KmsRsaKeyring, UploadError, uploadEncrypted, decryptStream, gatewayKmsDecrypt } from 'kms-envelope';

const gateways = JSON.parse(process.argv[2]);
const checks = [];
const check = (name, ok, detail = '') => checks.push({ name, ok: !!ok, detail });
const bytes = (n) => { const a = new Uint8Array(n); for (let i = 0; i < n; i++) a[i] = (i * 131 + (i >> 9)) & 0xff; return a; };
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

async function keyringFor(gw, token) {
  const pk = await (await fetch(`${gw.url}/v1/public-key`)).json();
  return new KmsRsaKeyring({
    keyArn: pk.keyArn,
    publicKey: Buffer.from(pk.publicKey, 'base64'),
    publicKeyFingerprint: pk.fingerprint,
    kmsDecrypt: gatewayKmsDecrypt(`${gw.url}/v1/decrypt-data-key`, { headers: { authorization: `Bearer ${token}` } }),
  });
}

async function readBack(gw, token, object, keyring) {
  const auth = { authorization: `Bearer ${token}` };
  const where = await (await fetch(`${gw.url}/v1/objects/${object.id}/url?owner=${object.owner}`, { headers: auth })).json();
  const url = where.direct ? where.url : new URL(where.url, gw.url).href;
  const res = await fetch(url, { headers: where.direct ? {} : auth });
  const plain = res.body.pipeThrough(decryptStream(keyring, { encryptionContext: { owner: object.owner, object: object.id } }));
  const out = [];
  for await (const c of plain) out.push(c);
  return { direct: where.direct, data: new Uint8Array(Buffer.concat(out)) };
}

for (const [mode, gw] of Object.entries(gateways)) {
  const keyring = await keyringFor(gw, gw.alice);
  const headers = { authorization: `Bearer ${gw.alice}` };
  const data = bytes((40 << 20) + 12345);
  const seen = [];
  const object = await uploadEncrypted(new Blob([data]), keyring, {
    gateway: gw.url, headers, concurrency: 3, context: { owner: 'alice', file: 'survey.bin' },
    onProgress: (p) => seen.push(p),
  });
  const total = seen.at(-1)?.total;
  check(`${mode}: uploadEncrypted stores the object`, object.owner === 'alice' && object.size === total && object.fileName === 'survey.bin', JSON.stringify(object));
  check(`${mode}: progress counts acknowledged bytes up to the total`,
    seen.length >= 3 && seen.every((p, i) => i === 0 || p.sent > seen[i - 1].sent) && seen.at(-1).sent === total, `${seen.length} reports`);
  const back = await readBack(gw, gw.alice, object, keyring);
  check(`${mode}: read back from ${mode === 's3' ? 'S3 (a presigned URL)' : 'the gateway'} and decrypted`, back.direct === (mode === 's3') && equal(back.data, data));

  // A ReadableStream source; the gateway's answers as coded errors.
  const streamed = await uploadEncrypted(new Blob([bytes(1000)]).stream(), keyring, { gateway: gw.url, headers, context: { owner: 'alice' } });
  check(`${mode}: a ReadableStream uploads too`, streamed.size > 1000);
  const code = (p) => p.then(() => 'resolved', (e) => (e instanceof UploadError ? `${e.code}:${e.status ?? ''}` : `other:${e}`));
  check(`${mode}: an owner other than the caller: FORBIDDEN (403)`,
    (await code(uploadEncrypted(new Blob([data.subarray(0, 100)]), keyring, { gateway: gw.url, headers, context: { owner: 'bob' } }))) === 'FORBIDDEN:403');
  check(`${mode}: no owner: INVALID_ARGUMENT`, (await code(uploadEncrypted(new Blob([]), keyring, { gateway: gw.url, headers, context: {} }))).startsWith('INVALID_ARGUMENT'));
  check(`${mode}: a wrong token: UNAUTHENTICATED (401)`,
    (await code(uploadEncrypted(new Blob([data]), keyring, { gateway: gw.url, headers: { authorization: 'Bearer wrong' }, context: { owner: 'alice' } }))) === 'UNAUTHENTICATED:401');
  const ac = new AbortController();
  const aborted = code(uploadEncrypted(new Blob([data]), keyring, {
    gateway: gw.url, headers, context: { owner: 'alice' }, signal: ac.signal, onProgress: () => ac.abort(),
  }));
  check(`${mode}: an abort ends the upload: ABORTED`, (await aborted).startsWith('ABORTED'));
  const list = await (await fetch(`${gw.url}/v1/objects`, { headers })).json();
  check(`${mode}: refused and aborted uploads left no object`, list.objects.length === 2, `${list.objects.length} objects`);
}
console.log(JSON.stringify({ checks }));
