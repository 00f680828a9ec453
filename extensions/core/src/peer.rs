//! The network peer a request came from, as the embedder's listener saw it.

use std::net::SocketAddr;

/// The address of the connection a request arrived on: a request extension the listener inserts
/// (the gateway does), read by layers that record it (the audit trail). A proxy in front makes
/// it the proxy's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);
