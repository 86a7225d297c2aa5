//! Who is calling: a bearer token (scripts, the CLI), or the web app's
//! session cookie set by `POST /v1/login`.
//!
//! The cookie is `HttpOnly; Secure; SameSite=Strict` and names a random
//! session id (kept only as its SHA-256). Requests that change anything and
//! are authenticated by the cookie must also carry the session's CSRF token
//! in `X-CSRF-Token` (a value a cross-site page cannot read), and a browser's
//! `Origin`/`Sec-Fetch-Site`, when sent, must say the request comes from the
//! web app's configured origin.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::http::{header, HeaderMap, Method};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "kms_envelope_session";

struct Session {
    user: String,
    csrf: String,
    expires: Instant,
}

/// Live sessions, in memory only: a restart signs everybody out.
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    lifetime: Duration,
}

/// How a request was authenticated.
pub enum Credential<'a> {
    Bearer(&'a str),
    Cookie(&'a str),
    None,
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    B64URL.encode(b)
}

fn id_hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Sessions {
        Sessions { map: Mutex::new(HashMap::new()), lifetime }
    }

    /// A new session for `user`: (session id for the cookie, CSRF token).
    pub fn create(&self, user: &str) -> (String, String) {
        let id = random_token();
        let csrf = random_token();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(id_hash(&id), Session { user: user.to_owned(), csrf: csrf.clone(), expires: now + self.lifetime });
        (id, csrf)
    }

    /// The session's (user, CSRF token), if it is live.
    pub fn get(&self, id: &str) -> Option<(String, String)> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&id_hash(id)).filter(|s| s.expires > Instant::now()).map(|s| (s.user.clone(), s.csrf.clone()))
    }

    pub fn remove(&self, id: &str) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(&id_hash(id));
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

/// The credential a request carries; a bearer token wins over a cookie.
pub fn credential(headers: &HeaderMap) -> Credential<'_> {
    if let Some(h) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return match h.strip_prefix("Bearer ") {
            Some(t) => Credential::Bearer(t.trim()),
            None => Credential::None,
        };
    }
    match session_cookie(headers) {
        Some(id) => Credential::Cookie(id),
        None => Credential::None,
    }
}

/// The session id from the `Cookie` header(s).
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
}

/// Methods a cookie alone must never authorize.
pub fn changes_state(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The browser says the request comes from the web app's origin (or says
/// nothing, as non-browser clients do). `allowed` are the configured
/// origins (see `origin`); `Host` is never consulted.
pub fn same_origin(headers: &HeaderMap, allowed: &[String]) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => super::origin::parse(origin).is_some_and(|o| allowed.contains(&o)),
    }
}

/// The CSRF header equals the session's token.
pub fn csrf_ok(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get("x-csrf-token")
        .map(|v| bool::from(v.as_bytes().ct_eq(want.as_bytes())))
        .unwrap_or(false)
}

/// `Set-Cookie` for a new session, or one that clears it (`id` = None).
pub fn set_cookie(id: Option<&str>, lifetime: Duration) -> String {
    match id {
        Some(id) => format!("{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}", lifetime.as_secs()),
        None => format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0"),
    }
}
