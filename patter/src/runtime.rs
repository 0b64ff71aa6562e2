//! [`Patter`]: configuration plus lifecycle hooks, and the way to serve an agent.

use std::fmt;
use std::future::Future;

use crate::agent::Agent;
use crate::agent::AgentSpec;
use crate::call::{CallEvent, CallSetup, CallSummary, Hooks, Recording, TranscriptEntry};
use crate::config::{Config, ConfigBuilder};
use crate::error::{ConfigError, Result};
use crate::server::{self, Server};
use crate::tool::CallContext;

/// A phone line for an agent: credentials, the public URL, endpoints, limits and hooks.
///
/// ```no_run
/// use patter::Patter;
///
/// #[patter::agent(system_prompt = "You are a friendly receptionist.")]
/// struct Receptionist;
///
/// #[tokio::main]
/// async fn main() -> patter::Result<()> {
///     let phone = Patter::from_env()?;
///     let port = phone.config().port();
///     phone.serve(Receptionist, port).await
/// }
/// ```
#[derive(Clone)]
pub struct Patter {
    config: Config,
    hooks: Hooks,
    /// Agents a dialled call may name, besides the served one.
    named: Vec<(String, AgentSpec)>,
    prices: crate::call::Prices,
}

impl Patter {
    /// Configured from the environment: `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`,
    /// `OPENAI_API_KEY`, `PHONE_NUMBER`, `WEBHOOK_URL`, and optionally `PORT`, `BIND_ADDRESS`,
    /// `OPENAI_REALTIME_URL`, `TWILIO_API_URL`, `PATTER_STREAM_SECRET`, and the deployment
    /// settings `PATTER_MAX_CONCURRENT_CALLS`, `PATTER_MAX_CALL_DURATION_SECS`,
    /// `PATTER_DRAIN_TIMEOUT_SECS`, `PATTER_AUDIO_FORMAT`, `PATTER_MODEL`, `PATTER_VOICE`.
    /// The error names every missing or malformed variable.
    pub fn from_env() -> Result<Patter, ConfigError> {
        ConfigBuilder::from_env().build().map(Patter::new)
    }

