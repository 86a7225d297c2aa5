// `make bench`: runs www/bench/ in headless Chromium (Debian's, through
// playwright-core) against the packed npm package, on 127.0.0.1 with
// COOP/COEP; then the native comparison (scripts/bench-native.mjs: the CLI
// and library against the Python and Node SDKs and OpenSSL's AES-GCM) and
// the gateway load test (scripts/bench-gateway.mjs), then the web app's
// uploads through the gateway and straight to S3 (tests/e2e/s3.mjs). Writes
// bench/results.json and bench/results.md, and the README's Performance
// section from them.
//
//   node scripts/bench.mjs [sizeMiB=64] [runs=7]
//   (BENCH_NATIVE_MIB=256, BENCH_GATEWAY_SECONDS=10 and BENCH_UPLOAD_ROUNDS=4 size the other parts)
import { execFileSync, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tools = join(root, 'scripts/js/node_modules');
const keys = join(root, 'tests/vectors/keys');
const [sizeMiB = 64, runs = 7] = process.argv.slice(2).map(Number);
const ARN = 'arn:aws:kms:us-west-2:111122223333:key/0a1b2c3d-0000-4000-8000-000000000001';

const scratch = mkdtempSync(join(tmpdir(), 'kms-envelope-bench-'));
const tarball = execFileSync('npm', ['pack', join(root, 'pkg'), '--pack-destination', scratch, '--silent'], { encoding: 'utf8' }).trim().split('\n').pop();
writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'bench', private: true, type: 'module' }));
// The peers measured beside it in the same page, pinned.
execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', join(scratch, tarball), '@aws-crypto/client-browser@4.2.2', 'openpgp@6.3.2', 'buffer@6.0.3'], { cwd: scratch, stdio: 'inherit' });
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
// The processes of the browser launched here: every process descended
// from this script (the browser process, its zygotes, renderer and helpers).
const procStat = (pid) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[1] ppid, f[11] utime, f[12] stime
};
const ourProcesses = () => {
  const parent = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try { parent.set(Number(d), Number(procStat(d)[1])); } catch { /* gone */ }
  }
  const ours = (pid) => {
    for (let p = parent.get(pid), hops = 0; p > 1 && hops < 64; p = parent.get(p) ?? 0, hops++) if (p === process.pid) return true;
    return false;
  };
  return [...parent.keys()].filter(ours);
};
// Peak RSS of the page's renderer process(es), per measurement: Linux keeps
// a high-water mark (VmHWM) that writing 5 to clear_refs resets.
const renderers = () => ourProcesses().filter((pid) => {
  try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--type=renderer'); } catch { return false; }
});
const rssReset = () => {
  let ok = false;
  for (const pid of renderers()) { try { writeFileSync(`/proc/${pid}/clear_refs`, '5'); ok = true; } catch { /* not ours to reset */ } }
  return ok;
};
const rssPeakMiB = () => Math.max(0, ...renderers().map((pid) => {
  try { return Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmHWM:\s+(\d+) kB/m)[1]) / 1024; } catch { return 0; }
}));
// CPU time of that browser, in ms: all its processes and threads (the
// browser process, which reads Blobs for streams; the renderer with the
// page's workers): shows how many cores a measurement kept busy. Other
// programs on the machine are not counted.
const tick = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const cpuMs = () => ourProcesses().reduce((sum, pid) => {
  try { const f = procStat(pid); return sum + (Number(f[11]) + Number(f[12])) * tick; } catch { return sum; }
}, 0);
const loadBefore = loadavg();
let report;
try {
  const page = await browser.newPage();
  await page.exposeFunction('__rssReset', rssReset);
  await page.exposeFunction('__rssPeakMiB', rssPeakMiB);
  await page.exposeFunction('__cpuMs', cpuMs);
  page.on('console', (m) => console.log(`[page] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`[pageerror] ${e.message}`));
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

// Native, gateway and two instances, each in its own process, after the browser run.
const sub = (script, args) => {
  const r = spawnSync('node', [join(root, 'scripts', script), ...args.map(String)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${script} failed`);
  return JSON.parse(r.stdout);
};
const native = sub('bench-native.mjs', [process.env.BENCH_NATIVE_MIB || 256, runs]);
const gateway = sub('bench-gateway.mjs', [process.env.BENCH_GATEWAY_SECONDS || 10, 32]);
const instances = sub('bench-instances.mjs', [process.env.BENCH_INSTANCES_SECONDS || 5, 3, 32]);
const uploads = webUploads(Number(process.env.BENCH_UPLOAD_ROUNDS || 4));

/**
 * The web app uploading and downloading through the release gateway on its
 * local directory and straight to S3 (moto on the same cores), `rounds`
 * alternating rounds: tests/e2e/s3.mjs, which checks every transfer too.
 */
function webUploads(rounds) {
  execFileSync(join(root, 'scripts/www.sh'), { stdio: ['ignore', 'ignore', 'inherit'] });
  const out = join(scratch, 'uploads.json');
  const r = spawnSync('node', [join(root, 'tests/e2e/s3.mjs')], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24,
    env: { ...process.env, E2E_ROUNDS: String(rounds), E2E_FIGURES: out, KMS_ENVELOPE_BIN: join(root, 'target/release/kms-envelope') },
  });
  if (!existsSync(out)) throw new Error(`tests/e2e/s3.mjs gave no figures:\n${r.stdout}`);
  // Figures stand even if a check failed; the failed checks are reported with them.
  const failed = r.stdout.split('\n').filter((l) => l.startsWith('FAIL'));
  return { ...JSON.parse(readFileSync(out, 'utf8')), failed, machine: { loadavg1: +loadavg()[0].toFixed(2) } };
}

