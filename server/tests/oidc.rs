//! OpenID Connect bearer tokens against a real OpenID provider
//! (`oidc-provider`, started on loopback by `tests/oidc/provider.mjs`):
//! its tokens of each allowed algorithm are accepted, every other kind of
//! token is refused with a 401 and a stable code, key rotation is followed,
//! and nothing of a token reaches the log.

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use common::*;
use serde_json::{json, Value};

const AUDIENCE: &str = "https://files.test";

/// The test provider: two issuers, each with its own keys.
struct Idp {
    _helper: Helper,
    issuers: Vec<String>,
}

fn idp() -> Idp {
    let mut cmd = Command::new("node");
    cmd.arg(root().join("tests/oidc/provider.mjs")).args(["--issuers", "2"]);
    let helper = spawn(cmd);
    let issuers = helper.words[1..].to_vec();
    Idp { _helper: helper, issuers }
}

impl Idp {
    /// Tokens from the authorization code flow: (access token, ID token).
    fn tokens(&self, issuer: usize, user: &str, client: &str) -> (String, String) {
        let (s, v) = status(ureq::get(&format!("{}/test/token?user={user}&client={client}", self.issuers[issuer])).call());
        assert_eq!(s, 200, "{v}");
        (v["access_token"].as_str().unwrap().to_owned(), v["id_token"].as_str().unwrap().to_owned())
    }

