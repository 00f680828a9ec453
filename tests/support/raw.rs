//! Raw HTTP/1.1 over a `TcpStream`: requests no HTTP client library would send (smuggling shapes,
//! obs-fold, bare LF, non-UTF-8 bytes, oversized heads) and the server's answer as bytes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long [`exchange`] waits for the server to answer and close; generous, never a measure.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server sent back on one connection.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    /// Every byte received until the server closed the connection (or [`ANSWER_TIMEOUT`]).
    pub bytes: Vec<u8>,
    /// Whether the server closed the connection (rather than the wait timing out).
    pub closed: bool,
}

impl RawAnswer {
    /// The status code of the first response, if one arrived.
    pub fn status(&self) -> Option<u16> {
        let line = self.bytes.split(|b| *b == b'\n').next()?;
        let line = std::str::from_utf8(line).ok()?;
        line.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
    }

    /// The status codes of every response on the connection, in order.
    pub fn statuses(&self) -> Vec<u16> {
        let text = String::from_utf8_lossy(&self.bytes);
        text.match_indices("HTTP/1.").filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok()).collect()
    }

    /// The received bytes, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Sends `request` as is, half-closes nothing, and reads until the server closes the connection
/// or [`ANSWER_TIMEOUT`] passes.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<RawAnswer> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    read_until_closed(&mut stream, ANSWER_TIMEOUT).await
}

/// Reads until the peer closes the connection (EOF or reset) or `timeout` passes.
pub async fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> std::io::Result<RawAnswer> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(RawAnswer { bytes, closed: true }),
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => return Ok(RawAnswer { bytes, closed: false }),
        }
    }
}