    /// Starts an explicit configuration; finish it with [`ConfigBuilder::build`] and
    /// [`Patter::new`].
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// A line with this configuration and no hooks.
    pub fn new(config: Config) -> Self {
        Patter {
            config,
            hooks: Hooks::default(),
            named: Vec::new(),
            prices: crate::call::Prices::defaults(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The hooks, to run calls of your own through [`CallEnv`](crate::call::CallEnv).
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Runs when a call's stream starts, before the engine is configured; what it returns
    /// may change the prompt, the first message, prompt variables and tools for this call.
    /// It gets 10 s; after that the call goes on with the agent's own settings.
    pub fn on_call_start<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(CallContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CallSetup> + Send + 'static,
    {
        self.hooks = self.hooks.on_call_start(hook);
        self
    }

    /// Runs for every finished turn, the caller's and the agent's. It runs on the call's own
    /// task: keep it quick (send to a channel for slow work).
    pub fn on_transcript<F>(mut self, hook: F) -> Self
    where
        F: Fn(&CallContext, &TranscriptEntry) + Send + Sync + 'static,
    {
        self.hooks = self.hooks.on_transcript(hook);
        self
    }

    /// Runs for every key the caller presses (`0`-`9`, `*`, `#`, `A`-`D`). Digits may be a
    /// PIN: patter does not log them. It runs on the call's own task: keep it quick.
    pub fn on_dtmf<F>(mut self, hook: F) -> Self
    where
        F: Fn(&CallContext, char) + Send + Sync + 'static,
    {
        self.hooks = self.hooks.on_dtmf(hook);
        self
    }

    /// Runs for everything a live view of the call shows, as it happens: transcript turns,
    /// tool calls and results, and each answer's response time ([`CallEvent`]). It runs on
    /// the call's own task: keep it quick.
    pub fn on_event<F>(mut self, hook: F) -> Self
    where
        F: Fn(&CallContext, &CallEvent<'_>) + Send + Sync + 'static,
    {
        self.hooks = self.hooks.on_event(hook);
        self
    }

    /// Runs as each turn ends, with its timings ([`TurnMetrics`](crate::call::TurnMetrics)):
    /// the time the caller waited, the engine's times, each tool call, interruptions. It
    /// runs on the call's own task: keep it quick.
    pub fn on_turn<F>(mut self, hook: F) -> Self
    where
        F: Fn(&CallContext, &crate::call::TurnMetrics) + Send + Sync + 'static,
    {
        self.hooks = self.hooks.on_turn(hook);
        self
    }

    /// The price table each call's cost is worked out with (default:
    /// [`Prices::defaults`](crate::call::Prices::defaults), dated list prices).
    pub fn prices(mut self, prices: crate::call::Prices) -> Self {
        self.prices = prices;
        self
    }

    /// Runs for each finished recording of a recorded call (`record` on the agent, or
    /// `CallSetup::record`), with its id, media URL and duration. It gets 10 s.
    pub fn on_recording<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Recording) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks = self.hooks.on_recording(hook);
        self
    }

    /// Runs once when a call ends, however it ends, with the reason, duration, transcript
    /// and tool calls. It gets 10 s.
    pub fn on_call_end<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(CallSummary) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks = self.hooks.on_call_end(hook);
        self
    }

    /// Registers `agent` under `name`, for outbound calls that ask for it
    /// ([`Dial::agent`](crate::outbound::Dial::agent)). Every instance of a deployment runs
    /// the same code, so the name is all a dialled call carries. A second agent under the
    /// same name replaces the first. Fails if its tools are invalid.
    pub fn agent(mut self, name: impl Into<String>, agent: impl Agent) -> Result<Self> {
        let spec = server::agent_spec(agent)?;
        let name = name.into();
        self.named.retain(|(n, _)| *n != name);
        self.named.push((name, spec));
        Ok(self)
    }

    /// The axum router for `agent`, to mount in an application of your own.
    pub fn router(&self, agent: impl Agent) -> Result<axum::Router> {
        Ok(server::router(self.app(agent)?))
    }

    fn app(&self, agent: impl Agent) -> Result<std::sync::Arc<server::App>> {
        let spec = server::agent_spec(agent)?;
        Ok(server::build_app(
            self.config.clone(),
            self.hooks.clone(),
            spec,
            self.named.clone(),
            self.prices.clone(),
        ))
    }

    /// Starts serving `agent` on the configured port and returns the running [`Server`],
    /// to place calls from; it stops on [`Server::shutdown`], Ctrl-C or SIGTERM.
    ///
    /// ```no_run
    /// # #[patter::agent(system_prompt = "You confirm appointments.")]
    /// # struct Reminder;
    /// # async fn run() -> patter::Result<()> {
    /// let server = patter::Patter::from_env()?.start(Reminder).await?;
    /// let call = server.call("+15550123").await;
    /// # Ok(()) }
    /// ```
    pub async fn start(&self, agent: impl Agent) -> Result<Server> {
        let addr = server::bind_address(&self.config, self.config.port());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Server::spawn(self.app(agent)?, listener, true)
    }

    /// Starts serving `agent` on `listener`; it stops on [`Server::shutdown`] only.
    pub async fn start_on(
        &self,
        listener: tokio::net::TcpListener,
        agent: impl Agent,
    ) -> Result<Server> {
        Server::spawn(self.app(agent)?, listener, false)
    }

    /// Serves `agent` on `port` (at the configured bind address) until Ctrl-C or SIGTERM,
    /// then drains and returns.
    pub async fn serve(&self, agent: impl Agent, port: u16) -> Result<()> {
        let listener =
            tokio::net::TcpListener::bind(server::bind_address(&self.config, port)).await?;
        self.serve_on(listener, agent, server::termination_signal())
            .await
    }

    /// Serves `agent` on `listener` until `shutdown` resolves, then drains: new calls hear
    /// a busy message, calls in progress may finish until the drain deadline, the rest end
    /// cleanly.
    pub async fn serve_on(
        &self,
        listener: tokio::net::TcpListener,
        agent: impl Agent,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        server::serve_app(self.app(agent)?, listener, shutdown).await
    }
}

impl fmt::Debug for Patter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Patter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
