//! `jti` replay defence for workload tokens and grant assertions: the shared store of `core`
//! (each token accepted once, until it expires; bounded, fails closed when full).

pub use mcp_enterprise_core::replay::{BoxFuture, MemoryReplayStore, ReplayError, ReplayStore};
