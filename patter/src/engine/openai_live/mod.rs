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
//! - Audio is continuous and paced by the model, silence included. Speech, with its pauses,
//!   counts as one response of the agent, ended by 0.8 s of silence (or of no audio at all),
//!   so that a goodbye is known to have been said and played; the silence between turns is
//!   not relayed. Backend responses are not speech: they only say when tools are done.
//! - There are no speech-start events, no truncation and no cancel: the model handles being
//!   talked over. When the caller's first words are transcribed while the agent speaks, the
//!   carrier drops the agent's audio it still holds; `Truncate` sends nothing.
//! - Transcripts arrive as fragments; a turn closes after a gap without fragments (0.8 s, as
//!   in Pipecat and LiveKit).
//! - A sentence cannot be said word for word: the first message is asked for as commentary
//!   and may be paraphrased.

#[doc(hidden)]
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::Message;

use self::wire::LiveEvent;
use super::socket::{Socket, dial_within};
use super::{
    Engine, EngineCommand, EngineError, EngineEvent, EngineSession, EngineSetup, Modality,
};
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
/// How much silence after speech ends the agent's turn (as in LiveKit's audio gate); a pause
/// shorter than this is part of the speech and is relayed.
pub const END_OF_SPEECH: Duration = Duration::from_millis(800);

/// How long the handshake and `session.started` may take by default.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message accepted from the engine by default.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Frames read while waiting for `session.started` before giving up.
const MAX_FRAMES_BEFORE_START: usize = 64;

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
        let mut socket = dial_within(
            &self.url,
            &self.api_key,
            self.max_message_bytes,
            self.handshake_timeout,
        )
        .await?;
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

impl Engine for OpenAiLive {
    type Session = LiveSession;

    fn default_model(&self) -> &str {
        &self.default_model
    }

    fn name(&self) -> &'static str {
        "openai_live"
    }

    async fn open(&self, setup: &EngineSetup) -> Result<LiveSession, EngineError> {
        if setup.modality != Modality::Audio {
            return Err(EngineError::Unsupported(
                "GPT-Live speaks only; use the realtime engine for text (PATTER_ENGINE=realtime)"
                    .to_owned(),
            ));
        }
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
            backend: Backend::default(),
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            timer_at: None,
        })
    }
}

/// What a live session's `recv` hands over: a message, or something the session itself
/// decided (the session is ready, a transcript turn closed, the agent stopped speaking, audio
/// held back a moment).
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
    /// No agent audio came for a while: the agent's turn (this one) is over.
    SpeechEnded(String),
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
    /// Quiet audio since the last sound, in bytes.
    quiet_bytes: usize,
    /// When the last chunk of audio came, while a turn is open.
    last_audio_at: Option<Instant>,
}

/// The backend's work, as the server counts it before it takes a `response.create`.
#[derive(Default)]
struct Backend {
    /// Responses running, by delegation.
    running: HashSet<String>,
    /// Calls announced and not answered yet, with their delegation.
    calls: HashMap<String, String>,
    /// Calls of responses that failed: the server dropped them, and takes no result for them.
    discarded: HashSet<String>,
    /// Results queued since the last `response.create`.
    outputs: usize,
    /// The call asked to go on.
    continue_wanted: bool,
}

impl Backend {
    /// Whether the one `response.create` may go now: asked for, something queued since the
    /// last, no response running and no call without its result. Takes the request if so.
    fn take_continue(&mut self) -> bool {
        let ready = self.continue_wanted
            && self.outputs > 0
            && self.running.is_empty()
            && self.calls.is_empty();
        if ready {
            self.continue_wanted = false;
            self.outputs = 0;
        }
        ready
    }
}

