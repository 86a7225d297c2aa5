//! The provider's signing keys: its discovery document names the `jwks_uri`
//! (OpenID Connect Discovery 1.0 §3, whose `issuer` must equal the
//! configured one, §4.3), and the key set is kept in memory.
//!
//! The set is fetched on first use and again when it is older than
//! `jwks_max_age_seconds`, or when a token names a `kid` it lacks (a
//! provider that rotated its keys) — but at most once per
//! `jwks_refresh_seconds`, so tokens with made-up `kid`s cannot make the
//! gateway hammer the provider. One fetch runs at a time; requests that
//! need it wait for it. A failed fetch keeps the keys already known.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// Largest discovery document or key set read, in bytes.
const DOCUMENT_MAX: usize = 1 << 20;
/// Time limit of one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A verification key from the provider's set.
pub struct Key {
    /// The algorithm the key is published for, if the JWK says.
    alg: Option<Algorithm>,
    kind: KeyKind,
    pub key: DecodingKey,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
}

impl Key {
    /// Whether a token signed with `alg` may be checked with this key: the
    /// key's type fits the algorithm, and its own `alg`, if any, is `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        let kind = match alg {
            Algorithm::RS256 | Algorithm::PS256 => KeyKind::Rsa,
            Algorithm::ES256 => KeyKind::P256,
            _ => return false,
        };
        self.kind == kind && self.alg.is_none_or(|a| a == alg)
    }
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    /// Keys published without a `kid`.
    anonymous: Vec<Arc<Key>>,
}

impl KeySet {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).filter(|k| k.fits(alg)).cloned(),
            // No kid: only when exactly one key can be meant.
            None => {
                let mut fitting = self.by_kid.values().chain(&self.anonymous).filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Some(k.clone()),
                    _ => None,
                }
            }
        }
    }
}

/// Why no key was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The provider does not publish it.
    Unknown,
    /// The provider could not be asked (no key is known yet, or the fetch
    /// for this kid failed).
    Unavailable,
}

/// The key set last fetched, and when.
#[derive(Clone)]
struct Loaded {
    set: Arc<KeySet>,
    at: Instant,
}

