//! The softphone: talk to your agent from a browser, through the very session a phone call
//! uses, with nothing but `OPENAI_API_KEY`.
//!
//! ```sh
//! cargo run --bin product_specialist -- --softphone      # or PATTER_SOFTPHONE=1
//! ```
//!
//! It prints one URL to open. The page (HTML, JS and an AudioWorklet in this binary; no CDN,
//! no build step) captures the microphone, and speaks Twilio Media Streams to the server
//! exactly (`connected`, `start`, `media`, `mark`, `dtmf`, `stop`), so the server runs each
//! browser call as a [`TwilioLeg`] through the carrier seam: the same admission-free leg,
//! session, barge-in and tools as a phone call. A second socket carries what the page shows
//! (transcript, tool calls, response times), from [`Hooks::on_event`].
//!
//! Safe by construction: off unless asked for; bound to loopback unless a dev token is
//! configured (`PATTER_DEV_TOKEN`); the page's sockets need the run's random token (in the
//! URL fragment, so it is never sent in a request line, a log or a `Referer`) and an
//! `Origin` of the page itself; pages and sockets on loopback also need a loopback `Host`
//! (no DNS rebinding); at most [`MAX_CALLS`] calls at once; a refused request never opens
//! an engine session. None of its routes exist on the production server.

mod assets;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::SinkExt;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{Instrument, info, warn};

use crate::agent::{Agent, AgentSpec};
use crate::call::{CallEnv, CallEvent, Hooks, Role};
use crate::carrier::EndingControl;
use crate::config::{ConfigBuilder, LocalConfig};
use crate::deploy::{self, Engines};
use crate::engine::EngineKind;
use crate::secret::Secret;
use crate::server::CallSlots;
use crate::twilio::leg::{self, TwilioLeg};

/// Calls the softphone serves at once.
pub const MAX_CALLS: usize = 2;
/// The WebSocket subprotocol the page asks for; the token travels as a second one.
const PROTOCOL: &str = "patter-softphone";
/// The page's path.
pub const PATH: &str = "/softphone";

/// Why the softphone cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SoftphoneError {
    /// A bind beyond loopback without a configured dev token.
    #[error(
        "the softphone binds to loopback only, unless PATTER_DEV_TOKEN is set: {0} is not a loopback address"
    )]
    NotLoopback(IpAddr),
    /// The agent is invalid.
    #[error("the agent is invalid: {0}")]
    Agent(String),
    /// The socket could not be bound or served.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The softphone for one agent; see the module documentation.
pub struct Softphone {
    agent: Result<AgentSpec, String>,
    config: LocalConfig,
    hooks: Hooks,
    token: Secret,
}

