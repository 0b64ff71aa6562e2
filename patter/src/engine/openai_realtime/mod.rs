//! OpenAI Realtime (GA) as an [`Engine`]: one WebSocket per call to
//! `wss://api.openai.com/v1/realtime?model=…`, configured with `session.update`.
//!
//! What is particular to Realtime lives here and in [`wire`]: the GA message shapes, server
//! VAD that starts and interrupts responses by itself, input transcription, which error
//! codes end a session, and that the model speaks after tool results only when asked with
//! `response.create`, once the response that called them is done.

#[doc(hidden)]
pub mod wire;

use std::fmt;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::socket::{Socket, dial_within};
use super::{Engine, EngineCommand, EngineError, EngineEvent, EngineSession, EngineSetup};
use crate::secret::Secret;

/// The default endpoint.
pub const DEFAULT_URL: &str = "wss://api.openai.com/v1/realtime";
/// The model used when the agent names none: a current GA Realtime model.
pub const DEFAULT_MODEL: &str = "gpt-realtime-2.1";
/// The model that transcribes the caller, for the call's transcript.
pub const DEFAULT_TRANSCRIPTION_MODEL: &str = "gpt-4o-mini-transcribe";
/// How long the handshake may take by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message accepted from the engine by default.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Server voice-activity detection: when the caller has started and stopped speaking. The
/// engine starts a response when the caller stops, and cancels the agent's when the caller
/// starts.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ServerVad {
    /// Activation threshold, 0.0 to 1.0 (default 0.5); higher needs louder speech.
    pub threshold: f32,
    /// Audio kept from before speech started, in ms (default 300).
    pub prefix_padding_ms: u32,
    /// Silence that ends the caller's turn, in ms (default 500).
    pub silence_duration_ms: u32,
}

impl Default for ServerVad {
    fn default() -> Self {
        ServerVad {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
        }
    }
}

/// The OpenAI Realtime GA engine.
///
/// ```
/// use patter::engine::openai_realtime::OpenAiRealtime;
/// use patter::engine::Engine;
///
/// let engine = OpenAiRealtime::new("sk-…");
/// assert_eq!(engine.default_model(), "gpt-realtime-2.1");
/// let mini = OpenAiRealtime::new("sk-…").model("gpt-realtime-mini");
/// assert_eq!(mini.default_model(), "gpt-realtime-mini");
/// ```
#[derive(Clone)]
pub struct OpenAiRealtime {
    url: String,
    api_key: Secret,
    default_model: String,
    handshake_timeout: Duration,
    max_message_bytes: usize,
    vad: ServerVad,
    transcription_model: Option<String>,
}

impl OpenAiRealtime {
    /// The engine at OpenAI's endpoint, with this API key and the defaults.
    pub fn new(api_key: impl Into<String>) -> Self {
        OpenAiRealtime {
            url: DEFAULT_URL.to_owned(),
            api_key: Secret::new(api_key),
            default_model: DEFAULT_MODEL.to_owned(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            vad: ServerVad::default(),
            transcription_model: Some(DEFAULT_TRANSCRIPTION_MODEL.to_owned()),
        }
    }

    /// Another endpoint: a proxy, Azure OpenAI, or a local test peer.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// The model used when the agent names none (default [`DEFAULT_MODEL`]).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.default_model = model.into();
        self
    }

    /// How long the engine may take to accept the WebSocket (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The largest message accepted from the engine (default 1 MiB).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Voice-activity detection settings.
    pub fn vad(mut self, vad: ServerVad) -> Self {
        self.vad = vad;
        self
    }

    /// The model that transcribes the caller, or `None` for no caller transcript.
    pub fn transcription_model(mut self, model: Option<String>) -> Self {
        self.transcription_model = model;
        self
    }

    async fn connect(&self, model: &str) -> Result<Socket, EngineError> {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        let model: String = url::form_urlencoded::byte_serialize(model.as_bytes()).collect();
        let url = format!("{}{separator}model={model}", self.url);
        dial_within(
            &url,
            &self.api_key,
            self.max_message_bytes,
            self.handshake_timeout,
        )
        .await
    }
}

