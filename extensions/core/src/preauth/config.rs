//! [`PreAuthLimitConfig`]: the settings of the pre-authentication limit.

use serde::{Deserialize, Serialize};

/// Default [`requests_per_sec`](PreAuthLimitConfig::requests_per_sec): 100.
pub const DEFAULT_REQUESTS_PER_SEC: u32 = 100;
/// Default [`burst`](PreAuthLimitConfig::burst): 500.
pub const DEFAULT_BURST: u32 = 500;
/// Default [`max_addresses`](PreAuthLimitConfig::max_addresses): 100 000.
pub const DEFAULT_MAX_ADDRESSES: usize = 100_000;
/// Default [`ipv6_prefix_len`](PreAuthLimitConfig::ipv6_prefix_len): 64.
pub const DEFAULT_IPV6_PREFIX_LEN: u8 = 64;

/// Requests per client address, counted before any credential is checked (a flood of bad tokens
/// from one address is refused with `429` before any signature check). On by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct PreAuthLimitConfig {
    /// Requests one client address may send per second, sustained (default 100). Behind a proxy
    /// or load balancer that is the peer of every connection, all clients share its address:
    /// raise this to the proxy's total.
    #[cfg_attr(feature = "schemars", schemars(range(min = 1)))]
    pub requests_per_sec: u32,
    /// Requests one client address may send at once (default 500).
    #[cfg_attr(feature = "schemars", schemars(range(min = 1)))]
    pub burst: u32,
    /// Addresses tracked at once (default 100 000, a few MiB). Idle addresses are evicted; while
    /// every slot holds an active address, requests from new addresses are refused with `503`
    /// (bounded memory, fail closed).
    #[cfg_attr(feature = "schemars", schemars(range(min = 1)))]
    pub max_addresses: usize,
    /// IPv6 clients are counted per prefix of this many bits (default 64: one host usually holds
    /// a whole /64). IPv4 clients are counted per address.
    #[cfg_attr(feature = "schemars", schemars(range(min = 1, max = 128)))]
    pub ipv6_prefix_len: u8,
    /// **Insecure**: no pre-authentication limit; every request reaches the credential checks.
    pub insecure_disabled: bool,
}

impl Default for PreAuthLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_sec: DEFAULT_REQUESTS_PER_SEC,
            burst: DEFAULT_BURST,
            max_addresses: DEFAULT_MAX_ADDRESSES,
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX_LEN,
            insecure_disabled: false,
        }
    }
}

impl PreAuthLimitConfig {
    /// The layer these settings describe; `None` when disabled.
    pub fn layer(&self) -> Result<Option<super::PreAuthLimitLayer>, crate::ConfigError> {
        if self.insecure_disabled {
            return Ok(None);
        }
        super::PreAuthLimitLayer::new(self.requests_per_sec, self.burst)
            .and_then(|l| l.max_addresses(self.max_addresses))
            .and_then(|l| l.ipv6_prefix_len(self.ipv6_prefix_len))
            .map(Some)
    }
}
