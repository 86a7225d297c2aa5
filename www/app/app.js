// The demo app's page: sign-in, the gateway's key (pinned on first use),
// uploads and downloads run by the crypto worker, the file list.
import { bytes, duration, date, Rate } from './format.js';
import { GatewayError, explain } from './errors.js';
import { providerConfig, startSignIn, isCallback, finishSignIn } from './sso.js';

const $ = (id) => document.getElementById(id);
const state = { user: null, csrf: null, key: null, objects: [], trustedKey: false };
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
const jobs = new Map();
let nextJob = 1;
const PIN = `kms-envelope.pinned-key:${location.origin}`;

// ---- the gateway -----------------------------------------------------------

async function call(method, url, body) {
  const headers = {};
  if (state.csrf) headers['X-CSRF-Token'] = state.csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(url, {
    method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : {};
  if (!res.ok) {
    if (res.status === 401 && state.user) signedOut();
    throw new GatewayError(res.status, json.error, json.message);
  }
  return json;
}

// ---- notices ---------------------------------------------------------------

function notice(message, kind = 'error') {
  const n = $('notice');
  n.textContent = message;
  n.className = kind === 'info' ? 'info' : '';
  n.hidden = !message;
}

// ---- views -----------------------------------------------------------------

function show(view) {
  for (const v of document.querySelectorAll('.view')) v.hidden = v.id !== `view-${view}`;
  document.body.dataset.view = view;
}

async function route() {
  if (!state.user) { show('login'); return; }
  const hash = location.hash || '#/files';
  if (hash.startsWith('#/open/')) {
    // A link to a file, #/open/{owner}/{id} or #/open/{id} (one of the
    // user's own, as the gateway reads an id without owner): open it if this user may.
    const parts = hash.slice('#/open/'.length).split('/').map(decodeURIComponent);
    const [owner, id] = parts.length > 1 ? parts : [null, parts[0]];
    await loadFiles().catch(() => {});
    const same = state.objects.filter((x) => x.id === id);
    const o = (owner ? same.find((x) => x.owner === owner) : same.find((x) => x.owner === state.user) || same[0])
      || { id, owner: owner || state.user, keyArn: '', size: 0, fileName: null, sharedWith: [] };
    $('save-mode').value = 'download';
    startDownload(o);
    return;
  }
  if (hash.startsWith('#/download/')) {
    if ($('dl-progress').dataset.state) { show('download'); return; }
    location.hash = '#/files'; // a reloaded download page: nothing is running
    return;
  }
  show('files');
  await Promise.all([loadKey(), loadFiles()]).catch((e) => notice(explain(e)));
}

function signedIn(user, csrf) {
  state.user = user;
  state.csrf = csrf;
  $('user-name').textContent = user;
  $('whoami').hidden = false;
  notice('');
  if (!location.hash || location.hash === '#/login') location.hash = '#/files';
  route();
}

function signedOut() {
  state.user = null;
  state.csrf = null;
  $('whoami').hidden = true;
  location.hash = '#/login';
  show('login');
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('login-submit').disabled = true;
  try {
    const r = await call('POST', '/v1/login', { user: $('login-user').value.trim(), token: $('login-token').value });
    $('login-token').value = '';
    signedIn(r.user, r.csrfToken);
  } catch (e) {
    notice(e.status === 401 ? 'Wrong user name or token.' : explain(e));
  } finally {
    $('login-submit').disabled = false;
  }
});

// Single sign-on: the provider's token, sent once in the Authorization
// header (which no other site can make this browser send), buys the session.
async function openSession(token) {
  const res = await fetch('/v1/login/oidc', { method: 'POST', headers: { Authorization: `Bearer ${token}` }, credentials: 'same-origin' });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new GatewayError(res.status, json.error, json.message);
  return json;
}

let sso = null;

$('sso-signin').addEventListener('click', async () => {
  $('sso-signin').disabled = true;
  try {
    await startSignIn(sso);
  } catch (e) {
    notice(`Cannot reach ${sso.name}: ${explain(e)}`);
    $('sso-signin').disabled = false;
  }
});

$('logout').addEventListener('click', async () => {
  await call('POST', '/v1/logout').catch(() => {});
  signedOut();
  notice('Signed out.', 'info');
});

window.addEventListener('hashchange', route);

// ---- the key: trust on first use, then pinned ------------------------------

async function loadKey() {
  const key = await call('GET', '/v1/public-key');
  state.key = key;
  $('key-arn').textContent = key.keyArn;
  $('key-fingerprint').textContent = key.fingerprint;
  let pinned = null;
  try { pinned = JSON.parse(localStorage.getItem(PIN) || 'null'); } catch { pinned = null; }
  if (!pinned) {
    localStorage.setItem(PIN, JSON.stringify({ keyArn: key.keyArn, fingerprint: key.fingerprint }));
    pinned = { fingerprint: key.fingerprint };
    $('key-pin').textContent = 'pinned now (first use)';
  } else {
    $('key-pin').textContent = pinned.fingerprint === key.fingerprint ? 'matches the pinned key' : 'CHANGED';
  }
  state.trustedKey = pinned.fingerprint === key.fingerprint;
  $('key-pin').className = `badge ${state.trustedKey ? 'ok' : 'bad'}`;
  $('key-changed').hidden = state.trustedKey;
  $('key-pinned-fp').textContent = pinned.fingerprint;
  $('file-input').disabled = !state.trustedKey;
}

$('key-trust').addEventListener('click', () => {
  localStorage.setItem(PIN, JSON.stringify({ keyArn: state.key.keyArn, fingerprint: state.key.fingerprint }));
  loadKey();
});

// ---- the file list ---------------------------------------------------------

async function loadFiles() {
  const { objects } = await call('GET', '/v1/objects');
  state.objects = objects;
  const tbody = $('files').querySelector('tbody');
  tbody.replaceChildren(...objects.map(row));
  $('files-empty').hidden = objects.length > 0;
}

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function button(label, cls, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.className = cls;
  b.addEventListener('click', onClick);
  return b;
}

function row(o) {
  const tr = document.createElement('tr');
  tr.dataset.object = o.id; // ids are unique per owner only
  tr.dataset.owner = o.owner;
  const keyCell = cell(o.keyArn.split('/').pop(), 'key-id');
  keyCell.title = o.keyArn;
  tr.append(cell(o.fileName || o.id, 'name'), cell(bytes(o.size)), cell(date(o.created)), cell(o.owner),
    keyCell, sharedCell(o));
  const actions = cell('', 'actions');
  actions.append(button('Download', 'secondary download', () => startDownload(o)));
  actions.append(button('Preview', 'secondary preview', () => startPreview(o)));
  if (o.owner === state.user) {
    actions.append(button('Share…', 'secondary share', () => shareForm(o, actions)));
    const del = button('Delete', 'danger-btn delete', async () => {
      if (del.dataset.armed !== 'yes') { del.dataset.armed = 'yes'; del.textContent = 'Confirm delete'; return; }
      try { await call('DELETE', `/v1/objects/${encodeURIComponent(o.id)}`); await loadFiles(); } catch (e) { notice(explain(e)); }
    });
    actions.append(del);
  }
  tr.append(actions);
  return tr;
}

/** Who a file is shared with; its owner gets a "stop sharing" button per user. */
function sharedCell(o) {
  if (o.owner !== state.user || o.sharedWith.length === 0) return cell(o.sharedWith.join(', ') || '—', 'shared');
  const td = cell('', 'shared');
  for (const user of o.sharedWith) {
    const chip = document.createElement('span');
    chip.className = 'share-chip';
    const name = document.createElement('span');
    name.textContent = user;
    const stop = button('×', 'link unshare', () => unshare(o, user, stop));
    stop.dataset.user = user;
    stop.title = `Stop sharing with ${user}`;
    stop.setAttribute('aria-label', `Stop sharing ${o.fileName || o.id} with ${user}`);
    chip.append(name, stop);
    td.append(chip);
  }
  return td;
}

async function unshare(o, user, btn) {
  btn.disabled = true;
  const name = o.fileName || o.id;
  try {
    await call('DELETE', `/v1/objects/${encodeURIComponent(o.id)}/shares/${encodeURIComponent(user)}`);
    notice(`Stopped sharing ${name} with ${user}.`, 'info');
  } catch (e) {
    btn.disabled = false;
    if (e.status !== 404 || e.error !== 'NOT_FOUND') { notice(explain(e)); return; }
    notice(`${name} is no longer shared with ${user}.`, 'info'); // already revoked, or the file is gone
  }
  await loadFiles().catch((e) => notice(explain(e)));
}

function shareForm(o, actions) {
  if (actions.querySelector('form')) return;
  const form = document.createElement('form');
  form.className = 'share-form';
  const input = document.createElement('input');
  input.placeholder = 'user name';
  input.required = true;
  input.className = 'share-user';
  form.append(input, button('Share', 'share-ok', () => form.requestSubmit()));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await call('POST', `/v1/objects/${encodeURIComponent(o.id)}/shares`, { user: input.value.trim() });
      notice(`Shared ${o.fileName || o.id} with ${input.value.trim()}.`, 'info');
      await loadFiles();
    } catch (e) {
      notice(e.status === 400 ? 'No such user.' : explain(e));
    }
  });
  actions.append(form);
  input.focus();
}

