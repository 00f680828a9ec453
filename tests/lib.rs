//! Shared helpers for the integration harness (`tests/it`).
//!
//! - [`artifacts`]: scratch directories kept when a test fails.
//! - [`process`]: [`ChildGuard`](process::ChildGuard), a child process killed on drop.
//! - [`peers`]: the npm-installed third-party peers in `tests/peers` (Node 22, the MCP
//!   conformance suite, the reference server `server-everything`), loopback only.
//! - [`conformance`]: running the conformance suite against a URL and comparing `checks.json`
//!   results per `(scenario, check id)`.
//! - [`dpop_peer`]: DPoP proofs and JWS from npm `dpop` and `jose` (valid and hostile), and
//!   verification of our proofs by `jose`, batched into one Node run.
//! - [`oidc`]: a real certified OpenID provider (npm `oidc-provider`) on loopback for the SSO
//!   tests, with key generation and independent token signing (npm `jose`).
//! - [`redis`]: a real `redis-server` on loopback for the shared DPoP replay store.
//! - [`gateway_process`]: the built `mcp-enterprise` binary as a child process (its memory, open
//!   files and logs).
//! - [`fault`]: a misbehaving HTTP server (hangs, garbage, drips, drops mid-response) standing in
//!   for a broken IdP or upstream.
//! - [`raw`]: raw HTTP/1.1 exchanges over a `TcpStream`, for bytes no HTTP client would send.

#[path = "support/artifacts.rs"]
pub mod artifacts;
#[path = "support/conformance.rs"]
pub mod conformance;
#[path = "support/dpop_peer.rs"]
pub mod dpop_peer;
#[path = "support/fault.rs"]
pub mod fault;
#[path = "support/gateway_process.rs"]
pub mod gateway_process;
#[path = "support/oidc.rs"]
pub mod oidc;
#[path = "support/peers.rs"]
pub mod peers;
#[path = "support/process.rs"]
pub mod process;
#[path = "support/raw.rs"]
pub mod raw;
#[path = "support/redis.rs"]
pub mod redis;
