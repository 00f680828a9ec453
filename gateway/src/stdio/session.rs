//! One client session and its child: which answer goes to which SSE stream, what happens when the
//! child crashes (calls in flight answered with an error, the next message restarts it with
//! backoff and replays the client's `initialize`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::child::{Child, Event};
use super::modern::{self, ModernCall};
use super::{Inner, sse_event};

/// Events that may wait for a `GET` stream (server messages while no stream is open).
const BACKLOG: usize = 256;
/// SSE events that may wait for a slow client on one stream (then the child waits).
pub(crate) const STREAM_QUEUE: usize = 64;
/// The id of the `initialize` the bridge replays to a restarted child (its answer is dropped).
pub(crate) const REINIT_ID: &str = "mcp-enterprise-bridge-reinitialize";

/// How long the bridge waits for a child's answer to the `initialize` it wrote.
pub(crate) const INIT_WAIT: Duration = Duration::from_secs(30);

/// The JSON-RPC error code of a call the child could not finish (it exited).
pub(crate) const CHILD_EXITED: i64 = -32603;

/// A request's key: its id as JSON text.
pub(crate) fn key(id: &Value) -> String {
    id.to_string()
}

pub(super) struct Stream {
    pub(super) tx: mpsc::Sender<Bytes>,
    /// Requests of this POST not yet answered.
    outstanding: usize,
    /// Its events carry ids and are kept for a client resuming it (`Last-Event-ID`): it began
    /// with a priming event (protocol 2025-11-25 and later).
    resumable: bool,
    /// The sequence number of its last event.
    seq: u64,
    /// A 2026-07-28 call's stream: the key of its call (its messages are translated).
    pub(super) modern: Option<String>,
}

impl Stream {
    /// The stream of a 2026-07-28 call (one answer, not resumable, its messages translated).
    pub(super) fn modern(tx: mpsc::Sender<Bytes>, call: String) -> Self {
        Self { tx, outstanding: 1, resumable: false, seq: 0, modern: Some(call) }
    }
}

/// Events kept per session for resumption.
const LOG: usize = 512;

/// The SSE event id of event `seq` of stream `stream`.
fn event_id(stream: u64, seq: u64) -> String {
    format!("{stream}-{seq}")
}

/// Stream and sequence number of an event id.
pub(crate) fn parse_event_id(id: &str) -> Option<(u64, u64)> {
    let (stream, seq) = id.split_once('-')?;
    Some((stream.parse().ok()?, seq.parse().ok()?))
}

#[derive(Default)]
pub(super) struct State {
    child: Option<Arc<Child>>,
    generation: u64,
    /// The client's `initialize` request, replayed to a restarted child.
    initialize: Option<Value>,
    pub(super) streams: HashMap<u64, Stream>,
    pub(super) next_stream: u64,
    /// Request id → (stream, progress token).
    pub(super) requests: HashMap<String, (u64, Option<String>)>,
    /// Request id → when it was written to the child (the upstream latency metric).
    pub(super) asked: HashMap<String, Instant>,
    /// The child's answer to the `initialize` the bridge wrote (a pooled child's, for
    /// `server/discover`).
    pub(super) init_result: Option<Value>,
    /// 2026-07-28 calls in flight on a pooled child, by their key (the id the child sees).
    pub(super) modern: HashMap<String, ModernCall>,
    get: Option<mpsc::Sender<Bytes>>,
    backlog: VecDeque<Bytes>,
    /// Events of resumable streams: (stream, seq, event).
    log: VecDeque<(u64, u64, Bytes)>,
    crashes: VecDeque<Instant>,
    closed: bool,
}

/// A client session: one child at a time.
pub(crate) struct Session {
    pub(crate) id: String,
    inner: Weak<Inner>,
    state: Mutex<State>,
    last_used: Mutex<Instant>,
    /// Serialises (re)starts of the child.
    starting: tokio::sync::Mutex<()>,
    /// A child of the 2026-07-28 pool (`None`: a client's session).
    pub(crate) pool: Option<modern::Pool>,
    /// Told when the child answers the `initialize` the bridge wrote.
    pub(super) init_ready: tokio::sync::Notify,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &"<redacted>").finish_non_exhaustive()
    }
}