$('refresh').addEventListener('click', () => loadFiles().catch((e) => notice(explain(e))));
if (!('showSaveFilePicker' in window)) {
  $('save-mode').value = 'download';
  $('save-mode').querySelector('option[value=picker]').disabled = true;
}

// ---- transfers -------------------------------------------------------------

function transferView(container, name, onCancel) {
  const el = document.createElement('div');
  el.className = 'transfer';
  el.dataset.state = 'running';
  const title = document.createElement('div');
  title.className = 'line';
  const n = document.createElement('span');
  n.className = 'name';
  n.textContent = name;
  const cancel = button('Cancel', 'link cancel', onCancel);
  title.append(n, cancel);
  const bar = document.createElement('progress');
  bar.max = 1;
  bar.value = 0;
  const line = document.createElement('div');
  line.className = 'line';
  const status = document.createElement('span');
  status.className = 'status';
  const numbers = document.createElement('span');
  numbers.className = 'numbers';
  line.append(status, numbers);
  el.append(title, bar, line);
  container.append(el);
  const rate = new Rate();
  let phase = '';
  return {
    el,
    progress(p) {
      if (p.phase !== phase) { phase = p.phase; rate.samples = [[performance.now(), p.done]]; }
      rate.update(p.done);
      const speed = rate.perSecond();
      bar.value = p.total ? p.done / p.total : 0;
      const label = { hashing: 'Computing SHA-256', uploading: 'Encrypting and uploading', downloading: 'Downloading and decrypting' }[p.phase];
      status.textContent = `${label}…`;
      numbers.textContent = `${bytes(p.done)} of ${bytes(p.total)} · ${(speed / 1048576).toFixed(1)} MiB/s · ${duration((p.total - p.done) / speed)} left`;
    },
    status(message) { status.textContent = message; },
    finish(ok, message) {
      el.dataset.state = ok ? 'done' : 'failed';
      el.classList.add(ok ? 'done' : 'failed');
      status.textContent = message;
      if (ok) bar.value = 1;
      cancel.remove();
    },
  };
}

