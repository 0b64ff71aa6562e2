//! OpenAI GPT-Live as an [`Engine`]: one WebSocket per call to
//! `wss://api.openai.com/v1/live/sessions`, configured once with `session.start`.
//!
//! GPT-Live is not a Realtime model but a different protocol, and what differs stays here:
//!
//! - The session is fixed at start. Tools are not called by the voice model: they are
//!   delegated to a backend Responses model, whose function calls arrive wrapped in
//!   `response.event`. Results are queued with `response.item.create`, and one
//!   `response.create` follows once no backend response is running and every call has its
//!   result (the server refuses a partial batch; LiveKit's `GPTLiveSession` waits the same
//!   way, Pipecat's `OpenAILiveLLMService` per response).
//! - Audio is continuous and paced by the model, silence included. Silent chunks are not
//!   relayed, and a run of speech between silences counts as one response of the agent, so
//!   that a goodbye is known to have been said and played.
//! - There are no speech-start events, no truncation and no cancel: the model handles being
//!   talked over. The caller's first transcript fragment of a turn stands for speech start,
//!   so that the carrier drops audio it still holds; `Truncate` sends nothing.
//! - Transcripts arrive as fragments; a turn closes after a gap without fragments (0.8 s, as
//!   in Pipecat and LiveKit).
//! - A sentence cannot be said word for word: the first message is asked for as commentary
//!   and may be paraphrased.

#[doc(hidden)]
pub mod wire;

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use self::wire::LiveEvent;
use super::{Engine, EngineCommand, EngineError, EngineEvent, EngineSession, EngineSetup};
use crate::audio::AudioFormat;
use crate::secret::Secret;

/// The default endpoint.
pub const DEFAULT_URL: &str = "wss://api.openai.com/v1/live/sessions";
/// The voice model used when the agent names none.
pub const DEFAULT_MODEL: &str = "gpt-live-1.1";
/// The backend model tools are delegated to, unless set (LiveKit's default).
pub const DEFAULT_BACKEND_MODEL: &str = "gpt-5.6-luna";
/// How long without a transcript fragment closes a turn of the transcript.
pub const TURN_GAP: Duration = Duration::from_millis(800);
/// How much silence after speech ends the agent's turn.
pub const END_OF_SPEECH: Duration = Duration::from_millis(500);

/// How long the handshake and `session.started` may take by default.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message accepted from the engine by default.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Frames read while waiting for `session.started` before giving up.
const MAX_FRAMES_BEFORE_START: usize = 64;
/// See the Realtime engine: a small read buffer, since events are small.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// The OpenAI GPT-Live engine.
///
/// ```
/// use patter::engine::Engine;
/// use patter::engine::openai_live::OpenAiLive;
///
/// let engine = OpenAiLive::new("sk-…").backend_model("gpt-5.5");
/// assert_eq!(engine.default_model(), "gpt-live-1.1");
/// ```
#[derive(Clone)]
pub struct OpenAiLive {
    url: String,
    api_key: Secret,
    default_model: String,
    backend_model: String,
    handshake_timeout: Duration,
    max_message_bytes: usize,
}

impl OpenAiLive {
    /// The engine at OpenAI's endpoint, with this API key and the defaults.
    pub fn new(api_key: impl Into<String>) -> Self {
        OpenAiLive {
            url: DEFAULT_URL.to_owned(),
            api_key: Secret::new(api_key),
            default_model: DEFAULT_MODEL.to_owned(),
            backend_model: DEFAULT_BACKEND_MODEL.to_owned(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }

    /// Another endpoint: a proxy, a gateway, or a local test peer.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// The voice model used when the agent names none (default [`DEFAULT_MODEL`]).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.default_model = model.into();
        self
    }

    /// The backend model that runs the tools (default [`DEFAULT_BACKEND_MODEL`]).
    pub fn backend_model(mut self, model: impl Into<String>) -> Self {
        self.backend_model = model.into();
        self
    }

    /// How long connecting and `session.started` may take (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The largest message accepted from the engine (default 1 MiB).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Connects, sends `session.start` and waits for `session.started`.
    async fn start(&self, setup: &EngineSetup) -> Result<Socket, EngineError> {
        crate::util::install_crypto_provider();
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| EngineError::Connect(format!("invalid engine request: {e}")))?;
        let auth = HeaderValue::from_str(&format!("Bearer {}", self.api_key.expose()))
            .map_err(|_| EngineError::Connect("the API key is not a valid header value".into()))?;
        request.headers_mut().insert("Authorization", auth);
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes));
        let (mut socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), true)
                .await
                .map_err(|e| EngineError::Connect(e.to_string()))?;
        socket
            .send(Message::text(wire::session_start(
                setup,
                &self.backend_model,
            )))
            .await
            .map_err(|e| EngineError::Io(format!("session.start could not be sent: {e}")))?;
        for _ in 0..MAX_FRAMES_BEFORE_START {
            let text = match socket.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None => {
                    return Err(EngineError::Connect(
                        "the engine closed the connection before the session started".into(),
                    ));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(EngineError::Connect(e.to_string())),
            };
            match wire::parse_event(&text) {
                Ok(LiveEvent::Started) => return Ok(socket),
                Ok(LiveEvent::Error { code, message }) => {
                    return Err(EngineError::Connect(format!(
                        "the session did not start: {} {message}",
                        code.unwrap_or_default()
                    )));
                }
                Ok(LiveEvent::Closed(reason)) => {
                    return Err(EngineError::Connect(format!(
                        "the session closed before it started ({reason})"
                    )));
                }
                _ => {}
            }
        }
        Err(EngineError::Connect(
            "no session.started from the engine".into(),
        ))
    }
}