pub struct KeySource {
    http: reqwest::Client,
    issuer: String,
    refresh_every: Duration,
    max_age: Duration,
    loaded: RwLock<Option<Loaded>>,
    /// Held while fetching: when the last fetch was attempted.
    attempted: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

impl KeySource {
    pub fn new(issuer: &str, refresh_every: Duration, max_age: Duration) -> Result<KeySource, String> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kms-envelope/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("oidc: cannot make an HTTP client: {e}"))?;
        Ok(KeySource {
            http,
            issuer: issuer.to_owned(),
            refresh_every,
            max_age,
            loaded: RwLock::new(None),
            attempted: tokio::sync::Mutex::new(None),
        })
    }

    fn loaded(&self) -> Option<Loaded> {
        self.loaded.read().expect("key set lock").clone()
    }

    /// The key, if the set is fresh enough to be believed.
    fn fresh(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
        self.loaded().filter(|l| l.at.elapsed() < self.max_age).and_then(|l| l.set.find(kid, alg))
    }

    /// The key for a token's `kid` and `alg`.
    pub async fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<Key>, Lookup> {
        if let Some(k) = self.fresh(kid, alg) {
            return Ok(k);
        }
        let mut attempted = self.attempted.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(k) = self.fresh(kid, alg) {
            return Ok(k);
        }
        let mut failed = false;
        if attempted.is_none_or(|t| t.elapsed() >= self.refresh_every) {
            *attempted = Some(Instant::now());
            match self.fetch().await {
                Ok(set) => *self.loaded.write().expect("key set lock") = Some(Loaded { set: Arc::new(set), at: Instant::now() }),
                Err(e) => {
                    failed = true;
                    tracing::warn!(issuer = %self.issuer, error = %e, "cannot fetch the OpenID provider's keys");
                }
            }
        }
        drop(attempted);
        // A stale set still serves when the provider cannot be reached; a
        // kid it lacks then may be one the provider has since published.
        let loaded = self.loaded();
        match loaded.as_ref().and_then(|l| l.set.find(kid, alg)) {
            Some(k) => Ok(k),
            None if failed || loaded.is_none() => Err(Lookup::Unavailable),
            None => Err(Lookup::Unknown),
        }
    }

    /// The discovery document, then the key set it names.
    async fn fetch(&self) -> Result<KeySet, String> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
        let d: Discovery = serde_json::from_slice(&self.get(&url).await?).map_err(|e| format!("{url}: {e}"))?;
        if d.issuer != self.issuer {
            return Err(format!("{url} names the issuer {:?}, not the configured {:?}", d.issuer, self.issuer));
        }
        if !crate::gateway::config::secure_url(&d.jwks_uri) {
            return Err(format!("jwks_uri {:?} is not https", d.jwks_uri));
        }
        let doc: JwksDocument = serde_json::from_slice(&self.get(&d.jwks_uri).await?).map_err(|e| format!("{}: {e}", d.jwks_uri))?;
        let set = key_set(doc.keys);
        tracing::info!(issuer = %self.issuer, keys = set.by_kid.len() + set.anonymous.len(), "fetched the OpenID provider's keys");
        Ok(set)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut r = self.http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("{url}: HTTP {}", r.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > DOCUMENT_MAX {
                return Err(format!("{url}: larger than {DOCUMENT_MAX} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The usable signing keys of a JWKS: RSA and P-256 keys not marked for
/// encryption only. Keys of other types, or that do not parse, are skipped
/// (a provider may publish keys this gateway has no use for).
fn key_set(keys: Vec<serde_json::Value>) -> KeySet {
    let mut set = KeySet::default();
    for v in keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(v) else { continue };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyKind::Rsa,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => KeyKind::P256,
            _ => continue,
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
            Some(KeyAlgorithm::PS256) => Some(Algorithm::PS256),
            Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
            // Published for an algorithm tokens here may not use.
            Some(_) => continue,
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
        let key = Arc::new(Key { alg, kind, key });
        match jwk.common.key_id {
            Some(kid) => {
                set.by_kid.insert(kid, key);
            }
            None => set.anonymous.push(key),
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    fn rsa(kid: &str, alg: Option<&str>) -> serde_json::Value {
        let mut k = json!({ "kty": "RSA", "kid": kid, "use": "sig", "n": N, "e": "AQAB" });
        if let Some(a) = alg {
            k["alg"] = json!(a);
        }
        k
    }

    #[test]
    fn keys_fit_only_their_algorithm_and_type() {
        let set = key_set(vec![
            rsa("any-rsa", None),
            rsa("ps", Some("PS256")),
            rsa("hs", Some("HS256")),
            json!({ "kty": "RSA", "kid": "enc", "use": "enc", "n": N, "e": "AQAB" }),
            json!({ "kty": "oct", "kid": "secret", "k": "c2VjcmV0" }),
            json!({ "kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" }),
            json!({ "kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB" }),
        ]);
        let found = |kid, alg| set.find(Some(kid), alg).is_some();
        assert!(found("any-rsa", Algorithm::RS256) && found("any-rsa", Algorithm::PS256));
        assert!(!found("any-rsa", Algorithm::ES256), "an RSA key never checks ES256");
        assert!(found("ps", Algorithm::PS256) && !found("ps", Algorithm::RS256), "a key's own alg binds it");
        for skipped in ["hs", "enc", "secret", "ed", "broken"] {
            assert!(!set.by_kid.contains_key(skipped), "{skipped} kept");
        }
        // Without a kid: the one key that fits, else none.
        assert!(set.find(None, Algorithm::RS256).is_some(), "any-rsa is the only RS256 key");
        let two = key_set(vec![rsa("a", None), rsa("b", None)]);
        assert!(two.find(None, Algorithm::RS256).is_none(), "two candidates: no guess");
    }
}
