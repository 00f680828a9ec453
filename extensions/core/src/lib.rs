//! # mcp-enterprise-core
//!
//! The small, dependency-light core of the MCP enterprise extension pack. Every extension crate
//! depends on this one and on nothing else of ours.
//!
//! - [`InspectLayer`]: reads each posted JSON-RPC message **once** (bounded), checks it — JSON,
//!   JSON-RPC shape, SEP-2243 `MCP-Protocol-Version`/`Mcp-Method`/`Mcp-Name` headers against the
//!   body — and stores an [`McpRequest`] (id, method, target, protocol version, era, what the
//!   client declared, trace context) in the request's [`RequestContext`] (one request extension
//!   for all the pack shares per request; read it with [`McpRequest::of`]). Both protocol eras are understood:
//!   legacy 2025-11-25 (`initialize`, `Mcp-Session-Id`) and modern 2026-07-28 (`server/discover`,
//!   per-request `_meta`).
//! - [`NegotiateLayer`]: SEP-2133 capability negotiation: advertises an [`ExtensionSet`] in
//!   `initialize` / `server/discover` results (JSON and streaming SSE), exposes
//!   [`NegotiatedExtensions`] to inner services, rejects modern clients lacking a required
//!   extension with `-32021`.
//! - [`Principal`]: the authenticated caller, shared by auth, audit and policy layers.
//! - [`ProtectedResourceMetadata`] (RFC 9728) and [`Challenge`] (`WWW-Authenticate`).
//! - [`list`]: rewriting list answers (JSON and SSE, bounded), shared by the layers that filter
//!   or check lists; [`canonical`]: canonical JSON; [`event`]: audit events layers leave in a
//!   response.
//! - [`clock`]: an injectable clock for every time-window rule.
//! - `jwks` (cargo feature `jwks`, off by default): the JOSE plumbing auth extensions share — an
//!   HTTP client, RFC 8414 / OpenID Connect discovery, the rotating JWKS cache, key parsing and
//!   signature verification.
//! - `redis` (cargo feature `redis`, off by default): Redis for state shared by replicas (one
//!   multiplexed connection with TLS, ACLs and Sentinel; the shared replay store used by DPoP and
//!   workload identity; the gateway's shared rate limits).
//!
//! Out of scope here: authentication itself (see the `sso`, `dpop` and `workload-identity`
//! crates) and proxying (see the gateway).
//!
//! ```
//! use mcp_enterprise_core::{ExtensionSet, InspectLayer, NegotiateLayer, McpBody, McpRequest};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use bytes::Bytes;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let extensions = ExtensionSet::builder().with_own("audit", serde_json::json!({}))?.build();
//! let mcp_server = service_fn(|req: Request<McpBody<Full<Bytes>>>| async move {
//!     let mcp = McpRequest::of(req.extensions()).expect("inspected");
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(format!("{:?}", mcp.era())))))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(InspectLayer::new())
//!     .layer(NegotiateLayer::new(extensions))
//!     .service(mcp_server);
//!
//! // a modern request whose Mcp-Method header disagrees with the body is refused with -32020
//! let req = Request::post("/mcp")
//!     .header("mcp-protocol-version", "2026-07-28")
//!     .header("mcp-method", "tools/list")
//!     .body(Full::new(Bytes::from(
//!         r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
//!     )))?;
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::BAD_REQUEST);
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod auth;
pub mod body;
pub mod canonical;
pub mod challenge;
pub mod client_address;
pub mod clock;
pub mod config;
pub mod context;
pub mod denial;
#[cfg(feature = "dpop")]
#[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
pub mod dpop;
pub mod error;
pub mod event;
pub mod extensions;
pub mod future;
pub mod glob;
pub mod headers;
pub mod inspect;
pub mod json;
pub mod jsonrpc;
#[cfg(feature = "jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
pub mod jwks;
pub mod limiter;
pub mod list;
pub mod message;
pub mod metadata;
pub mod negotiate;
#[cfg(feature = "outbound")]
#[cfg_attr(docsrs, doc(cfg(feature = "outbound")))]
pub mod outbound;
pub mod preauth;
pub mod principal;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod replay;
pub mod stats;
pub mod trace;
pub mod wiring;

pub use body::{BoxError, McpBody, PackBody};
pub use challenge::{AuthErrorCode, Challenge};
pub use client_address::ClientAddress;
pub use config::CoreConfig;
pub use context::RequestContext;
pub use denial::Denial;
pub use error::{ConfigError, Rejection};
pub use event::{AuditEvent, AuditEvents};
pub use extensions::{ExtensionId, ExtensionSet, ExtensionSetBuilder, NegotiatedExtensions};
pub use inspect::{Inspect, InspectLayer};
pub use jsonrpc::{JsonRpcError, JsonRpcId};
pub use message::{ClientDeclaration, Era, McpRequest, MessageKind, TraceContext, UnverifiedClientInfo};
pub use metadata::{MetadataContribution, ProtectedResourceMetadata, ProtectedResourceMetadataLayer};
pub use negotiate::{Negotiate, NegotiateLayer};
pub use principal::{AuthMethod, Principal, PrincipalKind, PrincipalSlot, TokenFingerprint};
pub use wiring::{Miswired, Visited};
