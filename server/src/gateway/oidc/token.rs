//! Checking one JWT (RFC 7519, with RFC 8725's advice): the header's `alg`
//! must be RS256, PS256 or ES256 (`none` and the HMAC algorithms are never
//! accepted: a gateway holds no shared secret with the provider); the
//! unverified `iss` is compared before any key is looked up, so tokens of
//! other issuers never trigger a key fetch; then the signature with the
//! provider's key for the `kid`, and `iss`, `aud`, `exp` and `nbf` with the
//! configured clock skew.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::keys::{KeySource, Lookup};
use crate::gateway::config::{valid_name, OidcConfig};

/// Why a token was refused; each has a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Algorithm,
    Issuer,
    UnknownKey,
    Signature,
    Expired,
    NotYetValid,
    Audience,
    /// `exp` (or the user claim) missing, or a claim of the wrong type.
    Claims,
    /// The user claim is not a usable user name (or an unverified e-mail).
    User,
    /// The provider's keys cannot be fetched: not the caller's fault.
    Unavailable,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Malformed => "TOKEN_MALFORMED",
            Refusal::Algorithm => "TOKEN_ALGORITHM",
            Refusal::Issuer => "TOKEN_ISSUER",
            Refusal::UnknownKey => "TOKEN_UNKNOWN_KEY",
            Refusal::Signature => "TOKEN_SIGNATURE",
            Refusal::Expired => "TOKEN_EXPIRED",
            Refusal::NotYetValid => "TOKEN_NOT_YET_VALID",
            Refusal::Audience => "TOKEN_AUDIENCE",
            Refusal::Claims => "TOKEN_CLAIMS",
            Refusal::User => "TOKEN_USER",
            Refusal::Unavailable => "IDP_UNAVAILABLE",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Malformed => "the bearer token is not a well-formed JWT",
            Refusal::Algorithm => "the token's algorithm is not accepted (RS256, PS256 or ES256)",
            Refusal::Issuer => "the token comes from another issuer",
            Refusal::UnknownKey => "the token is signed with a key the provider does not publish",
            Refusal::Signature => "the token's signature does not verify",
            Refusal::Expired => "the token has expired",
            Refusal::NotYetValid => "the token is not valid yet",
            Refusal::Audience => "the token is meant for another audience",
            Refusal::Claims => "the token lacks a required claim, or has one of the wrong type",
            Refusal::User => "the token's user claim is not a usable user name",
            Refusal::Unavailable => "the OpenID provider's keys cannot be fetched now; try again",
        }
    }
}

/// The parts of the header that are read before the signature is checked.
#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    /// Extensions the token says must be understood (RFC 7515 §4.1.11):
    /// this gateway understands none.
    crit: Option<Value>,
}

fn part(token: &str, i: usize) -> Result<Vec<u8>, Refusal> {
    let p = token.split('.').nth(i).ok_or(Refusal::Malformed)?;
    B64URL.decode(p).map_err(|_| Refusal::Malformed)
}

/// The algorithms accepted, by the names a header uses.
fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "PS256" => Some(Algorithm::PS256),
        "ES256" => Some(Algorithm::ES256),
        _ => None,
    }
}

/// Checks `token`; the user it names.
pub async fn verify(config: &OidcConfig, keys: &KeySource, token: &str) -> Result<String, Refusal> {
    if token.split('.').count() != 3 {
        return Err(Refusal::Malformed);
    }
    let header: Header = serde_json::from_slice(&part(token, 0)?).map_err(|_| Refusal::Malformed)?;
    if header.crit.is_some() {
        return Err(Refusal::Malformed);
    }
    let alg = algorithm(&header.alg).ok_or(Refusal::Algorithm)?;
    let unverified: Value = serde_json::from_slice(&part(token, 1)?).map_err(|_| Refusal::Malformed)?;
    if unverified.get("iss").and_then(Value::as_str) != Some(config.issuer.as_str()) {
        return Err(Refusal::Issuer);
    }
    let key = keys.find(header.kid.as_deref(), alg).await.map_err(|l| match l {
        Lookup::Unknown => Refusal::UnknownKey,
        Lookup::Unavailable => Refusal::Unavailable,
    })?;
    let claims = jsonwebtoken::decode::<Value>(token, &key.key, &validation(config, alg)).map_err(|e| refusal(e.kind()))?.claims;
    user(config, &claims)
}

