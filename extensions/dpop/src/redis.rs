//! A [`ReplayStore`] shared by every replica through Redis (feature `redis`): each proof is
//! recorded with one atomic `SET <prefix><key> 1 NX PX <ms>`, so a proof accepted by one replica
//! is a replay on every other one until its window closes, after which Redis forgets it.
//!
//! A minimal RESP2 client over one reused TCP connection (no extra dependency): reconnects after
//! any error, bounds every step by a timeout and every reply by a size limit, and answers
//! [`ReplayError::Unavailable`] whenever Redis cannot give a definite answer, so the layer fails
//! closed (`503`) instead of accepting a proof it cannot vouch for.
//!
//! The expiry is sent relative (`PX` = the proof's remaining window by the layer's clock), not as
//! an absolute `PXAT`, so a clock difference between a replica and Redis cannot shorten or extend
//! what is remembered.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::replay::{BoxFuture, ReplayError, ReplayStore};

/// The default key prefix.
pub const DEFAULT_REDIS_PREFIX: &str = "mcp-enterprise:dpop:jti:";

/// The longest reply line accepted (status, error, length header).
const MAX_LINE: usize = 1024;
/// The longest bulk string accepted (only `PING` with an argument would send one back).
const MAX_BULK: usize = 1024;

/// A shared `jti` replay store in Redis (or any RESP2 server: Valkey, KeyDB, …).
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mcp_enterprise_dpop::{DpopLayer, ExternalOrigin, RedisReplayStore, TokenValidator};
///
/// # fn layer(validator: Arc<dyn TokenValidator>) -> Result<DpopLayer, Box<dyn std::error::Error>> {
/// let store = RedisReplayStore::new("10.0.0.5:6379")
///     .prefix("mcp-prod:dpop:")
///     .auth(None, "s3cret")
///     .io_timeout(Duration::from_millis(250));
/// Ok(DpopLayer::builder(validator, ExternalOrigin::Fixed("https://mcp.example.com".into()))
///     .replay_store(Arc::new(store))
///     .build()?)
/// # }
/// ```
#[must_use]
pub struct RedisReplayStore {
    addr: String,
    prefix: String,
    auth: Option<(Option<String>, String)>,
    connect_timeout: Duration,
    io_timeout: Duration,
    conn: Mutex<Option<BufReader<TcpStream>>>,
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("addr", &self.addr)
            .field("prefix", &self.prefix)
            .field("auth", &self.auth.as_ref().map(|(user, _)| (user, "***")))
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .finish_non_exhaustive()
    }
}

/// One RESP2 reply (only the kinds the commands used here can produce).
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Nil,
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

impl RedisReplayStore {
    /// A store on the Redis server at `addr` (`host:port`). Nothing connects until the first
    /// check (or [`ping`](Self::ping)).
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            auth: None,
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            conn: Mutex::new(None),
        }
    }

    /// The key prefix (default [`DEFAULT_REDIS_PREFIX`]); replicas that must see each other's
    /// proofs use the same one.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
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

    /// Checks that Redis answers (`PING`), e.g. at startup.
    pub async fn ping(&self) -> Result<(), ReplayError> {
        match self.run(&[b"PING"]).await? {
            Reply::Status(s) if s == "PONG" => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn set_nx(&self, key: &str, ttl: Duration) -> Result<bool, ReplayError> {
        let full = format!("{}{key}", self.prefix);
        let ms = ttl.as_millis().max(1).to_string();
        match self.run(&[b"SET", full.as_bytes(), b"1", b"NX", b"PX", ms.as_bytes()]).await? {
            Reply::Status(s) if s == "OK" => Ok(true),
            Reply::Nil => Ok(false),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends one command and reads its reply on the shared connection, connecting (again) when
    /// needed. Requests queue on the connection; the whole wait, queueing included, is bounded.
    async fn run(&self, args: &[&[u8]]) -> Result<Reply, ReplayError> {
        let budget = self.connect_timeout + self.io_timeout * 2;
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
                Err(f) if f.stale && was_reused => self.exchange(None, args).await.map_err(unavailable)?,
                Err(f) => return Err(unavailable(f)),
            };
            match reply {
                Reply::Status(_) | Reply::Nil => {
                    *slot = Some(conn);
                    Ok(reply)
                }
                // the connection may well still be in sync, but a fresh one costs little and also
                // recovers from e.g. a lost AUTH or a server that is not what we think
                Reply::Error(e) => Err(ReplayError::Unavailable(format!("redis error: {e}"))),
                other => Err(unexpected(&other)),
            }
        };
        tokio::time::timeout(budget, attempt)
            .await
            .unwrap_or_else(|_| Err(ReplayError::Unavailable(format!("redis at {} did not answer in time", self.addr))))
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
                    other => return Err(Failure::new(format!("AUTH: unexpected reply {}", kind(&other)))),
                }
            }
            Ok(conn)
        };
        tokio::time::timeout(self.connect_timeout, setup)
            .await
            .unwrap_or_else(|_| Err(Failure::new("timed out connecting")))
    }
}

