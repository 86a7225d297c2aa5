// Checks the npm package the way customers get it: `npm pack` of pkg/,
// installed into a scratch app; used from Node 20; bundled with Vite into a
// page that headless Chromium (Debian's, through playwright-core) runs; the
// messages made in Node and in the browser decrypted by the official Python
// SDK (AWS KMS RSA keyring and raw RSA); `uploadEncrypted` from Node against
// the real gateway, on S3 (moto) and on its local directory. Run by `make
// test` after `make pkg`.
//
//   node tests/pkg/run.mjs
import { execFileSync, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, cpSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, extname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { started, demoGateway } from '../e2e/lib.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const keys = join(root, 'tests/vectors/keys');
const tools = join(root, 'scripts/js/node_modules');
const ARN = 'arn:aws:kms:us-west-2:111122223333:key/0a1b2c3d-0000-4000-8000-000000000001';
const results = [];
const record = (name, ok, detail = '') => {
  results.push({ name, ok });
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ` (${detail})` : ''}`);
};
const plaintext = (n) => { const a = Buffer.alloc(n); for (let i = 0; i < n; i++) a[i] = (i * 31 + (i >> 8) * 7 + 11) & 0xff; return a; };

// 1. Pack and install into a scratch app.
const scratch = mkdtempSync(join(tmpdir(), 'kms-envelope-pkg-'));
const tarball = execFileSync('npm', ['pack', join(root, 'pkg'), '--pack-destination', scratch, '--silent'], { encoding: 'utf8' }).trim().split('\n').pop();
cpSync(join(root, 'tests/pkg/app'), join(scratch, 'app'), { recursive: true });
writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }));
execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', join(scratch, tarball)], { cwd: scratch, stdio: 'inherit' });
record('npm pack + npm install', existsSync(join(scratch, 'node_modules/kms-envelope/wasm/kms_envelope_bg.wasm')), tarball);

// 2. Node 20.
cpSync(join(root, 'tests/pkg/node-smoke.mjs'), join(scratch, 'node-smoke.mjs'));
const nodeOut = join(scratch, 'node.esdk');
const smoke = spawnSync('node', ['node-smoke.mjs', keys, nodeOut, ARN], { cwd: scratch, encoding: 'utf8' });
if (smoke.status !== 0) {
  record('node smoke test ran', false, smoke.stderr.slice(0, 2000));
} else {
  for (const c of JSON.parse(smoke.stdout.trim().split('\n').pop()).checks) record(`node: ${c.name}`, c.ok);
}

// 3. A page bundled with Vite, served on 127.0.0.1, run in headless Chromium.
const dist = join(scratch, 'dist');
execFileSync('node', [join(tools, 'vite/bin/vite.js'), 'build', join(scratch, 'app'), '--outDir', dist, '--emptyOutDir', '--logLevel', 'warn'],
  { cwd: scratch, stdio: 'inherit', env: { ...process.env, NODE_PATH: join(scratch, 'node_modules') } });
const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };
const server = createServer((req, res) => {
  const path = join(dist, decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '') || 'index.html');
  if (!path.startsWith(dist) || !existsSync(path)) { res.writeHead(404).end(); return; }
  res.writeHead(200, { 'content-type': types[extname(path)] || 'application/octet-stream' }).end(readFileSync(path));
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${server.address().port}/`;
const { chromium } = await import(join(tools, 'playwright-core/index.mjs'));
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
let page_out;
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById('status').textContent === 'ready', null, { timeout: 30000 });
  page_out = await page.evaluate((p) => window.__run(p), { arn: ARN, publicKeyPem: readFileSync(join(keys, 'rsa-2048.pub.pem'), 'utf8') });
  record('browser: page loaded without errors', errors.length === 0, errors.join('; '));
  record('browser: WebCrypto available on 127.0.0.1', page_out.webcrypto);
  for (const c of page_out.checks) record(`browser: ${c.name}`, c.ok);
} finally {
  await browser.close();
  server.close();
}

// 4. The Python SDK decrypts what Node and the browser made.
const jobs = [];
const files = { node: nodeOut };
writeFileSync(join(scratch, 'browser-oneshot.esdk'), Buffer.from(page_out.oneShot, 'base64'));
writeFileSync(join(scratch, 'browser-stream.esdk'), Buffer.from(page_out.streamed, 'base64'));
files['browser one-shot'] = join(scratch, 'browser-oneshot.esdk');
files['browser stream'] = join(scratch, 'browser-stream.esdk');
writeFileSync(join(scratch, 'browser-pool.esdk'), Buffer.from(page_out.pooled, 'base64'));
files['browser worker-pool'] = join(scratch, 'browser-pool.esdk');
const sizes = { node: 300000, 'browser one-shot': 200000, 'browser stream': 200000, 'browser worker-pool': 200000 };
for (const [name, input] of Object.entries(files)) {
  jobs.push({ name, op: 'decrypt', keyring: 'kms-rsa-RSAES_OAEP_SHA_256', suite: '0x0478', frame_length: 0, context: {},
    policy: 'require-encrypt-require-decrypt', input, output: `${input}.out` });
}
writeFileSync(join(scratch, 'jobs.json'), JSON.stringify({ jobs }));
const py = spawnSync(join(root, '.venv/bin/python'), [join(root, 'tests/interop/peer.py'), keys, join(scratch, 'jobs.json'), join(scratch, 'res.json')], { encoding: 'utf8' });
if (py.status !== 0) record('python peer ran', false, py.stderr.slice(0, 2000));
else {
  const res = JSON.parse(readFileSync(join(scratch, 'res.json'), 'utf8'));
  jobs.forEach((j, i) => {
    const ok = res[i].ok && Buffer.compare(readFileSync(j.output), plaintext(sizes[j.name])) === 0;
    record(`python decrypts the ${j.name} message`, ok, res[i].ok ? '' : res[i].error);
  });
}

// 5. uploadEncrypted from Node against the real gateway: objects in S3 (moto) and in the local directory.
{
  const moto = await started(join(root, '.venv/bin/python'), [join(root, 'tests/interop/moto_s3.py'), 'serve', '--bucket', 'kms-envelope-pkg'], { ready: /^ready /m });
  const motoUrl = /^ready (\S+)/m.exec(moto.out)[1];
  const s3 = await demoGateway(join(scratch, 'gw-s3'), {
    web: false, env: { AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' },
    extra: ['--s3-bucket', 'kms-envelope-pkg', '--s3-endpoint', motoUrl, '--s3-path-style'],
  });
  const local = await demoGateway(join(scratch, 'gw-local'), { web: false });
  try {
    const arg = JSON.stringify({ s3: { url: s3.url, alice: s3.logins.alice }, local: { url: local.url, alice: local.logins.alice } });
    cpSync(join(root, 'tests/pkg/node-upload.mjs'), join(scratch, 'node-upload.mjs'));
    const up = spawnSync('node', ['node-upload.mjs', arg], { cwd: scratch, encoding: 'utf8' });
    if (up.status !== 0) record('node uploadEncrypted test ran', false, up.stderr.slice(0, 2000));
    else for (const c of JSON.parse(up.stdout.trim().split('\n').pop()).checks) record(`node: ${c.name}`, c.ok, c.ok ? '' : c.detail);
  } finally {
    for (const p of [s3.proc, local.proc]) p.kill('SIGTERM');
    moto.proc.stdin.end();
  }
}

rmSync(scratch, { recursive: true, force: true });

const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
console.log(`test result: ${failed ? 'FAILED' : 'ok'}. ${passed} passed; ${failed} failed`);
process.exit(failed ? 1 : 0);
