//! The client's address behind load balancers: `Forwarded` (RFC 7239) and `X-Forwarded-For`
//! are believed only from configured proxies (default: none, so the TCP peer is the client).
//!
//! The list is read from the right (the hop nearest the gateway): each address a trusted proxy
//! reports replaces the candidate until an address that is not a trusted proxy is reached — that
//! is the client. A client cannot forge its way past the first trusted proxy: what it wrote
//! itself sits to the left of what that proxy appended. An entry that is not an IP address
//! (`unknown`, an obfuscated identifier) stops the walk at the proxy that reported it.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;
use mcp_enterprise_core::ClientAddress;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts these networks (`10.0.0.0/8`, `2001:db8::/32`) and addresses (`192.0.2.7`).
    pub fn parse<I: IntoIterator<Item = S>, S: AsRef<str>>(list: I) -> Result<Self, String> {
        list.into_iter()
            .map(|s| {
                let s = s.as_ref().trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is not an IP network (CIDR) or address"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request that arrived from `peer` with these headers.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> ClientAddress {
        let mut ip = peer.ip();
        if self.trusts(ip) {
            let chain = forwarded_chain(headers);
            for entry in chain.iter().rev() {
                if !self.trusts(ip) {
                    break;
                }
                match parse_node(entry) {
                    Some(reported) => ip = reported,
                    None => break,
                }
            }
        }
        ClientAddress { ip, peer }
    }
}

/// The `for=` nodes of every `Forwarded` header, else the `X-Forwarded-For` entries, in order.
fn forwarded_chain(headers: &HeaderMap) -> Vec<String> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .collect()
    };
    let forwarded: Vec<String> = values("forwarded")
        .iter()
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"').to_owned())
            })
        })
        .collect();
    if forwarded.is_empty() { values("x-forwarded-for") } else { forwarded }
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.rsplit_once(':')?.0.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).expect("name"), v.parse().expect("value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(ip(s), 40_000)
    }

    #[test]
    fn only_trusted_proxies_are_believed() {
        let none = TrustedProxies::default();
        let lb = TrustedProxies::parse(["10.0.0.0/8", "192.0.2.7"]).expect("valid");
        let xff = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(none.client(peer("10.1.1.1"), &xff).ip, ip("10.1.1.1"), "default: trust none");
        assert_eq!(lb.client(peer("10.1.1.1"), &xff), ClientAddress { ip: ip("203.0.113.9"), peer: peer("10.1.1.1") });
        assert_eq!(
            lb.client(peer("198.51.100.1"), &xff).ip,
            ip("198.51.100.1"),
            "an untrusted peer's header is ignored"
        );
        // a forged entry left of the proxy's own is not reached
        let forged = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9")]);
        assert_eq!(lb.client(peer("10.1.1.1"), &forged).ip, ip("203.0.113.9"));
        // through two trusted proxies
        let two = headers(&[("x-forwarded-for", "203.0.113.9, 10.2.2.2")]);
        assert_eq!(lb.client(peer("192.0.2.7"), &two).ip, ip("203.0.113.9"));
        // Forwarded wins over X-Forwarded-For; quoted IPv6 with a port
        let fwd = headers(&[
            ("forwarded", "for=\"[2001:db8::1]:4711\";proto=https, for=10.3.3.3"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        assert_eq!(lb.client(peer("10.1.1.1"), &fwd).ip, ip("2001:db8::1"));
        assert_eq!(lb.client(peer("10.1.1.1"), &headers(&[("forwarded", "for=192.0.2.60:80")])).ip, ip("192.0.2.60"));
        // `unknown` stops at the proxy that reported it
        let unknown = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(lb.client(peer("10.1.1.1"), &unknown).ip, ip("10.1.1.1"));
        assert!(TrustedProxies::parse(["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(["lb.example.com"]).is_err());
    }
}