impl fmt::Debug for OpenAiLive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiLive")
            .field("url", &crate::util::redact_url(&self.url))
            .field("api_key", &self.api_key)
            .field("default_model", &self.default_model)
            .field("backend_model", &self.backend_model)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish()
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl Engine for OpenAiLive {
    type Session = LiveSession;

    fn default_model(&self) -> &str {
        &self.default_model
    }

    async fn open(&self, setup: &EngineSetup) -> Result<LiveSession, EngineError> {
        let socket = tokio::time::timeout(self.handshake_timeout, self.start(setup))
            .await
            .map_err(|_| EngineError::Timeout(self.handshake_timeout.as_millis()))??;
        Ok(LiveSession {
            socket,
            format: setup.audio,
            ready: true,
            caller: Fragments::default(),
            agent: Fragments::default(),
            speech: Speech::default(),
            deferred_audio: None,
            tools: Backend::default(),
            continue_due: false,
        })
    }
}

/// What a live session's `recv` hands over: a message, or something the session itself
/// decided (the session is ready, a transcript turn closed, audio held back a moment).
pub enum LiveFrame {
    /// A message from the engine.
    Message(Message),
    /// The session started: the first message may be spoken.
    Ready,
    /// A turn of the transcript, assembled from fragments.
    Turn {
        /// The caller's (else the agent's).
        caller: bool,
        /// The text.
        text: String,
    },
    /// Agent audio that followed the start of the agent's turn.
    Audio(String),
}

/// Transcript fragments of one speaker, until a gap closes the turn.
#[derive(Default)]
struct Fragments {
    text: String,
    /// When the turn opened.
    opened_at: Option<Instant>,
    /// When the turn closes if no fragment comes first.
    closes_at: Option<Instant>,
}

impl Fragments {
    /// Adds a fragment; whether it opened a turn.
    fn push(&mut self, fragment: &str) -> bool {
        let now = Instant::now();
        let opened = self.closes_at.is_none();
        if opened {
            self.opened_at = Some(now);
        }
        self.text.push_str(fragment);
        self.closes_at = Some(now + TURN_GAP);
        opened
    }

    fn take(&mut self) -> String {
        self.closes_at = None;
        self.opened_at = None;
        std::mem::take(&mut self.text).trim().to_owned()
    }
}

/// The agent's turns of speech, told from its audio.
#[derive(Default)]
struct Speech {
    /// The turn being spoken.
    turn: Option<String>,
    turns: u64,
    /// Silence since the last sound, in bytes of audio.
    silent_bytes: usize,
}

/// The backend's work: responses running, calls waiting for their results, and whether the
/// call has asked to go on.
#[derive(Default)]
struct Backend {
    running: HashSet<String>,
    open_calls: HashSet<String>,
    continue_wanted: bool,
}

impl Backend {
    /// Whether the one `response.create` may go now.
    fn may_continue(&self) -> bool {
        self.continue_wanted && self.open_calls.is_empty() && self.running.is_empty()
    }
}

/// One call's GPT-Live session.
pub struct LiveSession {
    socket: Socket,
    format: AudioFormat,
    /// `Ready` is still to be handed over.
    ready: bool,
    caller: Fragments,
    agent: Fragments,
    speech: Speech,
    deferred_audio: Option<String>,
    tools: Backend,
    /// A `response.create` waits to go out with the next message.
    continue_due: bool,
}

impl fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveSession").finish_non_exhaustive()
    }
}

/// The item every chunk of agent audio belongs to.
const LIVE_ITEM: &str = "live";

/// The backend's responses without a delegation id are tracked under this one.
const UNCORRELATED: &str = "backend";

