//! The speech-engine seam: how a call drives any speech-to-speech engine.
//!
//! An [`Engine`] opens one [`EngineSession`] per call from an [`EngineSetup`]. The call then
//! reads the session's frames, has the engine [`parse`](EngineSession::parse) each into an
//! [`EngineEvent`] (which borrows from the frame, so an audio delta is relayed without a
//! copy), and sends [`EngineCommand`]s back. Everything that differs from engine to engine
//! stays behind this seam: the wire format, how a tool is described, voice-activity
//! settings, which errors are fatal, and what "continue after the tools" means on the wire.
//!
//! [`OpenAiRealtime`](openai_realtime::OpenAiRealtime) is the first engine.
//!
//! The call is generic over the engine, so the audio path is statically dispatched: no
//! boxed future or virtual call per frame.

mod json;
pub mod openai_live;
pub mod openai_realtime;
mod socket;

pub(crate) use socket::jittered;

use std::borrow::Cow;
use std::future::Future;

pub use crate::audio::{AudioChunk, AudioFormat};
use crate::tool::ToolDefinition;

/// Which speech engine an agent talks through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EngineKind {
    /// OpenAI Realtime (GA), `/v1/realtime`: the default.
    #[default]
    Realtime,
    /// OpenAI GPT-Live, `/v1/live/sessions`: tools delegated to a backend model.
    GptLive,
}

impl EngineKind {
    /// The name used in settings: `realtime` or `gpt-live`.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Realtime => "realtime",
            EngineKind::GptLive => "gpt-live",
        }
    }

    /// Reads a setting's value: `realtime` or `gpt-live` (any case).
    pub fn parse(text: &str) -> Option<EngineKind> {
        match text.trim().to_ascii_lowercase().as_str() {
            "realtime" => Some(EngineKind::Realtime),
            "gpt-live" => Some(EngineKind::GptLive),
            _ => None,
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A speech engine: opens one session per call.
pub trait Engine: Send + Sync + 'static {
    /// One call's connection to the engine.
    type Session: EngineSession;

    /// The model used when the agent names none.
    fn default_model(&self) -> &str;

    /// A short name for metrics and traces (`openai_realtime`, `openai_live`).
    fn name(&self) -> &'static str {
        "engine"
    }

    /// Opens a session configured with `setup`. The engine bounds the time this takes
    /// (connect and handshake) by its own timeouts.
    fn open(
        &self,
        setup: &EngineSetup,
    ) -> impl Future<Output = Result<Self::Session, EngineError>> + Send;
}

/// One call's connection to an engine.
///
/// The call reads with [`recv`](EngineSession::recv) inside a `select!` with its other
/// inputs, so `recv` must be cancel-safe: dropping its future loses no frame.
pub trait EngineSession: Send + 'static {
    /// One message as it arrives, owned; [`EngineSession::parse`] reads events out of it.
    type Frame: Send;

    /// Waits for the next frame. An error means the engine is gone (closed, dropped, or the
    /// socket failed); the call then ends.
    fn recv(&mut self) -> impl Future<Output = Result<Self::Frame, EngineError>> + Send;

    /// Reads a frame. A frame that cannot be read is [`EngineError::Malformed`]: the call
    /// counts it and goes on. Any other error ends the call as a lost engine (a frame saying
    /// the connection is gone, say).
    fn parse<'f>(&mut self, frame: &'f Self::Frame) -> Result<EngineEvent<'f>, EngineError>;

    /// Sends a command. An error means the engine is gone.
    fn send(
        &mut self,
        command: EngineCommand<'_>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// What the engine still holds when the call ends, such as a transcript turn assembled
    /// from fragments that no gap has closed yet (as `UserTranscript` / `AgentTranscript`).
    /// The call records it before it closes the session.
    fn finish(&mut self) -> Vec<EngineEvent<'static>> {
        Vec::new()
    }

    /// Closes the session. The call bounds how long this may take.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// What the engine is configured with for one call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EngineSetup {
    /// The model.
    pub model: String,
    /// The system prompt, with variables filled in.
    pub instructions: String,
    /// The voice.
    pub voice: String,
    /// Audio format both ways.
    pub audio: AudioFormat,
    /// The tools the model may call.
    pub tools: Vec<ToolDefinition>,
    /// Spoken word for word once the engine is [`Ready`](EngineEvent::Ready), if set. The
    /// call sends it as [`EngineCommand::SayVerbatim`]; an engine that needs it earlier (in
    /// its start-up context, say) finds it here.
    pub first_message: Option<String>,
    /// Whether the model answers in speech (a call) or in text (the console and
    /// conversation tests). An engine without a text mode refuses a text setup.
    pub modality: Modality,
    /// The conversation so far, when this session continues a call whose engine session
    /// was lost: the engine puts it in the model's context before anything else happens.
    /// Empty for a new call.
    pub history: Vec<HistoryItem>,
}

