//! A fake OpenAI Realtime (GA) server over a loopback WebSocket, which can speak GPT-Live
//! (`/v1/live/sessions`) instead.
//!
//! GPT-Live ([`FakeRealtime::start_live`]): nothing is sent on connect; `session.start` is
//! answered with `session.started` (the received session, with an id), `session.close` with
//! `session.closed`, and every client event is checked against the GPT-Live schema. Server
//! events are built with the functions of [`live`].
//!
//! [`FakeRealtime::start`] listens on `127.0.0.1:0`. Every connection is recorded: the
//! upgrade request (path and query, headers), every client event (parsed JSON, each checked
//! with [`validate_client_event`]), and how the connection ended. On connect the fake sends
//! `session.created`; on every `session.update` it answers `session.updated` with the
//! received session merged into its own. Everything else is driven by the test through a
//! [`ConnHandle`]: push server events built with the free functions of this module
//! ([`audio_delta`], [`function_call_events`], …), close cleanly, or drop the TCP connection.
//!
//! All waits are event-driven and bounded by the `Duration` the caller passes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::DEFAULT_TIMEOUT;
use crate::fake_model::{ModelFn, ModelInput, ModelReply, reply_events};
use crate::realtime_schema::{self, Side, validate_client_event, validate_live_client_event};
use crate::signal::Signal;

/// The model named in `session.created` when the client's URL has no `?model=`.
pub const DEFAULT_MODEL: &str = "gpt-realtime";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks is a bug in this file, not in the system
    // under test; keep going with the data as it is.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

static EVENT_SEQ: AtomicU64 = AtomicU64::new(1);

/// A fresh server `event_id` (`event_fake000001`, …).
pub fn next_event_id() -> String {
    format!("event_fake{:06}", EVENT_SEQ.fetch_add(1, Ordering::Relaxed))
}

/// How a connection to the fake ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnEnd {
    /// The client sent a WebSocket close frame (code and reason, if the frame had them).
    ClientCloseFrame {
        /// Close code (1000 = normal).
        code: Option<u16>,
        /// Close reason text.
        reason: String,
    },
    /// The client's TCP connection ended (or failed) without a close frame.
    ClientDropped {
        /// What the WebSocket layer reported.
        detail: String,
    },
    /// The test closed the connection with [`ConnHandle::close`].
    ServerClose,
    /// The test dropped the TCP connection with [`ConnHandle::drop_tcp`], or the fake was
    /// dropped.
    ServerDropped,
}

enum Command {
    Send(Value),
    Close,
    DropTcp,
    GoSilent,
    SendRaw(String),
}

/// GPT-Live: the backend's work as the server counts it, to refuse what the real server
/// refuses (a `response.create` while a response runs or a result is owed; a result for a
/// call it does not expect).
#[derive(Default)]
struct LiveBook {
    running: std::collections::HashSet<String>,
    /// Announced calls: delegation, and whether answered.
    calls: std::collections::HashMap<String, (String, bool)>,
    discarded: std::collections::HashSet<String>,
    outputs: usize,
}

impl LiveBook {
    /// Notes what a server event the fake sends says about the backend.
    fn observe(&mut self, event: &Value) {
        if event.get("type").and_then(Value::as_str) != Some("response.event") {
            return;
        }
        let delegation = event["delegation_id"]
            .as_str()
            .unwrap_or("backend")
            .to_owned();
        let inner = &event["event"];
        match inner["type"].as_str().unwrap_or_default() {
            "response.created" => {
                self.running.insert(delegation);
            }
            "response.output_item.done"
                if inner["item"]["type"] == "function_call"
                    && inner["item"]["status"] == "completed" =>
            {
                let call = inner["item"]["call_id"].as_str().unwrap_or_default();
                self.calls.insert(call.to_owned(), (delegation, false));
            }
            "response.completed" => {
                self.running.remove(&delegation);
            }
            "response.failed" | "response.incomplete" => {
                self.running.remove(&delegation);
                let dropped: Vec<String> = self
                    .calls
                    .iter()
                    .filter(|(_, (d, answered))| *d == delegation && !answered)
                    .map(|(c, _)| c.clone())
                    .collect();
                for call in dropped {
                    self.calls.remove(&call);
                    self.discarded.insert(call);
                }
            }
            _ => {}
        }
    }

    /// Checks a client event; the reason it would be refused.
    fn check(&mut self, event: &Value) -> Option<String> {
        match event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "response.item.create" => {
                let call = event["item"]["call_id"].as_str().unwrap_or_default();
                if self.discarded.contains(call) {
                    return Some(format!("a result for {call}, whose response failed"));
                }
                match self.calls.get_mut(call) {
                    Some((_, answered)) if !*answered => {
                        *answered = true;
                        self.outputs += 1;
                        None
                    }
                    Some(_) => Some(format!("a second result for {call}")),
                    None => Some(format!("a result for {call}, which was never called")),
                }
            }
            "response.create" => {
                let owed: Vec<&String> = self
                    .calls
                    .iter()
                    .filter(|(_, (_, answered))| !answered)
                    .map(|(c, _)| c)
                    .collect();
                let problem = if !self.running.is_empty() {
                    Some(format!("response.create while {:?} runs", self.running))
                } else if !owed.is_empty() {
                    Some(format!("response.create while {owed:?} have no result"))
                } else if self.outputs == 0 {
                    Some("response.create with no result queued since the last".to_owned())
                } else {
                    None
                };
                self.outputs = 0;
                problem
            }
            _ => None,
        }
    }
}

struct ConnState {
    live: LiveBook,
    /// The scripted model's conversation: client items and its own, in order.
    model_items: Vec<Value>,
    model_responses: u64,
    events: Vec<Value>,
    protocol_errors: Vec<String>,
    schema_violations: Vec<String>,
    session: Value,
    end: Option<ConnEnd>,
    /// Reported in every `session.updated` as the audio format both ways, whatever was
    /// asked (a misbehaving engine).
    audio_override: Option<Value>,
    /// Sends nothing more, not even replies: a stalled engine (it still reads).
    silent: bool,
    /// Waits this long before each event it sends: a slow engine.
    delay: Option<Duration>,
}

struct Conn {
    index: usize,
    path: String,
    headers: Vec<(String, String)>,
    state: Mutex<ConnState>,
    cmd: mpsc::UnboundedSender<Command>,
}

/// Which protocol a fake speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Realtime,
    Live,
}

struct Shared {
    silent: bool,
    protocol: Protocol,
    /// GPT-Live: the answer to `session.start` instead of `session.started`.
    start_error: Mutex<Option<Value>>,
    /// HTTP statuses the next handshakes are answered with instead of the upgrade.
    refusals: Mutex<std::collections::VecDeque<u16>>,
    /// Handshakes answered with one of them.
    refused: AtomicUsize,
    /// See [`FakeRealtime::report_audio_format`].
    audio_override: Mutex<Option<Value>>,
    /// See [`FakeRealtime::stall_next_sessions`].
    stall_next: AtomicUsize,
    /// See [`FakeRealtime::slow_down`].
    delay: Mutex<Option<Duration>>,
    conns: Mutex<Vec<Arc<Conn>>>,
    tcp_accepts: AtomicUsize,
    handshake_failures: Mutex<Vec<String>>,
    held_sockets: Mutex<Vec<TcpStream>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    signal: Signal,
    /// Answers every `response.create` when set (see [`crate::fake_model`]).
    model: Option<Arc<ModelFn>>,
}

