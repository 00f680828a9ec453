//! The pre-authentication limit: requests per client address, counted and refused **before** any
//! credential is looked at, so that a flood of bad tokens from one address costs a table lookup
//! each, not a signature check (or a JWKS fetch, or an introspection call).
//!
//! - **Key**: the client's address, [`ClientAddress`](crate::ClientAddress) in the request extensions (the
//!   gateway puts the connection's peer there, or behind trusted proxies the address they
//!   forwarded; an embedder puts what it knows). IPv4 addresses are
//!   counted one by one (an IPv4-mapped IPv6 address as its IPv4 address); IPv6 addresses per
//!   prefix (default `/64`, what one site or host usually holds). A request without a
//!   `ClientAddress` is not counted.
//! - **Algorithm**: GCRA per address ([`KeyedLimiter`](crate::limiter::KeyedLimiter)): `burst`
//!   at once, `requests_per_sec` sustained; at most `max_addresses` addresses in memory (idle
//!   ones evicted; a table full of active addresses refuses new ones with `503`).
//! - **Refusal**: `429 Too Many Requests` with `Retry-After` (whole seconds, rounded up), a
//!   JSON-RPC error with code [`RATE_LIMITED`] (id `null`: the body is not read), and a
//!   [`Denial`](crate::Denial) of layer `pre_auth_limit` in the response extensions, which the
//!   audit trail records.
//! - **Place**: composed by `mcp-enterprise-stack` right inside audit, outside everything else
//!   (the metadata documents, inspection and every authentication layer).
//!
//! On by default ([`PreAuthLimitConfig::default`]) with a rate no single well-behaved client
//! reaches; behind a proxy that is the peer of every connection, raise it to the proxy's total (or
//! configure the gateway's `listen.trusted_proxies` so that the forwarded address is counted).

mod config;
mod error;
mod layer;
mod service;

use std::net::IpAddr;

pub use config::{
    DEFAULT_BURST, DEFAULT_IPV6_PREFIX_LEN, DEFAULT_MAX_ADDRESSES, DEFAULT_REQUESTS_PER_SEC, PreAuthLimitConfig,
};
pub use error::PreAuthLimitError;
pub use layer::PreAuthLimitLayer;
pub use service::{PreAuthLimit, ResponseFuture};

/// The JSON-RPC error code of a rate-limited request (`429`): outside the ranges JSON-RPC and MCP
/// reserve (`-32768..=-32000`), its digits recall the HTTP status. The gateway's rate limits use
/// it too.
pub const RATE_LIMITED: i64 = -31429;

/// The limiter key of `ip`: the IPv4 address (IPv4-mapped), or the first `v6_prefix` bits of the
/// IPv6 one; 16 bytes either way (a fixed-size key: no allocation per request).
pub(crate) fn address_key(ip: IpAddr, v6_prefix: u8) -> [u8; 16] {
    match ip.to_canonical() {
        // as its IPv4-mapped IPv6 address, which no canonical IPv6 address is
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let masked = match v6_prefix {
                0 => 0,
                n if n >= 128 => bits,
                n => bits & (u128::MAX << (128 - u32::from(n))),
            };
            masked.to_be_bytes()
        }
    }
}

/// `Retry-After` seconds: rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: std::time::Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests;
