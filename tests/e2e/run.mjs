// End-to-end: the demo web app (www/dist) served by the real gateway with its
// embedded local KMS on 127.0.0.1, driven in Debian's headless Chromium by
// playwright-core, as people use it:
//
// - alice signs in and uploads a generated file (200 MiB by default) through
//   the form; the stored object holds no window of the plaintext, and the
//   official Python SDK (AWS KMS RSA keyring, against the local KMS) decrypts
//   it to the same SHA-256; alice downloads it through the page and the hash
//   matches; JS heap and renderer memory are sampled throughout;
// - bob cannot open alice's file until she shares it through the page; once
//   she stops sharing it (through the page) he loses it again: not listed,
//   no blob, no data key; the audit holds the share and the revocation;
// - a flipped byte in a stored object makes the download fail with the
//   "tampered" message and saves nothing;
// - screenshots of each page go to artifacts/e2e/.
//
//   node tests/e2e/run.mjs            (E2E_MIB=200 by default)
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  root, bin, mib, recorder, sha256File, writeRandom, demoGateway, launchBrowser, signIn as signInAt, measured, upload, download, preview, cancelHalfway,
} from './lib.mjs';

const MIB = Number(process.env.E2E_MIB || 200);
const shots = join(root, 'artifacts/e2e');
mkdirSync(shots, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'kms-envelope-e2e-'));
const { record, finish } = recorder();

// ---- the files -------------------------------------------------------------
const big = join(work, 'holiday-video.bin');
await writeRandom(big, MIB << 20);
const bigSha = await sha256File(big);
const small = join(work, 'notes.txt');
writeFileSync(small.replace('notes', 'minutes'), 'minutes of the meeting\n'.repeat(1000));
writeFileSync(small, Array.from({ length: 40000 }, (_, i) => `line ${i}: the quick brown fox\n`).join(''));
const smallSha = await sha256File(small);
const tamperMe = join(work, 'contract.pdf');
await writeRandom(tamperMe, 3 << 20);

// ---- the gateway -----------------------------------------------------------
const data = join(work, 'data');
/**
 * The stored blob of `owner`'s object `id`. Ids are unique per owner only, so
 * this does not assume a layout: the one `{id}.esdk` under objects/ (outside
 * incoming/), or the one of those whose path names the owner.
 */