/// A fake OpenAI Realtime GA server on `127.0.0.1`. Dropping it stops the server and drops
/// every connection.
pub struct FakeRealtime {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl Drop for FakeRealtime {
    fn drop(&mut self) {
        self.accept_task.abort();
        for task in lock(&self.shared.tasks).drain(..) {
            task.abort();
        }
        lock(&self.shared.held_sockets).clear();
    }
}

impl FakeRealtime {
    /// Starts a fake that completes WebSocket handshakes and speaks the GA protocol.
    ///
    /// Panics if it cannot bind a loopback port (an environment problem, not a test result).
    pub async fn start() -> FakeRealtime {
        Self::start_inner(false, Protocol::Realtime).await
    }

    /// Starts a fake that speaks GPT-Live (see the module docs).
    pub async fn start_live() -> FakeRealtime {
        Self::start_inner(false, Protocol::Live).await
    }

    /// Starts a fake that accepts TCP connections but never answers the WebSocket upgrade,
    /// for handshake-timeout tests. [`FakeRealtime::connections`] counts TCP accepts.
    pub async fn start_silent() -> FakeRealtime {
        Self::start_inner(true, Protocol::Realtime).await
    }

    /// Starts a Realtime fake whose `model` answers every `response.create` with a whole
    /// response (see [`crate::fake_model`]); tests can still push events of their own.
    pub async fn start_with_model(
        model: impl Fn(&ModelInput) -> ModelReply + Send + Sync + 'static,
    ) -> FakeRealtime {
        Self::start_full(false, Protocol::Realtime, Some(Arc::new(model))).await
    }

    async fn start_inner(silent: bool, protocol: Protocol) -> FakeRealtime {
        Self::start_full(silent, protocol, None).await
    }