/// Why a message could not be given to the child.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The session ended.
    Closed,
    /// The child cannot be started (logged with the reason).
    Spawn,
}

impl Session {
    pub(crate) fn new(id: String, inner: Weak<Inner>, pool: Option<modern::Pool>) -> Arc<Self> {
        Arc::new(Self {
            id,
            inner,
            state: Mutex::new(State::default()),
            last_used: Mutex::new(Instant::now()),
            starting: tokio::sync::Mutex::new(()),
            pool,
            init_ready: tokio::sync::Notify::new(),
        })
    }

    pub(super) fn inner(&self) -> Option<Arc<Inner>> {
        self.inner.upgrade()
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// Idle: nothing in flight, no open `GET` stream, and unused for `timeout`.
    pub(crate) fn idle_for(&self, timeout: Duration) -> bool {
        let state = self.lock();
        let get_open = state.get.as_ref().is_some_and(|g| !g.is_closed());
        let last = *self.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.requests.is_empty() && !get_open && last.elapsed() >= timeout
    }

    pub(crate) fn child_pid(&self) -> Option<i32> {
        self.lock().child.as_ref().map(|c| c.pid())
    }

    /// Ends the session: its child is killed (and returned, to wait for), its streams end.
    pub(crate) fn close(&self) -> Option<Arc<Child>> {
        let mut state = self.lock();
        state.closed = true;
        let child = state.child.take();
        if let Some(child) = &child {
            child.kill();
        }
        state.streams.clear();
        state.requests.clear();
        state.asked.clear();
        state.modern.clear();
        state.get = None;
        child
    }

    /// Calls in flight (a parked 2026-07-28 call included).
    pub(crate) fn in_flight(&self) -> usize {
        self.lock().requests.len()
    }

    /// Whether the session has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Opens a stream for the requests of one POST; returns its receiver. A `resumable` one
    /// starts with a priming event (an id and empty data).
    pub(crate) fn open_stream(&self, ids: &[(Value, Option<String>)], resumable: bool) -> (u64, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let mut state = self.lock();
        let n = state.next_stream;
        state.next_stream += 1;
        if resumable {
            let _ = tx.try_send(Bytes::from(format!("id: {}\ndata: \n\n", event_id(n, 0))));
        }
        state.streams.insert(n, Stream { tx, outstanding: ids.len(), resumable, seq: 0, modern: None });
        for (id, token) in ids {
            state.requests.insert(key(id), (n, token.clone()));
            state.asked.insert(key(id), Instant::now());
        }
        (n, rx)
    }

    /// A client resuming a stream after `last_event_id`: the kept events after it, then (while
    /// the stream still has requests to answer) what comes next. `None`: not a stream of this
    /// session.
    pub(crate) fn resume(&self, last_event_id: &str) -> Option<mpsc::Receiver<Bytes>> {
        let (stream, after) = parse_event_id(last_event_id)?;
        let mut state = self.lock();
        if stream >= state.next_stream {
            return None;
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE + LOG);
        for (_, _, event) in state.log.iter().filter(|(s, q, _)| *s == stream && *q > after) {
            let _ = tx.try_send(event.clone());
        }
        if let Some(s) = state.streams.get_mut(&stream) {
            s.tx = tx;
        }
        Some(rx)
    }

    /// Opens the `GET` stream; `None` when one is open already. The backlog is sent first.
    pub(crate) fn open_get(&self) -> Option<mpsc::Receiver<Bytes>> {
        let mut state = self.lock();
        if state.get.as_ref().is_some_and(|g| !g.is_closed()) {
            return None;
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE + BACKLOG);
        while let Some(event) = state.backlog.pop_front() {
            let _ = tx.try_send(event);
        }
        state.get = Some(tx);
        Some(rx)
    }

    /// Forgets stream `n` and its requests (they never reached the child).
    pub(crate) fn forget_stream(&self, n: u64) {
        let mut state = self.lock();
        state.streams.remove(&n);
        state.requests.retain(|_, (s, _)| *s != n);
        let State { asked, requests, modern, .. } = &mut *state;
        asked.retain(|id, _| requests.contains_key(id));
        modern.retain(|id, _| requests.contains_key(id));
    }

    /// A stream whose client went away: its unanswered requests are cancelled at the child.
    pub(crate) fn stream_dropped(self: &Arc<Self>, stream: u64) {
        let ids: Vec<String> = {
            let mut state = self.lock();
            match state.streams.get(&stream) {
                None => return,
                // the client may resume it: its answers are kept
                Some(s) if s.resumable => return,
                Some(_) => {}
            }
            state.streams.remove(&stream);
            let ids: Vec<String> =
                state.requests.iter().filter(|(_, (s, _))| *s == stream).map(|(k, _)| k.clone()).collect();
            for id in &ids {
                state.requests.remove(id);
                state.asked.remove(id);
                state.modern.remove(id);
            }
            ids
        };
        if ids.is_empty() {
            return;
        }
        let session = self.clone();
        tokio::spawn(async move {
            for id in ids {
                let Ok(id) = serde_json::from_str::<Value>(&id) else { continue };
                let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": id, "reason": "the client closed the stream"}});
                let _ = session.send_existing(&cancel).await;
            }
        });
    }

    /// Remembers the client's `initialize` (replayed to a restarted child).
    pub(crate) fn set_initialize(&self, request: &Value) {
        self.lock().initialize = Some(request.clone());
    }

    /// Writes `message` to the child, starting (or restarting) it first when needed.
    pub(crate) async fn send(self: &Arc<Self>, message: &Value) -> Result<(), SendError> {
        let line = Bytes::from(serde_json::to_vec(message).unwrap_or_default());
        for _ in 0..2 {
            let child = self.child().await?;
            if child.write(line.clone()).await {
                self.touch();
                return Ok(());
            }
            // it exited meanwhile: once more with a fresh one
            self.child_gone(&child);
        }
        Err(SendError::Spawn)
    }

    /// Writes to the running child only (nothing when there is none).
    pub(super) async fn send_existing(&self, message: &Value) -> bool {
        let child = self.lock().child.clone();
        match child {
            Some(child) => child.write(Bytes::from(serde_json::to_vec(message).unwrap_or_default())).await,
            None => false,
        }
    }

    fn child_gone(&self, child: &Arc<Child>) {
        let mut state = self.lock();
        if state.child.as_ref().is_some_and(|c| Arc::ptr_eq(c, child)) {
            state.child = None;
        }
    }

    /// The running child, else a new one (after the backoff of recent crashes), which gets the
    /// client's `initialize` replayed.
    pub(super) async fn child(self: &Arc<Self>) -> Result<Arc<Child>, SendError> {
        if let Some(child) = self.lock().child.clone() {
            return Ok(child);
        }
        let _starting = self.starting.lock().await;
        let (delay, replay) = {
            let state = self.lock();
            if state.closed {
                return Err(SendError::Closed);
            }
            if let Some(child) = state.child.clone() {
                return Ok(child);
            }
            let recent = state.crashes.iter().filter(|t| t.elapsed() < super::CRASH_WINDOW).count();
            // a restart (not the first start) gets the client's initialize replayed
            // (a pooled child gets the bridge's own initialize at its first start too)
            let replay = state.generation > 0 || self.pool.is_some();
            (backoff(recent), state.initialize.clone().filter(|_| replay))
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let inner = self.inner.upgrade().ok_or(SendError::Closed)?;
        let (child, events_rx) = match inner.take_spare() {
            Some(spare) => spare,
            None => inner.start_child().map_err(|e| {
                tracing::warn!(route = %inner.route, program = %inner.command.program, error = %e, "the stdio server cannot be started");
                SendError::Spawn
            })?,
        };
        let generation = {
            let mut state = self.lock();
            if state.closed {
                child.kill();
                return Err(SendError::Closed);
            }
            state.generation += 1;
            state.child = Some(child.clone());
            state.init_result = None;
            state.generation
        };
        tracing::debug!(route = %inner.route, pid = child.pid(), generation, "stdio server started");
        tokio::spawn(pump(Arc::downgrade(self), generation, events_rx));
        if let Some(mut init) = replay {
            init["id"] = Value::String(REINIT_ID.into());
            child.write(Bytes::from(serde_json::to_vec(&init).unwrap_or_default())).await;
            // `notifications/initialized` only after the answer, as a client does: a server acting
            // on it (registering what the client's capabilities allow) needs the initialize done
            if self.init_result(INIT_WAIT).await.is_none() {
                tracing::warn!(route = %inner.route, pid = child.pid(), "the stdio server did not answer initialize in time");
            }
            let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            child.write(Bytes::from(serde_json::to_vec(&initialized).unwrap_or_default())).await;
        }
        Ok(child)
    }

    /// A message from the child of `generation`.
    async fn child_message(&self, message: Value) {
        let is_response = message.get("method").is_none() && message.get("id").is_some();
        if self.pool.is_some() && !is_response && message.get("id").is_some() {
            // a request of a pooled child: turned into an `input_required` result (MRTR)
            return self.pooled_child_request(message).await;
        }
        let target = {
            let mut state = self.lock();
            let stream = if is_response {
                let id = message.get("id").map(key).unwrap_or_default();
                if id == key(&Value::String(REINIT_ID.into())) {
                    state.init_result = Some(message);
                    self.init_ready.notify_waiters();
                    return;
                }
                match state.requests.remove(&id) {
                    Some((stream, _)) => {
                        if let (Some(asked), Some(inner)) = (state.asked.remove(&id), self.inner.upgrade()) {
                            inner.answered(asked.elapsed());
                        }
                        Some(stream)
                    }
                    None => {
                        tracing::debug!("stdio server answered a request no stream waits for; dropped");
                        return;
                    }
                }
            } else if let Some(pool) = &self.pool {
                modern::notification_stream(&state, pool, &message)
            } else {
                server_message_stream(&state, &message)
            };
            match stream {
                Some(n) => state.deliver(n, &message, is_response),
                // a pooled child's message no call waits for: nobody to give it to
                None if self.pool.is_some() => None,
                None => route_elsewhere(&mut state, &message),
            }
        };
        if let Some((tx, event)) = target {
            let _ = tx.send(event).await;
        }
    }

    /// The child of `generation` exited: calls in flight get an error, the next message starts a
    /// new child.
    fn exited(&self, generation: u64, status: &str) {
        let inner = self.inner.upgrade();
        let mut state = self.lock();
        if state.generation != generation || state.closed {
            return;
        }
        state.child = None;
        let now = Instant::now();
        state.crashes.push_back(now);
        while state.crashes.front().is_some_and(|t| t.elapsed() >= super::CRASH_WINDOW) {
            state.crashes.pop_front();
        }
        let recent = state.crashes.len();
        if let Some(inner) = &inner {
            inner.crashed(recent, status);
        }
        let requests: Vec<(String, (u64, Option<String>))> = state.requests.drain().collect();
        state.asked.clear();
        if let Some(inner) = &inner {
            inner.failed("exited", requests.len());
        }
        for (id, (stream, _)) in requests {
            let id: Value = serde_json::from_str(&id).unwrap_or(Value::Null);
            let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": CHILD_EXITED,
                "message": "the stdio MCP server exited before answering; the next call starts a new one"}});
            if let Some((tx, event)) = state.deliver(stream, &error, true) {
                let _ = tx.try_send(event);
            }
        }
        state.streams.clear();
        state.modern.clear();
    }
}

