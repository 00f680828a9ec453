//! A fault injector: a tiny HTTP/1.1 server on 127.0.0.1 that misbehaves on purpose — hangs,
//! answers garbage, drips bytes, drops the connection mid-response. It stands in for a *broken*
//! identity provider or upstream, never for a working one (tests use the real ones for that).
//!
//! The behaviour can be switched while it runs ([`FaultServer::set`]); every connection is counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Largest request head (and body) the injector reads.
const MAX_REQUEST: usize = 1024 * 1024;

/// What the injector does with each request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Fault {
    /// Reads the request and never answers (the connection stays open).
    Hang,
    /// Writes these raw bytes as the whole response, then closes.
    Raw(Bytes),
    /// Writes `head`, then each chunk after `interval`, then closes the connection — without
    /// ending a chunked body when `abort` is set (a crash mid-response).
    Drip {
        /// Status line and headers, ending with the blank line.
        head: Bytes,
        /// Body pieces, written as they are (frame them yourself for chunked bodies).
        chunks: Vec<Bytes>,
        /// Pause before each piece.
        interval: Duration,
    },
    /// Closes the connection as soon as the request is read.
    Close,
}

impl Fault {
    /// A complete response with a `Content-Length` body.
    pub fn response(status: &str, content_type: &str, body: impl Into<Bytes>) -> Self {
        let body = body.into();
        let mut raw = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        Self::Raw(raw.into())
    }

    /// An SSE response that sends `events` (each a full `data: …\n\n` block) one by one, each
    /// after `interval`, then drops the connection without ending the chunked body.
    pub fn sse_then_drop(events: &[&str], interval: Duration) -> Self {
        let head = Bytes::from_static(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n",
        );
        let chunks =
            events.iter().map(|e| Bytes::from(format!("{:x}\r\n{e}\r\n", e.len()).into_bytes())).collect::<Vec<_>>();
        Self::Drip { head, chunks, interval }
    }
}

/// The injector; stops (closing every connection) when dropped.
#[derive(Debug)]
pub struct FaultServer {
    addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultServer {
    /// Starts on a free loopback port.
    pub async fn start(fault: Fault) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let fault = Arc::new(Mutex::new(fault));
        let connections = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let fault = fault.clone();
            let connections = connections.clone();
            async move {
                let mut open = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    while open.try_join_next().is_some() {}
                    connections.fetch_add(1, Ordering::SeqCst);
                    let fault = fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                    open.spawn(serve(stream, fault));
                }
            }
        });
        Ok(Self { addr, fault, connections, task })
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes what the next connections get.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = fault;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (head, and a `Content-Length` body), then misbehaves.
async fn serve(mut stream: TcpStream, fault: Fault) {
    if read_request(&mut stream).await.is_err() {
        return;
    }
    match fault {
        Fault::Hang => {
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Fault::Raw(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Fault::Drip { head, chunks, interval } => {
            if stream.write_all(&head).await.is_err() {
                return;
            }
            for chunk in chunks {
                tokio::time::sleep(interval).await;
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            // no terminating chunk: the peer sees the connection end mid-body
            tokio::time::sleep(interval).await;
        }
        Fault::Close => {}
    }
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_REQUEST {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST);
    let mut have = buf.len() - head_end;
    while have < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Ok(())
}