    async fn start_full(
        silent: bool,
        protocol: Protocol,
        model: Option<Arc<ModelFn>>,
    ) -> FakeRealtime {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("FakeRealtime: bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("FakeRealtime: local address of the listener");
        let shared = Arc::new(Shared {
            silent,
            protocol,
            start_error: Mutex::new(None),
            refusals: Mutex::new(std::collections::VecDeque::new()),
            refused: AtomicUsize::new(0),
            audio_override: Mutex::new(None),
            stall_next: AtomicUsize::new(0),
            delay: Mutex::new(None),
            conns: Mutex::new(Vec::new()),
            tcp_accepts: AtomicUsize::new(0),
            handshake_failures: Mutex::new(Vec::new()),
            held_sockets: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
            signal: Signal::new(),
            model,
        });
        let accept_task = tokio::spawn(accept_loop(listener, shared.clone()));
        FakeRealtime {
            addr,
            shared,
            accept_task,
        }
    }

    /// The WebSocket URL to configure as the Realtime endpoint:
    /// `ws://127.0.0.1:PORT/v1/realtime` (the client appends `?model=…`).
    pub fn url(&self) -> String {
        match self.shared.protocol {
            Protocol::Realtime => format!("ws://{}/v1/realtime", self.addr),
            Protocol::Live => format!("ws://{}/v1/live/sessions", self.addr),
        }
    }

    /// GPT-Live: answer every later `session.start` with `error` instead of
    /// `session.started`, then close the connection.
    pub fn refuse_sessions(&self, error: Value) {
        *lock(&self.shared.start_error) = Some(error);
    }

    /// Answers the next handshakes, one each, with these HTTP statuses (and OpenAI's error
    /// JSON) instead of upgrading: 401 for a bad key, 429 for a busy account, 5xx for an
    /// outage. Later handshakes upgrade as usual.
    pub fn refuse_handshakes(&self, statuses: &[u16]) {
        lock(&self.shared.refusals).extend(statuses.iter().copied());
    }

    /// Later connections report `format` (e.g. `{"type":"audio/pcm","rate":24000}`) as their
    /// audio both ways in `session.updated`, whatever the client asked: an engine that did
    /// not take the format it was given.
    pub fn report_audio_format(&self, format: Value) {
        *lock(&self.shared.audio_override) = Some(format);
    }

    /// The next `n` connections accept the WebSocket and then never send anything (no
    /// `session.created`, no `session.updated`): engines stalled from the start.
    pub fn stall_next_sessions(&self, n: usize) {
        self.shared.stall_next.store(n, Ordering::SeqCst);
    }

    /// Later connections wait `delay` before each event they send: a slow engine.
    pub fn slow_down(&self, delay: Duration) {
        *lock(&self.shared.delay) = Some(delay);
    }

    /// Every later handshake is answered with `status`.
    pub fn refuse_all_handshakes(&self, status: u16) {
        self.refuse_handshakes(&[status; 64]);
    }

    /// Handshakes answered with a refusal so far.
    pub fn refused_handshakes(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Completed WebSocket handshakes so far (for a silent fake: TCP connections accepted).
    pub fn connections(&self) -> usize {
        if self.shared.silent {
            self.shared.tcp_accepts.load(Ordering::SeqCst)
        } else {
            lock(&self.shared.conns).len()
        }
    }

    /// TCP connections accepted so far, whether or not their handshake completed.
    pub fn tcp_accepts(&self) -> usize {
        self.shared.tcp_accepts.load(Ordering::SeqCst)
    }

    /// Upgrade requests that failed or timed out (5 s) before the handshake completed.
    pub fn handshake_failures(&self) -> Vec<String> {
        lock(&self.shared.handshake_failures).clone()
    }

    /// Waits until [`FakeRealtime::connections`] is at least `n`.
    pub async fn wait_for_connection(&self, n: usize, timeout: Duration) -> Result<(), String> {
        self.shared
            .signal
            .wait_for(timeout, || (self.connections() >= n).then_some(()))
            .await
            .ok_or_else(|| {
                format!(
                    "FakeRealtime: expected at least {n} connection(s) within {timeout:?}, have {}",
                    self.connections()
                )
            })
    }

    /// The `i`-th connection (0-based, in order of completed handshakes).
    ///
    /// Panics if there is no such connection yet: call
    /// [`FakeRealtime::wait_for_connection`] or [`FakeRealtime::wait_for_conn`] first.
    pub fn conn(&self, i: usize) -> ConnHandle {
        self.try_conn(i).unwrap_or_else(|| {
            panic!(
                "FakeRealtime: no connection #{i} (have {}); wait_for_connection first",
                self.connections()
            )
        })
    }

    /// The `i`-th connection, if it exists.
    pub fn try_conn(&self, i: usize) -> Option<ConnHandle> {
        lock(&self.shared.conns).get(i).map(|conn| ConnHandle {
            conn: conn.clone(),
            signal: self.shared.signal.clone(),
        })
    }

    /// Waits for the `i`-th connection and returns it.
    pub async fn wait_for_conn(&self, i: usize, timeout: Duration) -> Result<ConnHandle, String> {
        self.wait_for_connection(i + 1, timeout).await?;
        self.try_conn(i)
            .ok_or_else(|| format!("FakeRealtime: no connection #{i}"))
    }

    /// Every connection so far, in order.
    pub fn all_conns(&self) -> Vec<ConnHandle> {
        let conns = lock(&self.shared.conns).clone();
        conns
            .into_iter()
            .map(|conn| ConnHandle {
                conn,
                signal: self.shared.signal.clone(),
            })
            .collect()
    }

    /// Every schema violation and protocol error (non-JSON or binary frame) across all
    /// connections, each prefixed with `conn #i`.
    pub fn schema_violations(&self) -> Vec<String> {
        self.all_conns()
            .iter()
            .flat_map(|c| {
                let i = c.index();
                let mut all = c.protocol_errors();
                all.extend(c.schema_violations());
                all.into_iter().map(move |v| format!("conn #{i}: {v}"))
            })
            .collect()
    }

    /// Panics, listing them, if any client event violated the GA schema.
    pub fn assert_no_schema_violations(&self) {
        let v = self.schema_violations();
        assert!(
            v.is_empty(),
            "client events violate the OpenAI Realtime GA schema:\n{}",
            v.join("\n")
        );
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        shared.tcp_accepts.fetch_add(1, Ordering::SeqCst);
        if shared.silent {
            // Keep the socket open and never answer the upgrade request.
            lock(&shared.held_sockets).push(stream);
            shared.signal.bump();
            continue;
        }
        shared.signal.bump();
        let task = tokio::spawn(handle_connection(stream, shared.clone()));
        let mut tasks = lock(&shared.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }
}

fn initial_session(model: &str) -> Value {
    json!({
        "type": "realtime",
        "object": "realtime.session",
        "id": format!("sess_fake{:06}", EVENT_SEQ.fetch_add(1, Ordering::Relaxed)),
        "model": model,
        "expires_at": 1_900_000_000u64,
        "output_modalities": ["audio"],
        "instructions": "",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "turn_detection": {
                    "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                    "silence_duration_ms": 200, "create_response": true,
                    "interrupt_response": true, "idle_timeout_ms": null
                }
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "alloy",
                "speed": 1.0
            }
        },
        "tracing": null,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "truncation": "auto",
        "prompt": null
    })
}

/// Merges `update` into `base`: untagged objects recursively; tagged objects (with a
/// `type` key) and anything else replaced.
fn merge(base: &mut Value, update: &Value) {
    match (base, update) {
        (Value::Object(b), Value::Object(u)) => {
            for (k, v) in u {
                match b.get_mut(k) {
                    // A tagged object (`format`, `turn_detection`, …) is replaced whole.
                    Some(existing)
                        if existing.is_object() && v.is_object() && v.get("type").is_none() =>
                    {
                        merge(existing, v)
                    }
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, u) => *b = u.clone(),
    }
}

fn query_param(path: &str, name: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| crate::fake_twilio::percent_decode(v))
    })
}

async fn handle_connection(stream: TcpStream, shared: Arc<Shared>) {
    let mut captured: Option<(String, Vec<(String, String)>)> = None;
    // The error type is tungstenite's `ErrorResponse`, fixed by its `Callback` trait.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        let path = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_else(|| req.uri().path().to_owned());
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        captured = Some((path, headers));
        if let Some(status) = lock(&shared.refusals).pop_front() {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            let (kind, message) = match status {
                401 => ("invalid_request_error", "Incorrect API key provided."),
                403 => (
                    "invalid_request_error",
                    "You are not allowed to use this model.",
                ),
                429 => ("rate_limit_exceeded", "Rate limit reached for requests."),
                _ => (
                    "server_error",
                    "The server had an error while processing your request.",
                ),
            };
            let body = json!({"error": {"type": kind, "code": kind, "message": message}});
            let mut refusal =
                tokio_tungstenite::tungstenite::http::Response::new(Some(body.to_string()));
            *refusal.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::from_u16(
                status,
            )
            .unwrap_or(tokio_tungstenite::tungstenite::http::StatusCode::INTERNAL_SERVER_ERROR);
            return Err(refusal);
        }
        Ok(resp)
    };
    let handshake = tokio::time::timeout(
        DEFAULT_TIMEOUT,
        tokio_tungstenite::accept_hdr_async(stream, callback),
    )
    .await;
    let mut ws = match handshake {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            lock(&shared.handshake_failures).push(format!("handshake failed: {e}"));
            shared.signal.bump();
            return;
        }
        Err(_) => {
            lock(&shared.handshake_failures).push("handshake timed out".to_owned());
            shared.signal.bump();
            return;
        }
    };
    let (path, headers) = captured.unwrap_or_default();
    let model = query_param(&path, "model").unwrap_or_else(|| DEFAULT_MODEL.to_owned());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let session = initial_session(&model);
    let conn = {
        let mut conns = lock(&shared.conns);
        let conn = Arc::new(Conn {
            index: conns.len(),
            path,
            headers,
            state: Mutex::new(ConnState {
                live: LiveBook::default(),
                model_items: Vec::new(),
                model_responses: 0,
                events: Vec::new(),
                protocol_errors: Vec::new(),
                schema_violations: Vec::new(),
                session: session.clone(),
                end: None,
                audio_override: lock(&shared.audio_override).clone(),
                silent: shared
                    .stall_next
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok(),
                delay: *lock(&shared.delay),
            }),
            cmd: tx,
        });
        conns.push(conn.clone());
        conn
    };
    shared.signal.bump();

    let created =
        json!({"type": "session.created", "event_id": next_event_id(), "session": session});
    // GPT-Live says nothing until `session.start`.
    let greeting = (shared.protocol == Protocol::Realtime).then_some(created);
    if let Some(Err(e)) = match greeting {
        Some(created) => Some(send_out(&mut ws, &conn, &created).await),
        None => None,
    } {
        end_conn(
            &conn,
            &shared,
            ConnEnd::ClientDropped {
                detail: e.to_string(),
            },
        );
        return;
    }

    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let reply = match shared.protocol {
                        Protocol::Realtime => record_text(&conn, text.as_str()),
                        Protocol::Live => {
                            let refusal = lock(&shared.start_error).clone();
                            match (refusal, record_live_text(&conn, text.as_str())) {
                                (Some(error), Some(reply))
                                    if reply.get("type").and_then(Value::as_str) == Some("session.started") =>
                                {
                                    let _ = ws.send(Message::text(error.to_string())).await;
                                    end_conn(&conn, &shared, ConnEnd::ServerClose);
                                    let _ = tokio::time::timeout(DEFAULT_TIMEOUT, ws.close(None)).await;
                                    break;
                                }
                                (_, reply) => reply,
                            }
                        }
                    };
                    let mut replies: Vec<Value> = reply.into_iter().collect();
                    if let Some(model) = &shared.model {
                        replies.extend(model_reply(&conn, model.as_ref()));
                    }
                    shared.signal.bump();
                    for reply in replies {
                        // A failed send shows up on the read side, which records the end.
                        let _ = send_out(&mut ws, &conn, &reply).await;
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    lock(&conn.state).protocol_errors.push(format!(
                        "binary frame of {} bytes (the Realtime API takes JSON text frames)",
                        bytes.len()
                    ));
                    shared.signal.bump();
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = match frame {
                        Some(CloseFrame { code, reason }) => (Some(u16::from(code)), reason.as_str().to_owned()),
                        None => (None, String::new()),
                    };
                    end_conn(&conn, &shared, ConnEnd::ClientCloseFrame { code, reason });
                    // Let tungstenite send the close reply, bounded in time.
                    let _ = tokio::time::timeout(DEFAULT_TIMEOUT, ws.flush()).await;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    end_conn(&conn, &shared, ConnEnd::ClientDropped { detail: e.to_string() });
                    break;
                }
                None => {
                    end_conn(&conn, &shared, ConnEnd::ClientDropped { detail: "connection ended".to_owned() });
                    break;
                }
            },
            cmd = rx.recv() => match cmd {
                Some(Command::Send(event)) => {
                    if shared.protocol == Protocol::Live {
                        lock(&conn.state).live.observe(&event);
                    }
                    if let Err(e) = send_out(&mut ws, &conn, &event).await {
                        lock(&conn.state).protocol_errors.push(format!("could not send {}: {e}", event_type(&event)));
                        shared.signal.bump();
                    }
                }
                Some(Command::Close) => {
                    end_conn(&conn, &shared, ConnEnd::ServerClose);
                    let frame = CloseFrame { code: CloseCode::Normal, reason: "".into() };
                    let _ = tokio::time::timeout(DEFAULT_TIMEOUT, ws.close(Some(frame))).await;
                    // Wait (bounded) for the client's close reply, then drop.
                    let _ = tokio::time::timeout(DEFAULT_TIMEOUT, drain(&mut ws)).await;
                    break;
                }
                Some(Command::GoSilent) => lock(&conn.state).silent = true,
                Some(Command::SendRaw(text)) => {
                    let _ = ws.send(Message::text(text)).await;
                }
                Some(Command::DropTcp) | None => {
                    end_conn(&conn, &shared, ConnEnd::ServerDropped);
                    break;
                }
            },
        }
    }
}