/// One item of a conversation replayed into a new engine session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistoryItem {
    /// The caller's words.
    Caller(String),
    /// The agent's words.
    Agent(String),
    /// The model called a tool.
    ToolCall {
        /// The engine's id of the call (the result, now or later, names it).
        call_id: String,
        /// The tool.
        name: String,
        /// Its arguments, as the model wrote them.
        arguments: String,
    },
    /// A tool's result, as the model was handed it.
    ToolOutput {
        /// The call it answers.
        call_id: String,
        /// The result.
        output: String,
    },
}

impl HistoryItem {
    /// Its size in text, for the bound on what is replayed.
    pub fn size(&self) -> usize {
        match self {
            HistoryItem::Caller(text) | HistoryItem::Agent(text) => text.len(),
            HistoryItem::ToolCall {
                call_id,
                name,
                arguments,
            } => call_id.len() + name.len() + arguments.len(),
            HistoryItem::ToolOutput { call_id, output } => call_id.len() + output.len(),
        }
    }
}

/// What the model answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Modality {
    /// Speech, in the setup's audio format: a call.
    #[default]
    Audio,
    /// Text: the caller types and the model writes, with the same prompt and tools.
    Text,
}

impl EngineSetup {
    /// A setup with these settings, no tools and no first message.
    pub fn new(
        model: impl Into<String>,
        instructions: impl Into<String>,
        voice: impl Into<String>,
        audio: AudioFormat,
    ) -> Self {
        EngineSetup {
            model: model.into(),
            instructions: instructions.into(),
            voice: voice.into(),
            audio,
            tools: Vec::new(),
            first_message: None,
            modality: Modality::Audio,
            history: Vec::new(),
        }
    }

    /// Sets the tools.
    pub fn tools(mut self, tools: Vec<ToolDefinition>) -> Self {
        self.tools = tools;
        self
    }

    /// Sets the first message.
    pub fn first_message(mut self, text: Option<String>) -> Self {
        self.first_message = text;
        self
    }

    /// Sets what the model answers in.
    pub fn modality(mut self, modality: Modality) -> Self {
        self.modality = modality;
        self
    }

    /// Sets the conversation so far (a session that continues a call).
    pub fn history(mut self, history: Vec<HistoryItem>) -> Self {
        self.history = history;
        self
    }
}

/// What the engine reports it used, as it bills it: tokens by kind (a response's), or time
/// (engines billed by the minute).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Text tokens in, cached ones included.
    pub text_in: u64,
    /// Audio tokens in, cached ones included.
    pub audio_in: u64,
    /// Of `text_in`, those read from the cache.
    pub cached_text_in: u64,
    /// Of `audio_in`, those read from the cache.
    pub cached_audio_in: u64,
    /// Text tokens out.
    pub text_out: u64,
    /// Audio tokens out.
    pub audio_out: u64,
    /// Engine time billed, in milliseconds (engines billed by the minute).
    pub billed_ms: u64,
}

impl Usage {
    /// Input tokens, text and audio, cached included.
    pub fn input_tokens(&self) -> u64 {
        self.text_in + self.audio_in
    }

    /// Cached input tokens.
    pub fn cached_tokens(&self) -> u64 {
        self.cached_text_in + self.cached_audio_in
    }

    /// Output tokens, text and audio.
    pub fn output_tokens(&self) -> u64 {
        self.text_out + self.audio_out
    }

    /// Adds another response's usage (billed time is a running total: the larger wins).
    pub fn add(&mut self, other: &Usage) {
        self.text_in += other.text_in;
        self.audio_in += other.audio_in;
        self.cached_text_in += other.cached_text_in;
        self.cached_audio_in += other.cached_audio_in;
        self.text_out += other.text_out;
        self.audio_out += other.audio_out;
        self.billed_ms = self.billed_ms.max(other.billed_ms);
    }
}

/// An audio format as an engine reports it (Realtime: `{"type":"audio/pcmu"}`,
/// `{"type":"audio/pcm","rate":24000}`), to be checked against what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedFormat {
    /// The MIME-like type (`audio/pcmu`, `audio/pcma`, `audio/pcm`).
    pub kind: String,
    /// The sample rate, when given.
    pub rate: Option<u32>,
}

impl ReportedFormat {
    /// The patter format it is, if patter can carry it.
    pub fn audio_format(&self) -> Option<AudioFormat> {
        match (self.kind.as_str(), self.rate) {
            ("audio/pcmu", None | Some(8000)) => Some(AudioFormat::Pcmu),
            ("audio/pcm", None | Some(24000)) => Some(AudioFormat::Pcm24k),
            _ => None,
        }
    }
}

impl std::fmt::Display for ReportedFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rate {
            Some(rate) => write!(f, "{} at {rate} Hz", self.kind),
            None => f.write_str(&self.kind),
        }
    }
}

