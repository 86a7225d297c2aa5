//! Who may call `kms-envelope local-kms`: requests signed with AWS
//! Signature Version 4 under the access key the server generated into its
//! data directory (`DATA_DIR/kms/credentials`, mode 0600, in the AWS shared
//! credentials format), so the AWS SDKs and CLI work unchanged with
//! `AWS_SHARED_CREDENTIALS_FILE` pointing at it, and another local account,
//! which cannot read that file, gets nothing.
//!
//! Verification rebuilds the canonical request from what was received
//! (method, path, query, the signed headers, the SHA-256 of the body),
//! derives the signing key with `aws-sigv4` and compares the signatures in
//! constant time. Signatures older or newer than 5 minutes are refused.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::http::{header, HeaderMap, Method, Uri};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::Fault;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "kms";
const MAX_SKEW: Duration = Duration::from_secs(300);

/// The local KMS's one access key.
pub struct Credentials {
    access_key_id: String,
    secret: Zeroizing<String>,
}

fn random_chars(n: usize, alphabet: &[u8]) -> Result<String, String> {
    let mut raw = Zeroizing::new(vec![0u8; n]);
    SystemRandom::new().fill(&mut raw).map_err(|_| "no randomness".to_string())?;
    // 256 is a multiple of neither alphabet size: the bias (under 1%) costs
    // a fraction of a bit of a 200-bit secret.
    Ok(raw.iter().map(|b| alphabet[*b as usize % alphabet.len()] as char).collect())
}

