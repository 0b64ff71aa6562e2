//! A fake Twilio Media Streams client
//! (twilio.com/docs/voice/media-streams/websocket-messages).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::http::is_loopback_host;
use super::signature::signature;
use crate::DEFAULT_TIMEOUT;
use crate::signal::Signal;

type Ws = WebSocketStream<TcpStream>;
type Ack = oneshot::Sender<Result<(), String>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
struct State {
    // What we send.
    seq: u64,
    chunk: u64,
    stream_sid: Option<String>,
    call_sid: String,
    account_sid: String,
    // What the server sends.
    received: Vec<Value>,
    /// When each `media` message arrived.
    media_at: Vec<std::time::Instant>,
    marks_received: Vec<String>,
    pending: VecDeque<String>,
    echoed: Vec<String>,
    clears: usize,
    violations: Vec<String>,
    closed: Option<String>,
    close_code: Option<u16>,
}

struct Shared {
    state: Mutex<State>,
    signal: Signal,
    auto_echo: AtomicBool,
    out: mpsc::UnboundedSender<(Message, Option<Ack>)>,
}

impl Shared {
    /// Queues a message for the writer task. Call with the state lock held when the message
    /// carries a sequence number, so that queue order is sequence order.
    fn enqueue(&self, msg: Message, ack: Option<Ack>) {
        if let Err(mpsc::error::SendError((_, Some(ack)))) = self.out.send((msg, ack)) {
            let _ = ack.send(Err("the stream's writer has stopped".to_owned()));
        }
    }

    /// Echoes every pending mark, in order (Twilio's mark echo shape).
    fn echo_pending(
        &self,
        st: &mut State,
        mut acks: Option<&mut Vec<oneshot::Receiver<Result<(), String>>>>,
    ) {
        while let Some(name) = st.pending.pop_front() {
            st.seq += 1;
            let msg = json!({
                "event": "mark",
                "sequenceNumber": st.seq.to_string(),
                "streamSid": st.stream_sid.clone().unwrap_or_default(),
                "mark": {"name": name}
            });
            let ack = acks.as_mut().map(|list| {
                let (tx, rx) = oneshot::channel();
                list.push(rx);
                tx
            });
            self.enqueue(Message::text(msg.to_string()), ack);
            st.echoed.push(name);
        }
    }
}

/// A fake Twilio Media Streams WebSocket client connected to the server under test.
///
/// Senders build Twilio's exact inbound shapes (§1.3): counters are strings,
/// `sequenceNumber` starts at `"1"` on `start` and increments on every later message
/// (mark echoes included), `media.chunk` starts at `"1"`. A background task records every
/// message the server sends and checks it against Twilio's outbound shapes (§1.4, closed:
/// no extra keys); see [`MediaStream::violations`].
///
/// Marks: by default each mark the server sends is echoed at once, as if its audio had
/// played instantly; [`MediaStream::set_auto_echo_marks`]`(false)` holds them until
/// [`MediaStream::echo_pending_marks`]. A `clear` from the server echoes every pending mark
/// immediately, whatever the setting (§8.11).
///
/// Dropping it drops the TCP connection without a close frame; use
/// [`MediaStream::close`] for a clean close.
pub struct MediaStream {
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for MediaStream {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl std::fmt::Debug for MediaStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaStream")
            .field("stream_sid", &self.stream_sid())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl MediaStream {
    /// Opens the WebSocket to a loopback `ws://` URL, adding `extra_headers` to the upgrade
    /// request; handshake bounded by 5 s.
    ///
    /// A rejected upgrade returns `Err` starting with `HTTP <status>` (e.g. `HTTP 403 …`).
    pub async fn connect(
        ws_url: &str,
        extra_headers: &[(&str, &str)],
    ) -> Result<MediaStream, String> {
        let mut req = ws_url
            .into_client_request()
            .map_err(|e| format!("bad WebSocket URL {ws_url}: {e}"))?;
        for (name, value) in extra_headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("bad header name {name:?}: {e}"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| format!("bad header value {value:?}: {e}"))?;
            req.headers_mut().append(name, value);
        }
        let uri = req.uri().clone();
        if uri.scheme_str() != Some("ws") {
            return Err(format!("only ws:// URLs are supported here, got {ws_url}"));
        }
        let host = uri.host().unwrap_or_default().to_owned();
        if !is_loopback_host(&host) {
            return Err(format!(
                "refusing non-loopback host {host} (tests stay on 127.0.0.1)"
            ));
        }
        let port = uri.port_u16().unwrap_or(80);
        let tcp = tokio::time::timeout(
            DEFAULT_TIMEOUT,
            TcpStream::connect(format!("{host}:{port}")),
        )
        .await
        .map_err(|_| format!("TCP connect to {host}:{port} timed out"))?
        .map_err(|e| format!("TCP connect to {host}:{port}: {e}"))?;
        let handshake =
            tokio::time::timeout(DEFAULT_TIMEOUT, tokio_tungstenite::client_async(req, tcp))
                .await
                .map_err(|_| format!("WebSocket handshake with {ws_url} timed out"))?;
        let ws = match handshake {
            Ok((ws, _resp)) => ws,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                return Err(format!(
                    "HTTP {} WebSocket upgrade rejected: {body}",
                    resp.status().as_u16()
                ));
            }
            Err(e) => return Err(format!("WebSocket handshake with {ws_url}: {e}")),
        };
        Ok(Self::spawn(ws))
    }

