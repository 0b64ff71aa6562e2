//! The per-call session: one task that bridges one carrier leg and one engine session.
//!
//! Everything about a live call happens in [`Session::run`]'s loop, which only routes: each
//! event goes to the state machine that owns it (`Playback`, `Turns`, `Closing`), and what
//! they decide goes out to the engine or the carrier. The loop never waits on a tool: tools
//! and call actions run on their own tasks and report back, so audio and barge-in keep
//! flowing while they work. Each leg stays whole (not split behind a lock): the session's
//! one task both reads and writes it.

use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info, warn};

use super::closing::Closing;
use super::jobs::{self, Job, Settled, ToolDone};
use super::keys::{KeyBatch, when_due};
use super::measure::{CallMetrics, TurnClock, TurnMetrics};
use super::playback::Playback;
use super::recovery::{self, History, Owed, Reconnect, ReconnectCause, StallWatch};
use super::relay::{AgentAudio, AudioRelay};
use super::setup::{self, HOOK_TIMEOUT};
use super::turns::{Next, Turns};
use super::{CallEnv, CallEvent, CallSummary, EndReason, Role, ToolCallRecord, TranscriptEntry};
use crate::carrier::{CarrierCommand, CarrierError, CarrierEvent, CarrierLeg};
use crate::engine::{Engine, EngineCommand, EngineError, EngineEvent, EngineSession, EngineSetup};
use crate::telemetry::meters;
use crate::tool::{CallContext, ToolSet};

/// How long an answer is expected after it was asked for, or after the caller stopped
/// speaking: messages for the model wait meanwhile (a second response would be refused);
/// past it the engine is taken not to be answering.
const ANSWER_DUE_WITHIN: Duration = Duration::from_secs(2);

/// Caller stops kept for transcripts still to come (a call without transcription has none).
const MAX_STOPS_KEPT: usize = 8;

/// The wait before a second attempt to replace a lost engine session; it doubles after each.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// How long closing a leg or the engine session may take before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one call; see [`CallEnv::run`].
pub(crate) async fn run<E: Engine, C: CarrierLeg>(
    env: &CallEnv,
    engine: &E,
    leg: C,
    ctx: CallContext,
) -> CallSummary {
    let span = call_span(env, &ctx);
    async move {
        let started = Instant::now();
        // No phone number here: logs become span events when traces are exported.
        info!("call started");
        let plan = setup::plan(env, engine.default_model(), &ctx).await;
        tracing::Span::current().record("gen_ai.request.model", plan.setup.model.as_str());
        meters::call_started();
        let engine_span = tracing::info_span!(
            "engine.session",
            gen_ai.system = gen_ai_system(engine.name()),
            gen_ai.request.model = %plan.setup.model,
            engine.name = engine.name(),
            engine.connect_ms = tracing::field::Empty,
        );
        let connecting = Instant::now();
        let opened = engine
            .open(&plan.setup)
            .instrument(engine_span.clone())
            .await;
        let took = connecting.elapsed();
        engine_span.record("engine.connect_ms", took.as_millis() as u64);
        meters::engine_connected(engine.name(), took, opened.is_ok());
        let session = match opened {
            Ok(session) => session,
            Err(e) => {
                if e.is_configuration() {
                    error!(error = %e, "the engine refused patter's credentials: check OPENAI_API_KEY; no call can be answered until it is fixed");
                } else {
                    error!(error = %e, "engine unavailable; apologising and ending the call");
                }
                let reason = EndReason::EngineLost {
                    detail: e.to_string(),
                };
                // The carrier speaks first: closing the leg first would end the call.
                let ending = if apologise(env, &ctx).await {
                    Ending::new(reason)
                } else {
                    Ending::hanging_up(reason)
                };
                close_within(leg.close()).await;
                let record = Record::for_model(&plan.setup.model);
                return finish(env, &ctx, ending, started, record).await;
            }
        };
        let mut jobs = JoinSet::new();
        if plan.record {
            jobs::spawn_recording(&mut jobs, &env.control, ctx.call_id());
        }
        Session {
            env,
            engine_kind: engine,
            // The greeting is the session's to send, once; the tools' definitions are
            // made again from the tools if they are needed.
            setup: plan
                .setup
                .clone()
                .first_message(None)
                .tools(Vec::new()),
            history: History::default(),
            stall: StallWatch::new(&env.limits, Instant::now()),
            reconnects_left: env.limits.reconnect_attempts,
            resume: false,
            hearing: false,
            awaiting_ready: true,
            greeting_pending: None,
            stops: std::collections::VecDeque::new(),
            relay: AudioRelay::new(plan.setup.audio),
            first_message: plan.setup.first_message,
            tools: plan.tools,
            ctx,
            carrier: leg,
            engine: session,
            playback: Playback::default(),
            turns: Turns::default(),
            closing: None,
            jobs,
            speaking: watch::Sender::new(false),
            engine_name: engine.name(),
            _engine_span: engine_span,
            record: Record::for_model(&plan.setup.model),
            clock: TurnClock::default(),
            started,
            mark_name: String::new(),
            speech_stopped: None,
            keys: KeyBatch::default(),
            response_requested: None,
        }
        .run()
        .await
    }
    .instrument(span)
    .await
}

