//! The per-call session: one task that bridges one Twilio Media Stream and one engine socket.
//!
//! Everything about a live call happens in [`CallSession::run`]'s loop, which never waits on
//! a tool: tools run on their own tasks and report back, so caller audio, agent audio and
//! barge-in keep flowing while they work.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as TwilioMessage, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as EngineMessage;
use tracing::{Instrument, debug, error, info, warn};

use super::playback::Playback;
use super::relay::{AgentAudio, AudioRelay};
use super::{CallSetup, CallSummary, EndReason, Role, ToolCallRecord, TranscriptEntry};
use crate::agent::AgentSpec;
use crate::engine::openai_realtime::{self as realtime, Socket};
use crate::engine::{EngineEvent, EngineSetup};
use crate::server::App;
use crate::tool::{CallAction, CallContext, Direction, DispatchOutcome, ToolSet};
use crate::twilio::media::{self, Inbound, Start};
use crate::twilio::stream_token;

/// How long a new stream may take to send `start`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing a socket may take before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `on_call_start` and `on_call_end` may run.
const HOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// What the agent is asked to say when the call reaches its time limit.
const TIME_LIMIT_GOODBYE: &str = "The call has reached its time limit. In one short sentence, \
    apologise that you have to end the call now and say goodbye.";
/// What the agent is asked to say when the server shuts down mid-call.
const SHUTDOWN_GOODBYE: &str = "The service is restarting. In one short sentence, apologise \
    that you have to end the call now, ask the caller to call back, and say goodbye.";
/// The longest caller-supplied value put into a prompt.
const MAX_PROMPT_VALUE_CHARS: usize = 256;

/// Runs one Media Streams connection from its first frame to its end.
///
/// Each socket stays whole (not split into halves behind a lock): the session's one task
/// both reads and writes it.
pub(crate) async fn serve_stream(app: Arc<App>, mut socket: WebSocket) {
    let start = match wait_for_start(&mut socket).await {
        Ok(start) => start,
        Err(why) => {
            info!(reason = why, "stream closed before a call started");
            close_twilio(socket).await;
            return;
        }
    };
    let span =
        tracing::info_span!("call", call_sid = %start.call_sid, stream_sid = %start.stream_sid);
    async move {
        if let Err(why) = check_token(&app, &start) {
            warn!(
                reason = why,
                "stream refused: no valid call token; no engine session opened"
            );
            close_twilio(socket).await;
            return;
        }
        let Some(_slot) = app.calls.enter() else {
            warn!("stream refused: the server is at its call limit");
            close_twilio(socket).await;
            return;
        };
        CallSession::start(app.clone(), start, socket).await;
    }
    .instrument(span)
    .await;
}

/// Reads frames until `start`, ignoring `connected`, stray media and malformed frames.
async fn wait_for_start(stream: &mut WebSocket) -> Result<Start, &'static str> {
    let deadline = tokio::time::sleep(START_TIMEOUT);
    tokio::pin!(deadline);
    // At most this many frames before `start`: a peer that floods never gets a session.
    for _ in 0..256 {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = &mut deadline => return Err("no start within 10 s"),
        };
        match frame {
            Some(Ok(TwilioMessage::Text(text))) => match media::parse(&text) {
                Ok(Inbound::Start { start }) => return Ok(start),
                Ok(Inbound::Stop {}) => return Err("stop before start"),
                Ok(Inbound::Media { .. }) => debug!("media before start ignored"),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "malformed frame before start ignored"),
            },
            Some(Ok(TwilioMessage::Close(_))) | None => return Err("socket closed"),
            Some(Ok(_)) => debug!("non-text frame before start ignored"),
            Some(Err(_)) => return Err("socket error"),
        }
    }
    Err("too many frames before start")
}

fn check_token(app: &App, start: &Start) -> Result<(), &'static str> {
    let token = start
        .custom_parameters
        .get(crate::server::TOKEN_PARAMETER)
        .ok_or("missing")?;
    stream_token::verify(
        app.config.stream_secret.expose().as_bytes(),
        &start.call_sid,
        token,
        crate::util::unix_now(),
    )
    .map_err(|e| match e {
        stream_token::TokenError::Malformed => "malformed",
        stream_token::TokenError::Expired => "expired",
        stream_token::TokenError::Mismatch => "mismatch",
    })
}