    /// [`MediaStream::connect`] with `X-Twilio-Signature` computed over `ws_url` itself and
    /// no params (§7.6).
    pub async fn connect_signed(ws_url: &str, auth_token: &str) -> Result<MediaStream, String> {
        Self::connect_signed_as(ws_url, ws_url, auth_token).await
    }

    /// Connects to `ws_url` with `X-Twilio-Signature` computed over `signed_url` (the public
    /// `wss://…/twilio/stream` URL configured in Twilio) and no params (§7.6).
    pub async fn connect_signed_as(
        ws_url: &str,
        signed_url: &str,
        auth_token: &str,
    ) -> Result<MediaStream, String> {
        let sig = signature(auth_token, signed_url, &[]);
        Self::connect(ws_url, &[("X-Twilio-Signature", &sig)]).await
    }

    fn spawn(ws: Ws) -> MediaStream {
        let (sink, stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            signal: Signal::new(),
            auto_echo: AtomicBool::new(true),
            out: tx,
        });
        let writer = tokio::spawn(write_loop(sink, rx));
        let reader = tokio::spawn(read_loop(stream, shared.clone()));
        MediaStream {
            shared,
            reader,
            writer,
        }
    }

    async fn await_ack(rx: oneshot::Receiver<Result<(), String>>) -> Result<(), String> {
        match tokio::time::timeout(DEFAULT_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the stream's writer has stopped".to_owned()),
            Err(_) => Err(format!("write not done within {DEFAULT_TIMEOUT:?}")),
        }
    }

    /// Sends a raw message and waits (bounded) until it is written.
    async fn send_message(&self, msg: Message) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.shared.enqueue(msg, Some(tx));
        Self::await_ack(rx).await
    }

    /// Sends a sequenced event: `build(state, sequenceNumber)` makes the JSON.
    async fn send_sequenced(
        &self,
        build: impl FnOnce(&mut State, String) -> Value,
    ) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = lock(&self.shared.state);
            st.seq += 1;
            let seq = st.seq.to_string();
            let msg = build(&mut st, seq);
            self.shared
                .enqueue(Message::text(msg.to_string()), Some(tx));
        }
        Self::await_ack(rx).await
    }

    /// `{"event":"connected","protocol":"Call","version":"1.0.0"}`.
    pub async fn send_connected(&self) -> Result<(), String> {
        let msg = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
        self.send_message(Message::text(msg.to_string())).await
    }

    /// The `start` message (inbound track, µ-law 8 kHz mono); remembers the SIDs for later
    /// messages.
    pub async fn send_start(
        &self,
        stream_sid: &str,
        call_sid: &str,
        account_sid: &str,
        custom_parameters: &[(&str, &str)],
    ) -> Result<(), String> {
        let params: Map<String, Value> = custom_parameters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        self.send_sequenced(|st, seq| {
            st.stream_sid = Some(stream_sid.to_owned());
            st.call_sid = call_sid.to_owned();
            st.account_sid = account_sid.to_owned();
            json!({
                "event": "start",
                "sequenceNumber": seq,
                "streamSid": stream_sid,
                "start": {
                    "accountSid": account_sid,
                    "streamSid": stream_sid,
                    "callSid": call_sid,
                    "tracks": ["inbound"],
                    "customParameters": params,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
                }
            })
        })
        .await
    }

    /// A `media` message (inbound track) with `timestamp_ms` and base64 µ-law
    /// `payload_b64`; the chunk counter increments.
    pub async fn send_media(&self, timestamp_ms: u64, payload_b64: &str) -> Result<(), String> {
        self.send_sequenced(|st, seq| {
            st.chunk += 1;
            json!({
                "event": "media",
                "sequenceNumber": seq,
                "streamSid": st.stream_sid.clone().unwrap_or_default(),
                "media": {
                    "track": "inbound",
                    "chunk": st.chunk.to_string(),
                    "timestamp": timestamp_ms.to_string(),
                    "payload": payload_b64
                }
            })
        })
        .await
    }

    /// A `dtmf` message for `digit` (`"0"`–`"9"`, `"*"`, `"#"`).
    pub async fn send_dtmf(&self, digit: &str) -> Result<(), String> {
        self.send_sequenced(|st, seq| {
            json!({
                "event": "dtmf",
                "sequenceNumber": seq,
                "streamSid": st.stream_sid.clone().unwrap_or_default(),
                "dtmf": {"track": "inbound_track", "digit": digit}
            })
        })
        .await
    }

    /// A mark echo for `name`, as Twilio sends once the audio before the mark has played.
    /// If `name` is pending, it is no longer.
    pub async fn send_mark(&self, name: &str) -> Result<(), String> {
        self.send_sequenced(|st, seq| {
            if let Some(pos) = st.pending.iter().position(|p| p == name) {
                st.pending.remove(pos);
            }
            st.echoed.push(name.to_owned());
            json!({
                "event": "mark",
                "sequenceNumber": seq,
                "streamSid": st.stream_sid.clone().unwrap_or_default(),
                "mark": {"name": name}
            })
        })
        .await
    }

    /// The `stop` message (the last one Twilio sends).
    pub async fn send_stop(&self) -> Result<(), String> {
        self.send_sequenced(|st, seq| {
            json!({
                "event": "stop",
                "sequenceNumber": seq,
                "streamSid": st.stream_sid.clone().unwrap_or_default(),
                "stop": {"accountSid": st.account_sid, "callSid": st.call_sid}
            })
        })
        .await
    }

    /// Sends `raw` as a text frame, unchanged (no sequence number).
    pub async fn send_text(&self, raw: &str) -> Result<(), String> {
        self.send_message(Message::text(raw.to_owned())).await
    }

    /// Sends `bytes` as a binary frame.
    pub async fn send_binary(&self, bytes: &[u8]) -> Result<(), String> {
        self.send_message(Message::binary(bytes.to_vec())).await
    }

    /// Sends a clean close frame (1000). The server's reply ends the stream; see
    /// [`MediaStream::wait_closed`].
    pub async fn close(&self) -> Result<(), String> {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        self.send_message(Message::Close(Some(frame))).await
    }

    /// Drops the TCP connection abruptly (no close frame). The logs stay readable.
    pub fn drop_tcp(&self) {
        self.reader.abort();
        self.writer.abort();
        let mut st = lock(&self.shared.state);
        if st.closed.is_none() {
            st.closed = Some("dropped by the test".to_owned());
        }
        drop(st);
        self.shared.signal.bump();
    }

    /// The `streamSid` given to [`MediaStream::send_start`], if sent.
    pub fn stream_sid(&self) -> Option<String> {
        lock(&self.shared.state).stream_sid.clone()
    }

    /// Every message the server has sent (parsed JSON), in order.
    pub fn received(&self) -> Vec<Value> {
        lock(&self.shared.state).received.clone()
    }

    /// The `media.payload` of every `media` message the server sent, in order.
    pub fn media_payloads(&self) -> Vec<String> {
        lock(&self.shared.state)
            .received
            .iter()
            .filter(|m| m["event"] == "media")
            .filter_map(|m| m["media"]["payload"].as_str().map(str::to_owned))
            .collect()
    }

    /// The decoded audio of every `media` message, concatenated (undecodable payloads are
    /// skipped; they are listed in [`MediaStream::violations`]).
    pub fn media_bytes(&self) -> Vec<u8> {
        self.media_payloads()
            .iter()
            .filter_map(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
            .flatten()
            .collect()
    }

    /// The names of every `mark` the server sent, in order.
    /// When each `media` message arrived, in order: the gaps are what the caller heard as
    /// silence between the agent's audio.
    pub fn media_arrivals(&self) -> Vec<std::time::Instant> {
        lock(&self.shared.state).media_at.clone()
    }

    pub fn marks_received(&self) -> Vec<String> {
        lock(&self.shared.state).marks_received.clone()
    }

    /// The names of the marks echoed back to the server so far, in order.
    pub fn marks_echoed(&self) -> Vec<String> {
        lock(&self.shared.state).echoed.clone()
    }

    /// How many `clear` messages the server sent.
    pub fn clears(&self) -> usize {
        lock(&self.shared.state).clears
    }

    /// Deviations of the server's messages from Twilio's outbound shapes: non-JSON or
    /// binary frames, unknown events, extra keys, a wrong or missing `streamSid`, anything
    /// sent before `start`, an empty or non-base64 payload, a payload with a RIFF header, a
    /// mark without a name.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.shared.state).violations.clone()
    }

    /// Echo every received mark at once (`true`, the default) or hold them as pending.
    /// Turning it on does not echo marks already pending; see
    /// [`MediaStream::echo_pending_marks`].
    pub fn set_auto_echo_marks(&self, on: bool) {
        self.shared.auto_echo.store(on, Ordering::SeqCst);
    }

    /// Marks received but not echoed yet, in order.
    pub fn pending_marks(&self) -> Vec<String> {
        lock(&self.shared.state).pending.iter().cloned().collect()
    }

    /// Echoes every pending mark, in order, and waits (bounded) until they are written.
    pub async fn echo_pending_marks(&self) -> Result<(), String> {
        let mut acks = Vec::new();
        {
            let mut st = lock(&self.shared.state);
            self.shared.echo_pending(&mut st, Some(&mut acks));
        }
        for ack in acks {
            Self::await_ack(ack).await?;
        }
        Ok(())
    }

    /// Waits until `predicate` holds for the messages received so far.
    pub async fn wait_for(
        &self,
        predicate: impl Fn(&[Value]) -> bool,
        timeout: Duration,
    ) -> Result<(), String> {
        self.shared
            .signal
            .wait_for(timeout, || {
                let st = lock(&self.shared.state);
                predicate(&st.received).then_some(())
            })
            .await
            .ok_or_else(|| {
                format!(
                    "MediaStream: condition not met within {timeout:?}; received events: {:?}",
                    self.received_events()
                )
            })
    }

    fn received_events(&self) -> Vec<String> {
        lock(&self.shared.state)
            .received
            .iter()
            .map(|m| m["event"].as_str().unwrap_or("<no event>").to_owned())
            .collect()
    }

    fn count_of(received: &[Value], event: &str) -> usize {
        received.iter().filter(|m| m["event"] == event).count()
    }

    /// Waits until the server has sent at least `n` `media` messages.
    pub async fn wait_for_media(&self, n: usize, timeout: Duration) -> Result<(), String> {
        self.wait_for(|r| Self::count_of(r, "media") >= n, timeout)
            .await
    }

    /// Waits until the server has sent at least `n` `mark` messages.
    pub async fn wait_for_marks(&self, n: usize, timeout: Duration) -> Result<(), String> {
        self.wait_for(|r| Self::count_of(r, "mark") >= n, timeout)
            .await
    }

    /// Waits until the server has sent at least `n` `clear` messages.
    pub async fn wait_for_clears(&self, n: usize, timeout: Duration) -> Result<(), String> {
        self.wait_for(|r| Self::count_of(r, "clear") >= n, timeout)
            .await
    }

    /// Whether the connection is over: the server sent a close frame, or the stream ended
    /// or failed.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.state).closed.is_some()
    }

    /// How the connection ended, if it has (`close frame`, `connection ended`, an error…).
    pub fn closed_reason(&self) -> Option<String> {
        lock(&self.shared.state).closed.clone()
    }

    /// The code of the server's close frame, if one came.
    pub fn close_code(&self) -> Option<u16> {
        lock(&self.shared.state).close_code
    }

    /// Waits until the server closes the socket or it drops.
    pub async fn wait_closed(&self, timeout: Duration) -> Result<(), String> {
        self.shared
            .signal
            .wait_for(timeout, || self.is_closed().then_some(()))
            .await
            .ok_or_else(|| {
                format!(
                    "MediaStream: still open after {timeout:?}; received events: {:?}",
                    self.received_events()
                )
            })
    }
}