/// What the call keeps for its summary.
#[derive(Default)]
pub(super) struct Record {
    pub(super) transcript: Vec<TranscriptEntry>,
    pub(super) tool_calls: Vec<ToolCallRecord>,
    pub(super) malformed_frames: u64,
    pub(super) metrics: CallMetrics,
    pub(super) reconnects: Vec<Reconnect>,
}

impl Record {
    pub(super) fn for_model(model: &str) -> Self {
        let mut record = Record::default();
        record.metrics.model = model.to_owned();
        record
    }

    /// A turn ended: `on_turn` sees it, and the summary keeps it.
    pub(super) fn turn(&mut self, env: &CallEnv, ctx: &CallContext, turn: TurnMetrics) {
        meters::turn_ended(&turn);
        if let Some(hook) = &env.hooks.on_turn {
            guarded("on_turn", || hook(ctx, &turn));
        }
        self.metrics.turns.push(turn);
    }

    /// Adds a finished turn of the conversation (an empty one is left out) and runs
    /// `on_transcript`.
    pub(super) fn add(
        &mut self,
        env: &CallEnv,
        ctx: &CallContext,
        started: Instant,
        role: Role,
        text: String,
    ) {
        if text.trim().is_empty() {
            return;
        }
        let entry = TranscriptEntry {
            role,
            text,
            at: started.elapsed(),
        };
        if env.trace.transcripts {
            // Opted in: the words go to the trace (never by default).
            info!(target: "patter::transcript", role = ?entry.role, text = %entry.text, "said");
        }
        if let Some(hook) = &env.hooks.on_transcript {
            guarded("on_transcript", || hook(ctx, &entry));
        }
        event(env, ctx, &CallEvent::Transcript(&entry));
        self.transcript.push(entry);
    }
}

/// The call's span: ids, direction and (once known) model and outcome; the caller only as
/// a keyed hash, and only when a key is set.
pub(super) fn call_span(env: &CallEnv, ctx: &CallContext) -> tracing::Span {
    let direction = match ctx.direction() {
        crate::tool::Direction::Inbound => "inbound",
        crate::tool::Direction::Outbound => "outbound",
    };
    let span = tracing::info_span!(
        "call",
        call.id = %ctx.call_id(),
        call.direction = direction,
        call.caller_hash = tracing::field::Empty,
        gen_ai.request.model = tracing::field::Empty,
        call.end_reason = tracing::field::Empty,
        call.duration_ms = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
    );
    if let Some(hash) = env.trace.caller_hash(ctx.caller()) {
        span.record("call.caller_hash", hash.as_str());
    }
    span
}

/// The GenAI conventions' `gen_ai.system` of an engine.
fn gen_ai_system(engine: &str) -> &'static str {
    if engine.starts_with("openai") {
        "openai"
    } else {
        "_OTHER"
    }
}

/// How the loop ended, and whether the call must still be hung up through call control.
pub(super) struct Ending {
    /// The engine session was lost: another may continue the call.
    pub(super) recoverable: Option<ReconnectCause>,
    pub(super) reason: EndReason,
    hang_up: bool,
}

impl Ending {
    pub(super) fn new(reason: EndReason) -> Self {
        Ending {
            reason,
            hang_up: false,
            recoverable: None,
        }
    }

    /// The carrier does not know the call is over: hang it up, so that the caller is never
    /// left in silence on an open line.
    pub(super) fn hanging_up(reason: EndReason) -> Self {
        Ending {
            reason,
            hang_up: true,
            recoverable: None,
        }
    }
}

/// The engine session is gone (a text conversation ends with it; a call opens another).
pub(super) fn engine_lost(error: &EngineError) -> Ending {
    let mut ending = Ending::hanging_up(EndReason::EngineLost {
        detail: error.to_string(),
    });
    ending.recoverable = Some(ReconnectCause::Lost);
    ending
}

/// One live call.
struct Session<'env, E: Engine, C: CarrierLeg> {
    env: &'env CallEnv,
    /// Opens a replacement when the session is lost or stalls.
    engine_kind: &'env E,
    /// The setup the session was opened with, less the greeting and the tools' definitions;
    /// a replacement gets it with those and the conversation so far.
    setup: EngineSetup,
    /// The tool calls, for a replacement's replay.
    history: History,
    stall: StallWatch,
    /// Replacement sessions the call may still open.
    reconnects_left: u32,
    /// A replacement owes the answer the lost session did not give: it is asked for once
    /// the replacement is configured.
    resume: bool,
    /// The engine heard the caller start speaking and not yet stop.
    hearing: bool,
    /// The engine has not confirmed its configuration yet.
    awaiting_ready: bool,
    /// The greeting was asked for and its response has not started: a replacement session
    /// is asked again.
    greeting_pending: Option<String>,
    /// When the engine heard the caller stop, for each transcript still to come.
    stops: std::collections::VecDeque<Duration>,
    ctx: CallContext,
    tools: ToolSet,
    first_message: Option<String>,
    carrier: C,
    engine: E::Session,
    relay: AudioRelay,
    playback: Playback,
    turns: Turns,
    /// Set when patter itself ends the call (time limit, shutdown).
    closing: Option<Closing>,
    jobs: JoinSet<Job>,
    /// Whether the agent is still speaking (a response in progress or audio not yet played),
    /// for call actions, which wait for the last words to play.
    speaking: watch::Sender<bool>,
    record: Record,
    /// The engine's name, for metrics.
    engine_name: &'static str,
    /// Open for as long as the engine session is.
    _engine_span: tracing::Span,
    /// Each turn's timings.
    clock: TurnClock,
    started: Instant,
    /// Reused buffer for the name of the next mark.
    mark_name: String,
    /// When the engine heard the caller stop speaking, and the responses started since:
    /// the first audio of one of them is the answer the caller waited for (a response that
    /// calls tools has none; the one after the tools does).
    speech_stopped: Option<(Instant, Vec<String>)>,
    /// Keys for the model, batched.
    keys: KeyBatch,
    /// When a response was asked of the engine, until it starts.
    response_requested: Option<Instant>,
}

