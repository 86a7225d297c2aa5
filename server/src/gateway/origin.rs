//! The web app's origin, as configured (`public_origin`) or, by default,
//! the loopback address the gateway listens on. Requests that change state
//! under the session cookie must come from it; the `Host` header, which a
//! client chooses, is not evidence of anything.

/// `scheme://host[:port]`, lowercase, with the scheme's default port left
/// out (as browsers send `Origin`), or `None` if it is not an origin.
pub fn parse(s: &str) -> Option<String> {
    let (scheme, rest) = s.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest).to_ascii_lowercase();
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let (h, rest) = authority.split_once(']')?;
        let port = match rest {
            "" => None,
            r => Some(r.strip_prefix(':')?),
        };
        (&authority[..h.len() + 1], port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority.as_str(), None),
        }
    };
    if host.is_empty() || (!host.starts_with('[') && host.contains(':')) || host == "[]" {
        return None;
    }
    match port {
        Some(p) if p.parse::<u16>().is_err() => None,
        Some(p) if p == default_port => Some(format!("{scheme}://{host}")),
        Some(p) => Some(format!("{scheme}://{host}:{p}")),
        None => Some(format!("{scheme}://{host}")),
    }
}

/// The origin of a URL (`https://idp.example/tenant/` → `https://idp.example`).
pub fn of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    parse(&format!("{scheme}://{authority}"))
}

/// The origins the web app may be served from: the configured one, or for
/// a loopback listener its address and `localhost` on the same port.
pub fn allowed(public_origin: Option<&str>, tls: bool, bound: std::net::SocketAddr) -> Vec<String> {
    if let Some(o) = public_origin.and_then(parse) {
        return vec![o];
    }
    if !bound.ip().is_loopback() {
        tracing::warn!("no public_origin configured: the web app's sign-in and changes are refused until it is");
        return vec![];
    }
    let scheme = if tls { "https" } else { "http" };
    let port = bound.port();
    let ip = match bound.ip() {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    [format!("{scheme}://{ip}:{port}"), format!("{scheme}://localhost:{port}")].iter().filter_map(|o| parse(o)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_normalize_and_bad_ones_are_refused() {
        assert_eq!(parse("HTTPS://Files.Example.com:443/").as_deref(), Some("https://files.example.com"));
        assert_eq!(parse("http://127.0.0.1:8080").as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(parse("http://[::1]:80").as_deref(), Some("http://[::1]"));
        for bad in ["files.example.com", "ftp://x", "https://", "https://a/b", "https://u@a", "https://a:99999", "null", "https://::1"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(of_url("https://Login.Example.com/tenant/v2.0?x#y").as_deref(), Some("https://login.example.com"));
        assert_eq!(of_url("http://127.0.0.1:9000").as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(of_url("https://u@idp.example/"), None);
        let local = allowed(None, false, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(local, ["http://127.0.0.1:4000", "http://localhost:4000"]);
        assert_eq!(allowed(Some("https://files.example.com"), true, "0.0.0.0:443".parse().unwrap()), ["https://files.example.com"]);
        assert!(allowed(None, true, "0.0.0.0:443".parse().unwrap()).is_empty());
    }
}
