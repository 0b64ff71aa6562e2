//! The agent and its engines as this deployment runs them, in one place for the server and
//! the console: the `PATTER_*` overrides, and the engines built from the settings.

use tracing::info;

use crate::agent::AgentSpec;
use crate::config::LocalConfig;
use crate::engine::openai_live::OpenAiLive;
use crate::engine::openai_realtime::OpenAiRealtime;

/// The agent as this deployment runs it: `PATTER_ENGINE`, `PATTER_MODEL`, `PATTER_VOICE` and
/// `PATTER_AUDIO_FORMAT` override what the code says.
pub(crate) fn deployed(config: &LocalConfig, mut agent: AgentSpec) -> AgentSpec {
    if let Some(engine) = config.engine
        && engine != agent.engine
    {
        // A model named for the agent's own engine means nothing to another one: the new
        // engine's default (or PATTER_MODEL) applies.
        if let Some(model) = agent.model.take() {
            info!(engine = %engine, model, "engine switched; the agent's model is left out");
        }
        agent.engine = engine;
    }
    if let Some(model) = &config.model {
        agent.model = Some(model.clone());
    }
    if let Some(voice) = &config.voice {
        agent.voice.clone_from(voice);
    }
    if let Some(format) = config.audio_format {
        agent.audio = format;
    }
    agent.transfers = agent.transfers.overridden_by(&config.transfers);
    agent
}

/// The engines a deployment can run its agent on, configured from its settings.
pub(crate) struct Engines {
    pub(crate) realtime: OpenAiRealtime,
    pub(crate) live: OpenAiLive,
}

impl Engines {
    pub(crate) fn new(config: &LocalConfig) -> Self {
        let realtime = OpenAiRealtime::new(config.openai_api_key.expose())
            .url(&config.openai_realtime_url)
            .handshake_timeout(config.limits.engine_handshake_timeout)
            .max_message_bytes(config.limits.max_ws_message_bytes);
        let mut live = OpenAiLive::new(config.openai_api_key.expose())
            .url(&config.openai_live_url)
            .handshake_timeout(config.limits.engine_handshake_timeout)
            .max_message_bytes(config.limits.max_ws_message_bytes);
        if let Some(model) = &config.delegation_model {
            live = live.backend_model(model);
        }
        Engines { realtime, live }
    }
}
