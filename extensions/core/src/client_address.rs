//! The address of the client a request came from, as the server judged it: the TCP peer, or —
//! when the peer is a trusted proxy — the address that proxy reports (`Forwarded`,
//! `X-Forwarded-For`). Set by the server (the gateway's listener puts it on every request), read
//! by the audit layer (`src_endpoint`, `http.peer_ip`) and the pre-authentication limit (which
//! counts requests per client).

use std::net::{IpAddr, SocketAddr};

/// The client's address (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress {
    /// The client's IP address: the peer's, unless a trusted proxy forwarded another.
    pub ip: IpAddr,
    /// The TCP peer: the client itself, or the last proxy in front of the server.
    pub peer: SocketAddr,
}

impl ClientAddress {
    /// A client connected directly (no proxy in between).
    pub fn direct(peer: SocketAddr) -> Self {
        Self { ip: peer.ip(), peer }
    }

    /// Whether a proxy reported the address (the client is not the TCP peer).
    pub fn is_forwarded(&self) -> bool {
        self.ip.to_canonical() != self.peer.ip().to_canonical()
    }
}