impl State {
    /// [`event_for`](Self::event_for), a 2026-07-28 call's message translated first.
    pub(super) fn deliver(
        &mut self,
        n: u64,
        message: &Value,
        is_response: bool,
    ) -> Option<(mpsc::Sender<Bytes>, Bytes)> {
        match self.streams.get(&n).and_then(|s| s.modern.clone()) {
            None => self.event_for(n, message, is_response),
            Some(call) => {
                let translated = modern::outgoing(self, &call, message, is_response);
                self.event_for(n, &translated, is_response)
            }
        }
    }

    /// The event carrying `message` on stream `n` (with an id, and kept, when it is resumable)
    /// and where to send it; an answer counts against the stream's outstanding requests and the
    /// stream ends after its last one.
    pub(super) fn event_for(
        &mut self,
        n: u64,
        message: &Value,
        is_response: bool,
    ) -> Option<(mpsc::Sender<Bytes>, Bytes)> {
        let s = self.streams.get_mut(&n)?;
        let event = if s.resumable {
            s.seq += 1;
            sse_event(Some(&event_id(n, s.seq)), message)
        } else {
            sse_event(None, message)
        };
        let seq = s.seq;
        let resumable = s.resumable;
        let tx = s.tx.clone();
        if is_response {
            s.outstanding = s.outstanding.saturating_sub(1);
            if s.outstanding == 0 {
                // the stream ends once its last answer is sent
                self.streams.remove(&n);
            }
        }
        if resumable {
            if self.log.len() >= LOG {
                self.log.pop_front();
            }
            self.log.push_back((n, seq, event.clone()));
        }
        Some((tx, event))
    }
}