async fn write_loop(
    mut sink: SplitSink<Ws, Message>,
    mut rx: mpsc::UnboundedReceiver<(Message, Option<Ack>)>,
) {
    while let Some((msg, ack)) = rx.recv().await {
        let result = match tokio::time::timeout(DEFAULT_TIMEOUT, sink.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write failed: {e}")),
            Err(_) => Err(format!("write not done within {DEFAULT_TIMEOUT:?}")),
        };
        if let Some(ack) = ack {
            let _ = ack.send(result);
        }
    }
}

async fn read_loop(mut stream: SplitStream<Ws>, shared: Arc<Shared>) {
    let reason = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => {
                on_text(&shared, text.as_str());
                shared.signal.bump();
            }
            Some(Ok(Message::Binary(bytes))) => {
                lock(&shared.state).violations.push(format!(
                    "binary frame of {} bytes (Twilio takes JSON text frames)",
                    bytes.len()
                ));
                shared.signal.bump();
            }
            Some(Ok(Message::Close(frame))) => {
                let mut st = lock(&shared.state);
                st.close_code = frame.as_ref().map(|f| u16::from(f.code));
                if st.closed.is_none() {
                    st.closed = Some("close frame".to_owned());
                }
                drop(st);
                shared.signal.bump();
                // Keep polling so that tungstenite completes the closing handshake.
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("connection error: {e}"),
            None => break "connection ended".to_owned(),
        }
    };
    let mut st = lock(&shared.state);
    if st.closed.is_none() {
        st.closed = Some(reason);
    }
    drop(st);
    shared.signal.bump();
}