/// Sends one event as this connection's misbehaviour allows: not at all when it is
/// silent, late when it is slow.
async fn send_out(
    ws: &mut WebSocketStream<TcpStream>,
    conn: &Conn,
    event: &Value,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let (silent, delay) = {
        let st = lock(&conn.state);
        (st.silent, st.delay)
    };
    if silent {
        return Ok(());
    }
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    ws.send(Message::text(event.to_string())).await
}

async fn drain(ws: &mut WebSocketStream<TcpStream>) {
    while let Some(Ok(_)) = ws.next().await {}
}

fn end_conn(conn: &Conn, shared: &Shared, how: ConnEnd) {
    {
        let mut st = lock(&conn.state);
        if st.end.is_none() {
            st.end = Some(how);
        }
    }
    shared.signal.bump();
}

fn event_type(v: &Value) -> String {
    v.get("type")
        .and_then(Value::as_str)
        .unwrap_or("<no type>")
        .to_owned()
}

/// Parses a client text frame and checks it against `schema`: a frame that is not JSON is a
/// protocol error (and `None`), a schema mismatch is recorded and the event still returned,
/// with its index in the connection's event list.
fn read_client_event(
    st: &mut ConnState,
    text: &str,
    schema: fn(&Value) -> Result<(), String>,
) -> Option<(Value, usize)> {
    let event: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let shown: String = text.chars().take(120).collect();
            st.protocol_errors
                .push(format!("non-JSON text frame ({e}): {shown}"));
            return None;
        }
    };
    let n = st.events.len();
    if let Err(e) = schema(&event) {
        st.schema_violations
            .push(format!("event #{n} ({}): {e}", event_type(&event)));
    }
    Some((event, n))
}

/// Records one text frame; returns the reply to send, if any.
fn record_text(conn: &Conn, text: &str) -> Option<Value> {
    let mut st = lock(&conn.state);
    let (event, _) = read_client_event(&mut st, text, validate_client_event)?;
    st.events.push(event.clone());
    if event.get("type").and_then(Value::as_str) != Some("session.update") {
        return None;
    }
    if let Some(update) = event.get("session") {
        merge(&mut st.session, update);
        // Keep only what a session *response* has (a request-only key such as
        // `parallel_tool_calls` is not echoed by the server).
        if let (Some(allowed), Some(obj)) = (
            realtime_schema::component_property_names(
                Side::Server,
                "RealtimeSessionCreateResponseGA",
            ),
            st.session.as_object_mut(),
        ) {
            obj.retain(|k, _| allowed.iter().any(|a| a == k));
        }
        if let Some(format) = st.audio_override.clone() {
            st.session["audio"]["input"]["format"] = format.clone();
            st.session["audio"]["output"]["format"] = format;
        }
    }
    Some(
        json!({"type": "session.updated", "event_id": next_event_id(), "session": st.session.clone()}),
    )
}

/// The scripted model's answer to the client event just recorded: its conversation items
/// are kept, and a `response.create` gets a whole response.
fn model_reply(conn: &Conn, model: &ModelFn) -> Vec<Value> {
    let mut st = lock(&conn.state);
    let Some(event) = st.events.last().cloned() else {
        return Vec::new();
    };
    match event_type(&event).as_str() {
        "conversation.item.create" => {
            st.model_items.push(event["item"].clone());
            Vec::new()
        }
        "response.create" => {
            st.model_responses += 1;
            let input = ModelInput {
                items: st.model_items.clone(),
                session: st.session.clone(),
            };
            let reply = model(&input);
            let (events, items) = reply_events(st.model_responses, &reply);
            st.model_items.extend(items);
            events
        }
        _ => Vec::new(),
    }
}

/// Records one GPT-Live text frame; returns the reply to send, if any.
fn record_live_text(conn: &Conn, text: &str) -> Option<Value> {
    let mut st = lock(&conn.state);
    let (event, n) = read_client_event(&mut st, text, validate_live_client_event)?;
    let started = st
        .events
        .iter()
        .any(|e| e.get("type").and_then(Value::as_str) == Some("session.start"));
    let kind = event_type(&event);
    if let Some(refused) = st.live.check(&event) {
        st.protocol_errors
            .push(format!("event #{n} ({kind}): {refused}"));
    }
    if started && kind == "session.start" {
        st.protocol_errors.push("a second session.start".to_owned());
    } else if !started && kind != "session.start" {
        st.protocol_errors
            .push(format!("{kind} before session.start"));
    }
    st.events.push(event.clone());
    match kind.as_str() {
        "session.start" => {
            let mut session = event.get("session").cloned().unwrap_or(Value::Null);
            if let Some(obj) = session.as_object_mut() {
                obj.insert(
                    "id".into(),
                    format!("sess_live{:06}", EVENT_SEQ.fetch_add(1, Ordering::Relaxed)).into(),
                );
                obj.insert("expires_at".into(), 1_900_000_000u64.into());
                obj.insert("status".into(), "active".into());
            }
            st.session = session.clone();
            Some(
                json!({"type": "session.started", "event_id": next_event_id(), "session": session}),
            )
        }
        "session.close" => Some(json!({
            "type": "session.closed",
            "event_id": next_event_id(),
            "reason": "close_requested",
            "session": st.session.clone(),
            "usage": {"seconds": 1.0}
        })),
        _ => None,
    }
}

