//! The speech-engine seam. The call session speaks in these small types; each engine
//! (OpenAI Realtime GA first) turns them into its own wire messages inside its module.

pub mod openai_realtime;

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

/// Something the engine said, in patter's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// The session accepted its configuration.
    SessionUpdated,
    /// A response started.
    ResponseStarted {
        /// Its id.
        response_id: String,
    },
    /// A chunk of agent audio, base64 in the session's format.
    Audio {
        /// The response it belongs to.
        response_id: String,
        /// The assistant item it belongs to.
        item_id: String,
        /// Base64 audio.
        audio: String,
    },
    /// The caller started speaking.
    SpeechStarted,
    /// The model wants a tool called.
    FunctionCall {
        /// The response it belongs to.
        response_id: String,
        /// The engine's id of this call.
        call_id: String,
        /// The tool's name.
        name: String,
        /// JSON arguments, as text.
        arguments: String,
    },
    /// A response finished.
    ResponseDone {
        /// Its id.
        response_id: String,
        /// `completed`, `cancelled`, `failed`, `incomplete`.
        status: String,
    },
    /// What the caller said, transcribed.
    UserTranscript {
        /// The text.
        text: String,
    },
    /// What the agent said.
    AgentTranscript {
        /// The text.
        text: String,
    },
    /// The engine reported an error.
    Error {
        /// The error code, if any.
        code: Option<String>,
        /// The message.
        message: String,
        /// Whether the session cannot go on.
        fatal: bool,
    },
    /// Anything the session does not act on.
    Ignored,
}
