//! OpenID Connect: JWTs from the configured provider are bearer tokens, and
//! the web app trades one for a session cookie (`POST /v1/login/oidc`).
//! Static tokens (`[[users]]`) go on working beside them.

mod keys;
mod token;

use std::time::Duration;

use serde_json::{json, Value};

pub use token::Refusal;

use super::config::OidcConfig;

pub struct Oidc {
    config: OidcConfig,
    keys: keys::KeySource,
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Result<Oidc, String> {
        let keys = keys::KeySource::new(&config.issuer, Duration::from_secs(config.jwks_refresh_seconds), Duration::from_secs(config.jwks_max_age_seconds))?;
        Ok(Oidc { config, keys })
    }

    /// The user a provider's JWT names, once it is verified.
    pub async fn verify(&self, token: &str) -> Result<String, Refusal> {
        token::verify(&self.config, &self.keys, token).await
    }

    /// What the web app needs to sign in (`GET /v1/oidc`), when it may.
    pub fn web_config(&self) -> Option<Value> {
        let c = &self.config;
        let client = c.client_id.as_ref()?;
        Some(json!({
            "issuer": c.issuer,
            "clientId": client,
            "scope": c.scope,
            "authorizationParams": c.authorization_params,
            "token": c.web_token.as_str(),
            "name": c.display_name.as_deref().unwrap_or("single sign-on"),
        }))
    }
}

/// Whether a bearer token is a JWT rather than a static token (those are
/// random base64url strings, which have no dots).
pub fn is_jwt(token: &str) -> bool {
    token.contains('.')
}