/// Server events of GPT-Live (`/v1/live/sessions`), as its implementations read them.
pub mod live {
    use serde_json::{Value, json};

    use super::next_event_id;

    /// Agent audio: `session.output_audio.delta`.
    pub fn audio_delta(base64: &str) -> Value {
        json!({"type": "session.output_audio.delta", "delta": base64})
    }

    /// A fragment of the caller's words.
    pub fn input_transcript(delta: &str, start_ms: u64, end_ms: u64) -> Value {
        json!({"type": "session.input_transcript.delta", "event_id": next_event_id(),
               "delta": delta, "start_ms": start_ms, "end_ms": end_ms})
    }

    /// A fragment of the agent's words.
    pub fn output_transcript(delta: &str, start_ms: u64, end_ms: u64) -> Value {
        json!({"type": "session.output_transcript.delta", "event_id": next_event_id(),
               "delta": delta, "start_ms": start_ms, "end_ms": end_ms})
    }

    /// A Responses streaming event wrapped for the client.
    pub fn response_event(delegation_id: &str, event: Value) -> Value {
        json!({"type": "response.event", "event_id": next_event_id(),
               "delegation_id": delegation_id, "event": event})
    }

    /// A delegated backend response that calls `(call_id, name, arguments)` each: its
    /// delegation, `response.created`, each call announced (empty arguments) then finished,
    /// and `response.completed` with an empty `output`, as the server sends them.
    pub fn function_calls(delegation_id: &str, calls: &[(&str, &str, &str)]) -> Vec<Value> {
        let mut events = vec![
            json!({"type": "session.delegation.created", "event_id": next_event_id(), "offset_ms": 1000,
                   "delegation": {"id": delegation_id, "type": "delegation", "target": "responses",
                                  "response_id": format!("resp_{delegation_id}")}}),
            response_event(
                delegation_id,
                json!({"type": "response.created",
                "response": {"id": format!("resp_{delegation_id}"), "status": "in_progress", "output": []}}),
            ),
        ];
        for (i, (call_id, name, arguments)) in calls.iter().enumerate() {
            let item = |status: &str, arguments: &str| {
                json!({"id": format!("fc_{call_id}"),
                "type": "function_call", "status": status, "call_id": call_id, "name": name,
                "arguments": arguments})
            };
            events.push(response_event(
                delegation_id,
                json!({"type": "response.output_item.added",
                "output_index": i, "item": item("in_progress", "")}),
            ));
            events.push(response_event(
                delegation_id,
                json!({"type": "response.output_item.done",
                "output_index": i, "item": item("completed", arguments)}),
            ));
        }
        events.push(response_event(delegation_id, json!({"type": "response.completed",
            "response": {"id": format!("resp_{delegation_id}"), "status": "completed", "output": []}})));
        events
    }

    /// `session.closed` for `reason`.
    pub fn session_closed(reason: &str) -> Value {
        json!({"type": "session.closed", "event_id": next_event_id(), "reason": reason,
               "session": {}, "usage": {"seconds": 1.0}})
    }

    /// An `error` event.
    pub fn error_event(code: &str, message: &str) -> Value {
        json!({"type": "error", "event_id": next_event_id(),
               "error": {"type": "invalid_request_error", "code": code, "message": message}})
    }

    /// Any other event the client ignores (`session.usage.updated`).
    pub fn usage(seconds: f64) -> Value {
        json!({"type": "session.usage.updated", "event_id": next_event_id(),
               "usage": {"seconds": seconds}})
    }

    /// What an event's `type` is, for assertions.
    pub fn kind(event: &Value) -> &str {
        event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// A handle on one recorded connection of a [`FakeRealtime`]. Cheap to clone.
#[derive(Clone)]
pub struct ConnHandle {
    conn: Arc<Conn>,
    signal: Signal,
}

impl std::fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnHandle")
            .field("index", &self.conn.index)
            .field("path", &self.conn.path)
            .finish_non_exhaustive()
    }
}

impl ConnHandle {
    /// This connection's index (0-based, in order of completed handshakes).
    pub fn index(&self) -> usize {
        self.conn.index
    }

    /// The upgrade request's path and query, e.g. `/v1/realtime?model=gpt-realtime`.
    pub fn path(&self) -> String {
        self.conn.path.clone()
    }

