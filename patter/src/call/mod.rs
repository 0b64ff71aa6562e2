//! One phone call: the session that bridges the Twilio stream and the engine, and what the
//! lifecycle hooks see of it.

pub mod audio;
mod playback;
pub mod relay;
pub(crate) mod session;
mod system_tools;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::tool::{CallContext, ToolSet};

pub use system_tools::system_tools;

/// Who said something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The person on the phone.
    Caller,
    /// The AI agent.
    Agent,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptEntry {
    /// Who spoke.
    pub role: Role,
    /// What they said.
    pub text: String,
    /// When, from the start of the call.
    pub at: Duration,
}

/// One tool call made during the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallRecord {
    /// The tool's name.
    pub name: String,
    /// The model's arguments.
    pub arguments: String,
    /// What the model was handed.
    pub output: String,
    /// Whether the tool produced a result (not an error).
    pub ok: bool,
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// Twilio stopped the stream: the caller hung up, or the call was redirected.
    StreamStopped,
    /// The agent hung up (`end_call`).
    AgentHungUp {
        /// The reason the model gave.
        reason: String,
    },
    /// The agent transferred the call.
    Transferred {
        /// The number dialled.
        to: String,
    },
    /// The engine could not be reached, or its socket dropped.
    EngineLost {
        /// What happened.
        detail: String,
    },
    /// The engine reported an error it cannot recover from.
    EngineError {
        /// The engine's message.
        message: String,
    },
    /// The call reached the maximum duration.
    MaxDuration,
    /// The server shut down before the call finished.
    Shutdown,
    /// The Twilio socket closed without `stop`.
    StreamClosed,
}

/// What `on_call_end` receives.
#[derive(Debug, Clone)]
pub struct CallSummary {
    /// The call.
    pub context: CallContext,
    /// Why it ended.
    pub reason: EndReason,
    /// How long the stream lasted.
    pub duration: Duration,
    /// Both sides of the conversation, in order.
    pub transcript: Vec<TranscriptEntry>,
    /// The tool calls, in the order they finished.
    pub tool_calls: Vec<ToolCallRecord>,
}

/// What `on_call_start` may change for one call.
#[derive(Debug, Clone, Default)]
pub struct CallSetup {
    pub(crate) system_prompt: Option<String>,
    pub(crate) first_message: Option<Option<String>>,
    pub(crate) variables: BTreeMap<String, String>,
    pub(crate) tools: Option<ToolSet>,
}

impl CallSetup {
    /// Keeps the agent's settings.
    pub fn new() -> Self {
        CallSetup::default()
    }

    /// Replaces the system prompt for this call.
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.system_prompt = Some(prompt.into());
        self
    }

    /// Replaces the first message for this call.
    pub fn first_message(mut self, text: impl Into<String>) -> Self {
        self.first_message = Some(Some(text.into()));
        self
    }

    /// No first message on this call: the caller speaks first.
    pub fn no_first_message(mut self) -> Self {
        self.first_message = Some(None);
        self
    }

    /// Sets a prompt variable for this call.
    pub fn variable(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.variables.insert(name.into(), value.into());
        self
    }

    /// Replaces the agent's tools for this call.
    pub fn tools(mut self, tools: ToolSet) -> Self {
        self.tools = Some(tools);
        self
    }
}

type StartHook = dyn Fn(CallContext) -> BoxFuture<'static, CallSetup> + Send + Sync;
type TranscriptHook = dyn Fn(&CallContext, &TranscriptEntry) + Send + Sync;
type EndHook = dyn Fn(CallSummary) -> BoxFuture<'static, ()> + Send + Sync;

/// The lifecycle hooks.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) on_call_start: Option<Arc<StartHook>>,
    pub(crate) on_transcript: Option<Arc<TranscriptHook>>,
    pub(crate) on_call_end: Option<Arc<EndHook>>,
}

impl Hooks {
    pub(crate) fn set_on_call_start<F, Fut>(&mut self, hook: F)
    where
        F: Fn(CallContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CallSetup> + Send + 'static,
    {
        self.on_call_start = Some(Arc::new(move |ctx| Box::pin(hook(ctx))));
    }

    pub(crate) fn set_on_transcript<F>(&mut self, hook: F)
    where
        F: Fn(&CallContext, &TranscriptEntry) + Send + Sync + 'static,
    {
        self.on_transcript = Some(Arc::new(hook));
    }

    pub(crate) fn set_on_call_end<F, Fut>(&mut self, hook: F)
    where
        F: Fn(CallSummary) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_call_end = Some(Arc::new(move |summary| Box::pin(hook(summary))));
    }
}

/// Fills `{name}` placeholders in `template` from `values`; unknown placeholders stay as
/// they are. Values are inserted literally: a value containing `{x}` is not expanded again.
pub fn fill_placeholders(template: &str, values: &BTreeMap<String, String>) -> String {
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        // Only the run of name characters is looked at, so the scan stays linear.
        let len = after.bytes().take_while(|&b| is_name(b)).count();
        if len > 0 && after.as_bytes().get(len) == Some(&b'}') {
            let name = &after[..len];
            match values.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
            }
            rest = &after[len + 1..];
        } else {
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}
