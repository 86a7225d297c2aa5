//! Who is calling: a bearer token (scripts, the CLI), or the web app's
//! session cookie set by `POST /v1/login`.
//!
//! The cookie is `HttpOnly; Secure; SameSite=Strict` and names a random
//! session id (kept only as its SHA-256). Requests that change anything and
//! are authenticated by the cookie must also carry the session's CSRF token
//! in `X-CSRF-Token` (a value a cross-site page cannot read), and a browser's
//! `Origin`/`Sec-Fetch-Site`, when sent, must say the request comes from the
//! web app's configured origin.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::http::{header, HeaderMap, Method};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::errors::ApiError;
use super::meta::{Metadata, SessionKey};

pub const COOKIE: &str = "kms_envelope_session";

/// Live sessions, in the metadata database: every instance sharing it
/// honours them, and a restart signs nobody out.
pub struct Sessions {
    db: Arc<dyn Metadata>,
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

fn id_hash(id: &str) -> SessionKey {
    SessionKey(Sha256::digest(id.as_bytes()).into())
}

impl Sessions {
    pub fn new(db: Arc<dyn Metadata>, lifetime: Duration) -> Sessions {
        Sessions { db, lifetime }
    }

    /// A new session for `user`: (session id for the cookie, CSRF token).
    pub async fn create(&self, user: &str) -> Result<(String, String), ApiError> {
        let id = random_token();
        let csrf = random_token();
        let expires = crate::localkms::now() + self.lifetime.as_secs_f64();
        self.db.create_session(&id_hash(&id), user, &csrf, expires).await?;
        Ok((id, csrf))
    }

    /// The session's (user, CSRF token), if it is live.
    pub async fn get(&self, id: &str) -> Result<Option<(String, String)>, ApiError> {
        self.db.session(&id_hash(id), crate::localkms::now()).await.map_err(ApiError::from)
    }

    pub async fn remove(&self, id: &str) -> Result<(), ApiError> {
        self.db.delete_session(&id_hash(id)).await.map_err(ApiError::from)
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