fn validation(config: &OidcConfig, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = config.clock_skew_seconds;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.set_issuer(&[&config.issuer]);
    v.set_audience(&[&config.audience]);
    v.required_spec_claims = HashSet::from(["exp".to_owned(), "iss".to_owned(), "aud".to_owned()]);
    v
}

fn refusal(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::InvalidSignature => Refusal::Signature,
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::ImmatureSignature => Refusal::NotYetValid,
        ErrorKind::InvalidIssuer => Refusal::Issuer,
        ErrorKind::InvalidAudience => Refusal::Audience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => Refusal::Algorithm,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => Refusal::Claims,
        _ => Refusal::Malformed,
    }
}

/// The user the verified claims name. An e-mail address names a user only
/// when the provider says it verified it (OpenID Connect Core §5.7).
fn user(config: &OidcConfig, claims: &Value) -> Result<String, Refusal> {
    let name = claims.get(&config.user_claim).and_then(Value::as_str).ok_or(Refusal::Claims)?;
    if config.user_claim == "email" && claims.get("email_verified") != Some(&Value::Bool(true)) {
        return Err(Refusal::User);
    }
    if !valid_name(name) {
        return Err(Refusal::User);
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(claim: &str) -> OidcConfig {
        let mut c: OidcConfig = toml::from_str("issuer = \"https://idp.example\"\naudience = \"files\"").unwrap();
        c.user_claim = claim.into();
        c
    }

    #[test]
    fn the_user_claim_names_a_safe_user() {
        assert_eq!(user(&config("sub"), &json!({ "sub": "alice" })), Ok("alice".into()));
        assert_eq!(user(&config("sub"), &json!({ "sub": "auth0|5f7c" })), Err(Refusal::User));
        assert_eq!(user(&config("sub"), &json!({ "sub": 42 })), Err(Refusal::Claims));
        assert_eq!(user(&config("preferred_username"), &json!({ "sub": "x" })), Err(Refusal::Claims));
        let email = config("email");
        assert_eq!(user(&email, &json!({ "email": "a@example.com", "email_verified": true })), Ok("a@example.com".into()));
        assert_eq!(user(&email, &json!({ "email": "a@example.com", "email_verified": false })), Err(Refusal::User));
        assert_eq!(user(&email, &json!({ "email": "a@example.com" })), Err(Refusal::User));
    }

    #[test]
    fn only_asymmetric_algorithms_are_named() {
        for ok in ["RS256", "PS256", "ES256"] {
            assert!(algorithm(ok).is_some());
        }
        for bad in ["none", "None", "HS256", "HS512", "RS384", "ES384", "EdDSA", ""] {
            assert!(algorithm(bad).is_none(), "{bad}");
        }
    }

    #[tokio::test]
    async fn refusals_before_any_key_is_fetched() {
        // An unreachable provider: none of these may need it.
        let keys = KeySource::new("https://idp.example", std::time::Duration::from_secs(1), std::time::Duration::from_secs(1)).unwrap();
        let c = config("sub");
        let jwt = |h: Value, p: Value| format!("{}.{}.c2ln", B64URL.encode(h.to_string()), B64URL.encode(p.to_string()));
        let good = json!({ "iss": "https://idp.example", "aud": "files", "sub": "alice", "exp": 4_000_000_000u64 });
        let cases = [
            ("not.a-jwt".to_owned(), Refusal::Malformed),
            ("a.b.c.d".to_owned(), Refusal::Malformed),
            (jwt(json!({ "alg": "none" }), good.clone()), Refusal::Algorithm),
            (jwt(json!({ "alg": "HS256", "kid": "k" }), good.clone()), Refusal::Algorithm),
            (jwt(json!({ "alg": "RS256", "crit": ["exp"] }), good.clone()), Refusal::Malformed),
            (jwt(json!({ "alg": "RS256" }), json!({ "iss": "https://other.example", "aud": "files" })), Refusal::Issuer),
            (jwt(json!({ "alg": "RS256" }), json!({ "aud": "files" })), Refusal::Issuer),
            (format!("{}.!!.x", B64URL.encode(json!({ "alg": "RS256" }).to_string())), Refusal::Malformed),
        ];
        for (token, want) in cases {
            assert_eq!(verify(&c, &keys, &token).await, Err(want), "{token}");
        }
    }
}