async fn close_twilio(mut socket: WebSocket) {
    let closing = async {
        let _ = socket.send(TwilioMessage::Close(None)).await;
        let _ = SinkExt::close(&mut socket).await;
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
}

/// Tools of one model response: a single `response.create` follows once the response is
/// done and every one of its tools has answered.
#[derive(Debug, Default)]
struct ResponseTools {
    outstanding: usize,
    done: bool,
    answered: usize,
    /// A hang-up or transfer went through: the model need not speak again.
    settled: bool,
    /// The engine's ids of this response's calls, forgotten with it.
    call_ids: Vec<String>,
}

/// What a finished background job reports to the session loop.
enum Job {
    Tool {
        response_id: String,
        call_id: String,
        name: String,
        arguments: String,
        outcome: DispatchOutcome,
    },
    Action {
        response_id: String,
        call_id: String,
        action: CallAction,
        result: Result<(), String>,
    },
}

/// One live call.
struct CallSession {
    app: Arc<App>,
    ctx: CallContext,
    tools: ToolSet,
    first_message: Option<String>,
    twilio: WebSocket,
    relay: AudioRelay,
    engine: Socket,
    playback: Playback,
    seen_calls: HashSet<String>,
    responses: HashMap<String, ResponseTools>,
    active_responses: HashSet<String>,
    jobs: JoinSet<Job>,
    /// Whether the agent is still speaking (a response in progress or audio not yet played),
    /// for `end_call`/`transfer_call`, which wait for their last words to play.
    speaking: watch::Sender<bool>,
    transcript: Vec<TranscriptEntry>,
    tool_calls: Vec<ToolCallRecord>,
    started: Instant,
    /// Reused buffer for the name of the next mark.
    mark_name: String,
    malformed_frames: u64,
    /// Set when patter itself ends the call (time limit, shutdown): the agent says goodbye,
    /// then the call is hung up.
    closing: Option<Closing>,
}

/// A call patter is ending on its own initiative.
#[derive(Debug)]
struct Closing {
    reason: EndReason,
    /// The goodbye response has started.
    spoke: bool,
}

/// How the loop ended, and whether the Twilio call must still be hung up over REST.
struct Ending {
    reason: EndReason,
    hang_up: bool,
}

impl Ending {
    fn new(reason: EndReason) -> Self {
        Ending {
            reason,
            hang_up: false,
        }
    }

    fn hanging_up(reason: EndReason) -> Self {
        Ending {
            reason,
            hang_up: true,
        }
    }
}

impl CallSession {
    async fn start(app: Arc<App>, start: Start, twilio: WebSocket) {
        let started = Instant::now();
        let ctx = context_from_start(&start);
        info!(caller = ctx.caller(), callee = ctx.callee(), "call started");
        let spec: &AgentSpec = &app.agent;
        let setup = match &app.hooks.on_call_start {
            Some(hook) => match tokio::time::timeout(HOOK_TIMEOUT, hook(ctx.clone())).await {
                Ok(setup) => setup,
                Err(_) => {
                    warn!("on_call_start did not finish within 10 s; using the agent's settings");
                    CallSetup::default()
                }
            },
            None => CallSetup::default(),
        };
        let tools = setup.tools.clone().unwrap_or_else(|| spec.tools.clone());
        let tools = if app.config.system_tools {
            match super::system_tools(&tools) {
                Ok(all) => all,
                Err(e) => {
                    // The agent's own tools already use a system tool's name: keep theirs.
                    warn!(error = %e, "system tools not added");
                    tools
                }
            }
        } else {
            tools
        };
        let instructions = instructions_for(spec, &setup, &ctx);
        let first_message = setup
            .first_message
            .clone()
            .unwrap_or_else(|| spec.first_message.clone());
        let engine_setup = EngineSetup {
            model: spec.model.clone(),
            instructions,
            voice: spec.voice.clone(),
            audio: spec.audio,
            tools: tools.definitions().cloned().collect(),
        };
        let engine = match open_engine(&app, &engine_setup).await {
            Ok(engine) => engine,
            Err(detail) => {
                error!(detail, "engine unavailable; ending the call");
                close_twilio(twilio).await;
                let ending = Ending::hanging_up(EndReason::EngineLost { detail });
                finish(&app, &ctx, ending, started, Vec::new(), Vec::new()).await;
                return;
            }
        };
        let session = CallSession {
            relay: AudioRelay::new(spec.audio, &start.stream_sid),
            app: Arc::clone(&app),
            ctx,
            tools,
            first_message,
            twilio,
            engine,
            playback: Playback::default(),
            seen_calls: HashSet::new(),
            responses: HashMap::new(),
            active_responses: HashSet::new(),
            jobs: JoinSet::new(),
            speaking: watch::Sender::new(false),
            transcript: Vec::new(),
            tool_calls: Vec::new(),
            started,
            mark_name: String::new(),
            malformed_frames: 0,
            closing: None,
        };
        session.run().await;
    }

    async fn run(mut self) {
        let max_duration = tokio::time::sleep(self.app.config.limits.max_call_duration);
        tokio::pin!(max_duration);
        // One waiter for the whole call: a `wait_for` made afresh on every turn of the loop
        // would take the server-wide channel's lock twice per audio frame.
        let mut shutdown = self.app.shutdown.clone();
        let shutdown_signal = async move {
            let _ = shutdown.wait_for(|&s| s).await;
        };
        tokio::pin!(shutdown_signal);
        let mut shutdown_seen = false;
        // Armed when closing starts: the goodbye gets this long, then the line is cut.
        let closing_deadline = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(closing_deadline);
        let ending = loop {
            let step = tokio::select! {
                frame = self.twilio.next() => self.on_twilio(frame).await,
                frame = self.engine.next() => self.on_engine(frame).await,
                Some(job) = self.jobs.join_next() => match job {
                    Ok(job) => self.on_job(job).await,
                    Err(e) => {
                        // A job is a tool dispatch (which catches panics) or a REST call:
                        // this is a bug, not a reason to drop the call.
                        error!(error = %e, "background job failed");
                        None
                    }
                },
                () = &mut max_duration, if self.closing.is_none() => {
                    info!("maximum call duration reached; saying goodbye");
                    closing_deadline.as_mut().reset(tokio::time::Instant::now() + self.app.config.limits.goodbye_wait);
                    self.begin_closing(EndReason::MaxDuration, TIME_LIMIT_GOODBYE).await
                }
                () = &mut shutdown_signal, if self.closing.is_none() && !shutdown_seen => {
                    shutdown_seen = true;
                    info!("server shutting down; saying goodbye");
                    closing_deadline.as_mut().reset(tokio::time::Instant::now() + self.app.config.limits.goodbye_wait);
                    self.begin_closing(EndReason::Shutdown, SHUTDOWN_GOODBYE).await
                }
                () = &mut closing_deadline, if self.closing.is_some() => {
                    warn!("goodbye not finished in time; hanging up");
                    self.closing.take().map(|c| Ending::hanging_up(c.reason))
                }
            };
            if let Some(ending) = step {
                break ending;
            }
            if let Some(closing) = &self.closing
                && closing.spoke
                && self.active_responses.is_empty()
                && self.playback.pending_marks() == 0
            {
                let reason = closing.reason.clone();
                break Ending::hanging_up(reason);
            }
        };
        // Ending exactly once: tools stop, both sockets close, the call is hung up if needed.
        self.jobs.abort_all();
        // A peer that stopped reading cannot hold the call open: each close is bounded, and
        // the engine connection is gone before the hang-up and `on_call_end` run.
        let mut engine = self.engine;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, engine.close(None)).await;
        drop(engine);
        close_twilio(self.twilio).await;
        if self.malformed_frames > 0 {
            warn!(
                count = self.malformed_frames,
                "malformed frames were ignored"
            );
        }
        finish(
            &self.app,
            &self.ctx,
            ending,
            self.started,
            self.transcript,
            self.tool_calls,
        )
        .await;
    }

    async fn on_twilio(
        &mut self,
        frame: Option<Result<TwilioMessage, axum::Error>>,
    ) -> Option<Ending> {
        let text = match frame {
            Some(Ok(TwilioMessage::Text(text))) => text,
            Some(Ok(TwilioMessage::Close(_))) | None => {
                return Some(Ending::new(EndReason::StreamClosed));
            }
            Some(Ok(TwilioMessage::Binary(_))) => {
                self.malformed_frames += 1;
                debug!("binary frame from Twilio ignored");
                return None;
            }
            Some(Ok(_)) => return None,
            Some(Err(e)) => {
                warn!(error = %e, "Twilio socket failed");
                return Some(Ending::new(EndReason::StreamClosed));
            }
        };
        match media::parse(&text) {
            Ok(Inbound::Media { media }) => {
                if let Some(ts) = media.timestamp_ms() {
                    self.playback.on_inbound(ts);
                }
                if media.track.as_deref().is_some_and(|t| t != "inbound") {
                    return None;
                }
                self.forward_caller_audio(&media.payload).await
            }
            Ok(Inbound::Mark { mark }) => {
                self.playback.on_mark(&mark.name);
                self.publish_speaking();
                None
            }
            Ok(Inbound::Stop {}) => Some(Ending::new(EndReason::StreamStopped)),
            Ok(Inbound::Dtmf { dtmf }) => {
                debug!(digit = %dtmf.digit, "DTMF");
                None
            }
            Ok(Inbound::Start { .. }) => {
                debug!("second start ignored");
                None
            }
            Ok(Inbound::Connected {} | Inbound::Unknown) => None,
            Err(e) => {
                self.malformed_frames += 1;
                debug!(error = %e, "malformed Twilio frame ignored");
                None
            }
        }
    }

    async fn forward_caller_audio(&mut self, payload: &str) -> Option<Ending> {
        let Some(message) = self.relay.caller_audio(payload) else {
            self.malformed_frames += 1;
            return None;
        };
        self.send_engine(message).await
    }

    async fn send_engine(&mut self, text: String) -> Option<Ending> {
        match self.engine.send(EngineMessage::text(text)).await {
            Ok(()) => None,
            Err(e) => {
                error!(error = %e, "engine socket failed");
                Some(Ending::hanging_up(EndReason::EngineLost {
                    detail: e.to_string(),
                }))
            }
        }
    }

    async fn send_twilio(&mut self, text: String) -> Option<Ending> {
        match self
            .twilio
            .send(TwilioMessage::Text(Utf8Bytes::from(text)))
            .await
        {
            Ok(()) => None,
            Err(e) => {
                warn!(error = %e, "Twilio socket failed");
                Some(Ending::new(EndReason::StreamClosed))
            }
        }
    }

    fn is_speaking(&self) -> bool {
        !self.active_responses.is_empty() || self.playback.pending_marks() > 0
    }

    /// Updates `speaking` for an action waiting on it. With nobody waiting (nearly always)
    /// this is a no-op, so the audio path takes no lock; `start_action` publishes the
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

    async fn on_engine(
        &mut self,
        frame: Option<Result<EngineMessage, tokio_tungstenite::tungstenite::Error>>,
    ) -> Option<Ending> {
        let text = match frame {
            Some(Ok(EngineMessage::Text(text))) => text,
            Some(Ok(EngineMessage::Close(close))) => {
                let detail = close.map_or_else(
                    || "the engine closed the connection".to_owned(),
                    |c| format!("the engine closed the connection: {} {}", c.code, c.reason),
                );
                error!(detail, "engine gone; ending the call");
                return Some(Ending::hanging_up(EndReason::EngineLost { detail }));
            }
            None => {
                error!("engine socket dropped; ending the call");
                return Some(Ending::hanging_up(EndReason::EngineLost {
                    detail: "the engine connection dropped".into(),
                }));
            }
            Some(Err(e)) => {
                error!(error = %e, "engine socket failed; ending the call");
                return Some(Ending::hanging_up(EndReason::EngineLost {
                    detail: e.to_string(),
                }));
            }
            Some(Ok(_)) => return None,
        };
        let event = match realtime::parse_event(&text) {
            Ok(event) => event,
            Err(e) => {
                self.malformed_frames += 1;
                warn!(error = %e, "malformed engine event ignored");
                return None;
            }
        };
        match event {
            EngineEvent::SessionUpdated => {
                // The first message goes once, after the session has its audio format.
                if let Some(text) = self.first_message.take() {
                    return self.send_engine(realtime::say_verbatim(&text)).await;
                }
                None
            }
            EngineEvent::ResponseStarted { response_id } => {
                if let Some(closing) = &mut self.closing {
                    closing.spoke = true;
                }
                self.active_responses.insert(response_id.into_owned());
                self.publish_speaking();
                None
            }
            EngineEvent::Audio { item_id, audio, .. } => {
                self.forward_agent_audio(&item_id, &audio).await
            }
            EngineEvent::SpeechStarted => self.barge_in().await,
            EngineEvent::FunctionCall {
                response_id,
                call_id,
                name,
                arguments,
            } => {
                self.start_tool(
                    response_id.into_owned(),
                    call_id.into_owned(),
                    name.into_owned(),
                    arguments.into_owned(),
                );
                None
            }
            EngineEvent::ResponseDone {
                response_id,
                status,
            } => {
                debug!(%response_id, %status, "response done");
                self.active_responses.remove(&*response_id);
                self.publish_speaking();
                if let Some(entry) = self.responses.get_mut(&*response_id) {
                    entry.done = true;
                }
                self.continue_after_tools(&response_id).await
            }
            EngineEvent::UserTranscript { text } => {
                self.record(Role::Caller, text.into_owned());
                None
            }
            EngineEvent::AgentTranscript { text } => {
                self.record(Role::Agent, text.into_owned());
                None
            }
            EngineEvent::Error {
                code,
                message,
                fatal,
            } => {
                let code = code.unwrap_or_default();
                if fatal {
                    error!(%code, %message, "engine error; ending the call");
                    return Some(Ending::hanging_up(EndReason::EngineError {
                        message: message.into_owned(),
                    }));
                }
                // conversation_already_has_active_response and friends: logged, not fatal.
                warn!(%code, %message, "engine error");
                None
            }
            EngineEvent::Ignored => None,
        }
    }

    async fn forward_agent_audio(&mut self, item_id: &str, audio: &str) -> Option<Ending> {
        let (media, mulaw_bytes) = match self.relay.agent_audio(audio) {
            AgentAudio::Media {
                message,
                mulaw_bytes,
            } => (message, mulaw_bytes),
            AgentAudio::Held => return None,
            AgentAudio::Refused => {
                self.malformed_frames += 1;
                warn!("engine audio that is not base64 dropped");
                return None;
            }
        };
        let mark = self.playback.on_forwarded(item_id, mulaw_bytes);
        self.mark_name.clear();
        let _ = write!(self.mark_name, "{mark}");
        let mark = self.relay.outbound().mark(&self.mark_name);
        // Audio and its mark leave in one write.
        if let Err(e) = self.twilio.feed(TwilioMessage::Text(media.into())).await {
            warn!(error = %e, "Twilio socket failed");
            return Some(Ending::new(EndReason::StreamClosed));
        }
        let end = self.send_twilio(mark).await;
        self.publish_speaking();
        end
    }

    async fn barge_in(&mut self) -> Option<Ending> {
        let truncate = self.playback.barge_in();
        self.publish_speaking();
        let clear = self.relay.outbound().clear();
        if let Some(end) = self.send_twilio(clear).await {
            return Some(end);
        }
        match truncate {
            Some((item_id, audio_end_ms)) => {
                debug!(item_id, audio_end_ms, "barge-in: truncating");
                self.send_engine(realtime::truncate(&item_id, audio_end_ms))
                    .await
            }
            None => None,
        }
    }

    fn start_tool(
        &mut self,
        response_id: String,
        call_id: String,
        name: String,
        arguments: String,
    ) {
        if !self.seen_calls.insert(call_id.clone()) {
            debug!(call_id, "duplicate function call ignored");
            return;
        }
        let entry = self.responses.entry(response_id.clone()).or_default();
        entry.outstanding += 1;
        entry.call_ids.push(call_id.clone());
        let tools = self.tools.clone();
        let ctx = self.ctx.clone();
        let span = tracing::Span::current();
        self.jobs.spawn(
            async move {
                let outcome = tools
                    .dispatch_with_id(&name, &arguments, &ctx, &call_id)
                    .await;
                Job::Tool {
                    response_id,
                    call_id,
                    name,
                    arguments,
                    outcome,
                }
            }
            .instrument(span),
        );
    }

    async fn on_job(&mut self, job: Job) -> Option<Ending> {
        match job {
            Job::Tool {
                response_id,
                call_id,
                name,
                arguments,
                outcome,
            } => {
                let output = self.cap_output(&name, outcome.output);
                self.tool_calls.push(ToolCallRecord {
                    name,
                    arguments,
                    output: output.clone(),
                    ok: outcome.error.is_none(),
                });
                if let Some(action) = outcome.actions.into_iter().next() {
                    self.start_action(response_id, call_id, action);
                    return None;
                }
                self.answer_tool(&response_id, &call_id, &output).await
            }
            Job::Action {
                response_id,
                call_id,
                action,
                result,
            } => match result {
                Ok(()) => {
                    if let Some(entry) = self.responses.get_mut(&*response_id) {
                        entry.settled = true;
                        entry.outstanding = entry.outstanding.saturating_sub(1);
                    }
                    Some(Ending::new(match action {
                        CallAction::HangUp { reason } => EndReason::AgentHungUp { reason },
                        CallAction::Transfer { to } => EndReason::Transferred { to },
                    }))
                }
                Err(message) => {
                    warn!(error = %message, "call action failed");
                    let output = crate::tool::ToolError::Failed(message).to_model_json();
                    self.answer_tool(&response_id, &call_id, &output).await
                }
            },
        }
    }

    /// A result longer than the limit is cut, with a note; the full text goes to the log.
    fn cap_output(&self, name: &str, output: String) -> String {
        let limit = self.app.config.limits.max_tool_result_bytes;
        if output.len() <= limit {
            return output;
        }
        info!(tool = name, full_output = %output, "tool result cut for the model");
        let mut cut = limit;
        while !output.is_char_boundary(cut) {
            cut -= 1;
        }
        format!(
            "{}… [result cut: it was {} bytes, the limit is {limit}]",
            &output[..cut],
            output.len()
        )
    }

    async fn answer_tool(
        &mut self,
        response_id: &str,
        call_id: &str,
        output: &str,
    ) -> Option<Ending> {
        if let Some(end) = self
            .send_engine(realtime::function_call_output(call_id, output))
            .await
        {
            return Some(end);
        }
        if let Some(entry) = self.responses.get_mut(response_id) {
            entry.outstanding = entry.outstanding.saturating_sub(1);
            entry.answered += 1;
        }
        self.continue_after_tools(response_id).await
    }

    /// Sends the one `response.create` of a response once it is done and all its tools have
    /// answered.
    async fn continue_after_tools(&mut self, response_id: &str) -> Option<Ending> {
        let ready = self
            .responses
            .get(response_id)
            .is_some_and(|r| r.done && r.outstanding == 0);
        if !ready {
            return None;
        }
        let entry = self.responses.remove(response_id)?;
        // Every event of a response comes before its response.done: no repeat can follow.
        for call_id in &entry.call_ids {
            self.seen_calls.remove(call_id);
        }
        if entry.answered > 0 && !entry.settled {
            return self.send_engine(realtime::response_create()).await;
        }
        None
    }

    /// Hang-up and transfer run after the agent's words have played, on their own task.
    fn start_action(&mut self, response_id: String, call_id: String, action: CallAction) {
        let rest = self.app.rest();
        let call_sid = self.ctx.call_id().to_owned();
        self.speaking.send_replace(self.is_speaking());
        let mut speaking = self.speaking.subscribe();
        let wait = self.app.config.limits.goodbye_wait;
        let span = tracing::Span::current();
        self.jobs.spawn(
            async move {
                // The response that asked is usually still speaking its goodbye.
                let played = tokio::time::timeout(wait, async {
                    let _ = speaking.wait_for(|speaking| !speaking).await;
                })
                .await;
                if played.is_err() {
                    warn!("goodbye still playing after the wait; acting anyway");
                }
                let result = match &action {
                    CallAction::HangUp { .. } => rest.hang_up(&call_sid).await,
                    CallAction::Transfer { to } => rest.transfer(&call_sid, to).await,
                }
                .map_err(|e| e.to_string());
                Job::Action {
                    response_id,
                    call_id,
                    action,
                    result,
                }
            }
            .instrument(span),
        );
    }

    /// Asks the agent to say goodbye; the loop hangs up once it has played.
    async fn begin_closing(&mut self, reason: EndReason, instructions: &str) -> Option<Ending> {
        self.closing = Some(Closing {
            reason,
            spoke: false,
        });
        self.send_engine(realtime::response_with_instructions(instructions))
            .await
    }

    fn record(&mut self, role: Role, text: String) {
        if text.trim().is_empty() {
            return;
        }
        let entry = TranscriptEntry {
            role,
            text,
            at: self.started.elapsed(),
        };
        if let Some(hook) = &self.app.hooks.on_transcript {
            hook(&self.ctx, &entry);
        }
        self.transcript.push(entry);
    }
}

