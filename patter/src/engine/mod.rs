//! The speech-engine seam. The call session speaks in these small types; each engine
//! (OpenAI Realtime GA first) turns them into its own wire messages inside its module.

pub mod openai_realtime;

use std::borrow::Cow;

use crate::tool::ToolDefinition;

/// The audio format between patter and the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AudioFormat {
    /// G.711 μ-law 8 kHz, Twilio's own format, passed through untouched (the default).
    #[default]
    Pcmu,
    /// PCM16 24 kHz: patter transcodes and resamples each way, for models that need it.
    Pcm24k,
}

/// What the engine is configured with for one call.
#[derive(Debug, Clone)]
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
}

/// Something the engine said, in patter's terms, borrowing its strings from the event's
/// text where it can (an audio delta is relayed without a copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent<'a> {
    /// The session accepted its configuration.
    SessionUpdated,
    /// A response started.
    ResponseStarted {
        /// Its id.
        response_id: Cow<'a, str>,
    },
    /// A chunk of agent audio, base64 in the session's format.
    Audio {
        /// The response it belongs to.
        response_id: Cow<'a, str>,
        /// The assistant item it belongs to.
        item_id: Cow<'a, str>,
        /// Base64 audio.
        audio: Cow<'a, str>,
    },
    /// The caller started speaking.
    SpeechStarted,
    /// The model wants a tool called.
    FunctionCall {
        /// The response it belongs to.
        response_id: Cow<'a, str>,
        /// The engine's id of this call.
        call_id: Cow<'a, str>,
        /// The tool's name.
        name: Cow<'a, str>,
        /// JSON arguments, as text.
        arguments: Cow<'a, str>,
    },
    /// A response finished.
    ResponseDone {
        /// Its id.
        response_id: Cow<'a, str>,
        /// `completed`, `cancelled`, `failed`, `incomplete`.
        status: Cow<'a, str>,
    },
    /// What the caller said, transcribed.
    UserTranscript {
        /// The text.
        text: Cow<'a, str>,
    },
    /// What the agent said.
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
        /// Whether the session cannot go on.
        fatal: bool,
    },
    /// Anything the session does not act on.
    Ignored,
}