const all = { date: report.date, machine: report.machine, browser: report, native, gateway, instances, uploads };
mkdirSync(join(root, 'bench'), { recursive: true });
writeFileSync(join(root, 'bench/results.json'), JSON.stringify(all, null, 2) + '\n');
const f0 = (x) => (x === undefined ? '' : Math.round(x).toString());
const browserRows = report.results.map((r) => `| ${r.name} | ${r.mibps.toFixed(0)} | ${r.ratio ? r.ratio.toFixed(2) : ''} | ${r.ratioShape ? r.ratioShape.toFixed(2) : ''} | ${r.cpuCores ? r.cpuCores.toFixed(2) : ''} | ${r.heapPeakMiB.toFixed(0)} | ${r.rssPeakMiB ? r.rssPeakMiB.toFixed(0) : ''} | ${r.overheadBytes ?? ''} | ${r.streams === undefined ? '' : r.streams ? 'yes' : 'no'} |`);
const nativeRows = native.rows.map((r) => `| ${r.name} | ${f0(r.encrypt)} (${r.encryptRatio.toFixed(2)}×) | ${f0(r.decrypt)} (${r.decryptRatio.toFixed(2)}×) | ${r.overheadBytes} | ${r.streams ? 'yes' : 'no'} | ${r.machine.loadavg1} |`);
const gatewayRows = gateway.rows.map((r) => `| ${r.name} | ${r.requestsPerSecond}${r.mibPerSecond ? ` (${r.mibPerSecond} MiB/s)` : ''} | ${r.p50Ms} | ${r.p99Ms} | ${r.connections} | ${r.requests} | ${r.machine.loadavg1} |`);
const md = [
  `Measured ${report.date} on ${report.machine.cpus} × ${report.machine.cpuModel} (a shared machine: read ratios, not absolutes).`,
  '',
  `**Browser** (${report.userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? 'Chromium'}, headless), ${report.sizeMiB} MiB random input, median of ${report.runs} runs after a warm-up; load average ${report.machine.loadavgBefore.map((x) => x.toFixed(2)).join(' ')} before, ${report.machine.loadavgAfter.map((x) => x.toFixed(2)).join(' ')} after. Message overhead: ${report.overheadBytes} bytes. ${report.package}.`,
  '',
  '| measurement | MiB/s | × WebCrypto ceiling | × same-shape ceiling | browser CPU, cores | JS heap peak MiB | renderer RSS peak MiB | overhead bytes | streams |',
  '|---|---|---|---|---|---|---|---|---|',
  ...browserRows,
  '',
  'The WebCrypto ceiling is the bare calls, their results dropped. Ratios are measured in alternation: each run of a row comes right after one run of the ceiling of its direction (and one of its same-shape ceiling), and a ratio is the median of the per-run ratios, so that the machine\'s drift over a page run (ceilings measured minutes apart differ by up to 20% here) cancels out. The ceilings themselves are measured at the start and again at the end of the page run; rows without a pair (the pipelines) use the faster of the two. A same-shape ceiling does what the row must also do, in plain JS with the same WebCrypto calls: for one-shot rows, write every result into one new output array (a fresh array costs its page faults once); for stream rows, a `TransformStream` fed by `Blob.stream()` and drained. "Browser CPU" is the CPU time of the browser running the page (all its processes and threads: the browser process, which reads Blobs, and the renderer with the page\'s workers) over the elapsed time: 1.00 is one core kept busy, 2.00 both cores of this machine.',
  '',
  `**Native**, ${native.sizeMiB} MiB random file, raw RSA-2048 (OAEP-SHA256), suite 0x0478, 64 KiB frames, median of ${native.runs} after a warm-up; ratios to the ceiling, ${native.ceiling.name}: ${native.ceiling.mibPerSecond} MiB/s. Peers run as processes on files, their start-up time subtracted; each peer's output is also decrypted by kms-envelope.`,
  '',
  '| implementation | encrypt MiB/s | decrypt MiB/s | overhead bytes | streams | load |',
  '|---|---|---|---|---|---|',
  ...nativeRows,
  '',
  `**Gateway**, release build on 127.0.0.1, ${gateway.key}, load from a separate process (${gateway.loadGenerator}); every answer checked 2xx.`,
  '',
  '| endpoint | requests/s | p50 ms | p99 ms | connections | requests | load |',
  '|---|---|---|---|---|---|---|',
  ...gatewayRows,
  '',
  `**Two gateways, one service**: ${instances.what}; ${instances.rounds} alternating rounds of ${instances.seconds} s, ${instances.connections} connections from two wrk processes either way (both on one instance, or one on each). Same machine, so no gain is expected; the ratio (median of per-round ratios) shows what sharing the database costs.`,
  '',
  '| instances | data-key requests/s per round | two ÷ one |',
  '|---|---|---|',
  `| one | ${instances.oneInstance.join(', ')} | |`,
  `| two, sharing PostgreSQL and KMS | ${instances.twoInstances.join(', ')} | ${instances.ratio}× |`,
  '',
  `**Web app uploads**, ${uploads.mib} MiB through the page in Chromium, ${uploads.rounds} rounds alternating the modes (release gateway; S3 is moto's server on the same two cores, ${uploads.s3.storeCpuPerGiB} CPU-s per GiB it receives). A ratio is the median over the rounds of S3's speed over the gateway's; the upload includes hashing the file.`,
  '',
  '| mode | upload MiB/s | download MiB/s | gateway CPU s per uploaded GiB | gateway client KiB per uploaded MiB |',
  '|---|---|---|---|---|',
  `| through the gateway (local directory) | ${uploads.local.upMiBps} | ${uploads.local.downMiBps} | ${uploads.local.gatewayCpuPerGiB} | ${uploads.local.gatewayWireKiBPerMiB} |`,
  `| straight to S3 (presigned parts, 3 in flight) | ${uploads.s3.upMiBps} (${uploads.upRatio}×) | ${uploads.s3.downMiBps} (${uploads.downRatio}×) | ${uploads.s3.gatewayCpuPerGiB} | ${uploads.s3.gatewayWireKiBPerMiB} |`,
  ...uploads.failed.map((l) => `\n${l}`),
  '',
].join('\n');
writeFileSync(join(root, 'bench/results.md'), md);
// The README's Performance section is this table, between its markers.
const readme = join(root, 'README.md');
const text = readFileSync(readme, 'utf8');
const begin = '<!-- bench:begin (generated by make bench) -->', end = '<!-- bench:end -->';
if (text.includes(begin) && text.includes(end)) {
  writeFileSync(readme, text.slice(0, text.indexOf(begin) + begin.length) + '\n' + md + text.slice(text.indexOf(end)));
}
console.log(md);