    fn sign(&self, header: Value, claims: Value, key: &str) -> String {
        let (s, v) = status(ureq::post(&format!("{}/test/sign", self.issuers[0])).send_json(json!({ "header": header, "claims": claims, "key": key })));
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    fn jwks_requests(&self) -> u64 {
        status(ureq::get(&format!("{}/test/stats", self.issuers[0])).call()).1["jwksRequests"].as_u64().unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn oidc_lines(issuer: &str, audience: &str, extra: &str) -> String {
    format!("auth_failure_burst = 1000\n[oidc]\nissuer = \"{issuer}\"\naudience = \"{audience}\"\nclock_skew_seconds = 5\njwks_refresh_seconds = 1\n{extra}")
}

fn bearer(gw: &Gw, token: &str, path: &str) -> (u16, Value) {
    status(ureq::get(&format!("{}{path}", gw.url)).set("authorization", &format!("Bearer {token}")).call())
}

fn upload_as(gw: &Gw, token: &str, blob: &[u8]) -> (u16, Value) {
    status(ureq::post(&format!("{}/v1/objects", gw.url)).set("authorization", &format!("Bearer {token}")).send_bytes(blob))
}

/// A token's header and payload with its signature cut off, and the
/// signature: what must never be logged.
fn pieces(token: &str) -> Vec<String> {
    token.split('.').filter(|p| p.len() > 16).map(str::to_owned).collect()
}

#[test]
#[ignore = "needs node and tests/oidc/node_modules (scripts/setup.sh node)"]
fn provider_tokens_are_verified_and_every_bad_kind_refused() {
    let idp = idp();
    let iss = &idp.issuers[0];
    let d = tempfile::tempdir().unwrap();
    setup_with(d.path(), 1 << 20, &oidc_lines(iss, AUDIENCE, ""));
    let gw = start_logged(d.path());
    let sealer = Sealer::new(&gw);
    let mut seen = Vec::new();

    // A real access token of each allowed algorithm: the user is the token's `sub`.
    for (i, (user, client)) in [("alice", "rs256"), ("bob", "ps256"), ("carol", "es256")].into_iter().enumerate() {
        let (access, _) = idp.tokens(0, user, client);
        let header: Value = serde_json::from_slice(&B64URL.decode(access.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], client.to_uppercase(), "{header}");
        let (s, v) = upload_as(&gw, &access, &sealer.seal(user, &format!("oidc-{i}"), b"signed in"));
        assert_eq!(s, 201, "{client}: {v}");
        let (s, v) = bearer(&gw, &access, "/v1/objects");
        assert_eq!((s, v["objects"][0]["owner"].as_str()), (200, Some(user)), "{v}");
        seen.extend(pieces(&access));
    }
    // Static tokens go on working beside them.
    assert_eq!(gw.get_json("alice", "/v1/objects").0, 200);

    let good = |extra: Value| {
        let mut c = json!({ "iss": iss, "aud": AUDIENCE, "sub": "alice", "iat": now(), "exp": now() + 300 });
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        c
    };
    let crafted = idp.sign(json!({}), good(json!({})), "RS256");
    assert_eq!(bearer(&gw, &crafted, "/v1/objects").0, 200, "a token signed with the provider's key is its token");
    let (real, id_token) = idp.tokens(0, "alice", "rs256");
    let (foreign, _) = idp.tokens(1, "alice", "rs256");
    let mut tampered: Vec<String> = real.split('.').map(str::to_owned).collect();
    let mut claims: Value = serde_json::from_slice(&B64URL.decode(&tampered[1]).unwrap()).unwrap();
    claims["sub"] = json!("bob");
    tampered[1] = B64URL.encode(claims.to_string());
    let unsigned = format!("{}.{}.", B64URL.encode(r#"{"alg":"none","typ":"JWT"}"#), B64URL.encode(good(json!({})).to_string()));
    let mut no_exp = good(json!({}));
    no_exp.as_object_mut().unwrap().remove("exp");
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", idp.sign(json!({}), good(json!({ "exp": now() - 60 })), "RS256"), "TOKEN_EXPIRED"),
        ("not yet valid", idp.sign(json!({}), good(json!({ "nbf": now() + 600 })), "ES256"), "TOKEN_NOT_YET_VALID"),
        ("wrong issuer", idp.sign(json!({}), good(json!({ "iss": "http://127.0.0.1:9" })), "RS256"), "TOKEN_ISSUER"),
        ("wrong audience", idp.sign(json!({}), good(json!({ "aud": "https://other.test" })), "PS256"), "TOKEN_AUDIENCE"),
        ("an ID token (audience: the client)", id_token, "TOKEN_AUDIENCE"),
        ("no exp", idp.sign(json!({}), no_exp, "RS256"), "TOKEN_CLAIMS"),
        ("alg none", unsigned, "TOKEN_ALGORITHM"),
        ("HS256 keyed with the public key", idp.sign(json!({}), good(json!({})), "hs256-public"), "TOKEN_ALGORITHM"),
        ("a second issuer's token", foreign, "TOKEN_ISSUER"),
        ("tampered payload", tampered.join("."), "TOKEN_SIGNATURE"),
        ("a user claim that names no user", idp.sign(json!({}), good(json!({ "sub": "../etc" })), "RS256"), "TOKEN_USER"),
    ];
    for (what, token, code) in &cases {
        let (s, v) = bearer(&gw, token, "/v1/objects");
        assert_eq!((s, v["error"].as_str()), (401, Some(*code)), "{what}: {v}");
        seen.extend(pieces(token));
    }

    // An unknown kid refetches the keys, at most once per jwks_refresh_seconds.
    std::thread::sleep(Duration::from_millis(1100));
    let before = idp.jwks_requests();
    let ghost = idp.sign(json!({}), good(json!({})), "ghost");
    for _ in 0..3 {
        let (s, v) = bearer(&gw, &ghost, "/v1/objects");
        assert_eq!((s, v["error"].as_str()), (401, Some("TOKEN_UNKNOWN_KEY")), "{v}");
    }
    assert_eq!(idp.jwks_requests(), before + 1, "one fetch for three tokens with an unknown kid");
    // A token signed with the key the provider publishes next: unknown now,
    // accepted once the provider rotates and the gateway refetches.
    let early = idp.sign(json!({}), good(json!({ "sub": "bob" })), "next-RS256");
    let (s, v) = bearer(&gw, &early, "/v1/objects");
    assert_eq!((s, v["error"].as_str()), (401, Some("TOKEN_UNKNOWN_KEY")), "{v}");
    let (s, rotation) = status(ureq::post(&format!("{iss}/test/rotate")).call());
    assert_eq!(s, 200, "{rotation}");
    std::thread::sleep(Duration::from_millis(1100));
    let fetched = idp.jwks_requests();
    let (s, v) = bearer(&gw, &early, "/v1/objects");
    assert_eq!(s, 200, "after rotation: {v}");
    assert_eq!(idp.jwks_requests(), fetched + 1, "one fetch finds the rotated key");
    // The provider's own tokens are now signed with the new key, and pass.
    let (rotated, _) = idp.tokens(0, "bob", "rs256");
    let header: Value = serde_json::from_slice(&B64URL.decode(rotated.split('.').next().unwrap()).unwrap()).unwrap();
    assert!(rotation["kids"].as_array().unwrap().contains(&header["kid"]), "signed with a new key: {header}");
    assert_eq!(bearer(&gw, &rotated, "/v1/objects").0, 200);
    assert_eq!(bearer(&gw, &real, "/v1/objects").0, 200, "the old key is still published: its tokens still pass");
    seen.extend([&rotated, &early, &ghost].into_iter().flat_map(|t| pieces(t)));

    // The log says why, never what.
    drop(gw);
    let log = std::fs::read_to_string(d.path().join("gateway.log")).unwrap();
    for (what, _, code) in &cases {
        assert!(log.contains(&format!("reason=\"{code}\"")) || log.contains(&format!("reason={code}")), "{what}: no {code} in the log");
    }
    for p in &seen {
        assert!(!log.contains(p.as_str()), "a piece of a token is in the log");
    }
}

#[test]
#[ignore = "needs node and tests/oidc/node_modules (scripts/setup.sh node)"]
fn a_provider_token_opens_a_session_and_provider_users_share() {
    let idp = idp();
    let iss = &idp.issuers[0];
    let d = tempfile::tempdir().unwrap();
    // ID tokens of the web app's client, users named by their verified e-mail address.
    setup_with(d.path(), 1 << 20, &oidc_lines(iss, "web", "user_claim = \"email\"\nclient_id = \"web\"\nweb_token = \"id_token\"\ndisplay_name = \"Test SSO\"\n"));
    let gw = start(d.path());

    let (s, v) = status(ureq::get(&format!("{}/v1/oidc", gw.url)).call());
    assert_eq!(s, 200);
    assert_eq!(v, json!({ "issuer": iss, "clientId": "web", "scope": "openid", "authorizationParams": {}, "token": "id_token", "name": "Test SSO" }));

    let (_, alice) = idp.tokens(0, "alice", "web");
    let (_, bob) = idp.tokens(0, "bob", "web");
    // Trading the token for a session: only from the web app's origin.
    let login = |token: &str, origin: Option<&str>| {
        let mut r = ureq::post(&format!("{}/v1/login/oidc", gw.url)).set("authorization", &format!("Bearer {token}"));
        if let Some(o) = origin {
            r = r.set("origin", o);
        }
        r
    };
    assert_eq!(status(login(&alice, Some("https://evil.example")).call()).0, 403);
    let r = login(&alice, Some(&gw.url)).call().unwrap();
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let v: Value = r.into_json().unwrap();
    assert_eq!(v["user"], "alice@example.com");
    let (s, v) = status(ureq::get(&format!("{}/v1/session", gw.url)).set("cookie", &cookie).call());
    assert_eq!((s, v["user"].as_str()), (200, Some("alice@example.com")));
    let (s, v) = status(ureq::post(&format!("{}/v1/login/oidc", gw.url)).set("authorization", &token("alice")).call());
    assert_eq!((s, v["error"].as_str()), (401, Some("UNAUTHENTICATED")), "a static token buys no session here");

    // A provider user shares with another provider user, who is in no configuration.
    let sealer = Sealer::new(&gw);
    let blob = sealer.seal("alice@example.com", "shared-1", b"for bob");
    assert_eq!(upload_as(&gw, &alice, &blob).0, 201);
    let share = |user: &str| status(ureq::post(&format!("{}/v1/objects/shared-1/shares", gw.url)).set("authorization", &format!("Bearer {alice}")).send_json(json!({ "user": user })));
    assert_eq!(share("bob@example.com").0, 200);
    assert_eq!(share("not a name!").0, 400);
    let (s, v) = bearer(&gw, &bob, "/v1/objects");
    assert_eq!((s, v["objects"][0]["owner"].as_str()), (200, Some("alice@example.com")), "{v}");
    let (s, v) = status(ureq::post(&format!("{}/v1/decrypt-data-key", gw.url)).set("authorization", &format!("Bearer {bob}")).send_json(request_for(&blob)));
    assert_eq!(s, 200, "{v}");
    let (_, carol) = idp.tokens(0, "carol", "web");
    let (s, _) = status(ureq::post(&format!("{}/v1/decrypt-data-key", gw.url)).set("authorization", &format!("Bearer {carol}")).send_json(request_for(&blob)));
    assert_eq!(s, 403, "not shared with carol");
}

#[test]
fn an_unreachable_provider_is_a_503_not_a_401() {
    let d = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 of loopback.
    let iss = "http://127.0.0.1:9";
    setup_with(d.path(), 1 << 20, &oidc_lines(iss, AUDIENCE, ""));
    let gw = start(d.path());
    let token = format!("{}.{}.c2ln", B64URL.encode(r#"{"alg":"RS256","kid":"k1"}"#), B64URL.encode(json!({ "iss": iss, "aud": AUDIENCE, "sub": "alice", "exp": now() + 60 }).to_string()));
    let r = ureq::get(&format!("{}/v1/objects", gw.url)).set("authorization", &format!("Bearer {token}")).call();
    let Err(ureq::Error::Status(503, r)) = r else { panic!("want 503") };
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.into_json::<Value>().unwrap()["error"], "IDP_UNAVAILABLE");
    assert_eq!(gw.get_json("alice", "/v1/objects").0, 200, "static tokens do not need the provider");
    let (s, v) = status(ureq::get(&format!("{}/v1/oidc", gw.url)).call());
    assert_eq!((s, v["error"].as_str()), (404, Some("OIDC_NOT_CONFIGURED")), "no client_id: no web sign-in");
}