impl fmt::Debug for Softphone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Softphone")
            .field("config", &self.config)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Softphone {
    /// The softphone for `agent` with these settings: the token is `PATTER_DEV_TOKEN` when
    /// set, else a fresh random one.
    pub fn new(agent: impl Agent, config: LocalConfig) -> Self {
        let agent = Arc::new(agent).spec().map_err(|e| e.to_string());
        let token = match &config.dev_token {
            Some(token) => token.clone(),
            None => Secret::new(crate::util::random_hex(16)),
        };
        Softphone {
            agent,
            config,
            hooks: Hooks::default(),
            token,
        }
    }

    /// The hooks its calls run with.
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// The address it binds: `BIND_ADDRESS` (which must be loopback unless a dev token is
    /// set) or `127.0.0.1`, on `PORT`.
    pub fn address(&self) -> Result<SocketAddr, SoftphoneError> {
        let ip = self.config.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        if !ip.is_loopback() && self.config.dev_token.is_none() {
            return Err(SoftphoneError::NotLoopback(ip));
        }
        Ok(SocketAddr::new(ip, self.config.port))
    }

    /// The URL to open for a server at `addr`, the token in its fragment.
    pub fn url(&self, addr: SocketAddr) -> String {
        let host = match addr.ip() {
            ip if ip.is_unspecified() => format!("127.0.0.1:{}", addr.port()),
            _ => addr.to_string(),
        };
        format!("http://{host}{PATH}#token={}", self.token.expose())
    }

    /// Serves on `listener` until `shutdown` resolves. Refuses (before serving) a listener
    /// beyond loopback without a dev token.
    pub async fn serve_on(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), SoftphoneError> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() && self.config.dev_token.is_none() {
            return Err(SoftphoneError::NotLoopback(addr.ip()));
        }
        let app = self.app(addr)?;
        info!(%addr, "softphone serving");
        // Upgraded sockets outlive axum's graceful shutdown: calls in progress are told to
        // say goodbye, and waited for (up to the drain timeout) before the server stops.
        let draining = Arc::clone(&app);
        let stop = async move {
            shutdown.await;
            draining.shutdown.send_replace(true);
            let _ = tokio::time::timeout(draining.drain_timeout, draining.calls.idle()).await;
        };
        axum::serve(listener, router(app))
            .with_graceful_shutdown(stop)
            .await?;
        Ok(())
    }

    fn app(self, addr: SocketAddr) -> Result<Arc<App>, SoftphoneError> {
        let agent = deploy::deployed(&self.config, self.agent.map_err(SoftphoneError::Agent)?);
        let views: Arc<Views> = Arc::default();
        let hooks = {
            let views = Arc::clone(&views);
            self.hooks
                .also_on_event(move |ctx, event| views.send(ctx.call_id(), view_event(event)))
        };
        let (shutdown, calls_end) = tokio::sync::watch::channel(false);
        let env = CallEnv::new(agent)
            .hooks(hooks)
            .limits(self.config.limits.clone())
            .system_tools(self.config.system_tools)
            .control(Arc::new(EndingControl))
            .shutdown_signal(calls_end);
        Ok(Arc::new(App {
            engines: Engines::new(&self.config),
            env,
            token: self.token,
            check_host: self.config.dev_token.is_none(),
            port: addr.port(),
            calls: CallSlots::new(MAX_CALLS),
            views,
            stream_start_timeout: self.config.limits.stream_start_timeout,
            max_message_bytes: self.config.limits.max_ws_message_bytes,
            shutdown,
            drain_timeout: self.config.limits.drain_timeout,
        }))
    }

    /// The command line's softphone: settings from the environment, a listener on
    /// [`Softphone::address`], one line with the URL to open, until Ctrl-C. Exit code 2 for
    /// bad settings, 1 if it cannot serve.
    pub async fn run_from_env(agent: impl Agent) -> ExitCode {
        let config = match ConfigBuilder::from_env().build_local() {
            Ok(config) => config,
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!("the softphone needs OPENAI_API_KEY (in the environment or a .env file)");
                return ExitCode::from(2);
            }
        };
        let softphone = Softphone::new(agent, config);
        let addr = match softphone.address() {
            Ok(addr) => addr,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("error: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let bound = listener.local_addr().unwrap_or(addr);
        println!(
            "softphone: open {} to talk to your agent",
            softphone.url(bound)
        );
        match softphone
            .serve_on(listener, crate::server::termination_signal())
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e @ SoftphoneError::Agent(_)) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Whether the command line asks for the softphone: `--softphone`, or `PATTER_SOFTPHONE`
/// set to `1` or `true`.
pub fn requested(args: &[String]) -> bool {
    args.iter().any(|a| a == "--softphone")
        || std::env::var("PATTER_SOFTPHONE")
            .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true"))
}

struct App {
    engines: Engines,
    env: CallEnv,
    token: Secret,
    /// Loopback without a dev token: requests must name a loopback host.
    check_host: bool,
    port: u16,
    calls: CallSlots,
    views: Arc<Views>,
    stream_start_timeout: std::time::Duration,
    max_message_bytes: usize,
    /// Turned on at shutdown: calls in progress say goodbye and end.
    shutdown: tokio::sync::watch::Sender<bool>,
    drain_timeout: std::time::Duration,
}

/// The pages' event sockets, by the call they show.
#[derive(Default)]
struct Views(Mutex<HashMap<String, mpsc::UnboundedSender<String>>>);

impl Views {
    fn send(&self, call: &str, event: serde_json::Value) {
        let views = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(view) = views.get(call) {
            let _ = view.send(event.to_string());
        }
    }

    fn open(&self, call: &str) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut views = self.0.lock().unwrap_or_else(|p| p.into_inner());
        views.retain(|_, v| !v.is_closed());
        views.insert(call.to_owned(), tx);
        rx
    }

    fn close(&self, call: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(call);
    }
}

/// What the page shows of an event.
fn view_event(event: &CallEvent<'_>) -> serde_json::Value {
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match event {
        CallEvent::Transcript(entry) => json!({
            "type": "transcript",
            "role": match entry.role { Role::Caller => "caller", Role::Agent => "agent" },
            "text": entry.text,
        }),
        CallEvent::ToolCalled { name, arguments } => {
            json!({ "type": "tool_call", "name": name, "arguments": arguments })
        }
        CallEvent::ToolFinished {
            name,
            output,
            ok,
            duration,
        } => json!({
            "type": "tool_result", "name": name, "output": output, "ok": ok,
            "ms": millis(*duration)
        }),
        CallEvent::AgentAnswered { after_speech } => {
            json!({ "type": "response_time", "ms": millis(*after_speech) })
        }
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(PATH, get(page))
        .route("/softphone/app.js", get(script))
        .route("/softphone/worklet.js", get(worklet))
        .route("/softphone/style.css", get(style))
        .route("/softphone/media", get(media))
        .route("/softphone/events", get(events))
        .with_state(app)
}

/// Headers of every page and asset: nothing from elsewhere, nothing cached, no `Referer`.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Why a socket is refused, answered as this status.
struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        refused(self.0, self.1)
    }
}

