//! A call in text: the agent's engine with text output, the call's own prompt, tools, hooks
//! and limits, and typed words in place of the caller's voice.
//!
//! It answers "what does the model do when a caller says X?" with the model real calls use:
//! the console and `patter::testing::Conversation` are built on it. Only the two ends differ
//! from a phone call: the caller's words arrive as text, the agent's leave as text. Tools run
//! through the same dispatcher (timeouts, result cap, error mapping), `Turns` decides when
//! the model goes on after them, and a hang-up or transfer ends the conversation.
//!
//! The conversation goes turn by turn: words typed while the agent is still answering wait
//! until its turn is over, as the engine takes one response at a time.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info, warn};

use super::jobs::{self, Job, Settled};
use super::keys::{KeyBatch, when_due};
use super::session::{self, Ending, Record};
use super::setup;
use super::turns::{Next, Turns};
use super::{CallEnv, CallSummary, EndReason, Role, TurnMetrics};
use crate::carrier::EndingControl;
use crate::engine::{Engine, EngineCommand, EngineError, EngineEvent, EngineSession, Modality};
use crate::tool::{CallContext, ToolSet};

/// How long after a non-fatal engine error, while a response is awaited, the request counts
/// as refused if no response has started: the error may be about another command.
const REFUSAL_GRACE: Duration = Duration::from_secs(2);

/// What happened in a text conversation, in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TextEvent {
    /// The caller's words went to the model (words typed while the agent was answering go
    /// when its turn is over).
    Caller {
        /// The words.
        text: String,
    },
    /// Something the agent wrote, whole. The first message is shown word for word, as a call
    /// would speak it (`greeting` is then true).
    Assistant {
        /// The words.
        text: String,
        /// Whether this is the agent's first message.
        greeting: bool,
    },
    /// A piece of what the agent is writing, as it streams.
    AssistantDelta {
        /// The new text.
        text: String,
    },
    /// The model called a tool.
    ToolCall {
        /// The engine's id of the call.
        call_id: String,
        /// The tool.
        name: String,
        /// The model's arguments, as JSON text.
        arguments: String,
    },
    /// A tool finished.
    ToolResult {
        /// The engine's id of the call.
        call_id: String,
        /// The tool.
        name: String,
        /// What the model was handed: the result, or an error JSON.
        output: String,
        /// Whether the tool produced a result (not an error).
        ok: bool,
        /// How long it took.
        duration: Duration,
    },
    /// The agent finished answering what the caller typed.
    TurnEnded(TurnMetrics),
    /// The engine reported an error.
    Error {
        /// The engine's code, if any.
        code: Option<String>,
        /// The message.
        message: String,
        /// Whether the conversation ends because of it.
        fatal: bool,
    },
    /// The conversation is over.
    Ended {
        /// Why.
        reason: EndReason,
    },
}

/// What the person at the keyboard does.
#[derive(Debug)]
enum Input {
    Say(String),
    Press(char),
    HangUp,
    HangUpWhenDone,
}

/// A key that is not on a phone's keypad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a phone key (0-9, *, #, A-D)")]
pub struct NotAKey(pub char);

/// A conversation with the agent in text, running on its own task; see the module
/// documentation. Start one with [`CallEnv::start_text`].
pub struct TextCall {
    input: mpsc::UnboundedSender<Input>,
    events: mpsc::UnboundedReceiver<TextEvent>,
    task: JoinHandle<CallSummary>,
}

impl fmt::Debug for TextCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextCall")
            .field("running", &!self.task.is_finished())
            .finish_non_exhaustive()
    }
}

impl TextCall {
    /// The caller says `text`. If the agent is still answering, it waits for its turn.
    pub fn say(&self, text: impl Into<String>) {
        let _ = self.input.send(Input::Say(text.into()));
    }

    /// The caller presses `keys` (`0`-`9`, `*`, `#`, `A`-`D`), as on a phone's keypad. No
    /// key is sent if one is not a phone key.
    pub fn press(&self, keys: &str) -> Result<(), NotAKey> {
        if let Some(bad) = keys.chars().find(|c| !is_phone_key(*c)) {
            return Err(NotAKey(bad));
        }
        for key in keys.chars() {
            let _ = self.input.send(Input::Press(key));
        }
        Ok(())
    }