impl fmt::Debug for OpenAiRealtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiRealtime")
            .field("url", &crate::util::redact_url(&self.url))
            .field("api_key", &self.api_key)
            .field("default_model", &self.default_model)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("vad", &self.vad)
            .field("transcription_model", &self.transcription_model)
            .finish()
    }
}

impl Engine for OpenAiRealtime {
    type Session = RealtimeSession;

    fn default_model(&self) -> &str {
        &self.default_model
    }

    fn name(&self) -> &'static str {
        "openai_realtime"
    }

    async fn open(&self, setup: &EngineSetup) -> Result<RealtimeSession, EngineError> {
        let mut socket = self.connect(&setup.model).await?;
        let update = wire::session_update(setup, &self.vad, self.transcription_model.as_deref());
        socket
            .send(Message::text(update))
            .await
            .map_err(|e| EngineError::Io(format!("session.update could not be sent: {e}")))?;
        // A continued call: the conversation so far, before anything else is said.
        for item in wire::history_items(&setup.history) {
            socket
                .send(Message::text(item))
                .await
                .map_err(|e| EngineError::Io(format!("the history could not be sent: {e}")))?;
        }
        Ok(RealtimeSession { socket })
    }
}

/// One call's Realtime WebSocket.
pub struct RealtimeSession {
    socket: Socket,
}

impl fmt::Debug for RealtimeSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeSession").finish_non_exhaustive()
    }
}

impl RealtimeSession {
    async fn send_text(&mut self, text: String) -> Result<(), EngineError> {
        self.socket
            .send(Message::text(text))
            .await
            .map_err(|e| EngineError::Io(e.to_string()))
    }
}

impl EngineSession for RealtimeSession {
    type Frame = Message;

    async fn recv(&mut self) -> Result<Message, EngineError> {
        match self.socket.next().await {
            Some(Ok(Message::Close(close))) => Err(EngineError::Closed(close.map_or_else(
                || "the engine closed the connection".to_owned(),
                |c| format!("the engine closed the connection: {} {}", c.code, c.reason),
            ))),
            Some(Ok(message)) => Ok(message),
            Some(Err(e)) => Err(EngineError::Io(e.to_string())),
            None => Err(EngineError::Closed(
                "the engine connection dropped".to_owned(),
            )),
        }
    }

    fn parse<'f>(&mut self, frame: &'f Message) -> Result<EngineEvent<'f>, EngineError> {
        match frame {
            Message::Text(text) => {
                wire::parse_event(text).map_err(|e| EngineError::Malformed(e.to_string()))
            }
            // Pings are answered by tungstenite; Realtime sends no binary frames.
            _ => Ok(EngineEvent::Ignored),
        }
    }

    async fn send(&mut self, command: EngineCommand<'_>) -> Result<(), EngineError> {
        let text = match command {
            EngineCommand::AppendAudio(audio) => wire::append_audio(audio),
            EngineCommand::ToolResult { call_id, output } => {
                wire::function_call_output(call_id, output)
            }
            // Realtime speaks after tool results only when asked, and only once the
            // response that called them is done (else `conversation_already_has_active_response`).
            EngineCommand::ContinueAfterTools | EngineCommand::Resume => wire::response_create(),
            EngineCommand::SayVerbatim { text } => wire::say_verbatim(text),
            EngineCommand::CallerText { text } => {
                self.send_text(wire::message_item("user", text)).await?;
                wire::response_create()
            }
            EngineCommand::AgentSaid { text } => wire::message_item("assistant", text),
            EngineCommand::Respond { instructions } => {
                wire::response_with_instructions(instructions)
            }
            EngineCommand::Truncate { item_id, heard_ms } => wire::truncate(item_id, heard_ms),
        };
        self.send_text(text).await
    }

    async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
