//! The lifecycle hooks, and what `on_call_start` may change for one call.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{CallSummary, TranscriptEntry};
use crate::tool::{CallContext, ToolSet};
use std::time::Duration;

/// What `on_call_start` may change for one call.
#[derive(Debug, Clone, Default)]
pub struct CallSetup {
    pub(crate) system_prompt: Option<String>,
    pub(crate) first_message: Option<Option<String>>,
    pub(crate) variables: BTreeMap<String, String>,
    pub(crate) tools: Option<ToolSet>,
    pub(crate) record: Option<bool>,
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

    /// Records this call (or not), whatever the agent says.
    pub fn record(mut self, record: bool) -> Self {
        self.record = Some(record);
        self
    }

    /// Replaces the agent's tools for this call.
    pub fn tools(mut self, tools: ToolSet) -> Self {
        self.tools = Some(tools);
        self
    }

    /// These settings, with `base`'s wherever these leave one unset.
    pub(crate) fn over(mut self, base: &CallSetup) -> CallSetup {
        if self.system_prompt.is_none() {
            self.system_prompt.clone_from(&base.system_prompt);
        }
        if self.first_message.is_none() {
            self.first_message.clone_from(&base.first_message);
        }
        for (name, value) in &base.variables {
            self.variables
                .entry(name.clone())
                .or_insert_with(|| value.clone());
        }
        if self.tools.is_none() {
            self.tools.clone_from(&base.tools);
        }
        if self.record.is_none() {
            self.record = base.record;
        }
        self
    }
}

/// Something a live view of a call shows, as it happens ([`Hooks::on_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallEvent<'a> {
    /// A finished turn of the conversation.
    Transcript(&'a TranscriptEntry),
    /// The model called a tool.
    ToolCalled {
        /// The tool.
        name: &'a str,
        /// The model's arguments, as JSON text.
        arguments: &'a str,
    },
    /// A tool finished.
    ToolFinished {
        /// The tool.
        name: &'a str,
        /// What the model is handed: the result, or an error JSON.
        output: &'a str,
        /// Whether it produced a result (not an error).
        ok: bool,
        /// How long it took.
        duration: Duration,
    },
    /// The agent's first audio of an answer went to the caller: `after_speech` after the
    /// engine heard the caller stop speaking (the response time the caller heard).
    AgentAnswered {
        /// From the caller's end of speech to the agent's first audio.
        after_speech: Duration,
    },
}

/// A finished call recording, as the carrier reports it ([`Hooks::on_recording`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recording {
    /// The call it records.
    pub call_id: String,
    /// The carrier's id of the recording (`RE…`).
    pub recording_id: String,
    /// Where the media is (Twilio: append `.wav` or `.mp3`; fetching needs the account's
    /// credentials).
    pub url: String,
    /// `completed`, or `absent` (nothing was recorded).
    pub status: String,
    /// How long it is.
    pub duration: Option<Duration>,
    /// Channels in the file: 2 for caller and agent apart.
    pub channels: Option<u8>,
}