impl LiveSession {
    async fn send_text(&mut self, text: String) -> Result<(), EngineError> {
        self.socket
            .send(Message::text(text))
            .await
            .map_err(|e| EngineError::Io(e.to_string()))
    }

    /// The earliest moment a transcript turn closes, and whose.
    fn next_turn_close(&self) -> Option<(Instant, bool)> {
        match (self.caller.closes_at, self.agent.closes_at) {
            (Some(c), Some(a)) if a < c => Some((a, false)),
            (Some(c), _) => Some((c, true)),
            (None, Some(a)) => Some((a, false)),
            (None, None) => None,
        }
    }

    fn audio_event<'f>(&mut self, audio: &'f str) -> EngineEvent<'f> {
        if wire::is_silence(audio, self.format) {
            let Some(turn) = &self.speech.turn else {
                return EngineEvent::Ignored;
            };
            self.speech.silent_bytes += audio.len() / 4 * 3;
            let silence = Duration::from_millis(
                (self.speech.silent_bytes / self.format.bytes_per_ms()) as u64,
            );
            if silence < END_OF_SPEECH {
                return EngineEvent::Ignored;
            }
            let turn = turn.clone();
            self.speech.turn = None;
            return EngineEvent::ResponseDone {
                response_id: turn.into(),
                status: "completed".into(),
            };
        }
        self.speech.silent_bytes = 0;
        match &self.speech.turn {
            // Nothing is ever truncated, so one item name serves every turn, with no
            // allocation per chunk.
            Some(_) => EngineEvent::Audio {
                response_id: LIVE_ITEM.into(),
                item_id: LIVE_ITEM.into(),
                audio: audio.into(),
            },
            None => {
                // The agent starts speaking: its turn starts now, the audio follows it.
                self.speech.turns += 1;
                let turn = format!("live_turn_{}", self.speech.turns);
                self.speech.turn = Some(turn.clone());
                self.deferred_audio = Some(audio.to_owned());
                EngineEvent::ResponseStarted {
                    response_id: turn.into(),
                }
            }
        }
    }

    fn backend_event<'f>(&mut self, event: LiveEvent<'f>) -> Result<EngineEvent<'f>, EngineError> {
        let delegation = |id: std::borrow::Cow<'f, str>| {
            if id.is_empty() {
                UNCORRELATED.into()
            } else {
                id
            }
        };
        Ok(match event {
            LiveEvent::BackendStarted { delegation_id } => {
                let id = delegation(delegation_id);
                self.tools.running.insert(id.to_string());
                EngineEvent::ResponseStarted { response_id: id }
            }
            LiveEvent::FunctionCall {
                delegation_id,
                call_id,
                name,
                arguments,
            } => {
                self.tools.open_calls.insert(call_id.to_string());
                EngineEvent::FunctionCall {
                    response_id: delegation(delegation_id),
                    call_id,
                    name,
                    arguments,
                }
            }
            LiveEvent::BackendDone {
                delegation_id,
                status,
            } => {
                let id = delegation(delegation_id);
                self.tools.running.remove(&*id);
                if self.tools.may_continue() {
                    self.continue_due = true;
                }
                EngineEvent::ResponseDone {
                    response_id: id,
                    status,
                }
            }
            LiveEvent::Closed(reason) if reason == "connection_lost" => {
                return Err(EngineError::Closed(
                    "the engine lost its connection (session.closed: connection_lost)".into(),
                ));
            }
            LiveEvent::Closed(reason) => EngineEvent::Error {
                code: Some("session_closed".into()),
                message: format!("the engine closed the session ({reason})").into(),
                fatal: true,
            },
            LiveEvent::Error { code, message } => {
                let fatal = code.as_deref().is_some_and(wire::is_fatal);
                EngineEvent::Error {
                    code,
                    message,
                    fatal,
                }
            }
            _ => EngineEvent::Ignored,
        })
    }

    /// Sends the owed `response.create` before anything else goes out.
    async fn settle_continue(&mut self) -> Result<(), EngineError> {
        if std::mem::take(&mut self.continue_due) {
            self.tools.continue_wanted = false;
            self.send_text(wire::response_create()).await?;
        }
        Ok(())
    }
}

impl EngineSession for LiveSession {
    type Frame = LiveFrame;

