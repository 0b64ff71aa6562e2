//! One phone call: the session that bridges a carrier leg and an engine session, what the
//! lifecycle hooks see of it, and [`CallEnv`], which runs a call over any
//! [`Engine`](crate::engine::Engine) and [`CarrierLeg`](crate::carrier::CarrierLeg).
//!
//! The session itself only routes: what it decides is in small state machines beside it
//! (`Playback` for what the caller heard, `Turns` for responses and their tool
//! calls, `Closing` for goodbyes), each unit-tested on its own.

mod actions;
mod closing;
mod cost;
mod env;
mod hooks;
mod jobs;
mod keys;
mod measure;
mod playback;
mod recovery;
#[doc(hidden)]
pub mod relay;
mod session;
mod setup;
mod system_tools;
mod text;
mod transfers;
mod turns;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::tool::CallContext;

pub use cost::{Cost, DEFAULT_PRICES_AS_OF, ModelPrices, Money, Prices, carrier_minutes};
pub use env::{CallEnv, TraceSettings};
pub use hooks::{CallEvent, CallSetup, Hooks, Recording};
pub use measure::{CallMetrics, Percentiles, ToolTiming, TurnMetrics};
pub use recovery::{Reconnect, ReconnectCause};
pub use system_tools::system_tools;
pub use text::{NotAKey, TextCall, TextEvent};
pub use transfers::{NumberPattern, TransferError, Transfers};

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
#[non_exhaustive]
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
#[non_exhaustive]
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
    /// The caller's side stopped the media: the caller hung up, or the call moved on (a
    /// Twilio Media Stream's `stop`).
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
    /// The engine could not be reached, or its connection dropped.
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
    /// The caller's connection closed or failed without a stop.
    StreamClosed,
    /// The engine took an audio format patter cannot carry to the caller.
    AudioFormat {
        /// What was asked.
        asked: String,
        /// What the engine reported (input, output).
        got: String,
    },
}

impl EndReason {
    /// Whether the engine failed (lost, unreachable, or an error it cannot recover from).
    pub fn is_engine_failure(&self) -> bool {
        matches!(
            self,
            EndReason::EngineLost { .. }
                | EndReason::EngineError { .. }
                | EndReason::AudioFormat { .. }
        )
    }

    /// A short, stable name for metrics and traces: `stream_stopped`, `agent_hung_up`,
    /// `transferred`, `engine_lost`, `engine_error`, `max_duration`, `shutdown`,
    /// `stream_closed`.
    pub fn kind(&self) -> &'static str {
        match self {
            EndReason::StreamStopped => "stream_stopped",
            EndReason::AgentHungUp { .. } => "agent_hung_up",
            EndReason::Transferred { .. } => "transferred",
            EndReason::EngineLost { .. } => "engine_lost",
            EndReason::EngineError { .. } => "engine_error",
            EndReason::MaxDuration => "max_duration",
            EndReason::Shutdown => "shutdown",
            EndReason::StreamClosed => "stream_closed",
            EndReason::AudioFormat { .. } => "audio_format",
        }
    }
}

/// Says how the call ended, in a few words: "the caller hung up", "the agent transferred
/// the call to +15550199", "the engine failed: …".
impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::StreamStopped => f.write_str("the caller hung up"),
            EndReason::AgentHungUp { reason } => write!(f, "the agent hung up ({reason})"),
            EndReason::Transferred { to } => write!(f, "the agent transferred the call to {to}"),
            EndReason::EngineLost { detail } => write!(f, "the engine failed: {detail}"),
            EndReason::EngineError { message } => {
                write!(f, "the engine reported an error: {message}")
            }
            EndReason::MaxDuration => f.write_str("the call reached its time limit"),
            EndReason::Shutdown => f.write_str("the server shut down"),
            EndReason::StreamClosed => f.write_str("the caller's connection closed"),
            EndReason::AudioFormat { asked, got } => write!(
                f,
                "the engine took audio patter cannot carry: asked {asked}, got {got}"
            ),
        }
    }
}

/// What `on_call_end` receives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CallSummary {
    /// The call.
    pub context: CallContext,
    /// Why it ended.
    pub reason: EndReason,
    /// How long the call lasted, from its start to its end.
    pub duration: Duration,
    /// Both sides of the conversation, in order.
    pub transcript: Vec<TranscriptEntry>,
    /// The tool calls, in the order they finished.
    pub tool_calls: Vec<ToolCallRecord>,
    /// What was measured: each turn's timings, percentiles, frames, barge-ins, the
    /// engine's usage and the cost.
    pub metrics: CallMetrics,
    /// Each time the engine session was lost or stalled and replaced, in order.
    pub reconnects: Vec<Reconnect>,
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
