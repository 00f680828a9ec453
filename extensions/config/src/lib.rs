//! # mcp-enterprise-config
//!
//! One portable document configures the whole pack: the gateway (`mcp-enterprise serve --config`),
//! a library user's layers, and the connection entries MCP clients need.
//!
//! This crate is the **composition point** of the pack, not an extension layer: each section *is*
//! an extension crate's own configuration type (`mcp_enterprise_sso::SsoConfig`, …) composed into
//! [`PackConfig`], so it depends on every extension crate, while they never depend on each other.
//!
//! - [`Loader`]: TOML, YAML or JSON files merged in order with figment, then `MCPE_` environment
//!   overrides (`MCPE_AUDIT__DIRECTORY` sets `audit.directory`: `__` separates nesting levels);
//!   `${env:NAME}` / `${file:PATH}` secret references resolved at load and never shown again.
//! - Errors name `file:line:column` (or the environment variable), the key path, what was expected
//!   and what was found — all of them at once: unknown keys, wrong types, bad URLs, impossible
//!   combinations (DPoP without a token validator, an unwritable audit directory, …).
//! - [`schema`]: the JSON Schema generated from the types, and the key reference of
//!   `docs/configuration.md` generated from it.
//! - [`compose`]: the layers a document describes, built.
//! - [`clients`]: client-configuration export (SEP-2633 `mcp.json`, VS Code, Claude, Cursor, Codex)
//!   and import.
//!
//! ```
//! use mcp_enterprise_config::{Format, Loader};
//!
//! let document = r#"
//! version = 1
//! resource = "https://mcp.example.com/mcp"
//! upstream = { url = "http://127.0.0.1:8081/mcp" }
//!
//! [[sso.issuers]]
//! issuer = "https://login.example.com"
//! audience = ["api://mcp"]
//! "#;
//! // a typo is an error at its line, never a silently ignored setting
//! let err = Loader::new().text("mcp.toml", Format::Toml, document).env([("HOME", "/")]).load().unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "1 configuration error:\n  mcp.toml:8:1: sso.issuers[0].audience: expected a known key, like `audiences`, \
//!      found the unknown key `audience`"
//! );
//!
//! let loaded = Loader::new()
//!     .text("mcp.toml", Format::Toml, &document.replace("audience", "audiences"))
//!     .env([("MCPE_LISTEN__ADDRESS", "127.0.0.1:9000")])
//!     .load()?;
//! assert_eq!(loaded.config().listen.address, "127.0.0.1:9000");
//! // sections inherit the canonical resource URI
//! assert_eq!(loaded.config().sso.as_ref().map(|s| s.resource.as_str()), Some("https://mcp.example.com/mcp"));
//! # Ok::<(), mcp_enterprise_config::ConfigError>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod checks;
pub mod clients;
pub mod compose;
mod error;
pub mod init;
mod load;
mod locate;
mod model;
mod path;
pub mod propagation;
mod rate_limit;
mod redis;
mod routes;
pub mod schema;
mod secret;
mod source;
pub mod stdio;
mod traces;
mod validate;

pub use error::{ClientFormatError, ConfigError, Diagnostic, DiagnosticKind, LayerError, Location};
pub use load::{LoadedConfig, Loader};
pub use model::{
    AdminConfig, CURRENT_VERSION, ClientConfig, ClientHeaderConfig, ClientOAuthConfig, DEFAULT_ADMIN_ADDRESS,
    DEFAULT_HEADER_READ_TIMEOUT_SECS, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_REQUEST_BODY_TIMEOUT_SECS, DEFAULT_SHUTDOWN_GRACE_SECS, ENV_PREFIX, ENV_SEPARATOR, EgressConfig,
    ListenConfig, LogFormat, LogLevel, LoggingConfig, PackConfig, ROUTE_KEYS, RepositoryConfig, RouteConfig,
    RuntimeConfig, ServerCardConfig, UpstreamConfig, UpstreamTlsConfig,
};
pub use path::{KeyPath, Segment};
pub use propagation::{
    AssertionAlgorithm, ClientAuthMethod, ClientCredentialsConfig, PropagationConfig, PropagationMode,
    ScopeMappingConfig, SignedAssertionConfig, StaticCredentialConfig, TokenExchangeConfig,
};
pub use rate_limit::{OnUnavailable, RateLimitConfig, RateLimitKey};
pub use redis::{RedisConfig, RedisSentinelConfig, RedisUseConfig};
pub use secret::REDACTED;
pub use source::Format;
pub use traces::{TracePrincipal, TracesConfig};
