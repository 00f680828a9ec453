//! Shared helpers for the integration harness (`tests/it`).
//!
//! - [`artifacts`]: scratch directories kept when a test fails.
//! - [`process`]: [`ChildGuard`](process::ChildGuard), a child process killed on drop.
//! - [`peers`]: the npm-installed third-party peers in `tests/peers` (Node 22, the MCP
//!   conformance suite, the reference server `server-everything`), loopback only.
//! - [`conformance`]: running the conformance suite against a URL and comparing `checks.json`
//!   results per `(scenario, check id)`.
//! - [`oidc`]: a real certified OpenID provider (npm `oidc-provider`) on loopback for the SSO
//!   tests, with key generation and independent token signing (npm `jose`).

#[path = "support/artifacts.rs"]
pub mod artifacts;
#[path = "support/conformance.rs"]
pub mod conformance;
#[path = "support/oidc.rs"]
pub mod oidc;
#[path = "support/peers.rs"]
pub mod peers;
#[path = "support/process.rs"]
pub mod process;
