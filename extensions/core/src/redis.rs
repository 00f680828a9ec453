//! A minimal RESP2 client (feature `redis`) for the pack's shared state in Redis, Valkey or any
//! RESP2 server: the DPoP `jti` replay store and the gateway's shared rate limits.
//!
//! One reused TCP connection, no extra dependency. Every step is bounded by a timeout and every
//! reply by a size limit; a connection is reused only after a reply its caller accepts (anything
//! else may leave it out of sync, and a fresh one costs little), and a reused connection found
//! closed before any reply byte is retried once on a new one (the command was never executed).
//! Errors never contain the password.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// The longest reply line accepted (status, error, length header).
const MAX_LINE: usize = 1024;
/// The longest bulk string accepted.
const MAX_BULK: usize = 1024;

/// One RESP2 reply (the kinds other than arrays; no command this pack sends returns one).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// `+…`
    Status(String),
    /// `-…`: the server refused the command (e.g. `NOSCRIPT`, `WRONGPASS`).
    Error(String),
    /// `:…`
    Integer(i64),
    /// `$n…`
    Bulk(Vec<u8>),
    /// `$-1`
    Nil,
}

impl Reply {
    /// The reply kind, for messages (never the content).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Status(_) => "status",
            Self::Error(_) => "error",
            Self::Integer(_) => "integer",
            Self::Bulk(_) => "bulk string",
            Self::Nil => "nil",
        }
    }
}

/// Redis could not give an answer: unreachable, too slow, or a malformed exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RedisError(String);

impl RedisError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Why one exchange failed; `stale` marks a reused connection found closed before any reply.
struct Failure {
    message: String,
    stale: bool,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), stale: false }
    }
}

/// A RESP2 client on one reused connection (see the module documentation).
///
/// ```no_run
/// # async fn run() -> Result<(), mcp_enterprise_core::redis::RedisError> {
/// use mcp_enterprise_core::redis::{RedisClient, Reply};
/// let client = RedisClient::new("127.0.0.1:6379");
/// let reply = client.command(&[b"INCR", b"counter"], |r| matches!(r, Reply::Integer(_))).await?;
/// assert!(matches!(reply, Reply::Integer(_)));
/// # Ok(()) }
/// ```
#[must_use]
pub struct RedisClient {
    addr: String,
    auth: Option<(Option<String>, String)>,
    connect_timeout: Duration,
    io_timeout: Duration,
    conn: Mutex<Option<BufReader<TcpStream>>>,
}

impl fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClient")
            .field("addr", &self.addr)
            .field("auth", &self.auth.as_ref().map(|(user, _)| (user, "***")))
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisClient {
    /// A client of the server at `addr` (`host:port`). Nothing connects until the first command.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            auth: None,
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            conn: Mutex::new(None),
        }
    }

    /// Authenticates each new connection: `AUTH [username] password`.
    pub fn auth(mut self, username: Option<&str>, password: impl Into<String>) -> Self {
        self.auth = Some((username.map(str::to_owned), password.into()));
        self
    }

    /// Time allowed to connect and authenticate (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for one command and its reply (default 1 s).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// The server address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The longest a [`command`](Self::command) can take, queueing included.
    pub fn budget(&self) -> Duration {
        self.connect_timeout + self.io_timeout * 2
    }

    /// Closes the pooled connection (the next command opens a new one).
    pub async fn disconnect(&self) {
        *self.conn.lock().await = None;
    }

    /// Sends one command and reads its reply on the shared connection, connecting (again) when
    /// needed. The connection is kept for the next command only when `keep` accepts the reply.
    /// Requests queue on the connection; the whole wait, queueing included, is bounded by
    /// [`budget`](Self::budget).
    pub async fn command(&self, args: &[&[u8]], keep: impl Fn(&Reply) -> bool) -> Result<Reply, RedisError> {
        let attempt = async {
            let mut slot = self.conn.lock().await;
            // Taken out while in use: if this future is dropped half-way (the client went away),
            // the connection goes with it instead of being reused with a reply still pending.
            let reused = slot.take();
            let was_reused = reused.is_some();
            let (conn, reply) = match self.exchange(reused, args).await {
                Ok(done) => done,
                // a pooled connection the server closed meanwhile (restart, idle timeout): the
                // command was never executed, so it is safe to send it once more
                Err(f) if f.stale && was_reused => {
                    self.exchange(None, args).await.map_err(|f| RedisError(f.message))?
                }
                Err(f) => return Err(RedisError(f.message)),
            };
            if keep(&reply) {
                *slot = Some(conn);
            }
            Ok(reply)
        };
        tokio::time::timeout(self.budget(), attempt)
            .await
            .unwrap_or_else(|_| Err(RedisError(format!("redis at {} did not answer in time", self.addr))))
    }

    async fn exchange(
        &self,
        conn: Option<BufReader<TcpStream>>,
        args: &[&[u8]],
    ) -> Result<(BufReader<TcpStream>, Reply), Failure> {
        let reused = conn.is_some();
        let mut conn = match conn {
            Some(c) => c,
            None => self.connect().await?,
        };
        let request = encode(args);
        let step = async {
            conn.get_mut().write_all(&request).await.map_err(|e| (e.to_string(), true))?;
            read_reply(&mut conn).await
        };
        match tokio::time::timeout(self.io_timeout, step).await {
            Ok(Ok(reply)) => Ok((conn, reply)),
            Ok(Err((message, nothing_read))) => Err(Failure { message, stale: reused && nothing_read }),
            Err(_) => Err(Failure::new("timed out waiting for a reply")),
        }
    }

    async fn connect(&self) -> Result<BufReader<TcpStream>, Failure> {
        let setup = async {
            let stream = TcpStream::connect(&self.addr).await.map_err(|e| Failure::new(format!("connect: {e}")))?;
            let _ = stream.set_nodelay(true);
            let mut conn = BufReader::with_capacity(4096, stream);
            if let Some((user, password)) = &self.auth {
                let mut args: Vec<&[u8]> = vec![b"AUTH"];
                if let Some(user) = user {
                    args.push(user.as_bytes());
                }
                args.push(password.as_bytes());
                conn.get_mut().write_all(&encode(&args)).await.map_err(|e| Failure::new(format!("AUTH: {e}")))?;
                match read_reply(&mut conn).await.map_err(|(e, _)| Failure::new(format!("AUTH: {e}")))? {
                    Reply::Status(s) if s == "OK" => {}
                    // the error text names the problem (WRONGPASS, NOAUTH), never the password
                    Reply::Error(e) => return Err(Failure::new(format!("AUTH refused: {e}"))),
                    other => return Err(Failure::new(format!("AUTH: unexpected reply {}", other.kind()))),
                }
            }
            Ok(conn)
        };
        tokio::time::timeout(self.connect_timeout, setup)
            .await
            .unwrap_or_else(|_| Err(Failure::new("timed out connecting")))
    }
}

