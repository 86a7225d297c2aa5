// What the end-to-end runs share: files, the gateway and the browser
// (Debian's headless Chromium driven by playwright-core), the web app's pages
// as people use them, and readings of a process from /proc.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const bin = process.env.KMS_ENVELOPE_BIN || join(root, 'target/debug/kms-envelope');
export const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;

/** `record(name, ok, detail)` prints a result line; `finish()` prints the summary and exits. */
export function recorder() {
  const results = [];
  return {
    record(name, ok, detail = '') {
      results.push({ name, ok: !!ok });
      console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ` (${detail})` : ''}`);
    },
    finish(extra = '') {
      const passed = results.filter((r) => r.ok).length;
      const failed = results.length - passed;
      if (extra) console.log(extra);
      console.log(`test result: ${failed ? 'FAILED' : 'ok'}. ${passed} passed; ${failed} failed`);
      process.exit(failed ? 1 : 0);
    },
  };
}

export const sha256File = (p) => new Promise((res, rej) => {
  const h = createHash('sha256');
  createReadStream(p).on('data', (c) => h.update(c)).on('end', () => res(h.digest('hex'))).on('error', rej);
});

export async function writeRandom(path, bytes) {
  const out = createWriteStream(path);
  for (let left = bytes; left > 0;) {
    const n = Math.min(left, 1 << 20);
    if (!out.write(randomBytes(n))) await new Promise((r) => out.once('drain', r));
    left -= n;
  }
  await new Promise((r) => out.end(r));
}

/**
 * Starts a process that prints a banner; resolves once `ready` matches what it printed:
 * `{ proc, out }`. It fails if the process exits first or takes over `ms`.
 */
export function started(cmd, args, { env = process.env, ready, ms = 60000 }) {
  const proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
  const err = [];
  proc.stderr.on('data', (c) => err.push(c));
  return new Promise((res, rej) => {
    let out = '';
    proc.stdout.on('data', (c) => { out += c; if (ready.test(out)) res({ proc, out }); });
    proc.on('exit', (code) => rej(new Error(`${cmd} exited ${code}: ${Buffer.concat(err).toString().slice(-2000)}`)));
    setTimeout(() => rej(new Error(`${cmd} did not start: ${out}`)), ms);
  });
}

/** `serve --demo` (with the web app unless `web: false`) and `extra` arguments: `{ proc, banner, url, logins }`. */
export async function demoGateway(data, { listen = '127.0.0.1:0', extra = [], env = {}, web = true } = {}) {
  const site = web ? ['--web-dir', join(root, 'www/dist')] : [];
  const { proc, out } = await started(bin, ['serve', '--demo', '--data-dir', data, ...site, '--listen', listen, ...extra],
    { env: { ...process.env, RUST_LOG: 'warn', ...env }, ready: /user carol/ });
  const url = /listening on (\S+)/.exec(out)[1];
  const logins = Object.fromEntries([...out.matchAll(/user (\w+)\s+token (\S+)/g)].map((m) => [m[1], m[2]]));
  return { proc, banner: out, url, logins };
}

export async function launchBrowser() {
  const { chromium } = await import(join(root, 'scripts/js/node_modules/playwright-core/index.mjs'));
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--enable-precise-memory-info'],
  });
}

/** Resident memory of Chromium's renderer processes (pages and their workers), in bytes. */
export function rendererRss() {
  let total = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmd.includes('chromium') || !cmd.includes('--type=renderer')) continue;
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
    } catch { /* gone */ }
  }
  return total;
}

/** CPU seconds (user + system) process `pid` has used. */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // USER_HZ
}

/** Bytes process `pid` has read and written through system calls (sockets and files alike). */
export function ioBytes(pid) {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const n = (k) => Number(new RegExp(`^${k}: (\\d+)`, 'm').exec(io)[1]);
  return n('rchar') + n('wchar');
}

/** Bytes the gateway at `url` has received from and sent to its clients (its /v1/metrics, from this machine). */
export async function clientBytes(url) {
  const text = await (await fetch(`${url}/v1/metrics`)).text();
  const n = (d) => Number(new RegExp(`^kms_envelope_client_bytes_total\\{direction="${d}"\\} (\\d+)`, 'm').exec(text)[1]);
  return n('received') + n('sent');
}

/** Signs `user` in on the gateway at `gw.url` in a fresh browser context: `{ context, page, errors }`. */
export async function signIn(browser, gw, user) {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // HTTP refusals the page handles (401 before sign-in, 403/404 for bob) are logged by Chromium; not errors.
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(m.text()); });
  await page.goto(gw.url);
  await page.waitForSelector('#view-login:not([hidden])');
  await page.fill('#login-user', user);
  await page.fill('#login-token', gw.logins[user]);
  await page.click('#login-submit');
  await page.waitForSelector('#view-files:not([hidden])');
  await page.waitForFunction(() => document.getElementById('key-fingerprint').textContent.length === 64
    && document.getElementById('key-pin').textContent.length > 0);
  return { context, page, errors };
}

/** Samples memory while `work` runs: peak main-thread JS heap and renderer RSS. */
export async function measured(page, work) {
  const base = rendererRss();
  let heap = 0;
  let rss = 0;
  let running = true;
  const sampler = (async () => {
    while (running) {
      heap = Math.max(heap, await page.evaluate(() => performance.memory.usedJSHeapSize).catch(() => 0));
      rss = Math.max(rss, rendererRss());
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  const t0 = Date.now();
  try {
    return { value: await work(), heap, rss, base, seconds: (Date.now() - t0) / 1000 };
  } finally {
    running = false;
    await sampler;
  }
}

/** Uploads the file at `path` through the page's form; waits until it is done or failed. */
export async function upload(page, path) {
  const name = path.split('/').pop();
  await page.evaluate(() => { location.hash = '#/files'; });
  await page.waitForSelector('#view-files:not([hidden])');
  await page.setInputFiles('#file-input', path);
  const li = page.locator(`#transfers li[data-file="${name}"]`);
  await li.locator('.transfer[data-state="done"], .transfer[data-state="failed"]').waitFor({ timeout: 15 * 60000 });
  const ok = (await li.locator('.transfer').getAttribute('data-state')) === 'done';
  return {
    ok, timings: await li.getAttribute('data-timings'), status: await li.locator('.status').textContent(),
    sha256: await li.getAttribute('data-sha256'), object: await li.getAttribute('data-object'), direct: await li.getAttribute('data-direct'),
  };
}

/**
 * Starts uploading `copy` (a name of its own) through the form and cancels it once the page shows
 * it encrypting and over 5% sent: what the page then says.
 */
export async function cancelHalfway(page, copy) {
  const name = copy.split('/').pop();
  await page.evaluate(() => { location.hash = '#/files'; });
  await page.setInputFiles('#file-input', copy);
  const li = page.locator(`#transfers li[data-file="${name}"]`);
  await page.waitForFunction((n) => {
    const p = document.querySelector(`#transfers li[data-file="${n}"] progress`);
    const s = document.querySelector(`#transfers li[data-file="${n}"] .status`);
    return p && s && s.textContent.startsWith('Encrypting') && p.value > 0.05;
  }, name, { timeout: 120000 });
  await li.locator('button.cancel').click();
  await li.locator('.transfer[data-state="failed"]').waitFor({ timeout: 60000 });
  return li.locator('.status').textContent();
}

/** Downloads a listed object through the page, saved as `saveAs`. */
export async function download(page, objectId, saveAs) {
  await page.evaluate(() => { location.hash = '#/files'; });
  await page.waitForSelector(`#files tr[data-object="${objectId}"]`);
  await page.selectOption('#save-mode', 'download');
  const row = page.locator(`#files tr[data-object="${objectId}"]`);
  let saving = null;
  const onDownload = (d) => { saving = d.saveAs(saveAs); };
  page.on('download', onDownload);
  await row.locator('button.download').click();
  await page.waitForSelector('#dl-progress[data-state="done"], #dl-progress[data-state="failed"]', { timeout: 15 * 60000 });
  const state = await page.getAttribute('#dl-progress', 'data-state');
  for (let i = 0; state === 'done' && !saving && i < 40; i++) await new Promise((r) => setTimeout(r, 250));
  page.off('download', onDownload);
  const saved = saving ? (await saving, saveAs) : null;
  const status = await page.locator('#dl-progress .status').textContent();
  return { state, status, saved, verdict: await page.textContent('#dl-verdict'), actual: await page.textContent('#dl-actual') };
}

/** Opens the preview of a listed object: its state, the bytes read and the text shown. */
export async function preview(page, objectId) {
  await page.evaluate(() => { location.hash = '#/files'; });
  await page.waitForSelector(`#files tr[data-object="${objectId}"]`);
  await page.locator(`#files tr[data-object="${objectId}"] button.preview`).click();
  await page.waitForSelector('#dl-progress[data-state="done"], #dl-progress[data-state="failed"]');
  return {
    state: await page.getAttribute('#dl-progress', 'data-state'),
    read: Number(await page.getAttribute('#dl-progress', 'data-read')),
    text: await page.locator('#dl-progress .preview pre').textContent().catch(() => ''),
    status: await page.locator('#dl-progress .status').textContent(),
  };
}