impl Credentials {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("kms").join("credentials")
    }

    /// Reads the credentials file, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Credentials, String> {
        let path = Self::path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                crate::private_fs::tighten_if_present(&path, crate::private_fs::FILE_MODE)?;
                Self::parse(&text).ok_or_else(|| format!("{}: no aws_access_key_id and aws_secret_access_key under [default]", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let c = Credentials {
                    access_key_id: format!("LKIA{}", random_chars(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")?),
                    secret: Zeroizing::new(random_chars(40, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")?),
                };
                let text = Zeroizing::new(format!(
                    "# kms-envelope local KMS: the only credentials it accepts.\n[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                    c.access_key_id, *c.secret
                ));
                crate::localkms::write_atomic(&path, text.as_bytes(), crate::private_fs::FILE_MODE).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                Ok(c)
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    fn parse(text: &str) -> Option<Credentials> {
        let (mut id, mut secret, mut section) = (None, None, String::new());
        for line in text.lines().map(str::trim) {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.trim().to_owned();
            } else if let (Some((k, v)), "default") = (line.split_once('='), section.as_str()) {
                match k.trim() {
                    "aws_access_key_id" => id = Some(v.trim().to_owned()),
                    "aws_secret_access_key" => secret = Some(Zeroizing::new(v.trim().to_owned())),
                    _ => {}
                }
            }
        }
        Some(Credentials { access_key_id: id.filter(|i| !i.is_empty())?, secret: secret.filter(|s| !s.is_empty())? })
    }
}

/// The `Host` names a loopback address: `localhost`, `127.x.y.z` or
/// `[::1]`, with or without a port.
pub fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else { return false };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map(|(n, _)| n).unwrap_or(""),
        None => host.rsplit_once(':').map(|(n, _)| n).unwrap_or(host),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn refuse(name: &'static str, message: &str) -> Fault {
    Fault { name, message: message.to_owned(), status: 400 }
}

/// `YYYYMMDD'T'HHMMSS'Z'` as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' || !s[..8].bytes().chain(s[9..15].bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().ok();
    let (y, m, d, hh, mm, ss) = (n(0..4)?, n(4..6)?, n(6..8)?, n(9..11)?, n(11..13)?, n(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), 1970-01-01 = 0.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs).ok().map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// Header values as SigV4 canonicalizes them: trimmed, inner runs of
/// spaces collapsed, repeated headers joined with commas.
fn canonical_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect::<Result<_, _>>()
        .ok()?;
    (!values.is_empty()).then(|| values.join(","))
}

/// Checks a request's SigV4 signature against `creds` for `region`.
pub fn verify(creds: &Credentials, region: &str, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8], now: SystemTime) -> Result<(), Fault> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refuse("MissingAuthenticationTokenException", "Request is missing Authentication Token"))?;
    let fields = auth.strip_prefix(ALGORITHM).map(str::trim).ok_or_else(|| refuse("IncompleteSignatureException", "only AWS4-HMAC-SHA256 is accepted"))?;
    let field = |k: &str| fields.split(',').map(str::trim).find_map(|f| f.strip_prefix(k)?.strip_prefix('='));
    let incomplete = || refuse("IncompleteSignatureException", "Authorization needs Credential, SignedHeaders and Signature");
    let (credential, signed, signature) = (field("Credential").ok_or_else(incomplete)?, field("SignedHeaders").ok_or_else(incomplete)?, field("Signature").ok_or_else(incomplete)?);
    let mut scope = credential.split('/');
    let (key_id, date, req_region, service, terminator) = (scope.next(), scope.next(), scope.next(), scope.next(), scope.next());
    if key_id.map(|k| bool::from(k.as_bytes().ct_eq(creds.access_key_id.as_bytes()))) != Some(true) {
        return Err(refuse("UnrecognizedClientException", "The security token included in the request is invalid."));
    }
    if req_region != Some(region) || service != Some(SERVICE) || terminator != Some("aws4_request") || scope.next().is_some() {
        return Err(refuse("InvalidSignatureException", &format!("Credential should be scoped to {region}/{SERVICE}/aws4_request")));
    }
    let amz_date = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or_else(|| refuse("IncompleteSignatureException", "X-Amz-Date is required"))?;
    let at = parse_amz_date(amz_date).ok_or_else(|| refuse("IncompleteSignatureException", "X-Amz-Date is not YYYYMMDD'T'HHMMSS'Z'"))?;
    let skew = now.duration_since(at).or_else(|e| Ok::<_, ()>(e.duration())).unwrap_or_default();
    if skew > MAX_SKEW || date != Some(&amz_date[..8]) {
        return Err(refuse("InvalidSignatureException", "Signature expired or not yet valid"));
    }
    let names: Vec<&str> = signed.split(';').collect();
    let sorted = names.windows(2).all(|w| w[0] < w[1]) && names.iter().all(|n| !n.is_empty() && *n == n.to_ascii_lowercase());
    if !sorted || !names.contains(&"host") || !names.contains(&"x-amz-date") {
        return Err(refuse("InvalidSignatureException", "SignedHeaders must be sorted lowercase names including host and x-amz-date"));
    }
    let body_hash = hex::encode(Sha256::digest(body));
    if let Some(claimed) = headers.get("x-amz-content-sha256") {
        if claimed.as_bytes() != body_hash.as_bytes() {
            return Err(refuse("InvalidSignatureException", "x-amz-content-sha256 does not match the body"));
        }
    }
    // The JSON protocol posts to `/` with no query: anything else is not a
    // request of an AWS SDK, and is refused rather than canonicalized.
    if uri.path() != "/" || uri.query().is_some_and(|q| !q.is_empty()) {
        return Err(refuse("InvalidSignatureException", "the KMS API is served at / without a query"));
    }
    let mut canonical = format!("{method}\n/\n\n");
    for n in &names {
        let v = canonical_value(headers, n).ok_or_else(|| refuse("InvalidSignatureException", "a signed header is missing"))?;
        canonical.push_str(&format!("{n}:{v}\n"));
    }
    canonical.push_str(&format!("\n{signed}\n{body_hash}"));
    let scope = format!("{}/{region}/{SERVICE}/aws4_request", &amz_date[..8]);
    let to_sign = format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let key = aws_sigv4::sign::v4::generate_signing_key(&creds.secret, at, region, SERVICE);
    let want = aws_sigv4::sign::v4::calculate_signature(key, to_sign.as_bytes());
    if bool::from(want.as_bytes().ct_eq(signature.as_bytes())) {
        Ok(())
    } else {
        Err(refuse("InvalidSignatureException", "The request signature we calculated does not match the signature you provided."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_parse_to_unix_time() {
        let t = |s| parse_amz_date(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
        assert_eq!(t("19700101T000000Z"), Some(0));
        assert_eq!(t("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(t("20240229T235959Z"), Some(1_709_251_199));
        for bad in ["20150830T123600", "2015083OT123600Z", "20151330T123600Z", "20150830 123600Z", ""] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn loopback_hosts_only() {
        let ok = |h: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, h.parse().unwrap());
            loopback_host(&m)
        };
        for h in ["127.0.0.1:4000", "127.0.0.1", "localhost:9", "LOCALHOST", "[::1]:80", "127.8.9.1:1"] {
            assert!(ok(h), "{h}");
        }
        for h in ["evil.example:4000", "localhost.evil.example", "10.0.0.1:4000", "[::2]:80", "0.0.0.0:1", "127.0.0.1.evil.example"] {
            assert!(!ok(h), "{h}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn credentials_file_round_trips_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("kms")).unwrap();
        let a = Credentials::load_or_create(d.path()).unwrap();
        let b = Credentials::load_or_create(d.path()).unwrap();
        assert_eq!(a.access_key_id, b.access_key_id);
        assert_eq!(*a.secret, *b.secret);
        assert_eq!(a.secret.len(), 40);
        let mode = std::fs::metadata(Credentials::path(d.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(Credentials::parse("[other]\naws_access_key_id = a\naws_secret_access_key = b\n").is_none());
    }
}
