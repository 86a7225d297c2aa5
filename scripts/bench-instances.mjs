// Instances part of `make bench`: data-key requests per second served by two
// release gateways sharing one PostgreSQL (tests/interop/pg_scratch.py) and
// one KMS (a `local-kms` over HTTP, as AWS KMS would be), against one of
// them alone, on this machine. The load is the same shape both ways: two wrk
// processes of `connections / 2` each, both on the one instance, or one on
// each. Rounds alternate (one, two, one, two, …) so that drift cancels; the
// ratio is the median of the per-round ratios. Every answer is checked 2xx.
//
//   node scripts/bench-instances.mjs [seconds=5] [rounds=3] [connections=32]   → prints JSON
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [seconds = 5, rounds = 3, connections = 32] = process.argv.slice(2).map(Number);
// Connections per instance, sized for a database on these two cores: with
// the default 16 each, two instances keep 32 backends busy and PostgreSQL's
// own contention (not the gateway) costs about 15% (measured 0.83-0.87x).
const pool = Number(process.env.BENCH_DATABASE_POOL || 6);
const bin = join(root, 'target/release/kms-envelope');
const dir = mkdtempSync(join(tmpdir(), 'kms-envelope-instances-bench-'));
const token = randomBytes(24).toString('hex');
const run = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout;
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A child started with piped stdio, and a reader of its next stdout line. */
function started(cmd, args, opts) {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'], ...opts });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  const queued = [];
  lines.on('line', (l) => (waiting.length ? waiting.shift()(l) : queued.push(l)));
  const next = () => new Promise((ok) => (queued.length ? ok(queued.shift()) : waiting.push(ok)));
  return { child, next };
}

const children = [];
try {
  // PostgreSQL, and a database for the gateways.
  const pg = started('python3', [join(root, 'tests/interop/pg_scratch.py')]);
  children.push(pg.child);
  const ready = (await pg.next()).split(' ');
  if (ready[0] !== 'ready') throw new Error(`pg_scratch.py: ${ready.join(' ')}`);
  pg.child.stdin.write('db bench\n');
  const dbUrl = (await pg.next()).split(' ')[1];

  // One KMS for both, over HTTP.
  const kmsDir = join(dir, 'kms');
  run(bin, ['keys', '--data-dir', kmsDir, 'create', '--spec', 'RSA_2048', '--alias', 'files']);
  const kms = started(bin, ['local-kms', '--data-dir', kmsDir, '--listen', '127.0.0.1:0']);
  children.push(kms.child);
  const kmsUrl = (await kms.next()).trim().split(/\s+/).pop();
  const env = { ...process.env, RUST_LOG: 'warn', AWS_SHARED_CREDENTIALS_FILE: join(kmsDir, 'kms', 'credentials') };

  const gateways = [];
  for (const name of ['a', 'b']) {
    const d = join(dir, name);
    mkdirSync(d);
    writeFileSync(join(d, 'gateway.toml'), [
      'listen = "127.0.0.1:0"', 'data_dir = "data"', 'key = "alias/files"', `kms_endpoint = "${kmsUrl}"`, `database_url = "${dbUrl}"`,
      `instance_name = "${name}"`, `database_pool = ${pool}`, 'decrypt_rate_per_second = 1000000000.0', 'decrypt_burst = 1000000000',
      '[[users]]', 'name = "alice"', `token_sha256 = "${createHash('sha256').update(token).digest('hex')}"`, '',
    ].join('\n'));
    const gw = started(bin, ['serve', '--config', join(d, 'gateway.toml')], { cwd: d, env });
    children.push(gw.child);
    gateways.push((await gw.next()).split(/\s+/)[3]);
  }

  // One object (uploaded through A), and the data-key request for it.
  const [a, b] = gateways;
  const keyInfo = await (await fetch(`${a}/v1/public-key`)).json();
  const pk = join(dir, 'pk.der');
  writeFileSync(pk, Buffer.from(keyInfo.publicKey, 'base64'));
  writeFileSync(join(dir, 'plain'), randomBytes(4096));
  const blob = join(dir, 'blob');
  run(bin, ['encrypt', '-i', join(dir, 'plain'), '-o', blob, '--context', 'owner=alice', '--context', 'object=bench-0', '--context', 'file=b.bin',
    '--kms-rsa', `arn=${keyInfo.keyArn},public=${pk}`]);
  const put = await fetch(`${a}/v1/objects`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: readFileSync(blob) });
  if (put.status !== 201) throw new Error(`upload: ${put.status} ${await put.text()}`);
  const header = JSON.parse(run(bin, ['inspect', '-i', blob]));
  const edk = header.encrypted_data_keys.find((e) => e.provider_id === 'aws-kms-rsa');
  const request = JSON.stringify({ keyId: keyInfo.keyArn, ciphertextBlob: edk.ciphertext, encryptionAlgorithm: 'RSAES_OAEP_SHA_256', encryptionContext: header.encryption_context });
  for (const url of gateways) {
    const r = await fetch(`${url}/v1/decrypt-data-key`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: request });
    if (r.status !== 200) throw new Error(`decrypt-data-key on ${url}: ${r.status} ${await r.text()}`);
  }
  const lua = join(dir, 'wrk.lua');
  writeFileSync(lua, `
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer ${token}"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[${request}]]
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d\\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end`);
  /** One wrk process: its requests per second; throws unless every answer was 2xx. */
  const wrk = (url) => new Promise((ok, fail) => {
    const w = spawn('wrk', ['-t1', `-c${connections / 2}`, `-d${seconds}s`, '-s', lua, `${url}/v1/decrypt-data-key`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    w.stdout.on('data', (c) => { out += c; });
    w.on('exit', () => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT'));
      if (!line) return fail(new Error(`wrk: ${out}`));
      const [requests, micros, errors] = line.split(' ').slice(1).map(Number);
      if (errors) return fail(new Error(`${url}: ${errors} failed requests of ${requests}`));
      ok(requests / (micros / 1e6));
    });
  });
  const both = async (targets) => (await Promise.all(targets.map(wrk))).reduce((x, y) => x + y, 0);

  const one = [];
  const two = [];
  for (let i = 0; i < rounds; i++) {
    one.push(await both([a, a]));
    two.push(await both([a, b]));
  }
  const ratios = one.map((x, i) => two[i] / x);
  console.log(JSON.stringify({
    what: `POST /v1/decrypt-data-key (KMS answer cache on), metadata and audit in PostgreSQL (durability off; database_pool = ${pool} per instance), local KMS over HTTP`,
    connections, seconds, rounds,
    oneInstance: one.map(Math.round), twoInstances: two.map(Math.round),
    ratio: +median(ratios).toFixed(2), machine: { loadavg1: +loadavg()[0].toFixed(2) },
  }, null, 1));
} finally {
  // The gateways and the KMS; PostgreSQL stops and removes its directory when its stdin closes.
  const exited = (c) => new Promise((ok) => (c.exitCode !== null || c.signalCode !== null ? ok() : c.once('exit', ok)));
  const [pg, ...rest] = children;
  for (const c of rest.reverse()) {
    c.kill();
    await exited(c);
  }
  if (pg) {
    pg.stdin.end();
    await exited(pg);
  }
  rmSync(dir, { recursive: true, force: true });
}