/// Something the engine said, in patter's terms, borrowing its strings from the frame where
/// it can.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineEvent<'a> {
    /// The engine took its configuration: the first message may be spoken. May come more
    /// than once; only the first counts.
    Ready,
    /// Like [`Ready`](EngineEvent::Ready), with the audio formats the engine says it took:
    /// the call checks them against what it asked, and adapts or ends.
    Configured {
        /// The caller's audio, as the engine expects it.
        input: Option<ReportedFormat>,
        /// The agent's audio, as the engine sends it.
        output: Option<ReportedFormat>,
    },
    /// A response started: the agent is about to speak or call tools.
    ResponseStarted {
        /// Its id.
        response_id: Cow<'a, str>,
    },
    /// A chunk of agent audio, base64 in the session's format.
    Audio {
        /// The response it belongs to.
        response_id: Cow<'a, str>,
        /// The item it belongs to (what a truncation names).
        item_id: Cow<'a, str>,
        /// Base64 audio.
        audio: Cow<'a, str>,
    },
    /// The caller started speaking: the agent must stop.
    SpeechStarted,
    /// The caller stopped speaking: the agent's answer is awaited from now.
    SpeechStopped,
    /// The model wants a tool called.
    FunctionCall {
        /// The response it belongs to.
        response_id: Cow<'a, str>,
        /// The engine's id of this call; the result names it.
        call_id: Cow<'a, str>,
        /// The tool's name.
        name: Cow<'a, str>,
        /// JSON arguments, as text.
        arguments: Cow<'a, str>,
    },
    /// A response finished: every tool call it makes has been announced. Once each has an
    /// answer, the call sends [`EngineCommand::ContinueAfterTools`].
    ResponseDone {
        /// Its id.
        response_id: Cow<'a, str>,
        /// How it ended, in the engine's words (`completed`, `cancelled`, …).
        status: Cow<'a, str>,
        /// What it used, when the engine says.
        usage: Option<Usage>,
    },
    /// The engine's running total of billed use (engines billed by time).
    UsageSoFar(Usage),
    /// What the caller said, transcribed.
    UserTranscript {
        /// The text.
        text: Cow<'a, str>,
    },
    /// A piece of the agent's text, as it is written (text modality).
    TextDelta {
        /// The response it belongs to.
        response_id: Cow<'a, str>,
        /// The new text.
        delta: Cow<'a, str>,
    },
    /// What the agent said (or, in text modality, wrote), whole.
    AgentTranscript {
        /// The text.
        text: Cow<'a, str>,
    },
    /// The engine reported an error.
    Error {
        /// The error code, if any.
        code: Option<Cow<'a, str>>,
        /// The message.
        message: Cow<'a, str>,
        /// Whether the session cannot go on (the engine decides which codes are fatal).
        fatal: bool,
    },
    /// Anything the call does not act on.
    Ignored,
}

/// What the call asks of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineCommand<'a> {
    /// Caller audio, in the session's format.
    AppendAudio(AudioChunk<'a>),
    /// The result of one tool call (a JSON text, or an error JSON).
    ToolResult {
        /// The engine's id of the call.
        call_id: &'a str,
        /// What the model is handed.
        output: &'a str,
    },
    /// Every tool call of a finished response has its result: the model may go on.
    ContinueAfterTools,
    /// What the caller typed (text modality): added as the caller's message, and the model
    /// responds.
    CallerText {
        /// The words.
        text: &'a str,
    },
    /// Put these words in the conversation as the agent's own, without a response (the
    /// first message of a text conversation, shown as it is).
    AgentSaid {
        /// The words.
        text: &'a str,
    },
    /// Say these words exactly (the first message).
    SayVerbatim {
        /// The words.
        text: &'a str,
    },
    /// A session that replaced a lost one goes on from the conversation it was given (the
    /// lost one owed an answer, or a result came for a call it made).
    Resume,
    /// Respond once with these instructions (a goodbye, say); the session's own stay.
    Respond {
        /// The instructions.
        instructions: &'a str,
    },
    /// The caller heard only the first `heard_ms` of this item: forget the rest.
    Truncate {
        /// The item.
        item_id: &'a str,
        /// How much of it was heard.
        heard_ms: u64,
    },
}

/// Why the engine failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine could not be reached or refused the session.
    #[error("the engine could not be reached: {0}")]
    Connect(String),
    /// The engine answered the connection with an HTTP error.
    #[error("the engine refused the connection: HTTP {status}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Refused {
        /// The HTTP status (401, 429, 503, …).
        status: u16,
        /// The engine's message, shortened.
        message: String,
    },
    /// The engine did not accept the session in time.
    #[error("the engine did not accept the connection within {0} ms")]
    Timeout(u128),
    /// The engine closed the session or the connection dropped.
    #[error("{0}")]
    Closed(String),
    /// The connection failed.
    #[error("the engine connection failed: {0}")]
    Io(String),
    /// The engine cannot run this setup (a text conversation on a speech-only engine, say).
    #[error("{0}")]
    Unsupported(String),
    /// A frame that could not be read; the call goes on.
    #[error("malformed engine event: {0}")]
    Malformed(String),
}

impl EngineError {
    /// Refused for patter's credentials or rights (HTTP 401, 403): retrying cannot help.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            EngineError::Refused {
                status: 401 | 403,
                ..
            }
        )
    }

    /// Worth another try at connect time: busy (429), a server error (5xx), or the
    /// connection itself failing.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Refused { status, .. } => *status == 429 || *status >= 500,
            EngineError::Connect(_) | EngineError::Io(_) => true,
            _ => false,
        }
    }
}
