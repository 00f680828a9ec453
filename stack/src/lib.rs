//! # mcp-enterprise-stack
//!
//! The one composition point of the mcp-enterprise pack: [`Pack::builder`] takes the extension
//! layers you configured (any subset), composes their SEP-2133 extension set, the RFC 9728
//! protected resource metadata and the authentication chain **once**, and [`Pack::layer`] wraps
//! *any* tower service — an in-process rmcp `StreamableHttpService`, an axum router, a proxy — in
//! all of them, in the one correct order:
//!
//! audit → pre-authentication limit → metadata documents → inspection → negotiation → workload identity → DPoP → SSO →
//! policy → integrity → (your inner layer) → your service.
//!
//! ## Guarantee
//! - The order is fixed: audit sees every refusal, policy decides on the parsed call and the
//!   authenticated principal, a layer that leaves some credentials to another authenticates only
//!   through an [`AuthChain`](mcp_enterprise_core::auth::AuthChain) with an authenticating layer
//!   inside it.
//! - Layers put together by hand in a wrong order refuse requests (`500` naming the missing
//!   prerequisite, see [`mcp_enterprise_core::wiring`]) instead of serving them.
//! - Every answer carries the pack's one body type ([`PackBody`](mcp_enterprise_core::PackBody)),
//!   so each optional layer is a plain `Either`, not an enum per combination.
//!
//! ## Out of scope
//! Listening, TLS termination, `Host`/`Origin` checks and upstream proxying are the embedder's (the
//! gateway's) business; so is serving the workload identity token endpoint beside the MCP path
//! ([`Pack::workload_identity`]).
//!
//! ## Example
//!
//! ```
//! use mcp_enterprise_stack::Pack;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // your MCP service (here a stand-in answering every call)
//! let server = tower::service_fn(|_req: http::Request<_>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from(
//!         r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
//!     ))))
//! });
//! // add .sso(..), .dpop(..), .policy(..), .audit(..) as configured
//! let pack = Pack::builder().build()?;
//! let app = pack.layer().layer(server);
//! let request = http::Request::post("/mcp")
//!     .header("content-type", "application/json")
//!     .header("accept", "application/json, text/event-stream")
//!     .body(http_body_util::Full::new(bytes::Bytes::from(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)))?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod body;
mod builder;
mod error;
mod layer;

pub use body::{IntoPack, IntoPackFuture};
pub use builder::{Pack, PackBuilder};
pub use error::PackError;
pub use layer::{AuthService, CoreService, DocumentsService, IntegrityService, LimitedService, PackLayer, PackService};
