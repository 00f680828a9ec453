//! Multi round-trip requests (MRTR, 2026-07-28): a request a pooled child sends while handling a
//! call (`sampling/createMessage`, `elicitation/create`, `roots/list`) ends the call's stream with
//! `resultType: "input_required"`, its `inputRequests` and a `requestState` (128 random bits, the
//! handle of the call parked at the child). The client's retry of the call carrying that
//! `requestState` and its `inputResponses` gets the answers written back to the child that still
//! waits, and the child's final result (or the next `input_required`) on the retry's stream.
//!
//! Bounds: only an exclusive child (one call at a time) asks, so at most `max_sessions` calls are
//! parked; a parked call not retried within `input_timeout` is abandoned (the child's requests are
//! answered with an error and the call cancelled at the child); a state is used once; a retry with
//! an unknown, used or expired state, or made for another request or by another principal, gets
//! `400` with JSON-RPC `-32602`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use mcp_enterprise_core::McpRequest;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::modern::{ModernCall, answer, principal_of};
use super::session::{STREAM_QUEUE, Session, State, Stream};
use super::{Inner, Plain, StdioBridge, StreamBody, error, new_session_id};

/// The calls that may ask the client for input (the others never do, by the spec).
const ASKING_METHODS: &[&str] = &["tools/call", "prompts/get", "resources/read"];

/// A call parked at a child until the client retries it with its input.
#[derive(Debug)]
pub(crate) struct Parked {
    /// The session (pooled child) holding the call.
    session: String,
    /// The call's key at the child.
    call: String,
    method: String,
    target: Option<String>,
    principal: Option<String>,
    expires: Instant,
}

impl Inner {
    fn park(&self, state: String, parked: Parked) {
        self.parked().insert(state, parked);
    }

    /// Parked calls whose time is up (removed).
    pub(crate) fn expired_parked(&self) -> Vec<(String, String)> {
        let now = Instant::now();
        let mut parked = self.parked();
        let expired: Vec<String> = parked.iter().filter(|(_, p)| p.expires <= now).map(|(k, _)| k.clone()).collect();
        expired.into_iter().filter_map(|k| parked.remove(&k)).map(|p| (p.session, p.call)).collect()
    }
}

fn child_error(id: &Value, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": message}})
}

impl Session {
    /// Opens the stream of a 2026-07-28 call `ck` (its key at the child).
    pub(crate) fn open_modern(
        &self,
        ck: String,
        mut call: ModernCall,
        token: Option<String>,
    ) -> (u64, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let mut state = self.lock();
        let n = state.next_stream;
        state.next_stream += 1;
        state.streams.insert(n, Stream::modern(tx, ck.clone()));
        state.requests.insert(ck.clone(), (n, token));
        state.asked.insert(ck.clone(), Instant::now());
        call.stream = Some(n);
        state.modern.insert(ck, call);
        (n, rx)
    }