/// The POST stream a notification or request from the child goes to: progress to the stream of
/// the request that asked for it; anything else to the oldest POST stream still open (the client
/// reads it while it waits: where a server's request made while handling a call belongs).
fn server_message_stream(state: &State, message: &Value) -> Option<u64> {
    let method = message.get("method").and_then(Value::as_str).unwrap_or_default();
    if method == "notifications/progress"
        && let Some(token) = message.pointer("/params/progressToken").map(Value::to_string)
        && let Some(stream) = state.requests.values().find(|(_, t)| t.as_deref() == Some(token.as_str())).map(|r| r.0)
        && state.streams.contains_key(&stream)
    {
        return Some(stream);
    }
    state.streams.iter().filter(|(_, s)| !s.tx.is_closed()).map(|(n, _)| *n).min()
}

/// With no POST stream open: the `GET` stream, else a bounded backlog the next `GET` stream gets.
fn route_elsewhere(state: &mut State, message: &Value) -> Option<(mpsc::Sender<Bytes>, Bytes)> {
    let event = sse_event(None, message);
    if let Some(get) = state.get.as_ref().filter(|g| !g.is_closed()) {
        return Some((get.clone(), event));
    }
    if state.backlog.len() >= BACKLOG {
        state.backlog.pop_front();
        tracing::warn!("no stream open for the stdio server's messages; the oldest waiting one was dropped");
    }
    state.backlog.push_back(event);
    None
}

/// The wait before a restart after `recent` crashes: none for the first, then doubling from
/// 250 ms up to 30 s.
fn backoff(recent: usize) -> Duration {
    match recent {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(250u64.saturating_mul(1 << (n - 2).min(7))).min(Duration::from_secs(30)),
    }
}

/// Routes a child's events until it exits.
async fn pump(session: Weak<Session>, generation: u64, mut events: mpsc::Receiver<Event>) {
    while let Some(event) = events.recv().await {
        let Some(session) = session.upgrade() else { return };
        match event {
            Event::Message(message) => session.child_message(message).await,
            Event::Exited(status) => {
                session.exited(generation, &status);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_millis(250));
        assert_eq!(backoff(3), Duration::from_millis(500));
        assert_eq!(backoff(50), Duration::from_secs(30));
    }
}