impl ReplayStore for RedisReplayStore {
    fn check_and_insert<'a>(
        &'a self,
        key: &'a str,
        now: Duration,
        expires_at: Duration,
    ) -> BoxFuture<'a, Result<bool, ReplayError>> {
        Box::pin(self.set_nx(key, expires_at.saturating_sub(now)))
    }
}

fn unavailable(f: Failure) -> ReplayError {
    ReplayError::Unavailable(f.message)
}

fn kind(reply: &Reply) -> &'static str {
    match reply {
        Reply::Status(_) => "status",
        Reply::Error(_) => "error",
        Reply::Integer(_) => "integer",
        Reply::Bulk(_) => "bulk string",
        Reply::Nil => "nil",
    }
}

fn unexpected(reply: &Reply) -> ReplayError {
    ReplayError::Unavailable(format!("unexpected redis reply ({})", kind(reply)))
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
        assert_eq!(parse(b"$3\r\nabc\r\n").await, Ok(Reply::Bulk(b"abc".to_vec())));
        assert!(parse(b"$3\r\nabcd\r\n").await.is_err(), "bad terminator");
        assert!(parse(b"$999999\r\n").await.is_err(), "bulk bounded");
        assert!(parse(&[b'+'; 4000]).await.is_err(), "line bounded");
        assert!(parse(b"*1\r\n$1\r\na\r\n").await.is_err(), "arrays are not expected");
        assert!(parse(b"+OK").await.is_err(), "truncated");
        assert!(parse(b"+OK\n").await.is_err(), "bare LF");
        assert_eq!(encode(&[b"SET", b"k", b"1"]), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n");
    }

    #[tokio::test]
    async fn unreachable_and_silent_servers_are_unavailable_in_time() {
        // nobody listens
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr").port()
        };
        let store = RedisReplayStore::new(format!("127.0.0.1:{port}"));
        let t = Duration::from_secs(1_800_000_000);
        assert!(matches!(
            store.check_and_insert("k", t, t + Duration::from_secs(5)).await,
            Err(ReplayError::Unavailable(_))
        ));

        // accepts, reads, never answers
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = silent.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = silent.accept().await {
                conns.push(c);
            }
        });
        let store = RedisReplayStore::new(addr.to_string()).io_timeout(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let result = store.check_and_insert("k", t, t + Duration::from_secs(5)).await;
        assert!(matches!(result, Err(ReplayError::Unavailable(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "bounded by the timeouts");
        held.abort();
    }

    #[tokio::test]
    async fn hostile_replies_are_unavailable_and_the_connection_is_dropped() {
        let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = server.local_addr().expect("addr");
        let replies: &[&[u8]] = &[b"$100000\r\n", b":1\r\n", b"-READONLY replica\r\n", b"+OK\r\n", b"$-1\r\n"];
        let task = tokio::spawn(async move {
            let mut connections = 0;
            for reply in replies {
                let (mut c, _) = server.accept().await.expect("accept");
                connections += 1;
                let mut buf = [0u8; 512];
                let _ = c.read(&mut buf).await;
                c.write_all(reply).await.expect("write");
                // keep it open until the client has read
                let _ = c.read(&mut buf).await;
            }
            connections
        });
        let store = RedisReplayStore::new(addr.to_string());
        let t = Duration::from_secs(100);
        for _ in 0..3 {
            let r = store.check_and_insert("k", t, t + Duration::from_secs(5)).await;
            assert!(matches!(r, Err(ReplayError::Unavailable(_))), "{r:?}");
        }
        // each failure dropped its connection: these use new ones
        assert_eq!(store.check_and_insert("k", t, t + Duration::from_secs(5)).await, Ok(true));
        *store.conn.lock().await = None;
        assert_eq!(store.check_and_insert("k", t, t + Duration::from_secs(5)).await, Ok(false));
        drop(store);
        assert_eq!(task.await.expect("server"), 5);
    }

    #[test]
    fn debug_hides_the_password() {
        let store = RedisReplayStore::new("h:1").auth(Some("u"), "hunter2");
        let shown = format!("{store:?}");
        assert!(!shown.contains("hunter2") && shown.contains("***"), "{shown}");
    }
}