function runJob(message, view) {
  const id = nextJob++;
  return new Promise((resolve, reject) => {
    jobs.set(id, { view, resolve, reject });
    worker.postMessage({ ...message, id });
  });
}

worker.onmessage = (ev) => {
  const m = ev.data;
  const job = jobs.get(m.id);
  if (!job) return;
  if (m.type === 'progress') job.view.progress(m);
  else if (m.type === 'status') job.view.status(m.message);
  else {
    jobs.delete(m.id);
    if (m.type === 'done') job.resolve(m);
    else job.reject(Object.assign(new Error(m.message), { code: m.code, detail: m.detail }));
  }
};

function cancelJob(id) { worker.postMessage({ type: 'cancel', id }); }

async function startUploads(files) {
  if (!state.trustedKey) { notice("The gateway's key is not trusted: uploads are blocked."); return; }
  for (const file of files) {
    const li = document.createElement('li');
    $('transfers').prepend(li);
    const id = nextJob;
    const view = transferView(li, file.name, () => cancelJob(id));
    li.dataset.file = file.name;
    runJob({ type: 'upload', file, key: state.key, owner: state.user, objectId: crypto.randomUUID(), csrf: state.csrf }, view)
      .then((r) => {
        view.finish(true, `Encrypted and uploaded${r.direct ? ' straight to S3' : ''} · ${bytes(r.size)} · SHA-256 ${r.sha256}`);
        li.dataset.sha256 = r.sha256;
        li.dataset.direct = String(!!r.direct);
        li.dataset.object = r.object.id;
        li.dataset.timings = JSON.stringify(r.timings);
        loadFiles().catch(() => {});
      })
      .catch((e) => view.finish(false, e.message));
  }
}

$('file-input').addEventListener('change', (ev) => { startUploads([...ev.target.files]); ev.target.value = ''; });
const drop = $('drop');
drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (ev) => {
  ev.preventDefault();
  drop.classList.remove('over');
  startUploads([...ev.dataTransfer.files]);
});

