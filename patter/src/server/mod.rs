//! The HTTP side: the axum router Twilio talks to, `serve`, and graceful drain.
//!
//! | route | what |
//! |---|---|
//! | `POST /twilio/voice` | Twilio's voice webhook: answers TwiML that connects the call's audio stream |
//! | `GET /twilio/stream` | the Media Streams WebSocket |
//! | `POST /twilio/status` | call status callbacks (of dialled calls: `?outbound=…`) |
//! | `POST /twilio/amd` | answering-machine detection's answer for a dialled call |
//! | `POST /twilio/voicemail` | a dialled call's voicemail played to its end |
//! | `POST /twilio/recording` | recording status callbacks |
//! | `GET /health` | liveness, with the number of calls in progress |
//!
//! Every Twilio route checks `X-Twilio-Signature` first and answers 403 without it.

mod handle;
#[cfg(feature = "prometheus")]
mod metrics;
mod outbound;

pub use handle::Server;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::FutureExt;
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

use axum::extract::ws::WebSocket;
use tracing::Instrument;

use crate::agent::{Agent, AgentSpec};
use crate::call::{CallEnv, Hooks, Recording};
use crate::config::Config;
use crate::deploy::{self, Engines};
use crate::engine::EngineKind;
use crate::error::Result;
use crate::outbound::tracker::Signal;
use crate::telemetry::meters;
use crate::twilio::leg::{self, TOKEN_PARAMETER, TwilioLeg};
use crate::twilio::rest::TwilioRest;
use crate::twilio::{signature, stream_token, twiml};

/// How long a stream token stays valid after the voice webhook.
const TOKEN_LIFETIME_SECS: u64 = 600;
/// What callers hear when the server cannot take their call.
const BUSY_MESSAGE: &str = "Sorry, all our agents are busy right now. Please call again later.";

/// Counts calls in progress and enforces the limit.
#[derive(Debug)]
pub(crate) struct CallSlots {
    active: AtomicUsize,
    max: usize,
    changed: Notify,
}

/// A call in progress; dropping it frees the slot.
pub(crate) struct Slot<'a>(&'a CallSlots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// A slot that outlives a request: a dialled call holds one from dialling to its outcome.
pub(crate) struct OwnedSlot(Arc<CallSlots>);

impl Drop for OwnedSlot {
    fn drop(&mut self) {
        self.0.leave();
    }
}

impl CallSlots {
    pub(crate) fn new(max: usize) -> Self {
        CallSlots {
            active: AtomicUsize::new(0),
            max,
            changed: Notify::new(),
        }
    }

