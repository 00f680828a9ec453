//! # mcp-enterprise-policy
//!
//! Tool-level and argument-level authorization for MCP with [Cedar](https://www.cedarpolicy.com)
//! (`cedar-policy`, the reference implementation) — validated against the upstream's real tool
//! schemas, with explained denials and consistent list filtering.
//!
//! **Guarantee**: with the layer in place, a `tools/call`, `resources/read` or `prompts/get`
//! reaches the inner service only when the policies allow it for the caller ([`Principal`]
//! from the auth layers), the target and its arguments; anything that cannot be evaluated is
//! denied. List results (`tools/list`, `resources/list`, `resources/templates/list`,
//! `prompts/list`) show only items the caller may use with *some* arguments, so a listed tool is
//! never denied for its name alone.
//!
//! - Model (namespace `Mcp`): principal `Mcp::Principal` (kind, issuer, subject, client id,
//!   scopes, groups, roles, tenant; other selected claims as tags), action = the MCP method
//!   (`Mcp::Action::"tools/call"`), resource `Mcp::Tool` / `Mcp::Resource` / `Mcp::Prompt` with
//!   what the upstream declared (title, annotations at the MCP defaults), context = typed
//!   `arguments`, `time`, `unverifiedClient`, `era`, `protocolVersion`. See `docs/policy.md`.
//! - Validation: tools (and prompts) are learned from listings passing through, from a
//!   snapshot, or fetched at start-up; each gets a Cedar schema generated from its
//!   `inputSchema`, and every policy that can apply to it is validated in strict mode. A
//!   reference to a missing argument or a comparison of the wrong type is an error (or a
//!   warning, by configuration) naming the policy, its file, line and column.
//! - Refusals: `403`, JSON-RPC error with `data.reasons` (forbidding policy ids,
//!   `no_permit_matched`, `evaluation_error:<id>`, `arguments_not_representable`); the full
//!   explanation in logs and in the response extensions ([`PolicyDenied`] and a
//!   [`Denial`](mcp_enterprise_core::Denial) for the audit layer).
//! - Cost (measured in `docs/performance.md`): what a decision needs besides the Cedar evaluation
//!   is cached, in bounded caches with O(1) insertion and eviction (`quick_cache`, sharded
//!   S3-FIFO; no global lock): principal entities by credential fingerprint
//!   ([`MAX_CACHED_PRINCIPALS`], found only when the whole principal is equal; every entry gets a
//!   new number), the entities a decision reads — the caller's and the target's — by (principal
//!   number, catalog generation, action, target) ([`MAX_CACHED_ENTITIES`]), list decisions by the
//!   same and, when a policy reads the context beyond `context.arguments` (its time, client, era,
//!   protocol version), the request's context ([`MAX_CACHED_DECISIONS`]), and decimal argument
//!   expressions by their text. A listing that teaches new tools or prompts bumps the catalog
//!   generation and empties the entity and decision caches; a reload builds a new engine with
//!   empty caches; a principal whose attributes changed under the same credential gets a new
//!   number. Not cached: a call's decision (its arguments), the entity of a principal without a
//!   credential fingerprint, anything about a target named with more than 256 bytes (so an entry
//!   stays small: at most a principal's and a tool's entities). A list answer whose item list is empty passes exactly as it came
//!   (valid JSON, no member named twice: nothing to filter, nothing to learn); any other list
//!   answer is parsed, filtered and encoded again, and one that cannot be is refused.
//!
//! ```
//! use mcp_enterprise_core::{InspectLayer, McpBody};
//! use mcp_enterprise_policy::{Policies, PolicyLayer, PolicySource};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use bytes::Bytes;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let policies = Policies::parse(vec![PolicySource {
//!     name: "demo.cedar".into(),
//!     text: r#"@id("echo-for-all")
//!              permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"echo");"#.into(),
//! }])?;
//! let svc = ServiceBuilder::new()
//!     .layer(InspectLayer::new())
//!     .layer(PolicyLayer::builder(policies).build()?)
//!     .service(service_fn(|_req: Request<McpBody<Full<Bytes>>>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
//!     }));
//! let call = |tool: &str| {
//!     let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#);
//!     Request::post("/mcp").body(Full::new(Bytes::from(body)))
//! };
//! assert_eq!(svc.clone().oneshot(call("echo")?).await?.status(), StatusCode::OK);
//! assert_eq!(svc.oneshot(call("delete_customer")?).await?.status(), StatusCode::FORBIDDEN);
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod args;
mod config;
mod engine;
mod error;
mod filter;
mod future;
mod layer;
mod model;
mod service;
mod validate;

pub use args::{ArgType, ConversionError, MAX_DEPTH, MAX_VALUES, RecordType, arguments_to_cedar};
pub use config::{DefaultDecisionConfig, PolicyConfig, ValidationConfig};
pub use engine::{
    Call, Catalog, Decision, DefaultDecision, Engine, MAX_CACHED_DECISIONS, MAX_CACHED_ENTITIES, MAX_CACHED_PRINCIPALS,
    MAX_CATALOG_ENTRIES, Policies, PolicySource, Reason, Settings, ValidationLevel,
};
pub use error::{PolicyConfigError, PolicyDenied};
pub use filter::{ListKind, filter_list_body};
pub use future::ResponseFuture;
pub use layer::{DEFAULT_MAX_LIST_BYTES, PolicyLayer, PolicyLayerBuilder};
pub use mcp_enterprise_core::Principal;
pub use model::{Action, CallContext, NAMESPACE, PromptInfo, ToolInfo, cedar_schema_json, principal_entity};
pub use service::Policy;
pub use validate::{Finding, Severity, ValidationReport, validate};

/// The extension id advertised through SEP-2133 negotiation.
pub const EXTENSION_ID: &str = "io.github.mcp-enterprise/policy";

#[cfg(test)]
mod tests;
