//! Request inspection: read a posted JSON-RPC message once, check it, and store an
//! [`McpRequest`](crate::McpRequest) in the request extensions.
//!
//! ```
//! use mcp_enterprise_core::{InspectLayer, McpBody, McpRequest};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use bytes::Bytes;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let svc = ServiceBuilder::new()
//!     .layer(InspectLayer::new())
//!     .service(service_fn(|req: Request<McpBody<Full<Bytes>>>| async move {
//!         let mcp = req.extensions().get::<McpRequest>().expect("inspected");
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(mcp.method().unwrap_or("").to_owned()))))
//!     }));
//! let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
//! let req = Request::post("/mcp").body(Full::new(Bytes::from(body)))?;
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//! # Ok(()) }
//! ```

mod future;
mod layer;
mod service;
mod sessions;

pub use future::ResponseFuture;
pub use layer::{DEFAULT_MAX_BODY_BYTES, DEFAULT_SESSION_CAPACITY, InspectLayer};
pub use service::Inspect;