    /// Takes a slot, or `None` at the limit.
    pub(crate) fn enter(&self) -> Option<Slot<'_>> {
        self.take().then_some(Slot(self))
    }

    /// Takes a slot that is freed when dropped, wherever it goes.
    pub(crate) fn enter_owned(self: &Arc<Self>) -> Option<OwnedSlot> {
        self.take().then(|| OwnedSlot(Arc::clone(self)))
    }

    fn take(&self) -> bool {
        self.active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn leave(&self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    fn is_full(&self) -> bool {
        self.active() >= self.max
    }

    /// Waits until no call is in progress.
    pub(crate) async fn idle(&self) {
        loop {
            let changed = self.changed.notified();
            if self.active() == 0 {
                return;
            }
            changed.await;
        }
    }
}

/// What every request and call of one server shares. The server is the composition root:
/// it admits each call (signature, per-call token, a call slot), then runs it with the Twilio
/// leg and the agent's engine through the call's narrow [`CallEnv`].
pub(crate) struct App {
    pub(crate) config: Config,
    env: CallEnv,
    /// Agents a dialled call may name ([`crate::outbound::Dial::agent`]).
    named: HashMap<String, CallEnv>,
    engines: Engines,
    calls: Arc<CallSlots>,
    rest: Arc<TwilioRest>,
    dials: Arc<crate::outbound::tracker::Dials>,
    /// Set once the server drains: new calls are turned away.
    draining: AtomicBool,
    /// Set when calls still running must end now.
    shutdown_tx: watch::Sender<bool>,
}

pub(crate) fn build_app(
    config: Config,
    hooks: Hooks,
    agent: AgentSpec,
    named: Vec<(String, AgentSpec)>,
    prices: crate::call::Prices,
) -> Arc<App> {
    let (shutdown_tx, shutdown) = watch::channel(false);
    let rest = Arc::new(
        TwilioRest::new(
            &config.twilio_api_url,
            &config.twilio_account_sid,
            config.twilio_auth_token.clone(),
        )
        .recording_callback(config.public_url.http("/twilio/recording")),
    );
    let env_of = |agent: AgentSpec| {
        CallEnv::new(deploy::deployed(&config.local, agent))
            .hooks(hooks.clone())
            .limits(config.local.limits.clone())
            .system_tools(config.local.system_tools)
            .control(rest.clone())
            .prices(prices.clone())
            .trace_settings(config.local.trace.clone())
            .outage(config.local.outage.clone())
            .shutdown_signal(shutdown.clone())
    };
    let env = env_of(agent);
    let named = named
        .into_iter()
        .map(|(name, agent)| (name, env_of(agent)))
        .collect();
    let engines = Engines::new(&config.local);
    // Installed before the first call, so nothing measured is lost.
    #[cfg(feature = "prometheus")]
    let _ = crate::telemetry::prometheus::handle();
    Arc::new(App {
        calls: Arc::new(CallSlots::new(config.local.limits.max_concurrent_calls)),
        config,
        env,
        named,
        rest,
        dials: Arc::default(),
        engines,
        draining: AtomicBool::new(false),
        shutdown_tx,
    })
}

pub(crate) fn router(app: Arc<App>) -> Router {
    let body_limit = app.config.local.limits.max_http_body_bytes;
    let router = Router::new();
    // `/metrics` here, unless it has a port of its own.
    #[cfg(feature = "prometheus")]
    let router = if app.config.metrics_port.is_none() {
        router.route("/metrics", get(metrics::scrape))
    } else {
        router
    };
    router
        .route("/twilio/voice", post(voice))
        .route("/twilio/stream", get(stream))
        .route("/twilio/status", post(outbound::status))
        .route("/twilio/amd", post(outbound::amd))
        .route("/twilio/voicemail", post(outbound::voicemail_done))
        .route("/twilio/recording", post(recording))
        .route("/health", get(health))
        .layer(axum::middleware::from_fn(trace_request))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(app)
}

/// The URL Twilio signed: the configured public URL, this path, and the query as received.
fn signed_url(app: &App, uri: &Uri, websocket: bool) -> String {
    let path = uri.path();
    let base = if websocket {
        app.config.public_url.ws(path)
    } else {
        app.config.public_url.http(path)
    };
    match uri.query() {
        Some(query) => format!("{base}?{query}"),
        None => base,
    }
}

/// The request is not signed by Twilio: answered with 403.
struct Forbidden;

impl IntoResponse for Forbidden {
    fn into_response(self) -> Response {
        (StatusCode::FORBIDDEN, "invalid Twilio signature").into_response()
    }
}

/// Checks X-Twilio-Signature of a POST and returns its form parameters.
fn verify_post(
    app: &App,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, Forbidden> {
    let Some(given) = headers.get(signature::HEADER).and_then(|v| v.to_str().ok()) else {
        warn!(
            path = uri.path(),
            "request without X-Twilio-Signature refused"
        );
        meters::signature_rejected(route_name(uri.path()));
        return Err(Forbidden);
    };
    let url = signed_url(app, uri, false);
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let params: Vec<(String, String)> = if is_json {
        Vec::new()
    } else {
        url::form_urlencoded::parse(body).into_owned().collect()
    };
    let token = app.config.twilio_auth_token.expose();
    if !signature::validate(token, &url, &params, Some(body), given) {
        warn!(
            path = uri.path(),
            "request with a bad X-Twilio-Signature refused"
        );
        meters::signature_rejected(route_name(uri.path()));
        return Err(Forbidden);
    }
    Ok(params)
}

/// A span per request: method, route (from a fixed set: never the query, which may hold a
/// dial's state) and status.
async fn trace_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let span = tracing::info_span!(
        "http.request",
        http.request.method = %request.method(),
        http.route = route_name(request.uri().path()),
        http.response.status_code = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// A route's name for metrics: a fixed set, whatever path was asked for.
fn route_name(path: &str) -> &'static str {
    match path {
        "/twilio/voice" => "voice",
        "/twilio/stream" => "stream",
        "/twilio/status" => "status",
        "/twilio/amd" => "amd",
        "/twilio/voicemail" => "voicemail",
        "/twilio/recording" => "recording",
        "/health" => "health",
        "/metrics" => "metrics",
        _ => "other",
    }
}

/// A POST Twilio signed: its form parameters. A request without a valid signature is
/// answered 403 (an oversized body 413) before the handler runs.
pub(crate) struct Signed(pub(crate) Vec<(String, String)>);

impl axum::extract::FromRequest<Arc<App>> for Signed {
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        app: &Arc<App>,
    ) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        let request = axum::extract::Request::from_parts(parts.clone(), body);
        let body = Bytes::from_request(request, app)
            .await
            .map_err(IntoResponse::into_response)?;
        verify_post(app, &parts.uri, &parts.headers, &body)
            .map(Signed)
            .map_err(IntoResponse::into_response)
    }
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

async fn voice(State(app): State<Arc<App>>, uri: Uri, Signed(params): Signed) -> Response {
    let call_sid = param(&params, "CallSid");
    if call_sid.is_empty() {
        return (StatusCode::BAD_REQUEST, "missing CallSid").into_response();
    }
    let dial = match outbound::voice_state(&app, &uri) {
        Ok(dial) => dial,
        Err(refused) => return refused.into_response(),
    };
    if let Some(dial) = &dial
        && let Some(answer) = outbound::answer(&app, call_sid, &params, dial)
    {
        return answer;
    }
    // A call dialled by this process already holds its slot.
    let holds_slot = dial.as_ref().is_some_and(|d| app.dials.is_open(&d.id));
    if !holds_slot && (app.draining.load(Ordering::SeqCst) || app.calls.is_full()) {
        info!(
            call_sid,
            "call turned away: server draining or at its call limit"
        );
        meters::turned_away();
        return xml(twiml::busy(BUSY_MESSAGE));
    }
    let token = stream_token::issue(
        app.config.stream_secret.expose().as_bytes(),
        call_sid,
        crate::util::unix_now() + TOKEN_LIFETIME_SECS,
    );
    let stream_url = app.config.public_url.ws("/twilio/stream");
    info!(call_sid, "voice webhook: connecting the stream");
    let signed = dial
        .as_ref()
        .map(|d| d.encode(app.config.stream_secret.expose().as_bytes()));
    let mut parameters = vec![
        ("caller", param(&params, "From")),
        ("callee", param(&params, "To")),
        ("direction", param(&params, "Direction")),
        (TOKEN_PARAMETER, &token),
    ];
    if let Some(signed) = &signed {
        parameters.push((crate::outbound::state::PARAMETER, signed));
    }
    // With traces exported, the call's trace starts here: the stream continues it.
    let traceparent = crate::telemetry::current_traceparent();
    if let Some(traceparent) = &traceparent {
        parameters.push((crate::telemetry::TRACEPARENT, traceparent));
    }
    xml(twiml::connect_stream(&stream_url, &parameters))
}

async fn stream(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let url = signed_url(&app, &uri, true);
    let given = headers
        .get(signature::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !signature::validate(
        app.config.twilio_auth_token.expose(),
        &url,
        &[],
        None,
        given,
    ) {
        warn!("stream upgrade with a missing or bad X-Twilio-Signature refused");
        meters::signature_rejected("stream");
        return Forbidden.into_response();
    }
    let max = app.config.local.limits.max_ws_message_bytes;
    upgrade
        .read_buffer_size(crate::util::TWILIO_READ_BUFFER_BYTES)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| serve_stream(app, socket))
}

/// Admits one Media Stream and runs its call: `start` within the limit, the per-call token
/// the voice webhook issued, a free call slot. A stream that fails any of them is closed
/// before an engine session is opened.
async fn serve_stream(app: Arc<App>, socket: WebSocket) {
    let (leg, start) =
        match TwilioLeg::accept(socket, app.config.local.limits.stream_start_timeout).await {
            Ok(accepted) => accepted,
            Err(why) => {
                info!(reason = why, "stream closed before a call started");
                return;
            }
        };
    let span = tracing::info_span!(
        "carrier.stream",
        carrier.name = "twilio",
        call.id = %start.call_sid,
        stream.id = %start.stream_sid,
    );
    if let Some(traceparent) = start.custom_parameters.get(crate::telemetry::TRACEPARENT) {
        crate::telemetry::continue_trace(&span, traceparent);
    }
    async move {
        let secret = app.config.stream_secret.expose().as_bytes();
        if let Err(why) = leg::check_token(secret, &start, crate::util::unix_now()) {
            warn!(
                reason = why,
                "stream refused: no valid call token; no engine session opened"
            );
            leg.refuse().await;
            return;
        }
        let dial = match start
            .custom_parameters
            .get(crate::outbound::state::PARAMETER)
        {
            None => None,
            Some(text) => match outbound::read_state(&app, text) {
                Some(dial) => Some(dial),
                None => {
                    warn!("stream refused: a dial state not signed here; no engine session opened");
                    leg.refuse().await;
                    return;
                }
            },
        };
        // A call dialled by this process already holds its slot.
        let holds_slot = dial.as_ref().is_some_and(|d| app.dials.is_open(&d.id));
        let _slot = if holds_slot {
            None
        } else {
            let Some(slot) = app.calls.enter() else {
                warn!("stream refused: the server is at its call limit");
                leg.refuse().await;
                return;
            };
            Some(slot)
        };
        let context = leg::context(&start);
        let summary = match &dial {
            None => run_call(&app, &app.env, leg, context).await,
            Some(dial) => {
                let env = match &dial.agent {
                    None => &app.env,
                    Some(name) => match app.named.get(name) {
                        Some(env) => env,
                        None => {
                            // Another build of the deployment dialled it (a rolling update):
                            // refused rather than run with the wrong prompt and tools.
                            warn!("stream refused: its agent is not registered here");
                            leg.refuse().await;
                            return;
                        }
                    },
                };
                let env = env.clone().preset(outbound::preset(dial));
                app.dials.tell(&dial.id, Signal::SessionStarted);
                run_call(&app, &env, leg, context).await
            }
        };
        if let Some(dial) = &dial {
            app.dials
                .tell(&dial.id, Signal::SessionEnded(Box::new(summary)));
        }
    }
    .instrument(span)
    .await;
}

/// Runs one admitted call on the agent's engine: each engine gets a session loop of its
/// own type (static dispatch per call).
async fn run_call(
    app: &App,
    env: &CallEnv,
    leg: TwilioLeg,
    context: crate::tool::CallContext,
) -> crate::call::CallSummary {
    match env.agent().engine {
        EngineKind::Realtime => env.run(&app.engines.realtime, leg, context).await,
        EngineKind::GptLive => env.run(&app.engines.live, leg, context).await,
    }
}

/// Twilio's recording status callback: signature checked, then `on_recording`.
async fn recording(State(app): State<Arc<App>>, Signed(params): Signed) -> Response {
    let (call_id, recording_id) = (param(&params, "CallSid"), param(&params, "RecordingSid"));
    if call_id.is_empty() || recording_id.is_empty() {
        return (StatusCode::BAD_REQUEST, "missing CallSid or RecordingSid").into_response();
    }
    let recording = Recording {
        call_id: call_id.to_owned(),
        recording_id: recording_id.to_owned(),
        url: param(&params, "RecordingUrl").to_owned(),
        status: param(&params, "RecordingStatus").to_owned(),
        duration: param(&params, "RecordingDuration")
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs),
        channels: param(&params, "RecordingChannels").parse().ok(),
    };
    info!(
        call_sid = call_id,
        recording_sid = recording_id,
        status = %recording.status,
        "recording status"
    );
    if let Some(hook) = &app.env.hooks.on_recording {
        let ran = std::panic::AssertUnwindSafe(hook(recording)).catch_unwind();
        match tokio::time::timeout(Duration::from_secs(10), ran).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => error!("on_recording panicked"),
            Err(_) => warn!("on_recording did not finish within 10 s; abandoned"),
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn health(State(app): State<Arc<App>>) -> Response {
    axum::Json(serde_json::json!({
        "status": if app.draining.load(Ordering::SeqCst) { "draining" } else { "ok" },
        "calls": app.calls.active(),
    }))
    .into_response()
}

/// Serves until `shutdown` resolves, then drains: new calls are turned away, calls in
/// progress may finish until the drain deadline, and the rest end cleanly.
pub(crate) async fn serve_app(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener.local_addr()?;
    info!(%addr, public_url = %app.config.public_url, "serving");
    let (stop_http_tx, stop_http) = watch::channel(false);
    let server =
        axum::serve(listener, router(Arc::clone(&app))).with_graceful_shutdown(async move {
            let mut stop_http = stop_http;
            let _ = stop_http.wait_for(|&s| s).await;
        });
    let drainer = {
        let app = Arc::clone(&app);
        async move {
            shutdown.await;
            app.draining.store(true, Ordering::SeqCst);
            let deadline = app.config.local.limits.drain_timeout;
            info!(
                calls = app.calls.active(),
                deadline_ms = deadline.as_millis() as u64,
                "draining"
            );
            if tokio::time::timeout(deadline, app.calls.idle())
                .await
                .is_err()
            {
                info!(
                    calls = app.calls.active(),
                    "drain deadline reached; ending the remaining calls"
                );
                app.shutdown_tx.send_replace(true);
                // Each call hangs up and runs on_call_end; bounded in case a hook hangs.
                let _ = tokio::time::timeout(Duration::from_secs(15), app.calls.idle()).await;
            }
            let _ = stop_http_tx.send(true);
        }
    };
    let drain_task = tokio::spawn(drainer);
    #[cfg(feature = "prometheus")]
    let metrics_task = metrics::serve_own_port(&app).await?;
    server.await?;
    #[cfg(feature = "prometheus")]
    if let Some(task) = metrics_task {
        task.abort();
    }
    let _ = drain_task.await;
    info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn termination_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Checks an agent and makes its spec.
pub(crate) fn agent_spec(agent: impl Agent) -> Result<AgentSpec> {
    Ok(Arc::new(agent).spec()?)
}

/// The address `serve` binds.
pub(crate) fn bind_address(config: &Config, port: u16) -> SocketAddr {
    SocketAddr::new(config.bind, port)
}
