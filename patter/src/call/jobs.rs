//! What a call runs beside its loop, for the audio session and the text session alike:
//! tool calls, and the hang-ups and transfers they ask for. Each runs on its own task and
//! reports back as a [`Job`], so the loop never waits on one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use super::actions::{self, ActionsOutcome};
use super::{CallEnv, CallEvent, ToolCallRecord};
use crate::carrier::CallControl;
use crate::tool::{CallContext, DispatchOutcome, ToolSet};

/// A finished tool call.
pub(super) struct ToolDone {
    pub(super) response_id: String,
    pub(super) call_id: String,
    pub(super) name: String,
    pub(super) arguments: String,
    pub(super) outcome: DispatchOutcome,
    pub(super) duration: Duration,
}

impl ToolDone {
    /// What `on_event` is told of it.
    pub(super) fn event(&self) -> CallEvent<'_> {
        CallEvent::ToolFinished {
            name: &self.name,
            output: &self.outcome.output,
            ok: self.outcome.is_ok(),
            duration: self.duration,
        }
    }

    /// Its timing, for the turn's measurements.
    pub(super) fn timing(&self) -> super::ToolTiming {
        super::ToolTiming {
            name: self.name.clone(),
            duration: self.duration,
            outcome: self.outcome.error.as_ref().map_or("ok", |e| e.kind()),
        }
    }

    /// What the call's summary keeps of it.
    pub(super) fn record(&self) -> ToolCallRecord {
        ToolCallRecord {
            name: self.name.clone(),
            arguments: self.arguments.clone(),
            output: self.outcome.output.clone(),
            ok: self.outcome.is_ok(),
        }
    }
}

/// What a finished background job reports to the call's loop.
pub(super) enum Job {
    Tool(ToolDone),
    Actions {
        response_id: String,
        call_id: String,
        /// The tool's result, handed to the model if the call goes on.
        output: String,
        outcome: ActionsOutcome,
    },
    /// The carrier was asked to record the call.
    Recording(Result<(), crate::carrier::ControlError>),
}

/// Asks the carrier to record the call, on its own task: the call does not wait for it.
pub(super) fn spawn_recording(jobs: &mut JoinSet<Job>, control: &Arc<dyn CallControl>, call: &str) {
    let control = Arc::clone(control);
    let call = call.to_owned();
    jobs.spawn(
        async move { Job::Recording(control.start_recording(&call).await) }.in_current_span(),
    );
}

/// What follows a tool's actions.
pub(super) enum Settled {
    /// One of them ended the call.
    Ended(super::EndReason),
    /// The call goes on: the model gets this output (the tool's, or why an action failed).
    Answer(String),
}

/// What follows actions that went `outcome`, for a tool whose result was `output`.
pub(super) fn settle(output: String, outcome: ActionsOutcome) -> Settled {
    match outcome {
        ActionsOutcome::Ended(reason) => Settled::Ended(reason),
        ActionsOutcome::Failed(message) => {
            Settled::Answer(crate::tool::ToolError::Failed(message).to_model_json())
        }
        ActionsOutcome::Done => Settled::Answer(output),
    }
}

/// Runs one tool call through the call's tool set (its timeout, result cap and error
/// mapping) on its own task, and tells `on_event`.
pub(super) fn spawn_tool(
    env: &CallEnv,
    jobs: &mut JoinSet<Job>,
    tools: &ToolSet,
    ctx: &CallContext,
    (response_id, call_id): (&str, &str),
    (name, arguments): (&str, &str),
    parent: Option<tracing::Span>,
) {
    super::session::event(env, ctx, &CallEvent::ToolCalled { name, arguments });
    let (tools, ctx) = (tools.clone(), ctx.clone());
    let (response_id, call_id) = (response_id.to_owned(), call_id.to_owned());
    let (name, arguments) = (name.to_owned(), arguments.to_owned());
    jobs.spawn(
        async move {
            let began = Instant::now();
            let outcome = tools
                .dispatch_with_id(&name, &arguments, &ctx, &call_id)
                .await;
            Job::Tool(ToolDone {
                response_id,
                call_id,
                name,
                arguments,
                outcome,
                duration: began.elapsed(),
            })
        }
        // Under the turn the call was made in, when there is one.
        .instrument(parent.unwrap_or_else(tracing::Span::current)),
    );
}

/// Carries out a tool's hang-up or transfer on its own task, once `speaking` is false (or
/// `wait` has passed).
pub(super) fn spawn_actions(
    jobs: &mut JoinSet<Job>,
    control: &Arc<dyn CallControl>,
    call: &str,
    done: ToolDone,
    speaking: watch::Receiver<bool>,
    wait: Duration,
) {
    let control = Arc::clone(control);
    let call = call.to_owned();
    jobs.spawn(
        async move {
            let outcome = actions::carry_out(
                control.as_ref(),
                &call,
                &done.outcome.actions,
                speaking,
                wait,
            )
            .await;
            Job::Actions {
                response_id: done.response_id,
                call_id: done.call_id,
                output: done.outcome.output,
                outcome,
            }
        }
        .in_current_span(),
    );
}
