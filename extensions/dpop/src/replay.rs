//! `jti` replay defence beyond the ±5 minute window: the shared store of `core` (each proof's
//! `jti`, per key, remembered until the proof could no longer be accepted anyway; bounded and
//! exact within its window; a shared store lets several replicas refuse each other's replays).

pub use mcp_enterprise_core::replay::{BoxFuture, MemoryReplayStore, ReplayError, ReplayStore};
