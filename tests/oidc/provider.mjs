// An OpenID provider for the sign-in tests: oidc-provider (a certified
// OpenID Connect server) on loopback, with users alice, bob and carol.
//
//   node tests/oidc/provider.mjs [--issuers N] [--redirect URI]...
//
// Prints `ready ISSUER...` and ends when its standard input closes.
//
// Clients (all public, authorization code + PKCE, as a single-page app):
// `web` (ID token RS256, the redirect URIs given), and `rs256`, `ps256`,
// `es256`, whose JWT access tokens for the resource `https://files.test`
// are signed with that algorithm. Sign-in: the login page asks for a user
// name (any of the three; no password: a test provider), consent is given
// at once.
//
// Test routes, beside the provider's own:
//   GET  /test/token?user=U&client=C[&resource=R] → { access_token, id_token }:
//        the whole authorization code flow, over HTTP against this server
//   POST /test/sign { header, claims, key } → { token }: a JWT signed with
//        one of the provider's keys (`key`: "RS256", "PS256", "ES256"), or
//        "next-RS256" (… the key the next rotation publishes), "ghost" (a key
//        it never publishes), or "hs256-public" (HS256 with the RS256 public
//        key as the secret)
//   POST /test/rotate → { kids }: the next keys, published first and used from now on
//   GET  /test/stats → { jwksRequests }

import http from 'node:http';
import crypto from 'node:crypto';
import * as jose from 'jose';
import Provider from 'oidc-provider';

const RESOURCE = 'https://files.test';
const USERS = ['alice', 'bob', 'carol'];
const ALGS = ['RS256', 'PS256', 'ES256'];

const args = process.argv.slice(2);
const opt = (name) => args.flatMap((a, i) => (a === name ? [args[i + 1]] : []));
const issuers = Number(opt('--issuers')[0] ?? 1);
const redirects = opt('--redirect');