    /// A query parameter of the upgrade request, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(&self.conn.path, name)
    }

    /// A header of the upgrade request (name case-insensitive; first value).
    pub fn header(&self, name: &str) -> Option<String> {
        self.conn
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// Every header of the upgrade request, in order (names lower-case).
    pub fn headers(&self) -> Vec<(String, String)> {
        self.conn.headers.clone()
    }

    /// The `Authorization` header of the upgrade request.
    pub fn authorization(&self) -> Option<String> {
        self.header("authorization")
    }

    /// Whether the upgrade request carried an `OpenAI-Beta` header (GA clients must not).
    pub fn has_openai_beta_header(&self) -> bool {
        self.header("openai-beta").is_some()
    }

    /// Every client event received so far (parsed JSON), in order.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.conn.state).events.clone()
    }

    /// The `type` of every client event received so far, in order.
    pub fn event_types(&self) -> Vec<String> {
        lock(&self.conn.state)
            .events
            .iter()
            .map(event_type)
            .collect()
    }

    /// The client events of type `type_name`, in order.
    pub fn events_of_type(&self, type_name: &str) -> Vec<Value> {
        lock(&self.conn.state)
            .events
            .iter()
            .filter(|e| e.get("type").and_then(Value::as_str) == Some(type_name))
            .cloned()
            .collect()
    }

    /// The first client event of type `type_name`, waiting up to `timeout` for it.
    pub async fn wait_for_event(
        &self,
        type_name: &str,
        timeout: Duration,
    ) -> Result<Value, String> {
        self.wait_for_count(type_name, 1, timeout)
            .await
            .and_then(|mut v| {
                if v.is_empty() {
                    Err(format!("no {type_name} event"))
                } else {
                    Ok(v.swap_remove(0))
                }
            })
    }

    /// Waits until at least `n` client events of type `type_name` have arrived; returns all
    /// of them (at least `n`).
    pub async fn wait_for_count(
        &self,
        type_name: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Value>, String> {
        self.signal
            .wait_for(timeout, || {
                let found = self.events_of_type(type_name);
                (found.len() >= n).then_some(found)
            })
            .await
            .ok_or_else(|| {
                format!(
                    "conn #{}: expected {n} {type_name} event(s) within {timeout:?}, got {}; events so far: {:?}",
                    self.conn.index,
                    self.events_of_type(type_name).len(),
                    self.event_types()
                )
            })
    }

    /// Waits until `predicate` holds for the list of client events received so far.
    pub async fn wait_for_events(
        &self,
        predicate: impl Fn(&[Value]) -> bool,
        timeout: Duration,
    ) -> Result<(), String> {
        self.signal
            .wait_for(timeout, || {
                let st = lock(&self.conn.state);
                predicate(&st.events).then_some(())
            })
            .await
            .ok_or_else(|| {
                format!(
                    "conn #{}: condition not met within {timeout:?}; events so far: {:?}",
                    self.conn.index,
                    self.event_types()
                )
            })
    }

    /// Pushes one server event to the client (sent as a JSON text frame, in call order).
    /// Ignored if the connection is already over.
    pub fn send(&self, event: Value) {
        let _ = self.conn.cmd.send(Command::Send(event));
    }

    /// Pushes several server events, in order.
    pub fn send_all(&self, events: impl IntoIterator<Item = Value>) {
        for event in events {
            self.send(event);
        }
    }

    /// Sends a complete tool-calling response: `response.created`, then for each
    /// `(call_id, name, arguments)` the events of [`function_call_events_at`] (item id
    /// `item_<call_id>`, output index in order), then `response.done` (status `completed`)
    /// listing the `function_call` items.
    pub fn send_function_call_response(&self, response_id: &str, calls: &[(&str, &str, &str)]) {
        self.send(response_created(response_id));
        let mut items = Vec::with_capacity(calls.len());
        for (i, (call_id, name, arguments)) in calls.iter().enumerate() {
            let item_id = format!("item_{call_id}");
            self.send_all(function_call_events_at(
                response_id,
                i as u64,
                &item_id,
                call_id,
                name,
                arguments,
            ));
            items.push(function_call_item(&item_id, call_id, name, arguments));
        }
        self.send(response_done(response_id, "completed", items));
    }

    /// Sends a complete spoken response: see [`audio_response_events`].
    pub fn send_audio_response(
        &self,
        response_id: &str,
        item_id: &str,
        chunks_b64: &[&str],
        transcript: &str,
    ) {
        self.send_all(audio_response_events(
            response_id,
            item_id,
            chunks_b64,
            transcript,
        ));
    }

    /// Closes the connection from the server side with a clean close frame (code 1000).
    pub fn close(&self) {
        let _ = self.conn.cmd.send(Command::Close);
    }

    /// Sends `text` as a text frame exactly as given (malformed JSON, say).
    pub fn send_raw(&self, text: impl Into<String>) {
        let _ = self.conn.cmd.send(Command::SendRaw(text.into()));
    }

    /// From now on this connection sends nothing (what is queued and every reply is
    /// dropped), though it keeps reading: an engine that stalled mid-call.
    pub fn go_silent(&self) {
        // In order with the events sent before it.
        let _ = self.conn.cmd.send(Command::GoSilent);
    }

    /// Drops the TCP connection abruptly, without a WebSocket close frame.
    pub fn drop_tcp(&self) {
        let _ = self.conn.cmd.send(Command::DropTcp);
    }

    /// How the connection ended, if it has.
    pub fn end(&self) -> Option<ConnEnd> {
        lock(&self.conn.state).end.clone()
    }

    /// Whether the connection is over (for whatever reason).
    pub fn is_closed(&self) -> bool {
        self.end().is_some()
    }

    /// Whether the client ended the connection (close frame or TCP end) before the server
    /// did.
    pub fn closed_by_client(&self) -> bool {
        matches!(
            self.end(),
            Some(ConnEnd::ClientCloseFrame { .. } | ConnEnd::ClientDropped { .. })
        )
    }

    /// Whether the client ended the connection with a WebSocket close frame.
    pub fn client_sent_close_frame(&self) -> bool {
        matches!(self.end(), Some(ConnEnd::ClientCloseFrame { .. }))
    }

    /// Waits until the connection is over (closed by either side or dropped).
    pub async fn wait_closed(&self, timeout: Duration) -> Result<(), String> {
        self.signal
            .wait_for(timeout, || self.is_closed().then_some(()))
            .await
            .ok_or_else(|| {
                format!(
                    "conn #{}: still open after {timeout:?}; events so far: {:?}",
                    self.conn.index,
                    self.event_types()
                )
            })
    }

    /// Frames that were not JSON text (non-JSON text, binary), and send failures.
    pub fn protocol_errors(&self) -> Vec<String> {
        lock(&self.conn.state).protocol_errors.clone()
    }

    /// GA schema violations of this connection's client events (`event #n (type): reason`).
    pub fn schema_violations(&self) -> Vec<String> {
        lock(&self.conn.state).schema_violations.clone()
    }

    /// The session as the fake currently holds it (`session.created` merged with every
    /// `session.update`).
    pub fn session(&self) -> Value {
        lock(&self.conn.state).session.clone()
    }
}

// ---------------------------------------------------------------------------------------
// Server event builders (GA shapes; each validates against `RealtimeServerEvent`).
// ---------------------------------------------------------------------------------------

/// `response.created` for a new in-progress audio response.
pub fn response_created(response_id: &str) -> Value {
    json!({
        "type": "response.created",
        "event_id": next_event_id(),
        "response": {
            "id": response_id,
            "object": "realtime.response",
            "status": "in_progress",
            "output": [],
            "conversation_id": "conv_fake",
            "output_modalities": ["audio"],
            "max_output_tokens": "inf",
            "metadata": null
        }
    })
}

/// `response.output_audio.delta` (output index 0, content index 0) carrying `base64` audio.
pub fn audio_delta(response_id: &str, item_id: &str, base64: &str) -> Value {
    json!({
        "type": "response.output_audio.delta",
        "event_id": next_event_id(),
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": base64
    })
}

/// `response.output_audio.done` (output index 0, content index 0).
pub fn audio_done(response_id: &str, item_id: &str) -> Value {
    json!({
        "type": "response.output_audio.done",
        "event_id": next_event_id(),
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0
    })
}

/// `response.output_audio_transcript.delta` (output index 0, content index 0).
pub fn audio_transcript_delta(response_id: &str, item_id: &str, delta: &str) -> Value {
    json!({
        "type": "response.output_audio_transcript.delta",
        "event_id": next_event_id(),
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": delta
    })
}

/// `response.output_audio_transcript.done` (output index 0, content index 0).
pub fn audio_transcript_done(response_id: &str, item_id: &str, text: &str) -> Value {
    json!({
        "type": "response.output_audio_transcript.done",
        "event_id": next_event_id(),
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "transcript": text
    })
}

/// A completed `function_call` conversation item.
pub fn function_call_item(item_id: &str, call_id: &str, name: &str, arguments: &str) -> Value {
    json!({
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments
    })
}

/// An assistant message item with one `output_audio` content part.
pub fn assistant_audio_item(item_id: &str, status: &str, transcript: &str) -> Value {
    json!({
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_audio", "transcript": transcript}]
    })
}