/** Shows the download page for `o` with a fresh progress view for the next job. */
function fileJobPage(o, verb, placeholder) {
  location.hash = `#/download/${encodeURIComponent(o.owner)}/${encodeURIComponent(o.id)}`;
  show('download');
  $('dl-title').textContent = `${verb} ${o.fileName || o.id}`;
  $('dl-object').textContent = `${o.id} (owner ${o.owner}, ${bytes(o.size)})`;
  for (const id of ['dl-expected', 'dl-actual']) $(id).textContent = placeholder;
  $('dl-verdict').textContent = '';
  $('dl-verdict').className = 'badge';
  const box = $('dl-progress');
  box.replaceChildren();
  box.dataset.state = 'running';
  const id = nextJob;
  return { box, view: transferView(box, o.fileName || o.id, () => cancelJob(id)) };
}

async function startDownload(o) {
  notice('');
  let handle = null;
  if ($('save-mode').value === 'picker' && 'showSaveFilePicker' in window) {
    try {
      handle = await window.showSaveFilePicker({ suggestedName: o.fileName || o.id });
    } catch (e) {
      if (e.name === 'AbortError') return;
      throw e;
    }
  }
  const { box, view } = fileJobPage(o, 'Download', '…');
  try {
    const r = await runJob({ type: 'download', object: o, csrf: state.csrf, handle }, view);
    $('dl-expected').textContent = r.expected || '(not recorded)';
    $('dl-actual').textContent = r.sha256;
    $('dl-verdict').textContent = r.expected ? 'verified' : 'no hash recorded';
    $('dl-verdict').className = `badge ${r.expected ? 'ok' : ''}`;
    if (r.blob) {
      const url = URL.createObjectURL(r.blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = r.fileName;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    }
    view.finish(true, `Decrypted, verified and saved · ${bytes(r.size)}`);
    box.dataset.state = 'done';
  } catch (e) {
    view.finish(false, e.message);
    box.dataset.state = 'failed';
    $('dl-verdict').textContent = 'not saved';
    $('dl-verdict').className = 'badge bad';
  }
}

// ---- preview: the first 64 KiB, decrypted from only the frames that hold them --

const PREVIEW_BYTES = 64 * 1024;
const IMAGE_TYPES = [
  [[0x89, 0x50, 0x4e, 0x47], 'image/png'], [[0xff, 0xd8, 0xff], 'image/jpeg'], [[0x47, 0x49, 0x46, 0x38], 'image/gif'],
];

function imageType(b) {
  for (const [magic, type] of IMAGE_TYPES) if (magic.every((x, i) => b[i] === x)) return type;
  if (b.length > 12 && String.fromCharCode(...b.slice(8, 12)) === 'WEBP') return 'image/webp';
  return null;
}

async function startPreview(o) {
  notice('');
  const { box, view } = fileJobPage(o, 'Preview', '—');
  view.status('Reading the first frames…');
  try {
    const r = await runJob({ type: 'preview', object: o, csrf: state.csrf, bytes: PREVIEW_BYTES }, view);
    const shown = document.createElement('div');
    shown.className = 'preview';
    const type = imageType(r.plaintext);
    if (type) { // browsers draw what a partial image holds
      const img = document.createElement('img');
      img.src = URL.createObjectURL(new Blob([r.plaintext], { type }));
      img.alt = r.fileName;
      shown.append(img);
    } else {
      let text = null;
      try { text = new TextDecoder('utf-8', { fatal: true }).decode(r.plaintext); } catch { text = null; }
      const pre = document.createElement('pre');
      pre.textContent = text !== null && !text.includes('\0')
        ? text
        : `(binary) ${[...r.plaintext.slice(0, 512)].map((x) => x.toString(16).padStart(2, '0')).join(' ')} …`;
      shown.append(pre);
    }
    box.append(shown);
    view.finish(true, `Showing ${bytes(r.plaintext.length)} of ${bytes(r.plaintextLength)}: ${bytes(r.read)} of ${bytes(o.size)} downloaded`);
    box.dataset.state = 'done';
    box.dataset.read = String(r.read);
  } catch (e) {
    view.finish(false, e.message);
    box.dataset.state = 'failed';
  }
}

// ---- start -----------------------------------------------------------------

(async () => {
  sso = await providerConfig().catch(() => null);
  if (sso) {
    $('sso-signin').textContent = `Sign in with ${sso.name}`;
    $('sso').hidden = false;
  }
  if (sso && isCallback()) {
    try {
      const { session, hash } = await finishSignIn(sso, openSession);
      location.hash = hash && hash !== '#/login' ? hash : '#/files';
      signedIn(session.user, session.csrfToken);
    } catch (e) {
      signedOut();
      notice(`Sign-in with ${sso.name} failed: ${explain(e)}`);
    }
    return;
  }
  try {
    const s = await call('GET', '/v1/session');
    signedIn(s.user, s.csrfToken);
  } catch {
    signedOut();
  }
})();