async function keyFor(alg) {
  const { privateKey } = await jose.generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${crypto.randomBytes(4).toString('hex')}` };
}

async function keySet() {
  return Promise.all(ALGS.map(keyFor));
}

function page(title, body) {
  return `<!doctype html><meta charset="utf-8"><title>${title}</title><body><h1>${title}</h1>${body}</body>`;
}

function escape(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return Object.fromEntries(new URLSearchParams(body));
}

async function readJson(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return JSON.parse(body || '{}');
}

function send(res, status, type, body, headers = {}) {
  res.writeHead(status, { 'content-type': type, ...headers });
  res.end(body);
}

// One issuer: its provider (remade on rotation, keys prepended), keys, counters.
class Issuer {
  constructor(port) {
    this.url = `http://127.0.0.1:${port}`;
    this.jwksRequests = 0;
  }

  async init() {
    this.keys = await keySet();
    // Published only from the next rotation on.
    this.next = await keySet();
    this.ghost = await keyFor('RS256');
    this.make();
  }

  make() {
    const redirect = `${this.url}/test/callback`;
    const client = (id, alg) => ({
      client_id: id,
      token_endpoint_auth_method: 'none',
      application_type: 'web',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: id === 'web' ? [redirect, ...redirects] : [redirect],
      id_token_signed_response_alg: alg,
    });
    const provider = new Provider(this.url, {
      clients: [client('web', 'RS256'), ...ALGS.map((a) => client(a.toLowerCase(), a))],
      jwks: { keys: this.keys },
      cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
      scopes: ['openid', 'email', 'profile', 'files'],
      claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['preferred_username'] },
      findAccount: async (_ctx, id) => (USERS.includes(id) ? {
        accountId: id,
        claims: async () => ({ sub: id, email: `${id}@example.com`, email_verified: true, preferred_username: id }),
      } : undefined),
      interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
      features: {
        devInteractions: { enabled: false },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => RESOURCE,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx, resource, client) => {
            if (resource !== RESOURCE) throw new Provider.errors.InvalidTarget();
            const alg = client.clientId === 'web' ? 'ES256' : client.clientId.toUpperCase();
            return { scope: 'files', audience: RESOURCE, accessTokenFormat: 'jwt', accessTokenTTL: 300, jwt: { sign: { alg } } };
          },
        },
      },
      ttl: { AccessToken: 300, IdToken: 300, Interaction: 300, Session: 3600, Grant: 3600, AuthorizationCode: 60 },
      // Every web client's redirect origins may call the token endpoint.
      clientBasedCORS: (_ctx, origin, client) => client.redirectUris.some((u) => new URL(u).origin === origin),
      renderError: (ctx, out) => { ctx.type = 'html'; ctx.body = page('Error', `<pre>${escape(JSON.stringify(out))}</pre>`); },
    });
    provider.on('server_error', (_ctx, e) => console.error('provider error', e));
    this.provider = provider;
    this.callback = provider.callback();
  }

  async rotate() {
    this.keys = [...this.next, ...this.keys];
    this.next = await keySet();
    this.make();
    return this.keys.slice(0, ALGS.length).map((k) => k.kid);
  }

  // The login page; consent is given at once.
  async interaction(req, res) {
    const details = await this.provider.interactionDetails(req, res);
    const { uid, prompt, params } = details;
    if (prompt.name === 'consent') {
      const grant = details.grantId ? await this.provider.Grant.find(details.grantId) : new this.provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
      if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
      if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
      const grantId = await grant.save();
      return this.provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    }
    let login = params.login_hint;
    if (!login && req.method === 'POST') login = (await readForm(req)).login;
    if (login && USERS.includes(login)) {
      return this.provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    }
    const error = login ? `<p id="error">no user ${escape(login)}</p>` : '';
    send(res, 200, 'text/html', page('Sign in to the test provider',
      `${error}<form method="post" action="/interaction/${uid}"><label>User <input id="login" name="login" autofocus></label> <button id="submit" type="submit">Sign in</button></form>`));
  }

  // The authorization code flow, as a client would run it, over HTTP.
  async token(user, client, resource) {
    const verifier = jose.base64url.encode(crypto.randomBytes(32));
    const challenge = jose.base64url.encode(crypto.createHash('sha256').update(verifier).digest());
    const redirect = `${this.url}/test/callback`;
    const auth = new URL(`${this.url}/auth`);
    const q = { client_id: client, response_type: 'code', scope: 'openid email profile files', redirect_uri: redirect, code_challenge: challenge, code_challenge_method: 'S256', login_hint: user, state: 's', nonce: 'n', prompt: 'consent' };
    if (resource) q.resource = resource;
    for (const [k, v] of Object.entries(q)) auth.searchParams.set(k, v);
    const jar = new Map();
    let url = auth.href;
    for (let hop = 0; hop < 12; hop++) {
      if (url.startsWith(redirect)) break;
      const r = await fetch(url, { redirect: 'manual', headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') } });
      for (const c of r.headers.getSetCookie()) {
        const [kv] = c.split(';');
        const i = kv.indexOf('=');
        jar.set(kv.slice(0, i), kv.slice(i + 1));
      }
      const next = r.headers.get('location');
      if (!next) throw new Error(`no redirect from ${url}: ${r.status} ${await r.text()}`);
      url = new URL(next, url).href;
    }
    const code = new URL(url).searchParams.get('code');
    if (!code) throw new Error(`no code: ${url}`);
    const body = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirect, client_id: client, code_verifier: verifier });
    if (resource) body.set('resource', resource);
    const r = await fetch(`${this.url}/token`, { method: 'POST', body });
    const tokens = await r.json();
    if (!r.ok) throw new Error(`token endpoint: ${JSON.stringify(tokens)}`);
    return { access_token: tokens.access_token, id_token: tokens.id_token };
  }

  async sign({ header = {}, claims, key }) {
    if (key === 'hs256-public') {
      const rsa = this.keys.find((k) => k.alg === 'RS256');
      const pub = crypto.createPublicKey({ key: { kty: 'RSA', n: rsa.n, e: rsa.e }, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
      return new jose.SignJWT(claims).setProtectedHeader({ ...header, alg: 'HS256', kid: rsa.kid }).sign(new TextEncoder().encode(pub));
    }
    const jwk = key === 'ghost' ? this.ghost
      : key.startsWith('next-') ? this.next.find((k) => k.alg === key.slice(5)) : this.keys.find((k) => k.alg === key);
    const priv = await jose.importJWK(jwk, jwk.alg);
    return new jose.SignJWT(claims).setProtectedHeader({ alg: jwk.alg, kid: jwk.kid, ...header }).sign(priv);
  }

  async handle(req, res) {
    const url = new URL(req.url, this.url);
    try {
      if (url.pathname.startsWith('/interaction/')) return await this.interaction(req, res);
      if (url.pathname === '/test/token') {
        const t = await this.token(url.searchParams.get('user'), url.searchParams.get('client') ?? 'rs256', url.searchParams.get('resource'));
        return send(res, 200, 'application/json', JSON.stringify(t));
      }
      if (url.pathname === '/test/sign' && req.method === 'POST') {
        return send(res, 200, 'application/json', JSON.stringify({ token: await this.sign(await readJson(req)) }));
      }
      if (url.pathname === '/test/rotate' && req.method === 'POST') {
        return send(res, 200, 'application/json', JSON.stringify({ kids: await this.rotate() }));
      }
      if (url.pathname === '/test/stats') return send(res, 200, 'application/json', JSON.stringify({ jwksRequests: this.jwksRequests }));
      if (url.pathname === '/jwks') this.jwksRequests++;
      return this.callback(req, res);
    } catch (e) {
      console.error(e);
      send(res, 500, 'application/json', JSON.stringify({ error: String(e?.message ?? e) }));
    }
  }
}

const started = [];
for (let i = 0; i < issuers; i++) {
  const server = http.createServer();
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const issuer = new Issuer(server.address().port);
  await issuer.init();
  server.on('request', (req, res) => issuer.handle(req, res));
  started.push(issuer.url);
}
console.log(`ready ${started.join(' ')}`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