/// `response.output_item.added` for `item` at `output_index`.
pub fn output_item_added(response_id: &str, output_index: u64, item: Value) -> Value {
    json!({
        "type": "response.output_item.added",
        "event_id": next_event_id(),
        "response_id": response_id,
        "output_index": output_index,
        "item": item
    })
}

/// `response.output_item.done` for `item` at `output_index`.
pub fn output_item_done(response_id: &str, output_index: u64, item: Value) -> Value {
    json!({
        "type": "response.output_item.done",
        "event_id": next_event_id(),
        "response_id": response_id,
        "output_index": output_index,
        "item": item
    })
}

/// The events of one function call at output index 0; see [`function_call_events_at`].
pub fn function_call_events(
    response_id: &str,
    item_id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
) -> Vec<Value> {
    function_call_events_at(response_id, 0, item_id, call_id, name, arguments)
}

/// The events of one function call, as the GA server sends them (OpenAI's Realtime guide,
/// "function calling"; the GA server event schemas in `tests/data/`):
/// `response.output_item.added` (in-progress `function_call` item, empty arguments),
/// `response.function_call_arguments.delta` (the whole `arguments` in one delta),
/// `response.function_call_arguments.done`, `response.output_item.done` (completed item).
pub fn function_call_events_at(
    response_id: &str,
    output_index: u64,
    item_id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
) -> Vec<Value> {
    let mut in_progress = function_call_item(item_id, call_id, name, "");
    in_progress["status"] = json!("in_progress");
    vec![
        output_item_added(response_id, output_index, in_progress),
        json!({
            "type": "response.function_call_arguments.delta",
            "event_id": next_event_id(),
            "response_id": response_id,
            "item_id": item_id,
            "output_index": output_index,
            "call_id": call_id,
            "delta": arguments
        }),
        json!({
            "type": "response.function_call_arguments.done",
            "event_id": next_event_id(),
            "response_id": response_id,
            "item_id": item_id,
            "output_index": output_index,
            "call_id": call_id,
            "name": name,
            "arguments": arguments
        }),
        output_item_done(
            response_id,
            output_index,
            function_call_item(item_id, call_id, name, arguments),
        ),
    ]
}

/// `response.done` with `status` (`completed`, `cancelled`, `failed`, `incomplete`) and the
/// given output items. A `cancelled` response gets `status_details` with reason
/// `turn_detected` (what server VAD barge-in produces).
pub fn response_done(response_id: &str, status: &str, output_items: Vec<Value>) -> Value {
    let mut response = Map::new();
    response.insert("id".into(), json!(response_id));
    response.insert("object".into(), json!("realtime.response"));
    response.insert("status".into(), json!(status));
    match status {
        "cancelled" => {
            response.insert(
                "status_details".into(),
                json!({"type": "cancelled", "reason": "turn_detected"}),
            );
        }
        "incomplete" => {
            response.insert(
                "status_details".into(),
                json!({"type": "incomplete", "reason": "max_output_tokens"}),
            );
        }
        "failed" => {
            response.insert(
                "status_details".into(),
                json!({"type": "failed", "error": {"type": "server_error", "code": "internal_error"}}),
            );
        }
        _ => {}
    }
    response.insert("output".into(), Value::Array(output_items));
    response.insert("conversation_id".into(), json!("conv_fake"));
    response.insert("output_modalities".into(), json!(["audio"]));
    response.insert("max_output_tokens".into(), json!("inf"));
    response.insert("metadata".into(), Value::Null);
    response.insert(
        "usage".into(),
        json!({
            "total_tokens": 30, "input_tokens": 20, "output_tokens": 10,
            "input_token_details": {"cached_tokens": 0, "text_tokens": 10, "audio_tokens": 10},
            "output_token_details": {"text_tokens": 5, "audio_tokens": 5}
        }),
    );
    json!({"type": "response.done", "event_id": next_event_id(), "response": response})
}

/// The events of a complete spoken answer: `response.created`, `response.output_item.added`
/// (in-progress assistant audio message), one `response.output_audio.delta` per chunk,
/// `response.output_audio.done`, `response.output_audio_transcript.done`,
/// `response.output_item.done`, `response.done` (completed).
pub fn audio_response_events(
    response_id: &str,
    item_id: &str,
    chunks_b64: &[&str],
    transcript: &str,
) -> Vec<Value> {
    let mut events = vec![
        response_created(response_id),
        output_item_added(
            response_id,
            0,
            assistant_audio_item(item_id, "in_progress", ""),
        ),
    ];
    events.extend(
        chunks_b64
            .iter()
            .map(|chunk| audio_delta(response_id, item_id, chunk)),
    );
    let done_item = assistant_audio_item(item_id, "completed", transcript);
    events.push(audio_done(response_id, item_id));
    events.push(audio_transcript_done(response_id, item_id, transcript));
    events.push(output_item_done(response_id, 0, done_item.clone()));
    events.push(response_done(response_id, "completed", vec![done_item]));
    events
}

/// `input_audio_buffer.speech_started` (barge-in trigger with server VAD).
pub fn speech_started(item_id: &str, audio_start_ms: u64) -> Value {
    json!({
        "type": "input_audio_buffer.speech_started",
        "event_id": next_event_id(),
        "audio_start_ms": audio_start_ms,
        "item_id": item_id
    })
}

/// `input_audio_buffer.speech_stopped`.
pub fn speech_stopped(item_id: &str, audio_end_ms: u64) -> Value {
    json!({
        "type": "input_audio_buffer.speech_stopped",
        "event_id": next_event_id(),
        "audio_end_ms": audio_end_ms,
        "item_id": item_id
    })
}

/// `conversation.item.input_audio_transcription.completed` for the caller's item.
pub fn input_transcription_completed(item_id: &str, transcript: &str) -> Value {
    json!({
        "type": "conversation.item.input_audio_transcription.completed",
        "event_id": next_event_id(),
        "item_id": item_id,
        "content_index": 0,
        "transcript": transcript,
        "usage": {"type": "duration", "seconds": 1.5}
    })
}

