//! SEP-2133 capability negotiation: advertise our extensions, enforce required ones.
//!
//! The [`NegotiateLayer`] sits inside the [`InspectLayer`](crate::InspectLayer) (it reads the
//! [`McpRequest`](crate::McpRequest)). For every inspected message it inserts the
//! [`NegotiatedExtensions`](crate::NegotiatedExtensions) into the request's
//! [`RequestContext`](crate::RequestContext) (read them with
//! [`NegotiatedExtensions::of`](crate::NegotiatedExtensions::of)). It rewrites
//! the responses to `initialize` (legacy) and `server/discover` (modern) so that
//! `result.capabilities.extensions` lists our extensions merged with the upstream's, for
//! `application/json` and `text/event-stream` responses alike (SSE keeps streaming). A modern
//! request from a client that did not declare a *required* extension gets `400` + `-32021`.
//!
//! ```
//! use mcp_enterprise_core::{ExtensionSet, InspectLayer, NegotiateLayer, McpBody, NegotiatedExtensions};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use bytes::Bytes;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let extensions = ExtensionSet::builder().with_own("audit", serde_json::json!({}))?.build();
//! let svc = ServiceBuilder::new()
//!     .layer(InspectLayer::new())
//!     .layer(NegotiateLayer::new(extensions))
//!     .service(service_fn(|req: Request<McpBody<Full<Bytes>>>| async move {
//!         assert!(NegotiatedExtensions::of(req.extensions()).is_some());
//!         let body = r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{}}}"#;
//!         let mut res = Response::new(Full::new(Bytes::from(body)));
//!         res.headers_mut().insert("content-type", "application/json".parse()?);
//!         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(res)
//!     }));
//! let req = Request::post("/mcp").body(Full::new(Bytes::from(
//!     r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}"#,
//! )))?;
//! let res = svc.oneshot(req).await?;
//! let body = res.into_body().collect().await?.to_bytes();
//! let value: serde_json::Value = serde_json::from_slice(&body)?;
//! assert!(value["result"]["capabilities"]["extensions"]["io.github.mcp-enterprise/audit"].is_object());
//! # Ok(()) }
//! ```

mod future;
mod layer;
pub(crate) mod rewrite;
mod service;

pub use future::ResponseFuture;
pub use layer::NegotiateLayer;
pub use service::Negotiate;
