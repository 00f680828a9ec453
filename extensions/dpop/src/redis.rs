//! A [`ReplayStore`] shared by every replica through Redis (feature `redis`): each proof is
//! recorded with one atomic `SET <prefix><key> 1 NX PX <ms>`, so a proof accepted by one replica
//! is a replay on every other one until its window closes, after which Redis forgets it.
//!
//! It talks through the minimal RESP2 client of `core` ([`RedisClient`]: one reused connection,
//! every step bounded by a timeout and every reply by a size limit) and answers
//! [`ReplayError::Unavailable`] whenever Redis cannot give a definite answer, so the layer fails
//! closed (`503`) instead of accepting a proof it cannot vouch for.
//!
//! The expiry is sent relative (`PX` = the proof's remaining window by the layer's clock), not as
//! an absolute `PXAT`, so a clock difference between a replica and Redis cannot shorten or extend
//! what is remembered.

use std::fmt;
use std::time::Duration;

use mcp_enterprise_core::redis::{RedisClient, Reply};

use crate::replay::{BoxFuture, ReplayError, ReplayStore};

/// The default key prefix.
pub const DEFAULT_REDIS_PREFIX: &str = "mcp-enterprise:dpop:jti:";

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
    client: RedisClient,
    prefix: String,
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore").field("client", &self.client).field("prefix", &self.prefix).finish()
    }
}

impl RedisReplayStore {
    /// A store on the Redis server at `addr` (`host:port`). Nothing connects until the first
    /// check (or [`ping`](Self::ping)).
    pub fn new(addr: impl Into<String>) -> Self {
        Self { client: RedisClient::new(addr), prefix: DEFAULT_REDIS_PREFIX.to_owned() }
    }

    /// The key prefix (default [`DEFAULT_REDIS_PREFIX`]); replicas that must see each other's
    /// proofs use the same one.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Authenticates each new connection: `AUTH [username] password`.
    pub fn auth(mut self, username: Option<&str>, password: impl Into<String>) -> Self {
        self.client = self.client.auth(username, password);
        self
    }

    /// Time allowed to connect and authenticate (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.connect_timeout(timeout);
        self
    }

    /// Time allowed for one command and its reply (default 1 s).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.io_timeout(timeout);
        self
    }

    /// The server address.
    pub fn addr(&self) -> &str {
        self.client.addr()
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

    /// One command; the connection is kept only after the replies these commands expect.
    async fn run(&self, args: &[&[u8]]) -> Result<Reply, ReplayError> {
        let reply = self
            .client
            .command(args, |r| matches!(r, Reply::Status(_) | Reply::Nil))
            .await
            .map_err(|e| ReplayError::Unavailable(e.to_string()))?;
        match reply {
            // the connection may well still be in sync, but a fresh one costs little and also
            // recovers from e.g. a lost AUTH or a server that is not what we think
            Reply::Error(e) => Err(ReplayError::Unavailable(format!("redis error: {e}"))),
            other => Ok(other),
        }
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

fn unexpected(reply: &Reply) -> ReplayError {
    ReplayError::Unavailable(format!("unexpected redis reply ({})", reply.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn unreachable_servers_are_unavailable() {
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
        store.client.disconnect().await;
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
