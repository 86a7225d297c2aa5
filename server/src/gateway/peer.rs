//! Who is on the other end of a request: the client's address and whether
//! the request reached the gateway over HTTPS, seen through the reverse
//! proxies the configuration trusts (`trusted_proxies`).
//!
//! A request from a trusted proxy is judged by the client address the proxy
//! appended to `X-Forwarded-For` and the scheme in `X-Forwarded-Proto`. A
//! request that carries forwarding headers from any other peer came
//! through a proxy the gateway does not know (or forged them): it is never
//! treated as local, so a proxy on this machine cannot make every client
//! look like loopback to the rules reserved for this machine.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// The client, as far as trusted proxies can tell.
    pub addr: IpAddr,
    /// Sent from this machine, with no proxy in between.
    pub local: bool,
    /// Reached the gateway over HTTPS (its own TLS, or a trusted proxy's).
    pub https: bool,
}

fn forwarded(headers: &HeaderMap) -> bool {
    ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-real-ip"].iter().any(|h| headers.contains_key(*h))
}

/// The last value of a comma-separated header (the one the nearest proxy added).
fn last_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

pub fn peer(socket: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr], tls: bool) -> Peer {
    let ip = socket.ip().to_canonical();
    if !trusted.contains(&ip) {
        let local = ip.is_loopback() && !forwarded(headers);
        return Peer { addr: ip, local, https: tls };
    }
    // From the right: the first address that is not one of our proxies is
    // the client (addresses further left were written by the client itself).
    let hops = last_values(headers, "x-forwarded-for");
    let client = hops.iter().rev().filter_map(|h| h.parse::<IpAddr>().ok().map(|a| a.to_canonical())).find(|a| !trusted.contains(a));
    let proto = last_values(headers, "x-forwarded-proto").pop();
    match client {
        Some(addr) => Peer { addr, local: false, https: tls || proto.as_deref() == Some("https") },
        // The proxy itself, or a hop we cannot read: not a local client.
        None => Peer { addr: ip, local: hops.is_empty() && ip.is_loopback(), https: tls || proto.as_deref() == Some("https") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn proxies_are_believed_only_when_trusted() {
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let far: IpAddr = "203.0.113.9".parse().unwrap();
        // No proxy: loopback is local.
        let p = peer(lo, &h(&[]), &[], false);
        assert!(p.local && !p.https);
        // An unknown proxy on this machine: the client is not local.
        let p = peer(lo, &h(&[("x-forwarded-for", "203.0.113.9")]), &[], false);
        assert!(!p.local && p.addr.is_loopback() && !p.https);
        let p = peer(lo, &h(&[("x-forwarded-proto", "https")]), &[], false);
        assert!(!p.local && !p.https, "an untrusted X-Forwarded-Proto proves nothing");
        // A trusted proxy: its client and scheme, and a forged left part ignored.
        let trusted = ["127.0.0.1".parse().unwrap()];
        let p = peer(lo, &h(&[("x-forwarded-for", "127.0.0.1, 203.0.113.9"), ("x-forwarded-proto", "https")]), &trusted, false);
        assert_eq!(p.addr, far);
        assert!(!p.local && p.https);
        let p = peer(lo, &h(&[("x-forwarded-for", "203.0.113.9, 127.0.0.1")]), &trusted, false);
        assert_eq!(p.addr, far, "our own proxy's address is skipped");
        assert!(!p.https);
        // The proxy calling for itself.
        assert!(peer(lo, &h(&[]), &trusted, false).local);
        let p = peer(lo, &h(&[("x-forwarded-for", "garbage")]), &trusted, false);
        assert!(!p.local);
        // Off the machine, TLS terminated by the gateway.
        let p = peer("198.51.100.1:1".parse().unwrap(), &h(&[]), &trusted, true);
        assert!(!p.local && p.https);
    }
}