impl<E: Engine, C: CarrierLeg> Session<'_, E, C> {
    async fn run(mut self) -> CallSummary {
        let limits = &self.env.limits;
        let max_duration = tokio::time::sleep(limits.max_call_duration);
        tokio::pin!(max_duration);
        // One waiter for the whole call: a `wait_for` made afresh on every turn of the loop
        // would take the server-wide channel's lock twice per audio frame.
        let shutdown = shutdown_signal(self.env.shutdown.clone());
        tokio::pin!(shutdown);
        let mut shutdown_seen = false;
        // Armed when closing starts: the goodbye gets this long, then the line is cut.
        let closing_deadline = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(closing_deadline);
        let mut stall_checks = tokio::time::interval(recovery::STALL_CHECK_EVERY);
        stall_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ending = loop {
            let step = tokio::select! {
                frame = self.carrier.recv() => self.on_carrier(frame).await,
                frame = self.engine.recv() => self.on_engine(frame).await,
                Some(job) = self.jobs.join_next() => match job {
                    Ok(job) => self.on_job(job).await,
                    Err(e) => {
                        // A job is a tool dispatch (which catches panics) or call control:
                        // this is a bug, not a reason to drop the call.
                        error!(error = %e, "background job failed");
                        None
                    }
                },
                () = &mut max_duration, if self.closing.is_none() => {
                    info!("maximum call duration reached; saying goodbye");
                    closing_deadline.as_mut().reset(tokio::time::Instant::now() + limits.goodbye_wait);
                    self.begin_closing(EndReason::MaxDuration).await
                }
                () = &mut shutdown, if self.closing.is_none() && !shutdown_seen => {
                    shutdown_seen = true;
                    info!("server shutting down; saying goodbye");
                    closing_deadline.as_mut().reset(tokio::time::Instant::now() + limits.goodbye_wait);
                    self.begin_closing(EndReason::Shutdown).await
                }
                () = when_due(self.keys.due()) => self.send_keys().await,
                () = &mut closing_deadline, if self.closing.is_some() => {
                    warn!("goodbye not finished in time; hanging up");
                    self.closing.take().map(|c| Ending::hanging_up(c.into_reason()))
                }
                _ = stall_checks.tick() => self.check_stall(),
            };
            if let Some(ending) = step {
                // A lost or stalled engine is replaced, unless the call is already ending.
                match ending.recoverable {
                    Some(cause) if self.closing.is_none() => {
                        // Boxed: opening a session takes a large future, and every call
                        // would otherwise carry room for it.
                        match Box::pin(self.reconnect(cause, ending)).await {
                            Ok(()) => continue,
                            Err(ending) => break ending,
                        }
                    }
                    _ => break ending,
                }
            }
            if let Some(closing) = &self.closing
                && closing.is_done(self.turns.is_responding(), self.playback.pending_marks())
            {
                break Ending::hanging_up(closing.reason().clone());
            }
        };
        // Ending exactly once: tools stop, both legs close (each bounded, so a peer that
        // stopped reading cannot hold the call open), the engine is gone before the hang-up
        // and `on_call_end` run.
        self.jobs.abort_all();
        self.record_leftovers();
        if let Some(turn) = self.clock.close(Instant::now()) {
            self.record.turn(self.env, &self.ctx, turn);
        }
        close_within(self.engine.close()).await;
        // A failed engine: the carrier tells the caller, before the leg closes (closing it
        // first would end the call in silence).
        let ending = if ending.hang_up
            && ending.reason.is_engine_failure()
            && apologise(self.env, &self.ctx).await
        {
            Ending::new(ending.reason)
        } else {
            ending
        };
        close_within(self.carrier.close()).await;
        if self.record.malformed_frames > 0 {
            warn!(
                count = self.record.malformed_frames,
                "malformed frames were ignored"
            );
        }
        finish(self.env, &self.ctx, ending, self.started, self.record).await
    }

    async fn on_carrier(
        &mut self,
        frame: Result<Option<C::Frame>, CarrierError>,
    ) -> Option<Ending> {
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return Some(Ending::new(EndReason::StreamClosed)),
            Err(e) => {
                warn!(error = %e, "the caller's connection failed");
                return Some(Ending::new(EndReason::StreamClosed));
            }
        };
        let event = match self.carrier.parse(&frame) {
            Ok(event) => event,
            Err(e) => {
                self.record.malformed_frames += 1;
                debug!(error = %e, "malformed frame from the caller's side ignored");
                return None;
            }
        };
        match event {
            CarrierEvent::Media {
                audio,
                timestamp_ms,
            } => {
                if let Some(ts) = timestamp_ms {
                    self.playback.on_inbound(ts);
                }
                self.record.metrics.frames_in += 1;
                if self.stall.listening() {
                    self.stall.caller_frame(recovery::is_voiced(&audio));
                }
                self.forward_caller_audio(&audio).await
            }
            CarrierEvent::Mark { name } => {
                if let Some(mark) = self.playback.on_mark(&name) {
                    self.clock.mark_echoed(mark, Instant::now());
                    self.check_idle();
                }
                self.publish_speaking();
                None
            }
            CarrierEvent::Dtmf { digit } => {
                // Keys already waiting go to a collecting tool before this one, in order.
                self.keys.hand_to_collector(self.ctx.keypad());
                if keypad(self.env, &self.ctx, digit) {
                    let due = Instant::now() + self.env.limits.dtmf_gap;
                    self.keys.press(digit, due);
                }
                None
            }
            CarrierEvent::Stop => Some(Ending::new(EndReason::StreamStopped)),
            CarrierEvent::Ignored => None,
        }
    }

    async fn forward_caller_audio(&mut self, payload: &str) -> Option<Ending> {
        let Some(audio) = self.relay.caller_audio(payload) else {
            self.record.malformed_frames += 1;
            return None;
        };
        match self.engine.send(EngineCommand::AppendAudio(audio)).await {
            Ok(()) => None,
            Err(e) => {
                error!(error = %e, "engine connection failed");
                Some(engine_lost(&e))
            }
        }
    }

    async fn on_engine(
        &mut self,
        frame: Result<<E::Session as EngineSession>::Frame, EngineError>,
    ) -> Option<Ending> {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                warn!(error = %e, "engine connection lost");
                return Some(engine_lost(&e));
            }
        };
        self.stall.engine_frame();
        let event = match self.engine.parse(&frame) {
            Ok(event) => event,
            Err(e @ EngineError::Malformed(_)) => {
                self.record.malformed_frames += 1;
                warn!(error = %e, "malformed engine event ignored");
                return None;
            }
            Err(e) => {
                error!(error = %e, "engine gone; ending the call");
                return Some(engine_lost(&e));
            }
        };
        match event {
            EngineEvent::Ready => self.ready().await,
            EngineEvent::Configured { input, output } => {
                if let Some(end) = self.check_formats(input.as_ref(), output.as_ref()) {
                    return Some(end);
                }
                self.ready().await
            }
            EngineEvent::ResponseStarted { response_id } => {
                self.response_requested = None;
                self.greeting_pending = None;
                if let Some((_, since)) = &mut self.speech_stopped {
                    since.push(response_id.to_string());
                }
                if let Some(closing) = &mut self.closing {
                    closing.on_response_started();
                }
                self.clock.response_started(&response_id);
                self.turns.response_started(&response_id);
                self.publish_speaking();
                None
            }
            EngineEvent::Audio {
                response_id,
                item_id,
                audio,
            } => {
                // Speech has come: a greeting asked for is under way.
                self.greeting_pending = None;
                self.answered(&response_id);
                self.clock.engine_audio(&response_id, Instant::now);
                self.forward_agent_audio(&item_id, &audio).await
            }
            EngineEvent::SpeechStarted => {
                self.hearing = true;
                self.barge_in().await
            }
            EngineEvent::SpeechStopped => {
                self.hearing = false;
                if self.stops.len() == MAX_STOPS_KEPT {
                    // No transcription: the caller's words never come.
                    self.stops.pop_front();
                }
                self.stops.push_back(self.started.elapsed());
                let now = Instant::now();
                self.speech_stopped = Some((now, Vec::new()));
                if let Some(turn) = self.clock.caller_stopped(now) {
                    self.record.turn(self.env, &self.ctx, turn);
                }
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
            EngineEvent::ResponseDone {
                response_id,
                status,
                usage,
            } => {
                debug!(%response_id, %status, "response done");
                if let Some(usage) = usage {
                    self.record.metrics.usage.add(&usage);
                }
                let next = self.turns.response_done(&response_id);
                self.publish_speaking();
                let end = self.go_on(next).await;
                self.check_idle();
                end
            }
            EngineEvent::UsageSoFar(usage) => {
                self.record.metrics.usage.add(&usage);
                None
            }
            EngineEvent::UserTranscript { text } => {
                // Replayed where the caller said it (when they stopped), not where its
                // transcript came (often after the answer had started).
                if let Some(at) = self.stops.pop_front() {
                    self.history.caller_said(self.record.transcript.len(), at);
                }
                self.record(Role::Caller, text.into_owned());
                None
            }
            EngineEvent::AgentTranscript { text } => {
                self.clock.text(Instant::now());
                self.record(Role::Agent, text.into_owned());
                None
            }
            EngineEvent::Error {
                code,
                message,
                fatal,
            } => {
                let code = code.unwrap_or_default();
                meters::engine_error(self.engine_name, fatal);
                if fatal {
                    let mut ending = Ending::hanging_up(EndReason::EngineError {
                        message: message.to_string(),
                    });
                    // The engine's own session limit: another session goes on with the call.
                    if code == "session_expired" {
                        warn!(%code, %message, "the engine session expired");
                        ending.recoverable = Some(ReconnectCause::Lost);
                    } else {
                        error!(%code, %message, "engine error; ending the call");
                    }
                    return Some(ending);
                }
                // An engine's benign errors (a response already active, say): logged only. A
                // refused request starts no response: messages waiting on one may go.
                warn!(%code, %message, "engine error");
                self.response_requested = None;
                None
            }
            EngineEvent::TextDelta { .. } => {
                self.clock.text(Instant::now());
                None
            }
            EngineEvent::Ignored => None,
        }
    }

    /// The engine has its configuration: the first message goes, once.
    /// A replacement session's, too: it then gives the answer the lost one owed.
    async fn ready(&mut self) -> Option<Ending> {
        self.awaiting_ready = false;
        if let Some(text) = self.first_message.take() {
            // The greeting is the answer owed: nothing else to resume.
            self.resume = false;
            self.asked_for_response();
            let sent = self
                .send_engine(EngineCommand::SayVerbatim { text: &text })
                .await;
            self.greeting_pending = Some(text);
            return sent;
        }
        if std::mem::take(&mut self.resume) {
            self.asked_for_response();
            return self.send_engine(EngineCommand::Resume).await;
        }
        None
    }

    /// Trust, but verify: the formats the engine says it took. Another format patter can
    /// carry (μ-law instead of PCM, or the reverse) is adapted to, with one warning; one it
    /// cannot ends the call before any of its audio reaches the caller.
    fn check_formats(
        &mut self,
        input: Option<&crate::engine::ReportedFormat>,
        output: Option<&crate::engine::ReportedFormat>,
    ) -> Option<Ending> {
        let (Some(input), Some(output)) = (input, output) else {
            return None;
        };
        let asked = self.relay.format();
        match (input.audio_format(), output.audio_format()) {
            (Some(took), Some(sends)) if took == sends => {
                if took != asked {
                    warn!(
                        asked = %asked,
                        got = %took,
                        "the engine took another audio format than asked; converting to it"
                    );
                    self.relay = AudioRelay::new(took);
                }
                None
            }
            _ => {
                error!(
                    asked = %asked,
                    input = %input,
                    output = %output,
                    "the engine took audio patter cannot carry; ending the call"
                );
                Some(Ending::hanging_up(EndReason::AudioFormat {
                    asked: asked.to_string(),
                    got: format!("{input} in, {output} out"),
                }))
            }
        }
    }

    async fn forward_agent_audio(&mut self, item_id: &str, audio: &str) -> Option<Ending> {
        let (audio, mulaw_bytes) = match self.relay.agent_audio(audio) {
            AgentAudio::Media { audio, mulaw_bytes } => (audio, mulaw_bytes),
            AgentAudio::Held => return None,
            AgentAudio::Refused => {
                self.record.malformed_frames += 1;
                warn!("engine audio that is not base64 dropped");
                return None;
            }
        };
        let mark = self.playback.on_forwarded(item_id, mulaw_bytes);
        self.mark_name.clear();
        let _ = write!(self.mark_name, "{mark}");
        let sent = self
            .carrier
            .send(CarrierCommand::Media {
                audio,
                mark: &self.mark_name,
            })
            .await;
        self.record.metrics.frames_out += 1;
        self.clock.first_audio_sent(mark.number(), Instant::now);
        self.publish_speaking();
        carrier_result(sent)
    }

    /// Audio of `response_id` is about to go out: if that response answers the caller's
    /// last words, the time they waited is reported. Audio of a response from before they
    /// stopped (still arriving after a barge-in) is not an answer.
    fn answered(&mut self, response_id: &str) {
        if let Some((stopped, since)) = &self.speech_stopped
            && since.iter().any(|r| r == response_id)
        {
            let after_speech = stopped.elapsed();
            self.speech_stopped = None;
            event(
                self.env,
                &self.ctx,
                &CallEvent::AgentAnswered { after_speech },
            );
        }
    }

    async fn barge_in(&mut self) -> Option<Ending> {
        let truncate = self.playback.barge_in();
        if let Some((_, heard_ms)) = &truncate {
            self.record.metrics.barge_ins += 1;
            let heard = Some(Duration::from_millis(*heard_ms));
            if let Some(turn) = self.clock.barge_in(heard, Instant::now()) {
                self.record.turn(self.env, &self.ctx, turn);
            }
        }
        self.publish_speaking();
        if let Some(end) = carrier_result(self.carrier.send(CarrierCommand::Clear).await) {
            return Some(end);
        }
        let (item_id, heard_ms) = truncate?;
        debug!(item_id, heard_ms, "barge-in: truncating");
        self.send_engine(EngineCommand::Truncate {
            item_id: &item_id,
            heard_ms,
        })
        .await
    }

    fn start_tool(&mut self, response_id: &str, call_id: &str, name: &str, arguments: &str) {
        if !self.turns.tool_called(response_id, call_id) {
            debug!(call_id, "repeated function call ignored");
            return;
        }
        self.history
            .tool_called(self.started.elapsed(), call_id, name, arguments);
        self.clock.tool_called();
        jobs::spawn_tool(
            self.env,
            &mut self.jobs,
            &self.tools,
            &self.ctx,
            (response_id, call_id),
            (name, arguments),
            self.clock.span(),
        );
    }

    async fn on_job(&mut self, job: Job) -> Option<Ending> {
        match job {
            Job::Tool(done) => {
                event(self.env, &self.ctx, &done.event());
                let timing = done.timing();
                meters::tool_finished(&timing);
                self.clock.tool_finished(timing);
                self.record.tool_calls.push(done.record());
                if done.outcome.actions.is_empty() {
                    return self
                        .answer_tool(&done.response_id, &done.call_id, &done.outcome.output)
                        .await;
                }
                self.start_actions(done);
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
            Job::Recording(Ok(())) => {
                info!("recording started");
                None
            }
            Job::Recording(Err(e)) => {
                // The call goes on unrecorded.
                warn!(error = %e, "the call could not be recorded");
                None
            }
        }
    }

    async fn answer_tool(
        &mut self,
        response_id: &str,
        call_id: &str,
        output: &str,
    ) -> Option<Ending> {
        // Recorded first: if the engine is gone, a replacement gets the result in its replay,
        // and goes on if this was the last one it waited for.
        self.history.tool_answered(call_id, output);
        let next = self.turns.tool_answered(response_id);
        if let Some(end) = self
            .send_engine(EngineCommand::ToolResult { call_id, output })
            .await
        {
            self.resume |= next == Next::Continue;
            return Some(end);
        }
        self.go_on(next).await
    }

    /// The caller's keys go to the model as one message, unless the agent is answering:
    /// then they wait for its response to finish.
    async fn send_keys(&mut self) -> Option<Ending> {
        if self.keys.hand_to_collector(self.ctx.keypad()) {
            return None;
        }
        if self.response_pending() {
            // Looked at again a gap later: a tool may start collecting, or the agent finish.
            self.keys.hold(Instant::now() + self.env.limits.dtmf_gap);
            return None;
        }
        let text = self.keys.take()?;
        self.asked_for_response();
        self.send_engine(EngineCommand::CallerText { text: &text })
            .await
    }

    /// Whether the agent is answering or about to (a response asked for and not started,
    /// the caller's words heard and not yet answered, a goodbye): a message for the model
    /// then waits, as a second response would be refused.
    fn response_pending(&self) -> bool {
        let due = |at: &Instant| at.elapsed() < ANSWER_DUE_WITHIN;
        self.turns.is_responding()
            || self.closing.is_some()
            || self.response_requested.as_ref().is_some_and(due)
            || self
                .speech_stopped
                .as_ref()
                .is_some_and(|(at, since)| since.is_empty() && due(at))
    }

    async fn go_on(&mut self, next: Next) -> Option<Ending> {
        match next {
            Next::Continue => {
                self.asked_for_response();
                self.send_engine(EngineCommand::ContinueAfterTools).await
            }
            Next::Wait | Next::Nothing => None,
        }
    }

    /// A tool's hang-up or transfer runs after the agent's words have played, on its own
    /// task.
    fn start_actions(&mut self, done: ToolDone) {
        self.speaking.send_replace(self.is_speaking());
        let speaking = self.speaking.subscribe();
        jobs::spawn_actions(
            &mut self.jobs,
            &self.env.control,
            self.ctx.call_id(),
            done,
            speaking,
            self.env.limits.goodbye_wait,
        );
    }

    /// Asks the agent to say goodbye; the loop hangs up once it has played.
    async fn begin_closing(&mut self, reason: EndReason) -> Option<Ending> {
        let closing = Closing::new(reason);
        let instructions = closing.instructions();
        self.closing = Some(closing);
        self.asked_for_response();
        self.send_engine(EngineCommand::Respond { instructions })
            .await
    }

    /// Records what the engine session still held (transcripts no gap had closed yet).
    fn record_leftovers(&mut self) {
        for event in self.engine.finish() {
            match event {
                EngineEvent::UserTranscript { text } => {
                    self.record(Role::Caller, text.into_owned())
                }
                EngineEvent::AgentTranscript { text } => {
                    self.record(Role::Agent, text.into_owned())
                }
                _ => {}
            }
        }
    }

    /// What the engine owes now (for stall detection).
    fn owed(&self) -> Owed {
        let unanswered = self
            .speech_stopped
            .as_ref()
            .is_some_and(|(_, since)| since.is_empty());
        Owed {
            answer: self.awaiting_ready
                || self.resume
                || self.turns.is_responding()
                || self.response_requested.is_some()
                || unanswered,
            hearing: self.hearing,
        }
    }

    /// The periodic look for a stalled engine.
    fn check_stall(&mut self) -> Option<Ending> {
        if self.closing.is_some() || !self.stall.check(Instant::now(), self.owed()) {
            return None;
        }
        let after = self.env.limits.engine_stall;
        warn!(
            after_ms = after.as_millis() as u64,
            "the engine stalled: nothing came while it owed an answer"
        );
        let mut ending = Ending::hanging_up(EndReason::EngineLost {
            detail: format!(
                "the engine sent nothing for {} ms while it owed an answer",
                after.as_millis()
            ),
        });
        ending.recoverable = Some(ReconnectCause::Stalled);
        Some(ending)
    }

    /// Replaces a lost or stalled engine session: a new one, configured the same way, told
    /// the conversation so far and to go on without greeting again; tools still running
    /// answer in it. Bounded by [`Limits::reconnect_attempts`] for the call and
    /// [`Limits::reconnect_within`] for this replacement, with backoff; `Err` (the call
    /// ends with the apology) when they run out.
    ///
    /// [`Limits::reconnect_attempts`]: crate::Limits::reconnect_attempts
    /// [`Limits::reconnect_within`]: crate::Limits::reconnect_within
    async fn reconnect(&mut self, cause: ReconnectCause, lost: Ending) -> Result<(), Ending> {
        let limits = &self.env.limits;
        if self.reconnects_left == 0 {
            if limits.reconnect_attempts > 0 {
                error!(
                    cause = cause.kind(),
                    "the engine failed again and no reconnect is left"
                );
            }
            return Err(lost);
        }
        let began = Instant::now();
        let at = self.started.elapsed();
        // What the lost session still held, and what it owed.
        self.record_leftovers();
        let owed = self.owed().answer && !self.awaiting_ready;
        let was_speaking = self.turns.is_responding();
        let next = self.turns.engine_replaced();
        // A tool still running is what the model waits for: its result resumes it.
        self.resume = self.resume || next == Next::Continue || (owed && next != Next::Wait);
        // A greeting whose response never started is asked of the new session.
        if let Some(greeting) = self.greeting_pending.take() {
            self.first_message = Some(greeting);
        }
        let mut setup = self
            .setup
            .clone()
            .tools(self.tools.definitions().cloned().collect())
            .history(self.history.replay(
                &self.record.transcript,
                limits.reconnect_history_items,
                limits.reconnect_history_bytes,
            ));
        // Once the call has begun, the model is told it is resuming, not starting (a
        // session lost before its greeting went starts afresh, and greets).
        if self.first_message.is_none() {
            setup.instructions.push_str(recovery::RESUMED_NOTE);
        }
        let replayed = setup.history.len();
        let deadline = began
            .checked_add(limits.reconnect_within)
            .unwrap_or_else(|| began + Duration::from_secs(3600));
        let mut attempts = 0u32;
        let mut backoff = RECONNECT_BACKOFF;
        let opened = loop {
            self.reconnects_left -= 1;
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.engine_kind.open(&setup)).await {
                Ok(Ok(session)) => break Some(session),
                Ok(Err(e)) if e.is_configuration() => {
                    error!(error = %e, "the engine refused patter's credentials on reconnect: check OPENAI_API_KEY");
                    break None;
                }
                Ok(Err(e)) => warn!(error = %e, attempt = attempts, "reconnect failed"),
                Err(_) => {
                    warn!(attempt = attempts, "reconnect took too long");
                    break None;
                }
            }
            let wait = crate::engine::jittered(backoff);
            if self.reconnects_left == 0 || Instant::now() + wait >= deadline {
                break None;
            }
            tokio::time::sleep(wait).await;
            backoff = backoff.saturating_mul(2);
        };
        meters::engine_reconnected(self.engine_name, cause.kind(), opened.is_some());
        let Some(session) = opened else {
            error!(
                cause = cause.kind(),
                attempts, "the engine could not be reconnected; apologising and ending the call"
            );
            let detail = match lost.reason {
                EndReason::EngineLost { detail } => detail,
                other => other.to_string(),
            };
            return Err(Ending::hanging_up(EndReason::EngineLost {
                detail: format!("{detail}; reconnecting failed after {attempts} attempt(s)"),
            }));
        };
        let old = std::mem::replace(&mut self.engine, session);
        // A stalled session may not answer its close: it is closed on the side.
        tokio::spawn(close_within(old.close()));
        self.playback.engine_replaced();
        if was_speaking && self.resume {
            // The new session answers afresh: what the lost one said and the caller has not
            // heard yet would only be said again.
            if let Some(end) = carrier_result(self.carrier.send(CarrierCommand::Clear).await) {
                return Err(end);
            }
        }
        self.hearing = false;
        self.awaiting_ready = true;
        self.stall.restart(Instant::now());
        let took = began.elapsed();
        info!(
            cause = cause.kind(),
            took_ms = took.as_millis() as u64,
            attempts,
            replayed,
            "engine session replaced; the call goes on"
        );
        self.record.reconnects.push(Reconnect {
            at,
            took,
            cause,
            attempts,
            replayed,
        });
        Ok(())
    }

    async fn send_engine(&mut self, command: EngineCommand<'_>) -> Option<Ending> {
        match self.engine.send(command).await {
            Ok(()) => None,
            Err(e) => {
                error!(error = %e, "engine connection failed");
                Some(engine_lost(&e))
            }
        }
    }

    fn record(&mut self, role: Role, text: String) {
        self.record
            .add(self.env, &self.ctx, self.started, role, text);
    }

    /// Patter asks the engine for a response now.
    fn asked_for_response(&mut self) {
        let now = Instant::now();
        self.response_requested = Some(now);
        self.clock.response_requested(now);
    }

    /// A turn whose answer is complete (no response running, no tool pending, all of its
    /// audio played) ends.
    fn check_idle(&mut self) {
        if !self.turns.is_responding()
            && self.playback.pending_marks() == 0
            && self.response_requested.is_none()
            && let Some(turn) = self.clock.idle(Instant::now())
        {
            self.record.turn(self.env, &self.ctx, turn);
        }
    }

    fn is_speaking(&self) -> bool {
        self.turns.is_responding() || self.playback.pending_marks() > 0
    }

    /// Updates `speaking` for an action waiting on it. With nobody waiting (nearly always)
    /// this is a no-op, so the audio path takes no lock; `start_actions` publishes the
    /// current state before it subscribes.
    fn publish_speaking(&self) {
        if self.speaking.receiver_count() == 0 {
            return;
        }
        let now = self.is_speaking();
        self.speaking.send_if_modified(|s| {
            let changed = *s != now;
            *s = now;
            changed
        });
    }
}