/// What the session's timer is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Due {
    CallerTurn,
    AgentTurn,
    SpeechEnd,
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
    backend: Backend,
    /// One timer for the transcript turns and the end of speech, moved only when it fires
    /// or an earlier deadline comes up (not on every chunk of audio).
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
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

    /// The earliest deadline, and what it is for.
    fn next_deadline(&self) -> Option<(Instant, Due)> {
        let speech_end = self
            .speech
            .turn
            .as_ref()
            .and(self.speech.last_audio_at)
            .map(|at| (at + END_OF_SPEECH, Due::SpeechEnd));
        [
            self.caller.closes_at.map(|at| (at, Due::CallerTurn)),
            self.agent.closes_at.map(|at| (at, Due::AgentTurn)),
            speech_end,
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
    }

    fn audio_event<'f>(&mut self, audio: &'f str) -> EngineEvent<'f> {
        let quiet = wire::is_quiet(audio, self.format);
        if self.speech.turn.is_some() {
            self.speech.last_audio_at = Some(Instant::now());
        }
        match (&self.speech.turn, quiet) {
            // The silence between turns is not relayed.
            (None, true) => EngineEvent::Ignored,
            (Some(turn), true) => {
                self.speech.quiet_bytes += audio.len() / 4 * 3;
                let quiet_ms = self.speech.quiet_bytes / self.format.bytes_per_ms();
                if Duration::from_millis(quiet_ms as u64) < END_OF_SPEECH {
                    // A pause within the speech plays as it is.
                    return self.relay(audio);
                }
                let turn = turn.clone();
                self.end_turn();
                EngineEvent::ResponseDone {
                    response_id: turn.into(),
                    status: "completed".into(),
                    usage: None,
                }
            }
            (Some(_), false) => {
                self.speech.quiet_bytes = 0;
                self.relay(audio)
            }
            (None, false) => {
                // The agent starts speaking: its turn starts now, the audio follows it.
                self.speech.turns += 1;
                let turn = format!("live_turn_{}", self.speech.turns);
                self.speech.turn = Some(turn.clone());
                self.speech.quiet_bytes = 0;
                self.speech.last_audio_at = Some(Instant::now());
                self.deferred_audio = Some(audio.to_owned());
                EngineEvent::ResponseStarted {
                    response_id: turn.into(),
                }
            }
        }
    }

    /// Nothing is ever truncated, so one item name serves every turn, with no allocation
    /// per chunk.
    fn relay<'f>(&self, audio: &'f str) -> EngineEvent<'f> {
        EngineEvent::Audio {
            response_id: LIVE_ITEM.into(),
            item_id: LIVE_ITEM.into(),
            audio: audio.into(),
        }
    }

    fn end_turn(&mut self) {
        self.speech.turn = None;
        self.speech.quiet_bytes = 0;
        self.speech.last_audio_at = None;
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
            // The backend thinking is not the agent speaking: only its end matters, to the
            // tool calls it made.
            LiveEvent::BackendStarted { delegation_id } => {
                self.backend
                    .running
                    .insert(delegation(delegation_id).into_owned());
                EngineEvent::Ignored
            }
            LiveEvent::FunctionCall {
                delegation_id,
                call_id,
                name,
                arguments,
            } => {
                let id = delegation(delegation_id);
                self.backend
                    .calls
                    .insert(call_id.to_string(), id.to_string());
                EngineEvent::FunctionCall {
                    response_id: id,
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
                self.backend.running.remove(&*id);
                if status != "completed" {
                    // The server drops a failed response's calls and refuses results for
                    // them (LiveKit does the same).
                    let dropped: Vec<String> = self
                        .backend
                        .calls
                        .iter()
                        .filter(|(_, d)| **d == *id)
                        .map(|(call, _)| call.clone())
                        .collect();
                    for call in dropped {
                        self.backend.calls.remove(&call);
                        self.backend.discarded.insert(call);
                    }
                }
                EngineEvent::ResponseDone {
                    response_id: id,
                    status,
                    usage: None,
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

    /// Sends the one `response.create` if it is due.
    async fn continue_if_due(&mut self) -> Result<(), EngineError> {
        if self.backend.take_continue() {
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
        loop {
            let due = self.next_deadline();
            if let Some((at, _)) = due
                && self.timer_at.is_none_or(|armed| at < armed)
            {
                self.timer.as_mut().reset(at);
                self.timer_at = Some(at);
            }
            tokio::select! {
                message = self.socket.next() => return match message {
                    Some(Ok(Message::Close(close))) => Err(EngineError::Closed(close.map_or_else(
                        || "the engine closed the connection".to_owned(),
                        |c| format!("the engine closed the connection: {} {}", c.code, c.reason),
                    ))),
                    Some(Ok(message)) => Ok(LiveFrame::Message(message)),
                    Some(Err(e)) => Err(EngineError::Io(e.to_string())),
                    None => Err(EngineError::Closed("the engine connection dropped".to_owned())),
                },
                () = &mut self.timer, if self.timer_at.is_some() => {
                    self.timer_at = None;
                    // Deadlines only move later; one that moved is armed again.
                    let Some((at, what)) = self.next_deadline() else { continue };
                    if at > Instant::now() {
                        continue;
                    }
                    match what {
                        Due::CallerTurn => {
                            return Ok(LiveFrame::Turn { caller: true, text: self.caller.take() });
                        }
                        Due::AgentTurn => {
                            return Ok(LiveFrame::Turn { caller: false, text: self.agent.take() });
                        }
                        Due::SpeechEnd => {
                            if let Some(turn) = self.speech.turn.clone() {
                                self.end_turn();
                                return Ok(LiveFrame::SpeechEnded(turn));
                            }
                        }
                    }
                }
            }
        }
    }

    fn parse<'f>(&mut self, frame: &'f LiveFrame) -> Result<EngineEvent<'f>, EngineError> {
        let text = match frame {
            LiveFrame::Ready => return Ok(EngineEvent::Ready),
            LiveFrame::Audio(audio) => return Ok(self.audio_event(audio)),
            LiveFrame::SpeechEnded(turn) => {
                return Ok(EngineEvent::ResponseDone {
                    response_id: turn.into(),
                    status: "completed".into(),
                    usage: None,
                });
            }
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
                // The caller's words while the agent speaks are the only sign of a barge-in
                // GPT-Live gives: the carrier drops the agent's audio it still holds.
                let opened = self.caller.push(&fragment);
                Ok(if opened && self.speech.turn.is_some() {
                    EngineEvent::SpeechStarted
                } else {
                    EngineEvent::Ignored
                })
            }
            LiveEvent::OutputTranscript(fragment) => {
                self.agent.push(&fragment);
                Ok(EngineEvent::Ignored)
            }
            LiveEvent::UsageSoFar(ms) => Ok(EngineEvent::UsageSoFar(crate::engine::Usage {
                billed_ms: ms,
                ..Default::default()
            })),
            LiveEvent::Started | LiveEvent::Ignored => Ok(EngineEvent::Ignored),
            other => self.backend_event(other),
        }
    }

    async fn send(&mut self, command: EngineCommand<'_>) -> Result<(), EngineError> {
        // A `response.create` held back for a response that was still running goes out now.
        self.continue_if_due().await?;
        let text = match command {
            EngineCommand::AppendAudio(audio) => wire::append_audio(audio),
            EngineCommand::ToolResult { call_id, output } => {
                if self.backend.discarded.remove(call_id) {
                    // Its response failed; the server takes no result for it.
                    return Ok(());
                }
                if !self.backend.calls.contains_key(call_id) {
                    // A call of a session this one replaced: the backend does not know it,
                    // so the voice model is handed the result to say in its own words.
                    let note = format!(
                        "A tool call made before the connection was restored has finished. \
                         Tell the caller what it found, briefly. Its result: {output}"
                    );
                    return self.send_text(wire::commentary(&note)).await;
                }
                self.backend.calls.remove(call_id);
                self.send_text(wire::function_call_output(call_id, output))
                    .await?;
                self.backend.outputs += 1;
                return self.continue_if_due().await;
            }
            EngineCommand::ContinueAfterTools => {
                self.backend.continue_wanted = true;
                return self.continue_if_due().await;
            }
            EngineCommand::SayVerbatim { text } => wire::say_verbatim(text),
            EngineCommand::Respond { instructions } => wire::act_now(instructions),
            // A fresh session has no response of its own to go on from: it is told to.
            EngineCommand::Resume => wire::act_now(
                "Continue the conversation from where it stopped, without greeting the caller \
                 again.",
            ),
            // Text commands belong to text sessions, which `open` refuses.
            EngineCommand::CallerText { .. } | EngineCommand::AgentSaid { .. } => return Ok(()),
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