/// Connects to the engine and configures the session.
async fn open_engine(app: &App, setup: &EngineSetup) -> Result<Socket, String> {
    let limits = &app.config.limits;
    let socket = realtime::connect(
        &app.config.openai_realtime_url,
        &app.config.openai_api_key,
        &setup.model,
        limits.engine_handshake_timeout,
        limits.max_ws_message_bytes,
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut engine = socket;
    engine
        .send(EngineMessage::text(realtime::session_update(setup)))
        .await
        .map_err(|e| format!("the engine socket failed on session.update: {e}"))?;
    Ok(engine)
}

/// Hangs up over REST if needed and fires `on_call_end`.
async fn finish(
    app: &App,
    ctx: &CallContext,
    ending: Ending,
    started: Instant,
    transcript: Vec<TranscriptEntry>,
    tool_calls: Vec<ToolCallRecord>,
) {
    if ending.hang_up {
        // The caller must never be left in silence on an open line.
        if let Err(e) = app.rest().hang_up(ctx.call_id()).await {
            error!(error = %e, "could not hang up the call");
        }
    }
    let summary = CallSummary {
        context: ctx.clone(),
        reason: ending.reason,
        duration: started.elapsed(),
        transcript,
        tool_calls,
    };
    info!(reason = ?summary.reason, duration_ms = summary.duration.as_millis() as u64, "call ended");
    if let Some(hook) = &app.hooks.on_call_end
        && tokio::time::timeout(HOOK_TIMEOUT, hook(summary))
            .await
            .is_err()
    {
        warn!("on_call_end did not finish within 10 s; abandoned");
    }
}

/// The call's context, from `start` and the TwiML parameters.
fn context_from_start(start: &Start) -> CallContext {
    let params = &start.custom_parameters;
    let get = |name: &str| params.get(name).cloned().unwrap_or_default();
    CallContext::builder(start.call_sid.clone())
        .caller(get("caller"))
        .callee(get("callee"))
        .stream_id(start.stream_sid.clone())
        .direction(Direction::from_twilio(&get("direction")))
        .parameters(
            params
                .iter()
                .filter(|(k, _)| k.as_str() != crate::server::TOKEN_PARAMETER)
                .map(|(k, v)| (k.clone(), v.clone())),
        )
        .build()
}

/// The system prompt with `{name}` filled from the agent's variables, then the call's
/// parameters (`caller`, `callee`, `call_id` and custom ones), then `on_call_start`'s.
fn instructions_for(spec: &AgentSpec, setup: &CallSetup, ctx: &CallContext) -> String {
    let mut values: BTreeMap<String, String> = spec.variables.clone();
    for (name, value) in ctx.parameters() {
        values.insert(name.clone(), prompt_safe(value));
    }
    values.insert("caller".into(), prompt_safe(ctx.caller()));
    values.insert("callee".into(), prompt_safe(ctx.callee()));
    values.insert("call_id".into(), prompt_safe(ctx.call_id()));
    values.extend(setup.variables.clone());
    let template = setup
        .system_prompt
        .as_deref()
        .unwrap_or(&spec.system_prompt);
    super::fill_placeholders(template, &values)
}

/// Caller-supplied text going into a prompt: no control characters, bounded length.
fn prompt_safe(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_PROMPT_VALUE_CHARS)
        .collect()
}