/// A RESP2 array of bulk strings.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one line (without CRLF), at most [`MAX_LINE`] bytes. The flag tells whether the failure
/// came before any byte of the reply was read (a closed connection).
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<u8>, (String, bool)> {
    let mut line = Vec::new();
    loop {
        let available = r.fill_buf().await.map_err(|e| (e.to_string(), line.is_empty()))?;
        if available.is_empty() {
            return Err(("connection closed by redis".into(), line.is_empty()));
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        if line.len() + chunk.len() > MAX_LINE + 2 {
            return Err(("reply line too long".into(), false));
        }
        line.extend_from_slice(chunk);
        let used = chunk.len();
        r.consume(used);
        if done {
            if !line.ends_with(b"\r\n") {
                return Err(("malformed reply line".into(), false));
            }
            line.truncate(line.len() - 2);
            return Ok(line);
        }
    }
}

async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<Reply, (String, bool)> {
    let line = read_line(r).await?;
    let bad = |what: &str| (format!("malformed reply: {what}"), false);
    let (&first, rest) = line.split_first().ok_or_else(|| bad("empty line"))?;
    let text = std::str::from_utf8(rest).map_err(|_| bad("not UTF-8"))?;
    match first {
        b'+' => Ok(Reply::Status(text.to_owned())),
        b'-' => Ok(Reply::Error(text.to_owned())),
        b':' => text.parse().map(Reply::Integer).map_err(|_| bad("integer")),
        b'$' => {
            let len: i64 = text.parse().map_err(|_| bad("bulk length"))?;
            if len == -1 {
                return Ok(Reply::Nil);
            }
            let len = usize::try_from(len).map_err(|_| bad("bulk length"))?;
            if len > MAX_BULK {
                return Err(("reply too large".into(), false));
            }
            let mut data = vec![0; len + 2];
            r.read_exact(&mut data).await.map_err(|e| (e.to_string(), false))?;
            if !data.ends_with(b"\r\n") {
                return Err(bad("bulk terminator"));
            }
            data.truncate(len);
            Ok(Reply::Bulk(data))
        }
        _ => Err(bad("unsupported reply type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn parse(bytes: &[u8]) -> Result<Reply, String> {
        let mut r = BufReader::new(bytes);
        read_reply(&mut r).await.map_err(|(e, _)| e)
    }

    #[tokio::test]
    async fn resp2_replies() {
        assert_eq!(parse(b"+OK\r\n").await, Ok(Reply::Status("OK".into())));
        assert_eq!(parse(b"$-1\r\n").await, Ok(Reply::Nil));
        assert_eq!(parse(b"-ERR wrong\r\n").await, Ok(Reply::Error("ERR wrong".into())));
        assert_eq!(parse(b":42\r\n").await, Ok(Reply::Integer(42)));
        assert_eq!(parse(b":-7\r\n").await, Ok(Reply::Integer(-7)));
        assert_eq!(parse(b"$3\r\nabc\r\n").await, Ok(Reply::Bulk(b"abc".to_vec())));
        assert!(parse(b":x\r\n").await.is_err(), "bad integer");
        assert!(parse(b"$3\r\nabcd\r\n").await.is_err(), "bad terminator");
        assert!(parse(b"$999999\r\n").await.is_err(), "bulk bounded");
        assert!(parse(&[b'+'; 4000]).await.is_err(), "line bounded");
        assert!(parse(b"*1\r\n$1\r\na\r\n").await.is_err(), "arrays are not expected");
        assert!(parse(b"+OK").await.is_err(), "truncated");
        assert!(parse(b"+OK\n").await.is_err(), "bare LF");
        assert_eq!(encode(&[b"SET", b"k", b"1"]), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n");
    }

    #[tokio::test]
    async fn unreachable_and_silent_servers_fail_in_time() {
        // nobody listens
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr").port()
        };
        let client = RedisClient::new(format!("127.0.0.1:{port}"));
        assert!(client.command(&[b"PING"], |_| true).await.is_err());

        // accepts, reads, never answers
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = silent.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = silent.accept().await {
                conns.push(c);
            }
        });
        let client = RedisClient::new(addr.to_string()).io_timeout(Duration::from_millis(200));
        let result = client.command(&[b"PING"], |_| true).await;
        assert!(result.is_err(), "{result:?}");
        held.abort();
    }

    #[test]
    fn debug_hides_the_password() {
        let client = RedisClient::new("h:1").auth(Some("u"), "hunter2");
        let shown = format!("{client:?}");
        assert!(!shown.contains("hunter2") && shown.contains("***"), "{shown}");
    }
}
