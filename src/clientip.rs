//! The client address of a request: the peer, or, when the peer is a trusted proxy
//! (`TRUSTED_PROXIES`), the address the proxy reports. Per-address limits (login failures,
//! guests, pending Engine.IO sessions) key on it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use ipnet::IpNet;

use crate::state::AppState;

/// The proxies whose `X-Forwarded-For` / `X-Real-IP` are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a comma-separated list of CIDRs (a bare address is a /32 or /128).
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is not an address or a CIDR"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address: the peer, unless the peer is trusted; then the right-most address
    /// of `X-Forwarded-For` that is not itself a trusted proxy (entries to its left are
    /// whatever the client wrote), else `X-Real-IP`, else the peer.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer_ip = canonical(peer.ip());
        if !self.trusts(peer_ip) {
            return peer_ip;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().parse::<IpAddr>().ok().map(canonical))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default();
        if let Some(ip) = forwarded.iter().rev().find(|ip| !self.trusts(**ip)) {
            return *ip;
        }
        headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
            .map(canonical)
            .unwrap_or(peer_ip)
    }
}

impl TrustedProxies {
    /// The client address of a request from its parts: the peer the server loop recorded
    /// (`ConnectInfo`) and the headers.
    pub fn client_of(&self, extensions: &Extensions, headers: &HeaderMap) -> IpAddr {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
        self.client(peer, headers)
    }
}

/// The client address of a REST request, as an extractor.
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            state
                .config
                .trusted_proxies
                .client_of(&parts.extensions, &parts.headers),
        ))
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so that one client has one key.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_addresses_only_from_trusted_peers() {
        let trusted = TrustedProxies::parse("127.0.0.1/32, 10.0.0.0/8").unwrap();
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
        ]);
        assert_eq!(
            trusted.client(proxy, &h),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(trusted.client(stranger, &h), stranger.ip());
        // A chain of trusted proxies is skipped.
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 10.1.2.3")]);
        assert_eq!(
            trusted.client(proxy, &h),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // Nothing trusted: headers are ignored.
        let none = TrustedProxies::default();
        assert_eq!(none.client(proxy, &h), proxy.ip());
        assert!(TrustedProxies::parse("nonsense").is_err());
        assert!(TrustedProxies::parse("").unwrap().0.is_empty());
    }
}
