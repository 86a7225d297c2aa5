// `make bench`: runs www/bench/ in headless Chromium (Debian's, through
// playwright-core) against the packed npm package, on 127.0.0.1 with
// COOP/COEP, and writes bench/results.json and bench/results.md.
//
//   node scripts/bench.mjs [sizeMiB=64] [runs=5]
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tools = join(root, 'scripts/js/node_modules');
const keys = join(root, 'tests/vectors/keys');
const [sizeMiB = 64, runs = 5] = process.argv.slice(2).map(Number);
const ARN = 'arn:aws:kms:us-west-2:111122223333:key/0a1b2c3d-0000-4000-8000-000000000001';

const scratch = mkdtempSync(join(tmpdir(), 'kms-envelope-bench-'));
const tarball = execFileSync('npm', ['pack', join(root, 'pkg'), '--pack-destination', scratch, '--silent'], { encoding: 'utf8' }).trim().split('\n').pop();
writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'bench', private: true, type: 'module' }));
execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', join(scratch, tarball)], { cwd: scratch, stdio: 'inherit' });
cpSync(join(root, 'www/bench'), join(scratch, 'app'), { recursive: true });
const dist = join(scratch, 'dist');
execFileSync('node', [join(tools, 'vite/bin/vite.js'), 'build', join(scratch, 'app'), '--outDir', dist, '--emptyOutDir', '--logLevel', 'warn'], { cwd: scratch, stdio: 'inherit' });

const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };
const server = createServer((req, res) => {
  const path = join(dist, decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '') || 'index.html');
  if (!path.startsWith(dist) || !existsSync(path)) { res.writeHead(404).end(); return; }
  res.writeHead(200, {
    'content-type': types[extname(path)] || 'application/octet-stream',
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-embedder-policy': 'require-corp',
  }).end(readFileSync(path));
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const { chromium } = await import(join(tools, 'playwright-core/index.mjs'));
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--enable-precise-memory-info'],
});
const loadBefore = loadavg();
let report;
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.log(`[page] ${m.text()}`));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.waitForFunction(() => document.getElementById('status').textContent === 'ready');
  report = await page.evaluate((p) => window.__bench(p), {
    sizeMiB, runs, arn: ARN,
    publicKeyPem: readFileSync(join(keys, 'rsa-2048.pub.pem'), 'utf8'),
    privateKeyPem: readFileSync(join(keys, 'rsa-2048.pem'), 'utf8'),
  });
  console.log(await page.locator('#out').textContent());
} finally {
  await browser.close();
  server.close();
}
report.machine = { cpus: cpus().length, cpuModel: cpus()[0].model, loadavgBefore: loadBefore, loadavgAfter: loadavg() };
report.package = readFileSync(join(root, 'pkg/SIZE.txt'), 'utf8').trim();
report.date = new Date().toISOString();
mkdirSync(join(root, 'bench'), { recursive: true });
writeFileSync(join(root, 'bench/results.json'), JSON.stringify(report, null, 2) + '\n');
const rows = report.results.map((r) => `| ${r.name} | ${r.mibps.toFixed(0)} | ${r.ratio.toFixed(2)} | ${r.ratioStream ? r.ratioStream.toFixed(2) : ''} | ${r.heapPeakMiB.toFixed(0)} |`);
const md = [
  `Browser benchmark (${report.userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? 'Chromium'}, headless), ${report.sizeMiB} MiB random input, median of ${report.runs} runs after a warm-up, ${report.date}.`,
  `Machine: ${report.machine.cpus} × ${report.machine.cpuModel}; load average ${report.machine.loadavgBefore.map((x) => x.toFixed(2)).join(' ')} before, ${report.machine.loadavgAfter.map((x) => x.toFixed(2)).join(' ')} after.`,
  `Message overhead: ${report.overheadBytes} bytes. ${report.package}.`,
  '',
  '| measurement | MiB/s | × WebCrypto ceiling | × JS stream ceiling | JS heap peak MiB |',
  '|---|---|---|---|---|',
  ...rows,
  '',
].join('\n');
writeFileSync(join(root, 'bench/results.md'), md);
console.log(md);