type StartHook = dyn Fn(CallContext) -> BoxFuture<'static, CallSetup> + Send + Sync;
type TranscriptHook = dyn Fn(&CallContext, &TranscriptEntry) + Send + Sync;
type DtmfHook = dyn Fn(&CallContext, char) + Send + Sync;
type EventHook = dyn Fn(&CallContext, &CallEvent<'_>) + Send + Sync;
type RecordingHook = dyn Fn(Recording) -> BoxFuture<'static, ()> + Send + Sync;
type EndHook = dyn Fn(CallSummary) -> BoxFuture<'static, ()> + Send + Sync;
type TurnHook = dyn Fn(&CallContext, &super::TurnMetrics) + Send + Sync;

/// The lifecycle hooks of every call: [`Patter`](crate::Patter) sets them for a server,
/// and [`CallEnv::hooks`](super::CallEnv::hooks) for calls run by hand or in tests.
///
/// ```
/// use patter::{CallSetup, Hooks};
///
/// let hooks = Hooks::new()
///     .on_call_start(|call| async move {
///         CallSetup::new().variable("caller_tier", if call.caller().starts_with("+1") { "us" } else { "intl" })
///     })
///     .on_call_end(|summary| async move { println!("{:?}", summary.reason) });
/// # let _ = hooks;
/// ```
#[derive(Clone, Default)]
pub struct Hooks {
    pub(crate) on_call_start: Option<Arc<StartHook>>,
    pub(crate) on_transcript: Option<Arc<TranscriptHook>>,
    pub(crate) on_dtmf: Option<Arc<DtmfHook>>,
    pub(crate) on_event: Option<Arc<EventHook>>,
    pub(crate) on_turn: Option<Arc<TurnHook>>,
    pub(crate) on_recording: Option<Arc<RecordingHook>>,
    pub(crate) on_call_end: Option<Arc<EndHook>>,
}

impl Hooks {
    /// No hooks.
    pub fn new() -> Self {
        Hooks::default()
    }

    /// Runs when a call starts, before the engine is configured; what it returns may change
    /// the prompt, the first message, prompt variables and tools for this call. It gets
    /// 10 s; after that the call goes on with the agent's own settings.
    pub fn on_call_start<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(CallContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CallSetup> + Send + 'static,
    {
        self.on_call_start = Some(Arc::new(move |ctx| Box::pin(hook(ctx))));
        self
    }

    /// Runs for every finished turn, the caller's and the agent's. It runs on the call's own
    /// task: keep it quick (send to a channel for slow work).
    pub fn on_transcript<F>(mut self, hook: F) -> Self
    where
        F: Fn(&CallContext, &TranscriptEntry) + Send + Sync + 'static,
    {
        self.on_transcript = Some(Arc::new(hook));
        self
    }

    /// Runs for every key the caller presses (`0`-`9`, `*`, `#`, `A`-`D`). Digits may be a
    /// PIN: patter does not log them. It runs on the call's own task: keep it quick.
    pub fn on_dtmf<F>(mut self, hook: F) -> Self
    where
        F: Fn(&CallContext, char) + Send + Sync + 'static,
    {
        self.on_dtmf = Some(Arc::new(hook));
        self
    }

    /// Runs for everything a live view of the call shows, as it happens: each finished turn
    /// of the transcript, each tool call and its result, and how long the caller waited for
    /// each answer. It runs on the call's own task: keep it quick (send to a channel).
    pub fn on_event<F>(mut self, hook: F) -> Self
    where
        F: Fn(&CallContext, &CallEvent<'_>) + Send + Sync + 'static,
    {
        self.on_event = Some(Arc::new(hook));
        self
    }

    /// Runs as each turn ends, with its timings: the time the caller waited, the engine's
    /// times to first audio and text, each tool call, and whether the answer was cut off
    /// ([`TurnMetrics`](super::TurnMetrics)). It runs on the call's own task: keep it quick.
    pub fn on_turn<F>(mut self, hook: F) -> Self
    where
        F: Fn(&CallContext, &super::TurnMetrics) + Send + Sync + 'static,
    {
        self.on_turn = Some(Arc::new(hook));
        self
    }

    /// Adds `hook` after the `on_event` hook already set, if any.
    pub(crate) fn also_on_event<F>(mut self, hook: F) -> Self
    where
        F: Fn(&CallContext, &CallEvent<'_>) + Send + Sync + 'static,
    {
        self.on_event = Some(match self.on_event.take() {
            Some(first) => Arc::new(move |ctx: &CallContext, event: &CallEvent<'_>| {
                first(ctx, event);
                hook(ctx, event);
            }),
            None => Arc::new(hook),
        });
        self
    }

    /// Runs for each finished recording of a recorded call (Twilio's recording status
    /// callback, signature checked), with its id, media URL and duration. It gets 10 s.
    pub fn on_recording<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Recording) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_recording = Some(Arc::new(move |recording| Box::pin(hook(recording))));
        self
    }

    /// Runs once when a call ends, however it ends, with the reason, duration, transcript
    /// and tool calls. It gets 10 s.
    pub fn on_call_end<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(CallSummary) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_call_end = Some(Arc::new(move |summary| Box::pin(hook(summary))));
        self
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_call_start", &self.on_call_start.is_some())
            .field("on_transcript", &self.on_transcript.is_some())
            .field("on_dtmf", &self.on_dtmf.is_some())
            .field("on_event", &self.on_event.is_some())
            .field("on_turn", &self.on_turn.is_some())
            .field("on_recording", &self.on_recording.is_some())
            .field("on_call_end", &self.on_call_end.is_some())
            .finish()
    }
}
