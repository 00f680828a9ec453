//! The address of the client a request came from, as the server judged it: the TCP peer, or —
//! when the peer is a trusted proxy — the address that proxy reports (`Forwarded`,
//! `X-Forwarded-For`). Set by the server (the gateway's listener), read by the audit layer
//! (OCSF `src_endpoint`).

use std::net::IpAddr;

/// The client's address (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress {
    /// The client's IP address.
    pub ip: IpAddr,
    /// The TCP peer: the client itself, or the last proxy in front of the server.
    pub peer: IpAddr,
}