fn carrier_result(sent: Result<(), CarrierError>) -> Option<Ending> {
    match sent {
        Ok(()) => None,
        Err(e) => {
            warn!(error = %e, "the caller's connection failed");
            Some(Ending::new(EndReason::StreamClosed))
        }
    }
}

/// Resolves once `signal` turns true; never without a signal, or once its sender is gone.
async fn shutdown_signal(signal: Option<watch::Receiver<bool>>) {
    if let Some(mut signal) = signal
        && signal.wait_for(|&s| s).await.is_ok()
    {
        return;
    }
    std::future::pending::<()>().await;
}

/// The carrier tells the caller the agent is unavailable (then hangs up or transfers);
/// `false` if it could not, and the call must still be hung up.
async fn apologise(env: &CallEnv, ctx: &CallContext) -> bool {
    match env.control.apologise(ctx.call_id(), &env.outage).await {
        Ok(()) => {
            info!("the caller was told the agent is unavailable");
            true
        }
        Err(e) => {
            warn!(error = %e, "could not apologise to the caller; hanging up");
            false
        }
    }
}

pub(super) async fn close_within(closing: impl Future<Output = ()>) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
}

/// Hangs up through call control if needed, fires `on_call_end`, and returns the summary.
pub(super) async fn finish(
    env: &CallEnv,
    ctx: &CallContext,
    ending: Ending,
    started: Instant,
    record: Record,
) -> CallSummary {
    if ending.hang_up
        && let Err(e) = env.control.hang_up(ctx.call_id()).await
    {
        error!(error = %e, "could not hang up the call");
    }
    let duration = started.elapsed();
    let mut metrics = record.metrics;
    metrics.malformed_frames = record.malformed_frames;
    metrics.summarise();
    metrics.carrier_minutes = super::carrier_minutes(duration);
    metrics.cost = env
        .prices
        .cost(&metrics.model, &metrics.usage, ctx.direction(), duration);
    let summary = CallSummary {
        context: ctx.clone(),
        reason: ending.reason,
        duration,
        transcript: record.transcript,
        tool_calls: record.tool_calls,
        metrics,
        reconnects: record.reconnects,
    };
    info!(
        reason = summary.reason.kind(),
        duration_ms = summary.duration.as_millis() as u64,
        "call ended"
    );
    let span = tracing::Span::current();
    span.record("call.end_reason", summary.reason.kind());
    span.record("call.duration_ms", summary.duration.as_millis() as u64);
    span.record(
        "gen_ai.usage.input_tokens",
        summary.metrics.usage.input_tokens(),
    );
    span.record(
        "gen_ai.usage.output_tokens",
        summary.metrics.usage.output_tokens(),
    );
    meters::call_ended(&summary);
    if let Some(hook) = &env.hooks.on_call_end {
        let ran = AssertUnwindSafe(hook(summary.clone())).catch_unwind();
        match tokio::time::timeout(HOOK_TIMEOUT, ran).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => error!("on_call_end panicked"),
            Err(_) => warn!("on_call_end did not finish within 10 s; abandoned"),
        }
    }
    summary
}

/// A key the caller pressed, on a phone or typed in a text conversation: `on_dtmf` sees
/// it, then a tool collecting keys takes it. `true` if it is for the model. The key is not
/// logged: it may be part of a PIN.
pub(super) fn keypad(env: &CallEnv, ctx: &CallContext, digit: char) -> bool {
    debug!("keypad press");
    if let Some(hook) = &env.hooks.on_dtmf {
        guarded("on_dtmf", || hook(ctx, digit));
    }
    !ctx.keypad().offer(digit)
}

/// Tells `on_event`, if set.
pub(super) fn event(env: &CallEnv, ctx: &CallContext, event: &CallEvent<'_>) {
    if let Some(hook) = &env.hooks.on_event {
        guarded("on_event", || hook(ctx, event));
    }
}

/// Runs a hook on the call's task; a hook that panics is logged, and the call goes on.
pub(super) fn guarded(name: &str, hook: impl FnOnce()) {
    if std::panic::catch_unwind(AssertUnwindSafe(hook)).is_err() {
        error!(hook = name, "hook panicked; the call goes on");
    }
}
