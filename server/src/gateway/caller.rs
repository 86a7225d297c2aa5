//! Who is calling: a bearer token (scripts, the CLI: a static token, or a
//! JWT from the configured OpenID provider) or the web app's session
//! cookie, checked before any request body is read.
//!
//! Failed authentication is throttled per (claimed user, client address),
//! and only failures spend the budget:
//!
//! - a sign-in (user name and token) over its budget is refused before the
//!   token is looked at, right or wrong, for that user at that address
//!   only: a client elsewhere, or signing in as someone else, is never
//!   locked out, and the lock ends as the budget refills;
//! - a bearer token names no user, so its failures count against
//!   (`bearer`, address). A valid token is always served (it proves who
//!   the caller is, and a client sharing the address must not lose its
//!   access to someone else's errors); wrong ones over the budget get 429
//!   instead of 401. Bearer tokens are random secrets (the demo's are 192
//!   bits): their defence against guessing is their length, the throttle
//!   bounds what a misbehaving client costs.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};

use super::errors::{err, retry_after, ApiError};
use super::meta::Take;
use super::oidc::{self, Oidc, Refusal};
use super::peer::Peer;
use super::session::{self, Credential};
use super::Gateway;

/// An authenticated caller.
pub struct Caller {
    pub user: String,
    /// The session id, when the session cookie authenticated the request.
    pub session: Option<String>,
}

pub fn unauthorized() -> ApiError {
    err(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "sign in, or send a valid bearer token")
}

/// The throttle key of a failed authentication.
pub fn failure_key(user: Option<&str>, peer: &Peer) -> String {
    match user {
        Some(u) if super::config::valid_name(u) => format!("{u}@{}", peer.addr),
        Some(_) => format!("?@{}", peer.addr),
        None => format!("bearer@{}", peer.addr),
    }
}

/// 429 while `key` has failed too often.
pub async fn not_throttled(gw: &Gateway, key: &str) -> Result<(), ApiError> {
    gw.auth_throttle(key, Take::Peek).await?.map_err(|wait| {
        gw.audit.refusals.auth_throttled.fetch_add(1, Ordering::Relaxed);
        retry_after(StatusCode::TOO_MANY_REQUESTS, "AUTH_THROTTLED", "too many failed sign-ins or tokens from this address; wait", wait)
    })
}

/// Counts a failed authentication against `key`.
pub async fn charge_failure(gw: &Gateway, key: &str) -> Result<(), ApiError> {
    gw.auth_throttle(key, Take::One).await.map(|_| ())
}

/// A wrong bearer token (static or JWT): 429 while the address is over its
/// budget, else counted against it.
async fn bearer_failure(gw: &Gateway, peer: &Peer) -> Result<(), ApiError> {
    let key = failure_key(None, peer);
    not_throttled(gw, &key).await?;
    charge_failure(gw, &key).await
}

/// The user a provider's JWT names. A refused token is a failure like a
/// wrong static token, and its reason (never the token) is logged; a
/// provider that cannot be reached is not the caller's failure.
pub async fn provider_user(gw: &Gateway, oidc: &Oidc, peer: &Peer, token: &str) -> Result<String, ApiError> {
    match oidc.verify(token).await {
        Ok(user) => Ok(user),
        Err(Refusal::Unavailable) => Err(retry_after(StatusCode::SERVICE_UNAVAILABLE, Refusal::Unavailable.code(), Refusal::Unavailable.message(), Duration::from_secs(5))),
        Err(r) => {
            tracing::info!(reason = r.code(), client = %peer.addr, "bearer token refused");
            bearer_failure(gw, peer).await?;
            gw.audit.refusals.unauthenticated.fetch_add(1, Ordering::Relaxed);
            Err(err(StatusCode::UNAUTHORIZED, r.code(), r.message()))
        }
    }
}

/// Authenticates a request. A cookie alone never authorizes a state
/// change: those need the CSRF token and a request from the web app's origin.
pub async fn authenticate(gw: &Gateway, peer: &Peer, method: &Method, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let refused = || {
        gw.audit.refusals.unauthenticated.fetch_add(1, Ordering::Relaxed);
        unauthorized()
    };
    match session::credential(headers) {
        Credential::Bearer(t) => match gw.user_for_token(t) {
            Some(u) => Ok(Caller { user: u.to_owned(), session: None }),
            None => match gw.oidc.as_ref().filter(|_| oidc::is_jwt(t)) {
                Some(o) => Ok(Caller { user: provider_user(gw, o, peer, t).await?, session: None }),
                None => {
                    bearer_failure(gw, peer).await?;
                    Err(refused())
                }
            },
        },
        Credential::Cookie(id) => {
            let (user, csrf) = gw.sessions.get(id).await?.ok_or_else(refused)?;
            if session::changes_state(method) && !(session::csrf_ok(headers, &csrf) && session::same_origin(headers, gw.origins())) {
                return Err(err(StatusCode::FORBIDDEN, "CSRF", "a cross-site request, or no X-CSRF-Token: refused"));
            }
            Ok(Caller { user, session: Some(id.to_owned()) })
        }
        Credential::None => Err(refused()),
    }
}