/// An `error` event of type `invalid_request_error` with `code` and `message`.
pub fn error_event(code: &str, message: &str) -> Value {
    json!({
        "type": "error",
        "event_id": next_event_id(),
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": null,
            "event_id": null
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime_schema::validate_server_event;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    type Client = WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

    fn assert_server_valid(ev: &Value) {
        if let Err(e) = validate_server_event(ev) {
            panic!("{ev} is not a valid GA server event: {e}");
        }
    }

    #[test]
    fn builders_are_valid_server_events() {
        let fc = function_call_item("item_1", "call_1", "transfer_call", "{\"to\":\"+1555\"}");
        let mut all = vec![
            response_created("resp_1"),
            audio_delta("resp_1", "item_1", "//8A/w=="),
            audio_done("resp_1", "item_1"),
            audio_transcript_delta("resp_1", "item_1", "Hel"),
            audio_transcript_done("resp_1", "item_1", "Hello"),
            response_done("resp_1", "completed", vec![fc.clone()]),
            response_done("resp_1", "cancelled", vec![]),
            response_done("resp_1", "incomplete", vec![]),
            response_done("resp_1", "failed", vec![]),
            speech_started("item_2", 1200),
            speech_stopped("item_2", 2400),
            input_transcription_completed("item_2", "hi there"),
            error_event("conversation_already_has_active_response", "busy"),
            output_item_added(
                "resp_1",
                0,
                assistant_audio_item("item_1", "in_progress", ""),
            ),
        ];
        all.extend(function_call_events(
            "resp_1",
            "item_1",
            "call_1",
            "transfer_call",
            "{}",
        ));
        all.extend(audio_response_events(
            "resp_2",
            "item_3",
            &["AAAA", "//8A"],
            "Hi",
        ));
        all.push(json!({"type":"session.created","event_id":"event_x","session":initial_session("gpt-realtime")}));
        for ev in &all {
            assert_server_valid(ev);
        }
    }

    async fn connect(url: &str) -> Client {
        let mut req = format!("{url}?model=gpt-realtime")
            .into_client_request()
            .expect("client request");
        req.headers_mut().insert(
            "Authorization",
            "Bearer sk-test".parse().expect("header value"),
        );
        let (ws, _) = tokio::time::timeout(DEFAULT_TIMEOUT, tokio_tungstenite::connect_async(req))
            .await
            .expect("connect in time")
            .expect("connect");
        ws
    }

    async fn next_json(ws: &mut Client) -> Value {
        loop {
            let msg = tokio::time::timeout(DEFAULT_TIMEOUT, ws.next())
                .await
                .expect("message in time")
                .expect("stream open")
                .expect("message");
            if let Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).expect("server sends JSON");
            }
        }
    }

    #[tokio::test]
    async fn session_update_round_trip_and_violation_recorded() {
        let fake = FakeRealtime::start().await;
        let mut ws = connect(&fake.url()).await;
        fake.wait_for_connection(1, DEFAULT_TIMEOUT)
            .await
            .expect("connected");
        let conn = fake.conn(0);
        assert_eq!(conn.path(), "/v1/realtime?model=gpt-realtime");
        assert_eq!(conn.query_param("model").as_deref(), Some("gpt-realtime"));
        assert_eq!(conn.authorization().as_deref(), Some("Bearer sk-test"));
        assert!(!conn.has_openai_beta_header());

        let created = next_json(&mut ws).await;
        assert_eq!(created["type"], "session.created");
        assert_server_valid(&created);

        let update = json!({"type":"session.update","session":{"type":"realtime","instructions":"Be brief.",
            "audio":{"input":{"format":{"type":"audio/pcmu"}},"output":{"format":{"type":"audio/pcmu"},"voice":"marin"}}}});
        ws.send(Message::text(update.to_string()))
            .await
            .expect("send");
        let updated = next_json(&mut ws).await;
        assert_eq!(updated["type"], "session.updated");
        assert_eq!(updated["session"]["instructions"], "Be brief.");
        assert_eq!(updated["session"]["audio"]["output"]["voice"], "marin");
        assert_eq!(
            updated["session"]["audio"]["input"]["format"]["type"],
            "audio/pcmu"
        );
        assert_server_valid(&updated);
        assert!(
            fake.schema_violations().is_empty(),
            "{:?}",
            fake.schema_violations()
        );

        // A beta-shaped event is recorded as a violation; a non-JSON frame as an error.
        let beta = json!({"type":"session.update","session":{"type":"realtime","voice":"alloy"}});
        ws.send(Message::text(beta.to_string()))
            .await
            .expect("send");
        ws.send(Message::text("not json")).await.expect("send");
        ws.send(Message::text(json!({"type":"response.create"}).to_string()))
            .await
            .expect("send");
        conn.wait_for_event("response.create", DEFAULT_TIMEOUT)
            .await
            .expect("response.create recorded");
        let violations = fake.schema_violations();
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(
            violations.iter().any(|v| v.contains("voice")),
            "{violations:?}"
        );
        assert!(
            violations.iter().any(|v| v.contains("non-JSON")),
            "{violations:?}"
        );
        assert_eq!(conn.events_of_type("session.update").len(), 2);

        // The fake answers every session.update, even an invalid one (the violation is
        // recorded for the test to assert on).
        assert_eq!(next_json(&mut ws).await["type"], "session.updated");

        // Server-pushed events reach the client in order.
        conn.send_function_call_response("resp_1", &[("call_1", "hang_up", "{}")]);
        let mut types = Vec::new();
        for _ in 0..6 {
            types.push(
                next_json(&mut ws).await["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        assert_eq!(
            types,
            [
                "response.created",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.done"
            ]
        );

        ws.close(None).await.expect("close");
        conn.wait_closed(DEFAULT_TIMEOUT).await.expect("closed");
        assert!(conn.closed_by_client());
        assert!(conn.client_sent_close_frame());
    }

    #[tokio::test]
    async fn server_close_and_drop() {
        let fake = FakeRealtime::start().await;
        let mut a = connect(&fake.url()).await;
        let mut b = connect(&fake.url()).await;
        fake.wait_for_connection(2, DEFAULT_TIMEOUT)
            .await
            .expect("two connections");
        let (c0, c1) = (fake.conn(0), fake.conn(1));

        c0.close();
        c1.drop_tcp();
        let mut saw_close = false;
        while let Ok(Some(msg)) = tokio::time::timeout(DEFAULT_TIMEOUT, a.next()).await {
            match msg {
                Ok(Message::Close(frame)) => {
                    saw_close = true;
                    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        assert!(saw_close, "client saw a close frame");
        let mut b_end = None;
        while let Ok(Some(msg)) = tokio::time::timeout(DEFAULT_TIMEOUT, b.next()).await {
            match msg {
                Ok(Message::Close(_)) => {
                    b_end = Some("close frame");
                    break;
                }
                Ok(_) => {}
                Err(_) => {
                    b_end = Some("error");
                    break;
                }
            }
        }
        assert_ne!(
            b_end,
            Some("close frame"),
            "drop_tcp must not send a close frame"
        );
        c0.wait_closed(DEFAULT_TIMEOUT).await.expect("c0 closed");
        c1.wait_closed(DEFAULT_TIMEOUT).await.expect("c1 closed");
        assert_eq!(c0.end(), Some(ConnEnd::ServerClose));
        assert_eq!(c1.end(), Some(ConnEnd::ServerDropped));
        assert!(!c0.closed_by_client());
    }

    #[tokio::test]
    async fn silent_server_never_completes_handshake() {
        let fake = FakeRealtime::start_silent().await;
        let url = fake.url();
        let attempt = tokio::time::timeout(
            Duration::from_millis(300),
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await;
        assert!(attempt.is_err(), "handshake must not complete");
        fake.wait_for_connection(1, DEFAULT_TIMEOUT)
            .await
            .expect("TCP accept counted");
        assert_eq!(fake.connections(), 1);
        assert!(fake.try_conn(0).is_none());
    }
}