    /// The caller hangs up.
    pub fn hang_up(&self) {
        let _ = self.input.send(Input::HangUp);
    }

    /// The caller hangs up once everything said and pressed so far has been answered (the
    /// end of a script): keys still in their batch go to the model first, and the agent
    /// finishes its answer.
    pub fn hang_up_when_done(&self) {
        let _ = self.input.send(Input::HangUpWhenDone);
    }

    /// The next event; `None` once the conversation is over and every event was read.
    pub async fn next_event(&mut self) -> Option<TextEvent> {
        self.events.recv().await
    }

    /// Waits for the conversation to end (hang up first to end it), and returns what
    /// `on_call_end` got.
    pub async fn finish(self) -> CallSummary {
        drop(self.input);
        match self.task.await {
            Ok(summary) => summary,
            // The conversation's task only ends early by a panic, which is a bug: say so.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

fn is_phone_key(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

impl CallEnv {
    /// Starts a conversation in text with this environment's agent on `engine`: the engine
    /// answers in text, with the prompt, tools, hooks and limits a call of this agent gets.
    /// Hang-ups and transfers go through (they end the conversation), whatever the call
    /// control; there is no phone line to act on.
    pub fn start_text<E: Engine>(&self, engine: E, context: CallContext) -> TextCall {
        let (input_tx, input_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let env = self.clone().control(Arc::new(EndingControl));
        let task =
            tokio::spawn(async move { run(&env, &engine, context, input_rx, events_tx).await });
        TextCall {
            input: input_tx,
            events: events_rx,
            task,
        }
    }
}

async fn run<E: Engine>(
    env: &CallEnv,
    engine: &E,
    ctx: CallContext,
    input: mpsc::UnboundedReceiver<Input>,
    events: mpsc::UnboundedSender<TextEvent>,
) -> CallSummary {
    let span = session::call_span(env, &ctx);
    async move {
        let started = Instant::now();
        info!("text conversation started");
        let plan = setup::plan(env, engine.default_model(), &ctx).await;
        let engine_setup = plan.setup.clone().modality(Modality::Text);
        crate::telemetry::meters::call_started();
        let connecting = Instant::now();
        let opened = engine.open(&engine_setup).await;
        crate::telemetry::meters::engine_connected(
            engine.name(),
            connecting.elapsed(),
            opened.is_ok(),
        );
        let engine_session = match opened {
            Ok(session) => session,
            Err(e) => {
                error!(error = %e, "engine unavailable");
                let _ = events.send(TextEvent::Error {
                    code: None,
                    message: e.to_string(),
                    fatal: true,
                });
                let summary = session::finish(
                    env,
                    &ctx,
                    Ending::new(EndReason::EngineLost {
                        detail: e.to_string(),
                    }),
                    started,
                    Record::for_model(&plan.setup.model),
                )
                .await;
                let _ = events.send(TextEvent::Ended {
                    reason: summary.reason.clone(),
                });
                return summary;
            }
        };
        TextSession {
            env,
            ctx,
            tools: plan.tools,
            first_message: plan.setup.first_message,
            engine: engine_session,
            input,
            events,
            turns: Turns::default(),
            jobs: JoinSet::new(),
            waiting: VecDeque::new(),
            keys: KeyBatch::default(),
            turn: None,
            turns_taken: 0,
            awaiting_response: false,
            hang_up_when_done: false,
            refused_by: None,
            ready: false,
            record: Record::for_model(&plan.setup.model),
            started,
        }
        .run()
        .await
    }
    .instrument(span)
    .await
}

/// Resolves at `deadline`; never without one.
async fn refusal(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The turn in progress.
struct Turn {
    started: Instant,
    first_text: Option<Duration>,
    tool_calls: u32,
    tools: Vec<super::ToolTiming>,
}

struct TextSession<'env, S: EngineSession> {
    env: &'env CallEnv,
    ctx: CallContext,
    tools: ToolSet,
    first_message: Option<String>,
    engine: S,
    input: mpsc::UnboundedReceiver<Input>,
    events: mpsc::UnboundedSender<TextEvent>,
    turns: Turns,
    jobs: JoinSet<Job>,
    /// Words typed while the agent was answering, sent once its turn is over.
    waiting: VecDeque<String>,
    /// Keys for the model, batched.
    keys: KeyBatch,
    turn: Option<Turn>,
    turns_taken: u32,
    /// A response was asked for and has not started yet.
    awaiting_response: bool,
    /// The caller hangs up once nothing is left to answer.
    hang_up_when_done: bool,
    /// An engine error came while a response was awaited: unless one starts by then, the
    /// request was refused.
    refused_by: Option<Instant>,
    /// The engine took its configuration (and the greeting is in): typed words may go.
    ready: bool,
    record: Record,
    started: Instant,
}

impl<S: EngineSession> TextSession<'_, S> {
    async fn run(mut self) -> CallSummary {
        let max_duration = tokio::time::sleep(self.env.limits.max_call_duration);
        tokio::pin!(max_duration);
        let ending = loop {
            let step = tokio::select! {
                input = self.input.recv() => self.on_input(input).await,
                frame = self.engine.recv() => self.on_engine(frame).await,
                Some(job) = self.jobs.join_next() => match job {
                    Ok(job) => self.on_job(job).await,
                    Err(e) => {
                        error!(error = %e, "background job failed");
                        None
                    }
                },
                () = &mut max_duration => Some(Ending::new(EndReason::MaxDuration)),
                () = when_due(self.keys.due()) => {
                    // Pressed as a tool started collecting: the tool's; else the keys reach
                    // the model as the caller's words, in their turn.
                    self.flush_keys();
                    None
                }
                () = refusal(self.refused_by) => {
                    self.refused_by = None;
                    self.awaiting_response = false;
                    None
                }
            };
            if let Some(ending) = step {
                break ending;
            }
            if let Some(ending) = self.after_step().await {
                break ending;
            }
        };
        self.jobs.abort_all();
        for event in self.engine.finish() {
            if let EngineEvent::AgentTranscript { text } = event {
                self.record(Role::Agent, text.into_owned());
            }
        }
        session::close_within(self.engine.close()).await;
        let record = std::mem::take(&mut self.record);
        let summary = session::finish(self.env, &self.ctx, ending, self.started, record).await;
        let _ = self.events.send(TextEvent::Ended {
            reason: summary.reason.clone(),
        });
        summary
    }

    fn emit(&self, event: TextEvent) {
        // Nobody reading is fine: the conversation still runs to its end for on_call_end.
        let _ = self.events.send(event);
    }

    async fn on_input(&mut self, input: Option<Input>) -> Option<Ending> {
        match input {
            Some(Input::Say(text)) => {
                // Keys pressed before these words come first, as they did on the line.
                self.flush_keys();
                self.waiting.push_back(text);
                None
            }
            Some(Input::Press(key)) => {
                self.keys.hand_to_collector(self.ctx.keypad());
                if session::keypad(self.env, &self.ctx, key) {
                    let due = Instant::now() + self.env.limits.dtmf_gap;
                    self.keys.press(key, due);
                }
                None
            }
            Some(Input::HangUpWhenDone) => {
                self.hang_up_when_done = true;
                // Nothing else will come to close the batch early: it goes when due.
                None
            }
            Some(Input::HangUp) | None => Some(Ending::new(EndReason::StreamStopped)),
        }
    }

    /// The keys in their batch go now: to a tool collecting them, or to the model as the
    /// caller's words.
    fn flush_keys(&mut self) {
        if self.keys.due().is_some() && !self.keys.hand_to_collector(self.ctx.keypad()) {
            self.waiting.extend(self.keys.take());
        }
    }

    fn is_busy(&self) -> bool {
        self.turns.is_responding() || !self.jobs.is_empty() || self.awaiting_response
    }

    /// Closes a turn the agent is done with, then sends the next words waiting.
    async fn after_step(&mut self) -> Option<Ending> {
        if !self.ready || self.is_busy() {
            return None;
        }
        if let Some(turn) = self.turn.take() {
            self.turns_taken += 1;
            let metrics = TurnMetrics {
                index: self.turns_taken,
                by_caller: true,
                response_time: None,
                played_after: None,
                first_audio: None,
                first_text: turn.first_text,
                duration: turn.started.elapsed(),
                tool_calls: turn.tool_calls,
                tools: turn.tools,
                interrupted: false,
                heard: None,
            };
            crate::telemetry::meters::turn_ended(&metrics);
            if let Some(hook) = &self.env.hooks.on_turn {
                session::guarded("on_turn", || hook(&self.ctx, &metrics));
            }
            self.record.metrics.turns.push(metrics.clone());
            self.emit(TextEvent::TurnEnded(metrics));
        }
        let Some(text) = self.waiting.pop_front() else {
            // A finished script: once its last keys have gone and been answered, hang up.
            let done = self.hang_up_when_done && self.keys.due().is_none();
            return done.then(|| Ending::new(EndReason::StreamStopped));
        };
        self.emit(TextEvent::Caller { text: text.clone() });
        self.record(Role::Caller, text.clone());
        self.turn = Some(Turn {
            started: Instant::now(),
            first_text: None,
            tool_calls: 0,
            tools: Vec::new(),
        });
        self.awaiting_response = true;
        self.send_engine(EngineCommand::CallerText { text: &text })
            .await
    }

    async fn on_engine(&mut self, frame: Result<S::Frame, EngineError>) -> Option<Ending> {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => return Some(self.lost(&e)),
        };
        let event = match self.engine.parse(&frame) {
            Ok(event) => event,
            Err(e @ EngineError::Malformed(_)) => {
                self.record.malformed_frames += 1;
                warn!(error = %e, "malformed engine event ignored");
                return None;
            }
            Err(e) => return Some(self.lost(&e)),
        };
        match event {
            EngineEvent::Ready | EngineEvent::Configured { .. } if self.ready => None,
            EngineEvent::Ready | EngineEvent::Configured { .. } => {
                match self.first_message.take() {
                    Some(text) => {
                        // Shown as it is, and put in the model's context as the agent's words,
                        // so the conversation starts where a call's would.
                        self.emit(TextEvent::Assistant {
                            text: text.clone(),
                            greeting: true,
                        });
                        self.record(Role::Agent, text.clone());
                        self.ready = true;
                        self.send_engine(EngineCommand::AgentSaid { text: &text })
                            .await
                    }
                    None => {
                        self.ready = true;
                        None
                    }
                }
            }
            EngineEvent::ResponseStarted { response_id } => {
                self.awaiting_response = false;
                self.refused_by = None;
                self.turns.response_started(&response_id);
                None
            }
            EngineEvent::TextDelta { delta, .. } => {
                if let Some(turn) = &mut self.turn
                    && turn.first_text.is_none()
                {
                    turn.first_text = Some(turn.started.elapsed());
                }
                self.emit(TextEvent::AssistantDelta {
                    text: delta.into_owned(),
                });
                None
            }
            EngineEvent::AgentTranscript { text } => {
                let text = text.into_owned();
                if !text.trim().is_empty() {
                    self.emit(TextEvent::Assistant {
                        text: text.clone(),
                        greeting: false,
                    });
                }
                self.record(Role::Agent, text);
                None
            }
            EngineEvent::FunctionCall {
                response_id,
                call_id,
                name,
                arguments,
            } => {
                self.start_tool(&response_id, &call_id, &name, &arguments);
                None
            }
            EngineEvent::UsageSoFar(usage) => {
                self.record.metrics.usage.add(&usage);
                None
            }
            EngineEvent::ResponseDone {
                response_id, usage, ..
            } => {
                if let Some(usage) = usage {
                    self.record.metrics.usage.add(&usage);
                }
                let next = self.turns.response_done(&response_id);
                self.go_on(next).await
            }
            EngineEvent::Error {
                code,
                message,
                fatal,
            } => {
                self.emit(TextEvent::Error {
                    code: code.as_deref().map(str::to_owned),
                    message: message.clone().into_owned(),
                    fatal,
                });
                if fatal {
                    error!(code = code.as_deref().unwrap_or_default(), %message, "engine error; ending");
                    return Some(Ending::new(EndReason::EngineError {
                        message: message.into_owned(),
                    }));
                }
                // A refused request starts no response, but the error may be about another
                // command: the turn waits a moment for a response before it gives up on one.
                warn!(code = code.as_deref().unwrap_or_default(), %message, "engine error");
                if self.awaiting_response && self.refused_by.is_none() {
                    self.refused_by = Some(Instant::now() + REFUSAL_GRACE);
                }
                None
            }
            EngineEvent::UserTranscript { .. }
            | EngineEvent::Audio { .. }
            | EngineEvent::SpeechStarted
            | EngineEvent::SpeechStopped
            | EngineEvent::Ignored => None,
        }
    }

    fn lost(&self, e: &EngineError) -> Ending {
        error!(error = %e, "engine gone; ending");
        self.emit(TextEvent::Error {
            code: None,
            message: e.to_string(),
            fatal: true,
        });
        Ending::new(EndReason::EngineLost {
            detail: e.to_string(),
        })
    }

    fn start_tool(&mut self, response_id: &str, call_id: &str, name: &str, arguments: &str) {
        if !self.turns.tool_called(response_id, call_id) {
            debug!(call_id, "repeated function call ignored");
            return;
        }
        if let Some(turn) = &mut self.turn {
            turn.tool_calls += 1;
        }
        self.emit(TextEvent::ToolCall {
            call_id: call_id.to_owned(),
            name: name.to_owned(),
            arguments: arguments.to_owned(),
        });
        jobs::spawn_tool(
            self.env,
            &mut self.jobs,
            &self.tools,
            &self.ctx,
            (response_id, call_id),
            (name, arguments),
            None,
        );
    }

    async fn on_job(&mut self, job: Job) -> Option<Ending> {
        match job {
            Job::Tool(done) => {
                session::event(self.env, &self.ctx, &done.event());
                self.emit(TextEvent::ToolResult {
                    call_id: done.call_id.clone(),
                    name: done.name.clone(),
                    output: done.outcome.output.clone(),
                    ok: done.outcome.is_ok(),
                    duration: done.duration,
                });
                self.record.tool_calls.push(done.record());
                let timing = done.timing();
                crate::telemetry::meters::tool_finished(&timing);
                if let Some(turn) = &mut self.turn {
                    turn.tools.push(timing);
                }
                if done.outcome.actions.is_empty() {
                    return self
                        .answer_tool(&done.response_id, &done.call_id, &done.outcome.output)
                        .await;
                }
                // There is no speech to wait for: a hang-up or transfer happens at once.
                let (_speaking, silent) = watch::channel(false);
                jobs::spawn_actions(
                    &mut self.jobs,
                    &self.env.control,
                    self.ctx.call_id(),
                    done,
                    silent,
                    Duration::ZERO,
                );
                None
            }
            Job::Actions {
                response_id,
                call_id,
                output,
                outcome,
            } => match jobs::settle(output, outcome) {
                Settled::Ended(reason) => {
                    self.turns.settled(&response_id);
                    Some(Ending::new(reason))
                }
                Settled::Answer(output) => self.answer_tool(&response_id, &call_id, &output).await,
            },
            // A text conversation has no line to record.
            Job::Recording(_) => None,
        }
    }

    async fn answer_tool(
        &mut self,
        response_id: &str,
        call_id: &str,
        output: &str,
    ) -> Option<Ending> {
        if let Some(end) = self
            .send_engine(EngineCommand::ToolResult { call_id, output })
            .await
        {
            return Some(end);
        }
        let next = self.turns.tool_answered(response_id);
        self.go_on(next).await
    }

    async fn go_on(&mut self, next: Next) -> Option<Ending> {
        match next {
            Next::Continue => {
                self.awaiting_response = true;
                self.send_engine(EngineCommand::ContinueAfterTools).await
            }
            Next::Wait | Next::Nothing => None,
        }
    }

    async fn send_engine(&mut self, command: EngineCommand<'_>) -> Option<Ending> {
        match self.engine.send(command).await {
            Ok(()) => None,
            Err(e) => Some(self.lost(&e)),
        }
    }

    fn record(&mut self, role: Role, text: String) {
        self.record
            .add(self.env, &self.ctx, self.started, role, text);
    }
}