fn on_text(shared: &Shared, text: &str) {
    let mut st = lock(&shared.state);
    let msg: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let shown: String = text.chars().take(120).collect();
            st.violations
                .push(format!("non-JSON text frame ({e}): {shown}"));
            return;
        }
    };
    let n = st.received.len();
    if let Err(e) = check_outbound(&msg, st.stream_sid.as_deref()) {
        st.violations.push(format!("message #{n}: {e}: {msg}"));
    }
    st.received.push(msg.clone());
    match msg["event"].as_str() {
        Some("media") => st.media_at.push(std::time::Instant::now()),
        Some("mark") => {
            if let Some(name) = msg["mark"]["name"].as_str() {
                st.marks_received.push(name.to_owned());
                st.pending.push_back(name.to_owned());
                if shared.auto_echo.load(Ordering::SeqCst) {
                    shared.echo_pending(&mut st, None);
                }
            }
        }
        Some("clear") => {
            st.clears += 1;
            // Twilio echoes every pending mark when the buffer is cleared (§8.11).
            shared.echo_pending(&mut st, None);
        }
        _ => {}
    }
}

fn exact_keys(obj: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(format!("unexpected key \"{key}\" in {what}"));
        }
    }
    Ok(())
}

/// Checks one server → Twilio message against Twilio's outbound shapes (§1.4).
fn check_outbound(msg: &Value, stream_sid: Option<&str>) -> Result<(), String> {
    let obj = msg.as_object().ok_or("not a JSON object")?;
    let event = obj
        .get("event")
        .and_then(Value::as_str)
        .ok_or("no string \"event\"")?;
    let allowed: &[&str] = match event {
        "media" => &["event", "streamSid", "media"],
        "mark" => &["event", "streamSid", "mark"],
        "clear" => &["event", "streamSid"],
        other => return Err(format!("unknown outbound event \"{other}\"")),
    };
    exact_keys(obj, allowed, "the message")?;
    let sid = obj
        .get("streamSid")
        .and_then(Value::as_str)
        .ok_or("no string \"streamSid\"")?;
    match stream_sid {
        None => return Err("sent before the `start` message".to_owned()),
        Some(expected) if expected != sid => {
            return Err(format!(
                "streamSid {sid:?} is not the stream's {expected:?}"
            ));
        }
        Some(_) => {}
    }
    match event {
        "media" => {
            let media = obj
                .get("media")
                .and_then(Value::as_object)
                .ok_or("no \"media\" object")?;
            exact_keys(media, &["payload"], "\"media\"")?;
            let payload = media
                .get("payload")
                .and_then(Value::as_str)
                .ok_or("no string media.payload")?;
            if payload.is_empty() {
                return Err("empty media.payload".to_owned());
            }
            let audio = base64::engine::general_purpose::STANDARD
                .decode(payload)
                .map_err(|e| format!("media.payload is not base64: {e}"))?;
            if audio.starts_with(b"RIFF") {
                return Err("media.payload has a RIFF/WAV header".to_owned());
            }
        }
        "mark" => {
            let mark = obj
                .get("mark")
                .and_then(Value::as_object)
                .ok_or("no \"mark\" object")?;
            exact_keys(mark, &["name"], "\"mark\"")?;
            match mark.get("name").and_then(Value::as_str) {
                Some(name) if !name.is_empty() => {}
                _ => return Err("mark.name missing or empty".to_owned()),
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    const SID: &str = "MZ0123456789abcdef0123456789abcdef";

    #[test]
    fn outbound_shapes() {
        let ok = [
            json!({"event":"media","streamSid":SID,"media":{"payload":"//8A"}}),
            json!({"event":"mark","streamSid":SID,"mark":{"name":"resp-1-1"}}),
            json!({"event":"clear","streamSid":SID}),
        ];
        for m in &ok {
            check_outbound(m, Some(SID)).expect("valid outbound");
        }
        assert!(check_outbound(&ok[0], None).is_err(), "before start");
        let bad = [
            json!({"event":"mark","streamSid":SID}),
            json!({"event":"mark","streamSid":SID,"mark":{"name":""}}),
            json!({"event":"media","streamSid":SID,"media":{"payload":"not base64!"}}),
            json!({"event":"media","streamSid":SID,"media":{"payload":"UklGRgAA","track":"outbound"}}),
            json!({"event":"media","streamSid":SID,"media":{"payload":"UklGRgAA"}}),
            json!({"event":"media","streamSid":"MZother","media":{"payload":"//8A"}}),
            json!({"event":"clear","streamSid":SID,"extra":1}),
            json!({"event":"play","streamSid":SID}),
        ];
        for m in &bad {
            assert!(
                check_outbound(m, Some(SID)).is_err(),
                "{m} must be rejected"
            );
        }
    }

    /// A tiny stand-in for the server under test: forwards what the client sends, sends the
    /// script once `start` arrives, and closes the socket when `stop` arrives.
    async fn scripted_server(
        script: Vec<Value>,
    ) -> (String, mpsc::UnboundedReceiver<Value>, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "ws://{}/twilio/stream",
            listener.local_addr().expect("addr")
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let mut script = script.into_iter();
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(t) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                    continue;
                };
                let event = v["event"].clone();
                let _ = tx.send(v);
                if event == "start" {
                    for out in script.by_ref() {
                        if ws.send(Message::text(out.to_string())).await.is_err() {
                            return;
                        }
                    }
                } else if event == "stop" {
                    let _ = ws.close(None).await;
                }
            }
        });
        (url, rx, task)
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
        tokio::time::timeout(DEFAULT_TIMEOUT, rx.recv())
            .await
            .expect("message in time")
            .expect("server alive")
    }

    #[tokio::test]
    async fn talks_twilio_and_echoes_marks() {
        let script = vec![
            json!({"event":"media","streamSid":SID,"media":{"payload":"//8A"}}),
            json!({"event":"mark","streamSid":SID,"mark":{"name":"m1"}}),
            json!({"event":"mark","streamSid":SID,"mark":{"name":"m2"}}),
            json!({"event":"clear","streamSid":SID}),
        ];
        let (url, mut rx, _server) = scripted_server(script).await;
        let ms = MediaStream::connect(&url, &[]).await.expect("connect");
        ms.set_auto_echo_marks(false);
        ms.send_connected().await.expect("connected");
        ms.send_start(
            SID,
            "CA0123456789abcdef0123456789abcdef",
            "AC0123456789abcdef0123456789abcdef",
            &[("caller", "+15550100")],
        )
        .await
        .expect("start");
        assert_eq!(next(&mut rx).await["event"], "connected");
        let start = next(&mut rx).await;
        assert_eq!(start["sequenceNumber"], "1");
        assert_eq!(start["start"]["customParameters"]["caller"], "+15550100");
        assert_eq!(start["start"]["mediaFormat"]["sampleRate"], 8000);

        ms.wait_for_clears(1, DEFAULT_TIMEOUT).await.expect("clear");
        assert_eq!(ms.media_payloads(), ["//8A"]);
        assert_eq!(ms.media_bytes(), [0xff, 0xff, 0x00]);
        assert_eq!(ms.marks_received(), ["m1", "m2"]);
        // Auto-echo was off, but `clear` echoes the pending marks.
        assert!(ms.pending_marks().is_empty());
        assert_eq!(ms.marks_echoed(), ["m1", "m2"]);
        let e1 = next(&mut rx).await;
        let e2 = next(&mut rx).await;
        assert_eq!(
            (e1["mark"]["name"].as_str(), e1["sequenceNumber"].as_str()),
            (Some("m1"), Some("2"))
        );
        assert_eq!(
            (e2["mark"]["name"].as_str(), e2["sequenceNumber"].as_str()),
            (Some("m2"), Some("3"))
        );
        assert_eq!(e2["streamSid"], SID);

        ms.send_media(20, "AAAA").await.expect("media");
        let media = next(&mut rx).await;
        assert_eq!(media["sequenceNumber"], "4");
        assert_eq!(media["media"]["chunk"], "1");
        assert_eq!(media["media"]["timestamp"], "20");
        ms.send_dtmf("5").await.expect("dtmf");
        assert_eq!(next(&mut rx).await["dtmf"]["digit"], "5");
        ms.send_stop().await.expect("stop");
        let stop = next(&mut rx).await;
        assert_eq!(
            stop["stop"]["callSid"],
            "CA0123456789abcdef0123456789abcdef"
        );

        ms.wait_closed(DEFAULT_TIMEOUT)
            .await
            .expect("server closed");
        assert!(ms.is_closed());
        assert!(ms.violations().is_empty(), "{:?}", ms.violations());
    }

    #[tokio::test]
    async fn auto_echo_and_violations() {
        let script = vec![
            json!({"event":"mark","streamSid":SID,"mark":{"name":"a"}}),
            json!({"event":"mark","streamSid":SID}),
        ];
        let (url, mut rx, _server) = scripted_server(script).await;
        let ms = MediaStream::connect_signed(&url, "token")
            .await
            .expect("connect");
        ms.send_start(SID, "CA1", "AC1", &[]).await.expect("start");
        assert_eq!(next(&mut rx).await["event"], "start");
        let echo = next(&mut rx).await;
        assert_eq!(echo["mark"]["name"], "a");
        ms.wait_for(|r| r.len() >= 2, DEFAULT_TIMEOUT)
            .await
            .expect("two messages");
        let v = ms.violations();
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("mark"), "{v:?}");
        assert!(ms.wait_closed(Duration::from_millis(50)).await.is_err());
    }

    #[tokio::test]
    async fn rejects_non_loopback() {
        let err = MediaStream::connect("ws://example.com/twilio/stream", &[])
            .await
            .expect_err("non-loopback");
        assert!(err.contains("non-loopback"), "{err}");
    }
}
