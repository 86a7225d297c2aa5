// Gateway part of `make bench`: the release gateway with its embedded local
// KMS (RSA_2048 key) on 127.0.0.1, loaded by a separate process: wrk for
// `GET /v1/public-key` and `POST /v1/decrypt-data-key` (with the KMS answer
// cache on, the default, and off, so every request is a KMS Decrypt), and a
// Node client uploading distinct 1 MiB objects. Bounded in time and count.
//
//   node scripts/bench-gateway.mjs [seconds=10] [connections=32]   → prints JSON
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [seconds = 10, connections = 32] = process.argv.slice(2).map(Number);
const bin = join(root, 'target/release/kms-envelope');
const dir = mkdtempSync(join(tmpdir(), 'kms-envelope-gw-bench-'));
const token = randomBytes(24).toString('hex');
const auth = `Bearer ${token}`;
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout;
};
const machine = () => ({ loadavg1: +loadavg()[0].toFixed(2) });

run(bin, ['keys', '--data-dir', join(dir, 'data'), 'create', '--spec', 'RSA_2048', '--alias', 'files']);

async function gateway(cacheSeconds) {
  writeFileSync(join(dir, 'gateway.toml'), [
    'listen = "127.0.0.1:0"', 'data_dir = "data"', 'key = "alias/files"', `max_object_bytes = ${4 << 20}`,
    'decrypt_rate_per_second = 1000000000.0', 'decrypt_burst = 1000000000', `kms_cache_seconds = ${cacheSeconds}`,
    '[[users]]', 'name = "alice"', `token_sha256 = "${createHash('sha256').update(token).digest('hex')}"`, '',
  ].join('\n'));
  const child = spawn(bin, ['serve', '--config', join(dir, 'gateway.toml')], { cwd: dir, env: { ...process.env, RUST_LOG: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] });
  const first = await new Promise((ok, fail) => {
    createInterface({ input: child.stdout }).once('line', ok);
    child.once('exit', (c) => fail(new Error(`gateway exited: ${c}`)));
  });
  child.stdout.resume();
  return { child, url: first.split(/\s+/)[3] };
}

/// wrk against one endpoint; throws unless every answer was 2xx.
function wrk(url, path, method, body) {
  const lua = join(dir, 'wrk.lua');
  writeFileSync(lua, `
wrk.method = "${method}"
wrk.headers["Authorization"] = "${auth}"
${body ? `wrk.headers["Content-Type"] = "application/json"\nwrk.body = [[${body}]]` : ''}
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end`);
  const before = machine();
  const out = run('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '-s', lua, `${url}${path}`]);
  const [requests, micros, errors, p50, p99, max] = out.split('\n').find((l) => l.startsWith('RESULT')).split(' ').slice(1).map(Number);
  if (errors) throw new Error(`${path}: ${errors} failed requests of ${requests}\n${out}`);
  return { requests, requestsPerSecond: Math.round(requests / (micros / 1e6)), p50Ms: +(p50 / 1000).toFixed(2), p99Ms: +(p99 / 1000).toFixed(2), maxMs: +(max / 1000).toFixed(1), connections, seconds, machine: before };
}

function seal(url, object, plain, pk, arn) {
  const out = join(dir, `${object}.esdk`);
  run(bin, ['encrypt', '-i', plain, '-o', out, '--context', 'owner=alice', '--context', `object=${object}`, '--context', `file=${object}.bin`,
    '--kms-rsa', `arn=${arn},public=${pk}`]);
  return readFileSync(out);
}

const rows = [];
let gw = await gateway(60);
try {
  const keyInfo = await (await fetch(`${gw.url}/v1/public-key`)).json();
  const pk = join(dir, 'pk.der');
  writeFileSync(pk, Buffer.from(keyInfo.publicKey, 'base64'));
  const plain = join(dir, 'plain');
  writeFileSync(plain, randomBytes(1 << 20));

  // One object, and the request a browser sends for its data key.
  const blob = seal(gw.url, 'bench-0', plain, pk, keyInfo.keyArn);
  const put = await fetch(`${gw.url}/v1/objects`, { method: 'POST', headers: { authorization: auth }, body: blob });
  if (put.status !== 201) throw new Error(`upload: ${put.status} ${await put.text()}`);
  writeFileSync(join(dir, 'blob'), blob);
  const header = JSON.parse(run(bin, ['inspect', '-i', join(dir, 'blob')]));
  const edk = header.encrypted_data_keys.find((e) => e.provider_id === 'aws-kms-rsa');
  const request = JSON.stringify({ keyId: keyInfo.keyArn, ciphertextBlob: edk.ciphertext, encryptionAlgorithm: 'RSAES_OAEP_SHA_256', encryptionContext: header.encryption_context });
  const check = await fetch(`${gw.url}/v1/decrypt-data-key`, { method: 'POST', headers: { authorization: auth, 'content-type': 'application/json' }, body: request });
  if (check.status !== 200) throw new Error(`decrypt-data-key: ${check.status} ${await check.text()}`);

  rows.push({ name: 'GET /v1/public-key', ...wrk(gw.url, '/v1/public-key', 'GET') });
  rows.push({ name: 'POST /v1/decrypt-data-key, KMS answer cache on (60 s)', ...wrk(gw.url, '/v1/decrypt-data-key', 'POST', request) });
  gw.child.kill();
  gw = await gateway(0);
  rows.push({ name: 'POST /v1/decrypt-data-key, no cache: a local KMS Decrypt (RSA-2048) each', ...wrk(gw.url, '/v1/decrypt-data-key', 'POST', request) });

  // Uploads of distinct 1 MiB objects, 8 at a time, for `seconds` or 400 objects.
  const blobs = [];
  for (let i = 1; i <= 400 && blobs.length < 400; i++) blobs.push(seal(gw.url, `up-${i}`, plain, pk, keyInfo.keyArn));
  const before = machine();
  const lat = [];
  let next = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < blobs.length && performance.now() < deadline) {
      const b = blobs[next++];
      const t = performance.now();
      const r = await fetch(`${gw.url}/v1/objects`, { method: 'POST', headers: { authorization: auth, 'content-type': 'application/octet-stream' }, body: b });
      if (r.status !== 201) throw new Error(`upload: ${r.status} ${await r.text()}`);
      await r.arrayBuffer();
      lat.push(performance.now() - t);
    }
  }));
  const secs = (performance.now() - start) / 1000;
  lat.sort((a, b) => a - b);
  rows.push({
    name: 'POST /v1/objects, 1 MiB objects, 8 concurrent', requests: lat.length, requestsPerSecond: +(lat.length / secs).toFixed(1),
    mibPerSecond: +((lat.length * blobs[0].length) / (1 << 20) / secs).toFixed(1),
    p50Ms: +lat[Math.floor(lat.length / 2)].toFixed(2), p99Ms: +lat[Math.floor(lat.length * 0.99)].toFixed(2), maxMs: +lat[lat.length - 1].toFixed(1),
    connections: 8, seconds: +secs.toFixed(1), machine: before,
  });
} finally {
  gw.child.kill();
  rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify({ key: 'RSA_2048 in the embedded local KMS', loadGenerator: 'wrk 4.1 (1 thread) / Node fetch', rows }, null, 1));
