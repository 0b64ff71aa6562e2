//! Agents: the prompt, voice, model and tools one phone agent runs with.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::audio::AudioFormat;
use crate::call::Transfers;
use crate::engine::EngineKind;
use crate::tool::{ToolSet, ToolSetError};

/// The default voice.
pub const DEFAULT_VOICE: &str = "marin";

/// Something that can answer calls: `#[patter::agent]` implements it, and so does
/// [`AgentSpec`] for agents assembled at run time.
///
/// The agent is shared by every call it serves (`Arc<Self>`), so tools that are `&self`
/// methods see the same state (a database pool, a cache) on every call.
pub trait Agent: Send + Sync + 'static {
    /// The agent's settings and checked tool set.
    fn spec(self: Arc<Self>) -> Result<AgentSpec, ToolSetError>;
}

/// An agent's settings: prompt, first message, voice, model, prompt variables and tools.
///
/// ```
/// use patter::{AgentSpec, ToolSet};
///
/// let agent = AgentSpec::new("You are a helpful receptionist for {company}.")
///     .first_message("Hello! How can I help?")
///     .variable("company", "Acme")
///     .voice("cedar");
/// assert_eq!(agent.model, None); // the engine's default: gpt-realtime-2.1 for OpenAI Realtime
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AgentSpec {
    /// The system prompt; `{name}` placeholders are filled from [`AgentSpec::variables`] and
    /// the call's parameters.
    pub system_prompt: String,
    /// Spoken word for word when the call connects, if set.
    pub first_message: Option<String>,
    /// The engine's voice.
    pub voice: String,
    /// The engine's model; `None` for the engine's default
    /// ([`openai_realtime::DEFAULT_MODEL`](crate::engine::openai_realtime::DEFAULT_MODEL) for
    /// OpenAI Realtime, [`openai_live::DEFAULT_MODEL`](crate::engine::openai_live::DEFAULT_MODEL)
    /// for GPT-Live).
    pub model: Option<String>,
    /// Values for the prompt's `{name}` placeholders.
    pub variables: BTreeMap<String, String>,
    /// The agent's own tools (the call adds its system tools).
    pub tools: ToolSet,
    /// The audio format between patter and the engine (μ-law pass-through by default).
    pub audio: AudioFormat,
    /// The speech engine (OpenAI Realtime by default).
    pub engine: EngineKind,
    /// Where `transfer_call` may send a caller (nowhere by default: the tool is then not
    /// offered).
    pub transfers: Transfers,
    /// Whether calls are recorded, caller and agent on separate channels (off by default);
    /// `on_recording` gets each recording.
    pub record: bool,
}

impl AgentSpec {
    /// An agent with this system prompt, the default voice and model, and no tools.
    pub fn new(system_prompt: impl Into<String>) -> Self {
        AgentSpec {
            system_prompt: system_prompt.into(),
            first_message: None,
            voice: DEFAULT_VOICE.to_owned(),
            model: None,
            variables: BTreeMap::new(),
            tools: ToolSet::default(),
            audio: AudioFormat::Pcmu,
            engine: EngineKind::Realtime,
            transfers: Transfers::default(),
            record: false,
        }
    }

    /// Sets the audio format between patter and the engine.
    pub fn audio_format(mut self, format: AudioFormat) -> Self {
        self.audio = format;
        self
    }

    /// Sets the speech engine.
    pub fn engine(mut self, engine: EngineKind) -> Self {
        self.engine = engine;
        self
    }

    /// Sets the words spoken when the call connects.
    pub fn first_message(mut self, text: impl Into<String>) -> Self {
        self.first_message = Some(text.into());
        self
    }

    /// Sets the voice.
    pub fn voice(mut self, voice: impl Into<String>) -> Self {
        self.voice = voice.into();
        self
    }

    /// Sets the model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets one prompt variable.
    pub fn variable(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.variables.insert(name.into(), value.into());
        self
    }

    /// Records calls, caller and agent on separate channels.
    pub fn record(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Sets where `transfer_call` may send a caller.
    pub fn transfers(mut self, transfers: Transfers) -> Self {
        self.transfers = transfers;
        self
    }

    /// Sets the tools.
    pub fn tools(mut self, tools: ToolSet) -> Self {
        self.tools = tools;
        self
    }
}

impl Agent for AgentSpec {
    fn spec(self: Arc<Self>) -> Result<AgentSpec, ToolSetError> {
        Ok(Arc::unwrap_or_clone(self))
    }
}
