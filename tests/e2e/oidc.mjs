// End-to-end single sign-on: an OpenID provider that no one here wrote
// (oidc-provider, tests/oidc/provider.mjs) and the gateway configured with
// it, the web app driven in Debian's headless Chromium by playwright-core:
//
// - screenshots of the sign-in page and the provider's go to artifacts/e2e/;
// - the sign-in page offers the provider; alice signs in on the provider's
//   own page (authorization code + PKCE in the browser), comes back signed
//   in with the gateway's session cookie, and the address bar, local and
//   session storage hold no code and no token;
// - the session works like a password one: an upload (a state change, with
//   the CSRF token) succeeds and is listed as alice's;
// - an answer the page did not ask for (wrong state) is refused with a
//   message and signs nobody in; signing out ends the session.
//
//   node tests/e2e/oidc.mjs
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root, bin, recorder, started, launchBrowser, upload } from './lib.mjs';

const shots = join(root, 'artifacts/e2e');
mkdirSync(shots, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'kms-envelope-e2e-oidc-'));
const { record, finish } = recorder();
const freePort = () => new Promise((res) => {
  const s = createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
});

// The gateway's port is chosen first: the provider registers the web app's redirect URI.
const port = await freePort();
const origin = `http://127.0.0.1:${port}`;
const idp = await started('node', [join(root, 'tests/oidc/provider.mjs'), '--redirect', `${origin}/`], { ready: /^ready /m });
const issuer = /^ready (\S+)/m.exec(idp.out)[1];
const data = join(work, 'data');
const keys = spawnSync(bin, ['keys', '--data-dir', data, 'create', '--spec', 'RSA_2048', '--alias', 'files'], { encoding: 'utf8' });
if (keys.status !== 0) throw new Error(keys.stderr);
const config = join(work, 'gateway.toml');
writeFileSync(config, `listen = "127.0.0.1:${port}"
data_dir = "${data}"
key = "alias/files"
web_dir = "${join(root, 'www/dist')}"
[oidc]
issuer = "${issuer}"
audience = "https://files.test"
client_id = "web"
scope = "openid email profile files"
authorization_params = { resource = "https://files.test" }
display_name = "Test SSO"
`);
const gw = await started(bin, ['serve', '--config', config], { env: { ...process.env, RUST_LOG: 'warn' }, ready: /listening on/ });

const browser = await launchBrowser();
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(origin);
  await page.waitForSelector('#sso:not([hidden])');
  record('the sign-in page offers the provider', (await page.textContent('#sso-signin')) === 'Sign in with Test SSO');
  await page.screenshot({ path: join(shots, 'sso-sign-in.png') });

  await page.click('#sso-signin');
  await page.waitForSelector('#login');
  const atProvider = page.url();
  const q = new URL(atProvider);
  record('the browser is sent to the provider\'s own sign-in page', q.origin === issuer, q.origin);
  await page.fill('#login', 'alice');
  await page.screenshot({ path: join(shots, 'sso-provider.png') });
  await page.click('#submit');
  await page.waitForSelector('#view-files:not([hidden])', { timeout: 30000 });
  const who = await page.textContent('#user-name');
  const after = new URL(page.url());
  const kept = await page.evaluate(() => JSON.stringify({ ...localStorage, ...sessionStorage }));
  record('alice comes back signed in by the provider', who === 'alice', who);
  record('no code or token is left in the address bar or in storage',
    after.origin === origin && !after.search && !/eyJ|code=/.test(kept), `${after.href}; storage ${kept.length} bytes`);
  const cookies = await context.cookies(origin);
  const session = cookies.find((c) => c.name === 'kms_envelope_session');
  record('what the browser holds is the gateway\'s HttpOnly session cookie', session?.httpOnly && session.sameSite === 'Strict');

  const file = join(work, 'signed-in.txt');
  writeFileSync(file, 'uploaded after single sign-on\n'.repeat(500));
  const up = await upload(page, file);
  const listed = await page.evaluate(async () => (await (await fetch('/v1/objects')).json()).objects.map((o) => o.owner));
  record('the session changes state like a password one: an upload, listed as alice\'s', up.ok && listed.join() === 'alice', `${up.status}; ${listed}`);

  await page.click('#logout');
  await page.waitForSelector('#view-login:not([hidden])');
  const gone = await page.evaluate(async () => (await fetch('/v1/session')).status);
  record('signing out ends the session', gone === 401, String(gone));

  // An answer this page never asked for: refused, nobody signed in.
  const other = await context.newPage();
  other.on('pageerror', (e) => errors.push(String(e)));
  await other.goto(origin);
  await other.waitForSelector('#sso:not([hidden])');
  await other.evaluate(() => sessionStorage.setItem('kms-envelope.sign-in', JSON.stringify({ verifier: 'v'.repeat(43), state: 'mine', nonce: 'n', hash: '' })));
  await other.goto(`${origin}/?code=forged&state=theirs&iss=${encodeURIComponent(issuer)}`);
  await other.waitForSelector('#notice:not([hidden])');
  const said = await other.textContent('#notice');
  const nobody = await other.evaluate(async () => (await fetch('/v1/session')).status);
  record('a forged answer is refused with a message and signs nobody in', /failed/.test(said) && nobody === 401, said);
  record('no page error', errors.length === 0, errors.join('; '));
  await context.close();
} catch (e) {
  record('the sign-on end-to-end run completed', false, e.stack);
} finally {
  await browser.close();
  gw.proc.kill('SIGTERM');
  idp.proc.stdin.end();
  idp.proc.kill('SIGTERM');
  rmSync(work, { recursive: true, force: true });
}
finish();
