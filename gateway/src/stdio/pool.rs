//! The pool of children serving 2026-07-28 clients.
//!
//! - A pooled child is a session the bridge opened itself (never visible to a client: its id is
//!   not handed out and a session-era request naming it gets `404`), initialised with the
//!   capabilities of the request that started it. Pooled children and client sessions together
//!   are bounded by `max_sessions`; idle timeout, crash handling (restart with backoff, the
//!   `initialize` replayed) and the process-group kill apply to both.
//! - Requests of the same principal and capabilities share children ([`Pool::key`]): a shared
//!   child takes any number of calls (the least busy one is chosen; another one is started past
//!   [`SHARED_CALLS`] while there is room). An **exclusive** child (the capabilities let it ask
//!   the client) serves one call at a time, so the requests it sends belong to that call.
//! - At the limit, an idle pooled child of any key is ended to make room; else the request gets
//!   `503` (`Retry-After: 5`, JSON-RPC `-32000`), as a session-era `initialize` does.

use std::sync::Arc;

use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

use super::modern::{Pool, initialize_for};
use super::session::Session;
use super::{Refusal, StdioBridge, error, new_session_id};

/// Calls a shared child takes before another one is started (when there is room).
const SHARED_CALLS: usize = 64;

impl StdioBridge {
    /// A pooled child for `pool` (started for `caps` when none fits), with `open` run on it while
    /// no other request can take it.
    pub(crate) fn acquire<T>(
        &self,
        pool: &Pool,
        caps: &Value,
        open: impl FnOnce(&Arc<Session>) -> T,
    ) -> Result<(Arc<Session>, T), Refusal> {
        let mut evicted = None;
        let chosen = {
            let mut sessions = self.inner.sessions();
            let mut candidates = sessions.values().filter(|s| s.pool.as_ref() == Some(pool) && !s.is_closed());
            let found = if pool.exclusive {
                candidates.find(|s| s.in_flight() == 0).cloned()
            } else {
                candidates.min_by_key(|s| s.in_flight()).cloned()
            };
            let max = self.inner.limits.max_sessions;
            let found = found.filter(|s| pool.exclusive || s.in_flight() < SHARED_CALLS || sessions.len() >= max);
            match found {
                Some(s) => {
                    let t = open(&s);
                    return Ok((s, t));
                }
                None => {
                    if sessions.len() >= max {
                        let idle = sessions
                            .iter()
                            .find(|(_, s)| s.pool.is_some() && s.in_flight() == 0)
                            .map(|(k, _)| k.clone());
                        match idle {
                            Some(k) => evicted = sessions.remove(&k),
                            None => {
                                tracing::warn!(route = %self.inner.route, max, "stdio request refused: the limit of children is reached");
                                let mut r = error(
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    -32000,
                                    &format!(
                                        "too many sessions: this MCP server runs at most {max} at once; retry later"
                                    ),
                                    None,
                                );
                                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                                return Err(Box::new(r));
                            }
                        }
                    }
                    let s = Session::new(new_session_id(), Arc::downgrade(&self.inner), Some(pool.clone()));
                    s.set_initialize(&initialize_for(caps));
                    sessions.insert(s.id.clone(), s.clone());
                    let t = open(&s);
                    (s, t)
                }
            }
        };
        if let Some(idle) = evicted {
            tracing::debug!(route = %self.inner.route, "idle pooled stdio server ended to make room");
            drop(idle.close());
        }
        Ok(chosen)
    }

    /// At the limit, ends an idle pooled child (to make room for a client session); whether one
    /// was ended.
    pub(crate) fn evict_idle_pooled(&self) -> bool {
        let idle = {
            let mut sessions = self.inner.sessions();
            let k = sessions.iter().find(|(_, s)| s.pool.is_some() && s.in_flight() == 0).map(|(k, _)| k.clone());
            k.and_then(|k| sessions.remove(&k))
        };
        idle.map(|s| drop(s.close())).is_some()
    }
}