function blobFile(owner, id) {
  const top = join(data, 'objects');
  const found = [];
  const walk = (dir, rel) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) { if (!(rel.length === 0 && e.name === 'incoming')) walk(join(dir, e.name), [...rel, e.name]); }
      else if (e.name === `${id}.esdk`) found.push({ path: join(dir, e.name), rel });
    }
  };
  walk(top, []);
  const named = found.filter((f) => f.rel.includes(owner));
  const pick = named.length === 1 ? named[0] : found.length === 1 ? found[0] : null;
  if (!pick) throw new Error(`no single stored blob for ${owner}/${id} under ${top} (${found.length} found)`);
  return pick.path;
}
const gateway = await demoGateway(data);
const { proc: gw, banner, url, logins } = gateway;
record('the gateway calls its embedded KMS in process, with no port of its own', /KMS embedded, in process/.test(banner), banner.split('\n')[0]);
// Other tools reach the same keys through `local-kms`, signing with the credentials it generates.
const kms = spawn(bin, ['local-kms', '--data-dir', data, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
const kmsUrl = await new Promise((res, rej) => {
  let out = '';
  kms.stdout.on('data', (c) => { out += c; const m = /listening on (\S+)/.exec(out); if (m) res(m[1]); });
  kms.on('exit', (code) => rej(new Error(`local-kms exited ${code}`)));
  setTimeout(() => rej(new Error(`local-kms did not start: ${out}`)), 30000);
});
const kmsEnv = { ...process.env, AWS_SHARED_CREDENTIALS_FILE: join(data, 'kms', 'credentials') };
record('gateway --demo started with demo logins', logins.alice && logins.bob, url);

// ---- the browser -----------------------------------------------------------
const browser = await launchBrowser();
const signIn = (user) => signInAt(browser, gateway, user);

try {
  // ---- alice: sign in, upload the big file ----------------------------------
  {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    await p.goto(url);
    await p.waitForSelector('#view-login:not([hidden])');
    await p.screenshot({ path: join(shots, '1-sign-in.png') });
    await p.fill('#login-user', 'alice');
    await p.fill('#login-token', 'not-the-token');
    await p.click('#login-submit');
    await p.waitForSelector('#notice:not([hidden])');
    record('a wrong token gets a clear message', /Wrong user name or token/.test(await p.textContent('#notice')));
    await ctx.close();
  }
  const alice = await signIn('alice');
  const headers = await alice.page.evaluate(async () => Object.fromEntries((await fetch('/')).headers));
  record('the page is served with a strict CSP', /default-src 'self'/.test(headers['content-security-policy'] || '') && !/unsafe-inline/.test(headers['content-security-policy']));
  const cookies = await alice.context.cookies();
  const session = cookies.find((c) => c.name === 'kms_envelope_session');
  record('the session cookie is HttpOnly, Secure, SameSite=Strict', session && session.httpOnly && session.secure && session.sameSite === 'Strict');
  const pinned = await alice.page.evaluate(() => JSON.parse(localStorage.getItem(`kms-envelope.pinned-key:${location.origin}`)));
  const shown = await alice.page.textContent('#key-fingerprint');
  record('the key fingerprint is shown and pinned on first use', pinned?.fingerprint === shown && /pinned now|matches/.test(await alice.page.textContent('#key-pin')), shown);
  // A different key than the pinned one blocks uploads until confirmed.
  await alice.page.evaluate(() => localStorage.setItem(`kms-envelope.pinned-key:${location.origin}`, JSON.stringify({ fingerprint: 'ff'.repeat(32) })));
  await alice.page.reload();
  await alice.page.waitForSelector('#key-changed:not([hidden])');
  record('a changed key blocks uploads with a warning', await alice.page.isDisabled('#file-input'));
  await alice.page.screenshot({ path: join(shots, '2a-key-changed.png'), fullPage: true });
  await alice.page.click('#key-trust');
  await alice.page.waitForSelector('#key-changed', { state: 'hidden' });
  record('…until the user confirms the new key', !(await alice.page.isDisabled('#file-input')));

  const up = await measured(alice.page, () => upload(alice.page, big));
  record(`alice uploads ${MIB} MiB through the page`, up.value.ok, `${up.value.status?.slice(0, 80)}; ${(MIB / up.seconds).toFixed(1)} MiB/s incl. hashing`);
  record('the SHA-256 shown at upload is the file\'s', up.value.sha256 === bigSha);
  console.log(`     upload timings: ${up.value.timings}`);
  console.log(`     upload memory: main-thread JS heap peak ${mib(up.heap)}, renderer RSS peak ${mib(up.rss)} (before ${mib(up.base)})`);
  await alice.page.waitForSelector(`#files tr[data-object="${up.value.object}"]`);
  await alice.page.screenshot({ path: join(shots, '2-files.png'), fullPage: true });

  // The stored object: ciphertext only.
  const stored = blobFile('alice', up.value.object);
  const blob = readFileSync(stored);
  const plain = readFileSync(big);
  let leaks = 0;
  for (let i = 0; i < 64; i++) {
    const at = Math.floor((i / 64) * (plain.length - 32));
    if (blob.indexOf(plain.subarray(at, at + 32)) !== -1) leaks++;
  }
  record('the stored object contains no 32-byte window of the plaintext (64 samples)', leaks === 0, `${blob.length} bytes stored`);
  const header = JSON.parse(spawnSync(bin, ['inspect', '-i', stored], { encoding: 'utf8' }).stdout);
  const edk = header.encrypted_data_keys?.find((k) => k.provider_id === 'aws-kms-rsa');
  record('the stored header: suite 0x0478, an aws-kms-rsa data key, owner/object/file/sha256 in the context',
    header.suite_id === '0x0478' && edk && header.encryption_context.owner === 'alice' && header.encryption_context.sha256 === bigSha,
    JSON.stringify(header.encryption_context));

  // The official Python SDK decrypts it with the KMS RSA keyring.
  const py = spawnSync(join(root, '.venv/bin/python'), [join(root, 'tests/interop/kms_rsa_peer.py'), 'decrypt', kmsUrl, edk?.provider_info, stored], { encoding: 'utf8', env: kmsEnv });
  const pyOut = py.status === 0 ? JSON.parse(py.stdout) : {};
  record('the Python ESDK (AWS KMS RSA keyring, local KMS) decrypts it to the same SHA-256', pyOut.sha256 === bigSha, py.status === 0 ? '' : py.stderr.slice(-500));

  // alice downloads it back.
  const back = join(work, 'downloaded.bin');
  const down = await measured(alice.page, () => download(alice.page, up.value.object, back));
  record(`alice downloads and decrypts ${MIB} MiB through the page`, down.value.state === 'done' && down.value.saved, `${down.value.status?.slice(0, 60)}; ${(MIB / down.seconds).toFixed(1)} MiB/s`);
  record('the downloaded file\'s SHA-256 matches, and the page says verified',
    existsSync(back) && (await sha256File(back)) === bigSha && /verified/.test(down.value.verdict));
  console.log(`     download memory: main-thread JS heap peak ${mib(down.heap)}, renderer RSS peak ${mib(down.rss)} (before ${mib(down.base)})`);
  await alice.page.screenshot({ path: join(shots, '3-download.png'), fullPage: true });
  const heapPeak = Math.max(up.heap, down.heap);
  const rssGrowth = Math.max(up.rss, down.rss) - Math.min(up.base, down.base);
  record(`memory stays bounded over the ${MIB} MiB round trip`, heapPeak < 64 << 20 && rssGrowth < Math.max(160 << 20, (MIB << 20) / 2),
    `JS heap peak ${mib(heapPeak)}, renderer RSS growth ${mib(rssGrowth)}`);
  writeFileSync(join(shots, 'memory.json'), JSON.stringify({ mib: MIB, upload: { heap: up.heap, rss: up.rss, base: up.base, seconds: up.seconds },
    download: { heap: down.heap, rss: down.rss, base: down.base, seconds: down.seconds } }, null, 2));

  // ---- cancel: an upload stopped halfway leaves nothing on the server ---------------
  {
    const copy = join(work, 'cancel-me.bin');
    symlinkSync(big, copy);
    const said = await cancelHalfway(alice.page, copy);
    let leftovers = -1;
    for (let i = 0; i < 40 && leftovers !== 0; i++) {
      await new Promise((r) => setTimeout(r, 250));
      leftovers = readdirSync(join(data, 'objects', 'incoming')).length;
    }
    const listed = await alice.page.evaluate(async () => (await (await fetch('/v1/objects')).json()).objects.length);
    record('cancelling an upload halfway stops it and leaves nothing on the server', /Cancelled/.test(said) && leftovers === 0 && listed === 1,
      `${said}; ${leftovers} partial files; ${listed} objects listed`);
  }

  // ---- preview: the first 64 KiB from the frames that hold them ------------------
  const pv = await preview(alice.page, up.value.object);
  record(`a preview of the ${MIB} MiB file downloads only its header and first frames`, pv.state === 'done' && pv.read > 0 && pv.read < 200 * 1024,
    `${pv.read} bytes read; ${pv.status}`);
  const hex = [...plain.subarray(0, 8)].map((x) => x.toString(16).padStart(2, '0')).join(' ');
  record('…and shows its first bytes', pv.text.includes(hex), pv.text.slice(0, 40));

  // ---- bob: not allowed until shared ----------------------------------------
  const notes = await upload(alice.page, small);
  record('alice uploads a second file', notes.ok && notes.sha256 === smallSha);
  const bob = await signIn('bob');
  record('bob does not see alice\'s files', (await bob.page.locator(`#files tr[data-object="${notes.object}"]`).count()) === 0);
  await bob.page.evaluate((id) => { location.hash = `#/open/${id}`; }, notes.object);
  await bob.page.waitForSelector('#dl-progress[data-state="failed"]');
  const denied = await bob.page.textContent('#dl-progress .status');
  record('bob opening alice\'s file gets a clear refusal', /does not exist, or you may not see it|not allowed/.test(denied), denied);
  await bob.page.screenshot({ path: join(shots, '4-not-allowed.png'), fullPage: true });
  // A direct data-key request with the file's real context is refused too.
  const notesFile = blobFile('alice', notes.object);
  const blobNotes = readFileSync(notesFile);
  const hdr = JSON.parse(spawnSync(bin, ['inspect', '-i', notesFile], { encoding: 'utf8' }).stdout);
  const k = hdr.encrypted_data_keys.find((e) => e.provider_id === 'aws-kms-rsa');
  const keyRequest = JSON.stringify({ keyId: k.provider_info, ciphertextBlob: k.ciphertext, encryptionAlgorithm: 'RSAES_OAEP_SHA_256', encryptionContext: hdr.encryption_context });
  /** `POST /v1/decrypt-data-key` from `page`'s session: its status and error code. */
  const directKey = (page, body) => page.evaluate(async (b) => {
    const csrf = (await (await fetch('/v1/session')).json()).csrfToken;
    const r = await fetch('/v1/decrypt-data-key', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf }, body: b });
    return { status: r.status, error: (await r.json().catch(() => ({}))).error };
  }, body);
  const direct = await directKey(bob.page, keyRequest);
  record('bob\'s direct data-key request for it is refused (403)', direct.status === 403, `${direct.status} ${direct.error}; blob ${blobNotes.length} B`);

  // alice shares it through the page; bob opens it.
  await alice.page.click('#refresh');
  const row = alice.page.locator(`#files tr[data-object="${notes.object}"]`);
  await row.locator('button.share').click();
  await row.locator('input.share-user').fill('bob');
  await row.locator('button.share-ok').click();
  await alice.page.waitForFunction((id) => document.querySelector(`#files tr[data-object="${id}"] td.shared`)?.textContent.includes('bob'), notes.object);
  record('alice shares it with bob through the page', true);
  await bob.page.evaluate(() => { location.hash = '#/files'; });
  await bob.page.click('#refresh');
  await bob.page.waitForSelector(`#files tr[data-object="${notes.object}"]`);
  const bobGot = await download(bob.page, notes.object, join(work, 'bob-notes.txt'));
  const bobPreview = await preview(bob.page, notes.object);
  record('bob previews the shared text file: its first lines, from one frame', bobPreview.state === 'done'
    && bobPreview.text.startsWith('line 0: the quick brown fox') && bobPreview.read < 80 * 1024, `${bobPreview.read} bytes read`);
  await bob.page.screenshot({ path: join(shots, '3a-preview.png'), fullPage: true });
  record('then bob downloads and decrypts it, hash verified', bobGot.state === 'done' && bobGot.saved && (await sha256File(bobGot.saved)) === smallSha, bobGot.status);
  const sharedKey = await directKey(bob.page, keyRequest);
  record('…and the same direct data-key request is now answered', sharedKey.status === 200, `${sharedKey.status} ${sharedKey.error || ''}`);

  // ---- alice stops sharing it; bob loses it ---------------------------------
  {
    await alice.page.evaluate(() => { location.hash = '#/files'; });
    await alice.page.waitForSelector('#view-files:not([hidden])');
    const mine = `#files tr[data-owner="alice"][data-object="${notes.object}"]`;
    await alice.page.click('#refresh');
    await alice.page.waitForSelector(`${mine} button.unshare[data-user="bob"]`);
    await alice.page.screenshot({ path: join(shots, '3b-shared.png'), fullPage: true });
    await alice.page.click(`${mine} button.unshare[data-user="bob"]`);
    await alice.page.waitForFunction((sel) => {
      const td = document.querySelector(`${sel} td.shared`);
      return td && !td.textContent.includes('bob');
    }, mine);
    const said = await alice.page.textContent('#notice');
    record('alice stops sharing it with bob through the page', /Stopped sharing .+ with bob\./.test(said), said);

    const seen = await bob.page.evaluate(async (id) => {
      const { objects } = await (await fetch('/v1/objects')).json();
      const blob = await fetch(`/v1/objects/${encodeURIComponent(id)}?owner=alice`);
      return { listed: objects.some((o) => o.id === id), blob: blob.status };
    }, notes.object);
    record('bob\'s file list no longer has it', !seen.listed);
    record('bob fetching its blob gets 404', seen.blob === 404, String(seen.blob));
    const revoked = await directKey(bob.page, keyRequest);
    record('bob\'s direct data-key request for it is refused again (403)', revoked.status === 403 && revoked.error === 'FORBIDDEN', `${revoked.status} ${revoked.error}`);

    // The audit records (kms-envelope audit): the grant and the revocation, and the refusal after it.
    const events = (want) => {
      const out = spawnSync(bin, ['audit', '--data-dir', data, '--json'], { encoding: 'utf8' });
      const lines = out.status === 0 ? out.stdout.split('\n').filter(Boolean) : [];
      return lines.map((l) => { try { return JSON.parse(l); } catch { return {}; } }).filter(want);
    };
    const about = (l) => l.object === notes.object && l.owner === 'alice' && l.target === 'bob' && l.user === 'alice';
    let shares = [];
    let unshares = [];
    for (let i = 0; i < 20; i++) {
      shares = events((l) => l.event === 'share' && about(l));
      unshares = events((l) => l.event === 'unshare' && about(l));
      if (shares.length && unshares.length) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    record('the audit has one "share" record for it (alice → bob)', shares.length === 1, JSON.stringify(shares));
    record('…and one "unshare" record', unshares.length === 1, JSON.stringify(unshares));
    const denials = events((l) => l.decision === 'deny' && l.user === 'bob' && l.object === notes.object && !('event' in l));
    record('…and bob\'s refused data-key requests as denied decisions', denials.length >= 2, `${denials.length} denied`);
  }

  // ---- a disabled KMS key ------------------------------------------------------
  const keyArn = k.provider_info;
  const keys = (verb) => spawnSync(bin, ['keys', '--data-dir', data, verb, keyArn], { encoding: 'utf8' }).status === 0;
  // A file nobody has opened yet (opened ones may be served from the gateway's short KMS cache).
  const fresh = await upload(alice.page, small.replace('notes', 'minutes'));
  record('the operator disables the KMS key', keys('disable'));
  const off = await download(alice.page, fresh.object, join(work, 'disabled.out'));
  record('a download then says the key is disabled, and saves nothing', off.state === 'failed' && /disabled/.test(off.status) && !off.saved, off.status);
  await alice.page.screenshot({ path: join(shots, '4a-key-disabled.png'), fullPage: true });
  record('the operator enables it again', keys('enable'));

  // ---- tampering -------------------------------------------------------------
  const victim = await upload(alice.page, tamperMe);
  const vpath = blobFile('alice', victim.object);
  const bytes = readFileSync(vpath);
  bytes[Math.floor(bytes.length / 2)] ^= 0x01;
  writeFileSync(vpath, bytes);
  await alice.page.click('#refresh');
  await alice.page.waitForSelector(`#files tr[data-object="${victim.object}"]`);
  const t = await download(alice.page, victim.object, join(work, 'tampered.out'));
  record('a flipped byte: the download fails with the tampered message', t.state === 'failed' && /tampered/.test(t.status), t.status);
  record('…and nothing is saved', !t.saved && !existsSync(join(work, 'tampered.out')));
  await alice.page.screenshot({ path: join(shots, '5-tampered.png'), fullPage: true });

  // ---- sign out ----------------------------------------------------------------
  await alice.page.click('#logout');
  await alice.page.waitForSelector('#view-login:not([hidden])');
  const after = await alice.page.evaluate(async () => (await fetch('/v1/objects')).status);
  record('signing out ends the session on the server', after === 401);
  record('no page errors', alice.errors.length === 0 && bob.errors.length === 0, [...alice.errors, ...bob.errors].join('; ').slice(0, 500));
} catch (e) {
  record('the end-to-end run completed', false, e.stack);
} finally {
  await browser.close();
  kms.kill('SIGTERM');
  gw.kill('SIGTERM');
  await new Promise((r) => (gw.exitCode !== null ? r() : gw.once('exit', r)));
  rmSync(work, { recursive: true, force: true });
}

finish(`screenshots: ${shots}`);