    /// The child's answer to the bridge's `initialize`, waiting up to `timeout` for it.
    pub(crate) async fn init_result(&self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.init_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = self.lock().init_result.clone() {
                return Some(result);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// A request from a pooled child: shown to the client of the call it belongs to, else
    /// answered with an error (nobody to ask).
    pub(crate) async fn pooled_child_request(&self, message: Value) {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let exclusive = self.pool.as_ref().is_some_and(|p| p.exclusive);
        let (reply, target) = {
            let mut state = self.lock();
            let call = state
                .modern
                .iter()
                .find(|(_, c)| ASKING_METHODS.contains(&c.method.as_str()))
                .map(|(k, _)| k.clone())
                .filter(|_| exclusive);
            match call {
                None => (
                    Some(child_error(
                        &id,
                        "no client can be asked: the bridge serves this server to 2026-07-28 clients and no call of theirs waits for this request",
                    )),
                    None,
                ),
                Some(ck) => {
                    let key = match &id {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let request = json!({"method": message.get("method"), "params": message.get("params").cloned().unwrap_or_else(|| json!({}))});
                    if let Some(call) = state.modern.get_mut(&ck) {
                        call.pending.push((key, id, request));
                    }
                    (None, self.present(&mut state, &ck))
                }
            }
        };
        if let Some(reply) = reply {
            self.send_existing(&reply).await;
        }
        if let Some((tx, event)) = target {
            let _ = tx.send(event).await;
        }
    }

    /// Ends call `ck`'s stream with `input_required` for its pending requests (when the client
    /// waits on a stream and there are some), parking the call under a new `requestState`.
    fn present(&self, state: &mut State, ck: &str) -> Option<(mpsc::Sender<Bytes>, Bytes)> {
        let inner = self.inner()?;
        let call = state.modern.get_mut(ck)?;
        let n = call.stream?;
        if call.pending.is_empty() {
            return None;
        }
        let mut requests = Map::new();
        for (key, id, request) in call.pending.drain(..) {
            requests.insert(key.clone(), request);
            call.asked.push((key, id));
        }
        let token = new_session_id();
        let message = json!({"jsonrpc": "2.0", "id": call.client_id, "result": {
            "resultType": "input_required", "inputRequests": requests, "requestState": token}});
        call.stream = None;
        let parked = Parked {
            session: self.id.clone(),
            call: ck.to_owned(),
            method: call.method.clone(),
            target: call.target.clone(),
            principal: call.principal.clone(),
            expires: Instant::now() + inner.limits.input_timeout,
        };
        inner.park(token, parked);
        state.event_for(n, &message, true)
    }

    /// The client retried call `ck` with `responses`: a new stream for it, the answers to write
    /// to the child, and the next `input_required` at once when the child asked more meanwhile.
    #[allow(clippy::type_complexity)]
    fn resume_call(
        &self,
        ck: &str,
        client_id: Value,
        client_token: Option<Value>,
        responses: &Map<String, Value>,
    ) -> Result<(u64, mpsc::Receiver<Bytes>, Vec<Value>, Option<(mpsc::Sender<Bytes>, Bytes)>), Resume> {
        let mut state = self.lock();
        if !state.requests.contains_key(ck) {
            return Err(Resume::Gone);
        }
        let call = state.modern.get_mut(ck).ok_or(Resume::Gone)?;
        if let Some((missing, _)) = call.asked.iter().find(|(k, _)| !responses.contains_key(k)) {
            return Err(Resume::Missing(missing.clone()));
        }
        let answers: Vec<Value> =
            call.asked.drain(..).map(|(k, id)| json!({"jsonrpc": "2.0", "id": id, "result": responses[&k]})).collect();
        call.client_id = client_id;
        if call.client_token.is_some() && client_token.is_some() {
            call.client_token = client_token;
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let n = state.next_stream;
        state.next_stream += 1;
        state.streams.insert(n, Stream::modern(tx, ck.to_owned()));
        if let Some(r) = state.requests.get_mut(ck) {
            r.0 = n;
        }
        if let Some(call) = state.modern.get_mut(ck) {
            call.stream = Some(n);
        }
        let now = self.present(&mut state, ck);
        Ok((n, rx, answers, now))
    }

    /// Gives up parked call `ck`: the child's requests get an error, the call is cancelled.
    pub(crate) async fn abandon(&self, ck: &str, why: &str) {
        let messages: Vec<Value> = {
            let mut state = self.lock();
            let Some(call) = state.modern.remove(ck) else { return };
            state.requests.remove(ck);
            state.asked.remove(ck);
            let mut out: Vec<Value> = call.asked.iter().map(|(_, id)| child_error(id, why)).collect();
            out.extend(call.pending.iter().map(|(_, id, _)| child_error(id, why)));
            if let Ok(id) = serde_json::from_str::<Value>(ck) {
                out.push(json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": id, "reason": why}}));
            }
            out
        };
        for m in messages {
            self.send_existing(&m).await;
        }
    }
}

/// Why a retry cannot resume its call.
enum Resume {
    /// The call ended (its child exited).
    Gone,
    /// `inputResponses` lacks this key.
    Missing(String),
}

fn invalid(message: &str, id: Option<&Value>) -> http::Response<Plain> {
    error(StatusCode::BAD_REQUEST, -32602, message, id)
}

impl StdioBridge {
    /// A retry carrying `requestState`.
    pub(crate) async fn retry(
        &self,
        parts: &http::request::Parts,
        request: &McpRequest,
        id: Option<Value>,
    ) -> http::Response<Plain> {
        let params = request.params().cloned().unwrap_or_default();
        let Some(state) = params.get("requestState").and_then(Value::as_str) else {
            return invalid("Invalid params: requestState must be a string", id.as_ref());
        };
        let Some(parked) = self.inner.parked().remove(state) else {
            return invalid(
                "Invalid params: unknown or expired requestState (it is used once, and expires when the input is not given in time)",
                id.as_ref(),
            );
        };
        if parked.expires <= Instant::now() {
            self.inner.park(state.to_owned(), parked);
            return invalid("Invalid params: expired requestState", id.as_ref());
        }
        if request.method() != Some(parked.method.as_str())
            || request.target() != parked.target.as_deref()
            || principal_of(parts) != parked.principal
        {
            self.inner.park(state.to_owned(), parked);
            return invalid(
                "Invalid params: this requestState belongs to another request (method, name or caller differ)",
                id.as_ref(),
            );
        }
        let Some(session) = self.inner.sessions().get(&parked.session).cloned() else {
            return error(
                StatusCode::OK,
                -32603,
                "the stdio MCP server waiting for this input exited; call again",
                id.as_ref(),
            );
        };
        let empty = Map::new();
        let responses = params.get("inputResponses").and_then(Value::as_object).unwrap_or(&empty);
        let client_token = params.get("_meta").and_then(|m| m.get("progressToken")).cloned();
        match session.resume_call(&parked.call, id.clone().unwrap_or(Value::Null), client_token, responses) {
            Err(Resume::Gone) => error(
                StatusCode::OK,
                -32603,
                "the stdio MCP server waiting for this input exited; call again",
                id.as_ref(),
            ),
            Err(Resume::Missing(key)) => {
                self.inner.park(state.to_owned(), parked);
                invalid(&format!("Invalid params: inputResponses lacks {key:?}"), id.as_ref())
            }
            Ok((n, rx, answers, now)) => {
                session.touch();
                for a in &answers {
                    session.send_existing(a).await;
                }
                if let Some((tx, event)) = now {
                    let _ = tx.send(event).await;
                }
                answer(StreamBody { rx, owner: Some((std::sync::Arc::downgrade(&session), n)), first: None }).await
            }
        }
    }
}
