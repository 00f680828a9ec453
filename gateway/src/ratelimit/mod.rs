//! Rate limits and quotas: a tower layer that counts each request under every [`Limit`] that
//! applies to it and refuses what exceeds one.
//!
//! - **Keys**: any combination of the authenticated principal (issuer + subject), its OAuth
//!   client id, its tenant, and the target (tool / prompt name or resource URI: what `Mcp-Name`
//!   carries), read from the [`Principal`](mcp_enterprise_core::Principal) the auth layers and
//!   the [`McpRequest`](mcp_enterprise_core::McpRequest) the `InspectLayer` put in the request
//!   extensions; so the layer sits inside both. Filters pick the JSON-RPC methods and targets a
//!   limit applies to.
//! - **Algorithm**: GCRA (the token bucket's exact equivalent): `requests` per period sustained,
//!   up to `burst` at once. A long period makes a quota that refills continuously.
//! - **Stores**: in memory ([`governor`]'s keyed state; idle keys evicted, at most `max_keys`
//!   per limit, a full table of active keys refuses with `503`), or shared by every replica
//!   through Redis: one atomic Lua script per check, `EVALSHA` with an `EVAL` fallback, on Redis'
//!   own clock (`TIME`) so replicas agree. Redis unreachable or slower than the timeout:
//!   [`OnUnavailable::FailClosed`] (`503`, the default) or [`OnUnavailable::FailOpen`].
//! - **Refusal**: `429 Too Many Requests`, `Retry-After` in whole seconds (rounded up), a
//!   JSON-RPC error with code [`RATE_LIMITED`] and the request's id, `data` naming the limit; and
//!   a [`Denial`](mcp_enterprise_core::Denial) of layer `ratelimit` naming the limit in the
//!   response extensions, which the audit trail records. A refused request still counts against
//!   the limits checked before the one that refused it (in configuration order).
//!
//! ```
//! use std::time::Duration;
//! use mcp_enterprise_gateway::ratelimit::{KeyPart, Limit, RateLimitLayer};
//! use tower::ServiceBuilder;
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = RateLimitLayer::builder()
//!     .limit(Limit::new("calls-per-user", 60, Duration::from_secs(60))?.key([KeyPart::Principal]))
//!     .limit(Limit::new("daily-search", 1000, Duration::from_secs(86_400))?.tools(["search"]))
//!     .build()?;
//! let service = ServiceBuilder::new().layer(layer).service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(bytes::Bytes::new()))
//! });
//! # drop(service);
//! # Ok(()) }
//! ```

mod layer;
mod limit;
mod service;
mod store;

use std::sync::Arc;
use std::time::Duration;

pub use layer::{RateLimitLayer, RateLimitLayerBuilder, SharedStore};
pub use limit::Limit;
pub use mcp_enterprise_config::{OnUnavailable, RateLimitKey as KeyPart};
pub use service::{RateLimit, ResponseFuture};
pub use store::DEFAULT_REDIS_PREFIX;

/// The JSON-RPC error code of a rate-limited request (`429`): outside the ranges JSON-RPC and MCP
/// reserve (`-32768..=-32000`), its digits recall the HTTP status.
pub const RATE_LIMITED: i64 = mcp_enterprise_core::preauth::RATE_LIMITED;

/// A rate-limit setting is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitConfigError {
    /// A limit's settings are not usable.
    #[error("rate limit {name:?}: {reason}")]
    InvalidLimit {
        /// The limit's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Two limits have one name.
    #[error("two rate limits are named {0:?}; names must be unique")]
    DuplicateName(String),
    /// The shared store settings are not usable.
    #[error("redis.rate_limits: {0}")]
    Redis(String),
}

/// Why the layer refused a request (in the response extensions, next to the `Denial`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// Over the limit.
    #[error("rate limit {limit:?} exceeded; retry after {} s", retry_after_secs(*.retry_after))]
    Exceeded {
        /// The limit's name.
        limit: Arc<str>,
        /// When a request under the same key conforms again.
        retry_after: Duration,
    },
    /// The limit's local key table is full of active keys.
    #[error("rate limit {limit:?} cannot track more callers right now")]
    Full {
        /// The limit's name.
        limit: Arc<str>,
    },
    /// The shared store did not answer and the layer fails closed.
    #[error("rate limit {limit:?} cannot be checked: the shared store is unavailable")]
    Unavailable {
        /// The limit's name.
        limit: Arc<str>,
    },
}

impl RateLimitError {
    /// The limit that refused.
    pub fn limit(&self) -> &str {
        match self {
            Self::Exceeded { limit, .. } | Self::Full { limit } | Self::Unavailable { limit } => limit,
        }
    }
}

/// `Retry-After` seconds: rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(59) + Duration::from_nanos(1)), 60);
    }
}