    async fn recv(&mut self) -> Result<LiveFrame, EngineError> {
        if std::mem::take(&mut self.ready) {
            return Ok(LiveFrame::Ready);
        }
        if let Some(audio) = self.deferred_audio.take() {
            return Ok(LiveFrame::Audio(audio));
        }
        let closing = self.next_turn_close();
        tokio::select! {
            message = self.socket.next() => match message {
                Some(Ok(Message::Close(close))) => Err(EngineError::Closed(close.map_or_else(
                    || "the engine closed the connection".to_owned(),
                    |c| format!("the engine closed the connection: {} {}", c.code, c.reason),
                ))),
                Some(Ok(message)) => Ok(LiveFrame::Message(message)),
                Some(Err(e)) => Err(EngineError::Io(e.to_string())),
                None => Err(EngineError::Closed("the engine connection dropped".to_owned())),
            },
            () = tokio::time::sleep_until(closing.map_or_else(Instant::now, |(at, _)| at)), if closing.is_some() => {
                let caller = closing.is_some_and(|(_, caller)| caller);
                let text = if caller { self.caller.take() } else { self.agent.take() };
                Ok(LiveFrame::Turn { caller, text })
            }
        }
    }

    fn parse<'f>(&mut self, frame: &'f LiveFrame) -> Result<EngineEvent<'f>, EngineError> {
        let text = match frame {
            LiveFrame::Ready => return Ok(EngineEvent::Ready),
            LiveFrame::Audio(audio) => return Ok(self.audio_event(audio)),
            LiveFrame::Turn { caller: true, text } => {
                return Ok(EngineEvent::UserTranscript { text: text.into() });
            }
            LiveFrame::Turn {
                caller: false,
                text,
            } => {
                return Ok(EngineEvent::AgentTranscript { text: text.into() });
            }
            LiveFrame::Message(Message::Text(text)) => text,
            LiveFrame::Message(_) => return Ok(EngineEvent::Ignored),
        };
        let event = wire::parse_event(text).map_err(|e| EngineError::Malformed(e.to_string()))?;
        match event {
            LiveEvent::OutputAudio(audio) => match audio {
                std::borrow::Cow::Borrowed(audio) => Ok(self.audio_event(audio)),
                // Base64 never holds an escape; an escaped string is not audio.
                std::borrow::Cow::Owned(_) => Err(EngineError::Malformed(
                    "agent audio with escapes".to_owned(),
                )),
            },
            LiveEvent::InputTranscript(fragment) => {
                // The caller talking is the only sign of a barge-in GPT-Live gives.
                Ok(if self.caller.push(&fragment) {
                    EngineEvent::SpeechStarted
                } else {
                    EngineEvent::Ignored
                })
            }
            LiveEvent::OutputTranscript(fragment) => {
                self.agent.push(&fragment);
                Ok(EngineEvent::Ignored)
            }
            LiveEvent::Started | LiveEvent::Ignored => Ok(EngineEvent::Ignored),
            other => self.backend_event(other),
        }
    }

    async fn send(&mut self, command: EngineCommand<'_>) -> Result<(), EngineError> {
        self.settle_continue().await?;
        let text = match command {
            EngineCommand::AppendAudio(audio) => wire::append_audio(audio),
            EngineCommand::ToolResult { call_id, output } => {
                self.tools.open_calls.remove(call_id);
                self.send_text(wire::function_call_output(call_id, output))
                    .await?;
                if self.tools.may_continue() {
                    self.tools.continue_wanted = false;
                    return self.send_text(wire::response_create()).await;
                }
                return Ok(());
            }
            EngineCommand::ContinueAfterTools => {
                self.tools.continue_wanted = true;
                if !self.tools.may_continue() {
                    // Another response still runs, or a call still waits: later.
                    return Ok(());
                }
                self.tools.continue_wanted = false;
                wire::response_create()
            }
            EngineCommand::SayVerbatim { text } => wire::say_verbatim(text),
            EngineCommand::Respond { instructions } => wire::commentary(instructions),
            // The model handles being talked over; there is nothing to cut.
            EngineCommand::Truncate { .. } => return Ok(()),
        };
        self.send_text(text).await
    }

    fn finish(&mut self) -> Vec<EngineEvent<'static>> {
        let mut open: Vec<(Instant, bool)> =
            [(self.caller.opened_at, true), (self.agent.opened_at, false)]
                .into_iter()
                .filter_map(|(at, caller)| at.map(|at| (at, caller)))
                .collect();
        open.sort();
        open.into_iter()
            .filter_map(|(_, caller)| {
                let text = if caller {
                    self.caller.take()
                } else {
                    self.agent.take()
                };
                (!text.is_empty()).then(|| {
                    if caller {
                        EngineEvent::UserTranscript { text: text.into() }
                    } else {
                        EngineEvent::AgentTranscript { text: text.into() }
                    }
                })
            })
            .collect()
    }

    async fn close(mut self) {
        let _ = self.send_text(wire::session_close()).await;
        let _ = self.socket.close(None).await;
    }
}
