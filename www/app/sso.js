// Sign-in with the gateway's OpenID provider: authorization code flow with
// PKCE (RFC 7636) in the browser, by oauth4webapi. The provider's token is
// held only long enough to trade it for the gateway's session cookie
// (POST /v1/login/oidc, the token in the Authorization header): after that
// the page holds what a password sign-in gives it (the HttpOnly cookie and
// the CSRF token), and no token is kept anywhere.
//
// What survives the redirect to the provider and back is the PKCE verifier,
// the state and the nonce, in sessionStorage (this tab only), removed as the
// answer comes back whether it is used or refused.
import * as oauth from 'oauth4webapi';

const PENDING = 'kms-envelope.sign-in';

/** The gateway's provider settings (`GET /v1/oidc`), or null without one. */
export async function providerConfig() {
  const r = await fetch('/v1/oidc', { credentials: 'same-origin' });
  return r.ok ? r.json() : null;
}

// http:// is accepted only for a provider on this machine (the tests').
function options(issuer) {
  const local = issuer.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(issuer.hostname);
  return local ? { [oauth.allowInsecureRequests]: true } : {};
}

async function discover(config) {
  const issuer = new URL(config.issuer);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, options(issuer)));
  return { as, client: { client_id: config.clientId }, opts: options(issuer) };
}

function redirectUri() {
  return `${location.origin}${location.pathname}`;
}

/** Sends the browser to the provider's sign-in page. */
export async function startSignIn(config) {
  const { as } = await discover(config);
  const verifier = oauth.generateRandomCodeVerifier();
  const pending = { verifier, state: oauth.generateRandomState(), nonce: oauth.generateRandomNonce(), hash: location.hash };
  const url = new URL(as.authorization_endpoint);
  const params = {
    ...config.authorizationParams,
    client_id: config.clientId,
    redirect_uri: redirectUri(),
    response_type: 'code',
    scope: config.scope,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state: pending.state,
    nonce: pending.nonce,
  };
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  location.assign(url.href);
}

/** Whether this page load is the provider sending the browser back. */
export function isCallback() {
  const q = new URLSearchParams(location.search);
  return sessionStorage.getItem(PENDING) !== null && (q.has('code') || q.has('error'));
}

/**
 * Finishes a sign-in the provider sent back: checks the answer (state,
 * issuer), redeems the code with the PKCE verifier, checks the ID token
 * (nonce), and hands the configured token to `openSession`, which trades
 * it for the gateway's session. Clears the address bar's query either way.
 * Returns what `openSession` returns, and the page's hash before sign-in.
 */
export async function finishSignIn(config, openSession) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING));
  sessionStorage.removeItem(PENDING);
  const current = new URL(location.href);
  history.replaceState(null, '', `${location.pathname}${pending.hash || ''}`);
  const { as, client, opts } = await discover(config);
  const params = oauth.validateAuthResponse(as, client, current, pending.state);
  const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, redirectUri(), pending.verifier, opts);
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, response, { expectedNonce: pending.nonce, requireIdToken: true });
  const token = config.token === 'id_token' ? tokens.id_token : tokens.access_token;
  if (!token) throw new Error(`the provider sent no ${config.token}`);
  return { session: await openSession(token), hash: pending.hash };
}