fn refused(status: StatusCode, why: &'static str) -> Response {
    warn!(reason = why, "softphone request refused");
    let mut response = (status, why).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl App {
    /// On loopback without a dev token, the `Host` must be loopback with this port: a page
    /// of another site that resolves its own name to 127.0.0.1 gets nothing.
    fn host_ok(&self, headers: &HeaderMap) -> bool {
        if !self.check_host {
            return true;
        }
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let port = self.port.to_string();
        ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|name| host.strip_prefix(name) == Some(&format!(":{port}")))
    }

    /// A socket's checks: the page's own origin, and the run's token among the offered
    /// subprotocols.
    fn socket_check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if !self.host_ok(headers) {
            return Err(Refusal(StatusCode::FORBIDDEN, "unexpected Host"));
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        // The page's own origin: plain on loopback, or behind a TLS proxy with a dev token.
        let same_origin = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|rest| !host.is_empty() && rest == host);
        if !same_origin {
            return Err(Refusal(StatusCode::FORBIDDEN, "wrong Origin"));
        }
        let offered = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim);
        let expected = format!("token.{}", self.token.expose());
        let mut token_ok = false;
        for protocol in offered {
            token_ok |= crate::util::constant_time_eq(protocol.as_bytes(), expected.as_bytes());
        }
        if !token_ok {
            return Err(Refusal(StatusCode::FORBIDDEN, "missing or wrong token"));
        }
        Ok(())
    }
}

async fn page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !app.host_ok(&headers) {
        return refused(StatusCode::FORBIDDEN, "unexpected Host");
    }
    asset("text/html; charset=utf-8", assets::PAGE)
}

async fn script(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !app.host_ok(&headers) {
        return refused(StatusCode::FORBIDDEN, "unexpected Host");
    }
    asset("text/javascript; charset=utf-8", assets::APP)
}

async fn worklet(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !app.host_ok(&headers) {
        return refused(StatusCode::FORBIDDEN, "unexpected Host");
    }
    asset("text/javascript; charset=utf-8", assets::WORKLET)
}

async fn style(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !app.host_ok(&headers) {
        return refused(StatusCode::FORBIDDEN, "unexpected Host");
    }
    asset("text/css; charset=utf-8", assets::STYLE)
}

/// The call's audio, in Twilio Media Streams framing.
async fn media(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Err(refusal) = app.socket_check(&headers) {
        return refusal.into_response();
    }
    if app.calls.active() >= MAX_CALLS {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "two softphone calls are in progress",
        );
    }
    upgrade
        .protocols([PROTOCOL])
        .max_message_size(app.max_message_bytes)
        .on_upgrade(move |socket| serve_call(app, socket))
}

async fn serve_call(app: Arc<App>, socket: WebSocket) {
    let (leg, start) = match TwilioLeg::accept(socket, app.stream_start_timeout).await {
        Ok(accepted) => accepted,
        Err(why) => {
            info!(
                reason = why,
                "softphone stream closed before a call started"
            );
            return;
        }
    };
    let call = start.call_sid.clone();
    // However the call goes, its page hears how it ended and its view is closed.
    let outcome = match app.calls.enter() {
        None => {
            leg.refuse().await;
            "two softphone calls are in progress".to_owned()
        }
        Some(_slot) => {
            let context = leg::context(&start);
            let span = tracing::info_span!("softphone", call_sid = %call);
            let summary = match app.env.agent().engine {
                EngineKind::GptLive => {
                    app.env
                        .run(&app.engines.live, leg, context)
                        .instrument(span)
                        .await
                }
                _ => {
                    app.env
                        .run(&app.engines.realtime, leg, context)
                        .instrument(span)
                        .await
                }
            };
            summary.reason.to_string()
        }
    };
    app.views
        .send(&call, json!({ "type": "ended", "reason": outcome }));
    app.views.close(&call);
}

/// What the page shows of a call: transcript, tool calls, response times, the end.
async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Err(refusal) = app.socket_check(&headers) {
        return refusal.into_response();
    }
    let Some(call) = query.get("call").cloned() else {
        return refused(StatusCode::BAD_REQUEST, "which call?");
    };
    if call.len() > 64 || !call.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return refused(StatusCode::BAD_REQUEST, "malformed call id");
    }
    let mut view = app.views.open(&call);
    upgrade
        .protocols([PROTOCOL])
        .on_upgrade(move |mut socket| async move {
            let _ = socket
                .send(Message::text(json!({ "type": "ready" }).to_string()))
                .await;
            loop {
                tokio::select! {
                    event = view.recv() => match event {
                        Some(event) => {
                            if socket.send(Message::text(event)).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                    incoming = socket.recv() => match incoming {
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    },
                }
            }
            let _ = socket.close().await;
        })
}
